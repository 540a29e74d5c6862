//! Video in SIP calls through the real server (docs/media.md "Video in calls"): two SDK-protocol
//! sessions register to the embedded registrar and call each other with video, each call leg a
//! fake browser (`webrtc::FakeBrowser::video_caller`/`video_callee`: str0m peers with real
//! ICE/DTLS/SRTP, PCMU and VP8). Browser A -> callgate (bridge A, RTP) -> registrar -> callgate
//! (bridge B) -> browser B and back: video and audio flow both ways; a browser's PLI crosses the
//! SIP leg as RTCP PLI and reaches the other browser as a keyframe request, which answers it
//! with a keyframe; hold and unhold (both m-lines re-offered) keep the video. And against a SIP
//! peer callgate did not write: sipp answering with VP8 video and echoing RTP (`-rtp_echo`).

use std::time::Duration;

use callgate_tests::peers::Sipp;
use callgate_tests::sip_fixtures::{connection, sip_server_toml};
use callgate_tests::webrtc::{BrowserStats, FakeBrowser};
use callgate_tests::{start_server, Backend, Client};
use serde_json::{json, Map, Value};

fn toml(backend: &Backend) -> String {
    format!("{}[registrar]\nusers = {{ }}\nsession_users = true\n", sip_server_toml(backend))
}

async fn registered(server: &callgate_server::RunningServer, login: &str) -> Client {
    let account = json!({"sipLogin": login, "sipPassword": "pw", "sipDomain": "callgate.local", "sipPort": "5060"});
    let (mut c, _) = Client::establish(server, connection(account)).await;
    let reg = c.expect("registered").await;
    assert_eq!((reg["sipLogin"].as_str(), reg["status"].as_str()), (Some(login), Some("REGISTERED")));
    c
}

async fn expect_status(c: &mut Client, message: &str, call: &str, status: &str) -> Map<String, Value> {
    let m = c.expect(message).await;
    assert_eq!((m["callId"].as_str(), m["status"].as_str()), (Some(call), Some(status)), "{message}: {m:?}");
    m
}

/// Waits until `b` received `more` video frames beyond what `now` saw.
async fn more_video(b: &FakeBrowser, now: &BrowserStats, more: usize, what: &str) -> BrowserStats {
    let base = now.video_frames;
    b.wait(what, |s| s.video_frames >= base + more).await
}

#[tokio::test]
async fn video_flows_both_ways_between_two_browsers_and_keyframe_requests_cross_the_sip_leg() {
    let backend = Backend::start().await;
    let server = start_server(&toml(&backend)).await;
    let mut a = registered(&server, "2001").await;
    let mut b = registered(&server, "2002").await;
    let caller = FakeBrowser::video_caller().await;
    a.send(
        "call",
        json!({"callId": "v1", "incoming": false, "hasVideo": true, "hasAudio": true, "status": "PENDING",
               "mediaProvider": "WebRTC", "sdp": caller.offer, "caller": "2001", "callee": "2002",
               "visibleName": "2001", "custom": {}}),
    )
    .await;

    let inc = b.expect("notifyIncomingCall").await;
    assert_eq!(inc["hasVideo"], true, "the SIP offer's VP8 is carried: {inc:?}");
    let id = inc["callId"].as_str().unwrap().to_string();
    let offer =
        b.seen.iter().find(|(m, d)| m == "setRemoteSDP" && d[0] == id.as_str()).map(|(_, d)| d.clone()).unwrap();
    let offer = offer[1].as_str().unwrap();
    assert!(offer.contains("m=video 9 ") && offer.contains("VP8/90000"), "{offer}");
    let (callee, answer) = FakeBrowser::video_callee(offer).await;
    b.send(
        "answer",
        json!({"callId": id, "sdp": answer, "incoming": true, "hasAudio": true, "hasVideo": true, "status": "PENDING"}),
    )
    .await;
    let talk = expect_status(&mut a, "talk", "v1", "ESTABLISHED").await;
    assert_eq!(talk["hasVideo"], true, "{talk:?}");
    expect_status(&mut b, "talk", &id, "ESTABLISHED").await;
    let remote = a.seen.iter().find(|(m, d)| m == "setRemoteSDP" && d[0] == "v1").map(|(_, d)| d.clone()).unwrap();
    let remote = remote[1].as_str().unwrap();
    assert!(!remote.contains("m=video 0 ") && remote.contains("VP8/90000"), "{remote}");
    caller.accept(remote);

    // Half a second of audio and video each way.
    let at_caller = caller.wait("the callee's audio and video", |s| s.audio_frames >= 25 && s.video_frames >= 25).await;
    let at_callee = callee.wait("the caller's audio and video", |s| s.audio_frames >= 25 && s.video_frames >= 25).await;
    assert!(at_caller.keyframes_received >= 1 && at_callee.keyframes_received >= 1, "{at_caller:?} {at_callee:?}");

    // The callee's PLI: RTCP PLI from bridge B to bridge A, a keyframe request to the caller,
    // whose keyframe reaches the callee. Past the start's requests and their throttle first.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (c0, e0) = (caller.stats(), callee.stats());
    callee.request_keyframe();
    caller.wait("the keyframe request from across the SIP leg", |s| s.keyframe_requests > c0.keyframe_requests).await;
    callee.wait("a keyframe after it", |s| s.keyframes_received > e0.keyframes_received).await;
    // And the other way.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (c1, e1) = (caller.stats(), callee.stats());
    caller.request_keyframe();
    callee.wait("the caller's keyframe request", |s| s.keyframe_requests > e1.keyframe_requests).await;
    caller.wait("the callee's keyframe", |s| s.keyframes_received > c1.keyframes_received).await;

    // Hold and unhold from the caller: video flows again afterwards.
    a.send("hold", json!({"callId": "v1"})).await;
    expect_status(&mut a, "hold", "v1", "HOLD").await;
    a.send("unhold", json!({"callId": "v1"})).await;
    expect_status(&mut a, "talk", "v1", "ESTABLISHED").await;
    more_video(&caller, &caller.stats(), 25, "video after unhold").await;
    more_video(&callee, &callee.stats(), 25, "video after unhold").await;

    a.send("hangup", json!({"callId": "v1"})).await;
    expect_status(&mut a, "finish", "v1", "FINISH").await;
    expect_status(&mut b, "finish", &id, "FINISH").await;
    server.shutdown().await;
}

