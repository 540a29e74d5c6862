//! The only I/O of the crate (feature `tokio`, on by default): one UDP socket and one TCP
//! listener shared by every session, and a driver task that owns the sans-IO
//! [`UserAgent`] and feeds it.
//!
//! ```text
//!             commands (closures over &mut UserAgent) ──mpsc──┐
//!   UDP socket ── datagrams ──┐                               v
//!   TCP conns ── StreamFramer ─┼──> driver task: UserAgent ──> transmits: UDP send_to / TCP writers
//!   timer (poll_timeout) ──────┘                              └──> events: mpsc to the application
//! ```
//!
//! The driver follows the rule of use of the user agent: after every input it sends every
//! transmit, publishes every event, then sleeps until `poll_timeout()` or the next input.
//! Time is tokio's clock (`tokio::time::Instant`), so a test with a paused clock drives the
//! protocol timers too.
//!
//! TCP: connections we accept and connections we open are kept by peer address; a transmit to
//! an address without a connection opens one (a failure to connect is a transport error for the
//! transactions sending there). Each connection is framed with a [`StreamFramer`]; a framing
//! error closes it.
//!
//! Bad input never stops the driver: a malformed request is answered `400` by the user agent
//! when it can be, and otherwise dropped; each drop is logged (at `warn` once per source
//! address, then at `debug`).
//!
//! A panic in the user agent (a bug: bad input must never cause one) does not kill the driver
//! silently: every call into the user agent is guarded; the panic is logged at `error` and
//! published on [`Endpoint::panicked`], and the driver goes on, so that the application can
//! still end its calls (BYE) before it restarts the endpoint or the process (the server exits
//! non-zero, docs/ARCHITECTURE.md "Supervision"). A panic outside the user agent ends the
//! driver and [`Endpoint::task`] with it.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use callgate_sip::transport::{Endpoint, EndpointConfig};
//! use callgate_sip::ua::Account;
//! let mut ep = Endpoint::start(EndpointConfig::new("127.0.0.1:0".parse().unwrap())).await?;
//! let registrar = "127.0.0.1:5060".parse().unwrap();
//! let account = Account::new("3000", "secret3000", "127.0.0.1", registrar);
//! let reg = ep.handle.with(move |ua, now| ua.register(now, account)).await.expect("driver running").expect("a valid account");
//! while let Some(event) = ep.events.recv().await {
//!     println!("{reg}: {event:?}");
//! }
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::framer::{Framed, FramerConfig, StreamFramer};
use crate::txn::TimerConfig;
use crate::ua::{Transmit, Transport, UaConfig, UaError, UaEvent, UserAgent};

/// How to set up an [`Endpoint`].
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// The UDP socket (`127.0.0.1:0` picks a port).
    pub udp_bind: SocketAddr,
    /// The TCP listener; `None` for no listener (outgoing TCP still works).
    pub tcp_bind: Option<SocketAddr>,
    /// The IP written in Via and Contact. By default the bound IP, or, for an unspecified
    /// bind (`0.0.0.0`), the address of the interface of the default route.
    pub advertised_ip: Option<IpAddr>,
    pub user_agent: String,
    pub timers: TimerConfig,
    /// See [`UaConfig::answer_timeout`].
    pub answer_timeout: Duration,
    /// See [`UaConfig::min_se`].
    pub min_se: u32,
    /// See [`UaConfig::digest_realms`].
    pub digest_realms: Vec<String>,
    /// Seed of the user agent's generator; from the OS by default.
    pub seed: Option<u64>,
    /// How long opening a TCP connection may take.
    pub connect_timeout: Duration,
    /// SO_RCVBUF / SO_SNDBUF of the UDP socket (best effort; the kernel caps it at
    /// `net.core.rmem_max` / `wmem_max`). The Linux default (~208 KiB, ~400 SIP messages)
    /// overflows in a few tens of milliseconds at thousands of calls per second whenever the
    /// driver is descheduled, and a lost provisional response means an INVITE retransmission
    /// that strict peers treat as a new, unexpected request.
    pub udp_buffer_bytes: usize,
    /// See [`UaConfig::max_message_bytes`]; also the TCP framer's limit (a longer message on
    /// a connection ends the connection: its framing cannot be trusted past it).
    pub max_message_bytes: usize,
    /// See [`UaConfig::no_answer_timeout`].
    pub no_answer_timeout: Duration,
    /// Run the driver on a thread of its own (with a one-thread runtime) instead of as a task of
    /// the caller's runtime. The SIP sockets are then read and transactions answered (ACKs,
    /// retransmissions absorbed, timers) however busy the caller's runtime is with other work
    /// (HTTP hooks, WebSockets): under overload the driver gets its own share of the CPU from the
    /// OS scheduler instead of one turn among thousands of tasks, and a late ACK or response
    /// does not turn into retransmissions that add more load (docs/benchmarks.md, "Call load").
    /// Off by default (tests that pause tokio's clock need the driver on their runtime).
    pub own_thread: bool,
}

