//! Answering digest challenges (RFC 3261 §22.2-22.3, RFC 8760): pick the best challenge of a
//! 401 or 407, compute the credentials, and decide whether another try makes sense.

use crate::digest::{self, Algorithm, DigestChallenge};
use crate::message::Message;
use crate::name::HeaderName;

/// Who we are to a challenger, and who may challenge us: the account's next hop, for the
/// account's realm.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Creds {
    pub user: String,
    pub password: String,
    /// Where the account's requests go first (its registrar or outbound proxy).
    pub next_hop: std::net::SocketAddr,
    /// The account's domain: a realm equal to it (or to its host) is the account's.
    pub domain: String,
}

/// Never prints the password.
impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Creds")
            .field("user", &self.user)
            .field("next_hop", &self.next_hop)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl Creds {
    pub fn of(account: &super::Account) -> Creds {
        Creds {
            user: account.auth_user().to_owned(),
            password: account.password.clone(),
            next_hop: account.next_hop,
            domain: account.domain.clone(),
        }
    }

    /// Whether `realm` is the account's configured domain (`pbx.example.com`, or the host of
    /// `127.0.0.1:5060`).
    pub fn is_domain(&self, realm: &str) -> bool {
        let host = match self.domain.rsplit_once(':') {
            // `host:port`, not a bare IPv6 address.
            Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
            _ => self.domain.as_str(),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        realm.eq_ignore_ascii_case(&self.domain) || realm.eq_ignore_ascii_case(host)
    }
}

/// Why a challenge is not answered (issue 14 item 9: credentials go to no one but the
/// account's own proxy or registrar, for its own realm). `source` is where the 401/407 came
/// from; `known_realm` says whether the realm is the account's (its domain, or learned when
/// its registration was challenged by the same next hop); `learning` is true for a REGISTER,
/// whose challenge teaches the realm.
pub(crate) fn refuse_challenge(
    creds: &Creds,
    source: Option<std::net::SocketAddr>,
    known_realm: bool,
    learning: bool,
) -> Option<&'static str> {
    // The IP only: a proxy may answer from another of its ports (RFC 3261 §18.2.2 sends
    // responses to the Via, not from the socket that received the request). Canonical: a
    // socket bound to `[::]` reports IPv4 sources as `::ffff:a.b.c.d`.
    if source.map(|s| s.ip().to_canonical()) != Some(creds.next_hop.ip().to_canonical()) {
        return Some("not from the account's next hop");
    }
    if !known_realm && !learning {
        return Some("not the account's realm");
    }
    None
}

/// A challenge we answered, kept to answer the next request to the same realm without a
/// round trip (the nonce count goes up by one each time, RFC 7616 §3.4).
#[derive(Debug, Clone)]
pub(crate) struct Answered {
    pub challenge: DigestChallenge,
    /// `Authorization` (401) or `Proxy-Authorization` (407).
    pub header: HeaderName,
    pub nc: u32,
}

impl Answered {
    /// Credentials for one more request with the cached nonce.
    pub fn next(&mut self, creds: &Creds, method: &str, uri: &str, cnonce: &str) -> (HeaderName, String) {
        self.nc += 1;
        let v = digest::authorization(&self.challenge, &creds.user, &creds.password, method, uri, self.nc, cnonce);
        (self.header, v)
    }
}

/// The strongest digest challenge of the response we can answer: SHA-256 before MD5, `-sess`
/// variants after plain ones; `qop=auth` when offered; a challenge that offers only
/// `auth-int` is skipped.
pub(crate) fn pick_challenge(resp: &Message) -> Option<(HeaderName, DigestChallenge)> {
    let (challenges, header) = match resp.status().map(|s| s.as_u16()) {
        Some(407) => (resp.proxy_authenticate(), HeaderName::ProxyAuthorization),
        _ => (resp.www_authenticate(), HeaderName::Authorization),
    };
    let rank = |a: Algorithm| match a {
        Algorithm::Sha256 => 0,
        Algorithm::Sha256Sess => 1,
        Algorithm::Md5 => 2,
        Algorithm::Md5Sess => 3,
    };
    let mut best: Option<DigestChallenge> = None;
    for c in challenges.flatten() {
        if !c.is_digest() {
            continue;
        }
        let Some(algorithm) = Algorithm::parse(c.algorithm().as_deref()) else { continue };
        let offered: Vec<&str> = c.qop_options().collect();
        let qop_auth = offered.iter().any(|q| q.eq_ignore_ascii_case("auth"));
        if !offered.is_empty() && !qop_auth {
            continue;
        }
        let (Some(realm), Some(nonce)) = (c.realm(), c.nonce()) else { continue };
        let candidate = DigestChallenge {
            realm: realm.into_owned(),
            nonce: nonce.into_owned(),
            opaque: c.opaque().map(|o| o.into_owned()),
            algorithm,
            qop_auth,
            stale: c.stale(),
        };
        if best.as_ref().is_none_or(|b| rank(candidate.algorithm) < rank(b.algorithm)) {
            best = Some(candidate);
        }
    }
    best.map(|b| (header, b))
}

