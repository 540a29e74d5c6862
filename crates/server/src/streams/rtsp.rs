//! `playStream` of an `rtsp://` name: the camera is pulled once per URL (retina: DESCRIBE,
//! SETUP over interleaved TCP, PLAY), and every player of that URL attaches to the one media
//! source it feeds, as to a WebRTC publisher (`callgate_media::source`).
//!
//! ```text
//! play(rtsp://…) ─ playRTSP hook ─> join(url) ──(first player)──> pull task: connect, Live
//!                                    │ waits for Live / Failed(info)       │ frames -> media source
//!                                    └─> directory (player), media.play(source)  │ camera drops:
//! stream ends ─> leave(id): last player ─> stop ─> the task ends, source closed   reconnect w/ backoff
//! ```
//!
//! - **Once per URL**: [`Pulls`] maps the URL (with its credentials: two accounts are two
//!   pulls) to its pull (media source, players, state). Its lock is short, and taken after the
//!   directory's (a waiting player's membership is checked as it is added), never before it.
//! - **Video**: H.264 only, passed through (access units repacketized, see
//!   `callgate_media::source`); the last keyframe is replayed to each player as it connects.
//!   **Audio**: PCMU/PCMA passed through; anything else (AAC, Opus: retina has no Opus
//!   depacketizer) is not set up, players get video only.
//! - **Failures** before the first keyframe (or first audio frame) end the waiting players with
//!   a clear `FAILED` info (401, unreachable, other RTSP status, no supported codec, refused
//!   address). After that a drop is retried with backoff ([`BACKOFF_FIRST`] doubling to
//!   [`BACKOFF_MAX`], [`MAX_RETRIES`] in a row) while players stay `PLAYING`; then they get
//!   `FAILED` [`proto_info::RTSP_SOURCE_LOST`].
//! - **Credentials** in the URL never leave this module: the stream object, hooks, client
//!   frames and logs see [`mask`]ed URLs; retina gets them as `Credentials`, the URL without.
//! - **The camera's address** goes through the SSRF guard (`[security] allowed_private_ranges`,
//!   `crate::netguard`), as every URL a client chooses: resolved once, every address checked,
//!   and the connection goes to the checked address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use callgate_hooks::Origin;
use callgate_media::core::SourceFrame;
use callgate_media::source::{self, MediaKind, SourceCodec};
use callgate_media::{MediaEndpoint, PeerId};
use callgate_proto::info as proto_info;
use futures_util::StreamExt;
use parking_lot::Mutex;
use retina::client::{Credentials, PlayOptions, Session, SessionOptions, SetupOptions, Transport};
use retina::codec::{CodecItem, FrameFormat, ParameterSetInsertion, ParametersRef};
use tokio::sync::watch;
use url::Url;

use super::{end_stream, Ending, Streams};
use crate::netguard::Guard;

/// DESCRIBE to PLAY: a camera slower than this is taken as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// PLAY to the first keyframe (the first frame without video): longer than any GOP a camera
/// is usually set to (1-10 s).
pub const FIRST_MEDIA_TIMEOUT: Duration = Duration::from_secs(20);
/// The first wait before reconnecting to a camera that dropped.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(500);
/// The longest wait between reconnects.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Reconnects in a row that may fail before the players are told the source is lost.
pub const MAX_RETRIES: u32 = 8;
/// A camera that sends nothing for this long (no frame, no RTCP) is taken as gone.
const SILENCE_LIMIT: Duration = Duration::from_secs(10);

/// An `rtsp://` stream name, split.
#[derive(Clone)]
pub(super) struct RtspUrl {
    /// The name as the client (or the backend) gave it: the pull's key.
    key: String,
    /// What retina connects to: the URL without credentials.
    url: Url,
    creds: Option<Credentials>,
    /// The name everyone else sees ([`mask`]).
    pub masked: String,
}

impl std::fmt::Debug for RtspUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.masked)
    }
}

/// Whether a stream name is an RTSP URL (the scheme compared case-insensitively).
pub(super) fn is_rtsp(name: &str) -> bool {
    name.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("rtsp://"))
}

/// `name` with the user and password of its URL replaced by `***` (`rtsp://***@cam/live`); a
/// name without them is unchanged.
pub fn mask(name: &str) -> String {
    crate::secrets::mask_url_credentials(name).into_owned()
}

