//! One WebSocket connection = one session, owned by one task.
//!
//! ```text
//!  socket reader ──> session task (owns state, pings) ──spawns──> direct-invocation tasks
//!                         │  ▲ SessionCmd (REST API)                  │
//!                         ▼  │                                        ▼
//!                      Outbox ──> writer task ──> socket          EventQueue (ordered hooks)
//! ```
//!
//! The session task never waits on a backend except for `connect`, which must finish before
//! anything else can happen. Direct invocations (`sendData`, ...) run in their own tasks so a slow
//! backend answer never delays pongs or other frames; events go through the session's
//! [`EventQueue`], which delivers them to the backend in order. Under `restPolicy=OVERWRITE` an
//! event reaches the client after the backend's answer (with the overwritten fields); otherwise at
//! once.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use callgate_hooks::{EventJob, EventQueue, HookMethod, Origin, RestClientConfig};
use callgate_proto::{info, messages, status, ClientFrame, FrameError, ServerFrame};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, Notify};

use crate::node::{KeptSession, Shared};
use crate::party::{Client, Party};
use crate::wire::{close_frame, ConnAddrs, Out, Outbox, SessionCmd};

/// `info` of the `fail` sent to a client that did not send `connection` within
/// `server.login_timeout_ms`; also the reason of its close frame.
pub use callgate_proto::info::LOGIN_TIMEOUT;

/// `info` of the `fail` every client gets when the server shuts down; also the reason of its
/// close frame (1001, going away).
pub use callgate_proto::info::SERVER_SHUTDOWN;

