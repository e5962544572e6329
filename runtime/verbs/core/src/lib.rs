//! The built-in verbs of jambonz apps, as a callwright verb module (world `verb`): call control
//! (`answer`, `hangup`, `pause`, `tag`, `config`, `redirect`, `sip:decline`, `sip:request`, `dial`) and
//! media (`say` in `say.rs`, `play` in `play.rs`, `gather` of digits in `gather.rs`, `dtmf` in `dtmf.rs`,
//! `conference` in `conference.rs`, `record` in `record.rs`, the sources in `sources.rs`), which the SWML and TwiML runners use for their own media verbs.
//!
//! The host checks every verb's arguments against the schema below before the verb runs, so the code here
//! reads fields it knows are there and of the right type. Verbs with an `actionHook` post it themselves,
//! with the call's fields (snake_case, as jambonz sends them) and their result, and return its answer as
//! `action_hook_response`: the jambonz runner replaces the rest of its verb array with it.

#![forbid(unsafe_code)]

mod conference;
mod dtmf;
mod gather;
mod play;
mod record;
mod say;
mod sources;

use callwright_sdk::hooks::{self, Hook};
use callwright_sdk::media;
use callwright_sdk::serde_json::{Map, Value, json};
use callwright_sdk::transfer::jambonz_call_fields;
use callwright_sdk::{
    Body, Call, CallError, CallEvent, CallUpdate, Credentials, DialError, DialRequest, EndReason, Header, Level,
    ROUTINE_REQUEST_HOOK, VerbSpec, Verbs, clock, log, start_dial, variables, wait,
};

/// The variable `tag` keeps its data in (JSON); the jambonz runner sends it as `customer_data`.
pub const CUSTOMER_DATA: &str = "jambonz.customer_data";
/// The variable `config` keeps the session's settings in (JSON).
pub const SESSION_CONFIG: &str = "jambonz.config";
/// The `config` settings callwright acts on (`synthesizer`: the voice of later `say`s that name none).
const APPLIED_SETTINGS: [&str; 3] = ["sipRequestWithinDialogHook", "reset", "synthesizer"];
/// How long `dial` rings when the document gives no `timeout` (jambonz's default).
const DIAL_TIMEOUT_SECONDS: f64 = 60.0;
/// The caller and the callee in `wait`'s list, by index.
const CALLER: u32 = 0;
const CALLEE: u32 = 1;

/// The module's verbs.
pub struct CoreVerbs;

