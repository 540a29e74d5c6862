//! SIP through callgate: a WebSocket client speaking the client protocol, a real recording
//! backend, and real SIP peers (sipp scenarios of `tests/sipp`, Kamailio).
//!
//! Implemented so far: registration (issue 5, item 1) and outgoing calls with hangup (item 2).

use std::time::Duration;

use callgate_tests::peers::{Kamailio, Sipp, SippProcess};
use callgate_tests::sip_fixtures::{call_msg, connection, hook_statuses, registrar, sip_server_toml, sipp_uas};
use callgate_tests::{start_server, Backend, Client, Reply};
use serde_json::{json, Value};

fn sip_fields(sipp: &SippProcess, password: &str) -> Value {
    json!({"sipLogin": "3000", "sipPassword": password, "sipDomain": "127.0.0.1",
           "sipPort": sipp.local_addr().port().to_string()})
}

#[tokio::test]
async fn registers_with_the_clients_credentials_and_reports_registered() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp = registrar("secret");
    let (mut c, _) = Client::establish(&server, connection(sip_fields(&sipp, "secret"))).await;
    let reg = c.expect("registered").await;
    assert_eq!((reg["sipLogin"].as_str(), reg["status"].as_str()), (Some("3000"), Some("REGISTERED")));
    let ev = backend.wait_for("RegistrationStatusEvent", |b| b["status"] == "REGISTERED").await;
    assert_eq!(ev.body["sipLogin"], "3000");
    assert!(ev.body["sessionId"].as_str().is_some_and(|s| !s.is_empty()));
    // The hook follows ConnectionStatusEvent ESTABLISHED.
    let order: Vec<String> = backend.requests().into_iter().map(|r| r.method).collect();
    let est = order.iter().position(|m| m == "ConnectionStatusEvent").unwrap();
    let regd = order.iter().position(|m| m == "RegistrationStatusEvent").unwrap();
    assert!(est < regd, "{order:?}");
    let outcome = sipp.wait().await;
    outcome.assert_success();
    let second = outcome.received().into_iter().filter(|m| m.starts_with("REGISTER ")).nth(1).unwrap();
    assert!(second.contains("username=\"3000\""), "{second}");
    assert!(second.contains("User-Agent: callgate"), "{second}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_refused_registration_reaches_client_and_backend_with_the_raw_403() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp = registrar("the-right-one");
    let (mut c, _) = Client::establish(&server, connection(sip_fields(&sipp, "wrong"))).await;
    let fail = c.expect("fail").await;
    assert_eq!(fail["apiMethod"], "RegistrationStatusEvent");
    assert_eq!(fail["status"], "FAILED");
    assert_eq!(fail["info"], "SIP 403 FORBIDDEN");
    let ev = backend.wait_for("RegistrationStatusEvent", |b| b["status"] == "FAILED").await;
    assert_eq!(ev.body["info"], "SIP 403 FORBIDDEN");
    assert_eq!(ev.body["sipStatus"], 403);
    let outcome = sipp.wait().await;
    let sent = outcome.sent().into_iter().find(|m| m.starts_with("SIP/2.0 403")).expect("sipp sent 403");
    assert_eq!(ev.body["sipMessageRaw"].as_str(), Some(sent.as_str()), "the raw response, exactly as sent");
    assert_eq!((&fail["sipStatus"], fail["sipMessageRaw"].as_str()), (&json!(403), Some(sent.as_str())), "client too");
    // Registration was not declared mandatory: the session goes on.
    c.send("sendData", json!({"operationId": "op", "payload": {}})).await;
    assert_eq!(c.expect("DataStatusEvent").await["status"], "ACCEPTED");
    server.shutdown().await;
}

#[tokio::test]
async fn a_mandatory_registration_that_fails_closes_the_session() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp = registrar("the-right-one");
    let mut sip = sip_fields(&sipp, "wrong");
    sip["sipRegisterRequired"] = true.into();
    let (mut c, _) = Client::establish(&server, connection(sip)).await;
    let fail = c.expect("fail").await;
    assert_eq!(
        (fail["apiMethod"].as_str(), fail["info"].as_str()),
        (Some("RegistrationStatusEvent"), Some("SIP 403 FORBIDDEN"))
    );
    c.expect_closed().await;
    backend.wait_for("ConnectionStatusEvent", |b| b["status"] == "DISCONNECTED").await;
    let _ = sipp.wait().await;
    // A required registration without a domain fails at once, with a clear reason.
    let (mut c, _) =
        Client::establish(&server, connection(json!({"sipLogin": "3000", "sipRegisterRequired": true}))).await;
    let fail = c.expect("fail").await;
    assert_eq!(fail["info"], "SIP registration needs sipDomain");
    c.expect_closed().await;
    server.shutdown().await;
}

#[tokio::test]
async fn no_registration_without_domain_or_when_not_required() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let (mut c, _) = Client::establish(&server, connection(json!({"sipLogin": "3000"}))).await;
    let (mut d, _) = Client::establish(
        &server,
        connection(json!({"sipLogin": "3000", "sipDomain": "127.0.0.1", "sipRegisterRequired": false})),
    )
    .await;
    for cl in [&mut c, &mut d] {
        cl.send("sendData", json!({"operationId": "op", "payload": {}})).await;
        assert_eq!(cl.expect("DataStatusEvent").await["status"], "ACCEPTED");
    }
    assert!(backend.requests_for("RegistrationStatusEvent").is_empty());
    assert!(server.shared.calls.local_addr().is_none(), "no SIP port is opened without a SIP client");
    assert!(!c.seen.iter().chain(d.seen.iter()).any(|(m, _)| m == "registered" || m == "fail"));
    server.shutdown().await;
}

