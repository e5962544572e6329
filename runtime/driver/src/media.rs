//! Media on tokio: the RTP ports of a server ([`MediaPorts`]), and one task per call that owns the call's
//! two sockets (RTP on an even port, RTCP on the next) and runs its sans-IO
//! [`callwright_media::MediaSession`] from one timer, as the SIP driver runs the endpoint.
//!
//! The owner of a call talks to its task through a [`MediaLeg`]: commands in, [`MediaEvent`]s out. Dropping
//! the leg closes the session (an RTCP BYE goes out) and frees the ports.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use callwright_media::dtmf::DigitStep;
use callwright_media::sdp::Negotiated;
use callwright_media::source::AudioSource;
use callwright_media::{
    Digit, DigitsId, Error as MediaError, Input, MediaEvent, MediaSession, MediaStats, Output, PlayOptions, PlaybackId,
    RecordOptions, RecordingEnd, RecordingId, SessionConfig, Socket,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::debug;

/// The default RTP port range: even ports for RTP, each with the next odd one for RTCP. 11,384 pairs, more
/// than the default 10,000 calls, and below Linux's ephemeral range (32768-60999), whose ports the kernel
/// hands to outgoing connections.
pub const DEFAULT_RTP_PORTS: RangeInclusive<u16> = 10_000..=32_767;
/// Events a call's media may queue before its owner reads them; more are dropped (and logged).
const EVENTS_PER_CALL: usize = 256;
/// The largest RTP or RTCP datagram we read.
const MAX_MEDIA_DATAGRAM: usize = 2048;

/// Where a server's media lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// The ports RTP and RTCP sockets are taken from (`--rtp-ports`).
    pub ports: RangeInclusive<u16>,
    /// The address written into SDP, when it is not the one the sockets are bound to (`--media-address`:
    /// a public address in front of a private one).
    pub advertise: Option<IpAddr>,
    /// End a call whose far end stopped sending RTP for this long (`--rtp-timeout-secs`; `None`: never).
    pub inactivity_timeout: Option<Duration>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig { ports: DEFAULT_RTP_PORTS, advertise: None, inactivity_timeout: Some(Duration::from_secs(60)) }
    }
}

/// The port range of a server, handed out in turn so a port just freed is not reused at once (a late
/// packet of the last call would land in the next).
#[derive(Debug)]
pub struct MediaPorts {
    config: MediaConfig,
    next_pair: AtomicU32,
}

/// A call's two sockets, bound.
#[derive(Debug)]
pub struct MediaSockets {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    port: u16,
}

impl MediaSockets {
    /// The RTP port (RTCP is the next one).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl MediaPorts {
    /// Ports from `config`.
    pub fn new(config: MediaConfig) -> Arc<MediaPorts> {
        // From a random pair: servers sharing a range (and a restarted one) do not all start on its first
        // port, where a late packet of another server's last call would land.
        Arc::new(MediaPorts { config, next_pair: AtomicU32::new(crate::random_seed() as u32) })
    }

    /// The settings.
    pub fn config(&self) -> &MediaConfig {
        &self.config
    }

    /// The address SDP names for sockets bound to `bound`.
    pub fn advertised(&self, bound: IpAddr) -> IpAddr {
        self.config.advertise.unwrap_or(bound)
    }

    /// A session configuration for `negotiated`: a random SSRC, sequence and timestamp origin (RFC 3550
    /// §5.1), the wall clock for sender reports, and this server's inactivity timeout.
    pub fn session_config(&self, negotiated: Negotiated) -> SessionConfig {
        let seed = crate::random_seed();
        let mut config = SessionConfig::new(negotiated, seed as u32);
        config.initial_sequence = (seed >> 32) as u16;
        config.initial_timestamp = (seed >> 16) as u32;
        config.seed = seed;
        config.inactivity_timeout = self.config.inactivity_timeout;
        config.wall_clock_at_start =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        config
    }

    /// A fresh SDP origin for a call (a random session id, RFC 4566 §5.2).
    pub fn new_origin(&self) -> callwright_media::sdp::Origin {
        callwright_media::sdp::Origin::new(crate::random_seed() >> 1)
    }

    /// Binds an RTP/RTCP pair on `ip`, the next free even port of the range.
    pub async fn open(&self, ip: IpAddr) -> io::Result<MediaSockets> {
        let first = (self.config.ports.start() + 1) & !1;
        let last = *self.config.ports.end();
        let pairs = u32::from(last.saturating_sub(first).saturating_add(1) / 2);
        if pairs == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the RTP port range holds no even/odd pair"));
        }
        for _ in 0..pairs {
            let pair = self.next_pair.fetch_add(1, Ordering::Relaxed) % pairs;
            let port = first + 2 * pair as u16;
            let Ok(rtp) = UdpSocket::bind(SocketAddr::new(ip, port)).await else { continue };
            let Ok(rtcp) = UdpSocket::bind(SocketAddr::new(ip, port + 1)).await else { continue };
            return Ok(MediaSockets { rtp, rtcp, port });
        }
        Err(io::Error::new(io::ErrorKind::AddrInUse, format!("every RTP port of {first}-{last} on {ip} is in use")))
    }
}

