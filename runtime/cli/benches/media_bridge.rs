//! Bridged-call benchmark: the CPU each forwarded RTP stream costs callwright, against rtpengine
//! (Debian's `rtpengine-daemon`, in userspace: the relay of jambonz and Kamailio deployments) in the same
//! run.
//!
//! For each number of bridged pairs (`CALLWRIGHT_BENCH_BRIDGE_PAIRS`, comma-separated; default
//! 100,250,500), this process plays both ends of every pair from two UDP sockets, the callers' and the
//! callees': every 20 ms each socket sends one PCMU packet per stream it knows (the callers a 1 kHz tone,
//! the callees 600 Hz), to where the target's packets for that stream come from.
//! - rtpengine: each pair is an `offer` and an `answer` over its ng control protocol (bencoded, UDP), the
//!   SDPs naming the two sockets; rtpengine forwards each packet as it is.
//! - callwright: SIPp's UAC calls `serve` (the `media-player` test guest with `bridge_to`), the guest
//!   dials SIPp's UAS and bridges the two calls' media (`media.bridge`): each packet is decoded, carried
//!   to the other call's media task and sent again, paced, from that call's port.
//!
//! Over a 10 s window once all pairs are up, per target: the streams each socket received, the packets
//! lost (sequence gaps), the share of packets carrying the other side's tone (the forwarding is real),
//! and the target's CPU time (`/proc/<pid>/stat`) per forwarded stream (two per pair). The load
//! generator shares the machine's two cores with the target.
//!
//! Run: `cargo bench -p callwright --bench media_bridge` (needs `sipp` and `rtpengine`, Debian
//! `sip-tester` and `rtpengine-daemon`). Output: a Markdown table for `BENCHMARKS.md`.

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::bench::{clock_ticks_per_second, cpu_ticks, env_list, sipp_program};
use support::{Server, TempDir, free_port};

const DEFAULT_PAIRS: &[u32] = &[100, 250, 500];
/// Calls placed per second (callwright).
const CALL_RATE: u32 = 100;
/// How long the measuring window lasts, once every pair is up.
const WINDOW: Duration = Duration::from_secs(10);
/// Time for the streams to settle before the window.
const SETTLE: Duration = Duration::from_secs(3);
const PTIME: Duration = Duration::from_millis(20);
/// The receive buffer of each socket (every stream of its side arrives on it).
const RECEIVE_BUFFER: usize = 8 << 20;
/// The tones of the two sides.
const CALLER_HZ: f64 = 1000.0;
const CALLEE_HZ: f64 = 600.0;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("media_bridge: run with `cargo bench -p callwright --bench media_bridge`");
        return;
    }
    let levels = env_list("CALLWRIGHT_BENCH_BRIDGE_PAIRS").unwrap_or_else(|| DEFAULT_PAIRS.to_vec());
    let ticks = clock_ticks_per_second();
    println!(
        "### Bridged calls (PCMU, 20 ms, both directions), measured over {} s once all pairs are up\n",
        WINDOW.as_secs()
    );
    println!(
        "| target | pairs | streams received | packets lost | carrying the other side's tone | CPU per forwarded stream [% of a core] | callwright / rtpengine |"
    );
    println!("|---|---|---|---|---|---|---|");
    for pairs in levels {
        let reference = measure_rtpengine(pairs, ticks);
        let ours = measure_callwright(pairs, ticks);
        let ratio = ours.cpu_per_stream / reference.cpu_per_stream.max(1e-9);
        println!("{}", reference.row("rtpengine (userspace)", pairs, "1"));
        println!("{}", ours.row("callwright", pairs, &format!("{ratio:.2}")));
    }
    println!();
}

/// What one target did in the window.
struct Measured {
    streams: usize,
    lost: u64,
    expected: u64,
    other_tone_share: f64,
    cpu_per_stream: f64,
}