#[tokio::test]
async fn credentials_injected_by_connect_register_with_kamailio_unseen_by_the_client_then_unregister() {
    let k = Kamailio::new().start().await.expect("kamailio starts (run `make deps` if it is missing)");
    let backend = Backend::start().await;
    let domain = k.addr().to_string();
    backend.answer(move |m, req| match m {
        "connect" => {
            let mut b = req.as_object().unwrap().clone();
            b.insert("sipLogin".into(), "3001".into());
            b.insert("sipPassword".into(), "secret3001".into());
            b.insert("sipDomain".into(), domain.clone().into());
            b.insert(
                "restClientConfig".into(),
                json!({"ConnectionStatusEvent": {"clientExclude": "sipPassword,sipDomain"}}),
            );
            Reply::json(200, Value::Object(b))
        }
        _ => Reply::mirror(req),
    });
    let server = start_server(&sip_server_toml(&backend)).await;
    let (mut c, user) = Client::establish(&server, connection(json!({}))).await;
    assert_eq!(user["sipLogin"], "3001");
    assert!(!user.contains_key("sipPassword") && !user.contains_key("sipDomain"), "{user:?}");
    let reg = c.expect("registered").await;
    assert_eq!(reg["status"], "REGISTERED");
    assert!(
        !c.seen.iter().any(|(_, d)| Value::Array(d.clone()).to_string().contains("secret3001")),
        "the password never reaches the client"
    );
    backend.wait_for("RegistrationStatusEvent", |b| b["status"] == "REGISTERED" && b["sipLogin"] == "3001").await;
    // Session end: un-REGISTER, confirmed by Kamailio.
    drop(c);
    backend.wait_for("RegistrationStatusEvent", |b| b["status"] == "UNREGISTERED").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.shared.calls.registrations() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.shared.calls.registrations(), 0);
    server.shutdown().await;
}

// ----- outgoing calls -------------------------------------------------------------------------

/// Connection fields for calls through `sipp` without registering.
fn call_account(sipp: &SippProcess) -> Value {
    json!({"sipLogin": "3000", "sipPassword": "secret", "sipDomain": "127.0.0.1",
           "sipPort": sipp.local_addr().port(), "sipRegisterRequired": false})
}

/// The statuses of the call's `CallStatusEvent`s, in arrival order.
fn backend_statuses(backend: &Backend, call: &str) -> Vec<String> {
    hook_statuses(backend, "CallStatusEvent", "callId", call)
}

async fn expect_status(c: &mut Client, message: &str, call: &str, status: &str) -> serde_json::Map<String, Value> {
    let m = c.expect(message).await;
    assert_eq!((m["callId"].as_str(), m["status"].as_str()), (Some(call), Some(status)), "{message}: {m:?}");
    m
}

