//! The SIP user agent: one sans-IO [`UserAgent`] per endpoint, shared by every account,
//! registration, call, message and subscription of the server.
//!
//! It never touches a socket, a clock or a resolver. It is driven by
//! - inputs: [`UserAgent::handle_datagram`] (UDP), [`UserAgent::handle_stream_message`]
//!   (TCP, after a [`crate::StreamFramer`]), [`UserAgent::handle_timeout`],
//!   [`UserAgent::handle_transport_error`], and the commands ([`UserAgent::register`],
//!   [`UserAgent::invite`], [`UserAgent::answer`], ...), each taking `now`;
//! - outputs: [`UserAgent::poll_transmit`] (bytes and where to send them),
//!   [`UserAgent::poll_event`] (what happened, for the application) and
//!   [`UserAgent::poll_timeout`] (when to call `handle_timeout` next).
//!
//! The rule of use, as in str0m and quinn: **after any input, poll transmits and events until
//! `None`, then arm a timer for `poll_timeout()`.** The caller resolves host names; commands
//! take the next hop as a [`std::net::SocketAddr`] (in [`Account::next_hop`]). Requests inside
//! a dialog go to the first Route or the remote target when that is an IP address, else to
//! the address the dialog was set up with.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bytes::Bytes;
//! use callgate_sip::ua::{Account, CallEvent, UaConfig, UaEvent, UserAgent};
//!
//! let now = Instant::now();
//! let mut ua = UserAgent::new(UaConfig::new("192.0.2.10:5070".parse().unwrap()));
//! let pbx = "192.0.2.20:5060".parse().unwrap();
//! let account = Account::new("3000", "secret", "pbx.example.com", pbx);
//! let call = ua.invite(now, &account, "sip:3001@pbx.example.com", Bytes::from_static(b"v=0\r\n"), &[]).unwrap();
//! let t = ua.poll_transmit().unwrap();
//! assert_eq!(t.dst, pbx);
//! assert!(t.bytes.starts_with(b"INVITE sip:3001@pbx.example.com SIP/2.0\r\n"));
//! // No answer: Timer A retransmits, Timer B gives up after 64*T1.
//! let mut last = now;
//! while let Some(at) = ua.poll_timeout() {
//!     ua.handle_timeout(at);
//!     last = at;
//!     while ua.poll_transmit().is_some() {}
//! }
//! assert_eq!(last - now, Duration::from_secs(32));
//! assert!(matches!(ua.poll_event(), Some(UaEvent::Call { call: c, event: CallEvent::Failed(_) }) if c == call));
//! ```

mod auth;
mod call;
mod event;
mod incoming;
mod message;
mod register;
pub(crate) mod request;
mod rng;
pub mod sdp;
pub mod session_timer;
mod subscribe;
mod timers;
mod types;

#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::error::ParseError;
use crate::framer::Framed;
use crate::message::Message;
use crate::method::Method;
use crate::name::HeaderName;
use crate::parse::parse_datagram;
use crate::txn::{ClientTxn, TimerConfig, Transactions, TxnKey, TxnOutput};
use crate::uri::{Host, Uri};

pub use event::{CallEvent, IncomingCall, IncomingMessage, RegEvent, SubEvent, UaEvent};
pub use incoming::{parse_dtmf, parse_sipfrag};
pub use message::{imdn_xml, parse_cpim, parse_imdn, CpimError, CpimInfo, ImdnNotification, ImdnStatus};
pub use sdp::Direction;
pub use types::{Account, CallId, Failure, MsgId, RegId, ReqId, SubId, Transmit, Transport, UaConfig, UaError};

use auth::{Answered, Attempts, Creds};
use call::{Call, CallOp};
use register::Registration;
use request::ReqSpec;
use rng::Rng;
use subscribe::Subscription;
use timers::TimerQueue;

/// The methods we answer (`Allow`).
pub(crate) const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY, MESSAGE, SUBSCRIBE, UPDATE";

/// The extensions we support (`Supported`): session timers (RFC 4028).
pub(crate) const SUPPORTED: &str = "timer";

