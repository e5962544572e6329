//! The endpoint: the UAS and UAC cores (RFC 3261 §8, §12-§15) over the transaction layer.
//!
//! Inputs: [`Endpoint::handle_message`] (bytes from a flow) and [`Endpoint::handle_timeout`]. Commands:
//! [`Endpoint::answer`], [`Endpoint::hangup`], [`Endpoint::send_request`], [`Endpoint::invite`], … Outputs,
//! drained after every input or command: [`Endpoint::poll_transmit`], [`Endpoint::poll_event`], then
//! [`Endpoint::poll_timeout`] for when to call `handle_timeout` next.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::auth::{Credentials, DigestChallenge, DigestRequest, authorization};
use crate::dialog::{Dialog, SequenceCheck};
use crate::error::Error;
use crate::message::{
    Host, Message, Method, NameAddr, ParseError, ParseErrorKind, Request, Response, SipUri, Uri, Via,
};
use crate::refer_notifier::ReferNotifier;
use crate::rng::IdGenerator;
use crate::timers::TimerSettings;
use crate::transaction::{
    ClientKey, ClientState, ClientTimeout, ClientTransaction, ServerKey, ServerState, ServerTimeout, ServerTransaction,
};
use crate::transport::{Flow, Transmit, Transport};

mod addressing;
mod in_dialog;
mod input;
mod lifetime;
mod subscriptions;
mod timers;
mod uac;
mod uas;

/// Methods we accept (sent in Allow).
const ALLOWED_METHODS: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, MESSAGE, NOTIFY, REFER, UPDATE";
/// Extensions we support (sent in Supported): RFC 4488 (no implicit REFER subscription on request).
const SUPPORTED_EXTENSIONS: &[&str] = &["norefersub"];
/// Body types we accept in an INVITE (multipart bodies carry SDP beside e.g. an ISUP part).
const ACCEPTED_BODIES: &str = "application/sdp, multipart/mixed";
/// Fields a user may not set on requests and responses: the core owns them.
const RESERVED_HEADERS: &[&str] =
    &["Via", "Call-ID", "CSeq", "From", "To", "Contact", "Content-Length", "Max-Forwards", "Route", "Record-Route"];

/// A call the endpoint is handling (inbound or outbound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallHandle(pub u64);

/// A request we sent inside a call (INFO, REFER, NOTIFY, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestHandle(pub u64);

/// A request the peer sent inside a call that waits for the user's answer ([`Endpoint::respond`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IncomingRequestHandle(pub u64);

impl fmt::Display for CallHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call-{}", self.0)
    }
}

impl fmt::Display for RequestHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request-{}", self.0)
    }
}

impl fmt::Display for IncomingRequestHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "incoming-{}", self.0)
    }
}

/// Settings of one endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Our listening sockets: outbound requests leave from the one matching transport and address family.
    pub listeners: Vec<(Transport, SocketAddr)>,
    /// The host written in Via and Contact instead of the socket address (e.g. behind NAT).
    pub advertised_host: Option<Host>,
    /// The user part of our Contact.
    pub contact_user: String,
    /// Sent as User-Agent and Server.
    pub user_agent: String,
    /// T1, T2, T4.
    pub timers: TimerSettings,
    /// Seed for tags, branches and Call-IDs; the driver passes OS randomness.
    pub id_seed: u64,
    /// Retry-After sent with the 503 that refuses new calls while the endpoint sheds load (see
    /// [`Endpoint::set_shedding`]).
    pub shed_retry_after: Duration,
}

impl Default for EndpointConfig {
    fn default() -> EndpointConfig {
        EndpointConfig {
            listeners: Vec::new(),
            advertised_host: None,
            contact_user: "callwright".into(),
            user_agent: concat!("callwright/", env!("CARGO_PKG_VERSION")).into(),
            timers: TimerSettings::default(),
            id_seed: 0x5eed,
            shed_retry_after: Duration::from_secs(5),
        }
    }
}

/// Which side started the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The peer called us.
    Inbound,
    /// We called the peer.
    Outbound,
}

/// Why a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The peer sent BYE.
    RemoteHangup,
    /// We sent BYE (or CANCEL) at the user's request.
    LocalHangup,
    /// The peer CANCELled before we answered.
    Cancelled,
    /// We answered but the ACK never came; we sent BYE (RFC 3261 §13.3.1.4).
    AckTimeout,
    /// We rejected the call with this status.
    Rejected(u16),
    /// Our outbound INVITE got this final status (408 on timeout).
    Failed(u16),
}

