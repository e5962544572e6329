//! RFC 4475 torture messages, each fed to the endpoint as a UDP datagram; what it answers is checked
//! against what the RFC asks of a UAS, and printed as a table.

mod common;

use callwright_sip::message::Message;
use callwright_sip::{Event, Extras, Transport};
use common::{RawPeer, sdp};

/// (file, section, statuses the RFC allows as the final answer; empty = must be dropped silently)
const EXPECTED: &[(&str, &str, &[u16])] = &[
    // wsinv carries a To tag: 481 (no such dialog) is the normal answer of a UAS that never saw it.
    ("wsinv", "3.1.1.1 valid", &[200, 481]),
    ("intmeth", "3.1.1.2 valid", &[501, 405]),
    ("esc01", "3.1.1.3 valid", &[200]),
    ("escnull", "3.1.1.4 valid", &[405, 501]),
    ("esc02", "3.1.1.5 valid", &[501, 405]),
    ("lwsdisp", "3.1.1.6 valid", &[200]),
    ("longreq", "3.1.1.7 valid", &[200]),
    ("dblreq", "3.1.1.8 valid", &[405, 501]),
    ("semiuri", "3.1.1.9 valid", &[200]),
    ("transports", "3.1.1.10 valid", &[200]),
    ("mpart01", "3.1.1.11 valid", &[404, 405, 481]),
    ("unreason", "3.1.1.12 valid response", &[]),
    ("noreason", "3.1.1.13 valid response", &[]),
    ("badinv01", "3.1.2.1 invalid", &[400]),
    ("clerr", "3.1.2.2 invalid", &[400]),
    ("ncl", "3.1.2.3 invalid", &[400]),
    ("scalar02", "3.1.2.4 invalid", &[400]),
    ("scalarlg", "3.1.2.5 invalid response", &[]),
    ("quotbal", "3.1.2.6 invalid", &[400]),
    ("ltgtruri", "3.1.2.7 invalid", &[400]),
    ("lwsruri", "3.1.2.8 invalid", &[400]),
    ("lwsstart", "3.1.2.9 invalid", &[400]),
    ("trws", "3.1.2.10 invalid", &[400]),
    ("escruri", "3.1.2.11 invalid (tolerable)", &[400, 200]),
    ("baddate", "3.1.2.12 invalid (tolerable)", &[400, 200]),
    ("regbadct", "3.1.2.13 invalid", &[400]),
    ("badaspec", "3.1.2.14 invalid (tolerable)", &[400, 200]),
    ("baddn", "3.1.2.15 invalid", &[400]),
    ("badvers", "3.1.2.16 invalid", &[505]),
    ("mismatch01", "3.1.2.17 invalid", &[400]),
    ("mismatch02", "3.1.2.18 invalid", &[501, 400]),
    ("bigcode", "3.1.2.19 invalid response", &[]),
    ("badbranch", "3.2.1 transaction", &[200]),
    ("insuf", "3.3.1 application", &[400]),
    ("unkscm", "3.3.2 application", &[416]),
    ("novelsc", "3.3.3 application", &[416]),
    ("unksm2", "3.3.4 application", &[405, 501]),
    ("bext01", "3.3.5 application", &[420]),
    ("invut", "3.3.6 application", &[415]),
    ("regaut01", "3.3.7 application", &[405, 501]),
    ("multi01", "3.3.8 application", &[400]),
    ("mcl01", "3.3.9 application", &[400]),
    ("bcast", "3.3.10 application", &[]),
    ("zeromf", "3.3.11 application", &[200]),
    ("cparam01", "3.3.12 application", &[405, 501]),
    ("cparam02", "3.3.13 application", &[405, 501]),
    ("regescrt", "3.3.14 application", &[405, 501]),
    ("sdp01", "3.3.15 application", &[406]),
    ("inv2543", "3.3.16 application", &[200]),
];

fn run(name: &str) -> (Vec<u16>, Vec<Message>) {
    let path = format!("{}/tests/rfc4475/{name}.dat", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut peer = RawPeer::new(Transport::Udp);
    let (mut sent, events) = peer.feed(&bytes);
    // The test plays a user that answers every call and every request.
    for event in events {
        match event {
            Event::IncomingCall { call, .. } => {
                peer.endpoint.answer(peer.now, call, Extras::body("application/sdp", sdp("127.0.0.1", 4000))).unwrap();
            }
            Event::Request { handle, .. } => peer.endpoint.respond(peer.now, handle, 200, Extras::default()).unwrap(),
            _ => {}
        }
    }
    sent.extend(peer.drain().0);
    let mut statuses: Vec<u16> = sent.iter().filter_map(common::status_of).collect();
    statuses.extend(&peer.unparseable_statuses);
    (statuses.into_iter().filter(|s| *s >= 200).collect(), sent)
}

#[test]
fn rfc4475_torture_messages() {
    let mut failures = Vec::new();
    println!("\n{:<11} {:<30} {:<12} {:<10} result", "message", "RFC 4475 section", "expected", "got");
    for (name, section, allowed) in EXPECTED {
        let (statuses, sent) = run(name);
        let ok = match allowed {
            [] => statuses.is_empty() && sent.is_empty(),
            allowed => statuses.len() == 1 && allowed.contains(&statuses[0]),
        };
        let expected = if allowed.is_empty() { "drop".to_string() } else { format!("{allowed:?}") };
        let got = if statuses.is_empty() { "nothing".to_string() } else { format!("{statuses:?}") };
        println!("{name:<11} {section:<30} {expected:<12} {got:<10} {}", if ok { "ok" } else { "FAIL" });
        if !ok {
            failures.push(format!("{name}: expected {expected}, got {got}: {sent:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_torture_file_is_in_the_table() {
    let dir = format!("{}/tests/rfc4475", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".dat").map(str::to_string))
        .collect();
    files.sort();
    assert_eq!(files.len(), 49);
    for file in files {
        assert!(EXPECTED.iter().any(|(name, _, _)| *name == file), "{file} missing from the table");
    }
}

#[test]
fn extension_answers_carry_the_headers_rfc3261_asks_for() {
    let (_, sent) = run("bext01");
    let Message::Response(response) = &sent[0] else { panic!("expected a response") };
    assert_eq!(response.headers.get("Unsupported"), Some("nothingsupportsthis, nothingsupportsthiseither"));
    let (_, sent) = run("invut");
    let Message::Response(response) = &sent[0] else { panic!("expected a response") };
    assert!(response.headers.get("Accept").is_some_and(|a| a.contains("application/sdp")));
    let (_, sent) = run("intmeth");
    let Message::Response(response) = &sent[0] else { panic!("expected a response") };
    assert!(response.headers.get("Allow").is_some_and(|a| a.contains("INVITE")));
}
