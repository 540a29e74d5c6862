//! Standard Webhooks signing (<https://www.standardwebhooks.com/>), beside the WCS
//! `Authorization: WCS <hmac-md5>` header (which stays as the seed has it).
//!
//! Every hook request gets `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64(hmac-sha256(key, id "." timestamp "." body))>`; with several
//! keys configured (rotation) the signatures are listed, separated by spaces. Keys are given as
//! `whsec_<base64>` (the bytes after the prefix, base64-decoded, are the HMAC key).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;

pub const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
pub const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
pub const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// A bad `whsec_` secret in the config.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("webhook secret must start with \"whsec_\"")]
    Prefix,
    #[error("webhook secret is not valid base64 after \"whsec_\": {0}")]
    Base64(String),
    #[error("webhook secret is empty after \"whsec_\"")]
    Empty,
}

/// The signing keys, in the order they are listed (the first is the newest by convention;
/// all sign, so a receiver holding any one of them accepts the request).
#[derive(Clone, Default)]
pub struct WebhookKeys(Vec<Vec<u8>>);

impl std::fmt::Debug for WebhookKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookKeys({} key(s), redacted)", self.0.len())
    }
}

impl WebhookKeys {
    /// Parses `whsec_<base64>` secrets.
    pub fn parse<S: AsRef<str>>(secrets: &[S]) -> Result<WebhookKeys, SecretError> {
        let mut keys = Vec::with_capacity(secrets.len());
        for s in secrets {
            let b64 = s.as_ref().trim().strip_prefix("whsec_").ok_or(SecretError::Prefix)?;
            let key = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| SecretError::Base64(e.to_string()))?;
            if key.is_empty() {
                return Err(SecretError::Empty);
            }
            keys.push(key);
        }
        Ok(WebhookKeys(keys))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `webhook-signature` value for this id, timestamp and body.
    pub fn signature(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let ts = timestamp.to_string();
        let mut out = String::with_capacity(self.0.len() * 48);
        for key in &self.0 {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(ts.as_bytes());
            mac.update(b".");
            mac.update(body);
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str("v1,");
            base64::engine::general_purpose::STANDARD.encode_string(mac.finalize().into_bytes(), &mut out);
        }
        out
    }

    /// Adds the three headers to `headers` (nothing when no key is configured).
    pub fn sign_into(&self, headers: &mut HeaderMap, id: &str, timestamp: u64, body: &[u8]) {
        if self.is_empty() {
            return;
        }
        let sig = self.signature(id, timestamp, body);
        // id is ours (a UUID or an event id we built), timestamp digits, signature base64:
        // all valid header values.
        if let (Ok(i), Ok(s)) = (HeaderValue::from_str(id), HeaderValue::from_str(&sig)) {
            headers.insert(WEBHOOK_ID, i);
            headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
            headers.insert(WEBHOOK_SIGNATURE, s);
        }
    }
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_reference_vector() {
        // The test vector of the Standard Webhooks reference libraries
        // (standard-webhooks/standard-webhooks, libraries/python/tests).
        let keys = WebhookKeys::parse(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]).unwrap();
        let sig = keys.signature("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rotation_lists_every_key() {
        let keys = WebhookKeys::parse(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_AAEC"]).unwrap();
        let sig = keys.signature("id", 1, b"{}");
        let parts: Vec<_> = sig.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert_eq!(WebhookKeys::parse(&["MfKQ"]).unwrap_err(), SecretError::Prefix);
        assert!(matches!(WebhookKeys::parse(&["whsec_!!"]).unwrap_err(), SecretError::Base64(_)));
        assert_eq!(WebhookKeys::parse(&["whsec_"]).unwrap_err(), SecretError::Empty);
    }
}
