//! A circuit breaker per backend (`host:port`), shared by every app that uses it.
//!
//! - **closed**: requests go; `failures` consecutive failures (could not connect, connection
//!   error, timeout, 5xx) open it; any other outcome (200, 4xx, a bad body) resets the count;
//! - **open**: requests fail at once as unreachable (`Backend unreachable`), without a
//!   connection; after `cooldown` the next request is let through as the one probe;
//! - **half-open**: while the probe runs every other request still fails at once; the probe's
//!   success closes the breaker, its failure opens it for another `cooldown`.
//!
//! Metrics, labelled `backend="host:port"`: `callgate_hook_breaker_transitions_total{to}`
//! (`open`, `half_open`, `closed`), `callgate_hook_breaker_rejected_total` (requests failed fast)
//! and the gauge `callgate_hook_breaker_open` (1 while open or half-open).
//!
//! Written here rather than taken from a crate: the state machine is a few lines over a mutex,
//! and it must report exactly the outcomes the dispatcher classifies (a request cut by the hook
//! timeout counts as a failure through [`Probe`]'s drop).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Breaker settings (`[hooks] breaker_failures`, `breaker_cooldown_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open a breaker; 0 = no breakers.
    pub failures: u32,
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { failures: 0, cooldown: Duration::from_secs(5) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// The breaker of one backend.
#[derive(Debug)]
pub struct Breaker {
    backend: Arc<str>,
    cfg: BreakerConfig,
    state: Mutex<State>,
}

impl Breaker {
    fn new(backend: Arc<str>, cfg: BreakerConfig) -> Breaker {
        Breaker { backend, cfg, state: Mutex::new(State::Closed { failures: 0 }) }
    }

    /// Lets a request through (`Some`, to be finished with [`Probe::finish`]) or fails it fast.
    pub fn admit(self: &Arc<Self>) -> Option<Probe> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *st {
            State::Closed { .. } => Some(Probe { breaker: self.clone(), done: false }),
            State::Open { until } if Instant::now() >= until => {
                *st = State::HalfOpen;
                drop(st);
                self.transition("half_open");
                Some(Probe { breaker: self.clone(), done: false })
            }
            State::Open { .. } | State::HalfOpen => {
                drop(st);
                metrics::counter!("callgate_hook_breaker_rejected_total", "backend" => self.backend.to_string())
                    .increment(1);
                None
            }
        }
    }

    fn record(&self, ok: bool) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let to = match (*st, ok) {
            (State::Closed { .. }, true) => {
                *st = State::Closed { failures: 0 };
                None
            }
            (State::Closed { failures }, false) if failures + 1 >= self.cfg.failures => {
                *st = State::Open { until: Instant::now() + self.cfg.cooldown };
                Some("open")
            }
            (State::Closed { failures }, false) => {
                *st = State::Closed { failures: failures + 1 };
                None
            }
            (State::HalfOpen, true) => {
                *st = State::Closed { failures: 0 };
                Some("closed")
            }
            (State::HalfOpen, false) => {
                *st = State::Open { until: Instant::now() + self.cfg.cooldown };
                Some("open")
            }
            // A request let through before the breaker opened: its outcome changes nothing.
            (State::Open { .. }, _) => None,
        };
        drop(st);
        if let Some(to) = to {
            self.transition(to);
        }
    }

    fn transition(&self, to: &'static str) {
        let backend = self.backend.to_string();
        metrics::counter!("callgate_hook_breaker_transitions_total", "backend" => backend.clone(), "to" => to)
            .increment(1);
        metrics::gauge!("callgate_hook_breaker_open", "backend" => backend.clone()).set(if to == "closed" {
            0.0
        } else {
            1.0
        });
        match to {
            "open" => tracing::warn!(
                backend,
                cooldown_ms = self.cfg.cooldown.as_millis() as u64,
                "circuit breaker open: hooks to this backend fail fast until a probe succeeds"
            ),
            "closed" => tracing::info!(backend, "circuit breaker closed: the probe succeeded"),
            _ => tracing::info!(backend, "circuit breaker half-open: one probe request"),
        }
    }

    #[cfg(test)]
    fn is_open(&self) -> bool {
        !matches!(*self.state.lock().unwrap(), State::Closed { .. })
    }
}

/// A request let through by a breaker. Dropped unfinished (the hook's timeout cut it), it counts
/// as a failure.
#[derive(Debug)]
pub struct Probe {
    breaker: Arc<Breaker>,
    done: bool,
}

impl Probe {
    pub fn finish(mut self, ok: bool) {
        self.done = true;
        self.breaker.record(ok);
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.record(false);
        }
    }
}

/// Every backend's breaker, made at first use.
#[derive(Debug, Default)]
pub struct Breakers {
    cfg: Option<BreakerConfig>,
    map: Mutex<HashMap<Arc<str>, Arc<Breaker>>>,
}

impl Breakers {
    pub fn new(cfg: BreakerConfig) -> Breakers {
        Breakers { cfg: (cfg.failures > 0).then_some(cfg), map: Mutex::default() }
    }

    /// The breaker of `backend` (`host:port`); `None` when breakers are off.
    pub fn get(&self, backend: &Arc<str>) -> Option<Arc<Breaker>> {
        let cfg = self.cfg?;
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        Some(map.entry(backend.clone()).or_insert_with(|| Arc::new(Breaker::new(backend.clone(), cfg))).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_n_failures_probes_once_after_the_cooldown_and_closes() {
        let breakers = Breakers::new(BreakerConfig { failures: 3, cooldown: Duration::from_secs(3600) });
        let b = breakers.get(&Arc::from("h:1")).unwrap();
        // A success between failures resets the count.
        b.admit().unwrap().finish(false);
        b.admit().unwrap().finish(false);
        b.admit().unwrap().finish(true);
        b.admit().unwrap().finish(false);
        b.admit().unwrap().finish(false);
        assert!(!b.is_open());
        // The third consecutive failure is a timeout: the probe dropped unfinished.
        drop(b.admit().unwrap());
        assert!(b.is_open());
        assert!(b.admit().is_none(), "open: fail fast");
        // The cool-down has passed (set the deadline back instead of sleeping).
        *b.state.lock().unwrap() = State::Open { until: Instant::now() };
        let probe = b.admit().expect("the probe");
        assert!(b.admit().is_none(), "half-open: only one probe");
        probe.finish(false);
        assert!(b.admit().is_none(), "a failed probe opens it again");
        *b.state.lock().unwrap() = State::Open { until: Instant::now() };
        b.admit().expect("the next probe").finish(true);
        assert!(!b.is_open());
        assert!(b.admit().is_some());
        assert!(Arc::ptr_eq(&b, &breakers.get(&Arc::from("h:1")).unwrap()), "one breaker per backend");
    }

    #[test]
    fn off_when_failures_is_zero() {
        assert!(Breakers::new(BreakerConfig::default()).get(&Arc::from("h:1")).is_none());
    }
}
