//! Answering a request that failed to parse: `400 Bad Request` with a reason phrase naming the
//! problem (RFC 3261 §21.4.1), when enough of the request can be read to answer it.

use std::fmt::Write;

use bytes::Bytes;

use crate::builder::MessageBuilder;
use crate::error::ParseError;
use crate::lenient;
use crate::lex;
use crate::message::unfold;
use crate::method::StatusCode;
use crate::name::HeaderName;
use crate::typed::{addr, via};

/// The `400 Bad Request` (`513 Message Too Large` for [`ParseError::TooLarge`]) to send back
/// for `raw`, which failed with `err`, or `None` when it cannot be answered.
///
/// A response needs what the client matches it by (RFC 3261 §8.2.6.2, §17.1.3): a readable top
/// Via (the response is also routed by it), From, To, Call-ID, and a CSeq of the form
/// `number method` (an overflowing number is copied as received, RFC 4475 §3.1.2.4). Responses
/// and ACKs are never answered. The headers are copied as received (folds unfolded); a To tag
/// is added when To has none, derived from the request so that a retransmission gets the same
/// response. The reason phrase is [`ParseError::reason_phrase`].
pub fn bad_request_for(raw: &[u8], err: &ParseError) -> Option<Bytes> {
    let head = lenient::scan(raw)?;
    let line = head.start_line;
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        return None;
    }
    let method = &line[..memchr::memchr(b' ', line)?];
    if method.is_empty() || lex::skip(method, 0, lex::TOKEN) != method.len() || method == b"ACK" {
        return None;
    }

    let top = head.first(HeaderName::Via)?;
    let (a, b) = lex::ListIter::new(top).next()?;
    via::parse_via(std::str::from_utf8(&top[a..b]).ok()?).ok()?;
    let from = head.first(HeaderName::From).filter(|v| !v.is_empty())?;
    let to = head.first(HeaderName::To).filter(|v| !v.is_empty())?;
    let call_id = head.first(HeaderName::CallId).filter(|v| !v.is_empty())?;
    let cseq = head.first(HeaderName::CSeq).filter(|v| cseq_shaped(v))?;

    let mut to_value = unfold(to).into_owned();
    let to_tag = std::str::from_utf8(to).ok().and_then(|t| addr::tag_only(t).ok());
    if to_tag == Some(None) {
        let mut tag = String::from(";tag=");
        let _ = write!(tag, "{:016x}", fnv1a(&[line, top, from, call_id, cseq]));
        to_value.extend_from_slice(tag.as_bytes());
    }

    // Over the size limit: 513 (RFC 3261 §21.5.14) with its canonical phrase; any other fault
    // is a 400 whose phrase names it.
    let (status, mut reason) = match err {
        ParseError::TooLarge { .. } => (StatusCode::MESSAGE_TOO_LARGE, "Message Too Large".to_owned()),
        _ => (StatusCode::BAD_REQUEST, err.reason_phrase()),
    };
    reason.retain(|c| !c.is_control());
    reason.truncate(reason.char_indices().nth(120).map_or(reason.len(), |(i, _)| i));
    let mut resp = MessageBuilder::response(status, Some(&reason));
    for v in head.all(HeaderName::Via) {
        resp = resp.header(HeaderName::Via, unfold(v));
    }
    resp.header(HeaderName::From, unfold(from))
        .header(HeaderName::To, to_value)
        .header(HeaderName::CallId, unfold(call_id))
        .header(HeaderName::CSeq, unfold(cseq))
        .to_bytes()
        .ok()
}

/// `1*DIGIT LWS token`, without bounding the number.
fn cseq_shaped(v: &[u8]) -> bool {
    let d = lex::skip(v, 0, lex::DIGIT);
    let m = lex::skip_lws(v, d);
    let e = lex::skip(v, m, lex::TOKEN);
    d > 0 && m > d && e > m && e == v.len()
}

/// FNV-1a, 64 bits: a stable, dependency-free hash for the To tag.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_datagram;

    const SCALAR: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3\r\n\
To: <sip:user@example.com>\r\n\
From: <sip:user@example.com>;tag=239232jh3\r\n\
CSeq: 36893488147419103232 REGISTER\r\n\
Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32\r\n\
Max-Forwards: 300\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn answers_an_overflowing_cseq_with_the_reason() {
        let err = parse_datagram(Bytes::from_static(SCALAR)).unwrap().validate().unwrap_err();
        let resp = bad_request_for(SCALAR, &err).unwrap();
        let resp = parse_datagram(resp).unwrap();
        assert_eq!(resp.status(), Some(StatusCode::BAD_REQUEST));
        assert_eq!(resp.reason_phrase(), Some(&b"Invalid CSeq header: number out of range"[..]));
        assert_eq!(resp.via().unwrap().branch, Some("z9hG4bK342sdfoi3"));
        assert_eq!(resp.header(HeaderName::CSeq).unwrap().value(), b"36893488147419103232 REGISTER");
        let tag = resp.to().unwrap().tag().unwrap().to_owned();
        // A retransmission gets the same tag.
        let again = parse_datagram(bad_request_for(SCALAR, &err).unwrap()).unwrap();
        assert_eq!(again.to().unwrap().tag(), Some(tag.as_str()));
    }

    #[test]
    fn answers_a_broken_header_line() {
        let raw = b"OPTIONS sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK9\r\nbroken\r\nFrom: <sip:x@h>;tag=1\r\nTo: <sip:a@h>;tag=2\r\ni: c\r\nCSeq: 1\r\n OPTIONS\r\n\r\n";
        let err = parse_datagram(Bytes::from_static(raw)).unwrap_err();
        let resp = parse_datagram(bad_request_for(raw, &err).unwrap()).unwrap();
        assert_eq!(resp.reason_phrase(), Some(&b"Malformed header line: header line without ':'"[..]));
        assert_eq!(resp.to().unwrap().tag(), Some("2"));
        assert_eq!(resp.cseq().unwrap().seq, 1);
    }

    #[test]
    fn stays_silent_when_it_cannot_answer() {
        let err = ParseError::Empty;
        let no_via = b"OPTIONS sip:a@h SIP/2.0\r\nFrom: <sip:x@h>\r\nTo: <sip:a@h>\r\ni: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let bad_via = b"OPTIONS sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP\r\nFrom: <sip:x@h>\r\nTo: <sip:a@h>\r\ni: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let ack = b"ACK sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:x@h>\r\nTo: <sip:a@h>\r\ni: c\r\nCSeq: 1 ACK\r\n\r\n";
        let response =
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:x@h>\r\nTo: <sip:a@h>\r\ni: c\r\nCSeq: 1 ACK\r\n\r\n";
        let no_cseq_method = b"OPTIONS sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:x@h>\r\nTo: <sip:a@h>\r\ni: c\r\nCSeq: 1\r\n\r\n";
        for raw in [&no_via[..], bad_via, ack, response, no_cseq_method, b"", b"\r\n"] {
            assert!(bad_request_for(raw, &err).is_none(), "{}", String::from_utf8_lossy(raw));
        }
    }
}
