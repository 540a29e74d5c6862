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

use std::sync::Arc;

use callgate_errmap::{map_failure, SipOperation};
use callgate_hooks::{HookMethod, Origin};
use callgate_sip::ua::{SubEvent, SubId, UaError};
use dashmap::DashMap;
use serde_json::{Map, Value};

use super::message::{session_account, text, with_context};
use super::Calls;
use crate::party::Party;

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

/// The node's subscriptions.
#[derive(Default)]
pub struct SubTables {
    subs: DashMap<SubId, SubEntry>,
    by_client: DashMap<(Arc<str>, String), SubId>,
}

impl SubTables {
    /// Server shutdown: forgets every subscription; returns how many there were.
    pub(super) fn clear(&self) -> usize {
        let n = self.subs.len();
        self.subs.clear();
        self.by_client.clear();
        n
    }
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
pub(super) async fn subscribe(calls: Arc<Calls>, ctx: Arc<Party>, obj: Map<String, Value>) {
    let mut data = with_context(&ctx, obj);
    let id = text(&data, "id").unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    data.insert("id".into(), id.as_str().into());
    data.remove("status");
    let result = ctx.direct(HookMethod::Subscribe, &mut data).await;
    data.insert("id".into(), id.as_str().into());
    if let Err(why) = result {
        return failed(&ctx, &data, &why);
    }
    let tables = calls.subs.clone();
    let key = (ctx.id.clone(), id.clone());
    let expires = match text(&data, "expires").map(|e| e.parse::<u32>()) {
        None => 3600,
        Some(Ok(e)) => e,
        Some(Err(_)) => return failed(&ctx, &data, callgate_proto::info::BAD_EXPIRES),
    };
    if expires == 0 {
        // Ends the subscription `id`; TERMINATED follows from the user agent.
        let Some(sub) = tables.by_client.get(&key).map(|s| *s) else { return failed(&ctx, &data, NOT_FOUND) };
        if let Some(Ok(handle)) = calls.endpoint.get().cloned() {
            if let Ok(Err(e)) = handle.with(move |ua, now| ua.unsubscribe(now, sub)).await {
                tracing::debug!(error = %e, "un-SUBSCRIBE");
            }
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
    if tables.by_client.contains_key(&key) {
        return failed(&ctx, &data, ID_IN_USE);
    }
    let (handle, account, creds) = match session_account(&calls, &ctx).await {
        Ok(x) => x,
        Err(info) => return failed(&ctx, &data, &info),
    };
    let target_uri = super::call::target_uri(&target, &creds.domain);
    let (c2, obj, t2) = (ctx.clone(), data.clone(), tables.clone());
    tracing::info!(session = &*ctx.id, id, event, target = target_uri, expires, "SIP SUBSCRIBE");
    let r = handle
        .with(move |ua, now| {
            let sub = ua.subscribe_with_body(now, &account, &target_uri, &event, expires, accept.as_deref(), body)?;
            // Recorded in the driver, before any response can be handled.
            t2.by_client.insert(key, sub);
            t2.subs.insert(sub, SubEntry { ctx: c2, obj, accepted: false });
            Ok::<_, UaError>(())
        })
        .await;
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => failed(&ctx, &data, &callgate_proto::info::failed_by_error(e)),
        Err(gone) => failed(&ctx, &data, &gone.to_string()),
    }
}

fn forget(tables: &SubTables, sub: SubId) -> Option<SubEntry> {
    let (_, e) = tables.subs.remove(&sub)?;
    let id = text(&e.obj, "id").unwrap_or_default();
    tables.by_client.remove(&(e.ctx.id.clone(), id));
    Some(e)
}

/// A subscription event from the user agent.
pub(super) fn on_event(tables: &SubTables, sub: SubId, event: SubEvent) {
    match event {
        SubEvent::Accepted { expires } => {
            let Some(mut e) = tables.subs.get_mut(&sub) else { return };
            if std::mem::replace(&mut e.accepted, true) {
                return; // a refresh
            }
            let mut extra = Map::new();
            extra.insert("expires".into(), expires.into());
            raise(&e.ctx, &e.obj, ACCEPTED, "", extra);
        }
        SubEvent::Notify { state, content_type, body, raw } => {
            let Some(e) = tables.subs.get(&sub) else { return };
            let mut extra = Map::new();
            extra.insert("subscriptionState".into(), state.into());
            extra.insert("contentType".into(), content_type.unwrap_or_default().into());
            extra.insert("body".into(), String::from_utf8_lossy(&body).into_owned().into());
            extra.insert("sipMessageRaw".into(), String::from_utf8_lossy(&raw).into_owned().into());
            raise(&e.ctx, &e.obj, NOTIFY, "", extra);
        }
        SubEvent::Terminated { reason } => {
            let Some(e) = forget(tables, sub) else { return };
            raise(&e.ctx, &e.obj, TERMINATED, reason.as_deref().unwrap_or(""), Map::new());
        }
        SubEvent::Failed(f) => {
            let Some(e) = forget(tables, sub) else { return };
            let fe = map_failure(SipOperation::Subscribe, &f);
            let mut extra = Map::new();
            crate::party::insert_sip_failure(&mut extra, &fe);
            raise(&e.ctx, &e.obj, FAILED, &fe.info, extra);
        }
    }
}

/// The session is gone: un-SUBSCRIBE each of its subscriptions.
pub(super) fn session_closed(calls: &Calls, ctx: &Arc<Party>) {
    let subs: Vec<SubId> = calls.subs.subs.iter().filter(|e| Arc::ptr_eq(&e.ctx, ctx)).map(|e| *e.key()).collect();
    if subs.is_empty() {
        return;
    }
    let Some(Ok(handle)) = calls.endpoint.get().cloned() else { return };
    let tables = calls.subs.clone();
    tokio::spawn(async move {
        let _ = handle
            .with(move |ua, now| {
                for sub in subs {
                    if let Err(e) = ua.unsubscribe(now, sub) {
                        tracing::debug!(error = %e, "un-SUBSCRIBE at session end");
                        forget(&tables, sub);
                    }
                }
            })
            .await;
    });
}
