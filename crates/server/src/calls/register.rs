//! Registrations: the session's SIP account, REGISTER, its outcome, un-REGISTER.

use std::net::SocketAddr;
use std::sync::Arc;

use callgate_errmap::{map_failure, map_local_failure, FailureEvent, LocalFailure, SipOperation};
use callgate_hooks::{HookMethod, Origin};
use callgate_proto::ServerFrame;
use callgate_sip::ua::{RegEvent, RegId};
use serde_json::{Map, Value};

use super::Calls;
use crate::party::{Party, SipCredentials};

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
}

/// The hook body: context + `sipLogin`, `sipDomain`, `status`, `info`.
fn event_body(ctx: &Party, creds: &SipCredentials, status: &str, info: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("nodeId".into(), Value::from(&*ctx.node.id));
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

/// The session is still in the registry (a REST call's party never is).
pub(super) fn session_alive(calls: &Calls, ctx: &Arc<Party>) -> bool {
    calls.sessions.holds(&ctx.id, ctx)
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
        let handle = match calls.endpoint().await {
            Ok(h) => h,
            Err(info) => return report_failure(&ctx, &creds, callgate_errmap::error_event(info), true),
        };
        let account = creds.account(next_hop, calls.cfg.register_expires);
        let (regs, by_session, sessions) = (calls.regs.clone(), calls.by_session.clone(), calls.sessions.clone());
        let (c2, creds2) = (ctx.clone(), creds.clone());
        tracing::info!(session = &*ctx.id, login = creds.login, %next_hop, "SIP REGISTER");
        // Recorded inside the driver: see the module notes.
        let r = handle
            .with(move |ua, now| {
                if !sessions.holds(&c2.id, &c2) {
                    return Ok::<_, callgate_sip::ua::UaError>(None);
                }
                let id = ua.register(now, account)?;
                by_session.insert(c2.id.clone(), id);
                regs.insert(id, RegEntry { ctx: c2, creds: creds2, next_hop, closing: false });
                Ok(Some(id))
            })
            .await;
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => report_failure(&ctx, &creds, not_sent(e), true),
            Err(gone) => report_failure(&ctx, &creds, not_sent(gone), true),
        }
    });
}

/// Un-REGISTERs the session's account.
pub(super) fn stop(calls: &Calls, ctx: &Arc<Party>) {
    let Some(Ok(handle)) = calls.endpoint.get().cloned() else { return };
    let (regs, by_session, id) = (calls.regs.clone(), calls.by_session.clone(), ctx.id.clone());
    tokio::spawn(async move {
        let _ = handle
            .with(move |ua, now| {
                let Some((_, reg)) = by_session.remove(&id) else { return };
                if let Some(mut e) = regs.get_mut(&reg) {
                    e.closing = true;
                }
                if let Err(e) = ua.unregister(now, reg) {
                    tracing::debug!(error = %e, "un-REGISTER");
                    regs.remove(&reg);
                }
            })
            .await;
    });
}

/// A registration event from the user agent.
pub(super) fn on_event(calls: &Calls, reg: RegId, event: RegEvent) {
    let regs = &calls.regs;
    match event {
        RegEvent::Registered { expires, refresh } => {
            let Some(e) = regs.get(&reg) else { return };
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
            let Some((_, e)) = regs.remove(&reg) else { return };
            tracing::info!(session = &*e.ctx.id, login = e.creds.login, "SIP unregistered");
            let ev = event_body(&e.ctx, &e.creds, UNREGISTERED, "");
            e.ctx.raise_event(HookMethod::RegistrationStatusEvent, Origin::Client, ev, None);
        }
        RegEvent::Failed(f) => {
            let Some((_, e)) = regs.remove(&reg) else { return };
            let to_client = !e.closing && session_alive(calls, &e.ctx);
            if to_client {
                calls.by_session.remove(&e.ctx.id);
            }
            report_failure(&e.ctx, &e.creds, map_failure(SipOperation::Register, &f), to_client);
        }
    }
}
