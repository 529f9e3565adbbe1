//! The verbs. [`run`] turns the parsed command line into options (the profile loaded, flags and
//! consent checked, the host's facts, the plan and the step context) and hands them to the one
//! action of the verb; each action is a file of its own. Exit codes are listed in `cli`.

mod consent;
mod doctor;
mod pipeline;
mod plan;
mod status;
mod up;
mod vendor;
mod verify;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use clap::CommandFactory;

use crate::cli::{Cli, Command, Output, PipelineAction};
use crate::cluster::{self, Overrides};
use crate::exec::Exec;
use crate::fix::{self, Fix};
use crate::provider;
use crate::step::{Ctx, ErrorKind, StepError};
use crate::ui::Ui;

/// An error on its way out: the message (a sentence), its fix when there is one, and the exit
/// code.
pub struct Failure {
    pub message: String,
    pub fix: Option<String>,
    pub code: u8,
}

impl Failure {
    pub fn new(message: impl Into<String>, code: u8) -> Self {
        Failure {
            message: message.into(),
            fix: None,
            code,
        }
    }

    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// An error that knows its fix, exiting with `code`.
    pub fn of(e: impl std::fmt::Display + Fix, code: u8) -> Self {
        Failure {
            fix: e.fix(),
            ..Failure::new(e.to_string(), code)
        }
    }

    /// Bad input (exit 2), with the error's fix.
    pub fn input(e: impl std::fmt::Display + Fix) -> Self {
        Failure::of(e, 2)
    }

    /// An error with every cause in its chain that its message does not already say: a failed
    /// step always prints why.
    fn caused(e: &dyn std::error::Error, code: u8) -> Self {
        Failure::new(fix::chain(e), code)
    }

    /// The reader of stdout went away (`kgf-up plan | head`): not an error, and nothing to say.
    fn broken_pipe() -> Self {
        Failure::new("", 0)
    }

    /// The message with its fix line, as printed.
    pub fn shown(&self) -> String {
        fix::render(&self.message, self.fix.as_deref())
    }
}

/// A line on stderr; a closed stderr (`2>&1 | head`) is not worth a panic.
pub fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
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
        Err(e) => Err(Failure::new(format!("cannot write to stdout: {e}"), 1)),
    }
}

/// `text` and a newline on stdout.
fn outln(text: &str) -> Result<(), Failure> {
    out(&format!("{text}\n"))
}

impl From<StepError> for Failure {
    fn from(e: StepError) -> Self {
        let code = match e.kind {
            ErrorKind::Step => 1,
            ErrorKind::Input => 2,
            ErrorKind::Preflight => 3,
        };
        Failure {
            fix: e.fix,
            ..Failure::new(e.message, code)
        }
    }
}

/// Runs the verb of `cli`; the error carries the message to print and the exit code.
pub async fn run(cli: Cli) -> Result<(), Failure> {
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
    let loaded = crate::load::load(&g.profile, &g.sets).map_err(Failure::input)?;
    let mut loaded = loaded;
    if let Some(t) = g.timeout {
        loaded.profile.settings.timeout = t;
    }
    consent::flags_apply(g, &command, &loaded.profile)?;
    consent::consent(&command, &loaded, interactive, g.yes)?;
    if let Command::Up { run: true }
    | Command::Pipeline {
        action: PipelineAction::Upload | PipelineAction::Run,
    } = command
    {
        loaded.profile.pipeline.enabled = true;
    }
    if let Command::Vendor { out } = &command {
        return vendor::vendor(&loaded, out, g.output == Output::Json).await;
    }
    if let Command::Pipeline { action } = command
        && matches!(
            action,
            PipelineAction::Spec | PipelineAction::Build | PipelineAction::Push
        )
    {
        return pipeline::local(&loaded.profile.pipeline, action, &Exec::new());
    }
    let overrides = Overrides {
        kubeconfig: g.kubeconfig.clone(),
        context: g.context.clone(),
    };
    let json = g.output == Output::Json;
    let exec = match command {
        Command::Plan { .. } => Exec::with_gate(crate::gate::Gate::record()),
        _ => Exec::new(),
    }
    .with_hints(crate::preflight::install_hints());
    let installs = matches!(command, Command::Up { .. } | Command::Pipeline { .. });
    let provider = provider::of(loaded.profile.cluster.provider);
    // Facts before decisions: on kind, how many GPUs the host has decides the nodes.
    let mut facts = cluster::Facts::default();
    let mut report = None;
    if let Some(mut options) = provider.host_checks(&loaded.profile) {
        // A container like a kind node must list the GPUs: worth its seconds before `up` and
        // in `doctor`, not on every verb.
        options.gpu_container_probe =
            matches!(command, Command::Doctor { .. } | Command::Up { .. });
        let checked = crate::preflight::run(&exec, &options).await;
        facts.gpus = checked.facts.gpus.len() as u32;
        if let Command::Doctor { fix } = command {
            return doctor::doctor(&exec, checked, &options, fix, interactive, g.yes, json).await;
        }
        report = Some(checked);
    }
    if installs {
        provider.ready(&loaded.profile, report.as_ref())?;
    }
    let plan = crate::plan::build(&loaded, &overrides, &facts, &exec).map_err(Failure::input)?;
    let ui = Ui::new(json, interactive && !g.verbose);
    let work_dir = cluster::state_dir(&loaded.profile.name).join("work");
    std::fs::create_dir_all(&work_dir)
        .map_err(|e| Failure::new(format!("cannot create {}: {e}", work_dir.display()), 1))?;
    let ctx = Arc::new(Ctx::new(
        exec,
        work_dir,
        loaded.profile.settings.timeout,
        loaded.profile.settings.namespace.clone(),
    ));
    let started = Instant::now();
    let result = match command {
        Command::Plan { exit_code, offline } => {
            plan::plan(&plan, &loaded, &ctx, offline, json, exit_code).await
        }
        Command::Verify => verify::verify(&plan, &loaded.profile, ctx.clone(), &ui, started).await,
        Command::Up { .. } | Command::Pipeline { .. } => {
            up::up(
                &plan,
                &loaded,
                ctx.clone(),
                &ui,
                provider,
                &command,
                started,
            )
            .await
        }
        Command::Status => status::status(&plan, &loaded.profile, ctx.clone(), &ui).await,
        Command::Down { all } => provider
            .down(&plan, &ctx, &loaded.profile, &ui, all)
            .await
            .map_err(Failure::from),
        Command::Doctor { .. } => doctor::cluster_answers(&plan, &ctx, &ui).await,
        Command::Completions { .. } | Command::Vendor { .. } => unreachable!("handled above"),
    };
    if let Some(rke2) = &plan.rke2 {
        // Without this the SSH master connections linger for ControlPersist.
        rke2.close().await;
    }
    result
}
