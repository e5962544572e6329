//! A custom verb: `lookup:refer` asks the app's server where a number should go, then answers the call if
//! needed and transfers it there, by running the built-in `answer` and `sip:refer` verbs (or whichever
//! modules the app uses for them).
//!
//! Arguments (checked by the host against the schema below before the verb runs):
//! - `lookupHook` (required): gets `{"number": …, "call_sid": …}` and answers `{"referTo": "<target>"}`.
//! - `number`: what to look up; default the number the caller dialled.
//! - `actionHook`, `eventHook`: passed on to `sip:refer`, whose result this verb returns (so a jambonz
//!   runner sees `action_hook_response` as usual).

use callwright_sdk::hooks::{Hook, send_json};
use callwright_sdk::serde_json::{Value, json};
use callwright_sdk::{Call, Level, VerbSpec, Verbs, dispatch, log, verbs};

/// The verb's name: prefixed, so it cannot clash with a jambonz or SWML verb.
const NAME: &str = "lookup:refer";

struct LookupVerbs;

impl Verbs for LookupVerbs {
    fn verbs() -> Vec<VerbSpec> {
        let hook = json!({"oneOf": [
            {"type": "string"},
            {"type": "object", "required": ["url"], "properties": {"url": {"type": "string"}}},
        ]});
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "lookupHook": hook,
                "number": {"type": "string", "minLength": 1},
                "actionHook": hook,
                "eventHook": hook,
            },
            "required": ["lookupHook"],
        });
        vec![VerbSpec { name: NAME.into(), schema: schema.to_string() }]
    }

    fn run(call: &Call, _name: &str, args: Value) -> Result<Value, String> {
        let info = call.info();
        let number = args.get("number").and_then(Value::as_str).unwrap_or(&info.to_user);
        let lookup = Hook::from_json(&args["lookupHook"]).ok_or(format!("{NAME}: bad lookupHook"))?;
        let answer = send_json(&lookup, &json!({"number": number, "call_sid": info.id}))
            .map_err(|e| format!("{NAME}: lookup failed: {e:?}"))?;
        let found: Value = callwright_sdk::serde_json::from_str(&answer.body).unwrap_or(Value::Null);
        let Some(target) = found.get("referTo").and_then(Value::as_str) else {
            return Err(format!("{NAME}: the lookup for {number} gave no referTo (status {})", answer.status));
        };
        log(Level::Info, &format!("{NAME}: {number} goes to {target}"));
        let mut refer = json!({"referTo": target});
        for hook in ["actionHook", "eventHook"] {
            if let Some(value) = args.get(hook) {
                refer[hook] = value.clone();
            }
        }
        // A REFER needs an answered call; the built-in `answer` leaves an answered call as it is.
        dispatch::run_verb(call, "answer", &json!({})).map_err(|e| format!("{NAME}: {}", e.message()))?;
        dispatch::run_verb(call, "sip:refer", &refer).map_err(|e| format!("{NAME}: {}", e.message()))
    }
}

verbs!(LookupVerbs);
