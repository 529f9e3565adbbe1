//! The `cluster.kind` section of a profile: what the kind cluster should look like.
//!
//! Pure data with defaults and validation; it must not probe the host. Which node gets which GPU
//! is decided here ([`KindSpec::nodes`]) from the GPU count that preflight found.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::SpecError;

mod key_error;
mod networking;
mod patches;
pub use key_error::KeyError;
pub use networking::{Cidr, NetworkingSpec, parse_cidr};
pub use patches::{MAX_PATCH_BYTES, MAX_PATCHES};

/// The kind release the pinned node image belongs to (what preflight asks `kind version` for).
pub const KIND_VERSION: &str = "v0.33.0";

/// The node image kgf-up pins: the Kubernetes 1.36 image published with kind v0.33.0 (kind's
/// release notes list it by digest; kind supports an image only with the kind release it was
/// built for, so the digest travels with the kind version preflight asks for).
pub const DEFAULT_NODE_IMAGE: &str =
    "kindest/node:v1.36.4@sha256:099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed";

/// `cluster.kind` in a profile. Every field has a default, so `kind: {}` is a working cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KindSpec {
    /// kind cluster name (`[a-z0-9.-]+`). Node containers are `<name>-control-plane`,
    /// `<name>-worker`, `<name>-worker2`, ...; the kubeconfig context is `kind-<name>`.
    pub name: String,
    /// Node image for every node, pinned by digest.
    pub node_image: String,
    /// Workers without GPUs, added after the GPU workers.
    pub workers: u32,
    /// How the host's GPUs are handed to workers.
    pub gpus: GpuSpec,
    /// The local image registry container wired into every node.
    pub registry: RegistrySpec,
    /// Where the NVIDIA container toolkit inside each GPU node comes from.
    pub toolkit: ToolkitSource,
    /// Allow deleting and re-creating a cluster of this name whose recorded config differs from
    /// the profile (kind cannot change an existing cluster). Off: kgf-up stops and shows the diff.
    pub recreate: bool,
    /// Make `kind-<name>` the current context of the user's kubeconfig (kind's own
    /// `kind export kubeconfig`); other contexts are never touched.
    pub select_context: bool,
    /// Subnets and the API server's address and port (kind's `networking`).
    pub networking: NetworkingSpec,
    /// YAML merge patches kind applies to every node's kubeadm config (kind's
    /// `kubeadmConfigPatches`), e.g. `failCgroupV1: false` for a cgroup v1 host.
    pub kubeadm_config_patches: Vec<String>,
    /// TOML merged into every node's containerd config after kgf-up's registry patch (kind's
    /// `containerdConfigPatches`).
    pub containerd_config_patches: Vec<String>,
}

impl Default for KindSpec {
    fn default() -> Self {
        KindSpec {
            name: "kgf".to_string(),
            node_image: DEFAULT_NODE_IMAGE.to_string(),
            workers: 0,
            gpus: GpuSpec::default(),
            registry: RegistrySpec::default(),
            toolkit: ToolkitSource::default(),
            recreate: false,
            select_context: true,
            networking: NetworkingSpec::default(),
            kubeadm_config_patches: Vec::new(),
            containerd_config_patches: Vec::new(),
        }
    }
}

/// `cluster.kind.gpus`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpuSpec {
    pub layout: GpuLayout,
    /// GPUs to plan for instead of the count `nvidia-smi` reports (e.g. `kgf-up plan` on a
    /// machine without GPUs). Unset: the detected count.
    pub count: Option<u32>,
}

/// How GPUs are spread over workers (the layouts of nvkind's examples).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum GpuLayout {
    /// One worker gets every GPU (mounted as `all`). No GPU worker when the host has none.
    #[default]
    OneWorker,
    /// One worker per GPU, each seeing only its own GPU.
    WorkerPerGpu,
    /// Explicit GPU indices per worker, e.g. `[[0, 1], [2, 3]]`.
    Explicit(Vec<Vec<u32>>),
}

/// `cluster.kind.registry`: kind's documented local registry recipe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySpec {
    pub enabled: bool,
    /// Container name; pods and builders in the cluster reach it as `<name>:5000`.
    pub name: String,
    /// Port on 127.0.0.1 of the host; images are pushed and referenced as `localhost:<port>/...`.
    pub host_port: u16,
    pub image: String,
}

impl Default for RegistrySpec {
    fn default() -> Self {
        RegistrySpec {
            enabled: true,
            name: "kind-registry".to_string(),
            host_port: 5001,
            image: "registry:3".to_string(),
        }
    }
}

/// `cluster.kind.toolkit`: how the NVIDIA container toolkit gets into GPU nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum ToolkitSource {
    /// NVIDIA's apt repository, from inside the node (as nvkind does): the node needs internet
    /// access to nvidia.github.io and the Debian mirrors. `version` pins e.g. `1.18.1-1`.
    Apt { version: Option<String> },
    /// `.deb` files in a host directory (nvidia-container-toolkit, -base, libnvidia-container1,
    /// libnvidia-container-tools), copied into the node and installed with dpkg: no internet.
    Debs { path: PathBuf },
}

