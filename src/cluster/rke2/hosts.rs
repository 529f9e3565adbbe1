//! The steps that touch hosts: facts from all of them, then one step per host that writes its
//! files, runs the installer and starts rke2 under the host's lock.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use sha2::{Digest, Sha256};

use super::config::{self, CONFIG_PATH, REGISTRIES_PATH};
use super::facts::{self, Facts, LOCK_DIR};
use super::spec::{HostSpec, Rke2Spec, Role};
use super::{Rke2Error, Rke2Plan, ids};
use crate::exec::shell_quote;
use crate::fix::Fix;
use crate::gate::Change;
use crate::secret::Secret;
use crate::ssh::SshError;
use crate::step::{Ctx, Description, Observation, ShownFile, Step, StepError, StepId, StepResult};
use crate::wait::{self, Seen, Stop};

/// Reads every host's facts and refuses to go on while any host is unfit; changes nothing.
pub struct FactsStep {
    pub plan: Arc<Rke2Plan>,
    pub needs: Vec<StepId>,
}

impl FactsStep {
    async fn check(&self) -> StepResult<Observation> {
        let plan = &self.plan;
        let lookups: Vec<_> = plan
            .spec
            .hosts
            .iter()
            .map(|h| async move { (h, plan.gather(h).await) })
            .collect();
        let gathered: Vec<(&HostSpec, Result<Facts, SshError>)> = futures::stream::iter(lookups)
            .buffered(plan.spec.parallelism)
            .collect()
            .await;
        let mut problems = Vec::new();
        let mut fine = Vec::new();
        let mut unfit = 0;
        let mut fix = None;
        for (host, result) in &gathered {
            match result {
                Err(e) => {
                    unfit += 1;
                    if fix.is_none() {
                        fix = e.fix();
                    }
                    problems.push(e.to_string());
                }
                Ok(f) => {
                    let mut own: Vec<String> = f.problems(plan.spec.max_clock_skew_s);
                    own.extend(version_problem(plan, host, f));
                    if let Some(owner) = &f.lock {
                        own.push(format!(
                            "being changed by another kgf-up run ({owner}); if none is running \
                             (it crashed), remove its lock: ssh {} sudo rm -r {LOCK_DIR}",
                            host.address
                        ));
                    }
                    if own.is_empty() {
                        fine.push(format!("{} ({})", host.address, summary(f)));
                    } else {
                        unfit += 1;
                    }
                    problems.extend(own.into_iter().map(|p| format!("{}: {p}", host.address)));
                }
            }
        }
        let ok: Vec<(&str, &Facts)> = gathered
            .iter()
            .filter_map(|(h, r)| r.as_ref().ok().map(|f| (h.address.as_str(), f)))
            .collect();
        problems.extend(facts::duplicate_hostnames(ok));
        if !problems.is_empty() {
            let mut message = format!(
                "{} of {} hosts cannot be installed on:\n  {}",
                unfit.max(1),
                gathered.len(),
                problems.join("\n  ")
            );
            if !fine.is_empty() {
                message.push_str(&format!("\nready: {}", fine.join(", ")));
            }
            let err = StepError::new(message).preflight();
            return Err(match fix {
                Some(f) => err.with_fix(f),
                None => err.with_fix("fix the hosts named above, then run kgf-up again"),
            });
        }
        Ok(Observation::converged(format!(
            "{} hosts ready: {}",
            fine.len(),
            fine.join(", ")
        )))
    }
}

/// A host that runs another rke2 version, or rke2 in the other role, is not changed silently.
fn version_problem(plan: &Rke2Plan, host: &HostSpec, f: &Facts) -> Option<String> {
    if let Some(role) = f.installed_role()
        && role != host.role
    {
        return Some(format!(
            "rke2 is installed as {} but the profile says {}; uninstall it there first (rke2-uninstall.sh)",
            role.as_str(),
            host.role.as_str()
        ));
    }
    match (f.rke2_version.as_deref(), plan.spec.wanted_version()) {
        (Some(have), Some(want)) if have != want && !plan.spec.upgrade => Some(format!(
            "runs rke2 {have}, the profile wants {want}; kgf-up does not upgrade unless \
             cluster.rke2.upgrade is true (--set cluster.rke2.upgrade=true)"
        )),
        _ => None,
    }
}