#[tokio::test]
async fn outgoing_call_answered_then_hung_up_by_the_client() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp = sipp_uas("uas_answer_local_bye.xml");
    let (mut c, _) = Client::establish(&server, connection(call_account(&sipp))).await;
    c.send("call", call_msg("c1", "3001")).await;
    expect_status(&mut c, "notifyTryingResponse", "c1", "TRYING").await;
    expect_status(&mut c, "ring", "c1", "RING").await;
    expect_status(&mut c, "talk", "c1", "ESTABLISHED").await;
    c.send("hangup", json!({"callId": "c1"})).await;
    let fin = expect_status(&mut c, "finish", "c1", "FINISH").await;
    assert_eq!(fin["info"], "Normal call clearing");
    let sdps: Vec<&Vec<Value>> = c.seen.iter().filter(|(m, _)| m == "setRemoteSDP").map(|(_, d)| d).collect();
    assert_eq!(sdps.len(), 1, "setRemoteSDP exactly once");
    assert_eq!((sdps[0][0].as_str(), sdps[0][2].as_bool()), (Some("c1"), Some(true)));
    assert!(sdps[0][1].as_str().unwrap().contains("PCM"), "the browser answer carries G.711");
    let outcome = sipp.wait().await;
    outcome.assert_success();
    let invite = outcome.received().into_iter().find(|m| m.starts_with("INVITE ")).unwrap();
    assert!(invite.starts_with("INVITE sip:3001@127.0.0.1 SIP/2.0"), "{invite}");
    assert!(invite.contains("RTP/AVP"), "the bridge's plain RTP offer: {invite}");
    backend.wait_for("CallStatusEvent", |b| b["callId"] == "c1" && b["status"] == "FINISH").await;
    assert_eq!(backend_statuses(&backend, "c1"), ["TRYING", "RING", "ESTABLISHED", "FINISH"]);
    let call_hook = &backend.requests_for("call")[0].body;
    assert_eq!((call_hook["callee"].as_str(), call_hook["callId"].as_str()), (Some("3001"), Some("c1")));
    backend.wait_for("hangup", |b| b["callId"] == "c1").await;
    assert_eq!(server.shared.calls.calls(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn outgoing_call_hung_up_by_the_peer_and_a_closed_session_hangs_up() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp = Sipp::scenario("uas_answer_remote_bye.xml")
        .pause(Duration::from_millis(300))
        .timeout(Duration::from_secs(15))
        .spawn()
        .unwrap();
    let (mut c, _) = Client::establish(&server, connection(call_account(&sipp))).await;
    c.send("call", call_msg("c1", "3001")).await;
    expect_status(&mut c, "talk", "c1", "ESTABLISHED").await;
    expect_status(&mut c, "finish", "c1", "FINISH").await;
    sipp.wait().await.assert_success();

    let sipp = sipp_uas("uas_answer_local_bye.xml");
    let (mut c, _) = Client::establish(&server, connection(call_account(&sipp))).await;
    c.send("call", call_msg("c2", "3001")).await;
    expect_status(&mut c, "talk", "c2", "ESTABLISHED").await;
    drop(c);
    sipp.wait().await.assert_success();
    backend.wait_for("CallStatusEvent", |b| b["callId"] == "c2" && b["status"] == "FINISH").await;
    server.shutdown().await;
}

#[tokio::test]
async fn rejections_reach_client_and_backend_with_errmap_info_and_the_raw_response() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    for (code, info) in [
        (403, "SIP 403 FORBIDDEN"),
        (486, "SIP 486 BUSY HERE"),
        (503, "SIP 503 SERVICE UNAVAILABLE"),
        (603, "SIP 603 DECLINE"),
    ] {
        let sipp = sipp_uas(&format!("uas_reject_{code}.xml"));
        let (mut c, _) = Client::establish(&server, connection(call_account(&sipp))).await;
        let id = format!("r{code}");
        c.send("call", call_msg(&id, "3001")).await;
        expect_status(&mut c, "notifyTryingResponse", &id, "TRYING").await;
        let fin = expect_status(&mut c, "finish", &id, "FAILED").await;
        assert_eq!(fin["info"], info);
        assert_eq!(fin["sipStatus"], code);
        let outcome = sipp.wait().await;
        let sent = outcome.sent().into_iter().find(|m| m.starts_with(&format!("SIP/2.0 {code}"))).unwrap();
        let ev = backend.wait_for("CallStatusEvent", |b| b["callId"] == id.as_str() && b["status"] == "FAILED").await;
        assert_eq!(ev.body["info"], info);
        assert_eq!(ev.body["sipStatus"], code);
        assert_eq!(ev.body["sipMessageRaw"].as_str(), Some(sent.as_str()), "raw {code} exactly as sipp sent it");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_backend_rewrites_the_callee_or_refuses_the_call() {
    let backend = Backend::start().await;
    backend.answer(|m, req| match m {
        "connect" => {
            let mut b = req.as_object().unwrap().clone();
            b.insert(
                "restClientConfig".into(),
                json!({"call": {"restPolicy": "OVERWRITE", "restOverwrite": "callee", "restOnError": "FAIL"}}),
            );
            Reply::json(200, Value::Object(b))
        }
        "call" if req["callee"] == "refuse-me" => Reply::json(403, json!({})),
        "call" => {
            let mut b = req.as_object().unwrap().clone();
            b.insert("callee".into(), "4242".into());
            Reply::json(200, Value::Object(b))
        }
        _ => Reply::mirror(req),
    });
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp = sipp_uas("uas_reject_403.xml");
    let (mut c, _) = Client::establish(&server, connection(call_account(&sipp))).await;
    c.send("call", call_msg("c1", "3001")).await;
    expect_status(&mut c, "finish", "c1", "FAILED").await;
    let outcome = sipp.wait().await;
    let invite = outcome.received().into_iter().find(|m| m.starts_with("INVITE ")).unwrap();
    assert!(invite.starts_with("INVITE sip:4242@127.0.0.1 SIP/2.0"), "the rewritten callee: {invite}");
    let ev = backend.wait_for("CallStatusEvent", |b| b["callId"] == "c1" && b["status"] == "FAILED").await;
    assert_eq!(ev.body["callee"], "4242");

    c.send("call", call_msg("c2", "refuse-me")).await;
    let fin = expect_status(&mut c, "finish", "c2", "FAILED").await;
    assert!(fin["info"].as_str().is_some_and(|i| !i.is_empty()), "{fin:?}");
    assert!(!c.seen.iter().any(|(m, d)| m == "notifyTryingResponse" && d[0]["callId"] == "c2"));
    backend.wait_for("CallStatusEvent", |b| b["callId"] == "c2" && b["status"] == "FAILED").await;
    assert_eq!(server.shared.calls.calls(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn calls_without_an_sip_account_fail_and_answering_an_unknown_call_is_refused() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let (mut c, _) = Client::establish(&server, connection(json!({}))).await;
    c.send("call", call_msg("c1", "3001")).await;
    let fin = expect_status(&mut c, "finish", "c1", "FAILED").await;
    assert!(fin["info"].as_str().unwrap().contains("no SIP account"), "{fin:?}");
    c.send("answer", json!({"callId": "c9", "sdp": "v=0\r\n"})).await;
    let fail = c.expect("fail").await;
    assert_eq!((fail["apiMethod"].as_str(), fail["info"].as_str()), (Some("CallStatusEvent"), Some("Call not found")));
    server.shutdown().await;
}

#[tokio::test]
async fn hold_and_unhold_by_re_invite_with_a_refused_hold_first() {
    let backend = Backend::start().await;
    let refuse_once = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let r = refuse_once.clone();
    backend.answer(move |m, req| match m {
        "connect" => {
            let mut b = req.as_object().unwrap().clone();
            b.insert("restClientConfig".into(), json!({"hold": {"restOnError": "FAIL"}}));
            Reply::json(200, Value::Object(b))
        }
        "hold" if r.swap(false, std::sync::atomic::Ordering::SeqCst) => Reply::json(403, json!({})),
        _ => Reply::mirror(req),
    });
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp = sipp_uas("uas_hold.xml");
    let (mut c, _) = Client::establish(&server, connection(call_account(&sipp))).await;
    c.send("call", call_msg("h1", "3001")).await;
    expect_status(&mut c, "talk", "h1", "ESTABLISHED").await;
    c.send("hold", json!({"callId": "h1"})).await;
    let fail = c.expect("fail").await;
    assert_eq!(fail["apiMethod"], "CallStatusEvent", "the refused hold: {fail:?}");
    c.send("hold", json!({"callId": "h1"})).await;
    expect_status(&mut c, "hold", "h1", "HOLD").await;
    c.send("unhold", json!({"callId": "h1"})).await;
    expect_status(&mut c, "talk", "h1", "ESTABLISHED").await;
    c.send("hangup", json!({"callId": "h1"})).await;
    expect_status(&mut c, "finish", "h1", "FINISH").await;
    let outcome = sipp.wait().await;
    outcome.assert_success();
    let reinvites: Vec<String> = outcome.received().into_iter().filter(|m| m.starts_with("INVITE ")).collect();
    assert_eq!(reinvites.len(), 3, "INVITE + two re-INVITEs (the refused hold sent nothing)");
    assert!(reinvites[1].contains("a=sendonly"), "{}", reinvites[1]);
    backend.wait_for("CallStatusEvent", |b| b["callId"] == "h1" && b["status"] == "FINISH").await;
    assert_eq!(backend_statuses(&backend, "h1"), ["TRYING", "RING", "ESTABLISHED", "HOLD", "ESTABLISHED", "FINISH"]);
    server.shutdown().await;
}

#[tokio::test]
async fn dtmf_by_sip_info_reaches_sipp_and_rfc2833_is_accepted() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp = sipp_uas("uas_info_dtmf.xml");
    let (mut c, _) = Client::establish(&server, connection(call_account(&sipp))).await;
    c.send("call", call_msg("d1", "3001")).await;
    expect_status(&mut c, "talk", "d1", "ESTABLISHED").await;
    c.send("sendDtmf", json!({"callId": "d1", "type": "INFO", "dtmf": "5"})).await;
    backend.wait_for("sendDtmf", |b| b["callId"] == "d1" && b["dtmf"] == "5").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.send("sendDtmf", json!({"callId": "d1", "dtmf": "1"})).await; // RFC 2833 through the bridge
    backend.wait_for("sendDtmf", |b| b["callId"] == "d1" && b["dtmf"] == "1").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.send("hangup", json!({"callId": "d1"})).await;
    expect_status(&mut c, "finish", "d1", "FINISH").await;
    assert!(!c.seen.iter().any(|(m, _)| m == "fail"), "{:?}", c.seen);
    sipp.wait().await.assert_success();
    server.shutdown().await;
}

#[tokio::test]
async fn transfer_by_refer_reports_progress_to_client_and_backend() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp =
        Sipp::scenario("uas_refer.xml").key("refer_to_user", "3002").timeout(Duration::from_secs(15)).spawn().unwrap();
    let (mut c, _) = Client::establish(&server, connection(call_account(&sipp))).await;
    c.send("call", call_msg("t1", "3001")).await;
    expect_status(&mut c, "talk", "t1", "ESTABLISHED").await;
    c.send("transfer", json!({"callId": "t1", "target": "3002"})).await;
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("COMPLETED") {
        let t = c.expect("notifyTransferEvent").await;
        assert_eq!(t["callId"], "t1");
        seen.push(t["status"].as_str().unwrap().to_string());
    }
    assert_eq!(seen.first().map(String::as_str), Some("ACCEPTED"), "{seen:?}");
    c.send("hangup", json!({"callId": "t1"})).await;
    expect_status(&mut c, "finish", "t1", "FINISH").await;
    sipp.wait().await.assert_success();
    backend.wait_for("TransferStatusEvent", |b| b["callId"] == "t1" && b["status"] == "COMPLETED").await;
    backend.wait_for("transfer", |b| b["target"] == "3002").await;
    server.shutdown().await;
}

/// docs/errmap.md: every SIP-caused FAILED carries `info`, `sipStatus` and `sipMessageRaw` (the
/// message exactly as sipp sent it) to client and backend: a refused re-INVITE and INFO
/// (`ErrorEvent`s: the call goes on), a refused REFER and a NOTIFY whose sipfrag is a 486
/// (`TransferStatusEvent FAILED`).
#[tokio::test]
async fn refused_re_invite_info_and_refer_reach_client_and_backend_with_the_raw_message() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp = sipp_uas("uas_reject_in_dialog.xml");
    let (mut c, _) = Client::establish(&server, connection(call_account(&sipp))).await;
    c.send("call", call_msg("x1", "3001")).await;
    expect_status(&mut c, "talk", "x1", "ESTABLISHED").await;

    c.send("hold", json!({"callId": "x1"})).await;
    let hold_fail = c.expect("fail").await;
    assert_eq!((hold_fail["apiMethod"].as_str(), hold_fail["id"].as_str()), (Some("CallStatusEvent"), Some("x1")));
    let hold_err = c.expect("fail").await;
    assert_eq!(hold_err["apiMethod"], "ErrorEvent");
    let hold_ev = backend.wait_for("ErrorEvent", |b| b["info"].as_str().unwrap_or("").starts_with("re-INVITE")).await;

    c.send("sendDtmf", json!({"callId": "x1", "type": "INFO", "dtmf": "5"})).await;
    let info_err = c.expect("fail").await;
    let info_ev = backend.wait_for("ErrorEvent", |b| b["info"].as_str().unwrap_or("").starts_with("INFO")).await;

    c.send("transfer", json!({"callId": "x1", "target": "3002"})).await;
    let refer_fail = c.expect("notifyTransferEvent").await;
    let refer_ev = backend.wait_for("TransferStatusEvent", |b| b["callId"] == "x1" && b["sipStatus"] == 403).await;

    c.send("transfer", json!({"callId": "x1", "target": "3002"})).await;
    assert_eq!(c.expect("notifyTransferEvent").await["status"], "ACCEPTED");
    let notify_fail = c.expect("notifyTransferEvent").await;
    let notify_ev = backend.wait_for("TransferStatusEvent", |b| b["callId"] == "x1" && b["sipStatus"] == 486).await;

    c.send("hangup", json!({"callId": "x1"})).await;
    expect_status(&mut c, "finish", "x1", "FINISH").await;
    let outcome = sipp.wait().await;
    outcome.assert_success();
    let sent = |start: &str| outcome.sent().into_iter().find(|m| m.starts_with(start)).expect(start);
    let (r488, r469, r403) = (sent("SIP/2.0 488"), sent("SIP/2.0 469"), sent("SIP/2.0 403"));
    let notify = sent("NOTIFY ");
    for (what, client, hook, info, code, raw) in [
        ("re-INVITE", &hold_fail, &hold_ev.body, "re-INVITE: SIP 488 NOT ACCEPTABLE HERE", 488, &r488),
        ("re-INVITE", &hold_err, &hold_ev.body, "re-INVITE: SIP 488 NOT ACCEPTABLE HERE", 488, &r488),
        ("INFO", &info_err, &info_ev.body, "INFO: SIP 469 BAD INFO PACKAGE", 469, &r469),
        ("REFER", &refer_fail, &refer_ev.body, "SIP 403 FORBIDDEN", 403, &r403),
        ("NOTIFY", &notify_fail, &notify_ev.body, "SIP 486 BUSY HERE", 486, &notify),
    ] {
        let client = Value::Object(client.clone());
        for (who, m) in [("client", &client), ("backend", hook)] {
            assert_eq!(m["status"], "FAILED", "{what} {who}: {m:?}");
            assert_eq!(m["info"], info, "{what} {who}");
            assert_eq!(m["sipStatus"], code, "{what} {who}");
            assert_eq!(m["sipMessageRaw"].as_str(), Some(raw.as_str()), "{what} {who}: exactly as sipp sent it");
        }
    }
    assert!(notify.contains("SIP/2.0 486 Busy Here"), "{notify}");
    server.shutdown().await;
}

#[tokio::test]
async fn rest_call_find_and_terminate() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let (status, _) = callgate_tests::http_post(&server, "/rest-api/call/find_all", "", None).await;
    assert_eq!(status, 404);
    let sipp = sipp_uas("uas_answer_local_bye.xml");
    let (mut c, _) = Client::establish(&server, connection(call_account(&sipp))).await;
    c.send("call", call_msg("f1", "3001")).await;
    expect_status(&mut c, "talk", "f1", "ESTABLISHED").await;
    let (status, body) = callgate_tests::http_post(&server, "/rest-api/call/find", r#"{"callId":"f1"}"#, None).await;
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((list[0]["callId"].as_str(), list[0]["status"].as_str()), (Some("f1"), Some("ESTABLISHED")), "{list}");
    assert_eq!(list[0]["callee"], "3001");
    assert!(list[0].get("sdp").is_none());
    let (status, _) = callgate_tests::http_post(&server, "/rest-api/call/find", r#"{"callee":"nobody"}"#, None).await;
    assert_eq!(status, 404);
    let (status, body) = callgate_tests::http_post(&server, "/rest-api/call/find_all", "", None).await;
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap().as_array().unwrap().len()), (200, 1));
    let (status, _) =
        callgate_tests::http_post(&server, "/rest-api/call/terminate", r#"{"callId":"nope"}"#, None).await;
    assert_eq!(status, 404);
    let (status, _) = callgate_tests::http_post(&server, "/rest-api/call/terminate", r#"{}"#, None).await;
    assert_eq!(status, 400);
    let (status, _) = callgate_tests::http_post(&server, "/rest-api/call/terminate", r#"{"callId":"f1"}"#, None).await;
    assert_eq!(status, 200);
    expect_status(&mut c, "finish", "f1", "FINISH").await;
    sipp.wait().await.assert_success();
    let (status, _) = callgate_tests::http_post(&server, "/rest-api/call/find", r#"{"callId":"f1"}"#, None).await;
    assert_eq!(status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn an_incoming_call_refused_by_on_call_event_gets_403() {
    let backend = Backend::start().await;
    backend.answer(|m, req| match m {
        "connect" => {
            let mut b = req.as_object().unwrap().clone();
            b.insert("restClientConfig".into(), json!({"OnCallEvent": {"restOnError": "FAIL"}}));
            Reply::json(200, Value::Object(b))
        }
        "OnCallEvent" => Reply::json(403, json!({})),
        _ => Reply::mirror(req),
    });
    let server = start_server(&sip_server_toml(&backend)).await;
    let registrar = registrar("secret");
    let (mut c, _) = Client::establish(&server, connection(sip_fields(&registrar, "secret"))).await;
    c.expect("registered").await;
    let sip_addr = server.shared.calls.local_addr().expect("the SIP endpoint runs");
    let caller = Sipp::scenario("uac_call_expect_403.xml")
        .remote(sip_addr)
        .service("3000")
        .timeout(Duration::from_secs(15))
        .spawn()
        .unwrap();
    let hook = backend.wait_for("OnCallEvent", |b| b["incoming"] == true).await;
    assert!(hook.body["callee"].as_str().unwrap().contains("3000"), "{:?}", hook.body);
    assert!(hook.body["sipMessageRaw"].as_str().unwrap().starts_with("INVITE "));
    caller.wait().await.assert_success();
    let fail = c.expect("fail").await;
    assert_eq!(fail["apiMethod"], "CallStatusEvent");
    let _ = registrar.wait().await;
    server.shutdown().await;
}

/// The browser's answer to the server's offer for an incoming call: a str0m peer accepting it
/// (it is not run: these tests look at signalling; the e2e tests carry real audio).
fn browser_answer(offer: &str) -> String {
    let mut rtc = str0m::Rtc::builder()
        .set_crypto_provider(std::sync::Arc::new(str0m::crypto::from_feature_flags()))
        .enable_pcmu(true, false)
        .build(std::time::Instant::now());
    let a: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    rtc.add_local_candidate(str0m::Candidate::host(a, "udp").unwrap());
    let offer = str0m::change::SdpOffer::from_sdp_string(offer).unwrap();
    rtc.sdp_api().accept_offer(offer).unwrap().to_sdp_string()
}

/// Registers the session's account "3000" with a sipp registrar, then has a sipp UAC call it
/// directly on callgate's SIP port.
async fn incoming_setup(
    backend: &Backend,
    caller_scenario: &str,
    pause: Duration,
) -> (callgate_server::RunningServer, Client, SippProcess, SippProcess) {
    let server = start_server(&sip_server_toml(backend)).await;
    let registrar = registrar("secret");
    let (mut c, _) = Client::establish(&server, connection(sip_fields(&registrar, "secret"))).await;
    c.expect("registered").await;
    let sip_addr = server.shared.calls.local_addr().expect("the SIP endpoint runs");
    let caller = Sipp::scenario(caller_scenario)
        .remote(sip_addr)
        .service("3000")
        .pause(pause)
        .timeout(Duration::from_secs(20))
        .spawn()
        .unwrap();
    (server, c, registrar, caller)
}

/// spec/client-protocol.md §6.3: `setRemoteSDP [id, offer, false]`, `notifyIncomingCall`,
/// `ring` in exactly that order; `answer` -> 200 OK -> ACK -> `talk`; the caller's BYE -> FINISH.
#[tokio::test]
async fn an_incoming_call_is_offered_in_order_answered_and_ended_by_the_caller() {
    let backend = Backend::start().await;
    let (server, mut c, registrar, caller) =
        incoming_setup(&backend, "uac_call.xml", Duration::from_millis(1500)).await;
    let hook = backend.wait_for("OnCallEvent", |b| b["incoming"] == true).await;
    let call_id = hook.body["callId"].as_str().unwrap().to_string();
    assert!(call_id.contains('-') || call_id.contains('@'), "the SIP Call-ID: {call_id}");
    assert_eq!((hook.body["caller"].as_str(), hook.body["callee"].as_str()), (Some("sipp"), Some("3000")));
    assert!(hook.body["sipMessageRaw"].as_str().unwrap().starts_with("INVITE "));
    let ring = expect_status(&mut c, "ring", &call_id, "RING").await;
    assert_eq!(ring["incoming"], true);
    let order: Vec<&str> = c
        .seen
        .iter()
        .map(|(m, _)| m.as_str())
        .filter(|m| ["setRemoteSDP", "notifyIncomingCall", "ring"].contains(m))
        .collect();
    assert_eq!(order, ["setRemoteSDP", "notifyIncomingCall", "ring"]);
    let sdp = c.seen.iter().find(|(m, _)| m == "setRemoteSDP").map(|(_, d)| d.clone()).unwrap();
    assert_eq!((sdp[0].as_str(), sdp[2].as_bool()), (Some(call_id.as_str()), Some(false)));
    let offer = sdp[1].as_str().unwrap();
    assert!(offer.contains("PCMU/8000") && offer.contains("a=setup:actpass"), "{offer}");
    let inc = c.seen.iter().find(|(m, _)| m == "notifyIncomingCall").map(|(_, d)| d[0].clone()).unwrap();
    assert_eq!((inc["callId"].as_str(), inc["caller"].as_str()), (Some(call_id.as_str()), Some("sipp")));
    assert!(inc.get("sipMessageRaw").is_none(), "the raw INVITE stays with the backend");

    c.send(
        "answer",
        json!({"callId": call_id, "sdp": browser_answer(offer), "incoming": true,
                             "hasAudio": true, "hasVideo": true, "status": "PENDING"}),
    )
    .await;
    expect_status(&mut c, "talk", &call_id, "ESTABLISHED").await;
    let fin = expect_status(&mut c, "finish", &call_id, "FINISH").await;
    assert_eq!(fin["info"], "Normal call clearing");
    let outcome = caller.wait().await;
    outcome.assert_success();
    let ok = outcome.received().into_iter().find(|m| m.starts_with("SIP/2.0 200") && m.contains("INVITE")).unwrap();
    assert!(ok.contains("RTP/AVP 0 101"), "the SIP answer: PCMU and the offer's telephone-event PT\n{ok}");
    assert!(outcome.received().iter().any(|m| m.starts_with("SIP/2.0 180")), "the caller heard ringing");
    backend.wait_for("CallStatusEvent", |b| b["callId"] == call_id && b["status"] == "FINISH").await;
    assert_eq!(backend_statuses(&backend, &call_id), ["RING", "ESTABLISHED", "FINISH"]);
    assert_eq!(backend.requests_for("answer")[0].body["callId"], call_id);
    assert_eq!(server.shared.calls.calls(), 0);
    let _ = registrar.wait().await;
    server.shutdown().await;
}

/// The user declines (hangup while ringing): the caller gets 486 and the client FINISH.
#[tokio::test]
async fn an_incoming_call_declined_by_the_client_gets_486() {
    let backend = Backend::start().await;
    let (server, mut c, registrar, caller) = incoming_setup(&backend, "uac_call_expect_486.xml", Duration::ZERO).await;
    let ring = c.expect("ring").await;
    let call_id = ring["callId"].as_str().unwrap().to_string();
    c.send("hangup", json!({"callId": call_id})).await;
    expect_status(&mut c, "finish", &call_id, "FINISH").await;
    caller.wait().await.assert_success();
    backend.wait_for("hangup", |b| b["callId"] == call_id).await;
    assert_eq!(server.shared.calls.calls(), 0);
    let _ = registrar.wait().await;
    server.shutdown().await;
}

/// The caller gives up while it rings: 200/487 to the CANCEL, FINISH to client and backend.
#[tokio::test]
async fn an_incoming_call_cancelled_while_ringing_finishes() {
    let backend = Backend::start().await;
    let (server, mut c, registrar, caller) =
        incoming_setup(&backend, "uac_cancel.xml", Duration::from_millis(500)).await;
    let ring = c.expect("ring").await;
    let call_id = ring["callId"].as_str().unwrap().to_string();
    expect_status(&mut c, "finish", &call_id, "FINISH").await;
    caller.wait().await.assert_success();
    backend.wait_for("CallStatusEvent", |b| b["callId"] == call_id && b["status"] == "FINISH").await;
    assert_eq!(server.shared.calls.calls(), 0);
    let _ = registrar.wait().await;
    server.shutdown().await;
}

/// A backend refusing `answer` leaves the call ringing (the client is told with `fail`); the
/// user's hangup then declines it.
#[tokio::test]
async fn a_refused_answer_keeps_the_call_ringing() {
    let backend = Backend::start().await;
    backend.answer(|m, req| match m {
        "connect" => {
            let mut b = req.as_object().unwrap().clone();
            b.insert("restClientConfig".into(), json!({"answer": {"restOnError": "FAIL"}}));
            Reply::json(200, Value::Object(b))
        }
        "answer" => Reply::json(403, json!({"status": 403, "reason": "agent is on a break"})),
        _ => Reply::mirror(req),
    });
    let (server, mut c, registrar, caller) = incoming_setup(&backend, "uac_call_expect_486.xml", Duration::ZERO).await;
    let ring = c.expect("ring").await;
    let call_id = ring["callId"].as_str().unwrap().to_string();
    let offer = c.seen.iter().find(|(m, _)| m == "setRemoteSDP").map(|(_, d)| d[1].as_str().unwrap().to_string());
    c.send("answer", json!({"callId": call_id, "sdp": browser_answer(&offer.unwrap())})).await;
    let fail = c.expect("fail").await;
    assert_eq!(
        (fail["apiMethod"].as_str(), fail["info"].as_str()),
        (Some("CallStatusEvent"), Some("agent is on a break"))
    );
    assert_eq!(server.shared.calls.calls(), 1, "still ringing");
    c.send("hangup", json!({"callId": call_id})).await;
    expect_status(&mut c, "finish", &call_id, "FINISH").await;
    caller.wait().await.assert_success();
    let _ = registrar.wait().await;
    server.shutdown().await;
}

/// A callee host that never answers: the INVITE is retransmitted (timer A) and the call fails
/// when timer B (64*T1) fires. T1 is 50 ms here (`[sip] t1_ms`), so B is 3.2 s instead of 32 s.
#[tokio::test]
async fn a_call_nobody_answers_fails_by_timer_b_with_a_clear_info() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend).replacen("[sip]\n", "[sip]\nt1_ms = 50\n", 1)).await;
    // A socket that swallows everything: no ICMP port-unreachable, no answer.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let account = json!({"sipLogin": "3000", "sipPassword": "secret", "sipDomain": "127.0.0.1",
                         "sipPort": silent_port, "sipRegisterRequired": false});
    let (mut c, _) = Client::establish(&server, connection(account)).await;
    c.send("call", call_msg("c1", "3001")).await;
    expect_status(&mut c, "notifyTryingResponse", "c1", "TRYING").await;
    let fin = expect_status(&mut c, "finish", "c1", "FAILED").await;
    assert_eq!(fin["info"], "Failed by request timeout", "{fin:?}");
    // Timer A: the INVITE was sent more than once before giving up.
    let mut buf = vec![0u8; 8192];
    let mut invites = 0;
    while let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(100), silent.recv_from(&mut buf)).await {
        invites += usize::from(buf[..n].starts_with(b"INVITE "));
    }
    assert!(invites >= 3, "INVITE retransmitted, got {invites}");
    let ev = backend.wait_for("CallStatusEvent", |b| b["callId"] == "c1" && b["status"] == "FAILED").await;
    assert_eq!(ev.body["info"], "Failed by request timeout");
    assert!(ev.body.get("sipMessageRaw").is_none(), "no SIP response to show");
    assert_eq!(server.shared.calls.calls(), 0);
    server.shutdown().await;
}