/// Who waits for the responses of a client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Reg(RegId),
    Call(CallId, CallOp),
    Msg(MsgId),
    Sub(SubId),
    /// Nobody: the BYE of a losing fork, a BYE after an unACKed 2xx.
    Detached,
}

/// A client transaction's context.
struct ClientCtx {
    owner: Owner,
    /// How to build the request again (with credentials); `None` for CANCEL, which cannot be
    /// challenged (§22.1).
    spec: Option<ReqSpec>,
    request: Message,
    dst: SocketAddr,
    transport: Transport,
    creds: Option<Creds>,
    attempts: Attempts,
    /// Where its last response came from (a challenge is answered only from the next hop).
    last_from: Option<SocketAddr>,
}

/// The credentials of a client request: who we are, the header answering a challenge (or
/// a cached one), and how many challenges were answered so far.
#[derive(Default)]
pub(crate) struct ClientAuth {
    creds: Option<Creds>,
    header: Option<(HeaderName, String)>,
    attempts: Attempts,
}

impl ClientAuth {
    fn new(creds: Option<Creds>) -> ClientAuth {
        ClientAuth { creds, ..ClientAuth::default() }
    }
}

/// A server transaction's context.
struct ServerCtx {
    request: Message,
    source: SocketAddr,
    dst: SocketAddr,
    transport: Transport,
    /// The call an INVITE or re-INVITE belongs to.
    call: Option<CallId>,
}

