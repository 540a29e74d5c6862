//! Arbitrary bytes through every entry point of the SIP codec: datagram parse with every typed
//! accessor, validation and the 400 helper, key extraction, the response builder, the standalone
//! value parsers, and the stream framer fed in random chunks.
//!
//! Besides "no panic, no hang", it checks invariants that tie the entry points together:
//! - a parsed message serialises to exactly the bytes it was parsed from, and parses again;
//! - a message that validates has keys, and they agree with its typed headers;
//! - a message that validates can be answered, and the answer parses and validates;
//! - whatever `bad_request_for` returns parses as a 400;
//! - the framer gives the same messages whether the stream arrives at once or in pieces.
#![no_main]

use bytes::Bytes;
use callgate_sip::{
    bad_request_for, keys, parse_datagram, CSeq, Challenge, Contact, Credentials, Framed, FramerConfig, Message,
    NameAddr, ParseError, StatusCode, StreamFramer, Uri, Via,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (seed, input) = match data.split_first() {
        Some((s, rest)) => (*s, rest),
        None => (0, data),
    };
    let raw = Bytes::copy_from_slice(input);

    let keys = keys::extract(input);
    match parse_datagram(raw.clone()) {
        Ok(msg) => check_message(&msg, keys.as_ref().ok()),
        Err(e) => check_bad_request(input, &e),
    }
    if let Ok(text) = std::str::from_utf8(input) {
        standalone_parsers(text);
    }
    check_framer(input, seed);
});

fn check_bad_request(raw: &[u8], err: &ParseError) {
    let _ = err.reason_phrase();
    if let Some(resp) = bad_request_for(raw, err) {
        let resp = parse_datagram(resp).expect("a 400 from bad_request_for must parse");
        assert_eq!(resp.status(), Some(StatusCode::BAD_REQUEST));
    }
}

fn check_message(msg: &Message, keys: Option<&keys::TxnKeys<'_>>) {
    let again = parse_datagram(msg.to_bytes()).expect("a parsed message parses again");
    assert_eq!(again.as_bytes(), msg.as_bytes());

    touch_everything(msg);
    match msg.validate() {
        Ok(()) => {
            let k = keys.expect("a valid message has keys");
            assert_eq!(k.top_via, msg.via().unwrap());
            assert_eq!(k.cseq, msg.cseq().unwrap());
            assert_eq!(k.call_id, msg.call_id().unwrap());
            assert_eq!(k.from_tag, msg.from().unwrap().tag());
            assert_eq!(k.to_tag, msg.to().unwrap().tag());
            if msg.is_request() {
                let resp = callgate_sip::MessageBuilder::response_to(msg, StatusCode::OK, Some("fz1"))
                    .expect("a valid request can be answered")
                    .build()
                    .expect("the answer builds");
                resp.validate().expect("the answer validates");
                assert_eq!(resp.vias().count(), msg.vias().count());
            }
        }
        Err(e) => check_bad_request(msg.as_bytes(), &e),
    }
}

fn touch_everything(msg: &Message) {
    let _ = msg.start_line();
    let _ = (msg.method(), msg.status(), msg.reason_phrase(), msg.body().len());
    if let Some(uri) = msg.request_uri() {
        touch_uri(&uri);
    }
    for h in msg.headers() {
        let _ = (h.name(), h.name_bytes(), h.value_unfolded(), h.offset());
        assert!(msg.share(h.value()).is_some());
    }
    for v in msg.vias().flatten() {
        let _ = (v.host.to_string(), v.has_rfc3261_branch(), v.params.iter().count());
    }
    for a in [msg.from(), msg.to()].into_iter().flatten() {
        touch_addr(&a);
    }
    for c in msg.contacts().flatten() {
        if let Contact::Addr(a) = c {
            touch_addr(&a);
        }
    }
    for a in msg.routes().chain(msg.record_routes()).flatten() {
        touch_addr(&a);
    }
    let _ = (msg.call_id(), msg.cseq(), msg.max_forwards(), msg.content_length(), msg.expires(), msg.retry_after());
    if let Ok(Some(ct)) = msg.content_type() {
        let _ = (ct.is("application", "sdp"), ct.params.iter().count());
    }
    for c in msg.www_authenticate().chain(msg.proxy_authenticate()).flatten() {
        touch_challenge(&c);
    }
    for c in msg.authorization().chain(msg.proxy_authorization()).flatten() {
        touch_credentials(&c);
    }
    for name in callgate_sip::HeaderName::ALL {
        let _ = msg.header_values(*name).count();
    }
}

