//! An arbitrary UDP datagram given to a fresh `Endpoint` must not panic it: nor must answering any call
//! it starts, a retransmission of the same datagram, running its timers for 40 s of virtual time, or the
//! same bytes taken as the header section of a stream message too large to read.
#![no_main]

use std::time::{Duration, Instant};

use callwright_sip::{Endpoint, EndpointConfig, Event, Extras, Flow, Transport};
use libfuzzer_sys::fuzz_target;

/// Sends nothing anywhere: drops what the endpoint sends and answers every new call with a bare 200.
fn drain(endpoint: &mut Endpoint, now: Instant) {
    while endpoint.poll_transmit().is_some() {}
    while let Some(event) = endpoint.poll_event() {
        if let Event::IncomingCall { call, .. } = event {
            // May fail (e.g. an INVITE without a usable Contact); it must not panic.
            let _ = endpoint.answer(now, call, Extras::default());
        }
    }
    while endpoint.poll_transmit().is_some() {}
}

fuzz_target!(|data: &[u8]| {
    let local = "127.0.0.1:5060".parse().expect("literal address");
    let mut endpoint =
        Endpoint::new(EndpointConfig { listeners: vec![(Transport::Udp, local)], ..EndpointConfig::default() });
    let flow = Flow { transport: Transport::Udp, local, remote: "127.0.0.1:5070".parse().expect("literal address") };
    let start = Instant::now();
    endpoint.handle_message(start, flow, data);
    drain(&mut endpoint, start);
    // The peer retransmits: the transaction layer must absorb it.
    let later = start + Duration::from_millis(500);
    endpoint.handle_message(later, flow, data);
    drain(&mut endpoint, later);
    // Fire every timer due in the next 40 s (Timer B/F/H are 32 s), then once at the end.
    let until = start + Duration::from_secs(40);
    for _ in 0..1_000 {
        let Some(at) = endpoint.poll_timeout().filter(|at| *at <= until) else {
            break;
        };
        endpoint.handle_timeout(at);
        drain(&mut endpoint, at);
    }
    endpoint.handle_timeout(until);
    drain(&mut endpoint, until);
    // The same bytes as the header section of a TCP message too large to take: a 513 or nothing.
    let stream = Flow { transport: Transport::Tcp, ..flow };
    endpoint.handle_oversized(stream, data, data.len() + 70_000);
    drain(&mut endpoint, until);
});
