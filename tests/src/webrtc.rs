//! A stand-in browser for server tests: a str0m `Rtc` in full ICE mode (controlling, like
//! Chromium) on its own real UDP socket on 127.0.0.1, driven by a tokio task. It offers the way
//! the SDK does (audio + video, no candidates exchanged beyond the SDP), learns nothing but the
//! server's answer, and then:
//! - a publisher sends one audio and one video frame every 20 ms once connected (with
//!   [`FakeBrowser::publisher_vp8`], VP8 frames with real keyframe headers, see there; with
//!   [`FakeBrowser::publisher_real_vp8`], real decodable keyframes);
//! - a player counts the frames it receives;
//! - a call's browser (caller or callee: audio only, PCMU, the codec of the SIP bridge) does
//!   both: one 20 ms PCMU frame every 20 ms, and counts what arrives;
//! - a video call's browser ([`FakeBrowser::video_caller`], [`FakeBrowser::video_callee`]) adds
//!   VP8 video: a frame every 20 ms as [`FakeBrowser::publisher_vp8`] sends them (a keyframe
//!   first, every 50 frames and after each keyframe request), and it can ask for a keyframe
//!   itself ([`FakeBrowser::request_keyframe`], a PLI).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::WAIT;

/// What the fake browser saw.
#[derive(Debug, Default, Clone)]
pub struct BrowserStats {
    pub connected: bool,
    pub audio_frames: usize,
    pub video_frames: usize,
    pub keyframe_requests: usize,
    pub frames_sent: usize,
    /// Video frames sent, and how many of them were keyframes.
    pub video_sent: usize,
    pub keyframes_sent: usize,
    /// Video frames received that are VP8 keyframes (P bit clear, RFC 6386 §9.1).
    pub keyframes_received: usize,
    /// The H.264 NAL unit types of the first video frame received (Annex B, as str0m hands
    /// H.264 frames out): `[7, 8, 5]` for SPS, PPS, IDR. Empty for other codecs' frames.
    pub first_video_nal_types: Vec<u8>,
    /// The first [`KEPT_AUDIO_FRAMES`] audio frames' payloads, for a decoder.
    pub audio_payloads: Vec<Vec<u8>>,
}

/// Audio frames a fake browser keeps (5 s of 20 ms frames).
pub const KEPT_AUDIO_FRAMES: usize = 250;

/// The NAL unit types of an Annex B H.264 access unit (after each `00 00 01` start code).
pub fn h264_nal_types(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 3 < data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            out.push(data[i + 3] & 0x1f);
            i += 3;
        } else {
            i += 1;
        }
    }
    out
}

/// The codecs a fake browser offers.
#[derive(Clone, Copy)]
enum Codecs {
    /// str0m's defaults: Opus, VP8, H.264, ...
    Default,
    /// Opus and H.264 only, as Safari may.
    H264Only,
    /// The defaults plus PCMU and PCMA.
    WithG711,
}

enum Cmd {
    Answer(String),
    RequestKeyframe,
}

