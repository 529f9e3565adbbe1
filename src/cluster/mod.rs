//! Cluster providers: create, observe and delete a cluster, and hand back its kubeconfig.
//!
//! Each provider is a step with id `cluster` whose observe sets the run's kubeconfig; the steps
//! after it only ever talk to the cluster through that kubeconfig.

pub mod existing;
pub mod kind;
pub mod rke2;
pub mod sim;

use std::path::PathBuf;
use std::sync::Arc;

use crate::profile::{Profile, Provider};
use crate::step::{DynStep, StepId};

/// `--kubeconfig` / `--context` from the command line.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

pub fn id() -> StepId {
    StepId::new("cluster", "")
}

/// What the host told preflight, for the decisions planning makes (facts before decisions).
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// GPUs `nvidia-smi` listed on this workstation (kind).
    pub gpus: u32,
}

/// A provider's steps; all of them must be done before anything is installed on the cluster.
pub struct Steps {
    pub steps: Vec<DynStep>,
    pub ready: Vec<StepId>,
    /// The rke2 plan, for `down` and for closing its SSH connections at the end.
    pub rke2: Option<Arc<rke2::Rke2Plan>>,
    /// The nodes this cluster is meant to have GPUs on, for GPU validation.
    pub gpu_nodes: GpuNodes,
}

/// A node meant to have GPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuNode {
    pub name: String,
    /// How many GPUs the profile gave it (kind's layout, a sim node's `gpus`), which its
    /// allocatable GPUs must match; `None` where the profile does not say (at least one).
    pub gpus: Option<u32>,
}

impl GpuNode {
    /// A node the profile names without saying how many GPUs it has.
    pub fn named(name: impl Into<String>) -> GpuNode {
        GpuNode {
            name: name.into(),
            gpus: None,
        }
    }
}

/// Which nodes are meant to have GPUs. The GPU operator labels `nvidia.com/gpu.present=true` on
/// every node whose PCI view shows an NVIDIA device; on kind every node shares the host's, so
/// that label cannot tell a GPU worker from the control plane: the provider's plan can.
#[derive(Clone)]
pub enum GpuNodes {
    /// Chosen by kgf-up or named in the profile (kind's GPU workers, sim's GPU nodes,
    /// `validation.gpu_nodes`): each must show allocatable GPUs.
    Named(Vec<GpuNode>),
    /// Known once the hosts' facts are read: rke2's GPU hosts, by hostname (their node name).
    Detected(Arc<dyn Fn() -> Vec<String> + Send + Sync>),
    /// Not chosen by kgf-up (an existing cluster): any node with allocatable GPUs counts, and a
    /// labelled node without them is only a warning.
    Any,
}

impl GpuNodes {
    /// The nodes that must show allocatable GPUs; `None` for [`GpuNodes::Any`].
    pub fn nodes(&self) -> Option<Vec<GpuNode>> {
        match self {
            GpuNodes::Named(nodes) => Some(nodes.clone()),
            GpuNodes::Detected(detect) => Some(detect().into_iter().map(GpuNode::named).collect()),
            GpuNodes::Any => None,
        }
    }
}

