//! Names of stored things (modules, apps, and the media files and recordings to come): the one check
//! every name passes before it reaches the file system.
//!
//! A name becomes a directory or a file name under the data directory, so it must not be able to climb out
//! of it (`..`, `/`, `\`, an absolute path, NUL). [`StoreName`] is the only way the stores build a path
//! from a name, whoever the caller is (admin API, CLI, seeding at start).

use std::fmt;

/// What a [`StoreName`] accepts, for error messages.
pub const NAME_RULE: &str = "1-63 characters of a-z, 0-9, '-' or '_', starting with a letter or digit";

/// The longest name.
const MAX_NAME_LENGTH: usize = 63;

/// A name checked against [`NAME_RULE`]: safe as one path component and in URLs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoreName(String);

/// A name that [`StoreName::parse`] refused; shows the name and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadName {
    /// What was refused: "module", "app", ...
    pub kind: &'static str,
    /// The name as given.
    pub name: String,
}

impl fmt::Display for BadName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} name {:?} must be {NAME_RULE}", self.kind, self.name)
    }
}

impl std::error::Error for BadName {}

impl StoreName {
    /// Checks `name` as the name of a `kind` ("module", "app", ...).
    pub fn parse(kind: &'static str, name: &str) -> Result<StoreName, BadName> {
        if is_valid(name) { Ok(StoreName(name.to_string())) } else { Err(BadName { kind, name: name.to_string() }) }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StoreName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// True for names [`StoreName::parse`] accepts.
pub fn is_valid(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LENGTH
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_the_data_directory_are_refused() {
        for name in [
            "",
            "..",
            ".",
            "../apps",
            "..%2Fapps",
            "a/b",
            "/etc",
            "a\\b",
            "\\",
            "a\0b",
            "A",
            "-a",
            "_a",
            ".hidden",
            "a b",
            "ä",
        ] {
            let error = StoreName::parse("module", name).unwrap_err();
            assert_eq!(error.to_string(), format!("module name {name:?} must be {NAME_RULE}"));
        }
        assert!(StoreName::parse("app", &"a".repeat(64)).is_err());
    }

    #[test]
    fn ordinary_names_are_kept_as_given() {
        for name in ["a", "answer-hangup", "ivr_2", "0", &"a".repeat(63)] {
            assert_eq!(StoreName::parse("app", name).unwrap().as_str(), name);
        }
    }
}
