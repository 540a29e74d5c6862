//! `name-addr` / `addr-spec` values: From, To, Contact, Route, Record-Route, Refer-To...
//! (RFC 3261 §20.10, §25.1).

use std::borrow::Cow;

use crate::error::{Fault, ParseError};
use crate::lex::{self, Bad};
use crate::params::{self, Params};
use crate::uri::{self, Uri};

/// `[display-name] <URI> ;params` or `URI ;params`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// As written: a quoted string with its quotes, or a run of tokens (`A. Bell`).
    pub display_name: Option<&'a str>,
    pub uri: Uri<'a>,
    /// Header parameters after the address (`tag`, `expires`, `q`...). Without `<>`, every
    /// `;param` belongs here, not to the URI (RFC 3261 §20.10).
    pub params: Params<'a>,
    /// Whether the URI was in `<>`.
    pub bracketed: bool,
    /// `;tag=`, picked out while the parameters were checked.
    tag: Option<&'a str>,
}

/// A Contact value: an address, or `*` (REGISTER removing every binding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contact<'a> {
    Wildcard,
    Addr(NameAddr<'a>),
}

impl<'a> NameAddr<'a> {
    /// Parses one value (not a comma-separated list).
    pub fn parse(s: &'a str) -> Result<NameAddr<'a>, ParseError> {
        parse_name_addr(s).map_err(|e| ParseError::Value { at: e.at, fault: e.fault })
    }

    /// The display name without quotes and escapes.
    pub fn display_name_unquoted(&self) -> Option<Cow<'a, str>> {
        self.display_name.map(lex::unquote)
    }

    /// `;tag=` (From, To).
    pub fn tag(&self) -> Option<&'a str> {
        self.tag
    }

    /// `;expires=` (Contact), in seconds; an overflowing value is an error the caller may
    /// answer with the default expiry instead (RFC 4475 §3.1.2.4).
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        match self.params.value("expires") {
            None => Ok(None),
            Some(v) => lex::parse_decimal(v.as_bytes(), u64::from(u32::MAX))
                .map(|n| Some(n as u32))
                .map_err(|fault| ParseError::Value { at: 0, fault }),
        }
    }

    /// `;q=` (Contact), 0 to 1; `None` if absent or not a q-value.
    pub fn q(&self) -> Option<f32> {
        let v: f32 = self.params.value("q")?.parse().ok()?;
        (0.0..=1.0).contains(&v).then_some(v)
    }
}

impl<'a> Contact<'a> {
    pub fn parse(s: &'a str) -> Result<Contact<'a>, ParseError> {
        parse_contact(s).map_err(|e| ParseError::Value { at: e.at, fault: e.fault })
    }

    pub fn addr(&self) -> Option<&NameAddr<'a>> {
        match self {
            Contact::Wildcard => None,
            Contact::Addr(a) => Some(a),
        }
    }
}

/// The pieces of a name-addr before the URI is parsed: what the fast key extraction needs
/// (the parameters, for a tag) without paying for URI validation.
pub(crate) struct Parts {
    pub display: Option<(usize, usize)>,
    pub uri: (usize, usize),
    pub params_start: usize,
    pub bracketed: bool,
}

pub(crate) fn split(s: &str) -> Result<Parts, Bad> {
    let b = s.as_bytes();
    let mut i = lex::skip_lws(b, 0);
    let mut display = None;
    match b.get(i) {
        None => return Err(Bad::new(i, Fault::Empty)),
        Some(b'"') => {
            let e = lex::quoted_end(b, i)?;
            display = Some((i, e));
            i = lex::skip_lws(b, e);
            if b.get(i) != Some(&b'<') {
                return Err(Bad::new(i, Fault::ExpectedAngle));
            }
        }
        Some(b'<') => {}
        Some(_) => {
            let t0 = i;
            let e = lex::skip(b, i, lex::TOKEN);
            if e == t0 {
                return Err(Bad::new(t0, Fault::UnexpectedChar));
            }
            if b.get(e) == Some(&b':') {
                // addr-spec: the URI runs to the first ';' or white space; what follows is
                // header parameters. ',' cannot appear (the list was split on it) and '?' must not.
                let mut u = e;
                while u < b.len() && b[u] != b';' && !lex::is(b[u], lex::LWS) {
                    if b[u] == b'?' {
                        return Err(Bad::new(u, Fault::AngleBracketsRequired));
                    }
                    u += 1;
                }
                return Ok(Parts { display: None, uri: (t0, u), params_start: u, bracketed: false });
            }
            // Display name as `*(token LWS)`: tokens separated by white space, then '<'.
            let mut end = e;
            loop {
                let j = lex::skip_lws(b, end);
                match b.get(j) {
                    Some(b'<') => {
                        display = Some((t0, end));
                        i = j;
                        break;
                    }
                    Some(&c) if j > end && lex::is(c, lex::TOKEN) => end = lex::skip(b, j, lex::TOKEN),
                    _ => return Err(Bad::new(j, Fault::InvalidDisplayName)),
                }
            }
        }
    }
    // b[i] == '<'
    let close = memchr::memchr(b'>', &b[i..]).ok_or(Bad::new(i, Fault::UnterminatedAngle))? + i;
    let (u0, u1) = (i + 1, close);
    if u0 == u1 {
        return Err(Bad::new(u0, Fault::Empty));
    }
    if lex::is(b[u0], lex::LWS) || lex::is(b[u1 - 1], lex::LWS) {
        return Err(Bad::new(u0, Fault::SpaceInAngleBrackets));
    }
    Ok(Parts { display, uri: (u0, u1), params_start: close + 1, bracketed: true })
}

