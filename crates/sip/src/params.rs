//! `;name=value` parameter lists, of header values (`;tag=x`, with white space allowed around
//! `;` and `=` and quoted values) and of URIs (`;lr;transport=tcp`, with `%` escapes).
//!
//! Parsing validates the whole list once and keeps only its text; lookups walk that text again,
//! which for the handful of parameters a SIP value has is cheaper than allocating a map.

use crate::fault::Fault;
use crate::lex::{self, Bad};

/// A validated parameter list, starting at its first `;` (or empty).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params<'a> {
    raw: &'a str,
}

/// One parameter. The value is as written: a quoted value keeps its quotes (see
/// [`crate::unquote`]), a URI parameter keeps its escapes (see [`crate::unescape`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param<'a> {
    pub name: &'a str,
    pub value: Option<&'a str>,
}

impl<'a> Params<'a> {
    /// The list as written, from its first `;`.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter { raw: self.raw, pos: 0 }
    }

    /// The first parameter with this name (names compare case-insensitively, RFC 3261 §19.1.4).
    pub fn get(&self, name: &str) -> Option<Param<'a>> {
        self.iter().find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// The value of a parameter that has one (`None` for absent or valueless).
    pub fn value(&self, name: &str) -> Option<&'a str> {
        self.get(name).and_then(|p| p.value)
    }

    /// Whether the parameter is present, with or without a value (`;lr`).
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

impl<'a> IntoIterator for Params<'a> {
    type Item = Param<'a>;
    type IntoIter = ParamIter<'a>;
    fn into_iter(self) -> ParamIter<'a> {
        self.iter()
    }
}

/// Iterator over a [`Params`] list.
#[derive(Clone, Debug)]
pub struct ParamIter<'a> {
    raw: &'a str,
    pos: usize,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = Param<'a>;

    fn next(&mut self) -> Option<Param<'a>> {
        let b = self.raw.as_bytes();
        let mut i = lex::skip_lws(b, self.pos);
        if i >= b.len() || b[i] != b';' {
            self.pos = b.len();
            return None;
        }
        i = lex::skip_lws(b, i + 1);
        let n0 = i;
        while i < b.len() && !matches!(b[i], b';' | b'=') && !lex::is(b[i], lex::LWS) {
            i += 1;
        }
        let name = self.raw.get(n0..i)?;
        let k = lex::skip_lws(b, i);
        if k < b.len() && b[k] == b'=' {
            let v0 = lex::skip_lws(b, k + 1);
            let v1 = if b.get(v0) == Some(&b'"') {
                lex::quoted_end(b, v0).unwrap_or(b.len())
            } else {
                let mut e = v0;
                while e < b.len() && b[e] != b';' && !lex::is(b[e], lex::LWS) {
                    e += 1;
                }
                e
            };
            self.pos = v1;
            Some(Param { name, value: Some(self.raw.get(v0..v1)?) })
        } else {
            self.pos = i;
            Some(Param { name, value: None })
        }
    }
}

/// Validates header parameters from `s[start..]` to the end of `s`:
/// `*( SEMI token [ EQUAL ( token / host / quoted-string ) ] )`. An empty parameter (`;;`) is a
/// fault (RFC 4475 §3.1.2.1).
pub(crate) fn parse_header_params(s: &str, start: usize) -> Result<Params<'_>, Bad> {
    scan_header_params(s, start, |_, _, _| Ok(()))
}

/// [`parse_header_params`] that also hands each parameter to `each` (name, value as written,
/// offset of the name), so that callers pick out the ones they know in the same pass.
pub(crate) fn scan_header_params<'a>(
    s: &'a str,
    start: usize,
    mut each: impl FnMut(&'a str, Option<&'a str>, usize) -> Result<(), Bad>,
) -> Result<Params<'a>, Bad> {
    let b = s.as_bytes();
    let mut i = start;
    loop {
        i = lex::skip_lws(b, i);
        if i >= b.len() {
            break;
        }
        if b[i] != b';' {
            return Err(Bad::new(i, Fault::TrailingData));
        }
        i = lex::skip_lws(b, i + 1);
        let n0 = i;
        i = lex::skip(b, i, lex::TOKEN);
        if i == n0 {
            return Err(Bad::new(n0, Fault::EmptyParam));
        }
        let name = lex::sub(s, n0, i)?;
        let k = lex::skip_lws(b, i);
        let mut value = None;
        if k < b.len() && b[k] == b'=' {
            let v0 = lex::skip_lws(b, k + 1);
            i = if b.get(v0) == Some(&b'"') { lex::quoted_end(b, v0)? } else { lex::skip(b, v0, lex::PVALUE) };
            if i == v0 {
                return Err(Bad::new(v0, Fault::Empty));
            }
            value = Some(lex::sub(s, v0, i)?);
        }
        each(name, value, n0)?;
    }
    Ok(Params { raw: lex::sub(s, start.min(s.len()), s.len())? })
}

/// Validates URI parameters starting at `s[start] == ';'`: `*( ";" pname [ "=" pvalue ] )` with
/// `paramchar`s and escapes. Stops at the first byte that cannot continue the list and returns
/// the list and that index.
pub(crate) fn parse_uri_params(s: &str, start: usize) -> Result<(Params<'_>, usize), Bad> {
    let b = s.as_bytes();
    let mut i = start;
    while i < b.len() && b[i] == b';' {
        let n0 = i + 1;
        i = lex::skip_escaped(b, n0, lex::PARAM)?;
        if i == n0 {
            return Err(Bad::new(n0, Fault::EmptyParam));
        }
        if b.get(i) == Some(&b'=') {
            let v0 = i + 1;
            i = lex::skip_escaped(b, v0, lex::PARAM)?;
            if i == v0 {
                return Err(Bad::new(v0, Fault::Empty));
            }
        }
    }
    Ok((Params { raw: lex::sub(s, start, i)? }, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_params_with_white_space_and_quotes() {
        let s = " ;\r\n  tag = 98asjd8 ; lr ;x=\"a;b\"";
        let p = parse_header_params(s, 0).unwrap();
        let all: Vec<_> = p.iter().map(|p| (p.name, p.value)).collect();
        assert_eq!(all, vec![("tag", Some("98asjd8")), ("lr", None), ("x", Some("\"a;b\""))]);
        assert_eq!(p.value("TAG"), Some("98asjd8"));
        assert!(p.contains("lr"));
        assert!(!p.contains("l"));
    }

    #[test]
    fn empty_and_malformed_header_params_are_faults() {
        assert_eq!(parse_header_params(";;", 0).unwrap_err().fault, Fault::EmptyParam);
        assert_eq!(parse_header_params(";a=", 0).unwrap_err().fault, Fault::Empty);
        assert_eq!(parse_header_params(";a b", 0).unwrap_err().fault, Fault::TrailingData);
        assert_eq!(parse_header_params(";a=\"x", 0).unwrap_err().fault, Fault::UnterminatedQuote);
        assert!(parse_header_params("", 0).unwrap().is_empty());
    }

    #[test]
    fn uri_params_with_escapes() {
        let s = ";%6C%72;n%61me=v%61lue%25%34%31?h=v";
        let (p, end) = parse_uri_params(s, 0).unwrap();
        assert_eq!(&s[end..], "?h=v");
        assert_eq!(p.value("n%61me"), Some("v%61lue%25%34%31"));
        assert!(parse_uri_params(";a=%zz", 0).is_err());
        assert_eq!(parse_uri_params(";;", 0).unwrap_err().fault, Fault::EmptyParam);
    }
}
