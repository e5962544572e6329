//! Verbs end to end: jambonz apps (inline verb arrays and webhook apps served by a real HTTP server) run
//! by the built-in jambonz runner against SIPp callers, every verb dispatched to a verb module; custom
//! verbs uploaded while the server runs; the verb catalogue of the admin API.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::hooks::{HookRequest, HookServer};
use support::sipp::Sipp;
use support::{CUSTOM_VERB, LOOKUP_FLOW, Server, TRANSFER_VERBS, TempDir, VERB_SAMPLE, VERB_SAMPLE_V2};

/// How long a test waits for a hook.
const HOOK_WAIT: Duration = Duration::from_secs(20);

fn bodies(requests: &[HookRequest]) -> Vec<Value> {
    requests.iter().map(HookRequest::json).collect()
}

#[test]
fn a_jambonz_webhook_app_runs_its_verbs_and_the_action_hook_replaces_the_rest() {
    let hooks = HookServer::start_with(|request| match request.route() {
        // The call hook: transfer, then (never reached: the actionHook's verbs replace it) a pause.
        "/call" => (
            200,
            json!([
                {"verb": "sip:refer", "referTo": "sip:target@127.0.0.1:9", "actionHook": "/action",
                 "eventHook": "/event"},
                {"pause": {"length": 30}},
            ])
            .to_string(),
        ),
        "/action" => (
            200,
            json!([{"verb": "tag", "data": {"step": "after-refer"}}, {"redirect": {"actionHook": "/next"}}])
                .to_string(),
        ),
        "/next" => (200, json!([{"verb": "hangup"}]).to_string()),
        _ => (200, "{}".into()),
    });
    let data = TempDir::new("verbs-webhook");
    let server = Server::start_in(&data.0, &[]);
    let flow = json!({"webhook": {"url": hooks.url("/call"), "method": "POST"}, "status_hook": hooks.url("/status")});
    server.put_app_with_hooks("jambonz", "jambonz", flow, &hooks, None);

    // The transferee accepts the REFER, sends NOTIFY 100 and 200, then expects our BYE.
    server.call("jambonz", "uac-refer-accept.xml");

    let call_hook = hooks.wait_for("/call", 1, HOOK_WAIT)[0].json();
    assert_eq!(call_hook["call_status"], "trying", "{call_hook}");
    assert_eq!(call_hook["direction"], "inbound", "{call_hook}");
    assert_eq!(call_hook["to"], "jambonz", "{call_hook}");
    assert_eq!(call_hook["originating_sip_ip"], "127.0.0.1", "{call_hook}");
    assert_eq!(call_hook["sip"]["method"], "INVITE", "{call_hook}");
    assert!(
        call_hook["sip"]["headers"]["call-id"].as_str().is_some_and(|id| id == call_hook["call_id"]),
        "{call_hook}"
    );
    assert!(call_hook["sip"]["body"].as_str().is_some_and(|sdp| sdp.starts_with("v=0")), "{call_hook}");

    let action = hooks.wait_for("/action", 1, HOOK_WAIT)[0].json();
    assert_eq!(
        (action["refer_status"].as_u64(), action["final_referred_call_status"].as_u64()),
        (Some(202), Some(200))
    );
    assert_eq!(action["call_sid"], call_hook["call_sid"]);
    let events: Vec<Value> = bodies(&hooks.wait_for("/event", 2, HOOK_WAIT));
    assert_eq!(
        events,
        [
            json!({"event": "transfer-status", "call_status": "100"}),
            json!({"event": "transfer-status", "call_status": "200"})
        ]
    );
    // The actionHook's verbs ran: `tag`, then `redirect`, whose hook sees the tagged data.
    let next = hooks.wait_for("/next", 1, HOOK_WAIT)[0].json();
    assert_eq!(next["customer_data"], json!({"step": "after-refer"}), "{next}");
    let statuses: Vec<Value> =
        bodies(&hooks.wait_for("/status", 2, HOOK_WAIT)).iter().map(|s| s["call_status"].clone()).collect();
    assert_eq!(statuses, ["trying", "completed"]);
}

