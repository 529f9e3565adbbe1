//! kube-prometheus-stack, with Grafana's sidecar loading the dashboards kgf-up brings (GPUs and
//! the served model); healthy when its operator is Available and its CRDs are Established.

use serde_json::json;

use super::{BuiltIn, oci};
use crate::components::health::{crds_established, deployments_available, fullname};
use crate::components::{Component, Manifest};
use crate::kube::Kube;
use crate::profile::{ComponentSpec, Provider};
use crate::step::StepError;

/// Grafana's dashboards, loaded by its sidecar through their `grafana_dashboard: "1"` label.
const MANIFESTS: &[Manifest] = &[
    Manifest {
        path: "manifests/grafana/gpu-dashboard.yaml",
        yaml: include_str!("../../../manifests/grafana/gpu-dashboard.yaml"),
    },
    Manifest {
        path: "manifests/grafana/model-dashboard.yaml",
        yaml: include_str!("../../../manifests/grafana/model-dashboard.yaml"),
    },
];

pub const BUILT_IN: BuiltIn = BuiltIn {
    name: "prometheus",
    defaults,
    manifests: MANIFESTS,
    verify: |kube, c, pods_run| Box::pin(verify(kube, c, pods_run)),
    before_install: None,
};

fn defaults(provider: Provider) -> ComponentSpec {
    let sim = provider == Provider::Sim;
    ComponentSpec {
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
    }
}

async fn verify(kube: &Kube, c: &Component, _pods_run: bool) -> Result<String, StepError> {
    let operator = format!(
        "{}-operator",
        fullname(&c.release, "kube-prometheus-stack", 26)
    );
    deployments_available(kube, c, &[&operator]).await?;
    let crds = [
        "prometheuses.monitoring.coreos.com",
        "servicemonitors.monitoring.coreos.com",
        "podmonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
    ];
    crds_established(kube, c, &crds).await?;
    Ok(format!(
        "Deployment {operator} Available; CRDs prometheuses, servicemonitors, podmonitors and prometheusrules Established"
    ))
}
