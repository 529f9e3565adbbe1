//! Waits built on watches: an object ready by its kind's rule within a deadline, and on timeout
//! the object, the condition, the time waited and the last status seen.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Resource;
use kube::api::Api;
use kube::runtime::wait::{Condition, await_condition, conditions};
use serde::Serialize;

use super::object::as_value;
use super::ready::{
    crd_established, daemonset_ready, deployment_ready, statefulset_ready, webhook_ca_injected,
};
use super::{Kube, KubeError, ObjectRef};

impl Kube {
    /// Waits until the object is ready by its kind's rule: Deployment Available, StatefulSet and
    /// DaemonSet rolled out, Job complete, CRD Established, a webhook configuration that asks
    /// cert-manager for its CA with the CA injected; other kinds only need to exist.
    pub async fn wait_ready(&self, r: &ObjectRef, deadline: Duration) -> Result<(), KubeError> {
        let ns = r.namespace.clone().unwrap_or_default();
        let c = self.client.clone();
        match r.kind.as_str() {
            "CustomResourceDefinition" => {
                self.watch(
                    Api::<CustomResourceDefinition>::all(c),
                    r,
                    "Established",
                    |o: Option<&CustomResourceDefinition>| o.is_some_and(crd_established),
                    deadline,
                )
                .await
            }
            "Deployment" => {
                self.watch(
                    Api::<Deployment>::namespaced(c, &ns),
                    r,
                    "Available with every replica updated",
                    deployment_ready,
                    deadline,
                )
                .await
            }
            "StatefulSet" => {
                self.watch(
                    Api::<StatefulSet>::namespaced(c, &ns),
                    r,
                    "rolled out",
                    statefulset_ready,
                    deadline,
                )
                .await
            }
            "DaemonSet" => {
                self.watch(
                    Api::<DaemonSet>::namespaced(c, &ns),
                    r,
                    "rolled out on every node",
                    daemonset_ready,
                    deadline,
                )
                .await
            }
            "Job" => {
                self.watch(
                    Api::<Job>::namespaced(c, &ns),
                    r,
                    "Complete",
                    conditions::is_job_completed(),
                    deadline,
                )
                .await
            }
            "ValidatingWebhookConfiguration" => {
                self.watch(
                    Api::<ValidatingWebhookConfiguration>::all(c),
                    r,
                    CA_INJECTED,
                    |o: Option<&ValidatingWebhookConfiguration>| {
                        o.is_some_and(|w| webhook_ca_injected(&as_value(w)))
                    },
                    deadline,
                )
                .await
            }
            "MutatingWebhookConfiguration" => {
                self.watch(
                    Api::<MutatingWebhookConfiguration>::all(c),
                    r,
                    CA_INJECTED,
                    |o: Option<&MutatingWebhookConfiguration>| {
                        o.is_some_and(|w| webhook_ca_injected(&as_value(w)))
                    },
                    deadline,
                )
                .await
            }
            _ => Ok(()),
        }
    }

    async fn watch<K>(
        &self,
        api: Api<K>,
        r: &ObjectRef,
        condition: &str,
        cond: impl Condition<K>,
        deadline: Duration,
    ) -> Result<(), KubeError>
    where
        K: Resource
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Serialize
            + Send
            + Sync
            + 'static,
    {
        let waiting = await_condition(api.clone(), &r.name, cond);
        match tokio::time::timeout(deadline, waiting).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(KubeError::Api {
                action: "watching",
                object: r.to_string(),
                source: kube::Error::Service(Box::new(e)),
            }),
            Err(_) => {
                let last = match api.get_opt(&r.name).await {
                    Ok(Some(obj)) => last_seen(&as_value(&obj)),
                    Ok(None) => "absent".into(),
                    Err(e) => format!("unreadable: {e}"),
                };
                Err(KubeError::Timeout {
                    object: r.to_string(),
                    condition: condition.to_string(),
                    waited: deadline,
                    last,
                })
            }
        }
    }
}

const CA_INJECTED: &str = "caBundle injected into every webhook (cert-manager's CA injector)";

/// What a timed-out wait last saw: the webhooks still without a CA, or the status in one line.
pub(super) fn last_seen(obj: &serde_json::Value) -> String {
    if let Some(hooks) = obj.get("webhooks").and_then(|w| w.as_array()) {
        let empty: Vec<&str> = hooks
            .iter()
            .filter(|h| {
                h.pointer("/clientConfig/caBundle")
                    .and_then(|b| b.as_str())
                    .is_none_or(str::is_empty)
            })
            .filter_map(|h| h.get("name").and_then(|n| n.as_str()))
            .collect();
        return format!("caBundle empty on {}", empty.join(", "));
    }
    obj.get("status")
        .map(summarize_status)
        .unwrap_or_else(|| "no status".into())
}

/// A status in one line: its conditions that are not True (type=status reason: message), or
/// the whole status when it has no conditions.
fn summarize_status(status: &serde_json::Value) -> String {
    let Some(conditions) = status.get("conditions").and_then(|c| c.as_array()) else {
        return status.to_string();
    };
    let s = |c: &serde_json::Value, k: &str| {
        c.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string()
    };
    let failing: Vec<String> = conditions
        .iter()
        .filter(|c| s(c, "status") != "True")
        .map(|c| {
            format!(
                "{}={} {}: {}",
                s(c, "type"),
                s(c, "status"),
                s(c, "reason"),
                s(c, "message")
            )
        })
        .collect();
    if failing.is_empty() {
        status.to_string()
    } else {
        failing.join("; ")
    }
}
