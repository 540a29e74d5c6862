//! Unit tests of `CallTask` (issue 10 item 6): written by a helper.
//!
//! Each test drives one call task through its ports with recording fakes ([`FakeParty`],
//! [`FakeSip`], [`FakeMedia`], [`FakeListing`]) on a paused clock: inputs go to its inbox, SIP
//! and media events are injected through the senders the fakes kept, and every wait is
//! bounded (the clock only moves when every task is idle, so `settle` lets the call task do
//! all it can before the test looks).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use callgate_errmap::{EventKind, FailureEvent};
use callgate_hooks::{HookMethod, Origin};
use callgate_media::bridge::G711;
use callgate_media::core::BridgeAnswer;
use callgate_media::{FailReason, MediaError, MediaEvent, PeerId};
use callgate_proto::info::{
    CALL_HOOK_REMOVED_CALLEE, CALL_NOT_RINGING, CALL_WITHOUT_SIP_ACCOUNT, FAILED_BY_ICE_ERROR, NORMAL_CALL_CLEARING,
    NO_SDP, SERVER_SHUTDOWN, SESSION_EXPIRED, TRANSCODING_REQUIRED,
};
use callgate_proto::{messages, ServerFrame};
use callgate_sip::ua::{CallEvent, CallId as SipCallId, Direction, Failure, ReqId};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::call::{ActError, ESTABLISHED, FAILED, FINISH, HOLD, RING, RING_MEDIA, SESSION_PROGRESS, TRYING};
use super::task::{CallLimits, CallMedia, CallParty, CallSip, CallTask, Input, Leg, Listing, View};

const CALL_ID: &str = "call-1";
const PEER: PeerId = PeerId(42);
/// The SIP id of the first INVITE the fake sends.
const SIP1: SipCallId = SipCallId(1);
/// The SIP id of the incoming call.
const SIP_IN: SipCallId = SipCallId(9);
const LIMITS: CallLimits = CallLimits { max_dtmf: 5, ring_timeout: Duration::from_secs(30) };
/// The bound of every wait: far beyond anything a test does, so a hang fails fast.
const BOUND: Duration = Duration::from_secs(600);

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// Lets the call task (and the fakes' timers due now) run until all are idle.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

// ---------------------------------------------------------------------------------------------
// FakeParty

/// How the fake backend answers a direct invocation hook.
#[derive(Clone)]
enum Hook {
    Ok,
    Err(String),
    /// OVERWRITE: these fields replace the request's (`Value::Null` removes one).
    Set(Map<String, Value>),
    /// The answer after this long (on the paused clock).
    After(Duration, Box<Hook>),
}

#[derive(Debug, Clone)]
struct Raised {
    method: HookMethod,
    origin: Origin,
    data: Map<String, Value>,
    client: Option<&'static str>,
}

#[derive(Default)]
struct PartyLog {
    raised: Vec<Raised>,
    frames: Vec<ServerFrame>,
    objects: Vec<(&'static str, Map<String, Value>, HookMethod)>,
    errors: Vec<(FailureEvent, Origin)>,
    hooks: Vec<(HookMethod, Origin)>,
}

/// The owner of the call: records what reaches the backend and the client; its hooks answer
/// from a script.
#[derive(Clone, Default)]
struct FakeParty {
    log: Arc<Mutex<PartyLog>>,
    script: Arc<Mutex<HashMap<HookMethod, Hook>>>,
}

impl FakeParty {
    fn script(&self, method: HookMethod, hook: Hook) {
        self.script.lock().insert(method, hook);
    }

    fn raised(&self) -> Vec<Raised> {
        self.log.lock().raised.clone()
    }

    /// The `CallStatusEvent`s raised: (status, info).
    fn statuses(&self) -> Vec<(String, String)> {
        self.raised()
            .iter()
            .filter(|r| r.method == HookMethod::CallStatusEvent)
            .map(|r| (text(&r.data, "status"), text(&r.data, "info")))
            .collect()
    }

    /// The last `CallStatusEvent` raised.
    fn last_status(&self) -> Map<String, Value> {
        let raised = self.raised();
        let last = raised.iter().rev().find(|r| r.method == HookMethod::CallStatusEvent).expect("a status");
        last.data.clone()
    }

    fn frames(&self) -> Vec<ServerFrame> {
        self.log.lock().frames.clone()
    }

    fn errors(&self) -> Vec<(FailureEvent, Origin)> {
        self.log.lock().errors.clone()
    }
}

fn text(m: &Map<String, Value>, k: &str) -> String {
    m.get(k).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn st(status: &str, info: &str) -> (String, String) {
    (status.to_string(), info.to_string())
}

fn apply(
    hook: Hook,
    data: &mut Map<String, Value>,
) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
    Box::pin(async move {
        match hook {
            Hook::Ok => Ok(()),
            Hook::Err(why) => Err(why),
            Hook::Set(fields) => {
                for (k, v) in fields {
                    if v.is_null() {
                        data.remove(&k);
                    } else {
                        data.insert(k, v);
                    }
                }
                Ok(())
            }
            Hook::After(d, then) => {
                tokio::time::sleep(d).await;
                apply(*then, data).await
            }
        }
    })
}

impl CallParty for FakeParty {
    fn id(&self) -> &str {
        "session-1"
    }

    fn with_context(&self, mut obj: Map<String, Value>) -> Map<String, Value> {
        obj.insert("nodeId".into(), "node-1".into());
        obj.insert("appKey".into(), "defaultApp".into());
        obj.insert("sessionId".into(), "session-1".into());
        obj
    }

    fn raise(&self, method: HookMethod, origin: Origin, data: Map<String, Value>, client: Option<&'static str>) {
        self.log.lock().raised.push(Raised { method, origin, data, client });
    }

    fn send(&self, frame: &ServerFrame) {
        self.log.lock().frames.push(frame.clone());
    }

    fn send_object(&self, message: &'static str, obj: &Map<String, Value>, method: HookMethod) {
        self.log.lock().objects.push((message, obj.clone(), method));
    }

    fn sip_error_event(&self, f: &FailureEvent, origin: Origin) {
        self.log.lock().errors.push((f.clone(), origin));
    }

    fn direct<'a>(
        &'a self,
        method: HookMethod,
        origin: Origin,
        data: &'a mut Map<String, Value>,
    ) -> impl Future<Output = Result<(), String>> + Send + 'a {
        self.log.lock().hooks.push((method, origin));
        let hook = self.script.lock().get(&method).cloned().unwrap_or(Hook::Ok);
        apply(hook, data)
    }
}

// ---------------------------------------------------------------------------------------------
// FakeSip

/// A command the call gave the SIP side.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sip {
    Invite { dial: String, callee: String, offer: String },
    Hangup(SipCallId),
    Reinvite { call: SipCallId, hold: bool, sdp: String },
    InfoDtmf(SipCallId, char),
    Refer(SipCallId, String),
    Answer(SipCallId, String),
    Reject(SipCallId, u16),
    Respond(ReqId, u16),
    NotifyTransfer(SipCallId, u16),
    Unroute(SipCallId),
}

#[derive(Default)]
struct SipState {
    cmds: Mutex<Vec<Sip>>,
    /// Per command name (`"invite"`, `"hangup"`, ...): the error it returns.
    errors: Mutex<HashMap<&'static str, String>>,
    invite_delay: Mutex<Option<Duration>>,
    next_id: AtomicU64,
    /// The senders of each call's events, in the order the calls were made.
    events: Mutex<Vec<mpsc::UnboundedSender<CallEvent>>>,
}

#[derive(Clone, Default)]
struct FakeSip(Arc<SipState>);

impl FakeSip {
    fn cmds(&self) -> Vec<Sip> {
        self.0.cmds.lock().clone()
    }

    fn fail(&self, command: &'static str, why: &str) {
        self.0.errors.lock().insert(command, why.to_string());
    }

