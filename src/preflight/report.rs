//! What a check is and what a report holds: each check's status, what was found and needed, and
//! its fix; the facts later steps use; the options checks run with; and the helpers the checks are
//! written with. The checks themselves are in [`super`] and `host`.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use super::parse::{DockerInfo, Gpu, Version};
use crate::exec::{Cmd, Exec, ExecError};
use crate::profile::kind::KindSpec;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// A command that fixes a failed check, shown to the user; `auto` fixes [`super::apply_fixes`] may run.
#[derive(Clone, Debug, Serialize)]
pub struct Fix {
    /// The command line(s) as a user would paste them.
    pub shown: String,
    #[serde(skip)]
    pub(super) commands: Vec<Cmd>,
    /// Whether docker must be restarted afterwards (done once after all fixes).
    pub restarts_docker: bool,
    pub auto: bool,
}

impl Fix {
    pub(super) fn manual(shown: impl Into<String>) -> Self {
        Fix {
            shown: shown.into(),
            commands: Vec::new(),
            restarts_docker: false,
            auto: false,
        }
    }

    pub(super) fn auto(root: bool, commands: Vec<Cmd>, restarts_docker: bool) -> Self {
        let mut shown: Vec<String> = commands.iter().map(Cmd::display).collect();
        if restarts_docker {
            shown.push(restart_docker_cmd(root).display());
        }
        Fix {
            // What a user pastes into a terminal, where sudo may ask for the password.
            shown: shown.join(" && ").replace("sudo -n ", "sudo "),
            commands,
            restarts_docker,
            auto: true,
        }
    }
}

/// One check: what was looked at, what was found, what is needed, and the fix.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub found: String,
    pub needed: String,
    pub fix: Option<Fix>,
}

/// Facts later steps use, so they do not probe again.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HostFacts {
    pub docker: Option<DockerInfo>,
    pub gpus: Vec<Gpu>,
    pub toolkit: Option<Version>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    pub facts: HostFacts,
}

impl Report {
    pub fn status(&self) -> Status {
        self.checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Ok)
    }

    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == Status::Fail)
    }

    /// Whether `--fix` has something to do: a check that is not ok, failed or warned, with an
    /// automatic fix.
    pub fn auto_fixable(&self) -> bool {
        self.checks
            .iter()
            .any(|c| c.status != Status::Ok && c.fix.as_ref().is_some_and(|f| f.auto))
    }

    /// The doctor's table: one line per check, then the fix of every check that is not ok.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let mark = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            let _ = writeln!(out, "{mark} {:<30} found: {}", c.name, c.found);
            if c.status != Status::Ok {
                let _ = writeln!(out, "     {:<30} needed: {}", "", c.needed);
                if let Some(fix) = &c.fix {
                    let how = if fix.auto {
                        "fix (--fix runs it)"
                    } else {
                        "fix"
                    };
                    let _ = writeln!(out, "     {:<30} {how}: {}", "", fix.shown);
                }
            }
        }
        out
    }
}

/// What preflight checks against; defaults are the real host paths.
#[derive(Clone, Debug)]
pub struct Options {
    /// Whether the profile needs GPUs (missing GPUs fail instead of warn).
    pub needs_gpu: bool,
    /// The kind section, for the in-node toolkit source check (`None` off kind).
    pub kind: Option<KindSpec>,
    pub proc_sys: PathBuf,
    pub toolkit_config: PathBuf,
    /// Where the inotify fix persists its sysctl settings.
    pub sysctl_conf: PathBuf,
    /// Run a container with the nvidia runtime and `nvidia-smi -L` (pulls the node image).
    pub gpu_container_probe: bool,
    /// Where device nodes are (`/dev`): WSL2 shows itself by `/dev/dxg`.
    pub dev: PathBuf,
    /// The CUDA sample `verify` runs, when it runs one (the driver must run its CUDA version).
    pub smoke_image: Option<String>,
    /// Whether the pipeline's model steps run on GPUs (its image is CUDA 13).
    pub pipeline_gpu: bool,
    /// Free space wanted where docker keeps images, in GiB.
    pub min_free_gib: u64,
    /// Whether kgf-up runs as root (fix commands then need no sudo).
    pub root: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            needs_gpu: true,
            kind: Some(KindSpec::default()),
            proc_sys: PathBuf::from("/proc/sys"),
            toolkit_config: PathBuf::from("/etc/nvidia-container-runtime/config.toml"),
            sysctl_conf: PathBuf::from("/etc/sysctl.d/99-kgf-up-inotify.conf"),
            gpu_container_probe: false,
            dev: PathBuf::from("/dev"),
            smoke_image: None,
            pipeline_gpu: false,
            min_free_gib: 50,
            root: running_as_root(),
        }
    }
}

/// Reads the effective uid from `/proc/self/status` (no libc binding needed for one number).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A host command that needs root: through `sudo -n` unless kgf-up is root. `-n` never prompts
/// (kgf-up gives sudo no terminal); a password need is reported as [`super::PreflightError::SudoPassword`].
pub(super) fn host_cmd(root: bool, program: &str) -> Cmd {
    if root {
        Cmd::new(program).changes()
    } else {
        Cmd::new("sudo").args(["-n", program]).changes()
    }
}

pub(super) fn restart_docker_cmd(root: bool) -> Cmd {
    host_cmd(root, "systemctl").args(["restart", "docker"])
}

pub(super) fn check(
    name: &'static str,
    status: Status,
    found: impl Into<String>,
    needed: impl Into<String>,
    fix: Option<Fix>,
) -> Check {
    Check {
        name,
        status,
        found: found.into(),
        needed: needed.into(),
        fix,
    }
}

/// Output of a read-only command, or why there is none.
pub(super) async fn read(exec: &Exec, cmd: Cmd) -> Result<String, ExecError> {
    exec.run_async(cmd).await.map(|o| o.stdout)
}

pub(super) fn not_found(e: &ExecError) -> bool {
    matches!(e, ExecError::NotFound { .. })
}
