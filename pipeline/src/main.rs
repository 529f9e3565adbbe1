//! Entry point: parse, run, print the error once and exit non-zero on failure.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = kgf_step::cli::Cli::parse();
    match kgf_step::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kgf-step: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
