//! SignalWire SWML `sip_refer`: a blind transfer by SIP REFER, reported through call variables.
//!
//! - Precondition: an answered call; otherwise, or with a target the host cannot make a Refer-To of, the verb
//!   fails with `sip_refer: <why>` before anything is sent.
//! - Sends the REFER to `to_uri` (answering a challenge with `username`/`password`) and waits for its
//!   outcome: the first final NOTIFY, the host's 15 s limit after the 202, or the end of the call.
//! - Sets `sip_refer_to`, `sip_refer_result` (= `return_value`), `sip_refer_response_code` and
//!   `sip_refer_to_response_code`, and posts a `calling.call.refer` event to `status_url`. A failed transfer
//!   is a result, not an error: SWML goes on with the next method.
//! - Cancelling: none of its own; the host ends the REFER's wait when the call ends.

use callwright_sdk::hooks::Hook;
use callwright_sdk::serde_json::{Value, json};
use callwright_sdk::transfer::ReferReport;
use callwright_sdk::{Call, Credentials, Level, ReferRequest, clock, log, variables};

use crate::arguments::{ArgumentError, Arguments};
use crate::{describe_call_error, queue_status_callback};

/// The method's name in SWML documents.
pub const NAME: &str = "sip_refer";

/// The JSON schema of its arguments.
pub const SCHEMA: &str = include_str!("../schemas/swml-sip-refer.json");

/// The arguments of `sip_refer`, checked.
#[derive(Debug, Clone)]
pub struct SipReferArgs {
    /// `to_uri`: the SIP URI to refer to.
    pub to_uri: String,
    /// `status_url`: gets the `calling.call.refer` event.
    pub status_url: Option<Hook>,
    /// `username` and `password`, for a challenged REFER.
    pub credentials: Option<Credentials>,
}

impl SipReferArgs {
    /// Checks a `sip_refer` method's JSON arguments. Unknown fields are ignored.
    pub fn parse(args: &Value) -> Result<SipReferArgs, ArgumentError> {
        let args = Arguments::new(args)?;
        Ok(SipReferArgs {
            to_uri: args.required_string("to_uri")?,
            status_url: args.hook("status_url")?,
            credentials: args.credentials()?,
        })
    }

    /// The REFER to send.
    pub fn refer_request(&self) -> ReferRequest {
        let mut request = ReferRequest::to(&self.to_uri);
        request.credentials = self.credentials.clone();
        request
    }
}

/// Runs `sip_refer` on `call`.
pub fn run(call: &Call, args: &Value) -> Result<Value, String> {
    let args = SipReferArgs::parse(args).map_err(|e| format!("{NAME}: {e}"))?;
    let call_id = call.info().id;
    let refer = call.sip_refer(&args.refer_request()).map_err(|e| format!("{NAME}: {}", describe_call_error(&e)))?;
    let report = refer.follow(|_| {});
    log(Level::Info, &format!("{NAME} to {}: {}", args.to_uri, report.outcome_name()));
    for (name, value) in report.swml_variables(&args.to_uri) {
        variables::set(name, &value);
    }
    if let Some(hook) = &args.status_url {
        queue_status_callback(hook, &status_event(&call_id, &args.to_uri, &report, clock::now_ms()));
    }
    Ok(verb_result(&report))
}

/// The `calling.call.refer` status callback, as SignalWire posts it. callwright has no projects or
/// spaces, so those ids are empty; the event channel names the call as its SWML session.
pub fn status_event(call_id: &str, to_uri: &str, report: &ReferReport, now_ms: u64) -> Value {
    json!({
        "event_type": "calling.call.refer",
        "event_channel": format!("swml:{call_id}"),
        "timestamp": now_ms as f64 / 1000.0,
        "project_id": "",
        "space_id": "",
        "params": report.swml_status_params(call_id, to_uri),
    })
}

/// What the verb returns: the overall result, also set as `sip_refer_result` and `return_value`.
pub fn verb_result(report: &ReferReport) -> Value {
    json!({ "sip_refer_result": report.swml_result(), "return_value": report.swml_result() })
}

#[cfg(test)]
mod tests {
    use callwright_sdk::ReferOutcome;
    use callwright_sdk::serde_json::json;

    use super::*;

    fn error(args: Value) -> String {
        format!("{NAME}: {}", SipReferArgs::parse(&args).unwrap_err())
    }

    #[test]
    fn the_seed_example() {
        let args = SipReferArgs::parse(&json!({"to_uri": "sip:alice@example.com"})).unwrap();
        let request = args.refer_request();
        assert_eq!(request.target, "sip:alice@example.com");
        assert!(request.credentials.is_none() && request.timeout_ms.is_none() && request.headers.is_empty());
        assert!(args.status_url.is_none());
    }

    #[test]
    fn every_field() {
        let args = SipReferArgs::parse(&json!({
            "to_uri": "sip:alice@example.com",
            "status_url": "https://app.example.com/refer-status",
            "username": "transfer",
            "password": "secret",
        }))
        .unwrap();
        assert_eq!(args.status_url.as_ref().unwrap().url, "https://app.example.com/refer-status");
        let credentials = args.refer_request().credentials.unwrap();
        assert_eq!((credentials.username.as_str(), credentials.password.as_str()), ("transfer", "secret"));
    }

    #[test]
    fn refused_arguments_name_method_and_field() {
        assert_eq!(error(json!({})), r#"sip_refer: "to_uri" is required"#);
        assert_eq!(error(json!({"to_uri": 15083084809u64})), r#"sip_refer: "to_uri" must be a string"#);
        assert_eq!(error(json!({"to_uri": ""})), r#"sip_refer: "to_uri" must not be empty"#);
        assert!(error(json!({"to_uri": "sip:a@b", "status_url": "ftp://x"})).starts_with(r#"sip_refer: "status_url""#));
        assert_eq!(
            error(json!({"to_uri": "sip:a@b", "username": "u"})),
            r#"sip_refer: "username" needs "password" too"#
        );
        assert_eq!(error(json!(null)), "sip_refer: the arguments must be a JSON object");
    }

    #[test]
    fn status_event_matches_signalwire() {
        let report = ReferReport {
            refer_status: Some(202),
            notify_statuses: vec![100, 200],
            outcome: ReferOutcome::Success(200),
        };
        assert_eq!(
            status_event("c-42", "sip:alice@example.com", &report, 1_640_000_000_123),
            json!({
                "event_type": "calling.call.refer",
                "event_channel": "swml:c-42",
                "timestamp": 1640000000.123,
                "project_id": "",
                "space_id": "",
                "params": {
                    "call_id": "c-42",
                    "sip_refer_to": "sip:alice@example.com",
                    "state": "success",
                    "sip_refer_response_code": "202",
                    "sip_notify_response_code": "200",
                },
            })
        );
        assert_eq!(verb_result(&report), json!({"sip_refer_result": "success", "return_value": "success"}));
        let refused =
            ReferReport { refer_status: Some(403), notify_statuses: vec![], outcome: ReferOutcome::Rejected(403) };
        assert_eq!(verb_result(&refused), json!({"sip_refer_result": "failed", "return_value": "failed"}));
    }
}
