//! A connected party: a WebSocket session once established, or the leg of a call started
//! through the REST API (`/call/startup`), which has no client. One type for both, shared by the
//! tasks that act for it, indexed by the [`crate::registry::Registry`] (WebSocket sessions only).
//!
//! A party knows what it needs of the node through a small [`NodeInfo`] (node id, hook engine,
//! `[hooks]`), never the node itself: the tables of calls and streams hold parties, and a party
//! holding the node would make the node hold itself.

mod credentials;

pub use credentials::SipCredentials;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use callgate_hooks::{
    EventJob, EventQueue, FieldList, HookEngine, HookMethod, Origin, RestClientConfig, RestPolicy, Verdict,
};
use callgate_proto::ServerFrame;
use parking_lot::RwLock;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::config::HooksConfig;
use crate::secrets::Redacted;
use crate::wire::{Outbox, SessionCmd};

/// `info` of a client's direct invocation refused because its session has too many waiting.
pub use callgate_proto::info::TOO_MANY_IN_FLIGHT;

/// What a party needs of the node it lives on.
pub struct NodeInfo {
    /// `<32 random chars>@<node ip>` (WCS nodeId shape).
    pub id: Arc<str>,
    pub engine: HookEngine,
    pub hooks: HooksConfig,
}

/// The client side of a WebSocket session: its outbox and its task's command sender.
pub struct Client {
    pub out: Outbox,
    pub cmd: mpsc::Sender<SessionCmd>,
}

/// A connected party (see the module notes).
pub struct Party {
    pub node: Arc<NodeInfo>,
    pub id: Arc<str>,
    pub app: Arc<callgate_hooks::App>,
    pub rcc: Arc<RestClientConfig>,
    /// The connection object as established (client fields + connect answer); a REST leg's is
    /// its SIP account.
    data: RwLock<Arc<Map<String, Value>>>,
    pub events: EventQueue,
    /// `sessionDebug`: every client frame is logged while on.
    pub debug: AtomicBool,
    /// The party's direct invocations waiting on the backend (bounded by
    /// `hooks.max_in_flight_per_session`, see [`Party::direct_from`]).
    direct_in_flight: AtomicUsize,
    /// Refusals for that bound are logged once per party.
    direct_refusal_logged: AtomicBool,
    /// `None` for a REST-started leg: its frames have nowhere to go. A session kept alive
    /// (`keepAlive`) swaps in the socket of the connection that resumes it
    /// ([`Party::reattach`]); while it has none, the old outbox is closed and frames are dropped.
    client: Option<RwLock<Client>>,
}

impl Party {
    pub fn new(
        node: Arc<NodeInfo>,
        id: Arc<str>,
        app: Arc<callgate_hooks::App>,
        rcc: Arc<RestClientConfig>,
        data: Map<String, Value>,
        client: Option<Client>,
    ) -> Party {
        let events = EventQueue::spawn(node.engine.clone(), app.clone(), rcc.clone(), id.clone());
        Party {
            node,
            id,
            app,
            rcc,
            data: RwLock::new(Arc::new(data)),
            events,
            debug: AtomicBool::new(false),
            direct_in_flight: AtomicUsize::new(0),
            direct_refusal_logged: AtomicBool::new(false),
            client: client.map(RwLock::new),
        }
    }

    /// A copy of the connection object.
    pub fn data(&self) -> Map<String, Value> {
        (**self.data.read()).clone()
    }

    pub fn data_ref(&self) -> Arc<Map<String, Value>> {
        self.data.read().clone()
    }

    /// The connection object when it has every field of `filter` with an equal value.
    pub fn data_matching(&self, filter: &Map<String, Value>) -> Option<Arc<Map<String, Value>>> {
        let d = self.data_ref();
        filter.iter().all(|(k, v)| d.get(k) == Some(v)).then_some(d)
    }

    /// The client's outbox now (none for a REST leg).
    fn out(&self) -> Option<Outbox> {
        self.client.as_ref().map(|c| c.read().out.clone())
    }

    /// A frame to the client (none for a REST leg).
    pub fn send(&self, frame: &ServerFrame) {
        if let Some(out) = self.out() {
            out.send(frame);
        }
    }

