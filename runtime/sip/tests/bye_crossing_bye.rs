//! Both sides hang up at once: each BYE is answered 200 and each side reports the end exactly once.

mod common;

use std::time::Duration;

use callwright_sip::{Error, Extras, Transport};
use common::{Pair, ended, establish};

#[test]
fn crossing_byes_end_the_call_once_on_each_side() {
    let mut pair = Pair::new(Transport::Udp);
    let (alice_call, bob_call) = establish(&mut pair, Duration::from_millis(500));
    let now = pair.now;
    pair.alice.hangup(now, alice_call).unwrap();
    pair.bob.hangup(now, bob_call).unwrap();
    pair.run_for(Duration::from_secs(2));
    assert_eq!(pair.requests(true, "BYE").len(), 1);
    assert_eq!(pair.requests(false, "BYE").len(), 1);
    assert_eq!(pair.responses(true, 200, "BYE").len() + pair.responses(false, 200, "BYE").len(), 2);
    assert_eq!(ended(&pair.alice_events, alice_call).len(), 1);
    assert_eq!(ended(&pair.bob_events, bob_call).len(), 1);
    // An ended call refuses commands as ended, not by the name of a state.
    let refused = pair.alice.ring(pair.now, alice_call, 180, Extras::default()).unwrap_err();
    assert!(matches!(refused, Error::CallEnded { call, .. } if call == alice_call), "{refused:?}");
    // Everything is forgotten once the linger time has passed.
    pair.run_for(Duration::from_secs(40));
    assert_eq!(pair.alice.call_count() + pair.bob.call_count(), 0);
    assert_eq!(pair.alice.transaction_count() + pair.bob.transaction_count(), 0);
}
