//! What every provider shares: the cluster step's id, the command line's kubeconfig overrides,
//! and where kgf-up keeps a cluster's state.

use std::path::PathBuf;

use crate::step::StepId;

/// `--kubeconfig` / `--context` from the command line.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

pub fn id() -> StepId {
    StepId::new("cluster", "")
}

/// Where kgf-up keeps per-cluster state (kubeconfigs it made): `$XDG_STATE_HOME/kgf-up/<name>`.
pub fn state_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("kgf-up").join(name)
}
