//! A small Kafka producer for `chronikctl topic produce`: each call of [`Producer::send`] writes one
//! RecordBatch v2 per partition, all of a leader's partitions in one Produce request, and waits for
//! the answers. Answers that a leader change explains (NOT_LEADER_OR_FOLLOWER, a broken connection,
//! NOT_ENOUGH_REPLICAS...) are retried with the same bytes after a fresh look at the metadata
//! ([`LeaderRouter`]), until the retry deadline; any other answer fails only its partition's records.
//!
//! Idempotence (Kafka's `enable.idempotence`, KIP-98) is on by default with acks=all: InitProducerId
//! gives a producer id, and each partition's batches carry consecutive sequence numbers, so a retried
//! batch that the broker had already appended is recognised and answered with its original offset
//! instead of being written twice.
//!
//! What must stay true: a retry resends the very batch (same sequence) that may already be written;
//! after a batch failed for good its sequence is unknown, so the producer takes a new producer id
//! (sequences start again at 0) before writing more; with acks=0 nothing is answered, so offsets are
//! unknown and a final ApiVersions round trip on each connection shows the broker has read every
//! request before the producer reports success.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiVersionsRequest, InitProducerIdRequest, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record};
use tracing::debug;

use super::leader_router::{LeaderRouter, Retry};
use super::records::{batch_record, encode_batch, ProducerIdentity, BATCH_HEADER_BYTES};
use super::topic::{is_leader_retriable, PartitionSelection};
use super::{error_name, KafkaError};

/// Produce versions this client speaks: record batches v2 from v3, zstd from v7.
const PRODUCE_VERSIONS: (i16, i16) = (3, 11);
/// The first Produce version that may carry zstd batches.
const ZSTD_MIN_PRODUCE_VERSION: i16 = 7;
/// InitProducerId versions (v3 adds the current producer id and epoch, unused here).
const INIT_PRODUCER_ID_VERSIONS: std::ops::RangeInclusive<i16> = 0..=4;

/// NOT_ENOUGH_REPLICAS and NOT_ENOUGH_REPLICAS_AFTER_APPEND: the ISR is short for now.
const NOT_ENOUGH_REPLICAS: i16 = 19;
const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
/// UNKNOWN_TOPIC_OR_PARTITION, which a broker that has not seen a new topic yet answers.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// DUPLICATE_SEQUENCE_NUMBER: the batch was written before (its offset is no longer known).
const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;

/// How a [`Producer`] writes.
#[derive(Debug, Clone, Copy)]
pub struct ProducerConfig {
    /// -1 (all in-sync replicas), 1 (the leader) or 0 (no answer).
    pub acks: i16,
    /// Idempotent writes; only with acks=all.
    pub idempotent: bool,
    /// The batches' codec.
    pub compression: Compression,
    /// How long one request may take, and the Produce request's TimeoutMs.
    pub request_timeout: Duration,
    /// How long one `send` keeps retrying retriable answers.
    pub retry_timeout: Duration,
}

/// One record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRecord {
    /// The key, if any.
    pub key: Option<Bytes>,
    /// The value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// The create time, in milliseconds since the epoch.
    pub timestamp_ms: i64,
}

/// What became of one partition's records in one `send`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Written; the offset of the first record when the broker said it (not with acks=0, nor for a
    /// duplicate it no longer remembers).
    Written {
        /// The first record's offset.
        base_offset: Option<i64>,
    },
    /// Not written (or, after a timeout, not known to be written).
    Failed {
        /// The Kafka error name or the connection failure.
        error: String,
    },
}

/// A producer to one topic.
#[derive(Debug)]
pub struct Producer {
    router: LeaderRouter,
    config: ProducerConfig,
    identity: ProducerIdentity,
    next_sequence: BTreeMap<i32, i32>,
    /// Brokers written to with acks=0 since the last check that they read everything.
    unconfirmed: Vec<i32>,
}

impl Producer {
    /// Finds the topic's leaders (every partition) and, when idempotent, a producer id.
    pub async fn connect(
        bootstrap_servers: &[String],
        topic: &str,
        config: ProducerConfig,
    ) -> Result<Self, KafkaError> {
        let retry = Retry::within(config.retry_timeout);
        let router = LeaderRouter::connect(
            bootstrap_servers,
            topic,
            PartitionSelection::All,
            config.request_timeout,
            retry.deadline(),
        )
        .await?;
        let mut producer = Producer {
            router,
            config,
            identity: ProducerIdentity::NONE,
            next_sequence: BTreeMap::new(),
            unconfirmed: Vec::new(),
        };
        if producer.is_idempotent() {
            producer.init_producer_id().await?;
        }
        Ok(producer)
    }

