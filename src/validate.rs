//! GPU validation: every node meant to have GPUs shows exactly the GPU resources the profile gave
//! it (times its time-slices; with MIG, at least one device per GPU), then a CUDA sample Job on
//! each of those nodes, requesting one GPU there, logs `Test PASSED`. On the `sim` provider pods
//! do not run, so the CUDA Jobs are skipped with a visible "simulated" note; the allocatable check
//! still runs.
//!
//! The Jobs carry no `runtimeClassName`: on the CDI path (docs/gpu.md) containerd injects the GPU
//! the device plugin allocated, and a pod that gets its GPU any other way would not prove that.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams};
use sha2::{Digest, Sha256};

use crate::cluster::{GpuNode, GpuNodes};
use crate::gate::Change;
use crate::kube::{FIELD_MANAGER, ObjectRef};
use crate::profile::gpu::{GPU_RESOURCE, GpuSharing, MIG_RESOURCE_PREFIX};
use crate::profile::{Profile, Provider};
use crate::step::{Ctx, Description, DynStep, Observation, Step, StepError, StepId, StepResult};
use crate::wait::{self, Seen, Stop};

pub const GPU: &str = GPU_RESOURCE;
/// The CUDA Jobs' names start with this (then the node's name, or a hash of a long one).
const SMOKE_JOB: &str = "kgf-cuda-smoke";
/// The label every CUDA Job and its pod carry, so one list finds them all.
const CHECK_LABEL: (&str, &str) = ("kgf-up.io/check", "cuda-smoke");
/// The label telling one run's Jobs from another's.
const RUN_LABEL: &str = "kgf-up.io/run";
/// The annotation naming the node a Job was made for (node names can be longer than a label).
const NODE_ANNOTATION: &str = "kgf-up.io/node";

/// Whether a CUDA Job that passed before counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Smoke {
    /// `up`: Jobs that passed with this image on these nodes count, so a converged cluster costs
    /// only a look (the reason says when they ran).
    PastPassCounts,
    /// `verify`: new Jobs every run, the old ones removed first; a past pass proves nothing about
    /// today's cluster.
    Afresh,
}

/// The validation steps of a profile; they run after `after` (every component). `gpu_nodes`
/// says which nodes must show GPUs (the provider's plan, or the profile's own list).
pub fn steps(
    profile: &Profile,
    gpu_nodes: &GpuNodes,
    cluster: &[StepId],
    after: &[StepId],
    smoke: Smoke,
) -> Vec<DynStep> {
    let v = &profile.validation;
    let mut needs = cluster.to_vec();
    needs.extend(after.iter().cloned());
    let mut steps: Vec<DynStep> = Vec::new();
    if v.min_gpu_nodes > 0 {
        steps.push(Arc::new(GpuAllocatable {
            min_nodes: v.min_gpu_nodes,
            gpu_nodes: gpu_nodes.clone(),
            sharing: profile.gpu.clone(),
            needs: needs.clone(),
        }));
        if v.cuda_smoke {
            steps.push(Arc::new(CudaSmoke {
                image: v.cuda_image.clone(),
                namespace: profile.settings.namespace.clone(),
                simulated: profile.cluster.provider == Provider::Sim,
                gpu_nodes: gpu_nodes.clone(),
                sharing: profile.gpu.clone(),
                smoke,
                made: Mutex::new(Vec::new()),
                needs: vec![StepId::new("validate", "gpu-allocatable")],
            }));
        }
    }
    steps
}

pub struct GpuAllocatable {
    min_nodes: u32,
    gpu_nodes: GpuNodes,
    sharing: GpuSharing,
    needs: Vec<StepId>,
}

/// A node as GPU validation sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeGpus {
    pub name: String,
    /// Its allocatable `nvidia.com/*` resources.
    pub resources: BTreeMap<String, i64>,
    /// Labelled `nvidia.com/gpu.present=true` (by kgf-up, or by the GPU operator from PCI).
    pub labelled: bool,
}

