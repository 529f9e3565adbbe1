//! The cluster as seen from this machine: the kubeconfig fetched from the first server, and every
//! host's Node Ready through the API.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

use super::config::KUBECONFIG_PATH;
use super::{Rke2Error, Rke2Plan, ids, kubeconfig};
use crate::kube::Kubeconfig;
use crate::step::{Ctx, Description, Observation, Step, StepId, StepResult};
use crate::wait::{self, Seen, Stop};

/// Fetches rke2.yaml, rewrites it (server address, names) and writes it with mode 0600.
pub struct KubeconfigStep {
    pub plan: Arc<Rke2Plan>,
    pub needs: Vec<StepId>,
}

impl KubeconfigStep {
    /// The kubeconfig as it should be on this machine. It holds the admin's client key: fetched
    /// with its output kept out of the log.
    async fn wanted(&self) -> Result<String, Rke2Error> {
        let first = self.plan.first_server();
        let target = Rke2Plan::target(first);
        let cmd = self
            .plan
            .ssh
            .command(&target, &format!("sudo -n cat {KUBECONFIG_PATH}"))
            .secret_stdout();
        let raw = self.plan.ssh.run(&target, cmd).await?.stdout;
        Ok(kubeconfig::rewrite(
            &raw,
            &first.address,
            &self.plan.spec.name,
        )?)
    }

    fn publish(&self, ctx: &Ctx, path: &Path) {
        let _ = ctx.kubeconfig.set(Kubeconfig {
            path: path.to_path_buf(),
            context: Some(self.plan.spec.name.clone()),
        });
    }

    async fn observe_inner(&self, ctx: &Ctx) -> Result<Observation, Rke2Error> {
        let path = self.plan.kubeconfig_path(ctx);
        let wanted = self.wanted().await?;
        let Ok(have) = std::fs::read_to_string(&path) else {
            return Ok(Observation::missing(format!(
                "{} does not exist",
                path.display()
            )));
        };
        let mode = std::fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        if have != wanted || mode != 0o600 {
            return Ok(Observation::drifted(format!(
                "{} differs from the first server's kubeconfig",
                path.display()
            )));
        }
        if let Some(user) = self.merge_target() {
            let theirs = std::fs::read_to_string(&user).unwrap_or_default();
            if !kubeconfig::is_merged(&theirs, &wanted) {
                return Ok(Observation::drifted(format!(
                    "{} does not have context {} as it should be",
                    user.display(),
                    self.plan.spec.name
                )));
            }
        }
        self.publish(ctx, &path);
        Ok(Observation::converged(format!(
            "{} is current",
            path.display()
        )))
    }

    async fn apply_inner(&self, ctx: &Ctx) -> Result<(), Rke2Error> {
        let path = self.plan.kubeconfig_path(ctx);
        let wanted = self.wanted().await?;
        write_private(&path, wanted.as_bytes()).map_err(|source| Rke2Error::Io {
            path: path.clone(),
            source,
        })?;
        if let Some(user) = self.merge_target() {
            let theirs = std::fs::read_to_string(&user).unwrap_or_default();
            let merged = kubeconfig::merge(&theirs, &wanted)?;
            write_private(&user, merged.as_bytes()).map_err(|source| Rke2Error::Io {
                path: user.clone(),
                source,
            })?;
        }
        self.publish(ctx, &path);
        Ok(())
    }

    /// `merge_into`, with a leading `~/` meaning the home directory.
    fn merge_target(&self) -> Option<PathBuf> {
        let path = self.plan.spec.merge_into.as_ref()?;
        Some(
            match (path.strip_prefix("~").ok(), std::env::var_os("HOME")) {
                (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
                _ => path.clone(),
            },
        )
    }
}

/// Writes `content` to `path` readable by the owner only, also when the file existed with a wider
/// mode: the mode is narrowed before the content is written.
fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.set_len(0)?;
    file.write_all(content)?;
    file.sync_all()
}

impl Step for KubeconfigStep {
    fn id(&self) -> StepId {
        ids::kubeconfig()
    }
    fn needs(&self) -> Vec<StepId> {
        self.needs.clone()
    }
    fn describe(&self) -> Description {
        Description {
            source: format!("{KUBECONFIG_PATH} on {}", self.plan.first_server().address),
            commands: vec![format!(
                "ssh {} sudo cat {KUBECONFIG_PATH}  (output not logged)",
                self.plan.first_server().address
            )],
            objects: Vec::new(),
            component: None,
            files: Vec::new(),
        }
    }
    fn observe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<Observation>> {
        async move {
            self.observe_inner(ctx)
                .await
                .map_err(|e| e.step("reading the cluster's kubeconfig"))
        }
        .boxed()
    }
    fn apply<'a>(&'a self, ctx: &'a Ctx, _seen: &'a Observation) -> BoxFuture<'a, StepResult<()>> {
        async move {
            if ctx.exec.gate().recording() {
                return Ok(());
            }
            self.apply_inner(ctx)
                .await
                .map_err(|e| e.step("writing the cluster's kubeconfig"))
        }
        .boxed()
    }
}

