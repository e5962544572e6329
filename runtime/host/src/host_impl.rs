//! Host glue for the `callwright:voice` imports: look the resource up, call the SIP driver, map the result.

use std::task::Poll;
use std::time::Duration;

use callwright_sip::message::Method;
use callwright_sip::{CallHandle, EndReason, Event, Extras, InDialogRequest, IncomingRequestHandle};
use wasmtime::Result;
use wasmtime::component::Resource;

use crate::bindings::callwright::voice::{call, clock, dispatch, hooks, log, types, variables};
use crate::bindings::{
    Body, CallError, CallEvent, CallInfo, CallUpdate, DialError, DialRequest, Direction, Header, Hook, HookError,
    HookResponse, InboundRefer, IncomingRequest, ReferEvent, ReferRequest, SipResponse, VerbError, VerbInfo,
    WitEndReason,
};
use crate::call_state::{CallResource, CallState, Leg, PendingRefer, ReferResource, call_error, guest_result};
use crate::outbound::{self, OutboundStep};
use crate::refer::{self, DEFAULT_NOTIFY_TIMEOUT, ReferProgress};

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

/// How a leg ended, as the guest sees it: an outbound call the host cancelled for want of an answer
/// failed with 408.
fn leg_end_reason(leg: &Leg) -> Option<WitEndReason> {
    let reason = leg.ended.as_ref()?;
    Some(if leg.timed_out { WitEndReason::Failed(408) } else { wit_end_reason(reason) })
}