// ----- issue 14: DTMF bounds, trusted sources, allowed destinations, closed sessions ----------

/// Item 6: a huge `sendDtmf` string is refused before the backend is asked and sends nothing;
/// INFO digits go one transaction at a time (sipp pauses before each 200: an INFO sent before
/// the previous one was answered shows in its log, and fails its scenario).
#[tokio::test]
async fn dtmf_by_info_goes_one_digit_at_a_time_and_a_huge_string_is_refused() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp = Sipp::scenario("uas_info_dtmf_seq.xml")
        .pause(Duration::from_millis(300))
        .timeout(Duration::from_secs(20))
        .spawn()
        .unwrap();
    let (mut c, _) = Client::establish(&server, connection(call_account(&sipp))).await;
    c.send("call", call_msg("d1", "3001")).await;
    expect_status(&mut c, "talk", "d1", "ESTABLISHED").await;
    let huge = "1".repeat(1_000_000);
    c.send("sendDtmf", json!({"callId": "d1", "type": "INFO", "dtmf": huge})).await;
    let fail = c.expect("fail").await;
    assert_eq!(fail["apiMethod"], "CallStatusEvent");
    assert_eq!(fail["info"], "Failed by error: too many DTMF digits (1000000; at most 32)");
    c.send("sendDtmf", json!({"callId": "d1", "type": "INFO", "dtmf": "123"})).await;
    // Three INFOs, each answered after sipp's pause.
    let is_info =
        |m: &callgate_tests::peers::SipMessage| m.text.lines().any(|l| l.starts_with("CSeq:") && l.ends_with(" INFO"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sipp.messages().iter().filter(|m| m.sent && is_info(m)).count() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "three INFOs answered: {:?}", sipp.messages());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.send("hangup", json!({"callId": "d1"})).await;
    expect_status(&mut c, "finish", "d1", "FINISH").await;
    let outcome = sipp.wait().await;
    outcome.assert_success();
    let infos: Vec<(bool, String)> =
        outcome.messages().into_iter().filter(|m| is_info(m)).map(|m| (m.sent, m.first_line().to_string())).collect();
    let order: Vec<&str> = infos.iter().map(|(sent, _)| if *sent { "200" } else { "INFO" }).collect();
    assert_eq!(order, ["INFO", "200", "INFO", "200", "INFO", "200"], "one INFO in flight at a time: {infos:?}");
    let dtmf_hooks: Vec<Value> = backend.requests_for("sendDtmf").into_iter().map(|r| r.body["dtmf"].clone()).collect();
    assert_eq!(dtmf_hooks, [json!("123")], "the huge string never reached the backend");
    server.shutdown().await;
}

