//! HLS / Low-Latency HLS output (`[hls]`): every stream published on this node at
//! `GET /<stream>/index.m3u8` on the HTTP port, with `init.mp4`, `seg<N>.m4s` and
//! `part<N>.<i>.m4s` beside it (the muxer: `callgate_media::hls`).
//!
//! ```text
//! GET /<stream>/<file> ─> player = (client IP, stream asked for): decision cached?
//!        │ no: playHLS hook ([hls] app_key, restClientConfig from [hls]) -> allow (OVERWRITE may
//!        │     rewrite name) | refuse -> 403 <reason>; kept player_cache_s either way
//!        v
//!  muxer of the (rewritten) name: running? else the directory's publisher -> media.hls(peer)
//!        │ (the core taps the publisher like a recorder, a muxer thread cuts parts/segments)
//!        v
//!  index.m3u8 (blocking reload: _HLS_msn/_HLS_part wait for that part) | init.mp4 | seg | part
//! janitor per muxer: no request for idle_timeout_s -> stopped; stream ended -> ENDLIST served
//! ended_linger_s, then forgotten.
//! ```
//!
//! An HLS player is not a stream of the directory: it gets no StreamStatusEvent and is not in
//! `/stream/find`; its hook is its only trace at the backend.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path as UrlPath, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use callgate_hooks::{App, HookMethod, Origin, RestClientConfig};
use callgate_media::hls::{HlsConfig, HlsOutput, Segmenter};
use callgate_media::PeerId;
use parking_lot::Mutex;
use serde_json::{Map, Value};

use super::Streams;
use crate::config::HlsSection;
use crate::party::NodeInfo;
use crate::wire::ConnAddrs;

/// Players whose decision is cached, at most (expired ones are pruned first; past it the
/// oldest half goes).
const MAX_PLAYERS: usize = 10_000;

/// The longest stream name (or percent-decoded camera URL) served, in bytes.
const MAX_NAME: usize = 1024;

/// The node's HLS output.
pub struct Hls {
    media: HlsConfig,
    idle: Duration,
    linger: Duration,
    cache_for: Duration,
    first_wait: Duration,
    streams: Arc<Streams>,
    node: Arc<NodeInfo>,
    app: Option<Arc<App>>,
    rcc: Arc<RestClientConfig>,
    muxers: Mutex<HashMap<String, Arc<Muxer>>>,
    /// One muxer is started at a time (two first requests for a stream start one muxer).
    starting: tokio::sync::Mutex<()>,
    players: Mutex<HashMap<(IpAddr, String), Decision>>,
}

struct Muxer {
    /// The publisher, or the pulled source of an `rtsp://` name.
    peer: PeerId,
    /// What keeps this muxer's source running, left when the muxer stops: its membership of
    /// a camera's pull or of a cluster relay (as a player's).
    member: Option<Member>,
    out: Arc<HlsOutput>,
    last_request: Mutex<Instant>,
    /// Requests being answered (a blocking playlist request may wait seconds): a muxer with
    /// one is not idle.
    busy: std::sync::atomic::AtomicUsize,
}

/// A muxer's membership of the pull that feeds it.
enum Member {
    /// Of an `rtsp://` camera's pull (`streams::rtsp`), by this id.
    Camera(PeerId),
    /// Of the relay pulling a stream published on another node (`streams::relay`), by this id.
    Relay(Arc<str>),
}

impl Member {
    fn leave(&self, streams: &Streams, name: &str) {
        match self {
            Member::Camera(id) => streams.pulls.leave(*id),
            Member::Relay(id) => super::relay::player_left(streams, name, id),
        }
    }
}

/// A request in [`Muxer::busy`] while it lives; its end counts as a request too.
struct Busy<'a>(&'a Muxer);

