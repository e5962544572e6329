//! A call's media end to end: the SDP answer names an RTP port of the server's own, from which it sends a
//! paced PCMU stream (silence while nothing plays) to the address the caller offered, and it takes the
//! caller's RTP back; an INVITE without SDP gets our offer and the ACK's answer starts the stream; a caller's hold (re-INVITE, sendonly) is answered recvonly and stops our stream until
//! it resumes; an offer with no codec we carry gets 488 with a Warning; a caller whose RTP stops is hung up
//! after the inactivity timeout.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::rtp::{RtpHeader, call_with_rtp_socket, caller_packet, parse_rtp, wait_for_log};
use support::serde_like::app;
use support::sipp::Sipp;
use support::{ANSWER_HANGUP, Server, TempDir};

fn answering_server(data: &TempDir, extra: &[&str], hangup_after_ms: u64) -> Server {
    let server = Server::start_in(&data.0, extra);
    server.deploy("answer-hangup", ANSWER_HANGUP).assert_status(201);
    let config = format!("{{\"hangup_after_ms\": {hangup_after_ms}}}");
    server.put_app("media", &app("answer-hangup", Some("7000"), &config)).assert_status(201);
    server
}

#[test]
fn answered_call_sends_paced_rtp_from_its_own_port_and_takes_the_callers() {
    let data = TempDir::new("media-stream");
    let server = answering_server(&data, &["--rtp-ports", "31000-31099"], 3000);
    let (socket, call, _) =
        call_with_rtp_socket(&server, "7000", "uac-media-callee-hangs-up.xml", Duration::from_millis(1000));

    let mut received: Vec<(Instant, RtpHeader)> = Vec::new();
    let mut server_rtp: Option<SocketAddr> = None;
    let mut sent = 0u16;
    let mut buffer = [0u8; 2048];
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let Ok((len, from)) = socket.recv_from(&mut buffer) else {
            if server_rtp.is_some() {
                break; // the server stopped sending: the call is over
            }
            continue;
        };
        let header = parse_rtp(&buffer[..len]).unwrap_or_else(|| panic!("not RTP from {from}: {:?}", &buffer[..len]));
        assert_eq!(*server_rtp.get_or_insert(from), from, "every packet comes from one address");
        received.push((Instant::now(), header));
        // The caller talks back from the port it offered.
        socket.send_to(&caller_packet(sent, u32::from(sent) * 160), from).expect("send");
        sent = sent.wrapping_add(1);
    }
    call.wait().assert_all_succeeded(1);

    let from = server_rtp.expect("the server sent RTP to the offered port");
    assert!(
        (31000..=31099).contains(&from.port()) && from.port().is_multiple_of(2),
        "RTP from {from}, outside --rtp-ports"
    );
    // 3 s of 20 ms packets: about 150, all PCMU (the caller's first codec) of 160 samples, in order.
    assert!((100..=200).contains(&received.len()), "{} packets in 3 s", received.len());
    let first = received[0].1;
    for (index, (_, header)) in received.iter().enumerate() {
        assert_eq!((header.payload_type, header.payload_len, header.ssrc), (0, 160, first.ssrc), "packet {index}");
        assert_eq!(header.sequence, first.sequence.wrapping_add(index as u16), "packet {index} out of sequence");
        let expected_timestamp = first.timestamp.wrapping_add(160 * index as u32);
        assert_eq!(header.timestamp, expected_timestamp, "packet {index}: the timestamp advances 160 per packet");
    }
    // Paced, not bursty: the stream's length in time matches its packet count.
    let span = received.last().expect("packets").0 - received[0].0;
    let expected = Duration::from_millis(20 * (received.len() as u64 - 1));
    assert!(span + Duration::from_millis(300) > expected && span < expected + Duration::from_millis(300), "{span:?}");
    // The server took the caller's packets (its own count, logged at the end of the call's media).
    let log = wait_for_log(&server, "media ended");
    let line = log.lines().find(|l| l.contains("media ended")).expect("line");
    let counted: u64 = field(line, "received").expect("received count");
    assert!(counted + 5 >= u64::from(sent) && counted <= u64::from(sent), "server counted {counted} of {sent}: {line}");
}

