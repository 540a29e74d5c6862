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
//! Layout: this file has the URL handling and the table of pulls; `pull` the task of one camera.
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
//!   address). After that a drop is retried with backoff ([`pull::BACKOFF_FIRST`] doubling to
//!   [`pull::BACKOFF_MAX`], [`pull::MAX_RETRIES`] in a row) while players stay `PLAYING`; then they get
//!   `FAILED` [`proto_info::RTSP_SOURCE_LOST`].
//! - **Credentials** in the URL never leave this module: the stream object, hooks, client
//!   frames and logs see [`mask`]ed URLs; retina gets them as `Credentials`, the URL without.
//! - **The camera's address** goes through the SSRF guard (`[security] allowed_private_ranges`,
//!   `crate::netguard`), as every URL a client chooses: resolved once, every address checked,
//!   and the connection goes to the checked address.

use std::collections::HashMap;
use std::sync::Arc;

use callgate_media::PeerId;
use callgate_proto::info as proto_info;
use parking_lot::Mutex;
use retina::client::Credentials;
use tokio::sync::watch;
use url::Url;

use super::Streams;
use crate::netguard::Guard;

mod pull;

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
    /// Players whose client stopped them while they waited (they got their `STOPPED`): the
    /// waiting task hears it once ([`Pulls::take_cancelled`]) and says nothing more.
    cancelled: std::collections::HashSet<PeerId>,
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
        t.cancelled.clear();
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
    pub fn cancel_waiting(&self, session_id: &str, stream_id: &str) -> bool {
        let peer = {
            let t = self.table.lock();
            t.by_player
                .iter()
                .find(|(_, m)| &*m.session_id == session_id && &*m.stream_id == stream_id)
                .map(|(p, _)| *p)
        };
        if let Some(peer) = peer {
            self.table.lock().cancelled.insert(peer);
            self.leave(peer);
        }
        peer.is_some()
    }

    /// Whether player `peer` was stopped by its client while it waited (true once).
    pub fn take_cancelled(&self, peer: PeerId) -> bool {
        self.table.lock().cancelled.remove(&peer)
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
    pull::spawn(streams, u.clone(), peer, state_tx, stop_rx);
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
}
