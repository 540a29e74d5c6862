//! Server transactions: INVITE (RFC 3261 §17.2.1 with RFC 6026) and non-INVITE (§17.2.2).
//!
//! ```text
//! INVITE:      Proceeding --TU 2xx--> Accepted --L--> Terminated        (ACKs go to the TU)
//!                 '--TU 300-699--> Completed --ACK--> Confirmed --I--> Terminated
//!                                     '--H (no ACK)--> Terminated
//! non-INVITE:  Trying --TU 1xx--> Proceeding --TU final--> Completed --J--> Terminated
//! ```
//!
//! The 2xx to an INVITE is retransmitted by the TU (the UA core, §13.3.1.4), not here: the
//! transaction only absorbs INVITE retransmissions in Accepted and hands ACKs to the TU.
//! Sending `100 Trying` is also the TU's job: it answers every new INVITE at once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::timers::{Armed, Timer, TimerConfig};
use super::TxnOutput;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    Trying,
    Proceeding,
    Accepted,
    Completed,
    Confirmed,
    Terminated,
}

/// A server transaction.
#[derive(Debug)]
pub struct ServerTxn {
    invite: bool,
    state: ServerState,
    /// The last response sent, retransmitted when the request is retransmitted.
    last_response: Option<Bytes>,
    cfg: TimerConfig,
    interval: Duration,
    timers: Armed,
    out: VecDeque<TxnOutput>,
}

impl ServerTxn {
    /// A new INVITE arrived (the TU answers `100 Trying` right away).
    pub fn invite(cfg: TimerConfig) -> ServerTxn {
        ServerTxn::new(true, ServerState::Proceeding, cfg)
    }

    /// A new non-INVITE request (not ACK) arrived.
    pub fn non_invite(cfg: TimerConfig) -> ServerTxn {
        ServerTxn::new(false, ServerState::Trying, cfg)
    }

    fn new(invite: bool, state: ServerState, cfg: TimerConfig) -> ServerTxn {
        ServerTxn {
            invite,
            state,
            last_response: None,
            cfg,
            interval: cfg.t1,
            timers: Armed::default(),
            out: VecDeque::new(),
        }
    }

    pub fn state(&self) -> ServerState {
        self.state
    }

    pub fn is_invite(&self) -> bool {
        self.invite
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerState::Terminated
    }

    /// True once a final response was sent.
    pub fn has_final(&self) -> bool {
        matches!(
            self.state,
            ServerState::Accepted | ServerState::Completed | ServerState::Confirmed | ServerState::Terminated
        )
    }

    /// The request was received again (a retransmission).
    pub fn handle_retransmission(&mut self) {
        use ServerState::*;
        match self.state {
            Proceeding | Completed => {
                if let Some(r) = &self.last_response {
                    self.out.push_back(TxnOutput::Transmit(r.clone()));
                }
            }
            // Trying: no response yet. Accepted: the TU retransmits 2xx. Confirmed: absorbed.
            Trying | Accepted | Confirmed | Terminated => {}
        }
    }

    /// An ACK matched this (INVITE) transaction.
    pub fn handle_ack(&mut self, now: Instant, raw: Bytes) {
        match self.state {
            ServerState::Completed => {
                self.state = ServerState::Confirmed;
                self.timers.cancel(Timer::G);
                self.timers.cancel(Timer::H);
                self.arm_or_finish(now, Timer::I, self.cfg.t4_or_zero());
            }
            // RFC 6026: an ACK for a 2xx belongs to the TU.
            ServerState::Accepted => self.out.push_back(TxnOutput::Ack(raw)),
            _ => {}
        }
    }

    /// The TU sends a response through this transaction.
    pub fn handle_tu_response(&mut self, now: Instant, status: u16, raw: Bytes) {
        use ServerState::*;
        match (self.invite, self.state, status) {
            (_, Terminated | Completed | Confirmed | Accepted, _) => {}
            (_, Trying | Proceeding, 100..=199) => {
                self.state = Proceeding;
                self.send(raw);
            }
            (true, Proceeding, 200..=299) => {
                self.state = Accepted;
                self.send(raw);
                self.timers.set(Timer::L, now + self.cfg.t1x64());
            }
            (true, Proceeding, 300..=699) => {
                self.state = Completed;
                self.send(raw);
                if !self.cfg.reliable {
                    self.interval = self.cfg.t1;
                    self.timers.set(Timer::G, now + self.interval);
                }
                self.timers.set(Timer::H, now + self.cfg.t1x64());
            }
            (false, Trying | Proceeding, 200..=699) => {
                self.state = Completed;
                self.send(raw);
                self.arm_or_finish(now, Timer::J, self.cfg.timer_j());
            }
            _ => {}
        }
    }

    fn send(&mut self, raw: Bytes) {
        self.out.push_back(TxnOutput::Transmit(raw.clone()));
        self.last_response = Some(raw);
    }

