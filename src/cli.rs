//! Command-line arguments (clap only): the verbs, their flags, and the documented exit codes.
//! Turns argv into [`Options`], which name no clap type; it must not do any work itself. This is
//! the one module that imports clap.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

macro_rules! exit_codes {
    () => {
        "\
Exit codes:
  0    success (or nothing to change)
  1    a step failed (the message names it, the cause and the fix)
  2    bad input: profile, --set or flags
  3    preflight failed: a tool, the container engine, a GPU or a host is missing
  4    `plan --exit-code` only: changes are pending (0 then means no changes)
  130  interrupted (Ctrl-C); the next `kgf-up up` resumes"
    };
}

/// Stand up a GPU-ready ML platform in one idempotent command.
///
/// kgf-up creates or adopts a cluster (kind on a GPU workstation, rke2 on VMs over SSH, a
/// simulated kwok cluster, or an existing context), installs the NVIDIA GPU operator, Kubeflow
/// Pipelines, KubeRay, KServe with cert-manager, MinIO and Prometheus, proves the GPUs work and
/// deploys the gene-fusion pipeline. Every step observes first and changes only what is missing,
/// so running it again is fast and safe, and an interrupted run is finished by the next one.
#[derive(Debug, Parser)]
#[command(
    name = "kgf-up",
    version,
    after_help = exit_codes!(),
    after_long_help = concat!(
        "Examples:\n",
        "  kgf-up --profile kind-gpu            stand up kind on this GPU workstation\n",
        "  kgf-up plan --profile rke2           what `up` would change, key by key; change nothing\n",
        "  kgf-up --profile sim --set components.minio.enabled=false\n",
        "  kgf-up status                        each step: converged, missing, drifted or failed\n",
        "  kgf-up down                          remove what kgf-up installed\n\n",
        exit_codes!()
    ),
    args_conflicts_with_subcommands = false
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub global: Global,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or adopt the cluster and install everything the profile names (the default).
    Up {
        /// Also start a run of the gene-fusion pipeline and follow it to its end.
        #[arg(long)]
        run: bool,
    },
    /// Show what `up` would change, and change nothing: each step is observed on the cluster
    /// (or hosts) and, where it is not converged, its changes are listed: helm releases with
    /// every values key old → new, objects to create or patch (a server-side dry run, field by
    /// field), files with their content (secrets redacted), commands. Without a cluster yet,
    /// the offline plan: the rendered kind config, rke2 config.yaml and every values file.
    Plan {
        /// Exit 4 when changes are pending and 0 when there are none (for CI).
        #[arg(long)]
        exit_code: bool,
        /// Look at nothing (no cluster, no hosts, no SSH): what `up` would do from scratch.
        #[arg(long)]
        offline: bool,
    },
    /// Show each step's observed state on the live cluster.
    Status,
    /// Run the smoke checks alone: GPU allocatable, CUDA pod, each component's health.
    Verify,
    /// Remove what kgf-up installed (and the cluster, for kind and sim).
    Down {
        /// For kind: also remove the local registry container.
        #[arg(long)]
        all: bool,
    },
    /// Preflight only: tools and versions, container engine, GPU driver and toolkit, SSH reach.
    Doctor {
        /// Apply the host fixes doctor proposes (asks first when interactive).
        #[arg(long)]
        fix: bool,
    },
    /// Copy every component's source into a directory for an air-gapped install: charts as
    /// .tgz files, kustomizations rendered with their remote bases. Prints the profile lines
    /// that point at the copy (also written to OUT/sources.yaml). Touches no cluster.
    Vendor {
        /// The directory to write (created if missing).
        #[arg(long, default_value = "kgf-vendor")]
        out: PathBuf,
    },
    /// The gene-fusion pipeline on its own: spec, build, push, upload, run.
    Pipeline {
        #[command(subcommand)]
        action: PipelineAction,
    },
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Subcommand)]
pub enum PipelineAction {
    /// Print the Kubeflow Pipelines spec as it would be uploaded (the step image put in).
    Spec,
    /// Build the step image with docker or podman (skipped when its tag exists).
    Build,
    /// Build if needed, then push the step image to the profile's registry.
    Push,
    /// Upload the spec to Kubeflow Pipelines (a new version only when it changed).
    Upload,
    /// Upload, start a run, follow it and print the test steps' metrics.
    Run,
}

