//! `StreamKeepAliveEvent`: periodic per-stream hooks; a 403 answer ends the stream.

use std::sync::{Arc, Weak};

use callgate_hooks::{EventJob, HookMethod, InteractionError, Origin, Verdict};
use callgate_media::PeerId;
use serde_json::{Map, Value};

use super::directory::Status;
use super::*;
use crate::party::Party;

/// One keep-alive to send: the owner, the stream id, its peer, its object.
type KeepAliveDue = (Arc<Party>, Arc<str>, PeerId, Map<String, Value>);

/// Sends `StreamKeepAliveEvent` for every connected stream each `interval`; a `403` answer ends
/// that stream (`Terminated by keep-alive`). Stops when the server is gone.
pub fn spawn_keep_alive(streams: Weak<Streams>, ka: KeepAlive) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + ka.interval, ka.interval);
        loop {
            tick.tick().await;
            let Some(streams) = streams.upgrade() else { return };
            let due: Vec<KeepAliveDue> = streams
                .dir
                .lock()
                .all()
                .filter(|e| e.status != Status::Pending)
                .filter(|e| ka.app_keys.is_empty() || ka.app_keys.iter().any(|k| **k == *e.owner.app.key))
                .map(|e| (e.owner.clone(), e.id.clone(), e.peer, e.obj.clone()))
                .collect();
            for (ctx, id, peer, obj) in due {
                let (job_ctx, streams) = (ctx.clone(), streams.clone());
                ctx.events.push(EventJob {
                    method: HookMethod::StreamKeepAliveEvent,
                    origin: Origin::Client,
                    data: obj,
                    then: Box::new(move |done| {
                        let forbidden =
                            matches!(done.invocation.error, Some(InteractionError::Status { code: 403, .. }));
                        if forbidden {
                            tracing::info!(
                                session = &*job_ctx.id,
                                stream = &*id,
                                "keep-alive answered 403; stream ends"
                            );
                            end_stream(
                                &streams,
                                &id,
                                Some(peer),
                                Ending::Terminated(info::TERMINATED_BY_KEEP_ALIVE),
                                Origin::Client,
                            );
                        } else if done.invocation.verdict == Verdict::ProceedWithErrorEvent {
                            job_ctx.error_event(
                                &format!("StreamKeepAliveEvent: {}", done.invocation.client_info()),
                                Origin::Client,
                            );
                        }
                    }),
                });
            }
        }
    });
}
