//! Checks verb arguments against the JSON schema their verb declares, so every verb, built-in or
//! uploaded, refuses bad arguments the same way and with the field named.
//!
//! The validation keywords of JSON Schema draft 2020-12 that describe JSON values are applied: `type`,
//! `enum`, `const`, `properties`, `required`, `additionalProperties`, `items`, `prefixItems`, `minItems`,
//! `maxItems`, `minLength`, `maxLength`, `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`,
//! `multipleOf`, `allOf`, `anyOf`, `oneOf`, `not`, and `$ref` to a place in the same document (`#`,
//! `#/$defs/...`). `format` is an annotation (as the draft says by default) and so are `title`,
//! `description` and `default`. `pattern` and `patternProperties` are not applied (no regular expression
//! engine in the host); [`unsupported_keywords`] lists them so an upload can say so.

use std::fmt;

use serde_json::{Map, Value};

/// How deep `$ref`s may nest before a schema counts as cyclic.
const MAX_DEPTH: usize = 64;

/// Keywords this validator ignores although they constrain values.
const UNAPPLIED: [&str; 6] =
    ["pattern", "patternProperties", "dependentSchemas", "dependentRequired", "if", "$dynamicRef"];

/// Why a value does not match a schema: where (a path such as `headers.X-A` or `verbs[2]`, empty for the
/// value itself) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// Where in the value.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { write!(f, "{}", self.message) } else { write!(f, "{:?} {}", self.path, self.message) }
    }
}

impl std::error::Error for SchemaError {}

/// Checks `value` against `schema` (the root of its document, for `$ref`).
pub fn validate(schema: &Value, value: &Value) -> Result<(), SchemaError> {
    Validator { root: schema }.check(schema, value, &mut String::new(), 0)
}

/// Keywords in `schema` (anywhere in it) that constrain values but that [`validate`] does not apply.
pub fn unsupported_keywords(schema: &Value) -> Vec<String> {
    let mut found = Vec::new();
    collect_unapplied(schema, &mut found);
    found.sort();
    found.dedup();
    found
}

fn collect_unapplied(schema: &Value, found: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                if UNAPPLIED.contains(&key.as_str()) {
                    found.push(key.clone());
                }
                // `properties` and `$defs` map names to schemas: a property named "pattern" is not the keyword.
                if matches!(key.as_str(), "properties" | "$defs" | "definitions") {
                    if let Value::Object(children) = value {
                        children.values().for_each(|child| collect_unapplied(child, found));
                    }
                } else {
                    collect_unapplied(value, found);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_unapplied(item, found)),
        _ => {}
    }
}

struct Validator<'a> {
    root: &'a Value,
}

fn error(path: &str, message: impl Into<String>) -> SchemaError {
    SchemaError { path: path.to_string(), message: message.into() }
}

/// The JSON type name of a value, as schemas spell them.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if is_integer(n) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(number: &serde_json::Number) -> bool {
    number.is_i64() || number.is_u64() || number.as_f64().is_some_and(|f| f.fract() == 0.0)
}

fn has_type(value: &Value, name: &str) -> bool {
    let actual = type_name(value);
    actual == name || (name == "number" && actual == "integer")
}

/// Runs `check` with `path` extended by `step`, then restores it.
fn at<T>(path: &mut String, step: &str, check: impl FnOnce(&mut String) -> T) -> T {
    let length = path.len();
    if !step.starts_with('[') && !path.is_empty() {
        path.push('.');
    }
    path.push_str(step);
    let result = check(path);
    path.truncate(length);
    result
}

impl<'a> Validator<'a> {
    fn check(&self, schema: &'a Value, value: &Value, path: &mut String, depth: usize) -> Result<(), SchemaError> {
        if depth > MAX_DEPTH {
            return Err(error(path, "cannot be checked: the schema's $refs nest too deep (a cycle?)"));
        }
        let map = match schema {
            Value::Bool(true) => return Ok(()),
            Value::Bool(false) => return Err(error(path, "is not allowed")),
            Value::Object(map) => map,
            _ => return Ok(()),
        };
        if let Some(Value::String(reference)) = map.get("$ref") {
            let target =
                self.resolve(reference).ok_or_else(|| error(path, format!("has an unknown $ref {reference:?}")))?;
            self.check(target, value, path, depth + 1)?;
        }
        self.check_type(map, value, path)?;
        if let Some(Value::Array(allowed)) = map.get("enum")
            && !allowed.contains(value)
        {
            return Err(error(path, format!("must be one of {}", list(allowed))));
        }
        if let Some(expected) = map.get("const")
            && expected != value
        {
            return Err(error(path, format!("must be {expected}")));
        }
        match value {
            Value::String(text) => check_length(map, text, path)?,
            Value::Number(number) => check_number(map, number, path)?,
            Value::Array(items) => self.check_items(map, items, path, depth)?,
            Value::Object(fields) => self.check_object(map, fields, path, depth)?,
            _ => {}
        }
        self.check_combinators(map, value, path, depth)
    }