/// How long a connection closed for an oversize message stays open after its close frame: the
/// client is still sending the rest of that message, and a socket closed with unread data
/// answers with a TCP reset that can destroy the close frame before the client has read it.
const OVERSIZE_CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Runs one connection to its end.
///
/// Whatever way it ends (the client leaves, closes, stops reading, sends too much, never logs
/// in, or is terminated), its session ends ([`end_session`]) or, for a `keepAlive` session
/// whose socket went, is kept for resuming ([`keep`]); nothing waits on the client without a
/// bound: a client that does not read makes the writer give up after
/// `server.client_write_timeout_ms`, and a full outbox is not waited on for room. `hold` (the
/// session's admission slot, its place in the shutdown's count) is dropped when the session
/// ends, so a kept session keeps it.
pub async fn run<H: Send + 'static>(shared: Arc<Shared>, socket: WebSocket, addrs: ConnAddrs, hold: H) {
    let id: Arc<str> = format!("/{}/{}-{}", addrs.remote, addrs.local, uuid::Uuid::new_v4()).into();
    let (sink, mut stream) = socket.split();
    let (out_tx, out_rx) = mpsc::channel::<Out>(shared.cfg.server.client_send_queue);
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<SessionCmd>(16);
    let out = Outbox::new(out_tx, cmd_tx.clone());
    let abort = Arc::new(Notify::new());
    let write_timeout = Duration::from_millis(shared.cfg.server.client_write_timeout_ms);
    let mut writer = tokio::spawn(write_loop(sink, out_rx, abort.clone(), write_timeout, id.clone()));
    let mut writer_done = false;

    metrics::gauge!("callgate_ws_connections").increment(1.0);
    let mut session =
        Connection { shared: shared.clone(), id: id.clone(), out: out.clone(), cmd_tx, ctx: None, closing: false };
    let ping_every = Duration::from_millis(shared.cfg.server.ping_interval_ms);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut missed = 0u32;
    // Until `connection` arrives the connection is nobody's session: it may not stay forever.
    let login_deadline = tokio::time::sleep(Duration::from_millis(shared.cfg.server.login_timeout_ms));
    // Also a session that connects while the server shuts down sees it (shutdown.rs).
    let mut stopping = shared.lifecycle.stopping();
    tokio::pin!(login_deadline);
    // The close frame when the server decides to close; a normal close (1000) otherwise.
    let mut close: Option<CloseFrame> = None;
    // Whether a `keepAlive` session may outlive this end: yes when the socket went or the
    // client stopped answering (the network), no when the server or the backend ended it.
    let mut keepable = true;
    loop {
        tokio::select! {
            msg = stream.next() => {
                let msg = match msg {
                    Some(Ok(msg)) => msg,
                    Some(Err(e)) => {
                        close = read_error_close(&shared, &id, e);
                        keepable = close.is_none();
                        break;
                    }
                    None => break,
                };
                missed = 0;
                match msg {
                    // `connection` waits for the connect hook here; a shutdown does not wait
                    // for that hook (the stop branch below closes the session next).
                    Message::Text(t) => tokio::select! {
                        () = session.handle_text(t.as_str()) => {}
                        _ = async { drop(stopping.wait_for(|s| *s).await) } => {}
                    },
                    Message::Binary(_) => session.frame_error(FrameError::Binary),
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            cmd = cmd_rx.recv() => match cmd {
                Some(SessionCmd::Terminate { info: why }) => {
                    tracing::info!(session = &*id, reason = %why, "closing session");
                    session.out.send(&ServerFrame::fail("ConnectionStatusEvent", &why, None));
                    close = Some(close_frame(1000, &why));
                    session.closing = true;
                    keepable = false;
                }
                Some(SessionCmd::ClientTooSlow) => {
                    let why = info::CLIENT_TOO_SLOW;
                    tracing::info!(session = &*id, reason = why, "closing session");
                    session.out.send(&ServerFrame::fail("ConnectionStatusEvent", why, None));
                    close = Some(close_frame(1000, why));
                    session.closing = true;
                }
                Some(SessionCmd::HandOver) => {
                    tracing::info!(session = &*id, "another connection resumes this session; closing this one");
                    close = Some(close_frame(1000, info::SESSION_RESUMED_ELSEWHERE));
                    session.closing = true;
                }
                None => break,
            },
            _ = ping.tick() => {
                if missed >= shared.cfg.server.max_missed_pings {
                    tracing::info!(session = &*id, missed, "client stopped answering pings; closing");
                    session.out.send(&ServerFrame::fail("ConnectionStatusEvent", info::PING_TIMEOUT, None));
                    close = Some(close_frame(1000, info::PING_TIMEOUT));
                    session.closing = true;
                } else {
                    missed += 1;
                    session.out.send(&ServerFrame::new(messages::PING, vec![]));
                }
            }
            _ = async { drop(stopping.wait_for(|s| *s).await) } => {
                tracing::debug!(session = &*id, "closing session: server shutdown");
                session.out.send(&ServerFrame::fail("ConnectionStatusEvent", SERVER_SHUTDOWN, None));
                close = Some(close_frame(1001, SERVER_SHUTDOWN));
                session.closing = true;
                keepable = false;
            }
            _ = &mut login_deadline, if session.ctx.is_none() => {
                tracing::info!(session = &*id, timeout_ms = shared.cfg.server.login_timeout_ms, "no connection message in time; closing");
                metrics::counter!("callgate_ws_login_timeouts_total").increment(1);
                session.out.send(&ServerFrame::fail("ConnectionStatusEvent", LOGIN_TIMEOUT, None));
                // 1008: policy violation.
                close = Some(close_frame(1008, LOGIN_TIMEOUT));
                session.closing = true;
            }
            _ = &mut writer => {
                // Only a write that failed or timed out ends the writer before the close below:
                // the client is gone or not reading, and nothing more can reach it.
                writer_done = true;
                break;
            }
        }
        if session.closing {
            break;
        }
    }
    let linger = close.as_ref().is_some_and(|f| f.code == 1009);
    // Flush what is queued for the client, then close the socket; a client whose outbox is full
    // is not worth waiting for (it is the reason for most closes of that kind).
    if !writer_done {
        let frame = close.unwrap_or_else(|| close_frame(1000, ""));
        if !out.close(frame) {
            abort.notify_one();
        }
    }
    drop(out);
    // Kept before the socket's last frames are flushed: a client that reconnects at once finds
    // its session.
    let kept = match session.ctx.take() {
        Some(ctx) if keepable && wants_keep_alive(&shared, &ctx) => Some(Keeping::start(&shared, ctx)),
        Some(ctx) => {
            end_session(&shared, &ctx);
            None
        }
        None => None,
    };
    drop(session);
    if !writer_done && tokio::time::timeout(CLOSE_FLUSH_BOUND, &mut writer).await.is_err() {
        abort.notify_one();
        writer.abort();
    }
    if linger {
        tokio::time::sleep(OVERSIZE_CLOSE_LINGER).await;
    }
    drop(stream);
    metrics::gauge!("callgate_ws_connections").decrement(1.0);
    match kept {
        Some(k) => keep(shared, k, cmd_rx, hold).await,
        None => drop(hold),
    }
}

/// A session being kept: its entry is in [`Shared::kept`] under its token.
struct Keeping {
    ctx: Arc<Party>,
    token: String,
    /// Which keeper it is (see [`KeptSession::keeper`]).
    keeper: u64,
    resumed: tokio::sync::oneshot::Receiver<()>,
}

impl Keeping {
    fn start(shared: &Shared, ctx: Arc<Party>) -> Keeping {
        static KEEPERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let token = ctx.data_ref().get("authToken").and_then(Value::as_str).unwrap_or_default().to_owned();
        let keeper = KEEPERS.fetch_add(1, Ordering::Relaxed);
        let (resumed_tx, resumed) = tokio::sync::oneshot::channel();
        shared.kept.insert(token.clone(), KeptSession { party: ctx.clone(), keeper, resumed: resumed_tx });
        metrics::gauge!("callgate_sessions_kept").increment(1.0);
        Keeping { ctx, token, keeper, resumed }
    }
}

/// Whether the session asked to outlive its socket (`keepAlive: true` in its connection
/// object) and may: `server.keep_alive_grace_ms` > 0, an `authToken` to resume it by, and the
/// node not stopping.
fn wants_keep_alive(shared: &Shared, ctx: &Party) -> bool {
    let data = ctx.data_ref();
    shared.cfg.server.keep_alive_grace_ms > 0
        && data.get("keepAlive") == Some(&Value::Bool(true))
        && data.get("authToken").and_then(Value::as_str).is_some_and(|t| !t.is_empty())
        && !shared.lifecycle.is_stopping()
}

/// A `keepAlive` session whose socket went: it stays in the registry with its SIP registration,
/// calls and streams (frames to it are dropped) until a connection resumes it by its
/// `authToken` (`Connection::resume`), a command ends it (REST `/connection/terminate`), its
/// grace (`server.keep_alive_grace_ms`) is over, or the node stops. The keeper takes the
/// session task's commands meanwhile and holds its `hold`.
async fn keep<H>(shared: Arc<Shared>, k: Keeping, mut cmd_rx: mpsc::Receiver<SessionCmd>, hold: H) {
    let Keeping { ctx, token, keeper, mut resumed } = k;
    let grace = Duration::from_millis(shared.cfg.server.keep_alive_grace_ms);
    tracing::info!(
        session = &*ctx.id,
        grace_ms = grace.as_millis() as u64,
        "socket gone; session kept alive for resuming"
    );
    let mut stopping = shared.lifecycle.stopping();
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    // A terminate that arrives while a connection resumes the session is passed on to it.
    let mut terminate: Option<String> = None;
    let why = loop {
        tokio::select! {
            // The connection that resumed it removed the entry and owns the session now.
            _ = &mut resumed => {
                metrics::gauge!("callgate_sessions_kept").decrement(1.0);
                return drop(hold);
            }
            cmd = cmd_rx.recv() => match cmd {
                Some(SessionCmd::Terminate { info }) => {
                    tracing::info!(session = &*ctx.id, reason = %info, "closing kept session");
                    terminate = Some(info);
                    break "terminated";
                }
                // From the old socket's outbox or its task: this session is kept already.
                Some(SessionCmd::ClientTooSlow | SessionCmd::HandOver) => {}
                None => break "terminated",
            },
            () = &mut deadline => break "not resumed in time",
            _ = async { drop(stopping.wait_for(|s| *s).await) } => break "server shutdown",
        }
    };
    metrics::gauge!("callgate_sessions_kept").decrement(1.0);
    // Whoever removes the entry owns the session: a connection that resumed it first has it
    // (and the entry there now, if any, is a later keeper's).
    if shared.kept.remove_if(&token, |_, k| k.keeper == keeper).is_some() {
        tracing::info!(session = &*ctx.id, why, "kept session ends");
        end_session(&shared, &ctx);
    } else if let Some(info) = terminate {
        // Resumed meanwhile: the new connection's task ends it.
        ctx.terminate(info);
    }
    drop(hold);
}

/// A connection refused by `[limits]` (`admission.rs`): `fail` (ConnectionStatusEvent) with
/// `why`, then close code 1013 (try again later), within [`CLOSE_FLUSH_BOUND`]. It never
/// becomes a session: no hook, no registry entry.
pub async fn refuse(mut socket: WebSocket, why: &str) {
    let fail = ServerFrame::fail("ConnectionStatusEvent", why, None).to_text();
    let _ = tokio::time::timeout(CLOSE_FLUSH_BOUND, async {
        socket.send(Message::Text(fail.into())).await?;
        socket.send(Message::Close(Some(close_frame(1013, why)))).await?;
        // Wait for the client's close (or its going away) so the frames are read before the
        // socket closes.
        while let Some(Ok(m)) = socket.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
        Ok::<(), axum::Error>(())
    })
    .await;
}

/// Bound on flushing a closing session's queued frames.
const CLOSE_FLUSH_BOUND: Duration = Duration::from_secs(5);

/// The close frame for a read error: 1009 with the limit for a message over
/// `server.max_client_frame_bytes` (logged once: the connection ends with it), none otherwise
/// (the socket is broken).
fn read_error_close(shared: &Shared, id: &str, e: axum::Error) -> Option<CloseFrame> {
    use tungstenite::error::{CapacityError, Error as WsError};
    let inner = e.into_inner();
    match inner.downcast_ref::<WsError>() {
        Some(WsError::Capacity(CapacityError::MessageTooLong { size, max_size })) => {
            let limit = shared.cfg.server.max_client_frame_bytes;
            tracing::info!(
                session = id,
                size,
                max_size,
                "client message over server.max_client_frame_bytes; closing with 1009"
            );
            metrics::counter!("callgate_client_frame_errors_total").increment(1);
            Some(close_frame(1009, &info::message_too_big(limit)))
        }
        _ => {
            tracing::debug!(session = id, error = %inner, "WebSocket read error");
            None
        }
    }
}

/// Writes the outbox to the socket until `Out::Close`, a failed write, a write that takes longer
/// than `write_timeout` (the client stopped reading), or `abort`.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Out>,
    abort: Arc<Notify>,
    write_timeout: Duration,
    id: Arc<str>,
) {
    loop {
        let next = tokio::select! {
            biased;
            _ = abort.notified() => return,
            o = rx.recv() => o,
        };
        let (msg, last) = match next {
            Some(Out::Text(t)) => (Message::Text(t.into()), false),
            Some(Out::Close(f)) => (Message::Close(Some(f)), true),
            None => break,
        };
        let sent = tokio::select! {
            biased;
            _ = abort.notified() => return,
            r = tokio::time::timeout(write_timeout, sink.send(msg)) => r,
        };
        match sent {
            Ok(Ok(())) if last => break,
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::info!(
                    session = &*id,
                    timeout_ms = write_timeout.as_millis() as u64,
                    "client not reading: write timed out; closing"
                );
                metrics::counter!("callgate_ws_write_timeouts_total").increment(1);
                return;
            }
        }
    }
    let _ = tokio::time::timeout(write_timeout, sink.close()).await;
}

