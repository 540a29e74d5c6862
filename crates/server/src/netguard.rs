//! The SSRF guard (issue 11): where an HTTP request made with a URL that a client or a backend's
//! answer chose may connect.
//!
//! Such a URL (today: `sendXcapRequest`'s, docs/hooks.md §14) may not reach the server's own
//! network: loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7, fec0::/10), link-local
//! (169.254/16 with the cloud metadata address 169.254.169.254, fe80::/10), unspecified and
//! "this network" (0/8, ::), multicast (224/4, ff00::/8), shared/CGNAT (100.64/10) and reserved
//! (240/4 with the broadcast address) addresses are refused unless `[security]
//! allowed_private_ranges` lists them. An IPv6 address that carries an IPv4 one (mapped
//! `::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`) is judged by that IPv4 address.
//!
//! **No DNS-rebinding gap.** [`GuardedConnector`] is the TCP connector of the HTTP client: an IP
//! literal host is checked before anything is sent; a name is resolved by [`GuardedResolver`],
//! which checks EVERY address the name resolves to (one refused address refuses the name), and
//! hyper-util's connector then connects to exactly those checked addresses; nothing resolves
//! the name a second time. Hosts that getaddrinfo reads as addresses (`2130706433`, `127.1`)
//! are names here and are caught by the resolver. Redirects are not followed by the callers.
//!
//! URLs from the operator's own configuration (the apps' hook URLs, `[hooks]`) are trusted and
//! do not go through this guard: they commonly point at a backend on the same host or network.
//!
//! A refusal is a [`Refused`] error in the request error's source chain ([`refusal`] finds
//! it), so the caller reports it as a refusal rather than as a connection failure.

use std::error::Error as StdError;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use tokio::net::TcpStream;

type BoxError = Box<dyn StdError + Send + Sync>;

/// The config key that widens the guard, as named in refusals.
pub const KEY: &str = "security.allowed_private_ranges";

/// The address classes refused by default, IPv4.
const V4: [(&str, &str); 11] = [
    ("0.0.0.0/8", "unspecified"),
    ("127.0.0.0/8", "loopback"),
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("169.254.0.0/16", "link-local"),
    ("100.64.0.0/10", "shared (CGNAT)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("192.0.0.0/24", "IETF protocol"),
    ("198.18.0.0/15", "benchmarking"),
];

/// The address classes refused by default, IPv6 (those carrying an IPv4 address aside).
const V6: [(&str, &str); 6] = [
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fc00::/7", "private (unique local)"),
    ("fec0::/10", "private (site-local)"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
];

/// Where guarded requests may connect: every address but the refused classes, plus the
/// configured ranges.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    allowed: Vec<IpNet>,
}

/// An address a guarded request may not connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The URL's host as given (a name, or the address itself).
    pub host: String,
    pub addr: IpAddr,
    /// `loopback`, `private`, `link-local`, ...
    pub class: &'static str,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.parse::<IpAddr>().ok() == Some(self.addr) {
            write!(f, "{} is a {} address (not in {KEY})", self.addr, self.class)
        } else {
            write!(f, "{} resolves to {}, a {} address (not in {KEY})", self.host, self.addr, self.class)
        }
    }
}

impl StdError for Refused {}

/// Ranges and the name of their class.
type Classes<N> = Vec<(N, &'static str)>;

/// The refused class of `ip`, if any (before the allow-list).
pub fn refused_class(ip: IpAddr) -> Option<&'static str> {
    static NETS: std::sync::LazyLock<(Classes<Ipv4Net>, Classes<Ipv6Net>)> = std::sync::LazyLock::new(|| {
        let v4 = V4.iter().map(|(n, c)| (n.parse().expect("a CIDR"), *c)).collect();
        let v6 = V6.iter().map(|(n, c)| (n.parse().expect("a CIDR"), *c)).collect();
        (v4, v6)
    });
    match ip {
        IpAddr::V4(a) => NETS.0.iter().find(|(n, _)| n.contains(&a)).map(|(_, c)| *c),
        IpAddr::V6(a) => match embedded_v4(&a) {
            Some(v4) => refused_class(IpAddr::V4(v4)),
            None => NETS.1.iter().find(|(n, _)| n.contains(&a)).map(|(_, c)| *c),
        },
    }
}

/// The IPv4 address an IPv6 one carries to the IPv4 network: mapped (`::ffff:0:0/96`) or the
/// NAT64 well-known prefix (`64:ff9b::/96`, RFC 6052).
fn embedded_v4(a: &Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = a.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = a.segments();
    (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]).then(|| {
        let o = a.octets();
        Ipv4Addr::new(o[12], o[13], o[14], o[15])
    })
}

