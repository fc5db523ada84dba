//! The credentials of Chronik's control plane (the controllers' gRPC and HTTP), shared by the
//! controllers, the brokers and `chronikctl`: a bearer [`Token`] read from a file and compared in
//! constant time, and [`ClientCredentials`], what a caller of the controllers presents (a CA to verify
//! them, an optional client certificate, an optional token). The design is in `docs/security.md`,
//! "Control plane".
//!
//! What must stay true: a token never appears in a `Debug` or `Display` output, an error message or a
//! log line; it travels only in the `authorization: Bearer` header, marked sensitive.

mod client;
mod token;

pub use client::{AuthChannel, BearerToken, ClientCredentials, ClientFiles};
pub use token::Token;

use std::path::{Path, PathBuf};

/// The gRPC metadata key (HTTP header) that carries a token.
pub const AUTHORIZATION: &str = "authorization";

/// Why a credential could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read {what} {}: {source}", .path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {} is not usable: {reason}", .path.display())]
    Invalid {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Config(String),
}

/// Reads a PEM file whole, checking that it holds at least one PEM block.
pub fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, CredentialError> {
    let bytes = std::fs::read(path).map_err(|source| CredentialError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(CredentialError::Invalid {
            what,
            path: path.to_path_buf(),
            reason: "no PEM block (-----BEGIN ...) in it".into(),
        });
    }
    Ok(bytes)
}
