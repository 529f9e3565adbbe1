//! Per-component health for `kgf-up verify`: each built-in component's own definition of working
//! (its Deployments Available, its CRDs Established, and on clusters whose pods run, a probe that
//! only a serving component passes), answered as one "healthy because…" line or a [`StepError`]
//! with the fix and a diagnosis.
//!
//! Reads only, except two probes on real clusters: a server-side dry-run Certificate (nothing is
//! stored) and a one-worker RayCluster that is removed again; both go through [`Kube`]. This module
//! must not install or repair anything.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::wait::await_condition;

use super::Component;
use crate::kube::{Conflicts, FIELD_MANAGER, Kube, ObjectRef, parse_manifests};
use crate::step::StepError;

/// The probe objects' name, so a user can tell them apart and a failed run's leftovers are obvious.
const PROBE: &str = "kgf-up-verify";
/// The Ray image the probe RayCluster runs: the one KubeRay 1.7.0's own sample pins.
const RAY_IMAGE: &str = "rayproject/ray:2.52.0";

/// Checks that `component` works; `pods_run` is false on the `sim` provider, whose pods never run a
/// container, so probes that need a serving pod are skipped there with a "simulated" note.
pub async fn verify(
    kube: &Kube,
    component: &Component,
    pods_run: bool,
) -> Result<String, StepError> {
    let c = component;
    let ns = c.namespace.as_str();
    match c.name.as_str() {
        "cert-manager" => {
            let base = fullname(&c.release, "cert-manager", 63);
            let names = [
                base.clone(),
                format!("{base}-cainjector"),
                format!("{base}-webhook"),
            ];
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            deployments_available(kube, c, &names).await?;
            if !pods_run {
                return Ok(simulated(
                    "Deployments cert-manager, cainjector and webhook Available",
                    "the webhook probe (a dry-run Certificate)",
                ));
            }
            dry_run_certificate(kube, c).await?;
            Ok(format!(
                "Deployments {} Available; the webhook accepted a dry-run Certificate",
                names.join(", ")
            ))
        }
        "kubeflow-pipelines" => {
            let names = [
                "ml-pipeline",
                "ml-pipeline-ui",
                "metadata-grpc-deployment",
                "workflow-controller",
            ];
            deployments_available(kube, c, &names).await?;
            if !pods_run {
                return Ok(simulated(
                    "Deployments ml-pipeline, ml-pipeline-ui, metadata and workflow controller \
                     Available",
                    "the API's /apis/v2beta1/healthz",
                ));
            }
            let version = kfp_healthz(kube, c).await?;
            Ok(format!(
                "Deployments Available; the pipelines API answers /apis/v2beta1/healthz ({version})"
            ))
        }
        "kuberay" => {
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
        "kserve-crd" => {
            let crds = [
                "inferenceservices.serving.kserve.io",
                "servingruntimes.serving.kserve.io",
                "clusterservingruntimes.serving.kserve.io",
            ];
            crds_established(kube, c, &crds).await?;
            Ok(format!("CRDs {} Established", crds.join(", ")))
        }
        "kserve" => {
            deployments_available(kube, c, &["kserve-controller-manager"]).await?;
            let service = "kserve-webhook-server-service";
            let ready = ready_endpoints(kube, ns, service).await?;
            if ready == 0 {
                return Err(StepError::new(format!(
                    "{}: Service {ns}/{service} has no ready endpoints, so the API server cannot \
                     call KServe's webhook",
                    c.name
                ))
                .with_fix(format!(
                    "check the controller's pods: `kubectl -n {ns} get pods -l control-plane=kserve-controller-manager`"
                ))
                .with_diagnosis(kube.diagnose(ns).await));
            }
            let checked = format!(
                "Deployment kserve-controller-manager Available; webhook Service {service} has {ready} ready endpoint(s)"
            );
            if !pods_run {
                return Ok(simulated(
                    &checked,
                    "its Certificate (cert-manager issues none)",
                ));
            }
            kserve_certificate_ready(kube, c).await?;
            Ok(format!("{checked}; Certificate serving-cert Ready"))
        }
        "kserve-runtimes" => {
            let api = dynamic_api(
                kube,
                "serving.kserve.io",
                "v1alpha1",
                "ClusterServingRuntime",
                "clusterservingruntimes",
                None,
            );
            let runtimes = api
                .list(&ListParams::default())
                .await
                .map_err(|e| read_error(c, "ClusterServingRuntimes", e))?;
            if runtimes.items.is_empty() {
                return Err(
                    StepError::new(format!("{}: no ClusterServingRuntime exists", c.name))
                        .with_fix("run `kgf-up up` again to reinstall the runtime configs"),
                );
            }
            Ok(format!("{} ClusterServingRuntimes", runtimes.items.len()))
        }
        "minio" => {
            let name = fullname(&c.release, "minio", 63);
            deployments_available(kube, c, &[&name]).await?;
            Ok(format!("Deployment {name} Available"))
        }
        "prometheus" => {
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
        "gpu-operator" => {
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
        _ => {
            let n = all_deployments_available(kube, c).await?;
            Ok(format!("all {n} Deployments in {ns} Available"))
        }
    }
}

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

fn simulated(checked: &str, skipped: &str) -> String {
    format!("{checked}; {skipped} skipped: simulated, pods do not run on this cluster")
}

fn read_error(c: &Component, what: &str, e: kube::Error) -> StepError {
    StepError::new(format!("{}: reading {what}: {e}", c.name))
        .with_fix("check that the cluster is reachable (`kgf-up status`)")
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

async fn deployments_available(
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
async fn all_deployments_available(kube: &Kube, c: &Component) -> Result<usize, StepError> {
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

async fn crds_established(kube: &Kube, c: &Component, names: &[&str]) -> Result<(), StepError> {
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

fn dynamic_api(
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
async fn ready_endpoints(kube: &Kube, namespace: &str, service: &str) -> Result<usize, StepError> {
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

/// Endpoints whose `ready` condition is true (an absent condition means ready, as the API defines).
pub fn count_ready(slices: &[EndpointSlice]) -> usize {
    slices
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .count()
}

/// A server-side dry-run create of a Certificate: cert-manager's webhook must validate it, and
/// nothing is stored.
async fn dry_run_certificate(kube: &Kube, c: &Component) -> Result<(), StepError> {
    let api = dynamic_api(
        kube,
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
        Some(&c.namespace),
    );
    let cert: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": PROBE, "namespace": c.namespace},
        "spec": {
            "secretName": PROBE,
            "dnsNames": [format!("{PROBE}.{}.svc", c.namespace)],
            "issuerRef": {"name": PROBE, "kind": "Issuer"},
        },
    }))
    .expect("a Certificate object");
    let params = PostParams {
        dry_run: true,
        field_manager: Some(FIELD_MANAGER.into()),
    };
    api.create(&params, &cert).await.map_err(|e| {
        StepError::new(format!(
            "{}: its webhook refused a dry-run Certificate: {e}",
            c.name
        ))
        .with_fix(format!(
            "the webhook may still be starting (its \"connection refused\" heals in a minute): run \
             `kgf-up verify` again; otherwise see `kubectl -n {} logs deploy/{}-webhook`",
            c.namespace,
            fullname(&c.release, "cert-manager", 63)
        ))
    })?;
    Ok(())
}

/// The service-proxy path of the pipelines API's health endpoint.
pub fn kfp_healthz_path(namespace: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/services/ml-pipeline:8888/proxy/apis/v2beta1/healthz")
}

/// `GET /apis/v2beta1/healthz` through the API server's service proxy; returns the tag it reports.
async fn kfp_healthz(kube: &Kube, c: &Component) -> Result<String, StepError> {
    let path = kfp_healthz_path(&c.namespace);
    let request = http::Request::get(&path)
        .body(Vec::new())
        .expect("a valid request");
    let body = kube.proxy_client().request_text(request).await.map_err(|e| {
        StepError::new(format!(
            "{}: the pipelines API did not answer {path}: {e}",
            c.name
        ))
        .with_fix(format!(
            "upstream expects a few minutes of restarts while MySQL and the metadata service start; \
             run `kgf-up verify` again, or see `kubectl -n {} logs deploy/ml-pipeline`",
            c.namespace
        ))
    })?;
    Ok(healthz_tag(&body))
}

/// The release tag in a healthz answer (`{"commit_sha": …, "tag_name": "2.17.0", …}`).
pub fn healthz_tag(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("tag_name").and_then(|t| t.as_str()).map(String::from))
        .map(|t| format!("tag {t}"))
        .unwrap_or_else(|| "no tag reported".into())
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

/// Whether `status.conditions` holds a condition of `kind` with status "True".
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

/// The webhook's serving certificate (cert-manager `Certificate serving-cert`) must be Ready, or the
/// API server cannot verify the webhook's TLS.
async fn kserve_certificate_ready(kube: &Kube, c: &Component) -> Result<(), StepError> {
    let api = dynamic_api(
        kube,
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
        Some(&c.namespace),
    );
    let cert = api
        .get_opt("serving-cert")
        .await
        .map_err(|e| read_error(c, "Certificate serving-cert", e))?;
    let ready = cert
        .as_ref()
        .and_then(|o| o.data.get("status"))
        .is_some_and(|s| condition_true(s, "Ready"));
    if ready {
        return Ok(());
    }
    Err(StepError::new(format!(
        "{}: Certificate {}/serving-cert is {}, so the webhook has no TLS certificate",
        c.name,
        c.namespace,
        if cert.is_some() { "not Ready" } else { "absent" }
    ))
    .with_fix(format!(
        "check cert-manager (`kgf-up verify` on it) and `kubectl -n {} describe certificate serving-cert`",
        c.namespace
    )))
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
    use serde_json::json;

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
    fn the_kfp_health_path_goes_through_the_service_proxy_of_its_namespace() {
        assert_eq!(
            kfp_healthz_path("kubeflow"),
            "/api/v1/namespaces/kubeflow/services/ml-pipeline:8888/proxy/apis/v2beta1/healthz"
        );
        assert_eq!(
            healthz_tag(r#"{"commit_sha":"abc","tag_name":"2.17.0","multi_user":false}"#),
            "tag 2.17.0"
        );
        assert_eq!(healthz_tag("ok"), "no tag reported");
    }

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

    #[test]
    fn simulated_notes_say_what_was_skipped() {
        let note = simulated("Deployment x Available", "the probe");
        assert!(note.contains("the probe skipped: simulated"), "{note}");
    }
}
