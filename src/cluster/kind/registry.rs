//! Steps for the local registry (kind's documented recipe): `kind/registry` (the container, on
//! the `kind` network), `kind/registry-hosts/<node>` (containerd's `hosts.toml` in each node) and
//! `kind/registry-hosting` (ConfigMap `kube-public/local-registry-hosting`, KEP-1755).
//!
//! An existing container of the name is reused; one published on another port is reported, never
//! removed (it may be the user's).

use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::cmds;
use super::config::CERTS_DIR;
use super::{KindError, KindPlan, ids};
use crate::exec::{Cmd, ExecError};
use crate::step::{Ctx, Description, Observation, Step, StepError, StepId};

/// What `docker inspect` says about the registry container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryFacts {
    pub running: bool,
    pub image: String,
    /// `HostIp:HostPort` bound to the container's port 5000, if any.
    pub published: Option<String>,
    pub networks: Vec<String>,
}

/// Parses `docker inspect <container>` (a JSON array with one object).
pub fn parse_inspect(text: &str) -> Result<RegistryFacts, KindError> {
    let parse_err = |detail: String| KindError::Parse {
        what: "docker inspect of the registry container".into(),
        detail,
    };
    let value: Value = serde_json::from_str(text).map_err(|e| parse_err(e.to_string()))?;
    let c = value
        .get(0)
        .ok_or_else(|| parse_err("empty array".into()))?;
    let published = c["HostConfig"]["PortBindings"]["5000/tcp"].get(0).map(|b| {
        let ip = b["HostIp"].as_str().unwrap_or("");
        let port = b["HostPort"].as_str().unwrap_or("");
        format!("{}:{port}", if ip.is_empty() { "0.0.0.0" } else { ip })
    });
    let mut networks: Vec<String> = c["NetworkSettings"]["Networks"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    networks.sort();
    Ok(RegistryFacts {
        running: c["State"]["Running"].as_bool().unwrap_or(false),
        image: c["Config"]["Image"].as_str().unwrap_or("").to_string(),
        published,
        networks,
    })
}

/// The container step. Observe remembers what it saw so apply does only the missing parts.
pub struct RegistryStep {
    pub(super) plan: Arc<KindPlan>,
    pub(super) seen: Mutex<Option<RegistryFacts>>,
}

impl RegistryStep {
    fn wanted_binding(&self) -> String {
        format!("127.0.0.1:{}", self.plan.spec.registry.host_port)
    }

    fn run_cmd(&self) -> Cmd {
        let r = &self.plan.spec.registry;
        Cmd::new("docker")
            .args(["run", "-d", "--restart=always", "-p"])
            .arg(format!("127.0.0.1:{}:5000", r.host_port))
            .args(["--network", "bridge", "--name", &r.name, &r.image])
            .timeout(cmds::INSTALL_TIMEOUT)
            .changes()
    }

    fn connect_cmd(&self) -> Cmd {
        Cmd::new("docker")
            .args(["network", "connect", "kind", &self.plan.spec.registry.name])
            .changes()
    }

    async fn inspect(&self, ctx: &Ctx) -> Result<Option<RegistryFacts>, StepError> {
        let name = &self.plan.spec.registry.name;
        match ctx
            .exec
            .run_async(Cmd::new("docker").args(["inspect", name]))
            .await
        {
            Ok(out) => parse_inspect(&out.stdout)
                .map(Some)
                .map_err(|e| StepError::context("observing the registry", e)),
            Err(ExecError::Failed { stderr, .. })
                if stderr.to_lowercase().contains("no such object") =>
            {
                Ok(None)
            }
            Err(e) => Err(StepError::context("observing the registry container", e)),
        }
    }
}

impl Step for RegistryStep {
    fn id(&self) -> StepId {
        ids::registry()
    }

    fn needs(&self) -> Vec<StepId> {
        // The `kind` docker network exists once kind has created a cluster.
        vec![ids::cluster()]
    }

    fn describe(&self) -> Description {
        Description {
            source: format!("image {}", self.plan.spec.registry.image),
            commands: vec![self.run_cmd().display(), self.connect_cmd().display()],
            objects: vec![],
            component: None,
            files: Vec::new(),
        }
    }

    fn observe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<Observation, StepError>> {
        async move {
            let name = &self.plan.spec.registry.name;
            let facts = self.inspect(ctx).await?;
            *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = facts.clone();
            let Some(f) = facts else {
                return Ok(Observation::missing(format!("no container named {name}")));
            };
            let mut wrong = Vec::new();
            if f.published.as_deref() != Some(self.wanted_binding().as_str()) {
                return Ok(Observation::failed(format!(
                    "container {name} exists but publishes port 5000 on {}, not {}",
                    f.published.as_deref().unwrap_or("no host port"),
                    self.wanted_binding()
                )));
            }
            if !f.running {
                wrong.push("it is stopped".to_string());
            }
            if !f.networks.iter().any(|n| n == "kind") {
                wrong.push("it is not connected to the kind network".to_string());
            }
            if wrong.is_empty() {
                Ok(Observation::converged(format!(
                    "{name} runs on {} and is on the kind network",
                    self.wanted_binding()
                )))
            } else {
                Ok(Observation::drifted(format!(
                    "container {name} exists but {}",
                    wrong.join(" and ")
                )))
            }
        }
        .boxed()
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a Ctx,
        seen: &'a Observation,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        async move {
            let r = &self.plan.spec.registry;
            if seen.state == crate::step::State::Failed {
                return Err(StepError::new(seen.reason.clone()).with_fix(format!(
                    "remove it (docker rm -f {}) or set cluster.kind.registry.host_port to its port",
                    r.name
                )));
            }
            let facts = self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let mut steps = Vec::new();
            match &facts {
                None => steps.push(self.run_cmd()),
                Some(f) if !f.running => steps.push(
                    Cmd::new("docker").args(["start", &r.name]).changes(),
                ),
                Some(_) => {}
            }
            if !facts.as_ref().is_some_and(|f| f.networks.iter().any(|n| n == "kind")) {
                steps.push(self.connect_cmd());
            }
            for cmd in steps {
                ctx.exec
                    .run_async(cmd)
                    .await
                    .map_err(|e| StepError::context("setting up the registry container", e))?;
            }
            Ok(())
        }
        .boxed()
    }
}

