//! Transaction keys straight from the bytes, without building a [`crate::Message`].
//!
//! A transaction layer looks up every incoming message by its top Via branch and sent-by, its
//! CSeq method, and for dialogs its Call-ID and tags (RFC 3261 §17.1.3, §17.2.3, §12). This
//! module finds just those five headers with `memchr` line scanning (checking only the first
//! byte of each line before looking closer), stops as soon as it has all five, and parses only
//! their values. The values it returns are validated exactly as the typed accessors do.
//!
//! ```
//! let raw = b"SIP/2.0 180 Ringing\r\n\
//!     Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds\r\n\
//!     To: Bob <sip:bob@example.com>;tag=a6c85cf\r\n\
//!     From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
//!     Call-ID: a84b4c76e66710\r\n\
//!     CSeq: 314159 INVITE\r\n\
//!     Content-Length: 0\r\n\r\n";
//! let keys = callgate_sip::keys::extract(raw).unwrap();
//! assert_eq!(keys.branch(), Some("z9hG4bK776asdhds"));
//! assert_eq!(keys.cseq.method, callgate_sip::Method::Invite);
//! assert_eq!(keys.to_tag, Some("a6c85cf"));
//! ```

use crate::error::{Fault, ParseError};
use crate::lex::{self, Bad};
use crate::message::{Message, Start};
use crate::method::{Method, StatusCode};
use crate::name::HeaderName;
use crate::parse;
use crate::typed::addr;
use crate::typed::simple::{self, CSeq};
use crate::typed::via::{self, Via};

/// Request or response, as the start line says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartKind {
    Request(Method),
    Response(StatusCode),
}

/// What a transaction or dialog layer needs to route a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnKeys<'a> {
    pub start: StartKind,
    /// The topmost Via value: branch, sent-by, transport, `received`, `rport`.
    pub top_via: Via<'a>,
    pub cseq: CSeq,
    pub call_id: &'a str,
    pub from_tag: Option<&'a str>,
    pub to_tag: Option<&'a str>,
}

impl<'a> TxnKeys<'a> {
    /// The top Via branch.
    pub fn branch(&self) -> Option<&'a str> {
        self.top_via.branch
    }

    /// The request method, or for a response the CSeq method (which names its transaction).
    pub fn method(&self) -> &Method {
        match &self.start {
            StartKind::Request(m) => m,
            StartKind::Response(_) => &self.cseq.method,
        }
    }
}

const VIA: usize = 0;
const CSEQ: usize = 1;
const CALL_ID: usize = 2;
const FROM: usize = 3;
const TO: usize = 4;
const WANTED: [HeaderName; 5] =
    [HeaderName::Via, HeaderName::CSeq, HeaderName::CallId, HeaderName::From, HeaderName::To];

/// Extracts the transaction keys of the message at the start of `raw` (leading line ends are
/// skipped). Offsets in errors are into `raw`.
pub fn extract(raw: &[u8]) -> Result<TxnKeys<'_>, ParseError> {
    let mut i = parse::leading_line_ends(raw);
    if i == raw.len() {
        return Err(ParseError::Empty);
    }
    let nl = memchr::memchr(b'\n', &raw[i..]).ok_or(ParseError::Incomplete)? + i;
    let start = start_kind(raw, i, line_end(raw, i, nl))?;
    i = nl + 1;
    let mut spans: [Option<(usize, usize)>; 5] = [None; 5];
    let mut missing = spans.len();
    while missing > 0 {
        let nl = memchr::memchr(b'\n', &raw[i.min(raw.len())..]).ok_or(ParseError::Incomplete)? + i;
        let end = line_end(raw, i, nl);
        if end == i {
            break;
        }
        let mut next = nl + 1;
        // Only Via/v, CSeq, Call-ID/i, From/f, To/t can matter: look closer at lines that
        // start with one of those letters.
        if matches!(raw[i] | 0x20, b'v' | b'c' | b'i' | b'f' | b't') {
            if let Some(colon) = memchr::memchr(b':', &raw[i..end]) {
                let colon = i + colon;
                let (n0, n1) = lex::trim_lws(raw, i, colon);
                let name = HeaderName::from_bytes(&raw[n0..n1]);
                if let Some(k) = WANTED.iter().position(|w| *w == name) {
                    let mut value_end = end;
                    while next < raw.len() && matches!(raw[next], b' ' | b'\t') {
                        let nl2 = memchr::memchr(b'\n', &raw[next..]).ok_or(ParseError::Incomplete)? + next;
                        value_end = line_end(raw, next, nl2);
                        next = nl2 + 1;
                    }
                    if spans[k].is_none() {
                        spans[k] = Some(lex::trim_lws(raw, colon + 1, value_end));
                        missing -= 1;
                    }
                }
            }
        }
        i = next;
    }

    let text = |k: usize| -> Result<(usize, &str), ParseError> {
        let (a, b) = spans[k].ok_or(ParseError::MissingHeader { header: WANTED[k] })?;
        let s = lex::utf8(&raw[a..b]).map_err(|e| header_error(k, a, e))?;
        Ok((a, s))
    };
    let (a, v) = text(VIA)?;
    let top_via = top_via(v).map_err(|e| header_error(VIA, a, e))?;
    let (a, v) = text(CSEQ)?;
    let cseq = simple::parse_cseq(v).map_err(|e| header_error(CSEQ, a, e))?;
    let (a, v) = text(CALL_ID)?;
    let call_id = simple::parse_call_id(v).map_err(|e| header_error(CALL_ID, a, e))?;
    let (a, v) = text(FROM)?;
    let from_tag = addr::tag_only(v).map_err(|e| header_error(FROM, a, e))?;
    let (a, v) = text(TO)?;
    let to_tag = addr::tag_only(v).map_err(|e| header_error(TO, a, e))?;
    Ok(TxnKeys { start, top_via, cseq, call_id, from_tag, to_tag })
}

