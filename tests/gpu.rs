//! GPU validation against a real API server (the test bed): allocatable GPUs held to what the
//! profile gave each node, MIG devices counted, and the CUDA sample Jobs, one per GPU node,
//! placed by the real scheduler, made afresh on every `verify`.
//!
//! kwok completes Job pods but serves no logs, so the CUDA Jobs' runs end where the pod's log is
//! read: the tests assert that they got there with this run's pod, which is all the bed can show.
//! Whether the sample prints `Test PASSED` on a GPU is for a GPU host (docs/gpu.md).
//! Needs the bed: `scripts/testbed run -- cargo test --test gpu`.

mod support;

use std::time::Duration;

use kgf_up::cluster::{GpuNode, GpuNodes};
use kgf_up::exec::Exec;
use kgf_up::kube::Kubeconfig;
use kgf_up::step::{Ctx, DynStep, State};
use kgf_up::validate::{self, Smoke};

use support::Bed;

/// A namespace of this test run, deleted with everything in it when dropped (the CUDA pods hold
/// the bed's one GPU).
struct Ns<'a> {
    bed: &'a Bed,
    name: String,
}

impl Drop for Ns<'_> {
    fn drop(&mut self) {
        self.bed.tool(
            "kubectl",
            &[
                "delete",
                "namespace",
                &self.name,
                "--wait=true",
                "--timeout=60s",
            ],
        );
    }
}

fn namespace<'a>(bed: &'a Bed, base: &str) -> Ns<'a> {
    let name = format!("{base}-{}", std::process::id());
    bed.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"
    ));
    Ns { bed, name }
}

fn ctx(bed: &Bed, namespace: &str, work: &std::path::Path) -> Ctx {
    let ctx = Ctx::new(
        Exec::new(),
        work.to_path_buf(),
        Duration::from_secs(60),
        namespace.to_string(),
    );
    ctx.kubeconfig
        .set(Kubeconfig {
            path: bed.kubeconfig.clone(),
            context: None,
        })
        .unwrap();
    ctx
}

const IMAGE: &str = "registry.invalid/cuda-sample:vectoradd-cuda12.5.0-ubuntu22.04";

fn profile(extra: &str) -> kgf_up::profile::Profile {
    profile_with(IMAGE, extra)
}

fn profile_with(image: &str, extra: &str) -> kgf_up::profile::Profile {
    kgf_up::profile::parse(
        &format!(
            "name: t\ncluster: {{provider: existing}}\nvalidation: {{cuda_image: '{image}'}}\n{extra}"
        ),
        "test.yaml",
    )
    .unwrap()
}

fn gpu_nodes(nodes: &[(&str, Option<u32>)]) -> GpuNodes {
    GpuNodes::Named(
        nodes
            .iter()
            .map(|(name, gpus)| GpuNode {
                name: name.to_string(),
                gpus: *gpus,
            })
            .collect(),
    )
}

fn step(steps: &[DynStep], id: &str) -> DynStep {
    steps
        .iter()
        .find(|s| s.id().as_str() == id)
        .unwrap_or_else(|| panic!("no step {id}"))
        .clone()
}

