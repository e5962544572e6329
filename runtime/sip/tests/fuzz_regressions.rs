//! Every input the fuzzer once crashed on (`fuzz/regressions/`) is replayed through the parser, the
//! stream framer and a whole endpoint: none may panic again.

mod common;

use std::time::Duration;

use callwright_sip::message::{Message, StreamFramer};
use callwright_sip::{Event, Extras, Transport};

#[test]
fn fuzz_regressions_no_longer_panic() {
    let dir = format!("{}/fuzz/regressions", env!("CARGO_MANIFEST_DIR"));
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("regressions folder") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read regression");
        let _ = Message::parse(&bytes);
        let mut framer = StreamFramer::new();
        framer.push(&bytes);
        while let Ok(Some(_)) = framer.next_frame() {}
        let mut peer = common::RawPeer::new(Transport::Udp);
        let (_, events) = peer.feed(&bytes);
        for event in events {
            if let Event::IncomingCall { call, .. } = event {
                let _ = peer.endpoint.answer(peer.now, call, Extras::default());
            }
        }
        peer.advance(Duration::from_secs(40));
        replayed += 1;
    }
    assert!(replayed > 0, "no regression inputs found in {dir}");
}
