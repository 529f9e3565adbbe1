//! The rke2 cluster a run wants ([`Rke2Plan`]): the profile's hosts, the SSH connections to them,
//! what the run has learned about each, the join token and the install script; and `down`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::StreamExt;

use super::config;
use super::error::Rke2Error;
use super::facts::{self, Facts};
use super::gpu::{GpuHosts, operator_values};
use super::spec::{Gpu, HostSpec, Rke2Spec, Role};
use crate::exec::{Cmd, Exec};
use crate::fix::Fix;
use crate::secret::Secret;
use crate::ssh::{Ssh, SshError, SshOptions, Target};
use crate::step::{Ctx, StepError, StepResult};

/// The rke2 cluster a run wants, and what the run has learned about its hosts.
pub struct Rke2Plan {
    pub spec: Rke2Spec,
    pub(super) ssh: Ssh,
    /// Registry mirrors with their passwords, rendered once.
    pub(super) registries: Option<Secret>,
    /// This run's name in host locks: machine, process and start time.
    pub(super) owner: String,
    pub(super) facts: Mutex<BTreeMap<String, Facts>>,
    pub(super) token: tokio::sync::OnceCell<Secret>,
    pub(super) script: tokio::sync::OnceCell<Vec<u8>>,
    pub(super) permits: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Rke2Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rke2Plan")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl Rke2Plan {
    /// Validates the spec and resolves registry passwords; connects to nothing yet.
    pub fn new(spec: Rke2Spec, exec: &Exec) -> Result<Arc<Self>, Rke2Error> {
        spec.validate()?;
        let passwords = spec
            .registries
            .iter()
            .map(|m| m.auth.as_ref().map(|a| a.password.resolve()).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        let registries = config::render_registries(&spec.registries, &passwords);
        let ssh = Ssh::new(
            exec.clone(),
            SshOptions {
                strict_host_keys: spec.ssh.strict_host_keys,
                known_hosts: spec.ssh.known_hosts.clone(),
                ..SshOptions::default()
            },
        )?;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let machine = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let owner = format!(
            "kgf-up on {} pid {} since {}.{:09}",
            machine.trim(),
            std::process::id(),
            started.as_secs(),
            started.subsec_nanos()
        );
        Ok(Arc::new(Rke2Plan {
            permits: tokio::sync::Semaphore::new(spec.parallelism),
            spec,
            ssh,
            registries,
            owner,
            facts: Mutex::new(BTreeMap::new()),
            token: tokio::sync::OnceCell::new(),
            script: tokio::sync::OnceCell::new(),
        }))
    }

    pub(super) fn first_server(&self) -> &HostSpec {
        self.spec
            .first_server()
            .expect("validated: there is a server")
    }

    /// Where the cluster's kubeconfig is written.
    pub fn kubeconfig_path(&self, ctx: &Ctx) -> PathBuf {
        self.spec.kubeconfig.clone().unwrap_or_else(|| {
            ctx.work_dir
                .join(format!("rke2-{}.kubeconfig", self.spec.name))
        })
    }

    pub fn target(host: &HostSpec) -> Target {
        Target {
            address: host.address.clone(),
            user: host.user.clone(),
            port: host.port,
            identity: host.key.clone(),
        }
    }

    /// Reads `host`'s facts now (one SSH call) and remembers them.
    pub(super) async fn gather(&self, host: &HostSpec) -> Result<Facts, SshError> {
        let before = unix_now();
        let out = self
            .ssh
            .sh(&Self::target(host), &facts::script(host.role))
            .await?;
        let after = unix_now();
        let facts = Facts::parse(&out.stdout, (before + after) / 2);
        self.facts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.address.clone(), facts.clone());
        Ok(facts)
    }

    /// Facts from the last look at `address`.
    pub fn facts_of(&self, address: &str) -> Option<Facts> {
        self.facts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(address)
            .cloned()
    }

    /// Whether `host` has GPUs: as configured, or (`auto`) whether its NVIDIA driver was seen.
    pub fn has_gpu(&self, host: &HostSpec) -> bool {
        match host.gpu {
            Gpu::Yes => true,
            Gpu::No => false,
            Gpu::Auto => self
                .facts_of(&host.address)
                .is_some_and(|f| f.nvidia_driver.is_some()),
        }
    }

    /// The node names (hostnames, which rke2 names nodes after) of the GPU hosts, once their facts
    /// are read; a GPU host whose facts are not read yet is left out.
    pub fn gpu_node_names(&self) -> Vec<String> {
        self.spec
            .hosts
            .iter()
            .filter(|h| self.has_gpu(h))
            .filter_map(|h| self.facts_of(&h.address))
            .map(|f| f.hostname)
            .filter(|name| !name.is_empty())
            .collect()
    }

    /// The GPU hosts as their latest facts show them, for [`operator_values`]. `None` when no host
    /// has GPUs (the gpu-operator then has nothing to do).
    pub fn gpu_hosts(&self) -> Option<GpuHosts> {
        let gpu: Vec<Facts> = self
            .spec
            .hosts
            .iter()
            .filter(|h| self.has_gpu(h))
            .map(|h| self.facts_of(&h.address).unwrap_or_default())
            .collect();
        if gpu.is_empty() {
            return None;
        }
        Some(GpuHosts {
            containerd_major: gpu.iter().find_map(Facts::containerd_major),
            driver_on_all: gpu.iter().all(|f| f.nvidia_driver.is_some()),
        })
    }

