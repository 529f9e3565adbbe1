//! The kube adapter's one error type: each variant names the stage that failed.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("cannot read kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("cannot reach the Kubernetes API at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("{what}: {message}")]
    Manifest { what: String, message: String },
    #[error(
        "the cluster does not serve {kind} ({api_version}); the component that provides this kind must be installed first"
    )]
    UnknownKind { api_version: String, kind: String },
    #[error("{action} {object}: {source}")]
    Api {
        action: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "timed out after {}s waiting for {object} to be {condition}; last seen: {last}",
        waited.as_secs_f64().ceil()
    )]
    Timeout {
        object: String,
        condition: String,
        waited: Duration,
        last: String,
    },
}
