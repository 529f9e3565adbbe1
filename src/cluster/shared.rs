//! What every provider shares: the cluster step's id, the command line's kubeconfig overrides,
//! where kgf-up keeps a cluster's state, and which nodes are meant to have GPUs.

use std::path::PathBuf;
use std::sync::Arc;

use crate::step::StepId;

/// `--kubeconfig` / `--context` from the command line.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

pub fn id() -> StepId {
    StepId::new("cluster", "")
}

/// Where kgf-up keeps per-cluster state (kubeconfigs it made): `$XDG_STATE_HOME/kgf-up/<name>`.
pub fn state_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("kgf-up").join(name)
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
