//! Reading records: [`fetch_request`] builds the Fetch of a consumer without a fetch session (shared
//! with `bench consume`), and [`Fetcher`] reads assigned partitions from their leaders for
//! `topic consume`, decoding every codec ([`decode_batches`]) and following leadership as it moves
//! ([`LeaderRouter`]).
//!
//! What must stay true: records come back in offset order per partition, each exactly once, never one
//! below its partition's position (a Fetch may return a whole batch that starts earlier) nor at or past
//! its end; a position only moves forward; leader changes and broken connections are retried after a
//! fresh look at the metadata until the retry timeout passes without any Fetch answered, while any
//! other per-partition error (OFFSET_OUT_OF_RANGE...) ends the read with that error.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Record;
use tracing::debug;
use uuid::Uuid;

use super::admin::offsets_from_leaders;
use super::leader_router::{LeaderRouter, Retry};
use super::records::decode_batches;
use super::topic::{is_leader_retriable, PartitionSelection};
use super::{error_name, KafkaError};

/// Fetch versions this client speaks; v13+ address topics by id, so they need one.
pub const FETCH_VERSIONS: (i16, i16) = (4, 17);
/// The last Fetch version that addresses topics by name.
pub const FETCH_BY_NAME_MAX_VERSION: i16 = 12;

/// ListOffsets timestamps meaning "log start" and "high watermark".
pub const EARLIEST_TIMESTAMP: i64 = -2;
pub const LATEST_TIMESTAMP: i64 = -1;

/// Where one partition is to be fetched from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPosition {
    /// The partition index.
    pub partition: i32,
    /// The leader epoch the fetcher believes current (-1: unknown).
    pub leader_epoch: i32,
    /// The next offset to fetch.
    pub offset: i64,
}

/// A consumer's Fetch (ReplicaId -1, no fetch session) of `positions` of one topic, by name below
/// v13 and by id from v13.
pub fn fetch_request(
    topic: &str,
    topic_id: Uuid,
    version: i16,
    positions: impl IntoIterator<Item = FetchPosition>,
    max_wait_ms: i32,
    max_bytes: i32,
) -> FetchRequest {
    let mut fetch_topic = FetchTopic::default().with_partitions(
        positions
            .into_iter()
            .map(|p| {
                FetchPartition::default()
                    .with_partition(p.partition)
                    .with_current_leader_epoch(p.leader_epoch)
                    .with_fetch_offset(p.offset)
                    .with_partition_max_bytes(max_bytes)
            })
            .collect(),
    );
    if version > FETCH_BY_NAME_MAX_VERSION {
        fetch_topic.topic_id = topic_id;
    } else {
        fetch_topic.topic = TopicName(StrBytes::from_string(topic.to_owned()));
    }
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![fetch_topic])
}

/// How a [`Fetcher`] fetches.
#[derive(Debug, Clone, Copy)]
pub struct FetcherConfig {
    /// How long a broker may hold a Fetch that has no data yet.
    pub max_wait_ms: i32,
    /// MaxBytes of each Fetch and each partition's limit.
    pub max_bytes: i32,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// How long leader trouble is retried without any Fetch answered.
    pub retry_timeout: Duration,
}

/// One record read, with its partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecord {
    /// The partition index.
    pub partition: i32,
    /// The record (its `offset` is absolute).
    pub record: Record,
}

/// Where one assigned partition stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    offset: i64,
    /// Stop before this offset; `None` reads on forever.
    end: Option<i64>,
}

impl Cursor {
    fn is_done(&self) -> bool {
        self.end.is_some_and(|end| self.offset >= end)
    }
}

/// Reads assigned partitions of one topic from their leaders.
#[derive(Debug)]
pub struct Fetcher {
    router: LeaderRouter,
    config: FetcherConfig,
    cursors: BTreeMap<i32, Cursor>,
    /// The retry budget of the trouble under way, if any.
    retry: Option<Retry>,
}

impl Fetcher {
    /// Finds the leaders of the selected partitions of `topic`; nothing is assigned yet.
    pub async fn connect(
        bootstrap_servers: &[String],
        topic: &str,
        selection: PartitionSelection,
        config: FetcherConfig,
    ) -> Result<Self, KafkaError> {
        let retry = Retry::within(config.retry_timeout);
        let router = LeaderRouter::connect(
            bootstrap_servers,
            topic,
            selection,
            config.request_timeout,
            retry.deadline(),
        )
        .await?;
        Ok(Fetcher {
            router,
            config,
            cursors: BTreeMap::new(),
            retry: None,
        })
    }

    /// The selected partitions, ascending.
    pub fn partitions(&self) -> Vec<i32> {
        self.router
            .layout()
            .partitions
            .iter()
            .map(|p| p.partition)
            .collect()
    }

    /// How many partitions the topic has.
    pub fn partition_count(&self) -> i32 {
        self.router.layout().partition_count
    }

    /// Every broker of the cluster, by id, as the metadata lists them.
    pub fn brokers(&self) -> BTreeMap<i32, String> {
        self.router.layout().brokers.clone()
    }