/// Something the endpoint's user must know or act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new inbound call: answer with [`Endpoint::answer`] or [`Endpoint::reject`].
    IncomingCall {
        /// The call.
        call: CallHandle,
        /// The INVITE.
        request: Request,
        /// Where it came from.
        flow: Flow,
    },
    /// Outbound call: a provisional response.
    CallProgress {
        /// The call.
        call: CallHandle,
        /// The response.
        response: Response,
    },
    /// Outbound call: answered (we sent the ACK).
    CallAnswered {
        /// The call.
        call: CallHandle,
        /// The 2xx.
        response: Response,
    },
    /// Inbound call: the ACK for our 2xx arrived.
    CallConfirmed {
        /// The call.
        call: CallHandle,
        /// The ACK's body: the answer to an offer we made in the 2xx when the INVITE had none (RFC 3261
        /// §13.2.1); empty otherwise.
        ack_body: Vec<u8>,
    },
    /// The call is over (sent once per call).
    CallEnded {
        /// The call.
        call: CallHandle,
        /// Why.
        reason: EndReason,
    },
    /// The peer sent a request inside the call that the user answers ([`Endpoint::respond`]): INFO,
    /// MESSAGE, REFER, or a NOTIFY for a subscription the user opened with SUBSCRIBE (the core answers
    /// any other NOTIFY itself).
    Request {
        /// The call.
        call: CallHandle,
        /// Pass to [`Endpoint::respond`].
        handle: IncomingRequestHandle,
        /// The request.
        request: Request,
    },
    /// The final response to a request we sent with [`Endpoint::send_request`] (a 408 made up locally when
    /// none came).
    Response {
        /// The call.
        call: CallHandle,
        /// The request.
        request: RequestHandle,
        /// The response.
        response: Response,
    },
    /// A NOTIFY for one of our REFERs (answered 200 already).
    ReferNotify {
        /// The call.
        call: CallHandle,
        /// The REFER it reports on.
        refer: RequestHandle,
        /// The status line of the `message/sipfrag` body, if it had one.
        status: Option<u16>,
        /// `Subscription-State: terminated`: no more NOTIFYs follow.
        terminated: bool,
    },
}

/// Extra header fields and body for a request or response the user asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// Header fields, added after the core's own.
    pub headers: Vec<(String, String)>,
    /// Content-Type of the body, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Extras {
    /// A body of the given type.
    pub fn body(content_type: &str, body: impl Into<Vec<u8>>) -> Extras {
        Extras { headers: Vec::new(), content_type: Some(content_type.into()), body: body.into() }
    }

    /// Adds a header field.
    pub fn header(mut self, name: &str, value: &str) -> Extras {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn check(&self) -> Result<(), Error> {
        for (name, value) in &self.headers {
            if RESERVED_HEADERS.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                return Err(Error::BadArgument(format!("{name} is set by the SIP core and cannot be given")));
            }
            let name_ok =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b));
            if !name_ok || value.contains(['\r', '\n']) {
                return Err(Error::BadArgument(format!("header {name:?} is not a valid field")));
            }
        }
        Ok(())
    }

    fn apply(&self, headers: &mut crate::message::Headers, body: &mut Vec<u8>) {
        for (name, value) in &self.headers {
            headers.push(name, value.clone());
        }
        if let Some(content_type) = &self.content_type {
            headers.set("Content-Type", content_type.clone());
        }
        body.clone_from(&self.body);
    }
}

/// An outbound call to place with [`Endpoint::invite`].
#[derive(Debug, Clone)]
pub struct OutboundCall {
    /// Request-URI.
    pub target: Uri,
    /// Our identity (From, without tag).
    pub from: NameAddr,
    /// The callee (To); defaults to the target.
    pub to: Option<NameAddr>,
    /// Where to send the INVITE (the core does no DNS).
    pub destination: SocketAddr,
    /// Transport.
    pub transport: Transport,
    /// Credentials for a 401/407 challenge.
    pub credentials: Option<Credentials>,
    /// Extra headers and the SDP offer.
    pub extras: Extras,
}

/// A request to send inside a call with [`Endpoint::send_request`].
#[derive(Debug, Clone)]
pub struct InDialogRequest {
    /// The method (not INVITE, ACK, CANCEL or BYE: those have their own commands).
    pub method: Method,
    /// Extra headers and body.
    pub extras: Extras,
    /// Credentials for a 401/407 challenge.
    pub credentials: Option<Credentials>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// Inbound, no final response sent yet.
    Ringing,
    /// Inbound, 2xx sent, waiting for ACK.
    AwaitingAck,
    /// Outbound, no final response yet.
    Calling,
    /// Both ACKed: the call is up.
    Confirmed,
    /// We sent BYE and wait for its response.
    Terminating,
    /// Over; kept while REFER subscriptions may still NOTIFY.
    Ended,
}

