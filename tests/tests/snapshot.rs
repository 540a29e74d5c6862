//! `stream.snapshot()` end to end in process: the real server, a real backend, fake browsers
//! that publish over real ICE/DTLS/SRTP, one of them with a real VP8 keyframe
//! (`FakeBrowser::publisher_real_vp8`). The client sends `snapshot {name, mediaSessionId}` and
//! gets `notifyStreamEvent` `snapshotCompleted {snapshot: <base64 PNG>}` or `snapshotFailed
//! {info}` under the `mediaSessionId` it sent.

use std::io::Cursor;
use std::time::{Duration, Instant};

use base64::Engine as _;
use callgate_tests::streams::publish_msg;
use callgate_tests::webrtc::FakeBrowser;
use callgate_tests::{start_server, Backend, Client, Reply};
use serde_json::{json, Map, Value};

fn config(backend: &Backend) -> String {
    format!(
        "[apps.defaultApp]\nurl = \"http://localhost:1/apps/EchoApp\"\nmethods = \"none\"\n\
         [apps.backendApp]\nurl = \"{}\"\n",
        backend.url("hooks")
    )
}

fn connection(custom: Value) -> Value {
    json!({"appKey": "backendApp", "mediaProviders": ["WebRTC"], "clientVersion": "2.0", "custom": custom})
}

async fn publish(server: &callgate_server::RunningServer, b: &FakeBrowser, id: &str, name: &str) -> Client {
    let (mut c, _) = Client::establish(server, connection(json!({}))).await;
    c.send("publishStream", publish_msg(id, name, &b.offer)).await;
    loop {
        let (m, data) = c.next().await.expect("open");
        if m == "setRemoteSDP" {
            b.accept(data[1].as_str().unwrap());
        }
        if m == "notifyStreamStatusEvent" {
            assert_eq!(data[0]["status"], "PUBLISHING", "{data:?}");
            return c;
        }
    }
}

/// Sends `snapshot` and returns the answer's (type, payload), checking its ids.
async fn snapshot(c: &mut Client, id: &str, name: &str) -> (String, Map<String, Value>) {
    c.send("snapshot", json!({"name": name, "mediaSessionId": id})).await;
    loop {
        let ev = c.expect("notifyStreamEvent").await;
        if ev["mediaSessionId"] != id {
            continue;
        }
        assert_eq!(ev["name"], name, "{ev:?}");
        let payload = ev["payload"].as_object().cloned().unwrap_or_default();
        return (ev["type"].as_str().unwrap_or_default().to_string(), payload);
    }
}

/// The PNG's size and its pixels (8-bit RGB).
fn decode_png(b64: &str) -> (u32, u32, Vec<u8>) {
    let png = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let mut r = png::Decoder::new(Cursor::new(png)).read_info().expect("a PNG");
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).expect("its pixels");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[tokio::test]
async fn snapshot_of_a_published_vp8_stream_is_a_png_of_its_keyframe() {
    let backend = Backend::start().await;
    let server = start_server(&config(&backend)).await;
    let pb = FakeBrowser::publisher_real_vp8().await;
    let mut publisher = publish(&server, &pb, "pub-1", "cam").await;

    // A never-played stream object of another session (the SDK's `session.createStream({name})
    // .snapshot()`).
    let (mut other, _) = Client::establish(&server, connection(json!({}))).await;
    let requests_before = pb.stats().keyframe_requests;
    let t = Instant::now();
    let (kind, payload) = snapshot(&mut other, "new-1", "cam").await;
    assert_eq!(kind, "snapshotCompleted", "{payload:?}");
    let (w, h, rgb) = decode_png(payload["snapshot"].as_str().expect("snapshot"));
    assert_eq!((w, h), (320, 240));
    // The keyframe's picture (colour bars: white on the left, black on the right).
    let luma = |x: u32, y: u32| {
        let i = ((y * w + x) * 3) as usize;
        (u32::from(rgb[i]) + u32::from(rgb[i + 1]) + u32::from(rgb[i + 2])) / 3
    };
    assert!(luma(10, 80) > 200 && luma(w - 10, 80) < 50, "{} {}", luma(10, 80), luma(w - 10, 80));
    // It was the snapshot's keyframe request that brought the keyframe (this fake browser sends
    // keyframes only first and when asked).
    assert!(pb.stats().keyframe_requests > requests_before, "{:?}", pb.stats());
    println!("snapshot answered in {:?}", t.elapsed());

    // The publisher itself, under its own id, at once: its keyframe request falls within the
    // media core's throttle interval of the last one (300 ms) and must be repeated, not dropped.
    let (kind, payload) = snapshot(&mut publisher, "pub-1", "cam").await;
    assert_eq!(kind, "snapshotCompleted", "{payload:?}");
    assert_eq!(decode_png(payload["snapshot"].as_str().unwrap()).0, 320);
    let (kind, payload) = snapshot(&mut other, "new-2", "cam").await;
    assert_eq!(kind, "snapshotCompleted", "{payload:?}");

    // The `snapshot` hook (a direct invocation) reached the backend with the client's fields.
    let hook = backend.wait_for("snapshot", |b| b["mediaSessionId"] == "new-1").await;
    assert_eq!(hook.body["name"], "cam");
    assert_eq!(hook.body["appKey"], "backendApp");
    let schema = callgate_hooks::schema::request_schema(callgate_hooks::HookMethod::Snapshot);
    assert!(jsonschema::is_valid(&schema, &hook.body), "the body matches its JSON Schema: {}", hook.body);
}