    fn log(&self, cmd: Sip, name: &'static str) -> Result<(), String> {
        self.0.cmds.lock().push(cmd);
        match self.0.errors.lock().get(name) {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    /// `ev` from the SIP side of the last call made.
    fn event(&self, ev: CallEvent) {
        let events = self.0.events.lock();
        events.last().expect("a call").send(ev).expect("the call listens to its SIP events");
    }
}

fn utf8(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl CallSip for FakeSip {
    type Dial = String;

    async fn invite(
        &self,
        dial: &String,
        callee: &str,
        offer: Bytes,
    ) -> Result<(SipCallId, mpsc::UnboundedReceiver<CallEvent>), String> {
        let cmd = Sip::Invite { dial: dial.clone(), callee: callee.to_string(), offer: utf8(&offer) };
        self.0.cmds.lock().push(cmd);
        let delay = *self.0.invite_delay.lock();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let refused = self.0.errors.lock().get("invite").cloned();
        if let Some(why) = refused {
            return Err(why);
        }
        let id = SipCallId(self.0.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        let (tx, rx) = mpsc::unbounded_channel();
        self.0.events.lock().push(tx);
        Ok((id, rx))
    }

    fn domain(dial: &String) -> String {
        dial.clone()
    }

    fn unroute(&self, call: SipCallId) {
        self.0.cmds.lock().push(Sip::Unroute(call));
    }

    async fn hangup(&self, call: SipCallId) -> Result<(), String> {
        self.log(Sip::Hangup(call), "hangup")
    }

    async fn reinvite(&self, call: SipCallId, hold: bool, sdp: Bytes) -> Result<(), String> {
        self.log(Sip::Reinvite { call, hold, sdp: utf8(&sdp) }, "reinvite")
    }

    async fn info_dtmf(&self, call: SipCallId, digit: char) -> Result<(), String> {
        self.log(Sip::InfoDtmf(call, digit), "info_dtmf")
    }

    async fn refer(&self, call: SipCallId, target: String) -> Result<(), String> {
        self.log(Sip::Refer(call, target), "refer")
    }

    async fn answer(&self, call: SipCallId, sdp: Bytes) -> Result<(), String> {
        self.log(Sip::Answer(call, utf8(&sdp)), "answer")
    }

    async fn reject(&self, call: SipCallId, status: u16, _reason: &'static str) -> Result<(), String> {
        self.log(Sip::Reject(call, status), "reject")
    }

    async fn respond(&self, req: ReqId, status: u16, _reason: &'static str) -> Result<(), String> {
        self.log(Sip::Respond(req, status), "respond")
    }

    async fn notify_transfer(&self, call: SipCallId, status: u16, _reason: &'static str) -> Result<(), String> {
        self.log(Sip::NotifyTransfer(call, status), "notify_transfer")
    }
}

// ---------------------------------------------------------------------------------------------
// FakeMedia

/// A media operation the call asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Media {
    Bridge { peer: PeerId, offer: String },
    RtpLeg(PeerId),
    Remote(String),
    BrowserAnswer(String),
    Dtmf(String),
    Close(PeerId),
}

#[derive(Default)]
struct MediaState {
    cmds: Mutex<Vec<Media>>,
    /// Per operation name (`"bridge"`, `"remote"`, ...): the error it returns.
    refuse: Mutex<HashMap<&'static str, MediaError>>,
    /// The events sender of the call's bridge (or of the incoming call's leg).
    events: Mutex<Option<mpsc::UnboundedSender<MediaEvent>>>,
}

#[derive(Clone, Default)]
struct FakeMedia(Arc<MediaState>);

impl FakeMedia {
    fn cmds(&self) -> Vec<Media> {
        self.0.cmds.lock().clone()
    }

    fn refuse(&self, op: &'static str, e: MediaError) {
        self.0.refuse.lock().insert(op, e);
    }

    fn allow(&self, op: &'static str) {
        self.0.refuse.lock().remove(op);
    }

    fn log(&self, cmd: Media, op: &'static str) -> Result<(), MediaError> {
        self.0.cmds.lock().push(cmd);
        match self.0.refuse.lock().get(op) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// `ev` from the bridge.
    fn event(&self, ev: MediaEvent) {
        let events = self.0.events.lock();
        events.as_ref().expect("a bridge").send(ev).expect("the call listens to its media events");
    }
}

impl CallMedia for FakeMedia {
    async fn bridge(
        &self,
        peer: PeerId,
        offer: String,
        events: mpsc::UnboundedSender<MediaEvent>,
    ) -> Result<BridgeAnswer, MediaError> {
        self.log(Media::Bridge { peer, offer }, "bridge")?;
        *self.0.events.lock() = Some(events);
        Ok(BridgeAnswer {
            webrtc_answer: "webrtc-answer".into(),
            sip_sdp: "sip-offer".into(),
            codec: G711::Pcmu,
            video: None,
        })
    }

    async fn rtp_leg(&self, peer: PeerId) -> Result<String, MediaError> {
        self.log(Media::RtpLeg(peer), "rtp_leg")?;
        Ok("rtp-offer".into())
    }

    async fn remote(&self, _peer: PeerId, sdp: String) -> Result<(), MediaError> {
        self.log(Media::Remote(sdp), "remote")
    }

    async fn browser_answer(&self, _peer: PeerId, sdp: String) -> Result<(), MediaError> {
        self.log(Media::BrowserAnswer(sdp), "browser_answer")
    }

    async fn dtmf(&self, _peer: PeerId, keys: String) -> Result<(), MediaError> {
        self.log(Media::Dtmf(keys), "dtmf")
    }

    fn close(&self, peer: PeerId) {
        self.0.cmds.lock().push(Media::Close(peer));
    }
}

// ---------------------------------------------------------------------------------------------
// FakeListing

#[derive(Debug, Clone, PartialEq, Eq)]
enum Listed {
    SipKnown(SipCallId),
    Unlist,
}

struct FakeListing(Arc<Mutex<Vec<Listed>>>);

impl Listing for FakeListing {
    fn sip_known(&mut self, sip: SipCallId) {
        self.0.lock().push(Listed::SipKnown(sip));
    }

    fn unlist(&mut self) {
        self.0.lock().push(Listed::Unlist);
    }
}

// ---------------------------------------------------------------------------------------------
// The harness

/// One call under test: the fakes it talks to, its inbox, its view, its task.
struct Harness {
    party: FakeParty,
    sip: FakeSip,
    media: FakeMedia,
    listed: Arc<Mutex<Vec<Listed>>>,
    view: View,
    inbox: mpsc::UnboundedSender<Input>,
    rx: Option<mpsc::UnboundedReceiver<Input>>,
    task: Option<JoinHandle<()>>,
}

/// The call object of a client's outgoing call as `call::outgoing` records it.
fn outgoing_obj() -> Map<String, Value> {
    obj(json!({
        "callId": CALL_ID, "incoming": false, "caller": "alice", "callee": "bob",
        "nodeId": "node-1", "appKey": "defaultApp", "sessionId": "session-1", "status": "PENDING",
    }))
}

/// The client's `call` request (with its WebRTC offer), as the hook gets it.
fn call_request() -> Map<String, Value> {
    let mut data = outgoing_obj();
    data.remove("status");
    data.insert("sdp".into(), "webrtc-offer".into());
    data
}

impl Harness {
    fn new() -> Harness {
        let (inbox, rx) = mpsc::unbounded_channel();
        Harness {
            party: FakeParty::default(),
            sip: FakeSip::default(),
            media: FakeMedia::default(),
            listed: Arc::default(),
            view: Arc::new(parking_lot::Mutex::new(Map::new())),
            inbox,
            rx: Some(rx),
            task: None,
        }
    }

    fn build(&mut self, obj: Map<String, Value>) -> CallTask<FakeParty, FakeSip, FakeMedia> {
        *self.view.lock() = obj.clone();
        CallTask::new(
            self.party.clone(),
            self.sip.clone(),
            self.media.clone(),
            LIMITS,
            CALL_ID.into(),
            obj,
            self.view.clone(),
            Box::new(FakeListing(self.listed.clone())),
            self.rx.take().expect("one task per harness"),
            PEER,
        )
    }

    /// Starts `run_outgoing` and lets it run as far as it can.
    async fn outgoing(&mut self, origin: Origin, leg: Leg, data: Map<String, Value>, dial: Option<&str>) {
        let task = self.build(outgoing_obj());
        let dial = dial.map(str::to_string);
        self.task = Some(tokio::spawn(task.run_outgoing(origin, leg, data, dial)));
        settle().await;
    }

    /// A client's call to `bob` from the account at `example.com`.
    async fn call(&mut self) {
        self.outgoing(Origin::Client, Leg::WebRtc, call_request(), Some("example.com")).await;
    }

    /// A client's call, answered (200 with SDP).
    async fn established(&mut self) {
        self.call().await;
        self.sip(CallEvent::Established { sdp: Some(Bytes::from_static(b"sip-answer")) }).await;
        assert_eq!(self.party.statuses().last(), Some(&st(ESTABLISHED, "")));
    }

    /// An incoming call offered to the client: `run_ringing` with the SIP side's answer SDP.
    async fn ringing(&mut self) {
        let task = self.build(obj(json!({
            "callId": CALL_ID, "incoming": true, "caller": "carol", "callee": "alice",
            "sessionId": "session-1", "status": "PENDING",
        })));
        let (sip_tx, sip_rx) = mpsc::unbounded_channel();
        self.sip.0.events.lock().push(sip_tx);
        let (media_tx, media_rx) = mpsc::unbounded_channel();
        *self.media.0.events.lock() = Some(media_tx);
        self.task =
            Some(tokio::spawn(task.run_ringing(SIP_IN, sip_rx, media_rx, Bytes::from_static(b"our-sip-answer"))));
        settle().await;
    }

    async fn sip(&self, ev: CallEvent) {
        self.sip.event(ev);
        settle().await;
    }

    async fn input(&self, input: Input) {
        self.inbox.send(input).expect("the call task runs");
        settle().await;
    }

    async fn hangup(&self) {
        self.input(Input::Hangup { refused: None }).await;
    }

    /// An in-call action after its hook: the task's answer.
    async fn act(&self, method: HookMethod, data: Value) -> Result<(), ActError> {
        let (reply, rx) = oneshot::channel();
        self.inbox.send(Input::Act { method, data: obj(data), reply }).expect("the call task runs");
        let r = tokio::time::timeout(BOUND, rx).await.expect("the task answers").expect("the task answers");
        settle().await;
        r
    }

    async fn answer(&self, sdp: &str) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.inbox.send(Input::Answer { sdp: sdp.into(), reply }).expect("the call task runs");
        let r = tokio::time::timeout(BOUND, rx).await.expect("the task answers").expect("the task answers");
        settle().await;
        r
    }

    fn is_over(&self) -> bool {
        self.task.as_ref().expect("started").is_finished()
    }

    /// Waits (bounded) for the task to end.
    async fn over(&mut self) {
        let task = self.task.take().expect("started");
        tokio::time::timeout(BOUND, task).await.expect("the call task ends").expect("the call task does not panic");
    }

    fn listed(&self) -> Vec<Listed> {
        self.listed.lock().clone()
    }

    fn view(&self) -> Map<String, Value> {
        self.view.lock().clone()
    }
}

fn sip_status(status: u16, reason: &str) -> Failure {
    Failure::Status {
        status,
        reason: reason.into(),
        raw: Bytes::from(format!("SIP/2.0 {status} {reason}\r\nCSeq: 2 INVITE\r\n\r\n")),
    }
}

fn invite_to(callee: &str, offer: &str) -> Sip {
    Sip::Invite { dial: "example.com".into(), callee: callee.into(), offer: offer.into() }
}

// ---------------------------------------------------------------------------------------------
// 1. An outgoing call from TRYING to FINISH

#[tokio::test(start_paused = true)]
async fn outgoing_call_lives_and_ends_normally() {
    let mut h = Harness::new();
    h.call().await;
    assert_eq!(h.party.statuses(), vec![st(TRYING, "")]);
    assert_eq!(
        h.party.frames(),
        vec![ServerFrame::new(messages::SET_REMOTE_SDP, vec![json!(CALL_ID), json!("webrtc-answer"), json!(true)])]
    );
    assert_eq!(h.media.cmds(), vec![Media::Bridge { peer: PEER, offer: "webrtc-offer".into() }]);
    assert_eq!(h.sip.cmds(), vec![invite_to("bob", "sip-offer")]);
    assert_eq!(h.listed(), vec![Listed::SipKnown(SIP1)]);
    // The `call` hook ran once, for the client; the view has no SDP.
    assert_eq!(h.party.log.lock().hooks, vec![(HookMethod::Call, Origin::Client)]);
    assert_eq!(h.view().get("sdp"), None);
    assert_eq!(text(&h.view(), "status"), TRYING);

    h.sip(CallEvent::Trying).await;
    h.sip(CallEvent::Ringing { sdp: None }).await;
    assert_eq!(h.party.statuses(), vec![st(TRYING, ""), st(RING, "")]);
    assert_eq!(h.media.cmds().len(), 1, "no SDP, nothing for the bridge");

    h.sip(CallEvent::Ringing { sdp: Some(Bytes::from_static(b"early-media")) }).await;
    assert_eq!(h.party.statuses().last(), Some(&st(RING_MEDIA, "")));
    assert_eq!(h.media.cmds().last(), Some(&Media::Remote("early-media".into())));

    h.sip(CallEvent::SessionProgress { sdp: None }).await;
    assert_eq!(h.party.statuses().last(), Some(&st(SESSION_PROGRESS, "")));

    h.sip(CallEvent::Established { sdp: Some(Bytes::from_static(b"sip-answer")) }).await;
    assert_eq!(h.party.statuses().last(), Some(&st(ESTABLISHED, "")));
    assert_eq!(h.media.cmds().last(), Some(&Media::Remote("sip-answer".into())));
    assert_eq!(h.view().get("sipStatus"), Some(&json!(200)));
    assert_eq!(text(&h.view(), "status"), ESTABLISHED);
    assert_eq!(h.party.last_status().get("sipStatus"), Some(&json!(200)));

    h.hangup().await;
    assert_eq!(h.sip.cmds().last(), Some(&Sip::Hangup(SIP1)));
    assert!(!h.is_over(), "the call ends when its BYE completes");
    assert_eq!(h.party.statuses().len(), 5);

    h.sip(CallEvent::Ended { remote: false }).await;
    h.over().await;
    assert_eq!(
        h.party.statuses(),
        vec![
            st(TRYING, ""),
            st(RING, ""),
            st(RING_MEDIA, ""),
            st(SESSION_PROGRESS, ""),
            st(ESTABLISHED, ""),
            st(FINISH, NORMAL_CALL_CLEARING)
        ]
    );
    let clients: Vec<_> = h.party.raised().iter().map(|r| r.client).collect();
    assert_eq!(
        clients,
        vec![
            Some(messages::NOTIFY_TRYING_RESPONSE),
            Some(messages::RING),
            Some(messages::RING),
            Some(messages::RING),
            Some(messages::TALK),
            Some(messages::FINISH)
        ]
    );
    assert!(h.party.raised().iter().all(|r| r.origin == Origin::Client));
    assert!(h.party.log.lock().objects.is_empty());
    assert_eq!(h.media.cmds().last(), Some(&Media::Close(PEER)));
    assert_eq!(h.listed(), vec![Listed::SipKnown(SIP1), Listed::Unlist]);
    assert_eq!(h.sip.cmds(), vec![invite_to("bob", "sip-offer"), Sip::Hangup(SIP1), Sip::Unroute(SIP1)]);
    // The last event carries the call object: the id and the callee.
    assert_eq!(text(&h.party.last_status(), "callId"), CALL_ID);
    assert_eq!(text(&h.party.last_status(), "callee"), "bob");
}

#[tokio::test(start_paused = true)]
async fn peer_bye_ends_the_call_normally() {
    let mut h = Harness::new();
    h.established().await;
    h.sip(CallEvent::Ended { remote: true }).await;
    h.over().await;
    assert_eq!(h.party.statuses().last(), Some(&st(FINISH, NORMAL_CALL_CLEARING)));
    assert_eq!(h.sip.cmds(), vec![invite_to("bob", "sip-offer"), Sip::Unroute(SIP1)]);
    assert_eq!(h.listed(), vec![Listed::SipKnown(SIP1), Listed::Unlist]);
}

#[tokio::test(start_paused = true)]
async fn refused_invite_fails_with_the_sip_status() {
    let mut h = Harness::new();
    h.call().await;
    h.sip(CallEvent::Failed(sip_status(486, "Busy Here"))).await;
    h.over().await;
    assert_eq!(h.party.statuses(), vec![st(TRYING, ""), st(FAILED, "SIP 486 BUSY HERE")]);
    let last = h.party.last_status();
    assert_eq!(last.get("sipStatus"), Some(&json!(486)));
    assert!(text(&last, "sipMessageRaw").starts_with("SIP/2.0 486"));
    assert_eq!(h.sip.cmds(), vec![invite_to("bob", "sip-offer"), Sip::Unroute(SIP1)]);
    assert_eq!(h.media.cmds().last(), Some(&Media::Close(PEER)));
    assert_eq!(h.listed(), vec![Listed::SipKnown(SIP1), Listed::Unlist]);
}

// Setup failures before the INVITE: nothing reaches the SIP side.

#[tokio::test(start_paused = true)]
async fn call_hook_refusal_fails_before_trying() {
    let mut h = Harness::new();
    h.party.script(HookMethod::Call, Hook::Err("Forbidden by the backend".into()));
    h.call().await;
    h.over().await;
    assert_eq!(h.party.statuses(), vec![st(FAILED, "Forbidden by the backend")]);
    assert_eq!(h.sip.cmds(), vec![]);
    assert_eq!(h.media.cmds(), vec![Media::Close(PEER)]);
    assert_eq!(h.listed(), vec![Listed::Unlist]);
}

#[tokio::test(start_paused = true)]
async fn setup_failures_end_the_call_with_their_reason() {
    // No WebRTC offer.
    let mut h = Harness::new();
    let mut data = call_request();
    data.remove("sdp");
    h.outgoing(Origin::Client, Leg::WebRtc, data, Some("example.com")).await;
    h.over().await;
    assert_eq!(h.party.statuses(), vec![st(FAILED, NO_SDP)]);
    assert_eq!(h.sip.cmds(), vec![]);

    // No SIP account to call from.
    let mut h = Harness::new();
    h.outgoing(Origin::Client, Leg::WebRtc, call_request(), None).await;
    h.over().await;
    assert_eq!(h.party.statuses(), vec![st(FAILED, CALL_WITHOUT_SIP_ACCOUNT)]);
    assert_eq!(h.media.cmds(), vec![Media::Close(PEER)]);

    // The bridge refuses the offer: after TRYING, no INVITE.
    let mut h = Harness::new();
    h.media.refuse("bridge", MediaError::NoCommonCodecs);
    h.call().await;
    h.over().await;
    assert_eq!(h.party.statuses(), vec![st(TRYING, ""), st(FAILED, TRANSCODING_REQUIRED)]);
    assert_eq!(h.sip.cmds(), vec![]);
    assert_eq!(h.party.frames(), vec![], "no setRemoteSDP");
    assert_eq!(h.listed(), vec![Listed::Unlist]);

    // The INVITE cannot be sent (the port's FAILED info).
    let mut h = Harness::new();
    h.sip.fail("invite", "SIP destination not allowed: pbx:5060");
    h.call().await;
    h.over().await;
    assert_eq!(h.party.statuses(), vec![st(TRYING, ""), st(FAILED, "SIP destination not allowed: pbx:5060")]);
    assert_eq!(h.sip.cmds(), vec![invite_to("bob", "sip-offer")], "no unroute: it never had a route");
    assert_eq!(h.media.cmds().last(), Some(&Media::Close(PEER)));
    assert_eq!(h.listed(), vec![Listed::Unlist]);
}

// ---------------------------------------------------------------------------------------------
// 2. A hangup during a slow `call` hook

#[tokio::test(start_paused = true)]
async fn hangup_during_slow_call_hook_ends_at_once() {
    let mut h = Harness::new();
    h.party.script(HookMethod::Call, Hook::After(Duration::from_secs(10), Box::new(Hook::Ok)));
    let start = tokio::time::Instant::now();
    h.call().await;
    assert_eq!(h.party.statuses(), vec![], "the hook is still pending");
    h.hangup().await;
    assert!(h.is_over(), "the call ended without waiting for the hook");
    assert!(start.elapsed() < Duration::from_secs(1));
    h.over().await;
    assert_eq!(h.party.statuses(), vec![st(FINISH, NORMAL_CALL_CLEARING)]);
    assert_eq!(h.sip.cmds(), vec![], "no INVITE");
    assert_eq!(h.media.cmds(), vec![Media::Close(PEER)], "no bridge");
    assert_eq!(h.listed(), vec![Listed::Unlist]);
    // Nothing happens when the hook's time comes.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(h.sip.cmds(), vec![]);
    assert_eq!(h.party.statuses().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn refused_hangup_during_call_hook_fails_with_its_reason() {
    let mut h = Harness::new();
    h.party.script(HookMethod::Call, Hook::After(Duration::from_secs(10), Box::new(Hook::Ok)));
    h.call().await;
    h.input(Input::Hangup { refused: Some("Hangup refused by the backend".into()) }).await;
    h.over().await;
    assert_eq!(h.party.statuses(), vec![st(FAILED, "Hangup refused by the backend")]);
    assert_eq!(h.sip.cmds(), vec![]);
    assert_eq!(h.listed(), vec![Listed::Unlist]);
}

#[tokio::test(start_paused = true)]
async fn refused_hangup_of_established_call_fails_with_its_reason() {
    let mut h = Harness::new();
    h.established().await;
    h.input(Input::Hangup { refused: Some("Hangup refused by the backend".into()) }).await;
    assert_eq!(h.sip.cmds().last(), Some(&Sip::Hangup(SIP1)), "the call still ends");
    h.sip(CallEvent::Ended { remote: false }).await;
    h.over().await;
    assert_eq!(h.party.statuses().last(), Some(&st(FAILED, "Hangup refused by the backend")));
    assert_eq!(h.listed(), vec![Listed::SipKnown(SIP1), Listed::Unlist]);
}

#[tokio::test(start_paused = true)]
async fn actions_during_the_call_hook_are_refused() {
    let mut h = Harness::new();
    h.party.script(HookMethod::Call, Hook::After(Duration::from_secs(10), Box::new(Hook::Ok)));
    h.call().await;
    assert_eq!(h.act(HookMethod::Hold, json!({})).await, Err(ActError::NotEstablished));
    assert_eq!(h.answer("browser-answer").await, Err(CALL_NOT_RINGING.to_string()));
    // The hook answers: the call goes on.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(h.party.statuses(), vec![st(TRYING, "")]);
    assert_eq!(h.sip.cmds(), vec![invite_to("bob", "sip-offer")]);
}

// ---------------------------------------------------------------------------------------------
// 3. The session goes away during the hook

#[tokio::test(start_paused = true)]
async fn session_gone_during_call_hook_ends_silently() {
    let mut h = Harness::new();
    h.party.script(HookMethod::Call, Hook::After(Duration::from_secs(10), Box::new(Hook::Ok)));
    h.call().await;
    h.input(Input::SessionGone).await;
    h.over().await;
    assert_eq!(h.party.raised().len(), 0, "no status at all");
    assert_eq!(h.party.frames(), vec![]);
    assert_eq!(h.sip.cmds(), vec![], "no INVITE");
    assert_eq!(h.media.cmds(), vec![Media::Close(PEER)]);
    assert_eq!(h.listed(), vec![Listed::Unlist], "unlisted once");
}

#[tokio::test(start_paused = true)]
async fn session_gone_in_an_established_call_hangs_up() {
    let mut h = Harness::new();
    h.established().await;
    h.input(Input::SessionGone).await;
    assert_eq!(h.sip.cmds().last(), Some(&Sip::Hangup(SIP1)));
    h.sip(CallEvent::Ended { remote: false }).await;
    h.over().await;
    assert_eq!(h.party.statuses().last(), Some(&st(FINISH, NORMAL_CALL_CLEARING)));
    assert_eq!(h.listed(), vec![Listed::SipKnown(SIP1), Listed::Unlist]);
}

// ---------------------------------------------------------------------------------------------
// 4. A hangup while the INVITE is being sent

#[tokio::test(start_paused = true)]
async fn hangup_during_invite_cancels_once_it_left() {
    let mut h = Harness::new();
    *h.sip.0.invite_delay.lock() = Some(Duration::from_secs(5));
    h.call().await;
    assert_eq!(h.party.statuses(), vec![st(TRYING, "")]);
    assert_eq!(h.sip.cmds(), vec![invite_to("bob", "sip-offer")]);
    h.hangup().await;
    // Kept while the INVITE is under way; an action meanwhile is refused.
    assert_eq!(h.act(HookMethod::Hold, json!({})).await, Err(ActError::NotEstablished));
    assert_eq!(h.sip.cmds(), vec![invite_to("bob", "sip-offer")]);
    assert!(!h.is_over());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(h.sip.cmds(), vec![invite_to("bob", "sip-offer"), Sip::Hangup(SIP1)]);
    assert_eq!(h.listed(), vec![Listed::SipKnown(SIP1)]);
    assert_eq!(h.party.statuses(), vec![st(TRYING, "")], "FINISH comes with the CANCEL's end");
    h.sip(CallEvent::Ended { remote: false }).await;
    h.over().await;
    assert_eq!(h.party.statuses(), vec![st(TRYING, ""), st(FINISH, NORMAL_CALL_CLEARING)]);
    assert_eq!(h.sip.cmds().last(), Some(&Sip::Unroute(SIP1)));
    assert_eq!(h.listed(), vec![Listed::SipKnown(SIP1), Listed::Unlist]);
}

#[tokio::test(start_paused = true)]
async fn media_failure_during_invite_hangs_up_once_it_left() {
    let mut h = Harness::new();
    *h.sip.0.invite_delay.lock() = Some(Duration::from_secs(5));
    h.call().await;
    h.media.event(MediaEvent::Failed(FailReason::IceTimeout));
    settle().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(h.sip.cmds(), vec![invite_to("bob", "sip-offer"), Sip::Hangup(SIP1)]);
    h.sip(CallEvent::Ended { remote: false }).await;
    h.over().await;
    assert_eq!(h.party.statuses(), vec![st(TRYING, ""), st(FAILED, FAILED_BY_ICE_ERROR)]);
}

/// Counts how often the wrapped future is polled.
struct Polls<F> {
    inner: std::pin::Pin<Box<F>>,
    count: Arc<AtomicU64>,
}

impl<F: Future> Future for Polls<F> {
    type Output = F::Output;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.inner.as_mut().poll(cx)
    }
}

/// The media endpoint drops a bridge's events sender after its `Failed` (endpoint.rs: the
/// sink of a failed peer is removed). While the INVITE is under way the task must then stop
/// listening to that queue rather than see its end again and again.
#[tokio::test(start_paused = true)]
async fn ended_media_queue_during_invite_does_not_spin() {
    let mut h = Harness::new();
    *h.sip.0.invite_delay.lock() = Some(Duration::from_secs(5));
    let polls = Arc::new(AtomicU64::new(0));
    let task = h.build(outgoing_obj());
    let run = task.run_outgoing(Origin::Client, Leg::WebRtc, call_request(), Some("example.com".to_string()));
    h.task = Some(tokio::spawn(Polls { inner: Box::pin(run), count: polls.clone() }));
    settle().await;
    h.media.event(MediaEvent::Failed(FailReason::IceTimeout));
    *h.media.0.events.lock() = None; // the endpoint forgets the failed peer's sink
                                     // No `settle` from here: a spinning task never lets the paused clock move.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let before = polls.load(Ordering::Relaxed);
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    let spins = polls.load(Ordering::Relaxed) - before;
    assert!(spins < 5, "the call task was polled {spins} times while nothing happened");
    // What follows is as with a live queue.
    tokio::time::advance(Duration::from_secs(5)).await;
    settle().await;
    assert_eq!(h.sip.cmds(), vec![invite_to("bob", "sip-offer"), Sip::Hangup(SIP1)]);
}

// ---------------------------------------------------------------------------------------------
// 5. Hold, unhold, and a glare (491) on our re-INVITE

#[tokio::test(start_paused = true)]
async fn hold_needs_an_established_call_and_survives_a_glare() {
    let mut h = Harness::new();
    h.call().await;
    h.sip(CallEvent::Ringing { sdp: None }).await;
    assert_eq!(h.act(HookMethod::Hold, json!({})).await, Err(ActError::NotEstablished));
    assert_eq!(h.sip.cmds(), vec![invite_to("bob", "sip-offer")]);

    h.sip(CallEvent::Established { sdp: Some(Bytes::from_static(b"sip-answer")) }).await;
    assert_eq!(h.act(HookMethod::Hold, json!({})).await, Ok(()));
    assert_eq!(h.sip.cmds().last(), Some(&Sip::Reinvite { call: SIP1, hold: true, sdp: "sip-offer".into() }));
    assert_eq!(h.party.statuses().last(), Some(&st(ESTABLISHED, "")), "HOLD waits for the answer");

    // Glare: the peer's own re-INVITE crossed ours (491). The call goes on.
    h.sip(CallEvent::HoldResult { hold: true, result: Err(sip_status(491, "Request Pending")) }).await;
    let statuses = h.party.statuses();
    assert_eq!(statuses.last(), Some(&st(ESTABLISHED, "")), "no status for a failed hold");
    let frames = h.party.frames();
    let fail = frames.last().expect("a fail frame");
    assert_eq!(fail.message, messages::FAIL);
    let fail = fail.data[0].as_object().expect("an object");
    assert_eq!(text(fail, "apiMethod"), "CallStatusEvent");
    assert_eq!(text(fail, "status"), "FAILED");
    assert_eq!(text(fail, "id"), CALL_ID);
    assert_eq!(fail.get("sipStatus"), Some(&json!(491)));
    assert!(text(fail, "sipMessageRaw").starts_with("SIP/2.0 491"));
    assert!(text(fail, "info").contains("491"), "{fail:?}");
    let errors = h.party.errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].0.event, EventKind::ErrorEvent);
    assert_eq!(errors[0].0.sip_status, Some(491));
    assert_eq!(errors[0].1, Origin::Client);
    assert!(!h.is_over());

    // A later hold succeeds.
    assert_eq!(h.act(HookMethod::Hold, json!({})).await, Ok(()));
    h.sip(CallEvent::HoldResult { hold: true, result: Ok(Some(Bytes::from_static(b"held-answer"))) }).await;
    assert_eq!(h.party.statuses().last(), Some(&st(HOLD, "")));
    assert_eq!(h.media.cmds().last(), Some(&Media::Remote("held-answer".into())));
    assert_eq!(text(&h.view(), "status"), HOLD);

    // And unhold.
    assert_eq!(h.act(HookMethod::Unhold, json!({})).await, Ok(()));
    assert_eq!(h.sip.cmds().last(), Some(&Sip::Reinvite { call: SIP1, hold: false, sdp: "sip-offer".into() }));
    h.sip(CallEvent::HoldResult { hold: false, result: Ok(None) }).await;
    assert_eq!(h.party.statuses().last(), Some(&st(ESTABLISHED, "")));
    assert_eq!(h.party.errors().len(), 1);
    let reinvites = h.sip.cmds().iter().filter(|c| matches!(c, Sip::Reinvite { .. })).count();
    assert_eq!(reinvites, 3);
}

#[tokio::test(start_paused = true)]
async fn reinvite_not_sent_is_the_actions_error() {
    let mut h = Harness::new();
    h.established().await;
    h.sip.fail("reinvite", "the call is gone");
    assert_eq!(h.act(HookMethod::Hold, json!({})).await, Err(ActError::Failed("the call is gone".into())));
    assert_eq!(h.party.statuses().last(), Some(&st(ESTABLISHED, "")));
}

// ---------------------------------------------------------------------------------------------
// 6. The peer's re-INVITEs

fn peer_offer(sdp: &'static [u8], hold: bool) -> CallEvent {
    let direction = if hold { Direction::SendOnly } else { Direction::SendRecv };
    CallEvent::IncomingReInvite { sdp: Some(Bytes::from_static(sdp)), direction, hold }
}

#[tokio::test(start_paused = true)]
async fn peer_reinvite_holds_and_unholds_the_call() {
    let mut h = Harness::new();
    h.established().await;
    let base = h.party.statuses().len();

    h.sip(peer_offer(b"peer-sendonly", true)).await;
    let media = h.media.cmds();
    assert_eq!(media.last(), Some(&Media::Remote("peer-sendonly".into())));
    assert_eq!(h.sip.cmds().last(), Some(&Sip::Answer(SIP1, "sip-offer".into())));
    assert_eq!(h.party.statuses().last(), Some(&st(HOLD, "")));

    h.sip(peer_offer(b"peer-sendrecv", false)).await;
    assert_eq!(h.media.cmds().last(), Some(&Media::Remote("peer-sendrecv".into())));
    assert_eq!(h.party.statuses().last(), Some(&st(ESTABLISHED, "")));
    assert_eq!(h.party.statuses().len(), base + 2);

    // A refresh-like offer with the same hold state: answered, no status.
    h.sip(peer_offer(b"peer-sendrecv-2", false)).await;
    assert_eq!(h.sip.cmds().last(), Some(&Sip::Answer(SIP1, "sip-offer".into())));
    assert_eq!(h.party.statuses().len(), base + 2);

    // We hold; the peer's hold and unhold meanwhile change nothing the client sees.
    assert_eq!(h.act(HookMethod::Hold, json!({})).await, Ok(()));
    h.sip(CallEvent::HoldResult { hold: true, result: Ok(None) }).await;
    assert_eq!(h.party.statuses().last(), Some(&st(HOLD, "")));
    let held = h.party.statuses().len();
    h.sip(peer_offer(b"peer-sendonly", true)).await;
    assert_eq!(h.sip.cmds().last(), Some(&Sip::Answer(SIP1, "sip-offer".into())));
    h.sip(peer_offer(b"peer-sendrecv", false)).await;
    assert_eq!(h.sip.cmds().last(), Some(&Sip::Answer(SIP1, "sip-offer".into())));
    assert_eq!(h.party.statuses().len(), held, "no extra status");

    // A re-offer the bridge refuses: 488, no status, no answer; the call goes on.
    h.media.refuse("remote", MediaError::NoCommonCodecs);
    let answers = h.sip.cmds().iter().filter(|c| matches!(c, Sip::Answer(..))).count();
    h.sip(peer_offer(b"peer-g729", false)).await;
    assert_eq!(h.sip.cmds().last(), Some(&Sip::Reject(SIP1, 488)));
    assert_eq!(h.sip.cmds().iter().filter(|c| matches!(c, Sip::Answer(..))).count(), answers);
    assert_eq!(h.party.statuses().len(), held);
    assert!(!h.is_over());
    h.media.allow("remote");
    h.sip(peer_offer(b"peer-sendonly", true)).await;
    assert_eq!(h.sip.cmds().last(), Some(&Sip::Answer(SIP1, "sip-offer".into())));
}

#[tokio::test(start_paused = true)]
async fn peer_answer_in_ack_reports_its_hold() {
    let mut h = Harness::new();
    h.established().await;
    h.sip(CallEvent::PeerAnswer {
        sdp: Bytes::from_static(b"peer-inactive"),
        direction: Direction::Inactive,
        hold: true,
    })
    .await;
    assert_eq!(h.media.cmds().last(), Some(&Media::Remote("peer-inactive".into())));
    assert_eq!(h.party.statuses().last(), Some(&st(HOLD, "")));
}

#[tokio::test(start_paused = true)]
async fn offerless_peer_reinvite_gets_our_offer_and_its_answer_in_ack() {
    let mut h = Harness::new();
    h.established().await;
    let n = h.party.statuses().len();
    let media = h.media.cmds().len();
    // No SDP: our offer goes in the 200; nothing for the bridge yet, no status.
    h.sip(CallEvent::IncomingReInvite { sdp: None, direction: Direction::SendRecv, hold: false }).await;
    assert_eq!(h.sip.cmds().last(), Some(&Sip::Answer(SIP1, "sip-offer".into())));
    assert_eq!(h.media.cmds().len(), media);
    assert_eq!(h.party.statuses().len(), n);
    // The answer in the ACK holds the call.
    h.sip(CallEvent::PeerAnswer {
        sdp: Bytes::from_static(b"ack-sendonly"),
        direction: Direction::SendOnly,
        hold: true,
    })
    .await;
    assert_eq!(h.media.cmds().last(), Some(&Media::Remote("ack-sendonly".into())));
    assert_eq!(h.party.statuses().last(), Some(&st(HOLD, "")));
}

#[tokio::test(start_paused = true)]
async fn peer_bye_during_our_hold_ends_the_call() {
    let mut h = Harness::new();
    h.established().await;
    assert_eq!(h.act(HookMethod::Hold, json!({})).await, Ok(()));
    h.sip(CallEvent::Ended { remote: true }).await;
    h.over().await;
    assert_eq!(h.party.statuses().last(), Some(&st(FINISH, NORMAL_CALL_CLEARING)));
    assert!(!h.party.statuses().contains(&st(HOLD, "")));
    assert_eq!(h.listed(), vec![Listed::SipKnown(SIP1), Listed::Unlist]);
}

// ---------------------------------------------------------------------------------------------
// 7. Session timer

#[tokio::test(start_paused = true)]
async fn expired_session_timer_fails_the_call() {
    let mut h = Harness::new();
    h.established().await;
    let n = h.party.statuses().len();
    h.sip(CallEvent::SessionExpired).await;
    assert_eq!(h.party.statuses().len(), n, "FAILED waits for the BYE's end");
    assert_eq!(h.sip.cmds(), vec![invite_to("bob", "sip-offer")], "the user agent sends the BYE itself");
    h.sip(CallEvent::Ended { remote: false }).await;
    h.over().await;
    assert_eq!(h.party.statuses().last(), Some(&st(FAILED, SESSION_EXPIRED)));
    assert_eq!(h.listed(), vec![Listed::SipKnown(SIP1), Listed::Unlist]);
}

// ---------------------------------------------------------------------------------------------
// 8. DTMF

fn infos(h: &Harness) -> String {
    h.sip.cmds().iter().filter_map(|c| if let Sip::InfoDtmf(_, d) = c { Some(*d) } else { None }).collect()
}

#[tokio::test(start_paused = true)]
async fn info_dtmf_goes_one_digit_at_a_time() {
    let mut h = Harness::new();
    h.established().await;
    assert_eq!(h.act(HookMethod::SendDtmf, json!({"dtmf": "123", "type": "INFO"})).await, Ok(()));
    assert_eq!(infos(&h), "1");
    h.sip(CallEvent::DtmfResult(Ok(()))).await;
    assert_eq!(infos(&h), "12");
    // More digits while one is in flight: queued behind.
    assert_eq!(h.act(HookMethod::SendDtmf, json!({"dtmf": "9", "type": "INFO_RELAY"})).await, Ok(()));
    assert_eq!(infos(&h), "12");
    h.sip(CallEvent::DtmfResult(Ok(()))).await;
    assert_eq!(infos(&h), "123");
    h.sip(CallEvent::DtmfResult(Ok(()))).await;
    assert_eq!(infos(&h), "1239");
    h.sip(CallEvent::DtmfResult(Ok(()))).await;
    assert_eq!(infos(&h), "1239", "the sequence is over");
    assert!(h.sip.cmds().iter().all(|c| !matches!(c, Sip::InfoDtmf(call, _) if *call != SIP1)));
    assert_eq!(h.party.errors(), vec![]);

    // A new sequence starts at once.
    assert_eq!(h.act(HookMethod::SendDtmf, json!({"dtmf": "4", "type": "INFO"})).await, Ok(()));
    assert_eq!(infos(&h), "12394");
    assert!(h.media.cmds().iter().all(|c| !matches!(c, Media::Dtmf(_))));
}

#[tokio::test(start_paused = true)]
async fn failed_info_dtmf_drops_the_rest() {
    let mut h = Harness::new();
    h.established().await;
    assert_eq!(h.act(HookMethod::SendDtmf, json!({"dtmf": "456", "type": "INFO"})).await, Ok(()));
    assert_eq!(infos(&h), "4");
    h.sip(CallEvent::DtmfResult(Err(sip_status(415, "Unsupported Media Type")))).await;
    assert_eq!(infos(&h), "4", "5 and 6 dropped");
    let errors = h.party.errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].0.event, EventKind::ErrorEvent);
    assert_eq!(errors[0].0.sip_status, Some(415));
    assert!(!h.is_over());
    // The queue is empty again: the next digits go.
    assert_eq!(h.act(HookMethod::SendDtmf, json!({"dtmf": "7", "type": "INFO"})).await, Ok(()));
    assert_eq!(infos(&h), "47");
}

