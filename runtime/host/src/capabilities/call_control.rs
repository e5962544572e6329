//! Call control: the guest's SIP calls (the `call` resource) and their events. Serves the `call`
//! interface; dialling goes on in `outbound.rs` and REFERs in `transfer.rs`, on the same [`Calls`].

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use callwright_driver::SipHandle;
use callwright_media::Codec;
use callwright_sip::message::Method;
use callwright_sip::{CallHandle, EndReason, Event, Extras, InDialogRequest, IncomingRequestHandle};
use wasmtime::Result;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use super::{CallSetup, Capability};
use crate::bindings::callwright::voice::{call, types};
use crate::bindings::{
    Body, CallError, CallEvent, CallInfo, CallUpdate, DialError, DialRequest, Direction, Header, ReferEvent,
    ReferRequest, SipResponse, WitEndReason,
};
use crate::call_state::{
    CallResource, CallState, Leg, ReferResource, Registrar, call_error, finish_legs, guest_result,
};

/// Methods `sip-request` may send; INVITE, ACK, CANCEL, BYE and REFER have their own operations.
const GUEST_REQUEST_METHODS: [&str; 5] = ["INFO", "MESSAGE", "NOTIFY", "OPTIONS", "UPDATE"];

/// The call-control unit.
pub(crate) struct CallControl;

/// The SIP calls one guest holds, and what it needs to act on them.
pub(crate) struct Calls {
    pub(crate) sip: SipHandle,
    pub(crate) legs: HashMap<CallHandle, Leg>,
    /// Registers outbound calls the guest places with the router.
    pub(crate) registrar: Registrar,
    /// Names the call in logs.
    pub(crate) label: String,
    /// The app's codecs, in order of preference, for the host's SDP offers and answers.
    pub(crate) codecs: Vec<Codec>,
    /// Calls a verb placed itself, handed back when it returned: they end with it ([`Calls::finish_placed`]).
    placed_by_verb: Vec<(CallHandle, Leg)>,
    /// The calls lent to a verb, to tell them from the ones it placed.
    lent: HashSet<CallHandle>,
}

/// What the glue of the `call` interface sees: the resource table and the calls.
pub(crate) struct CallsView<'a> {
    table: &'a mut ResourceTable,
    calls: &'a mut Calls,
}

/// [`HasData`] for [`CallsView`].
struct CallsData;

impl HasData for CallsData {
    type Data<'a> = CallsView<'a>;
}

impl Capability for CallControl {
    const INTERFACES: &'static [&'static str] = &["callwright:voice/types", "callwright:voice/call"];
    type State = Calls;

    fn link(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
        types::add_to_linker::<CallState, CallsData>(linker, |state| state.calls_view())?;
        call::add_to_linker::<CallState, CallsData>(linker, |state| state.calls_view())
    }

    fn state(setup: &CallSetup<'_>) -> Calls {
        Calls {
            sip: setup.sip.clone(),
            legs: HashMap::new(),
            registrar: setup.registrar.clone(),
            label: setup.label.clone(),
            codecs: setup.codecs.clone(),
            placed_by_verb: Vec::new(),
            lent: HashSet::new(),
        }
    }

    /// The verb gets every call of its caller, who cannot act on them while it waits for the verb.
    fn lend(caller: &mut Calls, label: &str) -> Calls {
        let legs = std::mem::take(&mut caller.legs);
        Calls {
            sip: caller.sip.clone(),
            lent: legs.keys().copied().collect(),
            legs,
            registrar: caller.registrar.clone(),
            label: label.to_string(),
            codecs: caller.codecs.clone(),
            placed_by_verb: Vec::new(),
        }
    }

    /// The lent calls go back; the ones the verb placed wait in [`Calls::finish_placed`].
    fn give_back(caller: &mut Calls, mut verb: Calls) {
        let (returned, placed): (Vec<_>, Vec<_>) =
            verb.legs.drain().partition(|(handle, _)| verb.lent.contains(handle));
        caller.legs.extend(returned);
        caller.placed_by_verb.extend(placed);
    }
}

impl CallState {
    fn calls_view(&mut self) -> CallsView<'_> {
        CallsView { table: &mut self.table, calls: &mut self.calls }
    }
}

