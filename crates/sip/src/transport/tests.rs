//! Two real endpoints on 127.0.0.1 calling each other over UDP and over TCP, and bad input
//! on a real socket.

use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::time::timeout;

use super::*;
use crate::ua::{Account, CallEvent, CallId};

const SDP: &[u8] =
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

async fn endpoint(tcp: bool) -> Endpoint {
    endpoint_with(tcp, false).await
}

async fn endpoint_with(tcp: bool, own_thread: bool) -> Endpoint {
    let mut cfg = EndpointConfig::new("127.0.0.1:0".parse().unwrap());
    if tcp {
        cfg.tcp_bind = Some("127.0.0.1:0".parse().unwrap());
    }
    cfg.own_thread = own_thread;
    Endpoint::start(cfg).await.unwrap()
}

async fn next_event(ep: &mut Endpoint) -> UaEvent {
    timeout(Duration::from_secs(5), ep.events.recv()).await.expect("an event in time").expect("driver alive")
}

async fn call_event(ep: &mut Endpoint, call: CallId) -> CallEvent {
    loop {
        match next_event(ep).await {
            UaEvent::Call { call: c, event } if c == call => return event,
            _ => {}
        }
    }
}

async fn call_between(transport: Transport) {
    call_between_with(transport, false).await;
}

async fn call_between_with(transport: Transport, own_thread: bool) {
    let tcp = transport == Transport::Tcp;
    let mut a = endpoint_with(tcp, own_thread).await;
    let mut b = endpoint_with(tcp, own_thread).await;
    let b_addr = if tcp { b.handle.tcp_addr().unwrap() } else { b.handle.udp_addr() };
    let mut alice = Account::new("alice", "pw", "127.0.0.1", b_addr);
    alice.transport = transport;
    let to = format!("sip:bob@{b_addr}{}", if tcp { ";transport=tcp" } else { "" });
    let call =
        a.handle.with(move |ua, now| ua.invite(now, &alice, &to, Bytes::from_static(SDP), &[])).await.unwrap().unwrap();
    let UaEvent::IncomingCall(ic) = next_event(&mut b).await else { panic!("not an incoming call") };
    assert_eq!(ic.transport, transport);
    assert_eq!(ic.sdp.as_deref(), Some(SDP));
    let bc = ic.call;
    b.handle.with(move |ua, now| ua.provisional(now, bc, 180, None)).await.unwrap().unwrap();
    assert_eq!(call_event(&mut a, call).await, CallEvent::Trying);
    assert_eq!(call_event(&mut a, call).await, CallEvent::Ringing { sdp: None });
    b.handle.with(move |ua, now| ua.answer(now, bc, Bytes::from_static(SDP))).await.unwrap().unwrap();
    assert_eq!(call_event(&mut a, call).await, CallEvent::Established { sdp: Some(Bytes::from_static(SDP)) });
    assert_eq!(call_event(&mut b, bc).await, CallEvent::Established { sdp: None });
    a.handle.with(move |ua, now| ua.bye(now, call)).await.unwrap().unwrap();
    assert_eq!(call_event(&mut b, bc).await, CallEvent::Ended { remote: true });
    assert_eq!(call_event(&mut a, call).await, CallEvent::Ended { remote: false });
    a.handle.shutdown();
    b.handle.shutdown();
    a.task.await.unwrap();
    b.task.await.unwrap();
}

#[tokio::test]
async fn call_over_udp() {
    call_between(Transport::Udp).await;
}

/// The same calls with each driver on a thread of its own (as the server runs it): the sockets
/// moved to that thread's runtime still send, receive and accept, and shutdown ends the thread
/// (the task that stands for it completes).
#[tokio::test]
async fn call_over_udp_and_tcp_with_the_driver_on_its_own_thread() {
    call_between_with(Transport::Udp, true).await;
    call_between_with(Transport::Tcp, true).await;
}

#[tokio::test]
async fn call_over_tcp() {
    call_between(Transport::Tcp).await;
}

