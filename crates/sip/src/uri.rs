//! URIs: `sip:`/`sips:` (RFC 3261 §19.1), `tel:` (RFC 3966) and an opaque form for any other
//! scheme. Parts borrow from the text; escapes stay as written (see [`SipUri::user_unescaped`]).

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::{Fault, ParseError};
use crate::lex::{self, Bad};
use crate::params::{self, Params};

/// A host: a domain name, an IPv4 address or an IPv6 reference (`[2001:db8::1]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Host<'a> {
    Domain(&'a str),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
}

impl Host<'_> {
    /// The address, for the IP forms.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Domain(_) => None,
            Host::Ipv4(a) => Some(IpAddr::V4(*a)),
            Host::Ipv6(a) => Some(IpAddr::V6(*a)),
        }
    }
}

impl fmt::Display for Host<'_> {
    /// Domain as written, IPv4 dotted, IPv6 in brackets (ready for a URI or a Via).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Parses `host` at `s[i..]`: an IPv6 reference, or the longest run of host characters, which
/// must then be a dotted IPv4 address or a domain name. Returns the host and the index after it.
pub(crate) fn parse_host(s: &str, i: usize) -> Result<(Host<'_>, usize), Bad> {
    let b = s.as_bytes();
    if b.get(i) == Some(&b'[') {
        let close = memchr::memchr(b']', &b[i..]).ok_or(Bad::new(i, Fault::InvalidIpv6))? + i;
        let addr: Ipv6Addr = lex::sub(s, i + 1, close)?.parse().map_err(|_| Bad::new(i, Fault::InvalidIpv6))?;
        return Ok((Host::Ipv6(addr), close + 1));
    }
    let end = lex::skip(b, i, lex::HOST);
    let host = &b[i..end];
    let Some(&first) = host.first() else { return Err(Bad::new(i, Fault::InvalidHost)) };
    if first.is_ascii_digit() && host.iter().all(|c| c.is_ascii_digit() || *c == b'.') {
        let addr = parse_ipv4(host).ok_or(Bad::new(i, Fault::InvalidHost))?;
        return Ok((Host::Ipv4(addr), end));
    }
    // No empty label ("a..b", ".a") and none starting with '-'; one trailing dot is a valid FQDN.
    if first == b'.' || first == b'-' || host.windows(2).any(|w| w[0] == b'.' && matches!(w[1], b'.' | b'-')) {
        return Err(Bad::new(i, Fault::InvalidHost));
    }
    let text = lex::sub(s, i, end)?;
    Ok((Host::Domain(text), end))
}

/// `1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT` (RFC 3261 §25.1: leading zeros allowed).
pub(crate) fn parse_ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let (mut idx, mut val, mut digits) = (0usize, 0u32, 0u32);
    for &c in b {
        if c == b'.' {
            if digits == 0 || idx == 3 {
                return None;
            }
            octets[idx] = val as u8;
            idx += 1;
            (val, digits) = (0, 0);
        } else if c.is_ascii_digit() {
            val = val * 10 + u32::from(c - b'0');
            digits += 1;
            if digits > 3 || val > 255 {
                return None;
            }
        } else {
            return None;
        }
    }
    if digits == 0 || idx != 3 {
        return None;
    }
    octets[3] = val as u8;
    Some(Ipv4Addr::from(octets))
}

