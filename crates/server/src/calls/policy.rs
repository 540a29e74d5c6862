//! Who may talk SIP with the node, and where the node may send SIP (issue 14, items 7 and 8).
//!
//! - **Sources.** An INVITE or MESSAGE outside a dialog for a registered user is accepted only
//!   from that registration's next hop (the registrar or outbound proxy REGISTER was sent to),
//!   compared by IP address (a PBX often sends from another port or transport than the one it
//!   registers on, and a spoofer who can forge an address can forge its port as well), or from
//!   `[sip] trusted_networks`. Anything else gets `403`, is counted
//!   (`callgate_sip_untrusted_requests_total{method}`) and logged once per source address.
//! - **Destinations.** The next hop of a session's account (`sipOutboundProxy`, else
//!   `sipProxy`, else `sipDomain`, with `sipPort`) must match `[sip] allowed_destinations` or the
//!   session's `sipAllowedDestinations`, a list only the backend's `connect` answer can give
//!   (the client's own field is removed before the hook). Otherwise the operation fails with
//!   [`NOT_ALLOWED`] and nothing is sent.
//!
//! Entry syntax (both lists of destinations): an IP address or CIDR block (`10.0.0.0/8`,
//! `::1`), any port; `ip:port` (`192.0.2.7:5060`, `[2001:db8::1]:5060`), that port only; a host
//! name (`pbx.example.com`, `pbx.example.com:5060`), matched against the name as given (its DNS
//! answer is then trusted). `trusted_networks` takes IP addresses and CIDR blocks only.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use parking_lot::Mutex;
use serde_json::Value;

/// The `info` of an operation refused by the destination allow-list.
pub use callgate_proto::info::SIP_DESTINATION_NOT_ALLOWED as NOT_ALLOWED;

/// The connection-object field, set only by the backend's `connect` answer, that widens
/// `[sip] allowed_destinations` for one session.
pub const SESSION_FIELD: &str = "sipAllowedDestinations";

/// Sources logged at `warn` (then `debug`), so a flood cannot grow the set without bound.
const MAX_LOGGED_SOURCES: usize = 1024;

/// An IP address block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

/// An IPv4-mapped IPv6 address is its IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl Net {
    /// `192.0.2.0/24`, `192.0.2.7`, `2001:db8::/32`, `::1`, `[::1]`.
    pub fn parse(s: &str) -> Result<Net, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let a = a.trim().trim_start_matches('[').trim_end_matches(']');
        let addr = canonical(a.parse::<IpAddr>().map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => {
                p.trim().parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("{s:?}: bad prefix length"))?
            }
        };
        Ok(Net { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |width: u32| if self.prefix == 0 { 0 } else { u128::MAX << (width - u32::from(self.prefix)) };
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let m = bits(32) as u32;
                u32::from(a) & m == u32::from(b) & m
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => u128::from(a) & bits(128) == u128::from(b) & bits(128),
            _ => false,
        }
    }
}

/// One allowed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Net { net: Net, port: Option<u16> },
    Name { name: String, port: Option<u16> },
}

impl Destination {
    pub fn parse(s: &str) -> Result<Destination, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("an empty destination".into());
        }
        if let Ok(net) = Net::parse(s) {
            return Ok(Destination::Net { net, port: None });
        }
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Destination::Net { net: Net::parse(&a.ip().to_string())?, port: Some(a.port()) });
        }
        let (name, port) = match s.rsplit_once(':') {
            Some((n, p)) => (n, Some(p.parse::<u16>().map_err(|_| format!("{s:?}: bad port"))?)),
            None => (s, None),
        };
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            && !name.starts_with(['-', '.']);
        if !valid {
            return Err(format!("{s:?} is not an IP address, CIDR block, ip:port or host name[:port]"));
        }
        Ok(Destination::Name { name: name.to_ascii_lowercase(), port })
    }

    /// `name` is the host as configured for the session (without port or brackets), `addr`
    /// what it resolved to.
    fn matches(&self, name: &str, addr: SocketAddr) -> bool {
        match self {
            Destination::Net { net, port } => net.contains(addr.ip()) && port.is_none_or(|p| p == addr.port()),
            Destination::Name { name: n, port } => {
                n.eq_ignore_ascii_case(name) && port.is_none_or(|p| p == addr.port())
            }
        }
    }

    /// Decided from the name and port alone, before resolution: `Some(true)` for a listed name
    /// or an allowed IP literal, `Some(false)` for an IP literal not allowed, `None` when only
    /// the resolved address can tell.
    fn matches_unresolved(&self, name: &str, port: u16) -> Option<bool> {
        match name.parse::<IpAddr>() {
            Ok(ip) => Some(self.matches(name, SocketAddr::new(ip, port))),
            Err(_) => match self {
                Destination::Name { name: n, port: p } => {
                    (n.eq_ignore_ascii_case(name) && p.is_none_or(|p| p == port)).then_some(true)
                }
                Destination::Net { .. } => None,
            },
        }
    }
}

