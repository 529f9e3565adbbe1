//! The kind cluster a run wants ([`KindPlan`]): the spec, its nodes and the rendered config.

use std::path::PathBuf;
use std::sync::Arc;

use super::config;
use super::error::KindError;
use super::spec::{KindSpec, NodeGpus, NodePlan};
use crate::step::Ctx;

/// The kind cluster a run wants: the spec, its nodes and the rendered config.
#[derive(Debug)]
pub struct KindPlan {
    pub spec: KindSpec,
    /// GPUs planned for (the profile's `gpus.count`, else what preflight detected).
    pub gpu_count: u32,
    pub nodes: Vec<NodePlan>,
    /// The kind config, exactly as written for `kind create cluster` and recorded in the cluster.
    pub config: String,
}

impl KindPlan {
    /// Plans the cluster for a host on which preflight found `detected_gpus` GPUs.
    pub fn new(spec: KindSpec, detected_gpus: u32) -> Result<Arc<Self>, KindError> {
        let gpu_count = spec.gpu_count(detected_gpus);
        let nodes = spec.nodes(gpu_count)?;
        let config = config::render_nodes(&spec, &nodes);
        Ok(Arc::new(KindPlan {
            spec,
            gpu_count,
            nodes,
            config,
        }))
    }

    /// The nodes given GPUs (their kind node names) and how many each got, which GPU validation
    /// holds their allocatable GPUs to.
    pub fn gpu_nodes(&self) -> Vec<crate::cluster::GpuNode> {
        self.nodes
            .iter()
            .filter_map(|n| {
                let gpus = match &n.gpus {
                    NodeGpus::None => return None,
                    NodeGpus::All => self.gpu_count,
                    NodeGpus::Indices(list) => list.len() as u32,
                };
                Some(crate::cluster::GpuNode {
                    name: n.name.clone(),
                    gpus: Some(gpus),
                })
            })
            .collect()
    }

    /// Where the kind config is written for `kind create cluster`.
    pub fn config_path(&self, ctx: &Ctx) -> PathBuf {
        ctx.work_dir.join(format!("kind-{}.yaml", self.spec.name))
    }

    /// The cluster's own kubeconfig file (kgf-up's; the user's is changed only by `kind/context`).
    pub fn kubeconfig_path(&self, ctx: &Ctx) -> PathBuf {
        ctx.work_dir
            .join(format!("kind-{}.kubeconfig", self.spec.name))
    }
}
