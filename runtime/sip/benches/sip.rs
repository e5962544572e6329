//! Benchmarks of the sans-IO SIP core. Everything runs in memory and in virtual time: no sockets, no clock.
//!
//! - `parse/invite`: [`Message::parse`] of a realistic 781-byte INVITE with SDP: a Via with `rport`, two
//!   Record-Routes, Contact, Allow, Supported, User-Agent, and an SDP offer with two codecs.
//! - `parse/rsip_invite`: the reference, `rsip::SipMessage::try_from` on the same bytes. rsip does less
//!   work: it parses the start line (Request-URI included) but only splits the header fields into named,
//!   unparsed values, checking no Via, `CSeq`, From, To, Contact or Content-Length.
//! - `serialize/invite`: [`Message::to_bytes`] of the parsed INVITE.
//! - `uas_call/invite_to_bye`: one inbound call through one [`Endpoint`], as a UAS: INVITE in (100 Trying
//!   out), answer with SDP (200 out), ACK in, BYE in (200 out). The peer's side is hand-written text, so
//!   each iteration also formats the INVITE, ACK and BYE (fresh Call-ID and branches) and picks the To tag
//!   out of the 200.
//! - `uac_uas/call`: one call between two endpoints, bytes carried between them by hand: invite, 100,
//!   answer, 200, ACK, hangup, BYE, 200. Both sides' parsing, transactions and dialogs run, and every
//!   message is serialised by one endpoint and parsed by the other.
//!
//! In the call benchmarks the endpoints live across iterations and virtual time moves 10 ms per call, with
//! [`Endpoint::handle_timeout`] run each time: old transactions and lingering calls are retired inside the
//! loop, so the figure is the steady-state cost of a call, timers included (about 3,200 ended calls
//! linger at any time at this virtual rate).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use callwright_sip::message::{Message, NameAddr, Uri};
use callwright_sip::{CallHandle, EndReason, Endpoint, EndpointConfig, Event, Extras, Flow, OutboundCall, Transport};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Our (the UAS's) address.
const BOB: &str = "127.0.0.1:5060";
/// The caller's address.
const ALICE: &str = "127.0.0.1:5070";
/// Virtual time between two calls.
const CALL_SPACING: Duration = Duration::from_millis(10);

/// A literal socket address.
fn addr(text: &str) -> SocketAddr {
    text.parse().expect("literal address")
}

/// An endpoint listening on `at` over UDP.
fn endpoint(at: &str, seed: u64) -> Endpoint {
    Endpoint::new(EndpointConfig {
        listeners: vec![(Transport::Udp, addr(at))],
        id_seed: seed,
        ..EndpointConfig::default()
    })
}

/// An SDP offer or answer with two codecs (PCMU, PCMA).
fn sdp(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=- 2890844526 2890844526 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=ptime:20\r\na=sendrecv\r\n"
    )
}

