//! What the user agent tells its application ([`crate::ua::UserAgent::poll_event`]).
//!
//! Every failure carries a [`Failure`]; one caused by a response keeps that response's raw
//! bytes, which the error mapper turns into `sipMessageRaw`.

use std::net::SocketAddr;

use bytes::Bytes;

use super::sdp::Direction;
use super::types::{CallId, Failure, MsgId, RegId, ReqId, SubId, Transport};

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UaEvent {
    Registration {
        reg: RegId,
        event: RegEvent,
    },
    Call {
        call: CallId,
        event: CallEvent,
    },
    /// A new INVITE outside any dialog. Answer with `answer`, `provisional` or `reject`.
    IncomingCall(IncomingCall),
    /// A MESSAGE, outside a dialog or in a call. Answer with `respond`.
    IncomingMessage(IncomingMessage),
    /// The final outcome of an outgoing MESSAGE: the 2xx status, or why it failed.
    MessageResult {
        msg: MsgId,
        result: Result<u16, Failure>,
    },
    Subscription {
        sub: SubId,
        event: SubEvent,
    },
}

/// Registration progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegEvent {
    /// A 2xx to REGISTER: the lifetime the registrar granted. `refresh` is false for the
    /// first registration and true for each refresh after it.
    Registered { expires: u32, refresh: bool },
    /// A 2xx to the un-REGISTER (or the registration was never made and nothing was sent).
    Unregistered,
    /// The REGISTER (or its refresh, or the un-REGISTER) failed; the registration is gone.
    Failed(Failure),
}

/// Call progress, for outgoing and incoming calls alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// `100 Trying` to our INVITE.
    Trying,
    /// `180 Ringing` (or another 18x but 183), with its SDP if any.
    Ringing { sdp: Option<Bytes> },
    /// `183 Session Progress`, with its SDP if any (early media).
    SessionProgress { sdp: Option<Bytes> },
    /// Outgoing: a 2xx arrived and was ACKed (its SDP is the answer). Incoming: the ACK of
    /// our 2xx arrived (its SDP, if the offer was in our 2xx).
    Established { sdp: Option<Bytes> },
    /// The call did not get established: a final 3xx-6xx, a timeout, a transport error, or
    /// (incoming) our 2xx was never ACKed.
    Failed(Failure),
    /// The established (or cancelled) call is over: by a BYE from the peer (`remote`), by our
    /// BYE or CANCEL completing (`!remote`).
    Ended { remote: bool },
    /// The peer cancelled an incoming call before it was answered (§9.2). The call is gone.
    Cancelled,
    /// The outcome of our hold or unhold re-INVITE: the answer SDP, or why it failed (the
    /// call goes on; a 481 or a timeout also ends it, with an `Ended` after this).
    HoldResult { hold: bool, result: Result<Option<Bytes>, Failure> },
    /// The peer sent a re-INVITE or an UPDATE (RFC 3311) with a new offer; `direction` is
    /// its own direction (`SendOnly` or `Inactive`: it holds the call). Answer with `answer`
    /// (whose SDP direction is set to mirror the offer's) or `reject`. Session refreshes
    /// (no offer, or the peer's last SDP again) are answered by the user agent alone.
    IncomingReInvite { sdp: Option<Bytes>, direction: Direction, hold: bool },
    /// The peer's answer to the offer we put in our 2xx to its offer-less re-INVITE arrived
    /// in its ACK and differs from its last SDP (RFC 3261 §14.2, RFC 3264).
    PeerAnswer { sdp: Bytes, direction: Direction, hold: bool },
    /// The peer, the session refresher (RFC 4028), did not refresh the session in time: the
    /// user agent sends BYE (`Ended` follows).
    SessionExpired,
    /// Our REFER was accepted (2xx).
    TransferAccepted,
    /// A NOTIFY of our REFER's implicit subscription: the sipfrag status line. `terminated`
    /// when the subscription ended with it; `raw` is the NOTIFY as received (the
    /// `sipMessageRaw` of a transfer that failed with a 3xx-6xx sipfrag).
    TransferProgress { status: u16, reason: String, terminated: bool, raw: Bytes },
    /// Our REFER was refused (or timed out).
    TransferFailed(Failure),
    /// The peer asks us to transfer the call (REFER, RFC 3515). Answer with `respond`
    /// (202 to accept), then report progress with `notify_transfer`.
    IncomingRefer { req: ReqId, target: String, referred_by: Option<String> },
    /// A DTMF digit received as SIP INFO (`application/dtmf-relay`).
    Dtmf { digit: char, duration_ms: u32 },
    /// The outcome of our DTMF INFO.
    DtmfResult(Result<(), Failure>),
}

/// A new incoming INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingCall {
    pub call: CallId,
    /// The INVITE's Call-ID (WCS uses it as the client's `callId` of an incoming call).
    pub sip_call_id: String,
    /// The registration whose Contact user matches the Request-URI user, if any.
    pub reg: Option<RegId>,
    pub request_uri: String,
    /// From and To as received (name-addr text).
    pub from: String,
    pub to: String,
    /// The caller's URI and display name (unquoted).
    pub from_uri: String,
    pub display_name: Option<String>,
    pub sdp: Option<Bytes>,
    pub source: SocketAddr,
    pub transport: Transport,
    /// The INVITE as received.
    pub raw: Bytes,
}

/// A received MESSAGE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    /// Answer it with [`crate::ua::UserAgent::respond`].
    pub req: ReqId,
    /// The call it arrived in, when in a dialog.
    pub call: Option<CallId>,
    pub reg: Option<RegId>,
    pub from: String,
    pub from_uri: String,
    pub to: String,
    /// The content type and body; for `message/cpim` (RFC 3862), those of the wrapped
    /// message, with the CPIM headers in `cpim`.
    pub content_type: String,
    pub body: Bytes,
    pub cpim: Option<super::message::CpimInfo>,
    /// Where it came from (the application may accept out-of-dialog requests only from a
    /// registration's next hop).
    pub source: SocketAddr,
    pub raw: Bytes,
}

/// Subscription progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubEvent {
    /// A 2xx to SUBSCRIBE (or to a refresh) with the granted lifetime.
    Accepted {
        expires: u32,
    },
    /// A NOTIFY: its `Subscription-State` value, content type and body.
    Notify {
        state: String,
        content_type: Option<String>,
        body: Bytes,
        raw: Bytes,
    },
    /// The subscription is over (a NOTIFY said `terminated`, or our un-SUBSCRIBE completed).
    Terminated {
        reason: Option<String>,
    },
    Failed(Failure),
}
