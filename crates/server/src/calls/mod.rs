//! SIP for clients: the node's SIP user agent (one `callgate_sip` endpoint, opened at the first
//! use) and, so far, the clients' registrations.
//!
//! | step | what happens |
//! |---|---|
//! | session established with `sipLogin` and `sipRegisterRequired` true or absent | REGISTER with the session's credentials (client fields, or injected by the `connect` answer) |
//! | 2xx | `registered {sipLogin, status:"REGISTERED"}` to the client + `RegistrationStatusEvent REGISTERED` hook |
//! | failure | `fail {apiMethod:"RegistrationStatusEvent", status:"FAILED", info}` to the client + `RegistrationStatusEvent FAILED` hook with errmap `info`, `sipStatus`, `sipMessageRaw`; with `sipRegisterRequired: true` the session is closed |
//! | session end | un-REGISTER; `RegistrationStatusEvent UNREGISTERED` hook when the registrar confirms |
//!
//! Outgoing calls (`call` -> `call` hook -> media bridge -> INVITE -> TRYING, RING/RING_MEDIA/
//! SESSION_PROGRESS, ESTABLISHED, FINISH/FAILED, each a `CallStatusEvent`; `hangup` -> BYE or
//! CANCEL; `hold`/`unhold` re-INVITEs, `sendDtmf` (RFC 2833 through the bridge, SIP INFO),
//! `transfer` (REFER, `notifyTransferEvent` + `TransferStatusEvent`) are in `call.rs`.
//! Incoming INVITEs go through `OnCallEvent` (refusal: 403) and then get 480: answering them
//! (and `answer`, an honest `finish FAILED`) needs a server-made WebRTC offer.
//!
//! Ownership: the driver task owns the user agent; registrations are recorded in a map *inside*
//! the driver closures that create or end them, so a session ending while its REGISTER is being
//! prepared can never leave a registration behind (both go through the driver in order).

mod call;
mod register;
mod rest;

use std::net::SocketAddr;
use std::sync::Arc;

use callgate_sip::transport::UaHandle;
use callgate_sip::ua::{CallId as SipCallId, RegId, UaEvent};
use dashmap::DashMap;
use tokio::sync::OnceCell;

use crate::config::SipSection;
use crate::session::SessionCtx;

pub use register::SipCredentials;
pub use rest::RestCallError;

/// The node's SIP side.
pub struct Calls {
    cfg: SipSection,
    endpoint: OnceCell<Result<UaHandle, String>>,
    regs: Arc<DashMap<RegId, register::RegEntry>>,
    by_session: Arc<DashMap<Arc<str>, RegId>>,
    table: Arc<CallTable>,
}

/// Live calls by the client's `callId`, and the client's id of each SIP call.
#[derive(Default)]
pub struct CallTable {
    calls: Arc<DashMap<Arc<str>, call::CallEntry>>,
    by_sip: Arc<DashMap<SipCallId, Arc<str>>>,
}

impl Calls {
    pub fn new(cfg: SipSection) -> Calls {
        Calls {
            cfg,
            endpoint: OnceCell::new(),
            regs: Arc::new(DashMap::new()),
            by_session: Arc::new(DashMap::new()),
            table: Arc::new(CallTable::default()),
        }
    }

    /// The SIP endpoint, started on first use; `Err` with the reason when it cannot bind.
    pub async fn endpoint(&self) -> Result<UaHandle, String> {
        self.endpoint
            .get_or_init(|| async {
                let cfg = self.cfg.endpoint_config().map_err(|e| e.to_string())?;
                let bind = cfg.udp_bind;
                match callgate_sip::transport::Endpoint::start(cfg).await {
                    Ok(ep) => {
                        tracing::info!(sip_addr = %ep.handle.udp_addr(), "SIP endpoint started");
                        tokio::spawn(pump(ep.events, ep.handle.clone(), self.regs.clone(), self.table.clone()));
                        Ok(ep.handle)
                    }
                    Err(e) => {
                        tracing::error!(%bind, error = %e, "cannot start the SIP endpoint");
                        Err(format!("SIP endpoint unavailable: {e}"))
                    }
                }
            })
            .await
            .clone()
    }

    /// The bound SIP address, once the endpoint runs.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.get().and_then(|r| r.as_ref().ok()).map(UaHandle::udp_addr)
    }

    /// REST `/call/find`, `/call/find_all`: the call objects matching every field of `filter`.
    pub fn find(
        &self,
        filter: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<serde_json::Map<String, serde_json::Value>> {
        call::find(&self.table, filter)
    }

    /// REST `/call/terminate`: hangs up `call_id`; false when there is no such call.
    pub async fn terminate(&self, call_id: &str) -> bool {
        call::terminate(self, call_id).await
    }

    /// REST `/call/hold`, `/unhold`, `/transfer`, `/send_dtmf` (`method` = the hook's); see
    /// `rest.rs`.
    pub async fn rest_action(
        &self,
        method: callgate_hooks::HookMethod,
        body: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), RestCallError> {
        rest::action(self, method, body).await
    }

    /// Live calls.
    pub fn calls(&self) -> usize {
        self.table.calls.len()
    }

    /// Live registrations (sessions' and those being removed).
    pub fn registrations(&self) -> usize {
        self.regs.len()
    }
}

