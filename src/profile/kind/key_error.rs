//! The error of a `cluster.kind` value: the key it is at, what is wrong, the fix.

use crate::profile::SpecError;

/// A value of `cluster.kind` that kind would refuse or silently ignore: the key (relative to
/// `cluster.kind`, list items by index: `kubeadm_config_patches.0`), what is wrong, the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    pub key: String,
    pub message: String,
    pub fix: String,
}

impl KeyError {
    pub(super) fn new(key: &str, message: String, fix: impl Into<String>) -> Self {
        KeyError {
            key: key.to_string(),
            message,
            fix: fix.into(),
        }
    }
}

impl From<KeyError> for SpecError {
    fn from(e: KeyError) -> Self {
        SpecError(format!("{} (fix: {})", e.message, e.fix))
    }
}
