//! Readiness rules: when an object of each kind counts as ready.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;

/// The annotations that ask cert-manager's CA injector to fill a webhook's `caBundle`.
const INJECT_CA: &[&str] = &[
    "cert-manager.io/inject-ca-from",
    "cert-manager.io/inject-ca-from-secret",
    "cert-manager.io/inject-apiserver-ca",
];

/// Whether a webhook configuration can be called: one that asks cert-manager for its CA has it
/// in every webhook's `clientConfig.caBundle`. Until then the API server cannot verify the
/// webhook's certificate and refuses every object the webhook validates ("x509: certificate
/// signed by unknown authority"), even though its Service already has endpoints.
pub fn webhook_ca_injected(config: &serde_json::Value) -> bool {
    let asks = config
        .pointer("/metadata/annotations")
        .and_then(|a| a.as_object())
        .is_some_and(|a| INJECT_CA.iter().any(|k| a.contains_key(*k)));
    if !asks {
        return true;
    }
    config
        .get("webhooks")
        .and_then(|w| w.as_array())
        .is_some_and(|hooks| {
            hooks.iter().all(|h| {
                h.pointer("/clientConfig/caBundle")
                    .and_then(|b| b.as_str())
                    .is_some_and(|b| !b.is_empty())
            })
        })
}

/// Ready or finished: a completed pod of a Job is fine.
pub(super) fn pod_ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    if status.phase.as_deref() == Some("Succeeded") {
        return true;
    }
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

pub(super) fn deployment_ready(obj: Option<&Deployment>) -> bool {
    let Some(d) = obj else { return false };
    let (Some(spec), Some(status)) = (&d.spec, &d.status) else {
        return false;
    };
    let want = spec.replicas.unwrap_or(1);
    let available = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Available" && c.status == "True");
    available
        && status.observed_generation >= d.metadata.generation
        && status.updated_replicas.unwrap_or(0) >= want
        && status.available_replicas.unwrap_or(0) >= want
}

pub(super) fn statefulset_ready(obj: Option<&StatefulSet>) -> bool {
    let Some(s) = obj else { return false };
    let (Some(spec), Some(status)) = (&s.spec, &s.status) else {
        return false;
    };
    let want = spec.replicas.unwrap_or(1);
    status.observed_generation >= s.metadata.generation
        && status.ready_replicas.unwrap_or(0) >= want
        && status.updated_replicas.unwrap_or(0) >= want
}

pub(super) fn daemonset_ready(obj: Option<&DaemonSet>) -> bool {
    let Some(d) = obj else { return false };
    let Some(status) = &d.status else {
        return false;
    };
    status.observed_generation >= d.metadata.generation
        && status.updated_number_scheduled.unwrap_or(0) >= status.desired_number_scheduled
        && status.number_ready >= status.desired_number_scheduled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::wait::last_seen;

    #[test]
    fn a_webhook_that_asks_for_its_ca_is_ready_only_once_every_webhook_has_it() {
        let config = |annotated: bool, bundles: &[&str]| {
            let hooks: Vec<serde_json::Value> = bundles
                .iter()
                .enumerate()
                .map(|(i, b)| serde_json::json!({"name": format!("h{i}.example.com"), "clientConfig": {"caBundle": b}}))
                .collect();
            let annotations = if annotated {
                serde_json::json!({"cert-manager.io/inject-ca-from": "kserve/serving-cert"})
            } else {
                serde_json::json!({})
            };
            serde_json::json!({"metadata": {"name": "w", "annotations": annotations}, "webhooks": hooks})
        };
        assert!(!webhook_ca_injected(&config(true, &["", ""])));
        assert!(!webhook_ca_injected(&config(true, &["Q0E=", ""])));
        assert!(webhook_ca_injected(&config(true, &["Q0E=", "Q0E="])));
        // A webhook that asks nobody for a CA (a chart that sets caBundle itself) only needs to exist.
        assert!(webhook_ca_injected(&config(false, &[""])));
        assert_eq!(
            last_seen(&config(true, &["Q0E=", ""])),
            "caBundle empty on h1.example.com"
        );
    }
}
