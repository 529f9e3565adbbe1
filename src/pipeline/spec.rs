//! The pipeline spec (Kubeflow Pipelines IR YAML) as kgf-up uploads it: the step image put into
//! every executor that names the placeholder, and the content hash that identifies a version.
//!
//! The substitution is structural (parse, change `deploymentSpec.executors.*.container.image`,
//! serialize), never a text replace, so a placeholder string elsewhere (a description, a
//! parameter default) is left alone. This module does not talk to any server.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::kfp::hex;

use crate::fix::Fix;

/// The image name the committed spec uses for the step image; replaced before upload.
pub const PLACEHOLDER_IMAGE: &str = "kgf-step:dev";

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("the pipeline spec is not valid YAML: {0}")]
    Parse(String),
    #[error(
        "the pipeline spec has no `deploymentSpec.executors` (is it a Kubeflow Pipelines v2 IR file?)"
    )]
    NoExecutors,
    #[error(
        "no executor of the pipeline spec uses the image `{PLACEHOLDER_IMAGE}`, so there is nothing to put the step image into"
    )]
    NoPlaceholder,
    #[error("could not write the pipeline spec: {0}")]
    Write(String),
}

impl Fix for SpecError {
    fn fix(&self) -> Option<String> {
        Some(
            match self {
                SpecError::Parse(_) | SpecError::NoExecutors => {
                    "regenerate the spec (`kgf-up pipeline spec`) or compile it with the kfp SDK"
                }
                SpecError::NoPlaceholder => {
                    "set `image: kgf-step:dev` on the executors that run kgf-step"
                }
                SpecError::Write(_) => "report this as a bug",
            }
            .into(),
        )
    }
}

/// A spec ready to upload: its bytes and the SHA-256 of those bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedSpec {
    pub yaml: String,
    pub sha256: String,
}

impl RenderedSpec {
    pub fn new(yaml: String) -> Self {
        let sha256 = hex(&Sha256::digest(yaml.as_bytes()));
        RenderedSpec { yaml, sha256 }
    }
}

/// Puts `image` into every executor whose image is [`PLACEHOLDER_IMAGE`]. The IR may have a
/// second document (the Kubernetes platform spec); documents without executors pass unchanged.
/// GPU executors keep only their resource request: on kind's CDI path (docs/gpu.md) that is all a
/// pod needs to get its GPU, and KFP's platform spec could not name a runtime class anyway.
pub fn with_image(ir: &str, image: &str) -> Result<RenderedSpec, SpecError> {
    let mut docs: Vec<Value> =
        serde_saphyr::from_multiple(ir).map_err(|e| SpecError::Parse(e.to_string()))?;
    let mut executors_seen = false;
    let mut replaced = 0;
    for doc in &mut docs {
        let Some(executors) = doc
            .pointer_mut("/deploymentSpec/executors")
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        executors_seen = true;
        for executor in executors.values_mut() {
            if let Some(slot) = executor.pointer_mut("/container/image")
                && slot.as_str() == Some(PLACEHOLDER_IMAGE)
            {
                *slot = Value::String(image.to_string());
                replaced += 1;
            }
        }
    }
    if !executors_seen {
        return Err(SpecError::NoExecutors);
    }
    if replaced == 0 {
        return Err(SpecError::NoPlaceholder);
    }
    let yaml = if docs.len() == 1 {
        serde_saphyr::to_string(&docs[0])
    } else {
        serde_saphyr::to_string_multiple(&docs)
    }
    .map_err(|e| SpecError::Write(e.to_string()))?;
    Ok(RenderedSpec::new(yaml))
}

/// The spec for a cluster without GPUs: every executor's `container.resources.accelerator` is
/// removed, so no step requests `nvidia.com/gpu` (the steps run `--device auto` and fall back to
/// the CPU), and the served model's `serving_gpus` parameter defaults to 0. Used with the CPU image.
pub fn without_gpus(ir: &str) -> Result<String, SpecError> {
    let mut docs: Vec<Value> =
        serde_saphyr::from_multiple(ir).map_err(|e| SpecError::Parse(e.to_string()))?;
    for doc in &mut docs {
        if let Some(executors) = doc
            .pointer_mut("/deploymentSpec/executors")
            .and_then(Value::as_object_mut)
        {
            for executor in executors.values_mut() {
                if let Some(resources) = executor
                    .pointer_mut("/container/resources")
                    .and_then(Value::as_object_mut)
                {
                    resources.remove("accelerator");
                }
            }
        }
        if let Some(gpus) = doc
            .pointer_mut("/root/inputDefinitions/parameters/serving_gpus")
            .and_then(Value::as_object_mut)
        {
            gpus.insert("defaultValue".into(), Value::from(0));
        }
    }
    if docs.len() == 1 {
        serde_saphyr::to_string(&docs[0])
    } else {
        serde_saphyr::to_string_multiple(&docs)
    }
    .map_err(|e| SpecError::Write(e.to_string()))
}

