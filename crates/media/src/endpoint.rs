//! The thin async driver: one tokio task owns the UDP socket and the [`MediaCore`]; the rest of
//! the server talks to it through [`MediaEndpoint`] (commands with a oneshot reply) and hears
//! back through the per-peer event channel given when the peer is created.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use str0m::net::DatagramSend;

use crate::batch::{SendBatch, MAX_BATCH};
use crate::core::{BridgeAnswer, Counters, IncomingBridge, MediaCore, PeerStats, SourceFrame, Via};
use crate::record::{RecordReport, RecordSpec};
use crate::snapshot::{Snapshot, SnapshotError};
use crate::source::SourceCodec;
use crate::{MediaConfig, MediaError, MediaEvent, PeerId};

/// Where a peer's events go.
pub type EventSender = mpsc::UnboundedSender<MediaEvent>;

enum Command {
    /// Stop the task (every peer, every RTP socket, the UDP socket); `done` once stopped.
    Shutdown {
        done: oneshot::Sender<()>,
    },
    Publish {
        id: PeerId,
        offer: String,
        events: EventSender,
        reply: oneshot::Sender<Result<String, MediaError>>,
    },
    Play {
        id: PeerId,
        source: PeerId,
        offer: String,
        events: EventSender,
        reply: oneshot::Sender<Result<String, MediaError>>,
    },
    Bridge {
        id: PeerId,
        offer: String,
        events: EventSender,
        reply: oneshot::Sender<Result<BridgeAnswer, MediaError>>,
    },
    IncomingBridge {
        id: PeerId,
        sip_offer: String,
        events: EventSender,
        reply: oneshot::Sender<Result<IncomingBridge, MediaError>>,
    },
    BridgeAnswer {
        id: PeerId,
        sdp: String,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    RtpLeg {
        id: PeerId,
        codec: crate::bridge::G711,
        reply: oneshot::Sender<Result<String, MediaError>>,
    },
    BridgeRemote {
        id: PeerId,
        sdp: String,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    Dtmf {
        id: PeerId,
        keys: String,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    Relay {
        id: PeerId,
        events: EventSender,
        reply: oneshot::Sender<Result<String, MediaError>>,
    },
    RelayAnswer {
        id: PeerId,
        sdp: String,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    Close {
        id: PeerId,
    },
    AddSource {
        id: PeerId,
        codecs: Vec<SourceCodec>,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    SourceFrame {
        id: PeerId,
        frame: SourceFrame,
    },
    LegSource {
        id: PeerId,
        leg: PeerId,
        codec: crate::bridge::G711,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    RequestKeyframe {
        id: PeerId,
    },
    Record {
        id: PeerId,
        spec: RecordSpec,
        reports: mpsc::UnboundedSender<RecordReport>,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    Hls {
        id: PeerId,
        cfg: crate::hls::HlsConfig,
        reply: oneshot::Sender<Result<Arc<crate::hls::HlsOutput>, MediaError>>,
    },
    Snapshot {
        id: PeerId,
        reply: oneshot::Sender<crate::snapshot::KeyframeReply>,
    },
    Stats {
        id: PeerId,
        reply: oneshot::Sender<Option<PeerStats>>,
    },
    /// Panics the media task (tests of its supervision; debug builds only).
    #[cfg(debug_assertions)]
    Panic,
}

/// The core's [`Counters`], published by the media task after each wake-up.
#[derive(Debug, Default)]
pub struct SharedCounters {
    pub datagrams_in: AtomicU64,
    pub datagrams_out: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub datagrams_dropped: AtomicU64,
    pub peer_probes: AtomicU64,
}

impl SharedCounters {
    pub fn snapshot(&self) -> Counters {
        Counters {
            datagrams_in: self.datagrams_in.load(Ordering::Relaxed),
            datagrams_out: self.datagrams_out.load(Ordering::Relaxed),
            frames_in: self.frames_in.load(Ordering::Relaxed),
            frames_out: self.frames_out.load(Ordering::Relaxed),
            datagrams_dropped: self.datagrams_dropped.load(Ordering::Relaxed),
            peer_probes: self.peer_probes.load(Ordering::Relaxed),
        }
    }

    fn publish(&self, c: Counters) {
        self.datagrams_in.store(c.datagrams_in, Ordering::Relaxed);
        self.datagrams_out.store(c.datagrams_out, Ordering::Relaxed);
        self.frames_in.store(c.frames_in, Ordering::Relaxed);
        self.frames_out.store(c.frames_out, Ordering::Relaxed);
        self.datagrams_dropped.store(c.datagrams_dropped, Ordering::Relaxed);
        self.peer_probes.store(c.peer_probes, Ordering::Relaxed);
    }
}

/// Handle to the media task. Cheap to clone; the task stops when the last handle is dropped.
#[derive(Clone)]
pub struct MediaEndpoint {
    tx: mpsc::Sender<Command>,
    counters: Arc<SharedCounters>,
    next_id: Arc<AtomicU64>,
    /// The socket's bound address.
    pub bound_addr: SocketAddr,
    /// The host candidate every answer carries.
    pub advertised_addr: SocketAddr,
    /// The media task's panic message once it panicked (`None` while it runs). The task is
    /// then gone with every peer: commands fail with [`MediaError::Stopped`], no event follows.
    /// The server treats it as fatal (`callgate_server::supervise`).
    pub panicked: watch::Receiver<Option<String>>,
}

/// Commands that may wait for the media task before callers are told it is overloaded.
const COMMAND_QUEUE: usize = 1024;
/// Datagrams read in one go before the task looks at commands and timers again.
const RECV_BATCH: usize = 64;

impl MediaEndpoint {
    /// Binds the UDP socket and starts the media task.
    pub async fn start(cfg: MediaConfig) -> io::Result<MediaEndpoint> {
        crate::install_crypto_provider();
        let socket = UdpSocket::bind(cfg.bind).await?;
        let sock = socket2::SockRef::from(&socket);
        // Best effort: a smaller buffer only means earlier drops under bursts.
        let _ = sock.set_recv_buffer_size(cfg.socket_buffer_bytes);
        let _ = sock.set_send_buffer_size(cfg.socket_buffer_bytes);
        tracing::debug!(rcvbuf = ?sock.recv_buffer_size(), sndbuf = ?sock.send_buffer_size(), "media socket buffers");
        let bound_addr = socket.local_addr()?;
        let advertised_addr = cfg.advertised_addr(bound_addr);
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let rtp_ip = cfg.bind.ip();
        let core = MediaCore::new(cfg, advertised_addr);
        let counters = Arc::new(SharedCounters::default());
        let task = tokio::spawn(run(socket, core, rx, counters.clone(), rtp_ip));
        let (panic_tx, panicked) = watch::channel(None);
        // A panic (a bug) must not leave a dead task behind a live-looking handle: it is logged
        // here and published on `panicked` for the application to act on.
        tokio::spawn(async move {
            if let Err(e) = task.await {
                if e.is_panic() {
                    let msg = panic_message(e.into_panic());
                    tracing::error!(panic = %msg, "the media task panicked: every stream and call leg is gone");
                    panic_tx.send_replace(Some(msg));
                }
            }
        });
        tracing::info!(%bound_addr, %advertised_addr, "media endpoint started (ICE-lite, one UDP port)");
        Ok(MediaEndpoint { tx, counters, next_id: Arc::new(AtomicU64::new(1)), bound_addr, advertised_addr, panicked })
    }

    /// Makes the media task panic, to test what supervises it. Debug builds only (not in a
    /// release binary); nothing on the network reaches it.
    #[cfg(debug_assertions)]
    #[doc(hidden)]
    pub async fn panic_for_test(&self) {
        let _ = self.tx.send(Command::Panic).await;
    }

    /// Totals so far (datagrams and frames in and out).
    pub fn counters(&self) -> Counters {
        self.counters.snapshot()
    }

    /// A fresh peer id.
    pub fn next_peer_id(&self) -> PeerId {
        PeerId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Creates a publishing peer from the browser's offer; returns the answer SDP.
    pub async fn publish(&self, id: PeerId, offer: String, events: EventSender) -> Result<String, MediaError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Publish { id, offer, events, reply }).await?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// Creates a playing peer fed by the publisher `source`; returns the answer SDP.
    pub async fn play(
        &self,
        id: PeerId,
        source: PeerId,
        offer: String,
        events: EventSender,
    ) -> Result<String, MediaError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Play { id, source, offer, events, reply }).await?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// Creates a call leg (browser <-> plain RTP for SIP); see [`MediaCore::add_bridge`]. Its
    /// SIP-side RTP socket is bound on the media bind address, on a port the OS picks; an offer
    /// with video callgate carries (VP8, H.264) gets a second one for the video m-line.
    pub async fn bridge(&self, id: PeerId, offer: String, events: EventSender) -> Result<BridgeAnswer, MediaError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Bridge { id, offer, events, reply }).await?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// Creates the call leg of an incoming SIP call from its SDP offer; see
    /// [`MediaCore::add_incoming_bridge`]. RTP socket as for [`MediaEndpoint::bridge`].
    pub async fn incoming_bridge(
        &self,
        id: PeerId,
        sip_offer: String,
        events: EventSender,
    ) -> Result<IncomingBridge, MediaError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::IncomingBridge { id, sip_offer, events, reply }).await?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// The browser's answer to an incoming-call leg's offer.
    pub async fn bridge_answer(&self, id: PeerId, sdp: String) -> Result<(), MediaError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::BridgeAnswer { id, sdp, reply }).await?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// Creates an RTP-only call leg (no browser; see [`MediaCore::add_rtp_leg`]) on its own
    /// RTP socket; returns the RTP/AVP SDP offer for the SIP side. [`MediaEndpoint::bridge_remote`],
    /// [`MediaEndpoint::send_dtmf`], [`MediaEndpoint::stats`] and [`MediaEndpoint::close`] work on
    /// it as on a bridge. No events: there is no ICE/DTLS that could fail.
    pub async fn rtp_leg(&self, id: PeerId, codec: crate::bridge::G711) -> Result<String, MediaError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::RtpLeg { id, codec, reply }).await?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// Gives a bridge the SIP side's SDP (address, port, codec check).
    pub async fn bridge_remote(&self, id: PeerId, sdp: String) -> Result<(), MediaError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::BridgeRemote { id, sdp, reply }).await?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// Sends DTMF keys to a bridge's SIP side as RFC 4733 events.
    pub async fn send_dtmf(&self, id: PeerId, keys: String) -> Result<(), MediaError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Dtmf { id, keys, reply }).await?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// Creates a relay publisher on its own UDP port (see [`MediaCore::add_relay`]); returns
    /// its offer, for the origin node. Players attach to it with [`MediaEndpoint::play`].
    pub async fn relay(&self, id: PeerId, events: EventSender) -> Result<String, MediaError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Relay { id, events, reply }).await?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// The origin node's answer to a relay's offer.
    pub async fn relay_answer(&self, id: PeerId, sdp: String) -> Result<(), MediaError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::RelayAnswer { id, sdp, reply }).await?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// Closes a peer (no event follows).
    pub fn close(&self, id: PeerId) {
        if self.tx.try_send(Command::Close { id }).is_err() {
            // Full queue: close from a task rather than leak the peer.
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(Command::Close { id }).await;
            });
        }
    }

    /// Records the publisher `id` to `spec.file` (WebM, see [`crate::record`]) until it is
    /// closed; the writer reports on `reports` (started, failed, finished).
    pub async fn record(
        &self,
        id: PeerId,
        spec: RecordSpec,
        reports: mpsc::UnboundedSender<RecordReport>,
    ) -> Result<(), MediaError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Record { id, spec, reports, reply }).await?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// Serves publisher `id` as HLS (see [`crate::hls`]) until it ends or the output is
    /// stopped ([`crate::hls::HlsOutput::stop`]).
    pub async fn hls(&self, id: PeerId, cfg: crate::hls::HlsConfig) -> Result<Arc<crate::hls::HlsOutput>, MediaError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Hls { id, cfg, reply }).await?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// A snapshot of publisher `id`: its next complete VP8 keyframe (asked for at once), decoded
    /// to a PNG on a blocking thread, never on the media task. Waits at most `wait` for the
    /// keyframe ([`crate::snapshot::DEFAULT_WAIT`]).
    pub async fn snapshot(&self, id: PeerId, wait: Duration) -> Result<Snapshot, SnapshotError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Snapshot { id, reply }).await.map_err(|_| SnapshotError::Stopped)?;
        let frame = match tokio::time::timeout(wait, rx).await {
            Err(_) => return Err(SnapshotError::Timeout(wait)),
            // The publisher closed (or the task stopped) with the request pending.
            Ok(Err(_)) => return Err(SnapshotError::Ended),
            Ok(Ok(r)) => r?,
        };
        tokio::task::spawn_blocking(move || crate::snapshot::keyframe_to_png(&frame))
            .await
            .map_err(|e| SnapshotError::Decode(format!("the decoder stopped: {e}")))?
    }

    /// Adds a pulled source (an RTSP camera) with these codecs: players attach to it with
    /// [`MediaEndpoint::play`] as to a publisher; [`MediaEndpoint::close`] removes it.
    pub async fn add_source(&self, id: PeerId, codecs: Vec<SourceCodec>) -> Result<(), MediaError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::AddSource { id, codecs, reply }).await?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// Adds a source (see [`MediaEndpoint::add_source`]) fed by the SIP-side audio of the RTP-only
    /// call leg `leg`, which may be created later with [`MediaEndpoint::rtp_leg`] and `codec`
    /// (`toStream`: a REST call's audio as a stream). Closing either ends the feed.
    pub async fn add_leg_source(&self, id: PeerId, leg: PeerId, codec: crate::bridge::G711) -> Result<(), MediaError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::LegSource { id, leg, codec, reply }).await?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// One frame of source `id` for its players. Waits when the media task's queue is full (the
    /// camera's connection then backs up, rather than frames being dropped mid-GOP).
    pub async fn source_frame(&self, id: PeerId, frame: SourceFrame) -> Result<(), MediaError> {
        self.send(Command::SourceFrame { id, frame }).await
    }

    /// Asks the publisher `id` for a keyframe.
    pub fn request_keyframe(&self, id: PeerId) {
        let _ = self.tx.try_send(Command::RequestKeyframe { id });
    }

    pub async fn stats(&self, id: PeerId) -> Option<PeerStats> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Stats { id, reply }).await.ok()?;
        rx.await.ok().flatten()
    }

    /// Stops the media task: every peer and call leg is closed (no event follows; their event
    /// senders are dropped), the RTP sockets and the UDP socket close. Resolves once the task
    /// has stopped (at once if it already had). Every command afterwards fails with
    /// [`MediaError::Stopped`]. A server's graceful shutdown calls this last.
    pub async fn shutdown(&self) {
        let (done, rx) = oneshot::channel();
        if self.send(Command::Shutdown { done }).await.is_ok() {
            let _ = rx.await;
        }
    }

    async fn send(&self, c: Command) -> Result<(), MediaError> {
        self.tx.send(c).await.map_err(|_| MediaError::Stopped)
    }
}

