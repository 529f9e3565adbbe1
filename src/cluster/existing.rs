//! The `existing` provider: a cluster kgf-up did not create, reached through a kubeconfig context.
//! It creates nothing at cluster level and never deletes the cluster.

use std::path::PathBuf;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::Overrides;
use crate::kube::Kubeconfig;
use crate::profile::ExistingSpec;
use crate::step::{Ctx, Description, Observation, Step, StepError, StepId, StepResult};

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
