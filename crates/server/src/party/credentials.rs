//! A party's SIP account: the SIP fields of its connection object (spec/client-protocol.md
//! §2.2). Here, below the features, because calls (REGISTER, INVITE, MESSAGE) and XCAP (digest
//! answers) both read it.

use std::net::SocketAddr;

use callgate_errmap::{map_local_failure, LocalFailure, SipOperation};
use callgate_sip::ua::Account;
use serde_json::{Map, Value};

/// The SIP fields of a connection object (spec/client-protocol.md §2.2), from the client or
/// injected by the backend's `connect` answer. Its `Debug` does not show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SipCredentials {
    pub login: String,
    pub auth_name: Option<String>,
    pub password: String,
    pub domain: String,
    /// Where requests go first: outbound proxy, else proxy, else the domain.
    pub next_hop_host: String,
    pub port: u16,
    /// `sipRegisterRequired`: `Some(true|false)`, `None` when absent.
    pub register_required: Option<bool>,
}

impl std::fmt::Debug for SipCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipCredentials")
            .field("login", &self.login)
            .field("auth_name", &self.auth_name)
            .field("password", &crate::config::redacted(&self.password))
            .field("domain", &self.domain)
            .field("next_hop_host", &self.next_hop_host)
            .field("port", &self.port)
            .field("register_required", &self.register_required)
            .finish()
    }
}

fn text(obj: &Map<String, Value>, k: &str) -> Option<String> {
    match obj.get(k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

impl SipCredentials {
    /// `None` without a `sipLogin`.
    pub fn from_connection(obj: &Map<String, Value>) -> Option<SipCredentials> {
        let login = text(obj, "sipLogin")?;
        let domain = text(obj, "sipDomain").unwrap_or_default();
        let next_hop_host = text(obj, "sipOutboundProxy").or_else(|| text(obj, "sipProxy")).unwrap_or(domain.clone());
        let port = text(obj, "sipPort").and_then(|p| p.parse().ok()).unwrap_or(5060);
        let register_required = match obj.get("sipRegisterRequired") {
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::String(s)) => Some(s.eq_ignore_ascii_case("true")),
            _ => None,
        };
        Some(SipCredentials {
            login,
            auth_name: text(obj, "sipAuthenticationName"),
            password: text(obj, "sipPassword").unwrap_or_default(),
            domain,
            next_hop_host,
            port,
            register_required,
        })
    }

    /// REGISTER when `sipRegisterRequired` is true (a missing `sipDomain` is then a failure),
    /// or absent with a `sipLogin` and a `sipDomain` (a bare `sipLogin` is only the caller's
    /// name for calls).
    pub fn wants_registration(&self) -> bool {
        match self.register_required {
            Some(required) => required,
            None => !self.domain.is_empty(),
        }
    }

    /// The next hop's host as given, without port or brackets (what a host-name entry of the
    /// destination allow-list is compared with).
    pub fn next_hop_name(&self) -> &str {
        let h = self.next_hop_host.as_str();
        if let Some(rest) = h.strip_prefix('[') {
            return rest.split(']').next().unwrap_or(rest);
        }
        match h.split_once(':') {
            Some((host, port)) if !port.contains(':') => host,
            _ => h,
        }
    }

    /// `host`, `host:port`, `[v6]:port` or `v6`: the address to resolve.
    pub fn next_hop_target(&self) -> String {
        let h = &self.next_hop_host;
        let has_port = if h.starts_with('[') { h.contains("]:") } else { h.matches(':').count() == 1 };
        if has_port {
            h.clone()
        } else if h.contains(':') && !h.starts_with('[') {
            format!("[{h}]:{}", self.port)
        } else {
            format!("{h}:{}", self.port)
        }
    }

    /// Resolves the next hop (IPv4 first).
    pub async fn resolve(&self) -> Result<SocketAddr, String> {
        if self.domain.is_empty() {
            return Err(callgate_proto::info::REGISTRATION_NEEDS_DOMAIN.to_string());
        }
        let target = self.next_hop_target();
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(target.as_str())
            .await
            .map_err(|_| map_local_failure(SipOperation::Register, &LocalFailure::Unresolvable(target.clone())).info)?
            .collect();
        addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| map_local_failure(SipOperation::Register, &LocalFailure::Unresolvable(target.clone())).info)
    }

    pub fn account(&self, next_hop: SocketAddr, expires: u32) -> Account {
        let mut a = Account::new(&self.login, &self.password, &self.domain, next_hop);
        a.auth_user = self.auth_name.clone();
        a.expires = expires;
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn creds(v: Value) -> Option<SipCredentials> {
        SipCredentials::from_connection(v.as_object().unwrap())
    }

    #[test]
    fn credentials_from_the_connection_object() {
        assert_eq!(creds(json!({"appKey":"a"})), None);
        assert!(!creds(json!({"sipLogin":"3000"})).unwrap().wants_registration(), "no domain, not required");
        assert!(creds(json!({"sipLogin":"3000","sipRegisterRequired":true})).unwrap().wants_registration());
        let c = creds(json!({"sipLogin":"3000","sipPassword":"p","sipDomain":"pbx.test","sipPort":"5080"})).unwrap();
        assert!(c.wants_registration());
        assert_eq!((c.next_hop_target().as_str(), c.port), ("pbx.test:5080", 5080));
        let c = creds(json!({"sipLogin":"3000","sipDomain":"pbx.test","sipOutboundProxy":"10.0.0.1","sipPort":5070,"sipRegisterRequired":false})).unwrap();
        assert!(!c.wants_registration());
        assert_eq!(c.next_hop_target(), "10.0.0.1:5070");
        let c = creds(json!({"sipLogin":"3000","sipDomain":"127.0.0.1:5099","sipRegisterRequired":true})).unwrap();
        assert_eq!((c.next_hop_target().as_str(), c.register_required), ("127.0.0.1:5099", Some(true)));
        let c = creds(json!({"sipLogin":"3000","sipDomain":"::1","sipAuthenticationName":"auth"})).unwrap();
        assert_eq!(c.next_hop_target(), "[::1]:5060");
        assert_eq!(c.next_hop_name(), "::1");
        assert_eq!(c.account("127.0.0.1:1".parse().unwrap(), 60).auth_user(), "auth");
        let c = creds(json!({"sipLogin":"3000","sipDomain":"d","sipOutboundProxy":"PBX.test:5070"})).unwrap();
        assert_eq!(c.next_hop_name(), "PBX.test");
        let c = creds(json!({"sipLogin":"3000","sipDomain":"d","sipOutboundProxy":"[2001:db8::1]:5070"})).unwrap();
        assert_eq!(c.next_hop_name(), "2001:db8::1");
    }

    #[test]
    fn debug_hides_the_password() {
        let c = creds(json!({"sipLogin":"3000","sipPassword":"pw-777","sipDomain":"pbx.test"})).unwrap();
        let text = format!("{c:?} {:?}", c.account("127.0.0.1:1".parse().unwrap(), 60));
        assert!(!text.contains("pw-777") && text.contains("<redacted>") && text.contains("3000"), "{text}");
    }
}
