//! REFER and its implicit subscription (RFC 3515, RFC 4488): NOTIFYs reach the REFER that caused them,
//! even before the 202 and after our BYE, and each is answered 200.

mod common;

use std::time::Duration;

use callwright_sip::message::Method;
use callwright_sip::{CallHandle, Event, Extras, InDialogRequest, RequestHandle, Transport};
use common::{Pair, establish, incoming_refer, refer_events};

fn refer(pair: &mut Pair, bob_call: CallHandle) -> RequestHandle {
    let now = pair.now;
    let request = InDialogRequest {
        method: Method::Refer,
        extras: Extras::default()
            .header("Refer-To", "<sip:carol@127.0.0.1:5080>")
            .header("Referred-By", "<sip:bob@127.0.0.1>"),
        credentials: None,
    };
    pair.bob.send_request(now, bob_call, request).unwrap()
}

fn notify(pair: &mut Pair, alice_call: CallHandle, status: &str, state: &str) {
    let now = pair.now;
    let request = InDialogRequest {
        method: Method::Notify,
        extras: Extras::body("message/sipfrag;version=2.0", format!("SIP/2.0 {status}\r\n"))
            .header("Event", "refer")
            .header("Subscription-State", state),
        credentials: None,
    };
    pair.alice.send_request(now, alice_call, request).unwrap();
}

#[test]
fn notify_before_202_is_routed_to_the_refer() {
    let mut pair = Pair::new(Transport::Udp);
    let (alice_call, bob_call) = establish(&mut pair, Duration::from_millis(200));
    let refer_handle = refer(&mut pair, bob_call);
    let incoming = incoming_refer(&mut pair);
    // Alice NOTIFYs first, then accepts: the NOTIFY overtakes the 202.
    notify(&mut pair, alice_call, "100 Trying", "active;expires=60");
    pair.run_for(Duration::from_millis(5));
    let now = pair.now;
    pair.alice.respond(now, incoming, 202, Extras::default()).unwrap();
    pair.run_for(Duration::from_millis(100));
    notify(&mut pair, alice_call, "200 OK", "terminated;reason=noresource");
    pair.run_for(Duration::from_millis(100));
    assert_eq!(refer_events(&pair.bob_events), ["notify Some(100) false", "response 202", "notify Some(200) true"]);
    assert!(pair.bob_events.iter().all(|e| match e {
        Event::ReferNotify { refer, .. } | Event::Response { request: refer, .. } => *refer == refer_handle,
        _ => true,
    }));
    assert_eq!(pair.responses(false, 200, "NOTIFY").len(), 2);
}

#[test]
fn notify_after_our_bye_is_still_answered_200() {
    let mut pair = Pair::new(Transport::Udp);
    let (alice_call, bob_call) = establish(&mut pair, Duration::from_millis(200));
    refer(&mut pair, bob_call);
    let incoming = incoming_refer(&mut pair);
    let now = pair.now;
    pair.alice.respond(now, incoming, 202, Extras::default()).unwrap();
    pair.run_for(Duration::from_millis(50));
    let now = pair.now;
    pair.bob.hangup(now, bob_call).unwrap();
    pair.run_for(Duration::from_millis(100));
    notify(&mut pair, alice_call, "200 OK", "terminated");
    pair.run_for(Duration::from_millis(100));
    assert_eq!(pair.responses(false, 200, "NOTIFY").len(), 1, "{:#?}", pair.log);
    assert!(refer_events(&pair.bob_events).contains(&"notify Some(200) true".to_string()));
}

#[test]
fn refer_rejected_ends_the_subscription() {
    let mut pair = Pair::new(Transport::Udp);
    let (alice_call, bob_call) = establish(&mut pair, Duration::from_millis(200));
    refer(&mut pair, bob_call);
    let incoming = incoming_refer(&mut pair);
    let now = pair.now;
    pair.alice.respond(now, incoming, 403, Extras::default()).unwrap();
    pair.run_for(Duration::from_millis(50));
    notify(&mut pair, alice_call, "200 OK", "terminated");
    pair.run_for(Duration::from_millis(50));
    assert_eq!(refer_events(&pair.bob_events), ["response 403"]);
    assert_eq!(pair.responses(false, 481, "NOTIFY").len(), 1, "a NOTIFY for a failed REFER has no subscription");
}

#[test]
fn two_refers_are_told_apart_by_event_id() {
    let mut pair = Pair::new(Transport::Udp);
    let (alice_call, bob_call) = establish(&mut pair, Duration::from_millis(200));
    let first = refer(&mut pair, bob_call);
    let second = refer(&mut pair, bob_call);
    pair.run_for(Duration::from_millis(50));
    let refers: Vec<_> = pair.requests(false, "REFER").iter().map(|r| r.headers.cseq().unwrap().seq).collect();
    assert_eq!(refers.len(), 2);
    let now = pair.now;
    let request = InDialogRequest {
        method: Method::Notify,
        extras: Extras::body("message/sipfrag", "SIP/2.0 180 Ringing\r\n")
            .header("Event", &format!("refer;id={}", refers[1]))
            .header("Subscription-State", "active"),
        credentials: None,
    };
    pair.alice.send_request(now, alice_call, request).unwrap();
    pair.run_for(Duration::from_millis(50));
    let notified: Vec<_> = pair
        .bob_events
        .iter()
        .filter_map(|e| match e {
            Event::ReferNotify { refer, .. } => Some(*refer),
            _ => None,
        })
        .collect();
    assert_eq!(notified, [second]);
    assert_ne!(first, second);
}