    /// The GPU operator's values for these hosts, once their facts are read (`None` without GPU
    /// hosts): driver container only where a host lacks the driver, toolkit on rke2's socket.
    pub fn gpu_operator_values(&self) -> StepResult<Option<serde_json::Value>> {
        self.gpu_hosts()
            .map(|hosts| operator_values(&hosts))
            .transpose()
            .map_err(|e| {
                StepError::new(e.to_string()).with_fix(
                    "check rke2 on the GPU hosts (`sudo systemctl status rke2-agent`), or set components.gpu-operator.enabled=false",
                )
            })
    }

    /// The join token, read from the first server once it has one. `None` before it is installed.
    pub(super) async fn token(&self) -> Result<Option<Secret>, SshError> {
        if let Some(t) = self.token.get() {
            return Ok(Some(t.clone()));
        }
        let first = self.first_server();
        let cmd = self
            .ssh
            .command(
                &Self::target(first),
                &format!(
                    "sudo -n test -s {0} && sudo -n cat {0} || true",
                    config::TOKEN_PATH
                ),
            )
            .secret_stdout();
        let out = self.ssh.run(&Self::target(first), cmd).await?;
        let value = out.stdout.trim();
        if value.is_empty() {
            return Ok(None);
        }
        let token = Secret::new(value);
        let _ = self.token.set(token.clone());
        Ok(Some(token))
    }

    /// The install script's bytes (fetched or read once per run). Not used with `artifact_dir`.
    pub(super) async fn install_script(&self) -> Result<Vec<u8>, Rke2Error> {
        let source = self.spec.install_script.clone();
        self.script
            .get_or_try_init(|| async {
                if source.starts_with("https://") {
                    let cmd = Cmd::new("curl")
                        .args(["-fsSL", "--proto", "=https", "--tlsv1.2", &source])
                        .retry_on(
                            &[
                                "Could not resolve",
                                "Connection refused",
                                "timed out",
                                "502",
                                "503",
                            ],
                            3,
                            std::time::Duration::from_secs(2),
                        );
                    self.ssh
                        .exec()
                        .run_async(cmd)
                        .await
                        .map(|o| o.stdout.into_bytes())
                        .map_err(|e| Rke2Error::Script {
                            from: source.clone(),
                            detail: e.to_string(),
                        })
                } else {
                    std::fs::read(&source).map_err(|e| Rke2Error::Script {
                        from: source.clone(),
                        detail: e.to_string(),
                    })
                }
            })
            .await
            .cloned()
    }

    /// Closes the SSH connections of this run.
    pub async fn close(&self) {
        for host in &self.spec.hosts {
            self.ssh.close(&Self::target(host)).await;
        }
    }

    /// Uninstalls rke2: agents first (in parallel, bounded), then servers, the first one last.
    /// Every host is tried; each one's outcome is returned. Asking the user first is the caller's
    /// job. The local kubeconfig is removed once every host is done.
    pub async fn down(&self, ctx: &Ctx) -> Vec<DownOutcome> {
        let agents: Vec<&HostSpec> = self
            .spec
            .hosts
            .iter()
            .filter(|h| h.role == Role::Agent)
            .collect();
        let mut outcomes: Vec<DownOutcome> = futures::stream::iter(agents)
            .map(|h| self.uninstall(h))
            .buffered(self.spec.parallelism)
            .collect()
            .await;
        for host in self
            .spec
            .hosts
            .iter()
            .rev()
            .filter(|h| h.role == Role::Server)
        {
            outcomes.push(self.uninstall(host).await);
        }
        if outcomes.iter().all(|o| o.result.is_ok()) && !ctx.exec.gate().recording() {
            let _ = std::fs::remove_file(self.kubeconfig_path(ctx));
        }
        outcomes
    }

    async fn uninstall(&self, host: &HostSpec) -> DownOutcome {
        let script = "PATH=/usr/local/bin:/usr/bin:/bin:$PATH; \
             if command -v rke2-uninstall.sh >/dev/null; then sudo -n \"$(command -v rke2-uninstall.sh)\" && echo removed; \
             else echo not-installed; fi";
        let cmd = self
            .ssh
            .command(&Self::target(host), script)
            .timeout(std::time::Duration::from_secs(600))
            .changes();
        let result = self.ssh.run(&Self::target(host), cmd).await.map(|o| {
            if o.stdout.contains("not-installed") {
                "not installed"
            } else {
                "removed"
            }
        });
        DownOutcome {
            address: host.address.clone(),
            role: host.role,
            result,
        }
    }
}

/// What `down` did on one host.
#[derive(Debug)]
pub struct DownOutcome {
    pub address: String,
    pub role: Role,
    /// `removed` or `not installed`, or why it failed.
    pub result: Result<&'static str, SshError>,
}

/// The error for a `down` in which some host failed, naming each and how the others went.
pub fn down_error(outcomes: &[DownOutcome]) -> Option<StepError> {
    let failed: Vec<&DownOutcome> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    let first = failed.first()?;
    let lines: Vec<String> = outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(what) => format!("  {} ({}): {what}", o.address, o.role.as_str()),
            Err(e) => format!("  {} ({}): FAILED: {e}", o.address, o.role.as_str()),
        })
        .collect();
    let fix = first
        .result
        .as_ref()
        .err()
        .and_then(Fix::fix)
        .unwrap_or_default();
    Some(
        StepError::new(format!(
            "removing rke2 failed on {} of {} hosts:\n{}",
            failed.len(),
            outcomes.len(),
            lines.join("\n")
        ))
        .with_fix(format!("{fix}; then run `kgf-up down` again")),
    )
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
