//! Outbound calls placed by guests (`dial`, and the call to a transfer target after an accepted REFER):
//! where the INVITE goes, who it is from, and what the guest learns about the call.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use callwright_sip::auth::Credentials as SipCredentials;
use callwright_sip::message::{Host, NameAddr, SipUri, Uri};
use callwright_sip::{Extras, OutboundCall, Transport};

use crate::bindings::{Body, CallInfo, Credentials, DialRequest, Direction};

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
