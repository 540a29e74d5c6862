//! Framing SIP messages out of a byte stream (TCP, TLS, WebSocket-less streams), RFC 3261 §18.3.
//!
//! The framer owns a buffer: push whatever the socket gave with
//! [`StreamFramer::handle_bytes`], then call [`StreamFramer::poll_message`] until it returns
//! `Ok(None)`. Each message is split off the buffer as a shared [`bytes::Bytes`], so the parsed
//! [`Message`] is zero-copy too.
//!
//! Invariants: the buffer never holds more than `max_message_size` bytes of one message (a
//! longer head or a larger Content-Length is a fatal [`ParseError::TooLarge`]); the search for the
//! end of a head resumes where it stopped, so a head trickling in byte by byte costs linear time.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::ParseError;
use crate::lenient;
use crate::message::Message;
use crate::parse::{self, Head};

/// Limits for a [`StreamFramer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramerConfig {
    /// Largest message (head and body) accepted; default 65 535 bytes.
    pub max_message_size: usize,
}

impl Default for FramerConfig {
    fn default() -> Self {
        FramerConfig { max_message_size: 65_535 }
    }
}

/// What [`StreamFramer::poll_message`] found.
#[derive(Debug)]
pub enum Framed {
    /// A complete message.
    Message(Message),
    /// A complete but malformed message: its bytes (to answer with [`crate::bad_request_for`])
    /// and what is wrong. The stream itself stays in step; keep polling.
    Invalid { raw: Bytes, error: ParseError },
}

struct Pending {
    total: usize,
    head: Result<Head, ParseError>,
}

/// Splits a byte stream into SIP messages by their Content-Length.
pub struct StreamFramer {
    buf: BytesMut,
    config: FramerConfig,
    /// The head-end search resumes here: no message end lies before it.
    scanned: usize,
    pending: Option<Pending>,
    failed: Option<ParseError>,
}

impl Default for StreamFramer {
    fn default() -> Self {
        StreamFramer::new(FramerConfig::default())
    }
}

impl StreamFramer {
    pub fn new(config: FramerConfig) -> Self {
        StreamFramer { buf: BytesMut::new(), config, scanned: 0, pending: None, failed: None }
    }

    /// Appends bytes received from the stream. Poll after each call: the size limit is checked
    /// when polling. Ignored once the framer has failed.
    pub fn handle_bytes(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes received but not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether a fatal error ended the stream.
    pub fn has_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// The next complete message, `Ok(None)` if more bytes are needed, or a fatal error after
    /// which the stream cannot be resynchronised and must be closed: a message over the size
    /// limit, a message without Content-Length (required on streams), or a head too broken to
    /// find its length. A fatal error is returned again by every later call.
    ///
    /// CR and LF bytes between messages (keep-alives, RFC 5626 §3.5.1) are skipped.
    pub fn poll_message(&mut self) -> Result<Option<Framed>, ParseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.pending.is_none() {
            let skip = parse::leading_line_ends(&self.buf);
            if skip > 0 {
                self.buf.advance(skip);
                self.scanned = 0;
            }
            if self.buf.is_empty() {
                return Ok(None);
            }
            let Some(head_end) = find_head_end(&self.buf, self.scanned) else {
                self.scanned = self.buf.len().saturating_sub(3);
                if self.buf.len() > self.config.max_message_size {
                    return self.fail(self.too_large(self.buf.len()));
                }
                return Ok(None);
            };
            if head_end > self.config.max_message_size {
                return self.fail(self.too_large(head_end));
            }
            let pending = match parse::parse_head(&self.buf[..head_end]) {
                Ok(head) => match parse::content_length(&self.buf, &head.headers) {
                    Ok(Some(len)) => Pending { total: head_end.saturating_add(len), head: Ok(head) },
                    Ok(None) => return self.fail(ParseError::MissingContentLength),
                    Err(e) => return self.fail(e),
                },
                // A broken head still frames if its Content-Length can be read.
                Err(error) => match lenient::content_length(&self.buf[..head_end]) {
                    Some(len) => Pending { total: head_end.saturating_add(len), head: Err(error) },
                    None => return self.fail(error),
                },
            };
            if pending.total > self.config.max_message_size {
                return self.fail(self.too_large(pending.total));
            }
            self.pending = Some(pending);
        }
        match &self.pending {
            Some(p) if self.buf.len() >= p.total => {}
            _ => return Ok(None),
        }
        let Some(p) = self.pending.take() else { return Ok(None) };
        let raw = self.buf.split_to(p.total).freeze();
        self.scanned = 0;
        Ok(Some(match p.head {
            Ok(head) => {
                Framed::Message(Message { raw, start: head.start, headers: head.headers, body_start: head.body_start })
            }
            Err(error) => Framed::Invalid { raw, error },
        }))
    }

