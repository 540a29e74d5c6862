//! What real SIP peers send inside a call (issue 10 item 3): re-INVITE and UPDATE (hold,
//! unhold, inactive), an offer-less re-INVITE, INFO DTMF, glare, a BYE during our re-INVITE,
//! and session timers both ways; after each, the browser's own hold still works. sipp plays the
//! peer (`tests/sipp/uas_peer_requests.xml`, `uac_peer_requests.xml`, `uas_session_timer.xml`,
//! `uac_session_timer.xml`); a recording backend sees the statuses.

use std::time::Duration;

use callgate_tests::peers::{Sipp, SippProcess};
use callgate_tests::sip_fixtures::{call_msg, connection, hook_statuses, registrar, sip_server_toml};
use callgate_tests::{start_server, Backend, Client};
use serde_json::{json, Value};

/// The server of the SIP tests, accepting session intervals down to 2 s (sipp's are 4 s). The
/// browsers here never connect their media: its connect timeout (15 s by default, which would
/// end the session-timer calls "Failed by ICE error") is a minute.
fn server_toml(backend: &Backend) -> String {
    let toml = sip_server_toml(backend).replacen("[sip]\n", "[sip]\nsession_min_se = 2\n", 1);
    format!("{toml}[media]\nconnect_timeout_ms = 60000\n")
}

fn call_account(sipp: &SippProcess) -> Value {
    json!({"sipLogin": "3000", "sipPassword": "secret", "sipDomain": "127.0.0.1",
           "sipPort": sipp.local_addr().port(), "sipRegisterRequired": false})
}

/// The statuses the client got for `call` (messages `talk`, `hold`, `finish`, ...), in order.
fn client_statuses(c: &Client, call: &str) -> Vec<String> {
    c.seen
        .iter()
        .filter(|(m, _)| ["notifyTryingResponse", "ring", "talk", "hold", "finish"].contains(&m.as_str()))
        .filter_map(|(_, d)| d.first())
        .filter(|o| o["callId"] == call)
        .map(|o| o["status"].as_str().unwrap_or("").to_string())
        .collect()
}

/// How many UPDATEs `received` holds, a retransmission counted once (by its `CSeq`).
fn distinct_updates(received: &[String]) -> usize {
    let cseq = |m: &str| m.lines().find(|l| l.to_ascii_lowercase().starts_with("cseq:")).map(str::to_owned);
    let mut seen: Vec<_> = received.iter().filter(|m| m.starts_with("UPDATE ")).map(|m| cseq(m)).collect();
    seen.sort();
    seen.dedup();
    seen.len()
}

async fn expect_status(c: &mut Client, message: &str, call: &str, status: &str) {
    let m = c.expect(message).await;
    assert_eq!((m["callId"].as_str(), m["status"].as_str()), (Some(call), Some(status)), "{message}: {m:?}");
}

