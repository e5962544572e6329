//! Client transactions retransmit (Timers A and E) and give up (Timers B and F) into a 408.

mod common;

use std::time::Duration;

use callwright_sip::message::Method;
use callwright_sip::{EndReason, Event, Extras, InDialogRequest, Transport};
use common::{Pair, ended, establish, start_call};

#[test]
fn invite_to_a_black_hole_retransmits_then_times_out_with_408() {
    let mut pair = Pair::new(Transport::Udp);
    pair.drop_when(|_| true);
    let call = start_call(&mut pair);
    pair.run_for(Duration::from_secs(31));
    // Timer A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s → original plus 5 retransmissions by 31 s.
    assert_eq!(pair.dropped.len(), 6);
    assert!(ended(&pair.alice_events, call).is_empty());
    pair.run_for(Duration::from_secs(2));
    assert_eq!(pair.dropped.len(), 7);
    assert_eq!(ended(&pair.alice_events, call), [EndReason::Failed(408)]);
}

#[test]
fn invite_over_tcp_is_not_retransmitted() {
    let mut pair = Pair::new(Transport::Tcp);
    pair.drop_when(|_| true);
    let call = start_call(&mut pair);
    pair.run_for(Duration::from_secs(33));
    assert_eq!(pair.dropped.len(), 1);
    assert_eq!(ended(&pair.alice_events, call), [EndReason::Failed(408)]);
}

#[test]
fn in_dialog_request_to_a_vanished_peer_gets_a_local_408() {
    let mut pair = Pair::new(Transport::Udp);
    let (alice_call, _) = establish(&mut pair, Duration::from_secs(1));
    pair.drop_when(|_| true);
    let now = pair.now;
    let info = InDialogRequest {
        method: Method::Info,
        extras: Extras::body("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"),
        credentials: None,
    };
    let request = pair.alice.send_request(now, alice_call, info).unwrap();
    pair.run_for(Duration::from_secs(33));
    // Timer E: 0.5, 1.5, 3.5, 7.5, then every T2 (4 s) until Timer F at 32 s.
    assert_eq!(pair.dropped.len(), 11, "original + 10 retransmissions");
    let timeouts: Vec<_> = pair
        .alice_events
        .iter()
        .filter(
            |e| matches!(e, Event::Response { request: r, response, .. } if *r == request && response.status == 408),
        )
        .collect();
    assert_eq!(timeouts.len(), 1);
}