#[tokio::test(start_paused = true)]
async fn info_dtmf_not_sent_is_reported() {
    let mut h = Harness::new();
    h.established().await;
    // The first digit cannot be sent: the action fails, nothing stays queued.
    h.sip.fail("info_dtmf", "the call is gone");
    assert_eq!(
        h.act(HookMethod::SendDtmf, json!({"dtmf": "12", "type": "INFO"})).await,
        Err(ActError::Failed("the call is gone".into()))
    );
    h.sip.0.errors.lock().clear();
    assert_eq!(h.act(HookMethod::SendDtmf, json!({"dtmf": "3", "type": "INFO"})).await, Ok(()));
    assert_eq!(infos(&h), "13");
    // A later digit that cannot be sent: an ErrorEvent, the rest dropped.
    assert_eq!(h.act(HookMethod::SendDtmf, json!({"dtmf": "45", "type": "INFO"})).await, Ok(()));
    h.sip.fail("info_dtmf", "the call is gone");
    h.sip(CallEvent::DtmfResult(Ok(()))).await;
    assert_eq!(infos(&h), "134");
    let errors = h.party.errors();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].0.info.contains("the call is gone"), "{:?}", errors[0].0);
    h.sip.0.errors.lock().clear();
    h.sip(CallEvent::DtmfResult(Ok(()))).await;
    assert_eq!(infos(&h), "134", "5 was dropped");
}

