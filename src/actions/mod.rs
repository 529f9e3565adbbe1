//! The verbs. [`run`] has the settings layer resolve the command line ([`Settings`]), asks consent
//! for what the verb destroys, and hands the settings to the one action of the verb; each action
//! is a file of its own. Exit codes are listed in `cli` and mapped in [`failure`]; every verb
//! prints through `ui`'s printer. The actions stand on [`failure`] and `ui`, never on this face.

mod consent;
mod doctor;
mod failure;
mod pipeline;
mod plan;
mod status;
mod up;
mod vendor;
mod verify;

use std::sync::Arc;
use std::time::Instant;

pub use failure::Failure;
// What every action prints with (`super::outln` in each of them).
use crate::ui::{out, outln, say};

use crate::cli::{Options, PipelineAction, Verb};
use crate::cluster;
use crate::exec::Exec;
use crate::plan::Plan;
use crate::preflight;
use crate::provider;
use crate::settings::Settings;
use crate::step::Ctx;
use crate::ui::Ui;

/// Runs the verb the command line asks for; the error carries the message to print and the exit
/// code.
pub async fn run(options: Options) -> Result<(), Failure> {
    if let Verb::Completions { script } = &options.verb {
        return Ok(out(script)?);
    }
    let settings = Settings::resolve(options).map_err(Failure::input)?;
    consent::consent(&settings)?;
    let s = &settings;
    match &s.verb {
        Verb::Vendor { out } => return vendor::vendor(&s.loaded, out, s.json).await,
        Verb::Pipeline(
            action @ (PipelineAction::Spec | PipelineAction::Build | PipelineAction::Push),
        ) => {
            return pipeline::local(&s.loaded.profile.pipeline, *action, &Exec::new());
        }
        Verb::Doctor { fix } => return doctor(s, *fix).await,
        _ => {}
    }
    let exec = exec_for(&s.verb);
    let provider = provider::of(s.loaded.profile.cluster.provider);
    // Facts before decisions: on kind, how many GPUs the host has decides the nodes.
    let mut facts = cluster::Facts::default();
    let mut report = None;
    if let Some(mut options) = provider.host_checks(&s.loaded.profile) {
        // A container like a kind node must list the GPUs: worth its seconds before `up` and
        // in `doctor`, not on every verb.
        options.gpu_container_probe = matches!(s.verb, Verb::Up { .. });
        let checked = preflight::run(&exec, &options).await;
        facts.gpus = checked.facts.gpus.len() as u32;
        report = Some(checked);
    }
    if matches!(s.verb, Verb::Up { .. } | Verb::Pipeline(_)) {
        provider.ready(&s.loaded.profile, report.as_ref())?;
    }
    let (plan, ctx, ui) = prepare(s, exec, &facts)?;
    let started = Instant::now();
    let result = match &s.verb {
        Verb::Plan { exit_code, offline } => {
            plan::plan(&plan, &s.loaded, &ctx, *offline, s.json, *exit_code).await
        }
        Verb::Verify => verify::verify(&plan, &s.loaded.profile, ctx.clone(), &ui, started).await,
        Verb::Up { .. } | Verb::Pipeline(_) => {
            up::up(
                &plan,
                &s.loaded,
                ctx.clone(),
                &ui,
                provider,
                &s.verb,
                started,
            )
            .await
        }
        Verb::Status => status::status(&plan, &s.loaded.profile, ctx.clone(), &ui).await,
        Verb::Down { all } => provider
            .down(&plan, &ctx, &s.loaded.profile, &ui, *all)
            .await
            .map_err(Failure::from),
        Verb::Doctor { .. } | Verb::Vendor { .. } | Verb::Completions { .. } => {
            unreachable!("dispatched above")
        }
    };
    close(&plan).await;
    result
}

/// `doctor`, dispatched here only: the host checks with their fixes where the provider has a host
/// to check (kind), or whether the cluster answers (every other provider).
async fn doctor(s: &Settings, fix: bool) -> Result<(), Failure> {
    let exec = exec_for(&s.verb);
    let provider = provider::of(s.loaded.profile.cluster.provider);
    if let Some(mut options) = provider.host_checks(&s.loaded.profile) {
        options.gpu_container_probe = true;
        let checked = preflight::run(&exec, &options).await;
        return doctor::doctor(&exec, checked, &options, fix, s.interactive, s.yes, s.json).await;
    }
    let (plan, ctx, ui) = prepare(s, exec, &cluster::Facts::default())?;
    let result = doctor::cluster_answers(&plan, &ctx, &ui).await;
    close(&plan).await;
    result
}

/// The program runner of a verb: `plan` records every change instead of making it.
fn exec_for(verb: &Verb) -> Exec {
    match verb {
        Verb::Plan { .. } => Exec::with_gate(crate::gate::Gate::record()),
        _ => Exec::new(),
    }
    .with_hints(crate::preflight::install_hints())
}

/// The plan of the run, its step context and its printer.
fn prepare(
    s: &Settings,
    exec: Exec,
    facts: &cluster::Facts,
) -> Result<(Plan, Arc<Ctx>, Ui), Failure> {
    let plan = crate::plan::build(&s.loaded, &s.overrides, facts, &exec).map_err(Failure::input)?;
    let ui = Ui::new(s.json, s.interactive && !s.verbose);
    let work_dir = cluster::state_dir(&s.loaded.profile.name).join("work");
    std::fs::create_dir_all(&work_dir)
        .map_err(|e| Failure::new(format!("cannot create {}: {e}", work_dir.display()), 1))?;
    let ctx = Arc::new(Ctx::new(
        exec,
        work_dir,
        s.loaded.profile.settings.timeout,
        s.loaded.profile.settings.namespace.clone(),
    ));
    Ok((plan, ctx, ui))
}

/// Without this the rke2 provider's SSH master connections linger for ControlPersist.
async fn close(plan: &Plan) {
    if let Some(rke2) = &plan.rke2 {
        rke2.close().await;
    }
}