impl CallsView<'_> {
    fn handle(&self, call: &Resource<CallResource>) -> Result<CallHandle> {
        Ok(self.table.get(call)?.handle)
    }

    fn handles(&self, calls: &[Resource<CallResource>]) -> Result<Vec<CallHandle>> {
        calls.iter().map(|call| self.handle(call)).collect()
    }

    fn push_call(&mut self, handle: CallHandle) -> Result<Resource<CallResource>> {
        Ok(self.table.push(CallResource { handle })?)
    }
}

impl types::Host for CallsView<'_> {}

impl call::Host for CallsView<'_> {
    async fn dial(&mut self, request: DialRequest) -> Result<Result<Resource<CallResource>, DialError>> {
        match self.calls.dial(request).await? {
            Ok(handle) => Ok(Ok(self.push_call(handle)?)),
            Err(error) => Ok(Err(error)),
        }
    }

    async fn start_dial(&mut self, request: DialRequest) -> Result<Result<Resource<CallResource>, DialError>> {
        match self.calls.start_dial(request).await? {
            Ok(handle) => Ok(Ok(self.push_call(handle)?)),
            Err(error) => Ok(Err(error)),
        }
    }

    async fn wait(
        &mut self,
        calls: Vec<Resource<CallResource>>,
        timeout_ms: Option<u32>,
    ) -> Result<Option<(u32, CallUpdate)>> {
        let handles = self.handles(&calls)?;
        self.calls.wait(&handles, timeout_ms).await
    }
}

impl call::HostRefer for CallsView<'_> {
    async fn next_event(&mut self, refer: Resource<ReferResource>) -> Result<ReferEvent> {
        let ReferResource { call, request } = *self.table.get(&refer)?;
        self.calls.refer_next_event(call, request).await
    }

    async fn drop(&mut self, refer: Resource<ReferResource>) -> Result<()> {
        let ReferResource { call, request } = self.table.delete(refer)?;
        self.calls.forget_refer(call, request);
        Ok(())
    }
}

impl call::HostCall for CallsView<'_> {
    async fn info(&mut self, call: Resource<CallResource>) -> Result<CallInfo> {
        let handle = self.handle(&call)?;
        Ok(self.calls.leg(handle)?.info.clone())
    }

    async fn ring(
        &mut self,
        call: Resource<CallResource>,
        status: u16,
        headers: Vec<Header>,
        body: Option<Body>,
    ) -> Result<Result<(), CallError>> {
        let handle = self.handle(&call)?;
        guest_result(self.calls.sip.ring(handle, status, extras(headers, body)).await)
    }

    async fn answer(
        &mut self,
        call: Resource<CallResource>,
        headers: Vec<Header>,
        body: Option<Body>,
    ) -> Result<Result<(), CallError>> {
        let handle = self.handle(&call)?;
        self.calls.answer(handle, headers, body).await
    }

    async fn reject(
        &mut self,
        call: Resource<CallResource>,
        status: u16,
        reason: Option<String>,
        headers: Vec<Header>,
    ) -> Result<Result<(), CallError>> {
        let handle = self.handle(&call)?;
        guest_result(self.calls.sip.reject(handle, status, reason, extras(headers, None)).await)
    }

    async fn hangup(&mut self, call: Resource<CallResource>) -> Result<Result<(), CallError>> {
        let handle = self.handle(&call)?;
        self.calls.hangup(handle).await
    }

    async fn sip_request(
        &mut self,
        call: Resource<CallResource>,
        method: String,
        headers: Vec<Header>,
        body: Option<Body>,
    ) -> Result<Result<SipResponse, CallError>> {
        let handle = self.handle(&call)?;
        self.calls.sip_request(handle, &method, extras(headers, body)).await
    }

    async fn respond(
        &mut self,
        call: Resource<CallResource>,
        request_id: u64,
        status: u16,
        headers: Vec<Header>,
        body: Option<Body>,
    ) -> Result<Result<(), CallError>> {
        let handle = self.handle(&call)?;
        self.calls.respond(handle, IncomingRequestHandle(request_id), status, extras(headers, body)).await
    }

    async fn next_event(&mut self, call: Resource<CallResource>, timeout_ms: Option<u32>) -> Result<Option<CallEvent>> {
        let handle = self.handle(&call)?;
        self.calls.next_event(handle, timeout_ms).await
    }

    async fn sip_refer(
        &mut self,
        call: Resource<CallResource>,
        request: ReferRequest,
    ) -> Result<Result<Resource<ReferResource>, CallError>> {
        let handle = self.handle(&call)?;
        match self.calls.sip_refer(handle, request).await? {
            Ok(refer) => Ok(Ok(self.table.push(ReferResource { call: handle, request: refer })?)),
            Err(error) => Ok(Err(error)),
        }
    }

    async fn accept_refer(
        &mut self,
        call: Resource<CallResource>,
        request_id: u64,
    ) -> Result<Result<Resource<CallResource>, CallError>> {
        let handle = self.handle(&call)?;
        match self.calls.accept_refer(handle, IncomingRequestHandle(request_id)).await? {
            Ok(placed) => Ok(Ok(self.push_call(placed)?)),
            Err(error) => Ok(Err(error)),
        }
    }

    async fn drop(&mut self, call: Resource<CallResource>) -> Result<()> {
        self.table.delete(call)?;
        Ok(())
    }
}

