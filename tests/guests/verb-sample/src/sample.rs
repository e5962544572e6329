// The verbs of the sample module, shared by both versions (each defines `VERSION` and includes this).

use callwright_sdk::hooks::{Hook, send_json};
use callwright_sdk::serde_json::{self, Value, json};
use callwright_sdk::{Call, VerbSpec, Verbs, verbs};

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