#[tokio::test(start_paused = true)]
async fn too_many_dtmf_digits_are_refused() {
    let mut h = Harness::new();
    h.established().await;
    // At most 5 (LIMITS.max_dtmf) in one request...
    assert!(matches!(
        h.act(HookMethod::SendDtmf, json!({"dtmf": "123456", "type": "INFO"})).await,
        Err(ActError::BadRequest(_))
    ));
    assert_eq!(infos(&h), "");
    // ... and in the queue: 1 in flight, 4 waiting, 2 more is too many.
    assert_eq!(h.act(HookMethod::SendDtmf, json!({"dtmf": "12345", "type": "INFO"})).await, Ok(()));
    assert_eq!(
        h.act(HookMethod::SendDtmf, json!({"dtmf": "67", "type": "INFO"})).await,
        Err(ActError::BadRequest(callgate_proto::info::too_many_dtmf_queued(4, 5)))
    );
    // What was queued still goes, and nothing of the refused request.
    for _ in 0..5 {
        h.sip(CallEvent::DtmfResult(Ok(()))).await;
    }
    assert_eq!(infos(&h), "12345");
    // Bad keys and no keys.
    assert!(matches!(h.act(HookMethod::SendDtmf, json!({"dtmf": "1x"})).await, Err(ActError::BadRequest(_))));
    assert!(matches!(h.act(HookMethod::SendDtmf, json!({"dtmf": ""})).await, Err(ActError::BadRequest(_))));
}

