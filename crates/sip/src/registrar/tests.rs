//! The registrar and proxy against real user agents (`crate::ua::UserAgent`) over an in-memory
//! link with a virtual clock, and against hand-written REGISTERs where a UA would never send
//! what is tested (423, `*`, stale nonces, out-of-order CSeq).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::digest::{self, Algorithm, DigestChallenge};
use crate::ua::{Account, CallEvent, CallId, Failure, RegEvent, UaConfig, UaEvent, UserAgent};
use crate::StatusCode;

const DOMAIN: &str = "callgate.local";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const REGISTRAR: &str = "10.0.0.9:5060";

/// xorshift64*, so a failing run can be replayed from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

struct Net {
    now: Instant,
    rng: Rng,
    /// Percent of datagrams lost.
    loss: u64,
    seq: u64,
    in_flight: BTreeMap<(Instant, u64), (SocketAddr, SocketAddr, Bytes)>,
    uas: Vec<(SocketAddr, UserAgent)>,
    reg: Registrar,
    /// Every datagram the registrar sent: (to, first line).
    forwarded: Vec<(SocketAddr, String)>,
    events: Vec<(usize, UaEvent)>,
    reg_events: Vec<RegistrarEvent>,
    /// The Authorization headers of the REGISTERs the registrar received.
    authorizations: Vec<String>,
}

impl Net {
    fn new(uas: usize, loss: u64, seed: u64) -> Net {
        let now = Instant::now();
        let mut cfg = RegistrarConfig::new(DOMAIN, addr(REGISTRAR));
        cfg.users = HashMap::from([
            ("1001".to_owned(), "pw1".to_owned()),
            ("1002".to_owned(), "pw2".to_owned()),
            ("1003".to_owned(), "pw3".to_owned()),
        ]);
        cfg.seed = seed;
        let uas = (0..uas)
            .map(|i| {
                let a = addr(&format!("10.0.0.{}:30000", i + 1));
                (a, UserAgent::new(UaConfig { seed: seed ^ (i as u64 + 7), ..UaConfig::new(a) }))
            })
            .collect();
        Net {
            now,
            rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            loss,
            seq: 0,
            in_flight: BTreeMap::new(),
            uas,
            reg: Registrar::new(cfg, now),
            forwarded: Vec::new(),
            events: Vec::new(),
            reg_events: Vec::new(),
            authorizations: Vec::new(),
        }
    }

    fn account(user: &str, password: &str) -> Account {
        Account::new(user, password, DOMAIN, addr(REGISTRAR))
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, b: Bytes) {
        self.seq += 1;
        if self.loss > 0 && self.rng.next() % 100 < self.loss {
            return;
        }
        let delay = Duration::from_millis(if self.loss > 0 { 5 + self.rng.next() % 41 } else { 10 });
        self.in_flight.insert((self.now + delay, self.seq), (from, to, b));
    }

    fn flush(&mut self) {
        loop {
            let mut quiet = true;
            for i in 0..self.uas.len() {
                while let Some(t) = self.uas[i].1.poll_transmit() {
                    quiet = false;
                    let from = self.uas[i].0;
                    self.send(from, t.dst, t.bytes);
                }
                while let Some(e) = self.uas[i].1.poll_event() {
                    quiet = false;
                    self.events.push((i, e));
                }
            }
            while let Some(t) = self.reg.poll_transmit() {
                quiet = false;
                let line = String::from_utf8_lossy(t.bytes.split(|&c| c == b'\r').next().unwrap()).into_owned();
                self.forwarded.push((t.dst, line));
                self.send(addr(REGISTRAR), t.dst, t.bytes);
            }
            while let Some(e) = self.reg.poll_event() {
                quiet = false;
                self.reg_events.push(e);
            }
            if quiet {
                return;
            }
        }
    }

