//! One user agent against a scripted peer: every message checked as it goes out.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::digest::{self, Algorithm, DigestChallenge};
use crate::{parse_datagram, MessageBuilder, StatusCode};

const MS: Duration = Duration::from_millis(1);
const SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n";

fn me() -> SocketAddr {
    "192.0.2.10:5070".parse().unwrap()
}
fn pbx() -> SocketAddr {
    "192.0.2.20:5060".parse().unwrap()
}

fn new_ua() -> UserAgent {
    UserAgent::new(UaConfig::new(me()))
}

fn account() -> Account {
    Account::new("3000", "secret", "pbx.example.com", pbx())
}

fn sent(ua: &mut UserAgent) -> Vec<Message> {
    std::iter::from_fn(|| ua.poll_transmit()).map(|t| parse_datagram(t.bytes).unwrap()).collect()
}

fn one_sent(ua: &mut UserAgent) -> Message {
    let mut s = sent(ua);
    assert_eq!(s.len(), 1, "{:?}", s.iter().map(text).collect::<Vec<_>>());
    s.remove(0)
}

fn events(ua: &mut UserAgent) -> Vec<UaEvent> {
    std::iter::from_fn(|| ua.poll_event()).collect()
}

fn text(m: &Message) -> String {
    String::from_utf8_lossy(m.as_bytes()).into_owned()
}

fn method(m: &Message) -> &str {
    m.method().map(|m| m.as_str()).unwrap_or("")
}

/// A response to our request, as the peer would send it.
fn answer(
    req: &Message,
    status: u16,
    to_tag: Option<&str>,
    edit: impl FnOnce(MessageBuilder) -> MessageBuilder,
) -> Bytes {
    edit(MessageBuilder::response_to(req, StatusCode::new(status).unwrap(), to_tag).unwrap()).to_bytes().unwrap()
}

fn feed(ua: &mut UserAgent, now: Instant, b: Bytes) {
    ua.handle_datagram(now, pbx(), b).unwrap();
}

fn call_events(ev: &[UaEvent]) -> Vec<CallEvent> {
    ev.iter()
        .filter_map(|e| match e {
            UaEvent::Call { event, .. } => Some(event.clone()),
            _ => None,
        })
        .collect()
}

fn challenge_md5(nonce: &str, stale: bool) -> String {
    format!(
        "Digest realm=\"pbx.example.com\", nonce=\"{nonce}\", qop=\"auth\", algorithm=MD5{}",
        if stale { ", stale=true" } else { "" }
    )
}

/// Checks an Authorization / Proxy-Authorization value as a registrar would.
fn verify(creds: &crate::Credentials<'_>, method: &str, password: &str) -> bool {
    let ch = DigestChallenge {
        realm: creds.realm().unwrap().into_owned(),
        nonce: creds.nonce().unwrap().into_owned(),
        opaque: creds.opaque().map(|o| o.into_owned()),
        algorithm: Algorithm::parse(creds.algorithm().as_deref()).unwrap(),
        qop_auth: creds.qop().is_some(),
        stale: false,
    };
    let nc = u32::from_str_radix(creds.nc().unwrap_or("1"), 16).unwrap();
    let want = digest::response(
        &ch,
        &creds.username().unwrap(),
        password,
        method,
        &creds.uri().unwrap(),
        nc,
        &creds.cnonce().unwrap_or_default(),
    );
    creds.response().unwrap() == want
}

#[test]
fn register_answers_the_challenge_refreshes_and_unregisters() {
    let t0 = Instant::now();
    let mut ua = new_ua();
    let reg = ua.register(t0, account()).unwrap();
    let r1 = one_sent(&mut ua);
    assert_eq!(r1.start_line(), crate::StartLine::Request { method: &Method::Register, uri: "sip:pbx.example.com" });
    assert_eq!(r1.header(HeaderName::Expires).unwrap().value(), b"3600");
    let contact = r1.contacts().next().unwrap().unwrap();
    assert_eq!(contact.addr().unwrap().uri.as_str(), "sip:3000@192.0.2.10:5070");
    assert_eq!(r1.header(HeaderName::UserAgent).unwrap().value(), b"callgate");
    assert!(r1.authorization().next().is_none());

    feed(
        &mut ua,
        t0 + 10 * MS,
        answer(&r1, 401, Some("reg"), |b| b.header(HeaderName::WwwAuthenticate, challenge_md5("n1", false))),
    );
    let r2 = one_sent(&mut ua);
    assert_eq!(r2.call_id().unwrap(), r1.call_id().unwrap(), "same Call-ID (§10.2.4)");
    assert_eq!(r2.cseq().unwrap().seq, r1.cseq().unwrap().seq + 1);
    assert_ne!(r2.via().unwrap().branch, r1.via().unwrap().branch);
    let creds = r2.authorization().next().unwrap().unwrap();
    assert_eq!(creds.username().unwrap(), "3000");
    assert_eq!(creds.nc(), Some("00000001"));
    assert!(verify(&creds, "REGISTER", "secret"));

    feed(
        &mut ua,
        t0 + 20 * MS,
        answer(&r2, 200, Some("reg"), |b| b.header(HeaderName::Contact, "<sip:3000@192.0.2.10:5070>;expires=120")),
    );
    assert_eq!(
        events(&mut ua),
        [UaEvent::Registration { reg, event: RegEvent::Registered { expires: 120, refresh: false } }]
    );
    // Refresh at 120 - 32 s, with the cached nonce (nc = 2): no round trip.
    let refresh_at = t0 + 20 * MS + Duration::from_secs(88);
    let r3 = loop {
        let at = ua.poll_timeout().unwrap();
        ua.handle_timeout(at);
        if let Some(t) = ua.poll_transmit() {
            assert_eq!(at, refresh_at);
            break parse_datagram(t.bytes).unwrap();
        }
    };
    let creds = r3.authorization().next().unwrap().unwrap();
    assert_eq!(creds.nc(), Some("00000002"));
    assert!(verify(&creds, "REGISTER", "secret"));
    // The registrar wants a new nonce: stale=true gets answered at once.
    feed(
        &mut ua,
        refresh_at,
        answer(&r3, 401, Some("reg"), |b| b.header(HeaderName::WwwAuthenticate, challenge_md5("n2", true))),
    );
    let r4 = one_sent(&mut ua);
    assert_eq!(r4.authorization().next().unwrap().unwrap().nonce().unwrap(), "n2");
    feed(&mut ua, refresh_at, answer(&r4, 200, Some("reg"), |b| b.header(HeaderName::Expires, "120")));
    assert_eq!(
        events(&mut ua),
        [UaEvent::Registration { reg, event: RegEvent::Registered { expires: 120, refresh: true } }]
    );

    ua.unregister(refresh_at, reg).unwrap();
    let r5 = one_sent(&mut ua);
    assert_eq!(r5.header(HeaderName::Expires).unwrap().value(), b"0");
    feed(&mut ua, refresh_at, answer(&r5, 200, Some("reg"), |b| b));
    assert_eq!(events(&mut ua), [UaEvent::Registration { reg, event: RegEvent::Unregistered }]);
    assert_eq!(ua.counts().2, 0);
}

#[test]
fn register_with_wrong_password_fails_with_the_raw_401() {
    let t0 = Instant::now();
    let mut ua = new_ua();
    let reg = ua.register(t0, account()).unwrap();
    let r1 = one_sent(&mut ua);
    feed(
        &mut ua,
        t0,
        answer(&r1, 401, Some("x"), |b| b.header(HeaderName::WwwAuthenticate, challenge_md5("n1", false))),
    );
    let r2 = one_sent(&mut ua);
    let second = answer(&r2, 401, Some("x"), |b| b.header(HeaderName::WwwAuthenticate, challenge_md5("n3", false)));
    feed(&mut ua, t0, second.clone());
    assert!(sent(&mut ua).is_empty(), "a second non-stale challenge is not answered");
    let ev = events(&mut ua);
    assert_eq!(
        ev,
        [UaEvent::Registration {
            reg,
            event: RegEvent::Failed(Failure::Status { status: 401, reason: "Unauthorized".into(), raw: second })
        }]
    );
}

#[test]
fn register_423_raises_expires_and_timeout_fails() {
    let t0 = Instant::now();
    let mut ua = new_ua();
    let mut a = account();
    a.expires = 30;
    let reg = ua.register(t0, a).unwrap();
    let r1 = one_sent(&mut ua);
    feed(&mut ua, t0, answer(&r1, 423, Some("x"), |b| b.header(HeaderName::MinExpires, "60")));
    let r2 = one_sent(&mut ua);
    assert_eq!(r2.header(HeaderName::Expires).unwrap().value(), b"60");
    // Then silence: Timer F (64*T1) ends it.
    let mut last = t0;
    while let Some(at) = ua.poll_timeout() {
        ua.handle_timeout(at);
        last = at;
        sent(&mut ua);
    }
    assert_eq!(last - t0, Duration::from_secs(32));
    assert_eq!(events(&mut ua), [UaEvent::Registration { reg, event: RegEvent::Failed(Failure::Timeout) }]);
}

/// An outgoing call up to the 2xx; returns (ua, call, INVITE, 200).
fn established_call(t0: Instant) -> (UserAgent, CallId, Message, Message) {
    let mut ua = new_ua();
    let call = ua.invite(t0, &account(), "sip:3001@pbx.example.com", Bytes::from_static(SDP), &[]).unwrap();
    let inv = one_sent(&mut ua);
    feed(&mut ua, t0, answer(&inv, 100, None, |b| b));
    feed(
        &mut ua,
        t0,
        answer(&inv, 180, Some("callee"), |b| b.header(HeaderName::Contact, "<sip:3001@192.0.2.30:5080>")),
    );
    let ok = answer(&inv, 200, Some("callee"), |b| {
        b.header(HeaderName::RecordRoute, "<sip:192.0.2.20;lr>")
            .header(HeaderName::Contact, "<sip:3001@192.0.2.30:5080>")
            .body("application/sdp", Bytes::from_static(SDP))
    });
    feed(&mut ua, t0, ok.clone());
    (ua, call, inv, parse_datagram(ok).unwrap())
}

#[test]
fn outgoing_call_acks_2xx_and_its_retransmissions_then_bye() {
    let t0 = Instant::now();
    let (mut ua, call, inv, ok) = established_call(t0);
    assert_eq!(inv.header(HeaderName::ContentType).unwrap().value(), b"application/sdp");
    assert!(inv.via().unwrap().rport.is_some());
    assert_eq!(inv.max_forwards().unwrap(), Some(70));
    let ack = one_sent(&mut ua);
    assert_eq!(method(&ack), "ACK");
    assert_eq!(ack.request_uri().unwrap().as_str(), "sip:3001@192.0.2.30:5080");
    assert_eq!(ack.routes().next().unwrap().unwrap().uri.as_str(), "sip:192.0.2.20;lr");
    assert_eq!(ack.cseq().unwrap().seq, inv.cseq().unwrap().seq);
    assert_ne!(ack.via().unwrap().branch, inv.via().unwrap().branch, "the ACK of a 2xx is its own transaction");
    let ev = call_events(&events(&mut ua));
    assert_eq!(
        ev,
        [
            CallEvent::Trying,
            CallEvent::Ringing { sdp: None },
            CallEvent::Established { sdp: Some(Bytes::from_static(SDP)) }
        ]
    );
    // A retransmitted 2xx is ACKed again, inside Timer M and after it.
    feed(&mut ua, t0 + 500 * MS, ok.to_bytes());
    assert_eq!(one_sent(&mut ua).as_bytes(), ack.as_bytes());
    ua.handle_timeout(t0 + Duration::from_secs(40));
    feed(&mut ua, t0 + Duration::from_secs(41), ok.to_bytes());
    assert_eq!(one_sent(&mut ua).as_bytes(), ack.as_bytes());
    assert!(events(&mut ua).is_empty());

    let now = t0 + Duration::from_secs(42);
    ua.bye(now, call).unwrap();
    let bye = one_sent(&mut ua);
    assert_eq!(method(&bye), "BYE");
    assert_eq!(bye.cseq().unwrap().seq, inv.cseq().unwrap().seq + 1);
    assert_eq!(bye.to().unwrap().tag(), Some("callee"));
    assert_eq!(bye.from().unwrap().tag(), inv.from().unwrap().tag());
    feed(&mut ua, now, answer(&bye, 200, None, |b| b));
    assert_eq!(call_events(&events(&mut ua)), [CallEvent::Ended { remote: false }]);
    assert_eq!(ua.counts().1, 0);
}

