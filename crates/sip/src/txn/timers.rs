//! The protocol timers of RFC 3261 §17 (Table 4 of appendix A), as one small table.

use std::time::{Duration, Instant};

/// T1, T2, T4 and whether the transport is reliable (reliable transports need no
/// retransmissions and no waiting for stray retransmissions: timers A, E, G are not armed and
/// D, I, J, K are zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, 500 ms by default.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses, 4 s.
    pub t2: Duration,
    /// Maximum duration a message remains in the network, 5 s.
    pub t4: Duration,
    pub reliable: bool,
}

impl TimerConfig {
    pub const fn udp() -> TimerConfig {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            reliable: false,
        }
    }

    pub const fn tcp() -> TimerConfig {
        TimerConfig { reliable: true, ..TimerConfig::udp() }
    }

    /// 64·T1: Timers B, F, H, J (unreliable), L and M.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D: "at least 32 s" for unreliable transports, zero for reliable ones.
    pub fn timer_d(&self) -> Duration {
        if self.reliable {
            Duration::ZERO
        } else {
            Duration::from_secs(32).max(self.t1x64() / 2)
        }
    }

    /// Timers I and K: T4 for unreliable transports, zero for reliable ones.
    pub fn t4_or_zero(&self) -> Duration {
        if self.reliable {
            Duration::ZERO
        } else {
            self.t4
        }
    }

    /// Timer J: 64·T1 for unreliable transports, zero for reliable ones.
    pub fn timer_j(&self) -> Duration {
        if self.reliable {
            Duration::ZERO
        } else {
            self.t1x64()
        }
    }
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig::udp()
    }
}

/// The timers by their RFC letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE client: request retransmit (T1, doubling).
    A,
    /// INVITE client: transaction timeout (64·T1).
    B,
    /// INVITE client: wait time for response retransmits (≥ 32 s unreliable).
    D,
    /// non-INVITE client: request retransmit (T1, doubling up to T2).
    E,
    /// non-INVITE client: transaction timeout (64·T1).
    F,
    /// INVITE server: response retransmit (T1, doubling up to T2).
    G,
    /// INVITE server: wait time for ACK receipt (64·T1).
    H,
    /// INVITE server: wait time for ACK retransmits (T4).
    I,
    /// non-INVITE server: wait time for request retransmits (64·T1).
    J,
    /// non-INVITE client: wait time for response retransmits (T4).
    K,
    /// INVITE server, Accepted state (RFC 6026): wait for retransmitted INVITEs (64·T1).
    L,
    /// INVITE client, Accepted state (RFC 6026): wait for retransmitted 2xx (64·T1).
    M,
}

/// A transaction's armed timers: at most a few at once, so a small vector beats a map.
#[derive(Debug, Clone, Default)]
pub(crate) struct Armed {
    slots: Vec<(Timer, Instant)>,
}

impl Armed {
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.cancel(timer);
        self.slots.push((timer, at));
    }

    pub fn cancel(&mut self, timer: Timer) {
        self.slots.retain(|(t, _)| *t != timer);
    }

    pub fn clear(&mut self) {
        self.slots.clear();
    }

    pub fn next(&self) -> Option<Instant> {
        self.slots.iter().map(|(_, at)| *at).min()
    }

    /// Removes and returns the earliest timer due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let (i, _) = self.slots.iter().enumerate().filter(|(_, (_, at))| *at <= now).min_by_key(|(_, (_, at))| *at)?;
        Some(self.slots.swap_remove(i).0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_values() {
        let u = TimerConfig::udp();
        assert_eq!(u.t1x64(), Duration::from_secs(32));
        assert_eq!(u.timer_d(), Duration::from_secs(32));
        assert_eq!(u.t4_or_zero(), Duration::from_secs(5));
        let t = TimerConfig::tcp();
        assert_eq!(t.timer_d(), Duration::ZERO);
        assert_eq!(t.timer_j(), Duration::ZERO);
        assert_eq!(t.t4_or_zero(), Duration::ZERO);
    }

    #[test]
    fn armed_pops_in_order() {
        let now = Instant::now();
        let mut a = Armed::default();
        a.set(Timer::B, now + Duration::from_secs(32));
        a.set(Timer::A, now + Duration::from_millis(500));
        assert_eq!(a.next(), Some(now + Duration::from_millis(500)));
        assert_eq!(a.pop_due(now), None);
        assert_eq!(a.pop_due(now + Duration::from_secs(40)), Some(Timer::A));
        assert_eq!(a.pop_due(now + Duration::from_secs(40)), Some(Timer::B));
        assert_eq!(a.pop_due(now + Duration::from_secs(40)), None);
    }
}
