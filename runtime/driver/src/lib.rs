//! callwright-driver: runs a sans-IO [`callwright_sip::Endpoint`] on tokio.
//!
//! One task owns the endpoint, the UDP sockets and the TCP connection table. It feeds the endpoint what
//! arrives, sends what it asks, re-arms a single timer from [`Endpoint::poll_timeout`], and is the only
//! place that reads the clock. Users talk to it through a [`SipHandle`] (commands) and receive
//! [`callwright_sip::Event`]s on a channel.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use callwright_driver::{DriverConfig, SipDriver};
//! use callwright_sip::{Event, Extras};
//!
//! let config = DriverConfig::new(vec!["127.0.0.1:5060".parse().unwrap()]);
//! let (handle, mut events) = SipDriver::start(config).await?;
//! while let Some(event) = events.recv().await {
//!     if let Event::IncomingCall { call, .. } = event {
//!         handle.answer(call, Extras::default()).await.ok();
//!     }
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod conference;
pub mod media;
mod overload;
mod tcp;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use callwright_sip::dialog::Dialog;
use callwright_sip::timers::TimerSettings;
use callwright_sip::{
    CallHandle, Endpoint, EndpointConfig, Error, Event, Extras, Flow, InDialogRequest, IncomingRequestHandle,
    OfferAnswerer, OutboundCall, RequestHandle, Transmit, Transport,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::media::{MediaConfig, MediaPorts};
use crate::overload::{OverloadDetector, Shedding};

/// The largest datagram we read; bigger ones are truncated by the kernel and then refused by the parser.
const MAX_DATAGRAM: usize = 65_535;
/// How many queued datagrams one wake-up handles before timers and commands get a turn.
const RECEIVE_BATCH: usize = 64;
/// Capacity of the command and event channels.
const CHANNEL_CAPACITY: usize = 4096;
/// Standing queueing that starts shedding by default (the shortest wait of every datagram in a 100 ms
/// window): far past what a server that keeps up queues, well short of T1 (500 ms), when callers start
/// retransmitting and an overload feeds itself.
pub const DEFAULT_SHED_AFTER: Duration = Duration::from_millis(200);

/// The soft limit on open files of this process (`/proc/self/limits`; Linux only, else `None`): what the
/// listeners size their connection caps by, so that no listener can take every descriptor.
pub fn open_file_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse::<usize>().ok()
}

/// Raises this process's soft limit on open files to its hard limit: each call with media holds two UDP
/// sockets, and the common default soft limit of 1,024 would refuse calls past 500. Returns the soft
/// limit in force afterwards.
pub fn raise_open_file_limit() -> nix::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard.max(soft))
}

/// Settings of a driver.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Addresses to listen on; each gets a UDP socket and a TCP listener on the same port.
    pub listen: Vec<SocketAddr>,
    /// Endpoint settings (its `listeners` are filled in from the bound sockets).
    pub endpoint: EndpointConfig,
    /// New calls are refused with 503 while every received datagram waits longer than this before it is
    /// handled (see [`Endpoint::set_shedding`]); `None` never sheds.
    pub shed_after: Option<Duration>,
    /// Where calls' media lives.
    pub media: MediaConfig,
}

impl DriverConfig {
    /// Listen on `listen` with default endpoint settings and an OS-random identifier seed.
    pub fn new(listen: Vec<SocketAddr>) -> DriverConfig {
        let endpoint = EndpointConfig { id_seed: random_seed(), ..EndpointConfig::default() };
        DriverConfig { listen, endpoint, shed_after: Some(DEFAULT_SHED_AFTER), media: MediaConfig::default() }
    }

    /// Overrides T1 (and nothing else); used to make 64·T1 timeouts short in tests.
    pub fn with_t1(mut self, t1: Duration) -> DriverConfig {
        self.endpoint.timers = TimerSettings { t1, ..self.endpoint.timers };
        self
    }
}

/// A seed from the OS's hash randomisation: distinct per process, no extra dependency.
pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    hasher.finish()
}

type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// Runs on the driver task when an outbound call is created, before any of its events are handed on: the
/// place to register where those events go.
pub type OnCreated = Box<dyn FnOnce(CallHandle) + Send>;

