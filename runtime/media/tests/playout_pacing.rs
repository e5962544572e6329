//! Sending is paced from one timer: packets leave at exact multiples of the packet time however late the
//! driver wakes, with sequence numbers and timestamps that advance by one frame; a driver stalled for a long
//! time skips frames instead of bursting them.

mod common;

use std::time::Duration;

use callwright_media::rtp::RtpPacket;
use callwright_media::source::Tone;
use callwright_media::{Input, MediaSession, Output, PlayOptions, SessionConfig};

fn sent_packets(
    session: &mut MediaSession,
    start: std::time::Instant,
    wakeups: &[Duration],
) -> Vec<(Duration, Vec<u8>)> {
    let mut sent = Vec::new();
    for &at in wakeups {
        session.handle_input(Input::Timeout(start + at));
        while let Some(output) = session.poll_output() {
            match output {
                Output::Transmit(t) if !callwright_media::rtp::is_rtcp(&t.data) => sent.push((at, t.data)),
                Output::Timeout(_) => break,
                _ => {}
            }
        }
    }
    sent
}

#[test]
fn late_wakeups_still_give_one_frame_per_tick() {
    let (ours, _) = common::negotiate(true);
    let start = std::time::Instant::now();
    let mut session = MediaSession::new(start, SessionConfig::new(ours, 1));
    session.play(Box::new(Tone::silence(Duration::from_secs(10), 8000)), PlayOptions::default());
    // A driver that wakes up to 7 ms late and sometimes twice per tick.
    let mut rng = common::Rng::new(3);
    let mut wakeups = Vec::new();
    let mut t = Duration::ZERO;
    while t < Duration::from_secs(2) {
        wakeups.push(t + Duration::from_micros(rng.below(7000)));
        t += Duration::from_millis(10);
    }
    wakeups.sort();
    let sent = sent_packets(&mut session, start, &wakeups);
    assert_eq!(sent.len(), 100, "2 s of 20 ms frames");
    let packets: Vec<RtpPacket<'_>> = sent.iter().map(|(_, d)| RtpPacket::parse(d).unwrap()).collect();
    for pair in packets.windows(2) {
        assert_eq!(pair[1].sequence, pair[0].sequence.wrapping_add(1));
        assert_eq!(pair[1].timestamp, pair[0].timestamp.wrapping_add(160));
    }
    assert!(packets[0].marker && packets[1..].iter().all(|p| !p.marker));
    for (i, (at, _)) in sent.iter().enumerate() {
        let due = Duration::from_millis(20 * i as u64);
        assert!(*at >= due && *at < due + Duration::from_millis(20), "packet {i} due {due:?} left at {at:?}");
    }
}

#[test]
fn negotiated_ptime_paces_at_thirty_ms() {
    let (mut ours, _) = common::negotiate(true);
    ours.ptime_ms = 30;
    let start = std::time::Instant::now();
    let mut session = MediaSession::new(start, SessionConfig::new(ours, 1));
    let wakeups: Vec<Duration> = (0..=100).map(|i| Duration::from_millis(10 * i)).collect();
    let sent = sent_packets(&mut session, start, &wakeups);
    assert_eq!(sent.len(), 34, "0 to 990 ms in 30 ms frames");
    assert_eq!(sent[1].1.len(), 12 + 240);
}

#[test]
fn a_long_stall_skips_frames_and_moves_the_timestamp_on() {
    let (ours, _) = common::negotiate(true);
    let start = std::time::Instant::now();
    let mut session = MediaSession::new(start, SessionConfig::new(ours, 1));
    let sent =
        sent_packets(&mut session, start, &[Duration::ZERO, Duration::from_millis(1000), Duration::from_millis(1020)]);
    assert!(sent.len() <= 8, "no burst after a stall: {}", sent.len());
    let last = RtpPacket::parse(&sent.last().unwrap().1).unwrap();
    let first = RtpPacket::parse(&sent[0].1).unwrap();
    assert_eq!(last.timestamp.wrapping_sub(first.timestamp), 1020 * 8, "the timestamp follows real time");
    assert!(session.stats().skipped_ticks > 0);
}
