//! The built-in components: pinned sources, namespaces, ordering and values per provider.
//! Pins are checked against upstream release notes; the README's versions table lists them.

use serde_json::json;

use super::Manifest;
use crate::profile::{ComponentSpec, Provider, Source};

pub const NAMES: &[&str] = &[
    "cert-manager",
    "gpu-operator",
    "kubeflow-pipelines",
    "kuberay",
    "kserve-crd",
    "kserve",
    "kserve-runtimes",
    "minio",
    "prometheus",
];

pub fn is_built_in(name: &str) -> bool {
    NAMES.contains(&name)
}

fn helm(repo: &str, chart: &str, version: &str) -> Option<Source> {
    Some(Source::Helm {
        repo: repo.into(),
        chart: chart.into(),
        version: version.into(),
    })
}

fn oci(reference: &str, version: &str) -> Option<Source> {
    Some(Source::Oci {
        reference: reference.into(),
        version: version.into(),
    })
}

fn needs(names: &[&str]) -> Option<Vec<String>> {
    Some(names.iter().map(|s| s.to_string()).collect())
}

/// The built-in defaults of `name` on `provider`, or `None` for a custom component.
pub fn defaults(name: &str, provider: Provider) -> Option<ComponentSpec> {
    let sim = provider == Provider::Sim;
    let spec = match name {
        "cert-manager" => ComponentSpec {
            source: helm("https://charts.jetstack.io", "cert-manager", "v1.21.2"),
            namespace: Some("cert-manager".into()),
            values: json!({"crds": {"enabled": true}}),
            ..Default::default()
        },
        "gpu-operator" => ComponentSpec {
            source: helm("https://helm.ngc.nvidia.com/nvidia", "gpu-operator", "v26.7.0"),
            namespace: Some("gpu-operator".into()),
            values: gpu_operator_values(provider),
            ..Default::default()
        },
        "kubeflow-pipelines" => ComponentSpec {
            source: Some(Source::Kustomize {
                paths: vec![
                    "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources?ref=2.17.1".into(),
                    "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic?ref=2.17.1".into(),
                ],
            }),
            namespace: Some("kubeflow".into()),
            ..Default::default()
        },
        "kuberay" => ComponentSpec {
            source: helm("https://ray-project.github.io/kuberay-helm/", "kuberay-operator", "1.7.1"),
            namespace: Some("kuberay".into()),
            release: Some("kuberay-operator".into()),
            ..Default::default()
        },
        "kserve-crd" => ComponentSpec {
            source: oci("oci://ghcr.io/kserve/charts/kserve-crd", "v0.20.0"),
            namespace: Some("kserve".into()),
            ..Default::default()
        },
        "kserve" => ComponentSpec {
            source: oci("oci://ghcr.io/kserve/charts/kserve-resources", "v0.20.0"),
            namespace: Some("kserve".into()),
            needs: needs(&["cert-manager", "kserve-crd"]),
            values: json!({"kserve": {"controller": {"deploymentMode": "Standard"}}}),
            ..Default::default()
        },
        "kserve-runtimes" => ComponentSpec {
            source: oci("oci://ghcr.io/kserve/charts/kserve-runtime-configs", "v0.20.0"),
            namespace: Some("kserve".into()),
            needs: needs(&["kserve"]),
            // The chart's default renders no runtime at all.
            values: json!({"kserve": {"servingruntime": {"enabled": true}}}),
            ..Default::default()
        },
        "minio" => ComponentSpec {
            source: helm("https://charts.min.io/", "minio", "5.4.0"),
            namespace: Some("minio".into()),
            values: json!({
                "mode": "standalone",
                "replicas": 1,
                "resources": {"requests": {"memory": "512Mi"}},
                "persistence": {"size": if sim { "1Gi" } else { "20Gi" }},
                // The last published image: RELEASE.2025-10-15T17-29-55Z (the security fix) was
                // released as source only. Root credentials: Secret minio-root, made by kgf-up.
                "image": {"repository": "quay.io/minio/minio", "tag": "RELEASE.2025-09-07T16-13-09Z"},
                "existingSecret": "minio-root",
                "buckets": [
                    {"name": "datasets", "policy": "none"},
                    {"name": "models", "policy": "none"},
                    {"name": "pipelines", "policy": "none"}
                ],
            }),
            ..Default::default()
        },
        "prometheus" => ComponentSpec {
            source: oci(
                "oci://ghcr.io/prometheus-community/charts/kube-prometheus-stack",
                "88.5.3",
            ),
            namespace: Some("monitoring".into()),
            release: Some("kube-prometheus-stack".into()),
            values: json!({
                "prometheus": {"prometheusSpec": {
                    "serviceMonitorSelectorNilUsesHelmValues": false,
                    "podMonitorSelectorNilUsesHelmValues": false
                }},
                // The admission webhooks need a running cert-gen job; pods never run on sim.
                "prometheusOperator": {"admissionWebhooks": {"enabled": !sim}},
                // Grafana's sidecar loads the GPU dashboard kgf-up applies (see `manifests`).
                "grafana": {"sidecar": {"dashboards": {
                    "enabled": true, "label": "grafana_dashboard", "labelValue": "1"
                }}},
            }),
            ..Default::default()
        },
        _ => return None,
    };
    Some(spec)
}

/// kgf-up's own manifests that come with built-in component `name`.
pub fn manifests(name: &str) -> Vec<Manifest> {
    match name {
        "prometheus" => vec![
            Manifest {
                path: "manifests/grafana/gpu-dashboard.yaml",
                yaml: include_str!("../../manifests/grafana/gpu-dashboard.yaml"),
            },
            Manifest {
                path: "manifests/grafana/model-dashboard.yaml",
                yaml: include_str!("../../manifests/grafana/model-dashboard.yaml"),
            },
        ],
        // The deploy step's rights and the served model's ServiceAccount, in KFP's namespace
        // (where the pipeline's steps run and the InferenceService is made).
        "kubeflow-pipelines" => vec![Manifest {
            path: "manifests/pipeline/deployer-rbac.yaml",
            yaml: include_str!("../../manifests/pipeline/deployer-rbac.yaml"),
        }],
        _ => Vec::new(),
    }
}

/// GPU operator values per provider (design §5): on kind the host provides driver and toolkit
/// (the control plane and CPU-only workers get no operands through their
/// `nvidia.com/gpu.deploy.operands=false` label, set in the kind config); on rke2 the toolkit is
/// pointed at rke2's containerd socket only.
fn gpu_operator_values(provider: Provider) -> serde_json::Value {
    match provider {
        // The DCGM exporter keeps its built-in metric list: the chart names no custom metrics
        // ConfigMap by default (its `dcgmExporter.config` block is commented out since v24.9).
        Provider::Kind => json!({
            "driver": {"enabled": false},
            "toolkit": {"enabled": false},
        }),
        Provider::Rke2 => json!({
            "toolkit": {"env": [
                {"name": "CONTAINERD_SOCKET", "value": "/run/k3s/containerd/containerd.sock"}
            ]},
        }),
        Provider::Sim | Provider::Existing => json!({}),
    }
}
