//! Transfers (RFC 3515): REFERs the guest sends (`call.sip-refer` and the `refer` resource that reports
//! their progress) and REFERs it receives (delivered as events, accepted with `call.accept-refer`, which
//! calls the target and tells the referrer how it goes). The protocol values (Refer-To, Replaces, the
//! progress of a REFER) come from `crate::refer`.

use std::time::Duration;

use callwright_sip::message::{Method, Request};
use callwright_sip::{CallHandle, Extras, InDialogRequest, IncomingRequestHandle, RequestHandle};
use wasmtime::Result;

use super::Calls;
use super::call_control::headers_of;
use super::outbound::OutboundStep;
use crate::bindings::{CallError, CallEvent, CallInfo, DialRequest, Direction, InboundRefer, ReferEvent, ReferRequest};
use crate::call_state::{Leg, PendingRefer, call_error};
use crate::refer::{self, DEFAULT_NOTIFY_TIMEOUT, ReferProgress};

/// Headers of a REFER the host sets from the request's fields (long and compact forms: RFC 3515 `r`, RFC
/// 3892 `b`); a guest may not set them itself.
const HOST_SET_HEADERS: [&str; 5] = ["Refer-To", "r", "Referred-By", "b", "Refer-Sub"];

/// An inbound REFER as the guest sees it; the leg keeps it until the guest decides.
pub(crate) fn inbound_refer(leg: &mut Leg, handle: IncomingRequestHandle, request: &Request) -> CallEvent {
    leg.unanswered.insert(handle);
    let refer_to = request.headers.get("Refer-To").unwrap_or_default().to_string();
    let (target, replaces) = refer::split_refer_to(&refer_to).unwrap_or((refer_to.clone(), None));
    let referred_by = request.headers.get("Referred-By").map(str::to_string);
    let pending = PendingRefer { refer_to: refer_to.clone(), referred_by: referred_by.clone() };
    leg.inbound_refers.insert(handle, pending);
    leg.refers_delivered.push(handle);
    CallEvent::Refer(InboundRefer {
        id: handle.0,
        refer_to: target,
        referred_by,
        replaces,
        headers: headers_of(&request.headers),
    })
}

impl Calls {
    /// Answers 501 to inbound REFERs the guest saw and left unanswered: it has no handler for them.
    pub(crate) async fn decline_unhandled_refers(&mut self, handle: CallHandle) -> Result<()> {
        let leg = self.leg(handle)?;
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

    /// `refer.next-event`: the next step of a REFER we sent.
    pub(crate) async fn refer_next_event(&mut self, call: CallHandle, request: RequestHandle) -> Result<ReferEvent> {
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

    /// The guest dropped its `refer`: its progress is no longer followed.
    pub(crate) fn forget_refer(&mut self, call: CallHandle, request: RequestHandle) {
        if let Some(leg) = self.legs.get_mut(&call) {
            leg.refers.remove(&request);
        }
    }

    /// `call.sip-refer`: sends a REFER on an answered call; its progress is followed from then on.
    pub(crate) async fn sip_refer(
        &mut self,
        handle: CallHandle,
        request: ReferRequest,
    ) -> Result<Result<RequestHandle, CallError>> {
        let leg = self.leg(handle)?;
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
            if HOST_SET_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(&header.name)) {
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
        self.leg(handle)?.refers.insert(refer, ReferProgress::new(timeout));
        Ok(Ok(refer))
    }

    /// `call.accept-refer`: answers 202, calls the target (with the REFER's Referred-By and Replaces) and
    /// tells the referrer each step as a NOTIFY; the answered call is the guest's.
    pub(crate) async fn accept_refer(
        &mut self,
        handle: CallHandle,
        request: IncomingRequestHandle,
    ) -> Result<Result<CallHandle, CallError>> {
        let leg = self.leg(handle)?;
        let Some(pending) = leg.inbound_refers.get(&request).cloned() else {
            let why = format!("request {} is not a REFER waiting for an answer on this call", request.0);
            return Ok(Err(CallError::InvalidArgument(why)));
        };
        let from = our_identity(&leg.info);
        let local_ip = leg.local_ip;
        leg.unanswered.remove(&request);
        leg.inbound_refers.remove(&request);
        let (target, replaces) = match refer::split_refer_to(&pending.refer_to) {
            Ok(split) => split,
            Err(why) => {
                let _ = self.sip.respond(request, 400, Extras::default()).await;
                return Ok(Err(CallError::InvalidArgument(why)));
            }
        };
        if let Err(error) = self.sip.respond(request, 202, Extras::default()).await {
            return call_error(error).map(Err);
        }
        self.notify_referrer(handle, request, 100, "Trying").await;
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
                self.notify_referrer(handle, request, 503, "Service Unavailable").await;
                return Ok(Err(CallError::Other(format!("the transfer target could not be called: {error:?}"))));
            }
        };
        loop {
            match self.wait_outbound(placed, &[]).await? {
                OutboundStep::Progress(status, reason) if status > 100 => {
                    self.notify_referrer(handle, request, status, &reason).await
                }
                OutboundStep::Progress(..) => {}
                OutboundStep::Answered(status, reason) => {
                    self.notify_referrer(handle, request, status, &reason).await;
                    return Ok(Ok(placed));
                }
                OutboundStep::Failed(status) => {
                    let reason = callwright_sip::message::reason_phrase(status);
                    self.notify_referrer(handle, request, status, reason).await;
                    return Ok(Err(CallError::Other(format!("the transfer target answered {status}"))));
                }
                OutboundStep::TimedOut | OutboundStep::Abandoned => {
                    self.notify_referrer(handle, request, 408, "Request Timeout").await;
                    return Ok(Err(CallError::Timeout));
                }
            }
        }
    }