fn summary(f: &Facts) -> String {
    let rke2 = match (&f.rke2_version, f.installed_role()) {
        (Some(v), Some(r)) => format!("rke2 {v} {}", r.as_str()),
        (Some(v), None) => format!("rke2 {v}"),
        _ => "no rke2".to_string(),
    };
    format!("{}, {}, {}, {rke2}", f.hostname, f.os, f.arch)
}

impl Step for FactsStep {
    fn id(&self) -> StepId {
        ids::facts()
    }
    fn needs(&self) -> Vec<StepId> {
        self.needs.clone()
    }
    fn describe(&self) -> Description {
        Description {
            source: "ssh".into(),
            commands: self
                .plan
                .spec
                .hosts
                .iter()
                .map(|h| format!("ssh {} <read-only facts script>", h.address))
                .collect(),
            objects: Vec::new(),
            component: None,
            files: Vec::new(),
        }
    }
    fn observe<'a>(&'a self, _ctx: &'a Ctx) -> BoxFuture<'a, StepResult<Observation>> {
        self.check().boxed()
    }
    fn apply<'a>(&'a self, _ctx: &'a Ctx, _seen: &'a Observation) -> BoxFuture<'a, StepResult<()>> {
        // Facts change nothing; observe already failed for an unfit host.
        async { Ok(()) }.boxed()
    }
}

/// One host: its files, the installer, its service.
pub struct HostStep {
    pub plan: Arc<Rke2Plan>,
    pub host: HostSpec,
    pub needs: Vec<StepId>,
}

/// The files a host should have, rendered.
struct Wanted {
    config: Secret,
    registries: Option<Secret>,
    proxy: Option<Secret>,
}

/// How a host differs from what the profile wants.
#[derive(Debug, Default)]
struct Diff {
    install: bool,
    config: bool,
    registries: bool,
    proxy: bool,
    start: bool,
}

impl Diff {
    fn files(&self) -> bool {
        self.config || self.registries || self.proxy
    }
    fn reasons(&self) -> Vec<&'static str> {
        [
            (self.install, "rke2 not installed"),
            (self.config, "config.yaml differs"),
            (self.registries, "registries.yaml differs"),
            (self.proxy, "proxy settings differ"),
            (self.start, "service not running"),
        ]
        .into_iter()
        .filter_map(|(on, why)| on.then_some(why))
        .collect()
    }
}

fn sha256(s: &Secret) -> String {
    format!("{:x}", Sha256::digest(s.expose().as_bytes()))
}

impl HostStep {
    fn target(&self) -> crate::ssh::Target {
        Rke2Plan::target(&self.host)
    }

    fn is_first(&self) -> bool {
        self.plan.first_server().address == self.host.address
    }

    fn proxy_path(&self) -> String {
        format!("/etc/default/{}", self.host.role.unit())
    }

    /// The files for this host; `None` when a joining host cannot know its config yet because the
    /// first server has no token (it is not installed).
    async fn wanted(&self) -> Result<Option<Wanted>, Rke2Error> {
        let gpu = self.plan.has_gpu(&self.host);
        let config = if self.is_first() {
            config::render_config(&self.plan.spec, &self.host, gpu, None)
        } else {
            let Some(token) = self.plan.token().await? else {
                return Ok(None);
            };
            let first = self.plan.first_server();
            config::render_config(
                &self.plan.spec,
                &self.host,
                gpu,
                Some(config::Join {
                    server: &first.address,
                    token: &token,
                }),
            )
        };
        Ok(Some(Wanted {
            config,
            registries: self.plan.registries.clone(),
            proxy: self
                .plan
                .spec
                .proxy
                .as_ref()
                .map(|p| config::render_proxy(&self.plan.spec, p)),
        }))
    }

