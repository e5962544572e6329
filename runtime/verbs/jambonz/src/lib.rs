//! The jambonz runner: a call flow (world `call-flow`) that runs jambonz apps unchanged.
//!
//! Its config is what the app's flow gives: `{"verbs": [ … ]}` (an inline verb array) or
//! `{"webhook": <hook>}` (the app's call hook, posted the call's fields and SIP details, answering with
//! the verb array), each optionally with `"status_hook": <hook>` (jambonz's call status hook).
//!
//! Every verb runs through verb dispatch: the runner itself knows only the shape of a jambonz document.
//! Both forms of a verb are accepted, `{"verb": "pause", "length": 1}` and `{"pause": {"length": 1}}`. When a
//! verb's result carries an `action_hook_response` that is a non-empty verb array, it replaces the rest of
//! the array, as in jambonz. Relative hook URLs (`"/action"`) are resolved against the call hook's URL.
//! `say`, `play`, `gather` (digits), `dtmf` and `conference` run as the built-in verbs (the call answered first); the other
//! verbs that need media (transcribe, listen, …) end the run with a clear error: they are not built yet. The run ends when the array does, when the call ends, or at the first error; the status
//! hook then gets `completed` (or `failed` with the error).

#![forbid(unsafe_code)]

use std::collections::VecDeque;

use callwright_sdk::hooks::{self, Hook};
use callwright_sdk::serde_json::{Map, Value, json};
use callwright_sdk::transfer::jambonz_call_fields;
use callwright_sdk::{Call, CallError, CallInfo, Config, Flow, Level, dispatch, documents, log, variables};

/// Verbs one call may run in total (a redirect loop ends here).
pub const MAX_VERBS_PER_CALL: usize = 1_000;

/// jambonz verbs that need a media path, which callwright does not have yet.
pub const MEDIA_VERBS: [&str; 12] = [
    "transcribe",
    "listen",
    "stream",
    "dub",
    "enqueue",
    "dequeue",
    "leave",
    "lex",
    "dialogflow",
    "llm",
    "alert",
    "message",
];

/// Verbs that act on an answered call: the runner answers first, as jambonz does.
const NEEDS_ANSWERED_CALL: [&str; 8] =
    ["pause", "sip:refer", "sip:request", "say", "play", "gather", "dtmf", "conference"];

/// The variable the `tag` verb keeps its data in.
const CUSTOMER_DATA: &str = "jambonz.customer_data";

/// The runner.
pub struct JambonzRunner;

impl Flow for JambonzRunner {
    fn handle(call: Call, config: Config) -> Result<(), String> {
        let config = config.0;
        let status_hook = config.get("status_hook").and_then(Hook::from_json);
        let info = call.info();
        notify_status(status_hook.as_ref(), &info, "trying", None);
        let outcome = run_app(&call, &info, &config);
        let (status, error) = match &outcome {
            Ok(()) => ("completed", None),
            Err(error) => ("failed", Some(error.as_str())),
        };
        if let Some(error) = error {
            log(Level::Error, &format!("jambonz app: {error}"));
        }
        notify_status(status_hook.as_ref(), &info, status, error);
        outcome
    }
}

#[cfg(target_arch = "wasm32")]
mod export {
    callwright_sdk::flow!(super::JambonzRunner);
}

