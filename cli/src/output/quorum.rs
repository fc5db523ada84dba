//! `cluster quorum`: the quorum's status lines, then one row per replica (as
//! `kafka-metadata-quorum.sh describe --status` and `--replication` print them).

use std::io::Write;

use super::table;
use crate::cmd::quorum::QuorumReport;
use crate::error::CliError;

pub fn report(out: &mut impl Write, report: &QuorumReport) -> Result<(), CliError> {
    let known = |value: Option<i64>| value.map_or("-".to_owned(), |v| v.to_string());
    writeln!(out, "LeaderId:             {}", report.leader_id)?;
    writeln!(out, "LeaderEpoch:          {}", report.leader_epoch)?;
    writeln!(out, "HighWatermark:        {}", report.high_watermark)?;
    writeln!(out, "MaxFollowerLag:       {}", report.max_follower_lag)?;
    writeln!(
        out,
        "MaxFollowerLagTimeMs: {}",
        known(report.max_follower_lag_ms)
    )?;
    writeln!(out)?;
    let ago = |ms: Option<i64>| ms.map_or("never".to_owned(), |ms| format!("{ms} ms ago"));
    let rows: Vec<Vec<String>> = report
        .replicas
        .iter()
        .map(|r| {
            vec![
                r.node_id.to_string(),
                known(r.log_end_offset),
                known(r.lag),
                ago(r.last_fetch_ms_ago),
                ago(r.last_caught_up_ms_ago),
                r.role.to_owned(),
            ]
        })
        .collect();
    table(
        out,
        &[
            "NODE",
            "LOG END OFFSET",
            "LAG",
            "LAST FETCH",
            "LAST CAUGHT UP",
            "STATUS",
        ],
        &rows,
    )?;
    Ok(())
}
