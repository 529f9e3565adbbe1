//! Step `kind/cluster`: the kind cluster exists with the profile's config.
//!
//! Creates the cluster only when no cluster of the name exists. When one exists, compares the
//! config recorded in it ([`super::record`]) with the rendered one and names every difference;
//! it deletes and re-creates the cluster only when the profile sets `recreate: true`, or when it
//! is one kgf-up began to create and never finished (a run killed during `kind create`: a marker
//! file in the work dir says so, and nothing in such a cluster can be the user's).

use futures::FutureExt;
use futures::future::BoxFuture;

use super::cmds::{self, CREATE_TIMEOUT, kubectl};
use super::{KindError, KindPlan, ids, record};
use crate::exec::Cmd;
use crate::gate::Change;
use crate::kube::Kubeconfig;
use crate::step::{Ctx, Description, Observation, State, Step, StepError, StepId};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct ClusterStep {
    pub(super) plan: Arc<KindPlan>,
    pub(super) needs: Vec<StepId>,
    /// Observe found a cluster kgf-up began to create and did not finish.
    pub(super) unfinished: AtomicBool,
}

impl ClusterStep {
    fn name(&self) -> &str {
        &self.plan.spec.name
    }

    fn create_cmd(&self, ctx: &Ctx) -> Cmd {
        Cmd::new("kind")
            .args(["create", "cluster", "--name", self.name()])
            .arg(format!("--config={}", self.plan.config_path(ctx).display()))
            // kind writes only this file (mode 0600); the user's kubeconfig changes only in
            // `kind/context`.
            .arg(format!(
                "--kubeconfig={}",
                self.plan.kubeconfig_path(ctx).display()
            ))
            .timeout(CREATE_TIMEOUT)
            .headline("ERROR:")
            .changes()
    }

    fn delete_cmd(&self) -> Cmd {
        Cmd::new("kind")
            .args(["delete", "cluster", "--name", self.name()])
            .timeout(CREATE_TIMEOUT)
            .headline("ERROR:")
            .changes()
    }

