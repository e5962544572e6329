//! A challenged INVITE or REFER is sent again with credentials (RFC 3261 §22.2, RFC 7616): same Call-ID,
//! CSeq + 1, new branch, and an answer the challenger can verify.

mod common;

use std::time::{Duration, Instant};

use callwright_sip::auth::{Credentials, DigestAuthorization};
use callwright_sip::message::{Message, NameAddr, Request, Response, Uri};
use callwright_sip::{EndReason, Endpoint, Event, Extras, OutboundCall, Transport};
use common::{BOB, addr, endpoint, sdp};

fn sent(endpoint: &mut Endpoint) -> Vec<Message> {
    std::iter::from_fn(|| endpoint.poll_transmit()).map(|t| Message::parse(&t.bytes).unwrap()).collect()
}

fn reply(request: &Request, status: u16, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut response = Response::new(status);
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        response.headers.push(name, request.headers.get(name).unwrap());
    }
    if status > 100 {
        response.headers.set("To", format!("{};tag=uas1", request.headers.get("To").unwrap()));
    }
    for (name, value) in headers {
        response.headers.push(name, *value);
    }
    response.to_bytes()
}

fn call(alice: &mut Endpoint, now: Instant, password: &str) {
    alice
        .invite(
            now,
            OutboundCall {
                target: Uri::parse("sip:bob@127.0.0.1:5060").unwrap(),
                from: NameAddr::new(Uri::parse("sip:alice@example.com").unwrap()),
                to: None,
                destination: addr(BOB),
                transport: Transport::Udp,
                credentials: Some(Credentials::new("alice", password)),
                extras: Extras::body("application/sdp", sdp("127.0.0.1", 4000)),
            },
        )
        .unwrap();
}

fn request_of(message: &Message) -> &Request {
    match message {
        Message::Request(r) => r,
        Message::Response(_) => panic!("expected a request"),
    }
}

#[test]
fn invite_challenged_with_401_sha256_is_retried_with_a_verifiable_answer() {
    let mut alice = endpoint(common::ALICE, Transport::Udp, 11);
    let flow = callwright_sip::Flow { transport: Transport::Udp, local: addr(common::ALICE), remote: addr(BOB) };
    let now = Instant::now();
    call(&mut alice, now, "s3cret");
    let first = sent(&mut alice).remove(0);
    let invite = request_of(&first).clone();
    let challenge = "Digest realm=\"example.com\", nonce=\"n0nce\", qop=\"auth\", algorithm=SHA-256, opaque=\"op\"";
    alice.handle_message(now, flow, &reply(&invite, 401, &[("WWW-Authenticate", challenge)]));
    let out = sent(&mut alice);
    assert_eq!(out.len(), 2, "ACK for the 401, then the new INVITE: {out:#?}");
    assert_eq!(request_of(&out[0]).method.as_str(), "ACK");
    let retry = request_of(&out[1]);
    assert_eq!(retry.headers.call_id(), invite.headers.call_id());
    assert_eq!(retry.headers.cseq().unwrap().seq, invite.headers.cseq().unwrap().seq + 1);
    assert_ne!(retry.headers.top_via().unwrap().branch(), invite.headers.top_via().unwrap().branch());
    let answer = DigestAuthorization::parse(retry.headers.get("Authorization").unwrap()).unwrap();
    assert_eq!(answer.opaque.as_deref(), Some("op"));
    assert!(answer.verify("s3cret", "INVITE", &retry.body));
    assert!(!answer.verify("wrong", "INVITE", &retry.body));
    alice.handle_message(now, flow, &reply(retry, 200, &[("Contact", "<sip:bob@127.0.0.1:5060>")]));
    let out = sent(&mut alice);
    assert_eq!(request_of(&out[0]).method.as_str(), "ACK");
    assert!(std::iter::from_fn(|| alice.poll_event()).any(|e| matches!(e, Event::CallAnswered { .. })));
}

#[test]
fn a_second_challenge_fails_the_call_instead_of_looping() {
    let mut alice = endpoint(common::ALICE, Transport::Udp, 12);
    let flow = callwright_sip::Flow { transport: Transport::Udp, local: addr(common::ALICE), remote: addr(BOB) };
    let now = Instant::now();
    call(&mut alice, now, "wrong");
    let mut last = request_of(&sent(&mut alice)[0]).clone();
    for _ in 0..5 {
        let challenge = "Digest realm=\"example.com\", nonce=\"n\", algorithm=MD5";
        alice.handle_message(now, flow, &reply(&last, 407, &[("Proxy-Authenticate", challenge)]));
        match sent(&mut alice).into_iter().find(|m| matches!(m, Message::Request(r) if r.method.as_str() == "INVITE")) {
            Some(Message::Request(next)) => last = next,
            _ => break,
        }
    }
    let events: Vec<_> = std::iter::from_fn(|| alice.poll_event()).collect();
    let ends: Vec<_> = events.iter().filter(|e| matches!(e, Event::CallEnded { .. })).collect();
    assert_eq!(ends.len(), 1);
    assert!(matches!(ends[0], Event::CallEnded { reason: EndReason::Failed(407), .. }));
    let _ = Duration::ZERO;
}
