//! The head parser (start line and header index, RFC 3261 §7) and datagram framing (§18.3).
//!
//! One pass over the head: `memchr2` finds each line end, the line's first byte tells a
//! continuation (SP/HTAB) from a new header, and `memchr` finds the colon. Lines may end in CRLF
//! or a bare LF; a CR anywhere else is refused. Nothing here recurses or backtracks, so the
//! work is linear in the input.

use bytes::Bytes;

use crate::error::{Fault, ParseError};
use crate::lex;
use crate::message::{Entry, Message, Span, Start};
use crate::method::{Method, StatusCode};
use crate::name::HeaderName;
use crate::uri::{self, Uri};

/// The index of a message head.
pub(crate) struct Head {
    pub start: Start,
    pub headers: Vec<Entry>,
    /// Index of the first body byte (just past the empty line).
    pub body_start: usize,
}

/// The line starting at `i`: `(end of its content, start of the next line)`. `Ok(None)` when its
/// end has not arrived yet; `Err(offset)` for a CR that is not followed by LF.
fn line_at(buf: &[u8], i: usize) -> Result<Option<(usize, usize)>, usize> {
    let Some(p) = memchr::memchr2(b'\r', b'\n', &buf[i..]) else { return Ok(None) };
    let p = i + p;
    if buf[p] == b'\n' {
        return Ok(Some((p, p + 1)));
    }
    match buf.get(p + 1) {
        Some(b'\n') => Ok(Some((p, p + 2))),
        Some(_) => Err(p),
        None => Ok(None),
    }
}

/// Parses the head at the start of `buf` (which must not start with an empty line).
/// `ParseError::Incomplete` if the empty line that ends the head is not in `buf`.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Head, ParseError> {
    if buf.len() > u32::MAX as usize {
        return Err(ParseError::TooLarge { size: buf.len(), limit: u32::MAX as usize });
    }
    let (end, mut i) = match line_at(buf, 0) {
        Ok(Some(line)) => line,
        Ok(None) => return Err(ParseError::Incomplete),
        Err(at) => return Err(ParseError::StartLine { at, fault: Fault::BareCr }),
    };
    let start = parse_start_line(&buf[..end])?;
    let mut headers = Vec::with_capacity(16);
    let mut cur: Option<Entry> = None;
    loop {
        let (end, next) = match line_at(buf, i) {
            Ok(Some(line)) => line,
            Ok(None) => return Err(ParseError::Incomplete),
            Err(at) => return Err(ParseError::HeaderLine { at, fault: Fault::BareCr }),
        };
        if end == i {
            if let Some(e) = cur.take() {
                headers.push(finish(buf, e));
            }
            return Ok(Head { start, headers, body_start: next });
        }
        if matches!(buf[i], b' ' | b'\t') {
            // A fold (RFC 3261 §7.3.1): the value goes on, line end and indent included.
            match &mut cur {
                Some(e) => e.value.end = end as u32,
                None => return Err(ParseError::HeaderLine { at: i, fault: Fault::OrphanContinuation }),
            }
        } else {
            if let Some(e) = cur.take() {
                headers.push(finish(buf, e));
            }
            // `token *WSP ":"`: one forward pass over the name (a token never holds CR or LF,
            // so this stays on the line).
            let name_end = lex::skip(buf, i, lex::TOKEN);
            let mut colon = name_end;
            while colon < end && matches!(buf[colon], b' ' | b'\t') {
                colon += 1;
            }
            if colon >= end || buf[colon] != b':' || name_end == i {
                let fault =
                    if memchr::memchr(b':', &buf[i..end]).is_some() { Fault::InvalidName } else { Fault::MissingColon };
                return Err(ParseError::HeaderLine { at: i, fault });
            }
            let name = &buf[i..name_end];
            cur = Some(Entry {
                name: HeaderName::from_bytes(name),
                name_span: Span::new(i, name_end),
                value: Span::new(colon + 1, end),
            });
        }
        i = next;
    }
}

/// Trims the value of a finished header line.
fn finish(buf: &[u8], mut e: Entry) -> Entry {
    let (a, b) = lex::trim_lws(buf, e.value.start as usize, e.value.end as usize);
    e.value = Span::new(a, b);
    e
}

fn is_sip_version(v: &[u8]) -> bool {
    v.eq_ignore_ascii_case(b"SIP/2.0")
}