/// Delivers the user agent's events.
async fn pump(
    mut events: tokio::sync::mpsc::UnboundedReceiver<UaEvent>,
    handle: UaHandle,
    regs: Arc<DashMap<RegId, register::RegEntry>>,
    table: Arc<CallTable>,
) {
    while let Some(ev) = events.recv().await {
        match ev {
            UaEvent::Registration { reg, event } => register::on_event(&regs, reg, event),
            UaEvent::Call { call, event } => call::on_event(&table, call, event),
            UaEvent::IncomingCall(c) => {
                let ctx = c.reg.and_then(|r| regs.get(&r).filter(|e| !e.closing).map(|e| e.ctx.clone()));
                tokio::spawn(incoming(ctx, c, handle.clone()));
            }
            other => tracing::debug!(event = ?other, "SIP event not handled"),
        }
    }
}

/// An incoming INVITE. The `OnCallEvent` hook of the registered session decides first: a
/// refusal (FAIL and a non-200) gets the caller `403 Forbidden` and the client a
/// `fail {apiMethod:"CallStatusEvent"}`. Answering needs a WebRTC offer made by the server,
/// which the media bridge cannot make yet: an accepted call (or one for no registered session)
/// gets `480 Temporarily Unavailable`, and the client is not offered a call it could not answer.
async fn incoming(ctx: Option<Arc<SessionCtx>>, c: callgate_sip::ua::IncomingCall, handle: UaHandle) {
    let call = c.call;
    let (status, reason) = match &ctx {
        None => (480, "Temporarily Unavailable"),
        Some(ctx) => {
            let mut data = serde_json::Map::new();
            data.insert("nodeId".into(), (&*ctx.shared.node_id).into());
            data.insert("appKey".into(), (&*ctx.app.key).into());
            data.insert("sessionId".into(), (&*ctx.id).into());
            data.insert("callId".into(), format!("{call:?}").into());
            data.insert("incoming".into(), true.into());
            data.insert("caller".into(), c.from_uri.clone().into());
            data.insert("callee".into(), c.request_uri.clone().into());
            data.insert("visibleName".into(), c.display_name.clone().unwrap_or_default().into());
            data.insert("sipMessageRaw".into(), String::from_utf8_lossy(&c.raw).into_owned().into());
            let inv = ctx
                .shared
                .engine
                .invoke(
                    &ctx.app,
                    &ctx.rcc,
                    callgate_hooks::HookMethod::OnCallEvent,
                    callgate_hooks::Origin::Sip,
                    &mut data,
                    &ctx.id,
                )
                .await;
            if inv.verdict.aborts() {
                let why = inv.client_info();
                ctx.out.send(&callgate_proto::ServerFrame::fail(
                    "CallStatusEvent",
                    &format!("Incoming call from {} refused: {why}", c.from_uri),
                    None,
                ));
                (403, "Forbidden")
            } else {
                (480, "Temporarily Unavailable")
            }
        }
    };
    tracing::info!(from = %c.from_uri, to = %c.request_uri, status, "incoming SIP call refused");
    let _ = handle.with(move |ua, now| ua.reject(now, call, status, Some(reason))).await;
}

/// REST `/call/startup`: a SIP call with no browser (see `rest.rs`); `Ok` = accepted.
pub fn rest_startup(
    shared: &Arc<crate::Shared>,
    body: serde_json::Map<String, serde_json::Value>,
) -> Result<(), RestCallError> {
    rest::startup(shared, body)
}

/// The session is established: register its SIP account when it asks for it.
pub fn session_established(ctx: &Arc<SessionCtx>) {
    register::start(ctx);
}

/// The session is gone: un-REGISTER its account.
pub fn session_closed(ctx: &Arc<SessionCtx>) {
    call::session_closed(ctx);
    register::stop(ctx);
}

/// `call` from the client.
pub fn call(ctx: Arc<SessionCtx>, obj: serde_json::Map<String, serde_json::Value>) {
    tokio::spawn(call::outgoing(ctx, obj));
}

/// `hold`, `unhold`, `sendDtmf` from the client.
pub fn in_call(
    ctx: Arc<SessionCtx>,
    method: callgate_hooks::HookMethod,
    obj: serde_json::Map<String, serde_json::Value>,
) {
    tokio::spawn(call::in_call(ctx, method, obj));
}

/// `hangup` from the client.
pub fn hangup(ctx: Arc<SessionCtx>, obj: serde_json::Map<String, serde_json::Value>) {
    tokio::spawn(call::hangup(ctx, obj));
}
