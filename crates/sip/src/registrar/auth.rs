//! The registrar's digest authentication (RFC 3261 §22.4, RFC 2617, RFC 7616, RFC 8760) as a
//! server: stateless nonces and the check of an `Authorization` header.
//!
//! A nonce is `<issued, hex seconds since the registrar started>.<16 hex of SHA-256(secret,
//! issued, realm)>`: the registrar keeps no table of nonces, a forged or foreign one fails the
//! MAC, and an old one (past `nonce_lifetime`) is answered with `stale=true` so the client
//! retries with the new nonce without asking its user (RFC 2617 §3.2.1). The nonce count is not
//! tracked: a replayed REGISTER within the nonce's lifetime is possible and only re-binds what
//! the original bound (the lifetime bounds it).

use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::digest::{self, Algorithm, DigestChallenge};
use crate::typed::auth::Credentials;

/// What an `Authorization` header amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The response verifies with a fresh nonce of ours.
    Ok,
    /// Our nonce, too old: challenge again with `stale=true`.
    Stale,
    /// Not for our realm, not our nonce, or not a digest we can check: challenge again.
    Challenge,
    /// Our nonce and realm, a wrong response: the password is wrong.
    Wrong,
}

pub(crate) struct Nonces {
    secret: [u8; 32],
    started: Instant,
    lifetime: Duration,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Nonces {
    pub(crate) fn new(seed: u64, started: Instant, lifetime: Duration) -> Nonces {
        let secret: [u8; 32] = Sha256::digest(format!("callgate-registrar-{seed}").as_bytes()).into();
        Nonces { secret, started, lifetime }
    }

    fn mac(&self, issued: u64, realm: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(issued.to_be_bytes());
        h.update(realm.as_bytes());
        hex(&h.finalize()[..8])
    }

    pub(crate) fn issue(&self, now: Instant, realm: &str) -> String {
        let issued = now.saturating_duration_since(self.started).as_secs();
        format!("{issued:x}.{}", self.mac(issued, realm))
    }

    /// `Some(true)` for a fresh nonce of ours, `Some(false)` for an expired one, `None` for
    /// anything we did not issue.
    fn fresh(&self, now: Instant, realm: &str, nonce: &str) -> Option<bool> {
        let (issued, mac) = nonce.split_once('.')?;
        let issued = u64::from_str_radix(issued, 16).ok()?;
        if !ct_eq(mac.as_bytes(), self.mac(issued, realm).as_bytes()) {
            return None;
        }
        let age = now.saturating_duration_since(self.started).as_secs().checked_sub(issued)?;
        Some(age <= self.lifetime.as_secs())
    }

    /// The `WWW-Authenticate` values to send: MD5 first, then SHA-256. RFC 8760 §2.4 asks for
    /// the preferred one first, but many phones (sipp 3.6.1 among them) answer only the first
    /// challenge and fail on an algorithm they lack; a client that weighs every challenge
    /// (callgate's own user agent, RFC 8760 clients) still takes SHA-256.
    pub(crate) fn challenges(&self, now: Instant, realm: &str, stale: bool) -> [String; 2] {
        let nonce = self.issue(now, realm);
        let stale = if stale { ", stale=true" } else { "" };
        [
            format!("Digest realm=\"{realm}\", nonce=\"{nonce}\", qop=\"auth\", algorithm=MD5{stale}"),
            format!("Digest realm=\"{realm}\", nonce=\"{nonce}\", qop=\"auth\", algorithm=SHA-256{stale}"),
        ]
    }

    /// Checks `creds` for `method` against `password`.
    pub(crate) fn verify(
        &self,
        now: Instant,
        realm: &str,
        creds: &Credentials<'_>,
        method: &str,
        password: &str,
    ) -> Verdict {
        if !creds.is_digest() || creds.realm().as_deref() != Some(realm) {
            return Verdict::Challenge;
        }
        let (Some(nonce), Some(username), Some(uri), Some(response)) =
            (creds.nonce(), creds.username(), creds.uri(), creds.response())
        else {
            return Verdict::Challenge;
        };
        let fresh = match self.fresh(now, realm, &nonce) {
            None => return Verdict::Challenge,
            Some(f) => f,
        };
        let Some(algorithm) = Algorithm::parse(creds.algorithm().as_deref()) else { return Verdict::Challenge };
        let qop_auth = match creds.qop().as_deref() {
            None => false,
            Some(q) if q.eq_ignore_ascii_case("auth") => true,
            Some(_) => return Verdict::Challenge,
        };
        let (nc, cnonce) = if qop_auth {
            let Some(nc) = creds.nc().and_then(|n| u32::from_str_radix(n, 16).ok()) else { return Verdict::Challenge };
            let Some(cnonce) = creds.cnonce() else { return Verdict::Challenge };
            (nc, cnonce.into_owned())
        } else {
            (0, creds.cnonce().map(|c| c.into_owned()).unwrap_or_default())
        };
        let ch = DigestChallenge {
            realm: realm.to_owned(),
            nonce: nonce.into_owned(),
            opaque: None,
            algorithm,
            qop_auth,
            stale: false,
        };
        let want = digest::response(&ch, &username, password, method, &uri, nc, &cnonce);
        if !ct_eq(want.as_bytes(), response.to_ascii_lowercase().as_bytes()) {
            Verdict::Wrong
        } else if !fresh {
            Verdict::Stale
        } else {
            Verdict::Ok
        }
    }
}

/// Equality that takes as long whatever the first difference.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds_for(ch_value: &str, user: &str, password: &str, uri: &str) -> String {
        let ch = crate::typed::auth::Challenge::parse(ch_value).unwrap();
        let c = DigestChallenge {
            realm: ch.realm().unwrap().into_owned(),
            nonce: ch.nonce().unwrap().into_owned(),
            opaque: None,
            algorithm: Algorithm::parse(ch.algorithm().as_deref()).unwrap(),
            qop_auth: true,
            stale: false,
        };
        digest::authorization(&c, user, password, "REGISTER", uri, 1, "c0ffee")
    }

    #[test]
    fn a_right_response_verifies_a_wrong_one_does_not_and_an_old_nonce_is_stale() {
        let t0 = Instant::now();
        let n = Nonces::new(7, t0, Duration::from_secs(300));
        for ch in n.challenges(t0, "callgate.local", false) {
            let ok = creds_for(&ch, "1001", "pw", "sip:callgate.local");
            let c = Credentials::parse(&ok).unwrap();
            assert_eq!(n.verify(t0, "callgate.local", &c, "REGISTER", "pw"), Verdict::Ok, "{ch}");
            assert_eq!(n.verify(t0, "callgate.local", &c, "REGISTER", "other"), Verdict::Wrong);
            assert_eq!(n.verify(t0, "other.realm", &c, "REGISTER", "pw"), Verdict::Challenge);
            let later = t0 + Duration::from_secs(301);
            assert_eq!(n.verify(later, "callgate.local", &c, "REGISTER", "pw"), Verdict::Stale);
            assert_eq!(n.verify(later, "callgate.local", &c, "REGISTER", "other"), Verdict::Wrong);
        }
    }

    #[test]
    fn a_nonce_of_another_registrar_or_a_forged_one_is_challenged() {
        let t0 = Instant::now();
        let ours = Nonces::new(1, t0, Duration::from_secs(300));
        let theirs = Nonces::new(2, t0, Duration::from_secs(300));
        let [ch, _] = theirs.challenges(t0, "r", false);
        let c = creds_for(&ch, "u", "p", "sip:r");
        assert_eq!(ours.verify(t0, "r", &Credentials::parse(&c).unwrap(), "REGISTER", "p"), Verdict::Challenge);
        let forged = c.replace("nonce=\"0.", "nonce=\"1.");
        assert_eq!(ours.verify(t0, "r", &Credentials::parse(&forged).unwrap(), "REGISTER", "p"), Verdict::Challenge);
        let garbage = "Digest username=\"u\", realm=\"r\", nonce=\"zz\", uri=\"sip:r\", response=\"00\"";
        assert_eq!(ours.verify(t0, "r", &Credentials::parse(garbage).unwrap(), "REGISTER", "p"), Verdict::Challenge);
    }
}
