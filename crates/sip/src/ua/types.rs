//! The user agent's vocabulary: ids, accounts, configuration, transmits, failures, errors.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

use crate::error::ParseError;
use crate::txn::TimerConfig;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id!(
    /// A registration made by [`crate::ua::UserAgent::register`].
    RegId,
    "reg-"
);
id!(
    /// A call, outgoing ([`crate::ua::UserAgent::invite`]) or incoming. Not the SIP Call-ID.
    CallId,
    "call-"
);
id!(
    /// An outgoing MESSAGE.
    MsgId,
    "msg-"
);
id!(
    /// An outgoing subscription.
    SubId,
    "sub-"
);
id!(
    /// An incoming request waiting for the application's answer
    /// ([`crate::ua::UserAgent::respond`]): a MESSAGE or a REFER.
    ReqId,
    "req-"
);

/// The transport a message goes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// As written in a Via (`UDP`, `TCP`).
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    pub fn is_reliable(self) -> bool {
        self == Transport::Tcp
    }
}

/// Bytes to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dst: SocketAddr,
    pub transport: Transport,
    pub bytes: Bytes,
}

/// A SIP account: who we are, how to authenticate, where to send. Its `Debug` does not show
/// the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// The user part of the address of record (`sip:{user}@{domain}`).
    pub user: String,
    /// The digest user name; the AOR user when `None`.
    pub auth_user: Option<String>,
    pub password: String,
    /// The AOR host, with a port if needed (`pbx.example.com`, `127.0.0.1:5060`); REGISTER
    /// goes to `sip:{domain}`.
    pub domain: String,
    pub display_name: Option<String>,
    /// Where requests of this account go first (the registrar or outbound proxy), resolved
    /// by the caller.
    pub next_hop: SocketAddr,
    pub transport: Transport,
    /// Requested registration lifetime, seconds.
    pub expires: u32,
    /// Extra URI parameters for the Contact (`;ob`), written as is after the URI's host:port.
    pub contact_params: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("user", &self.user)
            .field("auth_user", &self.auth_user)
            .field("password", &if self.password.is_empty() { "" } else { "<redacted>" })
            .field("domain", &self.domain)
            .field("display_name", &self.display_name)
            .field("next_hop", &self.next_hop)
            .field("transport", &self.transport)
            .field("expires", &self.expires)
            .field("contact_params", &self.contact_params)
            .finish()
    }
}

impl Account {
    /// An account with UDP, 3600 s registrations and no display name.
    pub fn new(user: &str, password: &str, domain: &str, next_hop: SocketAddr) -> Account {
        Account {
            user: user.to_owned(),
            auth_user: None,
            password: password.to_owned(),
            domain: domain.to_owned(),
            display_name: None,
            next_hop,
            transport: Transport::Udp,
            expires: 3600,
            contact_params: String::new(),
        }
    }

    pub fn auth_user(&self) -> &str {
        self.auth_user.as_deref().unwrap_or(&self.user)
    }

    /// `sip:{user}@{domain}`.
    pub fn aor(&self) -> String {
        format!("sip:{}@{}", self.user, self.domain)
    }

    /// The From/To value of the account, without tag.
    pub(crate) fn name_addr(&self) -> String {
        match &self.display_name {
            Some(d) => format!("{} <{}>", quote(d), self.aor()),
            None => format!("<{}>", self.aor()),
        }
    }
}

