//! Session timers (RFC 4028): the `Session-Expires`, `Min-SE` and `timer` option tag of a
//! request or response, and a call's negotiated timer (who refreshes, when the next refresh is
//! due, or when the session is given up).

use std::time::{Duration, Instant};

use crate::message::Message;
use crate::name::HeaderName;

/// RFC 4028 §4: the smallest interval a UA may accept by default.
pub const DEFAULT_MIN_SE: u32 = 90;

/// Who refreshes, as the `refresher` parameter names it: the UAC or the UAS *of the
/// transaction* that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

/// A parsed `Session-Expires: delta[;refresher=uac|uas]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    pub delta: u32,
    pub refresher: Option<Refresher>,
}

/// The message's `Session-Expires` (compact `x`), if it has a valid one.
pub fn session_expires(msg: &Message) -> Option<SessionExpires> {
    let v = msg.header(HeaderName::SessionExpires)?;
    let text = std::str::from_utf8(v.value()).ok()?;
    let mut parts = text.split(';');
    let delta = parts.next()?.trim().parse().ok()?;
    let refresher = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("refresher") {
            return None;
        }
        match v.trim().to_ascii_lowercase().as_str() {
            "uac" => Some(Refresher::Uac),
            "uas" => Some(Refresher::Uas),
            _ => None,
        }
    });
    Some(SessionExpires { delta, refresher })
}

/// The message's `Min-SE`, if any.
pub fn min_se(msg: &Message) -> Option<u32> {
    let v = msg.header(HeaderName::MinSe)?;
    std::str::from_utf8(v.value()).ok()?.split(';').next()?.trim().parse().ok()
}

/// Whether the message lists the `timer` option tag in `Supported` or `Require`.
pub fn supports_timer(msg: &Message) -> bool {
    msg.header_values(HeaderName::Supported)
        .chain(msg.header_values(HeaderName::Require))
        .any(|v| v.trim_ascii().eq_ignore_ascii_case(b"timer"))
}

/// A call's session timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimer {
    /// The session interval, in seconds.
    pub interval: u32,
    /// We refresh (at half the interval); else the peer does, and we give the session up
    /// `min(32, interval/3)` before it expires (RFC 4028 §10).
    pub we_refresh: bool,
    /// The peer understands `timer` (our responses then carry `Require: timer`).
    pub peer_supports: bool,
    /// When we refresh next, or give up.
    pub due: Instant,
}

impl SessionTimer {
    pub fn new(now: Instant, interval: u32, we_refresh: bool, peer_supports: bool) -> SessionTimer {
        let mut t = SessionTimer { interval, we_refresh, peer_supports, due: now };
        t.restart(now);
        t
    }

    /// A refresh happened now (ours answered 2xx, or the peer's arrived).
    pub fn restart(&mut self, now: Instant) {
        let interval = Duration::from_secs(u64::from(self.interval.max(1)));
        self.due = if self.we_refresh {
            now + interval / 2
        } else {
            now + interval - Duration::from_secs(32).min(interval / 3)
        };
    }

    /// The `refresher` value for a message of the transaction in which we are the UAC
    /// (`we_are_uac`) or the UAS.
    pub fn refresher_param(&self, we_are_uac: bool) -> &'static str {
        if self.we_refresh == we_are_uac {
            "uac"
        } else {
            "uas"
        }
    }

    /// `Session-Expires` for a message of a transaction in which we are the UAC or the UAS.
    pub fn header(&self, we_are_uac: bool) -> String {
        format!("{};refresher={}", self.interval, self.refresher_param(we_are_uac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(headers: &str) -> Message {
        let raw = format!(
            "INVITE sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:b@h>;tag=1\r\nTo: <sip:a@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n{headers}Content-Length: 0\r\n\r\n"
        );
        crate::parse_datagram(bytes::Bytes::from(raw)).unwrap()
    }

    #[test]
    fn headers_are_read() {
        let m = msg("Session-Expires: 1800;refresher=UAS\r\nMin-SE: 90\r\nSupported: 100rel, timer\r\n");
        assert_eq!(session_expires(&m), Some(SessionExpires { delta: 1800, refresher: Some(Refresher::Uas) }));
        assert_eq!(min_se(&m), Some(90));
        assert!(supports_timer(&m));
        let m = msg("x: 4\r\nRequire: timer\r\n");
        assert_eq!(session_expires(&m), Some(SessionExpires { delta: 4, refresher: None }));
        assert!(supports_timer(&m));
        let m = msg("Session-Expires: soon\r\nSupported: replaces\r\n");
        assert_eq!(session_expires(&m), None);
        assert!(!supports_timer(&m));
    }

    #[test]
    fn refresh_at_half_give_up_before_expiry() {
        let t0 = Instant::now();
        assert_eq!(SessionTimer::new(t0, 1800, true, true).due, t0 + Duration::from_secs(900));
        assert_eq!(SessionTimer::new(t0, 1800, false, true).due, t0 + Duration::from_secs(1768));
        assert_eq!(SessionTimer::new(t0, 6, false, true).due, t0 + Duration::from_secs(4));
        let t = SessionTimer::new(t0, 90, true, true);
        assert_eq!(t.header(true), "90;refresher=uac");
        assert_eq!(t.header(false), "90;refresher=uas");
    }
}