#[tokio::test(start_paused = true)]
async fn rfc2833_dtmf_goes_through_the_bridge() {
    let mut h = Harness::new();
    h.established().await;
    assert_eq!(h.act(HookMethod::SendDtmf, json!({"dtmf": "12#", "type": "RFC2833"})).await, Ok(()));
    assert_eq!(h.act(HookMethod::SendDtmf, json!({"dtmf": "*"})).await, Ok(()), "RFC 2833 is the default");
    let dtmf: Vec<_> = h.media.cmds().into_iter().filter(|c| matches!(c, Media::Dtmf(_))).collect();
    assert_eq!(dtmf, vec![Media::Dtmf("12#".into()), Media::Dtmf("*".into())]);
    assert_eq!(infos(&h), "");
    h.media.refuse("dtmf", MediaError::NotFound(PEER));
    assert!(matches!(h.act(HookMethod::SendDtmf, json!({"dtmf": "1"})).await, Err(ActError::Failed(_))));
}

// ---------------------------------------------------------------------------------------------
// 9. An incoming call

#[tokio::test(start_paused = true)]
async fn incoming_call_not_answered_in_time() {
    let mut h = Harness::new();
    h.ringing().await;
    assert_eq!(h.party.statuses(), vec![st(RING, "")]);
    assert_eq!(h.listed(), vec![Listed::SipKnown(SIP_IN)]);
    tokio::time::sleep(LIMITS.ring_timeout - Duration::from_secs(1)).await;
    assert_eq!(h.sip.cmds(), vec![], "still ringing");
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.over().await;
    assert_eq!(h.sip.cmds(), vec![Sip::Reject(SIP_IN, 480), Sip::Unroute(SIP_IN)]);
    assert_eq!(h.party.statuses(), vec![st(RING, ""), st(FINISH, "Not answered within 30 s")]);
    assert_eq!(h.media.cmds(), vec![Media::Close(PEER)]);
    assert_eq!(h.listed(), vec![Listed::SipKnown(SIP_IN), Listed::Unlist]);
}