impl Message {
    /// The transaction keys of a parsed message, read through its header index instead of
    /// rescanning the bytes: the cheap path when a stream framer has already made the
    /// [`Message`]. Same values and faults as [`extract`] (first occurrence of each header).
    pub fn keys(&self) -> Result<TxnKeys<'_>, ParseError> {
        let start = match &self.start {
            Start::Request { method, .. } => StartKind::Request(method.clone()),
            Start::Response { status, .. } => StartKind::Response(*status),
        };
        let text = |k: usize| -> Result<(usize, &str), ParseError> {
            let e = self
                .headers
                .iter()
                .find(|e| e.name == WANTED[k])
                .ok_or(ParseError::MissingHeader { header: WANTED[k] })?;
            Ok((e.value.start as usize, self.value_str(e)?))
        };
        let (a, v) = text(VIA)?;
        let top_via = top_via(v).map_err(|e| header_error(VIA, a, e))?;
        let (a, v) = text(CSEQ)?;
        let cseq = simple::parse_cseq(v).map_err(|e| header_error(CSEQ, a, e))?;
        let (a, v) = text(CALL_ID)?;
        let call_id = simple::parse_call_id(v).map_err(|e| header_error(CALL_ID, a, e))?;
        let (a, v) = text(FROM)?;
        let from_tag = addr::tag_only(v).map_err(|e| header_error(FROM, a, e))?;
        let (a, v) = text(TO)?;
        let to_tag = addr::tag_only(v).map_err(|e| header_error(TO, a, e))?;
        Ok(TxnKeys { start, top_via, cseq, call_id, from_tag, to_tag })
    }
}

/// The first value of a Via header line; faults are relative to the line's value.
fn top_via(v: &str) -> Result<Via<'_>, Bad> {
    let (e0, e1) = lex::ListIter::new(v.as_bytes()).next().unwrap_or((0, 0));
    if e0 == e1 {
        return Err(Bad::new(e0, Fault::EmptyElement));
    }
    via::parse_via(lex::sub(v, e0, e1)?).map_err(|e| e.shift(e0))
}

fn header_error(k: usize, base: usize, e: Bad) -> ParseError {
    ParseError::Header { header: WANTED[k], at: base + e.at, fault: e.fault }
}

/// End of the content of the line `[start, nl)`: before a CR that precedes the LF.
fn line_end(raw: &[u8], start: usize, nl: usize) -> usize {
    if nl > start && raw[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    }
}