#[test]
fn a_second_fork_answering_is_acked_and_byed() {
    let t0 = Instant::now();
    let (mut ua, call, inv, _) = established_call(t0);
    sent(&mut ua);
    events(&mut ua);
    let other = answer(&inv, 200, Some("fork2"), |b| {
        b.header(HeaderName::Contact, "<sip:3001@192.0.2.31:5090>").body("application/sdp", Bytes::from_static(SDP))
    });
    feed(&mut ua, t0 + 10 * MS, other.clone());
    let out = sent(&mut ua);
    assert_eq!(out.iter().map(method).collect::<Vec<_>>(), ["ACK", "BYE"]);
    for m in &out {
        assert_eq!(m.to().unwrap().tag(), Some("fork2"));
        assert_eq!(m.request_uri().unwrap().as_str(), "sip:3001@192.0.2.31:5090");
    }
    assert!(events(&mut ua).is_empty(), "the winning call is untouched");
    feed(&mut ua, t0 + 20 * MS, other);
    assert_eq!(sent(&mut ua).iter().map(method).collect::<Vec<_>>(), ["ACK"], "re-ACKed, not BYEd twice");
    assert_eq!(ua.calls.len(), 1);
    let _ = call;
}

#[test]
fn invite_challenged_by_a_proxy_is_retried_and_failures_keep_the_raw_response() {
    let t0 = Instant::now();
    let mut ua = new_ua();
    let call = ua.invite(t0, &account(), "sip:3001@pbx.example.com", Bytes::from_static(SDP), &[]).unwrap();
    let inv = one_sent(&mut ua);
    let challenge = "Digest realm=\"pbx.example.com\", nonce=\"pn\", qop=\"auth\", algorithm=SHA-256";
    feed(&mut ua, t0, answer(&inv, 407, Some("p"), |b| b.header(HeaderName::ProxyAuthenticate, challenge)));
    let out = sent(&mut ua);
    assert_eq!(out.iter().map(method).collect::<Vec<_>>(), ["ACK", "INVITE"]);
    assert_eq!(out[0].via().unwrap().branch, inv.via().unwrap().branch, "the 407 is ACKed in its transaction");
    let inv2 = &out[1];
    assert_eq!(inv2.call_id().unwrap(), inv.call_id().unwrap());
    assert_eq!(inv2.from().unwrap().tag(), inv.from().unwrap().tag());
    assert_eq!(inv2.cseq().unwrap().seq, inv.cseq().unwrap().seq + 1);
    let creds = inv2.proxy_authorization().next().unwrap().unwrap();
    assert_eq!(creds.algorithm().unwrap(), "SHA-256");
    assert!(verify(&creds, "INVITE", "secret"));
    assert!(call_events(&events(&mut ua)).is_empty(), "the challenge is not a failure");
    let busy = answer(inv2, 486, Some("b"), |b| b);
    feed(&mut ua, t0, busy.clone());
    assert_eq!(one_sent(&mut ua).cseq().unwrap().method, Method::Ack);
    assert_eq!(
        call_events(&events(&mut ua)),
        [CallEvent::Failed(Failure::Status { status: 486, reason: "Busy Here".into(), raw: busy })]
    );
    assert!(ua.calls.is_empty());
    let _ = call;
}

#[test]
fn cancel_waits_for_a_provisional_then_487_ends_the_call() {
    let t0 = Instant::now();
    let mut ua = new_ua();
    let call = ua.invite(t0, &account(), "sip:3001@pbx.example.com", Bytes::from_static(SDP), &[]).unwrap();
    let inv = one_sent(&mut ua);
    ua.cancel(t0, call).unwrap();
    assert!(sent(&mut ua).is_empty(), "no CANCEL before a provisional response (§9.1)");
    feed(&mut ua, t0 + MS, answer(&inv, 100, None, |b| b));
    let cancel = one_sent(&mut ua);
    feed(&mut ua, t0 + 2 * MS, answer(&inv, 180, Some("r"), |b| b));
    assert!(sent(&mut ua).is_empty(), "one CANCEL");
    assert_eq!(method(&cancel), "CANCEL");
    assert_eq!(cancel.via().unwrap().branch, inv.via().unwrap().branch);
    assert_eq!(cancel.cseq().unwrap().seq, inv.cseq().unwrap().seq);
    assert_eq!(cancel.to().unwrap().tag(), None);
    feed(&mut ua, t0 + 3 * MS, answer(&cancel, 200, Some("r"), |b| b));
    feed(&mut ua, t0 + 4 * MS, answer(&inv, 487, Some("r"), |b| b));
    assert_eq!(method(&one_sent(&mut ua)), "ACK");
    assert_eq!(
        call_events(&events(&mut ua)),
        [CallEvent::Trying, CallEvent::Ringing { sdp: None }, CallEvent::Ended { remote: false }]
    );
    assert!(ua.calls.is_empty());
}

#[test]
fn a_2xx_crossing_the_cancel_is_acked_and_byed() {
    let t0 = Instant::now();
    let mut ua = new_ua();
    let call = ua.invite(t0, &account(), "sip:3001@pbx.example.com", Bytes::from_static(SDP), &[]).unwrap();
    let inv = one_sent(&mut ua);
    feed(&mut ua, t0, answer(&inv, 180, Some("r"), |b| b));
    ua.cancel(t0, call).unwrap();
    assert_eq!(method(&one_sent(&mut ua)), "CANCEL");
    feed(&mut ua, t0, answer(&inv, 200, Some("r"), |b| b.header(HeaderName::Contact, "<sip:3001@192.0.2.30>")));
    assert_eq!(sent(&mut ua).iter().map(method).collect::<Vec<_>>(), ["ACK", "BYE"]);
    assert_eq!(call_events(&events(&mut ua)), [CallEvent::Ringing { sdp: None }]);
}

#[test]
fn cancel_without_final_response_gives_up_after_64_t1() {
    let t0 = Instant::now();
    let mut ua = new_ua();
    let call = ua.invite(t0, &account(), "sip:3001@pbx.example.com", Bytes::from_static(SDP), &[]).unwrap();
    let inv = one_sent(&mut ua);
    feed(&mut ua, t0, answer(&inv, 180, Some("r"), |b| b));
    ua.cancel(t0, call).unwrap();
    let cancel = one_sent(&mut ua);
    feed(&mut ua, t0, answer(&cancel, 200, Some("r"), |b| b));
    events(&mut ua);
    while let Some(at) = ua.poll_timeout() {
        ua.handle_timeout(at);
        sent(&mut ua);
        if !ua.calls.contains_key(&call) {
            assert_eq!(at - t0, Duration::from_secs(32));
            break;
        }
    }
    assert_eq!(call_events(&events(&mut ua)), [CallEvent::Ended { remote: false }]);
}

/// A user agent that gives outgoing calls up after 10 s without a final response.
fn ua_with_no_answer_timeout() -> UserAgent {
    let mut cfg = UaConfig::new(me());
    cfg.no_answer_timeout = Duration::from_secs(10);
    UserAgent::new(cfg)
}

/// Runs the user agent's timers up to `until`, returning what it sent.
fn run_timers(ua: &mut UserAgent, until: Instant) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(at) = ua.poll_timeout().filter(|at| *at <= until) {
        ua.handle_timeout(at);
        out.extend(sent(ua));
    }
    out
}

#[test]
fn a_call_ringing_past_the_no_answer_timeout_is_cancelled_and_fails() {
    let t0 = Instant::now();
    let mut ua = ua_with_no_answer_timeout();
    let call = ua.invite(t0, &account(), "sip:3001@pbx.example.com", Bytes::from_static(SDP), &[]).unwrap();
    let inv = one_sent(&mut ua);
    feed(&mut ua, t0 + MS, answer(&inv, 180, Some("r"), |b| b));
    assert!(run_timers(&mut ua, t0 + Duration::from_millis(9_999)).is_empty(), "nothing before 10 s");
    let out = run_timers(&mut ua, t0 + Duration::from_secs(10));
    assert_eq!(out.iter().map(method).collect::<Vec<_>>(), ["CANCEL"]);
    assert_eq!(out[0].via().unwrap().branch, inv.via().unwrap().branch);
    feed(&mut ua, t0 + Duration::from_secs(11), answer(&out[0], 200, Some("r"), |b| b));
    feed(&mut ua, t0 + Duration::from_secs(11), answer(&inv, 487, Some("r"), |b| b));
    assert_eq!(method(&one_sent(&mut ua)), "ACK");
    assert_eq!(
        call_events(&events(&mut ua)),
        [CallEvent::Ringing { sdp: None }, CallEvent::Failed(Failure::NoAnswer(Duration::from_secs(10)))]
    );
    assert!(!ua.calls.contains_key(&call));
}

#[test]
fn no_answer_before_any_provisional_cancels_at_the_first_one_or_ends_at_timer_b() {
    let t0 = Instant::now();
    // A provisional response after the deadline: the waiting CANCEL goes at once.
    let mut ua = ua_with_no_answer_timeout();
    ua.invite(t0, &account(), "sip:3001@pbx.example.com", Bytes::from_static(SDP), &[]).unwrap();
    let inv = one_sent(&mut ua);
    let retransmissions = run_timers(&mut ua, t0 + Duration::from_secs(10));
    assert!(retransmissions.iter().all(|m| method(m) == "INVITE"), "no CANCEL before a provisional (§9.1)");
    feed(&mut ua, t0 + Duration::from_secs(11), answer(&inv, 100, None, |b| b));
    let cancel = one_sent(&mut ua);
    assert_eq!(method(&cancel), "CANCEL");
    feed(&mut ua, t0 + Duration::from_secs(11), answer(&inv, 487, Some("r"), |b| b));
    assert_eq!(
        call_events(&events(&mut ua)),
        [CallEvent::Trying, CallEvent::Failed(Failure::NoAnswer(Duration::from_secs(10)))]
    );

    // Nothing at all: Timer B ends the INVITE at 64*T1, reported as no answer.
    let mut ua = ua_with_no_answer_timeout();
    let call = ua.invite(t0, &account(), "sip:3001@pbx.example.com", Bytes::from_static(SDP), &[]).unwrap();
    sent(&mut ua);
    run_timers(&mut ua, t0 + Duration::from_secs(40));
    assert!(!ua.calls.contains_key(&call));
    assert_eq!(call_events(&events(&mut ua)), [CallEvent::Failed(Failure::NoAnswer(Duration::from_secs(10)))]);
}