    /// What ListOffsets answers for `timestamp` (-2 earliest, -1 latest, or milliseconds) on each of
    /// `partitions`, from their leaders, retrying leader changes; -1 where no record is that recent.
    pub async fn offsets_at(
        &mut self,
        partitions: &[i32],
        timestamp: i64,
    ) -> Result<BTreeMap<i32, i64>, KafkaError> {
        let topic = self.router.layout().topic.clone();
        let mut retry = Retry::within(self.config.retry_timeout);
        let mut found = BTreeMap::new();
        loop {
            let wanted = partitions
                .iter()
                .copied()
                .filter(|p| !found.contains_key(p));
            let by_leader = self.router.by_leader(wanted);
            let trouble =
                offsets_from_leaders(self.router.pool(), &topic, by_leader, timestamp, &mut found)
                    .await?;
            if partitions.iter().all(|p| found.contains_key(p)) {
                return Ok(found);
            }
            let last = trouble.unwrap_or_else(|| "no answer for some partitions".to_owned());
            retry
                .pause(&format!("the offsets of '{topic}'"), &last)
                .await?;
            self.router.refresh(retry.deadline()).await?;
        }
    }

    /// Reads `partition` from `offset`, stopping before `end` (`None`: never stops).
    pub fn assign(&mut self, partition: i32, offset: i64, end: Option<i64>) {
        self.cursors.insert(partition, Cursor { offset, end });
    }

    /// Stops reading `partition`.
    pub fn unassign(&mut self, partition: i32) {
        self.cursors.remove(&partition);
    }

    /// The next offset of every assigned partition.
    pub fn positions(&self) -> BTreeMap<i32, i64> {
        self.cursors.iter().map(|(&p, c)| (p, c.offset)).collect()
    }

    /// Whether every assigned partition reached its end.
    pub fn is_done(&self) -> bool {
        self.cursors.values().all(Cursor::is_done)
    }

    /// One round: a Fetch to the leader of every assigned partition that has not reached its end.
    /// Returns the records read, by partition and offset. Leader trouble is retried in later rounds;
    /// it is an error only once it lasted the whole retry timeout.
    pub async fn poll(&mut self) -> Result<Vec<FetchedRecord>, KafkaError> {
        let active: Vec<i32> = self
            .cursors
            .iter()
            .filter(|(_, c)| !c.is_done())
            .map(|(&p, _)| p)
            .collect();
        let layout = self.router.layout();
        let (topic, topic_id) = (layout.topic.clone(), layout.topic_id);
        let max_version = if topic_id.is_nil() {
            FETCH_BY_NAME_MAX_VERSION
        } else {
            FETCH_VERSIONS.1
        };
        let mut fetched = Vec::new();
        let mut trouble = None;
        for (leader, partitions) in self.router.by_leader(active) {
            let positions: Vec<FetchPosition> = partitions
                .iter()
                .filter_map(|&partition| {
                    let cursor = self.cursors.get(&partition)?;
                    let (_, leader_epoch) = self.router.leader(partition)?;
                    Some(FetchPosition {
                        partition,
                        leader_epoch,
                        offset: cursor.offset,
                    })
                })
                .collect();
            let (max_wait_ms, max_bytes) = (self.config.max_wait_ms, self.config.max_bytes);
            let answer = self
                .router
                .pool()
                .call(leader, FETCH_VERSIONS.0..=max_version, |version| {
                    fetch_request(
                        &topic,
                        topic_id,
                        version,
                        positions.iter().copied(),
                        max_wait_ms,
                        max_bytes,
                    )
                })
                .await;
            match answer {
                Ok((_, response)) => {
                    if let Some(last) =
                        take_records(&mut self.cursors, &topic, &response, &mut fetched)?
                    {
                        trouble = Some(last);
                    }
                }
                Err(error) if error.is_unreachable() => trouble = Some(error.to_string()),
                Err(error) => return Err(error),
            }
        }
        match trouble {
            None => self.retry = None,
            Some(last) => {
                debug!(%topic, %last, "retrying Fetch after leader trouble");
                let retry = self
                    .retry
                    .get_or_insert_with(|| Retry::within(self.config.retry_timeout));
                retry
                    .pause(&format!("the partition leaders of '{topic}'"), &last)
                    .await?;
                let deadline = retry.deadline();
                self.router.refresh(deadline).await?;
            }
        }
        Ok(fetched)
    }
}

