//! Configuration as written: the file (`raw`), the scenario × protocol
//! route table (`catalog`), field errors, secrets, names, and settings
//! resolved straight from the file (`cluster`). It imports no policy
//! module; `snapshot` compiles it into what the data plane reads.

pub mod catalog;
pub mod cidr;
pub mod cluster;
pub mod raw;

use std::fmt;

/// One problem in a config, with the path of the field it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
    /// `invalid_field`, or `conflict` when the value is fine but another
    /// resource already holds it (the admin API answers 409).
    pub code: &'static str,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
            code: "invalid_field",
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Everything wrong with a config at once, so `check` can list it all.
#[derive(Clone, Debug, Default)]
pub struct Problems {
    pub errors: Vec<FieldError>,
    pub warnings: Vec<FieldError>,
}

impl Problems {
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(path, message));
    }
    /// An error about a value another resource already holds.
    pub fn conflict(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            code: "conflict",
            ..FieldError::new(path, message)
        });
    }
    pub fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(FieldError::new(path, message));
    }
}

/// Reads and parses a config file; a syntax or type error is one FieldError
/// whose path is the file (toml's message carries line and key).
pub fn load_file(path: &str) -> Result<raw::RawConfig, FieldError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| FieldError::new(path, format!("cannot read: {e}")))?;
    toml::from_str(&text).map_err(|e| FieldError::new(path, e.to_string().trim_end()))
}

/// Resolves a secret field: `env:NAME`, `file:PATH`, or the literal value.
pub fn resolve_secret(value: &str) -> Result<String, String> {
    if let Some(name) = value.strip_prefix("env:") {
        std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
    } else if let Some(path) = value.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("cannot read secret file {path}: {e}"))
    } else {
        Ok(value.to_string())
    }
}

/// Names of services, Model APIs, consumers, groups: 1–64 of `[A-Za-z0-9_-]`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_from_env_file_and_literal() {
        std::env::set_var("MODELGATE_TEST_SECRET", "s3cret");
        assert_eq!(
            resolve_secret("env:MODELGATE_TEST_SECRET").unwrap(),
            "s3cret"
        );
        assert!(resolve_secret("env:MODELGATE_TEST_NOT_SET_X").is_err());
        let path = std::env::temp_dir().join(format!("mg-secret-{}", std::process::id()));
        std::fs::write(&path, "from-file\n").unwrap();
        assert_eq!(
            resolve_secret(&format!("file:{}", path.display())).unwrap(),
            "from-file"
        );
        assert_eq!(resolve_secret("plain").unwrap(), "plain");
    }

    #[test]
    fn names() {
        assert!(valid_name("chat-prod_1"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name(&"x".repeat(65)));
    }
}
