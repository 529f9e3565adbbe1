//! The layers `verify` proves after the GPU checks, in order, each with its own line: the object
//! store round trip (with the pipeline's own credentials), the pipeline run's artifacts in the
//! store, the InferenceService ready, a known chimeric and a known normal read classified through
//! the API server's service proxy, and the model's metrics in Prometheus.
//!
//! A layer that needs a running pod says "simulated" on `sim`; one whose subject is not there yet
//! (no run, no deployed model) says "skipped" and why. After a failed layer the rest are not
//! checked. This module only reads the cluster and the store (its round trip object is removed).

use std::time::Duration;

use serde_json::{Value, json};

use crate::components::{self, Component};
use crate::kube::Kube;
use crate::objectstore::s3::S3;
use crate::objectstore::{self, ACCESS_KEY, ARTIFACT_SECRET, Keys, SECRET_KEY, Store, Wiring};
use crate::profile::Profile;
use crate::secret::Secret;
use crate::step::StepError;

/// The InferenceService the pipeline's deploy step makes, and the model name it serves.
pub const MODEL: &str = "gene-fusion";
/// The file beside the served model with one chimeric and one normal read of the test split.
pub const PROBE_READS: &str = "probe-reads.json";

/// How a layer came out.
#[derive(Debug)]
pub enum Outcome {
    Passed(String),
    Simulated(String),
    Skipped(String),
    Failed(StepError),
    /// An earlier layer failed.
    NotChecked,
}

impl Outcome {
    pub fn failed(&self) -> bool {
        matches!(self, Outcome::Failed(_))
    }

    /// `✓ name  why`, `~ name  simulated: why`, `- name  skipped: why`, `✗ name  error`.
    pub fn line(&self, name: &str) -> String {
        let name = format!("{name:<36}");
        match self {
            Outcome::Passed(why) => format!("  ✓ {name} {why}"),
            Outcome::Simulated(why) => format!("  ~ {name} simulated: {why}"),
            Outcome::Skipped(why) => format!("  - {name} skipped: {why}"),
            Outcome::Failed(e) => match &e.fix {
                Some(fix) => format!("  ✗ {name} {}\n{}", e.message, crate::fix::line(6, fix)),
                None => format!("  ✗ {name} {}", e.message),
            },
            Outcome::NotChecked => format!("  - {name} not checked: a layer before it failed"),
        }
    }
}

/// The layers of `profile`'s platform on the cluster, in order. `run` is the run `up --run` just
/// finished (its artifacts are looked for); without it, any run's.
pub async fn layers(profile: &Profile, kube: &Kube, run: Option<&str>) -> Vec<(String, Outcome)> {
    let pods_run = components::pods_run(profile.cluster.provider);
    let resolved = match components::resolve(profile) {
        Ok(r) => r,
        Err(e) => {
            return vec![(
                "object-store/round-trip".into(),
                Outcome::Failed(StepError::new(e.to_string())),
            )];
        }
    };
    let wiring = match Wiring::new(profile, &resolved) {
        Ok(Some(w)) => w,
        Ok(None) => {
            return vec![(
                "object-store/round-trip".into(),
                Outcome::Skipped(
                    "no Kubeflow Pipelines in the profile, so no store is wired".into(),
                ),
            )];
        }
        Err(e) => return vec![("object-store/round-trip".into(), Outcome::Failed(e))],
    };
    let mut out: Vec<(String, Outcome)> = Vec::new();
    let mut failed = false;
    let mut push = |out: &mut Vec<(String, Outcome)>, name: &str, outcome: Outcome| {
        let outcome = if failed { Outcome::NotChecked } else { outcome };
        failed |= outcome.failed();
        out.push((name.to_string(), outcome));
    };
    let store = store_client(&wiring, kube, pods_run).await;
    let outcome = match &store {
        Err(o) => clone_outcome(o),
        Ok(s3) => round_trip(s3, &wiring, kube.gate()).await,
    };
    push(&mut out, "object-store/round-trip", outcome);
    let outcome = match &store {
        Err(o) => clone_outcome(o),
        Ok(s3) => artifacts(s3, &wiring, run).await,
    };
    push(&mut out, "object-store/run-artifacts", outcome);
    let isvc = inference_service(kube, &wiring.kfp_namespace, pods_run).await;
    let model_uri = match &isvc {
        Ok((_, uri)) => uri.clone(),
        Err(_) => None,
    };
    push(
        &mut out,
        "serving/inference-service",
        match isvc {
            Ok((o, _)) => o,
            Err(o) => o,
        },
    );
    let not_served = !matches!(out.last().map(|(_, o)| o), Some(Outcome::Passed(_)));
    let simulated = !pods_run;
    let outcome = if simulated {
        Outcome::Simulated("the model's pods do not run on sim".into())
    } else if not_served {
        Outcome::Skipped("no ready InferenceService to ask".into())
    } else {
        match (&store, model_uri) {
            (Ok(s3), Some(uri)) => classify(kube, s3, &wiring.kfp_namespace, &uri).await,
            (_, None) => Outcome::Failed(
                StepError::new(format!(
                    "InferenceService {MODEL} names no model (no --model argument)"
                ))
                .with_fix("re-run the pipeline: its deploy step sets the model's location"),
            ),
            (Err(o), _) => clone_outcome(o),
        }
    };
    push(&mut out, "serving/classify", outcome);
    let outcome = if simulated {
        Outcome::Simulated("no model pod runs on sim to scrape".into())
    } else if not_served {
        Outcome::Skipped("no model is served yet".into())
    } else {
        model_metrics(kube, &resolved).await
    };
    push(&mut out, "serving/metrics", outcome);
    out
}

