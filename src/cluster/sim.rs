//! The `sim` provider: a kwokctl control plane (real etcd, API server, controller-manager,
//! scheduler) whose nodes are simulated by kwok, some advertising `nvidia.com/gpu`. Pods are
//! scheduled but never run a container. Users need only kwokctl; the control-plane binaries are
//! taken from `KGF_TESTBED_BIN` or PATH when present, so nothing is downloaded.

use std::path::PathBuf;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};

use crate::exec::Cmd;
use crate::gate::Change;
use crate::kube::Kubeconfig;
use crate::profile::{Profile, SimNode};
use crate::step::{Ctx, Description, Observation, Step, StepError, StepId, StepResult};
use crate::wait::{self, Seen, Stop};

pub struct Sim {
    name: String,
    nodes: Vec<SimNode>,
    /// Time-slices per GPU (`gpu.time_slicing`): what the device plugin would advertise.
    replicas: u32,
    kwokctl: String,
    state: PathBuf,
}

/// Control-plane binaries kwokctl would otherwise download, with the kwokctl option for each.
const BINARIES: &[(&str, &str)] = &[
    ("etcd", "etcdBinary"),
    ("kube-apiserver", "kubeApiserverBinary"),
    ("kube-controller-manager", "kubeControllerManagerBinary"),
    ("kube-scheduler", "kubeSchedulerBinary"),
    ("kwok", "kwokControllerBinary"),
    ("kubectl", "kubectlBinary"),
];

impl Sim {
    pub fn new(profile: &Profile) -> Self {
        Sim {
            name: profile.name.clone(),
            nodes: profile.cluster.sim.nodes.clone(),
            replicas: profile.gpu.replicas(),
            kwokctl: profile.tools.kwokctl.clone(),
            state: super::state_dir(&profile.name),
        }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.state.join("kubeconfig")
    }

    fn kwokctl(&self) -> Cmd {
        Cmd::new(&self.kwokctl).env(
            "KWOK_WORKDIR",
            self.state.join("kwok").display().to_string(),
        )
    }

    /// kwokctl's configuration: loopback only, local binaries where found.
    fn config(&self) -> String {
        let search = std::env::var_os("KGF_TESTBED_BIN").map(PathBuf::from);
        let mut options = String::from("  runtime: binary\n  bindAddress: 127.0.0.1\n");
        for (binary, option) in BINARIES {
            let found = search
                .as_ref()
                .map(|d| d.join(binary))
                .filter(|p| p.exists())
                .or_else(|| which::which(binary).ok());
            if let Some(path) = found {
                options.push_str(&format!("  {option}: {}\n", path.display()));
            }
        }
        format!(
            "apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokctlConfiguration\noptions:\n{options}\
             componentsPatches:\n  - name: kube-apiserver\n    extraArgs:\n      - key: advertise-address\n        value: 127.0.0.1\n"
        )
    }

    /// A simulated node; its GPUs advertised as the device plugin would, `replicas` per GPU.
    fn node(n: &SimNode, replicas: u32) -> Node {
        let mut resources =
            serde_json::json!({"cpu": n.cpu.to_string(), "memory": n.memory, "pods": "110"});
        let mut labels = serde_json::json!({
            "kubernetes.io/hostname": n.name, "kubernetes.io/os": "linux", "type": "kwok"
        });
        if n.gpus > 0 {
            resources["nvidia.com/gpu"] =
                (u64::from(n.gpus) * u64::from(replicas)).to_string().into();
            labels["nvidia.com/gpu.present"] = "true".into();
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": n.name, "labels": labels, "annotations": {"kwok.x-k8s.io/node": "fake"}},
            "status": {"capacity": resources, "allocatable": resources}
        }))
        .expect("a node")
    }

    async fn cluster_exists(&self, ctx: &Ctx) -> StepResult<bool> {
        let out = ctx
            .exec
            .run_async(self.kwokctl().args(["get", "clusters"]))
            .await
            .map_err(|e| {
                StepError::context("listing kwok clusters", e)
                    .with_fix(
                        "install kwokctl 0.8 (go install sigs.k8s.io/kwok/cmd/kwokctl@v0.8.0)",
                    )
                    .preflight()
            })?;
        Ok(out.stdout.lines().any(|l| l.trim() == self.name) && self.kubeconfig().exists())
    }
}

impl Step for Sim {
    fn id(&self) -> StepId {
        super::id()
    }

    fn needs(&self) -> Vec<StepId> {
        Vec::new()
    }

    fn describe(&self) -> Description {
        let gpus: u32 = self.nodes.iter().map(|n| n.gpus).sum();
        Description {
            source: format!(
                "sim (kwok): {} simulated nodes, {gpus} GPUs; pods do not run",
                self.nodes.len()
            ),
            commands: vec![format!(
                "{} create cluster --name {} --runtime binary",
                self.kwokctl, self.name
            )],
            objects: self
                .nodes
                .iter()
                .map(|n| format!("Node {}", n.name))
                .collect(),
            component: None,
            files: Vec::new(),
        }
    }

