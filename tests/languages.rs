//! Call logic in any wasm language: the `answer-hangup`, `blind-transfer` and `ivr` examples of Rust,
//! JavaScript, Python and C, each built from source, uploaded through the admin API and run against real
//! SIPp and baresip calls and a real hook server, with one set of assertions for all four languages.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::baresip::Baresip;
use support::hooks::HookServer;
use support::languages::{Language, starlingmonkey_answer_hangup};
use support::sipp::{Sipp, Transport};
use support::transfer::{HOOK_WAIT, assert_call_fields, event_statuses, put_transfer_app, transferee_call};
use support::{ANSWER_HANGUP, Server, TempDir};

#[test]
fn rust_examples_handle_real_calls() {
    examples_handle_real_calls(Language::Rust);
}

#[test]
fn javascript_examples_handle_real_calls() {
    examples_handle_real_calls(Language::JavaScript);
}

#[test]
fn python_examples_handle_real_calls() {
    examples_handle_real_calls(Language::Python);
}

#[test]
fn c_examples_handle_real_calls() {
    examples_handle_real_calls(Language::C);
}

#[test]
fn javascript_on_starlingmonkey_loads_with_its_wasi_http_imports_stubbed() {
    let data = TempDir::new("languages-starlingmonkey");
    let server = Server::start_in(&data.0, &[]);
    let uploaded = server.deploy("answer-hangup", &starlingmonkey_answer_hangup());
    uploaded.assert_status(201);
    let meta: Value = serde_json::from_str(&uploaded.body).expect("module JSON");
    let stubbed: Vec<&str> =
        meta["stubbed_imports"].as_array().expect("stubbed imports").iter().flat_map(Value::as_str).collect();
    assert!(stubbed.iter().any(|i| i.starts_with("wasi:http/types@")), "{meta}");
    assert!(stubbed.iter().any(|i| i.starts_with("wasi:http/outgoing-handler@")), "{meta}");
    assert!(stubbed.iter().all(|i| i.starts_with("wasi:http/")), "only wasi:http is stubbed: {meta}");
    let app =
        json!({"route": {"to_user": "1000"}, "flow": {"module": "answer-hangup", "config": {"hangup_after_ms": 500}}});
    server.put_app("answer-hangup", &app.to_string()).assert_status(201);
    Sipp::client("uac-callee-hangs-up.xml", server.sip).service("1000").calls(3).rate(10).run().assert_all_succeeded(3);
    assert_eq!(server.log().matches("guest finished").count(), 3, "{}", server.log());
}

#[test]
fn a_large_upload_compiles_off_the_sip_thread_while_calls_go_on() {
    let python = Language::Python.example("answer-hangup");
    let size = std::fs::metadata(&python).expect("built").len();
    assert!(size > 12 << 20, "the Python component is the large one: {size} bytes");
    let data = TempDir::new("languages-large-upload");
    let server = Server::start_in(&data.0, &[]);
    server.deploy("rust", ANSWER_HANGUP).assert_status(201);
    let app = json!({"route": {"to_user": "1000"}, "flow": {"module": "rust", "config": {"hangup_after_ms": 200}}});
    server.put_app("rust", &app.to_string()).assert_status(201);
    let (sip, http) = (server.sip, server.http);
    let upload = std::thread::spawn(move || {
        let bytes = std::fs::read(&python).expect("read component");
        let started = Instant::now();
        let response = support::http(http, "PUT", "/v1/modules/python", Some(support::TOKEN), &bytes);
        (response, started.elapsed())
    });
    // While it compiles: SIP keeps answering at once, and calls keep completing.
    let mut slowest = Duration::ZERO;
    let mut batches = 0;
    while !upload.is_finished() {
        for _ in 0..10 {
            slowest = slowest.max(options_round_trip(sip));
            std::thread::sleep(Duration::from_millis(50));
        }
        Sipp::client("uac-callee-hangs-up.xml", sip).service("1000").calls(3).rate(20).run().assert_all_succeeded(3);
        batches += 1;
    }
    let (response, took) = upload.join().expect("upload thread");
    response.assert_status(201);
    assert!(batches >= 1, "the upload took {took:?}");
    assert!(slowest < Duration::from_millis(500), "an OPTIONS waited {slowest:?} during a {took:?} upload");
    eprintln!("{size}-byte upload answered in {took:?}; {batches} call batches meanwhile; slowest OPTIONS {slowest:?}");
}