fn sip_response(response: &callwright_sip::message::Response) -> SipResponse {
    SipResponse {
        status: response.status,
        reason: response.reason.clone(),
        headers: headers_of(&response.headers),
        body: body_of(&response.headers, &response.body),
    }
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

    /// Turns a SIP event into what `wait` reports, updating the leg; `None` for events the guest does not
    /// see (responses to other requests, a 100 Trying).
    fn to_guest_update(leg: &mut Leg, event: Event) -> Option<CallUpdate> {
        match event {
            Event::CallProgress { response, .. } if response.status > 100 => {
                Some(CallUpdate::Progress(sip_response(&response)))
            }
            Event::CallAnswered { response, .. } => {
                leg.answered = true;
                leg.ring_deadline = None;
                if let Some(call_id) = response.headers.call_id() {
                    leg.info.sip_call_id = call_id.to_string();
                }
                // The far end's session description, as for an inbound call (its offer).
                leg.info.body = body_of(&response.headers, &response.body);
                Some(CallUpdate::Answered(sip_response(&response)))
            }
            Event::CallEnded { reason, .. } => {
                leg.ended = Some(reason);
                leg_end_reason(leg).map(|reason| CallUpdate::Event(CallEvent::Ended(reason)))
            }
            other => Self::to_guest_event(leg, other).map(CallUpdate::Event),
        }
    }

    /// The requests of the far end as the guest sees them, updating the leg; `None` for the rest.
    fn to_guest_event(leg: &mut Leg, event: Event) -> Option<CallEvent> {
        match event {
            Event::CallConfirmed { .. } => Some(CallEvent::Confirmed),
            Event::Request { handle, request, .. } if request.method == Method::Refer => {
                leg.unanswered.insert(handle);
                let refer_to = request.headers.get("Refer-To").unwrap_or_default().to_string();
                let (target, replaces) = refer::split_refer_to(&refer_to).unwrap_or((refer_to.clone(), None));
                let referred_by = request.headers.get("Referred-By").map(str::to_string);
                let pending = PendingRefer {
                    refer_to: refer_to.clone(),
                    referred_by: referred_by.clone(),
                    cseq: request.headers.cseq().map(|c| c.seq).unwrap_or_default(),
                    needs_event_id: leg.inbound_refer_count > 0,
                };
                leg.inbound_refer_count += 1;
                leg.inbound_refers.insert(handle, pending);
                leg.refers_delivered.push(handle);
                Some(CallEvent::Refer(InboundRefer {
                    id: handle.0,
                    refer_to: target,
                    referred_by,
                    replaces,
                    headers: headers_of(&request.headers),
                }))
            }
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

impl call::Host for CallState {
    async fn dial(&mut self, request: DialRequest) -> Result<Result<Resource<CallResource>, DialError>> {
        let handle = match self.start_outbound(request, Extras::default(), self.local_ip()).await? {
            Ok(handle) => handle,
            Err(error) => return Ok(Err(error)),
        };
        // The guest cannot act while it waits here: when its caller leaves, the call placed for it goes.
        let callers: Vec<CallHandle> = self
            .legs
            .iter()
            .filter(|(other, leg)| **other != handle && leg.info.direction == Direction::Inbound && leg.ended.is_none())
            .map(|(other, _)| *other)
            .collect();
        loop {
            match self.wait_outbound(handle, &callers).await? {
                OutboundStep::Progress(..) => {}
                OutboundStep::Answered(..) => return Ok(Ok(self.table.push(CallResource { handle })?)),
                OutboundStep::Failed(status) => return Ok(Err(DialError::Failed(status))),
                OutboundStep::TimedOut => return Ok(Err(DialError::Timeout)),
                OutboundStep::Abandoned => {
                    return Ok(Err(DialError::Other("the caller hung up before the call was answered".into())));
                }
            }
        }
    }

    async fn start_dial(&mut self, request: DialRequest) -> Result<Result<Resource<CallResource>, DialError>> {
        Ok(match self.start_outbound(request, Extras::default(), self.local_ip()).await? {
            Ok(handle) => Ok(self.table.push(CallResource { handle })?),
            Err(error) => Err(error),
        })
    }

    async fn wait(
        &mut self,
        calls: Vec<Resource<CallResource>>,
        timeout_ms: Option<u32>,
    ) -> Result<Option<(u32, CallUpdate)>> {
        if calls.is_empty() {
            return Ok(None);
        }
        let mut handles = Vec::with_capacity(calls.len());
        for call in &calls {
            self.decline_unhandled_refers(call).await?;
            handles.push(self.handle_of(call)?);
        }
        let deadline = timeout_ms.map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms.into()));
        Ok(self.wait_any(&handles, deadline).await?.map(|(index, update)| (index as u32, update)))
    }
}

impl call::HostRefer for CallState {
    async fn next_event(&mut self, refer: Resource<ReferResource>) -> Result<ReferEvent> {
        let ReferResource { call, request } = *self.table.get(&refer)?;
        loop {
            let leg = self.legs.get_mut(&call).ok_or_else(|| wasmtime::Error::msg("refer without a leg"))?;
            let progress =
                leg.refers.get_mut(&request).ok_or_else(|| wasmtime::Error::msg("refer without progress"))?;
            progress.on_time(tokio::time::Instant::now());
            if let Some(event) = progress.next_event() {
                return Ok(event);
            }
            let deadline = progress.deadline();
            // Waits end: a deadline, the final response (guaranteed by the transaction layer), or the call's end.
            leg.receive(deadline).await;
        }
    }

    async fn drop(&mut self, refer: Resource<ReferResource>) -> Result<()> {
        let ReferResource { call, request } = self.table.delete(refer)?;
        if let Some(leg) = self.legs.get_mut(&call) {
            leg.refers.remove(&request);
        }
        Ok(())
    }
}

impl CallState {
    /// Answers 501 to inbound REFERs the guest saw and left unanswered: it has no handler for them.
    async fn decline_unhandled_refers(&mut self, call: &Resource<CallResource>) -> Result<()> {
        let (_, leg) = self.leg(call)?;
        let delivered = std::mem::take(&mut leg.refers_delivered);
        let unhandled: Vec<IncomingRequestHandle> =
            delivered.into_iter().filter(|r| leg.unanswered.remove(r)).collect();
        for request in &unhandled {
            leg.inbound_refers.remove(request);
        }
        for request in unhandled {
            tracing::info!(call = %self.label, "REFER left unanswered by the guest: 501");
            let _ = self.sip.respond(request, 501, Extras::default()).await;
        }
        Ok(())
    }

    /// Sends the referrer a NOTIFY with the sipfrag status line of our call to the transfer target.
    async fn notify_referrer(
        &mut self,
        call: CallHandle,
        refer: &PendingRefer,
        status: u16,
        reason: &str,
        last: bool,
    ) -> Result<()> {
        let event = if refer.needs_event_id { format!("refer;id={}", refer.cseq) } else { "refer".into() };
        let state = if last { "terminated;reason=noresource" } else { "active;expires=60" };
        let extras = Extras::body("message/sipfrag;version=2.0", format!("SIP/2.0 {status} {reason}\r\n"))
            .header("Event", &event)
            .header("Subscription-State", state);
        let notify = InDialogRequest { method: Method::Notify, extras, credentials: None };
        match self.sip.send_request(call, notify).await {
            Ok(sent) => {
                if let Some(leg) = self.legs.get_mut(&call) {
                    leg.unawaited.insert(sent);
                }
            }
            // The referrer may have hung up already; the transfer goes on regardless.
            Err(error) => tracing::info!(call = %self.label, %error, "NOTIFY to the referrer not sent"),
        }
        Ok(())
    }

    /// The Refer-To target of an attended transfer: `target` (or the other call's remote party) with the
    /// Replaces value of the other call's dialog.
    async fn replaces_target(&mut self, other_id: &str, target: &str) -> Result<Result<String, CallError>> {
        let Some((&other, other_leg)) = self.legs.iter().find(|(_, leg)| leg.info.id == other_id) else {
            return Ok(Err(CallError::InvalidArgument(format!("replaces: this guest holds no call {other_id:?}"))));
        };
        let remote_host = remote_host(&other_leg.info);
        let dialog = match self.sip.dialog(other).await {
            Ok(Some(dialog)) => dialog,
            Ok(None) => return Ok(Err(CallError::InvalidState(format!("call {other_id} is not answered")))),
            Err(error) => return call_error(error).map(Err),
        };
        let uri = if target.trim().is_empty() {
            dialog.remote.uri.to_string()
        } else {
            match refer::refer_to_uri(target, &remote_host) {
                Ok(uri) => uri,
                Err(why) => return Ok(Err(CallError::InvalidArgument(why))),
            }
        };
        Ok(Ok(refer::with_replaces(&uri, &refer::replaces_value(&dialog))))
    }

    /// The address to place calls from: the one the guest's first call came in on (the listener that
    /// matches its address family is chosen in [`outbound::plan`]).
    fn local_ip(&self) -> std::net::IpAddr {
        let first = self.legs.values().min_by_key(|leg| leg.info.direction == Direction::Outbound);
        first.map_or(std::net::Ipv4Addr::LOCALHOST.into(), |leg| leg.local_ip)
    }

    /// Starts an outbound call and adds its leg, to be cancelled if not answered by the request's timeout.
    async fn start_outbound(
        &mut self,
        request: DialRequest,
        mut extras: Extras,
        local_ip: std::net::IpAddr,
    ) -> Result<Result<CallHandle, DialError>> {
        let plan = match outbound::plan(&request, self.sip.local_addrs(), local_ip).await {
            Ok(plan) => plan,
            Err(why) => return Ok(Err(DialError::InvalidArgument(why))),
        };
        extras.headers.extend(request.headers.iter().map(|h| (h.name.clone(), h.value.clone())));
        let body = request.body.clone().unwrap_or_else(|| Body {
            content_type: "application/sdp".into(),
            data: crate::sdp::offer(plan.local.ip()),
        });
        extras.content_type = Some(body.content_type.clone());
        extras.body = body.data.clone();
        let info = outbound::call_info(&request, &plan, Some(body));
        let invite = outbound::invite(plan, request.credentials.as_ref(), extras);
        let (sender, events) = tokio::sync::mpsc::channel(crate::runtime::EVENTS_PER_CALL);
        let registrar = self.registrar.clone();
        let on_created = Box::new(move |handle| {
            let _ = registrar.send((handle, sender));
        });
        let handle = match self.sip.invite_with(invite, on_created).await {
            Ok(handle) => handle,
            Err(error) => return Ok(Err(DialError::Other(error.to_string()))),
        };
        let mut info = info;
        info.id = handle.to_string();
        self.add_leg(handle, info, local_ip, events);
        let timeout = request.timeout_ms.map_or(outbound::DEFAULT_TIMEOUT, |ms| Duration::from_millis(ms.into()));
        if let Some(leg) = self.legs.get_mut(&handle) {
            leg.ring_deadline = Some(tokio::time::Instant::now() + timeout);
        }
        Ok(Ok(handle))
    }

    /// Waits for the next step of an outbound call. Past its ring deadline it is cancelled; so it is when
    /// one of `callers` (the calls it was placed for) ends first.
    async fn wait_outbound(&mut self, handle: CallHandle, callers: &[CallHandle]) -> Result<OutboundStep> {
        let listened: Vec<CallHandle> = std::iter::once(handle).chain(callers.iter().copied()).collect();
        loop {
            let leg = self.legs.get_mut(&handle).ok_or_else(|| wasmtime::Error::msg("dial without a leg"))?;
            while let Some(event) = leg.backlog.pop_front() {
                match Self::to_guest_update(leg, event) {
                    Some(CallUpdate::Progress(response)) => {
                        return Ok(OutboundStep::Progress(response.status, response.reason));
                    }
                    Some(CallUpdate::Answered(response)) => {
                        return Ok(OutboundStep::Answered(response.status, response.reason));
                    }
                    _ => {}
                }
            }
            if leg.ended.is_some() {
                return Ok(match leg_end_reason(leg) {
                    _ if leg.timed_out => OutboundStep::TimedOut,
                    Some(WitEndReason::Failed(status) | WitEndReason::Rejected(status)) => OutboundStep::Failed(status),
                    _ => OutboundStep::Failed(487),
                });
            }
            if callers.iter().any(|caller| self.legs.get(caller).is_none_or(|leg| leg.ended.is_some())) {
                // CANCEL; the call's end (or a 2xx that crossed the CANCEL, then BYE) follows.
                let _ = self.sip.hangup(handle).await;
                return Ok(OutboundStep::Abandoned);
            }
            let wake = self.cancel_unanswered(&[handle]).await;
            self.receive_any(&listened, wake).await;
        }
    }

    /// Waits until one of `handles` has an update for the guest, or `deadline`; see `call.wait` in WIT.
    async fn wait_any(
        &mut self,
        handles: &[CallHandle],
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Option<(usize, CallUpdate)>> {
        loop {
            for (index, handle) in handles.iter().enumerate() {
                let leg =
                    self.legs.get_mut(handle).ok_or_else(|| wasmtime::Error::msg("call resource without a leg"))?;
                while let Some(event) = leg.backlog.pop_front() {
                    if let Some(update) = Self::to_guest_update(leg, event) {
                        return Ok(Some((index, update)));
                    }
                }
                // An ended call keeps answering `ended`, so a guest looping on updates cannot hang.
                if let Some(reason) = leg_end_reason(leg) {
                    return Ok(Some((index, CallUpdate::Event(CallEvent::Ended(reason)))));
                }
            }
            let ring_deadline = self.cancel_unanswered(handles).await;
            let wake = [deadline, ring_deadline].into_iter().flatten().min();
            if !self.receive_any(handles, wake).await && deadline.is_some_and(|at| at <= tokio::time::Instant::now()) {
                return Ok(None);
            }
        }
    }

    /// Cancels the outbound calls among `handles` whose ring deadline has passed; returns the next deadline
    /// of the others.
    async fn cancel_unanswered(&mut self, handles: &[CallHandle]) -> Option<tokio::time::Instant> {
        let now = tokio::time::Instant::now();
        let mut next = None;
        for handle in handles {
            let Some(leg) = self.legs.get_mut(handle) else { continue };
            match leg.ring_deadline {
                Some(at) if at <= now => {
                    leg.ring_deadline = None;
                    leg.timed_out = true;
                    // CANCEL; the call's end (or a 2xx that crossed the CANCEL, then BYE) follows.
                    let _ = self.sip.hangup(*handle).await;
                }
                Some(at) => next = Some(next.map_or(at, |n: tokio::time::Instant| n.min(at))),
                None => {}
            }
        }
        next
    }

    /// Waits for the next SIP event of any of `handles` until `until`, and absorbs it into its leg. False
    /// when the time ran out.
    async fn receive_any(&mut self, handles: &[CallHandle], until: Option<tokio::time::Instant>) -> bool {
        let mut legs: Vec<&mut Leg> =
            self.legs.iter_mut().filter(|(handle, _)| handles.contains(handle)).map(|(_, leg)| leg).collect();
        let received = std::future::poll_fn(|context| {
            for (index, leg) in legs.iter_mut().enumerate() {
                if let Poll::Ready(event) = leg.events.poll_recv(context) {
                    return Poll::Ready((index, event));
                }
            }
            Poll::Pending
        });
        let (index, received) = match until {
            Some(at) => match tokio::time::timeout_at(at, received).await {
                Ok(received) => received,
                Err(_) => return false,
            },
            None => received.await,
        };
        // No sender left: the router let go of the call, so it is over.
        let event = received.unwrap_or(Event::CallEnded { call: CallHandle(0), reason: EndReason::LocalHangup });
        legs[index].absorb(event);
        true
    }
}

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
        guest_result(self.sip.ring(handle, status, extras(headers, body)).await)
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
        guest_result(self.sip.reject(handle, status, reason, extras(headers, None)).await)
    }

    async fn hangup(&mut self, call: Resource<CallResource>) -> Result<Result<(), CallError>> {
        let (handle, leg) = self.leg(&call)?;
        if leg.ended.is_some() {
            return Ok(Ok(()));
        }
        guest_result(self.sip.hangup(handle).await)
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
            let position =
                leg.backlog.iter().position(|e| matches!(e, Event::Response { request, .. } if *request == sent));
            if let Some(Event::Response { response, .. }) = position.and_then(|i| leg.backlog.remove(i)) {
                return Ok(Ok(sip_response(&response)));
            }
            leg.receive(None).await;
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
        leg.inbound_refers.remove(&handle);
        guest_result(self.sip.respond(handle, status, extras(headers, body)).await)
    }

    async fn next_event(&mut self, call: Resource<CallResource>, timeout_ms: Option<u32>) -> Result<Option<CallEvent>> {
        self.decline_unhandled_refers(&call).await?;
        let (_, leg) = self.leg(&call)?;
        let deadline = timeout_ms.map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms.into()));
        loop {
            if let Some(event) = leg.backlog.pop_front() {
                match Self::to_guest_update(leg, event) {
                    Some(CallUpdate::Event(event)) => return Ok(Some(event)),
                    _ => continue,
                }
            }
            // An ended call keeps answering `ended`, so a guest looping on events cannot hang.
            if let Some(reason) = leg_end_reason(leg) {
                return Ok(Some(CallEvent::Ended(reason)));
            }
            if !leg.receive(deadline).await {
                return Ok(None);
            }
        }
    }

    async fn sip_refer(
        &mut self,
        call: Resource<CallResource>,
        request: ReferRequest,
    ) -> Result<Result<Resource<ReferResource>, CallError>> {
        let (handle, leg) = self.leg(&call)?;
        if leg.ended.is_some() {
            return Ok(Err(CallError::CallEnded));
        }
        if !leg.answered {
            return Ok(Err(CallError::InvalidState("a REFER needs an answered call".into())));
        }
        let referred_by = request.referred_by.clone().unwrap_or_else(|| transferred_party(&leg.info));
        let remote_host = remote_host(&leg.info);
        let mut extras = Extras::default();
        for header in &request.headers {
            // Long and compact forms (RFC 3515 `r`, RFC 3892 `b`).
            if ["Refer-To", "r", "Referred-By", "b", "Refer-Sub"].iter().any(|h| h.eq_ignore_ascii_case(&header.name)) {
                let why = format!("{} is set by the host from the refer request's fields", header.name);
                return Ok(Err(CallError::InvalidArgument(why)));
            }
            extras.headers.push((header.name.clone(), header.value.clone()));
        }
        let target = match &request.replaces {
            Some(other) => match self.replaces_target(other, &request.target).await? {
                Ok(target) => target,
                Err(error) => return Ok(Err(error)),
            },
            None => match refer::refer_to_uri(&request.target, &remote_host) {
                Ok(uri) => uri,
                Err(why) => return Ok(Err(CallError::InvalidArgument(why))),
            },
        };
        extras.headers.push(("Refer-To".into(), format!("<{target}>")));
        extras.headers.push(("Referred-By".into(), referred_by));
        if request.no_refer_sub {
            extras.headers.push(("Refer-Sub".into(), "false".into()));
            extras.headers.push(("Supported".into(), "norefersub".into()));
        }
        let credentials = request.credentials.map(|c| callwright_sip::auth::Credentials::new(c.username, c.password));
        let sent = InDialogRequest { method: Method::Refer, extras, credentials };
        let refer = match self.sip.send_request(handle, sent).await {
            Ok(refer) => refer,
            Err(error) => return call_error(error).map(Err),
        };
        let timeout = request.timeout_ms.map_or(DEFAULT_NOTIFY_TIMEOUT, |ms| Duration::from_millis(ms.into()));
        self.leg(&call)?.1.refers.insert(refer, ReferProgress::new(timeout));
        Ok(Ok(self.table.push(ReferResource { call: handle, request: refer })?))
    }

    async fn accept_refer(
        &mut self,
        call: Resource<CallResource>,
        request_id: u64,
    ) -> Result<Result<Resource<CallResource>, CallError>> {
        let request = IncomingRequestHandle(request_id);
        let (handle, leg) = self.leg(&call)?;
        let Some(pending) = leg.inbound_refers.get(&request).cloned() else {
            let why = format!("request {request_id} is not a REFER waiting for an answer on this call");
            return Ok(Err(CallError::InvalidArgument(why)));
        };
        let from = our_identity(&leg.info);
        let local_ip = leg.local_ip;
        let (target, replaces) = match refer::split_refer_to(&pending.refer_to) {
            Ok(split) => split,
            Err(why) => {
                leg.unanswered.remove(&request);
                leg.inbound_refers.remove(&request);
                let _ = self.sip.respond(request, 400, Extras::default()).await;
                return Ok(Err(CallError::InvalidArgument(why)));
            }
        };
        leg.unanswered.remove(&request);
        leg.inbound_refers.remove(&request);
        if let Err(error) = self.sip.respond(request, 202, Extras::default()).await {
            return call_error(error).map(Err);
        }
        self.notify_referrer(handle, &pending, 100, "Trying", false).await?;
        let mut extras = Extras::default();
        if let Some(referred_by) = &pending.referred_by {
            extras.headers.push(("Referred-By".into(), referred_by.clone()));
        }
        if let Some(replaces) = &replaces {
            extras.headers.push(("Replaces".into(), replaces.clone()));
        }
        let dial = DialRequest {
            target,
            from: Some(from),
            headers: Vec::new(),
            body: None,
            credentials: None,
            timeout_ms: None,
            transport: None,
        };
        let placed = match self.start_outbound(dial, extras, local_ip).await? {
            Ok(placed) => placed,
            Err(error) => {
                self.notify_referrer(handle, &pending, 503, "Service Unavailable", true).await?;
                return Ok(Err(CallError::Other(format!("the transfer target could not be called: {error:?}"))));
            }
        };
        loop {
            match self.wait_outbound(placed, &[]).await? {
                OutboundStep::Progress(status, reason) if status > 100 => {
                    self.notify_referrer(handle, &pending, status, &reason, false).await?
                }
                OutboundStep::Progress(..) => {}
                OutboundStep::Answered(status, reason) => {
                    self.notify_referrer(handle, &pending, status, &reason, true).await?;
                    return Ok(Ok(self.table.push(CallResource { handle: placed })?));
                }
                OutboundStep::Failed(status) => {
                    let reason = callwright_sip::message::reason_phrase(status);
                    self.notify_referrer(handle, &pending, status, reason, true).await?;
                    return Ok(Err(CallError::Other(format!("the transfer target answered {status}"))));
                }
                OutboundStep::TimedOut | OutboundStep::Abandoned => {
                    self.notify_referrer(handle, &pending, 408, "Request Timeout", true).await?;
                    return Ok(Err(CallError::Timeout));
                }
            }
        }
    }

    async fn drop(&mut self, call: Resource<CallResource>) -> Result<()> {
        self.table.delete(call)?;
        Ok(())
    }
}