/// A bridge's SIP-side RTP socket and the task reading it; a video bridge has a second one.
struct RtpSocket {
    socket: Arc<UdpSocket>,
    reader: tokio::task::JoinHandle<()>,
    video: Option<Box<RtpSocket>>,
}

impl RtpSocket {
    fn stop(self) {
        self.reader.abort();
        if let Some(v) = self.video {
            v.stop();
        }
    }
}

/// A datagram read from a bridge's RTP socket (`true`: its video socket).
type RtpIn = (PeerId, bool, SocketAddr, Vec<u8>);

async fn run(
    socket: UdpSocket,
    mut core: MediaCore,
    mut rx: mpsc::Receiver<Command>,
    counters: Arc<SharedCounters>,
    rtp_ip: std::net::IpAddr,
) {
    let mut sinks: HashMap<PeerId, EventSender> = HashMap::new();
    let mut rtp: HashMap<PeerId, RtpSocket> = HashMap::new();
    let (rtp_tx, mut rtp_rx) = mpsc::channel::<RtpIn>(COMMAND_QUEUE);
    let mut buf = vec![0u8; 2048];
    let mut batch = SendBatch::new();
    let mut shared: Vec<(DatagramSend, SocketAddr)> = Vec::with_capacity(MAX_BATCH);
    let mut stopped: Option<oneshot::Sender<()>> = None;
    loop {
        let wake = core.poll_timeout().unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, src)) => {
                    let now = Instant::now();
                    core.handle_datagram(now, src, &buf[..n]);
                    for _ in 1..RECV_BATCH {
                        match socket.try_recv_from(&mut buf) {
                            Ok((n, src)) => core.handle_datagram(Instant::now(), src, &buf[..n]),
                            Err(_) => break,
                        }
                    }
                }
                // ICMP port unreachable from a browser that went away surfaces here on Linux.
                Err(e) => tracing::debug!(error = %e, "UDP receive error"),
            },
            Some((id, video, src, data)) = rtp_rx.recv() => match video {
                false => core.handle_rtp(id, Instant::now(), src, &data),
                true => core.handle_rtp_video(id, Instant::now(), src, &data),
            },
            cmd = rx.recv() => match cmd {
                Some(Command::Shutdown { done }) => {
                    stopped = Some(done);
                    break;
                }
                Some(cmd) => handle_command(&mut core, &mut sinks, &mut rtp, &rtp_tx, rtp_ip, cmd),
                None => break,
            },
            _ = tokio::time::sleep_until(wake.into()) => core.handle_timeout(Instant::now()),
        }
        // The shared socket's datagrams (a publisher packet for each of its players) go out in
        // batches, one system call each (see `crate::batch`); a bridge's RTP socket gets one at a time.
        while let Some(t) = core.poll_transmit() {
            let out = match t.via {
                Via::Shared => {
                    shared.push((t.contents, t.destination));
                    if shared.len() == MAX_BATCH {
                        send_shared(&socket, &mut batch, &mut shared, &mut core).await;
                    }
                    continue;
                }
                Via::Rtp(id) => match rtp.get(&id) {
                    Some(r) => &*r.socket,
                    None => continue,
                },
                Via::RtpVideo(id) => match rtp.get(&id).and_then(|r| r.video.as_ref()) {
                    Some(v) => &*v.socket,
                    None => continue,
                },
            };
            send_one(out, &t.contents, t.destination).await;
            core.recycle(t.contents.into());
        }
        send_shared(&socket, &mut batch, &mut shared, &mut core).await;
        while let Some((id, ev)) = core.poll_event() {
            let terminal = matches!(ev, MediaEvent::Failed(_));
            if let Some(s) = sinks.get(&id) {
                let _ = s.send(ev);
            }
            if terminal {
                sinks.remove(&id);
                if let Some(r) = rtp.remove(&id) {
                    r.stop();
                }
            }
        }
        counters.publish(core.counters());
    }
    for (_, r) in rtp {
        r.stop();
    }
    // Closed before `done`: whoever waits on the shutdown finds the sockets released and every
    // peer's event channel ended.
    drop((socket, core, sinks));
    tracing::info!("media endpoint stopped");
    if let Some(done) = stopped {
        let _ = done.send(());
    }
}

