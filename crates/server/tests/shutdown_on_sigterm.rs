//! The binary's graceful shutdown on SIGTERM (issue 10 item 5), against real peers: 50 live
//! calls to a sipp UAS that answers and waits for our BYE (25 placed by WebSocket clients, 25 by
//! `/rest-api/call/startup`), 100 WebSocket sessions, the recording backend of `callgate-tests`.
//! After SIGTERM: sipp receives 50 BYEs, the backend receives every call's end
//! (`CallStatusEvent` FINISH) and every session's `ConnectionStatusEvent DISCONNECTED`, every
//! client gets `fail "Server shutdown"` and a close, and the process exits with code 0 (a
//! complete shutdown; an incomplete one exits with 1) within `[server] shutdown_timeout_ms`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callgate_tests::peers::Sipp;
use callgate_tests::sip_fixtures::{call_msg, connection};
use callgate_tests::{http_post_to, Backend, Client};
use serde_json::{json, Value};

const CALLS: usize = 50;
const WS_CALLS: usize = 25;
const SESSIONS: usize = 100;
const SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(5000);

/// The binary, its log (JSON lines) collected by a thread; killed when dropped.
struct Callgate {
    child: Child,
    log: Arc<Mutex<Vec<Value>>>,
    /// Its config file's directory, removed on drop.
    dir: Option<std::path::PathBuf>,
}

impl Callgate {
    /// The binary on 127.0.0.1 ephemeral ports, JSON logs, app `backendApp` on `backend`.
    fn with_config(name: &str, backend: &Backend, shutdown_timeout: Duration) -> Callgate {
        let dir = std::env::temp_dir().join(format!("callgate-{name}-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("callgate.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nws_bind = \"127.0.0.1:0\"\nhttp_bind = \"127.0.0.1:0\"\nshutdown_timeout_ms = {}\n\
                 [media]\nbind = \"127.0.0.1:0\"\n[sip]\nbind = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\n\
                 [apps.backendApp]\nurl = \"{}\"\n",
                shutdown_timeout.as_millis(),
                backend.url("hooks")
            ),
        )
        .unwrap();
        let mut callgate = Callgate::start(&config);
        callgate.dir = Some(dir);
        callgate
    }

    fn start(config: &std::path::Path) -> Callgate {
        let mut child = Command::new(env!("CARGO_BIN_EXE_callgate"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the callgate binary starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (out, sink) = (child.stdout.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                sink.lock().unwrap().push(v);
            }
        });
        Callgate { child, log, dir: None }
    }