    pub fn handle_transport_error(&mut self) {
        if !self.is_terminated() {
            self.out.push_back(TxnOutput::TransportError);
            self.terminate();
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match (timer, self.state) {
                (Timer::G, ServerState::Completed) => {
                    if let Some(r) = &self.last_response {
                        self.out.push_back(TxnOutput::Transmit(r.clone()));
                    }
                    self.interval = (self.interval * 2).min(self.cfg.t2);
                    self.timers.set(Timer::G, now + self.interval);
                }
                (Timer::H, ServerState::Completed) => {
                    self.out.push_back(TxnOutput::Timeout(Timer::H));
                    self.terminate();
                }
                (Timer::I, ServerState::Confirmed)
                | (Timer::J, ServerState::Completed)
                | (Timer::L, ServerState::Accepted) => self.terminate(),
                _ => {}
            }
        }
    }

    fn arm_or_finish(&mut self, now: Instant, timer: Timer, after: Duration) {
        if after.is_zero() {
            self.terminate();
        } else {
            self.timers.set(timer, now + after);
        }
    }

    fn terminate(&mut self) {
        self.state = ServerState::Terminated;
        self.timers.clear();
        self.out.push_back(TxnOutput::Terminated);
    }

    pub fn poll_output(&mut self) -> Option<TxnOutput> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn drain(t: &mut ServerTxn) -> Vec<TxnOutput> {
        std::iter::from_fn(|| t.poll_output()).collect()
    }

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn invite_failure_retransmits_on_g_until_ack_then_waits_i() {
        let t0 = Instant::now();
        let mut t = ServerTxn::invite(TimerConfig::udp());
        t.handle_tu_response(t0, 100, b("100"));
        t.handle_retransmission();
        assert_eq!(drain(&mut t), [TxnOutput::Transmit(b("100")), TxnOutput::Transmit(b("100"))]);
        t.handle_tu_response(t0, 486, b("486"));
        drain(&mut t);
        let mut at = Vec::new();
        for _ in 0..5 {
            let next = t.poll_timeout().unwrap();
            t.handle_timeout(next);
            if drain(&mut t).contains(&TxnOutput::Transmit(b("486"))) {
                at.push((next - t0).as_millis());
            }
        }
        // G: T1, doubling, capped at T2: 0.5, 1.5, 3.5, 7.5, 11.5 s.
        assert_eq!(at, [500, 1500, 3500, 7500, 11500]);
        t.handle_ack(t0 + Duration::from_secs(12), b("ACK"));
        assert_eq!(t.state(), ServerState::Confirmed);
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(17)), "Timer I = T4");
        t.handle_retransmission();
        assert!(drain(&mut t).is_empty(), "absorbed in Confirmed");
        t.handle_timeout(t0 + Duration::from_secs(17));
        assert_eq!(drain(&mut t), [TxnOutput::Terminated]);
    }

    #[test]
    fn invite_failure_without_ack_times_out_on_h() {
        let t0 = Instant::now();
        let mut t = ServerTxn::invite(TimerConfig::udp());
        t.handle_tu_response(t0, 603, b("603"));
        drain(&mut t);
        t.handle_timeout(t0 + 64 * 500 * MS);
        let outs = drain(&mut t);
        assert!(outs.contains(&TxnOutput::Timeout(Timer::H)));
        assert!(t.is_terminated());
    }

    #[test]
    fn invite_2xx_is_accepted_and_acks_go_to_the_tu() {
        let t0 = Instant::now();
        let mut t = ServerTxn::invite(TimerConfig::udp());
        t.handle_tu_response(t0, 200, b("200"));
        assert_eq!(drain(&mut t), [TxnOutput::Transmit(b("200"))]);
        t.handle_retransmission();
        assert!(drain(&mut t).is_empty(), "the TU retransmits 2xx, not the transaction");
        t.handle_ack(t0 + MS, b("ACK"));
        assert_eq!(drain(&mut t), [TxnOutput::Ack(b("ACK"))]);
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(32)), "Timer L = 64*T1");
    }

    #[test]
    fn non_invite_absorbs_until_final_and_waits_j() {
        let t0 = Instant::now();
        let mut t = ServerTxn::non_invite(TimerConfig::udp());
        t.handle_retransmission();
        assert!(drain(&mut t).is_empty());
        t.handle_tu_response(t0, 200, b("200"));
        t.handle_retransmission();
        assert_eq!(drain(&mut t), [TxnOutput::Transmit(b("200")), TxnOutput::Transmit(b("200"))]);
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(32)), "Timer J = 64*T1");
        let mut tcp = ServerTxn::non_invite(TimerConfig::tcp());
        tcp.handle_tu_response(t0, 200, b("200"));
        assert!(tcp.is_terminated(), "Timer J is zero on reliable transports");
    }
}
