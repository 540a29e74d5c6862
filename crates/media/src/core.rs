//! The media core: every str0m [`Rtc`] of the node, the demultiplexer of the shared UDP socket,
//! and the forwarding from publishers to players. No I/O and no clock: datagrams and `now` come
//! in, datagrams and events come out ([`MediaCore::poll_transmit`], [`MediaCore::poll_event`]).
//!
//! ```text
//!  datagram ─> demux (STUN binding request: USERNAME ufrag -> peer | else source address -> peer;
//!                     unknown: dropped and counted; then rtc.accepts of that one peer)
//!          ─> peer.rtc.handle_input ─> drain poll_output until Timeout
//!                 Transmit -> transmits queue
//!                 RtpPacket (publisher) -> for each connected player: stream_tx.write_rtp(pt', seq', ...) -> drain
//!                 MediaData (bridge) -> RTP to the SIP side
//!                 KeyframeRequest (player), gap in the publisher's video
//!                        -> publisher's stream_rx.request_keyframe (throttled)
//!                 Connected / ICE failure -> events queue
//! ```
//!
//! Forwarding is RTP level: publishers and players run str0m in RTP mode, and every publisher
//! packet is re-sent to each player with the player's SSRC, payload type and sequence numbers
//! and the publisher's payload (shared, not copied), timestamps and marker bit; see
//! [`crate::forward`]. Audio-only call legs (bridges) stay in frame mode (G.711 frames to and
//! from plain RTP); a call leg with video runs in RTP mode, its audio and video packets passed
//! through to the SIP side's two RTP ports with their payloads unchanged (see [`crate::video`]).
//! Each `Rtc` is driven by str0m's rule: after every mutation, poll until `Output::Timeout`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::config::{CryptoProvider, DtlsCert};
use str0m::format::{Codec, PayloadParams};
use str0m::media::Pt;
use str0m::media::{Direction, Frequency, KeyframeRequestKind, MediaKind, MediaTime, Mid};
use str0m::net::{DatagramSend, Protocol, Receive};
use str0m::rtp::{Extension, ExtensionMap, ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig, RtcError};

use crate::bridge::{choose_g711, SipLeg, G711};
use crate::config::MediaConfig;
use crate::forward::{forwarded_ext_vals, RxTrack, SeqMap, TxTrack, MAX_FORWARDED_PAYLOAD};
use crate::record::{RecPacket, RecordReport, RecordSpec, RecordTap};
use crate::snapshot::{KeyframeReply, KeyframeTap, SnapshotError};
use crate::source::SourceCodec;
use crate::video::{choose_video, VideoCodec, VideoFormat, VideoIn, VideoLeg};
use crate::{sdp, stun, FailReason, MediaError, MediaEvent, PeerId};

/// Which socket a datagram leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The shared WebRTC socket.
    Shared,
    /// The plain RTP socket of bridge `PeerId` (its SIP side).
    Rtp(PeerId),
    /// The video RTP socket of bridge `PeerId` (its SIP side's video, RTCP multiplexed).
    RtpVideo(PeerId),
}

/// Capacity of a recycled datagram buffer: str0m's largest datagram.
const DATAGRAM_BUFFER: usize = 2000;
/// Recycled datagram buffers kept at most (2 MB): one batch of a publisher's packet to its
/// players in flight.
pub const SPARE_BUFFERS: usize = 1024;

/// A datagram to send.
#[derive(Debug)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub contents: DatagramSend,
    pub via: Via,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Publisher,
    Player {
        source: PeerId,
    },
    /// A call leg: browser (str0m) <-> plain RTP (SIP side).
    Bridge,
}

/// What a new bridge gives the call layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeAnswer {
    /// The answer for the browser (`setRemoteSDP`).
    pub webrtc_answer: String,
    /// RTP/AVP SDP for the SIP side (the INVITE's offer, or the answer to the SIP offer).
    pub sip_sdp: String,
    pub codec: G711,
    /// The video codec carried through (`None`: audio only, the browser's video refused).
    pub video: Option<VideoCodec>,
}

/// What a bridge for an incoming SIP call gives the call layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingBridge {
    /// The offer for the browser (`setRemoteSDP [callId, offer, false]`).
    pub webrtc_offer: String,
    /// RTP/AVP SDP answering the SIP offer (for the 200 OK).
    pub sip_answer: String,
    pub codec: G711,
    /// The video codec carried through (`None`: audio only, the SIP side's video refused).
    pub video: Option<VideoCodec>,
}

/// How long an incoming call's WebRTC leg may wait for the browser's answer (the user is
/// being rung); the usual connect timeout starts when the answer arrives.
pub const RING_LIMIT: Duration = Duration::from_secs(600);

/// Source addresses one peer may be routed by (a browser checks from each of its candidates:
/// a few interfaces, IPv4 and IPv6).
const MAX_ADDRS_PER_PEER: usize = 16;

struct Peer {
    rtc: Rtc,
    role: Role,
    ufrag: String,
    /// Browser addresses seen for this peer (for the demux table).
    addrs: Vec<SocketAddr>,
    audio_mid: Option<Mid>,
    video_mid: Option<Mid>,
    /// `Event::Connected`: ICE and DTLS are up, media may flow.
    connected: bool,
    /// ICE nominated a pair (ICE-lite reports `Completed`, never `Connected`).
    ice_ok: bool,
    connect_by: Instant,
    /// The `Rtc`'s next timeout as last polled.
    deadline: Instant,
    /// The wake-up this peer has in the timer heap (others there for it are stale).
    armed: Option<Instant>,
    /// Publisher: the players it feeds.
    players: Vec<PeerId>,
    /// Publisher: its incoming streams (kind, gap detection).
    rx: Vec<RxTrack>,
    /// Player: its audio and video send streams (`kind_index`).
    tx: [Option<TxTrack>; 2],
    /// Player: in [`MediaCore::unsent`].
    unsent: bool,
    last_keyframe_request: Option<Instant>,
    frames_in: u64,
    frames_out: u64,
    /// Bridge: the SIP side.
    sip: Option<Box<SipLeg>>,
    /// Video bridge: the SIP side's video. A bridge with video runs str0m in RTP mode (audio
    /// and video as RTP packets, see [`BridgeVideo`]); an audio-only one in frame mode.
    video: Option<Box<BridgeVideo>>,
    /// Incoming-call bridge: our offer, until the browser's answer arrives.
    pending: Option<SdpPendingOffer>,
    /// Publisher being recorded: the writer's queue (see [`crate::record`]).
    record: Option<RecordTap>,
    /// Publisher with snapshots pending: the keyframe being reassembled for them (see
    /// [`crate::snapshot`]); `None` the rest of the time.
    snapshot: Option<Box<KeyframeTap>>,
    /// Publisher served as HLS: the muxer's queue (see [`crate::hls`]).
    hls: Option<crate::hls::HlsTap>,
    /// Where its datagrams leave: the shared socket, or (relay publisher) its own.
    via: Via,
    /// Relay publisher (see [`MediaCore::add_relay`]): the address of its own socket, which
    /// its datagrams arrive on through [`MediaCore::handle_rtp`].
    relay_local: Option<SocketAddr>,
}

impl Peer {
    /// The kind of the publisher's incoming stream `pkt` belongs to (learnt once per SSRC), and
    /// whether packets before it are missing.
    fn note_rx(&mut self, pkt: &RtpPacket) -> Option<(MediaKind, bool)> {
        let ssrc = pkt.header.ssrc;
        let i = match self.rx.iter().position(|t| t.ssrc == ssrc) {
            Some(i) => i,
            None => {
                let mid = self.rtc.direct_api().stream_rx(&ssrc)?.mid();
                let kind = self.rtc.media(mid)?.kind();
                self.rx.push(RxTrack::new(ssrc, kind));
                self.rx.len() - 1
            }
        };
        let t = &mut self.rx[i];
        Some((t.kind, t.note_seq(*pkt.seq_no)))
    }

    fn next_wakeup(&self) -> Instant {
        let mut at = if self.connected { self.deadline } else { self.deadline.min(self.connect_by) };
        if let Some(dtmf) = self.sip.as_ref().and_then(|s| s.next_dtmf_at()) {
            at = at.min(dtmf);
        }
        at
    }
}

/// A video bridge's state beyond the SIP side's [`VideoLeg`]: the numbering of what it writes
/// to the browser (str0m's RTP mode takes extended sequence numbers from the writer).
struct BridgeVideo {
    leg: VideoLeg,
    /// SIP video -> browser: the SIP side's extended numbers mapped onto one stream from 1.
    tx_seq: SeqMap,
    /// SIP audio -> browser: the next sequence number (audio is not resent, so no gaps matter).
    audio_seq: u64,
    /// The last PLI sent to the SIP side (throttled like requests to browsers).
    last_pli: Option<Instant>,
}

impl BridgeVideo {
    fn new(leg: VideoLeg) -> BridgeVideo {
        BridgeVideo { leg, tx_seq: SeqMap::new(), audio_seq: crate::forward::FIRST_SEQ, last_pli: None }
    }
}

/// Counters of one peer, for the REST API and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerStats {
    pub connected: bool,
    /// Publisher: RTP packets received (bridge: frames). Player: 0.
    pub frames_in: u64,
    /// Player: RTP packets written towards the browser (bridge: frames). Publisher: 0.
    pub frames_out: u64,
    /// Publisher: players attached.
    pub players: usize,
    /// Call leg: RTP packets dropped on its RTP port for coming from another source than the
    /// SIP side (see [`crate::bridge::RtpLatching`]).
    pub rtp_dropped: u64,
    /// Video call leg: RTP packets from the SIP side's video / sent to it.
    pub video_in: u64,
    pub video_out: u64,
    /// Video call leg: PLI/FIR from the SIP side, and PLIs sent to it.
    pub keyframe_requests_in: u64,
    pub plis_out: u64,
}