#[test]
fn a_server_killed_during_an_upload_keeps_the_module_it_had() {
    let python = std::fs::read(Language::Python.example("answer-hangup")).expect("built");
    let data = TempDir::new("languages-kill-upload");
    let mut server = Server::start_in(&data.0, &[]);
    let stored = server.deploy("flow", ANSWER_HANGUP);
    stored.assert_status(201);
    let sha256 = |body: &str| serde_json::from_str::<Value>(body).expect("module JSON")["sha256"].clone();
    let app = json!({"route": {"to_user": "1000"}, "flow": {"module": "flow", "config": {"hangup_after_ms": 200}}});
    server.put_app("flow", &app.to_string()).assert_status(201);
    // Replace it with the large component, and kill the server (SIGKILL) while that compiles.
    let http = server.http;
    let upload = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(http).expect("connect");
        let head = format!(
            "PUT /v1/modules/flow HTTP/1.1\r\nHost: {http}\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
            support::TOKEN,
            python.len()
        );
        let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&python));
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    });
    std::thread::sleep(Duration::from_millis(1500));
    server.kill();
    let answer = upload.join().expect("upload thread");
    assert!(answer.is_empty(), "the upload finished before the kill; make the test kill sooner: {answer}");
    drop(server);

    let server = Server::start_in(&data.0, &[]);
    let kept = server.api("GET", "/v1/modules/flow", b"");
    kept.assert_status(200);
    assert_eq!(sha256(&kept.body), sha256(&stored.body), "the module before the upload is kept");
    Sipp::client("uac-callee-hangs-up.xml", server.sip).service("1000").calls(2).run().assert_all_succeeded(2);
    let leftovers: Vec<String> = std::fs::read_dir(data.0.join("modules"))
        .expect("modules folder")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Sends an OPTIONS outside any dialog and returns how long the 200 took.