    /// A `$ref` within this document: `#` or a JSON pointer after `#`.
    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        let pointer = reference.strip_prefix('#')?;
        if pointer.is_empty() {
            return Some(self.root);
        }
        let decoded = pointer.split('/').map(|part| part.replace("~1", "/").replace("~0", "~")).collect::<Vec<_>>();
        let mut target = self.root;
        for part in decoded.iter().skip(1) {
            target = match target {
                Value::Object(map) => map.get(part)?,
                Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(target)
    }

    fn check_type(&self, map: &Map<String, Value>, value: &Value, path: &str) -> Result<(), SchemaError> {
        let allowed: Vec<&str> = match map.get("type") {
            Some(Value::String(name)) => vec![name.as_str()],
            Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
            _ => return Ok(()),
        };
        if allowed.iter().any(|name| has_type(value, name)) {
            return Ok(());
        }
        let article = |name: &str| if name.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
        let expected = allowed.iter().map(|name| format!("{} {name}", article(name))).collect::<Vec<_>>().join(" or ");
        let actual = type_name(value);
        Err(error(path, format!("must be {expected}, not {} {actual}", article(actual))))
    }

    fn check_items(
        &self,
        map: &'a Map<String, Value>,
        items: &[Value],
        path: &mut String,
        depth: usize,
    ) -> Result<(), SchemaError> {
        if let Some(min) = map.get("minItems").and_then(Value::as_u64)
            && (items.len() as u64) < min
        {
            return Err(error(path, format!("must have at least {min} items")));
        }
        if let Some(max) = map.get("maxItems").and_then(Value::as_u64)
            && items.len() as u64 > max
        {
            return Err(error(path, format!("must have at most {max} items")));
        }
        let prefix = map.get("prefixItems").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        for (index, item) in items.iter().enumerate() {
            let schema = match prefix.get(index) {
                Some(schema) => schema,
                None => match map.get("items") {
                    Some(schema) => schema,
                    None => continue,
                },
            };
            at(path, &format!("[{index}]"), |path| self.check(schema, item, path, depth + 1))?;
        }
        Ok(())
    }

    fn check_object(
        &self,
        map: &'a Map<String, Value>,
        fields: &Map<String, Value>,
        path: &mut String,
        depth: usize,
    ) -> Result<(), SchemaError> {
        if let Some(Value::Array(required)) = map.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !fields.contains_key(name) {
                    return at(path, name, |path| Err(error(path, "is required")));
                }
            }
        }
        let properties = map.get("properties").and_then(Value::as_object);
        for (name, field) in fields {
            let schema = match properties.and_then(|p| p.get(name)) {
                Some(schema) => schema,
                None => match map.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        return at(path, name, |path| Err(error(path, "is not a known field")));
                    }
                    Some(schema) => schema,
                    None => continue,
                },
            };
            at(path, name, |path| self.check(schema, field, path, depth + 1))?;
        }
        Ok(())
    }

    fn check_combinators(
        &self,
        map: &'a Map<String, Value>,
        value: &Value,
        path: &mut String,
        depth: usize,
    ) -> Result<(), SchemaError> {
        if let Some(Value::Array(all)) = map.get("allOf") {
            for schema in all {
                self.check(schema, value, path, depth + 1)?;
            }
        }
        for keyword in ["anyOf", "oneOf"] {
            let Some(Value::Array(forms)) = map.get(keyword) else { continue };
            let results: Vec<Result<(), SchemaError>> =
                forms.iter().map(|schema| self.check(schema, value, path, depth + 1)).collect();
            let matched = results.iter().filter(|r| r.is_ok()).count();
            if keyword == "oneOf" && matched > 1 {
                return Err(error(path, format!("matches {matched} of its allowed forms; it must match exactly one")));
            }
            if matched == 0 {
                // The most telling failure: from a form of the value's own type, when there is one.
                let own_type = forms.iter().position(|form| {
                    form.get("type").and_then(Value::as_str).is_some_and(|name| has_type(value, name))
                });
                let index = own_type.unwrap_or(0);
                return match results.into_iter().nth(index) {
                    Some(Err(failure)) if own_type.is_some() || forms.len() == 1 => Err(failure),
                    _ => Err(error(path, format!("matches none of its {} allowed forms", forms.len()))),
                };
            }
        }
        if let Some(schema) = map.get("not")
            && self.check(schema, value, path, depth + 1).is_ok()
        {
            return Err(error(path, "matches a form it must not match"));
        }
        Ok(())
    }
}

