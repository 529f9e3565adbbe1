//! Preflight (`kgf-up doctor`, and the first step of `up`): is this host ready for a GPU kind
//! cluster, and if not, the exact command that fixes each problem.
//!
//! [`run`] only reads (the kernel, tool versions, `docker info` and `docker ps`, `nvidia-smi`, the
//! toolkit's config, the registry's port, inotify limits, free disk). [`apply_fixes`] changes the
//! host, and only the fixes marked automatic (docker's nvidia runtime, the toolkit's volume-mount
//! and environment settings, inotify), each after the caller's consent; the CLI calls it only with
//! `--fix`, for failures and warnings alike. Installing software (driver, toolkit, tools) is left to the
//! user: the check prints the commands.

mod cgroup;
pub mod cuda;
mod host;
pub mod parse;
mod report;

pub use report::{Check, Fix, HostFacts, Options, Report, Status, running_as_root};
// The helpers every check is written with (`super::check` in `host` too).
use report::{check, host_cmd, not_found, read, restart_docker_cmd};

use crate::exec::{Cmd, Exec, ExecError};
use crate::profile::kind::{KindSpec, ToolkitSource};
use crate::step::{Ctx, Description, Observation, Step, StepError, StepId};
use parse::{DockerInfo, Version};

/// inotify limits kind's docs ask for (many pods, each watching files).
pub const INOTIFY_WATCHES: u64 = 524_288;
pub const INOTIFY_INSTANCES: u64 = 8_192;

/// Install hints for [`Exec::with_hints`]: a missing program's error then says how to get it.
pub fn install_hints() -> Vec<(String, String)> {
    [
        ("kind", KIND_INSTALL),
        ("helm", HELM_INSTALL),
        ("kubectl", KUBECTL_INSTALL),
        ("docker", DOCKER_INSTALL),
        ("nvidia-smi", DRIVER_INSTALL),
        ("nvidia-ctk", TOOLKIT_INSTALL),
    ]
    .into_iter()
    .map(|(p, h)| (p.to_string(), h.to_string()))
    .collect()
}

