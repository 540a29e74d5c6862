//! SIP transactions (RFC 3261 §17, with RFC 6026's Accepted state) as sans-IO state machines.
//!
//! A transaction never touches a socket or a clock. It is driven by:
//! - `handle_*` inputs: a message from the network, a message from the transaction user (TU),
//!   the time (`handle_timeout(now)`), a transport error;
//! - and read through `poll_output()` (things to send or to tell the TU) and `poll_timeout()`
//!   (when to call `handle_timeout` next).
//!
//! The rule of use, as in str0m and quinn: after any input, poll outputs until `None`, then
//! arm a timer for `poll_timeout()`.
//!
//! Messages are raw [`Bytes`]: a transaction only retransmits and matches; parsing belongs to the
//! codec, and building the ACK of a non-2xx final response (§17.1.1.3) is delegated to an
//! [`AckBuilder`] supplied by the TU, which has the codec at hand.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bytes::Bytes;
//! use callgate_sip::txn::{ClientTxn, TimerConfig, TxnOutput};
//! let now = Instant::now();
//! let cfg = TimerConfig::udp();
//! let mut t = ClientTxn::non_invite(now, Bytes::from_static(b"OPTIONS ..."), cfg);
//! assert!(matches!(t.poll_output(), Some(TxnOutput::Transmit(_))));
//! // Timer E: retransmit after T1 on an unreliable transport.
//! assert_eq!(t.poll_timeout(), Some(now + Duration::from_millis(500)));
//! ```

mod client;
mod server;
mod table;
mod timers;

pub use client::{AckBuilder, ClientState, ClientTxn};
pub use server::{ServerState, ServerTxn};
pub use table::{RequestMatch, Transactions, TxnId, TxnKey, TxnRole};
pub use timers::{Timer, TimerConfig};

use bytes::Bytes;

/// What a transaction asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutput {
    /// Send these bytes to the transaction's peer.
    Transmit(Bytes),
    /// Client: a response for the TU (provisional, 2xx — including 2xx retransmissions in the
    /// Accepted state, which the TU must ACK — or the first non-2xx final).
    Response { status: u16, raw: Bytes },
    /// Server: an ACK that belongs to the TU (ACK for a 2xx, received in the Accepted state).
    Ack(Bytes),
    /// Client: Timer B or F fired with no final response. Server: Timer H fired without an ACK.
    Timeout(Timer),
    /// The transport failed while sending; the transaction is terminated.
    TransportError,
    /// The transaction is over; its driver may forget it.
    Terminated,
}

/// Whether a request or response is a final one.
pub fn is_final(status: u16) -> bool {
    status >= 200
}

#[cfg(test)]
mod sim_tests;
