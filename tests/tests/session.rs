//! The real server against a real recording backend, driven by a WebSocket client that speaks
//! the client protocol as the official SDK does.

use std::time::Duration;

use callgate_tests::{closed_port, http_post, start_server, Backend, Client, Reply};
use serde_json::{json, Value};

fn app_toml(key: &str, url: &str) -> String {
    format!("[apps.{key}]\nurl = \"{url}\"\n")
}

fn connection(app: &str, custom: Value) -> Value {
    json!({"appKey": app, "mediaProviders": ["WebRTC","MSE","WSPlayer"], "clientVersion": "2.0",
           "clientOSVersion": "5.0", "clientBrowserVersion": "test", "msePacketizationVersion": 2,
           "custom": custom, "clientInfo": {}})
}

#[tokio::test]
async fn echo_app_in_process_and_over_http() {
    for fast in [true, false] {
        // Bind HTTP first on a known port so defaultApp can name it.
        let port = closed_port().await;
        let extra = format!(
            "[server]\nhttp_bind = \"127.0.0.1:{port}\"\n[hooks]\necho_fast_path = {fast}\n[apps.defaultApp]\nurl = \"http://127.0.0.1:{port}/apps/EchoApp\"\n"
        );
        let server = start_server(&extra).await;
        assert_eq!(server.shared.apps.get("defaultApp").unwrap().echo_in_process(), fast);
        let (mut c, user) =
            Client::establish(&server, json!({"clientVersion":"2.0","custom":{"a":1},"sipLogin":"3000"})).await;
        assert_eq!(user["status"], "ESTABLISHED");
        assert_eq!(user["appKey"], "defaultApp");
        assert_eq!(user["sipLogin"], "3000", "the connection object is echoed (the SDK reads sipLogin from it)");
        assert_eq!(user["custom"], json!({"a":1}));
        assert!(user["authToken"].as_str().is_some_and(|t| !t.is_empty()));
        let sid = user["sessionId"].as_str().unwrap();
        assert!(sid.starts_with("/127.0.0.1:"), "WCS-style session id: {sid}");
        assert!(user["nodeId"].as_str().unwrap().contains('@'));
        c.send("sendData", json!({"operationId":"op-1","payload":{"x":1}})).await;
        let st = c.expect("DataStatusEvent").await;
        assert_eq!(st["operationId"], "op-1");
        assert_eq!(st["status"], "ACCEPTED");
        // The EchoApp answers a JSON object with the very bytes it got, and refuses anything else.
        let obj = r#"{"b": [1, {"c": null}], "s": "x\"y"}"#;
        assert_eq!(http_post(&server, "/apps/EchoApp/connect", obj, None).await, (200, obj.to_string()));
        for bad in ["", "  ", "[1]", "null", "{\"a\":", "{} trailing", "<html>"] {
            assert_eq!(http_post(&server, "/apps/EchoApp/connect", bad, None).await.0, 400, "{bad:?}");
        }
        assert_eq!(http_post(&server, "/apps/EchoApp/noSuchHook", "{}", None).await.0, 404);
        server.shutdown().await;
    }
}

