//! Requests inside a dialog, both ways: matching one to its call (Call-ID and tags, CSeq checked), a
//! re-INVITE or UPDATE answered with our session, BYE, and what the user sends in a call (INFO, MESSAGE,
//! NOTIFY, REFER, SUBSCRIBE, …), held until the ACK of an inbound call's 2xx.

use super::*;

impl Endpoint {
    pub(super) fn find_call(&self, request: &Request, to_tag: &str) -> Option<CallHandle> {
        let call_id = request.headers.call_id()?.to_string();
        let handle = *self.dialog_index.get(&(call_id, to_tag.to_string()))?;
        let call = self.calls.get(&handle)?;
        let from_tag = request.headers.tag("From").unwrap_or_default();
        let remote_tag = match &call.dialog {
            Some(dialog) => dialog.id.remote_tag.clone(),
            None => call.invite.headers.tag("From").unwrap_or_default(),
        };
        (remote_tag == from_tag).then_some(handle)
    }

    pub(super) fn on_in_dialog_request(
        &mut self,
        now: Instant,
        key: ServerKey,
        flow: Flow,
        request: Request,
        to_tag: String,
    ) {
        let Some(handle) = self.find_call(&request, &to_tag) else {
            let response = response_to(&request, 481, None);
            return self.respond_on(now, &key, &request, response);
        };
        let cseq = match request.headers.cseq() {
            Ok(cseq) => cseq,
            Err(_) => return,
        };
        let call = self.calls.get_mut(&handle).expect("indexed call exists");
        if let Some(dialog) = call.dialog.as_mut() {
            if dialog.check_remote_seq(&cseq) == SequenceCheck::OutOfOrder {
                let response = response_to(&request, 500, None);
                return self.respond_on(now, &key, &request, response);
            }
            // A target refresh (re-INVITE, UPDATE) may move the peer's Contact (§12.2.2).
            if matches!(request.method, Method::Invite | Method::Update)
                && let Some(contact) = request.headers.name_addrs("Contact").ok().and_then(|c| c.into_iter().next())
            {
                dialog.remote_target = contact.uri;
            }
        }
        let _ = flow;
        match request.method {
            Method::Bye => self.on_bye(now, handle, key, request),
            Method::Notify => self.on_notify(now, handle, key, request),
            Method::Invite => self.on_reinvite(now, handle, key, request),
            Method::Options => {
                let mut response = response_to(&request, 200, None);
                response.headers.push("Allow", ALLOWED_METHODS);
                self.respond_on(now, &key, &request, response);
            }
            Method::Update => {
                let mut response = response_to(&request, 200, None);
                if !request.body.is_empty() {
                    match self.answer_in_dialog_offer(handle, &request.body) {
                        Ok(Some(sdp)) => {
                            response.headers.push("Content-Type", "application/sdp");
                            response.body = sdp;
                        }
                        Ok(None) => {}
                        Err(status) => response = response_to(&request, status, None),
                    }
                }
                self.respond_on(now, &key, &request, response);
            }
            _ => self.pass_to_user(now, handle, key, request),
        }
    }

    /// Hands an in-dialog request to the user, who answers it with [`Endpoint::respond`]; an ended call has
    /// no one left to answer, so 481.
    pub(super) fn pass_to_user(&mut self, now: Instant, handle: CallHandle, key: ServerKey, request: Request) {
        let call = self.calls.get_mut(&handle).expect("indexed call exists");
        if call.state == CallState::Ended {
            let response = response_to(&request, 481, None);
            return self.respond_on(now, &key, &request, response);
        }
        let incoming = IncomingRequestHandle(self.new_handle());
        let call = self.calls.get_mut(&handle).expect("indexed call exists");
        call.pending_incoming.push(incoming);
        if request.method == Method::Refer {
            let earlier = call.refers_received;
            call.refers_received += 1;
            if let Some(notifier) = ReferNotifier::for_refer(handle, &request, earlier) {
                self.refer_notifiers.insert(incoming, notifier);
            }
        }
        self.incoming.insert(incoming, IncomingRequest { call: handle, key, request: request.clone() });
        self.events.push_back(Event::Request { call: handle, handle: incoming, request });
    }

