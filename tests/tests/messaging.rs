//! Messaging, subscriptions, XCAP and incoming transfers through callgate (issue 5, item 4):
//! a WebSocket client speaking the client protocol, a real recording backend, real sipp
//! processes (scenarios of `tests/sipp`) and a real local HTTP server standing in for XCAP.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use callgate_tests::peers::{Sipp, SippProcess};
use callgate_tests::sip_fixtures::{call_msg, connection, hook_statuses, registrar, sip_server_toml, sipp_uas};
use callgate_tests::{start_server, Backend, Client, Reply};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};

fn server_toml(backend: &Backend, extra: &str) -> String {
    format!("{}{extra}", sip_server_toml(backend))
}

/// A SIP account whose next hop is `peer`, without registering.
fn account(peer: &SippProcess) -> Value {
    json!({"sipLogin": "3000", "sipPassword": "secret", "sipDomain": "127.0.0.1",
           "sipPort": peer.local_addr().port(), "sipRegisterRequired": false})
}

/// A backend whose `connect` answer sets `restClientConfig`; `refuse` answers 403 to that hook.
fn backend_config(backend: &Backend, rcc: Value, refuse: &'static str) {
    backend.answer(move |m, req| match m {
        "connect" => {
            let mut b = req.as_object().unwrap().clone();
            b.insert("restClientConfig".into(), rcc.clone());
            Reply::json(200, Value::Object(b))
        }
        m if m == refuse => Reply::json(403, json!({"status": 403, "reason": "Not for you"})),
        _ => Reply::mirror(req),
    });
}

/// The next `notifyMessage` whose message has `id`: (message, notificationResult).
async fn notify_message(c: &mut Client, id: &str) -> (Map<String, Value>, Value) {
    loop {
        match c.next().await {
            Some((m, data)) if m == "notifyMessage" && data[0]["id"] == id => {
                return (data[0].as_object().unwrap().clone(), data.get(1).cloned().unwrap_or(Value::Null))
            }
            Some(_) => continue,
            None => panic!("closed before notifyMessage {id}; seen {:?}", c.seen),
        }
    }
}

fn message(id: &str, to: &str, body: &str, imdn: bool) -> Value {
    json!({"id": id, "from": "3000", "to": to, "visibleName": "Three thousand", "body": body,
           "contentType": "text/plain", "isImdnRequired": imdn})
}

fn backend_message_statuses(backend: &Backend, id: &str) -> Vec<String> {
    hook_statuses(backend, "MessageStatusEvent", "id", id)
}

// ----- sendMessage ----------------------------------------------------------------------------

#[tokio::test]
async fn send_message_accepted_by_sipp_reports_sent_then_accepted() {
    let backend = Backend::start().await;
    let server = start_server(&server_toml(&backend, "")).await;
    let peer = sipp_uas("uas_message.xml");
    let (mut c, _) = Client::establish(&server, connection(account(&peer))).await;
    c.send("sendMessage", message("m1", "3001", "Hello sipp", false)).await;
    let (sent, result) = notify_message(&mut c, "m1").await;
    assert_eq!(sent["status"], "SENT");
    assert_eq!(result["id"], "m1", "the old API's notificationResult argument");
    let (acc, _) = notify_message(&mut c, "m1").await;
    assert_eq!((acc["status"].as_str(), acc["sipStatus"].as_u64()), (Some("ACCEPTED"), Some(200)));
    assert_eq!(acc["body"], "Hello sipp");
    let outcome = peer.wait().await;
    outcome.assert_success();
    let msg = outcome.received().into_iter().find(|m| m.starts_with("MESSAGE ")).unwrap();
    assert!(msg.starts_with("MESSAGE sip:3001@127.0.0.1 SIP/2.0"), "{msg}");
    assert!(msg.contains("Content-Type: text/plain") && msg.ends_with("Hello sipp"), "{msg}");
    backend.wait_for("MessageStatusEvent", |b| b["id"] == "m1" && b["status"] == "ACCEPTED").await;
    assert_eq!(backend_message_statuses(&backend, "m1"), ["SENT", "ACCEPTED"]);
    let hook = &backend.requests_for("sendMessage")[0].body;
    assert_eq!((hook["to"].as_str(), hook["body"].as_str()), (Some("3001"), Some("Hello sipp")));
    // notificationResult (the old API's answer) is accepted silently.
    c.send("notificationResult", json!({"id": "m1", "status": "OK"})).await;
    c.send("sendData", json!({"operationId": "op", "payload": {}})).await;
    assert_eq!(c.expect("DataStatusEvent").await["status"], "ACCEPTED");
    assert!(!c.seen.iter().any(|(m, _)| m == "fail"), "{:?}", c.seen);
    server.shutdown().await;
}