/// Item 7: an INVITE or MESSAGE for a registered user from an address that is not its
/// registrar gets 403: no `OnCallEvent`, no ring. The registrar's address still rings
/// (the `an_incoming_call_*` tests).
#[tokio::test]
async fn an_incoming_invite_or_message_from_another_source_than_the_registrar_gets_403() {
    let backend = Backend::start().await;
    let (server, mut c, registrar, caller) = incoming_setup(&backend, "uac_call_expect_486.xml", Duration::ZERO).await;
    // The registrar's address (127.0.0.1) rings as before.
    let ring = c.expect("ring").await;
    let call_id = ring["callId"].as_str().unwrap().to_string();
    c.send("hangup", json!({"callId": call_id})).await;
    caller.wait().await.assert_success();
    let sip_addr = server.shared.calls.local_addr().unwrap();
    let spoofer = std::net::Ipv4Addr::new(127, 0, 0, 2);
    for scenario in ["uac_call_expect_403.xml", "uac_message_expect_403.xml"] {
        let sipp = Sipp::scenario(scenario)
            .local_ip(spoofer)
            .remote(sip_addr)
            .service("3000")
            .timeout(Duration::from_secs(10))
            .spawn()
            .unwrap();
        sipp.wait().await.assert_success();
    }
    assert_eq!(backend.requests_for("OnCallEvent").len(), 1, "only the registrar's INVITE");
    assert!(backend.requests_for("OnMessageEvent").is_empty());
    assert_eq!(server.shared.calls.calls(), 0);
    assert!(!c.seen.iter().any(|(m, d)| m == "ring" && d[0]["callId"] != call_id.as_str()), "{:?}", c.seen);
    let _ = registrar.wait().await;
    server.shutdown().await;
}

