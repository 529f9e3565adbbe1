//! kind on a GPU workstation: the cluster, its local registry and the NVIDIA runtime in its nodes.
//!
//! [`KindPlan`] turns the profile's `cluster.kind` section and the host's GPU count into the kind
//! config and an ordered list of [`Step`](crate::step::Step)s; [`down`] removes what they made.
//! Every command runs through [`crate::exec`]. Host facts (GPU count, toolkit version) come from
//! preflight, and host fixes (docker's runtime, inotify) belong to [`crate::preflight`], not here.
//!
//! What cannot run on kgf-up's CI (no Docker, no GPU) is tested through named stand-ins for
//! `docker`, `kind` and `kubectl` (`tests/support/standins/`), and the rendered configs through
//! kind v0.33.0's own config loader (`scripts/kind-config-check`).

mod cluster;
mod cmds;
pub mod config;
mod context;
mod error;
mod gpu_node;
pub mod ids;
mod plan;
pub mod record;
mod registry;
pub use crate::profile::kind as spec;

use std::sync::{Arc, Mutex};

pub use error::KindError;
pub use gpu_node::{ContainerdGpu, NodeTask};
pub use plan::KindPlan;
pub use spec::{
    DEFAULT_NODE_IMAGE, GpuLayout, GpuSpec, KIND_VERSION, KindSpec, NodeGpus, NodePlan,
    RegistrySpec, Role, ToolkitSource,
};

use crate::exec::{Cmd, Exec, ExecError};
use crate::step::{DynStep, StepId};

impl KindPlan {
    /// The steps, in order: cluster, context, registry (container, hosts.toml per node, hosting
    /// ConfigMap), the GPU parts of each GPU node, RuntimeClass. `after` are the steps the cluster
    /// step needs (e.g. preflight).
    pub fn steps(self: &Arc<Self>, after: &[StepId]) -> Vec<DynStep> {
        let mut steps: Vec<DynStep> = vec![Arc::new(cluster::ClusterStep {
            plan: self.clone(),
            needs: after.to_vec(),
            unfinished: Default::default(),
        })];
        if self.spec.select_context {
            steps.push(Arc::new(context::ContextStep { plan: self.clone() }));
        }
        if self.spec.registry.enabled {
            steps.push(Arc::new(registry::RegistryStep {
                plan: self.clone(),
                seen: Mutex::new(None),
            }));
            for node in &self.nodes {
                steps.push(Arc::new(registry::RegistryHostsStep {
                    plan: self.clone(),
                    node: node.name.clone(),
                }));
            }
            steps.push(Arc::new(registry::RegistryHostingStep {
                plan: self.clone(),
            }));
        }
        let mut runtime_needs = Vec::new();
        for node in self.nodes.iter().filter(|n| n.has_gpus()) {
            for task in NodeTask::for_node(node) {
                if task == NodeTask::ContainerdRuntime {
                    runtime_needs.push(ids::gpu_node(&node.name, task.slug()));
                }
                steps.push(Arc::new(gpu_node::GpuNodeStep::new(
                    self.clone(),
                    node.clone(),
                    task,
                )));
            }
        }
        if !runtime_needs.is_empty() {
            steps.push(Arc::new(gpu_node::RuntimeClassStep {
                needs: runtime_needs,
            }));
        }
        steps
    }
}

/// The commands `kgf-up down` runs for a kind profile: delete the cluster (kind's delete is a
/// no-op for a missing cluster), and with `all` the registry container with its volume (the
/// pushed images: `registry:3` keeps them in an anonymous volume, which `docker rm` without `-v`
/// leaves behind), then kind's `kind` network, which kind makes and never removes (docker keeps
/// it while another cluster's nodes use it). Asking the user first is the caller's job.
pub fn down_commands(spec: &KindSpec, all: bool) -> Vec<Cmd> {
    let mut cmds = vec![
        Cmd::new("kind")
            .args(["delete", "cluster", "--name", &spec.name])
            .timeout(cmds::CREATE_TIMEOUT)
            .headline("ERROR:")
            .changes(),
    ];
    if all && spec.registry.enabled {
        cmds.push(
            Cmd::new("docker")
                .args(["rm", "-f", "-v", &spec.registry.name])
                .changes(),
        );
    }
    if all {
        cmds.push(
            Cmd::new("docker")
                .args(["network", "rm", KIND_NETWORK])
                .changes(),
        );
    }
    cmds
}