/// What a [`SipHandle`] asks the driver to do.
enum Command {
    Ring(CallHandle, u16, Extras, Reply<()>),
    /// Answers; with an answerer, the call's later offers go to it from then on.
    Answer(CallHandle, Extras, Option<OfferAnswerer>, Reply<()>),
    Reject(CallHandle, u16, Option<String>, Extras, Reply<()>),
    Hangup(CallHandle, Reply<()>),
    SetOfferAnswerer(CallHandle, OfferAnswerer, Reply<()>),
    Respond(IncomingRequestHandle, u16, Extras, Reply<()>),
    SendRequest(CallHandle, InDialogRequest, Reply<RequestHandle>),
    NotifyRefer(IncomingRequestHandle, u16, String, Reply<RequestHandle>),
    Invite(Box<OutboundCall>, Option<OnCreated>, Reply<CallHandle>),
    Dialog(CallHandle, oneshot::Sender<Option<Dialog>>),
    Stats(oneshot::Sender<DriverStats>),
}

/// Counts for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Calls the endpoint holds.
    pub calls: usize,
    /// Live transactions.
    pub transactions: usize,
    /// Open TCP connections.
    pub tcp_connections: usize,
    /// Whether new calls are being refused because requests queue too long.
    pub shedding: bool,
    /// New calls refused so far because requests queued too long.
    pub calls_shed: u64,
}

/// The driver stopped: its task ended (the runtime is shutting down).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// The endpoint refused the command.
    Sip(Error),
    /// The driver is gone.
    Stopped,
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::Sip(error) => error.fmt(f),
            CommandError::Stopped => f.write_str("the SIP driver has stopped"),
        }
    }
}

impl std::error::Error for CommandError {}

/// A cloneable handle that sends commands to the driver task.
#[derive(Clone)]
pub struct SipHandle {
    commands: mpsc::Sender<Command>,
    local_addrs: Arc<Vec<(Transport, SocketAddr)>>,
    media: Arc<MediaPorts>,
}

impl SipHandle {
    /// A handle with no driver behind it: every command fails with [`CommandError::Stopped`]. For running
    /// guest code outside any call (e.g. asking a verb module for its verbs at upload).
    pub fn detached() -> SipHandle {
        let (commands, _) = mpsc::channel(1);
        SipHandle { commands, local_addrs: Arc::new(Vec::new()), media: MediaPorts::new(MediaConfig::default()) }
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(make(reply)).await.map_err(|_| CommandError::Stopped)?;
        answer.await.map_err(|_| CommandError::Stopped)?.map_err(CommandError::Sip)
    }

    /// The RTP ports calls' media is bound on.
    pub fn media(&self) -> &Arc<MediaPorts> {
        &self.media
    }

