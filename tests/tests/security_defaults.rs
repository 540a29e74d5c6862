//! Issue 11 item 3: REST API bearer tokens next to Basic auth, and the WebSocket `Origin`
//! allow-list (`server.allowed_origins`). Real server, real clients on loopback.

use callgate_tests::start_server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Error as WsError;

const TOKEN_A: &str = "tok-A-7f3k29";
const TOKEN_B: &str = "tok-B-q81mz0";

/// One raw HTTP/1.1 POST: (status, lower-cased header block).
async fn post(server: &callgate_server::RunningServer, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(server.http_addr).await.unwrap();
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n{auth}Connection: close\r\n\r\n{{}}",
        server.http_addr
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(callgate_tests::WAIT, stream.read_to_end(&mut buf))
        .await
        .expect("HTTP answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let head = text.split_once("\r\n\r\n").map_or(text.as_str(), |(h, _)| h).to_ascii_lowercase();
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
    (status, head)
}

#[tokio::test]
async fn bearer_tokens_any_of_several_and_basic_still_works() {
    let server = start_server(&format!(
        "[rest_api]\nusername = \"admin\"\npassword = \"pw-basic-1\"\ntokens = [\"{TOKEN_A}\", \"{TOKEN_B}\"]\n"
    ))
    .await;
    let path = "/rest-api/connection/find_all";
    // No sessions: an authenticated request reaches the handler, which answers 404.
    for t in [TOKEN_A, TOKEN_B] {
        let (status, _) = post(&server, path, Some(&format!("Bearer {t}"))).await;
        assert_eq!(status, 404, "token {t} accepted");
    }
    let basic = base64_basic("admin", "pw-basic-1");
    assert_eq!(post(&server, path, Some(&basic)).await.0, 404, "Basic still accepted");

    for bad in [
        None,
        Some("Bearer tok-A-7f3k2".to_string()),
        Some(format!("Bearer {TOKEN_A}x")),
        Some("Bearer ".to_string()),
        Some(format!("Basic {TOKEN_A}")),
        Some(format!("Token {TOKEN_A}")),
        Some(base64_basic("admin", "wrong")),
    ] {
        let (status, head) = post(&server, path, bad.as_deref()).await;
        assert_eq!(status, 401, "{bad:?} refused");
        assert!(head.contains("www-authenticate: basic realm=\"callgate\""), "{head}");
        assert!(head.contains("www-authenticate: bearer realm=\"callgate\""), "{head}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn tokens_alone_turn_auth_on() {
    let server = start_server(&format!("[rest_api]\ntokens = \"{TOKEN_A}\"\n")).await;
    let path = "/rest-api/connection/find_all";
    let (status, head) = post(&server, path, None).await;
    assert_eq!(status, 401);
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    assert!(!head.contains("www-authenticate: basic"), "no Basic credentials configured: {head}");
    // Without a username, no Basic pair matches, not even an empty one.
    assert_eq!(post(&server, path, Some(&base64_basic("", ""))).await.0, 401);
    assert_eq!(post(&server, path, Some(&format!("Bearer {TOKEN_A}"))).await.0, 404);
    server.shutdown().await;
}

#[test]
fn token_config_checked() {
    use callgate_server::config::Config;
    let c = Config::from_toml("[server]\nhttp_bind = \"0.0.0.0:8081\"\n[rest_api]\ntokens = [\"t1\"]").unwrap();
    callgate_server::validate(&c).expect("a token is a credential on a non-loopback bind");
    assert!(!format!("{c:?}").contains("t1\""), "Debug never shows a token");
    let r =
        Config::from_toml("[rest_api]\nauth = false\ntokens = [\"t1\"]").and_then(|c| callgate_server::validate(&c));
    assert!(r.unwrap_err().to_string().contains("auth = false contradicts"));
    // Empty entries are dropped (as in every list key): they are no credential.
    let c = Config::from_toml("[rest_api]\ntokens = [\"\", \" \"]").unwrap();
    assert!(!c.rest_api.requires_auth());
    let bad_origin = "[server]\nallowed_origins = [\"https://app.example/path\"]";
    let r = Config::from_toml(bad_origin).and_then(|c| callgate_server::validate(&c).map(|_| c));
    assert!(r.unwrap_err().to_string().contains("server.allowed_origins"));
}

fn base64_basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
}

/// The WebSocket handshake with `origin` (or none): `Ok` on 101, else the HTTP status.
async fn ws_handshake(server: &callgate_server::RunningServer, origin: Option<&str>) -> Result<(), u16> {
    let mut req = format!("ws://{}/", server.ws_addr).into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    let r = tokio::time::timeout(callgate_tests::WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("handshake answered in time");
    match r {
        Ok(_) => Ok(()),
        Err(WsError::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("handshake failed otherwise: {e}"),
    }
}

#[tokio::test]
async fn websocket_origin_allow_list() {
    let server =
        start_server("[server]\nallowed_origins = [\"https://app.example.com\", \"http://localhost:3000\"]\n").await;
    assert_eq!(ws_handshake(&server, Some("https://app.example.com")).await, Ok(()));
    assert_eq!(ws_handshake(&server, Some("http://localhost:3000")).await, Ok(()));
    assert_eq!(ws_handshake(&server, None).await, Ok(()), "no Origin: not a browser");
    for bad in ["https://evil.example", "https://app.example.com:8443", "http://app.example.com", "null"] {
        assert_eq!(ws_handshake(&server, Some(bad)).await, Err(403), "{bad}");
    }
    server.shutdown().await;

    // Default: any origin.
    let server = start_server("").await;
    assert_eq!(ws_handshake(&server, Some("https://evil.example")).await, Ok(()));
    server.shutdown().await;
}
