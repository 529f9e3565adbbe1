//! What the verbs need to know per cluster provider, so that they hold no per-provider branches:
//! the flags a provider honours, the host checks it runs before anything starts, what its
//! destructive verbs destroy (said before asking for consent), and how `down` removes it. The
//! steps that make a cluster are built by `cluster::steps`; this is the rest.

use futures::future::LocalBoxFuture;

use crate::cluster;
use crate::plan::Plan;
use crate::preflight::{self, Report, Status};
use crate::profile::{Profile, Provider};
use crate::step::{Ctx, StepError};
use crate::ui::Ui;

/// A flag that only some providers act on; given to another it is bad input, not ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    Kubeconfig,
    Context,
    DownAll,
    DoctorFix,
}

impl Flag {
    pub fn shown(self) -> &'static str {
        match self {
            Flag::Kubeconfig => "--kubeconfig",
            Flag::Context => "--context",
            Flag::DownAll => "down --all",
            Flag::DoctorFix => "doctor --fix",
        }
    }

    /// Who acts on it, and on what.
    pub fn applies_to(self) -> &'static str {
        match self {
            Flag::Kubeconfig | Flag::Context => "the existing provider",
            Flag::DownAll => "the kind provider (its registry container)",
            Flag::DoctorFix => "the kind provider (host fixes)",
        }
    }
}

pub trait ClusterProvider: Sync {
    fn honours(&self, flag: Flag) -> bool;

    /// The host checks `doctor` shows and `up` needs passed; `None` where the host runs no node.
    fn host_checks(&self, _profile: &Profile) -> Option<preflight::Options> {
        None
    }

    /// Refuses an install on a host that cannot run this provider's cluster (exit 3), given the
    /// host checks' report when there are any.
    fn ready(&self, _profile: &Profile, _report: Option<&Report>) -> Result<(), StepError> {
        Ok(())
    }

    /// What `down` destroys.
    fn down_destroys(&self, profile: &Profile) -> String;

    /// What `up` may destroy, when it may.
    fn up_destroys(&self, _profile: &Profile) -> Option<String> {
        None
    }

    /// A line said before `up` starts.
    fn up_note(&self) -> Option<&'static str> {
        None
    }

    /// Removes the cluster, or what kgf-up recorded on it; says what it did on `ui`.
    fn down<'a>(
        &'a self,
        plan: &'a Plan,
        ctx: &'a Ctx,
        profile: &'a Profile,
        ui: &'a Ui,
        all: bool,
    ) -> LocalBoxFuture<'a, Result<(), StepError>>;
}

/// The provider a profile names.
pub fn of(provider: Provider) -> &'static dyn ClusterProvider {
    match provider {
        Provider::Kind => &Kind,
        Provider::Rke2 => &Rke2,
        Provider::Sim => &Sim,
        Provider::Existing => &Existing,
    }
}

/// kind on this workstation: the host is checked first (docker, GPUs, the NVIDIA runtime), and
/// deleting the cluster removes everything installed on it.
pub struct Kind;

impl ClusterProvider for Kind {
    fn honours(&self, flag: Flag) -> bool {
        matches!(flag, Flag::DownAll | Flag::DoctorFix)
    }

    fn host_checks(&self, profile: &Profile) -> Option<preflight::Options> {
        Some(cluster::preflight_options(profile))
    }

    fn ready(&self, profile: &Profile, report: Option<&Report>) -> Result<(), StepError> {
        match report {
            Some(report) if report.status() == Status::Fail => {
                Err(not_ready_for_kind(profile, report))
            }
            _ => Ok(()),
        }
    }

    fn down_destroys(&self, profile: &Profile) -> String {
        format!(
            "`down` deletes the kind cluster `{}` and everything in it",
            profile.cluster.kind.name
        )
    }

    fn up_destroys(&self, profile: &Profile) -> Option<String> {
        profile.cluster.kind.recreate.then(|| {
            format!(
                "cluster.kind.recreate is set: if the kind cluster `{}` differs from the profile, `up` deletes it and everything in it, then creates it again",
                profile.cluster.kind.name
            )
        })
    }

