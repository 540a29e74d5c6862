//! Calls: INVITE sessions as UAC and UAS (RFC 3261 §13-15), with CANCEL (§9), forking
//! (§13.2.2.4: the first 2xx wins, later ones are ACKed and BYEd), hold/unhold re-INVITEs
//! (RFC 3264 §8.4), REFER (RFC 3515) and INFO DTMF.
//!
//! ```text
//! outgoing: Calling --1xx--> Early --2xx/ACK--> Confirmed --BYE--> Ending --> (gone)
//!              '---------- 3xx-6xx / timeout / CANCEL+487 -------------------> (gone)
//! incoming: Incoming --answer (2xx)--> Answered --ACK--> Confirmed --BYE--> ...
//!              '--reject / CANCEL--> (gone)       '--no ACK in 64*T1--> BYE, Failed
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::dialog::Dialog;
use crate::message::Message;
use crate::method::Method;
use crate::name::HeaderName;
use crate::txn::TxnKey;
use crate::uri::Uri;

use super::auth::{Attempts, Creds};
use super::request::ReqSpec;
use super::sdp::{self, Direction};
use super::session_timer::{self, Refresher, SessionTimer};
use super::{
    Account, CallEvent, CallId, ClientAuth, DialogOwner, Failure, Owner, Transport, UaError, UaEvent, UaTimer,
    UserAgent,
};

/// What a call's client transaction is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallOp {
    Invite,
    ReInvite {
        hold: bool,
    },
    /// A session refresh (RFC 4028): re-INVITE with our last SDP, or UPDATE without a body.
    Refresh {
        invite: bool,
    },
    Cancel,
    Bye,
    Refer,
    Info,
    Notify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Uac,
    Uas,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// UAC: INVITE sent, no response yet.
    Calling,
    /// UAC: a provisional response arrived.
    Early,
    /// UAS: INVITE received, not answered yet.
    Incoming,
    /// UAS: 2xx sent, waiting for the ACK.
    Answered,
    Confirmed,
    /// BYE sent (or to be sent once the ACK of our 2xx arrives).
    Ending,
}

/// Our 2xx to an INVITE, retransmitted until the ACK arrives (§13.3.1.4).
pub(super) struct Retx {
    bytes: Bytes,
    dst: SocketAddr,
    transport: Transport,
    cseq: u32,
    next: Instant,
    interval: Duration,
    until: Instant,
    initial: bool,
}

impl Retx {
    pub fn is_initial(&self) -> bool {
        self.initial
    }
}

/// An ACK we sent for a 2xx, resent when that 2xx is retransmitted.
struct SentAck {
    remote_tag: String,
    cseq: u32,
    bytes: Bytes,
    dst: SocketAddr,
}

pub(super) struct Call {
    pub role: Role,
    pub state: State,
    pub account: Option<Account>,
    pub call_id: String,
    pub local_tag: String,
    pub contact: String,
    pub transport: Transport,
    /// The first hop the call was set up through: in-dialog requests go there when the
    /// route set and remote target name no IP address.
    pub peer: SocketAddr,
    pub dialog: Option<Dialog>,
    /// UAC: the INVITE last sent (for CANCEL and for dialogs of other forks). UAS: the INVITE
    /// received.
    pub invite: Option<Message>,
    pub invite_key: Option<TxnKey>,
    cancel_wanted: bool,
    cancel_sent: bool,
    acks: Vec<SentAck>,
    /// UAS: the INVITE or re-INVITE server transaction waiting for our final answer.
    pub server_key: Option<TxnKey>,
    pub retx: Option<Retx>,
    /// Our re-INVITE in flight.
    reinvite_out: Option<TxnKey>,
    /// The last REFER from the peer (its CSeq names the implicit subscription, RFC 3515 §2.4.6).
    pub refer_in_cseq: Option<u32>,
    /// After our CANCEL, the INVITE must end within 64*T1 (§9.1).
    cancel_deadline: Option<Instant>,
    /// UAC: no final response by then: the INVITE is cancelled (`UaConfig::no_answer_timeout`).
    answer_deadline: Option<Instant>,
    /// The answer deadline passed: the call ends `Failed(NoAnswer)`, however the INVITE ends.
    no_answer: Option<Duration>,
    bye_wanted: bool,
    /// The last SDP we sent in this call (offer or answer), for `o=` versions.
    pub last_sdp: Option<Bytes>,
    /// The last SDP the peer sent, to tell a session refresh from a new offer.
    pub remote_sdp: Option<Bytes>,
    /// The direction of the peer's offer waiting for our answer (our answer mirrors it,
    /// RFC 3264 §6.1).
    pub offer_in: Option<Direction>,
    /// Our last re-INVITE that succeeded put the call on hold: our answers to the peer's
    /// offers keep not receiving.
    pub local_hold: bool,
    /// Our re-INVITE refused with 491, to be sent again (RFC 3261 §14.1).
    retry: Option<Retry>,
    /// 491s in a row to our re-INVITE.
    retries_491: u8,
    /// The negotiated session timer (RFC 4028), if any.
    pub timer: Option<SessionTimer>,
    /// The peer's `Allow` lists UPDATE: our session refreshes use it (no offer/answer).
    pub peer_allows_update: bool,
}

/// A re-INVITE of ours that got 491, waiting for its random delay to pass.
struct Retry {
    at: Instant,
    sdp: Bytes,
    hold: bool,
}

/// Our re-INVITE is retried this many times after a 491 before its failure is reported.
const MAX_491_RETRIES: u8 = 3;

impl Call {
    fn new(
        role: Role,
        state: State,
        call_id: String,
        local_tag: String,
        transport: Transport,
        peer: SocketAddr,
    ) -> Call {
        Call {
            role,
            state,
            account: None,
            call_id,
            local_tag,
            contact: String::new(),
            transport,
            peer,
            dialog: None,
            invite: None,
            invite_key: None,
            cancel_wanted: false,
            cancel_sent: false,
            acks: Vec::new(),
            server_key: None,
            retx: None,
            reinvite_out: None,
            refer_in_cseq: None,
            cancel_deadline: None,
            answer_deadline: None,
            no_answer: None,
            bye_wanted: false,
            last_sdp: None,
            remote_sdp: None,
            offer_in: None,
            local_hold: false,
            retry: None,
            retries_491: 0,
            timer: None,
            peer_allows_update: false,
        }
    }