/// See the module docs. Dropping it stops the task (the peer then goes silent).
pub struct FakeBrowser {
    /// The SDP offer to put in `publishStream`/`playStream`.
    pub offer: String,
    pub addr: SocketAddr,
    cmd: mpsc::UnboundedSender<Cmd>,
    stats: Arc<Mutex<BrowserStats>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeBrowser {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeBrowser {
    /// A publisher of real H.264 (and Opus-like audio), H.264 its only video codec: the access
    /// units of [`REAL_H264_GOP`] (320x240, 50 frames, an IDR with SPS/PPS first) at 50 fps,
    /// looped; a keyframe request makes the next frame the GOP's IDR, as an encoder answers a
    /// PLI. What an HLS muxer or a decoder needs (parameter sets, slices) is real.
    pub async fn publisher_real_h264() -> FakeBrowser {
        FakeBrowser::start(Direction::SendOnly, Profile::PublishRealH264, Codecs::H264Only).await
    }

    /// A publisher: sendonly audio + video.
    pub async fn publisher() -> FakeBrowser {
        FakeBrowser::start(Direction::SendOnly, Profile::Publish, Codecs::Default).await
    }

    /// A publisher that offers H.264 as its only video codec (and Opus), as Safari may.
    pub async fn publisher_h264() -> FakeBrowser {
        FakeBrowser::start(Direction::SendOnly, Profile::Publish, Codecs::H264Only).await
    }

    /// A publisher whose video looks like a VP8 encoder's to a recorder: a keyframe (with the
    /// RFC 6386 start code and a 320x240 size, 3000 bytes: several RTP packets) first, every 50
    /// frames and after each keyframe request (as a browser answers a PLI), delta frames of
    /// 700 bytes between.
    pub async fn publisher_vp8() -> FakeBrowser {
        FakeBrowser::start(Direction::SendOnly, Profile::PublishVp8, Codecs::Default).await
    }

    /// [`FakeBrowser::publisher_vp8`] whose keyframes are a real one ([`REAL_VP8_KEYFRAME`],
    /// 320x240, made by libvpx), so that a decoder (snapshots) can decode them; the delta frames
    /// stay filler. Keyframes only first and when asked for (PLI/FIR), never periodically.
    pub async fn publisher_real_vp8() -> FakeBrowser {
        FakeBrowser::start(Direction::SendOnly, Profile::PublishRealVp8, Codecs::Default).await
    }

    /// A player: recvonly audio + video.
    pub async fn player() -> FakeBrowser {
        FakeBrowser::start(Direction::RecvOnly, Profile::Play, Codecs::Default).await
    }

    /// A player that also offers PCMU and PCMA, as Chromium does (a camera's G.711 audio).
    pub async fn player_with_g711() -> FakeBrowser {
        FakeBrowser::start(Direction::RecvOnly, Profile::Play, Codecs::WithG711).await
    }

    /// A call's caller: sendrecv audio, PCMU only; its `offer` goes into the `call` message.
    pub async fn caller() -> FakeBrowser {
        let (socket, addr, mut rtc) = FakeBrowser::call_rtc().await;
        let mut api = rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendRecv, Some("call".into()), None, None);
        let (offer, pending) = api.apply().unwrap();
        FakeBrowser::spawn(rtc, socket, addr, offer.to_sdp_string(), Some(pending), Profile::Call, [audio, audio])
    }

    /// A call's callee: accepts the server's offer of an incoming call (its `setRemoteSDP`);
    /// returns the browser and the answer for the `answer` message.
    pub async fn callee(offer: &str) -> (FakeBrowser, String) {
        let (socket, addr, mut rtc) = FakeBrowser::call_rtc().await;
        let parsed = SdpOffer::from_sdp_string(offer).expect("the server's offer parses");
        let answer = rtc.sdp_api().accept_offer(parsed).expect("the server's offer is acceptable").to_sdp_string();
        let mid = offer
            .split("m=audio")
            .nth(1)
            .and_then(|m| m.lines().find_map(|l| l.trim().strip_prefix("a=mid:")))
            .map(|m| Mid::from(m.trim()))
            .expect("an audio m-line with a mid");
        let b = FakeBrowser::spawn(rtc, socket, addr, String::new(), None, Profile::Call, [mid, mid]);
        (b, answer)
    }

    /// A video call's caller: sendrecv audio (PCMU) and video (VP8).
    pub async fn video_caller() -> FakeBrowser {
        let (socket, addr, mut rtc) = FakeBrowser::call_rtc_with(true).await;
        let mut api = rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendRecv, Some("call".into()), None, None);
        let video = api.add_media(MediaKind::Video, Direction::SendRecv, Some("call".into()), None, None);
        let (offer, pending) = api.apply().unwrap();
        FakeBrowser::spawn(rtc, socket, addr, offer.to_sdp_string(), Some(pending), Profile::CallVideo, [audio, video])
    }

