//! Secret values (tokens, passwords, keys) and their redaction: every [`Secret`] registers its
//! value when made, and [`redact`] replaces each registered value in any text, so a secret never
//! reaches a log line, an error, a plan or a process argument by accident.

use std::fmt;
use std::sync::{Arc, RwLock};

/// Values that must never appear in a log line, an error or a plan: every [`Secret`] registers its
/// value here on creation, and [`redact`] replaces each occurrence with `***`.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// A secret value (token, password, key). Its `Debug` and `Display` print `***`; the value is
/// reachable only through [`Secret::expose`], and only ever passed to programs on stdin or in a file.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        let value: String = value.into();
        // Short values would redact ordinary words; kgf-up's secrets are tokens and generated keys.
        if value.len() >= 4 {
            let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
            if !secrets.contains(&value) {
                secrets.push(value.clone());
                // Longest first, so a secret that contains another is replaced whole.
                secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
            }
        }
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Replaces every registered secret value in `text` with `***`.
pub fn redact(text: &str) -> String {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_string();
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}
