//! Read-only: is a release deployed with the chart, version and values the profile wants? The
//! answer is facts ([`Found`]); what they mean for a step is the step's to say.

use std::fmt;

use serde_json::Value;

use super::records;
use super::source::{ChartMeta, bare};
use super::values::{empty_if_null, first_difference};
use super::{ChartSource, Helm, HelmError, Release, ReleaseStatus};
use crate::exec::Cmd;

impl Helm {
    /// The chart name and version `release` should be deployed with.
    async fn wanted_chart(&self, chart: &ChartSource) -> Result<(String, String), HelmError> {
        chart.validate()?;
        let path = match chart {
            ChartSource::Local { path } => path,
            ChartSource::Repo { chart, version, .. } => {
                return Ok((chart.clone(), version.clone()));
            }
            ChartSource::Oci {
                reference, version, ..
            } => {
                let name = reference.rsplit('/').next().unwrap_or_default();
                return Ok((name.to_string(), version.clone()));
            }
        };
        let local_err = |detail: String| HelmError::LocalChart {
            path: path.clone(),
            detail,
        };
        let text = if path.is_dir() {
            std::fs::read_to_string(path.join("Chart.yaml"))
                .map_err(|e| local_err(format!("Chart.yaml: {e}")))?
        } else if path.is_file() {
            let cmd = Cmd::new(&self.program)
                .args(["show", "chart"])
                .arg(path.display().to_string());
            self.exec
                .run_async(cmd)
                .await
                .map_err(|e| local_err(e.to_string()))?
                .stdout
        } else {
            return Err(local_err("no such file or directory".into()));
        };
        let meta: ChartMeta =
            serde_saphyr::from_str(&text).map_err(|e| local_err(format!("Chart.yaml: {e}")))?;
        Ok((meta.name, meta.version))
    }

    /// Read-only: is `release` deployed with the wanted chart, version and values? Reads the
    /// release's record through `client` (no helm process: see [`records`]).
    pub async fn observe(
        &self,
        release: &Release,
        client: kube::Client,
    ) -> Result<Observed, HelmError> {
        let (name, version) = self.wanted_chart(&release.chart).await?;
        let found = match records::latest(client, &release.name, &release.namespace).await? {
            None => Found::NotInstalled,
            Some(stored) => compare(stored, &release.values, name, version),
        };
        Ok(Observed {
            release: release.id(),
            found,
        })
    }
}

/// A release's latest record against the chart, version and values the profile wants.
fn compare(stored: records::Stored, values: &Value, name: String, version: String) -> Found {
    let records::Stored {
        latest: meta,
        values: deployed,
    } = stored;
    let revision = meta.revision;
    match meta.status {
        ReleaseStatus::Deployed => {}
        ReleaseStatus::Failed => return Found::Failed { revision },
        status if status.is_pending() || status == ReleaseStatus::Uninstalling => {
            return Found::Stuck { revision, status };
        }
        status @ (ReleaseStatus::Uninstalled | ReleaseStatus::Superseded) => {
            return Found::Gone { revision, status };
        }
        status => return Found::Unknown { revision, status },
    }
    if meta.chart != name || bare(&meta.version) != bare(&version) {
        return Found::OtherChart {
            deployed: format!("{} {}", meta.chart, meta.version),
            wanted: format!("{name} {version}"),
        };
    }
    match first_difference(&deployed, &empty_if_null(values.clone())) {
        Some(difference) => Found::OtherValues {
            difference: crate::secret::redact(&difference),
        },
        None => Found::AsWanted {
            revision,
            chart: format!("{name} {version}"),
        },
    }
}

/// What observe found about one release (`namespace/name`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub release: String,
    pub found: Found,
}

