//! kgf-up's one exit point: parse arguments, run the verb, print the error once, exit with its code.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{CommandFactory, Parser};

use kgf_up::cli::{Cli, Command, Output, PipelineAction};
use kgf_up::cluster::{self, Overrides};
use kgf_up::exec::Exec;
use kgf_up::plan;
use kgf_up::profile::{self, Provider};
use kgf_up::runner;
use kgf_up::secret::redact;
use kgf_up::step::{Ctx, ErrorKind, Outcome, StepError};
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

    /// An error with every cause in its chain that its message does not already say: a failed
    /// step always prints why.
    fn caused(e: &dyn std::error::Error, code: u8) -> Self {
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            let text = s.to_string();
            if !message.contains(&text) {
                message.push_str(&format!(": {text}"));
            }
            source = s.source();
        }
        Failure { message, code }
    }

    /// The reader of stdout went away (`kgf-up plan | head`): not an error, and nothing to say.
    fn broken_pipe() -> Self {
        Failure {
            message: String::new(),
            code: 0,
        }
    }
}

/// Writes to stdout; a closed pipe ends the verb quietly with exit 0 (style rule 8).
fn out(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::broken_pipe()),
        Err(e) => Err(Failure {
            message: format!("cannot write to stdout: {e}"),
            code: 1,
        }),
    }
}

/// `text` and a newline on stdout.
fn outln(text: &str) -> Result<(), Failure> {
    out(&format!("{text}\n"))
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
    let log_file = match open_log(cli.global.log_file.as_deref()) {
        Ok((path, file)) => {
            init_logging(file, cli.global.verbose);
            path
        }
        Err(f) => {
            say(&format!("kgf-up: {}", f.message));
            return ExitCode::from(f.code);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let code = runtime.block_on(async {
        tokio::select! {
            result = run(cli) => match result {
                Ok(()) => 0,
                Err(f) if f.code == 0 => 0,
            // Said already (plan's "changes pending" is its report).
            Err(f) if f.message.is_empty() => f.code,
                Err(f) => {
                    let message = redact(&f.message);
                    tracing::error!(code = f.code, "{message}");
                    say(&format!("kgf-up: {message}"));
                    if f.code != 2 {
                        say(&format!("  log: {}", log_file.display()));
                    }
                    f.code
                }
            },
            _ = tokio::signal::ctrl_c() => {
                say(&format!("kgf-up: interrupted; run the same command again to finish (log: {})", log_file.display()));
                130
            }
        }
    });
    // Blocking helm/kubectl calls may still run; do not wait for them on the way out.
    runtime.shutdown_background();
    ExitCode::from(code)
}

/// A line on stderr; a closed stderr (`2>&1 | head`) is not worth a panic.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The run log: `--log-file` (appended to, never truncated; its directory must exist), or a new
/// file of this run's own in the state directory, named by time and process id and created
/// exclusively, so that two runs in the same second keep two logs. Unwritable is bad input (2).
fn open_log(given: Option<&std::path::Path>) -> Result<(PathBuf, std::fs::File), Failure> {
    let cannot = |path: &std::path::Path, e: std::io::Error, fix: &str| Failure {
        message: format!(
            "cannot write the log file {}: {e}\n  fix: {fix}",
            path.display()
        ),
        code: 2,
    };
    if let Some(path) = given {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| {
                cannot(
                    path,
                    e,
                    "give --log-file a file in a directory that exists and that you may write",
                )
            })?;
        return Ok((path.to_path_buf(), file));
    }
    let dir = cluster::state_dir("logs");
    let fix = "make the state directory writable (or set XDG_STATE_HOME), or give --log-file";
    std::fs::create_dir_all(&dir).map_err(|e| cannot(&dir, e, fix))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let stem = format!(
        "kgf-up-{}-{:03}-{}",
        now.as_secs(),
        now.subsec_millis(),
        std::process::id()
    );
    for n in 0..100 {
        let name = if n == 0 {
            format!("{stem}.log")
        } else {
            format!("{stem}-{n}.log")
        };
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(cannot(&path, e, fix)),
        }
    }
    Err(cannot(
        &dir.join(format!("{stem}.log")),
        std::io::Error::other("a hundred runs of this process id already logged there"),
        fix,
    ))
}

