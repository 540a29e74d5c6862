//! WWW-Authenticate / Proxy-Authenticate challenges and Authorization / Proxy-Authorization
//! credentials (RFC 3261 §25.1, RFC 2617, RFC 8760): `scheme auth-param *("," auth-param)`.

use std::borrow::Cow;

use crate::error::{Fault, ParseError};
use crate::lex::{self, Bad};

/// The comma-separated `name=value` list after the scheme, validated; values as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthParams<'a> {
    raw: &'a str,
}

impl<'a> AuthParams<'a> {
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// `(name, value as written)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let raw = self.raw;
        lex::ListIter::new(raw.as_bytes()).filter_map(move |(a, b)| {
            let item = raw.get(a..b)?;
            let eq = item.find('=')?;
            let name = item.get(..eq)?.trim_end_matches([' ', '\t', '\r', '\n']);
            let value = item.get(eq + 1..)?.trim_start_matches([' ', '\t', '\r', '\n']);
            Some((name, value))
        })
    }

    /// The value as written (quotes included) of the first parameter with this name.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// The value without quotes and escapes.
    pub fn unquoted(&self, name: &str) -> Option<Cow<'a, str>> {
        self.get(name).map(lex::unquote)
    }
}

/// A challenge: `Digest realm="example.com", nonce="...", qop="auth,auth-int"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Challenge<'a> {
    /// `Digest`, compared case-insensitively.
    pub scheme: &'a str,
    pub params: AuthParams<'a>,
}

/// Credentials: `Digest username="alice", realm=..., response="..."`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials<'a> {
    pub scheme: &'a str,
    pub params: AuthParams<'a>,
}

impl<'a> Challenge<'a> {
    pub fn parse(s: &'a str) -> Result<Challenge<'a>, ParseError> {
        let (scheme, params) = parse_auth(s).map_err(|e| ParseError::Value { at: e.at, fault: e.fault })?;
        Ok(Challenge { scheme, params })
    }

    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("Digest")
    }

    pub fn realm(&self) -> Option<Cow<'a, str>> {
        self.params.unquoted("realm")
    }

    pub fn nonce(&self) -> Option<Cow<'a, str>> {
        self.params.unquoted("nonce")
    }

    pub fn opaque(&self) -> Option<Cow<'a, str>> {
        self.params.unquoted("opaque")
    }

    pub fn domain(&self) -> Option<Cow<'a, str>> {
        self.params.unquoted("domain")
    }

    /// `MD5`, `SHA-256`, `MD5-sess`...; absent means MD5 (RFC 2617 §3.2.1).
    pub fn algorithm(&self) -> Option<Cow<'a, str>> {
        self.params.unquoted("algorithm")
    }

    /// The offered qop values (`auth`, `auth-int`), from the quoted comma-separated list.
    pub fn qop_options(&self) -> impl Iterator<Item = &'a str> + 'a {
        let raw = self.params.get("qop").unwrap_or("");
        let inner = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')).unwrap_or(raw);
        inner.split(',').map(|q| q.trim_matches([' ', '\t', '\r', '\n'])).filter(|q| !q.is_empty())
    }

    /// `stale=TRUE`: the nonce expired but the credentials were right; retry without asking the user.
    pub fn stale(&self) -> bool {
        self.params.unquoted("stale").is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

impl<'a> Credentials<'a> {
    pub fn parse(s: &'a str) -> Result<Credentials<'a>, ParseError> {
        let (scheme, params) = parse_auth(s).map_err(|e| ParseError::Value { at: e.at, fault: e.fault })?;
        Ok(Credentials { scheme, params })
    }

    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("Digest")
    }

    pub fn username(&self) -> Option<Cow<'a, str>> {
        self.params.unquoted("username")
    }

    pub fn realm(&self) -> Option<Cow<'a, str>> {
        self.params.unquoted("realm")
    }

    pub fn nonce(&self) -> Option<Cow<'a, str>> {
        self.params.unquoted("nonce")
    }

    pub fn uri(&self) -> Option<Cow<'a, str>> {
        self.params.unquoted("uri")
    }

    pub fn response(&self) -> Option<Cow<'a, str>> {
        self.params.unquoted("response")
    }

    pub fn algorithm(&self) -> Option<Cow<'a, str>> {
        self.params.unquoted("algorithm")
    }

    pub fn cnonce(&self) -> Option<Cow<'a, str>> {
        self.params.unquoted("cnonce")
    }

    pub fn opaque(&self) -> Option<Cow<'a, str>> {
        self.params.unquoted("opaque")
    }

    /// `qop=auth` (some clients quote it).
    pub fn qop(&self) -> Option<Cow<'a, str>> {
        self.params.unquoted("qop")
    }

    /// `nc=00000001`, the nonce count as written.
    pub fn nc(&self) -> Option<&'a str> {
        self.params.get("nc")
    }
}