impl CallState {
    fn name(self) -> &'static str {
        match self {
            CallState::Ringing => "ringing",
            CallState::AwaitingAck => "awaiting ACK",
            CallState::Calling => "calling",
            CallState::Confirmed => "confirmed",
            CallState::Terminating => "terminating",
            CallState::Ended => "ended",
        }
    }
}

/// A 2xx to an INVITE the UAS core retransmits until the ACK comes (§13.3.1.4).
#[derive(Debug)]
struct Pending2xx {
    cseq: u32,
    bytes: Vec<u8>,
    /// It carries our offer (the INVITE had none): the ACK carries the answer.
    offers: bool,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubscriptionState {
    /// REFER sent, no final answer yet (a NOTIFY may still come first).
    Pending,
    /// REFER accepted.
    Active,
    /// The final NOTIFY came, the REFER failed, or RFC 4488 suppressed it.
    Terminated,
}

/// What a NOTIFY is matched on (RFC 6665 §8.2.1): the event-type of its Event header and the `id`
/// parameter, both compared byte by byte; an `id` never matches its absence. Other parameters do not count.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EventKey {
    package: String,
    id: Option<String>,
}

impl EventKey {
    /// The key of a request's Event header; `None` without one or with an empty event-type.
    fn of(request: &Request) -> Option<EventKey> {
        // A user's own SUBSCRIBE may spell the field in its compact form; received ones are expanded.
        let value = request.headers.get("Event").or_else(|| request.headers.get("o"))?;
        let mut parts = value.split(';');
        let package = parts.next()?.trim();
        if package.is_empty() {
            return None;
        }
        let id = parts.find_map(|p| {
            let (name, value) = p.split_once('=')?;
            name.trim().eq_ignore_ascii_case("id").then(|| value.trim().to_string())
        });
        Some(EventKey { package: package.to_string(), id })
    }
}

/// A subscription the user opened with a SUBSCRIBE inside a call (RFC 6665 §4.1): its NOTIFYs reach the
/// user as [`Event::Request`]. It is dropped once a NOTIFY says `terminated` or the SUBSCRIBE that would
/// create it fails; NOTIFYs for it are then answered 481.
#[derive(Debug)]
struct EventSubscription {
    event: EventKey,
    /// Pending until the 2xx or a first NOTIFY (which may come first, RFC 6665 §4.1.2.4).
    state: SubscriptionState,
}

/// The implicit subscription a REFER creates (RFC 3515 §2.4.4).
#[derive(Debug)]
struct ReferSubscription {
    refer: RequestHandle,
    /// The REFER's CSeq: the `id` of `Event: refer;id=…`.
    id: u32,
    state: SubscriptionState,
}

#[derive(Debug)]
struct Call {
    direction: Direction,
    state: CallState,
    invite: Request,
    flow: Flow,
    local_tag: String,
    dialog: Option<Dialog>,
    server_key: Option<ServerKey>,
    client_key: Option<ClientKey>,
    pending_2xx: Option<Pending2xx>,
    /// The ACK we sent for the 2xx (resent when the 2xx is retransmitted).
    ack: Option<Vec<u8>>,
    bye_after_ack: bool,
    /// Requests the user sent in this inbound call before the ACK came: sent once it does, so none can
    /// overtake the 2xx (over a proxy and TCP, a REFER left right after the 200 and arrived first).
    after_ack: Vec<(RequestHandle, InDialogRequest)>,
    cancel_when_provisional: bool,
    credentials: Option<Credentials>,
    auth_attempts: u8,
    subscriptions: Vec<ReferSubscription>,
    /// Subscriptions of SUBSCRIBEs the user sent in this call.
    event_subscriptions: Vec<EventSubscription>,
    ended_reported: bool,
    forget_at: Option<Instant>,
    pending_incoming: Vec<IncomingRequestHandle>,
    /// REFERs the far end sent in this dialog (a later one's NOTIFYs carry `Event: refer;id=`).
    refers_received: u32,
    /// The session description we last sent (re-INVITE and UPDATE are answered with it when the user set
    /// no [`OfferAnswerer`]).
    local_sdp: Option<Vec<u8>>,
    offer_answerer: Option<AnswererSlot>,
}