/// An IP address as `received=` or `maddr=` write it: IPv4, or IPv6 with or without brackets.
pub(crate) fn parse_ip(v: &str) -> Option<IpAddr> {
    if let Some(a) = parse_ipv4(v.as_bytes()) {
        return Some(IpAddr::V4(a));
    }
    let v = v.strip_prefix('[').and_then(|v| v.strip_suffix(']')).unwrap_or(v);
    v.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// Parses `[":" port]` at `s[i..]`.
fn parse_port(b: &[u8], i: usize) -> Result<(Option<u16>, usize), Bad> {
    if b.get(i) != Some(&b':') {
        return Ok((None, i));
    }
    let end = lex::skip(b, i + 1, lex::DIGIT);
    let port =
        lex::parse_decimal(&b[i + 1..end], u64::from(u16::MAX)).map_err(|_| Bad::new(i + 1, Fault::InvalidPort))?;
    Ok((Some(port as u16), end))
}

/// A URI of any scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uri<'a> {
    Sip(SipUri<'a>),
    Tel(TelUri<'a>),
    Other(OtherUri<'a>),
}

/// `sip:` or `sips:` URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipUri<'a> {
    raw: &'a str,
    /// `sips:`.
    pub secure: bool,
    /// User part as written, escapes included (`null-%00-null`); may contain `;` (RFC 4475 §3.1.1.9).
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    pub host: Host<'a>,
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp;lr`).
    pub params: Params<'a>,
    /// The `?name=value&...` headers part, without the `?`.
    pub headers: Option<&'a str>,
}

/// `tel:` URI (RFC 3966).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelUri<'a> {
    raw: &'a str,
    /// The number with its visual separators (`+1-201-555-0123`).
    pub number: &'a str,
    pub params: Params<'a>,
}

/// A URI of a scheme this crate does not interpret (`urn:`, `mailto:`, `isbn:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OtherUri<'a> {
    raw: &'a str,
    pub scheme: &'a str,
    /// Everything after `scheme:`.
    pub rest: &'a str,
}

impl<'a> Uri<'a> {
    /// Parses a whole URI (no surrounding white space or brackets).
    pub fn parse(s: &'a str) -> Result<Uri<'a>, ParseError> {
        parse_uri(s).map_err(|e| ParseError::Value { at: e.at, fault: e.fault })
    }

    /// The URI as written.
    pub fn as_str(&self) -> &'a str {
        match self {
            Uri::Sip(u) => u.raw,
            Uri::Tel(u) => u.raw,
            Uri::Other(u) => u.raw,
        }
    }

    pub fn as_sip(&self) -> Option<&SipUri<'a>> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    pub fn as_tel(&self) -> Option<&TelUri<'a>> {
        match self {
            Uri::Tel(u) => Some(u),
            _ => None,
        }
    }
}

impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'a> SipUri<'a> {
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// The user part with `%HH` escapes decoded; bytes, since `%00` is allowed (RFC 4475 §3.1.1.4).
    pub fn user_unescaped(&self) -> Option<Cow<'a, [u8]>> {
        self.user.map(|u| lex::unescape(u.as_bytes()))
    }

    /// `;transport=`.
    pub fn transport(&self) -> Option<&'a str> {
        self.params.value("transport")
    }

    /// `;lr` (loose routing, RFC 3261 §16.12).
    pub fn lr(&self) -> bool {
        self.params.contains("lr")
    }

    /// `;maddr=`.
    pub fn maddr(&self) -> Option<&'a str> {
        self.params.value("maddr")
    }

    /// `;user=` (`phone`, `ip`).
    pub fn user_param(&self) -> Option<&'a str> {
        self.params.value("user")
    }
}

impl<'a> TelUri<'a> {
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// A global number starts with `+`; a local one needs `;phone-context=`.
    pub fn is_global(&self) -> bool {
        self.number.starts_with('+')
    }

    pub fn phone_context(&self) -> Option<&'a str> {
        self.params.value("phone-context")
    }
}

impl<'a> OtherUri<'a> {
    pub fn as_str(&self) -> &'a str {
        self.raw
    }
}

