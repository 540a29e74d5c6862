//! Two endpoints over a lossy link with a virtual clock: every transaction still completes,
//! and the timers fire when RFC 3261 says (checked in the per-machine tests).
//!
//! Messages here are tiny text tokens (`REQ <branch> <method>`, `RES <branch> <method> <status>`,
//! `ACK <branch>`): the transaction layer is agnostic of the codec, so the simulation tests the
//! layer alone.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;

/// A tiny deterministic RNG (xorshift64*), so a failing run can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Client,
    Server,
}

struct Link {
    /// (delivery time, sequence) -> (to, bytes)
    in_flight: BTreeMap<(Instant, u64), (Side, Bytes)>,
    seq: u64,
    loss: u64,
    delay: Duration,
    rng: Rng,
    sent: u64,
    dropped: u64,
}

impl Link {
    fn send(&mut self, now: Instant, to: Side, b: Bytes) {
        self.sent += 1;
        if self.rng.chance(self.loss) {
            self.dropped += 1;
            return;
        }
        self.seq += 1;
        self.in_flight.insert((now + self.delay, self.seq), (to, b));
    }
}

fn words(b: &Bytes) -> Vec<String> {
    String::from_utf8_lossy(b).split(' ').map(str::to_string).collect()
}

/// What the server's TU does with each kind of request.
fn server_answer(method: &str, branch: &str) -> u16 {
    match (method, branch.ends_with('f')) {
        ("INVITE", true) => 486,
        ("INVITE", false) => 200,
        _ => 200,
    }
}