fn touch_uri(uri: &Uri<'_>) {
    let _ = uri.as_str();
    match uri {
        Uri::Sip(u) => {
            let _ = (u.user_unescaped(), u.transport(), u.lr(), u.maddr(), u.host.ip(), u.params.iter().count());
        }
        Uri::Tel(t) => {
            let _ = (t.is_global(), t.phone_context());
        }
        Uri::Other(o) => {
            let _ = (o.scheme, o.rest);
        }
    }
}

fn touch_addr(a: &NameAddr<'_>) {
    let _ = (a.display_name_unquoted(), a.tag(), a.expires(), a.q());
    touch_uri(&a.uri);
}

fn touch_challenge(c: &Challenge<'_>) {
    let _ = (c.is_digest(), c.realm(), c.nonce(), c.opaque(), c.domain(), c.algorithm(), c.stale());
    let _ = c.qop_options().count();
}

fn touch_credentials(c: &Credentials<'_>) {
    let _ = (c.username(), c.realm(), c.nonce(), c.uri(), c.response(), c.algorithm());
    let _ = (c.cnonce(), c.opaque(), c.qop(), c.nc());
}

fn standalone_parsers(text: &str) {
    if let Ok(u) = Uri::parse(text) {
        touch_uri(&u);
    }
    let _ = Via::parse(text);
    if let Ok(a) = NameAddr::parse(text) {
        touch_addr(&a);
    }
    let _ = Contact::parse(text);
    let _ = CSeq::parse(text);
    if let Ok(c) = Challenge::parse(text) {
        touch_challenge(&c);
    }
    if let Ok(c) = Credentials::parse(text) {
        touch_credentials(&c);
    }
    let _ = callgate_sip::unquote(text);
    let _ = callgate_sip::unescape(text.as_bytes());
}

/// What a framer produced, comparable across chunkings.
#[derive(Debug, PartialEq)]
enum Out {
    Message(Bytes),
    Invalid(Bytes),
    Fatal(std::mem::Discriminant<ParseError>),
}

fn run_framer(input: &[u8], mut next_chunk: impl FnMut() -> usize) -> Vec<Out> {
    let mut framer = StreamFramer::new(FramerConfig { max_message_size: 2048 });
    let mut out = Vec::new();
    let mut i = 0;
    while i < input.len() && !framer.has_failed() {
        let n = next_chunk().clamp(1, input.len() - i);
        framer.handle_bytes(&input[i..i + n]);
        i += n;
        loop {
            match framer.poll_message() {
                Ok(Some(Framed::Message(m))) => {
                    touch_everything(&m);
                    out.push(Out::Message(m.to_bytes()));
                }
                Ok(Some(Framed::Invalid { raw, error })) => {
                    check_bad_request(&raw, &error);
                    out.push(Out::Invalid(raw));
                }
                Ok(None) => break,
                Err(e) => {
                    out.push(Out::Fatal(std::mem::discriminant(&e)));
                    break;
                }
            }
        }
        assert!(framer.buffered() <= 2048 + n, "the framer holds no more than one message");
    }
    out
}

fn check_framer(input: &[u8], seed: u8) {
    let whole = run_framer(input, || usize::MAX);
    let mut state = u32::from(seed) | 1;
    let pieces = run_framer(input, || {
        // xorshift: chunk sizes 1..=64, mostly small.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 64) as usize + 1
    });
    assert_eq!(whole, pieces, "framing must not depend on how the stream is chunked");
}