/// Tries per request: the first challenge is answered; after that only a `stale=true`
/// challenge is (the credentials were right, the nonce had expired), a few times at most.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Attempts {
    answered: u8,
}

impl Attempts {
    pub fn allow(&mut self, challenge: &DigestChallenge) -> bool {
        let ok = self.answered == 0 || (challenge.stale && self.answered < 3);
        if ok {
            self.answered += 1;
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn resp(status: &str, headers: &str) -> Message {
        crate::parse_datagram(Bytes::from(format!(
            "SIP/2.0 {status}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:a@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n{headers}Content-Length: 0\r\n\r\n"
        )))
        .unwrap()
    }

    #[test]
    fn prefers_sha256_and_qop_auth() {
        let r = resp(
            "401 Unauthorized",
            "WWW-Authenticate: Digest realm=\"r\", nonce=\"n1\", qop=\"auth\", algorithm=MD5\r\n\
             WWW-Authenticate: Digest realm=\"r\", nonce=\"n2\", qop=\"auth,auth-int\", algorithm=SHA-256\r\n",
        );
        let (h, c) = pick_challenge(&r).unwrap();
        assert_eq!(h, HeaderName::Authorization);
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.nonce, "n2");
        assert!(c.qop_auth);
    }

    #[test]
    fn proxy_challenges_and_unusable_ones() {
        let r = resp("407 Proxy Authentication Required", "Proxy-Authenticate: Digest realm=\"p\", nonce=\"x\"\r\n");
        let (h, c) = pick_challenge(&r).unwrap();
        assert_eq!(h, HeaderName::ProxyAuthorization);
        assert!(!c.qop_auth);
        let r = resp("401 Unauthorized", "WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"\r\n");
        assert!(pick_challenge(&r).is_none(), "auth-int only");
        let r = resp("401 Unauthorized", "WWW-Authenticate: Basic realm=\"r\"\r\n");
        assert!(pick_challenge(&r).is_none());
        let r = resp("401 Unauthorized", "WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512\r\n");
        assert!(pick_challenge(&r).is_none());
    }

    #[test]
    fn next_hop_matched_across_ipv4_mapped_addresses() {
        let creds = Creds {
            user: "u".into(),
            password: "p".into(),
            next_hop: "192.0.2.7:5060".parse().unwrap(),
            domain: "pbx".into(),
        };
        // A dual-stack socket (`[::]`) reports the IPv4 next hop as a mapped address.
        let mapped: std::net::SocketAddr = "[::ffff:192.0.2.7]:5060".parse().unwrap();
        assert_eq!(refuse_challenge(&creds, Some(mapped), true, false), None);
        let other: std::net::SocketAddr = "[::ffff:192.0.2.8]:5060".parse().unwrap();
        assert!(refuse_challenge(&creds, Some(other), true, false).is_some());
        let v6 = Creds { next_hop: "[::ffff:192.0.2.7]:5060".parse().unwrap(), ..creds };
        assert_eq!(refuse_challenge(&v6, Some("192.0.2.7:5061".parse().unwrap()), true, false), None);
    }

    #[test]
    fn attempts_once_then_only_stale() {
        let mut c = DigestChallenge {
            realm: "r".into(),
            nonce: "n".into(),
            opaque: None,
            algorithm: Algorithm::Md5,
            qop_auth: true,
            stale: false,
        };
        let mut a = Attempts::default();
        assert!(a.allow(&c));
        assert!(!a.allow(&c), "same credentials refused again: give up");
        c.stale = true;
        assert!(a.allow(&c));
        assert!(a.allow(&c));
        assert!(!a.allow(&c), "bounded");
    }
}
