//! Readiness rules, the one set kgf-up has: when an object of each kind counts as ready. Waits
//! ([`super::wait`]), health checks (`components::health`) and the cluster providers all judge by
//! these; none reads a condition on its own.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

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
    obj.is_some_and(|d| deployment_unavailable(d).is_none())
}

/// Why a Deployment is not Available, or `None` when it is: the Available condition True, every
/// wanted replica updated and available, and the newest spec observed.
pub fn deployment_unavailable(d: &Deployment) -> Option<String> {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = &d.status else {
        return Some("no status yet".into());
    };
    if status.observed_generation < d.metadata.generation {
        return Some("its newest spec is not observed yet".into());
    }
    let available = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Available");
    match available {
        Some(c) if c.status == "True" => {}
        Some(c) => {
            return Some(format!(
                "Available={} {}",
                c.status,
                c.message.clone().unwrap_or_default()
            ));
        }
        None => return Some("no Available condition".into()),
    }
    let (updated, ready) = (
        status.updated_replicas.unwrap_or(0),
        status.available_replicas.unwrap_or(0),
    );
    if updated < want || ready < want {
        return Some(format!(
            "{ready}/{want} replicas available, {updated}/{want} updated"
        ));
    }
    None
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

/// Whether a CRD's Established condition is True.
pub fn crd_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

/// Why a Node is not Ready (`Ready=False (message)`, or that it has no Ready condition yet), or
/// `None` when it is.
pub fn node_not_ready(node: &Node) -> Option<String> {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    match ready {
        Some(c) if c.status == "True" => None,
        Some(c) => Some(format!(
            "Ready={} ({})",
            c.status,
            c.message.as_deref().unwrap_or("no message")
        )),
        None => Some("has no Ready condition yet".into()),
    }
}

/// Endpoints whose `ready` condition is true (an absent condition means ready, as the API defines).
pub fn count_ready(slices: &[EndpointSlice]) -> usize {
    slices
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .count()
}

/// Whether `status.conditions` holds a condition of `kind` with status "True" (for custom
/// resources, read as JSON).
pub fn condition_true(status: &serde_json::Value, kind: &str) -> bool {
    status
        .get("conditions")
        .and_then(|c| c.as_array())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(|t| t.as_str()) == Some(kind)
                    && c.get("status").and_then(|s| s.as_str()) == Some("True")
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::wait::last_seen;
    use serde_json::json;

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

    fn deployment(v: serde_json::Value) -> Deployment {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_deployment_is_available_only_with_every_replica_and_the_newest_spec() {
        let ok = json!({
            "metadata": {"name": "d", "generation": 2},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"observedGeneration": 2, "updatedReplicas": 2, "availableReplicas": 2,
                       "conditions": [{"type": "Available", "status": "True"}]},
        });
        assert_eq!(deployment_unavailable(&deployment(ok.clone())), None);

        let mut old = ok.clone();
        old["status"]["observedGeneration"] = json!(1);
        assert!(
            deployment_unavailable(&deployment(old))
                .unwrap()
                .contains("newest spec")
        );

        let mut short = ok.clone();
        short["status"]["availableReplicas"] = json!(1);
        assert_eq!(
            deployment_unavailable(&deployment(short)).unwrap(),
            "1/2 replicas available, 2/2 updated"
        );

        let mut down = ok.clone();
        down["status"]["conditions"] = json!([{"type": "Available", "status": "False",
            "message": "Deployment does not have minimum availability."}]);
        assert!(
            deployment_unavailable(&deployment(down))
                .unwrap()
                .starts_with("Available=False Deployment does not have")
        );

        let mut fresh = ok;
        fresh.as_object_mut().unwrap().remove("status");
        assert_eq!(
            deployment_unavailable(&deployment(fresh)).unwrap(),
            "no status yet"
        );
    }

    #[test]
    fn a_crd_is_established_only_by_its_condition() {
        let crd = |conditions: serde_json::Value| -> CustomResourceDefinition {
            serde_json::from_value(json!({
                "metadata": {"name": "xs.t.io"},
                "spec": {"group": "t.io", "scope": "Namespaced",
                         "names": {"plural": "xs", "kind": "X"}, "versions": []},
                "status": {"conditions": conditions},
            }))
            .unwrap()
        };
        assert!(crd_established(&crd(json!([
            {"type": "NamesAccepted", "status": "True"},
            {"type": "Established", "status": "True"}
        ]))));
        assert!(!crd_established(&crd(
            json!([{"type": "Established", "status": "False"}])
        )));
        assert!(!crd_established(&crd(
            json!([{"type": "NamesAccepted", "status": "True"}])
        )));
    }

    #[test]
    fn ready_endpoints_count_the_ready_and_the_unstated() {
        let slice = |endpoints: serde_json::Value| -> EndpointSlice {
            serde_json::from_value(json!({
                "metadata": {"name": "s"}, "addressType": "IPv4", "endpoints": endpoints,
            }))
            .unwrap()
        };
        let slices = [
            slice(json!([
                {"addresses": ["198.18.0.1"], "conditions": {"ready": true}},
                {"addresses": ["198.18.0.2"], "conditions": {"ready": false}},
            ])),
            slice(json!([{"addresses": ["198.18.0.3"]}])),
        ];
        assert_eq!(count_ready(&slices), 2);
        assert_eq!(count_ready(&[slice(json!([]))]), 0);
    }

    #[test]
    fn a_condition_counts_only_with_status_true() {
        let status = json!({"conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "Issuing", "status": "True"},
        ]});
        assert!(!condition_true(&status, "Ready"));
        assert!(condition_true(&status, "Issuing"));
        assert!(!condition_true(&json!({}), "Ready"));
    }

    #[test]
    fn a_node_is_ready_only_by_its_ready_condition() {
        let node = |conditions: serde_json::Value| -> Node {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "n"},
                "status": {"conditions": conditions}}))
            .unwrap()
        };
        assert_eq!(
            node_not_ready(&node(
                serde_json::json!([{"type": "Ready", "status": "True"}])
            )),
            None
        );
        assert_eq!(
            node_not_ready(&node(serde_json::json!([{"type": "Ready", "status": "False", "message": "kubelet stopped"}]))).unwrap(),
            "Ready=False (kubelet stopped)"
        );
        assert_eq!(
            node_not_ready(&node(
                serde_json::json!([{"type": "MemoryPressure", "status": "False"}])
            ))
            .unwrap(),
            "has no Ready condition yet"
        );
    }
}
