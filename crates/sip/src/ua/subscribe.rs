//! Subscriptions (RFC 6665): SUBSCRIBE, the dialog its 2xx or first NOTIFY creates,
//! NOTIFY handling, refresh at 90 % of the granted lifetime, un-SUBSCRIBE (`Expires: 0`).

use std::time::Instant;

use crate::dialog::Dialog;
use crate::message::Message;
use crate::method::Method;
use crate::name::HeaderName;
use crate::txn::TxnKey;
use crate::uri::Uri;

use super::auth::Creds;
use super::incoming::is_terminated;
use super::register::refresh_delay;
use super::request::ReqSpec;
use super::{Account, ClientAuth, DialogOwner, Failure, Owner, SubEvent, SubId, UaError, UaEvent, UaTimer, UserAgent};

pub(super) struct Subscription {
    account: Account,
    event: String,
    accept: Option<String>,
    /// A body for every SUBSCRIBE but the un-SUBSCRIBE (a filter, RFC 4661, or an event
    /// package's own document): content type and bytes.
    body: Option<(String, bytes::Bytes)>,
    target: String,
    call_id: String,
    local_tag: String,
    contact: String,
    cseq: u32,
    expires: u32,
    /// The last SUBSCRIBE sent (a NOTIFY before its 2xx builds the dialog from it).
    pub request: Option<Message>,
    pub txn: Option<TxnKey>,
    dialog: Option<Dialog>,
    ending: bool,
}

impl Subscription {
    pub fn next_cseq(&mut self) -> u32 {
        match &mut self.dialog {
            Some(d) => d.next_local_seq(),
            None => {
                self.cseq = self.cseq.wrapping_add(1);
                self.cseq
            }
        }
    }
}

impl UserAgent {
    /// Subscribes `account` to `event` at `target` for `expires` seconds (RFC 6665).
    /// `accept` is the Accept header, if any. Events: `Accepted`, `Notify`, `Terminated`
    /// or `Failed`.
    pub fn subscribe(
        &mut self,
        now: Instant,
        account: &Account,
        target: &str,
        event: &str,
        expires: u32,
        accept: Option<&str>,
    ) -> Result<SubId, UaError> {
        self.subscribe_with_body(now, account, target, event, expires, accept, None)
    }

    /// [`UserAgent::subscribe`] with a body (content type, bytes) in the SUBSCRIBE and its
    /// refreshes (not in the un-SUBSCRIBE).
    #[allow(clippy::too_many_arguments)]
    pub fn subscribe_with_body(
        &mut self,
        now: Instant,
        account: &Account,
        target: &str,
        event: &str,
        expires: u32,
        accept: Option<&str>,
        body: Option<(String, bytes::Bytes)>,
    ) -> Result<SubId, UaError> {
        if let Some((ct, _)) = &body {
            if ct.is_empty() || ct.contains(['\r', '\n']) {
                return Err(UaError::InvalidArgument { what: "content type", why: format!("{ct:?}") });
            }
        }
        if accept.is_some_and(|a| a.contains(['\r', '\n'])) {
            return Err(UaError::InvalidArgument { what: "Accept", why: format!("{accept:?}") });
        }
        Uri::parse(target).map_err(|e| UaError::InvalidArgument { what: "subscription target", why: e.to_string() })?;
        if event.is_empty() || event.contains(['\r', '\n']) {
            return Err(UaError::InvalidArgument { what: "event package", why: format!("{event:?}") });
        }
        let id = SubId(self.new_id());
        let sub = Subscription {
            account: account.clone(),
            event: event.to_owned(),
            accept: accept.map(str::to_owned),
            body,
            target: target.to_owned(),
            call_id: self.rng.call_id(),
            local_tag: self.rng.tag(),
            contact: self.contact_for(account),
            cseq: self.rng.cseq(),
            expires,
            request: None,
            txn: None,
            dialog: None,
            ending: false,
        };
        self.dialogs.insert((sub.call_id.clone(), sub.local_tag.clone()), DialogOwner::Sub(id));
        self.subs.insert(id, sub);
        if let Err(e) = self.send_subscribe(now, id, expires) {
            self.drop_sub(id);
            return Err(e);
        }
        self.pump(now);
        Ok(id)
    }

    /// Ends a subscription (SUBSCRIBE with `Expires: 0`). Event: `Terminated`.
    pub fn unsubscribe(&mut self, now: Instant, id: SubId) -> Result<(), UaError> {
        let sub = self.subs.get_mut(&id).ok_or(UaError::UnknownSubscription(id))?;
        sub.ending = true;
        self.timers.set(UaTimer::Sub(id), None);
        self.send_subscribe(now, id, 0)?;
        self.pump(now);
        Ok(())
    }