#[tokio::test]
async fn send_message_refused_by_sipp_404_reaches_client_and_backend_with_the_raw_response() {
    let backend = Backend::start().await;
    let server = start_server(&server_toml(&backend, "")).await;
    let peer = sipp_uas("uas_message_reject_404.xml");
    let (mut c, _) = Client::establish(&server, connection(account(&peer))).await;
    c.send("sendMessage", message("m404", "3001", "anyone?", false)).await;
    assert_eq!(notify_message(&mut c, "m404").await.0["status"], "SENT");
    let (failed, _) = notify_message(&mut c, "m404").await;
    assert_eq!((failed["status"].as_str(), failed["info"].as_str()), (Some("FAILED"), Some("SIP 404 NOT FOUND")));
    let outcome = peer.wait().await;
    outcome.assert_success();
    let sent = outcome.sent().into_iter().find(|m| m.starts_with("SIP/2.0 404")).unwrap();
    let ev = backend.wait_for("MessageStatusEvent", |b| b["id"] == "m404" && b["status"] == "FAILED").await;
    assert_eq!(ev.body["info"], "SIP 404 NOT FOUND");
    assert_eq!(ev.body["sipStatus"], 404);
    assert_eq!(ev.body["sipMessageRaw"].as_str(), Some(sent.as_str()), "the 404 exactly as sipp sent it");
    server.shutdown().await;
}

#[tokio::test]
async fn send_message_refused_by_the_backend_sends_nothing() {
    let backend = Backend::start().await;
    backend_config(&backend, json!({"sendMessage": {"restOnError": "FAIL"}}), "sendMessage");
    let server = start_server(&server_toml(&backend, "")).await;
    // sipp would accept a MESSAGE; it must see none, so it times out with nothing received.
    let peer = Sipp::scenario("uas_message.xml").timeout(Duration::from_secs(3)).spawn().unwrap();
    let (mut c, _) = Client::establish(&server, connection(account(&peer))).await;
    c.send("sendMessage", message("mx", "3001", "secret plans", false)).await;
    let (failed, _) = notify_message(&mut c, "mx").await;
    assert_eq!((failed["status"].as_str(), failed["info"].as_str()), (Some("FAILED"), Some("Not for you")));
    backend.wait_for("MessageStatusEvent", |b| b["id"] == "mx" && b["status"] == "FAILED").await;
    assert_eq!(backend_message_statuses(&backend, "mx"), ["FAILED"], "no SENT");
    let outcome = peer.wait().await;
    outcome.assert_failure();
    assert!(outcome.received().is_empty(), "sipp received nothing: {}", outcome.report());
    server.shutdown().await;
}

