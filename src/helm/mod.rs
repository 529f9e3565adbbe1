//! The helm adapter: install or upgrade a release at a pinned chart version with kgf-up's values,
//! say whether a deployed release is what the profile wants, recover releases an interrupted or
//! failed helm left behind, and uninstall.
//!
//! It drives the `helm` binary (3.13+ or 4.x, detected once: the two spell `--wait` and
//! `--atomic` differently) through [`crate::exec`] and nothing else, and keeps no state of its
//! own: no `helm repo add` (repository charts are fetched with `--repo`), no files but the values
//! file the caller names. It must not decide what to install: components do that.
//!
//! **Is a release converged?** Observe reads the release's record through the API ([`records`]:
//! status, chart name and version, user-supplied values; no helm process) and compares it with what
//! the profile wants. The values are compared, not a hash of them stored beside the release, because the
//! comparison needs no extra state, catches a hand-made `helm upgrade --set` (a stored hash would
//! still match), and names the key that differs. Upgrades always pass `--reset-values`, so the
//! deployed values are exactly kgf-up's file and the comparison is exact. Values are written as JSON
//! (valid YAML) so that helm's YAML 1.1 parser and kgf-up read the same types.
//!
//! **Recovery.** A helm client killed mid-operation leaves the latest revision in `pending-install`,
//! `pending-upgrade` or `pending-rollback`, and every later upgrade fails with "another operation
//! (install/upgrade/rollback) is in progress". kgf-up takes one lock per cluster, so a pending
//! release it owns is one an earlier kgf-up left behind; [`Helm::install`] recovers it before
//! upgrading: a release that was never deployed is uninstalled (its objects removed, its CRDs kept,
//! as helm always does), one with an earlier deployed revision is rolled back to it. An interrupted
//! uninstall (`uninstalling`) is finished. A `failed` release needs no recovery: `helm upgrade`
//! upgrades a failed revision in place.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

pub mod records;

use crate::exec::{Cmd, Exec, ExecError};
use crate::fix::Fix;

use crate::kube::Kubeconfig;
use crate::step::{ErrorKind, Observation, StepError};

/// The oldest helm kgf-up drives: `helm get metadata -o json` arrived in 3.13.
const MIN_HELM3_MINOR: u32 = 13;

/// How long helm may run past its own `--timeout` before kgf-up stops it. Helm writes the failed
/// release record after its deadline; stopping it before that would itself leave a pending release.
const GRACE: Duration = Duration::from_secs(60);

/// helm's `--timeout` for recovering a stuck release.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(300);

/// Failures of the API server connection that heal by themselves; reads retry on them.
const TRANSIENT: &[&str] = &[
    "connection refused",
    "i/o timeout",
    "TLS handshake timeout",
    "the server is currently unable to handle the request",
    "etcdserver: request timed out",
    "http2: client connection lost",
];

/// Helm's message when a release does not exist.
const NOT_FOUND: &str = "release: not found";

/// A helm client version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HelmVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl HelmVersion {
    /// Parses `v3.22.0`, `v4.3.1+g1a2b3c4` or `3.13.0-rc.1`.
    pub fn parse(text: &str) -> Option<Self> {
        let core = text.trim().trim_start_matches('v');
        let core = core.split(['+', '-']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
        let version = HelmVersion {
            major: parts.next()??,
            minor: parts.next()??,
            patch: parts.next()??,
        };
        parts.next().is_none().then_some(version)
    }

    fn supported(self) -> bool {
        (self.major == 3 && self.minor >= MIN_HELM3_MINOR) || self.major == 4
    }
}