    /// A failed `kind create cluster`: kind's reason (its `ERROR:` line is in the error), and a
    /// fix that fits what kind left behind: on failure kind deletes the nodes it made, so
    /// commands against them would find nothing.
    async fn create_failed(&self, ctx: &Ctx, e: KindError) -> StepError {
        let name = self.name();
        let left = ctx
            .exec
            .run_async(Cmd::new("kind").args(["get", "nodes", "--name", name]))
            .await
            .map(|o| {
                o.stdout
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let fix = match left.first() {
            None => format!(
                "kind has already removed the nodes it made: fix the cause in kind's ERROR line, then run kgf-up again. To look inside a failing node, keep it: kind create cluster --retain --name {name} --config={config}, then docker exec {name}-control-plane journalctl -u kubelet --no-pager | tail -50, and kind delete cluster --name {name} when done",
                config = self.plan.config_path(ctx).display()
            ),
            Some(node) => format!(
                "kind left node(s) {}: see docker exec {node} journalctl -u kubelet --no-pager | tail -50, then remove them with kind delete cluster --name {name} and run kgf-up again",
                left.join(", ")
            ),
        };
        StepError::new(crate::fix::chain(&e)).with_fix(fix)
    }

    /// Has kind write the cluster's kubeconfig to kgf-up's own file in the run's work dir and
    /// hands it to later steps. kind writes the file itself, so the client key never passes
    /// through kgf-up's output or run log; and since it touches nothing the user owns, it runs
    /// under `plan` too (a read as far as the gate is concerned).
    async fn export_kubeconfig(&self, ctx: &Ctx) -> Result<(), KindError> {
        let path = self.plan.kubeconfig_path(ctx);
        create_parent(&path)?;
        cmds::run(
            &ctx.exec,
            Cmd::new("kind")
                .args(["export", "kubeconfig", "--name", self.name()])
                .arg(format!("--kubeconfig={}", path.display())),
            "writing the kind cluster's kubeconfig",
        )
        .await?;
        self.set_kubeconfig(ctx);
        Ok(())
    }

    fn set_kubeconfig(&self, ctx: &Ctx) {
        // Already set means an earlier phase of this run did it, with the same value.
        let _ = ctx.kubeconfig.set(Kubeconfig {
            path: self.plan.kubeconfig_path(ctx),
            context: Some(self.plan.spec.context()),
        });
    }

    /// Written before `kind create cluster`, removed once the config is recorded in the cluster:
    /// while it exists, a cluster of this name may be one kgf-up did not finish making.
    fn unfinished_marker(&self, ctx: &Ctx) -> PathBuf {
        ctx.work_dir
            .join(format!("kind-{}.creating", self.plan.spec.name))
    }

    async fn observe_inner(&self, ctx: &Ctx) -> Result<Observation, KindError> {
        self.unfinished.store(false, Ordering::Relaxed);
        let clusters = cmds::run(
            &ctx.exec,
            Cmd::new("kind").args(["get", "clusters"]),
            "listing kind clusters",
        )
        .await?;
        if !clusters.lines().any(|l| l.trim() == self.name()) {
            return Ok(Observation::missing(format!(
                "no kind cluster named {}",
                self.name()
            )));
        }
        let seen = self.observe_recorded(ctx).await;
        if self.unfinished_marker(ctx).exists() && !matches!(&seen, Ok(Some(_))) {
            self.unfinished.store(true, Ordering::Relaxed);
            return Ok(Observation::drifted(format!(
                "kind cluster {} is one kgf-up began to create and did not finish (that run was stopped): it is deleted and created again",
                self.name()
            )));
        }
        Ok(seen?.unwrap_or_else(|| {
            Observation::drifted(format!(
                "kind cluster {} exists but has no config recorded by kgf-up (ConfigMap {}/{}): it was made by something else, so its nodes, GPU mounts and registry patch are unknown",
                self.name(),
                record::NAMESPACE,
                record::NAME
            ))
        }))
    }

    /// The existing cluster against the config recorded in it; `None` when it has no record.
    async fn observe_recorded(&self, ctx: &Ctx) -> Result<Option<Observation>, KindError> {
        self.export_kubeconfig(ctx).await?;
        let kc = ctx.kubeconfig.get().expect("set by export_kubeconfig");
        let configmap = cmds::get_object(
            &ctx.exec,
            kc,
            "configmap",
            Some(record::NAMESPACE),
            record::NAME,
        )
        .await?;
        let Some(recorded) = configmap.as_ref().and_then(record::recorded) else {
            return Ok(None);
        };
        let differences = record::diff(recorded, &self.plan.config)?;
        Ok(Some(if differences.is_empty() {
            Observation::converged(format!(
                "kind cluster {} exists with the profile's config",
                self.name()
            ))
        } else {
            Observation::drifted(format!(
                "kind cluster {} was created with a different config (recorded → profile):\n  {}",
                self.name(),
                differences.join("\n  ")
            ))
        }))
    }

    async fn apply_inner(&self, ctx: &Ctx, seen: &Observation) -> Result<(), StepError> {
        let unfinished = self.unfinished.load(Ordering::Relaxed);
        if seen.state == State::Drifted {
            if !self.plan.spec.recreate && !unfinished {
                return Err(StepError::new(format!(
                    "{}; kind cannot change an existing cluster",
                    seen.reason
                ))
                .with_fix(format!(
                    "to delete and re-create it (everything in it is lost): --set cluster.kind.recreate=true; to keep it: change the profile back, or use another cluster.kind.name; to remove it: kgf-up down (or kind delete cluster --name {})",
                    self.name()
                ))
                .input());
            }
            if unfinished {
                tracing::warn!(cluster = %self.name(), "deleting the cluster an interrupted run left half made");
            } else {
                tracing::warn!(cluster = %self.name(), "recreate is set: deleting the cluster to re-create it");
            }
            cmds::run(&ctx.exec, self.delete_cmd(), "deleting the kind cluster")
                .await
                .map_err(|e| StepError::context("re-creating the kind cluster", e))?;
        }
        let config_path = self.plan.config_path(ctx);
        ctx.gate()
            .change_now(
                Change::file(config_path.display(), "", &self.plan.config),
                || {
                    create_parent(&config_path)?;
                    std::fs::write(&config_path, &self.plan.config).map_err(|source| {
                        KindError::Io {
                            path: config_path.clone(),
                            source,
                        }
                    })
                },
            )
            .map_err(|e| StepError::context("writing the kind config", e))?;
        let marker = self.unfinished_marker(ctx);
        if !ctx.gate().recording() {
            std::fs::write(&marker, &self.plan.config)
                .map_err(|source| KindError::Io {
                    path: marker.clone(),
                    source,
                })
                .map_err(|e| StepError::context("marking the cluster as being created", e))?;
        }
        if let Err(e) =
            cmds::run(&ctx.exec, self.create_cmd(ctx), "creating the kind cluster").await
        {
            return Err(self.create_failed(ctx, e).await);
        }
        if ctx.gate().recording() {
            // No cluster was made: there is nothing to record the config in. What `plan` sees
            // of the old cluster says nothing of the new one.
            if seen.state == State::Drifted {
                ctx.cluster_replaced().await?;
            }
            return Ok(());
        }
        self.set_kubeconfig(ctx);
        if seen.state == State::Drifted {
            // Same kubeconfig path, new cluster: nothing of this run may keep talking to the
            // old one (its client, inventory and lock were taken before this step's apply).
            ctx.cluster_replaced().await?;
        }
        let kc = ctx.kubeconfig()?;
        cmds::run(
            &ctx.exec,
            cmds::apply_object(kc, &record::manifest(&self.plan.config)),
            "recording the kind config in the cluster",
        )
        .await
        .map_err(|e| StepError::context("recording the kind config", e))?;
        // The cluster is whole and says so itself from here on.
        std::fs::remove_file(&marker)
            .map_err(|source| KindError::Io {
                path: marker.clone(),
                source,
            })
            .map_err(|e| StepError::context("clearing the creation marker", e))?;
        Ok(())
    }
}

fn create_parent(path: &std::path::Path) -> Result<(), KindError> {
    match path.parent() {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|source| KindError::Io {
            path: dir.to_path_buf(),
            source,
        }),
        None => Ok(()),
    }
}

impl Step for ClusterStep {
    fn id(&self) -> StepId {
        ids::cluster()
    }