/// Item 7: an incoming call nobody answers is rejected with 480 after `[sip] ring_timeout_ms`.
#[tokio::test]
async fn an_unanswered_incoming_call_gets_480_after_the_ring_timeout() {
    let backend = Backend::start().await;
    let toml = sip_server_toml(&backend).replacen("[sip]\n", "[sip]\nring_timeout_ms = 1000\n", 1);
    let server = start_server(&toml).await;
    let registrar = registrar("secret");
    let (mut c, _) = Client::establish(&server, connection(sip_fields(&registrar, "secret"))).await;
    c.expect("registered").await;
    let caller = Sipp::scenario("uac_call_expect_480.xml")
        .remote(server.shared.calls.local_addr().unwrap())
        .service("3000")
        .timeout(Duration::from_secs(10))
        .spawn()
        .unwrap();
    let ring = c.expect("ring").await;
    let call_id = ring["callId"].as_str().unwrap().to_string();
    let fin = expect_status(&mut c, "finish", &call_id, "FINISH").await;
    assert_eq!(fin["info"], "Not answered within 1 s");
    caller.wait().await.assert_success();
    backend.wait_for("CallStatusEvent", |b| b["callId"] == call_id && b["status"] == "FINISH").await;
    assert_eq!(backend_statuses(&backend, &call_id), ["RING", "FINISH"]);
    assert_eq!(server.shared.calls.calls(), 0);
    let _ = registrar.wait().await;
    server.shutdown().await;
}

