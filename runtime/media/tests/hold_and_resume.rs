//! Hold and resume by renegotiation: while the far end holds us (its SDP says recvonly or inactive, or the
//! old c=0.0.0.0) nothing is sent, not even RTCP reports; on resume sending restarts with the marker bit
//! and timestamps that account for the time on hold.

mod common;

use std::time::Duration;

use callwright_media::PlayOptions;
use callwright_media::rtp::{self, RtpPacket};
use callwright_media::sdp::Direction;
use callwright_media::source::Tone;
use common::Pair;

#[test]
fn nothing_is_sent_on_hold_and_resume_marks_a_new_talk_spurt() {
    let mut pair = Pair::new(true);
    pair.callwright.play(Box::new(Tone::silence(Duration::from_secs(30), 8000)), PlayOptions::default());
    pair.run_until(Duration::from_secs(1));
    let mut stream = pair.callwright.negotiated().clone();
    for held in [Direction::RecvOnly, Direction::Inactive] {
        stream.direction = held;
        let now = pair.now;
        pair.callwright.update(now, stream.clone());
        let before = pair.callwright_sent.len();
        pair.run_until(pair.elapsed() + Duration::from_secs(12));
        assert_eq!(pair.callwright_sent.len(), before, "{held:?}: silent on hold, RTCP included");
        stream.direction = Direction::SendRecv;
        let now = pair.now;
        pair.callwright.update(now, stream.clone());
        pair.run_until(pair.elapsed() + Duration::from_secs(1));
    }
    let packets: Vec<(Duration, RtpPacket<'_>)> = pair
        .callwright_sent
        .iter()
        .filter(|(_, t)| !rtp::is_rtcp(&t.data))
        .map(|(at, t)| (*at, RtpPacket::parse(&t.data).unwrap()))
        .collect();
    let marked: Vec<usize> = packets.iter().enumerate().filter(|(_, (_, p))| p.marker).map(|(i, _)| i).collect();
    assert_eq!(marked.len(), 3, "start and two resumes: {marked:?}");
    let (before, after) = (&packets[marked[1] - 1], &packets[marked[1]]);
    let gap_ms = (after.0 - before.0).as_millis() as u32;
    assert_eq!(after.1.timestamp.wrapping_sub(before.1.timestamp), gap_ms * 8, "timestamps follow the clock");
    assert_eq!(after.1.sequence, before.1.sequence.wrapping_add(1), "sequence numbers do not jump");
}

#[test]
fn the_old_hold_address_is_not_sent_to() {
    let mut pair = Pair::new(true);
    let mut stream = pair.callwright.negotiated().clone();
    stream.remote_rtp = "0.0.0.0:50000".parse().unwrap();
    stream.remote_rtcp = "0.0.0.0:50001".parse().unwrap();
    let now = pair.now;
    pair.callwright.update(now, stream);
    pair.run_until(Duration::from_secs(12));
    assert!(pair.callwright_sent.is_empty());
}