pub(crate) fn extras(headers: Vec<Header>, body: Option<Body>) -> Extras {
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
pub(crate) fn leg_end_reason(leg: &Leg) -> Option<WitEndReason> {
    let reason = leg.ended.as_ref()?;
    Some(if leg.timed_out { WitEndReason::Failed(408) } else { wit_end_reason(reason) })
}

pub(crate) fn sip_response(response: &callwright_sip::message::Response) -> SipResponse {
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

impl Calls {
    pub(crate) fn leg(&mut self, handle: CallHandle) -> Result<&mut Leg> {
        self.legs.get_mut(&handle).ok_or_else(|| wasmtime::Error::msg("call resource without a leg"))
    }

    /// Ends the calls a verb placed and left when it returned (see [`Capability::give_back`]).
    pub(crate) async fn finish_placed(&mut self, failed: bool) {
        let placed = std::mem::take(&mut self.placed_by_verb);
        finish_legs(&self.sip, placed, failed).await;
    }

    /// Answers with the guest's body, or the host's SDP answer to the caller's offer when it gives none.
    async fn answer(
        &mut self,
        handle: CallHandle,
        headers: Vec<Header>,
        body: Option<Body>,
    ) -> Result<Result<(), CallError>> {
        let leg = self.leg(handle)?;
        let offer = leg.info.body.as_ref().filter(|b| b.content_type.eq_ignore_ascii_case("application/sdp"));
        let mut answerer = None;
        let body = match (body, offer) {
            (Some(body), _) => Some(body),
            (None, Some(offer)) => {
                let (offer, local_ip) = (offer.data.clone(), leg.local_ip);
                match crate::media::answer_offer(&self.sip, handle, local_ip, &self.codecs, &offer).await {
                    Ok((answer, media, offer_answerer)) => {
                        self.leg(handle)?.media = Some(media);
                        answerer = Some(offer_answerer);
                        Some(Body { content_type: "application/sdp".into(), data: answer })
                    }
                    Err(error) => return self.reject_media(handle, error).await,
                }
            }
            (None, None) => {
                // Delayed offer (RFC 3261 §13.2.1): the 200 carries our offer, the ACK the answer.
                let local_ip = leg.local_ip;
                match crate::media::offer(&self.sip, local_ip, &self.codecs).await {
                    Ok((offer, pending)) => {
                        self.leg(handle)?.pending_offer = Some(pending);
                        Some(Body { content_type: "application/sdp".into(), data: offer })
                    }
                    Err(error) => return self.reject_media(handle, error).await,
                }
            }
        };
        let answered = match answerer {
            // With the 200, so no re-INVITE can find the call without it.
            Some(answerer) => self.sip.answer_with_offer_answerer(handle, extras(headers, body), answerer).await,
            None => self.sip.answer(handle, extras(headers, body)).await,
        };
        match answered {
            Ok(()) => {
                self.leg(handle)?.answered = true;
                Ok(Ok(()))
            }
            Err(error) => call_error(error).map(Err),
        }
    }

    /// Rejects a call whose offer we cannot answer: 488 with a Warning naming the problem, 400, or 503
    /// when no RTP port is free. The guest learns why.
    async fn reject_media(
        &mut self,
        handle: CallHandle,
        error: crate::media::MediaSetupError,
    ) -> Result<Result<(), CallError>> {
        let mut extras = Extras::default();
        if let Some(warning) = error.warning("callwright") {
            extras.headers.push(("Warning".into(), warning));
        }
        let _ = self.sip.reject(handle, error.status(), None, extras).await;
        Ok(Err(CallError::Other(format!("cannot answer the offer ({}): {error}", error.status()))))
    }

    async fn hangup(&mut self, handle: CallHandle) -> Result<Result<(), CallError>> {
        if self.leg(handle)?.ended.is_some() {
            return Ok(Ok(()));
        }
        guest_result(self.sip.hangup(handle).await)
    }

    /// Sends a request in the dialog and waits for its final response.
    async fn sip_request(
        &mut self,
        handle: CallHandle,
        method: &str,
        extras: Extras,
    ) -> Result<Result<SipResponse, CallError>> {
        if !GUEST_REQUEST_METHODS.contains(&method) {
            let why = format!("sip-request sends {}, not {method}", GUEST_REQUEST_METHODS.join(", "));
            return Ok(Err(CallError::InvalidArgument(why)));
        }
        self.leg(handle)?;
        let request = InDialogRequest { method: Method::from_token(method), extras, credentials: None };
        let sent = match self.sip.send_request(handle, request).await {
            Ok(sent) => sent,
            Err(error) => return call_error(error).map(Err),
        };
        Ok(Ok(sip_response(&self.final_response(handle, sent).await?)))
    }

    /// Waits for the final response to request `sent` of call `handle`, keeping the call's other events.
    /// The transaction layer guarantees one (a local 408 at worst), so this wait ends.
    pub(crate) async fn final_response(
        &mut self,
        handle: CallHandle,
        sent: callwright_sip::RequestHandle,
    ) -> Result<callwright_sip::message::Response> {
        let leg = self.leg(handle)?;
        loop {
            let position =
                leg.backlog.iter().position(|e| matches!(e, Event::Response { request, .. } if *request == sent));
            if let Some(Event::Response { response, .. }) = position.and_then(|i| leg.backlog.remove(i)) {
                return Ok(response);
            }
            leg.receive(None).await;
        }
    }

    async fn respond(
        &mut self,
        handle: CallHandle,
        request: IncomingRequestHandle,
        status: u16,
        extras: Extras,
    ) -> Result<Result<(), CallError>> {
        let leg = self.leg(handle)?;
        if !leg.unanswered.remove(&request) {
            return Ok(Err(CallError::InvalidArgument(format!("no unanswered request {} on this call", request.0))));
        }
        leg.inbound_refers.remove(&request);
        guest_result(self.sip.respond(request, status, extras).await)
    }

    /// The call's next event for the guest, or none at the timeout.
    async fn next_event(&mut self, handle: CallHandle, timeout_ms: Option<u32>) -> Result<Option<CallEvent>> {
        self.decline_unhandled_refers(handle).await?;
        let leg = self.leg(handle)?;
        let deadline = timeout_ms.map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms.into()));
        loop {
            if let Some(event) = leg.backlog.pop_front() {
                match to_guest_update(leg, event) {
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

    /// `call.wait`: the next update of any of `handles` (its index and the update), or none at the timeout.
    async fn wait(&mut self, handles: &[CallHandle], timeout_ms: Option<u32>) -> Result<Option<(u32, CallUpdate)>> {
        if handles.is_empty() {
            return Ok(None);
        }
        for handle in handles {
            self.decline_unhandled_refers(*handle).await?;
        }
        let deadline = timeout_ms.map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms.into()));
        Ok(self.wait_any(handles, deadline).await?.map(|(index, update)| (index as u32, update)))
    }

    /// Waits until one of `handles` has an update for the guest, or `deadline`.
    pub(crate) async fn wait_any(
        &mut self,
        handles: &[CallHandle],
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Option<(usize, CallUpdate)>> {
        self.wait_any_with(handles, deadline, next_call_update).await
    }

    /// Waits until `next` finds an update in one of `handles`' legs, or `deadline`: the one loop behind
    /// `call.wait` and `media.wait`, which differ only in what they look at in a leg.
    pub(crate) async fn wait_any_with<U>(
        &mut self,
        handles: &[CallHandle],
        deadline: Option<tokio::time::Instant>,
        mut next: impl FnMut(&mut Leg) -> Next<U>,
    ) -> Result<Option<(usize, U)>> {
        loop {
            for (index, handle) in handles.iter().enumerate() {
                loop {
                    match next(self.leg(*handle)?) {
                        Next::Update(update) => return Ok(Some((index, update))),
                        Next::AnswerOk(request) => {
                            self.leg(*handle)?.unanswered.remove(&request);
                            let _ = self.sip.respond(request, 200, Extras::default()).await;
                        }
                        Next::Nothing => break,
                    }
                }
            }
            let ring_deadline = self.cancel_unanswered(handles).await;
            let wake = [deadline, ring_deadline].into_iter().flatten().min();
            if !self.receive_any(handles, wake).await && deadline.is_some_and(|at| at <= tokio::time::Instant::now()) {
                return Ok(None);
            }
        }
    }

    /// Waits for the next SIP event of any of `handles` until `until`, and absorbs it into its leg. False
    /// when the time ran out.
    pub(crate) async fn receive_any(&mut self, handles: &[CallHandle], until: Option<tokio::time::Instant>) -> bool {
        let mut legs: Vec<&mut Leg> =
            self.legs.iter_mut().filter(|(handle, _)| handles.contains(handle)).map(|(_, leg)| leg).collect();
        crate::call_state::receive_any(&mut legs, until).await
    }

    /// The guest's inbound calls still up (the callers a call placed for them serves).
    pub(crate) fn live_inbound_except(&self, handle: CallHandle) -> Vec<CallHandle> {
        self.legs
            .iter()
            .filter(|(other, leg)| **other != handle && leg.info.direction == Direction::Inbound && leg.ended.is_none())
            .map(|(other, _)| *other)
            .collect()
    }
}

/// What one look at a leg found for a waiting guest.
pub(crate) enum Next<U> {
    /// This, for the guest.
    Update(U),
    /// A request the host answers 200 itself (an INFO carrying a digit, for `media.wait`); look again.
    AnswerOk(IncomingRequestHandle),
    /// Nothing yet.
    Nothing,
}

/// The next update `call.wait` reports about `leg`.
fn next_call_update(leg: &mut Leg) -> Next<CallUpdate> {
    while let Some(event) = leg.backlog.pop_front() {
        if let Some(update) = to_guest_update(leg, event) {
            return Next::Update(update);
        }
    }
    // An ended call keeps answering `ended`, so a guest looping on updates cannot hang.
    match leg_end_reason(leg) {
        Some(reason) => Next::Update(CallUpdate::Event(CallEvent::Ended(reason))),
        None => Next::Nothing,
    }
}

/// Turns a SIP event into what `wait` reports, updating the leg; `None` for events the guest does not see
/// (responses to other requests, a 100 Trying).
pub(crate) fn to_guest_update(leg: &mut Leg, event: Event) -> Option<CallUpdate> {
    match event {
        Event::CallProgress { response, .. } if response.status > 100 => {
            Some(CallUpdate::Progress(sip_response(&response)))
        }
        Event::CallAnswered { call, response } => {
            leg.answered = true;
            if let Some(pending) = leg.pending_offer.take() {
                leg.media = pending.accept(call, &response.body);
            }
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
        Event::CallConfirmed { call, ack_body } => {
            // A caller that offered nothing answers our offer in the ACK (delayed offer).
            if let Some(pending) = leg.pending_offer.take() {
                leg.media = pending.accept(call, &ack_body);
            }
            Some(CallUpdate::Event(CallEvent::Confirmed))
        }
        Event::Request { handle, request, .. } if request.method == Method::Refer => {
            Some(CallUpdate::Event(super::transfer::inbound_refer(leg, handle, &request)))
        }
        Event::Request { handle, request, .. } => {
            // Shown to the guest, who answers it (even if it carried a digit).
            leg.digit_infos.remove(&handle);
            leg.unanswered.insert(handle);
            Some(CallUpdate::Event(CallEvent::Request(crate::bindings::IncomingRequest {
                id: handle.0,
                method: request.method.to_string(),
                headers: headers_of(&request.headers),
                body: body_of(&request.headers, &request.body),
            })))
        }
        _ => None,
    }
}