    pub(super) fn on_reinvite(&mut self, now: Instant, handle: CallHandle, key: ServerKey, request: Request) {
        let trying = response_to(&request, 100, None);
        self.respond_on(now, &key, &request, trying);
        let call = &self.calls[&handle];
        if call.state != CallState::Confirmed {
            let status = if call.pending_2xx.is_some() { 491 } else { 481 };
            let response = response_to(&request, status, None);
            return self.respond_on(now, &key, &request, response);
        }
        // Session refresh, hold or a new address: an offer is answered by the user's answerer (or with the
        // session as it stands); one without a body gets our session as an offer (its answer in the ACK).
        let local_contact = call.dialog.as_ref().map(|dialog| dialog.local_contact.to_string());
        let sdp = if request.body.is_empty() {
            self.offer_in_dialog(handle)
        } else {
            match self.answer_in_dialog_offer(handle, &request.body) {
                Ok(sdp) => sdp,
                Err(status) => {
                    let refused = response_to(&request, status, None);
                    return self.respond_on(now, &key, &request, refused);
                }
            }
        };
        let mut response = response_to(&request, 200, None);
        if let Some(contact) = local_contact {
            response.headers.push("Contact", contact);
        }
        if let Some(sdp) = sdp {
            response.headers.push("Content-Type", "application/sdp");
            response.body = sdp;
        }
        let cseq = request.headers.cseq().map(|c| c.seq).unwrap_or_default();
        self.send_2xx_to_invite(now, handle, key, &request, response, cseq);
    }

    pub(super) fn on_bye(&mut self, now: Instant, handle: CallHandle, key: ServerKey, request: Request) {
        let response = response_to(&request, 200, None);
        self.respond_on(now, &key, &request, response);
        let call = self.calls.get_mut(&handle).expect("indexed call exists");
        call.pending_2xx = None;
        if call.state == CallState::Ringing {
            // BYE on an early dialog (§15.1.2): the INVITE gets 487.
            if let Some(invite_key) = call.server_key.clone() {
                let invite = call.invite.clone();
                let tag = call.local_tag.clone();
                let terminated = response_to(&invite, 487, Some(&tag));
                self.respond_on(now, &invite_key, &invite, terminated);
            }
        }
        self.end_call(now, handle, EndReason::RemoteHangup);
    }

    pub(super) fn on_in_dialog_response(
        &mut self,
        now: Instant,
        handle: CallHandle,
        request_handle: RequestHandle,
        request: &Request,
        response: Response,
    ) {
        if response.status < 200 {
            return;
        }
        if matches!(response.status, 401 | 407) {
            let outgoing = self.outgoing.get_mut(&request_handle);
            if let Some(outgoing) = outgoing.filter(|o| o.credentials.is_some() && o.auth_attempts < 2) {
                outgoing.auth_attempts += 1;
                let credentials = outgoing.credentials.clone();
                if let Some(mut retry) = self.authorized_retry(request, &response, credentials.as_ref()) {
                    if let Some(dialog) = self.calls.get_mut(&handle).and_then(|c| c.dialog.as_mut()) {
                        dialog.local_seq += 1;
                        retry.headers.set("CSeq", format!("{} {}", dialog.local_seq, request.method));
                        if request.method == Method::Refer {
                            self.retarget_subscription(handle, request_handle, dialog_seq(&retry));
                        }
                    }
                    let flow = self.calls[&handle].flow;
                    self.start_client(now, flow, retry, ClientOwner::InDialog(handle, request_handle));
                    return;
                }
            }
        }
        self.outgoing.remove(&request_handle);
        if request.method == Method::Refer {
            let no_subscription =
                response.headers.get("Refer-Sub").is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
            if let Some(call) = self.calls.get_mut(&handle)
                && let Some(subscription) = call.subscriptions.iter_mut().find(|s| s.refer == request_handle)
            {
                if response.status >= 300 || no_subscription {
                    subscription.state = SubscriptionState::Terminated;
                } else if subscription.state == SubscriptionState::Pending {
                    subscription.state = SubscriptionState::Active;
                }
            }
        }
        if request.method == Method::Notify && matches!(response.status, 408 | 481) {
            // The subscriber is gone (RFC 6665 §4.2.2): the REFER's subscription ends at the notifier too.
            self.refer_notifiers.retain(|_, notifier| !notifier.sent(request_handle));
        }
        if request.method == Method::Subscribe {
            self.on_subscribe_outcome(handle, request, response.status);
        }
        self.events.push_back(Event::Response { call: handle, request: request_handle, response });
        self.maybe_forget_soon(now, handle);
    }

