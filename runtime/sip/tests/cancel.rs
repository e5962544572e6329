//! CANCEL (RFC 3261 §9): before the answer it wins (200 + 487); crossing a 200 it loses, and the caller
//! ACKs and hangs up the call it created.

mod common;

use std::time::Duration;

use callwright_sip::{EndReason, Event, Extras, Transport};
use common::{Pair, await_incoming, ended, sdp, start_call};

#[test]
fn cancel_before_answer_gets_200_and_487() {
    let mut pair = Pair::new(Transport::Udp);
    let alice_call = start_call(&mut pair);
    let bob_call = await_incoming(&mut pair);
    let now = pair.now;
    pair.bob.ring(now, bob_call, 180, Extras::default()).unwrap();
    pair.run_for(Duration::from_millis(50));
    let now = pair.now;
    pair.alice.hangup(now, alice_call).unwrap();
    pair.run_for(Duration::from_secs(1));
    assert_eq!(pair.requests(true, "CANCEL").len(), 1);
    assert_eq!(pair.responses(false, 200, "CANCEL").len(), 1);
    assert_eq!(pair.responses(false, 487, "INVITE").len(), 1);
    assert_eq!(pair.requests(true, "ACK").len(), 1, "the 487 is ACKed");
    assert_eq!(ended(&pair.bob_events, bob_call), [EndReason::Cancelled]);
    assert_eq!(ended(&pair.alice_events, alice_call), [EndReason::Failed(487)]);
    assert!(pair.bob.answer(pair.now, bob_call, Extras::default()).is_err(), "a cancelled call cannot be answered");
}

#[test]
fn cancel_waits_for_a_provisional_response() {
    let mut pair = Pair::new(Transport::Udp);
    let alice_call = start_call(&mut pair);
    let now = pair.now;
    pair.alice.hangup(now, alice_call).unwrap();
    let bob_call = await_incoming(&mut pair);
    pair.run_for(Duration::from_millis(100));
    assert!(pair.requests(true, "CANCEL").is_empty(), "no CANCEL before a provisional (§9.1)");
    let now = pair.now;
    pair.bob.ring(now, bob_call, 180, Extras::default()).unwrap();
    pair.run_for(Duration::from_secs(1));
    assert_eq!(pair.requests(true, "CANCEL").len(), 1);
    assert_eq!(ended(&pair.bob_events, bob_call), [EndReason::Cancelled]);
}

#[test]
fn cancel_crossing_the_200_leads_to_ack_then_bye() {
    let mut pair = Pair::new(Transport::Udp);
    let alice_call = start_call(&mut pair);
    let bob_call = await_incoming(&mut pair);
    let now = pair.now;
    pair.bob.ring(now, bob_call, 180, Extras::default()).unwrap();
    pair.run_for(Duration::from_millis(50));
    // Both act at the same instant: the CANCEL and the 200 cross on the wire.
    let now = pair.now;
    pair.alice.hangup(now, alice_call).unwrap();
    pair.bob.answer(now, bob_call, Extras::body("application/sdp", sdp("127.0.0.1", 5000))).unwrap();
    pair.run_for(Duration::from_secs(2));
    assert_eq!(pair.responses(false, 200, "CANCEL").len(), 1, "CANCEL after the answer still gets 200");
    assert!(pair.responses(false, 487, "INVITE").is_empty());
    assert_eq!(pair.requests(true, "ACK").len(), 1);
    assert_eq!(pair.requests(true, "BYE").len(), 1);
    assert!(pair.alice_events.iter().any(|e| matches!(e, Event::CallAnswered { .. })));
    assert_eq!(ended(&pair.alice_events, alice_call), [EndReason::LocalHangup]);
    assert_eq!(ended(&pair.bob_events, bob_call), [EndReason::RemoteHangup]);
}

#[test]
fn cancel_for_an_unknown_transaction_gets_481() {
    let mut peer = common::RawPeer::new(Transport::Udp);
    let cancel = "CANCEL sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKnone\r\n\
        From: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: nope\r\nCSeq: 1 CANCEL\r\n\
        Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let (sent, _) = peer.feed(cancel.as_bytes());
    assert_eq!(sent.iter().filter_map(common::status_of).collect::<Vec<_>>(), [481]);
}
