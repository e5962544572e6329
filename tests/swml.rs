//! SWML documents end to end, run by the built-in SWML interpreter: the seed's `sip_refer` example with
//! baresip following the REFER to a SIPp target and a real HTTP server seeing the status callback and the
//! variables; the control methods; documents that loop or fail.

mod support;

use std::time::Duration;

use serde_json::json;
use support::baresip::Baresip;
use support::hooks::HookServer;
use support::sipp::Sipp;
use support::{Server, TempDir};

/// How long a test waits for a hook.
const HOOK_WAIT: Duration = Duration::from_secs(20);

#[test]
fn record_call_records_in_the_background_until_stop_record_call() {
    let hooks = HookServer::start();
    let data = TempDir::new("swml-record-call");
    let server = Server::start_in(&data.0, &[]);
    let document = json!({"sections": {"main": [
        {"record_call": {"direction": "speak", "control_id": "mine"}},
        {"sleep": 2000},
        {"stop_record_call": {"control_id": "mine"}},
        {"request": {"url": hooks.url("/recorded"), "method": "POST",
                     "body": {"result": "${record_call_result}", "url": "${record_call_url}", "id": "${record_control_id}"}}},
        {"sleep": 500},
        "hangup",
    ]}});
    server.put_app_with_hooks("record-call", "record-call", json!({"swml": document}), &hooks, None);
    let baresip = Baresip::dial(&format!("sip:record-call@{}", server.sip), Duration::from_secs(8));
    let recorded = hooks.wait_for("/recorded", 1, HOOK_WAIT)[0].json();
    baresip.wait(Duration::from_secs(12));
    assert_eq!((recorded["result"].as_str(), recorded["id"].as_str()), (Some("success"), Some("mine")), "{recorded}");
    let url = recorded["url"].as_str().expect("record_call_url");
    let path = url.split_once("/v1/").map(|(_, rest)| format!("/v1/{rest}")).unwrap_or_else(|| panic!("{url}"));
    let wav = server.api("GET", &path, b"");
    wav.assert_status(200);
    // About the 2 s between record_call and stop_record_call, at 8 kHz, 16-bit.
    let seconds = (wav.bytes.len() - 44) as f64 / 16_000.0;
    assert!((1.8..=2.4).contains(&seconds), "{seconds} s recorded");
}

#[test]
fn record_sets_record_url_to_a_recording_of_the_caller() {
    let hooks = HookServer::start();
    let data = TempDir::new("swml-record");
    let server = Server::start_in(&data.0, &[]);
    let document = json!({"sections": {"main": [
        {"record": {"max_length": 2, "beep": false}},
        {"request": {"url": hooks.url("/recorded"), "method": "POST",
                     "body": {"result": "${record_result}", "url": "${record_url}"}}},
        "hangup",
    ]}});
    server.put_app_with_hooks("record", "record", json!({"swml": document}), &hooks, None);
    let baresip = Baresip::dial(&format!("sip:record@{}", server.sip), Duration::from_secs(8));
    let recorded = hooks.wait_for("/recorded", 1, HOOK_WAIT)[0].json();
    baresip.wait(Duration::from_secs(12));
    assert_eq!(recorded["result"], "success", "{recorded}");
    let url = recorded["url"].as_str().expect("record_url");
    let path = url.split_once("/v1/").map(|(_, rest)| format!("/v1/{rest}")).unwrap_or_else(|| panic!("{url}"));
    let wav = server.api("GET", &path, b"");
    wav.assert_status(200);
    // 2 s at 8 kHz, 16-bit, after the 44-byte header.
    assert_eq!(wav.bytes.len(), 44 + 2 * 16_000, "{recorded}");
}

#[test]
fn prompt_collects_digits_into_its_variables() {
    let hooks = HookServer::start();
    let data = TempDir::new("swml-prompt");
    let server = Server::start_in(&data.0, &[]);
    let document = json!({"sections": {"main": [
        {"prompt": {"play": "say:Enter two digits.", "max_digits": 2, "terminators": "#"}},
        {"request": {"url": hooks.url("/prompted"), "method": "POST",
                     "body": {"result": "${prompt_result}", "value": "${prompt_value}"}}},
        "hangup",
    ]}});
    server.put_app_with_hooks("prompt", "prompt", json!({"swml": document}), &hooks, None);
    // SIPp presses 2 and 9 as RFC 4733 events and expects our BYE.
    support::rtp::press_2_then_9(&server, "prompt");
    let prompted = hooks.wait_for("/prompted", 1, HOOK_WAIT)[0].json();
    assert_eq!(
        (prompted["result"].as_str(), prompted["value"].as_str()),
        (Some("match_digits"), Some("29")),
        "{prompted}"
    );
}

