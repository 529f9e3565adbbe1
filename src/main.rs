//! kgf-up's one exit point: parse arguments, run the verb, print the error once, exit with its code.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{CommandFactory, Parser};

use kgf_up::cli::{Cli, Command, Output, PipelineAction};
use kgf_up::cluster::{self, Overrides};
use kgf_up::exec::{Exec, redact};
use kgf_up::plan;
use kgf_up::profile::{self, Provider};
use kgf_up::runner::{self, Outcome};
use kgf_up::step::{Ctx, ErrorKind, StepError};
use kgf_up::ui::Ui;

/// An error on its way out: the message (already a sentence with its fix) and the exit code.
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn input(e: impl std::fmt::Display) -> Self {
        Failure {
            message: e.to_string(),
            code: 2,
        }
    }
}

impl From<StepError> for Failure {
    fn from(e: StepError) -> Self {
        let mut message = e.message.clone();
        if let Some(fix) = &e.fix {
            message.push_str(&format!("\n  fix: {fix}"));
        }
        let code = match e.kind {
            ErrorKind::Step => 1,
            ErrorKind::Input => 2,
            ErrorKind::Preflight => 3,
        };
        Failure { message, code }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let log_file = cli.global.log_file.clone().unwrap_or_else(default_log_file);
    init_logging(&log_file, cli.global.verbose);
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let code = runtime.block_on(async {
        tokio::select! {
            result = run(cli) => match result {
                Ok(()) => 0,
                Err(f) => {
                    eprintln!("kgf-up: {}", redact(&f.message));
                    if f.code != 2 {
                        eprintln!("  log: {}", log_file.display());
                    }
                    f.code
                }
            },
            _ = tokio::signal::ctrl_c() => {
                eprintln!("kgf-up: interrupted; run the same command again to finish (log: {})", log_file.display());
                130
            }
        }
    });
    // Blocking helm/kubectl calls may still run; do not wait for them on the way out.
    runtime.shutdown_background();
    ExitCode::from(code)
}

fn default_log_file() -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    cluster::state_dir("logs").join(format!("kgf-up-{stamp}.log"))
}