/// Outcomes are not `Clone` (errors are not); the store's unavailability is shown on each layer
/// that needs it.
fn clone_outcome(o: &Outcome) -> Outcome {
    match o {
        Outcome::Passed(s) => Outcome::Passed(s.clone()),
        Outcome::Simulated(s) => Outcome::Simulated(s.clone()),
        Outcome::Skipped(s) => Outcome::Skipped(s.clone()),
        Outcome::NotChecked => Outcome::NotChecked,
        Outcome::Failed(e) => Outcome::Failed(StepError {
            message: e.message.clone(),
            fix: e.fix.clone(),
            diagnosis: None,
            kind: e.kind,
        }),
    }
}

/// An S3 client with the pipeline's credentials: the keys in Kubeflow Pipelines' Secret, to the
/// endpoint the pods use (kgf-up's MinIO and the bundled store through the service proxy).
async fn store_client(wiring: &Wiring, kube: &Kube, pods_run: bool) -> Result<S3, Outcome> {
    let keys = pipeline_keys(kube, &wiring.kfp_namespace)
        .await
        .map_err(Outcome::Failed)?;
    let proxied = |ns: &str, service: &str| {
        S3::proxied(
            kube,
            ns,
            service,
            9000,
            &wiring.region,
            &keys.access,
            &keys.secret,
        )
        .map_err(|e| Outcome::Failed(StepError::context("the object store client", e)))
    };
    match &wiring.store {
        Store::S3(s3) => S3::for_store(s3, &keys)
            .map_err(|e| Outcome::Failed(StepError::context("the object store client", e))),
        _ if !pods_run => Err(Outcome::Simulated(format!(
            "{} runs in a pod, and pods do not run on sim",
            wiring.describe()
        ))),
        Store::Minio(_) => {
            let (ns, service) = wiring
                .minio
                .as_ref()
                .expect("a MinIO store knows its Service");
            proxied(ns, service)
        }
        Store::Bundled => proxied(&wiring.kfp_namespace, "seaweedfs"),
    }
}

/// The keys of `mlpipeline-minio-artifact` in Kubeflow Pipelines' namespace.
async fn pipeline_keys(kube: &Kube, namespace: &str) -> Result<Keys, StepError> {
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(kube.client(), namespace);
    let secret = api
        .get_opt(ARTIFACT_SECRET)
        .await
        .map_err(|e| StepError::context(format!("reading Secret {namespace}/{ARTIFACT_SECRET}"), e))?
        .ok_or_else(|| {
            StepError::new(format!(
                "Secret {namespace}/{ARTIFACT_SECRET}, the pipeline's store credentials, does not exist"
            ))
            .with_fix("run `kgf-up up`: it wires Kubeflow Pipelines to the store")
        })?;
    let data = secret.data.unwrap_or_default();
    let key = |k: &str| {
        data.get(k)
            .map(|v| Secret::new(String::from_utf8_lossy(&v.0).into_owned()))
            .ok_or_else(|| {
                StepError::new(format!(
                    "Secret {namespace}/{ARTIFACT_SECRET} has no key `{k}`"
                ))
                .with_fix("run `kgf-up up` to put the store's keys back")
            })
    };
    Ok(Keys {
        access: key(ACCESS_KEY)?,
        secret: key(SECRET_KEY)?,
    })
}