pub(crate) fn parse_uri(s: &str) -> Result<Uri<'_>, Bad> {
    let b = s.as_bytes();
    let colon = memchr::memchr(b':', b).ok_or(Bad::new(0, Fault::InvalidScheme))?;
    let scheme = &b[..colon];
    if scheme.is_empty() || !scheme[0].is_ascii_alphabetic() || lex::skip(scheme, 0, lex::SCHEME) != colon {
        return Err(Bad::new(0, Fault::InvalidScheme));
    }
    if scheme.eq_ignore_ascii_case(b"sip") {
        parse_sip(s, colon + 1, false).map(Uri::Sip)
    } else if scheme.eq_ignore_ascii_case(b"sips") {
        parse_sip(s, colon + 1, true).map(Uri::Sip)
    } else if scheme.eq_ignore_ascii_case(b"tel") {
        parse_tel(s, colon + 1).map(Uri::Tel)
    } else {
        let rest = colon + 1;
        if rest == b.len() {
            return Err(Bad::new(rest, Fault::UnexpectedEnd));
        }
        let end = lex::skip_escaped(b, rest, lex::OPAQUE)?;
        if end != b.len() {
            return Err(Bad::new(end, Fault::UnexpectedChar));
        }
        Ok(Uri::Other(OtherUri { raw: s, scheme: lex::sub(s, 0, colon)?, rest: lex::sub(s, rest, end)? }))
    }
}

fn parse_sip(s: &str, start: usize, secure: bool) -> Result<SipUri<'_>, Bad> {
    let b = s.as_bytes();
    let mut i = start;
    let (mut user, mut password) = (None, None);
    // No unescaped '@' may follow the userinfo (not in host, params or headers), so the first
    // '@' ends it, even when the user part holds '?' or ';' (RFC 4475 §3.1.1.2, §3.1.1.9).
    if let Some(at) = memchr::memchr(b'@', &b[start..]).map(|p| p + start) {
        let user_end = lex::skip_escaped(b, start, lex::USER)?;
        if user_end == start {
            return Err(Bad::new(start, Fault::InvalidUser));
        }
        if user_end == at {
            user = Some(lex::sub(s, start, at)?);
        } else if b[user_end] == b':' {
            let pw_end = lex::skip_escaped(b, user_end + 1, lex::PASSWORD)?;
            if pw_end != at {
                return Err(Bad::new(pw_end, Fault::InvalidUser));
            }
            user = Some(lex::sub(s, start, user_end)?);
            password = Some(lex::sub(s, user_end + 1, at)?);
        } else {
            return Err(Bad::new(user_end, Fault::InvalidUser));
        }
        i = at + 1;
    }
    let (host, after_host) = parse_host(s, i)?;
    let (port, mut i) = parse_port(b, after_host)?;
    let mut params = Params::default();
    if b.get(i) == Some(&b';') {
        let (p, end) = params::parse_uri_params(s, i)?;
        params = p;
        i = end;
    }
    let mut headers = None;
    if b.get(i) == Some(&b'?') {
        let h0 = i + 1;
        i = parse_uri_headers(b, h0)?;
        headers = Some(lex::sub(s, h0, i)?);
    }
    if i != b.len() {
        return Err(Bad::new(i, Fault::UnexpectedChar));
    }
    Ok(SipUri { raw: s, secure, user, password, host, port, params, headers })
}

/// `header *( "&" header )`, `header = hname "=" hvalue`; returns the index after the last one.
fn parse_uri_headers(b: &[u8], mut i: usize) -> Result<usize, Bad> {
    loop {
        let n0 = i;
        i = lex::skip_escaped(b, i, lex::HNV)?;
        if i == n0 {
            return Err(Bad::new(n0, Fault::EmptyParam));
        }
        if b.get(i) != Some(&b'=') {
            return Err(Bad::new(i, Fault::UnexpectedChar));
        }
        i = lex::skip_escaped(b, i + 1, lex::HNV)?;
        if b.get(i) != Some(&b'&') {
            return Ok(i);
        }
        i += 1;
    }
}

