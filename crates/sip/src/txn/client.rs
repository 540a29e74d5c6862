//! Client transactions: INVITE (RFC 3261 §17.1.1 with RFC 6026) and non-INVITE (§17.1.2).
//!
//! ```text
//! INVITE:      Calling --1xx--> Proceeding --2xx--> Accepted --M--> Terminated
//!                 |  \___________ 2xx ___________/^
//!                 |--300-699 (ACK)--> Completed --D--> Terminated
//!                 '--B / transport error--> Terminated
//! non-INVITE:  Trying --1xx--> Proceeding --final--> Completed --K--> Terminated
//!                 '--------------final--------------^      F / transport error -> Terminated
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::timers::{Armed, Timer, TimerConfig};
use super::TxnOutput;

/// Builds the ACK for a non-2xx final response to an INVITE (§17.1.1.3): same Request-URI,
/// Call-ID, From, CSeq number and top Via as the INVITE, the To of the response, method ACK.
/// Returning `None` means the response could not be used; no ACK is sent.
pub type AckBuilder = Box<dyn Fn(&Bytes) -> Option<Bytes> + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    Calling,
    Trying,
    Proceeding,
    Accepted,
    Completed,
    Terminated,
}

/// A client transaction.
pub struct ClientTxn {
    invite: bool,
    state: ClientState,
    request: Bytes,
    ack: Option<Bytes>,
    ack_builder: Option<AckBuilder>,
    cfg: TimerConfig,
    /// Current retransmit interval (Timer A or E).
    interval: Duration,
    timers: Armed,
    out: VecDeque<TxnOutput>,
}

impl std::fmt::Debug for ClientTxn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTxn").field("invite", &self.invite).field("state", &self.state).finish_non_exhaustive()
    }
}

impl ClientTxn {
    /// Starts an INVITE client transaction: the request is sent at once.
    pub fn invite(now: Instant, request: Bytes, ack_builder: AckBuilder, cfg: TimerConfig) -> ClientTxn {
        let mut t = ClientTxn::new(true, ClientState::Calling, request, Some(ack_builder), cfg);
        if !cfg.reliable {
            t.timers.set(Timer::A, now + cfg.t1);
        }
        t.timers.set(Timer::B, now + cfg.t1x64());
        t
    }

    /// Starts a non-INVITE client transaction (any method but INVITE and ACK).
    pub fn non_invite(now: Instant, request: Bytes, cfg: TimerConfig) -> ClientTxn {
        let mut t = ClientTxn::new(false, ClientState::Trying, request, None, cfg);
        if !cfg.reliable {
            t.timers.set(Timer::E, now + cfg.t1);
        }
        t.timers.set(Timer::F, now + cfg.t1x64());
        t
    }

    fn new(
        invite: bool,
        state: ClientState,
        request: Bytes,
        ack_builder: Option<AckBuilder>,
        cfg: TimerConfig,
    ) -> ClientTxn {
        let mut out = VecDeque::new();
        out.push_back(TxnOutput::Transmit(request.clone()));
        ClientTxn {
            invite,
            state,
            request,
            ack: None,
            ack_builder,
            cfg,
            interval: cfg.t1,
            timers: Armed::default(),
            out,
        }
    }

    pub fn state(&self) -> ClientState {
        self.state
    }

    pub fn is_invite(&self) -> bool {
        self.invite
    }

    /// The request this transaction sends (for building a CANCEL, for example).
    pub fn request(&self) -> &Bytes {
        &self.request
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientState::Terminated
    }

