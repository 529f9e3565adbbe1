//! GPU validation: nodes that should have GPUs show allocatable `nvidia.com/gpu`, then a CUDA
//! sample pod requesting one GPU logs `Test PASSED`. On the `sim` provider pods do not run, so the
//! CUDA pod is skipped with a visible "simulated" note; the allocatable check still runs.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams};

use crate::cluster::GpuNodes;
use crate::gate::Change;
use crate::kube::{FIELD_MANAGER, ObjectRef};
use crate::profile::{Profile, Provider};
use crate::step::{Ctx, Description, DynStep, Observation, Step, StepError, StepId, StepResult};
use crate::wait::{self, Seen, Stop};

pub const GPU: &str = "nvidia.com/gpu";
const SMOKE_JOB: &str = "kgf-cuda-smoke";

/// The validation steps of a profile; they run after `after` (every component). `gpu_nodes`
/// says which nodes must show GPUs (the provider's plan, or the profile's own list).
pub fn steps(
    profile: &Profile,
    gpu_nodes: &GpuNodes,
    cluster: &[StepId],
    after: &[StepId],
) -> Vec<DynStep> {
    let v = &profile.validation;
    let mut needs = cluster.to_vec();
    needs.extend(after.iter().cloned());
    let mut steps: Vec<DynStep> = Vec::new();
    if v.min_gpu_nodes > 0 {
        steps.push(Arc::new(GpuAllocatable {
            min_nodes: v.min_gpu_nodes,
            gpu_nodes: gpu_nodes.clone(),
            needs: needs.clone(),
        }));
        if v.cuda_smoke {
            steps.push(Arc::new(CudaSmoke {
                image: v.cuda_image.clone(),
                namespace: profile.settings.namespace.clone(),
                simulated: profile.cluster.provider == Provider::Sim,
                needs: vec![StepId::new("validate", "gpu-allocatable")],
            }));
        }
    }
    steps
}

pub struct GpuAllocatable {
    min_nodes: u32,
    gpu_nodes: GpuNodes,
    needs: Vec<StepId>,
}

/// A node as GPU validation sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeGpus {
    pub name: String,
    /// Allocatable `nvidia.com/gpu`.
    pub allocatable: i64,
    /// Labelled `nvidia.com/gpu.present=true` (by kgf-up, or by the GPU operator from PCI).
    pub labelled: bool,
}

/// The verdict on the nodes: whether the GPUs are usable, and a sentence saying which nodes were
/// counted and why. `expected` are the nodes meant to have GPUs (`None`: any node may).
pub fn assess(nodes: &[NodeGpus], expected: Option<&[String]>, min_nodes: u32) -> (bool, String) {
    let with: Vec<String> = nodes
        .iter()
        .filter(|n| n.allocatable > 0)
        .map(|n| format!("{}={}", n.name, n.allocatable))
        .collect();
    let is_expected = |name: &str| expected.is_some_and(|e| e.iter().any(|x| x == name));
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    if let Some(expected) = expected {
        let without: Vec<&str> = expected
            .iter()
            .filter(|name| !nodes.iter().any(|n| &n.name == *name && n.allocatable > 0))
            .map(String::as_str)
            .collect();
        for name in &without {
            if nodes.iter().any(|n| n.name == *name) {
                problems.push(format!(
                    "{name} is a GPU node of the profile without allocatable {GPU}"
                ));
            } else {
                problems.push(format!(
                    "{name} is a GPU node of the profile but no such node exists"
                ));
            }
        }
    }
    // The GPU operator labels every node whose PCI view shows an NVIDIA device: on kind that is
    // every node, so a labelled node without GPUs is expected there and only worth a note.
    let labelled_only: Vec<&str> = nodes
        .iter()
        .filter(|n| n.labelled && n.allocatable == 0 && !is_expected(&n.name))
        .map(|n| n.name.as_str())
        .collect();
    if !labelled_only.is_empty() {
        let why = if expected.is_some() {
            "not GPU nodes of the profile, not counted"
        } else {
            "warning: kgf-up did not choose this cluster's GPU nodes; set validation.gpu_nodes to name them"
        };
        notes.push(format!(
            "labelled nvidia.com/gpu.present=true without allocatable {GPU}: {} ({why})",
            labelled_only.join(", ")
        ));
    }
    if (with.len() as u32) < min_nodes {
        problems.push(format!(
            "{} node(s) with allocatable {GPU}, {min_nodes} wanted",
            with.len()
        ));
    }
    let counted = if with.is_empty() {
        format!("no node has allocatable {GPU}")
    } else {
        format!("allocatable {GPU}: {}", with.join(", "))
    };
    let basis = match expected {
        Some([]) => "the profile names no GPU node".to_string(),
        Some(e) => format!("GPU nodes of the profile: {}", e.join(", ")),
        None => "any node may have GPUs".to_string(),
    };
    let mut parts = vec![counted, basis];
    parts.extend(problems.iter().cloned());
    parts.extend(notes);
    (problems.is_empty(), parts.join("; "))
}

