//! Cluster providers: create, observe and delete a cluster, and hand back its kubeconfig.
//!
//! Each provider is a step with id `cluster` whose observe sets the run's kubeconfig; the steps
//! after it only ever talk to the cluster through that kubeconfig.

pub mod existing;
pub mod kind;
pub mod rke2;
mod shared;
pub mod sim;

use std::sync::Arc;

pub use shared::{GpuNode, GpuNodes, Overrides, id, state_dir};

use crate::profile::{Profile, Provider};
use crate::step::{DynStep, StepId};

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
