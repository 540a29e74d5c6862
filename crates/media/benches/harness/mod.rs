//! Shared by the forwarding benches: the media endpoint on its own thread (so its CPU time can
//! be read from `/proc/self/task/<tid>/schedstat`), a plain UDP relay on its own thread as the
//! baseline, and the client side on a third thread: one str0m publisher and N light str0m players
//! (they run ICE and DTLS, then only count the RTP packets they get instead of decrypting them,
//! so the client thread stays cheap beside the server thread on a 2-core machine).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callgate_media::{MediaConfig, MediaEndpoint, MediaEvent};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

/// `/proc/self/task/<tid>/schedstat` of the calling thread.
pub fn thread_cpu_path() -> PathBuf {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    PathBuf::from("/proc").join(link).join("schedstat")
}

/// Nanoseconds the thread has run on a CPU.
pub fn cpu_ns(path: &PathBuf) -> u64 {
    let s = std::fs::read_to_string(path).expect("schedstat");
    s.split_whitespace().next().and_then(|v| v.parse().ok()).expect("schedstat field")
}

/// Nanoseconds the thread was runnable but waiting for a CPU (other processes on the machine).
pub fn wait_ns(path: &PathBuf) -> u64 {
    let s = std::fs::read_to_string(path).expect("schedstat");
    s.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("schedstat field")
}

/// Runs `f` on a new thread with its own current-thread runtime; returns the thread's CPU clock
/// path and what `f` sent back.
fn spawn_runtime_thread<T: Send + 'static>(
    name: &str,
    f: impl FnOnce(std::sync::mpsc::Sender<T>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> + Send + 'static,
) -> (PathBuf, T) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (ptx, prx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            ptx.send(thread_cpu_path()).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(f(tx));
        })
        .unwrap();
    (prx.recv().unwrap(), rx.recv().unwrap())
}

/// The media endpoint, alone on the thread "media".
pub struct MediaThread {
    pub endpoint: MediaEndpoint,
    pub cpu: PathBuf,
}

