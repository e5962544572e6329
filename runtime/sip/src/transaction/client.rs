//! Client transactions: INVITE (§17.1.1 with RFC 6026's Accepted state) and non-INVITE (§17.1.2).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::message::{Method, Request, Response};
use crate::timers::TimerSettings;
use crate::transport::{Flow, Transmit};

/// Client transaction states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientState {
    /// Request sent, nothing heard (INVITE "Calling", non-INVITE "Trying").
    Calling,
    /// A provisional response arrived.
    Proceeding,
    /// A final (non-2xx for INVITE) arrived; absorbing retransmissions (Timer D or K).
    Completed,
    /// INVITE: a 2xx arrived (Timer M); further 2xx go to the transaction user, which ACKs them.
    Accepted,
    /// Done.
    Terminated,
}

/// A client transaction gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientTimeout {
    /// Timer B or F: no final response (the user sees a 408).
    NoResponse,
}

/// One client transaction.
#[derive(Debug)]
pub(crate) struct ClientTransaction {
    request: Request,
    bytes: Vec<u8>,
    state: ClientState,
    flow: Flow,
    ack: Option<Vec<u8>>,
    /// Timer A or E: next retransmission and the current interval.
    retransmit: Option<(Instant, Duration)>,
    /// Timer B or F.
    timeout: Option<Instant>,
    /// Timer D, K or M.
    end: Option<Instant>,
}

impl ClientTransaction {
    /// Sends `request` on `flow` and starts the timers.
    pub(crate) fn start(
        now: Instant,
        timers: &TimerSettings,
        flow: Flow,
        request: Request,
        out: &mut VecDeque<Transmit>,
    ) -> ClientTransaction {
        let bytes = request.to_bytes();
        out.push_back(Transmit { flow, bytes: bytes.clone() });
        let retransmit =
            (!flow.transport.is_reliable()).then(|| (now + timers.retransmit_start(), timers.retransmit_start()));
        ClientTransaction {
            request,
            bytes,
            state: ClientState::Calling,
            flow,
            ack: None,
            retransmit,
            timeout: Some(now + timers.timeout_64t1()),
            end: None,
        }
    }

    fn is_invite(&self) -> bool {
        self.request.method == Method::Invite
    }

    pub(crate) fn request(&self) -> &Request {
        &self.request
    }

    pub(crate) fn state(&self) -> ClientState {
        self.state
    }

    /// A response matched this transaction. Returns true when the transaction user should see it.
    pub(crate) fn on_response(
        &mut self,
        now: Instant,
        timers: &TimerSettings,
        response: &Response,
        out: &mut VecDeque<Transmit>,
    ) -> bool {
        let reliable = self.flow.transport.is_reliable();
        match (self.state, response.status) {
            (ClientState::Calling | ClientState::Proceeding, 100..=199) => {
                self.state = ClientState::Proceeding;
                if !self.is_invite() {
                    // Timer E keeps firing in Proceeding, at T2 (§17.1.2.2).
                    self.retransmit = self.retransmit.map(|(_, _)| (now + timers.t2, timers.t2));
                } else {
                    self.retransmit = None;
                }
                true
            }
            (ClientState::Calling | ClientState::Proceeding, 200..=299) if self.is_invite() => {
                self.state = ClientState::Accepted;
                self.retransmit = None;
                self.timeout = None;
                self.end = Some(now + timers.timeout_64t1());
                true
            }
            (ClientState::Accepted, 200..=299) => true,
            (ClientState::Calling | ClientState::Proceeding, _) => {
                self.state = ClientState::Completed;
                self.retransmit = None;
                self.timeout = None;
                if self.is_invite() {
                    let ack = ack_for_non_2xx(&self.request, response).to_bytes();
                    out.push_back(Transmit { flow: self.flow, bytes: ack.clone() });
                    self.ack = Some(ack);
                    self.end = Some(now + timers.timer_d(reliable));
                } else {
                    self.end = Some(now + timers.timer_i_k(reliable));
                }
                true
            }
            (ClientState::Completed, 300..=699) => {
                if let Some(ack) = &self.ack {
                    out.push_back(Transmit { flow: self.flow, bytes: ack.clone() });
                }
                false
            }
            _ => false,
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        [self.retransmit.map(|(at, _)| at), self.timeout, self.end].into_iter().flatten().min()
    }

    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        timers: &TimerSettings,
        out: &mut VecDeque<Transmit>,
    ) -> Option<ClientTimeout> {
        if self.end.is_some_and(|end| end <= now) {
            self.state = ClientState::Terminated;
            self.end = None;
            return None;
        }
        if self.timeout.is_some_and(|t| t <= now) {
            self.state = ClientState::Terminated;
            self.timeout = None;
            self.retransmit = None;
            return Some(ClientTimeout::NoResponse);
        }
        if let Some((at, interval)) = self.retransmit.filter(|(at, _)| *at <= now) {
            out.push_back(Transmit { flow: self.flow, bytes: self.bytes.clone() });
            // Timer A doubles without cap; Timer E is capped at T2 (§17.1.1.2, §17.1.2.2).
            let next = if self.is_invite() { interval * 2 } else { timers.next_interval(interval) };
            self.retransmit = Some((at + next, next));
        }
        None
    }
}

/// The ACK for a non-2xx final response, built by the transaction (§17.1.1.3).
pub(crate) fn ack_for_non_2xx(invite: &Request, response: &Response) -> Request {
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    if let Some(via) = invite.headers.get("Via") {
        ack.headers.push("Via", via);
    }
    for route in invite.headers.get_all("Route") {
        ack.headers.push("Route", route);
    }
    ack.headers.push("Max-Forwards", "70");
    for name in ["From", "Call-ID"] {
        if let Some(value) = invite.headers.get(name) {
            ack.headers.push(name, value);
        }
    }
    if let Some(to) = response.headers.get("To") {
        ack.headers.push("To", to);
    }
    let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
    ack.headers.push("CSeq", format!("{seq} ACK"));
    ack
}
