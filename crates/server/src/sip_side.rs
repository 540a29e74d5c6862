//! The SIP side: one task owns the routes from the user agent's calls to the tasks that own
//! them, and every call operation is a typed command.
//!
//! ```text
//!  sip-driver thread (UserAgent) ──UaEvent──> route task ──CallEvent──> that call's CallTask
//!         ^                                        │  (routes: SIP call id -> its task's queue)
//!         │ typed commands (invite, hangup, …)     └──Upward──> calls::pump (registrations,
//!         └──────────────────── SipSide                          messages, subscriptions,
//!                                                                new incoming calls)
//! ```
//!
//! Why one owner: the events of a call must reach the task that owns it, including the first
//! response to an INVITE, which can arrive before the task that sent the INVITE has heard its
//! SIP id. So an INVITE is sent by the route task itself. It does not wait for the user agent's
//! answer (that would make every INVITE of the node wait for the one before: at 4,000 calls/s
//! on two busy cores the queue grew without bound); while INVITEs are in flight, an event for a
//! call it has no route for is held back, and handed over when that INVITE's id arrives (the
//! driver answers the command before it can have any response for it). When no INVITE is in
//! flight, what is still held back belongs to no task and is dropped. An incoming INVITE gets
//! its route in the same step that announces it. Nothing else writes the routes, so they are a
//! plain `HashMap` with no lock.
//!
//! Every command runs one `UserAgent` method on the driver thread and returns its result: no
//! server code runs on the SIP thread, and no server state is touched from it.

use std::collections::HashMap;

use bytes::Bytes;
use callgate_sip::transport::UaHandle;
use callgate_sip::ua::{
    Account, CallEvent, CallId as SipCallId, ImdnStatus, IncomingCall, MsgId, RegId, ReqId, SubId, UaEvent,
};
use tokio::sync::{mpsc, oneshot};

/// The events of one SIP call, in the order the user agent produced them.
pub type CallEvents = mpsc::UnboundedReceiver<CallEvent>;

/// What the route task hands up to the calls layer.
#[derive(Debug)]
pub enum Upward {
    /// A new incoming INVITE, with the events of its call (already routed).
    IncomingCall(IncomingCall, CallEvents),
    /// Every other event of the user agent (registrations, messages, subscriptions).
    Other(UaEvent),
}

enum Cmd {
    Invite {
        account: Box<Account>,
        to: String,
        offer: Bytes,
        reply: oneshot::Sender<Result<(SipCallId, CallEvents), String>>,
    },
    Unroute(SipCallId),
}

/// The server's handle on the SIP side: typed commands to the user agent.
#[derive(Clone)]
pub struct SipSide {
    handle: UaHandle,
    cmd: mpsc::UnboundedSender<Cmd>,
}

/// Starts the route task for the driver's `events`; returns the handle, what goes up to the
/// calls layer, and the task (it ends when the driver has stopped and its events are routed).
pub fn start(
    handle: UaHandle,
    events: mpsc::UnboundedReceiver<UaEvent>,
) -> (SipSide, mpsc::UnboundedReceiver<Upward>, tokio::task::JoinHandle<()>) {
    let (cmd, cmds) = mpsc::unbounded_channel();
    let (up, upward) = mpsc::unbounded_channel();
    let task = tokio::spawn(route(handle.clone(), events, cmds, up));
    (SipSide { handle, cmd }, upward, task)
}

fn flat<T>(
    r: Result<Result<T, callgate_sip::ua::UaError>, callgate_sip::transport::EndpointGone>,
) -> Result<T, String> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(gone) => Err(gone.to_string()),
    }
}

impl SipSide {
    /// The user agent's handle (registrations, messages and subscriptions still use it
    /// directly; docs/ARCHITECTURE.md).
    pub fn handle(&self) -> &UaHandle {
        &self.handle
    }