    /// The addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> &[(Transport, SocketAddr)] {
        &self.local_addrs
    }

    /// Sends a provisional response to an inbound call.
    pub async fn ring(&self, call: CallHandle, status: u16, extras: Extras) -> Result<(), CommandError> {
        self.ask(|r| Command::Ring(call, status, extras, r)).await
    }

    /// Answers an inbound call.
    pub async fn answer(&self, call: CallHandle, extras: Extras) -> Result<(), CommandError> {
        self.ask(|r| Command::Answer(call, extras, None, r)).await
    }

    /// Answers an inbound call whose later offers (re-INVITE, UPDATE) `answerer` answers: one command,
    /// so no re-INVITE can find the call without it.
    pub async fn answer_with_offer_answerer(
        &self,
        call: CallHandle,
        extras: Extras,
        answerer: OfferAnswerer,
    ) -> Result<(), CommandError> {
        self.ask(|r| Command::Answer(call, extras, Some(answerer), r)).await
    }

    /// Rejects an inbound call.
    pub async fn reject(
        &self,
        call: CallHandle,
        status: u16,
        reason: Option<String>,
        extras: Extras,
    ) -> Result<(), CommandError> {
        self.ask(|r| Command::Reject(call, status, reason, extras, r)).await
    }

    /// Has `answerer` answer the SDP offers the far end makes inside `call` (re-INVITE, UPDATE).
    pub async fn set_offer_answerer(&self, call: CallHandle, answerer: OfferAnswerer) -> Result<(), CommandError> {
        self.ask(|r| Command::SetOfferAnswerer(call, answerer, r)).await
    }

    /// Hangs a call up (BYE, CANCEL or 480 as its state asks).
    pub async fn hangup(&self, call: CallHandle) -> Result<(), CommandError> {
        self.ask(|r| Command::Hangup(call, r)).await
    }

    /// Answers a request the peer sent inside a call.
    pub async fn respond(
        &self,
        request: IncomingRequestHandle,
        status: u16,
        extras: Extras,
    ) -> Result<(), CommandError> {
        self.ask(|r| Command::Respond(request, status, extras, r)).await
    }

    /// Sends a request inside a call.
    pub async fn send_request(
        &self,
        call: CallHandle,
        request: InDialogRequest,
    ) -> Result<RequestHandle, CommandError> {
        self.ask(|r| Command::SendRequest(call, request, r)).await
    }

    /// Tells the far end how the transfer of an accepted REFER goes (see [`Endpoint::notify_refer`]).
    pub async fn notify_refer(
        &self,
        refer: IncomingRequestHandle,
        status: u16,
        reason: &str,
    ) -> Result<RequestHandle, CommandError> {
        let reason = reason.to_string();
        self.ask(|r| Command::NotifyRefer(refer, status, reason, r)).await
    }

    /// Places an outbound call.
    pub async fn invite(&self, call: OutboundCall) -> Result<CallHandle, CommandError> {
        self.ask(|r| Command::Invite(Box::new(call), None, r)).await
    }

    /// Places an outbound call and runs `on_created` with its handle before the call's first event is sent
    /// on the event stream (so a router can be told where the events go without a race).
    pub async fn invite_with(&self, call: OutboundCall, on_created: OnCreated) -> Result<CallHandle, CommandError> {
        self.ask(|r| Command::Invite(Box::new(call), Some(on_created), r)).await
    }

    /// The dialog of a call (none before the answer, or for an unknown call).
    pub async fn dialog(&self, call: CallHandle) -> Result<Option<Dialog>, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Dialog(call, reply)).await.map_err(|_| CommandError::Stopped)?;
        answer.await.map_err(|_| CommandError::Stopped)
    }

    /// Current counts.
    pub async fn stats(&self) -> Result<DriverStats, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Stats(reply)).await.map_err(|_| CommandError::Stopped)?;
        answer.await.map_err(|_| CommandError::Stopped)
    }
}

/// What connection tasks tell the driver.
pub(crate) enum StreamInput {
    /// A framed message arrived on a connection.
    Message(Flow, Vec<u8>),
    /// A message too large to take arrived on a connection: its header section and its size by its
    /// Content-Length. The connection writes what it is sent next and then closes.
    Oversized { flow: Flow, head: Vec<u8>, size: usize },
    /// A connection is open; bytes for `remote` go to `writer`.
    Opened(SocketAddr, mpsc::Sender<Vec<u8>>),
    /// A connection closed.
    Closed(SocketAddr),
}

/// The driver task.
pub struct SipDriver {
    endpoint: Endpoint,
    udp: Vec<(SocketAddr, Arc<UdpSocket>)>,
    tcp_local: Vec<SocketAddr>,
    /// The time limits of every TCP connection, from the endpoint's timers.
    tcp_limits: tcp::Limits,
    connections: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    stream_tx: mpsc::Sender<StreamInput>,
    stream_rx: mpsc::Receiver<StreamInput>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    overload: Option<OverloadDetector>,
}

/// A datagram as its socket's reader hands it on: where it came from, when it arrived, its bytes.
type Received = (Flow, Instant, Vec<u8>);

