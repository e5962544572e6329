//! Reading SWML documents: JSON or YAML text (or JSON already parsed) into a checked [`Document`].

use callwright_sdk::serde_json::{self, Map, Number, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// A checked SWML document: its sections, each a list of steps; `main` exists.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Section name → steps.
    pub sections: Map<String, Value>,
}

impl Document {
    /// A document from JSON: `{"version": …, "sections": {"main": [ … ], …}}`.
    pub fn from_value(value: &Value) -> Result<Document, String> {
        let Value::Object(fields) = value else {
            return Err("an SWML document must be an object with \"sections\"".into());
        };
        let Some(Value::Object(sections)) = fields.get("sections") else {
            return Err("an SWML document needs \"sections\", an object of section name to steps".into());
        };
        for (name, steps) in sections {
            if !steps.is_array() {
                return Err(format!("section {name:?} must be a list of steps"));
            }
        }
        if !sections.contains_key("main") {
            return Err("an SWML document needs a \"main\" section".into());
        }
        Ok(Document { sections: sections.clone() })
    }

    /// A document from text, JSON or YAML.
    pub fn parse(text: &str) -> Result<Document, String> {
        Document::from_value(&parse_text(text)?)
    }

    /// The steps of a section.
    pub fn section(&self, name: &str) -> Option<&[Value]> {
        self.sections.get(name).and_then(Value::as_array).map(Vec::as_slice)
    }
}

/// JSON or YAML text as JSON (JSON is YAML, but parsing it as JSON first keeps its numbers exact).
pub fn parse_text(text: &str) -> Result<Value, String> {
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return Ok(value);
    }
    let documents =
        YamlLoader::load_from_str(text).map_err(|e| format!("the document is neither JSON nor YAML: {e}"))?;
    match documents.as_slice() {
        [document] => yaml_to_json(document),
        [] => Err("the document is empty".into()),
        _ => Err("the YAML text holds several documents; give one".into()),
    }
}

fn yaml_to_json(yaml: &Yaml) -> Result<Value, String> {
    Ok(match yaml {
        Yaml::Null | Yaml::BadValue => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::Number((*i).into()),
        Yaml::Real(text) => {
            let number: f64 = text.parse().map_err(|_| format!("{text:?} is not a number"))?;
            Number::from_f64(number).map_or(Value::Null, Value::Number)
        }
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(items.iter().map(yaml_to_json).collect::<Result<_, _>>()?),
        Yaml::Hash(map) => {
            let mut object = Map::new();
            for (key, value) in map {
                let key = match key {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    Yaml::Real(r) => r.clone(),
                    other => return Err(format!("a YAML key must be a string, not {other:?}")),
                };
                object.insert(key, yaml_to_json(value)?);
            }
            Value::Object(object)
        }
        Yaml::Alias(_) => return Err("YAML aliases are not supported".into()),
    })
}

#[cfg(test)]
mod tests {
    use callwright_sdk::serde_json::json;

    use super::*;

    #[test]
    fn the_seed_example_in_yaml() {
        let document = Document::parse(
            "version: 1.0.0\nsections:\n  main:\n    - sip_refer:\n        to_uri: 'sip:alice@example.com'\n    - execute:\n        dest: 'https://example.com/handle_sip_refer_result'\n    - hangup\n",
        )
        .unwrap();
        assert_eq!(
            document.section("main").unwrap(),
            [
                json!({"sip_refer": {"to_uri": "sip:alice@example.com"}}),
                json!({"execute": {"dest": "https://example.com/handle_sip_refer_result"}}),
                json!("hangup"),
            ]
        );
    }

    #[test]
    fn json_and_yaml_agree_on_types() {
        let yaml = parse_text("a: 1\nb: 2.5\nc: true\nd: ~\ne: '7'\nf: [x, 2]\n").unwrap();
        assert_eq!(yaml, json!({"a": 1, "b": 2.5, "c": true, "d": null, "e": "7", "f": ["x", 2]}));
        assert_eq!(parse_text(r#"{"a": 1}"#).unwrap(), json!({"a": 1}));
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        assert_eq!(Document::parse("[1]").unwrap_err(), "an SWML document must be an object with \"sections\"");
        assert!(Document::parse("version: 1").unwrap_err().contains("needs \"sections\""));
        assert!(Document::parse("sections: {other: []}").unwrap_err().contains("\"main\" section"));
        assert!(Document::parse("sections: {main: 3}").unwrap_err().contains("must be a list of steps"));
        assert!(parse_text("a: [").unwrap_err().contains("neither JSON nor YAML"));
    }
}
