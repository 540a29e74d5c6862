//! `CallTask`: the one owner of a call (issue 10 item 1).
//!
//! A call's state (status, SIP dialog id, media peer, our SDP for the SIP side, who holds it,
//! the DTMF queue, why it is ending) lives in its task and nowhere else. Its inputs arrive on
//! three queues, all handled by this task in turn:
//!
//! - the SIP side's events of its dialog (`sip_side` routes them here from the first response),
//! - the media bridge's events (ICE/DTLS failure of the browser leg),
//! - [`Input`]s: the client's and the REST API's hangup, in-call actions and answer, each
//!   after its hook (hooks run in the sender's task, so a slow backend never stalls a call),
//!   and the session's end.
//!
//! The setup of an outgoing call (the `call` hook, the media leg, the INVITE) runs in the task
//! too, so a hangup during a setup step cuts it short: during the hook the call ends at once,
//! during the INVITE it is CANCELled as soon as the INVITE has left.
//!
//! The task talks to the world through three ports ([`CallParty`], [`CallSip`], [`CallMedia`]):
//! the real ones are the session, the SIP side and the media endpoint (`ports.rs`); the unit
//! tests (`task_tests.rs`) drive it with recording fakes on a paused clock.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use callgate_errmap::{map_failure, FailureEvent, SipOperation};
use callgate_hooks::{HookMethod, Origin};
use callgate_media::core::BridgeAnswer;
use callgate_media::{MediaError, MediaEvent, PeerId};
use callgate_proto::{messages, ServerFrame};
use callgate_sip::ua::{CallEvent, CallId as SipCallId, Failure, ReqId};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use super::call::{
    check_dtmf, client_message, media_info, target_uri, ActError, DtmfQueue, Holds, ESTABLISHED, FAILED,
    FAILED_BY_DTLS_ERROR, FAILED_BY_ERROR, FAILED_BY_ICE_ERROR, FINISH, HOLD, NORMAL_CALL_CLEARING, RING, RING_MEDIA,
    SESSION_PROGRESS, TRYING,
};
use callgate_proto::info::{CALL_NOT_RINGING as NOT_RINGING, SESSION_EXPIRED};
use callgate_proto::status::transfer;

/// Who the call belongs to: a WebSocket session, or the party of a REST-started call.
pub(crate) trait CallParty: Clone + Send + Sync + 'static {
    /// The session id (logs).
    fn id(&self) -> &str;
    /// `obj` with the context fields of every hook body (`nodeId`, `appKey`, `sessionId`).
    fn with_context(&self, obj: Map<String, Value>) -> Map<String, Value>;
    /// An event: the hook to the backend (ordered) and `client_message` to the client.
    fn raise(&self, method: HookMethod, origin: Origin, data: Map<String, Value>, client_message: Option<&'static str>);
    /// A frame to the client (nothing when there is none).
    fn send(&self, frame: &ServerFrame);
    /// `{message, data:[obj]}` to the client, without the fields `method`'s clientExclude names.
    fn send_object(&self, message: &'static str, obj: &Map<String, Value>, method: HookMethod);
    /// An `ErrorEvent` for a SIP failure with no status event of its own.
    fn sip_error_event(&self, f: &FailureEvent, origin: Origin);
    /// A direct invocation hook on `data`; `Err(info)` when the verdict rejects it.
    fn direct<'a>(
        &'a self,
        method: HookMethod,
        origin: Origin,
        data: &'a mut Map<String, Value>,
    ) -> impl Future<Output = Result<(), String>> + Send + 'a;
}

