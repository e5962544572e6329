//! One call's media: a sans-IO machine that takes datagrams and time, and gives datagrams to send, events
//! and its next deadline.
//!
//! Everything runs from one timer that ticks every packet time (20 ms unless negotiated otherwise), at
//! exact multiples of it from the start so sending never drifts. Each tick plays one frame out of the jitter
//! buffer to the listeners (recording, in-band DTMF detection) and sends one frame: the current playback,
//! the DTMF being sent, or silence. A tick the driver ran late is caught up frame by frame; one that is far
//! behind (the process was stopped) is skipped, with the RTP timestamp moved on so the far end sees a gap
//! rather than a burst.
//!
//! Received RTP is accepted from the address the SDP names, or (symmetric RTP, for callers behind NAT)
//! from the first other address that sends a few packets of one SSRC in sequence, learned once per stream,
//! after which packets from anywhere else are dropped and counted (the guard against RTP bleed). RTP that cannot be parsed, or with a payload type we did not agree on, is
//! counted and otherwise ignored.
//!
//! Audio inside the session is [`SAMPLE_RATE`] (8 kHz) whatever the codec; RTP timestamps count in the
//! codec's clock (48 kHz for Opus).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::codec::{Decoder, Encoder, SAMPLE_RATE};
use crate::dtmf::{Digit, DigitMerger, DigitStep, InBandDetector, Rfc4733Receiver, TelephoneEvent};
use crate::jitter::{FrameKind, JitterBuffer};
use crate::rtcp::{self, ReceiveStats, RtcpPacket, SenderInfo};
use crate::rtp::{self, RtpPacket};
use crate::sdp::Negotiated;
use crate::source::{AudioSource, Tone};
use crate::{Codec, Error};

/// Which of the call's two local sockets a datagram uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socket {
    /// The RTP port (and RTCP too when multiplexed).
    Rtp,
    /// The RTP port plus one.
    Rtcp,
}

/// Something that happened, for the machine to handle.
#[derive(Debug)]
pub enum Input<'a> {
    /// A datagram arrived on one of the call's sockets.
    Receive {
        /// When it arrived.
        now: Instant,
        /// Its source.
        from: SocketAddr,
        /// The socket it arrived on.
        socket: Socket,
        /// Its bytes.
        data: &'a [u8],
    },
    /// The deadline of the last [`Output::Timeout`] has passed (or any time: early calls do nothing).
    Timeout(Instant),
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The local socket to send it from.
    pub socket: Socket,
    /// Where to.
    pub to: SocketAddr,
    /// The bytes.
    pub data: Vec<u8>,
}

/// What the machine has for the driver, in the order to drain it: datagrams, then events, then the
/// deadline to call back at once nothing else is left.
#[derive(Debug)]
pub enum Output {
    /// Send this.
    Transmit(Transmit),
    /// Tell the call's owner this.
    Event(MediaEvent),
    /// Nothing more until then.
    Timeout(Instant),
}

/// Identifies a playback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlaybackId(pub u64);
/// Identifies a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordingId(pub u64);
/// Identifies a digit string being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DigitsId(pub u64);

/// Why a playback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaybackEnd {
    /// It played to the end (of its last loop).
    Completed,
    /// It was stopped.
    Stopped,
    /// A digit arrived and it allowed barge-in.
    BargedIn,
}

/// Why a recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingEnd {
    /// It reached its maximum length.
    MaxLength,
    /// The caller was silent for its silence timeout.
    Silence,
    /// No speech began within its initial timeout.
    NoInput,
    /// The caller pressed one of its finish keys (the key is not reported as a digit too).
    Key(char),
    /// It was stopped, or the session closed.
    Stopped,
}

/// What the session reports.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// A key press, from any source, reported once.
    Digit(Digit),
    /// A playback ended after playing `played`.
    PlaybackEnded {
        /// Which.
        id: PlaybackId,
        /// Why.
        reason: PlaybackEnd,
        /// How much of it was heard (all loops).
        played: Duration,
    },
    /// A digit string was sent in full.
    DigitsSent(DigitsId),
    /// More audio of a recording: interleaved samples at [`SAMPLE_RATE`] (left: what the far end sent,
    /// right: what we sent, for stereo).
    RecordingAudio {
        /// Which.
        id: RecordingId,
        /// The samples.
        samples: Vec<i16>,
    },
    /// A recording ended; its last audio came before this event.
    RecordingEnded {
        /// Which.
        id: RecordingId,
        /// Why.
        reason: RecordingEnd,
        /// Its length.
        duration: Duration,
    },
    /// Received RTP latched onto this address: one the SDP does not name (the far end is behind NAT), or
    /// the SDP's own, taking the stream back from a stranger who was learned first.
    Latched(SocketAddr),
    /// No RTP arrived for the inactivity timeout while the far end should have been sending.
    Inactive(Duration),
    /// The far end sent an RTCP BYE.
    RemoteBye,
    /// A frame received while bridged, for the other call (see [`MediaSession::set_bridged`]).
    BridgeAudio(Vec<i16>),
}

/// Options of a playback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayOptions {
    /// How many times to play it; `None` loops until stopped.
    pub loops: Option<u32>,
    /// Gain in dB (SWML `volume`, -40 to 40).
    pub gain_db: f32,
    /// Stop when a digit arrives.
    pub barge_in: bool,
}

impl Default for PlayOptions {
    fn default() -> Self {
        PlayOptions { loops: Some(1), gain_db: 0.0, barge_in: false }
    }
}

