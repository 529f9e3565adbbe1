//! What helm's messages mean (helm gives no codes): why an install or upgrade failed, which
//! failures heal by themselves, and a release that does not exist.

use std::fmt;

/// Failures of the API server connection that heal by themselves; reads retry on them.
pub(super) const TRANSIENT: &[&str] = &[
    "connection refused",
    "i/o timeout",
    "TLS handshake timeout",
    "the server is currently unable to handle the request",
    "etcdserver: request timed out",
    "http2: client connection lost",
];

/// Helm's message when a release does not exist.
pub(super) const NOT_FOUND: &str = "release: not found";

/// Why an install or upgrade failed, read from helm's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallFailure {
    /// The release's resources did not become ready within the timeout.
    NotReady,
    /// Another helm client holds the release.
    Busy,
    /// An admission webhook (usually another component's) did not answer.
    Webhook,
    /// The chart could not be fetched at that version.
    Chart,
    /// The chart did not render with kgf-up's values.
    Render,
    /// The API server could not be reached.
    Unreachable,
    /// An object of the chart exists and belongs to another release or to no release.
    Conflict,
    Other,
}

impl InstallFailure {
    pub fn classify(message: &str) -> Self {
        let has = |needles: &[&str]| needles.iter().any(|n| message.contains(n));
        if has(&["another operation (install/upgrade/rollback) is in progress"]) {
            InstallFailure::Busy
        } else if has(&["failed calling webhook"]) {
            InstallFailure::Webhook
        } else if has(&["Kubernetes cluster unreachable"]) {
            InstallFailure::Unreachable
        } else if has(&["cannot be imported into the current release"]) {
            InstallFailure::Conflict
        } else if has(&[
            "context deadline exceeded",
            "timed out waiting for the condition",
            " not ready",
        ]) {
            InstallFailure::NotReady
        } else if has(&[
            "execution error at",
            "executing \"",
            "parse error",
            "don't meet the specifications of the schema",
            "error converting YAML",
            "unable to build kubernetes objects",
        ]) {
            InstallFailure::Render
        } else if has(&[
            "failed to fetch",
            // OCI (oras): `failed to perform "FetchReference" on source: host/repo:tag: not found`
            "failed to perform \"Fetch",
            "failed to download",
            "is not a valid chart repository",
            "path \"",
            "no such file or directory",
            "not found in",
            "manifest unknown",
            "no chart version found",
            "no chart name found",
        ]) {
            InstallFailure::Chart
        } else {
            InstallFailure::Other
        }
    }
}

impl fmt::Display for InstallFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InstallFailure::NotReady => "its resources did not become ready in time",
            InstallFailure::Busy => "another helm operation on it is in progress",
            InstallFailure::Webhook => "an admission webhook did not answer",
            InstallFailure::Chart => "the chart could not be fetched",
            InstallFailure::Render => "the chart did not render with kgf-up's values",
            InstallFailure::Unreachable => "the cluster's API server could not be reached",
            InstallFailure::Conflict => "an object it would create belongs to something else",
            InstallFailure::Other => "helm failed",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_failures_are_classified_from_helms_messages() {
        let c = InstallFailure::classify;
        assert_eq!(
            c("Error: UPGRADE FAILED: context deadline exceeded"),
            InstallFailure::NotReady
        );
        assert_eq!(
            c(
                "Error: resource Deployment/ns/x not ready. status: InProgress, message: Available: 0/1\ncontext deadline exceeded"
            ),
            InstallFailure::NotReady
        );
        assert_eq!(
            c("Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress"),
            InstallFailure::Busy
        );
        assert_eq!(
            c(
                "Error: INSTALLATION FAILED: Internal error occurred: failed calling webhook \"webhook.cert-manager.io\": connection refused"
            ),
            InstallFailure::Webhook
        );
        assert_eq!(
            c(
                "Error: chart \"kuberay-operator\" version \"9.9.9\" not found in https://ray-project.github.io/kuberay-helm/ repository"
            ),
            InstallFailure::Chart
        );
        assert_eq!(c("Error: path \"/nope\" not found"), InstallFailure::Chart);
        assert_eq!(
            c(
                "Error: failed to perform \"FetchReference\" on source: 127.0.0.1:5001/charts/x:9.9.9: not found"
            ),
            InstallFailure::Chart
        );
        assert_eq!(
            c(
                "Error: INSTALLATION FAILED: template: x/templates/d.yaml:3:4: executing \"x\" at <.Values.a.b>: nil pointer evaluating interface {}.b"
            ),
            InstallFailure::Render
        );
        assert_eq!(
            c(
                "Error: values don't meet the specifications of the schema(s) in the following chart(s)"
            ),
            InstallFailure::Render
        );
        assert_eq!(
            c(
                "Error: Kubernetes cluster unreachable: Get \"https://127.0.0.1:6443/version\": dial tcp: connection refused"
            ),
            InstallFailure::Unreachable
        );
    }
}