#[test]
fn inline_verbs_in_both_forms_run_in_order() {
    let hooks = HookServer::start();
    let data = TempDir::new("verbs-inline");
    let server = Server::start_in(&data.0, &[]);
    let verbs = json!([{"verb": "answer"}, {"pause": {"length": 0.5}}, {"verb": "hangup"}]);
    server.put_app_with_hooks(
        "hangs-up",
        "hangs-up",
        json!({"verbs": verbs, "status_hook": hooks.url("/status")}),
        &hooks,
        None,
    );
    let busy = json!({"verbs": [{"sip:decline": {"status": 486, "reason": "Busy Here"}}]});
    server.put_app_with_hooks("busy", "busy", busy, &hooks, None);

    let started = std::time::Instant::now();
    server.call("hangs-up", "uac-callee-hangs-up.xml");
    assert!(started.elapsed() >= Duration::from_millis(500), "the pause did not wait");
    let statuses = bodies(&hooks.wait_for("/status", 2, HOOK_WAIT));
    assert_eq!(
        (statuses[0]["call_status"].as_str(), statuses[1]["call_status"].as_str()),
        (Some("trying"), Some("completed"))
    );
    assert!(statuses[1].get("error").is_none(), "{}", statuses[1]);

    server.call("busy", "uac-busy.xml");
}

#[test]
fn sip_request_and_dial_verbs_in_a_jambonz_array() {
    let target = Sipp::server("uas-answer-then-bye.xml", 0).calls(1).timeout(Duration::from_secs(30)).spawn();
    let hooks = HookServer::start();
    let data = TempDir::new("verbs-request-dial");
    let server = Server::start_in(&data.0, &[]);
    let info = json!([
        {"verb": "answer"},
        {"verb": "sip:request", "method": "INFO", "body": "hello", "headers": {"Content-Type": "text/plain"},
         "actionHook": hooks.url("/request")},
        {"verb": "hangup"},
    ]);
    server.put_app_with_hooks("info", "info", json!({"verbs": info}), &hooks, None);
    let dial = json!([
        {"verb": "dial", "target": [{"type": "sip", "sipUri": format!("sip:target@127.0.0.1:{}", target.port())}],
         "callerId": "+15550001", "actionHook": hooks.url("/dial")},
        {"verb": "hangup"},
    ]);
    server.put_app_with_hooks("dial", "dial", json!({"verbs": dial}), &hooks, None);

    // The caller checks the INFO's body and content type, answers 200, then takes our BYE.
    server.call("info", "uac-answers-info.xml");
    let request = hooks.wait_for("/request", 1, HOOK_WAIT)[0].json();
    assert_eq!((request["result"].as_str(), request["sip_status"].as_u64()), (Some("success"), Some(200)), "{request}");
    assert_eq!(request["call_status"], "in-progress", "{request}");

    // The target answers the bridged call and hangs up after 1 s; then `hangup` ends the caller's call.
    server.call("dial", "uac-callee-hangs-up.xml");
    target.wait().assert_all_succeeded(1);
    let dialled = hooks.wait_for("/dial", 1, HOOK_WAIT)[0].json();
    assert_eq!(dialled["dial_call_status"], "completed", "{dialled}");
    assert_eq!(dialled["dial_sip_status"], 200, "{dialled}");
    assert!(dialled["dial_call_sid"].as_str().is_some_and(|sid| !sid.is_empty()), "{dialled}");
    assert!(dialled["dial_call_duration"].as_u64().is_some_and(|seconds| seconds <= 5), "{dialled}");
}

#[test]
fn a_dial_anchors_the_media_so_both_sides_hear_each_other_through_the_host() {
    let (callee_rtp, callee, callee_port) = support::rtp::media_callee(Duration::ZERO);
    let hooks = HookServer::start();
    let data = TempDir::new("verbs-dial-media");
    let server = Server::start_in(&data.0, &[]);
    let dial = json!([
        {"verb": "dial", "target": [{"type": "sip", "sipUri": format!("sip:callee@127.0.0.1:{callee_port}")}],
         "timeLimit": 3, "actionHook": hooks.url("/dial")},
    ]);
    server.put_app_with_hooks("dial", "dial", json!({"verbs": dial}), &hooks, None);
    let (caller_rtp, caller, _) =
        support::rtp::call_with_rtp_socket(&server, "dial", "uac-media-callee-hangs-up.xml", Duration::from_millis(2));
    let sockets = [&caller_rtp, &callee_rtp];
    let (heard, peers) =
        support::rtp::exchange_tones_with_peers(&sockets, &[1000.0, 600.0], 8000.0, Duration::from_secs(5));
    caller.wait().assert_all_succeeded(1);
    callee.wait().assert_all_succeeded(1);
    // Anchored: each side's packets come from a port of the server's, never from the other side.
    let addresses = [caller_rtp.local_addr().expect("addr"), callee_rtp.local_addr().expect("addr")];
    for (index, peer) in peers.iter().enumerate() {
        let peer = peer.unwrap_or_else(|| panic!("side {index} got no RTP"));
        assert!(!addresses.contains(&peer), "side {index} got RTP straight from {peer}: the media was not anchored");
    }
    // About 3 s bridged (timeLimit): the caller hears the callee's 600 Hz, the callee the caller's 1 kHz.
    let caller_hears = heard[0].iter().filter(|frame| support::rtp::tone_share(frame, 600.0, 8000.0) > 0.8).count();
    let callee_hears = heard[1].iter().filter(|frame| support::rtp::tone_share(frame, 1000.0, 8000.0) > 0.8).count();
    assert!(caller_hears > 100, "the caller heard the callee in {caller_hears} packets");
    assert!(callee_hears > 100, "the callee heard the caller in {callee_hears} packets");
    let dialled = hooks.wait_for("/dial", 1, HOOK_WAIT)[0].json();
    assert_eq!(dialled["dial_call_status"], "completed", "{dialled}");
}