/// The full trace goes to the log file (secrets are redacted where commands are logged);
/// `--verbose` copies it to stderr.
fn init_logging(file: std::fs::File, verbose: bool) {
    use tracing_subscriber::prelude::*;
    let file = Some(
        tracing_subscriber::fmt::layer()
            .with_writer(Arc::new(file))
            .with_ansi(false),
    );
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
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "kgf-up", &mut script);
        return out(&String::from_utf8_lossy(&script));
    }
    let interactive = !g.non_interactive
        && std::env::var("CI").map(|v| v != "true").unwrap_or(true)
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal();
    let loaded = kgf_up::load::load(&g.profile, &g.sets).map_err(Failure::input)?;
    let mut loaded = loaded;
    if let Some(t) = g.timeout {
        loaded.profile.settings.timeout = t;
    }
    flags_apply(g, &command, &loaded.profile)?;
    consent(&command, &loaded, interactive, g.yes)?;
    if let Command::Up { run: true }
    | Command::Pipeline {
        action: PipelineAction::Upload | PipelineAction::Run,
    } = command
    {
        loaded.profile.pipeline.enabled = true;
    }
    if let Command::Vendor { out } = &command {
        return vendor(&loaded, out, g.output == Output::Json).await;
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
        Command::Plan { .. } => Exec::with_gate(kgf_up::gate::Gate::record()),
        _ => Exec::new(),
    }
    .with_hints(kgf_up::preflight::install_hints());
    let installs = matches!(command, Command::Up { .. } | Command::Pipeline { .. });
    if installs && loaded.profile.cluster.provider == Provider::Sim {
        sim_tools(&loaded.profile)?;
    }
    // Facts before decisions: on kind, how many GPUs the host has decides the nodes.
    let mut facts = cluster::Facts::default();
    if loaded.profile.cluster.provider == Provider::Kind {
        let options = cluster::preflight_options(&loaded.profile);
        let report = kgf_up::preflight::run(&exec, &options).await;
        facts.gpus = report.facts.gpus.len() as u32;
        if let Command::Doctor { fix } = command {
            return doctor(&exec, report, &options, fix, interactive, g.yes, json).await;
        }
        if installs && report.status() == kgf_up::preflight::Status::Fail {
            return Err(not_ready_for_kind(&report));
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
        Command::Plan { exit_code, offline } => {
            let previews = if offline {
                runner::offline(&plan)
            } else {
                runner::preview(&plan, &ctx).await
            };
            plan_verb(&plan, &loaded, previews, json, exit_code)
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
        Command::Down { all } => down(&plan, &loaded.profile, ctx, &ui, all).await,
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
        Command::Completions { .. } | Command::Vendor { .. } => unreachable!("handled above"),
    };
    if let Some(rke2) = &plan.rke2 {
        // Without this the SSH master connections linger for ControlPersist.
        rke2.close().await;
    }
    result
}

/// `plan`: observe every step and record what apply would change (the gate records, so nothing
/// is changed); exit 4 with `--exit-code` when something would.
fn plan_verb(
    plan: &plan::Plan,
    loaded: &profile::Loaded,
    previews: Vec<(kgf_up::step::StepId, plan::Preview)>,
    json: bool,
    exit_code: bool,
) -> Result<(), Failure> {
    let text = if json {
        plan::render_json(plan, loaded, &previews)
    } else {
        plan::render_text(plan, loaded, &previews)
    };
    outln(&redact(&text))?;
    if previews
        .iter()
        .any(|(_, p)| matches!(p, plan::Preview::Failed(_)))
    {
        return Err(Failure {
            message: "`up` would fail at the steps marked \"would fail\" (above)".into(),
            code: 1,
        });
    }
    if exit_code && plan::pending(&previews) {
        return Err(Failure {
            message: String::new(),
            code: 4,
        });
    }
    Ok(())
}

/// `vendor`: every component's source copied for an air-gapped install, and the profile lines
/// that point at the copy.
async fn vendor(
    loaded: &profile::Loaded,
    out: &std::path::Path,
    json: bool,
) -> Result<(), Failure> {
    let copies = kgf_up::vendor::vendor(loaded, out, &Exec::new())
        .await
        .map_err(|e| {
            let fix = e.fix();
            StepError::context("vendor", e).with_fix(fix)
        })?;
    let sources = kgf_up::vendor::sources_yaml(&copies, &loaded.origin);
    if json {
        for c in &copies {
            println!(
                "{}",
                serde_json::json!({"component": c.component, "from": c.from, "source": c.source})
            );
        }
    } else {
        for c in &copies {
            println!(
                "vendored {:<20} {} → {}",
                c.component,
                c.from,
                c.source.describe()
            );
        }
        println!("\n{sources}");
    }
    Ok(())
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
    let steps = kgf_up::validate::steps(profile, &plan.gpu_nodes, &[], &[]);
    let levels = plan::levels(&steps).map_err(Failure::input)?;
    let checks = plan::Plan {
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
            outln(
                &serde_json::json!({"step": id.as_str(), "phase": "observe", "status": state, "elapsed": 0.0, "message": reason})
                    .to_string(),
            )?;
        } else {
            outln(&format!("  {:<36} {:<10} {reason}", id.to_string(), state))?;
        }
    }
    let unobserved = plan.steps.len() - observed.len();
    if unobserved > 0 && !ui.is_json() {
        outln(&format!(
            "  ({unobserved} steps not observed: the cluster is not there)"
        ))?;
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
        return out(&build::rendered_spec(p, &reference)?.yaml);
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
        say(&format!(
            "{} {}",
            if built { "built" } else { "already built:" },
            image.reference
        ));
    } else {
        image.push(exec, &engine).map_err(failed)?;
        say(&format!("pushed {}", image.reference));
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
    let change = kgf_up::gate::Change::new(format!(
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
            outln(&serde_json::to_string(r).expect("a report serializes"))
        } else {
            outln(&r.render())
        }
    };
    print(&report)?;
    let report = if fix && report.status() == Status::Fail {
        // Without a terminal, `consent` let this through only with --yes.
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
        .map_err(|e| Failure::caused(&e, 3))?;
        let again = preflight::run(exec, options).await;
        print(&again)?;
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
    all: bool,
) -> Result<(), Failure> {
    if profile.cluster.provider == Provider::Kind {
        // Deleting the cluster removes everything installed on it.
        kgf_up::cluster::kind::down(&ctx.exec, &profile.cluster.kind, all)
            .await
            .map_err(|e| Failure::caused(&e, 1))?;
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

/// Flags that the profile's provider or the verb would silently ignore are bad input.
fn flags_apply(
    g: &kgf_up::cli::Global,
    command: &Command,
    profile: &profile::Profile,
) -> Result<(), Failure> {
    let provider = profile.cluster.provider;
    let refuse = |flag: &str, applies: &str| {
        Err(Failure {
            message: format!(
                "{flag} applies only to {applies}; the profile's provider is {provider}, which would ignore it\n  fix: remove {flag}"
            ),
            code: 2,
        })
    };
    if provider != Provider::Existing {
        if g.kubeconfig.is_some() {
            return refuse("--kubeconfig", "the existing provider");
        }
        if g.context.is_some() {
            return refuse("--context", "the existing provider");
        }
    }
    if provider != Provider::Kind {
        if let Command::Down { all: true } = command {
            return refuse("down --all", "the kind provider (its registry container)");
        }
        if let Command::Doctor { fix: true } = command {
            return refuse("doctor --fix", "the kind provider (host fixes)");
        }
    }
    Ok(())
}

/// What a destructive verb would destroy, or `None` when the verb destroys nothing.
fn destroys(command: &Command, loaded: &profile::Loaded) -> Option<String> {
    let p = &loaded.profile;
    match command {
        Command::Down { .. } => Some(match p.cluster.provider {
            Provider::Kind => format!(
                "`down` deletes the kind cluster `{}` and everything in it",
                p.cluster.kind.name
            ),
            Provider::Rke2 => format!(
                "`down` uninstalls rke2 from {} hosts, and everything on the cluster with it",
                p.cluster.rke2.hosts.len()
            ),
            Provider::Sim => format!(
                "`down` removes what kgf-up installed and deletes the simulated cluster `{}`",
                p.name
            ),
            Provider::Existing => {
                "`down` removes every release, object and namespace kgf-up recorded on the cluster"
                    .to_string()
            }
        }),
        Command::Up { .. } | Command::Pipeline { .. }
            if p.cluster.provider == Provider::Kind && p.cluster.kind.recreate =>
        {
            Some(format!(
                "cluster.kind.recreate is set: if the kind cluster `{}` differs from the profile, `up` deletes it and everything in it, then creates it again",
                p.cluster.kind.name
            ))
        }
        Command::Doctor { fix: true } => Some(
            "`doctor --fix` changes this host: it runs the fix commands shown (with sudo) and may restart docker"
                .to_string(),
        ),
        _ => None,
    }
}

/// Destruction needs consent: a yes at the terminal, or `--yes`. Without a terminal and without
/// `--yes` nothing happens, and the message gives the exact command to run. Called before
/// anything is touched.
fn consent(
    command: &Command,
    loaded: &profile::Loaded,
    interactive: bool,
    yes: bool,
) -> Result<(), Failure> {
    let Some(what) = destroys(command, loaded) else {
        return Ok(());
    };
    if yes {
        tracing::info!("consent given with --yes: {what}");
        return Ok(());
    }
    if !interactive {
        return Err(Failure {
            message: format!(
                "{what}; that needs consent, and there is no terminal to ask on (nothing was changed)\n  fix: to go ahead, run `{}`",
                with_yes()
            ),
            code: 2,
        });
    }
    let ok = dialoguer::Confirm::new()
        .with_prompt(format!("{what}. Continue?"))
        .default(false)
        .interact()
        .unwrap_or(false);
    if ok {
        tracing::info!("consent given at the terminal: {what}");
        Ok(())
    } else {
        Err(Failure {
            message: "not confirmed: nothing was changed".into(),
            code: 1,
        })
    }
}

/// This very command line with `--yes` added, quoted for a shell (secrets redacted at printing).
fn with_yes() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(first) = args.first_mut() {
        *first = "kgf-up".into();
    }
    args.push("--yes".into());
    args.iter()
        .map(|a| kgf_up::exec::shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The sim provider needs kwokctl and helm: checked before anything starts, with the fix.
fn sim_tools(profile: &profile::Profile) -> Result<(), Failure> {
    let missing = sim_missing(profile);
    if missing.is_empty() {
        return Ok(());
    }
    Err(Failure {
        message: format!(
            "the sim profile needs kwokctl and helm: {}",
            missing.join("; ")
        ),
        code: 3,
    })
}

/// For each of kwokctl and helm that is not found: "`kwokctl` is not on PATH (fix: ...)".
fn sim_missing(profile: &profile::Profile) -> Vec<String> {
    let hints = kgf_up::preflight::install_hints();
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

/// `up` on a machine that fails the kind-gpu preflight: what failed, once, and how to try
/// kgf-up without a GPU (the sim profile, and whether its tools are here).
fn not_ready_for_kind(report: &kgf_up::preflight::Report) -> Failure {
    let mut message = String::from("this machine is not ready for a GPU kind cluster:");
    for c in report.failed() {
        message.push_str(&format!(
            "\n  ✗ {}: found {}; needed {}",
            c.name, c.found, c.needed
        ));
        if let Some(fix) = &c.fix {
            message.push_str(&format!("\n    fix: {}", fix.shown));
        }
    }
    let sim = kgf_up::load::load("sim", &[]).map(|l| l.profile);
    let missing = sim.as_ref().map(sim_missing).unwrap_or_default();
    let needs = if missing.is_empty() {
        "it needs kwokctl and helm, both found here".to_string()
    } else {
        format!("it needs kwokctl and helm: {}", missing.join("; "))
    };
    message.push_str(&format!(
        "\n  fix: run the fixes above (`kgf-up doctor --fix` applies the automatic ones); or try kgf-up without a GPU or Docker: `kgf-up --profile sim` ({needs})"
    ));
    Failure { message, code: 3 }
}