    /// Makes `body` the next SDP we send in this call: a changed description gets an `o=`
    /// version above the last one we sent (RFC 3264 §8: the media bridge may hand the same
    /// base SDP each time); an unchanged one keeps it.
    pub fn stamp_sdp(&mut self, body: Bytes) -> Bytes {
        if self.last_sdp.as_ref() == Some(&body) {
            return body;
        }
        let last = self.last_sdp.as_deref().and_then(sdp::origin_version);
        let out = match (last, sdp::origin_version(&body)) {
            (Some(l), Some(v)) if v <= l => sdp::with_origin_version(&body, l + 1),
            _ => body,
        };
        self.last_sdp = Some(out.clone());
        out
    }

    pub fn new_incoming(call_id: String, local_tag: String, transport: Transport, peer: SocketAddr) -> Call {
        Call::new(Role::Uas, State::Incoming, call_id, local_tag, transport, peer)
    }

    fn creds(&self) -> Option<Creds> {
        self.account.as_ref().map(Creds::of)
    }

    /// The CSeq of the retry of a challenged request: in the dialog, its next number; for
    /// the initial INVITE, one above it.
    pub fn next_cseq(&mut self, op: CallOp) -> Option<u32> {
        match (op, &mut self.dialog) {
            (CallOp::Invite, _) => None,
            (_, Some(d)) => Some(d.next_local_seq()),
            (_, None) => None,
        }
    }

    pub fn on_request_restarted(&mut self, op: CallOp, key: TxnKey, msg: Message) {
        match op {
            CallOp::Invite => {
                self.invite_key = Some(key);
                self.invite = Some(msg);
                // A CANCEL needs a provisional response of the new transaction (§9.1).
                self.cancel_sent = false;
                if self.state == State::Early {
                    self.state = State::Calling;
                }
            }
            CallOp::ReInvite { .. } | CallOp::Refresh { invite: true } => self.reinvite_out = Some(key),
            _ => {}
        }
    }

    /// Our re-INVITE is in flight (a re-INVITE from the peer now is glare: 491).
    pub fn has_reinvite_out(&self) -> bool {
        self.reinvite_out.is_some()
    }

    /// An offer exchange is under way: ours in flight or waiting to be retried, or the
    /// peer's waiting for our answer or our 2xx for its ACK.
    pub fn offer_pending(&self) -> bool {
        self.reinvite_out.is_some() || self.retry.is_some() || self.server_key.is_some() || self.retx.is_some()
    }

    /// The direction our answer to an offer of `offered` takes: its mirror (RFC 3264 §6.1),
    /// still not receiving while we hold the call.
    pub fn answer_direction(&self, offered: Direction) -> Direction {
        let (send, recv) = match offered {
            Direction::SendRecv => (true, true),
            Direction::SendOnly => (false, true),
            Direction::RecvOnly => (true, false),
            Direction::Inactive => (false, false),
        };
        match (send, recv && !self.local_hold) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// The direction of an offer of ours that only refreshes the session.
    pub fn own_direction(&self) -> Direction {
        if self.local_hold {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        }
    }

    /// The next deadline of this call's own timers.
    fn deadline(&self) -> Option<Instant> {
        let retx = self.retx.as_ref().map(|r| r.next.min(r.until));
        let answer = self.answer_deadline.filter(|_| matches!(self.state, State::Calling | State::Early));
        [retx, self.cancel_deadline, answer, self.retry.as_ref().map(|r| r.at), self.timer.map(|t| t.due)]
            .into_iter()
            .flatten()
            .min()
    }
}

pub(super) fn sdp_of(msg: &Message) -> Option<Bytes> {
    if msg.body().is_empty() {
        return None;
    }
    match msg.content_type() {
        Ok(Some(ct)) if !ct.is("application", "sdp") => None,
        _ => Some(msg.body_bytes()),
    }
}

impl UserAgent {
    fn call_mut(&mut self, id: CallId) -> Result<&mut Call, UaError> {
        self.calls.get_mut(&id).ok_or(UaError::UnknownCall(id))
    }

    pub(super) fn arm_call(&mut self, id: CallId) {
        let at = self.calls.get(&id).and_then(Call::deadline);
        self.timers.set(UaTimer::Call(id), at);
    }

    pub(super) fn remove_call(&mut self, id: CallId) {
        if let Some(c) = self.calls.remove(&id) {
            self.dialogs.remove(&(c.call_id, c.local_tag));
        }
        self.timers.set(UaTimer::Call(id), None);
    }

    fn call_event(&mut self, call: CallId, event: CallEvent) {
        self.events.push_back(UaEvent::Call { call, event });
    }

    // ----- commands ------------------------------------------------------------------------

