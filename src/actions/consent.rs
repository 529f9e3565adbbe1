//! Consent for what a verb destroys, asked before anything is touched.

use super::Failure;
use crate::cli::Verb;
use crate::profile::Loaded;
use crate::provider;
use crate::settings::Settings;

/// What a destructive verb would destroy, or `None` when the verb destroys nothing.
fn destroys(verb: &Verb, loaded: &Loaded) -> Option<String> {
    let p = &loaded.profile;
    let provider = provider::of(p.cluster.provider);
    match verb {
        Verb::Down { .. } => Some(provider.down_destroys(p)),
        Verb::Up { .. } | Verb::Pipeline(_) => provider.up_destroys(p),
        Verb::Doctor { fix: true } => Some(
            "`doctor --fix` changes this host: it runs the fix commands shown (with sudo) and may restart docker"
                .to_string(),
        ),
        _ => None,
    }
}

/// Destruction needs consent: a yes at the terminal, or `--yes`. Without a terminal and without
/// `--yes` nothing happens, and the message gives the exact command to run. Called before
/// anything is touched.
pub(super) fn consent(s: &Settings) -> Result<(), Failure> {
    let Some(what) = destroys(&s.verb, &s.loaded) else {
        return Ok(());
    };
    if s.yes {
        tracing::info!("consent given with --yes: {what}");
        return Ok(());
    }
    if !s.interactive {
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
/// Read as the OS gave it: an argument that is not UTF-8 (a `--log-file` path) is quoted, not a
/// panic.
fn with_yes() -> String {
    std::iter::once(std::ffi::OsString::from("kgf-up"))
        .chain(std::env::args_os().skip(1))
        .chain(std::iter::once(std::ffi::OsString::from("--yes")))
        .map(crate::exec::shell_quote)
        .collect::<Vec<_>>()
        .join(" ")
}
