//! The connection: a client from a kubeconfig's context, and the service-proxy client without
//! retries.

use std::collections::HashMap;
use std::path::PathBuf;

use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::ApiCapabilities;
use kube::{Client, Config};
use tokio::sync::Mutex;

use super::KubeError;
use crate::gate::Gate;

/// Where the cluster's API is: a kubeconfig file and the context to use in it.
#[derive(Clone, Debug)]
pub struct Kubeconfig {
    pub path: PathBuf,
    pub context: Option<String>,
}

/// The client configuration of a kubeconfig's context (for clients that need their own
/// settings, such as the Kubeflow Pipelines client reached through the service proxy).
pub async fn config(kubeconfig: &Kubeconfig) -> Result<Config, KubeError> {
    let path = kubeconfig.path.display().to_string();
    let unusable = |message: String| KubeError::Kubeconfig {
        path: path.clone(),
        message,
    };
    let file = kube::config::Kubeconfig::read_from(&kubeconfig.path)
        .map_err(|e| unusable(e.to_string()))?;
    let options = kube::config::KubeConfigOptions {
        context: kubeconfig.context.clone(),
        ..Default::default()
    };
    Config::from_custom_kubeconfig(file, &options)
        .await
        .map_err(|e| unusable(e.to_string()))
}

/// A connected client plus a cache of resolved kinds.
#[derive(Clone)]
pub struct Kube {
    pub(super) client: Client,
    /// The same, without kube's built-in retries, which retry a 503 for minutes: through the
    /// service proxy a 503 is the answer (no ready pod behind the Service) and must be heard.
    proxy: Client,
    url: String,
    pub(super) kinds:
        std::sync::Arc<Mutex<HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>>>,
    pub(super) gate: Gate,
}

impl Kube {
    /// Connects with the kubeconfig's context; checks the API answers. Every write passes `gate`.
    pub async fn connect(kubeconfig: &Kubeconfig, gate: Gate) -> Result<Kube, KubeError> {
        let mut config = config(kubeconfig).await?;
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static(concat!("kgf-up/", env!("CARGO_PKG_VERSION"))),
        ));
        let url = config.cluster_url.to_string();
        let unreachable = |e: kube::Error| KubeError::Unreachable {
            url: url.clone(),
            message: e.to_string(),
        };
        let mut once = config.clone();
        once.default_retry = false;
        let proxy = Client::try_from(once).map_err(unreachable)?;
        let client = Client::try_from(config).map_err(unreachable)?;
        client
            .apiserver_version()
            .await
            .map_err(|e| KubeError::Unreachable {
                url: url.clone(),
                message: e.to_string(),
            })?;
        Ok(Kube {
            client,
            proxy,
            url,
            kinds: Default::default(),
            gate,
        })
    }

    /// The gate every write to this cluster passes.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The client for requests through the API server's service proxy (no retries).
    pub fn proxy_client(&self) -> Client {
        self.proxy.clone()
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}
