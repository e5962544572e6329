//! Outbound calls placed by guests (`call.dial` and `call.start-dial`, and the call to a transfer target
//! after an accepted REFER): where the INVITE goes, who it is from, what the guest learns about the call,
//! and the wait for its answer, which ends when the calls it was placed for end.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use callwright_sip::auth::Credentials as SipCredentials;
use callwright_sip::message::{Host, NameAddr, SipUri, Uri};
use callwright_sip::{CallHandle, Extras, OutboundCall, Transport};
use wasmtime::Result;

use super::Calls;
use super::call_control::{leg_end_reason, to_guest_update};
use crate::bindings::{Body, CallInfo, CallUpdate, Credentials, DialError, DialRequest, Direction, WitEndReason};
use crate::call_state::Leg;

/// How long an outbound call may ring before it is cancelled, unless the guest says otherwise.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The SIP port when the target URI names none.
const DEFAULT_SIP_PORT: u16 = 5060;

/// What happened next on an outbound call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutboundStep {
    /// A provisional response (status, reason).
    Progress(u16, String),
    /// Answered with this 2xx (status, reason).
    Answered(u16, String),
    /// It failed with this final status (487 when it ended any other way).
    Failed(u16),
    /// Not answered in time; it was cancelled.
    TimedOut,
    /// A call it was placed for (the caller) ended first; it was cancelled.
    Abandoned,
}

/// Where and how an outbound INVITE goes.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) target: Uri,
    pub(crate) from: NameAddr,
    pub(crate) destination: SocketAddr,
    pub(crate) transport: Transport,
    /// The listening address the call leaves from.
    pub(crate) local: SocketAddr,
}

/// Works out the destination (resolving a host name), the transport and the From of a dial request.
pub(crate) async fn plan(
    request: &DialRequest,
    listeners: &[(Transport, SocketAddr)],
    preferred_ip: IpAddr,
) -> Result<Plan, String> {
    let target = crate::refer::without_angle_brackets(&request.target);
    let uri = Uri::parse(target).map_err(|e| format!("dial target {target:?}: {e}"))?;
    let Some(sip) = uri.as_sip() else {
        return Err(format!("dial target {target:?} is not a SIP URI (tel: numbers need a SIP gateway URI)"));
    };
    let transport = match request.transport.as_deref().map(str::to_ascii_lowercase).or_else(|| sip.transport_param()) {
        None => Transport::Udp,
        Some(t) if t.eq_ignore_ascii_case("udp") => Transport::Udp,
        Some(t) if t.eq_ignore_ascii_case("tcp") => Transport::Tcp,
        Some(other) => return Err(format!("transport {other:?} is not udp or tcp")),
    };
    let port = sip.port.unwrap_or(DEFAULT_SIP_PORT);
    let destination = match sip.host.ip() {
        Some(ip) => SocketAddr::new(ip, port),
        None => {
            let name = sip.host.to_string();
            let mut addresses = tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(|e| format!("cannot resolve {name}: {e}"))?;
            addresses.next().ok_or_else(|| format!("{name} has no address"))?
        }
    };
    let local = listeners
        .iter()
        .filter(|(t, a)| *t == transport && a.is_ipv6() == destination.is_ipv6())
        .map(|(_, a)| *a)
        .max_by_key(|a| a.ip() == preferred_ip)
        .ok_or_else(|| format!("no {transport} listener for the address family of {destination}"))?;
    let from = match &request.from {
        Some(from) => NameAddr::parse(from).map_err(|e| format!("from {from:?}: {e}"))?,
        None => {
            let host = match local.ip() {
                IpAddr::V4(ip) => Host::V4(ip),
                IpAddr::V6(ip) => Host::V6(ip),
            };
            NameAddr::new(Uri::Sip(SipUri::new(Some("callwright"), host, Some(local.port()))))
        }
    };
    Ok(Plan { target: uri, from, destination, transport, local })
}

/// The INVITE to send for a plan.
pub(crate) fn invite(plan: Plan, credentials: Option<&Credentials>, extras: Extras) -> OutboundCall {
    OutboundCall {
        target: plan.target,
        from: plan.from,
        to: None,
        destination: plan.destination,
        transport: plan.transport,
        credentials: credentials.map(|c| SipCredentials::new(c.username.clone(), c.password.clone())),
        extras,
    }
}

/// What the guest is told about an outbound call (the id and Call-ID are filled in once known).
pub(crate) fn call_info(request: &DialRequest, plan: &Plan, body: Option<Body>) -> CallInfo {
    let user = |uri: &Uri| uri.user().unwrap_or_default().to_string();
    CallInfo {
        id: String::new(),
        sip_call_id: String::new(),
        from: plan.from.to_string(),
        to: NameAddr::new(plan.target.clone()).to_string(),
        to_user: user(&plan.target),
        from_user: user(&plan.from.uri),
        direction: Direction::Outbound,
        request_uri: plan.target.to_string(),
        headers: request.headers.clone(),
        body,
        remote_address: plan.destination.to_string(),
        transport: plan.transport.to_string().to_ascii_lowercase(),
    }
}

