//! The index of live sessions: session id -> handle. A concurrent map is used for this one
//! read-mostly index (REST API lookups); each session's state stays owned by its own task.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::RwLock;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::session::{Outbox, SessionCmd};

/// What the rest of the server may know of and do to a session.
pub struct SessionHandle {
    pub id: Arc<str>,
    pub app_key: Arc<str>,
    /// The connection object as established (client fields + connect answer).
    data: RwLock<Arc<Map<String, Value>>>,
    pub cmd: mpsc::Sender<SessionCmd>,
    pub out: Outbox,
    /// The session's direct invocations waiting on the backend (bounded by
    /// `hooks.max_in_flight_per_session`, see [`crate::session::SessionCtx::direct`]).
    pub(crate) direct_in_flight: AtomicUsize,
    /// Refusals for that bound are logged once per session.
    pub(crate) direct_refusal_logged: AtomicBool,
}

impl SessionHandle {
    pub fn new(
        id: Arc<str>,
        app_key: Arc<str>,
        data: Map<String, Value>,
        cmd: mpsc::Sender<SessionCmd>,
        out: Outbox,
    ) -> SessionHandle {
        SessionHandle {
            id,
            app_key,
            data: RwLock::new(Arc::new(data)),
            cmd,
            out,
            direct_in_flight: AtomicUsize::new(0),
            direct_refusal_logged: AtomicBool::new(false),
        }
    }

    /// A copy of the connection object.
    pub fn data(&self) -> Map<String, Value> {
        (**self.data.read()).clone()
    }

    pub fn data_ref(&self) -> Arc<Map<String, Value>> {
        self.data.read().clone()
    }
}

#[derive(Default)]
pub struct Registry {
    sessions: DashMap<Arc<str>, Arc<SessionHandle>>,
}

impl Registry {
    pub fn insert(&self, h: Arc<SessionHandle>) {
        self.sessions.insert(h.id.clone(), h);
        metrics::gauge!("callgate_sessions").set(self.sessions.len() as f64);
    }

    pub fn remove(&self, id: &str) {
        self.sessions.remove(id);
        metrics::gauge!("callgate_sessions").set(self.sessions.len() as f64);
    }

    pub fn get(&self, id: &str) -> Option<Arc<SessionHandle>> {
        self.sessions.get(id).map(|h| h.clone())
    }

    /// Every live session's handle (a snapshot).
    pub fn handles(&self) -> Vec<Arc<SessionHandle>> {
        self.sessions.iter().map(|e| e.value().clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Sessions whose connection object has every field of `filter` with an equal value.
    pub fn find(&self, filter: &Map<String, Value>) -> Vec<Arc<Map<String, Value>>> {
        self.sessions
            .iter()
            .map(|e| e.value().data_ref())
            .filter(|d| filter.iter().all(|(k, v)| d.get(k) == Some(v)))
            .collect()
    }
}
