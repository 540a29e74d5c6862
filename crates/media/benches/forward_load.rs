//! Bounded load run: one publisher (30 fps video of ~4.4 kB frames, i.e. 4 RTP packets, plus one
//! audio packet per frame: ~150 packets/s, ~1.1 Mbit/s) to N players on loopback, N growing until
//! the stream is no longer forwarded in real time. Beside each step, a plain UDP relay loop
//! (and the same relay with `sendmmsg` batches, as the media endpoint sends, and the floor: the
//! plain relay plus one SRTP protect per outgoing datagram, see `harness::start_relay_srtp`)
//! forwards the same number of packets to N sinks, measured in the same run.
//!
//! Real time = the players received at least 99 % of (publisher RTP packets x N), the output
//! reached 95 % of N x the one-player rate (the publisher kept its pace), and the media thread
//! used less than 90 % of one core. "media wait" is the time the media thread was runnable but
//! had no CPU: on a shared machine that, not the forwarding code, is often the limit.
//!
//! `cargo bench -p callgate-media --bench forward_load` runs the sweep (bounded: at most
//! `CALLGATE_LOAD_MAX_N` players, default 3200, 4 s per step); under `cargo test` it runs one
//! short step with N = 2 as a smoke test.

mod harness;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use harness::{connect_fanout, cpu_ns, settle, wait_ns, SendPlan};

const FPS: u32 = 30;
const VIDEO_BYTES: usize = 4400;
const AUDIO_BYTES: usize = 120;

