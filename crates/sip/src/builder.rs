//! Building requests and responses, and serialising them.
//!
//! Headers go out in the order they are added, each on one line (`Name: value\r\n`), with
//! `Content-Length` computed from the body and written last. Anything that could break the
//! framing (a CR or LF in a value, a name that is not a token) is refused when the message is
//! finished, so a built message always parses back to itself.
//!
//! ```
//! use callgate_sip::{HeaderName, MessageBuilder, Method, StatusCode};
//!
//! let invite = MessageBuilder::request(&Method::Invite, "sip:bob@example.com")
//!     .header(HeaderName::Via, "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9")
//!     .header(HeaderName::MaxForwards, "70")
//!     .header(HeaderName::From, "<sip:alice@example.com>;tag=9fxced76sl")
//!     .header(HeaderName::To, "<sip:bob@example.com>")
//!     .header(HeaderName::CallId, "3848276298220188511@192.0.2.1")
//!     .header(HeaderName::CSeq, "1 INVITE")
//!     .header_named("X-Session", "42")
//!     .body("application/sdp", &b"v=0\r\n"[..])
//!     .build()
//!     .unwrap();
//! assert_eq!(invite.content_length().unwrap(), Some(5));
//!
//! let ringing = MessageBuilder::response_to(&invite, StatusCode::RINGING, Some("a6c85cf"))
//!     .unwrap()
//!     .build()
//!     .unwrap();
//! assert_eq!(ringing.to().unwrap().tag(), Some("a6c85cf"));
//! assert_eq!(ringing.cseq().unwrap(), invite.cseq().unwrap());
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Fault, ParseError};
use crate::lex;
use crate::message::Message;
use crate::method::{Method, StatusCode};
use crate::name::HeaderName;
use crate::parse;
use crate::uri::{self, Uri};

/// Builds one request or response. Errors are kept until [`MessageBuilder::to_bytes`] or
/// [`MessageBuilder::build`], so calls chain.
#[derive(Clone, Debug)]
pub struct MessageBuilder {
    /// Start line and headers so far.
    buf: BytesMut,
    /// Length of the start line in `buf`.
    start_len: usize,
    status: Option<StatusCode>,
    body: Bytes,
    error: Option<ParseError>,
}

fn builder_error(what: &'static str, fault: Fault) -> ParseError {
    ParseError::Builder { what, fault }
}

/// Whether `v` can go on a line as it is: no CR, LF, NUL or other control byte but HTAB.
fn check_text(v: &[u8], what: &'static str) -> Result<(), ParseError> {
    match v.iter().find(|&&c| (c < 0x20 && c != b'\t') || c == 0x7f) {
        Some(b'\r' | b'\n') => Err(builder_error(what, Fault::BareCr)),
        Some(_) => Err(builder_error(what, Fault::ControlChar)),
        None => Ok(()),
    }
}

impl MessageBuilder {
    fn with_start(start: &[u8], status: Option<StatusCode>) -> Self {
        let mut buf = BytesMut::with_capacity(512);
        buf.put_slice(start);
        MessageBuilder { start_len: buf.len(), buf, status, body: Bytes::new(), error: None }
    }

    /// A request line `METHOD uri SIP/2.0`. The URI must parse and carry no `?headers`.
    pub fn request(method: &Method, request_uri: &str) -> Self {
        let mut start = Vec::with_capacity(request_uri.len() + 24);
        start.extend_from_slice(method.as_str().as_bytes());
        start.push(b' ');
        start.extend_from_slice(request_uri.as_bytes());
        start.extend_from_slice(b" SIP/2.0\r\n");
        let mut b = Self::with_start(&start, None);
        let m = method.as_str().as_bytes();
        if m.is_empty() || lex::skip(m, 0, lex::TOKEN) != m.len() {
            b.error = Some(builder_error("method", Fault::InvalidMethod));
            return b;
        }
        match uri::parse_uri(request_uri) {
            Err(e) => b.error = Some(builder_error("Request-URI", e.fault)),
            Ok(Uri::Sip(u)) if u.headers.is_some() => {
                b.error = Some(builder_error("Request-URI", Fault::HeadersNotAllowed));
            }
            Ok(_) => {}
        }
        b
    }

    /// A status line; `reason` defaults to the code's RFC phrase (or nothing).
    pub fn response(status: StatusCode, reason: Option<&str>) -> Self {
        let reason = reason.or(status.canonical_reason()).unwrap_or("");
        let start = format!("SIP/2.0 {} {}\r\n", status.as_u16(), reason);
        let mut b = Self::with_start(start.as_bytes(), Some(status));
        if let Err(e) = check_text(reason.as_bytes(), "reason phrase") {
            b.error = Some(e);
        }
        b
    }

