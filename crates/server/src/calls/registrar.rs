//! The embedded registrar (`[registrar]`, docs/registrar.md) as the calls see it: which
//! sessions it serves (their `sipDomain` is its domain and they name no proxy of their own),
//! where their SIP goes (the registrar's own address, whatever `[sip] allowed_destinations`
//! says: it is part of this node), and the sessions' own credentials lent to it while they last
//! (`session_users`).

use std::net::SocketAddr;
use std::sync::Arc;

use callgate_sip::registrar::{RegistrarConfig, RegistrarEvent};
use callgate_sip::transport::registrar::{RegistrarEndpoint, RegistrarHandle};
use tokio::sync::watch;

use crate::config::RegistrarSection;
use crate::party::SipCredentials;

/// The running registrar, or why it is not running.
pub struct Embedded {
    domain: String,
    session_users: bool,
    running: Result<(RegistrarHandle, watch::Receiver<usize>), String>,
}

impl Embedded {
    /// Binds `[registrar] bind` and starts it, when enabled. A bind that fails is logged once
    /// and kept as the reason sessions of its domain are given.
    pub async fn start(cfg: &RegistrarSection) -> Option<Arc<Embedded>> {
        if !cfg.enabled {
            return None;
        }
        let mut rc = RegistrarConfig::new(&cfg.domain, cfg.bind);
        rc.users = cfg.users.iter().map(|(u, p)| (u.clone(), p.clone())).collect();
        rc.min_expires = cfg.min_expires;
        rc.max_expires = cfg.max_expires;
        rc.default_expires = cfg.max_expires;
        // `validate` checked it; a bad value here would be a bug, not input.
        let advertised = cfg.advertised_ip().ok().flatten();
        let running = match RegistrarEndpoint::start(cfg.bind, advertised, rc).await {
            Ok(ep) => {
                tracing::info!(
                    domain = cfg.domain,
                    bind = %ep.handle.local_addr(),
                    advertised = %ep.handle.advertised(),
                    users = cfg.users.len(),
                    "embedded SIP registrar started"
                );
                tokio::spawn(log_events(ep.events));
                Ok((ep.handle, ep.contacts))
            }
            Err(e) => {
                tracing::error!(bind = %cfg.bind, error = %e, "cannot start the embedded SIP registrar ([registrar] bind); going on without it");
                Err(format!("Embedded registrar unavailable: {}: {e}", cfg.bind))
            }
        };
        Some(Arc::new(Embedded { domain: cfg.domain.clone(), session_users: cfg.session_users, running }))
    }

    /// Whether `creds` register and call through this registrar: their domain is ours and
    /// they name no outbound proxy or proxy other than the domain itself.
    pub fn serves(&self, creds: &SipCredentials) -> bool {
        let ours = |h: &str| h.trim_end_matches('.').eq_ignore_ascii_case(&self.domain);
        ours(&creds.domain) && ours(creds.next_hop_name())
    }

    /// Where a session's SIP goes: the registrar, or why it cannot.
    pub fn addr(&self) -> Result<SocketAddr, String> {
        self.running.as_ref().map(|(h, _)| h.reach_addr()).map_err(Clone::clone)
    }

    /// The bound address (tests, logs).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.running.as_ref().ok().map(|(h, _)| h.local_addr())
    }

    /// Live contacts (the `callgate_registrar_contacts` gauge).
    pub fn contacts(&self) -> usize {
        self.running.as_ref().map_or(0, |(_, c)| *c.borrow())
    }

    /// Lends the session's credentials to the registrar (when `session_users`); true when it
    /// holds them now and [`Embedded::release`] must follow. Awaited, so the registrar knows
    /// the user before the REGISTER arrives.
    pub(super) async fn hold(&self, creds: &SipCredentials) -> bool {
        let Ok((h, _)) = &self.running else { return false };
        if !self.session_users || !self.serves(creds) {
            return false;
        }
        let (login, password) = (creds.login.clone(), creds.password.clone());
        h.with(move |r, _| r.add_session_user(&login, &password)).await.unwrap_or(false)
    }

    /// A session that held `login` is gone.
    pub(super) fn release(&self, login: &str) {
        if let Ok((h, _)) = &self.running {
            let login = login.to_owned();
            h.run(move |r, _| r.remove_session_user(&login));
        }
    }

    /// Server shutdown: the socket closes.
    pub fn shutdown(&self) {
        if let Ok((h, _)) = &self.running {
            h.shutdown();
        }
    }
}

/// The registrar's events, logged: bindings at `info`/`debug`, refusals at `info` (each is one
/// REGISTER: a wrong password or an unknown user, with the source).
async fn log_events(mut events: tokio::sync::mpsc::UnboundedReceiver<RegistrarEvent>) {
    while let Some(e) = events.recv().await {
        match e {
            RegistrarEvent::Bound { user, contact, source, expires } => {
                tracing::debug!(user, contact, %source, expires, "registrar: contact bound")
            }
            RegistrarEvent::Unbound { user, contact, expired } => {
                tracing::debug!(user, contact, expired, "registrar: contact removed")
            }
            RegistrarEvent::Refused { user, source, status } => {
                metrics::counter!("callgate_registrar_refused_total", "status" => status.to_string()).increment(1);
                tracing::info!(user, %source, status, "registrar: REGISTER refused")
            }
        }
    }
}
