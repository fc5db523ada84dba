//! `partition move`, `broker decommission` and `reassignment list|cancel`: one row per partition
//! moved (from, to), then what is still under way; one row per reassignment under way.

use std::io::Write;

use super::{broker_or_none, table};
use crate::cmd::reassign::{MoveReport, Reassignment};

fn ids(brokers: &[i32]) -> String {
    if brokers.is_empty() {
        "-".to_owned()
    } else {
        brokers
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The planned moves and whether they completed.
pub(super) fn moves(out: &mut impl Write, report: &MoveReport) -> std::io::Result<()> {
    let rows = report
        .moved
        .iter()
        .map(|m| {
            vec![
                m.topic.clone(),
                m.partition.to_string(),
                ids(&m.from),
                ids(&m.to),
            ]
        })
        .collect::<Vec<_>>();
    table(out, &["TOPIC", "PARTITION", "FROM", "TO"], &rows)?;
    if report.moved.is_empty() {
        writeln!(out, "Nothing to move.")
    } else if report.completed {
        writeln!(
            out,
            "All {} move(s) completed in {:.1} s.",
            report.moved.len(),
            report.waited_secs
        )
    } else {
        writeln!(
            out,
            "{} of {} move(s) under way.",
            report.pending.len(),
            report.moved.len()
        )?;
        reassignments(out, &report.pending)
    }
}

/// One row per reassignment under way.
pub(super) fn reassignments(out: &mut impl Write, listed: &[Reassignment]) -> std::io::Result<()> {
    let rows = listed
        .iter()
        .map(|r| {
            vec![
                r.topic.clone(),
                r.partition.to_string(),
                ids(&r.replicas),
                ids(&r.adding),
                ids(&r.removing),
                ids(&r.isr),
                broker_or_none(r.leader),
            ]
        })
        .collect::<Vec<_>>();
    table(
        out,
        &[
            "TOPIC",
            "PARTITION",
            "REPLICAS",
            "ADDING",
            "REMOVING",
            "ISR",
            "LEADER",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use crate::cmd::reassign::{MoveReport, PlannedMove, Reassignment};
    use crate::cmd::Report;
    use crate::output::testing::{json, table_text};

    #[test]
    fn moves_render_from_and_to_and_what_is_pending() {
        let report = MoveReport {
            moved: vec![PlannedMove {
                topic: "orders".to_owned(),
                partition: 0,
                from: vec![1, 2],
                to: vec![3, 2],
            }],
            completed: false,
            pending: vec![Reassignment {
                topic: "orders".to_owned(),
                partition: 0,
                replicas: vec![3, 2, 1],
                adding: vec![3],
                removing: vec![1],
                isr: vec![1, 2],
                leader: 1,
            }],
            waited_secs: 1.0,
        };
        let text = table_text(&Report::Moves(report.clone()));
        assert!(text.contains("1,2") && text.contains("3,2,1"), "{text}");
        assert!(text.contains("1 of 1 move(s) under way"), "{text}");
        let value = json(&Report::Moves(report));
        assert_eq!(value["moved"][0]["to"], serde_json::json!([3, 2]));
        assert_eq!(value["pending"][0]["adding"], serde_json::json!([3]));
    }
}
