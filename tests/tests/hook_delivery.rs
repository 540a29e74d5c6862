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
    let cfg = AppConfig { url, username: None, password: None, methods: MethodSelection::default() };
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
    let cfg = AppConfig { url, username: None, password: None, methods: MethodSelection::default() };
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
