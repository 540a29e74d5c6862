//! Calls driven through the REST API (`/rest-api/call/startup`, `/hold`, `/unhold`,
//! `/transfer`, `/send_dtmf`), against real sipp processes (`tests/sipp`) and the real recording
//! backend. The seed's rule under test: an action started through the REST API still calls its
//! hook, but the backend cannot reject it.

use std::time::Duration;

use callgate_tests::peers::{Sipp, SippProcess};
use callgate_tests::sip_fixtures::{hook_statuses, sip_server_toml, sipp_uas};
use callgate_tests::{http_post, start_server, Backend, Client, Reply};
use serde_json::{json, Value};

/// A `/call/startup` body towards `sipp`, values as JSON strings like the WCS examples.
fn startup(call_id: &str, sipp: &SippProcess) -> Value {
    json!({"callId": call_id, "callee": "3001", "hasAudio": "true", "hasVideo": "false",
           "sipLogin": "3000", "sipAuthenticationName": "3000", "sipPassword": "secret",
           "sipDomain": "127.0.0.1", "sipOutboundProxy": "127.0.0.1",
           "sipPort": sipp.local_addr().port().to_string(), "appKey": "backendApp",
           "sipRegisterRequired": "false", "visibleName": "Alice"})
}

async fn post(server: &callgate_server::RunningServer, path: &str, body: &Value) -> (u16, String) {
    http_post(server, &format!("/rest-api/call/{path}"), &body.to_string(), None).await
}

fn statuses(backend: &Backend, call: &str) -> Vec<String> {
    hook_statuses(backend, "CallStatusEvent", "callId", call)
}

async fn wait_status(backend: &Backend, call: &str, status: &str) -> Value {
    backend.wait_for("CallStatusEvent", |b| b["callId"] == call && b["status"] == status).await.body
}

