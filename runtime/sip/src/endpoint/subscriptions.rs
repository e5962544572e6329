//! Subscriptions in a dialog: the subscriber side of our REFERs (their NOTIFYs routed to the REFER, also
//! before the 202 and after BYE) and of the user's SUBSCRIBEs, 481 for a NOTIFY of none; and the notifier
//! side of the REFERs we accept (`notify_refer`, the NOTIFYs made by `crate::refer_notifier`).

use super::*;

impl Endpoint {
    /// A NOTIFY inside a call. It must belong to a subscription we hold, else the subscriber answers 481
    /// (RFC 6665 §4.1.3): the implicit one of a REFER we sent (answered here, [`Event::ReferNotify`]) or
    /// one the user opened with SUBSCRIBE (passed to the user). Nothing else reaches the user, so an app
    /// that answers every request 200 cannot accept state it never asked for.
    pub(super) fn on_notify(&mut self, now: Instant, handle: CallHandle, key: ServerKey, request: Request) {
        let Some(event) = EventKey::of(&request) else {
            // Event is mandatory in NOTIFY (RFC 6665 §8.2.1): without it the request is malformed, and
            // §4.1.3 prefers a more fitting 4xx over 481.
            let mut response = response_to(&request, 400, None);
            response.reason = "Missing Event header".into();
            return self.respond_on(now, &key, &request, response);
        };
        if self.matches_refer_subscription(handle, &request) {
            return self.on_refer_notify(now, handle, key, request);
        }
        let call = self.calls.get_mut(&handle).expect("indexed call exists");
        let Some(index) = call.event_subscriptions.iter().position(|s| s.event == event) else {
            let response = response_to(&request, 481, None);
            return self.respond_on(now, &key, &request, response);
        };
        if ends_subscription(&request) {
            call.event_subscriptions.remove(index);
        } else {
            call.event_subscriptions[index].state = SubscriptionState::Active;
        }
        // In an ended call this answers 481, which ends the subscription at the notifier too (RFC 6665
        // §4.2.2): with the call gone there is no one left to take its state.
        self.pass_to_user(now, handle, key, request);
    }

    pub(super) fn matches_refer_subscription(&self, handle: CallHandle, request: &Request) -> bool {
        self.refer_subscription_index(handle, request).is_some()
    }

    pub(super) fn refer_subscription_index(&self, handle: CallHandle, request: &Request) -> Option<usize> {
        let event = request.headers.get("Event")?;
        let mut parts = event.split(';');
        if !parts.next()?.trim().eq_ignore_ascii_case("refer") {
            return None;
        }
        let id = parts.find_map(|p| {
            let (name, value) = p.split_once('=')?;
            name.trim().eq_ignore_ascii_case("id").then(|| value.trim().parse::<u32>().ok()).flatten()
        });
        let subscriptions = &self.calls.get(&handle)?.subscriptions;
        match id {
            Some(id) => subscriptions.iter().position(|s| s.id == id),
            None => subscriptions.iter().position(|s| s.state != SubscriptionState::Terminated),
        }
    }

    pub(super) fn on_refer_notify(&mut self, now: Instant, handle: CallHandle, key: ServerKey, request: Request) {
        let index = self.refer_subscription_index(handle, &request).expect("matched before");
        let terminated = ends_subscription(&request);
        let call = self.calls.get_mut(&handle).expect("indexed call exists");
        let subscription = &mut call.subscriptions[index];
        let refer = subscription.refer;
        if subscription.state == SubscriptionState::Terminated {
            let response = response_to(&request, 481, None);
            return self.respond_on(now, &key, &request, response);
        }
        if terminated {
            subscription.state = SubscriptionState::Terminated;
        } else if subscription.state == SubscriptionState::Pending {
            subscription.state = SubscriptionState::Active;
        }
        let response = response_to(&request, 200, None);
        self.respond_on(now, &key, &request, response);
        let status = sipfrag_status(&request.body);
        self.events.push_back(Event::ReferNotify { call: handle, refer, status, terminated });
        if terminated {
            self.maybe_forget_soon(now, handle);
        }
    }

    /// The final status of a SUBSCRIBE we sent (408 when none came). A failed first SUBSCRIBE created
    /// nothing; a failed refresh leaves the subscription as it was, unless 481 says it is already gone
    /// (RFC 6665 §4.1.2.2).
    pub(super) fn on_subscribe_outcome(&mut self, handle: CallHandle, subscribe: &Request, status: u16) {
        let Some(event) = EventKey::of(subscribe) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        let Some(index) = call.event_subscriptions.iter().position(|s| s.event == event) else {
            return;
        };
        let subscription = &mut call.event_subscriptions[index];
        if (200..300).contains(&status) {
            subscription.state = SubscriptionState::Active;
        } else if status == 481 || subscription.state == SubscriptionState::Pending {
            call.event_subscriptions.remove(index);
        }
    }

    pub(super) fn retarget_subscription(&mut self, handle: CallHandle, refer: RequestHandle, id: u32) {
        if let Some(subscription) =
            self.calls.get_mut(&handle).and_then(|c| c.subscriptions.iter_mut().find(|s| s.refer == refer))
        {
            subscription.id = id;
        }
    }

    /// Tells the far end how the transfer it asked for with `refer` (answered 2xx) goes: a NOTIFY of the
    /// REFER's subscription with `status` and `reason` as its sipfrag status line, the Event and
    /// Subscription-State it needs (see [`crate::refer_notifier`]); a final status ends the subscription.
    /// Also after our BYE (RFC 5057: the subscription outlives the INVITE usage) while the call lingers.
    /// Refused for a REFER that was not accepted, asked for no subscription, or had its final NOTIFY, or
    /// whose subscriber answered one of its NOTIFYs 481 or never answered (RFC 6665 §4.2.2).
    pub fn notify_refer(
        &mut self,
        now: Instant,
        refer: IncomingRequestHandle,
        status: u16,
        reason: &str,
    ) -> Result<RequestHandle, Error> {
        let notifier = self.refer_notifiers.get_mut(&refer).ok_or_else(|| {
            Error::BadArgument(format!("{refer} is not a REFER with a subscription (accepted, Refer-Sub not false)"))
        })?;
        let extras = notifier.notify(status, reason)?;
        let call = notifier.call;
        let terminated = notifier.is_terminated();
        let sent = self.send_request(now, call, InDialogRequest { method: Method::Notify, extras, credentials: None });
        if terminated {
            self.refer_notifiers.remove(&refer);
        } else if let (Ok(notify), Some(notifier)) = (&sent, self.refer_notifiers.get_mut(&refer)) {
            notifier.sent_as(*notify);
        }
        sent
    }
}