/// Sends `out` on the shared socket in batches and empties it, handing its buffers back to `core`
/// for reuse. A full socket buffer makes the task wait for that datagram (as a single send would)
/// and then go on batching.
async fn send_shared(
    socket: &UdpSocket,
    batch: &mut SendBatch,
    out: &mut Vec<(DatagramSend, SocketAddr)>,
    core: &mut MediaCore,
) {
    let mut i = 0;
    while i < out.len() {
        match batch.try_send(socket, &out[i..]) {
            Ok(n) => i += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let (b, to) = &out[i];
                send_one(socket, b, *to).await;
                i += 1;
            }
            Err(e) => {
                // sendmmsg reports an error only for the first datagram; the rest are tried again.
                tracing::debug!(error = %e, to = %out[i].1, "UDP send error");
                i += 1;
            }
        }
    }
    for (b, _) in out.drain(..) {
        core.recycle(b.into());
    }
}

/// One datagram; waits for room in the socket buffer if it is full.
async fn send_one(socket: &UdpSocket, b: &[u8], to: SocketAddr) {
    if let Err(e) = socket.try_send_to(b, to) {
        if e.kind() == io::ErrorKind::WouldBlock {
            let _ = socket.send_to(b, to).await;
        } else {
            tracing::debug!(error = %e, %to, "UDP send error");
        }
    }
}

