//! Character classes and small scanners from the RFC 3261 §25.1 grammar.
//!
//! Every scanner takes a byte slice and an index and never panics: an index at or past the end
//! reads as "no more input". Header values reach the typed parsers with their folded line ends
//! (CRLF followed by SP or HTAB) still in place, which is what keeps them zero-copy, so CR and LF
//! count as linear white space (`LWS`) here. The head parser has already refused any CR or LF that
//! is not part of such a fold.

use std::borrow::Cow;

use crate::fault::Fault;

/// A fault at a byte offset inside the slice being parsed. Crate-internal; it becomes a
/// [`crate::ParseError`] at the API boundary, where the offset is made absolute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bad {
    pub at: usize,
    pub fault: Fault,
}

impl Bad {
    pub(crate) fn new(at: usize, fault: Fault) -> Self {
        Bad { at, fault }
    }

    /// Moves the offset by `base`, for a fault found in a sub-slice starting at `base`.
    pub(crate) fn shift(self, base: usize) -> Self {
        Bad { at: self.at + base, fault: self.fault }
    }
}

/// `token` characters (RFC 3261 §25.1).
pub(crate) const TOKEN: u16 = 1;
/// `word` characters (Call-ID).
pub(crate) const WORD: u16 = 1 << 1;
/// `unreserved` = alphanum / mark.
pub(crate) const UNRESERVED: u16 = 1 << 2;
/// `unreserved` / `user-unreserved` (escapes are handled apart).
pub(crate) const USER: u16 = 1 << 3;
/// `unreserved` / the password extras.
pub(crate) const PASSWORD: u16 = 1 << 4;
/// `paramchar` without escapes.
pub(crate) const PARAM: u16 = 1 << 5;
/// `hnv-unreserved` / `unreserved` (URI headers).
pub(crate) const HNV: u16 = 1 << 6;
/// Host name characters (alphanum, `-`, `.`, and `_`, which real networks use).
pub(crate) const HOST: u16 = 1 << 7;
/// SP, HTAB, CR, LF.
pub(crate) const LWS: u16 = 1 << 8;
/// `DIGIT`.
pub(crate) const DIGIT: u16 = 1 << 9;
/// Scheme characters after the first: alphanum, `+`, `-`, `.`.
pub(crate) const SCHEME: u16 = 1 << 10;
/// `tel:` number characters: hex digits, `*`, `#`, `+` and the visual separators.
pub(crate) const TEL: u16 = 1 << 11;
/// Unquoted header parameter values: `token` plus the `host` extras `:`, `[`, `]`.
pub(crate) const PVALUE: u16 = 1 << 12;
/// Opaque URI characters (other schemes): visible ASCII except `<`, `>`, `"`, and SP.
pub(crate) const OPAQUE: u16 = 1 << 13;

