//! The gene-fusion pipeline as kgf-up deploys it: the step image (`image`), the spec with that
//! image in it (`spec`), the Kubeflow Pipelines API client (`kfp`) and the idempotent upload and
//! followed run built on it (`deploy`), and the step that ends `up` with the upload (`step`).
//!
//! The pipeline's computation lives in the `kgf-step` crate (pipeline/); this module only builds,
//! ships and drives it.

pub mod build;
pub mod deploy;
pub mod image;
pub mod kfp;
pub mod spec;
pub mod step;