/// Binds a bridge's RTP socket and starts its reader.
fn bind_rtp(id: PeerId, video: bool, ip: std::net::IpAddr, tx: &mpsc::Sender<RtpIn>) -> io::Result<RtpSocket> {
    let std_socket = std::net::UdpSocket::bind((ip, 0))?;
    std_socket.set_nonblocking(true)?;
    let socket = Arc::new(UdpSocket::from_std(std_socket)?);
    let (reader_socket, tx) = (socket.clone(), tx.clone());
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, src)) = reader_socket.recv_from(&mut buf).await {
            // Audio is 50 packets/s per call: a full queue means the media task is overloaded,
            // and dropping is what UDP would do.
            let _ = tx.try_send((id, video, src, buf[..n].to_vec()));
        }
    });
    Ok(RtpSocket { socket, reader, video: None })
}

/// Binds a call leg's RTP socket (and with `video` a second one for video), then runs `add`
/// (which creates the leg in the core with those sockets' addresses); the sockets and the
/// event sink are kept only when `add` succeeds.
#[allow(clippy::too_many_arguments)]
fn with_rtp<T>(
    core: &mut MediaCore,
    sinks: &mut HashMap<PeerId, EventSender>,
    rtp: &mut HashMap<PeerId, RtpSocket>,
    rtp_tx: &mpsc::Sender<RtpIn>,
    rtp_ip: std::net::IpAddr,
    id: PeerId,
    events: EventSender,
    video: bool,
    add: impl FnOnce(&mut MediaCore, SocketAddr, Option<SocketAddr>) -> Result<T, MediaError>,
) -> Result<T, MediaError> {
    let bind_err = |e: io::Error| MediaError::Negotiation(format!("cannot bind an RTP port: {e}"));
    let mut sock = bind_rtp(id, false, rtp_ip, rtp_tx).map_err(bind_err)?;
    if video {
        match bind_rtp(id, true, rtp_ip, rtp_tx) {
            Ok(v) => sock.video = Some(Box::new(v)),
            Err(e) => {
                sock.stop();
                return Err(bind_err(e));
            }
        }
    }
    let ip = core.local_addr().ip();
    let port = |s: &RtpSocket| s.socket.local_addr().map(|a| a.port()).unwrap_or(0);
    let video_local = sock.video.as_deref().map(|v| SocketAddr::new(ip, port(v)));
    let r = add(core, SocketAddr::new(ip, port(&sock)), video_local);
    if r.is_ok() {
        sinks.insert(id, events);
        rtp.insert(id, sock);
    } else {
        sock.stop();
    }
    r
}

