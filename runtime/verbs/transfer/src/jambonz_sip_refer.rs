//! jambonz `sip:refer`: a blind (or, with `replaces`, attended) transfer by SIP REFER.
//!
//! - Precondition: an answered call; otherwise, or with a target the host cannot make a Refer-To of, the verb
//!   fails with `sip:refer: <why>` before anything is sent.
//! - Sends the REFER with the document's `headers` (a `Refer-To` or `Referred-By` among them is dropped: as
//!   in jambonz, the verb sets those), then follows it: every NOTIFY's sipfrag status goes to `eventHook` as
//!   `{"event": "transfer-status", "call_status": "180"}`, queued so the app sees them in order.
//! - Ends on a refused REFER, on the first final NOTIFY, `timeout` seconds after the 202 (jambonz bug #217
//!   hung forever there), or when the call ends (jambonz bug #1258 then skipped the actionHook). In every
//!   case `actionHook` gets the call's fields with `refer_status` and `final_referred_call_status`, and its
//!   answer (jambonz lets it return a new verb array) is handed back to the caller. A refused REFER is not
//!   an error: jambonz goes on with the next verb.
//! - Cancelling: none of its own; the host ends the REFER's wait when the call ends.

use callwright_sdk::hooks::{self, Hook};
use callwright_sdk::serde_json::{Value, json};
use callwright_sdk::transfer::{ReferReport, jambonz_call_fields};
use callwright_sdk::{Call, CallInfo, Credentials, Header, Level, ReferOutcome, ReferRequest, log};

use crate::arguments::{ArgumentError, Arguments, wrong_type};
use crate::{describe_call_error, queue_status_callback};

/// The verb's name in jambonz documents.
pub const NAME: &str = "sip:refer";

/// The JSON schema of its arguments.
pub const SCHEMA: &str = include_str!("../schemas/jambonz-sip-refer.json");

/// How long to wait for the final NOTIFY after the 202, as jambonz does.
pub const DEFAULT_TIMEOUT_MS: u32 = 15_000;

/// Header fields the verb sets itself (with their compact forms, RFC 3515 `r` and RFC 3892 `b`).
const HEADERS_SET_BY_THE_VERB: [&str; 5] = ["Refer-To", "r", "Referred-By", "b", "Refer-Sub"];

/// The arguments of `sip:refer`, checked.
#[derive(Debug, Clone)]
pub struct ReferArgs {
    /// `referTo`: a SIP or tel URI, or a number (which the host turns into `sip:<n>@<far end's host>`).
    pub refer_to: String,
    /// `referredBy`; none: the party being transferred.
    pub referred_by: Option<String>,
    /// `headers`, less the ones the verb sets.
    pub headers: Vec<Header>,
    /// Names of `headers` dropped because the verb sets them.
    pub dropped_headers: Vec<String>,
    /// `actionHook`: gets the result.
    pub action_hook: Option<Hook>,
    /// `eventHook`: gets each NOTIFY's status.
    pub event_hook: Option<Hook>,
    /// `username` and `password`, for a challenged REFER (a callwright extra).
    pub credentials: Option<Credentials>,
    /// `replaces`: the id of another call whose far end the transferee's new call replaces (a callwright
    /// extra: attended transfer).
    pub replaces: Option<String>,
    /// `timeout` (seconds after the 202, default 15), in milliseconds.
    pub timeout_ms: u32,
}

impl ReferArgs {
    /// Checks a `sip:refer` verb's JSON arguments. Unknown fields (such as `"verb"` itself) are ignored.
    pub fn parse(args: &Value) -> Result<ReferArgs, ArgumentError> {
        let args = Arguments::new(args)?;
        let (headers, dropped_headers) = args
            .headers("headers")?
            .into_iter()
            .partition(|header| !HEADERS_SET_BY_THE_VERB.iter().any(|name| name.eq_ignore_ascii_case(&header.name)));
        Ok(ReferArgs {
            refer_to: refer_to(&args)?,
            referred_by: args.string("referredBy")?,
            headers,
            dropped_headers: dropped_headers.into_iter().map(|header: Header| header.name).collect(),
            action_hook: args.hook("actionHook")?,
            event_hook: args.hook("eventHook")?,
            credentials: args.credentials()?,
            replaces: args.string("replaces")?,
            timeout_ms: args.seconds_as_ms("timeout")?.unwrap_or(DEFAULT_TIMEOUT_MS),
        })
    }

    /// The REFER to send.
    pub fn refer_request(&self) -> ReferRequest {
        ReferRequest {
            target: self.refer_to.clone(),
            referred_by: self.referred_by.clone(),
            headers: self.headers.clone(),
            credentials: self.credentials.clone(),
            no_refer_sub: false,
            replaces: self.replaces.clone(),
            timeout_ms: Some(self.timeout_ms),
        }
    }
}