pub fn start_media() -> MediaThread {
    let (cpu, endpoint) = spawn_runtime_thread("media", |tx| {
        Box::pin(async move {
            let cfg = MediaConfig { bind: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
            tx.send(MediaEndpoint::start(cfg).await.unwrap()).unwrap();
            std::future::pending::<()>().await;
        })
    });
    MediaThread { endpoint, cpu }
}

/// The baseline: recv a datagram, send it to each of the sinks (same tokio socket API and the
/// same batching as the media endpoint).
pub struct RelayThread {
    pub addr: SocketAddr,
    pub cpu: PathBuf,
    pub forwarded: Arc<AtomicU64>,
    sinks: mpsc::UnboundedSender<Vec<SocketAddr>>,
}

impl RelayThread {
    pub fn set_sinks(&self, s: Vec<SocketAddr>) {
        self.sinks.send(s).unwrap();
    }
}

pub fn start_relay() -> RelayThread {
    let forwarded = Arc::new(AtomicU64::new(0));
    let fw = forwarded.clone();
    let (stx, mut srx) = mpsc::unbounded_channel::<Vec<SocketAddr>>();
    let (cpu, addr) = spawn_runtime_thread("relay", move |tx| {
        Box::pin(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            tx.send(socket.local_addr().unwrap()).unwrap();
            let mut sinks: Vec<SocketAddr> = Vec::new();
            let mut buf = vec![0u8; 2048];
            loop {
                tokio::select! {
                    s = srx.recv() => match s { Some(s) => sinks = s, None => return },
                    r = socket.recv_from(&mut buf) => {
                        let Ok((n, _)) = r else { continue };
                        let mut n = n;
                        for i in 0..64 {
                            for s in &sinks {
                                if socket.try_send_to(&buf[..n], *s).is_ok() {
                                    fw.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            if i == 63 { break; }
                            match socket.try_recv_from(&mut buf) { Ok((m, _)) => n = m, Err(_) => break }
                        }
                    }
                }
            }
        })
    });
    RelayThread { addr, cpu, forwarded, sinks: stx }
}

/// The SRTP floor's per-player state: what a relay that encrypts needs per destination (one
/// SRTP context per player, as each player has its own keys): the AEAD_AES_256_GCM cipher str0m
/// negotiates with Chromium (dimpl's DTLS server prefers it; see docs/media.md), created through
/// str0m's own crypto provider (aws-lc-rs, the same primitive `SrtpContext::protect_rtp` calls),
/// its salt, and the player's SSRC and sequence number.
pub struct SrtpSink {
    cipher: Box<dyn str0m::crypto::AeadAes256GcmCipher>,
    salt: [u8; 12],
    ssrc: u32,
    seq: u64,
}

impl SrtpSink {
    /// A context with keys derived from `i` (the floor needs a distinct key per player, not
    /// secret ones).
    pub fn new(provider: &str0m::config::CryptoProvider, i: u32) -> SrtpSink {
        let mut key = [0x42u8; 32];
        key[..4].copy_from_slice(&i.to_be_bytes());
        let cipher = provider.srtp_provider.aead_aes_256_gcm().create_cipher(key, true);
        SrtpSink { cipher, salt: [i as u8; 12], ssrc: 0x1000_0000 + i, seq: 1 }
    }

    /// One SRTP protect (RFC 7714) of the RTP packet `pkt` (12-byte header, no extensions) with
    /// this player's SSRC and next sequence number, into `out`; returns the datagram's length.
    #[inline(never)]
    pub fn protect(&mut self, pkt: &[u8], out: &mut [u8]) -> usize {
        const HLEN: usize = 12;
        let seq = self.seq;
        self.seq += 1;
        out[..HLEN].copy_from_slice(&pkt[..HLEN]);
        out[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        let iv = str0m::crypto::AeadAes256Gcm::rtp_iv(self.salt, self.ssrc, (seq >> 16) as u32, seq as u16);
        let (aad, body) = out.split_at_mut(HLEN);
        let len = pkt.len() + str0m::crypto::AeadAes256Gcm::TAG_LEN;
        self.cipher.encrypt(&iv, aad, &pkt[HLEN..], &mut body[..len - HLEN]).expect("srtp encrypt");
        len
    }
}

/// The floor: the plain relay ([`start_relay`]) plus one SRTP protect per outgoing datagram
/// ([`SrtpSink::protect`], one context per sink). What any SFU must do per packet and player
/// with the suite browsers get: the kernel's send, and the encryption.
pub fn start_relay_srtp() -> RelayThread {
    let forwarded = Arc::new(AtomicU64::new(0));
    let fw = forwarded.clone();
    let (stx, mut srx) = mpsc::unbounded_channel::<Vec<SocketAddr>>();
    let (cpu, addr) = spawn_runtime_thread("relay-srtp", move |tx| {
        Box::pin(async move {
            let provider = str0m::crypto::from_feature_flags();
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            tx.send(socket.local_addr().unwrap()).unwrap();
            let mut sinks: Vec<(SocketAddr, SrtpSink)> = Vec::new();
            let mut buf = vec![0u8; 2048];
            let mut out = vec![0u8; 2048];
            loop {
                tokio::select! {
                    s = srx.recv() => match s {
                        Some(s) => sinks = s.into_iter().enumerate().map(|(i, a)| (a, SrtpSink::new(&provider, i as u32))).collect(),
                        None => return,
                    },
                    r = socket.recv_from(&mut buf) => {
                        let Ok((n, _)) = r else { continue };
                        let mut n = n;
                        for i in 0..64 {
                            if n > 12 {
                                for (s, ctx) in &mut sinks {
                                    let len = ctx.protect(&buf[..n], &mut out);
                                    if socket.try_send_to(&out[..len], *s).is_ok() {
                                        fw.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            }
                            if i == 63 { break; }
                            match socket.try_recv_from(&mut buf) { Ok((m, _)) => n = m, Err(_) => break }
                        }
                    }
                }
            }
        })
    });
    RelayThread { addr, cpu, forwarded, sinks: stx }
}

/// The batched baseline: read up to 64 datagrams, then send each to every sink with `sendmmsg`
/// (up to 64 datagrams per system call, [`callgate_media::batch::SendBatch`], the media
/// endpoint's batching), so the forwarder's batched sends can be compared with a relay that
/// batches the same way.
pub fn start_relay_batched() -> RelayThread {
    let forwarded = Arc::new(AtomicU64::new(0));
    let fw = forwarded.clone();
    let (stx, mut srx) = mpsc::unbounded_channel::<Vec<SocketAddr>>();
    let (cpu, addr) = spawn_runtime_thread("relay-mmsg", move |tx| {
        Box::pin(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            tx.send(socket.local_addr().unwrap()).unwrap();
            let mut sinks: Vec<SocketAddr> = Vec::new();
            let mut bufs = vec![vec![0u8; 2048]; 64];
            let mut lens = [0usize; 64];
            let mut batch = callgate_media::batch::SendBatch::new();
            loop {
                tokio::select! {
                    s = srx.recv() => match s { Some(s) => sinks = s, None => return },
                    r = socket.recv_from(&mut bufs[0]) => {
                        let Ok((n, _)) = r else { continue };
                        lens[0] = n;
                        let mut got = 1;
                        while got < 64 {
                            match socket.try_recv_from(&mut bufs[got]) { Ok((m, _)) => { lens[got] = m; got += 1 } Err(_) => break }
                        }
                        let mut out: Vec<(&[u8], SocketAddr)> = Vec::with_capacity(callgate_media::batch::MAX_BATCH);
                        for (b, &n) in bufs.iter().zip(&lens).take(got) {
                            for s in &sinks {
                                out.push((&b[..n], *s));
                                if out.len() == callgate_media::batch::MAX_BATCH {
                                    fw.fetch_add(send_all(&socket, &mut batch, &out), Ordering::Relaxed);
                                    out.clear();
                                }
                            }
                        }
                        fw.fetch_add(send_all(&socket, &mut batch, &out), Ordering::Relaxed);
                        out.clear();
                    }
                }
            }
        })
    });
    RelayThread { addr, cpu, forwarded, sinks: stx }
}

/// Sends all of `out` in batches, dropping what does not fit (as the plain relay's `try_send_to`);
/// returns how many were sent.
fn send_all(socket: &UdpSocket, batch: &mut callgate_media::batch::SendBatch, out: &[(&[u8], SocketAddr)]) -> u64 {
    let (mut i, mut sent) = (0, 0);
    while i < out.len() {
        match batch.try_send(socket, &out[i..]) {
            Ok(n) => {
                i += n;
                sent += n as u64;
            }
            Err(_) => i += 1,
        }
    }
    sent
}

/// Commands for the client thread.
enum ClientCmd {
    /// Create the publisher; reply with its offer.
    NewPublisher(tokio::sync::oneshot::Sender<(String, Arc<PeerState>)>),
    /// Create a light player; reply with its offer.
    NewPlayer(tokio::sync::oneshot::Sender<(String, Arc<PeerState>)>),
    /// Create a plain UDP sink (relay baseline); reply with its address and counter.
    NewSink(tokio::sync::oneshot::Sender<(SocketAddr, Arc<AtomicU64>)>),
    /// Plain UDP sender for the relay baseline: `count` datagrams of `size` bytes to `to`,
    /// `per_ms` per millisecond.
    Blast { to: SocketAddr, count: u64, size: usize, per_ms: u64, done: tokio::sync::oneshot::Sender<()> },
}

/// What a client peer exposes.
#[derive(Default)]
pub struct PeerState {
    pub connected: AtomicBool,
    /// Set to end the peer's task.
    pub stop: AtomicBool,
    /// RTP packets received (players) / sent (publisher).
    pub rtp: AtomicU64,
    answer: parking_lot_free::Slot<String>,
    /// Publisher: what to send next.
    plan: parking_lot_free::Slot<SendPlan>,
}

/// Frames the publisher sends: `frames` video frames of `video_bytes` (+ one audio frame of
/// `audio_bytes` every `audio_every` video frames), `per_ms` video frames per millisecond, or
/// paced at `fps` when `fps > 0`.
#[derive(Clone, Copy, Debug)]
pub struct SendPlan {
    pub frames: u64,
    pub video_bytes: usize,
    pub audio_bytes: usize,
    pub fps: u32,
    pub per_ms: u64,
}

/// A tiny lock-free-enough single-value slot (std Mutex; not on any hot path).
mod parking_lot_free {
    pub struct Slot<T>(std::sync::Mutex<Option<T>>);
    impl<T> Default for Slot<T> {
        fn default() -> Self {
            Slot(std::sync::Mutex::new(None))
        }
    }
    impl<T> Slot<T> {
        pub fn put(&self, v: T) {
            *self.0.lock().unwrap() = Some(v);
        }
        pub fn take(&self) -> Option<T> {
            self.0.lock().unwrap().take()
        }
    }
}

impl PeerState {
    pub fn accept(&self, answer: String) {
        self.answer.put(answer);
    }
    pub fn send(&self, plan: SendPlan) {
        self.plan.put(plan);
    }
}

/// The client thread.
pub struct Clients {
    tx: mpsc::UnboundedSender<ClientCmd>,
    pub cpu: PathBuf,
}

pub fn start_clients() -> Clients {
    let (tx, mut rx) = mpsc::unbounded_channel::<ClientCmd>();
    let (cpu, ()) = spawn_runtime_thread("clients", move |ready| {
        Box::pin(async move {
            ready.send(()).unwrap();
            let provider = Arc::new(str0m::crypto::from_feature_flags());
            let cert = provider.dtls_provider.generate_certificate();
            while let Some(cmd) = rx.recv().await {
                match cmd {
                    ClientCmd::NewPublisher(reply) => {
                        let _ = reply.send(spawn_peer(provider.clone(), cert.clone(), Direction::SendOnly).await);
                    }
                    ClientCmd::NewPlayer(reply) => {
                        let _ = reply.send(spawn_peer(provider.clone(), cert.clone(), Direction::RecvOnly).await);
                    }
                    ClientCmd::NewSink(reply) => {
                        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                        let c = Arc::new(AtomicU64::new(0));
                        let _ = reply.send((s.local_addr().unwrap(), c.clone()));
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 2048];
                            while s.recv_from(&mut buf).await.is_ok() {
                                c.fetch_add(1, Ordering::Relaxed);
                            }
                        });
                    }
                    ClientCmd::Blast { to, count, size, per_ms, done } => {
                        tokio::spawn(async move {
                            let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                            let mut data = vec![0x80u8; size];
                            data[1] = 96;
                            let mut sent = 0;
                            let mut tick = tokio::time::interval(Duration::from_millis(1));
                            while sent < count {
                                tick.tick().await;
                                for _ in 0..per_ms.min(count - sent) {
                                    let _ = s.send_to(&data, to).await;
                                    sent += 1;
                                }
                            }
                            let _ = done.send(());
                        });
                    }
                }
            }
        })
    });
    Clients { tx, cpu }
}

impl Clients {
    pub async fn publisher(&self) -> (String, Arc<PeerState>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx.send(ClientCmd::NewPublisher(tx)).unwrap();
        rx.await.unwrap()
    }
    pub async fn player(&self) -> (String, Arc<PeerState>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx.send(ClientCmd::NewPlayer(tx)).unwrap();
        rx.await.unwrap()
    }
    pub async fn sink(&self) -> (SocketAddr, Arc<AtomicU64>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx.send(ClientCmd::NewSink(tx)).unwrap();
        rx.await.unwrap()
    }
    pub async fn blast(&self, to: SocketAddr, count: u64, size: usize, per_ms: u64) {
        let (done, rx) = tokio::sync::oneshot::channel();
        self.tx.send(ClientCmd::Blast { to, count, size, per_ms, done }).unwrap();
        rx.await.unwrap()
    }
}

fn is_rtp(b: &[u8]) -> bool {
    // RFC 7983: 128..=191 is RTP/RTCP; RTCP packet types 200..=206 in the second byte (72..=78 with the marker bit clear).
    b.len() > 12 && (128..=191).contains(&b[0]) && !(200..=206).contains(&b[1])
}

async fn spawn_peer(
    provider: Arc<str0m::config::CryptoProvider>,
    cert: Option<str0m::config::DtlsCert>,
    dir: Direction,
) -> (String, Arc<PeerState>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let mut cfg = Rtc::builder().set_crypto_provider(provider);
    if let Some(c) = cert {
        cfg = cfg.set_dtls_cert(c);
    }
    let mut rtc = cfg.build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let mut api = rtc.sdp_api();
    let audio = api.add_media(MediaKind::Audio, dir, Some("s".into()), None, None);
    let video = api.add_media(MediaKind::Video, dir, Some("s".into()), None, None);
    let (offer, pending) = api.apply().unwrap();
    let state = Arc::new(PeerState::default());
    let st = state.clone();
    let sending = dir == Direction::SendOnly;
    tokio::spawn(async move {
        let mut pending = Some(pending);
        let mut buf = vec![0u8; 2048];
        let mids: [Mid; 2] = [audio, video];
        let mut plan: Option<SendPlan> = None;
        let mut sent: u64 = 0;
        let mut next = Instant::now();
        loop {
            if st.stop.load(Ordering::Relaxed) {
                return;
            }
            // Drain.
            let timeout = loop {
                match rtc.poll_output() {
                    Ok(Output::Timeout(t)) => break t,
                    Ok(Output::Transmit(t)) => {
                        if sending && is_rtp(&t.contents) {
                            st.rtp.fetch_add(1, Ordering::Relaxed);
                        }
                        let _ = socket.send_to(&t.contents, t.destination).await;
                    }
                    Ok(Output::Event(Event::Connected)) => st.connected.store(true, Ordering::Relaxed),
                    Ok(Output::Event(_)) => {}
                    Err(_) => return,
                }
            };
            if let (Some(p), Some(a)) = (pending.as_ref(), st.answer.take()) {
                let _ = p;
                let answer = SdpAnswer::from_sdp_string(&a).unwrap();
                rtc.sdp_api().accept_answer(pending.take().unwrap(), answer).unwrap();
                continue;
            }
            if plan.is_none() {
                if let Some(p) = st.plan.take() {
                    plan = Some(p);
                    sent = 0;
                    next = Instant::now();
                }
            }
            let connected = st.connected.load(Ordering::Relaxed);
            let mut wake = timeout.min(Instant::now() + Duration::from_millis(5));
            if let Some(p) = plan.filter(|_| connected) {
                let now = Instant::now();
                if now >= next {
                    let burst = if p.fps > 0 { 1 } else { p.per_ms.max(1) };
                    for _ in 0..burst {
                        if sent >= p.frames {
                            break;
                        }
                        let t = MediaTime::new(sent * 3000, Frequency::new(90_000).unwrap());
                        write_frame(&mut rtc, mids[1], t, p.video_bytes, now);
                        if drain_send(&mut rtc, &socket, &st).await.is_none() {
                            return;
                        }
                        if p.audio_bytes > 0 {
                            let ta = MediaTime::new(sent * 1600, Frequency::new(48_000).unwrap());
                            write_frame(&mut rtc, mids[0], ta, p.audio_bytes, now);
                            if drain_send(&mut rtc, &socket, &st).await.is_none() {
                                return;
                            }
                        }
                        sent += 1;
                    }
                    next =
                        if p.fps > 0 { next + Duration::from_secs(1) / p.fps } else { now + Duration::from_millis(1) };
                    if sent >= p.frames {
                        plan = None;
                    }
                }
                wake = wake.min(next);
            }
            tokio::select! {
                r = socket.recv_from(&mut buf) => {
                    let Ok((mut n, mut src)) = r else { continue };
                    // Read what is queued in one go; the Rtc only sees STUN/DTLS (and RTP before
                    // the connection is up): a light player counts RTP instead of decrypting it.
                    let mut fed = 0;
                    loop {
                        let b = &buf[..n];
                        let media = n > 1 && (128..=191).contains(&b[0]);
                        if connected && media {
                            if !sending && is_rtp(b) {
                                st.rtp.fetch_add(1, Ordering::Relaxed);
                            }
                        } else if let Ok(r) = Receive::new(Protocol::Udp, src, local, b) {
                            let _ = rtc.handle_input(Input::Receive(Instant::now(), r));
                            fed += 1;
                        }
                        if fed > 0 {
                            break; // drain the Rtc before the next input
                        }
                        match socket.try_recv_from(&mut buf) {
                            Ok((m, s)) => (n, src) = (m, s),
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    let _ = rtc.handle_input(Input::Timeout(Instant::now()));
                }
            }
        }
    });
    (offer.to_sdp_string(), state)
}

fn write_frame(rtc: &mut Rtc, mid: Mid, t: MediaTime, bytes: usize, now: Instant) {
    let Some(w) = rtc.writer(mid) else { return };
    let Some(pt) = w.payload_params().next().map(|p| p.pt()) else { return };
    let mut data = vec![0x5au8; bytes];
    data[0] = 0x10; // VP8: keyframe bit pattern; opus: any bytes
    let _ = w.write(pt, now, t, data);
}

async fn drain_send(rtc: &mut Rtc, socket: &UdpSocket, st: &PeerState) -> Option<()> {
    loop {
        match rtc.poll_output() {
            Ok(Output::Timeout(_)) => return Some(()),
            Ok(Output::Transmit(t)) => {
                if is_rtp(&t.contents) {
                    st.rtp.fetch_add(1, Ordering::Relaxed);
                }
                let _ = socket.send_to(&t.contents, t.destination).await;
            }
            Ok(Output::Event(Event::Connected)) => st.connected.store(true, Ordering::Relaxed),
            Ok(Output::Event(_)) => {}
            Err(_) => return None,
        }
    }
}

/// One publisher and `n` players connected through the media endpoint.
pub struct Fanout {
    pub publisher: Arc<PeerState>,
    pub players: Vec<Arc<PeerState>>,
    ids: Vec<callgate_media::PeerId>,
}

impl Fanout {
    /// RTP packets the players got so far.
    pub fn received(&self) -> u64 {
        self.players.iter().map(|p| p.rtp.load(Ordering::Relaxed)).sum()
    }

    /// Closes every peer on both sides.
    pub fn close(self, media: &MediaEndpoint) {
        for id in &self.ids {
            media.close(*id);
        }
        self.publisher.stop.store(true, Ordering::Relaxed);
        for p in &self.players {
            p.stop.store(true, Ordering::Relaxed);
        }
    }
}

pub async fn connect_fanout(media: &MediaEndpoint, clients: &Clients, n: usize) -> Fanout {
    let (offer, publisher) = clients.publisher().await;
    let pid = media.next_peer_id();
    let (etx, _erx) = mpsc::unbounded_channel::<MediaEvent>();
    publisher.accept(media.publish(pid, offer, etx.clone()).await.unwrap());
    let mut players = Vec::with_capacity(n);
    let mut ids = vec![pid];
    for _ in 0..n {
        let (offer, p) = clients.player().await;
        let id = media.next_peer_id();
        p.accept(media.play(id, pid, offer, etx.clone()).await.unwrap());
        players.push(p);
        ids.push(id);
    }
    std::mem::forget(_erx); // events are not needed; keep the channel open
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(publisher.connected.load(Ordering::Relaxed) && players.iter().all(|p| p.connected.load(Ordering::Relaxed)))
    {
        assert!(Instant::now() < deadline, "peers did not connect within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Fanout { publisher, players, ids }
}

pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Waits until `count()` stops growing for `quiet` (or reaches `target`); returns the last value.
pub async fn settle(count: impl Fn() -> u64, target: u64, quiet: Duration) -> u64 {
    let mut last = count();
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let c = count();
        if c >= target {
            return c;
        }
        if c != last {
            last = c;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return c;
        }
    }
}