impl fmt::Display for HelmVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

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
    /// The pinned version, for repository and OCI charts.
    fn version(&self) -> Option<&str> {
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
    fn args(&self) -> Vec<String> {
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
fn bare(version: &str) -> &str {
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
    fn parse(s: &str) -> Self {
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

/// `Chart.yaml`'s identity.
#[derive(Deserialize)]
struct ChartMeta {
    name: String,
    version: String,
}

/// What [`Helm::install`] had to do before upgrading a stuck release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Roll back to the last revision that was deployed.
    Rollback { stuck: u32, status: String, to: u32 },
    /// Uninstall a release that was never deployed, or finish an interrupted uninstall.
    Uninstall { stuck: u32, status: String },
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recovery::Rollback { stuck, status, to } => write!(
                f,
                "revision {stuck} was left {status} by an interrupted helm; rolling back to revision {to}, the last one deployed"
            ),
            Recovery::Uninstall { stuck, status } if status == "uninstalling" => write!(
                f,
                "revision {stuck} was left uninstalling by an interrupted helm; finishing the uninstall"
            ),
            Recovery::Uninstall { stuck, status } => write!(
                f,
                "revision {stuck} was left {status} by an interrupted helm and no revision was ever deployed; uninstalling it"
            ),
        }
    }
}

/// Decides how to recover from a release's history (oldest first), or `None` when the latest
/// revision is not stuck (a `failed` one is upgraded in place by helm itself).
pub fn recovery_for(history: &[Revision]) -> Option<Recovery> {
    let latest = history.iter().max_by_key(|r| r.revision)?;
    let status = ReleaseStatus::parse(&latest.status);
    if status == ReleaseStatus::Uninstalling {
        return Some(Recovery::Uninstall {
            stuck: latest.revision,
            status: latest.status.clone(),
        });
    }
    if !status.is_pending() {
        return None;
    }
    // The revision that is live: `deployed` while an upgrade is pending, else the newest that was
    // once deployed (`superseded`).
    let earlier = || history.iter().filter(|r| r.revision < latest.revision);
    let target = earlier()
        .filter(|r| r.status == "deployed")
        .max_by_key(|r| r.revision)
        .or_else(|| {
            earlier()
                .filter(|r| r.status == "superseded")
                .max_by_key(|r| r.revision)
        });
    Some(match target {
        Some(to) => Recovery::Rollback {
            stuck: latest.revision,
            status: latest.status.clone(),
            to: to.revision,
        },
        None => Recovery::Uninstall {
            stuck: latest.revision,
            status: latest.status.clone(),
        },
    })
}

/// What a [`Helm::install`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    /// The recovery done first, if the release was stuck.
    pub recovery: Option<Recovery>,
}

/// Why an install or upgrade failed, read from helm's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallFailure {
    /// The release's resources did not become ready within the timeout.
    NotReady,
    /// Another helm client holds the release.
    Busy,
    /// An admission webhook (usually another component's) did not answer.
    Webhook,
    /// The chart could not be fetched at that version.
    Chart,
    /// The chart did not render with kgf-up's values.
    Render,
    /// The API server could not be reached.
    Unreachable,
    /// An object of the chart exists and belongs to another release or to no release.
    Conflict,
    Other,
}

impl InstallFailure {
    pub fn classify(message: &str) -> Self {
        let has = |needles: &[&str]| needles.iter().any(|n| message.contains(n));
        if has(&["another operation (install/upgrade/rollback) is in progress"]) {
            InstallFailure::Busy
        } else if has(&["failed calling webhook"]) {
            InstallFailure::Webhook
        } else if has(&["Kubernetes cluster unreachable"]) {
            InstallFailure::Unreachable
        } else if has(&["cannot be imported into the current release"]) {
            InstallFailure::Conflict
        } else if has(&[
            "context deadline exceeded",
            "timed out waiting for the condition",
            " not ready",
        ]) {
            InstallFailure::NotReady
        } else if has(&[
            "execution error at",
            "executing \"",
            "parse error",
            "don't meet the specifications of the schema",
            "error converting YAML",
            "unable to build kubernetes objects",
        ]) {
            InstallFailure::Render
        } else if has(&[
            "failed to fetch",
            // OCI (oras): `failed to perform "FetchReference" on source: host/repo:tag: not found`
            "failed to perform \"Fetch",
            "failed to download",
            "is not a valid chart repository",
            "path \"",
            "no such file or directory",
            "not found in",
            "manifest unknown",
            "no chart version found",
            "no chart name found",
        ]) {
            InstallFailure::Chart
        } else {
            InstallFailure::Other
        }
    }
}

impl fmt::Display for InstallFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InstallFailure::NotReady => "its resources did not become ready in time",
            InstallFailure::Busy => "another helm operation on it is in progress",
            InstallFailure::Webhook => "an admission webhook did not answer",
            InstallFailure::Chart => "the chart could not be fetched",
            InstallFailure::Render => "the chart did not render with kgf-up's values",
            InstallFailure::Unreachable => "the cluster's API server could not be reached",
            InstallFailure::Conflict => "an object it would create belongs to something else",
            InstallFailure::Other => "helm failed",
        })
    }
}

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

impl From<HelmError> for StepError {
    fn from(err: HelmError) -> Self {
        let fix = err.fix();
        let kind = match &err {
            HelmError::BadSource { .. } | HelmError::LocalChart { .. } => ErrorKind::Input,
            HelmError::Version { .. } | HelmError::Unsupported { .. } => ErrorKind::Preflight,
            _ => ErrorKind::Step,
        };
        let mut step = StepError::new(crate::fix::chain(&err));
        step.fix = fix;
        step.kind = kind;
        step
    }
}