/// `hosts.toml` that sends pulls of `localhost:<port>/...` to the registry container over the
/// kind network (inside a node, localhost is the node itself).
pub fn hosts_toml(registry_name: &str) -> String {
    format!("[host.\"http://{registry_name}:5000\"]\n")
}

/// Step `kind/registry-hosts/<node>`.
pub struct RegistryHostsStep {
    pub(super) plan: Arc<KindPlan>,
    pub(super) node: String,
}

impl RegistryHostsStep {
    fn dir(&self) -> String {
        format!(
            "{CERTS_DIR}/localhost:{}",
            self.plan.spec.registry.host_port
        )
    }

    fn write_cmd(&self) -> Cmd {
        Cmd::new("docker")
            .args(["exec", "-i", &self.node, "sh", "-c"])
            .arg(r#"mkdir -p "$1" && cat > "$1/hosts.toml""#)
            .args(["sh", &self.dir()])
            .stdin(hosts_toml(&self.plan.spec.registry.name))
            .changes()
    }
}

impl Step for RegistryHostsStep {
    fn id(&self) -> StepId {
        ids::registry_hosts(&self.node)
    }

    fn needs(&self) -> Vec<StepId> {
        vec![ids::cluster()]
    }

    fn describe(&self) -> Description {
        Description {
            source: format!("{}/hosts.toml in node {}", self.dir(), self.node),
            commands: vec![self.write_cmd().display()],
            objects: vec![],
            component: None,
            files: Vec::new(),
        }
    }

    fn observe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<Observation, StepError>> {
        async move {
            let path = format!("{}/hosts.toml", self.dir());
            let found = match cmds::read_node_file(&ctx.exec, &self.node, &path).await {
                Ok(found) => found,
                // A node the profile adds to a cluster made with fewer (a drifted worker count):
                // what `up` would do is write it once the node exists, not fail.
                Err(KindError::NoNode { node }) => {
                    return Ok(Observation::missing(format!(
                        "node {node} does not exist yet: the cluster has fewer nodes than the profile"
                    )));
                }
                Err(e) => {
                    return Err(StepError::context(
                        "observing the registry hosts.toml",
                        e,
                    ));
                }
            };
            let wanted = hosts_toml(&self.plan.spec.registry.name);
            Ok(match found {
                None => Observation::missing(format!("{path} is missing in {}", self.node)),
                Some(text) if text.trim() == wanted.trim() => {
                    Observation::converged(format!("{path} points at the registry"))
                }
                Some(_) => Observation::drifted(format!(
                    "{path} in {} does not point at http://{}:5000",
                    self.node, self.plan.spec.registry.name
                )),
            })
        }
        .boxed()
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a Ctx,
        _seen: &'a Observation,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        async move {
            ctx.exec
                .run_async(self.write_cmd())
                .await
                .map(|_| ())
                .map_err(|e| StepError::context(format!("writing hosts.toml in {}", self.node), e))
        }
        .boxed()
    }
}