#[tokio::test(start_paused = true)]
async fn incoming_call_answered() {
    let mut h = Harness::new();
    h.ringing().await;
    assert_eq!(h.answer("browser-answer").await, Ok(()));
    assert_eq!(h.media.cmds(), vec![Media::BrowserAnswer("browser-answer".into())]);
    assert_eq!(h.sip.cmds(), vec![Sip::Answer(SIP_IN, "our-sip-answer".into())]);
    assert_eq!(h.party.statuses(), vec![st(RING, "")], "ESTABLISHED comes with the ACK");
    h.sip(CallEvent::Established { sdp: None }).await;
    assert_eq!(h.party.statuses(), vec![st(RING, ""), st(ESTABLISHED, "")]);
    assert_eq!(h.view().get("sipStatus"), Some(&json!(200)));
    // Not ringing any more: a second answer is refused, and the ring timer is gone.
    assert_eq!(h.answer("browser-answer-2").await, Err(CALL_NOT_RINGING.to_string()));
    tokio::time::sleep(LIMITS.ring_timeout * 2).await;
    assert_eq!(h.sip.cmds(), vec![Sip::Answer(SIP_IN, "our-sip-answer".into())]);
    assert!(!h.is_over());
    // In-call actions work on an incoming call too.
    assert_eq!(h.act(HookMethod::Hold, json!({})).await, Ok(()));
    assert_eq!(h.sip.cmds().last(), Some(&Sip::Reinvite { call: SIP_IN, hold: true, sdp: "our-sip-answer".into() }));
}