/// The user's side of the offers and answers the far end sends inside a call. It runs inside the
/// endpoint, so it must not block. A closure `FnMut(&[u8]) -> Result<Vec<u8>, u16>` is one that only
/// answers.
pub trait OfferAnswer: Send {
    /// Answers a new SDP offer the far end makes inside a call (a re-INVITE or UPDATE with a body: hold,
    /// resume, a new address) with the session the user now has: `Ok(answer)`, or `Err(status)` (488,
    /// 400) to refuse it, the session staying as it was (RFC 3261 §14.2).
    fn answer(&mut self, offer: &[u8]) -> Result<Vec<u8>, u16>;

    /// The offer to put in the 2xx to a re-INVITE that carried none: our full session, so the far end
    /// can resume a stream it had held (RFC 6337 §5.3). `None`: the session we last sent.
    fn offer(&mut self) -> Option<Vec<u8>> {
        None
    }

    /// Takes the far end's answer, in its ACK, to the session we offered in the 2xx to a re-INVITE that
    /// carried no offer (RFC 3261 §14.2, RFC 3264 §8): the far end may have moved, held or resumed.
    fn accept_answer(&mut self, answer: &[u8]) {
        let _ = answer;
    }
}

impl<F: FnMut(&[u8]) -> Result<Vec<u8>, u16> + Send> OfferAnswer for F {
    fn answer(&mut self, offer: &[u8]) -> Result<Vec<u8>, u16> {
        self(offer)
    }
}

/// The user's [`OfferAnswer`] for a call (see [`Endpoint::set_offer_answerer`]).
pub type OfferAnswerer = Box<dyn OfferAnswer>;

struct AnswererSlot(OfferAnswerer);

impl std::fmt::Debug for AnswererSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OfferAnswerer")
    }
}

impl Call {
    /// A call the peer's `invite` starts, ringing, answered through the server transaction `key`.
    fn inbound(invite: Request, flow: Flow, local_tag: String, key: ServerKey) -> Call {
        Call { server_key: Some(key), ..Call::new(Direction::Inbound, CallState::Ringing, invite, flow, local_tag) }
    }

    /// A call we place with `invite` (its body is our session description), sent with `credentials` for
    /// a challenge.
    fn outbound(invite: Request, flow: Flow, local_tag: String, credentials: Option<Credentials>) -> Call {
        let local_sdp = (!invite.body.is_empty()).then(|| invite.body.clone());
        Call { credentials, local_sdp, ..Call::new(Direction::Outbound, CallState::Calling, invite, flow, local_tag) }
    }

    fn new(direction: Direction, state: CallState, invite: Request, flow: Flow, local_tag: String) -> Call {
        Call {
            direction,
            state,
            invite,
            flow,
            local_tag,
            dialog: None,
            server_key: None,
            client_key: None,
            pending_2xx: None,
            ack: None,
            bye_after_ack: false,
            after_ack: Vec::new(),
            cancel_when_provisional: false,
            credentials: None,
            auth_attempts: 0,
            subscriptions: Vec::new(),
            event_subscriptions: Vec::new(),
            ended_reported: false,
            forget_at: None,
            pending_incoming: Vec::new(),
            refers_received: 0,
            local_sdp: None,
            offer_answerer: None,
        }
    }

