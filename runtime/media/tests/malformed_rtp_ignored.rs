//! Datagrams that are not valid RTP or RTCP (truncated, wrong version, lying lengths, random bytes) are
//! counted and dropped; the stream around them plays on and nothing panics.

mod common;

use std::time::Duration;

use common::{Pair, Rng};

#[test]
fn garbage_is_counted_and_the_call_goes_on() {
    let mut pair = Pair::new(true);
    pair.run_until(Duration::from_millis(500));
    let before = pair.callwright.stats();
    let peer: std::net::SocketAddr = common::PEER.parse().unwrap();
    let mut rng = Rng::new(11);
    let fixed: [&[u8]; 6] = [
        &[],
        &[0x80],
        &[0x40; 20],
        &[0x8f, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1],
        &[0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0xff, 0xff],
        &[0x81, 200, 0xff, 0xff, 0, 0, 0, 1],
    ];
    for datagram in fixed {
        pair.inject(peer, datagram);
    }
    let mut malformed = fixed.len() as u64;
    for _ in 0..2000 {
        let len = rng.below(300) as usize;
        let mut datagram: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Half of them look like RTP or RTCP at first glance, to get past the version check.
        if len > 1 && rng.below(2) == 0 {
            datagram[0] = 0x80 | (datagram[0] & 0x3f);
        }
        let before = pair.callwright.stats();
        pair.inject(peer, &datagram);
        let after = pair.callwright.stats();
        malformed += after.malformed - before.malformed;
    }
    pair.run_until(Duration::from_secs(1));
    let after = pair.callwright.stats();
    assert_eq!(after.malformed - before.malformed, malformed);
    assert!(malformed >= 1000, "{malformed}");
    assert!(after.packets_received >= before.packets_received + 24, "the real stream still plays");
}
