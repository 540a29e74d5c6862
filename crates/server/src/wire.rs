//! What talks to a client's socket: the outbox (frames for the writer task), the commands a
//! WebSocket session task takes from outside it, the frame serialiser and close frames.
//!
//! Floor 1: names nothing of the crate. What is written here is already redacted: a party
//! serialises its objects through `secrets::Redacted` (`party.rs`) before they reach
//! [`frame_text`].

use std::net::SocketAddr;

use axum::extract::ws::CloseFrame;
use callgate_proto::ServerFrame;
use serde::Serialize;
use tokio::sync::mpsc;

/// Commands from outside the session task (REST API).
#[derive(Debug)]
pub enum SessionCmd {
    /// Close the session, telling the client why.
    Terminate { info: String },
    /// The client does not read its frames (its outbox is full): close its connection. A
    /// `keepAlive` session is kept (the network, not the backend, ended it); a kept session's
    /// keeper ignores it (it comes from the old socket's outbox).
    ClientTooSlow,
    /// A new connection resumes this `keepAlive` session by its `authToken` while this one
    /// still looks alive (a half-open socket after a network change): close this connection
    /// and keep the session, for the new one to take.
    HandOver,
}

/// What the writer task sends.
#[derive(Debug)]
pub enum Out {
    Text(String),
    /// Sent after everything queued before it; the writer stops after it.
    Close(CloseFrame),
}

/// A close frame; the reason is cut to the 123 bytes a close frame can carry.
pub fn close_frame(code: u16, reason: &str) -> CloseFrame {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    CloseFrame { code, reason: reason[..end].into() }
}

/// The sending side towards one client. Never blocks: a client that does not read its frames
/// fast enough is disconnected instead of making the server buffer without bound.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Out>,
    cmd: mpsc::Sender<SessionCmd>,
}

impl Outbox {
    /// The outbox of a session task: frames go to `tx` (its writer); a full queue asks the task
    /// through `cmd` to close the session.
    pub fn new(tx: mpsc::Sender<Out>, cmd: mpsc::Sender<SessionCmd>) -> Outbox {
        Outbox { tx, cmd }
    }

    pub fn send_text(&self, text: String) {
        match self.tx.try_send(Out::Text(text)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let _ = self.cmd.try_send(SessionCmd::ClientTooSlow);
            }
        }
    }

    pub fn send(&self, frame: &ServerFrame) {
        if self.tx.is_closed() {
            return;
        }
        self.send_text(frame.to_text());
    }

    /// The writer is gone: nothing sent now would reach the client (so need not be serialised).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Queues the close frame after everything queued before it; false when the queue is full
    /// (the caller then aborts the writer).
    pub fn close(&self, frame: CloseFrame) -> bool {
        !matches!(self.tx.try_send(Out::Close(frame)), Err(mpsc::error::TrySendError::Full(_)))
    }
}

/// Serialises a one-object frame `{message, data:[data]}` without copying the object, into one
/// buffer of `capacity` bytes to start with. Client objects pass as `secrets::Redacted` (never a
/// secret to a client): `party::frame_text`.
pub fn frame_text<T: Serialize + ?Sized>(message: &str, data: &T, capacity: usize) -> String {
    // One buffer, written once: this runs for every event a client gets.
    let mut out = Vec::with_capacity(capacity);
    out.extend_from_slice(br#"{"message":"#);
    serde_json::to_writer(&mut out, message).expect("strings serialise");
    out.extend_from_slice(br#","data":["#);
    serde_json::to_writer(&mut out, data).expect("JSON values always serialise");
    out.extend_from_slice(b"]}");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Addresses of the TCP connection, for the WCS-style session id.
#[derive(Debug, Clone, Copy)]
pub struct ConnAddrs {
    pub remote: SocketAddr,
    pub local: SocketAddr,
}