    /// One step of the virtual clock: the next datagram or timer. False when nothing is left
    /// before `deadline`.
    fn step(&mut self, deadline: Instant) -> bool {
        self.flush();
        let next = self
            .in_flight
            .keys()
            .next()
            .map(|(at, _)| *at)
            .into_iter()
            .chain(self.uas.iter_mut().filter_map(|(_, ua)| ua.poll_timeout()))
            .chain(self.reg.poll_timeout())
            .min();
        let Some(next) = next.filter(|n| *n <= deadline) else { return false };
        self.now = next.max(self.now);
        let now = self.now;
        while let Some((&(at, seq), _)) = self.in_flight.iter().next() {
            if at > now {
                break;
            }
            let (from, to, b) = self.in_flight.remove(&(at, seq)).unwrap();
            if to == addr(REGISTRAR) {
                if let Ok(m) = crate::parse_datagram(b.clone()) {
                    if let Some(h) = m.header(HeaderName::Authorization) {
                        self.authorizations.push(String::from_utf8_lossy(h.value()).into_owned());
                    }
                }
                let _ = self.reg.handle_datagram(now, from, b);
            } else if let Some((_, ua)) = self.uas.iter_mut().find(|(a, _)| *a == to) {
                let _ = ua.handle_datagram(now, from, b);
            }
        }
        for (_, ua) in &mut self.uas {
            if ua.poll_timeout().is_some_and(|t| t <= now) {
                ua.handle_timeout(now);
            }
        }
        if self.reg.poll_timeout().is_some_and(|t| t <= now) {
            self.reg.handle_timeout(now);
        }
        self.flush();
        true
    }

    /// Runs until an event of UA `i` matches (taking it), within `limit` of virtual time.
    fn until(&mut self, i: usize, limit: Duration, pred: impl Fn(&UaEvent) -> bool) -> UaEvent {
        let deadline = self.now + limit;
        loop {
            if let Some(pos) = self.events.iter().position(|(n, e)| *n == i && pred(e)) {
                return self.events.remove(pos).1;
            }
            assert!(self.step(deadline), "no matching event of UA {i} within {limit:?}; events: {:?}", self.events);
        }
    }

    fn run_for(&mut self, d: Duration) {
        let deadline = self.now + d;
        while self.step(deadline) {}
        self.now = deadline;
    }

    fn ua(&mut self, i: usize) -> &mut UserAgent {
        &mut self.uas[i].1
    }

    fn register(&mut self, i: usize, user: &str, password: &str) -> Result<u32, Failure> {
        let now = self.now;
        let reg = self.ua(i).register(now, Net::account(user, password)).unwrap();
        match self.until(i, Duration::from_secs(40), |e| matches!(e, UaEvent::Registration { reg: r, .. } if *r == reg))
        {
            UaEvent::Registration { event: RegEvent::Registered { expires, .. }, .. } => Ok(expires),
            UaEvent::Registration { event: RegEvent::Failed(f), .. } => Err(f),
            e => panic!("{e:?}"),
        }
    }

    fn call_event(&mut self, i: usize, call: CallId, pred: impl Fn(&CallEvent) -> bool) -> CallEvent {
        match self.until(
            i,
            Duration::from_secs(40),
            |e| matches!(e, UaEvent::Call { call: c, event } if *c == call && pred(event)),
        ) {
            UaEvent::Call { event, .. } => event,
            _ => unreachable!(),
        }
    }

    fn incoming(&mut self, i: usize) -> crate::ua::IncomingCall {
        match self.until(i, Duration::from_secs(40), |e| matches!(e, UaEvent::IncomingCall(_))) {
            UaEvent::IncomingCall(c) => c,
            _ => unreachable!(),
        }
    }

    fn forwarded_count(&self, start: &str) -> usize {
        self.forwarded.iter().filter(|(_, l)| l.starts_with(start)).count()
    }
}

const SDP: &[u8] =
    b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n";

/// `caller` (UA `a`, registered as `from`) calls `to`; UA `b` answers; both established; the
/// caller hangs up and both see the end. Returns the incoming call as UA `b` saw it.
fn call_answer_bye(net: &mut Net, a: usize, from: &str, b: usize, to: &str) -> crate::ua::IncomingCall {
    let now = net.now;
    let call = net.ua(a).invite(now, &Net::account(from, "unused"), to, Bytes::from_static(SDP), &[]).unwrap();
    let inc = net.incoming(b);
    let now = net.now;
    net.ua(b).answer(now, inc.call, Bytes::from_static(SDP)).unwrap();
    net.call_event(a, call, |e| matches!(e, CallEvent::Established { .. }));
    net.call_event(b, inc.call, |e| matches!(e, CallEvent::Established { .. }));
    let now = net.now;
    net.ua(a).bye(now, call).unwrap();
    assert_eq!(
        net.call_event(b, inc.call, |e| matches!(e, CallEvent::Ended { .. })),
        CallEvent::Ended { remote: true }
    );
    assert_eq!(net.call_event(a, call, |e| matches!(e, CallEvent::Ended { .. })), CallEvent::Ended { remote: false });
    inc
}