#[test]
fn gather_collects_digits_pressed_during_its_prompt_and_times_out_on_silence() {
    let hooks = HookServer::start();
    let data = TempDir::new("verbs-gather");
    let server = Server::start_in(&data.0, &[]);
    let gather = json!([
        {"verb": "gather", "input": ["digits"], "numDigits": 2, "say": {"text": "Please enter two digits."},
         "actionHook": hooks.url("/gather")},
        {"verb": "hangup"},
    ]);
    server.put_app_with_hooks("gather", "gather", json!({"verbs": gather}), &hooks, None);
    // SIPp presses 2 (during the prompt, which stops) and 9 a second later as RFC 4733 events.
    support::rtp::press_2_then_9(&server, "gather");
    let gathered = hooks.wait_for("/gather", 1, HOOK_WAIT)[0].json();
    assert_eq!(
        (gathered["reason"].as_str(), gathered["digits"].as_str()),
        (Some("dtmfDetected"), Some("29")),
        "{gathered}"
    );

    let quiet = json!([
        {"verb": "gather", "input": ["digits", "speech"], "timeout": 1, "say": {"text": "Hello."},
         "actionHook": hooks.url("/quiet")},
        {"verb": "hangup"},
    ]);
    server.put_app_with_hooks("quiet", "quiet", json!({"verbs": quiet}), &hooks, None);
    let started = Instant::now();
    server.call("quiet", "uac-callee-hangs-up.xml");
    let timed_out = hooks.wait_for("/quiet", 1, HOOK_WAIT)[0].json();
    assert_eq!(timed_out["reason"], "timeout", "{timed_out}");
    assert!(timed_out.get("digits").is_none(), "{timed_out}");
    // The timer starts when the prompt ends: about 1 s of speech, then 1 s.
    assert!(started.elapsed() >= Duration::from_millis(1500), "timed out after {:?}", started.elapsed());
    assert!(server.log().contains("speech recognition is not built; collecting digits only"), "{}", server.log());
}

#[test]
fn a_bridged_caller_who_holds_stops_hearing_the_callee_and_is_heard_throughout() {
    let (callee_rtp, callee, callee_port) = support::rtp::media_callee(Duration::ZERO);
    let hooks = HookServer::start();
    let data = TempDir::new("verbs-dial-hold");
    let server = Server::start_in(&data.0, &[]);
    let dial = json!([
        {"verb": "dial", "target": [{"type": "sip", "sipUri": format!("sip:callee@127.0.0.1:{callee_port}")}],
         "timeLimit": 5, "actionHook": hooks.url("/dial")},
    ]);
    server.put_app_with_hooks("dial", "dial", json!({"verbs": dial}), &hooks, None);
    // The caller holds the call 1 s in, for 2 s (re-INVITE sendonly, then sendrecv), and keeps sending.
    let (caller_rtp, caller, _) =
        support::rtp::call_with_rtp_socket(&server, "dial", "uac-media-hold-resume.xml", Duration::from_millis(2));
    let sockets = [&caller_rtp, &callee_rtp];
    let heard = support::rtp::exchange_tones(&sockets, &[1000.0, 600.0], 8000.0, Duration::from_secs(7));
    caller.wait().assert_all_succeeded(1);
    callee.wait().assert_all_succeeded(1);
    let hears =
        |side: usize, hz: f64| heard[side].iter().filter(|f| support::rtp::tone_share(f, hz, 8000.0) > 0.8).count();
    // 5 s bridged: the caller hears the callee for about 3 s of them (not while holding), the callee the
    // caller for about all 5.
    let (caller_hears, callee_hears) = (hears(0, 600.0), hears(1, 1000.0));
    assert!((100..=200).contains(&caller_hears), "the caller heard the callee in {caller_hears} packets");
    assert!(callee_hears > 200, "the callee heard the caller in {callee_hears} packets");
    let log = server.log();
    let held = log.find("media renegotiated direction=RecvOnly").unwrap_or_else(|| panic!("no hold:\n{log}"));
    assert!(log[held..].contains("media renegotiated direction=SendRecv"), "no resume:\n{log}");
}

