//! Media benchmark: many concurrent calls, each playing a prompt to its caller, on `callwright serve`
//! (the `media-player` test guest playing an uploaded 30 s WAV file) and, in the same run as the
//! reference, on SIPp's UAS streaming the same audio as a pcap (`tests/sipp/uas-play-pcap.xml`,
//! `play_pcap_audio`).
//!
//! For each number of calls (`CALLWRIGHT_BENCH_MEDIA_CALLS`, comma-separated; default 500,1000,2000,3000),
//! SIPp's UAC (`tests/sipp/uac-media-caller-hangs-up.xml`) places the calls at 200/s, every offer naming one
//! UDP socket of this process, and each call stays until all are established plus a 10 s measuring
//! window. The socket receives every stream; per stream (by SSRC) it measures, inside the window, the
//! pacing error (how far each packet's arrival is from 20 ms after the previous one's) and the loss
//! (sequence gaps). The target's CPU time over the window is read from `/proc/<pid>/stat`, and its resident
//! memory at the peak. A level is *clean* when every call was established, no packet was lost and the
//! pacing error's p99 is under 5 ms. The load generator (SIPp's UAC and this process) shares the machine.
//!
//! `CALLWRIGHT_BENCH_MEDIA_WORKERS` sets `serve --workers` (default 1, one runtime thread).
//!
//! Run: `cargo bench -p callwright --bench media_load` (needs `sipp`, Debian `sip-tester`). Output:
//! Markdown tables for `BENCHMARKS.md`.

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::bench::{clock_ticks_per_second, cpu_ticks, env_list, sipp_program};
use support::sipp::read_stats;
use support::{Server, TempDir, free_port};

const DEFAULT_CALLS: &[u32] = &[500, 1000, 2000, 3000];
/// Calls placed per second.
const CALL_RATE: u32 = 200;
/// How long the measuring window lasts, once every call is up.
const WINDOW: Duration = Duration::from_secs(10);
/// The prompt's length (longer than any call).
const PROMPT: Duration = Duration::from_secs(60);
/// The frame interval of G.711 at 20 ms.
const PTIME: Duration = Duration::from_millis(20);
/// The receive buffer of the measuring socket (every stream arrives on it).
const RECEIVE_BUFFER: usize = 4 << 20;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("media_load: run with `cargo bench -p callwright --bench media_load`");
        return;
    }
    let levels = env_list("CALLWRIGHT_BENCH_MEDIA_CALLS").unwrap_or_else(|| DEFAULT_CALLS.to_vec());
    let ticks = clock_ticks_per_second();
    println!(
        "### Concurrent calls each playing a prompt (PCMU, 20 ms), calls placed at {CALL_RATE}/s, measured over {} s once all are up\n",
        WINDOW.as_secs()
    );
    println!(
        "| target | calls | established | streams seen | packets lost | pacing error p50 / p99 / max [ms] | CPU per call [% of a core] | RSS per call [KiB] | clean |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for calls in levels {
        let reference = sipp_uas();
        let row = measure(&reference, calls, ticks);
        drop(reference);
        let data = TempDir::new("bench-media");
        let workers = std::env::var("CALLWRIGHT_BENCH_MEDIA_WORKERS").unwrap_or_else(|_| "1".into());
        let server = Server::start_with(&data.0, &["--max-calls", "20000", "--workers", &workers], "warn");
        server.deploy("media-player", support::MEDIA_PLAYER).assert_status(201);
        server.api("PUT", "/v1/media/prompt", &prompt_wav(PROMPT)).assert_status(201);
        // The guest waits out the whole call (its default 20 s without an update would race the UAC's BYE).
        let app =
            support::serde_like::app("media-player", None, r#"{"play": [{"file": "prompt"}], "idle_ms": 600000}"#);
        server.put_app("prompt", &app).assert_status(201);
        let target = Target { name: "callwright", address: server.sip.to_string(), pid: server.pid(), _child: None };
        let ours = measure(&target, calls, ticks);
        println!("{row}");
        println!("{ours}");
    }
    println!();
}

/// A SIP target and its process.
struct Target {
    name: &'static str,
    address: String,
    pid: u32,
    _child: Option<KillOnDrop>,
}