    fn down<'a>(
        &'a self,
        _plan: &'a Plan,
        ctx: &'a Ctx,
        profile: &'a Profile,
        ui: &'a Ui,
        all: bool,
    ) -> LocalBoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let spec = &profile.cluster.kind;
            let removed = cluster::kind::down(&ctx.exec, spec, all)
                .await
                .map_err(|e| {
                    StepError::context(format!("deleting kind cluster {}", spec.name), e)
                })?;
            ui.note(&if removed.cluster {
                format!("deleted kind cluster {}", spec.name)
            } else {
                format!("no kind cluster named {}: nothing to delete", spec.name)
            });
            if all && spec.registry.enabled {
                ui.note(&if removed.registry {
                    format!(
                        "removed registry container {} and its volume (the pushed images)",
                        spec.registry.name
                    )
                } else {
                    format!("no registry container named {}", spec.registry.name)
                });
            }
            Ok(())
        })
    }
}

/// rke2 on hosts over SSH: uninstalling rke2 removes everything installed on the cluster.
pub struct Rke2;

impl ClusterProvider for Rke2 {
    fn honours(&self, _flag: Flag) -> bool {
        false
    }

    fn down_destroys(&self, profile: &Profile) -> String {
        format!(
            "`down` uninstalls rke2 from {} hosts, and everything on the cluster with it",
            profile.cluster.rke2.hosts.len()
        )
    }

    fn down<'a>(
        &'a self,
        plan: &'a Plan,
        ctx: &'a Ctx,
        _profile: &'a Profile,
        ui: &'a Ui,
        _all: bool,
    ) -> LocalBoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let rke2 = plan.rke2.as_ref().expect("an rke2 plan has its hosts");
            let outcomes = rke2.down(ctx).await;
            rke2.close().await;
            if let Some(e) = cluster::rke2::down_error(&outcomes) {
                return Err(e);
            }
            ui.note(&format!("uninstalled rke2 from {} hosts", outcomes.len()));
            Ok(())
        })
    }
}

/// A simulated cluster (kwok): needs kwokctl and helm; `down` removes what kgf-up recorded, then
/// the cluster.
pub struct Sim;

impl ClusterProvider for Sim {
    fn honours(&self, _flag: Flag) -> bool {
        false
    }

    fn ready(&self, profile: &Profile, _report: Option<&Report>) -> Result<(), StepError> {
        let missing = sim_missing(profile);
        if missing.is_empty() {
            return Ok(());
        }
        Err(StepError::new(format!(
            "the sim profile needs kwokctl and helm: {}",
            missing.join("; ")
        ))
        .preflight())
    }

    fn down_destroys(&self, profile: &Profile) -> String {
        format!(
            "`down` removes what kgf-up installed and deletes the simulated cluster `{}`",
            profile.name
        )
    }

    fn up_note(&self) -> Option<&'static str> {
        Some("sim profile: nodes are simulated by kwok; pods are scheduled but never run")
    }

    fn down<'a>(
        &'a self,
        plan: &'a Plan,
        ctx: &'a Ctx,
        profile: &'a Profile,
        ui: &'a Ui,
        _all: bool,
    ) -> LocalBoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            if remove_recorded(plan, ctx, ui).await? {
                cluster::sim::delete(&ctx.exec, profile)?;
                ui.note(&format!("deleted simulated cluster {}", profile.name));
            }
            Ok(())
        })
    }
}

/// A cluster kgf-up did not make: `down` removes only what kgf-up recorded on it.
pub struct Existing;

impl ClusterProvider for Existing {
    fn honours(&self, flag: Flag) -> bool {
        matches!(flag, Flag::Kubeconfig | Flag::Context)
    }

    fn down_destroys(&self, _profile: &Profile) -> String {
        "`down` removes every release, object and namespace kgf-up recorded on the cluster".into()
    }

    fn down<'a>(
        &'a self,
        plan: &'a Plan,
        ctx: &'a Ctx,
        _profile: &'a Profile,
        ui: &'a Ui,
        _all: bool,
    ) -> LocalBoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            remove_recorded(plan, ctx, ui).await?;
            Ok(())
        })
    }
}