/// What a recording takes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordDirection {
    /// What the far end sends (the caller's voice).
    #[default]
    Received,
    /// What we send.
    Sent,
    /// Both, mixed to mono or as the two channels of stereo.
    Both,
}

/// Options of a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOptions {
    /// What it records.
    pub direction: RecordDirection,
    /// Two channels (received left, sent right) instead of one.
    pub stereo: bool,
    /// Its maximum length.
    pub max_length: Duration,
    /// End after this much silence from the far end, once it has spoken.
    pub end_on_silence: Option<Duration>,
    /// End if the far end has not spoken within this.
    pub initial_timeout: Option<Duration>,
    /// Keys that end it.
    pub finish_on_keys: String,
    /// Play a beep before recording starts.
    pub beep: bool,
}

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions {
            direction: RecordDirection::Received,
            stereo: false,
            max_length: Duration::from_secs(3600),
            end_on_silence: None,
            initial_timeout: None,
            finish_on_keys: String::new(),
            beep: false,
        }
    }
}

/// How a session is set up; everything random comes from the driver, so tests are reproducible.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The agreed stream.
    pub negotiated: Negotiated,
    /// Our SSRC.
    pub ssrc: u32,
    /// Our first sequence number.
    pub initial_sequence: u16,
    /// Our first RTP timestamp.
    pub initial_timestamp: u32,
    /// Our RTCP CNAME.
    pub cname: String,
    /// Report a dead call after this long without RTP while the far end should send (`None`: never).
    pub inactivity_timeout: Option<Duration>,
    /// Whether the inactivity timeout runs before the far end's first packet. Off by default: a far end
    /// that never sends (a signalling-only peer, a one-way announcement) is not a dead one that stopped.
    pub inactivity_before_first_packet: bool,
    /// How long received audio waits in the jitter buffer.
    pub jitter_delay: Duration,
    /// Send silence when nothing plays (keeps NAT bindings and the far end's own RTP timeout happy).
    pub send_silence_when_idle: bool,
    /// The wall clock at the session's start, as time since the Unix epoch, for RTCP sender reports.
    pub wall_clock_at_start: Duration,
    /// Seeds the RTCP report interval's randomisation.
    pub seed: u64,
}

impl SessionConfig {
    /// A configuration with the defaults: 60 ms jitter delay, 60 s inactivity timeout, idle silence.
    pub fn new(negotiated: Negotiated, ssrc: u32) -> SessionConfig {
        SessionConfig {
            negotiated,
            ssrc,
            initial_sequence: (ssrc >> 16) as u16 & 0x7fff,
            initial_timestamp: ssrc.rotate_left(13),
            cname: format!("callwright-{ssrc:08x}"),
            inactivity_timeout: Some(Duration::from_secs(60)),
            inactivity_before_first_packet: false,
            jitter_delay: Duration::from_millis(60),
            send_silence_when_idle: true,
            wall_clock_at_start: Duration::ZERO,
            seed: u64::from(ssrc),
        }
    }
}

/// Counts a session keeps; exposed for stats and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaStats {
    /// RTP packets sent.
    pub packets_sent: u64,
    /// RTP packets received and accepted.
    pub packets_received: u64,
    /// Received packets lost, by sequence numbers.
    pub packets_lost: i64,
    /// Received packets that came too late to play.
    pub packets_late: u64,
    /// Datagrams that were not valid RTP or RTCP.
    pub malformed: u64,
    /// Packets from an address other than the latched one.
    pub foreign_source: u64,
    /// Packets with a payload type we did not agree on.
    pub unexpected_payload_type: u64,
    /// Interarrival jitter, in microseconds.
    pub jitter_us: u64,
    /// Ticks skipped because the driver ran far behind.
    pub skipped_ticks: u64,
    /// Payloads the codec could not decode or frames it could not encode.
    pub codec_errors: u64,
}

/// Packets in sequence from one new address before we latch onto it (as Asterisk's strict RTP learns).
const LATCH_PROBATION: u32 = 4;
/// Frames behind after which ticks are skipped rather than sent in a burst.
const MAX_CATCH_UP_FRAMES: u32 = 5;
/// RTCP's minimum report interval (RFC 3550 §6.2), randomised by ±50 %.
const RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// The gap between two keys of a digit string.
const INTER_DIGIT_GAP: Duration = Duration::from_millis(100);
/// End packets of an RFC 4733 event are sent three times (§2.5.1.4).
const END_PACKETS: u32 = 3;
/// A received frame quieter than this (RMS) is silence, for recordings that end on silence.
const SILENCE_RMS: f64 = 200.0;
/// Recording audio is handed out in pieces of this length.
const RECORDING_CHUNK: Duration = Duration::from_secs(1);
/// The beep before a recording.
const BEEP: Duration = Duration::from_millis(400);
const BEEP_HZ: f32 = 1000.0;
/// The volume field of the RFC 4733 events we send (-10 dBm0).
const EVENT_VOLUME: u8 = 10;

#[derive(Debug)]
struct Playback {
    id: PlaybackId,
    source: Box<dyn AudioSource>,
    loops_left: Option<u32>,
    gain: f32,
    barge_in: bool,
    played_samples: u64,
}

#[derive(Debug)]
struct DigitSend {
    id: DigitsId,
    steps: VecDeque<DigitStep>,
    press: Duration,
    current: Option<SendingStep>,
}

#[derive(Debug, Clone, Copy)]
enum SendingStep {
    /// Sending an event: its code, starting timestamp, samples so far and total, End packets sent.
    Key { code: u8, timestamp: u32, elapsed: u32, length: u32, ends_sent: u32 },
    /// Waiting (audio plays meanwhile): samples left.
    Pause { left: u32 },
}

