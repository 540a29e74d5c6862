//! Deterministic forwarding cost for `valgrind --tool=callgrind`: the sans-IO [`MediaCore`] with
//! one str0m publisher and N str0m players on a virtual clock and an in-memory network (no
//! sockets, no threads), so the instruction count of the core's calls does not depend on the
//! machine's load. Only user-space work is counted: `sendto` (the kernel) is not in it.
//!
//! ```sh
//! cargo bench -p callgate-media --bench forward_instr --no-run
//! for k in 200 400; do
//!   CALLGATE_INSTR_PACKETS=$k valgrind --tool=callgrind --callgrind-out-file=cg.$k \
//!     --collect-atstart=no --toggle-collect='callgate_media::core::MediaCore::*' \
//!     target/release/deps/forward_instr-<hash> --bench
//! done
//! # instructions per packet to a player = (Ir(400) - Ir(200)) / (200 * N)
//! ```
//!
//! The floor (`CALLGATE_INSTR_FLOOR=1`): no core, only the SRTP protect a relay that encrypts does
//! per packet and player (`harness::SrtpSink::protect`: AEAD_AES_256_GCM through str0m's crypto
//! provider, one context per player, the same 1000-byte frames plus a 12-byte header):
//!
//! ```sh
//! CALLGATE_INSTR_FLOOR=1 CALLGATE_INSTR_PACKETS=200 valgrind --tool=callgrind \
//!   --collect-atstart=no --toggle-collect='*SrtpSink::protect*' target/release/deps/forward_instr-<hash> --bench
//! # instructions per packet to a player = Ir / (200 * N)
//! ```
//!
//! Run without valgrind it prints what it forwarded (a smoke check of the setup).

mod harness;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use callgate_media::core::MediaCore;
use callgate_media::{MediaConfig, PeerId};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

const SERVER: &str = "10.0.0.1:31000";
/// Bytes of each video frame (one RTP packet), as in the criterion bench.
const FRAME: usize = 1000;

struct Browser {
    rtc: Rtc,
    addr: SocketAddr,
    video: Mid,
    connected: bool,
    /// Players: RTP datagrams received once connected (each taken in by the player's str0m, which
    /// sends receiver reports back; the other benches' light players neither decrypt nor report).
    rtp: u64,
}

fn browser(i: usize, dir: Direction, now: Instant) -> (Browser, String, SdpPendingOffer) {
    let addr: SocketAddr = format!("10.0.{}.{}:5000", 1 + i / 250, 2 + i % 250).parse().unwrap();
    let mut rtc =
        Rtc::builder().set_crypto_provider(std::sync::Arc::new(str0m::crypto::from_feature_flags())).build(now);
    rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, dir, Some("s".into()), None, None);
    let video = api.add_media(MediaKind::Video, dir, Some("s".into()), None, None);
    let (offer, pending) = api.apply().unwrap();
    (Browser { rtc, addr, video, connected: false, rtp: 0 }, offer.to_sdp_string(), pending)
}

fn accept(b: &mut Browser, pending: SdpPendingOffer, answer: &str) {
    b.rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(answer).unwrap()).unwrap();
}

struct Sim {
    core: MediaCore,
    browsers: Vec<Browser>,
    now: Instant,
    server: SocketAddr,
}

impl Sim {
    fn step(&mut self) {
        loop {
            let mut moved = false;
            for b in &mut self.browsers {
                loop {
                    match b.rtc.poll_output().unwrap() {
                        Output::Timeout(_) => break,
                        Output::Transmit(t) => {
                            moved = true;
                            self.core.handle_datagram(self.now, b.addr, &t.contents);
                        }
                        Output::Event(Event::Connected) => b.connected = true,
                        Output::Event(_) => {}
                    }
                }
            }
            while let Some(t) = self.core.poll_transmit() {
                moved = true;
                let Some(b) = self.browsers.iter_mut().find(|b| b.addr == t.destination) else { continue };
                let c = &t.contents;
                if b.connected && c.len() > 12 && (128..=191).contains(&c[0]) && !(200..=206).contains(&c[1]) {
                    b.rtp += 1;
                }
                // Every datagram reaches the player's str0m (outside the measured core): it decrypts
                // the media and sends receiver reports as a browser does, so the core's str0m stops
                // writing the mid into each packet once reported, as in a long-running session.
                let r = Receive::new(Protocol::Udp, self.server, b.addr, c).unwrap();
                b.rtc.handle_input(Input::Receive(self.now, r)).unwrap();
                // Sent: the endpoint hands the buffer back (as after its sendmmsg).
                self.core.recycle(t.contents.into());
            }
            while self.core.poll_event().is_some() {}
            if !moved {
                return;
            }
        }
    }

