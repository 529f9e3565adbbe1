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

use crate::kube::{FIELD_MANAGER, ObjectRef};
use crate::profile::{Profile, Provider};
use crate::step::{Ctx, Description, DynStep, Observation, Step, StepError, StepId, StepResult};

pub const GPU: &str = "nvidia.com/gpu";
const SMOKE_JOB: &str = "kgf-cuda-smoke";

/// The validation steps of a profile; they run after `after` (every component).
pub fn steps(profile: &Profile, cluster: &[StepId], after: &[StepId]) -> Vec<DynStep> {
    let v = &profile.validation;
    let mut needs = cluster.to_vec();
    needs.extend(after.iter().cloned());
    let mut steps: Vec<DynStep> = Vec::new();
    if v.min_gpu_nodes > 0 {
        steps.push(Arc::new(GpuAllocatable {
            min_nodes: v.min_gpu_nodes,
            needs: needs.clone(),
        }));
        if v.cuda_smoke {
            steps.push(Arc::new(CudaSmoke {
                image: v.cuda_image.clone(),
                simulated: profile.cluster.provider == Provider::Sim,
                needs: vec![StepId::new("validate", "gpu-allocatable")],
            }));
        }
    }
    steps
}

pub struct GpuAllocatable {
    min_nodes: u32,
    needs: Vec<StepId>,
}

impl GpuAllocatable {
    async fn check(&self, ctx: &Ctx) -> StepResult<Observation> {
        let kube = ctx.kube().await?;
        let nodes = kube
            .allocatable(GPU)
            .await
            .map_err(|e| StepError::context("reading nodes", e))?;
        let with: Vec<String> = nodes
            .iter()
            .filter(|(_, n, _)| *n > 0)
            .map(|(name, n, _)| format!("{name}={n}"))
            .collect();
        let labelled_without: Vec<&str> = nodes
            .iter()
            .filter(|(_, n, gpu)| *gpu && *n == 0)
            .map(|(name, _, _)| name.as_str())
            .collect();
        if with.len() as u32 >= self.min_nodes && labelled_without.is_empty() {
            Ok(Observation::converged(format!(
                "allocatable {GPU}: {}",
                with.join(", ")
            )))
        } else if !labelled_without.is_empty() {
            Ok(Observation::missing(format!(
                "nodes labelled nvidia.com/gpu.present=true without allocatable {GPU}: {}",
                labelled_without.join(", ")
            )))
        } else {
            Ok(Observation::missing(format!(
                "{} node(s) with allocatable {GPU}, {} wanted",
                with.len(),
                self.min_nodes
            )))
        }
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
        Description {
            source: format!("at least {} node(s) with allocatable {GPU}", self.min_nodes),
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
            let deadline = tokio::time::Instant::now() + ctx.timeout;
            loop {
                let seen = self.check(ctx).await?;
                if seen.is_converged() {
                    return Ok(());
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(StepError::new(format!(
                        "GPUs are not usable after {}s: {}",
                        ctx.timeout.as_secs(),
                        seen.reason
                    ))
                    .with_fix(
                        "check the GPU operator: `kubectl -n gpu-operator get pods` (device plugin, \
                         toolkit, validator) and `kgf-up doctor` on the host",
                    ));
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        .boxed()
    }
}

pub struct CudaSmoke {
    image: String,
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
                "Job {{namespace}}/{SMOKE_JOB} (limits {GPU}: 1, must log Test PASSED)"
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
            jobs.patch(
                SMOKE_JOB,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&self.job()),
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
