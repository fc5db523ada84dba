//! `probe`: one line, the HTTP status and the message.

use std::io::Write;

use crate::cmd::probe::ProbeResult;

/// `STATUS MESSAGE`.
pub(super) fn result(out: &mut impl Write, result: &ProbeResult) -> std::io::Result<()> {
    writeln!(out, "{} {}", result.status, result.message)
}
