//! The node's graceful shutdown (issue 10 item 5), in process: calls get BYE, sessions close
//! with `fail "Server shutdown"`, the backend gets every end event, the SIP and media tasks stop,
//! and nothing keeps the node (`Arc<Shared>`) alive afterwards, even when a call could not be
//! ended in time. The binary on SIGTERM with 50 calls and 100 sessions:
//! `crates/server/tests/shutdown_on_sigterm.rs`.

use std::time::Duration;

use callgate_tests::sip_fixtures::{call_msg, connection, sip_server_toml, sipp_uas};
use callgate_tests::{http_post, start_server, Backend, Client, Reply};
use serde_json::{json, Value};

fn account(port: u16) -> Value {
    json!({"sipLogin": "3000", "sipPassword": "secret", "sipDomain": "127.0.0.1",
           "sipOutboundProxy": "127.0.0.1", "sipPort": port.to_string(), "sipRegisterRequired": false})
}

fn rest_call(id: &str, port: u16) -> String {
    let mut body = account(port);
    for (k, v) in
        [("callId", id), ("callee", "3001"), ("hasAudio", "true"), ("hasVideo", "false"), ("appKey", "backendApp")]
    {
        body[k] = v.into();
    }
    body.to_string()
}

#[tokio::test]
async fn shutdown_byes_calls_closes_sessions_delivers_every_end_event_and_releases_the_node() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp = callgate_tests::peers::Sipp::scenario("uas_answer_local_bye.xml")
        .calls(2)
        .timeout(Duration::from_secs(15))
        .spawn()
        .unwrap();
    let port = sipp.local_addr().port();
    let (mut caller, _) = Client::establish(&server, connection(account(port))).await;
    caller.send("call", call_msg("ws1", "3001")).await;
    let (status, text) = http_post(&server, "/rest-api/call/startup", &rest_call("rest1", port), None).await;
    assert_eq!(status, 200, "{text}");
    let (mut idle, _) = Client::establish(&server, connection(json!({}))).await;
    for id in ["ws1", "rest1"] {
        backend.wait_for("CallStatusEvent", |b| b["callId"] == id && b["status"] == "ESTABLISHED").await;
    }

    let node = std::sync::Arc::downgrade(&server.shared);
    let outcome = server.shutdown().await;
    println!("shutdown {outcome}");
    assert!(outcome.complete(), "{outcome}");
    assert!(node.upgrade().is_none(), "nothing holds the node after its shutdown");

    for c in [&mut caller, &mut idle] {
        let fail = c.expect("fail").await;
        assert_eq!(
            (fail["apiMethod"].as_str(), fail["info"].as_str()),
            (Some("ConnectionStatusEvent"), Some("Server shutdown"))
        );
        c.expect_closed().await;
    }
    let sipp = sipp.wait().await;
    sipp.assert_success();
    assert_eq!(sipp.received().iter().filter(|m| m.starts_with("BYE ")).count(), 2, "{}", sipp.report());
    // Delivered before shutdown() returned: no waiting here.
    let ends = backend.requests_for("CallStatusEvent").into_iter().filter(|r| r.body["status"] == "FINISH").count();
    assert_eq!(ends, 2);
    let gone = backend
        .requests_for("ConnectionStatusEvent")
        .into_iter()
        .filter(|r| r.body["status"] == "DISCONNECTED")
        .count();
    assert_eq!(gone, 2);
}

#[tokio::test]
async fn a_call_whose_peer_is_gone_bounds_the_shutdown_which_says_so_and_still_releases_the_node() {
    let backend = Backend::start().await;
    let server = start_server(&format!("[server]\nshutdown_timeout_ms = 1000\n{}", sip_server_toml(&backend))).await;
    let sipp = sipp_uas("uas_answer_local_bye.xml");
    let port = sipp.local_addr().port();
    let (mut caller, _) = Client::establish(&server, connection(account(port))).await;
    caller.send("call", call_msg("lost", "3001")).await;
    backend.wait_for("CallStatusEvent", |b| b["callId"] == "lost" && b["status"] == "ESTABLISHED").await;
    // The peer goes away: the BYE is never answered (its transaction would last 32 s).
    drop(sipp);

    let node = std::sync::Arc::downgrade(&server.shared);
    let outcome = server.shutdown().await;
    println!("shutdown {outcome}");
    assert!(!outcome.complete());
    assert_eq!(outcome.left, ["1 calls not ended"], "{outcome}");
    // A correctness bound on the deadline (1 s) and the grace of the steps after it, not a
    // performance figure.
    assert!(outcome.elapsed < Duration::from_secs(5), "{outcome}");
    assert!(node.upgrade().is_none(), "the dropped call's session no longer holds the node");
    let ev = backend.wait_for("CallStatusEvent", |b| b["callId"] == "lost" && b["status"] == "FAILED").await;
    assert_eq!(ev.body["info"], "Server shutdown");
    backend.wait_for("ConnectionStatusEvent", |b| b["status"] == "DISCONNECTED").await;
}

#[tokio::test]
async fn a_connect_hook_in_flight_does_not_hold_up_the_shutdown() {
    let backend = Backend::start().await;
    // The backend takes 30 s to answer `connect` (the hook timeout is 15 s).
    backend
        .answer(|m, b| if m == "connect" { Reply::mirror(b).after(Duration::from_secs(30)) } else { Reply::mirror(b) });
    let server = start_server(&sip_server_toml(&backend)).await;
    let mut c = Client::connect(&server).await;
    c.send("connection", connection(json!({}))).await;
    backend.wait_for("connect", |_| true).await;

    let node = std::sync::Arc::downgrade(&server.shared);
    let outcome = server.shutdown().await;
    println!("shutdown {outcome}");
    assert!(outcome.complete(), "{outcome}");
    assert!(node.upgrade().is_none());
    let fail = c.expect("fail").await;
    assert_eq!(fail["info"], "Server shutdown");
    c.expect_closed().await;
}
