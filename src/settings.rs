//! The settings of one run: the command line's [`Options`], the environment and the profile
//! resolved into one value before any action runs (a flag over the environment over the profile),
//! with every flag checked against what it applies to. It reads the profile and the kubeconfig a
//! flag names, and nothing else; it changes nothing and asks nothing (consent is the actions').

use std::io::IsTerminal;

use crate::cli::{Options, PipelineAction, Verb};
use crate::cluster::{Overrides, existing};
use crate::fix::Fix;
use crate::profile::{Loaded, ProfileError, Provider};
use crate::provider::{self, Flag};

/// What a run does and with what, resolved.
pub struct Settings {
    pub verb: Verb,
    /// The profile with `--set`, `--timeout` and what the verb needs (the pipeline, for `up --run`
    /// and `pipeline upload|run`) applied.
    pub loaded: Loaded,
    /// `--kubeconfig` and `--context`, checked against the kubeconfig they name.
    pub overrides: Overrides,
    /// Whether kgf-up may prompt: not with `--non-interactive`, `CI=true`, or without a terminal.
    pub interactive: bool,
    pub yes: bool,
    pub json: bool,
    pub verbose: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(
        "{} applies only to {}; the profile's provider is {provider}, which would ignore it",
        flag.shown(),
        flag.applies_to()
    )]
    IgnoredFlag { flag: Flag, provider: Provider },
    #[error(transparent)]
    Named(#[from] existing::NamedError),
}

impl Fix for SettingsError {
    fn fix(&self) -> Option<String> {
        match self {
            SettingsError::Profile(e) => e.fix(),
            SettingsError::IgnoredFlag { flag, .. } => Some(format!("remove {}", flag.shown())),
            SettingsError::Named(e) => e.fix(),
        }
    }
}

impl Settings {
    /// Resolves `options`: loads the profile (with `--set`), applies the flags that override it,
    /// and refuses a flag the profile's provider or the verb would silently ignore, or a
    /// kubeconfig or context it names that is not there. Every error is bad input.
    pub fn resolve(options: Options) -> Result<Settings, SettingsError> {
        let mut loaded = crate::load::load(&options.profile, &options.sets)?;
        if let Some(t) = options.timeout {
            loaded.profile.settings.timeout = t;
        }
        if let Verb::Up { run: true }
        | Verb::Pipeline(PipelineAction::Upload | PipelineAction::Run) = options.verb
        {
            loaded.profile.pipeline.enabled = true;
        }
        let overrides = Overrides {
            kubeconfig: options.kubeconfig,
            context: options.context,
        };
        flags_apply(&overrides, &options.verb, loaded.profile.cluster.provider)?;
        if loaded.profile.cluster.provider == Provider::Existing {
            existing::check_named(&loaded.profile.cluster.existing, &overrides)?;
        }
        Ok(Settings {
            interactive: interactive(options.non_interactive),
            verb: options.verb,
            loaded,
            overrides,
            yes: options.yes,
            json: options.json,
            verbose: options.verbose,
        })
    }
}

/// Whether kgf-up may prompt: not when told not to, not in CI, and only with a terminal on stdin
/// and stderr.
pub fn interactive(non_interactive: bool) -> bool {
    !non_interactive
        && std::env::var("CI").map(|v| v != "true").unwrap_or(true)
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal()
}

/// A flag that the profile's provider or the verb would silently ignore is bad input.
fn flags_apply(
    overrides: &Overrides,
    verb: &Verb,
    provider: Provider,
) -> Result<(), SettingsError> {
    let given = [
        (Flag::Kubeconfig, overrides.kubeconfig.is_some()),
        (Flag::Context, overrides.context.is_some()),
        (Flag::DownAll, matches!(verb, Verb::Down { all: true })),
        (Flag::DoctorFix, matches!(verb, Verb::Doctor { fix: true })),
    ];
    let honoured = provider::of(provider);
    match given
        .into_iter()
        .find(|(flag, given)| *given && !honoured.honours(*flag))
    {
        Some((flag, _)) => Err(SettingsError::IgnoredFlag { flag, provider }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(verb: Verb, profile: &str) -> Options {
        Options {
            verb,
            profile: profile.into(),
            sets: Vec::new(),
            kubeconfig: None,
            context: None,
            non_interactive: true,
            yes: false,
            json: false,
            log_file: None,
            timeout: None,
            verbose: false,
        }
    }

    #[test]
    fn flags_override_the_profile_and_the_verb_enables_what_it_needs() {
        let mut o = options(Verb::Up { run: true }, "sim");
        o.timeout = Some(std::time::Duration::from_secs(90));
        let s = Settings::resolve(o).unwrap();
        assert_eq!(s.loaded.profile.settings.timeout.as_secs(), 90);
        assert!(
            s.loaded.profile.pipeline.enabled,
            "up --run needs the pipeline"
        );
        assert!(!s.interactive, "--non-interactive");
        let s = Settings::resolve(options(Verb::Status, "sim")).unwrap();
        let as_built = crate::load::load("sim", &[]).unwrap();
        assert_eq!(
            s.loaded.profile.settings.timeout, as_built.profile.settings.timeout,
            "without --timeout the profile's"
        );
    }

    #[test]
    fn a_flag_the_provider_would_ignore_is_bad_input_naming_it() {
        let mut o = options(
            Verb::Plan {
                exit_code: false,
                offline: false,
            },
            "sim",
        );
        o.kubeconfig = Some("/tmp/kc".into());
        let err = Settings::resolve(o).err().unwrap();
        assert_eq!(
            err.to_string(),
            "--kubeconfig applies only to the existing provider; the profile's provider is sim, which would ignore it"
        );
        assert_eq!(err.fix().unwrap(), "remove --kubeconfig");
        let err = Settings::resolve(options(Verb::Down { all: true }, "sim"))
            .err()
            .unwrap();
        assert!(
            err.to_string().starts_with("down --all applies only to"),
            "{err}"
        );
    }
}
