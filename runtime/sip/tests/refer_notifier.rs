//! The notifier side of a REFER (RFC 3515 §2.4.4, RFC 4488, RFC 6665), in virtual time: once the REFER
//! is accepted, `notify_refer` sends NOTIFYs with the sipfrag status line, the Event of the REFER and the
//! Subscription-State; the referrer's core routes each to its REFER, and the final one ends it.

mod common;

use std::time::Duration;

use callwright_sip::message::{Message, Method};
use callwright_sip::{CallHandle, Extras, InDialogRequest, IncomingRequestHandle, Transport};
use common::{Pair, establish, incoming_refer, refer_events};

/// Bob refers Alice (`extra` headers on the REFER); the REFER as Alice's user sees it.
fn refer(pair: &mut Pair, bob_call: CallHandle, extra: &[(&str, &str)]) -> IncomingRequestHandle {
    let now = pair.now;
    let mut extras = Extras::default().header("Refer-To", "<sip:carol@127.0.0.1:5080>");
    for (name, value) in extra {
        extras = extras.header(name, value);
    }
    pair.bob.send_request(now, bob_call, InDialogRequest { method: Method::Refer, extras, credentials: None }).unwrap();
    incoming_refer(pair)
}

/// What the NOTIFYs toward Bob carried: (Event, Subscription-State, body).
fn notifies(pair: &Pair) -> Vec<(String, String, String)> {
    pair.requests(true, "NOTIFY")
        .iter()
        .map(|r| {
            let header = |name| r.headers.get(name).unwrap_or_default().to_string();
            (header("Event"), header("Subscription-State"), String::from_utf8_lossy(&r.body).into_owned())
        })
        .collect()
}

#[test]
fn an_accepted_refer_is_notified_until_its_final_status_and_then_no_more() {
    let mut pair = Pair::new(Transport::Udp);
    let (_alice_call, bob_call) = establish(&mut pair, Duration::from_millis(200));
    let refer_handle = refer(&mut pair, bob_call, &[]);
    let now = pair.now;
    let early = pair.alice.notify_refer(now, refer_handle, 100, "Trying").unwrap_err();
    assert!(early.to_string().contains("not been accepted"), "{early}");
    pair.alice.respond(now, refer_handle, 202, Extras::default()).unwrap();
    for (status, reason) in [(100, "Trying"), (180, "Ringing"), (200, "OK")] {
        let now = pair.now;
        pair.alice.notify_refer(now, refer_handle, status, reason).unwrap();
        pair.run_for(Duration::from_millis(50));
    }
    let now = pair.now;
    let late = pair.alice.notify_refer(now, refer_handle, 200, "OK").unwrap_err();
    assert!(late.to_string().contains("not a REFER with a subscription"), "{late}");
    let body = |line: &str| format!("SIP/2.0 {line}\r\n");
    let active = "active;expires=60".to_string();
    assert_eq!(
        notifies(&pair),
        [
            ("refer".into(), active.clone(), body("100 Trying")),
            ("refer".into(), active, body("180 Ringing")),
            ("refer".into(), "terminated;reason=noresource".into(), body("200 OK")),
        ]
    );
    assert_eq!(
        refer_events(&pair.bob_events),
        ["response 202", "notify Some(100) false", "notify Some(180) false", "notify Some(200) true"]
    );
    assert_eq!(pair.responses(false, 200, "NOTIFY").len(), 3, "the referrer accepted each");
}

#[test]
fn a_second_refer_is_notified_with_its_id_and_a_refused_or_subscription_free_one_not_at_all() {
    let mut pair = Pair::new(Transport::Udp);
    let (_alice_call, bob_call) = establish(&mut pair, Duration::from_millis(200));
    let refused = refer(&mut pair, bob_call, &[]);
    let now = pair.now;
    pair.alice.respond(now, refused, 603, Extras::default()).unwrap();
    assert!(pair.alice.notify_refer(now, refused, 100, "Trying").is_err(), "a declined REFER has no subscription");

    let second = refer(&mut pair, bob_call, &[]);
    let second_cseq = pair.requests(false, "REFER")[1].headers.cseq().unwrap().seq;
    let now = pair.now;
    pair.alice.respond(now, second, 202, Extras::default()).unwrap();
    pair.alice.notify_refer(now, second, 486, "Busy Here").unwrap();
    pair.run_for(Duration::from_millis(50));
    let (event, state, body) = notifies(&pair).pop().expect("one NOTIFY");
    assert_eq!(event, format!("refer;id={second_cseq}"), "a later REFER's NOTIFYs name it (RFC 3515 §2.4.6)");
    assert_eq!((state.as_str(), body.as_str()), ("terminated;reason=noresource", "SIP/2.0 486 Busy Here\r\n"));
    let events = refer_events(&pair.bob_events);
    assert_eq!(events, ["response 603", "response 202", "notify Some(486) true"], "routed to the second REFER");

    let no_subscription = refer(&mut pair, bob_call, &[("Refer-Sub", "false")]);
    let now = pair.now;
    pair.alice.respond(now, no_subscription, 202, Extras::default()).unwrap();
    assert!(pair.alice.notify_refer(now, no_subscription, 200, "OK").is_err(), "Refer-Sub: false asks for none");
    pair.run_for(Duration::from_millis(50));
    assert_eq!(notifies(&pair).len(), 1);
}

#[test]
fn a_referrer_that_answers_a_notify_481_ends_the_subscription() {
    let mut pair = Pair::new(Transport::Udp);
    let (_alice_call, bob_call) = establish(&mut pair, Duration::from_millis(200));
    // Every 202 is lost: Bob's REFER times out (408) and his side of the subscription ends with it.
    pair.drop_when(|message| matches!(message, Message::Response(r) if r.status == 202));
    let refer_handle = refer(&mut pair, bob_call, &[]);
    let now = pair.now;
    pair.alice.respond(now, refer_handle, 202, Extras::default()).unwrap();
    pair.run_for(Duration::from_secs(40));
    assert_eq!(refer_events(&pair.bob_events), ["response 408"]);
    let now = pair.now;
    pair.alice.notify_refer(now, refer_handle, 180, "Ringing").unwrap();
    pair.run_for(Duration::from_millis(50));
    assert_eq!(pair.responses(false, 481, "NOTIFY").len(), 1, "Bob knows no such subscription");
    let now = pair.now;
    let ended = pair.alice.notify_refer(now, refer_handle, 200, "OK").unwrap_err();
    assert!(ended.to_string().contains("not a REFER with a subscription"), "{ended}");
    assert_eq!(notifies(&pair).len(), 1, "nothing more is sent once the referrer said 481");
}