/// What the owner of a call's media asks of it.
enum MediaCommand {
    Play(Box<dyn AudioSource>, PlayOptions, oneshot::Sender<PlaybackId>),
    StopPlayback(PlaybackId),
    StopAllPlayback,
    SendDigits(Vec<DigitStep>, Duration, oneshot::Sender<Result<DigitsId, MediaError>>),
    Record(RecordOptions, Box<dyn RecordingSink>, oneshot::Sender<RecordingId>),
    StopRecording(RecordingId),
    InfoDigit(Digit),
    Update(Negotiated),
    /// Bridge to another call's task (the audio to send it, the audio it sends), or end the bridge.
    Bridge(Option<BridgeLink>),
    Stats(oneshot::Sender<MediaStats>),
    /// The leg was dropped: the call has ended (updaters may still hold the channel).
    Close,
}

/// Where a recording's audio goes as the call's media task makes it (the host writes a file). Called on
/// the task, every few frames: it must not block for long.
pub trait RecordingSink: Send {
    /// More audio: interleaved 16-bit samples at the codec's rate (received left, sent right in stereo).
    fn write(&mut self, samples: &[i16]);
    /// The recording ended (its last audio came before), after `duration`.
    fn finish(&mut self, end: RecordingEnd, duration: Duration);
}

/// One side of a bridge between two calls' media tasks: where this call's received frames go, and where
/// the other call's come from.
#[derive(Debug)]
pub struct BridgeLink {
    to_other: mpsc::Sender<Vec<i16>>,
    from_other: mpsc::Receiver<Vec<i16>>,
}

/// Frames a bridge holds between the two tasks before it drops them (the receiving session keeps only
/// three anyway).
pub(crate) const BRIDGE_FRAMES_IN_FLIGHT: usize = 8;

impl BridgeLink {
    pub(crate) fn new(to_other: mpsc::Sender<Vec<i16>>, from_other: mpsc::Receiver<Vec<i16>>) -> BridgeLink {
        BridgeLink { to_other, from_other }
    }
}

/// Who a call's media task tells of what happens to the stream without being asked. Called on the task:
/// neither may block.
pub trait MediaOwner: Send {
    /// The far end sent no RTP for the inactivity timeout (told once; the owner hangs the call up).
    fn far_end_silent(&mut self, silent_for: Duration) {
        let _ = silent_for;
    }
    /// The session has closed, with its final counts.
    fn ended(&mut self, stats: MediaStats) {
        let _ = stats;
    }
}

/// An owner that needs to be told nothing.
impl MediaOwner for () {}

/// The owner's side of a call's media task.
#[derive(Debug)]
pub struct MediaLeg {
    commands: mpsc::UnboundedSender<MediaCommand>,
    /// What the session reports, in order.
    pub events: mpsc::Receiver<MediaEvent>,
    local_port: u16,
}

impl std::fmt::Debug for MediaCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MediaCommand")
    }
}

impl MediaLeg {
    /// Starts the task of a call's media on `sockets`, telling `owner` when the far end falls silent and
    /// when the session ends.
    pub fn spawn(sockets: MediaSockets, config: SessionConfig, owner: Box<dyn MediaOwner>) -> MediaLeg {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::channel(EVENTS_PER_CALL);
        let local_port = sockets.port;
        let session = MediaSession::new(Instant::now().into_std(), config);
        tokio::spawn(run(session, sockets, command_rx, event_tx, owner));
        MediaLeg { commands, events, local_port }
    }

    /// Our RTP port.
    pub fn local_port(&self) -> u16 {
        self.local_port
    }

    /// Queues a playback; `None` if the session has ended.
    pub async fn play(&self, source: Box<dyn AudioSource>, options: PlayOptions) -> Option<PlaybackId> {
        let (reply, id) = oneshot::channel();
        self.commands.send(MediaCommand::Play(source, options, reply)).ok()?;
        id.await.ok()
    }

    /// Stops a playback.
    pub fn stop_playback(&self, id: PlaybackId) {
        let _ = self.commands.send(MediaCommand::StopPlayback(id));
    }

    /// Stops every playback.
    pub fn stop_all_playback(&self) {
        let _ = self.commands.send(MediaCommand::StopAllPlayback);
    }