    fn diff(&self, f: &Facts, w: &Wanted) -> Diff {
        let differs = |want: &Option<Secret>, have: &Option<String>| {
            want.as_ref().is_some_and(|w| Some(sha256(w)) != *have)
        };
        let wrong_version = match (f.rke2_version.as_deref(), self.plan.spec.wanted_version()) {
            (Some(have), Some(want)) => have != want && self.plan.spec.upgrade,
            _ => false,
        };
        Diff {
            install: f.rke2_version.is_none() || wrong_version,
            config: Some(sha256(&w.config)) != f.config_sha256
                || f.config_mode.as_deref() != Some("600"),
            registries: differs(&w.registries, &f.registries_sha256),
            proxy: differs(&w.proxy, &f.proxy_sha256),
            start: !f.service(self.host.role).active || !f.service(self.host.role).enabled,
        }
    }

    async fn observe_inner(&self) -> Result<Observation, Rke2Error> {
        let f = self.plan.gather(&self.host).await?;
        if let Some(problem) = version_problem(&self.plan, &self.host, &f) {
            return Err(Rke2Error::Host {
                host: self.host.address.clone(),
                problem,
            });
        }
        let Some(w) = self.wanted().await? else {
            return Ok(Observation::missing(format!(
                "{}: waits for the first server's join token",
                self.host.address
            )));
        };
        let diff = self.diff(&f, &w);
        let reasons = diff.reasons();
        Ok(if reasons.is_empty() {
            Observation::converged(format!(
                "{}: rke2 {} {} running",
                self.host.address,
                f.rke2_version.as_deref().unwrap_or("?"),
                self.host.role.as_str()
            ))
        } else if diff.install {
            Observation::missing(format!("{}: {}", self.host.address, reasons.join(", ")))
        } else {
            Observation::drifted(format!("{}: {}", self.host.address, reasons.join(", ")))
        })
    }

    async fn apply_inner(&self) -> Result<(), Rke2Error> {
        let _permit = self
            .plan
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        self.lock().await?;
        let result = self.change().await;
        let released = self.unlock().await;
        result.and(released)
    }