#[derive(Debug)]
struct Recording {
    id: RecordingId,
    options: RecordOptions,
    /// Set while the beep plays: recording starts once it ends.
    beep: Option<PlaybackId>,
    samples: Vec<i16>,
    recorded_frames: u64,
    silent_frames: u64,
    heard_speech: bool,
    since_chunk: u64,
}

/// A call's media. See the module docs; drive it with [`handle_input`](MediaSession::handle_input) and
/// drain [`poll_output`](MediaSession::poll_output) after each input.
#[derive(Debug)]
pub struct MediaSession {
    config: SessionConfig,
    codec: Codec,
    /// The stream's encoder and decoder (`None` in the unlikely case the codec library could not make one:
    /// the call is then silent that way, counted in [`MediaStats::codec_errors`]).
    encoder: Option<Encoder>,
    decoder: Option<Decoder>,
    /// Samples of [`SAMPLE_RATE`] audio in a frame, and RTP timestamp units in it.
    frame_samples: usize,
    frame_ticks: u32,
    /// The far end's timestamps extended to 64 bits, for codecs whose RTP clock is not the sample rate.
    remote_timeline: Option<i64>,
    ptime: Duration,
    started: Instant,
    next_tick: Instant,
    ticks: u64,
    sequence: u16,
    /// The RTP timestamp of the next frame we send.
    timestamp: u32,
    sent_since_silence: bool,
    latched: Option<SocketAddr>,
    /// Where the far end's RTCP really comes from, when not multiplexed (NAT maps it apart).
    rtcp_latched: Option<SocketAddr>,
    probation: Option<Probation>,
    last_received: Option<Instant>,
    activity_since: Instant,
    inactive_reported: bool,
    remote_ssrc: Option<u32>,
    receive_stats: ReceiveStats,
    last_sender_report: Option<(u32, Instant)>,
    jitter: JitterBuffer,
    dtmf_in: Rfc4733Receiver,
    in_band: Option<InBandDetector>,
    merger: DigitMerger,
    playbacks: VecDeque<Playback>,
    digits_out: VecDeque<DigitSend>,
    recording: Option<Recording>,
    next_id: u64,
    packets_sent: u32,
    octets_sent: u32,
    sent_since_report: bool,
    next_report: Instant,
    rng: u64,
    closed: bool,
    stats: MediaStats,
    transmits: VecDeque<Transmit>,
    events: VecDeque<MediaEvent>,
    scratch: Vec<i16>,
    sent_scratch: Vec<i16>,
    /// Bridged to another call: each received frame goes out as [`MediaEvent::BridgeAudio`], and what
    /// the other call received ([`MediaSession::push_bridge_audio`]) is sent while nothing plays.
    bridged: bool,
    bridge_in: VecDeque<i16>,
}

/// Packets from an address the SDP does not name, on their way to being latched onto.
#[derive(Debug, Clone, Copy)]
struct Probation {
    from: SocketAddr,
    ssrc: u32,
    /// The sequence number of the last one.
    last: u16,
    /// How many came in sequence.
    in_sequence: u32,
}

/// The most of the other call's audio a bridged session holds (60 ms at 8 kHz, three frames): the two
/// calls tick from one clock at different phases, so more would only add delay.
const BRIDGE_BUFFER_FRAMES: usize = 3;

impl MediaSession {
    /// A session that starts ticking at `now`.
    pub fn new(now: Instant, config: SessionConfig) -> MediaSession {
        let negotiated = &config.negotiated;
        let codec = negotiated.codec;
        let frame_samples = codec.samples_per_frame(negotiated.ptime_ms);
        let delay = (config.jitter_delay.as_micros() as u64 * u64::from(SAMPLE_RATE) / 1_000_000) as u32;
        let mut session = MediaSession {
            codec,
            encoder: codec.encoder().ok(),
            decoder: codec.decoder().ok(),
            frame_samples,
            frame_ticks: frame_samples as u32 * codec.timestamp_units_per_sample(),
            remote_timeline: None,
            ptime: Duration::from_millis(u64::from(negotiated.ptime_ms)),
            started: now,
            next_tick: now,
            ticks: 0,
            sequence: config.initial_sequence,
            timestamp: config.initial_timestamp,
            sent_since_silence: false,
            latched: None,
            rtcp_latched: None,
            probation: None,
            last_received: None,
            activity_since: now,
            inactive_reported: false,
            remote_ssrc: None,
            receive_stats: ReceiveStats::default(),
            last_sender_report: None,
            jitter: JitterBuffer::new(delay, SAMPLE_RATE),
            dtmf_in: Rfc4733Receiver::new(negotiated.telephone_event_rate),
            in_band: negotiated.telephone_event.is_none().then(InBandDetector::default),
            merger: DigitMerger::default(),
            playbacks: VecDeque::new(),
            digits_out: VecDeque::new(),
            recording: None,
            next_id: 1,
            packets_sent: 0,
            octets_sent: 0,
            sent_since_report: false,
            next_report: now,
            rng: config.seed | 1,
            closed: false,
            stats: MediaStats::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            scratch: Vec::with_capacity(frame_samples),
            sent_scratch: Vec::with_capacity(frame_samples),
            bridged: false,
            bridge_in: VecDeque::new(),
            config,
        };
        session.next_report = now + session.report_interval();
        session
    }

    // --- getters

    /// The agreed stream.
    pub fn negotiated(&self) -> &Negotiated {
        &self.config.negotiated
    }

