//! callgate's SIP user agent against real peers: sipp running the scenarios of `tests/sipp`,
//! and Kamailio as registrar and proxy. The user agent runs in its real transport driver on
//! 127.0.0.1 (`callgate_sip::transport::Endpoint`); sipp's `-trace_msg` log gives the exact
//! bytes it sent, which the raw responses our failures carry must equal.
//!
//! Nothing is skipped: a missing `sipp` or `kamailio` fails with "run `make deps`".

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use callgate_errmap::{map_sip_failure, EventKind, SipOperation};
use callgate_sip::transport::{Endpoint, EndpointConfig};
use callgate_sip::ua::{sdp, Account, CallEvent, CallId, Direction, Failure, RegEvent, SubEvent, UaEvent, UserAgent};
use callgate_tests::peers::{Kamailio, KamailioProcess, Sipp, SippOutcome, SippProcess};

/// Bound on each wait for an event.
const WAIT: Duration = Duration::from_secs(10);
/// Bound on each sipp run.
const SIPP_TIMEOUT: Duration = Duration::from_secs(15);

const OFFER: &[u8] = b"v=0\r\no=callgate 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

struct Ua {
    ep: Endpoint,
}

impl Ua {
    async fn start() -> Ua {
        let ep = Endpoint::start(EndpointConfig::new("127.0.0.1:0".parse().unwrap())).await.expect("bind 127.0.0.1:0");
        Ua { ep }
    }

    fn addr(&self) -> SocketAddr {
        self.ep.handle.udp_addr()
    }

    async fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut UserAgent, std::time::Instant) -> R + Send + 'static,
    ) -> R {
        self.ep.handle.with(f).await.expect("driver running")
    }

    async fn next(&mut self) -> UaEvent {
        tokio::time::timeout(WAIT, self.ep.events.recv()).await.expect("an event in time").expect("driver running")
    }

    /// The next event of `call` (others are skipped).
    async fn call_event(&mut self, call: CallId) -> CallEvent {
        loop {
            if let UaEvent::Call { call: c, event } = self.next().await {
                if c == call {
                    return event;
                }
            }
        }
    }

    /// Skips Trying/Ringing/SessionProgress and returns the next other event of the call.
    async fn call_outcome(&mut self, call: CallId) -> CallEvent {
        loop {
            match self.call_event(call).await {
                CallEvent::Trying | CallEvent::Ringing { .. } | CallEvent::SessionProgress { .. } => {}
                e => return e,
            }
        }
    }

    async fn invite(&self, account: &Account, to: String) -> CallId {
        let a = account.clone();
        self.with(move |ua, now| ua.invite(now, &a, &to, Bytes::from_static(OFFER), &[])).await.expect("INVITE sent")
    }

    /// Calls `sip:3001@{peer}` and waits until it is established.
    async fn call_established(&mut self, peer: SocketAddr) -> CallId {
        let call = self.invite(&account(peer), format!("sip:3001@{peer}")).await;
        match self.call_outcome(call).await {
            CallEvent::Established { sdp: Some(s) } => assert!(s.starts_with(b"v=0")),
            e => panic!("not established: {e:?}"),
        }
        call
    }

    async fn hang_up(&mut self, call: CallId) {
        self.with(move |ua, now| ua.bye(now, call)).await.expect("BYE sent");
        assert_eq!(self.call_outcome(call).await, CallEvent::Ended { remote: false });
    }

    async fn incoming_call(&mut self) -> callgate_sip::ua::IncomingCall {
        loop {
            if let UaEvent::IncomingCall(ic) = self.next().await {
                return ic;
            }
        }
    }
}

fn account(next_hop: SocketAddr) -> Account {
    Account::new("3000", "secret", "127.0.0.1", next_hop)
}

fn spawn(sipp: Sipp) -> SippProcess {
    sipp.timeout(SIPP_TIMEOUT).spawn().unwrap_or_else(|e| panic!("{e}"))
}

async fn kamailio(k: Kamailio) -> KamailioProcess {
    k.start().await.unwrap_or_else(|e| panic!("{e}"))
}

