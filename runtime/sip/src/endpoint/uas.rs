//! The UAS side of calls (RFC 3261 §13.3, §17.2.1): a new INVITE becomes a call, our 2xx is
//! retransmitted until its ACK, a CANCEL ends an unanswered call with 487, and the user's answers to an
//! inbound call and to the requests it received (ring, answer, reject, respond).

use super::*;

impl Endpoint {
    pub(super) fn on_new_invite(&mut self, now: Instant, key: ServerKey, flow: Flow, request: Request) {
        if self.shedding {
            self.calls_shed += 1;
            let mut busy = response_to(&request, 503, Some(&self.ids.tag()));
            busy.headers.push("Retry-After", self.config.shed_retry_after.as_secs().max(1).to_string());
            return self.respond_on(now, &key, &request, busy);
        }
        let trying = response_to(&request, 100, None);
        self.respond_on(now, &key, &request, trying);
        let handle = CallHandle(self.new_handle());
        let local_tag = self.ids.tag();
        let call_id = request.headers.call_id().unwrap_or_default().to_string();
        self.dialog_index.insert((call_id, local_tag.clone()), handle);
        self.calls.insert(handle, Call::inbound(request.clone(), flow, local_tag, key));
        self.events.push_back(Event::IncomingCall { call: handle, request, flow });
    }

    pub(super) fn send_2xx_to_invite(
        &mut self,
        now: Instant,
        handle: CallHandle,
        key: ServerKey,
        request: &Request,
        mut response: Response,
        cseq: u32,
    ) {
        self.add_common_headers(&mut response.headers);
        response.headers.push("Allow", ALLOWED_METHODS);
        response.headers.push("Supported", SUPPORTED_EXTENSIONS.join(", "));
        let bytes = response.to_bytes();
        let offers = request.body.is_empty() && !response.body.is_empty();
        let timers = self.config.timers;
        if let Some((id, transaction)) = self.server_transactions.get_mut(&key) {
            transaction.respond(now, &timers, response.status, bytes.clone(), &mut self.transmits);
            let (id, deadline) = (*id, transaction.next_deadline());
            self.schedule(TimerKey::Server(id), deadline);
        }
        let call = self.calls.get_mut(&handle).expect("call exists");
        call.pending_2xx = Some(Pending2xx {
            cseq,
            bytes,
            offers,
            next: now + timers.retransmit_start(),
            interval: timers.retransmit_start(),
            give_up: now + timers.timeout_64t1(),
        });
        self.schedule_call(handle);
    }

    pub(super) fn on_ack(&mut self, now: Instant, key: ServerKey, request: Request) {
        if let Some((id, transaction)) = self.server_transactions.get_mut(&key)
            && transaction.state() != ServerState::Accepted
        {
            transaction.on_ack(now, &self.config.timers);
            let (id, deadline) = (*id, transaction.next_deadline());
            self.schedule(TimerKey::Server(id), deadline);
            return;
        }
        let Some(to_tag) = request.headers.tag("To") else {
            return;
        };
        let Some(handle) = self.find_call(&request, &to_tag) else {
            return;
        };
        let cseq = request.headers.cseq().map(|c| c.seq).unwrap_or_default();
        let call = self.calls.get_mut(&handle).expect("indexed call exists");
        if call.pending_2xx.as_ref().is_none_or(|p| p.cseq != cseq) {
            return;
        }
        let offered = call.pending_2xx.take().is_some_and(|pending| pending.offers);
        if call.state == CallState::Confirmed
            && offered
            && !request.body.is_empty()
            && let Some(AnswererSlot(answerer)) = call.offer_answerer.as_mut()
        {
            // The answer to the session we offered in the 2xx to an offerless re-INVITE.
            answerer.accept_answer(&request.body);
        }
        if call.state == CallState::AwaitingAck {
            call.state = CallState::Confirmed;
            let waiting = std::mem::take(&mut call.after_ack);
            self.events.push_back(Event::CallConfirmed { call: handle, ack_body: request.body });
            for (request_handle, request) in waiting {
                self.send_in_dialog(now, handle, request_handle, request);
            }
            if self.calls[&handle].bye_after_ack {
                self.send_bye(now, handle);
            }
        }
    }

    pub(super) fn on_cancel(&mut self, now: Instant, key: ServerKey, flow: Flow, request: Request) {
        let invite_key = key.cancelled_invite();
        let target = self.server_transactions.get(&invite_key).map(|(_, t)| t.awaits_final());
        let transaction = ServerTransaction::new(false, response_flow(&request, flow));
        let id = self.new_handle();
        self.server_transactions.insert(key.clone(), (id, transaction));
        self.server_by_id.insert(id, key.clone());
        let Some(awaits_final) = target else {
            let response = response_to(&request, 481, Some(&self.ids.tag()));
            return self.respond_on(now, &key, &request, response);
        };
        let handle = self.calls.iter().find(|(_, c)| c.server_key.as_ref() == Some(&invite_key)).map(|(h, _)| *h);
        let local_tag = handle.map(|h| self.calls[&h].local_tag.clone());
        let ok = response_to(&request, 200, local_tag.as_deref());
        self.respond_on(now, &key, &request, ok);
        if let (true, Some(handle)) = (awaits_final, handle) {
            let invite = self.calls[&handle].invite.clone();
            let terminated = response_to(&invite, 487, local_tag.as_deref());
            self.respond_on(now, &invite_key, &invite, terminated);
            self.end_call(now, handle, EndReason::Cancelled);
        }
    }