#[tokio::test]
async fn bad_datagrams_get_400_or_nothing_and_the_driver_goes_on() {
    let ep = endpoint(false).await;
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = vec![0u8; 4096];
    // No rport: the 400 goes to the Via's sent-by (RFC 3261 §18.2.2), which is the peer.
    let bad = format!(
        "INVITE sip:x@h SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKq\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:x@h>\r\nCall-ID: q\r\nCSeq: 1 INVITE\r\nMax-Forwards: banana\r\n\r\n",
        peer.local_addr().unwrap()
    );
    peer.send_to(bad.as_bytes(), ep.handle.udp_addr()).await.unwrap();
    let (n, _) = timeout(Duration::from_secs(5), peer.recv_from(&mut buf)).await.unwrap().unwrap();
    assert!(buf[..n].starts_with(b"SIP/2.0 400 "), "{}", String::from_utf8_lossy(&buf[..n]));
    peer.send_to(b"\xff\xfe garbage", ep.handle.udp_addr()).await.unwrap();
    peer.send_to(b"\r\n\r\n", ep.handle.udp_addr()).await.unwrap();
    let options = format!(
        "OPTIONS sip:{a} SIP/2.0\r\nVia: SIP/2.0/UDP {p};branch=z9hG4bKo;rport\r\nFrom: <sip:p@h>;tag=2\r\nTo: <sip:{a}>\r\nCall-ID: o\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        a = ep.handle.udp_addr(),
        p = peer.local_addr().unwrap()
    );
    peer.send_to(options.as_bytes(), ep.handle.udp_addr()).await.unwrap();
    let (n, _) = timeout(Duration::from_secs(5), peer.recv_from(&mut buf)).await.unwrap().unwrap();
    assert!(buf[..n].starts_with(b"SIP/2.0 200 OK\r\n"), "the garbage was dropped, OPTIONS answered");
    let tcp_fail =
        Account { transport: Transport::Tcp, ..Account::new("a", "p", "127.0.0.1", "127.0.0.1:1".parse().unwrap()) };
    let mut ep = ep;
    let call = ep
        .handle
        .with(move |ua, now| ua.invite(now, &tcp_fail, "sip:b@127.0.0.1:1", Bytes::from_static(SDP), &[]))
        .await
        .unwrap()
        .unwrap();
    let ev = call_event(&mut ep, call).await;
    assert!(matches!(ev, CallEvent::Failed(crate::ua::Failure::Transport(_))), "{ev:?}");
}

/// The driver runs the protocol timers on tokio's clock: with the clock paused, an INVITE to a
/// peer that never answers is sent 7 times (Timer A: 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s) and
/// fails at 64*T1 = 32 s (Timer B), in no real time.
#[tokio::test(start_paused = true)]
async fn timers_follow_the_tokio_clock() {
    let mut ep = endpoint(false).await;
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    silent.set_nonblocking(true).unwrap();
    let peer = silent.local_addr().unwrap();
    let a = Account::new("a", "p", "127.0.0.1", peer);
    let to = format!("sip:b@{peer}");
    let started = Instant::now();
    let call =
        ep.handle.with(move |ua, now| ua.invite(now, &a, &to, Bytes::from_static(SDP), &[])).await.unwrap().unwrap();
    let ev = loop {
        match ep.events.recv().await.unwrap() {
            UaEvent::Call { call: c, event } if c == call => break event,
            _ => {}
        }
    };
    assert_eq!(ev, CallEvent::Failed(crate::ua::Failure::Timeout));
    assert_eq!(started.elapsed(), Duration::from_secs(32));
    let mut buf = [0u8; 4096];
    let mut invites = 0;
    // The datagrams crossed the real loopback; give the kernel a moment in real time.
    std::thread::sleep(Duration::from_millis(50));
    while let Ok((n, _)) = silent.recv_from(&mut buf) {
        assert!(buf[..n].starts_with(b"INVITE "));
        invites += 1;
    }
    assert_eq!(invites, 7);
}

