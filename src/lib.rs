//! kgf-up: stands up a GPU-ready ML platform on kind, rke2, a simulated or an existing cluster.
//!
//! Layers depend only downward (`tests/house.rs` checks that no files use each other in a circle,
//! at any depth, and that the adapters know nothing above them): `main` (parses with `cli`, opens
//! the log) → `actions` (one per verb, each given the run's `settings`) → `provider`
//! (what differs per cluster provider) → `runner`, `plan`, `teardown` → steps (`cluster`,
//! `components`, `validate`) → adapters (`kube`, `helm`, `kustomize`, `ssh`, `exec`) → the
//! `gate` every change passes, with `profile` and `load` (what to do), `inventory` (what was
//! done), `wait` (for what cannot be watched), `diff` (what differs), `secret` and `ui` (what the
//! user sees) beside them.

pub mod actions;
pub mod cli;
pub mod cluster;
pub mod components;
pub mod diff;
pub mod exec;
pub mod fix;
pub mod gate;
pub mod helm;
pub mod inventory;
pub mod kube;
pub mod kustomize;
pub mod load;
pub mod lock;
pub mod objectstore;
pub mod pipeline;
pub mod plan;
pub mod preflight;
pub mod profile;
pub mod proof;
pub mod provider;
pub mod runner;
pub mod secret;
pub mod settings;
pub mod ssh;
pub mod step;
pub mod teardown;
pub mod ui;
pub mod validate;
pub mod vendor;
pub mod wait;