fn parse_tel(s: &str, start: usize) -> Result<TelUri<'_>, Bad> {
    let b = s.as_bytes();
    let end = lex::skip(b, start, lex::TEL);
    if end == start || (b[start] == b'+' && end == start + 1) {
        return Err(Bad::new(start, Fault::Empty));
    }
    if b[start + 1..end].contains(&b'+') {
        return Err(Bad::new(start, Fault::UnexpectedChar));
    }
    let mut params = Params::default();
    let mut i = end;
    if b.get(i) == Some(&b';') {
        let (p, e) = params::parse_uri_params(s, i)?;
        params = p;
        i = e;
    }
    if i != b.len() {
        return Err(Bad::new(i, Fault::UnexpectedChar));
    }
    Ok(TelUri { raw: s, number: lex::sub(s, start, end)?, params })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri<'_> {
        match Uri::parse(s) {
            Ok(Uri::Sip(u)) => u,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn sip_uri_parts() {
        let u = sip("sips:alice:secret@Example.COM:5061;transport=tcp;lr?subject=hi&x=y");
        assert!(u.secure);
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.password, Some("secret"));
        assert_eq!(u.host, Host::Domain("Example.COM"));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.transport(), Some("tcp"));
        assert!(u.lr());
        assert_eq!(u.headers, Some("subject=hi&x=y"));
        assert_eq!(sip("sip:10.0.0.1").host, Host::Ipv4(Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn user_part_with_reserved_characters_and_escapes() {
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user, Some("user;par=u%40example.net"));
        assert_eq!(u.user_unescaped().unwrap().as_ref(), b"user;par=u@example.net");
        let u = sip("sip:null-%00-null@example.com");
        assert_eq!(u.user_unescaped().unwrap().as_ref(), b"null-\0-null");
        let u = sip("sip:sips%3Auser%40example.com@example.net");
        assert_eq!(u.user_unescaped().unwrap().as_ref(), b"sips:user@example.com");
        assert_eq!(u.host, Host::Domain("example.net"));
    }

    #[test]
    fn ipv6_references() {
        let u = sip("sip:[2001:db8::10]:5070");
        assert_eq!(u.host, Host::Ipv6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port, Some(5070));
        // RFC 4475 §4.3: inside the brackets, ':5070' is the last group, not a port.
        let u = sip("sip:[2001:db8::10:5070]");
        assert_eq!(u.host, Host::Ipv6("2001:db8::10:5070".parse().unwrap()));
        assert_eq!(u.port, None);
        assert_eq!(sip("sip:u@[::ffff:192.0.2.10]").host.to_string(), "[::ffff:192.0.2.10]");
        for bad in ["sip:2001:db8::10", "sip:[2001:db8:::192.0.2.1]", "sip:[2001:db8::10", "sip:[]"] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tel_and_other_schemes() {
        let Ok(Uri::Tel(t)) = Uri::parse("tel:+1-201-555-0123;ext=42") else { panic!() };
        assert_eq!(t.number, "+1-201-555-0123");
        assert!(t.is_global());
        assert_eq!(t.params.value("ext"), Some("42"));
        let Ok(Uri::Tel(t)) = Uri::parse("tel:7042;phone-context=example.com") else { panic!() };
        assert!(!t.is_global());
        assert_eq!(t.phone_context(), Some("example.com"));
        assert!(Uri::parse("tel:").is_err());
        assert!(Uri::parse("tel:+").is_err());
        assert!(Uri::parse("tel:12+3").is_err());
        let Ok(Uri::Other(o)) = Uri::parse("urn:service:sos") else { panic!() };
        assert_eq!((o.scheme, o.rest), ("urn", "service:sos"));
    }

    #[test]
    fn invalid_uris() {
        for bad in [
            "",
            "sip:",
            "<sip:a@b>",
            "sip:a@",
            "sip:@h",
            "sip:a b@h",
            "sip:h:99999",
            "sip:h:",
            "sip:h;;x",
            "sip:h?",
            "sip:h?a",
            "sip:a%4@h",
            "1sip:h",
            "sip:h..com",
            "sip:h>",
            "x:",
            "sip:1.2.3.256",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
    }
}
