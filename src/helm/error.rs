//! The helm adapter's error type, each variant with its fix.

use std::path::PathBuf;
use std::time::Duration;

use super::{InstallFailure, Recovery};
use crate::exec::ExecError;
use crate::fix::Fix;

#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    #[error("cannot tell which helm `{program}` is")]
    Version {
        program: String,
        #[source]
        source: Box<ExecError>,
    },
    #[error("reading the CRDs of chart {chart}")]
    Crds {
        chart: String,
        #[source]
        source: Box<ExecError>,
    },
    #[error("`{program}` printed version `{found}`, which kgf-up does not support")]
    Unsupported { program: String, found: String },
    #[error("chart source `{source_text}` is not usable: {detail}")]
    BadSource { source_text: String, detail: String },
    #[error("cannot read the local chart {}: {detail}", path.display())]
    LocalChart { path: PathBuf, detail: String },
    #[error("reading the record of release {release}: {message}")]
    Record { release: String, message: String },
    #[error("reading release {release}")]
    Read {
        release: String,
        #[source]
        source: Box<ExecError>,
    },
    #[error("`{command}` printed something kgf-up cannot read: {detail}")]
    Output { command: String, detail: String },
    #[error("cannot write the values file {}", path.display())]
    ValuesFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("recovering release {release} ({recovery})")]
    Recover {
        release: String,
        recovery: Recovery,
        #[source]
        source: Box<ExecError>,
    },
    #[error("installing release {release} from {chart} failed: {failure} (helm --timeout {}s)", timeout.as_secs())]
    Install {
        release: String,
        chart: String,
        failure: InstallFailure,
        timeout: Duration,
        #[source]
        source: Box<ExecError>,
    },
    #[error("uninstalling release {release}")]
    Uninstall {
        release: String,
        #[source]
        source: Box<ExecError>,
    },
}

impl Fix for HelmError {
    fn fix(&self) -> Option<String> {
        Some(match self {
            HelmError::Version { .. } | HelmError::Unsupported { .. } => {
                "install helm 3.22+ or 4.x (https://helm.sh/docs/intro/install/) and put it on PATH"
                    .into()
            }
            HelmError::BadSource { .. } => {
                "fix the component's chart source in the profile (or its --set override)".into()
            }
            HelmError::Crds { .. } => {
                "check that the chart can be fetched (repository URL, version, network)".into()
            }
            HelmError::LocalChart { .. } => {
                "point the source at a chart directory (with Chart.yaml) or a `helm package` .tgz"
                    .into()
            }
            HelmError::Read { .. } | HelmError::Record { .. } => {
                "check that the cluster is reachable with this kubeconfig (`kubectl get ns`), then run kgf-up again"
                    .into()
            }
            HelmError::Output { .. } => {
                "this helm prints output kgf-up does not know; use helm 3.22+ or 4.x".into()
            }
            HelmError::ValuesFile { .. } => {
                "check that kgf-up's work directory is writable (see --log-file for its location)"
                    .into()
            }
            HelmError::Recover { release, .. } => format!(
                "inspect it with `helm history {}` and roll back or uninstall it by hand, then run kgf-up again",
                split_release(release)
            ),
            HelmError::Install {
                release, failure, ..
            } => match failure {
                InstallFailure::NotReady => "the unready pods and their events are listed below; fix their cause \
                     (image, resources, node selector) or raise the step's timeout, then run kgf-up again: \
                     the failed release is upgraded in place"
                    .into(),
                InstallFailure::Busy => format!(
                    "another helm client is changing this release: wait for it to finish (`helm history {}`), then run kgf-up again",
                    split_release(release)
                ),
                InstallFailure::Webhook => "a webhook this chart's objects need is not serving yet: check that the \
                     component providing it (usually cert-manager) is ready, then run kgf-up again"
                    .into(),
                InstallFailure::Chart => "check the chart source, name and pinned version; behind an air gap point the \
                     source at a local mirror or chart directory"
                    .into(),
                InstallFailure::Render => "the generated values do not fit this chart version: check the component's \
                     value overrides in the profile against the chart's values"
                    .into(),
                InstallFailure::Unreachable => {
                    "check that the cluster is up and the kubeconfig's server address is reachable".into()
                }
                InstallFailure::Conflict => "another release, or an install made without helm, owns the object helm \
                     names: remove that install (or that object) first, or give this release another name"
                    .into(),
                InstallFailure::Other => {
                    "read helm's message above (the run log has its full output), fix the cause and run kgf-up again"
                        .into()
                }
            },
            HelmError::Uninstall { release, .. } => format!(
                "run `helm uninstall {}` by hand to see why, then run `kgf-up down` again",
                split_release(release)
            ),
        })
    }
}

/// `namespace/name` → `name -n namespace`, for commands in fixes.
fn split_release(release: &str) -> String {
    match release.split_once('/') {
        Some((ns, name)) => format!("{name} -n {ns}"),
        None => release.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixes_name_the_release_as_a_command() {
        let err = HelmError::Uninstall {
            release: "kuberay/kuberay-operator".into(),
            source: Box::new(ExecError::TimedOut {
                command: "helm uninstall".into(),
                after: Duration::from_secs(1),
            }),
        };
        assert!(
            err.fix()
                .unwrap()
                .contains("helm uninstall kuberay-operator -n kuberay")
        );
        let told = crate::fix::chain(&err);
        assert!(
            told.starts_with(
                "uninstalling release kuberay/kuberay-operator: `helm uninstall` did not finish"
            ),
            "{told}"
        );
    }
}