    /// Sends digits as RFC 4733 events; [`MediaError::NoTelephoneEvent`] when the peer offered none.
    pub async fn send_digits(&self, steps: Vec<DigitStep>, press: Duration) -> Option<Result<DigitsId, MediaError>> {
        let (reply, id) = oneshot::channel();
        self.commands.send(MediaCommand::SendDigits(steps, press, reply)).ok()?;
        id.await.ok()
    }

    /// Starts a recording whose audio goes to `sink` (the event of its end still comes to
    /// [`MediaLeg::events`]).
    pub async fn record(&self, options: RecordOptions, sink: Box<dyn RecordingSink>) -> Option<RecordingId> {
        let (reply, id) = oneshot::channel();
        self.commands.send(MediaCommand::Record(options, sink, reply)).ok()?;
        id.await.ok()
    }

    /// Stops a recording.
    pub fn stop_recording(&self, id: RecordingId) {
        let _ = self.commands.send(MediaCommand::StopRecording(id));
    }

    /// Bridges the media of two calls: each hears what the other's far end sends, whenever no playback
    /// of its own plays. A bridge ends with [`MediaLeg::unbridge`] on either call, a new bridge, or
    /// either call's end.
    pub fn bridge(a: &MediaLeg, b: &MediaLeg) {
        let (a_to_b, from_a) = mpsc::channel(BRIDGE_FRAMES_IN_FLIGHT);
        let (b_to_a, from_b) = mpsc::channel(BRIDGE_FRAMES_IN_FLIGHT);
        let _ = a.commands.send(MediaCommand::Bridge(Some(BridgeLink { to_other: a_to_b, from_other: from_b })));
        let _ = b.commands.send(MediaCommand::Bridge(Some(BridgeLink { to_other: b_to_a, from_other: from_a })));
    }

    /// Links this call's media to another's task or a conference's (see [`BridgeLink`]).
    pub(crate) fn link(&self, link: BridgeLink) {
        let _ = self.commands.send(MediaCommand::Bridge(Some(link)));
    }

    /// Ends this call's bridge (the other call's ends as its link closes).
    pub fn unbridge(&self) {
        let _ = self.commands.send(MediaCommand::Bridge(None));
    }

    /// Hands the session a digit that came by SIP INFO.
    pub fn info_digit(&self, digit: Digit) {
        let _ = self.commands.send(MediaCommand::InfoDigit(digit));
    }

    /// What hands the session renegotiated streams (re-INVITE, UPDATE); it can live elsewhere (in the SIP
    /// core's offer answerer) without keeping the session alive.
    pub fn updater(&self) -> MediaUpdater {
        MediaUpdater { commands: self.commands.clone() }
    }

    /// The session's counts; `None` if it has ended.
    pub async fn stats(&self) -> Option<MediaStats> {
        let (reply, stats) = oneshot::channel();
        self.commands.send(MediaCommand::Stats(reply)).ok()?;
        stats.await.ok()
    }
}

impl Drop for MediaLeg {
    fn drop(&mut self) {
        let _ = self.commands.send(MediaCommand::Close);
    }
}

/// Hands a call's media session a renegotiated stream (see [`MediaLeg::updater`]).
#[derive(Debug, Clone)]
pub struct MediaUpdater {
    commands: mpsc::UnboundedSender<MediaCommand>,
}

impl MediaUpdater {
    /// Takes a renegotiated stream (a no-op once the session has ended).
    pub fn update(&self, negotiated: Negotiated) {
        let _ = self.commands.send(MediaCommand::Update(negotiated));
    }
}

/// The task of one call's media: sockets, commands and the session's single timer.
async fn run(
    mut session: MediaSession,
    sockets: MediaSockets,
    mut commands: mpsc::UnboundedReceiver<MediaCommand>,
    events: mpsc::Sender<MediaEvent>,
    mut owner: Box<dyn MediaOwner>,
) {
    let mut silence_told = false;
    let mut sinks = Sinks::new();
    let mut bridge: Option<BridgeLink> = None;
    let mut rtp_buffer = vec![0u8; MAX_MEDIA_DATAGRAM];
    let mut rtcp_buffer = vec![0u8; MAX_MEDIA_DATAGRAM];
    let mut deadline = Instant::now();
    loop {
        tokio::select! {
            received = sockets.rtp.recv_from(&mut rtp_buffer) => {
                if let Ok((len, from)) = received {
                    let now = Instant::now().into_std();
                    session.handle_input(Input::Receive { now, from, socket: Socket::Rtp, data: &rtp_buffer[..len] });
                }
            }
            received = sockets.rtcp.recv_from(&mut rtcp_buffer) => {
                if let Ok((len, from)) = received {
                    let now = Instant::now().into_std();
                    session.handle_input(Input::Receive { now, from, socket: Socket::Rtcp, data: &rtcp_buffer[..len] });
                }
            }
            _ = tokio::time::sleep_until(deadline) => session.handle_input(Input::Timeout(Instant::now().into_std())),
            frame = from_bridge(&mut bridge) => match frame {
                Some(frame) => session.push_bridge_audio(&frame),
                // The other call's task is gone (its call ended, or it joined another bridge).
                None => {
                    bridge = None;
                    session.set_bridged(false);
                }
            },
            command = commands.recv() => {
                let now = Instant::now().into_std();
                match command {
                    Some(MediaCommand::Close) | None => {
                        // The owner is gone: the call has ended.
                        session.close(now);
                        drain(&mut session, &sockets, &events, owner.as_mut(), &mut silence_told, &mut sinks, None);
                        owner.ended(session.stats());
                        return;
                    }
                    Some(MediaCommand::Bridge(link)) => {
                        session.set_bridged(link.is_some());
                        bridge = link;
                    }
                    Some(command) => apply(&mut session, now, command, &mut sinks),
                }
            }
        }
        let told = &mut silence_told;
        if let Some(next) = drain(&mut session, &sockets, &events, owner.as_mut(), told, &mut sinks, bridge.as_ref()) {
            deadline = Instant::from_std(next);
        }
    }
}