impl GpuAllocatable {
    async fn check(&self, ctx: &Ctx) -> StepResult<Observation> {
        let kube = ctx.kube().await?;
        let nodes: Vec<NodeGpus> = kube
            .allocatable(GPU)
            .await
            .map_err(|e| StepError::context("reading nodes", e))?
            .into_iter()
            .map(|(name, allocatable, labelled)| NodeGpus {
                name,
                allocatable,
                labelled,
            })
            .collect();
        let expected = self.gpu_nodes.names();
        let (usable, reason) = assess(&nodes, expected.as_deref(), self.min_nodes);
        if reason.contains("warning:") {
            tracing::warn!(%reason, "GPU validation");
        }
        Ok(if usable {
            Observation::converged(reason)
        } else {
            Observation::missing(reason)
        })
    }
}

impl Step for GpuAllocatable {
    fn id(&self) -> StepId {
        StepId::new("validate", "gpu-allocatable")
    }
    fn needs(&self) -> Vec<StepId> {
        self.needs.clone()
    }
    fn describe(&self) -> Description {
        let which = match &self.gpu_nodes {
            GpuNodes::Named(names) if !names.is_empty() => {
                format!(", including {}", names.join(", "))
            }
            GpuNodes::Named(_) | GpuNodes::Any => String::new(),
            GpuNodes::Detected(_) => ", including every GPU host".to_string(),
        };
        Description {
            source: format!(
                "at least {} node(s) with allocatable {GPU}{which}",
                self.min_nodes
            ),
            ..Default::default()
        }
    }
    fn observe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<Observation>> {
        self.check(ctx).boxed()
    }
    fn apply<'a>(&'a self, _: &'a Ctx, _: &'a Observation) -> BoxFuture<'a, StepResult<()>> {
        // Nothing to apply: the GPU operator's device plugin advertises the GPUs; wait watches.
        async { Ok(()) }.boxed()
    }
    fn wait<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<()>> {
        async move {
            let usable = wait::until(ctx.timeout, Duration::from_secs(2), || async {
                let seen = self.check(ctx).await?;
                Ok(if seen.is_converged() {
                    Seen::Ready(())
                } else {
                    Seen::Not(seen.reason)
                })
            });
            match usable.await {
                Ok(()) => Ok(()),
                Err(Stop::Failed(e)) => Err(e),
                Err(Stop::TimedOut { waited, last }) => Err(StepError::new(format!(
                    "GPUs are not usable after {}s: {last}",
                    waited.as_secs()
                ))
                .with_fix(
                    "check the GPU operator: `kubectl -n gpu-operator get pods` (device plugin, \
                     toolkit, validator) and `kgf-up doctor` on the host",
                )),
            }
        }
        .boxed()
    }
}

pub struct CudaSmoke {
    image: String,
    /// kgf-up's namespace, where the Job runs (known to `plan` without a cluster).
    namespace: String,
    simulated: bool,
    needs: Vec<StepId>,
}

impl CudaSmoke {
    fn job(&self) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": SMOKE_JOB, "labels": {"app.kubernetes.io/managed-by": "kgf-up"}},
            "spec": {
                "backoffLimit": 0,
                "template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "vectoradd",
                        "image": self.image,
                        "resources": {"limits": {GPU: 1}}
                    }]
                }}
            }
        })
    }
}