#[test]
fn a_caller_answered_before_the_dial_hears_ring_back_until_the_callee_answers() {
    // The callee rings for 2 s before it answers.
    let (socket, callee, callee_port) = support::rtp::media_callee(Duration::from_secs(2));
    let hooks = HookServer::start();
    let data = TempDir::new("verbs-dial-ringback");
    let server = Server::start_in(&data.0, &[]);
    let dial = json!([
        {"verb": "dial", "target": [{"type": "sip", "sipUri": format!("sip:callee@127.0.0.1:{callee_port}")}],
         "timeLimit": 2, "actionHook": hooks.url("/dial")},
    ]);
    server.put_app_with_hooks("dial", "dial", json!({"verbs": dial}), &hooks, None);
    let (caller_rtp, caller, _) =
        support::rtp::call_with_rtp_socket(&server, "dial", "uac-media-callee-hangs-up.xml", Duration::from_millis(2));
    let sockets = [&caller_rtp, &socket];
    let heard = support::rtp::exchange_tones(&sockets, &[1000.0, 600.0], 8000.0, Duration::from_secs(5));
    caller.wait().assert_all_succeeded(1);
    callee.wait().assert_all_succeeded(1);
    let tone = |frame: &Vec<i16>, hz| support::rtp::tone_share(frame, hz, 8000.0);
    // US ring-back (440 + 480 Hz, 2 s on): about the 2 s the callee rang, then the callee's 600 Hz.
    let ringing = heard[0].iter().filter(|frame| tone(frame, 440.0) > 0.3 && tone(frame, 480.0) > 0.3).count();
    let callee_heard = heard[0].iter().position(|frame| tone(frame, 600.0) > 0.8).expect("the callee was heard");
    assert!((70..=110).contains(&ringing), "{ringing} frames of ring-back");
    assert!(heard[0][..callee_heard].iter().filter(|frame| tone(frame, 440.0) > 0.3).count() >= 70, "ring-back first");
    assert!(heard[0][callee_heard..].iter().all(|frame| tone(frame, 480.0) < 0.3), "no ring-back once bridged");
}

#[test]
fn a_caller_who_cancels_while_dial_rings_hears_the_ringing_and_cancels_the_callee_at_once() {
    // The callee rings and never answers; it fails unless our CANCEL comes within 3 s of its 180.
    let callee = Sipp::server("uas-rings-until-cancel.xml", 0).calls(1).timeout(Duration::from_secs(30)).spawn();
    let hooks = HookServer::start();
    let data = TempDir::new("verbs-dial-cancel");
    let server = Server::start_in(&data.0, &[]);
    let dial = json!([
        {"verb": "dial", "target": [{"type": "sip", "sipUri": format!("sip:callee@127.0.0.1:{}", callee.port())}],
         "timeout": 20, "answerOnBridge": true, "actionHook": hooks.url("/dial")},
    ]);
    server.put_app_with_hooks("dial", "ringing", json!({"verbs": dial}), &hooks, None);

    // The caller needs the callee's 180 relayed, then cancels 300 ms later and expects 200 and 487.
    let started = Instant::now();
    server.call("ringing", "uac-cancel-before-answer.xml");
    callee.wait().assert_all_succeeded(1);
    assert!(started.elapsed() < Duration::from_secs(8), "the callee was cancelled after {:?}", started.elapsed());
    let dialled = hooks.wait_for("/dial", 1, HOOK_WAIT)[0].json();
    assert_eq!(dialled["dial_call_status"], "canceled", "{dialled}");
    assert_eq!(dialled["dial_sip_status"], 487, "{dialled}");
}

