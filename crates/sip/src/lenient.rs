//! A forgiving scan of a message head, for when the strict parser has refused it: enough to
//! answer with `400` (`bad_request_for`) or to step over a broken message on a stream.
//! It skips what it cannot read instead of failing.

use crate::lex;
use crate::name::HeaderName;

pub(crate) struct LooseHeader<'a> {
    pub name: HeaderName,
    /// Trimmed value, folds included.
    pub value: &'a [u8],
}

pub(crate) struct LooseHead<'a> {
    pub start_line: &'a [u8],
    pub headers: Vec<LooseHeader<'a>>,
}

/// Splits `raw` into lines (CRLF or LF) up to the first empty line, folding continuation lines
/// into the header before them and ignoring lines that are not `name: value`.
pub(crate) fn scan(raw: &[u8]) -> Option<LooseHead<'_>> {
    let mut i = raw.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    let mut start_line = None;
    let mut headers: Vec<LooseHeader<'_>> = Vec::new();
    // (name, value start, value end) of the header being read.
    let mut cur: Option<(HeaderName, usize, usize)> = None;
    while i < raw.len() {
        let nl = memchr::memchr(b'\n', &raw[i..]).map_or(raw.len(), |p| i + p);
        let end = if nl > i && raw[nl - 1] == b'\r' { nl - 1 } else { nl };
        let line = &raw[i..end];
        if start_line.is_none() {
            start_line = Some(line);
        } else if line.is_empty() {
            break;
        } else if matches!(line[0], b' ' | b'\t') {
            if let Some(c) = &mut cur {
                c.2 = end;
            }
        } else {
            if let Some((name, a, b)) = cur.take() {
                push(raw, &mut headers, name, a, b);
            }
            if let Some(colon) = memchr::memchr(b':', line) {
                let name = lex::trim_lws(line, 0, colon);
                cur = Some((HeaderName::from_bytes(&line[name.0..name.1]), i + colon + 1, end));
            }
        }
        i = nl + 1;
    }
    if let Some((name, a, b)) = cur.take() {
        push(raw, &mut headers, name, a, b);
    }
    Some(LooseHead { start_line: start_line?, headers })
}

fn push<'a>(raw: &'a [u8], headers: &mut Vec<LooseHeader<'a>>, name: HeaderName, a: usize, b: usize) {
    let (a, b) = lex::trim_lws(raw, a, b);
    headers.push(LooseHeader { name, value: &raw[a..b] });
}

impl<'a> LooseHead<'a> {
    pub(crate) fn first(&self, name: HeaderName) -> Option<&'a [u8]> {
        self.headers.iter().find(|h| h.name == name).map(|h| h.value)
    }

    pub(crate) fn all(&self, name: HeaderName) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.headers.iter().filter(move |h| h.name == name).map(|h| h.value)
    }
}

/// The first readable Content-Length of a head, if any.
pub(crate) fn content_length(head: &[u8]) -> Option<usize> {
    let head = scan(head)?;
    let v = head.first(HeaderName::ContentLength)?;
    lex::parse_decimal(v, u64::from(u32::MAX)).ok().map(|n| n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_past_broken_lines() {
        let raw = b"\r\nINVITE sip:a@h SIP/2.0\r\nbroken line\r\nCSeq: 1\r\n  INVITE\r\nl: 7\r\n\r\nbody";
        let head = scan(raw).unwrap();
        assert_eq!(head.start_line, b"INVITE sip:a@h SIP/2.0");
        assert_eq!(head.first(HeaderName::CSeq), Some(&b"1\r\n  INVITE"[..]));
        assert_eq!(content_length(raw), Some(7));
        assert!(scan(b"").is_none());
    }
}