/// A release as its latest record shows it, compared with what the profile wants. Facts only: the
/// step that installs the release decides what each means for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// No record: never installed, or uninstalled without history.
    NotInstalled,
    /// The latest revision is uninstalled (history kept) or superseded.
    Gone {
        revision: u32,
        status: ReleaseStatus,
    },
    /// The latest revision failed; `helm upgrade` upgrades it in place.
    Failed { revision: u32 },
    /// An interrupted helm left it pending or uninstalling; install recovers it first.
    Stuck {
        revision: u32,
        status: ReleaseStatus,
    },
    /// A status kgf-up does not know.
    Unknown {
        revision: u32,
        status: ReleaseStatus,
    },
    /// Deployed, from another chart or version (`name version` each).
    OtherChart { deployed: String, wanted: String },
    /// Deployed with other values: the first difference as a sentence, secrets redacted.
    OtherValues { difference: String },
    /// Deployed from the wanted chart (`name version`) with the wanted values.
    AsWanted { revision: u32, chart: String },
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = &self.release;
        match &self.found {
            Found::NotInstalled => write!(f, "release {id} is not installed"),
            Found::Gone { revision, status } => {
                write!(f, "release {id} is {status} (revision {revision})")
            }
            Found::Failed { revision } => write!(
                f,
                "release {id} revision {revision} failed; apply upgrades it again"
            ),
            Found::Stuck { revision, status } => write!(
                f,
                "release {id} revision {revision} is stuck in {status} (a helm run was interrupted); apply recovers it, then upgrades"
            ),
            Found::Unknown { revision, status } => write!(
                f,
                "release {id} revision {revision} is in state {status}; apply upgrades it again"
            ),
            Found::OtherChart { deployed, wanted } => write!(
                f,
                "release {id} runs chart {deployed}, the profile wants {wanted}"
            ),
            Found::OtherValues { difference } => {
                write!(f, "release {id} values differ: {difference}")
            }
            Found::AsWanted { revision, chart } => write!(
                f,
                "release {id} revision {revision}: chart {chart}, values as wanted"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helm::LatestRevision;
    use serde_json::json;

    fn stored(status: ReleaseStatus, chart: &str, version: &str, values: Value) -> records::Stored {
        records::Stored {
            latest: LatestRevision {
                revision: 3,
                status,
                chart: chart.into(),
                version: version.into(),
            },
            values,
        }
    }

    fn found(stored: records::Stored, values: Value) -> Found {
        compare(stored, &values, "op".into(), "v1.2.0".into())
    }

    #[test]
    fn a_deployed_release_is_compared_by_chart_then_values() {
        let v = json!({"replicas": 2});
        assert_eq!(
            found(
                stored(ReleaseStatus::Deployed, "op", "1.2.0", v.clone()),
                v.clone()
            ),
            Found::AsWanted {
                revision: 3,
                chart: "op v1.2.0".into()
            },
            "a leading v is the same version"
        );
        assert_eq!(
            found(
                stored(ReleaseStatus::Deployed, "op", "1.1.0", v.clone()),
                v.clone()
            ),
            Found::OtherChart {
                deployed: "op 1.1.0".into(),
                wanted: "op v1.2.0".into()
            }
        );
        let other = found(
            stored(ReleaseStatus::Deployed, "op", "1.2.0", v),
            json!({"replicas": 3}),
        );
        assert_eq!(
            other,
            Found::OtherValues {
                difference: "`replicas` is 2 on the cluster, kgf-up wants 3".into()
            }
        );
        assert_eq!(
            found(
                stored(ReleaseStatus::Deployed, "op", "1.2.0", json!({})),
                Value::Null
            ),
            Found::AsWanted {
                revision: 3,
                chart: "op v1.2.0".into()
            },
            "no values is an empty mapping"
        );
    }

    #[test]
    fn a_release_not_deployed_is_told_by_its_status() {
        let at = |status| found(stored(status, "op", "1.2.0", json!({})), json!({}));
        assert_eq!(at(ReleaseStatus::Failed), Found::Failed { revision: 3 });
        assert_eq!(
            at(ReleaseStatus::PendingUpgrade),
            Found::Stuck {
                revision: 3,
                status: ReleaseStatus::PendingUpgrade
            }
        );
        assert_eq!(
            at(ReleaseStatus::Uninstalling),
            Found::Stuck {
                revision: 3,
                status: ReleaseStatus::Uninstalling
            }
        );
        assert_eq!(
            at(ReleaseStatus::Superseded),
            Found::Gone {
                revision: 3,
                status: ReleaseStatus::Superseded
            }
        );
        let seen = Observed {
            release: "ns/op".into(),
            found: at(ReleaseStatus::PendingInstall),
        };
        assert_eq!(
            seen.to_string(),
            "release ns/op revision 3 is stuck in pending-install (a helm run was interrupted); apply recovers it, then upgrades"
        );
    }
}
