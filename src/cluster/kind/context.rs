//! Step `kind/context`: `kind-<name>` is the current context of the user's kubeconfig.
//!
//! Uses kind's own `kind export kubeconfig`, which writes only the `kind-<name>` entries and the
//! current-context; kgf-up itself never edits the user's kubeconfig. Present only when the
//! profile sets `select_context` (the default).

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{KindPlan, ids};
use crate::exec::{Cmd, ExecError};
use crate::step::{Ctx, Description, Observation, Step, StepError, StepId};

pub struct ContextStep {
    pub(super) plan: Arc<KindPlan>,
}

impl Step for ContextStep {
    fn id(&self) -> StepId {
        ids::context()
    }

    fn needs(&self) -> Vec<StepId> {
        vec![ids::cluster()]
    }

    fn describe(&self) -> Description {
        Description {
            source: "the user's kubeconfig ($KUBECONFIG or ~/.kube/config)".to_string(),
            commands: vec![format!(
                "kind export kubeconfig --name {}",
                self.plan.spec.name
            )],
            objects: vec![],
            component: None,
            files: Vec::new(),
        }
    }

    fn observe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<Observation, StepError>> {
        async move {
            let wanted = self.plan.spec.context();
            match ctx
                .exec
                .run_async(Cmd::new("kubectl").args(["config", "current-context"]))
                .await
            {
                Ok(out) if out.stdout.trim() == wanted => Ok(Observation::converged(format!(
                    "current context is {wanted}"
                ))),
                Ok(out) => Ok(Observation::drifted(format!(
                    "current context is {}, not {wanted}",
                    out.stdout.trim()
                ))),
                // kubectl exits 1 with "current-context is not set" on a fresh kubeconfig.
                Err(ExecError::Failed { stderr, .. }) if stderr.contains("not set") => Ok(
                    Observation::missing(format!("no current context; {wanted} is wanted")),
                ),
                Err(e) => Err(StepError::context(
                    "reading the current kubeconfig context",
                    e,
                )),
            }
        }
        .boxed()
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a Ctx,
        _seen: &'a Observation,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        async move {
            let cmd = Cmd::new("kind")
                .args(["export", "kubeconfig", "--name", &self.plan.spec.name])
                .changes();
            ctx.exec
                .run_async(cmd)
                .await
                .map(|_| ())
                .map_err(|e| StepError::context("selecting the kind context", e))
        }
        .boxed()
    }
}
