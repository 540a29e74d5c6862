//! Requests from the network: matched to their server transaction, then dispatched to a
//! dialog (by Call-ID and To tag) or, outside dialogs, by method. Also the application's
//! answers: `answer`, `provisional`, `reject` for INVITEs and `respond` for MESSAGE/REFER.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::dialog::Dialog;
use crate::message::Message;
use crate::method::Method;
use crate::name::HeaderName;
use crate::txn::{RequestMatch, ServerTxn, TxnKey};
use crate::MessageBuilder;

use super::call::{Call, State};
use super::request::response_destination;
use super::sdp;
use super::session_timer::{self, Refresher, SessionTimer};
use super::{
    CallEvent, CallId, DialogOwner, IncomingCall, ReqId, ServerCtx, Transport, UaError, UaEvent, UaTimer, UserAgent,
    ALLOW,
};

/// `Signal=5` / `Duration=160` of `application/dtmf-relay`, or the digit of
/// `application/dtmf`.
pub fn parse_dtmf(content_type: &str, body: &[u8]) -> Option<(char, u32)> {
    let text = std::str::from_utf8(body).ok()?;
    if content_type.eq_ignore_ascii_case("application/dtmf") {
        let c = text.trim().chars().next()?;
        return Some((c, 160));
    }
    let mut digit = None;
    let mut duration = 160;
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else { continue };
        match k.trim().to_ascii_lowercase().as_str() {
            "signal" => digit = v.trim().chars().next(),
            "duration" => duration = v.trim().parse().unwrap_or(160),
            _ => {}
        }
    }
    let d = digit?.to_ascii_uppercase();
    matches!(d, '0'..='9' | '*' | '#' | 'A'..='D').then_some((d, duration))
}

/// The status line of a `message/sipfrag` body (RFC 3420): `SIP/2.0 180 Ringing`.
pub fn parse_sipfrag(body: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next()?.trim();
    let rest = line.strip_prefix("SIP/2.0 ")?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let code: u16 = code.parse().ok()?;
    (100..700).contains(&code).then(|| (code, reason.trim().to_owned()))
}

/// `Subscription-State: terminated;reason=noresource` is terminated.
pub(super) fn is_terminated(msg: &Message) -> bool {
    msg.header(HeaderName::SubscriptionState)
        .and_then(|h| {
            std::str::from_utf8(h.value())
                .ok()
                .map(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("terminated"))
        })
        .unwrap_or(false)
}

/// Adds our session-timer headers to a 2xx (RFC 4028 §9): `Session-Expires` with the
/// refresher as seen from the peer's request, and `Require: timer` when the peer supports it.
fn with_timer(b: MessageBuilder, timer: Option<&SessionTimer>) -> MessageBuilder {
    let b = b.header(HeaderName::Supported, super::SUPPORTED);
    match timer {
        Some(t) if t.peer_supports => {
            b.header(HeaderName::SessionExpires, t.header(false)).header(HeaderName::Require, "timer")
        }
        Some(t) => b.header(HeaderName::SessionExpires, t.header(false)),
        None => b,
    }
}

/// The message's `Allow` lists UPDATE.
fn allows_update(msg: &Message) -> bool {
    msg.header_values(HeaderName::Allow).any(|v| v.trim_ascii().eq_ignore_ascii_case(b"UPDATE"))
}

fn header_text(msg: &Message, name: HeaderName) -> Option<String> {
    msg.header(name).map(|h| String::from_utf8_lossy(&h.value_unfolded()).into_owned())
}

/// Copies the request's Record-Route into a response that sets up a dialog (§12.1.1).
fn with_record_route(mut b: MessageBuilder, req: &Message) -> MessageBuilder {
    for rr in req.header_all(HeaderName::RecordRoute) {
        b = b.header(HeaderName::RecordRoute, rr.value_unfolded());
    }
    b
}

