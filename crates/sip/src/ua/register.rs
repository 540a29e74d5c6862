//! Registrations (RFC 3261 §10.2): REGISTER with digest credentials, refresh before the
//! granted lifetime ends, `423 Interval Too Brief` handled once, un-REGISTER (`Expires: 0`).
//!
//! One registration keeps its Call-ID and increments its CSeq across refreshes (§10.2.4). The
//! last challenge answered is kept, so a refresh goes out with credentials at once (nonce
//! count + 1); a registrar that wants a new nonce challenges again and gets one more answer.

use std::time::{Duration, Instant};

use crate::message::Message;
use crate::method::Method;
use crate::txn::TxnKey;
use crate::typed::addr::Contact;
use crate::uri::Uri;

use super::auth::{Answered, Attempts, Creds};
use super::request::ReqSpec;
use super::{Account, ClientAuth, Failure, Owner, RegEvent, RegId, UaError, UaEvent, UaTimer, UserAgent};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// A REGISTER is out (first one or a refresh).
    Registering,
    Registered,
    Unregistering,
}

pub(super) struct Registration {
    pub account: Account,
    call_id: String,
    from_tag: String,
    cseq: u32,
    contact: String,
    /// Requested lifetime (raised by a 423's Min-Expires).
    expires: u32,
    phase: Phase,
    registered_once: bool,
    interval_retried: bool,
    /// `unregister` came while a REGISTER was out: send the un-REGISTER after it.
    unregister_wanted: bool,
    pub txn: Option<TxnKey>,
    pub cached: Option<Answered>,
}

impl Registration {
    pub fn next_cseq(&mut self) -> u32 {
        self.cseq = self.cseq.wrapping_add(1);
        self.cseq
    }
}

/// When to refresh a registration (or subscription) granted for `expires` seconds: at 90 %
/// of it, but early enough that a refresh that needs a whole transaction timeout (Timer F,
/// 32 s) still lands before the binding lapses; never before half the lifetime, and never
/// sooner than 1 s. 3600 s refreshes at 3240 s, 300 s at 268 s, 60 s at 30 s.
pub(super) fn refresh_delay(expires: u32) -> Duration {
    let e = u64::from(expires);
    Duration::from_secs((e * 9 / 10).min(e.saturating_sub(32)).max(e / 2).max(1))
}

/// Whether two Contact URIs name the same binding (user, host, port).
fn same_binding(a: &str, b: &str) -> bool {
    match (Uri::parse(a), Uri::parse(b)) {
        (Ok(Uri::Sip(x)), Ok(Uri::Sip(y))) => {
            x.user == y.user && x.host == y.host && x.port.unwrap_or(5060) == y.port.unwrap_or(5060)
        }
        _ => a == b,
    }
}

/// The lifetime granted in a 2xx (§10.2.4): our Contact's `expires`, else `Expires`, else
/// what we asked for.
fn granted(resp: &Message, contact: &str, requested: u32) -> u32 {
    let ours = contact.trim_start_matches('<').split('>').next().unwrap_or("");
    for c in resp.contacts().flatten() {
        if let Contact::Addr(a) = c {
            if same_binding(a.uri.as_str(), ours) {
                if let Ok(Some(e)) = a.expires() {
                    return e;
                }
            }
        }
    }
    match resp.expires() {
        Ok(Some(e)) => e,
        _ => requested,
    }
}

impl UserAgent {
    /// Registers `account` (`REGISTER sip:{domain}`, To/From `sip:{user}@{domain}`, our
    /// Contact, `Expires: {account.expires}`), answering digest challenges with its password.
    /// Events: [`RegEvent::Registered`] (and again at each refresh), or [`RegEvent::Failed`].
    pub fn register(&mut self, now: Instant, account: Account) -> Result<RegId, UaError> {
        let id = RegId(self.new_id());
        let contact = self.contact_for(&account);
        let reg = Registration {
            expires: account.expires,
            account,
            call_id: self.rng.call_id(),
            from_tag: self.rng.tag(),
            cseq: self.rng.cseq(),
            contact,
            phase: Phase::Registering,
            registered_once: false,
            interval_retried: false,
            unregister_wanted: false,
            txn: None,
            cached: None,
        };
        self.regs.insert(id, reg);
        if let Err(e) = self.send_register(now, id, false) {
            self.regs.remove(&id);
            return Err(e);
        }
        self.pump(now);
        Ok(id)
    }

    /// Removes the registration (`Expires: 0`). Event: [`RegEvent::Unregistered`] (or
    /// `Failed`). A REGISTER already out is let finish first.
    pub fn unregister(&mut self, now: Instant, id: RegId) -> Result<(), UaError> {
        let reg = self.regs.get_mut(&id).ok_or(UaError::UnknownRegistration(id))?;
        match reg.phase {
            Phase::Registering => reg.unregister_wanted = true,
            Phase::Unregistering => {}
            Phase::Registered => {
                self.timers.set(UaTimer::Reg(id), None);
                self.send_register(now, id, true)?;
            }
        }
        self.pump(now);
        Ok(())
    }