/// The full trace goes to the log file (secrets are redacted where commands are logged);
/// `--verbose` copies it to stderr.
fn init_logging(path: &PathBuf, verbose: bool) {
    use tracing_subscriber::prelude::*;
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let file = std::fs::File::create(path).ok().map(|f| {
        tracing_subscriber::fmt::layer()
            .with_writer(Arc::new(f))
            .with_ansi(false)
    });
    let stderr = verbose.then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(
            "info,kgf_up=debug,exec=debug,kube=info",
        ))
        .with(file)
        .with(stderr)
        .try_init();
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let g = &cli.global;
    let command = cli.command.unwrap_or(Command::Up { run: false });
    if let Command::Completions { shell } = command {
        clap_complete::generate(shell, &mut Cli::command(), "kgf-up", &mut std::io::stdout());
        return Ok(());
    }
    let interactive = !g.non_interactive
        && std::env::var("CI").map(|v| v != "true").unwrap_or(true)
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal();
    let loaded = profile::load(&g.profile, &g.sets).map_err(Failure::input)?;
    let mut loaded = loaded;
    if let Some(t) = g.timeout {
        loaded.profile.settings.timeout = t;
    }
    if let Command::Up { run: true }
    | Command::Pipeline {
        action: PipelineAction::Upload | PipelineAction::Run,
    } = command
    {
        loaded.profile.pipeline.enabled = true;
    }
    if let Command::Pipeline { action } = command
        && matches!(
            action,
            PipelineAction::Spec | PipelineAction::Build | PipelineAction::Push
        )
    {
        return pipeline_local(&loaded.profile.pipeline, action, &Exec::new());
    }
    let overrides = Overrides {
        kubeconfig: g.kubeconfig.clone(),
        context: g.context.clone(),
    };
    let json = g.output == Output::Json;
    let exec = match command {
        Command::Plan => Exec::dry_run(),
        _ => Exec::new(),
    }
    .with_hints(kgf_up::preflight::install_hints());
    // Facts before decisions: on kind, how many GPUs the host has decides the nodes.
    let mut facts = cluster::Facts::default();
    if loaded.profile.cluster.provider == Provider::Kind {
        let options = cluster::preflight_options(&loaded.profile);
        let report = kgf_up::preflight::run(&exec, &options).await;
        facts.gpus = report.facts.gpus.len() as u32;
        if let Command::Doctor { fix } = command {
            return doctor(&exec, report, &options, fix, interactive, g.yes, json).await;
        }
    }
    let plan = plan::build(&loaded, &overrides, &facts, &exec).map_err(Failure::input)?;
    let ui = Ui::new(json, interactive && !g.verbose);
    let work_dir = cluster::state_dir(&loaded.profile.name).join("work");
    std::fs::create_dir_all(&work_dir).map_err(|e| Failure {
        message: format!("cannot create {}: {e}", work_dir.display()),
        code: 1,
    })?;
    let ctx = Arc::new(Ctx::new(
        exec,
        work_dir,
        loaded.profile.settings.timeout,
        loaded.profile.settings.namespace.clone(),
    ));
    let started = Instant::now();
    let result = match command {
        Command::Plan => {
            println!("{}", plan::render(&plan, &loaded, json));
            Ok(())
        }
        Command::Verify => verify(&plan, &loaded.profile, ctx.clone(), &ui, started).await,
        Command::Up { .. } | Command::Pipeline { .. } => {
            if loaded.profile.cluster.provider == Provider::Sim {
                ui.note(
                    "sim profile: nodes are simulated by kwok; pods are scheduled but never run",
                );
            }
            let finished =
                runner::up(&plan, ctx.clone(), &ui, loaded.profile.settings.concurrency).await;
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
                command,
                Command::Up { run: true }
                    | Command::Pipeline {
                        action: PipelineAction::Run
                    }
            ) || loaded.profile.pipeline.run;
            match failed {
                None if run && loaded.profile.pipeline.enabled => {
                    start_run(&loaded.profile.pipeline, &ctx, &ui).await?;
                    let failed = layers(&loaded.profile, ctx.kube().await?, None, &ui).await;
                    if failed.is_empty() {
                        Ok(())
                    } else {
                        Err(Failure {
                            message: format!(
                                "the run finished, but {} failed (above)",
                                failed.join(", ")
                            ),
                            code: 1,
                        })
                    }
                }
                None => Ok(()),
                Some((id, kind)) => Err(Failure {
                    message: format!("step {id} failed (details above)"),
                    code: if kind == ErrorKind::Preflight { 3 } else { 1 },
                }),
            }
        }
        Command::Status => status(&plan, &loaded.profile, ctx.clone(), &ui).await,
        Command::Down { all } => {
            down(&plan, &loaded.profile, ctx, &ui, interactive, g.yes, all).await
        }
        Command::Doctor { .. } => {
            // Off kind there is no host to check: doctor checks that the cluster answers.
            let seen = plan.steps[0].observe(&ctx).await?;
            ui.note(&format!(
                "{}: {} ({})",
                plan.steps[0].id(),
                seen.state,
                seen.reason
            ));
            Ok(())
        }
        Command::Completions { .. } => unreachable!("handled above"),
    };
    if let Some(rke2) = &plan.rke2 {
        // Without this the SSH master connections linger for ControlPersist.
        rke2.close().await;
    }
    result
}

/// `verify`: the smoke checks alone, on the cluster as it is. The cluster steps are only
/// observed (to find the cluster); the GPU checks run as steps of their own.
async fn verify(
    plan: &plan::Plan,
    profile: &profile::Profile,
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
            return Err(Failure {
                message: format!(
                    "{}: {}\n  fix: run `kgf-up up` first",
                    step.id(),
                    seen.reason
                ),
                code: 1,
            });
        }
    }
    let steps = kgf_up::validate::steps(profile, &[], &[]);
    let levels = plan::levels(&steps).map_err(Failure::input)?;
    let checks = plan::Plan {
        steps,
        levels,
        helm: plan.helm.clone(),
        rke2: None,
    };
    let finished = runner::up(&checks, ctx.clone(), ui, 1).await;
    ctx.release_lock().await;
    let kube = ctx.kube().await?;
    let mut unhealthy = layers(profile, kube, None, ui).await;
    let pods_run = kgf_up::components::pods_run(profile.cluster.provider);
    for c in kgf_up::components::resolve(profile).map_err(Failure::input)? {
        match kgf_up::components::health::verify(kube, &c, pods_run).await {
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
        return Err(Failure {
            message: format!("unhealthy: {}", unhealthy.join(", ")),
            code: 1,
        });
    }
    ui.summary(&finished, started.elapsed(), "kgf-up status");
    match finished
        .iter()
        .find(|f| matches!(f.outcome, Outcome::Failed(_)))
    {
        Some(f) => Err(Failure {
            message: format!("check {} failed (details above)", f.id),
            code: 1,
        }),
        None => Ok(()),
    }
}