#[test]
fn an_apps_codec_order_chooses_the_codec_and_an_unknown_codec_is_refused() {
    let data = TempDir::new("media-codecs");
    let server = answering_server(&data, &[], 1000);
    let unknown = r#"{"flow": {"module": "answer-hangup", "config": {}}, "media": {"codecs": ["opus", "G729"]}}"#;
    let refused = server.put_app("bad", unknown);
    refused.assert_status(400);
    assert!(refused.body.contains("G729"), "{}", refused.body);
    // The caller offers PCMU first, then PCMA: the app's order wins.
    let config = r#"{"hangup_after_ms": 1000}"#;
    let with_codecs =
        app("answer-hangup", Some("7000"), config).replacen('{', r#"{"media": {"codecs": ["pcma"]}, "#, 1);
    server.put_app("media", &with_codecs).assert_status(200);
    let shown = server.api("GET", "/v1/apps/media", b"");
    assert!(shown.body.contains(r#""codecs":["PCMA"]"#), "{}", shown.body);
    let (socket, call, _) =
        call_with_rtp_socket(&server, "7000", "uac-media-callee-hangs-up.xml", Duration::from_millis(1000));
    let mut buffer = [0u8; 2048];
    let mut types = Vec::new();
    while let Ok((len, _)) = socket.recv_from(&mut buffer) {
        types.push(parse_rtp(&buffer[..len]).expect("RTP").payload_type);
    }
    call.wait().assert_all_succeeded(1);
    assert!(types.len() > 30 && types.iter().all(|&pt| pt == 8), "PCMA (8) only: {types:?}");
}

/// `answer-hangup` as built before the `media` interface existed (kept as it was built, in `tests/fixtures`).
const ANSWER_HANGUP_BEFORE_MEDIA: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/answer-hangup-voice-0.1.0.wasm");

#[test]
fn a_module_built_before_the_media_interface_still_loads_and_its_calls_carry_media() {
    let data = TempDir::new("media-old-module");
    let server = Server::start_in(&data.0, &[]);
    server.deploy("old", ANSWER_HANGUP_BEFORE_MEDIA).assert_status(201);
    server.put_app("old", &app("old", Some("7000"), r#"{"hangup_after_ms": 1000}"#)).assert_status(201);
    let (socket, call, _) =
        call_with_rtp_socket(&server, "7000", "uac-media-callee-hangs-up.xml", Duration::from_millis(1000));
    let mut buffer = [0u8; 2048];
    let mut packets = 0;
    while socket.recv_from(&mut buffer).is_ok() {
        packets += 1;
    }
    call.wait().assert_all_succeeded(1);
    assert!(packets > 30, "{packets} RTP packets in a 1 s call");
}

#[test]
fn hold_by_reinvite_stops_our_stream_and_resume_restarts_it() {
    held_then_resumed("media-hold", "uac-media-hold-resume.xml");
}

#[test]
fn a_stranger_spraying_rtp_at_a_call_loses_it_to_the_caller_and_cannot_take_it_back() {
    let data = TempDir::new("media-bleed");
    let server = answering_server(&data, &[], 4000);
    let (caller, call, _) =
        call_with_rtp_socket(&server, "7000", "uac-media-callee-hangs-up.xml", Duration::from_millis(1000));
    let mut buffer = [0u8; 2048];
    let (_, server_rtp) = caller.recv_from(&mut buffer).expect("the server's stream reaches the caller");
    // Before the caller sends anything, a stranger sends the server's port a convincing stream.
    let stranger = std::net::UdpSocket::bind("127.0.0.66:0").expect("bind the stranger");
    stranger.set_read_timeout(Some(Duration::from_millis(2))).expect("timeout");
    let spray = |from: u16| {
        for sequence in from..from + 10 {
            let packet = caller_packet(sequence, u32::from(sequence) * 160);
            stranger.send_to(&packet, server_rtp).expect("spray");
        }
    };
    spray(0);
    std::thread::sleep(Duration::from_millis(200));
    // The caller then speaks from the address its SDP names; the stranger sprays on.
    caller.set_read_timeout(Some(Duration::from_millis(2))).expect("timeout");
    let caller_started = Instant::now();
    let (mut to_caller, mut to_stranger_late) = (0, 0);
    let mut sequence = 0u16;
    while caller_started.elapsed() < Duration::from_millis(2000) {
        caller.send_to(&caller_packet(sequence, u32::from(sequence) * 160), server_rtp).expect("send");
        sequence = sequence.wrapping_add(1);
        if sequence.is_multiple_of(10) {
            spray(1000 + sequence);
        }
        let deadline = Instant::now() + Duration::from_millis(20);
        while Instant::now() < deadline {
            if caller.recv_from(&mut buffer).is_ok() && caller_started.elapsed() > Duration::from_millis(100) {
                to_caller += 1;
            }
            if stranger.recv_from(&mut buffer).is_ok() && caller_started.elapsed() > Duration::from_millis(100) {
                to_stranger_late += 1;
            }
        }
    }
    call.wait().assert_all_succeeded(1);
    assert_eq!(to_stranger_late, 0, "once the caller spoke, nothing went to the stranger");
    assert!(to_caller > 70, "the caller's stream went on: {to_caller} packets in 1.9 s (95 sent)");
    assert!(wait_for_log(&server, "media ended").contains("media ended"), "{}", server.log());
}

#[test]
fn hold_and_resume_by_reinvites_without_sdp_follow_the_answers_in_the_acks() {
    // SIPp checks that both 200s offer sendrecv (the full session, even while held).
    held_then_resumed("media-hold-offerless", "uac-media-hold-resume-offerless.xml");
}

/// A SIPp caller holds the server about 1 s after the answer and resumes it 2 s later, as `scenario`
/// does it; our stream has one gap of that length, with packets before and after it.
fn held_then_resumed(name: &str, scenario: &str) {
    let data = TempDir::new(name);
    let server = answering_server(&data, &[], 5000);
    let (socket, call, started) = call_with_rtp_socket(&server, "7000", scenario, Duration::from_millis(100));
    // The caller keeps sending throughout (a held phone may, and its stream must not bring ours back).
    let mut arrivals: Vec<Duration> = Vec::new();
    let mut buffer = [0u8; 2048];
    let mut sequence = 0u16;
    let mut server_rtp = None;
    while started.elapsed() < Duration::from_secs(7) {
        if let Ok((len, from)) = socket.recv_from(&mut buffer) {
            assert!(parse_rtp(&buffer[..len]).is_some(), "not RTP");
            server_rtp = Some(from);
            arrivals.push(started.elapsed());
        }
        if let Some(to) = server_rtp {
            socket.send_to(&caller_packet(sequence, u32::from(sequence) * 160), to).expect("send");
            sequence = sequence.wrapping_add(1);
        }
    }
    call.wait().assert_all_succeeded(1);
    let (gap_at, gap) =
        arrivals.windows(2).map(|pair| (pair[0], pair[1] - pair[0])).max_by_key(|(_, gap)| *gap).expect("packets");
    assert!(gap > Duration::from_millis(1500) && gap < Duration::from_millis(2600), "longest gap {gap:?}");
    let before = arrivals.iter().filter(|at| **at <= gap_at).count();
    let after = arrivals.iter().filter(|at| **at > gap_at).count();
    assert!(before > 25 && after > 25, "{before} packets before the hold, {after} after");
    assert!(server.log().contains("media renegotiated direction=RecvOnly"), "{}", server.log());
}

#[test]
fn invite_without_sdp_gets_our_offer_and_the_answer_in_the_ack_starts_the_stream() {
    let data = TempDir::new("media-late-offer");
    let server = answering_server(&data, &[], 2000);
    let (socket, call, _) = call_with_rtp_socket(&server, "7000", "uac-late-offer.xml", Duration::from_millis(1000));
    let mut buffer = [0u8; 2048];
    let mut received = Vec::new();
    while let Ok((len, _)) = socket.recv_from(&mut buffer) {
        received.push(parse_rtp(&buffer[..len]).expect("RTP"));
    }
    // SIPp checked the 200 for an offer; the ACK's answer named our socket and PCMU.
    call.wait().assert_all_succeeded(1);
    assert!(received.len() > 50, "{} packets after the ACK's answer", received.len());
    assert!(received.iter().all(|h| h.payload_type == 0), "PCMU, as the answer chose");
}

#[test]
fn offer_without_a_common_codec_gets_488_with_a_warning() {
    let data = TempDir::new("media-488");
    let server = answering_server(&data, &[], 500);
    Sipp::client("uac-offers-g729-only.xml", server.sip).service("7000").run().assert_all_succeeded(1);
    assert!(server.log().contains("cannot answer the offer (488)"), "{}", server.log());
}

#[test]
fn malformed_sdp_gets_400() {
    let data = TempDir::new("media-400");
    let server = answering_server(&data, &[], 500);
    Sipp::client("uac-offers-malformed-sdp.xml", server.sip).service("7000").run().assert_all_succeeded(1);
    assert!(server.log().contains("cannot answer the offer (400)"), "{}", server.log());
}

#[test]
fn a_call_finding_no_free_rtp_port_gets_503_and_the_call_holding_it_goes_on() {
    let data = TempDir::new("media-503");
    // One port pair: the first call holds it for 3 s.
    let server = answering_server(&data, &["--rtp-ports", "31200-31201"], 3000);
    let (socket, first, _) =
        call_with_rtp_socket(&server, "7000", "uac-media-callee-hangs-up.xml", Duration::from_secs(2));
    let mut buffer = [0u8; 2048];
    socket.recv_from(&mut buffer).expect("the first call's media runs");
    Sipp::client("uac-rejected-503.xml", server.sip).service("7000").run().assert_all_succeeded(1);
    first.wait().assert_all_succeeded(1);
    assert!(server.log().contains("cannot answer the offer (503)"), "{}", server.log());
}

#[test]
fn caller_whose_rtp_stops_is_hung_up_after_the_timeout() {
    let data = TempDir::new("media-timeout");
    let server = answering_server(&data, &["--rtp-timeout-s", "1"], 30_000);
    let (socket, call, started) =
        call_with_rtp_socket(&server, "7000", "uac-media-callee-hangs-up.xml", Duration::from_secs(5));
    let mut buffer = [0u8; 2048];
    let (_, server_rtp) = socket.recv_from(&mut buffer).expect("RTP from the server");
    for sequence in 0..10u16 {
        socket.send_to(&caller_packet(sequence, u32::from(sequence) * 160), server_rtp).expect("send");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Then silence from the caller: the server hangs up (SIPp expects its BYE) long before the guest would.
    call.wait().assert_all_succeeded(1);
    assert!(started.elapsed() < Duration::from_secs(10), "hung up after {:?}", started.elapsed());
    assert!(server.log().contains("no RTP from the far end"), "{}", server.log());
}

/// The value of `name=N` in a log line.
fn field(line: &str, name: &str) -> Option<u64> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    line[start..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}
