//! The UAS core retransmits its 2xx until the ACK arrives, and sends BYE after 64·T1 without one
//! (RFC 3261 §13.3.1.4).

mod common;

use std::time::Duration;

use callwright_sip::message::{Message, Method};
use callwright_sip::{EndReason, Event, Transport};
use common::{Pair, ended, establish};

fn is_ack(message: &Message) -> bool {
    matches!(message, Message::Request(r) if r.method == Method::Ack)
}

#[test]
fn two_hundred_is_retransmitted_until_an_ack_gets_through() {
    let mut pair = Pair::new(Transport::Udp);
    let mut acks_dropped = 0;
    pair.drop_when(move |m| {
        let drop = is_ack(m) && acks_dropped < 3;
        acks_dropped += drop as u32;
        drop
    });
    let (_, bob_call) = establish(&mut pair, Duration::from_secs(20));
    let oks: Vec<_> = pair.responses(false, 200, "INVITE");
    // The first 200 and three retransmissions each drew an ACK; the fourth ACK got through.
    assert_eq!(oks.len(), 4, "{:#?}", pair.log);
    assert_eq!(pair.dropped.len(), 3);
    assert!(pair.bob_events.iter().any(|e| matches!(e, Event::CallConfirmed { call, .. } if *call == bob_call)));
    assert!(pair.requests(false, "BYE").is_empty());
}

#[test]
fn retransmit_intervals_double_from_t1_to_t2() {
    let mut pair = Pair::new(Transport::Udp);
    pair.drop_when(is_ack);
    let _ = establish(&mut pair, Duration::from_secs(40));
    let sent_at: Vec<_> = pair
        .log
        .iter()
        .zip(&pair.delivered_at)
        .filter(|((to_bob, m), _)| {
            !to_bob && matches!(m, Message::Response(r) if r.status == 200 && r.headers.cseq().is_ok_and(|c| c.method == Method::Invite))
        })
        .map(|(_, at)| *at)
        .collect();
    let gaps: Vec<u128> = sent_at.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    assert_eq!(gaps, [500, 1000, 2000, 4000, 4000, 4000, 4000, 4000, 4000, 4000]);
}

#[test]
fn no_ack_within_64_t1_ends_the_call_with_bye() {
    let mut pair = Pair::new(Transport::Udp);
    pair.drop_when(is_ack);
    let (alice_call, bob_call) = establish(&mut pair, Duration::from_secs(31));
    assert!(pair.requests(false, "BYE").is_empty(), "no BYE before 64·T1");
    pair.run_for(Duration::from_secs(3));
    assert_eq!(pair.requests(false, "BYE").len(), 1);
    assert_eq!(ended(&pair.bob_events, bob_call), [EndReason::AckTimeout]);
    assert_eq!(ended(&pair.alice_events, alice_call), [EndReason::RemoteHangup]);
    assert_eq!(pair.responses(true, 200, "BYE").len(), 1);
}

#[test]
fn over_tcp_the_2xx_is_still_retransmitted_until_ack() {
    let mut pair = Pair::new(Transport::Tcp);
    pair.drop_when(is_ack);
    let (_, bob_call) = establish(&mut pair, Duration::from_secs(34));
    assert!(pair.responses(false, 200, "INVITE").len() > 5);
    assert_eq!(ended(&pair.bob_events, bob_call), [EndReason::AckTimeout]);
}