impl Default for ToolkitSource {
    fn default() -> Self {
        ToolkitSource::Apt { version: None }
    }
}

/// A node's role in the kind config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    ControlPlane,
    Worker,
}

/// Which GPUs a node sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeGpus {
    None,
    /// Every GPU of the host (`/var/run/nvidia-container-devices/all`).
    All,
    /// These host GPU indices only.
    Indices(Vec<u32>),
}

/// One node of the cluster as kind will name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePlan {
    /// The node container's name (also the Kubernetes node name).
    pub name: String,
    pub role: Role,
    pub gpus: NodeGpus,
}

impl NodePlan {
    pub fn has_gpus(&self) -> bool {
        self.gpus != NodeGpus::None
    }
}

impl KindSpec {
    /// The kubeconfig context kind creates for this cluster.
    pub fn context(&self) -> String {
        format!("kind-{}", self.name)
    }

    /// The GPU count to plan for: the profile's override, else what the host has.
    pub fn gpu_count(&self, detected: u32) -> u32 {
        self.gpus.count.unwrap_or(detected)
    }

    /// The checks of networking and patches for a cluster of `nodes` nodes, each naming its key
    /// (load-time checks pass the fewest nodes the profile can give: GPU workers come later).
    pub fn check_keys(&self, nodes: usize) -> Result<(), KeyError> {
        let within = |e: KeyError| KeyError {
            key: format!("networking.{}", e.key),
            ..e
        };
        self.networking.check(nodes).map_err(within)?;
        if self.registry.enabled && self.networking.api_server_port == Some(self.registry.host_port)
        {
            return Err(KeyError::new(
                "networking.api_server_port",
                format!(
                    "api_server_port {} is also the registry's host_port",
                    self.registry.host_port
                ),
                "give the API server and the registry different ports",
            ));
        }
        patches::check_kubeadm(&self.kubeadm_config_patches)?;
        patches::check_containerd(&self.containerd_config_patches)
    }

    /// Whether the kubeadm patches let kubelet start on a cgroup v1 host.
    pub fn kubelet_accepts_cgroup_v1(&self) -> bool {
        patches::kubelet_accepts_cgroup_v1(&self.kubeadm_config_patches)
    }

