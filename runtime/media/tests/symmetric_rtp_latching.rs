//! Symmetric RTP: when the far end's packets come from another address than its SDP says (it is behind
//! NAT), callwright latches onto the real source after a few packets in sequence and sends there; packets
//! from anywhere else, before or after, are dropped and counted, and cannot take the stream over.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use callwright_media::MediaEvent;
use callwright_media::rtp::RtpPacket;
use common::Pair;

#[test]
fn a_caller_behind_nat_is_latched_onto() {
    let mut pair = Pair::new(true);
    let nat: SocketAddr = "127.0.0.9:61000".parse().unwrap();
    pair.peer_source = nat;
    pair.run_until(Duration::from_secs(1));
    assert_eq!(pair.callwright.latched(), Some(nat));
    assert!(pair.callwright_events.iter().any(|(_, e)| *e == MediaEvent::Latched(nat)));
    assert!(pair.callwright.stats().packets_received > 40);
}

#[test]
fn the_sdp_address_latches_at_once_and_strangers_are_dropped() {
    let mut pair = Pair::new(true);
    pair.run_until(Duration::from_millis(200));
    assert_eq!(pair.callwright.latched(), Some(common::PEER.parse().unwrap()));
    let received = pair.callwright.stats().packets_received;
    let attacker: SocketAddr = "127.0.0.66:4444".parse().unwrap();
    for sequence in 0..50u16 {
        let packet = RtpPacket {
            marker: false,
            payload_type: 0,
            sequence,
            timestamp: 160 * u32::from(sequence),
            ssrc: 0xbad,
            payload: &[0x55; 160],
        };
        pair.inject(attacker, &packet.to_bytes());
    }
    pair.run_until(Duration::from_millis(400));
    assert_eq!(pair.callwright.latched(), Some(common::PEER.parse().unwrap()), "the attacker did not take the stream");
    assert_eq!(pair.callwright.stats().foreign_source, 50);
    assert!(pair.callwright.stats().packets_received >= received + 9, "the real stream kept flowing");
}

#[test]
fn stray_packets_before_latching_do_not_latch() {
    let mut pair = Pair::new(true);
    pair.peer_source = "127.0.0.9:61000".parse().unwrap();
    let stray: SocketAddr = "127.0.0.66:4444".parse().unwrap();
    for sequence in [5u16, 9, 2] {
        let packet =
            RtpPacket { marker: false, payload_type: 0, sequence, timestamp: 0, ssrc: 0xbad, payload: &[0; 160] };
        pair.inject(stray, &packet.to_bytes());
    }
    assert_eq!(pair.callwright.latched(), None);
    pair.run_until(Duration::from_millis(300));
    assert_eq!(pair.callwright.latched(), Some(pair.peer_source));
}

#[test]
fn once_latched_callwright_sends_to_the_real_source() {
    let mut pair = Pair::new(true);
    let nat: SocketAddr = "127.0.0.9:61000".parse().unwrap();
    pair.peer_source = nat;
    pair.run_until(Duration::from_secs(1));
    let (first, last) = (&pair.callwright_sent[0].1, &pair.callwright_sent.last().unwrap().1);
    assert_eq!(first.to, common::PEER.parse().unwrap(), "before latching: the SDP address");
    assert_eq!(last.to, nat, "after: where the packets come from");
}
