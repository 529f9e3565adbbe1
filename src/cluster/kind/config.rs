//! Renders the kind cluster config (`kind.x-k8s.io/v1alpha4`) from a [`KindSpec`].
//!
//! Output is deterministic text (golden files in `tests/fixtures/kind/` pin it, and kind v0.33.0's
//! own loader checks it through `scripts/kind-config-check`). This module must not run anything.

use std::fmt::Write;

use super::KindError;
use super::spec::{KindSpec, NodeGpus, NodePlan, Role};

/// Where the NVIDIA container runtime looks for GPU requests given as volume mounts: a mount of
/// `/dev/null` at `<dir>/<index|all>` asks for that GPU (needs
/// `accept-nvidia-visible-devices-as-volume-mounts = true` in the host's toolkit config).
pub const DEVICE_MOUNT_DIR: &str = "/var/run/nvidia-container-devices";

/// The label GPU workers carry so the GPU operator (NFD off the control plane) finds them.
pub const GPU_LABEL: (&str, &str) = ("nvidia.com/gpu.present", "true");

/// The GPU operator deploys no operand on a node with this label. Every kind node shares the
/// host's PCI view, so NFD and the operator mark the control plane and each CPU-only worker as GPU
/// nodes too; without this label the device plugin, GFD, DCGM exporter and validator go there,
/// where containerd has no `nvidia` runtime, never start, and keep the ClusterPolicy from getting
/// ready. Every node without GPUs carries it.
pub const NO_OPERANDS_LABEL: (&str, &str) = ("nvidia.com/gpu.deploy.operands", "false");

/// containerd reads per-registry `hosts.toml` files from here (default in node images since
/// kind v0.27; patched explicitly so an older pinned image behaves the same).
pub const CERTS_DIR: &str = "/etc/containerd/certs.d";

/// The kind config for `spec` on a host with `gpu_count` GPUs.
pub fn render(spec: &KindSpec, gpu_count: u32) -> Result<String, KindError> {
    Ok(render_nodes(spec, &spec.nodes(gpu_count)?))
}

/// The kind config for already planned nodes (see [`KindSpec::nodes`]).
pub fn render_nodes(spec: &KindSpec, nodes: &[NodePlan]) -> String {
    let mut out = String::new();
    // The comment survives in the copy kgf-up records in the cluster, so whoever reads that
    // ConfigMap knows where it came from.
    out.push_str("# Rendered by kgf-up from the profile's cluster.kind section.\n");
    out.push_str("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n");
    let _ = writeln!(out, "name: {}", spec.name);
    out.push_str("nodes:\n");
    for node in nodes {
        let role = match node.role {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
        };
        let _ = writeln!(out, "- role: {role}");
        let _ = writeln!(out, "  image: {}", spec.node_image);
        let devices: Vec<String> = match &node.gpus {
            NodeGpus::None => {
                let _ = writeln!(
                    out,
                    "  labels:\n    {}: \"{}\"",
                    NO_OPERANDS_LABEL.0, NO_OPERANDS_LABEL.1
                );
                continue;
            }
            NodeGpus::All => vec!["all".to_string()],
            NodeGpus::Indices(list) => list.iter().map(u32::to_string).collect(),
        };
        let _ = writeln!(out, "  labels:\n    {}: \"{}\"", GPU_LABEL.0, GPU_LABEL.1);
        out.push_str("  extraMounts:\n");
        for device in devices {
            let _ = writeln!(
                out,
                "  - hostPath: /dev/null\n    containerPath: {DEVICE_MOUNT_DIR}/{device}"
            );
        }
    }
    out.push_str("containerdConfigPatches:\n- |-\n");
    out.push_str("  [plugins.\"io.containerd.grpc.v1.cri\".registry]\n");
    let _ = writeln!(out, "    config_path = \"{CERTS_DIR}\"");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::kind::spec::GpuLayout;

    #[test]
    fn one_gpu_worker_gets_the_label_and_the_all_mount() {
        let text = render(&KindSpec::default(), 1).unwrap();
        assert!(text.contains(
            "- role: worker\n  image: kindest/node:v1.36.4@sha256:099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed\n  labels:\n    nvidia.com/gpu.present: \"true\"\n  extraMounts:\n  - hostPath: /dev/null\n    containerPath: /var/run/nvidia-container-devices/all\n"
        ));
        assert_eq!(text.matches("- role:").count(), 2);
    }

    #[test]
    fn the_control_plane_never_gets_gpus() {
        let mut spec = KindSpec::default();
        spec.gpus.layout = GpuLayout::WorkerPerGpu;
        let text = render(&spec, 4).unwrap();
        let control_plane = text.split("- role: ").nth(1).unwrap();
        assert!(control_plane.starts_with("control-plane"));
        assert!(!control_plane.contains("nvidia-container-devices"));
        assert!(!control_plane.contains("gpu.present"));
        // ... and the GPU operator puts no operand on it.
        assert!(control_plane.contains("nvidia.com/gpu.deploy.operands: \"false\""));
        assert_eq!(text.matches("nvidia.com/gpu.present").count(), 4);
    }

    #[test]
    fn the_rendered_config_parses_as_yaml_with_the_expected_shape() {
        let mut spec = KindSpec::default();
        spec.gpus.layout = GpuLayout::Explicit(vec![vec![0, 2], vec![1]]);
        let value: serde_json::Value = serde_saphyr::from_str(&render(&spec, 4).unwrap()).unwrap();
        assert_eq!(
            value["nodes"][1]["labels"]["nvidia.com/gpu.present"],
            "true"
        );
        assert_eq!(
            value["nodes"][1]["extraMounts"][1]["containerPath"],
            "/var/run/nvidia-container-devices/2"
        );
        assert_eq!(
            value["containerdConfigPatches"][0],
            "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\""
        );
    }
}