fn list(values: &[Value]) -> String {
    values.iter().map(Value::to_string).collect::<Vec<_>>().join(", ")
}

fn check_length(map: &Map<String, Value>, text: &str, path: &str) -> Result<(), SchemaError> {
    let length = text.chars().count() as u64;
    if let Some(min) = map.get("minLength").and_then(Value::as_u64)
        && length < min
    {
        return Err(error(path, format!("must be at least {min} characters long")));
    }
    if let Some(max) = map.get("maxLength").and_then(Value::as_u64)
        && length > max
    {
        return Err(error(path, format!("must be at most {max} characters long")));
    }
    Ok(())
}

fn check_number(map: &Map<String, Value>, number: &serde_json::Number, path: &str) -> Result<(), SchemaError> {
    let Some(n) = number.as_f64() else { return Ok(()) };
    let bound = |keyword: &str| map.get(keyword).and_then(Value::as_f64);
    if let Some(min) = bound("minimum").filter(|min| n < *min) {
        return Err(error(path, format!("must be at least {min}")));
    }
    if let Some(max) = bound("maximum").filter(|max| n > *max) {
        return Err(error(path, format!("must be at most {max}")));
    }
    if let Some(min) = bound("exclusiveMinimum").filter(|min| n <= *min) {
        return Err(error(path, format!("must be more than {min}")));
    }
    if let Some(max) = bound("exclusiveMaximum").filter(|max| n >= *max) {
        return Err(error(path, format!("must be less than {max}")));
    }
    if let Some(step) = bound("multipleOf").filter(|step| *step > 0.0 && (n / step).fract() != 0.0) {
        return Err(error(path, format!("must be a multiple of {step}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn message(schema: &Value, value: Value) -> String {
        validate(schema, &value).unwrap_err().to_string()
    }

    fn refer_schema() -> Value {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "referTo": {"type": ["string", "integer"]},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "actionHook": {"$ref": "#/$defs/hook"},
                "timeout": {"type": "number", "exclusiveMinimum": 0},
            },
            "required": ["referTo"],
            "additionalProperties": true,
            "$defs": {"hook": {"oneOf": [
                {"type": "string", "format": "uri"},
                {"type": "object", "properties": {"url": {"type": "string"}, "method": {"enum": ["POST", "GET"]}},
                 "required": ["url"]},
            ]}},
        })
    }

    #[test]
    fn accepts_what_the_schema_allows() {
        let schema = refer_schema();
        for value in [
            json!({"referTo": "sip:bob@example.com"}),
            json!({"referTo": 15083084809u64, "verb": "sip:refer", "timeout": 2.5}),
            json!({"referTo": "1", "actionHook": "https://a.example/x", "headers": {"X-A": "b"}}),
            json!({"referTo": "1", "actionHook": {"url": "https://a.example/x", "method": "GET"}}),
        ] {
            assert_eq!(validate(&schema, &value), Ok(()), "{value}");
        }
    }

    #[test]
    fn refusals_name_the_field() {
        let schema = refer_schema();
        assert_eq!(message(&schema, json!({})), r#""referTo" is required"#);
        assert_eq!(
            message(&schema, json!({"referTo": true})),
            r#""referTo" must be a string or an integer, not a boolean"#
        );
        assert_eq!(
            message(&schema, json!({"referTo": 1.5})),
            r#""referTo" must be a string or an integer, not a number"#
        );
        assert_eq!(
            message(&schema, json!({"referTo": "1", "headers": {"X-A": 2}})),
            r#""headers.X-A" must be a string, not an integer"#
        );
        assert_eq!(message(&schema, json!({"referTo": "1", "timeout": 0})), r#""timeout" must be more than 0"#);
        assert_eq!(message(&schema, json!({"referTo": "1", "actionHook": {}})), r#""actionHook.url" is required"#);
        assert_eq!(
            message(&schema, json!({"referTo": "1", "actionHook": {"url": "u", "method": "PUT"}})),
            r#""actionHook.method" must be one of "POST", "GET""#
        );
        assert_eq!(
            message(&schema, json!({"referTo": "1", "actionHook": 7})),
            r#""actionHook" matches none of its 2 allowed forms"#
        );
        assert_eq!(message(&schema, json!("sip:bob")), "must be an object, not a string");
    }

    #[test]
    fn arrays_strings_numbers_and_combinators() {
        let schema = json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "verbs": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["verb"]}},
                "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "maxItems": 2},
                "name": {"type": "string", "minLength": 2, "maxLength": 4},
                "digits": {"type": "integer", "minimum": 1, "maximum": 9, "multipleOf": 2},
                "kind": {"const": "fixed"},
                "either": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "never": {"not": {"type": "string"}},
                "both": {"allOf": [{"type": "integer"}, {"exclusiveMaximum": 3}]},
            },
        });
        assert_eq!(validate(&schema, &json!({"verbs": [{"verb": "x"}], "pair": ["a", 1], "digits": 4})), Ok(()));
        assert_eq!(message(&schema, json!({"verbs": []})), r#""verbs" must have at least 1 items"#);
        assert_eq!(message(&schema, json!({"verbs": [{"verb": 1}, {}]})), r#""verbs[1].verb" is required"#);
        assert_eq!(message(&schema, json!({"pair": ["a", "b"]})), r#""pair[1]" must be an integer, not a string"#);
        assert_eq!(message(&schema, json!({"pair": ["a", 1, 2]})), r#""pair" must have at most 2 items"#);
        assert_eq!(message(&schema, json!({"name": "x"})), r#""name" must be at least 2 characters long"#);
        assert_eq!(message(&schema, json!({"name": "xxxxx"})), r#""name" must be at most 4 characters long"#);
        assert_eq!(message(&schema, json!({"digits": 10})), r#""digits" must be at most 9"#);
        assert_eq!(message(&schema, json!({"digits": 3})), r#""digits" must be a multiple of 2"#);
        assert_eq!(message(&schema, json!({"kind": "other"})), r#""kind" must be "fixed""#);
        assert_eq!(validate(&schema, &json!({"either": null})), Ok(()));
        assert_eq!(message(&schema, json!({"either": 1})), r#""either" matches none of its 2 allowed forms"#);
        assert_eq!(message(&schema, json!({"never": "s"})), r#""never" matches a form it must not match"#);
        assert_eq!(message(&schema, json!({"both": 3})), r#""both" must be less than 3"#);
        assert_eq!(message(&schema, json!({"extra": 1})), r#""extra" is not a known field"#);
    }

    #[test]
    fn boolean_schemas_refs_and_cycles() {
        assert_eq!(validate(&json!(true), &json!({"anything": 1})), Ok(()));
        assert_eq!(message(&json!(false), json!(1)), "is not allowed");
        let cyclic = json!({"$ref": "#"});
        assert!(message(&cyclic, json!(1)).contains("nest too deep"));
        assert_eq!(
            message(&json!({"$ref": "#/$defs/missing"}), json!(1)),
            r##"has an unknown $ref "#/$defs/missing""##
        );
        let tree = json!({"type": "object", "properties": {"child": {"$ref": "#"}}, "required": ["name"]});
        assert_eq!(
            message(&tree, json!({"name": 1, "child": {"name": 2, "child": {}}})),
            r#""child.child.name" is required"#
        );
    }

    #[test]
    fn reports_keywords_it_does_not_apply() {
        let schema = json!({"properties": {"pattern": {"type": "string", "pattern": "^a"}}, "patternProperties": {}});
        assert_eq!(unsupported_keywords(&schema), ["pattern", "patternProperties"]);
        assert!(unsupported_keywords(&refer_schema()).is_empty());
    }
}