#[test]
fn two_user_agents_register_with_digest_and_call_each_other_through_the_proxy() {
    let mut net = Net::new(2, 0, 1);
    assert_eq!(net.register(0, "1001", "pw1"), Ok(3600));
    assert_eq!(net.register(1, "1002", "pw2"), Ok(3600));
    assert_eq!(net.reg.contacts(), 2);
    assert!(
        net.authorizations.iter().all(|a| a.contains("algorithm=SHA-256")) && net.authorizations.len() == 2,
        "the user agent weighs both challenges and takes SHA-256: {:?}",
        net.authorizations
    );
    assert_eq!(net.reg.lookup(net.now, "1002")[0].1, addr("10.0.0.2:30000"), "the flow the REGISTER came from");
    let inc = call_answer_bye(&mut net, 0, "1001", 1, "sip:1002@callgate.local");
    assert_eq!(inc.request_uri, "sip:1002@10.0.0.2:30000", "the Request-URI is the registered contact");
    assert_eq!(inc.source, addr(REGISTRAR));
    let raw = String::from_utf8_lossy(&inc.raw).into_owned();
    assert!(raw.contains("Record-Route: <sip:10.0.0.9:5060;lr>\r\n"), "{raw}");
    assert!(raw.contains("Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKcgp"), "{raw}");
    assert!(raw.contains("Max-Forwards: 69\r\n"), "{raw}");
    // Record-Route made the ACK and the BYE come through the proxy too, and the answers back.
    for start in ["INVITE sip:1002@10.0.0.2:30000", "ACK sip:1002@10.0.0.2:30000", "BYE sip:1002@10.0.0.2:30000"] {
        assert_eq!(net.forwarded_count(start), 1, "{start}: {:?}", net.forwarded);
    }
    assert!(net.forwarded.iter().any(|(to, l)| to == &addr("10.0.0.1:30000") && l == "SIP/2.0 200 OK"));
    assert!(net.reg.lookup(net.now, "1001").len() == 1);
}

#[test]
fn two_accounts_of_one_user_agent_call_each_other_through_the_proxy() {
    // callgate's own case: every session's account lives in the one user agent.
    let mut net = Net::new(1, 0, 2);
    net.register(0, "1001", "pw1").unwrap();
    net.register(0, "1002", "pw2").unwrap();
    let inc = call_answer_bye(&mut net, 0, "1001", 0, "sip:1002@callgate.local");
    assert!(inc.reg.is_some(), "the incoming call found 1002's registration");
    assert!(inc.to.contains("1002"));
}

#[test]
fn calls_go_through_a_lossy_link() {
    for seed in 1..=8 {
        let mut net = Net::new(2, 20, seed);
        net.register(0, "1001", "pw1").unwrap();
        net.register(1, "1002", "pw2").unwrap();
        call_answer_bye(&mut net, 0, "1001", 1, "sip:1002@callgate.local");
        call_answer_bye(&mut net, 1, "1002", 0, "sip:1001@callgate.local");
    }
}

#[test]
fn a_cancel_goes_where_its_invite_went_and_ends_both_sides() {
    let mut net = Net::new(2, 0, 3);
    net.register(0, "1001", "pw1").unwrap();
    net.register(1, "1002", "pw2").unwrap();
    let now = net.now;
    let call = net
        .ua(0)
        .invite(now, &Net::account("1001", "x"), "sip:1002@callgate.local", Bytes::from_static(SDP), &[])
        .unwrap();
    let inc = net.incoming(1);
    let now = net.now;
    net.ua(1).provisional(now, inc.call, 180, None).unwrap();
    net.call_event(0, call, |e| matches!(e, CallEvent::Ringing { .. }));
    let now = net.now;
    net.ua(0).cancel(now, call).unwrap();
    net.call_event(1, inc.call, |e| matches!(e, CallEvent::Cancelled));
    net.call_event(0, call, |e| matches!(e, CallEvent::Ended { .. }));
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.forwarded_count("CANCEL sip:1002@10.0.0.2:30000"), 1);
    assert_eq!(net.forwarded_count("ACK sip:1002@10.0.0.2:30000"), 1, "the 487's ACK follows the INVITE");
}