#[test]
fn a_dial_bridge_outlasts_a_hundred_cpu_budgets_and_either_side_hanging_up_ends_both() {
    // With a 200 ms CPU budget, a bridge charged for its waits would be cut within a second or two.
    const TALK: Duration = Duration::from_secs(20);
    let talk_ms = TALK.as_millis().to_string();
    let holding_callee = Sipp::server("uas-answer.xml", 0).calls(1).timeout(Duration::from_secs(60)).spawn();
    let hanging_up_callee = Sipp::server("uas-answer-talk-bye.xml", 0)
        .arg("-d")
        .arg(&talk_ms)
        .calls(1)
        .timeout(Duration::from_secs(60))
        .spawn();
    let hooks = HookServer::start();
    let data = TempDir::new("verbs-dial-bridge");
    let server = Server::start_in(&data.0, &["--cpu-per-call-ms", "200"]);
    for (app, callee) in [("caller-ends", &holding_callee), ("callee-ends", &hanging_up_callee)] {
        let dial = json!([
            {"verb": "dial", "target": [{"type": "sip", "sipUri": format!("sip:callee@127.0.0.1:{}", callee.port())}],
             "actionHook": hooks.url(&format!("/{app}"))},
        ]);
        server.put_app_with_hooks(app, app, json!({"verbs": dial}), &hooks, None);
    }

    let started = Instant::now();
    std::thread::scope(|scope| {
        // The caller talks for 20 s and hangs up: a BYE from us meanwhile fails it, and the callee must get ours.
        let caller_ends = scope.spawn(|| {
            Sipp::client("uac-talks-then-hangs-up.xml", server.sip)
                .service("caller-ends")
                .arg("-d")
                .arg(&talk_ms)
                .timeout(Duration::from_secs(60))
                .run()
        });
        // The callee talks for 20 s and hangs up: the caller must get our BYE then, not before.
        let callee_ends = scope.spawn(|| {
            let outcome = Sipp::client("uac-callee-hangs-up.xml", server.sip)
                .service("callee-ends")
                .timeout(Duration::from_secs(60))
                .run();
            (outcome, started.elapsed())
        });
        caller_ends.join().expect("caller thread").assert_all_succeeded(1);
        let (outcome, hung_up_after) = callee_ends.join().expect("caller thread");
        outcome.assert_all_succeeded(1);
        assert!(hung_up_after >= TALK, "the caller was hung up after {hung_up_after:?}, before the callee hung up");
    });
    holding_callee.wait().assert_all_succeeded(1);
    hanging_up_callee.wait().assert_all_succeeded(1);
    for app in ["caller-ends", "callee-ends"] {
        let dialled = hooks.wait_for(&format!("/{app}"), 1, HOOK_WAIT)[0].json();
        assert_eq!(dialled["dial_call_status"], "completed", "{app}: {dialled}");
        assert!(dialled["dial_call_duration"].as_u64().is_some_and(|seconds| seconds >= 19), "{app}: {dialled}");
    }
    assert!(!server.log().contains("CPU budget"), "a guest was stopped for CPU:\n{}", server.log());
}

