//! RTP bleed (CVE-2017-14099 in Asterisk): a stranger who sprays RTP at a media port range must not take a
//! stream over. callwright learns a NAT address once per stream, takes the SDP's address always, and
//! drops everything else.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use callwright_media::MediaEvent;
use callwright_media::rtp::RtpPacket;
use common::{LinkConditions, Pair};

const STRANGER: &str = "127.0.0.66:4444";

/// Sends `count` packets in sequence, as a real stream would, from `from` with `ssrc`.
fn spray(pair: &mut Pair, from: SocketAddr, ssrc: impl Fn(u16) -> u32, count: u16) {
    for sequence in 0..count {
        let packet = RtpPacket {
            marker: false,
            payload_type: 0,
            sequence,
            timestamp: 160 * u32::from(sequence),
            ssrc: ssrc(sequence),
            payload: &[0x55; 160],
        };
        pair.inject(from, &packet.to_bytes());
    }
}

#[test]
fn a_stranger_cannot_take_over_a_stream_gone_quiet() {
    let mut pair = Pair::new(true);
    let nat: SocketAddr = "127.0.0.9:61000".parse().unwrap();
    pair.peer_source = nat;
    pair.run_until(Duration::from_secs(1));
    assert_eq!(pair.callwright.latched(), Some(nat));
    // The far end goes quiet (silence suppression, a phone on hold) for longer than any relatch delay.
    pair.to_callwright = LinkConditions { loss_per_mille: 1000, ..LinkConditions::CLEAN };
    pair.run_until(Duration::from_secs(6));
    let foreign = pair.callwright.stats().foreign_source;
    spray(&mut pair, STRANGER.parse().unwrap(), |_| 0xbad, 50);
    pair.run_until(Duration::from_secs(7));
    assert_eq!(pair.callwright.latched(), Some(nat), "the stream stays with the far end");
    assert_eq!(pair.callwright.stats().foreign_source, foreign + 50);
    let last = &pair.callwright_sent.last().unwrap().1;
    assert_eq!(last.to, nat, "our audio still goes to the far end, not to the stranger");
}

#[test]
fn a_stranger_who_wins_the_race_loses_the_stream_when_the_far_end_speaks() {
    let mut pair = Pair::new(true);
    // Before the far end's first packet, a stranger sends a convincing stream.
    let stranger: SocketAddr = STRANGER.parse().unwrap();
    spray(&mut pair, stranger, |_| 0xbad, 10);
    assert_eq!(pair.callwright.latched(), Some(stranger));
    // The far end then sends from the address its SDP names.
    pair.run_until(Duration::from_millis(500));
    let peer: SocketAddr = common::PEER.parse().unwrap();
    assert_eq!(pair.callwright.latched(), Some(peer));
    assert!(pair.callwright_events.iter().any(|(_, event)| *event == MediaEvent::Latched(peer)));
    assert_eq!(pair.callwright_sent.last().unwrap().1.to, peer, "our audio goes back to the far end");
    let received = pair.callwright.stats().packets_received;
    spray(&mut pair, stranger, |_| 0xbad, 20);
    assert_eq!(pair.callwright.stats().packets_received, received, "the stranger is dropped from then on");
}

#[test]
fn packets_in_sequence_under_changing_ssrcs_do_not_latch() {
    let mut pair = Pair::new(true);
    pair.peer_source = "127.0.0.9:61000".parse().unwrap();
    spray(&mut pair, STRANGER.parse().unwrap(), |sequence| 0x1000 + u32::from(sequence), 20);
    assert_eq!(pair.callwright.latched(), None, "one stream has one SSRC");
    pair.run_until(Duration::from_millis(300));
    assert_eq!(pair.callwright.latched(), Some(pair.peer_source));
}
