//! `secrets generate`: the directory, then what was created and what was kept.

use std::io::Write;

use crate::cmd::secrets::SecretsReport;

/// `created: ...` and `kept: ...` lines under the directory.
pub(super) fn report(out: &mut impl Write, report: &SecretsReport) -> std::io::Result<()> {
    writeln!(out, "secrets in {}", report.dir)?;
    let list = |files: &[String]| {
        if files.is_empty() {
            "none".to_owned()
        } else {
            files.join(" ")
        }
    };
    writeln!(out, "created: {}", list(&report.created))?;
    writeln!(out, "kept:    {}", list(&report.kept))
}
