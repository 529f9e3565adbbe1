//! Deploying the pipeline to Kubeflow Pipelines: an idempotent upload and a followed run.
//!
//! A version is identified by the SHA-256 of the spec bytes kgf-up uploads, written into the
//! version's description as `kgf-up spec sha256:<hex>`. Why the description and a hash: the
//! server stores the spec re-serialized (as a protobuf Struct), so comparing specs as text
//! cannot tell "unchanged" from "reformatted"; and the first version that `upload` creates is
//! forced to carry the pipeline's own name, so the name cannot carry the hash for every version
//! (later versions also get `<pipeline>-<hash12>` as name, which the server keeps unique per
//! pipeline: two kgf-up runs racing on one spec make one version, not two). The versions are
//! read and matched here rather than with a server-side filter, which keeps the match exact.

use serde_json::{Map, Value};

use super::kfp::{KfpClient, KfpError, NewRun, Polling, Run};
use super::spec::RenderedSpec;

/// The marker that identifies a spec in a version's description.
pub fn spec_marker(sha256: &str) -> String {
    format!("kgf-up spec sha256:{sha256}")
}

/// Which version of the pipeline holds the spec, and whether this call created it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploaded {
    pub pipeline_id: String,
    pub version_id: String,
    pub version_name: String,
    pub change: Change,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The pipeline did not exist: it was created with this spec as its first version.
    CreatedPipeline,
    /// The pipeline existed without this spec: a version was added.
    AddedVersion,
    /// A version with this spec was there already: nothing was uploaded.
    Unchanged,
}

/// What an upload would do, without doing it (for observe and plan).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    NoPipeline,
    /// The pipeline exists (id given) but no version has this spec.
    NewSpec(String),
    Current(Uploaded),
}

/// Looks the pipeline up by name and its versions for the spec's hash. Read-only.
pub async fn find(
    kfp: &KfpClient,
    name: &str,
    namespace: Option<&str>,
    spec: &RenderedSpec,
) -> Result<Found, KfpError> {
    let Some(pipeline) = kfp.pipeline_by_name(name, namespace).await? else {
        return Ok(Found::NoPipeline);
    };
    match version_with(kfp, &pipeline.pipeline_id, spec).await? {
        Some(version) => Ok(Found::Current(Uploaded {
            pipeline_id: pipeline.pipeline_id,
            version_id: version.0,
            version_name: version.1,
            change: Change::Unchanged,
        })),
        None => Ok(Found::NewSpec(pipeline.pipeline_id)),
    }
}

async fn version_with(
    kfp: &KfpClient,
    pipeline_id: &str,
    spec: &RenderedSpec,
) -> Result<Option<(String, String)>, KfpError> {
    let marker = spec_marker(&spec.sha256);
    Ok(kfp
        .versions(pipeline_id)
        .await?
        .into_iter()
        .find(|v| v.description.lines().any(|l| l.trim() == marker))
        .map(|v| (v.pipeline_version_id, v.name)))
}

