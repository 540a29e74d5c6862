//! SIP subscriptions for clients (RFC 6665): `subscribe` -> `subscribe` hook -> SUBSCRIBE from
//! the session's account -> `SubscriptionStatusEvent` (backend) + `notifySubscription` (client).
//!
//! The `subscribeObject` fields are UNCONFIRMED in the sources; callgate reads `id` (the
//! client's; one is made when absent), `event` (package, required), `to` or `target` (user or
//! SIP URI, required), `expires` (seconds, default 3600; `0` ends the subscription `id`),
//! `accept` (Accept header), `body` + `contentType` (default `text/plain`).
//!
//! | SIP | status | extra fields |
//! |---|---|---|
//! | first 2xx (refreshes are silent) | `ACCEPTED` | `expires` |
//! | each NOTIFY | `NOTIFY` | `subscriptionState`, `contentType`, `body` (the NOTIFY body), `sipMessageRaw` |
//! | terminated (NOTIFY or our un-SUBSCRIBE) | `TERMINATED` | `info` = the reason, if any |
//! | 4xx-6xx, timeout | `FAILED` | errmap `info`, `sipStatus`, `sipMessageRaw` |
//!
//! The session's subscriptions are un-SUBSCRIBEd when it ends (the backend then gets
//! `TERMINATED`).

use std::collections::HashMap;
use std::sync::Arc;

use callgate_errmap::{map_failure, SipOperation};
use callgate_hooks::{HookMethod, Origin};
use callgate_sip::ua::{Account, SubEvent, SubId};
use serde_json::{Map, Value};

use super::message::{session_account, text};
use crate::party::Party;
use crate::sip_side::SipSide;

pub use callgate_proto::info::{
    NO_EVENT_PACKAGE as NO_EVENT, NO_SUBSCRIPTION_TARGET as NO_TARGET, SUBSCRIPTION_ID_IN_USE as ID_IN_USE,
    SUBSCRIPTION_NOT_FOUND as NOT_FOUND,
};
pub use callgate_proto::messages::NOTIFY_SUBSCRIPTION as CLIENT_MESSAGE;
pub use callgate_proto::status::subscription::{ACCEPTED, FAILED, NOTIFY, TERMINATED};

pub(super) struct SubEntry {
    ctx: Arc<Party>,
    obj: Map<String, Value>,
    accepted: bool,
}

/// The node's subscriptions, owned by the SIP owner task (`super::pump`): a SUBSCRIBE is
/// recorded there before the owner handles its first response.
#[derive(Default)]
pub(super) struct SubTables {
    subs: HashMap<SubId, SubEntry>,
    by_client: HashMap<(Arc<str>, String), SubId>,
}

/// A new subscription, as the owner needs it.
pub(crate) struct NewSub {
    pub ctx: Arc<Party>,
    pub obj: Map<String, Value>,
    pub key: (Arc<str>, String),
    pub account: Account,
    pub target: String,
    pub event: String,
    pub expires: u32,
    pub accept: Option<String>,
    pub body: Option<(String, bytes::Bytes)>,
}

fn raise(ctx: &Arc<Party>, obj: &Map<String, Value>, status: &str, info: &str, extra: Map<String, Value>) {
    let mut ev = obj.clone();
    ev.insert("status".into(), status.into());
    ev.insert("info".into(), info.into());
    ev.extend(extra);
    tracing::info!(session = &*ctx.id, id = ?obj.get("id"), status, info, "subscription status");
    ctx.raise_event(HookMethod::SubscriptionStatusEvent, Origin::Client, ev, Some(CLIENT_MESSAGE));
}

fn failed(ctx: &Arc<Party>, obj: &Map<String, Value>, info: &str) {
    raise(ctx, obj, FAILED, info, Map::new());
}

/// `subscribe {id, event, to|target, expires, accept, body, contentType}`.
pub(super) async fn subscribe(calls: Arc<super::Calls>, ctx: Arc<Party>, obj: Map<String, Value>) {
    let mut data = ctx.with_context(obj);
    let id = text(&data, "id").unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    data.insert("id".into(), id.as_str().into());
    data.remove("status");
    let result = ctx.direct(HookMethod::Subscribe, &mut data).await;
    data.insert("id".into(), id.as_str().into());
    if let Err(why) = result {
        return failed(&ctx, &data, &why);
    }
    let key = (ctx.id.clone(), id.clone());
    let expires = match text(&data, "expires").map(|e| e.parse::<u32>()) {
        None => 3600,
        Some(Ok(e)) => e,
        Some(Err(_)) => return failed(&ctx, &data, callgate_proto::info::BAD_EXPIRES),
    };
    if expires == 0 {
        // Ends the subscription `id`; TERMINATED follows from the user agent.
        if calls.sip_cmd(super::SipCmd::Unsubscribe { ctx: ctx.clone(), obj: data.clone(), key }).is_err() {
            failed(&ctx, &data, NOT_FOUND);
        }
        return;
    }
    let Some(event) = text(&data, "event") else { return failed(&ctx, &data, NO_EVENT) };
    let Some(target) = text(&data, "to").or_else(|| text(&data, "target")) else {
        return failed(&ctx, &data, NO_TARGET);
    };
    let accept = text(&data, "accept");
    let body = match data.get("body") {
        Some(Value::String(s)) if !s.is_empty() => {
            Some((text(&data, "contentType").unwrap_or_else(|| "text/plain".into()), bytes::Bytes::from(s.clone())))
        }
        _ => None,
    };
    let (account, creds) = match session_account(&calls, &ctx).await {
        Ok(x) => x,
        Err(info) => return failed(&ctx, &data, &info),
    };
    let target = super::call::target_uri(&target, &creds.domain);
    tracing::info!(session = &*ctx.id, id, event, target, expires, "SIP SUBSCRIBE");
    let new = NewSub { ctx: ctx.clone(), obj: data.clone(), key, account, target, event, expires, accept, body };
    if let Err(gone) = calls.sip_cmd(super::SipCmd::Subscribe(Box::new(new))) {
        failed(&ctx, &data, &gone);
    }
}