/// `referTo`: a string, or a number as jambonz documents write phone numbers (`"referTo": 15083084809`).
fn refer_to(args: &Arguments<'_>) -> Result<String, ArgumentError> {
    match args.get("referTo") {
        None | Some(Value::String(_)) => args.required_string("referTo"),
        Some(Value::Number(number)) if number.is_u64() => Ok(number.to_string()),
        Some(Value::Number(_)) => Err(wrong_type("referTo", "a phone number without sign or fraction (or a string)")),
        Some(_) => Err(wrong_type("referTo", "a SIP or tel URI, or a phone number")),
    }
}

/// Runs `sip:refer` on `call`.
pub fn run(call: &Call, args: &Value) -> Result<Value, String> {
    let args = ReferArgs::parse(args).map_err(|e| format!("{NAME}: {e}"))?;
    if !args.dropped_headers.is_empty() {
        log(Level::Warn, &format!("{NAME}: ignoring headers {:?}: the verb sets them", args.dropped_headers));
    }
    // Read before the REFER: a successful transfer usually ends the call.
    let info = call.info();
    let refer = call.sip_refer(&args.refer_request()).map_err(|e| format!("{NAME}: {}", describe_call_error(&e)))?;
    let report = refer.follow(|status| {
        if let Some(hook) = &args.event_hook {
            queue_status_callback(hook, &transfer_status(status));
        }
    });
    log(Level::Info, &format!("{NAME} to {}: {}", args.refer_to, report.outcome_name()));
    let hook_response =
        args.action_hook.as_ref().and_then(|hook| hooks::send_for_answer(hook, &action_payload(&info, &report), NAME));
    Ok(verb_result(&report, hook_response))
}

/// The eventHook payload for one NOTIFY.
pub fn transfer_status(status: u16) -> Value {
    json!({ "event": "transfer-status", "call_status": status.to_string() })
}

/// The actionHook payload: jambonz's call fields (snake_case, as jambonz sends them) and the REFER's result.
pub fn action_payload(info: &CallInfo, report: &ReferReport) -> Value {
    // The call's own state: up while the REFER ran, unless it ended under it.
    let call_status = if matches!(report.outcome, ReferOutcome::CallEnded) { "completed" } else { "in-progress" };
    let mut payload = jambonz_call_fields(info, call_status);
    payload.extend(report.jambonz_action_fields());
    Value::Object(payload)
}

/// What the verb returns: the REFER's result and the actionHook's answer (null when there was none).
pub fn verb_result(report: &ReferReport, action_hook_response: Option<Value>) -> Value {
    let mut result = Value::Object(report.jambonz_action_fields());
    for field in ["refer_status", "final_referred_call_status"] {
        if result.get(field).is_none() {
            result[field] = Value::Null;
        }
    }
    result["outcome"] = json!(report.outcome_name());
    result["action_hook_response"] = action_hook_response.unwrap_or(Value::Null);
    result
}

#[cfg(test)]
mod tests {
    use callwright_sdk::Direction;
    use callwright_sdk::serde_json::json;

    use super::*;

    fn error(args: Value) -> String {
        format!("{NAME}: {}", ReferArgs::parse(&args).unwrap_err())
    }

    #[test]
    fn the_seed_example_with_a_numeric_target() {
        let args = ReferArgs::parse(&json!({
            "verb": "sip:refer",
            "referTo": 15083084809u64,
            "actionHook": "https://app.example.com/action",
        }))
        .unwrap();
        assert_eq!(args.refer_to, "15083084809");
        assert_eq!(args.action_hook.unwrap().url, "https://app.example.com/action");
        assert!(args.event_hook.is_none());
        let request = ReferArgs::parse(&json!({"referTo": "sip:bob@example.com"})).unwrap().refer_request();
        assert_eq!(request.target, "sip:bob@example.com");
        assert_eq!(request.timeout_ms, Some(DEFAULT_TIMEOUT_MS));
        assert!(request.referred_by.is_none() && request.credentials.is_none() && request.replaces.is_none());
        assert!(!request.no_refer_sub);
    }

    #[test]
    fn every_field() {
        let args = ReferArgs::parse(&json!({
            "referTo": "<sip:bob@example.com>",
            "referredBy": "sip:alice@example.com",
            "headers": {"X-Reason": "after hours", "refer-to": "sip:evil@example.com", "b": "x"},
            "actionHook": {"url": "https://app.example.com/action", "method": "GET"},
            "eventHook": {"url": "https://app.example.com/events", "username": "u", "password": "p"},
            "username": "transfer",
            "password": "secret",
            "replaces": "call-7",
            "timeout": 30,
        }))
        .unwrap();
        let request = args.refer_request();
        assert_eq!(request.target, "<sip:bob@example.com>");
        assert_eq!(request.referred_by.as_deref(), Some("sip:alice@example.com"));
        assert_eq!(request.headers.len(), 1);
        assert_eq!((request.headers[0].name.as_str(), request.headers[0].value.as_str()), ("X-Reason", "after hours"));
        assert_eq!(args.dropped_headers, ["b", "refer-to"]);
        let credentials = request.credentials.unwrap();
        assert_eq!((credentials.username.as_str(), credentials.password.as_str()), ("transfer", "secret"));
        assert_eq!(request.replaces.as_deref(), Some("call-7"));
        assert_eq!(request.timeout_ms, Some(30_000));
        assert_eq!(args.action_hook.unwrap().method.as_deref(), Some("GET"));
        assert_eq!(args.event_hook.unwrap().username.as_deref(), Some("u"));
    }

