//! What a caller hears and presses, end to end, through the `media` interface: baresip hears the IVR's
//! spoken greeting (its recording follows flite's own rendering of the text); SIPp's RFC 4733 captures
//! reach the IVR as one digit each; an uploaded file and a WAV at an allowed URL are heard as the tone they
//! hold; digits we send arrive as RFC 4733 events, or as SIP INFO to a far end that offered no
//! telephone-event; a caller's in-band tones give each digit once; a recording holds what baresip sends;
//! a source that cannot be played is named to the guest.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::baresip::{self, Baresip};
use support::rtp::{
    call_with_rtp_socket, exchange_tones, mulaw_to_linear, parse_rtp, payload, press_2_then_9, rms, tone_share,
    wait_for_log,
};
use support::serde_like::app;
use support::sipp::Sipp;
use support::{MEDIA_PLAYER, Server, TempDir};

/// The IVR example's greeting (`guest-examples/rust/ivr`), which `serve` deploys on 2000.
const IVR_GREETING: &str = "Welcome to callwright. Press 1 for the menu, 2 to leave a note, or 9 to hang up.";
/// 20 ms at 8 kHz.
const FRAME: usize = 160;
/// A stream is taken as ended after this long without a packet: long enough that a server starved of CPU
/// by the tests running beside it is not taken for one that stopped.
const STREAM_ENDED: Duration = Duration::from_millis(1500);

#[test]
fn a_baresip_caller_hears_the_ivr_greeting_as_flite_speaks_it() {
    let (envelope, waveform) = ivr_greeting_heard_through(baresip::Codec::G711, "PCMU/8000");
    assert!(envelope > 0.9, "envelope correlation {envelope:.3}");
    // And the waveform itself, through PCMU and back: nearly the same samples.
    assert!(waveform > 0.9, "waveform correlation {waveform:.3}");
}

#[test]
fn callers_offering_only_g722_or_only_opus_hear_the_greeting_too() {
    // G.722 is a waveform coder: the samples come back. Opus is perceptual: the loudness contour does.
    let (envelope, waveform) = ivr_greeting_heard_through(baresip::Codec::G722, "G722/8000");
    assert!(envelope > 0.95 && waveform > 0.9, "G.722: envelope {envelope:.3}, waveform {waveform:.3}");
    let (envelope, waveform) = ivr_greeting_heard_through(baresip::Codec::Opus, "opus/48000/2");
    assert!(envelope > 0.9 && waveform > 0.8, "Opus: envelope {envelope:.3}, waveform {waveform:.3}");
}

/// Calls the IVR from baresip offering only `codec`; checks the server carried the call with it (`name`,
/// as the log writes it) and that the greeting was heard. Returns how well the loudness contour and the
/// waveform of what was heard match flite's own rendering.
fn ivr_greeting_heard_through(codec: baresip::Codec, name: &str) -> (f64, f64) {
    let data = TempDir::new("prompt-speech");
    let server = Server::with_examples(&data.0);
    let baresip = Baresip::dial_with(&format!("sip:2000@{}", server.sip), Duration::from_secs(7), codec);
    assert!(baresip.wait_for_log("Call established", Duration::from_secs(10)), "{}", baresip.log());
    baresip.wait(Duration::from_secs(20));
    let log = server.log();
    let started = log.lines().any(|line| line.contains("media started") && line.contains(&format!("codec={name} ")));
    assert!(started, "{name}: {log}");
    let heard = baresip.heard();
    let reference = flite(IVR_GREETING, &data.0);

    // Speech-loud 20 ms frames: the greeting lasts about 5 s.
    let loud = heard.chunks(FRAME).filter(|frame| rms(frame) > 300.0).count();
    assert!(loud > 100, "{name}: {loud} loud frames in {} heard", heard.len() / FRAME);
    // The loudness of what was heard follows the reference's, frame by frame, at some offset.
    let (offset, correlation) = best_envelope_match(&envelope(&heard), &envelope(&reference));
    let waveform = best_waveform_match(&heard, &reference, offset * FRAME);
    eprintln!("{name}: envelope correlation {correlation:.3}, waveform {waveform:.3}");
    (correlation, waveform)
}