#[test]
fn an_answer_crossing_the_no_answer_cancel_is_byed_and_the_call_fails_once() {
    let t0 = Instant::now();
    let mut ua = ua_with_no_answer_timeout();
    let call = ua.invite(t0, &account(), "sip:3001@pbx.example.com", Bytes::from_static(SDP), &[]).unwrap();
    let inv = one_sent(&mut ua);
    feed(&mut ua, t0, answer(&inv, 180, Some("r"), |b| b));
    assert_eq!(run_timers(&mut ua, t0 + Duration::from_secs(10)).iter().map(method).collect::<Vec<_>>(), ["CANCEL"]);
    let ok = answer(&inv, 200, Some("r"), |b| b.header(HeaderName::Contact, "<sip:3001@192.0.2.30>"));
    feed(&mut ua, t0 + Duration::from_secs(10), ok);
    let out = sent(&mut ua);
    assert_eq!(out.iter().map(method).collect::<Vec<_>>(), ["ACK", "BYE"]);
    assert!(!ua.calls.contains_key(&call));
    assert_eq!(
        call_events(&events(&mut ua)),
        [CallEvent::Ringing { sdp: None }, CallEvent::Failed(Failure::NoAnswer(Duration::from_secs(10)))]
    );
    // The BYE's answer ends nothing more.
    feed(&mut ua, t0 + Duration::from_secs(11), answer(&out[1], 200, None, |b| b));
    assert!(call_events(&events(&mut ua)).is_empty());
}

#[test]
fn a_call_answered_in_time_is_not_cancelled_later() {
    let t0 = Instant::now();
    let mut ua = ua_with_no_answer_timeout();
    let call = ua.invite(t0, &account(), "sip:3001@pbx.example.com", Bytes::from_static(SDP), &[]).unwrap();
    let inv = one_sent(&mut ua);
    feed(&mut ua, t0, answer(&inv, 180, Some("r"), |b| b));
    let ok = answer(&inv, 200, Some("r"), |b| b.header(HeaderName::Contact, "<sip:3001@192.0.2.30>"));
    feed(&mut ua, t0 + Duration::from_secs(9), ok);
    assert_eq!(method(&one_sent(&mut ua)), "ACK");
    assert!(run_timers(&mut ua, t0 + Duration::from_secs(60)).is_empty());
    assert!(ua.calls.contains_key(&call));
    assert!(matches!(call_events(&events(&mut ua)).last(), Some(CallEvent::Established { .. })));
}

fn incoming_invite(branch: &str, body: &[u8]) -> Bytes {
    MessageBuilder::request(&Method::Invite, "sip:3000@192.0.2.10:5070")
        .header(HeaderName::Via, format!("SIP/2.0/UDP 192.0.2.20:5060;branch={branch};rport"))
        .header(HeaderName::RecordRoute, "<sip:192.0.2.20;lr>")
        .header(HeaderName::From, "\"Bob B\" <sip:3001@pbx.example.com>;tag=caller")
        .header(HeaderName::To, "<sip:3000@pbx.example.com>")
        .header(HeaderName::CallId, "incoming-1")
        .header(HeaderName::CSeq, "10 INVITE")
        .header(HeaderName::Contact, "<sip:3001@192.0.2.30:5080>")
        .header(HeaderName::MaxForwards, "69")
        .body("application/sdp", Bytes::copy_from_slice(body))
        .to_bytes()
        .unwrap()
}

fn in_dialog(method: &Method, cseq: u32, to_tag: &str, extra: impl FnOnce(MessageBuilder) -> MessageBuilder) -> Bytes {
    extra(
        MessageBuilder::request(method, "sip:3000@192.0.2.10:5070")
            .header(HeaderName::Via, format!("SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK{}{cseq}", method.as_str()))
            .header(HeaderName::From, "<sip:3001@pbx.example.com>;tag=caller")
            .header(HeaderName::To, format!("<sip:3000@pbx.example.com>;tag={to_tag}"))
            .header(HeaderName::CallId, "incoming-1")
            .header(HeaderName::CSeq, format!("{cseq} {method}"))
            .header(HeaderName::Contact, "<sip:3001@192.0.2.30:5080>"),
    )
    .to_bytes()
    .unwrap()
}

/// An incoming call answered; returns (ua, call, our To tag, the 200).
fn answered_incoming(t0: Instant) -> (UserAgent, CallId, String, Message) {
    let mut ua = new_ua();
    feed(&mut ua, t0, incoming_invite("z9hG4bKin1", SDP));
    let trying = one_sent(&mut ua);
    assert_eq!(trying.status().unwrap().as_u16(), 100);
    let ev = events(&mut ua);
    let UaEvent::IncomingCall(ic) = &ev[0] else { panic!("{ev:?}") };
    assert_eq!(ic.display_name.as_deref(), Some("Bob B"));
    assert_eq!(ic.from_uri, "sip:3001@pbx.example.com");
    assert_eq!(ic.sdp.as_deref(), Some(SDP));
    let call = ic.call;
    ua.provisional(t0, call, 180, None).unwrap();
    let ringing = one_sent(&mut ua);
    let tag = ringing.to().unwrap().tag().unwrap().to_owned();
    assert_eq!(ringing.record_routes().count(), 1, "Record-Route copied (§12.1.1)");
    ua.answer(t0 + MS, call, Bytes::from_static(SDP)).unwrap();
    let ok = one_sent(&mut ua);
    assert_eq!(ok.status().unwrap().as_u16(), 200);
    assert_eq!(ok.to().unwrap().tag(), Some(tag.as_str()));
    assert_eq!(ok.contacts().next().unwrap().unwrap().addr().unwrap().uri.as_str(), "sip:3000@192.0.2.10:5070");
    assert_eq!(ok.body(), SDP);
    (ua, call, tag, ok)
}

#[test]
fn incoming_call_2xx_is_retransmitted_until_the_ack() {
    let t0 = Instant::now();
    let (mut ua, call, tag, ok) = answered_incoming(t0);
    // T1, 2T1, 4T1 ... capped at T2.
    let mut at = Vec::new();
    for _ in 0..4 {
        let next = ua.poll_timeout().unwrap();
        ua.handle_timeout(next);
        assert_eq!(one_sent(&mut ua).as_bytes(), ok.as_bytes());
        at.push((next - t0 - MS).as_millis());
    }
    assert_eq!(at, [500, 1500, 3500, 7500]);
    // The INVITE retransmitted meanwhile is absorbed (Accepted, RFC 6026).
    feed(&mut ua, t0 + Duration::from_secs(8), incoming_invite("z9hG4bKin1", SDP));
    assert!(sent(&mut ua).is_empty());
    feed(&mut ua, t0 + Duration::from_secs(8), in_dialog(&Method::Ack, 10, &tag, |b| b));
    assert_eq!(call_events(&events(&mut ua)), [CallEvent::Established { sdp: None }]);
    ua.handle_timeout(t0 + Duration::from_secs(20));
    assert!(sent(&mut ua).is_empty(), "no more 2xx after the ACK");
    // The peer hangs up.
    feed(&mut ua, t0 + Duration::from_secs(21), in_dialog(&Method::Bye, 11, &tag, |b| b));
    let r = one_sent(&mut ua);
    assert_eq!(r.status().unwrap().as_u16(), 200);
    assert_eq!(call_events(&events(&mut ua)), [CallEvent::Ended { remote: true }]);
    assert!(!ua.calls.contains_key(&call));
}

#[test]
fn incoming_call_without_ack_is_byed_after_64_t1() {
    let t0 = Instant::now();
    let (mut ua, call, _, _) = answered_incoming(t0);
    let mut bye = None;
    while let Some(at) = ua.poll_timeout() {
        if at > t0 + Duration::from_secs(33) {
            break;
        }
        ua.handle_timeout(at);
        for m in sent(&mut ua) {
            if method(&m) == "BYE" && bye.is_none() {
                bye = Some((at, m));
            }
        }
    }
    let (at, bye) = bye.expect("a BYE");
    assert_eq!(at - t0 - MS, Duration::from_secs(32));
    assert_eq!(bye.request_uri().unwrap().as_str(), "sip:3001@192.0.2.30:5080");
    assert_eq!(bye.routes().next().unwrap().unwrap().uri.as_str(), "sip:192.0.2.20;lr");
    assert_eq!(call_events(&events(&mut ua)), [CallEvent::Failed(Failure::Timeout)]);
    assert!(!ua.calls.contains_key(&call));
}

#[test]
fn incoming_cancel_and_reject() {
    let t0 = Instant::now();
    let mut ua = new_ua();
    feed(&mut ua, t0, incoming_invite("z9hG4bKc1", SDP));
    sent(&mut ua);
    let UaEvent::IncomingCall(ic) = events(&mut ua).remove(0) else { panic!() };
    let cancel = MessageBuilder::request(&Method::Cancel, "sip:3000@192.0.2.10:5070")
        .header(HeaderName::Via, "SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKc1;rport")
        .header(HeaderName::From, "\"Bob B\" <sip:3001@pbx.example.com>;tag=caller")
        .header(HeaderName::To, "<sip:3000@pbx.example.com>")
        .header(HeaderName::CallId, "incoming-1")
        .header(HeaderName::CSeq, "10 CANCEL")
        .to_bytes()
        .unwrap();
    feed(&mut ua, t0, cancel);
    let out = sent(&mut ua);
    let codes: Vec<(u16, Method)> =
        out.iter().map(|m| (m.status().unwrap().as_u16(), m.cseq().unwrap().method)).collect();
    assert_eq!(codes, [(200, Method::Cancel), (487, Method::Invite)]);
    assert_eq!(out[0].to().unwrap().tag(), out[1].to().unwrap().tag(), "same To tag (§9.2)");
    assert_eq!(call_events(&events(&mut ua)), [CallEvent::Cancelled]);
    assert!(ua.answer(t0, ic.call, Bytes::new()).is_err());

    feed(&mut ua, t0, incoming_invite("z9hG4bKr1", SDP));
    sent(&mut ua);
    let UaEvent::IncomingCall(ic) = events(&mut ua).remove(0) else { panic!() };
    ua.reject(t0, ic.call, 403, None).unwrap();
    let r = one_sent(&mut ua);
    assert_eq!(r.status().unwrap().as_u16(), 403);
    assert_eq!(r.reason_phrase(), Some(&b"Forbidden"[..]));
    assert!(r.to().unwrap().tag().is_some());
    assert!(ua.calls.is_empty());
}