    /// Re-reads the host under its lock (another run may have changed it meanwhile) and changes
    /// only what differs.
    async fn change(&self) -> Result<(), Rke2Error> {
        let ssh = &self.plan.ssh;
        let target = self.target();
        let f = self.plan.gather(&self.host).await?;
        let gate = ssh.exec().gate();
        let on = format!(" on {} (mode 0600)", self.host.address);
        let wanted = self.wanted().await?;
        if wanted.is_none() && gate.recording() {
            // The first server is not installed either (this plan would install it): its join
            // token comes with it, so the agent is planned from scratch.
            let shown =
                config::shown_config(&self.plan.spec, &self.host, self.plan.has_gpu(&self.host));
            gate.change_now(Change::file(CONFIG_PATH, &on, &shown), || {
                Ok::<_, Rke2Error>(())
            })?;
            self.install().await?;
            let enable = format!("sudo -n systemctl enable --now {}", self.host.role.unit());
            ssh.run(&target, ssh.command(&target, &enable).changes())
                .await?;
            return Ok(());
        }
        let w = wanted.ok_or_else(|| Rke2Error::Host {
            host: self.host.address.clone(),
            problem: format!(
                "the first server {} has no join token ({}); is rke2-server running there?",
                self.plan.first_server().address,
                config::TOKEN_PATH
            ),
        })?;
        let diff = self.diff(&f, &w);
        if !self.is_first() {
            self.check_reach().await?;
        }
        // Each file is shown as a plan shows it: the join token named, other secrets redacted.
        if diff.config {
            let shown =
                config::shown_config(&self.plan.spec, &self.host, self.plan.has_gpu(&self.host));
            let upload = ssh.upload_secret(&target, Path::new(CONFIG_PATH), 0o600, &w.config);
            gate.change(Change::file(CONFIG_PATH, &on, &shown), upload)
                .await?;
        }
        if let (true, Some(r)) = (diff.registries, &w.registries) {
            let upload = ssh.upload_secret(&target, Path::new(REGISTRIES_PATH), 0o600, r);
            gate.change(Change::file(REGISTRIES_PATH, &on, r.expose()), upload)
                .await?;
        }
        if let (true, Some(p)) = (diff.proxy, &w.proxy) {
            let path = self.proxy_path();
            let upload = ssh.upload_secret(&target, Path::new(&path), 0o600, p);
            gate.change(Change::file(&path, &on, p.expose()), upload)
                .await?;
        }
        if diff.install {
            self.install().await?;
        }
        let unit = self.host.role.unit();
        let service = f.service(self.host.role);
        // rke2-server is Type=notify: starting it returns once the server is up.
        let action = if diff.install || !service.active || !service.enabled {
            format!("sudo -n systemctl enable --now {unit}")
        } else if diff.files() {
            format!("sudo -n systemctl restart {unit}")
        } else {
            return Ok(());
        };
        let cmd = ssh
            .command(&target, &action)
            .timeout(Duration::from_secs(900))
            .changes();
        ssh.run(&target, cmd).await?;
        Ok(())
    }