#[test]
fn a_caller_who_puts_us_on_hold_hears_nothing_and_we_send_again_once_it_resumes() {
    let data = TempDir::new("prompt-hold");
    let server = player_server(&data);
    server.api("PUT", "/v1/media/long", &tone_wav(1000.0, Duration::from_secs(20))).assert_status(201);
    server.put_app("player", &app("media-player", Some("7150"), r#"{"play": [{"file": "long"}]}"#)).assert_status(201);
    // baresip stays 10 s and holds the call for 4 s of them (re-INVITE sendonly, then sendrecv).
    let baresip = Baresip::dial(&format!("sip:7150@{}", server.sip), Duration::from_secs(10));
    assert!(baresip.wait_for_log("Call established", Duration::from_secs(10)), "{}", baresip.log());
    std::thread::sleep(Duration::from_secs(3));
    baresip.command("hold").expect("hold");
    std::thread::sleep(Duration::from_secs(4));
    baresip.command("resume").expect("resume");
    baresip.wait(Duration::from_secs(20));
    let log = wait_for_log(&server, "media ended");
    let held = log.find("media renegotiated direction=RecvOnly").unwrap_or_else(|| panic!("no hold:\n{log}"));
    assert!(log[held..].contains("media renegotiated direction=SendRecv"), "no resume:\n{log}");
    // What baresip heard (it writes what it decodes) is the tone until the hold, nothing from then on. (After
    // the resume, baresip 1.0.0 writes nothing more to its file, although our packets come: it is the
    // server's own count below that shows we sent again.)
    let heard = baresip.heard();
    let toned = heard.chunks(FRAME).filter(|frame| tone_share(frame, 1000.0, 8000.0) > 0.8).count();
    assert!((120..=180).contains(&toned), "{toned} frames of 1 kHz heard before the hold (about 150, 3 s)");
    assert!(heard.len() <= 8000 * 4, "{} samples heard: the hold did not silence us", heard.len());
    // We sent for the 10 s less the 4 s on hold: about 300 packets, not 500.
    let line = log.lines().find(|l| l.contains("media ended")).expect("line");
    let sent: u64 =
        line.split("sent=").nth(1).and_then(|rest| rest.split(' ').next()).and_then(|n| n.parse().ok()).expect("sent");
    assert!((250..=360).contains(&sent), "{sent} packets sent: {line}");
}

#[test]
fn rfc4733_digits_from_sipps_captures_reach_the_ivr_once_each() {
    let data = TempDir::new("prompt-rfc4733");
    let server = Server::with_examples(&data.0);
    press_2_then_9(&server, "2000");
    let log = server.log();
    assert_eq!(log.matches("digit 2 from rtp-event (so far 2)").count(), 1, "{log}");
    assert_eq!(log.matches("digit 9 from rtp-event (so far 29)").count(), 1, "{log}");
    assert_eq!(log.matches("digit ").count(), 2, "each press reported once:\n{log}");
}

#[test]
fn an_uploaded_file_is_heard_and_its_end_reported() {
    let data = TempDir::new("prompt-file");
    let server = player_server(&data);
    server.api("PUT", "/v1/media/beep", &tone_wav(1000.0, Duration::from_secs(1))).assert_status(201);
    let listed = server.api("GET", "/v1/media", b"");
    assert!(
        listed.body.contains("\"name\":\"beep\"") && listed.body.contains("\"duration_ms\":1000"),
        "{}",
        listed.body
    );
    server.put_app("player", &app("media-player", Some("7100"), r#"{"play": [{"file": "beep"}]}"#)).assert_status(201);

    let packets = receive_call(&server, "7100");
    let beeping = packets.iter().filter(|samples| tone_share(samples, 1000.0, 8000.0) > 0.8).count();
    assert!((45..=52).contains(&beeping), "{beeping} packets of 1 kHz, for a 1 s file");
    let log = wait_for_log(&server, "media update: playback");
    assert!(log.contains("media update: playback completed after 1000ms"), "{log}");

    // The file comes back as uploaded, and once deleted it is gone.
    let fetched = server.api("GET", "/v1/media/beep", b"");
    fetched.assert_status(200);
    assert_eq!(fetched.bytes, tone_wav(1000.0, Duration::from_secs(1)));
    server.api("DELETE", "/v1/media/beep", b"").assert_status(204);
    server.api("GET", "/v1/media/beep", b"").assert_status(404);
    assert_eq!(server.api("GET", "/v1/media", b"").body, "[]");
}

#[test]
fn dtmf_tones_silence_and_ringback_are_heard_in_order() {
    let data = TempDir::new("prompt-tones");
    let server = player_server(&data);
    let play = r#"{"play": [{"tones": "5"}, {"silence": 300}, {"ring": "us", "ms": 600}]}"#;
    server.put_app("tones", &app("media-player", Some("7110"), play)).assert_status(201);
    let packets = receive_call(&server, "7110");
    // Key 5 is 770 + 1336 Hz for 100 ms; US ring-back 440 + 480 Hz, here for 600 ms.
    let key = |frame: &Vec<i16>| tone_share(frame, 770.0, 8000.0) > 0.3 && tone_share(frame, 1336.0, 8000.0) > 0.3;
    let ring = |frame: &Vec<i16>| tone_share(frame, 440.0, 8000.0) > 0.3 && tone_share(frame, 480.0, 8000.0) > 0.3;
    let first_key = packets.iter().position(key).expect("key 5 heard");
    let first_ring = packets.iter().position(ring).expect("ring-back heard");
    assert!((4..=6).contains(&packets.iter().filter(|f| key(f)).count()), "100 ms of key 5");
    assert!((27..=31).contains(&packets.iter().filter(|f| ring(f)).count()), "600 ms of ring-back");
    // Between them: the tone's 100 ms gap and 300 ms of silence.
    let gap = first_ring - first_key;
    assert!((23..=27).contains(&gap), "ring-back starts {gap} packets after the key");
}

#[test]
fn a_wav_at_an_allowed_url_is_fetched_once_for_two_calls_and_heard() {
    let data = TempDir::new("prompt-url");
    let server = player_server(&data);
    let wav = WavServer::start(tone_wav(600.0, Duration::from_millis(600)));
    let flow = serde_json::json!({"module": "media-player", "config": {"play": [{"url": wav.url("/tone.wav")}]}});
    let app = serde_json::json!({"route": {"to_user": "7200"}, "flow": flow, "hooks": {"allow": [wav.host()]}});
    server.put_app("player", &app.to_string()).assert_status(201);
    for _ in 0..2 {
        let packets = receive_call(&server, "7200");
        let toned = packets.iter().filter(|samples| tone_share(samples, 600.0, 8000.0) > 0.8).count();
        assert!((27..=32).contains(&toned), "{toned} packets of 600 Hz, for a 600 ms file");
    }
    assert_eq!(wav.requests(), 1, "the second call plays the cached audio");
}

/// One second of 1 kHz, encoded by LAME (see `tests/fixtures/README.md`).
const TONE_MP3: &[u8] = include_bytes!("fixtures/tone-1khz-1s.mp3");

#[test]
fn an_mp3_uploaded_or_at_an_allowed_url_is_heard_as_its_tone() {
    let data = TempDir::new("prompt-mp3");
    let server = player_server(&data);
    let stored = server.api("PUT", "/v1/media/tone", TONE_MP3);
    stored.assert_status(201);
    let info: serde_json::Value = serde_json::from_str(&stored.body).expect("JSON");
    // LAME pads a frame or two at each end.
    let duration = info["duration_ms"].as_u64().expect("duration_ms");
    assert!((950..=1150).contains(&duration), "{}", stored.body);
    assert_eq!(server.api("GET", "/v1/media/tone", b"").bytes, TONE_MP3, "kept as uploaded");

    let mp3 = WavServer::start(TONE_MP3.to_vec());
    let sources = serde_json::json!([{"file": "tone"}, {"url": mp3.url("/tone.mp3")}]);
    let flow = serde_json::json!({"module": "media-player", "config": {"play": sources}});
    let app = serde_json::json!({"route": {"to_user": "7250"}, "flow": flow, "hooks": {"allow": [mp3.host()]}});
    server.put_app("mp3", &app.to_string()).assert_status(201);
    let packets = receive_call(&server, "7250");
    let toned = packets.iter().filter(|samples| tone_share(samples, 1000.0, 8000.0) > 0.8).count();
    assert!((90..=112).contains(&toned), "{toned} packets of 1 kHz, for the file then the URL (1 s each)");
    assert_eq!(mp3.requests(), 1);
}

/// Counts, in what a caller received, the 20 ms packets of a `hz` tone and the speech-loud others.
fn tone_and_speech(packets: &[Vec<i16>], hz: f64) -> (usize, usize) {
    let toned = packets.iter().filter(|samples| tone_share(samples, hz, 8000.0) > 0.8).count();
    let loud = packets.iter().filter(|samples| rms(samples) > 300.0).count();
    (toned, loud - toned)
}

/// An app for calls to `user` running `flow`, its hooks allowed to reach `hosts`.
fn put_runner_app(server: &Server, user: &str, flow: serde_json::Value, hosts: &[String]) {
    let app = serde_json::json!({"route": {"to_user": user}, "flow": flow, "hooks": {"allow": hosts}});
    server.put_app(user, &app.to_string()).assert_status(201);
}

#[test]
fn jambonz_say_and_play_are_heard_and_play_reports_to_its_action_hook() {
    let data = TempDir::new("prompt-jambonz");
    let server = Server::start_in(&data.0, &[]);
    let wav = WavServer::start(tone_wav(1000.0, Duration::from_secs(1)));
    let hooks = support::hooks::HookServer::start();
    let verbs = serde_json::json!([
        {"verb": "play", "url": wav.url("/tone.wav"), "actionHook": hooks.url("/play")},
        {"verb": "say", "text": "<speak>Hello there.<break time=\"300ms\"/>This is callwright.</speak>",
         "synthesizer": {"vendor": "google", "voice": "en-US-Wavenet-C"}},
        {"verb": "say", "text": "silence_stream://200"},
        {"verb": "hangup"},
    ]);
    put_runner_app(&server, "7400", serde_json::json!({"verbs": verbs}), &[wav.host(), hooks.addr().to_string()]);
    let packets = receive_call(&server, "7400");
    let (toned, speech) = tone_and_speech(&packets, 1000.0);
    assert!((45..=52).contains(&toned), "{toned} packets of the 1 s tone");
    assert!(speech > 40, "{speech} speech-loud packets");
    let played = hooks.wait_for("/play", 1, Duration::from_secs(5))[0].json();
    assert_eq!(played["reason"], "playCompleted", "{played}");
    assert_eq!((played["playback_seconds"].as_u64(), played["playback_milliseconds"].as_u64()), (Some(1), Some(1000)));
    assert_eq!(played["playback_last_offset_pos"], 8000, "{played}");
    assert!(server.log().contains("no speech provider `google` here"), "{}", server.log());

    // A config verb's synthesizer is the voice of a later say that names none.
    let configured = serde_json::json!([
        {"config": {"synthesizer": {"vendor": "flite", "voice": "nobody"}}},
        {"verb": "say", "text": "hello"},
    ]);
    put_runner_app(&server, "7401", serde_json::json!({"verbs": configured}), &[]);
    receive_call(&server, "7401");
    assert!(server.log().contains("flite has no voice `nobody`"), "{}", server.log());
}

#[test]
fn the_swml_seeds_play_of_say_runs_with_silence_and_ring_and_a_bad_url_is_named() {
    let data = TempDir::new("prompt-swml");
    let server = Server::start_in(&data.0, &[]);
    let document = serde_json::json!({"version": "1.0.0", "sections": {"main": [
        {"set": {"sip_refer_result": "success"}},
        {"play": {"url": "say: Connected. The SIP refer result is ${sip_refer_result}"}},
        {"play": {"urls": ["silence:0.5", "ring:1:us"], "volume": -6}},
        "hangup",
    ]}});
    put_runner_app(&server, "7410", serde_json::json!({"swml": document}), &[]);
    let packets = receive_call(&server, "7410");
    let (_, speech) = tone_and_speech(&packets, 1000.0);
    assert!(speech > 60, "{speech} speech-loud packets");
    // US ring-back is 440 + 480 Hz: a second of it, 6 dB down.
    let ringing = packets
        .iter()
        .filter(|samples| tone_share(samples, 440.0, 8000.0) > 0.3 && tone_share(samples, 480.0, 8000.0) > 0.3)
        .count();
    assert!((45..=52).contains(&ringing), "{ringing} packets of ring-back");

    let bad = serde_json::json!({"sections": {"main": [{"play": "ftp://example.com/x.wav"}, "hangup"]}});
    put_runner_app(&server, "7411", serde_json::json!({"swml": bad}), &[]);
    receive_call(&server, "7411");
    assert!(server.log().contains("`ftp://example.com/x.wav` is not something to play"), "{}", server.log());
}

#[test]
fn twiml_say_and_play_are_heard() {
    let data = TempDir::new("prompt-twiml");
    let server = Server::start_in(&data.0, &[]);
    let wav = WavServer::start(tone_wav(1000.0, Duration::from_secs(1)));
    let url = wav.url("/tone.wav");
    let hooks = support::hooks::HookServer::start_with(move |_| {
        let twiml =
            format!(r#"<Response><Say voice="alice" loop="2">Hello.</Say><Play>{url}</Play><Hangup/></Response>"#);
        (200, twiml)
    });
    put_runner_app(
        &server,
        "7420",
        serde_json::json!({"twiml_url": hooks.url("/voice")}),
        &[wav.host(), hooks.addr().to_string()],
    );
    let packets = receive_call(&server, "7420");
    let (toned, speech) = tone_and_speech(&packets, 1000.0);
    assert!((45..=52).contains(&toned), "{toned} packets of the 1 s tone");
    assert!(speech > 20, "{speech} speech-loud packets (\"Hello.\" twice)");
}

#[test]
fn jambonz_twiml_and_swml_conferences_mix_their_members_and_report_join_and_leave() {
    let data = TempDir::new("prompt-conference-verbs");
    let server = Server::start_in(&data.0, &[]);
    let hooks = support::hooks::HookServer::start_with(|request| match request.route() {
        "/voice" => (200, "<Response><Dial><Conference beep=\"false\">room</Conference></Dial></Response>".into()),
        _ => (200, String::new()),
    });
    let host = [hooks.addr().to_string()];
    let room =
        serde_json::json!([{"verb": "conference", "name": "room", "beep": true, "statusHook": hooks.url("/conf")}]);
    put_runner_app(&server, "7960", serde_json::json!({"verbs": room}), &host);
    put_runner_app(&server, "7961", serde_json::json!({"twiml_url": hooks.url("/voice")}), &host);
    let swml = serde_json::json!({"sections": {"main": [{"join_conference": {"name": "room", "beep": "false"}}]}});
    put_runner_app(&server, "7963", serde_json::json!({"swml": swml}), &host);
    let moderated = serde_json::json!([{"verb": "conference", "name": "room", "endConferenceOnExit": true}]);
    put_runner_app(&server, "7962", serde_json::json!({"verbs": moderated}), &host);
    // Two members each of jambonz (500, 700 Hz), TwiML (900, 1100 Hz) and SWML (1300, 1500 Hz) apps,
    // each caller hanging up after 4 s.
    let members =
        [("7960", 500.0), ("7960", 700.0), ("7961", 900.0), ("7961", 1100.0), ("7963", 1300.0), ("7963", 1500.0)];
    let calls: Vec<_> = members
        .iter()
        .map(|(user, _)| {
            let socket = support::rtp::caller_rtp_socket();
            socket.set_read_timeout(Some(Duration::from_millis(1))).expect("timeout");
            let port = socket.local_addr().expect("addr").port().to_string();
            let call = Sipp::client("uac-media-caller-hangs-up.xml", server.sip)
                .service(user)
                .arg("-key")
                .arg("rtp_port")
                .arg(&port)
                .arg("-d")
                .arg("4000")
                .spawn();
            (socket, call)
        })
        .collect();
    let sockets: Vec<&UdpSocket> = calls.iter().map(|(socket, _)| socket).collect();
    let frequencies: Vec<f64> = members.iter().map(|(_, frequency)| *frequency).collect();
    let heard = exchange_tones(&sockets, &frequencies, 6000.0, Duration::from_secs(5));
    for (_, call) in calls {
        call.wait().assert_all_succeeded(1);
    }
    let hears = |member: usize, frequency: f64| {
        heard[member].iter().filter(|frame| tone_share(frame, frequency, 8000.0) > 0.5).count()
    };
    assert!(hears(0, 700.0) > 80 && hears(1, 500.0) > 80, "the jambonz members hear each other");
    assert!(hears(2, 1100.0) > 80 && hears(3, 900.0) > 80, "the TwiML members hear each other");
    assert!(hears(4, 1500.0) > 80 && hears(5, 1300.0) > 80, "the SWML members hear each other");
    assert!(hears(0, 900.0) < 5 && hears(2, 500.0) < 5, "the two apps' rooms are apart");
    // The jambonz members' beep: 800 Hz, 200 ms, each heard by its joiner.
    let beeps = heard[0].iter().filter(|frame| tone_share(frame, 800.0, 8000.0) > 0.5).count();
    assert!((5..=14).contains(&beeps), "{beeps} frames of the beep");
    let events = hooks.wait_for("/conf", 4, Duration::from_secs(10));
    let kinds: Vec<String> =
        events.iter().map(|e| e.json()["event"].as_str().unwrap_or_default().to_string()).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "join").count(), 2, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "leave").count(), 2, "{kinds:?}");
    assert!(events.iter().all(|e| e.json()["friendly_name"] == "room"));

    // A moderator's endConferenceOnExit is not built: refused with a clear error, not ignored.
    receive_call(&server, "7962");
    assert!(server.log().contains("endConferenceOnExit: true is not built"), "{}", server.log());
}

#[test]
fn sources_that_cannot_play_are_named_to_the_guest_and_bad_uploads_refused() {
    let data = TempDir::new("prompt-errors");
    let server = player_server(&data);
    let refused = server.api("PUT", "/v1/media/noise", b"this is not a WAV file");
    refused.assert_status(400);
    assert!(refused.body.contains("neither a WAV (RIFF/WAVE) nor an MP3 file"), "{}", refused.body);
    // MPEG sync bits followed by garbage: taken for MP3, and refused as one.
    let fake_mp3: Vec<u8> = [0xff, 0xfb].into_iter().chain((0..3000).map(|i| (i * 7 % 251) as u8)).collect();
    let refused = server.api("PUT", "/v1/media/noise", &fake_mp3);
    refused.assert_status(400);
    assert!(refused.body.contains("MP3"), "{}", refused.body);
    server.api("PUT", "/v1/media/Bad%20Name", &tone_wav(440.0, Duration::from_millis(100))).assert_status(400);
    let cases = [
        (
            "7301",
            r#"{"url": "http://127.0.0.1:9/x.wav"}"#,
            "`http://127.0.0.1:9/x.wav`: its host is not in the app's allow list",
        ),
        ("7302", r#"{"file": "missing"}"#, "no media file `missing`"),
        ("7303", r#"{"stream": "tone_stream://%(100,x,440)"}"#, "`x` in `%(100,x,440)` is not a number"),
        ("7304", r#"{"say": "hello", "voice": "nobody"}"#, "flite has no voice `nobody`"),
    ];
    for (user, source, expected) in cases {
        let config = format!("{{\"play\": [{source}]}}");
        server.put_app(&format!("bad-{user}"), &app("media-player", Some(user), &config)).assert_status(201);
        receive_call(&server, user);
        let log = server.log();
        let line = log.lines().find(|l| l.contains("play failed") && l.contains(expected));
        assert!(line.is_some(), "no `play failed` naming {expected:?}:\n{log}");
    }
}

#[test]
fn digits_we_send_arrive_as_rfc4733_events_with_three_end_packets() {
    let data = TempDir::new("prompt-send-digits");
    let server = player_server(&data);
    let config = r#"{"send_digits": "12#"}"#;
    server.put_app("sender", &app("media-player", Some("7400"), config)).assert_status(201);
    assert_eq!(keys_sent_to(&server, "7400"), [1, 2, 11]);
    assert!(server.log().contains("media update: digits sent"), "{}", server.log());
}

/// Calls `user` with a test-owned RTP socket and returns the event codes of the RFC 4733 events that
/// came, once per key, checking each ended with three End packets (RFC 4733 §2.5.1.4).
fn keys_sent_to(server: &Server, user: &str) -> Vec<u8> {
    let (socket, call, _) = call_with_rtp_socket(server, user, "uac-media-callee-hangs-up.xml", STREAM_ENDED);
    let mut events: Vec<(u32, u8, bool)> = Vec::new();
    let mut buffer = [0u8; 2048];
    while let Ok((len, _)) = socket.recv_from(&mut buffer) {
        let packet = &buffer[..len];
        let header = parse_rtp(packet).expect("RTP");
        if header.payload_type == 101 {
            let event = payload(packet);
            events.push((header.timestamp, event[0], event[1] & 0x80 != 0));
        }
    }
    call.wait().assert_all_succeeded(1);
    let mut pressed: Vec<(u32, u8)> = events.iter().map(|(ts, code, _)| (*ts, *code)).collect();
    pressed.dedup();
    for (timestamp, code) in &pressed {
        let ends = events.iter().filter(|(ts, c, end)| ts == timestamp && c == code && *end).count();
        assert_eq!(ends, 3, "event {code}: three End packets (RFC 4733 §2.5.1.4): {events:?}");
    }
    pressed.into_iter().map(|(_, code)| code).collect()
}

#[test]
fn the_dtmf_verbs_of_each_dialect_send_their_keys() {
    let data = TempDir::new("prompt-dtmf-verbs");
    let server = Server::start_in(&data.0, &[]);
    let hooks = support::hooks::HookServer::start_with(|request| match request.route() {
        "/voice" => (200, r#"<Response><Play digits="w5"/><Hangup/></Response>"#.into()),
        _ => (200, String::new()),
    });
    let host = [hooks.addr().to_string()];
    let jambonz = serde_json::json!([{"verb": "dtmf", "dtmf": "12#", "duration": 200}, {"verb": "hangup"}]);
    put_runner_app(&server, "7430", serde_json::json!({"verbs": jambonz}), &host);
    let swml = serde_json::json!({"sections": {"main": [
        {"send_digits": "34"},
        {"request": {"url": hooks.url("/sent"), "method": "POST", "body": {"result": "${send_digits_result}"}}},
        "hangup",
    ]}});
    put_runner_app(&server, "7431", serde_json::json!({"swml": swml}), &host);
    put_runner_app(&server, "7432", serde_json::json!({"twiml_url": hooks.url("/voice")}), &host);
    assert_eq!(keys_sent_to(&server, "7430"), [1, 2, 11], "jambonz dtmf");
    assert_eq!(keys_sent_to(&server, "7431"), [3, 4], "SWML send_digits");
    assert_eq!(hooks.wait_for("/sent", 1, Duration::from_secs(5))[0].json()["result"], "success");
    assert_eq!(keys_sent_to(&server, "7432"), [5], "TwiML <Play digits>");
}

#[test]
fn in_band_tones_from_a_caller_without_telephone_event_give_each_digit_once() {
    let data = TempDir::new("prompt-in-band");
    let server = player_server(&data);
    server.put_app("keys", &app("media-player", Some("7500"), r#"{"digits": 2}"#)).assert_status(201);
    let (socket, call, _) =
        call_with_rtp_socket(&server, "7500", "uac-media-no-telephone-event.xml", Duration::from_millis(5));
    let mut buffer = [0u8; 2048];
    let server_rtp = loop {
        if let Ok((_, from)) = socket.recv_from(&mut buffer) {
            break from;
        }
    };
    // 400 ms of silence, key 4 for 200 ms, 200 ms of silence, key 7 for 200 ms, then silence: 20 ms frames.
    let mut schedule: Vec<Option<(f64, f64)>> = vec![None; 20];
    schedule.extend([Some((770.0, 1209.0)); 10]);
    schedule.extend([None; 10]);
    schedule.extend([Some((852.0, 1209.0)); 10]);
    schedule.extend([None; 100]);
    let started = Instant::now();
    for (index, tone) in schedule.iter().enumerate() {
        let samples: Vec<i16> = (0..FRAME)
            .map(|n| match tone {
                Some((low, high)) => {
                    let t = (index * FRAME + n) as f64 / 8000.0;
                    let two_pi = 2.0 * std::f64::consts::PI;
                    (6000.0 * ((two_pi * low * t).sin() + (two_pi * high * t).sin())) as i16
                }
                None => 0,
            })
            .collect();
        let (sequence, timestamp) = (index as u16, (index * FRAME) as u32);
        let sent = socket.send_to(&support::rtp::caller_audio_packet(sequence, timestamp, &samples), server_rtp);
        if sent.is_err() {
            break;
        }
        while started.elapsed() < Duration::from_millis(20 * (index as u64 + 1)) {
            let _ = socket.recv_from(&mut buffer);
        }
        if server.log().contains("guest finished") {
            break;
        }
    }
    call.wait().assert_all_succeeded(1);
    let log = server.log();
    assert_eq!(log.matches("media update: digit 4 in-band").count(), 1, "{log}");
    assert_eq!(log.matches("media update: digit 7 in-band").count(), 1, "{log}");
    assert_eq!(log.matches("media update: digit ").count(), 2, "each press once:\n{log}");
}

#[test]
fn digits_sent_to_a_far_end_without_telephone_event_go_as_sip_info() {
    let data = TempDir::new("prompt-info-digits");
    let server = player_server(&data);
    server.put_app("sender", &app("media-player", Some("7600"), r#"{"send_digits": "12"}"#)).assert_status(201);
    // SIPp checks each INFO's type and Signal, answers them, then takes our BYE.
    Sipp::client("uac-receives-dtmf-info.xml", server.sip)
        .service("7600")
        .timeout(Duration::from_secs(20))
        .run()
        .assert_all_succeeded(1);
    assert!(server.log().contains("media update: digits sent"), "{}", server.log());
}

#[test]
fn a_recording_of_what_baresip_sends_holds_its_tone_and_is_listed_fetched_and_deleted() {
    let data = TempDir::new("prompt-record");
    let server = player_server(&data);
    let config = r#"{"record": {"max_ms": 2000}, "hangup_after_ms": 200}"#;
    server.put_app("recorder", &app("media-player", Some("7700"), config)).assert_status(201);
    // baresip sends a 440 Hz tone (its aufile source) and would stay 8 s: the recording ends the call.
    let baresip = Baresip::dial(&format!("sip:7700@{}", server.sip), Duration::from_secs(8));
    assert!(baresip.wait_for_log("Call established", Duration::from_secs(10)), "{}", baresip.log());
    let log = wait_for_log(&server, "recording kept");
    assert!(log.contains("ended by max-length after 2000ms"), "{log}");

    let listed = server.api("GET", "/v1/recordings", b"");
    let recordings: serde_json::Value = serde_json::from_str(&listed.body).expect("JSON");
    let recording = &recordings.as_array().expect("a list")[..];
    assert_eq!(recording.len(), 1, "{recordings}");
    let (id, info) = (recording[0]["id"].as_str().expect("id"), &recording[0]);
    assert_eq!((info["duration_ms"].as_u64(), info["ended_by"].as_str()), (Some(2000), Some("max-length")));
    assert_eq!((info["sample_rate"].as_u64(), info["channels"].as_u64()), (Some(8000), Some(1)));

    let wav = server.api("GET", &format!("/v1/recordings/{id}"), b"");
    wav.assert_status(200);
    let data_at = wav.bytes.windows(4).position(|w| w == b"data").expect("a data chunk") + 8;
    let samples: Vec<i16> = wav.bytes[data_at..].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    // Clocked: 2 s of samples, whatever arrived.
    assert_eq!(samples.len(), 16_000);
    let toned = samples.chunks(FRAME).filter(|frame| tone_share(frame, 440.0, 8000.0) > 0.8).count();
    assert!(toned >= 80, "{toned} of 100 frames hold baresip's 440 Hz tone");

    server.api("DELETE", &format!("/v1/recordings/{id}"), b"").assert_status(204);
    server.api("GET", &format!("/v1/recordings/{id}"), b"").assert_status(404);
    server.api("GET", "/v1/recordings/..%2Fapps", b"").assert_status(400);
    baresip.wait(Duration::from_secs(10));
}

#[test]
fn a_kept_recording_is_posted_signed_to_the_apps_recording_hook_and_retried_after_a_5xx() {
    let data = TempDir::new("prompt-record-hook");
    let server = player_server(&data);
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = attempts.clone();
    let hooks = support::hooks::HookServer::start_with(move |_| {
        // The first post fails: the host must try again.
        if counted.fetch_add(1, Ordering::SeqCst) == 0 { (503, String::new()) } else { (200, String::new()) }
    });
    let config = serde_json::json!({"record": {"max_ms": 2000}, "hangup_after_ms": 200});
    let mut app = serde_json::json!({
        "route": {"to_user": "7710"},
        "flow": {"module": "media-player", "config": config},
        "hooks": {"allow": [hooks.addr().to_string()], "secret": "recording secret"},
        "media": {"recording_hook": hooks.url("/recordings")},
    });
    // A hook outside the allow list is refused, naming the setting.
    app["hooks"]["allow"] = serde_json::json!(["elsewhere.example"]);
    let refused = server.put_app("hooked", &app.to_string());
    refused.assert_status(400);
    assert!(refused.body.contains("media.recording_hook"), "{}", refused.body);
    app["hooks"]["allow"] = serde_json::json!([hooks.addr().to_string()]);
    server.put_app("hooked", &app.to_string()).assert_status(201);

    let baresip = Baresip::dial(&format!("sip:7710@{}", server.sip), Duration::from_secs(8));
    assert!(baresip.wait_for_log("Call established", Duration::from_secs(10)), "{}", baresip.log());
    let posts = hooks.wait_for("/recordings", 2, Duration::from_secs(20));
    let post = &posts[1];
    assert_eq!((post.method.as_str(), post.header("Content-Type")), ("POST", Some("audio/wav")));
    let listed: serde_json::Value = serde_json::from_str(&server.api("GET", "/v1/recordings", b"").body).unwrap();
    let id = listed[0]["id"].as_str().expect("a recording");
    for field in [format!("recording_id={id}"), "duration_ms=2000".into(), "ended_by=max-length".into()] {
        assert!(post.path.contains(&field), "{field} in {}", post.path);
    }
    assert_eq!(post.body, server.api("GET", &format!("/v1/recordings/{id}"), b"").bytes, "the WAV as kept");
    let signature = post.header("Jambonz-Signature").expect("signed");
    let t: u64 = signature.strip_prefix("t=").and_then(|rest| rest.split(',').next()).unwrap().parse().unwrap();
    assert_eq!(signature, callwright_host::hooks::signature("recording secret", t, &post.body));
    assert_eq!(posts[0].body, post.body, "the retry sends the same recording");
    assert!(!server.log().contains("recording secret"), "the secret is never logged");
    baresip.wait(Duration::from_secs(10));
}

#[test]
fn recordings_of_callers_sending_g722_or_opus_hold_their_tone() {
    for codec in [baresip::Codec::G722, baresip::Codec::Opus] {
        let data = TempDir::new("prompt-record-wideband");
        let server = player_server(&data);
        let config = r#"{"record": {"max_ms": 2000}, "hangup_after_ms": 200}"#;
        server.put_app("recorder", &app("media-player", Some("7700"), config)).assert_status(201);
        let baresip = Baresip::dial_with(&format!("sip:7700@{}", server.sip), Duration::from_secs(8), codec);
        assert!(baresip.wait_for_log("Call established", Duration::from_secs(10)), "{}", baresip.log());
        wait_for_log(&server, "recording kept");
        let listed: serde_json::Value = serde_json::from_str(&server.api("GET", "/v1/recordings", b"").body).unwrap();
        let id = listed[0]["id"].as_str().expect("a recording");
        let wav = server.api("GET", &format!("/v1/recordings/{id}"), b"");
        let data_at = wav.bytes.windows(4).position(|w| w == b"data").expect("a data chunk") + 8;
        let samples: Vec<i16> =
            wav.bytes[data_at..].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        assert_eq!(samples.len(), 16_000, "{codec:?}: 2 s at 8 kHz");
        let toned = samples.chunks(FRAME).filter(|frame| tone_share(frame, 440.0, 8000.0) > 0.8).count();
        assert!(toned >= 80, "{codec:?}: {toned} of 100 frames hold baresip's 440 Hz tone");
        baresip.wait(Duration::from_secs(10));
    }
}

#[test]
fn two_bridged_calls_hear_each_other_through_the_host() {
    let data = TempDir::new("prompt-bridge");
    let server = player_server(&data);
    let (callee_rtp, callee, callee_port) = support::rtp::media_callee(Duration::ZERO);
    let config = format!(r#"{{"bridge_to": "sip:callee@127.0.0.1:{callee_port}", "bridge_ms": 3000}}"#);
    server.put_app("bridge", &app("media-player", Some("7800"), &config)).assert_status(201);
    let (caller_rtp, caller, _) =
        call_with_rtp_socket(&server, "7800", "uac-media-callee-hangs-up.xml", Duration::from_millis(2));

    // Each side sends its own tone to where the server's packets come from, and keeps what it hears.
    let heard = exchange_tones(&[&caller_rtp, &callee_rtp], &[1000.0, 600.0], 8000.0, Duration::from_secs(5));
    caller.wait().assert_all_succeeded(1);
    callee.wait().assert_all_succeeded(1);
    assert!(server.log().contains("bridged"), "{}", server.log());
    // About 3 s bridged: the caller hears the callee's 600 Hz, the callee the caller's 1 kHz.
    let caller_hears = heard[0].iter().filter(|frame| tone_share(frame, 600.0, 8000.0) > 0.8).count();
    let callee_hears = heard[1].iter().filter(|frame| tone_share(frame, 1000.0, 8000.0) > 0.8).count();
    assert!(caller_hears > 100, "the caller heard the callee in {caller_hears} packets");
    assert!(callee_hears > 100, "the callee heard the caller in {callee_hears} packets");
}

#[test]
fn conference_members_hear_the_others_mixed_never_themselves_no_one_hears_the_muted_and_apps_keep_their_own() {
    let data = TempDir::new("prompt-conference");
    let server = player_server(&data);
    // One app takes every number; calls to 7901 join muted. Another app has a conference of the same name.
    let room = r#"{"conference": "room", "muted_users": ["7901"], "hangup_after_ms": 4000}"#;
    server.put_app("room", &app("media-player", None, room)).assert_status(201);
    let other = r#"{"conference": "room", "hangup_after_ms": 4000}"#;
    server.put_app("other", &app("media-player", Some("7902"), other)).assert_status(201);
    // A (500 Hz) and B (700 Hz) talk; C (900 Hz) talks too, muted; D (1100 Hz) is in the other app's room.
    let members = [("7900", 500.0), ("7900", 700.0), ("7901", 900.0), ("7902", 1100.0)];
    let calls: Vec<_> = members
        .iter()
        .map(|(user, _)| call_with_rtp_socket(&server, user, "uac-media-callee-hangs-up.xml", Duration::from_millis(1)))
        .collect();
    let sockets: Vec<&UdpSocket> = calls.iter().map(|(socket, _, _)| socket).collect();
    let frequencies: Vec<f64> = members.iter().map(|(_, frequency)| *frequency).collect();
    let heard = exchange_tones(&sockets, &frequencies, 6000.0, Duration::from_secs(6));
    for (_, call, _) in calls {
        call.wait().assert_all_succeeded(1);
    }
    // Frames where a member hears a tone: over a quarter of the frame's power (two tones share it).
    let hears = |member: usize, frequency: f64| {
        heard[member].iter().filter(|frame| tone_share(frame, frequency, 8000.0) > 0.25).count()
    };
    let (a, b, c, d) = (0, 1, 2, 3);
    assert!(hears(a, 700.0) > 100 && hears(b, 500.0) > 100, "A and B hear each other");
    assert!(hears(c, 500.0) > 100 && hears(c, 700.0) > 100, "the muted member hears both");
    assert!(hears(a, 500.0) < 5 && hears(b, 700.0) < 5, "nobody hears themselves");
    assert!(hears(a, 900.0) < 5 && hears(b, 900.0) < 5, "nobody hears the muted member");
    assert!(hears(a, 1100.0) < 5 && hears(d, 500.0) < 5 && hears(d, 700.0) < 5, "apps do not share conferences");
}

fn player_server(data: &TempDir) -> Server {
    let server = Server::start_in(&data.0, &[]);
    server.deploy("media-player", MEDIA_PLAYER).assert_status(201);
    server
}

/// One SIPp call to `user` with a test-owned RTP socket: the decoded payload of each PCMU packet received
/// until the server hangs up.
fn receive_call(server: &Server, user: &str) -> Vec<Vec<i16>> {
    let (socket, call, _) = call_with_rtp_socket(server, user, "uac-media-callee-hangs-up.xml", STREAM_ENDED);
    let mut packets = Vec::new();
    let mut buffer = [0u8; 2048];
    while let Ok((len, _)) = socket.recv_from(&mut buffer) {
        let packet = &buffer[..len];
        if parse_rtp(packet).is_some_and(|h| h.payload_type == 0) {
            packets.push(payload(packet).iter().map(|b| mulaw_to_linear(*b)).collect());
        }
    }
    call.wait().assert_all_succeeded(1);
    packets
}

/// A WAV file (8 kHz, mono, 16-bit) of a sine at `frequency`, about -10 dBFS.
fn tone_wav(frequency: f64, duration: Duration) -> Vec<u8> {
    support::rtp::wav_file(&support::rtp::sine(frequency, 10_000.0, duration))
}

/// `text` as flite's default voice speaks it, 8 kHz samples.
fn flite(text: &str, dir: &std::path::Path) -> Vec<i16> {
    let path = dir.join("reference.wav");
    let status = std::process::Command::new("flite")
        .args(["-voice", "kal", "-t", text, "-o"])
        .arg(&path)
        .status()
        .expect("run flite (Debian: flite)");
    assert!(status.success(), "flite failed");
    let bytes = std::fs::read(&path).expect("flite's WAV");
    let data = bytes.windows(4).position(|w| w == b"data").expect("a data chunk") + 8;
    bytes[data..].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

/// The RMS of each 20 ms frame.
fn envelope(samples: &[i16]) -> Vec<f64> {
    samples.chunks(FRAME).map(rms).collect()
}

/// The frame offset in `heard` where `reference` fits best, and the Pearson correlation there.
fn best_envelope_match(heard: &[f64], reference: &[f64]) -> (usize, f64) {
    (0..=heard.len().saturating_sub(reference.len()))
        .map(|offset| (offset, pearson(&heard[offset..offset + reference.len()], reference)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 0.0))
}

/// The best sample-level correlation of `reference` with `heard` within a frame of `around`.
fn best_waveform_match(heard: &[i16], reference: &[i16], around: usize) -> f64 {
    let to_f64 = |s: &[i16]| s.iter().map(|x| f64::from(*x)).collect::<Vec<_>>();
    let reference = to_f64(reference);
    (around.saturating_sub(FRAME)..=around + FRAME)
        .filter(|start| start + reference.len() <= heard.len())
        .map(|start| pearson(&to_f64(&heard[start..start + reference.len()]), &reference))
        .fold(0.0, f64::max)
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (mean_a, mean_b) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut cov, mut var_a, mut var_b) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        cov += (x - mean_a) * (y - mean_b);
        var_a += (x - mean_a).powi(2);
        var_b += (y - mean_b).powi(2);
    }
    if var_a == 0.0 || var_b == 0.0 { 0.0 } else { cov / (var_a * var_b).sqrt() }
}

/// An HTTP server on 127.0.0.1 that answers every GET with one WAV file and counts the requests; it stops
/// when dropped.
struct WavServer {
    port: u16,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WavServer {
    fn start(wav: Vec<u8>) -> WavServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let (requests, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (counted, stopping) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                let deadline = Instant::now() + Duration::from_secs(2);
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && Instant::now() < deadline {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::Relaxed);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    wav.len()
                );
                let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&wav));
            }
        });
        WavServer { port, requests, stop, thread: Some(thread) }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for WavServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