/// Runs every check. Never changes anything.
pub async fn run(exec: &Exec, opts: &Options) -> Report {
    let mut checks = Vec::new();
    let mut facts = HostFacts::default();
    let gpu_fail = if opts.needs_gpu {
        Status::Fail
    } else {
        Status::Warn
    };
    checks.push(host::wsl(opts, gpu_fail));

    // Container engine.
    let docker = match exec
        .run_async(Cmd::new("docker").args(["info", "--format", "{{json .}}"]))
        .await
    {
        Ok(out) => parse::docker_info(&out.stdout).ok(),
        // With the daemon down, docker prints the client half of the JSON, the error on stderr,
        // and exits 1.
        Err(ExecError::Failed { stdout, stderr, .. }) => {
            let mut info = parse::docker_info(&stdout).unwrap_or_default();
            if info.server_errors.is_empty() {
                info.server_errors.push(stderr.trim().to_string());
            }
            Some(info)
        }
        Err(_) => None,
    };
    checks.push(engine_check(exec, docker.as_ref()).await);
    if let (Some(kind), Some(info)) = (&opts.kind, docker.as_ref())
        && info.reachable()
    {
        checks.push(cgroup::check(kind, info));
    }
    checks.extend(host::resources(docker.as_ref()));
    facts.docker = docker.clone();

    // Tools.
    checks.push(
        tool_check(
            exec,
            "kind",
            Cmd::new("kind").arg("version"),
            parse::kind_version,
            |v| {
                let pinned = Version::parse(crate::profile::kind::KIND_VERSION)
                    .expect("KIND_VERSION is a version");
                if (v.major, v.minor) == (pinned.major, pinned.minor) {
                    Status::Ok
                } else if *v > pinned {
                    Status::Warn
                } else {
                    Status::Fail
                }
            },
            "kind v0.33.x (the pinned node image is built for it)",
            KIND_INSTALL,
        )
        .await,
    );
    checks.push(
        tool_check(
            exec,
            "helm",
            Cmd::new("helm").args(["version", "--short"]),
            parse::helm_version,
            |v| match v.major {
                4 => Status::Ok,
                3 if v.minor >= 22 => Status::Ok,
                3 => Status::Warn,
                _ => Status::Fail,
            },
            "helm 3.22+ or 4.x",
            HELM_INSTALL,
        )
        .await,
    );
    checks.push(
        tool_check(
            exec,
            "kubectl",
            Cmd::new("kubectl").args(["version", "--client", "-o", "json"]),
            parse::kubectl_version,
            |v| {
                if v.major == 1 && (35..=37).contains(&v.minor) {
                    Status::Ok
                } else {
                    Status::Warn
                }
            },
            "kubectl 1.35–1.37 (within one minor of the cluster's 1.36)",
            KUBECTL_INSTALL,
        )
        .await,
    );

    // GPUs and driver.
    match read(
        exec,
        Cmd::new("nvidia-smi").args([parse::NVIDIA_SMI_QUERY, "--format=csv,noheader"]),
    )
    .await
    {
        Ok(csv) => match parse::nvidia_smi_gpus(&csv) {
            Ok(gpus) if !gpus.is_empty() => {
                let list: Vec<String> = gpus
                    .iter()
                    .map(|g| format!("{}: {} ({}, {})", g.index, g.name, g.uuid, g.memory))
                    .collect();
                checks.push(check(
                    "NVIDIA GPUs",
                    Status::Ok,
                    format!(
                        "{} GPU(s), driver {}: {}",
                        gpus.len(),
                        gpus[0].driver_version,
                        list.join("; ")
                    ),
                    "at least one GPU with a working driver",
                    None,
                ));
                facts.gpus = gpus;
            }
            Ok(_) => checks.push(check(
                "NVIDIA GPUs",
                gpu_fail,
                "nvidia-smi lists no GPU",
                "at least one GPU with a working driver",
                Some(Fix::manual(DRIVER_INSTALL)),
            )),
            Err(e) => checks.push(check(
                "NVIDIA GPUs",
                gpu_fail,
                e,
                "at least one GPU with a working driver",
                Some(Fix::manual(DRIVER_INSTALL)),
            )),
        },
        Err(e) => checks.push(check(
            "NVIDIA GPUs",
            gpu_fail,
            match &e {
                e if not_found(e) => "nvidia-smi not found (no NVIDIA driver)".to_string(),
                // nvidia-smi reports a driver it cannot talk to on stdout.
                ExecError::Failed { stdout, stderr, .. } => format!(
                    "nvidia-smi failed: {}",
                    if stderr.trim().is_empty() {
                        stdout.trim()
                    } else {
                        stderr.trim()
                    }
                ),
                e => e.to_string(),
            },
            "the NVIDIA driver (nvidia-smi lists the GPUs)",
            Some(Fix::manual(DRIVER_INSTALL)),
        )),
    }

    // Container toolkit and docker's use of it.
    let toolkit = read(exec, Cmd::new("nvidia-ctk").arg("--version"))
        .await
        .ok()
        .and_then(|t| parse::nvidia_ctk_version(&t));
    facts.toolkit = toolkit;
    checks.push(match toolkit {
        Some(v) => check(
            "NVIDIA container toolkit",
            if v >= Version::new(1, 17, 0) {
                Status::Ok
            } else {
                Status::Warn
            },
            format!(
                "{v}{}",
                if v >= Version::new(1, 19, 0) {
                    " (masks /proc/driver/nvidia/params itself)"
                } else {
                    " (kgf-up masks /proc/driver/nvidia/params in GPU nodes)"
                }
            ),
            "nvidia-container-toolkit 1.17 or later",
            Some(Fix::manual(TOOLKIT_INSTALL)),
        ),
        None => check(
            "NVIDIA container toolkit",
            gpu_fail,
            "nvidia-ctk not found",
            "nvidia-container-toolkit 1.17 or later",
            Some(Fix::manual(TOOLKIT_INSTALL)),
        ),
    });
    checks.extend(host::driver(&facts.gpus, opts));
    checks.push(runtime_check(opts, docker.as_ref(), toolkit.is_some()));
    checks.push(volume_mounts_check(opts, gpu_fail));
    checks.push(host::envvar(opts));
    if opts.gpu_container_probe {
        checks.push(gpu_container_check(exec, opts, &checks, &facts).await);
    }
    // Only a cluster with GPU nodes installs the toolkit in them.
    if let Some(kind) = &opts.kind
        && kind
            .nodes(kind.gpu_count(facts.gpus.len() as u32))
            .is_ok_and(|nodes| nodes.iter().any(|n| n.has_gpus()))
    {
        checks.push(node_toolkit_check(kind));
    }

    checks.extend(host::registry_port(exec, opts, docker.as_ref()).await);

    // Host limits.
    checks.extend(inotify_checks(opts));
    checks.push(disk_check(exec, opts, docker.as_ref()).await);

    if plans_no_gpu(opts) {
        checks.retain(|c| !GPU_CHECKS.contains(&c.name));
    }
    Report { checks, facts }
}

