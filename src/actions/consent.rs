//! Checks made before anything is touched: flags the provider would ignore, and consent for
//! what a verb destroys.

use super::Failure;
use crate::cli::{Command, Global};
use crate::profile::{Loaded, Profile};
use crate::provider::{self, Flag};

/// Flags that the profile's provider or the verb would silently ignore are bad input.
pub(super) fn flags_apply(g: &Global, command: &Command, profile: &Profile) -> Result<(), Failure> {
    let given = [
        (Flag::Kubeconfig, g.kubeconfig.is_some()),
        (Flag::Context, g.context.is_some()),
        (
            Flag::DownAll,
            matches!(command, Command::Down { all: true }),
        ),
        (
            Flag::DoctorFix,
            matches!(command, Command::Doctor { fix: true }),
        ),
    ];
    let name = profile.cluster.provider;
    let provider = provider::of(name);
    match given
        .iter()
        .find(|(flag, given)| *given && !provider.honours(*flag))
    {
        Some((flag, _)) => Err(Failure::new(
            format!(
                "{} applies only to {}; the profile's provider is {name}, which would ignore it",
                flag.shown(),
                flag.applies_to(),
            ),
            2,
        )
        .with_fix(format!("remove {}", flag.shown()))),
        None => Ok(()),
    }
}

/// What a destructive verb would destroy, or `None` when the verb destroys nothing.
fn destroys(command: &Command, loaded: &Loaded) -> Option<String> {
    let p = &loaded.profile;
    let provider = provider::of(p.cluster.provider);
    match command {
        Command::Down { .. } => Some(provider.down_destroys(p)),
        Command::Up { .. } | Command::Pipeline { .. } => provider.up_destroys(p),
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
pub(super) fn consent(
    command: &Command,
    loaded: &Loaded,
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
        return Err(Failure::new(
            format!(
                "{what}; that needs consent, and there is no terminal to ask on (nothing was changed)"
            ),
            2,
        )
        .with_fix(format!("to go ahead, run `{}`", with_yes())));
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
        Err(Failure::new("not confirmed: nothing was changed", 1))
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
        .map(|a| crate::exec::shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}
