//! The UAC side (RFC 3261 §13.2, §17.1): responses to what we sent, matched to their client transaction
//! and owner; the outbound INVITE and its CANCEL; a 2xx that crossed our CANCEL is ACKed and sent BYE;
//! digest challenges retried once with credentials.

use super::*;

impl Endpoint {
    pub(super) fn on_response(&mut self, now: Instant, response: Response) {
        let Some(key) = ClientKey::for_response(&response) else {
            return;
        };
        let timers = self.config.timers;
        let Some((id, transaction, owner)) = self.client_transactions.get_mut(&key) else {
            return self.on_stray_response(now, response);
        };
        let pass_up = transaction.on_response(now, &timers, &response, &mut self.transmits);
        let (id, owner, deadline) = (*id, *owner, transaction.next_deadline());
        let request = transaction.request().clone();
        self.schedule(TimerKey::Client(id), deadline);
        if !pass_up {
            return;
        }
        match owner {
            ClientOwner::Invite(handle) => self.on_invite_response(now, handle, &request, response),
            ClientOwner::Bye(handle) => {
                if response.status >= 200 {
                    self.end_call(now, handle, EndReason::LocalHangup);
                }
            }
            ClientOwner::Cancel(_) => {}
            ClientOwner::InDialog(handle, request_handle) => {
                self.on_in_dialog_response(now, handle, request_handle, &request, response)
            }
        }
    }

    /// A 2xx retransmission after the INVITE transaction is gone still needs its ACK (§13.2.2.4).
    pub(super) fn on_stray_response(&mut self, _now: Instant, response: Response) {
        if !response.is_success() || response.headers.cseq().map(|c| c.method) != Ok(Method::Invite) {
            return;
        }
        let Some(call_id) = response.headers.call_id() else {
            return;
        };
        let Some(from_tag) = response.headers.tag("From") else {
            return;
        };
        let Some(handle) = self.dialog_index.get(&(call_id.to_string(), from_tag)).copied() else {
            return;
        };
        let call = &self.calls[&handle];
        if let Some(ack) = &call.ack {
            self.transmits.push_back(Transmit { flow: call.flow, bytes: ack.clone() });
        }
    }

    pub(super) fn on_invite_response(
        &mut self,
        now: Instant,
        handle: CallHandle,
        invite: &Request,
        response: Response,
    ) {
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        let may_retry_auth = call.credentials.is_some() && call.auth_attempts < 2 && call.state == CallState::Calling;
        match response.status {
            100 => {}
            101..=199 => {
                if std::mem::take(&mut call.cancel_when_provisional) {
                    self.send_cancel(now, handle);
                }
                self.events.push_back(Event::CallProgress { call: handle, response });
            }
            200..=299 => self.on_invite_2xx(now, handle, invite, response),
            401 | 407 if may_retry_auth => {
                call.auth_attempts += 1;
                let credentials = call.credentials.clone();
                match self.authorized_retry(invite, &response, credentials.as_ref()) {
                    Some(retry) => {
                        let call = self.calls.get_mut(&handle).expect("call exists");
                        call.invite = retry.clone();
                        let flow = call.flow;
                        self.start_client(now, flow, retry, ClientOwner::Invite(handle));
                    }
                    None => self.end_call(now, handle, EndReason::Failed(response.status)),
                }
            }
            status => {
                if call.awaits_invite_final() {
                    self.end_call(now, handle, EndReason::Failed(status));
                }
            }
        }
    }

    pub(super) fn on_invite_2xx(&mut self, now: Instant, handle: CallHandle, invite: &Request, response: Response) {
        let local_contact = self.local_contact(self.calls[&handle].flow);
        let call = self.calls.get_mut(&handle).expect("call exists");
        if let Some(ack) = &call.ack {
            // A retransmitted 2xx: ACK again, nothing else (§13.2.2.4).
            self.transmits.push_back(Transmit { flow: call.flow, bytes: ack.clone() });
            return;
        }
        let Some(dialog) = Dialog::as_uac(invite, &response, local_contact) else {
            return;
        };
        let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
        let mut ack = dialog.request_with_seq(Method::Ack, seq);
        let current_flow = call.flow;
        let flow = self.flow_for_dialog(&dialog, current_flow);
        let branch = self.ids.branch();
        ack.headers.push_front("Via", self.via_for(flow, &branch));
        let ack_bytes = ack.to_bytes();
        self.transmits.push_back(Transmit { flow, bytes: ack_bytes.clone() });
        let call = self.calls.get_mut(&handle).expect("call exists");
        call.ack = Some(ack_bytes);
        call.flow = flow;
        call.dialog = Some(dialog);
        let cancelled = call.cancel_when_provisional || call.state == CallState::Terminating;
        call.state = CallState::Confirmed;
        self.events.push_back(Event::CallAnswered { call: handle, response });
        if cancelled {
            // Our CANCEL lost the race with the 2xx: hang up the call it created.
            self.send_bye(now, handle);
        }
    }

