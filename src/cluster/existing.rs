//! The `existing` provider: a cluster kgf-up did not create, reached through a kubeconfig context.
//! It creates nothing at cluster level and never deletes the cluster.

use std::path::PathBuf;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::Overrides;
use crate::kube::Kubeconfig;
use crate::profile::ExistingSpec;
use crate::step::{Ctx, Description, Observation, Step, StepError, StepId, StepResult};

/// A kubeconfig or context the command line names that is not there: bad input, found before
/// anything runs (a `plan` would otherwise print an offline plan for a cluster it never reached).
#[derive(Debug, thiserror::Error)]
pub enum NamedError {
    #[error("--kubeconfig {}: no such file", path.display())]
    Missing { path: PathBuf },
    #[error("--kubeconfig {}: {what}, not a kubeconfig file", path.display())]
    NotAFile { path: PathBuf, what: &'static str },
    #[error("--context {context}: cannot read kubeconfig {}: {message}", path.display())]
    Unreadable {
        context: String,
        path: PathBuf,
        message: String,
    },
    #[error("--context {context}: kubeconfig {} has no such context (it has: {})", path.display(), if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    NoContext {
        context: String,
        path: PathBuf,
        known: Vec<String>,
    },
}

impl crate::fix::Fix for NamedError {
    fn fix(&self) -> Option<String> {
        Some(match self {
            NamedError::Missing { .. } | NamedError::NotAFile { .. } => {
                "give --kubeconfig the path of a kubeconfig file, or leave it out to use \
                 cluster.existing.kubeconfig, KUBECONFIG or ~/.kube/config"
                    .into()
            }
            NamedError::Unreadable { path, .. } => format!(
                "check that {} is a kubeconfig you may read (`kubectl config get-contexts --kubeconfig {}`)",
                path.display(),
                path.display()
            ),
            NamedError::NoContext { path, .. } => format!(
                "give --context one of the kubeconfig's contexts (`kubectl config get-contexts --kubeconfig {}`), \
                 or leave it out to use its current context",
                path.display()
            ),
        })
    }
}

/// Checks the kubeconfig and context the command line names: the file must be a file, and the
/// kubeconfig used (that file, the profile's, `KUBECONFIG`'s or `~/.kube/config`) must have the
/// context. What the profile alone names is the cluster step's to find.
pub fn check_named(spec: &ExistingSpec, overrides: &Overrides) -> Result<(), NamedError> {
    if let Some(path) = &overrides.kubeconfig {
        match std::fs::metadata(path) {
            Err(_) => return Err(NamedError::Missing { path: path.clone() }),
            Ok(m) if !m.is_file() => {
                return Err(NamedError::NotAFile {
                    path: path.clone(),
                    what: if m.is_dir() {
                        "a directory"
                    } else {
                        "not a regular file"
                    },
                });
            }
            Ok(_) => {}
        }
    }
    let Some(context) = &overrides.context else {
        return Ok(());
    };
    let path = Existing::new(spec, overrides).path();
    let unreadable = |message: String| NamedError::Unreadable {
        context: context.clone(),
        path: path.clone(),
        message,
    };
    if !path.is_file() {
        return Err(unreadable("no such file".into()));
    }
    let file = kube::config::Kubeconfig::read_from(&path).map_err(|e| unreadable(e.to_string()))?;
    let known: Vec<String> = file.contexts.iter().map(|c| c.name.clone()).collect();
    if known.contains(context) {
        Ok(())
    } else {
        Err(NamedError::NoContext {
            context: context.clone(),
            path,
            known,
        })
    }
}

pub struct Existing {
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
}

impl Existing {
    pub fn new(spec: &ExistingSpec, overrides: &Overrides) -> Self {
        Existing {
            kubeconfig: overrides
                .kubeconfig
                .clone()
                .or_else(|| spec.kubeconfig.clone()),
            context: overrides.context.clone().or_else(|| spec.context.clone()),
        }
    }

    /// `--kubeconfig`, the profile's, the first file of `KUBECONFIG`, then `~/.kube/config`.
    fn path(&self) -> PathBuf {
        self.kubeconfig.clone().unwrap_or_else(|| {
            std::env::var_os("KUBECONFIG")
                .and_then(|v| std::env::split_paths(&v).next())
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".kube/config")
                })
        })
    }
}

impl Step for Existing {
    fn id(&self) -> StepId {
        super::id()
    }

    fn needs(&self) -> Vec<StepId> {
        Vec::new()
    }

    fn describe(&self) -> Description {
        Description {
            source: format!(
                "existing cluster: {} context {}",
                self.path().display(),
                self.context.as_deref().unwrap_or("(current)")
            ),
            ..Default::default()
        }
    }

    fn observe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<Observation>> {
        async move {
            let path = self.path();
            if !path.exists() {
                return Err(StepError::new(format!("kubeconfig {} does not exist", path.display()))
                    .with_fix("pass --kubeconfig PATH, set KUBECONFIG, or set cluster.existing.kubeconfig in the profile")
                    .preflight());
            }
            let _ = ctx.kubeconfig.set(Kubeconfig {
                path,
                context: self.context.clone(),
            });
            let kube = ctx.kube().await.map_err(|e| e.preflight())?;
            Ok(Observation::converged(format!("using the existing cluster at {}", kube.url())))
        }
        .boxed()
    }

    fn apply<'a>(&'a self, _: &'a Ctx, _: &'a Observation) -> BoxFuture<'a, StepResult<()>> {
        async {
            Err(StepError::new(
                "kgf-up does not create clusters for the existing provider",
            ))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fix::Fix;

    const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\ncurrent-context: a\n\
        clusters: [{name: c, cluster: {server: 'https://198.18.0.1:6443'}}]\n\
        users: [{name: u, user: {}}]\n\
        contexts: [{name: a, context: {cluster: c, user: u}}, {name: b, context: {cluster: c, user: u}}]\n";

    fn named(kubeconfig: Option<PathBuf>, context: Option<&str>) -> Result<(), NamedError> {
        check_named(
            &ExistingSpec::default(),
            &Overrides {
                kubeconfig,
                context: context.map(str::to_string),
            },
        )
    }

    #[test]
    fn a_kubeconfig_the_command_line_names_must_be_a_file() {
        let err = named(Some("/nonexistent/kc".into()), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--kubeconfig /nonexistent/kc: no such file"
        );
        assert!(err.fix().unwrap().contains("give --kubeconfig the path"));
        let dir = tempfile::tempdir().unwrap();
        let err = named(Some(dir.path().into()), None).unwrap_err();
        assert!(
            err.to_string()
                .contains("a directory, not a kubeconfig file"),
            "{err}"
        );
    }

    #[test]
    fn a_context_the_command_line_names_must_be_in_the_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        let kc = dir.path().join("kc");
        std::fs::write(&kc, KUBECONFIG).unwrap();
        named(Some(kc.clone()), Some("b")).expect("b is a context");
        named(Some(kc.clone()), None).expect("no context named");
        let err = named(Some(kc.clone()), Some("does-not-exist")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "--context does-not-exist: kubeconfig {} has no such context (it has: a, b)",
                kc.display()
            )
        );
        assert!(err.fix().unwrap().contains("kubectl config get-contexts"));
    }
}
