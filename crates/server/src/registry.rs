//! The index of live WebSocket sessions: session id -> [`Party`]. A concurrent map is used for
//! this one read-mostly index (REST API lookups, "is this party still here" checks); each
//! session's connection state stays owned by its own task. REST-started legs are not in it.

use std::sync::Arc;

use dashmap::DashMap;

/// Live entries by id; `P` is `party::Party` (generic so that this index, beside the party on
/// its floor, need not name it).
pub struct Registry<P> {
    sessions: DashMap<Arc<str>, Arc<P>>,
}

impl<P> Default for Registry<P> {
    fn default() -> Self {
        Registry { sessions: DashMap::new() }
    }
}

impl<P> Registry<P> {
    pub fn insert(&self, id: Arc<str>, p: Arc<P>) {
        self.sessions.insert(id, p);
        metrics::gauge!("callgate_sessions").set(self.sessions.len() as f64);
    }

    pub fn remove(&self, id: &str) {
        self.sessions.remove(id);
        metrics::gauge!("callgate_sessions").set(self.sessions.len() as f64);
    }

    pub fn get(&self, id: &str) -> Option<Arc<P>> {
        self.sessions.get(id).map(|h| h.clone())
    }

    /// Whether `p` is (still) the registered entry of `id`: checked under the lock of a table
    /// before adding a stream or a call, so a closed session's cleanup never misses one.
    pub fn holds(&self, id: &str, p: &Arc<P>) -> bool {
        self.get(id).is_some_and(|e| Arc::ptr_eq(&e, p))
    }

    /// Every live entry (a snapshot).
    pub fn all(&self) -> Vec<Arc<P>> {
        self.sessions.iter().map(|e| e.value().clone()).collect()
    }

    /// What `f` picks of each live entry.
    pub fn select<R>(&self, mut f: impl FnMut(&P) -> Option<R>) -> Vec<R> {
        self.sessions.iter().filter_map(|e| f(e.value())).collect()
    }

    /// The first live entry `f` accepts (a scan: for rare lookups by something other than id).
    pub fn find(&self, mut f: impl FnMut(&P) -> bool) -> Option<Arc<P>> {
        self.sessions.iter().find(|e| f(e.value())).map(|e| e.value().clone())
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}