impl UserAgent {
    pub(super) fn on_incoming_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        transport: Transport,
        msg: Message,
    ) -> Result<(), UaError> {
        if let Err(error) = msg.validate() {
            if let Some(resp) = crate::bad_request_for(msg.as_bytes(), &error) {
                let dst = response_destination(&msg, from, transport);
                self.transmits.push_back(super::Transmit { dst, transport, bytes: resp });
            }
            return Err(UaError::Malformed { from, error });
        }
        let (Ok(via), Ok(cseq), Ok(call_id), Ok(from_hdr)) = (msg.via(), msg.cseq(), msg.call_id(), msg.from()) else {
            return Err(UaError::Dropped { from, why: "request without the transaction headers" });
        };
        let Some(method) = msg.method().cloned() else { return Ok(()) };
        let sent_by = format!("{}:{}", via.host, via.port.unwrap_or(5060));
        // An RFC 2543 client's branch is not unique: key its transactions by what is (§17.2.3).
        let branch = if via.has_rfc3261_branch() {
            via.branch.unwrap_or_default().to_owned()
        } else {
            format!("2543/{call_id}/{}/{}/{}", from_hdr.tag().unwrap_or(""), cseq.seq, via.branch.unwrap_or(""))
        };
        let is_ack = method == Method::Ack;
        let key = TxnKey::server(Bytes::from(branch), method.as_str().as_bytes(), Bytes::from(sent_by));
        if self.txns.handle_request(now, &key, is_ack, msg.to_bytes()) != RequestMatch::New {
            return Ok(());
        }
        if is_ack {
            self.on_dialog_ack(now, &msg);
            return Ok(());
        }
        let dst = response_destination(&msg, from, transport);
        let cfg = self.timer_config(transport);
        let txn = if method == Method::Invite { ServerTxn::invite(cfg) } else { ServerTxn::non_invite(cfg) };
        self.servers.insert(key.clone(), ServerCtx { request: msg.clone(), source: from, dst, transport, call: None });
        self.txns.start_server(key.clone(), txn);
        self.dispatch_request(now, key, msg, method, from, transport);
        Ok(())
    }

    fn dispatch_request(
        &mut self,
        now: Instant,
        key: TxnKey,
        msg: Message,
        method: Method,
        from: SocketAddr,
        transport: Transport,
    ) {
        if method == Method::Cancel {
            self.on_incoming_cancel(now, &key);
            return;
        }
        // We support session timers only (§8.2.2.3): 420 with the list of the others.
        let required: Vec<String> = msg
            .header_values(HeaderName::Require)
            .map(|v| String::from_utf8_lossy(v).trim().to_owned())
            .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("timer"))
            .collect();
        if !required.is_empty() {
            let tag = msg.to().ok().and_then(|t| t.tag().is_none().then(|| self.rng.tag()));
            let unsupported = required.join(", ");
            let _ = self
                .reply_with(now, &key, 420, None, tag.as_deref(), |b| b.header(HeaderName::Unsupported, unsupported));
            return;
        }
        let to_tag = msg.to().ok().and_then(|t| t.tag().map(str::to_owned));
        if let Some(tag) = to_tag {
            let call_id = msg.call_id().unwrap_or_default().to_owned();
            match self.dialogs.get(&(call_id, tag)).copied() {
                Some(DialogOwner::Call(id)) if self.calls.contains_key(&id) => {
                    self.on_call_request(now, id, key, msg, method)
                }
                Some(DialogOwner::Sub(id)) => self.sub_on_request(now, id, &key, &msg, method),
                _ => self.reply(now, &key, 481, None),
            }
            return;
        }
        let tag = self.rng.tag();
        match method {
            Method::Invite => self.on_incoming_invite(now, key, msg, from, transport),
            Method::Message => self.on_incoming_message(now, key, &msg, None, tag),
            Method::Options => self.reply_options(now, &key, Some(&tag)),
            Method::Register | Method::Publish => {
                let _ = self.reply_with(now, &key, 405, None, Some(&tag), |b| b.header(HeaderName::Allow, ALLOW));
            }
            Method::Subscribe => self.reply(now, &key, 489, Some(&tag)),
            Method::Bye | Method::Info | Method::Refer | Method::Notify | Method::Prack | Method::Update => {
                self.reply(now, &key, 481, Some(&tag))
            }
            _ => {
                let _ = self.reply_with(now, &key, 501, None, Some(&tag), |b| b.header(HeaderName::Allow, ALLOW));
            }
        }
    }

    fn reply_options(&mut self, now: Instant, key: &TxnKey, tag: Option<&str>) {
        let _ = self.reply_with(now, key, 200, None, tag, |b| {
            b.header(HeaderName::Allow, ALLOW).header(HeaderName::Accept, "application/sdp")
        });
    }

    /// RFC 4028 §8.1: a session interval below our `Min-SE` gets `422` with it. True when
    /// the request was refused so.
    fn refuse_short_session(&mut self, now: Instant, key: &TxnKey, msg: &Message, tag: Option<&str>) -> bool {
        let min = self.cfg.min_se;
        match session_timer::session_expires(msg) {
            Some(se) if se.delta < min => {
                let _ = self.reply_with(now, key, 422, None, tag, |b| b.header(HeaderName::MinSe, min.to_string()));
                true
            }
            _ => false,
        }
    }

    /// The session timer an INVITE or re-INVITE asks for (RFC 4028 §9): its interval, and who
    /// refreshes (the peer when it says so or, supporting timers, names nobody; else us).
    fn timer_asked(now: Instant, msg: &Message) -> Option<SessionTimer> {
        let se = session_timer::session_expires(msg)?;
        let supports = session_timer::supports_timer(msg);
        let we_refresh = match se.refresher {
            Some(Refresher::Uac) => false,
            Some(Refresher::Uas) => true,
            None => !supports,
        };
        Some(SessionTimer::new(now, se.delta, we_refresh, supports))
    }

    fn on_incoming_invite(&mut self, now: Instant, key: TxnKey, msg: Message, from: SocketAddr, transport: Transport) {
        let tag = self.rng.tag();
        if self.refuse_short_session(now, &key, &msg, Some(&tag)) {
            return;
        }
        // 100 at once: it stops the caller's retransmissions (§17.2.1).
        self.reply(now, &key, 100, None);
        let local_tag = self.rng.tag();
        let local_seq = self.rng.cseq();
        let dialog = match Dialog::new_uas(&msg, &local_tag, local_seq) {
            Ok(d) => d,
            Err(e) => {
                let reason = e.to_string();
                let _ = self.reply_with(now, &key, 400, Some(&reason), Some(&local_tag), |b| b);
                return;
            }
        };
        let id = CallId(self.new_id());
        let reg = self.reg_for_request(&msg);
        let account = reg.and_then(|r| self.regs.get(&r)).map(|r| r.account.clone());
        let contact = match &account {
            Some(a) if a.transport == transport => self.contact_for(a),
            _ => {
                let user = msg.request_uri().and_then(|u| u.as_sip().and_then(|s| s.user.map(str::to_owned)));
                let tp = if transport == Transport::Tcp { ";transport=tcp" } else { "" };
                match user {
                    Some(u) => format!("<sip:{u}@{}{tp}>", self.sent_by(transport)),
                    None => format!("<sip:{}{tp}>", self.sent_by(transport)),
                }
            }
        };
        let call_id = dialog.call_id.clone();
        let mut call = Call::new_incoming(call_id.clone(), local_tag.clone(), transport, from);
        call.remote_sdp = super::call::sdp_of(&msg);
        call.offer_in = call.remote_sdp.as_deref().map(sdp::direction);
        call.timer = Self::timer_asked(now, &msg);
        call.peer_allows_update = allows_update(&msg);
        call.account = account;
        call.contact = contact;
        call.dialog = Some(dialog);
        call.invite = Some(msg.clone());
        call.server_key = Some(key.clone());
        self.calls.insert(id, call);
        if let Some(s) = self.servers.get_mut(&key) {
            s.call = Some(id);
        }
        self.dialogs.insert((call_id.clone(), local_tag), DialogOwner::Call(id));
        let from_hdr = msg.from().ok();
        let event = IncomingCall {
            call: id,
            sip_call_id: call_id.to_string(),
            reg,
            request_uri: msg.request_uri().map(|u| u.as_str().to_owned()).unwrap_or_default(),
            from: header_text(&msg, HeaderName::From).unwrap_or_default(),
            to: header_text(&msg, HeaderName::To).unwrap_or_default(),
            from_uri: from_hdr.map(|f| f.uri.as_str().to_owned()).unwrap_or_default(),
            display_name: from_hdr.and_then(|f| f.display_name_unquoted().map(|d| d.into_owned())),
            sdp: (!msg.body().is_empty()).then(|| msg.body_bytes()),
            source: from,
            transport,
            raw: msg.to_bytes(),
        };
        self.events.push_back(UaEvent::IncomingCall(event));
    }

    fn on_incoming_cancel(&mut self, now: Instant, key: &TxnKey) {
        // The CANCEL names its INVITE by the same branch and sent-by (§9.2).
        let invite_key = TxnKey::server(key.branch.clone(), b"INVITE", key.sent_by.clone());
        let call = self.servers.get(&invite_key).and_then(|s| s.call);
        let Some((id, tag)) = call.and_then(|id| self.calls.get(&id).map(|c| (id, c.local_tag.clone()))) else {
            let tag = self.rng.tag();
            self.reply(now, key, 481, Some(&tag));
            return;
        };
        self.reply(now, key, 200, Some(&tag));
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.server_key.as_ref() != Some(&invite_key) {
            return; // already answered: the CANCEL has no effect
        }
        call.server_key = None;
        let initial = call.state == State::Incoming;
        self.reply(now, &invite_key, 487, Some(&tag));
        if initial {
            self.remove_call(id);
            self.events.push_back(UaEvent::Call { call: id, event: CallEvent::Cancelled });
        }
    }

    fn on_call_request(&mut self, now: Instant, id: CallId, key: TxnKey, msg: Message, method: Method) {
        // A new request from the caller while we wait for the ACK of our 2xx means the ACK
        // was sent and lost (§13.3.1.4 has the caller ACK before anything else): the call is
        // established. Waiting on would end a working call with BYE after 64*T1.
        let invite_seq = self.calls.get(&id).and_then(|c| c.invite.as_ref()).and_then(|i| i.cseq().ok()).map(|c| c.seq);
        let newer = msg.cseq().ok().map(|c| c.seq) > invite_seq;
        if newer && self.calls.get(&id).and_then(|c| c.retx.as_ref()).is_some_and(|r| r.is_initial()) {
            self.ack_received(now, id, None);
        }
        let Some(call) = self.calls.get_mut(&id) else { return };
        // The dialog is (Call-ID, our tag, their tag): another remote tag is another dialog
        // (a losing fork, a stale peer) that we do not have.
        let from_tag = msg.from().ok().and_then(|f| f.tag().map(str::to_owned));
        if call.dialog.as_ref().is_some_and(|d| {
            d.state == crate::dialog::DialogState::Confirmed && from_tag.as_deref() != Some(d.remote_tag.as_str())
        }) {
            self.reply(now, &key, 481, None);
            return;
        }
        if let Some(d) = call.dialog.as_mut() {
            if d.check_remote_seq(&msg).is_err() {
                let _ = self.reply_with(now, &key, 500, Some("Out Of Order CSeq"), None, |b| b);
                return;
            }
        }
        match method {
            Method::Bye => {
                let pending = call.server_key.take();
                self.reply(now, &key, 200, None);
                if let Some(k) = pending {
                    self.reply(now, &k, 487, None);
                }
                self.remove_call(id);
                self.events.push_back(UaEvent::Call { call: id, event: CallEvent::Ended { remote: true } });
            }
            Method::Invite | Method::Update => self.on_peer_offer(now, id, key, &msg, method == Method::Invite),
            Method::Info => {
                let ct =
                    msg.content_type().ok().flatten().map(|c| format!("{}/{}", c.mtype, c.subtype)).unwrap_or_default();
                let dtmf = parse_dtmf(&ct, msg.body());
                // RFC 6086 §4.2.2: an Info-Package we do not know gets 469 with our Recv-Info
                // (none); a legacy INFO (RFC 2976) with a body we cannot read, 415 with Accept.
                // An empty INFO (a keep-alive) is acknowledged.
                let package = msg.header_named("Info-Package").next().is_some();
                let dtmf_type =
                    ["application/dtmf-relay", "application/dtmf"].iter().any(|t| t.eq_ignore_ascii_case(&ct));
                if package {
                    let _ = self.reply_with(now, &key, 469, None, None, |b| b.header_named("Recv-Info", ""));
                    return;
                }
                if !msg.body().is_empty() && !dtmf_type {
                    let _ = self.reply_with(now, &key, 415, None, None, |b| {
                        b.header(HeaderName::Accept, "application/dtmf-relay, application/dtmf")
                    });
                    return;
                }
                self.reply(now, &key, 200, None);
                if let Some((digit, duration_ms)) = dtmf {
                    self.events.push_back(UaEvent::Call { call: id, event: CallEvent::Dtmf { digit, duration_ms } });
                }
            }
            Method::Refer => {
                let target = msg.header(HeaderName::ReferTo).and_then(|h| {
                    std::str::from_utf8(h.value())
                        .ok()
                        .and_then(|v| crate::NameAddr::parse(v).ok().map(|a| a.uri.as_str().to_owned()))
                });
                let Some(target) = target else {
                    let _ = self.reply_with(now, &key, 400, Some("Missing Refer-To"), None, |b| b);
                    return;
                };
                call.refer_in_cseq = msg.cseq().ok().map(|c| c.seq);
                let referred_by = header_text(&msg, HeaderName::ReferredBy);
                let req = self.pend(now, key, String::new());
                self.events.push_back(UaEvent::Call {
                    call: id,
                    event: CallEvent::IncomingRefer { req, target, referred_by },
                });
            }
            Method::Notify => {
                let event = header_text(&msg, HeaderName::Event).unwrap_or_default();
                if !event.trim().to_ascii_lowercase().starts_with("refer") {
                    self.reply(now, &key, 489, None);
                    return;
                }
                if let Some(d) = call.dialog.as_mut() {
                    d.refresh_target(&msg);
                }
                self.reply(now, &key, 200, None);
                let terminated = is_terminated(&msg);
                if let Some((status, reason)) = parse_sipfrag(msg.body()) {
                    self.events.push_back(UaEvent::Call {
                        call: id,
                        event: CallEvent::TransferProgress { status, reason, terminated, raw: msg.to_bytes() },
                    });
                }
            }
            Method::Message => self.on_incoming_message(now, key, &msg, Some(id), String::new()),
            Method::Options => self.reply_options(now, &key, None),
            _ => {
                let _ = self.reply_with(now, &key, 501, None, None, |b| b.header(HeaderName::Allow, ALLOW));
            }
        }
    }

    /// A re-INVITE or an UPDATE from the peer (RFC 3261 §14.2, RFC 3311 §5.2, RFC 4028 §9).
    /// A new offer goes to the application (`IncomingReInvite`); a session refresh (no offer,
    /// the peer's last SDP again, an UPDATE without a body) is answered here.
    fn on_peer_offer(&mut self, now: Instant, id: CallId, key: TxnKey, msg: &Message, invite: bool) {
        let retry_after = (self.rng.next_u64() % 11).to_string();
        let Some(call) = self.calls.get_mut(&id) else { return };
        let sdp = super::call::sdp_of(msg);
        if invite || sdp.is_some() {
            // One offer at a time. Ours is out: glare, 491 (the peer retries after a random
            // wait). The peer's last one is not answered (or our 2xx not ACKed): 500 with
            // Retry-After (§14.2, RFC 3311 §5.2).
            if call.has_reinvite_out() {
                self.reply(now, &key, 491, None);
                return;
            }
            if call.state != State::Confirmed || call.server_key.is_some() || call.retx.is_some() {
                let _ = self.reply_with(now, &key, 500, None, None, |b| b.header(HeaderName::RetryAfter, retry_after));
                return;
            }
        }
        if self.refuse_short_session(now, &key, msg, None) {
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else { return };
        if let Some(d) = call.dialog.as_mut() {
            d.refresh_target(msg);
        }
        call.peer_allows_update |= allows_update(msg);
        match (Self::timer_asked(now, msg), call.timer.as_mut()) {
            (Some(asked), _) => call.timer = Some(asked),
            (None, Some(t)) => t.restart(now),
            (None, None) => {}
        }
        if !invite && sdp.is_none() {
            // An UPDATE that only refreshes the session: 200 without a body.
            let (contact, timer) = (call.contact.clone(), call.timer);
            let _ = self.reply_with(now, &key, 200, None, None, |b| {
                with_timer(b.header(HeaderName::Contact, &contact), timer.as_ref())
            });
            self.arm_call(id);
            return;
        }
        call.server_key = Some(key.clone());
        if let Some(s) = self.servers.get_mut(&key) {
            s.call = Some(id);
        }
        // A session refresh (RFC 4028 timers, keep-alives): no offer, or the very description
        // the peer sent last. We answer with what we last sent (offer-less: as an offer, in
        // our own direction); the application hears nothing. (Not by the `o=` version alone:
        // peers that change the media without bumping it exist.)
        let refresh = match (&sdp, &call.remote_sdp, &call.last_sdp) {
            (None, _, Some(_)) => true,
            (Some(new), Some(old), Some(_)) => new == old,
            _ => false,
        };
        let last = call.last_sdp.clone().unwrap_or_default();
        let ours = if sdp.is_none() { sdp::with_direction(&last, call.own_direction()) } else { last };
        if !refresh {
            call.remote_sdp = sdp.clone().or(call.remote_sdp.take());
        }
        let direction = sdp.as_deref().map_or(sdp::Direction::SendRecv, sdp::direction);
        call.offer_in = (!refresh).then_some(direction);
        if invite {
            self.reply(now, &key, 100, None);
        }
        if refresh {
            let _ = self.answer(now, id, ours);
            return;
        }
        let event = CallEvent::IncomingReInvite { sdp, direction, hold: direction.is_hold() };
        self.events.push_back(UaEvent::Call { call: id, event });
        self.arm_call(id);
    }

    /// Keeps a request for the application's answer, which must come within
    /// `answer_timeout`.
    fn pend(&mut self, now: Instant, key: TxnKey, to_tag: String) -> ReqId {
        let req = ReqId(self.new_id());
        self.pending.insert(req, super::PendingReq { key, to_tag });
        self.timers.set(UaTimer::Req(req), Some(now + self.cfg.answer_timeout));
        req
    }

    fn on_incoming_message(&mut self, now: Instant, key: TxnKey, msg: &Message, call: Option<CallId>, to_tag: String) {
        let ct = msg.content_type().ok().flatten().map(|c| format!("{}/{}", c.mtype, c.subtype));
        let (content_type, body, cpim) = match ct.as_deref() {
            Some(t) if t.eq_ignore_ascii_case("message/cpim") => match super::message::parse_cpim(&msg.body_bytes()) {
                Ok(Some((info, ct, body))) => (ct, body, Some(info)),
                Ok(None) => (t.to_owned(), msg.body_bytes(), None),
                Err(e) => {
                    // The sender hears why (reason phrase and a Warning, RFC 3261 §20.43); the
                    // driver logs it once per source.
                    let why = e.to_string();
                    let tag = (!to_tag.is_empty()).then_some(to_tag.as_str());
                    let warning = format!("399 {} \"{why}\"", self.cfg.udp_addr);
                    let _ = self.reply_with(now, &key, 400, Some("Bad CPIM Body"), tag, |b| {
                        b.header(HeaderName::Warning, warning)
                    });
                    if let Some(from) = self.servers.get(&key).map(|s| s.source) {
                        self.note(UaError::BadBody { from, why });
                    }
                    return;
                }
            },
            _ => (
                header_text(msg, HeaderName::ContentType).unwrap_or_else(|| "text/plain".into()),
                msg.body_bytes(),
                None,
            ),
        };
        let reg = self.reg_for_request(msg);
        let source = self.servers.get(&key).map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |s| s.source);
        let req = self.pend(now, key, to_tag);
        let from = msg.from().ok();
        self.events.push_back(UaEvent::IncomingMessage(super::IncomingMessage {
            req,
            call,
            reg,
            from: header_text(msg, HeaderName::From).unwrap_or_default(),
            from_uri: from.map(|f| f.uri.as_str().to_owned()).unwrap_or_default(),
            to: header_text(msg, HeaderName::To).unwrap_or_default(),
            content_type,
            body,
            cpim,
            source,
            raw: msg.to_bytes(),
        }));
    }

    // ----- the application's answers -------------------------------------------------------

    /// Answers an incoming MESSAGE or REFER (`200`/`202` to accept, `403` when a backend
    /// refuses, ...). Unanswered requests get `480` after `answer_timeout`.
    pub fn respond(&mut self, now: Instant, req: ReqId, status: u16, reason: Option<&str>) -> Result<(), UaError> {
        if !(200..700).contains(&status) {
            return Err(UaError::InvalidArgument { what: "status", why: format!("{status} is not a final status") });
        }
        let p = self.pending.remove(&req).ok_or(UaError::UnknownRequest(req))?;
        self.timers.set(UaTimer::Req(req), None);
        let tag = (!p.to_tag.is_empty()).then_some(p.to_tag.as_str());
        self.reply_with(now, &p.key, status, reason, tag, |b| b)?;
        self.pump(now);
        Ok(())
    }

    /// Sends a provisional response (`180 Ringing`, `183 Session Progress` with early-media
    /// SDP) to an incoming call.
    pub fn provisional(&mut self, now: Instant, id: CallId, status: u16, sdp: Option<Bytes>) -> Result<(), UaError> {
        if !(101..200).contains(&status) {
            return Err(UaError::InvalidArgument { what: "status", why: format!("{status} is not 101-199") });
        }
        let call = self.calls.get_mut(&id).ok_or(UaError::UnknownCall(id))?;
        let (Some(key), State::Incoming) = (call.server_key.clone(), call.state) else {
            return Err(UaError::InvalidState { what: "provisional response", why: "the call is not ringing" });
        };
        let sdp = sdp.map(|s| call.stamp_sdp(s));
        let (tag, contact) = (call.local_tag.clone(), call.contact.clone());
        let req = call.invite.clone().ok_or(UaError::UnknownCall(id))?;
        self.reply_with(now, &key, status, None, Some(&tag), |b| {
            let b = with_record_route(b, &req).header(HeaderName::Contact, &contact);
            match sdp {
                Some(s) => b.body("application/sdp", s),
                None => b,
            }
        })?;
        self.pump(now);
        Ok(())
    }

    /// Answers an incoming call, or a re-INVITE of an established one, with `200 OK` and the
    /// SDP `sdp`; the 2xx is retransmitted until the ACK arrives (§13.3.1.4). Event:
    /// `Established` when the ACK of an initial INVITE arrives.
    pub fn answer(&mut self, now: Instant, id: CallId, sdp: Bytes) -> Result<(), UaError> {
        let call = self.calls.get_mut(&id).ok_or(UaError::UnknownCall(id))?;
        let Some(key) = call.server_key.clone() else {
            return Err(UaError::InvalidState { what: "answer", why: "no INVITE is waiting for an answer" });
        };
        let initial = call.state == State::Incoming;
        let (tag, contact) = (call.local_tag.clone(), call.contact.clone());
        // Our answer mirrors the offer's direction (RFC 3264 §6.1): sendonly -> recvonly,
        // inactive -> inactive; while we hold the call we still do not receive.
        let sdp = match call.offer_in.take() {
            Some(offered) if sdp::direction(&sdp) != call.answer_direction(offered) => {
                sdp::with_direction(&sdp, call.answer_direction(offered))
            }
            _ => sdp,
        };
        let sdp = call.stamp_sdp(sdp);
        if initial {
            if let Some(t) = call.timer.as_mut() {
                t.restart(now);
            }
        }
        let timer = call.timer;
        let req = self
            .servers
            .get(&key)
            .map(|s| s.request.clone())
            .ok_or(UaError::InvalidState { what: "answer", why: "the INVITE transaction has ended" })?;
        let bytes = self.reply_with(now, &key, 200, None, Some(&tag), |b| {
            let b = if initial { with_record_route(b, &req) } else { b };
            with_timer(b.header(HeaderName::Contact, &contact).header(HeaderName::Allow, ALLOW), timer.as_ref())
                .body("application/sdp", sdp)
        })?;
        let dst = self.servers.get(&key).map(|s| s.dst);
        let Some(call) = self.calls.get_mut(&id) else { return Ok(()) };
        call.server_key = None;
        if req.method() == Some(&Method::Update) {
            // RFC 3311: the answer is in the 2xx of the UPDATE; nothing to retransmit.
            self.arm_call(id);
            self.pump(now);
            return Ok(());
        }
        if initial {
            call.state = State::Answered;
            if let Some(d) = call.dialog.as_mut() {
                d.confirm();
            }
        }
        let cseq = req.cseq().map(|c| c.seq).unwrap_or(0);
        if let Some(dst) = dst {
            self.start_2xx_retx(now, id, bytes, dst, cseq, initial);
        }
        self.pump(now);
        Ok(())
    }

    /// Rejects an incoming call (or a pending re-INVITE of an established one, which goes
    /// on) with a final 3xx-6xx: `403` when the backend refuses, `486`, `603`...
    pub fn reject(&mut self, now: Instant, id: CallId, status: u16, reason: Option<&str>) -> Result<(), UaError> {
        self.reject_with(now, id, status, reason, None)
    }

    /// [`UserAgent::reject`] with `Retry-After: retry_after` seconds (RFC 3261 §20.33): a `503`
    /// of a server that refuses new calls for now (admission control).
    pub fn reject_with(
        &mut self,
        now: Instant,
        id: CallId,
        status: u16,
        reason: Option<&str>,
        retry_after: Option<u32>,
    ) -> Result<(), UaError> {
        if !(300..700).contains(&status) {
            return Err(UaError::InvalidArgument { what: "status", why: format!("{status} is not 300-699") });
        }
        let call = self.calls.get_mut(&id).ok_or(UaError::UnknownCall(id))?;
        let Some(key) = call.server_key.take() else {
            return Err(UaError::InvalidState { what: "reject", why: "no INVITE is waiting for an answer" });
        };
        let initial = call.state == State::Incoming;
        let tag = call.local_tag.clone();
        let r = self.reply_with(now, &key, status, reason, Some(&tag), |b| match retry_after {
            Some(s) => b.header(HeaderName::RetryAfter, s.to_string()),
            None => b,
        });
        if initial {
            self.remove_call(id);
        }
        r?;
        self.pump(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmf_bodies() {
        assert_eq!(parse_dtmf("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"), Some(('5', 160)));
        assert_eq!(parse_dtmf("application/dtmf-relay", b"signal= #\nDuration= 250"), Some(('#', 250)));
        assert_eq!(parse_dtmf("application/dtmf-relay", b"Signal=x\r\n"), None);
        assert_eq!(parse_dtmf("application/dtmf", b"7"), Some(('7', 160)));
        assert_eq!(parse_dtmf("application/dtmf-relay", b"\xff"), None);
    }

    #[test]
    fn sipfrag_status_lines() {
        assert_eq!(parse_sipfrag(b"SIP/2.0 100 Trying\r\n"), Some((100, "Trying".into())));
        assert_eq!(parse_sipfrag(b"SIP/2.0 603 Declined"), Some((603, "Declined".into())));
        assert_eq!(parse_sipfrag(b"SIP/2.0 200"), Some((200, String::new())));
        assert_eq!(parse_sipfrag(b"INVITE sip:a@b SIP/2.0"), None);
        assert_eq!(parse_sipfrag(b""), None);
    }
}
