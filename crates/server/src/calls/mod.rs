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
//! Ownership: each call is owned by its task (`task.rs`, `CallTask`); `CallTable` is only the
//! index of live calls (call id -> the task's inbox and a view for the REST API; SIP id -> call
//! id). The SIP side (`crate::sip_side`) owns the routes of SIP events to call tasks. The
//! driver thread owns the user agent; registrations are still recorded in a map *inside* the
//! driver closures that create or end them, so a session ending while its REGISTER is being
//! prepared can never leave a registration behind (both go through the driver in order).

mod call;
mod incoming;
mod message;
mod policy;
mod ports;
mod register;
mod registrar;
mod rest;
mod subscribe;
mod task;
#[cfg(test)]
mod task_tests;
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
use crate::sip_side::{SipSide, Upward};

pub use crate::party::SipCredentials;
pub use policy::{SipPolicy, NOT_ALLOWED as DESTINATION_NOT_ALLOWED, SESSION_FIELD as ALLOWED_DESTINATIONS_FIELD};
pub use registrar::Embedded as EmbeddedRegistrar;
pub use rest::{CallStreams, RestCallError};

/// The SIP event pump's `task` label in `callgate_task_panics_total`.
const SIP_PUMP: &str = "sip_pump";

/// The node's SIP side.
pub struct Calls {
    cfg: SipSection,
    endpoint: OnceCell<Result<SipSide, String>>,
    /// Commands to the SIP owner task (`pump`), once the endpoint runs.
    cmd: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<SipCmd>>,
    /// How many registrations the owner holds.
    reg_count: Arc<std::sync::atomic::AtomicUsize>,
    table: Arc<CallTable>,
    /// MESSAGE/IMDN state (`message.rs`) and subscriptions (`subscribe.rs`).
    /// Trusted sources and allowed destinations (`policy.rs`).
    policy: Arc<SipPolicy>,
    /// The media endpoint: every call's bridge leg.
    media: MediaEndpoint,
    /// The live sessions: a call is recorded only while its owner is one of them.
    sessions: Arc<Registry<Party>>,
    /// Told when the SIP driver panics (`crate::supervise`).
    supervisor: crate::supervise::Supervisor,
    /// The embedded registrar (`[registrar]`), when enabled.
    registrar: Option<Arc<registrar::Embedded>>,
    /// The tasks that deliver the user agent's events (the SIP side's route task and the pump
    /// of what it hands up); they end when the driver has stopped.
    pump: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The index of live calls: the client's `callId` -> the call's task, and the client's id of
/// each SIP call (in-dialog MESSAGEs find their session by it). Each call's state is its task's.
pub struct CallTable {
    calls: DashMap<Arc<str>, call::CallHandle>,
    by_sip: DashMap<SipCallId, Arc<str>>,
    /// Held while a session's call is recorded (after checking the session is alive) and while
    /// a closed session's calls are collected: a call is either seen by the cleanup or never
    /// recorded (as the stream directory's lock does for streams).
    admission: parking_lot::Mutex<()>,
    /// `[limits] max_calls`: a call past it is not recorded (checked under `admission`).
    max: usize,
    /// `[limits] retry_after_s`, for the `503` of an incoming INVITE past `max`.
    retry_after_s: u32,
}

impl Default for CallTable {
    fn default() -> Self {
        CallTable {
            calls: DashMap::new(),
            by_sip: DashMap::new(),
            admission: parking_lot::Mutex::new(()),
            max: usize::MAX,
            retry_after_s: 1,
        }
    }
}

impl CallTable {
    /// `Err` when `[limits] max_calls` calls are live (a cheap early check; the authoritative
    /// one is `call::record`'s, under the admission lock).
    pub(crate) fn room(&self) -> Result<(), crate::admission::Refused> {
        if self.calls.len() >= self.max {
            return Err(crate::admission::Refused::Calls { limit: self.max });
        }
        Ok(())
    }
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
            cmd: std::sync::OnceLock::new(),
            reg_count: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            table: Arc::new(CallTable::default()),
            registrar: None,
            pump: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// The embedded registrar (`registrar::Embedded::start`): sessions of its domain register
    /// and call through it.
    pub fn with_registrar(mut self, registrar: Option<Arc<registrar::Embedded>>) -> Calls {
        self.registrar = registrar;
        self
    }

    /// The embedded registrar, when enabled.
    pub fn registrar(&self) -> Option<&Arc<registrar::Embedded>> {
        self.registrar.as_ref()
    }

