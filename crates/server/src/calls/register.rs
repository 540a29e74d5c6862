//! Registrations: the session's SIP account, REGISTER, its outcome, un-REGISTER.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use callgate_errmap::{map_failure, map_local_failure, FailureEvent, LocalFailure, SipOperation};
use callgate_hooks::{HookMethod, Origin};
use callgate_proto::ServerFrame;
use callgate_sip::ua::{RegEvent, RegId};
use serde_json::{Map, Value};

use super::Calls;
use crate::party::{Party, SipCredentials};
use crate::registry::Registry;
use crate::sip_side::SipSide;

pub use callgate_proto::status::registration::{FAILED, REGISTERED, UNREGISTERED};
const API_METHOD: &str = "RegistrationStatusEvent";
use callgate_proto::messages::REGISTERED as CLIENT_REGISTERED;

/// A registration the user agent holds for a session.
pub(super) struct RegEntry {
    pub(super) ctx: Arc<Party>,
    creds: SipCredentials,
    /// Where REGISTER went: the only source (by IP) of out-of-dialog requests for it, besides
    /// `[sip] trusted_networks`.
    pub(super) next_hop: SocketAddr,
    /// The session is gone; the un-REGISTER is on its way.
    pub(super) closing: bool,
    /// Its credentials are lent to the embedded registrar (`session_users`) until it goes.
    held: bool,
    /// The registrar accepted it (and has not dropped it since).
    registered: bool,
}

/// The hook body: context + `sipLogin`, `sipDomain`, `status`, `info`.
fn event_body(ctx: &Party, creds: &SipCredentials, status: &str, info: &str) -> Map<String, Value> {
    let mut m = ctx.with_context(Map::new());
    m.insert("sipLogin".into(), Value::from(creds.login.as_str()));
    m.insert("sipDomain".into(), Value::from(creds.domain.as_str()));
    m.insert("status".into(), status.into());
    m.insert("info".into(), info.into());
    m
}

/// `fail {apiMethod:"RegistrationStatusEvent"}` to the client (unless the session is gone), the
/// FAILED hook, and the end of a session that required registration.
fn report_failure(ctx: &Arc<Party>, creds: &SipCredentials, f: FailureEvent, to_client: bool) {
    tracing::info!(session = &*ctx.id, login = creds.login, info = f.info, "SIP registration failed");
    metrics::counter!("callgate_sip_registrations_total", "status" => FAILED).increment(1);
    let mut ev = event_body(ctx, creds, FAILED, &f.info);
    crate::party::insert_sip_failure(&mut ev, &f);
    if to_client {
        let mut sip = Map::new();
        crate::party::insert_sip_failure(&mut sip, &f);
        ctx.send(&ServerFrame::fail_with(API_METHOD, &f.info, None, sip));
    }
    ctx.raise_event(HookMethod::RegistrationStatusEvent, Origin::Client, ev, None);
    if to_client && creds.register_required == Some(true) {
        // spec/client-protocol.md §2.4: a mandatory registration failed → close the session.
        ctx.terminate(f.info);
    }
}

/// The user agent did not send the REGISTER.
fn not_sent(why: impl std::fmt::Display) -> FailureEvent {
    map_local_failure(SipOperation::Register, &LocalFailure::NotSent(why.to_string()))
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
    /// The embedded registrar, which the sessions of its domain lend their credentials to.
    pub(super) registrar: Option<Arc<super::registrar::Embedded>>,
}

impl Accounts {
    fn counted(&self) {
        self.count.store(self.regs.len(), Ordering::Relaxed);
    }

    /// A registration is gone: what it lent the embedded registrar goes back.
    fn removed(&self, e: &RegEntry) {
        if let (true, Some(r)) = (e.held, &self.registrar) {
            r.release(&e.creds.login);
        }
    }

    /// `SipCmd::Register`: REGISTER, recorded, unless the session is already gone.
    pub(super) async fn register(
        &mut self,
        side: &SipSide,
        sessions: &Registry<Party>,
        ctx: Arc<Party>,
        creds: SipCredentials,
        next_hop: SocketAddr,
        account: callgate_sip::ua::Account,
    ) {
        if !sessions.holds(&ctx.id, &ctx) {
            return;
        }
        tracing::info!(session = &*ctx.id, login = creds.login, %next_hop, "SIP REGISTER");
        let held = match &self.registrar {
            Some(r) => r.hold(&creds).await,
            None => false,
        };
        match side.register(account).await {
            Ok(id) => {
                self.by_session.insert(ctx.id.clone(), id);
                self.regs.insert(id, RegEntry { ctx, creds, next_hop, closing: false, held, registered: false });
                self.counted();
            }
            Err(e) => {
                if let (true, Some(r)) = (held, &self.registrar) {
                    r.release(&creds.login);
                }
                report_failure(&ctx, &creds, not_sent(e), true)
            }
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
            if let Some(e) = self.regs.remove(&reg) {
                self.removed(&e);
            }
            self.counted();
        }
    }

    /// `SipCmd::Resumed`: a resumed session's new connection gets `registered` (no hook: the
    /// backend has had its REGISTERED) when its registration holds.
    pub(super) fn resumed(&self, ctx: &Arc<Party>) {
        let Some(e) = self.by_session.get(&ctx.id).and_then(|r| self.regs.get(r)) else { return };
        if e.registered && !e.closing {
            let exclude = &ctx.rcc.method(HookMethod::RegistrationStatusEvent).client_exclude;
            ctx.send_object(CLIENT_REGISTERED, &event_body(ctx, &e.creds, REGISTERED, ""), exclude);
        }
    }

    /// A registration event from the user agent.
    pub(super) fn on_event(&mut self, sessions: &Registry<Party>, reg: RegId, event: RegEvent) {
        match event {
            RegEvent::Registered { expires, refresh } => {
                let Some(e) = self.regs.get_mut(&reg) else { return };
                e.registered = true;
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
                self.removed(&e);
                self.counted();
                tracing::info!(session = &*e.ctx.id, login = e.creds.login, "SIP unregistered");
                let ev = event_body(&e.ctx, &e.creds, UNREGISTERED, "");
                e.ctx.raise_event(HookMethod::RegistrationStatusEvent, Origin::Client, ev, None);
            }
            RegEvent::Failed(f) => {
                let Some(e) = self.regs.remove(&reg) else { return };
                self.removed(&e);
                self.counted();
                let to_client = !e.closing && sessions.holds(&e.ctx.id, &e.ctx);
                if to_client {
                    self.by_session.remove(&e.ctx.id);
                }
                report_failure(&e.ctx, &e.creds, map_failure(SipOperation::Register, &f), to_client);
            }
        }
    }
}

/// Starts the session's registration in the background, when it asks for one.
pub(super) fn start(calls: &Arc<Calls>, ctx: &Arc<Party>) {
    let Some(creds) = SipCredentials::from_connection(&ctx.data_ref()) else { return };
    if !creds.wants_registration() {
        return;
    }
    let (calls, ctx) = (calls.clone(), ctx.clone());
    tokio::spawn(async move {
        let next_hop = match super::next_hop(&calls, &ctx, &creds).await {
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