/// The session task's own state: the connection, and its party once established.
struct Connection {
    shared: Arc<Shared>,
    id: Arc<str>,
    out: Outbox,
    cmd_tx: mpsc::Sender<SessionCmd>,
    ctx: Option<Arc<Party>>,
    closing: bool,
}

impl Connection {
    fn frame_error(&self, e: FrameError) {
        tracing::debug!(session = &*self.id, error = %e, "bad client frame");
        metrics::counter!("callgate_client_frame_errors_total").increment(1);
        self.out.send(&ServerFrame::fail("ErrorEvent", &e.to_string(), None));
    }

    async fn handle_text(&mut self, text: &str) {
        let frame = match ClientFrame::parse(text) {
            Ok(f) => f,
            Err(e) => return self.frame_error(e),
        };
        if let Some(ctx) = &self.ctx {
            if ctx.debug.load(Ordering::Relaxed) {
                let frame = crate::secrets::redacted_frame(text);
                tracing::info!(session = &*self.id, frame, "client frame (session debug)");
            }
        }
        match (frame.message.as_str(), &self.ctx) {
            (messages::PONG | messages::PING, _) => {}
            (messages::CONNECTION, None) => match frame.into_object() {
                Ok(obj) => self.connect(obj).await,
                Err(e) => self.frame_error(e),
            },
            (messages::CONNECTION, Some(_)) => {
                self.out.send(&ServerFrame::fail("ConnectionStatusEvent", info::ALREADY_CONNECTED, None))
            }
            (_, None) => self.out.send(&ServerFrame::fail("ErrorEvent", info::SESSION_NOT_READY, None)),
            (_, Some(ctx)) => {
                let ctx = ctx.clone();
                let s = &self.shared;
                let to =
                    crate::handlers::Features { streams: &s.streams, calls: &s.calls, xcap: &s.xcap, rooms: &s.rooms };
                if let Err(e) = crate::handlers::dispatch(to, ctx, frame) {
                    self.frame_error(e);
                }
            }
        }
    }

