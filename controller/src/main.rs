//! `chronik-controller`: parse the configuration, set up logging, run a controller node until SIGINT or
//! SIGTERM.

use clap::Parser;
use tracing_subscriber::EnvFilter;

use chronik_controller::config::ControllerConfig;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = ControllerConfig::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match chronik_controller::node::run(config, chronik_controller::shutdown::signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
