//! Reading a verb's JSON arguments: each getter names the field it failed on, so a document's author sees
//! `"referTo" is required` rather than a type error. A field set to `null` counts as absent.

use std::fmt;

use callwright_sdk::hooks::Hook;
use callwright_sdk::serde_json::{Map, Value};
use callwright_sdk::{Credentials, Header};

/// Why a verb's arguments were refused. Its text names the field; the verb puts its own name in front.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArgumentError {
    /// The arguments are not a JSON object.
    NotAnObject,
    /// A required field is absent (or null).
    Missing {
        /// The field's name.
        field: String,
    },
    /// A field has the wrong JSON type.
    WrongType {
        /// The field's name (`headers.X-Foo` for a member of an object).
        field: String,
        /// What it must be, e.g. "a string".
        expected: &'static str,
    },
    /// A field has the right type but an unusable value.
    Invalid {
        /// The field's name.
        field: String,
        /// What is wrong with it.
        why: String,
    },
}

impl fmt::Display for ArgumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgumentError::NotAnObject => write!(f, "the arguments must be a JSON object"),
            ArgumentError::Missing { field } => write!(f, "\"{field}\" is required"),
            ArgumentError::WrongType { field, expected } => write!(f, "\"{field}\" must be {expected}"),
            ArgumentError::Invalid { field, why } => write!(f, "\"{field}\" {why}"),
        }
    }
}

impl std::error::Error for ArgumentError {}

/// A verb's arguments: a JSON object, read field by field.
pub(crate) struct Arguments<'a>(&'a Map<String, Value>);

impl<'a> Arguments<'a> {
    pub(crate) fn new(args: &'a Value) -> Result<Self, ArgumentError> {
        args.as_object().map(Arguments).ok_or(ArgumentError::NotAnObject)
    }

    /// The field's value, unless absent or null.
    pub(crate) fn get(&self, field: &str) -> Option<&'a Value> {
        self.0.get(field).filter(|value| !value.is_null())
    }

    pub(crate) fn string(&self, field: &str) -> Result<Option<String>, ArgumentError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(wrong_type(field, "a string")),
        }
    }

    /// A string that must be there and not be blank.
    pub(crate) fn required_string(&self, field: &str) -> Result<String, ArgumentError> {
        let text = self.string(field)?.ok_or_else(|| missing(field))?;
        if text.trim().is_empty() {
            return Err(invalid(field, "must not be empty"));
        }
        Ok(text)
    }

    /// A webhook: a URL string or `{url, method, username, password}`, as jambonz writes them.
    pub(crate) fn hook(&self, field: &str) -> Result<Option<Hook>, ArgumentError> {
        let Some(value) = self.get(field) else { return Ok(None) };
        let hook = Hook::from_json(value)
            .ok_or_else(|| wrong_type(field, "a URL string or an object with a \"url\" string"))?;
        // Hooks fire after the transfer; refusing a bad one now keeps it from being lost silently then.
        // jambonz's relative hook paths ("/action") are the document runner's to resolve, not a verb's.
        let lower = hook.url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(invalid(field, &format!("must be an absolute http or https URL, not {:?}", hook.url)));
        }
        if let Some(method) = &hook.method
            && !(method.eq_ignore_ascii_case("POST") || method.eq_ignore_ascii_case("GET"))
        {
            return Err(invalid(field, &format!("has method {method:?}; hooks use POST or GET")));
        }
        Ok(Some(hook))
    }

    /// Digest credentials from `username` and `password`, which come together or not at all.
    pub(crate) fn credentials(&self) -> Result<Option<Credentials>, ArgumentError> {
        match (self.string("username")?, self.string("password")?) {
            (Some(username), Some(password)) => Ok(Some(Credentials { username, password })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(invalid("username", "needs \"password\" too")),
            (None, Some(_)) => Err(invalid("password", "needs \"username\" too")),
        }
    }

    /// SIP header fields from an object of string values, sorted by name: serde_json (without its
    /// `preserve_order` feature) does not keep the document's order, which SIP does not need across names.
    pub(crate) fn headers(&self, field: &str) -> Result<Vec<Header>, ArgumentError> {
        let Some(value) = self.get(field) else { return Ok(Vec::new()) };
        let headers = value.as_object().ok_or_else(|| wrong_type(field, "an object of header names to strings"))?;
        headers
            .iter()
            .map(|(name, value)| match value {
                Value::String(text) => Ok(Header::new(name, text)),
                _ => Err(wrong_type(&format!("{field}.{name}"), "a string")),
            })
            .collect()
    }

    /// A duration given in seconds (fractions allowed), in milliseconds.
    pub(crate) fn seconds_as_ms(&self, field: &str) -> Result<Option<u32>, ArgumentError> {
        let Some(value) = self.get(field) else { return Ok(None) };
        let seconds = value.as_f64().ok_or_else(|| wrong_type(field, "a number of seconds"))?;
        if seconds <= 0.0 {
            return Err(invalid(field, "must be more than 0 seconds"));
        }
        Ok(Some((seconds * 1000.0).round().min(f64::from(u32::MAX)) as u32))
    }
}