    /// Calls `to` (a SIP URI) from `account` with the SDP offer `sdp`. `extra_headers` are
    /// added to the INVITE as given. Events: `Trying`, `Ringing`, `SessionProgress`, then
    /// `Established` or `Failed`.
    pub fn invite(
        &mut self,
        now: Instant,
        account: &Account,
        to: &str,
        sdp: Bytes,
        extra_headers: &[(String, String)],
    ) -> Result<CallId, UaError> {
        Uri::parse(to).map_err(|e| UaError::InvalidArgument { what: "callee URI", why: e.to_string() })?;
        let id = CallId(self.new_id());
        let call_id = self.rng.call_id();
        let local_tag = self.rng.tag();
        let contact = self.contact_for(account);
        let mut headers =
            vec![("Allow".to_owned(), super::ALLOW.to_owned()), ("Supported".to_owned(), super::SUPPORTED.to_owned())];
        headers.extend(extra_headers.iter().cloned());
        let spec = ReqSpec {
            method: Method::Invite,
            uri: to.to_owned(),
            cseq: self.rng.cseq(),
            routes: Vec::new(),
            from: format!("{};tag={local_tag}", account.name_addr()),
            to: format!("<{to}>"),
            call_id: call_id.clone(),
            contact: Some(contact.clone()),
            headers,
            body: Some(("application/sdp".to_owned(), sdp)),
            transport: account.transport,
        };
        let offer = spec.body.as_ref().map(|(_, b)| b.clone());
        let mut call = Call::new(
            Role::Uac,
            State::Calling,
            call_id.clone(),
            local_tag.clone(),
            account.transport,
            account.next_hop,
        );
        call.account = Some(account.clone());
        call.last_sdp = offer;
        call.contact = contact;
        call.answer_deadline = Some(now + self.cfg.no_answer_timeout);
        let creds = call.creds();
        self.calls.insert(id, call);
        match self.start_client(now, Owner::Call(id, CallOp::Invite), spec, account.next_hop, ClientAuth::new(creds)) {
            Ok((key, msg)) => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.invite_key = Some(key);
                    c.invite = Some(msg);
                }
            }
            Err(e) => {
                self.calls.remove(&id);
                return Err(e);
            }
        }
        self.dialogs.insert((call_id, local_tag), DialogOwner::Call(id));
        self.arm_call(id);
        self.pump(now);
        Ok(id)
    }

    /// Cancels an outgoing call that has no final response yet. Before any provisional
    /// response the CANCEL waits for one (§9.1). Event: `Ended { remote: false }` when the
    /// INVITE ends with 487 (or `Established`-then-BYE if a 2xx crossed the CANCEL).
    pub fn cancel(&mut self, now: Instant, id: CallId) -> Result<(), UaError> {
        let call = self.call_mut(id)?;
        if call.role != Role::Uac || !matches!(call.state, State::Calling | State::Early) {
            return Err(UaError::InvalidState { what: "CANCEL", why: "the call is not an unanswered outgoing call" });
        }
        call.cancel_wanted = true;
        if call.state == State::Early && !call.cancel_sent {
            self.send_cancel(now, id);
        }
        self.pump(now);
        Ok(())
    }

    fn send_cancel(&mut self, now: Instant, id: CallId) {
        let ua = self.cfg.user_agent.clone();
        let t1x64 = self.cfg.timers.t1x64();
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(invite) = call.invite.clone() else { return };
        let Ok(cancel) = super::request::cancel_for(&invite, &ua) else { return };
        let Some(branch) = invite.via().ok().and_then(|v| v.branch.map(str::to_owned)) else { return };
        call.cancel_sent = true;
        call.cancel_deadline = Some(now + t1x64);
        let (dst, transport) = (call.peer, call.transport);
        let key = TxnKey::client(Bytes::from(branch), b"CANCEL");
        let txn = crate::txn::ClientTxn::non_invite(now, cancel.to_bytes(), self.timer_config(transport));
        self.clients.insert(
            key.clone(),
            super::ClientCtx {
                owner: Owner::Call(id, CallOp::Cancel),
                spec: None,
                request: cancel,
                dst,
                transport,
                creds: None,
                attempts: Attempts::default(),
                last_from: None,
            },
        );
        self.txns.start_client(key, txn);
        self.arm_call(id);
    }

    /// Ends an established call with BYE. Event: `Ended { remote: false }` when the BYE
    /// completes (whatever its outcome).
    pub fn bye(&mut self, now: Instant, id: CallId) -> Result<(), UaError> {
        let call = self.call_mut(id)?;
        match call.state {
            State::Confirmed => {}
            // §15: the callee waits for the ACK of its 2xx before sending BYE.
            State::Answered => {
                call.bye_wanted = true;
                call.state = State::Ending;
                return Ok(());
            }
            _ => return Err(UaError::InvalidState { what: "BYE", why: "the call is not established" }),
        }
        call.state = State::Ending;
        call.retx = None;
        self.send_in_dialog(now, id, CallOp::Bye, Method::Bye, Vec::new(), None)?;
        self.arm_call(id);
        self.pump(now);
        Ok(())
    }

    /// Ends the call whatever its state: CANCEL (outgoing, unanswered), `486 Busy Here`
    /// (incoming, unanswered), BYE (established).
    pub fn hangup(&mut self, now: Instant, id: CallId) -> Result<(), UaError> {
        let call = self.calls.get(&id).ok_or(UaError::UnknownCall(id))?;
        match (call.role, call.state) {
            (_, State::Ending) => Ok(()),
            (Role::Uac, State::Calling | State::Early) => self.cancel(now, id),
            (Role::Uas, State::Incoming) => self.reject(now, id, 486, None),
            _ => self.bye(now, id),
        }
    }

    /// Puts the call on hold: a re-INVITE whose offer is `sdp` with every direction set to
    /// `sendonly` (and its `o=` version bumped). Event: `HoldResult { hold: true, .. }`.
    pub fn reinvite_hold(&mut self, now: Instant, id: CallId, sdp: &[u8]) -> Result<(), UaError> {
        self.reinvite(now, id, sdp::with_direction(sdp, Direction::SendOnly), true)
    }

    /// Takes the call off hold: the same with `sendrecv`. Event: `HoldResult { hold: false, .. }`.
    pub fn reinvite_unhold(&mut self, now: Instant, id: CallId, sdp: &[u8]) -> Result<(), UaError> {
        self.reinvite(now, id, sdp::with_direction(sdp, Direction::SendRecv), false)
    }

    fn reinvite(&mut self, now: Instant, id: CallId, sdp: Bytes, hold: bool) -> Result<(), UaError> {
        let call = self.call_mut(id)?;
        if call.state != State::Confirmed {
            return Err(UaError::InvalidState { what: "re-INVITE", why: "the call is not established" });
        }
        if call.offer_pending() {
            return Err(UaError::InvalidState { what: "re-INVITE", why: "another offer is in progress" });
        }
        self.send_reinvite(now, id, sdp, hold)
    }

    /// Sends our re-INVITE with the offer `sdp` (its `o=` version raised when it changed);
    /// with a session timer it carries `Session-Expires` (any re-INVITE refreshes, RFC 4028).
    fn send_reinvite(&mut self, now: Instant, id: CallId, sdp: Bytes, hold: bool) -> Result<(), UaError> {
        let call = self.call_mut(id)?;
        let sdp = call.stamp_sdp(sdp);
        let mut headers =
            vec![("Allow".to_owned(), super::ALLOW.to_owned()), ("Supported".to_owned(), super::SUPPORTED.to_owned())];
        if let Some(t) = &call.timer {
            headers.push(("Session-Expires".to_owned(), t.header(true)));
        }
        let key = self.send_in_dialog(
            now,
            id,
            CallOp::ReInvite { hold },
            Method::Invite,
            headers,
            Some(("application/sdp".into(), sdp)),
        )?;
        self.call_mut(id)?.reinvite_out = Some(key);
        self.pump(now);
        Ok(())
    }

    /// Blind transfer (RFC 3515): REFER with `Refer-To: <target>`. Events: `TransferAccepted`
    /// or `TransferFailed`, then `TransferProgress` for each NOTIFY.
    pub fn refer(&mut self, now: Instant, id: CallId, target: &str) -> Result<(), UaError> {
        Uri::parse(target).map_err(|e| UaError::InvalidArgument { what: "transfer target", why: e.to_string() })?;
        let call = self.call_mut(id)?;
        if call.state != State::Confirmed {
            return Err(UaError::InvalidState { what: "REFER", why: "the call is not established" });
        }
        let mut headers = vec![("Refer-To".to_owned(), format!("<{target}>"))];
        if let Some(a) = &call.account {
            headers.push(("Referred-By".to_owned(), format!("<{}>", a.aor())));
        }
        self.send_in_dialog(now, id, CallOp::Refer, Method::Refer, headers, None)?;
        self.pump(now);
        Ok(())
    }

    /// Sends a DTMF digit (`0-9`, `*`, `#`, `A-D`) as INFO `application/dtmf-relay`.
    /// Event: `DtmfResult`.
    pub fn info_dtmf(&mut self, now: Instant, id: CallId, digit: char) -> Result<(), UaError> {
        let digit = digit.to_ascii_uppercase();
        if !matches!(digit, '0'..='9' | '*' | '#' | 'A'..='D') {
            return Err(UaError::InvalidArgument { what: "DTMF digit", why: format!("{digit:?} is not a DTMF digit") });
        }
        if self.call_mut(id)?.state != State::Confirmed {
            return Err(UaError::InvalidState { what: "INFO", why: "the call is not established" });
        }
        let body = Bytes::from(format!("Signal={digit}\r\nDuration=160\r\n"));
        self.send_in_dialog(
            now,
            id,
            CallOp::Info,
            Method::Info,
            Vec::new(),
            Some(("application/dtmf-relay".into(), body)),
        )?;
        self.pump(now);
        Ok(())
    }

    /// Reports the progress of a transfer the peer asked for (after `respond(req, 202)`):
    /// a NOTIFY with `message/sipfrag` `SIP/2.0 {status} {reason}`; a final status (≥ 200)
    /// ends the implicit subscription.
    pub fn notify_transfer(&mut self, now: Instant, id: CallId, status: u16, reason: &str) -> Result<(), UaError> {
        let call = self.call_mut(id)?;
        let Some(refer_seq) = call.refer_in_cseq else {
            return Err(UaError::InvalidState { what: "NOTIFY", why: "no REFER was received in this call" });
        };
        if !(100..700).contains(&status) {
            return Err(UaError::InvalidArgument { what: "status", why: status.to_string() });
        }
        let state =
            if status >= 200 { "terminated;reason=noresource".to_owned() } else { "active;expires=60".to_owned() };
        let headers =
            vec![("Event".to_owned(), format!("refer;id={refer_seq}")), ("Subscription-State".to_owned(), state)];
        let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
        let body = Bytes::from(format!("SIP/2.0 {status} {reason}\r\n"));
        self.send_in_dialog(
            now,
            id,
            CallOp::Notify,
            Method::Notify,
            headers,
            Some(("message/sipfrag;version=2.0".into(), body)),
        )?;
        self.pump(now);
        Ok(())
    }

    /// Starts a request inside the call's dialog (§12.2.1.1).
    fn send_in_dialog(
        &mut self,
        now: Instant,
        id: CallId,
        op: CallOp,
        method: Method,
        headers: Vec<(String, String)>,
        body: Option<(String, Bytes)>,
    ) -> Result<TxnKey, UaError> {
        let call = self.calls.get_mut(&id).ok_or(UaError::UnknownCall(id))?;
        let creds = call.creds();
        let contact = (method != Method::Bye).then(|| call.contact.clone());
        let (transport, peer) = (call.transport, call.peer);
        let dialog =
            call.dialog.as_mut().ok_or(UaError::InvalidState { what: "in-dialog request", why: "no dialog" })?;
        let cseq = dialog.next_local_seq();
        let route = dialog.route();
        let spec = ReqSpec {
            method,
            uri: route.request_uri,
            cseq,
            routes: route.routes,
            from: dialog.local_party().to_owned(),
            to: dialog.remote_party().to_owned(),
            call_id: dialog.call_id.clone(),
            contact,
            headers,
            body,
            transport,
        };
        let dst = Self::uri_addr(&route.next_hop, peer);
        let (key, _) = self.start_client(now, Owner::Call(id, op), spec, dst, ClientAuth::new(creds))?;
        Ok(key)
    }

    // ----- responses to our requests -------------------------------------------------------

    pub(super) fn call_on_response(&mut self, now: Instant, id: CallId, op: CallOp, key: &TxnKey, resp: &Message) {
        let status = resp.status().map_or(0, |s| s.as_u16());
        let Some(call) = self.calls.get_mut(&id) else {
            if op == CallOp::Invite && (200..300).contains(&status) {
                // The call was dropped while the INVITE was out: ACK and BYE the answer.
                self.on_stray_2xx(now, resp);
            }
            return;
        };
        match op {
            CallOp::Invite => {
                if call.invite_key.as_ref() != Some(key) {
                    return;
                }
                if status < 200 {
                    self.on_provisional(now, id, status, resp);
                } else if status < 300 {
                    self.on_invite_2xx(now, id, resp);
                } else {
                    let cancelled = call.cancel_sent && status == 487;
                    let no_answer = call.no_answer;
                    self.remove_call(id);
                    let event = match no_answer {
                        Some(after) if cancelled => CallEvent::Failed(Failure::NoAnswer(after)),
                        _ if cancelled => CallEvent::Ended { remote: false },
                        _ => CallEvent::Failed(Failure::from_response(resp)),
                    };
                    self.call_event(id, event);
                }
            }
            CallOp::ReInvite { hold } => {
                if (200..300).contains(&status) {
                    self.on_reinvite_2xx(now, id, hold, key, resp);
                } else if status >= 300 {
                    if call.reinvite_out.as_ref() == Some(key) {
                        call.reinvite_out = None;
                    }
                    if status == 491 && self.schedule_491_retry(now, id, hold, key) {
                        return;
                    }
                    self.call_event(id, CallEvent::HoldResult { hold, result: Err(Failure::from_response(resp)) });
                    self.end_after_failed_mid_dialog(now, id, Some(status));
                }
            }
            CallOp::Refresh { invite } => {
                if call.reinvite_out.as_ref() == Some(key) && status >= 200 {
                    call.reinvite_out = None;
                }
                if (200..300).contains(&status) {
                    if invite {
                        if self.resend_ack(id, resp) {
                            return;
                        }
                        if let Some(req) = self.clients.get(key).map(|c| c.request.clone()) {
                            self.send_ack(id, &req, resp);
                        }
                    }
                    self.on_refreshed(now, id, Some(resp), true);
                } else if status >= 300 {
                    if status == 501 || status == 405 {
                        call.peer_allows_update = false;
                    }
                    self.end_after_failed_mid_dialog(now, id, Some(status));
                    // Anything else (491, 500 with Retry-After): try again a little later.
                    if let Some(t) = self.calls.get_mut(&id).and_then(|c| c.timer.as_mut()) {
                        t.due = now + Duration::from_secs(2);
                    }
                    self.arm_call(id);
                }
            }
            CallOp::Bye => {
                if status >= 200 {
                    self.remove_call(id);
                    self.call_event(id, CallEvent::Ended { remote: false });
                }
            }
            CallOp::Refer => {
                if (200..300).contains(&status) {
                    self.call_event(id, CallEvent::TransferAccepted);
                } else if status >= 300 {
                    self.call_event(id, CallEvent::TransferFailed(Failure::from_response(resp)));
                }
            }
            CallOp::Info => {
                if (200..300).contains(&status) {
                    self.call_event(id, CallEvent::DtmfResult(Ok(())));
                } else if status >= 300 {
                    self.call_event(id, CallEvent::DtmfResult(Err(Failure::from_response(resp))));
                    self.end_after_failed_mid_dialog(now, id, Some(status));
                }
            }
            CallOp::Cancel | CallOp::Notify => {}
        }
    }

    pub(super) fn call_on_failure(&mut self, now: Instant, id: CallId, op: CallOp, failure: Failure) {
        if !self.calls.contains_key(&id) {
            return;
        }
        match op {
            CallOp::Invite => {
                // The user hung up before anything came back: for them the call just ended.
                let (hung_up, no_answer) =
                    self.calls.get(&id).map_or((false, None), |c| (c.cancel_wanted, c.no_answer));
                self.remove_call(id);
                let event = match no_answer {
                    Some(after) => CallEvent::Failed(Failure::NoAnswer(after)),
                    None if hung_up => CallEvent::Ended { remote: false },
                    None => CallEvent::Failed(failure),
                };
                self.call_event(id, event);
            }
            CallOp::ReInvite { hold } => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.reinvite_out = None;
                }
                self.call_event(id, CallEvent::HoldResult { hold, result: Err(failure) });
                self.end_after_failed_mid_dialog(now, id, None);
            }
            CallOp::Refresh { .. } => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.reinvite_out = None;
                }
                self.end_after_failed_mid_dialog(now, id, None);
            }
            CallOp::Bye => {
                self.remove_call(id);
                self.call_event(id, CallEvent::Ended { remote: false });
            }
            CallOp::Refer => self.call_event(id, CallEvent::TransferFailed(failure)),
            CallOp::Info => {
                self.call_event(id, CallEvent::DtmfResult(Err(failure)));
                self.end_after_failed_mid_dialog(now, id, None);
            }
            CallOp::Cancel | CallOp::Notify => {}
        }
    }

    /// RFC 5057 §5.1: a 481 to a request in the dialog means the peer no longer has it; a
    /// timeout (`None`) or 408 means it is unreachable. Either way the call is over.
    fn end_after_failed_mid_dialog(&mut self, now: Instant, id: CallId, status: Option<u16>) {
        match status {
            Some(481) => {
                self.remove_call(id);
                self.call_event(id, CallEvent::Ended { remote: true });
            }
            None | Some(408) if self.calls.get(&id).is_some_and(|c| c.state == State::Confirmed) => {
                let _ = self.bye(now, id);
            }
            _ => {}
        }
    }

    fn on_provisional(&mut self, now: Instant, id: CallId, status: u16, resp: &Message) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        // Any provisional response, 100 included, lets a CANCEL go (§9.1): the next hop has
        // the INVITE transaction. (Waiting for a 180 would wait forever if it were lost: the
        // INVITE is no longer retransmitted once a provisional response arrived.)
        if call.state == State::Calling {
            call.state = State::Early;
        }
        let send_cancel = call.cancel_wanted && !call.cancel_sent;
        if status == 100 {
            self.call_event(id, CallEvent::Trying);
            if send_cancel {
                self.send_cancel(now, id);
            }
            return;
        }
        if call.dialog.is_none() && resp.to().ok().and_then(|t| t.tag()).is_some() {
            if let Some(invite) = &call.invite {
                call.dialog = Dialog::new_uac(invite, resp).ok();
            }
        }
        let sdp = sdp_of(resp);
        let event = if status == 183 { CallEvent::SessionProgress { sdp } } else { CallEvent::Ringing { sdp } };
        self.call_event(id, event);
        if send_cancel {
            self.send_cancel(now, id);
        }
    }

    fn on_invite_2xx(&mut self, now: Instant, id: CallId, resp: &Message) {
        if self.resend_ack(id, resp) {
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else { return };
        if matches!(call.state, State::Confirmed | State::Ending) {
            // Another fork answered too: the first 2xx won.
            self.ack_and_bye_fork(now, id, resp);
            return;
        }
        let Some(invite) = call.invite.clone() else { return };
        let remote_tag = resp.to().ok().and_then(|t| t.tag().map(str::to_owned));
        let dialog = match call.dialog.take() {
            Some(mut d) if Some(&d.remote_tag) == remote_tag.as_ref() => d.confirm_with(resp).map(|()| d),
            _ => Dialog::new_uac(&invite, resp),
        };
        let dialog = match dialog {
            Ok(d) => d,
            Err(_) => {
                // A 2xx we cannot build a dialog from (no Contact, no tag): nothing to ACK.
                self.remove_call(id);
                self.call_event(id, CallEvent::Failed(Failure::from_response(resp)));
                return;
            }
        };
        call.dialog = Some(dialog);
        call.state = State::Confirmed;
        call.cancel_deadline = None;
        call.answer_deadline = None;
        let no_answer = call.no_answer;
        call.remote_sdp = sdp_of(resp).or(call.remote_sdp.take());
        let cancelled = call.cancel_wanted;
        self.send_ack(id, &invite, resp);
        self.on_refreshed(now, id, Some(resp), true);
        if let Some(after) = no_answer {
            // The answer crossed the CANCEL of a call that was already given up: it ends with a
            // BYE of its own, and the failure is reported now (the user was told nothing yet).
            if let Ok(key) = self.send_in_dialog(now, id, CallOp::Bye, Method::Bye, Vec::new(), None) {
                if let Some(c) = self.clients.get_mut(&key) {
                    c.owner = Owner::Detached;
                }
            }
            self.remove_call(id);
            self.call_event(id, CallEvent::Failed(Failure::NoAnswer(after)));
        } else if cancelled {
            // The 2xx crossed our CANCEL (§9.1): the call is up, so it ends with BYE.
            let _ = self.bye(now, id);
        } else {
            self.call_event(id, CallEvent::Established { sdp: sdp_of(resp) });
        }
    }

    fn on_reinvite_2xx(&mut self, _now: Instant, id: CallId, hold: bool, key: &TxnKey, resp: &Message) {
        if self.resend_ack(id, resp) {
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(invite) = self.clients.get(key).map(|c| c.request.clone()) else { return };
        if let Some(d) = call.dialog.as_mut() {
            d.refresh_target(resp);
        }
        call.remote_sdp = sdp_of(resp).or(call.remote_sdp.take());
        if call.reinvite_out.as_ref() == Some(key) {
            call.reinvite_out = None;
        }
        call.local_hold = hold;
        call.retries_491 = 0;
        self.send_ack(id, &invite, resp);
        self.on_refreshed(_now, id, Some(resp), true);
        self.call_event(id, CallEvent::HoldResult { hold, result: Ok(sdp_of(resp)) });
    }

    /// §14.1: our re-INVITE got 491. It goes again after a random delay: 2.1-4 s when we
    /// own the Call-ID (we sent the INVITE), else 0-2 s, in 10 ms units. False when it
    /// was retried enough already (the 491 is then reported).
    fn schedule_491_retry(&mut self, now: Instant, id: CallId, hold: bool, key: &TxnKey) -> bool {
        let Some(sdp) = self.clients.get(key).map(|c| c.request.body_bytes()) else { return false };
        let ticks = self.rng.next_u64();
        let Some(call) = self.calls.get_mut(&id) else { return false };
        if call.state != State::Confirmed || call.retries_491 >= MAX_491_RETRIES {
            call.retries_491 = 0;
            return false;
        }
        call.retries_491 += 1;
        let delay_ms = if call.role == Role::Uac { 2100 + (ticks % 191) * 10 } else { (ticks % 201) * 10 };
        call.retry = Some(Retry { at: now + Duration::from_millis(delay_ms), sdp, hold });
        self.arm_call(id);
        true
    }

    /// The session was refreshed now: by our request's 2xx (`ours`, whose `Session-Expires`
    /// may set a new interval or refresher), or by the peer's re-INVITE or UPDATE.
    pub(super) fn on_refreshed(&mut self, now: Instant, id: CallId, msg: Option<&Message>, ours: bool) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if let Some(m) = msg {
            if m.header_values(HeaderName::Allow).any(|v| v.trim_ascii().eq_ignore_ascii_case(b"UPDATE")) {
                call.peer_allows_update = true;
            }
        }
        let se = msg.and_then(session_timer::session_expires);
        match (&mut call.timer, se) {
            (Some(t), Some(se)) => {
                t.interval = se.delta;
                // In our request's 2xx, `uac` is us; in the peer's request, `uac` is the peer.
                if let Some(r) = se.refresher {
                    t.we_refresh = (r == Refresher::Uac) == ours;
                }
                t.restart(now);
            }
            (Some(t), None) => t.restart(now),
            (None, Some(se)) if ours => {
                // The peer started a session timer in its answer to one of our requests.
                let we_refresh = se.refresher.is_none_or(|r| r == Refresher::Uac);
                call.timer = Some(SessionTimer::new(now, se.delta, we_refresh, true));
            }
            (None, _) => {}
        }
        self.arm_call(id);
    }

    /// Resends the ACK of a 2xx we already ACKed; true if it was one.
    fn resend_ack(&mut self, id: CallId, resp: &Message) -> bool {
        let Some(call) = self.calls.get(&id) else { return false };
        let tag = resp.to().ok().and_then(|t| t.tag().map(str::to_owned)).unwrap_or_default();
        let seq = resp.cseq().map(|c| c.seq).unwrap_or(0);
        let Some(ack) = call.acks.iter().find(|a| a.remote_tag == tag && a.cseq == seq) else { return false };
        let (dst, bytes, transport) = (ack.dst, ack.bytes.clone(), call.transport);
        self.send_raw(dst, transport, bytes);
        true
    }

    /// ACKs a 2xx in the call's dialog (§13.2.2.4): a new transaction-less request with the
    /// INVITE's CSeq number and credentials, kept for the 2xx's retransmissions.
    fn send_ack(&mut self, id: CallId, invite: &Message, resp: &Message) {
        let branch = self.rng.branch();
        let sent_by_udp = self.sent_by(Transport::Udp);
        let sent_by_tcp = self.sent_by(Transport::Tcp);
        let ua = self.cfg.user_agent.clone();
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(dialog) = call.dialog.as_ref() else { return };
        let Some((bytes, dst)) = ack_in_dialog(dialog, invite, call, &branch, &sent_by_udp, &sent_by_tcp, &ua) else {
            return;
        };
        let seq = invite.cseq().map(|c| c.seq).unwrap_or(0);
        let tag = resp.to().ok().and_then(|t| t.tag().map(str::to_owned)).unwrap_or_default();
        call.acks.push(SentAck { remote_tag: tag, cseq: seq, bytes: bytes.clone(), dst });
        if call.acks.len() > 4 {
            call.acks.remove(0);
        }
        let transport = call.transport;
        self.send_raw(dst, transport, bytes);
    }

    /// A 2xx from a fork other than the one that won: ACK it, then BYE its dialog (§13.2.2.4).
    fn ack_and_bye_fork(&mut self, now: Instant, id: CallId, resp: &Message) {
        let branch = self.rng.branch();
        let (udp, tcp, ua) = (self.sent_by(Transport::Udp), self.sent_by(Transport::Tcp), self.cfg.user_agent.clone());
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(invite) = call.invite.clone() else { return };
        let Ok(mut fork) = Dialog::new_uac(&invite, resp) else { return };
        let Some((bytes, dst)) = ack_in_dialog(&fork, &invite, call, &branch, &udp, &tcp, &ua) else { return };
        call.acks.push(SentAck {
            remote_tag: fork.remote_tag.clone(),
            cseq: fork.local_seq,
            bytes: bytes.clone(),
            dst,
        });
        let (transport, peer, creds) = (call.transport, call.peer, call.creds());
        self.send_raw(dst, transport, bytes);
        let cseq = fork.next_local_seq();
        let route = fork.route();
        let spec = ReqSpec {
            method: Method::Bye,
            uri: route.request_uri,
            cseq,
            routes: route.routes,
            from: fork.local_party().to_owned(),
            to: fork.remote_party().to_owned(),
            call_id: fork.call_id.clone(),
            contact: None,
            headers: Vec::new(),
            body: None,
            transport,
        };
        let dst = Self::uri_addr(&route.next_hop, peer);
        let _ = self.start_client(now, Owner::Detached, spec, dst, ClientAuth::new(creds));
    }

    /// A 2xx to an INVITE that no transaction matched (§13.2.2.4): re-ACK a retransmission,
    /// ACK and BYE an answer from another fork or for a call we no longer have.
    pub(super) fn on_stray_2xx(&mut self, now: Instant, resp: &Message) {
        let (Ok(call_id), Ok(from)) = (resp.call_id(), resp.from()) else { return };
        let Some(tag) = from.tag() else { return };
        let Some(DialogOwner::Call(id)) = self.dialogs.get(&(call_id.to_owned(), tag.to_owned())).copied() else {
            return;
        };
        if self.resend_ack(id, resp) {
            return;
        }
        let is_initial = self.calls.get(&id).and_then(|c| c.invite.as_ref()).and_then(|i| i.cseq().ok()).map(|c| c.seq)
            == resp.cseq().ok().map(|c| c.seq);
        if is_initial && self.calls.get(&id).is_some_and(|c| c.role == Role::Uac) {
            self.ack_and_bye_fork(now, id, resp);
        }
    }

    // ----- timers --------------------------------------------------------------------------

    pub(super) fn call_on_timer(&mut self, now: Instant, id: CallId) {
        self.on_retry_timer(now, id);
        self.on_session_timer(now, id);
        let t2 = self.cfg.timers.t2;
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.cancel_deadline.is_some_and(|d| d <= now) {
            // §9.1: no final response 64*T1 after the CANCEL: the INVITE is over.
            let no_answer = call.no_answer;
            self.remove_call(id);
            let event = match no_answer {
                Some(after) => CallEvent::Failed(Failure::NoAnswer(after)),
                None => CallEvent::Ended { remote: false },
            };
            self.call_event(id, event);
            return;
        }
        if matches!(call.state, State::Calling | State::Early) && call.answer_deadline.is_some_and(|d| d <= now) {
            // No final response in time: give the call up with CANCEL. Before any provisional
            // response the CANCEL waits for one (§9.1), and Timer B ends the INVITE if none
            // comes; either way the call fails `NoAnswer`.
            call.answer_deadline = None;
            call.no_answer = Some(self.cfg.no_answer_timeout);
            call.cancel_wanted = true;
            if call.state == State::Early && !call.cancel_sent {
                self.send_cancel(now, id);
            }
        }
        let Some(call) = self.calls.get_mut(&id) else { return };
        let mut give_up = None;
        if let Some(r) = call.retx.as_mut() {
            if r.until <= now {
                give_up = Some(r.initial);
                call.retx = None;
            } else if r.next <= now {
                let (dst, transport, bytes) = (r.dst, r.transport, r.bytes.clone());
                r.interval = (r.interval * 2).min(t2);
                r.next = now + r.interval;
                if !transport.is_reliable() {
                    self.transmits.push_back(super::Transmit { dst, transport, bytes });
                }
            }
        }
        match give_up {
            // §13.3.1.4: no ACK for our 2xx: the dialog is confirmed, the session ends with
            // BYE. For a call never established that is a failure, and the BYE is detached.
            Some(true) => {
                if let Ok(key) = self.send_in_dialog(now, id, CallOp::Bye, Method::Bye, Vec::new(), None) {
                    if let Some(c) = self.clients.get_mut(&key) {
                        c.owner = Owner::Detached;
                    }
                }
                let hung_up = self.calls.get(&id).is_some_and(|c| c.bye_wanted);
                self.remove_call(id);
                let event =
                    if hung_up { CallEvent::Ended { remote: false } } else { CallEvent::Failed(Failure::Timeout) };
                self.call_event(id, event);
                return;
            }
            Some(false) => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.state = State::Confirmed;
                }
                let _ = self.bye(now, id);
            }
            None => {}
        }
        self.arm_call(id);
    }

    /// Sends our re-INVITE again once its 491 delay has passed (later if an offer of the
    /// peer is under way then).
    fn on_retry_timer(&mut self, now: Instant, id: CallId) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.retry.as_ref().is_none_or(|r| r.at > now) {
            return;
        }
        if call.state != State::Confirmed {
            call.retry = None;
            return;
        }
        if call.reinvite_out.is_some() || call.server_key.is_some() || call.retx.is_some() {
            if let Some(r) = call.retry.as_mut() {
                r.at = now + Duration::from_millis(500);
            }
            return;
        }
        let Some(Retry { sdp, hold, .. }) = call.retry.take() else { return };
        if let Err(e) = self.send_reinvite(now, id, sdp, hold) {
            let failure = Failure::Transport(e.to_string());
            self.call_event(id, CallEvent::HoldResult { hold, result: Err(failure) });
        }
    }

    /// RFC 4028 §10: as the refresher, refresh the session at half its interval (UPDATE
    /// without a body when the peer allows it, else a re-INVITE with our last SDP); else,
    /// with no refresh from the peer in time, end the call with BYE (`SessionExpired`).
    fn on_session_timer(&mut self, now: Instant, id: CallId) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(mut t) = call.timer.filter(|t| t.due <= now) else { return };
        let use_update = call.peer_allows_update;
        if call.state != State::Confirmed || (t.we_refresh && !use_update && call.offer_pending()) {
            t.due = now + Duration::from_secs(1);
            call.timer = Some(t);
            return;
        }
        if !t.we_refresh {
            call.timer = None;
            self.call_event(id, CallEvent::SessionExpired);
            let _ = self.bye(now, id);
            return;
        }
        let header = t.header(true);
        // Until the 2xx restarts it, the timer waits a whole interval (a lost refresh ends
        // the call through its transaction's timeout).
        t.due = now + Duration::from_secs(u64::from(t.interval.max(1)));
        call.timer = Some(t);
        let mut headers =
            vec![("Session-Expires".to_owned(), header), ("Supported".to_owned(), super::SUPPORTED.to_owned())];
        let sent = if use_update {
            self.send_in_dialog(now, id, CallOp::Refresh { invite: false }, Method::Update, headers, None)
        } else {
            headers.push(("Allow".to_owned(), super::ALLOW.to_owned()));
            // The very SDP we sent last, same `o=` version: a refresh changes nothing (RFC 4028
            // §7.4; RFC 3264 §8).
            let body = call.last_sdp.clone().map(|s| ("application/sdp".to_owned(), s));
            let r = self.send_in_dialog(now, id, CallOp::Refresh { invite: true }, Method::Invite, headers, body);
            if let (Ok(key), Some(c)) = (&r, self.calls.get_mut(&id)) {
                c.reinvite_out = Some(key.clone());
            }
            r
        };
        if sent.is_err() {
            let _ = self.bye(now, id);
        }
    }

    /// Starts retransmitting our 2xx (called by `answer`).
    pub(super) fn start_2xx_retx(
        &mut self,
        now: Instant,
        id: CallId,
        bytes: Bytes,
        dst: SocketAddr,
        cseq: u32,
        initial: bool,
    ) {
        let t1 = self.cfg.timers.t1;
        let until = now + self.cfg.timers.t1x64();
        let Some(call) = self.calls.get_mut(&id) else { return };
        let transport = call.transport;
        call.retx = Some(Retx { bytes, dst, transport, cseq, next: now + t1, interval: t1, until, initial });
        self.arm_call(id);
    }

    /// An ACK in one of our dialogs (for our 2xx).
    pub(super) fn on_dialog_ack(&mut self, now: Instant, ack: &Message) {
        let (Ok(call_id), Ok(to)) = (ack.call_id(), ack.to()) else { return };
        let Some(tag) = to.tag() else { return };
        let Some(DialogOwner::Call(id)) = self.dialogs.get(&(call_id.to_owned(), tag.to_owned())).copied() else {
            return;
        };
        let seq = ack.cseq().map(|c| c.seq).unwrap_or(0);
        if self.calls.get(&id).and_then(|c| c.retx.as_ref()).is_some_and(|r| r.cseq == seq) {
            let sdp = sdp_of(ack);
            let mut changed = None;
            if let (Some(s), Some(c)) = (&sdp, self.calls.get_mut(&id)) {
                let initial = c.retx.as_ref().is_some_and(Retx::is_initial);
                if !initial && c.remote_sdp.as_ref() != Some(s) {
                    changed = Some(s.clone());
                }
                c.remote_sdp = Some(s.clone());
            }
            self.ack_received(now, id, sdp);
            if let Some(sdp) = changed {
                // The answer to the offer of our 2xx (an offer-less re-INVITE, §14.2).
                let direction = sdp::direction(&sdp);
                self.call_event(id, CallEvent::PeerAnswer { sdp, direction, hold: direction.is_hold() });
            }
        }
    }

    /// The ACK of our 2xx arrived (or a later request from the peer proved that it was
    /// sent): stop retransmitting, and for an initial INVITE the call is established.
    pub(super) fn ack_received(&mut self, now: Instant, id: CallId, sdp: Option<Bytes>) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(retx) = call.retx.take() else { return };
        let initial = retx.initial;
        let bye = call.bye_wanted;
        if call.state == State::Answered || (call.state == State::Ending && bye) {
            call.state = State::Confirmed;
        }
        self.arm_call(id);
        if initial {
            self.call_event(id, CallEvent::Established { sdp });
        }
        if bye {
            if let Some(c) = self.calls.get_mut(&id) {
                c.bye_wanted = false;
            }
            let _ = self.bye(now, id);
        }
    }
}