    fn tick(&mut self, d: Duration) {
        self.now += d;
        self.core.handle_timeout(self.now);
        for b in &mut self.browsers {
            b.rtc.handle_input(Input::Timeout(self.now)).unwrap();
        }
        self.step();
    }
}

fn main() {
    let n: usize = std::env::var("CALLGATE_INSTR_PLAYERS").ok().and_then(|v| v.parse().ok()).unwrap_or(32);
    let packets: u64 = std::env::var("CALLGATE_INSTR_PACKETS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    // Packets per 1 ms tick (the criterion bench sends ~60/n per ms).
    let per_tick: u64 = (60 / n as u64).max(1);
    if std::env::var_os("CALLGATE_INSTR_FLOOR").is_some() {
        let provider = str0m::crypto::from_feature_flags();
        let mut sinks: Vec<harness::SrtpSink> = (0..n as u32).map(|i| harness::SrtpSink::new(&provider, i)).collect();
        let mut pkt = vec![0x5au8; 12 + FRAME];
        pkt[0] = 0x80;
        pkt[1] = 96;
        let mut out = vec![0u8; 2048];
        let mut bytes = 0usize;
        for _ in 0..packets {
            for s in &mut sinks {
                bytes += s.protect(&pkt, &mut out);
                std::hint::black_box(&out);
            }
        }
        println!("forward_instr floor: N = {n}, {packets} packets, {bytes} bytes protected");
        return;
    }
    callgate_media::install_crypto_provider();
    let now = Instant::now();
    let mut sim = Sim {
        core: MediaCore::new(MediaConfig::default(), SERVER.parse().unwrap()),
        browsers: vec![],
        now,
        server: SERVER.parse().unwrap(),
    };
    let (mut p, offer, pending) = browser(0, Direction::SendOnly, now);
    let answer = sim.core.add_publisher(PeerId(0), &offer, now).unwrap();
    accept(&mut p, pending, &answer);
    sim.browsers.push(p);
    for i in 1..=n {
        let (mut b, offer, pending) = browser(i, Direction::RecvOnly, now);
        let answer = sim.core.add_player(PeerId(i as u64), PeerId(0), &offer, now).unwrap();
        accept(&mut b, pending, &answer);
        sim.browsers.push(b);
    }
    for _ in 0..200 {
        sim.tick(Duration::from_millis(5));
    }
    assert!(sim.browsers.iter().all(|b| b.connected), "every peer connects");
    let mut sent = 0u64;
    let mut frame = |sim: &mut Sim| {
        let b = &mut sim.browsers[0];
        let w = b.rtc.writer(b.video).unwrap();
        let pt = w.payload_params().next().unwrap().pt();
        let t = MediaTime::new(sent * 3000, Frequency::new(90_000).unwrap());
        let mut data = vec![0x5au8; FRAME];
        data[0] = 0x10;
        w.write(pt, sim.now, t, data).unwrap();
        // str0m's pacer releases a written packet after the next timeout input: one per write,
        // or several frames per tick (N < 60) would leave the publisher one packet per tick.
        b.rtc.handle_input(Input::Timeout(sim.now)).unwrap();
        while let Output::Transmit(t) = b.rtc.poll_output().unwrap() {
            sim.core.handle_datagram(sim.now, b.addr, &t.contents);
        }
        sent += 1;
    };
    // Warm-up: keyframe requests, first sender reports, and the players' RTX caches (1000 video
    // packets) fill, so the measured packets evict as in a long-running stream.
    let warm: u64 = std::env::var("CALLGATE_INSTR_WARMUP").ok().and_then(|v| v.parse().ok()).unwrap_or(1100);
    for _ in 0..warm {
        frame(&mut sim);
        sim.tick(Duration::from_millis(1));
    }
    let got0: u64 = sim.browsers[1..].iter().map(|b| b.rtp).sum();
    let mut left = packets;
    while left > 0 {
        for _ in 0..per_tick.min(left) {
            frame(&mut sim);
            left -= 1;
        }
        sim.tick(Duration::from_millis(1));
    }
    for _ in 0..10 {
        sim.tick(Duration::from_millis(1));
    }
    let got: u64 = sim.browsers[1..].iter().map(|b| b.rtp).sum::<u64>() - got0;
    println!("forward_instr: N = {n}, {packets} publisher packets, {got} RTP packets to players");
}
