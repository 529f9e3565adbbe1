//! Writes what a step reports: JSON files in its output directories and, inside a Kubeflow
//! Pipelines v2 container, the executor output that puts metrics into the KFP UI.
//!
//! How KFP v2 takes metrics from a container component: the step is started with the
//! executor-input JSON (the `{{$}}` placeholder); that JSON names `outputs.outputFile`, and the
//! launcher reads that file after the step exits and records each output artifact's `metadata`.
//! A `system.Metrics` artifact's metadata is a flat map of name → number (shown as scalar
//! metrics); a `system.ClassificationMetrics` artifact carries `confusionMatrix`
//! (`annotationSpecs[].displayName`, `rows[].row`) and `confidenceMetrics`
//! (`confidenceThreshold`, `recall`, `falsePositiveRate`), drawn as a confusion matrix and an ROC
//! curve. This is the shape the KFP SDK's own executor writes (`kfp.dsl.executor`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "--executor-input is not KFP executor-input JSON ({0}); pass the '{{{{$}}}}' placeholder from the pipeline spec"
    )]
    ExecutorInput(String),
}

/// Writes `value` as pretty JSON to `dir/name`, creating `dir`.
pub fn write_json(
    dir: &Path,
    name: &str,
    value: &impl serde::Serialize,
) -> Result<(), ReportError> {
    let io = |path: PathBuf| move |source| ReportError::Io { path, source };
    std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
    let p = dir.join(name);
    let bytes = serde_json::to_vec_pretty(value).expect("reports serialise");
    std::fs::write(&p, bytes).map_err(io(p.clone()))
}

/// The scalar metrics shown for a `system.Metrics` artifact (and on the `KGF_METRICS` line):
/// every metric, its interval as `NAME_ci_low` / `NAME_ci_high`, and the sample count.
pub fn scalars(m: &Metrics) -> BTreeMap<String, f64> {
    let mut s = m.scalars();
    for (name, i) in &m.intervals.values {
        s.insert(format!("{name}_ci_low"), i.low);
        s.insert(format!("{name}_ci_high"), i.high);
    }
    s.insert("samples".into(), m.samples as f64);
    s.insert("groups".into(), m.intervals.groups as f64);
    s
}

/// The metadata of a `system.ClassificationMetrics` artifact.
pub fn classification_metadata(m: &Metrics) -> Value {
    let mut meta = json!({
        "confusionMatrix": {
            "annotationSpecs": m.classes.iter().map(|c| json!({"displayName": c})).collect::<Vec<_>>(),
            "rows": m.confusion.iter().map(|r| json!({"row": r})).collect::<Vec<_>>(),
        }
    });
    if !m.roc_curve.is_empty() {
        meta["confidenceMetrics"] = m
            .roc_curve
            .iter()
            .map(|p| {
                json!({"confidenceThreshold": p.threshold, "recall": p.tpr, "falsePositiveRate": p.fpr})
            })
            .collect();
    }
    meta
}

/// Writes the executor output file named by `executor_input`, with `metadata` set on the output
/// artifacts it names. Output artifacts not named pass through unchanged, as the SDK does.
pub fn write_executor_output(
    executor_input: &str,
    metadata: &[(&str, Value)],
) -> Result<PathBuf, ReportError> {
    let bad = |m: &str| ReportError::ExecutorInput(m.to_string());
    let input: Value = serde_json::from_str(executor_input).map_err(|e| bad(&e.to_string()))?;
    let out_file = input["outputs"]["outputFile"]
        .as_str()
        .ok_or_else(|| bad("no outputs.outputFile"))?;
    let mut artifacts = serde_json::Map::new();
    if let Some(outs) = input["outputs"]["artifacts"].as_object() {
        for (name, list) in outs {
            let mut list = list.clone();
            if let Some((_, meta)) = metadata.iter().find(|(n, _)| n == name)
                && let Some(first) = list["artifacts"].get_mut(0)
            {
                first["metadata"] = meta.clone();
            }
            artifacts.insert(name.clone(), list);
        }
    }
    let path = PathBuf::from(out_file);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let out = json!({ "artifacts": artifacts });
    std::fs::write(&path, serde_json::to_vec(&out).expect("json")).map_err(|source| {
        ReportError::Io {
            path: path.clone(),
            source,
        }
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::compute;

    #[test]
    fn executor_output_carries_metrics_metadata_in_the_sdk_shape() {
        let dir = tempfile::tempdir().unwrap();
        let out_file = dir.path().join("gcs/executor_output.json");
        let input = json!({
            "inputs": {},
            "outputs": {
                "outputFile": out_file,
                "artifacts": {
                    "metrics": {"artifacts": [{"name": "m", "uri": "minio://b/m", "type": {"schemaTitle": "system.Metrics"}}]},
                    "classification": {"artifacts": [{"name": "c", "uri": "minio://b/c"}]},
                    "model": {"artifacts": [{"name": "x", "uri": "minio://b/x"}]}
                }
            }
        });
        let m = compute(
            &[0, 1, 1],
            &[0, 1, 0],
            &[0.9, 0.1, 0.2, 0.8, 0.6, 0.4],
            &["chimeric".into(), "not_chimeric".into()],
            &[0, 1, 2],
        );
        let written = write_executor_output(
            &input.to_string(),
            &[
                ("metrics", json!(scalars(&m))),
                ("classification", classification_metadata(&m)),
            ],
        )
        .unwrap();
        let out: Value = serde_json::from_slice(&std::fs::read(written).unwrap()).unwrap();
        let metrics = &out["artifacts"]["metrics"]["artifacts"][0];
        assert_eq!(metrics["uri"], "minio://b/m");
        assert!((metrics["metadata"]["accuracy"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
        let (lo, hi) = crate::metrics::wilson(2, 3);
        let meta = |k: &str| metrics["metadata"][k].as_f64().unwrap();
        assert!((meta("accuracy_ci_low") - lo).abs() < 1e-12);
        assert!((meta("accuracy_ci_high") - hi).abs() < 1e-12);
        let cm = &out["artifacts"]["classification"]["artifacts"][0]["metadata"];
        assert_eq!(
            cm["confusionMatrix"]["annotationSpecs"][1]["displayName"],
            "not_chimeric"
        );
        assert_eq!(cm["confusionMatrix"]["rows"][1]["row"], json!([1, 1]));
        assert!(cm["confidenceMetrics"][0]["falsePositiveRate"].is_number());
        assert!(
            out["artifacts"]["model"]["artifacts"][0]
                .get("metadata")
                .is_none()
        );
        assert!(matches!(
            write_executor_output("{}", &[]),
            Err(ReportError::ExecutorInput(_))
        ));
    }
}