/// The checks of the host's NVIDIA setup, which only a cluster with GPU nodes uses (WSL2 matters
/// only for GPUs: kind itself runs there).
const GPU_CHECKS: &[&str] = &[
    "not WSL2",
    "NVIDIA GPUs",
    "NVIDIA container toolkit",
    "driver for the CUDA images",
    "docker default runtime",
    "GPU requests as volume mounts",
    "GPUs only by request",
    "GPU inside a container",
];

/// Whether a check is about the host's NVIDIA setup (the rest concern any kind cluster).
pub fn is_gpu_check(name: &str) -> bool {
    GPU_CHECKS.contains(&name) || name == "toolkit for kind GPU nodes"
}

/// A kind cluster planned without GPUs (`gpus.count: 0`) and no GPU validation (the built-in
/// `kind` profile): the NVIDIA checks would be noise about software it never uses.
fn plans_no_gpu(opts: &Options) -> bool {
    !opts.needs_gpu && opts.kind.as_ref().is_some_and(|k| k.gpus.count == Some(0))
}

const KIND_INSTALL: &str = "curl -fsSLo kind https://kind.sigs.k8s.io/dl/v0.33.0/kind-linux-amd64 && chmod +x kind && sudo mv kind /usr/local/bin/kind";
const HELM_INSTALL: &str =
    "curl -fsSL https://raw.githubusercontent.com/helm/helm/main/scripts/get-helm-3 | bash";
const KUBECTL_INSTALL: &str = "curl -fsSLO https://dl.k8s.io/release/v1.36.4/bin/linux/amd64/kubectl && sudo install -m 0755 kubectl /usr/local/bin/kubectl";
const DOCKER_INSTALL: &str =
    "install Docker Engine: https://docs.docker.com/engine/install/ubuntu/";
const DRIVER_INSTALL: &str = "sudo ubuntu-drivers install && sudo reboot";
const TOOLKIT_INSTALL: &str = "see https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html: add NVIDIA's apt repository, then sudo apt-get install -y nvidia-container-toolkit";

async fn engine_check(exec: &Exec, docker: Option<&DockerInfo>) -> Check {
    let needed = "a reachable docker daemon (the GPU path uses docker's nvidia runtime)";
    match docker {
        Some(info) if info.reachable() => check(
            "container engine",
            Status::Ok,
            format!("docker {}", info.server_version.as_deref().unwrap_or("?")),
            needed,
            None,
        ),
        Some(info) => {
            let error = info.server_errors.join("; ");
            let fix = if error.contains("permission denied") {
                "sudo usermod -aG docker \"$USER\" && newgrp docker"
            } else {
                "sudo systemctl enable --now docker"
            };
            check(
                "container engine",
                Status::Fail,
                format!("docker installed, daemon not reachable: {}", error.trim()),
                needed,
                Some(Fix::manual(fix)),
            )
        }
        None => {
            let podman = read(exec, Cmd::new("podman").args(["info", "--format", "json"]))
                .await
                .ok()
                .and_then(|j| parse::podman_version(&j));
            check(
                "container engine",
                Status::Fail,
                match podman {
                    Some(v) => format!(
                        "no docker; podman {v} (kind runs on podman, but the GPU path needs docker's nvidia runtime)"
                    ),
                    None => "neither docker nor podman found".to_string(),
                },
                needed,
                Some(Fix::manual(DOCKER_INSTALL)),
            )
        }
    }
}

async fn tool_check(
    exec: &Exec,
    name: &'static str,
    cmd: Cmd,
    parse: fn(&str) -> Option<Version>,
    judge: impl Fn(&Version) -> Status,
    needed: &str,
    install: &str,
) -> Check {
    match read(exec, cmd).await {
        Ok(out) => match parse(&out) {
            Some(v) => {
                let status = judge(&v);
                check(
                    name,
                    status,
                    v.to_string(),
                    needed,
                    (status != Status::Ok).then(|| Fix::manual(install)),
                )
            }
            None => check(
                name,
                Status::Warn,
                format!("unrecognised version output {:?}", out.trim()),
                needed,
                Some(Fix::manual(install)),
            ),
        },
        Err(e) => check(
            name,
            Status::Fail,
            if not_found(&e) {
                "not found on PATH".to_string()
            } else {
                e.to_string()
            },
            needed,
            Some(Fix::manual(install)),
        ),
    }
}

