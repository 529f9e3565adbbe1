//! The error of a step: which stage failed and why, with the fix where there is one.

use std::path::PathBuf;

use crate::dataset::DatasetError;
use crate::ensembl::EnsemblError;
use crate::report::ReportError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Ensembl(#[from] EnsemblError),
    #[error("{stage}: {source}")]
    Model {
        stage: &'static str,
        source: candle_core::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a model written by kgf-step: {source}")]
    ModelConfig {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Mismatch(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("serve: {0}")]
    Serve(String),
    #[error("deploy: {0}")]
    Deploy(String),
}

/// Wraps a candle error with the stage it failed in.
pub fn model(stage: &'static str) -> impl FnOnce(candle_core::Error) -> StepError {
    move |source| StepError::Model { stage, source }
}
