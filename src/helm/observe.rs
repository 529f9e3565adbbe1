//! Read-only: is a release deployed with the chart, version and values the profile wants?

use super::records;
use super::source::bare;
use super::values::{empty_if_null, first_difference};
use super::{ChartSource, Helm, HelmError, Release, ReleaseStatus};
use crate::exec::Cmd;
use crate::step::Observation;

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
    ) -> Result<Observation, HelmError> {
        let (name, version) = self.wanted_chart(&release.chart).await?;
        let id = release.id();
        let stored = records::latest(client, &release.name, &release.namespace).await?;
        let Some(records::Stored {
            latest: meta,
            values: deployed,
        }) = stored
        else {
            return Ok(Observation::missing(format!(
                "release {id} is not installed"
            )));
        };
        let rev = meta.revision;
        match &meta.status {
            ReleaseStatus::Deployed => {}
            ReleaseStatus::Failed => {
                return Ok(Observation::failed(format!(
                    "release {id} revision {rev} failed; apply upgrades it again"
                )));
            }
            status if status.is_pending() || *status == ReleaseStatus::Uninstalling => {
                return Ok(Observation::failed(format!(
                    "release {id} revision {rev} is stuck in {status} (a helm run was interrupted); apply recovers it, then upgrades"
                )));
            }
            ReleaseStatus::Uninstalled | ReleaseStatus::Superseded => {
                return Ok(Observation::missing(format!(
                    "release {id} is {} (revision {rev})",
                    meta.status
                )));
            }
            other => {
                return Ok(Observation::failed(format!(
                    "release {id} revision {rev} is in state {other}; apply upgrades it again"
                )));
            }
        }
        if meta.chart != name || bare(&meta.version) != bare(&version) {
            return Ok(Observation::drifted(format!(
                "release {id} runs chart {} {}, the profile wants {name} {version}",
                meta.chart, meta.version
            )));
        }
        let wanted = empty_if_null(release.values.clone());
        Ok(match first_difference("", &deployed, &wanted) {
            Some(diff) => Observation::drifted(crate::secret::redact(&format!(
                "release {id} values differ: {diff}"
            ))),
            None => Observation::converged(format!(
                "release {id} revision {rev}: chart {name} {version}, values as wanted"
            )),
        })
    }
}