    /// A joining host must reach the first server's supervisor and API ports.
    async fn check_reach(&self) -> Result<(), Rke2Error> {
        let first = &self.plan.first_server().address;
        let probe = [config::SUPERVISOR_PORT, config::API_PORT]
            .iter()
            .map(|port| {
                format!(
                    "if timeout 5 bash -c 'exec 3<>/dev/tcp/{first}/{port}' 2>/dev/null; then :; else echo {port}; fi"
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let out = self.plan.ssh.sh(&self.target(), &probe).await?;
        let closed: Vec<&str> = out.stdout.split_whitespace().collect();
        if closed.is_empty() {
            return Ok(());
        }
        Err(Rke2Error::Host {
            host: self.host.address.clone(),
            problem: format!(
                "cannot reach the first server {first} on port(s) {}; open them from this host \
                 (firewall, security group)",
                closed.join(", ")
            ),
        })
    }

    async fn install(&self) -> Result<(), Rke2Error> {
        let ssh = &self.plan.ssh;
        let target = self.target();
        let (line, script_on_stdin) = install_command(&self.plan.spec, self.host.role);
        let mut cmd = ssh.command(&target, &line);
        if script_on_stdin {
            cmd = cmd.stdin(self.plan.install_script().await?);
        }
        ssh.run(&target, cmd.timeout(Duration::from_secs(900)).changes())
            .await?;
        Ok(())
    }

    async fn lock(&self) -> Result<(), Rke2Error> {
        let ssh = &self.plan.ssh;
        let owner = shell_quote(&self.plan.owner);
        let script = format!(
            "sudo -n mkdir -p /run/lock && if sudo -n mkdir -m 0700 {LOCK_DIR} 2>/dev/null; then \
             printf '%s\\n' {owner} | sudo -n tee {LOCK_DIR}/owner >/dev/null; echo acquired; \
             elif [ \"$(sudo -n cat {LOCK_DIR}/owner 2>/dev/null)\" = {owner} ]; then echo acquired; \
             else echo \"held by $(sudo -n cat {LOCK_DIR}/owner 2>/dev/null)\"; fi"
        );
        let change = Change::bookkeeping(format!("take kgf-up's lock on {}", self.host.address));
        let Some(out) = ssh
            .exec()
            .gate()
            .change(change, ssh.sh(&self.target(), &script))
            .await?
        else {
            return Ok(());
        };
        match out.stdout.trim() {
            "acquired" => Ok(()),
            held => Err(Rke2Error::Locked {
                host: self.host.address.clone(),
                owner: held.trim_start_matches("held by ").to_string(),
            }),
        }
    }

    async fn unlock(&self) -> Result<(), Rke2Error> {
        let ssh = &self.plan.ssh;
        let owner = shell_quote(&self.plan.owner);
        let script = format!(
            "if [ \"$(sudo -n cat {LOCK_DIR}/owner 2>/dev/null)\" = {owner} ]; then sudo -n rm -rf {LOCK_DIR}; fi"
        );
        let change = Change::bookkeeping(format!("release kgf-up's lock on {}", self.host.address));
        ssh.exec()
            .gate()
            .change(change, ssh.sh(&self.target(), &script))
            .await?;
        Ok(())
    }

    async fn wait_inner(&self, deadline: Duration) -> Result<(), Rke2Error> {
        let unit = self.host.role.unit();
        let active = wait::until(deadline, Duration::from_secs(2), || async {
            let f = self.plan.gather(&self.host).await?;
            let up = f.service(self.host.role).active && (self.host.role == Role::Agent || f.token);
            Ok(if up {
                Seen::Ready(())
            } else {
                Seen::Not(format!("{unit} not active"))
            })
        });
        match active.await {
            Ok(()) => Ok(()),
            Err(Stop::Failed(e)) => Err(e),
            Err(Stop::TimedOut { waited, .. }) => Err(Rke2Error::Host {
                host: self.host.address.clone(),
                problem: format!(
                    "{unit} is not active after {}s; see `journalctl -u {unit}` on the host",
                    waited.as_secs()
                ),
            }),
        }
    }
}

/// The remote command that runs rke2's installer for `role`, and whether the script goes on its
/// stdin (it does unless the air-gap directory on the host has its own `install.sh`).
fn install_command(spec: &Rke2Spec, role: Role) -> (String, bool) {
    let mut env = vec![format!("INSTALL_RKE2_TYPE={}", role.as_str())];
    match (spec.wanted_version(), &spec.channel) {
        (Some(v), _) => env.push(format!("INSTALL_RKE2_VERSION={v}")),
        (None, Some(c)) => env.push(format!("INSTALL_RKE2_CHANNEL={c}")),
        (None, None) => {}
    }
    if let Some(p) = &spec.proxy {
        // The installer downloads through the proxy too. A proxy URL with credentials would show
        // in the command line, so only credential-free ones are passed; rke2 itself reads them
        // from /etc/default/rke2-<role>.
        for (k, v) in [("HTTP_PROXY", &p.http), ("HTTPS_PROXY", &p.https)] {
            if let Some(v) = v.as_ref().filter(|v| !v.contains('@')) {
                env.push(format!("{k}={v}"));
            }
        }
    }
    let env: Vec<String> = env.iter().map(shell_quote).collect();
    match &spec.artifact_dir {
        Some(dir) => {
            let dir = dir.display().to_string();
            (
                format!(
                    "sudo -n env {} {} sh {}",
                    env.join(" "),
                    shell_quote(format!("INSTALL_RKE2_ARTIFACT_PATH={dir}")),
                    shell_quote(format!("{dir}/install.sh"))
                ),
                false,
            )
        }
        None => (format!("sudo -n env {} sh -s -", env.join(" ")), true),
    }
}

impl Step for HostStep {
    fn id(&self) -> StepId {
        ids::host(self.host.role, &self.host.address)
    }
    fn needs(&self) -> Vec<StepId> {
        self.needs.clone()
    }
    fn describe(&self) -> Description {
        let spec = &self.plan.spec;
        let source = match (&spec.artifact_dir, spec.wanted_version(), &spec.channel) {
            (Some(d), _, _) => format!("rke2 air-gap artifacts in {} on the host", d.display()),
            (None, Some(v), _) => format!("rke2 {v} from {}", spec.install_script),
            (None, None, c) => format!(
                "rke2 channel {} from {}",
                c.as_deref().unwrap_or("stable"),
                spec.install_script
            ),
        };
        let a = &self.host.address;
        let (install, script_on_stdin) = install_command(spec, self.host.role);
        let stdin = if script_on_stdin {
            format!("  (the installer {} on stdin)", spec.install_script)
        } else {
            String::new()
        };
        // Whether a `gpu: auto` host has GPUs is known only from its facts: planned as without.
        let gpu = self.plan.has_gpu(&self.host);
        let mut files = vec![ShownFile {
            path: format!("{CONFIG_PATH} on {a} (mode 0600)"),
            content: config::shown_config(spec, &self.host, gpu),
        }];
        if let Some(r) = &self.plan.registries {
            files.push(ShownFile {
                path: format!("{REGISTRIES_PATH} on {a} (mode 0600)"),
                content: crate::secret::redact(r.expose()),
            });
        }
        Description {
            source,
            commands: vec![
                format!("ssh {a} {install}{stdin}"),
                format!(
                    "ssh {a} sudo systemctl enable --now {}",
                    self.host.role.unit()
                ),
            ],
            objects: Vec::new(),
            component: None,
            files,
        }
    }
    fn observe<'a>(&'a self, _ctx: &'a Ctx) -> BoxFuture<'a, StepResult<Observation>> {
        async move {
            self.observe_inner()
                .await
                .map_err(|e| e.step(&format!("checking rke2 on {}", self.host.address)))
        }
        .boxed()
    }
    fn apply<'a>(&'a self, _ctx: &'a Ctx, _seen: &'a Observation) -> BoxFuture<'a, StepResult<()>> {
        async move {
            self.apply_inner().await.map_err(|e| {
                e.step(&format!(
                    "installing rke2 {} on {}",
                    self.host.role.as_str(),
                    self.host.address
                ))
            })
        }
        .boxed()
    }
    fn wait<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<()>> {
        async move {
            if ctx.exec.gate().recording() {
                return Ok(());
            }
            self.wait_inner(ctx.timeout)
                .await
                .map_err(|e| e.step(&format!("waiting for rke2 on {}", self.host.address)))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> Rke2Spec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn the_installer_gets_the_pinned_version_on_its_environment_and_the_script_on_stdin() {
        let s = spec("hosts: [{address: a, role: server}]");
        assert_eq!(
            install_command(&s, Role::Server),
            (
                "sudo -n env INSTALL_RKE2_TYPE=server INSTALL_RKE2_VERSION=v1.36.3+rke2r1 sh -s -"
                    .to_string(),
                true
            )
        );
        let s = spec("channel: stable\nhosts: [{address: a, role: server}]");
        assert!(
            install_command(&s, Role::Agent)
                .0
                .contains("INSTALL_RKE2_TYPE=agent INSTALL_RKE2_CHANNEL=stable sh")
        );
    }

    #[test]
    fn air_gap_runs_the_hosts_own_script_and_proxy_credentials_stay_off_the_command_line() {
        let s = spec(
            "artifact_dir: /opt/rke2 artifacts
proxy: {http: 'http://proxy:3128', https: 'http://user:pw@proxy:3128'}
hosts: [{address: a, role: server}]",
        );
        let (line, stdin) = install_command(&s, Role::Agent);
        assert!(!stdin);
        assert_eq!(
            line,
            "sudo -n env INSTALL_RKE2_TYPE=agent INSTALL_RKE2_VERSION=v1.36.3+rke2r1 \
             HTTP_PROXY=http://proxy:3128 'INSTALL_RKE2_ARTIFACT_PATH=/opt/rke2 artifacts' \
             sh '/opt/rke2 artifacts/install.sh'"
        );
        assert!(!line.contains("pw@"));
    }
}
