//! A SIP call's audio as a stream: `toStream` on `/rest-api/call/startup`. A real sipp callee
//! answers with PCMU and plays a pcap of a tone (`sip_fixtures::sipp_talking_uas`); str0m
//! players really connect (ICE, DTLS-SRTP) and receive the call's audio; the recording backend
//! sees the stream's and the call's hooks.

use std::time::Duration;

use callgate_tests::peers::SippProcess;
use callgate_tests::sip_fixtures::{hook_statuses, sip_server_toml, sipp_talking_uas, sipp_uas};
use callgate_tests::streams::{play_msg, stream_status};
use callgate_tests::webrtc::FakeBrowser;
use callgate_tests::{http_post, start_server, Backend, Client};
use serde_json::{json, Value};

fn startup(call_id: &str, sipp: &SippProcess, to_stream: &str) -> Value {
    json!({"callId": call_id, "callee": "3001", "hasAudio": "true", "hasVideo": "false",
           "sipLogin": "3000", "sipDomain": "127.0.0.1", "sipOutboundProxy": "127.0.0.1",
           "sipPort": sipp.local_addr().port().to_string(), "appKey": "backendApp",
           "toStream": to_stream})
}

async fn post(server: &callgate_server::RunningServer, path: &str, body: &Value) -> (u16, String) {
    http_post(server, &format!("/rest-api/{path}"), &body.to_string(), None).await
}

fn connection() -> Value {
    json!({"appKey": "backendApp", "mediaProviders": ["WebRTC"], "clientVersion": "2.0", "custom": {}})
}

/// The backend's StreamStatusEvents of stream `id`, in order.
fn stream_statuses(backend: &Backend, id: &str) -> Vec<String> {
    hook_statuses(backend, "StreamStatusEvent", "mediaSessionId", id)
}

async fn wait_stream(backend: &Backend, name: &str, status: &str) -> Value {
    backend.wait_for("StreamStatusEvent", |b| b["name"] == name && b["status"] == status).await.body
}

/// A session that plays `name` with `browser`; returns it once the first status came.
async fn play(
    server: &callgate_server::RunningServer,
    id: &str,
    name: &str,
    browser: &FakeBrowser,
) -> (Client, serde_json::Map<String, Value>) {
    let (mut c, _) = Client::establish(server, connection()).await;
    c.send("playStream", play_msg(id, name, &browser.offer)).await;
    loop {
        let (m, data) = c.next().await.expect("connection open");
        if m == "setRemoteSDP" && data[0] == id {
            browser.accept(data[1].as_str().expect("an answer"));
            break;
        }
        if m == "notifyStreamStatusEvent" && data[0]["mediaSessionId"] == id {
            let st = data[0].as_object().cloned().unwrap_or_default();
            return (c, st);
        }
    }
    let st = stream_status(&mut c, id).await;
    (c, st)
}

