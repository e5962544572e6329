//! RTP as the end-to-end tests see it: a caller's RTP socket of the test's own, the packets read from it,
//! and G.711 µ-law decoding with a tone detector for what a caller hears.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use super::Server;
use super::sipp::{Sipp, SippProcess};

/// One RTP packet as the test reads it (RFC 3550 §5.1).
#[derive(Debug, Clone, Copy)]
pub struct RtpHeader {
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload_len: usize,
    /// The marker bit.
    pub marker: bool,
}

pub fn parse_rtp(packet: &[u8]) -> Option<RtpHeader> {
    (packet.len() >= 12 && packet[0] >> 6 == 2 && packet[0] & 0x0f == 0).then(|| RtpHeader {
        payload_type: packet[1] & 0x7f,
        marker: packet[1] & 0x80 != 0,
        sequence: u16::from_be_bytes([packet[2], packet[3]]),
        timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
        ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
        payload_len: packet.len() - 12,
    })
}

/// A PCMU packet of silence from the caller.
pub fn caller_packet(sequence: u16, timestamp: u32) -> Vec<u8> {
    caller_audio_packet(sequence, timestamp, &[0; 160])
}

/// An even/odd pair of free loopback ports for the caller's RTP (bound by the test, not by SIPp).
pub fn caller_rtp_socket() -> UdpSocket {
    for _ in 0..50 {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        if socket.local_addr().expect("addr").port().is_multiple_of(2) {
            return socket;
        }
    }
    panic!("no even loopback port");
}

/// Starts a SIPp call to `user` with `scenario`, whose offer names a caller RTP socket of the test's own
/// (read with `read_timeout`; the scenario takes its port as `-key rtp_port`); returns the socket, the call
/// and when it started.
pub fn call_with_rtp_socket(
    server: &Server,
    user: &str,
    scenario: &str,
    read_timeout: Duration,
) -> (UdpSocket, SippProcess, Instant) {
    let socket = caller_rtp_socket();
    socket.set_read_timeout(Some(read_timeout)).expect("timeout");
    let port = socket.local_addr().expect("addr").port().to_string();
    let started = Instant::now();
    let call = Sipp::client(scenario, server.sip).service(user).arg("-key").arg("rtp_port").arg(&port).spawn();
    (socket, call, started)
}

/// A SIPp callee (`uas-media-answer.xml`) on a free port that rings for `ring` and answers naming a
/// test-owned RTP socket (2 ms read timeout): the socket, the SIPp process and its SIP port.
pub fn media_callee(ring: Duration) -> (UdpSocket, SippProcess, u16) {
    let socket = caller_rtp_socket();
    socket.set_read_timeout(Some(Duration::from_millis(2))).expect("timeout");
    let port = super::free_port();
    let callee = Sipp::server("uas-media-answer.xml", port)
        .arg("-key")
        .arg("rtp_port")
        .arg(&socket.local_addr().expect("addr").port().to_string())
        .arg("-d")
        .arg(&ring.as_millis().to_string())
        .spawn();
    (socket, callee, port)
}

