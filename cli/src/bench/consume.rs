//! `bench consume`: one connection per partition leader, each with one Fetch outstanding at a time
//! (as Kafka consumers do) covering all of that leader's partitions. Start offsets come from
//! ListOffsets (earliest or latest). Records are counted from the RecordBatch v2 headers alone
//! (RecordCount, LastOffsetDelta), never decompressed, so the figures measure the broker and the
//! network rather than this client's codecs. Without `--messages`, the run reads each partition up to
//! the high watermark it had at the start.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;
use uuid::Uuid;

use super::cpu::BrokerCpu;
use super::error::{error_name, BenchError};
use super::stats::{mib_per_second, per_second, LatencyHistogram};
use super::{BenchReport, StartOffset, StopReason, Workload};
use crate::cli::BenchConsumeArgs;
use crate::kafka::fetch::{
    self, FetchPosition, EARLIEST_TIMESTAMP, FETCH_BY_NAME_MAX_VERSION, FETCH_VERSIONS,
    LATEST_TIMESTAMP,
};
use crate::kafka::records::tally_batches;
use crate::kafka::topic::{PartitionLeader, TopicLayout};
use crate::kafka::{check_code, KafkaConnection, KafkaError};

/// ListOffsets versions this client speaks.
const LIST_OFFSETS_VERSIONS: (i16, i16) = (1, 10);

/// Runs `bench consume`.
pub async fn run(args: &BenchConsumeArgs) -> Result<BenchReport, BenchError> {
    let target = &args.target;
    let deadline = Instant::now() + Duration::from_secs(target.timeout_secs);
    let layout = TopicLayout::discover(
        &target.bootstrap_servers,
        &target.topic,
        &target.partitions,
        target.auto_create_topic,
        deadline,
    )
    .await?;
    let mut leaders = Vec::new();
    let mut fetch_version = FETCH_VERSIONS.1;
    for (address, partitions) in layout.by_leader() {
        let mut connection = KafkaConnection::open(&address, deadline).await?;
        // Without a topic id only the by-name versions work.
        let max = if layout.topic_id.is_nil() {
            FETCH_BY_NAME_MAX_VERSION
        } else {
            FETCH_VERSIONS.1
        };
        let version = connection.version(ApiKey::Fetch, FETCH_VERSIONS.0, max)?;
        fetch_version = fetch_version.min(version);
        let start_timestamp = match args.from {
            StartOffset::Earliest => EARLIEST_TIMESTAMP,
            StartOffset::Latest => LATEST_TIMESTAMP,
        };
        let starts = list_offsets(
            &mut connection,
            &layout.topic,
            &partitions,
            start_timestamp,
            deadline,
        )
        .await?;
        let ends = match args.messages {
            Some(_) => None,
            None => Some(
                list_offsets(
                    &mut connection,
                    &layout.topic,
                    &partitions,
                    LATEST_TIMESTAMP,
                    deadline,
                )
                .await?,
            ),
        };
        let states = partitions
            .iter()
            .map(|p| PartitionFetch {
                partition: p.partition,
                leader_epoch: p.leader_epoch,
                offset: starts.get(&p.partition).copied().unwrap_or(0),
                end: ends
                    .as_ref()
                    .map(|ends| ends.get(&p.partition).copied().unwrap_or(0)),
                done: false,
            })
            .collect();
        leaders.push((connection, version, states));
    }
    let plan = Plan {
        topic: layout.topic.clone(),
        topic_id: layout.topic_id,
        max_wait_ms: args.fetch_max_wait_ms,
        max_bytes: i32::try_from(args.fetch_max_bytes).unwrap_or(i32::MAX),
        wanted: args.messages,
        consumed: AtomicU64::new(0),
        deadline,
    };
    let cpu = BrokerCpu::new(&target.metrics_url)?;
    let cpu_before = match &cpu {
        Some(cpu) => Some(cpu.read().await?),
        None => None,
    };
    let start = Instant::now();
    let outcomes =
        futures::future::join_all(leaders.into_iter().map(|(connection, version, states)| {
            fetch_from_leader(connection, version, states, &plan)
        }))
        .await;
    let elapsed = start.elapsed();
    let mut total = LeaderOutcome::new()?;
    for outcome in outcomes {
        total.merge(outcome?);
    }
    if plan
        .wanted
        .is_some_and(|wanted| total.messages < wanted && total.stopped == StopReason::Completed)
    {
        // Every partition ended on an error before the count was reached.
        total.stopped = StopReason::ConnectionFailed;
    }
    let mut settings = BTreeMap::new();
    for (key, value) in [
        ("from", format!("{:?}", args.from).to_lowercase()),
        ("fetch_max_bytes", args.fetch_max_bytes.to_string()),
        ("fetch_max_wait_ms", args.fetch_max_wait_ms.to_string()),
        ("fetch_version", fetch_version.to_string()),
        (
            "messages",
            args.messages
                .map_or_else(|| "up to the high watermark".to_owned(), |n| n.to_string()),
        ),
        ("partitions", target.partitions.to_string()),
    ] {
        settings.insert(key.to_owned(), value);
    }
    let broker_cpu = match (&cpu, cpu_before) {
        (Some(cpu), Some(before)) => Some(cpu.since(before, total.batch_bytes).await?),
        _ => None,
    };
    Ok(BenchReport {
        workload: Workload::Consume,
        topic: layout.topic.clone(),
        partitions: layout.partitions.len(),
        brokers: layout.by_leader().len(),
        settings,
        messages: total.messages,
        bytes: total.batch_bytes,
        batch_bytes: total.batch_bytes,
        requests: total.requests,
        elapsed_secs: elapsed.as_secs_f64(),
        messages_per_sec: per_second(total.messages, elapsed),
        mib_per_sec: mib_per_second(total.batch_bytes, elapsed),
        latency: total.latency.summary(),
        errors: total.errors,
        failed_messages: 0,
        stopped: total.stopped,
        broker_cpu,
        notes: total.notes,
    })
}

