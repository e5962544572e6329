// The verbs of the sample module, shared by both versions (each defines `VERSION` and includes this).

use callwright_sdk::hooks::{Hook, send_json};
use callwright_sdk::serde_json::{self, Value, json};
use callwright_sdk::{Call, DialRequest, VerbSpec, Verbs, dial, dispatch, verbs};

struct Sample;

impl Verbs for Sample {
    fn verbs() -> Vec<VerbSpec> {
        vec![
            VerbSpec { name: "sample:answer".into(), schema: r#"{"type": "object"}"#.into() },
            VerbSpec {
                name: "sample:echo".into(),
                schema: r#"{"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}"#
                    .into(),
            },
            VerbSpec { name: "sample:recurse".into(), schema: r#"{"type": "object"}"#.into() },
            VerbSpec {
                name: "sample:hoard".into(),
                schema: r#"{"type": "object", "properties": {"mib": {"type": "integer", "minimum": 0}, "then": {"type": "object"}}, "required": ["mib"]}"#
                    .into(),
            },
            VerbSpec {
                name: "sample:dial".into(),
                schema: r#"{"type": "object", "properties": {"target": {"type": "string"}}, "required": ["target"]}"#
                    .into(),
            },
            VerbSpec {
                name: "sample:report".into(),
                schema: r#"{"type": "object", "properties": {"hook": {"type": "string"}}, "required": ["hook"]}"#
                    .into(),
            },
        ]
    }

    fn run(call: &Call, name: &str, args: Value) -> Result<Value, String> {
        match name {
            "sample:answer" => call.answer(&[], None).map(|()| json!({})).map_err(|e| e.to_string()),
            // Places a call and returns without hanging it up: the host must end it with the verb.
            "sample:dial" => {
                let callee = dial(&DialRequest::to(args["target"].as_str().unwrap_or_default())).map_err(|e| format!("{e:?}"))?;
                Ok(json!({ "dialled": callee.info().id }))
            }
            // Runs itself: the host's nesting limit must end it.
            "sample:recurse" => dispatch::run_verb(call, "sample:recurse", &json!({})).map_err(|e| e.message().to_string()),
            // Holds `mib` MiB of its memory (touched) while it runs the verb `then` names, if any.
            "sample:hoard" => {
                let held = std::hint::black_box(vec![1u8; args["mib"].as_u64().unwrap_or(0) as usize * 1024 * 1024]);
                let nested = match args.get("then") {
                    Some(then) => {
                        let name = then["verb"].as_str().unwrap_or_default();
                        Some(dispatch::run_verb(call, name, &then["args"]).map_err(|e| e.message().to_string())?)
                    }
                    None => None,
                };
                Ok(json!({ "held_mib": held.len() >> 20, "nested": nested }))
            }
            "sample:echo" => Ok(json!({ "text": args["text"], "call": call.info().id, "version": VERSION })),
            "sample:report" => {
                let hook = Hook::post(args["hook"].as_str().unwrap_or_default());
                let payload = json!({ "version": VERSION, "call": call.info().id });
                send_json(&hook, &payload).map_err(|e| e.to_string())?;
                Ok(payload)
            }
            other => Err(format!("no verb {other}: {}", serde_json::to_string(&args).unwrap_or_default())),
        }
    }
}

verbs!(Sample);