impl SipDriver {
    /// Binds every address, spawns the driver task and returns its handle and event stream.
    pub async fn start(config: DriverConfig) -> io::Result<(SipHandle, mpsc::Receiver<Event>)> {
        let mut udp = Vec::new();
        let mut listeners = Vec::new();
        let mut local_addrs = Vec::new();
        for addr in &config.listen {
            let socket = UdpSocket::bind(addr).await?;
            enlarge_buffers(&socket);
            let bound = socket.local_addr()?;
            // TCP on the same port as UDP, so one address serves both (as SIP URIs assume).
            let listener = tokio::net::TcpListener::bind(bound).await?;
            local_addrs.push((Transport::Udp, bound));
            local_addrs.push((Transport::Tcp, bound));
            udp.push((bound, Arc::new(socket)));
            listeners.push(listener);
        }
        let mut endpoint_config = config.endpoint.clone();
        endpoint_config.listeners = local_addrs.clone();
        let (command_tx, command_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (event_tx, event_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (stream_tx, stream_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let tcp_limits = tcp::Limits::for_timers(&endpoint_config.timers);
        for listener in listeners {
            tokio::spawn(tcp::accept_loop(listener, stream_tx.clone(), tcp_limits));
        }
        let driver = SipDriver {
            endpoint: Endpoint::new(endpoint_config),
            tcp_local: udp.iter().map(|(addr, _)| *addr).collect(),
            tcp_limits,
            udp,
            connections: HashMap::new(),
            stream_tx,
            stream_rx,
            commands: command_rx,
            events: event_tx,
            overload: config.shed_after.map(OverloadDetector::new),
        };
        tokio::spawn(driver.run());
        let media = MediaPorts::new(config.media.clone());
        Ok((SipHandle { commands: command_tx, local_addrs: Arc::new(local_addrs), media }, event_rx))
    }

    fn now() -> std::time::Instant {
        Instant::now().into_std()
    }

    async fn run(mut self) {
        // Each UDP socket gets a reader task so the loop below waits on channels only.
        let (udp_tx, mut udp_rx) = mpsc::channel::<Received>(CHANNEL_CAPACITY);
        for (local, socket) in &self.udp {
            tokio::spawn(udp_read_loop(*local, socket.clone(), udp_tx.clone()));
        }
        drop(udp_tx);
        loop {
            self.flush().await;
            let deadline = self.endpoint.poll_timeout().map(Instant::from_std);
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = udp_rx.recv() => {
                    let Some(first) = received else { break };
                    let now = Instant::now();
                    // Take what else is queued in one go: fewer wake-ups under load.
                    let batch = std::iter::once(first).chain(std::iter::from_fn(|| udp_rx.try_recv().ok()));
                    for (flow, arrived, bytes) in batch.take(RECEIVE_BATCH) {
                        self.watch_queueing(now, now.saturating_duration_since(arrived));
                        self.endpoint.handle_message(now.into_std(), flow, &bytes);
                    }
                }
                input = self.stream_rx.recv() => {
                    let Some(input) = input else { break };
                    self.check_pause();
                    self.on_stream_input(input);
                }
                command = self.commands.recv() => {
                    let Some(command) = command else { break };
                    self.check_pause();
                    self.on_command(command);
                }
                () = sleep => {
                    self.check_pause();
                    self.endpoint.handle_timeout(Self::now());
                }
            }
        }
        debug!("SIP driver stopped");
    }

    /// Sheds new calls while datagrams queue too long (see [`overload`]); `waited` is how long the datagram
    /// about to be handled at `now` was queued.
    fn watch_queueing(&mut self, now: Instant, waited: Duration) {
        let Some(detector) = &mut self.overload else { return };
        let change = detector.observe(now.into_std(), waited);
        self.on_shedding_change(change);
    }

    /// Stops shedding if no datagram came for a while: whenever the driver wakes for something else (a TCP
    /// message, a command such as stats, a timer), since no datagram may come to end it.
    fn check_pause(&mut self) {
        let Some(detector) = &mut self.overload else { return };
        let change = detector.check_pause(Self::now());
        self.on_shedding_change(change);
    }

    fn on_shedding_change(&mut self, change: Option<Shedding>) {
        match change {
            Some(Shedding::Started) => {
                self.endpoint.set_shedding(true);
                warn!(window_ms = overload::WINDOW.as_millis(), "overloaded: requests are queueing; new calls get 503");
            }
            Some(Shedding::Stopped) => {
                self.endpoint.set_shedding(false);
                info!(calls_shed = self.endpoint.calls_shed(), "load back to normal; taking new calls again");
            }
            None => {}
        }
    }

    fn on_stream_input(&mut self, input: StreamInput) {
        match input {
            StreamInput::Message(flow, bytes) => self.endpoint.handle_message(Self::now(), flow, &bytes),
            StreamInput::Oversized { flow, head, size } => {
                self.endpoint.handle_oversized(flow, &head, size);
                self.send_transmits();
                // Dropping our sender ends the connection's outbox after the 513: it then closes.
                self.connections.remove(&flow.remote);
            }
            StreamInput::Opened(remote, writer) => {
                self.connections.insert(remote, writer);
            }
            StreamInput::Closed(remote) => {
                self.connections.remove(&remote);
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = Self::now();
        let endpoint = &mut self.endpoint;
        match command {
            Command::Ring(call, status, extras, reply) => drop(reply.send(endpoint.ring(now, call, status, extras))),
            Command::Answer(call, extras, answerer, reply) => {
                let answered = match answerer {
                    Some(answerer) => endpoint.set_offer_answerer(call, answerer),
                    None => Ok(()),
                };
                drop(reply.send(answered.and_then(|()| endpoint.answer(now, call, extras))))
            }
            Command::Reject(call, status, reason, extras, reply) => {
                drop(reply.send(endpoint.reject(now, call, status, reason.as_deref(), extras)))
            }
            Command::Hangup(call, reply) => drop(reply.send(endpoint.hangup(now, call))),
            Command::SetOfferAnswerer(call, answerer, reply) => {
                drop(reply.send(endpoint.set_offer_answerer(call, answerer)))
            }
            Command::Respond(request, status, extras, reply) => {
                drop(reply.send(endpoint.respond(now, request, status, extras)))
            }
            Command::SendRequest(call, request, reply) => drop(reply.send(endpoint.send_request(now, call, request))),
            Command::NotifyRefer(refer, status, reason, reply) => {
                drop(reply.send(endpoint.notify_refer(now, refer, status, &reason)))
            }
            Command::Invite(call, on_created, reply) => {
                let result = endpoint.invite(now, *call);
                if let (Ok(handle), Some(on_created)) = (&result, on_created) {
                    on_created(*handle);
                }
                drop(reply.send(result))
            }
            Command::Dialog(call, reply) => drop(reply.send(endpoint.dialog(call).cloned())),
            Command::Stats(reply) => drop(reply.send(DriverStats {
                calls: endpoint.call_count(),
                transactions: endpoint.transaction_count(),
                tcp_connections: self.connections.len(),
                shedding: endpoint.is_shedding(),
                calls_shed: endpoint.calls_shed(),
            })),
        }
    }

    /// Sends everything the endpoint queued and hands its events on.
    async fn flush(&mut self) {
        self.send_transmits();
        while let Some(event) = self.endpoint.poll_event() {
            if self.events.send(event).await.is_err() {
                // Nobody listens any more; keep the SIP side running (it still answers and times out).
                break;
            }
        }
    }

    /// Sends everything the endpoint queued.
    fn send_transmits(&mut self) {
        while let Some(transmit) = self.endpoint.poll_transmit() {
            self.send(transmit);
        }
    }

    fn send(&mut self, transmit: Transmit) {
        let Transmit { flow, bytes } = transmit;
        match flow.transport {
            Transport::Udp => {
                let socket = self.udp.iter().find(|(addr, _)| *addr == flow.local).or_else(|| self.udp.first());
                if let Some((_, socket)) = socket
                    && let Err(error) = socket.try_send_to(&bytes, flow.remote)
                {
                    // A full socket buffer is a lost datagram, which SIP retransmission covers.
                    debug!(%error, remote = %flow.remote, "UDP send failed");
                }
            }
            Transport::Tcp => {
                let writer = match self.connections.get(&flow.remote) {
                    Some(writer) if !writer.is_closed() => writer.clone(),
                    _ => {
                        let local = self.tcp_local.iter().find(|a| a.is_ipv6() == flow.remote.is_ipv6()).copied();
                        let Some(local) = local else {
                            warn!(remote = %flow.remote, "no TCP listener for this address family");
                            return;
                        };
                        let writer = tcp::connect(local, flow.remote, self.stream_tx.clone(), self.tcp_limits);
                        self.connections.insert(flow.remote, writer.clone());
                        writer
                    }
                };
                if writer.try_send(bytes).is_err() {
                    warn!(remote = %flow.remote, "TCP connection backlog full or closed; message dropped");
                }
            }
        }
    }
}

/// Socket buffer size asked for on each UDP socket. The default (about 200 KiB) overflows when a burst of
/// requests arrives while the runtime is busy, and every datagram dropped costs the peer a 500 ms
/// retransmission. The kernel caps it at `net.core.rmem_max` / `wmem_max`.
const UDP_BUFFER_BYTES: usize = 4 * 1024 * 1024;

fn enlarge_buffers(socket: &UdpSocket) {
    let socket = socket2::SockRef::from(socket);
    if let Err(error) = socket.set_recv_buffer_size(UDP_BUFFER_BYTES) {
        debug!(%error, "UDP receive buffer left at its default size");
    }
    if let Err(error) = socket.set_send_buffer_size(UDP_BUFFER_BYTES) {
        debug!(%error, "UDP send buffer left at its default size");
    }
}

/// Reads datagrams and hands each on with the time it arrived: the kernel's receive timestamp
/// (`SO_TIMESTAMPNS`) where the socket gives one, so time spent queued in the socket buffer counts, else
/// the time it was read.
async fn udp_read_loop(local: SocketAddr, socket: Arc<UdpSocket>, to_driver: mpsc::Sender<Received>) {
    use nix::sys::socket::{setsockopt, sockopt};
    let stamped = setsockopt(&*socket, sockopt::ReceiveTimestampns, &true).is_ok();
    if !stamped {
        debug!(%local, "no kernel receive timestamps: queueing in the socket buffer is not seen");
    }
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    let mut control = nix::cmsg_space!(nix::sys::time::TimeSpec);
    loop {
        let received =
            socket.async_io(tokio::io::Interest::READABLE, || receive(&socket, &mut buffer, &mut control)).await;
        match received {
            Ok((len, remote, queued_for)) => {
                let flow = Flow { transport: Transport::Udp, local, remote };
                let arrived = Instant::now().checked_sub(queued_for).unwrap_or_else(Instant::now);
                if to_driver.send((flow, arrived, buffer[..len].to_vec())).await.is_err() {
                    return;
                }
            }
            // ICMP port-unreachable from an earlier send shows up here on some systems: not fatal.
            Err(error) => debug!(%error, "UDP receive error"),
        }
    }
}

/// One `recvmsg`: the datagram's length, its source, and how long it waited in the socket buffer (zero
/// without a kernel timestamp, or when the wall clock stepped back).
fn receive(socket: &UdpSocket, buffer: &mut [u8], control: &mut [u8]) -> io::Result<(usize, SocketAddr, Duration)> {
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
    let mut iov = [io::IoSliceMut::new(buffer)];
    let message = recvmsg::<SockaddrStorage>(socket.as_raw_fd(), &mut iov, Some(control), MsgFlags::MSG_DONTWAIT)?;
    let remote = message.address.as_ref().and_then(|address| {
        address
            .as_sockaddr_in()
            .map(|v4| SocketAddr::from(*v4))
            .or_else(|| address.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6)))
    });
    let remote = remote.ok_or_else(|| io::Error::other("datagram without an IP source address"))?;
    let mut queued_for = Duration::ZERO;
    for control_message in message.cmsgs().into_iter().flatten() {
        if let ControlMessageOwned::ScmTimestampns(stamp) = control_message {
            let arrived = std::time::UNIX_EPOCH
                + Duration::new(
                    u64::try_from(stamp.tv_sec()).unwrap_or(0),
                    u32::try_from(stamp.tv_nsec()).unwrap_or(0),
                );
            queued_for = std::time::SystemTime::now().duration_since(arrived).unwrap_or_default();
        }
    }
    Ok((message.bytes, remote, queued_for))
}