    /// Replaces the reason phrase of a response.
    pub fn reason(mut self, reason: &str) -> Self {
        let Some(status) = self.status else {
            self.error.get_or_insert(builder_error("reason phrase", Fault::UnexpectedChar));
            return self;
        };
        let mut fresh = Self::response(status, Some(reason));
        fresh.buf.put_slice(&self.buf[self.start_len..]);
        fresh.body = self.body;
        fresh.error = self.error.or(fresh.error);
        fresh
    }

    /// A response to `request` (RFC 3261 §8.2.6.2): its Via headers in order, From, To, Call-ID
    /// and CSeq copied (folds unfolded), and `to_tag` added to To when given and To has none.
    /// Add Contact, Record-Route (for 2xx to dialog-creating requests, §12.1.1) and the rest
    /// with [`MessageBuilder::header`].
    pub fn response_to(request: &Message, status: StatusCode, to_tag: Option<&str>) -> Result<Self, ParseError> {
        if !request.is_request() {
            return Err(builder_error("request to answer", Fault::InvalidMethod));
        }
        let mut b = Self::response(status, None);
        for via in request.header_all(HeaderName::Via) {
            b = b.header(HeaderName::Via, via.value_unfolded());
        }
        if b.buf.len() == b.start_len {
            return Err(ParseError::MissingHeader { header: HeaderName::Via });
        }
        for name in [HeaderName::From, HeaderName::To, HeaderName::CallId, HeaderName::CSeq] {
            let h = request.header(name).ok_or(ParseError::MissingHeader { header: name })?;
            let mut value = h.value_unfolded().into_owned();
            if name == HeaderName::To {
                if let Some(tag) = to_tag {
                    if request.to()?.tag().is_none() {
                        value.extend_from_slice(b";tag=");
                        value.extend_from_slice(tag.as_bytes());
                    }
                }
            }
            b = b.header(name, value);
        }
        Ok(b)
    }

    /// Appends a header. `Content-Length` is refused: the builder computes it.
    /// For [`HeaderName::Other`] use [`MessageBuilder::header_named`].
    pub fn header(self, name: HeaderName, value: impl AsRef<[u8]>) -> Self {
        if name == HeaderName::Other {
            let mut b = self;
            b.error.get_or_insert(builder_error("header name", Fault::InvalidName));
            return b;
        }
        self.put_header(name.as_str().as_bytes(), value.as_ref())
    }

    /// Appends a header given by its name as text (an extension header, or a known one).
    pub fn header_named(self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.put_header(name.as_bytes(), value.as_ref())
    }

    fn put_header(mut self, name: &[u8], value: &[u8]) -> Self {
        if self.error.is_some() {
            return self;
        }
        if name.is_empty() || lex::skip(name, 0, lex::TOKEN) != name.len() {
            self.error = Some(builder_error("header name", Fault::InvalidName));
        } else if HeaderName::from_bytes(name) == HeaderName::ContentLength {
            self.error = Some(builder_error("Content-Length (computed by the builder)", Fault::UnexpectedChar));
        } else if let Err(e) = check_text(value, "header value") {
            self.error = Some(e);
        } else {
            self.buf.reserve(name.len() + value.len() + 4);
            self.buf.put_slice(name);
            self.buf.put_slice(b": ");
            self.buf.put_slice(value);
            self.buf.put_slice(b"\r\n");
        }
        self
    }

    /// Sets the body and appends its Content-Type header.
    pub fn body(self, content_type: &str, body: impl Into<Bytes>) -> Self {
        let mut b = self.header(HeaderName::ContentType, content_type);
        b.body = body.into();
        b
    }

    /// The message on the wire: start line, headers in order, `Content-Length`, empty line, body.
    pub fn to_bytes(self) -> Result<Bytes, ParseError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let digits = itoa_buf(self.body.len());
        let mut out = BytesMut::with_capacity(self.buf.len() + 20 + digits.len() + self.body.len());
        out.put_slice(&self.buf);
        out.put_slice(b"Content-Length: ");
        out.put_slice(&digits);
        out.put_slice(b"\r\n\r\n");
        out.put_slice(&self.body);
        Ok(out.freeze())
    }

    /// The message, parsed back (so that it can be handed to anything that takes a [`Message`]).
    pub fn build(self) -> Result<Message, ParseError> {
        parse::parse_datagram(self.to_bytes()?)
    }
}

