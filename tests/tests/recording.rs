//! Stream recording end to end (issue 15 item 1): the real server with real UDP media, a str0m
//! publisher sending VP8 frames with real keyframe headers and Opus, `publishStream {record:
//! true}`; the file is read back with a Matroska demuxer and downloaded from the HTTP port.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use callgate_tests::webrtc::{vp8_frame, FakeBrowser};
use callgate_tests::{start_server, Backend, Client, WAIT};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn connection() -> Value {
    json!({"appKey": "backendApp", "mediaProviders": ["WebRTC"], "clientVersion": "2.0", "custom": {}})
}

fn publish_msg(id: &str, name: &str, sdp: &str, record: bool) -> Value {
    json!({"mediaSessionId": id, "name": name, "published": true, "hasVideo": true, "hasAudio": true,
           "status": "PENDING", "record": record, "mediaProvider": "WebRTC", "sdp": sdp,
           "bitrate": 0, "minBitrate": 0, "maxBitrate": 0})
}

/// A fresh empty directory under the system's temporary directory.
fn temp_dir(what: &str) -> PathBuf {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos();
    let d = std::env::temp_dir().join(format!("callgate-{what}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(backend: &Backend, recording: &str) -> String {
    format!("[apps.backendApp]\nurl = \"{}\"\n[recording]\n{recording}\n", backend.url("hooks"))
}

/// The next `setRemoteSDP` answer, or the `FAILED` status that came instead.
async fn answer_or_status(c: &mut Client, id: &str) -> Result<String, Map<String, Value>> {
    loop {
        let (m, data) = c.next().await.expect("connection open");
        if m == "setRemoteSDP" && data[0] == id {
            return Ok(data[1].as_str().unwrap().to_string());
        }
        if m == "notifyStreamStatusEvent" && data[0]["mediaSessionId"] == id {
            return Err(data[0].as_object().unwrap().clone());
        }
    }
}

async fn expect_status(c: &mut Client, id: &str) -> Map<String, Value> {
    loop {
        let st = c.expect("notifyStreamStatusEvent").await;
        if st["mediaSessionId"] == id {
            return st;
        }
    }
}

/// `GET path` on the server's HTTP port: (status, headers, body).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT * 2, s.read_to_end(&mut buf)).await.expect("HTTP answer in time").unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block") + 4;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
    (status, head, buf[split..].to_vec())
}

/// Publishes with `record: true` until the browser has sent `video_frames` video frames, then
/// unpublishes. Returns the recordName of the PUBLISHING status and the browser's stats.
async fn record_stream(
    server: &callgate_server::RunningServer,
    id: &str,
    name: &str,
    video_frames: usize,
) -> (String, callgate_tests::webrtc::BrowserStats) {
    let (mut c, _) = Client::establish(server, connection()).await;
    let b = FakeBrowser::publisher_vp8().await;
    c.send("publishStream", publish_msg(id, name, &b.offer, true)).await;
    b.accept(&answer_or_status(&mut c, id).await.expect("an answer"));
    let st = expect_status(&mut c, id).await;
    assert_eq!(st["status"], "PUBLISHING", "{st:?}");
    let record_name = st["recordName"].as_str().expect("recordName in PUBLISHING").to_string();
    assert!(record_name.starts_with(&format!("{name}-")) && record_name.ends_with(".webm"), "{record_name}");
    b.wait("the recording asked for a keyframe", |s| s.keyframe_requests >= 1).await;
    let before = b.stats().video_sent;
    b.wait("video frames sent", |s| s.video_sent >= before + video_frames).await;
    c.send("unPublishStream", json!({"mediaSessionId": id, "name": name, "published": true, "status": "PUBLISHING"}))
        .await;
    let st = expect_status(&mut c, id).await;
    assert_eq!(st["status"], "UNPUBLISHED", "{st:?}");
    assert_eq!(st["recordName"], record_name.as_str(), "getRecordInfo() after UNPUBLISHED");
    (record_name, b.stats())
}

#[tokio::test]
async fn record_true_writes_vp8_and_opus_to_webm_served_at_the_demo_pages_url() {
    let backend = Backend::start().await;
    let dir = temp_dir("rec");
    let server = start_server(&config(&backend, &format!("dir = {:?}", dir.to_str().unwrap()))).await;
    let (record_name, sent) = record_stream(&server, "rec-1", "cam1", 150).await;

    // The demo page's link: <page origin>/client/records/<recordName>. The route waits for the
    // file to be finalized, so the bytes are the final file's.
    let (status, head, body) = http_get(server.http_addr, &format!("/client/records/{record_name}")).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: video/webm"), "{head}");
    let on_disk = std::fs::read(dir.join(&record_name)).unwrap();
    assert_eq!(body, on_disk, "the download is the file");
    assert!(on_disk.len() > 50_000, "{} bytes", on_disk.len());

    // The file demuxes: a 320x240 VP8 track and an Opus track, every frame in time order, the
    // first video frame the publisher's keyframe as it was encoded (reassembled from its packets).
    let mut mkv = matroska_demuxer::MatroskaFile::open(Cursor::new(on_disk)).unwrap();
    let video = mkv.tracks().iter().find(|t| t.codec_id() == "V_VP8").expect("a VP8 track");
    let vt = video.track_number().get();
    let v = video.video().unwrap();
    assert_eq!((v.pixel_width().get(), v.pixel_height().get()), (320, 240));
    let audio = mkv.tracks().iter().find(|t| t.codec_id() == "A_OPUS").expect("an Opus track");
    assert_eq!(audio.audio().unwrap().sampling_frequency(), 48_000.0);
    let scale = mkv.info().timestamp_scale().get() as f64;
    let duration_ms = mkv.info().duration().expect("a duration") * scale / 1e6;
    let mut frame = matroska_demuxer::Frame::default();
    let (mut vframes, mut aframes, mut keys, mut last, mut first_video) = (0usize, 0usize, 0, 0, None);
    while mkv.next_frame(&mut frame).unwrap() {
        assert!(frame.timestamp >= last, "time order");
        last = frame.timestamp;
        if frame.track == vt {
            if first_video.is_none() {
                first_video = Some(frame.data.clone());
            }
            vframes += 1;
            keys += usize::from(frame.is_keyframe == Some(true));
        } else {
            aframes += 1;
        }
    }
    let first = first_video.expect("video frames");
    assert_eq!(first.len(), 3000);
    assert_eq!(first[..6], vp8_frame(true, 0)[..6], "starts at a keyframe");
    // The publisher sends 50 video and 50 audio frames per second; the recording starts at its
    // first keyframe (the recorder is attached before ICE completes) and ends at the unpublish:
    // all that was sent but the last few racing the unpublish (loopback loses nothing), never more.
    assert!(vframes >= 140 && vframes <= sent.video_sent, "{vframes} video frames of {} sent", sent.video_sent);
    assert!(keys >= 1 && keys <= sent.keyframes_sent, "{keys} keyframes");
    assert!(aframes + 60 >= vframes, "{aframes} audio frames beside {vframes} video frames");
    let expected_ms = vframes as f64 * 20.0;
    assert!((duration_ms - expected_ms).abs() < 1000.0, "duration {duration_ms} ms for {vframes} frames at 50 fps");

    // The backend saw recordName in the stream's statuses.
    let ev =
        backend.wait_for("StreamStatusEvent", |b| b["mediaSessionId"] == "rec-1" && b["status"] == "PUBLISHING").await;
    assert_eq!(ev.body["recordName"], record_name.as_str());

    // ... and RecordingStatusEvent STARTED, then FINISHED with what the file holds.
    backend.wait_for("RecordingStatusEvent", |b| b["mediaSessionId"] == "rec-1" && b["status"] == "STARTED").await;
    let fin =
        backend.wait_for("RecordingStatusEvent", |b| b["mediaSessionId"] == "rec-1" && b["status"] == "FINISHED").await;
    assert_eq!(fin.body["recordName"], record_name.as_str());
    assert_eq!(fin.body["name"], "cam1");
    assert_eq!(fin.body["bytes"], body.len() as u64);
    assert_eq!(fin.body["videoFrames"], vframes as u64);
    assert_eq!(fin.body["audioFrames"], aframes as u64);
    assert!(fin.body["sessionId"].is_string() && fin.body["nodeId"].is_string(), "{:?}", fin.body);
    check_schemas(&backend);

    // Unknown or malformed names are not served.
    for bad in ["nope-20200101000000-000.webm", "..%2Fx.webm", "x.txt"] {
        let (status, _, _) = http_get(server.http_addr, &format!("/client/records/{bad}")).await;
        assert_eq!(status, 404, "{bad}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn record_true_with_recording_disabled_fails_with_a_clear_info() {
    let backend = Backend::start().await;
    let server = start_server(&config(&backend, "enabled = false")).await;
    let (mut c, _) = Client::establish(&server, connection()).await;
    let b = FakeBrowser::publisher_vp8().await;
    c.send("publishStream", publish_msg("rec-off", "cam", &b.offer, true)).await;
    let st = answer_or_status(&mut c, "rec-off").await.expect_err("no answer");
    assert_eq!(st["status"], "FAILED");
    assert_eq!(st["info"], "Recording is disabled on this server");
    let ev = backend.wait_for("StreamStatusEvent", |b| b["mediaSessionId"] == "rec-off").await;
    assert_eq!(ev.body["status"], "FAILED");
    assert_eq!(ev.body["info"], "Recording is disabled on this server");
    // record: false still publishes.
    c.send("publishStream", publish_msg("rec-no", "cam", &b.offer, false)).await;
    assert!(answer_or_status(&mut c, "rec-no").await.is_ok());
}

#[tokio::test]
async fn a_directory_that_cannot_be_written_fails_the_publish() {
    let backend = Backend::start().await;
    let base = temp_dir("rec-bad");
    // A regular file where a directory should be: root or not, nothing can be created below it.
    let file = base.join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let dir = file.join("records");
    let server = start_server(&config(&backend, &format!("dir = {:?}", dir.to_str().unwrap()))).await;
    let (mut c, _) = Client::establish(&server, connection()).await;
    let b = FakeBrowser::publisher_vp8().await;
    c.send("publishStream", publish_msg("rec-bad", "cam", &b.offer, true)).await;
    let st = answer_or_status(&mut c, "rec-bad").await.expect_err("no answer");
    assert_eq!(st["status"], "FAILED", "{st:?}");
    let info = st["info"].as_str().unwrap();
    assert!(
        info.starts_with("Recording failed: cannot create the directory") && info.contains("Not a directory"),
        "{info}"
    );
    // The name is free again: the stream is gone.
    c.send("publishStream", publish_msg("rec-bad2", "cam", &b.offer, false)).await;
    assert!(answer_or_status(&mut c, "rec-bad2").await.is_ok());
    std::fs::remove_dir_all(&base).unwrap();
}

fn aged_file(dir: &Path, name: &str, bytes: usize, age: Duration) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, vec![0u8; bytes]).unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
    p
}

#[tokio::test]
async fn limits_delete_the_oldest_recordings_after_a_recording() {
    let backend = Backend::start().await;
    let dir = temp_dir("rec-limits");
    let hour = Duration::from_secs(3600);
    let too_old = aged_file(&dir, "a-20200101000000-000.webm", 1000, 48 * hour);
    let oldest = aged_file(&dir, "b-20200101000000-000.webm", 100_000, 3 * hour);
    let older = aged_file(&dir, "c-20200101000000-000.webm", 100_000, 2 * hour);
    let newest = aged_file(&dir, "d-20200101000000-000.webm", 100_000, hour);
    let other = aged_file(&dir, "notes.txt", 500_000, 48 * hour);
    let limits = format!("dir = {:?}\nmax_bytes = 300000\nmax_age_s = 86400", dir.to_str().unwrap());
    let server = start_server(&config(&backend, &limits)).await;
    let (record_name, _) = record_stream(&server, "rec-lim", "cam", 50).await;
    // Downloading waits for the recording to be finalized; the limits apply right after.
    let (status, _, body) = http_get(server.http_addr, &format!("/client/records/{record_name}")).await;
    assert_eq!(status, 200);
    assert!(body.len() < 100_000, "this test needs a recording under 100 kB: {}", body.len());
    let deadline = tokio::time::Instant::now() + WAIT;
    while (too_old.exists() || oldest.exists()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!too_old.exists(), "older than max_age_s: deleted");
    // 300 kB + the new one > 300 kB: the oldest goes, then the rest fits.
    assert!(!oldest.exists(), "the oldest deleted past max_bytes");
    assert!(older.exists() && newest.exists(), "what fits is kept");
    assert!(dir.join(&record_name).exists(), "the new recording is kept");
    assert!(other.exists(), "files that are not recordings are never touched");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn an_h264_publisher_fails_with_recording_h264_is_not_supported() {
    let backend = Backend::start().await;
    let dir = temp_dir("rec-h264");
    let server = start_server(&config(&backend, &format!("dir = {:?}", dir.to_str().unwrap()))).await;
    let (mut c, _) = Client::establish(&server, connection()).await;
    let b = FakeBrowser::publisher_h264().await;
    c.send("publishStream", publish_msg("rec-264", "cam264", &b.offer, true)).await;
    b.accept(&answer_or_status(&mut c, "rec-264").await.expect("an answer"));
    let st = expect_status(&mut c, "rec-264").await;
    assert_eq!(st["status"], "PUBLISHING", "{st:?}");
    // The first H.264 packet ends the recording and the stream: never a silent success.
    let st = expect_status(&mut c, "rec-264").await;
    assert_eq!(st["status"], "FAILED", "{st:?}");
    assert_eq!(st["info"], "Recording failed: recording H264 is not supported (WebM: VP8 and Opus only)");
    let ev = backend.wait_for("RecordingStatusEvent", |b| b["mediaSessionId"] == "rec-264").await;
    assert_eq!(ev.body["status"], "FAILED");
    assert_eq!(ev.body["info"], st["info"]);
    // Nothing was written: no empty file is left behind.
    let deadline = tokio::time::Instant::now() + WAIT;
    while std::fs::read_dir(&dir).unwrap().next().is_some() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(std::fs::read_dir(&dir).unwrap().next().is_none(), "the empty file is deleted");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every hook body the backend received matches its JSON Schema (RecordingStatusEvent and the
/// stream statuses with recordName included).
fn check_schemas(backend: &Backend) {
    for r in backend.requests() {
        let m = callgate_hooks::HookMethod::from_name(&r.method).unwrap_or_else(|| panic!("unknown hook {}", r.method));
        let schema = callgate_hooks::schema::request_schema(m);
        let v = jsonschema::validator_for(&schema).expect("the schema compiles");
        let errors: Vec<String> = v.iter_errors(&r.body).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{m} body {} does not match its schema: {errors:?}", r.body);
    }
}