#[test]
fn the_seed_example_refers_baresip_and_the_next_document_sees_the_variables() {
    let target = Sipp::server("uas-answer.xml", 0).calls(1).timeout(Duration::from_secs(30)).spawn();
    let hooks = HookServer::start_with(|request| match request.route() {
        "/handle_sip_refer_result" => (200, json!({"version": "1.0.0", "sections": {"main": ["hangup"]}}).to_string()),
        _ => (200, "{}".into()),
    });
    let data = TempDir::new("swml-seed");
    let server = Server::start_in(&data.0, &[]);
    let to_uri = format!("sip:target@127.0.0.1:{}", target.port());
    // The seed's document in YAML; its `play` (media, which callwright does not carry) becomes a `set` of
    // the same text, which the next document then sees.
    let document = format!(
        "version: 1.0.0\nsections:\n  main:\n    - sip_refer:\n        to_uri: '{to_uri}'\n        status_url: '{status}'\n    - set:\n        said: 'Connected. The SIP refer result is ${{sip_refer_result}}'\n    - execute:\n        dest: '{next}'\n        params:\n          code: '${{sip_refer_response_code}}'\n",
        status = hooks.url("/status"),
        next = hooks.url("/handle_sip_refer_result"),
    );
    server.put_app_with_hooks("swml", "swml", json!({"swml": document}), &hooks, None);

    let baresip = Baresip::dial(&format!("sip:swml@{}", server.sip), Duration::from_secs(8));
    let status = hooks.wait_for("/status", 1, HOOK_WAIT)[0].json();
    assert_eq!(status["event_type"], "calling.call.refer", "{status}");
    assert!(status["event_channel"].as_str().is_some_and(|c| c.starts_with("swml:")), "{status}");
    assert!(status["timestamp"].as_f64().is_some(), "{status}");
    let params = &status["params"];
    assert_eq!(params["sip_refer_to"], to_uri.as_str(), "{status}");
    assert_eq!(params["state"], "success", "{status}");
    assert_eq!(params["sip_refer_response_code"], "202", "{status}");
    assert_eq!(params["sip_notify_response_code"], "200", "{status}");

    let next = hooks.wait_for("/handle_sip_refer_result", 1, HOOK_WAIT)[0].json();
    let vars = &next["vars"];
    assert_eq!(vars["sip_refer_to"], to_uri.as_str(), "{next}");
    assert_eq!(vars["sip_refer_result"], "success", "{next}");
    assert_eq!(vars["return_value"], "success", "{next}");
    assert_eq!(vars["sip_refer_response_code"], "202", "{next}");
    assert_eq!(vars["sip_refer_to_response_code"], "200", "{next}");
    assert_eq!(vars["said"], "Connected. The SIP refer result is success", "{next}");
    assert_eq!(next["params"]["code"], "202", "{next}");
    assert_eq!(next["call"]["to_number"], "swml", "{next}");
    assert_eq!(next["call"]["direction"], "inbound", "{next}");

    let log = baresip.wait(Duration::from_secs(15));
    target.wait().assert_all_succeeded(1);
    assert!(log.contains("REFER"), "baresip saw no REFER:\n{log}");
}

#[test]
fn control_methods_run_as_swml_defines_them() {
    let hooks = HookServer::start_with(|request| match request.route() {
        "/lookup" => (200, json!({"answer": 42, "echo": request.json()}).to_string()),
        _ => (200, "{}".into()),
    });
    let data = TempDir::new("swml-control");
    let server = Server::start_in(&data.0, &[]);
    let document = json!({"version": "1.0.0", "sections": {
        "main": [
            "answer",
            {"set": {"count": 0, "name": "callwright"}},
            {"label": "loop"},
            {"set": {"count": "${count + 1}"}},
            {"goto": {"label": "loop", "when": "count < 3"}},
            {"execute": {"dest": "greet", "params": {"who": "${name}"},
                         "on_return": [{"set": {"greeting": "${return_value}"}}]}},
            {"switch": {"variable": "count", "case": {"3": [{"set": {"switched": "three"}}]},
                        "default": [{"set": {"switched": "other"}}]}},
            {"cond": [{"when": "${greeting == 'hello callwright'}", "then": [{"set": {"cond": "yes"}}]},
                      {"else": [{"set": {"cond": "no"}}]}]},
            {"request": {"url": hooks.url("/lookup"), "method": "POST", "body": {"q": "${count * 2}"},
                         "save_variables": true}},
            {"set": {"looked_up": "${request_response.answer}", "sent": "${request_response.echo.q}"}},
            {"unset": "name"},
            {"sleep": 200},
            {"set": {"env": "${envs.region}", "caller": "${call.from_number}"}},
            {"request": {"url": hooks.url("/report"), "method": "POST", "body": {"vars": "${vars}"}}},
            "hangup",
        ],
        "greet": [{"return": "hello ${params.who}"}],
    }});
    server.put_app_with_hooks("control", "control", json!({"swml": document, "envs": {"region": "eu"}}), &hooks, None);

    server.call("control", "uac-callee-hangs-up.xml");
    let vars = hooks.wait_for("/report", 1, HOOK_WAIT)[0].json()["vars"].clone();
    assert_eq!(vars["count"], 3, "{vars}");
    assert_eq!(vars["greeting"], "hello callwright", "{vars}");
    assert_eq!(vars["switched"], "three", "{vars}");
    assert_eq!(vars["cond"], "yes", "{vars}");
    assert_eq!((vars["looked_up"].clone(), vars["sent"].clone()), (json!(42), json!(6)), "{vars}");
    assert_eq!(vars["request_result"], "success", "{vars}");
    assert_eq!(vars["request_response_code"], "200", "{vars}");
    assert!(vars.get("name").is_none(), "unset: {vars}");
    assert_eq!(vars["env"], "eu", "{vars}");
    assert_eq!(vars["caller"], "sipp", "{vars}");
}