    fn observe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<Observation>> {
        async move {
            if !self.cluster_exists(ctx).await? {
                return Ok(Observation::missing(format!(
                    "no kwok cluster named {}",
                    self.name
                )));
            }
            let _ = ctx.kubeconfig.set(Kubeconfig {
                path: self.kubeconfig(),
                context: None,
            });
            let nodes: Api<Node> = Api::all(ctx.kube().await?.client());
            for n in &self.nodes {
                if nodes
                    .get_opt(&n.name)
                    .await
                    .map_err(|e| StepError::context("reading nodes", e))?
                    .is_none()
                {
                    return Ok(Observation::drifted(format!(
                        "simulated node {} is missing",
                        n.name
                    )));
                }
            }
            Ok(Observation::converged(format!(
                "simulated cluster {} with {} nodes",
                self.name,
                self.nodes.len()
            )))
        }
        .boxed()
    }

    fn apply<'a>(&'a self, ctx: &'a Ctx, seen: &'a Observation) -> BoxFuture<'a, StepResult<()>> {
        async move {
            if seen.state == crate::step::State::Missing {
                let config = self.state.join("kwokctl.yaml");
                let text = self.config();
                ctx.gate()
                    .change_now(Change::file(config.display(), "", &text), || {
                        std::fs::create_dir_all(&self.state)?;
                        std::fs::write(&config, &text)
                    })
                    .map_err(|e| StepError::new(format!("cannot write {}: {e}", config.display())))?;
                ctx.exec
                    .run_async(
                        self.kwokctl()
                            .args(["create", "cluster", "--name", &self.name, "--config"])
                            .arg(config.display().to_string())
                            .args(["--kubeconfig", &self.kubeconfig().display().to_string(), "--wait", "60s"])
                            .timeout(Duration::from_secs(180))
                            .changes(),
                    )
                    .await
                    .map_err(|e| {
                        StepError::context("creating the simulated cluster", e).with_fix(
                            "put kube-apiserver, etcd, kube-controller-manager, kube-scheduler and kwok on PATH \
                             (or KGF_TESTBED_BIN), or let kwokctl download them with internet access",
                        )
                    })?;
                if ctx.gate().recording() {
                    // The cluster was not made: its nodes cannot be planned against it.
                    return Ok(());
                }
                let _ = ctx.kubeconfig.set(Kubeconfig {
                    path: self.kubeconfig(),
                    context: None,
                });
            }
            let nodes: Api<Node> = Api::all(ctx.kube().await?.client());
            for n in &self.nodes {
                if nodes.get_opt(&n.name).await.ok().flatten().is_none() {
                    // Created with status: kwok keeps the capacity and allocatable it finds.
                    let params = PostParams { field_manager: Some(crate::kube::FIELD_MANAGER.into()), ..Default::default() };
                    let node = Sim::node(n, self.replicas);
                    ctx.gate()
                        .change(Change::new(format!("create simulated Node {}", n.name)), nodes.create(&params, &node))
                        .await
                        .map_err(|e| StepError::context(format!("creating simulated node {}", n.name), e))?;
                }
            }
            Ok(())
        }
        .boxed()
    }

    fn wait<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<()>> {
        async move {
            let kube = ctx.kube().await?;
            let all = self.nodes.len();
            let ready = wait::until(
                Duration::from_secs(60),
                Duration::from_millis(500),
                || async {
                    let nodes: Api<Node> = Api::all(kube.client());
                    let list = nodes
                        .list(&Default::default())
                        .await
                        .map_err(|e| StepError::context("reading nodes", e))?;
                    let ready = list
                        .items
                        .iter()
                        .filter(|n| crate::kube::ready::node_not_ready(n).is_none())
                        .count();
                    Ok(if ready >= all {
                        Seen::Ready(())
                    } else {
                        Seen::Not(format!("{ready} of {all} simulated nodes Ready"))
                    })
                },
            );
            match ready.await {
                Ok(()) => Ok(()),
                Err(Stop::Failed(e)) => Err(e),
                Err(Stop::TimedOut { waited, last }) => Err(StepError::new(format!(
                    "{last} after {}s",
                    waited.as_secs()
                ))
                .with_fix(
                    "check that kwok runs: kwokctl logs kwok-controller --name <profile name>",
                )),
            }
        }
        .boxed()
    }
}

/// Deletes the simulated cluster (for `down`).
pub fn delete(exec: &crate::exec::Exec, profile: &Profile) -> StepResult<()> {
    let sim = Sim::new(profile);
    exec.run(
        &sim.kwokctl()
            .args(["delete", "cluster", "--name", &sim.name])
            .changes(),
    )
    .map_err(|e| StepError::context("deleting the simulated cluster", e))?;
    let _ = std::fs::remove_dir_all(&sim.state);
    Ok(())
}
