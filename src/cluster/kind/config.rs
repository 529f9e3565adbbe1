//! Renders the kind cluster config (`kind.x-k8s.io/v1alpha4`) from a [`KindSpec`].
//!
//! Output is deterministic text (golden files in `tests/fixtures/kind/` pin it, and kind v0.33.0's
//! own loader checks it through `scripts/kind-config-check`). This module must not run anything.

use std::fmt::Write;

use super::KindError;
use super::spec::{KindSpec, NetworkingSpec, NodeGpus, NodePlan, Role};

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
    networking(&mut out, &spec.networking);
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
    if !spec.kubeadm_config_patches.is_empty() {
        out.push_str("kubeadmConfigPatches:\n");
        for patch in &spec.kubeadm_config_patches {
            list_item(&mut out, patch);
        }
    }
    out.push_str("containerdConfigPatches:\n- |-\n");
    out.push_str("  [plugins.\"io.containerd.grpc.v1.cri\".registry]\n");
    let _ = writeln!(out, "    config_path = \"{CERTS_DIR}\"");
    // The profile's patches merge after the registry's, so they may change what it sets.
    for patch in &spec.containerd_config_patches {
        list_item(&mut out, patch);
    }
    out
}

/// `networking:` with the keys the profile sets; nothing when it sets none, so a profile
/// without the section renders (and records) exactly what it did before the section existed.
fn networking(out: &mut String, net: &NetworkingSpec) {
    if net.is_empty() {
        return;
    }
    out.push_str("networking:\n");
    let quoted = |s: &str| serde_json::Value::from(s).to_string();
    if let Some(address) = &net.api_server_address {
        let _ = writeln!(out, "  apiServerAddress: {}", quoted(address));
    }
    if let Some(port) = net.api_server_port {
        let _ = writeln!(out, "  apiServerPort: {port}");
    }
    if let Some(subnet) = &net.pod_subnet {
        let _ = writeln!(out, "  podSubnet: {}", quoted(subnet));
    }
    if let Some(subnet) = &net.service_subnet {
        let _ = writeln!(out, "  serviceSubnet: {}", quoted(subnet));
    }
}

/// One patch as an item of a YAML list: a literal block (`|-`, readable in `plan` and in the
/// recorded config) whose lines are the patch's, or, when the patch's first line is indented
/// (which a block would take for its own indentation), a double-quoted string. Trailing line
/// breaks are dropped: they mean nothing to YAML or TOML. The patch holds only what
/// [`crate::profile::kind`] lets through (no control characters but tab and line feed).
fn list_item(out: &mut String, patch: &str) {
    let body = patch.trim_end_matches('\n');
    let first = body.split('\n').find(|l| !l.is_empty()).unwrap_or("");
    if first.starts_with([' ', '\t']) {
        let _ = writeln!(out, "- {}", serde_json::Value::from(body));
        return;
    }
    out.push_str("- |-\n");
    for line in body.split('\n') {
        if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "  {line}");
        }
    }
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

    fn with_keys() -> KindSpec {
        let mut spec = KindSpec::default();
        spec.networking.pod_subnet = Some("198.18.0.0/16".into());
        spec.networking.service_subnet = Some("198.19.0.0/16".into());
        spec.networking.api_server_address = Some("127.0.0.1".into());
        spec.networking.api_server_port = Some(36443);
        spec.kubeadm_config_patches =
            vec!["kind: KubeletConfiguration\nfailCgroupV1: false\n".into()];
        spec.containerd_config_patches = vec![
            "[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  snapshotter = \"native\"\n"
                .into(),
        ];
        spec
    }

    #[test]
    fn networking_and_patches_render_as_kind_s_keys() {
        let text = render(&with_keys(), 0).unwrap();
        assert!(
            text.contains(
                "name: kgf\nnetworking:\n  apiServerAddress: \"127.0.0.1\"\n  apiServerPort: 36443\n  podSubnet: \"198.18.0.0/16\"\n  serviceSubnet: \"198.19.0.0/16\"\nnodes:\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "kubeadmConfigPatches:\n- |-\n  kind: KubeletConfiguration\n  failCgroupV1: false\ncontainerdConfigPatches:\n"
            ),
            "{text}"
        );
        let value: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(
            value["containerdConfigPatches"].as_array().unwrap().len(),
            2
        );
        assert_eq!(
            value["containerdConfigPatches"][1],
            "[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  snapshotter = \"native\""
        );
    }

    #[test]
    fn without_the_new_keys_the_config_is_what_it_always_was() {
        let text = render(&KindSpec::default(), 1).unwrap();
        assert!(!text.contains("networking:") && !text.contains("kubeadmConfigPatches"));
        assert_eq!(text.matches("- |-").count(), 1);
    }

    proptest::proptest! {
        /// Whatever text validation lets through comes back out of the rendered YAML unchanged
        /// (but for trailing line breaks), however it is indented or quoted.
        #[test]
        fn any_patch_text_survives_the_rendered_yaml(
            patch in "[ \t\na-z:#'\"\\|>&*!%@`{}\\[\\],.-]{1,80}"
        ) {
            let spec = KindSpec {
                kubeadm_config_patches: vec![patch.clone()],
                containerd_config_patches: vec![patch.clone()],
                ..KindSpec::default()
            };
            // render_nodes: the text need not be a valid patch to be carried intact.
            let nodes = KindSpec::default().nodes(0).unwrap();
            let value: serde_json::Value =
                serde_saphyr::from_str(&render_nodes(&spec, &nodes)).unwrap();
            let want = patch.trim_end_matches('\n');
            proptest::prop_assert_eq!(&value["kubeadmConfigPatches"][0], want);
            proptest::prop_assert_eq!(&value["containerdConfigPatches"][1], want);
        }
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
