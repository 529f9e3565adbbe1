//! Helm through [`Exec`]: detect helm 3 or 4, read a release's state, `upgrade --install` with a
//! pinned chart and generated values, recover releases stuck in `pending-*`, uninstall.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::exec::{Cmd, Exec, ExecError};
use crate::profile::Source;

#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    #[error("cannot tell the helm version from `{0}`; kgf-up supports helm 3 and 4")]
    Version(String),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("helm printed a status kgf-up cannot read: {0}")]
    Parse(String),
}

/// A helm binary and its major version.
#[derive(Clone, Debug)]
pub struct Helm {
    pub program: String,
    pub major: u32,
}

/// What `helm status` says of a release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployed {
    /// deployed, failed, pending-install, pending-upgrade, pending-rollback, ...
    pub status: String,
    pub chart: String,
    pub version: String,
    pub revision: u32,
}

/// One release to install.
pub struct Release<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub source: &'a Source,
    pub base_dir: &'a Path,
    pub values_file: &'a Path,
    pub timeout: Duration,
}

/// Errors of an API server or webhook that is still starting heal by themselves.
const TRANSIENT: &[&str] = &[
    "connection refused",
    "i/o timeout",
    "TLS handshake timeout",
    "the server is currently unable to handle the request",
    "etcdserver: request timed out",
];

impl Helm {
    pub fn detect(exec: &Exec, program: &str) -> Result<Helm, HelmError> {
        let out = exec.run(&Cmd::new(program).args(["version", "--short"]))?;
        let text = out.stdout.trim();
        let major = text
            .strip_prefix('v')
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse::<u32>().ok())
            .filter(|m| *m == 3 || *m == 4)
            .ok_or_else(|| HelmError::Version(text.to_string()))?;
        Ok(Helm {
            program: program.to_string(),
            major,
        })
    }

    fn cmd(&self) -> Cmd {
        Cmd::new(&self.program)
    }

    /// The release's state, or `None` when there is none.
    pub fn status(
        &self,
        exec: &Exec,
        name: &str,
        namespace: &str,
    ) -> Result<Option<Deployed>, HelmError> {
        let cmd = self
            .cmd()
            .args([
                "list",
                "--all",
                "--namespace",
                namespace,
                "--output",
                "json",
            ])
            .args(["--filter", &format!("^{}$", regex_escape(name))]);
        let out = exec.run(&cmd)?;
        #[derive(Deserialize)]
        struct Row {
            status: String,
            chart: String,
            revision: String,
        }
        let rows: Vec<Row> =
            serde_json::from_str(&out.stdout).map_err(|e| HelmError::Parse(e.to_string()))?;
        Ok(rows.into_iter().next().map(|r| {
            // `chart` is "<name>-<version>"; the version starts after the last '-' followed by a digit.
            let split = r
                .chart
                .match_indices('-')
                .filter(|(i, _)| r.chart[i + 1..].starts_with(|c: char| c.is_ascii_digit()))
                .map(|(i, _)| i)
                .next_back()
                .unwrap_or(r.chart.len());
            Deployed {
                status: r.status,
                chart: r.chart[..split].to_string(),
                version: r.chart.get(split + 1..).unwrap_or("").to_string(),
                revision: r.revision.parse().unwrap_or(0),
            }
        }))
    }

    /// `helm upgrade --install ... --wait`, with the flags of this helm's major version.
    pub fn upgrade_install(&self, exec: &Exec, r: &Release<'_>) -> Result<(), HelmError> {
        let mut cmd = self.cmd().args(["upgrade", "--install", r.name]);
        cmd = match r.source {
            Source::Helm {
                repo,
                chart,
                version,
            } => cmd.args([chart.as_str(), "--repo", repo, "--version", version]),
            Source::Oci { reference, version } => {
                cmd.args([reference.as_str(), "--version", version.as_str()])
            }
            Source::Chart { path } => cmd.arg(r.base_dir.join(path).display().to_string()),
            Source::Kustomize { .. } => unreachable!("kustomize sources are not helm releases"),
        };
        cmd = cmd
            .args(["--namespace", r.namespace, "--create-namespace"])
            .args(["--values", &r.values_file.display().to_string()])
            .args(["--timeout", &format!("{}s", r.timeout.as_secs())]);
        cmd = if self.major >= 4 {
            cmd.arg("--wait=watcher")
        } else {
            cmd.arg("--wait")
        };
        let cmd = cmd
            .timeout(r.timeout + Duration::from_secs(30))
            .retry_on(TRANSIENT, 3, Duration::from_secs(5))
            .changes();
        exec.run(&cmd)?;
        Ok(())
    }

    /// Unsticks a release left `pending-*` by an interrupted helm: a release never deployed is
    /// uninstalled (the next install starts clean); one with an earlier revision is rolled back to it.
    pub fn recover(
        &self,
        exec: &Exec,
        name: &str,
        namespace: &str,
        seen: &Deployed,
    ) -> Result<(), HelmError> {
        if seen.revision <= 1 {
            self.uninstall(exec, name, namespace)
        } else {
            let cmd = self
                .cmd()
                .args(["rollback", name, "--namespace", namespace])
                .arg((seen.revision - 1).to_string())
                .timeout(Duration::from_secs(300))
                .changes();
            exec.run(&cmd)?;
            Ok(())
        }
    }

    pub fn uninstall(&self, exec: &Exec, name: &str, namespace: &str) -> Result<(), HelmError> {
        let mut cmd = self
            .cmd()
            .args(["uninstall", name, "--namespace", namespace]);
        cmd = if self.major >= 4 {
            cmd.arg("--wait=watcher")
        } else {
            cmd.arg("--wait")
        };
        exec.run(&cmd.timeout(Duration::from_secs(300)).changes())?;
        Ok(())
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}