impl SubTables {
    /// `SipCmd::Subscribe`: SUBSCRIBE, recorded before its first response is handled.
    pub(super) async fn subscribe(&mut self, side: &SipSide, n: NewSub) {
        if self.by_client.contains_key(&n.key) {
            return failed(&n.ctx, &n.obj, ID_IN_USE);
        }
        match side.subscribe(n.account, n.target, n.event, n.expires, n.accept, n.body).await {
            Ok(sub) => {
                self.by_client.insert(n.key, sub);
                self.subs.insert(sub, SubEntry { ctx: n.ctx, obj: n.obj, accepted: false });
            }
            Err(e) => failed(&n.ctx, &n.obj, &callgate_proto::info::failed_by_error(e)),
        }
    }

    /// `SipCmd::Unsubscribe`: `expires: 0` for the subscription `key`.
    pub(super) async fn unsubscribe(
        &mut self,
        side: &SipSide,
        ctx: &Arc<Party>,
        obj: &Map<String, Value>,
        key: &(Arc<str>, String),
    ) {
        let Some(sub) = self.by_client.get(key).copied() else { return failed(ctx, obj, NOT_FOUND) };
        if let Err(e) = side.unsubscribe(sub).await {
            tracing::debug!(error = %e, "un-SUBSCRIBE");
        }
    }

    /// `SipCmd::SessionClosed`: un-SUBSCRIBE each of the session's subscriptions (the backend
    /// then gets `TERMINATED`).
    pub(super) async fn session_closed(&mut self, side: &SipSide, ctx: &Arc<Party>) {
        let subs: Vec<SubId> = self.subs.iter().filter(|(_, e)| Arc::ptr_eq(&e.ctx, ctx)).map(|(k, _)| *k).collect();
        for sub in subs {
            if let Err(e) = side.unsubscribe(sub).await {
                tracing::debug!(error = %e, "un-SUBSCRIBE at session end");
                self.forget(sub);
            }
        }
    }

    fn forget(&mut self, sub: SubId) -> Option<SubEntry> {
        let e = self.subs.remove(&sub)?;
        let id = text(&e.obj, "id").unwrap_or_default();
        self.by_client.remove(&(e.ctx.id.clone(), id));
        Some(e)
    }

    /// A subscription event from the user agent.
    pub(super) fn on_event(&mut self, sub: SubId, event: SubEvent) {
        match event {
            SubEvent::Accepted { expires } => {
                let Some(e) = self.subs.get_mut(&sub) else { return };
                if std::mem::replace(&mut e.accepted, true) {
                    return; // a refresh
                }
                let mut extra = Map::new();
                extra.insert("expires".into(), expires.into());
                raise(&e.ctx, &e.obj, ACCEPTED, "", extra);
            }
            SubEvent::Notify { state, content_type, body, raw } => {
                let Some(e) = self.subs.get(&sub) else { return };
                let mut extra = Map::new();
                extra.insert("subscriptionState".into(), state.into());
                extra.insert("contentType".into(), content_type.unwrap_or_default().into());
                extra.insert("body".into(), String::from_utf8_lossy(&body).into_owned().into());
                extra.insert("sipMessageRaw".into(), String::from_utf8_lossy(&raw).into_owned().into());
                raise(&e.ctx, &e.obj, NOTIFY, "", extra);
            }
            SubEvent::Terminated { reason } => {
                let Some(e) = self.forget(sub) else { return };
                raise(&e.ctx, &e.obj, TERMINATED, reason.as_deref().unwrap_or(""), Map::new());
            }
            SubEvent::Failed(f) => {
                let Some(e) = self.forget(sub) else { return };
                let fe = map_failure(SipOperation::Subscribe, &f);
                let mut extra = Map::new();
                crate::party::insert_sip_failure(&mut extra, &fe);
                raise(&e.ctx, &e.obj, FAILED, &fe.info, extra);
            }
        }
    }
}
