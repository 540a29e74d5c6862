//! Streams end to end in process: the real server (WebSocket, REST API, media UDP port on
//! 127.0.0.1), a real recording backend, protocol clients, and str0m "browsers" that really
//! connect (ICE, DTLS-SRTP) and send or receive media.

use std::time::Duration;

use callgate_tests::streams::{self, expect_answer, play_msg};
use callgate_tests::webrtc::FakeBrowser;
use callgate_tests::{http_post, start_server, Backend, Client, Reply};
use serde_json::{json, Map, Value};

fn app_toml(url: &str) -> String {
    format!("[apps.backendApp]\nurl = \"{url}\"\n")
}

/// `defaultApp` without hooks (its URL is never called).
const NO_HOOKS: &str = "[apps.defaultApp]\nurl = \"http://localhost:1/apps/EchoApp\"\nmethods = \"none\"\n";

fn connection() -> Value {
    json!({"appKey": "backendApp", "mediaProviders": ["WebRTC"], "clientVersion": "2.0", "custom": {}})
}

/// The SDK's `publishStream` payload, with a `custom` field the backend must see.
fn publish_msg(id: &str, name: &str, sdp: &str) -> Value {
    let mut m = streams::publish_msg(id, name, sdp);
    m["custom"] = json!({"token": "t"});
    m
}

/// The stream's next status to the client (the client never gets `PENDING`).
async fn expect_status(c: &mut Client, id: &str) -> Map<String, Value> {
    streams::stream_status(c, id).await
}

/// Publishes `name` from a fresh session with a connected fake browser.
async fn start_publisher(server: &callgate_server::RunningServer, id: &str, name: &str) -> (Client, FakeBrowser) {
    let (mut c, _) = Client::establish(server, connection()).await;
    let b = FakeBrowser::publisher().await;
    c.send("publishStream", publish_msg(id, name, &b.offer)).await;
    b.accept(&expect_answer(&mut c, id).await);
    let st = expect_status(&mut c, id).await;
    assert_eq!(st["status"], "PUBLISHING", "{st:?}");
    (c, b)
}

async fn start_player(server: &callgate_server::RunningServer, id: &str, name: &str) -> (Client, FakeBrowser) {
    let (mut c, _) = Client::establish(server, connection()).await;
    let b = FakeBrowser::player().await;
    c.send("playStream", play_msg(id, name, &b.offer)).await;
    b.accept(&expect_answer(&mut c, id).await);
    let st = expect_status(&mut c, id).await;
    assert_eq!(st["status"], "PLAYING", "{st:?}");
    (c, b)
}

fn statuses(backend: &Backend, id: &str) -> Vec<String> {
    backend
        .requests_for("StreamStatusEvent")
        .iter()
        .filter(|r| r.body["mediaSessionId"] == id)
        .map(|r| format!("{}:{}", r.body["status"].as_str().unwrap_or(""), r.body["info"].as_str().unwrap_or("")))
        .collect()
}

