//! HLS output end to end in process: the real server, a real backend answering `playHLS`, a
//! fake browser publishing real H.264 over ICE/DTLS/SRTP (`FakeBrowser::publisher_real_h264`:
//! x264's SPS/PPS/IDR and P-frames), and plain HTTP GETs as an HLS player makes them. The
//! playlist, the init segment and the media segments are read back with a box walker written
//! here (not the server's writer): the `avcC` holds the publisher's own SPS and PPS, the samples
//! are its slices, length-prefixed, a segment starts with an IDR. A refused `playHLS` is a 403
//! with the backend's reason; an unknown stream 404; a VP8 publisher 415; an ended stream's
//! playlist gets `#EXT-X-ENDLIST`.

use std::net::SocketAddr;
use std::time::Duration;

use callgate_tests::streams::publish_msg;
use callgate_tests::webrtc::{annex_b_nal_units, h264_access_units, FakeBrowser, REAL_H264_GOP};
use callgate_tests::{start_server, Backend, Client, Reply, WAIT};
use serde_json::{json, Value};

fn config(backend: &Backend) -> String {
    config_with(backend, "")
}

/// `extra`: more `[hls]` keys, then other sections.
fn config_with(backend: &Backend, extra: &str) -> String {
    format!(
        "[apps.backendApp]\nurl = \"{}\"\n\
         [hls]\napp_key = \"backendApp\"\nsegment_ms = 1000\npart_ms = 250\nwindow = 4\n{extra}",
        backend.url("hooks")
    )
}

fn connection() -> Value {
    json!({"appKey": "backendApp", "mediaProviders": ["WebRTC"], "clientVersion": "2.0", "custom": {}})
}

async fn publish(server: &callgate_server::RunningServer, b: &FakeBrowser, id: &str, name: &str) -> Client {
    let (mut c, _) = Client::establish(server, connection()).await;
    c.send("publishStream", publish_msg(id, name, &b.offer)).await;
    loop {
        let (m, data) = c.next().await.expect("open");
        if m == "setRemoteSDP" {
            b.accept(data[1].as_str().unwrap());
        }
        if m == "notifyStreamStatusEvent" && data[0]["mediaSessionId"] == id && data[0]["status"] != "PENDING" {
            assert_eq!(data[0]["status"], "PUBLISHING", "{data:?}");
            return c;
        }
    }
}

struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` over HTTP/1.1 (`Connection: close`), as a player makes it.
async fn get(addr: SocketAddr, path: &str) -> Got {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await.expect("an HTTP answer in time").unwrap();
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block") + 4;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).expect("status");
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let mut body = buf[end..].to_vec();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Got { status, headers, body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let n = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().split(';').next().unwrap().trim(), 16)
            .expect("chunk size");
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
        b = &b[nl + 2 + n + 2..];
    }
}

/// An ISO BMFF box: its type and its payload (after the 8-byte header).
#[derive(Debug, Clone)]
struct Mp4Box<'a> {
    kind: [u8; 4],
    body: &'a [u8],
}

/// The boxes laid end to end in `b` (a file, or a container box's payload).
fn boxes(mut b: &[u8]) -> Vec<Mp4Box<'_>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        assert!(b.len() >= 8, "a truncated box header: {b:?}");
        let size = u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
        assert!(size >= 8 && size <= b.len(), "box size {size} of {} bytes", b.len());
        out.push(Mp4Box { kind: b[4..8].try_into().unwrap(), body: &b[8..size] });
        b = &b[size..];
    }
    out
}

fn child<'a>(b: &[Mp4Box<'a>], kind: &str) -> Mp4Box<'a> {
    b.iter().find(|x| x.kind == kind.as_bytes()).cloned().unwrap_or_else(|| {
        panic!("no {kind} in {:?}", b.iter().map(|x| String::from_utf8_lossy(&x.kind)).collect::<Vec<_>>())
    })
}

/// The box at `path` ("moov/trak/mdia"), each step the first box of that type.
fn find<'a>(b: &'a [u8], path: &str) -> Mp4Box<'a> {
    let mut cur = Mp4Box { kind: *b"root", body: b };
    for step in path.split('/') {
        cur = child(&boxes(cur.body), step);
    }
    cur
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// The video track's samples in a media segment (one or more `moof` + `mdat`): each sample's
/// NAL units (4-byte length-prefixed in the file).
fn video_samples(seg: &[u8], video_track: u32) -> Vec<Vec<Vec<u8>>> {
    let top = boxes(seg);
    let mut samples = Vec::new();
    let mut offset = 0usize;
    for (k, b) in top.iter().enumerate() {
        let start = offset;
        offset += b.body.len() + 8;
        if &b.kind != b"moof" {
            continue;
        }
        let mdat = &top[k + 1];
        assert_eq!(&mdat.kind, b"mdat", "a moof is followed by its mdat");
        for traf in boxes(b.body).iter().filter(|x| &x.kind == b"traf") {
            let inner = boxes(traf.body);
            let tfhd = child(&inner, "tfhd");
            if u32_at(tfhd.body, 4) != video_track {
                continue;
            }
            let trun = child(&inner, "trun").body;
            let flags = u32_at(trun, 0) & 0xff_ffff;
            let count = u32_at(trun, 4) as usize;
            let mut at = 8;
            assert!(flags & 1 != 0, "trun has a data offset (flags {flags:#x})");
            let data_offset = u32_at(trun, at) as i32;
            at += 4;
            if flags & 4 != 0 {
                at += 4;
            }
            // data_offset is from the moof's first byte (default-base-is-moof).
            let mut pos = start + data_offset as usize;
            for _ in 0..count {
                let mut size = None;
                if flags & 0x100 != 0 {
                    at += 4;
                }
                if flags & 0x200 != 0 {
                    size = Some(u32_at(trun, at) as usize);
                    at += 4;
                }
                if flags & 0x400 != 0 {
                    at += 4;
                }
                if flags & 0x800 != 0 {
                    at += 4;
                }
                let size = size.expect("per-sample sizes");
                let sample = &seg[pos..pos + size];
                pos += size;
                let mut nals = Vec::new();
                let mut s = sample;
                while !s.is_empty() {
                    let n = u32_at(s, 0) as usize;
                    nals.push(s[4..4 + n].to_vec());
                    s = &s[4 + n..];
                }
                samples.push(nals);
            }
        }
    }
    samples
}

/// The segment URIs of a media playlist, in order.
fn segment_uris(playlist: &str) -> Vec<String> {
    playlist.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).map(str::to_string).collect()
}

/// The media sequence number of a playlist's segment URI `seg<N>.m4s`.
fn msn(uri: &str) -> u64 {
    uri.strip_prefix("seg").and_then(|r| r.strip_suffix(".m4s")).and_then(|n| n.parse().ok()).expect(uri)
}

#[tokio::test]
async fn a_published_h264_stream_plays_as_ll_hls_and_a_refused_player_gets_403() {
    let backend = Backend::start().await;
    backend.answer(|m, b| match m {
        "playHLS" if b["name"] == "secret" => Reply::json(403, json!({"status": 403, "reason": "Not for you"})),
        _ => Reply::mirror(b),
    });
    let server = start_server(&config(&backend)).await;
    let http = server.http_addr;
    let pb = FakeBrowser::publisher_real_h264().await;
    let mut publisher = publish(&server, &pb, "pub-1", "cam").await;

    // The playlist: LL-HLS, fMP4 (a map to init.mp4), parts, whole segments.
    let pl = get(http, "/cam/index.m3u8").await;
    assert_eq!(pl.status, 200, "{}", pl.text());
    assert_eq!(pl.header("content-type"), Some("application/vnd.apple.mpegurl"));
    assert_eq!(pl.header("access-control-allow-origin"), Some("*"));
    let text = pl.text();
    for tag in [
        "#EXTM3U",
        "#EXT-X-TARGETDURATION:",
        "#EXT-X-MAP:URI=\"init.mp4\"",
        "#EXT-X-PART-INF:PART-TARGET=",
        "#EXT-X-PART:",
    ] {
        assert!(text.contains(tag), "{tag} in\n{text}");
    }
    let segs = segment_uris(&text);
    assert!(!segs.is_empty(), "{text}");

    // The hook ran once for this player (IP + name), with what the backend needs to decide.
    let hook = backend.wait_for("playHLS", |b| b["name"] == "cam").await;
    assert_eq!((hook.body["mediaProvider"].as_str(), hook.body["clientIP"].as_str()), (Some("HLS"), Some("127.0.0.1")));
    assert_eq!(hook.body["appKey"], "backendApp");

    // The init segment: the publisher's own SPS and PPS in avcC, its size in avc1.
    let init = get(http, "/cam/init.mp4").await;
    assert_eq!((init.status, init.header("content-type")), (200, Some("video/mp4")));
    let top = boxes(&init.body);
    assert_eq!(top.iter().map(|b| b.kind).collect::<Vec<_>>(), vec![*b"ftyp", *b"moov"]);
    let moov = boxes(find(&init.body, "moov").body);
    let mut video_track = None;
    for trak in moov.iter().filter(|b| &b.kind == b"trak") {
        let t = boxes(trak.body);
        let hdlr = find(child(&t, "mdia").body, "hdlr").body;
        if &hdlr[8..12] != b"vide" {
            continue;
        }
        video_track = Some(u32_at(child(&t, "tkhd").body, 12));
        let stsd = find(child(&t, "mdia").body, "minf/stbl/stsd").body;
        // stsd: version/flags, entry count, then the sample entry box.
        let entry = &boxes(&stsd[8..])[0];
        assert_eq!(&entry.kind, b"avc1");
        // VisualSampleEntry: 6 reserved + 2 index + 16 predefined, then width and height.
        let (w, h) = (
            u16::from_be_bytes([entry.body[24], entry.body[25]]),
            u16::from_be_bytes([entry.body[26], entry.body[27]]),
        );
        assert_eq!((w, h), (320, 240));
        let avcc = child(&boxes(&entry.body[78..]), "avcC").body;
        let gop_nals = annex_b_nal_units(REAL_H264_GOP);
        let (sps, pps) =
            (gop_nals.iter().find(|n| n[0] & 0x1f == 7).unwrap(), gop_nals.iter().find(|n| n[0] & 0x1f == 8).unwrap());
        assert_eq!(avcc[0], 1, "configurationVersion");
        assert_eq!(&avcc[1..4], &sps[1..4], "profile, compatibility, level from the SPS");
        assert_eq!(avcc[5] & 0x1f, 1, "one SPS");
        let sps_len = u16::from_be_bytes([avcc[6], avcc[7]]) as usize;
        assert_eq!(&avcc[8..8 + sps_len], *sps, "the publisher's SPS");
        let at = 8 + sps_len;
        assert_eq!(avcc[at], 1, "one PPS");
        let pps_len = u16::from_be_bytes([avcc[at + 1], avcc[at + 2]]) as usize;
        assert_eq!(&avcc[at + 3..at + 3 + pps_len], *pps, "the publisher's PPS");
    }
    let video_track = video_track.expect("a video track");

    // A media segment: starts with the IDR, then P-frames, each sample one of the publisher's
    // slices exactly (the parameter sets live in avcC, not in the samples).
    let seg = get(http, &format!("/cam/{}", segs[0])).await;
    assert_eq!(seg.status, 200);
    let samples = video_samples(&seg.body, video_track);
    assert!(samples.len() >= 10, "a 1 s segment of 50 fps video: {} samples", samples.len());
    let slices: Vec<Vec<u8>> = h264_access_units(REAL_H264_GOP)
        .iter()
        .map(|au| annex_b_nal_units(au).into_iter().find(|n| matches!(n[0] & 0x1f, 1 | 5)).unwrap().to_vec())
        .collect();
    let first = samples[0].iter().find(|n| matches!(n[0] & 0x1f, 1 | 5)).expect("a slice");
    assert_eq!(first[0] & 0x1f, 5, "a segment starts with an IDR");
    assert_eq!(first, &slices[0], "the IDR as the publisher sent it");
    for s in &samples {
        assert!(s.iter().all(|n| !matches!(n[0] & 0x1f, 7 | 8)), "no parameter sets in samples");
        let slice = s.iter().find(|n| matches!(n[0] & 0x1f, 1 | 5)).expect("every sample has its slice");
        assert!(slices.contains(slice), "every slice is one the publisher sent");
    }

    // Blocking playlist reload: asking for the next segment's first part waits until it exists.
    let next = msn(segs.last().unwrap()) + 1;
    let t = std::time::Instant::now();
    let pl = get(http, &format!("/cam/index.m3u8?_HLS_msn={next}&_HLS_part=0")).await;
    assert_eq!(pl.status, 200);
    assert!(pl.text().contains(&format!("part{next}.0.m4s")), "the part asked for is listed:\n{}", pl.text());
    println!("blocking reload for part {next}.0 answered in {:?}", t.elapsed());
    let part = get(http, &format!("/cam/part{next}.0.m4s")).await;
    assert_eq!(part.status, 200);
    assert!(!video_samples(&part.body, video_track).is_empty());
    assert_eq!(get(http, "/cam/index.m3u8?_HLS_msn=x").await.status, 400);
    assert_eq!(get(http, "/cam/seg999999.m4s").await.status, 404);

    // Later requests of this player run no hook (its decision is kept player_cache_s).
    assert_eq!(backend.requests_for("playHLS").len(), 1);

    // Refused by the backend: 403 with its reason; the hook ran; nothing else is served.
    let refused = get(http, "/secret/index.m3u8").await;
    assert_eq!((refused.status, refused.text().as_str()), (403, "Not for you"));
    assert_eq!(refused.header("access-control-allow-origin"), Some("*"), "hls.js sees the status");
    assert_eq!(get(http, "/secret/init.mp4").await.status, 403);
    assert_eq!(backend.requests_for("playHLS").iter().filter(|r| r.body["name"] == "secret").count(), 1);

    // Unknown name: 404 (the hook allowed it).
    let unknown = get(http, "/nobody/index.m3u8").await;
    assert_eq!((unknown.status, unknown.text().as_str()), (404, "Stream not found"));

    // The stream ends: its playlist is closed with ENDLIST (and stays served for a while).
    publisher.send("unPublishStream", json!({"mediaSessionId": "pub-1", "name": "cam"})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let pl = get(http, "/cam/index.m3u8").await;
        if pl.status == 200 && pl.text().contains("#EXT-X-ENDLIST") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no ENDLIST after the stream ended:\n{}", pl.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_vp8_stream_is_refused_with_415() {
    let backend = Backend::start().await;
    let server = start_server(&config(&backend)).await;
    let pb = FakeBrowser::publisher_vp8().await;
    let _publisher = publish(&server, &pb, "pub-v", "vp8cam").await;
    let r = get(server.http_addr, "/vp8cam/index.m3u8").await;
    assert_eq!(r.status, 415, "{}", r.text());
    assert!(r.text().contains("VP8"), "the reason names the codec: {}", r.text());
    server.shutdown().await;
}

/// Any stream, a pulled camera too: an `rtsp://` name (percent-encoded in the path) is served
/// as HLS from the camera's one pull, started by the HLS request if nobody plays the camera
/// and kept while the muxer runs; the `playHLS` hook sees the URL with its credentials masked;
/// a camera that refuses the credentials is a 502 with the pull's info.
#[tokio::test]
async fn an_rtsp_camera_is_served_as_hls_from_its_one_pull() {
    use callgate_tests::rtsp_camera::Camera;
    let camera = Camera::start(Some(("viewer", "s3cret"))).await;
    let backend = Backend::start().await;
    let toml = config_with(&backend, "idle_timeout_s = 1\n[security]\nallowed_private_ranges = [\"127.0.0.0/8\"]\n");
    let server = start_server(&toml).await;
    let http = server.http_addr;
    let enc = |u: &str| u.replace('%', "%25").replace(':', "%3A").replace('/', "%2F").replace('@', "%40");
    let url = camera.url("viewer:s3cret@");

    let pl = get(http, &format!("/{}/index.m3u8", enc(&url))).await;
    assert_eq!(pl.status, 200, "{}", pl.text());
    let hook = backend.wait_for("playHLS", |_| true).await;
    assert_eq!(hook.body["name"], camera.url("***@"), "credentials never reach the backend");
    assert_eq!(camera.count("PLAY"), 1, "{:?}", camera.events());
    assert_eq!(server.shared.streams.pulls(), 1);

    let init = get(http, &format!("/{}/init.mp4", enc(&url))).await;
    assert_eq!(init.status, 200);
    let moov = boxes(find(&init.body, "moov").body);
    let traks: Vec<_> = moov.iter().filter(|b| &b.kind == b"trak").collect();
    assert_eq!(traks.len(), 1, "video only (the camera has no audio)");
    let t = boxes(traks[0].body);
    let video_track = u32_at(child(&t, "tkhd").body, 12);
    let entry_box = find(child(&t, "mdia").body, "minf/stbl/stsd").body;
    let entry = &boxes(&entry_box[8..])[0];
    assert_eq!(&entry.kind, b"avc1");
    let avcc = child(&boxes(&entry.body[78..]), "avcC").body;
    assert_eq!(avcc[8] & 0x1f, 7, "the camera's SPS in avcC");

    let seg = get(http, &format!("/{}/{}", enc(&url), segment_uris(&pl.text())[0])).await;
    assert_eq!(seg.status, 200);
    let samples = video_samples(&seg.body, video_track);
    assert!(samples.len() >= 5, "{} samples", samples.len());
    assert_eq!(samples[0].iter().find(|n| matches!(n[0] & 0x1f, 1 | 5)).map(|n| n[0] & 0x1f), Some(5), "IDR first");

    // No more requests: the muxer stops after idle_timeout_s and its membership ends the pull.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.shared.streams.pulls() != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the pull outlives the idle muxer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Wrong credentials: the pull's own info, as a player would get it.
    let bad = get(http, &format!("/{}/index.m3u8", enc(&camera.url("viewer:wrong@")))).await;
    assert_eq!((bad.status, bad.text().as_str()), (502, "RTSP source refused the credentials (401 Unauthorized)"));
    assert_eq!(server.shared.streams.pulls(), 0);

    // A camera with AAC audio: its Opus (transcoded by the pull) is the output's audio track.
    let aac = Camera::start_with(None, &["--audio", "aac"]).await;
    let init = get(http, &format!("/{}/init.mp4", enc(&aac.url("")))).await;
    assert_eq!(init.status, 200, "{}", init.text());
    let moov = boxes(find(&init.body, "moov").body);
    let entries: Vec<[u8; 4]> = moov
        .iter()
        .filter(|b| &b.kind == b"trak")
        .map(|trak| {
            let stsd = find(child(&boxes(trak.body), "mdia").body, "minf/stbl/stsd").body;
            boxes(&stsd[8..])[0].kind
        })
        .collect();
    assert_eq!(entries, vec![*b"avc1", *b"Opus"]);

    // A camera with G.711 audio only: nothing HLS carries, refused as such.
    let g711 = Camera::start_with(None, &["--audio", "pcmu", "--no-video"]).await;
    let r = get(http, &format!("/{}/index.m3u8", enc(&g711.url("")))).await;
    assert_eq!((r.status, r.text().as_str()), (415, "The stream has nothing HLS can carry (H.264 video, Opus audio)"));
    server.shutdown().await;
}