fn start_kind(raw: &[u8], i: usize, end: usize) -> Result<StartKind, ParseError> {
    let line = &raw[i..end];
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        if line.len() < 8 || !line[..8].eq_ignore_ascii_case(b"SIP/2.0 ") {
            return Err(ParseError::Version { at: i });
        }
        let code = &line[8..];
        let ok = code.len() >= 3 && code[..3].iter().all(u8::is_ascii_digit) && code.get(3).is_none_or(|c| *c == b' ');
        let status = ok
            .then(|| lex::parse_decimal(&code[..3], 999).ok())
            .flatten()
            .and_then(|c| StatusCode::new(c as u16))
            .ok_or(ParseError::StartLine { at: i + 8, fault: Fault::InvalidStatus })?;
        return Ok(StartKind::Response(status));
    }
    let sp = memchr::memchr(b' ', line).ok_or(ParseError::StartLine { at: end, fault: Fault::UnexpectedEnd })?;
    let method = Method::from_bytes(&line[..sp]).ok_or(ParseError::StartLine { at: i, fault: Fault::InvalidMethod })?;
    Ok(StartKind::Request(method))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uri::Host;

    const INVITE: &[u8] = b"\r\nINVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5062;branch=z9hG4bK776asdhds, SIP/2.0/UDP other.example.com\r\n\
Max-Forwards: 70\r\n\
t: Bob <sip:bob@biloxi.example.com>\r\n\
f: \"Alice, A.\" <sip:alice@atlanta.example.com>\r\n ;tag=1928301774\r\n\
i: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159\r\n INVITE\r\n\
Via: SIP/2.0/UDP not-the-top.example.com;branch=z9hG4bKnope\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn keys_of_a_request_with_compact_and_folded_headers() {
        let k = extract(INVITE).unwrap();
        assert_eq!(k.start, StartKind::Request(Method::Invite));
        assert_eq!(k.branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(k.top_via.host, Host::Domain("pc33.atlanta.example.com"));
        assert_eq!(k.top_via.port, Some(5062));
        assert_eq!(k.cseq, CSeq { seq: 314159, method: Method::Invite });
        assert_eq!(k.call_id, "a84b4c76e66710@pc33.atlanta.example.com");
        assert_eq!(k.from_tag, Some("1928301774"));
        assert_eq!(k.to_tag, None);
        assert_eq!(k.method(), &Method::Invite);
    }

    #[test]
    fn keys_agree_with_the_full_parse() {
        let m = crate::parse_datagram(bytes::Bytes::from_static(INVITE)).unwrap();
        let k = extract(INVITE).unwrap();
        assert_eq!(m.via().unwrap(), k.top_via);
        assert_eq!(m.cseq().unwrap(), k.cseq);
        assert_eq!(m.call_id().unwrap(), k.call_id);
        assert_eq!(m.from().unwrap().tag(), k.from_tag);
        assert_eq!(m.to().unwrap().tag(), k.to_tag);
    }

    #[test]
    fn keys_from_the_index_equal_keys_from_the_bytes() {
        let m = crate::parse_datagram(bytes::Bytes::from_static(INVITE)).unwrap();
        assert_eq!(m.keys().unwrap(), extract(INVITE).unwrap());
        let bad = crate::parse_datagram(bytes::Bytes::from_static(
            b"SIP/2.0 200 OK\nVia: SIP/2.0/UDP h;;\nCSeq: 1 BYE\ni: x\nf: <sip:a@h>\nt: <sip:b@h>\n\n",
        ))
        .unwrap();
        assert!(matches!(bad.keys().unwrap_err(), ParseError::Header { header: HeaderName::Via, at: 34, .. }));
    }

    #[test]
    fn errors() {
        let missing = b"SIP/2.0 200 OK\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nCSeq: 1 BYE\n\n";
        assert_eq!(extract(missing).unwrap_err(), ParseError::MissingHeader { header: HeaderName::CallId });
        let bad = b"SIP/2.0 200 OK\nVia: SIP/2.0/UDP h;;\nCSeq: 1 BYE\ni: x\nf: <sip:a@h>\nt: <sip:b@h>\n\n";
        assert!(matches!(extract(bad).unwrap_err(), ParseError::Header { header: HeaderName::Via, at: 34, .. }));
        assert!(matches!(extract(b"SIP/2.0 20 OK\n\n").unwrap_err(), ParseError::StartLine { .. }));
        assert_eq!(extract(b"\r\n").unwrap_err(), ParseError::Empty);
        assert_eq!(extract(b"INVITE sip:a@h SIP/2.0\r\nVia: x").unwrap_err(), ParseError::Incomplete);
    }
}