/// Writes an object to the pipelines bucket, reads it back, compares, removes it (the write and
/// the removal pass `gate`).
pub async fn round_trip(s3: &S3, wiring: &Wiring, gate: &crate::gate::Gate) -> Outcome {
    let bucket = wiring.buckets.pipelines.as_str();
    let key = format!(
        "kgf-up-verify/{}.txt",
        crate::inventory::now().replace(':', "-")
    );
    let body = format!("kgf-up verify {key}\n").into_bytes();
    let fail = |what: &str, e: objectstore::s3::S3Error| {
        let fix = objectstore::buckets::s3_fix(&e);
        Outcome::Failed(StepError::context(format!("{what} s3://{bucket}/{key}"), e).with_fix(fix))
    };
    let write = crate::gate::Change::new(format!("write the probe s3://{bucket}/{key}"));
    if let Err(e) = gate.change(write, s3.put(bucket, &key, body.clone())).await {
        return fail("writing", e);
    }
    let read = match s3.get(bucket, &key).await {
        Ok(r) => r,
        Err(e) => return fail("reading back", e),
    };
    let remove = crate::gate::Change::new(format!("remove the probe s3://{bucket}/{key}"));
    if let Err(e) = gate.change(remove, s3.delete(bucket, &key)).await {
        return fail("removing", e);
    }
    if read != body {
        return Outcome::Failed(StepError::new(format!(
            "s3://{bucket}/{key} read back {} bytes that differ from the {} written",
            read.len(),
            body.len()
        )));
    }
    Outcome::Passed(format!(
        "wrote, read back and removed s3://{bucket}/{key} at {} with the pipeline's credentials",
        s3.shown()
    ))
}

/// Objects under the pipeline root: the run's when known, any run's otherwise.
async fn artifacts(s3: &S3, wiring: &Wiring, run: Option<&str>) -> Outcome {
    let root = wiring.pipeline_root();
    let (bucket, prefix) = root
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(b, p)| (b.to_string(), format!("{p}/")))
        .expect("a pipeline root has a bucket and a prefix");
    let keys = match s3.list(&bucket, &prefix).await {
        Ok(k) => k,
        Err(e) => {
            let fix = objectstore::buckets::s3_fix(&e);
            return Outcome::Failed(
                StepError::context("listing the pipeline root", e).with_fix(fix),
            );
        }
    };
    let of_run: Vec<&String> = match run {
        Some(id) => keys.iter().filter(|k| k.contains(id)).collect(),
        None => keys.iter().collect(),
    };
    match (of_run.len(), run) {
        (0, Some(id)) => Outcome::Failed(
            StepError::new(format!("run {id} left no artifacts under {root}"))
                .with_fix("check the kfp-launcher ConfigMap and the step pods' logs: `kubectl -n kubeflow logs -l pipeline/runid=<id>`"),
        ),
        (0, None) => Outcome::Skipped(format!(
            "no run has written under {root} yet (`kgf-up up --run` starts one)"
        )),
        (n, _) => Outcome::Passed(format!("{n} artifact object(s) under {root}")),
    }
}

/// The InferenceService, and the model location its predictor serves (`--model`).
async fn inference_service(
    kube: &Kube,
    namespace: &str,
    pods_run: bool,
) -> Result<(Outcome, Option<String>), Outcome> {
    let r = crate::kube::ObjectRef {
        api_version: "serving.kserve.io/v1beta1".into(),
        kind: "InferenceService".into(),
        namespace: Some(namespace.into()),
        name: MODEL.into(),
    };
    let gvk = kube::api::GroupVersionKind::gvk("serving.kserve.io", "v1beta1", "InferenceService");
    let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, "inferenceservices");
    let api: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(kube.client(), namespace, &resource);
    let found = match api.get_opt(MODEL).await {
        Ok(found) => found.map(|o| serde_json::to_value(o).expect("objects serialize")),
        // No InferenceService kind: KServe is not installed.
        Err(kube::Error::Api(s)) if s.code == 404 => None,
        Err(e) => {
            return Err(Outcome::Failed(StepError::context(
                format!("reading {r}"),
                e,
            )));
        }
    };
    let Some(isvc) = found else {
        return Err(Outcome::Skipped(format!(
            "no {r}: the pipeline's deploy step makes it when the model beats deploy_threshold"
        )));
    };
    let uri = model_uri(&isvc);
    if !pods_run {
        return Ok((
            Outcome::Simulated(format!("{r} exists; its pods do not run on sim")),
            uri,
        ));
    }
    if ready(&isvc) {
        Ok((Outcome::Passed(format!("{r} Ready")), uri))
    } else {
        Err(Outcome::Failed(
            StepError::new(format!("{r} is not Ready: {}", not_ready_reason(&isvc)))
                .with_fix(format!(
                    "see `kubectl -n {namespace} describe inferenceservice {MODEL}` and its predictor pods"
                )),
        ))
    }
}

