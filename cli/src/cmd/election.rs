//! `election preferred [TOPIC]`: asks the active controller to move leadership back to each partition's
//! preferred (first) replica and reports the outcome per partition. `election unclean [TOPIC]
//! [--partition P]` asks it to give leaderless partitions a leader even from outside the ISR (Kafka's
//! ElectionType.UNCLEAN). A partition whose election is not needed (already led by its preferred
//! replica; already led at all, for unclean) is not a failure; any other per-partition error makes the
//! command exit non-zero once the whole report is printed.

use chronik_proto::v1::{ElectLeadersRequest, ElectPartitions};
use serde::Serialize;

use crate::client::ControllerClient;
use crate::error::{codes, kafka_error_name, CliError};

/// The election outcome of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ElectionResult {
    /// The topic name.
    pub topic: String,
    /// The partition index.
    pub partition: i32,
    /// The leader after the election; -1 when there is none.
    pub leader: i32,
    /// What happened.
    pub result: ElectionOutcome,
    /// The Kafka error name, when the election did not happen.
    pub error: Option<String>,
    /// The controller's explanation, when it sent one.
    pub message: Option<String>,
}

/// What happened to one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ElectionOutcome {
    /// The preferred replica is now the leader.
    Elected,
    /// The preferred replica already was the leader.
    NotNeeded,
    /// The election failed (e.g. the preferred replica is not in the ISR).
    Failed,
}

impl ElectionOutcome {
    /// The lowercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ElectionOutcome::Elected => "elected",
            ElectionOutcome::NotNeeded => "not_needed",
            ElectionOutcome::Failed => "failed",
        }
    }
}

/// Runs a preferred leader election for one topic or every topic.
pub async fn preferred(
    client: &ControllerClient,
    topic: Option<&str>,
) -> Result<Vec<ElectionResult>, CliError> {
    elect(client, topic, &[], false).await
}

/// Runs an unclean leader election for every topic, one topic, or some of its partitions.
pub async fn unclean(
    client: &ControllerClient,
    topic: Option<&str>,
    partitions: &[i32],
) -> Result<Vec<ElectionResult>, CliError> {
    elect(client, topic, partitions, true).await
}

async fn elect(
    client: &ControllerClient,
    topic: Option<&str>,
    partitions: &[i32],
    unclean: bool,
) -> Result<Vec<ElectionResult>, CliError> {
    let request = match (topic, partitions) {
        (Some(topic), [_, ..]) => ElectLeadersRequest {
            partitions: vec![ElectPartitions {
                topic: topic.to_owned(),
                partitions: partitions.to_vec(),
            }],
            unclean,
            ..Default::default()
        },
        _ => ElectLeadersRequest {
            topics: topic.map(str::to_owned).into_iter().collect(),
            unclean,
            ..Default::default()
        },
    };
    let reply = client.elect_leaders(request).await?;
    let mut results: Vec<ElectionResult> = reply
        .partitions
        .into_iter()
        .map(|partition| {
            let result = match partition.error_code {
                codes::NONE => ElectionOutcome::Elected,
                codes::ELECTION_NOT_NEEDED => ElectionOutcome::NotNeeded,
                _ => ElectionOutcome::Failed,
            };
            ElectionResult {
                topic: partition.topic,
                partition: partition.partition_index,
                leader: partition.leader,
                result,
                error: (partition.error_code != codes::NONE)
                    .then(|| kafka_error_name(partition.error_code).to_owned()),
                message: Some(partition.error_message).filter(|message| !message.trim().is_empty()),
            }
        })
        .collect();
    if let Some(topic) = topic {
        if results.is_empty() {
            return Err(CliError::kafka(
                codes::UNKNOWN_TOPIC_OR_PARTITION,
                "",
                |_| format!("topic '{topic}' does not exist"),
            ));
        }
    }
    results.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(results)
}

/// The error the exit status reports when some elections failed.
pub fn failure(results: &[ElectionResult]) -> Option<CliError> {
    let failed = results
        .iter()
        .filter(|result| result.result == ElectionOutcome::Failed)
        .count();
    (failed > 0).then_some(CliError::ElectionFailed {
        failed,
        total: results.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(outcome: ElectionOutcome) -> ElectionResult {
        ElectionResult {
            topic: "t".to_owned(),
            partition: 0,
            leader: 1,
            result: outcome,
            error: None,
            message: None,
        }
    }

    #[test]
    fn only_real_failures_fail_the_command() {
        assert!(failure(&[
            result(ElectionOutcome::Elected),
            result(ElectionOutcome::NotNeeded)
        ])
        .is_none());
        let error = failure(&[
            result(ElectionOutcome::Elected),
            result(ElectionOutcome::Failed),
        ]);
        assert_eq!(
            error.map(|error| error.to_string()).as_deref(),
            Some("leader election failed for 1 of 2 partition(s)")
        );
    }
}