#[tokio::test]
async fn publish_play_media_flows_then_unpublish_stops_players() {
    let backend = Backend::start().await;
    let server = start_server(&app_toml(&backend.url("hooks"))).await;
    let (mut pc, pb) = start_publisher(&server, "pub-1", "cam").await;
    let publish = backend.wait_for("publishStream", |b| b["mediaSessionId"] == "pub-1").await;
    assert_eq!(publish.body["name"], "cam");
    assert!(publish.body["sdp"].as_str().unwrap().starts_with("v=0"), "the backend gets the offer");
    assert_eq!(publish.body["custom"]["token"], "t");
    assert!(publish.body["sessionId"].as_str().is_some() && publish.body["nodeId"].as_str().is_some());

    let (mut vc, vb) = start_player(&server, "play-1", "cam").await;
    let (mut vc2, vb2) = start_player(&server, "play-2", "cam").await;
    // Media really flows publisher -> both players, and the publisher got a keyframe request.
    for b in [&vb, &vb2] {
        b.wait("audio and video frames", |s| s.audio_frames >= 10 && s.video_frames >= 10).await;
    }
    pb.wait("a keyframe request", |s| s.keyframe_requests >= 1).await;
    assert!(pb.stats().frames_sent > 0);

    // availableStream answers with strings.
    vc.send("availableStream", json!({"mediaSessionId": "av-1", "name": "cam"})).await;
    let av = vc.expect("availableStream").await;
    assert_eq!(
        av,
        *json!({"id":"av-1","mediaSessionId":"av-1","name":"cam","status":"true","info":"Available"})
            .as_object()
            .unwrap()
    );

    // A stream event reaches every player under its own id, and the backend hears of it.
    pc.send("sendStreamEvent", json!({"mediaSessionId": "pub-1", "type": "data", "payload": {"hello": "world"}})).await;
    for (c, id) in [(&mut vc, "play-1"), (&mut vc2, "play-2")] {
        let ev = c.expect("notifyStreamEvent").await;
        assert_eq!(
            (ev["mediaSessionId"].as_str(), ev["name"].as_str(), ev["type"].as_str()),
            (Some(id), Some("cam"), Some("data"))
        );
        assert_eq!(ev["payload"], json!({"hello": "world"}));
    }
    backend.wait_for("sendStreamEvent", |b| b["mediaSessionId"] == "pub-1" && b["type"] == "data").await;
    backend.wait_for("StreamEvent", |b| b["mediaSessionId"] == "play-1" && b["payload"]["hello"] == "world").await;
    backend.wait_for("StreamEvent", |b| b["mediaSessionId"] == "play-2").await;

    // The REST API sees all three.
    let (st, body) = http_post(&server, "/rest-api/stream/find_all", "", None).await;
    assert_eq!(st, 200, "{body}");
    let list: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(list.len(), 3);
    let (st, body) = http_post(&server, "/rest-api/stream/find", r#"{"name":"cam","published":true}"#, None).await;
    assert_eq!(st, 200);
    let list: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0]["mediaSessionId"].as_str(), list[0]["status"].as_str()), (Some("pub-1"), Some("PUBLISHING")));
    assert!(list[0].get("sdp").is_none());

    // Unpublish: the publisher gets UNPUBLISHED, every player STOPPED "Stopped by publisher stop".
    pc.send("unPublishStream", json!({"mediaSessionId":"pub-1","name":"cam","published":true,"status":"PUBLISHING"}))
        .await;
    let st = expect_status(&mut pc, "pub-1").await;
    assert_eq!(st["status"], "UNPUBLISHED");
    for (c, id) in [(&mut vc, "play-1"), (&mut vc2, "play-2")] {
        let st = expect_status(c, id).await;
        assert_eq!((st["status"].as_str(), st["info"].as_str()), (Some("STOPPED"), Some("Stopped by publisher stop")));
    }
    backend.wait_for("unPublishStream", |b| b["mediaSessionId"] == "pub-1").await;
    backend.wait_for("StreamStatusEvent", |b| b["mediaSessionId"] == "play-2" && b["status"] == "STOPPED").await;
    assert_eq!(statuses(&backend, "pub-1"), ["PENDING:", "PUBLISHING:", "UNPUBLISHED:Stopped by user"]);
    assert_eq!(statuses(&backend, "play-1"), ["PENDING:", "PLAYING:", "STOPPED:Stopped by publisher stop"]);
    let (st, _) = http_post(&server, "/rest-api/stream/find_all", "", None).await;
    assert_eq!(st, 404, "no stream is left");
    // Media stopped too: the players get nothing more.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = vb.stats().video_frames;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(vb.stats().video_frames, before);
    server.shutdown().await;
}