    /// Already serialised text to the client.
    pub fn send_text(&self, text: String) {
        if let Some(out) = self.out() {
            out.send_text(text);
        }
    }

    /// Sends `{message, data:[obj without `exclude` and without secrets]}`.
    pub fn send_object(&self, message: &str, obj: &Map<String, Value>, exclude: &FieldList) {
        match self.out() {
            Some(out) if !out.is_closed() => out.send_text(frame_text(message, obj, exclude)),
            _ => {}
        }
    }

    /// Asks the session task to close, telling the client why (nothing for a REST leg). A kept
    /// session's keeper takes the same command (`session.rs`).
    pub fn terminate(&self, info: String) {
        if let Some(c) = &self.client {
            let cmd = c.read().cmd.clone();
            let _ = cmd.try_send(SessionCmd::Terminate { info });
        }
    }

    /// Asks the session task to close its connection and keep the session for a resuming
    /// connection ([`SessionCmd::HandOver`]). Nothing for a REST leg.
    pub fn hand_over(&self) {
        if let Some(c) = &self.client {
            let cmd = c.read().cmd.clone();
            let _ = cmd.try_send(SessionCmd::HandOver);
        }
    }

    /// A kept-alive session is resumed by a new connection: from now on its frames and
    /// commands go to that connection's task. Nothing for a REST leg.
    pub fn reattach(&self, client: Client) {
        if let Some(c) = &self.client {
            *c.write() = client;
        }
    }

    /// The context fields of every hook body.
    pub fn context(&self) -> Map<String, Value> {
        self.with_context(Map::new())
    }

    /// `obj` with the context fields (`nodeId`, `appKey`, `sessionId`) set.
    pub fn with_context(&self, mut obj: Map<String, Value>) -> Map<String, Value> {
        obj.insert("nodeId".into(), Value::from(&*self.node.id));
        obj.insert("appKey".into(), Value::from(&*self.app.key));
        obj.insert("sessionId".into(), Value::from(&*self.id));
        obj
    }

    /// Raises an event: hook to the backend (ordered), and `client_message` to the client
    /// (now under NOTIFY/DISABLE, after the backend's answer under OVERWRITE).
    pub fn raise_event(
        self: &Arc<Self>,
        method: HookMethod,
        origin: Origin,
        data: Map<String, Value>,
        client_message: Option<&'static str>,
    ) {
        self.raise_event_with(method, origin, data, client_message, Vec::new());
    }