/// The docker network kind puts every cluster's nodes on.
const KIND_NETWORK: &str = "kind";

/// What [`down`] found to remove.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// kind deleted node containers (it says "Deleted nodes: [...]" only when there were any).
    pub cluster: bool,
    /// The registry container existed and was removed with its volume.
    pub registry: bool,
}

/// Runs [`down_commands`]. A cluster or registry that is already gone is not an error; what was
/// there is reported, so nothing claims a deletion that did not happen.
pub async fn down(exec: &Exec, spec: &KindSpec, all: bool) -> Result<Removed, KindError> {
    let mut removed = Removed::default();
    for cmd in down_commands(spec, all) {
        let is_docker = cmd.program() == "docker";
        let is_network = is_docker && cmd.get_args().first().map(String::as_str) == Some("network");
        match exec.run_async(cmd.clone()).await {
            Ok(_) if is_network => {}
            Ok(_) if is_docker => removed.registry = true,
            Ok(out) => removed.cluster = out.stderr.contains("Deleted nodes:"),
            Err(ExecError::Failed { stderr, .. })
                if is_docker && stderr.to_lowercase().contains("no such container") => {}
            // Gone already, or still used by another kind cluster's nodes: left as it is.
            Err(ExecError::Failed { stderr, .. })
                if is_network
                    && ["not found", "no such network", "active endpoints"]
                        .iter()
                        .any(|s| stderr.to_lowercase().contains(s)) => {}
            Err(source) => {
                return Err(KindError::Exec {
                    what: format!("running {}", cmd.display()),
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_come_in_dependency_order_with_unique_ids() {
        let mut spec = KindSpec::default();
        spec.gpus.layout = GpuLayout::WorkerPerGpu;
        let plan = KindPlan::new(spec, 2).unwrap();
        let steps = plan.steps(&[StepId::new("preflight", "")]);
        let ids: Vec<String> = steps.iter().map(|s| s.id().to_string()).collect();
        let mut seen = std::collections::BTreeSet::new();
        for step in &steps {
            for need in step.needs() {
                assert!(
                    seen.contains(&need) || need.as_str() == "preflight",
                    "{} needs {need}, which is not before it",
                    step.id()
                );
            }
            assert!(seen.insert(step.id()), "duplicate id {}", step.id());
        }
        assert_eq!(ids[0], "kind/cluster");
        assert!(ids.contains(&"kind/gpu/kgf-worker2/devices".to_string()));
        assert!(!ids.iter().any(|i| i.contains("kgf-control-plane/")));
        assert_eq!(ids.last().unwrap(), "kind/runtime-class");
        assert_eq!(steps[0].needs(), vec![StepId::new("preflight", "")]);
    }

    #[test]
    fn a_cluster_without_gpus_gets_no_gpu_steps() {
        let plan = KindPlan::new(KindSpec::default(), 0).unwrap();
        let steps = plan.steps(&[]);
        assert!(
            steps
                .iter()
                .all(|s| !s.id().as_str().starts_with("kind/gpu"))
        );
        assert!(!steps.iter().any(|s| s.id() == ids::runtime_class()));
    }

    #[test]
    fn down_removes_the_registry_only_with_all() {
        let spec = KindSpec::default();
        let shown =
            |all| -> Vec<String> { down_commands(&spec, all).iter().map(Cmd::display).collect() };
        assert_eq!(shown(false), ["kind delete cluster --name kgf"]);
        assert_eq!(
            shown(true),
            [
                "kind delete cluster --name kgf",
                "docker rm -f -v kind-registry"
            ]
        );
    }
}