/// Decimal digits of `n` without going through `fmt`.
fn itoa_buf(mut n: usize) -> Vec<u8> {
    let mut digits = Vec::with_capacity(20);
    loop {
        digits.push(b'0' + (n % 10) as u8);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits.reverse();
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite() -> Message {
        crate::parse_datagram(Bytes::from_static(
            b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bK1, SIP/2.0/UDP p0.example.com;branch=z9hG4bK0\r\n\
v: SIP/2.0/UDP pc.example.com\r\n ;branch=z9hG4bKc\r\n\
From: <sip:alice@example.com>;tag=88\r\n\
To: Bob <sip:bob@example.com>\r\n\
i: call-1\r\n\
CSeq: 7 INVITE\r\n\
Content-Length: 0\r\n\r\n",
        ))
        .unwrap()
    }

    #[test]
    fn response_copies_the_transaction_headers() {
        let req = invite();
        let resp = MessageBuilder::response_to(&req, StatusCode::OK, Some("xyz"))
            .unwrap()
            .header(HeaderName::Contact, "<sip:bob@192.0.2.4>")
            .build()
            .unwrap();
        let text = std::str::from_utf8(resp.as_bytes()).unwrap();
        assert!(text.starts_with("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP p1.example.com;branch=z9hG4bK1, SIP/2.0/UDP p0.example.com;branch=z9hG4bK0\r\nVia: SIP/2.0/UDP pc.example.com ;branch=z9hG4bKc\r\n"), "{text}");
        assert_eq!(resp.vias().count(), 3);
        assert_eq!(resp.to().unwrap().tag(), Some("xyz"));
        assert_eq!(resp.from().unwrap().tag(), Some("88"));
        assert_eq!(resp.call_id().unwrap(), "call-1");
        assert!(text.ends_with("Contact: <sip:bob@192.0.2.4>\r\nContent-Length: 0\r\n\r\n"));
        assert!(resp.validate().is_ok());
        let again = MessageBuilder::response_to(&resp_request_with_tag(), StatusCode::OK, Some("new"))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(again.to().unwrap().tag(), Some("old"));
    }

    fn resp_request_with_tag() -> Message {
        MessageBuilder::request(&Method::Bye, "sip:bob@example.com")
            .header(HeaderName::Via, "SIP/2.0/UDP h;branch=z9hG4bK2")
            .header(HeaderName::From, "<sip:a@h>;tag=1")
            .header(HeaderName::To, "<sip:b@h>;tag=old")
            .header(HeaderName::CallId, "c")
            .header(HeaderName::CSeq, "2 BYE")
            .build()
            .unwrap()
    }

    #[test]
    fn body_and_reason() {
        let m = MessageBuilder::response(StatusCode::new(299).unwrap(), None)
            .reason("Odd But Fine")
            .body("text/plain", "hi")
            .build()
            .unwrap();
        assert_eq!(m.reason_phrase(), Some(&b"Odd But Fine"[..]));
        assert_eq!(m.body(), b"hi");
        assert_eq!(m.content_length().unwrap(), Some(2));
        assert!(m.content_type().unwrap().unwrap().is("text", "plain"));
        let round = crate::parse_datagram(m.to_bytes()).unwrap();
        assert_eq!(round.as_bytes(), m.as_bytes());
    }

    #[test]
    fn refuses_what_would_break_framing() {
        let base = || MessageBuilder::request(&Method::Options, "sip:a@h");
        let cases = [
            base().header(HeaderName::Subject, "a\r\nVia: injected").to_bytes(),
            base().header_named("Bad Name", "x").to_bytes(),
            base().header(HeaderName::ContentLength, "3").to_bytes(),
            base().header(HeaderName::Other, "x").to_bytes(),
            MessageBuilder::request(&Method::Options, "sip:a@h SIP/2.0\r\n").to_bytes(),
            MessageBuilder::request(&Method::Invite, "sip:a@h?Route=x").to_bytes(),
            MessageBuilder::response(StatusCode::OK, Some("O\nK")).to_bytes(),
            MessageBuilder::request(&Method::Options, "sip:a@h").reason("x").to_bytes(),
            MessageBuilder::request(&Method::Extension("TWO WORDS".into()), "sip:a@h").to_bytes(),
        ];
        for (i, c) in cases.into_iter().enumerate() {
            assert!(matches!(c, Err(ParseError::Builder { .. })), "case {i}: {c:?}");
        }
        assert!(MessageBuilder::response_to(&resp_request_with_tag().clone(), StatusCode::OK, None).is_ok());
        let resp = MessageBuilder::response(StatusCode::OK, None).build().unwrap();
        assert!(MessageBuilder::response_to(&resp, StatusCode::OK, None).is_err());
    }
}