impl<'a> Busy<'a> {
    fn new(m: &'a Muxer) -> Busy<'a> {
        m.busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *m.last_request.lock() = Instant::now();
        Busy(m)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        *self.0.last_request.lock() = Instant::now();
        self.0.busy.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[derive(Clone)]
struct Decision {
    result: Result<String, String>,
    until: Instant,
}

impl Hls {
    /// `None` when `[hls] enabled = false`. `app`: `[hls] app_key`'s app (`None`: no hook runs).
    pub fn from_config(
        cfg: &HlsSection,
        streams: Arc<Streams>,
        node: Arc<NodeInfo>,
        app: Option<Arc<App>>,
    ) -> Option<Arc<Hls>> {
        if !cfg.enabled {
            return None;
        }
        if app.is_none() {
            tracing::warn!(
                app_key = cfg.app_key,
                "hls.app_key names no app: HLS players are served without a playHLS hook"
            );
        }
        let mut entry = Map::new();
        entry.insert("restOnError".into(), cfg.rest_on_error.to_ascii_uppercase().into());
        entry.insert("restPolicy".into(), cfg.rest_policy.to_ascii_uppercase().into());
        entry.insert("restOverwrite".into(), cfg.rest_overwrite.clone().into());
        let mut rcc = Map::new();
        rcc.insert(HookMethod::PlayHls.url_name().into(), Value::Object(entry));
        let (rcc, warnings) = RestClientConfig::parse(Some(&Value::Object(rcc)));
        for w in warnings {
            tracing::warn!(warning = %w, "[hls] hook settings");
        }
        Some(Arc::new(Hls {
            media: HlsConfig {
                segment: Duration::from_millis(cfg.segment_ms),
                part: Duration::from_millis(cfg.part_ms),
                window: cfg.window,
            },
            idle: Duration::from_secs(cfg.idle_timeout_s.max(1)),
            linger: Duration::from_secs(cfg.ended_linger_s),
            cache_for: Duration::from_secs(cfg.player_cache_s),
            first_wait: Duration::from_millis(cfg.first_segment_wait_ms),
            streams,
            node,
            app,
            rcc: Arc::new(rcc),
            muxers: Mutex::new(HashMap::new()),
            starting: tokio::sync::Mutex::new(()),
            players: Mutex::new(HashMap::new()),
        }))
    }

    /// Streams being muxed now.
    pub fn muxers(&self) -> usize {
        self.muxers.lock().len()
    }

    /// The player's decision: the stream to play, or why not. The `playHLS` hook runs for a
    /// player (client IP + stream asked for) with no decision in the last `player_cache_s`.
    async fn decide(&self, ip: IpAddr, stream: &str) -> Result<String, String> {
        let key = (ip, stream.to_string());
        let now = Instant::now();
        if let Some(d) = self.players.lock().get(&key).filter(|d| d.until > now) {
            return d.result.clone();
        }
        let result = self.hook(ip, stream).await;
        let mut players = self.players.lock();
        if players.len() >= MAX_PLAYERS {
            players.retain(|_, d| d.until > now);
            if players.len() >= MAX_PLAYERS {
                let mut untils: Vec<Instant> = players.values().map(|d| d.until).collect();
                untils.sort_unstable();
                let cut = untils[untils.len() / 2];
                players.retain(|_, d| d.until > cut);
            }
        }
        players.insert(key, Decision { result: result.clone(), until: Instant::now() + self.cache_for });
        result
    }

    async fn hook(&self, ip: IpAddr, stream: &str) -> Result<String, String> {
        metrics::counter!("callgate_hls_players_total").increment(1);
        let Some(app) = &self.app else { return Ok(stream.to_string()) };
        let session = format!("hls:/{ip}");
        // An RTSP URL's credentials are never shown (as for playRTSP): the backend sees the
        // masked name; keeping it means the URL asked for.
        let shown = if super::rtsp::is_rtsp(stream) { super::rtsp::mask(stream) } else { stream.to_string() };
        let mut data = Map::new();
        data.insert("nodeId".into(), Value::from(&*self.node.id));
        data.insert("appKey".into(), Value::from(&*app.key));
        data.insert("sessionId".into(), Value::from(session.as_str()));
        data.insert("mediaSessionId".into(), Value::from(uuid::Uuid::new_v4().to_string()));
        data.insert("name".into(), Value::from(shown.as_str()));
        data.insert("published".into(), false.into());
        data.insert("hasVideo".into(), true.into());
        data.insert("hasAudio".into(), true.into());
        data.insert("status".into(), callgate_proto::status::stream::PENDING.into());
        data.insert("mediaProvider".into(), "HLS".into());
        data.insert("clientIP".into(), Value::from(ip.to_string()));
        let inv =
            self.node.engine.invoke(app, &self.rcc, HookMethod::PlayHls, Origin::Client, &mut data, &session).await;
        if inv.verdict.aborts() {
            metrics::counter!("callgate_hls_players_refused_total").increment(1);
            let info = inv.client_info();
            tracing::info!(%ip, stream = shown, info, "playHLS refused");
            return Err(if info.is_empty() { "Forbidden".into() } else { info });
        }
        match data.get("name") {
            Some(Value::String(n)) if *n == shown => Ok(stream.to_string()),
            Some(Value::String(n)) if !n.is_empty() => Ok(n.clone()),
            _ => Err("Failed by error: no stream name".into()),
        }
    }

    /// The running muxer of `name`, or a new one on its publisher.
    async fn muxer(self: &Arc<Self>, name: &str) -> Result<Arc<Muxer>, (StatusCode, String)> {
        let publisher = || self.streams.dir.lock().publisher(name).map(|e| e.peer);
        let current = |peer: Option<PeerId>| {
            let m = self.muxers.lock().get(name).cloned()?;
            // An ended stream's muxer serves its last playlist, unless the name is published again.
            (!m.out.lock().ended() || peer.is_none_or(|p| p == m.peer)).then_some(m)
        };
        if let Some(m) = current(publisher()) {
            return Ok(m);
        }
        let _one = self.starting.lock().await;
        let peer = publisher();
        if let Some(m) = current(peer) {
            return Ok(m);
        }
        let Some(peer) = peer else {
            drop(_one);
            if let Some(u) = super::rtsp::parse(name) {
                return self.pulled(name, u).await;
            }
            return self.relayed(name).await;
        };
        let out = self.streams.media.hls(peer, self.media).await.map_err(hls_refusal)?;
        tracing::info!(stream = name, peer = peer.0, "HLS muxer started");
        Ok(self.install(name, peer, None, out))
    }

    /// A started output becomes the muxer of `name`, watched by its janitor.
    fn install(self: &Arc<Self>, name: &str, peer: PeerId, member: Option<Member>, out: Arc<HlsOutput>) -> Arc<Muxer> {
        let m =
            Arc::new(Muxer { peer, member, out, last_request: Mutex::new(Instant::now()), busy: Default::default() });
        self.muxers.lock().insert(name.to_string(), m.clone());
        tokio::spawn(janitor(Arc::downgrade(self), name.to_string(), m.clone()));
        m
    }

    /// The muxer of a stream published on another node of the cluster (404 on a single node):
    /// it joins the relay that pulls the stream here, as a player of this node would (one
    /// relay per stream and node, whatever its players), and muxes the relay publisher's
    /// media; its keyframe requests reach the origin's publisher. The membership keeps the
    /// relay until the muxer stops; the relay's end (unpublished at the origin, the origin
    /// lost) ends the output (`#EXT-X-ENDLIST`).
    async fn relayed(self: &Arc<Self>, name: &str) -> Result<Arc<Muxer>, (StatusCode, String)> {
        // Anyone may ask for any name: only one the mirror shows published elsewhere costs a
        // directory request.
        if !super::relay::published_elsewhere(&self.streams, name) {
            return Err((StatusCode::NOT_FOUND, callgate_proto::info::STREAM_NOT_FOUND.into()));
        }
        let id: Arc<str> = Arc::from(format!("hls:{}", self.streams.media.next_peer_id().0));
        // Twice at most: a relay whose last player left just now is made again.
        for _ in 0..2 {
            let source = super::relay::source(&self.streams, name)
                .await
                .map_err(|info| (StatusCode::NOT_FOUND, info.to_string()))?;
            if !super::relay::joined(&self.streams, name, source, &id) {
                continue;
            }
            let _one = self.starting.lock().await;
            if let Some(m) = self.muxers.lock().get(name).filter(|m| !m.out.lock().ended()).cloned() {
                super::relay::player_left(&self.streams, name, &id);
                return Ok(m);
            }
            let out = match self.streams.media.hls(source, self.media).await {
                Ok(out) => out,
                Err(e) => {
                    super::relay::player_left(&self.streams, name, &id);
                    return Err(hls_refusal(e));
                }
            };
            tracing::info!(stream = name, peer = source.0, "HLS muxer of a stream relayed from another node started");
            return Ok(self.install(name, source, Some(Member::Relay(id)), out));
        }
        Err((StatusCode::NOT_FOUND, callgate_proto::info::STREAM_NOT_FOUND.into()))
    }

    /// The muxer of an `rtsp://` name that no muxer serves: it joins the camera's pull as a
    /// player would (starting it if nobody plays the camera; the pull's SSRF guard, credentials
    /// and reconnects apply), waits up to `first_segment_wait_ms` for its media, and muxes the
    /// pulled source. The muxer's membership keeps the pull running until the muxer stops
    /// (idle, or the camera lost). The camera's failure is a 502 with its info.
    async fn pulled(self: &Arc<Self>, name: &str, u: super::rtsp::RtspUrl) -> Result<Arc<Muxer>, (StatusCode, String)> {
        let member = self.streams.media.next_peer_id();
        let stream_id: Arc<str> = Arc::from(format!("hls:{}", member.0));
        let (source, mut state) = super::rtsp::join(&self.streams, &u, member, Arc::from("hls"), stream_id);
        let leave = |status: StatusCode, info: String| {
            self.streams.pulls.leave(member);
            Err((status, info))
        };
        match tokio::time::timeout(self.first_wait, super::rtsp::ready(&mut state)).await {
            Err(_) => return leave(StatusCode::SERVICE_UNAVAILABLE, "no media from the RTSP source yet".into()),
            Ok(Err(info)) => return leave(StatusCode::BAD_GATEWAY, info),
            Ok(Ok(())) => {}
        }
        let _one = self.starting.lock().await;
        // Two first requests for one camera: both joined its one pull; the second keeps the
        // first's muxer.
        if let Some(m) = self.muxers.lock().get(name).filter(|m| !m.out.lock().ended()).cloned() {
            self.streams.pulls.leave(member);
            return Ok(m);
        }
        if !self.streams.pulls.holds(member) {
            return Err((StatusCode::BAD_GATEWAY, callgate_proto::info::RTSP_SOURCE_LOST.into()));
        }
        let out = match self.streams.media.hls(source, self.media).await {
            Ok(out) => out,
            Err(e) => {
                let (status, info) = hls_refusal(e);
                return leave(status, info);
            }
        };
        tracing::info!(stream = %u.masked, peer = source.0, "HLS muxer of an RTSP source started");
        Ok(self.install(name, source, Some(Member::Camera(member)), out))
    }
}

/// Why the media endpoint would not serve a stream as HLS, as an HTTP answer.
fn hls_refusal(e: callgate_media::MediaError) -> (StatusCode, String) {
    match e {
        callgate_media::MediaError::NotFound(_) => {
            (StatusCode::NOT_FOUND, callgate_proto::info::STREAM_NOT_FOUND.to_string())
        }
        callgate_media::MediaError::NoCommonCodecs => (StatusCode::UNSUPPORTED_MEDIA_TYPE, NO_HLS_CODECS.into()),
        e => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// A stream with neither H.264 video nor Opus audio (a call's G.711 audio, a G.711-only camera).
const NO_HLS_CODECS: &str = "The stream has nothing HLS can carry (H.264 video, Opus audio)";

/// Stops `m` after `idle` without requests; forgets it `linger` after its stream ended.
async fn janitor(hls: Weak<Hls>, name: String, m: Arc<Muxer>) {
    let mut ended_at: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(hls) = hls.upgrade() else { return };
        let now = Instant::now();
        let ended = m.out.lock().ended();
        if ended {
            let at = *ended_at.get_or_insert(now);
            if now.duration_since(at) < hls.linger {
                continue;
            }
        } else if m.busy.load(std::sync::atomic::Ordering::Relaxed) > 0
            || now.duration_since(*m.last_request.lock()) < hls.idle
        {
            continue;
        }
        m.out.stop();
        if let Some(member) = &m.member {
            member.leave(&hls.streams, &name);
        }
        let mut muxers = hls.muxers.lock();
        if muxers.get(&name).is_some_and(|x| Arc::ptr_eq(x, &m)) {
            muxers.remove(&name);
        }
        tracing::info!(stream = %super::rtsp::mask(&name), ended, "HLS muxer removed");
        return;
    }
}

/// The files of a stream's HLS output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum File {
    Playlist,
    Init,
    Segment(u64),
    Part(u64, usize),
}

fn parse_file(f: &str) -> Option<File> {
    match f {
        "index.m3u8" => Some(File::Playlist),
        "init.mp4" => Some(File::Init),
        _ => {
            if let Some(n) = f.strip_prefix("seg").and_then(|r| r.strip_suffix(".m4s")) {
                return n.parse().ok().map(File::Segment);
            }
            let (msn, i) = f.strip_prefix("part")?.strip_suffix(".m4s")?.split_once('.')?;
            Some(File::Part(msn.parse().ok()?, i.parse().ok()?))
        }
    }
}

/// `GET /{stream}/{file}` on the HTTP port (no credentials: the `playHLS` hook decides).
pub fn router<S: Clone + Send + Sync + 'static>(hls: Option<Arc<Hls>>) -> Router<S> {
    match hls {
        Some(hls) => Router::new().route("/{stream}/{file}", get(serve)).with_state(hls),
        None => Router::new(),
    }
}

async fn serve(
    State(hls): State<Arc<Hls>>,
    ConnectInfo(addrs): ConnectInfo<ConnAddrs>,
    UrlPath((stream, file)): UrlPath<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(file) = parse_file(&file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // A name is a stream name or a camera URL: longer ones are nobody's, and would only be
    // kept in the player cache and sent to the hook.
    if stream.len() > MAX_NAME {
        return text(StatusCode::NOT_FOUND, callgate_proto::info::STREAM_NOT_FOUND.into());
    }
    let kind = match file {
        File::Playlist => "playlist",
        File::Init => "init",
        File::Segment(_) => "segment",
        File::Part(..) => "part",
    };
    metrics::counter!("callgate_hls_requests_total", "file" => kind).increment(1);
    let name = match hls.decide(addrs.remote.ip(), &stream).await {
        Ok(n) => n,
        Err(reason) => return text(StatusCode::FORBIDDEN, reason),
    };
    // Started in a task of its own: a client that goes away while the muxer starts (a camera's
    // pull may take seconds) must not cut the start short and leave its pull membership or a
    // muxer thread with nobody to stop them.
    let starting = {
        let (hls, name) = (hls.clone(), name.clone());
        tokio::spawn(async move { hls.muxer(&name).await })
    };
    let m = match starting.await {
        Ok(Ok(m)) => m,
        Ok(Err((status, reason))) => return text(status, reason),
        Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "the HLS muxer did not start".into()),
    };
    let _busy = Busy::new(&m);
    if let Some(why) = m.out.lock().failed() {
        return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, why.to_string());
    }
    let r = match file {
        File::Playlist => playlist(&hls, &m, &q).await,
        File::Init => {
            if !wait_for(&m, hls.first_wait, |s| s.init().is_some() || s.failed().is_some()).await
                || m.out.lock().failed().is_some()
            {
                return no_media_yet(&m);
            }
            let init = m.out.lock().init();
            // Not cached: a new output of the same name (published again) has the same URI and
            // may have other parameter sets; segments and parts never share a URI (their
            // numbers start at each output's start time).
            init.map(|b| media(b.to_vec(), "no-cache"))
        }
        File::Segment(msn) => m.out.lock().segment(msn).map(|s| media(s.bytes(), "max-age=60")),
        File::Part(msn, i) => m.out.lock().part(msn, i).map(|p| media(p.data.to_vec(), "max-age=60")),
    };
    r.unwrap_or_else(|| text(StatusCode::NOT_FOUND, "no such segment or part (outside the window)".into()))
}

async fn playlist(hls: &Hls, m: &Muxer, q: &HashMap<String, String>) -> Option<Response> {
    // A stream whose codec HLS cannot carry fails its muxer (and ends it) once its first
    // packet shows the codec, which may be while this request waits: checked after the wait.
    if !wait_for(m, hls.first_wait, |s| s.segments() > 0 || s.ended()).await || m.out.lock().failed().is_some() {
        return Some(no_media_yet(m));
    }
    // Blocking playlist reload (LL-HLS): wait until the segment (and part) asked for exists.
    if let Some(msn) = q.get("_HLS_msn") {
        let Ok(msn) = msn.parse::<u64>() else {
            return Some(text(StatusCode::BAD_REQUEST, "bad _HLS_msn".into()));
        };
        let part = match q.get("_HLS_part").map(|p| p.parse::<usize>()) {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err(_)) => return Some(text(StatusCode::BAD_REQUEST, "bad _HLS_part".into())),
        };
        if m.out.lock().has(msn, part).is_none() {
            return Some(text(StatusCode::BAD_REQUEST, "_HLS_msn is more than two segments ahead".into()));
        }
        // At most three target durations (RFC 8216bis §6.2.5.2), then the playlist as it is.
        let wait = hls.media.segment * 3;
        wait_for(m, wait, |s| s.has(msn, part) != Some(false)).await;
    }
    let body = m.out.lock().playlist();
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.apple.mpegurl"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    Some(r)
}

