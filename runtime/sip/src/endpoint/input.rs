//! Messages in: parsing failures answered statelessly, the UAS core checks every request passes before
//! anything else sees it (method, URI scheme, Require, body type, Accept), and the first matching step
//! (a retransmission to its transaction, an out-of-dialog request to the UAS core, an in-dialog one to
//! its call).

use super::*;

impl Endpoint {
    /// One complete message (a datagram or a stream frame) arrived on `flow`.
    pub fn handle_message(&mut self, now: Instant, flow: Flow, bytes: &[u8]) {
        match Message::parse(bytes) {
            Ok(Message::Request(mut request)) => {
                stamp_via(&mut request, flow);
                self.on_request(now, flow, request);
            }
            Ok(Message::Response(response)) => self.on_response(now, response),
            Err(error) => {
                let (status, warning) = (error.status(), error.kind.to_string());
                self.answer_unparsed(flow, error, status, &warning);
            }
        }
    }

    /// A stream message whose Content-Length takes it past [`MAX_MESSAGE_SIZE`](crate::message::MAX_MESSAGE_SIZE)
    /// bytes: only its header section `head` was read. A request is answered 513 Message Too Large (RFC 3261
    /// §21.5.14) from those fields; the caller then closes the connection, as the body cannot be skipped.
    pub fn handle_oversized(&mut self, flow: Flow, head: &[u8], size: usize) {
        // Without its body the message fails to parse (the body falls short of its Content-Length), but the
        // error keeps a request's fields, which is all an answer needs.
        let Err(error) = Message::parse(head) else {
            return;
        };
        let warning = ParseErrorKind::TooLarge(size).to_string();
        self.answer_unparsed(flow, error, 513, &warning);
    }

    /// Answers a request that could not be parsed with `status`, from whatever fields of it could be read,
    /// statelessly; a Warning carries `warning`. Responses, ACKs and requests without a Via get nothing.
    pub(super) fn answer_unparsed(&mut self, flow: Flow, error: ParseError, status: u16, warning: &str) {
        let (Some(headers), method) = (error.request_headers, error.method) else {
            return;
        };
        if method == Some(Method::Ack) || headers.get("Via").is_none() {
            return;
        }
        let mut request = Request::new(method.unwrap_or(Method::Options), Uri::parse("sip:invalid").expect("literal"));
        request.headers = headers;
        // A final response outside a dialog carries a To tag (RFC 3261 §8.2.6.2).
        let mut response = response_to(&request, status, Some(&self.ids.tag()));
        let warning = warning.replace(['"', '\\'], "'");
        response.headers.push("Warning", format!("399 callwright \"{warning}\""));
        self.add_common_headers(&mut response.headers);
        // A Via we cannot read gives no return address: answer the packet's source.
        let destination = if request.headers.top_via().is_ok() {
            stamp_via(&mut request, flow);
            response_flow(&request, flow)
        } else {
            flow
        };
        self.transmits.push_back(Transmit { flow: destination, bytes: response.to_bytes() });
    }

    pub(super) fn send_stateless(&mut self, request: &Request, flow: Flow, mut response: Response) {
        self.add_common_headers(&mut response.headers);
        let flow = response_flow(request, flow);
        self.transmits.push_back(Transmit { flow, bytes: response.to_bytes() });
    }

    pub(super) fn add_common_headers(&self, headers: &mut crate::message::Headers) {
        headers.push("Server", self.config.user_agent.clone());
    }

    pub(super) fn on_request(&mut self, now: Instant, flow: Flow, request: Request) {
        let Some(key) = ServerKey::for_request(&request) else {
            return;
        };
        if request.method == Method::Ack {
            self.on_ack(now, key, request);
            return;
        }
        if let Some((_, transaction)) = self.server_transactions.get_mut(&key) {
            transaction.on_retransmission(&mut self.transmits);
            return;
        }
        let to_tag = request.headers.tag("To");
        if request.method == Method::Cancel {
            self.on_cancel(now, key, flow, request);
            return;
        }
        if to_tag.is_none() {
            let merge_key = (
                request.headers.tag("From").unwrap_or_default(),
                request.headers.call_id().unwrap_or_default().to_string(),
                request.headers.cseq().map(|c| c.seq).unwrap_or_default(),
            );
            if self.merge_index.get(&merge_key).is_some_and(|other| *other != key) {
                let response = response_to(&request, 482, Some(&self.ids.tag()));
                return self.send_stateless(&request, flow, response);
            }
            self.merge_index.insert(merge_key.clone(), key.clone());
            self.merge_key_of.insert(key.clone(), merge_key);
        }
        if let Some(status) = self.precheck(&request) {
            return self.reject_stateless(now, key, flow, &request, status);
        }
        let transaction = ServerTransaction::new(request.method == Method::Invite, response_flow(&request, flow));
        let id = self.new_handle();
        self.server_transactions.insert(key.clone(), (id, transaction));
        self.server_by_id.insert(id, key.clone());
        match to_tag {
            Some(tag) => self.on_in_dialog_request(now, key, flow, request, tag),
            None => self.on_out_of_dialog_request(now, key, flow, request),
        }
    }