pub(crate) fn missing(field: &str) -> ArgumentError {
    ArgumentError::Missing { field: field.to_string() }
}

pub(crate) fn wrong_type(field: &str, expected: &'static str) -> ArgumentError {
    ArgumentError::WrongType { field: field.to_string(), expected }
}

pub(crate) fn invalid(field: &str, why: &str) -> ArgumentError {
    ArgumentError::Invalid { field: field.to_string(), why: why.to_string() }
}

#[cfg(test)]
mod tests {
    use callwright_sdk::serde_json::json;

    use super::*;

    #[test]
    fn null_counts_as_absent() {
        let value = json!({"referredBy": null, "headers": null, "timeout": null});
        let args = Arguments::new(&value).unwrap();
        assert_eq!(args.string("referredBy"), Ok(None));
        assert!(args.headers("headers").unwrap().is_empty());
        assert_eq!(args.seconds_as_ms("timeout"), Ok(None));
        assert!(args.hook("actionHook").unwrap().is_none());
    }

    #[test]
    fn messages_name_the_field() {
        let value = json!({"to_uri": 5, "headers": {"X-Count": 3}, "timeout": -1, "username": "u"});
        let args = Arguments::new(&value).unwrap();
        assert_eq!(args.required_string("to_uri").unwrap_err().to_string(), r#""to_uri" must be a string"#);
        assert_eq!(args.required_string("target").unwrap_err().to_string(), r#""target" is required"#);
        assert_eq!(args.headers("headers").unwrap_err().to_string(), r#""headers.X-Count" must be a string"#);
        assert_eq!(args.seconds_as_ms("timeout").unwrap_err().to_string(), r#""timeout" must be more than 0 seconds"#);
        assert_eq!(args.credentials().unwrap_err().to_string(), r#""username" needs "password" too"#);
        assert_eq!(Arguments::new(&json!([1])).err(), Some(ArgumentError::NotAnObject));
    }

    #[test]
    fn hooks_are_urls_or_webhook_objects() {
        let value = json!({
            "plain": "https://example.com/action",
            "object": {"url": "http://example.com/events", "method": "get", "username": "u", "password": "p"},
            "relative": "/action",
            "no_url": {"method": "POST"},
            "bad_method": {"url": "https://example.com/", "method": "PUT"},
        });
        let args = Arguments::new(&value).unwrap();
        let plain = args.hook("plain").unwrap().unwrap();
        assert_eq!((plain.url.as_str(), plain.method), ("https://example.com/action", None));
        let object = args.hook("object").unwrap().unwrap();
        assert_eq!(object.method.as_deref(), Some("get"));
        assert_eq!((object.username.as_deref(), object.password.as_deref()), (Some("u"), Some("p")));
        assert!(args.hook("relative").unwrap_err().to_string().contains("absolute http or https URL"));
        assert!(matches!(args.hook("no_url"), Err(ArgumentError::WrongType { .. })));
        assert!(matches!(args.hook("bad_method"), Err(ArgumentError::Invalid { .. })));
    }

    #[test]
    fn seconds_become_milliseconds() {
        let value = json!({"whole": 20, "fraction": 0.25, "huge": 1e12, "text": "15"});
        let args = Arguments::new(&value).unwrap();
        assert_eq!(args.seconds_as_ms("whole"), Ok(Some(20_000)));
        assert_eq!(args.seconds_as_ms("fraction"), Ok(Some(250)));
        assert_eq!(args.seconds_as_ms("huge"), Ok(Some(u32::MAX)));
        assert!(matches!(args.seconds_as_ms("text"), Err(ArgumentError::WrongType { .. })));
    }
}