/// `status.conditions[type=Ready].status == "True"`.
pub fn ready(isvc: &Value) -> bool {
    crate::kube::ready::condition_true(&isvc["status"], "Ready")
}

fn not_ready_reason(isvc: &Value) -> String {
    isvc["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .map(|c| {
            format!(
                "{} {}",
                c["reason"].as_str().unwrap_or(""),
                c["message"].as_str().unwrap_or("")
            )
            .trim()
            .to_string()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "no Ready condition yet".into())
}

/// The value after `--model` in the predictor container's args.
pub fn model_uri(isvc: &Value) -> Option<String> {
    let containers = isvc.pointer("/spec/predictor/containers")?.as_array()?;
    let args: Vec<&str> = containers
        .iter()
        .flat_map(|c| {
            c["args"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(c["command"].as_array().into_iter().flatten())
        })
        .filter_map(Value::as_str)
        .collect();
    args.iter()
        .position(|a| *a == "--model")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.to_string())
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--model=").map(str::to_string))
        })
}

/// The v2 infer request for two reads.
pub fn infer_request(chimeric: &str, normal: &str) -> Value {
    json!({"inputs": [{"name": "reads", "datatype": "BYTES", "shape": [2], "data": [chimeric, normal]}]})
}

/// The `chimeric` output of a v2 infer answer.
pub fn calls(answer: &Value) -> Option<Vec<bool>> {
    answer["outputs"]
        .as_array()?
        .iter()
        .find(|o| o["name"] == "chimeric")?["data"]
        .as_array()?
        .iter()
        .map(|v| v.as_bool().or_else(|| v.as_i64().map(|n| n != 0)))
        .collect()
}

async fn classify(kube: &Kube, s3: &S3, namespace: &str, model: &str) -> Outcome {
    let Some((bucket, prefix)) = model.strip_prefix("s3://").and_then(|r| r.split_once('/')) else {
        return Outcome::Failed(StepError::new(format!(
            "the served model {model} is not in the object store, so kgf-up cannot read its {PROBE_READS}"
        )));
    };
    let key = format!("{}/{PROBE_READS}", prefix.trim_end_matches('/'));
    let probe: Value = match s3.get(bucket, &key).await {
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(v) => v,
            Err(e) => {
                return Outcome::Failed(StepError::new(format!(
                    "s3://{bucket}/{key} is not JSON: {e}"
                )));
            }
        },
        Err(e) => {
            return Outcome::Failed(
                StepError::context(format!("reading s3://{bucket}/{key}"), e)
                    .with_fix("the deploy step writes it beside the model: re-run the pipeline"),
            );
        }
    };
    let (Some(chimeric), Some(normal)) = (probe["chimeric"].as_str(), probe["normal"].as_str())
    else {
        return Outcome::Failed(StepError::new(format!(
            "s3://{bucket}/{key} lacks the `chimeric` and `normal` reads"
        )));
    };
    let path = format!(
        "/api/v1/namespaces/{namespace}/services/{MODEL}-predictor:80/proxy/v2/models/{MODEL}/infer"
    );
    let body = infer_request(chimeric, normal).to_string().into_bytes();
    let request = http::Request::post(&path)
        .header("content-type", "application/json")
        .body(body)
        .expect("a valid request");
    let answer = match tokio::time::timeout(
        Duration::from_secs(60),
        kube.proxy_client().request_text(request),
    )
    .await
    {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => {
            return Outcome::Failed(
                StepError::new(format!("POST {path}: {e}"))
                    .with_fix(format!("see `kubectl -n {namespace} logs -l serving.kserve.io/inferenceservice={MODEL}`")),
            );
        }
        Err(_) => {
            return Outcome::Failed(StepError::new(format!("POST {path}: no answer in 60 s")));
        }
    };
    let parsed: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
    match calls(&parsed) {
        Some(c) if c == [true, false] => Outcome::Passed(
            "a known chimeric read called chimeric, a known normal read called normal (through the service proxy)".into(),
        ),
        Some(c) => Outcome::Failed(StepError::new(format!(
            "the model called the known chimeric read {} and the known normal read {}",
            if c.first() == Some(&true) { "chimeric" } else { "normal" },
            if c.get(1) == Some(&true) { "chimeric" } else { "normal" },
        ))
        .with_fix("the served model is not the one that passed test-fc, or its threshold is off: re-run the pipeline")),
        None => Outcome::Failed(StepError::new(format!(
            "the infer answer has no `chimeric` output: {}",
            answer.chars().take(200).collect::<String>()
        ))),
    }
}