fn runtime_check(opts: &Options, docker: Option<&DockerInfo>, toolkit: bool) -> Check {
    let needed = "docker's default runtime is nvidia (GPUs reach kind nodes through it)";
    let fix = Fix::auto(
        opts.root,
        vec![host_cmd(opts.root, "nvidia-ctk").args([
            "runtime",
            "configure",
            "--runtime=docker",
            "--set-as-default",
        ])],
        true,
    );
    let Some(info) = docker.filter(|d| d.reachable()) else {
        return check(
            "docker default runtime",
            Status::Fail,
            "unknown (docker not reachable)",
            needed,
            None,
        );
    };
    let default = info.default_runtime.as_deref().unwrap_or("?");
    if default == "nvidia" {
        return check("docker default runtime", Status::Ok, "nvidia", needed, None);
    }
    let status = if opts.needs_gpu {
        Status::Fail
    } else {
        Status::Warn
    };
    let found = if info.runtimes.iter().any(|r| r == "nvidia") {
        format!("{default} (nvidia is registered but not the default)")
    } else {
        format!("{default} (no nvidia runtime registered)")
    };
    check(
        "docker default runtime",
        status,
        found,
        needed,
        toolkit.then_some(fix),
    )
}

fn volume_mounts_check(opts: &Options, fail: Status) -> Check {
    let name = "GPU requests as volume mounts";
    let needed = format!(
        "accept-nvidia-visible-devices-as-volume-mounts = true in {}",
        opts.toolkit_config.display()
    );
    let fix = Fix::auto(
        opts.root,
        vec![host_cmd(opts.root, "nvidia-ctk").args([
            "config",
            "--set",
            "accept-nvidia-visible-devices-as-volume-mounts=true",
            "--in-place",
        ])],
        true,
    );
    match std::fs::read_to_string(&opts.toolkit_config) {
        Ok(text) if parse::toolkit_accepts_volume_mounts(&text) => {
            check(name, Status::Ok, "true", needed, None)
        }
        Ok(_) => check(name, fail, "false (the default)", needed, Some(fix)),
        Err(e) => check(
            name,
            fail,
            format!("cannot read {}: {e}", opts.toolkit_config.display()),
            needed,
            Some(Fix::manual(TOOLKIT_INSTALL)),
        ),
    }
}

/// The end-to-end host check: a container with the nvidia runtime and a `/dev/null` mount at
/// `/var/run/nvidia-container-devices/all` must list the GPUs. Runs only when the checks it
/// depends on passed (it would fail for their reasons otherwise).
async fn gpu_container_check(
    exec: &Exec,
    opts: &Options,
    checks: &[Check],
    facts: &HostFacts,
) -> Check {
    let name = "GPU inside a container";
    let needed = "nvidia-smi -L in a container lists the host's GPUs";
    let prerequisites = [
        "container engine",
        "docker default runtime",
        "GPU requests as volume mounts",
        "NVIDIA GPUs",
    ];
    if checks
        .iter()
        .any(|c| prerequisites.contains(&c.name) && c.status != Status::Ok)
    {
        return check(
            name,
            Status::Warn,
            "not tried: fix the checks above first",
            needed,
            None,
        );
    }
    let image = opts
        .kind
        .as_ref()
        .map(|k| k.node_image.clone())
        .unwrap_or_else(|| crate::profile::kind::DEFAULT_NODE_IMAGE.to_string());
    let cmd = Cmd::new("docker")
        .args([
            "run",
            "--rm",
            "-v",
            "/dev/null:/var/run/nvidia-container-devices/all",
            "--entrypoint",
            "nvidia-smi",
            &image,
            "-L",
        ])
        .timeout(std::time::Duration::from_secs(600));
    match read(exec, cmd).await {
        Ok(out) => {
            let listed = out.lines().filter(|l| l.starts_with("GPU ")).count();
            if listed == facts.gpus.len() {
                check(
                    name,
                    Status::Ok,
                    format!("{listed} GPU(s) listed"),
                    needed,
                    None,
                )
            } else {
                check(
                    name,
                    Status::Fail,
                    format!("{listed} of {} GPU(s) listed", facts.gpus.len()),
                    needed,
                    Some(Fix::manual(
                        "sudo systemctl restart docker, then run kgf-up doctor again",
                    )),
                )
            }
        }
        Err(e) => check(
            name,
            Status::Fail,
            e.to_string(),
            needed,
            Some(Fix::manual(
                "sudo systemctl restart docker (after nvidia-ctk changes), then run kgf-up doctor again",
            )),
        ),
    }
}