#[test]
fn transactions_complete_over_a_link_with_20_percent_loss() {
    let t0 = Instant::now();
    let mut now = t0;
    let cfg = TimerConfig::udp();
    let mut link = Link {
        in_flight: BTreeMap::new(),
        seq: 0,
        loss: 20,
        delay: Duration::from_millis(20),
        rng: Rng(0x5eed),
        sent: 0,
        dropped: 0,
    };
    let mut client = Transactions::new();
    let mut server = Transactions::new();
    // The server TU's own 2xx retransmission (RFC 3261 §13.3.1.4): branch -> (next send, interval, until).
    let mut retransmit_2xx: HashMap<String, (Instant, Duration, Instant)> = HashMap::new();
    let mut finals: HashMap<String, u16> = HashMap::new();
    let mut timeouts = Vec::new();
    let mut server_h_timeouts = 0;
    let mut acked_2xx = 0;

    const N: usize = 150;
    for i in 0..N {
        for (method, suffix) in [("REGISTER", "r"), ("INVITE", "f"), ("INVITE", "s")] {
            let branch = format!("z9hG4bK{i}{suffix}");
            let req = Bytes::from(format!("REQ {branch} {method}"));
            let key = TxnKey::client(Bytes::from(branch.clone()), method.as_bytes());
            let txn = if method == "INVITE" {
                let b = branch.clone();
                ClientTxn::invite(now, req, Box::new(move |_r: &Bytes| Some(Bytes::from(format!("ACK {b}")))), cfg)
            } else {
                ClientTxn::non_invite(now, req, cfg)
            };
            client.start_client(key, txn);
        }
    }

    let end = t0 + Duration::from_secs(120);
    while now < end {
        // Outputs of both sides.
        while let Some((key, o)) = client.poll_output() {
            let branch = String::from_utf8_lossy(&key.branch).to_string();
            match o {
                TxnOutput::Transmit(b) => link.send(now, Side::Server, b),
                TxnOutput::Response { status, .. } if status >= 200 => {
                    if status < 300 && key.method == "INVITE" {
                        // The UA core ACKs every 2xx itself (not a transaction).
                        link.send(now, Side::Server, Bytes::from(format!("ACK2 {branch}")));
                    }
                    finals.entry(branch).or_insert(status);
                }
                TxnOutput::Timeout(t) => timeouts.push((branch, t)),
                _ => {}
            }
        }
        while let Some((key, o)) = server.poll_output() {
            match o {
                TxnOutput::Transmit(b) => link.send(now, Side::Client, b),
                TxnOutput::Timeout(Timer::H) => server_h_timeouts += 1,
                _ => {}
            }
            let _ = key;
        }
        // Next event: a delivery, a transaction timer, or a 2xx retransmission.
        let next_delivery = link.in_flight.keys().next().map(|(at, _)| *at);
        let next_2xx = retransmit_2xx.values().map(|(at, _, _)| *at).min();
        let next = [next_delivery, client.poll_timeout(), server.poll_timeout(), next_2xx].into_iter().flatten().min();
        let Some(next) = next else { break };
        now = next.max(now);
        client.handle_timeout(now);
        server.handle_timeout(now);
        // 2xx retransmissions by the server TU.
        let due: Vec<String> =
            retransmit_2xx.iter().filter(|(_, (at, _, _))| *at <= now).map(|(b, _)| b.clone()).collect();
        for b in due {
            let (_, interval, until) = retransmit_2xx[&b];
            if now >= until {
                retransmit_2xx.remove(&b);
                continue;
            }
            link.send(now, Side::Client, Bytes::from(format!("RES {b} INVITE 200")));
            let interval = (interval * 2).min(cfg.t2);
            retransmit_2xx.insert(b, (now + interval, interval, until));
        }
        // Deliveries.
        while let Some((&(at, seq), _)) = link.in_flight.iter().next() {
            if at > now {
                break;
            }
            let (to, b) = link.in_flight.remove(&(at, seq)).unwrap();
            let w = words(&b);
            match (to, w[0].as_str()) {
                (Side::Server, "REQ") => {
                    let (branch, method) = (&w[1], &w[2]);
                    let key = TxnKey::server(
                        Bytes::from(branch.clone()),
                        method.as_bytes(),
                        Bytes::from_static(b"client:5060"),
                    );
                    if server.handle_request(now, &key, false, b.clone()) == RequestMatch::New {
                        server.start_server(
                            key.clone(),
                            if method == "INVITE" { ServerTxn::invite(cfg) } else { ServerTxn::non_invite(cfg) },
                        );
                        if method == "INVITE" {
                            server.handle_tu_response(
                                now,
                                &key,
                                100,
                                Bytes::from(format!("RES {branch} {method} 100")),
                            );
                        }
                        let status = server_answer(method, branch);
                        server.handle_tu_response(
                            now,
                            &key,
                            status,
                            Bytes::from(format!("RES {branch} {method} {status}")),
                        );
                        if method == "INVITE" && status == 200 {
                            retransmit_2xx.insert(branch.clone(), (now + cfg.t1, cfg.t1, now + cfg.t1x64()));
                        }
                    }
                }
                (Side::Server, "ACK") => {
                    let key = TxnKey::server(Bytes::from(w[1].clone()), b"ACK", Bytes::from_static(b"client:5060"));
                    server.handle_request(now, &key, true, b.clone());
                }
                (Side::Server, "ACK2") => {
                    if retransmit_2xx.remove(&w[1]).is_some() {
                        acked_2xx += 1;
                    }
                }
                (Side::Client, "RES") => {
                    let key = TxnKey::client(Bytes::from(w[1].clone()), w[2].as_bytes());
                    let status: u16 = w[3].parse().unwrap();
                    if !client.handle_response(now, &key, status, b.clone()) && status == 200 && w[2] == "INVITE" {
                        // 2xx after the client transaction ended: the UA core re-ACKs.
                        link.send(now, Side::Server, Bytes::from(format!("ACK2 {}", w[1])));
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(link.dropped * 100 / link.sent >= 15, "the link really lost packets: {}/{}", link.dropped, link.sent);
    assert!(timeouts.is_empty(), "transactions timed out despite retransmission: {timeouts:?}");
    assert_eq!(finals.len(), 3 * N, "every transaction got its final response");
    assert!(finals.iter().all(|(b, s)| *s == if b.ends_with('f') { 486 } else { 200 }));
    assert_eq!(server_h_timeouts, 0, "every non-2xx final was ACKed before Timer H");
    assert_eq!(acked_2xx, N, "every 2xx was ACKed before the TU gave up retransmitting");
    assert!(
        client.is_empty() && server.is_empty(),
        "all transactions ended: {} client, {} server left",
        client.len(),
        server.len()
    );
}

#[test]
fn table_matches_ack_to_invite_and_keeps_cancel_apart() {
    let now = Instant::now();
    let mut t = Transactions::new();
    let sent_by = Bytes::from_static(b"10.0.0.1:5060");
    let inv = TxnKey::server(Bytes::from_static(b"z9hG4bKa"), b"INVITE", sent_by.clone());
    t.start_server(inv.clone(), ServerTxn::invite(TimerConfig::udp()));
    let cancel = TxnKey::server(Bytes::from_static(b"z9hG4bKa"), b"CANCEL", sent_by.clone());
    assert_eq!(t.handle_request(now, &cancel, false, Bytes::new()), RequestMatch::New, "CANCEL is its own transaction");
    t.handle_tu_response(now, &inv, 487, Bytes::from_static(b"487"));
    let ack = TxnKey::server(Bytes::from_static(b"z9hG4bKa"), b"ACK", sent_by);
    assert_eq!(ack, inv);
    assert_eq!(t.handle_request(now, &ack, true, Bytes::from_static(b"ACK")), RequestMatch::Ack);
    let other = TxnKey::server(Bytes::from_static(b"z9hG4bKa"), b"INVITE", Bytes::from_static(b"10.0.0.2:5060"));
    assert_eq!(
        t.handle_request(now, &other, false, Bytes::new()),
        RequestMatch::New,
        "sent-by is part of a server key"
    );
}