#[tokio::test(start_paused = true)]
async fn incoming_call_hung_up_while_ringing() {
    let mut h = Harness::new();
    h.ringing().await;
    h.hangup().await;
    h.over().await;
    // The port answers an unanswered call's hangup with 486; no event follows.
    assert_eq!(h.sip.cmds(), vec![Sip::Hangup(SIP_IN), Sip::Unroute(SIP_IN)]);
    assert_eq!(h.party.statuses(), vec![st(RING, ""), st(FINISH, NORMAL_CALL_CLEARING)]);
}

#[tokio::test(start_paused = true)]
async fn incoming_call_cancelled_by_the_caller() {
    let mut h = Harness::new();
    h.ringing().await;
    h.sip(CallEvent::Cancelled).await;
    h.over().await;
    assert_eq!(h.party.statuses(), vec![st(RING, ""), st(FINISH, NORMAL_CALL_CLEARING)]);
    assert_eq!(h.sip.cmds(), vec![Sip::Unroute(SIP_IN)]);
}

#[tokio::test(start_paused = true)]
async fn incoming_answer_the_bridge_refuses() {
    let mut h = Harness::new();
    h.ringing().await;
    h.media.refuse("browser_answer", MediaError::NoCommonCodecs);
    assert_eq!(h.answer("browser-answer").await, Ok(()));
    h.over().await;
    assert_eq!(h.sip.cmds(), vec![Sip::Reject(SIP_IN, 488), Sip::Unroute(SIP_IN)]);
    assert_eq!(h.party.statuses(), vec![st(RING, ""), st(FAILED, TRANSCODING_REQUIRED)]);
}

// ---------------------------------------------------------------------------------------------
// 10. The browser's media fails

#[tokio::test(start_paused = true)]
async fn ice_failure_hangs_up_and_fails_the_call() {
    let mut h = Harness::new();
    h.established().await;
    let n = h.party.statuses().len();
    h.media.event(MediaEvent::Connected);
    settle().await;
    assert_eq!(h.sip.cmds(), vec![invite_to("bob", "sip-offer")]);
    h.media.event(MediaEvent::Failed(FailReason::IceTimeout));
    settle().await;
    assert_eq!(h.sip.cmds().last(), Some(&Sip::Hangup(SIP1)));
    assert_eq!(h.party.statuses().len(), n, "FAILED waits for the BYE's end");
    h.sip(CallEvent::Ended { remote: false }).await;
    h.over().await;
    assert_eq!(h.party.statuses().last(), Some(&st(FAILED, FAILED_BY_ICE_ERROR)));
    assert_eq!(h.media.cmds().last(), Some(&Media::Close(PEER)));
    assert_eq!(h.listed(), vec![Listed::SipKnown(SIP1), Listed::Unlist]);
}

#[tokio::test(start_paused = true)]
async fn media_failure_with_bye_not_sent_ends_at_once() {
    let mut h = Harness::new();
    h.established().await;
    h.sip.fail("hangup", "the call is gone");
    h.media.event(MediaEvent::Failed(FailReason::IceKeepAlive));
    settle().await;
    h.over().await;
    assert_eq!(h.party.statuses().last(), Some(&st(FAILED, FAILED_BY_ICE_ERROR)));
}

// ---------------------------------------------------------------------------------------------
// 11. DTMF from the peer

