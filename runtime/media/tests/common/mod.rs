//! Two media sessions over a simulated link, in virtual time: loss, delay and reordering are seeded, so a
//! failing run replays exactly.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use callwright_media::sdp::{self, LocalMedia, Negotiated, Origin, SessionDescription};
use callwright_media::{Input, MediaEvent, MediaSession, Output, SessionConfig, Socket, Transmit};

pub const CALLWRIGHT: &str = "127.0.0.1:40000";
pub const PEER: &str = "127.0.0.2:50000";

/// How the link treats packets in each direction.
#[derive(Debug, Clone, Copy)]
pub struct LinkConditions {
    /// Chance in 1,000 that a packet is lost.
    pub loss_per_mille: u32,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly from 0 to this, which reorders packets.
    pub jitter: Duration,
}

impl LinkConditions {
    pub const CLEAN: LinkConditions =
        LinkConditions { loss_per_mille: 0, delay: Duration::from_millis(10), jitter: Duration::ZERO };
}

/// A seeded generator (xorshift), so every run of a test sees the same losses.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A datagram on its way.
#[derive(Debug, Clone)]
pub struct InFlight {
    pub to_peer: bool,
    pub from: SocketAddr,
    pub socket: Socket,
    pub data: Vec<u8>,
}

/// The session under test ("callwright") and the far end ("peer"), both `MediaSession`s.
pub struct Pair {
    pub start: Instant,
    pub now: Instant,
    pub callwright: MediaSession,
    pub peer: MediaSession,
    pub to_peer: LinkConditions,
    pub to_callwright: LinkConditions,
    /// Where the peer's packets appear to come from (a NAT rewrites it).
    pub peer_source: SocketAddr,
    pub rng: Rng,
    in_flight: BTreeMap<(Instant, u64), InFlight>,
    sequence: u64,
    pub callwright_events: Vec<(Duration, MediaEvent)>,
    pub peer_events: Vec<(Duration, MediaEvent)>,
    /// Every datagram callwright sent, with the virtual time it left.
    pub callwright_sent: Vec<(Duration, Transmit)>,
}

/// The stream each side agrees on for a plain G.711 offer/answer with telephone-event (or without).
pub fn negotiate(telephone_event: bool) -> (Negotiated, Negotiated) {
    let peer_local = LocalMedia::new("127.0.0.2".parse().unwrap(), 50000);
    let mut offer = String::from_utf8(sdp::offer(&peer_local, &mut Origin::new(1))).unwrap();
    if !telephone_event {
        offer =
            offer.replace(" 101\r\n", "\r\n").replace("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n", "");
    }
    let offer = SessionDescription::parse(offer.as_bytes()).unwrap();
    let local = LocalMedia::new("127.0.0.1".parse().unwrap(), 40000);
    let (answer, ours) = sdp::answer(&offer, &local, &mut Origin::new(2)).unwrap();
    let theirs = sdp::accept_answer(&SessionDescription::parse(&answer).unwrap(), &peer_local).unwrap();
    (ours, theirs)
}

impl Pair {
    pub fn new(telephone_event: bool) -> Pair {
        let (ours, theirs) = negotiate(telephone_event);
        Pair::with(SessionConfig::new(ours, 0xca11), SessionConfig::new(theirs, 0xfee7))
    }

    pub fn with(callwright: SessionConfig, peer: SessionConfig) -> Pair {
        let start = Instant::now();
        Pair {
            start,
            now: start,
            callwright: MediaSession::new(start, callwright),
            peer: MediaSession::new(start, peer),
            to_peer: LinkConditions::CLEAN,
            to_callwright: LinkConditions::CLEAN,
            peer_source: PEER.parse().unwrap(),
            rng: Rng::new(7),
            in_flight: BTreeMap::new(),
            sequence: 0,
            callwright_events: Vec::new(),
            peer_events: Vec::new(),
            callwright_sent: Vec::new(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Runs both sides until `until` after the start.
    pub fn run_until(&mut self, until: Duration) {
        let end = self.start + until;
        loop {
            let callwright_at = self.drain(false);
            let peer_at = self.drain(true);
            let next_packet = self.in_flight.keys().next().map(|(at, _)| *at);
            let next = [Some(callwright_at), Some(peer_at), next_packet].into_iter().flatten().min().unwrap_or(end);
            if next > end {
                self.now = end;
                return;
            }
            self.now = next.max(self.now);
            while let Some(entry) = self.in_flight.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let packet = entry.remove();
                let input =
                    Input::Receive { now: self.now, from: packet.from, socket: packet.socket, data: &packet.data };
                if packet.to_peer { self.peer.handle_input(input) } else { self.callwright.handle_input(input) }
            }
            self.callwright.handle_input(Input::Timeout(self.now));
            self.peer.handle_input(Input::Timeout(self.now));
        }
    }

    /// Delivers a datagram to callwright from any address, now.
    pub fn inject(&mut self, from: SocketAddr, data: &[u8]) {
        self.callwright.handle_input(Input::Receive { now: self.now, from, socket: Socket::Rtp, data });
    }

    /// Sends the outputs of one side into the link; returns its deadline.
    fn drain(&mut self, peer: bool) -> Instant {
        loop {
            let session = if peer { &mut self.peer } else { &mut self.callwright };
            match session.poll_output() {
                Some(Output::Transmit(transmit)) => {
                    let conditions = if peer { self.to_callwright } else { self.to_peer };
                    if !peer {
                        self.callwright_sent.push((self.now - self.start, transmit.clone()));
                    }
                    if self.rng.below(1000) < u64::from(conditions.loss_per_mille) {
                        continue;
                    }
                    let extra = conditions.jitter.as_micros() as u64;
                    let at = self.now + conditions.delay + Duration::from_micros(self.rng.below(extra + 1));
                    let from = if peer { self.peer_source } else { CALLWRIGHT.parse().unwrap() };
                    self.sequence += 1;
                    self.in_flight.insert(
                        (at, self.sequence),
                        InFlight { to_peer: !peer, from, socket: transmit.socket, data: transmit.data },
                    );
                }
                Some(Output::Event(event)) => {
                    let at = self.now - self.start;
                    if peer { self.peer_events.push((at, event)) } else { self.callwright_events.push((at, event)) }
                }
                Some(Output::Timeout(at)) => return at,
                None => return self.now + Duration::from_secs(3600),
            }
        }
    }

    pub fn digits_heard(&self) -> String {
        self.callwright_events
            .iter()
            .filter_map(|(_, e)| if let MediaEvent::Digit(d) = e { Some(d.key) } else { None })
            .collect()
    }

    /// The recording callwright made, joined from its pieces.
    pub fn recorded(&self) -> Vec<i16> {
        self.callwright_events
            .iter()
            .filter_map(
                |(_, e)| if let MediaEvent::RecordingAudio { samples, .. } = e { Some(samples.clone()) } else { None },
            )
            .flatten()
            .collect()
    }
}

/// Power of `frequency` in `samples` at 8 kHz relative to their energy (1.0: a pure tone of that frequency).
pub fn tone_share(samples: &[i16], frequency: f32) -> f32 {
    let coefficient = 2.0 * (2.0 * std::f32::consts::PI * frequency / 8000.0).cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    let mut energy = 0.0f32;
    for &x in samples {
        let x = f32::from(x);
        energy += x * x;
        let s0 = x + coefficient * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coefficient * s1 * s2;
    power / (samples.len() as f32 / 2.0 * energy.max(1.0))
}