impl Measured {
    fn row(&self, name: &str, pairs: u32, ratio: &str) -> String {
        format!(
            "| {name} | {pairs} | {} of {} | {} of {} | {:.1} % | {:.4} | {ratio} |",
            self.streams,
            pairs * 2,
            self.lost,
            self.expected,
            self.other_tone_share * 100.0,
            self.cpu_per_stream
        )
    }
}

/// The two sockets of the load generator, the targets each sends to, and what each received.
struct Ends {
    sockets: [Arc<UdpSocket>; 2],
    targets: [Arc<Mutex<HashSet<SocketAddr>>>; 2],
}

impl Ends {
    fn new() -> Ends {
        let socket = || {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
            nix::sys::socket::setsockopt(&socket.as_fd(), nix::sys::socket::sockopt::RcvBuf, &RECEIVE_BUFFER)
                .expect("set the receive buffer");
            socket.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
            Arc::new(socket)
        };
        Ends { sockets: [socket(), socket()], targets: Default::default() }
    }

    fn port(&self, side: usize) -> u16 {
        self.sockets[side].local_addr().expect("addr").port()
    }

    /// Sends on both sockets and receives on both until `stop`; with `learn`, a socket sends to every
    /// address it has received from. Returns what each side received inside the window.
    fn run(
        &self,
        learn: bool,
        window: (Instant, Instant),
        stop: Arc<AtomicBool>,
    ) -> [std::thread::JoinHandle<Streams>; 2] {
        let sender = {
            let (sockets, targets, stop) = (self.sockets.clone(), self.targets.clone(), stop.clone());
            std::thread::spawn(move || send(&sockets, &targets, &stop))
        };
        let receivers = [0, 1].map(|side| {
            let (socket, targets, stop) = (self.sockets[side].clone(), self.targets[side].clone(), stop.clone());
            let other_hz = if side == 0 { CALLEE_HZ } else { CALLER_HZ };
            std::thread::spawn(move || receive(&socket, learn.then_some(&*targets), other_hz, window, &stop))
        });
        std::thread::spawn(move || {
            let _ = sender.join();
        });
        receivers
    }
}

/// Every 20 ms, one packet per target from each socket, each stream with its own SSRC and sequence.
fn send(sockets: &[Arc<UdpSocket>; 2], targets: &[Arc<Mutex<HashSet<SocketAddr>>>; 2], stop: &AtomicBool) {
    let tones = [CALLER_HZ, CALLEE_HZ].map(|hz| {
        let samples = support::rtp::sine(hz, 8000.0, Duration::from_millis(100));
        // 100 ms is a whole number of periods of both tones: frames repeat every five.
        samples
            .chunks(160)
            .map(|frame| frame.iter().map(|s| support::rtp::linear_to_mulaw(*s)).collect())
            .collect::<Vec<Vec<u8>>>()
    });
    let started = Instant::now();
    let mut streams: HashMap<(usize, SocketAddr), u32> = HashMap::new();
    let mut frame = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for side in 0..2 {
            let addresses: Vec<SocketAddr> = targets[side].lock().expect("targets").iter().copied().collect();
            for to in addresses {
                let next = streams.len() as u32;
                let ssrc = *streams.entry((side, to)).or_insert(0x1000_0000 + next);
                let mut packet = vec![0x80, 0];
                packet.extend_from_slice(&(frame as u16).to_be_bytes());
                packet.extend_from_slice(&((frame * 160) as u32).to_be_bytes());
                packet.extend_from_slice(&ssrc.to_be_bytes());
                packet.extend_from_slice(&tones[side][(frame % 5) as usize]);
                let _ = sockets[side].send_to(&packet, to);
            }
        }
        frame += 1;
        let due = started + PTIME * frame as u32;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
}

/// One received stream inside the window.
#[derive(Default)]
struct Stream {
    last_sequence: Option<u16>,
    received: u64,
    expected: u64,
    other_tone: u64,
}

type Streams = HashMap<(SocketAddr, u32), Stream>;