/// The layers after the GPU checks (store, run artifacts, model), one line each; the failed ones.
async fn layers(
    profile: &profile::Profile,
    kube: &kgf_up::kube::Kube,
    run: Option<&str>,
    ui: &Ui,
) -> Vec<String> {
    let mut failed = Vec::new();
    for (name, outcome) in kgf_up::proof::layers(profile, kube, run).await {
        ui.note(&outcome.line(&name));
        if outcome.failed() {
            failed.push(name);
        }
    }
    failed
}

async fn status(
    plan: &plan::Plan,
    profile: &profile::Profile,
    ctx: Arc<Ctx>,
    ui: &Ui,
) -> Result<(), Failure> {
    let observed = runner::status(plan, ctx).await;
    let mut all_converged = true;
    for (id, result) in &observed {
        let (state, reason) = match result {
            Ok(o) => (o.state.to_string(), o.reason.clone()),
            Err(e) => ("failed".to_string(), e.message.clone()),
        };
        all_converged &= state == "converged";
        if ui.is_json() {
            println!(
                "{}",
                serde_json::json!({"step": id.as_str(), "phase": "observe", "status": state, "elapsed": 0.0, "message": reason})
            );
        } else {
            println!("  {:<36} {:<10} {reason}", id.to_string(), state);
        }
    }
    let unobserved = plan.steps.len() - observed.len();
    if unobserved > 0 && !ui.is_json() {
        println!("  ({unobserved} steps not observed: the cluster is not there)");
    }
    if !ui.is_json() {
        println!("\nWhere things are:");
        for a in kgf_up::proof::access(profile) {
            println!("  {:<34} {}\n  {:<34} $ {}", a.what, a.at, "", a.command);
        }
    }
    if all_converged && unobserved == 0 {
        Ok(())
    } else {
        Err(Failure {
            message: "not every step is converged; `kgf-up up` converges them".into(),
            code: 1,
        })
    }
}

/// `pipeline spec|build|push`: the spec and the step image, no cluster needed.
fn pipeline_local(
    p: &profile::PipelineSpec,
    action: PipelineAction,
    exec: &Exec,
) -> Result<(), Failure> {
    use kgf_up::pipeline::{build, image::Engine};
    let image = build::image(p)?;
    let reference = p
        .image
        .clone()
        .or_else(|| image.as_ref().map(|i| i.reference.clone()))
        .expect("an image is given or built");
    if let PipelineAction::Spec = action {
        print!("{}", build::rendered_spec(p, &reference)?.yaml);
        return Ok(());
    }
    let Some(image) = image else {
        return Err(Failure {
            message: format!("pipeline.image is set ({reference}): there is nothing to build"),
            code: 2,
        });
    };
    let engine = Engine::detect().map_err(|e| Failure {
        message: format!("{e}\n  fix: {}", e.fix()),
        code: 3,
    })?;
    let failed = |e: kgf_up::pipeline::image::ImageError| Failure {
        message: format!("{e}\n  fix: {}", e.fix()),
        code: 1,
    };
    if let PipelineAction::Build = action {
        let built = image.build(exec, &engine).map_err(failed)?;
        eprintln!(
            "{} {}",
            if built { "built" } else { "already built:" },
            image.reference
        );
    } else {
        image.push(exec, &engine).map_err(failed)?;
        eprintln!("pushed {}", image.reference);
    }
    Ok(())
}

/// Starts a run of the uploaded pipeline, follows it, and prints the test steps' metrics.
async fn start_run(p: &profile::PipelineSpec, ctx: &Ctx, ui: &Ui) -> Result<(), Failure> {
    use kgf_up::pipeline::{build, deploy, kfp, spec, step};
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
            return Err(Failure {
                message: format!("pipeline {name} has no version with this spec"),
                code: 1,
            });
        }
        Err(e) => return Err(step::step_error(e).into()),
    };
    let display_name = format!("gene-fusion {}", kgf_up::inventory::now());
    let request = deploy::RunRequest {
        experiment: &p.experiment,
        display_name: &display_name,
        namespace: None,
        parameters: p.parameters.clone().into_iter().collect(),
        pipeline_root: None,
        polling: kfp::Polling::default(),
    };
    let run = deploy::run(&client, &uploaded, request, |r| {
        ui.note(&kfp::render_tasks(r))
    })
    .await
    .map_err(step::step_error)?;
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