    /// How many partitions the topic has.
    pub fn partition_count(&self) -> i32 {
        self.router.layout().partition_count
    }

    /// The producer id and epoch (-1 without idempotence).
    pub fn identity(&self) -> ProducerIdentity {
        self.identity
    }

    fn is_idempotent(&self) -> bool {
        self.config.idempotent && self.config.acks == -1
    }

    /// Writes `records` (by partition, each partition's in order) and returns each partition's
    /// outcome. Only a failure to find the topic at all is an error; everything else is an outcome.
    pub async fn send(
        &mut self,
        records: &BTreeMap<i32, Vec<OutgoingRecord>>,
    ) -> Result<BTreeMap<i32, BatchOutcome>, KafkaError> {
        let mut outcomes = BTreeMap::new();
        let mut pending: BTreeMap<i32, (Bytes, i32)> = BTreeMap::new();
        for (&partition, batch) in records {
            if batch.is_empty() {
                continue;
            }
            if self.router.leader(partition).is_none() {
                outcomes.insert(
                    partition,
                    BatchOutcome::Failed {
                        error: KafkaError::UnknownPartition {
                            topic: self.router.layout().topic.clone(),
                            partition,
                            partitions: self.partition_count().max(0) as usize,
                        }
                        .to_string(),
                    },
                );
                continue;
            }
            let count = i32::try_from(batch.len()).unwrap_or(i32::MAX);
            match self.encode(partition, batch) {
                Ok(bytes) => {
                    pending.insert(partition, (bytes, count));
                }
                Err(error) => {
                    outcomes.insert(partition, BatchOutcome::Failed { error });
                }
            }
        }
        let mut retry = Retry::within(self.config.retry_timeout);
        let mut last = String::new();
        while !pending.is_empty() {
            let mut stale = false;
            for (leader, partitions) in self.router.by_leader(pending.keys().copied()) {
                let batches: Vec<(i32, Bytes)> = partitions
                    .iter()
                    .filter_map(|p| pending.get(p).map(|(bytes, _)| (*p, bytes.clone())))
                    .collect();
                match self.produce_to(leader, &batches).await {
                    Ok(None) => {
                        for partition in partitions {
                            pending.remove(&partition);
                            outcomes.insert(partition, BatchOutcome::Written { base_offset: None });
                        }
                    }
                    Ok(Some(response)) => {
                        for partition in partitions {
                            match partition_answer(&response, partition) {
                                Ok(base_offset) => {
                                    if let Some((_, count)) = pending.remove(&partition) {
                                        self.advance(partition, count);
                                    }
                                    outcomes
                                        .insert(partition, BatchOutcome::Written { base_offset });
                                }
                                Err(code) if is_produce_retriable(code) => {
                                    stale = true;
                                    last = format!("partition {partition}: {}", error_name(code));
                                }
                                Err(code) => {
                                    pending.remove(&partition);
                                    outcomes.insert(
                                        partition,
                                        BatchOutcome::Failed {
                                            error: error_name(code),
                                        },
                                    );
                                }
                            }
                        }
                    }
                    Err(error) if error.is_unreachable() => {
                        stale = true;
                        last = error.to_string();
                    }
                    Err(error) => {
                        for partition in partitions {
                            pending.remove(&partition);
                            outcomes.insert(
                                partition,
                                BatchOutcome::Failed {
                                    error: error.to_string(),
                                },
                            );
                        }
                    }
                }
            }
            if pending.is_empty() || !stale {
                break;
            }
            debug!(topic = %self.router.layout().topic, %last, "retrying Produce after leader trouble");
            if let Err(error) = retry
                .pause("the partition leaders to take the records", &last)
                .await
            {
                last = error.to_string();
                break;
            }
            if let Err(error) = self.router.refresh(retry.deadline()).await {
                if matches!(error, KafkaError::UnknownTopic { .. }) {
                    return Err(error);
                }
                last = error.to_string();
            }
        }
        let failed_for_good = !pending.is_empty()
            || outcomes
                .values()
                .any(|o| matches!(o, BatchOutcome::Failed { .. }));
        for partition in pending.into_keys() {
            outcomes.insert(
                partition,
                BatchOutcome::Failed {
                    error: format!("not acknowledged in time ({last})"),
                },
            );
        }
        if failed_for_good && self.is_idempotent() {
            // A batch that failed may or may not be in the log: its sequence is unknown, so later
            // batches under this producer id could be refused or taken for duplicates.
            self.init_producer_id().await?;
        }
        Ok(outcomes)
    }

