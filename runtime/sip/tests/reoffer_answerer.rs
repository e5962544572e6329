//! A new offer inside a call (re-INVITE, UPDATE) is answered by the user's `OfferAnswerer` when one is set:
//! its answer goes in the 200 and becomes the session later offers are answered with; a refusal is sent
//! as its status and changes nothing. Without one, the session as it stands answers. A re-INVITE without
//! an offer gets the answerer's offer in the 200, and the answer in the ACK goes back to it.

mod common;

use std::sync::{Arc, Mutex};

use callwright_sip::message::Message;
use callwright_sip::{Event, Extras, OfferAnswer, Transport};
use common::{RawPeer, sdp, status_of};

fn request(method: &str, cseq: u32, to_tag: Option<&str>, branch: &str, body: &str) -> String {
    let to_tag = to_tag.map(|tag| format!(";tag={tag}")).unwrap_or_default();
    let content_type = if body.is_empty() { String::new() } else { "Content-Type: application/sdp\r\n".into() };
    format!(
        "{method} sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>{to_tag}\r\nCall-ID: reoffer-1\r\n\
         CSeq: {cseq} {method}\r\nContact: <sip:alice@127.0.0.1:5070>\r\nMax-Forwards: 70\r\n{content_type}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

const HOLD: &str =
    "v=0\r\no=a 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\na=sendonly\r\n";

/// An answered, acknowledged call; returns its handle and our To tag.
fn answered_call(peer: &mut RawPeer) -> (callwright_sip::CallHandle, String) {
    let offer = String::from_utf8(sdp("127.0.0.1", 5004)).expect("utf-8");
    let (_, events) = peer.feed(request("INVITE", 10, None, "z9hG4bKinv", &offer).as_bytes());
    let Some(Event::IncomingCall { call, .. }) = events.into_iter().next() else { panic!("no call") };
    peer.endpoint.answer(peer.now, call, Extras::body("application/sdp", sdp("127.0.0.1", 6000))).unwrap();
    let (sent, _) = peer.drain();
    let Message::Response(ok) = &sent[0] else { panic!("expected 200") };
    let tag = ok.headers.tag("To").expect("200 has a To tag");
    peer.feed(request("ACK", 10, Some(&tag), "z9hG4bKack", "").as_bytes());
    (call, tag)
}

fn final_response(sent: &[Message]) -> &callwright_sip::message::Response {
    sent.iter()
        .find_map(|m| match m {
            Message::Response(r) if r.status >= 200 => Some(r),
            _ => None,
        })
        .expect("a final response")
}

#[test]
fn reinvite_offer_is_answered_by_the_answerer_and_its_answer_sticks() {
    let mut peer = RawPeer::new(Transport::Udp);
    let (call, tag) = answered_call(&mut peer);
    let offers = Arc::new(Mutex::new(Vec::new()));
    let seen = offers.clone();
    let answerer = Box::new(move |offer: &[u8]| {
        seen.lock().unwrap().push(offer.to_vec());
        Ok(b"v=0\r\ns=held\r\n".to_vec())
    });
    peer.endpoint.set_offer_answerer(call, answerer).unwrap();

    let (sent, events) = peer.feed(request("INVITE", 11, Some(&tag), "z9hG4bKre1", HOLD).as_bytes());
    let ok = final_response(&sent);
    assert_eq!((ok.status, ok.body.as_slice()), (200, b"v=0\r\ns=held\r\n".as_slice()));
    assert!(ok.headers.get("Contact").is_some(), "a 2xx to INVITE carries Contact");
    assert_eq!(offers.lock().unwrap().as_slice(), [HOLD.as_bytes().to_vec()]);
    assert!(events.is_empty(), "the core handled the re-INVITE");
    peer.feed(request("ACK", 11, Some(&tag), "z9hG4bKack2", "").as_bytes());

    // A re-INVITE without an offer gets the session the answerer last gave, as our offer.
    let (sent, _) = peer.feed(request("INVITE", 12, Some(&tag), "z9hG4bKre2", "").as_bytes());
    assert_eq!(final_response(&sent).body, b"v=0\r\ns=held\r\n");
    assert_eq!(offers.lock().unwrap().len(), 1, "no offer, nothing to answer");
}

#[test]
fn refused_offer_gets_its_status_and_the_session_stays() {
    let mut peer = RawPeer::new(Transport::Udp);
    let (call, tag) = answered_call(&mut peer);
    peer.endpoint.set_offer_answerer(call, Box::new(|_: &[u8]| Err(488))).unwrap();

    let (sent, _) = peer.feed(request("INVITE", 11, Some(&tag), "z9hG4bKre1", HOLD).as_bytes());
    assert_eq!(sent.iter().filter_map(status_of).collect::<Vec<_>>(), [100, 488]);
    let (sent, _) = peer.feed(request("UPDATE", 12, Some(&tag), "z9hG4bKup1", HOLD).as_bytes());
    assert_eq!(sent.iter().filter_map(status_of).collect::<Vec<_>>(), [488]);
    // The call goes on: an in-dialog OPTIONS is still answered.
    let (sent, _) = peer.feed(request("OPTIONS", 13, Some(&tag), "z9hG4bKo1", "").as_bytes());
    assert_eq!(sent.iter().filter_map(status_of).collect::<Vec<_>>(), [200]);
}

#[test]
fn without_an_answerer_the_session_as_it_stands_answers() {
    let mut peer = RawPeer::new(Transport::Udp);
    let (_, tag) = answered_call(&mut peer);
    let (sent, _) = peer.feed(request("INVITE", 11, Some(&tag), "z9hG4bKre1", HOLD).as_bytes());
    assert_eq!(final_response(&sent).body, sdp("127.0.0.1", 6000));
}

/// Offers a full session and keeps the answers it is handed.
struct Reofferer(Arc<Mutex<Vec<Vec<u8>>>>);

impl OfferAnswer for Reofferer {
    fn answer(&mut self, _offer: &[u8]) -> Result<Vec<u8>, u16> {
        Ok(b"v=0\r\ns=answer\r\n".to_vec())
    }
    fn offer(&mut self) -> Option<Vec<u8>> {
        Some(b"v=0\r\ns=full offer\r\n".to_vec())
    }
    fn accept_answer(&mut self, answer: &[u8]) {
        self.0.lock().unwrap().push(answer.to_vec());
    }
}

#[test]
fn an_offerless_reinvite_gets_our_full_offer_and_its_ack_answer_reaches_the_answerer() {
    let mut peer = RawPeer::new(Transport::Udp);
    let (call, tag) = answered_call(&mut peer);
    let answers = Arc::new(Mutex::new(Vec::new()));
    peer.endpoint.set_offer_answerer(call, Box::new(Reofferer(answers.clone()))).unwrap();

    let (sent, events) = peer.feed(request("INVITE", 11, Some(&tag), "z9hG4bKre1", "").as_bytes());
    let ok = final_response(&sent);
    assert_eq!((ok.status, ok.body.as_slice()), (200, b"v=0\r\ns=full offer\r\n".as_slice()));
    assert!(events.is_empty());
    assert!(answers.lock().unwrap().is_empty(), "nothing to accept before the ACK");
    peer.feed(request("ACK", 11, Some(&tag), "z9hG4bKack2", HOLD).as_bytes());
    assert_eq!(answers.lock().unwrap().as_slice(), [HOLD.as_bytes().to_vec()]);

    // A retransmitted ACK is not a second answer; an ACK to a 200 that answered an offer carries none.
    peer.feed(request("ACK", 11, Some(&tag), "z9hG4bKack2", HOLD).as_bytes());
    peer.feed(request("INVITE", 12, Some(&tag), "z9hG4bKre2", HOLD).as_bytes());
    peer.feed(request("ACK", 12, Some(&tag), "z9hG4bKack3", HOLD).as_bytes());
    assert_eq!(answers.lock().unwrap().len(), 1);
}