/// sipp answers our call, then holds (re-INVITE sendonly), unholds, holds by UPDATE inactive,
/// unholds by UPDATE, sends two INFO DTMF digits and an INFO we do not take (415), and makes
/// the browser's hold collide with its own re-INVITE (491 both ways; ours is sent again after
/// the RFC 3261 §14.1 delay). Each is answered as it should, reported to client and backend,
/// and the browser's hold and unhold afterwards work.
#[tokio::test]
async fn an_outgoing_call_survives_the_peers_reinvites_updates_info_and_glare() {
    let backend = Backend::start().await;
    let server = start_server(&server_toml(&backend)).await;
    let sipp = Sipp::scenario("uas_peer_requests.xml").timeout(Duration::from_secs(30)).spawn().unwrap();
    let (mut c, _) = Client::establish(&server, connection(call_account(&sipp))).await;
    c.send("call", call_msg("p1", "3001")).await;
    expect_status(&mut c, "talk", "p1", "ESTABLISHED").await;
    let mut digits = Vec::new();
    for _ in 0..2 {
        let d = c.expect("OnDataEvent").await;
        assert_eq!((d["payload"]["type"].as_str(), d["payload"]["callId"].as_str()), (Some("DTMF"), Some("p1")));
        digits.push(d["payload"]["dtmf"].as_str().unwrap().to_string());
    }
    assert_eq!(digits, ["5", "7"], "INFO dtmf-relay and dtmf, in order");
    assert_eq!(
        client_statuses(&c, "p1"),
        ["TRYING", "RING", "ESTABLISHED", "HOLD", "ESTABLISHED", "HOLD", "ESTABLISHED"],
        "the peer's hold/unhold by re-INVITE, then by UPDATE"
    );
    // The browser holds; its re-INVITE meets sipp's (491 both ways) and goes again.
    c.send("hold", json!({"callId": "p1"})).await;
    expect_status(&mut c, "hold", "p1", "HOLD").await;
    c.send("unhold", json!({"callId": "p1"})).await;
    expect_status(&mut c, "talk", "p1", "ESTABLISHED").await;
    c.send("hangup", json!({"callId": "p1"})).await;
    expect_status(&mut c, "finish", "p1", "FINISH").await;
    let outcome = sipp.wait().await;
    outcome.assert_success();
    let received = outcome.received();
    let update_ok = received.iter().find(|m| m.starts_with("SIP/2.0 200") && m.contains("CSeq: 3 UPDATE")).unwrap();
    assert!(update_ok.contains("a=inactive"), "inactive mirrored: {update_ok}");
    assert!(received.iter().any(|m| m.starts_with("SIP/2.0 415")), "INFO text/plain refused");
    assert!(received.iter().any(|m| m.starts_with("SIP/2.0 491")), "glare: 491 to sipp's re-INVITE");
    let holds = received.iter().filter(|m| m.starts_with("INVITE ") && m.contains("a=sendonly")).count();
    assert_eq!(holds, 2, "the browser's hold, refused 491, then sent again");
    backend.wait_for("CallStatusEvent", |b| b["callId"] == "p1" && b["status"] == "FINISH").await;
    assert_eq!(
        hook_statuses(&backend, "CallStatusEvent", "callId", "p1"),
        [
            "TRYING",
            "RING",
            "ESTABLISHED",
            "HOLD",
            "ESTABLISHED",
            "HOLD",
            "ESTABLISHED",
            "HOLD",
            "ESTABLISHED",
            "FINISH"
        ]
    );
    let dtmf: Vec<Value> = backend.requests_for("OnDataEvent").into_iter().map(|r| r.body["payload"].clone()).collect();
    assert_eq!(dtmf.iter().map(|p| p["dtmf"].as_str().unwrap()).collect::<Vec<_>>(), ["5", "7"]);
    assert_eq!(server.shared.calls.calls(), 0);
    server.shutdown().await;
}

/// Registers "3000" with a sipp registrar, then has `scenario` call it on callgate's SIP port.
async fn incoming(
    backend: &Backend,
    scenario: &str,
) -> (callgate_server::RunningServer, Client, SippProcess, SippProcess) {
    let server = start_server(&server_toml(backend)).await;
    let registrar = registrar("secret");
    let sip = json!({"sipLogin": "3000", "sipPassword": "secret", "sipDomain": "127.0.0.1",
                     "sipPort": registrar.local_addr().port().to_string()});
    let (mut c, _) = Client::establish(&server, connection(sip)).await;
    c.expect("registered").await;
    let caller = Sipp::scenario(scenario)
        .remote(server.shared.calls.local_addr().unwrap())
        .service("3000")
        .timeout(Duration::from_secs(30))
        .spawn()
        .unwrap();
    (server, c, registrar, caller)
}

/// The browser's answer to the server's offer (a str0m peer; not run).
fn browser_answer(offer: &str) -> String {
    let mut rtc = str0m::Rtc::builder()
        .set_crypto_provider(std::sync::Arc::new(str0m::crypto::from_feature_flags()))
        .enable_pcmu(true, false)
        .build(std::time::Instant::now());
    rtc.add_local_candidate(str0m::Candidate::host("127.0.0.1:9".parse().unwrap(), "udp").unwrap());
    let offer = str0m::change::SdpOffer::from_sdp_string(offer).unwrap();
    rtc.sdp_api().accept_offer(offer).unwrap().to_sdp_string()
}

