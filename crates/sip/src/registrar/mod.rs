//! An embedded registrar and proxy (RFC 3261 §10.3, §16), sans-IO like the user agent: so
//! SIP clients (callgate's own user agent for its SDK sessions, and phones) can call each
//! other with no PBX.
//!
//! - **Registrar.** `REGISTER` for the configured domain (or for the registrar's own address)
//!   is authenticated with digest (401 with an MD5 and a SHA-256 challenge, stateless nonces,
//!   `stale=true` for an old one; a wrong response is 403, an unknown user 404), then applied
//!   to the location service: each Contact with its `expires` param, else `Expires`, else
//!   `default_expires`, at most `max_expires`; a lifetime below `min_expires` is 423 with
//!   `Min-Expires`; `Contact: *` with `Expires: 0` removes every binding of the AOR; a REGISTER
//!   older (same Call-ID, lower CSeq) than a binding's is 500. The 200 lists every binding with
//!   its remaining lifetime. Each binding keeps where requests for it go (its flow): the
//!   contact's own address when it names the IP the REGISTER came from, else the REGISTER's
//!   source address, which reaches phones behind NAT (as RFC 5626 does with a flow, without its
//!   `reg-id`); bindings expire on the virtual clock ([`Registrar::poll_timeout`]).
//! - **Proxy, stateless** (§16.11). A request for a user of the domain goes to the most recent
//!   live contact of that AOR (404 for a user nobody knows, 480 for a known one with no live
//!   contact), with the Request-URI set to the contact; a request for a registered contact (an
//!   in-dialog request) goes to that contact's flow; a request whose first Route names us goes
//!   on to the next Route or, inside a dialog, to its Request-URI; everything else is refused
//!   (403, not an open relay). We add our Via (its branch a hash of the incoming branch, so a
//!   CANCEL and a non-2xx ACK get the same branch as their INVITE and match it downstream),
//!   decrement Max-Forwards (483 at 0), and Record-Route dialog-creating requests, so BYE,
//!   re-INVITE, INFO, UPDATE, REFER, NOTIFY and MESSAGE inside the dialog come through us too
//!   and reach phones behind NAT. Responses lose our Via and go to the next Via's
//!   `received`/`rport`. Stateless because every client here retransmits by itself (UDP
//!   transactions end to end) and a single target per AOR needs no forking: no transaction
//!   state, nothing to time out, and a restart loses only bindings. What it cannot do: fork to
//!   several contacts, send `100 Trying`, or fail over to another contact on a 408/503.
//!
//! Only UDP. The caller sends every [`Transmit`] and polls [`Registrar::poll_event`]; the
//! tokio driver is `crate::transport::registrar`.

mod auth;
mod forward;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::error::ParseError;
use crate::message::Message;
use crate::method::Method;
use crate::name::HeaderName;
use crate::parse::parse_datagram;
use crate::typed::addr::Contact;
use crate::ua::request::{response_destination, response_to};
use crate::ua::{Transmit, Transport};
use crate::uri::{Host, SipUri, Uri};

use auth::{Nonces, Verdict};

/// Our branches start with this (after the magic cookie), so our Via is recognised in responses.
const BRANCH_PREFIX: &str = "z9hG4bKcgp";
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, INFO, UPDATE, REFER, NOTIFY, SUBSCRIBE, REGISTER";

/// The registrar's settings.
#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    /// The domain served (the digest realm too), e.g. `callgate.local`.
    pub domain: String,
    /// Our address as others reach it: in our Via and Record-Route, and a Request-URI or
    /// Route naming it is ours.
    pub addr: SocketAddr,
    /// Static credentials: user -> password.
    pub users: HashMap<String, String>,
    pub min_expires: u32,
    pub max_expires: u32,
    /// The lifetime of a contact that names none.
    pub default_expires: u32,
    /// How long a nonce is good for; an older one gets `stale=true`.
    pub nonce_lifetime: Duration,
    /// Bindings per AOR; a new one past it replaces the oldest.
    pub max_contacts_per_aor: usize,
    /// Seeds the nonce secret and tags (from the OS in the driver; fixed in tests).
    pub seed: u64,
    /// The `Server` header of our own responses.
    pub server: String,
}