/// `scheme LWS auth-param *(COMMA auth-param)`, `auth-param = token EQUAL (token / quoted-string)`.
pub(crate) fn parse_auth(s: &str) -> Result<(&str, AuthParams<'_>), Bad> {
    let b = s.as_bytes();
    let s1 = lex::skip(b, 0, lex::TOKEN);
    if s1 == 0 {
        return Err(Bad::new(0, Fault::InvalidToken));
    }
    let p0 = lex::skip_lws(b, s1);
    if p0 == b.len() {
        return Ok((lex::sub(s, 0, s1)?, AuthParams { raw: "" }));
    }
    if p0 == s1 {
        return Err(Bad::new(s1, Fault::UnexpectedChar));
    }
    let mut i = p0;
    loop {
        let n0 = i;
        i = lex::skip(b, i, lex::TOKEN);
        if i == n0 {
            return Err(Bad::new(n0, Fault::EmptyParam));
        }
        i = lex::skip_lws(b, i);
        if b.get(i) != Some(&b'=') {
            return Err(Bad::new(i, Fault::UnexpectedChar));
        }
        i = lex::skip_lws(b, i + 1);
        if b.get(i) == Some(&b'"') {
            i = lex::quoted_end(b, i)?;
        } else {
            let v0 = i;
            i = lex::skip(b, i, lex::TOKEN);
            if i == v0 {
                return Err(Bad::new(v0, Fault::Empty));
            }
        }
        i = lex::skip_lws(b, i);
        match b.get(i) {
            None => break,
            Some(b',') => i = lex::skip_lws(b, i + 1),
            Some(_) => return Err(Bad::new(i, Fault::TrailingData)),
        }
    }
    Ok((lex::sub(s, 0, s1)?, AuthParams { raw: lex::sub(s, p0, s.len())? }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_challenge() {
        let c = Challenge::parse(
            "Digest realm=\"atlanta.example.com\", qop=\"auth,auth-int\",\r\n nonce=\"ea9c8e88df84f1cec4341ae6cbe5a359\", opaque=\"\", stale=FALSE, algorithm=SHA-256",
        )
        .unwrap();
        assert!(c.is_digest());
        assert_eq!(c.realm().unwrap(), "atlanta.example.com");
        assert_eq!(c.nonce().unwrap(), "ea9c8e88df84f1cec4341ae6cbe5a359");
        assert_eq!(c.opaque().unwrap(), "");
        assert_eq!(c.algorithm().unwrap(), "SHA-256");
        assert_eq!(c.qop_options().collect::<Vec<_>>(), vec!["auth", "auth-int"]);
        assert!(!c.stale());
    }

    #[test]
    fn digest_credentials() {
        let c = Credentials::parse(
            "Digest username=\"bob\", realm=\"biloxi.com\", nonce=\"dcd98b\", uri=\"sip:bob@biloxi.com\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae4\", opaque=\"5ccc\"",
        )
        .unwrap();
        assert_eq!(c.username().unwrap(), "bob");
        assert_eq!(c.uri().unwrap(), "sip:bob@biloxi.com");
        assert_eq!(c.qop().unwrap(), "auth");
        assert_eq!(c.nc(), Some("00000001"));
        assert_eq!(c.cnonce().unwrap(), "0a4f113b");
        assert_eq!(c.response().unwrap(), "6629fae4");
    }

    #[test]
    fn invalid_auth() {
        for bad in
            ["", "Digest realm", "Digest realm=", "Digest realm=\"x", "Digest a=b,,c=d", "Digest a=b c=d", "Digest,a=b"]
        {
            assert!(parse_auth(bad).is_err(), "{bad}");
        }
    }
}