/// Takes the records of one Fetch answer and moves the cursors on; returns the leader trouble it
/// reports, if any.
fn take_records(
    cursors: &mut BTreeMap<i32, Cursor>,
    topic: &str,
    response: &FetchResponse,
    fetched: &mut Vec<FetchedRecord>,
) -> Result<Option<String>, KafkaError> {
    if response.error_code != 0 {
        return Err(KafkaError::broker(
            format!("Fetch of '{topic}'"),
            response.error_code,
        ));
    }
    let mut trouble = None;
    for data in response.responses.iter().flat_map(|t| t.partitions.iter()) {
        let partition = data.partition_index;
        let Some(cursor) = cursors.get_mut(&partition) else {
            continue;
        };
        if is_leader_retriable(data.error_code) {
            trouble = Some(format!(
                "partition {partition}: {}",
                error_name(data.error_code)
            ));
            continue;
        }
        if data.error_code != 0 {
            return Err(KafkaError::broker(
                format!(
                    "Fetch of partition {partition} of '{topic}' at offset {}",
                    cursor.offset
                ),
                data.error_code,
            ));
        }
        let Some(records) = data.records.as_ref().filter(|r| !r.is_empty()) else {
            continue;
        };
        let decoded = decode_batches(records).map_err(|reason| {
            KafkaError::UnexpectedAnswer(format!(
                "partition {partition} of '{topic}' at offset {}: {reason}",
                cursor.offset
            ))
        })?;
        let Some(next_offset) = decoded.next_offset else {
            // Only part of one batch: the broker broke KIP-74 (a first batch larger than the
            // limit must come whole); fetching again would spin.
            return Err(KafkaError::UnexpectedAnswer(format!(
                "the Fetch answer for partition {partition} of '{topic}' at offset {} held {} \
                     bytes but no whole batch",
                cursor.offset,
                records.len()
            )));
        };
        for record in decoded.records {
            if record.offset < cursor.offset || cursor.end.is_some_and(|end| record.offset >= end) {
                continue;
            }
            fetched.push(FetchedRecord { partition, record });
        }
        let next = match cursor.end {
            Some(end) => next_offset.min(end),
            None => next_offset,
        };
        cursor.offset = cursor.offset.max(next);
    }
    Ok(trouble)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::Compression;

    #[test]
    fn fetches_address_topics_by_name_then_by_id() {
        let positions = [FetchPosition {
            partition: 0,
            leader_epoch: 2,
            offset: 40,
        }];
        let by_name = fetch_request("t", Uuid::from_u128(7), 12, positions, 500, 1 << 20);
        assert_eq!(by_name.topics[0].topic.0.as_str(), "t");
        assert!(by_name.topics[0].topic_id.is_nil());
        assert_eq!(by_name.topics[0].partitions[0].fetch_offset, 40);
        assert_eq!(by_name.topics[0].partitions[0].current_leader_epoch, 2);
        assert_eq!((by_name.session_id, by_name.session_epoch), (0, -1));
        let by_id = fetch_request("t", Uuid::from_u128(7), 13, positions, 500, 1 << 20);
        assert_eq!(by_id.topics[0].topic_id, Uuid::from_u128(7));
        for (request, version) in [(by_name, 12), (by_id, 16)] {
            let mut buffer = BytesMut::new();
            chronik_wire::encode_request(
                &mut buffer,
                &request,
                version,
                1,
                super::super::CLIENT_ID,
            )
            .expect("encodes");
        }
    }

    fn answer(partition: i32, code: i16, records: Option<bytes::Bytes>) -> FetchResponse {
        use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_partitions(vec![PartitionData::default()
                .with_partition_index(partition)
                .with_error_code(code)
                .with_records(records)])])
    }

    #[test]
    fn records_below_the_position_or_at_the_end_are_skipped() {
        let log = crate::records::testing::log(&[4, 6], Compression::Lz4).freeze();
        let mut cursors = BTreeMap::from([(
            0,
            Cursor {
                offset: 2,
                end: Some(7),
            },
        )]);
        let mut fetched = Vec::new();
        let trouble = take_records(&mut cursors, "t", &answer(0, 0, Some(log)), &mut fetched)
            .expect("decodes");
        assert_eq!(trouble, None);
        let offsets: Vec<i64> = fetched.iter().map(|f| f.record.offset).collect();
        assert_eq!(offsets, [2, 3, 4, 5, 6]);
        assert_eq!(
            cursors[&0],
            Cursor {
                offset: 7,
                end: Some(7)
            }
        );
        assert!(cursors[&0].is_done());
    }

    #[test]
    fn leader_trouble_is_reported_other_errors_end_the_read() {
        let mut cursors = BTreeMap::from([(
            0,
            Cursor {
                offset: 0,
                end: None,
            },
        )]);
        let mut fetched = Vec::new();
        let trouble = take_records(&mut cursors, "t", &answer(0, 6, None), &mut fetched);
        assert_eq!(
            trouble.expect("retriable").as_deref(),
            Some("partition 0: NOT_LEADER_OR_FOLLOWER")
        );
        let error = take_records(&mut cursors, "t", &answer(0, 1, None), &mut fetched)
            .expect_err("out of range");
        assert!(error.to_string().contains("OFFSET_OUT_OF_RANGE"), "{error}");
        assert!(fetched.is_empty());
    }

    #[test]
    fn cursors_are_done_at_their_end_only() {
        assert!(Cursor {
            offset: 5,
            end: Some(5)
        }
        .is_done());
        assert!(!Cursor {
            offset: 4,
            end: Some(5)
        }
        .is_done());
        assert!(!Cursor {
            offset: 500,
            end: None
        }
        .is_done());
    }
}