    /// Sends a provisional response (180, 183) to an inbound call.
    pub fn ring(&mut self, now: Instant, handle: CallHandle, status: u16, extras: Extras) -> Result<(), Error> {
        if !(101..200).contains(&status) {
            return Err(Error::BadArgument(format!("{status} is not a provisional status")));
        }
        extras.check()?;
        let call = self.call_mut(handle)?;
        if call.state != CallState::Ringing {
            return Err(Self::invalid(handle, "ring", call));
        }
        let mut response = response_to(&call.invite, status, Some(&call.local_tag.clone()));
        extras.apply(&mut response.headers, &mut response.body);
        let (key, invite, flow) = (call.server_key.clone().expect("inbound call"), call.invite.clone(), call.flow);
        let contact = self.local_contact(flow);
        response.headers.push("Contact", contact.to_string());
        self.respond_on(now, &key, &invite, response);
        Ok(())
    }

    /// Answers an inbound call with a 2xx (usually 200 with an SDP answer in `extras`).
    pub fn answer(&mut self, now: Instant, handle: CallHandle, extras: Extras) -> Result<(), Error> {
        extras.check()?;
        let call = self.call_mut(handle)?;
        if call.state != CallState::Ringing {
            return Err(Self::invalid(handle, "answer", call));
        }
        let local_contact = self.local_contact(self.calls[&handle].flow);
        let local_seq = self.ids.initial_cseq();
        let call = self.calls.get_mut(&handle).expect("checked above");
        let dialog = Dialog::as_uas(&call.invite, &call.local_tag, local_contact.clone(), local_seq)
            .ok_or_else(|| Error::BadArgument("the INVITE has no usable Contact".into()))?;
        let mut response = response_to(&call.invite, 200, Some(&call.local_tag));
        for record_route in call.invite.headers.get_all("Record-Route") {
            response.headers.push("Record-Route", record_route);
        }
        response.headers.push("Contact", local_contact.to_string());
        extras.apply(&mut response.headers, &mut response.body);
        let current_flow = call.flow;
        let flow = self.flow_for_dialog(&dialog, current_flow);
        let call = self.calls.get_mut(&handle).expect("checked above");
        call.flow = flow;
        call.local_sdp = (!response.body.is_empty()).then(|| response.body.clone());
        call.dialog = Some(dialog);
        call.state = CallState::AwaitingAck;
        let (key, invite) = (call.server_key.clone().expect("inbound call"), call.invite.clone());
        let cseq = invite.headers.cseq().map(|c| c.seq).unwrap_or_default();
        self.send_2xx_to_invite(now, handle, key, &invite, response, cseq);
        Ok(())
    }

    /// Rejects an inbound call that has not been answered (status 300-699).
    pub fn reject(
        &mut self,
        now: Instant,
        handle: CallHandle,
        status: u16,
        reason: Option<&str>,
        extras: Extras,
    ) -> Result<(), Error> {
        if !(300..700).contains(&status) {
            return Err(Error::BadArgument(format!("{status} is not a final failure status")));
        }
        if reason.is_some_and(|r| r.contains(['\r', '\n'])) {
            return Err(Error::BadArgument("reason phrase holds a line break".into()));
        }
        extras.check()?;
        let call = self.call_mut(handle)?;
        if call.state != CallState::Ringing {
            return Err(Self::invalid(handle, "reject", call));
        }
        let mut response = response_to(&call.invite, status, Some(&call.local_tag.clone()));
        if let Some(reason) = reason {
            response.reason = reason.to_string();
        }
        extras.apply(&mut response.headers, &mut response.body);
        let (key, invite) = (call.server_key.clone().expect("inbound call"), call.invite.clone());
        self.respond_on(now, &key, &invite, response);
        self.end_call(now, handle, EndReason::Rejected(status));
        Ok(())
    }

    /// Answers a request the peer sent inside a call ([`Event::Request`]).
    pub fn respond(
        &mut self,
        now: Instant,
        handle: IncomingRequestHandle,
        status: u16,
        extras: Extras,
    ) -> Result<(), Error> {
        if !(200..700).contains(&status) {
            return Err(Error::BadArgument(format!("{status} is not a final status")));
        }
        extras.check()?;
        let incoming = self.incoming.remove(&handle).ok_or(Error::UnknownRequest(handle))?;
        if let Some(call) = self.calls.get_mut(&incoming.call) {
            call.pending_incoming.retain(|h| *h != handle);
        }
        if let Some(notifier) = self.refer_notifiers.get_mut(&handle)
            && !notifier.answered(status)
        {
            self.refer_notifiers.remove(&handle);
        }
        let mut response = response_to(&incoming.request, status, None);
        extras.apply(&mut response.headers, &mut response.body);
        self.respond_on(now, &incoming.key, &incoming.request, response);
        Ok(())
    }
}