#[test]
fn a_wrong_password_gets_403_and_an_unknown_user_404() {
    let mut net = Net::new(1, 0, 4);
    match net.register(0, "1001", "wrong") {
        Err(Failure::Status { status: 403, .. }) => {}
        r => panic!("{r:?}"),
    }
    match net.register(0, "4711", "pw") {
        Err(Failure::Status { status: 404, .. }) => {}
        r => panic!("{r:?}"),
    }
    assert_eq!(net.reg.contacts(), 0);
    let refused: Vec<u16> = net
        .reg_events
        .iter()
        .filter_map(|e| match e {
            RegistrarEvent::Refused { status, .. } => Some(*status),
            _ => None,
        })
        .collect();
    assert_eq!(refused, vec![403, 404]);
}

#[test]
fn an_unknown_aor_is_404_a_known_one_without_contact_480_a_foreign_domain_403() {
    let mut net = Net::new(1, 0, 5);
    net.register(0, "1001", "pw1").unwrap();
    for (to, status) in
        [("sip:9999@callgate.local", 404), ("sip:1003@callgate.local", 480), ("sip:1003@elsewhere.example", 403)]
    {
        let now = net.now;
        let call = net.ua(0).invite(now, &Net::account("1001", "x"), to, Bytes::from_static(SDP), &[]).unwrap();
        match net.call_event(0, call, |e| matches!(e, CallEvent::Failed(_))) {
            CallEvent::Failed(Failure::Status { status: s, .. }) => assert_eq!(s, status, "{to}"),
            e => panic!("{to}: {e:?}"),
        }
    }
}

#[test]
fn session_users_register_while_they_last_and_static_users_keep_their_password() {
    let mut net = Net::new(1, 0, 6);
    assert!(net.reg.add_session_user("2001", "s3"));
    assert!(net.reg.add_session_user("2001", "s3"), "a second session with the same credentials");
    assert!(!net.reg.add_session_user("2001", "other"), "another password for a held user");
    assert!(!net.reg.add_session_user("1001", "not-pw1"), "a static user is not overridden");
    assert_eq!(net.register(0, "2001", "s3"), Ok(3600));
    net.reg.remove_session_user("2001");
    assert_eq!(net.reg.contacts(), 1, "one session still holds 2001");
    net.reg.remove_session_user("2001");
    assert_eq!(net.reg.contacts(), 0, "the last one took the binding along");
    assert!(matches!(net.register(0, "2001", "s3"), Err(Failure::Status { status: 404, .. })));
}

// ----- hand-written REGISTERs ------------------------------------------------------------------

const PHONE: &str = "10.0.0.50:5062";

struct Phone {
    cseq: u32,
    challenge: Option<DigestChallenge>,
}