impl EndpointConfig {
    pub fn new(udp_bind: SocketAddr) -> EndpointConfig {
        let d = UaConfig::new(udp_bind);
        EndpointConfig {
            udp_bind,
            tcp_bind: None,
            advertised_ip: None,
            user_agent: d.user_agent,
            timers: d.timers,
            answer_timeout: d.answer_timeout,
            min_se: d.min_se,
            digest_realms: d.digest_realms,
            seed: None,
            connect_timeout: Duration::from_secs(10),
            udp_buffer_bytes: 4 << 20,
            max_message_bytes: d.max_message_bytes,
            no_answer_timeout: d.no_answer_timeout,
            own_thread: false,
        }
    }
}

/// The driver is gone (shut down, or its task ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the SIP endpoint has shut down")]
pub struct EndpointGone;

type Job = Box<dyn FnOnce(&mut UserAgent, std::time::Instant) + Send>;

enum Command {
    Run(Job),
    Shutdown,
}

/// A cheap, cloneable way to give the user agent commands.
#[derive(Clone)]
pub struct UaHandle {
    tx: mpsc::UnboundedSender<Command>,
    udp_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
}

impl UaHandle {
    /// Runs `f` on the user agent inside the driver (with the driver's `now`) and returns its
    /// result: `handle.with(move |ua, now| ua.invite(now, &account, to, sdp, &[]))`. What the
    /// command produced is sent and published before the next input.
    pub async fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut UserAgent, std::time::Instant) -> R + Send + 'static,
    ) -> Result<R, EndpointGone> {
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move |ua, now| {
            let _ = reply.send(f(ua, now));
        });
        self.tx.send(Command::Run(job)).map_err(|_| EndpointGone)?;
        rx.await.map_err(|_| EndpointGone)
    }

    /// The bound UDP address.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The bound TCP listener address, if any.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// Stops the driver: sockets close, connections end. Registrations are not removed:
    /// unregister first for a clean exit.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown);
    }
}

/// A running SIP endpoint: the handle for commands, the event stream, the driver task.
pub struct Endpoint {
    pub handle: UaHandle,
    pub events: mpsc::UnboundedReceiver<UaEvent>,
    pub task: JoinHandle<()>,
    /// The first panic of the user agent inside the driver (its message), `None` while there
    /// was none. The driver carries on after it (so calls can still be ended), but the user
    /// agent's state may be inconsistent: the application should end what it can and restart.
    pub panicked: watch::Receiver<Option<String>>,
}