impl hooks::Host for CallState {
    async fn send(&mut self, hook: Hook, payload: String) -> Result<Result<HookResponse, HookError>> {
        Ok(self.hooks.send(hook, payload).await)
    }

    async fn notify(&mut self, hook: Hook, payload: String) -> Result<Result<(), HookError>> {
        Ok(self.hooks.notify(hook, payload))
    }
}

/// The party being transferred (the far end: the From of an inbound call, the To of an outbound one),
/// without its tag: the default Referred-By, as jambonz sends it.
fn transferred_party(info: &CallInfo) -> String {
    let theirs = match info.direction {
        crate::bindings::Direction::Inbound => &info.from,
        crate::bindings::Direction::Outbound => &info.to,
    };
    without_tag(theirs)
}

/// Our own identity in a call (the To of an inbound call, the From of an outbound one), without its tag:
/// the From of our call to a transfer target.
fn our_identity(info: &CallInfo) -> String {
    let ours = match info.direction {
        crate::bindings::Direction::Inbound => &info.to,
        crate::bindings::Direction::Outbound => &info.from,
    };
    without_tag(ours)
}

fn without_tag(ours: &str) -> String {
    match callwright_sip::message::NameAddr::parse(ours) {
        Ok(mut name_addr) => {
            name_addr.params.remove("tag");
            name_addr.to_string()
        }
        Err(_) => ours.to_string(),
    }
}

