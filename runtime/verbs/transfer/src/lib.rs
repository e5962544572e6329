//! The built-in transfer verbs, as a callwright verb module (world `verb`): jambonz's `sip:refer` and
//! SignalWire SWML's `sip_refer`, each a blind transfer by SIP REFER reported the way its platform does.
//! The reports come from the SDK's [`ReferReport`](callwright_sdk::transfer::ReferReport), so these verbs
//! and hand-written flows describe a transfer alike.
//!
//! One file per verb ([`jambonz_sip_refer`], [`swml_sip_refer`]), each checking its JSON arguments in a
//! plain function before it touches the call, so a bad document fails with the verb and field named:
//!
//! ```
//! use callwright_sdk::serde_json::json;
//! use callwright_verbs_transfer::jambonz_sip_refer::ReferArgs;
//!
//! let args = json!({"referTo": 15083084809u64, "actionHook": "https://app.example.com/action"});
//! let refer = ReferArgs::parse(&args).unwrap().refer_request();
//! assert_eq!(refer.target, "15083084809"); // the host makes it sip:15083084809@<the far end's host>
//! assert_eq!(refer.timeout_ms, Some(15_000));
//!
//! let error = ReferArgs::parse(&json!({"referredBy": "sip:alice@example.com"})).unwrap_err();
//! assert_eq!(error.to_string(), r#""referTo" is required"#);
//! ```
//!
//! Argument schemas live apart, in `schemas/*.json`, and are what `list-verbs` returns.

#![forbid(unsafe_code)]

pub mod arguments;
pub mod jambonz_sip_refer;
pub mod swml_sip_refer;

use callwright_sdk::hooks::{self, Hook};
use callwright_sdk::serde_json::Value;
use callwright_sdk::{Call, CallError, Level, VerbSpec, Verbs, log};

/// The module's verbs.
pub struct TransferVerbs;

impl Verbs for TransferVerbs {
    fn verbs() -> Vec<VerbSpec> {
        [(jambonz_sip_refer::NAME, jambonz_sip_refer::SCHEMA), (swml_sip_refer::NAME, swml_sip_refer::SCHEMA)]
            .into_iter()
            .map(|(name, schema)| VerbSpec { name: name.into(), schema: schema.into() })
            .collect()
    }

    fn run(call: &Call, name: &str, args: Value) -> Result<Value, String> {
        match name {
            jambonz_sip_refer::NAME => jambonz_sip_refer::run(call, &args),
            swml_sip_refer::NAME => swml_sip_refer::run(call, &args),
            other => Err(format!(
                "this module has no verb {other:?} (it has {:?} and {:?})",
                jambonz_sip_refer::NAME,
                swml_sip_refer::NAME
            )),
        }
    }
}

// Only the component carries the export glue: a native cdylib cannot link export names such as
// `cabi_post_callwright:voice/verbs@0.1.0#list-verbs`, and `cargo test` builds this crate natively.
#[cfg(target_arch = "wasm32")]
mod export {
    callwright_sdk::verbs!(super::TransferVerbs);
}

/// Why the host would not send a REFER, in words for the verb's error.
pub(crate) fn describe_call_error(error: &CallError) -> String {
    match error {
        CallError::CallEnded => "the call has ended".into(),
        CallError::InvalidState(why) | CallError::InvalidArgument(why) | CallError::Other(why) => why.clone(),
        CallError::Timeout => "the host timed out sending the REFER".into(),
    }
}

/// Queues a status callback (delivered in order, retried by the host). A hook the host refuses is
/// logged: the transfer it reports on goes on regardless.
pub(crate) fn queue_status_callback(hook: &Hook, payload: &Value) {
    if let Err(error) = hooks::notify_json(hook, payload) {
        log(Level::Warn, &format!("status callback to {} not sent: {error}", hook.url));
    }
}

#[cfg(test)]
mod tests {
    use callwright_sdk::serde_json::{self, json};

    use super::*;

    /// A sample of the arguments each verb accepts, with every field its schema lists.
    fn full_arguments(name: &str) -> Value {
        match name {
            jambonz_sip_refer::NAME => json!({
                "referTo": "sip:bob@example.com", "referredBy": "sip:alice@example.com", "headers": {"X-A": "b"},
                "actionHook": "https://app.example.com/action", "eventHook": {"url": "https://app.example.com/e"},
                "username": "u", "password": "p", "replaces": "call-7", "timeout": 20,
            }),
            swml_sip_refer::NAME => json!({
                "to_uri": "sip:bob@example.com", "status_url": "https://app.example.com/status",
                "username": "u", "password": "p",
            }),
            other => panic!("no sample for {other}"),
        }
    }

    fn parses(name: &str, args: &Value) -> bool {
        match name {
            jambonz_sip_refer::NAME => jambonz_sip_refer::ReferArgs::parse(args).is_ok(),
            swml_sip_refer::NAME => swml_sip_refer::SipReferArgs::parse(args).is_ok(),
            other => panic!("no parser for {other}"),
        }
    }

    #[test]
    fn every_verb_has_a_draft_2020_12_object_schema_that_matches_its_parser() {
        let verbs = TransferVerbs::verbs();
        assert_eq!(verbs.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["sip:refer", "sip_refer"]);
        for verb in verbs {
            let schema: Value = serde_json::from_str(&verb.schema).unwrap();
            assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema", "{}", verb.name);
            assert_eq!(schema["type"], "object");
            assert_eq!(schema["additionalProperties"], true);
            let properties = schema["properties"].as_object().unwrap();
            let sample = full_arguments(&verb.name);
            let mut sample_fields: Vec<_> = sample.as_object().unwrap().keys().collect();
            sample_fields.sort();
            assert_eq!(properties.keys().collect::<Vec<_>>(), sample_fields, "{}: schema vs sample", verb.name);
            assert!(parses(&verb.name, &sample), "{} refuses its own sample", verb.name);
            // Each required field is required by the parser too.
            for required in schema["required"].as_array().unwrap() {
                let mut without = sample.clone();
                without.as_object_mut().unwrap().remove(required.as_str().unwrap());
                assert!(!parses(&verb.name, &without), "{} accepts arguments without {required}", verb.name);
            }
        }
    }
}
