//! The tokio driver of the embedded [`Registrar`]: one UDP socket, a task that owns the
//! registrar and feeds it datagrams, commands and its expiry timer, sends every transmit and
//! publishes every event and the number of live contacts.
//!
//! Bad input never stops it: the registrar answers 400 when it can, and each drop is logged
//! (at `warn` once per source address, then at `debug`). A panic in the registrar (a bug) is
//! caught, logged at `error`, and the driver goes on.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{default_route_ip, os_seed, panic_message, EndpointGone};
use crate::registrar::{Registrar, RegistrarConfig, RegistrarError, RegistrarEvent};

type Job = Box<dyn FnOnce(&mut Registrar, std::time::Instant) + Send>;

enum Command {
    Run(Job),
    Shutdown,
}

/// Commands to the running registrar; cheap to clone.
#[derive(Clone)]
pub struct RegistrarHandle {
    tx: mpsc::UnboundedSender<Command>,
    local_addr: SocketAddr,
    advertised: SocketAddr,
}

impl RegistrarHandle {
    /// Runs `f` on the registrar inside the driver: `handle.with(|r, _| r.add_session_user("1001", "pw"))`.
    pub async fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Registrar, std::time::Instant) -> R + Send + 'static,
    ) -> Result<R, EndpointGone> {
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move |r, now| {
            let _ = reply.send(f(r, now));
        });
        self.tx.send(Command::Run(job)).map_err(|_| EndpointGone)?;
        rx.await.map_err(|_| EndpointGone)
    }

    /// Runs `f` on the registrar without waiting for it (in order with the other commands).
    pub fn run(&self, f: impl FnOnce(&mut Registrar, std::time::Instant) + Send + 'static) {
        let _ = self.tx.send(Command::Run(Box::new(f)));
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address in our Via and Record-Route (and where our own clients send: see
    /// [`RegistrarHandle::reach_addr`]).
    pub fn advertised(&self) -> SocketAddr {
        self.advertised
    }

    /// Where a client on this host sends: the bound address, with an unspecified IP
    /// (`0.0.0.0`, `::`) as the advertised one.
    pub fn reach_addr(&self) -> SocketAddr {
        if self.local_addr.ip().is_unspecified() {
            SocketAddr::new(self.advertised.ip(), self.local_addr.port())
        } else {
            self.local_addr
        }
    }

    /// Stops the driver; the socket closes and the bindings are gone.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown);
    }
}

/// A running registrar: its handle, its events, the live contact count.
pub struct RegistrarEndpoint {
    pub handle: RegistrarHandle,
    pub events: mpsc::UnboundedReceiver<RegistrarEvent>,
    /// The number of live contacts, after every input.
    pub contacts: watch::Receiver<usize>,
    pub task: JoinHandle<()>,
}

impl RegistrarEndpoint {
    /// Binds `bind` (UDP) and starts the driver as a task of the current runtime.
    /// `cfg.addr` is replaced by the advertised address: `advertised_ip` (else the bound IP, or
    /// the interface of the default route for an unspecified bind) with the bound port.
    /// `cfg.seed` 0 takes a seed from the OS.
    pub async fn start(
        bind: SocketAddr,
        advertised_ip: Option<IpAddr>,
        mut cfg: RegistrarConfig,
    ) -> io::Result<RegistrarEndpoint> {
        let udp = UdpSocket::bind(bind).await?;
        let local_addr = udp.local_addr()?;
        let ip = advertised_ip.unwrap_or(if local_addr.ip().is_unspecified() {
            default_route_ip()
        } else {
            local_addr.ip()
        });
        cfg.addr = SocketAddr::new(ip, local_addr.port());
        if cfg.seed == 0 {
            cfg.seed = os_seed();
        }
        let advertised = cfg.addr;
        let (tx, cmd_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let (count_tx, contacts) = watch::channel(0);
        let driver = Driver {
            reg: Registrar::new(cfg, Instant::now().into_std()),
            udp,
            cmd_rx,
            event_tx,
            count_tx,
            warned: HashSet::new(),
        };
        let task = tokio::spawn(driver.run());
        Ok(RegistrarEndpoint { handle: RegistrarHandle { tx, local_addr, advertised }, events, contacts, task })
    }
}

struct Driver {
    reg: Registrar,
    udp: UdpSocket,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    event_tx: mpsc::UnboundedSender<RegistrarEvent>,
    count_tx: watch::Sender<usize>,
    warned: HashSet<SocketAddr>,
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl Driver {
    async fn run(mut self) {
        let mut buf = vec![0u8; 65_535];
        loop {
            self.flush().await;
            let deadline = self.reg.poll_timeout().map(Instant::from_std);
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.udp.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        let datagram = Bytes::copy_from_slice(&buf[..n]);
                        if let Some(Err(e)) = self.guard("datagram", |r| r.handle_datagram(now(), from, datagram)) {
                            self.log_drop(from, &e);
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "registrar: UDP receive error"),
                },
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(Command::Run(job)) => {
                        self.guard("command", |r| job(r, now()));
                    }
                    Some(Command::Shutdown) | None => break,
                },
                () = sleep => {
                    self.guard("timeout", |r| r.handle_timeout(now()));
                }
            }
        }
    }

    async fn flush(&mut self) {
        // The count first: whoever learns of a binding from the 200 finds it counted.
        let n = self.reg.contacts();
        self.count_tx.send_if_modified(|c| std::mem::replace(c, n) != n);
        while let Some(e) = self.reg.poll_event() {
            let _ = self.event_tx.send(e);
        }
        while let Some(t) = self.reg.poll_transmit() {
            if let Err(e) = self.udp.send_to(&t.bytes, t.dst).await {
                tracing::debug!(error = %e, dst = %t.dst, "registrar: UDP send failed");
            }
        }
    }

    fn guard<R>(&mut self, input: &'static str, f: impl FnOnce(&mut Registrar) -> R) -> Option<R> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut self.reg))) {
            Ok(r) => Some(r),
            Err(payload) => {
                tracing::error!(input, panic = %panic_message(payload.as_ref()), "the SIP registrar panicked");
                None
            }
        }
    }

    fn log_drop(&mut self, from: SocketAddr, e: &RegistrarError) {
        let first = self.warned.len() < 4096 && self.warned.insert(from);
        match e {
            RegistrarError::Parse(_) if first => {
                tracing::warn!(%from, error = %e, "registrar: SIP message dropped (further ones from this source are logged at debug)")
            }
            _ => tracing::debug!(%from, error = %e, "registrar: not forwarded"),
        }
    }
}
