//! Remote commands over the system OpenSSH client, so `~/.ssh/config`, the agent and bastions
//! (`ProxyJump`) work as the user set them up.
//!
//! Every connection is multiplexed (one master per host, its socket in a private directory) and
//! never prompts (`BatchMode`). Host keys are checked strictly unless the caller turned that off.
//! Secrets reach a host only on stdin ([`Ssh::upload_secret`]); remote command lines are logged.
//! This module runs commands through [`crate::exec`] and decides nothing about what to run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::exec::{Cmd, Exec, ExecError, Output, shell_quote};
use crate::fix::Fix;
use crate::secret::Secret;

/// One SSH destination. Unset fields fall back to `~/.ssh/config` and OpenSSH's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Host name, address or `~/.ssh/config` alias.
    pub address: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// Private key; without it the agent and `~/.ssh/config` decide.
    pub identity: Option<PathBuf>,
}

/// Connection options shared by all hosts of a run.
#[derive(Clone, Debug)]
pub struct SshOptions {
    /// `StrictHostKeyChecking=yes` (the default): unknown or changed host keys are refused.
    pub strict_host_keys: bool,
    /// A known_hosts file to use instead of the user's.
    pub known_hosts: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// How long an idle master connection stays up after the last command.
    pub persist: Duration,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            strict_host_keys: true,
            known_hosts: None,
            connect_timeout: Duration::from_secs(10),
            persist: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("{host}: cannot reach its SSH server: {detail}")]
    Unreachable { host: String, detail: String },
    #[error("{host}: SSH login was refused: {detail}")]
    Auth { host: String, detail: String },
    #[error("{host}: its SSH host key is not trusted: {detail}")]
    HostKey { host: String, detail: String },
    #[error("{host}: `{command}` exited with {code}: {stderr}")]
    Command {
        host: String,
        command: String,
        code: String,
        stderr: String,
    },
    #[error("{host}: `{command}` did not finish within {}s", after.as_secs())]
    TimedOut {
        host: String,
        command: String,
        after: Duration,
    },
    #[error("{host}: could not run ssh")]
    Exec {
        host: String,
        #[source]
        source: Box<ExecError>,
    },
    #[error("could not create the SSH control directory")]
    ControlDir(#[source] std::io::Error),
}

impl SshError {
    /// The host the error is about.
    pub fn host(&self) -> Option<&str> {
        match self {
            SshError::Unreachable { host, .. }
            | SshError::Auth { host, .. }
            | SshError::HostKey { host, .. }
            | SshError::Command { host, .. }
            | SshError::TimedOut { host, .. }
            | SshError::Exec { host, .. } => Some(host),
            SshError::ControlDir(_) => None,
        }
    }
}

impl Fix for SshError {
    fn fix(&self) -> Option<String> {
        Some(match self {
            SshError::Unreachable { host, .. } => format!(
                "check that {host} is up and that its SSH port is open from this machine \
                 (try `ssh {host} true`)"
            ),
            SshError::Auth { host, .. } => format!(
                "make the key in the profile (or your agent) authorized for the user on {host}; \
                 `ssh {host} true` must log in without a password prompt"
            ),
            SshError::HostKey { host, .. } => format!(
                "verify {host}'s host key out of band and add it to known_hosts \
                 (`ssh-keyscan {host}` shows it; compare the fingerprint before trusting it)"
            ),
            SshError::Command { .. } | SshError::TimedOut { .. } => {
                "see the command's error output above; re-run once it is fixed".to_string()
            }
            SshError::Exec { .. } => "install the OpenSSH client (`ssh`)".to_string(),
            SshError::ControlDir(_) => "make the temporary directory writable".to_string(),
        })
    }
}

/// The OpenSSH client, with one multiplexed connection per host.
#[derive(Clone)]
pub struct Ssh {
    exec: Exec,
    opts: SshOptions,
    /// Holds the control sockets; private (0700) so no other user can ride the connections.
    control_dir: Arc<tempfile::TempDir>,
}