impl std::fmt::Debug for GpuNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.nodes() {
            Some(nodes) => {
                let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
                write!(f, "GpuNodes({})", names.join(", "))
            }
            None => f.write_str("GpuNodes(any)"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error(transparent)]
    Kind(#[from] kind::KindError),
    #[error(transparent)]
    Rke2(#[from] rke2::Rke2Error),
}

/// The cluster steps of a profile.
pub fn steps(
    profile: &Profile,
    overrides: &Overrides,
    facts: &Facts,
    exec: &crate::exec::Exec,
) -> Result<Steps, ProviderError> {
    let mut rke2_plan = None;
    let (steps, planned_gpu_nodes): (Vec<DynStep>, GpuNodes) = match profile.cluster.provider {
        Provider::Existing => (
            vec![Arc::new(existing::Existing::new(
                &profile.cluster.existing,
                overrides,
            ))],
            GpuNodes::Any,
        ),
        Provider::Rke2 => {
            let plan = rke2::Rke2Plan::new(profile.cluster.rke2.clone(), exec)?;
            let steps = plan.steps(&[]);
            let hosts = plan.clone();
            rke2_plan = Some(plan);
            (
                steps,
                GpuNodes::Detected(Arc::new(move || hosts.gpu_node_names())),
            )
        }
        Provider::Sim => (
            vec![Arc::new(sim::Sim::new(profile))],
            GpuNodes::Named(
                profile
                    .cluster
                    .sim
                    .nodes
                    .iter()
                    .filter(|n| n.gpus > 0)
                    .map(|n| GpuNode {
                        name: n.name.clone(),
                        gpus: Some(n.gpus),
                    })
                    .collect(),
            ),
        ),
        Provider::Kind => {
            let preflight: DynStep = Arc::new(crate::preflight::PreflightStep {
                options: preflight_options(profile),
            });
            let plan = kind::KindPlan::new(profile.cluster.kind.clone(), facts.gpus)?;
            let gpu_nodes = GpuNodes::Named(plan.gpu_nodes());
            let steps = std::iter::once(preflight)
                .chain(plan.steps(&[crate::preflight::PreflightStep::id()]))
                .collect();
            (steps, gpu_nodes)
        }
    };
    let ready = steps.iter().map(|s| s.id()).collect();
    // Names in the profile say it for any provider (an existing cluster's GPU nodes, say).
    let gpu_nodes = match &profile.validation.gpu_nodes {
        Some(names) => GpuNodes::Named(names.iter().map(GpuNode::named).collect()),
        None => planned_gpu_nodes,
    };
    Ok(Steps {
        steps,
        ready,
        rke2: rke2_plan,
        gpu_nodes,
    })
}

/// Preflight for a profile: GPUs are needed when validation wants GPU nodes; the driver must run
/// the CUDA sample validation starts and, when the pipeline uses GPUs, its image. With GPUs comes
/// the disk for the GPU operator's and CUDA images; without, a kind cluster and its components need
/// far less (the node image is 1 GiB, the CPU step image 0.1 GiB).
pub fn preflight_options(profile: &Profile) -> crate::preflight::Options {
    let v = &profile.validation;
    let needs_gpu = v.min_gpu_nodes > 0;
    let defaults = crate::preflight::Options::default();
    crate::preflight::Options {
        needs_gpu,
        kind: (profile.cluster.provider == Provider::Kind).then(|| profile.cluster.kind.clone()),
        smoke_image: (needs_gpu && v.cuda_smoke).then(|| v.cuda_image.clone()),
        pipeline_gpu: profile.pipeline.enabled && !profile.pipeline.cpu,
        min_free_gib: if needs_gpu { defaults.min_free_gib } else { 20 },
        ..defaults
    }
}

/// Where kgf-up keeps per-cluster state (kubeconfigs it made): `$XDG_STATE_HOME/kgf-up/<name>`.
pub fn state_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("kgf-up").join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(min_gpu_nodes: u32) -> Profile {
        crate::profile::parse(
            &format!(
                "name: p\ncluster: {{provider: kind}}\nvalidation: {{min_gpu_nodes: {min_gpu_nodes}, cuda_smoke: false}}\n"
            ),
            "p.yaml",
        )
        .unwrap()
    }

    #[test]
    fn a_kind_cluster_without_gpus_asks_for_less_free_disk() {
        let gpu = preflight_options(&profile(1));
        assert!(gpu.needs_gpu);
        assert_eq!(gpu.min_free_gib, 50);
        let cpu = preflight_options(&profile(0));
        assert!(!cpu.needs_gpu);
        assert_eq!(cpu.min_free_gib, 20);
        assert!(cpu.kind.is_some());
    }
}