/// The SIP operations a call uses (`crate::sip_side::SipSide` behind `ports.rs`).
pub(crate) trait CallSip: Clone + Send + Sync + 'static {
    /// Where an outgoing call goes (resolved and checked by the real port).
    type Dial: Send + Sync + 'static;
    /// `Err` carries the call's FAILED `info` (nothing was sent).
    fn invite(
        &self,
        dial: &Self::Dial,
        callee: &str,
        offer: Bytes,
    ) -> impl Future<Output = Result<(SipCallId, mpsc::UnboundedReceiver<CallEvent>), String>> + Send;
    /// The domain of a transfer target without one.
    fn domain(dial: &Self::Dial) -> String;
    fn unroute(&self, call: SipCallId);
    fn hangup(&self, call: SipCallId) -> impl Future<Output = Result<(), String>> + Send;
    fn reinvite(&self, call: SipCallId, hold: bool, sdp: Bytes) -> impl Future<Output = Result<(), String>> + Send;
    fn info_dtmf(&self, call: SipCallId, digit: char) -> impl Future<Output = Result<(), String>> + Send;
    fn refer(&self, call: SipCallId, target: String) -> impl Future<Output = Result<(), String>> + Send;
    fn answer(&self, call: SipCallId, sdp: Bytes) -> impl Future<Output = Result<(), String>> + Send;
    fn reject(
        &self,
        call: SipCallId,
        status: u16,
        reason: &'static str,
    ) -> impl Future<Output = Result<(), String>> + Send;
    fn respond(&self, req: ReqId, status: u16, reason: &'static str)
        -> impl Future<Output = Result<(), String>> + Send;
    fn notify_transfer(
        &self,
        call: SipCallId,
        status: u16,
        reason: &'static str,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// The media operations a call uses (`callgate_media::MediaEndpoint`).
pub(crate) trait CallMedia: Clone + Send + Sync + 'static {
    fn bridge(
        &self,
        peer: PeerId,
        offer: String,
        events: mpsc::UnboundedSender<MediaEvent>,
    ) -> impl Future<Output = Result<BridgeAnswer, MediaError>> + Send;
    fn rtp_leg(&self, peer: PeerId) -> impl Future<Output = Result<String, MediaError>> + Send;
    fn remote(&self, peer: PeerId, sdp: String) -> impl Future<Output = Result<(), MediaError>> + Send;
    fn browser_answer(&self, peer: PeerId, sdp: String) -> impl Future<Output = Result<(), MediaError>> + Send;
    fn dtmf(&self, peer: PeerId, keys: String) -> impl Future<Output = Result<(), MediaError>> + Send;
    fn close(&self, peer: PeerId);
}

/// What the rest of the server tells a call.
#[derive(Debug)]
pub(crate) enum Input {
    /// Hang up (client `hangup` after its hook, REST `/call/terminate`, the session's end, the
    /// server's shutdown). `refused`: the backend refused the client's hangup, which still ends
    /// the call (the SDK has closed its side), reported FAILED with this reason.
    Hangup { refused: Option<String> },
    /// The owner's session is gone: hang up; a call still in its `call` hook ends without a
    /// word (the backend has had the session's DISCONNECTED and never saw the call start).
    SessionGone,
    /// `hold`/`unhold`/`sendDtmf`/`transfer`, after its hook.
    Act { method: HookMethod, data: Map<String, Value>, reply: oneshot::Sender<Result<(), ActError>> },
    /// The browser's answer to an incoming call, after the `answer` hook.
    Answer { sdp: String, reply: oneshot::Sender<Result<(), String>> },
    /// End now, FAILED with `info`, without a word to the SIP peer (server shutdown once the
    /// SIP side has stopped: a call whose peer never answered our BYE).
    Abort { info: &'static str },
}

/// What a task needs to know of the node's configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallLimits {
    pub max_dtmf: usize,
    pub ring_timeout: Duration,
}

/// How an outgoing call gets its media leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leg {
    /// A browser's call: its WebRTC offer is the `sdp` of the call object after the hook; the
    /// answer goes back in `setRemoteSDP`.
    WebRtc,
    /// A REST-started call: an RTP-only leg, no browser.
    Rtp,
}

/// The call's view for the REST API (`/call/find`): the call object as it is now. Written only
/// by the task.
pub(crate) type View = Arc<parking_lot::Mutex<Map<String, Value>>>;

/// The call's entry on the node's index of calls, kept by the task: told the SIP id once it is
/// known (in-dialog MESSAGEs find the call by it), and when the call is over, before its last
/// status is raised.
pub(crate) trait Listing: Send + Sync + 'static {
    fn sip_known(&mut self, sip: SipCallId);
    fn unlist(&mut self);
}

/// One call, owned by one task.
pub(crate) struct CallTask<P: CallParty, S: CallSip, M: CallMedia> {
    pub party: P,
    pub sip: S,
    pub media: M,
    pub limits: CallLimits,
    id: Arc<str>,
    obj: Map<String, Value>,
    view: View,
    listing: Box<dyn Listing>,
    listed: bool,
    inbox: mpsc::UnboundedReceiver<Input>,
    sip_id: Option<SipCallId>,
    sip_rx: Option<mpsc::UnboundedReceiver<CallEvent>>,
    media_rx: Option<mpsc::UnboundedReceiver<MediaEvent>>,
    peer: PeerId,
    /// Our SDP for the SIP side (the base of hold/unhold re-INVITEs, the answer to re-offers).
    sip_sdp: Bytes,
    /// The call ends FAILED with this info when its SIP side ends (a refused hangup, a media
    /// failure, an expired session timer).
    end_info: Option<String>,
    established: bool,
    /// An incoming call not answered yet, and when it stops ringing.
    ringing_until: Option<tokio::time::Instant>,
    dtmf: DtmfQueue,
    holds: Holds,
    /// The domain for transfer targets without one.
    domain: String,
}