/// Uploads the spec unless a version of the pipeline already has it.
pub async fn upload(
    kfp: &KfpClient,
    name: &str,
    description: &str,
    namespace: Option<&str>,
    spec: &RenderedSpec,
) -> Result<Uploaded, KfpError> {
    let marker = spec_marker(&spec.sha256);
    let pipeline_id = match find(kfp, name, namespace, spec).await? {
        Found::Current(found) => return Ok(found),
        Found::NewSpec(id) => id,
        Found::NoPipeline => {
            let text = format!("{description}\n{marker}");
            match kfp
                .upload(name, &text, namespace, spec.yaml.as_bytes())
                .await
            {
                Ok(pipeline) => {
                    return created(kfp, pipeline.pipeline_id, spec, Change::CreatedPipeline).await;
                }
                // Someone else created it meanwhile: carry on as if it had been there.
                Err(KfpError::Api { status: 409, .. }) => {
                    match find(kfp, name, namespace, spec).await? {
                        Found::Current(found) => return Ok(found),
                        Found::NewSpec(id) => id,
                        Found::NoPipeline => {
                            return Err(KfpError::BadResponse {
                                url: kfp.url().into(),
                                action: "upload the pipeline".into(),
                                cause: "409 on upload, yet no pipeline of that name".into(),
                            });
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
    };
    let version_name = format!("{name}-{}", &spec.sha256[..12]);
    match kfp
        .upload_version(&pipeline_id, &version_name, &marker, spec.yaml.as_bytes())
        .await
    {
        Ok(v) => Ok(Uploaded {
            pipeline_id,
            version_id: v.pipeline_version_id,
            version_name: v.name,
            change: Change::AddedVersion,
        }),
        Err(KfpError::Api { status: 409, .. }) => {
            created(kfp, pipeline_id, spec, Change::Unchanged).await
        }
        Err(e) => Err(e),
    }
}

async fn created(
    kfp: &KfpClient,
    pipeline_id: String,
    spec: &RenderedSpec,
    change: Change,
) -> Result<Uploaded, KfpError> {
    let (version_id, version_name) =
        version_with(kfp, &pipeline_id, spec)
            .await?
            .ok_or_else(|| KfpError::BadResponse {
                url: kfp.url().into(),
                action: "upload the pipeline".into(),
                cause: "the uploaded version is not among the pipeline's versions".into(),
            })?;
    Ok(Uploaded {
        pipeline_id,
        version_id,
        version_name,
        change,
    })
}

/// A run of an uploaded version.
pub struct RunRequest<'a> {
    pub experiment: &'a str,
    pub display_name: &'a str,
    pub namespace: Option<&'a str>,
    pub parameters: Map<String, Value>,
    pub pipeline_root: Option<String>,
    pub polling: Polling,
}

/// Creates the experiment if needed and a run, then follows the run to its end, calling `seen`
/// on every change of state.
pub async fn run(
    kfp: &KfpClient,
    uploaded: &Uploaded,
    request: RunRequest<'_>,
    seen: impl FnMut(&Run),
) -> Result<Run, KfpError> {
    let experiment = kfp
        .experiment(
            request.experiment,
            "Runs of the gene-fusion pipeline started by kgf-up",
            request.namespace,
        )
        .await?;
    let run = kfp
        .create_run(&NewRun {
            display_name: request.display_name.into(),
            experiment_id: experiment.experiment_id,
            pipeline_id: uploaded.pipeline_id.clone(),
            pipeline_version_id: uploaded.version_id.clone(),
            parameters: request.parameters,
            pipeline_root: request.pipeline_root,
        })
        .await?;
    kfp.follow(&run.run_id, request.polling, seen).await
}

/// The prefix of the log line in which a kgf-step test step prints its metrics as one JSON object.
pub const METRICS_PREFIX: &str = "KGF_METRICS ";

/// The metrics a step printed: the last `KGF_METRICS {...}` line of its log.
pub fn parse_metrics(log: &str) -> Option<Value> {
    log.lines()
        .rev()
        .filter_map(|l| l.trim_start().strip_prefix(METRICS_PREFIX))
        .find_map(|json| {
            serde_json::from_str::<Value>(json)
                .ok()
                .filter(Value::is_object)
        })
}

/// The final metrics of a finished run, read from its tasks' pod logs through the Kubernetes
/// API (Kubeflow Pipelines' REST API does not serve metrics artifacts' values). Tasks whose log
/// cannot be read or has no metrics line are left out.
pub async fn run_metrics(
    client: &kube::Client,
    namespace: &str,
    run: &Run,
) -> Vec<(String, Value)> {
    use k8s_openapi::api::core::v1::Pod;
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), namespace);
    let mut out = Vec::new();
    for task in &run.run_details.task_details {
        if task.pod_name.is_empty() {
            continue;
        }
        let params = kube::api::LogParams {
            container: Some("main".into()),
            tail_lines: Some(200),
            ..Default::default()
        };
        match pods.logs(&task.pod_name, &params).await {
            Ok(log) => {
                if let Some(metrics) = parse_metrics(&log) {
                    out.push((task.display_name.clone(), metrics));
                }
            }
            Err(e) => {
                tracing::debug!(target: "kfp", pod = %task.pod_name, error = %e, "no log for metrics")
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The metrics of [`run_metrics`] as lines `step: name=value ...`, numbers to four places.
pub fn render_metrics(metrics: &[(String, Value)]) -> String {
    let mut out = String::new();
    for (step, values) in metrics {
        let Some(map) = values.as_object() else {
            continue;
        };
        let fields: Vec<String> = map
            .iter()
            .filter_map(|(k, v)| v.as_f64().map(|x| format!("{k}={x:.4}")))
            .collect();
        out.push_str(&format!("{step}: {}\n", fields.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_the_last_well_formed_line() {
        let log = "epoch 1 loss 0.7\nKGF_METRICS {\"accuracy\": 0.5}\nKGF_METRICS not json\n\
                   KGF_METRICS {\"accuracy\": 0.91, \"macro_f1\": 0.88}\nbye\n";
        assert_eq!(
            parse_metrics(log),
            Some(serde_json::json!({"accuracy": 0.91, "macro_f1": 0.88}))
        );
        assert_eq!(parse_metrics("KGF_METRICS [1]\nno metrics\n"), None);
    }

    #[test]
    fn metrics_render_as_one_line_per_step_with_the_numbers_only() {
        let metrics = vec![
            (
                "test-fc".to_string(),
                serde_json::json!({"accuracy": 0.912345, "confusion": [[1, 2]]}),
            ),
            ("test-gc".to_string(), serde_json::json!({"accuracy": 1})),
        ];
        assert_eq!(
            render_metrics(&metrics),
            "test-fc: accuracy=0.9123\ntest-gc: accuracy=1.0000\n"
        );
    }
}