impl Step for CudaSmoke {
    fn id(&self) -> StepId {
        StepId::new("validate", "cuda-smoke")
    }
    fn needs(&self) -> Vec<StepId> {
        self.needs.clone()
    }
    fn describe(&self) -> Description {
        Description {
            source: self.image.clone(),
            objects: vec![format!(
                "Job {}/{SMOKE_JOB} (limits {GPU}: 1, must log Test PASSED)",
                self.namespace
            )],
            ..Default::default()
        }
    }
    fn observe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<Observation>> {
        async move {
            if self.simulated {
                return Ok(Observation::converged(
                    "simulated: pods do not run on sim, the CUDA smoke pod is skipped",
                ));
            }
            let jobs: Api<Job> = Api::namespaced(ctx.kube().await?.client(), &ctx.namespace);
            let job = jobs
                .get_opt(SMOKE_JOB)
                .await
                .map_err(|e| StepError::context("reading the smoke job", e))?;
            let image = job.as_ref().and_then(|j| {
                j.spec
                    .as_ref()?
                    .template
                    .spec
                    .as_ref()?
                    .containers
                    .first()?
                    .image
                    .clone()
            });
            let succeeded = job
                .as_ref()
                .and_then(|j| j.status.as_ref()?.succeeded)
                .unwrap_or(0)
                > 0;
            Ok(
                match (
                    job.is_some(),
                    image.as_deref() == Some(self.image.as_str()),
                    succeeded,
                ) {
                    (false, _, _) => Observation::missing("the CUDA smoke job has not run"),
                    (true, false, _) => Observation::drifted("the smoke job ran another image"),
                    (true, true, false) => Observation::drifted("the smoke job did not succeed"),
                    (true, true, true) => Observation::converged("the CUDA smoke job passed"),
                },
            )
        }
        .boxed()
    }
    fn apply<'a>(&'a self, ctx: &'a Ctx, seen: &'a Observation) -> BoxFuture<'a, StepResult<()>> {
        async move {
            let kube = ctx.kube().await?;
            let r = ObjectRef {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                namespace: Some(ctx.namespace.clone()),
                name: SMOKE_JOB.into(),
            };
            if seen.state != crate::step::State::Missing {
                // A Job's template is immutable: a failed or outdated one is replaced.
                kube.delete(&r, Duration::from_secs(60))
                    .await
                    .map_err(|e| StepError::context("replacing the smoke job", e))?;
            }
            let jobs: Api<Job> = Api::namespaced(kube.client(), &ctx.namespace);
            let params = PatchParams::apply(FIELD_MANAGER);
            let job = self.job();
            ctx.gate()
                .change(
                    Change::new(format!("create {r} (image {})", self.image)),
                    jobs.patch(SMOKE_JOB, &params, &Patch::Apply(&job)),
                )
                .await
                .map_err(|e| StepError::context("creating the CUDA smoke job", e))?;
            Ok(())
        }
        .boxed()
    }
    fn wait<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<()>> {
        async move {
            let kube = ctx.kube().await?;
            let r = ObjectRef {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                namespace: Some(ctx.namespace.clone()),
                name: SMOKE_JOB.into(),
            };
            if let Err(e) = kube.wait_ready(&r, ctx.timeout).await {
                return Err(StepError::context("the CUDA smoke pod", e)
                    .with_fix("a pod requesting nvidia.com/gpu did not finish: check the GPU operator's validator and the node's driver (`kgf-up doctor`)")
                    .with_diagnosis(kube.diagnose(&ctx.namespace).await));
            }
            let pods: Api<Pod> = Api::namespaced(kube.client(), &ctx.namespace);
            let list = pods
                .list(&ListParams::default().labels(&format!("job-name={SMOKE_JOB}")))
                .await
                .map_err(|e| StepError::context("finding the smoke pod", e))?;
            let Some(pod) = list.items.into_iter().next() else {
                return Err(StepError::new("the smoke job completed but its pod is gone"));
            };
            let name = pod.metadata.name.unwrap_or_default();
            let log = pods
                .logs(&name, &LogParams::default())
                .await
                .map_err(|e| StepError::context(format!("reading the log of {name}"), e))?;
            if log.contains("Test PASSED") {
                return Ok(());
            }
            Err(StepError::new(format!("the CUDA sample ran but did not print `Test PASSED`:\n{log}"))
                .with_fix("check the driver and toolkit versions with `kgf-up doctor`"))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, allocatable: i64, labelled: bool) -> NodeGpus {
        NodeGpus {
            name: name.into(),
            allocatable,
            labelled,
        }
    }

    /// kind as the real operator leaves it: every node labelled from the shared PCI view.
    fn kind_nodes(worker_gpus: i64) -> Vec<NodeGpus> {
        vec![
            node("kgf-control-plane", 0, true),
            node("kgf-worker", worker_gpus, true),
            node("kgf-worker2", 0, true),
        ]
    }

    #[test]
    fn operator_labels_on_nodes_without_gpus_do_not_fail_the_profiles_gpu_nodes() {
        let expected = vec!["kgf-worker".to_string()];
        let (ok, why) = assess(&kind_nodes(2), Some(&expected), 1);
        assert!(ok, "{why}");
        assert!(
            why.starts_with(
                "allocatable nvidia.com/gpu: kgf-worker=2; GPU nodes of the profile: kgf-worker"
            ),
            "{why}"
        );
        assert!(
            why.contains(
                "kgf-control-plane, kgf-worker2 (not GPU nodes of the profile, not counted)"
            ),
            "{why}"
        );
    }

    #[test]
    fn a_gpu_node_of_the_profile_without_gpus_fails_with_its_name() {
        let expected = vec!["kgf-worker".to_string()];
        let (ok, why) = assess(&kind_nodes(0), Some(&expected), 1);
        assert!(!ok);
        assert!(
            why.contains(
                "kgf-worker is a GPU node of the profile without allocatable nvidia.com/gpu"
            ),
            "{why}"
        );
        let missing = vec!["kgf-worker3".to_string()];
        let (ok, why) = assess(&kind_nodes(2), Some(&missing), 1);
        assert!(!ok);
        assert!(
            why.contains("kgf-worker3 is a GPU node of the profile but no such node exists"),
            "{why}"
        );
    }

    #[test]
    fn on_a_cluster_kgf_up_did_not_choose_a_labelled_node_without_gpus_is_a_warning() {
        let (ok, why) = assess(&kind_nodes(1), None, 1);
        assert!(ok, "{why}");
        assert!(why.contains("any node may have GPUs"), "{why}");
        assert!(why.contains("warning: kgf-up did not choose"), "{why}");
        let (ok, why) = assess(&kind_nodes(0), None, 1);
        assert!(!ok);
        assert!(
            why.contains("0 node(s) with allocatable nvidia.com/gpu, 1 wanted"),
            "{why}"
        );
    }
}
