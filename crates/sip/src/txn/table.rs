//! All live transactions of an endpoint, matched by key (RFC 3261 §17.1.3, §17.2.3), with one
//! timer queue.
//!
//! Matching uses the branch of the top Via (RFC 3261 magic-cookie branches are unique per
//! transaction), the method (an ACK matches its INVITE, CANCEL has its own transaction), and for
//! server transactions the Via sent-by. A transaction is forgotten right after it reports
//! [`TxnOutput::Terminated`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;

use super::{ClientTxn, ServerTxn, TxnOutput};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnRole {
    Client,
    Server,
}

/// Identifies a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxnKey {
    pub role: TxnRole,
    /// Top Via `branch` parameter.
    pub branch: Bytes,
    /// The request method; `ACK` is stored as `INVITE` (it belongs to the INVITE transaction).
    pub method: Bytes,
    /// Server transactions: the top Via sent-by (`host[:port]`); empty for client transactions.
    pub sent_by: Bytes,
}

/// Transactions are addressed by their key.
pub type TxnId = TxnKey;

impl TxnKey {
    pub fn client(branch: Bytes, method: &[u8]) -> TxnKey {
        TxnKey { role: TxnRole::Client, branch, method: Self::norm(method), sent_by: Bytes::new() }
    }

    pub fn server(branch: Bytes, method: &[u8], sent_by: Bytes) -> TxnKey {
        TxnKey { role: TxnRole::Server, branch, method: Self::norm(method), sent_by }
    }

    fn norm(method: &[u8]) -> Bytes {
        if method == b"ACK" {
            Bytes::from_static(b"INVITE")
        } else {
            Bytes::copy_from_slice(method)
        }
    }
}

enum Txn {
    Client(ClientTxn),
    Server(ServerTxn),
}

struct Entry {
    txn: Txn,
    /// The deadline this transaction has in the timer queue; other queued copies are stale.
    queued: Option<Instant>,
}

impl Txn {
    fn poll_output(&mut self) -> Option<TxnOutput> {
        match self {
            Txn::Client(t) => t.poll_output(),
            Txn::Server(t) => t.poll_output(),
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Txn::Client(t) => t.poll_timeout(),
            Txn::Server(t) => t.poll_timeout(),
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Txn::Client(t) => t.handle_timeout(now),
            Txn::Server(t) => t.handle_timeout(now),
        }
    }
}

/// What an incoming request was to the server transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestMatch {
    /// No transaction: a new request (or an ACK for a 2xx, which belongs to the dialog).
    New,
    /// A retransmission, absorbed or answered by the transaction.
    Retransmission,
    /// An ACK that completed a non-2xx INVITE transaction, or an ACK passed on as output.
    Ack,
}

/// The transactions of one endpoint.
#[derive(Default)]
pub struct Transactions {
    live: HashMap<TxnKey, Entry>,
    timers: BinaryHeap<Reverse<(Instant, TxnKey)>>,
    out: VecDeque<(TxnKey, TxnOutput)>,
}

impl Transactions {
    pub fn new() -> Transactions {
        Transactions::default()
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    pub fn contains(&self, key: &TxnKey) -> bool {
        self.live.contains_key(key)
    }

    /// Starts a client transaction (its request is queued for sending).
    pub fn start_client(&mut self, key: TxnKey, txn: ClientTxn) {
        self.live.insert(key.clone(), Entry { txn: Txn::Client(txn), queued: None });
        self.after_input(&key);
    }

    /// Creates a server transaction for a new request.
    pub fn start_server(&mut self, key: TxnKey, txn: ServerTxn) {
        self.live.insert(key.clone(), Entry { txn: Txn::Server(txn), queued: None });
        self.after_input(&key);
    }

    /// A response arrived; returns false when no client transaction matches (a stray response,
    /// or a 2xx retransmission after the transaction ended: the dialog layer handles those).
    pub fn handle_response(&mut self, now: Instant, key: &TxnKey, status: u16, raw: Bytes) -> bool {
        let Some(Entry { txn: Txn::Client(t), .. }) = self.live.get_mut(key) else { return false };
        t.handle_response(now, status, raw);
        self.after_input(key);
        true
    }

    /// A request arrived for the server side.
    pub fn handle_request(&mut self, now: Instant, key: &TxnKey, is_ack: bool, raw: Bytes) -> RequestMatch {
        let Some(Entry { txn: Txn::Server(t), .. }) = self.live.get_mut(key) else { return RequestMatch::New };
        let m = if is_ack {
            if !t.is_invite() {
                return RequestMatch::New;
            }
            t.handle_ack(now, raw);
            RequestMatch::Ack
        } else {
            t.handle_retransmission();
            RequestMatch::Retransmission
        };
        self.after_input(key);
        m
    }

    /// The TU answers a server transaction; returns false when it no longer exists.
    pub fn handle_tu_response(&mut self, now: Instant, key: &TxnKey, status: u16, raw: Bytes) -> bool {
        let Some(Entry { txn: Txn::Server(t), .. }) = self.live.get_mut(key) else { return false };
        t.handle_tu_response(now, status, raw);
        self.after_input(key);
        true
    }

    pub fn handle_transport_error(&mut self, key: &TxnKey) {
        match self.live.get_mut(key).map(|e| &mut e.txn) {
            Some(Txn::Client(t)) => t.handle_transport_error(),
            Some(Txn::Server(t)) => t.handle_transport_error(),
            None => return,
        }
        self.after_input(key);
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Reverse((at, key)) = self.timers.pop().expect("peeked");
            // Lazy deletion: the entry is stale unless the transaction still wants this instant.
            let Some(e) = self.live.get_mut(&key) else { continue };
            if e.queued != Some(at) {
                continue;
            }
            e.queued = None;
            e.txn.handle_timeout(now);
            self.after_input(&key);
        }
    }

    /// The next output, tagged with its transaction.
    pub fn poll_output(&mut self) -> Option<(TxnKey, TxnOutput)> {
        self.out.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        // Drop stale heads so the answer is exact.
        while let Some(Reverse((at, key))) = self.timers.peek() {
            match self.live.get(key) {
                Some(e) if e.queued == Some(*at) => return Some(*at),
                _ => {
                    self.timers.pop();
                }
            }
        }
        None
    }

    fn after_input(&mut self, key: &TxnKey) {
        let Some(e) = self.live.get_mut(key) else { return };
        let mut terminated = false;
        while let Some(o) = e.txn.poll_output() {
            terminated |= o == TxnOutput::Terminated;
            self.out.push_back((key.clone(), o));
        }
        if terminated {
            self.live.remove(key);
            return;
        }
        let next = e.txn.poll_timeout();
        if next != e.queued {
            if let Some(at) = next {
                self.timers.push(Reverse((at, key.clone())));
            }
            e.queued = next;
        }
    }
}
