//! NVIDIA's GPU operator, with values per provider; healthy when the operator is Available, no
//! operand runs on a node labelled to have none and, where pods run, its ClusterPolicy is ready.

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::json;

use super::{BuiltIn, helm};
use crate::components::Component;
use crate::components::health::{deployments_available, dynamic_api, read_error, simulated};
use crate::kube::Kube;
use crate::profile::gpu::{GPU_RESOURCE, GpuSharing};
use crate::profile::{ComponentSpec, Provider};
use crate::step::StepError;

pub const NAME: &str = "gpu-operator";

pub const BUILT_IN: BuiltIn = BuiltIn {
    name: NAME,
    defaults,
    manifests: &[],
    verify: |kube, c, pods_run| Box::pin(verify(kube, c, pods_run)),
    before_install: None,
};

fn defaults(provider: Provider) -> ComponentSpec {
    ComponentSpec {
        source: helm(
            "https://helm.ngc.nvidia.com/nvidia",
            "gpu-operator",
            "v26.7.0",
        ),
        namespace: Some("gpu-operator".into()),
        values: gpu_operator_values(provider),
        ..Default::default()
    }
}

async fn verify(kube: &Kube, c: &Component, pods_run: bool) -> Result<String, StepError> {
    let ns = c.namespace.as_str();
    deployments_available(kube, c, &["gpu-operator"]).await?;
    operands_only_on_gpu_nodes(kube, c).await?;
    if !pods_run {
        return Ok(simulated(
            "Deployment gpu-operator Available, no operand on a node without GPUs",
            "ClusterPolicy readiness (its operands never run)",
        ));
    }
    let state = cluster_policy_state(kube, c).await?;
    if state != "ready" {
        return Err(StepError::new(format!(
            "{}: ClusterPolicy cluster-policy is `{state}`, not `ready`",
            c.name
        ))
        .with_fix(format!(
            "see which operand is not ready: `kubectl -n {ns} get pods` (driver, toolkit, \
             device plugin, validator) and `kubectl get clusterpolicy cluster-policy -o yaml`"
        ))
        .with_diagnosis(kube.diagnose(ns).await));
    }
    Ok(
        "Deployment gpu-operator Available; no operand on a node without GPUs; \
        ClusterPolicy cluster-policy is ready"
            .into(),
    )
}

/// GPU operator values per provider (design §5): on kind the host provides driver and toolkit
/// (the control plane and CPU-only workers get no operands through their
/// `nvidia.com/gpu.deploy.operands=false` label, set in the kind config); on rke2 the toolkit is
/// pointed at rke2's containerd socket only.
///
/// kind's runtime path is CDI (docs/gpu.md): the device plugin writes a CDI spec into each GPU
/// node and asks containerd (whose `enable_cdi` kgf-up sets with `nvidia-ctk`) to inject the
/// allocated GPUs, so GPU pods need no `runtimeClassName`; only the operator's own operands use
/// the `nvidia` runtime class. `cdi.enabled` is the operator's default since 25.10, set here so a
/// changed default cannot silently switch the path. The NVIDIADriver CRD path ignores
/// `driver.enabled=false`, so it is turned off with it.
fn gpu_operator_values(provider: Provider) -> serde_json::Value {
    match provider {
        // The DCGM exporter keeps its built-in metric list: the chart names no custom metrics
        // ConfigMap by default (its `dcgmExporter.config` block is commented out since v24.9).
        Provider::Kind => json!({
            "driver": {"enabled": false, "nvidiaDriverCRD": {"enabled": false}},
            "toolkit": {"enabled": false},
            "cdi": {"enabled": true},
        }),
        Provider::Rke2 => json!({
            "toolkit": {"env": [
                {"name": "CONTAINERD_SOCKET", "value": "/run/k3s/containerd/containerd.sock"}
            ]},
        }),
        Provider::Sim | Provider::Existing => json!({}),
    }
}

/// The ConfigMap the chart makes for the device plugin when the profile shares GPUs.
pub const DEVICE_PLUGIN_CONFIG: &str = "kgf-up-device-plugin";

/// The operator values the profile's `gpu` section implies: `mig.strategy` when MIG is on, and a
/// device plugin configuration with `replicas` time-slices of `nvidia.com/gpu` when GPUs are
/// shared (the chart creates it as a ConfigMap; `any` is its one configuration, used on every
/// node). Nothing for whole GPUs, so the chart's defaults stay as they are.
pub fn sharing_values(sharing: &GpuSharing) -> serde_json::Value {
    let mut values = json!({});
    if let Some(mig) = &sharing.mig {
        values["mig"] = json!({"strategy": mig.strategy.as_str()});
    }
    if let Some(t) = &sharing.time_slicing {
        let config = format!(
            "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: {GPU_RESOURCE}\n      replicas: {}\n",
            t.replicas
        );
        values["devicePlugin"] = json!({"config": {
            "create": true,
            "name": DEVICE_PLUGIN_CONFIG,
            "default": "any",
            "data": {"any": config},
        }});
    }
    values
}

