//! `callgate hooks test` and `callgate hooks schema`, the real binary against real HTTP backends
//! on 127.0.0.1: a conforming backend passes (exit 0), broken ones (500s, bad JSON, too slow,
//! refused events, a restClientConfig callgate cannot honour, signatures not checked) fail with
//! exit 1 and a table naming each violation.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use callgate_hooks::HookMethod;
use callgate_tests::{Backend, Reply};
use serde_json::{json, Value};

/// (exit code, stdout, stderr) of `callgate <args>`, bounded in time.
async fn callgate(args: Vec<String>) -> (i32, String, String) {
    let run = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_callgate")).args(&args).env_remove("RUST_LOG").output().unwrap()
    });
    let out = tokio::time::timeout(Duration::from_secs(120), run).await.expect("callgate ends").unwrap();
    (
        out.status.code().expect("an exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A config file with `text`, in a directory of its own, removed when dropped.
struct ConfigFile {
    dir: PathBuf,
    path: PathBuf,
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config_file(name: &str, text: &str) -> ConfigFile {
    let dir = std::env::temp_dir().join(format!("callgate-hooks-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("callgate.toml");
    std::fs::write(&path, text).unwrap();
    ConfigFile { dir, path }
}

/// The table row of `method` (its first column), or a panic naming the table.
fn row<'a>(table: &'a str, method: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(method))
        .unwrap_or_else(|| panic!("no row for {method} in\n{table}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conforming_backend_passes_and_gets_every_hook() {
    let backend = Backend::start().await;
    // Mirrors; configures OVERWRITE of `name` for publishStream, and renames the stream.
    backend.answer(|method, body| match method {
        "connect" => {
            let mut a = body.clone();
            a["restClientConfig"] = json!({"publishStream": {"restPolicy": "OVERWRITE", "restOverwrite": "name"},
                                           "pushLogs": {"restPolicy": "DISABLE"}});
            Reply::json(200, a)
        }
        "publishStream" => {
            let mut a = body.clone();
            a["name"] = "renamed".into();
            Reply::json(200, a)
        }
        // A deliberate refusal of an invocation is the backend's right.
        "call" => Reply::json(403, json!({"status": 403, "reason": "Calls are not allowed"})),
        // An empty body counts as {}.
        "StreamKeepAliveEvent" => Reply::raw(200, b""),
        _ => Reply::mirror(body),
    });
    let (code, out, err) = callgate(args(&["hooks", "test", &backend.url("hooks"), "--app", "myApp"])).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("0 violations"), "{out}");
    assert!(row(&out, "publishStream").contains("OVERWRITE takes name"), "{out}");
    let call = row(&out, "call");
    assert!(call.contains("refused") && call.contains("Calls are not allowed"), "{call}");
    assert!(row(&out, "pushLogs").contains("skipped"), "{out}");
    assert!(out.contains("not signed"), "{out}");

    // Every method but the disabled one reached the backend, at {url}/{method}, with the app's key.
    for m in HookMethod::ALL {
        let got = backend.requests_for(m.url_name());
        if *m == HookMethod::PushLogs {
            assert!(got.is_empty(), "pushLogs was DISABLEd by the connect answer");
            continue;
        }
        assert_eq!(got.len(), 1, "{m}");
        assert_eq!(got[0].path, format!("hooks/{}", m.url_name()));
        assert_eq!(got[0].body["appKey"], "myApp", "{m}");
        assert_eq!(got[0].headers["content-type"], "application/json;charset=UTF-8");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_backend_fails_with_a_table_of_violations() {
    let backend = Backend::start().await;
    backend.answer(|method, body| match method {
        "connect" => {
            let mut a = body.clone();
            // A context field callgate never takes, and an OVERWRITE of one it keeps.
            a["sessionId"] = "mine".into();
            a["restClientConfig"] =
                json!({"call": {"restPolicy": "OVERWRITE", "restOverwrite": "callId,callee"}, "bogus": {}});
            Reply::json(200, a)
        }
        "publishStream" => Reply::raw(500, b"oops"),
        "playStream" => Reply::raw(200, b"this is not json"),
        "OnDataEvent" => Reply::raw(200, b"[1,2]"),
        "CallStatusEvent" => Reply::mirror(body).after(Duration::from_millis(2500)),
        "StreamStatusEvent" => Reply::json(403, json!({"status": 403, "reason": "no"})),
        _ => Reply::mirror(body),
    });
    let config = config_file("broken", "[hooks]\nrest_request_timeout = 1\n");
    // callgate's own --config (before the command) serves hooks test too.
    let (code, out, err) =
        callgate(args(&["--config", config.path.to_str().unwrap(), "hooks", "test", &backend.url("h")])).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("timeout 1000 ms"), "{out}");
    let connect = row(&out, "connect");
    assert!(connect.contains("VIOLATION"), "{connect}");
    assert!(connect.contains("changes sessionId"), "{connect}");
    assert!(connect.contains("restOverwrite names callId"), "{connect}");
    assert!(connect.contains("bogus"), "an unknown method in restClientConfig: {connect}");
    let publish = row(&out, "publishStream");
    assert!(publish.contains("500") && publish.contains("VIOLATION"), "{publish}");
    assert!(row(&out, "playStream").contains("not a JSON object"), "{out}");
    assert!(row(&out, "OnDataEvent").contains("not a JSON object"), "{out}");
    let slow = row(&out, "CallStatusEvent");
    assert!(slow.contains("timeout") && slow.contains("VIOLATION") && slow.contains("1000 ms"), "{slow}");
    let refused_event = row(&out, "StreamStatusEvent");
    assert!(refused_event.contains("events cannot be refused"), "{refused_event}");
    // What went right is not blamed (on a loaded machine a right answer may come past half the
    // 1 s timeout: a `slow` warning, never a violation).
    let hangup = row(&out, "hangup");
    assert!(!hangup.contains("VIOLATION") && (hangup.contains(" ok") || hangup.contains("slow: ")), "{out}");
    assert!(out.contains("6 violations"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_that_answers_500_to_everything_fails_every_row() {
    let backend = Backend::start().await;
    backend.answer(|_, _| Reply::raw(500, b"down"));
    let (code, out, _) = callgate(args(&["hooks", "test", &backend.url("x")])).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("{} violations", HookMethod::COUNT)), "{out}");
    let (code, out, err) = callgate(args(&["hooks", "test", "not a url"])).await;
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("invalid REST URL"), "{err}");
}

/// A backend that checks Standard Webhooks signatures with `secret` when `verify`, and answers
/// 401 to a request whose signature does not verify.
async fn signing_backend(secret: &'static str, verify: bool) -> std::net::SocketAddr {
    let keys = Arc::new(callgate_hooks::WebhookKeys::parse(&[secret]).unwrap());
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let keys = keys.clone();
        async move {
            let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let (id, ts, sig) = (h("webhook-id"), h("webhook-timestamp"), h("webhook-signature"));
            let expected = keys.signature(&id, ts.parse().unwrap_or(0), &body);
            if verify && (id.is_empty() || sig != expected) {
                return (StatusCode::UNAUTHORIZED, "bad signature".to_string());
            }
            let v: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
            (StatusCode::OK, v.to_string())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn signatures_are_sent_and_a_backend_that_ignores_them_is_named() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let config = config_file("signed", &format!("[hooks]\nwebhook_secrets = [\"{SECRET}\"]\n"));
    let verifying = signing_backend(SECRET, true).await;
    let (code, out, err) = callgate(args(&[
        "hooks",
        "test",
        &format!("http://{verifying}/hooks"),
        "--config",
        config.path.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(code, 0, "every signed hook verifies, the badly signed one is refused: {out}\n{err}");
    let check = out.lines().find(|l| l.contains("wrong signature")).expect("a signature row");
    assert!(check.contains("401") && check.contains("refused, as a backend that verifies"), "{check}");

    let careless = signing_backend(SECRET, false).await;
    let (code, out, _) = callgate(args(&[
        "hooks",
        "test",
        &format!("http://{careless}/hooks"),
        "--config",
        config.path.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(code, 1, "{out}");
    let check = out.lines().find(|l| l.contains("wrong signature")).expect("a signature row");
    assert!(check.contains("VIOLATION") && check.contains("does not check signatures"), "{check}");
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_prints_every_method_by_kind() {
    let (code, out, err) = callgate(args(&["hooks", "schema"])).await;
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&out).expect("JSON");
    for m in HookMethod::ALL {
        let found = ["connect", "directInvocations", "events", "incomingInvocations"]
            .iter()
            .filter(|k| doc[**k].get(m.url_name()).is_some())
            .count();
        assert_eq!(found, 1, "{m}");
    }
    assert!(doc["answers"]["connect"]["ok"]["properties"]["restClientConfig"].is_object());
    let (code, out, _) = callgate(args(&["hooks", "schema", "sendDTMF"])).await;
    assert_eq!(code, 0);
    let one: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(one["title"], "sendDtmf request", "aliases resolve to the URL name");
    let (code, _, err) = callgate(args(&["hooks", "schema", "nope"])).await;
    assert_eq!(code, 1);
    assert!(err.contains("unknown hook method \"nope\""), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_apps_credentials_and_enabled_methods_come_from_the_config() {
    let backend = Backend::start().await;
    let config = config_file(
        "app",
        "[apps.myApp]\nurl = \"http://127.0.0.1:9/unused\"\nusername = \"u\"\npassword = \"p\"\n\
         methods = [\"connect\", \"OnDataEvent\"]\n",
    );
    let (code, out, err) = callgate(args(&[
        "hooks",
        "test",
        &backend.url("real"),
        "--app",
        "myApp",
        "--config",
        config.path.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("{} skipped", HookMethod::COUNT - 2)), "{out}");
    assert!(row(&out, "call").contains("not in [apps.myApp] methods"), "{out}");
    let got: Vec<String> = backend.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(got, ["real/connect", "real/OnDataEvent"], "the URL given wins over [apps.myApp] url");
    for r in backend.requests() {
        assert_eq!(r.headers["authorization"], "Basic dTpw", "[apps.myApp] credentials");
    }
}
