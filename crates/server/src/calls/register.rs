//! Registrations: the session's SIP account, REGISTER, its outcome, un-REGISTER.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use callgate_errmap::{map_failure, map_local_failure, FailureEvent, LocalFailure, SipOperation};
use callgate_hooks::{HookMethod, Origin};
use callgate_proto::ServerFrame;
use callgate_sip::ua::{Account, RegEvent, RegId};
use serde_json::{Map, Value};

use crate::session::{SessionCmd, SessionCtx};
use crate::sip_side::SipSide;

pub use callgate_proto::status::registration::{FAILED, REGISTERED, UNREGISTERED};
const API_METHOD: &str = "RegistrationStatusEvent";
use callgate_proto::messages::REGISTERED as CLIENT_REGISTERED;

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

/// A registration the user agent holds for a session.
pub(super) struct RegEntry {
    pub(super) ctx: Arc<SessionCtx>,
    creds: SipCredentials,
    /// Where REGISTER went: the only source (by IP) of out-of-dialog requests for it, besides
    /// `[sip] trusted_networks`.
    pub(super) next_hop: SocketAddr,
    /// The session is gone; the un-REGISTER is on its way.
    pub(super) closing: bool,
}

/// The hook body: context + `sipLogin`, `sipDomain`, `status`, `info`.
fn event_body(ctx: &SessionCtx, creds: &SipCredentials, status: &str, info: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("nodeId".into(), Value::from(&*ctx.shared.node_id));
    m.insert("appKey".into(), Value::from(&*ctx.app.key));
    m.insert("sessionId".into(), Value::from(&*ctx.id));
    m.insert("sipLogin".into(), Value::from(creds.login.as_str()));
    m.insert("sipDomain".into(), Value::from(creds.domain.as_str()));
    m.insert("status".into(), status.into());
    m.insert("info".into(), info.into());
    m
}

/// `fail {apiMethod:"RegistrationStatusEvent"}` to the client (unless the session is gone), the
/// FAILED hook, and the end of a session that required registration.
fn report_failure(ctx: &Arc<SessionCtx>, creds: &SipCredentials, f: FailureEvent, to_client: bool) {
    tracing::info!(session = &*ctx.id, login = creds.login, info = f.info, "SIP registration failed");
    metrics::counter!("callgate_sip_registrations_total", "status" => FAILED).increment(1);
    let mut ev = event_body(ctx, creds, FAILED, &f.info);
    super::insert_sip_failure(&mut ev, &f);
    if to_client {
        let mut sip = Map::new();
        super::insert_sip_failure(&mut sip, &f);
        ctx.out.send(&ServerFrame::fail_with(API_METHOD, &f.info, None, sip));
    }
    ctx.raise_event(HookMethod::RegistrationStatusEvent, Origin::Client, ev, None);
    if to_client && creds.register_required == Some(true) {
        // spec/client-protocol.md §2.4: a mandatory registration failed → close the session.
        let _ = ctx.handle.cmd.try_send(SessionCmd::Terminate { info: f.info });
    }
}

/// The user agent did not send the REGISTER.
fn not_sent(why: impl std::fmt::Display) -> FailureEvent {
    map_local_failure(SipOperation::Register, &LocalFailure::NotSent(why.to_string()))
}

/// The session is still in the registry (a REST call's detached session never is).
pub(super) fn session_alive(ctx: &SessionCtx) -> bool {
    ctx.shared.sessions.get(&ctx.id).is_some_and(|h| Arc::ptr_eq(&h, &ctx.handle))
}

/// The clients' registrations, owned by the SIP owner task (`super::pump`): recorded there
/// right after the user agent took the REGISTER and before the owner handles its response, so
/// a session ending while its REGISTER is being prepared can never leave a registration behind
/// (both go through the owner in order).
#[derive(Default)]
pub(super) struct Accounts {
    pub(super) regs: HashMap<RegId, RegEntry>,
    pub(super) by_session: HashMap<Arc<str>, RegId>,
    /// `regs.len()`, for [`super::Calls::registrations`].
    pub(super) count: Arc<AtomicUsize>,
}