    /// A video call's callee: accepts the server's offer (audio and video m-lines).
    pub async fn video_callee(offer: &str) -> (FakeBrowser, String) {
        let (socket, addr, mut rtc) = FakeBrowser::call_rtc_with(true).await;
        let parsed = SdpOffer::from_sdp_string(offer).expect("the server's offer parses");
        let answer = rtc.sdp_api().accept_offer(parsed).expect("the server's offer is acceptable").to_sdp_string();
        let mid_of = |kind: &str| {
            offer
                .split(&format!("m={kind}"))
                .nth(1)
                .and_then(|m| m.lines().find_map(|l| l.trim().strip_prefix("a=mid:")))
                .map(|m| Mid::from(m.trim()))
                .unwrap_or_else(|| panic!("a {kind} m-line with a mid in {offer}"))
        };
        let mids = [mid_of("audio"), mid_of("video")];
        let b = FakeBrowser::spawn(rtc, socket, addr, String::new(), None, Profile::CallVideo, mids);
        (b, answer)
    }

    /// Sends a PLI for the video this browser receives (as Chromium does when its decoder
    /// needs a keyframe).
    pub fn request_keyframe(&self) {
        let _ = self.cmd.send(Cmd::RequestKeyframe);
    }

    async fn call_rtc() -> (UdpSocket, SocketAddr, Rtc) {
        FakeBrowser::call_rtc_with(false).await
    }