const fn build() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let alnum = b.is_ascii_alphanumeric();
        let mark = matches!(b, b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')');
        let unreserved = alnum || mark;
        let mut c = 0u16;
        let token = alnum || matches!(b, b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~');
        if token {
            c |= TOKEN | PVALUE;
        }
        if token
            || matches!(b, b'(' | b')' | b'<' | b'>' | b':' | b'\\' | b'"' | b'/' | b'[' | b']' | b'?' | b'{' | b'}')
        {
            c |= WORD;
        }
        if unreserved {
            c |= UNRESERVED;
        }
        if unreserved || matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/') {
            c |= USER;
        }
        if unreserved || matches!(b, b'&' | b'=' | b'+' | b'$' | b',') {
            c |= PASSWORD;
        }
        if unreserved || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$') {
            c |= PARAM;
        }
        if unreserved || matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$') {
            c |= HNV;
        }
        if alnum || matches!(b, b'-' | b'.' | b'_') {
            c |= HOST;
        }
        if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            c |= LWS;
        }
        if b.is_ascii_digit() {
            c |= DIGIT;
        }
        if alnum || matches!(b, b'+' | b'-' | b'.') {
            c |= SCHEME;
        }
        if b.is_ascii_hexdigit() || matches!(b, b'*' | b'#' | b'+' | b'-' | b'.' | b'(' | b')') {
            c |= TEL;
        }
        if matches!(b, b':' | b'[' | b']') {
            c |= PVALUE;
        }
        if b > 0x20 && b < 0x7f && !matches!(b, b'<' | b'>' | b'"') {
            c |= OPAQUE;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CLASS: [u16; 256] = build();

/// Whether `b` belongs to `class` (one of the constants above, or several or-ed together).
#[inline]
pub(crate) fn is(b: u8, class: u16) -> bool {
    CLASS[b as usize] & class != 0
}

/// Index of the first byte at or after `i` that is not in `class`.
#[inline]
pub(crate) fn skip(s: &[u8], mut i: usize, class: u16) -> usize {
    while i < s.len() && is(s[i], class) {
        i += 1;
    }
    i
}

/// Index of the first byte at or after `i` that is not linear white space.
#[inline]
pub(crate) fn skip_lws(s: &[u8], i: usize) -> usize {
    skip(s, i, LWS)
}

/// `(start, end)` of `s[from..to]` without leading and trailing linear white space.
#[inline]
pub(crate) fn trim_lws(s: &[u8], mut from: usize, mut to: usize) -> (usize, usize) {
    to = to.min(s.len());
    while from < to && is(s[from], LWS) {
        from += 1;
    }
    while to > from && is(s[to - 1], LWS) {
        to -= 1;
    }
    (from, to)
}

/// Like [`skip`], but also accepts `%HH` escapes; a `%` not followed by two hex digits is a fault.
pub(crate) fn skip_escaped(s: &[u8], mut i: usize, class: u16) -> Result<usize, Bad> {
    while i < s.len() {
        let b = s[i];
        if is(b, class) {
            i += 1;
        } else if b == b'%' {
            let hex = |k: usize| s.get(k).is_some_and(|c| c.is_ascii_hexdigit());
            if hex(i + 1) && hex(i + 2) {
                i += 3;
            } else {
                return Err(Bad::new(i, Fault::InvalidEscape));
            }
        } else {
            break;
        }
    }
    Ok(i)
}

/// `s[i]` is a `"`: returns the index just past the closing quote of the quoted string.
///
/// Accepts `qdtext` (including folded white space and UTF-8) and `quoted-pair`; refuses
/// unescaped control characters and a quote that is never closed.
pub(crate) fn quoted_end(s: &[u8], i: usize) -> Result<usize, Bad> {
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            b'"' => return Ok(j + 1),
            b'\\' => match s.get(j + 1) {
                Some(&c) if c <= 0x7f && c != b'\r' && c != b'\n' => j += 2,
                _ => return Err(Bad::new(j, Fault::InvalidEscape)),
            },
            b'\t' | b'\r' | b'\n' => j += 1,
            c if c < 0x20 || c == 0x7f => return Err(Bad::new(j, Fault::ControlChar)),
            _ => j += 1,
        }
    }
    Err(Bad::new(i, Fault::UnterminatedQuote))
}

