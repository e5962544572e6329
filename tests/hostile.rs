//! Hostile input end to end: what SIP scanners send, the server answers without crashing, stalling or
//! leaving calls behind.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::serde_like::app;
use support::sipp::Sipp;
use support::{ANSWER_HANGUP, Server, TempDir};

/// Runs a SIPVicious tool (Debian `sipvicious`, installed by tests/run.sh) for at most 2 minutes; returns
/// what it printed.
fn sipvicious(tool: &str, args: &[&str]) -> String {
    let output = Command::new("timeout")
        .arg("120")
        .arg(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {tool} (Debian package sipvicious, installed by tests/run.sh): {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_ne!(output.status.code(), Some(124), "{tool} ran for 2 minutes:\n{text}");
    text
}

#[test]
fn sipvicious_scans_leave_the_server_answering_with_no_call_behind() {
    let data = TempDir::new("hostile-sipvicious");
    let mut server = Server::start_in(&data.0, &[]);
    server.deploy("answer-hangup", ANSWER_HANGUP).assert_status(201);
    // A catch-all app: every extension a scanner tries is a call.
    server.put_app("any", &app("answer-hangup", None, "{\"hangup_after_ms\": 60000}")).assert_status(201);
    let port = server.sip.port().to_string();
    let found = sipvicious("svmap", &["-p", &port, "127.0.0.1"]);
    assert!(found.contains("callwright"), "svmap (OPTIONS) did not find the server:\n{found}");
    let found = sipvicious("svmap", &["-p", &port, "-m", "INVITE", "127.0.0.1"]);
    assert!(found.contains("callwright"), "svmap (INVITE) did not find the server:\n{found}");
    // Extension scans with REGISTER (we answer 405) and with INVITE (each one a call).
    sipvicious("svwar", &["-p", &port, "-e", "100-199", "127.0.0.1"]);
    sipvicious("svwar", &["-p", &port, "-e", "100-199", "-m", "INVITE", "127.0.0.1"]);
    assert!(server.is_running(), "the server died:\n{}", server.log());
    // It still takes calls, and the scanners' calls all end (unacknowledged answers end after 64·T1).
    Sipp::client("uac-caller-hangs-up.xml", server.sip).service("5").calls(1).run().assert_all_succeeded(1);
    let started = Instant::now();
    loop {
        let calls: Vec<serde_json::Value> = serde_json::from_str(&server.api("GET", "/v1/calls", b"").body).unwrap();
        if calls.is_empty() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(40), "calls left behind: {calls:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!server.log().contains("panicked"), "{}", server.log());
}