/// The node's source and destination rules.
#[derive(Debug)]
pub struct SipPolicy {
    trusted: Vec<Net>,
    destinations: Vec<Destination>,
    logged: Mutex<HashSet<IpAddr>>,
}

/// The backend-given destinations of a session (`sipAllowedDestinations`): a list of strings,
/// or one comma-separated string; entries that do not parse are ignored (and logged).
pub fn session_destinations(connection: &serde_json::Map<String, Value>) -> Vec<Destination> {
    let items: Vec<String> = match connection.get(SESSION_FIELD) {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        Some(Value::String(s)) => s.split(',').map(str::to_string).collect(),
        _ => return Vec::new(),
    };
    items
        .iter()
        .filter(|s| !s.trim().is_empty())
        .filter_map(|s| {
            Destination::parse(s).map_err(|e| tracing::warn!(field = SESSION_FIELD, error = %e, "entry ignored")).ok()
        })
        .collect()
}

impl SipPolicy {
    /// The rules of `[sip]` (`trusted_networks`, `allowed_destinations`); the error names the
    /// bad entry (`callgate_server::validate` refuses it before any port is bound).
    pub fn from_config(sip: &crate::config::SipSection) -> anyhow::Result<SipPolicy> {
        SipPolicy::new(&sip.trusted_networks, &sip.allowed_destinations).map_err(anyhow::Error::msg)
    }

