//! What a step is: observe (read-only) → apply (only when not converged) → wait (with a deadline),
//! the context every step gets, and how a step ended.
//!
//! Steps are built by the plan from the profile and driven by the runner; this module only defines
//! their shape and the context they get. It must not run anything itself.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::exec::Exec;
use crate::fix::{Fix, chain};
use crate::helm::{Found, HelmError, Observed};
use crate::inventory::Inventory;
use crate::kube::{Kube, Kubeconfig};
use crate::kustomize::KustomizeError;

/// A step's canonical id, e.g. `cluster`, `component/cert-manager`. Made only by [`StepId::new`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct StepId(String);

impl StepId {
    pub fn new(kind: &str, name: &str) -> Self {
        if name.is_empty() {
            StepId(kind.to_string())
        } else {
            StepId(format!("{kind}/{name}"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What observe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Converged,
    Missing,
    Drifted,
    Failed,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Converged => "converged",
            State::Missing => "missing",
            State::Drifted => "drifted",
            State::Failed => "failed",
        })
    }
}

/// Observe's verdict and its reason, e.g. `Drifted` because "chart 0.1.0 deployed, 0.2.0 wanted".
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Observation {
    pub state: State,
    pub reason: String,
}

impl Observation {
    pub fn converged(reason: impl Into<String>) -> Self {
        Observation {
            state: State::Converged,
            reason: reason.into(),
        }
    }
    pub fn missing(reason: impl Into<String>) -> Self {
        Observation {
            state: State::Missing,
            reason: reason.into(),
        }
    }
    pub fn drifted(reason: impl Into<String>) -> Self {
        Observation {
            state: State::Drifted,
            reason: reason.into(),
        }
    }
    pub fn failed(reason: impl Into<String>) -> Self {
        Observation {
            state: State::Failed,
            reason: reason.into(),
        }
    }
    pub fn is_converged(&self) -> bool {
        self.state == State::Converged
    }
}

/// What `plan` shows for a step without touching anything.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Description {
    /// Where its content comes from: `helm repo/chart 1.2.3`, `kustomize path`, `kind v0.33.0`.
    pub source: String,
    /// Commands apply would run (secrets redacted).
    pub commands: Vec<String>,
    /// Objects apply would create or update, as `Kind namespace/name`.
    pub objects: Vec<String>,
    /// Files apply would write, with their content (secrets redacted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ShownFile>,
    /// For components: the resolved component (source, namespace, release, values), so a
    /// machine reading `plan -o json` sees exactly what would be installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<serde_json::Value>,
}

/// A file as `plan` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ShownFile {
    /// Where it is written: a path, and the host for files written over SSH.
    pub path: String,
    pub content: String,
}

/// A failed step: what failed, why, how to fix it, and what was seen on the cluster.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub message: String,
    pub fix: Option<String>,
    /// Unready pods, their reasons, events and log tails, when a wait timed out.
    pub diagnosis: Option<String>,
    /// Whether the error is the user's input (exit 2) or the host failing preflight (exit 3).
    pub kind: ErrorKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Step,
    Input,
    Preflight,
}

impl StepError {
    pub fn new(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
            fix: None,
            diagnosis: None,
            kind: ErrorKind::Step,
        }
    }

    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    pub fn with_diagnosis(mut self, diagnosis: impl Into<String>) -> Self {
        self.diagnosis = Some(diagnosis.into());
        self
    }

    pub fn input(mut self) -> Self {
        self.kind = ErrorKind::Input;
        self
    }

    pub fn preflight(mut self) -> Self {
        self.kind = ErrorKind::Preflight;
        self
    }

    /// Wraps a module error with the step's context: "installing cert-manager: <cause>". Causes
    /// in the error's chain are added unless its message already says them.
    pub fn context(context: impl fmt::Display, cause: impl std::error::Error) -> Self {
        StepError::new(format!("{context}: {}", chain(&cause)))
    }

    /// [`StepError::context`], keeping the cause's fix.
    pub fn caused(context: impl fmt::Display, cause: impl std::error::Error + Fix) -> Self {
        let fix = cause.fix();
        StepError {
            fix,
            ..StepError::context(context, cause)
        }
    }

    /// A module error as it is, with its causes and its fix.
    pub fn of(cause: impl std::error::Error + Fix) -> Self {
        StepError {
            fix: cause.fix(),
            ..StepError::new(chain(&cause))
        }
    }
}

impl Fix for StepError {
    fn fix(&self) -> Option<String> {
        self.fix.clone()
    }
}

/// What a release's record means for a step: not there (or gone) is missing, another chart or
/// other values is drift, a failed or stuck revision is failed (apply upgrades or recovers it).
impl From<Observed> for Observation {
    fn from(seen: Observed) -> Self {
        let reason = seen.to_string();
        match seen.found {
            Found::NotInstalled | Found::Gone { .. } => Observation::missing(reason),
            Found::Failed { .. } | Found::Stuck { .. } | Found::Unknown { .. } => {
                Observation::failed(reason)
            }
            Found::OtherChart { .. } | Found::OtherValues { .. } => Observation::drifted(reason),
            Found::AsWanted { .. } => Observation::converged(reason),
        }
    }
}