/// helm 3's `show crds` prints the chart's CRD files one after another without a `---` between
/// them (helm 4 adds it), so a file that does not start with one runs into the previous file's
/// last document. A CRD file holds plain YAML documents, so a top-level key seen twice marks
/// where the next one starts; a separator is put there.
fn separate_documents(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len());
    let mut keys: Vec<&str> = Vec::new();
    for line in yaml.lines() {
        if line.starts_with("---") {
            keys.clear();
        } else if let Some((key, _)) = line
            .split_once(':')
            .filter(|(k, _)| !k.is_empty() && !k.starts_with([' ', '\t', '#', '-', '{', '[']))
        {
            if keys.contains(&key) {
                out.push_str("---\n");
                keys.clear();
            }
            keys.push(key);
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The names of the CRDs in multi-document YAML that `command` printed.
fn crd_names(yaml: &str, command: &str) -> Result<Vec<String>, HelmError> {
    let docs = crate::kube::yaml_documents(yaml).map_err(|e| HelmError::Output {
        command: command.to_string(),
        detail: e.to_string(),
    })?;
    Ok(docs
        .iter()
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition"))
        .filter_map(|d| d.pointer("/metadata/name").and_then(Value::as_str))
        .map(str::to_string)
        .collect())
}

/// Versions found by [`Helm::detect`], per program: asked once per process, not once per release.
static DETECTED: std::sync::Mutex<Vec<(String, HelmVersion)>> = std::sync::Mutex::new(Vec::new());

fn detected(program: &str) -> Option<HelmVersion> {
    DETECTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(p, _)| p == program)
        .map(|(_, v)| *v)
}

/// A detected helm client bound to one cluster.
#[derive(Clone)]
pub struct Helm {
    exec: Exec,
    program: String,
    version: HelmVersion,
    /// `--kubeconfig` and `--kube-context`, on every command.
    kube: Vec<String>,
}

impl Helm {
    /// Asks `program` (usually `helm`) for its version and binds it to the cluster.
    pub async fn detect(
        exec: Exec,
        program: impl Into<String>,
        kubeconfig: &Kubeconfig,
    ) -> Result<Helm, HelmError> {
        let program = program.into();
        if let Some(version) = detected(&program) {
            return Ok(Helm::new(exec, program, version, kubeconfig));
        }
        let out = exec
            .run_async(Cmd::new(&program).args(["version", "--template", "{{.Version}}"]))
            .await
            .map_err(|source| HelmError::Version {
                program: program.clone(),
                source: Box::new(source),
            })?;
        let found = out.stdout.trim().to_string();
        match HelmVersion::parse(&found).filter(|v| v.supported()) {
            Some(version) => {
                DETECTED
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((program.clone(), version));
                Ok(Helm::new(exec, program, version, kubeconfig))
            }
            None => Err(HelmError::Unsupported { program, found }),
        }
    }

    /// A helm client of a known version (for `plan`, which runs nothing, and for tests).
    pub fn new(
        exec: Exec,
        program: impl Into<String>,
        version: HelmVersion,
        kubeconfig: &Kubeconfig,
    ) -> Helm {
        let mut kube = vec![
            "--kubeconfig".to_string(),
            kubeconfig.path.display().to_string(),
        ];
        if let Some(context) = &kubeconfig.context {
            kube.extend(["--kube-context".to_string(), context.clone()]);
        }
        Helm {
            exec,
            program: program.into(),
            version,
            kube,
        }
    }

    pub fn version(&self) -> HelmVersion {
        self.version
    }

    fn helm4(&self) -> bool {
        self.version.major >= 4
    }

    fn cmd(&self, args: &[&str], namespace: &str) -> Cmd {
        Cmd::new(&self.program)
            .args(args.iter().copied())
            .args(["--namespace", namespace])
            .args(self.kube.iter().cloned())
    }

    fn read(&self, args: &[&str], namespace: &str) -> Cmd {
        self.cmd(args, namespace)
            .timeout(Duration::from_secs(60))
            .retry_on(TRANSIENT, 4, Duration::from_millis(500))
    }

    /// The `helm upgrade --install` command for `release`, with this helm's flags.
    pub fn upgrade_cmd(&self, release: &Release) -> Cmd {
        let mut cmd = Cmd::new(&self.program)
            .args(["upgrade", "--install", release.name.as_str()])
            .args(release.chart.args())
            .args([
                "--namespace",
                release.namespace.as_str(),
                "--create-namespace",
            ])
            .args([
                "--values".to_string(),
                release.values_file.display().to_string(),
            ])
            // Without it, helm 3 reuses the previous values when the file is empty, and a value
            // set by hand would survive every upgrade.
            .arg("--reset-values")
            .arg(if self.helm4() {
                "--wait=watcher"
            } else {
                "--wait"
            })
            .args([
                "--timeout".to_string(),
                format!("{}s", release.timeout.as_secs()),
            ]);
        if release.rollback_on_failure {
            cmd = cmd.arg(if self.helm4() {
                "--rollback-on-failure"
            } else {
                "--atomic"
            });
        }
        if release.force_replace {
            cmd = cmd.arg(if self.helm4() {
                "--force-replace"
            } else {
                "--force"
            });
        }
        if release.skip_crds {
            cmd = cmd.arg("--skip-crds");
        }
        cmd.args(self.kube.iter().cloned())
            .timeout(release.timeout + GRACE)
            // Only failures from before helm changed anything: it could not reach the cluster.
            .retry_on(
                &["Kubernetes cluster unreachable"],
                3,
                Duration::from_secs(2),
            )
            .changes()
    }

    /// The chart's `crds/` directory as YAML (`helm show crds`). helm installs those CRDs once and
    /// never upgrades or removes them, so kgf-up server-side applies them itself before each
    /// install or upgrade (with `--skip-crds`) and records the ones it created for `down`.
    pub async fn chart_crds(&self, chart: &ChartSource) -> Result<String, HelmError> {
        let out = self
            .exec
            .run_async(self.show_crds_cmd(chart))
            .await
            .map_err(|source| HelmError::Crds {
                chart: chart.to_string(),
                source: Box::new(source),
            })?;
        Ok(separate_documents(&out.stdout))
    }

    pub fn show_crds_cmd(&self, chart: &ChartSource) -> Cmd {
        Cmd::new(&self.program)
            .args(["show", "crds"])
            .args(chart.args())
            .timeout(Duration::from_secs(120))
            .retry_on(TRANSIENT, 3, Duration::from_secs(1))
    }

    /// The CRDs among the release's rendered objects (`helm get manifest`). Charts that template
    /// their CRDs usually mark them `helm.sh/resource-policy: keep`, so uninstall leaves them too.
    pub async fn manifest_crds(
        &self,
        name: &str,
        namespace: &str,
    ) -> Result<Vec<String>, HelmError> {
        let cmd = self.read(&["get", "manifest", name], namespace);
        let Some(stdout) = self.read_release(cmd, name, namespace).await? else {
            return Ok(Vec::new());
        };
        crd_names(&stdout, "helm get manifest")
    }

    /// The release's revisions, oldest first.
    pub async fn history(&self, name: &str, namespace: &str) -> Result<Vec<Revision>, HelmError> {
        let cmd = self.read(&["history", name, "-o", "json", "--max", "256"], namespace);
        match self.read_release(cmd, name, namespace).await? {
            Some(stdout) => parse_json(&stdout, "helm history"),
            None => Ok(Vec::new()),
        }
    }

    /// Runs a read about one release; `None` when helm says it does not exist.
    async fn read_release(
        &self,
        cmd: Cmd,
        name: &str,
        namespace: &str,
    ) -> Result<Option<String>, HelmError> {
        match self.exec.run_async(cmd).await {
            Ok(out) => Ok(Some(out.stdout)),
            Err(e) if e.stderr().is_some_and(|s| s.contains(NOT_FOUND)) => Ok(None),
            Err(source) => Err(HelmError::Read {
                release: format!("{namespace}/{name}"),
                source: Box::new(source),
            }),
        }
    }

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

    /// Recovers `release` if an interrupted helm left it stuck, then upgrades or installs it and
    /// waits for its resources (helm's `--wait`, within `release.timeout`).
    pub async fn install(&self, release: &Release) -> Result<Installed, HelmError> {
        release.chart.validate()?;
        let recovery = self.recover(&release.name, &release.namespace).await?;
        write_values(&release.values_file, &release.values)?;
        self.exec
            .run_async(self.upgrade_cmd(release))
            .await
            .map_err(|source| HelmError::Install {
                release: release.id(),
                chart: release.chart.to_string(),
                failure: InstallFailure::classify(
                    &source
                        .stderr()
                        .map(str::to_string)
                        .unwrap_or_else(|| source.to_string()),
                ),
                timeout: release.timeout,
                source: Box::new(source),
            })?;
        Ok(Installed { recovery })
    }

    /// If the latest revision is stuck (pending-* or uninstalling), recovers it as the module
    /// docs describe and says what it did.
    pub async fn recover(
        &self,
        name: &str,
        namespace: &str,
    ) -> Result<Option<Recovery>, HelmError> {
        let history = self.history(name, namespace).await?;
        match history.last().map(|r| ReleaseStatus::parse(&r.status)) {
            Some(status) if status.is_pending() || status == ReleaseStatus::Uninstalling => {}
            _ => return Ok(None),
        }
        let Some(recovery) = recovery_for(&history) else {
            return Ok(None);
        };
        tracing::warn!(target: "helm", release = %format!("{namespace}/{name}"), "{recovery}");
        let cmd = match &recovery {
            Recovery::Rollback { to, .. } => {
                // No --wait: the upgrade that follows waits for the state the profile wants.
                self.cmd(&["rollback", name, &to.to_string()], namespace)
            }
            Recovery::Uninstall { .. } => self.cmd(
                &[
                    "uninstall",
                    name,
                    "--wait",
                    "--timeout",
                    &format!("{}s", RECOVERY_TIMEOUT.as_secs()),
                ],
                namespace,
            ),
        }
        .timeout(RECOVERY_TIMEOUT + GRACE)
        .changes();
        self.exec
            .run_async(cmd)
            .await
            .map_err(|source| HelmError::Recover {
                release: format!("{namespace}/{name}"),
                recovery: recovery.clone(),
                source: Box::new(source),
            })?;
        Ok(Some(recovery))
    }

    /// Uninstalls release `name` and waits for its objects to go (helm keeps the CRDs of `crds/`).
    /// Returns whether there was a release.
    pub async fn uninstall(
        &self,
        name: &str,
        namespace: &str,
        timeout: Duration,
    ) -> Result<bool, HelmError> {
        let cmd = self
            .cmd(
                &[
                    "uninstall",
                    name,
                    "--wait",
                    "--timeout",
                    &format!("{}s", timeout.as_secs()),
                ],
                namespace,
            )
            .timeout(timeout + GRACE)
            .retry_on(TRANSIENT, 3, Duration::from_secs(1))
            .changes();
        match self.exec.run_async(cmd).await {
            Ok(_) => Ok(true),
            Err(e) if e.stderr().is_some_and(|s| s.contains(NOT_FOUND)) => Ok(false),
            Err(source) => Err(HelmError::Uninstall {
                release: format!("{namespace}/{name}"),
                source: Box::new(source),
            }),
        }
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str, command: &str) -> Result<T, HelmError> {
    serde_json::from_str(text).map_err(|e| HelmError::Output {
        command: command.to_string(),
        detail: e.to_string(),
    })
}

fn empty_if_null(v: Value) -> Value {
    if v.is_null() {
        Value::Object(Default::default())
    } else {
        v
    }
}

/// Writes `values` as JSON (which helm reads as YAML), readable only by the user.
fn write_values(path: &Path, values: &Value) -> Result<(), HelmError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let err = |source| HelmError::ValuesFile {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let text = serde_json::to_string_pretty(&empty_if_null(values.clone()))
        .expect("a JSON value always serializes");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    file.write_all(text.as_bytes()).map_err(err)
}

/// The first place where the deployed values differ from the wanted ones, as a sentence, or
/// `None` when they are the same. Numbers compare by value: helm stores them as floats.
pub fn first_difference(path: &str, deployed: &Value, wanted: &Value) -> Option<String> {
    let mut found = Vec::new();
    differences(path, Some(deployed), Some(wanted), &mut found);
    let (at, d, w) = found.into_iter().next()?;
    let here = if at.is_empty() {
        "(top level)".to_string()
    } else {
        at
    };
    Some(match (d, w) {
        (Some(d), None) => format!(
            "`{here}` is {} on the cluster but not set by kgf-up",
            show(&d)
        ),
        (None, Some(w)) => format!(
            "`{here}` is not set on the cluster, kgf-up wants {}",
            show(&w)
        ),
        (d, w) => format!(
            "`{here}` is {} on the cluster, kgf-up wants {}",
            show(&d.unwrap_or_default()),
            show(&w.unwrap_or_default())
        ),
    })
}

/// Every values key that differs, as `key: deployed → wanted` (`(unset)` where one side has
/// none), for `plan` to list.
pub fn value_changes(deployed: &Value, wanted: &Value) -> Vec<String> {
    let mut found = Vec::new();
    differences("", Some(deployed), Some(wanted), &mut found);
    let side = |v: &Option<Value>| v.as_ref().map(show).unwrap_or_else(|| "(unset)".into());
    found
        .iter()
        .map(|(at, d, w)| format!("{at}: {} → {}", side(d), side(w)))
        .collect()
}

type Difference = (String, Option<Value>, Option<Value>);

fn differences(
    path: &str,
    deployed: Option<&Value>,
    wanted: Option<&Value>,
    out: &mut Vec<Difference>,
) {
    match (deployed, wanted) {
        (Some(Value::Object(d)), Some(Value::Object(w))) => {
            let mut keys: Vec<&String> = d.keys().chain(w.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                differences(&sub, d.get(k), w.get(k), out);
            }
        }
        (Some(Value::Array(d)), Some(Value::Array(w))) if d.len() == w.len() => {
            for (i, (dv, wv)) in d.iter().zip(w).enumerate() {
                differences(&format!("{path}[{i}]"), Some(dv), Some(wv), out);
            }
        }
        (Some(Value::Number(d)), Some(Value::Number(w))) if d.as_f64() == w.as_f64() => {}
        (d, w) if d == w => {}
        (d, w) => out.push((path.to_string(), d.cloned(), w.cloned())),
    }
}

/// A value for a message: compact JSON, cut at 60 characters.
fn show(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crd_files_that_helm_3_printed_back_to_back_are_separated() {
        let glued = "# a comment\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
                     metadata:\n  name: as.t.io\nspec: {}\n\
                     apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
                     metadata: {name: bs.t.io}\n---\n\
                     apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
                     metadata: {name: cs.t.io}\n\
                     kind: CustomResourceDefinition\napiVersion: apiextensions.k8s.io/v1\n\
                     metadata: {name: ds.t.io}\n";
        assert!(
            crate::kube::yaml_documents(glued).is_err(),
            "as helm 3 prints it"
        );
        assert_eq!(
            crd_names(&separate_documents(glued), "helm show crds").unwrap(),
            ["as.t.io", "bs.t.io", "cs.t.io", "ds.t.io"]
        );
        let separated = "---\napiVersion: v1\nkind: A\n---\napiVersion: v1\nkind: B\n";
        assert_eq!(
            separate_documents(separated),
            separated,
            "helm 4's output is kept"
        );
    }

    fn helm(major: u32) -> Helm {
        Helm::new(
            Exec::with_gate(crate::gate::Gate::record()),
            "helm",
            HelmVersion {
                major,
                minor: if major == 3 { 22 } else { 3 },
                patch: 0,
            },
            &Kubeconfig {
                path: "/kc".into(),
                context: Some("kind-kgf".into()),
            },
        )
    }

    fn release(chart: ChartSource) -> Release {
        Release::new(
            "kuberay-operator",
            "kuberay",
            chart,
            json!({"image": {"tag": "1.7.0"}}),
            "/work/kuberay.values.json",
            Duration::from_secs(300),
        )
    }

    fn repo() -> ChartSource {
        ChartSource::Repo {
            url: "https://ray-project.github.io/kuberay-helm/".into(),
            chart: "kuberay-operator".into(),
            version: "1.7.0".into(),
        }
    }

    #[test]
    fn versions_parse_and_only_3_13_and_4_are_supported() {
        let v = |s| HelmVersion::parse(s);
        assert_eq!(
            v("v3.22.0"),
            Some(HelmVersion {
                major: 3,
                minor: 22,
                patch: 0
            })
        );
        assert_eq!(v("v4.3.1+g1a2b3c4").map(|v| v.major), Some(4));
        assert_eq!(v("3.13.0-rc.1").map(|v| v.minor), Some(13));
        assert_eq!(v("<no value>"), None);
        assert_eq!(v("v3.22"), None);
        assert!(v("v3.13.0").unwrap().supported());
        assert!(!v("v3.12.3").unwrap().supported());
        assert!(!v("v2.17.0").unwrap().supported());
        assert!(!v("v5.0.0").unwrap().supported());
    }

    #[test]
    fn helm3_upgrade_uses_wait_and_atomic() {
        let mut r = release(repo());
        r.rollback_on_failure = true;
        r.force_replace = true;
        assert_eq!(
            helm(3).upgrade_cmd(&r).display(),
            "helm upgrade --install kuberay-operator kuberay-operator \
             --repo https://ray-project.github.io/kuberay-helm/ --version 1.7.0 \
             --namespace kuberay --create-namespace --values /work/kuberay.values.json \
             --reset-values --wait --timeout 300s --atomic --force \
             --kubeconfig /kc --kube-context kind-kgf"
        );
    }

    #[test]
    fn helm4_upgrade_uses_watcher_and_rollback_on_failure() {
        let mut r = release(ChartSource::Oci {
            reference: "oci://ghcr.io/kserve/charts/kserve-crd".into(),
            version: "v0.20.0".into(),
            plain_http: false,
        });
        r.rollback_on_failure = true;
        r.force_replace = true;
        let line = helm(4).upgrade_cmd(&r).display();
        assert!(
            line.starts_with(
                "helm upgrade --install kuberay-operator oci://ghcr.io/kserve/charts/kserve-crd --version v0.20.0 "
            ),
            "{line}"
        );
        for flag in [
            " --wait=watcher ",
            " --rollback-on-failure ",
            " --force-replace ",
        ] {
            assert!(line.contains(flag), "{flag} missing in {line}");
        }
        for flag in [" --atomic", " --force ", " --wait ", "--plain-http"] {
            assert!(!line.contains(flag), "{flag} is helm 3 only: {line}");
        }
        let plain = helm(4).upgrade_cmd(&release(repo())).display();
        assert!(!plain.contains("rollback-on-failure") && !plain.contains("force"));
        assert!(helm(4).upgrade_cmd(&r).is_change());
    }

    #[test]
    fn a_mirror_without_tls_gets_plain_http() {
        let mirror = ChartSource::Oci {
            reference: "oci://localhost:5001/charts/kserve-crd".into(),
            version: "v0.20.0".into(),
            plain_http: true,
        };
        mirror.validate().expect("a port in the host is not a tag");
        let line = helm(3).upgrade_cmd(&release(mirror)).display();
        assert!(
            line.contains("oci://localhost:5001/charts/kserve-crd --version v0.20.0 --plain-http "),
            "{line}"
        );
    }

    #[test]
    fn local_chart_is_passed_as_a_path_without_version() {
        let r = release(ChartSource::Local {
            path: "/charts/op-0.3.0.tgz".into(),
        });
        let line = helm(3).upgrade_cmd(&r).display();
        assert!(line.starts_with(
            "helm upgrade --install kuberay-operator /charts/op-0.3.0.tgz --namespace"
        ));
        assert!(!line.contains("--version"));
    }

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
        let step: StepError = tagged.validate().unwrap_err().into();
        assert_eq!(step.kind, ErrorKind::Input);
        assert!(step.fix.unwrap().contains("profile"));
    }

    fn rev(revision: u32, status: &str) -> Revision {
        Revision {
            revision,
            status: status.into(),
            chart: "c-0.1.0".into(),
            description: String::new(),
        }
    }

    #[test]
    fn pending_install_that_never_deployed_is_uninstalled() {
        assert_eq!(
            recovery_for(&[rev(1, "pending-install")]),
            Some(Recovery::Uninstall {
                stuck: 1,
                status: "pending-install".into()
            })
        );
        // An install that failed, then an upgrade that was interrupted: nothing to roll back to.
        assert!(matches!(
            recovery_for(&[rev(1, "failed"), rev(2, "pending-upgrade")]),
            Some(Recovery::Uninstall { stuck: 2, .. })
        ));
    }

    #[test]
    fn pending_upgrade_rolls_back_to_the_deployed_revision() {
        assert_eq!(
            recovery_for(&[
                rev(1, "superseded"),
                rev(2, "deployed"),
                rev(3, "pending-upgrade")
            ]),
            Some(Recovery::Rollback {
                stuck: 3,
                status: "pending-upgrade".into(),
                to: 2
            })
        );
        // A rollback interrupted after a failed upgrade: the newest once-deployed revision.
        assert!(matches!(
            recovery_for(&[
                rev(1, "superseded"),
                rev(2, "superseded"),
                rev(3, "failed"),
                rev(4, "pending-rollback")
            ]),
            Some(Recovery::Rollback {
                to: 2,
                stuck: 4,
                ..
            })
        ));
        // Order in the input does not matter; an old pending revision below a deployed one is
        // history, not a stuck release.
        assert_eq!(
            recovery_for(&[
                rev(3, "deployed"),
                rev(2, "pending-upgrade"),
                rev(1, "superseded")
            ]),
            None
        );
    }

    #[test]
    fn failed_and_deployed_releases_need_no_recovery_but_uninstalling_is_finished() {
        assert_eq!(recovery_for(&[rev(1, "failed")]), None);
        assert_eq!(
            recovery_for(&[rev(1, "superseded"), rev(2, "failed")]),
            None
        );
        assert_eq!(recovery_for(&[rev(1, "deployed")]), None);
        assert_eq!(recovery_for(&[]), None);
        let r = recovery_for(&[rev(1, "superseded"), rev(2, "uninstalling")]).unwrap();
        assert!(r.to_string().contains("finishing the uninstall"), "{r}");
    }

    #[test]
    fn install_failures_are_classified_from_helms_messages() {
        let c = InstallFailure::classify;
        assert_eq!(
            c("Error: UPGRADE FAILED: context deadline exceeded"),
            InstallFailure::NotReady
        );
        assert_eq!(
            c(
                "Error: resource Deployment/ns/x not ready. status: InProgress, message: Available: 0/1\ncontext deadline exceeded"
            ),
            InstallFailure::NotReady
        );
        assert_eq!(
            c("Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress"),
            InstallFailure::Busy
        );
        assert_eq!(
            c(
                "Error: INSTALLATION FAILED: Internal error occurred: failed calling webhook \"webhook.cert-manager.io\": connection refused"
            ),
            InstallFailure::Webhook
        );
        assert_eq!(
            c(
                "Error: chart \"kuberay-operator\" version \"9.9.9\" not found in https://ray-project.github.io/kuberay-helm/ repository"
            ),
            InstallFailure::Chart
        );
        assert_eq!(c("Error: path \"/nope\" not found"), InstallFailure::Chart);
        assert_eq!(
            c(
                "Error: failed to perform \"FetchReference\" on source: 127.0.0.1:5001/charts/x:9.9.9: not found"
            ),
            InstallFailure::Chart
        );
        assert_eq!(
            c(
                "Error: INSTALLATION FAILED: template: x/templates/d.yaml:3:4: executing \"x\" at <.Values.a.b>: nil pointer evaluating interface {}.b"
            ),
            InstallFailure::Render
        );
        assert_eq!(
            c(
                "Error: values don't meet the specifications of the schema(s) in the following chart(s)"
            ),
            InstallFailure::Render
        );
        assert_eq!(
            c(
                "Error: Kubernetes cluster unreachable: Get \"https://127.0.0.1:6443/version\": dial tcp: connection refused"
            ),
            InstallFailure::Unreachable
        );
    }

    #[test]
    fn values_differences_name_the_key() {
        let deployed = json!({"operator": {"replicas": 2, "logLevel": "info"}, "tags": ["a", "b"]});
        assert_eq!(first_difference("", &deployed, &deployed.clone()), None);
        let d = first_difference(
            "",
            &deployed,
            &json!({"operator": {"replicas": 3, "logLevel": "info"}, "tags": ["a", "b"]}),
        );
        assert_eq!(
            d.unwrap(),
            "`operator.replicas` is 2 on the cluster, kgf-up wants 3"
        );
        let d = first_difference(
            "",
            &deployed,
            &json!({"operator": {"replicas": 2}, "tags": ["a", "b"]}),
        );
        assert_eq!(
            d.unwrap(),
            "`operator.logLevel` is \"info\" on the cluster but not set by kgf-up"
        );
        let d = first_difference(
            "",
            &deployed,
            &json!({"operator": {"replicas": 2, "logLevel": "info"}, "tags": ["a", "c"]}),
        );
        assert_eq!(
            d.unwrap(),
            "`tags[1]` is \"b\" on the cluster, kgf-up wants \"c\""
        );
        let d = first_difference("", &json!({}), &json!({"agent": {"enabled": false}}));
        assert_eq!(
            d.unwrap(),
            "`agent` is not set on the cluster, kgf-up wants {\"enabled\":false}"
        );
        let d = first_difference("", &json!({"tags": ["a"]}), &json!({"tags": ["a", "b"]}));
        assert!(d.unwrap().starts_with("`tags` is [\"a\"]"));
    }

    #[test]
    fn numbers_compare_by_value_as_helm_stores_floats() {
        assert_eq!(
            first_difference("", &json!({"n": 1}), &json!({"n": 1.0})),
            None
        );
        assert_eq!(
            first_difference("", &json!({"n": 1e6}), &json!({"n": 1000000})),
            None
        );
        assert!(first_difference("", &json!({"n": "1"}), &json!({"n": 1})).is_some());
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "x".repeat(200);
        let d = first_difference("", &json!({"k": long}), &json!({"k": "y"})).unwrap();
        assert!(d.len() < 150 && d.contains('…'), "{d}");
    }

    #[test]
    fn values_file_is_json_and_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/values.json");
        write_values(&path, &json!({"enabled": true, "name": "on"})).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, json!({"enabled": true, "name": "on"}));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write_values(&path, &Value::Null).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}");
    }

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
        let step: StepError = err.into();
        assert!(
            step.message.starts_with(
                "uninstalling release kuberay/kuberay-operator: `helm uninstall` did not finish"
            ),
            "{}",
            step.message
        );
    }
}