/// `kgf_serve_requests_total` in Prometheus, through the service proxy.
async fn model_metrics(kube: &Kube, resolved: &[Component]) -> Outcome {
    let Some(prometheus) = resolved.iter().find(|c| c.name == "prometheus") else {
        return Outcome::Skipped("no prometheus component in the profile".into());
    };
    let service = format!("{}-prometheus", prometheus.release);
    let path = prometheus_query_path(&prometheus.namespace, &service, "kgf_serve_requests_total");
    let request = http::Request::get(&path)
        .body(Vec::new())
        .expect("a valid request");
    let text = match kube.proxy_client().request_text(request).await {
        Ok(t) => t,
        Err(e) => {
            return Outcome::Failed(StepError::new(format!("GET {path}: {e}")).with_fix(format!(
                "see `kubectl -n {} get pods`",
                prometheus.namespace
            )));
        }
    };
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match series(&answer) {
        Some(n) if n > 0 => Outcome::Passed(format!("Prometheus has {n} series of kgf_serve_requests_total")),
        Some(_) => Outcome::Failed(
            StepError::new("Prometheus has no kgf_serve_requests_total series")
                .with_fix(format!(
                    "check the model's PodMonitor and Prometheus' targets (`kubectl -n {} port-forward svc/{service} 9090`, then /targets)",
                    prometheus.namespace
                )),
        ),
        None => Outcome::Failed(StepError::new(format!(
            "Prometheus answered something else than a query result: {}",
            text.chars().take(200).collect::<String>()
        ))),
    }
}

/// `GET /api/v1/query?query=...` on a Prometheus Service, through the API server.
pub fn prometheus_query_path(namespace: &str, service: &str, query: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(query.as_bytes()).collect();
    format!(
        "/api/v1/namespaces/{namespace}/services/{service}:9090/proxy/api/v1/query?query={encoded}"
    )
}