    async fn call_rtc_with(vp8: bool) -> (UdpSocket, SocketAddr, Rtc) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let provider = Arc::new(str0m::crypto::from_feature_flags());
        let mut rtc = Rtc::builder()
            .set_crypto_provider(provider)
            .clear_codecs()
            .enable_pcmu(true, false)
            .enable_vp8(vp8)
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        (socket, addr, rtc)
    }

    fn spawn(
        rtc: Rtc,
        socket: UdpSocket,
        addr: SocketAddr,
        offer: String,
        pending: Option<SdpPendingOffer>,
        profile: Profile,
        mids: [Mid; 2],
    ) -> FakeBrowser {
        let stats = Arc::new(Mutex::new(BrowserStats::default()));
        let (cmd, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(rtc, socket, rx, pending, stats.clone(), profile, mids));
        FakeBrowser { offer, addr, cmd, stats, task }
    }

    async fn start(dir: Direction, profile: Profile, codecs: Codecs) -> FakeBrowser {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let provider = Arc::new(str0m::crypto::from_feature_flags());
        let builder = Rtc::builder().set_crypto_provider(provider);
        let builder = match codecs {
            Codecs::Default => builder,
            Codecs::H264Only => builder.clear_codecs().enable_opus(true, false).enable_h264(true),
            Codecs::WithG711 => builder.enable_pcmu(true, false).enable_pcma(true, false),
        };
        let mut rtc = builder.build(Instant::now());
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut api = rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, dir, Some("cam".into()), None, None);
        let video = api.add_media(MediaKind::Video, dir, Some("cam".into()), None, None);
        let (offer, pending) = api.apply().unwrap();
        FakeBrowser::spawn(rtc, socket, addr, offer.to_sdp_string(), Some(pending), profile, [audio, video])
    }

    /// Applies the server's answer (from `setRemoteSDP`).
    pub fn accept(&self, answer: &str) {
        let _ = self.cmd.send(Cmd::Answer(answer.to_string()));
    }

    pub fn stats(&self) -> BrowserStats {
        self.stats.lock().clone()
    }

    /// Waits until `pred` holds for the stats (bounded by [`WAIT`]).
    pub async fn wait(&self, what: &str, pred: impl Fn(&BrowserStats) -> bool) -> BrowserStats {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = self.stats();
            if pred(&s) {
                return s;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("fake browser at {}: never saw {what}; stats {s:?}", self.addr);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Polls until `Timeout`, sending what comes out; returns the timeout.
async fn drain(rtc: &mut Rtc, socket: &UdpSocket, stats: &Mutex<BrowserStats>, mids: [Mid; 2]) -> Option<Instant> {
    loop {
        match rtc.poll_output() {
            Ok(Output::Timeout(t)) => return Some(t),
            Ok(Output::Transmit(t)) => {
                let _ = socket.send_to(&t.contents, t.destination).await;
            }
            Ok(Output::Event(e)) => {
                let mut s = stats.lock();
                match e {
                    Event::Connected => s.connected = true,
                    Event::MediaData(d) if d.mid == mids[0] => {
                        s.audio_frames += 1;
                        if s.audio_payloads.len() < KEPT_AUDIO_FRAMES {
                            s.audio_payloads.push(d.data.to_vec());
                        }
                    }
                    Event::MediaData(d) => {
                        if s.video_frames == 0 {
                            s.first_video_nal_types = h264_nal_types(&d.data);
                        }
                        s.video_frames += 1;
                        if d.data.first().is_some_and(|b| b & 0x01 == 0) {
                            s.keyframes_received += 1;
                        }
                    }
                    Event::KeyframeRequest(_) => s.keyframe_requests += 1,
                    _ => {}
                }
            }
            Err(_) => return None,
        }
    }
}

/// What the peer sends: a publisher opus + VP8 (`PublishVp8`: frames a recorder can mux, see
/// [`vp8_frame`]), a player nothing, a call's browser PCMU.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Profile {
    Publish,
    PublishVp8,
    PublishRealVp8,
    PublishRealH264,
    Play,
    Call,
    CallVideo,
}

async fn run(
    mut rtc: Rtc,
    socket: UdpSocket,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    mut pending: Option<SdpPendingOffer>,
    stats: Arc<Mutex<BrowserStats>>,
    profile: Profile,
    mids: [Mid; 2],
) {
    let mut answered_requests = 0;
    let local = socket.local_addr().unwrap();
    let sending = profile != Profile::Play;
    let kinds = if profile == Profile::Call { 1 } else { 2 };
    let mut buf = vec![0u8; 2048];
    let mut next_frame = Instant::now();
    let mut n: u64 = 0;
    let gop = if profile == Profile::PublishRealH264 { h264_access_units(REAL_H264_GOP) } else { Vec::new() };
    let mut gop_pos = 0;
    loop {
        let Some(timeout) = drain(&mut rtc, &socket, &stats, mids).await else { return };
        let connected = stats.lock().connected;
        let wake = if sending && connected { timeout.min(next_frame) } else { timeout };
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let Ok((len, src)) = r else { continue };
                if let Ok(recv) = Receive::new(Protocol::Udp, src, local, &buf[..len]) {
                    let _ = rtc.handle_input(Input::Receive(Instant::now(), recv));
                }
            }
            c = rx.recv() => match c {
                Some(Cmd::Answer(sdp)) => {
                    if let (Some(p), Ok(answer)) = (pending.take(), SdpAnswer::from_sdp_string(&sdp)) {
                        rtc.sdp_api().accept_answer(p, answer).expect("the server's answer is acceptable");
                    }
                }
                Some(Cmd::RequestKeyframe) => {
                    if let Some(rx) = rtc.direct_api().stream_rx_by_mid(mids[1], None) {
                        rx.request_keyframe(str0m::media::KeyframeRequestKind::Pli);
                    }
                }
                None => return,
            },
            _ = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                if sending && connected && now >= next_frame {
                    for (i, mid) in mids.into_iter().enumerate().take(kinds) {
                        let Some(w) = rtc.writer(mid) else { continue };
                        let Some((pt, codec)) = w.payload_params().next().map(|p| (p.pt(), p.spec().codec)) else {
                            continue;
                        };
                        let (hz, step) = match (profile, i) {
                            (Profile::Call, _) | (Profile::CallVideo, 0) => (8_000, 160),
                            (_, 0) => (48_000, 960),
                            _ => (90_000, 1800),
                        };
                        let t = MediaTime::new(n * step, Frequency::new(hz).unwrap());
                        // VP8: first byte with the P bit clear marks a keyframe; opus: any bytes;
                        // PCMU: 160 samples of silence (0xff).
                        let mut key = i == 1;
                        let payload = match (profile, i) {
                            (Profile::Call, _) | (Profile::CallVideo, 0) => vec![0xff; 160],
                            (_, 0) => vec![0xfc, n as u8, 1, 2, 3, 4, 5, 6, 7, 8],
                            (Profile::PublishVp8 | Profile::PublishRealVp8 | Profile::CallVideo, _) => {
                                let requests = stats.lock().keyframe_requests;
                                // The real keyframe: only first and when asked (so a test sees
                                // that a keyframe came because it was asked for).
                                let periodic = profile != Profile::PublishRealVp8 && n % 50 == 0;
                                key = n == 0 || periodic || requests > answered_requests;
                                answered_requests = requests;
                                if key && profile == Profile::PublishRealVp8 {
                                    REAL_VP8_KEYFRAME.to_vec()
                                } else {
                                    vp8_frame(key, n)
                                }
                            }
                            (Profile::PublishRealH264, _) => {
                                let requests = stats.lock().keyframe_requests;
                                if requests > answered_requests || gop_pos == gop.len() {
                                    gop_pos = 0;
                                }
                                answered_requests = requests;
                                key = gop_pos == 0;
                                gop_pos += 1;
                                gop[gop_pos - 1].clone()
                            }
                            // Annex B: a start code and an IDR slice NAL unit header.
                            _ if codec == str0m::format::Codec::H264 => {
                                vec![0, 0, 0, 1, 0x65, n as u8, 1, 2, 3, 4, 5, 6, 7, 8]
                            }
                            _ => vec![0x10, n as u8, 1, 2, 3, 4, 5, 6, 7, 8],
                        };
                        if w.write(pt, now, t, payload).is_ok() {
                            let mut s = stats.lock();
                            s.frames_sent += 1;
                            if i == 1 && profile != Profile::Call {
                                s.video_sent += 1;
                                s.keyframes_sent += usize::from(key);
                            }
                        }
                        if drain(&mut rtc, &socket, &stats, mids).await.is_none() {
                            return;
                        }
                    }
                    n += 1;
                    next_frame = now + Duration::from_millis(20);
                }
                let _ = rtc.handle_input(Input::Timeout(now));
            }
        }
    }
}