impl Endpoint {
    /// Binds the sockets and starts the driver (a task, or a thread: [`EndpointConfig::own_thread`]).
    pub async fn start(cfg: EndpointConfig) -> io::Result<Endpoint> {
        // Bound as std sockets: they are registered with the runtime that runs the driver.
        let udp = std::net::UdpSocket::bind(cfg.udp_bind)?;
        udp.set_nonblocking(true)?;
        {
            let sock = socket2::SockRef::from(&udp);
            // Best effort: a smaller buffer only means earlier drops under bursts.
            let _ = sock.set_recv_buffer_size(cfg.udp_buffer_bytes);
            let _ = sock.set_send_buffer_size(cfg.udp_buffer_bytes);
            tracing::debug!(rcvbuf = ?sock.recv_buffer_size(), sndbuf = ?sock.send_buffer_size(), "SIP UDP socket buffers");
        }
        let udp_addr = udp.local_addr()?;
        let listener = match cfg.tcp_bind {
            Some(a) => {
                let l = std::net::TcpListener::bind(a)?;
                l.set_nonblocking(true)?;
                Some(l)
            }
            None => None,
        };
        let tcp_addr = listener.as_ref().map(|l| l.local_addr()).transpose()?;
        let ip = match cfg.advertised_ip {
            Some(ip) => ip,
            None if udp_addr.ip().is_unspecified() => default_route_ip(),
            None => udp_addr.ip(),
        };
        let ua_cfg = UaConfig {
            udp_addr: SocketAddr::new(ip, udp_addr.port()),
            tcp_addr: tcp_addr.map(|a| SocketAddr::new(ip, a.port())),
            user_agent: cfg.user_agent.clone(),
            timers: cfg.timers,
            seed: cfg.seed.unwrap_or_else(os_seed),
            answer_timeout: cfg.answer_timeout,
            min_se: cfg.min_se,
            digest_realms: cfg.digest_realms.clone(),
            max_message_bytes: cfg.max_message_bytes,
            no_answer_timeout: cfg.no_answer_timeout,
        };
        let (tx, cmd_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let (panic_tx, panicked) = watch::channel(None);
        let panic_tx = Arc::new(panic_tx);
        let parts = DriverParts {
            ua: UserAgent::new(ua_cfg),
            cmd_rx,
            event_tx,
            panic_tx: panic_tx.clone(),
            connect_timeout: cfg.connect_timeout,
        };
        let task = if cfg.own_thread {
            parts.spawn_thread(udp, listener).await?
        } else {
            let driver = tokio::spawn(parts.into_driver(udp, listener)?.run());
            // A panic that ends the driver (outside the user agent) is published too.
            tokio::spawn(async move {
                if let Err(e) = driver.await {
                    if e.is_panic() {
                        let payload = e.into_panic();
                        publish_panic(&panic_tx, panic_message(payload.as_ref()));
                        std::panic::resume_unwind(payload);
                    }
                }
            })
        };
        Ok(Endpoint { handle: UaHandle { tx, udp_addr, tcp_addr }, events, task, panicked })
    }
}

/// What a driver is made of besides its sockets.
struct DriverParts {
    ua: UserAgent,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    event_tx: mpsc::UnboundedSender<UaEvent>,
    panic_tx: Arc<watch::Sender<Option<String>>>,
    connect_timeout: Duration,
}

impl DriverParts {
    /// The driver, its sockets registered with the current runtime.
    fn into_driver(self, udp: std::net::UdpSocket, listener: Option<std::net::TcpListener>) -> io::Result<Driver> {
        let (stream_tx, stream_rx) = mpsc::unbounded_channel();
        let framer = FramerConfig { max_message_size: self.ua.config().max_message_bytes };
        Ok(Driver {
            ua: self.ua,
            udp: UdpSocket::from_std(udp)?,
            listener: listener.map(TcpListener::from_std).transpose()?,
            cmd_rx: self.cmd_rx,
            event_tx: self.event_tx,
            panic_tx: self.panic_tx.clone(),
            stream_tx,
            stream_rx,
            conns: HashMap::new(),
            warned: HashSet::new(),
            connect_timeout: self.connect_timeout,
            framer,
            buf: vec![0u8; 65_536],
        })
    }

    /// Runs the driver on a `sip-driver` thread with a one-thread runtime of its own; returns
    /// once its sockets are registered there. The returned task stands for the thread: it ends
    /// when the driver has stopped and the thread's runtime (with its TCP connection tasks) is
    /// gone, and it ends in a panic if the driver panicked. Aborting it does not stop the
    /// driver: [`UaHandle::shutdown`] does.
    async fn spawn_thread(
        self,
        udp: std::net::UdpSocket,
        listener: Option<std::net::TcpListener>,
    ) -> io::Result<JoinHandle<()>> {
        let (ready_tx, ready_rx) = oneshot::channel::<io::Result<()>>();
        let (done_tx, done_rx) = oneshot::channel::<std::thread::Result<()>>();
        let panic_tx = self.panic_tx.clone();
        std::thread::Builder::new().name("sip-driver".into()).spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    match self.into_driver(udp, listener) {
                        Ok(driver) => {
                            let _ = ready_tx.send(Ok(()));
                            driver.run().await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
                drop(rt);
            }));
            // A panic that ended the driver (outside the user agent) is published too.
            if let Err(payload) = &outcome {
                publish_panic(&panic_tx, panic_message(payload.as_ref()));
            }
            let _ = done_tx.send(outcome);
        })?;
        ready_rx.await.unwrap_or_else(|_| Err(io::Error::other("the SIP driver thread ended before it started")))?;
        Ok(tokio::spawn(async move {
            if let Ok(Err(panic)) = done_rx.await {
                std::panic::resume_unwind(panic);
            }
        }))
    }
}