/// Gets the verb array (inline or from the call hook) and runs it.
fn run_app(call: &Call, info: &CallInfo, config: &Value) -> Result<(), String> {
    let (verbs, base_url) = match (config.get("verbs"), config.get("webhook").and_then(Hook::from_json)) {
        (Some(verbs), _) => (verb_array(verbs, "the app's verbs")?, None),
        (None, Some(hook)) => {
            let payload = Value::Object(call_hook_payload(info));
            let response = hooks::send_json(&hook, &payload).map_err(|e| format!("call hook {}: {e}", hook.url))?;
            if !(200..300).contains(&response.status) {
                return Err(format!("call hook {} answered {}", hook.url, response.status));
            }
            let document = callwright_sdk::serde_json::from_str(&response.body)
                .map_err(|e| format!("call hook {} answered with something that is not JSON: {e}", hook.url))?;
            (verb_array(&document, &format!("call hook {}", hook.url))?, Some(hook.url))
        }
        (None, None) => return Err(r#"the app gives neither "verbs" nor "webhook""#.into()),
    };
    run_verbs(call, verbs, base_url.as_deref())
}

fn verb_array(document: &Value, source: &str) -> Result<Vec<Value>, String> {
    match document {
        Value::Array(verbs) => Ok(verbs.clone()),
        other => Err(format!("{source} must be a JSON array of verbs, not {}", documents::kind(other))),
    }
}

/// Runs verbs in order until the array ends, the call ends, or a verb fails. Every array (the first
/// and each one an actionHook returns) is checked whole before its first verb runs, as jambonz does.
pub fn run_verbs(call: &Call, verbs: Vec<Value>, base_url: Option<&str>) -> Result<(), String> {
    let mut queue = checked(verbs, base_url, 0)?;
    let mut executed = 0;
    while let Some((name, args)) = queue.pop_front() {
        executed += 1;
        if executed > MAX_VERBS_PER_CALL {
            return Err(format!("more than {MAX_VERBS_PER_CALL} verbs ran on this call (a redirect loop?)"));
        }
        if NEEDS_ANSWERED_CALL.contains(&name.as_str()) {
            match call.answer_if_needed() {
                Ok(()) => {}
                Err(CallError::CallEnded) => return Ok(()),
                Err(error) => return Err(format!("verb {executed} ({name}): answering the call failed: {error:?}")),
            }
        }
        let result =
            dispatch::run_verb(call, &name, &args).map_err(|e| format!("verb {executed} ({name}): {}", e.message()))?;
        if let Some(Value::Array(next)) = result.get("action_hook_response")
            && !next.is_empty()
        {
            queue = checked(next.clone(), base_url, executed)?;
        }
        if matches!(name.as_str(), "hangup" | "sip:decline") || call.has_ended() {
            return Ok(());
        }
    }
    Ok(())
}

/// Each verb of an array as (name, arguments), checked: its shape, that it needs no media, that a
/// module has it and that its arguments match its schema. Relative hook URLs become absolute. Errors
/// count verbs from `offset` + 1.
fn checked(verbs: Vec<Value>, base_url: Option<&str>, offset: usize) -> Result<VecDeque<(String, Value)>, String> {
    let mut queue = VecDeque::with_capacity(verbs.len());
    for (index, verb) in verbs.iter().enumerate() {
        let position = offset + index + 1;
        let (name, mut args) = normalize(verb).map_err(|e| format!("verb {position}: {e}"))?;
        if MEDIA_VERBS.contains(&name.as_str()) {
            return Err(format!(
                "verb {position} ({name:?}) needs media, which callwright does not carry yet; `GET /v1/verbs` lists the verbs that run"
            ));
        }
        if let Some(base) = base_url {
            absolutize_hooks(&mut args, base);
        }
        dispatch::check_verb(&name, &args).map_err(|e| format!("verb {position} ({name}): {}", e.message()))?;
        queue.push_back((name, args));
    }
    Ok(queue)
}

/// Splits a verb into its name and arguments: `{"verb": "x", …}` or `{"x": {…}}`.
pub fn normalize(verb: &Value) -> Result<(String, Value), String> {
    let Value::Object(fields) = verb else {
        return Err(format!("a verb must be a JSON object, not {}", documents::kind(verb)));
    };
    if let Some(name) = fields.get("verb") {
        let name = name.as_str().ok_or(r#""verb" must be a string"#)?;
        let mut args = fields.clone();
        args.remove("verb");
        return Ok((name.to_string(), Value::Object(args)));
    }
    match fields.iter().collect::<Vec<_>>().as_slice() {
        [(name, args @ Value::Object(_))] => Ok((name.to_string(), (*args).clone())),
        _ => Err(r#"a verb is {"verb": "<name>", …} or {"<name>": {…}}"#.into()),
    }
}

/// Makes the relative URLs of the verb's hooks (`actionHook`, `eventHook`, …) absolute against `base`.
fn absolutize_hooks(args: &mut Value, base: &str) {
    let Value::Object(fields) = args else { return };
    for (name, value) in fields.iter_mut() {
        if !name.ends_with("Hook") {
            continue;
        }
        let url = match value {
            Value::String(url) => url,
            Value::Object(hook) => match hook.get_mut("url") {
                Some(Value::String(url)) => url,
                _ => continue,
            },
            _ => continue,
        };
        *url = documents::resolve_url(url, Some(base));
    }
}

/// The call hook's payload: the call's fields and what the INVITE said, as jambonz sends them.
pub fn call_hook_payload(info: &CallInfo) -> Map<String, Value> {
    let mut payload = jambonz_call_fields(info, "trying");
    payload.insert("sip_status".into(), json!(100));
    payload.insert("caller_name".into(), json!(display_name(&info.from)));
    let (ip, port) = info.remote_address.rsplit_once(':').unwrap_or((&info.remote_address, ""));
    payload.insert("originating_sip_ip".into(), json!(ip.trim_start_matches('[').trim_end_matches(']')));
    payload.insert("originating_sip_port".into(), json!(port.parse::<u16>().ok()));
    let headers: Map<String, Value> =
        info.headers.iter().map(|h| (h.name.to_ascii_lowercase(), Value::String(h.value.clone()))).collect();
    let body = info.body.as_ref().map(|body| String::from_utf8_lossy(&body.data).into_owned());
    payload.insert(
        "sip".into(),
        json!({"method": "INVITE", "uri": info.request_uri, "headers": headers, "body": body,
               "transport": info.transport}),
    );
    payload
}

fn display_name(from: &str) -> String {
    from.split_once('<').map(|(name, _)| name.trim().trim_matches('"').to_string()).unwrap_or_default()
}

/// Queues a call status event to the status hook.
fn notify_status(hook: Option<&Hook>, info: &CallInfo, status: &str, error: Option<&str>) {
    let Some(hook) = hook else { return };
    let mut payload = jambonz_call_fields(info, status);
    if let Some(data) = variables::get(CUSTOMER_DATA).and_then(|text| callwright_sdk::serde_json::from_str(&text).ok())
    {
        payload.insert("customer_data".into(), data);
    }
    if let Some(error) = error {
        payload.insert("error".into(), json!(error));
    }
    if let Err(failure) = hooks::notify_json(hook, &Value::Object(payload)) {
        log(Level::Warn, &format!("status hook {} not queued: {failure}", hook.url));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_verb_forms() {
        assert_eq!(normalize(&json!({"verb": "pause", "length": 2})).unwrap(), ("pause".into(), json!({"length": 2})));
        assert_eq!(normalize(&json!({"pause": {"length": 2}})).unwrap(), ("pause".into(), json!({"length": 2})));
        assert_eq!(normalize(&json!({"hangup": {}})).unwrap(), ("hangup".into(), json!({})));
        assert!(normalize(&json!({"pause": 2})).unwrap_err().contains(r#"{"verb": "<name>""#));
        assert!(normalize(&json!({"a": {}, "b": {}})).is_err());
        assert_eq!(normalize(&json!({"verb": 7})).unwrap_err(), r#""verb" must be a string"#);
        assert_eq!(normalize(&json!("hangup")).unwrap_err(), "a verb must be a JSON object, not a string");
    }

    #[test]
    fn relative_hooks_resolve_against_the_call_hook() {
        let mut args = json!({"actionHook": "/action", "eventHook": {"url": "/events"}, "referTo": "/not-a-hook",
                              "statusHook": "https://other.example/s"});
        absolutize_hooks(&mut args, "http://127.0.0.1:8080/app/call?x=1");
        assert_eq!(args["actionHook"], "http://127.0.0.1:8080/action");
        assert_eq!(args["eventHook"]["url"], "http://127.0.0.1:8080/events");
        assert_eq!(args["referTo"], "/not-a-hook");
        assert_eq!(args["statusHook"], "https://other.example/s");
    }

    #[test]
    fn caller_display_name() {
        assert_eq!(display_name(r#""Alice Smith" <sip:alice@example.com>;tag=1"#), "Alice Smith");
        assert_eq!(display_name("<sip:alice@example.com>"), "");
        assert_eq!(display_name("sip:alice@example.com"), "");
    }
}