struct KillOnDrop(Child, std::path::PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// SIPp's UAS streaming the prompt as a pcap.
fn sipp_uas() -> Target {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("callwright-bench-media-uas-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create SIPp directory");
    std::fs::write(dir.join("bench-prompt.pcap"), prompt_pcap(PROMPT)).expect("write the pcap");
    let scenario = support::sipp::scenarios_dir().join("uas-play-pcap.xml");
    let child = Command::new(sipp_program())
        .arg("-sf")
        .arg(&scenario)
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin", "-t", "u1", "-bind_local"])
        .args(["-mp", &free_port().to_string()])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sipp (install Debian's sip-tester)");
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id();
    Target {
        name: "SIPp UAS (play_pcap_audio)",
        address: format!("127.0.0.1:{port}"),
        pid,
        _child: Some(KillOnDrop(child, dir)),
    }
}

/// Places `calls` calls on `target`, measures the window; returns the table row.
fn measure(target: &Target, calls: u32, ticks: u64) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the measuring socket");
    nix::sys::socket::setsockopt(&socket.as_fd(), nix::sys::socket::sockopt::RcvBuf, &RECEIVE_BUFFER)
        .expect("set the receive buffer");
    socket.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
    let rtp_port = socket.local_addr().expect("addr").port();
    let ramp = Duration::from_secs_f64(f64::from(calls) / f64::from(CALL_RATE));
    let settle = Duration::from_secs(3);
    let hold = ramp + settle + WINDOW + Duration::from_secs(2);
    let dir =
        std::env::temp_dir().join(format!("callwright-bench-media-{}-{}-{calls}", std::process::id(), target.pid));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create SIPp directory");
    let idle = support::rss_kib(target.pid).unwrap_or(0);
    let scenario = support::sipp::scenarios_dir().join("uac-media-caller-hangs-up.xml");
    let mut uac = Command::new(sipp_program())
        .arg(&target.address)
        .arg("-sf")
        .arg(&scenario)
        .args(["-key", "rtp_port", &rtp_port.to_string(), "-s", "prompt", "-i", "127.0.0.1", "-t", "u1"])
        .args(["-nostdin", "-p", &free_port().to_string(), "-r", &CALL_RATE.to_string(), "-m", &calls.to_string()])
        .args([
            "-l",
            &calls.to_string(),
            "-d",
            &hold.as_millis().to_string(),
            "-timeout",
            &format!("{}s", hold.as_secs() + 60),
        ])
        .args(["-trace_stat", "-stf", "stats.csv"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run sipp");

    let stop = Arc::new(AtomicBool::new(false));
    let window_start = Instant::now() + ramp + settle;
    let window_end = window_start + WINDOW;
    let receiver = {
        let stop = stop.clone();
        std::thread::spawn(move || receive(&socket, window_start, window_end, &stop))
    };
    std::thread::sleep(window_start.saturating_duration_since(Instant::now()));
    let cpu_before = cpu_ticks(target.pid);
    std::thread::sleep(WINDOW);
    let cpu = cpu_ticks(target.pid).saturating_sub(cpu_before);
    let peak = support::rss_kib(target.pid).unwrap_or(0);
    let _ = uac.wait();
    stop.store(true, Ordering::Relaxed);
    let streams = receiver.join().expect("receiver");
    let stats = read_stats(&dir.join("stats.csv"));
    let _ = std::fs::remove_dir_all(&dir);

    let mut errors: Vec<u32> = streams.values().flat_map(|s| s.pacing_errors_us.iter().copied()).collect();
    errors.sort_unstable();
    let percentile = |p: f64| errors.get(((errors.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or(0);
    let received: u64 = streams.values().map(|s| s.received).sum();
    let expected = u64::from(calls) * (WINDOW.as_millis() / PTIME.as_millis()) as u64;
    let established = stats.as_ref().map_or(0, |s| s.successful);
    let core_share = cpu as f64 / ticks as f64 / WINDOW.as_secs_f64() / f64::from(calls) * 100.0;
    let per_call_kib = peak.saturating_sub(idle) as f64 / f64::from(calls);
    // SIPp's play_pcap_audio sends every call's packets from one socket with the capture's SSRC and
    // sequence: its streams cannot be told apart, so only the packet count is compared for it.
    let (lost, pacing, clean) = if streams.len() == calls as usize {
        let lost: u64 = streams.values().map(Stream::lost).sum();
        let p99_ms = f64::from(percentile(0.99)) / 1000.0;
        let pacing = format!(
            "{:.2} / {p99_ms:.2} / {:.2}",
            f64::from(percentile(0.5)) / 1000.0,
            f64::from(errors.last().copied().unwrap_or(0)) / 1000.0
        );
        (lost.to_string(), pacing, established == u64::from(calls) && lost == 0 && p99_ms < 5.0)
    } else {
        // The window's edges cut each stream at a different phase: one packet per call either way.
        let short = expected.saturating_sub(received + u64::from(calls));
        let lost = format!("{short} (of {expected} ± {calls} due, {received} came)");
        (lost, "n/a: one source and SSRC for every call".to_string(), established == u64::from(calls) && short == 0)
    };
    eprintln!("{}: {calls} calls, {} streams, {received} packets of {expected}", target.name, streams.len());
    format!(
        "| {} | {calls} | {established} | {} | {lost} | {pacing} | {core_share:.3} | {per_call_kib:.0} | {} |",
        target.name,
        streams.len(),
        if clean { "yes" } else { "no" }
    )
}

/// One stream as the measuring socket saw it inside the window.
#[derive(Default)]
struct Stream {
    last: Option<(Instant, u16)>,
    first_sequence: Option<u16>,
    received: u64,
    /// Sequence numbers advanced over the window (what should have arrived).
    expected: u64,
    pacing_errors_us: Vec<u32>,
}

impl Stream {
    fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }
}

/// Reads every packet until `stop`; keeps, per source address and SSRC, what arrived between `from` and
/// `until`.
fn receive(
    socket: &UdpSocket,
    from: Instant,
    until: Instant,
    stop: &AtomicBool,
) -> HashMap<(std::net::SocketAddr, u32), Stream> {
    let mut streams: HashMap<(std::net::SocketAddr, u32), Stream> = HashMap::new();
    let mut buffer = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let Ok((len, source)) = socket.recv_from(&mut buffer) else { continue };
        let now = Instant::now();
        if len < 12 || now < from || now > until {
            continue;
        }
        let sequence = u16::from_be_bytes([buffer[2], buffer[3]]);
        let ssrc = u32::from_be_bytes([buffer[8], buffer[9], buffer[10], buffer[11]]);
        let stream = streams.entry((source, ssrc)).or_default();
        stream.received += 1;
        stream.first_sequence.get_or_insert(sequence);
        if let Some((at, last_sequence)) = stream.last {
            let step = sequence.wrapping_sub(last_sequence);
            if step > 0 && step < 1000 {
                stream.expected += u64::from(step);
                let expected = PTIME * u32::from(step);
                let gap = now.duration_since(at);
                let error = gap.abs_diff(expected);
                stream.pacing_errors_us.push(error.as_micros().min(u128::from(u32::MAX)) as u32);
            }
        } else {
            stream.expected += 1;
        }
        stream.last = Some((now, sequence));
    }
    streams
}

/// A WAV file (8 kHz, mono, 16-bit) of a 440 Hz tone.
fn prompt_wav(length: Duration) -> Vec<u8> {
    support::rtp::wav_file(&tone(length))
}

/// The same tone as PCMU RTP packets in a pcap (Ethernet, IPv4, UDP), 20 ms apart.
fn prompt_pcap(length: Duration) -> Vec<u8> {
    let samples = tone(length);
    // The global header: magic, version 2.4, time zone and accuracy 0, snap length, link type Ethernet.
    let mut pcap = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
    pcap.extend_from_slice(&2u16.to_le_bytes());
    pcap.extend_from_slice(&4u16.to_le_bytes());
    for field in [0u32, 0, 65535, 1] {
        pcap.extend_from_slice(&field.to_le_bytes());
    }
    for (index, frame) in samples.chunks(160).enumerate() {
        let mut rtp = vec![0x80, 0];
        rtp.extend_from_slice(&(index as u16).to_be_bytes());
        rtp.extend_from_slice(&(index as u32 * 160).to_be_bytes());
        rtp.extend_from_slice(&0x5151_5151u32.to_be_bytes());
        rtp.extend(frame.iter().map(|s| support::rtp::linear_to_mulaw(*s)));
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut packet = vec![0u8; 12];
        packet.extend_from_slice(&[0x08, 0x00]);
        packet.extend_from_slice(&[0x45, 0, (ip_len >> 8) as u8, ip_len as u8, 0, 0, 0x40, 0, 64, 17, 0, 0]);
        packet.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1]);
        packet.extend_from_slice(&[0x1f, 0x40, 0x1f, 0x40, (udp_len >> 8) as u8, udp_len as u8, 0, 0]);
        packet.extend_from_slice(&rtp);
        let at = PTIME * index as u32;
        pcap.extend_from_slice(&(at.as_secs() as u32).to_le_bytes());
        pcap.extend_from_slice(&at.subsec_micros().to_le_bytes());
        pcap.extend_from_slice(&(packet.len() as u32).to_le_bytes());
        pcap.extend_from_slice(&(packet.len() as u32).to_le_bytes());
        pcap.extend_from_slice(&packet);
    }
    pcap
}

fn tone(length: Duration) -> Vec<i16> {
    support::rtp::sine(440.0, 8000.0, length)
}
