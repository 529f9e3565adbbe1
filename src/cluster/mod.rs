//! Cluster providers: create, observe and delete a cluster, and hand back its kubeconfig.
//!
//! Each provider is a step with id `cluster` whose observe sets the run's kubeconfig; the steps
//! after it only ever talk to the cluster through that kubeconfig.

pub mod existing;
pub mod sim;

use std::path::PathBuf;
use std::sync::Arc;

use crate::profile::{Profile, Provider};
use crate::step::{DynStep, StepId};

/// `--kubeconfig` / `--context` from the command line.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

pub fn id() -> StepId {
    StepId::new("cluster", "")
}

/// The cluster step of a profile.
pub fn step(profile: &Profile, overrides: &Overrides) -> DynStep {
    match profile.cluster.provider {
        Provider::Existing => Arc::new(existing::Existing::new(
            &profile.cluster.existing,
            overrides,
        )),
        Provider::Sim => Arc::new(sim::Sim::new(profile)),
        Provider::Kind | Provider::Rke2 => Arc::new(existing::Existing::new(
            &profile.cluster.existing,
            overrides,
        )),
    }
}

/// Where kgf-up keeps per-cluster state (kubeconfigs it made): `$XDG_STATE_HOME/kgf-up/<name>`.
pub fn state_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("kgf-up").join(name)
}
