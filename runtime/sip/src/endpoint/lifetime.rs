//! A call's end: reported once to the user, what was waiting for the ACK answered, and the call forgotten
//! after its linger time ([`TimerSettings::call_linger`]).

use super::*;

impl Endpoint {
    pub(super) fn end_call(&mut self, now: Instant, handle: CallHandle, reason: EndReason) {
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        call.state = CallState::Ended;
        call.pending_2xx = None;
        self.fail_waiting_for_ack(handle, 481);
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        let pending: Vec<IncomingRequestHandle> = std::mem::take(&mut call.pending_incoming);
        for incoming in pending {
            let _ = self.respond(now, incoming, 481, Extras::default());
        }
        self.report_end(handle, reason);
        self.maybe_forget_soon(now, handle);
    }

    /// Answers locally, with `status`, the requests that waited for an ACK that will not come (408: the ACK
    /// timed out; 481: the call ended first), so whoever waits for their responses is told.
    pub(super) fn fail_waiting_for_ack(&mut self, handle: CallHandle, status: u16) {
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        let waiting = std::mem::take(&mut call.after_ack);
        for (request, _) in waiting {
            self.outgoing.remove(&request);
            if let Some(subscription) =
                self.calls.get_mut(&handle).and_then(|c| c.subscriptions.iter_mut().find(|s| s.refer == request))
            {
                subscription.state = SubscriptionState::Terminated;
            }
            self.events.push_back(Event::Response { call: handle, request, response: Response::new(status) });
        }
    }

    pub(super) fn report_end(&mut self, handle: CallHandle, reason: EndReason) {
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        if !call.ended_reported {
            call.ended_reported = true;
            self.events.push_back(Event::CallEnded { call: handle, reason });
        }
    }

    /// Schedules forgetting an ended call after the linger time (REFER subscriptions still NOTIFYing, BYE
    /// retransmissions: [`TimerSettings::call_linger`]).
    pub(super) fn maybe_forget_soon(&mut self, now: Instant, handle: CallHandle) {
        let linger = self.config.timers.call_linger();
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        if call.state != CallState::Ended {
            return;
        }
        call.forget_at = Some(now + linger);
        self.schedule_call(handle);
    }

    pub(super) fn forget_call(&mut self, handle: CallHandle) {
        if let Some(call) = self.calls.remove(&handle) {
            let call_id = call.invite.headers.call_id().unwrap_or_default().to_string();
            self.dialog_index.remove(&(call_id, call.local_tag));
            self.outgoing.retain(|h, _| !call.subscriptions.iter().any(|s| s.refer == *h));
            self.refer_notifiers.retain(|_, notifier| notifier.call != handle);
        }
    }
}
