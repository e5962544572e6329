//! Whole calls over a link that loses 30 % of messages: retransmissions carry every call to a clean end on
//! both sides, and nothing is left behind.

mod common;

use std::time::Duration;

use callwright_sip::{EndReason, Event, Transport};
use common::{Pair, ended, establish};

#[test]
fn calls_survive_thirty_percent_loss() {
    for seed in 1..=40u64 {
        let mut pair = Pair::new(Transport::Udp);
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        pair.drop_when(move |_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % 10 < 3
        });
        let (alice_call, bob_call) = establish(&mut pair, Duration::from_secs(10));
        assert!(
            pair.alice_events.iter().any(|e| matches!(e, Event::CallAnswered { .. })),
            "seed {seed}: alice never saw the answer"
        );
        let now = pair.now;
        pair.alice.hangup(now, alice_call).unwrap();
        pair.run_for(Duration::from_secs(80));
        let alice_end = ended(&pair.alice_events, alice_call);
        let bob_end = ended(&pair.bob_events, bob_call);
        assert_eq!(alice_end, [EndReason::LocalHangup], "seed {seed}");
        assert!(
            bob_end == [EndReason::RemoteHangup] || bob_end == [EndReason::AckTimeout],
            "seed {seed}: bob ended with {bob_end:?}"
        );
        assert_eq!(pair.alice.call_count() + pair.bob.call_count(), 0, "seed {seed}: calls left behind");
        assert_eq!(pair.alice.transaction_count() + pair.bob.transaction_count(), 0, "seed {seed}");
    }
}