    /// The request again with credentials answering the challenge in `response` and CSeq+1 (the new branch
    /// comes with its new transaction).
    pub(super) fn authorized_retry(
        &mut self,
        request: &Request,
        response: &Response,
        credentials: Option<&Credentials>,
    ) -> Option<Request> {
        let credentials = credentials?;
        let (challenge_header, answer_header) = if response.status == 407 {
            ("Proxy-Authenticate", "Proxy-Authorization")
        } else {
            ("WWW-Authenticate", "Authorization")
        };
        let challenge = DigestChallenge::best(response.headers.get_all(challenge_header)).ok()?;
        let mut retry = request.clone();
        let cseq = request.headers.cseq().ok()?;
        retry.headers.set("CSeq", format!("{} {}", cseq.seq + 1, cseq.method));
        let uri = retry.uri.to_string();
        let cnonce = format!("{:016x}", self.ids.next_u64());
        let digest = DigestRequest {
            method: request.method.as_str(),
            uri: &uri,
            body: &request.body,
            cnonce: &cnonce,
            nonce_count: 1,
        };
        let value = authorization(&challenge, credentials, &digest).ok()?;
        retry.headers.remove(answer_header);
        retry.headers.push(answer_header, value);
        Some(retry)
    }

    pub(super) fn send_cancel(&mut self, now: Instant, handle: CallHandle) {
        let Some(call) = self.calls.get(&handle) else {
            return;
        };
        let invite = call.invite.clone();
        let mut cancel = Request::new(Method::Cancel, invite.uri.clone());
        for name in ["Via", "Route"] {
            for value in invite.headers.get_all(name).take(if name == "Via" { 1 } else { usize::MAX }) {
                cancel.headers.push(name, value);
            }
        }
        cancel.headers.push("Max-Forwards", "70");
        for name in ["From", "To", "Call-ID"] {
            if let Some(value) = invite.headers.get(name) {
                cancel.headers.push(name, value);
            }
        }
        let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
        cancel.headers.push("CSeq", format!("{seq} CANCEL"));
        let flow = call.flow;
        let timers = self.config.timers;
        let transaction = ClientTransaction::start(now, &timers, flow, cancel, &mut self.transmits);
        let id = self.new_handle();
        let Some(branch) = invite.headers.top_via().ok().and_then(|v| v.branch().map(str::to_string)) else {
            return;
        };
        let key = ClientKey { branch, method: Method::Cancel };
        let deadline = transaction.next_deadline();
        self.client_transactions.insert(key.clone(), (id, transaction, ClientOwner::Cancel(handle)));
        self.client_by_id.insert(id, key);
        self.schedule(TimerKey::Client(id), deadline);
    }

    /// Places an outbound call.
    pub fn invite(&mut self, now: Instant, call: OutboundCall) -> Result<CallHandle, Error> {
        call.extras.check()?;
        let flow = self.flow_to(call.transport, call.destination)?;
        let local_tag = self.ids.tag();
        let host = self.advertised_host(flow).to_string();
        let call_id = self.ids.call_id(host.trim_matches(['[', ']']));
        let mut from = call.from.clone();
        from.params.set("tag", Some(&local_tag));
        let to = call.to.clone().unwrap_or_else(|| NameAddr::new(call.target.clone()));
        let mut invite = Request::new(Method::Invite, call.target.clone());
        invite.headers.push("Max-Forwards", "70");
        invite.headers.push("From", from.to_string());
        invite.headers.push("To", to.to_string());
        invite.headers.push("Call-ID", call_id.clone());
        invite.headers.push("CSeq", format!("{} INVITE", self.ids.initial_cseq()));
        invite.headers.push("Contact", self.local_contact(flow).to_string());
        invite.headers.push("Allow", ALLOWED_METHODS);
        invite.headers.push("Supported", SUPPORTED_EXTENSIONS.join(", "));
        invite.headers.push("User-Agent", self.config.user_agent.clone());
        call.extras.apply(&mut invite.headers, &mut invite.body);
        let handle = CallHandle(self.new_handle());
        self.dialog_index.insert((call_id, local_tag.clone()), handle);
        self.calls.insert(handle, Call::outbound(invite.clone(), flow, local_tag, call.credentials));
        self.start_client(now, flow, invite, ClientOwner::Invite(handle));
        Ok(handle)
    }

    /// Starts a client transaction for a request we originate: a fresh Via with a new branch, every time
    /// (an authenticated retry is a new transaction, §22.2).
    pub(super) fn start_client(&mut self, now: Instant, flow: Flow, mut request: Request, owner: ClientOwner) {
        let branch = self.ids.branch();
        request.headers.remove("Via");
        request.headers.push_front("Via", self.via_for(flow, &branch));
        if request.headers.get("User-Agent").is_none() && request.method != Method::Ack {
            request.headers.push("User-Agent", self.config.user_agent.clone());
        }
        let key = ClientKey { branch, method: request.method.clone() };
        let timers = self.config.timers;
        let transaction = ClientTransaction::start(now, &timers, flow, request, &mut self.transmits);
        let id = self.new_handle();
        let deadline = transaction.next_deadline();
        if let ClientOwner::Invite(handle) = owner
            && let Some(call) = self.calls.get_mut(&handle)
        {
            call.client_key = Some(key.clone());
            call.invite = transaction.request().clone();
        }
        self.client_transactions.insert(key.clone(), (id, transaction, owner));
        self.client_by_id.insert(id, key);
        self.schedule(TimerKey::Client(id), deadline);
    }
}
