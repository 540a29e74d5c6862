//! criterion: CPU time of the media thread per forwarded packet, one publisher to N players on
//! loopback, beside a plain UDP relay loop (recv, then `sendto` each of N; the baseline)
//! the same relay with batched sends (`sendmmsg`, as the media endpoint sends), and the **floor**:
//! the plain relay plus one SRTP protect per outgoing datagram (AEAD_AES_256_GCM, one context per
//! player, str0m's own crypto provider; `udp_relay_srtp`), all measured in the same run.
//!
//! One "iteration" is one forwarded packet; the time is the CPU time of the thread that does the
//! forwarding (read from `/proc/self/task/<tid>/schedstat`), so the client threads sharing the
//! machine do not count. Input: 1000-byte video frames (one RTP packet each).

mod harness;

use std::sync::atomic::Ordering;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use harness::{connect_fanout, cpu_ns, settle, SendPlan};

const FRAME: usize = 1000;

fn forward(c: &mut Criterion) {
    let rt = harness::runtime();
    let media = harness::start_media();
    let relay = harness::start_relay();
    let relay_mmsg = harness::start_relay_batched();
    let relay_srtp = harness::start_relay_srtp();
    let clients = harness::start_clients();
    let mut g = c.benchmark_group("forward_cpu_per_packet");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    for n in [1usize, 8, 32] {
        // Output stays near 60k packets/s so neither side is overloaded.
        let per_ms = (60 / n as u64).max(1);
        let sinks = rt.block_on(async {
            let mut v = Vec::new();
            for _ in 0..n {
                v.push(clients.sink().await.0);
            }
            v
        });
        relay.set_sinks(sinks.clone());
        relay_mmsg.set_sinks(sinks.clone());
        relay_srtp.set_sinks(sinks);
        for (name, relay) in [("udp_relay", &relay), ("udp_relay_mmsg", &relay_mmsg), ("udp_relay_srtp", &relay_srtp)] {
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let input = iters.div_ceil(n as u64);
                        let (cpu0, fw0) = (cpu_ns(&relay.cpu), relay.forwarded.load(Ordering::Relaxed));
                        clients.blast(relay.addr, input, FRAME + 40, per_ms).await;
                        let fw = settle(
                            || relay.forwarded.load(Ordering::Relaxed) - fw0,
                            input * n as u64,
                            Duration::from_millis(30),
                        )
                        .await;
                        Duration::from_nanos((cpu_ns(&relay.cpu) - cpu0) * iters / fw.max(1))
                    })
                })
            });
        }
        let fan = rt.block_on(connect_fanout(&media.endpoint, &clients, n));
        g.bench_with_input(BenchmarkId::new("callgate", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let input = iters.div_ceil(n as u64);
                    let (cpu0, fw0) = (cpu_ns(&media.cpu), media.endpoint.counters().frames_out);
                    fan.publisher.send(SendPlan { frames: input, video_bytes: FRAME, audio_bytes: 0, fps: 0, per_ms });
                    let fw = settle(
                        || media.endpoint.counters().frames_out - fw0,
                        input * n as u64,
                        Duration::from_millis(30),
                    )
                    .await;
                    Duration::from_nanos((cpu_ns(&media.cpu) - cpu0) * iters / fw.max(1))
                })
            })
        });
        rt.block_on(async { fan.close(&media.endpoint) });
    }
    g.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
