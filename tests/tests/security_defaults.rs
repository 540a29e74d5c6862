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

// ----- SSRF guard (security.allowed_private_ranges) ------------------------------------------

/// A plain TCP listener on 127.0.0.1 that counts the connections it accepts and answers each
/// request `200` with a small XCAP document.
async fn counting_xcap_server() -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = "<ok/>";
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/xcap-el+xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    (addr, count)
}

/// `sendXcapRequest` for `url` from `c`: the client's `notifyXcapResponse`.
async fn xcap(c: &mut callgate_tests::Client, id: &str, url: &str) -> serde_json::Map<String, serde_json::Value> {
    c.send("sendXcapRequest", serde_json::json!({"id": id, "url": url})).await;
    let r = c.expect("notifyXcapResponse").await;
    assert_eq!(r["id"], id, "{r:?}");
    r
}

/// Issue 11 item 3: URLs a client chooses may not reach loopback, private or link-local
/// addresses (cloud metadata at 169.254.169.254) even when an allowed base names them, and no
/// connection is attempted: the 127.0.0.1 listener sees none.
#[tokio::test]
async fn xcap_to_internal_addresses_is_refused_without_a_connection() {
    use std::sync::atomic::Ordering;
    let (addr, count) = counting_xcap_server().await;
    let port = addr.port();
    let bases = [
        format!("http://127.0.0.1:{port}/xcap-root/"),
        format!("http://localhost:{port}/xcap-root/"),
        format!("http://[::ffff:127.0.0.1]:{port}/xcap-root/"),
        format!("http://10.0.0.1:{port}/xcap-root/"),
        "http://169.254.169.254/xcap-root/".to_string(),
    ];
    let list = bases.iter().map(|b| format!("\"{b}\"")).collect::<Vec<_>>().join(", ");
    let server = start_server(&format!("[xcap]\nallowed_base_urls = [{list}]\n")).await;
    let (mut c, _) = callgate_tests::Client::establish(&server, serde_json::json!({})).await;
    for (n, (base, class)) in bases
        .iter()
        .zip([
            "a loopback address",
            "a loopback address",
            "a loopback address",
            "a private address",
            "a link-local address",
        ])
        .enumerate()
    {
        let url = format!("{base}doc");
        let r = xcap(&mut c, &format!("s{n}"), &url).await;
        assert_eq!(r["status"], "FAILED", "{r:?}");
        let info = r["info"].as_str().unwrap();
        assert!(info.starts_with(&format!("XCAP URL not allowed: {url}: ")), "{info}");
        assert!(info.contains(class) && info.contains("security.allowed_private_ranges"), "{info}");
    }
    assert_eq!(count.load(Ordering::SeqCst), 0, "no connection reached the loopback listener");
    server.shutdown().await;
}

/// The same loopback target with `[security] allowed_private_ranges` listing it: fetched, by
/// address and by name (`localhost`, whose every address must be listed).
#[tokio::test]
async fn xcap_to_a_configured_private_range_is_allowed() {
    use std::sync::atomic::Ordering;
    let (addr, count) = counting_xcap_server().await;
    let port = addr.port();
    let server = start_server(&format!(
        "[xcap]\nallowed_base_urls = [\"http://127.0.0.1:{port}/xcap-root/\", \"http://localhost:{port}/xcap-root/\"]\n\
         [security]\nallowed_private_ranges = [\"127.0.0.0/8\", \"::1\"]\n"
    ))
    .await;
    let (mut c, _) = callgate_tests::Client::establish(&server, serde_json::json!({})).await;
    let r = xcap(&mut c, "a1", &format!("http://127.0.0.1:{port}/xcap-root/doc")).await;
    assert_eq!((r["status"].as_str(), r["body"].as_str()), (Some("ACCEPTED"), Some("<ok/>")), "{r:?}");
    assert_eq!(count.load(Ordering::SeqCst), 1);
    let r = xcap(&mut c, "a2", &format!("http://localhost:{port}/xcap-root/doc")).await;
    assert_eq!((r["status"].as_str(), r["body"].as_str()), (Some("ACCEPTED"), Some("<ok/>")), "{r:?}");
    assert!(count.load(Ordering::SeqCst) >= 2);
    server.shutdown().await;

    // A range that does not cover the target allows nothing more.
    let server = start_server(&format!(
        "[xcap]\nallowed_base_urls = [\"http://127.0.0.1:{port}/xcap-root/\"]\n\
         [security]\nallowed_private_ranges = \"10.0.0.0/8, 169.254.169.254\"\n"
    ))
    .await;
    let before = count.load(Ordering::SeqCst);
    let (mut c, _) = callgate_tests::Client::establish(&server, serde_json::json!({})).await;
    let r = xcap(&mut c, "a3", &format!("http://127.0.0.1:{port}/xcap-root/doc")).await;
    assert_eq!(r["status"], "FAILED", "{r:?}");
    assert_eq!(count.load(Ordering::SeqCst), before);
    server.shutdown().await;
}

#[test]
fn allowed_private_ranges_checked() {
    use callgate_server::config::Config;
    let c = Config::from_toml("").unwrap();
    assert!(c.security.allowed_private_ranges.is_empty(), "nothing internal is reachable by default");
    let c = Config::from_toml("[security]\nallowed_private_ranges = [\"10.0.0.0/8\", \"fd00::/8\", \"127.0.0.1\"]")
        .unwrap();
    callgate_server::validate(&c).unwrap();
    for bad in ["10.0.0.0/33", "localhost", "10.0.0.0/8/8"] {
        let c = Config::from_toml(&format!("[security]\nallowed_private_ranges = [\"{bad}\"]")).unwrap();
        let e = callgate_server::validate(&c).unwrap_err().to_string();
        assert!(e.contains("security.allowed_private_ranges") && e.contains(bad), "{e}");
    }
}