#[tokio::test]
async fn connect_allow_then_events_in_order() {
    let backend = Backend::start().await;
    let server = start_server(&app_toml("backendApp", &backend.url("hooks"))).await;
    let (mut c, user) = Client::establish(&server, connection("backendApp", json!({"token":"good"}))).await;
    assert_eq!(user["status"], "ESTABLISHED");
    let connect = backend.wait_for("connect", |_| true).await;
    assert_eq!(connect.path, "hooks/connect");
    assert_eq!(connect.body["appKey"], "backendApp");
    assert_eq!(connect.body["custom"]["token"], "good");
    assert_eq!(connect.body["sessionId"], user["sessionId"]);
    assert!(connect.body["nodeId"].as_str().unwrap().contains('@'));
    assert_eq!(connect.headers["content-type"], "application/json;charset=UTF-8");
    assert_eq!(connect.headers["accept"], "application/json");
    c.send("sendData", json!({"operationId":"op-1","payload":{"m":"hi"}})).await;
    assert_eq!(c.expect("DataStatusEvent").await["status"], "ACCEPTED");
    drop(c);
    backend.wait_for("ConnectionStatusEvent", |b| b["status"] == "DISCONNECTED").await;
    let order: Vec<String> = backend
        .requests()
        .iter()
        .map(|r| format!("{}:{}", r.method, r.body["status"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        order,
        [
            "connect:",
            "ConnectionStatusEvent:ESTABLISHED",
            "OnDataEvent:",
            "DataStatusEvent:ACCEPTED",
            "ConnectionStatusEvent:DISCONNECTED"
        ]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn connect_denied_with_custom_reason_and_with_reason_phrase() {
    let backend = Backend::start().await;
    let server = start_server(&app_toml("backendApp", &backend.url("hooks"))).await;
    for (body, want) in [
        (json!({"status":403,"reason":"Bad token"}), "Bad token"),
        (json!({"status":403,"reason":"Bad token","extra":true}), "Forbidden"),
    ] {
        let b = body.clone();
        backend.answer(move |m, req| if m == "connect" { Reply::json(403, b.clone()) } else { Reply::mirror(req) });
        let mut c = Client::connect(&server).await;
        c.send("connection", connection("backendApp", json!({"token":"bad"}))).await;
        let fail = c.expect("fail").await;
        assert_eq!(fail["status"], "FAILED");
        assert_eq!(fail["info"], want);
        assert_eq!(fail["apiMethod"], "ConnectionStatusEvent");
        c.expect_closed().await;
        assert!(!c.seen.iter().any(|(m, _)| m == "getUserData"));
        backend.wait_for("ConnectionStatusEvent", |b| b["status"] == "FAILED" && b["info"] == want).await;
    }
    assert!(server.shared.sessions.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn connect_interaction_errors_decline_with_clear_info() {
    let backend = Backend::start().await;
    let dead = format!("http://127.0.0.1:{}/x", closed_port().await);
    // A backend that accepts the connection, reads the request and drops it without answering.
    let resetting = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let reset_url = format!("http://{}/x", resetting.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = resetting.accept().await else { return };
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            drop(s);
        }
    });
    let extra = format!(
        "[hooks]\nrest_request_timeout = 1\nrest_client_request_retry_count = 1\nmax_response_bytes = 65536\n{}{}{}",
        app_toml("backendApp", &backend.url("hooks")),
        app_toml("deadApp", &dead),
        app_toml("resetApp", &reset_url)
    );
    let server = start_server(&extra).await;
    let cases: Vec<(&str, Reply, &str)> = vec![
        ("backendApp", Reply::json(500, json!({"error":"boom"})), "Internal Server Error"),
        ("backendApp", Reply::raw(200, b"<html>oops</html>"), "Backend answer is not a JSON object"),
        ("backendApp", Reply::raw(200, b"[1,2,3]"), "Backend answer is not a JSON object"),
        ("backendApp", Reply::json(200, json!({"pad": "x".repeat(100_000)})), "Backend answer too large"),
        ("backendApp", Reply::json(200, json!({})).after(Duration::from_secs(3)), "Backend timeout"),
        ("deadApp", Reply::json(200, json!({})), "Backend unreachable"),
        ("resetApp", Reply::json(200, json!({})), "Backend connection error"),
        ("noSuchApp", Reply::json(200, json!({})), "Unknown appKey: noSuchApp"),
    ];
    for (app, reply, want) in cases {
        backend.answer(move |m, req| if m == "connect" { reply.clone() } else { Reply::mirror(req) });
        let mut c = Client::connect(&server).await;
        c.send("connection", connection(app, json!({}))).await;
        let fail = c.expect("fail").await;
        assert_eq!(fail["info"], want, "app {app}");
        assert_eq!(fail["apiMethod"], "ConnectionStatusEvent");
        c.expect_closed().await;
    }
    assert!(server.shared.sessions.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn a_hanging_backend_for_one_session_does_not_delay_another() {
    let backend = Backend::start().await;
    backend.answer(|m, req| {
        if m == "connect" && req["custom"]["token"] == "hang" {
            Reply::mirror(req).after(Duration::from_secs(4))
        } else {
            Reply::mirror(req)
        }
    });
    let server =
        start_server(&format!("[hooks]\nrest_request_timeout = 8\n{}", app_toml("backendApp", &backend.url("hooks"))))
            .await;
    let mut slow = Client::connect(&server).await;
    slow.send("connection", connection("backendApp", json!({"token":"hang"}))).await;
    backend.wait_for("connect", |b| b["custom"]["token"] == "hang").await;
    let started = std::time::Instant::now();
    let (_fast, user) = Client::establish(&server, connection("backendApp", json!({"token":"ok"}))).await;
    assert_eq!(user["status"], "ESTABLISHED");
    // Ordering, not timing: the fast session is established while the slow one is still waiting.
    assert!(slow.seen.is_empty());
    assert!(started.elapsed() < Duration::from_secs(4), "the fast connect waited for the slow one");
    assert_eq!(slow.expect("getUserData").await["status"], "ESTABLISHED");
    server.shutdown().await;
}

#[tokio::test]
async fn overwrite_and_excludes() {
    let backend = Backend::start().await;
    backend.answer(|m, req| match m {
        "connect" => {
            let mut b = req.as_object().unwrap().clone();
            // Click-to-call: the backend injects SIP credentials and hides them from the client.
            b.insert("sipLogin".into(), "3000".into());
            b.insert("sipPassword".into(), "secret".into());
            b.insert(
                "restClientConfig".into(),
                json!({
                    "ConnectionStatusEvent": {"clientExclude": "sipPassword, sipAuthenticationName"},
                    "OnDataEvent": {"restExclude": "payload", "restPolicy": "OVERWRITE", "restOverwrite": "payload"},
                    "DataStatusEvent": {"restPolicy": "OVERWRITE", "restOverwrite": "info", "clientExclude": "nodeId"}
                }),
            );
            Reply::json(200, Value::Object(b))
        }
        "DataStatusEvent" => {
            let mut b = req.as_object().unwrap().clone();
            b.insert("info".into(), "rewritten by backend".into());
            b.insert("status".into(), "NOT-COPIED".into());
            Reply::json(200, Value::Object(b))
        }
        _ => Reply::mirror(req),
    });
    let server = start_server(&app_toml("backendApp", &backend.url("hooks"))).await;
    let (mut c, user) = Client::establish(&server, connection("backendApp", json!({}))).await;
    assert_eq!(user["sipLogin"], "3000");
    assert!(!user.contains_key("sipPassword"), "clientExclude hides the password: {user:?}");
    assert!(!user.contains_key("restClientConfig"));
    // The backend still sees the full connection in the event.
    backend.wait_for("ConnectionStatusEvent", |b| b["status"] == "ESTABLISHED" && b["sipPassword"] == "secret").await;
    c.send("sendData", json!({"operationId":"op-9","payload":{"private":true}})).await;
    let st = c.expect("DataStatusEvent").await;
    assert_eq!(st["status"], "ACCEPTED", "only restOverwrite fields are copied");
    assert_eq!(st["info"], "rewritten by backend");
    assert!(!st.contains_key("nodeId"), "clientExclude on DataStatusEvent");
    let od = backend.wait_for("OnDataEvent", |_| true).await;
    assert!(od.body.get("payload").is_none(), "restExclude strips payload before the backend: {:?}", od.body);
    assert_eq!(od.body["operationId"], "op-9");
    server.shutdown().await;
}

#[tokio::test]
async fn client_cannot_configure_its_own_hooks() {
    let backend = Backend::start().await;
    backend.answer(|m, req| if m == "OnDataEvent" { Reply::json(403, json!({})) } else { Reply::mirror(req) });
    let server = start_server(&app_toml("backendApp", &backend.url("hooks"))).await;
    let mut conn = connection("backendApp", json!({}));
    // A mirroring backend must not hand this back as the session's restClientConfig.
    conn["restClientConfig"] = json!({"OnDataEvent": {"restOnError": "FAIL"}});
    let (mut c, _) = Client::establish(&server, conn).await;
    let connect = backend.wait_for("connect", |_| true).await;
    assert!(connect.body.get("restClientConfig").is_none());
    c.send("sendData", json!({"operationId":"op","payload":1})).await;
    assert_eq!(c.expect("DataStatusEvent").await["status"], "ACCEPTED", "LOG (default) applies");
    server.shutdown().await;
}

#[tokio::test]
async fn send_data_denied_under_fail_and_accepted_under_log() {
    let backend = Backend::start().await;
    let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let f = fail.clone();
    backend.answer(move |m, req| match m {
        "connect" if f.load(std::sync::atomic::Ordering::SeqCst) => {
            let mut b = req.as_object().unwrap().clone();
            b.insert("restClientConfig".into(), json!({"OnDataEvent": {"restOnError": "FAIL"}}));
            Reply::json(200, Value::Object(b))
        }
        "OnDataEvent" => Reply::json(403, json!({"status":403,"reason":"No data for you"})),
        _ => Reply::mirror(req),
    });
    let server = start_server(&app_toml("backendApp", &backend.url("hooks"))).await;
    let (mut c, _) = Client::establish(&server, connection("backendApp", json!({}))).await;
    c.send("sendData", json!({"operationId":"op-1","payload":{"x":1}})).await;
    let st = c.expect("DataStatusEvent").await;
    assert_eq!(st["status"], "FAILED");
    assert_eq!(st["info"], "No data for you");
    assert_eq!(st["operationId"], "op-1");
    backend.wait_for("DataStatusEvent", |b| b["status"] == "FAILED").await;

    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    let (mut c, _) = Client::establish(&server, connection("backendApp", json!({}))).await;
    c.send("sendData", json!({"operationId":"op-2","payload":{"x":1}})).await;
    assert_eq!(c.expect("DataStatusEvent").await["status"], "ACCEPTED");
    server.shutdown().await;
}

#[tokio::test]
async fn event_error_under_fail_gives_error_event_and_continues() {
    let backend = Backend::start().await;
    backend.answer(|m, req| match m {
        "connect" => {
            let mut b = req.as_object().unwrap().clone();
            b.insert("restClientConfig".into(), json!({"DataStatusEvent": {"restOnError": "FAIL"}}));
            Reply::json(200, Value::Object(b))
        }
        "DataStatusEvent" => Reply::json(500, json!({})),
        _ => Reply::mirror(req),
    });
    // A 500 is retried (docs/hooks.md §7.1); the decision comes after the last attempt.
    let server = start_server(&format!(
        "[hooks]\nevent_attempts = 2\nevent_retry_initial_delay_ms = 10\n{}",
        app_toml("backendApp", &backend.url("hooks"))
    ))
    .await;
    let (mut c, _) = Client::establish(&server, connection("backendApp", json!({}))).await;
    c.send("sendData", json!({"operationId":"op-1","payload":{}})).await;
    assert_eq!(c.expect("DataStatusEvent").await["status"], "ACCEPTED");
    let err = c.expect("fail").await;
    assert_eq!(err["apiMethod"], "ErrorEvent");
    assert_eq!(err["info"], "DataStatusEvent: Internal Server Error");
    backend.wait_for("ErrorEvent", |b| b["info"] == "DataStatusEvent: Internal Server Error").await;
    let tries = backend.requests_for("DataStatusEvent");
    assert_eq!(tries.len(), 2, "sent twice (event_attempts = 2)");
    assert_eq!(tries[0].body["eventId"], tries[1].body["eventId"], "a retry is the same event");
    server.shutdown().await;
}

#[tokio::test]
async fn events_reach_the_backend_in_order_even_when_it_is_slow() {
    let backend = Backend::start().await;
    backend.answer(|m, req| {
        if m == "ConnectionStatusEvent" && req["status"] == "ESTABLISHED" {
            Reply::mirror(req).after(Duration::from_millis(500))
        } else {
            Reply::mirror(req)
        }
    });
    let server = start_server(&app_toml("backendApp", &backend.url("hooks"))).await;
    let (mut c, _) = Client::establish(&server, connection("backendApp", json!({}))).await;
    for i in 0..5 {
        c.send("sendData", json!({"operationId": format!("op-{i}"), "payload": i})).await;
    }
    for _ in 0..5 {
        c.expect("DataStatusEvent").await;
    }
    drop(c);
    backend.wait_for("ConnectionStatusEvent", |b| b["status"] == "DISCONNECTED").await;
    let events: Vec<String> = backend
        .requests()
        .into_iter()
        .filter(|r| r.method.ends_with("StatusEvent"))
        .map(|r| r.body["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events.first().map(String::as_str), Some("ESTABLISHED"));
    assert_eq!(events.last().map(String::as_str), Some("DISCONNECTED"));
    assert_eq!(events.len(), 7);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_frames_get_a_clear_fail_and_the_session_survives() {
    let server = start_server("[hooks]\necho_fast_path = true\n[apps.defaultApp]\nurl = \"http://localhost:1/apps/EchoApp\"\nmethods = \"none\"").await;
    let mut c = Client::connect(&server).await;
    c.send("sendData", json!({"operationId":"early","payload":{}})).await;
    assert_eq!(c.expect("fail").await["info"], "Session not ready");
    c.send("connection", json!({"clientVersion":"2.0"})).await;
    c.expect("getUserData").await;
    for (raw, want) in [
        ("{not json", "Malformed message"),
        (r#"["message","x"]"#, "Malformed message: expected"),
        (r#"{"message":"sendData","data":[5]}"#, "Malformed message sendData: data[0] must be an object"),
        (r#"{"message":"sendData","data":[{"payload":1}]}"#, "Malformed message sendData: missing field operationId"),
        (r#"{"message":"fooBar","data":[{}]}"#, "Unknown message: fooBar"),
    ] {
        c.send_raw(raw).await;
        let f = c.expect("fail").await;
        assert!(f["info"].as_str().unwrap().starts_with(want), "{raw}: {f:?}");
        assert_eq!(f["status"], "FAILED");
    }
    c.send("connection", json!({})).await;
    assert_eq!(c.expect("fail").await["info"], "Already connected");
    c.send("sendData", json!({"operationId":"ok","payload":{}})).await;
    assert_eq!(c.expect("DataStatusEvent").await["status"], "ACCEPTED");
    assert_eq!(server.shared.sessions.len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn unsupported_stream_and_call_messages_fail_honestly() {
    let server = start_server("[apps.defaultApp]\nurl = \"http://localhost:1/apps/EchoApp\"\nmethods = \"none\"").await;
    let (mut c, _) = Client::establish(&server, json!({})).await;
    c.send("publishStream", json!({"mediaSessionId":"m1","name":"s","published":true,"sdp":"v=0"})).await;
    let st = c.expect("notifyStreamStatusEvent").await;
    assert_eq!((st["mediaSessionId"].as_str(), st["status"].as_str()), (Some("m1"), Some("FAILED")));
    c.send("call", json!({"callId":"c1","callee":"3001","sdp":"v=0"})).await;
    let fin = c.expect("finish").await;
    assert_eq!((fin["callId"].as_str(), fin["status"].as_str()), (Some("c1"), Some("FAILED")));
    c.send("availableStream", json!({"mediaSessionId":"m2","name":"s"})).await;
    let av = c.expect("availableStream").await;
    assert_eq!((av["id"].as_str(), av["status"].as_str()), (Some("m2"), Some("false")));
    server.shutdown().await;
}

#[tokio::test]
async fn session_debug_bug_report_and_push_logs() {
    let backend = Backend::start().await;
    let server = start_server(&app_toml("backendApp", &backend.url("hooks"))).await;
    let (mut c, _) = Client::establish(&server, connection("backendApp", json!({}))).await;
    c.send("sessionDebug", json!({"command":"start"})).await;
    assert_eq!(c.expect("notifySessionDebugEvent").await["status"], "STARTED");
    c.send("sessionDebug", json!({"command":"sideways"})).await;
    assert_eq!(c.expect("notifySessionDebugEvent").await["status"], "FAILED");
    c.send("pushLogs", json!({"logs":"01:22:53 INFO webrtc - Initialized\n"})).await;
    c.send("submitBugReport", json!({"type":"no_media","text":"test"})).await;
    backend.wait_for("pushLogs", |b| b["logs"].as_str().is_some_and(|l| l.contains("Initialized"))).await;
    backend.wait_for("submitBugReport", |b| b["text"] == "test").await;
    backend.wait_for("BugReportStatusEvent", |b| b["status"] == "ACCEPTED").await;
    backend.wait_for("SessionDebugStatusEvent", |b| b["status"] == "STARTED").await;
    server.shutdown().await;
}

#[tokio::test]
async fn pings_and_dead_clients() {
    let server = start_server("[server]\nping_interval_ms = 100\nmax_missed_pings = 3\n[apps.defaultApp]\nurl = \"http://localhost:1/apps/EchoApp\"\nmethods = \"none\"").await;
    let (mut c, _) = Client::establish(&server, json!({})).await;
    // A client that never answers is closed after max_missed_pings pings.
    c.expect_closed().await;
    let pings: Vec<_> = c.seen.iter().filter(|(m, _)| m == "ping").collect();
    assert_eq!(pings.len(), 3);
    assert!(pings.iter().all(|(_, d)| d.is_empty()), "ping carries data: []");
    let fail = c.seen.iter().find(|(m, _)| m == "fail").expect("a fail before closing");
    assert_eq!(fail.1[0]["info"], "Ping timeout");
    // The session is gone from the registry.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(server.shared.sessions.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn rest_api_connections_and_data() {
    let server = start_server("[apps.defaultApp]\nurl = \"http://localhost:1/apps/EchoApp\"\nmethods = \"none\"").await;
    assert_eq!(http_post(&server, "/rest-api/connection/find_all", "", None).await.0, 404);
    let (mut c, user) = Client::establish(&server, json!({"clientVersion":"2.0","custom":{"room":"r1"}})).await;
    let sid = user["sessionId"].as_str().unwrap().to_string();
    let (st, body) = http_post(&server, "/rest-api/connection/find_all", "", None).await;
    assert_eq!(st, 200);
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list[0]["sessionId"], sid.as_str());
    let (st, body) = http_post(&server, "/rest-api/connection/find", r#"{"clientVersion":"2.0"}"#, None).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(http_post(&server, "/rest-api/connection/find", r#"{"clientVersion":"9"}"#, None).await.0, 404);
    assert_eq!(http_post(&server, "/rest-api/connection/find", "{bad", None).await.0, 400);

    let send = json!({"sessionId": sid, "operationId": "op1", "payload": {"message": "hello"}}).to_string();
    let (st, body) = http_post(&server, "/rest-api/data/send", &send, None).await;
    assert_eq!((st, body.as_str()), (200, ""));
    let ev = c.expect("OnDataEvent").await;
    assert_eq!(ev["payload"]["message"], "hello");
    assert_eq!(ev["operationId"], "op1");
    assert_eq!(http_post(&server, "/rest-api/data/send", r#"{"sessionId":"nope","payload":{}}"#, None).await.0, 404);
    assert_eq!(http_post(&server, "/rest-api/data/send", r#"{"payload":{}}"#, None).await.0, 400);
    assert_eq!(http_post(&server, "/rest-api/data/send", &json!({"sessionId": sid}).to_string(), None).await.0, 400);

    let term = json!({"sessionId": sid}).to_string();
    assert_eq!(http_post(&server, "/rest-api/connection/terminate", &term, None).await.0, 200);
    assert_eq!(c.expect("fail").await["info"], "Terminated by rest /terminate");
    c.expect_closed().await;
    server.shutdown().await;
}

#[tokio::test]
async fn rest_api_basic_auth() {
    let server = start_server("[rest_api]\nauth = true\nusername = \"admin\"\npassword = \"pw\"").await;
    assert_eq!(http_post(&server, "/rest-api/connection/find_all", "", None).await.0, 401);
    assert_eq!(http_post(&server, "/rest-api/connection/find_all", "", Some("Basic YWRtaW46d3Jvbmc=")).await.0, 401);
    // admin:pw
    assert_eq!(http_post(&server, "/rest-api/connection/find_all", "", Some("Basic YWRtaW46cHc=")).await.0, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn backend_auth_signature_and_metrics() {
    let backend = Backend::start().await;
    let basic = start_server(&format!(
        "[apps.basicApp]\nurl = \"{}\"\nusername = \"u\"\npassword = \"p\"\n",
        backend.url("basic")
    ))
    .await;
    Client::establish(&basic, connection("basicApp", json!({}))).await;
    let r = backend.wait_for("connect", |b| b["appKey"] == "basicApp").await;
    assert_eq!(r.headers["authorization"], "Basic dTpw");
    basic.shutdown().await;
    let extra = format!(
        "[apps.signedApp]\nurl = \"{}\"\n[hooks]\nrest_hook_send_hash = true\nrest_hook_secret_key = \"key\"\n",
        backend.url("signed")
    );
    let server = start_server(&extra).await;
    Client::establish(&server, connection("signedApp", json!({}))).await;
    let r = backend.wait_for("connect", |b| b["appKey"] == "signedApp").await;
    let sig = r.headers["authorization"].to_str().unwrap().to_string();
    let body = serde_json::to_vec(&r.body).unwrap();
    assert_eq!(sig, callgate_hooks::dispatch::sign(b"key", &body).to_str().unwrap(), "HMAC-MD5 of the exact body");
    let (st, text) = {
        let mut s = tokio::net::TcpStream::connect(server.http_addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.unwrap();
        (buf.split_whitespace().nth(1).unwrap().to_string(), buf)
    };
    assert_eq!(st, "200");
    assert!(text.contains("callgate_hook_duration_seconds_bucket"), "{text}");
    // The connect hook went out and was answered: its series carries both labels.
    let connect_ok = text.lines().any(|l| {
        l.starts_with("callgate_hook_requests_total{")
            && l.contains("method=\"connect\"")
            && l.contains("outcome=\"ok\"")
            && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).is_some_and(|v| v >= 1.0)
    });
    assert!(connect_ok, "{text}");
    server.shutdown().await;
}