    /// Checks what can be checked without the host: the name, the image, explicit GPU lists,
    /// networking and patches.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        {
            return Err(SpecError(format!(
                "cluster name {:?} is not valid for kind: use lower-case letters, digits, '.' and '-'",
                self.name
            )));
        }
        if self.node_image.trim().is_empty() {
            return Err(SpecError(
                "node_image is empty: set it to a kindest/node image, e.g. the default".into(),
            ));
        }
        if self.registry.enabled && (self.registry.host_port == 0 || self.registry.name.is_empty())
        {
            return Err(SpecError(
                "registry needs a name and a host_port above 0 (or enabled: false)".into(),
            ));
        }
        if let GpuLayout::Explicit(workers) = &self.gpus.layout {
            let mut seen = BTreeSet::new();
            for (i, list) in workers.iter().enumerate() {
                if list.is_empty() {
                    return Err(SpecError(format!(
                        "gpus.layout.explicit worker {i} has no GPUs: remove it and raise `workers` for a CPU-only worker"
                    )));
                }
                for gpu in list {
                    if !seen.insert(*gpu) {
                        return Err(SpecError(format!(
                            "GPU {gpu} is given to more than one worker in gpus.layout.explicit: a GPU can belong to one worker only"
                        )));
                    }
                }
            }
        }
        self.check_keys(1 + self.workers as usize)?;
        Ok(())
    }

    /// Every node in kind's order (control plane, GPU workers, CPU workers) with kind's names and
    /// the GPUs each sees, for a host with `gpu_count` GPUs (after [`KindSpec::gpu_count`]).
    pub fn nodes(&self, gpu_count: u32) -> Result<Vec<NodePlan>, SpecError> {
        self.validate()?;
        let gpu_workers: Vec<NodeGpus> = match &self.gpus.layout {
            GpuLayout::OneWorker if gpu_count == 0 => Vec::new(),
            GpuLayout::OneWorker => vec![NodeGpus::All],
            GpuLayout::WorkerPerGpu => (0..gpu_count).map(|i| NodeGpus::Indices(vec![i])).collect(),
            GpuLayout::Explicit(lists) => {
                if let Some(gpu) = lists.iter().flatten().find(|g| **g >= gpu_count) {
                    return Err(SpecError(format!(
                        "gpus.layout.explicit names GPU {gpu}, but the host has {gpu_count} GPU(s) (indices 0..{}): check `nvidia-smi -L`",
                        gpu_count.saturating_sub(1)
                    )));
                }
                lists
                    .iter()
                    .map(|l| {
                        let mut l = l.clone();
                        l.sort_unstable();
                        NodeGpus::Indices(l)
                    })
                    .collect()
            }
        };
        let mut nodes = vec![NodePlan {
            name: format!("{}-control-plane", self.name),
            role: Role::ControlPlane,
            gpus: NodeGpus::None,
        }];
        let cpu_workers = (0..self.workers).map(|_| NodeGpus::None);
        for (i, gpus) in gpu_workers.into_iter().chain(cpu_workers).enumerate() {
            // kind's node namer: the first node of a role has no suffix, then 2, 3, ...
            let suffix = if i == 0 {
                String::new()
            } else {
                (i + 1).to_string()
            };
            nodes.push(NodePlan {
                name: format!("{}-worker{suffix}", self.name),
                role: Role::Worker,
                gpus,
            });
        }
        // GPU workers are known only now: the pod subnet must hold a range for each.
        self.networking.check(nodes.len()).map_err(|e| {
            SpecError::from(KeyError {
                key: format!("networking.{}", e.key),
                ..e
            })
        })?;
        Ok(nodes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<KindSpec, serde_saphyr::Error> {
        serde_saphyr::from_str(yaml)
    }

    #[test]
    fn empty_section_is_the_default_cluster() {
        let spec = parse("{}").unwrap();
        assert_eq!(spec, KindSpec::default());
        assert_eq!(spec.context(), "kind-kgf");
        assert!(spec.select_context && !spec.recreate);
        assert_eq!(spec.registry.host_port, 5001);
        assert_eq!(spec.registry.image, "registry:3");
    }

    #[test]
    fn layouts_and_toolkit_sources_parse() {
        let spec = parse(
            "name: lab\ngpus:\n  layout:\n    explicit: [[0, 1], [3]]\ntoolkit:\n  debs:\n    path: /srv/nvidia-debs\n",
        )
        .unwrap();
        assert_eq!(
            spec.gpus.layout,
            GpuLayout::Explicit(vec![vec![0, 1], vec![3]])
        );
        assert_eq!(
            spec.toolkit,
            ToolkitSource::Debs {
                path: "/srv/nvidia-debs".into()
            }
        );
        let spec = parse("gpus: {layout: worker-per-gpu, count: 2}").unwrap();
        assert_eq!(spec.gpus.layout, GpuLayout::WorkerPerGpu);
        assert_eq!(spec.gpu_count(8), 2);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(parse("nmae: x").is_err());
        assert!(parse("registry: {port: 5000}").is_err());
        assert!(parse("toolkit: {apt: {versoin: '1'}}").is_err());
    }

    #[test]
    fn nodes_follow_kind_naming_and_layout() {
        let mut spec = KindSpec {
            workers: 1,
            ..KindSpec::default()
        };
        spec.gpus.layout = GpuLayout::WorkerPerGpu;
        let nodes = spec.nodes(2).unwrap();
        let names: Vec<_> = nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kgf-control-plane",
                "kgf-worker",
                "kgf-worker2",
                "kgf-worker3"
            ]
        );
        assert_eq!(nodes[1].gpus, NodeGpus::Indices(vec![0]));
        assert_eq!(nodes[2].gpus, NodeGpus::Indices(vec![1]));
        assert_eq!(nodes[3].gpus, NodeGpus::None);

        spec.gpus.layout = GpuLayout::OneWorker;
        assert_eq!(
            spec.nodes(0).unwrap().len(),
            2,
            "no GPU worker without GPUs"
        );
        assert_eq!(spec.nodes(4).unwrap()[1].gpus, NodeGpus::All);
    }

    #[test]
    fn explicit_lists_are_checked_against_the_host() {
        let mut spec = KindSpec::default();
        spec.gpus.layout = GpuLayout::Explicit(vec![vec![0], vec![0, 1]]);
        let err = spec.validate().unwrap_err().to_string();
        assert!(
            err.contains("GPU 0 is given to more than one worker"),
            "{err}"
        );

        spec.gpus.layout = GpuLayout::Explicit(vec![vec![3, 1]]);
        let err = spec.nodes(2).unwrap_err().to_string();
        assert!(
            err.contains("names GPU 3, but the host has 2 GPU(s)"),
            "{err}"
        );
        assert_eq!(
            spec.nodes(4).unwrap()[1].gpus,
            NodeGpus::Indices(vec![1, 3])
        );
    }

    #[test]
    fn bad_names_are_rejected_with_the_rule() {
        let spec = KindSpec {
            name: "My_Cluster".into(),
            ..KindSpec::default()
        };
        assert!(
            spec.validate()
                .unwrap_err()
                .to_string()
                .contains("lower-case")
        );
    }
}