/// Parses an `rtsp://` name; `None` when it is not a usable RTSP URL.
pub(super) fn parse(name: &str) -> Option<RtspUrl> {
    let mut url = Url::parse(name).ok()?;
    if url.scheme() != "rtsp" || url.host_str().is_none_or(str::is_empty) {
        return None;
    }
    let decode = |s: &str| percent_decode(s);
    let creds = (!url.username().is_empty() || url.password().is_some()).then(|| Credentials {
        username: decode(url.username()),
        password: url.password().map(decode).unwrap_or_default(),
    });
    url.set_username("").ok()?;
    url.set_password(None).ok()?;
    Some(RtspUrl { key: name.to_string(), url, creds, masked: mask(name) })
}

/// RFC 3986 percent-decoding of a URL's user or password (`%40` -> `@`); bad escapes stay.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where a pull is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PullState {
    Connecting,
    /// The media source exists and has media: players may attach.
    Live,
    /// The pull ended before it was live: the waiting players get `FAILED` with this info.
    Failed(String),
}

/// One pulled camera.
struct Pull {
    peer: PeerId,
    /// Its players' media peers (waiting or attached): unique on the node, where stream ids are
    /// only unique among the directory's streams (a waiting player is not there yet).
    players: Vec<PeerId>,
    state: watch::Receiver<PullState>,
    stop: watch::Sender<bool>,
}

/// Every pull of the node, by URL (see the module docs).
#[derive(Default)]
pub(super) struct Pulls {
    table: Mutex<Table>,
    /// `[security] allowed_private_ranges`: where cameras may be.
    pub guard: Guard,
}

#[derive(Default)]
struct Table {
    by_url: HashMap<String, Pull>,
    by_player: HashMap<PeerId, Member>,
}

/// A player of a pull: the pull's key, and whose stream it is.
struct Member {
    key: String,
    session_id: Arc<str>,
    stream_id: Arc<str>,
}

impl Pulls {
    pub fn new(guard: Guard) -> Pulls {
        Pulls { table: Mutex::default(), guard }
    }

    /// Pulls running (a metric and tests).
    pub fn len(&self) -> usize {
        self.table.lock().by_url.len()
    }

    /// Stops every pull (server shutdown).
    pub fn stop_all(&self) {
        let mut t = self.table.lock();
        t.by_player.clear();
        for (_, p) in t.by_url.drain() {
            let _ = p.stop.send(true);
        }
    }

    /// Player `peer`'s stream ended (or never got added): it leaves its pull, and the last
    /// player stops it.
    pub fn leave(&self, peer: PeerId) {
        let mut t = self.table.lock();
        let Some(m) = t.by_player.remove(&peer) else { return };
        let empty = match t.by_url.get_mut(&m.key) {
            Some(p) => {
                p.players.retain(|x| *x != peer);
                p.players.is_empty()
            }
            None => false,
        };
        if empty {
            if let Some(p) = t.by_url.remove(&m.key) {
                tracing::info!(source = p.peer.0, "last player left: RTSP pull stops");
                let _ = p.stop.send(true);
            }
        }
    }

    /// `stopStream` of a stream that is not in the directory: if it is a player still waiting
    /// for its camera, it leaves (and will not be added when the camera is up).
    pub fn cancel_waiting(&self, session_id: &str, stream_id: &str) {
        let peer = {
            let t = self.table.lock();
            t.by_player
                .iter()
                .find(|(_, m)| &*m.session_id == session_id && &*m.stream_id == stream_id)
                .map(|(p, _)| *p)
        };
        if let Some(peer) = peer {
            self.leave(peer);
        }
    }

    /// Whether player `peer` is still a player of a pull (not left, not cancelled).
    pub fn holds(&self, peer: PeerId) -> bool {
        self.table.lock().by_player.contains_key(&peer)
    }

    /// Takes pull `peer` of `key` out of the table (the task ends it); returns its players
    /// (media peer, stream id).
    fn take(&self, key: &str, peer: PeerId) -> Vec<(PeerId, Arc<str>)> {
        let mut t = self.table.lock();
        if t.by_url.get(key).is_none_or(|p| p.peer != peer) {
            return Vec::new();
        }
        let p = t.by_url.remove(key).expect("checked above");
        p.players.iter().filter_map(|pl| t.by_player.remove(pl).map(|m| (*pl, m.stream_id))).collect()
    }
}

