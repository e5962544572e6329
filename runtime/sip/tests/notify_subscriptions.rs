//! NOTIFYs inside a call reach the user only for a subscription the user opened with SUBSCRIBE (RFC 6665
//! §4.1.3): one without Event gets 400, one matching no subscription 481, both answered by the core.

mod common;

use std::time::Duration;

use callwright_sip::message::{Message, Method, Request, Response};
use callwright_sip::{CallHandle, Event, Extras, InDialogRequest, RequestHandle, Transport};
use common::{Pair, RawPeer, establish, sdp, status_of};

/// The peer (alice, a1) called the endpoint under test (bob), which answered; the tests script alice.
struct AnsweredCall {
    peer: RawPeer,
    call: CallHandle,
    /// Bob's To tag.
    tag: String,
    /// Alice's next CSeq.
    cseq: u32,
}

fn request(method: &str, cseq: u32, to_tag: &str, branch: &str, extra_headers: &str) -> String {
    format!(
        "{method} sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>{to_tag}\r\nCall-ID: notify-1\r\n\
         CSeq: {cseq} {method}\r\nContact: <sip:alice@127.0.0.1:5070>\r\nMax-Forwards: 70\r\n\
         {extra_headers}Content-Length: 0\r\n\r\n"
    )
}

impl AnsweredCall {
    fn new() -> AnsweredCall {
        let mut peer = RawPeer::new(Transport::Udp);
        let (_, events) = peer.feed(request("INVITE", 10, "", "z9hG4bKinv", "").as_bytes());
        let Some(Event::IncomingCall { call, .. }) = events.into_iter().next() else { panic!("no call") };
        peer.endpoint.answer(peer.now, call, Extras::body("application/sdp", sdp("127.0.0.1", 5000))).unwrap();
        let (sent, _) = peer.drain();
        let Message::Response(ok) = &sent[0] else { panic!("expected 200") };
        let tag = ok.headers.tag("To").expect("200 has a To tag");
        peer.feed(request("ACK", 10, &format!(";tag={tag}"), "z9hG4bKack", "").as_bytes());
        AnsweredCall { peer, call, tag, cseq: 11 }
    }

    /// Alice sends a NOTIFY with these extra header lines; returns the statuses bob sent and bob's events.
    fn notify(&mut self, extra_headers: &str) -> (Vec<u16>, Vec<Event>) {
        let (cseq, tag) = (self.cseq, format!(";tag={}", self.tag));
        self.cseq += 1;
        let text = request("NOTIFY", cseq, &tag, &format!("z9hG4bKn{cseq}"), extra_headers);
        let (sent, events) = self.peer.feed(text.as_bytes());
        (sent.iter().filter_map(status_of).collect(), events)
    }

    /// Bob SUBSCRIBEs with this Event value; returns the handle and the SUBSCRIBE as sent.
    fn subscribe(&mut self, event: &str) -> (RequestHandle, Request) {
        let request = InDialogRequest {
            method: Method::Subscribe,
            extras: Extras::default().header("Event", event).header("Expires", "600"),
            credentials: None,
        };
        let handle = self.peer.endpoint.send_request(self.peer.now, self.call, request).unwrap();
        let (sent, _) = self.peer.drain();
        let Some(Message::Request(subscribe)) = sent.into_iter().next() else { panic!("no SUBSCRIBE sent") };
        assert_eq!(subscribe.method, Method::Subscribe);
        (handle, subscribe)
    }

    /// Alice answers bob's request with `status`.
    fn answer(&mut self, sent: &Request, status: u16) -> Vec<Event> {
        let mut response = Response::new(status);
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            response.headers.push(name, sent.headers.get(name).expect("the request has it"));
        }
        self.peer.feed(&response.to_bytes()).1
    }
}

fn notify_requests(events: &[Event]) -> Vec<&Request> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Request { request, .. } if request.method == Method::Notify => Some(request),
            _ => None,
        })
        .collect()
}

