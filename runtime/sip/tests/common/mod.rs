//! Test support: two endpoints over a simulated, lossy link in virtual time, and a scripted raw peer.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use callwright_sip::message::{Message, Request, Response};
use callwright_sip::timers::TimerSettings;
use callwright_sip::{Endpoint, EndpointConfig, Event, Flow, Transmit, Transport};

pub const ALICE: &str = "127.0.0.1:5070";
pub const BOB: &str = "127.0.0.1:5060";

pub fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

pub fn endpoint(at: &str, transport: Transport, seed: u64) -> Endpoint {
    Endpoint::new(EndpointConfig {
        listeners: vec![(transport, addr(at))],
        id_seed: seed,
        timers: TimerSettings::default(),
        ..EndpointConfig::default()
    })
}

/// A message in flight, with the time it arrives.
#[derive(Debug, Clone)]
pub struct InFlight {
    pub arrives: Instant,
    pub transmit: Transmit,
}

/// What the link does with one message.
pub type LossRule = Box<dyn FnMut(&Message) -> bool>;

/// Two endpoints (`alice` the caller, `bob` the callee) joined by a link with a fixed delay. A loss rule
/// decides per message whether it is dropped. Time only moves when the pair is idle.
pub struct Pair {
    pub now: Instant,
    pub alice: Endpoint,
    pub bob: Endpoint,
    pub delay: Duration,
    pub in_flight: VecDeque<InFlight>,
    pub drop_rule: Option<LossRule>,
    /// Every message delivered, in order, as (to bob?, message).
    pub log: Vec<(bool, Message)>,
    /// When each message in `log` was delivered.
    pub delivered_at: Vec<Instant>,
    /// Every message dropped.
    pub dropped: Vec<Message>,
    pub alice_events: Vec<Event>,
    pub bob_events: Vec<Event>,
}

impl Pair {
    pub fn new(transport: Transport) -> Pair {
        Pair {
            now: Instant::now(),
            alice: endpoint(ALICE, transport, 1),
            bob: endpoint(BOB, transport, 2),
            delay: Duration::from_millis(10),
            in_flight: VecDeque::new(),
            drop_rule: None,
            log: Vec::new(),
            delivered_at: Vec::new(),
            dropped: Vec::new(),
            alice_events: Vec::new(),
            bob_events: Vec::new(),
        }
    }

    pub fn drop_when(&mut self, rule: impl FnMut(&Message) -> bool + 'static) {
        self.drop_rule = Some(Box::new(rule));
    }

    fn collect(&mut self) {
        let now = self.now;
        for endpoint in [&mut self.alice, &mut self.bob] {
            while let Some(transmit) = endpoint.poll_transmit() {
                self.in_flight.push_back(InFlight { arrives: now + self.delay, transmit });
            }
        }
        while let Some(event) = self.alice.poll_event() {
            self.alice_events.push(event);
        }
        while let Some(event) = self.bob.poll_event() {
            self.bob_events.push(event);
        }
    }

    /// Runs until nothing is in flight and no timer is due before `until`.
    pub fn run_until(&mut self, until: Instant) {
        loop {
            self.collect();
            let next_delivery = self.in_flight.iter().map(|m| m.arrives).min();
            let next_timer = [self.alice.poll_timeout(), self.bob.poll_timeout()].into_iter().flatten().min();
            let next = [next_delivery, next_timer].into_iter().flatten().min();
            let Some(next) = next.filter(|n| *n <= until) else {
                self.now = until.max(self.now);
                return;
            };
            self.now = next.max(self.now);
            if next_delivery == Some(next) {
                let index = self.in_flight.iter().position(|m| m.arrives == next).expect("found above");
                let message = self.in_flight.remove(index).expect("index valid");
                self.deliver(message.transmit);
            } else {
                let now = self.now;
                self.alice.handle_timeout(now);
                self.bob.handle_timeout(now);
            }
        }
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        self.run_until(until);
    }

    fn deliver(&mut self, transmit: Transmit) {
        let to_bob = transmit.flow.remote == addr(BOB);
        let message = Message::parse(&transmit.bytes).expect("endpoints send parseable messages");
        if let Some(rule) = self.drop_rule.as_mut()
            && rule(&message)
        {
            self.dropped.push(message);
            return;
        }
        self.log.push((to_bob, message));
        self.delivered_at.push(self.now);
        let flow =
            Flow { transport: transmit.flow.transport, local: transmit.flow.remote, remote: transmit.flow.local };
        let now = self.now;
        if to_bob {
            self.bob.handle_message(now, flow, &transmit.bytes);
        } else {
            self.alice.handle_message(now, flow, &transmit.bytes);
        }
    }

    /// Delivered requests of `method` sent toward bob (`to_bob`) or alice.
    pub fn requests(&self, to_bob: bool, method: &str) -> Vec<&Request> {
        self.log
            .iter()
            .filter(|(dir, _)| *dir == to_bob)
            .filter_map(|(_, m)| match m {
                Message::Request(r) if r.method.as_str() == method => Some(r),
                _ => None,
            })
            .collect()
    }

    /// Delivered responses with `status` toward bob or alice, optionally for a CSeq method.
    pub fn responses(&self, to_bob: bool, status: u16, method: &str) -> Vec<&Response> {
        self.log
            .iter()
            .filter(|(dir, _)| *dir == to_bob)
            .filter_map(|(_, m)| match m {
                Message::Response(r) if r.status == status => Some(r),
                _ => None,
            })
            .filter(|r| r.headers.cseq().is_ok_and(|c| c.method.as_str() == method))
            .collect()
    }

    pub fn take_bob_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.bob_events)
    }

    pub fn take_alice_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.alice_events)
    }
}