/// The player with media peer `player` (stream `stream_id` of session `session_id`) joins the
/// pull of `u`, which starts if it is the first: the pull's media source and its state.
pub(super) fn join(
    streams: &Arc<Streams>,
    u: &RtspUrl,
    player: PeerId,
    session_id: Arc<str>,
    stream_id: Arc<str>,
) -> (PeerId, watch::Receiver<PullState>) {
    let mut t = streams.pulls.table.lock();
    t.by_player.insert(player, Member { key: u.key.clone(), session_id, stream_id });
    if let Some(p) = t.by_url.get_mut(&u.key) {
        p.players.push(player);
        return (p.peer, p.state.clone());
    }
    let peer = streams.media.next_peer_id();
    let (state_tx, state) = watch::channel(PullState::Connecting);
    let (stop, stop_rx) = watch::channel(false);
    t.by_url.insert(u.key.clone(), Pull { peer, players: vec![player], state: state.clone(), stop });
    drop(t);
    tracing::info!(source = peer.0, url = %u.masked, "RTSP pull starts");
    let task = PullTask {
        streams: Arc::downgrade(streams),
        media: streams.media.clone(),
        guard: streams.pulls.guard.clone(),
        u: u.clone(),
        peer,
        state: state_tx,
        added: false,
        clock: Default::default(),
    };
    tokio::spawn(task.run(stop_rx));
    (peer, state)
}

/// Waits until the pull is live or has failed.
pub(super) async fn ready(state: &mut watch::Receiver<PullState>) -> Result<(), String> {
    loop {
        match &*state.borrow_and_update() {
            PullState::Live => return Ok(()),
            PullState::Failed(info) => return Err(info.clone()),
            PullState::Connecting => {}
        }
        if state.changed().await.is_err() {
            // The task ended without a word (stopped: every player left meanwhile).
            return Err(proto_info::RTSP_SOURCE_LOST.to_string());
        }
    }
}

/// Why a session ended.
#[derive(Debug)]
struct Failure {
    /// The client-facing info (never the URL).
    info: String,
    /// For the log: retina's text (its first line; the URL it has holds no credentials).
    detail: String,
}

impl Failure {
    fn new(info: impl Into<String>, detail: impl Into<String>) -> Failure {
        Failure { info: info.into(), detail: detail.into() }
    }

    fn from_retina(e: &retina::Error) -> Failure {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default().to_string();
        let info = match e.status_code() {
            Some(401) => proto_info::RTSP_UNAUTHORIZED.to_string(),
            // A 2xx whose content retina could not use (bad SDP, Transport) is a protocol error.
            Some(code) if code >= 300 => proto_info::rtsp_status(code),
            None if text.starts_with("Unable to connect") => proto_info::RTSP_UNREACHABLE.to_string(),
            _ => proto_info::rtsp_failed(&first),
        };
        Failure { info, detail: first }
    }
}

struct PullTask {
    streams: Weak<Streams>,
    media: MediaEndpoint,
    guard: Guard,
    u: RtspUrl,
    peer: PeerId,
    state: watch::Sender<PullState>,
    /// The media source exists (made once, on the first successful session; kept across
    /// reconnects, so attached players stay attached).
    added: bool,
    /// RTP timestamps the players get, per kind (`MediaKind` audio 0, video 1): a new session
    /// starts its own clock, which is shifted to go on from the last one (players keep their
    /// SSRC across reconnects, and a jump in it would stall their jitter buffers).
    clock: [TsClock; 2],
}

/// Maps one session's timestamps onto the players' continuous ones.
#[derive(Debug, Default, Clone, Copy)]
struct TsClock {
    /// The last timestamp given out.
    last_out: Option<u32>,
    /// This session's first timestamp and what it maps to.
    base: Option<(i64, u32)>,
}

impl TsClock {
    /// A new session begins: its first frame goes on `step` after the last one given out.
    fn new_session(&mut self) {
        self.base = None;
    }

    fn map(&mut self, ts: i64, step: u32) -> u32 {
        let (first, start) = *self.base.get_or_insert_with(|| {
            let start = self.last_out.map_or(ts as u32, |l| l.wrapping_add(step));
            (ts, start)
        });
        let out = start.wrapping_add(ts.wrapping_sub(first) as u32);
        self.last_out = Some(out);
        out
    }
}