/// Removes the surrounding quotes and the backslash escapes of a quoted string; anything that is
/// not a quoted string comes back unchanged. Borrows unless there is an escape to undo.
pub fn unquote(s: &str) -> Cow<'_, str> {
    let Some(inner) = s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return Cow::Borrowed(s);
    };
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Decodes `%HH` escapes (RFC 3261 §19.1.2). Invalid escapes are kept as they are; the URI
/// parser has refused them already for anything it accepted. Borrows when there is no escape.
pub fn unescape(s: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'%', s).is_none() {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if let (Some(h), Some(l)) = (s.get(i + 1).and_then(|c| hex_val(*c)), s.get(i + 2).and_then(|c| hex_val(*c)))
            {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    Cow::Owned(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Parses `1*DIGIT` into a number no larger than `max`.
pub(crate) fn parse_decimal(s: &[u8], max: u64) -> Result<u64, Fault> {
    if s.is_empty() {
        return Err(Fault::NotANumber);
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return Err(Fault::NotANumber);
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .filter(|v| *v <= max)
            .ok_or(Fault::Overflow)?;
    }
    Ok(v)
}

/// The part of `s` from `a` to `b` as `&str`, or a fault if that is not on character boundaries
/// (which the callers' ASCII delimiters rule out; this keeps a slip from becoming a panic).
#[inline]
pub(crate) fn sub(s: &str, a: usize, b: usize) -> Result<&str, Bad> {
    s.get(a..b).ok_or(Bad::new(a, Fault::InvalidUtf8))
}

/// `bytes` as UTF-8, or a fault at the first invalid byte.
#[inline]
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, Bad> {
    std::str::from_utf8(bytes).map_err(|e| Bad::new(e.valid_up_to(), Fault::InvalidUtf8))
}

/// Iterates the top-level comma-separated elements of a header value (RFC 3261 §7.3.1), leaving
/// commas inside quoted strings and inside `<...>` alone. Yields `(start, end)` offsets of each
/// element without surrounding white space; an element may be empty (`start == end`), which the
/// callers treat as a fault for the headers whose grammar has no empty elements.
pub(crate) struct ListIter<'a> {
    s: &'a [u8],
    pos: usize,
    done: bool,
    split: bool,
}

impl<'a> ListIter<'a> {
    pub(crate) fn new(s: &'a [u8]) -> Self {
        ListIter { s, pos: 0, done: false, split: true }
    }

    /// Yields the whole value as its only element (for headers that are not lists).
    pub(crate) fn whole(s: &'a [u8]) -> Self {
        ListIter { s, pos: 0, done: false, split: false }
    }
}

impl Iterator for ListIter<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        if self.done {
            return None;
        }
        let s = self.s;
        if !self.split {
            self.done = true;
            return Some(trim_lws(s, 0, s.len()));
        }
        let start = self.pos;
        let mut i = start;
        loop {
            // Jump to the next byte that matters.
            match memchr::memchr3(b'"', b'<', b',', &s[i.min(s.len())..]) {
                Some(p) => i += p,
                None => i = s.len(),
            }
            if i >= s.len() {
                self.done = true;
                return Some(trim_lws(s, start, s.len()));
            }
            match s[i] {
                // An unterminated quote or bracket swallows the rest: the element's own parser
                // then reports it where it is.
                b'"' => i = quoted_end(s, i).unwrap_or(s.len()),
                b'<' => i = memchr::memchr(b'>', &s[i..]).map_or(s.len(), |p| i + p + 1),
                b',' => {
                    self.pos = i + 1;
                    return Some(trim_lws(s, start, i));
                }
                _ => i += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elements(s: &str) -> Vec<&str> {
        ListIter::new(s.as_bytes()).map(|(a, b)| &s[a..b]).collect()
    }

    #[test]
    fn list_split_respects_quotes_and_brackets() {
        assert_eq!(
            elements(r#""a, b" <sip:x@h;p=1,2>;q=0.5 , <sip:y@h>"#),
            vec![r#""a, b" <sip:x@h;p=1,2>;q=0.5"#, "<sip:y@h>"]
        );
        assert_eq!(elements(r#""a\", b", c"#), vec![r#""a\", b""#, "c"]);
        assert_eq!(elements(",,"), vec!["", "", ""]);
        assert_eq!(elements(r#""open, c"#), vec![r#""open, c"#]);
    }

    #[test]
    fn quoted_strings() {
        assert_eq!(quoted_end(br#""a\"b" x"#, 0), Ok(6));
        assert_eq!(quoted_end(br#""abc"#, 0).unwrap_err().fault, Fault::UnterminatedQuote);
        assert_eq!(quoted_end(b"\"a\x01\"", 0).unwrap_err().fault, Fault::ControlChar);
        assert_eq!(quoted_end(b"\"a\\\x00\"", 0), Ok(5));
        assert_eq!(unquote(r#""J \\\"""#), r#"J \""#);
        assert_eq!(unquote("token"), "token");
    }

    #[test]
    fn escapes_and_numbers() {
        assert_eq!(unescape(b"a%41%zz").as_ref(), b"aA%zz");
        assert_eq!(skip_escaped(b"ab%4", 0, USER).unwrap_err().fault, Fault::InvalidEscape);
        assert_eq!(parse_decimal(b"0068", 255), Ok(68));
        assert_eq!(parse_decimal(b"300", 255), Err(Fault::Overflow));
        assert_eq!(parse_decimal(b"-1", 255), Err(Fault::NotANumber));
        assert_eq!(parse_decimal(&[b'9'; 400], u64::from(u32::MAX)), Err(Fault::Overflow));
    }
}
