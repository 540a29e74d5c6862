//! Two user agents and a registrar over an in-memory link that loses 20 % of the datagrams,
//! with a virtual clock and a seeded generator: registrations (with digest challenges, stale
//! nonces and refreshes), calls (INVITE, 180, 200, ACK, BYE) and CANCELs before the answer
//! all complete, and every UA ends with nothing left over.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::digest::{self, Algorithm, DigestChallenge};
use crate::{parse_datagram, MessageBuilder, StatusCode};

/// xorshift64*, so a failing run can be replayed from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A registrar with digest auth (MD5, qop=auth) that rotates its nonce every `nonce_life`,
/// answering an old nonce with `stale=true`. Stateless per request, like Kamailio's
/// `www_challenge`, so retransmissions get the same answer.
struct Registrar {
    addr: SocketAddr,
    users: HashMap<&'static str, &'static str>,
    nonce_serial: u64,
    nonce_life: Duration,
    started: Instant,
    bindings: HashMap<String, Instant>,
    challenges: u64,
    stale_challenges: u64,
}

impl Registrar {
    fn nonce(&self, now: Instant) -> String {
        let n = (now - self.started).as_secs() / self.nonce_life.as_secs();
        format!("nonce{}-{}", self.nonce_serial, n)
    }

    fn handle(&mut self, now: Instant, raw: Bytes) -> Option<Bytes> {
        let req = parse_datagram(raw).ok()?;
        if req.method() != Some(&Method::Register) {
            return None;
        }
        let user = req.to().ok()?.uri.as_sip()?.user?.to_owned();
        let nonce = self.nonce(now);
        let challenge = |stale: bool| {
            format!(
                "Digest realm=\"sim\", nonce=\"{nonce}\", qop=\"auth\", algorithm=MD5{}",
                if stale { ", stale=true" } else { "" }
            )
        };
        let respond = |status: u16, edit: &dyn Fn(MessageBuilder) -> MessageBuilder| {
            edit(MessageBuilder::response_to(&req, StatusCode::new(status).unwrap(), Some("reg")).unwrap())
                .to_bytes()
                .ok()
        };
        let Some(Ok(creds)) = req.authorization().next() else {
            self.challenges += 1;
            return respond(401, &|b| b.header(HeaderName::WwwAuthenticate, challenge(false)));
        };
        let password = self.users.get(user.as_str())?;
        let ch = DigestChallenge {
            realm: "sim".into(),
            nonce: creds.nonce()?.into_owned(),
            opaque: None,
            algorithm: Algorithm::Md5,
            qop_auth: true,
            stale: false,
        };
        let nc = u32::from_str_radix(creds.nc()?, 16).ok()?;
        let want = digest::response(&ch, &creds.username()?, password, "REGISTER", &creds.uri()?, nc, &creds.cnonce()?);
        if creds.response()? != want {
            self.challenges += 1;
            return respond(401, &|b| b.header(HeaderName::WwwAuthenticate, challenge(false)));
        }
        if ch.nonce != nonce {
            self.stale_challenges += 1;
            return respond(401, &|b| b.header(HeaderName::WwwAuthenticate, challenge(true)));
        }
        let expires: u32 = std::str::from_utf8(req.header(HeaderName::Expires)?.value()).ok()?.parse().ok()?;
        if expires == 0 {
            self.bindings.remove(&user);
        } else {
            self.bindings.insert(user, now + Duration::from_secs(expires.into()));
        }
        let contact = String::from_utf8_lossy(req.header(HeaderName::Contact)?.value()).into_owned();
        respond(200, &|b| b.header(HeaderName::Contact, format!("{contact};expires={expires}")))
    }
}

type Action = Box<dyn FnOnce(&mut UserAgent, Instant)>;