/// `Method SP Request-URI SP SIP-Version` or `SIP-Version SP Status-Code SP Reason-Phrase`,
/// single spaces only (RFC 4475 §3.1.2.9, §3.1.2.10).
fn parse_start_line(line: &[u8]) -> Result<Start, ParseError> {
    let start_err = |at, fault| ParseError::StartLine { at, fault };
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        let sp = memchr::memchr(b' ', line).unwrap_or(line.len());
        if !is_sip_version(&line[..sp]) {
            return Err(ParseError::Version { at: 0 });
        }
        let d0 = sp + 1;
        let d1 = lex::skip(line, d0, lex::DIGIT);
        if d1 != d0 + 3 || (d1 < line.len() && line[d1] != b' ') {
            return Err(start_err(d0, Fault::InvalidStatus));
        }
        let code = lex::parse_decimal(&line[d0..d1], 999).map_err(|_| start_err(d0, Fault::InvalidStatus))?;
        let status = StatusCode::new(code as u16).ok_or(start_err(d0, Fault::InvalidStatus))?;
        let r0 = (d1 + 1).min(line.len());
        if let Some(p) = line[r0..].iter().position(|&c| (c < 0x20 && c != b'\t') || c == 0x7f) {
            return Err(start_err(r0 + p, Fault::ControlChar));
        }
        return Ok(Start::Response { status, reason: Span::new(r0, line.len()) });
    }
    let sp1 = memchr::memchr(b' ', line).ok_or(start_err(line.len(), Fault::UnexpectedEnd))?;
    let method = Method::from_bytes(&line[..sp1]).ok_or(start_err(0, Fault::InvalidMethod))?;
    let u0 = sp1 + 1;
    let sp2 = memchr::memchr(b' ', &line[u0..]).ok_or(start_err(line.len(), Fault::UnexpectedEnd))? + u0;
    if sp2 == u0 {
        return Err(start_err(u0, Fault::ExtraWhitespace));
    }
    let version = &line[sp2 + 1..];
    if let Some(p) = version.iter().position(|&c| c == b' ' || c == b'\t') {
        return Err(start_err(sp2 + 1 + p, Fault::ExtraWhitespace));
    }
    if !is_sip_version(version) {
        return Err(ParseError::Version { at: sp2 + 1 });
    }
    let uri_err = |at, fault| ParseError::RequestUri { at, fault };
    let text = lex::utf8(&line[u0..sp2]).map_err(|b| uri_err(u0 + b.at, b.fault))?;
    let uri = uri::parse_uri(text).map_err(|b| uri_err(u0 + b.at, b.fault))?;
    if let Uri::Sip(u) = uri {
        if u.headers.is_some() {
            // RFC 4475 §3.1.2.11: escaped headers belong in a URI to be used later, never in
            // the Request-URI of a request being sent.
            let q = memchr::memchr(b'?', text.as_bytes()).unwrap_or(0);
            return Err(uri_err(u0 + q, Fault::HeadersNotAllowed));
        }
    }
    Ok(Start::Request { method, uri: Span::new(u0, sp2) })
}

/// The Content-Length of a head: `None` if absent; every copy must agree.
pub(crate) fn content_length(buf: &[u8], headers: &[Entry]) -> Result<Option<usize>, ParseError> {
    let mut found: Option<usize> = None;
    for e in headers.iter().filter(|e| e.name == HeaderName::ContentLength) {
        let n = lex::parse_decimal(&buf[e.value.range()], u64::from(u32::MAX)).map_err(|fault| ParseError::Header {
            header: HeaderName::ContentLength,
            at: e.value.start as usize,
            fault,
        })? as usize;
        if found.is_some_and(|prev| prev != n) {
            return Err(ParseError::DuplicateHeader {
                header: HeaderName::ContentLength,
                at: e.name_span.start as usize,
            });
        }
        found = Some(n);
    }
    Ok(found)
}

/// Number of CR and LF bytes at the start (keep-alives, RFC 3261 §7.5, RFC 5626 §3.5.1).
pub(crate) fn leading_line_ends(buf: &[u8]) -> usize {
    buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count()
}

