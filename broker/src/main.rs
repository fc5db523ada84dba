//! The `chronik-broker` binary: parse the configuration, set up logging, run the broker until SIGTERM
//! or SIGINT, and exit non-zero with one line on failure.

use std::io::IsTerminal;
use std::process::ExitCode;

use chronik_broker::BrokerConfig;
use clap::Parser;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

/// Malformed requests must not abort the process through a huge up-front allocation (see `alloc`).
#[global_allocator]
static ALLOCATOR: chronik_broker::alloc::LazyLargeAllocator =
    chronik_broker::alloc::LazyLargeAllocator;

#[tokio::main]
async fn main() -> ExitCode {
    let config = BrokerConfig::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Sockets and the segment file cache share this limit (see `fds`); raised before any log opens,
    // as the cache sizes itself from it.
    match chronik_broker::fds::raise_open_files_limit() {
        Ok((soft, _)) => info!(limit = soft, "open files limit"),
        Err(e) => warn!(error = %e, "cannot raise the open files limit"),
    }
    match chronik_broker::run(config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chronik-broker: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
