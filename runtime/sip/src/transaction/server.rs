//! Server transactions: INVITE (§17.2.1 with RFC 6026's Accepted state) and non-INVITE (§17.2.2).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::timers::TimerSettings;
use crate::transport::{Flow, Transmit};

/// Server transaction states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerState {
    /// Non-INVITE: request received, nothing sent.
    Trying,
    /// A provisional response was sent (INVITE starts here: it sends 100 at once).
    Proceeding,
    /// A final response was sent (non-2xx for INVITE); absorbing retransmissions.
    Completed,
    /// INVITE: the ACK for a non-2xx arrived (Timer I).
    Confirmed,
    /// INVITE: a 2xx was sent (RFC 6026, Timer L); the UAS core retransmits it.
    Accepted,
    /// Done; the endpoint drops it.
    Terminated,
}

/// A server transaction timed out in a way the transaction user must hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerTimeout {
    /// Timer H: no ACK for a non-2xx final response to an INVITE.
    NoAck,
}

/// One server transaction.
#[derive(Debug)]
pub(crate) struct ServerTransaction {
    invite: bool,
    state: ServerState,
    flow: Flow,
    last_response: Option<Vec<u8>>,
    /// Timer G: next retransmission of a non-2xx final and the current interval.
    retransmit: Option<(Instant, Duration)>,
    /// Timer H, I, J or L, depending on the state.
    end: Option<Instant>,
}

impl ServerTransaction {
    /// A transaction for a new request arriving on `flow`.
    pub(crate) fn new(invite: bool, flow: Flow) -> ServerTransaction {
        let state = if invite { ServerState::Proceeding } else { ServerState::Trying };
        ServerTransaction { invite, state, flow, last_response: None, retransmit: None, end: None }
    }

    pub(crate) fn state(&self) -> ServerState {
        self.state
    }

    /// True while an INVITE has no final response yet (so a CANCEL still applies).
    pub(crate) fn awaits_final(&self) -> bool {
        self.invite && self.state == ServerState::Proceeding
    }

    /// The request was retransmitted: send the last response again (RFC 6026: not in Accepted, where the
    /// UAS core retransmits the 2xx itself).
    pub(crate) fn on_retransmission(&mut self, out: &mut VecDeque<Transmit>) {
        let resend = matches!(self.state, ServerState::Proceeding | ServerState::Completed);
        if let (true, Some(bytes)) = (resend, &self.last_response) {
            out.push_back(Transmit { flow: self.flow, bytes: bytes.clone() });
        }
    }

    /// Sends a response. Returns false (and sends nothing) when the transaction can no longer respond.
    pub(crate) fn respond(
        &mut self,
        now: Instant,
        timers: &TimerSettings,
        status: u16,
        bytes: Vec<u8>,
        out: &mut VecDeque<Transmit>,
    ) -> bool {
        if !matches!(self.state, ServerState::Trying | ServerState::Proceeding) {
            return false;
        }
        let reliable = self.flow.transport.is_reliable();
        out.push_back(Transmit { flow: self.flow, bytes: bytes.clone() });
        self.last_response = Some(bytes);
        match (self.invite, status) {
            (_, 100..=199) => self.state = ServerState::Proceeding,
            (true, 200..=299) => {
                self.state = ServerState::Accepted;
                self.end = Some(now + timers.timeout_64t1());
            }
            (true, _) => {
                self.state = ServerState::Completed;
                if !reliable {
                    self.retransmit = Some((now + timers.retransmit_start(), timers.retransmit_start()));
                }
                self.end = Some(now + timers.timeout_64t1());
            }
            (false, _) => {
                self.state = ServerState::Completed;
                self.end = Some(now + timers.timer_j(reliable));
            }
        }
        true
    }

    /// An ACK matched this transaction (only non-2xx ACKs do). Returns true when it was absorbed.
    pub(crate) fn on_ack(&mut self, now: Instant, timers: &TimerSettings) -> bool {
        if self.state == ServerState::Completed && self.invite {
            self.state = ServerState::Confirmed;
            self.retransmit = None;
            self.end = Some(now + timers.timer_i_k(self.flow.transport.is_reliable()));
        }
        self.state != ServerState::Accepted
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match (self.retransmit.map(|(at, _)| at), self.end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        timers: &TimerSettings,
        out: &mut VecDeque<Transmit>,
    ) -> Option<ServerTimeout> {
        if self.end.is_some_and(|end| end <= now) {
            let timed_out_waiting_ack = self.invite && self.state == ServerState::Completed;
            self.state = ServerState::Terminated;
            self.retransmit = None;
            self.end = None;
            return timed_out_waiting_ack.then_some(ServerTimeout::NoAck);
        }
        if let Some((at, interval)) = self.retransmit.filter(|(at, _)| *at <= now) {
            if let Some(bytes) = &self.last_response {
                out.push_back(Transmit { flow: self.flow, bytes: bytes.clone() });
            }
            let next = timers.next_interval(interval);
            self.retransmit = Some((at + next, next));
        }
        None
    }
}