#[tokio::test]
async fn send_message_with_imdn_goes_out_as_cpim_and_a_session_without_sip_fails_locally() {
    let backend = Backend::start().await;
    let server = start_server(&server_toml(&backend, "")).await;
    let peer = sipp_uas("uas_message.xml");
    let (mut c, _) = Client::establish(&server, connection(account(&peer))).await;
    c.send("sendMessage", message("mi", "sip:3001@127.0.0.1", "with receipt", true)).await;
    notify_message(&mut c, "mi").await;
    assert_eq!(notify_message(&mut c, "mi").await.0["status"], "ACCEPTED");
    let outcome = peer.wait().await;
    outcome.assert_success();
    let msg = outcome.received().into_iter().find(|m| m.starts_with("MESSAGE ")).unwrap();
    assert!(msg.contains("Content-Type: message/cpim"), "{msg}");
    assert!(msg.contains("imdn.Disposition-Notification: positive-delivery, negative-delivery"), "{msg}");
    assert!(msg.ends_with("with receipt"), "{msg}");

    let (mut d, _) = Client::establish(&server, connection(json!({}))).await;
    d.send("sendMessage", message("nosip", "3001", "x", false)).await;
    let (failed, _) = notify_message(&mut d, "nosip").await;
    assert_eq!(failed["status"], "FAILED");
    assert!(failed["info"].as_str().unwrap().contains("no SIP account"), "{failed:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn an_imdn_delivery_notification_from_sipp_reaches_the_sender_as_imdn_delivered() {
    let backend = Backend::start().await;
    let server = start_server(&server_toml(&backend, "")).await;
    let peer = sipp_uas("uas_message_imdn.xml");
    let (mut c, _) = Client::establish(&server, connection(account(&peer))).await;
    c.send("sendMessage", message("md", "3001", "tell me when you have it", true)).await;
    let mut statuses = Vec::new();
    while statuses.last().map(String::as_str) != Some("IMDN_DELIVERED") {
        let (m, result) = notify_message(&mut c, "md").await;
        assert_eq!(result["id"], "md");
        statuses.push(m["status"].as_str().unwrap().to_string());
        assert!(statuses.len() <= 3, "{statuses:?}");
    }
    assert_eq!(statuses, ["SENT", "ACCEPTED", "IMDN_DELIVERED"]);
    let outcome = peer.wait().await;
    outcome.assert_success();
    assert!(outcome.received().iter().any(|m| m.starts_with("SIP/2.0 200")), "{}", outcome.report());
    backend.wait_for("MessageStatusEvent", |b| b["id"] == "md" && b["status"] == "IMDN_DELIVERED").await;
    assert!(backend.requests_for("OnMessageEvent").is_empty(), "a notification is not an incoming message");
    server.shutdown().await;
}

// ----- incoming MESSAGE ------------------------------------------------------------------------

async fn registered_client(server: &callgate_server::RunningServer) -> (Client, SippProcess) {
    let reg = registrar("secret");
    let sip = json!({"sipLogin": "3000", "sipPassword": "secret", "sipDomain": "127.0.0.1",
                     "sipPort": reg.local_addr().port().to_string()});
    let (mut c, _) = Client::establish(server, connection(sip)).await;
    assert_eq!(c.expect("registered").await["status"], "REGISTERED");
    (c, reg)
}

#[tokio::test]
async fn incoming_message_goes_through_on_message_event_to_the_client() {
    let backend = Backend::start().await;
    backend.answer(|m, req| match m {
        "connect" => {
            let mut b = req.as_object().unwrap().clone();
            b.insert(
                "restClientConfig".into(),
                json!({"OnMessageEvent": {"restPolicy": "OVERWRITE", "restOverwrite": "body"}}),
            );
            Reply::json(200, Value::Object(b))
        }
        "OnMessageEvent" => {
            let mut b = req.as_object().unwrap().clone();
            let body = b["body"].as_str().unwrap_or("").trim().to_string();
            b.insert("body".into(), format!("[checked] {body}").into());
            Reply::json(200, Value::Object(b))
        }
        _ => Reply::mirror(req),
    });
    let server = start_server(&server_toml(&backend, "")).await;
    let (mut c, reg) = registered_client(&server).await;
    let sip_addr = server.shared.calls.local_addr().expect("the SIP endpoint runs");
    let sender = Sipp::scenario("uac_message.xml")
        .remote(sip_addr)
        .service("3000")
        .timeout(Duration::from_secs(15))
        .spawn()
        .unwrap();
    let (msg, result) = loop {
        let (m, data) = c.next().await.expect("notifyMessage");
        if m == "notifyMessage" {
            break (data[0].clone(), data[1].clone());
        }
    };
    assert_eq!(msg["status"], "RECEIVED");
    assert_eq!(msg["body"], "[checked] Hello from sipp", "the backend rewrote the body under OVERWRITE");
    assert!(msg["from"].as_str().unwrap().starts_with("sip:sipp@127.0.0.1"), "{msg}");
    assert!(msg["contentType"].as_str().unwrap().starts_with("text/plain"), "{msg}");
    assert!(msg.get("sipMessageRaw").is_none(), "the raw request is for the backend only");
    assert_eq!(result["id"], msg["id"]);
    sender.wait().await.assert_success();
    let hook = backend.wait_for("OnMessageEvent", |b| b["status"] == "RECEIVED").await;
    assert!(hook.body["body"].as_str().unwrap().starts_with("Hello from sipp"), "{:?}", hook.body);
    assert!(hook.body["sipMessageRaw"].as_str().unwrap().starts_with("MESSAGE sip:3000@"));
    let _ = reg.wait().await;
    server.shutdown().await;
}

#[tokio::test]
async fn incoming_message_refused_by_the_backend_gets_403_and_the_client_nothing_but_a_fail() {
    let backend = Backend::start().await;
    backend_config(&backend, json!({"OnMessageEvent": {"restOnError": "FAIL"}}), "OnMessageEvent");
    let server = start_server(&server_toml(&backend, "")).await;
    let (mut c, reg) = registered_client(&server).await;
    let sip_addr = server.shared.calls.local_addr().unwrap();
    let sender = Sipp::scenario("uac_message_expect_403.xml")
        .remote(sip_addr)
        .service("3000")
        .timeout(Duration::from_secs(15))
        .spawn()
        .unwrap();
    sender.wait().await.assert_success();
    let fail = c.expect("fail").await;
    assert_eq!(fail["apiMethod"], "MessageStatusEvent");
    assert!(fail["info"].as_str().unwrap().contains("Not for you"), "{fail:?}");
    assert!(!c.seen.iter().any(|(m, _)| m == "notifyMessage"), "{:?}", c.seen);
    backend.wait_for("OnMessageEvent", |_| true).await;
    // A MESSAGE for nobody registered here: 480, and the 403 scenario fails on it.
    let stray = Sipp::scenario("uac_message_expect_403.xml")
        .remote(sip_addr)
        .service("9999")
        .timeout(Duration::from_secs(10))
        .spawn()
        .unwrap();
    let outcome = stray.wait().await;
    outcome.assert_failure();
    assert!(outcome.received().iter().any(|m| m.starts_with("SIP/2.0 480")), "{}", outcome.report());
    let _ = reg.wait().await;
    server.shutdown().await;
}

// ----- subscribe ---------------------------------------------------------------------------

fn sub_statuses(c: &Client, id: &str) -> Vec<String> {
    c.seen
        .iter()
        .filter(|(m, d)| m == "notifySubscription" && d[0]["id"] == id)
        .map(|(_, d)| d[0]["status"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn subscribe_accepted_then_notified_then_terminated() {
    let backend = Backend::start().await;
    let server = start_server(&server_toml(&backend, "")).await;
    let notifier = sipp_uas("uas_subscribe_notify.xml");
    let (mut c, _) = Client::establish(&server, connection(account(&notifier))).await;
    c.send(
        "subscribe",
        json!({"id": "s1", "event": "presence", "to": "3001", "expires": 600,
                               "accept": "application/pidf+xml"}),
    )
    .await;
    loop {
        let s = c.expect("notifySubscription").await;
        assert_eq!(s["id"], "s1");
        if s["status"] == "TERMINATED" {
            assert_eq!(s["info"], "noresource");
            break;
        }
    }
    let seen = sub_statuses(&c, "s1");
    assert!(seen.contains(&"ACCEPTED".to_string()), "{seen:?}");
    assert_eq!(seen.iter().filter(|s| *s == "NOTIFY").count(), 2, "{seen:?}");
    let first_notify = c
        .seen
        .iter()
        .find(|(m, d)| m == "notifySubscription" && d[0]["status"] == "NOTIFY")
        .map(|(_, d)| d[0].clone())
        .unwrap();
    assert_eq!(first_notify["body"].as_str().map(str::trim_end), Some("<open/>"), "the NOTIFY body as sipp sent it");
    assert_eq!(first_notify["contentType"], "application/pidf+xml");
    assert!(first_notify["subscriptionState"].as_str().unwrap().starts_with("active"));
    let outcome = notifier.wait().await;
    outcome.assert_success();
    let sub = outcome.received().into_iter().find(|m| m.starts_with("SUBSCRIBE ")).unwrap();
    assert!(sub.starts_with("SUBSCRIBE sip:3001@127.0.0.1 SIP/2.0"), "{sub}");
    assert!(sub.contains("Accept: application/pidf+xml") && sub.contains("Expires: 600"), "{sub}");
    backend.wait_for("SubscriptionStatusEvent", |b| b["id"] == "s1" && b["status"] == "TERMINATED").await;
    let hooks: Vec<String> = backend
        .requests_for("SubscriptionStatusEvent")
        .into_iter()
        .map(|r| r.body["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(hooks.iter().filter(|s| *s == "NOTIFY").count(), 2, "{hooks:?}");
    let notify_hook = backend
        .wait_for("SubscriptionStatusEvent", |b| b["body"].as_str().is_some_and(|x| x.starts_with("<open/>")))
        .await;
    assert!(notify_hook.body["sipMessageRaw"].as_str().unwrap().starts_with("NOTIFY "));
    backend.wait_for("subscribe", |b| b["event"] == "presence").await;
    server.shutdown().await;
}

#[tokio::test]
async fn subscribe_refused_by_sipp_or_the_backend() {
    let backend = Backend::start().await;
    backend.answer(|m, req| match m {
        "connect" => {
            let mut b = req.as_object().unwrap().clone();
            b.insert("restClientConfig".into(), json!({"subscribe": {"restOnError": "FAIL"}}));
            Reply::json(200, Value::Object(b))
        }
        "subscribe" if req["event"] == "forbidden-package" => Reply::json(403, json!({})),
        _ => Reply::mirror(req),
    });
    let server = start_server(&server_toml(&backend, "")).await;
    let peer = sipp_uas("uas_subscribe_reject_404.xml");
    let (mut c, _) = Client::establish(&server, connection(account(&peer))).await;
    c.send("subscribe", json!({"id": "nope", "event": "forbidden-package", "to": "3001"})).await;
    let s = c.expect("notifySubscription").await;
    assert_eq!(
        (s["id"].as_str(), s["status"].as_str(), s["info"].as_str()),
        (Some("nope"), Some("FAILED"), Some("Forbidden"))
    );
    c.send("subscribe", json!({"id": "s404", "event": "presence", "to": "3001"})).await;
    let s = c.expect("notifySubscription").await;
    assert_eq!((s["id"].as_str(), s["status"].as_str()), (Some("s404"), Some("FAILED")), "{s:?}");
    assert_eq!(s["info"], "SIP 404 NOT FOUND", "{s:?}");
    let outcome = peer.wait().await;
    outcome.assert_success();
    let subs: Vec<String> = outcome.received().into_iter().filter(|m| m.starts_with("SUBSCRIBE ")).collect();
    assert_eq!(subs.len(), 1, "only the second SUBSCRIBE reached sipp: {}", outcome.report());
    assert!(subs[0].contains("Event: presence"), "{}", subs[0]);
    let ev = backend.wait_for("SubscriptionStatusEvent", |b| b["id"] == "s404").await;
    assert_eq!(ev.body["sipStatus"], 404);
    server.shutdown().await;
}

// ----- XCAP ----------------------------------------------------------------------------------

/// What the XCAP server was asked: each request's path and its Authorization header.
type XcapLog = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A local HTTP server that asks for Digest or Basic credentials (only Basic under
/// `/xcap-root/basic-only`) and records what it was asked. It takes any digest answer for
/// user 3000 (the digest arithmetic has unit tests).
async fn xcap_server() -> (std::net::SocketAddr, XcapLog) {
    let log: XcapLog = Arc::default();
    let l2 = log.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap| {
        let log = l2.clone();
        async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
            log.lock().push((uri.to_string(), auth.clone()));
            let basic_only = uri.path().starts_with("/xcap-root/basic-only");
            match auth.as_deref() {
                // 3000:secret
                Some(a) if a == "Basic MzAwMDpzZWNyZXQ=" || a.starts_with("Digest username=\"3000\"") => {
                    (StatusCode::OK, [("content-type", "application/resource-lists+xml")], "<resource-lists/>")
                        .into_response()
                }
                _ => {
                    let mut r =
                        (StatusCode::UNAUTHORIZED, [("content-type", "text/plain")], "who are you?").into_response();
                    let h = r.headers_mut();
                    if !basic_only {
                        h.append(
                            "www-authenticate",
                            "Digest realm=\"xcap\", nonce=\"n1\", qop=\"auth\"".parse().unwrap(),
                        );
                    }
                    h.append("www-authenticate", "Basic realm=\"xcap\"".parse().unwrap());
                    r
                }
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, log)
}

#[tokio::test]
async fn xcap_request_to_an_allowed_server_with_the_sip_credentials_and_a_refused_host() {
    let (addr, log) = xcap_server().await;
    let backend = Backend::start().await;
    // The XCAP server is on loopback: the SSRF guard must be told it may be reached.
    let extra = format!(
        "[xcap]\nallowed_base_urls = [\"http://{addr}/xcap-root/\"]\n[security]\nallowed_private_ranges = [\"127.0.0.0/8\"]\n"
    );
    let server = start_server(&server_toml(&backend, &extra)).await;
    let sip = json!({"sipLogin": "3000", "sipPassword": "secret", "sipDomain": "127.0.0.1",
                     "sipRegisterRequired": false});
    let (mut c, _) = Client::establish(&server, connection(sip)).await;
    let doc = format!("http://{addr}/xcap-root/resource-lists/users/sip:3000@127.0.0.1/index");
    c.send("sendXcapRequest", json!({"id": "x1", "url": doc})).await;
    let r = c.expect("notifyXcapResponse").await;
    assert_eq!((r["id"].as_str(), r["status"].as_str()), (Some("x1"), Some("ACCEPTED")), "{r:?}");
    assert_eq!(r["httpStatus"], 200);
    assert_eq!(r["body"], "<resource-lists/>");
    assert_eq!(r["contentType"], "application/resource-lists+xml");
    {
        let log = log.lock();
        assert_eq!(log.len(), 2, "401 then the retry with credentials: {log:?}");
        assert_eq!(log[0].1, None);
        assert!(log[1].1.as_deref().is_some_and(|a| a.starts_with("Digest username=\"3000\"")), "{log:?}");
    }
    let ev = backend.wait_for("XcapStatusEvent", |b| b["id"] == "x1").await;
    assert_eq!((ev.body["status"].as_str(), ev.body["httpStatus"].as_u64()), (Some("ACCEPTED"), Some(200)));
    backend.wait_for("sendXcapRequest", |b| b["id"] == "x1").await;

    // Not under the allowed base: refused, and nothing reaches any server.
    for url in [format!("http://{addr}/admin"), "http://127.0.0.2:1/xcap-root/x".to_string()] {
        c.send("sendXcapRequest", json!({"id": "x2", "url": url})).await;
        let r = c.expect("notifyXcapResponse").await;
        assert_eq!(r["status"], "FAILED");
        assert!(r["info"].as_str().unwrap().starts_with("XCAP URL not allowed"), "{r:?}");
    }
    assert_eq!(log.lock().len(), 2, "no request for a refused URL");

    // Basic alone over http: the password is not sent in clear; the 401 is the answer.
    c.send("sendXcapRequest", json!({"id": "x4", "url": format!("http://{addr}/xcap-root/basic-only/x")})).await;
    let r = c.expect("notifyXcapResponse").await;
    assert_eq!((r["status"].as_str(), r["httpStatus"].as_u64()), (Some("FAILED"), Some(401)), "{r:?}");
    {
        let log = log.lock();
        assert_eq!(log.len(), 3, "one request, no retry with Basic over http: {log:?}");
        assert_eq!(log[2].1, None);
    }
    // An encoded dot segment does not leave the base (issue 14 item 10).
    c.send("sendXcapRequest", json!({"id": "x5", "url": format!("http://{addr}/xcap-root/.%2e/admin")})).await;
    let r = c.expect("notifyXcapResponse").await;
    assert!(r["info"].as_str().unwrap().starts_with("XCAP URL not allowed"), "{r:?}");
    assert_eq!(log.lock().len(), 3, "nothing sent for the bypass URL");

    // Without credentials the 401 is the answer.
    let (mut d, _) = Client::establish(&server, connection(json!({}))).await;
    d.send("sendXcapRequest", json!({"id": "x3", "url": format!("http://{addr}/xcap-root/x")})).await;
    let r = d.expect("notifyXcapResponse").await;
    assert_eq!((r["status"].as_str(), r["httpStatus"].as_u64()), (Some("FAILED"), Some(401)));
    assert_eq!(r["info"], "HTTP 401 Unauthorized");
    server.shutdown().await;
}

// ----- incoming REFER ------------------------------------------------------------------------

async fn transfer_events(c: &mut Client, call: &str, until: &str) -> Vec<Map<String, Value>> {
    let mut out = Vec::new();
    loop {
        let t = c.expect("notifyTransferEvent").await;
        assert_eq!(t["callId"], call);
        let done = t["status"] == until;
        out.push(t);
        if done {
            return out;
        }
    }
}

#[tokio::test]
async fn incoming_refer_accepted_gets_202_and_an_honest_final_notify() {
    let backend = Backend::start().await;
    let server = start_server(&server_toml(&backend, "")).await;
    let peer = sipp_uas("uas_answer_send_refer.xml");
    let (mut c, _) = Client::establish(&server, connection(account(&peer))).await;
    c.send("call", call_msg("r1", "3001")).await;
    let talk = c.expect("talk").await;
    assert_eq!(talk["callId"], "r1");
    let events = transfer_events(&mut c, "r1", "FAILED").await;
    assert_eq!(events[0]["status"], "PENDING", "{events:?}");
    assert!(events[0]["target"].as_str().unwrap().starts_with("sip:4000@127.0.0.1"), "{events:?}");
    assert!(events[1]["info"].as_str().unwrap().contains("not carried out"), "{events:?}");
    let hook = backend.wait_for("OnTransferEvent", |b| b["callId"] == "r1").await;
    assert_eq!(hook.body["status"], "PENDING");
    assert!(hook.body["target"].as_str().unwrap().starts_with("sip:4000@"));
    assert!(hook.body["referredBy"].as_str().unwrap().contains("sipp@"));
    c.send("hangup", json!({"callId": "r1"})).await;
    let fin = c.expect("finish").await;
    assert_eq!(fin["status"], "FINISH");
    let outcome = peer.wait().await;
    outcome.assert_success();
    let got = outcome.received();
    assert!(got.iter().any(|m| m.starts_with("SIP/2.0 202")), "{}", outcome.report());
    let notify = got.iter().find(|m| m.starts_with("NOTIFY ")).expect("a NOTIFY");
    assert!(notify.contains("SIP/2.0 503 Service Unavailable"), "{notify}");
    backend.wait_for("TransferStatusEvent", |b| b["callId"] == "r1" && b["status"] == "FAILED").await;
    server.shutdown().await;
}

#[tokio::test]
async fn incoming_refer_refused_by_the_backend_gets_403() {
    let backend = Backend::start().await;
    backend_config(&backend, json!({"OnTransferEvent": {"restOnError": "FAIL"}}), "OnTransferEvent");
    let server = start_server(&server_toml(&backend, "")).await;
    let peer = sipp_uas("uas_answer_send_refer.xml");
    let (mut c, _) = Client::establish(&server, connection(account(&peer))).await;
    c.send("call", call_msg("r2", "3001")).await;
    c.expect("talk").await;
    let events = transfer_events(&mut c, "r2", "FAILED").await;
    assert_eq!(events.len(), 1, "no PENDING for a refused transfer: {events:?}");
    assert!(events[0]["info"].as_str().unwrap().contains("refused: Not for you"), "{events:?}");
    c.send("hangup", json!({"callId": "r2"})).await;
    assert_eq!(c.expect("finish").await["status"], "FINISH");
    let outcome = peer.wait().await;
    outcome.assert_success();
    let got = outcome.received();
    assert!(got.iter().any(|m| m.starts_with("SIP/2.0 403")), "{}", outcome.report());
    assert!(!got.iter().any(|m| m.starts_with("SIP/2.0 202") || m.starts_with("NOTIFY ")), "{}", outcome.report());
    backend.wait_for("OnTransferEvent", |b| b["callId"] == "r2").await;
    server.shutdown().await;
}