    /// `[limits] max_calls` and `retry_after_s` (the default is no limit).
    pub fn limited(mut self, limits: &crate::config::LimitsSection) -> Calls {
        let table = Arc::get_mut(&mut self.table).expect("the table is not shared before the node starts");
        table.max = limits.max_calls;
        table.retry_after_s = limits.retry_after_s;
        self
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
        self.sip_side().await.map(|s| s.handle().clone())
    }

    /// The SIP side, started on first use.
    async fn sip_side(self: &Arc<Self>) -> Result<SipSide, String> {
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
                        let (side, upward, routes) = crate::sip_side::start(ep.handle, ep.events);
                        let (cmd, cmds) = tokio::sync::mpsc::unbounded_channel();
                        let _ = self.cmd.set(cmd);
                        let accounts = register::Accounts {
                            count: self.reg_count.clone(),
                            registrar: self.registrar.clone(),
                            ..register::Accounts::default()
                        };
                        let pump = tokio::spawn(pump(
                            upward,
                            cmds,
                            side.clone(),
                            accounts,
                            self.table.clone(),
                            self.policy.clone(),
                            self.sessions.clone(),
                            self.cfg.register_expires,
                            self.clone(),
                        ));
                        // The route task and the pump turn every SIP event into calls,
                        // messages and registrations: a panic in either ends the server too.
                        let routes = self.supervisor.watch_task(SIP_PUMP, "the SIP route task", routes);
                        let pump = self.supervisor.watch_task(SIP_PUMP, "the SIP event pump", pump);
                        self.pump.lock().extend([routes, pump]);
                        Ok(side)
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

    /// The SIP side as a call task sees it.
    pub(crate) async fn sip_port(self: &Arc<Self>) -> Result<ports::SipPort, String> {
        Ok(ports::SipPort {
            side: self.sip_side().await?,
            policy: self.policy.clone(),
            expires: self.cfg.register_expires,
            registrar: self.registrar.clone(),
        })
    }

    /// The bound SIP address, once the endpoint runs.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.get().and_then(|r| r.as_ref().ok()).map(|s| s.handle().udp_addr())
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
        call::terminate(self, call_id)
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

    /// Server shutdown: hangs up every call (BYE, CANCEL or 486) and waits, at most until
    /// `deadline`, for them to end, so no SIP peer is left with a call nobody will ever end.
    /// WebSocket sessions hang up their own calls when they close; REST-started calls have no
    /// session, so this is what ends them.
    /// A call recorded meanwhile (a setup that was under way) is hung up too.
    pub async fn hang_up_all(&self, deadline: tokio::time::Instant) {
        let mut done = std::collections::HashSet::new();
        while !self.table.calls.is_empty() && tokio::time::Instant::now() < deadline {
            let fresh: Vec<_> = self
                .table
                .calls
                .iter()
                .filter(|e| !done.contains(e.key()))
                .map(|e| (e.key().clone(), e.inbox.clone()))
                .collect();
            if !fresh.is_empty() {
                tracing::info!(calls = fresh.len(), "shutdown: hanging up calls");
            }
            for (id, inbox) in fresh {
                let _ = inbox.send(task::Input::Hangup { refused: None });
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
        let Ok(side) = endpoint else {
            if let Some(r) = &self.registrar {
                r.shutdown();
            }
            return;
        };
        side.handle().shutdown();
        // The route task and the pump end when the driver, the sender of their events, is gone.
        let tasks = std::mem::take(&mut *self.pump.lock());
        for t in tasks {
            let _ = t.await;
        }
        tracing::info!("SIP endpoint stopped");
        // After the user agent: the sessions' un-REGISTERs have been answered.
        if let Some(r) = &self.registrar {
            r.shutdown();
        }
    }

    /// Server shutdown, after [`Calls::stop_sip`]: ends the calls still there (their peer never
    /// answered the BYE), each reported FAILED "Server shutdown" to its owner by its task, and
    /// empties the tables of registrations, messages and subscriptions. Their entries hold
    /// sessions, which hold the node: left in place they would keep it alive. Returns how many
    /// entries there were; waits at most until `deadline` for the calls' tasks.
    pub async fn clear(&self, deadline: tokio::time::Instant) -> usize {
        let inboxes: Vec<_> = self.table.calls.iter().map(|e| e.inbox.clone()).collect();
        for inbox in &inboxes {
            let _ = inbox.send(task::Input::Abort { info: callgate_proto::info::SERVER_SHUTDOWN });
        }
        while !self.table.calls.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // Registrations, messages and subscriptions ended with the SIP owner task (`stop_sip`).
        let n = inboxes.len();
        self.table.calls.clear();
        self.table.by_sip.clear();
        n
    }

    /// Live calls.
    pub fn calls(&self) -> usize {
        self.table.calls.len()
    }

    /// Live registrations (sessions' and those being removed).
    pub fn registrations(&self) -> usize {
        self.reg_count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A command to the SIP owner task; `Err` when the SIP side is not running.
    pub(super) fn sip_cmd(&self, cmd: SipCmd) -> Result<(), String> {
        let gone = || callgate_sip::transport::EndpointGone.to_string();
        self.cmd.get().ok_or_else(gone)?.send(cmd).map_err(|_| gone())
    }
}

/// What the rest of the calls module asks of the SIP owner task: every request whose state
/// must be recorded before its first response is handled, and what ends such state.
pub(crate) enum SipCmd {
    Register {
        ctx: Arc<Party>,
        creds: SipCredentials,
        next_hop: SocketAddr,
        account: callgate_sip::ua::Account,
    },
    Message {
        ctx: Arc<Party>,
        obj: serde_json::Map<String, serde_json::Value>,
        account: Box<callgate_sip::ua::Account>,
        to: String,
        content_type: String,
        body: bytes::Bytes,
        imdn_id: Option<String>,
    },
    Imdn {
        ctx: Arc<Party>,
        obj: serde_json::Map<String, serde_json::Value>,
        account: Box<callgate_sip::ua::Account>,
        rec: (String, String, Option<String>),
        disposition: callgate_sip::ua::ImdnStatus,
        key: (Arc<str>, String),
    },
    Subscribe(Box<subscribe::NewSub>),
    Unsubscribe {
        ctx: Arc<Party>,
        obj: serde_json::Map<String, serde_json::Value>,
        key: (Arc<str>, String),
    },
    /// An incoming message asked for a delivery notification (`sendIMDN` may answer it).
    Received {
        key: (Arc<str>, String),
        r: message::ReceivedRef,
    },
    /// What `sendIMDN` needs of the received message `key`, if it asked for one.
    ReceivedLookup {
        key: (Arc<str>, String),
        reply: tokio::sync::oneshot::Sender<Option<message::ReceivedRef>>,
    },
    /// The session is gone: forget its messages, un-SUBSCRIBE its subscriptions, un-REGISTER
    /// its account.
    SessionClosed(Arc<Party>),
    /// A kept-alive session was resumed by a new connection: it is told `registered` again
    /// when its registration holds.
    Resumed(Arc<Party>),
}

/// The SIP owner task. It owns the registrations and subscriptions and carries out every
/// [`SipCmd`] in turn, awaiting the user agent and recording the result before it looks at the
/// next event, so no response is ever handled before its request is known. It also delivers
/// what the SIP side hands up: new incoming calls (each to a call task of its own), and the
/// events of registrations, messages and subscriptions. No server code runs on the SIP thread.
#[allow(clippy::too_many_arguments)]
async fn pump(
    mut events: tokio::sync::mpsc::UnboundedReceiver<Upward>,
    mut cmds: tokio::sync::mpsc::UnboundedReceiver<SipCmd>,
    side: SipSide,
    mut accounts: register::Accounts,
    table: Arc<CallTable>,
    policy: Arc<SipPolicy>,
    sessions: Arc<Registry<Party>>,
    expires: u32,
    calls: Arc<Calls>,
) {
    let handle = side.handle().clone();
    let port =
        ports::SipPort { side: side.clone(), policy: policy.clone(), expires, registrar: calls.registrar.clone() };
    let mut subs = subscribe::SubTables::default();
    let mut msgs = message::MsgTables::default();
    loop {
        let ev = tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => ev,
                None => break, // the driver stopped
            },
            Some(cmd) = cmds.recv() => {
                match cmd {
                    SipCmd::Register { ctx, creds, next_hop, account } => {
                        accounts.register(&side, &sessions, ctx, creds, next_hop, account).await
                    }
                    SipCmd::Message { ctx, obj, account, to, content_type, body, imdn_id } => {
                        message::on_send(&mut msgs, &side, ctx, obj, *account, to, content_type, body, imdn_id).await
                    }
                    SipCmd::Imdn { ctx, obj, account, rec, disposition, key } => {
                        message::on_send_imdn(&mut msgs, &side, ctx, obj, *account, rec, disposition, key).await
                    }
                    SipCmd::Subscribe(n) => subs.subscribe(&side, *n).await,
                    SipCmd::Unsubscribe { ctx, obj, key } => subs.unsubscribe(&side, &ctx, &obj, &key).await,
                    SipCmd::Received { key, r } => msgs.received(key, r),
                    SipCmd::ReceivedLookup { key, reply } => drop(reply.send(msgs.lookup(&key))),
                    SipCmd::SessionClosed(ctx) => {
                        msgs.session_closed(&ctx);
                        subs.session_closed(&side, &ctx).await;
                        accounts.unregister(&side, &ctx.id).await;
                    }
                    SipCmd::Resumed(ctx) => accounts.resumed(&ctx),
                }
                continue;
            }
        };
        // The registered session a request is addressed to and the next hop of its registration.
        let registered = |reg: Option<RegId>| {
            reg.and_then(|r| accounts.regs.get(&r).filter(|e| !e.closing).map(|e| (e.ctx.clone(), e.next_hop)))
        };
        match ev {
            Upward::IncomingCall(c, call_events) => {
                let to = registered(c.reg);
                if let Some((_, hop)) = &to {
                    if !policy.source_allowed(c.source, *hop) {
                        policy.note_refused_source(c.source, "INVITE", &c.request_uri);
                        let p = port.clone();
                        tokio::spawn(async move { incoming::reject(&p, &c, 403, "Forbidden").await });
                        continue;
                    }
                }
                tokio::spawn(incoming::incoming(to.map(|t| t.0), c, call_events, port.clone(), calls.clone()));
            }
            Upward::Other(UaEvent::Registration { reg, event }) => accounts.on_event(&sessions, reg, event),
            Upward::Other(UaEvent::IncomingMessage(m)) => {
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
                // A delivery notification for a message we sent: reported on the sender's
                // session. Anything else (an unknown id, a display/processing notification)
                // goes on as an ordinary message.
                if m.content_type.to_ascii_lowercase().starts_with("message/imdn+xml") {
                    if let Some(n) = callgate_sip::ua::parse_imdn(&m.body) {
                        if let Some(sender) = msgs.imdn_sender(&n) {
                            tokio::spawn(message::incoming_imdn(sender, n.status, m.req, handle.clone()));
                            continue;
                        }
                    }
                }
                tokio::spawn(message::incoming(ctx, m, handle.clone(), calls.clone()));
            }
            Upward::Other(UaEvent::MessageResult { msg, result }) => message::on_result(&mut msgs, msg, result),
            Upward::Other(UaEvent::Subscription { sub, event }) => subs.on_event(sub, event),
            // The SIP side routes these to the call tasks; they never come up.
            Upward::Other(UaEvent::Call { .. } | UaEvent::IncomingCall(_)) => {}
        }
    }
    accounts.count.store(0, std::sync::atomic::Ordering::Relaxed);
}

/// REST `/call/startup`: a SIP call with no browser (see `rest.rs`); `Ok` = accepted.
pub fn rest_startup(
    calls: &Arc<Calls>,
    node: &Arc<crate::party::NodeInfo>,
    apps: &callgate_hooks::AppRegistry,
    body: serde_json::Map<String, serde_json::Value>,
    streams: &Arc<dyn CallStreams>,
) -> Result<(), RestCallError> {
    rest::startup(calls, node, apps, body, streams)
}

/// The session's next hop for `creds`, resolved and allowed (see [`ports::next_hop`]).
pub(crate) async fn next_hop(calls: &Calls, ctx: &Party, creds: &SipCredentials) -> Result<SocketAddr, String> {
    let session = policy::session_destinations(&ctx.data_ref());
    ports::next_hop(&calls.policy, calls.registrar.as_deref(), &ctx.id, creds, &session).await
}

/// The session is established: register its SIP account when it asks for it.
pub fn session_established(calls: &Arc<Calls>, ctx: &Arc<Party>) {
    register::start(calls, ctx);
}

/// The session is gone: hang up its calls, end its subscriptions and messages, un-REGISTER
/// its account.
pub fn session_closed(calls: &Arc<Calls>, ctx: &Arc<Party>) {
    call::session_closed(calls, ctx);
    let _ = calls.sip_cmd(SipCmd::SessionClosed(ctx.clone()));
}

/// A kept-alive session was resumed (`session.rs`): its client hears of its registration again.
pub fn session_resumed(calls: &Arc<Calls>, ctx: &Arc<Party>) {
    let _ = calls.sip_cmd(SipCmd::Resumed(ctx.clone()));
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
