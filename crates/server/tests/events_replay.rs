//! The dead-letter file and `callgate events replay` with the real binary (issue 11 item 2):
//! a backend that answers every event 503 keeps the session's `ESTABLISHED` retrying and its
//! `DISCONNECTED` queued behind it; SIGTERM's shutdown waits until its deadline, then writes
//! both, in order, to `[hooks] dead_letter_file`. `callgate events replay FILE --config F`
//! then fails (exit 1) while the backend still refuses, and delivers both, with their
//! `eventId`s and `sequence`s, once it accepts.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callgate_tests::{Backend, Client, Reply};
use serde_json::{json, Value};

/// The binary with its JSON log collected; killed when dropped.
struct Callgate {
    child: Child,
    log: Arc<Mutex<Vec<Value>>>,
}

impl Callgate {
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
                sink.lock().unwrap().push(serde_json::from_str(&line).unwrap_or(Value::String(line)));
            }
        });
        Callgate { child, log }
    }

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
}

impl Drop for Callgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `callgate events replay FILE --config CONFIG`: (exit code, stdout, stderr).
fn replay(file: &std::path::Path, config: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(["events", "replay"])
        .arg(file)
        .arg("--config")
        .arg(config)
        .output()
        .expect("callgate events replay runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_dead_letters_undelivered_events_and_replay_redelivers_them() {
    let backend = Backend::start().await;
    backend.answer(|m, b| match m {
        "connect" => Reply::mirror(b),
        _ => Reply::json(503, json!({})),
    });
    let dir = std::env::temp_dir().join(format!("callgate-replay-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dead = dir.join("dead.jsonl");
    let _ = std::fs::remove_file(&dead);
    let config = dir.join("callgate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nws_bind = \"127.0.0.1:0\"\nhttp_bind = \"127.0.0.1:0\"\nshutdown_timeout_ms = 1000\n\
             [media]\nbind = \"127.0.0.1:0\"\n[sip]\nbind = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\n\
             [hooks]\nevent_attempts = 100000\nevent_retry_initial_delay_ms = 20\nevent_retry_max_delay_ms = 100\n\
             event_retry_total_ms = 3600000\ndead_letter_file = \"{}\"\n\
             [apps.backendApp]\nurl = \"{}\"\n",
            dead.display(),
            backend.url("hooks")
        ),
    )
    .unwrap();
    let mut callgate = Callgate::start(&config);
    let started = callgate.wait_log("callgate started").await;
    let ws: std::net::SocketAddr = started["ws_addr"].as_str().unwrap().parse().unwrap();
    let (client, user) = Client::establish_at(ws, json!({"appKey": "backendApp", "clientVersion": "2.0"})).await;
    let session = user["sessionId"].as_str().unwrap().to_string();
    // ESTABLISHED is being retried (same eventId each time).
    let deadline = Instant::now() + callgate_tests::WAIT;
    while backend.requests_for("ConnectionStatusEvent").len() < 3 {
        assert!(Instant::now() < deadline, "ESTABLISHED not retried: {:?}", backend.requests().len());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let tries = backend.requests_for("ConnectionStatusEvent");
    let established_id = tries[0].body["eventId"].clone();
    assert!(tries.iter().all(|r| r.body["eventId"] == established_id && r.body["sequence"] == 1), "{tries:?}");
    drop(client);

    let kill = Command::new("kill").arg("-TERM").arg(callgate.child.id().to_string()).status().unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = callgate.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0), "a shutdown that dead-letters what it could not deliver is complete");

    let lines: Vec<Value> = std::fs::read_to_string(&dead)
        .expect("the dead-letter file")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary: Vec<(String, u64)> = lines
        .iter()
        .map(|l| (l["body"]["status"].as_str().unwrap().to_string(), l["sequence"].as_u64().unwrap()))
        .collect();
    assert_eq!(summary, vec![("ESTABLISHED".into(), 1), ("DISCONNECTED".into(), 2)], "{lines:#?}");
    assert_eq!(lines[0]["eventId"], established_id);
    assert!(lines[0]["attempts"].as_u64().unwrap() >= 3, "{}", lines[0]);
    assert!(lines.iter().all(|l| l["sessionId"] == session && l["app"] == "backendApp"));

    // The backend still refuses: nothing delivered, the session's second event held back.
    let (code, out, err) = replay(&dead, &config);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("0 delivered, 2 failed"), "{out}");
    assert!(err.contains("held back"), "{err}");

    backend.answer(|_, b| Reply::mirror(b));
    let before = backend.requests().len();
    let (code, out, err) = replay(&dead, &config);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 delivered, 0 failed"), "{out}");
    let got: Vec<Value> = backend.requests()[before..].iter().map(|r| r.body.clone()).collect();
    let want: Vec<Value> = lines.iter().map(|l| l["body"].clone()).collect();
    assert_eq!(got, want, "the replay sends the bodies as first sent, in order");
    let _ = std::fs::remove_dir_all(&dir);
}