    /// With acks=0: waits until every broker written to has read every request (an ApiVersions
    /// round trip on the same connection, answered in order). With acks≠0 there is nothing to wait for.
    pub async fn flush(&mut self) -> Result<(), KafkaError> {
        for broker in std::mem::take(&mut self.unconfirmed) {
            self.router
                .pool()
                .call(broker, 0..=0, |_| ApiVersionsRequest::default())
                .await?;
        }
        Ok(())
    }

    /// One batch of `records` for `partition`, with the partition's next sequence when idempotent.
    fn encode(&self, partition: i32, records: &[OutgoingRecord]) -> Result<Bytes, String> {
        let base_sequence = if self.is_idempotent() {
            self.next_sequence.get(&partition).copied().unwrap_or(0)
        } else {
            -1
        };
        let batch: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(delta, record)| {
                batch_record(
                    self.identity,
                    base_sequence,
                    delta as i32,
                    record.timestamp_ms,
                    record.key.clone(),
                    record.value.clone(),
                    &record.headers,
                )
            })
            .collect();
        let size: usize = records
            .iter()
            .map(|r| r.key.as_ref().map_or(0, Bytes::len) + r.value.as_ref().map_or(0, Bytes::len))
            .sum();
        let mut buffer = BytesMut::with_capacity(BATCH_HEADER_BYTES + size + 16 * records.len());
        encode_batch(&mut buffer, &batch, self.config.compression)?;
        Ok(buffer.freeze())
    }

    fn advance(&mut self, partition: i32, count: i32) {
        if self.is_idempotent() {
            let next = self.next_sequence.entry(partition).or_insert(0);
            // Sequences wrap at i32::MAX, as Kafka's do.
            *next = next.wrapping_add(count) & i32::MAX;
        }
    }

    /// One Produce request with `batches` to `leader`; `None` with acks=0.
    async fn produce_to(
        &mut self,
        leader: i32,
        batches: &[(i32, Bytes)],
    ) -> Result<Option<ProduceResponse>, KafkaError> {
        let topic = TopicName(StrBytes::from_string(self.router.layout().topic.clone()));
        let min = if self.config.compression == Compression::Zstd {
            ZSTD_MIN_PRODUCE_VERSION
        } else {
            PRODUCE_VERSIONS.0
        };
        let acks = self.config.acks;
        let timeout_ms = i32::try_from(self.config.request_timeout.as_millis()).unwrap_or(i32::MAX);
        let build = |_| {
            ProduceRequest::default()
                .with_acks(acks)
                .with_timeout_ms(timeout_ms)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(topic.clone())
                    .with_partition_data(
                        batches
                            .iter()
                            .map(|(partition, bytes)| {
                                PartitionProduceData::default()
                                    .with_index(*partition)
                                    .with_records(Some(bytes.clone()))
                            })
                            .collect(),
                    )])
        };
        let versions = min..=PRODUCE_VERSIONS.1;
        if acks == 0 {
            self.router.pool().send(leader, versions, build).await?;
            if !self.unconfirmed.contains(&leader) {
                self.unconfirmed.push(leader);
            }
            return Ok(None);
        }
        let (_, response) = self.router.pool().call(leader, versions, build).await?;
        Ok(Some(response))
    }

    /// Asks any broker for a new producer id; sequences start again at 0.
    async fn init_producer_id(&mut self) -> Result<(), KafkaError> {
        let mut retry = Retry::within(self.config.retry_timeout);
        let timeout_ms = i32::try_from(self.config.request_timeout.as_millis()).unwrap_or(i32::MAX);
        let brokers: Vec<i32> = self.router.layout().brokers.keys().copied().collect();
        let mut turn = 0usize;
        loop {
            let Some(&broker) = brokers.get(turn % brokers.len().max(1)) else {
                return Err(KafkaError::NoBootstrapServer);
            };
            turn += 1;
            let last = match self
                .router
                .pool()
                .call(broker, INIT_PRODUCER_ID_VERSIONS, |_| {
                    InitProducerIdRequest::default()
                        .with_transactional_id(None)
                        .with_transaction_timeout_ms(timeout_ms)
                })
                .await
            {
                Ok((_, answer)) if answer.error_code == 0 => {
                    self.identity = ProducerIdentity {
                        producer_id: answer.producer_id.0,
                        producer_epoch: answer.producer_epoch,
                    };
                    self.next_sequence.clear();
                    return Ok(());
                }
                // COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR, and
                // the leader-change codes: ask again.
                Ok((_, answer))
                    if matches!(answer.error_code, 14..=16)
                        || is_leader_retriable(answer.error_code) =>
                {
                    error_name(answer.error_code)
                }
                Ok((_, answer)) => {
                    return Err(KafkaError::broker(
                        format!("InitProducerId on broker {broker}"),
                        answer.error_code,
                    ))
                }
                Err(error) if error.is_unreachable() => error.to_string(),
                Err(error) => return Err(error),
            };
            retry.pause("a producer id", &last).await?;
        }
    }
}