    /// Tells the referrer the status of our call to the transfer target (the SIP core's REFER notifier
    /// makes the NOTIFY; a final status ends the subscription).
    async fn notify_referrer(&mut self, call: CallHandle, refer: IncomingRequestHandle, status: u16, reason: &str) {
        match self.sip.notify_refer(refer, status, reason).await {
            Ok(sent) => {
                if let Some(leg) = self.legs.get_mut(&call) {
                    leg.unawaited.insert(sent);
                }
            }
            // The referrer may have hung up already, or asked for no NOTIFYs; the transfer goes on regardless.
            Err(error) => tracing::info!(call = %self.label, %error, "NOTIFY to the referrer not sent"),
        }
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
}

/// The party being transferred (the far end: the From of an inbound call, the To of an outbound one),
/// without its tag: the default Referred-By, as jambonz sends it.
fn transferred_party(info: &CallInfo) -> String {
    let theirs = match info.direction {
        Direction::Inbound => &info.from,
        Direction::Outbound => &info.to,
    };
    without_tag(theirs)
}

/// Our own identity in a call (the To of an inbound call, the From of an outbound one), without its tag:
/// the From of our call to a transfer target.
fn our_identity(info: &CallInfo) -> String {
    let ours = match info.direction {
        Direction::Inbound => &info.to,
        Direction::Outbound => &info.from,
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
        Direction::Inbound => &info.from,
        Direction::Outbound => &info.to,
    };
    let from_uri = callwright_sip::message::NameAddr::parse(theirs).ok().and_then(|n| match n.uri {
        callwright_sip::message::Uri::Sip(sip) => Some(sip.host.to_string()),
        _ => None,
    });
    from_uri.unwrap_or_else(|| {
        info.remote_address.parse::<std::net::SocketAddr>().map(|a| a.ip().to_string()).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use callwright_sip::message::{Headers, Response};
    use callwright_sip::{CallHandle, Event, RequestHandle};
    use tokio::sync::mpsc;

    use super::*;
    use crate::bindings::ReferOutcome;
    use crate::capabilities::call_control::CallControl;
    use crate::capabilities::{CallSetup, Capability};
    use crate::limits::SandboxLimits;

    fn info() -> CallInfo {
        CallInfo {
            id: "1".into(),
            sip_call_id: "a@b".into(),
            from: "<sip:alice@127.0.0.1>;tag=1".into(),
            to: "<sip:bob@127.0.0.1>;tag=2".into(),
            to_user: "bob".into(),
            from_user: "alice".into(),
            direction: Direction::Inbound,
            request_uri: "sip:bob@127.0.0.1".into(),
            headers: Vec::new(),
            body: None,
            remote_address: "127.0.0.1:5060".into(),
            transport: "udp".into(),
        }
    }

    /// In virtual time: a REFER accepted with 202 whose NOTIFYs never come ends in `timeout` exactly at its
    /// timeout (the refer request's `timeout-ms`), measured from the 202, while the call stays up.
    #[tokio::test(start_paused = true)]
    async fn an_accepted_refer_without_notifys_times_out_at_its_timeout() {
        let (registrar, _) = mpsc::unbounded_channel();
        let limits = SandboxLimits::default();
        let mut calls = CallControl::state(&CallSetup {
            limits: &limits,
            sip: callwright_driver::SipHandle::detached(),
            label: "test".into(),
            app: String::new(),
            registrar,
            hook_client: reqwest::Client::new(),
            hooks: Default::default(),
            codecs: callwright_media::Codec::ALL.to_vec(),
            recording_hook: None,
            verbs: None,
            media: None,
        });
        let (call, refer) = (CallHandle(1), RequestHandle(7));
        let (events, received) = mpsc::channel(8);
        calls.legs.insert(call, Leg::new(info(), std::net::Ipv4Addr::LOCALHOST.into(), received));
        let timeout = Duration::from_secs(15);
        calls.legs.get_mut(&call).unwrap().refers.insert(refer, ReferProgress::new(timeout));

        tokio::time::sleep(Duration::from_secs(3)).await;
        let accepted = Response { status: 202, reason: "Accepted".into(), headers: Headers::new(), body: Vec::new() };
        events.send(Event::Response { call, request: refer, response: accepted }).await.unwrap();
        let first = calls.refer_next_event(call, refer).await.unwrap();
        assert!(matches!(first, ReferEvent::Response(ref response) if response.status == 202), "{first:?}");
        let accepted_at = tokio::time::Instant::now();
        let outcome = calls.refer_next_event(call, refer).await.unwrap();
        assert!(matches!(outcome, ReferEvent::Outcome(ReferOutcome::Timeout)), "{outcome:?}");
        assert_eq!(accepted_at.elapsed(), timeout, "timed out 15 s after the 202, in virtual time");
        assert!(calls.leg(call).unwrap().ended.is_none(), "the call is still up");
        drop(events);
    }
}