/// A UDP port P on 127.0.0.1 with P..=P+3 free a moment ago (sipp's `-mp`: audio on P, video
/// on P + 2).
fn free_media_ports() -> u16 {
    for _ in 0..50 {
        let p = callgate_tests::peers::free_udp_port();
        if p < 65_000 && (1..4).all(|i| std::net::UdpSocket::bind(("127.0.0.1", p + i)).is_ok()) {
            return p;
        }
    }
    panic!("no four free UDP ports in a row");
}

/// sipp answers with audio and VP8 video and echoes every RTP (and RTCP) packet back: the
/// browser's video comes back to it across the SIP leg, and its PLI, sent to the SIP side as
/// RTCP and echoed, comes back as a PLI from the SIP side, which callgate turns into a keyframe
/// request to the browser.
#[tokio::test]
async fn a_video_call_to_sipp_gets_its_echoed_video_back_and_the_sip_sides_pli_asks_for_a_keyframe() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let mp = free_media_ports();
    let sipp = Sipp::scenario("uas_answer_video_echo.xml")
        .timeout(Duration::from_secs(20))
        .arg("-rtp_echo")
        .arg("-mp")
        .arg(mp.to_string())
        .spawn()
        .expect("sipp starts (run `make deps`)");
    let account = json!({"sipLogin": "3000", "sipPassword": "secret", "sipDomain": "127.0.0.1",
                         "sipPort": sipp.local_addr().port(), "sipRegisterRequired": false});
    let (mut c, _) = Client::establish(&server, connection(account)).await;
    let caller = FakeBrowser::video_caller().await;
    c.send(
        "call",
        json!({"callId": "e1", "incoming": false, "hasVideo": true, "hasAudio": true, "status": "PENDING",
               "mediaProvider": "WebRTC", "sdp": caller.offer, "caller": "3000", "callee": "3001",
               "visibleName": "3000", "custom": {}}),
    )
    .await;
    expect_status(&mut c, "talk", "e1", "ESTABLISHED").await;
    let remote = c.seen.iter().find(|(m, d)| m == "setRemoteSDP" && d[0] == "e1").map(|(_, d)| d.clone()).unwrap();
    caller.accept(remote[1].as_str().unwrap());

    // Its own audio and video, back from sipp (keyframes included: the picture is decodable).
    let got = caller.wait("the echoed audio and video", |s| s.audio_frames >= 25 && s.video_frames >= 25).await;
    assert!(got.keyframes_received >= 1, "{got:?}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = caller.stats();
    caller.request_keyframe();
    caller
        .wait("a keyframe request after the SIP side's (echoed) PLI", |s| {
            s.keyframe_requests > before.keyframe_requests
        })
        .await;

    c.send("hangup", json!({"callId": "e1"})).await;
    expect_status(&mut c, "finish", "e1", "FINISH").await;
    let outcome = sipp.wait().await;
    outcome.assert_success();
    let invite = outcome.received().into_iter().find(|m| m.starts_with("INVITE ")).unwrap();
    assert!(invite.contains("a=rtcp-mux") && invite.contains("a=rtcp-fb:"), "{invite}");
    server.shutdown().await;
}