/// Every host's Node is Ready (named after the host's hostname, as rke2 names it by default).
pub struct NodesStep {
    pub plan: Arc<Rke2Plan>,
    pub needs: Vec<StepId>,
}

impl NodesStep {
    fn expected(&self) -> Vec<(String, String)> {
        self.plan
            .spec
            .hosts
            .iter()
            .map(|h| {
                let name = self
                    .plan
                    .facts_of(&h.address)
                    .map(|f| f.hostname)
                    .unwrap_or_else(|| h.address.clone());
                (h.address.clone(), name)
            })
            .collect()
    }

    /// Hosts whose Node is missing or not Ready, with why.
    async fn not_ready(&self, ctx: &Ctx) -> Result<Vec<String>, Rke2Error> {
        let kc = ctx.kubeconfig().map_err(|e| Rke2Error::Api(e.message))?;
        let config = crate::kube::config(kc)
            .await
            .map_err(|e| Rke2Error::Api(e.to_string()))?;
        let client = kube::Client::try_from(config).map_err(|e| Rke2Error::Api(e.to_string()))?;
        let nodes = Api::<Node>::all(client)
            .list(&ListParams::default())
            .await
            .map_err(|e| Rke2Error::Api(e.to_string()))?;
        let mut pending = Vec::new();
        for (address, name) in self.expected() {
            let node = nodes
                .items
                .iter()
                .find(|n| n.metadata.name.as_deref() == Some(&name));
            match node.map(crate::kube::ready::node_not_ready) {
                None => pending.push(format!("{address}: no Node {name}")),
                Some(None) => {}
                Some(Some(why)) => pending.push(format!("{address}: Node {name} {why}")),
            }
        }
        Ok(pending)
    }
}

impl Step for NodesStep {
    fn id(&self) -> StepId {
        ids::nodes()
    }
    fn needs(&self) -> Vec<StepId> {
        self.needs.clone()
    }
    fn describe(&self) -> Description {
        Description {
            source: "the cluster's API".into(),
            commands: Vec::new(),
            objects: self
                .plan
                .spec
                .hosts
                .iter()
                .map(|h| format!("Node {} (Ready)", h.address))
                .collect(),
            component: None,
            files: Vec::new(),
        }
    }
    fn observe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<Observation>> {
        async move {
            let pending = self
                .not_ready(ctx)
                .await
                .map_err(|e| e.step("listing the cluster's nodes"))?;
            Ok(if pending.is_empty() {
                Observation::converged(format!("{} nodes Ready", self.plan.spec.hosts.len()))
            } else {
                Observation::missing(pending.join("; "))
            })
        }
        .boxed()
    }
    fn apply<'a>(&'a self, _ctx: &'a Ctx, _seen: &'a Observation) -> BoxFuture<'a, StepResult<()>> {
        // Nodes register themselves when rke2 starts; there is nothing to do but wait.
        async { Ok(()) }.boxed()
    }
    fn wait<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<()>> {
        async move {
            if ctx.exec.gate().recording() {
                return Ok(());
            }
            let ready = wait::until(ctx.timeout, Duration::from_secs(2), || async {
                let pending = self.not_ready(ctx).await?;
                Ok::<_, Rke2Error>(if pending.is_empty() {
                    Seen::Ready(())
                } else {
                    Seen::Not(pending.join("\n"))
                })
            });
            match ready.await {
                Ok(()) => Ok(()),
                Err(Stop::Failed(e)) => Err(e.step("waiting for the cluster's nodes")),
                Err(Stop::TimedOut { waited, last }) => Err(crate::step::StepError::new(format!(
                    "{} of {} nodes are not Ready after {}s",
                    last.lines().count(),
                    self.plan.spec.hosts.len(),
                    waited.as_secs()
                ))
                .with_diagnosis(last)
                .with_fix("on each host named, see `journalctl -u rke2-server` or `journalctl -u rke2-agent`")),
            }
        }
        .boxed()
    }
}