impl PullTask {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        metrics::gauge!("callgate_rtsp_pulls").increment(1.0);
        let mut retries = 0u32;
        let mut backoff = BACKOFF_FIRST;
        loop {
            let mut live = false;
            let ended = tokio::select! {
                r = self.session(&mut live) => r,
                _ = stop.changed() => break,
            };
            let Err(f) = ended else { break };
            metrics::counter!("callgate_rtsp_session_failures_total").increment(1);
            if *self.state.borrow() != PullState::Live {
                // Never got live: the waiting players get why.
                tracing::info!(source = self.peer.0, url = %self.u.masked, info = %f.info, detail = %f.detail, "RTSP pull failed");
                self.streams.upgrade().map(|s| s.pulls.take(&self.u.key, self.peer));
                let _ = self.state.send(PullState::Failed(f.info));
                break;
            }
            if live {
                // This session delivered media: a new series of retries.
                retries = 0;
                backoff = BACKOFF_FIRST;
            }
            retries += 1;
            if retries > MAX_RETRIES {
                tracing::info!(source = self.peer.0, url = %self.u.masked, info = %f.info, "RTSP source lost: players fail");
                if let Some(streams) = self.streams.upgrade() {
                    let info = format!("{}: {}", proto_info::RTSP_SOURCE_LOST, f.info);
                    for (player, id) in streams.pulls.take(&self.u.key, self.peer) {
                        end_stream(&streams, &id, Some(player), Ending::MediaFailed(&info), Origin::Client);
                    }
                }
                break;
            }
            tracing::info!(source = self.peer.0, url = %self.u.masked, info = %f.info, detail = %f.detail, retry = retries, wait_ms = backoff.as_millis() as u64, "RTSP source dropped: reconnecting");
            metrics::counter!("callgate_rtsp_reconnects_total").increment(1);
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => break,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        if self.added {
            self.media.close(self.peer);
        }
        metrics::gauge!("callgate_rtsp_pulls").decrement(1.0);
        tracing::info!(source = self.peer.0, url = %self.u.masked, "RTSP pull stopped");
    }