impl NodeGpus {
    fn of(node: &Node) -> NodeGpus {
        let resources = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .map(|a| {
                a.iter()
                    .filter(|(k, _)| k.starts_with("nvidia.com/"))
                    .filter_map(|(k, q)| Some((k.clone(), q.0.parse::<i64>().ok()?)))
                    .collect()
            })
            .unwrap_or_default();
        NodeGpus {
            name: node.name_any(),
            resources,
            labelled: node
                .labels()
                .get("nvidia.com/gpu.present")
                .map(String::as_str)
                == Some("true"),
        }
    }

    /// The GPU resources it shows, as `sharing` counts them.
    pub fn shown(&self, sharing: &GpuSharing) -> i64 {
        self.resources
            .iter()
            .filter(|(k, _)| sharing.counts(k))
            .map(|(_, n)| *n)
            .sum()
    }

    /// The resource a one-GPU pod asks for here: `nvidia.com/gpu` where the node has it, else its
    /// first MIG device (MIG's mixed strategy, every GPU partitioned).
    pub fn one_gpu(&self) -> Option<&str> {
        let has = |k: &str| self.resources.get(k).is_some_and(|n| *n > 0);
        if has(GPU) {
            return Some(GPU);
        }
        self.resources
            .keys()
            .find(|k| k.starts_with(MIG_RESOURCE_PREFIX) && has(k))
            .map(String::as_str)
    }
}

