//! kgf-step: the compute steps of the gene-fusion pipeline (design §4) — dataset simulation and
//! tokenization, the gene classifier (GC) and the fusion classifier (FC), their metrics — as one
//! binary with a subcommand per Kubeflow Pipelines step; and the served model (`serve`, KServe's
//! v2 protocol) with the step that deploys it (`deploy`: the object store and two objects through
//! the Kubernetes API). `kgf-up` builds its image and runs it through the pipeline spec in
//! `pipeline/spec/`.

pub mod classify;
pub mod cli;
pub mod config;
pub mod dataset;
pub mod deploy;
pub mod ensembl;
pub mod error;
pub mod evaluate;
pub mod fc;
pub mod format;
pub mod fused;
pub mod gc;
pub mod http;
pub mod kube;
pub mod metrics;
pub mod metrics_text;
pub mod model;
pub mod report;
pub mod rng;
pub mod serve;
pub mod simulate;
pub mod store;
pub mod train;
pub mod transcripts;
pub mod vocab;
