//! Host glue for the `callwright:voice` imports: look the resource up, call the SIP driver, map the result.

use std::time::Duration;

use callwright_sip::message::Method;
use callwright_sip::{CallHandle, EndReason, Event, Extras, InDialogRequest, IncomingRequestHandle};
use wasmtime::Result;
use wasmtime::component::Resource;

use crate::bindings::callwright::voice::{call, clock, log, types, variables};
use crate::bindings::{Body, CallError, CallEvent, CallInfo, Header, IncomingRequest, SipResponse, WitEndReason};
use crate::call_state::{CallResource, CallState, Leg, call_error};

/// Methods `sip-request` may send; INVITE, ACK, CANCEL, BYE and REFER have their own operations.
const GUEST_REQUEST_METHODS: [&str; 5] = ["INFO", "MESSAGE", "NOTIFY", "OPTIONS", "UPDATE"];

fn extras(headers: Vec<Header>, body: Option<Body>) -> Extras {
    let mut extras = match body {
        Some(body) => Extras::body(&body.content_type, body.data),
        None => Extras::default(),
    };
    extras.headers = headers.into_iter().map(|h| (h.name, h.value)).collect();
    extras
}

pub(crate) fn body_of(headers: &callwright_sip::message::Headers, data: &[u8]) -> Option<Body> {
    (!data.is_empty()).then(|| Body {
        content_type: headers.get("Content-Type").unwrap_or("application/octet-stream").to_string(),
        data: data.to_vec(),
    })
}

pub(crate) fn headers_of(headers: &callwright_sip::message::Headers) -> Vec<Header> {
    headers.iter().map(|h| Header { name: h.name.clone(), value: h.value.clone() }).collect()
}

fn wit_end_reason(reason: &EndReason) -> WitEndReason {
    match reason {
        EndReason::RemoteHangup => WitEndReason::RemoteHangup,
        EndReason::LocalHangup => WitEndReason::LocalHangup,
        EndReason::Cancelled => WitEndReason::Cancelled,
        EndReason::AckTimeout => WitEndReason::NoAck,
        EndReason::Rejected(status) => WitEndReason::Rejected(*status),
        EndReason::Failed(status) => WitEndReason::Failed(*status),
    }
}

impl CallState {
    fn handle_of(&self, call: &Resource<CallResource>) -> Result<CallHandle> {
        Ok(self.table.get(call)?.handle)
    }

    fn leg(&mut self, call: &Resource<CallResource>) -> Result<(CallHandle, &mut Leg)> {
        let handle = self.handle_of(call)?;
        let leg = self.legs.get_mut(&handle).ok_or_else(|| wasmtime::Error::msg("call resource without a leg"))?;
        Ok((handle, leg))
    }

    /// Turns a SIP event into what the guest sees, updating the leg; `None` for events the guest does not
    /// see (responses to other requests, events of the UAC side).
    fn to_guest_event(leg: &mut Leg, event: Event) -> Option<CallEvent> {
        match event {
            Event::CallEnded { reason, .. } => {
                leg.ended = Some(reason.clone());
                Some(CallEvent::Ended(wit_end_reason(&reason)))
            }
            Event::CallConfirmed { .. } => Some(CallEvent::Confirmed),
            Event::Request { handle, request, .. } => {
                leg.unanswered.insert(handle);
                Some(CallEvent::Request(IncomingRequest {
                    id: handle.0,
                    method: request.method.to_string(),
                    headers: headers_of(&request.headers),
                    body: body_of(&request.headers, &request.body),
                }))
            }
            _ => None,
        }
    }
}

impl types::Host for CallState {}

impl call::Host for CallState {}

impl call::HostCall for CallState {
    async fn info(&mut self, call: Resource<CallResource>) -> Result<CallInfo> {
        Ok(self.leg(&call)?.1.info.clone())
    }

    async fn ring(
        &mut self,
        call: Resource<CallResource>,
        status: u16,
        headers: Vec<Header>,
        body: Option<Body>,
    ) -> Result<Result<(), CallError>> {
        let handle = self.handle_of(&call)?;
        match self.sip.ring(handle, status, extras(headers, body)).await {
            Ok(()) => Ok(Ok(())),
            Err(error) => call_error(error).map(Err),
        }
    }

    async fn answer(
        &mut self,
        call: Resource<CallResource>,
        headers: Vec<Header>,
        body: Option<Body>,
    ) -> Result<Result<(), CallError>> {
        let (handle, leg) = self.leg(&call)?;
        // No body from the guest: the host answers the caller's offer itself (see `sdp`).
        let body = body.or_else(|| {
            let offer = leg.info.body.as_ref().filter(|b| b.content_type.eq_ignore_ascii_case("application/sdp"))?;
            let answer = crate::sdp::answer(&offer.data, leg.local_ip)?;
            Some(Body { content_type: "application/sdp".into(), data: answer })
        });
        match self.sip.answer(handle, extras(headers, body)).await {
            Ok(()) => {
                self.leg(&call)?.1.answered = true;
                Ok(Ok(()))
            }
            Err(error) => call_error(error).map(Err),
        }
    }

    async fn reject(
        &mut self,
        call: Resource<CallResource>,
        status: u16,
        reason: Option<String>,
        headers: Vec<Header>,
    ) -> Result<Result<(), CallError>> {
        let handle = self.handle_of(&call)?;
        match self.sip.reject(handle, status, reason, extras(headers, None)).await {
            Ok(()) => Ok(Ok(())),
            Err(error) => call_error(error).map(Err),
        }
    }

