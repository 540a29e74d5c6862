//! The node's graceful shutdown (SIGTERM, SIGINT, or a supervised part's failure), bounded by
//! `[server] shutdown_timeout_ms`. In order:
//!
//! 1. **stop**: (`[cluster]`: the node deletes its directory entries, meanwhile) every listener (ws, http, wss, https) stops accepting (HTTP requests in flight finish); every session,
//!    also one still logging in or one that logs in now, gets `fail ConnectionStatusEvent
//!    "Server shutdown"` and a close frame 1001 (going away), and ends: the backend gets its
//!    `ConnectionStatusEvent DISCONNECTED` after its other events;
//! 2. **calls**, meanwhile: every call is hung up (BYE; CANCEL before the answer; 486 for one
//!    still ringing) while the SIP driver runs, and its end awaited (the `CallStatusEvent`
//!    FINISH/FAILED); REST-started calls have no session that would end them;
//! 3. **registrations**: the closed sessions' un-REGISTERs are answered;
//! 4. **SIP and media stop**: the SIP driver stops (its sockets close) and the tables of the SIP
//!    side and the stream directory are emptied; the media task stops;
//! 5. **events**: every session's event queue drains: the backend has every end event (events
//!    are retried until the deadline; what is still not delivered then, or still queued, is
//!    written to the dead-letter file at once, `[hooks] dead_letter_file`);
//! 6. **released**: nothing holds the node any more. The tables hold parties (`Arc<Party>`),
//!    which hold only the small `NodeInfo`, never `Arc<Shared>` (node.rs): once the sessions and
//!    the tasks working for them are gone, the node is released.
//!
//! Steps 1-3 may take until the deadline; what is not done by then is named in the [`Outcome`]
//! (the binary then exits with code 1 instead of 0), and a call still up is reported FAILED
//! "Server shutdown" to its owner when step 4 drops it. Steps 4-6 may take until the deadline
//! too, and always get at least [`STOP_GRACE`] each, also after the deadline.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};

use crate::node::Shared;

/// How long stopping the SIP driver and the media task and the release of the node may take
/// when the deadline has already passed.
pub const STOP_GRACE: Duration = Duration::from_millis(500);

pub use crate::node::{Lifecycle, SessionLive};

/// How a shutdown went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub elapsed: Duration,
    /// What was not finished in time (empty: a complete shutdown).
    pub left: Vec<String>,
}

impl Outcome {
    /// Everything ended before the deadline and the node was released.
    pub fn complete(&self) -> bool {
        self.left.is_empty()
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.elapsed.as_millis();
        if self.left.is_empty() {
            write!(f, "complete in {ms} ms")
        } else {
            write!(f, "incomplete after {ms} ms: {}", self.left.join("; "))
        }
    }
}

/// Runs the shutdown of the node `shared` whose listener tasks are `listeners`; see the module
/// documentation. Consumes the caller's `Arc<Shared>` and returns once it is released (or the
/// grace after the deadline has passed).
pub async fn run(shared: Arc<Shared>, listeners: Vec<JoinHandle<()>>) -> Outcome {
    let started = Instant::now();
    let deadline = started + Duration::from_millis(shared.cfg.server.shutdown_timeout_ms);
    let mut left = Vec::new();
    tracing::info!(
        sessions = shared.lifecycle.sessions(),
        calls = shared.calls.calls(),
        timeout_ms = shared.cfg.server.shutdown_timeout_ms,
        "shutdown: closing listeners and sessions, hanging up calls"
    );
    shared.lifecycle.begin();
    let sessions_ended = wait_until(deadline, || shared.lifecycle.sessions() == 0);
    // `[cluster]`: the node leaves the directory meanwhile (its entries are deleted).
    let leave = async {
        if let Some(c) = &shared.cluster {
            c.leave().await;
        }
    };
    tokio::join!(shared.calls.hang_up_all(deadline), sessions_ended, leave);
    note(&mut left, shared.calls.calls(), "calls not ended");
    note(&mut left, shared.lifecycle.sessions(), "sessions not closed");
    wait_until(deadline, || shared.calls.registrations() == 0).await;
    note(&mut left, shared.calls.registrations(), "registrations not removed");

    let grace = deadline.max(Instant::now() + STOP_GRACE);
    if timeout_at(grace, shared.calls.stop_sip()).await.is_err() {
        left.push("the SIP driver did not stop".into());
    }
    let dropped = shared.calls.clear(deadline.max(Instant::now() + STOP_GRACE)).await + shared.streams.clear();
    if dropped > 0 {
        tracing::info!(entries = dropped, "shutdown: SIP and stream state dropped");
    }
    let grace = deadline.max(Instant::now() + STOP_GRACE);
    if timeout_at(grace, shared.streams.media.shutdown()).await.is_err() {
        left.push("the media task did not stop".into());
    }
    // The sessions' and calls' last events: the backend hears how everything ended (also what
    // was ended at the deadline, so these get the grace too).
    let engine = shared.engine.clone();
    let grace = deadline.max(Instant::now() + STOP_GRACE);
    if timeout_at(grace, engine.event_queues_idle()).await.is_err() {
        tracing::warn!(
            queues = engine.event_queues(),
            "shutdown: events still undelivered at the deadline; dead-lettering them"
        );
        engine.abandon_events();
        if timeout_at(Instant::now() + STOP_GRACE, engine.event_queues_idle()).await.is_err() {
            note(&mut left, engine.event_queues(), "event queues not drained");
        }
    }
    for t in listeners {
        if timeout_at(deadline, t).await.is_err() {
            left.push("a listener did not stop".into());
        }
    }
    let node = Arc::downgrade(&shared);
    drop(shared);
    let grace = deadline.max(Instant::now() + STOP_GRACE);
    wait_until(grace, || node.strong_count() == 0).await;
    note(&mut left, node.strong_count(), "references to the node left (tasks still running)");
    Outcome { elapsed: started.elapsed(), left }
}

/// Polls `done` until it holds or `deadline` passes.
async fn wait_until(deadline: Instant, done: impl Fn() -> bool) {
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn note(left: &mut Vec<String>, n: usize, what: &str) {
    if n > 0 {
        left.push(format!("{n} {what}"));
    }
}
