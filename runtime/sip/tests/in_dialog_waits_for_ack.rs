//! A request the callee sends in its dialog before the ACK (a transfer as the first thing a call does)
//! leaves only once the ACK came, so it cannot overtake the 2xx; when the ACK never comes, it is answered
//! locally and never sent.

mod common;

use std::time::Duration;

use callwright_sip::message::{Message, Method};
use callwright_sip::{Event, Extras, InDialogRequest, RequestHandle, Transport};
use common::{Pair, await_incoming, sdp, start_call};

fn refer() -> InDialogRequest {
    InDialogRequest {
        method: Method::Refer,
        extras: Extras::default().header("Refer-To", "<sip:carol@127.0.0.1:5080>"),
        credentials: None,
    }
}

fn is_request(message: &Message, method: Method) -> bool {
    matches!(message, Message::Request(request) if request.method == method)
}

/// Bob answers alice's call and sends a REFER at once, as a flow whose first verb is a transfer does.
fn answer_and_refer(pair: &mut Pair) -> RequestHandle {
    start_call(pair);
    let bob_call = await_incoming(pair);
    let now = pair.now;
    pair.bob.answer(now, bob_call, Extras::body("application/sdp", sdp("127.0.0.1", 5000))).expect("answer");
    pair.bob.send_request(now, bob_call, refer()).expect("a REFER is accepted before the ACK")
}

#[test]
fn a_refer_sent_before_the_ack_leaves_after_it() {
    let mut pair = Pair::new(Transport::Udp);
    // The first ACK is lost: bob's 2xx is retransmitted and only the second ACK confirms the call.
    let mut acks = 0;
    pair.drop_when(move |message| {
        acks += usize::from(is_request(message, Method::Ack));
        is_request(message, Method::Ack) && acks == 1
    });
    answer_and_refer(&mut pair);
    pair.run_for(Duration::from_secs(2));

    let mut order: Vec<&str> = pair
        .log
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Request(r) if r.method == Method::Ack => Some("ACK"),
            Message::Request(r) if r.method == Method::Refer => Some("REFER"),
            _ => None,
        })
        .collect();
    // Alice never answers the REFER here, so it is retransmitted.
    order.dedup();
    assert_eq!(order, ["ACK", "REFER"], "the REFER waits for the ACK that arrives: {:#?}", pair.log);
    let confirmed_at = pair.bob_events.iter().position(|e| matches!(e, Event::CallConfirmed { .. }));
    assert!(confirmed_at.is_some(), "bob's call is confirmed");
    assert!(
        pair.alice_events
            .iter()
            .any(|e| matches!(e, Event::Request { request, .. } if request.method == Method::Refer)),
        "alice gets the REFER once"
    );
}

#[test]
fn a_refer_waiting_for_an_ack_that_never_comes_is_answered_408_and_never_sent() {
    let mut pair = Pair::new(Transport::Udp);
    pair.drop_when(|message| is_request(message, Method::Ack));
    let sent = answer_and_refer(&mut pair);
    // 64·T1 without an ACK: bob gives up, sends BYE and ends the call.
    pair.run_for(Duration::from_secs(40));

    assert!(pair.log.iter().all(|(_, m)| !is_request(m, Method::Refer)), "no REFER on the wire: {:#?}", pair.log);
    let answered: Vec<u16> = pair
        .bob_events
        .iter()
        .filter_map(|e| match e {
            Event::Response { request, response, .. } if *request == sent => Some(response.status),
            _ => None,
        })
        .collect();
    assert_eq!(answered, [408], "the REFER is answered locally, once");
    assert!(pair.log.iter().any(|(to_bob, m)| !to_bob && is_request(m, Method::Bye)), "bob sends BYE");
}
