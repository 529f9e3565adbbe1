//! The helm client bound to one cluster: the commands it runs, install (recovering a stuck
//! release first) and uninstall.

use std::time::Duration;

use super::failure::{NOT_FOUND, TRANSIENT};
use super::values::write_values;
use super::{
    HelmError, HelmVersion, InstallFailure, Installed, Recovery, Release, ReleaseStatus, Revision,
    recovery_for,
};
use crate::exec::{Cmd, Exec};
use crate::kube::Kubeconfig;

/// How long helm may run past its own `--timeout` before kgf-up stops it. Helm writes the failed
/// release record after its deadline; stopping it before that would itself leave a pending release.
const GRACE: Duration = Duration::from_secs(60);

/// helm's `--timeout` for recovering a stuck release.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(300);

/// A detected helm client bound to one cluster.
#[derive(Clone)]
pub struct Helm {
    pub(super) exec: Exec,
    pub(super) program: String,
    version: HelmVersion,
    /// `--kubeconfig` and `--kube-context`, on every command.
    kube: Vec<String>,
}

impl Helm {
    /// Asks `program` (usually `helm`) for its version and binds it to the cluster.
    pub async fn detect(
        exec: Exec,
        program: impl Into<String>,
        kubeconfig: &Kubeconfig,
    ) -> Result<Helm, HelmError> {
        let program = program.into();
        let version = super::version::detect(&exec, &program).await?;
        Ok(Helm::new(exec, program, version, kubeconfig))
    }

    /// A helm client of a known version (for `plan`, which runs nothing, and for tests).
    pub fn new(
        exec: Exec,
        program: impl Into<String>,
        version: HelmVersion,
        kubeconfig: &Kubeconfig,
    ) -> Helm {
        let mut kube = vec![
            "--kubeconfig".to_string(),
            kubeconfig.path.display().to_string(),
        ];
        if let Some(context) = &kubeconfig.context {
            kube.extend(["--kube-context".to_string(), context.clone()]);
        }
        Helm {
            exec,
            program: program.into(),
            version,
            kube,
        }
    }

    pub fn version(&self) -> HelmVersion {
        self.version
    }

    fn helm4(&self) -> bool {
        self.version.major >= 4
    }

    fn cmd(&self, args: &[&str], namespace: &str) -> Cmd {
        Cmd::new(&self.program)
            .args(args.iter().copied())
            .args(["--namespace", namespace])
            .args(self.kube.iter().cloned())
    }

    pub(super) fn read(&self, args: &[&str], namespace: &str) -> Cmd {
        self.cmd(args, namespace)
            .timeout(Duration::from_secs(60))
            .retry_on(TRANSIENT, 4, Duration::from_millis(500))
    }

    /// The `helm upgrade --install` command for `release`, with this helm's flags.
    pub fn upgrade_cmd(&self, release: &Release) -> Cmd {
        let mut cmd = Cmd::new(&self.program)
            .args(["upgrade", "--install", release.name.as_str()])
            .args(release.chart.args())
            .args([
                "--namespace",
                release.namespace.as_str(),
                "--create-namespace",
            ])
            .args([
                "--values".to_string(),
                release.values_file.display().to_string(),
            ])
            // Without it, helm 3 reuses the previous values when the file is empty, and a value
            // set by hand would survive every upgrade.
            .arg("--reset-values")
            .arg(if self.helm4() {
                "--wait=watcher"
            } else {
                "--wait"
            })
            .args([
                "--timeout".to_string(),
                format!("{}s", release.timeout.as_secs()),
            ]);
        if release.rollback_on_failure {
            cmd = cmd.arg(if self.helm4() {
                "--rollback-on-failure"
            } else {
                "--atomic"
            });
        }
        if release.force_replace {
            cmd = cmd.arg(if self.helm4() {
                "--force-replace"
            } else {
                "--force"
            });
        }
        if release.skip_crds {
            cmd = cmd.arg("--skip-crds");
        }
        cmd.args(self.kube.iter().cloned())
            .timeout(release.timeout + GRACE)
            // Only failures from before helm changed anything: it could not reach the cluster.
            .retry_on(
                &["Kubernetes cluster unreachable"],
                3,
                Duration::from_secs(2),
            )
            .changes()
    }

