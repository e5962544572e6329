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
    /// The session description we last sent (re-INVITE and UPDATE are answered with it).
    local_sdp: Option<Vec<u8>>,
}

impl Call {
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

    // ----- input -----

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
    fn answer_unparsed(&mut self, flow: Flow, error: ParseError, status: u16, warning: &str) {
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

    fn send_stateless(&mut self, request: &Request, flow: Flow, mut response: Response) {
        self.add_common_headers(&mut response.headers);
        let flow = response_flow(request, flow);
        self.transmits.push_back(Transmit { flow, bytes: response.to_bytes() });
    }

    fn add_common_headers(&self, headers: &mut crate::message::Headers) {
        headers.push("Server", self.config.user_agent.clone());
    }

    fn on_request(&mut self, now: Instant, flow: Flow, request: Request) {
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
    fn precheck(&self, request: &Request) -> Option<u16> {
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

    fn reject_stateless(&mut self, now: Instant, key: ServerKey, flow: Flow, request: &Request, status: u16) {
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

    fn respond_on(&mut self, now: Instant, key: &ServerKey, request: &Request, mut response: Response) {
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

    fn on_out_of_dialog_request(&mut self, now: Instant, key: ServerKey, flow: Flow, request: Request) {
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

    fn on_new_invite(&mut self, now: Instant, key: ServerKey, flow: Flow, request: Request) {
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
        self.calls.insert(
            handle,
            Call {
                direction: Direction::Inbound,
                state: CallState::Ringing,
                invite: request.clone(),
                flow,
                local_tag,
                dialog: None,
                server_key: Some(key),
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
            },
        );
        self.events.push_back(Event::IncomingCall { call: handle, request, flow });
    }

    fn find_call(&self, request: &Request, to_tag: &str) -> Option<CallHandle> {
        let call_id = request.headers.call_id()?.to_string();
        let handle = *self.dialog_index.get(&(call_id, to_tag.to_string()))?;
        let call = self.calls.get(&handle)?;
        let from_tag = request.headers.tag("From").unwrap_or_default();
        let remote_tag = match &call.dialog {
            Some(dialog) => dialog.id.remote_tag.clone(),
            None => call.invite.headers.tag("From").unwrap_or_default(),
        };
        (remote_tag == from_tag).then_some(handle)
    }

    fn on_in_dialog_request(&mut self, now: Instant, key: ServerKey, flow: Flow, request: Request, to_tag: String) {
        let Some(handle) = self.find_call(&request, &to_tag) else {
            let response = response_to(&request, 481, None);
            return self.respond_on(now, &key, &request, response);
        };
        let cseq = match request.headers.cseq() {
            Ok(cseq) => cseq,
            Err(_) => return,
        };
        let call = self.calls.get_mut(&handle).expect("indexed call exists");
        if let Some(dialog) = call.dialog.as_mut() {
            if dialog.check_remote_seq(&cseq) == SequenceCheck::OutOfOrder {
                let response = response_to(&request, 500, None);
                return self.respond_on(now, &key, &request, response);
            }
            // A target refresh (re-INVITE, UPDATE) may move the peer's Contact (§12.2.2).
            if matches!(request.method, Method::Invite | Method::Update)
                && let Some(contact) = request.headers.name_addrs("Contact").ok().and_then(|c| c.into_iter().next())
            {
                dialog.remote_target = contact.uri;
            }
        }
        let _ = flow;
        match request.method {
            Method::Bye => self.on_bye(now, handle, key, request),
            Method::Notify => self.on_notify(now, handle, key, request),
            Method::Invite => self.on_reinvite(now, handle, key, request),
            Method::Options => {
                let mut response = response_to(&request, 200, None);
                response.headers.push("Allow", ALLOWED_METHODS);
                self.respond_on(now, &key, &request, response);
            }
            Method::Update => {
                let call = &self.calls[&handle];
                let mut response = response_to(&request, 200, None);
                if !request.body.is_empty() {
                    // We hold no media of our own: answer an offer with the session we last agreed.
                    if let Some(sdp) = call.local_sdp.clone() {
                        response.headers.push("Content-Type", "application/sdp");
                        response.body = sdp;
                    }
                }
                self.respond_on(now, &key, &request, response);
            }
            _ => self.pass_to_user(now, handle, key, request),
        }
    }

    /// Hands an in-dialog request to the user, who answers it with [`Endpoint::respond`]; an ended call has
    /// no one left to answer, so 481.
    fn pass_to_user(&mut self, now: Instant, handle: CallHandle, key: ServerKey, request: Request) {
        let call = self.calls.get_mut(&handle).expect("indexed call exists");
        if call.state == CallState::Ended {
            let response = response_to(&request, 481, None);
            return self.respond_on(now, &key, &request, response);
        }
        let incoming = IncomingRequestHandle(self.new_handle());
        let call = self.calls.get_mut(&handle).expect("indexed call exists");
        call.pending_incoming.push(incoming);
        if request.method == Method::Refer {
            let earlier = call.refers_received;
            call.refers_received += 1;
            if let Some(notifier) = ReferNotifier::for_refer(handle, &request, earlier) {
                self.refer_notifiers.insert(incoming, notifier);
            }
        }
        self.incoming.insert(incoming, IncomingRequest { call: handle, key, request: request.clone() });
        self.events.push_back(Event::Request { call: handle, handle: incoming, request });
    }

    /// A NOTIFY inside a call. It must belong to a subscription we hold, else the subscriber answers 481
    /// (RFC 6665 §4.1.3): the implicit one of a REFER we sent (answered here, [`Event::ReferNotify`]) or
    /// one the user opened with SUBSCRIBE (passed to the user). Nothing else reaches the user, so an app
    /// that answers every request 200 cannot accept state it never asked for.
    fn on_notify(&mut self, now: Instant, handle: CallHandle, key: ServerKey, request: Request) {
        let Some(event) = EventKey::of(&request) else {
            // Event is mandatory in NOTIFY (RFC 6665 §8.2.1): without it the request is malformed, and
            // §4.1.3 prefers a more fitting 4xx over 481.
            let mut response = response_to(&request, 400, None);
            response.reason = "Missing Event header".into();
            return self.respond_on(now, &key, &request, response);
        };
        if self.matches_refer_subscription(handle, &request) {
            return self.on_refer_notify(now, handle, key, request);
        }
        let call = self.calls.get_mut(&handle).expect("indexed call exists");
        let Some(index) = call.event_subscriptions.iter().position(|s| s.event == event) else {
            let response = response_to(&request, 481, None);
            return self.respond_on(now, &key, &request, response);
        };
        if ends_subscription(&request) {
            call.event_subscriptions.remove(index);
        } else {
            call.event_subscriptions[index].state = SubscriptionState::Active;
        }
        // In an ended call this answers 481, which ends the subscription at the notifier too (RFC 6665
        // §4.2.2): with the call gone there is no one left to take its state.
        self.pass_to_user(now, handle, key, request);
    }

    fn on_reinvite(&mut self, now: Instant, handle: CallHandle, key: ServerKey, request: Request) {
        let trying = response_to(&request, 100, None);
        self.respond_on(now, &key, &request, trying);
        let call = &self.calls[&handle];
        if call.state != CallState::Confirmed {
            let status = if call.pending_2xx.is_some() { 491 } else { 481 };
            let response = response_to(&request, status, None);
            return self.respond_on(now, &key, &request, response);
        }
        // Session refresh or hold: we handle no media, so we answer with the session as it stands.
        let mut response = response_to(&request, 200, None);
        if let Some(dialog) = &call.dialog {
            response.headers.push("Contact", dialog.local_contact.to_string());
        }
        if let Some(sdp) = call.local_sdp.clone() {
            response.headers.push("Content-Type", "application/sdp");
            response.body = sdp;
        }
        let cseq = request.headers.cseq().map(|c| c.seq).unwrap_or_default();
        self.send_2xx_to_invite(now, handle, key, &request, response, cseq);
    }

    fn send_2xx_to_invite(
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
            next: now + timers.retransmit_start(),
            interval: timers.retransmit_start(),
            give_up: now + timers.timeout_64t1(),
        });
        let _ = request;
        self.schedule_call(handle);
    }

    fn on_ack(&mut self, now: Instant, key: ServerKey, request: Request) {
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
        call.pending_2xx = None;
        if call.state == CallState::AwaitingAck {
            call.state = CallState::Confirmed;
            let waiting = std::mem::take(&mut call.after_ack);
            self.events.push_back(Event::CallConfirmed { call: handle });
            for (request_handle, request) in waiting {
                self.send_in_dialog(now, handle, request_handle, request);
            }
            if self.calls[&handle].bye_after_ack {
                self.send_bye(now, handle);
            }
        }
    }

    fn on_cancel(&mut self, now: Instant, key: ServerKey, flow: Flow, request: Request) {
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

    fn on_bye(&mut self, now: Instant, handle: CallHandle, key: ServerKey, request: Request) {
        let response = response_to(&request, 200, None);
        self.respond_on(now, &key, &request, response);
        let call = self.calls.get_mut(&handle).expect("indexed call exists");
        call.pending_2xx = None;
        if call.state == CallState::Ringing {
            // BYE on an early dialog (§15.1.2): the INVITE gets 487.
            if let Some(invite_key) = call.server_key.clone() {
                let invite = call.invite.clone();
                let tag = call.local_tag.clone();
                let terminated = response_to(&invite, 487, Some(&tag));
                self.respond_on(now, &invite_key, &invite, terminated);
            }
        }
        self.end_call(now, handle, EndReason::RemoteHangup);
    }

    fn matches_refer_subscription(&self, handle: CallHandle, request: &Request) -> bool {
        self.refer_subscription_index(handle, request).is_some()
    }

    fn refer_subscription_index(&self, handle: CallHandle, request: &Request) -> Option<usize> {
        let event = request.headers.get("Event")?;
        let mut parts = event.split(';');
        if !parts.next()?.trim().eq_ignore_ascii_case("refer") {
            return None;
        }
        let id = parts.find_map(|p| {
            let (name, value) = p.split_once('=')?;
            name.trim().eq_ignore_ascii_case("id").then(|| value.trim().parse::<u32>().ok()).flatten()
        });
        let subscriptions = &self.calls.get(&handle)?.subscriptions;
        match id {
            Some(id) => subscriptions.iter().position(|s| s.id == id),
            None => subscriptions.iter().position(|s| s.state != SubscriptionState::Terminated),
        }
    }

    fn on_refer_notify(&mut self, now: Instant, handle: CallHandle, key: ServerKey, request: Request) {
        let index = self.refer_subscription_index(handle, &request).expect("matched before");
        let terminated = ends_subscription(&request);
        let call = self.calls.get_mut(&handle).expect("indexed call exists");
        let subscription = &mut call.subscriptions[index];
        let refer = subscription.refer;
        if subscription.state == SubscriptionState::Terminated {
            let response = response_to(&request, 481, None);
            return self.respond_on(now, &key, &request, response);
        }
        if terminated {
            subscription.state = SubscriptionState::Terminated;
        } else if subscription.state == SubscriptionState::Pending {
            subscription.state = SubscriptionState::Active;
        }
        let response = response_to(&request, 200, None);
        self.respond_on(now, &key, &request, response);
        let status = sipfrag_status(&request.body);
        self.events.push_back(Event::ReferNotify { call: handle, refer, status, terminated });
        if terminated {
            self.maybe_forget_soon(now, handle);
        }
    }

    // ----- responses -----

    fn on_response(&mut self, now: Instant, response: Response) {
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
    fn on_stray_response(&mut self, _now: Instant, response: Response) {
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

    fn on_invite_response(&mut self, now: Instant, handle: CallHandle, invite: &Request, response: Response) {
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

    fn on_invite_2xx(&mut self, now: Instant, handle: CallHandle, invite: &Request, response: Response) {
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

    fn on_in_dialog_response(
        &mut self,
        now: Instant,
        handle: CallHandle,
        request_handle: RequestHandle,
        request: &Request,
        response: Response,
    ) {
        if response.status < 200 {
            return;
        }
        if matches!(response.status, 401 | 407) {
            let outgoing = self.outgoing.get_mut(&request_handle);
            if let Some(outgoing) = outgoing.filter(|o| o.credentials.is_some() && o.auth_attempts < 2) {
                outgoing.auth_attempts += 1;
                let credentials = outgoing.credentials.clone();
                if let Some(mut retry) = self.authorized_retry(request, &response, credentials.as_ref()) {
                    if let Some(dialog) = self.calls.get_mut(&handle).and_then(|c| c.dialog.as_mut()) {
                        dialog.local_seq += 1;
                        retry.headers.set("CSeq", format!("{} {}", dialog.local_seq, request.method));
                        if request.method == Method::Refer {
                            self.retarget_subscription(handle, request_handle, dialog_seq(&retry));
                        }
                    }
                    let flow = self.calls[&handle].flow;
                    self.start_client(now, flow, retry, ClientOwner::InDialog(handle, request_handle));
                    return;
                }
            }
        }
        self.outgoing.remove(&request_handle);
        if request.method == Method::Refer {
            let no_subscription =
                response.headers.get("Refer-Sub").is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
            if let Some(call) = self.calls.get_mut(&handle)
                && let Some(subscription) = call.subscriptions.iter_mut().find(|s| s.refer == request_handle)
            {
                if response.status >= 300 || no_subscription {
                    subscription.state = SubscriptionState::Terminated;
                } else if subscription.state == SubscriptionState::Pending {
                    subscription.state = SubscriptionState::Active;
                }
            }
        }
        if request.method == Method::Subscribe {
            self.on_subscribe_outcome(handle, request, response.status);
        }
        self.events.push_back(Event::Response { call: handle, request: request_handle, response });
        self.maybe_forget_soon(now, handle);
    }

    /// The final status of a SUBSCRIBE we sent (408 when none came). A failed first SUBSCRIBE created
    /// nothing; a failed refresh leaves the subscription as it was, unless 481 says it is already gone
    /// (RFC 6665 §4.1.2.2).
    fn on_subscribe_outcome(&mut self, handle: CallHandle, subscribe: &Request, status: u16) {
        let Some(event) = EventKey::of(subscribe) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        let Some(index) = call.event_subscriptions.iter().position(|s| s.event == event) else {
            return;
        };
        let subscription = &mut call.event_subscriptions[index];
        if (200..300).contains(&status) {
            subscription.state = SubscriptionState::Active;
        } else if status == 481 || subscription.state == SubscriptionState::Pending {
            call.event_subscriptions.remove(index);
        }
    }

    fn retarget_subscription(&mut self, handle: CallHandle, refer: RequestHandle, id: u32) {
        if let Some(subscription) =
            self.calls.get_mut(&handle).and_then(|c| c.subscriptions.iter_mut().find(|s| s.refer == refer))
        {
            subscription.id = id;
        }
    }

    /// The request again with credentials answering the challenge in `response` and CSeq+1 (the new branch
    /// comes with its new transaction).
    fn authorized_retry(
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

    // ----- timers -----

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, key))) = self.timers.pop() else {
                break;
            };
            if !due.contains(&key) {
                due.push(key);
            }
        }
        for key in due {
            match key {
                TimerKey::Server(id) => self.server_timeout(now, id),
                TimerKey::Client(id) => self.client_timeout(now, id),
                TimerKey::Call(handle) => self.call_timeout(now, handle),
            }
        }
    }

    fn schedule(&mut self, key: TimerKey, deadline: Option<Instant>) {
        if let Some(at) = deadline {
            self.timers.push(Reverse((at, key)));
        }
    }

    fn schedule_call(&mut self, handle: CallHandle) {
        let Some(call) = self.calls.get(&handle) else {
            return;
        };
        let deadline =
            [call.pending_2xx.as_ref().map(|p| p.next.min(p.give_up)), call.forget_at].into_iter().flatten().min();
        self.schedule(TimerKey::Call(handle), deadline);
    }

    fn server_timeout(&mut self, now: Instant, id: u64) {
        let Some(key) = self.server_by_id.get(&id).cloned() else {
            return;
        };
        let Some((_, transaction)) = self.server_transactions.get_mut(&key) else {
            return;
        };
        if transaction.next_deadline().is_none_or(|d| d > now) {
            let deadline = transaction.next_deadline();
            return self.schedule(TimerKey::Server(id), deadline);
        }
        let timeout = transaction.handle_timeout(now, &self.config.timers, &mut self.transmits);
        if transaction.state() == ServerState::Terminated {
            self.server_transactions.remove(&key);
            self.server_by_id.remove(&id);
            if let Some(merge_key) = self.merge_key_of.remove(&key) {
                self.merge_index.remove(&merge_key);
            }
        } else {
            let deadline = transaction.next_deadline();
            self.schedule(TimerKey::Server(id), deadline);
        }
        if timeout == Some(ServerTimeout::NoAck) {
            // The peer never ACKed our rejection; the call is already over on our side.
        }
    }

    fn client_timeout(&mut self, now: Instant, id: u64) {
        let Some(key) = self.client_by_id.get(&id).cloned() else {
            return;
        };
        let timers = self.config.timers;
        let Some((_, transaction, owner)) = self.client_transactions.get_mut(&key) else {
            return;
        };
        if transaction.next_deadline().is_none_or(|d| d > now) {
            let deadline = transaction.next_deadline();
            return self.schedule(TimerKey::Client(id), deadline);
        }
        let timeout = transaction.handle_timeout(now, &timers, &mut self.transmits);
        let owner = *owner;
        let state = transaction.state();
        let deadline = transaction.next_deadline();
        let unanswered_subscribe = (timeout == Some(ClientTimeout::NoResponse)
            && transaction.request().method == Method::Subscribe)
            .then(|| transaction.request().clone());
        if state == ClientState::Terminated {
            self.client_transactions.remove(&key);
            self.client_by_id.remove(&id);
        } else {
            self.schedule(TimerKey::Client(id), deadline);
        }
        if timeout != Some(ClientTimeout::NoResponse) {
            return;
        }
        match owner {
            ClientOwner::Invite(handle) => {
                if self.calls.get(&handle).is_some_and(Call::awaits_invite_final) {
                    self.end_call(now, handle, EndReason::Failed(408));
                }
            }
            ClientOwner::Bye(handle) => self.end_call(now, handle, EndReason::LocalHangup),
            ClientOwner::Cancel(_) => {}
            ClientOwner::InDialog(handle, request) => {
                self.outgoing.remove(&request);
                if let Some(subscription) =
                    self.calls.get_mut(&handle).and_then(|c| c.subscriptions.iter_mut().find(|s| s.refer == request))
                {
                    subscription.state = SubscriptionState::Terminated;
                }
                if let Some(subscribe) = unanswered_subscribe {
                    self.on_subscribe_outcome(handle, &subscribe, 408);
                }
                self.events.push_back(Event::Response { call: handle, request, response: Response::new(408) });
                self.maybe_forget_soon(now, handle);
            }
        }
    }

    fn call_timeout(&mut self, now: Instant, handle: CallHandle) {
        let timers = self.config.timers;
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        if call.forget_at.is_some_and(|at| at <= now) {
            return self.forget_call(handle);
        }
        if let Some(pending) = call.pending_2xx.as_mut() {
            if pending.give_up <= now {
                call.pending_2xx = None;
                if call.state == CallState::AwaitingAck {
                    call.state = CallState::Confirmed;
                    self.fail_waiting_for_ack(handle, 408);
                    self.send_bye(now, handle);
                    self.report_end(handle, EndReason::AckTimeout);
                }
            } else if pending.next <= now {
                self.transmits.push_back(Transmit { flow: call.flow, bytes: pending.bytes.clone() });
                pending.interval = timers.next_interval(pending.interval);
                pending.next = now + pending.interval;
            }
        }
        self.schedule_call(handle);
    }

    // ----- commands -----

    fn call_mut(&mut self, handle: CallHandle) -> Result<&mut Call, Error> {
        self.calls.get_mut(&handle).ok_or(Error::UnknownCall(handle))
    }

    fn invalid(handle: CallHandle, operation: &'static str, call: &Call) -> Error {
        match call.state {
            CallState::Ended => Error::CallEnded { call: handle, operation },
            _ => Error::InvalidState { call: handle, operation, state: call.state.name() },
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

    /// Ends a call: BYE when established (after the ACK, for an inbound call), CANCEL for an outbound call
    /// not yet answered, 480 for an inbound call not yet answered.
    pub fn hangup(&mut self, now: Instant, handle: CallHandle) -> Result<(), Error> {
        let call = self.call_mut(handle)?;
        match call.state {
            CallState::Ringing => self.reject(now, handle, 480, None, Extras::default()),
            CallState::AwaitingAck => {
                call.bye_after_ack = true;
                Ok(())
            }
            CallState::Confirmed => {
                self.send_bye(now, handle);
                Ok(())
            }
            CallState::Calling => {
                let key = call.client_key.clone();
                let provisional = key
                    .as_ref()
                    .and_then(|k| self.client_transactions.get(k))
                    .is_some_and(|(_, t, _)| t.state() == ClientState::Proceeding);
                if provisional {
                    self.send_cancel(now, handle);
                } else {
                    // §9.1: no CANCEL before a provisional response; send it when one comes.
                    self.calls.get_mut(&handle).expect("checked").cancel_when_provisional = true;
                }
                self.calls.get_mut(&handle).expect("checked").state = CallState::Terminating;
                Ok(())
            }
            CallState::Terminating | CallState::Ended => Ok(()),
        }
    }

    fn send_bye(&mut self, now: Instant, handle: CallHandle) {
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        let Some(dialog) = call.dialog.as_mut() else {
            return;
        };
        let bye = dialog.new_request(Method::Bye);
        call.state = CallState::Terminating;
        let flow = call.flow;
        self.start_client(now, flow, bye, ClientOwner::Bye(handle));
    }

    fn send_cancel(&mut self, now: Instant, handle: CallHandle) {
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

    /// Tells the far end how the transfer it asked for with `refer` (answered 2xx) goes: a NOTIFY of the
    /// REFER's subscription with `status` and `reason` as its sipfrag status line, the Event and
    /// Subscription-State it needs (see [`crate::refer_notifier`]); a final status ends the subscription.
    /// Also after our BYE (RFC 5057: the subscription outlives the INVITE usage) while the call lingers.
    /// Refused for a REFER that was not accepted, asked for no subscription, or had its final NOTIFY.
    pub fn notify_refer(
        &mut self,
        now: Instant,
        refer: IncomingRequestHandle,
        status: u16,
        reason: &str,
    ) -> Result<RequestHandle, Error> {
        let notifier = self.refer_notifiers.get_mut(&refer).ok_or_else(|| {
            Error::BadArgument(format!("{refer} is not a REFER with a subscription (accepted, Refer-Sub not false)"))
        })?;
        let extras = notifier.notify(status, reason)?;
        let call = notifier.call;
        if notifier.is_terminated() {
            self.refer_notifiers.remove(&refer);
        }
        self.send_request(now, call, InDialogRequest { method: Method::Notify, extras, credentials: None })
    }

    /// Sends a request inside an established call (INFO, MESSAGE, NOTIFY, REFER, SUBSCRIBE, OPTIONS,
    /// UPDATE). A REFER starts tracking its implicit subscription: NOTIFYs come back as
    /// [`Event::ReferNotify`]. A SUBSCRIBE starts tracking the subscription of its Event package and `id`:
    /// matching NOTIFYs come back as [`Event::Request`]; NOTIFYs that match no subscription get 481.
    pub fn send_request(
        &mut self,
        now: Instant,
        handle: CallHandle,
        request: InDialogRequest,
    ) -> Result<RequestHandle, Error> {
        if matches!(request.method, Method::Invite | Method::Ack | Method::Cancel | Method::Bye) {
            return Err(Error::BadArgument(format!("{} has its own command", request.method)));
        }
        request.extras.check()?;
        let call = self.call_mut(handle)?;
        let usable = matches!(call.state, CallState::Confirmed | CallState::AwaitingAck)
            || (call.state == CallState::Ended && request.method == Method::Notify);
        if call.dialog.is_none() || !usable {
            return Err(Self::invalid(handle, "send a request in", call));
        }
        let request_handle = RequestHandle(self.new_handle());
        let call = self.calls.get_mut(&handle).expect("checked");
        if call.state == CallState::AwaitingAck {
            // §13.3.1.4 holds BYE until the ACK; any other request would race the 2xx as well.
            call.after_ack.push((request_handle, request));
            return Ok(request_handle);
        }
        self.send_in_dialog(now, handle, request_handle, request);
        Ok(request_handle)
    }

    /// Sends a request [`Endpoint::send_request`] accepted, in a dialog that is up.
    fn send_in_dialog(
        &mut self,
        now: Instant,
        handle: CallHandle,
        request_handle: RequestHandle,
        request: InDialogRequest,
    ) {
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        let Some(dialog) = call.dialog.as_mut() else {
            return;
        };
        let mut sip = dialog.new_request(request.method.clone());
        let seq = dialog.local_seq;
        request.extras.apply(&mut sip.headers, &mut sip.body);
        let flow = call.flow;
        if request.method == Method::Refer {
            let call = self.calls.get_mut(&handle).expect("checked");
            call.subscriptions.push(ReferSubscription {
                refer: request_handle,
                id: seq,
                state: SubscriptionState::Pending,
            });
        }
        // Tracked from the moment it is sent: its first NOTIFY may overtake the 2xx (RFC 6665 §4.1.2.4).
        // A refresh (same package and id) keeps the subscription as it is.
        if request.method == Method::Subscribe
            && let Some(event) = EventKey::of(&sip)
        {
            let call = self.calls.get_mut(&handle).expect("checked");
            if !call.event_subscriptions.iter().any(|s| s.event == event) {
                call.event_subscriptions.push(EventSubscription { event, state: SubscriptionState::Pending });
            }
        }
        self.outgoing.insert(request_handle, OutgoingRequest { credentials: request.credentials, auth_attempts: 0 });
        self.start_client(now, flow, sip, ClientOwner::InDialog(handle, request_handle));
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
        self.calls.insert(
            handle,
            Call {
                direction: Direction::Outbound,
                state: CallState::Calling,
                invite: invite.clone(),
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
                credentials: call.credentials,
                auth_attempts: 0,
                subscriptions: Vec::new(),
                event_subscriptions: Vec::new(),
                ended_reported: false,
                forget_at: None,
                pending_incoming: Vec::new(),
                refers_received: 0,
                local_sdp: (!invite.body.is_empty()).then(|| invite.body.clone()),
            },
        );
        self.start_client(now, flow, invite, ClientOwner::Invite(handle));
        Ok(handle)
    }

    /// Starts a client transaction for a request we originate: a fresh Via with a new branch, every time
    /// (an authenticated retry is a new transaction, §22.2).
    fn start_client(&mut self, now: Instant, flow: Flow, mut request: Request, owner: ClientOwner) {
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

    // ----- call lifetime -----

    fn end_call(&mut self, now: Instant, handle: CallHandle, reason: EndReason) {
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        call.state = CallState::Ended;
        call.pending_2xx = None;
        self.fail_waiting_for_ack(handle, 481);
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        let pending: Vec<IncomingRequestHandle> = std::mem::take(&mut call.pending_incoming);
        for incoming in pending {
            let _ = self.respond(now, incoming, 481, Extras::default());
        }
        self.report_end(handle, reason);
        self.maybe_forget_soon(now, handle);
    }

    /// Answers locally, with `status`, the requests that waited for an ACK that will not come (408: the ACK
    /// timed out; 481: the call ended first), so whoever waits for their responses is told.
    fn fail_waiting_for_ack(&mut self, handle: CallHandle, status: u16) {
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        let waiting = std::mem::take(&mut call.after_ack);
        for (request, _) in waiting {
            self.outgoing.remove(&request);
            if let Some(subscription) =
                self.calls.get_mut(&handle).and_then(|c| c.subscriptions.iter_mut().find(|s| s.refer == request))
            {
                subscription.state = SubscriptionState::Terminated;
            }
            self.events.push_back(Event::Response { call: handle, request, response: Response::new(status) });
        }
    }

    fn report_end(&mut self, handle: CallHandle, reason: EndReason) {
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        if !call.ended_reported {
            call.ended_reported = true;
            self.events.push_back(Event::CallEnded { call: handle, reason });
        }
    }

    /// Schedules forgetting an ended call after the linger time (REFER subscriptions still NOTIFYing, BYE
    /// retransmissions: [`TimerSettings::call_linger`]).
    fn maybe_forget_soon(&mut self, now: Instant, handle: CallHandle) {
        let linger = self.config.timers.call_linger();
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        if call.state != CallState::Ended {
            return;
        }
        call.forget_at = Some(now + linger);
        self.schedule_call(handle);
    }

    fn forget_call(&mut self, handle: CallHandle) {
        if let Some(call) = self.calls.remove(&handle) {
            let call_id = call.invite.headers.call_id().unwrap_or_default().to_string();
            self.dialog_index.remove(&(call_id, call.local_tag));
            self.outgoing.retain(|h, _| !call.subscriptions.iter().any(|s| s.refer == *h));
            self.refer_notifiers.retain(|_, notifier| notifier.call != handle);
        }
    }

    // ----- addressing -----

    fn listener(&self, transport: Transport, family_v6: bool) -> Option<SocketAddr> {
        self.config
            .listeners
            .iter()
            .find(|(t, addr)| *t == transport && addr.is_ipv6() == family_v6)
            .or_else(|| self.config.listeners.iter().find(|(t, _)| *t == transport))
            .map(|(_, addr)| *addr)
    }

    fn flow_to(&self, transport: Transport, destination: SocketAddr) -> Result<Flow, Error> {
        let local = self
            .listener(transport, destination.is_ipv6())
            .ok_or_else(|| Error::NoRoute(format!("no {transport} listener")))?;
        Ok(Flow { transport, local, remote: destination })
    }

    fn advertised_host(&self, flow: Flow) -> Host {
        self.config.advertised_host.clone().unwrap_or_else(|| {
            let ip = flow.local.ip();
            if ip.is_unspecified() { Host::from(IpAddr::from([127, 0, 0, 1])) } else { Host::from(ip) }
        })
    }

    fn via_for(&self, flow: Flow, branch: &str) -> String {
        let mut via = Via {
            transport: flow.transport.via_token().into(),
            host: self.advertised_host(flow),
            port: Some(flow.local.port()),
            params: Default::default(),
        };
        via.params.set("branch", Some(branch));
        via.params.set("rport", None);
        via.to_string()
    }

    fn local_contact(&self, flow: Flow) -> NameAddr {
        let mut uri = SipUri::new(Some(&self.config.contact_user), self.advertised_host(flow), Some(flow.local.port()));
        if flow.transport == Transport::Tcp {
            uri.params.set("transport", Some("tcp"));
        }
        NameAddr::new(Uri::Sip(uri))
    }

    /// The flow for requests inside a dialog: toward the next hop when it is an IP literal (transport from
    /// its `transport` parameter, else the call's), else back along the flow the call came in on.
    fn flow_for_dialog(&self, dialog: &Dialog, current: Flow) -> Flow {
        let Some(sip) = dialog.next_hop().as_sip() else {
            return current;
        };
        let Some(ip) = sip.host.ip() else {
            return current;
        };
        let transport = sip.transport_param().and_then(|t| Transport::from_token(&t)).unwrap_or(current.transport);
        let port = sip.port.unwrap_or(5060);
        let remote = SocketAddr::new(ip, port);
        if transport == current.transport && remote.ip() == current.remote.ip() && current.transport.is_reliable() {
            // Keep using the connection the peer opened.
            return current;
        }
        self.flow_to(transport, remote).unwrap_or(current)
    }
}

fn dialog_seq(request: &Request) -> u32 {
    request.headers.cseq().map(|c| c.seq).unwrap_or_default()
}