    pub fn new(trusted: &[String], destinations: &[String]) -> Result<SipPolicy, String> {
        let trusted = trusted
            .iter()
            .map(|s| Net::parse(s).map_err(|e| format!("sip.trusted_networks: {e}")))
            .collect::<Result<_, _>>()?;
        let destinations = destinations
            .iter()
            .map(|s| Destination::parse(s).map_err(|e| format!("sip.allowed_destinations: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(SipPolicy { trusted, destinations, logged: Mutex::new(HashSet::new()) })
    }

    /// An out-of-dialog request from `source` for a registration made through `next_hop`.
    pub fn source_allowed(&self, source: SocketAddr, next_hop: SocketAddr) -> bool {
        canonical(source.ip()) == canonical(next_hop.ip()) || self.trusted.iter().any(|n| n.contains(source.ip()))
    }

    /// Counts a refused request and logs it, once per source address.
    pub fn note_refused_source(&self, source: SocketAddr, method: &'static str, user: &str) {
        metrics::counter!("callgate_sip_untrusted_requests_total", "method" => method).increment(1);
        let first = {
            let mut l = self.logged.lock();
            l.len() < MAX_LOGGED_SOURCES && l.insert(canonical(source.ip()))
        };
        if first {
            tracing::warn!(%source, method, user, "SIP request from neither the registration's next hop nor [sip] trusted_networks refused with 403 (logged once per source)");
        } else {
            tracing::debug!(%source, method, user, "SIP request from an untrusted source refused with 403");
        }
    }

    /// Whether SIP may go to `addr`, reached as `name` (the host as given, without port).
    pub fn destination_allowed(&self, session: &[Destination], name: &str, addr: SocketAddr) -> bool {
        self.destinations.iter().chain(session).any(|d| d.matches(name, addr))
    }

    /// [`SipPolicy::destination_allowed`] before resolution, when the name alone decides
    /// (`None`: resolve first).
    pub fn destination_allowed_unresolved(&self, session: &[Destination], name: &str, port: u16) -> Option<bool> {
        let verdicts: Vec<Option<bool>> =
            self.destinations.iter().chain(session).map(|d| d.matches_unresolved(name, port)).collect();
        if verdicts.contains(&Some(true)) {
            Some(true)
        } else if name.parse::<IpAddr>().is_ok() {
            Some(false)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks() {
        let n = Net::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()), "IPv4-mapped");
        assert!(Net::parse("127.0.0.1").unwrap().contains("127.0.0.1".parse().unwrap()));
        assert!(!Net::parse("127.0.0.1").unwrap().contains("127.0.0.2".parse().unwrap()));
        assert!(Net::parse("0.0.0.0/0").unwrap().contains("192.0.2.1".parse().unwrap()));
        assert!(!Net::parse("0.0.0.0/0").unwrap().contains("::1".parse().unwrap()));
        assert!(Net::parse("2001:db8::/32").unwrap().contains("2001:db8:1::5".parse().unwrap()));
        assert!(Net::parse("[::1]").unwrap().contains("::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "::1/129", "10.0.0.0/x", ""] {
            assert!(Net::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sources_are_the_next_hop_ip_or_a_trusted_network() {
        let p = SipPolicy::new(&["192.0.2.0/24".into()], &[]).unwrap();
        let hop = sa("127.0.0.1:5060");
        assert!(p.source_allowed(sa("127.0.0.1:40000"), hop), "the next hop's IP, any port");
        assert!(!p.source_allowed(sa("127.0.0.2:5060"), hop));
        assert!(p.source_allowed(sa("192.0.2.44:5060"), hop), "trusted network");
        assert!(p.source_allowed(sa("[::ffff:127.0.0.1]:5060"), hop), "IPv4-mapped");
        assert!(SipPolicy::new(&["pbx.example.com".into()], &[]).is_err(), "names are not networks");
    }

    #[test]
    fn destinations() {
        let p = SipPolicy::new(
            &[],
            &[
                "127.0.0.0/8".into(),
                "::1".into(),
                "192.0.2.7:5060".into(),
                "pbx.example.com".into(),
                "sbc.test:5080".into(),
            ],
        )
        .unwrap();
        let ok = |name: &str, a: &str| p.destination_allowed(&[], name, sa(a));
        assert!(ok("127.0.0.1", "127.0.0.1:5099"));
        assert!(ok("localhost", "127.0.0.1:5060"), "judged by the resolved address");
        assert!(ok("::1", "[::1]:5060"));
        assert!(ok("192.0.2.7", "192.0.2.7:5060"));
        assert!(!ok("192.0.2.7", "192.0.2.7:5061"), "another port");
        assert!(ok("PBX.example.com", "198.51.100.1:5060"), "a listed name, any port");
        assert!(ok("sbc.test", "198.51.100.2:5080"));
        assert!(!ok("sbc.test", "198.51.100.2:5060"));
        assert!(!ok("evil.example.com", "198.51.100.3:5060"));
        assert!(!ok("10.0.0.1", "10.0.0.1:5060"));
        let session = vec![Destination::parse("10.0.0.0/8").unwrap()];
        assert!(p.destination_allowed(&session, "10.0.0.1", sa("10.0.0.1:5060")), "widened by the backend");
        assert_eq!(p.destination_allowed_unresolved(&[], "10.0.0.1", 5060), Some(false));
        assert_eq!(p.destination_allowed_unresolved(&[], "127.0.0.1", 5060), Some(true));
        assert_eq!(p.destination_allowed_unresolved(&[], "pbx.example.com", 1), Some(true));
        assert_eq!(p.destination_allowed_unresolved(&[], "other.example.com", 5060), None);
        for bad in ["", "a b", "-x.com", "h:port", "http://x"] {
            assert!(Destination::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn session_field() {
        let m = serde_json::json!({SESSION_FIELD: ["10.0.0.0/8", "bad name!", "pbx.test:5060"]});
        assert_eq!(session_destinations(m.as_object().unwrap()).len(), 2);
        let m = serde_json::json!({SESSION_FIELD: "10.0.0.1, 10.0.0.2"});
        assert_eq!(session_destinations(m.as_object().unwrap()).len(), 2);
        assert!(session_destinations(&serde_json::Map::new()).is_empty());
    }
}
