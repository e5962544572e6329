//! A rejected INVITE over UDP: the final response is retransmitted (Timer G, doubling up to T2) until the
//! ACK comes, and given up after 64·T1 (Timer H) when it never does. Retransmitted INVITEs are answered
//! from the transaction.

mod common;

use std::time::Duration;

use callwright_sip::message::{Message, Method};
use callwright_sip::{EndReason, Extras, Transport};
use common::{Pair, await_incoming, ended, start_call};

fn reject_with_lost_acks(pair: &mut Pair) {
    pair.drop_when(|m| matches!(m, Message::Request(r) if r.method == Method::Ack));
    let alice_call = start_call(pair);
    let bob_call = await_incoming(pair);
    let now = pair.now;
    pair.bob.reject(now, bob_call, 486, None, Extras::default()).unwrap();
    pair.run_for(Duration::from_secs(40));
    assert_eq!(ended(&pair.alice_events, alice_call), [EndReason::Failed(486)]);
    assert_eq!(ended(&pair.bob_events, bob_call), [EndReason::Rejected(486)]);
}

#[test]
fn the_486_is_retransmitted_with_timer_g_until_timer_h() {
    let mut pair = Pair::new(Transport::Udp);
    reject_with_lost_acks(&mut pair);
    let sent_at: Vec<_> = pair
        .log
        .iter()
        .zip(&pair.delivered_at)
        .filter(|((to_bob, m), _)| !to_bob && matches!(m, Message::Response(r) if r.status == 486))
        .map(|(_, at)| (*at - pair.delivered_at[0]).as_millis())
        .collect();
    let gaps: Vec<u128> = sent_at.windows(2).map(|w| w[1] - w[0]).collect();
    // Timer G: T1, 2·T1, 4·T1, then T2 until Timer H at 64·T1 = 32 s.
    assert_eq!(gaps[..4], [500, 1000, 2000, 4000]);
    assert!(gaps[4..].iter().all(|g| *g == 4000), "{gaps:?}");
    assert!(sent_at.last().unwrap() - sent_at[0] <= 32_000, "no retransmission after Timer H: {sent_at:?}");
    // Every retransmitted 486 drew a new ACK from the caller's transaction (all of them lost here).
    assert_eq!(pair.dropped.len(), sent_at.len());
    assert_eq!(pair.bob.transaction_count(), 0, "Timer H ended the transaction");
}

#[test]
fn over_tcp_the_486_is_sent_once() {
    let mut pair = Pair::new(Transport::Tcp);
    reject_with_lost_acks(&mut pair);
    let rejections = pair.responses(false, 486, "INVITE");
    assert_eq!(rejections.len(), 1);
}