/// Waits up to `wait` for `cond` on the segmenter; whether it holds.
async fn wait_for(m: &Muxer, wait: Duration, cond: impl Fn(&Segmenter) -> bool) -> bool {
    let mut rx = m.out.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if cond(&m.out.lock()) {
            return true;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => return cond(&m.out.lock()),
        }
    }
}

fn no_media_yet(m: &Muxer) -> Response {
    match m.out.lock().failed() {
        Some(why) => text(StatusCode::UNSUPPORTED_MEDIA_TYPE, why.to_string()),
        None => text(StatusCode::SERVICE_UNAVAILABLE, "no media from the stream yet (waiting for a keyframe)".into()),
    }
}

fn media(bytes: Vec<u8>, cache: &'static str) -> Response {
    metrics::counter!("callgate_hls_bytes_sent_total").increment(bytes.len() as u64);
    let mut r = (StatusCode::OK, bytes).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

fn text(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(parse_file("index.m3u8"), Some(File::Playlist));
        assert_eq!(parse_file("init.mp4"), Some(File::Init));
        assert_eq!(parse_file("seg12.m4s"), Some(File::Segment(12)));
        assert_eq!(parse_file("part12.3.m4s"), Some(File::Part(12, 3)));
        for bad in ["seg.m4s", "part1.m4s", "part1.x.m4s", "segx.m4s", "index.m3u", "../init.mp4", "seg-1.m4s"] {
            assert_eq!(parse_file(bad), None, "{bad}");
        }
    }
}
