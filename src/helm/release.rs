//! A release as the profile wants it, and what installing it did.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::{ChartSource, Recovery};

/// One release as the profile wants it.
#[derive(Clone, Debug)]
pub struct Release {
    pub name: String,
    pub namespace: String,
    pub chart: ChartSource,
    /// The values kgf-up generated; written to `values_file` and compared with the deployed ones.
    pub values: Value,
    /// Where to write the values for helm (the run's work directory); mode 0600, as values may
    /// hold credentials.
    pub values_file: PathBuf,
    /// helm's `--timeout` for the install and its `--wait`.
    pub timeout: Duration,
    /// Undo a failed upgrade (`--atomic` / helm 4 `--rollback-on-failure`). Off by default: the
    /// failed pods are what the diagnosis shows, and the next `up` upgrades the failed release.
    pub rollback_on_failure: bool,
    /// Replace objects whose immutable fields changed (`--force` / helm 4 `--force-replace`).
    pub force_replace: bool,
    /// Leave the chart's `crds/` to the caller (`--skip-crds`), who applied them already.
    pub skip_crds: bool,
}

impl Release {
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        chart: ChartSource,
        values: Value,
        values_file: impl Into<PathBuf>,
        timeout: Duration,
    ) -> Self {
        Release {
            name: name.into(),
            namespace: namespace.into(),
            chart,
            values,
            values_file: values_file.into(),
            timeout,
            rollback_on_failure: false,
            force_replace: false,
            skip_crds: false,
        }
    }

    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What a [`super::Helm::install`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    /// The recovery done first, if the release was stuck.
    pub recovery: Option<Recovery>,
}