fn handle_command(
    core: &mut MediaCore,
    sinks: &mut HashMap<PeerId, EventSender>,
    rtp: &mut HashMap<PeerId, RtpSocket>,
    rtp_tx: &mpsc::Sender<RtpIn>,
    rtp_ip: std::net::IpAddr,
    cmd: Command,
) {
    let now = Instant::now();
    match cmd {
        Command::Bridge { id, offer, events, reply } => {
            // A second port only for an offer with video callgate can carry.
            let video = crate::video::choose_video(&offer).is_some();
            let r = with_rtp(core, sinks, rtp, rtp_tx, rtp_ip, id, events, video, |core, local, video_local| {
                core.add_bridge(id, &offer, local, video_local, now)
            });
            let _ = reply.send(r);
        }
        Command::IncomingBridge { id, sip_offer, events, reply } => {
            let video = crate::video::choose_video(&sip_offer).is_some();
            let r = with_rtp(core, sinks, rtp, rtp_tx, rtp_ip, id, events, video, |core, local, video_local| {
                core.add_incoming_bridge(id, &sip_offer, local, video_local, now)
            });
            let _ = reply.send(r);
        }
        Command::Relay { id, events, reply } => {
            let r = with_rtp(core, sinks, rtp, rtp_tx, rtp_ip, id, events, false, |core, local, _| {
                core.add_relay(id, local, now)
            });
            let _ = reply.send(r);
        }
        Command::RelayAnswer { id, sdp, reply } => {
            let _ = reply.send(core.accept_relay_answer(id, &sdp, now));
        }
        Command::BridgeAnswer { id, sdp, reply } => {
            let _ = reply.send(core.accept_bridge_answer(id, &sdp, now));
        }
        Command::RtpLeg { id, codec, reply } => {
            let r = match bind_rtp(id, false, rtp_ip, rtp_tx) {
                Ok(sock) => {
                    let port = sock.socket.local_addr().map(|a| a.port()).unwrap_or(0);
                    let sip_local = SocketAddr::new(core.local_addr().ip(), port);
                    let r = core.add_rtp_leg(id, codec, sip_local, now);
                    if r.is_ok() {
                        rtp.insert(id, sock);
                    } else {
                        sock.stop();
                    }
                    r
                }
                Err(e) => Err(MediaError::Negotiation(format!("cannot bind an RTP port: {e}"))),
            };
            let _ = reply.send(r);
        }
        Command::BridgeRemote { id, sdp, reply } => {
            let _ = reply.send(core.set_bridge_remote(id, &sdp));
        }
        Command::Dtmf { id, keys, reply } => {
            let _ = reply.send(core.send_dtmf(id, &keys, now));
        }
        Command::Publish { id, offer, events, reply } => {
            let r = core.add_publisher(id, &offer, now);
            if r.is_ok() {
                sinks.insert(id, events);
            }
            let _ = reply.send(r);
        }
        Command::Play { id, source, offer, events, reply } => {
            let r = core.add_player(id, source, &offer, now);
            if r.is_ok() {
                sinks.insert(id, events);
            }
            let _ = reply.send(r);
        }
        Command::Close { id } => {
            core.remove(id);
            sinks.remove(&id);
            if let Some(r) = rtp.remove(&id) {
                r.stop();
            }
        }
        Command::AddSource { id, codecs, reply } => {
            let _ = reply.send(core.add_source(id, &codecs));
        }
        Command::SourceFrame { id, frame } => core.source_frame(id, frame, now),
        Command::LegSource { id, leg, codec, reply } => {
            let codec = match codec {
                crate::bridge::G711::Pcmu => SourceCodec::Pcmu,
                crate::bridge::G711::Pcma => SourceCodec::Pcma,
            };
            let _ = reply.send(core.add_source(id, &[codec]).and_then(|()| core.feed_source(leg, id)));
        }
        Command::RequestKeyframe { id } => core.request_keyframe(id, now),
        Command::Record { id, spec, reports, reply } => {
            let _ = reply.send(core.start_recording(id, spec, reports, now));
        }
        Command::Hls { id, cfg, reply } => {
            let _ = reply.send(core.start_hls(id, cfg, now));
        }
        Command::Snapshot { id, reply } => core.snapshot(id, reply, now),
        Command::Stats { id, reply } => {
            let _ = reply.send(core.stats(id));
        }
        // Handled by the task's loop, which stops.
        Command::Shutdown { .. } => {}
        #[cfg(debug_assertions)]
        Command::Panic => panic!("media task panic requested by a test"),
    }
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    match p.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p.downcast_ref::<&str>().map_or_else(|| "(no message)".to_string(), |s| s.to_string()),
    }
}

