//! The `chronikctl` binary: parse the command line, log to stderr (filtered by `RUST_LOG`), run, and turn
//! any failure into a single `error: ...` line and a non-zero exit status.

use std::process::ExitCode;

use anyhow::Context;
use chronikctl::Cli;
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    drop_empty_chronik_variables();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let message = format!("{error:#}");
            eprintln!(
                "error: {}",
                message.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            ExitCode::FAILURE
        }
    }
}

/// An empty `CHRONIK_*` variable counts as unset, as compose files and `env FOO=` leave them; clap
/// would take it for an empty value and refuse it. Runs before any thread exists.
fn drop_empty_chronik_variables() {
    for (name, value) in std::env::vars_os() {
        if value.is_empty() && name.to_string_lossy().starts_with("CHRONIK_") {
            std::env::remove_var(name);
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(chronikctl::run(cli))?;
    Ok(())
}