fn receive(
    socket: &UdpSocket,
    learn: Option<&Mutex<HashSet<SocketAddr>>>,
    other_hz: f64,
    (from, until): (Instant, Instant),
    stop: &AtomicBool,
) -> Streams {
    let mut streams = Streams::new();
    let mut buffer = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let Ok((len, source)) = socket.recv_from(&mut buffer) else { continue };
        if len < 12 || buffer[1] & 0x7f != 0 {
            continue; // RTCP, or not PCMU
        }
        if let Some(targets) = learn {
            targets.lock().expect("targets").insert(source);
        }
        let now = Instant::now();
        if now < from || now > until {
            continue;
        }
        let sequence = u16::from_be_bytes([buffer[2], buffer[3]]);
        let ssrc = u32::from_be_bytes([buffer[8], buffer[9], buffer[10], buffer[11]]);
        let stream = streams.entry((source, ssrc)).or_default();
        stream.received += 1;
        stream.expected += match stream.last_sequence {
            Some(last) => u64::from(sequence.wrapping_sub(last)).min(1000),
            None => 1,
        };
        stream.last_sequence = Some(sequence);
        let samples: Vec<i16> = buffer[12..len].iter().map(|b| support::rtp::mulaw_to_linear(*b)).collect();
        if support::rtp::tone_share(&samples, other_hz, 8000.0) > 0.8 {
            stream.other_tone += 1;
        }
    }
    streams
}

/// Sums both sides' streams and the target's CPU over the window.
fn summarise(streams: [Streams; 2], cpu: u64, ticks: u64, pairs: u32) -> Measured {
    let all = || streams.iter().flat_map(|side| side.values());
    let received: u64 = all().map(|s| s.received).sum();
    let forwarded = f64::from(pairs * 2);
    Measured {
        streams: streams.iter().map(HashMap::len).sum(),
        lost: all().map(|s| s.expected.saturating_sub(s.received)).sum(),
        expected: all().map(|s| s.expected).sum(),
        other_tone_share: all().map(|s| s.other_tone).sum::<u64>() as f64 / received.max(1) as f64,
        cpu_per_stream: cpu as f64 / ticks as f64 / WINDOW.as_secs_f64() / forwarded * 100.0,
    }
}

/// Measures the window starting `settle` from now on process `pid`.
fn window(ends: &Ends, learn: bool, pid: u32, ticks: u64, pairs: u32) -> Measured {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now() + SETTLE;
    let receivers = ends.run(learn, (start, start + WINDOW), stop.clone());
    std::thread::sleep(SETTLE);
    let before = cpu_ticks(pid);
    std::thread::sleep(WINDOW);
    let cpu = cpu_ticks(pid).saturating_sub(before);
    stop.store(true, Ordering::Relaxed);
    let streams = receivers.map(|receiver| receiver.join().expect("receiver"));
    summarise(streams, cpu, ticks, pairs)
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn measure_rtpengine(pairs: u32, ticks: u64) -> Measured {
    let control_port = free_port();
    let first_port = 42000u32;
    let child = Command::new("rtpengine")
        .args(["--config-file=none", "--foreground", "--log-stderr", "--log-level=3", "--table=-1"])
        .args(["--interface=127.0.0.1", &format!("--listen-ng=127.0.0.1:{control_port}")])
        .args([format!("--port-min={first_port}"), format!("--port-max={}", first_port + pairs * 4 + 100)])
        .arg("--num-threads=1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rtpengine (install Debian's rtpengine-daemon)");
    let rtpengine = KillOnDrop(child);
    std::thread::sleep(Duration::from_millis(500));
    let ends = Ends::new();
    let control = UdpSocket::bind("127.0.0.1:0").expect("bind");
    control.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let mut cookie = 0;
    let mut command = |fields: &[(&str, &str)]| -> String {
        cookie += 1;
        let mut message = format!("c{cookie} d").into_bytes();
        let mut sorted = fields.to_vec();
        sorted.sort();
        for (key, value) in sorted {
            message.extend_from_slice(format!("{}:{key}{}:", key.len(), value.len()).as_bytes());
            message.extend_from_slice(value.as_bytes());
        }
        message.push(b'e');
        control.send_to(&message, ("127.0.0.1", control_port)).expect("ng send");
        let mut reply = [0u8; 65536];
        let len = control.recv(&mut reply).expect("rtpengine answers");
        String::from_utf8_lossy(&reply[..len]).into_owned()
    };
    let sdp = |port: u16| {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        )
    };
    let media_port = |reply: &str| -> u16 {
        let at = reply.find("m=audio ").unwrap_or_else(|| panic!("no SDP in rtpengine's reply: {reply}")) + 8;
        reply[at..].split(' ').next().and_then(|p| p.parse().ok()).expect("a port")
    };
    for pair in 0..pairs {
        let call = format!("bench-{pair}");
        let offer =
            command(&[("command", "offer"), ("call-id", &call), ("from-tag", "caller"), ("sdp", &sdp(ends.port(0)))]);
        let answer = command(&[
            ("command", "answer"),
            ("call-id", &call),
            ("from-tag", "caller"),
            ("to-tag", "callee"),
            ("sdp", &sdp(ends.port(1))),
        ]);
        // The offer's rewritten SDP goes to the callee: the callee sends there. The answer's to the caller.
        ends.targets[1].lock().expect("targets").insert(SocketAddr::from(([127, 0, 0, 1], media_port(&offer))));
        ends.targets[0].lock().expect("targets").insert(SocketAddr::from(([127, 0, 0, 1], media_port(&answer))));
    }
    let measured = window(&ends, false, rtpengine.0.id(), ticks, pairs);
    drop(rtpengine);
    measured
}