/// The verdict on the nodes: whether the GPUs are usable, and a sentence saying which nodes were
/// counted and why. `expected` are the nodes meant to have GPUs (`None`: any node may).
pub fn assess(
    nodes: &[NodeGpus],
    expected: Option<&[GpuNode]>,
    min_nodes: u32,
    sharing: &GpuSharing,
) -> (bool, String) {
    let what = if sharing.mig.is_some() {
        format!("GPU devices ({GPU}, {MIG_RESOURCE_PREFIX}*)")
    } else {
        GPU.to_string()
    };
    let with: Vec<String> = nodes
        .iter()
        .filter(|n| n.shown(sharing) > 0)
        .map(|n| format!("{}={}", n.name, n.shown(sharing)))
        .collect();
    let is_expected = |name: &str| expected.is_some_and(|e| e.iter().any(|x| x.name == name));
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    for want in expected.unwrap_or_default() {
        let Some(node) = nodes.iter().find(|n| n.name == want.name) else {
            problems.push(format!(
                "{} is a GPU node of the profile but no such node exists",
                want.name
            ));
            continue;
        };
        let shown = node.shown(sharing);
        let wanted = sharing.expected(want.gpus);
        if shown == 0 {
            problems.push(format!(
                "{} is a GPU node of the profile without allocatable {what}",
                want.name
            ));
        } else if !wanted.met_by(shown) {
            let why = match (want.gpus, sharing.replicas()) {
                (Some(g), 1) => format!("the {g} GPU(s) the profile gave it"),
                (Some(g), r) => format!("the {g} GPU(s) the profile gave it, {r} time-slices each"),
                (None, _) => "at least one".to_string(),
            };
            problems.push(format!(
                "{} shows {shown} allocatable {what}, {wanted} wanted ({why})",
                want.name
            ));
        }
    }
    // The GPU operator labels every node whose PCI view shows an NVIDIA device: on kind that is
    // every node, so a labelled node without GPUs is expected there and only worth a note.
    let labelled_only: Vec<&str> = nodes
        .iter()
        .filter(|n| n.labelled && n.shown(sharing) == 0 && !is_expected(&n.name))
        .map(|n| n.name.as_str())
        .collect();
    if !labelled_only.is_empty() {
        let why = if expected.is_some() {
            "not GPU nodes of the profile, not counted"
        } else {
            "warning: kgf-up did not choose this cluster's GPU nodes; set validation.gpu_nodes to name them"
        };
        notes.push(format!(
            "labelled nvidia.com/gpu.present=true without allocatable {what}: {} ({why})",
            labelled_only.join(", ")
        ));
    }
    if (with.len() as u32) < min_nodes {
        problems.push(format!(
            "{} node(s) with allocatable {what}, {min_nodes} wanted",
            with.len()
        ));
    }
    let counted = if with.is_empty() {
        format!("no node has allocatable {what}")
    } else {
        format!("allocatable {what}: {}", with.join(", "))
    };
    let basis = match expected {
        Some([]) => "the profile names no GPU node".to_string(),
        Some(e) => format!(
            "GPU nodes of the profile: {}",
            e.iter()
                .map(|n| format!("{} ({} wanted)", n.name, sharing.expected(n.gpus)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "any node may have GPUs".to_string(),
    };
    let mut parts = vec![counted, basis];
    parts.extend(problems.iter().cloned());
    parts.extend(notes);
    (problems.is_empty(), parts.join("; "))
}

async fn read_nodes(ctx: &Ctx) -> StepResult<Vec<NodeGpus>> {
    let nodes: Api<Node> = Api::all(ctx.kube().await?.client());
    Ok(nodes
        .list(&ListParams::default())
        .await
        .map_err(|e| StepError::context("reading nodes", e))?
        .items
        .iter()
        .map(NodeGpus::of)
        .collect())
}

impl GpuAllocatable {
    async fn check(&self, ctx: &Ctx) -> StepResult<Observation> {
        let nodes = read_nodes(ctx).await?;
        let expected = self.gpu_nodes.nodes();
        let (usable, reason) = assess(&nodes, expected.as_deref(), self.min_nodes, &self.sharing);
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
        // Detected nodes are known only once the hosts' facts are read: not in `plan`.
        let which = match &self.gpu_nodes {
            GpuNodes::Named(nodes) if !nodes.is_empty() => format!(
                ", including {}",
                nodes
                    .iter()
                    .map(|n| format!("{} ({})", n.name, self.sharing.expected(n.gpus)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
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
                     toolkit, validator) and `kgf-up doctor` on the host; a node showing more \
                     GPUs than the profile gave it sees GPUs of another node (its /dev/nvidia*)",
                )),
            }
        }
        .boxed()
    }
}

/// The CUDA Job's name for `node`: readable where it fits a label value (the Job controller
/// labels its pods with the name), else a hash of the node's name.
pub fn smoke_job_name(node: &str) -> String {
    let name = format!("{SMOKE_JOB}-{node}");
    if name.len() <= 63 {
        return name;
    }
    let digest = Sha256::digest(node.as_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{SMOKE_JOB}-{hex}")
}

/// A CUDA Job made by this run, for wait.
#[derive(Clone, Debug)]
struct Made {
    node: String,
    job: String,
    uid: String,
}

pub struct CudaSmoke {
    image: String,
    /// kgf-up's namespace, where the Jobs run (known to `plan` without a cluster).
    namespace: String,
    simulated: bool,
    gpu_nodes: GpuNodes,
    sharing: GpuSharing,
    smoke: Smoke,
    made: Mutex<Vec<Made>>,
    needs: Vec<StepId>,
}

/// A label selector for every CUDA Job kgf-up made.
fn check_selector() -> String {
    format!("{}={}", CHECK_LABEL.0, CHECK_LABEL.1)
}

impl CudaSmoke {
    /// The nodes to run the sample on, each with the resource its pod asks for: the GPU nodes of
    /// the profile, or (when kgf-up did not choose them) every node showing GPUs.
    async fn targets(&self, ctx: &Ctx) -> StepResult<Vec<(String, String)>> {
        let nodes = read_nodes(ctx).await?;
        let names: Vec<String> = match self.gpu_nodes.nodes() {
            Some(wanted) => wanted.into_iter().map(|n| n.name).collect(),
            None => nodes
                .iter()
                .filter(|n| n.shown(&self.sharing) > 0)
                .map(|n| n.name.clone())
                .collect(),
        };
        names
            .into_iter()
            .map(|name| {
                let resource = nodes
                    .iter()
                    .find(|n| n.name == name)
                    .and_then(NodeGpus::one_gpu)
                    .ok_or_else(|| {
                        StepError::new(format!(
                            "{name} shows no allocatable {GPU} (or MIG device) to run the CUDA sample on"
                        ))
                        .with_fix("see validate/gpu-allocatable above")
                    })?;
                Ok((name, resource.to_string()))
            })
            .collect()
    }

    fn job(&self, node: &str, resource: &str, run: &str, deadline: Duration) -> serde_json::Value {
        let labels = serde_json::json!({
            "app.kubernetes.io/managed-by": "kgf-up",
            CHECK_LABEL.0: CHECK_LABEL.1,
            RUN_LABEL: run,
        });
        serde_json::json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": smoke_job_name(node),
                "labels": labels,
                "annotations": {NODE_ANNOTATION: node},
            },
            "spec": {
                "backoffLimit": 0,
                // A pod that cannot start (no GPU free, image not pulled) must not linger.
                "activeDeadlineSeconds": deadline.as_secs().max(1),
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "Never",
                        // This node exactly, through the scheduler (which counts its GPUs).
                        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchFields": [
                                {"key": "metadata.name", "operator": "In", "values": [node]}
                            ]}]
                        }}},
                        // GPU nodes are often tainted to keep other pods off them.
                        "tolerations": [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}],
                        "containers": [{
                            "name": "vectoradd",
                            "image": self.image,
                            "resources": {"limits": {resource: 1}}
                        }]
                    }
                }
            }
        })
    }

    /// The CUDA Jobs in the namespace, by the node each was made for.
    async fn jobs(&self, ctx: &Ctx) -> StepResult<Vec<Job>> {
        let jobs: Api<Job> = Api::namespaced(ctx.kube().await?.client(), &ctx.namespace);
        Ok(jobs
            .list(&ListParams::default().labels(&check_selector()))
            .await
            .map_err(|e| StepError::context("listing the CUDA Jobs", e))?
            .items)
    }

    async fn look(&self, ctx: &Ctx) -> StepResult<Observation> {
        if self.simulated {
            return Ok(Observation::converged(
                "simulated: pods do not run on sim, the CUDA sample Jobs are skipped",
            ));
        }
        if self.smoke == Smoke::Afresh {
            return Ok(Observation::missing(
                "verify runs the CUDA sample afresh on every GPU node: a past pass does not prove today's cluster",
            ));
        }
        let targets = self.targets(ctx).await?;
        let jobs = self.jobs(ctx).await?;
        let mut passed = Vec::new();
        for (node, _) in &targets {
            let job = jobs.iter().find(|j| {
                j.annotations().get(NODE_ANNOTATION).map(String::as_str) == Some(node.as_str())
            });
            let Some(job) = job else {
                return Ok(Observation::missing(format!(
                    "the CUDA sample has not run on {node}"
                )));
            };
            if job_image(job).as_deref() != Some(self.image.as_str()) {
                return Ok(Observation::drifted(format!(
                    "the CUDA Job on {node} ran another image"
                )));
            }
            if !job_succeeded(job) {
                return Ok(Observation::drifted(format!(
                    "the CUDA Job on {node} did not succeed"
                )));
            }
            let when = job
                .status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref())
                .map(|t| t.0.to_string())
                .unwrap_or_else(|| "an earlier run".into());
            passed.push(format!("{node} ({when})"));
        }
        Ok(Observation::converged(format!(
            "the CUDA sample passed on {}; `kgf-up verify` runs it afresh",
            passed.join(", ")
        )))
    }

    async fn run(&self, ctx: &Ctx) -> StepResult<()> {
        let kube = ctx.kube().await?;
        let targets = self.targets(ctx).await?;
        // Every earlier CUDA Job goes first (its pods with it): a Job's template is immutable,
        // and what is left of an old run must not be mistaken for this one's.
        for old in self.jobs(ctx).await? {
            let r = job_ref(&ctx.namespace, &old.name_any());
            kube.delete(&r, Duration::from_secs(120))
                .await
                .map_err(|e| StepError::context(format!("removing the old {r}"), e))?;
        }
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis().to_string())
            .unwrap_or_default();
        let jobs: Api<Job> = Api::namespaced(kube.client(), &ctx.namespace);
        let mut made = Vec::new();
        for (node, resource) in &targets {
            let job = self.job(node, resource, &run, ctx.timeout);
            let name = smoke_job_name(node);
            let created = ctx
                .gate()
                .change(
                    Change::new(format!(
                        "create {} (image {}, on {node}, limits {resource}: 1)",
                        job_ref(&ctx.namespace, &name),
                        self.image
                    )),
                    jobs.patch(
                        &name,
                        &PatchParams::apply(FIELD_MANAGER),
                        &Patch::Apply(&job),
                    ),
                )
                .await
                .map_err(|e| StepError::context(format!("creating the CUDA Job on {node}"), e))?;
            if let Some(created) = created {
                made.push(Made {
                    node: node.clone(),
                    job: name,
                    uid: created.uid().unwrap_or_default(),
                });
            }
        }
        *self.made.lock().unwrap_or_else(|e| e.into_inner()) = made;
        Ok(())
    }

    /// Waits for this run's Jobs to finish, then reads each pod's log; every node's failure is
    /// reported, not only the first.
    async fn finish(&self, ctx: &Ctx) -> StepResult<()> {
        let made = self.made.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let kube = ctx.kube().await?;
        let jobs: Api<Job> = Api::namespaced(kube.client(), &ctx.namespace);
        let finished = wait::until(ctx.timeout, Duration::from_secs(2), || async {
            let mut waiting = Vec::new();
            let mut done = Vec::new();
            for m in &made {
                let job = jobs
                    .get_opt(&m.job)
                    .await
                    .map_err(|e| StepError::context(format!("reading Job {}", m.job), e))?;
                match job.filter(|j| j.uid().as_deref() == Some(m.uid.as_str())) {
                    Some(j) if job_succeeded(&j) => done.push((m.clone(), true)),
                    Some(j) if job_failed(&j) => done.push((m.clone(), false)),
                    Some(_) => waiting.push(m.node.clone()),
                    None => {
                        return Err(StepError::new(format!(
                            "the CUDA Job {} was removed while it ran",
                            m.job
                        )));
                    }
                }
            }
            Ok(if waiting.is_empty() {
                Seen::Ready(done)
            } else {
                Seen::Not(format!("still running on {}", waiting.join(", ")))
            })
        });
        let done = match finished.await {
            Ok(done) => done,
            Err(Stop::Failed(e)) => return Err(e),
            Err(Stop::TimedOut { waited, last }) => {
                return Err(StepError::new(format!(
                    "the CUDA sample did not finish in {}s ({last})",
                    waited.as_secs()
                ))
                .with_fix("a pod requesting a GPU did not start: check the GPU operator's device plugin and validator (`kubectl -n gpu-operator get pods`) and `kgf-up doctor`")
                .with_diagnosis(kube.diagnose(&ctx.namespace).await));
            }
        };
        let pods: Api<Pod> = Api::namespaced(kube.client(), &ctx.namespace);
        let mut failures = Vec::new();
        for (m, succeeded) in &done {
            match self.log_of(&pods, m).await {
                Ok((pod, log)) if *succeeded && log.contains("Test PASSED") => {
                    tracing::info!(node = %m.node, %pod, "CUDA sample passed");
                }
                Ok((pod, log)) => failures.push(format!(
                    "{}: pod {pod} {} without `Test PASSED`: {}",
                    m.node,
                    if *succeeded { "succeeded" } else { "failed" },
                    last_lines(&log, 5)
                )),
                Err(why) => failures.push(format!("{}: {why}", m.node)),
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        Err(StepError::new(format!(
            "the CUDA sample failed on {} of {} GPU node(s):\n  {}",
            failures.len(),
            done.len(),
            failures.join("\n  ")
        ))
        .with_fix("`kgf-up doctor` reads the driver version the sample and the pipeline need; on the node, `ls /var/run/cdi` shows the device plugin's CDI spec (docs/gpu.md)")
        .with_diagnosis(kube.diagnose(&ctx.namespace).await))
    }

    /// The pod of a Job made by this run (by the Job's uid: never an old run's pod) and its log.
    async fn log_of(&self, pods: &Api<Pod>, m: &Made) -> Result<(String, String), String> {
        let list = pods
            .list(
                &ListParams::default()
                    .labels(&format!("batch.kubernetes.io/controller-uid={}", m.uid)),
            )
            .await
            .map_err(|e| format!("listing the pods of Job {}: {e}", m.job))?;
        let Some(pod) = list.items.into_iter().next() else {
            return Err(format!("Job {} finished but its pod is gone", m.job));
        };
        let name = pod.name_any();
        let log = pods
            .logs(&name, &LogParams::default())
            .await
            .map_err(|e| format!("reading the log of pod {name}: {e}"))?;
        Ok((name, log))
    }
}

fn job_ref(namespace: &str, name: &str) -> ObjectRef {
    ObjectRef {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        namespace: Some(namespace.to_string()),
        name: name.to_string(),
    }
}

fn job_image(job: &Job) -> Option<String> {
    job.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .clone()
}

fn job_condition(job: &Job, kind: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == kind && c.status == "True"))
}

