//! KubeRay: the operator chart; healthy when the operator is Available, the Ray CRDs are
//! Established and, where pods run, a one-worker probe RayCluster becomes ready (and is removed).

use std::time::Duration;

use kube::api::DynamicObject;
use kube::runtime::wait::await_condition;

use super::{BuiltIn, helm};
use crate::components::Component;
use crate::components::health::{
    PROBE, crds_established, deployments_available, dynamic_api, fullname, simulated,
};
use crate::kube::ready::condition_true;
use crate::kube::{Conflicts, Kube, ObjectRef, parse_manifests};
use crate::profile::{ComponentSpec, Provider};
use crate::step::StepError;

/// The Ray image the probe RayCluster runs: the one KubeRay 1.7.0's own sample pins.
const RAY_IMAGE: &str = "rayproject/ray:2.52.0";

pub const BUILT_IN: BuiltIn = BuiltIn {
    name: "kuberay",
    defaults,
    manifests: &[],
    verify: |kube, c, pods_run| Box::pin(verify(kube, c, pods_run)),
    before_install: None,
};

fn defaults(_provider: Provider) -> ComponentSpec {
    ComponentSpec {
        source: helm(
            "https://ray-project.github.io/kuberay-helm/",
            "kuberay-operator",
            "1.7.1",
        ),
        namespace: Some("kuberay".into()),
        release: Some("kuberay-operator".into()),
        ..Default::default()
    }
}

async fn verify(kube: &Kube, c: &Component, pods_run: bool) -> Result<String, StepError> {
    let operator = fullname(&c.release, "kuberay-operator", 63);
    deployments_available(kube, c, &[&operator]).await?;
    crds_established(kube, c, &["rayclusters.ray.io", "rayjobs.ray.io"]).await?;
    if !pods_run {
        return Ok(simulated(
            &format!("Deployment {operator} Available, Ray CRDs Established"),
            "the one-worker RayCluster probe",
        ));
    }
    ray_cluster_probe(kube, c).await?;
    Ok(format!(
        "Deployment {operator} Available; a one-worker RayCluster became ready"
    ))
}

/// The probe RayCluster: one head and one worker, small enough for a workstation.
pub fn ray_cluster_manifest(namespace: &str) -> String {
    let container = |name: &str| {
        serde_json::json!({
            "name": name,
            "image": RAY_IMAGE,
            "resources": {
                "requests": {"cpu": "250m", "memory": "512Mi"},
                "limits": {"cpu": "1", "memory": "1Gi"},
            },
        })
    };
    serde_json::json!({
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {
            "name": PROBE,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "kgf-up"},
        },
        "spec": {
            "headGroupSpec": {
                "rayStartParams": {},
                "template": {"spec": {"containers": [container("ray-head")]}},
            },
            "workerGroupSpecs": [{
                "groupName": "probe",
                "replicas": 1,
                "minReplicas": 1,
                "maxReplicas": 1,
                "rayStartParams": {},
                "template": {"spec": {"containers": [container("ray-worker")]}},
            }],
        },
    })
    .to_string()
}

/// Whether a RayCluster's status says ready: `state: ready`, or both RayClusterProvisioned and
/// HeadPodReady conditions True (KubeRay 1.2+ sets both).
pub fn ray_cluster_ready(status: Option<&serde_json::Value>) -> bool {
    let Some(status) = status else { return false };
    if status.get("state").and_then(|s| s.as_str()) == Some("ready") {
        return true;
    }
    condition_true(status, "RayClusterProvisioned") && condition_true(status, "HeadPodReady")
}

/// Applies the probe RayCluster, waits for it to be ready within the component's timeout, and
/// removes it again whatever happened.
async fn ray_cluster_probe(kube: &Kube, c: &Component) -> Result<(), StepError> {
    let ns = c.namespace.as_str();
    let objects = parse_manifests(&ray_cluster_manifest(ns), "the probe RayCluster")
        .expect("the probe manifest parses");
    kube.apply(&objects, ns, c.timeout, Conflicts::Refuse)
        .await
        .map_err(|e| StepError::context(format!("{}: creating the probe RayCluster", c.name), e))?;
    let api = dynamic_api(kube, "ray.io", "v1", "RayCluster", "rayclusters", Some(ns));
    let ready = await_condition(api.clone(), PROBE, |o: Option<&DynamicObject>| {
        ray_cluster_ready(o.and_then(|o| o.data.get("status")))
    });
    let waited = tokio::time::timeout(c.timeout, ready).await;
    let last = match api.get_opt(PROBE).await {
        Ok(Some(o)) => o
            .data
            .get("status")
            .map(|s| s.to_string())
            .unwrap_or_else(|| "no status".into()),
        Ok(None) => "absent".into(),
        Err(e) => format!("unreadable: {e}"),
    };
    let diagnosis = match &waited {
        Ok(Ok(_)) => None,
        _ => Some(kube.diagnose(ns).await),
    };
    let probe = ObjectRef {
        api_version: "ray.io/v1".into(),
        kind: "RayCluster".into(),
        namespace: Some(ns.to_string()),
        name: PROBE.into(),
    };
    let removed = kube.delete(&probe, Duration::from_secs(120)).await;
    match waited {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(StepError::new(format!(
                "{}: watching the probe RayCluster: {e}",
                c.name
            )));
        }
        Err(_) => {
            let mut err = StepError::new(format!(
                "{}: the probe RayCluster {ns}/{PROBE} was not ready after {}s; last status: {last}",
                c.name,
                c.timeout.as_secs()
            ))
            .with_fix(format!(
                "check that the nodes can pull {RAY_IMAGE} and have 0.5 CPU and 1Gi free; see \
                 `kubectl -n {ns} logs deploy/{}`",
                fullname(&c.release, "kuberay-operator", 63)
            ));
            if let Some(d) = diagnosis {
                err = err.with_diagnosis(d);
            }
            return Err(err);
        }
    }
    removed.map_err(|e| StepError::context(format!("{}: removing the probe RayCluster", c.name), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_ray_cluster_is_ready_by_state_or_by_both_conditions() {
        assert!(ray_cluster_ready(Some(&json!({"state": "ready"}))));
        assert!(!ray_cluster_ready(Some(&json!({"state": "suspended"}))));
        let conditions = |head: &str| {
            json!({"conditions": [
                {"type": "RayClusterProvisioned", "status": "True"},
                {"type": "HeadPodReady", "status": head},
            ]})
        };
        assert!(ray_cluster_ready(Some(&conditions("True"))));
        assert!(!ray_cluster_ready(Some(&conditions("False"))));
        assert!(!ray_cluster_ready(None));
    }

    #[test]
    fn the_probe_ray_cluster_has_one_worker_and_parses() {
        let objects = parse_manifests(&ray_cluster_manifest("ray"), "probe").unwrap();
        assert_eq!(objects.len(), 1);
        let spec = &objects[0].data["spec"];
        assert_eq!(spec["workerGroupSpecs"][0]["replicas"], 1);
        assert_eq!(objects[0].metadata.namespace.as_deref(), Some("ray"));
        assert_eq!(
            spec["headGroupSpec"]["template"]["spec"]["containers"][0]["image"],
            RAY_IMAGE
        );
    }
}
