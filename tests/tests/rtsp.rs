//! `playStream` of an `rtsp://` name against a real RTSP server: Debian's GStreamer RTSP server
//! (`tests/rtsp/rtsp_server.py`, a live x264 test picture on 127.0.0.1), the real callgate
//! server in process, a recording backend, protocol clients and str0m players that really
//! connect (ICE, DTLS-SRTP) and decode H.264 frames (str0m depacketizes them).

use std::sync::Arc;
use std::time::Duration;

use callgate_tests::rtsp_camera::Camera;
use callgate_tests::streams::{play_msg, stream_status};
use callgate_tests::webrtc::FakeBrowser;
use callgate_tests::{start_server, Backend, Client, Reply};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};

/// Cameras on loopback are allowed (they are private addresses: refused by default).
fn server_toml(hooks: &str) -> String {
    format!("[apps.backendApp]\nurl = \"{hooks}\"\n[security]\nallowed_private_ranges = [\"127.0.0.0/8\"]\n")
}

fn connection() -> Value {
    json!({"appKey": "backendApp", "mediaProviders": ["WebRTC"], "clientVersion": "2.0", "custom": {}})
}

/// Plays `name` from a fresh session; returns the client, its browser and the first status.
async fn play(
    server: &callgate_server::RunningServer,
    id: &str,
    name: &str,
) -> (Client, FakeBrowser, Map<String, Value>) {
    let (mut c, _) = Client::establish(server, connection()).await;
    let b = FakeBrowser::player().await;
    c.send("playStream", play_msg(id, name, &b.offer)).await;
    let st = loop {
        let (m, data) = c.next().await.expect("connection open");
        if m == "setRemoteSDP" && data[0] == id {
            b.accept(data[1].as_str().expect("an answer"));
            break stream_status(&mut c, id).await;
        }
        if m == "notifyStreamStatusEvent" && data[0]["mediaSessionId"] == id && data[0]["status"] != "PENDING" {
            break data[0].as_object().expect("a status").clone();
        }
    };
    (c, b, st)
}

async fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_players_share_one_pull_with_credentials_masked_and_it_stops_when_both_leave() {
    let camera = Camera::start(Some(("viewer", "s3cret"))).await;
    let backend = Backend::start().await;
    let server = start_server(&server_toml(&backend.url("hooks"))).await;
    let url = camera.url("viewer:s3cret@");
    let masked = camera.url("***@");

    let (mut c1, b1, st) = play(&server, "rtsp-1", &url).await;
    assert_eq!(st["status"], "PLAYING", "{st:?}");
    assert_eq!(st["name"], masked.as_str(), "the client sees the URL masked");
    let (mut c2, b2, st) = play(&server, "rtsp-2", &url).await;
    assert_eq!(st["status"], "PLAYING", "{st:?}");

    // Both decode H.264 frames (str0m's depacketizer hands them out whole), from one pull.
    for b in [&b1, &b2] {
        b.wait("H.264 video frames from the camera", |s| s.video_frames >= 15).await;
    }
    assert_eq!(camera.count("PLAY"), 1, "one RTSP session for both players: {:?}", camera.events());
    assert_eq!(server.shared.streams.pulls(), 1);

    // The backend heard playRTSP (not playStream), with the credentials masked, and the statuses.
    let hooks = backend.requests_for("playRTSP");
    assert_eq!(hooks.len(), 2, "one playRTSP per player");
    assert!(hooks.iter().all(|h| h.body["name"] == masked.as_str()), "{:?}", hooks[0].body);
    assert!(backend.requests_for("playStream").is_empty());
    backend.wait_for("StreamStatusEvent", |b| b["mediaSessionId"] == "rtsp-2" && b["status"] == "PLAYING").await;
    let all = serde_json::to_string(&backend.requests().iter().map(|r| &r.body).collect::<Vec<_>>()).unwrap();
    assert!(!all.contains("s3cret"), "the password never reaches the backend");

    // The first player leaves: the pull goes on for the second.
    // The SDK's stopStream carries the name as the stream was created: with the password.
    c1.send("stopStream", json!({"mediaSessionId": "rtsp-1", "name": url})).await;
    let st = stream_status(&mut c1, "rtsp-1").await;
    assert_eq!(st["status"], "STOPPED");
    let before = b2.stats().video_frames;
    b2.wait("more frames after the first player left", |s| s.video_frames >= before + 10).await;
    assert_eq!(server.shared.streams.pulls(), 1);
    assert_eq!(camera.count("TEARDOWN") + camera.count("CLOSED"), 0);

    // The last one leaves: the pull stops (the camera sees its session end).
    c2.send("stopStream", json!({"mediaSessionId": "rtsp-2", "name": url})).await;
    let st = stream_status(&mut c2, "rtsp-2").await;
    assert_eq!(st["status"], "STOPPED");
    wait_until("the pull is gone", || server.shared.streams.pulls() == 0).await;
    camera.wait_for("CLOSED").await;
    assert_eq!(camera.count("PLAY"), 1);
    let stop = backend.wait_for("stopStream", |b| b["mediaSessionId"] == "rtsp-2").await;
    assert_eq!(stop.body["name"], masked.as_str());
    backend.wait_for("StreamStatusEvent", |b| b["mediaSessionId"] == "rtsp-2" && b["status"] == "STOPPED").await;
    let all = serde_json::to_string(&backend.requests().iter().map(|r| &r.body).collect::<Vec<_>>()).unwrap();
    assert!(!all.contains("s3cret"), "the password never reaches the backend, stops included");
    server.shutdown().await;
}