    fn send_subscribe(&mut self, now: Instant, id: SubId, expires: u32) -> Result<(), UaError> {
        let Some(sub) = self.subs.get_mut(&id) else { return Ok(()) };
        let mut headers = vec![("Event".to_owned(), sub.event.clone()), ("Expires".to_owned(), expires.to_string())];
        if let Some(a) = &sub.accept {
            headers.push(("Accept".to_owned(), a.clone()));
        }
        let body = if expires == 0 { None } else { sub.body.clone() };
        let transport = sub.account.transport;
        let peer = sub.account.next_hop;
        let seq = sub.next_cseq();
        let (spec, dst) = match &sub.dialog {
            Some(d) => {
                let route = d.route();
                let dst = Self::uri_addr(&route.next_hop, peer);
                (
                    ReqSpec {
                        method: Method::Subscribe,
                        uri: route.request_uri,
                        cseq: seq,
                        routes: route.routes,
                        from: d.local_party().to_owned(),
                        to: d.remote_party().to_owned(),
                        call_id: d.call_id.clone(),
                        contact: Some(sub.contact.clone()),
                        headers,
                        body: body.clone(),
                        transport,
                    },
                    dst,
                )
            }
            None => (
                ReqSpec {
                    method: Method::Subscribe,
                    uri: sub.target.clone(),
                    cseq: seq,
                    routes: Vec::new(),
                    from: format!("{};tag={}", sub.account.name_addr(), sub.local_tag),
                    to: format!("<{}>", sub.target),
                    call_id: sub.call_id.clone(),
                    contact: Some(sub.contact.clone()),
                    headers,
                    body: body.clone(),
                    transport,
                },
                peer,
            ),
        };
        let creds = Creds::of(&sub.account);
        let (key, msg) = self.start_client(now, Owner::Sub(id), spec, dst, ClientAuth::new(Some(creds)))?;
        if let Some(sub) = self.subs.get_mut(&id) {
            sub.txn = Some(key);
            sub.request = Some(msg);
        }
        Ok(())
    }

    fn drop_sub(&mut self, id: SubId) {
        if let Some(s) = self.subs.remove(&id) {
            self.dialogs.remove(&(s.call_id, s.local_tag));
        }
        self.timers.set(UaTimer::Sub(id), None);
    }

    pub(super) fn sub_on_response(&mut self, now: Instant, id: SubId, key: &TxnKey, resp: &Message) {
        let Some(sub) = self.subs.get_mut(&id) else { return };
        if sub.txn.as_ref() != Some(key) {
            return;
        }
        let status = resp.status().map_or(0, |s| s.as_u16());
        if status < 200 {
            return;
        }
        sub.txn = None;
        if status >= 300 {
            self.drop_sub(id);
            self.events
                .push_back(UaEvent::Subscription { sub: id, event: SubEvent::Failed(Failure::from_response(resp)) });
            return;
        }
        if sub.dialog.is_none() {
            let dialog = match &sub.request {
                Some(req) => Dialog::new_uac(req, resp),
                None => Err(crate::dialog::DialogError::NoContact),
            };
            match dialog {
                Ok(d) => sub.dialog = Some(d),
                Err(_) => {
                    self.drop_sub(id);
                    let failure = Failure::from_response(resp);
                    self.events.push_back(UaEvent::Subscription { sub: id, event: SubEvent::Failed(failure) });
                    return;
                }
            }
        }
        if sub.ending {
            // The final NOTIFY ends it; if none comes, the next timer does.
            self.timers.set(UaTimer::Sub(id), Some(now + self.cfg.timers.t1x64()));
            return;
        }
        let expires = resp.expires().ok().flatten().unwrap_or(sub.expires);
        self.events.push_back(UaEvent::Subscription { sub: id, event: SubEvent::Accepted { expires } });
        let at = (expires > 0).then(|| now + refresh_delay(expires));
        self.timers.set(UaTimer::Sub(id), at);
    }

    pub(super) fn sub_on_failure(&mut self, id: SubId, failure: Failure) {
        if self.subs.contains_key(&id) {
            self.drop_sub(id);
            self.events.push_back(UaEvent::Subscription { sub: id, event: SubEvent::Failed(failure) });
        }
    }

    pub(super) fn sub_on_request(&mut self, now: Instant, id: SubId, key: &TxnKey, msg: &Message, method: Method) {
        let Some(sub) = self.subs.get_mut(&id) else {
            self.reply(now, key, 481, None);
            return;
        };
        if method != Method::Notify {
            self.reply(now, key, 501, None);
            return;
        }
        match sub.dialog.as_mut() {
            Some(d) => {
                if d.check_remote_seq(msg).is_err() {
                    let _ = self.reply_with(now, key, 500, Some("Out Of Order CSeq"), None, |b| b);
                    return;
                }
                d.refresh_target(msg);
            }
            // The NOTIFY beat the 2xx (RFC 6665 §4.1.2.4): it creates the dialog.
            None => sub.dialog = sub.request.as_ref().and_then(|req| Dialog::new_from_peer_request(req, msg).ok()),
        }
        self.reply(now, key, 200, None);
        let state = msg
            .header(HeaderName::SubscriptionState)
            .map(|h| String::from_utf8_lossy(&h.value_unfolded()).into_owned())
            .unwrap_or_default();
        let content_type =
            msg.header(HeaderName::ContentType).map(|h| String::from_utf8_lossy(&h.value_unfolded()).into_owned());
        self.events.push_back(UaEvent::Subscription {
            sub: id,
            event: SubEvent::Notify { state: state.clone(), content_type, body: msg.body_bytes(), raw: msg.to_bytes() },
        });
        if is_terminated(msg) {
            let reason =
                state.split(';').skip(1).find_map(|p| p.trim().strip_prefix("reason=").map(|r| r.trim().to_owned()));
            self.drop_sub(id);
            self.events.push_back(UaEvent::Subscription { sub: id, event: SubEvent::Terminated { reason } });
        }
    }

    pub(super) fn sub_on_timer(&mut self, now: Instant, id: SubId) {
        let Some(sub) = self.subs.get(&id) else { return };
        if sub.ending {
            self.drop_sub(id);
            self.events.push_back(UaEvent::Subscription { sub: id, event: SubEvent::Terminated { reason: None } });
            return;
        }
        let expires = sub.expires;
        if self.send_subscribe(now, id, expires).is_err() {
            self.sub_on_failure(id, Failure::Transport("could not build the refresh".into()));
        }
    }
}