    async fn hangup(&mut self, call: Resource<CallResource>) -> Result<Result<(), CallError>> {
        let (handle, leg) = self.leg(&call)?;
        if leg.ended.is_some() {
            return Ok(Ok(()));
        }
        match self.sip.hangup(handle).await {
            Ok(()) => Ok(Ok(())),
            Err(error) => call_error(error).map(Err),
        }
    }

    async fn sip_request(
        &mut self,
        call: Resource<CallResource>,
        method: String,
        headers: Vec<Header>,
        body: Option<Body>,
    ) -> Result<Result<SipResponse, CallError>> {
        if !GUEST_REQUEST_METHODS.contains(&method.as_str()) {
            let why = format!("sip-request sends {}, not {method}", GUEST_REQUEST_METHODS.join(", "));
            return Ok(Err(CallError::InvalidArgument(why)));
        }
        let (handle, _) = self.leg(&call)?;
        let request =
            InDialogRequest { method: Method::from_token(&method), extras: extras(headers, body), credentials: None };
        let sent = match self.sip.send_request(handle, request).await {
            Ok(sent) => sent,
            Err(error) => return call_error(error).map(Err),
        };
        let (_, leg) = self.leg(&call)?;
        // The transaction layer guarantees a final response (a local 408 at worst), so this wait ends.
        loop {
            let Some(event) = leg.events.recv().await else { return Ok(Err(CallError::CallEnded)) };
            match event {
                Event::Response { request, response, .. } if request == sent => {
                    return Ok(Ok(SipResponse {
                        status: response.status,
                        reason: response.reason.clone(),
                        headers: headers_of(&response.headers),
                        body: body_of(&response.headers, &response.body),
                    }));
                }
                other => leg.backlog.push_back(other),
            }
        }
    }

    async fn respond(
        &mut self,
        call: Resource<CallResource>,
        request_id: u64,
        status: u16,
        headers: Vec<Header>,
        body: Option<Body>,
    ) -> Result<Result<(), CallError>> {
        let handle = IncomingRequestHandle(request_id);
        let (_, leg) = self.leg(&call)?;
        if !leg.unanswered.remove(&handle) {
            return Ok(Err(CallError::InvalidArgument(format!("no unanswered request {request_id} on this call"))));
        }
        match self.sip.respond(handle, status, extras(headers, body)).await {
            Ok(()) => Ok(Ok(())),
            Err(error) => call_error(error).map(Err),
        }
    }

    async fn next_event(&mut self, call: Resource<CallResource>, timeout_ms: Option<u32>) -> Result<Option<CallEvent>> {
        let (_, leg) = self.leg(&call)?;
        let deadline = timeout_ms.map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms.into()));
        loop {
            let event = match leg.backlog.pop_front() {
                Some(event) => event,
                // An ended call keeps answering `ended`, so a guest looping on events cannot hang.
                None if leg.ended.is_some() => {
                    return Ok(leg.ended.as_ref().map(|r| CallEvent::Ended(wit_end_reason(r))));
                }
                None => {
                    let received = match deadline {
                        Some(at) => match tokio::time::timeout_at(at, leg.events.recv()).await {
                            Ok(received) => received,
                            Err(_) => return Ok(None),
                        },
                        None => leg.events.recv().await,
                    };
                    match received {
                        Some(event) => event,
                        // The router let go of the call: it is over.
                        None => Event::CallEnded { call: CallHandle(0), reason: EndReason::LocalHangup },
                    }
                }
            };
            if let Some(event) = Self::to_guest_event(leg, event) {
                return Ok(Some(event));
            }
        }
    }

    async fn drop(&mut self, call: Resource<CallResource>) -> Result<()> {
        self.table.delete(call)?;
        Ok(())
    }
}

impl variables::Host for CallState {
    async fn get(&mut self, name: String) -> Result<Option<String>> {
        Ok(self.variables.lock().map_err(poisoned)?.get(&name).cloned())
    }

    async fn set(&mut self, name: String, value: String) -> Result<()> {
        self.variables.lock().map_err(poisoned)?.insert(name, value);
        Ok(())
    }

    async fn remove(&mut self, name: String) -> Result<()> {
        self.variables.lock().map_err(poisoned)?.remove(&name);
        Ok(())
    }

    async fn entries(&mut self) -> Result<Vec<(String, String)>> {
        Ok(self.variables.lock().map_err(poisoned)?.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

fn poisoned<T>(_: T) -> wasmtime::Error {
    wasmtime::Error::msg("call variables lock poisoned")
}

/// The longest message a guest may log in one call; longer ones are cut.
const MAX_LOG_MESSAGE: usize = 4096;

impl log::Host for CallState {
    async fn log(&mut self, level: log::Level, message: String) -> Result<()> {
        let mut message = message;
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let call = self.label.as_str();
        match level {
            log::Level::Trace => tracing::trace!(target: "guest", call, "{message}"),
            log::Level::Debug => tracing::debug!(target: "guest", call, "{message}"),
            log::Level::Info => tracing::info!(target: "guest", call, "{message}"),
            log::Level::Warn => tracing::warn!(target: "guest", call, "{message}"),
            log::Level::Error => tracing::error!(target: "guest", call, "{message}"),
        }
        Ok(())
    }
}

impl clock::Host for CallState {
    async fn sleep(&mut self, ms: u32) -> Result<()> {
        tokio::time::sleep(Duration::from_millis(ms.into())).await;
        Ok(())
    }

    async fn now_ms(&mut self) -> Result<u64> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Ok(now.as_millis() as u64)
    }
}