#[tokio::test]
async fn a_rest_calls_audio_is_a_stream_that_players_hear_until_the_call_ends() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp = sipp_talking_uas(20);
    let (status, text) = post(&server, "call/startup", &startup("t1", &sipp, "sipcall")).await;
    assert_eq!((status, text.as_str()), (200, ""));
    backend.wait_for("CallStatusEvent", |b| b["callId"] == "t1" && b["status"] == "ESTABLISHED").await;
    let published = wait_stream(&backend, "sipcall", "PUBLISHING").await;
    assert_eq!(published["mediaSessionId"], "t1", "the stream's id is the callId");
    assert_eq!(published["callId"], "t1");
    assert_eq!(published["sessionId"], "rest-api:t1", "owned by the call's party");
    assert_eq!(published["appKey"], "backendApp");
    assert_eq!((published["published"].as_bool(), published["hasAudio"].as_bool()), (Some(true), Some(true)));
    assert_eq!(published["hasVideo"], false);

    // Listed like any published stream.
    let (status, list) = post(&server, "stream/find", &json!({"name": "sipcall"})).await;
    assert_eq!(status, 200, "{list}");
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!((list[0]["status"].as_str(), list[0]["published"].as_bool()), (Some("PUBLISHING"), Some(true)));

    // A browser that takes PCMU hears the call (the tone sipp plays), through the playStream hook.
    let b = FakeBrowser::player_with_g711().await;
    let (mut c, st) = play(&server, "p1", "sipcall", &b).await;
    assert_eq!(st["status"], "PLAYING", "{st:?}");
    let stats = b.wait("the call's audio", |s| s.audio_frames >= 50).await;
    assert_eq!(stats.video_frames, 0);
    let hook = backend.wait_for("playStream", |b| b["mediaSessionId"] == "p1").await;
    assert_eq!(hook.body["name"], "sipcall");

    // A browser that offers no G.711 would hear nothing: refused with a clear info.
    let opus_only = FakeBrowser::player().await;
    let (_c2, st) = play(&server, "p2", "sipcall", &opus_only).await;
    assert_eq!((st["status"].as_str(), st["info"].as_str()), (Some("FAILED"), Some("No common codecs")), "{st:?}");

    // The name is taken while the call lives: a second call asking for it gets 409 and is not placed.
    let other = sipp_uas("uas_answer_local_bye.xml");
    let (status, text) = post(&server, "call/startup", &startup("t2", &other, "sipcall")).await;
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("Stream name is already in use"), "{text}");
    assert_eq!(server.shared.calls.calls(), 1, "the refused call was not recorded");
    drop(other);

    // The call ends: the stream with it; its player is stopped.
    let (status, _) = post(&server, "call/terminate", &json!({"callId": "t1"})).await;
    assert_eq!(status, 200);
    let st = stream_status(&mut c, "p1").await;
    assert_eq!((st["status"].as_str(), st["info"].as_str()), (Some("STOPPED"), Some("Stopped by publisher stop")));
    let ended = wait_stream(&backend, "sipcall", "UNPUBLISHED").await;
    assert_eq!(ended["info"], "Stopped by call end");
    assert_eq!(stream_statuses(&backend, "t1"), ["PENDING", "PUBLISHING", "UNPUBLISHED"]);
    let (status, _) = post(&server, "stream/find", &json!({"name": "sipcall"})).await;
    assert_eq!(status, 404, "the stream is gone");
    backend.wait_for("CallStatusEvent", |b| b["callId"] == "t1" && b["status"] == "FINISH").await;
    let outcome = sipp.wait().await;
    outcome.assert_success();
    assert!(outcome.received().iter().any(|m| m.starts_with("BYE ")), "BYE at sipp");

    // The name is free again for the next call.
    let again = sipp_talking_uas(5);
    let (status, text) = post(&server, "call/startup", &startup("t3", &again, "sipcall")).await;
    assert_eq!((status, text.as_str()), (200, ""));
    backend.wait_for("StreamStatusEvent", |b| b["mediaSessionId"] == "t3" && b["status"] == "PUBLISHING").await;
    post(&server, "call/terminate", &json!({"callId": "t3"})).await;
    backend.wait_for("StreamStatusEvent", |b| b["mediaSessionId"] == "t3" && b["status"] == "UNPUBLISHED").await;
}

#[tokio::test]
async fn a_failed_call_ends_its_stream_and_bad_requests_are_refused() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    // The callee refuses: the stream that was published for the call ends with it.
    let busy = sipp_uas("uas_reject_486.xml");
    let (status, _) = post(&server, "call/startup", &startup("f1", &busy, "busy")).await;
    assert_eq!(status, 200);
    backend.wait_for("CallStatusEvent", |b| b["callId"] == "f1" && b["status"] == "FAILED").await;
    let ended = wait_stream(&backend, "busy", "UNPUBLISHED").await;
    assert_eq!(ended["info"], "Stopped by call end");
    busy.wait().await.assert_success();

    let base = startup("x1", &sipp_uas("uas_answer_local_bye.xml"), "s");
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let cases = [
        (with("toStream", json!("rtsp://10.0.0.1/cam")), "toStream must be a stream name"),
        (with("rtmpUrl", json!("rtmp://127.0.0.1/live")), "G.711"),
        (with("rtmpStream", json!("s")), "rtmpUrl and rtmpStream are not supported"),
    ];
    for (body, want) in cases {
        let (status, text) = post(&server, "call/startup", &body).await;
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains(want), "{body}: {text:?} should say {want:?}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.shared.calls.calls(), 0);
    assert_eq!(server.shared.streams.len(), 0);
}
