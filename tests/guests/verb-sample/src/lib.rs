//! Test guest for the verb world: implements `sample:answer` and `sample:echo`.

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
        ]
    }

    fn run(call: &Call, name: &str, args: Value) -> Result<Value, String> {
        match name {
            "sample:answer" => call.answer(&[], None).map(|()| json!({})).map_err(|e| e.to_string()),
            "sample:echo" => Ok(json!({ "text": args["text"], "call": call.info().id })),
            other => Err(format!("no verb {other}: {}", serde_json::to_string(&args).unwrap_or_default())),
        }
    }
}

verbs!(Sample);
