//! The kustomize adapter: renders a kustomization (a local directory or a remote
//! `github.com/...?ref=` target) to multi-document YAML with `kustomize build`, or with
//! `kubectl kustomize` where only kubectl is installed.
//!
//! It only renders, through [`crate::exec`]; applying the YAML (CRDs first, server-side) is the
//! `kube` module's job. It must not change the cluster or the kustomization.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::exec::{Cmd, Exec, ExecError};
use crate::fix::Fix;

/// Network failures of a remote build (kustomize clones with git) that heal by themselves.
const TRANSIENT: &[&str] = &[
    "Could not resolve host",
    "Connection timed out",
    "Connection reset",
    "early EOF",
    "TLS handshake timeout",
    "The requested URL returned error: 5",
];

/// What to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A directory holding a `kustomization.yaml` (or `.yml`, or `Kustomization`).
    Local(PathBuf),
    /// A remote target kustomize fetches itself, e.g.
    /// `github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic?ref=2.17.0`.
    Remote(String),
}

impl Target {
    /// A URL-like source is remote (kustomize's own rule: a scheme, a `git@` address, a known
    /// forge host or a `?ref=`); anything else is a local path.
    pub fn parse(source: &str) -> Target {
        let remote = source.contains("://")
            || source.starts_with("git@")
            || source.contains("?ref=")
            || ["github.com/", "gitlab.com/", "bitbucket.org/"]
                .iter()
                .any(|host| source.starts_with(host));
        if remote {
            Target::Remote(source.to_string())
        } else {
            Target::Local(PathBuf::from(source))
        }
    }

    fn arg(&self) -> String {
        match self {
            Target::Local(path) => path.display().to_string(),
            Target::Remote(url) => url.clone(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arg())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KustomizeError {
    #[error("kustomization {} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("{} has no kustomization.yaml, kustomization.yml or Kustomization", path.display())]
    NotAKustomization { path: PathBuf },
    #[error(
        "neither `{kustomize}` nor `{kubectl}` is on PATH, so kustomization {target} cannot be rendered"
    )]
    NoTool {
        kustomize: String,
        kubectl: String,
        target: Target,
    },
    #[error("rendering kustomization {target}")]
    Build {
        target: Target,
        #[source]
        source: Box<ExecError>,
    },
}

impl Fix for KustomizeError {
    fn fix(&self) -> Option<String> {
        Some(match self {
            KustomizeError::Missing { .. } | KustomizeError::NotAKustomization { .. } => {
                "point the component's kustomize source at a directory with a kustomization.yaml, or at a remote target (github.com/ORG/REPO/PATH?ref=TAG)".into()
            }
            KustomizeError::NoTool { .. } => {
                "install kustomize 5.x (https://kubectl.docs.kubernetes.io/installation/kustomize/) or kubectl, and put it on PATH".into()
            }
            KustomizeError::Build {
                target: Target::Remote(_),
                ..
            } => "check the URL, its ?ref= tag and the network; behind an air gap, download the manifests and point the source at the local directory".into(),
            KustomizeError::Build { target, .. } => format!(
                "fix the kustomization: `kustomize build {target}` shows the same error"
            ),
        })
    }
}

/// Renders kustomizations.
#[derive(Clone)]
pub struct Kustomize {
    exec: Exec,
    kustomize: String,
    kubectl: String,
}

impl Kustomize {
    /// Uses `kustomize` from PATH, or `kubectl kustomize` when kustomize is not installed.
    pub fn new(exec: Exec) -> Self {
        Kustomize::with_programs(exec, "kustomize", "kubectl")
    }

    /// Uses the given programs (names on PATH or paths).
    pub fn with_programs(
        exec: Exec,
        kustomize: impl Into<String>,
        kubectl: impl Into<String>,
    ) -> Self {
        Kustomize {
            exec,
            kustomize: kustomize.into(),
            kubectl: kubectl.into(),
        }
    }

    /// The command that renders `target` with `kustomize` (what `plan` shows).
    pub fn build_cmd(&self, target: &Target) -> Cmd {
        with_policy(
            Cmd::new(&self.kustomize).args(["build".to_string(), target.arg()]),
            target,
        )
    }

