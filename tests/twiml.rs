//! TwiML end to end, run by the built-in TwiML runner: a real HTTP server serves the TwiML and records
//! Twilio's request parameters; SIPp plays the caller, the transferee and the dialled party.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use support::baresip::Baresip;
use support::hooks::{HookRequest, HookServer};
use support::sipp::Sipp;
use support::{Server, TempDir};

/// How long a test waits for a request.
const HOOK_WAIT: Duration = Duration::from_secs(20);

/// The app's secret: Twilio's auth token, which signs every request.
const AUTH_TOKEN: &str = "test-twilio-auth-token";

fn put_app(server: &Server, user: &str, hooks: &HookServer, path: &str) {
    server.put_app_with_hooks(user, user, json!({"twiml_url": hooks.url(path)}), hooks, Some(AUTH_TOKEN));
}

/// The form parameters of a request: its body for a POST, its query for a GET.
fn params(request: &HookRequest) -> HashMap<String, String> {
    let encoded = if request.method == "GET" {
        request.path.split_once('?').map(|(_, query)| query.to_string()).unwrap_or_default()
    } else {
        assert_eq!(request.header("Content-Type"), Some("application/x-www-form-urlencoded"), "{request:?}");
        request.text()
    };
    encoded
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

/// Checks `X-Twilio-Signature` as Twilio's SDKs do: over the URL and the sorted POST parameters.
fn assert_signed(request: &HookRequest, url: &str) {
    let params: Vec<(String, String)> =
        if request.method == "GET" { Vec::new() } else { params(request).into_iter().collect() };
    let expected = callwright_host::hooks::twilio_signature(AUTH_TOKEN, url, &params);
    assert_eq!(request.header("X-Twilio-Signature"), Some(expected.as_str()), "{request:?}");
    assert!(request.header("Jambonz-Signature").is_none(), "{request:?}");
}

fn decode(text: &str) -> String {
    let bytes = text.replace('+', " ").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn twiml(body: &str) -> (u16, String) {
    (200, format!(r#"<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>"#))
}

#[test]
fn refer_reports_twilios_parameters_to_the_action_and_its_twiml_runs() {
    let hooks = HookServer::start_with(|request| match request.route() {
        "/voice" => twiml(r#"<Refer action="/refer-done"><Sip>sip:target@127.0.0.1:9</Sip></Refer><Say>never</Say>"#),
        "/refer-done" => twiml(r#"<Pause length="0.2"/><Hangup/>"#),
        _ => (404, String::new()),
    });
    let data = TempDir::new("twiml-refer");
    let server = Server::start_in(&data.0, &[]);
    put_app(&server, "twiml", &hooks, "/voice");

    server.call("twiml", "uac-refer-accept.xml");
    let voice_request = &hooks.wait_for("/voice", 1, HOOK_WAIT)[0];
    assert_signed(voice_request, &hooks.url("/voice"));
    let voice = params(voice_request);
    assert_eq!(voice["CallStatus"], "ringing", "{voice:?}");
    assert_eq!(voice["Direction"], "inbound");
    assert_eq!(voice["ApiVersion"], "2010-04-01");
    assert!(voice["From"].starts_with("sip:sipp@"), "{voice:?}");
    assert!(voice["To"].starts_with("sip:twiml@"), "{voice:?}");
    assert!(!voice["CallSid"].is_empty() && !voice["SipCallId"].is_empty(), "{voice:?}");
    let done_request = &hooks.wait_for("/refer-done", 1, HOOK_WAIT)[0];
    assert_signed(done_request, &hooks.url("/refer-done"));
    let done = params(done_request);
    assert_eq!(done["ReferCallStatus"], "in-progress", "{done:?}");
    assert_eq!(done["ReferSipResponseCode"], "202", "{done:?}");
    assert_eq!(done["NotifySipResponseCode"], "200", "{done:?}");
    assert_eq!(done["CallStatus"], "in-progress", "{done:?}");
    assert_eq!(done["CallSid"], voice["CallSid"]);
}

#[test]
fn reject_redirect_and_hangup() {
    let hooks = HookServer::start_with(|request| match request.route() {
        "/busy" => twiml(r#"<Reject reason="busy"/>"#),
        "/rejected" => twiml("<Reject/>"),
        "/redirect" => twiml(r#"<Redirect method="GET">/next</Redirect>"#),
        "/next" => twiml("<Pause length=\"0.3\"/><Hangup/>"),
        _ => (404, String::new()),
    });
    let data = TempDir::new("twiml-basic");
    let server = Server::start_in(&data.0, &[]);
    put_app(&server, "busy", &hooks, "/busy");
    put_app(&server, "redirect", &hooks, "/redirect");

    // Fetched with GET when the app asks for it; a <Reject> without a reason is 603.
    let rejected = json!({"twiml_url": hooks.url("/rejected"), "twiml_method": "GET"});
    server.put_app_with_hooks("rejected", "rejected", rejected, &hooks, Some(AUTH_TOKEN));

    server.call("busy", "uac-busy.xml");
    server.call("rejected", "uac-rejected-603.xml");
    let fetched = &hooks.wait_for("/rejected", 1, HOOK_WAIT)[0];
    assert_eq!(fetched.method, "GET");
    assert_eq!(params(fetched)["CallStatus"], "ringing");
    assert_signed(fetched, &hooks.url(&fetched.path));
    server.call("redirect", "uac-callee-hangs-up.xml");
    let next = &hooks.wait_for("/next", 1, HOOK_WAIT)[0];
    assert_eq!(next.method, "GET");
    assert_signed(next, &hooks.url(&next.path));
    assert_eq!(params(next)["CallStatus"], "in-progress");
}

#[test]
fn dial_bridges_a_sip_target_and_reports_the_dial_status() {
    let target = Sipp::server("uas-answer-then-bye.xml", 0).calls(1).timeout(Duration::from_secs(30)).spawn();
    let port = target.port();
    let hooks = HookServer::start_with(move |request| match request.route() {
        "/dial" => twiml(&format!(r#"<Dial action="/dial-done"><Sip>sip:target@127.0.0.1:{port}</Sip></Dial>"#)),
        "/dial-done" => twiml("<Hangup/>"),
        _ => (404, String::new()),
    });
    let data = TempDir::new("twiml-dial");
    let server = Server::start_in(&data.0, &[]);
    put_app(&server, "dial", &hooks, "/dial");

    // The target answers, hangs up after 1 s; the action's <Hangup/> then ends the caller's call.
    server.call("dial", "uac-callee-hangs-up.xml");
    target.wait().assert_all_succeeded(1);
    let done = params(&hooks.wait_for("/dial-done", 1, HOOK_WAIT)[0]);
    assert_eq!(done["DialCallStatus"], "completed", "{done:?}");
    assert_eq!(done["DialSipResponseCode"], "200", "{done:?}");
    assert!(!done["DialCallSid"].is_empty(), "{done:?}");
}

#[test]
fn gather_sends_the_digits_to_its_action_and_a_silent_caller_falls_through() {
    let hooks = HookServer::start_with(|request| match request.route() {
        "/voice" => {
            twiml(r#"<Gather numDigits="2" action="/digits"><Say>Enter two digits.</Say></Gather><Say>Never.</Say>"#)
        }
        "/digits" => twiml("<Hangup/>"),
        "/quiet" => twiml(r#"<Gather timeout="1"><Say>Hello.</Say></Gather><Hangup/>"#),
        _ => (404, String::new()),
    });
    let data = TempDir::new("twiml-gather");
    let server = Server::start_in(&data.0, &[]);
    put_app(&server, "gather", &hooks, "/voice");
    // SIPp presses 2 and 9 as RFC 4733 events and expects our BYE (the action's <Hangup/>).
    support::rtp::press_2_then_9(&server, "gather");
    let digits = params(&hooks.wait_for("/digits", 1, HOOK_WAIT)[0]);
    assert_eq!(digits["Digits"], "29", "{digits:?}");
    // Nothing pressed: Twilio goes on with the next verb, and the action is not requested.
    put_app(&server, "quiet", &hooks, "/quiet");
    server.call("quiet", "uac-callee-hangs-up.xml");
    assert_eq!(hooks.requests().iter().filter(|r| r.route() == "/quiet").count(), 1);
}

#[test]
fn record_leaves_a_voicemail_the_action_can_fetch_and_a_hang_up_still_reaches_the_action() {
    let hooks = HookServer::start_with(|request| match request.route() {
        "/voicemail" => twiml(r#"<Say>Leave a message.</Say><Record maxLength="2" action="/recorded"/>"#),
        "/recorded" | "/after-hangup" => twiml("<Hangup/>"),
        "/hangs-up" => twiml(r#"<Record maxLength="30" timeout="0" action="/after-hangup"/><Say>never</Say>"#),
        _ => (404, String::new()),
    });
    let data = TempDir::new("twiml-record");
    let server = Server::start_in(&data.0, &[]);
    put_app(&server, "voicemail", &hooks, "/voicemail");
    put_app(&server, "hangs-up", &hooks, "/hangs-up");

    // baresip sends its 440 Hz tone for 2 s of recording; the action's <Hangup/> ends the call.
    let baresip = Baresip::dial(&format!("sip:voicemail@{}", server.sip), Duration::from_secs(10));
    let recorded = params(&hooks.wait_for("/recorded", 1, HOOK_WAIT)[0]);
    baresip.wait(Duration::from_secs(15));
    assert_eq!((recorded["RecordingDuration"].as_str(), recorded["Digits"].as_str()), ("2", ""), "{recorded:?}");
    let url = &recorded["RecordingUrl"];
    let path = url.split_once("/v1/").map(|(_, rest)| format!("/v1/{rest}")).unwrap_or_else(|| panic!("{url}"));
    let wav = server.api("GET", &path, b"");
    wav.assert_status(200);
    let data_at = wav.bytes.windows(4).position(|w| w == b"data").expect("a data chunk") + 8;
    let samples: Vec<i16> = wav.bytes[data_at..].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    let toned = samples.chunks(160).filter(|frame| support::rtp::tone_share(frame, 440.0, 8000.0) > 0.8).count();
    assert!(toned >= 80, "{toned} of 100 frames hold baresip's tone");

    // A caller who hangs up while recording: the action still learns of the message.
    let baresip = Baresip::dial(&format!("sip:hangs-up@{}", server.sip), Duration::from_secs(3));
    let after = params(&hooks.wait_for("/after-hangup", 1, HOOK_WAIT)[0]);
    baresip.wait(Duration::from_secs(10));
    assert_eq!(after["Digits"], "hangup", "{after:?}");
    let seconds: u64 = after["RecordingDuration"].parse().expect("a number");
    assert!((1..=4).contains(&seconds), "{after:?}");
}

#[test]
fn media_verbs_and_bad_twiml_end_the_call_cleanly() {
    let hooks = HookServer::start_with(|request| match request.route() {
        "/stream" => twiml("<Start><Stream url=\"wss://example.com/x\"/></Start>"),
        "/garbage" => (200, "this is not XML".into()),
        "/number" => twiml("<Dial><Number>+15551234567</Number></Dial>"),
        _ => (404, String::new()),
    });
    let data = TempDir::new("twiml-bad");
    let server = Server::start_in(&data.0, &[]);
    for (user, expected) in [
        ("stream", "<Start>: needs media"),
        ("garbage", "the TwiML is not XML"),
        ("number", "only <Sip> targets can be dialled"),
    ] {
        put_app(&server, user, &hooks, &format!("/{user}"));
        server.call(user, "uac-rejected-500.xml");
        assert!(server.log().contains(expected), "{user}: {expected:?} not logged");
    }
}