fn node_toolkit_check(kind: &KindSpec) -> Check {
    let name = "toolkit for kind GPU nodes";
    match &kind.toolkit {
        ToolkitSource::Apt { version } => check(
            name,
            Status::Warn,
            format!(
                "apt inside each GPU node (nvidia-container-toolkit{})",
                version
                    .as_deref()
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default()
            ),
            "internet access from the kind nodes to nvidia.github.io and deb.debian.org",
            Some(Fix::manual(
                "offline: put the toolkit .deb files in a directory and set cluster.kind.toolkit: {debs: {path: DIR}}",
            )),
        ),
        ToolkitSource::Debs { path } => {
            let debs: Vec<String> = std::fs::read_dir(path)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.ends_with(".deb"))
                        .collect()
                })
                .unwrap_or_default();
            let has_toolkit = debs
                .iter()
                .any(|n| n.starts_with("nvidia-container-toolkit_"));
            check(
                name,
                if has_toolkit { Status::Ok } else { Status::Fail },
                format!("{} .deb file(s) in {}", debs.len(), path.display()),
                "nvidia-container-toolkit, nvidia-container-toolkit-base, libnvidia-container-tools and libnvidia-container1 .deb files",
                (!has_toolkit).then(|| {
                    Fix::manual(format!(
                        "on a machine with internet: apt-get download nvidia-container-toolkit nvidia-container-toolkit-base libnvidia-container-tools libnvidia-container1, then copy the files to {}",
                        path.display()
                    ))
                }),
            )
        }
    }
}

fn inotify_checks(opts: &Options) -> Vec<Check> {
    let persist = format!(
        "fs.inotify.max_user_watches = {INOTIFY_WATCHES}\nfs.inotify.max_user_instances = {INOTIFY_INSTANCES}\n"
    );
    let conf = opts.sysctl_conf.display().to_string();
    let mut fix = Fix::auto(
        opts.root,
        vec![
            host_cmd(opts.root, "tee").arg(&conf).stdin(persist.clone()),
            host_cmd(opts.root, "sysctl").args(["--load", &conf]),
        ],
        false,
    );
    // tee's input is not on its command line: show the pipe a user would type.
    let sudo = if opts.root { "" } else { "sudo " };
    fix.shown = format!(
        "printf '{}' | {sudo}tee {conf} && {sudo}sysctl --load {conf}",
        persist.replace('\n', "\\n")
    );
    [
        (
            "inotify watches",
            "fs/inotify/max_user_watches",
            INOTIFY_WATCHES,
        ),
        (
            "inotify instances",
            "fs/inotify/max_user_instances",
            INOTIFY_INSTANCES,
        ),
    ]
    .into_iter()
    .map(|(name, file, wanted)| {
        let path = opts.proc_sys.join(file);
        let needed = format!("{} ≥ {wanted}", file.replace('/', "."));
        match std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            Some(v) if v >= wanted => check(name, Status::Ok, v.to_string(), needed, None),
            Some(v) => check(name, Status::Warn, v.to_string(), needed, Some(fix.clone())),
            None => check(
                name,
                Status::Warn,
                format!("cannot read {}", path.display()),
                needed,
                None,
            ),
        }
    })
    .collect()
}

