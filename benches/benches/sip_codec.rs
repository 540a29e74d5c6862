//! The SIP codec against rsip 0.4 on the same bytes, in the same run.
//!
//! Messages: an INVITE with SDP of exactly 874 bytes, and a 200 OK with SDP (two Vias,
//! Record-Route). For each:
//! - `keys`: `callgate_sip::keys::extract` (what a transaction layer needs, no full parse);
//! - `frame_keys`: framing (the header index a stream framer also builds) plus `Message::keys`;
//! - `typed`: datagram parse plus every typed header the codec offers, read;
//! - `rsip_parse`: `rsip::SipMessage::try_from(&[u8])`;
//! - `rsip_parse_typed`: that, plus rsip's typed Via, From, To, CSeq, Contact and the Call-ID;
//! - `serialize` (ours: a parsed message back to bytes, and the same message built with the
//!   `MessageBuilder`) and `rsip_serialize` (rsip's message back to bytes).
//!
//! Run: `cargo bench -p callgate-benches --bench sip_codec -- --measurement-time 3`.
//! The throughput lines are messages per second on one core. At the end the target ratios are
//! measured again with ours and rsip alternating in short rounds (`interleaved ...` lines),
//! which keeps a shared machine's load drift out of the ratio.

use std::hint::black_box;

use bytes::Bytes;
use callgate_sip::{keys, parse_datagram, HeaderName, Message, MessageBuilder, Method};
use criterion::{criterion_group, Criterion, Throughput};
use rsip::headers::ToTypedHeader;
use rsip::prelude::{HeadersExt, UntypedHeader};

const SDP: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n\
s=Session SDP\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49172 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

/// The INVITE, padded in its User-Agent to exactly 874 bytes.
fn invite() -> Bytes {
    let head = |ua: &str| {
        format!(
            "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
Route: <sip:proxy.atlanta.example.com;lr>\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY, MESSAGE\r\n\
Supported: replaces, timer\r\n\
User-Agent: {ua}\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{SDP}",
            SDP.len()
        )
    };
    let base = head("callgate-bench/1.0").len();
    let text = head(&format!("callgate-bench/1.0 {}", "x".repeat(874 - base - 1)));
    assert_eq!(text.len(), 874, "the INVITE must be 874 bytes");
    Bytes::from(text)
}