    fn too_large(&self, size: usize) -> ParseError {
        ParseError::TooLarge { size, limit: self.config.max_message_size }
    }

    fn fail(&mut self, e: ParseError) -> Result<Option<Framed>, ParseError> {
        self.failed = Some(e.clone());
        self.buf = BytesMut::new();
        self.pending = None;
        Err(e)
    }
}

/// The index just past the empty line that ends the head, searching from `from`: a LF followed
/// by LF or by CRLF.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(p) = memchr::memchr(b'\n', &buf[i.min(buf.len())..]) {
        let p = i + p;
        match (buf.get(p + 1), buf.get(p + 2)) {
            (Some(b'\n'), _) => return Some(p + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(p + 3),
            (None, _) | (Some(b'\r'), None) => return None,
            _ => i = p + 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::HeaderName;

    const MSG: &[u8] =
        b"MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKa\r\nl: 5\r\n\r\nhello";

    fn drain(f: &mut StreamFramer) -> Vec<Framed> {
        let mut out = Vec::new();
        while let Some(m) = f.poll_message().unwrap() {
            out.push(m);
        }
        out
    }

    #[test]
    fn messages_split_at_every_byte_boundary() {
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(MSG);
        for chunk in 1..stream.len() {
            let mut f = StreamFramer::default();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                f.handle_bytes(piece);
                got.extend(drain(&mut f));
            }
            assert_eq!(got.len(), 2, "chunk size {chunk}");
            for m in got {
                let Framed::Message(m) = m else { panic!("chunk size {chunk}") };
                assert_eq!(m.as_bytes(), MSG);
                assert_eq!(m.body(), b"hello");
            }
            assert_eq!(f.buffered(), 0);
        }
    }

    #[test]
    fn content_length_is_required_on_streams() {
        let mut f = StreamFramer::default();
        f.handle_bytes(b"OPTIONS sip:a@h SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n");
        assert_eq!(f.poll_message().unwrap_err(), ParseError::MissingContentLength);
        assert!(f.has_failed());
        assert_eq!(f.poll_message().unwrap_err(), ParseError::MissingContentLength);
    }

    #[test]
    fn size_limit_stops_unbounded_buffering() {
        let mut f = StreamFramer::new(FramerConfig { max_message_size: 64 });
        for _ in 0..10 {
            f.handle_bytes(b"X-Filler: 0123456789\r\n");
            if f.poll_message().is_err() {
                break;
            }
        }
        assert!(matches!(f.poll_message(), Err(ParseError::TooLarge { limit: 64, .. })));
        assert_eq!(f.buffered(), 0);

        let mut f = StreamFramer::new(FramerConfig { max_message_size: 100 });
        f.handle_bytes(b"MESSAGE sip:a@h SIP/2.0\r\nContent-Length: 1000000\r\n\r\n");
        assert!(matches!(f.poll_message(), Err(ParseError::TooLarge { size: 1_000_052, .. })));
    }

    #[test]
    fn a_malformed_message_is_skipped_by_its_content_length() {
        let mut f = StreamFramer::default();
        f.handle_bytes(b"OPTIONS sip:a@h SIP/2.0\r\nbroken\r\nContent-Length: 3\r\n\r\nabc");
        f.handle_bytes(MSG);
        let got = drain(&mut f);
        assert_eq!(got.len(), 2);
        let Framed::Invalid { raw, error } = &got[0] else { panic!() };
        assert!(raw.ends_with(b"abc"));
        assert!(matches!(error, ParseError::HeaderLine { .. }));
        let Framed::Message(m) = &got[1] else { panic!() };
        assert_eq!(m.header(HeaderName::ContentLength).unwrap().value(), b"5");
    }
}