/// The IP of the interface the default route leaves from (no packet is sent: connecting a
/// UDP socket only picks a route); 127.0.0.1 when there is none.
fn default_route_ip() -> IpAddr {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// 64 bits from the OS: `RandomState` keys come from the OS generator.
fn os_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// What connection tasks tell the driver.
enum StreamEvent {
    Message(SocketAddr, Framed),
    /// The connection to this peer is closed (or could not be opened: `failed`).
    Closed {
        peer: SocketAddr,
        failed: bool,
    },
}

struct Conn {
    tx: mpsc::UnboundedSender<Bytes>,
    task: JoinHandle<()>,
}

struct Driver {
    ua: UserAgent,
    udp: UdpSocket,
    listener: Option<TcpListener>,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    event_tx: mpsc::UnboundedSender<UaEvent>,
    panic_tx: Arc<watch::Sender<Option<String>>>,
    stream_tx: mpsc::UnboundedSender<StreamEvent>,
    stream_rx: mpsc::UnboundedReceiver<StreamEvent>,
    conns: HashMap<SocketAddr, Conn>,
    /// Sources already warned about (bounded): later drops from them are logged at debug.
    warned: HashSet<SocketAddr>,
    connect_timeout: Duration,
    framer: FramerConfig,
    buf: Vec<u8>,
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

async fn accept(listener: &Option<TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

impl Driver {
    async fn run(mut self) {
        loop {
            self.flush().await;
            let deadline = self.guard("poll_timeout", |ua| ua.poll_timeout()).flatten().map(Instant::from_std);
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.udp.recv_from(&mut self.buf) => match r {
                    Ok((n, from)) => {
                        let datagram = Bytes::copy_from_slice(&self.buf[..n]);
                        if let Some(r) = self.guard("datagram", |ua| ua.handle_datagram(now(), from, datagram)) {
                            self.log_input(r);
                        }
                    }
                    // Linux reports ICMP errors of earlier sends here on some sockets; nothing
                    // to do but go on.
                    Err(e) => tracing::debug!(error = %e, "UDP receive error"),
                },
                Some(ev) = self.stream_rx.recv() => match ev {
                    StreamEvent::Message(from, framed) => {
                        if let Some(r) = self.guard("TCP message", |ua| ua.handle_stream_message(now(), from, framed)) {
                            self.log_input(r);
                        }
                    }
                    StreamEvent::Closed { peer, failed } => {
                        self.conns.remove(&peer);
                        if failed {
                            self.guard("transport error", |ua| ua.handle_transport_error(now(), peer, Transport::Tcp));
                        }
                    }
                },
                cmd = self.cmd_rx.recv() => match cmd {
                    // A panicking command drops its reply: the caller gets `EndpointGone`.
                    Some(Command::Run(job)) => {
                        self.guard("command", |ua| job(ua, now()));
                    }
                    Some(Command::Shutdown) | None => break,
                },
                r = accept(&self.listener) => match r {
                    Ok((stream, peer)) => self.add_conn(peer, Some(stream)),
                    Err(e) => tracing::warn!(error = %e, "TCP accept failed"),
                },
                () = sleep => {
                    self.guard("timeout", |ua| ua.handle_timeout(now()));
                }
            }
        }
        for (_, c) in self.conns.drain() {
            c.task.abort();
        }
    }

    /// Sends every transmit and publishes every event.
    async fn flush(&mut self) {
        loop {
            let mut idle = true;
            while let Some(t) = self.ua.poll_transmit() {
                idle = false;
                self.send(t).await;
            }
            while let Some(e) = self.ua.poll_event() {
                idle = false;
                // No receiver: the application is gone; the driver stops at the next command.
                let _ = self.event_tx.send(e);
            }
            if idle {
                return;
            }
        }
    }

    async fn send(&mut self, t: Transmit) {
        match t.transport {
            Transport::Udp => {
                if let Err(e) = self.udp.send_to(&t.bytes, t.dst).await {
                    tracing::debug!(dst = %t.dst, error = %e, "UDP send failed");
                    self.guard("transport error", |ua| ua.handle_transport_error(now(), t.dst, Transport::Udp));
                }
            }
            Transport::Tcp => {
                if !self.conns.contains_key(&t.dst) {
                    self.add_conn(t.dst, None);
                }
                let sent = self.conns.get(&t.dst).is_some_and(|c| c.tx.send(t.bytes).is_ok());
                if !sent {
                    self.conns.remove(&t.dst);
                    self.guard("transport error", |ua| ua.handle_transport_error(now(), t.dst, Transport::Tcp));
                }
            }
        }
    }

    /// A connection task: an accepted stream, or one to open to `peer`.
    fn add_conn(&mut self, peer: SocketAddr, stream: Option<TcpStream>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let events = self.stream_tx.clone();
        let connect_timeout = self.connect_timeout;
        let framer = self.framer;
        let task = tokio::spawn(async move {
            let stream = match stream {
                Some(s) => s,
                None => match tokio::time::timeout(connect_timeout, TcpStream::connect(peer)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TCP connect failed");
                        let _ = events.send(StreamEvent::Closed { peer, failed: true });
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TCP connect timed out");
                        let _ = events.send(StreamEvent::Closed { peer, failed: true });
                        return;
                    }
                },
            };
            let failed = serve_conn(peer, stream, rx, &events, framer).await;
            let _ = events.send(StreamEvent::Closed { peer, failed });
        });
        if let Some(old) = self.conns.insert(peer, Conn { tx, task }) {
            old.task.abort();
        }
    }

    /// Runs one step of the user agent, catching a panic: logged at `error` (each one: they
    /// are bugs), the first published on `panic_tx`; `None` then. The user agent is used again
    /// afterwards (best effort: enough to end calls), which is why unwind safety is asserted.
    fn guard<R>(&mut self, input: &'static str, f: impl FnOnce(&mut UserAgent) -> R) -> Option<R> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut self.ua))) {
            Ok(r) => Some(r),
            Err(payload) => {
                let why = panic_message(payload.as_ref());
                tracing::error!(input, panic = %why, "the SIP user agent panicked; the endpoint goes on only to end what it can and must be restarted");
                publish_panic(&self.panic_tx, why);
                None
            }
        }
    }

    fn log_input(&mut self, r: Result<(), UaError>) {
        let Err(e) = r else { return };
        let from = match &e {
            UaError::Malformed { from, .. }
            | UaError::Dropped { from, .. }
            | UaError::BadBody { from, .. }
            | UaError::ChallengeRefused { from, .. } => Some(*from),
            _ => None,
        };
        let first = from.is_some_and(|f| self.warned.len() < 4096 && self.warned.insert(f));
        if first && matches!(e, UaError::Malformed { .. } | UaError::BadBody { .. } | UaError::ChallengeRefused { .. })
        {
            tracing::warn!(error = %e, "SIP message dropped (further ones from this source are logged at debug)");
        } else {
            tracing::debug!(error = %e, "SIP message dropped");
        }
    }
}