#[tokio::test]
async fn a_refused_play_rtsp_hook_fails_the_player_with_the_backends_reason() {
    let camera = Camera::start(None).await;
    let backend = Backend::start().await;
    // A refusal counts where the session's restClientConfig says so (restOnError FAIL).
    backend.answer(|m, b| match m {
        "connect" => {
            let mut a = b.clone();
            a["restClientConfig"] = json!({"playRTSP": {"restOnError": "FAIL"}});
            Reply::json(200, a)
        }
        "playRTSP" => Reply::json(403, json!({"status": 403, "reason": "No cameras for you"})),
        _ => Reply::mirror(b),
    });
    let server = start_server(&server_toml(&backend.url("hooks"))).await;
    let (_c, _b, st) = play(&server, "rtsp-1", &camera.url("")).await;
    assert_eq!((st["status"].as_str(), st["info"].as_str()), (Some("FAILED"), Some("No cameras for you")));
    backend.wait_for("StreamStatusEvent", |b| b["mediaSessionId"] == "rtsp-1" && b["status"] == "FAILED").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(camera.count("CONNECTED"), 0, "the camera is never reached");
    assert_eq!(server.shared.streams.pulls(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_credentials_no_usable_codec_an_unreachable_host_and_a_refused_address_fail_clearly() {
    let camera = Camera::start(Some(("viewer", "s3cret"))).await;
    let backend = Backend::start().await;
    let server = start_server(&server_toml(&backend.url("hooks"))).await;

    let (_c, _b, st) = play(&server, "bad-pw", &camera.url("viewer:wrong@")).await;
    assert_eq!(
        (st["status"].as_str(), st["info"].as_str()),
        (Some("FAILED"), Some("RTSP source refused the credentials (401 Unauthorized)")),
        "{st:?}"
    );
    assert_eq!(st["name"], camera.url("***@").as_str());
    let (_c, _b, st) = play(&server, "no-creds", &camera.url("")).await;
    assert_eq!(st["info"], "RTSP source refused the credentials (401 Unauthorized)", "{st:?}");

    // A camera with nothing usable (Opus audio only: retina has no Opus depacketizer).
    let opus = Camera::start_with(None, &["--audio", "opus", "--no-video"]).await;
    let (_c, _b, st) = play(&server, "opus-only", &opus.url("")).await;
    assert_eq!(
        (st["status"].as_str(), st["info"].as_str()),
        (
            Some("FAILED"),
            Some("RTSP source has no supported codec (H.264 video, PCMU/PCMA or AAC-LC audio); it offers audio/opus")
        ),
        "{st:?}"
    );
    assert_eq!(opus.count("PLAY"), 0, "nothing was set up");
    // A path the camera does not serve.
    let (_c, _b, st) = play(&server, "no-path", &format!("rtsp://127.0.0.1:{}/nope", opus.port)).await;
    assert_eq!(st["info"], "RTSP source answered 404", "{st:?}");

    let closed = callgate_tests::closed_port().await;
    let (_c, _b, st) = play(&server, "gone", &format!("rtsp://127.0.0.1:{closed}/test")).await;
    assert_eq!(
        (st["status"].as_str(), st["info"].as_str()),
        (Some("FAILED"), Some("RTSP source unreachable")),
        "{st:?}"
    );
    backend.wait_for("StreamStatusEvent", |b| b["mediaSessionId"] == "gone" && b["status"] == "FAILED").await;
    assert_eq!(server.shared.streams.pulls(), 0, "failed pulls are gone");
    assert_eq!(camera.count("PLAY"), 0);
    server.shutdown().await;

    // Without [security] allowed_private_ranges a loopback camera is refused (SSRF guard).
    let server = start_server(&format!("[apps.backendApp]\nurl = \"{}\"\n", backend.url("hooks"))).await;
    let (_c, _b, st) = play(&server, "private", &camera.url("viewer:s3cret@")).await;
    assert_eq!(st["status"], "FAILED");
    let info = st["info"].as_str().unwrap_or_default();
    assert!(info.starts_with("RTSP source address refused: 127.0.0.1 is a loopback address"), "{info}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_player_that_joins_between_keyframes_starts_with_the_cached_one() {
    // One IDR every 10 s: without the cached keyframe a late player would get P-frames only.
    let camera = Camera::start_with(None, &["--keyint", "150"]).await;
    let backend = Backend::start().await;
    let server = start_server(&server_toml(&backend.url("hooks"))).await;
    let url = camera.url("");
    let (_c1, b1, st) = play(&server, "early", &url).await;
    assert_eq!(st["status"], "PLAYING", "{st:?}");
    let s1 = b1.wait("frames", |s| s.video_frames >= 5).await;
    assert!(s1.first_video_nal_types.contains(&5), "the first frame is an IDR: {:?}", s1.first_video_nal_types);
    // Well past the IDR: the camera is sending P-frames now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_c2, b2, st) = play(&server, "late", &url).await;
    assert_eq!(st["status"], "PLAYING", "{st:?}");
    let s2 = b2.wait("frames", |s| s.video_frames >= 3).await;
    let types = &s2.first_video_nal_types;
    assert!(types.contains(&7) && types.contains(&8) && types.contains(&5), "SPS, PPS and IDR first: {types:?}");
    assert_eq!(camera.count("PLAY"), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_camera_that_drops_is_reconnected_and_players_go_on() {
    let camera = Camera::start(None).await;
    let port = camera.port.to_string();
    let backend = Backend::start().await;
    let server = start_server(&server_toml(&backend.url("hooks"))).await;
    let (_c, b, st) = play(&server, "cam", &camera.url("")).await;
    assert_eq!(st["status"], "PLAYING", "{st:?}");
    b.wait("frames", |s| s.video_frames >= 5).await;
    drop(camera); // killed: its TCP connection goes
    let camera = Camera::start_with(None, &["--port", &port]).await;
    assert_eq!(camera.port.to_string(), port);
    camera.wait_for("PLAY").await;
    let before = b.stats().video_frames;
    b.wait("frames from the camera that came back", |s| s.video_frames >= before + 10).await;
    assert_eq!(server.shared.streams.len(), 1, "the player is still there");
    assert_eq!(server.shared.streams.pulls(), 1);
    let failed = backend
        .requests_for("StreamStatusEvent")
        .into_iter()
        .filter(|r| r.body["status"] != "PENDING" && r.body["status"] != "PLAYING")
        .count();
    assert_eq!(failed, 0, "no status but PLAYING for the player meanwhile");
    server.shutdown().await;
}

/// Plays `url` with a player that offers G.711 (as Chromium does); returns its stats once video
/// flows.
async fn play_g711(server: &callgate_server::RunningServer, id: &str, url: &str) -> FakeBrowser {
    let (mut c, _) = Client::establish(server, connection()).await;
    let b = FakeBrowser::player_with_g711().await;
    c.send("playStream", play_msg(id, url, &b.offer)).await;
    loop {
        let (m, data) = c.next().await.expect("connection open");
        if m == "setRemoteSDP" && data[0] == id {
            b.accept(data[1].as_str().expect("an answer"));
            break;
        }
    }
    let st = stream_status(&mut c, id).await;
    assert_eq!(st["status"], "PLAYING", "{st:?}");
    std::mem::forget(c); // the session stays for the test's length
    b
}

#[tokio::test]
async fn camera_audio_pcmu_is_passed_through_aac_is_transcoded_to_opus_and_opus_is_dropped() {
    let backend = Backend::start().await;
    let server = start_server(&server_toml(&backend.url("hooks"))).await;
    let pcmu = Camera::start_with(None, &["--audio", "pcmu"]).await;
    let b = play_g711(&server, "pcmu", &pcmu.url("")).await;
    b.wait("G.711 audio and H.264 video", |s| s.audio_frames >= 20 && s.video_frames >= 10).await;

    // AAC (GStreamer's voaacenc of a 440 Hz sine, 44.1 kHz): the player gets Opus, 20 ms
    // frames that decode to the same tone at 48 kHz (resampled, not sped up).
    let aac = Camera::start_with(None, &["--audio", "aac"]).await;
    let b = play_g711(&server, "aac", &aac.url("")).await;
    let st = b.wait("2 s of Opus audio and the video", |s| s.audio_frames >= 100 && s.video_frames >= 10).await;
    let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).expect("an Opus decoder");
    let mut pcm = Vec::new();
    let mut out = vec![0f32; 5760];
    for p in &st.audio_payloads {
        let n = dec.decode_float(p, &mut out, false).expect("every frame decodes as Opus");
        assert_eq!(n, 960, "20 ms frames");
        pcm.extend_from_slice(&out[..n]);
    }
    // Past the encoder's start-up: 1 s of tone.
    let second = &pcm[pcm.len() - 48_000..];
    let rms = (second.iter().map(|x| x * x).sum::<f32>() / second.len() as f32).sqrt();
    let crossings = second.windows(2).filter(|w| (w[0] < 0.0) != (w[1] < 0.0)).count();
    let hz = crossings as f32 / 2.0;
    println!("decoded: rms {rms:.3}, {hz} Hz");
    assert!(rms > 0.1, "a tone, not silence: rms {rms}");
    assert!((430.0..450.0).contains(&hz), "the camera's 440 Hz: {hz} Hz");

    // Opus from a camera: retina has no depacketizer for it; the video plays without audio.
    let cam = Camera::start_with(None, &["--audio", "opus"]).await;
    let b = play_g711(&server, "opus", &cam.url("")).await;
    b.wait("video", |s| s.video_frames >= 10).await;
    assert_eq!(b.stats().audio_frames, 0, "opus: no audio (not forwarded)");
    server.shutdown().await;
}

#[tokio::test]
async fn under_overwrite_the_backend_picks_the_camera_and_its_credentials_stay_masked() {
    let camera = Camera::start(Some(("viewer", "s3cret"))).await;
    let backend = Backend::start().await;
    let real = camera.url("viewer:s3cret@");
    backend.answer(move |m, b| match m {
        "connect" => {
            let mut a = b.clone();
            a["restClientConfig"] = json!({"playRTSP": {"restPolicy": "OVERWRITE", "restOverwrite": "name"}});
            Reply::json(200, a)
        }
        // The client asks for a camera by a placeholder URL; the backend knows the real one.
        "playRTSP" => {
            let mut a = b.clone();
            a["name"] = json!(real);
            Reply::json(200, a)
        }
        _ => Reply::mirror(b),
    });
    let server = start_server(&server_toml(&backend.url("hooks"))).await;
    let (_c, b, st) = play(&server, "cam", "rtsp://camera-7.invalid/placeholder").await;
    assert_eq!(st["status"], "PLAYING", "{st:?}");
    assert_eq!(st["name"], camera.url("***@").as_str(), "the backend's URL, masked");
    b.wait("frames from the backend's camera", |s| s.video_frames >= 10).await;
    let events = backend.requests_for("StreamStatusEvent");
    assert!(events.iter().all(|e| !e.body.to_string().contains("s3cret")), "no event carries the password");
    server.shutdown().await;
}

/// A "camera" that answers every request with `answer` and then `tail` (raw bytes on the
/// RTSP connection), for malformed input.
async fn bad_camera(answer: impl Fn(u32) -> Vec<u8> + Send + 'static) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = vec![0u8; 4096];
            let mut n = 0u32;
            while let Ok(len) = s.read(&mut buf).await {
                if len == 0 {
                    break;
                }
                let req = String::from_utf8_lossy(&buf[..len]).to_string();
                let cseq = req.lines().find_map(|l| l.strip_prefix("CSeq: ")).unwrap_or("1").trim().to_string();
                n += 1;
                let a = String::from_utf8_lossy(&answer(n)).replace("{cseq}", &cseq);
                if s.write_all(a.as_bytes()).await.is_err() {
                    break;
                }
            }
        }
    });
    port
}

#[tokio::test]
async fn malformed_answers_from_a_camera_fail_the_player_and_nothing_else() {
    let backend = Backend::start().await;
    let server = start_server(&server_toml(&backend.url("hooks"))).await;
    // Not RTSP at all.
    let junk = bad_camera(|_| b"\x00\xffHTTP/9 what\r\n\r\n\x01\x02".to_vec()).await;
    // A DESCRIBE answer whose SDP says H.264 with broken parameter sets, then junk.
    let broken_sdp = bad_camera(|n| {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\n\
                   a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;sprop-parameter-sets=!!!,???\r\n\
                   a=control:trackID=1\r\n";
        if n == 1 {
            format!(
                "RTSP/1.0 200 OK\r\nCSeq: {{cseq}}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            )
            .into_bytes()
        } else {
            b"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nTransport: nonsense\r\n\r\n$\x07\xff\xffjunk".to_vec()
        }
    })
    .await;
    for (id, port) in [("junk", junk), ("broken", broken_sdp)] {
        let (_c, _b, st) = play(&server, id, &format!("rtsp://127.0.0.1:{port}/cam")).await;
        assert_eq!(st["status"], "FAILED", "{st:?}");
        let info = st["info"].as_str().unwrap_or_default();
        assert!(info.starts_with("RTSP source failed: "), "{info}");
    }
    assert_eq!(server.shared.streams.pulls(), 0);
    // The server goes on: a session still connects.
    let (_c, _) = Client::establish(&server, connection()).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_player_stopped_while_its_camera_is_reached_ends_the_pull_and_hears_nothing_more() {
    // A camera that takes the connection and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = silent.accept().await {
            h.lock().push(s);
        }
    });
    let backend = Backend::start().await;
    let server = start_server(&server_toml(&backend.url("hooks"))).await;
    let (mut c, _) = Client::establish(&server, connection()).await;
    let b = FakeBrowser::player().await;
    c.send("playStream", play_msg("wait-1", &format!("rtsp://127.0.0.1:{port}/cam"), &b.offer)).await;
    wait_until("the camera is being reached", || !held.lock().is_empty()).await;
    assert_eq!(server.shared.streams.pulls(), 1);
    c.send("stopStream", json!({"mediaSessionId": "wait-1"})).await;
    let st = stream_status(&mut c, "wait-1").await;
    assert_eq!((st["status"].as_str(), st["info"].as_str()), (Some("STOPPED"), Some("Stopped by user")), "{st:?}");
    backend.wait_for("StreamStatusEvent", |b| b["mediaSessionId"] == "wait-1" && b["status"] == "STOPPED").await;
    wait_until("the pull is gone", || server.shared.streams.pulls() == 0).await;
    // Nothing more for that stream: no setRemoteSDP, no FAILED from the pull that stopped.
    let more = tokio::time::timeout(Duration::from_millis(500), c.next()).await;
    assert!(more.is_err(), "nothing more: {more:?}");
    assert!(server.shared.streams.is_empty());
    server.shutdown().await;
}