/// The far end's host, for turning a bare number into `sip:<number>@<host>`: the host of its URI, or the
/// address its messages come from.
fn remote_host(info: &CallInfo) -> String {
    let theirs = match info.direction {
        crate::bindings::Direction::Inbound => &info.from,
        crate::bindings::Direction::Outbound => &info.to,
    };
    let from_uri = callwright_sip::message::NameAddr::parse(theirs).ok().and_then(|n| match n.uri {
        callwright_sip::message::Uri::Sip(sip) => Some(sip.host.to_string()),
        _ => None,
    });
    from_uri.unwrap_or_else(|| {
        info.remote_address.parse::<std::net::SocketAddr>().map(|a| a.ip().to_string()).unwrap_or_default()
    })
}

impl variables::Host for CallState {
    async fn get(&mut self, name: String) -> Result<Option<String>> {
        Ok(self.variables.lock().map_err(poisoned)?.get(&name).cloned())
    }

    async fn set(&mut self, name: String, value: String) -> Result<()> {
        let limit = self.host_buffer_limit;
        // Past the limit the guest is stopped, as when it outgrows its memory: the WIT call has no error.
        self.variables.lock().map_err(poisoned)?.set(name, value, limit).map_err(wasmtime::Error::msg)?;
        Ok(())
    }

