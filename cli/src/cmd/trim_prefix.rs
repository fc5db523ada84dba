//! `topic trim-prefix`: deletes the records of a topic's partitions below an offset (Kafka's
//! DeleteRecords, what `kafka-delete-records.sh` and `Admin.deleteRecords` send), so each partition's
//! log start offset becomes the offset (-1: its high watermark at the time). The controllers say which
//! partitions exist and which broker leads each; the request goes to the leaders over the Kafka
//! protocol through [`KafkaAdmin`], and each partition's answer is its new low watermark: the earliest
//! offset left on every live replica.
//!
//! What must stay true: answers that a moment and a fresh leader can fix (Kafka's retriable and
//! invalid-metadata errors: a leader change, REQUEST_TIMED_OUT while a replica catches up) are retried
//! with fresh leaders until the retry deadline, which is safe because a log start never moves
//! backwards; any other answer (OFFSET_OUT_OF_RANGE above the high watermark, POLICY_VIOLATION on a
//! compact-only topic) is that partition's result at once. The report lists every selected partition,
//! and the command exits non-zero when any failed. Nothing here prints.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::bench::PartitionSelection;
use crate::client::ControllerClient;
use crate::cmd::{group, topic};
use crate::error::CliError;
use crate::kafka::admin::{pause_until, PartitionLowWatermark, INITIAL_BACKOFF};
use crate::kafka::{error_name, KafkaAdmin, KafkaError};

/// What `topic trim-prefix` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrefixTrim {
    /// The topic.
    pub topic: String,
    /// The requested offset; -1 means each partition's high watermark.
    pub offset: i64,
    /// Every selected partition, by index.
    pub partitions: Vec<PartitionTrim>,
}

/// One partition of a trim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionTrim {
    /// The partition index.
    pub partition: i32,
    /// The partition's low watermark after the trim (the earliest offset left on every live
    /// replica); `None` when the trim failed.
    pub low_watermark: Option<i64>,
    /// The Kafka error name, or what went wrong, when the trim failed.
    pub error: Option<String>,
}

impl PrefixTrim {
    /// The error the exit status reports when some partitions were not trimmed.
    pub fn failure(&self) -> Option<CliError> {
        let failed = self.partitions.iter().filter(|p| p.error.is_some()).count();
        (failed > 0).then(|| {
            CliError::Incomplete(format!(
                "the records of {failed} of {} partition(s) of '{}' were not deleted",
                self.partitions.len(),
                self.topic
            ))
        })
    }
}

/// DeleteRecords codes that a moment and a fresh leader can fix (Kafka's `RetriableException` and
/// `InvalidMetadataException`, as its admin client's `DeleteRecordsHandler` retries them).
fn is_retriable(code: i16) -> bool {
    // UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT,
    // KAFKA_STORAGE_ERROR, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH.
    matches!(code, 3 | 5 | 6 | 7 | 56 | 74 | 75)
}

/// `topic trim-prefix`.
pub async fn trim_prefix(
    client: &ControllerClient,
    admin: &mut KafkaAdmin,
    topic_name: &str,
    selection: &PartitionSelection,
    offset: i64,
) -> Result<PrefixTrim, CliError> {
    let mut details = topic::describe(client, topic_name).await?;
    let partitions = group::selected_partitions(topic_name, &details.partitions, selection)?;
    // The broker waits this long for the replicas; the rest of the request timeout is for the answer.
    let wait = admin.request_timeout() * 3 / 4;
    let deadline = admin.deadline();
    let mut backoff = INITIAL_BACKOFF;
    let mut done: BTreeMap<i32, PartitionTrim> = BTreeMap::new();
    let mut last: BTreeMap<i32, String> = BTreeMap::new();
    loop {
        let mut by_leader: BTreeMap<i32, BTreeMap<i32, i64>> = BTreeMap::new();
        for status in &details.partitions {
            if !partitions.contains(&status.partition) || done.contains_key(&status.partition) {
                continue;
            }
            if status.leader < 0 {
                last.insert(status.partition, "LEADER_NOT_AVAILABLE".to_owned());
                continue;
            }
            by_leader
                .entry(status.leader)
                .or_default()
                .insert(status.partition, offset);
        }
        for (leader, offsets) in by_leader {
            match admin
                .delete_records(leader, topic_name, &offsets, wait)
                .await
            {
                Ok(answers) => {
                    for (partition, answer) in answers {
                        if !offsets.contains_key(&partition) {
                            continue;
                        }
                        match answer {
                            PartitionLowWatermark::LowWatermark(low_watermark) => {
                                done.insert(partition, trimmed(partition, low_watermark));
                            }
                            PartitionLowWatermark::Error(code) if is_retriable(code) => {
                                last.insert(partition, error_name(code));
                            }
                            PartitionLowWatermark::Error(code) => {
                                done.insert(partition, failed(partition, error_name(code)));
                            }
                        }
                    }
                }
                Err(
                    error @ (KafkaError::Connect { .. }
                    | KafkaError::Io { .. }
                    | KafkaError::Timeout { .. }
                    | KafkaError::UnknownBroker { .. }),
                ) => {
                    for partition in offsets.keys() {
                        last.insert(*partition, error.to_string());
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
        if partitions.iter().all(|p| done.contains_key(p)) {
            break;
        }
        let waiting = pause_until(&mut backoff, deadline, || {
            format!("waiting for the leaders of '{topic_name}' to delete records")
        })
        .await;
        if waiting.is_err() {
            // Out of time: each partition not done reports the last answer it got.
            for &partition in &partitions {
                done.entry(partition).or_insert_with(|| {
                    let why = last
                        .get(&partition)
                        .cloned()
                        .unwrap_or_else(|| "no answer".to_owned());
                    failed(
                        partition,
                        format!("{why} (retried until the retry timeout)"),
                    )
                });
            }
            break;
        }
        details = topic::describe(client, topic_name).await?;
    }
    Ok(PrefixTrim {
        topic: topic_name.to_owned(),
        offset,
        partitions: partitions.iter().filter_map(|p| done.remove(p)).collect(),
    })
}

fn trimmed(partition: i32, low_watermark: i64) -> PartitionTrim {
    PartitionTrim {
        partition,
        low_watermark: Some(low_watermark),
        error: None,
    }
}

fn failed(partition: i32, error: String) -> PartitionTrim {
    PartitionTrim {
        partition,
        low_watermark: None,
        error: Some(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_changes_and_slow_replicas_are_retried_bad_offsets_are_not() {
        for code in [3, 5, 6, 7, 56, 74, 75] {
            assert!(is_retriable(code), "{code}");
        }
        // OFFSET_OUT_OF_RANGE, INVALID_TOPIC_EXCEPTION, POLICY_VIOLATION, UNKNOWN_SERVER_ERROR.
        for code in [1, 17, 44, -1] {
            assert!(!is_retriable(code), "{code}");
        }
    }

    #[test]
    fn any_failed_partition_fails_the_command() {
        let mut trim = PrefixTrim {
            topic: "t".to_owned(),
            offset: 5,
            partitions: vec![trimmed(0, 5), trimmed(1, 5)],
        };
        assert!(trim.failure().is_none());
        trim.partitions
            .push(failed(2, "OFFSET_OUT_OF_RANGE".to_owned()));
        assert_eq!(
            trim.failure().map(|e| e.to_string()),
            Some("the records of 1 of 3 partition(s) of 't' were not deleted".to_owned())
        );
    }
}