impl RegistrarConfig {
    pub fn new(domain: &str, addr: SocketAddr) -> RegistrarConfig {
        RegistrarConfig {
            domain: domain.to_owned(),
            addr,
            users: HashMap::new(),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            nonce_lifetime: Duration::from_secs(300),
            max_contacts_per_aor: 10,
            seed: 0,
            server: "callgate".to_owned(),
        }
    }
}

/// What the registrar did, for the application's log and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrarEvent {
    /// A contact was bound or refreshed.
    Bound { user: String, contact: String, source: SocketAddr, expires: u32 },
    /// A contact was removed (`expired`: its lifetime ended; else by a REGISTER).
    Unbound { user: String, contact: String, expired: bool },
    /// A REGISTER was refused: wrong password (403), unknown user (404), foreign domain (403).
    Refused { user: String, source: SocketAddr, status: u16 },
}

/// Why an input was dropped or answered with an error; for the log only.
#[derive(Debug, Error)]
pub enum RegistrarError {
    #[error("malformed SIP message: {0}")]
    Parse(#[from] ParseError),
    #[error("a response that did not pass through us")]
    NotOurs,
    #[error("cannot forward: {0}")]
    CannotForward(&'static str),
}

struct Binding {
    uri: String,
    flow: SocketAddr,
    call_id: String,
    cseq: u32,
    expires_at: Instant,
    /// Order of the last REGISTER that touched it: the newest is the target.
    seq: u64,
}

/// The registrar and stateless proxy. See the module documentation.
pub struct Registrar {
    cfg: RegistrarConfig,
    nonces: Nonces,
    /// Credentials of callgate's own sessions (login -> password, how many sessions).
    session_users: HashMap<String, (String, usize)>,
    bindings: HashMap<String, Vec<Binding>>,
    seq: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<RegistrarEvent>,
}

/// The address a SIP URI names, when its host is an IP address.
fn uri_addr(u: &SipUri<'_>) -> Option<SocketAddr> {
    Some(SocketAddr::new(u.host.ip()?, u.port.unwrap_or(5060)))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Registrar {
    pub fn new(cfg: RegistrarConfig, now: Instant) -> Registrar {
        let nonces = Nonces::new(cfg.seed, now, cfg.nonce_lifetime);
        Registrar {
            cfg,
            nonces,
            session_users: HashMap::new(),
            bindings: HashMap::new(),
            seq: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &RegistrarConfig {
        &self.cfg
    }

    /// Lets a session of ours register as `user` with `password` while it lives (its
    /// credentials as the connect hook left them). A static user keeps its configured
    /// password; a user another live session holds with a different password is not changed.
    /// Each `true` must be matched by one [`Registrar::remove_session_user`].
    pub fn add_session_user(&mut self, user: &str, password: &str) -> bool {
        if self.cfg.users.contains_key(user) {
            return false;
        }
        match self.session_users.get_mut(user) {
            Some((p, n)) if p == password => {
                *n += 1;
                true
            }
            Some(_) => false,
            None => {
                self.session_users.insert(user.to_owned(), (password.to_owned(), 1));
                true
            }
        }
    }

    /// One session that held `user` is gone. When it was the last, the user is unknown again
    /// and its bindings go too (nobody can refresh or remove them any more).
    pub fn remove_session_user(&mut self, user: &str) {
        let Some((_, n)) = self.session_users.get_mut(user) else { return };
        *n -= 1;
        if *n > 0 {
            return;
        }
        self.session_users.remove(user);
        for b in self.bindings.remove(user).unwrap_or_default() {
            self.events.push_back(RegistrarEvent::Unbound { user: user.to_owned(), contact: b.uri, expired: false });
        }
    }

    fn password(&self, user: &str) -> Option<&str> {
        self.cfg.users.get(user).map(String::as_str).or_else(|| self.session_users.get(user).map(|(p, _)| p.as_str()))
    }

    /// Live bindings in all.
    pub fn contacts(&self) -> usize {
        self.bindings.values().map(Vec::len).sum()
    }

    /// The live contacts of `user`, newest first: (contact URI, where requests go, seconds left).
    pub fn lookup(&self, now: Instant, user: &str) -> Vec<(String, SocketAddr, u32)> {
        let mut v: Vec<&Binding> =
            self.bindings.get(user).map(|b| b.iter().filter(|b| b.expires_at > now).collect()).unwrap_or_default();
        v.sort_by_key(|b| std::cmp::Reverse(b.seq));
        v.into_iter().map(|b| (b.uri.clone(), b.flow, remaining(now, b.expires_at))).collect()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<RegistrarEvent> {
        self.events.pop_front()
    }

    /// When the next binding expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.bindings.values().flatten().map(|b| b.expires_at).min()
    }

    /// Removes the bindings whose lifetime ended.
    pub fn handle_timeout(&mut self, now: Instant) {
        let events = &mut self.events;
        self.bindings.retain(|user, list| {
            list.retain(|b| {
                let live = b.expires_at > now;
                if !live {
                    events.push_back(RegistrarEvent::Unbound {
                        user: user.clone(),
                        contact: b.uri.clone(),
                        expired: true,
                    });
                }
                live
            });
            !list.is_empty()
        });
    }

    /// One UDP datagram from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: Bytes) -> Result<(), RegistrarError> {
        let msg = match parse_datagram(data.clone()).and_then(|m| m.validate().map(|()| m)) {
            Ok(m) => m,
            Err(e) => {
                if let Some(resp) = crate::bad_request_for(&data, &e) {
                    self.send(from, resp);
                }
                return Err(e.into());
            }
        };
        if msg.is_response() {
            return self.on_response(&msg);
        }
        match msg.method() {
            Some(Method::Register) => self.on_register(now, &msg, from),
            _ => self.on_request(now, &msg, from),
        }
    }

    fn send(&mut self, dst: SocketAddr, bytes: Bytes) {
        self.transmits.push_back(Transmit { dst, transport: Transport::Udp, bytes });
    }

    fn tag(&mut self) -> String {
        self.seq += 1;
        let h = Sha256::digest(format!("{}-{}", self.cfg.seed, self.seq).as_bytes());
        h[..6].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Answers `req` (never an ACK) with `status`, plus what `edit` adds.
    fn reply(
        &mut self,
        req: &Message,
        from: SocketAddr,
        status: u16,
        reason: Option<&str>,
        edit: impl FnOnce(crate::MessageBuilder) -> crate::MessageBuilder,
    ) -> Result<(), RegistrarError> {
        if req.method() == Some(&Method::Ack) {
            return Ok(());
        }
        let tag = self.tag();
        let b = response_to(req, status, reason, Some(&tag), from)?.header(HeaderName::Server, &self.cfg.server);
        let bytes = edit(b).to_bytes()?;
        self.send(response_destination(req, from, Transport::Udp), bytes);
        Ok(())
    }

    /// A host (and port) that names us: the domain, or our address.
    fn is_us(&self, host: &Host<'_>, port: Option<u16>) -> bool {
        match host {
            Host::Domain(d) => d.trim_end_matches('.').eq_ignore_ascii_case(&self.cfg.domain),
            _ => {
                host.ip().map(canonical) == Some(canonical(self.cfg.addr.ip()))
                    && port.unwrap_or(5060) == self.cfg.addr.port()
            }
        }
    }

    // ----- registrar ---------------------------------------------------------------------------

    fn on_register(&mut self, now: Instant, req: &Message, from: SocketAddr) -> Result<(), RegistrarError> {
        let to = req.to()?;
        let (user, local) = match to.uri.as_sip() {
            Some(u) => (u.user.unwrap_or("").to_owned(), self.is_us(&u.host, u.port)),
            None => (String::new(), false),
        };
        let uri_local =
            req.request_uri().and_then(|u| u.as_sip().map(|s| self.is_us(&s.host, s.port))).unwrap_or(false);
        if !local || !uri_local {
            self.events.push_back(RegistrarEvent::Refused { user, source: from, status: 403 });
            return self.reply(req, from, 403, Some("Domain Not Served Here"), |b| b);
        }
        let Some(password) = self.password(&user).map(str::to_owned) else {
            self.events.push_back(RegistrarEvent::Refused { user, source: from, status: 404 });
            return self.reply(req, from, 404, None, |b| b);
        };
        let realm = self.cfg.domain.clone();
        let mut verdict = Verdict::Challenge;
        for creds in req.authorization().flatten() {
            if creds.realm().as_deref() != Some(realm.as_str()) {
                continue;
            }
            verdict = self.nonces.verify(now, &realm, &creds, "REGISTER", &password);
            if verdict == Verdict::Ok && creds.username().as_deref() != Some(user.as_str()) {
                verdict = Verdict::Wrong;
            }
            break;
        }
        match verdict {
            Verdict::Ok => {}
            Verdict::Wrong => {
                self.events.push_back(RegistrarEvent::Refused { user, source: from, status: 403 });
                return self.reply(req, from, 403, None, |b| b);
            }
            Verdict::Stale | Verdict::Challenge => {
                let [md5, sha] = self.nonces.challenges(now, &realm, verdict == Verdict::Stale);
                return self.reply(req, from, 401, None, |b| {
                    b.header(HeaderName::WwwAuthenticate, md5).header(HeaderName::WwwAuthenticate, sha)
                });
            }
        }
        self.bind(now, req, from, &user)
    }

    fn bind(&mut self, now: Instant, req: &Message, from: SocketAddr, user: &str) -> Result<(), RegistrarError> {
        let header_expires = req.expires().ok().flatten();
        let call_id = req.call_id()?.to_owned();
        let cseq = req.cseq()?.seq;
        let mut wildcard = false;
        let mut asked: Vec<(String, u32)> = Vec::new();
        for c in req.contacts() {
            match c? {
                Contact::Wildcard => wildcard = true,
                Contact::Addr(a) => {
                    let expires = a.expires().ok().flatten().or(header_expires).unwrap_or(self.cfg.default_expires);
                    asked.push((a.uri.as_str().to_owned(), expires.min(self.cfg.max_expires)));
                }
            }
        }
        if wildcard {
            // §10.3 step 6: "*" only alone and with Expires: 0.
            if !asked.is_empty() || header_expires != Some(0) {
                return self.reply(req, from, 400, Some("Wildcard Contact Needs Expires 0 Alone"), |b| b);
            }
            if let Some(list) = self.bindings.get(user) {
                if list.iter().any(|b| b.call_id == call_id && b.cseq > cseq) {
                    return self.reply(req, from, 500, Some("Out Of Order"), |b| b);
                }
            }
            for b in self.bindings.remove(user).unwrap_or_default() {
                self.events.push_back(RegistrarEvent::Unbound {
                    user: user.to_owned(),
                    contact: b.uri,
                    expired: false,
                });
            }
        } else {
            if asked.iter().any(|(_, e)| *e != 0 && *e < self.cfg.min_expires) {
                let min = self.cfg.min_expires.to_string();
                return self.reply(req, from, 423, None, |b| b.header(HeaderName::MinExpires, min));
            }
            let list = self.bindings.get(user).map(Vec::as_slice).unwrap_or(&[]);
            if asked.iter().any(|(uri, _)| list.iter().any(|b| &b.uri == uri && b.call_id == call_id && b.cseq > cseq))
            {
                return self.reply(req, from, 500, Some("Out Of Order"), |b| b);
            }
            for (uri, expires) in asked {
                let flow = flow_for(&uri, from);
                self.apply(now, user, uri, expires, flow, &call_id, cseq);
            }
        }
        let contacts: Vec<String> =
            self.lookup(now, user).into_iter().map(|(uri, _, left)| format!("<{uri}>;expires={left}")).collect();
        self.reply(req, from, 200, None, |mut b| {
            for c in contacts {
                b = b.header(HeaderName::Contact, c);
            }
            b
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        now: Instant,
        user: &str,
        uri: String,
        expires: u32,
        from: SocketAddr,
        call_id: &str,
        cseq: u32,
    ) {
        self.seq += 1;
        let seq = self.seq;
        let list = self.bindings.entry(user.to_owned()).or_default();
        let existing = list.iter().position(|b| b.uri == uri);
        if expires == 0 {
            if let Some(i) = existing {
                list.remove(i);
                self.events.push_back(RegistrarEvent::Unbound { user: user.to_owned(), contact: uri, expired: false });
            }
            if list.is_empty() {
                self.bindings.remove(user);
            }
            return;
        }
        let expires_at = now + Duration::from_secs(expires.into());
        let binding = Binding { uri: uri.clone(), flow: from, call_id: call_id.to_owned(), cseq, expires_at, seq };
        match existing {
            Some(i) => list[i] = binding,
            None => {
                if list.len() >= self.cfg.max_contacts_per_aor {
                    if let Some(oldest) = list.iter().enumerate().min_by_key(|(_, b)| b.seq).map(|(i, _)| i) {
                        let gone = list.remove(oldest);
                        self.events.push_back(RegistrarEvent::Unbound {
                            user: user.to_owned(),
                            contact: gone.uri,
                            expired: false,
                        });
                    }
                }
                list.push(binding);
            }
        }
        self.events.push_back(RegistrarEvent::Bound { user: user.to_owned(), contact: uri, source: from, expires });
    }

    // ----- proxy -------------------------------------------------------------------------------

    /// The binding whose contact URI is `u` (same host and port), for in-dialog requests.
    fn binding_for_contact(&self, now: Instant, u: &SipUri<'_>) -> Option<SocketAddr> {
        let want = (u.host.to_string().to_ascii_lowercase(), u.port.unwrap_or(5060));
        self.bindings.values().flatten().filter(|b| b.expires_at > now).find_map(|b| {
            let parsed = Uri::parse(&b.uri).ok()?;
            let s = parsed.as_sip()?;
            ((s.host.to_string().to_ascii_lowercase(), s.port.unwrap_or(5060)) == want && s.user == u.user)
                .then_some(b.flow)
        })
    }

    fn branch(&self, req: &Message, from: SocketAddr) -> Result<String, RegistrarError> {
        // §16.11: the same for a request's retransmissions, its CANCEL and its non-2xx ACK.
        let via = req.via()?;
        let mut h = Sha256::new();
        h.update(self.cfg.seed.to_be_bytes());
        h.update(from.to_string().as_bytes());
        match via.branch.filter(|_| via.has_rfc3261_branch()) {
            Some(b) => h.update(b.as_bytes()),
            // RFC 2543 peers: what identifies their transaction.
            None => {
                h.update(req.call_id()?.as_bytes());
                h.update(req.cseq()?.seq.to_be_bytes());
                h.update(req.from()?.tag().unwrap_or("").as_bytes());
            }
        }
        let hex: String = h.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(format!("{BRANCH_PREFIX}{hex}"))
    }

    fn on_request(&mut self, now: Instant, req: &Message, from: SocketAddr) -> Result<(), RegistrarError> {
        let method = req.method().cloned().unwrap_or(Method::Options);
        let max_forwards = match req.max_forwards()? {
            Some(0) => return self.reply(req, from, 483, None, |b| b),
            Some(n) => n - 1,
            None => 70,
        };
        let in_dialog = req.to()?.tag().is_some();
        let routes: Vec<_> = req.routes().collect::<Result<_, _>>()?;
        let ours = routes.first().and_then(|r| r.uri.as_sip()).is_some_and(|u| self.is_us(&u.host, u.port));
        let next_route = if ours { routes.get(1) } else { routes.first() };
        let ruri = req.request_uri().ok_or(RegistrarError::CannotForward("no Request-URI"))?;
        let mut new_uri = ruri.as_str().to_owned();
        let dst = if let Some(r) = next_route {
            match r.uri.as_sip().and_then(uri_addr) {
                Some(a) => a,
                None => return self.refuse(req, from, 404, "No Route To Host", "a Route that is not an IP address"),
            }
        } else {
            let Some(u) = ruri.as_sip() else {
                return self.refuse(req, from, 416, "Unsupported URI Scheme", "not a sip: URI");
            };
            if self.is_us(&u.host, u.port) {
                let Some(user) = u.user else {
                    if method == Method::Options {
                        return self.reply(req, from, 200, None, |b| b.header(HeaderName::Allow, ALLOW));
                    }
                    return self.refuse(req, from, 404, "Not Found", "no user in the Request-URI");
                };
                match self.lookup(now, user).into_iter().next() {
                    Some((contact, flow, _)) => {
                        new_uri = contact;
                        flow
                    }
                    None if self.password(user).is_some() || self.bindings.contains_key(user) => {
                        return self.refuse(req, from, 480, "Temporarily Unavailable", "no live contact");
                    }
                    None => return self.refuse(req, from, 404, "Not Found", "unknown user"),
                }
            } else if let Some(flow) = self.binding_for_contact(now, u) {
                flow
            } else if ours && in_dialog {
                match uri_addr(u) {
                    Some(a) => a,
                    None => {
                        return self.refuse(req, from, 404, "No Route To Host", "a target that is not an IP address")
                    }
                }
            } else {
                return self.refuse(req, from, 403, "Relaying Denied", "not our domain nor a registered contact");
            }
        };
        if canonical(dst.ip()) == canonical(self.cfg.addr.ip()) && dst.port() == self.cfg.addr.port() {
            return self.refuse(req, from, 482, "Loop Detected", "the target is ourselves");
        }
        let via = format!("SIP/2.0/UDP {};branch={}", self.cfg.addr, self.branch(req, from)?);
        let dialog_creating = !in_dialog && matches!(method, Method::Invite | Method::Subscribe | Method::Refer);
        let rr = dialog_creating.then(|| format!("<sip:{};lr>", self.cfg.addr));
        let bytes = forward::request(
            req,
            method.as_str(),
            &forward::RequestEdit {
                uri: &new_uri,
                via: &via,
                record_route: rr.as_deref(),
                drop_first_route: ours,
                max_forwards,
                source: from,
            },
        );
        self.send(dst, bytes);
        Ok(())
    }

    /// Answers `req` with a refusal (nothing for an ACK) and reports why.
    fn refuse(
        &mut self,
        req: &Message,
        from: SocketAddr,
        status: u16,
        reason: &str,
        why: &'static str,
    ) -> Result<(), RegistrarError> {
        self.reply(req, from, status, Some(reason), |b| b)?;
        Err(RegistrarError::CannotForward(why))
    }

    fn on_response(&mut self, resp: &Message) -> Result<(), RegistrarError> {
        let top = resp.via()?;
        let ours = top.branch.is_some_and(|b| b.starts_with(BRANCH_PREFIX)) && self.is_us(&top.host, top.port);
        if !ours {
            return Err(RegistrarError::NotOurs);
        }
        let next = resp.vias().nth(1).ok_or(RegistrarError::CannotForward("no Via after ours"))??;
        let ip = next.received.or(next.host.ip()).ok_or(RegistrarError::CannotForward("a Via host name"))?;
        let port = match next.rport {
            Some(crate::typed::via::Rport::Port(p)) => p,
            _ => next.port.unwrap_or(5060),
        };
        let bytes = forward::response(resp);
        self.send(SocketAddr::new(ip, port), bytes);
        Ok(())
    }
}

/// Where requests for a contact go: the contact's own address when it names the IP the
/// REGISTER came from (the phone says where it listens, and is reachable there), else the
/// REGISTER's source (a contact behind NAT, a host name, or callgate's own user agent
/// advertising another interface than the one it reached us from).
fn flow_for(uri: &str, source: SocketAddr) -> SocketAddr {
    match Uri::parse(uri).ok().as_ref().and_then(Uri::as_sip).and_then(uri_addr) {
        Some(a) if canonical(a.ip()) == canonical(source.ip()) => a,
        _ => source,
    }
}

fn remaining(now: Instant, at: Instant) -> u32 {
    let d = at.saturating_duration_since(now);
    // Rounded up: a binding with 0.4 s left is still there.
    u32::try_from(d.as_secs() + u64::from(d.subsec_nanos() > 0)).unwrap_or(u32::MAX)
}
