//! HTTP Digest authentication for SIP clients (RFC 3261 §22.4, RFC 2617, RFC 7616, RFC 8760):
//! MD5 and SHA-256 (and their `-sess` variants), with `qop=auth` or without qop.
//!
//! ```
//! use callgate_sip::digest::{Algorithm, DigestChallenge, authorization};
//! let ch = DigestChallenge { realm: "example.com".into(), nonce: "abc".into(), opaque: None,
//!                            algorithm: Algorithm::Md5, qop_auth: true, stale: false };
//! let value = authorization(&ch, "3000", "secret", "REGISTER", "sip:example.com", 1, "0a4f113b");
//! assert!(value.starts_with("Digest username=\"3000\", realm=\"example.com\""));
//! ```

use md5::{Digest as _, Md5};
use sha2::Sha256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    /// Parses the `algorithm` parameter (absent = MD5, RFC 2617 §3.2.1). `None` for algorithms
    /// we cannot compute (the caller then reports the challenge as unsupported).
    pub fn parse(value: Option<&str>) -> Option<Algorithm> {
        match value.map(|v| v.trim().to_ascii_uppercase()) {
            None => Some(Algorithm::Md5),
            Some(v) => match v.as_str() {
                "MD5" => Some(Algorithm::Md5),
                "MD5-SESS" => Some(Algorithm::Md5Sess),
                "SHA-256" => Some(Algorithm::Sha256),
                "SHA-256-SESS" => Some(Algorithm::Sha256Sess),
                _ => None,
            },
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex(&Md5::digest(data.as_bytes())),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex(&Sha256::digest(data.as_bytes())),
        }
    }

    fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }
}

/// The parts of a `WWW-Authenticate` / `Proxy-Authenticate` Digest challenge that matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// The server offered `qop=auth` (we then use it; `auth-int` alone is not supported).
    pub qop_auth: bool,
    pub stale: bool,
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// The `response` value of RFC 2617 §3.2.2.1 / RFC 7616 §3.4.1.
pub fn response(
    ch: &DigestChallenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> String {
    let alg = ch.algorithm;
    let mut ha1 = alg.hash(&format!("{username}:{}:{password}", ch.realm));
    if alg.is_sess() {
        ha1 = alg.hash(&format!("{ha1}:{}:{cnonce}", ch.nonce));
    }
    let ha2 = alg.hash(&format!("{method}:{uri}"));
    if ch.qop_auth {
        alg.hash(&format!("{ha1}:{}:{nc:08x}:{cnonce}:auth:{ha2}", ch.nonce))
    } else {
        alg.hash(&format!("{ha1}:{}:{ha2}", ch.nonce))
    }
}

/// The value of the `Authorization` / `Proxy-Authorization` header answering `ch`.
///
/// `nc` is the nonce count (1 for the first use of a nonce), `cnonce` a fresh random string
/// (only sent with qop). Quoted values never contain `"` or `\` here: they come from the
/// challenge, whose parser unquotes them, and from the configuration.
pub fn authorization(
    ch: &DigestChallenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> String {
    let resp = response(ch, username, password, method, uri, nc, cnonce);
    let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut v = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{resp}\", algorithm={}",
        q(username),
        q(&ch.realm),
        q(&ch.nonce),
        q(uri),
        ch.algorithm.name()
    );
    if ch.qop_auth {
        v.push_str(&format!(", cnonce=\"{}\", qop=auth, nc={nc:08x}", q(cnonce)));
    }
    if let Some(o) = &ch.opaque {
        v.push_str(&format!(", opaque=\"{}\"", q(o)));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_md5_qop_auth_vector() {
        // RFC 2617 §3.5.
        let ch = DigestChallenge {
            realm: "testrealm@host.com".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            opaque: Some("5ccc069c403ebaf9f0171e9517f40e41".into()),
            algorithm: Algorithm::Md5,
            qop_auth: true,
            stale: false,
        };
        assert_eq!(
            response(&ch, "Mufasa", "Circle Of Life", "GET", "/dir/index.html", 1, "0a4f113b"),
            "6629fae49393a05397450978507c4ef1"
        );
    }

    #[test]
    fn rfc7616_sha256_vector() {
        // RFC 7616 §3.9.1.
        let ch = DigestChallenge {
            realm: "http-auth@example.org".into(),
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v".into(),
            opaque: None,
            algorithm: Algorithm::Sha256,
            qop_auth: true,
            stale: false,
        };
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        assert_eq!(
            response(&ch, "Mufasa", "Circle of Life", "GET", "/dir/index.html", 1, cnonce),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn no_qop_and_header_shape() {
        let ch = DigestChallenge {
            realm: "r".into(),
            nonce: "n".into(),
            opaque: Some("o".into()),
            algorithm: Algorithm::Md5,
            qop_auth: false,
            stale: false,
        };
        // H(H(u:r:p):n:H(REGISTER:sip:r))
        let ha1 = hex(&Md5::digest(b"u:r:p"));
        let ha2 = hex(&Md5::digest(b"REGISTER:sip:r"));
        let want = hex(&Md5::digest(format!("{ha1}:n:{ha2}").as_bytes()));
        assert_eq!(response(&ch, "u", "p", "REGISTER", "sip:r", 1, "c"), want);
        let h = authorization(&ch, "u", "p", "REGISTER", "sip:r", 1, "c");
        assert_eq!(h, format!("Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"{want}\", algorithm=MD5, opaque=\"o\""));
        let ch = DigestChallenge { qop_auth: true, ..ch };
        assert!(
            authorization(&ch, "u", "p", "REGISTER", "sip:r", 2, "c").contains(", cnonce=\"c\", qop=auth, nc=00000002")
        );
    }

    #[test]
    fn algorithms_parse() {
        assert_eq!(Algorithm::parse(None), Some(Algorithm::Md5));
        assert_eq!(Algorithm::parse(Some("sha-256")), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::parse(Some("MD5-sess")), Some(Algorithm::Md5Sess));
        assert_eq!(Algorithm::parse(Some("SHA-512-256")), None);
    }
}