    /// Sends an INVITE from `account` to `to` with our SDP `offer`; its events are routed to
    /// the returned queue from its first response on.
    pub async fn invite(&self, account: Account, to: String, offer: Bytes) -> Result<(SipCallId, CallEvents), String> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Invite { account: Box::new(account), to, offer, reply })
            .map_err(|_| callgate_sip::transport::EndpointGone.to_string())?;
        rx.await.map_err(|_| callgate_sip::transport::EndpointGone.to_string())?
    }

    /// The call's task is gone: its events are dropped from now on.
    pub fn unroute(&self, call: SipCallId) {
        let _ = self.cmd.send(Cmd::Unroute(call));
    }

    /// BYE, CANCEL, or (an unanswered incoming call) 486.
    pub async fn hangup(&self, call: SipCallId) -> Result<(), String> {
        flat(self.handle.with(move |ua, now| ua.hangup(now, call)).await)
    }

    pub async fn reinvite_hold(&self, call: SipCallId, sdp: Bytes) -> Result<(), String> {
        flat(self.handle.with(move |ua, now| ua.reinvite_hold(now, call, &sdp)).await)
    }

    pub async fn reinvite_unhold(&self, call: SipCallId, sdp: Bytes) -> Result<(), String> {
        flat(self.handle.with(move |ua, now| ua.reinvite_unhold(now, call, &sdp)).await)
    }

    pub async fn info_dtmf(&self, call: SipCallId, digit: char) -> Result<(), String> {
        flat(self.handle.with(move |ua, now| ua.info_dtmf(now, call, digit)).await)
    }

    pub async fn refer(&self, call: SipCallId, target: String) -> Result<(), String> {
        flat(self.handle.with(move |ua, now| ua.refer(now, call, &target)).await)
    }

    /// 200 OK with `sdp` to the INVITE (or re-INVITE, UPDATE) waiting for an answer.
    pub async fn answer(&self, call: SipCallId, sdp: Bytes) -> Result<(), String> {
        flat(self.handle.with(move |ua, now| ua.answer(now, call, sdp)).await)
    }

    pub async fn reject(&self, call: SipCallId, status: u16, reason: &'static str) -> Result<(), String> {
        flat(self.handle.with(move |ua, now| ua.reject(now, call, status, Some(reason))).await)
    }

    /// `503 Service Unavailable` with `Retry-After` to an incoming INVITE (admission control).
    pub async fn reject_busy(&self, call: SipCallId, retry_after_s: u32) -> Result<(), String> {
        flat(
            self.handle
                .with(move |ua, now| ua.reject_with(now, call, 503, Some("Service Unavailable"), Some(retry_after_s)))
                .await,
        )
    }

    pub async fn provisional(&self, call: SipCallId, status: u16) -> Result<(), String> {
        flat(self.handle.with(move |ua, now| ua.provisional(now, call, status, None)).await)
    }

    /// A final response to an in-dialog request (REFER).
    pub async fn respond(&self, req: ReqId, status: u16, reason: &'static str) -> Result<(), String> {
        flat(self.handle.with(move |ua, now| ua.respond(now, req, status, Some(reason))).await)
    }

    pub async fn register(&self, account: Account) -> Result<RegId, String> {
        flat(self.handle.with(move |ua, now| ua.register(now, account)).await)
    }

    pub async fn unregister(&self, reg: RegId) -> Result<(), String> {
        flat(self.handle.with(move |ua, now| ua.unregister(now, reg)).await)
    }

    /// A MESSAGE; with `imdn_id`, a CPIM one asking for delivery notifications.
    pub async fn message(
        &self,
        account: Account,
        to: String,
        content_type: String,
        body: Bytes,
        imdn_id: Option<String>,
    ) -> Result<MsgId, String> {
        flat(
            self.handle
                .with(move |ua, now| match &imdn_id {
                    Some(mid) => {
                        ua.message_imdn(now, &account, &to, &content_type, body, std::time::SystemTime::now(), mid)
                    }
                    None => ua.message(now, &account, &to, &content_type, body, None),
                })
                .await,
        )
    }

    /// A delivery notification (RFC 5438) for the message `original_id` from `to`.
    pub async fn send_imdn(
        &self,
        account: Account,
        to: String,
        original_id: String,
        original_datetime: Option<String>,
        status: ImdnStatus,
    ) -> Result<MsgId, String> {
        flat(
            self.handle
                .with(move |ua, now| {
                    let at = std::time::SystemTime::now();
                    ua.send_imdn(now, &account, &to, &original_id, original_datetime.as_deref(), status, at)
                })
                .await,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn subscribe(
        &self,
        account: Account,
        target: String,
        event: String,
        expires: u32,
        accept: Option<String>,
        body: Option<(String, Bytes)>,
    ) -> Result<SubId, String> {
        flat(
            self.handle
                .with(move |ua, now| {
                    ua.subscribe_with_body(now, &account, &target, &event, expires, accept.as_deref(), body)
                })
                .await,
        )
    }

    pub async fn unsubscribe(&self, sub: SubId) -> Result<(), String> {
        flat(self.handle.with(move |ua, now| ua.unsubscribe(now, sub)).await)
    }

    pub async fn notify_transfer(&self, call: SipCallId, status: u16, reason: &'static str) -> Result<(), String> {
        flat(self.handle.with(move |ua, now| ua.notify_transfer(now, call, status, reason)).await)
    }
}

/// An INVITE the driver has been given, and where its answer goes.
type InFlight = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = (Result<SipCallId, String>, oneshot::Sender<Result<(SipCallId, CallEvents), String>>),
            > + Send,
    >,
>;

/// The route task: the only writer (and reader) of the routes.
async fn route(
    handle: UaHandle,
    mut events: mpsc::UnboundedReceiver<UaEvent>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    up: mpsc::UnboundedSender<Upward>,
) {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let mut routes: HashMap<SipCallId, mpsc::UnboundedSender<CallEvent>> = HashMap::new();
    // INVITEs whose id the driver has not answered yet, and events held back meanwhile.
    let mut in_flight: FuturesUnordered<InFlight> = FuturesUnordered::new();
    let mut held: HashMap<SipCallId, Vec<CallEvent>> = HashMap::new();
    let mut cmds_open = true;
    loop {
        tokio::select! {
            Some((r, reply)) = in_flight.next(), if !in_flight.is_empty() => {
                let r = r.map(|id| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    let mut over = false;
                    for ev in held.remove(&id).unwrap_or_default() {
                        over |= matches!(ev, CallEvent::Failed(_) | CallEvent::Ended { .. } | CallEvent::Cancelled);
                        let _ = tx.send(ev);
                    }
                    if !over {
                        routes.insert(id, tx);
                    }
                    (id, rx)
                });
                if let Err(Ok((id, _))) = reply.send(r) {
                    // Its task is gone (hung up meanwhile): nobody will end this call.
                    routes.remove(&id);
                    let h = handle.clone();
                    tokio::spawn(async move { drop(h.with(move |ua, now| ua.hangup(now, id)).await) });
                }
                if in_flight.is_empty() && !held.is_empty() {
                    tracing::debug!(calls = held.len(), "SIP events for no call task dropped");
                    held.clear();
                }
            }
            cmd = cmds.recv(), if cmds_open => match cmd {
                Some(Cmd::Invite { account, to, offer, reply }) => {
                    let h = handle.clone();
                    in_flight.push(Box::pin(async move {
                        let r = flat(h.with(move |ua, now| ua.invite(now, &account, &to, offer, &[])).await);
                        (r, reply)
                    }));
                }
                Some(Cmd::Unroute(id)) => {
                    routes.remove(&id);
                }
                None => cmds_open = false,
            },
            ev = events.recv() => match ev {
                None => break,
                Some(UaEvent::Call { call, event }) => {
                    let last = matches!(event, CallEvent::Failed(_) | CallEvent::Ended { .. } | CallEvent::Cancelled);
                    if let Some(tx) = routes.get(&call) {
                        if tx.send(event).is_err() {
                            routes.remove(&call);
                        }
                    } else if !in_flight.is_empty() {
                        held.entry(call).or_default().push(event);
                    } else {
                        tracing::debug!(?call, "SIP call event for no call task");
                    }
                    if last {
                        routes.remove(&call);
                    }
                }
                Some(UaEvent::IncomingCall(c)) => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    routes.insert(c.call, tx);
                    if let Err(mpsc::error::SendError(Upward::IncomingCall(c, _))) = up.send(Upward::IncomingCall(c, rx)) {
                        routes.remove(&c.call);
                    }
                }
                Some(other) => {
                    let _ = up.send(Upward::Other(other));
                }
            },
        }
    }
    tracing::debug!(routes = routes.len(), "SIP route task ended: the driver stopped");
}
