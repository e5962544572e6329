//! Shedding load: while the endpoint sheds, a new INVITE gets 503 with Retry-After through its transaction
//! (retransmissions answered alike, the ACK absorbed) and no call is created; calls already up go on.

mod common;

use std::time::Duration;

use callwright_sip::message::{Message, Method};
use callwright_sip::{EndReason, Event, Transport};
use common::{Pair, ended, establish, start_call};

#[test]
fn a_new_invite_gets_503_with_retry_after_and_no_call() {
    let mut pair = Pair::new(Transport::Udp);
    pair.bob.set_shedding(true);
    // The first INVITE and the 503 are lost once each: both sides retransmit.
    let mut lost_invites = 0;
    let mut lost_503s = 0;
    pair.drop_when(move |m| match m {
        Message::Request(r) if r.method == Method::Invite && lost_invites == 0 => {
            lost_invites += 1;
            true
        }
        Message::Response(r) if r.status == 503 && lost_503s == 0 => {
            lost_503s += 1;
            true
        }
        _ => false,
    });
    let alice_call = start_call(&mut pair);
    pair.run_for(Duration::from_secs(40));

    assert_eq!(ended(&pair.alice_events, alice_call), [EndReason::Failed(503)]);
    assert!(pair.bob_events.is_empty(), "no call, no event: {:?}", pair.bob_events);
    assert_eq!(pair.bob.calls_shed(), 1, "a retransmitted INVITE is the same call");
    assert_eq!(pair.bob.call_count(), 0);
    assert!(pair.responses(false, 100, "INVITE").is_empty(), "no 100 Trying for a refused call");
    let refusals = pair.responses(false, 503, "INVITE");
    assert!(!refusals.is_empty());
    assert!(refusals.iter().all(|r| r.headers.get("Retry-After") == Some("5")), "{refusals:?}");
    assert_eq!(pair.requests(true, "ACK").len(), 1, "one ACK for the 503 that arrived");
    assert_eq!(pair.bob.transaction_count(), 0, "the refusal's transaction ended");
}

#[test]
fn calls_in_progress_go_on_and_new_calls_are_taken_again_after_shedding() {
    let mut pair = Pair::new(Transport::Udp);
    let (alice_call, bob_call) = establish(&mut pair, Duration::from_secs(1));
    pair.bob.set_shedding(true);
    assert!(pair.bob.is_shedding());
    // The established call's BYE is served while new calls are refused.
    let now = pair.now;
    pair.alice.hangup(now, alice_call).expect("hang up");
    let refused = start_call(&mut pair);
    pair.run_for(Duration::from_secs(2));
    assert_eq!(ended(&pair.bob_events, bob_call), [EndReason::RemoteHangup]);
    assert_eq!(ended(&pair.alice_events, refused), [EndReason::Failed(503)]);

    pair.bob.set_shedding(false);
    pair.bob_events.clear();
    start_call(&mut pair);
    pair.run_for(Duration::from_secs(1));
    assert!(
        pair.bob_events.iter().any(|e| matches!(e, Event::IncomingCall { .. })),
        "a new call is taken once shedding stops: {:?}",
        pair.bob_events
    );
    assert_eq!(pair.bob.calls_shed(), 1);
}