/// `doctor`: the host checks with the exact fix for each failure; `--fix` applies the fixes
/// (asking first when interactive), then checks again.
async fn doctor(
    exec: &Exec,
    report: kgf_up::preflight::Report,
    options: &kgf_up::preflight::Options,
    fix: bool,
    interactive: bool,
    yes: bool,
    json: bool,
) -> Result<(), Failure> {
    use kgf_up::preflight::{self, Status};
    let print = |r: &preflight::Report| {
        if json {
            println!("{}", serde_json::to_string(r).expect("a report serializes"));
        } else {
            println!("{}", r.render());
        }
    };
    print(&report);
    let report = if fix && report.status() == Status::Fail {
        preflight::apply_fixes(exec, &report, options.root, &mut |check| {
            if !interactive || yes {
                return true;
            }
            let shown = check
                .fix
                .as_ref()
                .map(|f| f.shown.clone())
                .unwrap_or_default();
            dialoguer::Confirm::new()
                .with_prompt(format!("{}: run `{shown}`?", check.name))
                .default(true)
                .interact()
                .unwrap_or(false)
        })
        .await
        .map_err(|e| Failure {
            message: e.to_string(),
            code: 3,
        })?;
        let again = preflight::run(exec, options).await;
        print(&again);
        again
    } else {
        report
    };
    match report.status() {
        Status::Fail => Err(Failure {
            message: format!(
                "preflight failed: {}{}",
                report
                    .failed()
                    .map(|c| c.name.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                if fix {
                    ""
                } else {
                    "\n  fix: run the fix commands above, or `kgf-up doctor --fix`"
                }
            ),
            code: 3,
        }),
        _ => Ok(()),
    }
}

/// Removes what the inventory lists, in reverse plan order; for kind and sim, the cluster itself.
async fn down(
    plan: &plan::Plan,
    profile: &profile::Profile,
    ctx: Arc<Ctx>,
    ui: &Ui,
    interactive: bool,
    yes: bool,
    all: bool,
) -> Result<(), Failure> {
    if interactive && !yes {
        let ok = dialoguer::Confirm::new()
            .with_prompt(format!(
                "Remove everything kgf-up installed for `{}`?",
                profile.name
            ))
            .default(false)
            .interact()
            .unwrap_or(false);
        if !ok {
            return Err(Failure {
                message: "nothing removed".into(),
                code: 1,
            });
        }
    }
    if profile.cluster.provider == Provider::Kind {
        // Deleting the cluster removes everything installed on it.
        kgf_up::cluster::kind::down(&ctx.exec, &profile.cluster.kind, all)
            .await
            .map_err(|e| Failure {
                message: e.to_string(),
                code: 1,
            })?;
        ui.note(&format!(
            "deleted kind cluster {}",
            profile.cluster.kind.name
        ));
        return Ok(());
    }
    if let Some(rke2) = &plan.rke2 {
        // Uninstalling rke2 from the hosts removes everything installed on the cluster.
        let outcomes = rke2.down(&ctx).await;
        rke2.close().await;
        if let Some(e) = kgf_up::cluster::rke2::down_error(&outcomes) {
            return Err(e.into());
        }
        ui.note(&format!("uninstalled rke2 from {} hosts", outcomes.len()));
        return Ok(());
    }
    let seen = plan.steps[0].observe(&ctx).await?;
    if !seen.is_converged() {
        ui.note(&format!("no cluster to clean: {}", seen.reason));
        return Ok(());
    }
    let removed = kgf_up::teardown::remove_recorded(plan, &ctx, ui).await?;
    if profile.cluster.provider == Provider::Sim {
        cluster::sim::delete(&ctx.exec, profile)?;
        ui.note(&format!("deleted simulated cluster {}", profile.name));
    }
    ui.note(&format!("down: removed {removed} recorded steps"));
    Ok(())
}