// The panic hook exists in debug builds only.
#[cfg(all(test, debug_assertions))]
mod tests {
    use super::*;

    const CHROMIUM_PUBLISH: &str = include_str!("../testdata/chromium-publish-offer.sdp");

    #[tokio::test]
    async fn a_panic_of_the_media_task_is_published_and_later_commands_fail() {
        let media = MediaEndpoint::start(MediaConfig { bind: "127.0.0.1:0".parse().unwrap(), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(*media.panicked.borrow(), None);
        let (tx, _rx) = mpsc::unbounded_channel();
        media.publish(media.next_peer_id(), CHROMIUM_PUBLISH.into(), tx.clone()).await.unwrap();
        media.panic_for_test().await;
        let mut panicked = media.panicked.clone();
        let msg = tokio::time::timeout(Duration::from_secs(5), panicked.wait_for(|p| p.is_some()))
            .await
            .expect("the panic is published")
            .unwrap()
            .clone();
        assert_eq!(msg.as_deref(), Some("media task panic requested by a test"));
        // No publish is accepted by a dead task.
        let r = media.publish(media.next_peer_id(), CHROMIUM_PUBLISH.into(), tx).await;
        assert_eq!(r.unwrap_err(), MediaError::Stopped);
    }

    #[tokio::test]
    async fn shutdown_stops_the_task_ends_every_peers_events_and_frees_the_port() {
        let media = MediaEndpoint::start(MediaConfig { bind: "127.0.0.1:0".parse().unwrap(), ..Default::default() })
            .await
            .unwrap();
        let (tx, mut events) = mpsc::unbounded_channel();
        media.publish(media.next_peer_id(), CHROMIUM_PUBLISH.into(), tx.clone()).await.unwrap();
        drop(tx);
        tokio::time::timeout(Duration::from_secs(5), media.shutdown()).await.expect("stops in time");
        assert!(events.recv().await.is_none(), "the peer's event channel ended with the task");
        let (tx, _rx) = mpsc::unbounded_channel();
        let r = media.publish(media.next_peer_id(), CHROMIUM_PUBLISH.into(), tx).await;
        assert_eq!(r.unwrap_err(), MediaError::Stopped);
        std::net::UdpSocket::bind(media.bound_addr).expect("the media port is free again");
        media.shutdown().await; // a second shutdown returns at once
        assert_eq!(*media.panicked.borrow(), None, "a shutdown is not a panic");
    }
}
