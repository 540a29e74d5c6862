//! Admission control (`[limits]`): how many WebSocket sessions the node takes, in all and per
//! client address. Calls and streams are counted by their own indexes (`calls::CallTable`,
//! `streams::Directory`) under the locks that already admit them; the REST API's in-flight bound
//! is a layer in `rest_api.rs`. Every refusal is counted in
//! `callgate_admission_refused_total{what}` and logged at most once a second per kind.
//!
//! A slot is taken when the WebSocket upgrade is answered and given back when the connection's
//! task ends ([`SessionSlot`]'s `Drop`), so a connection that never logs in counts too: the limit
//! bounds sockets and tasks, not only logged-in sessions.
//!
//! Lock: one `Mutex<HashMap<IpAddr, usize>>` for the per-address counts, taken once per
//! connection start and end (never across an await). The total is an atomic beside it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::config::LimitsSection;

/// What a limit refused, for the client's `info`, the REST API's body and the metric's label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Sessions { limit: usize },
    SessionsPerIp { limit: usize },
    Calls { limit: usize },
    Streams { limit: usize },
    RestInFlight { limit: usize },
}

impl Refused {
    /// The metric label.
    pub fn what(&self) -> &'static str {
        match self {
            Refused::Sessions { .. } => "sessions",
            Refused::SessionsPerIp { .. } => "sessions_per_ip",
            Refused::Calls { .. } => "calls",
            Refused::Streams { .. } => "streams",
            Refused::RestInFlight { .. } => "rest_in_flight",
        }
    }

    /// The `info` a client gets (and the REST API's `503` body).
    pub fn info(&self) -> String {
        use callgate_proto::info;
        match *self {
            Refused::Sessions { limit } => info::too_many("sessions", limit, "limits.max_sessions"),
            Refused::SessionsPerIp { limit } => {
                info::too_many("sessions from this address", limit, "limits.max_sessions_per_ip")
            }
            Refused::Calls { limit } => info::too_many("calls", limit, "limits.max_calls"),
            Refused::Streams { limit } => info::too_many("streams", limit, "limits.max_streams"),
            Refused::RestInFlight { limit } => {
                info::too_many("REST API requests in progress", limit, "limits.max_rest_in_flight")
            }
        }
    }

    /// Counts the refusal and logs it, at most once a second per kind (a flood must not turn
    /// into a log flood; the counter has every one).
    pub fn record(&self) {
        metrics::counter!("callgate_admission_refused_total", "what" => self.what()).increment(1);
        static LAST: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
        let slot = match self {
            Refused::Sessions { .. } => 0,
            Refused::SessionsPerIp { .. } => 1,
            Refused::Calls { .. } => 2,
            Refused::Streams { .. } => 3,
            Refused::RestInFlight { .. } => 4,
        };
        let now = epoch_secs();
        let last = LAST[slot].load(Ordering::Relaxed);
        if now > last && LAST[slot].compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            tracing::warn!(limit = self.what(), info = %self.info(), "admission refused (logged at most once a second; callgate_admission_refused_total counts all)");
        }
    }
}

fn epoch_secs() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    // +1: the first second is not 0, which `LAST` starts at.
    START.get_or_init(Instant::now).elapsed().as_secs() + 1
}

/// The node's session counts.
pub struct Admission {
    max_sessions: usize,
    max_per_ip: usize,
    sessions: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// A session's place under the limits; given back when dropped.
pub struct SessionSlot {
    adm: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    pub fn new(limits: &LimitsSection) -> Admission {
        Admission {
            max_sessions: limits.max_sessions,
            max_per_ip: limits.max_sessions_per_ip,
            sessions: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a session slot for a connection from `ip`, or says which limit refuses it.
    pub fn session(self: &Arc<Self>, ip: IpAddr) -> Result<SessionSlot, Refused> {
        // IPv4-mapped IPv6 peers count as their IPv4 address.
        let ip = canonical(ip);
        let mut per_ip = self.per_ip.lock();
        if self.sessions.load(Ordering::Relaxed) >= self.max_sessions {
            return Err(Refused::Sessions { limit: self.max_sessions });
        }
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(Refused::SessionsPerIp { limit: self.max_per_ip });
        }
        *n += 1;
        let total = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        drop(per_ip);
        metrics::gauge!("callgate_admitted_sessions").set(total as f64);
        Ok(SessionSlot { adm: self.clone(), ip })
    }

    /// Sessions holding a slot.
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Addresses with at least one session (the per-address map never keeps an empty entry).
    pub fn addresses(&self) -> usize {
        self.per_ip.lock().len()
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut per_ip = self.adm.per_ip.lock();
        if let std::collections::hash_map::Entry::Occupied(mut e) = per_ip.entry(self.ip) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
        let total = self.adm.sessions.fetch_sub(1, Ordering::Relaxed) - 1;
        drop(per_ip);
        metrics::gauge!("callgate_admitted_sessions").set(total as f64);
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize) -> LimitsSection {
        let mut l = crate::config::Config::from_toml("").unwrap().limits;
        l.max_sessions = total;
        l.max_sessions_per_ip = per_ip;
        l
    }

    #[test]
    fn total_and_per_address_limits_and_slots_given_back() {
        let adm = Arc::new(Admission::new(&limits(3, 2)));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = adm.session(a).unwrap();
        let a2 = adm.session(a).unwrap();
        assert_eq!(adm.session(a).err(), Some(Refused::SessionsPerIp { limit: 2 }));
        // The same address as IPv4-mapped IPv6 is the same address.
        assert_eq!(adm.session("::ffff:192.0.2.1".parse().unwrap()).err(), Some(Refused::SessionsPerIp { limit: 2 }));
        let b1 = adm.session(b).unwrap();
        assert_eq!(adm.session(b).err(), Some(Refused::Sessions { limit: 3 }));
        assert_eq!((adm.sessions(), adm.addresses()), (3, 2));
        drop(a1);
        let b2 = adm.session(b).unwrap();
        drop((a2, b1, b2));
        assert_eq!((adm.sessions(), adm.addresses()), (0, 0), "no slot and no address left behind");
    }

    #[test]
    fn infos_name_the_limit_and_its_key() {
        let i = Refused::Calls { limit: 7 }.info();
        assert!(i.contains('7') && i.contains("limits.max_calls"), "{i}");
        assert!(Refused::SessionsPerIp { limit: 1 }.info().contains("this address"));
    }
}
