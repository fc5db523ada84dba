//! `topic produce`: one row per input record (its partition and offset, or why it failed), then a
//! count.

use std::io::Write;

use super::{number_or_dash, table};
use crate::cmd::produce::ProduceReport;

pub(super) fn produced(out: &mut impl Write, report: &ProduceReport) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = report
        .records
        .iter()
        .map(|r| {
            vec![
                r.record.to_string(),
                r.partition
                    .map_or_else(|| "-".to_owned(), |p| p.to_string()),
                number_or_dash(r.offset),
                r.error.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    table(out, &["RECORD", "PARTITION", "OFFSET", "ERROR"], &rows)?;
    writeln!(
        out,
        "Produced {} record(s) to '{}' (acks={}{}); {} failed.",
        report.produced,
        report.topic,
        report.acks,
        if report.idempotent {
            ", idempotent"
        } else {
            ""
        },
        report.failed
    )
}