/// The next frame from the other call of a bridge; never ready without one.
async fn from_bridge(bridge: &mut Option<BridgeLink>) -> Option<Vec<i16>> {
    match bridge {
        Some(link) => link.from_other.recv().await,
        None => std::future::pending().await,
    }
}

/// The sinks of the session's recordings, by recording.
type Sinks = std::collections::HashMap<RecordingId, Box<dyn RecordingSink>>;

fn apply(session: &mut MediaSession, now: std::time::Instant, command: MediaCommand, sinks: &mut Sinks) {
    match command {
        MediaCommand::Play(source, options, reply) => {
            let _ = reply.send(session.play(source, options));
        }
        MediaCommand::StopPlayback(id) => {
            session.stop_playback(id);
        }
        MediaCommand::StopAllPlayback => session.stop_all_playback(),
        MediaCommand::SendDigits(steps, press, reply) => {
            let _ = reply.send(session.send_digits(steps, press));
        }
        MediaCommand::Record(options, sink, reply) => {
            let id = session.record(options);
            sinks.insert(id, sink);
            let _ = reply.send(id);
        }
        MediaCommand::StopRecording(id) => {
            session.stop_recording(id);
        }
        MediaCommand::InfoDigit(digit) => session.handle_info_digit(now, digit),
        MediaCommand::Update(negotiated) => session.update(now, negotiated),
        MediaCommand::Stats(reply) => {
            let _ = reply.send(session.stats());
        }
        MediaCommand::Close | MediaCommand::Bridge(_) => {} // handled by the task
    }
}

/// Sends what the session has to send and hands on its events; returns its next deadline.
fn drain(
    session: &mut MediaSession,
    sockets: &MediaSockets,
    events: &mpsc::Sender<MediaEvent>,
    owner: &mut dyn MediaOwner,
    silence_told: &mut bool,
    sinks: &mut Sinks,
    bridge: Option<&BridgeLink>,
) -> Option<std::time::Instant> {
    loop {
        match session.poll_output()? {
            Output::Transmit(transmit) => {
                let socket = match transmit.socket {
                    Socket::Rtp => &sockets.rtp,
                    Socket::Rtcp => &sockets.rtcp,
                };
                // A full send buffer loses this packet, as the network might: pacing matters more.
                if let Err(error) = socket.try_send_to(&transmit.data, transmit.to) {
                    debug!(to = %transmit.to, %error, "RTP send failed");
                }
            }
            Output::Event(MediaEvent::BridgeAudio(frame)) => {
                // A full link drops the frame: the other side is behind, and late audio is no use.
                if let Some(link) = bridge {
                    let _ = link.to_other.try_send(frame);
                }
            }
            Output::Event(MediaEvent::RecordingAudio { id, samples }) => {
                if let Some(sink) = sinks.get_mut(&id) {
                    sink.write(&samples);
                }
            }
            Output::Event(event) => {
                if let MediaEvent::RecordingEnded { id, reason, duration } = &event
                    && let Some(mut sink) = sinks.remove(id)
                {
                    sink.finish(*reason, *duration);
                }
                if let MediaEvent::Inactive(silent_for) = event
                    && !std::mem::replace(silence_told, true)
                {
                    debug!(port = sockets.port, ?silent_for, "no RTP for the inactivity timeout");
                    owner.far_end_silent(silent_for);
                }
                if events.try_send(event).is_err() {
                    debug!(port = sockets.port, "media event dropped: its owner is not reading");
                }
            }
            Output::Timeout(at) => return Some(at),
        }
    }
}