async fn disk_check(exec: &Exec, opts: &Options, docker: Option<&DockerInfo>) -> Check {
    let dir = docker
        .and_then(|d| d.root_dir.clone())
        .unwrap_or_else(|| "/var/lib/docker".to_string());
    // df needs an existing path; the root dir may be unreadable or absent (no docker).
    let target = if std::path::Path::new(&dir).exists() {
        dir.clone()
    } else {
        "/".to_string()
    };
    let needed = format!(
        "{} GiB free for images (node image, components, the step image)",
        opts.min_free_gib
    );
    match read(exec, Cmd::new("df").args(["-Pk", &target]))
        .await
        .ok()
        .and_then(|t| parse::df_available_kib(&t))
    {
        Some(kib) => {
            let gib = kib / (1024 * 1024);
            let status = if gib >= opts.min_free_gib {
                Status::Ok
            } else if gib >= opts.min_free_gib / 3 {
                Status::Warn
            } else {
                Status::Fail
            };
            check(
                "free disk",
                status,
                format!("{gib} GiB free on {target}"),
                needed,
                (status != Status::Ok).then(|| Fix::manual("docker system prune --all (removes unused images), or free space on that filesystem")),
            )
        }
        None => check(
            "free disk",
            Status::Warn,
            format!("df {target} failed"),
            needed,
            None,
        ),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("applying the fix for {check}")]
    Fix {
        check: &'static str,
        #[source]
        source: ExecError,
    },
    #[error(
        "sudo needs a password and kgf-up cannot ask for it; run `sudo -v` first, then `kgf-up doctor --fix` again"
    )]
    SudoPassword,
}

/// Applies the automatic fixes of the checks that are not ok, each only when `consent` says yes,
/// then restarts docker once if a fix needs it. Returns the names of the checks fixed. Call it
/// only for `--fix`; `consent` asks the user when interactive and says yes otherwise.
pub async fn apply_fixes(
    exec: &Exec,
    report: &Report,
    root: bool,
    consent: &mut dyn FnMut(&Check) -> bool,
) -> Result<Vec<&'static str>, PreflightError> {
    let mut fixed = Vec::new();
    let mut restart = false;
    let mut done: Vec<String> = Vec::new();
    for c in report.checks.iter().filter(|c| c.status != Status::Ok) {
        let Some(fix) = c.fix.as_ref().filter(|f| f.auto) else {
            continue;
        };
        // Two checks can share a fix (the inotify pair): run it once.
        if done.contains(&fix.shown) || !consent(c) {
            continue;
        }
        for cmd in &fix.commands {
            run_fix(exec, cmd, c.name).await?;
        }
        done.push(fix.shown.clone());
        restart |= fix.restarts_docker;
        fixed.push(c.name);
    }
    if restart {
        run_fix(exec, &restart_docker_cmd(root), "docker restart").await?;
    }
    Ok(fixed)
}

async fn run_fix(exec: &Exec, cmd: &Cmd, check: &'static str) -> Result<(), PreflightError> {
    match exec.run_async(cmd.clone()).await {
        Ok(_) => Ok(()),
        Err(ExecError::Failed { stderr, .. }) if stderr.contains("a password is required") => {
            Err(PreflightError::SudoPassword)
        }
        Err(source) => Err(PreflightError::Fix { check, source }),
    }
}

/// Preflight as the first step of `up`: observe runs every check; a failed check stops the run
/// with all fixes listed (exit code 3); nothing is ever changed here (fixes are `doctor --fix`).
pub struct PreflightStep {
    pub options: Options,
}

impl PreflightStep {
    pub fn id() -> StepId {
        StepId::new("preflight", "")
    }
}

impl Step for PreflightStep {
    fn id(&self) -> StepId {
        PreflightStep::id()
    }

    fn needs(&self) -> Vec<StepId> {
        Vec::new()
    }

    fn describe(&self) -> Description {
        Description {
            source: "host checks (docker, tools, GPUs, container toolkit, inotify, disk)".into(),
            commands: Vec::new(),
            objects: Vec::new(),
            component: None,
            files: Vec::new(),
        }
    }

    fn observe<'a>(
        &'a self,
        ctx: &'a Ctx,
    ) -> futures::future::BoxFuture<'a, Result<Observation, StepError>> {
        Box::pin(async move {
            let report = run(&ctx.exec, &self.options).await;
            let failed: Vec<&Check> = report.failed().collect();
            if failed.is_empty() {
                Ok(Observation::converged(format!(
                    "{} checks passed ({} warnings)",
                    report.checks.len(),
                    report
                        .checks
                        .iter()
                        .filter(|c| c.status == Status::Warn)
                        .count()
                )))
            } else {
                Ok(Observation::failed(report.render()))
            }
        })
    }

    fn apply<'a>(
        &'a self,
        _ctx: &'a Ctx,
        seen: &'a Observation,
    ) -> futures::future::BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            Err(StepError::new("the host is not ready for a GPU kind cluster")
                .with_diagnosis(seen.reason.clone())
                .with_fix("run the fix commands shown, or `kgf-up doctor --fix` to apply the host fixes")
                .preflight())
        })
    }
}