/// A closed GOP of real H.264 (Constrained Baseline, 320x240, 50 frames at 50 fps, one slice per
/// frame: SPS, PPS, SEI and IDR, then 49 P-frames), Annex B, encoded by x264
/// (`crates/media/testdata/make_h264_gop.py`).
pub const REAL_H264_GOP: &[u8] = include_bytes!("../../crates/media/testdata/gop-320x240.h264");

/// An Annex B H.264 stream cut into access units, each in Annex B: the NAL units up to and
/// including a slice (types 1 and 5), as the one-slice-per-frame [`REAL_H264_GOP`] is made.
pub fn h264_access_units(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut units = Vec::new();
    let mut au = Vec::new();
    for nal in annex_b_nal_units(stream) {
        au.extend_from_slice(&[0, 0, 0, 1]);
        au.extend_from_slice(nal);
        if matches!(nal[0] & 0x1f, 1 | 5) {
            units.push(std::mem::take(&mut au));
        }
    }
    units
}

/// The NAL units of an Annex B H.264 stream, without their start codes (`00 00 01` or
/// `00 00 00 01`); empty ones are skipped.
pub fn annex_b_nal_units(stream: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        // A NAL unit ends where the next start code begins (its leading zero byte, for four).
        let mut end = starts.get(k + 1).map_or(stream.len(), |&n| n - 3);
        if end > s && k + 1 < starts.len() && stream[end - 1] == 0 {
            end -= 1;
        }
        if end > s {
            nals.push(&stream[s..end]);
        }
    }
    nals
}

/// A real VP8 keyframe, 320x240, encoded by libvpx's `vpxenc` from colour bars
/// (`crates/media/testdata/make_vp8_keyframes.sh`).
pub const REAL_VP8_KEYFRAME: &[u8] = include_bytes!("../../crates/media/testdata/keyframe-320x240.vp8");

/// A VP8 frame as an encoder makes it, as far as a recorder looks (RFC 6386 §9.1): a keyframe
/// has P = 0 in its frame tag, the start code 9d 01 2a and its size (320x240); a delta frame
/// has P = 1. The rest is filler that numbers the frame.
pub fn vp8_frame(key: bool, n: u64) -> Vec<u8> {
    let mut f = vec![n as u8; if key { 3000 } else { 700 }];
    if key {
        f[..10].copy_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]);
    } else {
        f[0] = 0x11;
    }
    f
}