impl Phone {
    fn register(&mut self, reg: &mut Registrar, now: Instant, contact: &str, expires: Option<u32>) -> Message {
        self.cseq += 1;
        let mut b = crate::MessageBuilder::request(&Method::Register, "sip:callgate.local")
            .header(HeaderName::Via, format!("SIP/2.0/UDP {PHONE};branch=z9hG4bKph{};rport", self.cseq))
            .header(HeaderName::MaxForwards, "70")
            .header(HeaderName::From, "<sip:1003@callgate.local>;tag=ph")
            .header(HeaderName::To, "<sip:1003@callgate.local>")
            .header(HeaderName::CallId, "phone-call-id")
            .header(HeaderName::CSeq, format!("{} REGISTER", self.cseq))
            .header(HeaderName::Contact, contact);
        if let Some(e) = expires {
            b = b.header(HeaderName::Expires, e.to_string());
        }
        if let Some(ch) = &self.challenge {
            b = b.header(
                HeaderName::Authorization,
                digest::authorization(ch, "1003", "pw3", "REGISTER", "sip:callgate.local", 1, "abc"),
            );
        }
        reg.handle_datagram(now, addr(PHONE), b.to_bytes().unwrap()).unwrap();
        let t = reg.poll_transmit().expect("an answer");
        assert_eq!(t.dst, addr(PHONE));
        assert!(reg.poll_transmit().is_none());
        let resp = crate::parse_datagram(t.bytes).unwrap();
        if resp.status() == Some(StatusCode::new(401).unwrap()) {
            let ch = resp.www_authenticate().flatten().find(|c| c.algorithm().as_deref() == Some("MD5")).unwrap();
            self.challenge = Some(DigestChallenge {
                realm: ch.realm().unwrap().into_owned(),
                nonce: ch.nonce().unwrap().into_owned(),
                opaque: None,
                algorithm: Algorithm::Md5,
                qop_auth: true,
                stale: ch.stale(),
            });
        }
        resp
    }
}

fn status(m: &Message) -> u16 {
    m.status().unwrap().as_u16()
}

fn registrar() -> (Registrar, Instant) {
    let now = Instant::now();
    let mut cfg = RegistrarConfig::new(DOMAIN, addr(REGISTRAR));
    cfg.users.insert("1003".into(), "pw3".into());
    (Registrar::new(cfg, now), now)
}

#[test]
fn expiry_423_wildcard_stale_nonce_and_out_of_order_on_a_virtual_clock() {
    let (mut reg, t0) = registrar();
    let mut phone = Phone { cseq: 0, challenge: None };
    let c = "<sip:1003@10.0.0.50:5062>";
    let first = phone.register(&mut reg, t0, c, Some(120));
    assert_eq!(status(&first), 401);
    let algs: Vec<String> = first.www_authenticate().flatten().map(|c| c.algorithm().unwrap().into_owned()).collect();
    assert_eq!(algs, ["MD5", "SHA-256"], "MD5 first: phones that read only the first challenge");
    // 423: below min_expires (60), with Min-Expires; nothing bound.
    let r = phone.register(&mut reg, t0, c, Some(30));
    assert_eq!((status(&r), r.header(HeaderName::MinExpires).map(|h| h.value())), (423, Some(&b"60"[..])));
    assert_eq!(reg.contacts(), 0);
    // Bound for 120 s: the 200 lists it with its lifetime; the contact's own param wins.
    let r = phone.register(&mut reg, t0, &format!("{c};expires=90"), Some(120));
    assert_eq!(status(&r), 200);
    assert_eq!(r.header(HeaderName::Contact).unwrap().value(), b"<sip:1003@10.0.0.50:5062>;expires=90");
    assert_eq!(reg.poll_timeout(), Some(t0 + Duration::from_secs(90)));
    // Max is 3600.
    let r = phone.register(&mut reg, t0, c, Some(100_000));
    assert_eq!(r.header(HeaderName::Contact).unwrap().value(), b"<sip:1003@10.0.0.50:5062>;expires=3600");
    // An older CSeq of the same Call-ID is refused.
    phone.cseq -= 2;
    assert_eq!(status(&phone.register(&mut reg, t0, c, Some(120))), 500);
    phone.cseq += 2;
    // The nonce gets old: stale=true, then the new nonce works.
    let later = t0 + Duration::from_secs(301);
    let r = phone.register(&mut reg, later, c, Some(120));
    assert_eq!(status(&r), 401);
    assert!(r.www_authenticate().flatten().all(|c| c.stale()));
    assert_eq!(status(&phone.register(&mut reg, later, c, Some(120))), 200);
    // It expires on the clock.
    while reg.poll_event().is_some() {}
    let at = reg.poll_timeout().unwrap();
    assert_eq!(at, later + Duration::from_secs(120));
    reg.handle_timeout(at - Duration::from_millis(1));
    assert_eq!(reg.contacts(), 1);
    reg.handle_timeout(at);
    assert_eq!(reg.contacts(), 0);
    assert_eq!(
        reg.poll_event(),
        Some(RegistrarEvent::Unbound { user: "1003".into(), contact: "sip:1003@10.0.0.50:5062".into(), expired: true })
    );
    // "*" removes everything, only with Expires: 0.
    let late = later + Duration::from_secs(400);
    assert_eq!(status(&phone.register(&mut reg, late, c, Some(120))), 401, "the nonce got old again");
    assert_eq!(status(&phone.register(&mut reg, late, c, Some(120))), 200);
    assert_eq!(status(&phone.register(&mut reg, late, "<sip:1003@10.0.0.51>", Some(120))), 200);
    assert_eq!(reg.contacts(), 2);
    assert_eq!(status(&phone.register(&mut reg, late, "*", Some(60))), 400);
    let r = phone.register(&mut reg, late, "*", Some(0));
    assert_eq!((status(&r), r.header(HeaderName::Contact).is_none()), (200, true));
    assert_eq!(reg.contacts(), 0);
    assert_eq!(reg.poll_timeout(), None);
}