/// A display name as a quoted string.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// How the user agent is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UaConfig {
    /// The address written in Via and Contact for UDP: the socket's address, or the public
    /// one when the socket is behind a NAT that the operator maps.
    pub udp_addr: SocketAddr,
    /// The same for TCP; `None` when there is no TCP listener (TCP accounts then advertise
    /// the UDP address).
    pub tcp_addr: Option<SocketAddr>,
    /// `User-Agent` / `Server` header value.
    pub user_agent: String,
    /// T1, T2, T4 (the `reliable` flag is set per transport).
    pub timers: TimerConfig,
    /// Seed of the generator of tags, branches, Call-IDs and cnonces. The driver seeds it
    /// from the OS; tests pick one to replay a run.
    pub seed: u64,
    /// An incoming MESSAGE or REFER the application does not answer in this time gets
    /// `480 Temporarily Unavailable` (the client would give up at 64·T1 = 32 s anyway).
    pub answer_timeout: Duration,
    /// The smallest session interval (RFC 4028 `Min-SE`, seconds) we accept: a peer asking
    /// for less gets `422` with this `Min-SE`. 90 by default (RFC 4028 §4); tests lower it.
    pub min_se: u32,
    /// Realms an account also answers challenges for (from its next hop only), besides its
    /// domain and the realm its REGISTER was challenged with: a PBX whose realm is not the
    /// domain (Asterisk's `asterisk`) challenges calls of accounts that never register.
    /// Compared exactly (digest realms are case-sensitive strings).
    pub digest_realms: Vec<String>,
    /// The largest message taken, bytes (head and body). A longer UDP request is answered
    /// `513 Message Too Large` (RFC 3261 §21.5.14) and dropped; the transport frames TCP with
    /// the same limit. 65 535 (a UDP datagram's most) by default.
    pub max_message_bytes: usize,
    /// An outgoing call with no final response this long after its INVITE is cancelled and
    /// fails with [`Failure::NoAnswer`]. Without it, a peer that sent a provisional response and
    /// then nothing would keep the call ringing for ever: Timer B stops at the first
    /// provisional response (RFC 3261 §17.1.1.2), and a UA has no Timer C (§16.6, proxies
    /// only). 180 s by default (Timer C's floor).
    pub no_answer_timeout: Duration,
}

impl UaConfig {
    pub fn new(udp_addr: SocketAddr) -> UaConfig {
        UaConfig {
            udp_addr,
            tcp_addr: None,
            user_agent: "callgate".to_owned(),
            timers: TimerConfig::udp(),
            seed: 0x5eed,
            answer_timeout: Duration::from_secs(16),
            min_se: super::session_timer::DEFAULT_MIN_SE,
            digest_realms: Vec::new(),
            max_message_bytes: 65_535,
            no_answer_timeout: Duration::from_secs(180),
        }
    }
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A final 3xx-6xx response (the status, its reason phrase as received, and the whole
    /// response as received, for `sipMessageRaw`).
    Status { status: u16, reason: String, raw: Bytes },
    /// Timer B or F fired, or the peer never ACKed our 2xx.
    Timeout,
    /// The transport could not send.
    Transport(String),
    /// No final response to our INVITE within [`UaConfig::no_answer_timeout`] (given here):
    /// the INVITE was cancelled.
    NoAnswer(Duration),
}

impl Failure {
    pub(crate) fn from_response(msg: &crate::Message) -> Failure {
        Failure::Status {
            status: msg.status().map_or(0, |s| s.as_u16()),
            reason: String::from_utf8_lossy(msg.reason_phrase().unwrap_or(b"")).into_owned(),
            raw: msg.to_bytes(),
        }
    }

    /// The SIP status, for a failure a response caused.
    pub fn status(&self) -> Option<u16> {
        match self {
            Failure::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Errors of the user agent's commands and inputs. Bad input from the network is one of
/// these, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UaError {
    #[error("no such registration: {0}")]
    UnknownRegistration(RegId),
    #[error("no such call: {0}")]
    UnknownCall(CallId),
    #[error("no such subscription: {0}")]
    UnknownSubscription(SubId),
    #[error("no such pending request: {0}")]
    UnknownRequest(ReqId),
    #[error("{what} is not possible now: {why}")]
    InvalidState { what: &'static str, why: &'static str },
    #[error("invalid argument {what}: {why}")]
    InvalidArgument { what: &'static str, why: String },
    #[error("could not build the {what}: {error}")]
    Build { what: &'static str, error: ParseError },
    #[error("malformed message from {from}: {error}")]
    Malformed { from: SocketAddr, error: ParseError },
    #[error("message from {from} dropped: {why}")]
    Dropped { from: SocketAddr, why: &'static str },
    /// A request whose body we could not read (a `message/cpim` with a bad inner
    /// `Content-Length`): answered `400`.
    #[error("request from {from} refused with 400: {why}")]
    BadBody { from: SocketAddr, why: String },
    /// A 401/407 we did not answer: from another address than the account's next hop, or for
    /// a realm the account does not know (`crate::ua` module docs, "Digest"). The request
    /// fails with that response.
    #[error("digest challenge from {from} (realm {realm:?}) not answered: {why}")]
    ChallengeRefused { from: SocketAddr, realm: String, why: &'static str },
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    #[test]
    fn account_debug_hides_the_password() {
        let a = Account::new("3000", "pw-4242", "pbx.example", "127.0.0.1:5060".parse().unwrap());
        let text = format!("{a:?} {a:#?}");
        assert!(!text.contains("pw-4242") && text.contains("<redacted>") && text.contains("3000"), "{text}");
    }
}