    fn needs(&self) -> Vec<StepId> {
        self.needs.clone()
    }

    fn describe(&self) -> Description {
        Description {
            source: format!(
                "kind ({}), node image {}",
                super::KIND_VERSION,
                self.plan.spec.node_image
            ),
            commands: vec![
                "kind get clusters".to_string(),
                format!(
                    "kind create cluster --name {} --config=<work dir>/kind-{}.yaml --kubeconfig=<work dir>/kind-{}.kubeconfig",
                    self.name(),
                    self.name(),
                    self.name()
                ),
            ],
            objects: vec![format!("ConfigMap {}/{}", record::NAMESPACE, record::NAME)],
            component: None,
            files: vec![crate::step::ShownFile {
                path: format!("<work dir>/kind-{}.yaml", self.name()),
                content: self.plan.config.clone(),
            }],
        }
    }

    fn observe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<Observation, StepError>> {
        async move {
            self.observe_inner(ctx).await.map_err(|e| {
                // The cluster is listed but its API server does not answer, or (with the
                // containers stopped) kind cannot read its kubeconfig from the control plane:
                // docker says the container "is not running".
                let unreachable = match &e {
                    KindError::Exec { what, source } => {
                        what.starts_with("reading configmap")
                            || source.to_string().contains("is not running")
                    }
                    _ => false,
                };
                let err = StepError::context("observing the kind cluster", e);
                if unreachable {
                    err.with_fix(format!(
                        "start the cluster's node containers: docker start $(kind get nodes --name {})",
                        self.name()
                    ))
                } else {
                    err
                }
            })
        }
        .boxed()
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a Ctx,
        seen: &'a Observation,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        self.apply_inner(ctx, seen).boxed()
    }

    fn wait<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<(), StepError>> {
        async move {
            let kc = ctx.kubeconfig()?;
            let secs = ctx.timeout.as_secs().max(1);
            let wait = kubectl(kc)
                .args(["wait", "--for=condition=Ready", "nodes", "--all"])
                .arg(format!("--timeout={secs}s"))
                .timeout(ctx.timeout + std::time::Duration::from_secs(30));
            if let Err(e) = ctx.exec.run_async(wait).await {
                let nodes = ctx
                    .exec
                    .run_async(kubectl(kc).args(["get", "nodes", "-o", "wide"]))
                    .await
                    .map(|o| o.stdout)
                    .unwrap_or_else(|e| e.to_string());
                return Err(StepError::context(
                    format!("waiting {secs}s for the kind nodes to be Ready"),
                    e,
                )
                .with_diagnosis(nodes)
                .with_fix(format!(
                    "look at the node's kubelet: docker exec {}-control-plane journalctl -u kubelet --no-pager | tail -50",
                    self.name()
                )));
            }
            Ok(())
        }
        .boxed()
    }
}