/// Running totals of the core (cheap: plain integers, read by the driver).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Datagrams handed to a peer.
    pub datagrams_in: u64,
    /// Datagrams produced for the socket.
    pub datagrams_out: u64,
    /// Media units received from publishers and browser legs of bridges: RTP packets for
    /// streams (RTP-mode forwarding), frames for bridges.
    pub frames_in: u64,
    /// Media units written to players (one per player per publisher packet) and bridges.
    pub frames_out: u64,
    /// Datagrams on the shared socket that no peer took (unknown source, unknown ufrag, or
    /// refused by the peer they were routed to).
    pub datagrams_dropped: u64,
    /// Peers asked whether they take a datagram (`Rtc::accepts`): the demultiplexer's cost,
    /// at most one per datagram.
    pub peer_probes: u64,
}

/// Metric handles resolved once, so the per-packet path does no registry lookups.
struct Metrics {
    frames_forwarded: metrics::Counter,
    dropped_no_codec: metrics::Counter,
    dropped_write: metrics::Counter,
    dropped_oversize: metrics::Counter,
}

impl Metrics {
    fn new() -> Metrics {
        Metrics {
            frames_forwarded: metrics::counter!("callgate_media_packets_forwarded_total"),
            dropped_no_codec: metrics::counter!("callgate_media_packets_dropped_total", "why" => "no_matching_codec"),
            dropped_write: metrics::counter!("callgate_media_packets_dropped_total", "why" => "no_send_stream"),
            dropped_oversize: metrics::counter!("callgate_media_packets_dropped_total", "why" => "oversize"),
        }
    }
}

/// Hashes [`PeerId`]s, which the server hands out from a counter (never chosen by the network,
/// so SipHash's flooding resistance buys nothing): one multiplication. The peer map is read
/// several times per player and forwarded packet.
#[derive(Default)]
struct PeerIdHasher(u64);

impl Hasher for PeerIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        // Fibonacci hashing: spreads a counter over the high bits hashbrown groups by.
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// All peers of the node. See the module docs.
pub struct MediaCore {
    cfg: MediaConfig,
    /// The host candidate of every peer (see [`MediaConfig::advertised_addr`]).
    local: SocketAddr,
    rtc_config: RtcConfig,
    peers: HashMap<PeerId, Peer, BuildHasherDefault<PeerIdHasher>>,
    by_ufrag: HashMap<String, PeerId>,
    by_addr: HashMap<SocketAddr, PeerId>,
    timers: BinaryHeap<Reverse<(Instant, PeerId)>>,
    transmits: VecDeque<Transmit>,
    /// Datagram buffers handed back after sending ([`MediaCore::recycle`]), reused for the
    /// direct sends to players: a forwarded packet costs no allocation.
    spare: Vec<Vec<u8>>,
    /// Players with packets written but not yet polled out (see [`MediaCore::flush`]).
    unsent: Vec<PeerId>,
    /// The latest `now` any peer was driven with (str0m's time must not go backwards).
    last_now: Option<Instant>,
    events: VecDeque<(PeerId, MediaEvent)>,
    counters: Counters,
    metrics: Metrics,
    /// Server-side RTP-only call legs (calls started through the REST API: no browser).
    rtp_legs: HashMap<PeerId, RtpLeg>,
    /// Pulled sources (an RTSP camera): publishers with no `Rtc` (see [`crate::source`]).
    sources: HashMap<PeerId, Source>,
    /// RTP-only call legs whose SIP-side audio feeds a source (`toStream`: a call's audio as a
    /// stream): leg -> source. Set with [`MediaCore::feed_source`], possibly before the leg exists.
    leg_feeds: HashMap<PeerId, PeerId>,
}

/// The source "SSRC" of a source's live packets and of its cached keyframe's replay: a player's
/// [`crate::forward::SeqMap`] restarts its numbering on a new source SSRC, so the replay and the
/// live packets after it are contiguous for the player whatever their source numbers.
const SOURCE_LIVE_SSRC: u32 = 1;
const SOURCE_REPLAY_SSRC: u32 = 2;

/// A pulled source: its codecs, players, numbering and last keyframe.
struct Source {
    /// Audio, video (`kind_index`).
    codecs: [Option<SourceCodec>; 2],
    players: Vec<PeerId>,
    /// The next sequence number of each kind.
    seq: [u64; 2],
    /// The packets of the last video keyframe (SPS, PPS, IDR), replayed to each player as it
    /// connects: a player cannot ask an RTSP camera for a keyframe (there is no RTCP feedback
    /// to it), and waiting for the camera's next one could take its whole GOP.
    keyframe: Vec<CachedPacket>,
    /// Players connected since the last frame, that get the keyframe before the next one.
    /// Not at once: str0m reports `Connected` before the browser has its own DTLS `Finished`
    /// and SRTP keys, and SRTP that arrives before them is dropped, the replayed keyframe with
    /// it (seen in `tests/core_sim.rs`); one frame later the browser is ready.
    replay_to: Vec<PeerId>,
    frames_in: u64,
    /// Served as HLS ([`MediaCore::start_hls`]): its video, and its audio when Opus.
    hls: Option<crate::hls::HlsTap>,
}

struct CachedPacket {
    seq: u64,
    ts: u32,
    marker: bool,
    payload: Arc<[u8]>,
}

/// One access unit (or audio frame) of a pulled source, packetized by the caller.
#[derive(Debug, Clone)]
pub struct SourceFrame {
    pub kind: MediaKind,
    /// RTP timestamp (the codec's clock rate).
    pub ts: u32,
    /// A video keyframe (it replaces the cached one).
    pub keyframe: bool,
    /// RTP payloads in order; the last gets the marker bit (video).
    pub payloads: Vec<Arc<[u8]>>,
}

/// Whose players a packet is forwarded to ([`MediaCore::forward_to`]).
#[derive(Clone, Copy)]
enum Feeder {
    Publisher(PeerId),
    Source(PeerId),
}

impl Feeder {
    fn players(self, core: &mut MediaCore) -> Option<&mut Vec<PeerId>> {
        match self {
            Feeder::Publisher(id) => core.peers.get_mut(&id).map(|p| &mut p.players),
            Feeder::Source(id) => core.sources.get_mut(&id).map(|s| &mut s.players),
        }
    }
}

/// What one forwarded packet carries to each player (a publisher's packet or a source's).
struct Outgoing<'a> {
    kind: MediaKind,
    params: Option<PayloadParams>,
    src_pt: Pt,
    src_ssrc: Ssrc,
    seq: u64,
    ts: u32,
    arrival: Instant,
    marker: bool,
    ext_vals: &'a ExtensionValues,
    payload: &'a Arc<[u8]>,
}

/// A call leg with no browser: only the SIP side's plain RTP. It takes the SIP side's audio
/// (counted, not played anywhere) and sends RFC 4733 DTMF.
struct RtpLeg {
    leg: Box<SipLeg>,
    /// The wake-up this leg has in the timer heap (for DTMF packets).
    armed: Option<Instant>,
}