impl Accounts {
    fn counted(&self) {
        self.count.store(self.regs.len(), Ordering::Relaxed);
    }

    /// `SipCmd::Register`: REGISTER, recorded, unless the session is already gone.
    pub(super) async fn register(
        &mut self,
        side: &SipSide,
        ctx: Arc<SessionCtx>,
        creds: SipCredentials,
        next_hop: SocketAddr,
        account: callgate_sip::ua::Account,
    ) {
        if !session_alive(&ctx) {
            return;
        }
        tracing::info!(session = &*ctx.id, login = creds.login, %next_hop, "SIP REGISTER");
        match side.register(account).await {
            Ok(id) => {
                self.by_session.insert(ctx.id.clone(), id);
                self.regs.insert(id, RegEntry { ctx, creds, next_hop, closing: false });
                self.counted();
            }
            Err(e) => report_failure(&ctx, &creds, not_sent(e), true),
        }
    }

    /// `SipCmd::Unregister`: the session is gone; its registration is removed.
    pub(super) async fn unregister(&mut self, side: &SipSide, session: &str) {
        let Some(reg) = self.by_session.remove(session) else { return };
        if let Some(e) = self.regs.get_mut(&reg) {
            e.closing = true;
        }
        if let Err(e) = side.unregister(reg).await {
            tracing::debug!(error = %e, "un-REGISTER");
            self.regs.remove(&reg);
            self.counted();
        }
    }

    /// A registration event from the user agent.
    pub(super) fn on_event(&mut self, reg: RegId, event: RegEvent) {
        match event {
            RegEvent::Registered { expires, refresh } => {
                let Some(e) = self.regs.get(&reg) else { return };
                if refresh || e.closing {
                    tracing::debug!(session = &*e.ctx.id, expires, "SIP registration refreshed");
                    return;
                }
                tracing::info!(session = &*e.ctx.id, login = e.creds.login, expires, "SIP registered");
                metrics::counter!("callgate_sip_registrations_total", "status" => REGISTERED).increment(1);
                let ev = event_body(&e.ctx, &e.creds, REGISTERED, "");
                e.ctx.raise_event(HookMethod::RegistrationStatusEvent, Origin::Client, ev, Some(CLIENT_REGISTERED));
            }
            RegEvent::Unregistered => {
                let Some(e) = self.regs.remove(&reg) else { return };
                self.counted();
                tracing::info!(session = &*e.ctx.id, login = e.creds.login, "SIP unregistered");
                let ev = event_body(&e.ctx, &e.creds, UNREGISTERED, "");
                e.ctx.raise_event(HookMethod::RegistrationStatusEvent, Origin::Client, ev, None);
            }
            RegEvent::Failed(f) => {
                let Some(e) = self.regs.remove(&reg) else { return };
                self.counted();
                let to_client = !e.closing && session_alive(&e.ctx);
                if to_client {
                    self.by_session.remove(&e.ctx.id);
                }
                report_failure(&e.ctx, &e.creds, map_failure(SipOperation::Register, &f), to_client);
            }
        }
    }
}

/// Starts the session's registration in the background, when it asks for one.
pub(super) fn start(ctx: &Arc<SessionCtx>) {
    let Some(creds) = SipCredentials::from_connection(&ctx.handle.data_ref()) else { return };
    if !creds.wants_registration() {
        return;
    }
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let calls = &ctx.shared.calls;
        let next_hop = match super::next_hop(&ctx, &creds).await {
            Ok(a) => a,
            Err(info) => return report_failure(&ctx, &creds, callgate_errmap::error_event(info), true),
        };
        if let Err(info) = calls.endpoint().await {
            return report_failure(&ctx, &creds, callgate_errmap::error_event(info), true);
        }
        let account = creds.account(next_hop, calls.cfg.register_expires);
        let cmd = super::SipCmd::Register { ctx: ctx.clone(), creds: creds.clone(), next_hop, account };
        if let Err(gone) = calls.sip_cmd(cmd) {
            report_failure(&ctx, &creds, not_sent(gone), true);
        }
    });
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
