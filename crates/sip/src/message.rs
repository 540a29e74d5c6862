//! [`Message`]: the received bytes plus an index of the start line and the header lines.
//!
//! Nothing is copied. Header values are ranges of the original buffer, folds and all; typed
//! values are parsed from them when asked for and borrow from them. Offsets in errors are byte
//! offsets into [`Message::as_bytes`].

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;

use crate::error::{Fault, ParseError};
use crate::lex::{self, Bad};
use crate::method::{Method, StatusCode};
use crate::name::HeaderName;
use crate::typed::addr::{self, Contact, NameAddr};
use crate::typed::auth::{self, Challenge, Credentials};
use crate::typed::simple::{self, CSeq, MediaType};
use crate::typed::via::{self, Via};
use crate::uri::{self, Uri};

/// A byte range of the message. `u32` keeps the index small; messages are far below 4 GiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Span {
        Span { start: start as u32, end: end as u32 }
    }

    pub(crate) fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// One header line (with its continuation lines): name and trimmed value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub name: HeaderName,
    pub name_span: Span,
    pub value: Span,
}

#[derive(Clone, Debug)]
pub(crate) enum Start {
    Request { method: Method, uri: Span },
    Response { status: StatusCode, reason: Span },
}

/// A parsed SIP request or response.
///
/// Made by [`crate::parse_datagram`], by [`crate::StreamFramer`] or by
/// [`crate::MessageBuilder::build`]. Cloning is cheap (the bytes are shared).
#[derive(Clone, Debug)]
pub struct Message {
    pub(crate) raw: Bytes,
    pub(crate) start: Start,
    pub(crate) headers: Vec<Entry>,
    pub(crate) body_start: usize,
}

/// The start line, borrowed from the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartLine<'a> {
    Request {
        method: &'a Method,
        uri: &'a str,
    },
    /// The reason phrase may be empty and may be any UTF-8 (RFC 4475 §3.1.1.12, §3.1.1.13).
    Response {
        status: StatusCode,
        reason: &'a [u8],
    },
}

/// One header line as received.
#[derive(Clone, Copy, Debug)]
pub struct HeaderField<'a> {
    msg: &'a Message,
    entry: Entry,
}

impl<'a> HeaderField<'a> {
    /// The recognised name (compact forms mapped to the full one).
    pub fn name(&self) -> HeaderName {
        self.entry.name
    }

    /// The name as spelled in the message (`v`, `MaX-fOrWaRdS`).
    pub fn name_bytes(&self) -> &'a [u8] {
        &self.msg.raw[self.entry.name_span.range()]
    }

    /// The value without surrounding white space; folded lines keep their CRLF and indent.
    pub fn value(&self) -> &'a [u8] {
        &self.msg.raw[self.entry.value.range()]
    }

    /// The value as a zero-copy slice of the message's buffer.
    pub fn value_bytes(&self) -> Bytes {
        self.msg.raw.slice(self.entry.value.range())
    }

    /// The value with each fold (CRLF or LF and the white space after it) replaced by one space.
    pub fn value_unfolded(&self) -> Cow<'a, [u8]> {
        unfold(self.value())
    }

    /// Byte offset of the value in the message.
    pub fn offset(&self) -> usize {
        self.entry.value.start as usize
    }
}

/// Replaces each line fold by a single space.
pub(crate) fn unfold(v: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'\n', v).is_none() {
        return Cow::Borrowed(v);
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'\r' | b'\n' => {
                while out.last().is_some_and(|c| *c == b' ' || *c == b'\t') {
                    out.pop();
                }
                i = lex::skip_lws(v, i);
                out.push(b' ');
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// Iterator over the typed values of one header across all its lines.
pub struct TypedValues<'a, T> {
    msg: &'a Message,
    name: HeaderName,
    next_entry: usize,
    current: Option<(Entry, &'a str, lex::ListIter<'a>)>,
    parse: fn(&'a str) -> Result<T, Bad>,
}

impl<'a, T> Iterator for TypedValues<'a, T> {
    type Item = Result<T, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((entry, text, list)) = &mut self.current {
                if let Some((a, b)) = list.next() {
                    let base = entry.value.start as usize + a;
                    if a == b {
                        return Some(Err(header_error(entry.name, base, Fault::EmptyElement)));
                    }
                    let item = match lex::sub(text, a, b) {
                        Ok(item) => item,
                        Err(e) => return Some(Err(header_error(entry.name, base, e.fault))),
                    };
                    return Some((self.parse)(item).map_err(|e| header_error(entry.name, base + e.at, e.fault)));
                }
                self.current = None;
            }
            let (idx, entry) =
                self.msg.headers[self.next_entry..].iter().enumerate().find(|(_, e)| e.name == self.name)?;
            self.next_entry += idx + 1;
            let entry = *entry;
            let text = match self.msg.value_str(&entry) {
                Ok(t) => t,
                Err(e) => return Some(Err(e)),
            };
            let list = if entry.name.is_list() {
                lex::ListIter::new(text.as_bytes())
            } else {
                // One element: the whole value. Split on nothing by starting past a fake end.
                lex::ListIter::whole(text.as_bytes())
            };
            self.current = Some((entry, text, list));
        }
    }
}

