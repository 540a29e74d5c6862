//! The console on the HTTP port (crates/server/src/console.rs): the page and the SDK served by
//! callgate, and the live hook log (`GET /console/hooks`, server-sent events) read while a real
//! WebSocket client drives hooks to a real recording backend.

use std::net::SocketAddr;
use std::time::Duration;

use callgate_tests::{start_server, Backend, Client, Reply};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Bound of every wait (the machine is shared: generous, never a timing assertion).
const WAIT: Duration = Duration::from_secs(10);
const TOKEN: &str = "console-admin-token-1";

fn request(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> String {
    // HTTP/1.0: the answer (a stream of events too) is delimited by the connection's end, not chunked.
    let mut req = format!("GET {path} HTTP/1.0\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req + "\r\n"
}

/// A GET answered and closed: (status, headers, body).
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request(addr, path, headers).as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await.expect("answer in time").unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// An open hook log: reads its server-sent events.
struct Feed {
    lines: BufReader<TcpStream>,
    /// Every `hook` record read so far.
    hooks: Vec<Value>,
}

impl Feed {
    async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Feed {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request(addr, path, headers).as_bytes()).await.unwrap();
        let mut feed = Feed { lines: BufReader::new(s), hooks: Vec::new() };
        let status = feed.line().await;
        assert!(status.starts_with("HTTP/1.") && status.contains(" 200 "), "hook log refused: {status}");
        let mut head = String::new();
        loop {
            let l = feed.line().await;
            if l.is_empty() {
                break;
            }
            head.push_str(&l.to_ascii_lowercase());
        }
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        let (event, data) = feed.event().await;
        assert_eq!((event.as_str(), data.as_str()), ("open", "{}"));
        feed
    }

    async fn line(&mut self) -> String {
        let mut l = String::new();
        let n = tokio::time::timeout(WAIT, self.lines.read_line(&mut l)).await.expect("a line in time").unwrap();
        assert!(n > 0, "the hook log ended");
        l.trim_end_matches(['\r', '\n']).to_string()
    }

    /// The next event (keep-alive comments skipped): (event name, data).
    async fn event(&mut self) -> (String, String) {
        let (mut event, mut data) = (String::new(), String::new());
        loop {
            let l = self.line().await;
            if l.is_empty() {
                if !event.is_empty() || !data.is_empty() {
                    return (event, data);
                }
            } else if let Some(v) = l.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = l.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
    }

    /// Reads records until one for `method` matching `pred`; returns it.
    async fn wait_for(&mut self, method: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(h) = self.hooks.iter().find(|h| h["method"] == method && pred(h)) {
            return h.clone();
        }
        loop {
            let (event, data) = self.event().await;
            assert_ne!(event, "lagged", "records lost: {data}");
            if event != "hook" {
                continue;
            }
            let h: Value = serde_json::from_str(&data).expect("a hook record is JSON");
            self.hooks.push(h.clone());
            if h["method"] == method && pred(&h) {
                return h;
            }
        }
    }
}

fn connection(app: &str) -> Value {
    json!({"appKey": app, "clientVersion": "2.0", "custom": {"token": "custom-token-7", "room": "r1"},
           "sipLogin": "1001", "sipPassword": "hunter2-sip", "sipDomain": "127.0.0.1", "sipRegisterRequired": false})
}

#[tokio::test]
async fn hook_log_streams_each_hook_with_secrets_masked_and_needs_the_token() {
    let backend = Backend::start().await;
    // The backend refuses data messages with a reason, and says in its connect answer that such
    // a refusal fails the operation (restOnError FAIL); everything else is mirrored.
    backend.answer(|method, body| match method {
        "OnDataEvent" => Reply::json(403, json!({"status": 403, "reason": "No data today"})),
        "connect" => {
            let mut b = body.clone();
            b["restClientConfig"] = json!({"OnDataEvent": {"restOnError": "FAIL"}});
            Reply::mirror(&b)
        }
        _ => Reply::mirror(body),
    });
    let server = start_server(&format!(
        "[console]\nadmin_token = \"{TOKEN}\"\n[apps.backendApp]\nurl = \"{}\"\n",
        backend.url("hooks")
    ))
    .await;
    let http = server.http_addr;

    // Without the token, with a wrong one: 401, with a challenge.
    let (status, head, body) = get(http, "/console/hooks", &[]).await;
    assert_eq!(status, 401, "{body}");
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    assert!(body.contains("console token"), "{body}");
    assert_eq!(get(http, "/console/hooks?token=nope", &[]).await.0, 401);
    assert_eq!(get(http, "/console/hooks", &[("Authorization", "Bearer nope")]).await.0, 401);

    // With it: as a header, and as ?token= (what EventSource sends).
    let bearer = format!("Bearer {TOKEN}");
    let mut feed = Feed::open(http, "/console/hooks", &[("Authorization", &bearer)]).await;
    let mut by_query = Feed::open(http, &format!("/console/hooks?token={TOKEN}"), &[]).await;

    let (mut c, user) = Client::establish(&server, connection("backendApp")).await;
    let sid = user["sessionId"].as_str().unwrap().to_string();
    c.send("sendData", json!({"operationId": "op-1", "payload": {"m": "hi"}})).await;
    let st = c.expect("DataStatusEvent").await;
    assert_eq!(st.get("status").and_then(Value::as_str), Some("FAILED"), "{st:?}");
    assert_eq!(st.get("info").and_then(Value::as_str), Some("No data today"), "{st:?}");

    let connect = feed.wait_for("connect", |_| true).await;
    assert_eq!(connect["app"], "backendApp");
    assert_eq!(connect["session"], sid.as_str());
    assert_eq!(connect["backend"], "http");
    assert_eq!(connect["status"], 200);
    assert_eq!(connect["decision"], "ok");
    assert_eq!(connect["attempts"], 1);
    assert!(connect["latencyMs"].as_f64().is_some_and(|ms| ms >= 0.0), "{connect}");
    assert!(connect["time"].as_u64().is_some_and(|t| t > 1_600_000_000_000), "{connect}");
    assert_eq!(connect["body"]["sipLogin"], "1001", "the body sent is shown");
    assert_eq!(connect["body"]["sipPassword"], "<redacted>");
    assert_eq!(connect["body"]["custom"]["token"], "<redacted>");
    assert_eq!(connect["body"]["custom"]["room"], "r1");
    assert_eq!(connect["answer"]["sipPassword"], "<redacted>", "the answer is masked too");
    assert_eq!(connect["error"], Value::Null);
    assert_eq!(connect["answer"]["restClientConfig"]["OnDataEvent"]["restOnError"], "FAIL");

    let data = feed.wait_for("OnDataEvent", |_| true).await;
    assert_eq!(data["status"], 403);
    assert_eq!(data["decision"], "refused");
    assert_eq!(data["answer"], Value::Null);
    assert!(data["error"].as_str().is_some_and(|e| e.contains("403")), "{data}");
    assert_eq!(data["body"]["operationId"], "op-1");

    // Events (at least once: sequence and eventId in the body sent).
    let ev = feed.wait_for("ConnectionStatusEvent", |h| h["body"]["status"] == "ESTABLISHED").await;
    assert_eq!((ev["status"].as_u64(), ev["decision"].as_str()), (Some(200), Some("ok")));
    assert!(ev["body"]["eventId"].as_str().is_some_and(|id| !id.is_empty()), "{ev}");
    assert_eq!(ev["body"]["sipPassword"], "<redacted>");

    // The second listener got the same records; nowhere is a secret in clear.
    by_query.wait_for("OnDataEvent", |_| true).await;
    for h in feed.hooks.iter().chain(&by_query.hooks) {
        let text = h.to_string();
        assert!(!text.contains("hunter2-sip") && !text.contains("custom-token-7"), "a secret in the log: {text}");
    }
    // The backend itself got them (the log masks, the hooks do not).
    assert_eq!(backend.wait_for("connect", |_| true).await.body["sipPassword"], "hunter2-sip");

    drop(c);
    feed.wait_for("ConnectionStatusEvent", |h| h["body"]["status"] == "DISCONNECTED").await;
    server.shutdown().await;
}

#[tokio::test]
async fn hook_log_without_a_token_is_loopback_only_and_off_with_rest_credentials() {
    // Default: no token, REST API open on loopback: the log is open to loopback clients with a
    // loopback or IP Host, not to a page on a rebound DNS name.
    let server = start_server("").await;
    let http = server.http_addr;
    let (status, _, body) = get(http, "/console/config.json", &[]).await;
    assert_eq!(status, 200);
    let cfg: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(cfg["hookLog"], "loopback");
    assert_eq!(cfg["wsPort"], server.ws_addr.port());
    let mut feed = Feed::open(http, "/console/hooks", &[]).await;
    let (status, _, body) = get(http, "/console/hooks", &[("Host", "rebound.example:8081")]).await;
    assert_eq!(status, 403, "{body}");
    // The built-in EchoApp (defaultApp) answers in process: shown as such.
    let (_c, _) = Client::establish(&server, json!({"clientVersion": "2.0", "sipPassword": "x-secret-x"})).await;
    let connect = feed.wait_for("connect", |_| true).await;
    assert_eq!((connect["app"].as_str(), connect["backend"].as_str()), (Some("defaultApp"), Some("in-process")));
    assert_eq!((connect["status"].clone(), connect["decision"].as_str()), (Value::Null, Some("ok")));
    assert_eq!(connect["body"]["sipPassword"], "<redacted>");
    server.shutdown().await;

    // REST API credentials and no console token: the log is off, and says what to set.
    let server = start_server("[rest_api]\ntokens = [\"rest-token\"]\n").await;
    let (status, _, body) = get(server.http_addr, "/console/hooks", &[]).await;
    assert_eq!(status, 403);
    assert!(body.contains("admin_token"), "{body}");
    assert_eq!(get(server.http_addr, "/console/hooks", &[("Authorization", "Bearer rest-token")]).await.0, 403);
    server.shutdown().await;
}

#[tokio::test]
async fn page_and_sdk_are_served_by_callgate_and_listeners_are_bounded() {
    let server = start_server("[console]\nmax_listeners = 1\n").await;
    let http = server.http_addr;
    for path in ["/", "/console/"] {
        let (status, head, body) = get(http, path, &[]).await;
        assert_eq!(status, 200, "{path}");
        assert!(head.contains("content-type: text/html"), "{head}");
        assert!(head.contains("content-security-policy: default-src 'none'"), "{head}");
        assert!(body.contains("<script src=\"/console/sdk/flashphoner.js\">"), "{body}");
        assert!(!body.contains("http://") && !body.contains("https://"), "the page names no other site");
    }
    let (status, head, js) = get(http, "/console/console.js", &[]).await;
    assert_eq!(status, 200);
    assert!(head.contains("application/javascript"), "{head}");
    assert!(js.contains("Flashphoner.createSession") && js.contains("EventSource"));
    assert_eq!(get(http, "/console/console.css", &[]).await.0, 200);
    let cfg: Value = serde_json::from_str(&get(http, "/console/config.json", &[]).await.2).unwrap();
    let (status, _, sdk) = get(http, "/console/sdk/flashphoner.js", &[]).await;
    if cfg["sdk"] == true {
        assert_eq!(status, 200);
        assert!(sdk.contains("createSession") && sdk.len() > 100_000, "the official bundle");
    } else {
        // Built without `npm ci --prefix console`: the page and this say how to get it.
        assert_eq!(status, 404);
        assert!(sdk.contains("npm ci --prefix console"), "{sdk}");
    }
    // One listener at most here: a second is refused at once, the first keeps going.
    let _first = Feed::open(http, "/console/hooks", &[]).await;
    let (status, _, body) = get(http, "/console/hooks", &[]).await;
    assert_eq!(status, 503, "{body}");
    server.shutdown().await;

    let server = start_server("[console]\nenabled = false\n").await;
    assert_eq!(get(server.http_addr, "/", &[]).await.0, 404);
    assert_eq!(get(server.http_addr, "/console/hooks", &[]).await.0, 404);
    server.shutdown().await;
}
