//! Hostile input end to end: what SIP scanners and attackers send, the server answers without crashing,
//! stalling or leaving calls behind.
//!
//! Where SIPp cannot express the attack, the test is a raw socket client ([`UdpPeer`], [`TcpPeer`]). After
//! each attack, [`assert_still_serving`] proves the server works: OPTIONS over UDP and TCP gets 200 fast
//! and a SIPp call over each transport completes.

mod support;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::serde_like::app;
use support::sipp::{Sipp, Transport};
use support::{ANSWER_HANGUP, Server, TempDir};

/// How fast OPTIONS must be answered, attack or not (a debug build on a shared 2-core machine).
const OPTIONS_LATENCY_LIMIT: Duration = Duration::from_millis(1000);
/// The largest UDP payload over IPv4 (65,535 minus the IP and UDP headers).
const MAX_UDP_PAYLOAD: usize = 65_507;
/// The server's limit on one message (`callwright_sip::message::MAX_MESSAGE_SIZE`).
const MAX_MESSAGE_SIZE: usize = 64 * 1024;
/// The server's cap on inbound TCP connections unless its open-file limit is lower (runtime/driver/src/tcp.rs).
const MAX_INBOUND_CONNECTIONS: usize = 2048;

/// Runs a SIPVicious tool (Debian `sipvicious`, installed by tests/run.sh) for at most 2 minutes; returns
/// what it printed.
fn sipvicious(tool: &str, args: &[&str]) -> String {
    let output = Command::new("timeout")
        .arg("120")
        .arg(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {tool} (Debian package sipvicious, installed by tests/run.sh): {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_ne!(output.status.code(), Some(124), "{tool} ran for 2 minutes:\n{text}");
    text
}

#[test]
fn sipvicious_scans_leave_the_server_answering_with_no_call_behind() {
    let data = TempDir::new("hostile-sipvicious");
    let mut server = Server::start_in(&data.0, &[]);
    server.deploy("answer-hangup", ANSWER_HANGUP).assert_status(201);
    // A catch-all app: every extension a scanner tries is a call.
    server.put_app("any", &app("answer-hangup", None, "{\"hangup_after_ms\": 60000}")).assert_status(201);
    let port = server.sip.port().to_string();
    let found = sipvicious("svmap", &["-p", &port, "127.0.0.1"]);
    assert!(found.contains("callwright"), "svmap (OPTIONS) did not find the server:\n{found}");
    let found = sipvicious("svmap", &["-p", &port, "-m", "INVITE", "127.0.0.1"]);
    assert!(found.contains("callwright"), "svmap (INVITE) did not find the server:\n{found}");
    // Extension scans with REGISTER (we answer 405) and with INVITE (each one a call).
    sipvicious("svwar", &["-p", &port, "-e", "100-199", "127.0.0.1"]);
    sipvicious("svwar", &["-p", &port, "-e", "100-199", "-m", "INVITE", "127.0.0.1"]);
    assert!(server.is_running(), "the server died:\n{}", server.log());
    // It still takes calls, and the scanners' calls all end (unacknowledged answers end after 64·T1).
    Sipp::client("uac-caller-hangs-up.xml", server.sip).service("5").calls(1).run().assert_all_succeeded(1);
    wait_for_no_calls(&server, Duration::from_secs(40));
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[test]
fn oversized_messages_are_handled_within_the_limit_and_cut_off_beyond_it() {
    let data = TempDir::new("hostile-oversized");
    let mut server = answer_hangup_server(&data);

    // UDP: no datagram can exceed the 64 KiB limit, so the largest one is an INVITE like any other.
    let peer = UdpPeer::new(server.sip);
    let padding = MAX_UDP_PAYLOAD - peer.invite("big", "1000", "").len() - "X-Padding: \r\n".len();
    let huge = format!("X-Padding: {}\r\n", "a".repeat(padding));
    let mut call = peer.call("big", "1000", &huge);
    assert_eq!(call.invite_len, MAX_UDP_PAYLOAD);
    call.request("BYE", "", 200);
    wait_for_no_calls(&server, Duration::from_secs(10));

    // TCP: a Content-Length past the limit. The stream cannot be resynchronised without reading the whole
    // body, so as soon as the header section is read the request is answered 513 Message Too Large (RFC
    // 3261 §21.5.14) and the connection closed, while the peer is still sending its body.
    let head = tcp_request("OPTIONS", "big-body", "Content-Length: 1000000\r\n");
    let (closed_after, answer) = TcpPeer::send_until_closed(server.sip, head.as_bytes(), 1_000_000);
    assert!(closed_after < Duration::from_secs(2), "closed after {closed_after:?}");
    let reply = Reply::parse(answer.as_bytes()).unwrap_or_else(|| panic!("no 513 before the close: {answer:?}"));
    assert_eq!(reply.status, 513, "{}", reply.text);
    assert_eq!(reply.header("Call-ID"), Some("big-body"), "{}", reply.text);
    assert!(reply.to_tag().is_some(), "no To tag: {}", reply.text);
    assert!(reply.header("Warning").is_some_and(|w| w.contains("larger than")), "{}", reply.text);

    // TCP: a header section that never ends is cut off at the limit.
    let head = "OPTIONS sip:endless@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKe\r\nX-Endless: ";
    let (closed_after, answer) = TcpPeer::send_until_closed(server.sip, head.as_bytes(), 10 * MAX_MESSAGE_SIZE);
    assert!(closed_after < Duration::from_secs(2), "closed after {closed_after:?}");
    assert!(answer.is_empty() || answer.starts_with("SIP/2.0 513 "), "answered {answer:?}");

    // TCP: a Content-Length that is not a number leaves no way to find the next message.
    let head = tcp_request("OPTIONS", "bad-length", "Content-Length: -1\r\n");
    let (closed_after, answer) = TcpPeer::send_until_closed(server.sip, head.as_bytes(), 0);
    assert!(closed_after < Duration::from_secs(2), "closed after {closed_after:?}");
    assert!(answer.is_empty() || answer.starts_with("SIP/2.0 400 "), "answered {answer:?}");

    assert_still_serving(&mut server);
    assert_idle_within(&server, Duration::from_secs(20));
}

#[test]
fn slow_and_silent_tcp_connections_do_not_stall_the_server_and_connections_past_the_cap_are_closed() {
    let data = TempDir::new("hostile-slowloris");
    // The default T1 (500 ms): a message's deadline is 64·T1 = 32 s, longer than this test holds the
    // connections (T1 = 100 ms would close the silent ones after 6.4 s, freeing places under the cap).
    let mut server = answer_hangup_server_with(&data, &[]);
    let cap = MAX_INBOUND_CONNECTIONS.min(open_file_limit(server.pid()) / 2);
    assert!(
        open_file_limit(std::process::id()) > cap + 1000,
        "this test opens {cap}+ connections: raise the open-file limit (ulimit -n)"
    );
    let rss_before = rss_kib(server.pid());

    // 200 connections trickle an OPTIONS a byte a second (it would take 4 minutes); 100 send nothing.
    let trickle = Trickle::start(server.sip, 200);
    let silent: Vec<TcpStream> = (0..100).map(|_| connect(server.sip)).collect();
    std::thread::sleep(Duration::from_secs(2));
    let latencies = assert_still_serving(&mut server);
    eprintln!("with 300 slow connections open, OPTIONS took {latencies:?} (UDP, TCP)");

    // Fill the server up to its cap; the connections past it are closed at once, the others stay open.
    std::thread::sleep(Duration::from_millis(500)); // the connections of the calls above close
    let filler: Vec<TcpStream> = (0..cap - 300).map(|_| connect(server.sip)).collect();
    let excess: Vec<TcpStream> = (0..50).map(|_| connect(server.sip)).collect();
    let started = Instant::now();
    for stream in &excess {
        assert!(is_closed_within(stream, Duration::from_secs(2)), "a connection past the cap of {cap} was served");
    }
    eprintln!("50 connections past the cap of {cap} were closed within {:?}", started.elapsed());
    let still_open = filler.iter().chain(&silent).filter(|s| !is_closed_within(s, Duration::ZERO)).count();
    assert_eq!(still_open, filler.len() + silent.len(), "connections under the cap were closed");
    let rss_at_cap = rss_kib(server.pid());
    // UDP is served while TCP is full.
    let udp = UdpPeer::new(server.sip).options_latency();
    assert!(udp < OPTIONS_LATENCY_LIMIT, "OPTIONS over UDP took {udp:?} with TCP at its cap");
    Sipp::client("uac-caller-hangs-up.xml", server.sip).service("5").run().assert_all_succeeded(1);

    // Once connections close, their places are free again.
    drop(filler);
    drop(excess);
    std::thread::sleep(Duration::from_millis(500));
    assert_still_serving(&mut server);
    assert_eq!(trickle.stop(), 0, "trickling connections were closed before their deadline");
    drop(silent);
    // At the default T1, ended calls linger 64·T1 = 32 s.
    assert_idle_within(&server, Duration::from_secs(45));
    let warnings = server.log().matches("TCP connection limit reached").count();
    assert_eq!(warnings, 1, "one warning for the refused connections (rate-limited):\n{}", server.log());
    eprintln!("RSS: {rss_before} KiB before, {rss_at_cap} KiB with {cap} connections open");
}

/// Connections that each send one more byte of an OPTIONS every second.
struct Trickle {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl Trickle {
    fn start(server: SocketAddr, connections: usize) -> Trickle {
        let streams: Vec<TcpStream> = (0..connections).map(|_| connect(server)).collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let message = tcp_request("OPTIONS", "slow", "Content-Length: 0\r\n").into_bytes();
        let thread = std::thread::spawn(move || {
            let mut streams = streams;
            let mut failed = 0;
            for byte in message.iter().cycle() {
                if stopped.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                streams.retain_mut(|stream| {
                    let sent = stream.write_all(std::slice::from_ref(byte)).is_ok();
                    failed += usize::from(!sent);
                    sent
                });
                std::thread::sleep(Duration::from_secs(1));
            }
            failed
        });
        Trickle { stop, thread }
    }

    /// Stops trickling; how many connections failed meanwhile.
    fn stop(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().expect("trickle thread")
    }
}

fn connect(server: SocketAddr) -> TcpStream {
    TcpStream::connect_timeout(&server, Duration::from_secs(2)).expect("TCP connect")
}

/// Whether the server closes `stream` within `wait` (zero: whether it has already).
fn is_closed_within(stream: &TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    let result = if wait.is_zero() {
        stream.set_nonblocking(true).expect("nonblocking");
        let result = stream.peek(&mut byte);
        stream.set_nonblocking(false).expect("blocking");
        result
    } else {
        stream.set_read_timeout(Some(wait)).expect("timeout");
        stream.peek(&mut byte)
    };
    match result {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

#[test]
fn garbage_datagrams_get_no_answer_and_mangled_invites_leave_no_call_behind() {
    let data = TempDir::new("hostile-garbage");
    let mut server = answer_hangup_server(&data);
    let mut rng = XorShift(0x5eed_cafe_f00d_beef);

    // Random bytes: nothing to answer.
    let random = UdpPeer::new(server.sip);
    for _ in 0..5000 {
        let len = 1 + rng.below(1500);
        random.send(&rng.bytes(len));
    }
    // Copies of a valid INVITE, truncated, with bytes flipped, lines dropped or doubled, garbage inserted or
    // line ends changed. Some still parse and become calls (left unacknowledged, they end after 64·T1).
    let mangled = UdpPeer::new(server.sip);
    let mut kinds = [0usize; 6];
    for i in 0..2000 {
        let invite = mangled.invite("5", &format!("mangled{i}"), "").into_bytes();
        let kind = rng.below(kinds.len());
        kinds[kind] += 1;
        mangled.send(&mangle(&mut rng, invite, kind));
    }
    let answers = mangled.drain(Duration::from_secs(2));
    let counts = count_statuses(&answers);
    eprintln!("mangled INVITEs ({kinds:?} of each kind): answers {counts:?}");
    // 503: new calls shed while the flood queues up. 488: an SDP offer mangled out of any codec we carry.
    let expected = [100, 180, 200, 400, 404, 415, 416, 420, 481, 482, 488, 501, 503, 505];
    assert!(counts.keys().all(|status| expected.contains(status)), "unexpected answers: {counts:?}");
    assert!(counts.get(&400).is_some_and(|n| *n > 100), "too few 400s: {counts:?}");
    let answered: Vec<String> = random.drain(Duration::from_millis(200)).into_iter().map(|r| r.text).collect();
    assert!(answered.is_empty(), "random bytes were answered: {answered:#?}");
    wait_for_no_calls(&server, Duration::from_secs(20));
    assert_still_serving(&mut server);
    assert_idle_within(&server, Duration::from_secs(20));
}

/// `invite` mangled in one of six ways.
fn mangle(rng: &mut XorShift, mut invite: Vec<u8>, kind: usize) -> Vec<u8> {
    let at = rng.below(invite.len());
    match kind {
        0 => invite.truncate(at),
        1 => {
            for _ in 0..1 + rng.below(5) {
                let at = rng.below(invite.len());
                invite[at] = rng.next() as u8;
            }
        }
        2 | 3 => {
            let text = String::from_utf8(invite).expect("text");
            let mut lines: Vec<&str> = text.split("\r\n").collect();
            let line = rng.below(lines.len());
            if kind == 2 {
                lines.remove(line);
            } else {
                lines.insert(line, lines[line]);
            }
            invite = lines.join("\r\n").into_bytes();
        }
        4 => {
            let len = 1 + rng.below(40);
            let garbage = rng.bytes(len);
            invite.splice(at..at, garbage);
        }
        _ => {
            let text = String::from_utf8(invite).expect("text");
            invite = if rng.below(2) == 0 { text.replace("\r\n", "\n") } else { text.replacen("\r\n", "\r", 3) }
                .into_bytes();
        }
    }
    invite
}

#[test]
fn malformed_requests_get_the_status_rfc_3261_gives_them() {
    let data = TempDir::new("hostile-malformed");
    let mut server = answer_hangup_server(&data);
    // (what is wrong, how to spoil a valid OPTIONS, the status expected; None: no answer at all)
    type Spoil = fn(String) -> String;
    let cases: [(&str, Spoil, Option<u16>); 20] = [
        ("no Call-ID", |r| drop_line(&r, "Call-ID"), Some(400)),
        ("CSeq not a number", |r| r.replace("CSeq: 1 OPTIONS", "CSeq: one OPTIONS"), Some(400)),
        ("CSeq of another method", |r| r.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"), Some(400)),
        ("Content-Length past the datagram", |r| r.replace("Content-Length: 0", "Content-Length: 500"), Some(400)),
        ("Max-Forwards over 255", |r| r.replace("Max-Forwards: 70", "Max-Forwards: 256"), Some(400)),
        ("two To fields", |r| r.replacen("To: ", "To: <sip:x@127.0.0.1>\r\nTo: ", 1), Some(400)),
        ("From not an address", |r| r.replace("From: <sip:", "From: <:::"), Some(400)),
        ("Request-URI not a URI", |r| r.replacen("sip:malformed@", "sip:@@", 1), Some(400)),
        ("no blank line", |r| r.trim_end().to_string(), Some(400)),
        ("a header line without a colon", |r| r.replace("Max-Forwards: 70", "Max-Forwards 70"), Some(400)),
        (
            "a header value not UTF-8",
            |r| r.replace("Max-Forwards: 70", "Subject: caf\u{fffd}\r\nMax-Forwards: 70"),
            Some(400),
        ),
        ("a Via that does not parse", |r| r.replacen("Via: SIP/2.0/UDP ", "Via: SIP/2.0/UDP @", 1), Some(400)),
        ("an unknown method", |r| r.replace("OPTIONS", "FROBNICATE"), Some(501)),
        ("SIP/3.0", |r| r.replacen("SIP/2.0\r\n", "SIP/3.0\r\n", 1), Some(505)),
        ("an http Request-URI", |r| r.replacen("sip:malformed@", "http://", 1), Some(416)),
        (
            "an unsupported Require",
            |r| r.replace("Max-Forwards: 70", "Require: x-hostile\r\nMax-Forwards: 70"),
            Some(420),
        ),
        (
            "BYE for no dialog",
            |r| r.replace("OPTIONS", "BYE").replace(">\r\nCall-ID", ">;tag=none\r\nCall-ID"),
            Some(481),
        ),
        ("CANCEL for no INVITE", |r| r.replace("OPTIONS", "CANCEL"), Some(481)),
        ("an ACK without Call-ID", |r| drop_line(&r.replace("OPTIONS", "ACK"), "Call-ID"), None),
        ("a response without CSeq", |r| with_start_line(&drop_line(&r, "CSeq"), "SIP/2.0 200 OK"), None),
    ];
    let peers: Vec<(UdpPeer, Vec<u8>)> = cases
        .iter()
        .map(|(what, spoil, _)| {
            let peer = UdpPeer::new(server.sip);
            let (me, target) = (peer.addr(), server.sip);
            let valid = format!(
                "OPTIONS sip:malformed@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKm{}\r\n\
                 From: <sip:attacker@{me}>;tag=a\r\nTo: <sip:malformed@{target}>\r\nCall-ID: m{}\r\n\
                 CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                me.port(),
                me.port(),
            );
            let mut bytes = spoil(valid).into_bytes();
            if what.contains("UTF-8") {
                let at = bytes.windows(3).position(|w| w == "\u{fffd}".as_bytes()).expect("marker");
                bytes.splice(at..at + 3, [0xe9]);
            }
            peer.send(&bytes);
            (peer, bytes)
        })
        .collect();
    let mut wrong = Vec::new();
    for ((what, _, expected), (peer, bytes)) in cases.iter().zip(&peers) {
        // One retransmission, as a UAC's Timer E would send.
        let mut answer = peer.recv(Duration::from_millis(500));
        if answer.is_none() {
            peer.send(bytes);
            answer = peer.recv(Duration::from_millis(1000));
        }
        let status = answer.as_ref().map(|a| a.status);
        if status != *expected {
            wrong.push(format!("{what}: expected {expected:?}, got {:?}", answer.map(|a| a.text)));
            continue;
        }
        // A final answer to a request without a To tag carries one (RFC 3261 §8.2.6.2).
        if let Some(answer) = answer
            && answer.to_tag().is_none()
        {
            wrong.push(format!("{what}: no To tag in {}", answer.text));
        }
    }
    assert!(wrong.is_empty(), "{} of {} cases answered wrongly:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
    assert_still_serving(&mut server);
    assert_idle_within(&server, Duration::from_secs(20));
}

fn with_start_line(message: &str, start_line: &str) -> String {
    let (_, rest) = message.split_once("\r\n").expect("a start line");
    format!("{start_line}\r\n{rest}")
}

fn drop_line(request: &str, name: &str) -> String {
    request.split("\r\n").filter(|line| !line.starts_with(&format!("{name}:"))).collect::<Vec<_>>().join("\r\n")
}

#[test]
fn a_refer_flood_gets_a_final_response_for_every_refer_and_the_call_still_ends() {
    let data = TempDir::new("hostile-refer-flood");
    let mut server = answer_hangup_server(&data);
    let mut call = UdpPeer::new(server.sip).call("flood", "refer-flood", "");
    let refer_to = "Refer-To: <sip:target@127.0.0.1>\r\nReferred-By: <sip:attacker@127.0.0.1>\r\n";
    let refers: Vec<(String, String)> = (0..500).map(|_| call.next_request("REFER", refer_to)).collect();
    let started = Instant::now();
    let finals = transact(&call.peer, refers, Duration::from_secs(20));
    let took = started.elapsed();
    let counts = count_statuses(finals.values());
    eprintln!("500 REFERs answered in {took:?}: {counts:?}");
    assert_eq!(finals.len(), 500, "REFERs without a final response after 20 s: {counts:?}");
    // The guest has no handler: the host declines (501); past the 256 events queued for the guest, 503.
    assert!(counts.keys().all(|s| [501, 503].contains(s)), "{counts:?}");
    assert!(counts.get(&501).is_some_and(|n| *n >= 1), "{counts:?}");
    call.request("BYE", "", 200);
    wait_for_no_calls(&server, Duration::from_secs(10));
    assert_still_serving(&mut server);
    assert_idle_within(&server, Duration::from_secs(20));
}

#[test]
fn a_notify_storm_is_refused_with_481_in_and_out_of_dialogs_and_memory_stays_bounded() {
    let data = TempDir::new("hostile-notify");
    let mut server = answer_hangup_server(&data);
    assert_still_serving(&mut server); // warms the server up before memory is measured
    let rss_before = rss_kib(server.pid());
    let mut rss_after = Vec::new();
    notify_storm(&server, 0);
    rss_after.push(rss_kib(server.pid()));
    // The first round's transactions and call end (Timer J: 64·T1 over UDP); the second round reuses the memory.
    let drained = assert_idle_within(&server, Duration::from_secs(20));
    eprintln!("the first round's state was gone {drained:?} after it");
    notify_storm(&server, 1);
    rss_after.push(rss_kib(server.pid()));
    assert_still_serving(&mut server);
    assert_idle_within(&server, Duration::from_secs(20));
    eprintln!("RSS: {rss_before} KiB before, {rss_after:?} KiB after each round of 4,000 NOTIFYs");
    assert!(rss_after[0] < rss_before + 32 * 1024, "RSS grew from {rss_before} KiB to {rss_after:?} KiB");
    // What the first round allocated was freed and served the second.
    assert!(rss_after[1] < rss_after[0] + 4 * 1024, "RSS grew from {rss_before} KiB to {rss_after:?} KiB");
}

/// 3,000 NOTIFYs out of any dialog (with and without a To tag, for the refer package and another one)
/// and 1,000 refer NOTIFYs in a call that sent no REFER, as fast as possible: each gets 481 (RFC 3261
/// §12.2.2, RFC 6665 §4.1.3).
fn notify_storm(server: &Server, round: usize) {
    let mut peer = UdpPeer::new(server.sip);
    let me = peer.addr();
    let notifies: Vec<(String, String)> = (0..3000)
        .map(|i| {
            let branch = peer.branch();
            let to_tag = if i % 3 == 0 { ";tag=nodialog" } else { "" };
            let event = if i % 2 == 0 { "refer" } else { "presence" };
            let bytes = format!(
                "NOTIFY sip:storm@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\n\
                 From: <sip:attacker@{me}>;tag=a{i}\r\nTo: <sip:storm@{target}>{to_tag}\r\nCall-ID: storm{round}x{i}\r\n\
                 CSeq: 1 NOTIFY\r\nMax-Forwards: 70\r\nEvent: {event}\r\nSubscription-State: active;expires=60\r\n\
                 Content-Type: message/sipfrag\r\nContent-Length: 16\r\n\r\nSIP/2.0 200 OK\r\n",
                target = server.sip,
            );
            (branch, bytes)
        })
        .collect();
    let started = Instant::now();
    let finals = transact(&peer, notifies, Duration::from_secs(20));
    let counts = count_statuses(finals.values());
    eprintln!("3000 NOTIFYs out of any dialog answered in {:?}: {counts:?}", started.elapsed());
    assert_eq!(counts, HashMap::from([(481, 3000)]));

    let mut call = UdpPeer::new(server.sip).call("storm", &format!("notify-storm-{round}"), "");
    let notify = "Event: refer\r\nSubscription-State: active;expires=60\r\n";
    let notifies: Vec<(String, String)> = (0..1000).map(|_| call.next_request("NOTIFY", notify)).collect();
    let started = Instant::now();
    let finals = transact(&call.peer, notifies, Duration::from_secs(20));
    let counts = count_statuses(finals.values());
    eprintln!("1000 refer NOTIFYs in a call answered in {:?}: {counts:?}", started.elapsed());
    assert_eq!(counts, HashMap::from([(481, 1000)]));
    call.request("BYE", "", 200);
    wait_for_no_calls(server, Duration::from_secs(10));
}

#[test]
fn a_notify_in_a_call_that_matches_no_subscription_is_refused() {
    let data = TempDir::new("hostile-notify-dialog");
    let server = answer_hangup_server(&data);
    let mut call = UdpPeer::new(server.sip).call("notify", "notify-no-subscription", "");
    // A refer NOTIFY when no REFER was sent (RFC 6665 §4.1.3).
    call.request("NOTIFY", "Event: refer;id=7\r\nSubscription-State: active;expires=60\r\n", 481);
    // Another package: this call holds no subscription at all, so no NOTIFY can match one.
    call.request("NOTIFY", "Event: dialog\r\nSubscription-State: active;expires=60\r\n", 481);
    // Event is mandatory in NOTIFY (RFC 6665): the request is malformed.
    call.request("NOTIFY", "Subscription-State: active;expires=60\r\n", 400);
    call.request("BYE", "", 200);
    wait_for_no_calls(&server, Duration::from_secs(10));
}

fn tcp_request(method: &str, user: &str, extra_headers: &str) -> String {
    format!(
        "{method} sip:{user}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK{user}\r\n\
         From: <sip:attacker@127.0.0.1>;tag=a\r\nTo: <sip:{user}@127.0.0.1>\r\nCall-ID: {user}\r\n\
         CSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra_headers}\r\n"
    )
}

// ----- helpers -----

/// A server with the answer-hangup guest as its catch-all app (it waits a minute for the caller's BYE).
fn answer_hangup_server(data: &TempDir) -> Server {
    answer_hangup_server_with(data, &["--sip-t1-ms", "100"])
}

/// [`answer_hangup_server`] with `args` instead of T1 = 100 ms.
fn answer_hangup_server_with(data: &TempDir, args: &[&str]) -> Server {
    let server = Server::start_with(&data.0, args, "info");
    server.deploy("answer-hangup", ANSWER_HANGUP).assert_status(201);
    server.put_app("any", &app("answer-hangup", None, "{\"hangup_after_ms\": 60000}")).assert_status(201);
    server
}

/// Panics unless the live call list empties within `limit`.
fn wait_for_no_calls(server: &Server, limit: Duration) {
    let started = Instant::now();
    loop {
        let calls: Vec<serde_json::Value> = serde_json::from_str(&server.api("GET", "/v1/calls", b"").body).unwrap();
        if calls.is_empty() {
            return;
        }
        assert!(started.elapsed() < limit, "calls left behind after {limit:?}: {calls:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Panics unless, within `limit`, the server holds nothing any more: no live call, no SIP call, no SIP
/// transaction, no TCP connection (`GET /v1/stats`). Ended calls and finished transactions linger up to
/// 64·T1 (6.4 s here) for retransmissions, client transactions T4 (5 s) more.
fn assert_idle_within(server: &Server, limit: Duration) -> Duration {
    let started = Instant::now();
    let keys = ["live_calls", "sip_calls", "sip_transactions", "tcp_connections"];
    loop {
        let stats: serde_json::Value = serde_json::from_str(&server.api("GET", "/v1/stats", b"").body).unwrap();
        if keys.iter().all(|key| stats[key].as_u64() == Some(0)) {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "the server still holds state after {limit:?}: {stats}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The server is alive and serves: OPTIONS over UDP and TCP is answered 200 within
/// [`OPTIONS_LATENCY_LIMIT`], a SIPp call over UDP and one over TCP complete, no call is left and nothing
/// panicked. Returns the two OPTIONS latencies.
fn assert_still_serving(server: &mut Server) -> (Duration, Duration) {
    assert!(server.is_running(), "the server died:\n{}", server.log());
    let udp = UdpPeer::new(server.sip).options_latency();
    let tcp = TcpPeer::options_latency(server.sip);
    assert!(udp < OPTIONS_LATENCY_LIMIT && tcp < OPTIONS_LATENCY_LIMIT, "OPTIONS took {udp:?} (UDP), {tcp:?} (TCP)");
    for transport in [Transport::Udp, Transport::Tcp] {
        Sipp::client("uac-caller-hangs-up.xml", server.sip)
            .service("5")
            .transport(transport)
            .timeout(Duration::from_secs(15))
            .run()
            .assert_all_succeeded(1);
    }
    wait_for_no_calls(server, Duration::from_secs(10));
    assert!(!server.log().contains("panicked"), "{}", server.log());
    (udp, tcp)
}

/// The resident memory of the running process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    support::rss_kib(pid).expect("VmRSS of a running server")
}

/// The soft open-file limit of process `pid`.
fn open_file_limit(pid: u32) -> usize {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read /proc/<pid>/limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("Max open files");
    line["Max open files".len()..].split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(usize::MAX)
}

/// A response as text, with its status and header fields (full names, as the server writes them).
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    text: String,
}

impl Reply {
    fn parse(bytes: &[u8]) -> Option<Reply> {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let status = text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
        Some(Reply { status, text })
    }

    fn header(&self, name: &str) -> Option<&str> {
        let head = self.text.split("\r\n\r\n").next().unwrap_or_default();
        head.lines().skip(1).find_map(|line| {
            let (field, value) = line.split_once(':')?;
            field.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// The top Via's branch: which of our requests this answers.
    fn branch(&self) -> Option<String> {
        let via = self.header("Via")?;
        let start = via.find("branch=")? + "branch=".len();
        Some(via[start..].split([';', ',', ' ']).next().unwrap_or_default().to_string())
    }

    fn to_tag(&self) -> Option<String> {
        let to = self.header("To")?;
        let start = to.find("tag=")? + "tag=".len();
        Some(to[start..].split([';', ' ']).next().unwrap_or_default().to_string())
    }
}

/// A SIP peer on a raw UDP socket of 127.0.0.1. A reader thread collects every response, so bursts do not
/// overflow the socket's receive buffer.
struct UdpPeer {
    socket: UdpSocket,
    server: SocketAddr,
    replies: mpsc::Receiver<Reply>,
    next_branch: u64,
}

impl UdpPeer {
    fn new(server: SocketAddr) -> UdpPeer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        let reader = socket.try_clone().expect("clone socket");
        let (sender, replies) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 65_536];
            reader.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
            loop {
                match reader.recv(&mut buffer) {
                    Ok(len) => {
                        if let Some(reply) = Reply::parse(&buffer[..len])
                            && sender.send(reply).is_err()
                        {
                            return;
                        }
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    // ICMP port unreachable from an earlier send: not ours to mind.
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                    Err(_) => return,
                }
            }
        });
        UdpPeer { socket, server, replies, next_branch: 0 }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("local addr")
    }

    fn send(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.server).expect("send datagram");
    }

    fn branch(&mut self) -> String {
        self.next_branch += 1;
        format!("z9hG4bK{}x{}", self.addr().port(), self.next_branch)
    }

    /// The next response within `wait`.
    fn recv(&self, wait: Duration) -> Option<Reply> {
        self.replies.recv_timeout(wait).ok()
    }

    /// Every response until none has come for `quiet`.
    fn drain(&self, quiet: Duration) -> Vec<Reply> {
        std::iter::from_fn(|| self.recv(quiet)).collect()
    }

    /// An INVITE from this peer to `user`, with `extra_headers` (each ending in CRLF) and an SDP offer.
    fn invite(&self, user: &str, call_id: &str, extra_headers: &str) -> String {
        let me = self.addr();
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n",
            me.port()
        );
        format!(
            "INVITE sip:{user}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call_id}\r\n\
             From: <sip:attacker@{me}>;tag=from{call_id}\r\nTo: <sip:{user}@{server}>\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:attacker@{me}>\r\nMax-Forwards: 70\r\n{extra_headers}\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len(),
            server = self.server,
        )
    }

    /// OPTIONS out of any dialog; how long its 200 took.
    fn options_latency(mut self) -> Duration {
        let (me, branch) = (self.addr(), self.branch());
        let options = format!(
            "OPTIONS sip:ping@{} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\nFrom: <sip:ping@{me}>;tag=p\r\n\
             To: <sip:ping@{}>\r\nCall-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            self.server, self.server
        );
        let started = Instant::now();
        self.send(options.as_bytes());
        loop {
            let reply = self.recv(Duration::from_secs(5)).expect("no answer to OPTIONS over UDP within 5 s");
            if reply.branch().as_deref() == Some(branch.as_str()) {
                assert_eq!(reply.status, 200, "{}", reply.text);
                return started.elapsed();
            }
        }
    }

    /// Places a call to `user` and waits for its 200 (retransmitting the INVITE as RFC 3261 Timer A does),
    /// then acknowledges it.
    fn call(self, user: &str, call_id: &str, extra_headers: &str) -> RawCall {
        let mut call_id = call_id.to_string();
        let mut invite = self.invite(user, &call_id, extra_headers);
        let started = Instant::now();
        let mut next_send = started;
        let ok = loop {
            if Instant::now() >= next_send {
                self.send(invite.as_bytes());
                next_send += Duration::from_millis(500);
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no 200 to the INVITE within 10 s");
            let reply = self.recv(Duration::from_millis(100)).filter(|r| r.header("Call-ID") == Some(call_id.as_str()));
            match reply {
                Some(reply) if reply.status == 200 => break reply,
                // Shedding load after the flood before: try again shortly as a new call.
                Some(reply) if reply.status == 503 => {
                    call_id.push_str("-again");
                    invite = self.invite(user, &call_id, extra_headers);
                    next_send = Instant::now() + Duration::from_millis(500);
                }
                Some(reply) if reply.status >= 300 => panic!("INVITE refused: {}", reply.text),
                _ => {}
            }
        };
        let contact = ok.header("Contact").expect("Contact in the 200");
        let target = contact.trim_start_matches('<').split(['>', ';']).next().unwrap_or_default().to_string();
        let call = RawCall {
            to_tag: ok.to_tag().expect("To tag in the 200"),
            user: user.to_string(),
            call_id,
            target,
            cseq: 1,
            invite_len: invite.len(),
            peer: self,
        };
        let ack = call.in_dialog("ACK", 1, "z9hG4bKack", "");
        call.peer.send(ack.as_bytes());
        // A 200 retransmitted meanwhile (T1 here is 100 ms) means the ACK was lost: send it again.
        while let Some(reply) = call.peer.recv(Duration::from_millis(300)) {
            if reply.status == 200 && reply.header("Call-ID") == Some(call.call_id.as_str()) {
                call.peer.send(ack.as_bytes());
            }
        }
        call
    }
}

/// A call placed by a [`UdpPeer`] and answered: the peer's side of its dialog.
struct RawCall {
    peer: UdpPeer,
    user: String,
    call_id: String,
    to_tag: String,
    /// The server's Contact: the Request-URI of requests in the dialog.
    target: String,
    cseq: u32,
    /// The size of the INVITE that started it.
    invite_len: usize,
}

impl RawCall {
    /// A request in the dialog with CSeq `cseq`, Via branch `branch` and `extra` header fields.
    fn in_dialog(&self, method: &str, cseq: u32, branch: &str, extra: &str) -> String {
        let (me, server, call_id, user) = (self.peer.addr(), self.peer.server, &self.call_id, &self.user);
        format!(
            "{method} {} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\nFrom: <sip:attacker@{me}>;tag=from{call_id}\r\n\
             To: <sip:{user}@{server}>;tag={}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n\
             {extra}Content-Length: 0\r\n\r\n",
            self.target, self.to_tag,
        )
    }

    /// The next request in the dialog: its Via branch and bytes.
    fn next_request(&mut self, method: &str, extra: &str) -> (String, String) {
        self.cseq += 1;
        let branch = self.peer.branch();
        let bytes = self.in_dialog(method, self.cseq, &branch, extra);
        (branch, bytes)
    }

    /// Sends one request in the dialog and panics unless its final response is `expected`.
    fn request(&mut self, method: &str, extra: &str, expected: u16) {
        let (branch, bytes) = self.next_request(method, extra);
        let started = Instant::now();
        let finals = transact(&self.peer, vec![(branch.clone(), bytes)], Duration::from_secs(5));
        let status = finals.get(&branch).map(|r| r.status);
        let answer = finals.get(&branch).map(|r| &r.text);
        assert_eq!(status, Some(expected), "{method} in the dialog, after {:?}: {answer:?}", started.elapsed());
    }
}

/// Sends every request at once, then retransmits the unanswered ones every 500 ms (as Timer E would) until
/// each has a final response or `limit` passes; returns the final responses by Via branch.
fn transact(peer: &UdpPeer, requests: Vec<(String, String)>, limit: Duration) -> HashMap<String, Reply> {
    let started = Instant::now();
    let mut finals: HashMap<String, Reply> = HashMap::new();
    let mut next_send = started;
    while finals.len() < requests.len() && started.elapsed() < limit {
        if Instant::now() >= next_send {
            for (branch, bytes) in &requests {
                if !finals.contains_key(branch) {
                    peer.send(bytes.as_bytes());
                }
            }
            next_send = Instant::now() + Duration::from_millis(500);
        }
        while let Some(reply) = peer.recv(Duration::from_millis(20)) {
            if reply.status >= 200
                && let Some(branch) = reply.branch()
            {
                finals.entry(branch).or_insert(reply);
            }
        }
    }
    finals
}

/// How many responses had each status.
fn count_statuses<'a>(replies: impl IntoIterator<Item = &'a Reply>) -> HashMap<u16, usize> {
    let mut counts = HashMap::new();
    for reply in replies {
        *counts.entry(reply.status).or_default() += 1;
    }
    counts
}

/// Raw TCP clients.
struct TcpPeer;

impl TcpPeer {
    /// OPTIONS over a fresh connection; how long its 200 took.
    fn options_latency(server: SocketAddr) -> Duration {
        let started = Instant::now();
        let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(2)).expect("TCP connect");
        stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        stream.write_all(tcp_request("OPTIONS", "ping", "Content-Length: 0\r\n").as_bytes()).expect("write OPTIONS");
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let len = stream.read(&mut buffer).expect("no answer to OPTIONS over TCP within 5 s");
            assert!(len > 0, "connection closed before the answer to OPTIONS");
            answer.extend_from_slice(&buffer[..len]);
        }
        let reply = Reply::parse(&answer).expect("a response");
        assert_eq!(reply.status, 200, "{}", reply.text);
        started.elapsed()
    }

    /// Connects, writes `head` and then up to `filler` bytes of `a`, and reads until the server closes the
    /// connection (at most 5 s). Returns how long after `head` was written the server closed it and what it
    /// sent back.
    fn send_until_closed(server: SocketAddr, head: &[u8], filler: usize) -> (Duration, String) {
        let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(2)).expect("TCP connect");
        stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        stream.write_all(head).expect("write head");
        let started = Instant::now();
        let mut writer = stream.try_clone().expect("clone stream");
        // Writing fails once the server has closed; the reader below sees the close.
        let filling = std::thread::spawn(move || {
            let chunk = [b'a'; 8192];
            let mut left = filler;
            while left > 0 {
                let len = left.min(chunk.len());
                if writer.write_all(&chunk[..len]).is_err() {
                    return;
                }
                left -= len;
            }
        });
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(len) => answer.extend_from_slice(&buffer[..len]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("the connection is still open 5 s after the message; got {answer:?}")
                }
                Err(_) => break, // reset
            }
        }
        let closed_after = started.elapsed();
        filling.join().expect("filler thread");
        (closed_after, String::from_utf8_lossy(&answer).into_owned())
    }
}

/// A tiny xorshift64 generator: reproducible garbage without a dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}