fn header_error(header: HeaderName, at: usize, fault: Fault) -> ParseError {
    ParseError::Header { header, at, fault }
}

impl Message {
    /// The message exactly as received (from its start line to the end of its body).
    /// Serialising an unchanged parsed message is this.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The message bytes, shared (no copy).
    pub fn to_bytes(&self) -> Bytes {
        self.raw.clone()
    }

    pub fn start_line(&self) -> StartLine<'_> {
        match &self.start {
            Start::Request { method, uri } => {
                StartLine::Request { method, uri: std::str::from_utf8(&self.raw[uri.range()]).unwrap_or("") }
            }
            Start::Response { status, reason } => {
                StartLine::Response { status: *status, reason: &self.raw[reason.range()] }
            }
        }
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, Start::Request { .. })
    }

    pub fn is_response(&self) -> bool {
        !self.is_request()
    }

    /// The request method (`None` for a response).
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            Start::Request { method, .. } => Some(method),
            Start::Response { .. } => None,
        }
    }

    /// The status code (`None` for a request).
    pub fn status(&self) -> Option<StatusCode> {
        match self.start {
            Start::Response { status, .. } => Some(status),
            Start::Request { .. } => None,
        }
    }

    /// The reason phrase as received (`None` for a request).
    pub fn reason_phrase(&self) -> Option<&[u8]> {
        match self.start {
            Start::Response { reason, .. } => Some(&self.raw[reason.range()]),
            Start::Request { .. } => None,
        }
    }

    /// The Request-URI (`None` for a response). Parsing the message validated it.
    pub fn request_uri(&self) -> Option<Uri<'_>> {
        match self.start_line() {
            StartLine::Request { uri, .. } => uri::parse_uri(uri).ok(),
            StartLine::Response { .. } => None,
        }
    }

    /// Every header line, in order.
    pub fn headers(&self) -> impl Iterator<Item = HeaderField<'_>> + '_ {
        self.headers.iter().map(move |e| HeaderField { msg: self, entry: *e })
    }

    /// The first line of a header.
    pub fn header(&self, name: HeaderName) -> Option<HeaderField<'_>> {
        self.header_all(name).next()
    }

    /// Every line of a header, in order.
    pub fn header_all(&self, name: HeaderName) -> impl Iterator<Item = HeaderField<'_>> + '_ {
        self.headers().filter(move |h| h.entry.name == name)
    }

    /// Every line of a header given by its text, known or not (`"X-Custom"`, `"v"`), compared
    /// case-insensitively; known names also match their compact form.
    pub fn header_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = HeaderField<'a>> + 'a {
        let known = HeaderName::from_bytes(name.as_bytes());
        self.headers().filter(move |h| match known {
            HeaderName::Other => h.name() == HeaderName::Other && h.name_bytes().eq_ignore_ascii_case(name.as_bytes()),
            k => h.name() == k,
        })
    }

    /// Every value of a header across its lines; for list headers ([`HeaderName::is_list`])
    /// each comma-separated element separately (quotes and `<...>` respected).
    pub fn header_values(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> + '_ {
        self.header_all(name).flat_map(move |h| {
            let v = h.value();
            let list = if name.is_list() { lex::ListIter::new(v) } else { lex::ListIter::whole(v) };
            list.map(move |(a, b)| &v[a..b])
        })
    }

    /// The body (Content-Length bytes after the head).
    pub fn body(&self) -> &[u8] {
        &self.raw[self.body_start..]
    }

    /// The body, shared (no copy).
    pub fn body_bytes(&self) -> Bytes {
        self.raw.slice(self.body_start..)
    }

    /// Turns a slice borrowed from this message (a header value, a tag, a branch) into an owned
    /// [`Bytes`] sharing the buffer; `None` if `part` is not inside the message.
    pub fn share(&self, part: &[u8]) -> Option<Bytes> {
        let base = self.raw.as_ptr() as usize;
        let p = part.as_ptr() as usize;
        (p >= base && p + part.len() <= base + self.raw.len()).then(|| self.raw.slice(p - base..p - base + part.len()))
    }

    pub(crate) fn value_str(&self, e: &Entry) -> Result<&str, ParseError> {
        lex::utf8(&self.raw[e.value.range()]).map_err(|b| header_error(e.name, e.value.start as usize + b.at, b.fault))
    }

    /// The only line of a header that may appear once; a second one is an error.
    fn single(&self, name: HeaderName) -> Result<Option<Entry>, ParseError> {
        let mut found = None;
        for e in self.headers.iter().filter(|e| e.name == name) {
            if found.is_some() {
                return Err(ParseError::DuplicateHeader { header: name, at: e.name_span.start as usize });
            }
            found = Some(*e);
        }
        Ok(found)
    }

    fn typed_single<'a, T>(
        &'a self,
        name: HeaderName,
        parse: impl FnOnce(&'a str) -> Result<T, Bad>,
    ) -> Result<Option<T>, ParseError> {
        let Some(e) = self.single(name)? else { return Ok(None) };
        let text = self.value_str(&e)?;
        parse(text).map(Some).map_err(|b| header_error(name, e.value.start as usize + b.at, b.fault))
    }

    fn typed_required<'a, T>(
        &'a self,
        name: HeaderName,
        parse: impl FnOnce(&'a str) -> Result<T, Bad>,
    ) -> Result<T, ParseError> {
        self.typed_single(name, parse)?.ok_or(ParseError::MissingHeader { header: name })
    }

    fn typed_values<'a, T>(&'a self, name: HeaderName, parse: fn(&'a str) -> Result<T, Bad>) -> TypedValues<'a, T> {
        TypedValues { msg: self, name, next_entry: 0, current: None, parse }
    }

    /// The topmost Via value (the one a response is routed by, RFC 3261 §18.2.2).
    pub fn via(&self) -> Result<Via<'_>, ParseError> {
        self.vias().next().unwrap_or(Err(ParseError::MissingHeader { header: HeaderName::Via }))
    }

    /// Every Via value, top first, across lines and commas.
    pub fn vias(&self) -> TypedValues<'_, Via<'_>> {
        self.typed_values(HeaderName::Via, via::parse_via)
    }

    pub fn from(&self) -> Result<NameAddr<'_>, ParseError> {
        self.typed_required(HeaderName::From, addr::parse_name_addr)
    }

    pub fn to(&self) -> Result<NameAddr<'_>, ParseError> {
        self.typed_required(HeaderName::To, addr::parse_name_addr)
    }

    pub fn call_id(&self) -> Result<&str, ParseError> {
        self.typed_required(HeaderName::CallId, simple::parse_call_id)
    }

    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        self.typed_required(HeaderName::CSeq, simple::parse_cseq)
    }

    /// Max-Forwards, 0 to 255.
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        self.typed_single(HeaderName::MaxForwards, |s| simple::parse_number(s, 255).map(|n| n as u8))
    }

    /// Every Contact value (`*` included).
    pub fn contacts(&self) -> TypedValues<'_, Contact<'_>> {
        self.typed_values(HeaderName::Contact, addr::parse_contact)
    }

    pub fn routes(&self) -> TypedValues<'_, NameAddr<'_>> {
        self.typed_values(HeaderName::Route, addr::parse_name_addr)
    }

    pub fn record_routes(&self) -> TypedValues<'_, NameAddr<'_>> {
        self.typed_values(HeaderName::RecordRoute, addr::parse_name_addr)
    }

    pub fn content_type(&self) -> Result<Option<MediaType<'_>>, ParseError> {
        self.typed_single(HeaderName::ContentType, simple::parse_media_type)
    }

    /// Content-Length as written (the parser has framed the body by it already).
    pub fn content_length(&self) -> Result<Option<usize>, ParseError> {
        let e = self.headers.iter().find(|e| e.name == HeaderName::ContentLength);
        let Some(e) = e else { return Ok(None) };
        let text = self.value_str(e)?;
        simple::parse_number(text, usize::MAX as u64)
            .map(|n| Some(n as usize))
            .map_err(|b| header_error(HeaderName::ContentLength, e.value.start as usize + b.at, b.fault))
    }

    /// Expires, in seconds.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.typed_single(HeaderName::Expires, |s| simple::parse_number(s, u64::from(u32::MAX)).map(|n| n as u32))
    }

    /// Retry-After, in seconds.
    pub fn retry_after(&self) -> Result<Option<u32>, ParseError> {
        self.typed_single(HeaderName::RetryAfter, simple::parse_retry_after)
    }

    pub fn www_authenticate(&self) -> TypedValues<'_, Challenge<'_>> {
        self.typed_values(HeaderName::WwwAuthenticate, parse_challenge)
    }

    pub fn proxy_authenticate(&self) -> TypedValues<'_, Challenge<'_>> {
        self.typed_values(HeaderName::ProxyAuthenticate, parse_challenge)
    }

    pub fn authorization(&self) -> TypedValues<'_, Credentials<'_>> {
        self.typed_values(HeaderName::Authorization, parse_credentials)
    }

    pub fn proxy_authorization(&self) -> TypedValues<'_, Credentials<'_>> {
        self.typed_values(HeaderName::ProxyAuthorization, parse_credentials)
    }

    /// The offset of `part` (a slice of this message) in it.
    pub(crate) fn offset_of(&self, part: &[u8]) -> usize {
        (part.as_ptr() as usize).saturating_sub(self.raw.as_ptr() as usize)
    }
}

fn parse_challenge(s: &str) -> Result<Challenge<'_>, Bad> {
    auth::parse_auth(s).map(|(scheme, params)| Challenge { scheme, params })
}

fn parse_credentials(s: &str) -> Result<Credentials<'_>, Bad> {
    auth::parse_auth(s).map(|(scheme, params)| Credentials { scheme, params })
}
