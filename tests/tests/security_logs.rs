//! Issue 11 item 3 (redaction): secrets never reach the log, `/metrics`, or the backend's
//! events beyond what the WCS contract puts there. This file's process installs a capturing
//! tracing subscriber at `trace` for every crate (callgate's and the HTTP, WebSocket and TLS
//! stacks': the most verbose log an operator can ask for), runs a session that puts secrets
//! through every path that logs client data (session-debug frames, a bug report, `pushLogs`
//! lines), hooks to an app with Basic credentials, and REST requests with a token and a Basic
//! password through the real server, then searches the log, `/metrics` and the hook bodies.
//! (A global subscriber: this file must stay one test in its own process.)

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine as _;
use callgate_tests::{http_post, start_server, Backend, Client, WAIT};
use serde_json::json;

const SIP_PASSWORD: &str = "sip-pw-LQ7x2Vd";
const REST_PASSWORD: &str = "rest-pw-Z9kT4q";
const TOKEN: &str = "rest-token-M3hW8p";
const APP_PASSWORD: &str = "app-pw-Hk2v9Q";
const CLIENT_TOKEN: &str = "client-tok-B7yR1c";
const CAMERA_PASSWORD: &str = "cam-pw-R4nD0m";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).to_string()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture() -> Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Captured::default();
        let w = log.clone();
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        // As the binary's `init_tracing` with `RUST_LOG=trace`.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish()
            .with(callgate_server::secrets::no_raw_payloads())
            .init();
        log
    })
    .clone()
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Waits (bounded) until the log contains `needle`.
async fn logged(log: &Captured, needle: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !log.text().contains(needle) {
        assert!(tokio::time::Instant::now() < deadline, "{needle:?} never logged");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn no_secret_in_logs_metrics_or_events() {
    let log = capture();
    let backend = Backend::start().await;
    let server = start_server(&format!(
        "[rest_api]\nusername = \"admin\"\npassword = \"{REST_PASSWORD}\"\ntokens = [\"{TOKEN}\"]\n\
         [apps.backendApp]\nurl = \"{}\"\nusername = \"hooks\"\npassword = \"{APP_PASSWORD}\"\n",
        backend.url("hooks")
    ))
    .await;
    let conn = json!({"appKey": "backendApp", "clientVersion": "2.0", "sipLogin": "3000",
                      "sipAuthenticationName": "3000", "sipPassword": SIP_PASSWORD,
                      "sipRegisterRequired": false, "custom": {"apiToken": CLIENT_TOKEN}});
    let (mut c, user_data) = Client::establish(&server, conn).await;
    let auth_token = user_data["authToken"].as_str().expect("getUserData has the authToken").to_string();
    backend.wait_for("ConnectionStatusEvent", |b| b["status"] == "ESTABLISHED").await;

    // Session debug: every client frame is logged, secrets masked.
    c.send("sessionDebug", json!({"command": "start"})).await;
    assert_eq!(c.expect("notifySessionDebugEvent").await["status"], "STARTED");
    c.send("sendData", json!({"operationId": "op-1", "payload": {"sipPassword": SIP_PASSWORD, "k": "v"}})).await;
    c.expect("DataStatusEvent").await;
    // A bug report is logged whole, secrets masked.
    c.send("submitBugReport", json!({"text": "it broke", "sipPassword": SIP_PASSWORD, "authToken": auth_token})).await;
    backend.wait_for("BugReportStatusEvent", |_| true).await;
    // The client's own log lines (free text), with secrets as the SDK would print them.
    let lines = format!(
        "Send: {{\"message\":\"connection\",\"data\":[{{\"sipPassword\":\"{SIP_PASSWORD}\",\"authToken\":\"{auth_token}\"}}]}}\n\
         GET /x?password={SIP_PASSWORD}&a=1\nAuthorization: Basic {}\nlast-line-marker",
        b64(&format!("3000:{SIP_PASSWORD}"))
    );
    c.send("pushLogs", json!({"logs": lines})).await;
    logged(&log, "last-line-marker").await;
    // An IP camera's URL with credentials (playStream of rtsp://): the frame, the playRTSP hook,
    // the statuses and the pull's own log lines see it masked. (Loopback is refused by the SSRF
    // guard here: the pull still starts, logs and fails.)
    let camera = format!("rtsp://viewer:{CAMERA_PASSWORD}@127.0.0.1:9/live");
    c.send("playStream", callgate_tests::streams::play_msg("cam-1", &camera, "v=0")).await;
    let st = callgate_tests::streams::stream_status(&mut c, "cam-1").await;
    assert_eq!(st["name"], "rtsp://***@127.0.0.1:9/live", "{st:?}");
    logged(&log, "RTSP pull failed").await;

    // The REST API with Basic, a bearer token, a wrong password, and a secret as filter.
    let basic = format!("Basic {}", b64(&format!("admin:{REST_PASSWORD}")));
    let bearer = format!("Bearer {TOKEN}");
    for auth in [&basic, &bearer] {
        let (status, body) = http_post(&server, "/rest-api/connection/find_all", "", Some(auth)).await;
        assert_eq!(status, 200, "{body}");
        assert!(!body.contains(SIP_PASSWORD), "the REST view hides the SIP password: {body}");
    }
    let wrong = format!("Basic {}", b64(&format!("admin:{REST_PASSWORD}-wrong")));
    assert_eq!(http_post(&server, "/rest-api/connection/find_all", "", Some(&wrong)).await.0, 401);
    let filter = json!({"sipPassword": SIP_PASSWORD}).to_string();
    let (status, _) = http_post(&server, "/rest-api/connection/find", &filter, Some(&bearer)).await;
    assert_eq!(status, 400, "a secret as filter is refused");

    let metrics = get(&server, "/metrics").await;
    drop(c);
    backend.wait_for("ConnectionStatusEvent", |b| b["status"] == "DISCONNECTED").await;
    server.shutdown().await;

    let text = log.text();
    for seen in ["callgate started", "client frame (session debug)", "bug report", "callgate::client_log", "<redacted>"]
    {
        assert!(text.contains(seen), "the capture sees {seen:?}: {text}");
    }
    let app_basic = b64(&format!("hooks:{APP_PASSWORD}"));
    let secrets = [
        SIP_PASSWORD,
        REST_PASSWORD,
        TOKEN,
        APP_PASSWORD,
        CLIENT_TOKEN,
        &auth_token,
        basic.trim_start_matches("Basic "),
        wrong.trim_start_matches("Basic "),
        &app_basic,
        &b64(&format!("3000:{SIP_PASSWORD}")),
        CAMERA_PASSWORD,
    ];
    for secret in secrets {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(secret)).collect();
        assert!(lines.is_empty(), "{secret} is in the log:\n{}", lines.join("\n"));
        assert!(!metrics.contains(secret), "{secret} is in /metrics");
    }

    // The backend: every hook carried the app's Basic credentials (so they were in play).
    let requests = backend.requests();
    assert!(requests.len() >= 6, "{requests:?}");
    for r in &requests {
        let auth = r.headers.get("authorization").and_then(|v| v.to_str().ok());
        assert_eq!(auth, Some(format!("Basic {app_basic}").as_str()), "{}", r.method);
    }
    // The WCS contract puts the connection object, with `sipPassword`, in `connect` and
    // `ConnectionStatusEvent` (spec/rest-hooks.md §4.1, §4.2; docs/hooks.md "Secrets"); the
    // client's own data goes to its backend as sent (`sendData` payload, bug report, logs).
    // No other hook carries the SIP password.
    let connect = &backend.requests_for("connect")[0];
    assert_eq!(connect.body["sipPassword"], SIP_PASSWORD, "the contract's connect body");
    let clients_own =
        ["connect", "ConnectionStatusEvent", "OnDataEvent", "DataStatusEvent", "submitBugReport", "pushLogs"];
    let others: Vec<&str> = requests.iter().map(|r| r.method.as_str()).filter(|m| !clients_own.contains(m)).collect();
    assert!(!others.is_empty(), "{requests:?}");
    for r in requests.iter().filter(|r| !clients_own.contains(&r.method.as_str())) {
        assert!(!r.body.to_string().contains(SIP_PASSWORD), "{}: {}", r.method, r.body);
    }
    // The camera's password reaches no hook at all (playRTSP, StreamStatusEvent: masked).
    assert_eq!(backend.requests_for("playRTSP").len(), 1);
    for r in &requests {
        assert!(!r.body.to_string().contains(CAMERA_PASSWORD), "{}: {}", r.method, r.body);
    }
}

/// `GET path` on the HTTP port: the whole answer.
async fn get(server: &callgate_server::RunningServer, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.http_addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", server.http_addr);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await.expect("answer in time").unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}