/// Answers the incoming call the client was offered; returns its callId.
async fn answer_incoming(c: &mut Client) -> String {
    let ring = c.expect("ring").await;
    let call_id = ring["callId"].as_str().unwrap().to_string();
    let sdp = c.seen.iter().find(|(m, _)| m == "setRemoteSDP").map(|(_, d)| d.clone()).unwrap();
    c.send(
        "answer",
        json!({"callId": call_id, "sdp": browser_answer(sdp[1].as_str().unwrap()), "incoming": true,
               "hasAudio": true, "hasVideo": false, "status": "PENDING"}),
    )
    .await;
    expect_status(c, "talk", &call_id, "ESTABLISHED").await;
    call_id
}

/// sipp calls us, holds by re-INVITE, sends an offer-less re-INVITE (our offer in the 200, its
/// answer in the ACK: unhold), INFO DTMF; the browser holds (works); sipp holds and unholds
/// meanwhile (answered inactive, then sendonly: still held, not reported); the browser unholds
/// and sipp hangs up while that re-INVITE is pending: the call ends FINISH.
#[tokio::test]
async fn an_incoming_call_survives_an_offerless_reinvite_and_a_bye_during_our_reinvite() {
    let backend = Backend::start().await;
    let (server, mut c, registrar, caller) = incoming(&backend, "uac_peer_requests.xml").await;
    let call_id = answer_incoming(&mut c).await;
    let d = c.expect("OnDataEvent").await;
    assert_eq!((d["payload"]["dtmf"].as_str(), d["payload"]["duration"].as_u64()), (Some("1"), Some(250)));
    c.send("hold", json!({"callId": call_id})).await;
    expect_status(&mut c, "hold", &call_id, "HOLD").await;
    // sipp holds too, then unholds: the call stays held by the browser, nothing is reported.
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.send("unhold", json!({"callId": call_id})).await;
    let fin = c.expect("finish").await;
    assert_eq!((fin["status"].as_str(), fin["info"].as_str()), (Some("FINISH"), Some("Normal call clearing")));
    let outcome = caller.wait().await;
    outcome.assert_success();
    let offer =
        outcome.received().into_iter().find(|m| m.starts_with("SIP/2.0 200") && m.contains("CSeq: 3 INVITE")).unwrap();
    assert!(offer.contains("m=audio") && offer.contains("a=sendrecv"), "our offer in the 200: {offer}");
    let answer =
        |cseq: &str| outcome.received().into_iter().find(|m| m.starts_with("SIP/2.0 200") && m.contains(cseq)).unwrap();
    assert!(answer("CSeq: 5 INVITE").contains("a=inactive"), "both hold");
    assert!(answer("CSeq: 6 INVITE").contains("a=sendonly"), "the browser still holds");
    assert_eq!(
        client_statuses(&c, &call_id),
        ["RING", "ESTABLISHED", "HOLD", "ESTABLISHED", "HOLD", "FINISH"],
        "peer hold, its answer in the ACK unholds, the browser's hold, the peer's BYE"
    );
    backend.wait_for("CallStatusEvent", |b| b["callId"] == call_id && b["status"] == "FINISH").await;
    assert_eq!(
        hook_statuses(&backend, "CallStatusEvent", "callId", &call_id),
        ["RING", "ESTABLISHED", "HOLD", "ESTABLISHED", "HOLD", "FINISH"]
    );
    assert_eq!(backend.requests_for("OnDataEvent").len(), 1);
    assert_eq!(server.shared.calls.calls(), 0);
    let _ = registrar.wait().await;
    server.shutdown().await;
}

