//! `election preferred`: one row per partition with its leader and the outcome, and the error or
//! message that explains it.

use std::io::Write;

use super::{broker_or_none, table};
use crate::cmd::ElectionResult;

/// One row per partition: leader, outcome and what explains it.
pub(super) fn results(out: &mut impl Write, results: &[ElectionResult]) -> std::io::Result<()> {
    let rows = results
        .iter()
        .map(|result| {
            let detail = result
                .message
                .clone()
                .or_else(|| result.error.clone())
                .unwrap_or_default();
            vec![
                result.topic.clone(),
                result.partition.to_string(),
                broker_or_none(result.leader),
                result.result.as_str().to_owned(),
                detail,
            ]
        })
        .collect::<Vec<_>>();
    table(
        out,
        &["TOPIC", "PARTITION", "LEADER", "RESULT", "DETAIL"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use crate::cmd::{ElectionOutcome, ElectionResult, Report};
    use crate::output::testing::{json, table_text};

    #[test]
    fn election_results_render_per_partition() {
        let results = vec![ElectionResult {
            topic: "orders".to_owned(),
            partition: 0,
            leader: 2,
            result: ElectionOutcome::Failed,
            error: Some("PREFERRED_LEADER_NOT_AVAILABLE".to_owned()),
            message: None,
        }];
        let text = table_text(&Report::Election(results.clone()));
        assert!(text.contains("PREFERRED_LEADER_NOT_AVAILABLE"), "{text}");
        let value = json(&Report::Election(results));
        assert_eq!(value[0]["result"], "failed");
        assert_eq!(value[0]["partition"], 0);
    }
}