    /// One RTSP session, from DESCRIBE until the camera stops or fails (always an `Err`: a
    /// pull only ends by being stopped). `live` is set once it delivered media.
    async fn session(&mut self, live: &mut bool) -> Result<(), Failure> {
        let url = self.checked_url().await?;
        let mut opts = SessionOptions::default().user_agent(format!("callgate/{}", env!("CARGO_PKG_VERSION")));
        if let Some(c) = &self.u.creds {
            opts = opts.creds(Some(c.clone()));
        }
        let connect = async {
            let mut session = Session::describe(url, opts).await.map_err(|e| Failure::from_retina(&e))?;
            let chosen = choose(session.streams().iter().map(|s| (s.media(), s.encoding_name(), s.parameters())));
            let (video, audio) = match chosen {
                Ok(c) => c,
                Err(found) => return Err(Failure::new(proto_info::rtsp_unsupported_codecs(&found), found)),
            };
            let format =
                FrameFormat { parameter_set_insertion: ParameterSetInsertion::EachKeyFrame, ..FrameFormat::MP4 };
            let mut codecs = Vec::new();
            for (i, codec) in video.into_iter().chain(audio) {
                let opts = SetupOptions::default().transport(Transport::Tcp(Default::default())).frame_format(format);
                session.setup(i, opts).await.map_err(|e| Failure::from_retina(&e))?;
                codecs.push((i, codec));
            }
            let playing = session.play(PlayOptions::default()).await.map_err(|e| Failure::from_retina(&e))?;
            let demuxed = playing.demuxed().map_err(|e| Failure::from_retina(&e))?;
            Ok::<_, Failure>((demuxed, codecs))
        };
        let (mut demuxed, codecs) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| Failure::new(proto_info::RTSP_UNREACHABLE, "no answer in time"))??;
        metrics::counter!("callgate_rtsp_sessions_total").increment(1);
        if !self.added {
            let list: Vec<SourceCodec> = codecs.iter().map(|(_, c)| *c).collect();
            self.media
                .add_source(self.peer, list)
                .await
                .map_err(|e| Failure::new(proto_info::rtsp_failed(&e), e.to_string()))?;
            self.added = true;
        }
        let has_video = codecs.iter().any(|(_, c)| c.kind() == MediaKind::Video);
        for c in &mut self.clock {
            c.new_session();
        }
        let first_by = tokio::time::Instant::now() + FIRST_MEDIA_TIMEOUT;
        loop {
            let limit = if *live { tokio::time::Instant::now() + SILENCE_LIMIT } else { first_by };
            let item = match tokio::time::timeout_at(limit, demuxed.next()).await {
                Err(_) if *live => return Err(Failure::new(proto_info::RTSP_SOURCE_LOST, "the camera went silent")),
                Err(_) => return Err(Failure::new(proto_info::rtsp_failed("no media in time"), "no media in time")),
                Ok(None) => return Err(Failure::new(proto_info::RTSP_SOURCE_LOST, "the camera ended the session")),
                Ok(Some(Err(e))) => return Err(Failure::from_retina(&e)),
                Ok(Some(Ok(item))) => item,
            };
            let frame = match item {
                CodecItem::VideoFrame(f) => {
                    let Some(&(_, codec)) = codecs.iter().find(|(i, _)| *i == f.stream_id()) else { continue };
                    if codec.kind() != MediaKind::Video {
                        continue;
                    }
                    let keyframe = f.is_random_access_point();
                    let nals = source::avc_nal_units(f.data());
                    let payloads = source::packetize_h264(nals, source::MAX_PAYLOAD);
                    SourceFrame {
                        kind: MediaKind::Video,
                        // One frame at 30 fps after the last one of the previous session.
                        ts: self.clock[1].map(f.timestamp().timestamp(), 3000),
                        keyframe,
                        payloads: payloads.into_iter().map(Arc::from).collect(),
                    }
                }
                CodecItem::AudioFrame(f) => {
                    if !codecs.iter().any(|(i, c)| *i == f.stream_id() && c.kind() == MediaKind::Audio) {
                        continue;
                    }
                    SourceFrame {
                        kind: MediaKind::Audio,
                        // 20 ms at 8 kHz (G.711) after the last one of the previous session.
                        ts: self.clock[0].map(f.timestamp().timestamp(), 160),
                        keyframe: false,
                        payloads: vec![Arc::from(f.data())],
                    }
                }
                _ => continue,
            };
            // Live once players can start decoding: the first keyframe (video), else the first frame.
            let starts = if has_video { frame.keyframe } else { true };
            self.media
                .source_frame(self.peer, frame)
                .await
                .map_err(|e| Failure::new(proto_info::rtsp_failed(&e), e.to_string()))?;
            if starts && !*live {
                *live = true;
                if *self.state.borrow() != PullState::Live {
                    tracing::info!(source = self.peer.0, url = %self.u.masked, "RTSP pull live");
                    let _ = self.state.send(PullState::Live);
                }
            }
        }
    }

    /// The URL with its host resolved and checked by the SSRF guard; the connection goes to
    /// the checked address.
    async fn checked_url(&self) -> Result<Url, Failure> {
        let mut url = self.u.url.clone();
        let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']).to_string();
        let port = url.port().unwrap_or(554);
        let addrs: Vec<SocketAddr> =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((host.as_str(), port)))
                .await
                .map_err(|_| Failure::new(proto_info::RTSP_UNREACHABLE, "name resolution timed out"))?
                .map_err(|e| Failure::new(proto_info::RTSP_UNREACHABLE, format!("name resolution: {e}")))?
                .collect();
        let Some(first) = addrs.first() else {
            return Err(Failure::new(proto_info::RTSP_UNREACHABLE, "the name has no address"));
        };
        for a in &addrs {
            if let Err(r) = self.guard.check(&host, a.ip()) {
                return Err(Failure::new(proto_info::rtsp_refused_address(&r), r.to_string()));
            }
        }
        if url.set_ip_host(first.ip()).is_err() {
            return Err(Failure::new(proto_info::RTSP_BAD_URL, "cannot set the host"));
        }
        Ok(url)
    }
}

/// The camera's stream index and codec of the video and of the audio to set up.
type Chosen = (Option<(usize, SourceCodec)>, Option<(usize, SourceCodec)>);