impl Calls {
    /// `call.dial`: places the call and waits for its answer. The guest cannot act while it waits here, so
    /// when one of its inbound calls ends meanwhile, the call placed for it is cancelled.
    pub(crate) async fn dial(&mut self, request: DialRequest) -> Result<Result<CallHandle, DialError>> {
        let handle = match self.start_outbound(request, Extras::default(), self.local_ip()).await? {
            Ok(handle) => handle,
            Err(error) => return Ok(Err(error)),
        };
        let callers = self.live_inbound_except(handle);
        loop {
            match self.wait_outbound(handle, &callers).await? {
                OutboundStep::Progress(..) => {}
                OutboundStep::Answered(..) => return Ok(Ok(handle)),
                OutboundStep::Failed(status) => return Ok(Err(DialError::Failed(status))),
                OutboundStep::TimedOut => return Ok(Err(DialError::Timeout)),
                OutboundStep::Abandoned => {
                    return Ok(Err(DialError::Other("the caller hung up before the call was answered".into())));
                }
            }
        }
    }

    /// `call.start-dial`: places the call and returns at once; `call.wait` reports its progress.
    pub(crate) async fn start_dial(&mut self, request: DialRequest) -> Result<Result<CallHandle, DialError>> {
        self.start_outbound(request, Extras::default(), self.local_ip()).await
    }

    /// The address to place calls from: the one the guest's first call came in on (the listener that
    /// matches its address family is chosen in [`plan`]).
    fn local_ip(&self) -> IpAddr {
        let first = self.legs.values().min_by_key(|leg| leg.info.direction == Direction::Outbound);
        first.map_or(std::net::Ipv4Addr::LOCALHOST.into(), |leg| leg.local_ip)
    }

    /// Starts an outbound call and adds its leg, to be cancelled if not answered by the request's timeout.
    pub(crate) async fn start_outbound(
        &mut self,
        request: DialRequest,
        mut extras: Extras,
        local_ip: IpAddr,
    ) -> Result<Result<CallHandle, DialError>> {
        let plan = match plan(&request, self.sip.local_addrs(), local_ip).await {
            Ok(plan) => plan,
            Err(why) => return Ok(Err(DialError::InvalidArgument(why))),
        };
        extras.headers.extend(request.headers.iter().map(|h| (h.name.clone(), h.value.clone())));
        let mut pending_offer = None;
        let body = match request.body.clone() {
            Some(body) => body,
            None => match crate::media::offer(&self.sip, plan.local.ip(), &self.codecs).await {
                Ok((data, pending)) => {
                    pending_offer = Some(pending);
                    Body { content_type: "application/sdp".into(), data }
                }
                Err(error) => return Ok(Err(DialError::Other(error.to_string()))),
            },
        };
        extras.content_type = Some(body.content_type.clone());
        extras.body = body.data.clone();
        let mut info = call_info(&request, &plan, Some(body));
        let invite = invite(plan, request.credentials.as_ref(), extras);
        let (sender, events) = tokio::sync::mpsc::channel(crate::runtime::EVENTS_PER_CALL);
        let registrar = self.registrar.clone();
        let on_created = Box::new(move |handle| {
            let _ = registrar.send((handle, sender));
        });
        let handle = match self.sip.invite_with(invite, on_created).await {
            Ok(handle) => handle,
            Err(error) => return Ok(Err(DialError::Other(error.to_string()))),
        };
        info.id = handle.to_string();
        let mut leg = Leg::new(info, local_ip, events);
        leg.pending_offer = pending_offer;
        let timeout = request.timeout_ms.map_or(DEFAULT_TIMEOUT, |ms| Duration::from_millis(ms.into()));
        leg.ring_deadline = Some(tokio::time::Instant::now() + timeout);
        self.legs.insert(handle, leg);
        Ok(Ok(handle))
    }

    /// Waits for the next step of an outbound call. Past its ring deadline it is cancelled; so it is when
    /// one of `callers` (the calls it was placed for) ends first.
    pub(crate) async fn wait_outbound(&mut self, handle: CallHandle, callers: &[CallHandle]) -> Result<OutboundStep> {
        let listened: Vec<CallHandle> = std::iter::once(handle).chain(callers.iter().copied()).collect();
        loop {
            let leg = self.leg(handle)?;
            while let Some(event) = leg.backlog.pop_front() {
                match to_guest_update(leg, event) {
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

    /// Cancels the outbound calls among `handles` whose ring deadline has passed; returns the next deadline
    /// of the others.
    pub(crate) async fn cancel_unanswered(&mut self, handles: &[CallHandle]) -> Option<tokio::time::Instant> {
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
}