/// Parses one UDP datagram as one message (RFC 3261 §18.3).
///
/// Content-Length is optional; without it the body is the rest of the datagram. When present it
/// must not exceed what follows the head ([`ParseError::BodyTruncated`]); when smaller, the
/// extra octets are not part of the message and are dropped (RFC 4475 §3.1.1.8). Line ends before
/// the start line are skipped; a datagram of nothing else is [`ParseError::Empty`].
///
/// This builds the header index and checks the start line; header values are checked when
/// read, or all at once by [`Message::validate`].
pub fn parse_datagram(data: Bytes) -> Result<Message, ParseError> {
    let skip = leading_line_ends(&data);
    if skip == data.len() {
        return Err(ParseError::Empty);
    }
    // Slicing a shared `Bytes` costs an atomic increment; skip it when nothing changes.
    let data = if skip > 0 { data.slice(skip..) } else { data };
    let head = parse_head(&data)?;
    let available = data.len() - head.body_start;
    let body_len = match content_length(&data, &head.headers)? {
        None => available,
        Some(declared) if declared > available => {
            return Err(ParseError::BodyTruncated { declared, available });
        }
        Some(declared) => declared,
    };
    let end = head.body_start + body_len;
    Ok(Message {
        raw: if end == data.len() { data } else { data.slice(..end) },
        start: head.start,
        headers: head.headers,
        body_start: head.body_start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Message, ParseError> {
        parse_datagram(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn lf_only_line_ends_and_folds() {
        let m = parse("OPTIONS sip:a@example.com SIP/2.0\nVia: SIP/2.0/UDP h\n ;branch=z9hG4bK1\nl: 0\n\n").unwrap();
        assert_eq!(m.header(HeaderName::Via).unwrap().value(), b"SIP/2.0/UDP h\n ;branch=z9hG4bK1");
        assert_eq!(m.via().unwrap().branch, Some("z9hG4bK1"));
        assert_eq!(m.body(), b"");
    }

    #[test]
    fn body_framing_in_a_datagram() {
        let m = parse("MESSAGE sip:a@h SIP/2.0\r\nContent-Length: 5\r\n\r\nhello world").unwrap();
        assert_eq!(m.body(), b"hello");
        assert!(m.as_bytes().ends_with(b"\r\n\r\nhello"));
        let m = parse("MESSAGE sip:a@h SIP/2.0\r\n\r\nno length").unwrap();
        assert_eq!(m.body(), b"no length");
        assert_eq!(
            parse("MESSAGE sip:a@h SIP/2.0\r\nl: 50\r\n\r\nshort").unwrap_err(),
            ParseError::BodyTruncated { declared: 50, available: 5 }
        );
        assert!(matches!(
            parse("MESSAGE sip:a@h SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nab").unwrap_err(),
            ParseError::DuplicateHeader { header: HeaderName::ContentLength, .. }
        ));
    }

    #[test]
    fn start_line_errors() {
        let cases: &[(&str, ParseError)] = &[
            ("INVITE  sip:a@h SIP/2.0\r\n\r\n", ParseError::StartLine { at: 7, fault: Fault::ExtraWhitespace }),
            ("INVITE sip:a@h SIP/2.0 \r\n\r\n", ParseError::StartLine { at: 22, fault: Fault::ExtraWhitespace }),
            ("INVITE sip:a@h SIP/3.0\r\n\r\n", ParseError::Version { at: 15 }),
            ("SIP/7.0 200 OK\r\n\r\n", ParseError::Version { at: 0 }),
            ("SIP/2.0 2000 OK\r\n\r\n", ParseError::StartLine { at: 8, fault: Fault::InvalidStatus }),
            ("SIP/2.0 099 Low\r\n\r\n", ParseError::StartLine { at: 8, fault: Fault::InvalidStatus }),
            ("INVITE\r\n\r\n", ParseError::StartLine { at: 6, fault: Fault::UnexpectedEnd }),
            ("<INVITE> sip:a@h SIP/2.0\r\n\r\n", ParseError::StartLine { at: 0, fault: Fault::InvalidMethod }),
            ("INVITE sip:a@h SIP/2.0\rX\r\n\r\n", ParseError::StartLine { at: 22, fault: Fault::BareCr }),
        ];
        for (s, want) in cases {
            assert_eq!(&parse(s).unwrap_err(), want, "{s:?}");
        }
    }

    #[test]
    fn header_line_errors() {
        let cases: &[(&str, Fault)] = &[
            ("OPTIONS sip:a@h SIP/2.0\r\n folded: x\r\n\r\n", Fault::OrphanContinuation),
            ("OPTIONS sip:a@h SIP/2.0\r\nNoColon\r\n\r\n", Fault::MissingColon),
            ("OPTIONS sip:a@h SIP/2.0\r\nBad Name: x\r\n\r\n", Fault::InvalidName),
            ("OPTIONS sip:a@h SIP/2.0\r\n: x\r\n\r\n", Fault::InvalidName),
            ("OPTIONS sip:a@h SIP/2.0\r\nA: x\ry\r\n\r\n", Fault::BareCr),
        ];
        for (s, fault) in cases {
            assert!(matches!(parse(s).unwrap_err(), ParseError::HeaderLine { fault: f, .. } if f == *fault), "{s:?}");
        }
        assert_eq!(parse("OPTIONS sip:a@h SIP/2.0\r\nA: b\r\n").unwrap_err(), ParseError::Incomplete);
        assert_eq!(parse("\r\n\r\n").unwrap_err(), ParseError::Empty);
    }
}
