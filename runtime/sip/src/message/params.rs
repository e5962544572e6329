//! `;name=value` parameter lists of URIs and header fields.

use std::fmt;

use super::syntax::{is_token, split_unquoted, take_quoted};
use super::uri::UriError;

/// An ordered list of parameters; names keep the case they were sent in and compare case-insensitively.
/// Values are stored as sent (a quoted value keeps its quotes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, Option<String>)>);

impl Params {
    /// The value of `name`: `None` when absent, `Some(None)` for a flag such as `;lr`.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_deref())
    }

    /// True when `name` is present, with or without a value.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name` (replacing an existing one, else appending).
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_string);
        match self.0.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some(entry) => entry.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// The parameters in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_deref()))
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses URI parameters: `;a=b;c` with no whitespace; escapes allowed in names and values.
    pub(crate) fn parse_uri_params(text: &str) -> Result<Params, UriError> {
        let mut params = Params::default();
        let Some(text) = text.strip_prefix(';') else {
            return Err(UriError(format!("parameters must start with ';': {text:?}")));
        };
        for piece in text.split(';') {
            let (name, value) = match piece.find('=') {
                Some(eq) => (&piece[..eq], Some(&piece[eq + 1..])),
                None => (piece, None),
            };
            let param_char = |c: char| c.is_ascii_alphanumeric() || "-_.!~*'()%[]/:&+$".contains(c);
            if name.is_empty() || !name.chars().all(param_char) {
                return Err(UriError(format!("bad URI parameter {piece:?}")));
            }
            if value.is_some_and(|v| v.is_empty() || !v.chars().all(param_char)) {
                return Err(UriError(format!("bad URI parameter value in {piece:?}")));
            }
            params.0.push((name.to_string(), value.map(str::to_string)));
        }
        Ok(params)
    }

    /// Parses header parameters: `; name = value ; flag`, whitespace allowed around `;` and `=`, values
    /// tokens, hosts or quoted strings.
    pub(crate) fn parse_header_params(text: &str) -> Result<Params, String> {
        let mut params = Params::default();
        let text = text.trim();
        if text.is_empty() {
            return Ok(params);
        }
        let Some(text) = text.strip_prefix(';') else {
            return Err(format!("expected ';' before {text:?}"));
        };
        for piece in split_unquoted(text, b';') {
            let (name, value) = match piece.find('=') {
                Some(eq) => (piece[..eq].trim_end(), Some(piece[eq + 1..].trim_start())),
                None => (piece, None),
            };
            if !is_token(name) {
                return Err(format!("bad parameter name {name:?}"));
            }
            if let Some(value) = value {
                let ok = if value.starts_with('"') {
                    take_quoted(value).is_some_and(|(_, rest)| rest.is_empty())
                } else {
                    is_token(value)
                        || (value.starts_with('[') && value.ends_with(']'))
                        || (!value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c)))
                };
                if !ok {
                    return Err(format!("bad value for parameter {name:?}: {value:?}"));
                }
            }
            params.0.push((name.to_string(), value.map(str::to_string)));
        }
        Ok(params)
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, value) in &self.0 {
            match value {
                Some(value) => write!(f, ";{name}={value}")?,
                None => write!(f, ";{name}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_params_allow_whitespace_and_quotes() {
        let params = Params::parse_header_params(" ;   tag    = 1918181833n ; q = 0.33;x=\"a;b\"").unwrap();
        assert_eq!(params.get("TAG"), Some(Some("1918181833n")));
        assert_eq!(params.get("q"), Some(Some("0.33")));
        assert_eq!(params.get("x"), Some(Some("\"a;b\"")));
        assert_eq!(params.get("missing"), None);
    }

    #[test]
    fn empty_parameters_are_rejected() {
        assert!(Params::parse_header_params(";;").is_err());
        assert!(Params::parse_header_params(";a;;b").is_err());
        assert!(Params::parse_uri_params(";;lr").is_err());
        assert!(Params::parse_header_params(";a=\"open").is_err());
    }
}
