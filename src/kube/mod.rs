//! The Kubernetes API: a client from a kubeconfig, server-side apply of multi-document YAML (CRDs
//! first and waited Established, then namespaces, then the rest), waits built on watches, and the
//! diagnosis printed when a wait times out.
//!
//! Every write passes the [`Gate`]: [`Kube::apply`] and [`Kube::delete`] here, other writes
//! (inventory, lock, Jobs, nodes) through [`Kube::gate`]. When the gate records (`plan`), apply
//! asks the API server for a server-side dry run instead and records what would change, field by
//! field. This module must not decide what to apply.
//!
//! One concept a file: [`connection`] (the clients), [`object`] (references), [`discovery`], [`manifest`]
//! (parsing), [`apply`] (server-side apply and its dry-run [`diff`]), [`delete`], [`wait`] (watches
//! with deadlines), [`ready`] (readiness rules per kind), [`diagnose`] (what a failed
//! wait prints) and [`error`].

pub mod apply;
pub mod connection;
pub mod delete;
pub mod diagnose;
pub mod diff;
pub mod discovery;
pub mod error;
pub mod manifest;
pub mod object;
pub mod ready;
pub mod wait;

pub use apply::{Conflicts, FIELD_MANAGER};
pub use connection::{Kube, Kubeconfig, config};
pub use diff::object_diff;
pub use error::KubeError;
pub use manifest::{parse_manifests, yaml_documents};
pub use object::{ObjectRef, written_ref};
pub use ready::webhook_ca_injected;
