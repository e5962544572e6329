//! The endpoint's timers: one ordered queue of deadlines (transactions' Timers A–M, each call's 2xx
//! retransmission, ACK wait and forgetting), every value from [`TimerSettings`].

use super::*;

impl Endpoint {
    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, key))) = self.timers.pop() else {
                break;
            };
            if !due.contains(&key) {
                due.push(key);
            }
        }
        for key in due {
            match key {
                TimerKey::Server(id) => self.server_timeout(now, id),
                TimerKey::Client(id) => self.client_timeout(now, id),
                TimerKey::Call(handle) => self.call_timeout(now, handle),
            }
        }
    }

    pub(super) fn schedule(&mut self, key: TimerKey, deadline: Option<Instant>) {
        if let Some(at) = deadline {
            self.timers.push(Reverse((at, key)));
        }
    }

    pub(super) fn schedule_call(&mut self, handle: CallHandle) {
        let Some(call) = self.calls.get(&handle) else {
            return;
        };
        let deadline =
            [call.pending_2xx.as_ref().map(|p| p.next.min(p.give_up)), call.forget_at].into_iter().flatten().min();
        self.schedule(TimerKey::Call(handle), deadline);
    }

    pub(super) fn server_timeout(&mut self, now: Instant, id: u64) {
        let Some(key) = self.server_by_id.get(&id).cloned() else {
            return;
        };
        let Some((_, transaction)) = self.server_transactions.get_mut(&key) else {
            return;
        };
        if transaction.next_deadline().is_none_or(|d| d > now) {
            let deadline = transaction.next_deadline();
            return self.schedule(TimerKey::Server(id), deadline);
        }
        let timeout = transaction.handle_timeout(now, &self.config.timers, &mut self.transmits);
        if transaction.state() == ServerState::Terminated {
            self.server_transactions.remove(&key);
            self.server_by_id.remove(&id);
            if let Some(merge_key) = self.merge_key_of.remove(&key) {
                self.merge_index.remove(&merge_key);
            }
        } else {
            let deadline = transaction.next_deadline();
            self.schedule(TimerKey::Server(id), deadline);
        }
        if timeout == Some(ServerTimeout::NoAck) {
            // The peer never ACKed our rejection; the call is already over on our side.
        }
    }

    pub(super) fn client_timeout(&mut self, now: Instant, id: u64) {
        let Some(key) = self.client_by_id.get(&id).cloned() else {
            return;
        };
        let timers = self.config.timers;
        let Some((_, transaction, owner)) = self.client_transactions.get_mut(&key) else {
            return;
        };
        if transaction.next_deadline().is_none_or(|d| d > now) {
            let deadline = transaction.next_deadline();
            return self.schedule(TimerKey::Client(id), deadline);
        }
        let timeout = transaction.handle_timeout(now, &timers, &mut self.transmits);
        let owner = *owner;
        let state = transaction.state();
        let deadline = transaction.next_deadline();
        let unanswered_subscribe = (timeout == Some(ClientTimeout::NoResponse)
            && transaction.request().method == Method::Subscribe)
            .then(|| transaction.request().clone());
        if state == ClientState::Terminated {
            self.client_transactions.remove(&key);
            self.client_by_id.remove(&id);
        } else {
            self.schedule(TimerKey::Client(id), deadline);
        }
        if timeout != Some(ClientTimeout::NoResponse) {
            return;
        }
        match owner {
            ClientOwner::Invite(handle) => {
                if self.calls.get(&handle).is_some_and(Call::awaits_invite_final) {
                    self.end_call(now, handle, EndReason::Failed(408));
                }
            }
            ClientOwner::Bye(handle) => self.end_call(now, handle, EndReason::LocalHangup),
            ClientOwner::Cancel(_) => {}
            ClientOwner::InDialog(handle, request) => {
                self.outgoing.remove(&request);
                if let Some(subscription) =
                    self.calls.get_mut(&handle).and_then(|c| c.subscriptions.iter_mut().find(|s| s.refer == request))
                {
                    subscription.state = SubscriptionState::Terminated;
                }
                if let Some(subscribe) = unanswered_subscribe {
                    self.on_subscribe_outcome(handle, &subscribe, 408);
                }
                self.events.push_back(Event::Response { call: handle, request, response: Response::new(408) });
                self.maybe_forget_soon(now, handle);
            }
        }
    }

    pub(super) fn call_timeout(&mut self, now: Instant, handle: CallHandle) {
        let timers = self.config.timers;
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        if call.forget_at.is_some_and(|at| at <= now) {
            return self.forget_call(handle);
        }
        if let Some(pending) = call.pending_2xx.as_mut() {
            if pending.give_up <= now {
                call.pending_2xx = None;
                if call.state == CallState::AwaitingAck {
                    call.state = CallState::Confirmed;
                    self.fail_waiting_for_ack(handle, 408);
                    self.send_bye(now, handle);
                    self.report_end(handle, EndReason::AckTimeout);
                }
            } else if pending.next <= now {
                self.transmits.push_back(Transmit { flow: call.flow, bytes: pending.bytes.clone() });
                pending.interval = timers.next_interval(pending.interval);
                pending.next = now + pending.interval;
            }
        }
        self.schedule_call(handle);
    }
}