/// The offsets ListOffsets gives for `timestamp` (-2 earliest, -1 latest), by partition.
async fn list_offsets(
    connection: &mut KafkaConnection,
    topic: &str,
    partitions: &[PartitionLeader],
    timestamp: i64,
    deadline: Instant,
) -> Result<BTreeMap<i32, i64>, BenchError> {
    let version = connection.version(
        ApiKey::ListOffsets,
        LIST_OFFSETS_VERSIONS.0,
        LIST_OFFSETS_VERSIONS.1,
    )?;
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_timeout_ms(10_000)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(
                partitions
                    .iter()
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p.partition)
                            .with_current_leader_epoch(if version >= 4 {
                                p.leader_epoch
                            } else {
                                -1
                            })
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
    let response = connection.call(&request, version, deadline).await?;
    let mut offsets = BTreeMap::new();
    for answer in response.topics.iter().flat_map(|t| t.partitions.iter()) {
        check_code(
            || {
                format!(
                    "ListOffsets of partition {} of '{topic}'",
                    answer.partition_index
                )
            },
            answer.error_code,
        )?;
        offsets.insert(answer.partition_index, answer.offset);
    }
    if let Some(missing) = partitions
        .iter()
        .find(|p| !offsets.contains_key(&p.partition))
    {
        return Err(BenchError::Cluster(format!(
            "the ListOffsets answer of {} has no partition {}",
            connection.address(),
            missing.partition
        )));
    }
    Ok(offsets)
}

/// What every leader's run shares.
struct Plan {
    topic: String,
    topic_id: Uuid,
    max_wait_ms: i32,
    max_bytes: i32,
    /// `--messages`, if given.
    wanted: Option<u64>,
    /// Records read so far, by all connections.
    consumed: AtomicU64,
    deadline: Instant,
}