#[test]
fn config_sends_routine_requests_to_its_hook() {
    let hooks = HookServer::start();
    let data = TempDir::new("verbs-config");
    let server = Server::start_in(&data.0, &[]);
    let verbs = json!([
        {"config": {"sipRequestWithinDialogHook": hooks.url("/sip-request"), "recognizer": {"vendor": "google"}}},
        {"verb": "answer"},
        {"pause": {"length": 2}},
        {"verb": "hangup"},
    ]);
    server.put_app_with_hooks("config", "config", json!({"verbs": verbs}), &hooks, None);
    // The same hook, reset before the call is answered: nothing is posted to it.
    let reset = json!([
        {"config": {"sipRequestWithinDialogHook": hooks.url("/reset-hook")}},
        {"config": {"reset": ["sipRequestWithinDialogHook"]}},
        {"verb": "answer"},
        {"pause": {"length": 2}},
        {"verb": "hangup"},
    ]);
    server.put_app_with_hooks("reset", "reset", json!({"verbs": reset}), &hooks, None);

    server.call("reset", "uac-sends-info.xml");
    // The caller sends an INFO during the pause; it is answered 200 and posted to the hook.
    server.call("config", "uac-sends-info.xml");
    let posted = hooks.wait_for("/sip-request", 1, HOOK_WAIT)[0].json();
    assert_eq!(posted["sip_method"], "INFO", "{posted}");
    assert!(posted["sip_body"].as_str().is_some_and(|body| body.contains("Signal=5")), "{posted}");
    assert_eq!(posted["sip_headers"]["content-type"], "application/dtmf-relay", "{posted}");
    assert!(posted["call_sid"].as_str().is_some_and(|sid| !sid.is_empty()), "{posted}");
    assert!(server.log().contains(r#"config: ["recognizer"] are not built"#), "the ignored settings are logged");
    // The reset call's INFO came first; had it been posted, it would have arrived before this one.
    assert!(hooks.requests().iter().all(|r| r.route() != "/reset-hook"), "posted after the reset");
}

#[test]
fn a_call_that_runs_out_of_time_inside_a_verb_is_still_hung_up() {
    let hooks = HookServer::start();
    let data = TempDir::new("verbs-max-duration");
    let config = data.0.with_extension("toml");
    std::fs::write(&config, "max_call_duration_s = 2\n").expect("write the config file");
    let server = Server::start_in(&data.0, &["--config", config.to_str().expect("UTF-8 path")]);
    // The verb holds the call when its 2 s run out: the host must still end it with a BYE.
    let verbs = json!([{"verb": "answer"}, {"pause": {"length": 60}}]);
    server.put_app_with_hooks("long", "long", json!({"verbs": verbs}), &hooks, None);
    let started = std::time::Instant::now();
    server.call("long", "uac-callee-hangs-up.xml");
    assert!(started.elapsed() < Duration::from_secs(8), "hung up after {:?}", started.elapsed());
    let _ = std::fs::remove_file(config);
}

#[test]
fn bad_documents_end_the_call_cleanly_and_tell_the_status_hook() {
    let hooks = HookServer::start_with(|request| match request.route() {
        "/garbage" => (200, "this is not JSON".into()),
        "/slow" => {
            // Longer than the hook timeout (10 s).
            std::thread::sleep(Duration::from_secs(12));
            (200, "[]".into())
        }
        "/object" => (200, json!({"verb": "hangup"}).to_string()),
        _ => (200, "{}".into()),
    });
    let data = TempDir::new("verbs-bad");
    let server = Server::start_in(&data.0, &[]);
    let cases = [
        ("unknown", json!({"verbs": [{"verb": "no:such-verb"}]}), r#"no module provides verb \"no:such-verb\""#),
        (
            "schema",
            json!({"verbs": [{"verb": "sip:decline", "status": 200}]}),
            r#"sip:decline: \"status\" must be at least 300"#,
        ),
        ("missing", json!({"verbs": [{"pause": {}}]}), r#"pause: \"length\" is required"#),
        ("media", json!({"verbs": [{"transcribe": {}}]}), r#"(\"transcribe\") needs media"#),
        ("shape", json!({"verbs": [{"pause": 3}]}), r#"a verb is {\"verb\": \"<name>\""#),
        ("garbage", json!({"webhook": hooks.url("/garbage")}), "answered with something that is not JSON"),
        ("object", json!({"webhook": hooks.url("/object")}), "must be a JSON array of verbs, not an object"),
        ("slow", json!({"webhook": hooks.url("/slow")}), "Timeout"),
    ];
    for (user, flow, _) in &cases {
        let mut flow = flow.clone();
        flow["status_hook"] = json!(hooks.url(&format!("/status/{user}")));
        server.put_app_with_hooks(user, user, flow, &hooks, None);
    }
    for (user, _, expected) in &cases {
        // Nothing answered the call: it is rejected with 500 (the app failed), never left hanging.
        server.call(user, "uac-rejected-500.xml");
        let statuses = bodies(&hooks.wait_for(&format!("/status/{user}"), 2, HOOK_WAIT));
        assert_eq!(statuses[1]["call_status"], "failed", "{user}: {}", statuses[1]);
        let error = statuses[1]["error"].to_string();
        assert!(error.contains(expected), "{user}: expected {expected:?} in {error}");
    }
    assert!(server.log().contains("no:such-verb"), "the error is logged");
}

#[test]
fn a_custom_verb_uploaded_while_running_serves_the_next_call_and_a_replacement_spares_running_calls() {
    let hooks = HookServer::start();
    let data = TempDir::new("verbs-custom");
    let server = Server::start_in(&data.0, &[]);
    let report = json!({"verb": "sample:report", "hook": hooks.url("/report")});
    let verbs = json!([report, {"verb": "answer"}, {"pause": {"length": 2}}, report, {"verb": "hangup"}]);
    server.put_app_with_hooks(
        "custom",
        "custom",
        json!({"verbs": verbs, "status_hook": hooks.url("/status")}),
        &hooks,
        None,
    );

    // Before the upload the verb does not exist.
    server.call("custom", "uac-rejected-500.xml");
    let failed = hooks.wait_for("/status", 2, HOOK_WAIT)[1].json();
    assert!(failed["error"].as_str().is_some_and(|e| e.contains("sample:report")), "{failed}");

    server.deploy("sample", VERB_SAMPLE).assert_status(201);
    let first =
        Sipp::client("uac-callee-hangs-up.xml", server.sip).service("custom").timeout(Duration::from_secs(30)).spawn();
    hooks.wait_for("/report", 1, HOOK_WAIT);
    // Replaced while the first call runs: the first call keeps version 1, the next one gets version 2.
    server.deploy("sample", VERB_SAMPLE_V2).assert_status(201);
    server.call("custom", "uac-callee-hangs-up.xml");
    first.wait().assert_all_succeeded(1);

    let reports = bodies(&hooks.wait_for("/report", 4, HOOK_WAIT));
    let first_call = &reports[0]["call"];
    let versions =
        |call: &Value| reports.iter().filter(|r| &r["call"] == call).map(|r| r["version"].clone()).collect::<Vec<_>>();
    assert_eq!(versions(first_call), [1, 1], "{reports:?}");
    let second_call = &reports.iter().find(|r| &r["call"] != first_call).expect("a second call")["call"];
    assert_eq!(versions(second_call), [2, 2], "{reports:?}");
}

#[test]
fn the_custom_verb_example_looks_the_number_up_and_refers_through_the_built_in_verb() {
    let hooks = HookServer::start_with(|request| match request.route() {
        "/lookup" => (200, json!({"referTo": "sip:sales@127.0.0.1:9"}).to_string()),
        _ => (200, "{}".into()),
    });
    let data = TempDir::new("verbs-lookup");
    let server = Server::start_in(&data.0, &[]);
    server.deploy("lookup", CUSTOM_VERB).assert_status(201);
    let verbs = json!([{"verb": "lookup:refer", "lookupHook": hooks.url("/lookup"), "actionHook": hooks.url("/action"),
                        "eventHook": hooks.url("/event")}]);
    server.put_app_with_hooks("lookup", "4000", json!({"verbs": verbs}), &hooks, None);
    // The same verb as an SWML method.
    let swml = json!({"sections": {"main": [
        {"lookup:refer": {"lookupHook": hooks.url("/lookup"), "actionHook": hooks.url("/swml-action")}},
    ]}});
    server.put_app_with_hooks("lookup-swml", "4001", json!({"swml": swml}), &hooks, None);
    // And from a Rust flow (the lookup-flow example).
    server.deploy("lookup-flow", LOOKUP_FLOW).assert_status(201);
    let rust_flow = json!({"module": "lookup-flow",
                           "config": {"lookup_hook": hooks.url("/lookup"), "action_hook": hooks.url("/rust-action")}});
    server.put_app_with_hooks("lookup-rust", "4002", rust_flow, &hooks, None);

    let referred = |path: &str| {
        let action = hooks.wait_for(path, 1, HOOK_WAIT)[0].json();
        (action["refer_status"].as_u64(), action["final_referred_call_status"].as_u64())
    };
    server.call("4001", "uac-refer-accept.xml");
    assert_eq!(referred("/swml-action"), (Some(202), Some(200)));
    server.call("4002", "uac-refer-accept.xml");
    assert_eq!(referred("/rust-action"), (Some(202), Some(200)));
    server.call("4000", "uac-refer-accept.xml");
    assert_eq!(referred("/action"), (Some(202), Some(200)));

    let numbers: Vec<Value> =
        hooks.wait_for("/lookup", 3, HOOK_WAIT).iter().map(|r| r.json()["number"].clone()).collect();
    assert_eq!(numbers, ["4001", "4002", "4000"]);
    assert_eq!(hooks.wait_for("/event", 2, HOOK_WAIT).len(), 2);
    assert!(server.log().contains("lookup:refer: 4000 goes to sip:sales@127.0.0.1:9"), "the verb logged its choice");
}

#[test]
fn a_verb_that_runs_itself_stops_at_the_nesting_limit() {
    let hooks = HookServer::start();
    let data = TempDir::new("verbs-nesting");
    let server = Server::start_in(&data.0, &[]);
    server.deploy("sample", VERB_SAMPLE).assert_status(201);
    let flow = json!({"verbs": [{"verb": "sample:recurse"}], "status_hook": hooks.url("/status")});
    server.put_app_with_hooks("recurse", "recurse", flow, &hooks, None);
    server.call("recurse", "uac-rejected-500.xml");
    let failed = hooks.wait_for("/status", 2, HOOK_WAIT)[1].json();
    assert!(failed["error"].as_str().is_some_and(|e| e.contains("verbs nest deeper than 2")), "{failed}");
}

#[test]
fn a_calls_memory_limit_holds_for_its_flow_and_nested_verbs_together() {
    let hooks = HookServer::start();
    let data = TempDir::new("verbs-memory");
    let server = Server::start_in(&data.0, &["--memory-per-call-mb", "24"]);
    server.deploy("sample", VERB_SAMPLE).assert_status(201);
    let decline = json!({"verb": "sip:decline", "status": 486});
    // One verb holding 16 MiB fits the call's 24 MiB.
    let alone = json!({"verbs": [{"verb": "sample:hoard", "mib": 16}, decline], "status_hook": hooks.url("/alone")});
    server.put_app_with_hooks("alone", "alone", alone, &hooks, None);
    server.call("alone", "uac-busy.xml");
    // Two verbs holding 12 MiB each at once do not, though each alone is under the limit.
    let nested = json!({"mib": 12, "then": {"verb": "sample:hoard", "args": {"mib": 12}}});
    let together = json!({"verbs": [{"verb": "sample:hoard", "mib": 12, "then": nested["then"]}, decline],
                          "status_hook": hooks.url("/together")});
    server.put_app_with_hooks("together", "together", together, &hooks, None);
    server.call("together", "uac-rejected-500.xml");
    let failed = hooks.wait_for("/together", 2, HOOK_WAIT)[1].json();
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("over the limit of 25165824 bytes per call"), "{failed}");
}

#[test]
fn a_call_a_verb_places_ends_with_the_verb() {
    let target = Sipp::server("uas-answer.xml", 0).calls(1).timeout(Duration::from_secs(30)).spawn();
    let hooks = HookServer::start();
    let data = TempDir::new("verbs-placed");
    let server = Server::start_in(&data.0, &[]);
    server.deploy("sample", VERB_SAMPLE).assert_status(201);
    let target_uri = format!("sip:target@127.0.0.1:{}", target.port());
    let verbs = json!([{"verb": "answer"}, {"verb": "sample:dial", "target": target_uri}, {"pause": {"length": 3}}]);
    server.put_app_with_hooks("placed", "placed", json!({"verbs": verbs}), &hooks, None);
    let started = std::time::Instant::now();
    // The target answers, and gets its BYE when the verb returns, long before the caller's call ends.
    let caller =
        Sipp::client("uac-callee-hangs-up.xml", server.sip).service("placed").timeout(Duration::from_secs(30)).spawn();
    target.wait().assert_all_succeeded(1);
    assert!(started.elapsed() < Duration::from_secs(3), "the placed call lasted {:?}", started.elapsed());
    caller.wait().assert_all_succeeded(1);
}

#[test]
fn the_verb_catalogue_lists_built_ins_and_a_users_module_takes_over_a_verb() {
    let data = TempDir::new("verbs-catalogue");
    let server = Server::start_in(&data.0, &[]);
    let catalogue =
        |server: &Server| -> Value { serde_json::from_str(&server.api("GET", "/v1/verbs", b"").body).unwrap() };
    let verbs = catalogue(&server);
    for (verb, module) in [
        ("answer", "builtin-core"),
        ("dial", "builtin-core"),
        ("sip:refer", "builtin-transfer"),
        ("sip_refer", "builtin-transfer"),
    ] {
        assert_eq!(verbs[verb]["module"], module, "{verb}: {verbs}");
        assert_eq!(verbs[verb]["builtin"], true);
    }
    assert_eq!(verbs["sip:refer"]["schema"]["required"], json!(["referTo"]));

    // Built-in modules can be neither replaced nor deleted.
    let refused = server.deploy("builtin-transfer", VERB_SAMPLE);
    refused.assert_status(400);
    assert!(refused.body.contains("reserved for the built-in modules"), "{}", refused.body);
    server.api("DELETE", "/v1/modules/builtin-core", b"").assert_status(403);

    // A module the user uploads wins over the built-in one for every app.
    server.deploy("my-transfer", TRANSFER_VERBS).assert_status(201);
    let verbs = catalogue(&server);
    assert_eq!(verbs["sip:refer"]["module"], "my-transfer", "{verbs}");
    assert_eq!(verbs["sip:refer"]["modules"], json!(["builtin-transfer", "my-transfer"]));

    // An app pins a verb only to a module that has it.
    let pinned = json!({"flow": {"verbs": []}, "verbs": {"sip:refer": "no-such-module"}});
    let refused = server.put_app("pinned", &pinned.to_string());
    refused.assert_status(400);
    assert!(refused.body.contains("verbs.sip:refer"), "{}", refused.body);
    let pinned = json!({"flow": {"verbs": []}, "verbs": {"sip:refer": "builtin-transfer"}});
    server.put_app("pinned", &pinned.to_string()).assert_status(201);
    let stored: Value = serde_json::from_str(&server.api("GET", "/v1/apps/pinned", b"").body).unwrap();
    assert_eq!(stored["flow"], json!({"module": "builtin-jambonz", "config": {"verbs": []}}), "{stored}");
}