#[test]
fn inline_execute_connect_and_transfer() {
    let target = Sipp::server("uas-answer-then-bye.xml", 0).calls(1).timeout(Duration::from_secs(30)).spawn();
    let hooks = HookServer::start();
    let data = TempDir::new("swml-connect");
    let server = Server::start_in(&data.0, &[]);
    let inline =
        json!({"version": "1.0.0", "sections": {"main": [{"set": {"inline": "ran"}}, {"return": "from inline"}]}});
    let document = json!({"version": "1.0.0", "sections": {
        "main": [
            {"execute": {"dest": inline}},
            {"set": {"inline_returned": "${return_value}"}},
            {"connect": {"to": format!("sip:target@127.0.0.1:{}", target.port()), "timeout": 10}},
            {"transfer": {"dest": "finish", "params": {"how": "transferred"}}},
            {"set": {"after_transfer": "must not run"}},
        ],
        "finish": [
            {"request": {"url": hooks.url("/report"), "method": "POST", "body": {"vars": "${vars}", "how": "${params.how}"}}},
            "hangup",
        ],
    }});
    server.put_app_with_hooks("connect", "connect", json!({"swml": document}), &hooks, None);

    // connect answers the caller with the target's answer; the target hangs up after 1 s; the document
    // goes on, transfers to `finish`, reports and hangs up.
    server.call("connect", "uac-callee-hangs-up.xml");
    target.wait().assert_all_succeeded(1);
    let report = hooks.wait_for("/report", 1, HOOK_WAIT)[0].json();
    let vars = &report["vars"];
    assert_eq!(vars["inline"], "ran", "{report}");
    assert_eq!(vars["inline_returned"], "from inline", "{report}");
    assert_eq!(vars["connect_result"], "connected", "{report}");
    assert!(vars.get("after_transfer").is_none(), "{report}");
    assert_eq!(report["how"], "transferred", "{report}");
}

#[test]
fn loops_are_bounded_and_bad_documents_end_the_call_cleanly() {
    let hooks = HookServer::start_with(|request| match request.route() {
        "/garbage" => (200, "- [ not: a document".into()),
        _ => (200, "{}".into()),
    });
    let data = TempDir::new("swml-bad");
    let server = Server::start_in(&data.0, &[]);
    // A goto without `max` jumps 100 times, then the document goes on.
    let looping = json!({"sections": {"main": [
        "answer", {"set": {"n": 0}}, {"label": "top"}, {"set": {"n": "${n + 1}"}}, {"goto": "top"},
        {"request": {"url": hooks.url("/after-loop"), "method": "POST", "body": {"n": "${n}"}}}, "hangup",
    ]}});
    server.put_app_with_hooks("loop", "loop", json!({"swml": looping}), &hooks, None);
    server.call("loop", "uac-callee-hangs-up.xml");
    assert_eq!(hooks.wait_for("/after-loop", 1, HOOK_WAIT)[0].json()["n"], 101);

    let cases = [
        ("media", json!({"swml": {"sections": {"main": [{"tap": {}}]}}}), "tap needs media"),
        ("nomain", json!({"swml": {"sections": {"other": []}}}), "needs a \"main\" section"),
        ("nolabel", json!({"swml": {"sections": {"main": [{"goto": "nowhere"}]}}}), "no label \"nowhere\""),
        ("unknown", json!({"swml": {"sections": {"main": [{"no_such_method": {}}]}}}), "no module provides verb"),
        ("garbage", json!({"swml_url": hooks.url("/garbage")}), "neither JSON nor YAML"),
        ("badargs", json!({"swml": {"sections": {"main": [{"sip_refer": {}}]}}}), "\"to_uri\" is required"),
        (
            "steps",
            json!({"swml": {"sections": {"main": [{"label": "top"}, {"goto": {"label": "top", "max": 20000}}]}}}),
            "ran more than 10000 steps",
        ),
    ];
    for (user, flow, expected) in cases {
        server.put_app_with_hooks(user, user, flow, &hooks, None);
        // The document fails before anything answered the call: 500, never a hanging call.
        server.call(user, "uac-rejected-500.xml");
        let log = server.log();
        assert!(log.contains(expected), "{user}: {expected:?} not logged");
    }
}
