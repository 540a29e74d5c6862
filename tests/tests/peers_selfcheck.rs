//! The SIP peers checked against each other before callgate stands in for one side: every
//! scenario of `tests/sipp` runs against its sipp counterpart, the checks that must bite are
//! shown to fail, and Kamailio registers two digest-authenticated users and proxies their calls.
//!
//! Nothing is skipped: a missing `sipp` or `kamailio` fails the test with "run `make deps`".

use std::time::Duration;

use callgate_tests::peers::{
    free_udp_port, parse_message_log, sipp_dir, Kamailio, KamailioProcess, PeerError, Sipp, SippOutcome, SippProcess,
};

/// Each run of a pair is one call; this bounds it (a failing check ends it sooner).
const PAIR_TIMEOUT: Duration = Duration::from_secs(10);

fn spawn(sipp: Sipp) -> SippProcess {
    sipp.spawn().unwrap_or_else(|e| panic!("{e}"))
}

async fn start_kamailio(k: Kamailio) -> KamailioProcess {
    k.start().await.unwrap_or_else(|e| panic!("{e}"))
}

/// Starts `uas`, then `uac` towards it; returns both outcomes once both exited.
async fn pair(uas: Sipp, uac: Sipp) -> (SippOutcome, SippOutcome) {
    let uas = spawn(uas.timeout(PAIR_TIMEOUT));
    let uac = spawn(uac.timeout(PAIR_TIMEOUT).remote(uas.local_addr()));
    let uac = uac.wait().await;
    let uas = uas.wait().await;
    (uas, uac)
}

/// Starts `uas`, then `uac` towards it, and returns the UAS outcome only: for checks that make
/// the UAS fail, after which the UAC may wait for an answer that never comes (it is killed).
async fn uas_outcome(uas: Sipp, uac: Sipp) -> SippOutcome {
    let uas = spawn(uas.timeout(PAIR_TIMEOUT));
    let _uac = spawn(uac.timeout(PAIR_TIMEOUT).remote(uas.local_addr()));
    uas.wait().await
}

fn assert_both(uas: &SippOutcome, uac: &SippOutcome) {
    uas.assert_success();
    uac.assert_success();
}

/// The first message whose start line begins with `start`, as `sipp` sent (`sent`) or received it.
fn find(o: &SippOutcome, sent: bool, start: &str) -> Option<String> {
    o.messages().into_iter().find(|m| m.sent == sent && m.first_line().starts_with(start)).map(|m| m.text)
}

fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

#[test]
fn message_log_is_split_by_byte_counts() {
    let log = "----------------------------------------------- 2026-01-01 00:00:00.000000\n\
               UDP message received [25] bytes :\n\nOPTIONS sip:a SIP/2.0\r\n\r\n\n\
               ----------------------------------------------- 2026-01-01 00:00:00.000001\n\
               UDP message sent (18 bytes):\n\nSIP/2.0 200 OK\r\n\r\n\n";
    let m = parse_message_log(log);
    assert_eq!(m.len(), 2);
    assert!(!m[0].sent);
    assert_eq!(m[0].text, "OPTIONS sip:a SIP/2.0\r\n\r\n");
    assert!(m[1].sent);
    assert_eq!(m[1].first_line(), "SIP/2.0 200 OK");
}