enum Flow {
    Go,
    Done,
}

/// `Some(x)` from an optional queue; never resolves when there is none.
async fn recv_opt<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl<P: CallParty, S: CallSip, M: CallMedia> CallTask<P, S, M> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        party: P,
        sip: S,
        media: M,
        limits: CallLimits,
        id: Arc<str>,
        obj: Map<String, Value>,
        view: View,
        listing: Box<dyn Listing>,
        inbox: mpsc::UnboundedReceiver<Input>,
        peer: PeerId,
    ) -> Self {
        CallTask {
            party,
            sip,
            media,
            limits,
            id,
            obj,
            view,
            listing,
            listed: true,
            inbox,
            sip_id: None,
            sip_rx: None,
            media_rx: None,
            peer,
            sip_sdp: Bytes::new(),
            end_info: None,
            established: false,
            ringing_until: None,
            dtmf: DtmfQueue::default(),
            holds: Holds::default(),
            domain: String::new(),
        }
    }

    fn set_status(&mut self, status: &str) {
        self.obj.insert("status".into(), status.into());
        self.view.lock().insert("status".into(), status.into());
    }

    /// `CallStatusEvent` to the backend and the status message to the client.
    fn raise(&self, status: &str, info: &str, failure: Option<&FailureEvent>) {
        let mut ev = self.obj.clone();
        ev.insert("status".into(), status.into());
        ev.insert("info".into(), info.into());
        if let Some(f) = failure {
            crate::party::insert_sip_failure(&mut ev, f);
        }
        tracing::info!(session = self.party.id(), call = &*self.id, status, info, "call status");
        metrics::counter!("callgate_call_statuses_total", "status" => status.to_string()).increment(1);
        self.party.raise(HookMethod::CallStatusEvent, Origin::Client, ev, Some(client_message(status)));
    }

    fn status(&mut self, status: &str) {
        self.set_status(status);
        self.raise(status, "", None);
    }

    /// The call is over: its media closed, its last status raised, then off the index (so
    /// once the index is empty, every call's last event has been raised).
    fn end(&mut self, status: &str, info: &str, failure: Option<&FailureEvent>) -> Flow {
        if let Some(sip) = self.sip_id {
            self.sip.unroute(sip);
        }
        self.media.close(self.peer);
        self.raise(status, info, failure);
        if std::mem::take(&mut self.listed) {
            self.listing.unlist();
        }
        Flow::Done
    }

    /// Ends the SIP side (BYE/CANCEL) when there is one; its `Ended` reports the end. Without
    /// a SIP side, the call ends here.
    async fn hang_up(&mut self, info: &str) -> Flow {
        let status = if self.end_info.is_some() { FAILED } else { FINISH };
        match (self.sip_id, self.sip_rx.is_some()) {
            (Some(sip), true) => {
                let sent = self.sip.hangup(sip).await;
                // An unanswered incoming call gets 486 Busy Here, which ends it with no event.
                if self.ringing_until.is_some() || sent.is_err() {
                    return self.end(status, info, None);
                }
                Flow::Go
            }
            _ => self.end(status, info, None),
        }
    }

    /// A client's or the REST API's outgoing call, already on the index (status PENDING):
    /// the `call` hook on `data` (the request as the client or the REST API sent it), `TRYING`,
    /// the media leg, the INVITE, then the call's life. `dial` is `None` when the session has no
    /// SIP account to call from.
    pub async fn run_outgoing(mut self, origin: Origin, leg: Leg, mut data: Map<String, Value>, dial: Option<S::Dial>) {
        // The hook: a hangup meanwhile ends the call at once (cut short, no INVITE).
        let hooked = {
            let hook = self.party.direct(HookMethod::Call, origin, &mut data);
            tokio::pin!(hook);
            loop {
                tokio::select! {
                    r = &mut hook => break Some(r),
                    input = self.inbox.recv() => match input {
                        Some(Input::Hangup { refused }) => {
                            self.end_info = refused;
                            break None;
                        }
                        Some(Input::Abort { info }) => {
                            self.end_info = Some(info.to_string());
                            break None;
                        }
                        Some(Input::SessionGone) => {
                            tracing::info!(session = self.party.id(), call = &*self.id, "call dropped: the session closed during the call hook");
                            self.media.close(self.peer);
                            self.listed = false;
                            self.listing.unlist();
                            return;
                        }
                        Some(other) => refuse_early(other),
                        None => break None,
                    },
                }
            }
        };
        let Some(hooked) = hooked else {
            tracing::info!(session = self.party.id(), call = &*self.id, "call hung up during its hook");
            let info = self.end_info.clone().unwrap_or_else(|| NORMAL_CALL_CLEARING.to_string());
            let status = if self.end_info.is_some() { FAILED } else { FINISH };
            self.end(status, &info, None);
            return;
        };
        // The call id, the direction and the context are ours, whatever the backend answered.
        for k in ["callId", "incoming", "nodeId", "appKey", "sessionId"] {
            match self.obj.get(k) {
                Some(v) => data.insert(k.into(), v.clone()),
                None => data.remove(k),
            };
        }
        let offer = match data.remove("sdp") {
            Some(Value::String(s)) if !s.is_empty() => s,
            _ => String::new(),
        };
        let callee = match data.get("callee") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            _ => String::new(),
        };
        if leg == Leg::Rtp {
            data.insert("hasAudio".into(), true.into());
            data.insert("hasVideo".into(), false.into());
            if callee.is_empty() {
                if let Some(caller) = self.obj.get("caller").cloned() {
                    data.insert("callee".into(), caller);
                }
            }
        }
        data.insert("status".into(), callgate_proto::status::call::PENDING.into());
        self.obj = data;
        *self.view.lock() = self.obj.clone();
        if let Err(why) = hooked {
            if origin == Origin::RestApi {
                // The decision table never aborts a RestApi-origin hook; should it ever, the
                // call is not placed against the verdict.
                tracing::error!(call = &*self.id, reason = %why, "call hook aborted a REST call");
            }
            self.end(FAILED, &why, None);
            return;
        }
        if leg == Leg::WebRtc && offer.is_empty() {
            self.end(FAILED, super::call::NO_SDP, None);
            return;
        }
        let Some(dial) = dial else {
            self.end(FAILED, super::call::CALL_WITHOUT_SIP_ACCOUNT, None);
            return;
        };
        if callee.is_empty() && leg == Leg::Rtp {
            self.end(FAILED, callgate_proto::info::CALL_HOOK_REMOVED_CALLEE, None);
            return;
        }
        self.domain = S::domain(&dial);
        // TRYING at once: it is what lets a later `hangup` reach the client's call (spec §6.1).
        self.status(TRYING);
        let offer = match leg {
            Leg::WebRtc => {
                let (tx, rx) = mpsc::unbounded_channel();
                match self.media.bridge(self.peer, offer, tx).await {
                    Ok(answer) => {
                        self.media_rx = Some(rx);
                        // Whether the call carries video: the browser's, if callgate can pass it
                        // through (VP8, H.264); the SIP side may still refuse it in its answer.
                        self.obj.insert("hasVideo".into(), answer.video.is_some().into());
                        *self.view.lock() = self.obj.clone();
                        self.party.send(&ServerFrame::new(
                            messages::SET_REMOTE_SDP,
                            vec![Value::from(&*self.id), Value::from(answer.webrtc_answer), Value::Bool(true)],
                        ));
                        answer.sip_sdp
                    }
                    Err(e) => {
                        tracing::info!(session = self.party.id(), call = &*self.id, error = %e, "call bridge refused");
                        self.end(FAILED, media_info(&e), None);
                        return;
                    }
                }
            }
            Leg::Rtp => match self.media.rtp_leg(self.peer).await {
                Ok(sdp) => sdp,
                Err(e) => {
                    tracing::info!(call = &*self.id, error = %e, "RTP leg refused");
                    self.end(FAILED, media_info(&e), None);
                    return;
                }
            },
        };
        self.sip_sdp = Bytes::from(offer);
        // The INVITE (with the next hop's resolution): a hangup meanwhile is kept and carried
        // out (CANCEL) as soon as the INVITE has left.
        // An abort (or the index letting go) ends the call once the INVITE returns, with no
        // further word to the peer.
        let mut pending: Option<Option<String>> = None;
        let mut aborted: Option<&'static str> = None;
        let mut inbox_open = true;
        let invited = {
            let invite = self.sip.invite(&dial, &callee, self.sip_sdp.clone());
            tokio::pin!(invite);
            loop {
                tokio::select! {
                    r = &mut invite => break r,
                    input = self.inbox.recv(), if inbox_open => match input {
                        Some(Input::Hangup { refused }) => pending = Some(refused),
                        Some(Input::Abort { info }) => aborted = Some(info),
                        Some(Input::SessionGone) => pending = Some(None),
                        Some(other) => refuse_early(other),
                        None => {
                            inbox_open = false;
                            aborted = Some(callgate_proto::info::SERVER_SHUTDOWN);
                        }
                    },
                    ev = recv_opt(&mut self.media_rx) => match ev {
                        Some(MediaEvent::Failed(reason)) => {
                            pending = Some(Some(media_failure_info(&reason).to_string()));
                        }
                        Some(MediaEvent::Connected) => {}
                        // The endpoint drops a peer's sender after its last event.
                        None => self.media_rx = None,
                    },
                }
            }
        };
        match invited {
            Ok((sip, rx)) => {
                self.sip_id = Some(sip);
                self.sip_rx = Some(rx);
                self.listing.sip_known(sip);
            }
            Err(info) => {
                self.end(FAILED, &info, None);
                return;
            }
        }
        if let Some(info) = aborted {
            self.end(FAILED, info, None);
            return;
        }
        if let Some(refused) = pending {
            self.end_info = refused.clone();
            let info = refused.unwrap_or_else(|| NORMAL_CALL_CLEARING.to_string());
            if let Flow::Done = self.hang_up(&info).await {
                return;
            }
        }
        self.life().await
    }

    /// An incoming call the client was offered (it rings): its life from there.
    pub async fn run_ringing(
        mut self,
        sip: SipCallId,
        sip_rx: mpsc::UnboundedReceiver<CallEvent>,
        media_rx: mpsc::UnboundedReceiver<MediaEvent>,
        sip_answer: Bytes,
    ) {
        self.sip_id = Some(sip);
        self.sip_rx = Some(sip_rx);
        self.media_rx = Some(media_rx);
        self.listing.sip_known(sip);
        self.sip_sdp = sip_answer;
        self.ringing_until = Some(tokio::time::Instant::now() + self.limits.ring_timeout);
        self.status(RING);
        self.life().await
    }

    /// The call's life: every input in turn until it is over.
    async fn life(mut self) {
        loop {
            let ring = self.ringing_until;
            let flow = tokio::select! {
                ev = recv_opt(&mut self.sip_rx) => match ev {
                    Some(ev) => self.on_sip(ev).await,
                    None => {
                        // The SIP side stopped (server shutdown): nothing more will come from it.
                        self.sip_rx = None;
                        Flow::Go
                    }
                },
                ev = recv_opt(&mut self.media_rx) => match ev {
                    Some(MediaEvent::Failed(reason)) => {
                        let info = media_failure_info(&reason);
                        tracing::info!(call = &*self.id, %reason, "call media failed");
                        self.end_info = Some(info.to_string());
                        self.media_rx = None;
                        self.hang_up(info).await
                    }
                    Some(MediaEvent::Connected) => Flow::Go,
                    None => {
                        self.media_rx = None;
                        Flow::Go
                    }
                },
                input = self.inbox.recv() => match input {
                    Some(input) => self.on_input(input).await,
                    // The index let go of the call (server shutdown after the SIP side stopped).
                    None => self.end(FAILED, callgate_proto::info::SERVER_SHUTDOWN, None),
                },
                () = async { tokio::time::sleep_until(ring.expect("guarded")).await }, if ring.is_some() => {
                    self.ring_timeout().await
                }
            };
            if let Flow::Done = flow {
                return;
            }
        }
    }

    async fn ring_timeout(&mut self) -> Flow {
        let Some(sip) = self.sip_id else { return Flow::Go };
        self.ringing_until = None;
        let after = self.limits.ring_timeout;
        tracing::info!(session = self.party.id(), call = &*self.id, ?after, "incoming call not answered: 480");
        let _ = self.sip.reject(sip, 480, "Temporarily Unavailable").await;
        let info = callgate_proto::info::not_answered_within(after);
        self.end(FINISH, &info, None)
    }

    async fn on_input(&mut self, input: Input) -> Flow {
        match input {
            Input::SessionGone => self.hang_up(NORMAL_CALL_CLEARING).await,
            Input::Hangup { refused } => {
                let info = refused.clone().unwrap_or_else(|| NORMAL_CALL_CLEARING.to_string());
                if refused.is_some() {
                    self.end_info = refused;
                }
                self.hang_up(&info).await
            }
            Input::Act { method, data, reply } => {
                let r = self.act(method, data).await;
                let _ = reply.send(r);
                Flow::Go
            }
            Input::Answer { sdp, reply } => self.answer(sdp, reply).await,
            Input::Abort { info } => self.end(FAILED, info, None),
        }
    }

    /// The browser's answer: to the media leg, then `200 OK` to the caller (its ACK makes the
    /// call ESTABLISHED).
    async fn answer(&mut self, sdp: String, reply: oneshot::Sender<Result<(), String>>) -> Flow {
        let (Some(sip), Some(_)) = (self.sip_id, self.ringing_until) else {
            let _ = reply.send(Err(NOT_RINGING.to_string()));
            return Flow::Go;
        };
        self.ringing_until = None;
        if let Err(e) = self.media.browser_answer(self.peer, sdp).await {
            tracing::info!(session = self.party.id(), call = &*self.id, error = %e, "the browser's answer was refused");
            let _ = self.sip.reject(sip, 488, "Not Acceptable Here").await;
            let _ = reply.send(Ok(()));
            return self.end(FAILED, media_info(&e), None);
        }
        self.set_status(callgate_proto::status::call::PENDING);
        match self.sip.answer(sip, self.sip_sdp.clone()).await {
            Ok(()) => tracing::info!(session = self.party.id(), call = &*self.id, "incoming call answered (200 OK)"),
            // The caller cancelled meanwhile: its `Cancelled` event ends the call.
            Err(e) => tracing::info!(session = self.party.id(), call = &*self.id, error = %e, "200 OK not sent"),
        }
        let _ = reply.send(Ok(()));
        Flow::Go
    }

    /// Gives the bridge the SIP side's SDP.
    async fn remote_sdp(&self, sdp: &Option<Bytes>) -> Result<(), MediaError> {
        match sdp {
            Some(sdp) => self.media.remote(self.peer, String::from_utf8_lossy(sdp).into_owned()).await,
            None => Ok(()),
        }
    }

    async fn on_sip(&mut self, event: CallEvent) -> Flow {
        match event {
            CallEvent::Trying => Flow::Go,
            CallEvent::Ringing { sdp } => {
                self.bridge_remote(&sdp);
                self.status(if sdp.is_some() { RING_MEDIA } else { RING });
                Flow::Go
            }
            CallEvent::SessionProgress { sdp } => {
                self.bridge_remote(&sdp);
                self.status(SESSION_PROGRESS);
                Flow::Go
            }
            CallEvent::Established { sdp } => {
                self.bridge_remote(&sdp);
                self.established = true;
                self.ringing_until = None;
                self.obj.insert("sipStatus".into(), 200.into());
                self.view.lock().insert("sipStatus".into(), 200.into());
                self.status(ESTABLISHED);
                Flow::Go
            }
            CallEvent::Failed(f) => {
                let fe = map_failure(SipOperation::Invite, &f);
                self.sip_rx = None;
                self.end(FAILED, &fe.info.clone(), Some(&fe))
            }
            CallEvent::Ended { .. } | CallEvent::Cancelled => {
                self.sip_rx = None;
                match self.end_info.clone() {
                    Some(why) => self.end(FAILED, &why, None),
                    None => self.end(FINISH, NORMAL_CALL_CLEARING, None),
                }
            }
            CallEvent::HoldResult { hold, result } => {
                match result {
                    Ok(sdp) => {
                        self.bridge_remote(&sdp);
                        self.holds.local = hold;
                        self.status(if hold { HOLD } else { ESTABLISHED });
                    }
                    Err(f) => {
                        let fe = map_failure(SipOperation::ReInvite, &f);
                        let mut sip = Map::new();
                        crate::party::insert_sip_failure(&mut sip, &fe);
                        self.party.send(&ServerFrame::fail_with("CallStatusEvent", &fe.info, Some(&self.id), sip));
                        self.party.sip_error_event(&fe, Origin::Client);
                    }
                }
                Flow::Go
            }
            CallEvent::TransferAccepted => {
                self.transfer_status(transfer::ACCEPTED, "", None, None);
                Flow::Go
            }
            CallEvent::TransferProgress { status, reason, raw, .. } => {
                if status >= 300 {
                    let fe = map_failure(SipOperation::Refer, &Failure::Status { status, reason, raw });
                    self.transfer_status(transfer::FAILED, &fe.info, fe.sip_status, Some(&fe));
                } else {
                    let st = if status >= 200 { transfer::COMPLETED } else { transfer::TRYING };
                    self.transfer_status(st, &callgate_errmap::sip_info(status, &reason), Some(status), None);
                }
                Flow::Go
            }
            CallEvent::TransferFailed(f) => {
                let fe = map_failure(SipOperation::Refer, &f);
                self.transfer_status(transfer::FAILED, &fe.info, fe.sip_status, Some(&fe));
                Flow::Go
            }
            CallEvent::DtmfResult(r) => {
                if let Err(f) = &r {
                    self.party.sip_error_event(&map_failure(SipOperation::InfoDtmf, f), Origin::Client);
                }
                self.next_info_dtmf(r.is_ok()).await;
                Flow::Go
            }
            CallEvent::IncomingRefer { req, target, referred_by } => {
                if let Some(sip) = self.sip_id {
                    let (party, port, obj) = (self.party.clone(), self.sip.clone(), self.obj.clone());
                    // Its hook must not hold the call's other inputs up.
                    tokio::spawn(super::transfer_in::incoming_refer(party, port, obj, sip, req, target, referred_by));
                }
                Flow::Go
            }
            CallEvent::IncomingReInvite { sdp, hold, .. } => {
                self.peer_offer(sdp, hold).await;
                Flow::Go
            }
            CallEvent::PeerAnswer { sdp, hold, .. } => {
                match self.remote_sdp(&Some(sdp)).await {
                    Ok(()) => self.report_peer_hold(hold),
                    Err(e) => tracing::info!(call = &*self.id, error = %e, "peer's answer in ACK refused"),
                }
                Flow::Go
            }
            CallEvent::Dtmf { digit, duration_ms } => {
                self.peer_dtmf(digit, duration_ms);
                Flow::Go
            }
            CallEvent::SessionExpired => {
                // The user agent sends BYE; its `Ended` reports FAILED.
                tracing::info!(session = self.party.id(), call = &*self.id, "session timer expired: BYE");
                self.end_info = Some(SESSION_EXPIRED.to_string());
                Flow::Go
            }
        }
    }

    /// Gives the bridge the SIP side's SDP of a response without waiting for the media task:
    /// under load its queue is long, and the call's next event (its end, which frees its RTP
    /// port) must not wait behind it. Only logged when refused: the response is already taken.
    fn bridge_remote(&self, sdp: &Option<Bytes>) {
        let Some(sdp) = sdp else { return };
        let (media, peer, id) = (self.media.clone(), self.peer, self.id.clone());
        let sdp = String::from_utf8_lossy(sdp).into_owned();
        tokio::spawn(async move {
            if let Err(e) = media.remote(peer, sdp).await {
                tracing::info!(call = &*id, error = %e, "SIP SDP refused by the bridge");
            }
        });
    }

    /// The peer's new offer (re-INVITE or UPDATE): the bridge takes its address and checks its
    /// codec, then the user agent answers 200 with our SDP (its direction mirrored by the user
    /// agent); a refused SDP gets `488` and the call goes on as it was.
    async fn peer_offer(&mut self, sdp: Option<Bytes>, hold: bool) {
        let Some(sip) = self.sip_id else { return };
        if let Err(e) = self.remote_sdp(&sdp).await {
            tracing::info!(call = &*self.id, error = %e, "peer's re-offer refused: 488");
            let _ = self.sip.reject(sip, 488, "Not Acceptable Here").await;
            return;
        }
        match self.sip.answer(sip, self.sip_sdp.clone()).await {
            Ok(()) => self.report_peer_hold(hold),
            Err(e) => tracing::info!(call = &*self.id, error = %e, "re-offer not answered"),
        }
    }

    /// The peer put the call on hold (`HOLD`) or took it off (`ESTABLISHED`), reported only
    /// when that changes whether the call is held at all.
    fn report_peer_hold(&mut self, hold: bool) {
        if self.holds.peer == hold {
            return;
        }
        let held_before = self.holds.local || self.holds.peer;
        self.holds.peer = hold;
        if held_before == (self.holds.local || hold) {
            return;
        }
        let status = if hold { HOLD } else { ESTABLISHED };
        tracing::info!(session = self.party.id(), call = &*self.id, status, "SIP peer hold state");
        self.status(status);
    }

    /// A DTMF digit from the peer (SIP INFO): `OnDataEvent` to client and backend with
    /// `payload: {type:"DTMF", callId, dtmf, duration, method:"INFO"}` (docs/hooks.md §12).
    fn peer_dtmf(&self, digit: char, duration_ms: u32) {
        let mut payload = Map::new();
        payload.insert("type".into(), "DTMF".into());
        payload.insert("callId".into(), Value::from(&*self.id));
        payload.insert("dtmf".into(), digit.to_string().into());
        payload.insert("duration".into(), duration_ms.into());
        payload.insert("method".into(), "INFO".into());
        let mut ev = self.party.with_context(Map::new());
        ev.insert("operationId".into(), uuid::Uuid::new_v4().to_string().into());
        ev.insert("payload".into(), Value::Object(payload));
        tracing::info!(session = self.party.id(), call = &*self.id, %digit, "DTMF from the SIP peer");
        self.party.raise(HookMethod::OnDataEvent, Origin::Sip, ev, Some(messages::ON_DATA_EVENT));
    }

    /// `notifyTransferEvent` to the client and `TransferStatusEvent` to the backend.
    fn transfer_status(&self, status: &str, info: &str, sip_status: Option<u16>, failure: Option<&FailureEvent>) {
        let mut ev = self.obj.clone();
        if let Some(f) = failure {
            crate::party::insert_sip_failure(&mut ev, f);
        }
        ev.insert("status".into(), status.into());
        ev.insert("info".into(), info.into());
        if let Some(code) = sip_status {
            ev.insert("sipStatus".into(), code.into());
        }
        tracing::info!(session = self.party.id(), call = &*self.id, status, info, "transfer status");
        self.party.raise(HookMethod::TransferStatusEvent, Origin::Client, ev, Some(messages::NOTIFY_TRANSFER_EVENT));
    }

    /// One in-call action, its hook already run.
    async fn act(&mut self, method: HookMethod, data: Map<String, Value>) -> Result<(), ActError> {
        let sip = match (self.sip_id, self.established) {
            (Some(sip), true) => sip,
            _ => return Err(ActError::NotEstablished),
        };
        match method {
            HookMethod::Hold | HookMethod::Unhold => {
                self.sip.reinvite(sip, method == HookMethod::Hold, self.sip_sdp.clone()).await.map_err(ActError::Failed)
            }
            HookMethod::SendDtmf => {
                let digits = data.get("dtmf").and_then(Value::as_str).unwrap_or("").to_string();
                let kind = data.get("type").and_then(Value::as_str).unwrap_or("RFC2833");
                check_dtmf(&digits, self.limits.max_dtmf)?;
                if kind == "INFO" || kind == "INFO_RELAY" {
                    let max = self.limits.max_dtmf;
                    let q = &mut self.dtmf;
                    if q.waiting.len() + digits.chars().count() > max {
                        return Err(ActError::BadRequest(callgate_proto::info::too_many_dtmf_queued(
                            q.waiting.len(),
                            max,
                        )));
                    }
                    q.waiting.extend(digits.chars());
                    if q.in_flight {
                        return Ok(()); // the running sequence sends them (`next_info_dtmf`)
                    }
                    q.in_flight = true;
                    match q.waiting.pop_front() {
                        Some(d) => self.send_info_dtmf(sip, d).await.map_err(ActError::Failed),
                        None => Ok(()),
                    }
                } else {
                    self.media.dtmf(self.peer, digits).await.map_err(|e| ActError::Failed(e.to_string()))
                }
            }
            HookMethod::Transfer => {
                let target = data.get("target").and_then(Value::as_str).unwrap_or("").to_string();
                if target.is_empty() {
                    return Err(ActError::BadRequest(callgate_proto::info::NO_TRANSFER_TARGET.to_string()));
                }
                self.sip.refer(sip, target_uri(&target, &self.domain)).await.map_err(ActError::Failed)
            }
            _ => Ok(()),
        }
    }

    /// Sends one INFO digit; a failure to start it drops the rest of the queue.
    async fn send_info_dtmf(&mut self, sip: SipCallId, digit: char) -> Result<(), String> {
        let r = self.sip.info_dtmf(sip, digit).await;
        if r.is_err() {
            self.dtmf = DtmfQueue::default();
        }
        r
    }

    /// The outcome of the call's INFO digit arrived: the next one goes, or the sequence is
    /// over (a failure drops the digits still waiting; the owner got an `ErrorEvent`).
    async fn next_info_dtmf(&mut self, ok: bool) {
        let next = if ok {
            let next = self.dtmf.waiting.pop_front();
            self.dtmf.in_flight = next.is_some();
            next
        } else {
            self.dtmf = DtmfQueue::default();
            None
        };
        let (Some(d), Some(sip)) = (next, self.sip_id) else { return };
        if let Err(why) = self.send_info_dtmf(sip, d).await {
            let fe = callgate_errmap::map_local_failure(
                SipOperation::InfoDtmf,
                &callgate_errmap::LocalFailure::NotSent(why),
            );
            self.party.sip_error_event(&fe, Origin::Client);
        }
    }
}

/// An input that cannot be carried out before the call is placed.
fn refuse_early(input: Input) {
    match input {
        Input::Act { reply, .. } => drop(reply.send(Err(ActError::NotEstablished))),
        Input::Answer { reply, .. } => drop(reply.send(Err(NOT_RINGING.to_string()))),
        Input::Hangup { .. } | Input::Abort { .. } | Input::SessionGone => {}
    }
}

fn media_failure_info(reason: &callgate_media::FailReason) -> &'static str {
    use callgate_media::FailReason;
    match reason {
        FailReason::IceTimeout | FailReason::IceKeepAlive => FAILED_BY_ICE_ERROR,
        FailReason::DtlsTimeout | FailReason::Dtls(_) => FAILED_BY_DTLS_ERROR,
        FailReason::Error(_) => FAILED_BY_ERROR,
    }
}
