//! kgf-step: the compute steps of the gene-fusion pipeline (design §4) — dataset simulation and
//! tokenization, the gene classifier (GC) and the fusion classifier (FC), their metrics — as one
//! binary with a subcommand per Kubeflow Pipelines step. Knows nothing about clusters: `kgf-up`
//! builds its image and runs it through the pipeline spec in `pipeline/spec/`.

pub mod cli;
pub mod config;
pub mod dataset;
pub mod ensembl;
pub mod error;
pub mod fc;
pub mod format;
pub mod gc;
pub mod metrics;
pub mod model;
pub mod report;
pub mod rng;
pub mod simulate;
pub mod train;
pub mod transcripts;
pub mod vocab;