impl MediaCore {
    /// `local` is the address every peer advertises as its one host candidate.
    pub fn new(cfg: MediaConfig, local: SocketAddr) -> MediaCore {
        let provider = crate::crypto_provider();
        let rtc_config = rtc_config(provider.clone(), shared_certificate(&provider));
        MediaCore {
            cfg,
            local,
            rtc_config,
            peers: HashMap::default(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            spare: Vec::new(),
            unsent: Vec::new(),
            last_now: None,
            events: VecDeque::new(),
            counters: Counters::default(),
            metrics: Metrics::new(),
            rtp_legs: HashMap::new(),
            sources: HashMap::new(),
            leg_feeds: HashMap::new(),
        }
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Peers, RTP-only legs and pulled sources.
    pub fn len(&self) -> usize {
        self.peers.len() + self.rtp_legs.len() + self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty() && self.rtp_legs.is_empty() && self.sources.is_empty()
    }

    /// Adds a pulled source with these codecs (at most one audio and one video): players attach
    /// to it with [`MediaCore::add_player`] as to a publisher, and its media comes in through
    /// [`MediaCore::source_frame`].
    pub fn add_source(&mut self, id: PeerId, codecs: &[SourceCodec]) -> Result<(), MediaError> {
        if self.peers.contains_key(&id) || self.rtp_legs.contains_key(&id) || self.sources.contains_key(&id) {
            return Err(MediaError::DuplicatePeer(id));
        }
        let mut c = [None, None];
        for &codec in codecs {
            c[kind_index(codec.kind())].get_or_insert(codec);
        }
        if c == [None, None] {
            return Err(MediaError::NoCommonCodecs);
        }
        self.sources.insert(
            id,
            Source {
                codecs: c,
                players: Vec::new(),
                seq: [1, 1],
                keyframe: Vec::new(),
                replay_to: Vec::new(),
                frames_in: 0,
                hls: None,
            },
        );
        metrics::gauge!("callgate_media_sources").increment(1.0);
        Ok(())
    }

    /// The SIP-side audio of RTP-only leg `leg` (which may not exist yet) feeds source `source`
    /// from now on: each packet the leg takes becomes one audio frame of the source, its payload
    /// as it is (the source must carry the leg's G.711 codec: the caller creates both with it).
    pub fn feed_source(&mut self, leg: PeerId, source: PeerId) -> Result<(), MediaError> {
        if !self.sources.contains_key(&source) {
            return Err(MediaError::SourceNotFound);
        }
        self.leg_feeds.insert(leg, source);
        Ok(())
    }

    /// One frame of source `id`: written to each connected player (as a publisher's packets are),
    /// and kept when it is a video keyframe. A frame of a kind the source was not created with
    /// is dropped.
    pub fn source_frame(&mut self, id: PeerId, frame: SourceFrame, now: Instant) {
        let Some(src) = self.sources.get_mut(&id) else { return };
        let k = kind_index(frame.kind);
        let Some(codec) = src.codecs[k] else { return };
        if frame.payloads.is_empty() {
            return;
        }
        src.frames_in += 1;
        self.counters.frames_in += 1;
        let replay_to = std::mem::take(&mut src.replay_to);
        if !(frame.keyframe && frame.kind == MediaKind::Video) {
            // (A new keyframe makes the cached one useless: they get that one instead.)
            for pid in replay_to {
                self.replay_keyframe(id, pid, now);
            }
        }
        let Some(src) = self.sources.get_mut(&id) else { return };
        let first_seq = src.seq[k];
        src.seq[k] += frame.payloads.len() as u64;
        let last = frame.payloads.len() - 1;
        let marker_of = |i: usize| frame.kind == MediaKind::Audio || i == last;
        if let Some(tap) = src.hls.as_mut() {
            let c = codec.params().spec().codec;
            // The muxer carries H.264 and Opus; a camera's G.711 audio is left out (its
            // output was started video only, see `start_hls`). Keyframe requests from the muxer
            // have nowhere to go: a camera's keyframes come at its own pace.
            if frame.kind == MediaKind::Video || c == Codec::Opus {
                let mut open = true;
                for (i, payload) in frame.payloads.iter().enumerate() {
                    open &= tap.offer(RecPacket {
                        kind: frame.kind,
                        codec: c,
                        seq: first_seq + i as u64,
                        ts: frame.ts,
                        marker: marker_of(i),
                        payload: payload.clone(),
                        arrival: now,
                    });
                }
                tap.take_wants_keyframe();
                if !open {
                    src.hls = None;
                }
            }
        }
        if frame.keyframe && frame.kind == MediaKind::Video {
            src.keyframe.clear();
        }
        if frame.keyframe && frame.kind == MediaKind::Video {
            for (i, p) in frame.payloads.iter().enumerate() {
                src.keyframe.push(CachedPacket {
                    seq: first_seq + i as u64,
                    ts: frame.ts,
                    marker: marker_of(i),
                    payload: p.clone(),
                });
            }
        }
        let params = Some(codec.params());
        let ext_vals = ExtensionValues::default();
        let outs = frame.payloads.iter().enumerate().map(|(i, payload)| Outgoing {
            kind: frame.kind,
            params,
            src_pt: Pt::from(0),
            src_ssrc: Ssrc::from(SOURCE_LIVE_SSRC),
            seq: first_seq + i as u64,
            ts: frame.ts,
            arrival: now,
            marker: marker_of(i) && frame.kind == MediaKind::Video,
            ext_vals: &ext_vals,
            payload,
        });
        self.forward_to(Feeder::Source(id), outs);
        // Sent by the next `poll_*` (see `flush`), with this time.
        if self.last_now.is_none_or(|t| t < now) {
            self.last_now = Some(now);
        }
    }

    /// A player of a source connected: it gets the source's last keyframe first (before the
    /// source's next frame, see `Source::replay_to`).
    fn replay_keyframe(&mut self, source: PeerId, player: PeerId, now: Instant) {
        let Some(src) = self.sources.get(&source) else { return };
        let Some(codec) = src.codecs[kind_index(MediaKind::Video)] else { return };
        let cached: Vec<(u64, u32, bool, Arc<[u8]>)> =
            src.keyframe.iter().map(|c| (c.seq, c.ts, c.marker, c.payload.clone())).collect();
        let ext_vals = ExtensionValues::default();
        let mut written = 0;
        for (seq, ts, marker, payload) in &cached {
            let out = Outgoing {
                kind: MediaKind::Video,
                params: Some(codec.params()),
                src_pt: Pt::from(0),
                src_ssrc: Ssrc::from(SOURCE_REPLAY_SSRC),
                seq: *seq,
                ts: *ts,
                arrival: now,
                marker: *marker,
                ext_vals: &ext_vals,
                payload,
            };
            written += u64::from(self.write_to_player(player, &out));
        }
        if written > 0 {
            tracing::debug!(source = source.0, player = player.0, packets = written, "cached keyframe replayed");
            metrics::counter!("callgate_media_source_keyframe_replays_total").increment(1);
        }
        self.counters.frames_out += written;
        self.metrics.frames_forwarded.increment(written);
    }

    /// Accepts a publisher's offer (the SDK's m-lines are sendonly) and returns the answer
    /// (recvonly). The peer is routable before this returns, so the browser's first STUN check
    /// cannot arrive before the peer is known.
    pub fn add_publisher(&mut self, id: PeerId, offer: &str, now: Instant) -> Result<String, MediaError> {
        let answer = self.add_peer(id, Role::Publisher, offer, now)?;
        Ok(sdp::strip_msid(&answer))
    }

    /// Accepts a player's offer (recvonly m-lines) for the stream of `source` and returns the
    /// answer (sendonly, one msid stream id for audio and video).
    pub fn add_player(&mut self, id: PeerId, source: PeerId, offer: &str, now: Instant) -> Result<String, MediaError> {
        // A source's G.711 audio needs PCMU/PCMA in the player's codecs (browser publishers
        // only ever send Opus, so players have no G.711 otherwise).
        let g711 = match self.sources.get(&source) {
            Some(s) => match s.codecs[kind_index(MediaKind::Audio)] {
                Some(SourceCodec::Pcmu) => Some(G711::Pcmu),
                Some(SourceCodec::Pcma) => Some(G711::Pcma),
                _ => None,
            },
            None => match self.peers.get(&source) {
                Some(p) if p.role == Role::Publisher => None,
                _ => return Err(MediaError::SourceNotFound),
            },
        };
        // A source with G.711 audio only (a call's audio, `toStream`): a player that cannot take
        // that codec would get nothing at all, so it is refused rather than left silent.
        let audio_only = self.sources.get(&source).is_some_and(|s| s.codecs[kind_index(MediaKind::Video)].is_none());
        if let (Some(codec), true) = (g711, audio_only) {
            if !crate::bridge::offers_g711(offer, codec) {
                return Err(MediaError::NoCommonCodecs);
            }
        }
        let answer = self.add_peer_with(id, Role::Player { source }, offer, now, g711, None)?;
        if let Some(p) = self.peers.get_mut(&source) {
            p.players.push(id);
        } else if let Some(s) = self.sources.get_mut(&source) {
            s.players.push(id);
        }
        Ok(sdp::unify_msid(&answer, &format!("callgate-{}", source.0)))
    }

    fn add_peer(&mut self, id: PeerId, role: Role, offer: &str, now: Instant) -> Result<String, MediaError> {
        self.add_peer_with(id, role, offer, now, None, None)
    }

    /// The `Rtc` config of a call leg: its G.711 only, and with video exactly the one video
    /// format carried (the same payload type and parameters on both legs' SDP), in RTP mode.
    fn bridge_config(&self, codec: G711, video: Option<&VideoFormat>) -> RtcConfig {
        let config = match codec {
            G711::Pcmu => self.rtc_config.clone().clear_codecs().enable_pcmu(true, false),
            G711::Pcma => self.rtc_config.clone().clear_codecs().enable_pcma(true, false),
        };
        let Some(v) = video else { return config };
        let mut config = config.set_rtp_mode(true);
        let (codec, format) = match v.codec {
            VideoCodec::Vp8 => (str0m::format::Codec::Vp8, str0m::format::FormatParams::default()),
            VideoCodec::H264 => (
                str0m::format::Codec::H264,
                str0m::format::FormatParams {
                    level_asymmetry_allowed: v.param("level-asymmetry-allowed").map(|x| x == "1"),
                    packetization_mode: v.param("packetization-mode").and_then(|x| x.parse().ok()),
                    profile_level_id: v.param("profile-level-id").and_then(|x| u32::from_str_radix(x, 16).ok()),
                    ..Default::default()
                },
            ),
        };
        config.codec_config().add_config(v.pt.into(), None, codec, Frequency::NINETY_KHZ, None, format);
        config
    }

    fn add_peer_with(
        &mut self,
        id: PeerId,
        role: Role,
        offer: &str,
        now: Instant,
        g711: Option<G711>,
        video: Option<&VideoFormat>,
    ) -> Result<String, MediaError> {
        if self.peers.contains_key(&id) || self.rtp_legs.contains_key(&id) {
            return Err(MediaError::DuplicatePeer(id));
        }
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| MediaError::BadOffer(e.to_string()))?;
        let config = match (role, g711) {
            // A call leg forwards G.711 as it is: the browser gets exactly the codec the SIP side gets.
            // Audio only, it stays in frame mode (its writer and MediaData carry the audio); with
            // video, in RTP mode (see `BridgeVideo`).
            (Role::Bridge, Some(codec)) => self.bridge_config(codec, video),
            // Publishers and players forward RTP packets (see `crate::forward`).
            (Role::Publisher, _) => self.rtc_config.clone().set_rtp_mode(true),
            // Players: without the congestion-control extensions (see `player_extensions`); a
            // player of a source with G.711 audio also takes that codec.
            (_, g711) => {
                let c = self.rtc_config.clone().set_rtp_mode(true).set_extension_map(player_extensions());
                match g711 {
                    Some(G711::Pcmu) => c.enable_pcmu(true, false),
                    Some(G711::Pcma) => c.enable_pcma(true, false),
                    None => c,
                }
            }
        };
        let mut rtc = config.build(now);
        let candidate = Candidate::host(self.local, "udp").map_err(|e| MediaError::Negotiation(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| MediaError::Negotiation(e.to_string()))?;
        let answer = answer.to_sdp_string();
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        // The m-lines str0m accepted with at least one codec (one audio and one video from the SDK).
        let (mut audio_mid, mut video_mid) = (None, None);
        for mid in sdp::mids(&answer) {
            let Some(m) = rtc.media(Mid::from(mid)) else { continue };
            if m.remote_pts().is_empty() || m.direction() == Direction::Inactive {
                continue;
            }
            match m.kind() {
                MediaKind::Audio => audio_mid = audio_mid.or(Some(m.mid())),
                MediaKind::Video => video_mid = video_mid.or(Some(m.mid())),
            }
        }
        if audio_mid.is_none() && video_mid.is_none() {
            return Err(MediaError::NoCommonCodecs);
        }
        let tx = match role {
            Role::Player { .. } => [audio_mid.map(TxTrack::new), video_mid.map(TxTrack::new)],
            _ => [None, None],
        };
        let peer = Peer {
            rtc,
            role,
            ufrag: ufrag.clone(),
            addrs: Vec::new(),
            audio_mid,
            video_mid,
            connected: false,
            ice_ok: false,
            connect_by: now + self.cfg.connect_timeout,
            deadline: now,
            armed: None,
            players: Vec::new(),
            rx: Vec::new(),
            tx,
            unsent: false,
            last_keyframe_request: None,
            frames_in: 0,
            frames_out: 0,
            sip: None,
            video: None,
            pending: None,
            record: None,
            snapshot: None,
            hls: None,
            via: Via::Shared,
            relay_local: None,
        };
        self.peers.insert(id, peer);
        self.by_ufrag.insert(ufrag, id);
        metrics::gauge!("callgate_media_peers").increment(1.0);
        // Arms the peer's timers (and flushes anything accept_offer queued).
        self.drain(id, now);
        Ok(answer)
    }

    /// Records publisher `id` to `spec` (see [`crate::record`]): from now on a copy of each of
    /// its packets (the payload shared) goes to a writer thread, which reports on `reports`. A
    /// keyframe is asked for at once (or when the publisher connects).
    pub fn start_recording(
        &mut self,
        id: PeerId,
        spec: RecordSpec,
        reports: tokio::sync::mpsc::UnboundedSender<RecordReport>,
        now: Instant,
    ) -> Result<(), MediaError> {
        let p = self.peers.get_mut(&id).filter(|p| p.role == Role::Publisher).ok_or(MediaError::NotFound(id))?;
        if p.record.is_some() {
            return Err(MediaError::Negotiation("the stream is being recorded already".into()));
        }
        let tap = crate::record::start(spec, p.audio_mid.is_some(), p.video_mid.is_some(), reports)
            .map_err(|e| MediaError::Negotiation(format!("cannot start the recording thread: {e}")))?;
        p.record = Some(tap);
        self.request_keyframe(id, now);
        Ok(())
    }

    /// Serves publisher or pulled source `id` as HLS (see [`crate::hls`]): from now on a copy of
    /// each of its packets goes to a muxer thread whose output is returned. A keyframe is asked
    /// for at once (of a publisher; a source's come at the camera's pace).
    /// An earlier output of the same publisher is replaced (its playlist ends).
    pub fn start_hls(
        &mut self,
        id: PeerId,
        cfg: crate::hls::HlsConfig,
        now: Instant,
    ) -> Result<Arc<crate::hls::HlsOutput>, MediaError> {
        if let Some(src) = self.sources.get_mut(&id) {
            // A pulled source (an RTSP camera): its H.264 video, and its audio if it is Opus
            // (G.711 cannot be carried; the output is then video only).
            let video = src.codecs[kind_index(MediaKind::Video)].is_some();
            let audio = src.codecs[kind_index(MediaKind::Audio)] == Some(SourceCodec::Opus);
            if !audio && !video {
                // G.711 only (a call's audio, such a camera): nothing a muxer could write.
                return Err(MediaError::NoCommonCodecs);
            }
            let (tap, out) = crate::hls::start(cfg, audio, video)
                .map_err(|e| MediaError::Negotiation(format!("cannot start the HLS thread: {e}")))?;
            src.hls = Some(tap);
            return Ok(out);
        }
        let p = self.peers.get_mut(&id).filter(|p| p.role == Role::Publisher).ok_or(MediaError::NotFound(id))?;
        let (tap, out) = crate::hls::start(cfg, p.audio_mid.is_some(), p.video_mid.is_some())
            .map_err(|e| MediaError::Negotiation(format!("cannot start the HLS thread: {e}")))?;
        p.hls = Some(tap);
        self.request_keyframe(id, now);
        Ok(out)
    }

    /// Asks publisher `id` for its next complete VP8 keyframe, for a snapshot (see
    /// [`crate::snapshot`]): `reply` gets the frame's bytes, or why not (no such publisher, no
    /// video, not VP8, the peer closed: the sender is dropped). A keyframe is asked for at once
    /// (throttled like every request; a publisher that is not connected yet sends one first).
    pub fn snapshot(&mut self, id: PeerId, reply: tokio::sync::oneshot::Sender<KeyframeReply>, now: Instant) {
        let Some(p) = self.peers.get_mut(&id).filter(|p| p.role == Role::Publisher) else {
            let _ = reply.send(Err(SnapshotError::NotFound));
            return;
        };
        if p.video_mid.is_none() {
            let _ = reply.send(Err(SnapshotError::NoVideo));
            return;
        }
        p.snapshot.get_or_insert_with(Default::default).add(reply);
        self.request_keyframe(id, now);
    }

    /// Creates a call leg from the browser's offer: the WebRTC answer (G.711 only: the first of
    /// PCMU/PCMA the browser offers; with `video_local`, also the browser's first VP8 or H.264)
    /// and the RTP/AVP SDP for the SIP side, whose RTP socket is `sip_local` (and `video_local`
    /// for video), owned by the driver; their datagrams come in through
    /// [`MediaCore::handle_rtp`] and [`MediaCore::handle_rtp_video`], and go out as
    /// [`Transmit`]s with [`Via::Rtp`] and [`Via::RtpVideo`]. Without `video_local`, or without
    /// a video codec callgate carries, the browser's video is refused (`m=video 0`).
    pub fn add_bridge(
        &mut self,
        id: PeerId,
        offer: &str,
        sip_local: SocketAddr,
        video_local: Option<SocketAddr>,
        now: Instant,
    ) -> Result<BridgeAnswer, MediaError> {
        let codec = choose_g711(offer).ok_or(MediaError::TranscodingRequired)?;
        let format = video_local.and_then(|_| choose_video(offer));
        let mut webrtc_answer = self.add_peer_with(id, Role::Bridge, offer, now, Some(codec), format.as_ref())?;
        let mut format = format;
        if format.is_some() && self.peers.get(&id).is_some_and(|p| p.video_mid.is_none()) {
            // str0m took no video after all: an audio-only leg (frame mode), as without video.
            self.remove(id);
            format = None;
            webrtc_answer = self.add_peer_with(id, Role::Bridge, offer, now, Some(codec), None)?;
        }
        let latching = self.cfg.rtp_latching;
        let p = self.peers.get_mut(&id).expect("added above");
        if p.audio_mid.is_none() {
            self.remove(id);
            return Err(MediaError::TranscodingRequired);
        }
        let leg = SipLeg::new(codec, sip_local, now, id.0, latching);
        let mut sip_sdp = leg.sdp(sip_local.ip(), id.0);
        let video = match (format, video_local) {
            (Some(f), Some(local)) => {
                let v = VideoLeg::new(f, local, id.0, latching);
                sip_sdp.push_str(&v.sdp_section(true));
                Some(v)
            }
            _ => None,
        };
        let carried = video.as_ref().map(|v| v.format.codec);
        p.sip = Some(Box::new(leg));
        p.video = video.map(|v| Box::new(BridgeVideo::new(v)));
        Ok(BridgeAnswer { webrtc_answer, sip_sdp, codec, video: carried })
    }

    /// Creates an RTP-only call leg (a call with no browser, started through the REST API):
    /// returns the RTP/AVP SDP offer for the SIP side (`codec` and telephone-event), whose RTP
    /// socket is `sip_local` (owned by the driver, as for a bridge). The SIP side's audio comes
    /// in through [`MediaCore::handle_rtp`] and is counted; DTMF goes out as [`Via::Rtp`].
    pub fn add_rtp_leg(
        &mut self,
        id: PeerId,
        codec: G711,
        sip_local: SocketAddr,
        now: Instant,
    ) -> Result<String, MediaError> {
        if self.peers.contains_key(&id) || self.rtp_legs.contains_key(&id) {
            return Err(MediaError::DuplicatePeer(id));
        }
        let leg = SipLeg::new(codec, sip_local, now, id.0, self.cfg.rtp_latching);
        let sdp = leg.sdp(sip_local.ip(), id.0);
        self.rtp_legs.insert(id, RtpLeg { leg: Box::new(leg), armed: None });
        metrics::gauge!("callgate_media_rtp_legs").increment(1.0);
        Ok(sdp)
    }

    /// Sends what an RTP-only leg has due (DTMF) and re-arms its timer.
    fn drain_rtp_leg(&mut self, id: PeerId, now: Instant) {
        let Some(r) = self.rtp_legs.get_mut(&id) else { return };
        while let Some((to, pkt)) = r.leg.poll_dtmf(now) {
            self.counters.datagrams_out += 1;
            self.transmits.push_back(Transmit { destination: to, contents: pkt.into(), via: Via::Rtp(id) });
        }
        match r.leg.next_dtmf_at() {
            Some(at) if r.armed != Some(at) => {
                r.armed = Some(at);
                self.timers.push(Reverse((at, id)));
            }
            Some(_) => {}
            None => r.armed = None,
        }
    }

    /// The SIP side's SDP (its answer to our offer, or its offer): where to send, and whether
    /// it takes our G.711 (else `TranscodingRequired`). A video bridge also takes the SIP
    /// side's video address and payload type (an SDP without our video codec turns video off,
    /// never fails the call); once video is on, the browser is asked for a keyframe.
    pub fn set_bridge_remote(&mut self, id: PeerId, sip_sdp: &str) -> Result<(), MediaError> {
        let leg = match self.rtp_legs.get_mut(&id) {
            Some(r) => &mut r.leg,
            None => self.peers.get_mut(&id).and_then(|p| p.sip.as_mut()).ok_or(MediaError::NotFound(id))?,
        };
        leg.apply_remote_sdp(sip_sdp).map_err(|e| match e {
            crate::bridge::BridgeError::CodecMismatch(_) => MediaError::TranscodingRequired,
            other => MediaError::Negotiation(other.to_string()),
        })?;
        let video_on = match self.peers.get_mut(&id).and_then(|p| p.video.as_mut()) {
            Some(v) => v.leg.apply_remote_sdp(sip_sdp),
            None => false,
        };
        if let (true, Some(now)) = (video_on, self.last_now) {
            // Whatever the browser sent before had nowhere to go: the SIP side starts at a keyframe.
            self.request_keyframe(id, now);
        }
        Ok(())
    }

    /// Creates a call leg for an incoming SIP call: the SIP side's offer picks the codec (the
    /// first of PCMU/PCMA it lists) and its address; the server makes the WebRTC offer (one
    /// sendrecv audio m-line with that codec only, `a=setup:actpass`, ICE-lite) for
    /// `setRemoteSDP [callId, offer, false]`, and the RTP/AVP answer for the SIP side. The
    /// browser's answer comes later through [`MediaCore::accept_bridge_answer`].
    pub fn add_incoming_bridge(
        &mut self,
        id: PeerId,
        sip_offer: &str,
        sip_local: SocketAddr,
        video_local: Option<SocketAddr>,
        now: Instant,
    ) -> Result<IncomingBridge, MediaError> {
        if self.peers.contains_key(&id) {
            return Err(MediaError::DuplicatePeer(id));
        }
        let codec = choose_g711(sip_offer).ok_or(MediaError::TranscodingRequired)?;
        let mut leg = SipLeg::new(codec, sip_local, now, id.0, self.cfg.rtp_latching);
        leg.apply_remote_sdp(sip_offer).map_err(|e| match e {
            crate::bridge::BridgeError::CodecMismatch(_) => MediaError::TranscodingRequired,
            other => MediaError::Negotiation(other.to_string()),
        })?;
        // The SIP offer's VP8 or H.264 (its payload type and parameters) is offered to the browser
        // as the only video codec; another video codec is refused (`m=video 0`).
        let video = video_local
            .and_then(|local| Some(VideoLeg::new(choose_video(sip_offer)?, local, id.0, self.cfg.rtp_latching)))
            .and_then(|mut v| v.apply_remote_sdp(sip_offer).then_some(v));
        let config = self.bridge_config(codec, video.as_ref().map(|v| &v.format));
        let mut rtc = config.build(now);
        let candidate = Candidate::host(self.local, "udp").map_err(|e| MediaError::Negotiation(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let stream = format!("callgate-{}", id.0);
        let mut api = rtc.sdp_api();
        let mid =
            api.add_media(MediaKind::Audio, Direction::SendRecv, Some(stream.clone()), Some(stream.clone()), None);
        // One stream (the SDK shows `streams[0]`), two tracks: Chromium refuses an offer whose
        // m-lines repeat one `a=msid` (stream and track id).
        let video_mid = video.as_ref().map(|_| {
            let track = format!("{stream}-video");
            api.add_media(MediaKind::Video, Direction::SendRecv, Some(stream), Some(track), None)
        });
        let (offer, pending) =
            api.apply().ok_or_else(|| MediaError::Negotiation("no offer was produced".to_string()))?;
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let mut sip_answer = leg.sdp(sip_local.ip(), id.0);
        match &video {
            Some(v) => sip_answer.push_str(&v.sdp_section(false)),
            None => sip_answer.push_str(&crate::video::refused_video(sip_offer).unwrap_or_default()),
        }
        let carried = video.as_ref().map(|v| v.format.codec);
        let peer = Peer {
            rtc,
            role: Role::Bridge,
            ufrag: ufrag.clone(),
            addrs: Vec::new(),
            audio_mid: Some(mid),
            video_mid,
            connected: false,
            ice_ok: false,
            connect_by: now + RING_LIMIT,
            deadline: now,
            armed: None,
            players: Vec::new(),
            rx: Vec::new(),
            tx: [None, None],
            unsent: false,
            last_keyframe_request: None,
            frames_in: 0,
            frames_out: 0,
            sip: Some(Box::new(leg)),
            video: video.map(|leg| Box::new(BridgeVideo::new(leg))),
            pending: Some(pending),
            record: None,
            snapshot: None,
            hls: None,
            via: Via::Shared,
            relay_local: None,
        };
        self.peers.insert(id, peer);
        self.by_ufrag.insert(ufrag, id);
        metrics::gauge!("callgate_media_peers").increment(1.0);
        self.drain(id, now);
        Ok(IncomingBridge { webrtc_offer: offer.to_sdp_string(), sip_answer, codec, video: carried })
    }

    /// The browser's answer to an incoming-call bridge's offer. The connect timeout starts now.
    pub fn accept_bridge_answer(&mut self, id: PeerId, answer: &str, now: Instant) -> Result<(), MediaError> {
        let p = self.peers.get_mut(&id).ok_or(MediaError::NotFound(id))?;
        let pending = p.pending.take().ok_or_else(|| MediaError::Negotiation("no offer is waiting".to_string()))?;
        let answer = SdpAnswer::from_sdp_string(answer).map_err(|e| MediaError::BadOffer(e.to_string()))?;
        p.rtc.sdp_api().accept_answer(pending, answer).map_err(|e| MediaError::Negotiation(e.to_string()))?;
        let accepted = p.rtc.media(p.audio_mid.expect("set at creation")).is_some_and(|m| !m.remote_pts().is_empty());
        if !accepted {
            return Err(MediaError::TranscodingRequired);
        }
        p.connect_by = now + self.cfg.connect_timeout;
        self.drain(id, now);
        Ok(())
    }

    /// Creates a relay publisher: the pulling side of a stream published on another node
    /// (docs/cluster.md "Streams across nodes"). It is a str0m peer that makes the offer a
    /// player's browser would (recvonly audio and video, full ICE as the controlling agent,
    /// DTLS-SRTP), on its own UDP socket whose address is `local` (owned by the driver: its
    /// datagrams come in through [`MediaCore::handle_rtp`] and leave with [`Via::Rtp`]). The
    /// origin node answers it as one more player of its publisher; [`MediaCore::accept_relay_answer`]
    /// takes that answer. Until then and after, it is a publisher like any other: players are
    /// added with it as their `source`, its packets are forwarded to them, and their keyframe
    /// requests become its PLI towards the origin.
    pub fn add_relay(&mut self, id: PeerId, local: SocketAddr, now: Instant) -> Result<String, MediaError> {
        if self.peers.contains_key(&id) || self.rtp_legs.contains_key(&id) {
            return Err(MediaError::DuplicatePeer(id));
        }
        let mut rtc = self.rtc_config.clone().set_ice_lite(false).set_rtp_mode(true).build(now);
        let candidate = Candidate::host(local, "udp").map_err(|e| MediaError::Negotiation(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let mut api = rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::RecvOnly, Some("relay".into()), None, None);
        let video = api.add_media(MediaKind::Video, Direction::RecvOnly, Some("relay".into()), None, None);
        let (offer, pending) = api.apply().ok_or_else(|| MediaError::Negotiation("no offer to make".into()))?;
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let peer = Peer {
            rtc,
            role: Role::Publisher,
            ufrag,
            addrs: Vec::new(),
            audio_mid: Some(audio),
            video_mid: Some(video),
            connected: false,
            ice_ok: false,
            connect_by: now + self.cfg.connect_timeout,
            deadline: now,
            armed: None,
            players: Vec::new(),
            rx: Vec::new(),
            tx: [None, None],
            unsent: false,
            last_keyframe_request: None,
            frames_in: 0,
            frames_out: 0,
            sip: None,
            video: None,
            pending: Some(pending),
            record: None,
            snapshot: None,
            hls: None,
            via: Via::Rtp(id),
            relay_local: Some(local),
        };
        // Not in `by_ufrag`: nothing reaches a relay through the shared socket.
        self.peers.insert(id, peer);
        metrics::gauge!("callgate_media_peers").increment(1.0);
        self.drain(id, now);
        Ok(offer.to_sdp_string())
    }

    /// The origin node's answer to relay `id`'s offer; ICE starts now (the connect timeout too).
    pub fn accept_relay_answer(&mut self, id: PeerId, answer: &str, now: Instant) -> Result<(), MediaError> {
        let p = self.peers.get_mut(&id).filter(|p| p.relay_local.is_some()).ok_or(MediaError::NotFound(id))?;
        let pending = p.pending.take().ok_or_else(|| MediaError::Negotiation("no offer is waiting".to_string()))?;
        let answer = SdpAnswer::from_sdp_string(answer).map_err(|e| MediaError::BadOffer(e.to_string()))?;
        p.rtc.sdp_api().accept_answer(pending, answer).map_err(|e| MediaError::Negotiation(e.to_string()))?;
        let has =
            |mid: Option<Mid>, rtc: &Rtc| mid.and_then(|m| rtc.media(m)).is_some_and(|m| !m.remote_pts().is_empty());
        if !has(p.audio_mid, &p.rtc) {
            p.audio_mid = None;
        }
        if !has(p.video_mid, &p.rtc) {
            p.video_mid = None;
        }
        if p.audio_mid.is_none() && p.video_mid.is_none() {
            return Err(MediaError::NoCommonCodecs);
        }
        p.connect_by = now + self.cfg.connect_timeout;
        self.drain(id, now);
        Ok(())
    }

    /// A datagram on relay `id`'s own socket. Whoever can reach that port can send to it, but
    /// str0m takes only what ICE, DTLS and SRTP authenticate (the origin's fingerprint came in
    /// its answer, over NATS); the rest is dropped and counted.
    fn handle_relay_datagram(&mut self, id: PeerId, now: Instant, src: SocketAddr, local: SocketAddr, buf: &[u8]) {
        let Ok(receive) = Receive::new(Protocol::Udp, src, local, buf) else {
            self.drop_datagram("unparsable", src);
            return;
        };
        let input = Input::Receive(now, receive);
        let Some(p) = self.peers.get_mut(&id).filter(|p| p.rtc.accepts(&input)) else {
            self.drop_datagram("not_accepted", src);
            return;
        };
        self.counters.datagrams_in += 1;
        if let Err(e) = p.rtc.handle_input(input) {
            self.handle_rtc_error(id, e, now);
            return;
        }
        self.drain(id, now);
    }

    /// Queues DTMF keys for the SIP side (RFC 4733).
    pub fn send_dtmf(&mut self, id: PeerId, keys: &str, now: Instant) -> Result<(), MediaError> {
        if let Some(r) = self.rtp_legs.get_mut(&id) {
            r.leg.queue_dtmf(keys).map_err(|e| MediaError::Negotiation(e.to_string()))?;
            self.drain_rtp_leg(id, now);
            return Ok(());
        }
        let leg = self.peers.get_mut(&id).and_then(|p| p.sip.as_mut()).ok_or(MediaError::NotFound(id))?;
        leg.queue_dtmf(keys).map_err(|e| MediaError::Negotiation(e.to_string()))?;
        self.drain(id, now);
        Ok(())
    }

    /// A datagram on bridge `id`'s RTP socket (from the SIP side): its audio goes to the browser.
    pub fn handle_rtp(&mut self, id: PeerId, now: Instant, src: SocketAddr, buf: &[u8]) {
        if let Some(r) = self.rtp_legs.get_mut(&id) {
            // No browser to play it to: the audio is counted (stats), and goes to the source it
            // feeds, if any (`toStream`), else nowhere.
            let audio = r.leg.from_sip(src, buf).map(|(ts, payload)| (ts as u32, Arc::<[u8]>::from(payload)));
            if let Some((ts, payload)) = audio {
                self.counters.frames_in += 1;
                if let Some(&source) = self.leg_feeds.get(&id) {
                    let frame = SourceFrame { kind: MediaKind::Audio, ts, keyframe: false, payloads: vec![payload] };
                    self.source_frame(source, frame, now);
                }
            }
            // The first packet may have taught the leg its SIP address: DTMF may be due.
            self.drain_rtp_leg(id, now);
            return;
        }
        let Some(p) = self.peers.get_mut(&id) else { return };
        if let Some(local) = p.relay_local {
            self.handle_relay_datagram(id, now, src, local, buf);
            return;
        }
        let (Some(leg), Some(mid)) = (p.sip.as_mut(), p.audio_mid) else { return };
        let pt = leg.codec().pt();
        let Some((ts8k, payload)) = leg.from_sip(src, buf) else { return };
        if !p.connected {
            return;
        }
        if let Some(v) = p.video.as_mut() {
            // RTP mode (a video bridge): the G.711 payload as an RTP packet of its own numbering.
            let seq = v.audio_seq;
            v.audio_seq += 1;
            let mut api = p.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(mid, None) else { return };
            tx.write_rtp(RtpWrite::new(pt.into(), SeqNo::from(seq), ts8k as u32, now, payload.to_vec()));
            self.counters.frames_out += 1;
            p.frames_out += 1;
            self.mark_unsent(id, now);
            return;
        }
        let Some(w) = p.rtc.writer(mid) else { return };
        let Some(pt) = w.payload_params().next().map(|pp| pp.pt()) else { return };
        let t = MediaTime::new(ts8k, Frequency::new(8000).expect("8000 is not zero"));
        if w.write(pt, now, t, payload.to_vec()).is_ok() {
            self.counters.frames_out += 1;
        }
        self.drain(id, now);
    }

    /// A datagram on bridge `id`'s video socket (from the SIP side): video RTP goes to the
    /// browser as it is (the browser's payload type, str0m's SSRC and numbering); a PLI or FIR
    /// makes the browser send a keyframe (throttled).
    pub fn handle_rtp_video(&mut self, id: PeerId, now: Instant, src: SocketAddr, buf: &[u8]) {
        let Some(p) = self.peers.get_mut(&id) else { return };
        let (Some(v), Some(mid)) = (p.video.as_mut(), p.video_mid) else { return };
        match v.leg.from_sip(src, buf) {
            VideoIn::Rtp { seq, ts, marker, payload } => {
                if !p.connected {
                    return;
                }
                let ssrc = str0m::rtp::Ssrc::from(v.leg.remote_ssrc().unwrap_or(0));
                let Some(seq) = v.tx_seq.map(ssrc, seq) else { return };
                let pt = v.leg.format.pt;
                let mut api = p.rtc.direct_api();
                let Some(tx) = api.stream_tx_by_mid(mid, None) else { return };
                let write =
                    RtpWrite::new(pt.into(), SeqNo::from(seq), ts, now, payload.to_vec()).marker(marker).nackable(true);
                tx.write_rtp(write);
                self.counters.frames_out += 1;
                p.frames_out += 1;
                self.mark_unsent(id, now);
            }
            VideoIn::KeyframeRequest => {
                tracing::trace!(peer = id.0, "keyframe request from the SIP side");
                self.request_keyframe(id, now);
            }
            VideoIn::Dropped => {}
        }
    }

    /// `id` has packets written at `now` (RTP mode) for the next [`MediaCore::flush`] to send
    /// (which drives it with the latest `now`, so the pacer hands them out at once).
    fn mark_unsent(&mut self, id: PeerId, now: Instant) {
        if self.last_now.is_none_or(|t| t < now) {
            self.last_now = Some(now);
        }
        if let Some(p) = self.peers.get_mut(&id) {
            if !p.unsent {
                p.unsent = true;
                self.unsent.push(id);
            }
        }
    }

    /// Closes a peer. A publisher's players stay (their owner stops them with their own status).
    pub fn remove(&mut self, id: PeerId) {
        self.leg_feeds.remove(&id);
        if self.rtp_legs.remove(&id).is_some() {
            metrics::gauge!("callgate_media_rtp_legs").decrement(1.0);
            return;
        }
        if self.sources.remove(&id).is_some() {
            self.leg_feeds.retain(|_, s| *s != id);
            // Its players stay (the server ends their streams); nothing feeds them any more.
            metrics::gauge!("callgate_media_sources").decrement(1.0);
            return;
        }
        let Some(mut p) = self.peers.remove(&id) else { return };
        p.rtc.disconnect();
        self.by_ufrag.remove(&p.ufrag);
        for a in &p.addrs {
            if self.by_addr.get(a) == Some(&id) {
                self.by_addr.remove(a);
            }
        }
        if let Role::Player { source } = p.role {
            if let Some(src) = self.peers.get_mut(&source) {
                src.players.retain(|x| *x != id);
            } else if let Some(src) = self.sources.get_mut(&source) {
                src.players.retain(|x| *x != id);
            }
        }
        metrics::gauge!("callgate_media_peers").decrement(1.0);
    }

    /// A peer's counters. An RTP-only leg: `connected` once its SIP address is known,
    /// `frames_in` = SIP audio packets received, `frames_out` = RTP packets sent (DTMF).
    pub fn stats(&self, id: PeerId) -> Option<PeerStats> {
        if let Some(r) = self.rtp_legs.get(&id) {
            return Some(PeerStats {
                connected: r.leg.remote.is_some(),
                frames_in: r.leg.packets_in,
                frames_out: r.leg.packets_out,
                players: 0,
                rtp_dropped: r.leg.packets_foreign,
                ..Default::default()
            });
        }
        if let Some(s) = self.sources.get(&id) {
            return Some(PeerStats {
                connected: true,
                frames_in: s.frames_in,
                frames_out: 0,
                players: s.players.len(),
                rtp_dropped: 0,
                ..Default::default()
            });
        }
        self.peers.get(&id).map(|p| PeerStats {
            connected: p.connected,
            frames_in: p.frames_in,
            frames_out: p.frames_out,
            players: p.players.len(),
            rtp_dropped: p.sip.as_ref().map_or(0, |s| s.packets_foreign)
                + p.video.as_ref().map_or(0, |v| v.leg.packets_foreign),
            video_in: p.video.as_ref().map_or(0, |v| v.leg.packets_in),
            video_out: p.video.as_ref().map_or(0, |v| v.leg.packets_out),
            keyframe_requests_in: p.video.as_ref().map_or(0, |v| v.leg.keyframe_requests_in),
            plis_out: p.video.as_ref().map_or(0, |v| v.leg.plis_out),
        })
    }

    /// One datagram from `source` arrived on the shared socket.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, buf: &[u8]) {
        let Ok(receive) = Receive::new(Protocol::Udp, source, self.local, buf) else {
            self.drop_datagram("unparsable", source);
            return;
        };
        let input = Input::Receive(now, receive);
        // O(1) whatever arrives: a binding request by the ufrag it names, anything else by its
        // source address, which only such a request introduces once its peer accepted it
        // (`Rtc::accepts` checks the USERNAME and the MESSAGE-INTEGRITY of a request). No
        // datagram is offered to peers it was not routed to, so junk from unknown addresses
        // costs one hash lookup, not one `accepts` per peer.
        let ufrag = stun::binding_request_ufrag(buf);
        let routed = match ufrag {
            Some(u) => std::str::from_utf8(u).ok().and_then(|u| self.by_ufrag.get(u)).copied(),
            None => self.by_addr.get(&source).copied(),
        };
        let Some(id) = routed else {
            let why = if ufrag.is_some() { "unknown_ufrag" } else { "unknown_source" };
            self.drop_datagram(why, source);
            return;
        };
        self.counters.peer_probes += 1;
        let Some(p) = self.peers.get_mut(&id).filter(|p| p.rtc.accepts(&input)) else {
            self.drop_datagram("not_accepted", source);
            return;
        };
        self.counters.datagrams_in += 1;
        if let Err(e) = p.rtc.handle_input(input) {
            self.handle_rtc_error(id, e, now);
            return;
        }
        // Chromium checks from each of its addresses (its interface address even towards a
        // 127.0.0.1 candidate); each becomes routable once its check reached the peer. Capped:
        // someone who learnt a ufrag must not grow the table without bound.
        if ufrag.is_some() && !p.addrs.contains(&source) {
            if p.addrs.len() < MAX_ADDRS_PER_PEER {
                p.addrs.push(source);
                self.by_addr.insert(source, id);
            } else {
                tracing::debug!(peer = id.0, %source, "peer has too many addresses; this one is not routed");
            }
        }
        self.drain(id, now);
    }

    fn drop_datagram(&mut self, why: &'static str, source: SocketAddr) {
        self.counters.datagrams_dropped += 1;
        metrics::counter!("callgate_media_datagrams_dropped_total", "why" => why).increment(1);
        tracing::trace!(%source, why, "datagram dropped");
    }

    /// Drives every peer whose timer is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.flush();
        // Take the due entries first: a peer re-armed at or before `now` while being handled
        // waits for the next call instead of spinning here.
        let mut due = Vec::new();
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            due.push((at, id));
        }
        for (at, id) in due {
            if let Some(r) = self.rtp_legs.get_mut(&id) {
                if r.armed == Some(at) {
                    r.armed = None;
                    self.drain_rtp_leg(id, now);
                }
                continue;
            }
            let Some(p) = self.peers.get_mut(&id) else { continue };
            if p.armed != Some(at) {
                continue; // a stale entry; the peer re-armed since
            }
            p.armed = None;
            if !p.connected && now >= p.connect_by {
                let reason = if p.ice_ok { FailReason::DtlsTimeout } else { FailReason::IceTimeout };
                self.fail(id, reason);
                continue;
            }
            if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                self.handle_rtc_error(id, e, now);
                continue;
            }
            self.drain(id, now);
        }
    }

    /// When [`MediaCore::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.flush();
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Hands back a sent datagram's buffer for reuse (kept only if it is large enough for any
    /// packet, and at most [`SPARE_BUFFERS`] of them).
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if buf.capacity() >= DATAGRAM_BUFFER && self.spare.len() < SPARE_BUFFERS {
            self.spare.push(buf);
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.flush();
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<(PeerId, MediaEvent)> {
        self.flush();
        self.events.pop_front()
    }

    /// Sends what was written to players since the last flush: one timeout input and one drain
    /// per player, however many packets it got. Forwarding only queues (`write_rtp`); the
    /// `poll_*` calls flush, so a batch of publisher datagrams handled one after the other is
    /// sent with one pass over its players instead of one per packet. str0m's pacer hands out a
    /// queued packet only after a timeout input has taken a snapshot of the queues, which is why
    /// the timeout is given here rather than left to the timer heap (another drain per player).
    fn flush(&mut self) {
        if self.unsent.is_empty() {
            return;
        }
        let Some(now) = self.last_now else { return };
        let unsent = std::mem::take(&mut self.unsent);
        for &pid in &unsent {
            let Some(p) = self.peers.get_mut(&pid) else { continue };
            if !std::mem::take(&mut p.unsent) {
                continue;
            }
            if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                self.handle_rtc_error(pid, e, now);
                continue;
            }
            self.drain(pid, now);
        }
        // Keep the allocation. A player's drain can reach a publisher (keyframe request) but
        // that drain yields no new packets to forward; were any written anyway, they stay
        // queued in `self.unsent` for the next `poll_*`.
        let mut unsent = unsent;
        unsent.clear();
        if self.unsent.is_empty() {
            self.unsent = unsent;
        }
    }

    /// Asks the publisher `id` for a keyframe now (throttled).
    pub fn request_keyframe(&mut self, id: PeerId, now: Instant) {
        let Some(p) = self.peers.get_mut(&id) else { return };
        let Some(mid) = p.video_mid else { return };
        if !p.connected || p.last_keyframe_request.is_some_and(|t| now < t + self.cfg.keyframe_request_interval) {
            return;
        }
        // The direct API works in RTP and frame mode alike (`Rtc::writer` panics in RTP mode).
        let params = p.rtc.codec_config().params();
        let kind = if params.iter().any(|c| c.fb_pli()) {
            KeyframeRequestKind::Pli
        } else if params.iter().any(|c| c.fb_fir()) {
            KeyframeRequestKind::Fir
        } else {
            tracing::debug!(peer = id.0, "keyframe request not sent: neither PLI nor FIR negotiated");
            return;
        };
        let mut api = p.rtc.direct_api();
        let Some(rx) = api.stream_rx_by_mid(mid, None) else {
            // No video received yet (no receiver stream): the browser sends a keyframe first anyway.
            tracing::debug!(peer = id.0, "keyframe request not sent: no video stream yet");
            return;
        };
        rx.request_keyframe(kind);
        tracing::trace!(peer = id.0, ?kind, "keyframe requested");
        p.last_keyframe_request = Some(now);
        metrics::counter!("callgate_media_keyframe_requests_total").increment(1);
        self.drain(id, now);
    }

    /// Polls `id` until `Output::Timeout`, handling what comes out; then forwards the media it
    /// produced and passes on keyframe requests.
    fn drain(&mut self, id: PeerId, now: Instant) {
        if self.last_now.is_none_or(|t| t < now) {
            self.last_now = Some(now);
        }
        let mut packets: Vec<(MediaKind, RtpPacket)> = Vec::new();
        let mut wants_keyframe: Option<PeerId> = None;
        let mut connected_player = false;
        let mut failed: Option<FailReason> = None;
        {
            let Some(p) = self.peers.get_mut(&id) else { return };
            loop {
                match p.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => {
                        p.deadline = t;
                        break;
                    }
                    Ok(Output::Transmit(t)) => {
                        self.counters.datagrams_out += 1;
                        self.transmits.push_back(Transmit {
                            destination: t.destination,
                            contents: t.contents,
                            via: p.via,
                        })
                    }
                    Ok(Output::Event(e)) => match e {
                        Event::Connected => {
                            p.connected = true;
                            self.events.push_back((id, MediaEvent::Connected));
                            if let Role::Player { source } = p.role {
                                wants_keyframe = Some(source);
                                connected_player = true;
                            }
                            // A video call starts at a keyframe.
                            if p.video.is_some() {
                                wants_keyframe = Some(id);
                            }
                            // A recording starts at a keyframe.
                            if p.record.is_some() {
                                wants_keyframe = Some(id);
                            }
                        }
                        Event::IceConnectionStateChange(s) => match s {
                            IceConnectionState::Connected | IceConnectionState::Completed => p.ice_ok = true,
                            IceConnectionState::Disconnected if p.connected => {
                                failed = Some(FailReason::IceKeepAlive);
                                break;
                            }
                            _ => {}
                        },
                        Event::MediaData(d) if p.role == Role::Bridge => {
                            p.frames_in += 1;
                            self.counters.frames_in += 1;
                            let ts8k = d.time.rebase(Frequency::new(8000).expect("8000 is not zero")).numer();
                            if let Some((to, pkt)) = p.sip.as_mut().and_then(|s| s.from_browser(ts8k, &d.data, now)) {
                                self.counters.datagrams_out += 1;
                                self.transmits.push_back(Transmit {
                                    destination: to,
                                    contents: pkt.into(),
                                    via: Via::Rtp(id),
                                });
                            }
                        }
                        Event::RtpPacket(pkt) if p.role == Role::Bridge => {
                            // A video bridge (RTP mode): audio and video to the SIP side, payloads as they are.
                            p.frames_in += 1;
                            self.counters.frames_in += 1;
                            let Some((kind, _)) = p.note_rx(&pkt) else { continue };
                            let out = match kind {
                                MediaKind::Audio => p
                                    .sip
                                    .as_mut()
                                    .and_then(|s| s.from_browser(u64::from(pkt.header.timestamp), &pkt.payload, now))
                                    .map(|o| (o, Via::Rtp(id))),
                                MediaKind::Video => p.video.as_mut().and_then(|v| {
                                    let first = v.leg.packets_out == 0;
                                    let (seq, ts, marker) = (*pkt.seq_no, pkt.header.timestamp, pkt.header.marker);
                                    let o = v.leg.from_browser(seq, ts, marker, &pkt.payload)?;
                                    if first {
                                        // The SIP side's first video: it must start at a keyframe.
                                        wants_keyframe = Some(id);
                                    }
                                    Some((o, Via::RtpVideo(id)))
                                }),
                            };
                            if let Some(((to, bytes), via)) = out {
                                self.counters.datagrams_out += 1;
                                self.transmits.push_back(Transmit { destination: to, contents: bytes.into(), via });
                            }
                        }
                        Event::RtpPacket(pkt) if p.role == Role::Publisher => {
                            p.frames_in += 1;
                            self.counters.frames_in += 1;
                            let Some((kind, gap)) = p.note_rx(&pkt) else { continue };
                            // A lost video packet breaks the picture until the next keyframe
                            // (RTX may still repair it; the request is throttled anyway).
                            if gap && kind == MediaKind::Video {
                                wants_keyframe = Some(id);
                            }
                            // A copy for the recorder and the HLS muxer, when either taps it.
                            let copy = if p.record.is_some() || p.hls.is_some() {
                                let pt = pkt.header.payload_type;
                                p.rtc.codec_config().find(|c| c.pt() == pt).map(|c| RecPacket {
                                    kind,
                                    codec: c.spec().codec,
                                    seq: *pkt.seq_no,
                                    ts: pkt.header.timestamp,
                                    marker: pkt.header.marker,
                                    payload: pkt.payload.clone(),
                                    arrival: pkt.timestamp,
                                })
                            } else {
                                None
                            };
                            if let (Some(tap), Some(copy)) = (p.record.as_mut(), &copy) {
                                if !tap.offer(copy.clone()) {
                                    // The writer stopped (it failed and reported why).
                                    p.record = None;
                                } else if std::mem::take(&mut tap.wants_keyframe) {
                                    wants_keyframe = Some(id);
                                }
                            }
                            if let (Some(tap), Some(copy)) = (p.hls.as_mut(), copy) {
                                if !tap.offer(copy) {
                                    p.hls = None;
                                } else if tap.take_wants_keyframe() {
                                    wants_keyframe = Some(id);
                                }
                            }
                            if kind == MediaKind::Video {
                                if let Some(tap) = p.snapshot.as_mut() {
                                    let pt = pkt.header.payload_type;
                                    let codec = p.rtc.codec_config().find(|c| c.pt() == pt).map(|c| c.spec().codec);
                                    let done = codec.is_some_and(|c| {
                                        tap.push(c, *pkt.seq_no, pkt.header.timestamp, pkt.header.marker, &pkt.payload)
                                    });
                                    if done {
                                        p.snapshot = None;
                                    } else {
                                        // Still waiting: ask again (throttled to one request per
                                        // `keyframe_request_interval`), so that a request that was
                                        // throttled or lost does not leave the snapshot waiting.
                                        wants_keyframe = Some(id);
                                    }
                                }
                            }
                            packets.push((kind, pkt));
                        }
                        Event::KeyframeRequest(req) => {
                            if let Role::Player { source } = p.role {
                                wants_keyframe = Some(source);
                            }
                            // The browser of a video call lost its picture: PLI to the SIP side.
                            let interval = self.cfg.keyframe_request_interval;
                            if let Some(v) = p.video.as_mut().filter(|_| Some(req.mid) == p.video_mid) {
                                if v.last_pli.is_none_or(|t| now >= t + interval) {
                                    if let Some((to, pli)) = v.leg.pli() {
                                        v.last_pli = Some(now);
                                        self.counters.datagrams_out += 1;
                                        self.transmits.push_back(Transmit {
                                            destination: to,
                                            contents: pli.into(),
                                            via: Via::RtpVideo(id),
                                        });
                                    }
                                }
                            }
                        }
                        _ => {}
                    },
                    Err(e) => {
                        failed = Some(fail_reason(&e));
                        break;
                    }
                }
            }
        }
        if let Some(reason) = failed {
            self.fail(id, reason);
            return;
        }
        let p = self.peers.get_mut(&id).expect("drained above");
        if let Some(leg) = p.sip.as_mut() {
            while let Some((to, pkt)) = leg.poll_dtmf(now) {
                self.counters.datagrams_out += 1;
                self.transmits.push_back(Transmit { destination: to, contents: pkt.into(), via: Via::Rtp(id) });
            }
        }
        let at = p.next_wakeup();
        // One live heap entry per peer: most drains (one per packet) leave the wake-up as it was.
        if p.armed != Some(at) {
            p.armed = Some(at);
            self.timers.push(Reverse((at, id)));
        }
        for (kind, pkt) in packets {
            self.forward(id, kind, &pkt);
        }
        match wants_keyframe {
            // A pulled source cannot be asked (see `Source::keyframe`): a player that just
            // connected gets the cached one; a later request has no answer but the camera's next.
            Some(source) if self.sources.contains_key(&source) && connected_player => {
                if let Some(src) = self.sources.get_mut(&source) {
                    src.replay_to.push(id);
                }
            }
            Some(source) if self.sources.contains_key(&source) => {}
            Some(source) => self.request_keyframe(source, now),
            None => {}
        }
    }