/// The number of series in a successful instant-query answer.
pub fn series(answer: &Value) -> Option<usize> {
    if answer["status"] != "success" {
        return None;
    }
    answer["data"]["result"].as_array().map(Vec::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_follows_the_ready_condition() {
        let isvc = |status: &str| {
            json!({"status": {"conditions": [
                {"type": "PredictorReady", "status": "True"},
                {"type": "Ready", "status": status, "reason": "MinimumReplicasUnavailable"}
            ]}})
        };
        assert!(ready(&isvc("True")));
        assert!(!ready(&isvc("False")));
        assert_eq!(
            not_ready_reason(&isvc("False")),
            "MinimumReplicasUnavailable"
        );
        assert!(!ready(&json!({})));
        assert_eq!(not_ready_reason(&json!({})), "no Ready condition yet");
    }

    #[test]
    fn the_model_location_is_the_predictors_model_argument() {
        let isvc = json!({"spec": {"predictor": {"containers": [{
            "name": "kserve-container",
            "args": ["serve", "--model", "s3://models/gene-fusion/run-1", "--port", "8080"]
        }]}}});
        assert_eq!(
            model_uri(&isvc).as_deref(),
            Some("s3://models/gene-fusion/run-1")
        );
        let eq = json!({"spec": {"predictor": {"containers": [{"command": ["kgf-step", "serve", "--model=/m"]}]}}});
        assert_eq!(model_uri(&eq).as_deref(), Some("/m"));
        assert_eq!(model_uri(&json!({"spec": {}})), None);
    }

    #[test]
    fn calls_are_read_from_the_chimeric_output() {
        let answer = json!({"model_name": "gene-fusion", "outputs": [
            {"name": "chimeric_probability", "datatype": "FP32", "shape": [2], "data": [0.9, 0.1]},
            {"name": "chimeric", "datatype": "BOOL", "shape": [2], "data": [true, false]}
        ]});
        assert_eq!(calls(&answer), Some(vec![true, false]));
        assert_eq!(calls(&json!({"outputs": []})), None);
        let req = infer_request("ACGT", "TTTT");
        assert_eq!(req["inputs"][0]["datatype"], "BYTES");
        assert_eq!(req["inputs"][0]["data"], json!(["ACGT", "TTTT"]));
    }

    #[test]
    fn prometheus_queries_go_through_the_service_proxy() {
        assert_eq!(
            prometheus_query_path(
                "monitoring",
                "kube-prometheus-stack-prometheus",
                "up{job=\"x\"}"
            ),
            "/api/v1/namespaces/monitoring/services/kube-prometheus-stack-prometheus:9090/proxy/api/v1/query?query=up%7Bjob%3D%22x%22%7D"
        );
        assert_eq!(
            series(
                &json!({"status": "success", "data": {"resultType": "vector", "result": [{}, {}]}})
            ),
            Some(2)
        );
        assert_eq!(series(&json!({"status": "error"})), None);
    }
}

/// Where one of the platform's UIs or endpoints is, and the one command that reaches it.
#[derive(Debug, PartialEq, Eq)]
pub struct Access {
    pub what: &'static str,
    pub at: String,
    pub command: String,
}

/// The UIs of `profile`'s platform: Kubeflow Pipelines, Grafana, the object store's console and
/// the model's endpoint, for the end of `status`.
pub fn access(profile: &Profile) -> Vec<Access> {
    let Ok(resolved) = components::resolve(profile) else {
        return Vec::new();
    };
    let find = |name: &str| resolved.iter().find(|c| c.name == name);
    let mut out = Vec::new();
    if let Some(kfp) = find("kubeflow-pipelines") {
        out.push(Access {
            what: "Kubeflow Pipelines UI",
            at: format!("Service {}/ml-pipeline-ui:80", kfp.namespace),
            command: format!(
                "kubectl -n {} port-forward svc/ml-pipeline-ui 8080:80   # then http://127.0.0.1:8080",
                kfp.namespace
            ),
        });
    }
    if let Some(p) = find("prometheus") {
        out.push(Access {
            what: "Grafana",
            at: format!("Service {}/{}-grafana:80", p.namespace, p.release),
            command: format!(
                "kubectl -n {} port-forward svc/{}-grafana 3000:80   # then http://127.0.0.1:3000",
                p.namespace, p.release
            ),
        });
    }
    let wiring = Wiring::new(profile, &resolved).ok().flatten();
    match wiring.as_ref().map(|w| (&w.store, w)) {
        Some((Store::Minio(_), w)) => {
            let (ns, service) = w.minio.as_ref().expect("a MinIO store knows its Service");
            out.push(Access {
                what: "object store console",
                at: format!("Service {ns}/{service}-console:9001"),
                command: format!(
                    "kubectl -n {ns} port-forward svc/{service}-console 9001:9001   # then http://127.0.0.1:9001 (user: kubectl -n {ns} get secret minio-root -o jsonpath='{{.data.rootUser}}' | base64 -d)"
                ),
            });
        }
        Some((Store::S3(s3), _)) => out.push(Access {
            what: "object store",
            at: s3.endpoint.url(),
            command: "your S3 provider's console (kgf-up does not run this store)".into(),
        }),
        Some((Store::Bundled, w)) => out.push(Access {
            what: "object store (SeaweedFS S3)",
            at: format!("Service {}/seaweedfs:9000", w.kfp_namespace),
            command: format!(
                "kubectl -n {} port-forward svc/seaweedfs 9000:9000   # S3 at http://127.0.0.1:9000",
                w.kfp_namespace
            ),
        }),
        None => {}
    }
    if let Some(w) = wiring.filter(|_| profile.pipeline.enabled) {
        let ns = &w.kfp_namespace;
        out.push(Access {
            what: "the model's endpoint (KServe v2)",
            at: format!("Service {ns}/{MODEL}-predictor:80, once the pipeline's deploy step ran"),
            command: format!(
                "kubectl get --raw /api/v1/namespaces/{ns}/services/{MODEL}-predictor:80/proxy/v2/models/{MODEL}"
            ),
        });
    }
    out
}