    /// A response matched to this transaction arrived.
    pub fn handle_response(&mut self, now: Instant, status: u16, raw: Bytes) {
        use ClientState::*;
        match (self.invite, self.state, status) {
            (_, Terminated, _) => {}
            (_, _, 0..=99) => {}
            // Provisional.
            (true, Calling | Proceeding, 100..=199) => {
                self.state = Proceeding;
                // §17.1.1.2: no more retransmissions in Proceeding; Timer B only guards Calling.
                self.timers.cancel(Timer::A);
                self.timers.cancel(Timer::B);
                self.out.push_back(TxnOutput::Response { status, raw });
            }
            (false, Trying | Proceeding, 100..=199) => {
                if self.state == Trying && !self.cfg.reliable {
                    // §17.1.2.2: in Proceeding, Timer E resets to T2.
                    self.interval = self.cfg.t2;
                }
                self.state = Proceeding;
                self.out.push_back(TxnOutput::Response { status, raw });
            }
            // INVITE 2xx: Accepted (RFC 6026); every 2xx goes to the TU, which ACKs it.
            (true, Calling | Proceeding, 200..=299) => {
                self.state = Accepted;
                self.timers.clear();
                self.timers.set(Timer::M, now + self.cfg.t1x64());
                self.out.push_back(TxnOutput::Response { status, raw });
            }
            (true, Accepted, 200..=299) => self.out.push_back(TxnOutput::Response { status, raw }),
            // INVITE non-2xx final: ACK it, tell the TU once, absorb retransmissions.
            (true, Calling | Proceeding, 300..=699) => {
                self.ack = self.ack_builder.as_ref().and_then(|b| b(&raw));
                if let Some(ack) = &self.ack {
                    self.out.push_back(TxnOutput::Transmit(ack.clone()));
                }
                self.state = Completed;
                self.timers.clear();
                self.arm_or_finish(now, Timer::D, self.cfg.timer_d());
                self.out.push_back(TxnOutput::Response { status, raw });
            }
            (true, Completed, 300..=699) => {
                if let Some(ack) = &self.ack {
                    self.out.push_back(TxnOutput::Transmit(ack.clone()));
                }
            }
            // non-INVITE final.
            (false, Trying | Proceeding, 200..=699) => {
                self.state = Completed;
                self.timers.clear();
                self.out.push_back(TxnOutput::Response { status, raw });
                self.arm_or_finish(now, Timer::K, self.cfg.t4_or_zero());
            }
            // Anything else (late provisional, stray retransmission) is absorbed.
            _ => {}
        }
    }

    /// The transport reported a failure sending this transaction's request.
    pub fn handle_transport_error(&mut self) {
        if matches!(self.state, ClientState::Calling | ClientState::Trying | ClientState::Proceeding) {
            self.out.push_back(TxnOutput::TransportError);
            self.terminate();
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            self.fire(now, timer);
        }
    }