struct Step {
    n: usize,
    cpu_pct: f64,
    clients_cpu_pct: f64,
    /// Time the media thread was runnable but not running (the machine is shared).
    media_wait_pct: f64,
    delivered_pct: f64,
    /// Frames the server wrote to players / (frames it got x N).
    server_fwd_pct: f64,
    ns_per_pkt: f64,
    relay_ns_per_pkt: f64,
    /// The same relay with batched sends (`sendmmsg`).
    mmsg_ns_per_pkt: f64,
    /// The floor: the plain relay plus one SRTP protect per datagram.
    srtp_ns_per_pkt: f64,
    pkts_per_s: f64,
    /// RTP packets/s the publisher managed to send.
    published_per_s: f64,
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let max_n: usize = std::env::var("CALLGATE_LOAD_MAX_N").ok().and_then(|v| v.parse().ok()).unwrap_or(3200);
    let (steps, secs): (Vec<usize>, u64) = if bench {
        ([1, 10, 50, 100, 200, 400, 800, 1200, 1600, 2400, 3200].into_iter().filter(|n| *n <= max_n).collect(), 4)
    } else {
        (vec![2], 1)
    };
    let rt = harness::runtime();
    let media = harness::start_media();
    let relay = harness::start_relay();
    let relay_mmsg = harness::start_relay_batched();
    let relay_srtp = harness::start_relay_srtp();
    let clients = harness::start_clients();
    println!("forward_load: 1 publisher -> N players, {FPS} fps x {VIDEO_BYTES} B video + {AUDIO_BYTES} B audio, {secs} s per step");
    println!(
        "{:>6} {:>12} {:>10} {:>11} {:>12} {:>10} {:>10} {:>16} {:>18} {:>8} {:>15} {:>11} {:>15} {:>12}",
        "N",
        "out pkts/s",
        "media CPU",
        "media wait",
        "clients CPU",
        "delivered",
        "server fwd",
        "callgate ns/pkt",
        "udp relay ns/pkt",
        "ratio",
        "mmsg relay ns",
        "mmsg ratio",
        "floor ns/pkt",
        "floor ratio"
    );
    let mut results = Vec::new();
    let mut publisher_rate: Option<f64> = None;
    for n in steps {
        let setup = Instant::now();
        let fan = rt.block_on(connect_fanout(&media.endpoint, &clients, n));
        let setup = setup.elapsed();
        let step = rt.block_on(async {
            // Warm-up (lets the first keyframe requests and RTCP settle).
            fan.publisher.send(SendPlan {
                frames: FPS as u64 / 2,
                video_bytes: VIDEO_BYTES,
                audio_bytes: AUDIO_BYTES,
                fps: FPS,
                per_ms: 0,
            });
            tokio::time::sleep(Duration::from_millis(700)).await;
            let (cpu0, ccpu0, w0, t0) = (cpu_ns(&media.cpu), cpu_ns(&clients.cpu), wait_ns(&media.cpu), Instant::now());
            let c0 = media.endpoint.counters();
            let (pub0, got0, out0) = (fan.publisher.rtp.load(Ordering::Relaxed), fan.received(), c0.datagrams_out);
            let frames = FPS as u64 * secs;
            fan.publisher.send(SendPlan {
                frames,
                video_bytes: VIDEO_BYTES,
                audio_bytes: AUDIO_BYTES,
                fps: FPS,
                per_ms: 0,
            });
            tokio::time::sleep(Duration::from_secs(secs)).await;
            let published =
                settle(|| fan.publisher.rtp.load(Ordering::Relaxed) - pub0, u64::MAX, Duration::from_millis(150)).await;
            let got = settle(|| fan.received() - got0, published * n as u64, Duration::from_millis(150)).await;
            let (cpu, ccpu, wall) = (cpu_ns(&media.cpu) - cpu0, cpu_ns(&clients.cpu) - ccpu0, t0.elapsed());
            let media_wait_pct = 100.0 * (wait_ns(&media.cpu) - w0) as f64 / wall.as_nanos() as f64;
            let c1 = media.endpoint.counters();
            let out = c1.datagrams_out - out0;
            let server_fwd_pct = 100.0 * (c1.frames_out - c0.frames_out) as f64
                / ((c1.frames_in - c0.frames_in) * n as u64).max(1) as f64;
            // The baseline: the same packets through a plain relay to N sinks.
            let mut sinks = Vec::new();
            for _ in 0..n {
                sinks.push(clients.sink().await.0);
            }
            relay.set_sinks(sinks.clone());
            relay_mmsg.set_sinks(sinks.clone());
            relay_srtp.set_sinks(sinks);
            tokio::time::sleep(Duration::from_millis(50)).await;
            let relay_in = published.min(20_000);
            let mut relay_ns = [0.0; 3];
            for (r, ns) in [&relay, &relay_mmsg, &relay_srtp].into_iter().zip(&mut relay_ns) {
                let (rcpu0, rfw0) = (cpu_ns(&r.cpu), r.forwarded.load(Ordering::Relaxed));
                clients.blast(r.addr, relay_in, 1100, 5).await;
                let rfw = settle(
                    || r.forwarded.load(Ordering::Relaxed) - rfw0,
                    relay_in * n as u64,
                    Duration::from_millis(50),
                )
                .await;
                *ns = (cpu_ns(&r.cpu) - rcpu0) as f64 / rfw.max(1) as f64;
            }
            Step {
                n,
                cpu_pct: 100.0 * cpu as f64 / wall.as_nanos() as f64,
                clients_cpu_pct: 100.0 * ccpu as f64 / wall.as_nanos() as f64,
                media_wait_pct,
                delivered_pct: 100.0 * got as f64 / (published * n as u64).max(1) as f64,
                server_fwd_pct,
                ns_per_pkt: cpu as f64 / out.max(1) as f64,
                relay_ns_per_pkt: relay_ns[0],
                mmsg_ns_per_pkt: relay_ns[1],
                srtp_ns_per_pkt: relay_ns[2],
                pkts_per_s: out as f64 / wall.as_secs_f64(),
                published_per_s: published as f64 / wall.as_secs_f64(),
            }
        });
        rt.block_on(async { fan.close(&media.endpoint) });
        println!(
            "{:>6} {:>12.0} {:>9.1}% {:>10.1}% {:>11.1}% {:>9.1}% {:>9.1}% {:>16.0} {:>18.0} {:>7.2}x {:>15.0} {:>10.2}x {:>15.0} {:>11.2}x   (setup {:.1} s)",
            step.n,
            step.pkts_per_s,
            step.cpu_pct,
            step.media_wait_pct,
            step.clients_cpu_pct,
            step.delivered_pct,
            step.server_fwd_pct,
            step.ns_per_pkt,
            step.relay_ns_per_pkt,
            step.ns_per_pkt / step.relay_ns_per_pkt.max(1.0),
            step.mmsg_ns_per_pkt,
            step.ns_per_pkt / step.mmsg_ns_per_pkt.max(1.0),
            step.srtp_ns_per_pkt,
            step.ns_per_pkt / step.srtp_ns_per_pkt.max(1.0),
            setup.as_secs_f64()
        );
        // The publisher must also have kept its pace (its thread shares the machine): at least
        // 95 % of the rate it reached in the first step.
        let reference = *publisher_rate.get_or_insert(step.published_per_s);
        let kept_rate = step.published_per_s >= 0.95 * reference;
        let real_time = step.delivered_pct >= 99.0 && step.cpu_pct < 90.0 && kept_rate;
        if !kept_rate {
            println!(
                "        the publisher did not keep its pace: {:.0} of {:.0} packets/s",
                step.published_per_s, reference
            );
        }
        results.push((step, real_time));
        if !real_time {
            break;
        }
        // Let the closed peers go before the next step.
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(300)).await });
    }
    match results.iter().rev().find(|(_, rt)| *rt) {
        Some((s, _)) => println!("largest N forwarded in real time: {} ({:.0} packets/s out)", s.n, s.pkts_per_s),
        None => println!("no step was forwarded in real time"),
    }
    if !bench {
        let (s, ok) = &results[0];
        assert!(*ok && s.delivered_pct >= 99.0, "smoke step not in real time");
    }
}
