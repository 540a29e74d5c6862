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
use tokio::sync::{mpsc, oneshot};

use crate::core::{Counters, MediaCore, PeerStats};
use crate::{MediaConfig, MediaError, MediaEvent, PeerId};

/// Where a peer's events go.
pub type EventSender = mpsc::UnboundedSender<MediaEvent>;

enum Command {
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
    Close {
        id: PeerId,
    },
    RequestKeyframe {
        id: PeerId,
    },
    Stats {
        id: PeerId,
        reply: oneshot::Sender<Option<PeerStats>>,
    },
}

/// The core's [`Counters`], published by the media task after each wake-up.
#[derive(Debug, Default)]
pub struct SharedCounters {
    pub datagrams_in: AtomicU64,
    pub datagrams_out: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
}

impl SharedCounters {
    pub fn snapshot(&self) -> Counters {
        Counters {
            datagrams_in: self.datagrams_in.load(Ordering::Relaxed),
            datagrams_out: self.datagrams_out.load(Ordering::Relaxed),
            frames_in: self.frames_in.load(Ordering::Relaxed),
            frames_out: self.frames_out.load(Ordering::Relaxed),
        }
    }

    fn publish(&self, c: Counters) {
        self.datagrams_in.store(c.datagrams_in, Ordering::Relaxed);
        self.datagrams_out.store(c.datagrams_out, Ordering::Relaxed);
        self.frames_in.store(c.frames_in, Ordering::Relaxed);
        self.frames_out.store(c.frames_out, Ordering::Relaxed);
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
        let core = MediaCore::new(cfg, advertised_addr);
        let counters = Arc::new(SharedCounters::default());
        tokio::spawn(run(socket, core, rx, counters.clone()));
        tracing::info!(%bound_addr, %advertised_addr, "media endpoint started (ICE-lite, one UDP port)");
        Ok(MediaEndpoint { tx, counters, next_id: Arc::new(AtomicU64::new(1)), bound_addr, advertised_addr })
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

    /// Asks the publisher `id` for a keyframe.
    pub fn request_keyframe(&self, id: PeerId) {
        let _ = self.tx.try_send(Command::RequestKeyframe { id });
    }

    pub async fn stats(&self, id: PeerId) -> Option<PeerStats> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Stats { id, reply }).await.ok()?;
        rx.await.ok().flatten()
    }

    async fn send(&self, c: Command) -> Result<(), MediaError> {
        self.tx.send(c).await.map_err(|_| MediaError::Stopped)
    }
}

async fn run(socket: UdpSocket, mut core: MediaCore, mut rx: mpsc::Receiver<Command>, counters: Arc<SharedCounters>) {
    let mut sinks: HashMap<PeerId, EventSender> = HashMap::new();
    let mut buf = vec![0u8; 2048];
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
            cmd = rx.recv() => match cmd {
                Some(cmd) => handle_command(&mut core, &mut sinks, cmd),
                None => break,
            },
            _ = tokio::time::sleep_until(wake.into()) => core.handle_timeout(Instant::now()),
        }
        while let Some(t) = core.poll_transmit() {
            if let Err(e) = socket.try_send_to(&t.contents, t.destination) {
                if e.kind() == io::ErrorKind::WouldBlock {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                } else {
                    tracing::debug!(error = %e, to = %t.destination, "UDP send error");
                }
            }
        }
        while let Some((id, ev)) = core.poll_event() {
            let terminal = matches!(ev, MediaEvent::Failed(_));
            if let Some(s) = sinks.get(&id) {
                let _ = s.send(ev);
            }
            if terminal {
                sinks.remove(&id);
            }
        }
        counters.publish(core.counters());
    }
    tracing::info!("media endpoint stopped");
}

fn handle_command(core: &mut MediaCore, sinks: &mut HashMap<PeerId, EventSender>, cmd: Command) {
    let now = Instant::now();
    match cmd {
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
        }
        Command::RequestKeyframe { id } => core.request_keyframe(id, now),
        Command::Stats { id, reply } => {
            let _ = reply.send(core.stats(id));
        }
    }
}