impl Guard {
    /// A guard widened by `ranges` (CIDRs, or single addresses); a bad one is an error naming it.
    pub fn new(ranges: &[String]) -> anyhow::Result<Guard> {
        let allowed = ranges
            .iter()
            .map(|r| {
                let r = r.trim();
                r.parse::<IpNet>()
                    .or_else(|_| r.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| anyhow::anyhow!("{KEY}: {r:?} is not a CIDR range like \"10.1.0.0/16\" or an address"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Guard { allowed })
    }

    /// Whether a request may connect to `addr`, reached as `host`.
    pub fn check(&self, host: &str, addr: IpAddr) -> Result<(), Refused> {
        let Some(class) = refused_class(addr) else { return Ok(()) };
        let listed = |ip: IpAddr| self.allowed.iter().any(|n| n.contains(&ip));
        let v4 = match addr {
            IpAddr::V6(a) => embedded_v4(&a).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        if listed(addr) || v4.is_some_and(listed) {
            return Ok(());
        }
        Err(Refused { host: host.to_string(), addr, class })
    }
}

/// The [`Refused`] in `err`'s source chain, if the request was refused by the guard.
pub fn refusal<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a Refused> {
    let mut e = Some(err);
    while let Some(x) = e {
        if let Some(r) = x.downcast_ref::<Refused>() {
            return Some(r);
        }
        // An io::Error's `source()` skips the error it wraps.
        e = match x.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => x.source(),
        };
    }
    None
}

/// Resolves a name with the system resolver and checks every address (see the module doc).
#[derive(Clone)]
pub struct GuardedResolver {
    guard: Arc<Guard>,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let guard = self.guard.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            // The port is set by the connector; 0 here.
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| format!("cannot resolve {host}: {e}"))?
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no address").into());
            }
            for a in &addrs {
                guard.check(&host, a.ip())?;
            }
            Ok(addrs.into_iter())
        })
    }
}

/// The TCP connector of guarded HTTP clients: hyper-util's, with [`GuardedResolver`], and IP
/// literal hosts (which it would not resolve) checked first.
#[derive(Clone)]
pub struct GuardedConnector {
    inner: HttpConnector<GuardedResolver>,
    guard: Arc<Guard>,
}

impl GuardedConnector {
    /// `enforce_http(false)`: an https connector goes on top of this one.
    pub fn new(guard: Guard) -> GuardedConnector {
        let guard = Arc::new(guard);
        let mut inner = HttpConnector::new_with_resolver(GuardedResolver { guard: guard.clone() });
        inner.enforce_http(false);
        GuardedConnector { inner, guard }
    }
}

impl tower_service::Service<http::Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        let host = dst.host().unwrap_or_default();
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            if let Err(r) = self.guard.check(bare, ip) {
                return Box::pin(std::future::ready(Err(r.into())));
            }
        }
        let fut = self.inner.call(dst);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_by_default() {
        let g = Guard::default();
        for (a, class) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("10.0.0.1", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "shared (CGNAT)"),
            ("100.127.255.254", "shared (CGNAT)"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fd00::1", "private (unique local)"),
            ("fc00::1", "private (unique local)"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("64:ff9b::10.0.0.1", "private"),
        ] {
            let r = g.check(a, ip(a)).unwrap_err();
            assert_eq!(r.class, class, "{a}");
            assert_eq!(r.to_string(), format!("{} is a {class} address (not in {KEY})", ip(a)));
        }
        for a in ["93.184.215.14", "172.32.0.1", "100.128.0.1", "192.169.0.1", "2606:4700::1", "::ffff:8.8.8.8"] {
            assert_eq!(g.check(a, ip(a)), Ok(()), "{a}");
        }
        let r = g.check("xcap.example", ip("10.1.2.3")).unwrap_err();
        assert_eq!(r.to_string(), format!("xcap.example resolves to 10.1.2.3, a private address (not in {KEY})"));
    }

    #[test]
    fn configured_ranges_are_allowed() {
        let g =
            Guard::new(&["127.0.0.0/8".into(), " 10.0.0.0/24 ".into(), "169.254.169.254".into(), "fd00::/8".into()])
                .unwrap();
        for a in ["127.0.0.1", "10.0.0.1", "169.254.169.254", "::ffff:127.0.0.1", "fd12::1"] {
            assert_eq!(g.check(a, ip(a)), Ok(()), "{a}");
        }
        for a in ["10.0.1.1", "169.254.169.253", "::1", "192.168.0.1"] {
            assert!(g.check(a, ip(a)).is_err(), "{a}");
        }
        let e = Guard::new(&["10.0.0.0/33".into()]).unwrap_err().to_string();
        assert!(e.contains(KEY) && e.contains("10.0.0.0/33"), "{e}");
        assert!(Guard::new(&["localhost".into()]).is_err());
    }

    #[test]
    fn a_refusal_is_found_in_an_error_chain() {
        let r = Refused { host: "h".into(), addr: ip("10.0.0.1"), class: "private" };
        let io = std::io::Error::other(r.clone());
        assert_eq!(refusal(&io), Some(&r));
        let other = std::io::Error::other("connection refused");
        assert_eq!(refusal(&other), None);
    }

    /// The resolver path: `localhost` resolves to loopback addresses only, and is refused
    /// unless they are allowed; nothing is connected.
    #[tokio::test]
    async fn a_name_is_checked_on_every_address_it_resolves_to() {
        use tower_service::Service;
        let mut c = GuardedConnector::new(Guard::default());
        let err = c.call("http://localhost:9/".parse().unwrap()).await.unwrap_err();
        let r = refusal(&*err).unwrap_or_else(|| panic!("refused: {err}"));
        assert_eq!((r.host.as_str(), r.class), ("localhost", "loopback"));
        let err = c.call("http://127.0.0.1:9/".parse().unwrap()).await.unwrap_err();
        assert!(refusal(&*err).is_some(), "{err}");
        let err = c.call("http://[::1]:9/".parse().unwrap()).await.unwrap_err();
        assert!(refusal(&*err).is_some(), "{err}");
        // getaddrinfo reads a bare number as an IPv4 address.
        let err = c.call("http://2130706433:9/".parse().unwrap()).await.unwrap_err();
        assert_eq!(refusal(&*err).map(|r| r.addr), Some(ip("127.0.0.1")), "{err}");
    }
}