    /// An outbound call still waiting for the final response to its INVITE.
    fn awaits_invite_final(&self) -> bool {
        self.direction == Direction::Outbound
            && self.dialog.is_none()
            && matches!(self.state, CallState::Calling | CallState::Terminating)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientOwner {
    Invite(CallHandle),
    Bye(CallHandle),
    Cancel(CallHandle),
    InDialog(CallHandle, RequestHandle),
}

#[derive(Debug)]
struct OutgoingRequest {
    credentials: Option<Credentials>,
    auth_attempts: u8,
}

#[derive(Debug)]
struct IncomingRequest {
    call: CallHandle,
    key: ServerKey,
    request: Request,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Server(u64),
    Client(u64),
    Call(CallHandle),
}

/// The SIP endpoint: a sans-IO state machine. See the module docs for the order of calls.
#[derive(Debug)]
pub struct Endpoint {
    config: EndpointConfig,
    ids: IdGenerator,
    next_handle: u64,
    server_transactions: HashMap<ServerKey, (u64, ServerTransaction)>,
    server_by_id: HashMap<u64, ServerKey>,
    client_transactions: HashMap<ClientKey, (u64, ClientTransaction, ClientOwner)>,
    client_by_id: HashMap<u64, ClientKey>,
    /// Requests without To tag seen on a live transaction: (From tag, Call-ID, CSeq) → branch key.
    merge_index: HashMap<(String, String, u32), ServerKey>,
    /// The merge-index entry each server transaction added, so ending it removes that entry in O(1).
    merge_key_of: HashMap<ServerKey, (String, String, u32)>,
    calls: HashMap<CallHandle, Call>,
    /// (Call-ID, our tag) → call; the peer's tag is checked against the dialog.
    dialog_index: HashMap<(String, String), CallHandle>,
    outgoing: HashMap<RequestHandle, OutgoingRequest>,
    incoming: HashMap<IncomingRequestHandle, IncomingRequest>,
    /// The subscriptions of REFERs the far end sent, by REFER, until their final NOTIFY or their call is
    /// forgotten.
    refer_notifiers: HashMap<IncomingRequestHandle, ReferNotifier>,
    timers: BinaryHeap<Reverse<(Instant, TimerKey)>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// While set, new INVITEs are refused with 503 before any call exists.
    shedding: bool,
    /// New INVITEs refused while shedding.
    calls_shed: u64,
}

fn response_to(request: &Request, status: u16, to_tag: Option<&str>) -> Response {
    let mut response = Response::new(status);
    for via in request.headers.get_all("Via") {
        response.headers.push("Via", via);
    }
    for name in ["From", "To", "Call-ID", "CSeq"] {
        if let Some(value) = request.headers.get(name) {
            response.headers.push(name, value);
        }
    }
    if let (Some(tag), Ok(mut to)) = (to_tag, request.headers.name_addr("To"))
        && to.tag().is_none()
        && status > 100
    {
        to.params.set("tag", Some(tag));
        response.headers.set("To", to.to_string());
    }
    response
}

/// The Via-based address for responses (RFC 3261 §18.2.2, RFC 3581): over a stream, the same flow; over
/// UDP, `received`/`rport` when present, else the sent-by.
fn response_flow(request: &Request, flow: Flow) -> Flow {
    if flow.transport.is_reliable() {
        return flow;
    }
    let Ok(via) = request.headers.top_via() else {
        return flow;
    };
    let ip = via
        .params
        .get("received")
        .flatten()
        .and_then(|r| r.parse::<IpAddr>().ok())
        .or_else(|| via.host.ip())
        .unwrap_or(flow.remote.ip());
    let port = via.params.get("rport").flatten().and_then(|p| p.parse().ok()).or(via.port).unwrap_or(5060);
    Flow { remote: SocketAddr::new(ip, port), ..flow }
}

/// Stamps `received` and `rport` into the top Via of a request that arrived on `flow`.
fn stamp_via(request: &mut Request, flow: Flow) {
    let Ok(mut via) = request.headers.top_via() else {
        return;
    };
    if via.host.ip() != Some(flow.remote.ip()) {
        via.params.set("received", Some(&flow.remote.ip().to_string()));
    }
    if via.params.get("rport") == Some(None) {
        via.params.set("rport", Some(&flow.remote.port().to_string()));
        via.params.set("received", Some(&flow.remote.ip().to_string()));
    }
    let Some(top) = request.headers.remove_first("Via") else {
        return;
    };
    // A Via line may hold several entries; only the first changes.
    let mut entries = split_via_entries(&top);
    if !entries.is_empty() {
        entries[0] = via.to_string();
    }
    request.headers.push_front("Via", entries.join(", "));
}

fn split_via_entries(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth_quote = false;
    let mut start = 0;
    for (i, c) in value.char_indices() {
        match c {
            '"' => depth_quote = !depth_quote,
            ',' if !depth_quote => {
                out.push(value[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim().to_string());
    out
}

/// The option tags of `Require` we do not support (RFC 3261 §8.2.2.3).
fn unsupported_requirements(request: &Request) -> Vec<String> {
    let tags = request.headers.option_tags("Require").into_iter();
    tags.filter(|tag| !SUPPORTED_EXTENSIONS.contains(&tag.as_str())).collect()
}

/// `Subscription-State: terminated`: the notifier ends the subscription with this NOTIFY (RFC 6665 §4.1.3).
fn ends_subscription(request: &Request) -> bool {
    request
        .headers
        .get("Subscription-State")
        .is_some_and(|s| s.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("terminated"))
}

/// The status line of a `message/sipfrag` body (RFC 3420), e.g. `SIP/2.0 180 Ringing`.
fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?.trim();
    let rest = line.strip_prefix("SIP/2.0 ")?;
    let code = rest.get(..3)?;
    code.parse().ok().filter(|c| (100..700).contains(c))
}

impl Endpoint {
    /// A new endpoint.
    pub fn new(config: EndpointConfig) -> Endpoint {
        Endpoint {
            ids: IdGenerator::new(config.id_seed),
            config,
            next_handle: 1,
            server_transactions: HashMap::new(),
            server_by_id: HashMap::new(),
            client_transactions: HashMap::new(),
            client_by_id: HashMap::new(),
            merge_index: HashMap::new(),
            merge_key_of: HashMap::new(),
            calls: HashMap::new(),
            dialog_index: HashMap::new(),
            outgoing: HashMap::new(),
            incoming: HashMap::new(),
            refer_notifiers: HashMap::new(),
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            shedding: false,
            calls_shed: 0,
        }
    }

    /// Starts or stops shedding load: while on, a new INVITE is answered 503 with Retry-After at once,
    /// through its transaction (so its retransmissions and ACK are absorbed) but without a call, an event
    /// or a 100 Trying. Everything else (calls in progress, their requests, OPTIONS) is served as usual.
    /// The driver turns it on when the requests it reads have queued too long.
    pub fn set_shedding(&mut self, shedding: bool) {
        self.shedding = shedding;
    }

    /// Whether new calls are being refused (see [`Endpoint::set_shedding`]).
    pub fn is_shedding(&self) -> bool {
        self.shedding
    }

    /// How many new INVITEs were refused while shedding.
    pub fn calls_shed(&self) -> u64 {
        self.calls_shed
    }

    /// The settings in force.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// How many calls are live (including ended ones still lingering for NOTIFYs).
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// The dialog of a call once it has one (after the answer): Call-ID, tags, remote target. Attended
    /// transfer builds its Replaces value from it.
    pub fn dialog(&self, handle: CallHandle) -> Option<&Dialog> {
        self.calls.get(&handle)?.dialog.as_ref()
    }

    /// How many transactions are live.
    pub fn transaction_count(&self) -> usize {
        self.server_transactions.len() + self.client_transactions.len()
    }

    /// The next datagram or stream write to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the user.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    fn new_handle(&mut self) -> u64 {
        self.next_handle += 1;
        self.next_handle
    }

    /// Has `answerer` answer the offers the far end makes inside call `handle` from now on.
    pub fn set_offer_answerer(&mut self, handle: CallHandle, answerer: OfferAnswerer) -> Result<(), Error> {
        self.call_mut(handle)?.offer_answerer = Some(AnswererSlot(answerer));
        Ok(())
    }

    /// The offer for the 2xx to a re-INVITE without one: the user's [`OfferAnswer`]'s, or the session we
    /// last sent.
    fn offer_in_dialog(&mut self, handle: CallHandle) -> Option<Vec<u8>> {
        let call = self.calls.get_mut(&handle).expect("indexed call exists");
        let offer = call.offer_answerer.as_mut().and_then(|AnswererSlot(answerer)| answerer.offer());
        if offer.is_some() {
            call.local_sdp.clone_from(&offer);
        }
        offer.or_else(|| call.local_sdp.clone())
    }

    /// The answer to `offer`, a new offer inside call `handle`: the user's [`OfferAnswerer`]'s, or the
    /// session we last sent when there is none. `Err(status)` refuses the offer.
    fn answer_in_dialog_offer(&mut self, handle: CallHandle, offer: &[u8]) -> Result<Option<Vec<u8>>, u16> {
        let call = self.calls.get_mut(&handle).expect("indexed call exists");
        match call.offer_answerer.as_mut() {
            Some(AnswererSlot(answerer)) => {
                let answer = answerer.answer(offer)?;
                call.local_sdp = Some(answer.clone());
                Ok(Some(answer))
            }
            None => Ok(call.local_sdp.clone()),
        }
    }

    fn call_mut(&mut self, handle: CallHandle) -> Result<&mut Call, Error> {
        self.calls.get_mut(&handle).ok_or(Error::UnknownCall(handle))
    }

    fn invalid(handle: CallHandle, operation: &'static str, call: &Call) -> Error {
        match call.state {
            CallState::Ended => Error::CallEnded { call: handle, operation },
            _ => Error::InvalidState { call: handle, operation, state: call.state.name() },
        }
    }
}

fn dialog_seq(request: &Request) -> u32 {
    request.headers.cseq().map(|c| c.seq).unwrap_or_default()
}