/// The label kgf-up puts on nodes that must run no GPU operand (see `cluster::kind::config`).
const NO_OPERANDS: (&str, &str) = ("nvidia.com/gpu.deploy.operands", "false");

/// The operator's operand pods (device plugin, GFD, DCGM exporter, validator, toolkit, driver...)
/// are the ones its DaemonSets pin to a `nvidia.com/gpu.deploy.<operand>` node label.
pub fn is_operand(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_selector.as_ref())
        .is_some_and(|sel| sel.keys().any(|k| k.starts_with("nvidia.com/gpu.deploy.")))
}

/// Operand pods scheduled on a node labelled to run none: there containerd has no `nvidia`
/// runtime, so they never start and the ClusterPolicy never gets ready.
async fn operands_only_on_gpu_nodes(kube: &Kube, c: &Component) -> Result<(), StepError> {
    let nodes: Api<Node> = Api::all(kube.client());
    let off: Vec<String> = nodes
        .list(&ListParams::default().labels(&format!("{}={}", NO_OPERANDS.0, NO_OPERANDS.1)))
        .await
        .map_err(|e| read_error(c, "nodes", e))?
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    if off.is_empty() {
        return Ok(());
    }
    let pods: Api<Pod> = Api::namespaced(kube.client(), &c.namespace);
    let misplaced: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .map_err(|e| read_error(c, "pods", e))?
        .items
        .iter()
        .filter(|p| is_operand(p))
        .filter_map(|p| {
            let node = p.spec.as_ref()?.node_name.as_ref()?;
            off.contains(node)
                .then(|| format!("{} on {node}", p.name_any()))
        })
        .collect();
    if misplaced.is_empty() {
        return Ok(());
    }
    Err(StepError::new(format!(
        "{}: operand pods on nodes labelled {}={}: {}",
        c.name,
        NO_OPERANDS.0,
        NO_OPERANDS.1,
        misplaced.join(", ")
    ))
    .with_fix(format!(
        "those nodes have no GPU runtime; delete the pods (`kubectl -n {} delete pod NAME`) and check \
         that the operator's node labels `nvidia.com/gpu.deploy.*` are gone from those nodes",
        c.namespace
    )))
}

/// The ClusterPolicy's `status.state` (`ready`, `notReady`, or `absent`/`unknown`).
async fn cluster_policy_state(kube: &Kube, c: &Component) -> Result<String, StepError> {
    let api = dynamic_api(
        kube,
        "nvidia.com",
        "v1",
        "ClusterPolicy",
        "clusterpolicies",
        None,
    );
    let policy = api
        .get_opt("cluster-policy")
        .await
        .map_err(|e| read_error(c, "ClusterPolicy cluster-policy", e))?;
    Ok(match policy {
        None => "absent".into(),
        Some(p) => p
            .data
            .pointer("/status/state")
            .and_then(|s| s.as_str())
            .unwrap_or("unknown")
            .to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_kind_the_host_driver_turns_off_both_driver_paths_and_cdi_is_pinned_on() {
        let v = gpu_operator_values(Provider::Kind);
        assert_eq!(v["driver"]["enabled"], false);
        assert_eq!(v["driver"]["nvidiaDriverCRD"]["enabled"], false);
        assert_eq!(v["toolkit"]["enabled"], false);
        assert_eq!(v["cdi"]["enabled"], true);
    }

    #[test]
    fn whole_gpus_leave_the_chart_alone_and_sharing_configures_the_device_plugin() {
        assert_eq!(sharing_values(&GpuSharing::default()), json!({}));
        let shared: GpuSharing =
            serde_saphyr::from_str("time_slicing: {replicas: 4}\nmig: {strategy: single}").unwrap();
        let v = sharing_values(&shared);
        assert_eq!(v["mig"]["strategy"], "single");
        let config = &v["devicePlugin"]["config"];
        assert_eq!(config["create"], true);
        assert_eq!(config["name"], DEVICE_PLUGIN_CONFIG);
        assert_eq!(config["default"], "any");
        // The device plugin's own config format (api/config/v1): a time-sliced resource and
        // its replicas.
        let plugin: serde_json::Value =
            serde_saphyr::from_str(config["data"]["any"].as_str().unwrap()).unwrap();
        assert_eq!(
            plugin,
            json!({"version": "v1", "sharing": {"timeSlicing": {"resources": [
                {"name": "nvidia.com/gpu", "replicas": 4}
            ]}}})
        );
    }

    #[test]
    fn the_profile_gpu_section_reaches_the_component_under_its_own_values() {
        let profile = crate::profile::parse(
            "name: t\ncluster: {provider: kind}\ngpu: {time_slicing: {replicas: 3}}\n\
             components:\n  gpu-operator: {values: {devicePlugin: {config: {name: mine}}}}\n",
            "p.yaml",
        )
        .unwrap();
        let c = crate::components::resolve(&profile).unwrap();
        let config = &c[0].values["devicePlugin"]["config"];
        assert_eq!(config["name"], "mine", "the profile's values win");
        assert!(
            config["data"]["any"]
                .as_str()
                .unwrap()
                .contains("replicas: 3")
        );
        assert_eq!(c[0].values["cdi"]["enabled"], true);
    }
}