    #[test]
    fn refused_arguments_name_verb_and_field() {
        assert_eq!(error(json!({})), r#"sip:refer: "referTo" is required"#);
        assert_eq!(error(json!({"referTo": null})), r#"sip:refer: "referTo" is required"#);
        assert_eq!(error(json!({"referTo": " "})), r#"sip:refer: "referTo" must not be empty"#);
        assert_eq!(
            error(json!({"referTo": true})),
            r#"sip:refer: "referTo" must be a SIP or tel URI, or a phone number"#
        );
        assert!(
            error(json!({"referTo": -1})).starts_with(r#"sip:refer: "referTo" must be a phone number without sign"#)
        );
        assert!(
            error(json!({"referTo": 1.5})).starts_with(r#"sip:refer: "referTo" must be a phone number without sign"#)
        );
        assert_eq!(error(json!({"referTo": "1", "referredBy": 2})), r#"sip:refer: "referredBy" must be a string"#);
        assert_eq!(
            error(json!({"referTo": "1", "headers": ["X-A: b"]})),
            r#"sip:refer: "headers" must be an object of header names to strings"#
        );
        assert!(error(json!({"referTo": "1", "eventHook": 7})).starts_with(r#"sip:refer: "eventHook" must be a URL"#));
        assert_eq!(error(json!({"referTo": "1", "password": "p"})), r#"sip:refer: "password" needs "username" too"#);
        assert_eq!(error(json!({"referTo": "1", "timeout": 0})), r#"sip:refer: "timeout" must be more than 0 seconds"#);
        assert_eq!(error(json!({"referTo": "1", "replaces": 7})), r#"sip:refer: "replaces" must be a string"#);
        assert_eq!(error(json!("sip:bob@example.com")), "sip:refer: the arguments must be a JSON object");
    }

    fn call_info() -> CallInfo {
        CallInfo {
            id: "c-42".into(),
            sip_call_id: "abc@10.0.0.1".into(),
            from: "<sip:1000@10.0.0.1>;tag=x".into(),
            to: "<sip:2000@10.0.0.2>".into(),
            to_user: "2000".into(),
            from_user: "1000".into(),
            direction: Direction::Inbound,
            request_uri: "sip:2000@10.0.0.2".into(),
            headers: Vec::new(),
            body: None,
            remote_address: "10.0.0.1:5060".into(),
            transport: "udp".into(),
        }
    }

    fn report(refer_status: Option<u16>, notify_statuses: &[u16], outcome: ReferOutcome) -> ReferReport {
        ReferReport { refer_status, notify_statuses: notify_statuses.to_vec(), outcome }
    }

    #[test]
    fn action_hook_payload_carries_the_call_and_the_result() {
        let done = report(Some(202), &[100, 180, 200], ReferOutcome::Success(200));
        assert_eq!(
            action_payload(&call_info(), &done),
            json!({
                "call_sid": "c-42", "call_id": "abc@10.0.0.1", "direction": "inbound", "from": "1000", "to": "2000",
                "sip_status": 200, "call_status": "in-progress",
                "refer_status": 202, "final_referred_call_status": 200,
            })
        );
        // A BYE right after the 202 still reaches the actionHook, with what was known.
        let hung_up = report(Some(202), &[], ReferOutcome::CallEnded);
        let payload = action_payload(&call_info(), &hung_up);
        assert_eq!((payload["call_status"].as_str(), payload["refer_status"].as_u64()), (Some("completed"), Some(202)));
        assert!(payload.get("final_referred_call_status").is_none());
    }

    #[test]
    fn verb_result_always_has_every_field() {
        let refused = report(Some(603), &[], ReferOutcome::Rejected(603));
        assert_eq!(
            verb_result(&refused, None),
            json!({"refer_status": 603, "final_referred_call_status": null, "outcome": "rejected",
                   "action_hook_response": null})
        );
        let busy = report(Some(202), &[100, 486], ReferOutcome::Failed(486));
        let next_verbs = json!([{"verb": "say", "text": "The line is busy"}]);
        assert_eq!(
            verb_result(&busy, Some(next_verbs.clone())),
            json!({"refer_status": 202, "final_referred_call_status": 486, "outcome": "failed",
                   "action_hook_response": next_verbs})
        );
        assert_eq!(transfer_status(180), json!({"event": "transfer-status", "call_status": "180"}));
    }
}