    /// Counts so far.
    pub fn stats(&self) -> MediaStats {
        let mut stats = self.stats;
        stats.packets_lost = self.receive_stats.lost();
        stats.packets_late = self.jitter.stats().late;
        stats.jitter_us = u64::from(self.receive_stats.jitter()) * 1_000_000 / u64::from(self.codec.clock_rate());
        stats
    }

    /// The address received RTP is latched onto, if any yet.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    /// Whether anything is playing or queued.
    pub fn is_playing(&self) -> bool {
        !self.playbacks.is_empty()
    }

    // --- input

    /// Handles a datagram or the passing of time.
    pub fn handle_input(&mut self, input: Input<'_>) {
        if self.closed {
            return;
        }
        match input {
            Input::Receive { now, from, socket, data } => {
                self.run_ticks(now);
                self.receive(now, from, socket, data);
            }
            Input::Timeout(now) => self.run_ticks(now),
        }
    }

    /// A digit from SIP INFO, merged with the digits the media carries.
    pub fn handle_info_digit(&mut self, now: Instant, digit: Digit) {
        self.digit(now, digit);
    }

    // --- commands

    /// Queues `source` to play after what is queued already.
    pub fn play(&mut self, source: Box<dyn AudioSource>, options: PlayOptions) -> PlaybackId {
        let playback = self.new_playback(source, options);
        let id = playback.id;
        self.playbacks.push_back(playback);
        id
    }

    fn new_playback(&mut self, source: Box<dyn AudioSource>, options: PlayOptions) -> Playback {
        Playback {
            id: PlaybackId(self.next_id()),
            source,
            loops_left: options.loops,
            gain: 10f32.powf(options.gain_db.clamp(-40.0, 40.0) / 20.0),
            barge_in: options.barge_in,
            played_samples: 0,
        }
    }

    /// Stops a playback, playing or queued. Returns false if it had ended already.
    pub fn stop_playback(&mut self, id: PlaybackId) -> bool {
        let Some(index) = self.playbacks.iter().position(|p| p.id == id) else { return false };
        if let Some(playback) = self.playbacks.remove(index) {
            self.end_playback(playback, PlaybackEnd::Stopped);
        }
        true
    }

    /// Stops every playback.
    pub fn stop_all_playback(&mut self) {
        while let Some(playback) = self.playbacks.pop_front() {
            self.end_playback(playback, PlaybackEnd::Stopped);
        }
    }

    /// Whether digits can go as RFC 4733 events; if not, the owner sends them as SIP INFO.
    pub fn can_send_digits(&self) -> bool {
        self.config.negotiated.telephone_event.is_some()
    }

    /// Queues a digit string, each key held for `press` (at least 40 ms).
    pub fn send_digits(&mut self, steps: Vec<DigitStep>, press: Duration) -> Result<DigitsId, Error> {
        if !self.can_send_digits() {
            return Err(Error::NoTelephoneEvent);
        }
        let id = DigitsId(self.next_id());
        let press = press.clamp(Duration::from_millis(40), Duration::from_secs(5));
        self.digits_out.push_back(DigitSend { id, steps: steps.into(), press, current: None });
        Ok(id)
    }

    /// Starts a recording, replacing (and ending) one already running.
    pub fn record(&mut self, options: RecordOptions) -> RecordingId {
        if let Some(recording) = self.recording.take() {
            self.end_recording(recording, RecordingEnd::Stopped);
        }
        let id = RecordingId(self.next_id());
        let beep = options.beep.then(|| {
            let tone = Tone::new(
                vec![crate::source::ToneStep { frequencies: vec![BEEP_HZ], on: BEEP, off: Duration::ZERO }],
                Some(1),
                SAMPLE_RATE,
            );
            // The beep goes before anything else queued.
            let beep = self.new_playback(Box::new(tone), PlayOptions::default());
            let id = beep.id;
            self.playbacks.push_front(beep);
            id
        });
        self.recording = Some(Recording {
            id,
            options,
            beep,
            samples: Vec::new(),
            recorded_frames: 0,
            silent_frames: 0,
            heard_speech: false,
            since_chunk: 0,
        });
        id
    }

    /// Bridges this call's media to another's, or ends the bridge: while bridged, each frame received is
    /// reported as [`MediaEvent::BridgeAudio`] (for the other call), and the other call's audio, handed
    /// in with [`MediaSession::push_bridge_audio`], is what we send whenever no playback plays.
    pub fn set_bridged(&mut self, bridged: bool) {
        self.bridged = bridged;
        self.bridge_in.clear();
    }

    /// The other call's audio, at [`SAMPLE_RATE`] (see [`MediaSession::set_bridged`]).
    pub fn push_bridge_audio(&mut self, samples: &[i16]) {
        if !self.bridged {
            return;
        }
        self.bridge_in.extend(samples);
        let most = BRIDGE_BUFFER_FRAMES * self.frame_samples;
        if self.bridge_in.len() > most {
            let excess = self.bridge_in.len() - most;
            self.bridge_in.drain(..excess);
        }
    }

    /// Stops the recording. Returns false if it is not running.
    pub fn stop_recording(&mut self, id: RecordingId) -> bool {
        match self.recording.take() {
            Some(recording) if recording.id == id => {
                self.end_recording(recording, RecordingEnd::Stopped);
                true
            }
            other => {
                self.recording = other;
                false
            }
        }
    }