/// A helm error in a step: a chart source the profile names is the user's input, a helm kgf-up
/// cannot drive is the host failing preflight, the rest is the step failing.
impl From<HelmError> for StepError {
    fn from(err: HelmError) -> Self {
        let kind = match &err {
            HelmError::BadSource { .. } | HelmError::LocalChart { .. } => ErrorKind::Input,
            HelmError::Version { .. } | HelmError::Unsupported { .. } => ErrorKind::Preflight,
            _ => ErrorKind::Step,
        };
        StepError {
            kind,
            ..StepError::of(err)
        }
    }
}

/// A kustomize error in a step: a kustomization the profile names that is not there is the user's
/// input, the rest is the step failing.
impl From<KustomizeError> for StepError {
    fn from(err: KustomizeError) -> Self {
        let kind = match &err {
            KustomizeError::Missing { .. } | KustomizeError::NotAKustomization { .. } => {
                ErrorKind::Input
            }
            _ => ErrorKind::Step,
        };
        StepError {
            kind,
            ..StepError::of(err)
        }
    }
}

/// Everything a step may use. Shared by all steps of a run.
pub struct Ctx {
    pub exec: Exec,
    /// The cluster's kubeconfig, set by the cluster step (or given with `--kubeconfig`).
    pub kubeconfig: OnceCell<Kubeconfig>,
    /// Default deadline for a step's wait.
    pub timeout: Duration,
    /// Directory for rendered files (values, kind configs) of this run.
    pub work_dir: PathBuf,
    /// Namespace of kgf-up's own objects (the inventory).
    pub namespace: String,
    /// What this run connected to: `[0]` the cluster it found, `[1]` the one its cluster step
    /// made in its place (`recreate`). A run replaces its cluster at most once; the old
    /// connection is set aside, never used again.
    connections: [Connection; 2],
    replaced: AtomicBool,
    lock: tokio::sync::Mutex<Option<crate::lock::Held>>,
}

/// A client of one cluster and the inventory read through it.
#[derive(Default)]
struct Connection {
    kube: OnceCell<Kube>,
    inventory: OnceCell<Inventory>,
}

impl Ctx {
    pub fn new(exec: Exec, work_dir: PathBuf, timeout: Duration, namespace: String) -> Self {
        Ctx {
            exec,
            kubeconfig: OnceCell::new(),
            timeout,
            work_dir,
            namespace,
            connections: Default::default(),
            replaced: AtomicBool::new(false),
            lock: tokio::sync::Mutex::new(None),
        }
    }

    fn connection(&self) -> &Connection {
        &self.connections[usize::from(self.replaced.load(Ordering::Acquire))]
    }

    /// The cluster step deleted the cluster and created a new one at the same kubeconfig path
    /// (new port, new CA): the API client and inventory of the old one are set aside, and the
    /// lock, when this run held one, is taken again in the new cluster (the old lease went with
    /// the old cluster, so it is dropped without being given back). Under `plan` it only marks
    /// the cluster as one that would be replaced.
    pub async fn cluster_replaced(&self) -> StepResult<()> {
        if self.replaced.swap(true, Ordering::AcqRel) {
            return Err(StepError::new(
                "the cluster was replaced twice in one run; kgf-up re-creates a cluster at most once per run",
            ));
        }
        let held = self.lock.lock().await.take();
        if let Some(old) = held {
            drop(old);
            self.lock_for_change().await?;
        }
        Ok(())
    }

    /// Takes the cluster's lock before the first change of this run, once the cluster is known
    /// (steps that create the cluster have their own guards). A run that changes nothing never
    /// takes it, so it stays read-only.
    pub async fn lock_for_change(&self) -> StepResult<()> {
        if self.kubeconfig.get().is_none() || self.gate().recording() {
            return Ok(());
        }
        let mut held = self.lock.lock().await;
        if held.is_none() {
            let taken = crate::lock::acquire(self.kube().await?, &self.namespace)
                .await
                .map_err(|e| StepError::caused("locking the cluster for this run", e))?;
            *held = Some(taken);
        }
        Ok(())
    }

    /// Whether the cluster step replaced the cluster (or, under `plan`, would).
    pub fn cluster_was_replaced(&self) -> bool {
        self.replaced.load(Ordering::Acquire)
    }

    /// The gate every change of this run passes.
    pub fn gate(&self) -> &crate::gate::Gate {
        self.exec.gate()
    }

    /// Gives the lock back at the end of the run, if it was taken.
    pub async fn release_lock(&self) {
        if let Some(held) = self.lock.lock().await.take() {
            held.release().await;
        }
    }