    /// Ends a call: BYE when established (after the ACK, for an inbound call), CANCEL for an outbound call
    /// not yet answered, 480 for an inbound call not yet answered.
    pub fn hangup(&mut self, now: Instant, handle: CallHandle) -> Result<(), Error> {
        let call = self.call_mut(handle)?;
        match call.state {
            CallState::Ringing => self.reject(now, handle, 480, None, Extras::default()),
            CallState::AwaitingAck => {
                call.bye_after_ack = true;
                Ok(())
            }
            CallState::Confirmed => {
                self.send_bye(now, handle);
                Ok(())
            }
            CallState::Calling => {
                let key = call.client_key.clone();
                let provisional = key
                    .as_ref()
                    .and_then(|k| self.client_transactions.get(k))
                    .is_some_and(|(_, t, _)| t.state() == ClientState::Proceeding);
                if provisional {
                    self.send_cancel(now, handle);
                } else {
                    // §9.1: no CANCEL before a provisional response; send it when one comes.
                    self.calls.get_mut(&handle).expect("checked").cancel_when_provisional = true;
                }
                self.calls.get_mut(&handle).expect("checked").state = CallState::Terminating;
                Ok(())
            }
            CallState::Terminating | CallState::Ended => Ok(()),
        }
    }

    pub(super) fn send_bye(&mut self, now: Instant, handle: CallHandle) {
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        let Some(dialog) = call.dialog.as_mut() else {
            return;
        };
        let bye = dialog.new_request(Method::Bye);
        call.state = CallState::Terminating;
        let flow = call.flow;
        self.start_client(now, flow, bye, ClientOwner::Bye(handle));
    }

    /// Sends a request inside an established call (INFO, MESSAGE, NOTIFY, REFER, SUBSCRIBE, OPTIONS,
    /// UPDATE). A REFER starts tracking its implicit subscription: NOTIFYs come back as
    /// [`Event::ReferNotify`]. A SUBSCRIBE starts tracking the subscription of its Event package and `id`:
    /// matching NOTIFYs come back as [`Event::Request`]; NOTIFYs that match no subscription get 481.
    pub fn send_request(
        &mut self,
        now: Instant,
        handle: CallHandle,
        request: InDialogRequest,
    ) -> Result<RequestHandle, Error> {
        if matches!(request.method, Method::Invite | Method::Ack | Method::Cancel | Method::Bye) {
            return Err(Error::BadArgument(format!("{} has its own command", request.method)));
        }
        request.extras.check()?;
        let call = self.call_mut(handle)?;
        let usable = matches!(call.state, CallState::Confirmed | CallState::AwaitingAck)
            || (call.state == CallState::Ended && request.method == Method::Notify);
        if call.dialog.is_none() || !usable {
            return Err(Self::invalid(handle, "send a request in", call));
        }
        let request_handle = RequestHandle(self.new_handle());
        let call = self.calls.get_mut(&handle).expect("checked");
        if call.state == CallState::AwaitingAck {
            // §13.3.1.4 holds BYE until the ACK; any other request would race the 2xx as well.
            call.after_ack.push((request_handle, request));
            return Ok(request_handle);
        }
        self.send_in_dialog(now, handle, request_handle, request);
        Ok(request_handle)
    }

    /// Sends a request [`Endpoint::send_request`] accepted, in a dialog that is up.
    pub(super) fn send_in_dialog(
        &mut self,
        now: Instant,
        handle: CallHandle,
        request_handle: RequestHandle,
        request: InDialogRequest,
    ) {
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        let Some(dialog) = call.dialog.as_mut() else {
            return;
        };
        let mut sip = dialog.new_request(request.method.clone());
        let seq = dialog.local_seq;
        request.extras.apply(&mut sip.headers, &mut sip.body);
        let flow = call.flow;
        if request.method == Method::Refer {
            let call = self.calls.get_mut(&handle).expect("checked");
            call.subscriptions.push(ReferSubscription {
                refer: request_handle,
                id: seq,
                state: SubscriptionState::Pending,
            });
        }
        // Tracked from the moment it is sent: its first NOTIFY may overtake the 2xx (RFC 6665 §4.1.2.4).
        // A refresh (same package and id) keeps the subscription as it is.
        if request.method == Method::Subscribe
            && let Some(event) = EventKey::of(&sip)
        {
            let call = self.calls.get_mut(&handle).expect("checked");
            if !call.event_subscriptions.iter().any(|s| s.event == event) {
                call.event_subscriptions.push(EventSubscription { event, state: SubscriptionState::Pending });
            }
        }
        self.outgoing.insert(request_handle, OutgoingRequest { credentials: request.credentials, auth_attempts: 0 });
        self.start_client(now, flow, sip, ClientOwner::InDialog(handle, request_handle));
    }
}
