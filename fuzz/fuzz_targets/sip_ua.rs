//! Arbitrary bytes through the user-agent layer (issue 14): the body parsers the UA runs on what
//! arrives (CPIM, IMDN, sipfrag, DTMF INFO), the SDP helpers of the UA and of the media bridge,
//! RTP parsing, and whole datagrams through a sans-IO `UserAgent` that has a registration, a
//! call, a MESSAGE and a subscription in flight.
//!
//! The first byte picks the entry point, so one corpus covers them all. Besides "no panic, no
//! hang", it checks:
//! - a CPIM's inner body is a slice of the body, never longer than what arrived;
//! - an IMDN document we write for a parsed Message-ID parses back to it;
//! - a DTMF digit is one of 0-9 * # A-D, a sipfrag status is 100-699;
//! - the o= version we write is the one read back;
//! - an SDP the media bridge accepts gives it a remote address; its own SDP is accepted;
//! - video: an offer's chosen codec is one its video m-line lists; SDP a video leg takes gives it
//!   an address; its own offer is taken; RTP/RTCP on its port never panics;
//! - an RTP payload lies inside the packet;
//! - every datagram the user agent sends parses.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use callgate_media::bridge::{RtpLatching, SipLeg, G711};
use callgate_sip::parse_datagram;
use callgate_sip::ua::{
    imdn_xml, parse_cpim, parse_dtmf, parse_imdn, parse_sipfrag, sdp, Account, Direction, ImdnStatus, UaConfig,
    UaEvent, UserAgent,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else { return };
    match selector % 6 {
        0 => cpim(input),
        1 => imdn(input),
        2 => small_bodies(input),
        3 => ua_sdp(input),
        4 => media(input),
        _ => datagrams(input),
    }
});

fn cpim(input: &[u8]) {
    let body = Bytes::copy_from_slice(input);
    if let Ok(Some((info, content_type, inner))) = parse_cpim(&body) {
        assert!(inner.len() <= body.len());
        let at = inner.as_ptr() as usize - body.as_ptr() as usize;
        assert!(inner.is_empty() || (at + inner.len() <= body.len() && body[at..at + inner.len()] == inner[..]));
        let _ = (info.from, info.message_id, info.disposition_notification, content_type.len());
    }
}

fn imdn(input: &[u8]) {
    let Some(n) = parse_imdn(input) else { return };
    assert!(!n.message_id.is_empty());
    let id = n.message_id.as_str();
    // What we write is escaped and trimmed XML text without control characters.
    if id == id.trim() && !id.chars().any(char::is_control) {
        let xml = imdn_xml(id, Some("2026-05-01T10:20:30Z"), "sip:b@h", n.status);
        let back = parse_imdn(xml.as_bytes()).expect("our own IMDN document parses");
        assert_eq!(back.message_id, id);
        let same_kind = |s: ImdnStatus| match s {
            ImdnStatus::Displayed => 1,
            ImdnStatus::Processed => 2,
            _ => 0,
        };
        assert_eq!(same_kind(back.status), same_kind(n.status));
    }
}

fn small_bodies(input: &[u8]) {
    for ct in ["application/dtmf-relay", "application/dtmf", "APPLICATION/DTMF"] {
        if let Some((digit, _duration)) = parse_dtmf(ct, input) {
            if ct.eq_ignore_ascii_case("application/dtmf-relay") {
                assert!(matches!(digit, '0'..='9' | '*' | '#' | 'A'..='D'), "{digit:?}");
            }
        }
    }
    if let Some((status, reason)) = parse_sipfrag(input) {
        assert!((100..700).contains(&status));
        assert!(!reason.contains('\n'));
    }
}

fn ua_sdp(input: &[u8]) {
    let _ = sdp::direction(input);
    for d in [Direction::SendRecv, Direction::SendOnly, Direction::RecvOnly, Direction::Inactive] {
        let out = sdp::with_direction(input, d);
        let _ = sdp::direction(&out);
    }
    let v = u64::from(input.len() as u32) * 7 + 1;
    let rewritten = sdp::with_origin_version(input, v);
    // The first o= line read with the same rules as `origin_version`, when it is one we rewrite.
    if let Ok(text) = std::str::from_utf8(input) {
        let first = text.lines().find_map(|l| l.strip_prefix("o="));
        let rewritable = first.is_some_and(|o| {
            let p: Vec<&str> = o.trim_end_matches('\r').split(' ').collect();
            p.len() == 6 && p[2].parse::<u64>().is_ok() && !o.contains('\r')
        });
        if rewritable && sdp::origin_version(input).is_some() {
            assert_eq!(sdp::origin_version(&rewritten), Some(v), "{text:?}");
        }
    }
}

