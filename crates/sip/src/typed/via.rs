//! The Via header (RFC 3261 §20.42, §18.2.1 `received`, RFC 3581 `rport`).

use std::net::IpAddr;

use crate::error::{Fault, ParseError};
use crate::lex::{self, Bad};
use crate::params::{self, Params};
use crate::uri::{self, Host};

/// One Via value: `SIP/2.0/UDP host:port;branch=...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    /// `UDP`, `TCP`, `TLS`, `SCTP`, `WS`, or any other token, as written.
    pub transport: &'a str,
    /// sent-by host.
    pub host: Host<'a>,
    /// sent-by port.
    pub port: Option<u16>,
    /// `;branch=`; RFC 3261 branches start with `z9hG4bK`.
    pub branch: Option<&'a str>,
    /// `;received=`, with or without brackets around an IPv6 address (RFC 4475 §4.5, §4.6).
    pub received: Option<IpAddr>,
    /// `;rport` or `;rport=N`.
    pub rport: Option<Rport>,
    /// `;maddr=`.
    pub maddr: Option<Host<'a>>,
    /// `;ttl=`.
    pub ttl: Option<u8>,
    /// Every parameter, the ones above included.
    pub params: Params<'a>,
}

/// The `rport` parameter: asked for by the client, or filled in by the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rport {
    Requested,
    Port(u16),
}

impl<'a> Via<'a> {
    /// Parses one Via value (not a comma-separated list).
    pub fn parse(s: &'a str) -> Result<Via<'a>, ParseError> {
        parse_via(s).map_err(|e| ParseError::Value { at: e.at, fault: e.fault })
    }

    /// Whether the branch carries the RFC 3261 magic cookie, so it identifies the transaction.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch.is_some_and(|b| b.len() > 7 && b.starts_with("z9hG4bK"))
    }
}

/// `token LWS? "/" LWS? token LWS? "/" LWS? token`: returns the three tokens' ends.
fn sent_protocol(b: &[u8], start: usize) -> Result<[(usize, usize); 3], Bad> {
    let mut parts = [(0, 0); 3];
    let mut i = lex::skip_lws(b, start);
    for (k, part) in parts.iter_mut().enumerate() {
        if k > 0 {
            i = lex::skip_lws(b, i);
            if b.get(i) != Some(&b'/') {
                return Err(Bad::new(i, Fault::UnexpectedChar));
            }
            i = lex::skip_lws(b, i + 1);
        }
        let t0 = i;
        i = lex::skip(b, i, lex::TOKEN);
        if i == t0 {
            return Err(Bad::new(t0, Fault::InvalidToken));
        }
        *part = (t0, i);
    }
    Ok(parts)
}

