//! Secure defaults (issue 14, items 2 and 3): no CORS unless configured, secrets never shown to
//! clients or in REST API views (the backend still gets what WCS sends), and `defaultApp`
//! following the HTTP port it is served on.

use callgate_tests::{http_post, start_server, Backend, Client};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PASSWORD: &str = "s3cret-pw-9ZQ";

/// One raw HTTP/1.1 exchange: (status, lower-cased header block, body).
async fn http(
    server: &callgate_server::RunningServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(server.http_addr).await.unwrap();
    let mut extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        extra += &format!("Host: {}\r\n", server.http_addr);
    }
    let req = format!(
        "{method} {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(callgate_tests::WAIT, stream.read_to_end(&mut buf))
        .await
        .expect("HTTP answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test]
async fn no_cors_header_unless_configured() {
    let server = start_server("").await;
    let origin = [("Origin", "https://evil.example")];
    let (status, head, _) = http(&server, "GET", "/rest-api/connection/find_all", &origin, "").await;
    assert_eq!(status, 403, "a page's request is refused (web_pages_cannot_act_on_the_rest_api)");
    assert!(!head.contains("access-control-allow-origin"), "no CORS by default: {head}");
    let (status, head, _) = http(&server, "GET", "/metrics", &origin, "").await;
    assert_eq!(status, 200);
    assert!(!head.contains("access-control-allow-origin"), "no CORS on any path: {head}");
    // A preflight gets no permission either.
    let preflight = [("Origin", "https://evil.example"), ("Access-Control-Request-Method", "POST")];
    let (_, head, _) = http(&server, "OPTIONS", "/rest-api/call/startup", &preflight, "").await;
    assert!(!head.contains("access-control-allow-origin"), "no CORS preflight by default: {head}");
    server.shutdown().await;
}

#[tokio::test]
async fn cors_list_echoes_only_a_listed_origin() {
    let server =
        start_server("[rest_api]\ncors_allow_origin = [\"https://a.example\", \"https://b.example:8443\"]\n").await;
    let (_, head, _) =
        http(&server, "GET", "/rest-api/connection/find_all", &[("Origin", "https://b.example:8443")], "").await;
    assert!(head.contains("access-control-allow-origin: https://b.example:8443"), "{head}");
    let (_, head, _) =
        http(&server, "GET", "/rest-api/connection/find_all", &[("Origin", "https://evil.example")], "").await;
    assert!(!head.contains("access-control-allow-origin"), "an origin not listed gets nothing: {head}");
    server.shutdown().await;
}

#[tokio::test]
async fn sip_password_reaches_the_backend_but_never_clients_nor_rest_views() {
    let backend = Backend::start().await;
    let server = start_server(&format!("[apps.backendApp]\nurl = \"{}\"\n", backend.url("hooks"))).await;
    // No sipDomain and no sipRegisterRequired: no REGISTER is attempted.
    let conn = json!({"appKey": "backendApp", "clientVersion": "2.0", "sipLogin": "3000",
                      "sipAuthenticationName": "3000", "sipPassword": PASSWORD});
    let (mut c, user) = Client::establish(&server, conn).await;
    assert_eq!(user["sipLogin"], "3000");
    assert!(!user.contains_key("sipPassword"), "getUserData must not carry the password: {user:?}");
    // The backend gets exactly what WCS sends, password included.
    let connect = backend.wait_for("connect", |_| true).await;
    assert_eq!(connect.body["sipPassword"], PASSWORD);
    backend.wait_for("ConnectionStatusEvent", |b| b["status"] == "ESTABLISHED" && b["sipPassword"] == PASSWORD).await;
    // REST API views.
    let (status, body) = http_post(&server, "/rest-api/connection/find_all", "", None).await;
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list[0]["sipLogin"], "3000");
    assert!(!body.contains(PASSWORD) && list[0].get("sipPassword").is_none(), "find_all leaks: {body}");
    let (status, body) = http_post(&server, "/rest-api/connection/find", r#"{"sipLogin":"3000"}"#, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains(PASSWORD), "find leaks: {body}");
    // A filter on the password would tell a caller whether a guess is right.
    let (status, body) =
        http_post(&server, "/rest-api/connection/find", &json!({"sipPassword": PASSWORD}).to_string(), None).await;
    assert_eq!(status, 400, "{body}");
    // Nothing the client received carried it.
    c.send("sendData", json!({"operationId": "op-1", "payload": {}})).await;
    c.expect("DataStatusEvent").await;
    let seen = serde_json::to_string(&c.seen).unwrap();
    assert!(!seen.contains(PASSWORD), "a client frame carried the password: {seen}");
    drop(c);
    backend.wait_for("ConnectionStatusEvent", |b| b["status"] == "DISCONNECTED" && b["sipPassword"] == PASSWORD).await;
    server.shutdown().await;
}

#[tokio::test]
async fn sip_password_is_not_in_getuserdata_under_overwrite_either() {
    let backend = Backend::start().await;
    backend.answer(|method, body| {
        let mut b = body.clone();
        if method == "connect" {
            b["restClientConfig"] =
                json!({"ConnectionStatusEvent": {"restPolicy": "OVERWRITE", "restOverwrite": "sipLogin"}});
        }
        callgate_tests::Reply::mirror(&b)
    });
    let server = start_server(&format!("[apps.backendApp]\nurl = \"{}\"\n", backend.url("hooks"))).await;
    let conn = json!({"appKey": "backendApp", "sipLogin": "3000", "sipPassword": PASSWORD});
    let (c, user) = Client::establish(&server, conn).await;
    assert!(!user.contains_key("sipPassword"), "{user:?}");
    assert!(!serde_json::to_string(&c.seen).unwrap().contains(PASSWORD));
    server.shutdown().await;
}

/// Issue 14 item 3: with `defaultApp` not configured, it is this server's EchoApp on the port the
/// server really listens on (here an ephemeral one), over HTTP as well as in process.
#[tokio::test]
async fn default_app_follows_the_http_bind() {
    for fast in [true, false] {
        let server = start_server(&format!("[hooks]\necho_fast_path = {fast}\n")).await;
        let app = server.shared.apps.get("defaultApp").expect("defaultApp exists");
        assert_eq!(app.url.as_ref(), format!("http://127.0.0.1:{}/apps/EchoApp", server.http_addr.port()));
        assert_eq!(app.echo_in_process(), fast);
        let (_c, user) = Client::establish(&server, json!({"clientVersion": "2.0", "custom": {"a": 1}})).await;
        assert_eq!(user["status"], "ESTABLISHED");
        assert_eq!(user["custom"], json!({"a": 1}));
        server.shutdown().await;
    }
}

/// Credentials alone turn auth on (`auth = true` is the default), for every endpoint including
/// `/call/startup`, which would otherwise place SIP calls for anyone.
#[tokio::test]
async fn credentials_guard_every_rest_endpoint() {
    let server = start_server("[rest_api]\nusername = \"admin\"\npassword = \"pw\"\n").await;
    let startup = r#"{"callId":"c1","callee":"3001","sipLogin":"3000","sipDomain":"127.0.0.1"}"#;
    for (path, body) in [("/rest-api/connection/find_all", ""), ("/rest-api/call/startup", startup)] {
        let (status, _, _) = http(&server, "POST", path, &[], body).await;
        assert_eq!(status, 401, "{path}");
    }
    // admin:pw
    let (status, _, _) =
        http(&server, "POST", "/rest-api/connection/find_all", &[("Authorization", "Basic YWRtaW46cHc=")], "").await;
    assert_eq!(status, 404);
    server.shutdown().await;
}

/// CORS only keeps a page from reading answers; a cross-site POST is still sent. So a request
/// naming a page's `Origin` that is not allowed is refused before it acts, and without
/// credentials a foreign `Host` (a DNS name rebound to loopback) is refused too.
#[tokio::test]
async fn web_pages_cannot_act_on_the_rest_api() {
    let server = start_server("").await;
    let (_c, user) = Client::establish(&server, json!({"clientVersion": "2.0"})).await;
    let sid = user["sessionId"].as_str().unwrap().to_string();
    let terminate = json!({"sessionId": sid}).to_string();
    let (status, _, body) =
        http(&server, "POST", "/rest-api/connection/terminate", &[("Origin", "https://evil.example")], &terminate)
            .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("cors_allow_origin"), "{body}");
    let (status, _, _) =
        http(&server, "POST", "/rest-api/connection/terminate", &[("Host", "evil.example:8081")], &terminate).await;
    assert_eq!(status, 403);
    assert!(server.shared.sessions.get(&sid).is_some(), "the session is still there");
    let (status, _, _) =
        http(&server, "POST", "/rest-api/connection/find_all", &[("Host", "localhost:8081")], "").await;
    assert_eq!(status, 200);
    server.shutdown().await;

    let server = start_server("[rest_api]\ncors_allow_origin = [\"https://admin.example\"]\n").await;
    let (status, head, _) =
        http(&server, "POST", "/rest-api/connection/find_all", &[("Origin", "https://admin.example")], "").await;
    assert_eq!(status, 404, "a listed origin may use the API");
    assert!(head.contains("access-control-allow-origin: https://admin.example"), "{head}");
    server.shutdown().await;
}
