//! `quota set|remove|list`: one row per entity, its quotas as `key=value` pairs.

use std::io::Write;

use super::table;
use crate::cmd::quota::{QuotaEntry, QuotaReport, DEFAULT_NAME};

pub(super) fn report(out: &mut impl Write, report: &QuotaReport) -> std::io::Result<()> {
    if report.entries.is_empty() {
        return writeln!(out, "No client quotas {}.", report.action);
    }
    let rows = report
        .entries
        .iter()
        .map(|entry| vec![entity(entry), quotas(entry)])
        .collect::<Vec<_>>();
    table(out, &["ENTITY", "QUOTAS"], &rows)?;
    if report.action == "removed" {
        writeln!(out, "removed")?;
    }
    Ok(())
}

fn entity(entry: &QuotaEntry) -> String {
    entry
        .entity
        .iter()
        .rev() // user before client-id, as kafka-configs.sh prints them
        .map(|(kind, name)| format!("{kind}={}", name.as_deref().unwrap_or(DEFAULT_NAME)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn quotas(entry: &QuotaEntry) -> String {
    super::key_values(&entry.quotas, "-")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::cmd::quota::{QuotaEntry, QuotaReport};
    use crate::cmd::Report;
    use crate::output::testing::{json, table_text};

    #[test]
    fn quotas_render_as_rows_and_json() {
        let report = QuotaReport {
            action: "listed",
            entries: vec![QuotaEntry {
                entity: BTreeMap::from([
                    ("client-id".to_owned(), None),
                    ("user".to_owned(), Some("alice".to_owned())),
                ]),
                quotas: BTreeMap::from([("producer_byte_rate".to_owned(), 1024.0)]),
            }],
        };
        let text = table_text(&Report::Quotas(report.clone()));
        assert!(
            text.contains("user=alice, client-id=<default>")
                && text.contains("producer_byte_rate=1024"),
            "{text}"
        );
        let value = json(&Report::Quotas(report));
        assert_eq!(value["entries"][0]["entity"]["user"], "alice");
        assert!(value["entries"][0]["entity"]["client-id"].is_null());
        assert_eq!(value["entries"][0]["quotas"]["producer_byte_rate"], 1024.0);
        let empty = table_text(&Report::Quotas(QuotaReport {
            action: "listed",
            entries: Vec::new(),
        }));
        assert_eq!(empty.trim(), "No client quotas listed.");
    }
}
