//! kgf-up's one exit point: parse arguments into options, open the log, run the verb
//! (`kgf_up::actions`), print the error once, exit with its code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use kgf_up::actions::{self, Failure};
use kgf_up::cli;
use kgf_up::cluster;
use kgf_up::secret::redact;
use kgf_up::ui::say;

fn main() -> ExitCode {
    let options = match cli::parse() {
        Ok(options) => options,
        Err(code) => return ExitCode::from(code),
    };
    let log_file = match open_log(options.log_file.as_deref()) {
        Ok((path, file)) => {
            init_logging(file, options.verbose);
            path
        }
        Err(f) => {
            say(&format!("kgf-up: {}", f.shown()));
            return ExitCode::from(f.code);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let code = runtime.block_on(async {
        tokio::select! {
            result = actions::run(options) => match result {
                Ok(()) => 0,
                Err(f) if f.code == 0 => 0,
            // Said already (plan's "changes pending" is its report).
            Err(f) if f.message.is_empty() => f.code,
                Err(f) => {
                    let message = redact(&f.shown());
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

/// The run log: `--log-file` (appended to, never truncated; its directory must exist), or a new
/// file of this run's own in the state directory, named by time and process id and created
/// exclusively, so that two runs in the same second keep two logs. Unwritable is bad input (2).
fn open_log(given: Option<&std::path::Path>) -> Result<(PathBuf, std::fs::File), Failure> {
    let cannot = |path: &std::path::Path, e: std::io::Error, fix: &str| {
        Failure::new(
            format!("cannot write the log file {}: {e}", path.display()),
            2,
        )
        .with_fix(fix)
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