    /// Takes a renegotiated stream (re-INVITE or UPDATE): a new address resets latching, a new codec the
    /// receive path; a hold stops sending and the inactivity timer.
    pub fn update(&mut self, now: Instant, negotiated: Negotiated) {
        if negotiated.remote_rtp != self.config.negotiated.remote_rtp {
            self.latched = None;
            self.rtcp_latched = None;
            self.probation = None;
        }
        if negotiated.codec != self.codec {
            self.encoder = negotiated.codec.encoder().ok();
            self.decoder = negotiated.codec.decoder().ok();
            self.remote_timeline = None;
        }
        if negotiated.telephone_event_rate != self.config.negotiated.telephone_event_rate {
            self.dtmf_in = Rfc4733Receiver::new(negotiated.telephone_event_rate);
        }
        if negotiated.codec != self.codec || negotiated.ptime_ms != self.config.negotiated.ptime_ms {
            self.codec = negotiated.codec;
            self.frame_samples = self.codec.samples_per_frame(negotiated.ptime_ms);
            self.frame_ticks = self.frame_samples as u32 * self.codec.timestamp_units_per_sample();
            self.ptime = Duration::from_millis(u64::from(negotiated.ptime_ms));
            self.jitter.reset();
            self.started = now;
            self.next_tick = now;
            self.ticks = 0;
        }
        self.in_band = match (negotiated.telephone_event, self.in_band.take()) {
            (Some(_), _) => None,
            (None, detector) => Some(detector.unwrap_or_default()),
        };
        self.activity_since = now;
        self.inactive_reported = false;
        self.config.negotiated = negotiated;
    }

    /// Ends the session: playbacks and the recording end as stopped, and an RTCP BYE is sent.
    pub fn close(&mut self, _now: Instant) {
        if self.closed {
            return;
        }
        self.stop_all_playback();
        if let Some(recording) = self.recording.take() {
            self.end_recording(recording, RecordingEnd::Stopped);
        }
        self.send_report(true);
        self.closed = true;
    }

    // --- output