#[test]
fn notify_without_event_gets_400_and_never_reaches_the_user() {
    let mut call = AnsweredCall::new();
    let (statuses, events) = call.notify("Subscription-State: active;expires=60\r\n");
    assert_eq!(statuses, [400]);
    assert!(events.is_empty(), "{events:?}");
    // Even with a subscription open, a NOTIFY without Event matches nothing.
    call.subscribe("dialog");
    let (statuses, events) = call.notify("Subscription-State: active\r\n");
    assert_eq!(statuses, [400]);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn notify_matching_no_subscription_gets_481_and_never_reaches_the_user() {
    let mut call = AnsweredCall::new();
    for event in ["dialog", "presence;id=3", "refer;id=7", "refer"] {
        let (statuses, events) = call.notify(&format!("Event: {event}\r\nSubscription-State: active\r\n"));
        assert_eq!(statuses, [481], "Event: {event}");
        assert!(events.is_empty(), "Event: {event}: {events:?}");
    }
}

#[test]
fn notify_for_our_subscribe_reaches_the_user_until_terminated() {
    let mut call = AnsweredCall::new();
    let (subscription, subscribe) = call.subscribe("dialog;id=1");
    // The first NOTIFY overtakes the 2xx (RFC 6665 §4.1.2.4) and is still the user's.
    let (statuses, events) = call.notify("Event: dialog;id=1\r\nSubscription-State: active;expires=600\r\n");
    assert!(statuses.is_empty(), "the user answers it: {statuses:?}");
    let [Event::Request { handle, .. }] = &events[..] else { panic!("expected the NOTIFY: {events:?}") };
    let now = call.peer.now;
    call.peer.endpoint.respond(now, *handle, 200, Extras::default()).unwrap();
    let (sent, _) = call.peer.drain();
    assert_eq!(sent.iter().filter_map(status_of).collect::<Vec<_>>(), [200]);
    let events = call.answer(&subscribe, 202);
    assert!(matches!(&events[..], [Event::Response { request, response, .. }]
        if *request == subscription && response.status == 202));
    // Other parameters do not count; the id and the package must match byte for byte (RFC 6665 §8.2.1).
    let (_, events) = call.notify("Event: dialog;x=y;id=1\r\nSubscription-State: active\r\n");
    assert_eq!(notify_requests(&events).len(), 1);
    for other in ["dialog", "dialog;id=2", "Dialog;id=1"] {
        let (statuses, events) = call.notify(&format!("Event: {other}\r\nSubscription-State: active\r\n"));
        assert_eq!(statuses, [481], "Event: {other}");
        assert!(events.is_empty());
    }
    let (_, events) = call.notify("Event: dialog;id=1\r\nSubscription-State: terminated;reason=timeout\r\n");
    assert_eq!(notify_requests(&events).len(), 1, "the final NOTIFY reaches the user");
    let (statuses, events) = call.notify("Event: dialog;id=1\r\nSubscription-State: active\r\n");
    assert_eq!(statuses, [481], "the subscription is over");
    assert!(events.is_empty());
    // Subscribing again opens it again.
    call.subscribe("dialog;id=1");
    let (_, events) = call.notify("Event: dialog;id=1\r\nSubscription-State: active\r\n");
    assert_eq!(notify_requests(&events).len(), 1);
}

#[test]
fn a_subscribe_that_fails_or_times_out_opens_nothing() {
    let mut call = AnsweredCall::new();
    let (_, subscribe) = call.subscribe("presence");
    call.answer(&subscribe, 489);
    let (statuses, _) = call.notify("Event: presence\r\nSubscription-State: active\r\n");
    assert_eq!(statuses, [481]);
    let (subscription, _) = call.subscribe("dialog");
    let (_, events) = call.peer.advance(Duration::from_secs(40));
    assert!(events.iter().any(|e| matches!(e, Event::Response { request, response, .. }
        if *request == subscription && response.status == 408)));
    let (statuses, _) = call.notify("Event: dialog\r\nSubscription-State: active\r\n");
    assert_eq!(statuses, [481]);
}

#[test]
fn a_failed_refresh_keeps_the_subscription_unless_481() {
    let mut call = AnsweredCall::new();
    let (_, subscribe) = call.subscribe("dialog");
    call.answer(&subscribe, 200);
    let (_, refresh) = call.subscribe("dialog");
    call.answer(&refresh, 500);
    let (_, events) = call.notify("Event: dialog\r\nSubscription-State: active\r\n");
    assert_eq!(notify_requests(&events).len(), 1, "still subscribed after a 500 to the refresh");
    let (_, refresh) = call.subscribe("dialog");
    call.answer(&refresh, 481);
    let (statuses, events) = call.notify("Event: dialog\r\nSubscription-State: active\r\n");
    assert_eq!(statuses, [481], "481 to the refresh: the subscription was gone");
    assert!(events.is_empty());
}

#[test]
fn notify_for_our_subscribe_after_the_call_ended_gets_481() {
    let mut call = AnsweredCall::new();
    let (_, subscribe) = call.subscribe("dialog");
    call.answer(&subscribe, 200);
    let (cseq, tag) = (call.cseq, format!(";tag={}", call.tag));
    call.cseq += 1;
    let (sent, _) = call.peer.feed(request("BYE", cseq, &tag, "z9hG4bKbye", "").as_bytes());
    assert_eq!(sent.iter().filter_map(status_of).collect::<Vec<_>>(), [200]);
    // The call lingers, but no one is left to take the state: 481 ends the subscription at the notifier.
    let (statuses, events) = call.notify("Event: dialog\r\nSubscription-State: active\r\n");
    assert_eq!(statuses, [481]);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn a_subscribe_refused_by_the_peer_leaves_its_notifies_unmatched() {
    // Two endpoints: bob SUBSCRIBEs, alice's core refuses SUBSCRIBE (405); her later NOTIFY gets 481.
    let mut pair = Pair::new(Transport::Udp);
    let (alice_call, bob_call) = establish(&mut pair, Duration::from_millis(200));
    let now = pair.now;
    let subscribe = InDialogRequest {
        method: Method::Subscribe,
        extras: Extras::default().header("Event", "dialog"),
        credentials: None,
    };
    pair.bob.send_request(now, bob_call, subscribe).unwrap();
    pair.run_for(Duration::from_millis(50));
    assert_eq!(pair.responses(true, 405, "SUBSCRIBE").len(), 1);
    let now = pair.now;
    let notify = InDialogRequest {
        method: Method::Notify,
        extras: Extras::default().header("Event", "dialog").header("Subscription-State", "active"),
        credentials: None,
    };
    pair.alice.send_request(now, alice_call, notify).unwrap();
    pair.run_for(Duration::from_millis(50));
    assert_eq!(pair.responses(false, 481, "NOTIFY").len(), 1, "{:#?}", pair.log);
    assert!(notify_requests(&pair.bob_events).is_empty());
}