    /// Writes one RTP packet of publisher `source` to each of its connected players (see
    /// [`crate::forward`] for what is rewritten).
    fn forward(&mut self, source: PeerId, kind: MediaKind, pkt: &RtpPacket) {
        if pkt.payload.len() > MAX_FORWARDED_PAYLOAD {
            // No browser sends this (they keep packets under the path MTU); str0m's regular send
            // path panics on a packet over its 2000-byte datagram buffer, so it is not passed on.
            self.metrics.dropped_oversize.increment(1);
            return;
        }
        let params = {
            let Some(p) = self.peers.get_mut(&source) else { return };
            let pt = pkt.header.payload_type;
            p.rtc.codec_config().find(|c| c.pt() == pt).copied()
        };
        let ext_vals = forwarded_ext_vals(pkt);
        let out = Outgoing {
            kind,
            params,
            src_pt: pkt.header.payload_type,
            src_ssrc: pkt.header.ssrc,
            seq: *pkt.seq_no,
            ts: pkt.header.timestamp,
            arrival: pkt.timestamp,
            marker: pkt.header.marker,
            ext_vals: &ext_vals,
            payload: &pkt.payload,
        };
        self.forward_to(Feeder::Publisher(source), [out]);
    }

    /// Writes each of `outs` to every player of `from` (a publisher or a pulled source) and counts
    /// what was written (`frames_out`, the forwarded-packets metric).
    fn forward_to<'a>(&mut self, from: Feeder, outs: impl IntoIterator<Item = Outgoing<'a>>) {
        let players = match from.players(self) {
            Some(p) => std::mem::take(p),
            None => return,
        };
        let mut written = 0;
        for out in outs {
            for &pid in &players {
                written += u64::from(self.write_to_player(pid, &out));
            }
        }
        self.counters.frames_out += written;
        self.metrics.frames_forwarded.increment(written);
        if let Some(p) = from.players(self) {
            // Players added while forwarding (none today: forwarding never adds) are kept.
            let added = std::mem::replace(p, players);
            p.extend(added);
        }
    }

    /// Writes one packet to player `pid` if it is connected and takes the codec; true when
    /// written (sent by the next flush).
    fn write_to_player(&mut self, pid: PeerId, out: &Outgoing<'_>) -> bool {
        let Some(pl) = self.peers.get_mut(&pid) else { return false };
        if !pl.connected {
            return false; // str0m drops media written before the connection is up
        }
        let Some(track) = pl.tx[kind_index(out.kind)].as_mut() else { return false };
        let rtc = &mut pl.rtc;
        let mid = track.mid;
        let params = out.params;
        let pt = track.pt_for(out.src_pt, || {
            let pt = rtc.codec_config().match_params(params?)?.pt();
            rtc.media(mid).is_some_and(|m| m.remote_pts().contains(&pt)).then_some(pt)
        });
        let Some(pt) = pt else {
            self.metrics.dropped_no_codec.increment(1);
            return false;
        };
        // Older than this player's first packet (reordered across its join): not sent.
        let Some(seq) = track.seq.map(out.src_ssrc, out.seq) else { return false };
        let mut api = rtc.direct_api();
        let ssrc = match track.ssrc {
            Some(ssrc) => Some(ssrc),
            None => api.stream_tx_by_mid(mid, None).map(|tx| tx.ssrc()).inspect(|s| track.ssrc = Some(*s)),
        };
        // Video is kept for NACKs (answered from the player's RTX cache); audio is not resent.
        let write = |pt| {
            RtpWrite::new(pt, SeqNo::from(seq), out.ts, out.arrival, out.payload.clone())
                .marker(out.marker)
                .ext_vals(out.ext_vals.clone())
                .nackable(out.kind == MediaKind::Video)
        };
        // Sent at once when nothing is queued on the player's stream (the vendored str0m's
        // direct send path, see vendor/str0m/CALLGATE-PATCH.md), written into a recycled buffer;
        // else queued for the next flush.
        let now = self.last_now.unwrap_or(out.arrival);
        let mut buf = self.spare.pop().unwrap_or_default();
        let sent = match ssrc.map(|s| api.send_rtp_into(s, now, write(pt), &mut buf)) {
            Some(Ok(Some(to))) => Some(to.destination),
            Some(Ok(None)) => None,
            None | Some(Err(_)) => {
                track.ssrc = None; // looked up by mid again next time
                self.metrics.dropped_write.increment(1);
                self.recycle(buf);
                return false;
            }
        };
        pl.frames_out += 1;
        match sent {
            Some(destination) => {
                self.counters.datagrams_out += 1;
                self.transmits.push_back(Transmit { destination, contents: buf.into(), via: pl.via });
            }
            None if !pl.unsent => {
                pl.unsent = true;
                self.unsent.push(pid);
                self.recycle(buf);
            }
            None => self.recycle(buf),
        }
        true
    }

    fn handle_rtc_error(&mut self, id: PeerId, e: RtcError, now: Instant) {
        match fail_reason(&e) {
            // A single bad packet (not DTLS) must not end a stream someone could spoof it into.
            FailReason::Error(msg) => {
                metrics::counter!("callgate_media_datagrams_dropped_total", "why" => "rtc_error").increment(1);
                tracing::debug!(peer = id.0, error = msg, "input rejected by the peer");
                self.drain(id, now);
            }
            reason => self.fail(id, reason),
        }
    }

    fn fail(&mut self, id: PeerId, reason: FailReason) {
        tracing::info!(peer = id.0, ?reason, "media peer failed");
        self.remove(id);
        self.events.push_back((id, MediaEvent::Failed(reason)));
    }
}

