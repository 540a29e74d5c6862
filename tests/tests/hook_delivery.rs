//! Hook delivery over a real loopback backend: Standard Webhooks signing.
//!
//! The verify snippets are taken from docs/hooks.md at test time (between the
//! `verify-node` / `verify-python` marker comments) and run with the real `node` and `python3`
//! against a request the dispatcher really sent: they must accept it with the right key (and
//! with a rotated key list) and reject it with a wrong key or a changed body.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use bytes::Bytes;
use callgate_hooks::*;
use parking_lot::Mutex;

const KEY_NEW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const KEY_OLD: &str = "whsec_c2VjcmV0LWtleS1vbGQtMTIzNDU2Nzg5MA==";
const KEY_WRONG: &str = "whsec_d3Jvbmcta2V5LXdyb25nLWtleS0xMjM0NTY=";

type Captured = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A backend on 127.0.0.1 that keeps each request's headers and exact body bytes.
async fn capture_backend() -> (String, Captured) {
    let seen: Captured = Arc::default();
    let app = axum::Router::new()
        .route(
            "/{*path}",
            axum::routing::post(|State(seen): State<Captured>, headers: HeaderMap, body: Bytes| async move {
                seen.lock().push((headers, body.clone()));
                // A mirroring backend, as WCS's EchoApp answers.
                ([("content-type", "application/json")], body)
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hooks"), seen)
}

/// The code block between `<!-- {marker}:begin -->` and `<!-- {marker}:end -->` in docs/hooks.md.
fn doc_snippet(marker: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/hooks.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let begin = format!("<!-- {marker}:begin -->");
    let end = format!("<!-- {marker}:end -->");
    let start = doc.find(&begin).unwrap_or_else(|| panic!("{begin} not in docs/hooks.md")) + begin.len();
    let stop = start + doc[start..].find(&end).unwrap_or_else(|| panic!("{end} not in docs/hooks.md"));
    let block = doc[start..stop].trim();
    let body = block.split_once('\n').expect("a fenced block").1;
    body.trim_end().strip_suffix("```").expect("a closing fence").to_string()
}

struct Request {
    id: String,
    timestamp: String,
    signature: String,
    body: Bytes,
}

/// Runs one doc snippet's verify function on `req` with `secret`: true when it accepts.
fn run_snippet(lang: &str, dir: &std::path::Path, secret: &str, req: &Request) -> bool {
    let body_file = dir.join("body.bin");
    std::fs::write(&body_file, &req.body).unwrap();
    let (program, script, code) = match lang {
        "node" => (
            "node",
            dir.join("verify.js"),
            format!(
                "{}\nconst e = process.env;\nconst ok = verifyWebhook(e.SECRET, e.MSG_ID, e.TS, e.SIG, \
                 require(\"fs\").readFileSync(e.BODY));\nprocess.exit(ok ? 0 : 3);\n",
                doc_snippet("verify-node")
            ),
        ),
        _ => (
            "python3",
            dir.join("verify.py"),
            format!(
                "{}\nimport os, sys\ne = os.environ\nok = verify_webhook(e['SECRET'], e['MSG_ID'], e['TS'], e['SIG'], \
                 open(e['BODY'], 'rb').read())\nsys.exit(0 if ok else 3)\n",
                doc_snippet("verify-python")
            ),
        ),
    };
    std::fs::write(&script, code).unwrap();
    let out = std::process::Command::new(program)
        .arg(&script)
        .env("SECRET", secret)
        .env("MSG_ID", &req.id)
        .env("TS", &req.timestamp)
        .env("SIG", &req.signature)
        .env("BODY", &body_file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    match out.status.code() {
        Some(0) => true,
        Some(3) => false,
        other => panic!("{program} failed ({other:?}): {}", String::from_utf8_lossy(&out.stderr)),
    }
}

async fn send_signed(secrets: &[&str]) -> Vec<Request> {
    let (url, seen) = capture_backend().await;
    let dispatcher =
        Dispatcher::new(DispatcherConfig { webhook_keys: WebhookKeys::parse(secrets).unwrap(), ..Default::default() })
            .unwrap();
    let cfg = AppConfig { url, ..Default::default() };
    let app = App::new("signed", &cfg, false, 16).unwrap();
    for i in 0..2 {
        let body = serde_json::to_vec(&serde_json::json!({
            "sessionId": "/127.0.0.1:5000/127.0.0.1:8080-s1", "status": "ESTABLISHED", "n": i, "text": "héllo \"q\""
        }))
        .unwrap();
        dispatcher.post(&app, HookMethod::ConnectionStatusEvent, Bytes::from(body)).await.unwrap();
    }
    let seen = seen.lock().clone();
    seen.into_iter()
        .map(|(h, body)| {
            let get = |n: &str| h.get(n).unwrap_or_else(|| panic!("no {n} header")).to_str().unwrap().to_string();
            Request {
                id: get("webhook-id"),
                timestamp: get("webhook-timestamp"),
                signature: get("webhook-signature"),
                body,
            }
        })
        .collect()
}

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("callgate-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn webhook_signatures_verify_with_the_docs_snippets() {
    let sent = send_signed(&[KEY_NEW]).await;
    assert_eq!(sent.len(), 2);
    assert_ne!(sent[0].id, sent[1].id, "each request has its own webhook-id");
    assert!(sent[0].id.starts_with("msg_"), "{}", sent[0].id);
    assert!(sent[0].timestamp.parse::<u64>().is_ok(), "{}", sent[0].timestamp);
    assert!(sent[0].signature.starts_with("v1,") && !sent[0].signature.contains(' '), "{}", sent[0].signature);
    let dir = scratch_dir("webhook-sig");
    for lang in ["node", "python"] {
        for req in &sent {
            assert!(run_snippet(lang, &dir, KEY_NEW, req), "{lang} rejects a good signature");
            assert!(!run_snippet(lang, &dir, KEY_WRONG, req), "{lang} accepts a wrong key");
            let tampered = Request { body: Bytes::from([&req.body[..], b" "].concat()), ..clone_req(req) };
            assert!(!run_snippet(lang, &dir, KEY_NEW, &tampered), "{lang} accepts a changed body");
            let other_ts = Request { timestamp: "1".into(), ..clone_req(req) };
            assert!(!run_snippet(lang, &dir, KEY_NEW, &other_ts), "{lang} accepts a changed timestamp");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn rotated_keys_each_verify() {
    let sent = send_signed(&[KEY_NEW, KEY_OLD]).await;
    let dir = scratch_dir("webhook-rot");
    for req in &sent {
        assert_eq!(req.signature.split(' ').count(), 2, "{}", req.signature);
        for lang in ["node", "python"] {
            assert!(run_snippet(lang, &dir, KEY_NEW, req), "{lang}: new key");
            assert!(run_snippet(lang, &dir, KEY_OLD, req), "{lang}: old key");
            assert!(!run_snippet(lang, &dir, KEY_WRONG, req), "{lang}: wrong key");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn no_secrets_no_webhook_headers() {
    let (url, seen) = capture_backend().await;
    let dispatcher = Dispatcher::new(DispatcherConfig::default()).unwrap();
    let cfg = AppConfig { url, ..Default::default() };
    let app = App::new("plain", &cfg, false, 16).unwrap();
    dispatcher.post(&app, HookMethod::ConnectionStatusEvent, Bytes::from_static(b"{}")).await.unwrap();
    let seen = seen.lock().clone();
    assert_eq!(seen.len(), 1);
    for h in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        assert!(seen[0].0.get(h).is_none(), "{h} sent without secrets");
    }
}

#[tokio::test]
async fn the_server_signs_its_hooks_from_the_config() {
    let (url, seen) = capture_backend().await;
    let server = callgate_tests::start_server(&format!(
        "[hooks]\nwebhook_secrets = [\"{KEY_NEW}\"]\n[apps.signedApp]\nurl = \"{url}\"\n"
    ))
    .await;
    let conn = serde_json::json!({"appKey": "signedApp", "clientVersion": "2.0"});
    let (c, _) = callgate_tests::Client::establish(&server, conn).await;
    drop(c);
    // connect, then ConnectionStatusEvent ESTABLISHED (and DISCONNECTED): bounded wait.
    let deadline = tokio::time::Instant::now() + callgate_tests::WAIT;
    while seen.lock().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the backend got {} request(s)", seen.lock().len());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let sent: Vec<(HeaderMap, Bytes)> = seen.lock().clone();
    let dir = scratch_dir("webhook-server");
    for (h, body) in sent {
        let get = |n: &str| h.get(n).unwrap_or_else(|| panic!("no {n} header")).to_str().unwrap().to_string();
        let req = Request {
            id: get("webhook-id"),
            timestamp: get("webhook-timestamp"),
            signature: get("webhook-signature"),
            body,
        };
        assert!(run_snippet("python", &dir, KEY_NEW, &req), "python rejects the server's signature");
        assert!(!run_snippet("python", &dir, KEY_WRONG, &req), "python accepts a wrong key");
    }
    let _ = std::fs::remove_dir_all(&dir);
    server.shutdown().await;
}

fn clone_req(r: &Request) -> Request {
    Request { id: r.id.clone(), timestamp: r.timestamp.clone(), signature: r.signature.clone(), body: r.body.clone() }
}

// ---- At-least-once event delivery (issue 11 item 2) ----

type Seen = Arc<Mutex<Vec<(String, HeaderMap, serde_json::Value)>>>;

/// A backend on 127.0.0.1 that can be stopped (its port then refuses connections) and started
/// again on the same port. Records `(method, headers, body)` and mirrors each body with 200.
struct Flaky {
    port: u16,
    seen: Seen,
    stop: Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

impl Flaky {
    async fn start() -> Flaky {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut f = Flaky { port, seen: Arc::default(), stop: None };
        f.serve(listener);
        f
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let app = axum::Router::new()
            .route(
                "/{*path}",
                axum::routing::post(
                    |State(seen): State<Seen>,
                     axum::extract::Path(path): axum::extract::Path<String>,
                     headers: HeaderMap,
                     body: Bytes| async move {
                        let method = path.rsplit('/').next().unwrap_or("").to_string();
                        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                        seen.lock().push((method, headers, json));
                        ([("content-type", "application/json")], body)
                    },
                ),
            )
            .with_state(self.seen.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap()
        });
        self.stop = Some((tx, task));
    }

    /// Stops listening and closes every connection: from now on connections are refused.
    async fn stop(&mut self) {
        let (tx, task) = self.stop.take().expect("running");
        let _ = tx.send(());
        tokio::time::timeout(callgate_tests::WAIT, task).await.expect("the backend stops").unwrap();
    }

    /// Listens again on the same port.
    async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }

    fn events(&self) -> Vec<(String, HeaderMap, serde_json::Value)> {
        let is_event = |m: &str| HookMethod::from_name(m).is_some_and(|m| m.kind() == HookKind::Event);
        self.seen.lock().iter().filter(|(m, _, _)| is_event(m)).cloned().collect()
    }
}

/// Checks the at-least-once contract on what the backend got: per session, duplicates only with
/// the same `eventId` (and body and `webhook-id`), `sequence` contiguous from 1, and first
/// arrivals in sequence order. Returns each session's events (first copies) in arrival order.
fn check_event_stream(
    got: &[(String, HeaderMap, serde_json::Value)],
) -> std::collections::BTreeMap<String, Vec<serde_json::Value>> {
    use std::collections::{BTreeMap, HashMap};
    let mut by_id: HashMap<String, serde_json::Value> = HashMap::new();
    let mut sessions: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for (method, headers, body) in got {
        let id = body["eventId"].as_str().unwrap_or_else(|| panic!("{method} without eventId: {body}")).to_string();
        assert!(id.starts_with("evt_"), "{id}");
        if let Some(h) = headers.get("webhook-id") {
            assert_eq!(h.to_str().unwrap(), id, "webhook-id is the eventId");
        }
        match by_id.get(&id) {
            Some(first) => assert_eq!(first, body, "a duplicate is the same event"),
            None => {
                by_id.insert(id, body.clone());
                let sid = body["sessionId"].as_str().unwrap().to_string();
                sessions.entry(sid).or_default().push(body.clone());
            }
        }
    }
    for (sid, evs) in &sessions {
        let seqs: Vec<u64> = evs.iter().map(|b| b["sequence"].as_u64().unwrap()).collect();
        let want: Vec<u64> = (1..=evs.len() as u64).collect();
        assert_eq!(seqs, want, "session {sid}: sequence contiguous from 1, in order");
    }
    sessions
}

/// The real server, sessions of real clients, and a backend that refuses connections for 5 s
/// while the sessions go on raising events (each `sendData` fails, so its `DataStatusEvent
/// FAILED` is raised during the outage; some sessions close: `DISCONNECTED`). Once the backend
/// is back on the same port every event arrives: no loss, order kept per session, duplicates
/// only as the same `eventId`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_down_for_5_s_loses_no_event() {
    const SESSIONS: usize = 4;
    const OPS: usize = 5;
    let mut backend = Flaky::start().await;
    let server = callgate_tests::start_server(&format!(
        "[hooks]\nwebhook_secrets = [\"{KEY_NEW}\"]\nevent_retry_initial_delay_ms = 100\nevent_retry_max_delay_ms = 1000\n\
         event_attempts = 100\n[apps.flakyApp]\nurl = \"{}\"\n",
        backend.url()
    ))
    .await;
    let mut clients = Vec::new();
    for _ in 0..SESSIONS {
        let conn = serde_json::json!({"appKey": "flakyApp", "clientVersion": "2.0"});
        clients.push(callgate_tests::Client::establish(&server, conn).await.0);
    }
    // Every session's ESTABLISHED arrived before the outage.
    let deadline = tokio::time::Instant::now() + callgate_tests::WAIT;
    while backend.events().len() < SESSIONS {
        assert!(tokio::time::Instant::now() < deadline, "ESTABLISHED events: {:?}", backend.events().len());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    backend.stop().await;
    let down_at = tokio::time::Instant::now();
    for (i, c) in clients.iter_mut().enumerate() {
        for op in 0..OPS {
            c.send("sendData", serde_json::json!({"operationId": format!("op-{op}"), "payload": {"i": i}})).await;
            // Its OnDataEvent hook cannot reach the backend (restOnError decides the status).
            c.expect("DataStatusEvent").await;
        }
    }
    // Half the sessions end during the outage.
    for c in clients.drain(..SESSIONS / 2) {
        drop(c);
    }
    // Nothing can have arrived: the port refuses.
    let during = backend.events().len();
    assert_eq!(during, SESSIONS, "no event arrived while down");
    tokio::time::sleep_until(down_at + std::time::Duration::from_secs(5)).await;
    backend.restart().await;
    drop(clients);
    // Every session's DISCONNECTED arrives (bounded wait: retries pause at most 1 s).
    let deadline = tokio::time::Instant::now() + callgate_tests::WAIT * 2;
    loop {
        let ended = backend
            .events()
            .iter()
            .filter(|(m, _, b)| m == "ConnectionStatusEvent" && b["status"] == "DISCONNECTED")
            .map(|(_, _, b)| b["sessionId"].as_str().unwrap().to_string())
            .collect::<std::collections::HashSet<_>>()
            .len();
        if ended == SESSIONS {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{ended} of {SESSIONS} DISCONNECTED arrived");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let got = backend.events();
    let sessions = check_event_stream(&got);
    assert_eq!(sessions.len(), SESSIONS);
    for (sid, evs) in &sessions {
        let first = &evs[0];
        assert_eq!((first["status"].as_str(), first["sequence"].as_u64()), (Some("ESTABLISHED"), Some(1)), "{sid}");
        assert_eq!(evs.last().unwrap()["status"], "DISCONNECTED", "{sid}: the end event comes last");
        let ops: Vec<&str> =
            evs.iter().filter(|b| b.get("operationId").is_some()).map(|b| b["operationId"].as_str().unwrap()).collect();
        let want: Vec<String> = (0..OPS).map(|i| format!("op-{i}")).collect();
        assert_eq!(ops, want, "{sid}: every DataStatusEvent of the outage, in the order raised");
    }
    let retries = got.len() - sessions.values().map(Vec::len).sum::<usize>();
    eprintln!("{} events, {retries} duplicate deliveries", got.len());
    server.shutdown().await;
}

fn engine_with(delivery: DeliveryConfig, dead_letter: Option<DeadLetter>) -> HookEngine {
    let dispatcher = Dispatcher::new(DispatcherConfig {
        timeout: Some(std::time::Duration::from_secs(2)),
        retries: 0,
        ..Default::default()
    })
    .unwrap();
    HookEngine::new(dispatcher, false).with_delivery(delivery, dead_letter)
}

fn event_job(n: u64, done: &Arc<Mutex<Vec<EventDone>>>) -> EventJob {
    let done = done.clone();
    EventJob {
        method: HookMethod::CallStatusEvent,
        origin: Origin::Client,
        data: serde_json::json!({"sessionId": "s1", "status": "ESTABLISHED", "n": n}).as_object().unwrap().clone(),
        then: Box::new(move |d| done.lock().push(d)),
    }
}

async fn wait_done(done: &Arc<Mutex<Vec<EventDone>>>, n: usize) {
    let deadline = tokio::time::Instant::now() + callgate_tests::WAIT;
    while done.lock().len() < n {
        assert!(tokio::time::Instant::now() < deadline, "{} of {n} events done", done.lock().len());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

fn read_dead(path: &std::path::Path) -> Vec<DeadEvent> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad dead-letter line {l}: {e}")))
        .collect()
}

/// 503 is retried `event_attempts` times with the same eventId, then the event goes to the
/// dead-letter file; a 400 is the backend's answer: neither retried nor dead-lettered. The
/// decision (restOnError) is taken once, on the last attempt.
#[tokio::test]
async fn retries_then_dead_letter_and_replay() {
    let backend = callgate_tests::Backend::start().await;
    backend.answer(|_, b| match b["n"].as_u64() {
        Some(2) => callgate_tests::Reply::json(400, serde_json::json!({})),
        _ => callgate_tests::Reply::json(503, serde_json::json!({})),
    });
    let dir = scratch_dir("dead-letter");
    let path = dir.join("dead.jsonl");
    let _ = std::fs::remove_file(&path);
    let delivery = DeliveryConfig {
        attempts: 3,
        initial_delay: std::time::Duration::from_millis(5),
        max_delay: std::time::Duration::from_millis(20),
        ..Default::default()
    };
    let engine = engine_with(delivery, Some(DeadLetter::open(&path, 1 << 20).unwrap()));
    let cfg = AppConfig { url: backend.url("h"), ..Default::default() };
    let app = Arc::new(App::new("dlApp", &cfg, false, 16).unwrap());
    let (rcc, _) = RestClientConfig::parse(Some(&serde_json::json!({"CallStatusEvent": {"restOnError": "FAIL"}})));
    let queue = EventQueue::spawn(engine.clone(), app.clone(), Arc::new(rcc), "s1".into());
    let done = Arc::new(Mutex::new(Vec::new()));
    for n in 1..=3 {
        queue.push(event_job(n, &done));
    }
    wait_done(&done, 3).await;
    for d in done.lock().iter() {
        assert_eq!(d.invocation.verdict, Verdict::ProceedWithErrorEvent, "FAIL: an ErrorEvent, as the seed says");
        assert!(
            d.data.get("sequence").is_none() && d.data.get("eventId").is_none(),
            "delivery fields stay out of the data"
        );
    }
    let reqs = backend.requests();
    let ns: Vec<u64> = reqs.iter().map(|r| r.body["n"].as_u64().unwrap()).collect();
    assert_eq!(ns, vec![1, 1, 1, 2, 3, 3, 3], "503 tried 3 times, 400 once, in order");
    let id_of = |n: u64| reqs.iter().find(|r| r.body["n"] == n).unwrap().body["eventId"].clone();
    assert!(reqs.iter().all(|r| r.body["eventId"] == id_of(r.body["n"].as_u64().unwrap())), "same eventId on retries");
    let dead = read_dead(&path);
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!((dead[0].sequence, dead[1].sequence), (1, 3));
    assert_eq!(dead[0].event_id, id_of(1).as_str().unwrap());
    assert_eq!((dead[0].attempts, dead[0].method.as_str(), dead[0].app.as_str()), (3, "CallStatusEvent", "dlApp"));
    assert!(dead[0].error.contains("503"), "{}", dead[0].error);
    assert_eq!(dead[0].body["n"], 1);

    // Replay (the library function behind `callgate events replay`): the backend is healthy now.
    backend.answer(|_, b| callgate_tests::Reply::mirror(b));
    let before = backend.requests().len();
    let report = callgate_hooks::dead_letter::replay(&path, engine.dispatcher(), &AppRegistry::new([])).await.unwrap();
    assert_eq!((report.delivered, report.failed.len()), (2, 0), "{:?}", report.failed);
    let replayed: Vec<serde_json::Value> = backend.requests()[before..].iter().map(|r| r.body.clone()).collect();
    assert_eq!(replayed, vec![dead[0].body.clone().into(), serde_json::Value::Object(dead[1].body.clone())]);
    drop(queue);
    let _ = std::fs::remove_dir_all(&dir);
}

/// At the shutdown's deadline (`abandon_events`), the event being retried and those queued
/// behind it go to the dead-letter file at once, in order; the queue then ends.
#[tokio::test]
async fn abandoned_events_are_dead_lettered_in_order() {
    let port = callgate_tests::closed_port().await;
    let dir = scratch_dir("dead-letter-abandon");
    let path = dir.join("dead.jsonl");
    let _ = std::fs::remove_file(&path);
    let delivery = DeliveryConfig {
        attempts: 1000,
        initial_delay: std::time::Duration::from_millis(10),
        max_delay: std::time::Duration::from_millis(50),
        ..Default::default()
    };
    let engine = engine_with(delivery, Some(DeadLetter::open(&path, 1 << 20).unwrap()));
    let cfg = AppConfig { url: format!("http://127.0.0.1:{port}/h"), ..Default::default() };
    let app = Arc::new(App::new("downApp", &cfg, false, 16).unwrap());
    let queue = EventQueue::spawn(engine.clone(), app, Arc::new(RestClientConfig::default()), "s1".into());
    let done = Arc::new(Mutex::new(Vec::new()));
    for n in 1..=4 {
        queue.push(event_job(n, &done));
    }
    drop(queue);
    let idle = engine.event_queues_idle();
    tokio::pin!(idle);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), &mut idle).await.is_err(),
        "still retrying the head"
    );
    assert!(done.lock().is_empty(), "nothing given up yet");
    engine.abandon_events();
    tokio::time::timeout(callgate_tests::WAIT, idle).await.expect("the queue ends once abandoned");
    let dead = read_dead(&path);
    assert_eq!(dead.iter().map(|d| d.sequence).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert!(dead[0].attempts >= 1 && dead[1..].iter().all(|d| d.attempts == 0), "{dead:?}");
    assert_eq!(dead.iter().map(|d| d.body["n"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!(done.lock().len(), 4, "every event's continuation ran");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- Timeouts, fail-open/closed, circuit breaker, failover (issue 11 item 2) ----

/// `GET /metrics` of the server.
async fn metrics_text(server: &callgate_server::RunningServer) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.http_addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// The value of the series `name` whose labels include every one of `labels` (0 if absent).
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// The breaker of a backend that answers 503 opens after `breaker_failures` failures (hooks
/// then fail fast: `callgate_hook_breaker_rejected_total`), lets one probe through after the
/// cool-down (`to="half_open"`), and closes when a probe succeeds once the backend is healthy
/// (`to="closed"`). Observed on /metrics; every wait is bounded by the outcome, not by time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_opens_probes_and_closes() {
    let backend = callgate_tests::Backend::start().await;
    let server = callgate_tests::start_server(&format!(
        "[hooks]\nbreaker_failures = 3\nbreaker_cooldown_ms = 1000\nevent_attempts = 1\n[apps.brkApp]\nurl = \"{}\"\n",
        backend.url("hooks")
    ))
    .await;
    let label = format!("backend=\"{}\"", backend.addr);
    let conn = serde_json::json!({"appKey": "brkApp", "clientVersion": "2.0"});
    let (mut c, _) = callgate_tests::Client::establish(&server, conn).await;
    backend.wait_for("ConnectionStatusEvent", |b| b["status"] == "ESTABLISHED").await;
    backend.answer(|_, _| callgate_tests::Reply::json(503, serde_json::json!({})));
    let mut op = 0;
    let mut send_data = async |c: &mut callgate_tests::Client| {
        op += 1;
        c.send("sendData", serde_json::json!({"operationId": format!("op-{op}"), "payload": {}})).await;
        c.expect("DataStatusEvent").await
    };
    let deadline = tokio::time::Instant::now() + callgate_tests::WAIT;
    loop {
        send_data(&mut c).await;
        let m = metrics_text(&server).await;
        let rejected = metric(&m, "callgate_hook_breaker_rejected_total", &[&label]);
        if metric(&m, "callgate_hook_breaker_transitions_total", &[&label, "to=\"open\""]) >= 1.0 && rejected >= 1.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the breaker did not open and reject:\n{m}");
    }
    assert_eq!(metric(&metrics_text(&server).await, "callgate_hook_breaker_open", &[&label]), 1.0);
    backend.answer(|_, b| callgate_tests::Reply::mirror(b));
    let deadline = tokio::time::Instant::now() + callgate_tests::WAIT;
    loop {
        send_data(&mut c).await;
        let m = metrics_text(&server).await;
        if metric(&m, "callgate_hook_breaker_transitions_total", &[&label, "to=\"closed\""]) >= 1.0 {
            assert!(metric(&m, "callgate_hook_breaker_transitions_total", &[&label, "to=\"half_open\""]) >= 1.0);
            assert_eq!(metric(&m, "callgate_hook_breaker_open", &[&label]), 0.0);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the breaker did not close:\n{m}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Closed again: hooks reach the backend.
    let before = backend.requests_for("OnDataEvent").len();
    send_data(&mut c).await;
    assert_eq!(backend.requests_for("OnDataEvent").len(), before + 1);
    drop(c);
    server.shutdown().await;
}

/// An app whose URL is down (and whose breaker opens at the first failure) is served by its
/// `failover_urls`: sessions establish, every hook reaches the second URL.
#[tokio::test]
async fn failover_url_is_used_when_the_first_is_down() {
    let backend = callgate_tests::Backend::start().await;
    let down = callgate_tests::closed_port().await;
    let server = callgate_tests::start_server(&format!(
        "[hooks]\nbreaker_failures = 1\nbreaker_cooldown_ms = 60000\n[apps.foApp]\nurl = \"http://127.0.0.1:{down}/hooks\"\n\
         failover_urls = [\"{}\"]\n",
        backend.url("hooks")
    ))
    .await;
    for i in 0..3 {
        let conn = serde_json::json!({"appKey": "foApp", "clientVersion": "2.0", "custom": {"i": i}});
        let (c, user) = callgate_tests::Client::establish(&server, conn).await;
        assert_eq!(user["status"], "ESTABLISHED");
        drop(c);
    }
    assert_eq!(backend.requests_for("connect").len(), 3, "every connect went to the failover URL");
    let m = metrics_text(&server).await;
    let down_label = format!("backend=\"127.0.0.1:{down}\"");
    assert_eq!(metric(&m, "callgate_hook_breaker_transitions_total", &[&down_label, "to=\"open\""]), 1.0, "{m}");
    assert!(metric(&m, "callgate_hook_breaker_rejected_total", &[&down_label]) >= 2.0, "later hooks skip it: {m}");
    server.shutdown().await;
}

/// `on_unreachable` beside restOnError: "closed" refuses a direct invocation also under LOG,
/// "open" lets it go on also under FAIL, never for a REST API action or an event; the
/// per-method timeout wins over the app's, which wins over the dispatcher's.
#[tokio::test]
async fn fail_open_closed_and_per_method_timeouts() {
    let down = callgate_tests::closed_port().await;
    let engine = engine_with(DeliveryConfig::default(), None);
    let dead_cfg = AppConfig {
        url: format!("http://127.0.0.1:{down}/h"),
        on_unreachable: [("default".to_string(), "closed".to_string()), ("OnDataEvent".into(), "open".into())].into(),
        ..Default::default()
    };
    let dead = App::new("dead", &dead_cfg, false, 16).unwrap();
    let rcc = |on: &str| {
        let v = serde_json::json!({"call": {"restOnError": on}, "OnDataEvent": {"restOnError": on},
                                   "CallStatusEvent": {"restOnError": on}});
        RestClientConfig::parse(Some(&v)).0
    };
    let run = async |app: &App, rcc: &RestClientConfig, m: HookMethod, origin: Origin| {
        let mut data = serde_json::Map::new();
        engine.invoke(app, rcc, m, origin, &mut data, "s").await
    };
    let inv = run(&dead, &rcc("LOG"), HookMethod::Call, Origin::Client).await;
    assert_eq!(inv.verdict, Verdict::Reject, "closed wins over LOG");
    assert_eq!(inv.client_info(), "Backend unreachable");
    let inv = run(&dead, &rcc("FAIL"), HookMethod::OnDataEvent, Origin::Client).await;
    assert_eq!(inv.verdict, Verdict::LogAndProceed, "open wins over FAIL");
    let inv = run(&dead, &rcc("FAIL"), HookMethod::Call, Origin::RestApi).await;
    assert_eq!(inv.verdict, Verdict::LogAndProceed, "a REST API action is never refused");
    let inv = run(&dead, &rcc("FAIL"), HookMethod::CallStatusEvent, Origin::Client).await;
    assert_eq!(inv.verdict, Verdict::ProceedWithErrorEvent, "events keep the seed's row");
    let plain = App::new("plain", &AppConfig { url: dead_cfg.url.clone(), ..Default::default() }, false, 16).unwrap();
    let inv = run(&plain, &rcc("LOG"), HookMethod::Call, Origin::Client).await;
    assert_eq!(inv.verdict, Verdict::LogAndProceed, "without on_unreachable, restOnError decides");
    // A backend answers `call` after 1 s and `answer` after 300 ms.
    let slow = callgate_tests::Backend::start().await;
    slow.answer(|m, b| {
        let d = if m == "call" { 1000 } else { 300 };
        callgate_tests::Reply::mirror(b).after(std::time::Duration::from_millis(d))
    });
    let cfg = AppConfig {
        url: slow.url("h"),
        timeout_ms: Some(5000),
        method_timeout_ms: [("call".to_string(), 100)].into(),
        ..Default::default()
    };
    let app = App::new("slow", &cfg, false, 16).unwrap();
    let inv = run(&app, &rcc("FAIL"), HookMethod::Call, Origin::Client).await;
    assert_eq!(inv.error, Some(InteractionError::Timeout(std::time::Duration::from_millis(100))));
    let inv = run(&app, &rcc("FAIL"), HookMethod::Answer, Origin::Client).await;
    assert_eq!(inv.error, None, "answer: the app's 5 s, not the method's 100 ms");
    let bad = AppConfig { on_unreachable: [("CallStatusEvent".to_string(), "open".to_string())].into(), ..cfg };
    assert!(matches!(App::new("x", &bad, false, 1), Err(AppConfigError::BadSetting { .. })), "events have no policy");
}

/// A session's queue holds `queue_capacity` events: past it an event is dropped at once (its
/// continuation runs with `QueueFull`, as the decision table says for an interaction error),
/// and the events kept are still numbered contiguously.
#[tokio::test]
async fn a_full_queue_drops_and_the_rest_stay_contiguous() {
    let backend = callgate_tests::Backend::start().await;
    backend.answer(|_, b| callgate_tests::Reply::mirror(b).after(std::time::Duration::from_millis(300)));
    let engine = engine_with(DeliveryConfig { queue_capacity: 2, ..Default::default() }, None);
    let app = Arc::new(App::new("q", &AppConfig { url: backend.url("h"), ..Default::default() }, false, 16).unwrap());
    let queue = EventQueue::spawn(engine.clone(), app, Arc::new(RestClientConfig::default()), "s1".into());
    let done = Arc::new(Mutex::new(Vec::new()));
    for n in 1..=10 {
        queue.push(event_job(n, &done));
    }
    // At most 3 are kept (one taken by the worker, two waiting); the others are refused at once.
    let dropped = done.lock().iter().filter(|d| d.invocation.error == Some(InteractionError::QueueFull)).count();
    assert!((7..=8).contains(&dropped), "{dropped} dropped");
    drop(queue);
    tokio::time::timeout(callgate_tests::WAIT, engine.event_queues_idle()).await.unwrap();
    assert_eq!(done.lock().len(), 10, "every event's continuation ran");
    let got = backend.requests();
    assert_eq!(got.len(), 10 - dropped);
    let seqs: Vec<u64> = got.iter().map(|r| r.body["sequence"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=got.len() as u64).collect::<Vec<_>>(), "dropped events take no number");
}