/// Issue 14 item 1, over a real socket: one out-of-dialog MESSAGE whose CPIM inner
/// Content-Length is 2^64-1 panicked the `sip-driver` thread, after which nothing was answered.
/// Now it gets `400 Bad CPIM Body` and the endpoint still answers OPTIONS.
#[tokio::test]
async fn a_cpim_message_with_a_huge_inner_length_gets_400_and_the_driver_goes_on() {
    let ep = endpoint_with(false, true).await;
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let p = peer.local_addr().unwrap();
    let a = ep.handle.udp_addr();
    let cpim = "From: <sip:x@h>\r\nTo: <sip:3000@h>\r\n\r\nContent-Type: text/plain\r\nContent-Length: 18446744073709551615\r\n\r\nHello";
    let message = format!(
        "MESSAGE sip:3000@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {p};branch=z9hG4bKcpim;rport\r\nFrom: <sip:x@h>;tag=1\r\nTo: <sip:3000@{a}>\r\nCall-ID: cpim\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: message/cpim\r\nContent-Length: {}\r\n\r\n{cpim}",
        cpim.len()
    );
    peer.send_to(message.as_bytes(), a).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = timeout(Duration::from_secs(5), peer.recv_from(&mut buf)).await.expect("an answer").unwrap();
    assert!(buf[..n].starts_with(b"SIP/2.0 400 Bad CPIM Body\r\n"), "{}", String::from_utf8_lossy(&buf[..n]));
    let options = format!(
        "OPTIONS sip:{a} SIP/2.0\r\nVia: SIP/2.0/UDP {p};branch=z9hG4bKo2;rport\r\nFrom: <sip:p@h>;tag=2\r\nTo: <sip:{a}>\r\nCall-ID: o2\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    peer.send_to(options.as_bytes(), a).await.unwrap();
    let (n, _) = timeout(Duration::from_secs(5), peer.recv_from(&mut buf)).await.expect("OPTIONS answered").unwrap();
    assert!(buf[..n].starts_with(b"SIP/2.0 200 OK\r\n"), "{}", String::from_utf8_lossy(&buf[..n]));
    assert!(!ep.task.is_finished(), "the driver thread is alive");
    ep.handle.shutdown();
}

/// Deliverable of issue 14: a panic in the user agent is caught by the driver, published on
/// `Endpoint::panicked` (so the application can count it and restart), and the driver goes on
/// (OPTIONS answered, commands run), on its own thread or as a task.
#[tokio::test]
async fn a_panic_in_the_user_agent_is_published_and_the_driver_goes_on() {
    for own_thread in [true, false] {
        let mut ep = endpoint_with(false, own_thread).await;
        assert_eq!(*ep.panicked.borrow(), None);
        let r = ep.handle.with(|_, _| -> () { panic!("injected by the test") }).await;
        assert_eq!(r, Err(EndpointGone), "the panicking command's reply is dropped");
        timeout(Duration::from_secs(5), ep.panicked.changed()).await.expect("published in time").unwrap();
        assert_eq!(ep.panicked.borrow().as_deref(), Some("injected by the test"));
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (a, p) = (ep.handle.udp_addr(), peer.local_addr().unwrap());
        let options = format!(
            "OPTIONS sip:{a} SIP/2.0\r\nVia: SIP/2.0/UDP {p};branch=z9hG4bKo3;rport\r\nFrom: <sip:p@h>;tag=2\r\nTo: <sip:{a}>\r\nCall-ID: o3\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        peer.send_to(options.as_bytes(), a).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let (n, _) =
            timeout(Duration::from_secs(5), peer.recv_from(&mut buf)).await.expect("OPTIONS answered").unwrap();
        assert!(buf[..n].starts_with(b"SIP/2.0 200 OK\r\n"));
        assert_eq!(ep.handle.with(|ua, _| ua.counts()).await, Ok((1, 0, 0, 0)), "commands still run");
        assert!(!ep.task.is_finished());
        ep.handle.shutdown();
        timeout(Duration::from_secs(5), &mut ep.task).await.expect("stops").unwrap();
    }
}

/// The embedded registrar on a real socket: two endpoints register (digest) and call each
/// other through it; the contact count follows; a wrong password gets 403.
#[tokio::test]
async fn two_endpoints_call_each_other_through_the_embedded_registrar() {
    use crate::registrar::RegistrarConfig;
    use crate::transport::registrar::RegistrarEndpoint;
    use crate::ua::{Failure, RegEvent};
    let mut cfg = RegistrarConfig::new("callgate.local", "127.0.0.1:0".parse().unwrap());
    cfg.users.insert("1001".into(), "pw1".into());
    cfg.users.insert("1002".into(), "pw2".into());
    let mut reg = RegistrarEndpoint::start("127.0.0.1:0".parse().unwrap(), None, cfg).await.unwrap();
    let hop = reg.handle.reach_addr();
    assert_eq!(hop, reg.handle.local_addr());
    let mut a = endpoint(false).await;
    let mut b = endpoint(false).await;
    async fn register(ep: &mut Endpoint, hop: SocketAddr, user: &str, pw: &str) -> Option<u16> {
        let acc = Account::new(user, pw, "callgate.local", hop);
        ep.handle.with(move |ua, now| ua.register(now, acc)).await.unwrap().unwrap();
        loop {
            match next_event(ep).await {
                UaEvent::Registration { event: RegEvent::Registered { .. }, .. } => return None,
                UaEvent::Registration { event: RegEvent::Failed(Failure::Status { status, .. }), .. } => {
                    return Some(status)
                }
                _ => {}
            }
        }
    }
    assert_eq!(register(&mut a, hop, "1001", "pw1").await, None);
    assert_eq!(register(&mut b, hop, "1002", "pw2").await, None);
    assert_eq!(register(&mut b, hop, "1002", "bad").await, Some(403));
    assert_eq!(register(&mut b, hop, "4711", "pw").await, Some(404));
    timeout(Duration::from_secs(5), reg.contacts.wait_for(|n| *n == 2)).await.unwrap().unwrap();
    let alice = Account::new("1001", "pw1", "callgate.local", hop);
    let call = a
        .handle
        .with(move |ua, now| ua.invite(now, &alice, "sip:1002@callgate.local", Bytes::from_static(SDP), &[]))
        .await
        .unwrap()
        .unwrap();
    let ic = loop {
        if let UaEvent::IncomingCall(ic) = next_event(&mut b).await {
            break ic;
        }
    };
    assert_eq!(ic.source, reg.handle.local_addr());
    let bc = ic.call;
    b.handle.with(move |ua, now| ua.answer(now, bc, Bytes::from_static(SDP))).await.unwrap().unwrap();
    loop {
        if let CallEvent::Established { .. } = call_event(&mut a, call).await {
            break;
        }
    }
    a.handle.with(move |ua, now| ua.bye(now, call)).await.unwrap().unwrap();
    loop {
        if call_event(&mut b, bc).await == (CallEvent::Ended { remote: true }) {
            break;
        }
    }
    let n = reg.handle.with(|r, _| r.contacts()).await.unwrap();
    assert_eq!(n, 2);
    reg.handle.shutdown();
    reg.task.await.unwrap();
    a.handle.shutdown();
    b.handle.shutdown();
}
