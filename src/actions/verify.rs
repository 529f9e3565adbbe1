//! `verify`: the smoke checks and each component's health, on the cluster as it is.

use std::sync::Arc;
use std::time::Instant;

use super::Failure;
use super::up::layers;
use crate::plan::{self, Plan};
use crate::profile::Profile;
use crate::runner;
use crate::step::{Ctx, Outcome};
use crate::ui::Ui;

/// `verify`: the smoke checks alone, on the cluster as it is. The cluster steps are only
/// observed (to find the cluster); the GPU checks run as steps of their own.
pub(super) async fn verify(
    plan: &Plan,
    profile: &Profile,
    ctx: Arc<Ctx>,
    ui: &Ui,
    started: Instant,
) -> Result<(), Failure> {
    for step in plan.steps.iter().filter(|s| {
        let id = s.id();
        !id.as_str().starts_with("component/")
            && !id.as_str().starts_with("validate/")
            && !id.as_str().starts_with("pipeline/")
    }) {
        let seen = step.observe(&ctx).await?;
        if !seen.is_converged() {
            return Err(Failure::new(format!("{}: {}", step.id(), seen.reason), 1)
                .with_fix("run `kgf-up up` first"));
        }
    }
    let steps = crate::validate::steps(
        profile,
        &plan.gpu_nodes,
        &[],
        &[],
        crate::validate::Smoke::Afresh,
    );
    let levels = plan::levels(&steps).map_err(Failure::input)?;
    let checks = Plan {
        steps,
        levels,
        helm: plan.helm.clone(),
        rke2: None,
        gpu_nodes: plan.gpu_nodes.clone(),
    };
    let finished = runner::up(&checks, ctx.clone(), ui, 1).await;
    ctx.release_lock().await;
    let kube = ctx.kube().await?;
    let mut unhealthy = layers(profile, kube, None, ui).await;
    let pods_run = crate::components::pods_run(profile.cluster.provider);
    for c in crate::components::resolve(profile).map_err(Failure::input)? {
        match crate::components::verify(kube, &c, pods_run).await {
            Ok(why) => ui.note(&format!("  ✓ {:<36} {why}", format!("health/{}", c.name))),
            Err(e) => {
                ui.note(&format!(
                    "  ✗ {:<36} {}",
                    format!("health/{}", c.name),
                    e.message
                ));
                unhealthy.push(c.name);
            }
        }
    }
    if !unhealthy.is_empty() {
        return Err(Failure::new(
            format!("unhealthy: {}", unhealthy.join(", ")),
            1,
        ));
    }
    if finished.is_empty() && !ui.is_json() {
        // Nothing ran that could be "converged": say what was checked instead.
        ui.note(&format!(
            "\nverified: the cluster and every component's health; no GPU checks (validation.min_gpu_nodes is 0) ({:.1}s)\nnext: kgf-up status",
            started.elapsed().as_secs_f64()
        ));
    } else {
        ui.summary(&finished, started.elapsed(), "kgf-up status");
    }
    match finished
        .iter()
        .find(|f| matches!(f.outcome, Outcome::Failed(_)))
    {
        Some(f) => Err(Failure::new(
            format!("check {} failed (details above)", f.id),
            1,
        )),
        None => Ok(()),
    }
}