    /// The release's revisions, oldest first.
    pub async fn history(&self, name: &str, namespace: &str) -> Result<Vec<Revision>, HelmError> {
        let cmd = self.read(&["history", name, "-o", "json", "--max", "256"], namespace);
        match self.read_release(cmd, name, namespace).await? {
            Some(stdout) => parse_json(&stdout, "helm history"),
            None => Ok(Vec::new()),
        }
    }

    /// Runs a read about one release; `None` when helm says it does not exist.
    pub(super) async fn read_release(
        &self,
        cmd: Cmd,
        name: &str,
        namespace: &str,
    ) -> Result<Option<String>, HelmError> {
        match self.exec.run_async(cmd).await {
            Ok(out) => Ok(Some(out.stdout)),
            Err(e) if e.stderr().is_some_and(|s| s.contains(NOT_FOUND)) => Ok(None),
            Err(source) => Err(HelmError::Read {
                release: format!("{namespace}/{name}"),
                source: Box::new(source),
            }),
        }
    }

    /// Recovers `release` if an interrupted helm left it stuck, then upgrades or installs it and
    /// waits for its resources (helm's `--wait`, within `release.timeout`).
    pub async fn install(&self, release: &Release) -> Result<Installed, HelmError> {
        release.chart.validate()?;
        let recovery = self.recover(&release.name, &release.namespace).await?;
        write_values(&release.values_file, &release.values)?;
        self.exec
            .run_async(self.upgrade_cmd(release))
            .await
            .map_err(|source| HelmError::Install {
                release: release.id(),
                chart: release.chart.to_string(),
                failure: InstallFailure::classify(
                    &source
                        .stderr()
                        .map(str::to_string)
                        .unwrap_or_else(|| source.to_string()),
                ),
                timeout: release.timeout,
                source: Box::new(source),
            })?;
        Ok(Installed { recovery })
    }

    /// If the latest revision is stuck (pending-* or uninstalling), recovers it as the module
    /// docs describe and says what it did.
    pub async fn recover(
        &self,
        name: &str,
        namespace: &str,
    ) -> Result<Option<Recovery>, HelmError> {
        let history = self.history(name, namespace).await?;
        match history.last().map(|r| ReleaseStatus::parse(&r.status)) {
            Some(status) if status.is_pending() || status == ReleaseStatus::Uninstalling => {}
            _ => return Ok(None),
        }
        let Some(recovery) = recovery_for(&history) else {
            return Ok(None);
        };
        tracing::warn!(target: "helm", release = %format!("{namespace}/{name}"), "{recovery}");
        let cmd = match &recovery {
            Recovery::Rollback { to, .. } => {
                // No --wait: the upgrade that follows waits for the state the profile wants.
                self.cmd(&["rollback", name, &to.to_string()], namespace)
            }
            Recovery::Uninstall { .. } => self.cmd(
                &[
                    "uninstall",
                    name,
                    "--wait",
                    "--timeout",
                    &format!("{}s", RECOVERY_TIMEOUT.as_secs()),
                ],
                namespace,
            ),
        }
        .timeout(RECOVERY_TIMEOUT + GRACE)
        .changes();
        self.exec
            .run_async(cmd)
            .await
            .map_err(|source| HelmError::Recover {
                release: format!("{namespace}/{name}"),
                recovery: recovery.clone(),
                source: Box::new(source),
            })?;
        Ok(Some(recovery))
    }