    /// The fields of the first log line whose message is `message`.
    async fn wait_log(&self, message: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self.log.lock().unwrap().iter().find(|l| l["fields"]["message"] == message).cloned();
            if let Some(l) = found {
                return l["fields"].clone();
            }
            assert!(Instant::now() < deadline, "no log line {message:?}: {:#?}", self.log.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn messages(&self) -> Vec<String> {
        self.log.lock().unwrap().iter().map(|l| l["fields"]["message"].as_str().unwrap_or("").to_string()).collect()
    }
}

impl Drop for Callgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn account(port: u16) -> Value {
    json!({"sipLogin": "3000", "sipPassword": "secret", "sipDomain": "127.0.0.1",
           "sipOutboundProxy": "127.0.0.1", "sipPort": port.to_string(), "sipRegisterRequired": false})
}

fn addr(fields: &Value, key: &str) -> SocketAddr {
    fields[key].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{key} in {fields}"))
}

fn count(backend: &Backend, method: &str, pred: impl Fn(&Value) -> bool) -> usize {
    backend.requests_for(method).iter().filter(|r| pred(&r.body)).count()
}

#[tokio::test]
async fn sigterm_byes_50_calls_closes_100_sessions_delivers_every_end_event_and_exits_0() {
    let backend = Backend::start().await;
    let sipp = Sipp::scenario(callgate_tests::peers::sipp_dir().join("uas_answer_local_bye.xml"))
        .calls(CALLS as u32)
        .timeout(Duration::from_secs(60))
        .spawn()
        .expect("sipp starts (run `make deps`)");
    let port = sipp.local_addr().port();
    let mut callgate = Callgate::with_config("sigterm", &backend, SHUTDOWN_TIMEOUT);
    let started = callgate.wait_log("callgate started").await;
    let (ws, http) = (addr(&started, "ws_addr"), addr(&started, "http_addr"));

    let mut clients = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let sip = if i < WS_CALLS { account(port) } else { json!({}) };
        let (mut c, _) = Client::establish_at(ws, connection(sip)).await;
        if i < WS_CALLS {
            c.send("call", call_msg(&format!("ws{i}"), "3001")).await;
        }
        clients.push(c);
    }
    for i in 0..CALLS - WS_CALLS {
        let mut body = account(port);
        for (k, v) in [("callee", "3001"), ("hasAudio", "true"), ("hasVideo", "false"), ("appKey", "backendApp")] {
            body[k] = v.into();
        }
        body["callId"] = format!("rest{i}").into();
        let (status, text) = http_post_to(http, "/rest-api/call/startup", &body.to_string(), None).await;
        assert_eq!(status, 200, "{text}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&backend, "CallStatusEvent", |b| b["status"] == "ESTABLISHED") < CALLS {
        assert!(Instant::now() < deadline, "calls not all established: {:?}", callgate.messages());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count(&backend, "ConnectionStatusEvent", |b| b["status"] == "ESTABLISHED"), SESSIONS);

    let sigterm = Instant::now();
    let kill = Command::new("kill").arg("-TERM").arg(callgate.child.id().to_string()).status().unwrap();
    assert!(kill.success());
    let exit = loop {
        if let Some(s) = callgate.child.try_wait().unwrap() {
            break s;
        }
        // A correctness bound on shutdown_timeout_ms (the process would exit 1 at it), with a
        // margin for a loaded machine; not a performance figure.
        assert!(sigterm.elapsed() < SHUTDOWN_TIMEOUT + Duration::from_secs(5), "still running after SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let elapsed = sigterm.elapsed();
    println!("SIGTERM -> exit {exit} in {} ms ({CALLS} calls, {SESSIONS} sessions)", elapsed.as_millis());
    if exit.code() != Some(0) {
        std::thread::sleep(Duration::from_millis(200)); // the last log lines
        let problems: Vec<Value> = callgate
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l["level"] != "INFO" && l["level"] != "DEBUG")
            .cloned()
            .collect();
        panic!("exit {exit} instead of a complete shutdown: {problems:#?}");
    }
    let complete = callgate.wait_log("shutdown complete").await;
    println!("the server's own measure: {complete}");

    let sipp = sipp.wait().await;
    sipp.assert_success();
    let byes = sipp.received().iter().filter(|m| m.starts_with("BYE ")).count();
    assert_eq!(byes, CALLS, "{}", sipp.report());
    // Every event was delivered before the process exited: nothing is awaited here.
    for id in (0..WS_CALLS).map(|i| format!("ws{i}")).chain((0..CALLS - WS_CALLS).map(|i| format!("rest{i}"))) {
        let ends = count(&backend, "CallStatusEvent", |b| b["callId"] == id.as_str() && b["status"] == "FINISH");
        assert_eq!(ends, 1, "{id}: one FINISH");
    }
    assert_eq!(count(&backend, "ConnectionStatusEvent", |b| b["status"] == "DISCONNECTED"), SESSIONS);
    for c in &mut clients {
        let fail = c.expect("fail").await;
        assert_eq!(
            (fail["apiMethod"].as_str(), fail["info"].as_str()),
            (Some("ConnectionStatusEvent"), Some("Server shutdown"))
        );
        c.expect_closed().await;
    }
}

#[tokio::test]
async fn a_shutdown_that_cannot_complete_exits_1_at_the_timeout_with_a_log_line_of_what_was_left() {
    let backend = Backend::start().await;
    let sipp = Sipp::scenario("uas_answer_local_bye.xml").timeout(Duration::from_secs(15)).spawn().unwrap();
    let timeout = Duration::from_millis(1000);
    let mut callgate = Callgate::with_config("sigint", &backend, timeout);
    let ws = addr(&callgate.wait_log("callgate started").await, "ws_addr");
    let (mut c, _) = Client::establish_at(ws, connection(account(sipp.local_addr().port()))).await;
    c.send("call", call_msg("lost", "3001")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&backend, "CallStatusEvent", |b| b["status"] == "ESTABLISHED") < 1 {
        assert!(Instant::now() < deadline, "the call was not established: {:?}", callgate.messages());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The peer goes away: our BYE is never answered (its transaction would last 32 s).
    drop(sipp);

    // SIGINT (Ctrl-C) shuts down like SIGTERM.
    let sigint = Instant::now();
    assert!(Command::new("kill").arg("-INT").arg(callgate.child.id().to_string()).status().unwrap().success());
    let exit = loop {
        if let Some(s) = callgate.child.try_wait().unwrap() {
            break s;
        }
        assert!(sigint.elapsed() < timeout + Duration::from_secs(5), "still running after the shutdown timeout");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!(
        "SIGINT -> exit {exit} in {} ms (shutdown_timeout_ms = {})",
        sigint.elapsed().as_millis(),
        timeout.as_millis()
    );
    assert_eq!(exit.code(), Some(1), "{:?}", callgate.messages());
    std::thread::sleep(Duration::from_millis(200)); // the last log lines
    let line = callgate.messages().into_iter().find(|m| m.starts_with("shutdown incomplete")).expect("the log says so");
    assert!(line.contains("1 calls not ended") && line.contains("exiting anyway with code 1"), "{line}");
    // The call was dropped at the deadline; its owner (and the backend) heard it.
    let ev = backend.wait_for("CallStatusEvent", |b| b["callId"] == "lost" && b["status"] == "FAILED").await;
    assert_eq!(ev.body["info"], "Server shutdown");
}
