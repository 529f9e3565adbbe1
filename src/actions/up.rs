//! `up`: converge every step, then start the pipeline run when one is asked for and check the
//! layers on top (store, run artifacts, served model).

use std::sync::Arc;
use std::time::Instant;

use super::Failure;
use super::failure::code;
use crate::cli::{PipelineAction, Verb};
use crate::plan::Plan;
use crate::profile::{Loaded, PipelineSpec, Profile};
use crate::provider::ClusterProvider;
use crate::runner;
use crate::step::{Ctx, Outcome};
use crate::ui::Ui;

/// `up` (and `pipeline upload|run`): every step in plan order, then the run when one is asked for.
pub(super) async fn up(
    plan: &Plan,
    loaded: &Loaded,
    ctx: Arc<Ctx>,
    ui: &Ui,
    provider: &dyn ClusterProvider,
    verb: &Verb,
    started: Instant,
) -> Result<(), Failure> {
    if let Some(note) = provider.up_note() {
        ui.note(note);
    }
    let finished = runner::up(plan, ctx.clone(), ui, loaded.profile.settings.concurrency).await;
    ctx.release_lock().await;
    let failed = finished.iter().find_map(|f| match &f.outcome {
        Outcome::Failed(e) => Some((f.id.clone(), e.kind)),
        _ => None,
    });
    let next = if failed.is_some() {
        "fix the cause above, then run `kgf-up up` again: converged steps are skipped"
    } else {
        "kgf-up status"
    };
    ui.summary(&finished, started.elapsed(), next);
    let run = matches!(
        verb,
        Verb::Up { run: true } | Verb::Pipeline(PipelineAction::Run)
    ) || loaded.profile.pipeline.run;
    match failed {
        None if run && loaded.profile.pipeline.enabled => {
            start_run(&loaded.profile.pipeline, &ctx, ui).await?;
            let failed = layers(&loaded.profile, ctx.kube().await?, None, ui).await;
            if failed.is_empty() {
                Ok(())
            } else {
                Err(Failure::new(
                    format!("the run finished, but {} failed (above)", failed.join(", ")),
                    1,
                ))
            }
        }
        None => Ok(()),
        Some((id, kind)) => Err(Failure::new(
            format!("step {id} failed (details above)"),
            code(kind),
        )),
    }
}

/// Starts a run of the uploaded pipeline, follows it, and prints the test steps' metrics.
async fn start_run(p: &PipelineSpec, ctx: &Ctx, ui: &Ui) -> Result<(), Failure> {
    use crate::pipeline::{build, deploy, kfp, spec, step};
    let image = build::image(p)?;
    let reference = p
        .image
        .clone()
        .or_else(|| image.map(|i| i.reference))
        .expect("an image is given or built");
    let rendered = build::rendered_spec(p, &reference)?;
    let name = spec::pipeline_name(build::SPEC).map_err(Failure::input)?;
    let endpoint = match &p.kfp_url {
        Some(url) => step::Endpoint::Direct(url.clone()),
        None => step::Endpoint::default(),
    };
    let client = endpoint.client(ctx).await?;
    let uploaded = match deploy::find(&client, &name, None, &rendered).await {
        Ok(deploy::Found::Current(u)) => u,
        Ok(_) => {
            return Err(Failure::new(
                format!("pipeline {name} has no version with this spec"),
                1,
            ));
        }
        Err(e) => return Err(step::step_error(e).into()),
    };
    let display_name = format!("gene-fusion {}", crate::inventory::now());
    let request = deploy::RunRequest {
        experiment: &p.experiment,
        display_name: &display_name,
        namespace: None,
        parameters: p.parameters.clone().into_iter().collect(),
        pipeline_root: None,
        polling: kfp::Polling::default(),
    };
    let change = crate::gate::Change::new(format!(
        "start run {display_name} of pipeline {name} in experiment {}",
        p.experiment
    ));
    let started = deploy::run(&client, &uploaded, request, |r| {
        ui.note(&kfp::render_tasks(r))
    });
    let Some(run) = ctx
        .gate()
        .change(change, started)
        .await
        .map_err(step::step_error)?
    else {
        return Ok(());
    };
    let kube = ctx.kube().await?;
    let metrics = deploy::run_metrics(&kube.client(), kfp::NAMESPACE, &run).await;
    ui.note(&format!(
        "run {} {}\n{}",
        run.run_id,
        run.state,
        deploy::render_metrics(&metrics)
    ));
    Ok(())
}

/// The layers after the GPU checks (store, run artifacts, model), one line each; the failed ones.
pub(super) async fn layers(
    profile: &Profile,
    kube: &crate::kube::Kube,
    run: Option<&str>,
    ui: &Ui,
) -> Vec<String> {
    let mut failed = Vec::new();
    for (name, outcome) in crate::proof::layers(profile, kube, run).await {
        ui.note(&outcome.line(&name));
        if outcome.failed() {
            failed.push(name);
        }
    }
    failed
}
