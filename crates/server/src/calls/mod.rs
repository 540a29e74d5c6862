//! SIP for clients: the node's SIP user agent (one `callgate_sip` endpoint, opened at the first
//! use): the clients' registrations, calls, messages and subscriptions.
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
//! Incoming INVITEs (`incoming.rs`): `OnCallEvent` (refusal: 403), a media leg with a
//! server-made WebRTC offer, 180, `setRemoteSDP`/`notifyIncomingCall`/`ring`; `answer` -> 200.
//! MESSAGE and IMDN both ways (`message.rs`), SUBSCRIBE (`subscribe.rs`), incoming REFER
//! (`transfer_in.rs`); docs/hooks.md §14.
//!
//! Ownership: the driver task owns the user agent; registrations are recorded in a map *inside*
//! the driver closures that create or end them, so a session ending while its REGISTER is being
//! prepared can never leave a registration behind (both go through the driver in order).

mod call;
mod incoming;
mod message;
mod peer;
mod policy;
mod register;
mod rest;
mod subscribe;
mod transfer_in;

use std::net::SocketAddr;
use std::sync::Arc;

use callgate_sip::transport::UaHandle;
use callgate_sip::ua::{CallId as SipCallId, RegId, UaEvent};
use dashmap::DashMap;
use tokio::sync::OnceCell;

use callgate_media::MediaEndpoint;

use crate::config::SipSection;
use crate::party::Party;
use crate::registry::Registry;

pub use crate::party::SipCredentials;
pub use policy::{SipPolicy, NOT_ALLOWED as DESTINATION_NOT_ALLOWED, SESSION_FIELD as ALLOWED_DESTINATIONS_FIELD};
pub use rest::RestCallError;

/// The SIP event pump's `task` label in `callgate_task_panics_total`.
const SIP_PUMP: &str = "sip_pump";

/// The node's SIP side.
pub struct Calls {
    cfg: SipSection,
    endpoint: OnceCell<Result<UaHandle, String>>,
    regs: Arc<DashMap<RegId, register::RegEntry>>,
    by_session: Arc<DashMap<Arc<str>, RegId>>,
    table: Arc<CallTable>,
    /// MESSAGE/IMDN state (`message.rs`) and subscriptions (`subscribe.rs`).
    msgs: Arc<message::MsgTables>,
    subs: Arc<subscribe::SubTables>,
    /// Trusted sources and allowed destinations (`policy.rs`).
    policy: Arc<SipPolicy>,
    /// The media endpoint: every call's bridge leg.
    media: MediaEndpoint,
    /// The live sessions: a call is recorded only while its owner is one of them.
    sessions: Arc<Registry<Party>>,
    /// Told when the SIP driver panics (`crate::supervise`).
    supervisor: crate::supervise::Supervisor,
    /// The task that delivers the user agent's events; it ends when the driver has stopped.
    pump: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Live calls by the client's `callId`, and the client's id of each SIP call.
#[derive(Default)]
pub struct CallTable {
    calls: Arc<DashMap<Arc<str>, call::CallEntry>>,
    by_sip: Arc<DashMap<SipCallId, Arc<str>>>,
    /// Held while a session's call is recorded (after checking the session is alive) and while
    /// a closed session's calls are collected: a call is either seen by the cleanup or never
    /// recorded (as the stream directory's lock does for streams).
    admission: parking_lot::Mutex<()>,
}

impl Calls {
    pub fn new(cfg: SipSection, media: MediaEndpoint, sessions: Arc<Registry<Party>>) -> Calls {
        let policy = SipPolicy::from_config(&cfg).unwrap_or_else(|e| {
            // `validate` (lib.rs) refuses this before; never fall back to something more open.
            tracing::error!(error = %e, "[sip] policy invalid: no destination allowed");
            SipPolicy::new(&[], &[]).expect("empty lists are valid")
        });
        Calls {
            policy: Arc::new(policy),
            media,
            sessions,
            supervisor: crate::supervise::Supervisor::default(),
            cfg,
            endpoint: OnceCell::new(),
            regs: Arc::new(DashMap::new()),
            by_session: Arc::new(DashMap::new()),
            table: Arc::new(CallTable::default()),
            msgs: Arc::new(message::MsgTables::default()),
            subs: Arc::new(subscribe::SubTables::default()),
            pump: parking_lot::Mutex::new(None),
        }
    }