#[derive(Debug, Args)]
pub struct Global {
    /// A built-in profile (kind-gpu, kind, rke2, sim) or the path of a profile YAML file.
    #[arg(
        long,
        short = 'p',
        global = true,
        default_value = "kind-gpu",
        env = "KGF_PROFILE"
    )]
    pub profile: String,
    /// Override a profile value: key.path=value (repeatable), e.g. components.minio.enabled=false.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Kubeconfig for the existing provider (default: KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context for the existing provider (default: the current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Never prompt or read stdin (implied by CI=true or when stdin is not a terminal).
    #[arg(long, global = true)]
    pub non_interactive: bool,
    /// Answer yes to confirmations (down, doctor --fix).
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
    /// Output: text for people, json for machines (one event object per line).
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Where to write the run log (every command and its output, secrets redacted).
    #[arg(long, global = true)]
    pub log_file: Option<PathBuf>,
    /// Default deadline for each step's wait, e.g. 90s, 10m (overrides settings.timeout).
    #[arg(long, global = true, value_parser = parse_timeout)]
    pub timeout: Option<std::time::Duration>,
    /// Print the trace to stderr as well as to the log file.
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,
}

fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    crate::profile::parse_duration(s)
        .map_err(|e| crate::fix::render(&e.to_string(), Some("e.g. --timeout 90s, 10m or 600")))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// What the command line asks for, without clap: the verb and the global flags as given. The
/// settings layer resolves them with the environment and the profile.
#[derive(Clone, Debug)]
pub struct Options {
    pub verb: Verb,
    pub profile: String,
    pub sets: Vec<String>,
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub non_interactive: bool,
    pub yes: bool,
    pub json: bool,
    pub log_file: Option<PathBuf>,
    pub timeout: Option<Duration>,
    pub verbose: bool,
}

/// A verb and its own flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verb {
    Up {
        run: bool,
    },
    Plan {
        exit_code: bool,
        offline: bool,
    },
    Status,
    Verify,
    Down {
        all: bool,
    },
    Doctor {
        fix: bool,
    },
    Vendor {
        out: PathBuf,
    },
    Pipeline(PipelineAction),
    /// The completion script, generated here where clap is.
    Completions {
        script: String,
    },
}

/// The process's arguments as options. On `--help`, `--version` or an argument clap refuses, what
/// clap says is printed and the exit code comes back instead: 0 for help and version, 2 for bad
/// input.
pub fn parse() -> Result<Options, u8> {
    match Cli::try_parse() {
        Ok(cli) => Ok(cli.options()),
        Err(e) => {
            let _ = e.print();
            Err(if e.use_stderr() { 2 } else { 0 })
        }
    }
}

impl Cli {
    /// The options this command line gives; no verb is `up`.
    pub fn options(self) -> Options {
        let g = self.global;
        let verb = match self.command.unwrap_or(Command::Up { run: false }) {
            Command::Up { run } => Verb::Up { run },
            Command::Plan { exit_code, offline } => Verb::Plan { exit_code, offline },
            Command::Status => Verb::Status,
            Command::Verify => Verb::Verify,
            Command::Down { all } => Verb::Down { all },
            Command::Doctor { fix } => Verb::Doctor { fix },
            Command::Vendor { out } => Verb::Vendor { out },
            Command::Pipeline { action } => Verb::Pipeline(action),
            Command::Completions { shell } => {
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut Cli::command(), "kgf-up", &mut script);
                Verb::Completions {
                    script: String::from_utf8_lossy(&script).into_owned(),
                }
            }
        };
        Options {
            verb,
            profile: g.profile,
            sets: g.sets,
            kubeconfig: g.kubeconfig,
            context: g.context,
            non_interactive: g.non_interactive,
            yes: g.yes,
            json: g.output == Output::Json,
            log_file: g.log_file,
            timeout: g.timeout,
            verbose: g.verbose,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn up_is_the_default_and_flags_are_global() {
        let cli = Cli::try_parse_from(["kgf-up", "--profile", "sim", "--set", "a.b=1"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.global.profile, "sim");
        let cli = Cli::try_parse_from(["kgf-up", "status", "-o", "json"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Status)));
        assert_eq!(cli.global.output, Output::Json);
        let cli = Cli::try_parse_from(["kgf-up", "up", "--run"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Up { run: true })));
        let cli = Cli::try_parse_from(["kgf-up", "pipeline", "upload"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Pipeline {
                action: PipelineAction::Upload
            })
        ));
    }

    #[test]
    fn options_name_the_verb_and_flags_without_clap() {
        let o = Cli::try_parse_from(["kgf-up", "-p", "sim", "--timeout", "90s"])
            .unwrap()
            .options();
        assert_eq!(o.verb, Verb::Up { run: false });
        assert_eq!(o.profile, "sim");
        assert_eq!(o.timeout, Some(Duration::from_secs(90)));
        let o = Cli::try_parse_from(["kgf-up", "plan", "--offline", "-o", "json"])
            .unwrap()
            .options();
        assert_eq!(
            o.verb,
            Verb::Plan {
                exit_code: false,
                offline: true
            }
        );
        assert!(o.json);
        let o = Cli::try_parse_from(["kgf-up", "completions", "bash"])
            .unwrap()
            .options();
        assert!(
            matches!(&o.verb, Verb::Completions { script } if script.contains("kgf-up")),
            "{:?}",
            o.verb
        );
    }
}