    async fn remove(&mut self, name: String) -> Result<()> {
        self.variables.lock().map_err(poisoned)?.remove(&name);
        Ok(())
    }

    async fn entries(&mut self) -> Result<Vec<(String, String)>> {
        Ok(self.variables.lock().map_err(poisoned)?.entries().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

fn poisoned<T>(_: T) -> wasmtime::Error {
    wasmtime::Error::msg("call variables lock poisoned")
}

/// The longest message a guest may log in one call; longer ones are cut.
const MAX_LOG_MESSAGE: usize = 4096;

impl dispatch::Host for CallState {
    async fn run(
        &mut self,
        call: Resource<CallResource>,
        name: String,
        args: String,
    ) -> Result<Result<String, VerbError>> {
        let handle = self.handle_of(&call)?;
        // Boxed: a verb may run verbs, so this future contains itself.
        Box::pin(crate::verbs::run_verb(self, handle, &name, &args)).await
    }

    async fn check(&mut self, name: String, args: String) -> Result<Result<(), VerbError>> {
        Ok(match &self.verbs {
            Some(context) => crate::verbs::check_verb(context, &name, &args).map(|_| ()),
            None => Err(VerbError::Failed("verbs cannot run here".into())),
        })
    }

    async fn available(&mut self) -> Result<Vec<VerbInfo>> {
        Ok(self.verbs.as_ref().map(|context| context.available()).unwrap_or_default())
    }
}

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