/// An SDP offer/answer good enough for signalling tests.
pub fn sdp(ip: &str, port: u16) -> Vec<u8> {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    .into_bytes()
}

/// A single endpoint fed raw datagrams by a test acting as the peer.
pub struct RawPeer {
    pub now: Instant,
    pub endpoint: Endpoint,
    pub flow: Flow,
    /// Status codes of answers too broken to parse (e.g. echoing a peer's out-of-range CSeq).
    pub unparseable_statuses: Vec<u16>,
}

impl RawPeer {
    pub fn new(transport: Transport) -> RawPeer {
        RawPeer {
            now: Instant::now(),
            endpoint: endpoint(BOB, transport, 7),
            flow: Flow { transport, local: addr(BOB), remote: addr(ALICE) },
            unparseable_statuses: Vec::new(),
        }
    }

    /// Feeds bytes and returns what the endpoint sent back, plus events.
    pub fn feed(&mut self, bytes: &[u8]) -> (Vec<Message>, Vec<Event>) {
        let now = self.now;
        self.endpoint.handle_message(now, self.flow, bytes);
        self.drain()
    }

    pub fn drain(&mut self) -> (Vec<Message>, Vec<Event>) {
        let mut sent = Vec::new();
        while let Some(transmit) = self.endpoint.poll_transmit() {
            match Message::parse(&transmit.bytes) {
                Ok(message) => sent.push(message),
                Err(_) => {
                    let text = String::from_utf8_lossy(&transmit.bytes);
                    let status = text.strip_prefix("SIP/2.0 ").and_then(|t| t.get(..3)?.parse().ok());
                    self.unparseable_statuses.push(status.expect("a response with a status line"));
                }
            }
        }
        let mut events = Vec::new();
        while let Some(event) = self.endpoint.poll_event() {
            events.push(event);
        }
        (sent, events)
    }

    /// Advances virtual time, firing timers, and returns what was sent meanwhile.
    pub fn advance(&mut self, by: Duration) -> (Vec<Message>, Vec<Event>) {
        let until = self.now + by;
        let mut sent = Vec::new();
        let mut events = Vec::new();
        while let Some(at) = self.endpoint.poll_timeout().filter(|at| *at <= until) {
            self.now = at.max(self.now);
            let now = self.now;
            self.endpoint.handle_timeout(now);
            let (s, e) = self.drain();
            sent.extend(s);
            events.extend(e);
        }
        self.now = until;
        (sent, events)
    }
}

pub fn status_of(message: &Message) -> Option<u16> {
    match message {
        Message::Response(r) => Some(r.status),
        Message::Request(_) => None,
    }
}

/// Alice calls bob; bob answers with SDP as soon as the INVITE arrives. Returns both handles once
/// `settle` has passed (with a clean link, the call is confirmed by then).
pub fn start_call(pair: &mut Pair) -> callwright_sip::CallHandle {
    use callwright_sip::message::{NameAddr, Uri};
    use callwright_sip::{Extras, OutboundCall};
    let transport = pair.alice.config().listeners[0].0;
    let now = pair.now;
    pair.alice
        .invite(
            now,
            OutboundCall {
                target: Uri::parse("sip:bob@127.0.0.1:5060").unwrap(),
                from: NameAddr::new(Uri::parse("sip:alice@127.0.0.1").unwrap()),
                to: None,
                destination: addr(BOB),
                transport,
                credentials: None,
                extras: Extras::body("application/sdp", sdp("127.0.0.1", 4000)),
            },
        )
        .expect("invite")
}

/// Runs until bob sees the INVITE, and returns bob's handle for it.
pub fn await_incoming(pair: &mut Pair) -> callwright_sip::CallHandle {
    // Up to Timer B (32 s) of virtual time, so a lossy link's INVITE retransmissions can get through.
    for _ in 0..6_400 {
        pair.run_for(Duration::from_millis(5));
        if let Some(call) = pair.bob_events.iter().find_map(|e| match e {
            Event::IncomingCall { call, .. } => Some(*call),
            _ => None,
        }) {
            return call;
        }
    }
    panic!("bob never saw the INVITE: {:#?}", pair.log)
}

/// Alice calls, bob answers; runs `settle` and returns (alice's call, bob's call).
pub fn establish(pair: &mut Pair, settle: Duration) -> (callwright_sip::CallHandle, callwright_sip::CallHandle) {
    let alice_call = start_call(pair);
    let bob_call = await_incoming(pair);
    let now = pair.now;
    pair.bob
        .answer(now, bob_call, callwright_sip::Extras::body("application/sdp", sdp("127.0.0.1", 5000)))
        .expect("answer");
    pair.run_for(settle);
    (alice_call, bob_call)
}

pub fn ended(events: &[Event], call: callwright_sip::CallHandle) -> Vec<callwright_sip::EndReason> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::CallEnded { call: c, reason } if *c == call => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// The events of REFERs we sent, as text: `response <status>` for the REFER's final response and
/// `notify <sipfrag status> <terminated>` for each NOTIFY of its subscription.
pub fn refer_events(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ReferNotify { status, terminated, .. } => Some(format!("notify {status:?} {terminated}")),
            Event::Response { response, .. } => Some(format!("response {}", response.status)),
            _ => None,
        })
        .collect()
}

/// Runs the pair a moment and returns the REFER Alice's user was handed.
pub fn incoming_refer(pair: &mut Pair) -> callwright_sip::IncomingRequestHandle {
    pair.run_for(Duration::from_millis(20));
    pair.take_alice_events()
        .into_iter()
        .find_map(|e| match e {
            Event::Request { handle, request, .. } if request.method == callwright_sip::message::Method::Refer => {
                Some(handle)
            }
            _ => None,
        })
        .expect("alice sees the REFER")
}
