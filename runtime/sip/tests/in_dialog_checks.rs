//! What the UAS core answers before anything reaches the user: 481 for unknown dialogs, 500 for old CSeqs,
//! 482 for merged requests, 200 to OPTIONS, retransmissions answered from the transaction, and 513 to a
//! stream request too large to read.

mod common;

use callwright_sip::message::Message;
use callwright_sip::{Event, Extras, Transport};
use common::{RawPeer, sdp, status_of};

fn invite(branch: &str) -> String {
    format!(
        "INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: dlg-1\r\nCSeq: 10 INVITE\r\n\
         Contact: <sip:alice@127.0.0.1:5070>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

fn in_dialog(method: &str, cseq: u32, to_tag: &str, branch: &str) -> String {
    format!(
        "{method} sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>;tag={to_tag}\r\nCall-ID: dlg-1\r\n\
         CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

fn statuses(sent: &[Message]) -> Vec<u16> {
    sent.iter().filter_map(status_of).collect()
}

/// Feeds the INVITE, answers it, feeds the ACK; returns bob's To tag.
fn answered_call(peer: &mut RawPeer) -> String {
    let (_, events) = peer.feed(invite("z9hG4bKinv").as_bytes());
    let Some(Event::IncomingCall { call, .. }) = events.into_iter().next() else { panic!("no call") };
    peer.endpoint.answer(peer.now, call, Extras::body("application/sdp", sdp("127.0.0.1", 5000))).unwrap();
    let (sent, _) = peer.drain();
    let Message::Response(ok) = &sent[0] else { panic!("expected 200") };
    let tag = ok.headers.tag("To").expect("200 has a To tag");
    peer.feed(in_dialog("ACK", 10, &tag, "z9hG4bKack").as_bytes());
    tag
}

#[test]
fn unknown_dialog_gets_481() {
    let mut peer = RawPeer::new(Transport::Udp);
    let (sent, _) = peer.feed(in_dialog("BYE", 11, "nosuchtag", "z9hG4bKb1").as_bytes());
    assert_eq!(statuses(&sent), [481]);
}

#[test]
fn lower_cseq_gets_500_and_in_order_requests_reach_the_user() {
    let mut peer = RawPeer::new(Transport::Udp);
    let tag = answered_call(&mut peer);
    let (sent, events) = peer.feed(in_dialog("INFO", 11, &tag, "z9hG4bKi1").as_bytes());
    assert!(sent.is_empty());
    assert!(matches!(&events[..], [Event::Request { .. }]));
    let (sent, events) = peer.feed(in_dialog("INFO", 9, &tag, "z9hG4bKi2").as_bytes());
    assert_eq!(statuses(&sent), [500]);
    assert!(events.is_empty());
}

#[test]
fn options_in_and_out_of_dialog_get_200_with_allow() {
    let mut peer = RawPeer::new(Transport::Udp);
    let tag = answered_call(&mut peer);
    let (sent, _) = peer.feed(in_dialog("OPTIONS", 12, &tag, "z9hG4bKo1").as_bytes());
    assert_eq!(statuses(&sent), [200]);
    let Message::Response(ok) = &sent[0] else { unreachable!() };
    assert!(ok.headers.get("Allow").is_some_and(|a| a.contains("REFER")));
}

#[test]
fn merged_request_gets_482() {
    let mut peer = RawPeer::new(Transport::Udp);
    let (sent, events) = peer.feed(invite("z9hG4bKfirst").as_bytes());
    assert_eq!(statuses(&sent), [100]);
    assert_eq!(events.len(), 1);
    // The same request forked back to us along another path: a new branch.
    let (sent, events) = peer.feed(invite("z9hG4bKsecond").as_bytes());
    assert_eq!(statuses(&sent), [482]);
    assert!(events.is_empty());
}

#[test]
fn retransmitted_invite_gets_the_last_response_and_no_new_call() {
    let mut peer = RawPeer::new(Transport::Udp);
    let (_, events) = peer.feed(invite("z9hG4bKr").as_bytes());
    assert_eq!(events.len(), 1);
    let (sent, events) = peer.feed(invite("z9hG4bKr").as_bytes());
    assert_eq!(statuses(&sent), [100]);
    assert!(events.is_empty());
}

#[test]
fn responses_follow_via_received_and_rport() {
    let mut peer = RawPeer::new(Transport::Udp);
    // The Via claims 10.0.0.9:5099 but the packet came from 127.0.0.1:5070 with rport: answer the source.
    let text = invite("z9hG4bKnat").replace("127.0.0.1:5070;branch", "10.0.0.9:5099;branch");
    peer.endpoint.handle_message(peer.now, peer.flow, text.as_bytes());
    let transmit = peer.endpoint.poll_transmit().unwrap();
    assert_eq!(transmit.flow.remote, common::addr(common::ALICE));
    let Ok(Message::Response(trying)) = Message::parse(&transmit.bytes) else { panic!() };
    let via = trying.headers.top_via().unwrap();
    assert_eq!(via.params.get("received"), Some(Some("127.0.0.1")));
    assert_eq!(via.params.get("rport"), Some(Some("5070")));
}

#[test]
fn a_stream_request_too_large_to_read_gets_513_from_its_header_section() {
    let mut peer = RawPeer::new(Transport::Tcp);
    let head = invite("z9hG4bKbig").replace("Content-Length: ", "Content-Length: 7000");
    let head = &head[..head.find("\r\n\r\n").expect("a header section") + 4];
    let size = head.len() + 70_000;
    peer.endpoint.handle_oversized(peer.flow, head.as_bytes(), size);
    let (sent, events) = peer.drain();
    assert_eq!(statuses(&sent), [513]);
    let Message::Response(too_large) = &sent[0] else { unreachable!() };
    assert!(too_large.headers.tag("To").is_some(), "a final answer outside a dialog has a To tag");
    assert_eq!(too_large.headers.get("Call-ID"), Some("dlg-1"));
    let warning = too_large.headers.get("Warning").unwrap_or_default();
    assert!(warning.contains(&format!("message of {size} bytes")), "{warning}");
    assert!(events.is_empty(), "no call is offered");

    // A response that is too large, or an ACK, is answered by nobody.
    let response = "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bKr\r\nContent-Length: 70000\r\n\r\n";
    peer.endpoint.handle_oversized(peer.flow, response.as_bytes(), 70_100);
    let ack = head.replace("INVITE", "ACK");
    peer.endpoint.handle_oversized(peer.flow, ack.as_bytes(), 70_100);
    assert!(peer.drain().0.is_empty());
}
