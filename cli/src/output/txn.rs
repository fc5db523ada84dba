//! The `txn` commands: the merged transaction list (with a note per broker that did not answer and
//! per unknown state filter), and one transactional id's state.

use std::io::Write;

use super::{fields, table};
use crate::cmd::txn::{TransactionDetails, TransactionList};

pub(super) fn list(out: &mut impl Write, list: &TransactionList) -> std::io::Result<()> {
    let rows = list
        .transactions
        .iter()
        .map(|t| {
            vec![
                t.transactional_id.clone(),
                t.state.clone(),
                t.producer_id.to_string(),
                t.coordinator.to_string(),
            ]
        })
        .collect::<Vec<_>>();
    table(
        out,
        &["TRANSACTIONAL ID", "STATE", "PRODUCER ID", "COORDINATOR"],
        &rows,
    )?;
    for state in &list.unknown_states {
        writeln!(out, "Note: no broker knows the state '{state}'")?;
    }
    for failure in &list.failed_brokers {
        writeln!(
            out,
            "Note: broker {} did not answer ListTransactions: {}",
            failure.broker_id, failure.error
        )?;
    }
    Ok(())
}

pub(super) fn details(out: &mut impl Write, t: &TransactionDetails) -> std::io::Result<()> {
    let partitions = if t.partitions.is_empty() {
        "-".to_owned()
    } else {
        t.partitions
            .iter()
            .map(|p| format!("{}-{}", p.topic, p.partition))
            .collect::<Vec<_>>()
            .join(", ")
    };
    fields(
        out,
        &[
            ("Transactional id", t.transactional_id.clone()),
            ("State", t.state.clone()),
            ("Producer id", t.producer_id.to_string()),
            ("Producer epoch", t.producer_epoch.to_string()),
            ("Timeout", format!("{} ms", t.timeout_ms)),
            (
                "Started",
                if t.start_time_ms < 0 {
                    "-".to_owned()
                } else {
                    t.start_time_ms.to_string()
                },
            ),
            ("Coordinator", t.coordinator.to_string()),
            ("Partitions", partitions),
        ],
    )
}
