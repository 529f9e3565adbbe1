//! kgf-up: stands up a GPU-ready ML platform on kind, rke2, a simulated or an existing cluster.
//!
//! Layers depend only downward: `cli` → actions (`main`) → `runner`, `plan`, `teardown` →
//! steps (`cluster`, `components`, `validate`) → adapters (`kube`, `helm`, `exec`), with
//! `profile` (what to do), `inventory` (what was done) and `ui` (what the user sees) beside them.

pub mod cli;
pub mod cluster;
pub mod components;
pub mod exec;
pub mod helm;
pub mod inventory;
pub mod kube;
pub mod kustomize;
pub mod lock;
pub mod objectstore;
pub mod pipeline;
pub mod plan;
pub mod preflight;
pub mod profile;
pub mod proof;
pub mod runner;
pub mod ssh;
pub mod step;
pub mod teardown;
pub mod ui;
pub mod validate;
pub mod vendor;