/// Keeps the first panic on `tx` (`Endpoint::panicked`).
fn publish_panic(tx: &watch::Sender<Option<String>>, why: String) {
    tx.send_if_modified(|first| {
        let new = first.is_none();
        if new {
            *first = Some(why);
        }
        new
    });
}

/// The message of a panic (`panic!("...")` payloads are `&str` or `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Reads and frames one connection and writes what the driver queues for it. Returns
/// whether it ended with an error while messages may have been waiting.
async fn serve_conn(
    peer: SocketAddr,
    stream: TcpStream,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    events: &mpsc::UnboundedSender<StreamEvent>,
    framer: FramerConfig,
) -> bool {
    let (mut rd, mut wr) = stream.into_split();
    let mut framer = StreamFramer::new(framer);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) => return false,
                Ok(n) => {
                    framer.handle_bytes(&buf[..n]);
                    loop {
                        match framer.poll_message() {
                            Ok(Some(framed)) => {
                                if events.send(StreamEvent::Message(peer, framed)).is_err() {
                                    return false;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(%peer, error = %e, "closing a TCP connection that lost its framing");
                                return false;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TCP read failed");
                    return true;
                }
            },
            msg = rx.recv() => match msg {
                Some(bytes) => {
                    if let Err(e) = wr.write_all(&bytes).await {
                        tracing::debug!(%peer, error = %e, "TCP write failed");
                        return true;
                    }
                }
                None => return false,
            },
        }
    }
}

pub mod registrar;

#[cfg(test)]
mod tests;