#[tokio::test(start_paused = true)]
async fn peer_info_dtmf_reaches_client_and_backend() {
    let mut h = Harness::new();
    h.established().await;
    h.sip(CallEvent::Dtmf { digit: '5', duration_ms: 160 }).await;
    let raised = h.party.raised();
    let ev = raised.last().expect("an event");
    assert_eq!(ev.method, HookMethod::OnDataEvent);
    assert_eq!(ev.origin, Origin::Sip);
    assert_eq!(ev.client, Some(messages::ON_DATA_EVENT));
    assert_eq!(
        ev.data.get("payload"),
        Some(&json!({"type": "DTMF", "callId": CALL_ID, "dtmf": "5", "duration": 160, "method": "INFO"}))
    );
    assert_eq!(text(&ev.data, "sessionId"), "session-1");
    assert!(!text(&ev.data, "operationId").is_empty());
    assert_eq!(h.sip.cmds(), vec![invite_to("bob", "sip-offer")], "the user agent answers the INFO");
    assert!(!h.is_over());
}

// ---------------------------------------------------------------------------------------------
// 12. A REST-started call (RTP leg)

fn rest_request(callee: &str) -> Map<String, Value> {
    obj(json!({
        "callId": CALL_ID, "incoming": false, "caller": "alice", "callee": callee,
        "nodeId": "node-1", "appKey": "defaultApp", "sessionId": "session-1",
    }))
}

#[tokio::test(start_paused = true)]
async fn rest_call_uses_an_rtp_leg() {
    let mut h = Harness::new();
    h.outgoing(Origin::RestApi, Leg::Rtp, rest_request("bob"), Some("example.com")).await;
    assert_eq!(h.party.log.lock().hooks, vec![(HookMethod::Call, Origin::RestApi)]);
    assert_eq!(h.media.cmds(), vec![Media::RtpLeg(PEER)]);
    assert_eq!(h.party.frames(), vec![], "no setRemoteSDP: there is no browser");
    assert_eq!(h.sip.cmds(), vec![invite_to("bob", "rtp-offer")]);
    assert_eq!(h.party.statuses(), vec![st(TRYING, "")]);
    let view = h.view();
    assert_eq!(view.get("hasAudio"), Some(&json!(true)));
    assert_eq!(view.get("hasVideo"), Some(&json!(false)));
    h.sip(CallEvent::Established { sdp: Some(Bytes::from_static(b"sip-answer")) }).await;
    assert_eq!(h.party.statuses().last(), Some(&st(ESTABLISHED, "")));
}

#[tokio::test(start_paused = true)]
async fn rest_call_whose_hook_removed_the_callee() {
    let mut h = Harness::new();
    h.party.script(HookMethod::Call, Hook::Set(obj(json!({"callee": ""}))));
    h.outgoing(Origin::RestApi, Leg::Rtp, rest_request("bob"), Some("example.com")).await;
    h.over().await;
    // The call object names the caller as callee; the call is not placed.
    assert_eq!(text(&h.view(), "callee"), "alice");
    assert_eq!(h.party.statuses(), vec![st(FAILED, CALL_HOOK_REMOVED_CALLEE)]);
    assert_eq!(text(&h.party.last_status(), "callee"), "alice");
    assert_eq!(h.sip.cmds(), vec![]);
    assert_eq!(h.media.cmds(), vec![Media::Close(PEER)], "no RTP leg");
    assert_eq!(h.listed(), vec![Listed::Unlist]);
}

#[tokio::test(start_paused = true)]
async fn call_hook_overwrite_changes_callee_but_not_the_ids() {
    let mut h = Harness::new();
    h.party.script(HookMethod::Call, Hook::Set(obj(json!({"callee": " 2000 ", "callId": "evil", "sessionId": "x"}))));
    h.call().await;
    assert_eq!(h.sip.cmds(), vec![invite_to("2000", "sip-offer")]);
    let view = h.view();
    assert_eq!(text(&view, "callId"), CALL_ID);
    assert_eq!(text(&view, "sessionId"), "session-1");
}

// ---------------------------------------------------------------------------------------------
// 13. Abort (server shutdown once the SIP side has stopped)

#[tokio::test(start_paused = true)]
async fn abort_ends_the_call_without_a_sip_word() {
    let mut h = Harness::new();
    h.established().await;
    h.input(Input::Abort { info: SERVER_SHUTDOWN }).await;
    h.over().await;
    assert_eq!(h.party.statuses().last(), Some(&st(FAILED, SERVER_SHUTDOWN)));
    assert_eq!(h.sip.cmds(), vec![invite_to("bob", "sip-offer"), Sip::Unroute(SIP1)], "no BYE");
    assert_eq!(h.media.cmds().last(), Some(&Media::Close(PEER)));
    assert_eq!(h.listed(), vec![Listed::SipKnown(SIP1), Listed::Unlist]);
}

#[tokio::test(start_paused = true)]
async fn abort_during_call_hook() {
    let mut h = Harness::new();
    h.party.script(HookMethod::Call, Hook::After(Duration::from_secs(10), Box::new(Hook::Ok)));
    h.call().await;
    h.input(Input::Abort { info: SERVER_SHUTDOWN }).await;
    h.over().await;
    assert_eq!(h.party.statuses(), vec![st(FAILED, SERVER_SHUTDOWN)]);
    assert_eq!(h.sip.cmds(), vec![]);
}

#[tokio::test(start_paused = true)]
async fn inbox_closed_ends_the_call() {
    let mut h = Harness::new();
    h.established().await;
    let (dead, _) = mpsc::unbounded_channel();
    drop(std::mem::replace(&mut h.inbox, dead));
    settle().await;
    h.over().await;
    assert_eq!(h.party.statuses().last(), Some(&st(FAILED, SERVER_SHUTDOWN)));
    assert_eq!(h.sip.cmds(), vec![invite_to("bob", "sip-offer"), Sip::Unroute(SIP1)]);
}

/// `Input::Abort` says "end now, without a word to the SIP peer": during the INVITE the call
/// ends as soon as the INVITE returns, with no CANCEL (a pending hangup would send one).
#[tokio::test(start_paused = true)]
async fn abort_during_invite_ends_without_a_sip_word() {
    let mut h = Harness::new();
    *h.sip.0.invite_delay.lock() = Some(Duration::from_secs(5));
    h.call().await;
    h.input(Input::Abort { info: SERVER_SHUTDOWN }).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(h.is_over());
    assert_eq!(h.party.statuses(), vec![st(TRYING, ""), st(FAILED, SERVER_SHUTDOWN)]);
    assert!(!h.sip.cmds().contains(&Sip::Hangup(SIP1)), "{:?}", h.sip.cmds());
}

// ---------------------------------------------------------------------------------------------
// Transfer (REFER)

#[tokio::test(start_paused = true)]
async fn transfer_reports_its_progress() {
    let mut h = Harness::new();
    h.established().await;
    assert!(matches!(h.act(HookMethod::Transfer, json!({})).await, Err(ActError::BadRequest(_))));
    assert_eq!(h.act(HookMethod::Transfer, json!({"target": "carol"})).await, Ok(()));
    assert_eq!(h.sip.cmds().last(), Some(&Sip::Refer(SIP1, "sip:carol@example.com".into())));
    h.sip(CallEvent::TransferAccepted).await;
    h.sip(CallEvent::TransferProgress {
        status: 100,
        reason: "Trying".into(),
        terminated: false,
        raw: Bytes::from_static(b"NOTIFY"),
    })
    .await;
    h.sip(CallEvent::TransferProgress {
        status: 200,
        reason: "OK".into(),
        terminated: true,
        raw: Bytes::from_static(b"NOTIFY"),
    })
    .await;
    let transfers: Vec<_> = h
        .party
        .raised()
        .into_iter()
        .filter(|r| r.method == HookMethod::TransferStatusEvent)
        .map(|r| {
            assert_eq!(r.client, Some(messages::NOTIFY_TRANSFER_EVENT));
            text(&r.data, "status")
        })
        .collect();
    use callgate_proto::status::transfer;
    assert_eq!(transfers, vec![transfer::ACCEPTED, transfer::TRYING, transfer::COMPLETED]);
    // A refused REFER.
    h.sip(CallEvent::TransferFailed(sip_status(603, "Decline"))).await;
    let last = h.party.raised().last().expect("an event").data.clone();
    assert_eq!(text(&last, "status"), transfer::FAILED);
    assert_eq!(last.get("sipStatus"), Some(&json!(603)));
    assert!(!h.is_over());
}