    /// The next thing for the driver: drain until it returns a [`Output::Timeout`] (or `None` once closed).
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(transmit) = self.transmits.pop_front() {
            return Some(Output::Transmit(transmit));
        }
        if let Some(event) = self.events.pop_front() {
            return Some(Output::Event(event));
        }
        if self.closed {
            return None;
        }
        let mut deadline = self.next_tick.min(self.next_report);
        if let Some(dtmf) = self.dtmf_in.poll_timeout() {
            deadline = deadline.min(dtmf);
        }
        Some(Output::Timeout(deadline))
    }

    // --- internals

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    fn report_interval(&mut self) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let factor = 0.5 + (self.rng % 1000) as f64 / 1000.0;
        RTCP_INTERVAL.mul_f64(factor)
    }

    fn run_ticks(&mut self, now: Instant) {
        let mut behind = 0;
        while self.next_tick <= now {
            behind += 1;
            if behind > MAX_CATCH_UP_FRAMES {
                let late = now.duration_since(self.next_tick);
                let skip = (late.as_micros() / self.ptime.as_micros()) as u32 + 1;
                self.ticks += u64::from(skip);
                self.timestamp = self.timestamp.wrapping_add(skip * self.frame_ticks);
                self.sent_since_silence = false;
                self.stats.skipped_ticks += u64::from(skip);
                self.next_tick = self.started + self.ptime * self.ticks as u32;
                continue;
            }
            let tick_at = self.next_tick;
            self.tick(tick_at);
            self.ticks += 1;
            self.next_tick = self.started + self.ptime * self.ticks as u32;
        }
        if let Some(digit) = self.dtmf_in.handle_timeout(now) {
            self.digit(now, digit);
        }
        if now >= self.next_report {
            self.send_report(false);
            self.next_report = now + self.report_interval();
        }
        self.check_activity(now);
    }

    fn check_activity(&mut self, now: Instant) {
        let Some(timeout) = self.config.inactivity_timeout else { return };
        if !self.config.negotiated.direction.receives() || self.inactive_reported {
            return;
        }
        if self.last_received.is_none() && !self.config.inactivity_before_first_packet {
            return;
        }
        let since = self.last_received.unwrap_or(self.activity_since).max(self.activity_since);
        if now.duration_since(since) >= timeout {
            self.inactive_reported = true;
            self.events.push_back(MediaEvent::Inactive(now.duration_since(since)));
        }
    }

    fn tick(&mut self, now: Instant) {
        let mut received = std::mem::take(&mut self.scratch);
        received.resize(self.frame_samples, 0);
        let kind = self.jitter.pop(&mut received);
        if let Some(detector) = &mut self.in_band {
            for digit in detector.feed(&received) {
                self.digit(now, digit);
            }
        }
        if self.bridged {
            self.events.push_back(MediaEvent::BridgeAudio(received.clone()));
        }
        let mut sent = std::mem::take(&mut self.sent_scratch);
        sent.clear();
        sent.resize(self.frame_samples, 0);
        self.send_frame(&mut sent);
        self.record_frame(&received, kind, &sent);
        self.scratch = received;
        self.sent_scratch = sent;
        self.timestamp = self.timestamp.wrapping_add(self.frame_ticks);
    }

    /// Sends this tick's frame; `frame` (zeroed) receives the audio sent, for recordings (silence while a
    /// digit is sent as events).
    fn send_frame(&mut self, frame: &mut [i16]) {
        if let Some(event) = self.next_digit_packet() {
            self.transmit_rtp(event.0, event.1, event.2, &event.3);
            return;
        }
        let mut playing = self.fill_from_playbacks(frame);
        if !playing && self.bridged {
            let n = self.bridge_in.len().min(frame.len());
            for (slot, sample) in frame.iter_mut().zip(self.bridge_in.drain(..n)) {
                *slot = sample;
            }
            playing = true;
        }
        if !playing && !self.config.send_silence_when_idle {
            self.sent_since_silence = false;
            return;
        }
        if self.config.negotiated.we_send() {
            let mut payload = Vec::with_capacity(self.frame_samples);
            let encoded = self.encoder.as_mut().map(|encoder| encoder.encode(frame, &mut payload));
            if !matches!(encoded, Some(Ok(()))) {
                self.stats.codec_errors += 1;
                self.sent_since_silence = false;
                return;
            }
            let marker = !self.sent_since_silence;
            self.transmit_rtp(marker, self.config.negotiated.payload_type, self.timestamp, &payload);
            self.sent_since_silence = true;
        } else {
            self.sent_since_silence = false;
        }
    }

    fn transmit_rtp(&mut self, marker: bool, payload_type: u8, timestamp: u32, payload: &[u8]) {
        if !self.config.negotiated.we_send() {
            return;
        }
        let packet =
            RtpPacket { marker, payload_type, sequence: self.sequence, timestamp, ssrc: self.config.ssrc, payload };
        self.sequence = self.sequence.wrapping_add(1);
        self.packets_sent = self.packets_sent.wrapping_add(1);
        self.octets_sent = self.octets_sent.wrapping_add(payload.len() as u32);
        self.sent_since_report = true;
        self.stats.packets_sent += 1;
        let to = self.latched.unwrap_or(self.config.negotiated.remote_rtp);
        self.transmits.push_back(Transmit { socket: Socket::Rtp, to, data: packet.to_bytes() });
    }

    /// Mixes the head of the playback queue into `frame`, moving through loops and queued playbacks.
    fn fill_from_playbacks(&mut self, frame: &mut [i16]) -> bool {
        let mut filled = 0;
        let mut any = false;
        while filled < frame.len() {
            let Some(playback) = self.playbacks.front_mut() else { break };
            any = true;
            let n = playback.source.read(&mut frame[filled..]);
            for sample in &mut frame[filled..filled + n] {
                *sample = (f32::from(*sample) * playback.gain).clamp(-32768.0, 32767.0) as i16;
            }
            playback.played_samples += n as u64;
            filled += n;
            if filled == frame.len() {
                break;
            }
            let again = match &mut playback.loops_left {
                None => true,
                Some(left) => {
                    *left = left.saturating_sub(1);
                    *left > 0
                }
            };
            // A source that gave nothing at all would loop forever within one frame.
            if again && n > 0 && playback.source.rewind() {
                continue;
            }
            if let Some(done) = self.playbacks.pop_front() {
                self.end_playback(done, PlaybackEnd::Completed);
            }
        }
        any
    }

    fn end_playback(&mut self, playback: Playback, reason: PlaybackEnd) {
        let played = Duration::from_micros(playback.played_samples * 1_000_000 / u64::from(SAMPLE_RATE));
        self.events.push_back(MediaEvent::PlaybackEnded { id: playback.id, reason, played });
    }

    /// The next RFC 4733 packet to send, if a digit is being sent: (marker, payload type, timestamp, payload).
    fn next_digit_packet(&mut self) -> Option<(bool, u8, u32, [u8; 4])> {
        let payload_type = self.config.negotiated.telephone_event?;
        // Durations count in the events' own clock; the timestamp is the audio's.
        let rate = self.config.negotiated.telephone_event_rate;
        let frame = self.frame_samples as u32 * rate / crate::codec::SAMPLE_RATE;
        loop {
            let send = self.digits_out.front_mut()?;
            let step = match send.current {
                Some(step) => step,
                None => match send.steps.pop_front() {
                    Some(DigitStep::Key(key)) => SendingStep::Key {
                        code: crate::dtmf::event_code(key).unwrap_or(0),
                        timestamp: self.timestamp,
                        elapsed: 0,
                        length: (send.press.as_millis() as u32 * rate / 1000).max(frame),
                        ends_sent: 0,
                    },
                    Some(DigitStep::Pause(pause)) => {
                        SendingStep::Pause { left: pause.as_millis() as u32 * rate / 1000 }
                    }
                    None => {
                        let id = send.id;
                        self.digits_out.pop_front();
                        self.events.push_back(MediaEvent::DigitsSent(id));
                        continue;
                    }
                },
            };
            match step {
                SendingStep::Pause { left } if left > frame => {
                    send.current = Some(SendingStep::Pause { left: left - frame });
                    return None;
                }
                SendingStep::Pause { .. } => {
                    send.current = None;
                    return None;
                }
                SendingStep::Key { code, timestamp, elapsed, length, ends_sent } => {
                    let elapsed = (elapsed + frame).min(length);
                    let end = elapsed >= length;
                    let ends_sent = ends_sent + u32::from(end);
                    send.current = if ends_sent >= END_PACKETS {
                        // The gap after a key: audio resumes for its length.
                        Some(SendingStep::Pause { left: INTER_DIGIT_GAP.as_millis() as u32 * rate / 1000 })
                    } else {
                        Some(SendingStep::Key { code, timestamp, elapsed, length, ends_sent })
                    };
                    let event =
                        TelephoneEvent { code, end, volume: EVENT_VOLUME, duration: elapsed.min(0xffff) as u16 };
                    let marker = elapsed == frame.min(length);
                    self.sent_since_silence = false;
                    return Some((marker && ends_sent <= 1, payload_type, timestamp, event.to_bytes()));
                }
            }
        }
    }

    fn record_frame(&mut self, received: &[i16], kind: FrameKind, sent: &[i16]) {
        let Some(recording) = &mut self.recording else { return };
        if let Some(beep) = recording.beep {
            if self.playbacks.iter().any(|p| p.id == beep) {
                return;
            }
            recording.beep = None;
        }
        let direction = recording.options.direction;
        let channels = received.iter().zip(sent).map(|(&l, &r)| match direction {
            RecordDirection::Received => (l, 0),
            RecordDirection::Sent => (0, r),
            RecordDirection::Both => (l, r),
        });
        if recording.options.stereo {
            for (l, r) in channels {
                recording.samples.extend_from_slice(&[l, r]);
            }
        } else {
            recording.samples.extend(channels.map(|(l, r)| l.saturating_add(r)));
        }
        recording.recorded_frames += 1;
        recording.since_chunk += 1;
        let rms = (received.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / received.len().max(1) as f64).sqrt();
        if kind == FrameKind::Received && rms >= SILENCE_RMS {
            recording.heard_speech = true;
            recording.silent_frames = 0;
        } else {
            recording.silent_frames += 1;
        }
        let ptime = self.ptime;
        let elapsed = ptime * recording.recorded_frames as u32;
        let silence = ptime * recording.silent_frames as u32;
        let options = &recording.options;
        let reason = if elapsed >= options.max_length {
            Some(RecordingEnd::MaxLength)
        } else if options.end_on_silence.is_some_and(|limit| recording.heard_speech && silence >= limit) {
            Some(RecordingEnd::Silence)
        } else if options.initial_timeout.is_some_and(|limit| !recording.heard_speech && elapsed >= limit) {
            Some(RecordingEnd::NoInput)
        } else {
            None
        };
        if let Some(reason) = reason {
            if let Some(recording) = self.recording.take() {
                self.end_recording(recording, reason);
            }
        } else if ptime * recording.since_chunk as u32 >= RECORDING_CHUNK {
            recording.since_chunk = 0;
            let samples = std::mem::take(&mut recording.samples);
            self.events.push_back(MediaEvent::RecordingAudio { id: recording.id, samples });
        }
    }

    fn end_recording(&mut self, mut recording: Recording, reason: RecordingEnd) {
        if let Some(beep) = recording.beep {
            self.stop_playback(beep);
        }
        if !recording.samples.is_empty() {
            let samples = std::mem::take(&mut recording.samples);
            self.events.push_back(MediaEvent::RecordingAudio { id: recording.id, samples });
        }
        let duration = self.ptime * recording.recorded_frames as u32;
        self.events.push_back(MediaEvent::RecordingEnded { id: recording.id, reason, duration });
    }

    fn digit(&mut self, now: Instant, digit: Digit) {
        if !self.merger.accept(now, digit) {
            return;
        }
        let barge: Vec<PlaybackId> = self.playbacks.iter().filter(|p| p.barge_in).map(|p| p.id).collect();
        for id in barge {
            if let Some(index) = self.playbacks.iter().position(|p| p.id == id)
                && let Some(playback) = self.playbacks.remove(index)
            {
                self.end_playback(playback, PlaybackEnd::BargedIn);
            }
        }
        let finishes =
            self.recording.as_ref().is_some_and(|r| r.beep.is_none() && r.options.finish_on_keys.contains(digit.key));
        if finishes {
            if let Some(recording) = self.recording.take() {
                self.end_recording(recording, RecordingEnd::Key(digit.key));
            }
            return;
        }
        self.events.push_back(MediaEvent::Digit(digit));
    }

    fn receive(&mut self, now: Instant, from: SocketAddr, socket: Socket, data: &[u8]) {
        if socket == Socket::Rtcp || rtp::is_rtcp(data) {
            self.receive_rtcp(now, from, data);
            return;
        }
        let packet = match RtpPacket::parse(data) {
            Ok(packet) => packet,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        let negotiated = &self.config.negotiated;
        let is_event = Some(packet.payload_type) == negotiated.telephone_event;
        if !is_event && packet.payload_type != negotiated.payload_type {
            // Comfort noise (payload type 13) is silence to us; anything else was not agreed.
            if packet.payload_type != 13 {
                self.stats.unexpected_payload_type += 1;
            }
            return;
        }
        if !self.accept_source(from, packet.ssrc, packet.sequence) {
            self.stats.foreign_source += 1;
            return;
        }
        self.last_received = Some(now);
        self.inactive_reported = false;
        if self.remote_ssrc != Some(packet.ssrc) {
            self.remote_ssrc = Some(packet.ssrc);
            self.receive_stats = ReceiveStats::default();
            self.jitter.reset();
            self.remote_timeline = None;
        }
        let rate = u128::from(self.codec.clock_rate());
        let arrival = (now.duration_since(self.started).as_micros() * rate / 1_000_000) as i64;
        self.receive_stats.record(packet.sequence, packet.timestamp, arrival);
        self.stats.packets_received += 1;
        if is_event {
            match self.dtmf_in.receive(now, packet.ssrc, packet.timestamp, packet.payload) {
                Ok(digits) => digits.into_iter().for_each(|d| self.digit(now, d)),
                Err(_) => self.stats.malformed += 1,
            }
            return;
        }
        let mut samples = Vec::with_capacity(self.frame_samples);
        let decoded = self.decoder.as_mut().map(|decoder| decoder.decode(packet.payload, &mut samples));
        if !matches!(decoded, Some(Ok(()))) {
            self.stats.codec_errors += 1;
            return;
        }
        let position = self.sample_position(packet.timestamp);
        self.jitter.push(position, samples);
    }

    /// A received RTP timestamp in units of [`SAMPLE_RATE`] samples, where the jitter buffer keeps audio: the
    /// timestamp itself for 8 kHz clocks; for Opus's 48 kHz, the timeline extended to 64 bits and divided
    /// (so the wrap of the 32-bit timestamp stays a wrap).
    fn sample_position(&mut self, timestamp: u32) -> u32 {
        let units = self.codec.timestamp_units_per_sample();
        if units == 1 {
            return timestamp;
        }
        let extended = match self.remote_timeline {
            Some(last) => last + crate::rtp::timestamp_distance(last as u32, timestamp),
            None => i64::from(timestamp),
        };
        // Only move forward: a late packet is placed without pulling the timeline back.
        self.remote_timeline = Some(self.remote_timeline.map_or(extended, |last| last.max(extended)));
        extended.div_euclid(i64::from(units)) as u32
    }

    /// Symmetric RTP: whether a packet from `from` is the far end's.
    ///
    /// The address the SDP names is taken at once, and always: the signalling vouched for it. Another
    /// address (the far end behind NAT) is learned from a few packets in sequence of one SSRC, once per
    /// stream: after that, packets from anywhere else are dropped until a renegotiation starts the stream
    /// again. Learning once is the guard against RTP bleed (CVE-2017-14099 in Asterisk): a stranger
    /// spraying our port range cannot take over a stream that has gone quiet (on hold, silence
    /// suppression), and one that won the race before the far end spoke loses the stream as soon as the
    /// far end sends from its SDP address.
    fn accept_source(&mut self, from: SocketAddr, ssrc: u32, sequence: u16) -> bool {
        if self.latched == Some(from) {
            return true;
        }
        if from == self.config.negotiated.remote_rtp {
            if self.latched.is_some() {
                // A stranger had won the race (or a learned NAT address gave way): the SDP's address wins.
                self.events.push_back(MediaEvent::Latched(from));
            }
            self.latched = Some(from);
            self.probation = None;
            return true;
        }
        if self.latched.is_some() {
            return false;
        }
        let in_sequence = match self.probation {
            Some(probation)
                if probation.from == from && probation.ssrc == ssrc && sequence == probation.last.wrapping_add(1) =>
            {
                probation.in_sequence + 1
            }
            _ => 1,
        };
        self.probation = Some(Probation { from, ssrc, last: sequence, in_sequence });
        if in_sequence < LATCH_PROBATION {
            return false;
        }
        self.probation = None;
        self.latched = Some(from);
        self.events.push_back(MediaEvent::Latched(from));
        true
    }

    fn receive_rtcp(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let Ok(packets) = rtcp::parse(data) else {
            self.stats.malformed += 1;
            return;
        };
        // RTCP comes from the latched address's host; a stranger's BYE must not end our call.
        let expected_ip = self.latched.unwrap_or(self.config.negotiated.remote_rtp).ip();
        if from.ip() != expected_ip {
            self.stats.foreign_source += 1;
            return;
        }
        if self.latched.is_some() && !self.config.negotiated.rtcp_mux {
            self.rtcp_latched = Some(from);
        }
        for packet in packets {
            match packet {
                RtcpPacket::SenderReport { ssrc, info, .. } if Some(ssrc) == self.remote_ssrc => {
                    self.last_sender_report = Some(((info.ntp_time >> 16) as u32, now));
                }
                RtcpPacket::Goodbye { ssrcs } if self.remote_ssrc.is_some_and(|s| ssrcs.contains(&s)) => {
                    self.events.push_back(MediaEvent::RemoteBye);
                }
                _ => {}
            }
        }
    }

    fn send_report(&mut self, goodbye: bool) {
        let now_wall = self.config.wall_clock_at_start + self.next_tick.duration_since(self.started);
        let info = self.sent_since_report.then(|| SenderInfo {
            ntp_time: ntp_timestamp(now_wall),
            rtp_time: self.timestamp,
            packets: self.packets_sent,
            octets: self.octets_sent,
        });
        let report = self.remote_ssrc.map(|ssrc| {
            let (last, delay) = match self.last_sender_report {
                Some((ntp_middle, at)) => {
                    let delay = self.next_tick.saturating_duration_since(at).as_micros() as u64 * 65536 / 1_000_000;
                    (ntp_middle, delay as u32)
                }
                None => (0, 0),
            };
            self.receive_stats.report(ssrc, last, delay)
        });
        self.sent_since_report = false;
        if !self.config.negotiated.we_send() && !goodbye {
            return;
        }
        let data = rtcp::build(self.config.ssrc, info, report, &self.config.cname, goodbye);
        let negotiated = &self.config.negotiated;
        let (socket, to) = if negotiated.rtcp_mux {
            (Socket::Rtp, self.latched.unwrap_or(negotiated.remote_rtp))
        } else {
            (Socket::Rtcp, self.rtcp_latched.unwrap_or(negotiated.remote_rtcp))
        };
        if !to.ip().is_unspecified() {
            self.transmits.push_back(Transmit { socket, to, data });
        }
    }
}

/// Seconds between 1900 (NTP's epoch) and 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

fn ntp_timestamp(since_unix_epoch: Duration) -> u64 {
    let seconds = since_unix_epoch.as_secs() + NTP_UNIX_OFFSET;
    let fraction = (u64::from(since_unix_epoch.subsec_nanos()) << 32) / 1_000_000_000;
    seconds << 32 | fraction
}