pub(crate) fn parse_name_addr(s: &str) -> Result<NameAddr<'_>, Bad> {
    let parts = split(s)?;
    let uri_text = lex::sub(s, parts.uri.0, parts.uri.1)?;
    let uri = uri::parse_uri(uri_text).map_err(|e| e.shift(parts.uri.0))?;
    let display_name = match parts.display {
        Some((a, b)) => Some(lex::sub(s, a, b)?),
        None => None,
    };
    let (params, tag) = params_and_tag(s, parts.params_start)?;
    Ok(NameAddr { display_name, uri, params, bracketed: parts.bracketed, tag })
}

/// The header parameters from `start`, checked, and the `tag` among them, in one pass.
fn params_and_tag(s: &str, start: usize) -> Result<(Params<'_>, Option<&str>), Bad> {
    let mut tag = None;
    let params = params::scan_header_params(s, start, |name, value, _| {
        if tag.is_none() && name.len() == 3 && name.eq_ignore_ascii_case("tag") {
            tag = value;
        }
        Ok(())
    })?;
    Ok((params, tag))
}

pub(crate) fn parse_contact(s: &str) -> Result<Contact<'_>, Bad> {
    if s.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) == "*" {
        return Ok(Contact::Wildcard);
    }
    parse_name_addr(s).map(Contact::Addr)
}

/// The tag of a name-addr, its parameters checked but not its URI: the fast path for keys.
pub(crate) fn tag_only(s: &str) -> Result<Option<&str>, Bad> {
    let parts = split(s)?;
    params_and_tag(s, parts.params_start).map(|(_, tag)| tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uri::Host;

    #[test]
    fn quoted_display_name_with_escapes_and_folded_params() {
        let a = parse_name_addr("\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8")
            .unwrap();
        assert_eq!(a.display_name_unquoted().unwrap(), "J Rosenberg \\\"");
        assert_eq!(a.tag(), Some("98asjd8"));
        assert!(a.bracketed);
    }

    #[test]
    fn addr_spec_params_belong_to_the_header() {
        let a = parse_name_addr("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert_eq!(a.tag(), Some("1918181833n"));
        assert!(!a.bracketed);
        let Uri::Sip(u) = a.uri else { panic!() };
        assert!(u.params.is_empty());
        assert_eq!(u.host, Host::Domain("chair-dnrc.example.com"));
    }

    #[test]
    fn token_display_names() {
        let a = parse_name_addr("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(a.display_name, Some("caller"));
        let a = parse_name_addr("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>").unwrap();
        assert_eq!(a.display_name, Some("token1~` token2'+_ token3*%!.-"));
    }

    #[test]
    fn contact_params_and_wildcard() {
        let c = parse_contact("\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33")
            .unwrap();
        let a = c.addr().unwrap();
        assert_eq!(a.display_name_unquoted().unwrap(), "Quoted string \"\"");
        assert_eq!(a.params.value("newparam"), Some("newvalue"));
        assert!(a.params.contains("secondparam"));
        assert_eq!(a.q(), Some(0.33));
        assert_eq!(parse_contact(" * ").unwrap(), Contact::Wildcard);
        let a = parse_name_addr("<sip:u@h>;expires=280297596632815").unwrap();
        assert!(a.expires().is_err());
    }

    #[test]
    fn invalid_addresses() {
        let cases: &[(&str, Fault)] = &[
            ("\"Mr. J. User <sip:j.user@example.com>", Fault::UnterminatedQuote),
            ("\"Watson, Thomas\" < sip:t.watson@example.org >", Fault::SpaceInAngleBrackets),
            ("Bell, Alexander <sip:a.g.bell@example.com>;tag=43", Fault::InvalidDisplayName),
            ("sip:user@example.com?Route=%3Csip:sip.example.com%3E", Fault::AngleBracketsRequired),
            ("<sip:u@h", Fault::UnterminatedAngle),
            ("\"x\" sip:u@h", Fault::ExpectedAngle),
            ("<>", Fault::Empty),
            ("", Fault::Empty),
            ("<sip:u@h>;;", Fault::EmptyParam),
            ("<sip:u@h>x", Fault::TrailingData),
        ];
        for (s, fault) in cases {
            assert_eq!(parse_name_addr(s).unwrap_err().fault, *fault, "{s}");
        }
    }
}