    fn fallback_cmd(&self, target: &Target) -> Cmd {
        with_policy(
            Cmd::new(&self.kubectl).args(["kustomize".to_string(), target.arg()]),
            target,
        )
    }

    /// Renders `target` to multi-document YAML.
    pub async fn build(&self, target: &Target) -> Result<String, KustomizeError> {
        if let Target::Local(path) = target {
            check_local(path)?;
        }
        let first = self.exec.run_async(self.build_cmd(target)).await;
        let out = match first {
            Err(ExecError::NotFound { .. }) => {
                tracing::info!(target: "kustomize", "`{}` is not installed; using `{} kustomize`", self.kustomize, self.kubectl);
                match self.exec.run_async(self.fallback_cmd(target)).await {
                    Err(ExecError::NotFound { .. }) => {
                        return Err(KustomizeError::NoTool {
                            kustomize: self.kustomize.clone(),
                            kubectl: self.kubectl.clone(),
                            target: target.clone(),
                        });
                    }
                    other => other,
                }
            }
            other => other,
        };
        out.map(|o| o.stdout)
            .map_err(|source| KustomizeError::Build {
                target: target.clone(),
                source: Box::new(source),
            })
    }
}

/// Local builds are quick; remote ones clone a repository and may meet a flaky network.
fn with_policy(cmd: Cmd, target: &Target) -> Cmd {
    match target {
        Target::Local(_) => cmd.timeout(Duration::from_secs(120)),
        Target::Remote(_) => {
            cmd.timeout(Duration::from_secs(300))
                .retry_on(TRANSIENT, 3, Duration::from_secs(2))
        }
    }
}

/// A missing directory is the user's input, told before any program runs.
fn check_local(path: &Path) -> Result<(), KustomizeError> {
    if !path.is_dir() {
        return Err(KustomizeError::Missing {
            path: path.to_path_buf(),
        });
    }
    let found = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .any(|f| path.join(f).is_file());
    if found {
        Ok(())
    } else {
        Err(KustomizeError::NotAKustomization {
            path: path.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_targets_are_told_from_local_paths() {
        for remote in [
            "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic?ref=2.17.0",
            "https://github.com/kubeflow/pipelines//manifests/kustomize/cluster-scoped-resources?ref=2.17.0",
            "git@github.com:org/repo.git//path?ref=v1",
            "gitlab.com/org/repo/path",
        ] {
            assert_eq!(
                Target::parse(remote),
                Target::Remote(remote.into()),
                "{remote}"
            );
        }
        for local in [
            "tests/fixtures/kustomize",
            "/srv/mirror/kfp/env/platform-agnostic",
            "./base",
        ] {
            assert_eq!(Target::parse(local), Target::Local(local.into()), "{local}");
        }
    }

    #[test]
    fn remote_builds_retry_network_failures_and_local_ones_do_not() {
        let k = Kustomize::new(Exec::with_gate(crate::gate::Gate::record()));
        let remote = k.build_cmd(&Target::parse("github.com/o/r/p?ref=1"));
        assert_eq!(remote.display(), "kustomize build 'github.com/o/r/p?ref=1'");
        assert!(!remote.is_change(), "a build only reads");
        let local = k.build_cmd(&Target::parse("/m/kfp"));
        assert_eq!(local.display(), "kustomize build /m/kfp");
    }

    #[test]
    fn a_missing_or_empty_directory_is_an_input_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = check_local(&missing).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("kustomization {} does not exist", missing.display())
        );
        let err = check_local(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("has no kustomization.yaml"),
            "{err}"
        );
        assert!(err.fix().unwrap().contains("kustomization.yaml"));
        std::fs::write(dir.path().join("Kustomization"), "resources: []\n").unwrap();
        check_local(dir.path()).expect("`Kustomization` is a valid file name");
    }

    #[tokio::test]
    async fn without_kustomize_or_kubectl_the_error_names_both() {
        let k = Kustomize::with_programs(Exec::new(), "kgf-no-kustomize", "kgf-no-kubectl");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kustomization.yaml"), "resources: []\n").unwrap();
        let err = k
            .build(&Target::Local(dir.path().into()))
            .await
            .unwrap_err();
        assert!(matches!(err, KustomizeError::NoTool { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("`kgf-no-kustomize` nor `kgf-no-kubectl`"),
            "{err}"
        );
    }
}