struct Sim {
    now: Instant,
    rng: Rng,
    loss: u64,
    in_flight: BTreeMap<(Instant, u64), (SocketAddr, SocketAddr, Bytes)>,
    seq: u64,
    sent: u64,
    dropped: u64,
    nodes: Vec<(SocketAddr, UserAgent)>,
    registrar: Registrar,
    /// (when, node, what) — the applications' delayed commands.
    actions: Vec<(Instant, usize, Action)>,
    /// Every event, by node.
    log: Vec<Vec<(Instant, UaEvent)>>,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

impl Sim {
    fn new(seed: u64, loss: u64) -> Sim {
        let now = Instant::now();
        let nodes: Vec<(SocketAddr, UserAgent)> = ["10.0.0.1:5060", "10.0.0.2:5060"]
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let cfg = UaConfig { seed: seed ^ (i as u64 + 1), ..UaConfig::new(addr(a)) };
                (addr(a), UserAgent::new(cfg))
            })
            .collect();
        Sim {
            now,
            rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            loss,
            in_flight: BTreeMap::new(),
            seq: 0,
            sent: 0,
            dropped: 0,
            log: vec![Vec::new(); nodes.len()],
            nodes,
            registrar: Registrar {
                addr: addr("10.0.0.9:5060"),
                users: HashMap::from([("alice", "a-secret"), ("bob", "b-secret")]),
                nonce_serial: seed,
                nonce_life: Duration::from_secs(300),
                started: now,
                bindings: HashMap::new(),
                challenges: 0,
                stale_challenges: 0,
            },
            actions: Vec::new(),
        }
    }

    fn account(&self, user: &str, password: &str, node: usize) -> Account {
        let _ = node;
        let mut a = Account::new(user, password, "sim.example", self.registrar.addr);
        a.expires = 60;
        a
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, b: Bytes) {
        self.sent += 1;
        if self.rng.chance(self.loss) {
            self.dropped += 1;
            return;
        }
        self.seq += 1;
        // 5 to 45 ms: reordering happens too.
        let delay = Duration::from_millis(5 + self.rng.next() % 41);
        self.in_flight.insert((self.now + delay, self.seq), (from, to, b));
    }

    fn at(&mut self, after: Duration, node: usize, f: impl FnOnce(&mut UserAgent, Instant) + 'static) {
        self.actions.push((self.now + after, node, Box::new(f)));
    }

    /// Runs until `deadline`, handing each event to `app(sim, node, event)`.
    fn run(&mut self, deadline: Instant, app: &mut dyn FnMut(&mut Sim, usize, UaEvent)) {
        loop {
            // Outputs until quiet (the applications may react with commands).
            loop {
                let mut quiet = true;
                for i in 0..self.nodes.len() {
                    while let Some(t) = self.nodes[i].1.poll_transmit() {
                        quiet = false;
                        let from = self.nodes[i].0;
                        self.send(from, t.dst, t.bytes);
                    }
                    while let Some(e) = self.nodes[i].1.poll_event() {
                        quiet = false;
                        self.log[i].push((self.now, e.clone()));
                        app(self, i, e);
                    }
                }
                if quiet {
                    break;
                }
            }
            let next = [
                self.in_flight.keys().next().map(|(at, _)| *at),
                self.nodes[0].1.poll_timeout(),
                self.nodes[1].1.poll_timeout(),
                self.actions.iter().map(|(at, _, _)| *at).min(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else { return };
            if next > deadline {
                return;
            }
            self.now = next.max(self.now);
            let now = self.now;
            while let Some((&(at, seq), _)) = self.in_flight.iter().next() {
                if at > now {
                    break;
                }
                let (from, to, b) = self.in_flight.remove(&(at, seq)).unwrap();
                if to == self.registrar.addr {
                    if let Some(r) = self.registrar.handle(now, b) {
                        self.send(to, from, r);
                    }
                } else if let Some((_, ua)) = self.nodes.iter_mut().find(|(a, _)| *a == to) {
                    // Errors are stray responses: logged by a driver, harmless here.
                    let _ = ua.handle_datagram(now, from, b);
                }
            }
            for (_, ua) in &mut self.nodes {
                if ua.poll_timeout().is_some_and(|t| t <= now) {
                    ua.handle_timeout(now);
                }
            }
            let due: Vec<usize> =
                self.actions.iter().enumerate().filter(|(_, (at, _, _))| *at <= now).map(|(i, _)| i).collect();
            for i in due.into_iter().rev() {
                let (_, node, f) = self.actions.remove(i);
                f(&mut self.nodes[node].1, now);
            }
        }
    }

    fn loss_seen(&self) -> u64 {
        self.dropped * 100 / self.sent.max(1)
    }
}

#[test]
fn registrations_with_challenges_stale_nonces_and_refreshes_survive_20_percent_loss() {
    for seed in [1u64, 2, 3, 4, 5] {
        let mut sim = Sim::new(seed, 20);
        let alice = sim.account("alice", "a-secret", 0);
        let bob = sim.account("bob", "b-secret", 1);
        let t0 = sim.now;
        let ra = sim.nodes[0].1.register(t0, alice).unwrap();
        let rb = sim.nodes[1].1.register(t0, bob).unwrap();
        // Two virtual hours: a refresh every 30 s, a new nonce every 5 minutes.
        sim.run(t0 + Duration::from_secs(7200), &mut |_, _, _| {});
        for (node, reg) in [(0, ra), (1, rb)] {
            let registered: Vec<&(Instant, UaEvent)> = sim.log[node]
                .iter()
                .filter(|(_, e)| matches!(e, UaEvent::Registration { reg: r, event: RegEvent::Registered { expires: 60, .. } } if *r == reg))
                .collect();
            let failures: Vec<&(Instant, UaEvent)> = sim.log[node]
                .iter()
                .filter(|(_, e)| matches!(e, UaEvent::Registration { event: RegEvent::Failed(_), .. }))
                .collect();
            assert!(failures.is_empty(), "seed {seed} node {node}: {failures:?}");
            assert!(registered.len() >= 200, "seed {seed} node {node}: {} registrations", registered.len());
            // The binding never lapsed: each success came within its 60 s lifetime.
            for w in registered.windows(2) {
                assert!(w[1].0 - w[0].0 < Duration::from_secs(60), "seed {seed}: gap {:?}", w[1].0 - w[0].0);
            }
        }
        assert!(sim.registrar.stale_challenges > 0, "stale nonces were exercised");
        assert_eq!(sim.registrar.bindings.len(), 2);
        assert!(sim.loss_seen() >= 12, "the link lost {}%", sim.loss_seen());
        // Unregister both; all state goes away.
        let now = sim.now;
        sim.nodes[0].1.unregister(now, ra).unwrap();
        sim.nodes[1].1.unregister(now, rb).unwrap();
        sim.run(now + Duration::from_secs(120), &mut |_, _, _| {});
        for node in 0..2 {
            assert!(matches!(
                sim.log[node].last(),
                Some((_, UaEvent::Registration { event: RegEvent::Unregistered, .. }))
            ));
            assert_eq!(sim.nodes[node].1.counts(), (0, 0, 0, 0), "seed {seed} node {node}");
        }
        assert!(sim.registrar.bindings.is_empty());
    }
}

const OFFER: &[u8] =
    b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
const ANSWER: &[u8] =
    b"v=0\r\no=- 2 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";

fn call_log(sim: &Sim, node: usize) -> HashMap<CallId, Vec<CallEvent>> {
    let mut m: HashMap<CallId, Vec<CallEvent>> = HashMap::new();
    for (_, e) in &sim.log[node] {
        match e {
            UaEvent::Call { call, event } => m.entry(*call).or_default().push(event.clone()),
            UaEvent::IncomingCall(ic) => m.entry(ic.call).or_default().push(CallEvent::Trying),
            _ => {}
        }
    }
    m
}

#[test]
fn calls_and_byes_complete_over_20_percent_loss() {
    for seed in [11u64, 12, 13] {
        let mut sim = Sim::new(seed, 20);
        let mut alice = sim.account("alice", "a-secret", 0);
        alice.next_hop = sim.nodes[1].0;
        let t0 = sim.now;
        const N: usize = 40;
        for i in 0..N {
            let a = alice.clone();
            sim.at(Duration::from_millis(100 * i as u64), 0, move |ua, now| {
                ua.invite(now, &a, "sip:bob@10.0.0.2:5060", Bytes::from_static(OFFER), &[]).unwrap();
            });
        }
        // Bob rings at once and answers after a second; Alice hangs up three seconds in.
        sim.run(t0 + Duration::from_secs(300), &mut |sim, node, e| match (node, e) {
            (1, UaEvent::IncomingCall(ic)) => {
                assert_eq!(ic.sdp.as_deref(), Some(OFFER));
                let call = ic.call;
                let now = sim.now;
                sim.nodes[1].1.provisional(now, call, 180, None).unwrap();
                sim.at(Duration::from_secs(1), 1, move |ua, now| {
                    ua.answer(now, call, Bytes::from_static(ANSWER)).unwrap()
                });
            }
            (0, UaEvent::Call { call, event: CallEvent::Established { sdp } }) => {
                assert_eq!(sdp.as_deref(), Some(ANSWER));
                sim.at(Duration::from_secs(3), 0, move |ua, now| ua.bye(now, call).unwrap());
            }
            _ => {}
        });
        let a = call_log(&sim, 0);
        let b = call_log(&sim, 1);
        assert_eq!(a.len(), N, "seed {seed}");
        assert_eq!(b.len(), N, "seed {seed}: bob saw every call once");
        for (id, ev) in &a {
            // 100 and 180 may be lost (the 180's retransmission may only answer a retransmitted
            // INVITE), but the call is established once and ends once, by our BYE.
            let core: Vec<&CallEvent> =
                ev.iter().filter(|e| !matches!(e, CallEvent::Trying | CallEvent::Ringing { .. })).collect();
            assert_eq!(
                core,
                [
                    &CallEvent::Established { sdp: Some(Bytes::from_static(ANSWER)) },
                    &CallEvent::Ended { remote: false }
                ],
                "seed {seed} alice {id}: {ev:?}"
            );
        }
        for (id, ev) in &b {
            assert_eq!(
                ev,
                &[CallEvent::Trying, CallEvent::Established { sdp: None }, CallEvent::Ended { remote: true }],
                "seed {seed} bob {id}"
            );
        }
        assert!(sim.loss_seen() >= 12, "the link lost {}%", sim.loss_seen());
        for node in 0..2 {
            assert_eq!(sim.nodes[node].1.counts(), (0, 0, 0, 0), "seed {seed} node {node}: leftovers");
        }
    }
}

#[test]
fn cancels_before_answer_complete_over_20_percent_loss() {
    for seed in [21u64, 22, 23] {
        let mut sim = Sim::new(seed, 20);
        let mut alice = sim.account("alice", "a-secret", 0);
        alice.next_hop = sim.nodes[1].0;
        let t0 = sim.now;
        const N: usize = 40;
        for i in 0..N {
            let a = alice.clone();
            sim.at(Duration::from_millis(100 * i as u64), 0, move |ua, now| {
                let call = ua.invite(now, &a, "sip:bob@10.0.0.2:5060", Bytes::from_static(OFFER), &[]).unwrap();
                // Some CANCELs come before any provisional response got through: they wait.
                let _ = call;
            });
        }
        // Bob only rings (giving up after 60 s, as a phone does); Alice hangs up 1.5 s after
        // each INVITE (or at once for odd calls).
        sim.run(t0 + Duration::from_secs(300), &mut |sim, node, e| match (node, e) {
            (1, UaEvent::IncomingCall(ic)) => {
                let now = sim.now;
                let call = ic.call;
                sim.nodes[1].1.provisional(now, call, 180, None).unwrap();
                sim.at(Duration::from_secs(60), 1, move |ua, now| {
                    let _ = ua.reject(now, call, 480, None);
                });
            }
            (0, UaEvent::Call { call, event: CallEvent::Trying | CallEvent::Ringing { .. } }) => {
                let delay = if call.0 % 2 == 1 { Duration::ZERO } else { Duration::from_millis(1500) };
                sim.at(delay, 0, move |ua, now| {
                    // Trying then Ringing both schedule one; the second finds it done.
                    let _ = ua.cancel(now, call);
                });
            }
            _ => {}
        });
        let a = call_log(&sim, 0);
        let b = call_log(&sim, 1);
        assert_eq!(a.len(), N, "seed {seed}");
        // Alice hangs up when she hears back. If every response to every INVITE retransmission
        // was lost (a ~1e-3 tail per call at 20 % loss), she hears nothing and Timer B ends the
        // call; Bob then rings out.
        let mut unheard = 0;
        for (id, ev) in &a {
            if ev == &[CallEvent::Failed(Failure::Timeout)] {
                unheard += 1;
                continue;
            }
            assert_eq!(ev.last(), Some(&CallEvent::Ended { remote: false }), "seed {seed} alice {id}: {ev:?}");
            assert!(!ev.iter().any(|e| matches!(e, CallEvent::Established { .. } | CallEvent::Failed(_))), "{ev:?}");
        }
        assert_eq!(b.len(), N, "seed {seed}");
        let cancelled = b.values().filter(|ev| ev[..] == [CallEvent::Trying, CallEvent::Cancelled]).count();
        assert_eq!(cancelled, N - unheard, "seed {seed}: {b:?}");
        for node in 0..2 {
            assert_eq!(sim.nodes[node].1.counts(), (0, 0, 0, 0), "seed {seed} node {node}: leftovers");
        }
    }
}