/// The KEP-1755 ConfigMap that tells tools where the local registry is.
pub fn hosting_manifest(host_port: u16) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "local-registry-hosting", "namespace": "kube-public"},
        "data": {
            "localRegistryHosting.v1": format!(
                "host: \"localhost:{host_port}\"\nhelp: \"https://kind.sigs.k8s.io/docs/user/local-registry/\"\n"
            ),
        },
    })
}

/// Step `kind/registry-hosting`.
pub struct RegistryHostingStep {
    pub(super) plan: Arc<KindPlan>,
}

impl Step for RegistryHostingStep {
    fn id(&self) -> StepId {
        ids::registry_hosting()
    }

    fn needs(&self) -> Vec<StepId> {
        vec![ids::cluster()]
    }

    fn describe(&self) -> Description {
        Description {
            source: "KEP-1755 local registry hosting".to_string(),
            commands: vec![],
            objects: vec!["ConfigMap kube-public/local-registry-hosting".to_string()],
            component: None,
            files: Vec::new(),
        }
    }

    fn observe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<Observation, StepError>> {
        async move {
            let kc = ctx.kubeconfig()?;
            let found = cmds::get_object(
                &ctx.exec,
                kc,
                "configmap",
                Some("kube-public"),
                "local-registry-hosting",
            )
            .await
            .map_err(|e| StepError::context("observing local-registry-hosting", e))?;
            let wanted = hosting_manifest(self.plan.spec.registry.host_port);
            Ok(match found {
                None => {
                    Observation::missing("ConfigMap kube-public/local-registry-hosting is missing")
                }
                Some(cm) if cm["data"] == wanted["data"] => {
                    Observation::converged("local-registry-hosting names the registry")
                }
                Some(_) => Observation::drifted(format!(
                    "local-registry-hosting does not name localhost:{}",
                    self.plan.spec.registry.host_port
                )),
            })
        }
        .boxed()
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a Ctx,
        _seen: &'a Observation,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        async move {
            let kc = ctx.kubeconfig()?;
            let manifest = hosting_manifest(self.plan.spec.registry.host_port);
            ctx.exec
                .run_async(cmds::apply_object(kc, &manifest))
                .await
                .map(|_| ())
                .map_err(|e| StepError::context("applying local-registry-hosting", e))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from the shape `docker inspect` prints (Docker Engine API ContainerInspect).
    const INSPECT: &str = r#"[{"Id":"4f0c","Name":"/kind-registry","State":{"Status":"running","Running":true},
      "Config":{"Image":"registry:3"},
      "HostConfig":{"PortBindings":{"5000/tcp":[{"HostIp":"127.0.0.1","HostPort":"5001"}]}},
      "NetworkSettings":{"Networks":{"bridge":{"IPAddress":"172.17.0.2"},"kind":{"IPAddress":"172.18.0.3"}}}}]"#;

    #[test]
    fn inspect_output_is_parsed() {
        let f = parse_inspect(INSPECT).unwrap();
        assert!(f.running);
        assert_eq!(f.image, "registry:3");
        assert_eq!(f.published.as_deref(), Some("127.0.0.1:5001"));
        assert_eq!(f.networks, ["bridge", "kind"]);
    }

    #[test]
    fn an_unpublished_stopped_container_is_parsed_too() {
        let f = parse_inspect(
            r#"[{"State":{"Running":false},"Config":{"Image":"registry:2"},"HostConfig":{"PortBindings":{}},"NetworkSettings":{"Networks":{"bridge":{}}}}]"#,
        )
        .unwrap();
        assert!(!f.running);
        assert_eq!(f.published, None);
        assert!(parse_inspect("[]").is_err());
    }

    #[test]
    fn hosts_toml_and_hosting_follow_the_recipe() {
        assert_eq!(
            hosts_toml("kind-registry"),
            "[host.\"http://kind-registry:5000\"]\n"
        );
        let m = hosting_manifest(5001);
        assert_eq!(
            m["data"]["localRegistryHosting.v1"],
            "host: \"localhost:5001\"\nhelp: \"https://kind.sigs.k8s.io/docs/user/local-registry/\"\n"
        );
    }
}