    /// Uninstalls release `name` and waits for its objects to go (helm keeps the CRDs of `crds/`).
    /// Returns whether there was a release.
    pub async fn uninstall(
        &self,
        name: &str,
        namespace: &str,
        timeout: Duration,
    ) -> Result<bool, HelmError> {
        let cmd = self
            .cmd(
                &[
                    "uninstall",
                    name,
                    "--wait",
                    "--timeout",
                    &format!("{}s", timeout.as_secs()),
                ],
                namespace,
            )
            .timeout(timeout + GRACE)
            .retry_on(TRANSIENT, 3, Duration::from_secs(1))
            .changes();
        match self.exec.run_async(cmd).await {
            Ok(_) => Ok(true),
            Err(e) if e.stderr().is_some_and(|s| s.contains(NOT_FOUND)) => Ok(false),
            Err(source) => Err(HelmError::Uninstall {
                release: format!("{namespace}/{name}"),
                source: Box::new(source),
            }),
        }
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str, command: &str) -> Result<T, HelmError> {
    serde_json::from_str(text).map_err(|e| HelmError::Output {
        command: command.to_string(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helm::ChartSource;
    use serde_json::json;

    fn helm(major: u32) -> Helm {
        Helm::new(
            Exec::with_gate(crate::gate::Gate::record()),
            "helm",
            HelmVersion {
                major,
                minor: if major == 3 { 22 } else { 3 },
                patch: 0,
            },
            &Kubeconfig {
                path: "/kc".into(),
                context: Some("kind-kgf".into()),
            },
        )
    }

    fn release(chart: ChartSource) -> Release {
        Release::new(
            "kuberay-operator",
            "kuberay",
            chart,
            json!({"image": {"tag": "1.7.0"}}),
            "/work/kuberay.values.json",
            Duration::from_secs(300),
        )
    }

    fn repo() -> ChartSource {
        ChartSource::Repo {
            url: "https://ray-project.github.io/kuberay-helm/".into(),
            chart: "kuberay-operator".into(),
            version: "1.7.0".into(),
        }
    }

    #[test]
    fn helm3_upgrade_uses_wait_and_atomic() {
        let mut r = release(repo());
        r.rollback_on_failure = true;
        r.force_replace = true;
        assert_eq!(
            helm(3).upgrade_cmd(&r).display(),
            "helm upgrade --install kuberay-operator kuberay-operator \
             --repo https://ray-project.github.io/kuberay-helm/ --version 1.7.0 \
             --namespace kuberay --create-namespace --values /work/kuberay.values.json \
             --reset-values --wait --timeout 300s --atomic --force \
             --kubeconfig /kc --kube-context kind-kgf"
        );
    }

    #[test]
    fn helm4_upgrade_uses_watcher_and_rollback_on_failure() {
        let mut r = release(ChartSource::Oci {
            reference: "oci://ghcr.io/kserve/charts/kserve-crd".into(),
            version: "v0.20.0".into(),
            plain_http: false,
        });
        r.rollback_on_failure = true;
        r.force_replace = true;
        let line = helm(4).upgrade_cmd(&r).display();
        assert!(
            line.starts_with(
                "helm upgrade --install kuberay-operator oci://ghcr.io/kserve/charts/kserve-crd --version v0.20.0 "
            ),
            "{line}"
        );
        for flag in [
            " --wait=watcher ",
            " --rollback-on-failure ",
            " --force-replace ",
        ] {
            assert!(line.contains(flag), "{flag} missing in {line}");
        }
        for flag in [" --atomic", " --force ", " --wait ", "--plain-http"] {
            assert!(!line.contains(flag), "{flag} is helm 3 only: {line}");
        }
        let plain = helm(4).upgrade_cmd(&release(repo())).display();
        assert!(!plain.contains("rollback-on-failure") && !plain.contains("force"));
        assert!(helm(4).upgrade_cmd(&r).is_change());
    }

    #[test]
    fn a_mirror_without_tls_gets_plain_http() {
        let mirror = ChartSource::Oci {
            reference: "oci://localhost:5001/charts/kserve-crd".into(),
            version: "v0.20.0".into(),
            plain_http: true,
        };
        mirror.validate().expect("a port in the host is not a tag");
        let line = helm(3).upgrade_cmd(&release(mirror)).display();
        assert!(
            line.contains("oci://localhost:5001/charts/kserve-crd --version v0.20.0 --plain-http "),
            "{line}"
        );
    }

    #[test]
    fn local_chart_is_passed_as_a_path_without_version() {
        let r = release(ChartSource::Local {
            path: "/charts/op-0.3.0.tgz".into(),
        });
        let line = helm(3).upgrade_cmd(&r).display();
        assert!(line.starts_with(
            "helm upgrade --install kuberay-operator /charts/op-0.3.0.tgz --namespace"
        ));
        assert!(!line.contains("--version"));
    }
}
