//! kgf-up: stands up a GPU-ready ML platform on kind, rke2, a simulated or an existing cluster.
//!
//! Layers depend only downward: `cli` → actions (`up`, `plan`, ...) → `runner` and `plan` →
//! steps (`cluster`, `components`, `validate`, `pipeline`) → adapters (`kube`, `helm`,
//! `kustomize`, `ssh`, `exec`).

pub mod cluster;
pub mod exec;
pub mod step;