#[tokio::test]
async fn sipp_without_a_peer_fails_at_its_timeout() {
    let started = std::time::Instant::now();
    let uas = spawn(Sipp::scenario("uas_message.xml").timeout(Duration::from_secs(1))).wait().await;
    uas.assert_failure();
    assert!(!uas.killed, "sipp stopped itself: {}", uas.report());
    assert!(uas.stderr.contains("timed out"), "{}", uas.report());
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn a_missing_peer_says_to_run_make_deps() {
    let e = PeerError::Missing { program: "sipp", package: "sip-tester" };
    assert_eq!(e.to_string(), "`sipp` is not installed: run `make deps` (it installs the Debian package `sip-tester`)");
}

// ----------------------------------------------------------------------------------------------
// REGISTER with digest auth

fn registrar() -> Sipp {
    Sipp::scenario("uas_register_digest.xml")
        .key("user", "3000")
        .key("password", "s3cret")
        .key("realm", "callgate.test")
        .key("expires", "60")
}

#[tokio::test]
async fn register_digest_md5_with_the_right_password() {
    let uac = Sipp::scenario("selfcheck/uac_register_digest.xml").service("3000").auth("3000", "s3cret");
    let (uas, uac) = pair(registrar(), uac).await;
    assert_both(&uas, &uac);
    let challenge = find(&uas, true, "SIP/2.0 401").expect("a 401");
    assert_eq!(
        header(&challenge, "WWW-Authenticate")[0].split_once(", nonce=").map(|(a, _)| a),
        Some("Digest realm=\"callgate.test\"")
    );
    assert!(challenge.contains("qop=\"auth\", algorithm=MD5"), "{challenge}");
    let ok = find(&uas, true, "SIP/2.0 200").expect("a 200");
    assert!(header(&ok, "Contact")[0].ends_with(";expires=60"), "{ok}");
}

#[tokio::test]
async fn register_digest_refuses_a_wrong_password() {
    // -nd: no BYE from the UAC on the unexpected 403, which could reach sipp before its <error>.
    let uac = Sipp::scenario("selfcheck/uac_register_digest.xml").service("3000").auth("3000", "wrong").arg("-nd");
    let uas = uas_outcome(registrar(), uac).await;
    uas.assert_failure();
    assert!(uas.stderr.contains("does not verify"), "{}", uas.report());
    assert!(find(&uas, true, "SIP/2.0 403 Forbidden").is_some(), "{}", uas.report());
}

#[tokio::test]
async fn register_digest_refuses_another_user() {
    // Right password for the credentials, but not the user the registrar expects.
    let uac = Sipp::scenario("selfcheck/uac_register_digest.xml").service("3001").auth("3001", "s3cret");
    let uas = uas_outcome(registrar(), uac).await;
    uas.assert_failure();
    assert!(uas.errors.contains("got_user:\"3001\""), "{}", uas.report());
}

// ----------------------------------------------------------------------------------------------
// Calls

#[tokio::test]
async fn call_answered_then_bye_from_sipp() {
    let uas =
        spawn(Sipp::scenario("uas_answer_remote_bye.xml").pause(Duration::from_millis(100)).timeout(PAIR_TIMEOUT));
    let uac = Sipp::scenario("selfcheck/uac_call_remote_bye.xml").service("3001").timeout(PAIR_TIMEOUT);
    let uac = spawn(uac.remote(uas.local_addr()));
    let caller = uac.local_addr();
    let (uac, uas) = (uac.wait().await, uas.wait().await);
    assert_both(&uas, &uac);
    let bye = find(&uac, false, "BYE ").expect("the UAC got a BYE");
    let target = format!("BYE sip:sipp@{caller};transport=UDP SIP/2.0\r\n");
    assert!(bye.starts_with(&target), "the BYE goes to the caller's Contact: {bye}");
    let ok = find(&uas, true, "SIP/2.0 200").expect("a 200");
    assert!(ok.contains("m=audio ") && ok.contains(" RTP/AVP 0 8 101\r\n") && ok.contains("telephone-event/8000"));
}

#[tokio::test]
async fn call_answered_then_bye_from_the_ua() {
    // Validates uac_call.xml (sipp calling the UA under test) at the same time.
    let uac = Sipp::scenario("uac_call.xml").service("3001").pause(Duration::from_millis(100));
    let (uas, uac) = pair(Sipp::scenario("uas_answer_local_bye.xml"), uac).await;
    assert_both(&uas, &uac);
    assert!(find(&uas, false, "BYE ").is_some(), "{}", uas.report());
}

#[tokio::test]
async fn cancel_before_answer() {
    let (uas, uac) =
        pair(Sipp::scenario("uas_cancel.xml"), Sipp::scenario("selfcheck/uac_cancel.xml").service("3001")).await;
    assert_both(&uas, &uac);
    let terminated = find(&uac, false, "SIP/2.0 487 Request Terminated").expect("a 487");
    assert_eq!(header(&terminated, "CSeq"), ["1 INVITE"]);
}

/// The codes and reasons of gen.sh.
const REJECTIONS: [(u16, &str); 5] =
    [(403, "Forbidden"), (404, "Not Found"), (486, "Busy Here"), (503, "Service Unavailable"), (603, "Decline")];

#[tokio::test]
async fn rejections_carry_their_code_and_reason() {
    for (code, reason) in REJECTIONS {
        let uas = Sipp::scenario(format!("uas_reject_{code}.xml"));
        let uac = Sipp::scenario("selfcheck/uac_call_expect_reject.xml").service("3001");
        let (uas, uac) = pair(uas, uac).await;
        assert_both(&uas, &uac);
        let status = format!("SIP/2.0 {code} {reason}");
        let got = uac.messages().into_iter().find(|m| !m.sent && m.first_line() == status);
        let got = got.unwrap_or_else(|| panic!("no {status}: {}", uac.report())).text;
        assert!(header(&got, "To")[0].contains(";tag="), "{got}");
        // The 100 first, then the final response.
        let firsts: Vec<_> = uas.sent().iter().map(|m| m.lines().next().unwrap_or("").to_string()).collect();
        assert_eq!(firsts, ["SIP/2.0 100 Trying", status.as_str()]);
    }
}

#[test]
fn generated_rejections_match_the_template() {
    let template = std::fs::read_to_string(sipp_dir().join("uas_reject.xml.in")).unwrap();
    for (code, reason) in REJECTIONS {
        let want = template.replace("@CODE@", &code.to_string()).replace("@REASON@", reason);
        let file = sipp_dir().join(format!("uas_reject_{code}.xml"));
        let got = std::fs::read_to_string(&file).unwrap();
        assert!(got == want, "{} is stale: run tests/sipp/gen.sh", file.display());
    }
}

#[tokio::test]
async fn incoming_call_rejected_with_403() {
    let uac = Sipp::scenario("uac_call_expect_403.xml").service("3001");
    let (uas, uac) = pair(Sipp::scenario("uas_reject_403.xml"), uac).await;
    assert_both(&uas, &uac);
}

#[tokio::test]
async fn incoming_call_expecting_403_fails_on_another_code() {
    let uas = spawn(Sipp::scenario("uas_reject_486.xml").timeout(PAIR_TIMEOUT));
    let uac = Sipp::scenario("uac_call_expect_403.xml").service("3001").timeout(PAIR_TIMEOUT);
    let uac = spawn(uac.remote(uas.local_addr())).wait().await;
    uac.assert_failure();
    assert!(uac.stderr.contains("486 Busy Here"), "{}", uac.report());
}

// ----------------------------------------------------------------------------------------------
// MESSAGE, REFER, INFO, hold

#[tokio::test]
async fn message_both_ways() {
    let (uas, uac) = pair(Sipp::scenario("uas_message.xml"), Sipp::scenario("uac_message.xml").service("3001")).await;
    assert_both(&uas, &uac);
    let message = find(&uas, false, "MESSAGE ").expect("a MESSAGE");
    assert!(message.ends_with("\r\n\r\nHello from sipp\r\n"), "{message}");
    assert_eq!(header(&message, "Content-Type"), ["text/plain;charset=UTF-8"]);
}

fn refer_pair(refer_to: &str) -> (Sipp, Sipp) {
    (
        Sipp::scenario("uas_refer.xml").key("refer_to_user", "3002"),
        Sipp::scenario("selfcheck/uac_refer.xml").service("3001").key("refer_to_user", refer_to),
    )
}

#[tokio::test]
async fn refer_with_notify_progress() {
    let (uas, uac) = refer_pair("3002");
    let (uas, uac) = pair(uas, uac).await;
    assert_both(&uas, &uac);
    let notifies: Vec<_> = uac.received().into_iter().filter(|m| m.starts_with("NOTIFY ")).collect();
    assert_eq!(notifies.len(), 2, "{}", uac.report());
    assert!(notifies[0].ends_with("\r\n\r\nSIP/2.0 100 Trying\r\n"), "{}", notifies[0]);
    assert!(notifies[1].ends_with("\r\n\r\nSIP/2.0 200 OK\r\n"), "{}", notifies[1]);
    assert_eq!(header(&notifies[0], "Event"), ["refer;id=2"]);
    assert_eq!(header(&notifies[1], "Subscription-State"), ["terminated;reason=noresource"]);
}

#[tokio::test]
async fn refer_to_another_target_fails() {
    let (uas, uac) = refer_pair("3003");
    let uas = uas_outcome(uas, uac).await;
    uas.assert_failure();
    assert!(uas.stderr.contains("\"3003\""), "{}", uas.report());
}

#[tokio::test]
async fn info_dtmf() {
    let uac = Sipp::scenario("selfcheck/uac_info_dtmf.xml").service("3001").key("signal", "5");
    let (uas, uac) = pair(Sipp::scenario("uas_info_dtmf.xml"), uac).await;
    assert_both(&uas, &uac);
    let info = find(&uas, false, "INFO ").expect("an INFO");
    assert!(info.ends_with("\r\n\r\nSignal=5\r\nDuration=160\r\n"), "{info}");
}

#[tokio::test]
async fn info_dtmf_with_another_digit_fails() {
    let uac = Sipp::scenario("selfcheck/uac_info_dtmf.xml").service("3001").key("signal", "6");
    let uas = uas_outcome(Sipp::scenario("uas_info_dtmf.xml"), uac).await;
    uas.assert_failure();
    assert!(uas.stderr.contains("Signal= *5"), "{}", uas.report());
}

#[tokio::test]
async fn hold_and_unhold() {
    let uac = Sipp::scenario("selfcheck/uac_hold.xml").service("3001").key("hold_direction", "sendonly");
    let (uas, uac) = pair(Sipp::scenario("uas_hold.xml"), uac).await;
    assert_both(&uas, &uac);
    let answers: Vec<_> =
        uas.sent().into_iter().filter(|m| m.starts_with("SIP/2.0 200") && m.contains("v=0")).collect();
    assert_eq!(answers.len(), 3, "{}", uas.report());
    for (i, dir) in ["a=sendrecv", "a=recvonly", "a=sendrecv"].iter().enumerate() {
        assert!(answers[i].contains(dir), "answer {i}: {}", answers[i]);
        assert!(answers[i].contains(&format!(" {} IN IP4 ", i + 1)), "o= version {}: {}", i + 1, answers[i]);
    }
}

#[tokio::test]
async fn hold_offer_without_sendonly_fails() {
    let uac = Sipp::scenario("selfcheck/uac_hold.xml").service("3001").key("hold_direction", "sendrecv");
    let uas = uas_outcome(Sipp::scenario("uas_hold.xml"), uac).await;
    uas.assert_failure();
    assert!(uas.stderr.contains("a=sendonly"), "{}", uas.report());
}

/// Issue 10 item 3: what a peer sends inside a call (`uas_peer_requests.xml`,
/// `uac_peer_requests.xml`) against stand-ins of the UA under test.
#[tokio::test]
async fn peer_reinvites_updates_info_and_glare_on_an_outgoing_call() {
    let uac = Sipp::scenario("selfcheck/uac_peer_requests.xml").service("3001");
    let (uas, uac) = pair(Sipp::scenario("uas_peer_requests.xml"), uac).await;
    assert_both(&uas, &uac);
    assert!(find(&uas, false, "SIP/2.0 415").is_some(), "{}", uas.report());
    assert!(find(&uas, false, "SIP/2.0 491").is_some(), "{}", uas.report());
    assert!(find(&uac, false, "SIP/2.0 491").is_some(), "{}", uac.report());
}

#[tokio::test]
async fn peer_offerless_reinvite_and_bye_during_a_reinvite_on_an_incoming_call() {
    let uac = Sipp::scenario("uac_peer_requests.xml").service("3001");
    let (uas, uac) = pair(Sipp::scenario("selfcheck/uas_peer_requests.xml"), uac).await;
    assert_both(&uas, &uac);
    let ack = uac.sent().into_iter().find(|m| m.starts_with("ACK ") && m.contains("CSeq: 3 ACK")).unwrap();
    assert!(ack.contains("m=audio"), "the answer in the ACK: {ack}");
    assert!(find(&uas, false, "SIP/2.0 487").is_some(), "{}", uas.report());
}

/// The session-timer scenarios (a 4 s interval refreshed every 2 s for 10 s) take ~12 s.
async fn long_pair(uas: Sipp, uac: Sipp) -> (SippOutcome, SippOutcome) {
    let uas = spawn(uas.timeout(Duration::from_secs(25)));
    let uac = spawn(uac.timeout(Duration::from_secs(25)).remote(uas.local_addr()));
    let uac = uac.wait().await;
    (uas.wait().await, uac)
}

#[tokio::test]
async fn session_timer_refreshed_by_the_caller() {
    let uac = Sipp::scenario("uac_session_timer.xml").service("3001");
    let (uas, uac) = long_pair(Sipp::scenario("selfcheck/uas_session_timer.xml"), uac).await;
    assert_both(&uas, &uac);
    assert_eq!(uas.received().iter().filter(|m| m.starts_with("UPDATE ")).count(), 5);
}

#[tokio::test]
async fn session_timer_refreshed_by_the_ua_as_the_callee_asks() {
    let uac = Sipp::scenario("selfcheck/uac_session_timer.xml").service("3001");
    let (uas, uac) = long_pair(Sipp::scenario("uas_session_timer.xml"), uac).await;
    assert_both(&uas, &uac);
    // Five refreshes, two more before the hold and one before the BYE: all answered.
    assert_eq!(uas.received().iter().filter(|m| m.starts_with("UPDATE ")).count(), 8);
    let ok = find(&uac, false, "SIP/2.0 200").unwrap();
    assert_eq!(header(&ok, "Session-Expires"), ["4;refresher=uac"]);
}

// ----------------------------------------------------------------------------------------------
// Kamailio as registrar and proxy

async fn register(k: &KamailioProcess, user: &str, password: &str, port: u16) -> SippOutcome {
    let sipp = Sipp::scenario("selfcheck/uac_register_digest.xml").service(user).auth(user, password);
    spawn(sipp.local_port(port).remote(k.addr()).timeout(PAIR_TIMEOUT)).wait().await
}

/// Two users register with digest auth; 3000 calls 3001 through the proxy twice, hanging up
/// from either side. ACK and BYE follow the record-routed path (Route to the proxy).
#[tokio::test]
async fn kamailio_registers_two_users_and_proxies_their_calls() {
    let k = start_kamailio(Kamailio::new()).await;
    let (port_3000, port_3001) = (free_udp_port(), free_udp_port());
    register(&k, "3000", "secret3000", port_3000).await.assert_success();
    register(&k, "3001", "secret3001", port_3001).await.assert_success();
    let route = format!("<sip:{};lr;", k.addr());

    // The caller hangs up.
    let callee = spawn(Sipp::scenario("uas_answer_local_bye.xml").local_port(port_3001).timeout(PAIR_TIMEOUT));
    let caller = Sipp::scenario("uac_call.xml").service("3001").pause(Duration::from_millis(100));
    let caller = spawn(caller.local_port(port_3000).remote(k.addr()).timeout(PAIR_TIMEOUT));
    let (caller, callee) = (caller.wait().await, callee.wait().await);
    assert_both(&callee, &caller);
    let invite = find(&callee, false, "INVITE ").expect("the INVITE reached 3001");
    assert!(
        invite.starts_with(&format!("INVITE sip:3001@127.0.0.1:{port_3001}")),
        "to the registered Contact: {invite}"
    );
    assert!(header(&invite, "Record-Route")[0].starts_with(&route), "{invite}");
    for method in ["ACK ", "BYE "] {
        let m = find(&caller, true, method).unwrap();
        assert!(header(&m, "Route")[0].starts_with(&route), "{method}through the proxy: {m}");
        assert!(find(&callee, false, method).is_some(), "{method}reached the callee: {}", callee.report());
    }

    // The callee hangs up: its BYE carries the Route set of the INVITE's Record-Route.
    let callee = Sipp::scenario("uas_answer_remote_bye.xml").pause(Duration::from_millis(100));
    let callee = spawn(callee.local_port(port_3001).timeout(PAIR_TIMEOUT));
    let caller = Sipp::scenario("selfcheck/uac_call_remote_bye.xml").service("3001");
    let caller = spawn(caller.local_port(port_3000).remote(k.addr()).timeout(PAIR_TIMEOUT));
    let (caller, callee) = (caller.wait().await, callee.wait().await);
    assert_both(&callee, &caller);
    let bye = find(&callee, true, "BYE ").unwrap();
    assert!(header(&bye, "Route")[0].starts_with(&route), "{bye}");
    assert!(find(&caller, false, "BYE ").is_some(), "{}", caller.report());
}

#[tokio::test]
async fn kamailio_rechallenges_a_wrong_password() {
    let k = start_kamailio(Kamailio::new()).await;
    let reg = register(&k, "3001", "wrong", free_udp_port()).await;
    reg.assert_failure();
    let challenges = reg.received().iter().filter(|m| m.starts_with("SIP/2.0 401 ")).count();
    assert_eq!(challenges, 2, "{}", reg.report());
    // A user it does not know is only ever challenged.
    register(&k, "3999", "secret3999", free_udp_port()).await.assert_failure();
}

/// CANCEL (hop by hop through the proxy), MESSAGE, and a call to a user not registered.
#[tokio::test]
async fn kamailio_proxies_cancel_and_message_and_answers_404() {
    let k = start_kamailio(Kamailio::new()).await;
    let port_3001 = free_udp_port();
    register(&k, "3001", "secret3001", port_3001).await.assert_success();

    for (uas, uac) in [("uas_cancel.xml", "selfcheck/uac_cancel.xml"), ("uas_message.xml", "uac_message.xml")] {
        let callee = spawn(Sipp::scenario(uas).local_port(port_3001).timeout(PAIR_TIMEOUT));
        let caller = spawn(Sipp::scenario(uac).service("3001").remote(k.addr()).timeout(PAIR_TIMEOUT));
        let (caller, callee) = (caller.wait().await, callee.wait().await);
        assert_both(&callee, &caller);
    }

    let nobody = Sipp::scenario("selfcheck/uac_call_expect_reject.xml").service("3999");
    let nobody = spawn(nobody.remote(k.addr()).timeout(PAIR_TIMEOUT)).wait().await;
    nobody.assert_success();
    assert!(find(&nobody, false, "SIP/2.0 404 Not Found").is_some(), "{}", nobody.report());
}

/// With `-A WITH_SHA256` Kamailio challenges with algorithm=SHA-256 and verifies the response
/// (RFC 8760). sipp 3.6.1 has no SHA-256 digest, so the client is the one below.
#[tokio::test]
async fn kamailio_sha256_registrar() {
    let k = start_kamailio(Kamailio::new().sha256()).await;
    let (challenge, ok) = sha256_client::register(k.addr(), "3000", "secret3000").await;
    assert!(challenge.contains("algorithm=SHA-256") && challenge.contains("qop=\"auth\""), "{challenge}");
    assert!(ok.starts_with("SIP/2.0 200 OK\r\n"), "{ok}\n{}", k.log());
    assert!(header(&ok, "Contact")[0].contains(";expires="), "{ok}");
    let (_, refused) = sha256_client::register(k.addr(), "3000", "wrong").await;
    assert!(refused.starts_with("SIP/2.0 401 "), "{refused}");
}

/// A REGISTER client with SHA-256 digest (RFC 7616 3.4.1, qop=auth), std and tokio only.
mod sha256_client {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::net::UdpSocket;

    /// Registers `user`; returns the 401's WWW-Authenticate line and the final response.
    pub async fn register(registrar: SocketAddr, user: &str, password: &str) -> (String, String) {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = sock.local_addr().unwrap();
        let call_id = format!("sha256-{}-{user}", local.port());
        let uri = format!("sip:{registrar}");
        let request = |cseq: u32, auth: &str| {
            format!(
                "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-sha-{cseq}\r\n\
                 From: <sip:{user}@127.0.0.1>;tag=sha{cseq}\r\nTo: <sip:{user}@127.0.0.1>\r\nCall-ID: {call_id}\r\n\
                 CSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{local}>\r\nMax-Forwards: 70\r\nExpires: 60\r\n\
                 {auth}Content-Length: 0\r\n\r\n"
            )
        };
        let first = exchange(&sock, registrar, &request(1, "")).await;
        let challenge = first
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("www-authenticate:"))
            .unwrap_or_else(|| panic!("no challenge in {first}"))
            .to_string();
        let realm = param(&challenge, "realm");
        let nonce = param(&challenge, "nonce");
        let (nc, cnonce) = ("00000001", "0a4f113b");
        let ha1 = sha256_hex(format!("{user}:{realm}:{password}").as_bytes());
        let ha2 = sha256_hex(format!("REGISTER:{uri}").as_bytes());
        let response = sha256_hex(format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}").as_bytes());
        let auth = format!(
            "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm=SHA-256, cnonce=\"{cnonce}\", qop=auth, nc={nc}\r\n"
        );
        (challenge, exchange(&sock, registrar, &request(2, &auth)).await)
    }

    /// Sends a request and returns its final response (retransmitting as timer E would).
    async fn exchange(sock: &UdpSocket, to: SocketAddr, request: &str) -> String {
        let mut buf = vec![0u8; 65536];
        for _ in 0..8 {
            sock.send_to(request.as_bytes(), to).await.unwrap();
            while let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await
            {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if !text.starts_with("SIP/2.0 1") {
                    return text;
                }
            }
        }
        panic!("no final response from {to} to\n{request}");
    }

    /// A quoted or token parameter of a challenge.
    fn param(header: &str, name: &str) -> String {
        let at = header.find(&format!("{name}=")).unwrap_or_else(|| panic!("no {name} in {header}"));
        let rest = &header[at + name.len() + 1..];
        match rest.strip_prefix('"') {
            Some(quoted) => quoted[..quoted.find('"').unwrap()].to_string(),
            None => rest.split([',', ' ']).next().unwrap().to_string(),
        }
    }

    /// SHA-256 (FIPS 180-4) in lowercase hex.
    pub fn sha256_hex(data: &[u8]) -> String {
        const K: [u32; 64] = [
            0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
            0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
            0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
            0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
            0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
            0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
            0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
            0xc67178f2,
        ];
        let mut h: [u32; 8] =
            [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
        let mut msg = data.to_vec();
        msg.push(0x80);
        while msg.len() % 64 != 56 {
            msg.push(0);
        }
        msg.extend_from_slice(&(data.len() as u64 * 8).to_be_bytes());
        for block in msg.chunks(64) {
            let mut w = [0u32; 64];
            for (i, word) in block.chunks(4).enumerate() {
                w[i] = u32::from_be_bytes(word.try_into().unwrap());
            }
            for i in 16..64 {
                let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
                let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
                w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
            }
            let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
            for i in 0..64 {
                let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
                let ch = (e & f) ^ (!e & g);
                let t1 = hh.wrapping_add(s1).wrapping_add(ch).wrapping_add(K[i]).wrapping_add(w[i]);
                let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
                let maj = (a & b) ^ (a & c) ^ (b & c);
                let t2 = s0.wrapping_add(maj);
                (hh, g, f, e, d, c, b, a) = (g, f, e, d.wrapping_add(t1), c, b, a, t1.wrapping_add(t2));
            }
            for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
                *x = x.wrapping_add(y);
            }
        }
        h.iter().map(|x| format!("{x:08x}")).collect()
    }

    #[test]
    fn sha256_test_vectors() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(sha256_hex(long), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    }
}
