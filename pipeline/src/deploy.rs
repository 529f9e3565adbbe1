//! `kgf-step deploy`, the pipeline's last step (run only when the FC's balanced accuracy reaches
//! `deploy_threshold`): copies the chosen model into the object store as a servable directory
//! (`gc-model/`, `fc-model/`, `data/labels/`, `serving.json`) under `<store>/<run>`, then
//! creates or updates the InferenceService `gene-fusion` (KServe Standard mode, this image
//! running `kgf-step serve --model s3://…`, readiness on `/v2/health/ready`) and a PodMonitor so
//! Prometheus scrapes its `/metrics`, through the Kubernetes API with the pod's ServiceAccount
//! token (RBAC from kgf-up's `manifests/pipeline/deployer-rbac.yaml`). Beside the model it writes
//! `probe-reads.json`: one chimeric and one normal read of the test split that the model calls
//! right, which `kgf-up verify` sends through the served endpoint.
//!
//! The object builders are pure; the copy and the applies are the only I/O.

use std::path::{Path, PathBuf};

use hyper::body::Bytes;
use serde_json::{Value, json};

use crate::classify::{self, Classifier, Manifest};
use crate::dataset;
use crate::error::StepError;
use crate::kube::{Access, Kube};
use crate::serve::MODEL;
use crate::store::{self, S3Uri};

/// The port `serve` listens on in the predictor pod.
pub const PORT: u16 = 8080;
/// The Secret KFP's steps read the object store's credentials from, and its keys.
pub const S3_SECRET_KEYS: (&str, &str) = ("accesskey", "secretkey");

#[derive(Clone, Debug)]
pub struct Options {
    pub gc_model: PathBuf,
    pub fc_model: PathBuf,
    pub labels: PathBuf,
    /// The test split (probe reads for `kgf-up verify` come from it).
    pub test: PathBuf,
    /// Where models go: the run's copy is `<store>/<run>`.
    pub store: S3Uri,
    pub run: String,
    pub threshold: f64,
    /// Empty: the pod's own namespace.
    pub namespace: Option<String>,
    /// Empty: the image this pod runs (read from the API).
    pub image: Option<String>,
    pub gpus: u32,
    /// The object store the predictor reads the model from (its `AWS_ENDPOINT_URL`).
    pub s3_endpoint: String,
    pub s3_region: String,
    /// The Secret holding the store's credentials (KFP's `mlpipeline-minio-artifact` keys).
    pub s3_secret: String,
    /// The predictor pod's ServiceAccount (kgf-up creates `gene-fusion`, without API rights).
    pub service_account: String,
    pub access: Access,
}

/// What the predictor needs to know, besides the model URI.
#[derive(Clone, Debug)]
pub struct Predictor<'a> {
    pub namespace: &'a str,
    pub image: &'a str,
    pub model: &'a S3Uri,
    pub gpus: u32,
    pub s3_endpoint: &'a str,
    pub s3_region: &'a str,
    pub s3_secret: &'a str,
    pub service_account: &'a str,
    pub version: &'a str,
}

fn labels(version: &str) -> Value {
    json!({
        "app.kubernetes.io/name": MODEL,
        "app.kubernetes.io/version": version,
        "app.kubernetes.io/managed-by": "kgf-step",
        "app.kubernetes.io/part-of": "kgf-up",
    })
}

/// The InferenceService: one custom predictor container running `serve`.
pub fn inference_service(p: &Predictor) -> Value {
    let secret = |key: &str| json!({"secretKeyRef": {"name": p.s3_secret, "key": key}});
    let probe = |path: &str, period: u32| {
        json!({
            "httpGet": {"path": path, "port": PORT},
            "periodSeconds": period,
            "failureThreshold": 3,
        })
    };
    let mut container = json!({
        "name": "kserve-container",
        "image": p.image,
        "command": ["kgf-step"],
        "args": ["serve", "--model", p.model.to_string(), "--port", PORT.to_string(), "--device", "auto"],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": [
            {"name": "AWS_ENDPOINT_URL", "value": p.s3_endpoint},
            {"name": "AWS_REGION", "value": p.s3_region},
            {"name": "AWS_ACCESS_KEY_ID", "valueFrom": secret(S3_SECRET_KEYS.0)},
            {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": secret(S3_SECRET_KEYS.1)},
        ],
        "readinessProbe": probe("/v2/health/ready", 5),
        "livenessProbe": probe("/v2/health/live", 10),
        // The model is downloaded and loaded before readiness: give it time before liveness counts.
        "startupProbe": {"httpGet": {"path": "/v2/health/live", "port": PORT}, "periodSeconds": 5, "failureThreshold": 60},
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
    });
    if p.gpus > 0 {
        container["resources"]["limits"] = json!({"nvidia.com/gpu": p.gpus});
    }
    json!({
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": MODEL,
            "namespace": p.namespace,
            "labels": labels(p.version),
            // Standard mode: a plain Deployment and Service, no Knative (kgf-up sets the same
            // default on the controller; the annotation keeps this object right on any cluster).
            "annotations": {"serving.kserve.io/deploymentMode": "Standard"},
        },
        "spec": {"predictor": {
            "minReplicas": 1,
            "maxReplicas": 1,
            "serviceAccountName": p.service_account,
            "labels": labels(p.version),
            "containers": [container],
        }},
    })
}