    /// The account of a registration.
    pub fn registration_account(&self, id: RegId) -> Option<&Account> {
        self.regs.get(&id).map(|r| &r.account)
    }

    fn send_register(&mut self, now: Instant, id: RegId, remove: bool) -> Result<(), UaError> {
        let cnonce = self.rng.hex(16);
        let Some(reg) = self.regs.get_mut(&id) else { return Ok(()) };
        let seq = reg.next_cseq();
        let a = &reg.account;
        let uri = format!("sip:{}", a.domain);
        let expires = if remove { 0 } else { reg.expires };
        let spec = ReqSpec {
            method: Method::Register,
            uri: uri.clone(),
            cseq: seq,
            routes: Vec::new(),
            from: format!("{};tag={}", a.name_addr(), reg.from_tag),
            to: a.name_addr(),
            call_id: reg.call_id.clone(),
            contact: Some(reg.contact.clone()),
            headers: vec![("Expires".into(), expires.to_string()), ("Allow".into(), super::ALLOW.into())],
            body: None,
            transport: a.transport,
        };
        let creds = Creds::of(a);
        let dst = a.next_hop;
        let auth = reg.cached.as_mut().map(|c| c.next(&creds, "REGISTER", &uri, &cnonce));
        reg.phase = if remove { Phase::Unregistering } else { Phase::Registering };
        let (key, _) = self.start_client(
            now,
            Owner::Reg(id),
            spec,
            dst,
            ClientAuth { creds: Some(creds), header: auth, attempts: Attempts::default() },
        )?;
        if let Some(reg) = self.regs.get_mut(&id) {
            reg.txn = Some(key);
        }
        Ok(())
    }

    pub(super) fn reg_on_response(&mut self, now: Instant, id: RegId, key: &TxnKey, resp: &Message) {
        let Some(reg) = self.regs.get_mut(&id) else { return };
        if reg.txn.as_ref() != Some(key) {
            return; // a response to a REGISTER we have since replaced
        }
        let status = resp.status().map_or(0, |s| s.as_u16());
        if status < 200 {
            return;
        }
        reg.txn = None;
        if (200..300).contains(&status) {
            if reg.phase == Phase::Unregistering {
                self.regs.remove(&id);
                self.timers.set(UaTimer::Reg(id), None);
                self.events.push_back(UaEvent::Registration { reg: id, event: RegEvent::Unregistered });
                return;
            }
            if reg.unregister_wanted {
                let _ = self.send_register(now, id, true);
                return;
            }
            let expires = granted(resp, &reg.contact, reg.expires);
            let refresh = reg.registered_once;
            reg.registered_once = true;
            reg.phase = Phase::Registered;
            self.events.push_back(UaEvent::Registration { reg: id, event: RegEvent::Registered { expires, refresh } });
            if expires > 0 {
                self.timers.set(UaTimer::Reg(id), Some(now + refresh_delay(expires)));
            }
            return;
        }
        if status == 423 && !reg.interval_retried && reg.phase != Phase::Unregistering {
            let min = resp
                .header(crate::HeaderName::MinExpires)
                .and_then(|h| std::str::from_utf8(h.value()).ok()?.trim().parse::<u32>().ok());
            if let Some(min) = min {
                reg.interval_retried = true;
                reg.expires = min.max(reg.expires);
                let _ = self.send_register(now, id, false);
                return;
            }
        }
        self.reg_fail(id, Failure::from_response(resp));
    }

    pub(super) fn reg_on_failure(&mut self, id: RegId, key: &TxnKey, failure: Failure) {
        if self.regs.get(&id).is_some_and(|r| r.txn.as_ref() == Some(key)) {
            self.reg_fail(id, failure);
        }
    }

    fn reg_fail(&mut self, id: RegId, failure: Failure) {
        self.regs.remove(&id);
        self.timers.set(UaTimer::Reg(id), None);
        self.events.push_back(UaEvent::Registration { reg: id, event: RegEvent::Failed(failure) });
    }

    pub(super) fn reg_on_timer(&mut self, now: Instant, id: RegId) {
        if self.regs.get(&id).is_some_and(|r| r.phase == Phase::Registered) {
            if let Err(e) = self.send_register(now, id, false) {
                let _ = e;
                self.reg_fail(id, Failure::Transport("could not build the refresh".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_before_expiry() {
        assert_eq!(refresh_delay(3600), Duration::from_secs(3240));
        assert_eq!(refresh_delay(300), Duration::from_secs(268));
        assert_eq!(refresh_delay(60), Duration::from_secs(30));
        assert_eq!(refresh_delay(10), Duration::from_secs(5));
        assert_eq!(refresh_delay(1), Duration::from_secs(1));
        assert_eq!(refresh_delay(0), Duration::from_secs(1));
    }

    #[test]
    fn bindings_compare_user_host_port() {
        assert!(same_binding("sip:3000@127.0.0.1:5070", "sip:3000@127.0.0.1:5070;transport=udp"));
        assert!(!same_binding("sip:3000@127.0.0.1:5070", "sip:3001@127.0.0.1:5070"));
        assert!(same_binding("sip:a@h", "sip:a@h:5060"));
    }
}