/// Where one partition's reading stands.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionFetch {
    partition: i32,
    leader_epoch: i32,
    /// The next offset to fetch.
    offset: i64,
    /// Stop at this offset (the high watermark at the start), when no count was given.
    end: Option<i64>,
    /// Reached `end`, or failed.
    done: bool,
}

/// The figures of one leader connection (and, merged, of the run).
struct LeaderOutcome {
    messages: u64,
    batch_bytes: u64,
    requests: u64,
    latency: LatencyHistogram,
    errors: BTreeMap<String, u64>,
    stopped: StopReason,
    notes: Vec<String>,
}

impl LeaderOutcome {
    fn new() -> Result<Self, BenchError> {
        Ok(LeaderOutcome {
            messages: 0,
            batch_bytes: 0,
            requests: 0,
            latency: LatencyHistogram::new()?,
            errors: BTreeMap::new(),
            stopped: StopReason::Completed,
            notes: Vec::new(),
        })
    }

    fn error(&mut self, name: impl Into<String>) {
        *self.errors.entry(name.into()).or_default() += 1;
    }

    fn merge(&mut self, other: LeaderOutcome) {
        self.messages += other.messages;
        self.batch_bytes += other.batch_bytes;
        self.requests += other.requests;
        self.latency.merge(&other.latency);
        for (name, count) in other.errors {
            *self.errors.entry(name).or_default() += count;
        }
        self.stopped = self.stopped.worst(other.stopped);
        self.notes.extend(other.notes);
    }
}

/// Fetches from one leader until the count is reached, every partition is done, or time runs out.
async fn fetch_from_leader(
    mut connection: KafkaConnection,
    version: i16,
    mut partitions: Vec<PartitionFetch>,
    plan: &Plan,
) -> Result<LeaderOutcome, BenchError> {
    let mut outcome = LeaderOutcome::new()?;
    for p in partitions.iter_mut() {
        p.done = p.end.is_some_and(|end| p.offset >= end);
    }
    loop {
        if plan
            .wanted
            .is_some_and(|wanted| plan.consumed.load(Ordering::Acquire) >= wanted)
        {
            break;
        }
        if partitions.iter().all(|p| p.done) {
            break;
        }
        let request = fetch_request(plan, version, &partitions);
        let sent_at = Instant::now();
        let response = match connection.call(&request, version, plan.deadline).await {
            Ok(response) => response,
            Err(KafkaError::Timeout { .. }) => {
                outcome.stopped = StopReason::Timeout;
                break;
            }
            Err(error) => {
                outcome.error(match &error {
                    KafkaError::Protocol { reason, .. } => format!("PROTOCOL: {reason}"),
                    other => format!("CONNECTION: {other}"),
                });
                outcome.stopped = StopReason::ConnectionFailed;
                break;
            }
        };
        outcome.latency.record(sent_at.elapsed());
        outcome.requests += 1;
        if response.error_code != 0 {
            outcome.error(error_name(response.error_code));
            outcome.stopped = StopReason::ConnectionFailed;
            break;
        }
        let read = apply_fetch(&response, &mut partitions, &mut outcome);
        plan.consumed.fetch_add(read, Ordering::AcqRel);
    }
    Ok(outcome)
}

fn fetch_request(plan: &Plan, version: i16, partitions: &[PartitionFetch]) -> FetchRequest {
    let positions = partitions
        .iter()
        .filter(|p| !p.done)
        .map(|p| FetchPosition {
            partition: p.partition,
            leader_epoch: p.leader_epoch,
            offset: p.offset,
        });
    fetch::fetch_request(
        &plan.topic,
        plan.topic_id,
        version,
        positions,
        plan.max_wait_ms,
        plan.max_bytes,
    )
}

