//! Where a chart comes from (a repository, an OCI registry, a local directory or package), its
//! pinned version, and the `helm pull`/`helm package` that makes an offline copy of it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::HelmError;
use super::failure::TRANSIENT;
use crate::exec::Cmd;

/// Where a chart comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChartSource {
    /// A chart in a classic helm repository, fetched with `--repo URL` (no `helm repo add`).
    Repo {
        url: String,
        chart: String,
        version: String,
    },
    /// An OCI chart, `oci://registry/path/chart` without a tag; the version is the tag.
    /// `plain_http` is for a registry without TLS, such as a local mirror at `localhost:5001`.
    Oci {
        reference: String,
        version: String,
        plain_http: bool,
    },
    /// A chart directory or packaged `.tgz` on disk (a mirror or a test fixture); its name and
    /// version are read from it, so a changed local chart needs a new version to be upgraded.
    Local { path: PathBuf },
}

impl ChartSource {
    pub(super) fn version(&self) -> Option<&str> {
        match self {
            ChartSource::Repo { version, .. } | ChartSource::Oci { version, .. } => Some(version),
            ChartSource::Local { .. } => None,
        }
    }

    /// Checks what can be checked without I/O: versions are exact, OCI references have no tag.
    pub fn validate(&self) -> Result<(), HelmError> {
        if let ChartSource::Oci { reference, .. } = self {
            let last = reference.rsplit('/').next().unwrap_or_default();
            if !reference.starts_with("oci://") || last.is_empty() || last.contains([':', '@']) {
                return Err(HelmError::BadSource {
                    source_text: self.to_string(),
                    detail: "an OCI chart is `oci://registry/path/chart`, without a tag or \
                             digest (the version goes in `version`)"
                        .into(),
                });
            }
        }
        match self.version() {
            Some(version) if !is_exact_version(version) => Err(HelmError::BadSource {
                source_text: self.to_string(),
                detail: format!(
                    "chart version `{version}` is not an exact version: kgf-up installs pinned \
                     charts only (e.g. `1.7.0`), so that a run is repeatable and observe can tell \
                     whether the release is current"
                ),
            }),
            _ => Ok(()),
        }
    }

    /// The chart argument and source flags of `helm upgrade`.
    pub(super) fn args(&self) -> Vec<String> {
        match self {
            ChartSource::Repo {
                url,
                chart,
                version,
            } => vec![
                chart.clone(),
                "--repo".into(),
                url.clone(),
                "--version".into(),
                version.clone(),
            ],
            ChartSource::Oci {
                reference,
                version,
                plain_http,
            } => {
                let mut args = vec![reference.clone(), "--version".into(), version.clone()];
                if *plain_http {
                    args.push("--plain-http".into());
                }
                args
            }
            ChartSource::Local { path } => vec![path.display().to_string()],
        }
    }
}

impl fmt::Display for ChartSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChartSource::Repo {
                url,
                chart,
                version,
            } => write!(f, "helm chart {chart} {version} from {url}"),
            ChartSource::Oci {
                reference, version, ..
            } => write!(f, "helm chart {reference} {version}"),
            ChartSource::Local { path } => write!(f, "helm chart {}", path.display()),
        }
    }
}

/// `helm pull` of a repository or OCI chart into `destination` (a `.tgz` named by helm after the
/// chart's name and version), or `helm package` of a chart directory; `None` for a packaged chart,
/// which is copied as it is. Needs no cluster: this is how `kgf-up vendor` makes an offline copy.
pub fn fetch_cmd(program: &str, chart: &ChartSource, destination: &Path) -> Option<Cmd> {
    let dest = destination.display().to_string();
    let cmd = match chart {
        ChartSource::Local { path } if path.is_dir() => Cmd::new(program)
            .args(["package".to_string(), path.display().to_string()])
            .args(["--destination".to_string(), dest]),
        ChartSource::Local { .. } => return None,
        ChartSource::Repo { .. } | ChartSource::Oci { .. } => Cmd::new(program)
            .arg("pull")
            .args(chart.args())
            .args(["--destination".to_string(), dest])
            .timeout(Duration::from_secs(300))
            .retry_on(TRANSIENT, 3, Duration::from_secs(1)),
    };
    Some(cmd)
}

/// A version without its optional leading `v`: charts spell it either way (KServe's `v0.20.0`).
pub(super) fn bare(version: &str) -> &str {
    version.strip_prefix('v').unwrap_or(version)
}

/// `1.7.0`, `v0.20.0`, `26.7.0-rc.1`: three numbers, no range operators or wildcards.
fn is_exact_version(v: &str) -> bool {
    let core = bare(v);
    let (core, rest) = match core.find(['-', '+']) {
        Some(i) => core.split_at(i),
        None => (core, ""),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    numbers.len() == 3
        && numbers
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-+.".contains(&b))
}

/// `Chart.yaml`'s identity.
#[derive(Deserialize)]
pub(super) struct ChartMeta {
    pub(super) name: String,
    pub(super) version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpinned_versions_and_tagged_oci_references_are_rejected() {
        for version in [
            "^1.7.0",
            "1.7",
            "~1.7.0",
            ">=1.0.0",
            "1.x.0",
            "",
            "1.7.0 || 1.8.0",
        ] {
            let src = ChartSource::Repo {
                url: "https://x".into(),
                chart: "c".into(),
                version: version.into(),
            };
            let err = src.validate().unwrap_err();
            assert!(
                err.to_string().contains("not an exact version"),
                "{version}: {err}"
            );
        }
        for version in ["1.7.0", "v0.20.0", "26.7.0-rc.1", "1.2.3+build.5"] {
            let src = ChartSource::Oci {
                reference: "oci://ghcr.io/x/c".into(),
                version: version.into(),
                plain_http: false,
            };
            src.validate().unwrap_or_else(|e| panic!("{version}: {e}"));
        }
        let tagged = ChartSource::Oci {
            reference: "oci://ghcr.io/kserve/charts/kserve-crd:v0.20.0".into(),
            version: "v0.20.0".into(),
            plain_http: false,
        };
        assert!(
            tagged
                .validate()
                .unwrap_err()
                .to_string()
                .contains("without a tag")
        );
    }
}