/// The PodMonitor that makes the Prometheus operator scrape the predictor pods' `/metrics`
/// (kube-prometheus-stack ignores scrape annotations; kgf-up sets
/// `podMonitorSelectorNilUsesHelmValues=false` so an unlabelled monitor is picked up).
pub fn pod_monitor(namespace: &str, version: &str) -> Value {
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": MODEL, "namespace": namespace, "labels": labels(version)},
        "spec": {
            "selector": {"matchLabels": {"serving.kserve.io/inferenceservice": MODEL}},
            "podMetricsEndpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
        },
    })
}

pub fn isvc_path(ns: &str) -> String {
    format!("/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices/{MODEL}")
}

pub fn monitor_path(ns: &str) -> String {
    format!("/apis/monitoring.coreos.com/v1/namespaces/{ns}/podmonitors/{MODEL}")
}

/// A run name as an object-key segment and a label value (≤ 63 of `[A-Za-z0-9._-]`).
fn version_of(run: &str) -> String {
    let v: String = run
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let v = v
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    if v.is_empty() { "run".into() } else { v }
}

/// The store's credentials: the AWS environment when set, else the Secret the predictor will
/// read too (so the step and the server use the same credentials).
async fn store_client(o: &Options, kube: &Kube, ns: &str) -> Result<store::Client, StepError> {
    if let Ok(mut cfg) = store::Config::from_env() {
        if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
            cfg.endpoint = endpoint(&o.s3_endpoint)?;
        }
        return Ok(store::Client::new(cfg)?);
    }
    let path = format!("/api/v1/namespaces/{ns}/secrets/{}", o.s3_secret);
    let secret = kube
        .get(&path)
        .await
        .map_err(deploy_error)?
        .ok_or_else(|| {
            StepError::Deploy(format!(
                "Secret {ns}/{} (the object store's credentials) does not exist; kgf-up writes it with the object store setting: run `kgf-up up`",
                o.s3_secret
            ))
        })?;
    let field = |k: &str| -> Result<String, StepError> {
        let b64 = secret["data"][k].as_str().unwrap_or_default();
        decode_base64(b64)
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                StepError::Deploy(format!(
                    "Secret {ns}/{} has no key {k:?}; it needs {} and {}",
                    o.s3_secret, S3_SECRET_KEYS.0, S3_SECRET_KEYS.1
                ))
            })
    };
    let cfg = store::Config {
        endpoint: endpoint(&o.s3_endpoint)?,
        region: o.s3_region.clone(),
        style: rusty_s3::UrlStyle::Path,
        credentials: rusty_s3::Credentials::new(field(S3_SECRET_KEYS.0)?, field(S3_SECRET_KEYS.1)?),
        ca: std::env::var_os("AWS_CA_BUNDLE").map(PathBuf::from),
    };
    Ok(store::Client::new(cfg)?)
}

fn endpoint(s: &str) -> Result<url::Url, StepError> {
    url::Url::parse(s).map_err(|e| {
        StepError::Deploy(format!(
            "--s3-endpoint {s:?} is not a URL ({e}); write http(s)://HOST:PORT"
        ))
    })
}

/// Secret data as the API encodes it (standard base64).
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn deploy_error(e: crate::kube::KubeError) -> StepError {
    StepError::Deploy(e.to_string())
}

/// The image of the container `main` (KFP's name for a step's container) of this pod.
async fn own_image(kube: &Kube, ns: &str) -> Result<String, StepError> {
    let pod = std::env::var("HOSTNAME").map_err(|_| {
        StepError::Deploy(
            "HOSTNAME is not set, so this pod cannot look up its own image; pass --image".into(),
        )
    })?;
    let v = kube
        .get(&format!("/api/v1/namespaces/{ns}/pods/{pod}"))
        .await
        .map_err(deploy_error)?
        .ok_or_else(|| StepError::Deploy(format!("pod {ns}/{pod} not found; pass --image")))?;
    v["spec"]["containers"]
        .as_array()
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["name"] == "main")
                .or_else(|| cs.first())
        })
        .and_then(|c| c["image"].as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            StepError::Deploy(format!(
                "pod {ns}/{pod} has no container image; pass --image"
            ))
        })
}

/// Reads scanned for probes at most; the first right call of each class is taken.
const PROBE_SCAN: usize = 4096;