fn media(input: &[u8]) {
    if let Some((_h, payload)) = callgate_media::rtp::parse(input) {
        let at = payload.as_ptr() as usize - input.as_ptr() as usize;
        assert!(at + payload.len() <= input.len());
    }
    let Ok(text) = std::str::from_utf8(input) else { return };
    let _ = callgate_media::sdp::mids(text);
    let _ = callgate_media::sdp::strip_msid(text);
    let _ = callgate_media::sdp::unify_msid(text, "stream-1");
    let local: SocketAddr = "192.0.2.10:40000".parse().unwrap();
    for codec in [G711::Pcmu, G711::Pcma] {
        let mut leg = SipLeg::new(codec, local, Instant::now(), 7, RtpLatching::Sdp);
        if leg.apply_remote_sdp(text).is_ok() {
            assert!(leg.remote.is_some_and(|r| r.port() != 0));
        }
        // What we offer or answer is what we accept.
        let ours = leg.sdp(local.ip(), 1);
        let mut other =
            SipLeg::new(codec, "192.0.2.11:40002".parse().unwrap(), Instant::now(), 8, RtpLatching::default());
        other.apply_remote_sdp(&ours).expect("our own SDP is acceptable");
    }
    video(input, text);
}

fn video(input: &[u8], text: &str) {
    use callgate_media::video::{choose_video, refused_video, rtcp_asks_keyframe, VideoLeg};
    let _ = rtcp_asks_keyframe(input);
    let _ = refused_video(text);
    let Some(format) = choose_video(text) else { return };
    let listed = text.lines().any(|l| {
        let mut f = l.strip_prefix("m=").unwrap_or("").split_whitespace();
        f.next() == Some("video") && f.skip(2).any(|p| p.parse::<u8>() == Ok(format.pt))
    });
    assert!(listed, "{text:?}");
    let mut leg = VideoLeg::new(format, "192.0.2.10:40002".parse().unwrap(), 7, RtpLatching::Sdp);
    if leg.apply_remote_sdp(text) {
        assert!(leg.accepted());
    }
    let _ = leg.from_sip("192.0.2.11:4000".parse().unwrap(), input);
    let _ = leg.pli();
    // What we offer, another leg for the same format takes.
    let ours = format!("v=0\r\nc=IN IP4 192.0.2.10\r\n{}", leg.sdp_section(true));
    let mut other = VideoLeg::new(leg.format.clone(), "192.0.2.11:40004".parse().unwrap(), 8, RtpLatching::Sdp);
    assert!(other.apply_remote_sdp(&ours), "{ours:?}");
    assert!(other.remote.is_some_and(|r| r.port() == 40002));
}

const SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n";

/// Datagrams separated by `\0\0\0\0`, from the PBX, to a user agent with something of every
/// kind in flight (fixed seed: the branches and tags it uses are the same every run, so the
/// fuzzer can learn them).
fn datagrams(input: &[u8]) {
    let t0 = Instant::now();
    let pbx: SocketAddr = "192.0.2.20:5060".parse().unwrap();
    let mut ua = UserAgent::new(UaConfig::new("192.0.2.10:5070".parse().unwrap()));
    let account = Account::new("3000", "secret", "pbx.example.com", pbx);
    let _ = ua.register(t0, account.clone());
    let _ = ua.invite(t0, &account, "sip:3001@pbx.example.com", Bytes::from_static(SDP), &[]);
    let _ =
        ua.message(t0, &account, "sip:3001@pbx.example.com", "text/plain", Bytes::from_static(b"hi"), Some(UNIX_EPOCH));
    let _ = ua.subscribe(t0, &account, "sip:3001@pbx.example.com", "presence", 600, None);
    drain(&mut ua, t0);
    let mut now = t0;
    for (i, datagram) in split(input).enumerate() {
        now += Duration::from_millis(10);
        let from = if i % 3 == 2 { "198.51.100.9:5060".parse().unwrap() } else { pbx };
        let _ = ua.handle_datagram(now, from, Bytes::copy_from_slice(datagram));
        drain(&mut ua, now);
    }
    // Let every timer run out: everything ends, nothing panics.
    for _ in 0..200 {
        let Some(at) = ua.poll_timeout() else { break };
        now = at.max(now);
        ua.handle_timeout(now);
        drain(&mut ua, now);
    }
}

fn split(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(input);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr_sep(r) {
            Some(i) => {
                rest = Some(&r[i + 4..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
    .take(16)
}

fn memchr_sep(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\0\0\0\0")
}

/// Sends nothing anywhere: checks what would be sent, and answers what the application would.
fn drain(ua: &mut UserAgent, now: Instant) {
    for _ in 0..64 {
        let mut idle = true;
        while let Some(t) = ua.poll_transmit() {
            idle = false;
            if let Err(e) = parse_datagram(t.bytes.clone()) {
                panic!("the user agent sent what does not parse ({e}): {:?}", String::from_utf8_lossy(&t.bytes));
            }
        }
        while let Some(e) = ua.poll_event() {
            idle = false;
            match e {
                UaEvent::IncomingCall(c) => {
                    let _ = ua.provisional(now, c.call, 180, None);
                    let _ = ua.answer(now, c.call, Bytes::from_static(SDP));
                }
                UaEvent::IncomingMessage(m) => {
                    let _ = ua.respond(now, m.req, 200, None);
                }
                _ => {}
            }
        }
        if idle {
            return;
        }
    }
}