/// Who a dialog (Call-ID, local tag) belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DialogOwner {
    Call(CallId),
    Sub(SubId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum UaTimer {
    Reg(RegId),
    Call(CallId),
    Sub(SubId),
    Req(ReqId),
}

/// An incoming request waiting for the application's answer.
struct PendingReq {
    key: TxnKey,
    to_tag: String,
}

/// The user agent. See the [module documentation](self).
pub struct UserAgent {
    cfg: UaConfig,
    rng: Rng,
    next_id: u64,
    txns: Transactions,
    clients: HashMap<TxnKey, ClientCtx>,
    servers: HashMap<TxnKey, ServerCtx>,
    regs: HashMap<RegId, Registration>,
    calls: HashMap<CallId, Call>,
    subs: HashMap<SubId, Subscription>,
    pending: HashMap<ReqId, PendingReq>,
    /// (SIP Call-ID, local tag) of every dialog we are in or setting up.
    dialogs: HashMap<(String, String), DialogOwner>,
    timers: TimerQueue<UaTimer>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<UaEvent>,
    /// What went wrong with the current input deep in its handling (a body answered 400, a
    /// challenge not answered), returned by `handle_datagram` / `handle_stream_message` for
    /// the driver to log.
    noted: Option<UaError>,
}

impl UserAgent {
    pub fn new(cfg: UaConfig) -> UserAgent {
        UserAgent {
            rng: Rng::new(cfg.seed),
            cfg,
            next_id: 1,
            txns: Transactions::new(),
            clients: HashMap::new(),
            servers: HashMap::new(),
            regs: HashMap::new(),
            calls: HashMap::new(),
            subs: HashMap::new(),
            pending: HashMap::new(),
            dialogs: HashMap::new(),
            timers: TimerQueue::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            noted: None,
        }
    }

    pub fn config(&self) -> &UaConfig {
        &self.cfg
    }

    /// Live transactions, calls, registrations and subscriptions: `(txns, calls, regs, subs)`.
    /// All zero once everything has ended.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        (self.txns.len(), self.calls.len(), self.regs.len(), self.subs.len())
    }

    // ----- outputs -------------------------------------------------------------------------

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<UaEvent> {
        self.events.pop_front()
    }

    /// When [`UserAgent::handle_timeout`] must be called next.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        match (self.txns.poll_timeout(), self.timers.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- inputs --------------------------------------------------------------------------

    /// A UDP datagram from `from`. A malformed request is answered `400` when it can be; the
    /// returned error is for the driver to log (nothing else is needed: the UA carries on).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: Bytes) -> Result<(), UaError> {
        let limit = self.config().max_message_bytes;
        let parsed = if datagram.len() > limit {
            Err(ParseError::TooLarge { size: datagram.len(), limit })
        } else {
            parse_datagram(datagram.clone())
        };
        let msg = match parsed {
            Ok(m) => m,
            // Keep-alives (a bare CRLF, RFC 5626 §4.4.1) are not errors.
            Err(ParseError::Empty) => return Ok(()),
            Err(error) => {
                if let Some(resp) = crate::bad_request_for(&datagram, &error) {
                    self.transmits.push_back(Transmit { dst: from, transport: Transport::Udp, bytes: resp });
                }
                return Err(UaError::Malformed { from, error });
            }
        };
        let r = self.handle_message(now, from, Transport::Udp, msg);
        self.pump(now);
        r.and(self.noted.take().map_or(Ok(()), Err))
    }

    /// Keeps the first problem of the current input for its caller (`noted`).
    fn note(&mut self, e: UaError) {
        self.noted.get_or_insert(e);
    }

    /// A message framed off a TCP connection with `from`. Responses to requests from it go
    /// back as transmits with `dst: from, transport: Tcp` (the driver sends them on that
    /// connection).
    pub fn handle_stream_message(&mut self, now: Instant, from: SocketAddr, framed: Framed) -> Result<(), UaError> {
        let r = match framed {
            Framed::Message(msg) => self.handle_message(now, from, Transport::Tcp, msg),
            Framed::Invalid { raw, error } => {
                if let Some(resp) = crate::bad_request_for(&raw, &error) {
                    self.transmits.push_back(Transmit { dst: from, transport: Transport::Tcp, bytes: resp });
                }
                Err(UaError::Malformed { from, error })
            }
        };
        self.pump(now);
        r.and(self.noted.take().map_or(Ok(()), Err))
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.txns.handle_timeout(now);
        self.pump(now);
        while let Some(t) = self.timers.pop_due(now) {
            match t {
                UaTimer::Reg(id) => self.reg_on_timer(now, id),
                UaTimer::Call(id) => self.call_on_timer(now, id),
                UaTimer::Sub(id) => self.sub_on_timer(now, id),
                UaTimer::Req(id) => {
                    let _ = self.respond(now, id, 480, None);
                }
            }
            self.pump(now);
        }
        // Nothing a timer does is an input error; never report it with the next input.
        self.noted = None;
    }

    /// Sending to `dst` failed (connection refused or reset, host unreachable): every
    /// transaction sending there ends with a transport error.
    pub fn handle_transport_error(&mut self, now: Instant, dst: SocketAddr, transport: Transport) {
        let keys: Vec<TxnKey> = self
            .clients
            .iter()
            .filter(|(_, c)| c.dst == dst && c.transport == transport)
            .map(|(k, _)| k.clone())
            .chain(
                self.servers.iter().filter(|(_, s)| s.dst == dst && s.transport == transport).map(|(k, _)| k.clone()),
            )
            .collect();
        for k in keys {
            self.txns.handle_transport_error(&k);
        }
        self.pump(now);
    }

    fn handle_message(
        &mut self,
        now: Instant,
        from: SocketAddr,
        transport: Transport,
        msg: Message,
    ) -> Result<(), UaError> {
        if msg.is_response() {
            self.on_incoming_response(now, from, msg)
        } else {
            self.on_incoming_request(now, from, transport, msg)
        }
    }

    fn on_incoming_response(&mut self, now: Instant, from: SocketAddr, msg: Message) -> Result<(), UaError> {
        // What matching and every owner need; the rest is read on demand and tolerated.
        let checked = (|| {
            let via = msg.via()?;
            let cseq = msg.cseq()?;
            msg.call_id()?;
            msg.from()?;
            msg.to()?;
            Ok::<_, ParseError>((via.branch.map(str::to_owned), cseq))
        })();
        let (branch, cseq) = checked.map_err(|error| UaError::Malformed { from, error })?;
        let status = msg.status().map_or(0, |s| s.as_u16());
        let Some(branch) = branch else { return Err(UaError::Dropped { from, why: "response without a branch" }) };
        let key = TxnKey::client(Bytes::from(branch), cseq.method.as_str().as_bytes());
        if let Some(c) = self.clients.get_mut(&key) {
            c.last_from = Some(from);
        }
        if self.txns.handle_response(now, &key, status, msg.to_bytes()) {
            return Ok(());
        }
        if cseq.method == Method::Invite && (200..300).contains(&status) {
            // A 2xx retransmission after the transaction ended, or from another fork: the
            // dialog layer ACKs it (§13.2.2.4).
            self.on_stray_2xx(now, &msg);
            return Ok(());
        }
        Err(UaError::Dropped { from, why: "response matches no transaction" })
    }

    // ----- transactions --------------------------------------------------------------------

    fn timer_config(&self, transport: Transport) -> TimerConfig {
        TimerConfig { reliable: transport.is_reliable(), ..self.cfg.timers }
    }

    /// `host:port` of our Via and Contact for this transport.
    fn sent_by(&self, transport: Transport) -> String {
        match transport {
            Transport::Udp => self.cfg.udp_addr.to_string(),
            Transport::Tcp => self.cfg.tcp_addr.unwrap_or(self.cfg.udp_addr).to_string(),
        }
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Builds `spec` with a fresh branch and starts its client transaction.
    fn start_client(
        &mut self,
        now: Instant,
        owner: Owner,
        spec: ReqSpec,
        dst: SocketAddr,
        auth: ClientAuth,
    ) -> Result<(TxnKey, Message), UaError> {
        let ClientAuth { creds, header: auth, attempts } = auth;
        let branch = self.rng.branch();
        let what = "request";
        let msg = spec
            .build(&self.sent_by(spec.transport), &branch, auth.as_ref(), &self.cfg.user_agent)
            .map_err(|error| UaError::Build { what, error })?;
        let key = TxnKey::client(Bytes::from(branch), spec.method.as_str().as_bytes());
        let cfg = self.timer_config(spec.transport);
        let txn = if spec.method == Method::Invite {
            let invite = msg.clone();
            ClientTxn::invite(now, msg.to_bytes(), Box::new(move |resp| request::ack_for_failure(&invite, resp)), cfg)
        } else {
            ClientTxn::non_invite(now, msg.to_bytes(), cfg)
        };
        let transport = spec.transport;
        self.clients.insert(
            key.clone(),
            ClientCtx {
                owner,
                spec: Some(spec),
                request: msg.clone(),
                dst,
                transport,
                creds,
                attempts,
                last_from: None,
            },
        );
        self.txns.start_client(key.clone(), txn);
        Ok((key, msg))
    }

    /// Processes what the transactions produced until they are quiet.
    fn pump(&mut self, now: Instant) {
        while let Some((key, out)) = self.txns.poll_output() {
            match out {
                TxnOutput::Transmit(bytes) => {
                    let target = self
                        .clients
                        .get(&key)
                        .map(|c| (c.dst, c.transport))
                        .or_else(|| self.servers.get(&key).map(|s| (s.dst, s.transport)));
                    if let Some((dst, transport)) = target {
                        self.transmits.push_back(Transmit { dst, transport, bytes });
                    }
                }
                TxnOutput::Response { status, raw } => self.on_client_response(now, &key, status, raw),
                TxnOutput::Ack(raw) => {
                    if let Ok(ack) = parse_datagram(raw) {
                        self.on_dialog_ack(now, &ack);
                    }
                }
                TxnOutput::Timeout(_) => {
                    if self.clients.contains_key(&key) {
                        self.on_client_failure(now, &key, Failure::Timeout);
                    }
                }
                TxnOutput::TransportError => {
                    if self.clients.contains_key(&key) {
                        self.on_client_failure(now, &key, Failure::Transport("could not send".into()));
                    }
                }
                TxnOutput::Terminated => {
                    self.clients.remove(&key);
                    self.servers.remove(&key);
                }
            }
        }
    }

    fn on_client_response(&mut self, now: Instant, key: &TxnKey, status: u16, raw: Bytes) {
        let Ok(msg) = parse_datagram(raw) else { return };
        let Some(owner) = self.clients.get(key).map(|c| c.owner) else { return };
        if (status == 401 || status == 407) && self.retry_with_credentials(now, key, &msg) {
            return;
        }
        match owner {
            Owner::Reg(id) => self.reg_on_response(now, id, key, &msg),
            Owner::Call(id, op) => self.call_on_response(now, id, op, key, &msg),
            Owner::Msg(id) => self.msg_on_response(id, &msg),
            Owner::Sub(id) => self.sub_on_response(now, id, key, &msg),
            Owner::Detached => {}
        }
    }

    fn on_client_failure(&mut self, now: Instant, key: &TxnKey, failure: Failure) {
        let Some(owner) = self.clients.get(key).map(|c| c.owner) else { return };
        match owner {
            Owner::Reg(id) => self.reg_on_failure(id, key, failure),
            Owner::Call(id, op) => self.call_on_failure(now, id, op, failure),
            Owner::Msg(id) => self.events.push_back(UaEvent::MessageResult { msg: id, result: Err(failure) }),
            Owner::Sub(id) => self.sub_on_failure(id, failure),
            Owner::Detached => {}
        }
    }

    /// A 401/407: answers the challenge with a new request (new branch, CSeq + 1) when the
    /// rules allow (§22.2: once per challenge; again only for `stale=true`). Returns false
    /// when the response is the owner's to handle as a failure.
    fn retry_with_credentials(&mut self, now: Instant, key: &TxnKey, resp: &Message) -> bool {
        let Some(ctx) = self.clients.get(key) else { return false };
        let (Some(spec), Some(creds)) = (ctx.spec.clone(), ctx.creds.clone()) else { return false };
        let Some((header, challenge)) = auth::pick_challenge(resp) else { return false };
        let known_realm = creds.is_domain(&challenge.realm)
            || self.cfg.digest_realms.contains(&challenge.realm)
            || self.learned_realm(&creds, &challenge.realm);
        let learning = spec.method == Method::Register;
        if let Some(why) = auth::refuse_challenge(&creds, ctx.last_from, known_realm, learning) {
            // The owner gets the 401/407 as its failure; the driver logs this once per source.
            let from = ctx.last_from.unwrap_or(ctx.dst);
            self.note(UaError::ChallengeRefused { from, realm: challenge.realm, why });
            return false;
        }
        let mut attempts = ctx.attempts;
        if !attempts.allow(&challenge) {
            return false;
        }
        let (owner, dst) = (ctx.owner, ctx.dst);
        // A request that was answered keeps its other credentials (a 407 after a 401).
        let kept: Vec<(String, String)> = ctx
            .request
            .headers()
            .filter(|h| {
                matches!(h.name(), HeaderName::Authorization | HeaderName::ProxyAuthorization) && h.name() != header
            })
            .map(|h| (h.name().as_str().to_owned(), String::from_utf8_lossy(&h.value_unfolded()).into_owned()))
            .collect();
        let mut spec = spec;
        spec.cseq = match self.next_cseq(owner) {
            Some(n) => n,
            None => spec.cseq.wrapping_add(1),
        };
        let cnonce = self.rng.hex(16);
        let mut answered = Answered { challenge, header, nc: 0 };
        let value = answered.next(&creds, spec.method.as_str(), &spec.uri, &cnonce);
        spec.headers.retain(|(n, _)| {
            !n.eq_ignore_ascii_case("Authorization") && !n.eq_ignore_ascii_case("Proxy-Authorization")
        });
        spec.headers.extend(kept);
        match self.start_client(now, owner, spec, dst, ClientAuth { creds: Some(creds), header: Some(value), attempts })
        {
            Ok((new_key, msg)) => {
                self.on_request_restarted(owner, new_key, msg, answered);
                true
            }
            Err(_) => false,
        }
    }

    /// Whether a registration of the same domain through the same next hop answered a
    /// challenge for `realm` (the realm is learned at REGISTER).
    fn learned_realm(&self, creds: &Creds, realm: &str) -> bool {
        self.regs.values().any(|r| {
            r.account.next_hop == creds.next_hop
                && r.account.domain.eq_ignore_ascii_case(&creds.domain)
                && r.cached.as_ref().is_some_and(|c| c.challenge.realm == realm)
        })
    }

    /// The CSeq for the retry of an owner's request, when the owner keeps the count.
    fn next_cseq(&mut self, owner: Owner) -> Option<u32> {
        match owner {
            Owner::Reg(id) => self.regs.get_mut(&id).map(|r| r.next_cseq()),
            Owner::Call(id, op) => self.calls.get_mut(&id).and_then(|c| c.next_cseq(op)),
            Owner::Sub(id) => self.subs.get_mut(&id).map(|s| s.next_cseq()),
            Owner::Msg(_) | Owner::Detached => None,
        }
    }

    fn on_request_restarted(&mut self, owner: Owner, key: TxnKey, msg: Message, answered: Answered) {
        match owner {
            Owner::Reg(id) => {
                if let Some(r) = self.regs.get_mut(&id) {
                    r.txn = Some(key);
                    r.cached = Some(answered);
                }
            }
            Owner::Call(id, op) => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.on_request_restarted(op, key, msg);
                }
            }
            Owner::Sub(id) => {
                if let Some(s) = self.subs.get_mut(&id) {
                    s.txn = Some(key);
                    s.request = Some(msg);
                }
            }
            Owner::Msg(_) | Owner::Detached => {}
        }
    }

    /// Sends bytes outside any transaction (ACK of a 2xx, 2xx retransmissions).
    fn send_raw(&mut self, dst: SocketAddr, transport: Transport, bytes: Bytes) {
        self.transmits.push_back(Transmit { dst, transport, bytes });
    }

    /// Answers a server transaction: `edit` adds headers and body to the response.
    fn reply_with(
        &mut self,
        now: Instant,
        key: &TxnKey,
        status: u16,
        reason: Option<&str>,
        to_tag: Option<&str>,
        edit: impl FnOnce(crate::MessageBuilder) -> crate::MessageBuilder,
    ) -> Result<Bytes, UaError> {
        let ctx = self.servers.get(key).ok_or(UaError::InvalidState { what: "response", why: "transaction ended" })?;
        let b = request::response_to(&ctx.request, status, reason, to_tag, ctx.source)
            .map_err(|error| UaError::Build { what: "response", error })?;
        let bytes = edit(b).to_bytes().map_err(|error| UaError::Build { what: "response", error })?;
        self.txns.handle_tu_response(now, key, status, bytes.clone());
        Ok(bytes)
    }

    fn reply(&mut self, now: Instant, key: &TxnKey, status: u16, to_tag: Option<&str>) {
        let _ = self.reply_with(now, key, status, None, to_tag, |b| b);
    }

    /// The address of a URI whose host is an IP address (port 5060 when absent), else
    /// `fallback`: the UA resolves no names.
    fn uri_addr(uri: &str, fallback: SocketAddr) -> SocketAddr {
        match Uri::parse(uri) {
            Ok(Uri::Sip(u)) => {
                let host = u.maddr().and_then(|m| m.parse().ok()).or_else(|| match u.host {
                    Host::Ipv4(a) => Some(a.into()),
                    Host::Ipv6(a) => Some(a.into()),
                    Host::Domain(_) => None,
                });
                match host {
                    Some(ip) => SocketAddr::new(ip, u.port.unwrap_or(if u.secure { 5061 } else { 5060 })),
                    None => fallback,
                }
            }
            _ => fallback,
        }
    }

    /// Our Contact for an account: `<sip:user@our-address[;transport=tcp]params>`.
    fn contact_for(&self, account: &Account) -> String {
        let tp = if account.transport == Transport::Tcp { ";transport=tcp" } else { "" };
        format!("<sip:{}@{}{tp}{}>", account.user, self.sent_by(account.transport), account.contact_params)
    }

    /// The registration whose user is the Request-URI user (a Contact per registered user).
    fn reg_for_request(&self, msg: &Message) -> Option<RegId> {
        let uri = msg.request_uri()?;
        let user = uri.as_sip()?.user?;
        self.regs.iter().filter(|(_, r)| r.account.user == user).map(|(id, _)| *id).min()
    }
}
