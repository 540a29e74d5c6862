//! The hook bodies' JSON Schemas (`callgate_hooks::schema`, printed by `callgate hooks schema`)
//! against the bodies a real server sends to a recording backend: the server builds its bodies
//! as JSON objects, so this is what keeps the hand-written schemas and the server from drifting
//! apart. Also: the example bodies `callgate hooks test` sends match the schemas, and the
//! schemas are strict where callgate is (context fields, statuses).

use std::collections::BTreeSet;
use std::time::Duration;

use callgate_hooks::schema::{example, request_schema, ExampleContext};
use callgate_hooks::HookMethod;
use callgate_tests::peers::Sipp;
use callgate_tests::sip_fixtures::{call_msg, connection, registrar, sip_server_toml, sipp_uas};
use callgate_tests::{start_server, Backend, Client, Reply};
use serde_json::{json, Value};

/// Every body the backend received, checked against its method's schema; the methods seen.
fn check_recorded(backend: &Backend) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for r in backend.requests() {
        let m = HookMethod::from_name(&r.method).unwrap_or_else(|| panic!("unknown hook {}", r.method));
        let schema = request_schema(m);
        let v = jsonschema::validator_for(&schema).expect("the schema compiles");
        let errors: Vec<String> = v.iter_errors(&r.body).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{m} body {} does not match its schema: {errors:?}", r.body);
        seen.insert(r.method.clone());
    }
    seen
}

fn assert_seen(seen: &BTreeSet<String>, wanted: &[&str]) {
    for w in wanted {
        assert!(seen.contains(*w), "no {w} body was captured; got {seen:?}");
    }
}

#[test]
fn the_examples_match_and_the_schemas_are_strict() {
    let ctx = ExampleContext::new("defaultApp");
    for m in HookMethod::ALL {
        let schema = request_schema(*m);
        jsonschema::meta::validate(&schema).unwrap_or_else(|e| panic!("{m}: not a valid JSON Schema: {e}"));
        let ex = Value::Object(example(*m, &ctx));
        assert!(jsonschema::is_valid(&schema, &ex), "{m}: its example {ex} does not match");
        // No body without its context.
        let mut bare = ex.clone();
        bare.as_object_mut().unwrap().remove("sessionId");
        assert!(!jsonschema::is_valid(&schema, &bare), "{m}: a body without sessionId passes");
    }
    let schema = request_schema(HookMethod::ConnectionStatusEvent);
    let mut bad = Value::Object(example(HookMethod::ConnectionStatusEvent, &ctx));
    bad["status"] = "BOGUS".into();
    assert!(!jsonschema::is_valid(&schema, &bad), "an unknown status passes");
}

#[tokio::test]
async fn a_sessions_hook_bodies_match_their_schemas() {
    let backend = Backend::start().await;
    backend.answer(|method, body| match method {
        "connect" => {
            let mut a = body.clone();
            a["restClientConfig"] = json!({"DataStatusEvent": {"restOnError": "FAIL"}});
            Reply::json(200, a)
        }
        // An event hook that fails under FAIL: the backend gets an ErrorEvent too.
        "DataStatusEvent" => Reply::raw(500, b""),
        _ => Reply::mirror(body),
    });
    // One attempt per event: a 500 then goes to restOnError at once instead of being retried.
    let server = start_server(&format!("[hooks]\nevent_attempts = 1\n{}", sip_server_toml(&backend))).await;
    let (mut c, _) = Client::establish(&server, connection(json!({"custom": {"token": "t"}}))).await;
    backend.wait_for("ConnectionStatusEvent", |b| b["status"] == "ESTABLISHED").await;

    c.send("sendData", json!({"operationId": "op1", "payload": {"a": 1}})).await;
    backend.wait_for("ErrorEvent", |_| true).await;
    c.send("submitBugReport", json!({"text": "no audio"})).await;
    backend.wait_for("BugReportStatusEvent", |_| true).await;
    c.send("sessionDebug", json!({"command": "start"})).await;
    backend.wait_for("SessionDebugStatusEvent", |_| true).await;
    c.send("pushLogs", json!({"logs": "INFO a line"})).await;
    backend.wait_for("pushLogs", |_| true).await;
    let stream = |id: &str, name: &str, published: bool| {
        json!({"mediaSessionId": id, "name": name, "published": published, "hasVideo": false, "hasAudio": true,
               "status": "PENDING", "record": false, "mediaProvider": "WebRTC", "sdp": "v=0\r\n", "custom": {}})
    };
    c.send("publishStream", stream("p1", "s1", true)).await;
    backend.wait_for("StreamStatusEvent", |b| b["mediaSessionId"] == "p1" && b["status"] == "FAILED").await;
    c.send("playStream", stream("q1", "nobody", false)).await;
    backend.wait_for("StreamStatusEvent", |b| b["mediaSessionId"] == "q1" && b["status"] == "FAILED").await;
    c.send("unPublishStream", json!({"mediaSessionId": "zz", "name": "s1", "published": true})).await;
    backend.wait_for("unPublishStream", |_| true).await;
    c.send("stopStream", json!({"mediaSessionId": "zy", "name": "s1", "published": false})).await;
    backend.wait_for("stopStream", |_| true).await;
    c.send("call", call_msg("c1", "3001")).await;
    backend.wait_for("CallStatusEvent", |b| b["callId"] == "c1" && b["status"] == "FAILED").await;
    c.send("sendMessage", json!({"id": "m1", "to": "3001", "body": "hi", "contentType": "text/plain"})).await;
    backend.wait_for("MessageStatusEvent", |b| b["status"] == "FAILED").await;
    c.send("subscribe", json!({"id": "sub1", "event": "presence", "to": "3001"})).await;
    backend.wait_for("SubscriptionStatusEvent", |b| b["status"] == "FAILED").await;
    c.send("sendXcapRequest", json!({"id": "x1", "url": "http://127.0.0.1:1/xcap-root/a"})).await;
    backend.wait_for("XcapStatusEvent", |b| b["status"] == "FAILED").await;
    drop(c);
    backend.wait_for("ConnectionStatusEvent", |b| b["status"] == "DISCONNECTED").await;

    let seen = check_recorded(&backend);
    assert_seen(
        &seen,
        &[
            "connect",
            "ConnectionStatusEvent",
            "OnDataEvent",
            "DataStatusEvent",
            "ErrorEvent",
            "submitBugReport",
            "BugReportStatusEvent",
            "sessionDebug",
            "SessionDebugStatusEvent",
            "pushLogs",
            "publishStream",
            "playStream",
            "StreamStatusEvent",
            "unPublishStream",
            "stopStream",
            "call",
            "CallStatusEvent",
            "sendMessage",
            "MessageStatusEvent",
            "subscribe",
            "SubscriptionStatusEvent",
            "sendXcapRequest",
            "XcapStatusEvent",
        ],
    );
    server.shutdown().await;
}

