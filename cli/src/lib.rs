//! `chronikctl`, the operator CLI of Chronik, as a library: [`cli`] declares the command line (its values
//! checked by [`parse`]), [`cmd`]
//! runs one command against the controllers through [`client::ControllerClient`] and returns data, and
//! [`output`] is the only module that prints. `main.rs` only parses, sets up tracing and calls [`run`], so
//! every piece is testable without a terminal. Library errors are the typed [`CliError`]; `anyhow` is used
//! only in `main`.

pub mod bench;
pub mod cli;
pub mod client;
pub mod cmd;
pub mod error;
pub mod local;
pub mod local_control_plane;
pub mod local_security;
pub mod output;
pub mod parse;

use std::io::Write;
use std::time::Duration;

pub use cli::Cli;
pub use client::ControllerClient;
pub use cmd::Report;
pub use error::CliError;
pub use output::OutputFormat;

/// The Kafka client (the `chronik-kafka-client` crate, shared with the controllers' console), with
/// [`kafka::security::resolve`] taking chronikctl's flags.
pub mod kafka {
    pub use chronik_kafka_client::*;

    /// [`chronik_kafka_client::security`], resolved from chronikctl's flags.
    pub mod security {
        pub use chronik_kafka_client::security::*;

        use crate::cli::KafkaSecurityArgs;
        use crate::error::CliError;

        /// Resolves the flags and the properties file they name into the settings of this run.
        pub fn resolve(args: &KafkaSecurityArgs) -> Result<KafkaSettings, CliError> {
            let options = SecurityOptions {
                client_config: args.client_config.clone(),
                security_protocol: args.security_protocol,
                sasl_mechanism: args.sasl_mechanism,
                sasl_username: args.sasl_username.clone(),
                sasl_password: args.sasl_password.clone(),
                tls_ca: args.tls_ca.clone(),
                tls_cert: args.tls_cert.clone(),
                tls_key: args.tls_key.clone(),
            };
            options.resolve().map_err(|error| {
                CliError::InvalidArgument(match error {
                    SettingsError::File { path, reason } => {
                        format!("--client-config {path}: {reason}")
                    }
                    SettingsError::Invalid(message) => message,
                })
            })
        }
    }
}

/// Runs the parsed command line: executes the command, prints its report to stdout, and fails if the
/// command failed or its report records a partial failure.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    kafka::security::install(kafka::security::resolve(&cli.global.kafka)?);
    let client = ControllerClient::new(
        cli.global.controllers.clone(),
        Duration::from_millis(cli.global.timeout_ms),
    )?
    .with_credentials(cli.global.controller_security.load()?);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let report = match &cli.command {
        cli::Command::Completion { shell } => {
            output::completion(
                &mut out,
                *shell,
                &mut <Cli as clap::CommandFactory>::command(),
            )?;
            return Ok(out.flush()?);
        }
        cli::Command::Topic(cli::TopicCommand::Consume(args)) => Report::Consumed(
            cmd::consume::consume(&client, args, cli.global.output, &mut out).await?,
        ),
        command => cmd::execute(command, &client).await?,
    };
    output::render(&mut out, cli.global.output, &report)?;
    out.flush()?;
    match report.failure() {
        Some(error) => Err(error),
        None => Ok(()),
    }
}