fn job_succeeded(job: &Job) -> bool {
    job_condition(job, "Complete")
}

fn job_failed(job: &Job) -> bool {
    job_condition(job, "Failed")
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(n)..].join(" | ");
    if tail.is_empty() {
        "(empty log)".into()
    } else {
        tail
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
        let jobs = match &self.gpu_nodes {
            GpuNodes::Named(nodes) => nodes
                .iter()
                .map(|n| {
                    format!(
                        "Job {}/{} (on {}, limits one GPU, must log Test PASSED)",
                        self.namespace,
                        smoke_job_name(&n.name),
                        n.name
                    )
                })
                .collect(),
            GpuNodes::Detected(_) | GpuNodes::Any => vec![format!(
                "Job {}/{SMOKE_JOB}-<node> on every GPU node (limits one GPU, must log Test PASSED)",
                self.namespace
            )],
        };
        Description {
            source: self.image.clone(),
            objects: jobs,
            ..Default::default()
        }
    }
    fn observe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<Observation>> {
        self.look(ctx).boxed()
    }
    fn apply<'a>(&'a self, ctx: &'a Ctx, _: &'a Observation) -> BoxFuture<'a, StepResult<()>> {
        self.run(ctx).boxed()
    }
    fn wait<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<()>> {
        self.finish(ctx).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, gpus: i64, labelled: bool) -> NodeGpus {
        let mut resources = BTreeMap::new();
        if gpus > 0 {
            resources.insert(GPU.to_string(), gpus);
        }
        NodeGpus {
            name: name.into(),
            resources,
            labelled,
        }
    }

    fn want(name: &str, gpus: Option<u32>) -> GpuNode {
        GpuNode {
            name: name.into(),
            gpus,
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

    fn whole() -> GpuSharing {
        GpuSharing::default()
    }

    #[test]
    fn operator_labels_on_nodes_without_gpus_do_not_fail_the_profiles_gpu_nodes() {
        let expected = vec![want("kgf-worker", Some(2))];
        let (ok, why) = assess(&kind_nodes(2), Some(&expected), 1, &whole());
        assert!(ok, "{why}");
        assert!(
            why.starts_with(
                "allocatable nvidia.com/gpu: kgf-worker=2; GPU nodes of the profile: kgf-worker (2 wanted)"
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
        let expected = vec![want("kgf-worker", Some(2))];
        let (ok, why) = assess(&kind_nodes(0), Some(&expected), 1, &whole());
        assert!(!ok);
        assert!(
            why.contains(
                "kgf-worker is a GPU node of the profile without allocatable nvidia.com/gpu"
            ),
            "{why}"
        );
        let missing = vec![want("kgf-worker3", None)];
        let (ok, why) = assess(&kind_nodes(2), Some(&missing), 1, &whole());
        assert!(!ok);
        assert!(
            why.contains("kgf-worker3 is a GPU node of the profile but no such node exists"),
            "{why}"
        );
    }

    /// A node that shows more GPUs than it was given sees another node's GPUs (its device nodes
    /// were not removed); fewer means the device plugin lost some. Both fail, with the count.
    #[test]
    fn allocatable_must_equal_the_gpus_the_profile_gave_each_node() {
        let expected = vec![want("kgf-worker", Some(1))];
        let (ok, why) = assess(&kind_nodes(2), Some(&expected), 1, &whole());
        assert!(!ok);
        assert!(
            why.contains(
                "kgf-worker shows 2 allocatable nvidia.com/gpu, 1 wanted (the 1 GPU(s) the profile gave it)"
            ),
            "{why}"
        );
        let shared: GpuSharing = serde_saphyr::from_str("time_slicing: {replicas: 4}").unwrap();
        let (ok, why) = assess(&kind_nodes(2), Some(&expected), 1, &shared);
        assert!(!ok);
        assert!(
            why.contains("2 allocatable nvidia.com/gpu, 4 wanted (the 1 GPU(s) the profile gave it, 4 time-slices each)"),
            "{why}"
        );
        assert!(assess(&kind_nodes(4), Some(&expected), 1, &shared).0);
        // A node whose count the profile does not say needs one.
        assert!(
            assess(
                &kind_nodes(3),
                Some(&[want("kgf-worker", None)]),
                1,
                &whole()
            )
            .0
        );
    }

    #[test]
    fn with_mig_the_devices_of_every_profile_count_and_the_smoke_pod_asks_for_one() {
        let mixed: GpuSharing = serde_saphyr::from_str("mig: {strategy: mixed}").unwrap();
        let mut worker = node("kgf-worker", 0, true);
        worker.resources.insert("nvidia.com/mig-1g.10gb".into(), 7);
        worker.resources.insert("nvidia.com/mig-3g.40gb".into(), 2);
        let nodes = vec![node("kgf-control-plane", 0, true), worker.clone()];
        let expected = vec![want("kgf-worker", Some(2))];
        let (ok, why) = assess(&nodes, Some(&expected), 1, &mixed);
        assert!(ok, "{why}");
        assert!(
            why.starts_with(
                "allocatable GPU devices (nvidia.com/gpu, nvidia.com/mig-*): kgf-worker=9; GPU nodes of the profile: kgf-worker (at least 2 wanted)"
            ),
            "{why}"
        );
        assert_eq!(worker.one_gpu(), Some("nvidia.com/mig-1g.10gb"));
        // MIG off: MIG devices are not counted, and a whole GPU is asked for first.
        let (ok, _) = assess(&nodes, Some(&expected), 1, &whole());
        assert!(!ok);
        worker.resources.insert(GPU.into(), 1);
        assert_eq!(worker.one_gpu(), Some(GPU));
    }

    #[test]
    fn on_a_cluster_kgf_up_did_not_choose_a_labelled_node_without_gpus_is_a_warning() {
        let (ok, why) = assess(&kind_nodes(1), None, 1, &whole());
        assert!(ok, "{why}");
        assert!(why.contains("any node may have GPUs"), "{why}");
        assert!(why.contains("warning: kgf-up did not choose"), "{why}");
        let (ok, why) = assess(&kind_nodes(0), None, 1, &whole());
        assert!(!ok);
        assert!(
            why.contains("0 node(s) with allocatable nvidia.com/gpu, 1 wanted"),
            "{why}"
        );
    }

    #[test]
    fn job_names_fit_a_label_value() {
        assert_eq!(smoke_job_name("kgf-worker2"), "kgf-cuda-smoke-kgf-worker2");
        let long = format!("gpu-host.{}.example.org", "rack-a".repeat(8));
        let name = smoke_job_name(&long);
        assert!(
            name.len() <= 63 && name.starts_with("kgf-cuda-smoke-"),
            "{name}"
        );
        assert_ne!(name, smoke_job_name(&format!("{long}x")));
    }

    /// The CDI path: the Job asks for the GPU as a resource on its node, nothing else.
    #[test]
    fn the_cuda_job_requests_one_gpu_on_its_node_and_no_runtime_class() {
        let smoke = CudaSmoke {
            image: "nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubuntu22.04".into(),
            namespace: "kgf-system".into(),
            simulated: false,
            gpu_nodes: GpuNodes::Any,
            sharing: whole(),
            smoke: Smoke::Afresh,
            made: Mutex::new(Vec::new()),
            needs: Vec::new(),
        };
        let job = smoke.job("kgf-worker", GPU, "1", Duration::from_secs(600));
        let pod = &job["spec"]["template"]["spec"];
        assert!(pod.get("runtimeClassName").is_none());
        assert_eq!(pod["containers"][0]["resources"]["limits"][GPU], 1);
        assert_eq!(
            pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
                [0]["matchFields"][0]["values"][0],
            "kgf-worker"
        );
        assert_eq!(
            job["metadata"]["annotations"][NODE_ANNOTATION],
            "kgf-worker"
        );
        assert_eq!(job["spec"]["activeDeadlineSeconds"], 600);
    }
}
