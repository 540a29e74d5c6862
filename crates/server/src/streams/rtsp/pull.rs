//! The pull task of one camera URL: retina's RTSP session (DESCRIBE, SETUP over interleaved
//! TCP, PLAY), its frames to the media source, and the reconnects (see the parent module).

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use callgate_hooks::Origin;
use callgate_media::core::SourceFrame;
use callgate_media::source::{self, MediaKind, SourceCodec};
use callgate_media::transcode::{self, AacToOpus, OPUS_FRAME_TICKS};
use callgate_media::{MediaEndpoint, PeerId};
use callgate_proto::info as proto_info;
use futures_util::StreamExt;
use retina::client::{PlayOptions, Session, SessionOptions, SetupOptions, Transport};
use retina::codec::{CodecItem, FrameFormat, ParameterSetInsertion, ParametersRef};
use tokio::sync::watch;
use url::Url;

use super::{PullState, RtspUrl};
use crate::netguard::Guard;
use crate::streams::{end_stream, Ending, Streams};

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

/// Starts the pull task of `u`, feeding media source `peer`; it reports on `state` and ends
/// when `stop` changes (or its sender goes).
pub(super) fn spawn(
    streams: &Arc<Streams>,
    u: RtspUrl,
    peer: PeerId,
    state: watch::Sender<PullState>,
    stop: watch::Receiver<bool>,
) {
    let task = PullTask {
        streams: Arc::downgrade(streams),
        media: streams.media.clone(),
        guard: streams.pulls.guard.clone(),
        u,
        peer,
        state,
        added: false,
        clock: Default::default(),
        opus_ts: 0,
    };
    tokio::spawn(task.run(stop));
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
    /// The next RTP timestamp of AAC transcoded to Opus: 20 ms per packet, going on across
    /// sessions (a new session's AAC starts where the last Opus packet ended).
    opus_ts: u32,
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
            let transcoder = match &audio {
                Some((_, AudioIn::Aac(config))) => {
                    Some(AacToOpus::new(config).map_err(|e| Failure::new(proto_info::rtsp_failed(&e), e.to_string()))?)
                }
                _ => None,
            };
            let audio = audio.map(|(i, a)| (i, a.codec()));
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
            Ok::<_, Failure>((demuxed, codecs, transcoder))
        };
        let (mut demuxed, codecs, mut transcoder) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
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
            let frames = match item {
                CodecItem::VideoFrame(f) => {
                    let Some(&(_, codec)) = codecs.iter().find(|(i, _)| *i == f.stream_id()) else { continue };
                    if codec.kind() != MediaKind::Video {
                        continue;
                    }
                    let keyframe = f.is_random_access_point();
                    let nals = source::avc_nal_units(f.data());
                    let payloads = source::packetize_h264(nals, source::MAX_PAYLOAD);
                    vec![SourceFrame {
                        kind: MediaKind::Video,
                        // One frame at 30 fps after the last one of the previous session.
                        ts: self.clock[1].map(f.timestamp().timestamp(), 3000),
                        keyframe,
                        payloads: payloads.into_iter().map(Arc::from).collect(),
                    }]
                }
                CodecItem::AudioFrame(f) => {
                    if !codecs.iter().any(|(i, c)| *i == f.stream_id() && c.kind() == MediaKind::Audio) {
                        continue;
                    }
                    match transcoder.as_mut() {
                        // AAC: the 20 ms Opus packets this frame completes (none, one or two).
                        Some(t) => match t.push(f.data()) {
                            Ok(packets) => packets
                                .into_iter()
                                .map(|p| {
                                    let ts = self.opus_ts;
                                    self.opus_ts = ts.wrapping_add(OPUS_FRAME_TICKS);
                                    SourceFrame {
                                        kind: MediaKind::Audio,
                                        ts,
                                        keyframe: false,
                                        payloads: vec![Arc::from(p)],
                                    }
                                })
                                .collect(),
                            Err(e) => {
                                // A gap in the audio, as a lost packet would make.
                                metrics::counter!("callgate_rtsp_audio_frames_dropped_total").increment(1);
                                tracing::debug!(source = self.peer.0, error = %e, "an AAC frame of the camera is skipped");
                                continue;
                            }
                        },
                        None => vec![SourceFrame {
                            kind: MediaKind::Audio,
                            // 20 ms at 8 kHz (G.711) after the last one of the previous session.
                            ts: self.clock[0].map(f.timestamp().timestamp(), 160),
                            keyframe: false,
                            payloads: vec![Arc::from(f.data())],
                        }],
                    }
                }
                _ => continue,
            };
            for frame in frames {
                // Live once players can start decoding: the first keyframe (video), else the
                // first frame.
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
type Chosen = (Option<(usize, SourceCodec)>, Option<(usize, AudioIn)>);

/// The audio of a camera as the source takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AudioIn {
    /// Forwarded as the camera sends it (G.711).
    Pass(SourceCodec),
    /// AAC-LC with this AudioSpecificConfig, transcoded to Opus (`callgate_media::transcode`).
    Aac(Vec<u8>),
}

impl AudioIn {
    /// What the source's players get.
    fn codec(&self) -> SourceCodec {
        match self {
            AudioIn::Pass(c) => *c,
            AudioIn::Aac(_) => SourceCodec::Opus,
        }
    }
}

/// Picks the streams to set up from the camera's `(media, encoding name, parameters)`: the
/// first H.264 video, and the first PCMU/PCMA audio (passed through), else the first AAC-LC
/// audio that can be transcoded to Opus, as `(index, codec)`. `Err` lists what the camera
/// offers when nothing is usable.
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
            ("audio", "pcmu" | "pcma") if !matches!(audio, Some((_, AudioIn::Pass(_)))) => {
                let codec = if encoding.eq_ignore_ascii_case("pcmu") { SourceCodec::Pcmu } else { SourceCodec::Pcma };
                audio = Some((i, AudioIn::Pass(codec)));
            }
            ("audio", "mpeg4-generic") if audio.is_none() => {
                if let Some(ParametersRef::Audio(a)) = params {
                    if transcode::supports(a.extra_data()) {
                        audio = Some((i, AudioIn::Aac(a.extra_data().to_vec())));
                    }
                }
            }
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
        assert_eq!(a, Some((2, AudioIn::Pass(SourceCodec::Pcma))));
        let err = choose([("video", "h265", None), ("audio", "mpeg4-generic", None)].into_iter()).unwrap_err();
        assert_eq!(err, "video/h265, audio/mpeg4-generic");
        assert_eq!(profile_of("avc1.4D401E"), Some(0x4d401e));
        assert_eq!(profile_of("avc1.zz"), None);
    }
}
