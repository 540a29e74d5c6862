//! One timer queue for the user agent's own deadlines (registration refreshes, 2xx
//! retransmissions, CANCEL guards, unanswered requests): each owner has at most one deadline
//! at a time; a heap with lazy deletion keeps `next()` and `pop_due()` logarithmic.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;
use std::time::Instant;

pub(crate) struct TimerQueue<K: Copy + Eq + Hash + Ord> {
    deadline: HashMap<K, Instant>,
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Copy + Eq + Hash + Ord> Default for TimerQueue<K> {
    fn default() -> Self {
        TimerQueue { deadline: HashMap::new(), heap: BinaryHeap::new() }
    }
}

impl<K: Copy + Eq + Hash + Ord> TimerQueue<K> {
    /// Sets (or with `None` clears) the owner's deadline.
    pub fn set(&mut self, key: K, at: Option<Instant>) {
        match at {
            None => {
                self.deadline.remove(&key);
            }
            Some(at) => {
                if self.deadline.insert(key, at) != Some(at) {
                    self.heap.push(Reverse((at, key)));
                }
            }
        }
    }

    /// The owner of the earliest deadline due at `now`, which is cleared.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        while let Some(Reverse((at, key))) = self.heap.peek().copied() {
            if self.deadline.get(&key) != Some(&at) {
                self.heap.pop();
                continue;
            }
            if at > now {
                return None;
            }
            self.heap.pop();
            self.deadline.remove(&key);
            return Some(key);
        }
        None
    }

    pub fn next(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, key))) = self.heap.peek().copied() {
            if self.deadline.get(&key) == Some(&at) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn latest_setting_wins() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut q = TimerQueue::default();
        q.set(1u32, Some(t0 + 5 * s));
        q.set(2u32, Some(t0 + 3 * s));
        q.set(1u32, Some(t0 + s));
        q.set(2u32, None);
        assert_eq!(q.next(), Some(t0 + s));
        assert_eq!(q.pop_due(t0), None);
        assert_eq!(q.pop_due(t0 + 10 * s), Some(1));
        assert_eq!(q.pop_due(t0 + 10 * s), None);
        assert_eq!(q.next(), None);
    }
}