/// Counts the records of a Fetch answer and moves each partition's offset on; returns the records read.
fn apply_fetch(
    response: &FetchResponse,
    partitions: &mut [PartitionFetch],
    outcome: &mut LeaderOutcome,
) -> u64 {
    let mut read = 0;
    for data in response.responses.iter().flat_map(|t| t.partitions.iter()) {
        let Some(state) = partitions
            .iter_mut()
            .find(|p| p.partition == data.partition_index)
        else {
            outcome.error("UNREQUESTED_PARTITION_IN_ANSWER");
            continue;
        };
        if data.error_code != 0 {
            // No retries: the partition stops, and the error is reported.
            outcome.error(error_name(data.error_code));
            state.done = true;
            continue;
        }
        let records = data.records.as_deref().unwrap_or_default();
        match tally_batches(records) {
            Ok(tally) => {
                if tally.batches == 0 && !records.is_empty() {
                    // Only part of one batch fitted: the broker broke KIP-74, this would spin.
                    outcome.error("PARTIAL_BATCH_ONLY");
                    outcome.notes.push(format!(
                        "partition {} at offset {}: the Fetch answer held {} bytes but no whole \
                         batch (a first batch larger than the limit must be returned whole)",
                        state.partition,
                        state.offset,
                        records.len()
                    ));
                    state.done = true;
                    continue;
                }
                if let Some(next) = tally.next_offset {
                    if next <= state.offset {
                        outcome.error("OFFSET_WENT_BACKWARDS");
                        state.done = true;
                        continue;
                    }
                    state.offset = next;
                }
                outcome.messages += tally.records;
                outcome.batch_bytes += tally.bytes;
                read += tally.records;
            }
            Err(reason) => {
                outcome.error(format!("BAD_BATCH: {reason}"));
                state.done = true;
                continue;
            }
        }
        if state.end.is_some_and(|end| state.offset >= end) {
            state.done = true;
        }
    }
    read
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::records::testing::log;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::records::Compression;

    #[test]
    fn fetch_answers_move_offsets_and_stop_at_the_end() {
        let mut partitions = vec![
            PartitionFetch {
                partition: 0,
                leader_epoch: 1,
                offset: 0,
                end: Some(14),
                done: false,
            },
            PartitionFetch {
                partition: 1,
                leader_epoch: 1,
                offset: 0,
                end: Some(100),
                done: false,
            },
        ];
        let response =
            FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                .with_partitions(vec![
                    PartitionData::default()
                        .with_partition_index(0)
                        .with_records(Some(log(&[4, 10], Compression::None).freeze())),
                    PartitionData::default()
                        .with_partition_index(1)
                        .with_error_code(6),
                ])]);
        let mut outcome = LeaderOutcome::new().expect("histogram");
        assert_eq!(apply_fetch(&response, &mut partitions, &mut outcome), 14);
        assert_eq!(partitions[0].offset, 14);
        assert!(partitions[0].done, "reached the end offset");
        assert!(partitions[1].done, "failed");
        assert_eq!(outcome.errors.get("NOT_LEADER_OR_FOLLOWER"), Some(&1));
        assert_eq!(outcome.messages, 14);
    }

    #[test]
    fn fetch_requests_name_the_topic_or_its_id_by_version() {
        let plan = Plan {
            topic: "bench".into(),
            topic_id: Uuid::from_u128(7),
            max_wait_ms: 500,
            max_bytes: 1 << 20,
            wanted: None,
            consumed: AtomicU64::new(0),
            deadline: Instant::now(),
        };
        let partitions = vec![
            PartitionFetch {
                partition: 0,
                leader_epoch: 2,
                offset: 40,
                end: None,
                done: false,
            },
            PartitionFetch {
                partition: 1,
                leader_epoch: 2,
                offset: 0,
                end: None,
                done: true,
            },
        ];
        let by_name = fetch_request(&plan, 12, &partitions);
        assert_eq!(by_name.topics[0].topic.0.as_str(), "bench");
        assert!(by_name.topics[0].topic_id.is_nil());
        assert_eq!(
            by_name.topics[0].partitions.len(),
            1,
            "done partitions are left out"
        );
        assert_eq!(by_name.topics[0].partitions[0].fetch_offset, 40);
        // The rest of the request is `kafka::fetch`'s, tested there.
    }
}