/// Item 11: the session closes while the backend thinks about its `call`: no INVITE leaves,
/// no call is left behind, and the backend hears nothing after DISCONNECTED for it.
#[tokio::test]
async fn a_call_whose_session_closes_during_the_call_hook_sends_no_invite() {
    let backend = Backend::start().await;
    backend.answer(|m, req| match m {
        "call" => Reply::mirror(req).after(Duration::from_millis(800)),
        _ => Reply::mirror(req),
    });
    let server = start_server(&sip_server_toml(&backend)).await;
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let account = json!({"sipLogin": "3000", "sipPassword": "secret", "sipDomain": "127.0.0.1",
                         "sipPort": peer.local_addr().unwrap().port(), "sipRegisterRequired": false});
    let (mut c, _) = Client::establish(&server, connection(account)).await;
    c.send("call", call_msg("gone1", "3001")).await;
    backend.wait_for("call", |b| b["callId"] == "gone1").await;
    drop(c);
    backend.wait_for("ConnectionStatusEvent", |b| b["status"] == "DISCONNECTED").await;
    // The hook answers 800 ms after it was asked; anything sent would arrive soon after.
    let mut buf = vec![0u8; 8192];
    let got = tokio::time::timeout(Duration::from_millis(2500), peer.recv_from(&mut buf)).await;
    assert!(
        got.is_err(),
        "no SIP for a closed session: {:?}",
        got.map(|r| r.map(|(n, _)| String::from_utf8_lossy(&buf[..n]).into_owned()))
    );
    assert_eq!(server.shared.calls.calls(), 0);
    assert!(hook_statuses(&backend, "CallStatusEvent", "callId", "gone1").is_empty());
    server.shutdown().await;
}