fn ok() -> Bytes {
    Bytes::from(format!(
        "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP proxy.atlanta.example.com:5060;branch=z9hG4bK2d4790.1\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;received=192.0.2.101;rport=5060\r\n\
Record-Route: <sip:proxy.atlanta.example.com;lr>\r\n\
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:bob@192.0.2.4>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    ))
}

/// Parse, then read every typed header the codec offers; returns something derived from each.
fn full_typed(raw: &Bytes) -> usize {
    let m = parse_datagram(raw.clone()).unwrap();
    let mut n = 0;
    if let Some(u) = m.request_uri() {
        n += u.as_str().len();
    }
    for v in m.vias() {
        let v = v.unwrap();
        n += v.branch.map_or(0, str::len) + usize::from(v.port.unwrap_or(0) > 0) + usize::from(v.received.is_some());
    }
    let from = m.from().unwrap();
    let to = m.to().unwrap();
    n += from.tag().map_or(0, str::len) + to.tag().map_or(0, str::len) + from.uri.as_str().len();
    n += m.call_id().unwrap().len();
    n += m.cseq().unwrap().seq as usize;
    n += usize::from(m.max_forwards().unwrap().unwrap_or(0));
    for c in m.contacts() {
        n += c.unwrap().addr().map_or(0, |a| a.uri.as_str().len());
    }
    for r in m.routes().chain(m.record_routes()) {
        n += usize::from(r.unwrap().uri.as_sip().is_some_and(|u| u.lr()));
    }
    n += m.content_type().unwrap().map_or(0, |t| t.subtype.len());
    n += m.content_length().unwrap().unwrap_or(0);
    n += m.expires().unwrap().unwrap_or(0) as usize;
    n += m.www_authenticate().count() + m.proxy_authorization().count();
    n + m.body().len()
}

fn rsip_typed(raw: &[u8]) -> usize {
    let m = rsip::SipMessage::try_from(raw).unwrap();
    let via = m.via_header().unwrap().typed().unwrap();
    let from = m.from_header().unwrap().typed().unwrap();
    let to = m.to_header().unwrap().typed().unwrap();
    let cseq = m.cseq_header().unwrap().typed().unwrap();
    let call_id = m.call_id_header().unwrap().value().len();
    let contact = m.contact_header().unwrap().typed().unwrap();
    via.branch().map_or(0, |b| b.to_string().len())
        + from.tag().map_or(0, |t| t.value().len())
        + to.tag().map_or(0, |t| t.value().len())
        + cseq.seq as usize
        + call_id
        + contact.uri.to_string().len()
}

/// The INVITE again, through the builder.
fn build_invite(m: &Message) -> Bytes {
    let mut b = MessageBuilder::request(&Method::Invite, "sip:bob@biloxi.example.com");
    for h in m.headers().filter(|h| !matches!(h.name(), HeaderName::ContentLength | HeaderName::ContentType)) {
        b = b.header_named(std::str::from_utf8(h.name_bytes()).unwrap(), h.value());
    }
    b.body("application/sdp", m.body_bytes()).to_bytes().unwrap()
}

fn bench_message(c: &mut Criterion, name: &str, raw: Bytes) {
    // The baselines must be measuring a successful parse of the same bytes.
    assert!(full_typed(&raw) > 0 && rsip_typed(&raw) > 0);
    let mut g = c.benchmark_group(format!("sip_codec/{name}"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("keys", |b| b.iter(|| keys::extract(black_box(&raw)).unwrap().cseq.seq));
    g.bench_function("frame_keys", |b| {
        b.iter(|| {
            let m = parse_datagram(black_box(raw.clone())).unwrap();
            m.keys().unwrap().cseq.seq
        })
    });
    g.bench_function("typed", |b| b.iter(|| full_typed(black_box(&raw))));
    g.bench_function("rsip_parse", |b| b.iter(|| rsip::SipMessage::try_from(black_box(&raw[..])).unwrap()));
    g.bench_function("rsip_parse_typed", |b| b.iter(|| rsip_typed(black_box(&raw))));

    let parsed = parse_datagram(raw.clone()).unwrap();
    g.bench_function("serialize", |b| b.iter(|| black_box(&parsed).to_bytes()));
    if parsed.is_request() {
        assert_eq!(build_invite(&parsed), raw, "the builder reproduces the INVITE byte for byte");
        g.bench_function("serialize_built", |b| b.iter(|| build_invite(black_box(&parsed))));
    }
    let rsip_msg = rsip::SipMessage::try_from(&raw[..]).unwrap();
    g.bench_function("rsip_serialize", |b| b.iter(|| black_box(&rsip_msg).to_string()));
    g.finish();
}

fn sip_codec(c: &mut Criterion) {
    bench_message(c, "invite_874", invite());
    bench_message(c, "ok_200", ok());
}

/// Medians over short alternating rounds of `ours` and `theirs`: (ours ns, theirs ns, ratio).
/// On a shared machine the load drifts between criterion's sequential benchmarks; alternating
/// keeps both sides under the same load, so the ratio is the number to read.
fn interleaved(mut ours: impl FnMut() -> usize, mut theirs: impl FnMut() -> usize) -> (f64, f64, f64) {
    const ROUNDS: usize = 31;
    const ITERS: u32 = 2_000;
    let (mut a, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = std::time::Instant::now();
        for _ in 0..ITERS {
            black_box(ours());
        }
        let ta = t.elapsed().as_nanos() as f64 / f64::from(ITERS);
        let t = std::time::Instant::now();
        for _ in 0..ITERS {
            black_box(theirs());
        }
        let tb = t.elapsed().as_nanos() as f64 / f64::from(ITERS);
        a.push(ta);
        b.push(tb);
        r.push(tb / ta);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(&mut a), median(&mut b), median(&mut r))
}

/// The ratios the targets are stated in, measured interleaved.
fn ratios() {
    for (name, raw) in [("invite_874", invite()), ("ok_200", ok())] {
        let rsip_typed = || rsip_typed(black_box(&raw));
        let rsip_parse = || rsip::SipMessage::try_from(black_box(&raw[..])).unwrap().body().len();
        let keys = || keys::extract(black_box(&raw)).unwrap().cseq.seq as usize;
        let frame_keys = || parse_datagram(black_box(raw.clone())).unwrap().keys().unwrap().cseq.seq as usize;
        let typed = || full_typed(black_box(&raw));
        for (what, (ours, theirs, ratio), baseline) in [
            ("keys", interleaved(keys, rsip_typed), "rsip_parse_typed"),
            ("frame_keys", interleaved(frame_keys, rsip_typed), "rsip_parse_typed"),
            ("typed", interleaved(typed, rsip_parse), "rsip_parse"),
        ] {
            println!("interleaved {name}: {what} {ours:.0} ns vs {baseline} {theirs:.0} ns = {ratio:.2}x");
        }
    }
}

criterion_group!(benches, sip_codec);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if !std::env::args().any(|a| a == "--list" || a == "--test") {
        ratios();
    }
}
