//! The example backends of `examples/` (issue 13 item 5) as real processes against the real
//! server: `node examples/node-backend/server.js` and `python3 -m uvicorn` serving
//! `examples/python-backend/app.py`, each on a free 127.0.0.1 port, with callgate's apps pointing
//! at them, every hook signed (Standard Webhooks) and checked by the backends, protocol clients,
//! str0m "browsers", a sipp UAS; then `callgate hooks test` (this crate's binary) passes against
//! both. A missing `node`, `python3` or FastAPI fails the test
//! with what to install, never skips it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use callgate_tests::peers::Sipp;
use callgate_tests::sip_fixtures::call_msg;
use callgate_tests::webrtc::FakeBrowser;
use callgate_tests::{http_post, http_post_to, start_server, Client};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bound on a backend's start (Python imports FastAPI first) and on the waits for its state.
const START: Duration = Duration::from_secs(30);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// `program` on PATH, or a panic saying what to install.
fn require(program: &str, what: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{program}` is not on PATH: the example backends' tests need {what}"))
}

/// A free TCP port on 127.0.0.1 (bound, then released for the backend to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A directory of its own for a test's files (configs, logs), removed when dropped (a failing
/// test prints the backend's log first).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("callgate-examples-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An example backend process; killed when dropped. Its stdout and stderr go to `log`.
struct Example {
    name: &'static str,
    child: Child,
    log: PathBuf,
    addr: SocketAddr,
}

impl Example {
    fn spawn(name: &'static str, mut cmd: Command, port: u16, dir: &Path) -> Example {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        cmd.stdin(Stdio::null()).stdout(out.try_clone().unwrap()).stderr(out);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start the {name} backend: {e}"));
        Example { name, child, log, addr: SocketAddr::from(([127, 0, 0, 1], port)) }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `GET /health` answers 200; panics with the backend's log if it exits first.
    async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + START;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the {} backend exited ({status}) before answering; its log:\n{}", self.name, self.log_text());
            }
            if let Ok((200, _)) = http_get(self.addr, "/health").await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the {} backend did not answer within {START:?}; its log:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on `addr`: (status, body). An error while the backend is still starting.
async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await??;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

/// The Standard Webhooks secret callgate signs with and the examples check (`WEBHOOK_SECRETS`).
const SECRET: &str = "whsec_ZXhhbXBsZXMtdGVzdC1zZWNyZXQtMzItYnl0ZXM=";

/// callgate's `[hooks]` section that signs every hook with [`SECRET`].
fn signing_toml() -> String {
    format!("[hooks]\nwebhook_secrets = [\"{SECRET}\"]\n")
}

/// `callgate hooks test <url> --app <app> --config <signing config>` (the real binary): (exit
/// code, stdout and stderr).
async fn hooks_test(url: String, app: &'static str, dir: &Path) -> (i32, String) {
    let config = dir.join("callgate.toml");
    std::fs::write(&config, signing_toml()).unwrap();
    let run = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_callgate"))
            .args(["hooks", "test", &url, "--app", app, "--config"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    });
    let out = tokio::time::timeout(Duration::from_secs(120), run).await.expect("hooks test ends").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().expect("an exit code"), stdout + &String::from_utf8_lossy(&out.stderr))
}

/// Asserts `hooks test` passed, the connect answer was read and the badly signed request refused.
fn assert_passed(code: i32, table: &str) {
    assert_eq!(code, 0, "{table}");
    assert!(table.contains("0 violations"), "{table}");
    assert!(row(table, "connect").contains("restClientConfig read"), "{table}");
    let check = table.lines().find(|l| l.contains("wrong signature")).expect("a signature row");
    assert!(check.contains("401") && check.contains("refused, as a backend that verifies"), "{check}");
}

/// An unsigned hook straight to the backend is refused.
async fn assert_unsigned_refused(backend: &Example) {
    let (status, text) = http_post_to(backend.addr, "/hooks/connect", r#"{"custom":{"token":"x"}}"#, None).await;
    assert_eq!((status, text.as_str()), (401, r#"{"status":401,"reason":"Missing signature"}"#));
}

/// The table row of `method` printed by `hooks test`.
fn row<'a>(table: &'a str, method: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(method))
        .unwrap_or_else(|| panic!("no row for {method} in\n{table}"))
}

fn connection(app: &str, custom: Value) -> Value {
    json!({"appKey": app, "mediaProviders": ["WebRTC"], "clientVersion": "2.0", "clientOSVersion": "5.0",
           "clientBrowserVersion": "test", "msePacketizationVersion": 2, "custom": custom, "clientInfo": {}})
}

// ----------------------------------------------------------------------------------------------
// Node: token auth, injected and hidden SIP credentials, click-to-call

const SIP_FIELDS: [&str; 6] =
    ["sipLogin", "sipAuthenticationName", "sipPassword", "sipDomain", "sipOutboundProxy", "sipPort"];

#[tokio::test(flavor = "multi_thread")]
async fn node_backend_checks_tokens_hides_the_injected_sip_account_and_places_click_to_call_calls() {
    let node = require("node", "Node.js 20 (the Debian package nodejs, or nodejs.org)");
    let dir = Scratch::new("node");
    // Answers two calls (the page's, then the click-to-call), hanging each up itself a moment
    // after the ACK (as tests/calls.rs does).
    let sipp = Sipp::scenario("uas_answer_remote_bye.xml")
        .calls(2)
        .pause(Duration::from_millis(300))
        .timeout(Duration::from_secs(20))
        .spawn()
        .expect("sipp starts (run `make deps`)");
    let port = free_port();
    let server = start_server(&format!(
        "[sip]\nbind = \"127.0.0.1:0\"\n[apps.clickToCall]\nurl = \"http://127.0.0.1:{port}/hooks\"\n{}",
        signing_toml()
    ))
    .await;
    // The backend's own table: the SIP account of alice is the sipp UAS's user 3000. "example" is
    // the token of the connect body `callgate hooks test` sends, so the tester checks the real
    // connect answer (restClientConfig, clientExclude) instead of a refusal.
    let config = json!({
        "appKey": "clickToCall",
        "callgateRestUrl": format!("http://{}", server.http_addr),
        "tokens": {"alice-token": "alice", "example": "alice"},
        "users": {"alice": {"sipLogin": "3000", "sipPassword": "alice-sip-secret", "sipDomain": "127.0.0.1",
                            "sipOutboundProxy": "127.0.0.1", "sipPort": sipp.local_addr().port(),
                            "callee": "5000"}}
    });
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let mut cmd = Command::new(node);
    cmd.arg(repo_root().join("examples/node-backend/server.js"))
        .env("CONFIG", &config_path)
        .env("PORT", port.to_string())
        .env("WEBHOOK_SECRETS", SECRET);
    let mut backend = Example::spawn("node", cmd, port, &dir);
    backend.wait_ready().await;
    assert_unsigned_refused(&backend).await;

    // A wrong token and no token: refused with the backend's reason, then closed.
    for custom in [json!({"token": "wrong"}), json!({})] {
        let mut c = Client::connect(&server).await;
        c.send("connection", connection("clickToCall", custom)).await;
        let fail = c.expect("fail").await;
        assert_eq!(
            (fail["apiMethod"].as_str(), fail["info"].as_str()),
            (Some("ConnectionStatusEvent"), Some("Invalid token"))
        );
        c.expect_closed().await;
    }

    // The right token: in, with the backend's SIP account (not the one the client sent), which
    // the client never sees.
    let mut conn = connection("clickToCall", json!({"token": "alice-token"}));
    conn["sipLogin"] = "9999".into();
    conn["sipPassword"] = "client-chosen".into();
    let (mut client, user_data) = Client::establish(&server, conn).await;
    for f in SIP_FIELDS {
        assert!(!user_data.contains_key(f), "getUserData carries {f}: {user_data:?}");
    }
    assert_eq!(user_data["status"], "ESTABLISHED");
    let seen = serde_json::to_string(&client.seen).unwrap();
    assert!(!seen.contains("alice-sip-secret") && !seen.contains("\"3000\""), "the client saw the SIP account: {seen}");
    let session = user_data["sessionId"].as_str().unwrap();
    let (status, found) =
        http_post(&server, "/rest-api/connection/find", &json!({"sessionId": session}).to_string(), None).await;
    assert_eq!(status, 200, "{found}");
    let found: Value = serde_json::from_str(&found).unwrap();
    assert_eq!(
        (found[0]["sipLogin"].as_str(), found[0]["sipDomain"].as_str()),
        (Some("3000"), Some("127.0.0.1")),
        "the session carries the backend's account: {found}"
    );

    // The page calls through the account it cannot see, and the backend picks the callee (the
    // user's `callee`, under OVERWRITE) whatever the page dialled. sipp answers, then hangs up.
    client.send("call", call_msg("b1", "override_by_rest")).await;
    for (message, status) in [("talk", "ESTABLISHED"), ("finish", "FINISH")] {
        let m = client.expect(message).await;
        assert_eq!((m["callId"].as_str(), m["status"].as_str()), (Some("b1"), Some(status)), "{m:?}");
    }

    // Click-to-call: refused without a known token or with a bad callee, then placed.
    let (status, text) =
        http_post_to(backend.addr, "/click-to-call", r#"{"callee":"3001"}"#, Some("Bearer nope")).await;
    assert_eq!((status, text.as_str()), (401, r#"{"status":401,"reason":"Invalid token"}"#));
    let (status, text) =
        http_post_to(backend.addr, "/click-to-call", r#"{"callee":"30 01@x"}"#, Some("Bearer alice-token")).await;
    assert_eq!(status, 400, "{text}");
    let (status, text) =
        http_post_to(backend.addr, "/click-to-call", r#"{"callee":"3001"}"#, Some("Bearer alice-token")).await;
    assert_eq!(status, 200, "{text}\n{}", backend.log_text());
    let call_id = serde_json::from_str::<Value>(&text).unwrap()["callId"].as_str().expect("a callId").to_string();

    // sipp answers, then hangs up: the call ends normally. Both calls came from alice's account.
    let outcome = sipp.wait().await;
    outcome.assert_success();
    let invites: Vec<String> = outcome.received().into_iter().filter(|m| m.starts_with("INVITE ")).collect();
    assert_eq!(invites.len(), 2, "{invites:?}");
    assert!(invites[0].starts_with("INVITE sip:5000@127.0.0.1 SIP/2.0"), "the backend's callee: {}", invites[0]);
    assert!(invites[1].starts_with("INVITE sip:3001@127.0.0.1 SIP/2.0"), "{}", invites[1]);
    for invite in &invites {
        assert!(invite.lines().any(|l| l.starts_with("From:") && l.contains("sip:3000@")), "{invite}");
    }
    let deadline = tokio::time::Instant::now() + START;
    let statuses = loop {
        let (status, text) = http_get(backend.addr, &format!("/click-to-call/{call_id}")).await.unwrap();
        assert_eq!(status, 200, "{text}");
        let statuses: Vec<String> = serde_json::from_str::<Value>(&text).unwrap()["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap_or("").to_string())
            .collect();
        if statuses.iter().any(|s| s == "FINISH" || s == "FAILED") {
            break statuses;
        }
        assert!(tokio::time::Instant::now() < deadline, "the call never ended: {statuses:?}\n{}", backend.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let established = statuses.iter().position(|s| s == "ESTABLISHED").expect("ESTABLISHED");
    assert_eq!(statuses.last().map(String::as_str), Some("FINISH"), "{statuses:?}");
    assert!(established < statuses.len() - 1 && !statuses.contains(&"FAILED".to_string()), "{statuses:?}");
    drop(client);

    // The backend logs each hook it gets.
    let log = backend.log_text();
    for line in
        ["hook connect", "-> 403 Invalid token", "-> 200 user=alice", "-> 200 callee=\"5000\"", "hook CallStatusEvent"]
    {
        assert!(log.contains(line), "no {line:?} in the backend's log:\n{log}");
    }

    // `callgate hooks test` passes against it, signatures included.
    let (code, table) = hooks_test(backend.url(), "clickToCall", &dir).await;
    assert_passed(code, &table);
    assert!(row(&table, "call").contains("OVERWRITE takes callee"), "{table}");
    server.shutdown().await;
}

// ----------------------------------------------------------------------------------------------
// Python: allow-list, rename on publish, event log

fn publish_msg(id: &str, name: &str, sdp: &str) -> Value {
    json!({"mediaSessionId": id, "name": name, "published": true, "hasVideo": true, "hasAudio": true,
           "status": "PENDING", "record": false, "mediaProvider": "WebRTC", "sdp": sdp, "custom": {}})
}

fn play_msg(id: &str, name: &str, sdp: &str) -> Value {
    json!({"mediaSessionId": id, "name": name, "published": false, "hasVideo": true, "hasAudio": true,
           "status": "PENDING", "record": false, "mediaProvider": "WebRTC", "sdp": sdp})
}

/// The next stream status of `id`, or its `setRemoteSDP` answer: (message, data).
async fn next_of(c: &mut Client, id: &str) -> (String, Vec<Value>) {
    loop {
        let (m, data) = c.next().await.expect("connection open");
        let ours = match m.as_str() {
            "setRemoteSDP" => data[0] == id,
            "notifyStreamStatusEvent" => data[0]["mediaSessionId"] == id,
            _ => false,
        };
        if ours {
            return (m, data);
        }
    }
}

/// Starts `msg` (publish or play) with browser `b`; returns the status after the answer.
async fn start_stream(c: &mut Client, kind: &str, id: &str, msg: Value, b: &FakeBrowser) -> Map<String, Value> {
    c.send(kind, msg).await;
    let (m, data) = next_of(c, id).await;
    assert_eq!(m, "setRemoteSDP", "{data:?}");
    b.accept(data[1].as_str().unwrap());
    let (m, data) = next_of(c, id).await;
    assert_eq!(m, "notifyStreamStatusEvent");
    data[0].as_object().unwrap().clone()
}

/// The refusal of a stream the backend does not allow.
async fn refused(c: &mut Client, kind: &str, id: &str, msg: Value) -> Map<String, Value> {
    c.send(kind, msg).await;
    let (m, data) = next_of(c, id).await;
    assert_eq!(m, "notifyStreamStatusEvent", "refused before any answer: {data:?}");
    data[0].as_object().unwrap().clone()
}

fn event_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn python_backend_allows_listed_streams_renames_them_and_logs_every_event() {
    let python = require("python3", "Python 3 with FastAPI and uvicorn (`make deps`)");
    let check = Command::new(&python).args(["-c", "import fastapi, uvicorn"]).output().unwrap();
    assert!(
        check.status.success(),
        "FastAPI/uvicorn are not installed for python3 (`make deps`, or pip install -r \
         examples/python-backend/requirements.txt): {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let dir = Scratch::new("python");
    let events = dir.join("events.jsonl");
    let port = free_port();
    let server =
        start_server(&format!("[apps.streams]\nurl = \"http://127.0.0.1:{port}/hooks\"\n{}", signing_toml())).await;
    let mut cmd = Command::new(python);
    cmd.args(["-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", &port.to_string(), "--app-dir"])
        .arg(repo_root().join("examples/python-backend"))
        .env("ALLOWED_STREAMS", "lobby,stage")
        .env("EVENT_LOG", &events)
        .env("WEBHOOK_SECRETS", SECRET)
        // No __pycache__ left in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let mut backend = Example::spawn("python", cmd, port, &dir);
    backend.wait_ready().await;
    assert_unsigned_refused(&backend).await;

    // An allowed name is published under the backend's name: "<user>-lobby".
    let (mut pc, pud) = Client::establish(&server, connection("streams", json!({"user": "alice"}))).await;
    let pb = FakeBrowser::publisher().await;
    let st = start_stream(&mut pc, "publishStream", "pub-1", publish_msg("pub-1", "lobby", &pb.offer), &pb).await;
    assert_eq!((st["status"].as_str(), st["name"].as_str()), (Some("PUBLISHING"), Some("alice-lobby")), "{st:?}");
    let (status, body) = http_post(&server, "/rest-api/stream/find", r#"{"name":"alice-lobby"}"#, None).await;
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((list[0]["mediaSessionId"].as_str(), list[0]["published"].as_bool()), (Some("pub-1"), Some(true)));
    let (status, _) = http_post(&server, "/rest-api/stream/find", r#"{"name":"lobby"}"#, None).await;
    assert_eq!(status, 404, "nothing is published under the name the client asked for");

    // Another user plays it under that name, and media flows.
    let (mut vc, vud) = Client::establish(&server, connection("streams", json!({"user": "bob"}))).await;
    let vb = FakeBrowser::player().await;
    let st = start_stream(&mut vc, "playStream", "play-1", play_msg("play-1", "alice-lobby", &vb.offer), &vb).await;
    assert_eq!(st["status"], "PLAYING", "{st:?}");
    vb.wait("video from the renamed stream", |s| s.video_frames >= 3).await;

    // Names off the list are refused with the backend's reason, publish and play alike.
    let b = FakeBrowser::publisher().await;
    let st = refused(&mut pc, "publishStream", "pub-2", publish_msg("pub-2", "secret", &b.offer)).await;
    assert_eq!((st["status"].as_str(), st["info"].as_str()), (Some("FAILED"), Some("Stream name not allowed: secret")));
    let b = FakeBrowser::player().await;
    let st = refused(&mut vc, "playStream", "play-2", play_msg("play-2", "alice-secret", &b.offer)).await;
    assert_eq!(
        (st["status"].as_str(), st["info"].as_str()),
        (Some("FAILED"), Some("Stream name not allowed: alice-secret"))
    );
    drop((pc, vc, pb, vb));

    // Every event of both sessions lands in the log file, once, in order, up to DISCONNECTED.
    let sessions = [pud["sessionId"].as_str().unwrap().to_string(), vud["sessionId"].as_str().unwrap().to_string()];
    let disconnected = |lines: &[Value], s: &str| {
        lines.iter().any(|l| {
            l["method"] == "ConnectionStatusEvent"
                && l["body"]["sessionId"] == s
                && l["body"]["status"] == "DISCONNECTED"
        })
    };
    let deadline = tokio::time::Instant::now() + START;
    let lines = loop {
        let lines = event_lines(&events);
        if sessions.iter().all(|s| disconnected(&lines, s)) {
            break lines;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "events missing from the log: {lines:#?}\n{}",
            backend.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let has =
        |method: &str, pred: &dyn Fn(&Value) -> bool| lines.iter().any(|l| l["method"] == method && pred(&l["body"]));
    assert!(has("ConnectionStatusEvent", &|b| b["sessionId"] == sessions[0] && b["status"] == "ESTABLISHED"));
    assert!(has("StreamStatusEvent", &|b| b["mediaSessionId"] == "pub-1"
        && b["status"] == "PUBLISHING"
        && b["name"] == "alice-lobby"));
    assert!(has("StreamStatusEvent", &|b| b["mediaSessionId"] == "play-1" && b["status"] == "PLAYING"));
    assert!(has("StreamStatusEvent", &|b| b["mediaSessionId"] == "pub-2"
        && b["status"] == "FAILED"
        && b["info"] == "Stream name not allowed: secret"));
    let mut ids: Vec<&str> = lines.iter().map(|l| l["body"]["eventId"].as_str().expect("an eventId")).collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "an event logged twice");
    for s in &sessions {
        let seq: Vec<u64> = lines
            .iter()
            .filter(|l| l["body"]["sessionId"] == s.as_str())
            .map(|l| l["body"]["sequence"].as_u64().expect("a sequence"))
            .collect();
        assert!(seq.windows(2).all(|w| w[0] < w[1]), "{s}: {seq:?}");
    }
    assert!(backend.log_text().contains("hook publishStream"), "{}", backend.log_text());

    // `callgate hooks test` passes against it; its example stream name is not on the list.
    let (code, table) = hooks_test(backend.url(), "streams", &dir).await;
    assert_passed(code, &table);
    let publish = row(&table, "publishStream");
    assert!(publish.contains("refused") && publish.contains("Stream name not allowed: stream1"), "{publish}");
    server.shutdown().await;
}