/// Removes what the inventory lists, in reverse plan order; false when there is no cluster.
async fn remove_recorded(plan: &Plan, ctx: &Ctx, ui: &Ui) -> Result<bool, StepError> {
    let seen = plan.steps[0].observe(ctx).await?;
    if !seen.is_converged() {
        ui.note(&format!("no cluster to clean: {}", seen.reason));
        return Ok(false);
    }
    let removed = crate::teardown::remove_recorded(plan, ctx, ui).await?;
    ui.note(&format!("down: removed {removed} recorded steps"));
    Ok(true)
}

/// For each of kwokctl and helm that is not found: "`kwokctl` is not on PATH (fix: ...)".
fn sim_missing(profile: &Profile) -> Vec<String> {
    let hints = preflight::install_hints();
    [&profile.tools.kwokctl, &profile.tools.helm]
        .into_iter()
        .filter(|tool| which::which(tool).is_err())
        .map(|tool| {
            let hint = hints
                .iter()
                .find(|(p, _)| p == tool)
                .map(|(_, h)| h.clone())
                .unwrap_or_else(|| match tool.as_str() {
                    "kwokctl" => "go install sigs.k8s.io/kwok/cmd/kwokctl@v0.8.0".into(),
                    _ => format!("install {tool}"),
                });
            format!("`{tool}` is not on PATH (fix: {hint})")
        })
        .collect()
}

/// `up` on a machine that fails the kind preflight: what failed, once, and what to try instead.
/// A GPU profile on a host whose Docker works offers the `kind` profile (the platform without a
/// GPU); without a working Docker, the sim profile (and whether its tools are here).
fn not_ready_for_kind(profile: &Profile, report: &Report) -> StepError {
    let wants_gpus = profile.validation.min_gpu_nodes > 0;
    let mut message = format!(
        "this machine is not ready for a {}kind cluster:",
        if wants_gpus { "GPU " } else { "" }
    );
    for c in report.failed() {
        message.push_str(&format!(
            "\n  ✗ {}: found {}; needed {}",
            c.name, c.found, c.needed
        ));
        if let Some(fix) = &c.fix {
            message.push_str(&format!("\n{}", crate::fix::line(4, &fix.shown)));
        }
    }
    let docker_works = report
        .facts
        .docker
        .as_ref()
        .is_some_and(preflight::parse::DockerInfo::reachable);
    let instead = if wants_gpus && docker_works {
        let also: Vec<&str> = report
            .failed()
            .map(|c| c.name)
            .filter(|n| !preflight::is_gpu_check(n))
            .collect();
        let needs = if also.is_empty() {
            "Docker works here".to_string()
        } else {
            format!("it needs the fixes above for {} too", also.join(", "))
        };
        format!(
            "or, without a GPU, the whole platform on this Docker host with the pipeline on the CPU: `kgf-up --profile kind` ({needs})"
        )
    } else {
        let sim = crate::load::load("sim", &[]).map(|l| l.profile);
        let missing = sim.as_ref().map(sim_missing).unwrap_or_default();
        let needs = if missing.is_empty() {
            "it needs kwokctl and helm, both found here".to_string()
        } else {
            format!("it needs kwokctl and helm: {}", missing.join("; "))
        };
        format!("or try kgf-up without a GPU or Docker: `kgf-up --profile sim` ({needs})")
    };
    StepError::new(message)
        .with_fix(format!(
            "run the fixes above (`kgf-up doctor --fix` applies the automatic ones); {instead}"
        ))
        .preflight()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_provider_specific_flag_is_honoured_by_exactly_the_providers_it_names() {
        let all = [
            Provider::Kind,
            Provider::Rke2,
            Provider::Sim,
            Provider::Existing,
        ];
        for flag in [
            Flag::Kubeconfig,
            Flag::Context,
            Flag::DownAll,
            Flag::DoctorFix,
        ] {
            let honouring: Vec<String> = all
                .iter()
                .filter(|p| of(**p).honours(flag))
                .map(|p| format!("the {p} provider"))
                .collect();
            assert_eq!(honouring.len(), 1, "{flag:?}");
            assert!(
                flag.applies_to().starts_with(&honouring[0]),
                "{flag:?} says it applies to {}, honoured by {}",
                flag.applies_to(),
                honouring[0]
            );
        }
    }
}