    fn fire(&mut self, now: Instant, timer: Timer) {
        use ClientState::*;
        match (timer, self.state) {
            (Timer::A, Calling) => {
                self.out.push_back(TxnOutput::Transmit(self.request.clone()));
                self.interval *= 2; // INVITE retransmissions double without the T2 cap.
                self.timers.set(Timer::A, now + self.interval);
            }
            (Timer::B, Calling) | (Timer::F, Trying | Proceeding) => {
                self.out.push_back(TxnOutput::Timeout(timer));
                self.terminate();
            }
            (Timer::E, Trying | Proceeding) => {
                self.out.push_back(TxnOutput::Transmit(self.request.clone()));
                self.interval = if self.state == Trying { (self.interval * 2).min(self.cfg.t2) } else { self.cfg.t2 };
                self.timers.set(Timer::E, now + self.interval);
            }
            (Timer::D, Completed) | (Timer::K, Completed) | (Timer::M, Accepted) => self.terminate(),
            _ => {}
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
        self.state = ClientState::Terminated;
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

    fn drain(t: &mut ClientTxn) -> Vec<TxnOutput> {
        std::iter::from_fn(|| t.poll_output()).collect()
    }

    fn ack_builder() -> AckBuilder {
        Box::new(|resp: &Bytes| Some(Bytes::from(format!("ACK for {}", String::from_utf8_lossy(resp)))))
    }

    /// Runs the transaction's timers until `until`, returning (time since start, output).
    fn run(t: &mut ClientTxn, start: Instant, until: Duration) -> Vec<(Duration, TxnOutput)> {
        let mut seen = Vec::new();
        while let Some(at) = t.poll_timeout() {
            if at > start + until {
                break;
            }
            t.handle_timeout(at);
            for o in drain(t) {
                seen.push((at - start, o));
            }
        }
        seen
    }

    #[test]
    fn invite_retransmits_on_timer_a_and_times_out_on_b() {
        let t0 = Instant::now();
        let mut t = ClientTxn::invite(t0, Bytes::from_static(b"INVITE"), ack_builder(), TimerConfig::udp());
        assert_eq!(drain(&mut t), [TxnOutput::Transmit(Bytes::from_static(b"INVITE"))]);
        let seen = run(&mut t, t0, Duration::from_secs(40));
        let retransmits: Vec<u128> =
            seen.iter().filter(|(_, o)| matches!(o, TxnOutput::Transmit(_))).map(|(d, _)| d.as_millis()).collect();
        // A fires at T1, then doubles: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s (RFC 3261 §17.1.1.2).
        assert_eq!(retransmits, [500, 1500, 3500, 7500, 15500, 31500]);
        let timeout = seen.iter().find(|(_, o)| matches!(o, TxnOutput::Timeout(Timer::B))).unwrap();
        assert_eq!(timeout.0, 64 * 500 * MS);
        assert!(t.is_terminated());
    }

    #[test]
    fn invite_provisional_stops_retransmission_then_2xx_is_accepted() {
        let t0 = Instant::now();
        let mut t = ClientTxn::invite(t0, Bytes::from_static(b"INVITE"), ack_builder(), TimerConfig::udp());
        drain(&mut t);
        t.handle_response(t0 + 100 * MS, 180, Bytes::from_static(b"180"));
        assert_eq!(t.state(), ClientState::Proceeding);
        assert_eq!(t.poll_timeout(), None, "no A or B in Proceeding");
        t.handle_response(t0 + 200 * MS, 200, Bytes::from_static(b"200"));
        assert_eq!(t.state(), ClientState::Accepted);
        // A retransmitted 2xx still reaches the TU (it must re-ACK).
        t.handle_response(t0 + 700 * MS, 200, Bytes::from_static(b"200"));
        let outs = drain(&mut t);
        assert_eq!(outs.iter().filter(|o| matches!(o, TxnOutput::Response { status: 200, .. })).count(), 2);
        assert_eq!(t.poll_timeout(), Some(t0 + 200 * MS + 64 * 500 * MS), "Timer M = 64*T1");
        t.handle_timeout(t0 + 200 * MS + 64 * 500 * MS);
        assert!(t.is_terminated());
    }

    #[test]
    fn invite_failure_is_acked_once_and_retransmissions_re_ack() {
        let t0 = Instant::now();
        let mut t = ClientTxn::invite(t0, Bytes::from_static(b"INVITE"), ack_builder(), TimerConfig::udp());
        drain(&mut t);
        t.handle_response(t0, 486, Bytes::from_static(b"486"));
        let outs = drain(&mut t);
        assert_eq!(outs[0], TxnOutput::Transmit(Bytes::from_static(b"ACK for 486")));
        assert!(matches!(outs[1], TxnOutput::Response { status: 486, .. }));
        t.handle_response(t0 + MS, 486, Bytes::from_static(b"486"));
        assert_eq!(drain(&mut t), [TxnOutput::Transmit(Bytes::from_static(b"ACK for 486"))], "TU is told once");
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(32)), "Timer D >= 32 s");
        let tcp = {
            let mut t = ClientTxn::invite(t0, Bytes::from_static(b"INVITE"), ack_builder(), TimerConfig::tcp());
            drain(&mut t);
            assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(32)), "only B on TCP");
            t.handle_response(t0, 603, Bytes::from_static(b"603"));
            t
        };
        assert!(tcp.is_terminated(), "Timer D is zero on reliable transports");
    }

    #[test]
    fn non_invite_timer_e_caps_at_t2_and_f_times_out() {
        let t0 = Instant::now();
        let mut t = ClientTxn::non_invite(t0, Bytes::from_static(b"REGISTER"), TimerConfig::udp());
        drain(&mut t);
        let seen = run(&mut t, t0, Duration::from_secs(40));
        let retransmits: Vec<u128> =
            seen.iter().filter(|(_, o)| matches!(o, TxnOutput::Transmit(_))).map(|(d, _)| d.as_millis()).collect();
        // E: T1, 2T1, 4T1, then T2 (4 s) until F at 64*T1 = 32 s.
        assert_eq!(retransmits[..5], [500, 1500, 3500, 7500, 11500]);
        assert!(retransmits.windows(2).skip(3).all(|w| w[1] - w[0] == 4000));
        assert!(*retransmits.last().unwrap() < 32000);
        assert_eq!(
            seen.iter().find(|(_, o)| matches!(o, TxnOutput::Timeout(Timer::F))).unwrap().0,
            Duration::from_secs(32)
        );
    }

    #[test]
    fn non_invite_proceeding_retransmits_every_t2_and_final_waits_k() {
        let t0 = Instant::now();
        let mut t = ClientTxn::non_invite(t0, Bytes::from_static(b"MESSAGE"), TimerConfig::udp());
        drain(&mut t);
        t.handle_response(t0 + 10 * MS, 100, Bytes::from_static(b"100"));
        t.handle_timeout(t0 + 500 * MS);
        assert_eq!(t.poll_timeout(), Some(t0 + 500 * MS + Duration::from_secs(4)));
        drain(&mut t);
        t.handle_response(t0 + Duration::from_secs(1), 202, Bytes::from_static(b"202"));
        assert!(matches!(drain(&mut t)[..], [TxnOutput::Response { status: 202, .. }]));
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(6)), "Timer K = T4");
        t.handle_response(t0 + Duration::from_secs(2), 202, Bytes::from_static(b"202"));
        assert!(drain(&mut t).is_empty(), "retransmitted finals are absorbed");
    }

    #[test]
    fn transport_error_terminates() {
        let t0 = Instant::now();
        let mut t = ClientTxn::non_invite(t0, Bytes::from_static(b"BYE"), TimerConfig::tcp());
        drain(&mut t);
        t.handle_transport_error();
        assert_eq!(drain(&mut t), [TxnOutput::TransportError, TxnOutput::Terminated]);
    }
}
