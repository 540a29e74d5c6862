//! The embedded registrar and proxy (`[registrar]`, docs/registrar.md) end to end: SDK-protocol
//! sessions on its domain register to callgate itself and call each other through it, with
//! every step through the hooks of a real recording backend; a sipp phone registers with digest
//! and calls a session; wrong passwords, unknown users and unreachable users get the
//! registrar's answer; `/metrics` shows the registered contacts.

use std::time::Duration;

use callgate_tests::peers::Sipp;
use callgate_tests::sip_fixtures::{connection, hook_statuses, sip_server_toml, CHROMIUM_OFFER};
use callgate_tests::webrtc::FakeBrowser;
use callgate_tests::{start_server, Backend, Client};
use serde_json::{json, Map, Value};

/// The server with app `backendApp`, and the registrar's static users.
fn toml(backend: &Backend, users: &str, session_users: bool) -> String {
    format!("{}[registrar]\nusers = {{ {users} }}\nsession_users = {session_users}\n", sip_server_toml(backend))
}

/// The SIP fields an SDK page sets for the embedded registrar: its domain and nothing else
/// (sipPort as the SDK sends by default; no outbound proxy).
fn account(login: &str, password: &str) -> Value {
    json!({"sipLogin": login, "sipPassword": password, "sipDomain": "callgate.local", "sipPort": "5060"})
}

async fn registered(server: &callgate_server::RunningServer, login: &str, password: &str) -> Client {
    let (mut c, _) = Client::establish(server, connection(account(login, password))).await;
    let reg = c.expect("registered").await;
    assert_eq!((reg["sipLogin"].as_str(), reg["status"].as_str()), (Some(login), Some("REGISTERED")));
    c
}

fn call_msg(id: &str, caller: &str, callee: &str) -> Value {
    json!({"callId": id, "incoming": false, "hasVideo": false, "hasAudio": true, "status": "PENDING",
           "mediaProvider": "WebRTC", "sdp": CHROMIUM_OFFER, "caller": caller, "callee": callee,
           "visibleName": caller, "custom": {}})
}

/// The browser's answer to the server's offer for an incoming call: a str0m peer accepting it
/// (not run: these tests look at signalling, as tests/calls.rs does).
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

async fn expect_status(c: &mut Client, message: &str, call: &str, status: &str) -> Map<String, Value> {
    let m = c.expect(message).await;
    assert_eq!((m["callId"].as_str(), m["status"].as_str()), (Some(call), Some(status)), "{message}: {m:?}");
    m
}

/// The incoming call offered to `c`: its id, after `setRemoteSDP` and `ring`, answered.
async fn answer_incoming(c: &mut Client) -> String {
    let inc = c.expect("notifyIncomingCall").await;
    let id = inc["callId"].as_str().unwrap().to_string();
    let sdp = c.seen.iter().find(|(m, d)| m == "setRemoteSDP" && d[0] == id.as_str()).map(|(_, d)| d.clone()).unwrap();
    expect_status(c, "ring", &id, "RING").await;
    let answer = browser_answer(sdp[1].as_str().unwrap());
    c.send(
        "answer",
        json!({"callId": id, "sdp": answer, "incoming": true, "hasAudio": true, "hasVideo": false, "status": "PENDING"}),
    )
    .await;
    id
}

