//! The `pipeline/upload` step that ends `up`: observe looks the pipeline and its versions up for
//! the spec's hash, apply uploads only what is missing, wait checks that the version is there.

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::deploy::{self, Found};
use super::kfp::{self, KfpClient, KfpError};
use super::spec::RenderedSpec;
use crate::gate::Change;
use crate::step::{Ctx, Description, Observation, Step, StepError, StepId, StepResult};

/// Where the step finds the Kubeflow Pipelines API.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// The cluster's service proxy to `namespace/service:port`, with the run's kubeconfig.
    ServiceProxy {
        namespace: String,
        service: String,
        port: u16,
    },
    /// A URL given by the user (port-forward, ingress).
    Direct(String),
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint::ServiceProxy {
            namespace: kfp::NAMESPACE.into(),
            service: kfp::SERVICE.into(),
            port: kfp::PORT,
        }
    }
}

impl Endpoint {
    pub async fn client(&self, ctx: &Ctx) -> StepResult<KfpClient> {
        match self {
            Endpoint::Direct(url) => KfpClient::direct(url).map_err(step_error),
            Endpoint::ServiceProxy {
                namespace,
                service,
                port,
            } => {
                let config = crate::kube::config(ctx.kubeconfig()?).await.map_err(|e| {
                    StepError::new(e.to_string()).with_fix("check the file, or pass --kubeconfig")
                })?;
                KfpClient::via_service_proxy(config, namespace, service, *port).map_err(step_error)
            }
        }
    }
}

/// A Kubeflow Pipelines error as a step error, with its fix.
pub fn step_error(e: KfpError) -> StepError {
    StepError::of(e)
}

/// Polls the API's health until it answers, for at most `deadline`. Only "not there yet" errors
/// (unreachable, no ready pod, 5xx) are waited out; anything else is returned at once.
pub async fn wait_ready(kfp: &KfpClient, deadline: Duration) -> Result<kfp::Healthz, KfpError> {
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_secs(1);
    loop {
        match kfp.healthz().await {
            Ok(h) => return Ok(h),
            Err(e) => {
                if !e.is_transient() || started.elapsed() + delay > deadline {
                    return Err(e);
                }
                tracing::info!(target: "kfp", error = %e, "waiting for the Kubeflow Pipelines API");
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(15));
    }
}

/// Uploads the pipeline spec when no version of the pipeline has it.
pub struct UploadStep {
    pub name: String,
    pub description: String,
    pub spec: RenderedSpec,
    pub endpoint: Endpoint,
    /// The Kubeflow Pipelines namespace in multi-user mode; `None` for a standalone install.
    pub kfp_namespace: Option<String>,
    /// The steps that install Kubeflow Pipelines.
    pub needs: Vec<StepId>,
}

impl UploadStep {
    pub fn new(name: &str, description: &str, spec: RenderedSpec, endpoint: Endpoint) -> Self {
        UploadStep {
            name: name.into(),
            description: description.into(),
            spec,
            endpoint,
            kfp_namespace: None,
            needs: Vec::new(),
        }
    }

    async fn found(&self, ctx: &Ctx) -> StepResult<(KfpClient, Found)> {
        let kfp = self.endpoint.client(ctx).await?;
        wait_ready(&kfp, ctx.timeout).await.map_err(step_error)?;
        let found = deploy::find(&kfp, &self.name, self.kfp_namespace.as_deref(), &self.spec)
            .await
            .map_err(step_error)?;
        Ok((kfp, found))
    }
}

impl Step for UploadStep {
    fn id(&self) -> StepId {
        StepId::new("pipeline", "upload")
    }

    fn needs(&self) -> Vec<StepId> {
        self.needs.clone()
    }

    fn describe(&self) -> Description {
        let route = match &self.endpoint {
            Endpoint::ServiceProxy {
                namespace,
                service,
                port,
            } => format!("the cluster's service proxy to {namespace}/{service}:{port}"),
            Endpoint::Direct(url) => url.clone(),
        };
        Description {
            source: format!("Kubeflow Pipelines v2beta1 API via {route}"),
            commands: Vec::new(),
            objects: vec![format!(
                "Pipeline {} (version with spec sha256:{})",
                self.name,
                &self.spec.sha256[..12]
            )],
            component: None,
            files: Vec::new(),
        }
    }

    fn observe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<Observation>> {
        async move {
            let (_, found) = self.found(ctx).await?;
            let short = &self.spec.sha256[..12];
            Ok(match found {
                Found::NoPipeline => Observation::missing(format!("no pipeline {}", self.name)),
                Found::NewSpec(_) => Observation::drifted(format!(
                    "pipeline {} has no version with spec sha256:{short}",
                    self.name
                )),
                Found::Current(u) => Observation::converged(format!(
                    "pipeline {} version {} has spec sha256:{short}",
                    self.name, u.version_name
                )),
            })
        }
        .boxed()
    }

    fn apply<'a>(&'a self, ctx: &'a Ctx, seen: &'a Observation) -> BoxFuture<'a, StepResult<()>> {
        async move {
            if seen.is_converged() {
                return Ok(());
            }
            let change = Change::new(format!(
                "upload pipeline {} (spec sha256:{}) to Kubeflow Pipelines",
                self.name,
                &self.spec.sha256[..12]
            ));
            let upload = async {
                let kfp = self.endpoint.client(ctx).await?;
                deploy::upload(
                    &kfp,
                    &self.name,
                    &self.description,
                    self.kfp_namespace.as_deref(),
                    &self.spec,
                )
                .await
                .map_err(step_error)
            };
            if let Some(uploaded) = ctx.exec.gate().change(change, upload).await? {
                tracing::info!(target: "kfp", pipeline = %self.name, version = %uploaded.version_name, change = ?uploaded.change, "uploaded");
            }
            Ok(())
        }
        .boxed()
    }

    fn wait<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<()>> {
        async move {
            if ctx.exec.gate().recording() {
                return Ok(());
            }
            match self.found(ctx).await?.1 {
                Found::Current(_) => Ok(()),
                _ => Err(StepError::new(format!(
                    "pipeline {} has no version with spec sha256:{} after the upload",
                    self.name,
                    &self.spec.sha256[..12]
                ))
                .with_fix("check the ml-pipeline pod's logs: `kubectl -n kubeflow logs deploy/ml-pipeline`")),
            }
        }
        .boxed()
    }
}
