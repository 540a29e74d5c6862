//! The live hook feed: one [`HookRecord`] per hook the engine ran, for whoever listens (the
//! console's hook log, `GET /console/hooks` in the server).
//!
//! Cheap when nobody listens: the engine asks [`HookFeed::listening`] (one atomic load) before it
//! builds anything; only then does it serialise the body and clone the answer. A listener that
//! falls behind by more than the channel's capacity loses the oldest records (it is told how
//! many: [`tokio::sync::broadcast::error::RecvError::Lagged`]); the engine never waits for one.
//! The records carry the data as sent: redacting secrets is the reader's job (the server masks
//! them as in its logs).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use tokio::sync::broadcast;

use crate::catalogue::HookMethod;
use crate::decision::{DataEffect, Verdict};
use crate::dispatch::InteractionError;

/// One hook as it went: what was sent, what came back, what was decided.
#[derive(Debug, Clone)]
pub struct HookRecord {
    /// When the hook finished.
    pub at: SystemTime,
    pub app: Arc<str>,
    pub method: HookMethod,
    /// The session id (empty for hooks of no session).
    pub session: String,
    /// `false` for the built-in EchoApp, answered in process (no HTTP).
    pub http: bool,
    /// The body sent (events: with `sequence` and `eventId`), before any answer was applied.
    pub body: Value,
    /// The backend's HTTP status: `200` for an answer, the code of a refusal; `None` when there
    /// was no HTTP answer (in process, timeout, unreachable, transport error).
    pub status: Option<u16>,
    /// The part of a `200` answer callgate uses: all of it for `connect`, the `restOverwrite`
    /// fields under OVERWRITE, `{}` under NOTIFY (its body is only checked to be a JSON object).
    pub answer: Option<Map<String, Value>>,
    /// The interaction error, when there was one.
    pub error: Option<InteractionError>,
    /// From the first attempt to the outcome (an event's retries and pauses included).
    pub latency: Duration,
    /// Attempts made (an event may be retried; a direct invocation is sent once).
    pub attempts: u32,
    pub verdict: Verdict,
}

impl HookRecord {
    /// `ok`, `overwrite` (the answer's `restOverwrite` fields were applied), `refused` (the
    /// operation was aborted) or `error` (an interaction error; the operation went on).
    pub fn decision(&self) -> &'static str {
        match self.verdict {
            Verdict::Proceed(DataEffect::OverwriteListed) => "overwrite",
            Verdict::Proceed(_) => "ok",
            Verdict::Reject | Verdict::RejectInitiator => "refused",
            Verdict::LogAndProceed | Verdict::ProceedWithErrorEvent => "error",
        }
    }
}

/// The broadcast of hook records, shared by an engine and its listeners.
#[derive(Clone)]
pub struct HookFeed {
    tx: broadcast::Sender<Arc<HookRecord>>,
    listeners: Arc<AtomicUsize>,
}

impl std::fmt::Debug for HookFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookFeed").field("listeners", &self.listeners.load(Ordering::Relaxed)).finish()
    }
}

impl HookFeed {
    /// A feed keeping up to `capacity` records for a listener that is behind.
    pub fn new(capacity: usize) -> HookFeed {
        HookFeed { tx: broadcast::channel(capacity.max(1)).0, listeners: Arc::default() }
    }

    /// Whether anyone listens: one atomic load (the broadcast's own count takes a lock).
    pub fn listening(&self) -> bool {
        self.listeners.load(Ordering::Relaxed) > 0
    }

    /// Listeners now.
    pub fn listeners(&self) -> usize {
        self.listeners.load(Ordering::Relaxed)
    }

    /// A new listener: it gets every record published from now on.
    pub fn subscribe(&self) -> FeedListener {
        self.listeners.fetch_add(1, Ordering::Relaxed);
        FeedListener { rx: self.tx.subscribe(), listeners: self.listeners.clone() }
    }

    pub(crate) fn publish(&self, record: HookRecord) {
        // An error only means the last listener left meanwhile.
        let _ = self.tx.send(Arc::new(record));
    }
}

/// One listener of a [`HookFeed`]; counted until dropped.
pub struct FeedListener {
    rx: broadcast::Receiver<Arc<HookRecord>>,
    listeners: Arc<AtomicUsize>,
}

impl FeedListener {
    /// The next record; `Lagged(n)` when `n` records were lost (the listener was too slow).
    pub async fn recv(&mut self) -> Result<Arc<HookRecord>, broadcast::error::RecvError> {
        self.rx.recv().await
    }
}

impl Drop for FeedListener {
    fn drop(&mut self) {
        self.listeners.fetch_sub(1, Ordering::Relaxed);
    }
}