/// RFC 4028 with sipp as the refresher: its UPDATEs every 2 s keep a 4 s session up for 10 s,
/// the last one (at 10 s) making it 9 s; then the browser holds (works; its re-INVITE carries
/// the 9 s), and with no more refreshes we end the call with BYE, reported FAILED with a clear
/// info.
#[tokio::test]
async fn a_session_the_peer_stops_refreshing_ends_with_bye() {
    let backend = Backend::start().await;
    let (server, mut c, registrar, caller) = incoming(&backend, "uac_session_timer.xml").await;
    let call_id = answer_incoming(&mut c).await;
    let started = std::time::Instant::now();
    // Refreshes at 2, 4, 6, 8, 10 s; the last one's 9 s keep the session until about 16 s
    // (10 + 9 - 9/3), so the hold at 11 s may come seconds late. The hold's re-INVITE refreshes
    // it too: we give it up 6 s after the hold.
    tokio::time::sleep(Duration::from_millis(11_000)).await;
    c.send("hold", json!({"callId": call_id})).await;
    expect_status(&mut c, "hold", &call_id, "HOLD").await;
    let fin = c.expect("finish").await;
    // Timers never fire early: the call is up until the last refresh's 9 s are nearly over.
    assert!(started.elapsed() >= Duration::from_secs(15), "up while refreshed: {:?}", started.elapsed());
    assert_eq!(fin["status"], "FAILED");
    assert!(fin["info"].as_str().unwrap().contains("session timer"), "{fin:?}");
    let outcome = caller.wait().await;
    outcome.assert_success();
    let ok =
        outcome.received().into_iter().find(|m| m.starts_with("SIP/2.0 200") && m.contains("CSeq: 1 INVITE")).unwrap();
    assert!(ok.contains("Session-Expires: 4;refresher=uac") && ok.contains("Require: timer"), "{ok}");
    backend.wait_for("CallStatusEvent", |b| b["callId"] == call_id && b["status"] == "FAILED").await;
    assert_eq!(
        hook_statuses(&backend, "CallStatusEvent", "callId", &call_id),
        ["RING", "ESTABLISHED", "HOLD", "FAILED"]
    );
    let _ = registrar.wait().await;
    server.shutdown().await;
}

/// RFC 4028 with us as the refresher: sipp's 200 asks for 4 s refreshed by us; we send UPDATE
/// every 2 s (five in 10 s), and the browser's hold afterwards works.
#[tokio::test]
async fn we_refresh_the_session_when_the_peer_makes_us_the_refresher() {
    let backend = Backend::start().await;
    let server = start_server(&server_toml(&backend)).await;
    let sipp = Sipp::scenario("uas_session_timer.xml").timeout(Duration::from_secs(30)).spawn().unwrap();
    let (mut c, _) = Client::establish(&server, connection(call_account(&sipp))).await;
    let started = std::time::Instant::now();
    c.send("call", call_msg("t1", "3001")).await;
    expect_status(&mut c, "talk", "t1", "ESTABLISHED").await;
    // Five refreshes at 2, 4, 6, 8, 10 s, which sipp requires; the hold goes between the fifth
    // and the sixth, or later (sipp answers any further UPDATE before the hold and the BYE).
    tokio::time::sleep(Duration::from_millis(10_900)).await;
    c.send("hold", json!({"callId": "t1"})).await;
    expect_status(&mut c, "hold", "t1", "HOLD").await;
    c.send("hangup", json!({"callId": "t1"})).await;
    expect_status(&mut c, "finish", "t1", "FINISH").await;
    let outcome = sipp.wait().await;
    let elapsed = started.elapsed();
    outcome.assert_success();
    let updates = distinct_updates(&outcome.received());
    // Each refresh comes 2 s (half the interval) after the last: never more than one per 2 s.
    assert!(updates >= 5 && updates as u64 <= elapsed.as_secs() / 2, "{updates} UPDATEs in {elapsed:?}");
    backend.wait_for("CallStatusEvent", |b| b["callId"] == "t1" && b["status"] == "FINISH").await;
    assert_eq!(
        hook_statuses(&backend, "CallStatusEvent", "callId", "t1"),
        ["TRYING", "RING", "ESTABLISHED", "HOLD", "FINISH"]
    );
    server.shutdown().await;
}