#[tokio::test]
async fn snapshot_fails_for_an_unknown_name_a_refusing_backend_and_an_h264_publisher() {
    let backend = Backend::start().await;
    let server = start_server(&config(&backend)).await;
    let (mut c, _) = Client::establish(&server, connection(json!({}))).await;
    let (kind, payload) = snapshot(&mut c, "s1", "nobody").await;
    assert_eq!((kind.as_str(), payload["info"].as_str()), ("snapshotFailed", Some("Stream not found")));

    // H.264 only: there is no H.264 decoder, said at the first video packet.
    let pb = FakeBrowser::publisher_h264().await;
    let _publisher = publish(&server, &pb, "pub-h264", "h264cam").await;
    let (kind, payload) = snapshot(&mut c, "s2", "h264cam").await;
    assert_eq!(kind, "snapshotFailed");
    assert_eq!(
        payload["info"].as_str(),
        Some("Snapshot failed: no decoder for H264 video (snapshots decode VP8 only)"),
        "{payload:?}"
    );

    // The backend refuses the hook (restOnError FAIL): its reason, and no snapshot is taken.
    backend.answer(|m, b| match m {
        "snapshot" => Reply::json(403, json!({"status": 403, "reason": "No snapshots for you"})),
        "connect" => {
            let mut a = b.clone();
            a["restClientConfig"] = json!({"snapshot": {"restOnError": "FAIL"}});
            Reply::json(200, a)
        }
        _ => Reply::mirror(b),
    });
    let (mut strict, _) = Client::establish(&server, connection(json!({}))).await;
    let (kind, payload) = snapshot(&mut strict, "s3", "h264cam").await;
    assert_eq!((kind.as_str(), payload["info"].as_str()), ("snapshotFailed", Some("No snapshots for you")));
}

#[tokio::test]
async fn snapshot_without_a_decodable_keyframe_fails_after_the_wait_and_at_most_16_wait_at_once() {
    let backend = Backend::start().await;
    let server = start_server(&config(&backend)).await;
    // VP8 whose frames are filler: no keyframe ever completes.
    let pb = FakeBrowser::publisher().await;
    let _publisher = publish(&server, &pb, "pub-1", "filler").await;
    // 17 snapshots at once from two sessions (of defaultApp: no hook, and each session stays
    // below its bound of direct invocations in flight): 16 wait, one is refused at once.
    let (mut a, _) = Client::establish(&server, json!({})).await;
    let (mut b, _) = Client::establish(&server, json!({})).await;
    let t = Instant::now();
    for i in 0..17 {
        let c = if i < 8 { &mut a } else { &mut b };
        c.send("snapshot", json!({"name": "filler", "mediaSessionId": format!("s{i}")})).await;
    }
    let mut infos = Vec::new();
    for (c, n) in [(&mut a, 8), (&mut b, 9)] {
        for _ in 0..n {
            let ev = c.expect("notifyStreamEvent").await;
            assert_eq!(ev["type"], "snapshotFailed", "{ev:?}");
            infos.push(ev["payload"]["info"].as_str().unwrap().to_string());
        }
    }
    let waited = infos.iter().filter(|i| *i == "Snapshot failed: no keyframe arrived within 5000 ms").count();
    let busy = infos.iter().filter(|i| *i == "Snapshot failed: too many snapshots in progress").count();
    assert_eq!((waited, busy), (16, 1), "{infos:?}");
    assert!(t.elapsed() >= Duration::from_millis(4900), "{:?}", t.elapsed());
    // The stream goes on, and the next snapshot may wait again.
    let sent = pb.stats().frames_sent;
    pb.wait("more frames sent", |s| s.frames_sent > sent + 5).await;
    a.send("snapshot", json!({"name": "filler", "mediaSessionId": "again"})).await;
    let ev = a.expect("notifyStreamEvent").await;
    assert_eq!(ev["payload"]["info"], "Snapshot failed: no keyframe arrived within 5000 ms", "{ev:?}");
}

#[tokio::test]
async fn rest_stream_snapshot_answers_the_png_or_404_400_409() {
    let backend = Backend::start().await;
    let server = start_server(&config(&backend)).await;
    let pb = FakeBrowser::publisher_real_vp8().await;
    let _publisher = publish(&server, &pb, "pub-r", "rest-cam").await;
    let post = |body: String| {
        let server = &server;
        async move { callgate_tests::http_post(server, "/rest-api/stream/snapshot", &body, None).await }
    };
    let (status, body) = post(json!({"streamName": "rest-cam"}).to_string()).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(decode_png(answer["data"].as_str().expect("data")).0, 320, "{answer}");
    let (status, body) = post(json!({"streamName": "nobody"}).to_string()).await;
    assert_eq!((status, body.as_str()), (404, "Stream not found"));
    assert_eq!(post("{}".into()).await.0, 400);
    assert_eq!(post("[1]".into()).await.0, 400);
    // A published stream with no decodable video (the fake publisher's filler frames): 409 with why.
    let plain = FakeBrowser::publisher().await;
    let _c = publish(&server, &plain, "pub-p", "plain").await;
    let (status, body) = post(json!({"streamName": "plain"}).to_string()).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.starts_with("Snapshot failed"), "{body}");
    // The backend asked: no `snapshot` hook.
    assert!(backend.requests_for("snapshot").is_empty());
    server.shutdown().await;
}