/// The ACK of a 2xx in `dialog`: Request-URI and Route from the dialog, the INVITE's CSeq
/// number and credentials (§13.2.2.4, §22.1).
fn ack_in_dialog(
    dialog: &Dialog,
    invite: &Message,
    call: &Call,
    branch: &str,
    sent_by_udp: &str,
    sent_by_tcp: &str,
    ua: &str,
) -> Option<(Bytes, SocketAddr)> {
    let route = dialog.route();
    let creds: Vec<(String, String)> = invite
        .headers()
        .filter(|h| matches!(h.name(), HeaderName::Authorization | HeaderName::ProxyAuthorization))
        .map(|h| (h.name().as_str().to_owned(), String::from_utf8_lossy(&h.value_unfolded()).into_owned()))
        .collect();
    let spec = ReqSpec {
        method: Method::Ack,
        uri: route.request_uri,
        cseq: invite.cseq().ok()?.seq,
        routes: route.routes,
        from: dialog.local_party().to_owned(),
        to: dialog.remote_party().to_owned(),
        call_id: dialog.call_id.clone(),
        contact: None,
        headers: creds,
        body: None,
        transport: call.transport,
    };
    let sent_by = if call.transport == Transport::Tcp { sent_by_tcp } else { sent_by_udp };
    let msg = spec.build(sent_by, branch, None, ua).ok()?;
    Some((msg.to_bytes(), UserAgent::uri_addr(&route.next_hop, call.peer)))
}