#[test]
fn options_malformed_and_unknown_dialogs() {
    let t0 = Instant::now();
    let mut ua = new_ua();
    let options = MessageBuilder::request(&Method::Options, "sip:3000@192.0.2.10:5070")
        .header(HeaderName::Via, "SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKo;rport")
        .header(HeaderName::From, "<sip:probe@h>;tag=p")
        .header(HeaderName::To, "<sip:3000@h>")
        .header(HeaderName::CallId, "opt")
        .header(HeaderName::CSeq, "1 OPTIONS")
        .to_bytes()
        .unwrap();
    let nat: SocketAddr = "203.0.113.7:40001".parse().unwrap();
    ua.handle_datagram(t0, nat, options).unwrap();
    let t = ua.poll_transmit().unwrap();
    assert_eq!(t.dst, nat, "rport: back to the source");
    let r = parse_datagram(t.bytes).unwrap();
    assert_eq!(r.status().unwrap().as_u16(), 200);
    assert!(r.header(HeaderName::Allow).unwrap().value().starts_with(b"INVITE, ACK, CANCEL, BYE"));
    let via = r.via().unwrap();
    assert_eq!(via.received, Some("203.0.113.7".parse().unwrap()));
    assert_eq!(via.rport, Some(crate::Rport::Port(40001)));

    // A request that fails to parse gets 400 with the reason; nothing panics.
    let bad = Bytes::from_static(
        b"INVITE sip:3000@h SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1;branch=z9hG4bKb\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:3000@h>\r\nCall-ID: b\r\nCSeq: 1 INVITE\r\nContent-Length: 9999\r\n\r\n",
    );
    assert!(ua.handle_datagram(t0, nat, bad).is_err());
    let r = parse_datagram(ua.poll_transmit().unwrap().bytes).unwrap();
    assert_eq!(r.status().unwrap().as_u16(), 400);
    assert!(ua.handle_datagram(t0, nat, Bytes::from_static(b"\x00\x01garbage")).is_err());
    assert!(ua.poll_transmit().is_none());
    ua.handle_datagram(t0, nat, Bytes::from_static(b"\r\n\r\n")).unwrap();

    // A BYE for a dialog we do not have: 481.
    ua.handle_datagram(t0, nat, in_dialog(&Method::Bye, 2, "nosuch", |b| b)).unwrap();
    assert_eq!(parse_datagram(ua.poll_transmit().unwrap().bytes).unwrap().status().unwrap().as_u16(), 481);
    // A stray response is dropped with an error for the log.
    let stray = Bytes::from_static(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKnone\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: x\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(matches!(ua.handle_datagram(t0, nat, stray), Err(UaError::Dropped { .. })));
    assert!(events(&mut ua).is_empty());
}

#[test]
fn a_datagram_over_the_size_limit_gets_513_and_is_dropped() {
    let t0 = Instant::now();
    let mut cfg = UaConfig::new(me());
    cfg.max_message_bytes = 1024;
    let mut ua = UserAgent::new(cfg);
    let options = |pad: usize| {
        MessageBuilder::request(&Method::Options, "sip:3000@192.0.2.10:5070")
            .header(HeaderName::Via, "SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKbig")
            .header(HeaderName::From, "<sip:probe@h>;tag=p")
            .header(HeaderName::To, "<sip:3000@h>")
            .header(HeaderName::CallId, "big")
            .header(HeaderName::CSeq, "1 OPTIONS")
            .body("text/plain", "x".repeat(pad))
            .to_bytes()
            .unwrap()
    };
    let peer: SocketAddr = "10.1.1.1:5060".parse().unwrap();
    let big = options(2000);
    assert!(big.len() > 1024);
    let err = ua.handle_datagram(t0, peer, big).unwrap_err();
    assert!(
        matches!(&err, UaError::Malformed { error: crate::ParseError::TooLarge { limit: 1024, .. }, .. }),
        "{err:?}"
    );
    let r = one_sent(&mut ua);
    assert_eq!(r.status().unwrap().as_u16(), 513);
    assert_eq!(r.reason_phrase(), Some(&b"Message Too Large"[..]));
    assert!(events(&mut ua).is_empty());

    // At the limit it is taken.
    // (Content-Length grows by digits, so find the padding that lands on 1024 exactly.)
    let fits = (0..1024).map(options).find(|m| m.len() == 1024).unwrap();
    ua.handle_datagram(t0, peer, fits).unwrap();
    assert_eq!(one_sent(&mut ua).status().unwrap().as_u16(), 200);
}

#[test]
fn in_dialog_requests_from_the_peer() {
    let t0 = Instant::now();
    let (mut ua, call, tag, _) = answered_incoming(t0);
    feed(&mut ua, t0, in_dialog(&Method::Ack, 10, &tag, |b| b));
    events(&mut ua);
    // INFO DTMF.
    feed(
        &mut ua,
        t0,
        in_dialog(&Method::Info, 11, &tag, |b| b.body("application/dtmf-relay", "Signal=7\r\nDuration=200\r\n")),
    );
    assert_eq!(one_sent(&mut ua).status().unwrap().as_u16(), 200);
    assert_eq!(call_events(&events(&mut ua)), [CallEvent::Dtmf { digit: '7', duration_ms: 200 }]);
    // Out of order CSeq: 500.
    feed(&mut ua, t0, in_dialog(&Method::Info, 5, &tag, |b| b));
    assert_eq!(one_sent(&mut ua).status().unwrap().as_u16(), 500);
    // Another remote tag is another dialog: 481, and the call goes on.
    let stranger = String::from_utf8(in_dialog(&Method::Bye, 30, &tag, |b| b).to_vec())
        .unwrap()
        .replace("tag=caller", "tag=other");
    feed(&mut ua, t0, Bytes::from(stranger));
    assert_eq!(one_sent(&mut ua).status().unwrap().as_u16(), 481);
    assert!(events(&mut ua).is_empty());
    // A hold re-INVITE, answered.
    let held = super::sdp::with_direction(SDP, Direction::SendOnly);
    feed(&mut ua, t0, in_dialog(&Method::Invite, 12, &tag, |b| b.body("application/sdp", held.clone())));
    assert_eq!(one_sent(&mut ua).status().unwrap().as_u16(), 100);
    assert_eq!(
        call_events(&events(&mut ua)),
        [CallEvent::IncomingReInvite { sdp: Some(held), direction: Direction::SendOnly, hold: true }]
    );
    // Our own re-INVITE now gets refused locally; a second one from the peer while its first
    // is not answered gets 500 with a Retry-After of 0-10 s (§14.2).
    assert!(ua.reinvite_hold(t0, call, SDP).is_err());
    feed(&mut ua, t0, in_dialog(&Method::Invite, 13, &tag, |b| b.body("application/sdp", Bytes::from_static(SDP))));
    let busy = one_sent(&mut ua);
    assert_eq!(busy.status().unwrap().as_u16(), 500);
    let after: u32 =
        std::str::from_utf8(busy.header(HeaderName::RetryAfter).unwrap().value()).unwrap().parse().unwrap();
    assert!(after <= 10);
    // The answer mirrors the hold offer: sendonly -> recvonly, whatever direction we pass.
    ua.answer(t0, call, Bytes::from_static(SDP)).unwrap();
    let ok = one_sent(&mut ua);
    assert_eq!(ok.cseq().unwrap().seq, 12);
    assert_eq!(super::sdp::direction(ok.body()), Direction::RecvOnly);
    feed(&mut ua, t0, in_dialog(&Method::Ack, 12, &tag, |b| b));
    assert!(call_events(&events(&mut ua)).is_empty(), "a re-INVITE's ACK is no news");
    // REFER: accepted by the application, progress reported by NOTIFY.
    feed(
        &mut ua,
        t0,
        in_dialog(&Method::Refer, 14, &tag, |b| b.header(HeaderName::ReferTo, "<sip:3002@pbx.example.com>")),
    );
    let ev = call_events(&events(&mut ua));
    let CallEvent::IncomingRefer { req, target, .. } = &ev[0] else { panic!("{ev:?}") };
    assert_eq!(target, "sip:3002@pbx.example.com");
    ua.respond(t0, *req, 202, None).unwrap();
    assert_eq!(one_sent(&mut ua).status().unwrap().as_u16(), 202);
    ua.notify_transfer(t0, call, 200, "OK").unwrap();
    let notify = one_sent(&mut ua);
    assert_eq!(notify.header(HeaderName::Event).unwrap().value(), b"refer;id=14");
    assert_eq!(notify.header(HeaderName::SubscriptionState).unwrap().value(), b"terminated;reason=noresource");
    assert_eq!(notify.body(), b"SIP/2.0 200 OK\r\n");
    assert_eq!(notify.request_uri().unwrap().as_str(), "sip:3001@192.0.2.30:5080");
    // An unanswered MESSAGE gets 480 after answer_timeout.
    feed(&mut ua, t0, in_dialog(&Method::Message, 15, &tag, |b| b.body("text/plain", "hi")));
    let ev = events(&mut ua);
    assert!(matches!(&ev[0], UaEvent::IncomingMessage(m) if m.call == Some(call) && &m.body[..] == b"hi"));
    ua.handle_timeout(t0 + Duration::from_secs(16));
    let msgs = sent(&mut ua);
    assert!(
        msgs.iter().any(|m| m.status().map(|s| s.as_u16()) == Some(480)),
        "{:?}",
        msgs.iter().map(text).collect::<Vec<_>>()
    );
}

#[test]
fn hold_unhold_refer_and_dtmf_as_uac() {
    let t0 = Instant::now();
    let (mut ua, call, _, _) = established_call(t0);
    sent(&mut ua);
    events(&mut ua);
    ua.reinvite_hold(t0, call, SDP).unwrap();
    let re = one_sent(&mut ua);
    assert_eq!(method(&re), "INVITE");
    assert_eq!(re.to().unwrap().tag(), Some("callee"));
    assert_eq!(super::sdp::direction(re.body()), Direction::SendOnly);
    let answer_sdp = super::sdp::with_direction(SDP, Direction::RecvOnly);
    feed(
        &mut ua,
        t0,
        answer(&re, 200, None, |b| {
            b.header(HeaderName::Contact, "<sip:3001@192.0.2.30:5080>").body("application/sdp", answer_sdp.clone())
        }),
    );
    let ack = one_sent(&mut ua);
    assert_eq!((method(&ack), ack.cseq().unwrap().seq), ("ACK", re.cseq().unwrap().seq));
    assert_eq!(call_events(&events(&mut ua)), [CallEvent::HoldResult { hold: true, result: Ok(Some(answer_sdp)) }]);
    ua.reinvite_unhold(t0, call, SDP).unwrap();
    let re2 = one_sent(&mut ua);
    assert_eq!(super::sdp::direction(re2.body()), Direction::SendRecv);
    // 491 (glare): retried after 2.1-4 s, as the owner of the Call-ID (§14.1), with the same
    // offer; the application hears only the outcome of the retry.
    let pending = answer(&re2, 491, None, |b| b);
    feed(&mut ua, t0, pending.clone());
    assert_eq!(method(&one_sent(&mut ua)), "ACK");
    assert!(call_events(&events(&mut ua)).is_empty());
    let at = ua.poll_timeout().unwrap();
    assert!(at >= t0 + Duration::from_millis(2100) && at <= t0 + Duration::from_secs(4), "{:?}", at - t0);
    ua.handle_timeout(at - MS);
    assert!(sent(&mut ua).is_empty(), "not before the delay");
    ua.handle_timeout(at);
    let re3 = one_sent(&mut ua);
    assert_eq!((method(&re3), re3.cseq().unwrap().seq), ("INVITE", re2.cseq().unwrap().seq + 1));
    assert_eq!(re3.body(), re2.body());
    // Refused with 491 three times more: reported.
    let mut last = re3;
    for i in 0..3 {
        let pending = answer(&last, 491, None, |b| b);
        feed(&mut ua, at, pending.clone());
        assert_eq!(method(&one_sent(&mut ua)), "ACK");
        if i == 2 {
            assert_eq!(
                call_events(&events(&mut ua)),
                [CallEvent::HoldResult {
                    hold: false,
                    result: Err(Failure::Status { status: 491, reason: "Request Pending".into(), raw: pending })
                }]
            );
            break;
        }
        let next = ua.poll_timeout().unwrap();
        ua.handle_timeout(next);
        last = one_sent(&mut ua);
        assert_eq!(method(&last), "INVITE");
    }
    ua.refer(t0, call, "sip:3002@pbx.example.com").unwrap();
    let refer = one_sent(&mut ua);
    assert_eq!(refer.header(HeaderName::ReferTo).unwrap().value(), b"<sip:3002@pbx.example.com>");
    feed(&mut ua, t0, answer(&refer, 202, None, |b| b));
    // The NOTIFYs come in the call's dialog.
    let notify = |seq: u32, frag: &'static str, state: &'static str| {
        MessageBuilder::request(&Method::Notify, "sip:3000@192.0.2.10:5070")
            .header(HeaderName::Via, format!("SIP/2.0/UDP 192.0.2.30:5080;branch=z9hG4bKn{seq}"))
            .header(HeaderName::From, "<sip:3001@pbx.example.com>;tag=callee")
            .header(
                HeaderName::To,
                format!("{};tag={}", "<sip:3000@pbx.example.com>", refer.from().unwrap().tag().unwrap()),
            )
            .header(HeaderName::CallId, refer.call_id().unwrap())
            .header(HeaderName::CSeq, format!("{seq} NOTIFY"))
            .header(HeaderName::Event, "refer")
            .header(HeaderName::SubscriptionState, state)
            .body("message/sipfrag;version=2.0", frag)
            .to_bytes()
            .unwrap()
    };
    feed(&mut ua, t0, notify(1, "SIP/2.0 100 Trying\r\n", "active;expires=60"));
    feed(&mut ua, t0, notify(2, "SIP/2.0 200 OK\r\n", "terminated;reason=noresource"));
    assert_eq!(sent(&mut ua).iter().map(|m| m.status().unwrap().as_u16()).collect::<Vec<_>>(), [200, 200]);
    let ev = call_events(&events(&mut ua));
    assert!(
        matches!(
            &ev[..],
            [
                CallEvent::TransferAccepted,
                CallEvent::TransferProgress { status: 100, terminated: false, .. },
                CallEvent::TransferProgress { status: 200, terminated: true, raw, .. },
            ] if raw.starts_with(b"NOTIFY ") && raw.ends_with(b"SIP/2.0 200 OK\r\n")
        ),
        "{ev:?}"
    );
    ua.info_dtmf(t0, call, '5').unwrap();
    let info = one_sent(&mut ua);
    assert_eq!(info.body(), b"Signal=5\r\nDuration=160\r\n");
    assert_eq!(info.header(HeaderName::ContentType).unwrap().value(), b"application/dtmf-relay");
    feed(&mut ua, t0, answer(&info, 481, None, |b| b));
    let ev = call_events(&events(&mut ua));
    assert!(matches!(ev[..], [CallEvent::DtmfResult(Err(_)), CallEvent::Ended { remote: true }]), "{ev:?}");
    assert!(ua.info_dtmf(t0, call, 'x').is_err());
}

#[test]
fn message_with_imdn_and_incoming_cpim() {
    let t0 = Instant::now();
    let mut ua = new_ua();
    let at = std::time::UNIX_EPOCH + Duration::from_secs(1_777_630_830);
    let id = ua
        .message(t0, &account(), "sip:3001@pbx.example.com", "text/plain", Bytes::from_static(b"Hello"), Some(at))
        .unwrap();
    let m = one_sent(&mut ua);
    assert_eq!(m.header(HeaderName::ContentType).unwrap().value(), b"message/cpim");
    let body = std::str::from_utf8(m.body()).unwrap();
    assert!(body.starts_with("From: <sip:3000@pbx.example.com>\r\nTo: <sip:3001@pbx.example.com>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: "), "{body}");
    assert!(body.ends_with("Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nHello"), "{body}");
    feed(&mut ua, t0, answer(&m, 202, Some("m"), |b| b));
    assert_eq!(events(&mut ua), [UaEvent::MessageResult { msg: id, result: Ok(202) }]);

    let id2 =
        ua.message(t0, &account(), "sip:3001@pbx.example.com", "text/plain", Bytes::from_static(b"x"), None).unwrap();
    let m2 = one_sent(&mut ua);
    assert_eq!(m2.body(), b"x");
    let nf = answer(&m2, 404, Some("m"), |b| b);
    feed(&mut ua, t0, nf.clone());
    assert_eq!(
        events(&mut ua),
        [UaEvent::MessageResult {
            msg: id2,
            result: Err(Failure::Status { status: 404, reason: "Not Found".into(), raw: nf })
        }]
    );

    let cpim = super::message::cpim_with_imdn("sip:3001@h", "sip:3000@h", "abc", at, "text/plain", b"Hi there");
    let incoming = MessageBuilder::request(&Method::Message, "sip:3000@192.0.2.10:5070")
        .header(HeaderName::Via, "SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKm1")
        .header(HeaderName::From, "<sip:3001@h>;tag=f")
        .header(HeaderName::To, "<sip:3000@h>")
        .header(HeaderName::CallId, "m1")
        .header(HeaderName::CSeq, "1 MESSAGE")
        .body("message/cpim", cpim)
        .to_bytes()
        .unwrap();
    feed(&mut ua, t0, incoming);
    let ev = events(&mut ua);
    let UaEvent::IncomingMessage(im) = &ev[0] else { panic!("{ev:?}") };
    assert_eq!(im.content_type, "text/plain");
    assert_eq!(&im.body[..], b"Hi there");
    assert_eq!(im.cpim.as_ref().unwrap().message_id.as_deref(), Some("abc"));
    ua.respond(t0, im.req, 403, None).unwrap();
    let r = one_sent(&mut ua);
    assert_eq!(r.status().unwrap().as_u16(), 403);
    assert!(r.to().unwrap().tag().is_some());
    assert!(ua.respond(t0, im.req, 200, None).is_err(), "answered once");
}

#[test]
fn message_under_the_callers_imdn_id_and_a_delivery_notification_back() {
    let t0 = Instant::now();
    let mut ua = new_ua();
    let at = std::time::UNIX_EPOCH + Duration::from_secs(1_777_630_830);
    let to = "sip:3001@pbx.example.com";
    let body = Bytes::from_static(b"Hi");
    assert!(ua.message_imdn(t0, &account(), to, "text/plain", body.clone(), at, "bad id\r\n").is_err());
    assert!(ua.poll_transmit().is_none(), "nothing sent for a bad id");
    ua.message_imdn(t0, &account(), to, "text/plain", body, at, "cg-42").unwrap();
    let m = one_sent(&mut ua);
    let text = std::str::from_utf8(m.body()).unwrap();
    assert!(text.contains("\r\nimdn.Message-ID: cg-42\r\n"), "{text}");

    let id = ua
        .send_imdn(t0, &account(), to, "abc", Some("2026-05-01T10:20:30Z"), super::ImdnStatus::Delivered, at)
        .unwrap();
    let n = one_sent(&mut ua);
    assert_eq!(n.header(HeaderName::ContentType).unwrap().value(), b"message/cpim");
    let (info, ct, inner) = super::message::parse_cpim(&n.body_bytes()).unwrap().unwrap();
    assert_eq!(ct, "message/imdn+xml");
    assert_eq!(info.from.as_deref(), Some("<sip:3000@pbx.example.com>"));
    assert_eq!(info.to.as_deref(), Some("<sip:3001@pbx.example.com>"));
    assert!(info.message_id.is_some_and(|m| m != "abc"), "a fresh Message-ID of its own");
    assert!(std::str::from_utf8(n.body()).unwrap().contains("Content-Disposition: notification\r\n"));
    let doc = super::parse_imdn(&inner).unwrap();
    assert_eq!((doc.message_id.as_str(), doc.status), ("abc", super::ImdnStatus::Delivered));
    assert!(std::str::from_utf8(&inner).unwrap().contains("<datetime>2026-05-01T10:20:30Z</datetime>"));
    feed(&mut ua, t0, answer(&n, 200, Some("m"), |b| b));
    assert_eq!(events(&mut ua), [UaEvent::MessageResult { msg: id, result: Ok(200) }]);
}

#[test]
fn subscribe_with_a_body_keeps_it_in_refreshes_not_in_the_unsubscribe() {
    let t0 = Instant::now();
    let mut ua = new_ua();
    let body = Some(("application/simple-filter+xml".to_string(), Bytes::from_static(b"<filter-set/>")));
    assert!(ua
        .subscribe_with_body(
            t0,
            &account(),
            "sip:3001@pbx.example.com",
            "presence",
            600,
            None,
            Some(("a\r\nX: y".into(), Bytes::new()))
        )
        .is_err());
    let sub = ua.subscribe_with_body(t0, &account(), "sip:3001@pbx.example.com", "presence", 600, None, body).unwrap();
    let s = one_sent(&mut ua);
    assert_eq!(s.header(HeaderName::ContentType).unwrap().value(), b"application/simple-filter+xml");
    assert_eq!(s.body(), b"<filter-set/>");
    feed(
        &mut ua,
        t0,
        answer(&s, 200, Some("notifier"), |b| {
            b.header(HeaderName::Expires, "600").header(HeaderName::Contact, "<sip:3001@192.0.2.30:5080>")
        }),
    );
    assert_eq!(events(&mut ua), [UaEvent::Subscription { sub, event: SubEvent::Accepted { expires: 600 } }]);
    ua.handle_timeout(t0 + Duration::from_secs(540));
    let refresh = one_sent(&mut ua);
    assert_eq!(refresh.body(), b"<filter-set/>");
    feed(
        &mut ua,
        t0 + Duration::from_secs(540),
        answer(&refresh, 200, Some("notifier"), |b| b.header(HeaderName::Expires, "600")),
    );
    let _ = events(&mut ua);
    ua.unsubscribe(t0 + Duration::from_secs(541), sub).unwrap();
    let un = one_sent(&mut ua);
    assert_eq!(un.header(HeaderName::Expires).unwrap().value(), b"0");
    assert!(un.body().is_empty(), "no body in the un-SUBSCRIBE");
}

#[test]
fn subscribe_notify_before_2xx_and_unsubscribe() {
    let t0 = Instant::now();
    let mut ua = new_ua();
    let sub = ua
        .subscribe(t0, &account(), "sip:3001@pbx.example.com", "presence", 600, Some("application/pidf+xml"))
        .unwrap();
    let s = one_sent(&mut ua);
    assert_eq!(s.header(HeaderName::Event).unwrap().value(), b"presence");
    let local_tag = s.from().unwrap().tag().unwrap().to_owned();
    let notify = |seq: u32, state: &str| {
        MessageBuilder::request(&Method::Notify, "sip:3000@192.0.2.10:5070")
            .header(HeaderName::Via, format!("SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKsn{seq}"))
            .header(HeaderName::From, "<sip:3001@pbx.example.com>;tag=notifier")
            .header(HeaderName::To, format!("<sip:3000@pbx.example.com>;tag={local_tag}"))
            .header(HeaderName::CallId, s.call_id().unwrap())
            .header(HeaderName::CSeq, format!("{seq} NOTIFY"))
            .header(HeaderName::Contact, "<sip:3001@192.0.2.30:5080>")
            .header(HeaderName::Event, "presence")
            .header(HeaderName::SubscriptionState, state)
            .body("application/pidf+xml", "<presence/>")
            .to_bytes()
            .unwrap()
    };
    feed(&mut ua, t0, notify(1, "active;expires=600"));
    assert_eq!(one_sent(&mut ua).status().unwrap().as_u16(), 200);
    feed(
        &mut ua,
        t0,
        answer(&s, 200, Some("notifier"), |b| {
            b.header(HeaderName::Expires, "600").header(HeaderName::Contact, "<sip:3001@192.0.2.30:5080>")
        }),
    );
    let ev = events(&mut ua);
    assert!(
        matches!(&ev[0], UaEvent::Subscription { event: SubEvent::Notify { state, .. }, .. } if state == "active;expires=600")
    );
    assert_eq!(ev[1], UaEvent::Subscription { sub, event: SubEvent::Accepted { expires: 600 } });
    // Refresh at 540 s (90 %), in the dialog.
    ua.handle_timeout(t0 + Duration::from_secs(540));
    let refresh = one_sent(&mut ua);
    assert_eq!(refresh.to().unwrap().tag(), Some("notifier"));
    assert_eq!(refresh.request_uri().unwrap().as_str(), "sip:3001@192.0.2.30:5080");
    let now = t0 + Duration::from_secs(541);
    feed(&mut ua, now, answer(&refresh, 200, None, |b| b.header(HeaderName::Expires, "600")));
    ua.unsubscribe(now, sub).unwrap();
    let un = one_sent(&mut ua);
    assert_eq!(un.header(HeaderName::Expires).unwrap().value(), b"0");
    feed(&mut ua, now, answer(&un, 200, None, |b| b));
    feed(&mut ua, now, notify(2, "terminated;reason=timeout"));
    let ev = events(&mut ua);
    assert_eq!(
        ev.last(),
        Some(&UaEvent::Subscription { sub, event: SubEvent::Terminated { reason: Some("timeout".into()) } })
    );
    assert_eq!(ua.counts().3, 0);
}

#[test]
fn strict_route_and_tcp_transport_errors() {
    let t0 = Instant::now();
    let mut ua = UserAgent::new(UaConfig { tcp_addr: Some("192.0.2.10:5071".parse().unwrap()), ..UaConfig::new(me()) });
    let mut a = account();
    a.transport = Transport::Tcp;
    let call = ua.invite(t0, &a, "sip:3001@pbx.example.com", Bytes::from_static(SDP), &[]).unwrap();
    let t = ua.poll_transmit().unwrap();
    assert_eq!(t.transport, Transport::Tcp);
    let inv = parse_datagram(t.bytes).unwrap();
    assert_eq!(inv.via().unwrap().transport, "TCP");
    assert!(text(&inv).contains("Contact: <sip:3000@192.0.2.10:5071;transport=tcp>"));
    // A strict router in the route set: the request goes to it, with the target as last Route.
    let ok = answer(&inv, 200, Some("s"), |b| {
        b.header(HeaderName::RecordRoute, "<sip:192.0.2.21>").header(HeaderName::Contact, "<sip:3001@192.0.2.30:5080>")
    });
    ua.handle_stream_message(t0, pbx(), crate::Framed::Message(parse_datagram(ok).unwrap())).unwrap();
    let ack = ua.poll_transmit().unwrap();
    assert_eq!(ack.dst, "192.0.2.21:5060".parse().unwrap());
    let ack = parse_datagram(ack.bytes).unwrap();
    assert_eq!(ack.request_uri().unwrap().as_str(), "sip:192.0.2.21");
    assert_eq!(ack.routes().last().unwrap().unwrap().uri.as_str(), "sip:3001@192.0.2.30:5080");
    events(&mut ua);
    ua.bye(t0, call).unwrap();
    let bye = ua.poll_transmit().unwrap();
    ua.handle_transport_error(t0, bye.dst, Transport::Tcp);
    assert_eq!(call_events(&events(&mut ua)), [CallEvent::Ended { remote: false }]);
    assert_eq!(ua.counts().1, 0);
    // The INVITE transaction waits out Timer M (64*T1, RFC 6026) even on TCP.
    ua.handle_timeout(t0 + Duration::from_secs(32));
    assert_eq!(ua.counts(), (0, 0, 0, 0));
}

#[test]
fn session_refreshes_are_answered_alone_and_required_extensions_refused() {
    let t0 = Instant::now();
    let (mut ua, call, tag, ok) = answered_incoming(t0);
    feed(&mut ua, t0, in_dialog(&Method::Ack, 10, &tag, |b| b));
    events(&mut ua);
    // An offer-less re-INVITE (RFC 4028 refresh): our last SDP goes in the 200, no event.
    feed(&mut ua, t0, in_dialog(&Method::Invite, 11, &tag, |b| b));
    let out = sent(&mut ua);
    assert_eq!(out.iter().map(|m| m.status().unwrap().as_u16()).collect::<Vec<_>>(), [100, 200]);
    assert_eq!(out[1].body(), ok.body());
    feed(&mut ua, t0, in_dialog(&Method::Ack, 11, &tag, |b| b));
    // The same offer as the INVITE's again: also a refresh.
    feed(&mut ua, t0, in_dialog(&Method::Invite, 12, &tag, |b| b.body("application/sdp", Bytes::from_static(SDP))));
    let out = sent(&mut ua);
    assert_eq!(out[1].status().unwrap().as_u16(), 200);
    assert_eq!(out[1].body(), ok.body(), "unchanged answer, unchanged o= version");
    feed(&mut ua, t0, in_dialog(&Method::Ack, 12, &tag, |b| b));
    assert!(events(&mut ua).is_empty(), "refreshes are not news: {:?}", events(&mut ua));
    // A request that requires an extension we lack: 420 with Unsupported.
    feed(&mut ua, t0, in_dialog(&Method::Info, 13, &tag, |b| b.header(HeaderName::Require, "foo, 100rel")));
    let r = one_sent(&mut ua);
    assert_eq!(r.status().unwrap().as_u16(), 420);
    assert_eq!(r.header(HeaderName::Unsupported).unwrap().value(), b"foo, 100rel");
    let _ = call;
}

/// Mutated copies of real messages (requests, responses, in and out of dialogs) thrown at a
/// user agent with calls, a registration and a subscription live: errors, never panics.
#[test]
fn mutated_messages_never_panic() {
    let t0 = Instant::now();
    let (mut ua, call, tag, ok) = answered_incoming(t0);
    let mut seeds: Vec<Bytes> = vec![
        incoming_invite("z9hG4bKfz", SDP),
        in_dialog(&Method::Ack, 10, &tag, |b| b),
        in_dialog(&Method::Bye, 20, &tag, |b| b),
        in_dialog(&Method::Invite, 21, &tag, |b| b.body("application/sdp", Bytes::from_static(SDP))),
        in_dialog(&Method::Refer, 22, &tag, |b| b.header(HeaderName::ReferTo, "<sip:x@y>")),
        in_dialog(&Method::Notify, 23, &tag, |b| {
            b.header(HeaderName::Event, "refer").body("message/sipfrag", "SIP/2.0 200 OK")
        }),
        in_dialog(&Method::Info, 24, &tag, |b| b.body("application/dtmf-relay", "Signal=1\r\nDuration=100")),
        ok.to_bytes(),
    ];
    let out = ua.invite(t0, &account(), "sip:3001@pbx.example.com", Bytes::from_static(SDP), &[]).unwrap();
    let inv = one_sent(&mut ua);
    seeds.push(answer(&inv, 180, Some("x"), |b| b.header(HeaderName::Contact, "<sip:a@192.0.2.5>")));
    seeds.push(answer(&inv, 200, Some("x"), |b| {
        b.header(HeaderName::Contact, "<sip:a@192.0.2.5>").header(HeaderName::RecordRoute, "<sip:p;lr>")
    }));
    seeds.push(answer(&inv, 401, Some("x"), |b| b.header(HeaderName::WwwAuthenticate, challenge_md5("n", false))));
    ua.register(t0, account()).unwrap();
    let reg = one_sent(&mut ua);
    seeds
        .push(answer(&reg, 200, Some("r"), |b| b.header(HeaderName::Contact, "<sip:3000@192.0.2.10:5070>;expires=60")));
    ua.subscribe(t0, &account(), "sip:3001@pbx.example.com", "presence", 60, None).unwrap();
    sent(&mut ua);
    let mut rng = super::rng::Rng::new(7);
    let mut now = t0;
    for i in 0..20_000u32 {
        let base = &seeds[(rng.next_u64() % seeds.len() as u64) as usize];
        let mut b = base.to_vec();
        for _ in 0..1 + rng.next_u64() % 4 {
            if b.is_empty() {
                break;
            }
            let at = (rng.next_u64() % b.len() as u64) as usize;
            match rng.next_u64() % 4 {
                0 => b[at] = (rng.next_u64() & 0xff) as u8,
                1 => {
                    b.remove(at);
                }
                2 => b.insert(at, b": ;,<>\"\r\n"[(rng.next_u64() % 9) as usize]),
                _ => b.truncate(at),
            }
        }
        let _ = ua.handle_datagram(now, pbx(), Bytes::from(b));
        if i % 100 == 0 {
            now += Duration::from_millis(300);
            ua.handle_timeout(now);
        }
        while ua.poll_transmit().is_some() {}
        while ua.poll_event().is_some() {}
    }
    let _ = (call, out);
}

// ----- issue 14: bodies with lengths from the wire, and who gets our credentials -----------------

fn cpim_message(branch: &str, inner_length: &str) -> Bytes {
    let cpim = format!(
        "From: <sip:3001@h>\r\nTo: <sip:3000@h>\r\n\r\nContent-Type: text/plain\r\nContent-Length: {inner_length}\r\n\r\nHello"
    );
    MessageBuilder::request(&Method::Message, "sip:3000@192.0.2.10:5070")
        .header(HeaderName::Via, format!("SIP/2.0/UDP 192.0.2.20:5060;branch={branch}"))
        .header(HeaderName::From, "<sip:3001@h>;tag=f")
        .header(HeaderName::To, "<sip:3000@h>")
        .header(HeaderName::CallId, branch)
        .header(HeaderName::CSeq, "1 MESSAGE")
        .body("message/cpim", Bytes::from(cpim))
        .to_bytes()
        .unwrap()
}

/// Issue 14 item 1: a CPIM inner Content-Length of 2^64-1 panicked the driver (`start + l`).
/// It is answered `400 Bad CPIM Body` with the reason in a Warning, reported for the log, and
/// the user agent goes on (OPTIONS, a good CPIM MESSAGE).
#[test]
fn cpim_with_an_impossible_content_length_is_refused_with_400() {
    let t0 = Instant::now();
    let mut ua = new_ua();
    for (i, len) in ["18446744073709551615", "18446744073709551611", "6", "1e3"].into_iter().enumerate() {
        let r = ua.handle_datagram(t0, pbx(), cpim_message(&format!("z9hG4bKcpim{i}"), len));
        assert!(matches!(&r, Err(UaError::BadBody { from, .. }) if *from == pbx()), "{len}: {r:?}");
        let resp = one_sent(&mut ua);
        assert_eq!(resp.status().unwrap().as_u16(), 400, "{}", text(&resp));
        assert_eq!(resp.reason_phrase(), Some(&b"Bad CPIM Body"[..]));
        let warning = String::from_utf8_lossy(resp.header(HeaderName::Warning).unwrap().value()).into_owned();
        assert!(warning.starts_with("399 192.0.2.10:5070 \"CPIM Content-Length"), "{warning}");
        assert!(events(&mut ua).is_empty(), "nothing reaches the application");
    }
    let options = MessageBuilder::request(&Method::Options, "sip:3000@192.0.2.10:5070")
        .header(HeaderName::Via, "SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKo")
        .header(HeaderName::From, "<sip:probe@h>;tag=p")
        .header(HeaderName::To, "<sip:3000@h>")
        .header(HeaderName::CallId, "opt")
        .header(HeaderName::CSeq, "1 OPTIONS")
        .to_bytes()
        .unwrap();
    feed(&mut ua, t0, options);
    assert_eq!(one_sent(&mut ua).status().unwrap().as_u16(), 200);
    feed(&mut ua, t0, cpim_message("z9hG4bKgood", "5"));
    let ev = events(&mut ua);
    let [UaEvent::IncomingMessage(im)] = &ev[..] else { panic!("{ev:?}") };
    assert_eq!(&im.body[..], b"Hello");
}

fn challenge_for(realm: &str, nonce: &str) -> String {
    format!("Digest realm=\"{realm}\", nonce=\"{nonce}\", qop=\"auth\", algorithm=MD5")
}

/// Issue 14 item 9: inside a dialog, a 401/407 is answered only when it comes from the
/// account's next hop and names the account's realm; otherwise the request fails with it.
#[test]
fn in_dialog_challenges_are_answered_only_from_the_next_hop_for_the_accounts_realm() {
    let t0 = Instant::now();
    let (mut ua, call, _, _) = established_call(t0);
    sent(&mut ua);
    events(&mut ua);
    let callee: SocketAddr = "192.0.2.30:5080".parse().unwrap();

    // The callee itself (not our proxy) challenges our re-INVITE: no credentials.
    ua.reinvite_hold(t0, call, SDP).unwrap();
    let re = one_sent(&mut ua);
    let c401 = answer(&re, 401, None, |b| b.header(HeaderName::WwwAuthenticate, challenge_for("pbx.example.com", "x")));
    let r = ua.handle_datagram(t0, callee, c401.clone());
    assert!(
        matches!(&r, Err(UaError::ChallengeRefused { from, why: "not from the account's next hop", .. }) if *from == callee),
        "{r:?}"
    );
    let out = sent(&mut ua);
    assert_eq!(out.iter().map(method).collect::<Vec<_>>(), ["ACK"], "ACKed, not answered");
    assert!(out[0].authorization().next().is_none());
    assert_eq!(
        call_events(&events(&mut ua)),
        [CallEvent::HoldResult {
            hold: true,
            result: Err(Failure::Status { status: 401, reason: "Unauthorized".into(), raw: c401 })
        }]
    );

    // The proxy relays a challenge for another realm (the callee's): no credentials either.
    ua.info_dtmf(t0, call, '5').unwrap();
    let info = one_sent(&mut ua);
    let c407 =
        answer(&info, 407, None, |b| b.header(HeaderName::ProxyAuthenticate, challenge_for("callee.example", "y")));
    let r = ua.handle_datagram(t0, pbx(), c407);
    assert!(matches!(&r, Err(UaError::ChallengeRefused { why: "not the account's realm", .. })), "{r:?}");
    assert!(sent(&mut ua).is_empty(), "no INFO with credentials");
    assert!(matches!(&call_events(&events(&mut ua))[..], [CallEvent::DtmfResult(Err(f))] if f.status() == Some(407)));

    // The proxy, for the account's domain: answered as before.
    ua.info_dtmf(t0, call, '6').unwrap();
    let info = one_sent(&mut ua);
    feed(
        &mut ua,
        t0,
        answer(&info, 407, None, |b| b.header(HeaderName::ProxyAuthenticate, challenge_for("pbx.example.com", "z"))),
    );
    let retry = one_sent(&mut ua);
    assert_eq!(method(&retry), "INFO");
    assert!(verify(&retry.proxy_authorization().next().unwrap().unwrap(), "INFO", "secret"));
    assert!(events(&mut ua).is_empty());
}

/// The realm learned when the registration was challenged is the account's: a call of the
/// same account through the same next hop answers it; from another address, or without that
/// registration, it is refused.
#[test]
fn the_realm_is_learned_at_register_and_answered_only_from_the_next_hop() {
    let t0 = Instant::now();
    let mut ua = new_ua();
    // A call before any registration: the PBX's realm is not the domain.
    let early = ua.invite(t0, &account(), "sip:3001@pbx.example.com", Bytes::from_static(SDP), &[]).unwrap();
    let inv = one_sent(&mut ua);
    let c = answer(&inv, 407, Some("p"), |b| b.header(HeaderName::ProxyAuthenticate, challenge_for("asterisk", "a")));
    assert!(matches!(ua.handle_datagram(t0, pbx(), c), Err(UaError::ChallengeRefused { .. })));
    assert_eq!(sent(&mut ua).iter().map(method).collect::<Vec<_>>(), ["ACK"]);
    assert!(matches!(&call_events(&events(&mut ua))[..], [CallEvent::Failed(f)] if f.status() == Some(407)));
    let _ = early;

    // The registrar's challenge teaches the realm.
    let reg = ua.register(t0, account()).unwrap();
    let r1 = one_sent(&mut ua);
    feed(
        &mut ua,
        t0,
        answer(&r1, 401, Some("r"), |b| b.header(HeaderName::WwwAuthenticate, challenge_for("asterisk", "n1"))),
    );
    let r2 = one_sent(&mut ua);
    assert!(verify(&r2.authorization().next().unwrap().unwrap(), "REGISTER", "secret"));
    feed(&mut ua, t0, answer(&r2, 200, Some("r"), |b| b.header(HeaderName::Expires, "3600")));
    assert!(matches!(&events(&mut ua)[..], [UaEvent::Registration { reg: r, .. }] if *r == reg));

    ua.invite(t0, &account(), "sip:3001@pbx.example.com", Bytes::from_static(SDP), &[]).unwrap();
    let inv = one_sent(&mut ua);
    feed(
        &mut ua,
        t0,
        answer(&inv, 407, Some("p"), |b| b.header(HeaderName::ProxyAuthenticate, challenge_for("asterisk", "n2"))),
    );
    let out = sent(&mut ua);
    assert_eq!(out.iter().map(method).collect::<Vec<_>>(), ["ACK", "INVITE"]);
    assert!(verify(&out[1].proxy_authorization().next().unwrap().unwrap(), "INVITE", "secret"));

    // The same challenge from elsewhere is refused.
    ua.invite(t0, &account(), "sip:3002@pbx.example.com", Bytes::from_static(SDP), &[]).unwrap();
    let inv = one_sent(&mut ua);
    let elsewhere: SocketAddr = "198.51.100.9:5060".parse().unwrap();
    let c = answer(&inv, 407, Some("p"), |b| b.header(HeaderName::ProxyAuthenticate, challenge_for("asterisk", "n3")));
    let r = ua.handle_datagram(t0, elsewhere, c);
    assert!(matches!(&r, Err(UaError::ChallengeRefused { from, .. }) if *from == elsewhere), "{r:?}");
    assert_eq!(sent(&mut ua).iter().map(method).collect::<Vec<_>>(), ["ACK"]);
}

/// A realm the node is configured to answer (`UaConfig::digest_realms`, `[sip] digest_realms`):
/// an INVITE of an account that never registered, challenged by its next hop with that realm,
/// is answered; a realm not configured is refused, and the 407 does not teach it.
#[test]
fn configured_digest_realms_are_answered_without_a_registration() {
    let t0 = Instant::now();
    let mut ua = UserAgent::new(UaConfig { digest_realms: vec!["asterisk".into()], ..UaConfig::new(me()) });
    ua.invite(t0, &account(), "sip:3001@pbx.example.com", Bytes::from_static(SDP), &[]).unwrap();
    let inv = one_sent(&mut ua);
    feed(
        &mut ua,
        t0,
        answer(&inv, 407, Some("p"), |b| b.header(HeaderName::ProxyAuthenticate, challenge_for("asterisk", "a1"))),
    );
    let out = sent(&mut ua);
    assert_eq!(out.iter().map(method).collect::<Vec<_>>(), ["ACK", "INVITE"]);
    assert!(verify(&out[1].proxy_authorization().next().unwrap().unwrap(), "INVITE", "secret"));
    assert!(events(&mut ua).is_empty());

    for _ in 0..2 {
        // Another realm is refused, also when asked again (an INVITE's 407 teaches nothing).
        ua.invite(t0, &account(), "sip:3002@pbx.example.com", Bytes::from_static(SDP), &[]).unwrap();
        let inv = one_sent(&mut ua);
        let c = answer(&inv, 407, Some("p"), |b| b.header(HeaderName::ProxyAuthenticate, challenge_for("other", "b")));
        let r = ua.handle_datagram(t0, pbx(), c);
        assert!(matches!(&r, Err(UaError::ChallengeRefused { why: "not the account's realm", .. })), "{r:?}");
        assert_eq!(sent(&mut ua).iter().map(method).collect::<Vec<_>>(), ["ACK"]);
        assert!(matches!(&call_events(&events(&mut ua))[..], [CallEvent::Failed(f)] if f.status() == Some(407)));
    }

    // The configured realm from another address than the next hop: refused.
    ua.invite(t0, &account(), "sip:3003@pbx.example.com", Bytes::from_static(SDP), &[]).unwrap();
    let inv = one_sent(&mut ua);
    let elsewhere: SocketAddr = "198.51.100.9:5060".parse().unwrap();
    let c = answer(&inv, 407, Some("p"), |b| b.header(HeaderName::ProxyAuthenticate, challenge_for("asterisk", "a2")));
    let r = ua.handle_datagram(t0, elsewhere, c);
    assert!(matches!(&r, Err(UaError::ChallengeRefused { why: "not from the account's next hop", .. })), "{r:?}");
}

/// The peer's offers inside a call (issue 10 item 3): UPDATE with and without SDP, glare with
/// our re-INVITE, an offer-less re-INVITE whose answer comes in the ACK.
#[test]
fn peer_updates_glare_and_offerless_reinvites() {
    let t0 = Instant::now();
    let (mut ua, call, tag, ok) = answered_incoming(t0);
    assert!(ok.header(HeaderName::Allow).unwrap().value().ends_with(b"UPDATE"));
    assert_eq!(ok.header(HeaderName::Supported).unwrap().value(), b"timer");
    feed(&mut ua, t0, in_dialog(&Method::Ack, 10, &tag, |b| b));
    events(&mut ua);
    // UPDATE with an inactive offer: the application answers, the 200 says inactive too.
    let inactive = super::sdp::with_direction(SDP, Direction::Inactive);
    feed(&mut ua, t0, in_dialog(&Method::Update, 11, &tag, |b| b.body("application/sdp", inactive.clone())));
    assert!(sent(&mut ua).is_empty(), "no 100 to a non-INVITE");
    assert_eq!(
        call_events(&events(&mut ua)),
        [CallEvent::IncomingReInvite { sdp: Some(inactive), direction: Direction::Inactive, hold: true }]
    );
    ua.answer(t0, call, Bytes::from_static(SDP)).unwrap();
    let r = one_sent(&mut ua);
    assert_eq!((r.status().unwrap().as_u16(), r.cseq().unwrap().method.as_str()), (200, "UPDATE"));
    assert_eq!(super::sdp::direction(r.body()), Direction::Inactive);
    assert_eq!(super::sdp::origin_version(r.body()), Some(2), "a changed answer bumps o=");
    ua.handle_timeout(t0 + Duration::from_secs(1));
    assert!(sent(&mut ua).is_empty(), "a 2xx to UPDATE is not retransmitted by the core");
    // UPDATE without a body: a refresh, answered 200 without one, no event.
    feed(&mut ua, t0, in_dialog(&Method::Update, 12, &tag, |b| b));
    let r = one_sent(&mut ua);
    assert_eq!(r.status().unwrap().as_u16(), 200);
    assert!(r.body().is_empty());
    assert!(events(&mut ua).is_empty());
    // INFO (RFC 6086): DTMF in both legacy types; an unknown body 415, an Info-Package 469.
    feed(&mut ua, t0, in_dialog(&Method::Info, 20, &tag, |b| b.body("application/dtmf", "9")));
    assert_eq!(one_sent(&mut ua).status().unwrap().as_u16(), 200);
    assert_eq!(call_events(&events(&mut ua)), [CallEvent::Dtmf { digit: '9', duration_ms: 160 }]);
    feed(&mut ua, t0, in_dialog(&Method::Info, 21, &tag, |b| b.body("text/plain", "hello")));
    let r = one_sent(&mut ua);
    assert_eq!(r.status().unwrap().as_u16(), 415);
    assert_eq!(r.header(HeaderName::Accept).unwrap().value(), b"application/dtmf-relay, application/dtmf");
    feed(
        &mut ua,
        t0,
        in_dialog(&Method::Info, 22, &tag, |b| b.header_named("Info-Package", "foo").body("application/foo", "x")),
    );
    assert_eq!(one_sent(&mut ua).status().unwrap().as_u16(), 469);
    feed(&mut ua, t0, in_dialog(&Method::Info, 23, &tag, |b| b));
    assert_eq!(one_sent(&mut ua).status().unwrap().as_u16(), 200, "an empty INFO (keep-alive)");
    assert!(events(&mut ua).is_empty());
    // An offer-less re-INVITE: our offer (sendrecv, we do not hold) in the 200; the peer's
    // answer in the ACK holds the call: PeerAnswer.
    feed(&mut ua, t0, in_dialog(&Method::Invite, 24, &tag, |b| b));
    let out = sent(&mut ua);
    assert_eq!(out.iter().map(|m| m.status().unwrap().as_u16()).collect::<Vec<_>>(), [100, 200]);
    assert_eq!(super::sdp::direction(out[1].body()), Direction::SendRecv);
    let held = super::sdp::with_direction(SDP, Direction::SendOnly);
    feed(&mut ua, t0, in_dialog(&Method::Ack, 24, &tag, |b| b.body("application/sdp", held.clone())));
    assert_eq!(
        call_events(&events(&mut ua)),
        [CallEvent::PeerAnswer { sdp: held, direction: Direction::SendOnly, hold: true }]
    );
    // Glare: our hold re-INVITE is out, the peer's re-INVITE gets 491; ours goes on.
    ua.reinvite_hold(t0, call, SDP).unwrap();
    let ours = one_sent(&mut ua);
    feed(&mut ua, t0, in_dialog(&Method::Invite, 25, &tag, |b| b.body("application/sdp", Bytes::from_static(SDP))));
    assert_eq!(one_sent(&mut ua).status().unwrap().as_u16(), 491);
    assert!(events(&mut ua).is_empty());
    // The peer's BYE while our re-INVITE is out ends the call; the late 487 is nothing.
    feed(&mut ua, t0, in_dialog(&Method::Bye, 26, &tag, |b| b));
    assert_eq!(one_sent(&mut ua).status().unwrap().as_u16(), 200);
    assert_eq!(call_events(&events(&mut ua)), [CallEvent::Ended { remote: true }]);
    feed(&mut ua, t0, answer(&ours, 487, None, |b| b));
    sent(&mut ua);
    assert!(events(&mut ua).is_empty());
    assert_eq!(ua.counts().1, 0, "no call left");
}

fn timed_invite(branch: &str, headers: &[(HeaderName, &str)]) -> Bytes {
    let text = String::from_utf8(incoming_invite(branch, SDP).to_vec()).unwrap();
    let extra: String = headers.iter().map(|(n, v)| format!("{}: {v}\r\n", n.as_str())).collect();
    Bytes::from(text.replacen("Max-Forwards: 69\r\n", &format!("Max-Forwards: 69\r\n{extra}"), 1))
}

/// RFC 4028 as UAS: 422 below Min-SE; the peer refreshes, or the call ends with BYE.
#[test]
fn session_timer_as_uas_peer_refreshes_or_the_call_ends() {
    let t0 = Instant::now();
    let mut ua = new_ua();
    // 60 s is below our Min-SE (90): 422 with Min-SE, no call.
    feed(
        &mut ua,
        t0,
        timed_invite("z9hG4bKshort", &[(HeaderName::SessionExpires, "60"), (HeaderName::Supported, "timer")]),
    );
    let r = one_sent(&mut ua);
    assert_eq!(r.status().unwrap().as_u16(), 422);
    assert_eq!(r.header(HeaderName::MinSe).unwrap().value(), b"90");
    assert!(events(&mut ua).is_empty());
    let ack = String::from_utf8(timed_invite("z9hG4bKshort", &[]).to_vec())
        .unwrap()
        .replacen("INVITE sip:", "ACK sip:", 1)
        .replace("10 INVITE", "10 ACK");
    feed(&mut ua, t0, Bytes::from(ack));
    // 120 s, the peer refreshes (and requires timer: no 420).
    feed(
        &mut ua,
        t0,
        timed_invite(
            "z9hG4bKtimer",
            &[(HeaderName::SessionExpires, "120;refresher=uac"), (HeaderName::Require, "timer")],
        ),
    );
    assert_eq!(one_sent(&mut ua).status().unwrap().as_u16(), 100);
    let ev = events(&mut ua);
    let UaEvent::IncomingCall(ic) = &ev[0] else { panic!("{ev:?}") };
    let call = ic.call;
    ua.answer(t0, call, Bytes::from_static(SDP)).unwrap();
    let ok = one_sent(&mut ua);
    assert_eq!(ok.header(HeaderName::SessionExpires).unwrap().value(), b"120;refresher=uac");
    assert_eq!(ok.header(HeaderName::Require).unwrap().value(), b"timer");
    let tag = ok.to().unwrap().tag().unwrap().to_owned();
    feed(&mut ua, t0, in_dialog(&Method::Ack, 10, &tag, |b| b));
    events(&mut ua);
    // A refresh UPDATE at 50 s restarts the timer: nothing at 88 s (120 - 32).
    let t50 = t0 + Duration::from_secs(50);
    feed(
        &mut ua,
        t50,
        in_dialog(&Method::Update, 11, &tag, |b| b.header(HeaderName::SessionExpires, "120;refresher=uac")),
    );
    let r = one_sent(&mut ua);
    assert_eq!(r.header(HeaderName::SessionExpires).unwrap().value(), b"120;refresher=uac");
    ua.handle_timeout(t0 + Duration::from_secs(88));
    let s88 = sent(&mut ua);
    assert!(s88.is_empty(), "{:?}", s88.iter().map(text).collect::<Vec<_>>());
    // No refresh after it: BYE at 50 + 88 s.
    ua.handle_timeout(t50 + Duration::from_secs(88) - MS);
    assert!(sent(&mut ua).is_empty());
    assert_eq!(ua.poll_timeout(), Some(t50 + Duration::from_secs(88)));
    ua.handle_timeout(t50 + Duration::from_secs(88));
    let bye = one_sent(&mut ua);
    assert_eq!(method(&bye), "BYE");
    assert_eq!(call_events(&events(&mut ua)), [CallEvent::SessionExpired]);
    feed(&mut ua, t50 + Duration::from_secs(88), answer(&bye, 200, None, |b| b));
    assert_eq!(call_events(&events(&mut ua)), [CallEvent::Ended { remote: false }]);
}

/// RFC 4028 as UAC and refresher: a re-INVITE with our SDP at half the interval (UPDATE
/// when the peer allows it); each 2xx restarts the timer; a lower Min-SE is honoured.
#[test]
fn session_timer_as_refresher() {
    let t0 = Instant::now();
    let mut ua = UserAgent::new(UaConfig { min_se: 2, ..UaConfig::new(me()) });
    let call = ua.invite(t0, &account(), "sip:3001@pbx.example.com", Bytes::from_static(SDP), &[]).unwrap();
    let inv = one_sent(&mut ua);
    assert_eq!(inv.header(HeaderName::Supported).unwrap().value(), b"timer");
    let ok = answer(&inv, 200, Some("callee"), |b| {
        b.header(HeaderName::Contact, "<sip:3001@192.0.2.30:5080>")
            .header(HeaderName::SessionExpires, "4;refresher=uac")
            .header(HeaderName::Require, "timer")
            .body("application/sdp", Bytes::from_static(SDP))
    });
    feed(&mut ua, t0, ok);
    assert_eq!(method(&one_sent(&mut ua)), "ACK");
    events(&mut ua);
    // At 2 s: a re-INVITE (the peer's 2xx had no Allow) with our unchanged SDP.
    let t2 = t0 + Duration::from_secs(2);
    assert_eq!(ua.poll_timeout(), Some(t2));
    ua.handle_timeout(t2);
    let re = one_sent(&mut ua);
    assert_eq!(method(&re), "INVITE");
    assert_eq!(re.header(HeaderName::SessionExpires).unwrap().value(), b"4;refresher=uac");
    assert_eq!(re.body(), SDP, "a refresh keeps the o= version");
    assert!(ua.reinvite_hold(t2, call, SDP).is_err(), "the refresh is an offer in progress");
    feed(
        &mut ua,
        t2,
        answer(&re, 200, None, |b| {
            b.header(HeaderName::Allow, "INVITE, ACK, BYE, UPDATE")
                .header(HeaderName::SessionExpires, "4;refresher=uac")
                .body("application/sdp", Bytes::from_static(SDP))
        }),
    );
    assert_eq!(method(&one_sent(&mut ua)), "ACK");
    assert!(events(&mut ua).is_empty(), "refreshes are not news");
    // At 4 s: UPDATE without a body (the peer allows it).
    let t4 = t0 + Duration::from_secs(4);
    assert_eq!(ua.poll_timeout(), Some(t4));
    ua.handle_timeout(t4);
    let up = one_sent(&mut ua);
    assert_eq!(method(&up), "UPDATE");
    assert!(up.body().is_empty());
    feed(&mut ua, t4, answer(&up, 200, None, |b| b.header(HeaderName::SessionExpires, "4;refresher=uac")));
    assert!(sent(&mut ua).is_empty());
    assert_eq!(ua.poll_timeout().filter(|t| *t <= t0 + Duration::from_secs(6)), Some(t0 + Duration::from_secs(6)));
    // A Session-Expires below our Min-SE in a re-INVITE: 422.
    let reinv = MessageBuilder::request(&Method::Invite, "sip:3000@192.0.2.10:5070")
        .header(HeaderName::Via, "SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKse1")
        .header(HeaderName::From, "<sip:3001@pbx.example.com>;tag=callee")
        .header(HeaderName::To, inv.header(HeaderName::From).unwrap().value())
        .header(HeaderName::CallId, inv.call_id().unwrap())
        .header(HeaderName::CSeq, "900 INVITE")
        .header(HeaderName::SessionExpires, "1")
        .body("application/sdp", Bytes::from_static(SDP))
        .to_bytes()
        .unwrap();
    feed(&mut ua, t4, reinv);
    let r = one_sent(&mut ua);
    assert_eq!(r.status().unwrap().as_u16(), 422);
    assert_eq!(r.header(HeaderName::MinSe).unwrap().value(), b"2");
}