/// Every verb: name and argument schema.
pub fn schemas() -> Vec<(&'static str, Value)> {
    let hook = json!({"oneOf": [
        {"type": "string", "format": "uri"},
        {"type": "object", "required": ["url"], "properties": {
            "url": {"type": "string", "format": "uri"},
            "method": {"enum": ["POST", "GET", "post", "get"]},
            "username": {"type": "string"},
            "password": {"type": "string"},
        }},
    ]});
    let headers = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let object = |properties: Value, required: &[&str]| {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": properties,
            "required": required,
        })
    };
    let texts = json!({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]});
    let repeats = json!({"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string"}]});
    vec![
        (
            "say",
            object(
                json!({"text": texts, "loop": repeats, "synthesizer": {"type": "object"}, "earlyMedia": {"type": "boolean"}}),
                &["text"],
            ),
        ),
        (
            "play",
            object(
                json!({"url": texts, "urls": {"type": "array", "items": {"type": "string"}}, "loop": repeats,
                       "timeoutSecs": {"type": "number", "minimum": 0}, "seekOffset": {"type": "number"},
                       "volume": {"type": "number"}, "earlyMedia": {"type": "boolean"}, "actionHook": hook}),
                &[],
            ),
        ),
        (
            "gather",
            object(
                json!({"input": {"type": "array", "items": {"enum": ["digits", "speech"]}},
                       "numDigits": {"type": "integer", "minimum": 1}, "minDigits": {"type": "integer", "minimum": 1},
                       "maxDigits": {"type": "integer", "minimum": 1}, "finishOnKey": {"type": "string"},
                       "timeout": {"type": "number", "minimum": 0}, "interDigitTimeout": {"type": "number", "minimum": 0},
                       "dtmfBargein": {"type": "boolean"}, "listenDuringPrompt": {"type": "boolean"},
                       "say": {"type": "object"}, "play": {"type": "object"}, "actionHook": hook}),
                &[],
            ),
        ),
        (
            "dtmf",
            object(
                json!({"dtmf": {"type": "string", "minLength": 1},
                       "duration": {"type": "integer", "minimum": 40, "maximum": 5000}}),
                &["dtmf"],
            ),
        ),
        (
            "conference",
            object(
                json!({"name": {"type": "string", "minLength": 1}, "beep": {"type": "boolean"},
                       "joinMuted": {"type": "boolean"}, "startConferenceOnEnter": {"type": "boolean"},
                       "endConferenceOnExit": {"type": "boolean"}, "maxParticipants": {"type": "integer"},
                       "statusHook": hook, "statusEvents": {"type": "array"}}),
                &["name"],
            ),
        ),
        (
            "record",
            object(
                json!({"maxLength": {"type": "number", "exclusiveMinimum": 0}, "timeout": {"type": "number", "minimum": 0},
                       "finishOnKey": {"type": "string"}, "playBeep": {"type": "boolean"},
                       "direction": {"enum": ["received", "sent", "both"]}, "stereo": {"type": "boolean"}}),
                &[],
            ),
        ),
        ("answer", object(json!({}), &[])),
        ("hangup", object(json!({"headers": headers}), &[])),
        ("pause", object(json!({"length": {"type": "number", "exclusiveMinimum": 0, "maximum": 86_400}}), &["length"])),
        ("tag", object(json!({"data": {"type": "object"}}), &["data"])),
        (
            "config",
            object(
                json!({"sipRequestWithinDialogHook": hook,
                       "reset": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}}),
                &[],
            ),
        ),
        ("redirect", object(json!({"actionHook": hook}), &["actionHook"])),
        (
            "sip:decline",
            object(
                json!({"status": {"type": "integer", "minimum": 300, "maximum": 699}, "reason": {"type": "string"},
                       "headers": headers}),
                &["status"],
            ),
        ),
        (
            "sip:request",
            object(
                json!({"method": {"enum": ["INFO", "MESSAGE", "NOTIFY", "OPTIONS", "UPDATE"]}, "body": {"type": "string"},
                       "headers": headers, "actionHook": hook}),
                &["method"],
            ),
        ),
        (
            "dial",
            object(
                json!({
                    "target": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                        "type": "object", "required": ["type", "sipUri"], "properties": {
                            "type": {"const": "sip"},
                            "sipUri": {"type": "string"},
                            "auth": {"type": "object", "required": ["username", "password"], "properties": {
                                "username": {"type": "string"}, "password": {"type": "string"}}},
                        }}},
                    "callerId": {"type": "string"},
                    "headers": headers,
                    "timeout": {"type": "number", "exclusiveMinimum": 0},
                    "timeLimit": {"type": "number", "exclusiveMinimum": 0},
                    "answerOnBridge": {"type": "boolean"},
                    "dialMusic": texts,
                    "ringTone": {"type": "string"},
                    "actionHook": hook,
                }),
                &["target"],
            ),
        ),
    ]
}

impl Verbs for CoreVerbs {
    fn verbs() -> Vec<VerbSpec> {
        schemas().into_iter().map(|(name, schema)| VerbSpec { name: name.into(), schema: schema.to_string() }).collect()
    }

    fn run(call: &Call, name: &str, args: Value) -> Result<Value, String> {
        let result = match name {
            "answer" => answer(call),
            "hangup" => call.hangup().map(|()| json!({})).or_else(ended_is_done),
            "pause" => pause(call, &args),
            "tag" => tag(&args),
            "config" => Ok(config(&args)),
            "redirect" => Ok(redirect(call, &args)),
            "sip:decline" => decline(call, &args),
            "sip:request" => Ok(sip_request(call, &args)),
            "dial" => dial(call, &args),
            "say" => say::say(call, &args),
            "play" => play::play(call, &args),
            "gather" => gather::gather(call, &args),
            "dtmf" => dtmf::dtmf(call, &args),
            "conference" => conference::conference(call, &args),
            "record" => record::record(call, &args),
            other => return Err(format!("this module has no verb {other:?}")),
        };
        result.map_err(|error| format!("{name}: {error}"))
    }
}

