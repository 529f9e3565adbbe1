//! Component health for `kgf-up verify`: the checks each built-in component's own definition of
//! working is made of (Deployments Available, CRDs Established, ready endpoints), judged by the
//! readiness rules of [`crate::kube::ready`]; a custom component is healthy when every Deployment
//! in its namespace is Available. The answer is one "healthy because…" line or a [`StepError`]
//! with the fix and a diagnosis.
//!
//! Reads only, except two probes on real clusters (in `builtin`): a server-side dry-run
//! Certificate (nothing is stored) and a one-worker RayCluster that is removed again; both go
//! through [`Kube`]. Health checks must not install or repair anything.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};

use super::component::Component;
use crate::kube::Kube;
use crate::kube::ready::{count_ready, crd_established, deployment_unavailable};
use crate::step::StepError;

/// The probe objects' name, so a user can tell them apart and a failed run's leftovers are obvious.
pub(super) const PROBE: &str = "kgf-up-verify";

/// The name helm charts give their main objects: the release name when it already contains the
/// chart's name, otherwise `release-chart`, cut to `max` characters (63 for most charts;
/// kube-prometheus-stack cuts to 26 and appends suffixes).
pub fn fullname(release: &str, chart: &str, max: usize) -> String {
    let full = if release.contains(chart) {
        release.to_string()
    } else {
        format!("{release}-{chart}")
    };
    let cut: String = full.chars().take(max).collect();
    cut.trim_end_matches('-').to_string()
}

pub(super) fn simulated(checked: &str, skipped: &str) -> String {
    format!("{checked}; {skipped} skipped: simulated, pods do not run on this cluster")
}

pub(super) fn read_error(c: &Component, what: &str, e: kube::Error) -> StepError {
    StepError::new(format!("{}: reading {what}: {e}", c.name))
        .with_fix("check that the cluster is reachable (`kgf-up status`)")
}

pub(super) async fn deployments_available(
    kube: &Kube,
    c: &Component,
    names: &[&str],
) -> Result<(), StepError> {
    let api: Api<Deployment> = Api::namespaced(kube.client(), &c.namespace);
    let mut problems = Vec::new();
    for name in names {
        match api.get_opt(name).await {
            Ok(Some(d)) => {
                if let Some(why) = deployment_unavailable(&d) {
                    problems.push(format!("Deployment {}/{name}: {why}", c.namespace));
                }
            }
            Ok(None) => problems.push(format!("Deployment {}/{name} does not exist", c.namespace)),
            Err(e) => return Err(read_error(c, &format!("Deployment {name}"), e)),
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(StepError::new(format!(
        "{} is not healthy: {}",
        c.name,
        problems.join("; ")
    ))
    .with_fix(format!(
        "run `kgf-up up` to reinstall or finish it; if it still fails, see the pods below \
                 (`kubectl -n {} describe pods`)",
        c.namespace
    ))
    .with_diagnosis(kube.diagnose(&c.namespace).await))
}

/// A custom component has no named workloads: every Deployment in its namespace must be Available.
pub(super) async fn all_deployments_available(
    kube: &Kube,
    c: &Component,
) -> Result<usize, StepError> {
    let api: Api<Deployment> = Api::namespaced(kube.client(), &c.namespace);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| read_error(c, "Deployments", e))?;
    let names: Vec<String> = list
        .items
        .iter()
        .filter_map(|d| d.metadata.name.clone())
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    deployments_available(kube, c, &names).await?;
    Ok(names.len())
}

pub(super) async fn crds_established(
    kube: &Kube,
    c: &Component,
    names: &[&str],
) -> Result<(), StepError> {
    let api: Api<CustomResourceDefinition> = Api::all(kube.client());
    let mut problems = Vec::new();
    for name in names {
        match api.get_opt(name).await {
            Ok(Some(crd)) if crd_established(&crd) => {}
            Ok(Some(_)) => problems.push(format!("CRD {name} is not Established")),
            Ok(None) => problems.push(format!("CRD {name} does not exist")),
            Err(e) => return Err(read_error(c, &format!("CRD {name}"), e)),
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(StepError::new(format!(
        "{} is not healthy: {}",
        c.name,
        problems.join("; ")
    ))
    .with_fix(
        "run `kgf-up up` again: it applies the component's CRDs; `kubectl get crd NAME -o yaml` \
             shows why one is not Established",
    ))
}

pub(super) fn dynamic_api(
    kube: &Kube,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    match namespace {
        Some(ns) => Api::namespaced_with(kube.client(), ns, &ar),
        None => Api::all_with(kube.client(), &ar),
    }
}

/// Ready addresses behind a Service, counted over its EndpointSlices.
pub(super) async fn ready_endpoints(
    kube: &Kube,
    namespace: &str,
    service: &str,
) -> Result<usize, StepError> {
    let services: Api<Service> = Api::namespaced(kube.client(), namespace);
    if services
        .get_opt(service)
        .await
        .map_err(|e| StepError::new(format!("reading Service {namespace}/{service}: {e}")))?
        .is_none()
    {
        return Err(
            StepError::new(format!("Service {namespace}/{service} does not exist"))
                .with_fix("run `kgf-up up` again to reinstall KServe"),
        );
    }
    let slices: Api<EndpointSlice> = Api::namespaced(kube.client(), namespace);
    let list = slices
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .map_err(|e| {
            StepError::new(format!(
                "reading the endpoints of {namespace}/{service}: {e}"
            ))
        })?;
    Ok(count_ready(&list.items))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fullname_follows_helms_rule_and_cuts_to_the_limit() {
        assert_eq!(fullname("cert-manager", "cert-manager", 63), "cert-manager");
        assert_eq!(fullname("cm", "cert-manager", 63), "cm-cert-manager");
        assert_eq!(
            fullname("my-kuberay-operator", "kuberay-operator", 63),
            "my-kuberay-operator"
        );
        assert_eq!(
            fullname("kube-prometheus-stack", "kube-prometheus-stack", 26),
            "kube-prometheus-stack"
        );
        assert_eq!(
            fullname("monitoring", "kube-prometheus-stack", 26),
            "monitoring-kube-prometheus"
        );
        // Cut at 26 the name would end in '-': the dash goes, as helm's trimSuffix does.
        assert_eq!(
            fullname("abcdefghijklmnopqrstuvwxy", "zz", 26),
            "abcdefghijklmnopqrstuvwxy"
        );
    }

    #[test]
    fn simulated_notes_say_what_was_skipped() {
        let note = simulated("Deployment x Available", "the probe");
        assert!(note.contains("the probe skipped: simulated"), "{note}");
    }
}