fn kind_index(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
    }
}

fn fail_reason(e: &RtcError) -> FailReason {
    match e {
        RtcError::Dtls(d) => FailReason::Dtls(d.to_string()),
        other => FailReason::Error(other.to_string()),
    }
}

/// The codecs callgate forwards: Opus, VP8 and H.264 (what Chromium offers and every browser
/// decodes). RED and the rest are left out: forwarding never transcodes.
fn rtc_config(provider: Arc<CryptoProvider>, cert: Option<DtlsCert>) -> RtcConfig {
    let mut c = Rtc::builder()
        .set_ice_lite(true)
        .set_crypto_provider(provider)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .enable_h264(true);
    if let Some(cert) = cert {
        c = c.set_dtls_cert(cert);
    }
    c
}

/// The header extensions a player's answer may accept: str0m's standard set without
/// transport-cc and abs-send-time. Both only feed a bandwidth estimate, and the server makes none
/// towards players (it forwards the publisher's bitrate as it is), so writing them into every
/// forwarded packet (and a transport-cc number registered per packet) and taking the browser's
/// transport-wide feedback (one RTCP packet per player every 50-100 ms) was work for nothing.
/// Publishers keep them: the browser's send-side estimate needs the server's transport-cc feedback.
fn player_extensions() -> ExtensionMap {
    let standard = ExtensionMap::standard();
    let mut exts = ExtensionMap::empty();
    for (id, ext) in standard.iter() {
        if !matches!(ext, Extension::TransportSequenceNumber | Extension::AbsoluteSendTime) {
            exts.set(id, ext.clone());
        }
    }
    exts
}

/// One DTLS certificate for all peers of the core (as a WCS node has one): generating one per
/// peer is wasted work.
fn shared_certificate(provider: &CryptoProvider) -> Option<DtlsCert> {
    match provider.dtls_provider.generate_certificate() {
        Some(c) => Some(c),
        None => {
            tracing::warn!("could not generate a shared DTLS certificate; each peer generates its own");
            None
        }
    }
}