#[cfg(target_arch = "wasm32")]
mod export {
    callwright_sdk::verbs!(super::CoreVerbs);
}

/// The call's next media update within `timeout_ms`, as `media.wait` gives it; a routine request from the
/// far end (INFO, OPTIONS…) is answered on the way, for every media verb alike, and still returned.
fn next_media_update(call: &Call, timeout_ms: Option<u32>) -> Option<media::MediaUpdate> {
    let update = media::wait(&[call], timeout_ms).map(|(_, update)| update);
    if let Some(media::MediaUpdate::Call(CallUpdate::Event(CallEvent::Request(request)))) = &update {
        call.answer_routine_request(request);
    }
    update
}

/// A setting an earlier `config` verb made, if any.
fn session_setting(name: &str) -> Option<Value> {
    let settings: Value = callwright_sdk::serde_json::from_str(&variables::get(SESSION_CONFIG)?).ok()?;
    settings.get(name).cloned()
}

/// The synthesizer of a verb: its own, else the session's (`config`).
fn synthesizer_of(args: &Value) -> Option<Value> {
    args.get("synthesizer").cloned().or_else(|| session_setting("synthesizer"))
}

/// Answers the call; an answered call stays as it is.
fn answer(call: &Call) -> Result<Value, String> {
    call.answer_if_needed().map(|()| json!({})).map_err(|error| error.to_string())
}

/// A call that is already over needs no hanging up.
fn ended_is_done(error: CallError) -> Result<Value, String> {
    match error {
        CallError::CallEnded => Ok(json!({})),
        other => Err(other.to_string()),
    }
}

fn headers(args: &Value) -> Vec<Header> {
    args.get("headers")
        .and_then(Value::as_object)
        .map(|fields| {
            fields.iter().map(|(name, value)| Header::new(name, value.as_str().unwrap_or_default())).collect()
        })
        .unwrap_or_default()
}

fn hook(args: &Value) -> Option<Hook> {
    args.get("actionHook").and_then(Hook::from_json)
}

/// The call's fields for a hook, with the data of earlier `tag` verbs.
fn call_fields(call: &Call) -> Map<String, Value> {
    let mut fields = jambonz_call_fields(&call.info(), "in-progress");
    if let Some(data) = variables::get(CUSTOMER_DATA).and_then(|text| callwright_sdk::serde_json::from_str(&text).ok())
    {
        fields.insert("customer_data".into(), data);
    }
    fields
}

/// Posts `result` with the call's fields to the verb's actionHook, if any, and returns `result` with the
/// hook's answer as `action_hook_response`.
fn report(call: &Call, args: &Value, verb: &str, result: Map<String, Value>) -> Value {
    let answer = hook(args).and_then(|hook| {
        let mut payload = call_fields(call);
        payload.extend(result.clone());
        hooks::send_for_answer(&hook, &Value::Object(payload), verb)
    });
    let mut result = result;
    result.insert("action_hook_response".into(), answer.unwrap_or(Value::Null));
    Value::Object(result)
}

/// Waits `length` seconds, or until the call ends.
fn pause(call: &Call, args: &Value) -> Result<Value, String> {
    let length_ms = (args["length"].as_f64().unwrap_or(0.0) * 1000.0) as u64;
    Ok(if call.wait_for_end(length_ms) { json!({"call_ended": true}) } else { json!({}) })
}

/// Keeps `data` for the app's later hooks (`customer_data`).
fn tag(args: &Value) -> Result<Value, String> {
    let data = &args["data"];
    variables::set(CUSTOMER_DATA, &data.to_string());
    Ok(json!({ "customer_data": data }))
}