    /// Checks every request passes before it reaches a dialog (§8.2.1-§8.2.3): the status to refuse with.
    pub(super) fn precheck(&self, request: &Request) -> Option<u16> {
        match &request.method {
            Method::Extension(_) => return Some(501),
            Method::Register | Method::Publish | Method::Subscribe | Method::Prack => {
                return Some(405);
            }
            _ => {}
        }
        if !matches!(request.uri, Uri::Sip(_) | Uri::Tel(_)) {
            return Some(416);
        }
        if !unsupported_requirements(request).is_empty() && request.method != Method::Cancel {
            return Some(420);
        }
        if request.method == Method::Invite && !request.body.is_empty() {
            let content_type = request.headers.get("Content-Type").unwrap_or("application/sdp");
            let media_type = content_type.split(';').next().unwrap_or_default().trim();
            let accepted = ACCEPTED_BODIES.split(", ").any(|t| media_type.eq_ignore_ascii_case(t));
            if !accepted {
                return Some(415);
            }
        }
        if request.method == Method::Invite {
            let accepts = request
                .headers
                .get_all("Accept")
                .flat_map(|v| v.split(','))
                .map(|t| t.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
            let accepts: Vec<String> = accepts.filter(|t| !t.is_empty()).collect();
            let sdp_ok = accepts.is_empty()
                || accepts.iter().any(|t| matches!(t.as_str(), "application/sdp" | "application/*" | "*/*"));
            if !sdp_ok {
                return Some(406);
            }
        }
        None
    }

    pub(super) fn reject_stateless(
        &mut self,
        now: Instant,
        key: ServerKey,
        flow: Flow,
        request: &Request,
        status: u16,
    ) {
        let mut response = response_to(request, status, Some(&self.ids.tag()));
        match status {
            405 | 501 => response.headers.push("Allow", ALLOWED_METHODS),
            415 => response.headers.push("Accept", ACCEPTED_BODIES),
            420 => response.headers.push("Unsupported", unsupported_requirements(request).join(", ")),
            _ => {}
        }
        // Answered through a transaction so retransmissions get the same answer.
        let transaction = ServerTransaction::new(request.method == Method::Invite, response_flow(request, flow));
        let id = self.new_handle();
        self.server_transactions.insert(key.clone(), (id, transaction));
        self.server_by_id.insert(id, key.clone());
        self.respond_on(now, &key, request, response);
    }

    pub(super) fn respond_on(&mut self, now: Instant, key: &ServerKey, request: &Request, mut response: Response) {
        self.add_common_headers(&mut response.headers);
        let _ = request;
        let Some((id, transaction)) = self.server_transactions.get_mut(key) else {
            return;
        };
        let id = *id;
        transaction.respond(now, &self.config.timers, response.status, response.to_bytes(), &mut self.transmits);
        let deadline = transaction.next_deadline();
        self.schedule(TimerKey::Server(id), deadline);
    }

    pub(super) fn on_out_of_dialog_request(&mut self, now: Instant, key: ServerKey, flow: Flow, request: Request) {
        match request.method {
            Method::Invite => self.on_new_invite(now, key, flow, request),
            Method::Options => {
                let mut response = response_to(&request, 200, Some(&self.ids.tag()));
                response.headers.push("Allow", ALLOWED_METHODS);
                response.headers.push("Accept", ACCEPTED_BODIES);
                response.headers.push("Supported", SUPPORTED_EXTENSIONS.join(", "));
                self.respond_on(now, &key, &request, response);
            }
            // Pager-mode messages have no app to go to (yet).
            Method::Message => {
                let response = response_to(&request, 404, Some(&self.ids.tag()));
                self.respond_on(now, &key, &request, response);
            }
            // Dialog-only methods outside a dialog.
            _ => {
                let response = response_to(&request, 481, Some(&self.ids.tag()));
                self.respond_on(now, &key, &request, response);
            }
        }
    }
}