#[tokio::test]
async fn a_rest_call_proceeds_although_the_backend_refuses_call_then_terminate_sends_bye() {
    let backend = Backend::start().await;
    // Under restOnError FAIL a client's call would be refused by this 403 (tests/calls.rs).
    backend.answer(|m, req| match m {
        "call" => Reply::json(403, json!({"status": 403, "reason": "calls are forbidden"})),
        _ => Reply::mirror(req),
    });
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp = sipp_uas("uas_answer_local_bye.xml");
    let mut body = startup("r1", &sipp);
    body["restClientConfig"] = json!({"call": {"restOnError": "FAIL"}, "CallStatusEvent": {"restOnError": "FAIL"}});
    let (status, text) = post(&server, "startup", &body).await;
    assert_eq!((status, text.as_str()), (200, ""), "200 with an empty body");
    let est = wait_status(&backend, "r1", "ESTABLISHED").await;
    let hook = backend.requests_for("call").pop().expect("the call hook was called");
    assert_eq!(hook.body["callId"], "r1");
    assert_eq!(hook.body["callee"], "3001");
    assert_eq!(hook.body["sessionId"], "rest-api:r1");
    assert_eq!(hook.body["appKey"], "backendApp");
    assert!(hook.body["nodeId"].as_str().is_some_and(|n| n.contains('@')));
    assert!(hook.body.get("sipPassword").is_none(), "credentials never travel in hooks");
    assert_eq!((est["caller"].as_str(), est["visibleName"].as_str()), (Some("3000"), Some("Alice")));
    assert_eq!((est["sipStatus"].as_i64(), est["hasAudio"].as_bool()), (Some(200), Some(true)));
    // Visible to the REST API like any call.
    let (status, list) = post(&server, "find", &json!({"callId": "r1"})).await;
    assert_eq!(status, 200, "{list}");
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!((list[0]["status"].as_str(), list[0]["sessionId"].as_str()), (Some("ESTABLISHED"), Some("rest-api:r1")));
    let (status, _) = post(&server, "find", &json!({"sessionId": "rest-api:r1"})).await;
    assert_eq!(status, 200);
    // A second startup with the same callId.
    let (status, text) = post(&server, "startup", &body).await;
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("r1"), "{text}");
    let (status, _) = post(&server, "terminate", &json!({"callId": "r1"})).await;
    assert_eq!(status, 200);
    let outcome = sipp.wait().await;
    outcome.assert_success();
    let received: Vec<String> = outcome.received();
    let invite = received.iter().find(|m| m.starts_with("INVITE ")).expect("INVITE at sipp");
    assert!(invite.starts_with("INVITE sip:3001@127.0.0.1 SIP/2.0"), "{invite}");
    assert!(invite.contains("m=audio ") && invite.contains("RTP/AVP 0 101"), "PCMU + telephone-event: {invite}");
    assert!(received.iter().any(|m| m.starts_with("ACK ")), "ACK at sipp");
    assert!(received.iter().any(|m| m.starts_with("BYE ")), "BYE at sipp");
    wait_status(&backend, "r1", "FINISH").await;
    assert_eq!(statuses(&backend, "r1"), ["TRYING", "RING", "ESTABLISHED", "FINISH"]);
    assert!(backend.requests_for("ErrorEvent").is_empty(), "the refusal is only logged");
    assert_eq!(server.shared.calls.calls(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_call_overwrite_rewrites_the_callee_and_a_busy_peer_fails_the_call_with_the_raw_486() {
    let backend = Backend::start().await;
    backend.answer(|m, req| match m {
        "call" => {
            let mut b = req.as_object().unwrap().clone();
            b.insert("callee".into(), "4242".into());
            Reply::json(200, Value::Object(b))
        }
        _ => Reply::mirror(req),
    });
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp = sipp_uas("uas_reject_486.xml");
    let mut body = startup("b1", &sipp);
    body["restClientConfig"] = json!({"call": {"restPolicy": "OVERWRITE", "restOverwrite": "callee"}});
    let (status, _) = post(&server, "startup", &body).await;
    assert_eq!(status, 200);
    let failed = wait_status(&backend, "b1", "FAILED").await;
    let outcome = sipp.wait().await;
    let invite = outcome.received().into_iter().find(|m| m.starts_with("INVITE ")).unwrap();
    assert!(invite.starts_with("INVITE sip:4242@127.0.0.1 SIP/2.0"), "the rewritten callee: {invite}");
    let sent = outcome.sent().into_iter().find(|m| m.starts_with("SIP/2.0 486")).expect("sipp sent 486");
    assert_eq!(failed["info"], "SIP 486 BUSY HERE");
    assert_eq!(failed["sipStatus"], 486);
    assert_eq!(failed["sipMessageRaw"].as_str(), Some(sent.as_str()), "the raw 486 exactly as sipp sent it");
    assert_eq!(failed["callee"], "4242");
    assert_eq!(statuses(&backend, "b1").first().map(String::as_str), Some("TRYING"));
    let (status, _) = post(&server, "find", &json!({"callId": "b1"})).await;
    assert_eq!(status, 404, "a failed call is gone");
    server.shutdown().await;
}

#[tokio::test]
async fn a_rest_call_ends_on_the_peers_bye() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp = Sipp::scenario("uas_answer_remote_bye.xml")
        .pause(Duration::from_millis(200))
        .timeout(Duration::from_secs(15))
        .spawn()
        .unwrap();
    let (status, _) = post(&server, "startup", &startup("rb1", &sipp)).await;
    assert_eq!(status, 200);
    let fin = wait_status(&backend, "rb1", "FINISH").await;
    assert_eq!(fin["info"], "Normal call clearing");
    sipp.wait().await.assert_success();
    assert_eq!(statuses(&backend, "rb1"), ["TRYING", "RING", "ESTABLISHED", "FINISH"]);
    assert_eq!(server.shared.calls.calls(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn startup_and_actions_refuse_what_they_cannot_do_with_a_clear_reason() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let base = json!({"callId": "x1", "callee": "3001", "sipLogin": "3000", "sipDomain": "127.0.0.1",
                      "sipPort": "5999", "appKey": "backendApp"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let cases = [
        (without("callee"), "callee is required"),
        (without("callId"), "callId is required"),
        (without("sipDomain"), "sipLogin and sipDomain are required"),
        (without("sipLogin"), "sipLogin and sipDomain are required"),
        (with("rtmpUrl", json!("rtmp://127.0.0.1/live")), "not supported by this server"),
        (with("hasVideo", json!("true")), "audio only"),
        (with("hasAudio", json!(false)), "without audio"),
        (with("hasAudio", json!("maybe")), "hasAudio must be true or false"),
        (with("sipRegisterRequired", json!("true")), "do not REGISTER"),
        (with("appKey", json!("noSuchApp")), "unknown appKey: noSuchApp"),
        (with("restClientConfig", json!({"call": {"restPolicy": "SOMETIMES"}})), "restClientConfig"),
    ];
    for (body, want) in cases {
        let (status, text) = post(&server, "startup", &body).await;
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains(want), "{body}: {text:?} should say {want:?}");
    }
    let (status, _) = http_post(&server, "/rest-api/call/startup", "[1]", None).await;
    assert_eq!(status, 400);
    assert!(backend.requests_for("call").is_empty(), "nothing refused reached the hooks");
    assert_eq!(server.shared.calls.calls(), 0);
    for path in ["hold", "unhold", "transfer", "send_dtmf"] {
        let body = json!({"callId": "nope", "target": "3002", "dtmf": "1"});
        assert_eq!(post(&server, path, &body).await.0, 404, "{path} of an unknown call");
        assert_eq!(post(&server, path, &json!({})).await.0, 400, "{path} without callId");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn rest_hold_and_unhold_of_a_clients_call_reach_sipp_and_the_client_though_the_backend_refuses() {
    let backend = Backend::start().await;
    backend.answer(|m, req| match m {
        "connect" => {
            let mut b = req.as_object().unwrap().clone();
            let rcc = json!({"hold": {"restOnError": "FAIL"}, "unhold": {"restOnError": "FAIL"}});
            b.insert("restClientConfig".into(), rcc);
            Reply::json(200, Value::Object(b))
        }
        "hold" | "unhold" => Reply::json(403, json!({})),
        _ => Reply::mirror(req),
    });
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp = sipp_uas("uas_hold.xml");
    let conn = json!({"appKey": "backendApp", "mediaProviders": ["WebRTC"], "sipLogin": "3000",
                      "sipDomain": "127.0.0.1", "sipPort": sipp.local_addr().port(), "sipRegisterRequired": false});
    let (mut c, user) = Client::establish(&server, conn).await;
    c.send(
        "call",
        json!({"callId": "h1", "callee": "3001", "hasAudio": true, "hasVideo": false,
                          "sdp": include_str!("../../crates/media/testdata/chromium-publish-offer.sdp")}),
    )
    .await;
    let talk = c.expect("talk").await;
    assert_eq!(talk["callId"], "h1");
    // The client itself is refused (the hook under FAIL)...
    c.send("hold", json!({"callId": "h1"})).await;
    assert_eq!(c.expect("fail").await["apiMethod"], "CallStatusEvent");
    // ...the REST API is not.
    let (status, text) = post(&server, "hold", &json!({"callId": "h1"})).await;
    assert_eq!(status, 200, "{text}");
    let held = c.expect("hold").await;
    assert_eq!((held["callId"].as_str(), held["status"].as_str()), (Some("h1"), Some("HOLD")));
    let (status, _) = post(&server, "unhold", &json!({"callId": "h1"})).await;
    assert_eq!(status, 200);
    let talk = c.expect("talk").await;
    assert_eq!(talk["status"], "ESTABLISHED");
    let hooks = backend.requests_for("hold");
    assert_eq!(hooks.len(), 2, "the client's hold and the REST hold both ran the hook");
    assert_eq!(hooks[1].body["sessionId"], user["sessionId"], "the owner's context");
    assert_eq!(hooks[1].body["callId"], "h1");
    c.send("hangup", json!({"callId": "h1"})).await;
    c.expect("finish").await;
    let outcome = sipp.wait().await;
    outcome.assert_success();
    let invites: Vec<String> = outcome.received().into_iter().filter(|m| m.starts_with("INVITE ")).collect();
    assert_eq!(invites.len(), 3, "INVITE + the REST hold and unhold re-INVITEs");
    assert!(invites[1].contains("a=sendonly"), "{}", invites[1]);
    wait_status(&backend, "h1", "FINISH").await;
    assert_eq!(statuses(&backend, "h1"), ["TRYING", "RING", "ESTABLISHED", "HOLD", "ESTABLISHED", "FINISH"]);
    server.shutdown().await;
}

#[tokio::test]
async fn rest_actions_on_a_ringing_call_get_409_and_terminate_cancels_it() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp = sipp_uas("uas_cancel.xml");
    assert_eq!(post(&server, "startup", &startup("ring1", &sipp)).await.0, 200);
    wait_status(&backend, "ring1", "RING").await;
    for path in ["hold", "unhold", "send_dtmf", "transfer"] {
        let (status, text) = post(&server, path, &json!({"callId": "ring1", "dtmf": "1", "target": "3002"})).await;
        assert_eq!((status, text.as_str()), (409, "Call is not established"), "{path}");
    }
    assert_eq!(post(&server, "terminate", &json!({"callId": "ring1"})).await.0, 200);
    sipp.wait().await.assert_success();
    wait_status(&backend, "ring1", "FINISH").await;
    assert!(backend.requests_for("hold").is_empty(), "no hook for an action that cannot happen");
    server.shutdown().await;
}

#[tokio::test]
async fn a_rest_call_nobody_answers_is_cancelled_after_the_outgoing_ring_timeout() {
    // sipp sends 100 and 180, then nothing until a CANCEL: without a bound the call (which has no
    // client to hang it up) would ring for ever.
    let backend = Backend::start().await;
    let toml = sip_server_toml(&backend).replace("[sip]\n", "[sip]\noutgoing_ring_timeout_ms = 2000\n");
    let server = start_server(&toml).await;
    let sipp = sipp_uas("uas_cancel.xml");
    assert_eq!(post(&server, "startup", &startup("na1", &sipp)).await.0, 200);
    wait_status(&backend, "na1", "RING").await;
    let failed = wait_status(&backend, "na1", "FAILED").await;
    assert_eq!(failed["info"], "Not answered within 2 s", "{failed}");
    sipp.wait().await.assert_success();
    assert_eq!(statuses(&backend, "na1"), ["TRYING", "RING", "FAILED"]);
    let (status, list) = post(&server, "find", &json!({"callId": "na1"})).await;
    assert_eq!(status, 404, "the call is gone: {list}");
    server.shutdown().await;
}

#[tokio::test]
async fn rest_send_dtmf_by_sip_info_and_rfc2833_on_a_rest_call() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp = sipp_uas("uas_info_dtmf.xml");
    assert_eq!(post(&server, "startup", &startup("d1", &sipp)).await.0, 200);
    wait_status(&backend, "d1", "ESTABLISHED").await;
    let (status, text) = post(&server, "send_dtmf", &json!({"callId": "d1", "dtmf": "5", "type": "SMS"})).await;
    assert_eq!(status, 400, "{text}");
    let (status, text) = post(&server, "send_dtmf", &json!({"callId": "d1", "dtmf": "x"})).await;
    assert_eq!(status, 400, "{text}");
    let (status, text) = post(&server, "send_dtmf", &json!({"callId": "d1", "dtmf": "5", "type": "INFO"})).await;
    assert_eq!(status, 200, "{text}");
    let hook = backend.wait_for("sendDtmf", |b| b["callId"] == "d1").await;
    assert_eq!((hook.body["dtmf"].as_str(), hook.body["type"].as_str()), (Some("5"), Some("INFO")));
    assert_eq!(hook.body["sessionId"], "rest-api:d1");
    // RFC 2833 goes through the call's RTP leg (sipp has no RTP here: only accepted).
    let (status, text) = post(&server, "send_dtmf", &json!({"callId": "d1", "dtmf": "1"})).await;
    assert_eq!(status, 200, "{text}");
    // INFO then BYE leave in this order on one socket; sipp handles them in order.
    backend.wait_for("sendDtmf", |b| b["dtmf"] == "1").await;
    assert_eq!(post(&server, "terminate", &json!({"callId": "d1"})).await.0, 200);
    sipp.wait().await.assert_success();
    wait_status(&backend, "d1", "FINISH").await;
    server.shutdown().await;
}

#[tokio::test]
async fn rest_transfer_of_a_rest_call_sends_refer_and_reports_the_transfer() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp =
        Sipp::scenario("uas_refer.xml").key("refer_to_user", "3002").timeout(Duration::from_secs(15)).spawn().unwrap();
    assert_eq!(post(&server, "startup", &startup("t1", &sipp)).await.0, 200);
    wait_status(&backend, "t1", "ESTABLISHED").await;
    assert_eq!(post(&server, "transfer", &json!({"callId": "t1"})).await.0, 400, "no target");
    let (status, text) = post(&server, "transfer", &json!({"callId": "t1", "target": "3002"})).await;
    assert_eq!(status, 200, "{text}");
    let hook = backend.wait_for("transfer", |b| b["callId"] == "t1").await;
    assert_eq!(hook.body["target"], "3002");
    backend.wait_for("TransferStatusEvent", |b| b["callId"] == "t1" && b["status"] == "COMPLETED").await;
    assert_eq!(post(&server, "terminate", &json!({"callId": "t1"})).await.0, 200);
    let outcome = sipp.wait().await;
    outcome.assert_success();
    let refer = outcome.received().into_iter().find(|m| m.starts_with("REFER ")).expect("REFER at sipp");
    assert!(
        refer.contains("Refer-To: <sip:3002@127.0.0.1>") || refer.contains("Refer-To: sip:3002@127.0.0.1"),
        "{refer}"
    );
    wait_status(&backend, "t1", "FINISH").await;
    server.shutdown().await;
}

/// A REST-started call belongs to no session: a graceful shutdown must still hang it up, so
/// the SIP peer gets a BYE (sipp's scenario waits for it) and the backend a FINISH.
#[tokio::test]
async fn a_graceful_shutdown_hangs_up_rest_calls() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp = sipp_uas("uas_answer_local_bye.xml");
    let (status, _) = post(&server, "startup", &startup("r9", &sipp)).await;
    assert_eq!(status, 200);
    wait_status(&backend, "r9", "ESTABLISHED").await;
    let shared = server.shared.clone();
    server.shutdown().await;
    assert_eq!(shared.calls.calls(), 0, "every call ended within the shutdown");
    sipp.wait().await.assert_success();
    wait_status(&backend, "r9", "FINISH").await;
}