fn measure_callwright(pairs: u32, ticks: u64) -> Measured {
    let ends = Ends::new();
    let ramp = Duration::from_secs_f64(f64::from(pairs) / f64::from(CALL_RATE));
    let hold = ramp + Duration::from_secs(2) + SETTLE + WINDOW + Duration::from_secs(2);
    let data = TempDir::new("bench-bridge");
    let server = Server::start_with(&data.0, &["--max-calls", "20000"], "warn");
    server.deploy("media-player", support::MEDIA_PLAYER).assert_status(201);
    let callee_port = free_port();
    let config = format!(r#"{{"bridge_to": "sip:callee@127.0.0.1:{callee_port}", "bridge_ms": {}}}"#, hold.as_millis());
    server.put_app("bridge", &support::serde_like::app("media-player", None, &config)).assert_status(201);
    let sipp = |args: Vec<String>| {
        KillOnDrop(
            Command::new(sipp_program())
                .args(args)
                .args(["-i", "127.0.0.1", "-t", "u1", "-nostdin"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run sipp (install Debian's sip-tester)"),
        )
    };
    let scenario = |name: &str| support::sipp::scenarios_dir().join(name).display().to_string();
    let _callee = sipp(vec![
        "-sf".into(),
        scenario("uas-media-answer.xml"),
        "-p".into(),
        callee_port.to_string(),
        "-key".into(),
        "rtp_port".into(),
        ends.port(1).to_string(),
    ]);
    std::thread::sleep(Duration::from_millis(500));
    let _caller = sipp(vec![
        server.sip.to_string(),
        "-sf".into(),
        scenario("uac-media-callee-hangs-up.xml"),
        "-key".into(),
        "rtp_port".into(),
        ends.port(0).to_string(),
        "-s".into(),
        "bridge".into(),
        "-p".into(),
        free_port().to_string(),
        "-r".into(),
        CALL_RATE.to_string(),
        "-m".into(),
        pairs.to_string(),
        "-l".into(),
        pairs.to_string(),
        "-timeout".into(),
        format!("{}s", hold.as_secs() + 30),
    ]);
    // The calls come up meanwhile; the sockets learn each call's port from its first packets.
    std::thread::sleep(ramp + Duration::from_secs(2));
    window(&ends, true, server.pid(), ticks, pairs)
}