/// The Job of `node` in `ns`: its uid and the node its pod ran on.
fn job_and_pod_node(bed: &Bed, ns: &str, job: &str) -> (String, String) {
    let uid = bed.kubectl(&[
        "-n",
        ns,
        "get",
        "job",
        job,
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let node = bed.kubectl(&[
        "-n",
        ns,
        "get",
        "pods",
        "-l",
        &format!("batch.kubernetes.io/controller-uid={uid}"),
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ]);
    (uid, node)
}

#[tokio::test(flavor = "multi_thread")]
async fn allocatable_gpus_must_equal_what_the_profile_gave_each_node() {
    let bed = support::bed();
    let work = tempfile::tempdir().unwrap();
    let ctx = ctx(&bed, "default", work.path());
    // The bed's kgf-gpu-0 advertises one nvidia.com/gpu.
    for (extra, nodes, want) in [
        (
            "",
            vec![("kgf-gpu-0", Some(1))],
            Ok(
                "allocatable nvidia.com/gpu: kgf-gpu-0=1; GPU nodes of the profile: kgf-gpu-0 (1 wanted)",
            ),
        ),
        (
            "",
            vec![("kgf-gpu-0", Some(2))],
            Err(
                "kgf-gpu-0 shows 1 allocatable nvidia.com/gpu, 2 wanted (the 2 GPU(s) the profile gave it)",
            ),
        ),
        (
            "gpu: {time_slicing: {replicas: 2}}\n",
            vec![("kgf-gpu-0", Some(1))],
            Err(
                "kgf-gpu-0 shows 1 allocatable nvidia.com/gpu, 2 wanted (the 1 GPU(s) the profile gave it, 2 time-slices each)",
            ),
        ),
        (
            "",
            vec![("kgf-cpu-0", None)],
            Err("kgf-cpu-0 is a GPU node of the profile without allocatable nvidia.com/gpu"),
        ),
    ] {
        let steps = validate::steps(&profile(extra), &gpu_nodes(&nodes), &[], &[], Smoke::Afresh);
        let seen = step(&steps, "validate/gpu-allocatable")
            .observe(&ctx)
            .await
            .unwrap();
        match want {
            Ok(reason) => {
                assert_eq!(seen.state, State::Converged, "{}", seen.reason);
                assert!(seen.reason.starts_with(reason), "{}", seen.reason);
            }
            Err(problem) => {
                assert_eq!(seen.state, State::Missing, "{}", seen.reason);
                assert!(seen.reason.contains(problem), "{}", seen.reason);
            }
        }
    }
}

/// `verify` twice: each run deletes the earlier Jobs with their pods and makes a Job per GPU node,
/// which the scheduler places on that node; `up` counts a Job that completed.
#[tokio::test(flavor = "multi_thread")]
async fn the_cuda_sample_runs_afresh_on_every_gpu_node() {
    let bed = support::bed();
    let ns = namespace(&bed, "kgf-gpu-smoke");
    let work = tempfile::tempdir().unwrap();
    let ctx = ctx(&bed, &ns.name, work.path());
    let nodes = gpu_nodes(&[("kgf-gpu-0", Some(1))]);
    let steps = validate::steps(&profile(""), &nodes, &[], &[], Smoke::Afresh);
    let smoke = step(&steps, "validate/cuda-smoke");
    let job = validate::smoke_job_name("kgf-gpu-0");
    assert_eq!(job, "kgf-cuda-smoke-kgf-gpu-0");

    let mut uids = Vec::new();
    for run in 0..2 {
        let seen = smoke.observe(&ctx).await.unwrap();
        assert_eq!(seen.state, State::Missing, "run {run}: {}", seen.reason);
        assert!(
            seen.reason
                .starts_with("verify runs the CUDA sample afresh")
        );
        smoke.apply(&ctx, &seen).await.unwrap();
        let err = smoke.wait(&ctx).await.unwrap_err();
        // The Job completed on kwok; its pod (this run's, by the Job's uid) has no log to read.
        assert!(
            err.message
                .starts_with("the CUDA sample failed on 1 of 1 GPU node(s):\n  kgf-gpu-0: reading the log of pod kgf-cuda-smoke-kgf-gpu-0-"),
            "{}",
            err.message
        );
        let (uid, pod_node) = job_and_pod_node(&bed, &ns.name, &job);
        assert_eq!(pod_node, "kgf-gpu-0", "placed on its node by the scheduler");
        let limits = bed.kubectl(&[
            "-n",
            &ns.name,
            "get",
            "job",
            &job,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].resources.limits}",
        ]);
        assert_eq!(limits, r#"{"nvidia.com/gpu":"1"}"#);
        let runtime_class = bed.kubectl(&[
            "-n",
            &ns.name,
            "get",
            "job",
            &job,
            "-o",
            "jsonpath={.spec.template.spec.runtimeClassName}",
        ]);
        assert_eq!(runtime_class, "", "the CDI path: no runtime class");
        uids.push(uid);
    }
    assert_ne!(uids[0], uids[1], "the second verify made a new Job");
    let pods = bed.kubectl(&[
        "-n",
        &ns.name,
        "get",
        "pods",
        "-l",
        "kgf-up.io/check=cuda-smoke",
        "-o",
        "jsonpath={.items[*].metadata.labels.batch\\.kubernetes\\.io/controller-uid}",
    ]);
    assert_eq!(pods, uids[1], "only the last run's pod is left");

    // `up` counts the Job that completed, and says when it ran.
    let up = validate::steps(&profile(""), &nodes, &[], &[], Smoke::PastPassCounts);
    let seen = step(&up, "validate/cuda-smoke")
        .observe(&ctx)
        .await
        .unwrap();
    assert_eq!(seen.state, State::Converged, "{}", seen.reason);
    assert!(
        seen.reason
            .starts_with("the CUDA sample passed on kgf-gpu-0 (")
            && seen.reason.ends_with("`kgf-up verify` runs it afresh"),
        "{}",
        seen.reason
    );
    // ... but not one that ran another image.
    let other = validate::steps(
        &profile_with("registry.invalid/other:cuda12.5", ""),
        &nodes,
        &[],
        &[],
        Smoke::PastPassCounts,
    );
    let seen = step(&other, "validate/cuda-smoke")
        .observe(&ctx)
        .await
        .unwrap();
    assert_eq!(
        (seen.state, seen.reason.as_str()),
        (
            State::Drifted,
            "the CUDA Job on kgf-gpu-0 ran another image"
        )
    );
}

/// With MIG's mixed strategy a node shows `nvidia.com/mig-*` resources and no whole GPU: they are
/// counted, and the CUDA Job asks the scheduler for one of them on that node.
#[tokio::test(flavor = "multi_thread")]
async fn mig_devices_are_counted_and_the_cuda_job_asks_for_one() {
    let bed = support::bed();
    let node = format!("kgf-mig-{}", std::process::id());
    let _gone = NodeGone {
        bed: &bed,
        name: node.clone(),
    };
    bed.apply(&format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n  annotations: {{kwok.x-k8s.io/node: fake}}\n  labels: {{type: kwok, kubernetes.io/hostname: {node}}}\n\
         status:\n  capacity: {{cpu: '8', memory: 32Gi, pods: '110', nvidia.com/mig-1g.10gb: '7'}}\n  allocatable: {{cpu: '8', memory: 32Gi, pods: '110', nvidia.com/mig-1g.10gb: '7'}}\n"
    ));
    let ns = namespace(&bed, "kgf-gpu-mig");
    let work = tempfile::tempdir().unwrap();
    let ctx = ctx(&bed, &ns.name, work.path());
    let nodes = gpu_nodes(&[(&node, Some(1))]);
    let mixed = profile("gpu: {mig: {strategy: mixed}}\n");
    let steps = validate::steps(&mixed, &nodes, &[], &[], Smoke::Afresh);

    let seen = step(&steps, "validate/gpu-allocatable")
        .observe(&ctx)
        .await
        .unwrap();
    assert_eq!(seen.state, State::Converged, "{}", seen.reason);
    assert!(
        seen.reason.contains(&format!("{node}=7")) && seen.reason.contains("(at least 1 wanted)"),
        "{}",
        seen.reason
    );
    // MIG off in the profile: the same node shows no GPU.
    let whole = validate::steps(&profile(""), &nodes, &[], &[], Smoke::Afresh);
    let seen = step(&whole, "validate/gpu-allocatable")
        .observe(&ctx)
        .await
        .unwrap();
    assert_eq!(seen.state, State::Missing, "{}", seen.reason);

    let smoke = step(&steps, "validate/cuda-smoke");
    let seen = smoke.observe(&ctx).await.unwrap();
    smoke.apply(&ctx, &seen).await.unwrap();
    let err = smoke.wait(&ctx).await.unwrap_err();
    assert!(
        err.message.contains("reading the log of pod"),
        "{}",
        err.message
    );
    let job = validate::smoke_job_name(&node);
    let (_, pod_node) = job_and_pod_node(&bed, &ns.name, &job);
    assert_eq!(pod_node, node);
    let limits = bed.kubectl(&[
        "-n",
        &ns.name,
        "get",
        "job",
        &job,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].resources.limits}",
    ]);
    assert_eq!(limits, r#"{"nvidia.com/mig-1g.10gb":"1"}"#);
}

/// Deletes a node this test added to the bed, when dropped.
struct NodeGone<'a> {
    bed: &'a Bed,
    name: String,
}

impl Drop for NodeGone<'_> {
    fn drop(&mut self) {
        self.bed.tool(
            "kubectl",
            &["delete", "node", &self.name, "--ignore-not-found"],
        );
    }
}
