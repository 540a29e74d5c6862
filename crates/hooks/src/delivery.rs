//! Durable event delivery: events (`ConnectionStatusEvent`, `CallStatusEvent`, ...) reach the
//! backend at least once.
//!
//! - Each event sent to the backend carries `"sequence": n` (per session, from 1, contiguous
//!   over the events the backend is sent) and `"eventId"` (the same on every retry; with
//!   `webhook_secrets` it is also the Standard Webhooks `webhook-id`). A backend drops a
//!   duplicate by `eventId` and sees a gap in `sequence` as an event still to come (a retry or
//!   a replay of the dead-letter file).
//! - A failed attempt is retried when the event may not have been handled: unreachable, reset
//!   or other transport error, timeout, 5xx, 429 ([`retryable`]). A 4xx, an answer that is not a
//!   JSON object or one too large is the backend's answer: not retried.
//! - The pause before retry `n` is `initial_delay * 2^(n-1)`, at most `max_delay`, with jitter
//!   (a random point in its upper half, "equal jitter", so that sessions that failed together do
//!   not retry together). An event is given up after `attempts` attempts or once the next pause
//!   would end past `total` since its first attempt.
//! - A session's queue retries its head before sending the next event: order is kept.
//! - An event given up (or still queued when the shutdown's deadline passes) is written to the
//!   dead-letter file ([`crate::dead_letter`]), replayed by `callgate events replay`.
//!
//! Direct and incoming invocations and `connect` are never repeated once sent: they are not
//! idempotent (`sendData` twice is two messages). Only the dispatcher's connect-level retry
//! (the request never left) applies to them.

use std::time::Duration;

use crate::dispatch::InteractionError;

/// The retry schedule and queue bound of events (`[hooks] event_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// Attempts per event, the first included (1 = no retry).
    pub attempts: u32,
    /// Pause before the first retry.
    pub initial_delay: Duration,
    /// Longest pause between two attempts.
    pub max_delay: Duration,
    /// An event is given up once the next pause would end later than this after its first attempt.
    pub total: Duration,
    /// Events that may wait per session; more are dropped (and counted).
    pub queue_capacity: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            attempts: 12,
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
            total: Duration::from_secs(60),
            queue_capacity: 1024,
        }
    }
}

impl DeliveryConfig {
    /// The pause before retry number `retry` (1 = the first retry), jittered.
    pub fn pause(&self, retry: u32) -> Duration {
        let full = self.ceiling(retry);
        let half = full / 2;
        let extra_ms = full.saturating_sub(half).as_millis() as u64;
        half + Duration::from_millis(if extra_ms == 0 { 0 } else { rand::random_range(0..=extra_ms) })
    }

    /// The pause before retry `retry` without jitter (the most it can be).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(20);
        self.initial_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// True when an event that failed with `e` may not have reached the backend's logic, so that
/// sending it again is right: unreachable, transport error (reset), timeout, 5xx and 429.
pub fn retryable(e: &InteractionError) -> bool {
    match e {
        InteractionError::Unreachable { .. } | InteractionError::Transport(_) | InteractionError::Timeout(_) => true,
        InteractionError::Status { code, .. } => *code >= 500 || *code == 429,
        InteractionError::BadBody(_) | InteractionError::TooLarge(_) | InteractionError::QueueFull => false,
    }
}

/// The body field holding an event's per-session sequence number.
pub const SEQUENCE: &str = "sequence";
/// The body field holding an event's idempotency id.
pub const EVENT_ID: &str = "eventId";

/// A new event id: `evt_` and 32 hex digits (a v4 UUID).
pub fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_retried() {
        let status = |code| InteractionError::Status { code, reason: String::new(), custom_reason: None };
        assert!(retryable(&InteractionError::Unreachable { attempts: 1, cause: "refused".into() }));
        assert!(retryable(&InteractionError::Transport("reset".into())));
        assert!(retryable(&InteractionError::Timeout(Duration::from_secs(1))));
        for code in [500, 502, 503, 504, 429] {
            assert!(retryable(&status(code)), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 302] {
            assert!(!retryable(&status(code)), "{code}");
        }
        assert!(!retryable(&InteractionError::BadBody("x".into())));
        assert!(!retryable(&InteractionError::TooLarge(1)));
        assert!(!retryable(&InteractionError::QueueFull));
    }

    #[test]
    fn pauses_grow_are_capped_and_jittered_in_their_upper_half() {
        let c = DeliveryConfig {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..Default::default()
        };
        assert_eq!(c.ceiling(1), Duration::from_millis(100));
        assert_eq!(c.ceiling(2), Duration::from_millis(200));
        assert_eq!(c.ceiling(4), Duration::from_millis(800));
        assert_eq!(c.ceiling(5), Duration::from_millis(1000));
        assert_eq!(c.ceiling(60), Duration::from_millis(1000), "no overflow for a large retry number");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let p = c.pause(3);
            assert!(p >= Duration::from_millis(200) && p <= Duration::from_millis(400), "{p:?}");
            seen.insert(p);
        }
        assert!(seen.len() > 10, "jitter: {} distinct pauses of 200", seen.len());
        let zero = DeliveryConfig { initial_delay: Duration::ZERO, ..c };
        assert_eq!(zero.pause(1), Duration::ZERO);
    }

    #[test]
    fn event_ids_are_unique_and_header_safe() {
        let a = new_event_id();
        assert!(a.starts_with("evt_") && a.len() == 36, "{a}");
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        assert_ne!(a, new_event_id());
    }
}