pub(crate) fn parse_via(s: &str) -> Result<Via<'_>, Bad> {
    let b = s.as_bytes();
    let [name, version, transport] = sent_protocol(b, 0)?;
    if !b[name.0..name.1].eq_ignore_ascii_case(b"SIP") || &b[version.0..version.1] != b"2.0" {
        return Err(Bad::new(name.0, Fault::UnsupportedVersion));
    }
    let mut i = lex::skip_lws(b, transport.1);
    if i == transport.1 {
        return Err(Bad::new(i, Fault::UnexpectedChar));
    }
    let (host, end) = uri::parse_host(s, i)?;
    i = lex::skip_lws(b, end);
    let mut port = None;
    if b.get(i) == Some(&b':') {
        let p0 = lex::skip_lws(b, i + 1);
        let p1 = lex::skip(b, p0, lex::DIGIT);
        let n = lex::parse_decimal(&b[p0..p1], u64::from(u16::MAX)).map_err(|_| Bad::new(p0, Fault::InvalidPort))?;
        port = Some(n as u16);
        i = p1;
    }
    let (mut branch, mut received, mut rport, mut maddr, mut ttl) = (None, None, None, None, None);
    let params = params::scan_header_params(s, i, |name, value, at| {
        match name.len() {
            6 if name.eq_ignore_ascii_case("branch") => branch = value,
            8 if name.eq_ignore_ascii_case("received") => {
                received = Some(value.and_then(uri::parse_ip).ok_or(Bad::new(at, Fault::InvalidIp))?);
            }
            5 if name.eq_ignore_ascii_case("rport") => {
                rport = Some(match value {
                    None => Rport::Requested,
                    Some(v) => Rport::Port(
                        lex::parse_decimal(v.as_bytes(), u64::from(u16::MAX))
                            .map_err(|_| Bad::new(at, Fault::InvalidPort))? as u16,
                    ),
                });
            }
            5 if name.eq_ignore_ascii_case("maddr") => {
                let v = value.ok_or(Bad::new(at, Fault::InvalidHost))?;
                match uri::parse_host(v, 0) {
                    Ok((h, e)) if e == v.len() => maddr = Some(h),
                    _ => return Err(Bad::new(at, Fault::InvalidHost)),
                }
            }
            3 if name.eq_ignore_ascii_case("ttl") => {
                let v = value.ok_or(Bad::new(at, Fault::NotANumber))?;
                ttl = Some(lex::parse_decimal(v.as_bytes(), 255).map_err(|f| Bad::new(at, f))? as u8);
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(Via {
        transport: lex::sub(s, transport.0, transport.1)?,
        host,
        port,
        branch,
        received,
        rport,
        maddr,
        ttl,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_via_with_spaces_everywhere() {
        let v = parse_via("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, Host::Ipv4("192.0.2.2".parse().unwrap()));
        assert_eq!(v.branch, Some("390skdjuw"));
        assert!(!v.has_rfc3261_branch());
        let v = parse_via("SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8").unwrap();
        assert_eq!(v.host, Host::Domain("spindle.example.com"));
        assert_eq!(v.branch, Some("z9hG4bK9ikj8"));
        assert!(v.has_rfc3261_branch());
    }

    #[test]
    fn parameters() {
        let v = parse_via(
            "SIP/2.0/UDP [2001:db8::9:1]:5062;received=[2001:db8::9:255];rport=5070;branch=z9hG4bKx;maddr=224.2.0.1;ttl=16",
        )
        .unwrap();
        assert_eq!(v.port, Some(5062));
        assert_eq!(v.received, Some("2001:db8::9:255".parse().unwrap()));
        assert_eq!(v.rport, Some(Rport::Port(5070)));
        assert_eq!(v.maddr, Some(Host::Ipv4("224.2.0.1".parse().unwrap())));
        assert_eq!(v.ttl, Some(16));
        let v = parse_via("SIP/2.0/TCP h.example.com : 5060 ;rport;received=2001:db8::9:255").unwrap();
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.rport, Some(Rport::Requested));
        assert_eq!(v.received, Some("2001:db8::9:255".parse().unwrap()));
    }

    #[test]
    fn invalid_vias() {
        let cases: &[(&str, Fault)] = &[
            ("SIP/2.0/UDP 192.0.2.15;;", Fault::EmptyParam),
            ("SIP/7.0/UDP h", Fault::UnsupportedVersion),
            ("SIP/2.0 h", Fault::UnexpectedChar),
            ("SIP/2.0/UDP", Fault::UnexpectedChar),
            ("SIP/2.0/UDP h:70000", Fault::InvalidPort),
            ("SIP/2.0/UDP h;ttl=256", Fault::Overflow),
            ("SIP/2.0/UDP h;received=host.example.com", Fault::InvalidIp),
            ("SIP/2.0/UDP h;rport=x", Fault::InvalidPort),
            ("SIP/2.0/UDP h x", Fault::TrailingData),
        ];
        for (s, fault) in cases {
            assert_eq!(parse_via(s).unwrap_err().fault, *fault, "{s}");
        }
    }
}
