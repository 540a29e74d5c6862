//! Whole-message tests: our own messages built on the structural tricks of each RFC 4475 case
//! (same trick, our hostnames, tags and values), the IPv6 cases of RFC 4475 §4, `tel:` URIs.
//!
//! Every message here is written with `\n` line ends and turned into CRLF by [`wire`]; `{CL}`
//! is replaced by the length of the body, so the bodies can be edited freely.

mod hostile;
mod ipv6_tel;
mod rfc4475_invalid;
mod rfc4475_valid;

use bytes::Bytes;

use crate::{keys, parse_datagram, Framed, Message, ParseError, StreamFramer};

/// CRLF line ends, and `{CL}` set to the body length.
pub(super) fn wire(text: &str) -> Bytes {
    let crlf = text.replace('\n', "\r\n");
    let body_len = crlf.find("\r\n\r\n").map_or(0, |p| crlf.len() - p - 4);
    Bytes::from(crlf.replace("{CL}", &body_len.to_string()))
}

/// Parses and validates, and checks the properties every valid message must have: byte-exact
/// serialisation, the same message through a stream framer fed one byte at a time, and keys
/// that agree with the typed headers.
pub(super) fn valid(raw: &Bytes) -> Message {
    let msg = parse_datagram(raw.clone()).unwrap_or_else(|e| panic!("parse: {e}"));
    msg.validate().unwrap_or_else(|e| panic!("validate: {e}"));
    assert_eq!(msg.to_bytes(), *raw, "serialising an unchanged message gives its bytes back");

    let k = keys::extract(raw).unwrap_or_else(|e| panic!("keys: {e}"));
    assert_eq!(k.top_via, msg.via().unwrap());
    assert_eq!(k.cseq, msg.cseq().unwrap());
    assert_eq!(k.call_id, msg.call_id().unwrap());
    assert_eq!(k.from_tag, msg.from().unwrap().tag());
    assert_eq!(k.to_tag, msg.to().unwrap().tag());

    if msg.content_length().unwrap().is_some() {
        let mut framer = StreamFramer::default();
        let mut got = Vec::new();
        for b in raw.iter() {
            framer.handle_bytes(&[*b]);
            while let Some(f) = framer.poll_message().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 1);
        let Framed::Message(m) = &got[0] else { panic!("stream framing failed") };
        assert_eq!(m.as_bytes(), msg.as_bytes());
    }
    msg
}

/// The error of parsing and validating `raw`.
pub(super) fn invalid(raw: &Bytes) -> ParseError {
    match parse_datagram(raw.clone()).and_then(|m| m.validate()) {
        Ok(()) => panic!("accepted:\n{}", String::from_utf8_lossy(raw)),
        Err(e) => e,
    }
}