/// Session settings: `sipRequestWithinDialogHook` gets the routine requests (INFO, MESSAGE, NOTIFY,
/// OPTIONS) the far end sends from now on; `reset` clears settings by name. Media settings (synthesizer,
/// recognizer, bargeIn, …) are kept but have no effect: the verbs that would use them are refused.
fn config(args: &Value) -> Value {
    let mut settings: Map<String, Value> = variables::get(SESSION_CONFIG)
        .and_then(|text| callwright_sdk::serde_json::from_str(&text).ok())
        .unwrap_or_default();
    let reset: Vec<&str> = match &args["reset"] {
        Value::String(name) => vec![name.as_str()],
        Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    for name in reset {
        settings.remove(name);
        if name == "sipRequestWithinDialogHook" {
            variables::remove(ROUTINE_REQUEST_HOOK);
        }
    }
    let Value::Object(given) = args else { return json!({}) };
    for (name, value) in given.iter().filter(|(name, _)| name.as_str() != "reset") {
        settings.insert(name.clone(), value.clone());
    }
    if let Some(hook) = given.get("sipRequestWithinDialogHook") {
        variables::set(ROUTINE_REQUEST_HOOK, &hook.to_string());
    }
    let unapplied: Vec<&String> = given.keys().filter(|name| !APPLIED_SETTINGS.contains(&name.as_str())).collect();
    if !unapplied.is_empty() {
        log(Level::Info, &format!("config: {unapplied:?} are not built in callwright; kept, no effect"));
    }
    variables::set(SESSION_CONFIG, &Value::Object(settings.clone()).to_string());
    json!({ "config": settings })
}

/// Asks the actionHook for new verbs.
fn redirect(call: &Call, args: &Value) -> Value {
    report(call, args, "redirect", Map::new())
}

fn decline(call: &Call, args: &Value) -> Result<Value, String> {
    let status = args["status"].as_u64().unwrap_or(480) as u16;
    let reason = args.get("reason").and_then(Value::as_str);
    call.reject(status, reason, &headers(args)).map_err(|e| e.to_string())?;
    Ok(json!({ "sip_status": status }))
}

/// Sends a request in the dialog; the actionHook gets `result`, `sip_status` and `sip_reason` (or `err`).
fn sip_request(call: &Call, args: &Value) -> Value {
    let method = args["method"].as_str().unwrap_or_default();
    let body = args.get("body").and_then(Value::as_str).map(|text| {
        let content_type = headers(args)
            .into_iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-type"))
            .map_or_else(|| "text/plain".to_string(), |h| h.value);
        Body::new(&content_type, text.as_bytes())
    });
    let headers: Vec<Header> =
        headers(args).into_iter().filter(|h| !h.name.eq_ignore_ascii_case("content-type")).collect();
    let mut result = Map::new();
    match call.sip_request(method, &headers, body.as_ref()) {
        Ok(response) => {
            result.insert("result".into(), json!("success"));
            result.insert("sip_status".into(), json!(response.status));
            result.insert("sip_reason".into(), json!(response.reason));
        }
        Err(error) => {
            result.insert("result".into(), json!("failed"));
            result.insert("err".into(), json!(error.to_string()));
        }
    }
    report(call, args, "sip:request", result)
}

/// Calls the target and bridges it to this call with the media anchored in callwright: the target gets
/// the host's own offer, the caller the host's own answer, and `media.bridge` joins the two streams (so
/// their codecs may differ, and the call can be recorded or its digits heard). While the target rings the
/// caller hears ring-back or `dialMusic` ([`Ringing`]), and a caller who hangs up cancels it. Ends when
/// either side hangs up or `timeLimit` passes; the actionHook gets `dial_call_status`,
/// `dial_sip_status`, `dial_call_sid` and `dial_call_duration`.
fn dial(call: &Call, args: &Value) -> Result<Value, String> {
    let target = &args["target"][0];
    let mut request = DialRequest::to(target["sipUri"].as_str().unwrap_or_default());
    request.from = args.get("callerId").and_then(Value::as_str).map(|caller| {
        if caller.contains(':') { caller.to_string() } else { format!("sip:{caller}@callwright.invalid") }
    });
    request.headers = headers(args);
    // No body: the host offers from a port pair of its own.
    request.body = None;
    request.credentials = target.get("auth").map(|auth| Credentials {
        username: auth["username"].as_str().unwrap_or_default().into(),
        password: auth["password"].as_str().unwrap_or_default().into(),
    });
    let timeout = args.get("timeout").and_then(Value::as_f64).unwrap_or(DIAL_TIMEOUT_SECONDS);
    request.timeout_ms = Some((timeout * 1000.0).min(f64::from(u32::MAX)) as u32);
    let mut result = Map::new();
    let mut ringing = Ringing::start(call, args)?;
    let dialled = start_dial(&request).and_then(|callee| ring_until_answered(call, callee, &mut ringing));
    ringing.stop();
    let callee = match dialled {
        Ok(callee) => callee,
        Err(error) => {
            let (status, sip_status) = match &error {
                DialError::Failed(486 | 600) => ("busy", error_status(&error)),
                DialError::Failed(487) => ("canceled", 487),
                DialError::Failed(_) => ("failed", error_status(&error)),
                DialError::Timeout => ("no-answer", 487),
                DialError::InvalidArgument(why) | DialError::Other(why) => {
                    log(Level::Warn, &format!("dial: {why}"));
                    ("failed", 500)
                }
            };
            result.insert("dial_call_status".into(), json!(status));
            result.insert("dial_sip_status".into(), json!(sip_status));
            return Ok(report(call, args, "dial", result));
        }
    };
    let callee_info = callee.info();
    // Answer the caller with the host's media (it may have been answered already, by an earlier verb or
    // before the dial).
    match call.answer(&[], None) {
        Ok(()) | Err(CallError::InvalidState(_)) => {}
        Err(error) => {
            let _ = callee.hangup();
            return Err(format!("the caller could not be connected: {error}"));
        }
    }
    if let Err(error) = media::bridge(call, &callee) {
        // A leg without media of the host's (a caller answered with a guest's own SDP): signalling only.
        log(Level::Warn, &format!("dial: the two calls' media are not bridged: {error:?}"));
    }
    let started = clock::now_ms();
    let limit_ms = args.get("timeLimit").and_then(Value::as_f64).map(|s| (s * 1000.0) as u64);
    let caller_left = bridge(call, &callee, started, limit_ms);
    if caller_left {
        let _ = callee.hangup();
    }
    result.insert("dial_call_status".into(), json!("completed"));
    result.insert("dial_sip_status".into(), json!(200));
    result.insert("dial_call_sid".into(), json!(callee_info.id));
    result.insert("dial_call_duration".into(), json!((clock::now_ms() - started) / 1000));
    Ok(report(call, args, "dial", result))
}

/// What the caller hears while the callee rings. As on jambonz, Twilio and SignalWire, the caller is
/// answered before the dial unless `answerOnBridge`; then it hears `dialMusic` (a URL or a list) from the
/// start, or else the ring-back tone of `ringTone` (a country, default `us`) from the callee's first
/// 18x. With `answerOnBridge` the caller is answered only when the callee is: the callee's 18x reach it
/// as a 180, and its phone rings.
struct Ringing {
    caller_answered: bool,
    ringback: Vec<media::AudioSource>,
    playback: Option<media::Playback>,
}

impl Ringing {
    fn start(caller: &Call, args: &Value) -> Result<Ringing, String> {
        let mut ringing = Ringing { caller_answered: false, ringback: Vec::new(), playback: None };
        if !args.get("answerOnBridge").and_then(Value::as_bool).unwrap_or(false) {
            match caller.answer(&[], None) {
                Ok(()) | Err(CallError::InvalidState(_)) => ringing.caller_answered = true,
                Err(error) => return Err(format!("the caller could not be answered: {error}")),
            }
        }
        let voice = sources::voice(None);
        let music = sources::strings(args.get("dialMusic"));
        let music = music.iter().map(|url| sources::url(url, &voice)).collect::<Result<Vec<_>, _>>()?;
        let country = args.get("ringTone").and_then(Value::as_str).unwrap_or("us").to_ascii_lowercase();
        ringing.ringback = if music.is_empty() {
            vec![media::AudioSource::Ringback(media::Ringback { country, duration_ms: None })]
        } else {
            music
        };
        if ringing.caller_answered && args.get("dialMusic").is_some() {
            ringing.play(caller);
        }
        Ok(ringing)
    }

    /// The callee rings (180 or 183).
    fn progress(&mut self, caller: &Call) {
        if !self.caller_answered {
            match caller.ring(180, &[], None) {
                // Answered meanwhile (by an earlier verb): it hears the ring-back instead.
                Err(CallError::InvalidState(_)) => self.caller_answered = true,
                _ => return,
            }
        }
        self.play(caller);
    }

    fn play(&mut self, caller: &Call) {
        if self.playback.is_some() {
            return;
        }
        let options = media::PlayOptions { loops: Some(0), volume_db: None, barge_in: false };
        match media::play(caller, &self.ringback, options) {
            Ok(playback) => self.playback = Some(playback),
            Err(error) => log(Level::Warn, &format!("dial: the ring-back cannot play: {}", error.message())),
        }
    }

    fn stop(&mut self) {
        if let Some(playback) = self.playback.take() {
            playback.stop();
        }
    }
}

/// Waits while the callee rings (its 18x go to `ringing`); a caller who hangs up cancels the callee
/// (487). The callee once answered, or why it was not.
fn ring_until_answered(caller: &Call, callee: Call, ringing: &mut Ringing) -> Result<Call, DialError> {
    loop {
        match wait(&[caller, &callee], None) {
            Some((CALLER, CallUpdate::Event(CallEvent::Ended(_)))) => {
                let _ = callee.hangup();
                return Err(DialError::Failed(487));
            }
            Some((CALLER, CallUpdate::Event(CallEvent::Request(request)))) => caller.answer_routine_request(&request),
            Some((CALLEE, CallUpdate::Progress(_))) => ringing.progress(caller),
            Some((CALLEE, CallUpdate::Answered(_))) => return Ok(callee),
            Some((CALLEE, CallUpdate::Event(CallEvent::Ended(reason)))) => {
                return Err(match reason {
                    EndReason::Failed(408) => DialError::Timeout,
                    EndReason::Failed(status) | EndReason::Rejected(status) => DialError::Failed(status),
                    _ => DialError::Failed(487),
                });
            }
            Some((CALLEE, CallUpdate::Event(CallEvent::Request(request)))) => callee.answer_routine_request(&request),
            _ => {}
        }
    }
}

fn error_status(error: &DialError) -> u16 {
    match error {
        DialError::Failed(status) => *status,
        _ => 500,
    }
}

/// Waits until one side of a bridged call hangs up (or the time limit passes: then the callee is hung up).
/// True when the caller left. Sleeps in the host until either side has something: no polling.
fn bridge(caller: &Call, callee: &Call, started: u64, limit_ms: Option<u64>) -> bool {
    loop {
        let left_ms = limit_ms.map(|limit| limit.saturating_sub(clock::now_ms() - started));
        if left_ms == Some(0) {
            let _ = callee.hangup();
            return false;
        }
        let timeout = left_ms.map(|ms| ms.min(u64::from(u32::MAX)) as u32);
        match wait(&[caller, callee], timeout) {
            Some((CALLER, CallUpdate::Event(CallEvent::Ended(_)))) => return true,
            Some((CALLER, CallUpdate::Event(CallEvent::Request(request)))) => caller.answer_routine_request(&request),
            Some((CALLEE, CallUpdate::Event(CallEvent::Ended(_)))) => return false,
            Some((CALLEE, CallUpdate::Event(CallEvent::Request(request)))) => callee.answer_routine_request(&request),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verb_has_an_object_schema() {
        let verbs = CoreVerbs::verbs();
        let names: Vec<&str> = verbs.iter().map(|verb| verb.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "say",
                "play",
                "gather",
                "dtmf",
                "conference",
                "record",
                "answer",
                "hangup",
                "pause",
                "tag",
                "config",
                "redirect",
                "sip:decline",
                "sip:request",
                "dial"
            ]
        );
        for verb in verbs {
            let schema: Value = callwright_sdk::serde_json::from_str(&verb.schema).unwrap();
            assert_eq!(schema["type"], "object", "{}", verb.name);
            assert!(schema["required"].is_array(), "{}", verb.name);
        }
    }
}