    /// The API client, connected on first use from the kubeconfig.
    pub async fn kube(&self) -> StepResult<&Kube> {
        let kubeconfig = self.kubeconfig()?;
        self.connection()
            .kube
            .get_or_try_init(|| async {
                Kube::connect(kubeconfig, self.exec.gate().clone())
                    .await
                    .map_err(|e| {
                        StepError::context("connecting to the cluster", e).with_fix(
                        "check that the cluster is running and the kubeconfig/context point at it",
                    )
                    })
            })
            .await
    }

    /// The inventory as it was when first read in this run.
    pub async fn inventory(&self) -> StepResult<&Inventory> {
        let kube = self.kube().await?;
        self.connection()
            .inventory
            .get_or_try_init(|| async {
                Inventory::read(kube, &self.namespace)
                    .await
                    .map_err(|e| StepError::context("reading kgf-up's inventory", e))
            })
            .await
    }

    /// The kubeconfig, or an error saying that the cluster step has not produced one.
    pub fn kubeconfig(&self) -> Result<&Kubeconfig, StepError> {
        self.kubeconfig.get().ok_or_else(|| {
            StepError::new("no cluster is known yet")
                .with_fix("run the cluster step first, or pass --kubeconfig")
        })
    }
}

pub type StepResult<T> = Result<T, StepError>;

/// One unit of work in a plan.
pub trait Step: Send + Sync {
    fn id(&self) -> StepId;
    /// Steps that must be converged before this one starts.
    fn needs(&self) -> Vec<StepId>;
    fn describe(&self) -> Description;
    /// Read-only: what is there now, and why that is (or is not) what the profile wants.
    fn observe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<Observation>>;
    /// Changes only what observe named. Every change passes the gate ([`Ctx::gate`]: through
    /// `ctx.exec`, the `Kube` client, or `gate().change` itself), so that `plan` can run it too.
    fn apply<'a>(&'a self, ctx: &'a Ctx, seen: &'a Observation) -> BoxFuture<'a, StepResult<()>>;
    /// Until ready, within the step's deadline; on timeout, a diagnosis. Steps whose apply
    /// finishes the change keep this default.
    fn wait<'a>(&'a self, _ctx: &'a Ctx) -> BoxFuture<'a, StepResult<()>> {
        async { Ok(()) }.boxed()
    }
}

pub type DynStep = Arc<dyn Step>;

/// How a step ended.
#[derive(Debug)]
pub enum Outcome {
    /// Observe found it converged: nothing was changed.
    Converged(String),
    /// It was applied and is ready.
    Applied(String),
    Failed(StepError),
    /// Not attempted because a step it needs failed.
    Skipped(String),
}

impl Outcome {
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Converged(_) => "converged",
            Outcome::Applied(_) => "applied",
            Outcome::Failed(_) => "failed",
            Outcome::Skipped(_) => "skipped",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Outcome::Converged(m) | Outcome::Applied(m) | Outcome::Skipped(m) => m.clone(),
            Outcome::Failed(e) => e.message.clone(),
        }
    }
}

#[derive(Debug)]
pub struct Finished {
    pub id: StepId,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

/// One phase of one step, as the UI reports it.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Observe,
    Apply,
    Wait,
    Done,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helm::ChartSource;

    #[test]
    fn a_chart_source_the_profile_names_is_bad_input_with_its_fix() {
        let tagged = ChartSource::Oci {
            reference: "oci://ghcr.io/kserve/charts/kserve-crd:v0.20.0".into(),
            version: "v0.20.0".into(),
            plain_http: false,
        };
        let step: StepError = tagged.validate().unwrap_err().into();
        assert_eq!(step.kind, ErrorKind::Input);
        assert!(step.fix.unwrap().contains("profile"));
        let unsupported: StepError = HelmError::Unsupported {
            program: "helm".into(),
            found: "v2.17.0".into(),
        }
        .into();
        assert_eq!(unsupported.kind, ErrorKind::Preflight);
    }

    #[test]
    fn a_kustomization_that_is_not_there_is_bad_input_with_its_fix() {
        let dir = tempfile::tempdir().unwrap();
        let step: StepError = KustomizeError::NotAKustomization {
            path: dir.path().into(),
        }
        .into();
        assert_eq!(step.kind, ErrorKind::Input);
        assert!(step.fix.unwrap().contains("kustomization.yaml"));
        assert!(
            step.message.contains("has no kustomization.yaml"),
            "{}",
            step.message
        );
    }

    #[test]
    fn an_adapter_error_keeps_its_causes_in_the_message() {
        let err = HelmError::Uninstall {
            release: "kuberay/kuberay-operator".into(),
            source: Box::new(crate::exec::ExecError::TimedOut {
                command: "helm uninstall".into(),
                after: Duration::from_secs(1),
            }),
        };
        let step: StepError = err.into();
        assert_eq!(step.kind, ErrorKind::Step);
        assert!(
            step.message.starts_with(
                "uninstalling release kuberay/kuberay-operator: `helm uninstall` did not finish"
            ),
            "{}",
            step.message
        );
        assert!(
            step.fix
                .unwrap()
                .contains("helm uninstall kuberay-operator -n kuberay")
        );
    }
}