/// A realistic INVITE from alice (127.0.0.1:5070) to 1000@127.0.0.1, with the given Call-ID and branch.
fn invite(call_id: &str, branch: &str) -> Vec<u8> {
    let body = sdp("127.0.0.1", 49170);
    format!(
        "INVITE sip:1000@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{branch};rport\r\n\
         Record-Route: <sip:127.0.0.2;lr;ftag=a73kszlfl>\r\n\
         Record-Route: <sip:127.0.0.3;lr>\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@example.com>;tag=a73kszlfl\r\n\
         To: <sip:1000@example.net>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@127.0.0.1:5070;transport=udp>\r\n\
         Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY, UPDATE\r\n\
         Supported: replaces, timer, norefersub\r\n\
         User-Agent: ExamplePhone/4.2\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An in-dialog request from alice for the call `call_id`, to the To tag `to_tag`.
fn in_dialog(method: &str, seq: u32, call_id: &str, branch: &str, to_tag: &str) -> Vec<u8> {
    format!(
        "{method} sip:callwright@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@example.com>;tag=a73kszlfl\r\n\
         To: <sip:1000@example.net>;tag={to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {seq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The tag of the To field of a serialised message, found by a plain text search (the peer's side of the
/// benchmark should cost little next to the endpoint's).
fn to_tag(message: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(message).ok()?;
    let line = text.split("\r\n").find(|l| l.starts_with("To:"))?;
    let tag = &line[line.find(";tag=")? + 5..];
    Some(tag.split(';').next().unwrap_or(tag).to_string())
}

/// The flow as seen from the other end.
fn reversed(flow: Flow) -> Flow {
    Flow { transport: flow.transport, local: flow.remote, remote: flow.local }
}

/// What a call left behind, checked once outside the timed loops.
#[derive(Debug, Default)]
struct Outcome {
    /// The start line of the response to the BYE.
    bye_response: String,
    /// Why the UAS's call ended.
    uas_ended: Option<EndReason>,
    /// Why the UAC's call ended (two-endpoint benchmark only).
    uac_ended: Option<EndReason>,
}

impl Outcome {
    /// Panics unless the call was confirmed and then hung up cleanly.
    fn assert_complete(&self, two_sided: bool) {
        assert!(self.bye_response.starts_with("SIP/2.0 200"), "BYE answered {:?}", self.bye_response);
        assert_eq!(self.uas_ended, Some(EndReason::RemoteHangup), "UAS call did not end");
        if two_sided {
            assert_eq!(self.uac_ended, Some(EndReason::LocalHangup), "UAC call did not end");
        }
    }
}

/// The first line of a serialised message.
fn start_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines().next().unwrap_or_default().to_string()
}

/// One endpoint answering calls from a scripted peer.
struct Uas {
    /// Virtual now.
    now: Instant,
    /// The endpoint under test.
    endpoint: Endpoint,
    /// The peer's flow to us.
    flow: Flow,
    /// Calls made so far (for fresh Call-IDs and branches).
    calls: u64,
    /// The SDP answer.
    answer: Extras,
}

impl Uas {
    /// A UAS at [`BOB`] with nothing going on.
    fn new() -> Uas {
        Uas {
            now: Instant::now(),
            endpoint: endpoint(BOB, 2),
            flow: Flow { transport: Transport::Udp, local: addr(BOB), remote: addr(ALICE) },
            calls: 0,
            answer: Extras::body("application/sdp", sdp("127.0.0.1", 5000)),
        }
    }

    /// One full inbound call: INVITE, answer, ACK, BYE.
    fn call(&mut self) -> Outcome {
        self.now += CALL_SPACING;
        self.calls += 1;
        let (now, n) = (self.now, self.calls);
        self.endpoint.handle_timeout(now);
        let call_id = format!("{n}-bench@127.0.0.1");
        self.endpoint.handle_message(now, self.flow, &invite(&call_id, &format!("inv{n}")));
        let mut outcome = Outcome::default();
        let mut handle = None;
        self.drain(&mut handle, &mut outcome);
        let handle = handle.expect("IncomingCall");
        self.endpoint.answer(now, handle, self.answer.clone()).expect("answer");
        let ok = self.endpoint.poll_transmit().expect("200 to INVITE");
        let tag = to_tag(&ok.bytes).expect("To tag in 200");
        self.drain(&mut None, &mut outcome);
        self.endpoint.handle_message(now, self.flow, &in_dialog("ACK", 1, &call_id, &format!("ack{n}"), &tag));
        self.drain(&mut None, &mut outcome);
        self.endpoint.handle_message(now, self.flow, &in_dialog("BYE", 2, &call_id, &format!("bye{n}"), &tag));
        if let Some(response) = self.endpoint.poll_transmit() {
            outcome.bye_response = start_line(&response.bytes);
        }
        self.drain(&mut None, &mut outcome);
        outcome
    }

    /// Discards what the endpoint sends, noting a new call and the end of a call.
    fn drain(&mut self, incoming: &mut Option<CallHandle>, outcome: &mut Outcome) {
        while self.endpoint.poll_transmit().is_some() {}
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                Event::IncomingCall { call, .. } => *incoming = Some(call),
                Event::CallEnded { reason, .. } => outcome.uas_ended = Some(reason),
                _ => {}
            }
        }
    }
}

/// Two endpoints calling each other, bytes carried by hand.
struct Link {
    /// Virtual now.
    now: Instant,
    /// The caller.
    alice: Endpoint,
    /// The callee.
    bob: Endpoint,
    /// alice's call.
    call: OutboundCall,
    /// bob's SDP answer.
    answer: Extras,
}

impl Link {
    /// Alice at [`ALICE`], bob at [`BOB`].
    fn new() -> Link {
        Link {
            now: Instant::now(),
            alice: endpoint(ALICE, 1),
            bob: endpoint(BOB, 2),
            call: OutboundCall {
                target: Uri::parse("sip:1000@127.0.0.1:5060").expect("literal URI"),
                from: NameAddr::parse("\"Alice\" <sip:alice@example.com>").expect("literal name-addr"),
                to: None,
                destination: addr(BOB),
                transport: Transport::Udp,
                credentials: None,
                extras: Extras::body("application/sdp", sdp("127.0.0.1", 49170))
                    .header("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY, UPDATE")
                    .header("Supported", "replaces, timer, norefersub"),
            },
            answer: Extras::body("application/sdp", sdp("127.0.0.1", 5000)),
        }
    }

    /// Delivers everything each endpoint sends to the other until both are quiet. Returns the start line
    /// of the last response bob sent.
    fn carry(&mut self) -> Option<String> {
        let now = self.now;
        let mut last_from_bob = None;
        loop {
            let mut moved = false;
            while let Some(transmit) = self.alice.poll_transmit() {
                self.bob.handle_message(now, reversed(transmit.flow), &transmit.bytes);
                moved = true;
            }
            while let Some(transmit) = self.bob.poll_transmit() {
                last_from_bob = Some(transmit.bytes.clone());
                self.alice.handle_message(now, reversed(transmit.flow), &transmit.bytes);
                moved = true;
            }
            if !moved {
                return last_from_bob.map(|b| start_line(&b));
            }
        }
    }

    /// One full call: alice invites, bob answers, alice hangs up.
    fn call(&mut self) -> Outcome {
        self.now += CALL_SPACING;
        let now = self.now;
        self.alice.handle_timeout(now);
        self.bob.handle_timeout(now);
        let mut outcome = Outcome::default();
        let alice_call = self.alice.invite(now, self.call.clone()).expect("invite");
        self.carry();
        let bob_call = self
            .bob
            .poll_event()
            .and_then(|e| match e {
                Event::IncomingCall { call, .. } => Some(call),
                _ => None,
            })
            .expect("IncomingCall");
        self.bob.answer(now, bob_call, self.answer.clone()).expect("answer");
        self.carry();
        self.alice.hangup(now, alice_call).expect("hangup");
        outcome.bye_response = self.carry().unwrap_or_default();
        while let Some(event) = self.alice.poll_event() {
            if let Event::CallEnded { reason, .. } = event {
                outcome.uac_ended = Some(reason);
            }
        }
        while let Some(event) = self.bob.poll_event() {
            if let Event::CallEnded { reason, .. } = event {
                outcome.uas_ended = Some(reason);
            }
        }
        outcome
    }
}

/// `parse/*` and `serialize/*`.
fn messages(c: &mut Criterion) {
    let bytes = invite("3848276298220188511@127.0.0.1", "524287-1---8a1b2c3d4e5f6a7b");
    let parsed = Message::parse(&bytes).expect("benchmark INVITE parses");
    assert!(rsip::SipMessage::try_from(bytes.as_slice()).is_ok(), "rsip parses the benchmark INVITE");

    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    group.bench_function("invite", |b| b.iter(|| Message::parse(black_box(&bytes))));
    group.bench_function("rsip_invite", |b| b.iter(|| rsip::SipMessage::try_from(black_box(bytes.as_slice()))));
    group.finish();

    let mut group = c.benchmark_group("serialize");
    group.throughput(Throughput::Elements(1));
    group.bench_function("invite", |b| b.iter(|| black_box(&parsed).to_bytes()));
    group.finish();
}

/// `uas_call/*` and `uac_uas/*`.
fn calls(c: &mut Criterion) {
    let mut uas = Uas::new();
    uas.call().assert_complete(false);
    let mut group = c.benchmark_group("uas_call");
    group.throughput(Throughput::Elements(1));
    group.bench_function("invite_to_bye", |b| b.iter(|| uas.call()));
    group.finish();
    uas.call().assert_complete(false);

    let mut link = Link::new();
    link.call().assert_complete(true);
    let mut group = c.benchmark_group("uac_uas");
    group.throughput(Throughput::Elements(1));
    group.bench_function("call", |b| b.iter(|| link.call()));
    group.finish();
    link.call().assert_complete(true);
}

criterion_group!(benches, messages, calls);
criterion_main!(benches);
