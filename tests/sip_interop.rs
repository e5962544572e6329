//! SIP interop: SIPp calls `callwright serve` over UDP and TCP. Calls answered and hung up from either side,
//! a caller that never ACKs (we retransmit the 200, then BYE), a CANCEL before the answer, a busy callee,
//! and OPTIONS. The call logic is the `sip-behaviours` test guest, uploaded through the admin API; the IVR
//! example is called as `serve` deploys it.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::sipp::{Sipp, Transport};
use support::{Server, TempDir};

const TRANSPORTS: [Transport; 2] = [Transport::Udp, Transport::Tcp];

#[test]
fn caller_hangs_up() {
    let data = TempDir::new("interop");
    let server = Server::with_behaviours(&data.0);
    for transport in TRANSPORTS {
        let outcome = Sipp::client("uac-caller-hangs-up.xml", server.sip)
            .transport(transport)
            .service("answer")
            .calls(20)
            .rate(20)
            .run();
        outcome.assert_all_succeeded(20);
    }
}

#[test]
fn callee_hangs_up() {
    let data = TempDir::new("interop");
    let server = Server::with_behaviours(&data.0);
    for transport in TRANSPORTS {
        let outcome = Sipp::client("uac-callee-hangs-up.xml", server.sip)
            .transport(transport)
            .service("hangup")
            .calls(5)
            .rate(10)
            .run();
        outcome.assert_all_succeeded(5);
    }
    assert!(server.log().matches("guest finished").count() >= 10, "{}", server.log());
}

#[test]
fn caller_that_never_acks_gets_retransmissions_then_bye() {
    let data = TempDir::new("interop");
    let server = Server::with_behaviours(&data.0);
    for transport in TRANSPORTS {
        let outcome = Sipp::client("uac-never-acks.xml", server.sip)
            .transport(transport)
            .service("answer")
            .calls(1)
            .timeout(Duration::from_secs(30))
            .run();
        outcome.assert_all_succeeded(1);
    }
    assert_eq!(server.log().matches("AckTimeout").count(), 2, "{}", server.log());
}

#[test]
fn cancel_before_answer() {
    let data = TempDir::new("interop");
    let server = Server::with_behaviours(&data.0);
    for transport in TRANSPORTS {
        let outcome = Sipp::client("uac-cancel-before-answer.xml", server.sip)
            .transport(transport)
            .service("slow")
            .calls(3)
            .rate(10)
            .run();
        outcome.assert_all_succeeded(3);
    }
    assert_eq!(server.log().matches("reason=Cancelled").count(), 6, "{}", server.log());
}

#[test]
fn busy_callee_is_rejected_and_acked() {
    let data = TempDir::new("interop");
    let server = Server::with_behaviours(&data.0);
    for transport in TRANSPORTS {
        let outcome =
            Sipp::client("uac-busy.xml", server.sip).transport(transport).service("busy").calls(3).rate(10).run();
        outcome.assert_all_succeeded(3);
    }
}

#[test]
fn options_get_200() {
    let data = TempDir::new("interop");
    let server = Server::with_behaviours(&data.0);
    for transport in TRANSPORTS {
        let outcome = Sipp::client("uac-options.xml", server.sip).transport(transport).calls(3).rate(10).run();
        outcome.assert_all_succeeded(3);
    }
}

#[test]
fn calls_over_ipv6_on_udp_and_tcp() {
    let data = TempDir::new("interop-v6");
    let v6: SocketAddr = format!("[::1]:{}", support::free_port()).parse().expect("address");
    let server = Server::start_in(&data.0, &["--sip", &v6.to_string()]);
    server.deploy("sip-behaviours", support::SIP_BEHAVIOURS).assert_status(201);
    server.put_app("any", &support::serde_like::app("sip-behaviours", None, "null")).assert_status(201);
    for transport in TRANSPORTS {
        let outcome =
            Sipp::client("uac-caller-hangs-up.xml", v6).transport(transport).service("answer").calls(3).rate(10).run();
        outcome.assert_all_succeeded(3);
    }
}

#[test]
fn the_ivr_that_serve_deploys_on_2000_answers_digits_sent_as_info() {
    // `serve` as the README runs it: the examples deployed on first start, the IVR on 2000.
    let data = TempDir::new("interop-ivr");
    let server = Server::with_examples(&data.0);
    for transport in TRANSPORTS {
        // Digit 1 brings the menu as a MESSAGE in the dialog, digit 9 our BYE.
        let outcome = Sipp::client("uac-ivr-digits.xml", server.sip)
            .transport(transport)
            .service("2000")
            .calls(2)
            .rate(10)
            .timeout(Duration::from_secs(30))
            .run();
        outcome.assert_all_succeeded(2);
    }
    let log = server.log();
    let both = log.matches("digit 9 from sip-info (so far 19)").count();
    assert_eq!(both, 4, "the IVR saw both digits of every call, by INFO:\n{log}");
}