fn options_round_trip(server: SocketAddr) -> Duration {
    static SEQUENCE: AtomicU32 = AtomicU32::new(1);
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let local = socket.local_addr().expect("local address");
    let request = format!(
        "OPTIONS sip:probe@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-probe-{seq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{local}>;tag=probe{seq}\r\nTo: <sip:probe@{server}>\r\n\
         Call-ID: probe-{seq}@{local}\r\nCSeq: {seq} OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    let started = Instant::now();
    socket.send_to(request.as_bytes(), server).expect("send OPTIONS");
    let mut buffer = [0u8; 4096];
    let (n, _) = socket.recv_from(&mut buffer).expect("an answer to OPTIONS");
    let elapsed = started.elapsed();
    let answer = String::from_utf8_lossy(&buffer[..n]);
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    elapsed
}

/// Everything the Rust examples are tested for, on `language`'s examples.
fn examples_handle_real_calls(language: Language) {
    let answer_hangup = language.example("answer-hangup");
    let blind_transfer = language.example("blind-transfer");
    let ivr = language.example("ivr");
    let data = TempDir::new(&format!("languages-{}", language.dir()));
    let server = Server::start_in(&data.0, &[]);
    for (name, file) in [("answer-hangup", &answer_hangup), ("blind-transfer", &blind_transfer), ("ivr", &ivr)] {
        let uploaded = server.deploy(name, file);
        uploaded.assert_status(201);
        let meta: Value = serde_json::from_str(&uploaded.body).expect("module JSON");
        assert_eq!(meta["world"], "call-flow", "{language:?} {name}: {meta}");
    }
    answer_hangup_runs(&server);
    blind_transfer_runs(&server);
    ivr_runs(&server);
}

/// The IVR speaks its greeting and takes the caller's keys: SIPp sends 2, then 9, as RFC 4733 events (its
/// own captures), and the IVR logs each once and hangs up on 9.
fn ivr_runs(server: &Server) {
    let app = json!({"route": {"to_user": "2000"}, "flow": {"module": "ivr", "config": {"timeout_ms": 10000}}});
    server.put_app("ivr", &app.to_string()).assert_status(201);
    support::rtp::press_2_then_9(server, "2000");
    let log = server.log();
    assert_eq!(log.matches("digit 2 from rtp-event (so far 2)").count(), 1, "{log}");
    assert_eq!(log.matches("digit 9 from rtp-event (so far 29)").count(), 1, "{log}");
    assert!(!log.contains("cannot speak"), "the greeting was spoken:\n{log}");
}

/// answer-hangup answers, then hangs up after `hangup_after_ms`, over UDP and TCP; a caller who hangs up
/// first ends the flow.
fn answer_hangup_runs(server: &Server) {
    let app =
        json!({"route": {"to_user": "1000"}, "flow": {"module": "answer-hangup", "config": {"hangup_after_ms": 500}}});
    server.put_app("answer-hangup", &app.to_string()).assert_status(201);
    for transport in [Transport::Udp, Transport::Tcp] {
        Sipp::client("uac-callee-hangs-up.xml", server.sip)
            .transport(transport)
            .service("1000")
            .calls(5)
            .rate(10)
            .run()
            .assert_all_succeeded(5);
    }
    let app = json!({"route": {"to_user": "1001"}, "flow": {"module": "answer-hangup", "config": {"hangup_after_ms": 20000}}});
    server.put_app("caller-leaves", &app.to_string()).assert_status(201);
    Sipp::client("uac-caller-hangs-up.xml", server.sip).service("1001").calls(2).run().assert_all_succeeded(2);
    // The last guest may still be finishing when SIPp has its 200 for the BYE: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.log().matches("guest finished").count() < 12 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = server.log();
    assert_eq!(log.matches("guest finished").count(), 12, "{log}");
    assert!(!log.contains("guest stopped"), "{log}");
}

/// blind-transfer refers baresip to a SIPp target; SIPp transferees accept, refuse, fail, and make it try
/// a fallback target. The hooks must carry the same fields as jambonz's `sip:refer`.
fn blind_transfer_runs(server: &Server) {
    let hooks = HookServer::start();
    let target = Sipp::server("uas-answer.xml", 0).calls(1).timeout(Duration::from_secs(30)).spawn();
    let config = json!({ "target": format!("sip:target@127.0.0.1:{}", target.port()) });
    put_transfer_app(server, &hooks, "blind-transfer", "baresip-transfer", config);
    let baresip = Baresip::dial(&format!("sip:baresip-transfer@{}", server.sip), Duration::from_secs(8));
    let action = hooks.wait_for("/baresip-transfer/action", 1, HOOK_WAIT)[0].json();
    assert_eq!(action["refer_status"], 202, "{action}");
    assert_eq!(action["final_referred_call_status"], 200, "{action}");
    assert_eq!(action["transfer_outcome"], "success", "{action}");
    assert_call_fields(&action, "baresip", "baresip-transfer");
    assert_eq!(event_statuses(&hooks, "baresip-transfer"), ["100", "200"]);
    let log = baresip.wait(Duration::from_secs(15));
    target.wait().assert_all_succeeded(1);
    assert!(log.contains("REFER"), "baresip saw no REFER:\n{log}");

    put_transfer_app(server, &hooks, "blind-transfer", "accepts", json!({}));
    let (actions, events) = transferee_call(server, &hooks, "accepts", "uac-refer-accept.xml", &[], 1);
    assert_call_fields(&actions[0], "sipp", "accepts");
    assert_eq!(actions[0]["refer_status"], 202, "{}", actions[0]);
    assert_eq!(actions[0]["final_referred_call_status"], 200, "{}", actions[0]);
    assert_eq!(actions[0]["transfer_outcome"], "success", "{}", actions[0]);
    assert_eq!(events, ["100", "200"]);

    put_transfer_app(server, &hooks, "blind-transfer", "refuses", json!({}));
    let refuse = ["-key", "refer_status", "403"];
    let (actions, events) = transferee_call(server, &hooks, "refuses", "uac-refer-reject.xml", &refuse, 1);
    assert_eq!(actions[0]["refer_status"], 403, "{}", actions[0]);
    assert_eq!(actions[0]["transfer_outcome"], "rejected", "{}", actions[0]);
    assert!(actions[0].get("final_referred_call_status").is_none(), "{}", actions[0]);
    assert!(events.is_empty(), "{events:?}");

    put_transfer_app(server, &hooks, "blind-transfer", "target-busy", json!({}));
    let (actions, events) = transferee_call(server, &hooks, "target-busy", "uac-refer-notify-486.xml", &[], 1);
    assert_eq!(actions[0]["refer_status"], 202, "{}", actions[0]);
    assert_eq!(actions[0]["final_referred_call_status"], 486, "{}", actions[0]);
    assert_eq!(actions[0]["transfer_outcome"], "failed", "{}", actions[0]);
    assert_eq!(events, ["100", "486"]);

    // A flow's error (the language's own: an exception, an error string, a return code) ends the call;
    // this one comes before the answer, so the caller gets 500, and the log names the problem.
    let app = json!({"route": {"to_user": "no-target"}, "flow": {"module": "blind-transfer", "config": {}}});
    server.put_app("no-target", &app.to_string()).assert_status(201);
    Sipp::client("uac-rejected-500.xml", server.sip).service("no-target").calls(1).run().assert_all_succeeded(1);
    assert!(server.log().contains("the app config has no"), "{}", server.log());

    let config = json!({ "fallback_targets": ["sip:second@127.0.0.1:9"] });
    put_transfer_app(server, &hooks, "blind-transfer", "falls-back", config);
    let (actions, events) = transferee_call(server, &hooks, "falls-back", "uac-refer-twice.xml", &[], 2);
    assert_eq!(actions[0]["final_referred_call_status"], 603, "{}", actions[0]);
    assert_eq!(actions[0]["transfer_outcome"], "failed", "{}", actions[0]);
    assert_eq!(actions[1]["final_referred_call_status"], 200, "{}", actions[1]);
    assert_eq!(actions[1]["transfer_outcome"], "success", "{}", actions[1]);
    assert_eq!(events, ["603", "100", "200"]);
}