#[tokio::test]
async fn play_unknown_name_and_duplicate_publish_fail_with_the_spec_info() {
    let backend = Backend::start().await;
    let server = start_server(&app_toml(&backend.url("hooks"))).await;
    let (mut c, _) = Client::establish(&server, connection()).await;
    let b = FakeBrowser::player().await;
    c.send("playStream", play_msg("p-x", "nobody", &b.offer)).await;
    let st = expect_status(&mut c, "p-x").await;
    assert_eq!((st["status"].as_str(), st["info"].as_str()), (Some("FAILED"), Some("Stream not found")));
    assert!(!c.seen.iter().any(|(m, _)| m == "setRemoteSDP"), "no SDP for a failed play");
    backend.wait_for("StreamStatusEvent", |b| b["mediaSessionId"] == "p-x" && b["status"] == "FAILED").await;

    let (_pc, _pb) = start_publisher(&server, "pub-a", "cam").await;
    let b2 = FakeBrowser::publisher().await;
    c.send("publishStream", publish_msg("pub-b", "cam", &b2.offer)).await;
    let st = expect_status(&mut c, "pub-b").await;
    assert_eq!((st["status"].as_str(), st["info"].as_str()), (Some("FAILED"), Some("Stream name is already in use")));
    // The same id twice is refused too.
    c.send("publishStream", publish_msg("pub-a", "other", &b2.offer)).await;
    let st = expect_status(&mut c, "pub-a").await;
    assert_eq!(
        (st["status"].as_str(), st["info"].as_str()),
        (Some("FAILED"), Some("MediaSessionId is already in use"))
    );
    assert_eq!(server.shared.streams.len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn backend_denies_play_with_403_under_fail_and_is_ignored_under_log() {
    let backend = Backend::start().await;
    let server = start_server(&app_toml(&backend.url("hooks"))).await;
    let (_pc, _pb) = start_publisher(&server, "pub-1", "cam").await;
    backend.answer(|m, b| match m {
        "playStream" => Reply::json(403, json!({"status": 403, "reason": "Not subscribed"})),
        "connect" if b["custom"]["strict"] == true => {
            let mut a = b.clone();
            a["restClientConfig"] = json!({"playStream": {"restOnError": "FAIL"}});
            Reply::json(200, a)
        }
        _ => Reply::mirror(b),
    });
    // restOnError FAIL: refused with the backend's reason.
    let (mut c, _) = Client::establish(&server, json!({"appKey":"backendApp","custom":{"strict":true}})).await;
    let b = FakeBrowser::player().await;
    c.send("playStream", play_msg("deny-1", "cam", &b.offer)).await;
    let st = expect_status(&mut c, "deny-1").await;
    assert_eq!((st["status"].as_str(), st["info"].as_str()), (Some("FAILED"), Some("Not subscribed")));
    backend.wait_for("StreamStatusEvent", |b| b["mediaSessionId"] == "deny-1" && b["info"] == "Not subscribed").await;
    // Default LOG: the 403 is logged and the play goes on.
    let (mut c2, _) = Client::establish(&server, connection()).await;
    let b2 = FakeBrowser::player().await;
    c2.send("playStream", play_msg("log-1", "cam", &b2.offer)).await;
    b2.accept(&expect_answer(&mut c2, "log-1").await);
    assert_eq!(expect_status(&mut c2, "log-1").await["status"], "PLAYING");
    server.shutdown().await;
}

#[tokio::test]
async fn overwrite_lets_the_backend_rename_the_published_stream() {
    let backend = Backend::start().await;
    let server = start_server(&app_toml(&backend.url("hooks"))).await;
    backend.answer(|m, b| match m {
        "connect" => {
            let mut a = b.clone();
            a["restClientConfig"] = json!({"publishStream": {"restPolicy": "OVERWRITE", "restOverwrite": "name"}});
            Reply::json(200, a)
        }
        "publishStream" => Reply::json(200, json!({"name": "real-name", "mediaSessionId": "hijack"})),
        _ => Reply::mirror(b),
    });
    let (_pc, _pb) = start_publisher(&server, "pub-1", "alias").await;
    let (st, body) = http_post(&server, "/rest-api/stream/find", r#"{"mediaSessionId":"pub-1"}"#, None).await;
    assert_eq!(st, 200);
    let list: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(list[0]["name"], "real-name", "the stream is published under the backend's name");
    let (_vc, vb) = start_player(&server, "play-1", "real-name").await;
    vb.wait("video", |s| s.video_frames >= 3).await;
    server.shutdown().await;
}

#[tokio::test]
async fn publisher_disconnect_stops_players_and_reports_before_disconnected() {
    let backend = Backend::start().await;
    let server = start_server(&app_toml(&backend.url("hooks"))).await;
    let (pc, _pb) = start_publisher(&server, "pub-1", "cam").await;
    let (mut vc, _vb) = start_player(&server, "play-1", "cam").await;
    let pub_session = backend.wait_for("publishStream", |_| true).await.body["sessionId"].clone();
    drop(pc);
    let st = expect_status(&mut vc, "play-1").await;
    assert_eq!((st["status"].as_str(), st["info"].as_str()), (Some("STOPPED"), Some("Stopped by publisher stop")));
    backend.wait_for("ConnectionStatusEvent", |b| b["status"] == "DISCONNECTED" && b["sessionId"] == pub_session).await;
    let order: Vec<String> = backend
        .requests()
        .iter()
        .filter(|r| r.body["sessionId"] == pub_session)
        .map(|r| format!("{}:{}", r.method, r.body["status"].as_str().unwrap_or("")))
        .collect();
    let n = order.len();
    assert_eq!(order[n - 2..], ["StreamStatusEvent:UNPUBLISHED", "ConnectionStatusEvent:DISCONNECTED"], "{order:?}");
    assert_eq!(statuses(&backend, "pub-1").last().unwrap(), "UNPUBLISHED:Stopped by session disconnect");
    assert!(server.shared.streams.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn keep_alive_403_terminates_the_stream() {
    let backend = Backend::start().await;
    let extra = format!(
        "{}[media]\nkeep_alive_enabled = true\nkeep_alive_interval_ms = 200\n",
        app_toml(&backend.url("hooks"))
    );
    let server = start_server(&extra).await;
    let (mut pc, _pb) = start_publisher(&server, "pub-1", "cam").await;
    let (mut vc, _vb) = start_player(&server, "play-1", "cam").await;
    // While the backend answers 200, keep-alives come for both streams and nothing happens.
    backend.wait_for("StreamKeepAliveEvent", |b| b["mediaSessionId"] == "pub-1" && b["published"] == true).await;
    backend.wait_for("StreamKeepAliveEvent", |b| b["mediaSessionId"] == "play-1" && b["published"] == false).await;
    assert_eq!(server.shared.streams.len(), 2);
    backend.answer(|m, b| match m {
        "StreamKeepAliveEvent" if b["mediaSessionId"] == "play-1" => Reply::json(403, json!({})),
        _ => Reply::mirror(b),
    });
    let st = expect_status(&mut vc, "play-1").await;
    assert_eq!((st["status"].as_str(), st["info"].as_str()), (Some("STOPPED"), Some("Terminated by keep-alive")));
    // The publisher goes on.
    assert_eq!(server.shared.streams.len(), 1);
    backend.answer(|m, b| if m == "StreamKeepAliveEvent" { Reply::json(403, json!({})) } else { Reply::mirror(b) });
    let st = expect_status(&mut pc, "pub-1").await;
    assert_eq!((st["status"].as_str(), st["info"].as_str()), (Some("UNPUBLISHED"), Some("Terminated by keep-alive")));
    server.shutdown().await;
}

#[tokio::test]
async fn rest_terminate_filters() {
    let backend = Backend::start().await;
    let server = start_server(&app_toml(&backend.url("hooks"))).await;
    let (mut pc, _pb) = start_publisher(&server, "pub-1", "cam").await;
    let (mut v1, _b1) = start_player(&server, "play-1", "cam").await;
    let (mut v2, _b2) = start_player(&server, "play-2", "cam").await;
    let (mut p2, _pb2) = start_publisher(&server, "pub-2", "mic").await;
    assert_eq!(http_post(&server, "/rest-api/stream/terminate", r#"{"name":"nope"}"#, None).await.0, 404);
    assert_eq!(http_post(&server, "/rest-api/stream/terminate", "[1]", None).await.0, 400);
    // {mediaSessionIds:[...]}: just that player.
    assert_eq!(
        http_post(&server, "/rest-api/stream/terminate", r#"{"mediaSessionIds":["play-1"]}"#, None).await.0,
        200
    );
    let st = expect_status(&mut v1, "play-1").await;
    assert_eq!((st["status"].as_str(), st["info"].as_str()), (Some("STOPPED"), Some("Stopped by rest /terminate")));
    assert_eq!(server.shared.streams.len(), 3);
    // {name, published:false}: the players of cam only.
    // (WCS examples pass booleans as strings; both are accepted.)
    assert_eq!(
        http_post(&server, "/rest-api/stream/terminate", r#"{"name":"cam","published":"false"}"#, None).await.0,
        200
    );
    assert_eq!(expect_status(&mut v2, "play-2").await["info"], "Stopped by rest /terminate");
    assert_eq!(server.shared.streams.len(), 2);
    // {}: everything.
    assert_eq!(http_post(&server, "/rest-api/stream/terminate", "{}", None).await.0, 200);
    for (c, id) in [(&mut pc, "pub-1"), (&mut p2, "pub-2")] {
        let st = expect_status(c, id).await;
        assert_eq!(
            (st["status"].as_str(), st["info"].as_str()),
            (Some("UNPUBLISHED"), Some("Stopped by rest /terminate"))
        );
    }
    assert!(server.shared.streams.is_empty());
    assert_eq!(http_post(&server, "/rest-api/stream/find_all", "", None).await.0, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn a_browser_that_never_connects_fails_with_ice_timeout() {
    let backend = Backend::start().await;
    let server =
        start_server(&format!("{NO_HOOKS}{}[media]\nconnect_timeout_ms = 400\n", app_toml(&backend.url("hooks"))))
            .await;
    let (mut c, _) = Client::establish(&server, json!({})).await;
    let b = FakeBrowser::publisher().await; // its answer is never applied: no ICE checks
    c.send("publishStream", publish_msg("pub-1", "cam", &b.offer)).await;
    expect_answer(&mut c, "pub-1").await;
    let st = expect_status(&mut c, "pub-1").await;
    assert_eq!((st["status"].as_str(), st["info"].as_str()), (Some("FAILED"), Some("Failed by ICE timeout")));
    assert!(server.shared.streams.is_empty());
    // The name is free again.
    let (_pc, _pb) = start_publisher(&server, "pub-2", "cam").await;
    server.shutdown().await;
}

#[tokio::test]
async fn refusals_without_media_hls_rtsp_snapshot_bad_offer_and_foreign_stop() {
    let backend = Backend::start().await;
    let server = start_server(&format!("{NO_HOOKS}{}", app_toml(&backend.url("hooks")))).await;
    let (mut c, _) = Client::establish(&server, json!({})).await;
    // playHLS over the WebSocket: HLS is fetched over HTTP (tests/tests/hls.rs), the info says where.
    c.send("playHLS", json!({"mediaSessionId":"h1","name":"cam"})).await;
    let st = c.expect("notifyStreamStatusEvent").await;
    assert_eq!((st["status"].as_str(), st["info"].as_str()), (Some("FAILED"), Some("HLS is not played over the WebSocket: fetch http://<server>:<http port>/<stream>/index.m3u8 with an HLS player")));
    for (msg, obj) in [
        ("playRTSP", json!({"mediaSessionId":"h2","name":"rtsp://cam/1"})),
        ("playStream", play_msg("h3", "rtmp://10.0.0.1/live", "v=0")),
    ] {
        c.send(msg, obj).await;
        let st = c.expect("notifyStreamStatusEvent").await;
        assert_eq!(st["status"], "FAILED", "{msg}: {st:?}");
        assert!(st["info"].as_str().unwrap().contains("not supported"), "{msg}: {st:?}");
    }
    // An rtsp:// name is pulled (tests/tests/rtsp.rs), through the SSRF guard.
    c.send("playStream", play_msg("h4", "rtsp://10.0.0.1/live", "v=0")).await;
    let st = c.expect("notifyStreamStatusEvent").await;
    assert_eq!(st["status"], "FAILED", "{st:?}");
    assert!(
        st["info"].as_str().unwrap().starts_with("RTSP source address refused: 10.0.0.1 is a private address"),
        "{st:?}"
    );
    c.send("snapshot", json!({"mediaSessionId":"s1","name":"cam"})).await;
    let ev = c.expect("notifyStreamEvent").await;
    assert_eq!((ev["mediaSessionId"].as_str(), ev["type"].as_str()), (Some("s1"), Some("snapshotFailed")));
    c.send("publishStream", publish_msg("bad", "cam", "this is not sdp")).await;
    let st = expect_status(&mut c, "bad").await;
    assert_eq!((st["status"].as_str(), st["info"].as_str()), (Some("FAILED"), Some("Failed by error")));
    c.send("publishStream", json!({"name":"cam","sdp":"v=0"})).await;
    assert_eq!(c.expect("notifyStreamStatusEvent").await["info"], "MediaSessionId is null");
    // Another session cannot stop this session's stream.
    let (_pc, _pb) = start_publisher(&server, "pub-1", "cam").await;
    c.send("unPublishStream", json!({"mediaSessionId":"pub-1","name":"cam"})).await;
    let st = expect_status(&mut c, "pub-1").await;
    assert_eq!((st["status"].as_str(), st["info"].as_str()), (Some("UNPUBLISHED"), Some("Stream not found")));
    assert_eq!(server.shared.streams.len(), 1, "the owner's stream is untouched");
    server.shutdown().await;
}
