//! What helm records about a release's revisions: their status, chart and version.

use std::fmt;

use serde::Deserialize;

/// A release's status as helm records it on its latest revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReleaseStatus {
    Deployed,
    Failed,
    PendingInstall,
    PendingUpgrade,
    PendingRollback,
    Uninstalling,
    Uninstalled,
    Superseded,
    Unknown(String),
}

impl ReleaseStatus {
    pub(super) fn parse(s: &str) -> Self {
        match s {
            "deployed" => ReleaseStatus::Deployed,
            "failed" => ReleaseStatus::Failed,
            "pending-install" => ReleaseStatus::PendingInstall,
            "pending-upgrade" => ReleaseStatus::PendingUpgrade,
            "pending-rollback" => ReleaseStatus::PendingRollback,
            "uninstalling" => ReleaseStatus::Uninstalling,
            "uninstalled" => ReleaseStatus::Uninstalled,
            "superseded" => ReleaseStatus::Superseded,
            other => ReleaseStatus::Unknown(other.to_string()),
        }
    }

    pub fn is_pending(&self) -> bool {
        matches!(
            self,
            ReleaseStatus::PendingInstall
                | ReleaseStatus::PendingUpgrade
                | ReleaseStatus::PendingRollback
        )
    }
}

impl fmt::Display for ReleaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReleaseStatus::Deployed => "deployed",
            ReleaseStatus::Failed => "failed",
            ReleaseStatus::PendingInstall => "pending-install",
            ReleaseStatus::PendingUpgrade => "pending-upgrade",
            ReleaseStatus::PendingRollback => "pending-rollback",
            ReleaseStatus::Uninstalling => "uninstalling",
            ReleaseStatus::Uninstalled => "uninstalled",
            ReleaseStatus::Superseded => "superseded",
            ReleaseStatus::Unknown(s) => s,
        })
    }
}

/// The latest revision of a release, from its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatestRevision {
    pub revision: u32,
    pub status: ReleaseStatus,
    pub chart: String,
    pub version: String,
}

/// One entry of `helm history -o json`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Revision {
    pub revision: u32,
    pub status: String,
    #[serde(default)]
    pub chart: String,
    #[serde(default)]
    pub description: String,
}