/// One chimeric and one normal test read the model calls right (the first ones of each class
/// when it calls none right, so the probe still exists and the check reports the miss).
pub fn probe_reads(c: &Classifier, test: &Path) -> Result<Value, StepError> {
    let ex = dataset::load_fc(test, &c.labels)?;
    let n = ex.len().min(PROBE_SCAN);
    let reads: Vec<Vec<u16>> = (0..n).map(|i| ex.read(i).to_vec()).collect();
    let mut calls = Vec::with_capacity(n);
    for chunk in reads.chunks(256) {
        calls.extend(
            c.classify(chunk)
                .map_err(crate::error::model("classifying the probe reads"))?,
        );
    }
    let pick = |label: u32| {
        let of_label = |i: &usize| ex.labels[*i] == label;
        (0..n)
            .filter(of_label)
            .find(|&i| calls[i].chimeric == (label == 0))
            .or_else(|| (0..n).find(of_label))
            .map(|i| classify::read_bases(ex.read(i), c.labels.k))
    };
    match (pick(0), pick(1)) {
        (Some(chimeric), Some(normal)) => Ok(json!({"chimeric": chimeric, "normal": normal})),
        _ => Err(StepError::Deploy(format!(
            "the test split in {} lacks a chimeric or a normal read; the probe for `kgf-up verify` needs one of each",
            test.display()
        ))),
    }
}

/// Runs the step; prints the model's URI and the objects applied.
pub fn run(o: &Options) -> Result<(), StepError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| StepError::Io {
            path: "tokio runtime".into(),
            source,
        })?;
    rt.block_on(deploy(o))
}

async fn deploy(o: &Options) -> Result<(), StepError> {
    let kube = Kube::new(&o.access).map_err(deploy_error)?;
    let ns = match o.namespace.clone().or_else(Kube::own_namespace) {
        Some(ns) => ns,
        None => {
            return Err(StepError::Deploy(
                "no namespace: not in a pod; pass --namespace".into(),
            ));
        }
    };
    let image = match &o.image {
        Some(i) => i.clone(),
        None => own_image(&kube, &ns).await?,
    };
    let version = version_of(&o.run);
    let dest = o.store.join(&version);
    let client = store_client(o, &kube, &ns).await?;
    let mut copied = 0;
    for (dir, rel) in [
        (&o.gc_model, classify::GC_DIR),
        (&o.fc_model, classify::FC_DIR),
        (&o.labels, classify::LABELS_DIR),
    ] {
        copied += client.upload_dir(dir, &dest.join(rel)).await?;
    }
    let manifest = Manifest {
        threshold: o.threshold,
        version: version.clone(),
    };
    let bytes = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    client
        .put(
            &dest.bucket,
            &dest.join(classify::MANIFEST).prefix,
            Bytes::from(bytes),
        )
        .await?;
    let classifier = Classifier::load_parts(
        &o.gc_model,
        &o.fc_model,
        &o.labels,
        manifest,
        crate::fc::GC_BATCH,
        &candle_core::Device::Cpu,
    )?;
    let probes =
        serde_json::to_vec_pretty(&probe_reads(&classifier, &o.test)?).expect("probes serialise");
    client
        .put(
            &dest.bucket,
            &dest.join(classify::PROBE_READS).prefix,
            Bytes::from(probes),
        )
        .await?;
    eprintln!("deploy: copied {} files to {dest}", copied + 2);
    let isvc = inference_service(&Predictor {
        namespace: &ns,
        image: &image,
        model: &dest,
        gpus: o.gpus,
        s3_endpoint: &o.s3_endpoint,
        s3_region: &o.s3_region,
        s3_secret: &o.s3_secret,
        service_account: &o.service_account,
        version: &version,
    });
    kube.apply(&isvc_path(&ns), &isvc)
        .await
        .map_err(deploy_error)?;
    eprintln!(
        "deploy: applied InferenceService {ns}/{MODEL} (image {image}, {} GPU)",
        o.gpus
    );
    kube.apply(&monitor_path(&ns), &pod_monitor(&ns, &version))
        .await
        .map_err(deploy_error)?;
    eprintln!("deploy: applied PodMonitor {ns}/{MODEL}");
    println!("KGF_MODEL {dest}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_secret_data() {
        assert_eq!(decode_base64("bWluaW8=").unwrap(), b"minio");
        assert_eq!(decode_base64("YWI=").unwrap(), b"ab");
        assert_eq!(decode_base64("YWJj").unwrap(), b"abc");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert!(decode_base64("a$b=").is_none());
    }

    #[test]
    fn run_names_become_safe_versions() {
        assert_eq!(
            version_of("gene-fusion 2026/12/01"),
            "gene-fusion-2026-12-01"
        );
        assert_eq!(version_of("--"), "run");
        assert_eq!(version_of(&"a".repeat(80)).len(), 63);
    }

    #[test]
    fn the_predictor_asks_for_gpus_only_when_told() {
        let uri = S3Uri::parse("s3://models/gene-fusion/r1").unwrap();
        let p = Predictor {
            namespace: "kubeflow",
            image: "reg/kgf-step:1",
            model: &uri,
            gpus: 0,
            s3_endpoint: "http://minio.minio:9000",
            s3_region: "us-east-1",
            s3_secret: "mlpipeline-minio-artifact",
            service_account: "gene-fusion",
            version: "r1",
        };
        let c = &inference_service(&p)["spec"]["predictor"]["containers"][0];
        assert!(c["resources"].get("limits").is_none());
        assert_eq!(c["args"][2], "s3://models/gene-fusion/r1");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/v2/health/ready");
        let g = inference_service(&Predictor { gpus: 1, ..p });
        assert_eq!(
            g["spec"]["predictor"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
            1
        );
    }
}