    /// [`Party::raise_event`] whose client message carries `extra` positional arguments
    /// after the event object (`notifyMessage [message, notificationResult]` of the old API).
    pub fn raise_event_with(
        self: &Arc<Self>,
        method: HookMethod,
        origin: Origin,
        data: Map<String, Value>,
        client_message: Option<&'static str>,
        extra: Vec<Value>,
    ) {
        let mc = self.rcc.method(method);
        let wait_for_backend = mc.rest_policy == RestPolicy::Overwrite;
        let send =
            |party: &Party, msg: &'static str, data: &Map<String, Value>, exclude: &FieldList, extra: &[Value]| {
                if extra.is_empty() {
                    party.send_object(msg, data, exclude);
                } else {
                    let obj =
                        serde_json::to_value(Redacted::to_client(data, exclude)).expect("JSON values always serialise");
                    let mut args = vec![obj];
                    args.extend_from_slice(extra);
                    party.send(&ServerFrame::new(msg, args));
                }
            };
        if let (Some(msg), false) = (client_message, wait_for_backend) {
            send(self, msg, &data, &mc.client_exclude, &extra);
        }
        let party = self.clone();
        self.events.push(EventJob {
            method,
            origin,
            data,
            then: Box::new(move |done| {
                let mc = party.rcc.method(method);
                if let (Some(msg), true) = (client_message, wait_for_backend) {
                    send(&party, msg, &done.data, &mc.client_exclude, &extra);
                }
                if done.invocation.verdict == Verdict::ProceedWithErrorEvent && method != HookMethod::ErrorEvent {
                    party.error_event(&format!("{method}: {}", done.invocation.client_info()), origin);
                }
            }),
        });
    }

    /// An `ErrorEvent`: to the client as `fail {apiMethod:"ErrorEvent"}` (the SDK fires WARN) and
    /// to the backend as the `ErrorEvent` hook.
    pub fn error_event(self: &Arc<Self>, info_text: &str, origin: Origin) {
        self.error_event_with(info_text, origin, Map::new());
    }

    /// [`Party::error_event`] for a SIP failure that has no status event of its own (a
    /// re-INVITE's, an INFO's; docs/errmap.md): client and backend also get its `sipStatus` and
    /// `sipMessageRaw`.
    pub fn sip_error_event(self: &Arc<Self>, f: &callgate_errmap::FailureEvent, origin: Origin) {
        let mut sip = Map::new();
        insert_sip_failure(&mut sip, f);
        self.error_event_with(&f.info, origin, sip);
    }

    fn error_event_with(self: &Arc<Self>, info_text: &str, origin: Origin, extra: Map<String, Value>) {
        self.send(&ServerFrame::fail_with("ErrorEvent", info_text, None, extra.clone()));
        let mut data = self.context();
        data.insert("status".into(), "FAILED".into());
        data.insert("info".into(), info_text.into());
        data.extend(extra);
        self.raise_event(HookMethod::ErrorEvent, origin, data, None);
    }

    /// Runs a direct invocation hook on `data`; returns `Err(info)` when the verdict rejects it.
    pub async fn direct(&self, method: HookMethod, data: &mut Map<String, Value>) -> Result<(), String> {
        self.direct_from(method, Origin::Client, data).await
    }

    /// [`Party::direct`] for an action of `origin` (the REST API's cannot be rejected).
    ///
    /// A client's invocation is refused at once with [`TOO_MANY_IN_FLIGHT`] while the session
    /// already has `hooks.max_in_flight_per_session` waiting on the backend: the app's hook
    /// permits are shared by all its sessions, and one session flooding `sendData` at a backend
    /// that hangs would otherwise hold them all and starve every other session's hooks.
    pub async fn direct_from(
        &self,
        method: HookMethod,
        origin: Origin,
        data: &mut Map<String, Value>,
    ) -> Result<(), String> {
        let _slot = match origin {
            Origin::Client => Some(self.enter_direct(method)?),
            _ => None,
        };
        let inv = self.node.engine.invoke(&self.app, &self.rcc, method, origin, data, &self.id).await;
        if inv.verdict.aborts() {
            Err(inv.client_info())
        } else {
            Ok(())
        }
    }

    fn enter_direct(&self, method: HookMethod) -> Result<DirectSlot<'_>, String> {
        let max = self.node.hooks.max_in_flight_per_session;
        let counter = &self.direct_in_flight;
        match counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)) {
            Ok(_) => Ok(DirectSlot(counter)),
            Err(_) => {
                metrics::counter!("callgate_hook_refused_in_flight_total").increment(1);
                // Once per session, not once per refused frame: a flood would flood the log too.
                if !self.direct_refusal_logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        session = &*self.id,
                        method = method.url_name(),
                        max,
                        "too many direct invocations in flight; refusing until some finish"
                    );
                }
                Err(TOO_MANY_IN_FLIGHT.to_string())
            }
        }
    }
}

/// One of a party's direct invocations in flight; leaving frees its slot.
struct DirectSlot<'a>(&'a AtomicUsize);

impl Drop for DirectSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serialises a one-object client frame without `exclude` (the party's `clientExclude`) and
/// without secrets, without copying the object.
pub fn frame_text(message: &str, obj: &Map<String, Value>, exclude: &FieldList) -> String {
    crate::wire::frame_text(message, &Redacted::to_client(obj, exclude), 64 + message.len() + 16 * obj.len())
}

/// Adds a SIP failure's `sipStatus` and `sipMessageRaw` (the response exactly as received) to
/// a status event's body, when a SIP response caused the failure.
pub fn insert_sip_failure(ev: &mut Map<String, Value>, f: &callgate_errmap::FailureEvent) {
    if let Some(code) = f.sip_status {
        ev.insert("sipStatus".into(), code.into());
    }
    if let Some(raw) = &f.sip_message_raw {
        ev.insert("sipMessageRaw".into(), raw.clone().into());
    }
}