    /// Reports panics of the SIP driver and of the SIP event pump to `supervisor` (the
    /// server's); the pump's panic counter shows in `/metrics` from now on.
    pub fn supervised(mut self, supervisor: crate::supervise::Supervisor) -> Calls {
        crate::supervise::register_task(SIP_PUMP);
        self.supervisor = supervisor;
        self
    }

    /// The SIP endpoint, started on first use; `Err` with the reason when it cannot bind.
    pub async fn endpoint(self: &Arc<Self>) -> Result<UaHandle, String> {
        self.endpoint
            .get_or_init(|| async {
                let cfg = self.cfg.endpoint_config().map_err(|e| e.to_string())?;
                let bind = cfg.udp_bind;
                match callgate_sip::transport::Endpoint::start(cfg).await {
                    Ok(ep) => {
                        tracing::info!(sip_addr = %ep.handle.udp_addr(), "SIP endpoint started");
                        // A panic in the driver is logged, counted and ends the server (which
                        // exits non-zero): never a silently dead endpoint. The driver itself
                        // goes on after a panic in the user agent, so calls can still be hung up.
                        self.supervisor.watch_sip_driver(ep.panicked, ep.task);
                        let pump = tokio::spawn(pump(ep.events, ep.handle.clone(), self.clone()));
                        // The pump turns every SIP event into calls, messages and registrations:
                        // its panic ends the server the same way.
                        let pump = self.supervisor.watch_task(SIP_PUMP, "the SIP event pump", pump);
                        *self.pump.lock() = Some(pump);
                        Ok(ep.handle)
                    }
                    Err(e) => {
                        tracing::error!(%bind, error = %e, "cannot start the SIP endpoint");
                        Err(callgate_proto::info::sip_endpoint_unavailable(e))
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
    pub async fn terminate(self: &Arc<Self>, call_id: &str) -> bool {
        call::terminate(self, call_id).await
    }

    /// REST `/call/hold`, `/unhold`, `/transfer`, `/send_dtmf` (`method` = the hook's); see
    /// `rest.rs`.
    pub async fn rest_action(
        self: &Arc<Self>,
        method: callgate_hooks::HookMethod,
        body: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), RestCallError> {
        rest::action(self, method, body).await
    }

    /// Server shutdown: hangs up every call (BYE, CANCEL or 486) and waits, at most until
    /// `deadline`, for them to end, so no SIP peer is left with a call nobody will ever end.
    /// WebSocket sessions hang up their own calls when they close; REST-started calls have no
    /// session, so this is what ends them.
    /// A call recorded meanwhile (a setup that was under way) is hung up too.
    pub async fn hang_up_all(self: &Arc<Self>, deadline: tokio::time::Instant) {
        let mut done = std::collections::HashSet::new();
        while !self.table.calls.is_empty() && tokio::time::Instant::now() < deadline {
            let ids: Vec<Arc<str>> =
                self.table.calls.iter().map(|e| e.key().clone()).filter(|id| !done.contains(id)).collect();
            if !ids.is_empty() {
                tracing::info!(calls = ids.len(), "shutdown: hanging up calls");
            }
            for id in ids {
                call::terminate(self, &id).await;
                done.insert(id);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Server shutdown, once the calls are over: stops the SIP driver (its sockets close) and
    /// returns when its last events have been handled. An endpoint that was never started never
    /// will be (later uses get an error).
    pub async fn stop_sip(&self) {
        let endpoint = self
            .endpoint
            .get_or_init(|| async {
                Err(callgate_proto::info::sip_endpoint_unavailable("the server is shutting down"))
            })
            .await;
        let Ok(handle) = endpoint else { return };
        handle.shutdown();
        // The pump ends when the driver, the sender of its events, is gone.
        let pump = self.pump.lock().take();
        if let Some(pump) = pump {
            let _ = pump.await;
        }
        tracing::info!("SIP endpoint stopped");
    }

    /// Server shutdown, after [`Calls::stop_sip`]: empties the tables of calls, registrations,
    /// messages and subscriptions. Their entries hold parties (and each party its event queue):
    /// nothing is left to a process that may live on (an embedder, a test). A call still there (its peer never answered the BYE) is
    /// reported FAILED "Server shutdown" to its owner. Returns how many entries there were.
    pub fn clear(&self) -> usize {
        let ids: Vec<Arc<str>> = self.table.calls.iter().map(|e| e.key().clone()).collect();
        for id in &ids {
            call::end(self, id, call::FAILED, callgate_proto::info::SERVER_SHUTDOWN, None);
        }
        let n = ids.len() + self.regs.len() + self.msgs.clear() + self.subs.clear();
        self.table.calls.clear();
        self.table.by_sip.clear();
        self.regs.clear();
        self.by_session.clear();
        n
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
async fn pump(mut events: tokio::sync::mpsc::UnboundedReceiver<UaEvent>, handle: UaHandle, calls: Arc<Calls>) {
    let (regs, table, msgs, subs, policy) = (&calls.regs, &calls.table, &calls.msgs, &calls.subs, &calls.policy);
    // The registered session a request is addressed to and the next hop of its registration.
    let registered =
        |reg: Option<RegId>| reg.and_then(|r| regs.get(&r).filter(|e| !e.closing).map(|e| (e.ctx.clone(), e.next_hop)));
    while let Some(ev) = events.recv().await {
        match ev {
            UaEvent::Registration { reg, event } => register::on_event(&calls, reg, event),
            UaEvent::Call { call, event } => call::on_event(&calls, call, event),
            UaEvent::IncomingCall(c) => {
                let to = registered(c.reg);
                if let Some((_, hop)) = &to {
                    if !policy.source_allowed(c.source, *hop) {
                        policy.note_refused_source(c.source, "INVITE", &c.request_uri);
                        let h = handle.clone();
                        tokio::spawn(async move { incoming::reject(&h, &c, 403, "Forbidden").await });
                        continue;
                    }
                }
                tokio::spawn(incoming::incoming(calls.clone(), to.map(|t| t.0), c, handle.clone()));
            }
            UaEvent::IncomingMessage(m) => {
                // The registered session it is addressed to, else the session of its call.
                let to = if m.call.is_none() { registered(m.reg) } else { None };
                if let Some((_, hop)) = &to {
                    if !policy.source_allowed(m.source, *hop) {
                        policy.note_refused_source(m.source, "MESSAGE", &m.to);
                        let h = handle.clone();
                        tokio::spawn(async move { message::respond(&h, m.req, 403, "Forbidden").await });
                        continue;
                    }
                }
                let ctx = to.map(|t| t.0).or_else(|| {
                    let cid = m.call.and_then(|c| table.by_sip.get(&c).map(|id| id.clone()))?;
                    table.calls.get(&cid).map(|e| e.ctx.clone())
                });
                tokio::spawn(message::incoming(ctx, m, handle.clone(), msgs.clone()));
            }
            UaEvent::MessageResult { msg, result } => message::on_result(msgs, msg, result),
            UaEvent::Subscription { sub, event } => subscribe::on_event(subs, sub, event),
        }
    }
}

/// REST `/call/startup`: a SIP call with no browser (see `rest.rs`); `Ok` = accepted.
pub fn rest_startup(
    calls: &Arc<Calls>,
    node: &Arc<crate::party::NodeInfo>,
    apps: &callgate_hooks::AppRegistry,
    body: serde_json::Map<String, serde_json::Value>,
) -> Result<(), RestCallError> {
    rest::startup(calls, node, apps, body)
}

/// The session's next hop, resolved, when `[sip] allowed_destinations` or the session's
/// backend-given `sipAllowedDestinations` allow it; else [`policy::NOT_ALLOWED`] and nothing is
/// sent (issue 14 item 8).
pub(crate) async fn next_hop(calls: &Calls, ctx: &Party, creds: &SipCredentials) -> Result<SocketAddr, String> {
    let addr = creds.resolve().await?;
    let session = policy::session_destinations(&ctx.data_ref());
    if calls.policy.destination_allowed(&session, creds.next_hop_name(), addr) {
        return Ok(addr);
    }
    let target = creds.next_hop_target();
    tracing::info!(session = &*ctx.id, target, %addr, "SIP destination not allowed ([sip] allowed_destinations)");
    metrics::counter!("callgate_sip_destinations_refused_total").increment(1);
    Err(format!("{}: {target}", policy::NOT_ALLOWED))
}

/// The session is established: register its SIP account when it asks for it.
pub fn session_established(calls: &Arc<Calls>, ctx: &Arc<Party>) {
    register::start(calls, ctx);
}

/// The session is gone: hang up its calls, end its subscriptions and messages, un-REGISTER
/// its account.
pub fn session_closed(calls: &Arc<Calls>, ctx: &Arc<Party>) {
    call::session_closed(calls, ctx);
    subscribe::session_closed(calls, ctx);
    message::session_closed(&calls.msgs, ctx);
    register::stop(calls, ctx);
}

/// `call` from the client.
pub fn call(calls: &Arc<Calls>, ctx: Arc<Party>, obj: serde_json::Map<String, serde_json::Value>) {
    tokio::spawn(call::outgoing(calls.clone(), ctx, obj));
}

/// `hold`, `unhold`, `sendDtmf`, `transfer` from the client.
pub fn in_call(
    calls: &Arc<Calls>,
    ctx: Arc<Party>,
    method: callgate_hooks::HookMethod,
    obj: serde_json::Map<String, serde_json::Value>,
) {
    tokio::spawn(call::in_call(calls.clone(), ctx, method, obj));
}

/// `answer` from the client (an incoming call).
pub fn answer(calls: &Arc<Calls>, ctx: Arc<Party>, obj: serde_json::Map<String, serde_json::Value>) {
    tokio::spawn(incoming::answer(calls.clone(), ctx, obj));
}

/// `hangup` from the client.
pub fn hangup(calls: &Arc<Calls>, ctx: Arc<Party>, obj: serde_json::Map<String, serde_json::Value>) {
    tokio::spawn(call::hangup(calls.clone(), ctx, obj));
}

/// `sendMessage` from the client.
pub fn send_message(calls: &Arc<Calls>, ctx: Arc<Party>, obj: serde_json::Map<String, serde_json::Value>) {
    tokio::spawn(message::send(calls.clone(), ctx, obj));
}

/// `sendIMDN` from the client.
pub fn send_imdn(calls: &Arc<Calls>, ctx: Arc<Party>, obj: serde_json::Map<String, serde_json::Value>) {
    tokio::spawn(message::send_imdn(calls.clone(), ctx, obj));
}

/// `notificationResult` from the client (the old API's answer to `notifyMessage`).
pub fn notification_result(ctx: &Party, obj: &serde_json::Map<String, serde_json::Value>) {
    message::notification_result(ctx, obj);
}

/// `subscribe` from the client.
pub fn subscribe(calls: &Arc<Calls>, ctx: Arc<Party>, obj: serde_json::Map<String, serde_json::Value>) {
    tokio::spawn(subscribe::subscribe(calls.clone(), ctx, obj));
}