/// Picks the streams to set up from the camera's `(media, encoding name, parameters)`: the
/// first H.264 video and the first PCMU/PCMA audio, as `(index, codec)`. `Err` lists what the
/// camera offers when nothing is usable.
fn choose<'a>(streams: impl Iterator<Item = (&'a str, &'a str, Option<ParametersRef<'a>>)>) -> Result<Chosen, String> {
    let (mut video, mut audio, mut found) = (None, None, Vec::new());
    for (i, (media, encoding, params)) in streams.enumerate() {
        found.push(format!("{media}/{encoding}"));
        match (media, encoding.to_ascii_lowercase().as_str()) {
            ("video", "h264") if video.is_none() => {
                let profile_level_id = match params {
                    Some(ParametersRef::Video(v)) => profile_of(v.rfc6381_codec()),
                    _ => None,
                };
                video = Some((i, SourceCodec::H264 { profile_level_id }));
            }
            ("audio", "pcmu") if audio.is_none() => audio = Some((i, SourceCodec::Pcmu)),
            ("audio", "pcma") if audio.is_none() => audio = Some((i, SourceCodec::Pcma)),
            _ => {}
        }
    }
    if video.is_none() && audio.is_none() {
        return Err(if found.is_empty() { "no streams".to_string() } else { found.join(", ") });
    }
    Ok((video, audio))
}

/// `avc1.4D401E` -> `0x4d401e`.
fn profile_of(rfc6381: &str) -> Option<u32> {
    let hex = rfc6381.strip_prefix("avc1.")?;
    (hex.len() == 6).then(|| u32::from_str_radix(hex, 16).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked_and_kept_apart() {
        assert_eq!(mask("rtsp://admin:s3cret@10.0.0.5:554/live?x=1"), "rtsp://***@10.0.0.5:554/live?x=1");
        assert_eq!(mask("rtsp://cam/live"), "rtsp://cam/live");
        assert_eq!(mask("rtsp://cam/a@b"), "rtsp://cam/a@b", "an @ in the path is not userinfo");
        assert_eq!(mask("not a url"), "not a url");
        let u = parse("rtsp://us%40r:p%3Ass@127.0.0.1:8554/test").expect("valid");
        let c = u.creds.as_ref().expect("credentials");
        assert_eq!((c.username.as_str(), c.password.as_str()), ("us@r", "p:ss"));
        assert_eq!(u.url.as_str(), "rtsp://127.0.0.1:8554/test");
        assert_eq!(u.masked, "rtsp://***@127.0.0.1:8554/test");
        assert!(!format!("{u:?}").contains("p%3Ass"));
        assert!(parse("rtsp:///nohost").is_none());
        assert!(parse("http://cam/x").is_none());
        assert!(is_rtsp("RTSP://cam/x") && !is_rtsp("rtmp://cam/x"));
        assert_eq!(percent_decode("a%zz%4"), "a%zz%4", "bad escapes stay");
    }

    #[test]
    fn timestamps_go_on_across_sessions() {
        let mut c = TsClock::default();
        c.new_session();
        assert_eq!(c.map(1_000_000, 3000), 1_000_000, "the first session keeps its clock");
        assert_eq!(c.map(1_003_000, 3000), 1_003_000);
        c.new_session();
        assert_eq!(c.map(77, 3000), 1_006_000, "a reconnect goes on one frame later");
        assert_eq!(c.map(3077, 3000), 1_009_000);
        c.new_session();
        c.last_out = Some(u32::MAX - 1000);
        assert_eq!(c.map(5, 3000), 1999, "wrapping");
        assert_eq!(c.map(-3000i64 + 5, 3000), 1999u32.wrapping_sub(3000), "a camera clock going back stays relative");
    }

    #[test]
    fn h264_and_g711_are_chosen_and_the_rest_is_named() {
        let got =
            choose([("audio", "mpeg4-generic", None), ("video", "H264", None), ("audio", "PCMA", None)].into_iter());
        let (v, a) = got.expect("usable");
        assert_eq!(v, Some((1, SourceCodec::H264 { profile_level_id: None })));
        assert_eq!(a, Some((2, SourceCodec::Pcma)));
        let err = choose([("video", "h265", None), ("audio", "mpeg4-generic", None)].into_iter()).unwrap_err();
        assert_eq!(err, "video/h265, audio/mpeg4-generic");
        assert_eq!(profile_of("avc1.4D401E"), Some(0x4d401e));
        assert_eq!(profile_of("avc1.zz"), None);
    }
}