#[tokio::test]
async fn sip_hook_bodies_match_their_schemas() {
    let backend = Backend::start().await;
    backend.answer(|method, body| match method {
        "connect" => {
            let mut a = body.clone();
            a["restClientConfig"] = json!({"OnCallEvent": {"restOnError": "FAIL"}});
            Reply::json(200, a)
        }
        "OnCallEvent" => Reply::json(403, json!({"status": 403, "reason": "no calls"})),
        _ => Reply::mirror(body),
    });
    let server = start_server(&sip_server_toml(&backend)).await;

    // A registration, then a call (refused by OnCallEvent) and a MESSAGE for it.
    let reg = registrar("secret");
    let fields = json!({"sipLogin": "3000", "sipPassword": "secret", "sipDomain": "127.0.0.1",
                        "sipPort": reg.local_addr().port().to_string()});
    let (mut r, _) = Client::establish(&server, connection(fields)).await;
    r.expect("registered").await;
    backend.wait_for("RegistrationStatusEvent", |b| b["status"] == "REGISTERED").await;
    let sip_addr = server.shared.calls.local_addr().expect("the SIP endpoint runs");
    let uac = |scenario: &str| {
        Sipp::scenario(scenario).remote(sip_addr).service("3000").timeout(Duration::from_secs(15)).spawn().unwrap()
    };
    let caller = uac("uac_call_expect_403.xml");
    backend.wait_for("OnCallEvent", |b| b["incoming"] == true).await;
    caller.wait().await.assert_success();
    let sender = uac("uac_message.xml");
    backend.wait_for("OnMessageEvent", |b| b["status"] == "RECEIVED").await;
    sender.wait().await.assert_success();

    // A call answered, DTMF, hung up by the client.
    let sipp = sipp_uas("uas_answer_local_bye.xml");
    let account = json!({"sipLogin": "3000", "sipPassword": "secret", "sipDomain": "127.0.0.1",
                         "sipPort": sipp.local_addr().port(), "sipRegisterRequired": false});
    let (mut c, _) = Client::establish(&server, connection(account)).await;
    c.send("call", call_msg("c1", "3001")).await;
    backend.wait_for("CallStatusEvent", |b| b["callId"] == "c1" && b["status"] == "ESTABLISHED").await;
    c.send("sendDtmf", json!({"callId": "c1", "dtmf": "1", "type": "RFC2833"})).await;
    backend.wait_for("sendDtmf", |_| true).await;
    c.send("hangup", json!({"callId": "c1"})).await;
    backend.wait_for("CallStatusEvent", |b| b["callId"] == "c1" && b["status"] == "FINISH").await;
    sipp.wait().await.assert_success();

    let seen = check_recorded(&backend);
    assert_seen(
        &seen,
        &["RegistrationStatusEvent", "OnCallEvent", "OnMessageEvent", "call", "CallStatusEvent", "sendDtmf", "hangup"],
    );
    server.shutdown().await;
}