#[test]
fn a_contact_on_the_source_ip_is_reached_directly_another_through_the_source() {
    assert_eq!(flow_for("sip:1003@10.0.0.50:5070", addr("10.0.0.50:5062")), addr("10.0.0.50:5070"));
    assert_eq!(flow_for("sip:1003@10.0.0.50", addr("10.0.0.50:5062")), addr("10.0.0.50:5060"));
    assert_eq!(flow_for("sip:1003@192.168.1.4:5060", addr("203.0.113.9:41000")), addr("203.0.113.9:41000"), "NAT");
    assert_eq!(flow_for("sip:1003@phone.example", addr("10.0.0.50:5062")), addr("10.0.0.50:5062"));
}

#[test]
fn max_forwards_zero_is_483_and_garbage_gets_400_or_nothing() {
    let (mut reg, t0) = registrar();
    let invite = |mf: &str| {
        crate::MessageBuilder::request(&Method::Invite, "sip:1003@callgate.local")
            .header(HeaderName::Via, format!("SIP/2.0/UDP {PHONE};branch=z9hG4bKx"))
            .header(HeaderName::MaxForwards, mf)
            .header(HeaderName::From, "<sip:a@h>;tag=1")
            .header(HeaderName::To, "<sip:1003@callgate.local>")
            .header(HeaderName::CallId, "c")
            .header(HeaderName::CSeq, "1 INVITE")
            .to_bytes()
            .unwrap()
    };
    assert!(reg.handle_datagram(t0, addr(PHONE), invite("0")).is_ok());
    let t = reg.poll_transmit().unwrap();
    assert!(t.bytes.starts_with(b"SIP/2.0 483 "), "{:?}", t.bytes);
    assert!(reg.handle_datagram(t0, addr(PHONE), invite("5")).is_err(), "1003 has no contact");
    assert!(reg.poll_transmit().unwrap().bytes.starts_with(b"SIP/2.0 480 "));
    assert!(reg.handle_datagram(t0, addr(PHONE), Bytes::from_static(b"\x00\x01garbage")).is_err());
    assert!(reg.poll_transmit().is_none());
    let bad = Bytes::from_static(b"OPTIONS sip:callgate.local SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.50:5062;branch=z9hG4bKq\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: many\r\nContent-Length: 0\r\n\r\n");
    assert!(reg.handle_datagram(t0, addr(PHONE), bad).is_err());
    assert!(reg.poll_transmit().unwrap().bytes.starts_with(b"SIP/2.0 400 "));
    // A response that never passed through us is dropped.
    let stray = Bytes::from_static(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.50:5062;branch=z9hG4bKq\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
    assert!(matches!(reg.handle_datagram(t0, addr(PHONE), stray), Err(RegistrarError::NotOurs)));
    assert!(reg.poll_transmit().is_none());
}

/// 20 000 mutated messages (an INVITE to forward along a Route, a response with our Via, a
/// REGISTER with credentials and two contacts) never panic the registrar, and it still works
/// afterwards.
#[test]
fn mutated_messages_never_panic_it() {
    let (mut reg, t0) = registrar();
    let mut phone = Phone { cseq: 0, challenge: None };
    for _ in 0..2 {
        let _ = phone.register(&mut reg, t0, "<sip:1003@10.0.0.50:5062>", Some(3600));
    }
    assert_eq!(reg.contacts(), 1);
    let mut corpus: Vec<Bytes> = Vec::new();
    let invite = crate::MessageBuilder::request(&Method::Invite, "sip:1003@callgate.local")
        .header(HeaderName::Via, format!("SIP/2.0/UDP {PHONE};branch=z9hG4bKm;rport"))
        .header(HeaderName::Route, format!("<sip:{REGISTRAR};lr>, <sip:10.0.0.7;lr>"))
        .header(HeaderName::MaxForwards, "70")
        .header(HeaderName::From, "<sip:a@callgate.local>;tag=1")
        .header(HeaderName::To, "<sip:1003@callgate.local>")
        .header(HeaderName::CallId, "m")
        .header(HeaderName::CSeq, "1 INVITE")
        .header(HeaderName::Contact, "<sip:a@10.0.0.50:5062>")
        .body("application/sdp", Bytes::from_static(SDP))
        .to_bytes()
        .unwrap();
    corpus.push(invite);
    corpus.push(Bytes::from_static(
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKcgp00, SIP/2.0/UDP 10.0.0.50:5062;branch=z9hG4bKm;received=10.0.0.50;rport=5062\r\nFrom: <sip:a@callgate.local>;tag=1\r\nTo: <sip:1003@callgate.local>;tag=2\r\nCall-ID: m\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    ));
    corpus.push(Bytes::from_static(
        b"REGISTER sip:callgate.local SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.50:5062;branch=z9hG4bKr\r\nFrom: <sip:1003@callgate.local>;tag=ph\r\nTo: <sip:1003@callgate.local>\r\nCall-ID: x\r\nCSeq: 9 REGISTER\r\nContact: <sip:1003@10.0.0.50:5062>;expires=60, <sip:1003@10.0.0.51>\r\nAuthorization: Digest username=\"1003\", realm=\"callgate.local\", nonce=\"0.00\", uri=\"sip:callgate.local\", response=\"00\", qop=auth, nc=00000001, cnonce=\"c\"\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n",
    ));
    let mut rng = Rng(0x5eed);
    let mut answered = 0;
    for i in 0..20_000u64 {
        let base = &corpus[(rng.next() % corpus.len() as u64) as usize];
        let mut m = base.to_vec();
        for _ in 0..1 + rng.next() % 4 {
            let at = (rng.next() % m.len() as u64) as usize;
            match rng.next() % 5 {
                0 => m[at] = rng.next() as u8,
                1 => m.truncate(at.max(1)),
                2 => m.insert(at, b",;:<>@\r\n\"* 0"[(rng.next() % 12) as usize]),
                3 => {
                    m.remove(at);
                }
                _ => m[at] = m[at].to_ascii_uppercase(),
            }
            if m.is_empty() {
                m.push(b'x');
            }
        }
        let _ = reg.handle_datagram(t0 + Duration::from_millis(i), addr(PHONE), Bytes::from(m));
        while reg.poll_transmit().is_some() {
            answered += 1;
        }
        while reg.poll_event().is_some() {}
        reg.handle_timeout(t0 + Duration::from_millis(i));
    }
    assert!(answered > 1000, "many mutants were still answered or forwarded: {answered}");
    let mut phone = Phone { cseq: 100, challenge: None };
    let later = t0 + Duration::from_secs(30);
    assert_eq!(status(&phone.register(&mut reg, later, "<sip:1003@10.0.0.50:5062>", Some(120))), 401);
    assert_eq!(status(&phone.register(&mut reg, later, "<sip:1003@10.0.0.50:5062>", Some(120))), 200);
}

/// Inside a call set up through the proxy: hold and unhold re-INVITEs, INFO DTMF and REFER with
/// its NOTIFY go both ways through the proxy (Record-Route), and a MESSAGE outside the call
/// reaches the user by its AOR.
#[test]
fn in_dialog_requests_and_messages_go_through_the_proxy() {
    let mut net = Net::new(2, 0, 10);
    net.register(0, "1001", "pw1").unwrap();
    net.register(1, "1002", "pw2").unwrap();
    let now = net.now;
    let call = net
        .ua(0)
        .invite(now, &Net::account("1001", "x"), "sip:1002@callgate.local", Bytes::from_static(SDP), &[])
        .unwrap();
    let inc = net.incoming(1);
    let now = net.now;
    net.ua(1).answer(now, inc.call, Bytes::from_static(SDP)).unwrap();
    net.call_event(0, call, |e| matches!(e, CallEvent::Established { .. }));
    net.call_event(1, inc.call, |e| matches!(e, CallEvent::Established { .. }));

    for hold in [true, false] {
        let now = net.now;
        if hold {
            net.ua(0).reinvite_hold(now, call, SDP).unwrap();
        } else {
            net.ua(0).reinvite_unhold(now, call, SDP).unwrap();
        }
        match net.call_event(1, inc.call, |e| matches!(e, CallEvent::IncomingReInvite { .. })) {
            CallEvent::IncomingReInvite { hold: h, .. } => assert_eq!(h, hold),
            _ => unreachable!(),
        }
        let now = net.now;
        net.ua(1).answer(now, inc.call, Bytes::from_static(SDP)).unwrap();
        match net.call_event(0, call, |e| matches!(e, CallEvent::HoldResult { .. })) {
            CallEvent::HoldResult { hold: h, result } => assert!(h == hold && result.is_ok(), "{result:?}"),
            _ => unreachable!(),
        }
    }
    let now = net.now;
    net.ua(1).info_dtmf(now, inc.call, '7').unwrap();
    assert_eq!(
        net.call_event(0, call, |e| matches!(e, CallEvent::Dtmf { .. })),
        CallEvent::Dtmf { digit: '7', duration_ms: 160 }
    );
    net.call_event(1, inc.call, |e| matches!(e, CallEvent::DtmfResult(Ok(()))));

    let now = net.now;
    net.ua(0).refer(now, call, "sip:1003@callgate.local").unwrap();
    let req = match net.call_event(1, inc.call, |e| matches!(e, CallEvent::IncomingRefer { .. })) {
        CallEvent::IncomingRefer { req, target, .. } => {
            assert_eq!(target, "sip:1003@callgate.local");
            req
        }
        _ => unreachable!(),
    };
    let now = net.now;
    net.ua(1).respond(now, req, 202, None).unwrap();
    net.ua(1).notify_transfer(now, inc.call, 200, "OK").unwrap();
    net.call_event(0, call, |e| matches!(e, CallEvent::TransferAccepted));
    match net.call_event(0, call, |e| matches!(e, CallEvent::TransferProgress { .. })) {
        CallEvent::TransferProgress { status, terminated, .. } => assert_eq!((status, terminated), (200, true)),
        _ => unreachable!(),
    }
    for start in ["INVITE sip:1002@10.0.0.2:30000", "INFO sip:1001@10.0.0.1:30000", "REFER sip:1002@10.0.0.2:30000"] {
        assert!(net.forwarded_count(start) >= 1, "{start}: {:?}", net.forwarded);
    }
    assert_eq!(net.forwarded_count("INVITE sip:1002@10.0.0.2:30000"), 3, "the call and two re-INVITEs");
    assert_eq!(net.forwarded_count("NOTIFY sip:1001@10.0.0.1:30000"), 1);

    let now = net.now;
    let msg = net
        .ua(1)
        .message(
            now,
            &Net::account("1002", "x"),
            "sip:1001@callgate.local",
            "text/plain",
            Bytes::from_static(b"hi"),
            None,
        )
        .unwrap();
    let m = match net.until(0, Duration::from_secs(40), |e| matches!(e, UaEvent::IncomingMessage(_))) {
        UaEvent::IncomingMessage(m) => m,
        _ => unreachable!(),
    };
    assert_eq!((m.body.as_ref(), m.call), (&b"hi"[..], None));
    let now = net.now;
    net.ua(0).respond(now, m.req, 200, None).unwrap();
    match net.until(1, Duration::from_secs(40), |e| matches!(e, UaEvent::MessageResult { .. })) {
        UaEvent::MessageResult { msg: id, result } => assert_eq!((id, result), (msg, Ok(200))),
        _ => unreachable!(),
    }
    assert_eq!(net.forwarded_count("MESSAGE sip:1001@10.0.0.1:30000"), 1);
}