/// Item 11: the session closes while `OnCallEvent` is with the backend: the caller gets 480
/// instead of ringing a session that is gone.
#[tokio::test]
async fn an_incoming_call_for_a_session_that_closed_during_on_call_event_gets_480() {
    let backend = Backend::start().await;
    backend.answer(|m, req| match m {
        "OnCallEvent" => Reply::mirror(req).after(Duration::from_millis(800)),
        _ => Reply::mirror(req),
    });
    let (server, c, registrar, caller) = incoming_setup(&backend, "uac_call_expect_480.xml", Duration::ZERO).await;
    backend.wait_for("OnCallEvent", |b| b["incoming"] == true).await;
    drop(c);
    caller.wait().await.assert_success();
    backend.wait_for("ConnectionStatusEvent", |b| b["status"] == "DISCONNECTED").await;
    assert_eq!(server.shared.calls.calls(), 0);
    assert!(backend.requests_for("CallStatusEvent").is_empty(), "nothing rang");
    let _ = registrar.wait().await;
    server.shutdown().await;
}

/// Item 8: SIP goes only where `[sip] allowed_destinations` says, or where the backend's
/// `connect` answer (`sipAllowedDestinations`) widens it; a client cannot widen it itself.
#[tokio::test]
async fn sip_goes_only_to_allowed_destinations_unless_the_backend_widens_them() {
    let backend = Backend::start().await;
    backend.answer(|m, req| match m {
        "connect" if req["custom"]["widen"] == true => {
            let mut b = req.as_object().unwrap().clone();
            b.insert("sipAllowedDestinations".into(), json!(["127.0.0.1"]));
            Reply::json(200, Value::Object(b))
        }
        _ => Reply::mirror(req),
    });
    let toml = sip_server_toml(&backend).replacen("[sip]\n", "[sip]\nallowed_destinations = [\"::1\"]\n", 1);
    let server = start_server(&toml).await;
    let pbx = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = pbx.local_addr().unwrap().port();
    let refused = format!("SIP destination not allowed: 127.0.0.1:{port}");
    // The client's own sipAllowedDestinations is dropped before the (mirroring) backend sees it.
    let mut conn = connection(json!({"sipLogin": "3000", "sipPassword": "secret", "sipDomain": "127.0.0.1",
                                     "sipPort": port, "sipAllowedDestinations": ["127.0.0.1"]}));
    conn["custom"] = json!({});
    let (mut c, _) = Client::establish(&server, conn).await;
    let fail = c.expect("fail").await;
    assert_eq!(
        (fail["apiMethod"].as_str(), fail["info"].as_str()),
        (Some("RegistrationStatusEvent"), Some(refused.as_str()))
    );
    let ev = backend.wait_for("RegistrationStatusEvent", |b| b["status"] == "FAILED").await;
    assert_eq!(ev.body["info"], refused.as_str());
    c.send("call", call_msg("x1", "3001")).await;
    let fin = expect_status(&mut c, "finish", "x1", "FAILED").await;
    assert_eq!(fin["info"], refused.as_str());
    c.send("sendMessage", json!({"id": "m1", "to": "3001", "body": "hi"})).await;
    let m = c.expect("notifyMessage").await;
    assert_eq!((m["status"].as_str(), m["info"].as_str()), (Some("FAILED"), Some(refused.as_str())), "{m:?}");
    let mut buf = vec![0u8; 8192];
    let got = tokio::time::timeout(Duration::from_millis(300), pbx.recv_from(&mut buf)).await;
    assert!(got.is_err(), "nothing reached the refused destination");
    // /call/startup: the same list, refused before anything starts.
    let body = json!({"callId": "r1", "callee": "3001", "sipLogin": "3000", "sipDomain": "127.0.0.1",
                      "sipOutboundProxy": format!("127.0.0.1:{port}")});
    let (status, text) = callgate_tests::http_post(&server, "/rest-api/call/startup", &body.to_string(), None).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains(&refused), "{text}");
    assert_eq!(server.shared.calls.calls(), 0);

    // The backend widens it for this session: REGISTER reaches the registrar.
    let registrar = registrar("secret");
    let mut conn = connection(sip_fields(&registrar, "secret"));
    conn["custom"] = json!({"widen": true});
    let (mut d, user) = Client::establish(&server, conn).await;
    assert_eq!(user["sipAllowedDestinations"], json!(["127.0.0.1"]));
    assert_eq!(d.expect("registered").await["status"], "REGISTERED");
    registrar.wait().await.assert_success();
    server.shutdown().await;
}