/// The server's log once it contains `needle`, or after 5 s.
pub fn wait_for_log(server: &Server, needle: &str) -> String {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let log = server.log();
        if log.contains(needle) || Instant::now() > until {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The payload of an RTP packet (after the 12-byte header; no CSRCs or extensions in what we send).
pub fn payload(packet: &[u8]) -> &[u8] {
    packet.get(12..).unwrap_or_default()
}

/// G.711 µ-law to linear 16-bit (ITU-T G.711).
pub fn mulaw_to_linear(byte: u8) -> i16 {
    let byte = !byte;
    let sign = byte & 0x80;
    let exponent = (byte >> 4) & 0x07;
    let mantissa = byte & 0x0f;
    let magnitude = ((i32::from(mantissa) << 3) + 0x84) << exponent;
    let value = magnitude - 0x84;
    (if sign != 0 { -value } else { value }) as i16
}

/// The power of `frequency` (Hz) in `samples` at `rate`, relative to the frame's total power (0 to 1): the
/// Goertzel filter.
pub fn tone_share(samples: &[i16], frequency: f64, rate: f64) -> f64 {
    let coefficient = 2.0 * (2.0 * std::f64::consts::PI * frequency / rate).cos();
    let (mut previous, mut before) = (0.0f64, 0.0f64);
    let mut total = 0.0;
    for sample in samples {
        let x = f64::from(*sample);
        total += x * x;
        let current = x + coefficient * previous - before;
        before = previous;
        previous = current;
    }
    let power = previous * previous + before * before - coefficient * previous * before;
    if total == 0.0 { 0.0 } else { 2.0 * power / (total * samples.len() as f64) }
}

/// The root mean square of `samples`.
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
}

/// Linear 16-bit to G.711 µ-law (ITU-T G.711).
pub fn linear_to_mulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut value = i32::from(sample);
    let sign = if value < 0 {
        value = -value;
        0x80
    } else {
        0
    };
    let value = (value + BIAS).min(0x7fff);
    let exponent = (0..8).rev().find(|e| value & (0x80 << e) != 0).unwrap_or(0);
    let mantissa = (value >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// A PCMU packet from the caller carrying `samples` (160 of them).
pub fn caller_audio_packet(sequence: u16, timestamp: u32, samples: &[i16]) -> Vec<u8> {
    let mut packet = vec![0x80, 0];
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(&timestamp.to_be_bytes());
    packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    packet.extend(samples.iter().map(|s| linear_to_mulaw(*s)));
    packet
}

/// A WAV file of `samples`: 8 kHz, mono, 16-bit PCM.
pub fn wav_file(samples: &[i16]) -> Vec<u8> {
    let data = samples.len() as u32 * 2;
    let mut wav = Vec::with_capacity(44 + data as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    for field in [16u32.to_le_bytes(), [1, 0, 1, 0], 8000u32.to_le_bytes(), 16000u32.to_le_bytes(), [2, 0, 16, 0]] {
        wav.extend_from_slice(&field);
    }
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data.to_le_bytes());
    for sample in samples {
        wav.extend_from_slice(&sample.to_le_bytes());
    }
    wav
}

/// `duration` of a sine at `frequency` and `amplitude`, 8 kHz samples.
pub fn sine(frequency: f64, amplitude: f64, duration: Duration) -> Vec<i16> {
    let count = (duration.as_millis() * 8) as usize;
    (0..count)
        .map(|n| (amplitude * (2.0 * std::f64::consts::PI * frequency * n as f64 / 8000.0).sin()) as i16)
        .collect()
}

/// An even UDP port on 127.0.0.1 whose odd neighbour is free too (for SIPp's `-mp`, RTP and RTCP).
pub fn even_port_pair() -> u16 {
    for _ in 0..50 {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = socket.local_addr().expect("addr").port();
        if port.is_multiple_of(2) && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no even port pair free");
}

/// For `duration`, each of `sockets` sends its own sine (`frequencies`, in order; amplitude `amplitude`)
/// as paced PCMU to where the server's packets to it come from, and keeps what it hears: per socket, the
/// decoded payload of each PCMU packet. The sockets should have short read timeouts (a few ms).
pub fn exchange_tones(
    sockets: &[&UdpSocket],
    frequencies: &[f64],
    amplitude: f64,
    duration: Duration,
) -> Vec<Vec<Vec<i16>>> {
    exchange_tones_with_peers(sockets, frequencies, amplitude, duration).0
}

/// [`exchange_tones`], also giving where each socket's packets last came from.
pub fn exchange_tones_with_peers(
    sockets: &[&UdpSocket],
    frequencies: &[f64],
    amplitude: f64,
    duration: Duration,
) -> (Vec<Vec<Vec<i16>>>, Vec<Option<std::net::SocketAddr>>) {
    let mut remote = vec![None; sockets.len()];
    let mut heard = vec![Vec::new(); sockets.len()];
    let started = Instant::now();
    let mut frames_sent = 0u64;
    let mut buffer = [0u8; 2048];
    while started.elapsed() < duration {
        for (index, socket) in sockets.iter().enumerate() {
            if let Ok((len, from)) = socket.recv_from(&mut buffer) {
                remote[index] = Some(from);
                if parse_rtp(&buffer[..len]).is_some_and(|h| h.payload_type == 0) {
                    heard[index].push(payload(&buffer[..len]).iter().map(|b| mulaw_to_linear(*b)).collect());
                }
            }
        }
        if started.elapsed() >= Duration::from_millis(20 * frames_sent) {
            for (index, socket) in sockets.iter().enumerate() {
                let Some(to) = remote[index] else { continue };
                let samples: Vec<i16> = (0..160u64)
                    .map(|n| {
                        let t = (frames_sent * 160 + n) as f64 / 8000.0;
                        (amplitude * (2.0 * std::f64::consts::PI * frequencies[index] * t).sin()) as i16
                    })
                    .collect();
                let packet = caller_audio_packet(frames_sent as u16, (frames_sent * 160) as u32, &samples);
                let _ = socket.send_to(&packet, to);
            }
            frames_sent += 1;
        }
    }
    (heard, remote)
}

/// A SIPp call to `user` that presses 2, then 9, as RFC 4733 events (SIPp's own captures,
/// `tests/sipp/uac-rfc4733-digits.xml`) and expects the server to hang up on 9; it must succeed.
pub fn press_2_then_9(server: &Server, user: &str) {
    Sipp::client("uac-rfc4733-digits.xml", server.sip)
        .service(user)
        .arg("-mp")
        .arg(&even_port_pair().to_string())
        .timeout(Duration::from_secs(20))
        .run()
        .assert_all_succeeded(1);
}