/// The error code and base offset a Produce answer gives `partition`, if it mentions it.
pub fn produce_answer(response: &ProduceResponse, partition: i32) -> Option<(i16, i64)> {
    response
        .responses
        .iter()
        .flat_map(|topic| topic.partition_responses.iter())
        .find(|p| p.index == partition)
        .map(|p| (p.error_code, p.base_offset))
}

/// The acknowledged base offset of `partition` (`None` for a duplicate whose offset is no longer
/// known), or the error code answered.
fn partition_answer(response: &ProduceResponse, partition: i32) -> Result<Option<i64>, i16> {
    // An answer without the partition: as good as a lost connection, ask again.
    match produce_answer(response, partition).ok_or(NOT_ENOUGH_REPLICAS)? {
        (0, base_offset) => Ok(Some(base_offset)),
        (DUPLICATE_SEQUENCE_NUMBER, _) => Ok(None),
        (code, _) => Err(code),
    }
}

/// Produce answers worth retrying after a fresh look at the metadata.
fn is_produce_retriable(code: i16) -> bool {
    is_leader_retriable(code)
        || matches!(
            code,
            NOT_ENOUGH_REPLICAS | NOT_ENOUGH_REPLICAS_AFTER_APPEND | UNKNOWN_TOPIC_OR_PARTITION
        )
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), the hash of its default
/// partitioner.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, &byte) in rest.iter().enumerate().rev() {
            h ^= u32::from(byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner gives a keyed record: murmur2 of the key, made
/// positive, modulo the partition count.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Test helpers, for this crate's tests and (with the `testing` feature) its users' tests.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::ProduceResponse;

    /// A Produce answer for partition 2 with `code` and base offset 40.
    pub fn response(code: i16) -> ProduceResponse {
        ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
            .with_partition_responses(vec![PartitionProduceResponse::default()
                .with_index(2)
                .with_error_code(code)
                .with_base_offset(40)])])
    }
}

#[cfg(test)]
mod tests {
    use super::testing::response;
    use super::*;

    #[test]
    fn answers_give_the_offset_a_duplicate_or_the_code() {
        assert_eq!(partition_answer(&response(0), 2), Ok(Some(40)));
        assert_eq!(partition_answer(&response(46), 2), Ok(None));
        assert_eq!(partition_answer(&response(6), 2), Err(6));
        assert_eq!(partition_answer(&response(0), 3), Err(NOT_ENOUGH_REPLICAS));
    }

    #[test]
    fn murmur2_is_kafkas() {
        // The vectors of Kafka's UtilsTest.testMurmur2.
        for (data, hash) in [
            (&b"21"[..], -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ] {
            assert_eq!(murmur2(data), hash, "{}", String::from_utf8_lossy(data));
        }
        assert_eq!(
            partition_for_key(b"foobar", 3),
            (-790_332_482i32 & 0x7fff_ffff) % 3
        );
    }

    #[test]
    fn only_leader_and_replica_trouble_is_retried() {
        for code in [3, 5, 6, 7, 19, 20, 56, 74, 75] {
            assert!(is_produce_retriable(code), "{code}");
        }
        // CORRUPT_MESSAGE, MESSAGE_TOO_LARGE, INVALID_RECORD, OUT_OF_ORDER_SEQUENCE_NUMBER,
        // INVALID_PRODUCER_EPOCH, TOPIC_AUTHORIZATION_FAILED.
        for code in [2, 10, 87, 45, 47, 29] {
            assert!(!is_produce_retriable(code), "{code}");
        }
    }
}