    /// `connection` -> `connect` hook -> `getUserData`, or `fail` and close.
    async fn connect(&mut self, mut obj: Map<String, Value>) {
        let shared = self.shared.clone();
        // A client must not configure its own hooks: a backend that mirrors the connect body
        // (as WCS recommends) would otherwise hand the client's restClientConfig back to us.
        obj.remove(callgate_hooks::rules::REST_CLIENT_CONFIG);
        // Nor widen where SIP may go: only the backend's answer may carry this (issue 14 item 8).
        obj.remove(crate::calls::ALLOWED_DESTINATIONS_FIELD);
        let app_key = match obj.get("appKey") {
            Some(Value::String(k)) if !k.is_empty() => k.clone(),
            _ => "defaultApp".to_string(),
        };
        obj.insert("nodeId".into(), Value::from(&*shared.node_id));
        obj.insert("appKey".into(), Value::from(app_key.as_str()));
        // Resuming a kept-alive session (`keepAlive` + `authToken`) is not a new session.
        if let Some(token) = obj.get("authToken").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            let token = token.to_owned();
            return self.resume(obj, token, app_key).await;
        }
        obj.insert("sessionId".into(), Value::from(&*self.id));
        let Some(app) = shared.apps.get(&app_key).cloned() else {
            tracing::info!(session = &*self.id, app_key, "connection refused: unknown appKey");
            self.out.send(&ServerFrame::fail(
                "ConnectionStatusEvent",
                &format!("{}: {app_key}", info::UNKNOWN_APP_KEY),
                None,
            ));
            self.closing = true;
            return;
        };
        let defaults = Arc::new(RestClientConfig::default());
        let inv = shared.engine.invoke(&app, &defaults, HookMethod::Connect, Origin::Client, &mut obj, &self.id).await;
        if inv.verdict.aborts() {
            let why = inv.client_info();
            tracing::info!(session = &*self.id, app = &*app.key, reason = %why, "connection declined by the connect hook");
            self.out.send(&ServerFrame::fail("ConnectionStatusEvent", &why, None));
            // The backend hears of it too: {status, info, nodeId, sessionId, appKey} (spec §4.2).
            let events = EventQueue::spawn(shared.engine.clone(), app.clone(), defaults, self.id.clone());
            let mut ev = Map::new();
            ev.insert("status".into(), status::connection::FAILED.into());
            ev.insert("info".into(), why.into());
            for k in ["nodeId", "sessionId", "appKey"] {
                ev.insert(k.into(), obj[k].clone());
            }
            events.push(EventJob {
                method: HookMethod::ConnectionStatusEvent,
                origin: Origin::Client,
                data: ev,
                then: Box::new(|_| {}),
            });
            self.closing = true;
            return;
        }
        let (rcc, warnings) = RestClientConfig::parse(inv.rest_client_config.as_ref());
        for w in warnings {
            tracing::warn!(session = &*self.id, app = &*app.key, "{w}; default used");
        }
        let rcc = Arc::new(rcc);
        obj.insert("authToken".into(), Value::from(uuid::Uuid::new_v4().to_string()));
        for flag in ["useWsTunnel", "useWsTunnelPacketization2", "useBase64BinaryEncoding"] {
            obj.entry(flag).or_insert(Value::Bool(false));
        }
        let client = Client { out: self.out.clone(), cmd: self.cmd_tx.clone() };
        let ctx = Arc::new(Party::new(shared.node.clone(), self.id.clone(), app, rcc, obj.clone(), Some(client)));
        shared.sessions.insert(ctx.id.clone(), ctx.clone());
        tracing::info!(session = &*self.id, app = &*ctx.app.key, "session established");
        let mut ev = obj;
        ev.insert("status".into(), status::connection::ESTABLISHED.into());
        ctx.raise_event(HookMethod::ConnectionStatusEvent, Origin::Client, ev, Some(messages::GET_USER_DATA));
        crate::calls::session_established(&shared.calls, &ctx);
        self.ctx = Some(ctx);
    }

    /// `connection` with an `authToken`: resumes the session kept alive under it. The connect
    /// hook is asked first (its body is this connection's object with the kept session's
    /// `sessionId` and `resumed: true`); declined, the client gets `fail` and the kept session
    /// waits on. Resumed, the client gets the session's own connection object (`getUserData`,
    /// the backend `ConnectionStatusEvent ESTABLISHED` with `resumed: true`) and `registered`
    /// when its SIP account is registered.
    async fn resume(&mut self, mut obj: Map<String, Value>, token: String, app_key: String) {
        let shared = self.shared.clone();
        let kept = shared.kept.get(&token).map(|k| k.party.clone());
        // Not kept yet: its old connection may still look alive (a half-open socket after a
        // network change, noticed only after the missed pings); that one is handed over.
        let live = || {
            shared.sessions.find(|p| {
                let d = p.data_ref();
                d.get("authToken").and_then(Value::as_str) == Some(token.as_str())
                    && d.get("keepAlive") == Some(&Value::Bool(true))
            })
        };
        let (party, hand_over) = match kept {
            Some(p) => (Some(p), false),
            None => (live(), true),
        };
        let Some(party) = party.filter(|p| *p.app.key == *app_key) else {
            tracing::info!(session = &*self.id, app_key, "connection refused: no kept session for its authToken");
            self.out.send(&ServerFrame::fail("ConnectionStatusEvent", info::NO_KEPT_SESSION, None));
            self.closing = true;
            return;
        };
        obj.insert("sessionId".into(), Value::from(&*party.id));
        obj.insert("resumed".into(), Value::Bool(true));
        let defaults = Arc::new(RestClientConfig::default());
        let inv =
            shared.engine.invoke(&party.app, &defaults, HookMethod::Connect, Origin::Client, &mut obj, &party.id).await;
        if inv.verdict.aborts() {
            let why = inv.client_info();
            tracing::info!(session = &*party.id, reason = %why, "resume declined by the connect hook; the session stays kept");
            self.out.send(&ServerFrame::fail("ConnectionStatusEvent", &why, None));
            self.closing = true;
            return;
        }
        if hand_over {
            party.hand_over();
            // Its task keeps it before it flushes its socket: at once, unless it is busy.
            let until = tokio::time::Instant::now() + CLOSE_FLUSH_BOUND;
            while !shared.kept.contains_key(&token) && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        // The keeper may have ended it while the hook ran: only the one who removes it has it.
        let Some((_, kept)) = shared.kept.remove(&token) else {
            self.out.send(&ServerFrame::fail("ConnectionStatusEvent", info::NO_KEPT_SESSION, None));
            self.closing = true;
            return;
        };
        let mut ev = party.data();
        ev.insert("status".into(), status::connection::ESTABLISHED.into());
        ev.insert("resumed".into(), Value::Bool(true));
        // getUserData first, then the session's frames: the client knows its session before
        // any stream or call frame of it arrives. (Sent at once: under OVERWRITE a resume does
        // not wait for the backend's answer to ConnectionStatusEvent.)
        let exclude = &party.rcc.method(HookMethod::ConnectionStatusEvent).client_exclude;
        self.out.send_text(crate::party::frame_text(messages::GET_USER_DATA, &ev, exclude));
        party.reattach(Client { out: self.out.clone(), cmd: self.cmd_tx.clone() });
        let _ = kept.resumed.send(());
        tracing::info!(session = &*party.id, connection = &*self.id, "kept session resumed");
        metrics::counter!("callgate_sessions_resumed_total").increment(1);
        party.raise_event(HookMethod::ConnectionStatusEvent, Origin::Client, ev, None);
        crate::calls::session_resumed(&shared.calls, &party);
        self.ctx = Some(party);
    }
}

/// The session is over (its socket went, or its keep-alive grace): it leaves the registry, its
/// streams and calls end, and the backend gets `ConnectionStatusEvent DISCONNECTED` after every
/// event raised before it.
fn end_session(shared: &Shared, ctx: &Arc<Party>) {
    shared.sessions.remove(&ctx.id);
    // After leaving the registry (no stream can be added any more), before DISCONNECTED.
    crate::streams::session_closed(&shared.streams, ctx);
    crate::calls::session_closed(&shared.calls, ctx);
    // After its streams ended (their UNPUBLISHED reach the rooms first): LEFT.
    shared.rooms.session_closed(&ctx.id);
    let mut ev = ctx.data();
    ev.insert("status".into(), status::connection::DISCONNECTED.into());
    ctx.raise_event(HookMethod::ConnectionStatusEvent, Origin::Client, ev, None);
    tracing::info!(session = &*ctx.id, "session closed");
}