impl Ssh {
    pub fn new(exec: Exec, opts: SshOptions) -> Result<Self, SshError> {
        if !opts.strict_host_keys {
            tracing::warn!(
                target: "ssh",
                "host key checking is off: a machine impersonating a host would receive its secrets"
            );
        }
        // Short path: a unix socket path must fit in 108 bytes, and %C is 40 characters.
        let control_dir = tempfile::Builder::new()
            .prefix("kgf-ssh-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir_in("/tmp")
            .map_err(SshError::ControlDir)?;
        Ok(Ssh {
            exec,
            opts,
            control_dir: Arc::new(control_dir),
        })
    }

    pub fn exec(&self) -> &Exec {
        &self.exec
    }

    /// The `ssh` invocation that runs the shell command `remote` on `target`. Callers add stdin,
    /// [`Cmd::changes`] or a timeout, and run it with [`Ssh::run`].
    /// `remote` runs under `sh -c` whatever the user's login shell is (fish, csh, ...).
    pub fn command(&self, target: &Target, remote: &str) -> Cmd {
        Cmd::new("ssh")
            .args(self.options(target))
            .args(["--", &target.address])
            .arg(format!("sh -c {}", shell_quote(remote)))
    }

    fn options(&self, target: &Target) -> Vec<String> {
        let o = |k: &str, v: &str| vec!["-o".to_string(), format!("{k}={v}")];
        let mut args = Vec::new();
        args.extend(o("BatchMode", "yes"));
        args.extend(o("ControlMaster", "auto"));
        args.extend(o(
            "ControlPath",
            &format!("{}/%C", self.control_dir.path().display()),
        ));
        args.extend(o(
            "ControlPersist",
            &format!("{}s", self.opts.persist.as_secs()),
        ));
        args.extend(o(
            "ConnectTimeout",
            &self.opts.connect_timeout.as_secs().to_string(),
        ));
        args.extend(o("ServerAliveInterval", "15"));
        if self.opts.strict_host_keys {
            args.extend(o("StrictHostKeyChecking", "yes"));
            if let Some(path) = &self.opts.known_hosts {
                args.extend(o("UserKnownHostsFile", &path.display().to_string()));
            }
        } else {
            // Nothing learned this way is written down: an unchecked key must not become trusted.
            args.extend(o("StrictHostKeyChecking", "no"));
            args.extend(o("UserKnownHostsFile", "/dev/null"));
        }
        if let Some(user) = &target.user {
            args.extend(["-l".to_string(), user.clone()]);
        }
        if let Some(port) = target.port {
            args.extend(["-p".to_string(), port.to_string()]);
        }
        if let Some(key) = &target.identity {
            args.extend(["-i".to_string(), key.display().to_string()]);
            args.extend(o("IdentitiesOnly", "yes"));
        }
        args
    }

    /// Runs `cmd` (made by [`Ssh::command`]) and sorts ssh's own failures from the command's.
    pub async fn run(&self, target: &Target, cmd: Cmd) -> Result<Output, SshError> {
        let shown = cmd.get_args().last().cloned().unwrap_or_default();
        match self.exec.run_async(cmd).await {
            Ok(out) => Ok(out),
            Err(err) => Err(classify(&target.address, &shown, err)),
        }
    }

    /// Runs the shell command `remote` on `target`, read-only.
    pub async fn sh(&self, target: &Target, remote: &str) -> Result<Output, SshError> {
        self.run(target, self.command(target, remote)).await
    }

    /// Writes `content` to `path` on `target` with `mode`, as root, through stdin: the content never
    /// appears in a command line or the log.
    pub async fn upload_secret(
        &self,
        target: &Target,
        path: &Path,
        mode: u32,
        content: &Secret,
    ) -> Result<(), SshError> {
        let cmd = self
            .command(target, &install_command(path, mode))
            .stdin_secret(content)
            .changes();
        self.run(target, cmd).await.map(|_| ())
    }

    /// Writes non-secret `content` to `path` on `target` with `mode`, as root.
    pub async fn upload(
        &self,
        target: &Target,
        path: &Path,
        mode: u32,
        content: &[u8],
    ) -> Result<(), SshError> {
        let cmd = self
            .command(target, &install_command(path, mode))
            .stdin(content.to_vec())
            .changes();
        self.run(target, cmd).await.map(|_| ())
    }

    /// Closes the master connection to `target`, if there is one.
    pub async fn close(&self, target: &Target) {
        let cmd =
            Cmd::new("ssh")
                .args(self.options(target))
                .args(["-O", "exit", "--", &target.address]);
        // No master (never connected, or already gone) is the normal case here.
        let _ = self.exec.run_async(cmd).await;
    }
}

/// `install` creates the file with its mode before writing, so the content is never readable by
/// others, not even for a moment; the directory is created first.
fn install_command(path: &Path, mode: u32) -> String {
    let dir = path.parent().unwrap_or(Path::new("/"));
    format!(
        "sudo -n install -d -m 0755 {} && sudo -n install -m {mode:04o} /dev/stdin {}",
        shell_quote(dir),
        shell_quote(path)
    )
}

fn classify(host: &str, remote: &str, err: ExecError) -> SshError {
    let host = host.to_string();
    match err {
        ExecError::Failed { code, stderr, .. } => {
            let lower = stderr.to_lowercase();
            let detail = || last_line(&stderr);
            if lower.contains("host key verification failed")
                || lower.contains("remote host identification has changed")
                || lower.contains("host key is known for")
            {
                SshError::HostKey {
                    host,
                    detail: if lower.contains("has changed") {
                        "the host key has CHANGED since it was recorded (a re-installed host, or \
                         someone in between)"
                            .to_string()
                    } else {
                        "no key for this host in known_hosts".to_string()
                    },
                }
            } else if lower.contains("permission denied (")
                || lower.contains("too many authentication failures")
            {
                SshError::Auth {
                    host,
                    detail: detail(),
                }
            } else if code == "255"
                && (lower.contains("connection refused")
                    || lower.contains("no route to host")
                    || lower.contains("timed out")
                    || lower.contains("network is unreachable")
                    || lower.contains("could not resolve")
                    || lower.contains("connection closed by")
                    || lower.contains("connection reset"))
            {
                SshError::Unreachable {
                    host,
                    detail: detail(),
                }
            } else {
                SshError::Command {
                    host,
                    command: remote.to_string(),
                    code,
                    stderr,
                }
            }
        }
        ExecError::TimedOut { after, .. } => SshError::TimedOut {
            host,
            command: remote.to_string(),
            after,
        },
        other => SshError::Exec {
            host,
            source: Box::new(other),
        },
    }
}

fn last_line(text: &str) -> String {
    text.trim()
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(code: &str, stderr: &str) -> ExecError {
        ExecError::Failed {
            command: "ssh".into(),
            code: code.into(),
            stderr: stderr.into(),
            stdout: String::new(),
        }
    }

    #[test]
    fn ssh_failures_are_told_apart_from_command_failures() {
        let e = classify(
            "h1",
            "true",
            failed(
                "255",
                "ssh: connect to host 198.18.0.2 port 22: Connection refused",
            ),
        );
        assert!(matches!(e, SshError::Unreachable { .. }), "{e:?}");
        assert_eq!(e.host(), Some("h1"));
        let e = classify(
            "h1",
            "true",
            failed("255", "root@198.18.0.2: Permission denied (publickey)."),
        );
        assert!(matches!(e, SshError::Auth { .. }), "{e:?}");
        let e = classify(
            "h1",
            "true",
            failed(
                "255",
                "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\nHost key verification failed.",
            ),
        );
        assert!(
            matches!(&e, SshError::HostKey { detail, .. } if detail.contains("CHANGED")),
            "{e:?}"
        );
        let e = classify(
            "h1",
            "true",
            failed(
                "255",
                "No ED25519 host key is known for x and you have requested strict checking.\nHost key verification failed.",
            ),
        );
        assert!(
            matches!(&e, SshError::HostKey { detail, .. } if detail.contains("no key")),
            "{e:?}"
        );
        let e = classify("h1", "sudo -n false", failed("1", "nope"));
        assert!(
            matches!(&e, SshError::Command { command, code, .. } if command == "sudo -n false" && code == "1"),
            "{e:?}"
        );
    }

    #[test]
    fn command_line_is_strict_batch_and_multiplexed() {
        let ssh = Ssh::new(
            Exec::new(),
            SshOptions {
                known_hosts: Some("/k/known".into()),
                ..SshOptions::default()
            },
        )
        .unwrap();
        let target = Target {
            address: "198.18.0.2".into(),
            user: Some("root".into()),
            port: Some(2222),
            identity: Some("/k/id".into()),
        };
        let args = ssh.command(&target, "uname -m").get_args().join(" ");
        for want in [
            "-o BatchMode=yes",
            "-o ControlMaster=auto",
            "-o StrictHostKeyChecking=yes",
            "-o UserKnownHostsFile=/k/known",
            "-l root -p 2222 -i /k/id",
            "-- 198.18.0.2 sh -c 'uname -m'",
        ] {
            assert!(args.contains(want), "{want} missing from {args}");
        }
        let mode = std::fs::metadata(ssh.control_dir.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn uploads_use_install_with_the_mode_and_stdin() {
        assert_eq!(
            install_command(Path::new("/etc/rancher/rke2/config.yaml"), 0o600),
            "sudo -n install -d -m 0755 /etc/rancher/rke2 && sudo -n install -m 0600 /dev/stdin /etc/rancher/rke2/config.yaml"
        );
    }
}