/// The pipeline's name in the spec (`pipelineInfo.name`), the name kgf-up uploads it under.
pub fn pipeline_name(ir: &str) -> Result<String, SpecError> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(ir).map_err(|e| SpecError::Parse(e.to_string()))?;
    docs.iter()
        .find_map(|d| d.pointer("/pipelineInfo/name").and_then(Value::as_str))
        .map(str::to_string)
        .ok_or_else(|| SpecError::Parse("no pipelineInfo.name".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_switch_removes_every_gpu_request_and_nothing_else() {
        let cpu = without_gpus(IR).unwrap();
        assert!(!cpu.contains("nvidia.com/gpu"), "{cpu}");
        assert!(!cpu.contains("accelerator"), "{cpu}");
        assert_eq!(cpu.matches("kgf-step:dev").count(), 3, "{cpu}");
        let committed = include_str!("../../pipeline/spec/gene-fusion.yaml");
        assert!(committed.contains("nvidia.com/gpu"));
        let cpu: Value = serde_saphyr::from_str(&without_gpus(committed).unwrap()).unwrap();
        assert!(!cpu.to_string().contains("nvidia.com/gpu"));
        assert_eq!(
            cpu.pointer("/root/inputDefinitions/parameters/serving_gpus/defaultValue"),
            Some(&Value::from(0)),
            "the served model asks for no GPU either"
        );
    }

    const IR: &str = "\
pipelineInfo:
  name: tiny
  description: runs kgf-step:dev
deploymentSpec:
  executors:
    exec-a:
      container:
        image: kgf-step:dev
        command: [kgf-step, dataset]
    exec-b:
      container:
        image: python:3.12
    exec-c:
      container:
        image: kgf-step:dev
        resources:
          accelerator: {resourceType: nvidia.com/gpu, resourceCount: '1'}
---
platforms:
  kubernetes:
    deploymentSpec:
      executors:
        exec-a: {nodeSelector: {labels: {a: b}}}
";

    #[test]
    fn every_placeholder_executor_gets_the_image_and_nothing_else_changes() {
        let out = with_image(IR, "localhost:5001/kgf-step:0.1.0-abc").unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&out.yaml).unwrap();
        assert_eq!(docs.len(), 2);
        let ex = &docs[0]["deploymentSpec"]["executors"];
        assert_eq!(
            ex["exec-a"]["container"]["image"],
            "localhost:5001/kgf-step:0.1.0-abc"
        );
        assert_eq!(
            ex["exec-c"]["container"]["image"],
            "localhost:5001/kgf-step:0.1.0-abc"
        );
        assert_eq!(ex["exec-b"]["container"]["image"], "python:3.12");
        // Structural: the same string outside an executor's image is untouched.
        assert_eq!(docs[0]["pipelineInfo"]["description"], "runs kgf-step:dev");
        // Quoted numbers stay strings (the IR's resourceCount is a string).
        assert_eq!(
            ex["exec-c"]["container"]["resources"]["accelerator"]["resourceCount"],
            "1"
        );
        assert_eq!(
            docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-a"]["nodeSelector"]
                ["labels"]["a"],
            "b"
        );
    }

    #[test]
    fn the_hash_follows_the_image_and_is_stable() {
        let a = with_image(IR, "r/kgf-step:1").unwrap();
        assert_eq!(a, with_image(IR, "r/kgf-step:1").unwrap());
        assert_ne!(a.sha256, with_image(IR, "r/kgf-step:2").unwrap().sha256);
        assert_eq!(a.sha256.len(), 64);
    }

    #[test]
    fn a_spec_without_the_placeholder_or_executors_is_refused() {
        let err = with_image(&IR.replace("kgf-step:dev", "other:1"), "x").unwrap_err();
        assert!(matches!(err, SpecError::NoPlaceholder), "{err}");
        let err = with_image("pipelineInfo: {name: x}\n", "x").unwrap_err();
        assert!(matches!(err, SpecError::NoExecutors), "{err}");
        assert!(matches!(with_image("a: [", "x"), Err(SpecError::Parse(_))));
    }

    #[test]
    fn the_name_comes_from_pipeline_info() {
        assert_eq!(pipeline_name(IR).unwrap(), "tiny");
    }
}