/// `GET /metrics` of the server.
async fn metrics_text(server: &callgate_server::RunningServer) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.http_addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Two SDK sessions: 1001 (a static user) and 1002 (a session user: any password its session
/// was let in with) register to the embedded registrar; 1001 calls 1002 through it, 1002
/// answers, both are ESTABLISHED; 1001 hangs up and both finish. Every step went through the
/// backend's hooks; the gauge counts the two contacts, then none once the sessions are gone.
#[tokio::test]
async fn two_sessions_register_to_the_embedded_registrar_and_call_each_other() {
    two_sessions_call_each_other("").await;
}

/// The same with the user agent on 0.0.0.0, as `make run` has it: its Via and Contact carry the
/// default route's address, while the registrar (on loopback) reaches it by the address its
/// REGISTER came from.
#[tokio::test]
async fn the_same_with_the_user_agent_on_every_interface() {
    two_sessions_call_each_other("[sip]\nbind = \"0.0.0.0:0\"\n").await;
}

async fn two_sessions_call_each_other(sip: &str) {
    let backend = Backend::start().await;
    let mut cfg = toml(&backend, r#""1001" = "pw1""#, true);
    if !sip.is_empty() {
        cfg = cfg.replace("[sip]\nbind = \"127.0.0.1:0\"\n", sip);
    }
    let server = start_server(&cfg).await;
    let registrar = server.shared.calls.registrar().expect("enabled by default");
    assert!(registrar.local_addr().is_some());
    let mut a = registered(&server, "1001", "pw1").await;
    let mut b = registered(&server, "1002", "anything-the-session-came-with").await;
    let ua = server.shared.calls.local_addr().expect("the user agent runs");
    assert_eq!(ua.ip().is_unspecified(), !sip.is_empty(), "{ua}");
    assert_eq!(registrar.contacts(), 2);
    assert_eq!(gauge(&metrics_text(&server).await, "callgate_registrar_contacts"), Some(2.0));

    a.send("call", call_msg("c1", "1001", "1002")).await;
    let b_id = answer_incoming(&mut b).await;
    expect_status(&mut a, "talk", "c1", "ESTABLISHED").await;
    expect_status(&mut b, "talk", &b_id, "ESTABLISHED").await;
    a.send("hangup", json!({"callId": "c1"})).await;
    expect_status(&mut a, "finish", "c1", "FINISH").await;
    expect_status(&mut b, "finish", &b_id, "FINISH").await;

    // The hooks saw both sides: the caller's `call`, the callee's OnCallEvent and `answer`,
    // and each side's statuses.
    let call_hook = &backend.requests_for("call")[0].body;
    assert_eq!((call_hook["caller"].as_str(), call_hook["callee"].as_str()), (Some("1001"), Some("1002")));
    let on_call = backend.wait_for("OnCallEvent", |b| b["incoming"] == true).await;
    assert_eq!(on_call.body["callee"], "1002");
    assert_eq!(on_call.body["caller"], "1001");
    assert!(on_call.body["sipMessageRaw"].as_str().unwrap().contains("Record-Route: <sip:127.0.0.1:"));
    backend.wait_for("answer", |x| x["callId"] == b_id.as_str()).await;
    backend.wait_for("CallStatusEvent", |x| x["callId"] == "c1" && x["status"] == "FINISH").await;
    backend.wait_for("CallStatusEvent", |x| x["callId"] == b_id.as_str() && x["status"] == "FINISH").await;
    assert!(
        hook_statuses(&backend, "CallStatusEvent", "callId", "c1").ends_with(&["ESTABLISHED".into(), "FINISH".into()])
    );
    assert_eq!(hook_statuses(&backend, "CallStatusEvent", "callId", &b_id), ["RING", "ESTABLISHED", "FINISH"]);

    // The sessions end: their un-REGISTERs remove both contacts.
    drop(a);
    drop(b);
    let mut tries = 0;
    while registrar.contacts() > 0 {
        tries += 1;
        assert!(tries < 500, "contacts left: {}", registrar.contacts());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}

/// Audio both ways, browser to browser: the caller's and the callee's (fake) browsers each
/// send PCMU through their session's call leg; RTP crosses from one bridge to the other (the
/// SDPs went through the proxy) and each browser receives the other's frames.
#[tokio::test]
async fn audio_flows_both_ways_between_two_browsers_through_the_registrar() {
    let backend = Backend::start().await;
    let server = start_server(&toml(&backend, "", true)).await;
    let mut a = registered(&server, "2001", "a").await;
    let mut b = registered(&server, "2002", "b").await;
    let caller = FakeBrowser::caller().await;
    let mut call = call_msg("m1", "2001", "2002");
    call["sdp"] = caller.offer.clone().into();
    a.send("call", call).await;

    let inc = b.expect("notifyIncomingCall").await;
    let id = inc["callId"].as_str().unwrap().to_string();
    let offer =
        b.seen.iter().find(|(m, d)| m == "setRemoteSDP" && d[0] == id.as_str()).map(|(_, d)| d.clone()).unwrap();
    let (callee, answer) = FakeBrowser::callee(offer[1].as_str().unwrap()).await;
    b.send(
        "answer",
        json!({"callId": id, "sdp": answer, "incoming": true, "hasAudio": true, "hasVideo": false, "status": "PENDING"}),
    )
    .await;
    expect_status(&mut a, "talk", "m1", "ESTABLISHED").await;
    expect_status(&mut b, "talk", &id, "ESTABLISHED").await;
    let remote = a.seen.iter().find(|(m, d)| m == "setRemoteSDP" && d[0] == "m1").map(|(_, d)| d.clone()).unwrap();
    caller.accept(remote[1].as_str().unwrap());

    // 25 frames = half a second of audio each way.
    let got = caller.wait("the callee's audio", |s| s.connected && s.audio_frames >= 25).await;
    assert!(got.frames_sent > 0);
    let got = callee.wait("the caller's audio", |s| s.connected && s.audio_frames >= 25).await;
    assert!(got.frames_sent > 0);
    a.send("hangup", json!({"callId": "m1"})).await;
    expect_status(&mut a, "finish", "m1", "FINISH").await;
    expect_status(&mut b, "finish", &id, "FINISH").await;
    server.shutdown().await;
}

/// A SIP phone (sipp, static user 1003) registers with digest and calls session 1002 through
/// the registrar; the session answers; the phone hangs up.
#[tokio::test]
async fn a_sip_phone_registers_with_digest_and_calls_a_session() {
    let backend = Backend::start().await;
    let server = start_server(&toml(&backend, r#""1002" = "pw2", "1003" = "pw3""#, false)).await;
    let reg_addr = server.shared.calls.registrar().unwrap().local_addr().unwrap();
    let mut b = registered(&server, "1002", "pw2").await;
    let phone = Sipp::scenario("uac_register_call.xml")
        .remote(reg_addr)
        .service("1002")
        .key("user", "1003")
        .key("domain", "callgate.local")
        .auth("1003", "pw3")
        .pause(Duration::from_millis(300))
        .timeout(Duration::from_secs(20))
        .spawn()
        .expect("sipp starts (run `make deps`)");
    // The phone's run ends either way (its own timeout): a failure shows its report.
    let mut phone = tokio::spawn(phone.wait());
    let id = tokio::select! {
        id = answer_incoming(&mut b) => id,
        outcome = &mut phone => panic!("the phone ended before calling: {}", outcome.unwrap().report()),
    };
    expect_status(&mut b, "talk", &id, "ESTABLISHED").await;
    let fin = expect_status(&mut b, "finish", &id, "FINISH").await;
    assert_eq!(fin["info"], "Normal call clearing");
    let outcome = phone.await.unwrap();
    outcome.assert_success();
    let on_call = backend.wait_for("OnCallEvent", |x| x["incoming"] == true).await;
    assert_eq!((on_call.body["caller"].as_str(), on_call.body["callee"].as_str()), (Some("1003"), Some("1002")));
    let ok = outcome.received().into_iter().find(|m| m.starts_with("SIP/2.0 200") && m.contains("INVITE")).unwrap();
    assert!(ok.contains("RTP/AVP 0"), "the session's answer went back through the proxy\n{ok}");
    server.shutdown().await;
}

/// A session calls a SIP phone registered to the embedded registrar (sipp: one process
/// registers the Contact of another that answers, on the same IP, so the registrar sends to the
/// Contact itself); the phone answers, the session hangs up, and the ACK and BYE went through
/// the proxy (Record-Route).
#[tokio::test]
async fn a_session_calls_a_registered_sip_phone() {
    let backend = Backend::start().await;
    let server = start_server(&toml(&backend, r#""1001" = "pw1", "1004" = "pw4""#, false)).await;
    let reg_addr = server.shared.calls.registrar().unwrap().local_addr().unwrap();
    let line =
        Sipp::scenario("uas_answer_local_bye.xml").timeout(Duration::from_secs(20)).spawn().expect("sipp starts");
    let line_port = line.local_addr().port();
    let registering = Sipp::scenario("uac_register_contact.xml")
        .remote(reg_addr)
        .key("user", "1004")
        .key("domain", "callgate.local")
        .key("contact_port", line_port.to_string())
        .auth("1004", "pw4")
        .timeout(Duration::from_secs(20))
        .spawn()
        .expect("sipp starts");
    registering.wait().await.assert_success();
    let mut a = registered(&server, "1001", "pw1").await;
    a.send("call", call_msg("p1", "1001", "1004")).await;
    expect_status(&mut a, "talk", "p1", "ESTABLISHED").await;
    a.send("hangup", json!({"callId": "p1"})).await;
    expect_status(&mut a, "finish", "p1", "FINISH").await;
    let outcome = line.wait().await;
    outcome.assert_success();
    let invite = outcome.received().into_iter().find(|m| m.starts_with("INVITE ")).unwrap();
    let want = format!("INVITE sip:1004@127.0.0.1:{line_port} SIP/2.0");
    assert!(invite.starts_with(&want), "the contact as Request-URI: {invite}");
    assert!(invite.contains(&format!("Record-Route: <sip:{reg_addr};lr>")), "{invite}");
    let bye = outcome.received().into_iter().find(|m| m.starts_with("BYE ")).unwrap();
    assert!(
        bye.contains(&format!("Via: SIP/2.0/UDP {reg_addr};branch=z9hG4bKcgp")),
        "the BYE came through the proxy: {bye}"
    );
    server.shutdown().await;
}

/// A wrong password gets 403 and an unknown user 404 (with session_users off), both reported to
/// the client and the backend as registration failures; a user another session holds with
/// another password is refused too.
#[tokio::test]
async fn a_wrong_password_gets_403_and_an_unknown_user_404() {
    let backend = Backend::start().await;
    let server = start_server(&toml(&backend, r#""1001" = "pw1""#, false)).await;
    for (login, password, info) in [("1001", "wrong", "SIP 403 FORBIDDEN"), ("4711", "pw", "SIP 404 NOT FOUND")] {
        let (mut c, _) = Client::establish(&server, connection(account(login, password))).await;
        let fail = c.expect("fail").await;
        assert_eq!((fail["apiMethod"].as_str(), fail["info"].as_str()), (Some("RegistrationStatusEvent"), Some(info)));
        let ev =
            backend.wait_for("RegistrationStatusEvent", |b| b["sipLogin"] == login && b["status"] == "FAILED").await;
        assert_eq!(ev.body["info"], info);
    }
    assert_eq!(server.shared.calls.registrar().unwrap().contacts(), 0);
    server.shutdown().await;

    let backend = Backend::start().await;
    let server = start_server(&toml(&backend, "", true)).await;
    let _a = registered(&server, "2001", "first").await;
    let (mut c, _) = Client::establish(&server, connection(account("2001", "second"))).await;
    assert_eq!(c.expect("fail").await["info"], "SIP 403 FORBIDDEN");
    server.shutdown().await;
}

/// `/rest-api/call/startup` with an account of the embedded domain places its call through the
/// registrar: the registered session rings, answers, and the REST call is ESTABLISHED.
#[tokio::test]
async fn a_rest_started_call_reaches_a_registered_session() {
    let backend = Backend::start().await;
    let server = start_server(&toml(&backend, "", true)).await;
    let mut b = registered(&server, "2002", "b").await;
    let body = json!({"callId": "r1", "callee": "2002", "hasAudio": "true", "hasVideo": "false",
                      "sipLogin": "desk", "sipPassword": "unused", "sipDomain": "callgate.local",
                      "appKey": "backendApp", "sipRegisterRequired": "false"});
    let (status, text) = callgate_tests::http_post(&server, "/rest-api/call/startup", &body.to_string(), None).await;
    assert_eq!(status, 200, "{text}");
    let id = answer_incoming(&mut b).await;
    expect_status(&mut b, "talk", &id, "ESTABLISHED").await;
    backend.wait_for("CallStatusEvent", |x| x["callId"] == "r1" && x["status"] == "ESTABLISHED").await;
    b.send("hangup", json!({"callId": id})).await;
    expect_status(&mut b, "finish", &id, "FINISH").await;
    backend.wait_for("CallStatusEvent", |x| x["callId"] == "r1" && x["status"] == "FINISH").await;
    server.shutdown().await;
}

/// A registrar that cannot bind its port (taken here by another socket) leaves the server up;
/// a session of its domain is told why it cannot register.
#[tokio::test]
async fn a_registrar_that_cannot_bind_is_reported_to_the_sessions_of_its_domain() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap();
    let backend = Backend::start().await;
    let server = start_server(&format!("{}[registrar]\nbind = \"{port}\"\n", sip_server_toml(&backend))).await;
    assert!(server.shared.calls.registrar().unwrap().local_addr().is_none());
    let (mut c, _) = Client::establish(&server, connection(account("1001", "pw"))).await;
    let fail = c.expect("fail").await;
    assert_eq!(fail["apiMethod"], "RegistrationStatusEvent");
    let info = fail["info"].as_str().unwrap();
    assert!(info.starts_with(&format!("Embedded registrar unavailable: {port}: ")), "{info}");
    server.shutdown().await;
}

/// Calling a user nobody knows is 404; a known user with no live contact 480: the caller's
/// call FAILS with the registrar's answer.
#[tokio::test]
async fn calls_to_an_unknown_user_get_404_and_to_an_absent_one_480() {
    let backend = Backend::start().await;
    let server = start_server(&toml(&backend, r#""1001" = "pw1", "1005" = "pw5""#, false)).await;
    let mut a = registered(&server, "1001", "pw1").await;
    for (id, callee, info) in
        [("c404", "9999", "SIP 404 NOT FOUND"), ("c480", "1005", "SIP 480 TEMPORARILY UNAVAILABLE")]
    {
        a.send("call", call_msg(id, "1001", callee)).await;
        let failed = expect_status(&mut a, "finish", id, "FAILED").await;
        assert_eq!(failed["info"], info, "{callee}");
    }
    server.shutdown().await;
}
