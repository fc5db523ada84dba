//! `cluster features`: one row per feature.

use std::io::Write;

use super::table;
use crate::cmd::features::{FeaturesReport, LevelRange};
use crate::error::CliError;

pub fn report(out: &mut impl Write, report: &FeaturesReport) -> Result<(), CliError> {
    if let Some(change) = &report.change {
        let verb = if change.dry_run {
            "would finalize"
        } else {
            "finalized"
        };
        writeln!(out, "{verb} {} at level {}", change.name, change.level)?;
    }
    let range = |r: &Option<LevelRange>| match r {
        Some(r) => format!("{}-{}", r.min, r.max),
        None => "not reported".to_owned(),
    };
    let rows: Vec<Vec<String>> = report
        .features
        .iter()
        .map(|f| {
            let brokers: Vec<String> = f
                .brokers
                .iter()
                .map(|(id, supported)| format!("{id}: {}", range(supported)))
                .collect();
            vec![
                f.name.clone(),
                f.finalized_level.to_string(),
                f.controller_supported
                    .as_ref()
                    .map_or("-".to_owned(), |r| format!("{}-{}", r.min, r.max)),
                brokers.join(", "),
            ]
        })
        .collect();
    table(
        out,
        &["FEATURE", "FINALIZED", "CONTROLLER", "BROKERS"],
        &rows,
    )?;
    Ok(())
}