/// The first message sipp sent (`sent`) or received whose start line begins with `start`.
fn find(o: &SippOutcome, sent: bool, start: &str) -> Option<String> {
    o.messages().into_iter().find(|m| m.sent == sent && m.first_line().starts_with(start)).map(|m| m.text)
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

// ----- registration --------------------------------------------------------------------------

#[tokio::test]
async fn register_answers_sipps_digest_challenge() {
    let mut ua = Ua::start().await;
    let sipp = spawn(
        Sipp::scenario("uas_register_digest.xml")
            .key("user", "3000")
            .key("password", "secret")
            .key("realm", "callgate.test")
            .key("expires", "120"),
    );
    let a = account(sipp.local_addr());
    let reg = ua.with(move |ua, now| ua.register(now, a)).await.unwrap();
    match ua.next().await {
        UaEvent::Registration { reg: r, event: RegEvent::Registered { expires: 120, refresh: false } } => {
            assert_eq!(r, reg)
        }
        e => panic!("{e:?}"),
    }
    let outcome = sipp.wait().await;
    outcome.assert_success();
    let second =
        outcome.received().into_iter().filter(|m| m.starts_with("REGISTER ")).nth(1).expect("a second REGISTER");
    let auth = header(&second, "Authorization").unwrap();
    assert!(
        auth.contains("username=\"3000\"") && auth.contains("qop=auth") && auth.contains("algorithm=MD5"),
        "{auth}"
    );
    assert!(header(&second, "Via").unwrap().contains(";rport"), "{second}");
    assert_eq!(header(&second, "User-Agent"), Some("callgate"));
}

#[tokio::test]
async fn register_with_a_wrong_password_fails_with_the_registrars_403() {
    let mut ua = Ua::start().await;
    let sipp = spawn(
        Sipp::scenario("uas_register_digest.xml")
            .key("user", "3000")
            .key("password", "the-right-one")
            .key("realm", "callgate.test")
            .key("expires", "120"),
    );
    let a = account(sipp.local_addr());
    ua.with(move |ua, now| ua.register(now, a)).await.unwrap();
    let failure = match ua.next().await {
        UaEvent::Registration { event: RegEvent::Failed(f), .. } => f,
        e => panic!("{e:?}"),
    };
    let outcome = sipp.wait().await;
    outcome.assert_failure(); // the scenario's own check: the digest did not verify
    let sent = find(&outcome, true, "SIP/2.0 403").expect("sipp sent 403");
    let Failure::Status { status: 403, reason, raw } = failure else { panic!("{failure:?}") };
    assert_eq!(raw, sent.as_bytes(), "the raw response is exactly what the registrar sent");
    let ev = map_sip_failure(SipOperation::Register, 403, &reason, &raw).unwrap();
    assert_eq!((ev.event, ev.info.as_str()), (EventKind::RegistrationStatusEvent, "SIP 403 FORBIDDEN"));
    assert_eq!(ev.sip_message_raw.as_deref(), Some(sent.as_str()));
}

// ----- outgoing calls ------------------------------------------------------------------------

#[tokio::test]
async fn outgoing_call_answered_then_we_hang_up() {
    let mut ua = Ua::start().await;
    let sipp = spawn(Sipp::scenario("uas_answer_local_bye.xml"));
    let call = ua.call_established(sipp.local_addr()).await;
    ua.hang_up(call).await;
    sipp.wait().await.assert_success();
}

#[tokio::test]
async fn outgoing_call_answered_then_the_peer_hangs_up() {
    let mut ua = Ua::start().await;
    let sipp = spawn(Sipp::scenario("uas_answer_remote_bye.xml").pause(Duration::from_millis(200)));
    let call = ua.call_established(sipp.local_addr()).await;
    assert_eq!(ua.call_outcome(call).await, CallEvent::Ended { remote: true });
    sipp.wait().await.assert_success();
}

#[tokio::test]
async fn outgoing_call_cancelled_before_answer() {
    let mut ua = Ua::start().await;
    let sipp = spawn(Sipp::scenario("uas_cancel.xml"));
    let peer = sipp.local_addr();
    let call = ua.invite(&account(peer), format!("sip:3001@{peer}")).await;
    loop {
        match ua.call_event(call).await {
            CallEvent::Ringing { .. } => break,
            CallEvent::Trying => {}
            e => panic!("{e:?}"),
        }
    }
    ua.with(move |ua, now| ua.cancel(now, call)).await.unwrap();
    assert_eq!(ua.call_outcome(call).await, CallEvent::Ended { remote: false });
    sipp.wait().await.assert_success();
}

#[tokio::test]
async fn rejections_surface_status_reason_and_the_exact_raw_response() {
    for (code, reason, info) in [
        (403, "Forbidden", "SIP 403 FORBIDDEN"),
        (404, "Not Found", "SIP 404 NOT FOUND"),
        (486, "Busy Here", "SIP 486 BUSY HERE"),
        (503, "Service Unavailable", "SIP 503 SERVICE UNAVAILABLE"),
        (603, "Decline", "SIP 603 DECLINE"),
    ] {
        let mut ua = Ua::start().await;
        let sipp = spawn(Sipp::scenario(format!("uas_reject_{code}.xml")));
        let peer = sipp.local_addr();
        let call = ua.invite(&account(peer), format!("sip:3001@{peer}")).await;
        let failure = match ua.call_outcome(call).await {
            CallEvent::Failed(f) => f,
            e => panic!("{code}: {e:?}"),
        };
        let outcome = sipp.wait().await;
        outcome.assert_success(); // sipp got its ACK, in the INVITE transaction
        let sent = find(&outcome, true, &format!("SIP/2.0 {code}")).expect("sipp's rejection");
        let Failure::Status { status, reason: got_reason, raw } = &failure else { panic!("{failure:?}") };
        assert_eq!((*status, got_reason.as_str()), (code, reason));
        assert_eq!(raw, sent.as_bytes(), "{code}: raw response");
        let ev = map_sip_failure(SipOperation::Invite, *status, got_reason, raw).unwrap();
        assert_eq!(ev.event, EventKind::CallStatusEvent);
        assert_eq!(ev.info, info);
        assert_eq!(ev.sip_message_raw.as_deref(), Some(sent.as_str()));
    }
}

#[tokio::test]
async fn hold_and_unhold_by_re_invite() {
    let mut ua = Ua::start().await;
    let sipp = spawn(Sipp::scenario("uas_hold.xml"));
    let call = ua.call_established(sipp.local_addr()).await;
    ua.with(move |ua, now| ua.reinvite_hold(now, call, OFFER)).await.unwrap();
    match ua.call_outcome(call).await {
        CallEvent::HoldResult { hold: true, result: Ok(Some(answer)) } => {
            assert_eq!(sdp::direction(&answer), Direction::RecvOnly)
        }
        e => panic!("{e:?}"),
    }
    ua.with(move |ua, now| ua.reinvite_unhold(now, call, OFFER)).await.unwrap();
    match ua.call_outcome(call).await {
        CallEvent::HoldResult { hold: false, result: Ok(Some(answer)) } => {
            assert_eq!(sdp::direction(&answer), Direction::SendRecv)
        }
        e => panic!("{e:?}"),
    }
    ua.hang_up(call).await;
    let outcome = sipp.wait().await;
    outcome.assert_success();
    // Our offers bumped the o= version each time (RFC 3264 §8).
    let offers: Vec<String> = outcome.received().into_iter().filter(|m| m.starts_with("INVITE ")).collect();
    assert_eq!(offers.len(), 3);
    assert!(offers[1].contains("o=callgate 1 2 IN IP4") && offers[2].contains("o=callgate 1 3 IN IP4"), "{offers:?}");
}

#[tokio::test]
async fn blind_transfer_with_refer_and_notify_progress() {
    let mut ua = Ua::start().await;
    let sipp = spawn(Sipp::scenario("uas_refer.xml").key("refer_to_user", "3002"));
    let peer = sipp.local_addr();
    let call = ua.call_established(peer).await;
    let target = format!("sip:3002@{peer}");
    ua.with(move |ua, now| ua.refer(now, call, &target)).await.unwrap();
    assert_eq!(ua.call_outcome(call).await, CallEvent::TransferAccepted);
    let ev = ua.call_outcome(call).await;
    assert!(
        matches!(&ev, CallEvent::TransferProgress { status: 100, terminated: false, reason, .. } if reason == "Trying"),
        "{ev:?}"
    );
    let ev = ua.call_outcome(call).await;
    assert!(
        matches!(&ev, CallEvent::TransferProgress { status: 200, terminated: true, raw, .. } if raw.starts_with(b"NOTIFY ")),
        "{ev:?}"
    );
    ua.hang_up(call).await;
    sipp.wait().await.assert_success();
}

#[tokio::test]
async fn dtmf_by_sip_info() {
    let mut ua = Ua::start().await;
    let sipp = spawn(Sipp::scenario("uas_info_dtmf.xml"));
    let call = ua.call_established(sipp.local_addr()).await;
    ua.with(move |ua, now| ua.info_dtmf(now, call, '5')).await.unwrap();
    assert_eq!(ua.call_outcome(call).await, CallEvent::DtmfResult(Ok(())));
    ua.hang_up(call).await;
    sipp.wait().await.assert_success();
}

#[tokio::test]
async fn message_out_plain_and_with_imdn() {
    for imdn in [false, true] {
        let mut ua = Ua::start().await;
        let sipp = spawn(Sipp::scenario("uas_message.xml"));
        let peer = sipp.local_addr();
        let a = account(peer);
        let at = imdn.then(std::time::SystemTime::now);
        let msg = ua
            .with(move |ua, now| {
                ua.message(
                    now,
                    &a,
                    &format!("sip:3001@{peer}"),
                    "text/plain;charset=UTF-8",
                    Bytes::from_static(b"Hello sipp"),
                    at,
                )
            })
            .await
            .unwrap();
        assert_eq!(ua.next().await, UaEvent::MessageResult { msg, result: Ok(200) });
        let outcome = sipp.wait().await;
        outcome.assert_success();
        let m = find(&outcome, false, "MESSAGE ").unwrap();
        if imdn {
            assert_eq!(header(&m, "Content-Type"), Some("message/cpim"));
            assert!(m.contains("imdn.Disposition-Notification: positive-delivery, negative-delivery\r\n"), "{m}");
            assert!(
                m.ends_with("Content-Type: text/plain;charset=UTF-8\r\nContent-Length: 10\r\n\r\nHello sipp"),
                "{m}"
            );
        } else {
            assert!(m.ends_with("\r\n\r\nHello sipp"), "{m}");
        }
    }
}

// ----- incoming ------------------------------------------------------------------------------

/// sipp calls us; `answer` decides what we do with the INVITE.
async fn incoming_from(scenario: Sipp, ua: &mut Ua) -> (SippProcess, callgate_sip::ua::IncomingCall) {
    let sipp = spawn(scenario.service("3000").remote(ua.addr()));
    let ic = ua.incoming_call().await;
    assert!(ic.sdp.as_deref().is_some_and(|s| s.starts_with(b"v=0")));
    assert_eq!(ic.from_uri, format!("sip:sipp@{}", sipp.local_addr()));
    (sipp, ic)
}

fn answer_sdp(dir: Direction) -> Bytes {
    sdp::with_direction(OFFER, dir)
}

#[tokio::test]
async fn incoming_call_answered_and_the_caller_hangs_up() {
    let mut ua = Ua::start().await;
    let (sipp, ic) = incoming_from(Sipp::scenario("uac_call.xml").pause(Duration::from_millis(200)), &mut ua).await;
    let call = ic.call;
    ua.with(move |ua, now| ua.provisional(now, call, 180, None)).await.unwrap();
    ua.with(move |ua, now| ua.answer(now, call, Bytes::from_static(OFFER))).await.unwrap();
    assert_eq!(ua.call_outcome(call).await, CallEvent::Established { sdp: None });
    assert_eq!(ua.call_outcome(call).await, CallEvent::Ended { remote: true });
    let outcome = sipp.wait().await;
    outcome.assert_success();
    let ok = find(&outcome, false, "SIP/2.0 200").unwrap();
    assert!(header(&ok, "Contact").unwrap().starts_with(&format!("<sip:3000@{}", ua.addr())), "{ok}");
    // Our 100 came first, then 180 and 200 with one To tag.
    let statuses: Vec<String> = outcome.received().iter().map(|m| m.lines().next().unwrap_or("").to_owned()).collect();
    assert_eq!(statuses[..3], ["SIP/2.0 100 Trying", "SIP/2.0 180 Ringing", "SIP/2.0 200 OK"], "{statuses:?}");
}

#[tokio::test]
async fn incoming_call_rejected_with_403() {
    let mut ua = Ua::start().await;
    let (sipp, ic) = incoming_from(Sipp::scenario("uac_call_expect_403.xml"), &mut ua).await;
    let call = ic.call;
    ua.with(move |ua, now| ua.reject(now, call, 403, None)).await.unwrap();
    sipp.wait().await.assert_success();
    // The ACK was absorbed by the INVITE transaction; the call is gone.
    assert_eq!(ua.with(|ua, _| ua.counts().1).await, 0);
}

#[tokio::test]
async fn incoming_cancel() {
    let mut ua = Ua::start().await;
    let (sipp, ic) = incoming_from(Sipp::scenario("selfcheck/uac_cancel.xml"), &mut ua).await;
    let call = ic.call;
    ua.with(move |ua, now| ua.provisional(now, call, 180, None)).await.unwrap();
    assert_eq!(ua.call_outcome(call).await, CallEvent::Cancelled);
    sipp.wait().await.assert_success();
}

#[tokio::test]
async fn incoming_hold_unhold_dtmf_and_refer() {
    // Hold and unhold by the peer.
    let mut ua = Ua::start().await;
    let (sipp, ic) =
        incoming_from(Sipp::scenario("selfcheck/uac_hold.xml").key("hold_direction", "sendonly"), &mut ua).await;
    let call = ic.call;
    ua.with(move |ua, now| ua.answer(now, call, Bytes::from_static(OFFER))).await.unwrap();
    assert_eq!(ua.call_outcome(call).await, CallEvent::Established { sdp: None });
    for (hold, reply) in [(true, Direction::RecvOnly), (false, Direction::SendRecv)] {
        match ua.call_outcome(call).await {
            CallEvent::IncomingReInvite { hold: h, .. } => assert_eq!(h, hold),
            e => panic!("{e:?}"),
        }
        ua.with(move |ua, now| ua.answer(now, call, answer_sdp(reply))).await.unwrap();
    }
    assert_eq!(ua.call_outcome(call).await, CallEvent::Ended { remote: true });
    sipp.wait().await.assert_success();

    // DTMF from the peer.
    let (sipp, ic) = incoming_from(Sipp::scenario("selfcheck/uac_info_dtmf.xml").key("signal", "9"), &mut ua).await;
    let call = ic.call;
    ua.with(move |ua, now| ua.answer(now, call, Bytes::from_static(OFFER))).await.unwrap();
    assert_eq!(ua.call_outcome(call).await, CallEvent::Established { sdp: None });
    assert_eq!(ua.call_outcome(call).await, CallEvent::Dtmf { digit: '9', duration_ms: 160 });
    assert_eq!(ua.call_outcome(call).await, CallEvent::Ended { remote: true });
    sipp.wait().await.assert_success();

    // A transfer asked by the peer: accepted, progress reported by NOTIFY.
    let (sipp, ic) =
        incoming_from(Sipp::scenario("selfcheck/uac_refer.xml").key("refer_to_user", "3005"), &mut ua).await;
    let call = ic.call;
    ua.with(move |ua, now| ua.answer(now, call, Bytes::from_static(OFFER))).await.unwrap();
    assert_eq!(ua.call_outcome(call).await, CallEvent::Established { sdp: None });
    let req = match ua.call_outcome(call).await {
        CallEvent::IncomingRefer { req, target, .. } => {
            assert!(target.starts_with("sip:3005@"), "{target}");
            req
        }
        e => panic!("{e:?}"),
    };
    ua.with(move |ua, now| ua.respond(now, req, 202, None)).await.unwrap();
    ua.with(move |ua, now| ua.notify_transfer(now, call, 100, "Trying")).await.unwrap();
    ua.with(move |ua, now| ua.notify_transfer(now, call, 200, "OK")).await.unwrap();
    assert_eq!(ua.call_outcome(call).await, CallEvent::Ended { remote: true });
    sipp.wait().await.assert_success();
}

#[tokio::test]
async fn message_in() {
    let mut ua = Ua::start().await;
    let sipp = spawn(Sipp::scenario("uac_message.xml").service("3000").remote(ua.addr()));
    let m = loop {
        if let UaEvent::IncomingMessage(m) = ua.next().await {
            break m;
        }
    };
    assert_eq!(m.content_type, "text/plain;charset=UTF-8");
    assert_eq!(&m.body[..], b"Hello from sipp\r\n");
    assert_eq!(m.from_uri, format!("sip:sipp@{}", sipp.local_addr()));
    let req = m.req;
    ua.with(move |ua, now| ua.respond(now, req, 200, None)).await.unwrap();
    sipp.wait().await.assert_success();
}

// ----- Kamailio as registrar and proxy ---------------------------------------------------------

async fn register_to(ua: &mut Ua, k: &KamailioProcess, user: &str, password: &str) -> Account {
    // The AOR domain is the proxy's address: its `uri == myself` wants the port too.
    let a = Account::new(user, password, &k.addr().to_string(), k.addr());
    let a2 = a.clone();
    let reg = ua.with(move |ua, now| ua.register(now, a2)).await.unwrap();
    match ua.next().await {
        UaEvent::Registration { reg: r, event: RegEvent::Registered { expires: 3600, .. } } => assert_eq!(r, reg),
        e => panic!("{user}: {e:?}\n{}", k.log()),
    }
    a
}

/// `caller` calls `callee`'s user through Kamailio; the callee answers; `hang_up_by_caller`
/// says who hangs up.
async fn call_through(
    caller: &mut Ua,
    from: &Account,
    callee: &mut Ua,
    to_user: &str,
    k: &KamailioProcess,
    hang_up_by_caller: bool,
) {
    let call = caller.invite(from, format!("sip:{to_user}@{}", k.addr())).await;
    let ic = callee.incoming_call().await;
    assert!(ic.reg.is_some(), "matched to the callee's registration");
    assert_eq!(ic.request_uri, format!("sip:{to_user}@{}", callee.addr()), "to the registered Contact");
    assert!(String::from_utf8_lossy(&ic.raw).contains(&format!("Record-Route: <sip:{};lr", k.addr())));
    let c = ic.call;
    callee.with(move |ua, now| ua.provisional(now, c, 180, None)).await.unwrap();
    callee.with(move |ua, now| ua.answer(now, c, Bytes::from_static(OFFER))).await.unwrap();
    match caller.call_outcome(call).await {
        CallEvent::Established { sdp: Some(_) } => {}
        e => panic!("{e:?}\n{}", k.log()),
    }
    assert_eq!(callee.call_outcome(c).await, CallEvent::Established { sdp: None });
    if hang_up_by_caller {
        caller.hang_up(call).await;
        assert_eq!(callee.call_outcome(c).await, CallEvent::Ended { remote: true });
    } else {
        callee.hang_up(c).await;
        assert_eq!(caller.call_outcome(call).await, CallEvent::Ended { remote: true });
    }
}

#[tokio::test]
async fn two_uas_register_with_kamailio_and_call_each_other_through_it() {
    let k = kamailio(Kamailio::new()).await;
    let (mut ua1, mut ua2) = (Ua::start().await, Ua::start().await);
    let a3000 = register_to(&mut ua1, &k, "3000", "secret3000").await;
    let a3001 = register_to(&mut ua2, &k, "3001", "secret3001").await;
    call_through(&mut ua1, &a3000, &mut ua2, "3001", &k, true).await;
    call_through(&mut ua2, &a3001, &mut ua1, "3000", &k, false).await;

    // CANCEL before answer, hop by hop through the proxy.
    let call = ua1.invite(&a3000, format!("sip:3001@{}", k.addr())).await;
    let ic = ua2.incoming_call().await;
    let c = ic.call;
    ua2.with(move |ua, now| ua.provisional(now, c, 180, None)).await.unwrap();
    loop {
        match ua1.call_event(call).await {
            CallEvent::Ringing { .. } => break,
            CallEvent::Trying => {}
            e => panic!("{e:?}"),
        }
    }
    ua1.with(move |ua, now| ua.cancel(now, call)).await.unwrap();
    assert_eq!(ua2.call_outcome(c).await, CallEvent::Cancelled);
    assert_eq!(ua1.call_outcome(call).await, CallEvent::Ended { remote: false });

    // MESSAGE through the proxy, refused by the recipient's backend.
    let a = a3000.clone();
    let to = format!("sip:3001@{}", k.addr());
    let msg =
        ua1.with(move |ua, now| ua.message(now, &a, &to, "text/plain", Bytes::from_static(b"hi"), None)).await.unwrap();
    let m = loop {
        if let UaEvent::IncomingMessage(m) = ua2.next().await {
            break m;
        }
    };
    assert_eq!(&m.body[..], b"hi");
    let req = m.req;
    ua2.with(move |ua, now| ua.respond(now, req, 403, None)).await.unwrap();
    match ua1.next().await {
        UaEvent::MessageResult { msg: id, result: Err(Failure::Status { status: 403, .. }) } => assert_eq!(id, msg),
        e => panic!("{e:?}"),
    }

    // A user that is not registered: 404 from the proxy.
    let call = ua1.invite(&a3000, format!("sip:3999@{}", k.addr())).await;
    match ua1.call_outcome(call).await {
        CallEvent::Failed(Failure::Status { status: 404, .. }) => {}
        e => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn kamailio_sha256_registration_and_unregistration() {
    let k = kamailio(Kamailio::new().sha256()).await;
    let mut ua = Ua::start().await;
    let domain = k.addr().to_string();
    let a = Account::new("3001", "secret3001", &domain, k.addr());
    let reg = ua.with(move |ua, now| ua.register(now, a)).await.unwrap();
    match ua.next().await {
        UaEvent::Registration { event: RegEvent::Registered { .. }, .. } => {}
        e => panic!("{e:?}\n{}", k.log()),
    }
    ua.with(move |ua, now| ua.unregister(now, reg)).await.unwrap();
    assert_eq!(ua.next().await, UaEvent::Registration { reg, event: RegEvent::Unregistered });
    // Wrong password: one answer to the challenge, then the second 401 is the failure.
    let bad = Account::new("3000", "wrong", &domain, k.addr());
    ua.with(move |ua, now| ua.register(now, bad)).await.unwrap();
    match ua.next().await {
        UaEvent::Registration { event: RegEvent::Failed(Failure::Status { status: 401, raw, .. }), .. } => {
            assert!(String::from_utf8_lossy(&raw).contains("algorithm=SHA-256"))
        }
        e => panic!("{e:?}"),
    }
    // A subscription Kamailio does not serve fails cleanly (it has no presence module).
    let a = Account::new("3001", "secret3001", &domain, k.addr());
    let target = format!("sip:3000@{domain}");
    let sub = ua.with(move |ua, now| ua.subscribe(now, &a, &target, "presence", 60, None)).await.unwrap();
    match ua.next().await {
        UaEvent::Subscription { sub: s, event: SubEvent::Failed(Failure::Status { .. }) } => assert_eq!(s, sub),
        e => panic!("{e:?}"),
    }
}
