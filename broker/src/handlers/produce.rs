//! Produce (key 0), served by partition leaders (Kafka's `ReplicaManager.appendRecords`). Each
//! partition's records must be exactly one v2 batch (v0–v2 may instead carry a legacy magic 0/1
//! message set, up-converted to one by `log::legacy` first); it is validated, appended as raw bytes and made
//! durable under the topic's flush policy before it is acknowledged. A broker that does not lead the
//! partition answers NOT_LEADER_OR_FOLLOWER with a KIP-951 hint (v10+). acks=0 gets no response; if such
//! a request fails, the connection is closed so the client refreshes its metadata.
//!
//! The log checks each record against the topic's rules (keys on compacted topics, CreateTime bounds,
//! see `crate::log::validator`); records refused one by one are listed in the response (KIP-467,
//! v8+) so clients fail exactly those.
//!
//! Idempotent producers' batches are checked by the log under its append lock (KIP-98, KIP-360): a retry
//! of a batch already written is answered NONE with the original base offset, and only once the original
//! is as durable and (acks=all) as committed as a fresh append would have to be; a stale epoch is
//! INVALID_PRODUCER_EPOCH (47) and a sequence gap OUT_OF_ORDER_SEQUENCE_NUMBER (45), both definitely not
//! appended.
//!
//! Transactional batches (KIP-98) need WRITE on the request's TransactionalId as well as on the topic;
//! without it every partition is TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as Kafka's `KafkaApis` answers.
//! The log opens the producer's transaction with its first transactional batch and refuses a plain
//! batch inside one (INVALID_TXN_STATE). Before that first batch the leader asks the transaction
//! coordinator whether the partition is in the transaction (KIP-890 part 1, see `txn_verifier`),
//! unless `--transaction-partition-verification-enable` is false; from v12 (transaction version 2,
//! KIP-890 part 2) it asks the coordinator to add the partition to the transaction instead, always,
//! since the producer no longer adds it.

use std::collections::HashMap;

use bytes::Bytes;
use chronik_metadata::acl::{AclOperation, ResourceType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::{
    BrokerId, ProduceRequest, ProduceResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::leader_hints::LeaderHints;
use super::{BrokerContext, Outcome, RequestContext};
use crate::log::batch::{Batches, Compression};
use crate::log::legacy;
use crate::log::{BatchHeader, LogError, VerificationGuard};
use crate::metrics::metrics;
use crate::replica::AppendError;
use crate::txn_verifier::{self, TxnCheck};

/// Why one partition's batch was not appended.
struct Refusal {
    error: ResponseError,
    message: Option<String>,
    /// The records refused one by one (KIP-467): `(index in the batch, why)`.
    record_errors: Vec<(i32, String)>,
}

impl Refusal {
    fn new(error: ResponseError, message: impl Into<Option<String>>) -> Self {
        Self {
            error,
            message: message.into(),
            record_errors: Vec::new(),
        }
    }
}

fn append_error(e: AppendError) -> Refusal {
    let message = match &e {
        AppendError::NotLeader => None,
        AppendError::Storage(m) => Some(m.clone()),
        e => Some(e.to_string()),
    };
    let mut refusal = Refusal::new(e.kafka_error(), message);
    if let AppendError::Log(LogError::RecordsRejected(rejected)) = e {
        refusal.record_errors = rejected
            .errors
            .into_iter()
            .map(|r| (r.batch_index, r.message))
            .collect();
    }
    refusal
}

fn log_error(e: LogError) -> Refusal {
    Refusal::new(e.kafka_error(), e.to_string())
}

/// Refusals the log does not make: zstd before Produce v7
/// (KIP-110), a producer's batch whose BaseOffset is not 0 (Kafka's
/// `UnifiedLog.analyzeAndValidateRecords` for client appends). Produce v0–v2's legacy message sets
/// are up-converted to one v2 batch first.
/// Records in the batches of a Produce (headers only; the batches were validated by `precheck`).
fn record_count(records: &Bytes) -> u64 {
    Batches::new(records.clone())
        .filter_map(Result::ok)
        .map(|batch| batch.record_count().max(0) as u64)
        .sum()
}

fn precheck(
    records: Option<Bytes>,
    version: i16,
    (topic, partition): (&str, i32),
) -> Result<Bytes, Refusal> {
    let mut records = records
        .ok_or_else(|| Refusal::new(ResponseError::InvalidRecord, "no records".to_string()))?;
    if version < 3 && legacy::is_legacy(&records) {
        records = legacy::up_convert(&records).map_err(|e| log_error(e.into()))?;
    }
    // Only the header is read here; the log validates the whole batch (framing, CRC, records) once,
    // on append.
    let batch = BatchHeader::parse(&records).map_err(|e| log_error(LogError::InvalidBatch(e)))?;
    if batch.base_offset != 0 {
        return Err(Refusal::new(
            ResponseError::InvalidRecord,
            format!(
                "The baseOffset of the record batch in the append to {topic}-{partition} should be \
                 0, but it is {}",
                batch.base_offset
            ),
        ));
    }
    if batch.compression() == Compression::Zstd && version < 7 {
        return Err(Refusal::new(
            ResponseError::UnsupportedCompressionType,
            None,
        ));
    }
    Ok(records)
}

/// The first Produce version of transaction version 2 (KIP-890 part 2): the leader adds the
/// partition to the producer's transaction.
const ADDS_PARTITIONS_VERSION: i16 = 12;
/// How long a Produce waits for the partitions to reflect the image it is decided on (see
/// `ReplicaManager::wait_applied`): enough for a new partition's log to open, short of any client
/// timeout.
const PARTITIONS_CATCH_UP_MAX: std::time::Duration = std::time::Duration::from_millis(1_000);

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: ProduceRequest,
) -> Outcome {
    let acks = request.acks;
    let request_timeout_ms = request.timeout_ms;
    // Kafka checks WRITE on the transactional id only when some batch is transactional.
    let transactional = request.topic_data.iter().any(|t| {
        t.partition_data.iter().any(|p| {
            p.records
                .as_deref()
                .and_then(|r| BatchHeader::parse(r).ok())
                .is_some_and(|h| h.is_transactional())
        })
    });
    let transactional_id_authorized = !transactional
        || request.transactional_id.as_ref().is_some_and(|id| {
            ctx.authorize(rc, AclOperation::Write, ResourceType::TransactionalId, id)
        });
    let image = ctx.metadata.current();
    ctx.replicas
        .wait_applied(image.offset, PARTITIONS_CATCH_UP_MAX)
        .await;
    let verification_on =
        transactional && (rc.version >= ADDS_PARTITIONS_VERSION || ctx.txn_verifier.enabled());
    let mut verified = if transactional && transactional_id_authorized {
        verify_transaction(ctx, rc, &image, &request).await
    } else {
        HashMap::new()
    };
    let version = rc.version;
    let mut hints = LeaderHints::new(&image, rc.listener);
    let mut responses = Vec::with_capacity(request.topic_data.len());
    // Appends written now, completed below: (topic position, partition position, append).
    let mut pending = Vec::new();
    let mut failed = false;
    for (t_pos, topic) in request.topic_data.into_iter().enumerate() {
        let name = topic.name.0.to_string();
        let topic_image = image.topic_by_name(&name);
        // Kafka checks WRITE before anything else, unknown topics included.
        let authorized = ctx.authorize_topic(rc, AclOperation::Write, &name);
        let mut partition_responses = Vec::with_capacity(topic.partition_data.len());
        for (p_pos, data) in topic.partition_data.into_iter().enumerate() {
            let index = data.index;
            let outcome = if !transactional_id_authorized {
                Err(Refusal::new(
                    ResponseError::TransactionalIdAuthorizationFailed,
                    None,
                ))
            } else if !authorized {
                Err(Refusal::new(ResponseError::TopicAuthorizationFailed, None))
            } else if !(acks == 0 || acks == 1 || acks == -1) {
                Err(Refusal::new(ResponseError::InvalidRequiredAcks, None))
            } else {
                match topic_image.filter(|t| image.partition(t.id, index).is_some()) {
                    None => Err(Refusal::new(ResponseError::UnknownTopicOrPartition, None)),
                    Some(t) => match ctx.replicas.partition(t.id, index) {
                        None => Err(Refusal::new(ResponseError::NotLeaderOrFollower, None)),
                        Some(partition) => match precheck(data.records, version, (&name, index)) {
                            Err(refusal) => Err(refusal),
                            Ok(records) => match verified.remove(&(name.clone(), index)) {
                                Some(Err(error)) => Err(Refusal::new(
                                    error,
                                    "the partition's addition to the transaction could not be verified"
                                        .to_string(),
                                )),
                                guard => {
                                    // With verification on, a transactional batch that was not
                                    // verified may only continue an open transaction.
                                    let guard = guard.and_then(Result::ok).or(
                                        verification_on.then_some(VerificationGuard::SENTINEL),
                                    );
                                    let (bytes, count) = (records.len(), record_count(&records));
                                    let appended = ctx
                                        .replicas
                                        .append_as_leader_verified(
                                            &partition,
                                            records,
                                            acks,
                                            guard,
                                        )
                                        .await
                                        .map_err(append_error);
                                    if appended.is_ok() {
                                        metrics().produced(&name, bytes, count);
                                    }
                                    appended
                                }
                            },
                        },
                    },
                }
            };
            let mut response = PartitionProduceResponse::default()
                .with_index(index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            match outcome {
                Ok(append) => pending.push((t_pos, p_pos, append)),
                Err(refusal) => {
                    failed = true;
                    if refusal.error == ResponseError::NotLeaderOrFollower && version >= 10 {
                        if let Some(t) = topic_image {
                            let (leader, epoch) = hints.current_leader(t.id, index);
                            response.current_leader = LeaderIdAndEpoch::default()
                                .with_leader_id(BrokerId(leader))
                                .with_leader_epoch(epoch);
                        }
                    }
                    refuse(&mut response, refusal, version);
                }
            }
            partition_responses.push(response);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partition_responses(partition_responses),
        );
    }
    let node_endpoints = hints.endpoints(|e| {
        NodeEndpoint::default()
            .with_node_id(BrokerId(e.node_id))
            .with_host(StrBytes::from_string(e.host))
            .with_port(e.port)
            .with_rack(e.rack.map(StrBytes::from_string))
    });
    let replicas = ctx.replicas.clone();
    let timeout = std::time::Duration::from_millis(request_timeout_ms.max(0) as u64);
    let complete = async move {
        // The partitions complete together (their fsyncs and acks=all waits overlap) under one
        // deadline: the request's timeout, as Kafka's one `DelayedProduce` per request.
        let deadline = tokio::time::Instant::now() + timeout;
        let positions: Vec<(usize, usize)> = pending.iter().map(|&(t, p, _)| (t, p)).collect();
        let completed = futures::future::join_all(
            pending
                .into_iter()
                .map(|(_, _, append)| replicas.complete_append_by(append, acks, deadline)),
        )
        .await;
        for ((t_pos, p_pos), completed) in positions.into_iter().zip(completed) {
            let response = &mut responses[t_pos].partition_responses[p_pos];
            match completed {
                Ok(info) => {
                    response.base_offset = info.base_offset;
                    response.log_append_time_ms = info.log_append_time_ms;
                    if version >= 5 {
                        response.log_start_offset = info.log_start_offset;
                    }
                }
                Err(e) => {
                    failed = true;
                    refuse(response, append_error(e), version);
                }
            }
        }
        if acks == 0 {
            return if failed {
                Outcome::Close("an acks=0 produce failed".into())
            } else {
                Outcome::NoResponse
            };
        }
        let mut response = ProduceResponse::default().with_responses(responses);
        if version >= 10 {
            response.node_endpoints = node_endpoints;
        }
        Outcome::Respond(Box::new(ResponseKind::Produce(response)))
    };
    Outcome::Completing(Box::pin(complete))
}

/// KIP-890 (Kafka's `ReplicaManager.appendRecords` with verification): the partitions of a
/// transactional Produce this broker leads where the producer's transaction is not open yet are
/// verified with the coordinator (part 1), or from v12 added to the transaction (part 2), in one
/// request; each gets its verification guard (taken before the question, so a marker meanwhile
/// voids it) or the error to answer. Empty when verification is off before v12.
///
/// An add refused while the producer's previous transaction completes is asked again with a new
/// guard (`TxnVerifier::check_settled`).
async fn verify_transaction(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    image: &chronik_metadata::MetadataImage,
    request: &ProduceRequest,
) -> HashMap<(String, i32), Result<VerificationGuard, ResponseError>> {
    let mut guards = HashMap::new();
    let Some(transactional_id) = request.transactional_id.as_ref() else {
        return guards;
    };
    let check = if rc.version >= ADDS_PARTITIONS_VERSION {
        TxnCheck::Add
    } else if ctx.txn_verifier.enabled() {
        TxnCheck::Verify
    } else {
        return guards;
    };
    let mut ask = HashMap::new();
    let mut producer = None;
    for topic in &request.topic_data {
        let name = topic.name.0.to_string();
        let Some(topic_image) = image.topic_by_name(&name) else {
            continue;
        };
        if !ctx.authorize_topic(rc, AclOperation::Write, &name) {
            continue;
        }
        for data in &topic.partition_data {
            let Some(h) = data
                .records
                .as_deref()
                .and_then(|r| BatchHeader::parse(r).ok())
            else {
                continue;
            };
            if !h.is_transactional() || h.producer_id < 0 {
                continue;
            }
            let Some(partition) = ctx.replicas.partition(topic_image.id, data.index) else {
                continue;
            };
            if !partition.is_leader(ctx.broker_id)
                || !partition
                    .log
                    .needs_verification(h.producer_id, h.producer_epoch)
            {
                continue;
            }
            ask.insert((name.clone(), data.index), partition);
            producer.get_or_insert((h.producer_id, h.producer_epoch));
        }
    }
    let Some((producer_id, producer_epoch)) = producer else {
        return guards;
    };
    let answers = ctx
        .txn_verifier
        .check_settled(
            check,
            transactional_id,
            (producer_id, producer_epoch),
            ask.keys().cloned().collect(),
            |asking| {
                for key in asking {
                    if let Some(partition) = ask.get(key) {
                        let guard = partition
                            .log
                            .verification_guard(producer_id, producer_epoch);
                        guards.insert(key.clone(), Ok(guard));
                    }
                }
            },
        )
        .await;
    for (partition, answer) in answers {
        if let Err(error) = answer {
            guards.insert(partition, Err(txn_verifier::translate(error, rc.version)));
        }
    }
    guards
}

/// Fills a partition's error (and, v8+, its message and per-record errors) into its response. Only
/// records refused one by one are listed (as Kafka's `RecordValidationException`): a client fails
/// those with the error and the rest of the batch as collateral, while a batch refused as a whole
/// fails every record with the partition's error.
fn refuse(response: &mut PartitionProduceResponse, refusal: Refusal, version: i16) {
    response.error_code = refusal.error.code();
    if version < 8 {
        return;
    }
    response.error_message = refusal.message.map(StrBytes::from_string);
    response.record_errors = refusal
        .record_errors
        .into_iter()
        .map(|(index, message)| {
            BatchIndexAndErrorMessage::default()
                .with_batch_index(index)
                .with_batch_index_error_message(Some(StrBytes::from_string(message)))
        })
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::{cluster, TestBroker};
    use crate::log::batch::test_support::client_batch;
    use crate::log::producer_state::ProducerStateError;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};

    /// The partitions of one acks=all Produce wait together under the request's timeout, not one
    /// timeout after another (Kafka's one `DelayedProduce` per request).
    #[tokio::test]
    async fn an_acks_all_produce_waits_for_its_partitions_under_one_timeout() {
        use crate::handlers::test_support::{broker, topic};
        use chronik_metadata::Record;
        let id = uuid::Uuid::new_v4();
        let mut records = vec![
            Record::ClusterId {
                cluster_id: crate::handlers::test_support::CLUSTER_ID.into(),
            },
            broker(1, None, false),
            broker(2, None, false),
        ];
        // Replicas 1 and 2 in the ISR; broker 2 never fetches, so the high watermark never moves.
        records.extend(topic("orders", id, &[&[1, 2], &[1, 2], &[1, 2]]));
        let broker = TestBroker::new(1, &records);
        broker
            .ctx
            .replicas
            .apply_metadata(&broker.ctx.metadata.current(), true);
        let timeout_ms = 600;
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(timeout_ms)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("orders")))
                .with_partition_data(
                    (0..3)
                        .map(|index| {
                            PartitionProduceData::default()
                                .with_index(index)
                                .with_records(Some(client_batch(&[1], 10)))
                        })
                        .collect(),
                )]);
        let rc = broker.rc(9, "PLAINTEXT");
        let started = std::time::Instant::now();
        let outcome = match handle(&broker.ctx, &rc, request).await {
            Outcome::Completing(rest) => rest.await,
            other => other,
        };
        let elapsed = started.elapsed();
        let Outcome::Respond(response) = outcome else {
            panic!("an acks=all produce is answered");
        };
        let ResponseKind::Produce(response) = *response else {
            panic!("not a produce response");
        };
        for p in &response.responses[0].partition_responses {
            assert_eq!(p.error_code, ResponseError::RequestTimedOut.code(), "{p:?}");
        }
        // One after another they would take at least 3 × 600 ms; together about 600 ms (the bound
        // leaves room for a loaded machine).
        assert!(
            elapsed < std::time::Duration::from_millis(5 * timeout_ms as u64 / 2),
            "3 partitions took {elapsed:?} for a {timeout_ms} ms timeout"
        );
    }

    /// librdkafka's 0011 produced to a topic the moment Metadata named its leader; the leader's
    /// partition log was still opening, so the first batches were refused NOT_LEADER_OR_FOLLOWER,
    /// retried behind later ones and delivered out of order. A Produce now waits for the partitions
    /// to reflect the image it is decided on.
    #[tokio::test]
    async fn a_produce_waits_for_the_partition_its_image_says_this_broker_leads() {
        let broker = std::sync::Arc::new(TestBroker::new(1, &cluster().records));
        let request = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(5_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("orders")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(client_batch(&[1], 10)))])]);
        let producing = {
            let broker = broker.clone();
            tokio::spawn(async move {
                let rc = broker.rc(9, "PLAINTEXT");
                match handle(&broker.ctx, &rc, request).await {
                    Outcome::Completing(rest) => rest.await,
                    other => other,
                }
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let image = broker.ctx.metadata.current();
        broker.ctx.replicas.apply_metadata(&image, true);
        let Outcome::Respond(response) = producing.await.unwrap() else {
            panic!("a produce with acks=1 is answered");
        };
        let ResponseKind::Produce(response) = *response else {
            panic!("not a produce response");
        };
        let p = &response.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, 0), "{p:?}");
    }

    /// KIP-890: with verification on and no `__transaction_state` (so no coordinator), a
    /// transaction's first batch is refused NOT_ENOUGH_REPLICAS (retriable) and not written; without
    /// a transactional id WRITE on it cannot be checked: TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
    #[tokio::test]
    async fn a_transactional_batch_waits_for_a_coordinator_to_verify_it() {
        let broker = TestBroker::new(1, &cluster().records);
        broker
            .ctx
            .replicas
            .apply_metadata(&broker.ctx.metadata.current(), true);
        let produce = |transactional_id: Option<&'static str>| {
            ProduceRequest::default()
                .with_transactional_id(transactional_id.map(|t| {
                    kafka_protocol::messages::TransactionalId(StrBytes::from_static_str(t))
                }))
                .with_acks(1)
                .with_timeout_ms(5_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str("orders")))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(
                            crate::log::batch::test_support::transactional_batch(7, 0, 0, 2),
                        ))])])
        };
        let rc = broker.rc(9, "PLAINTEXT");
        for (tid, expected) in [
            (Some("tx"), ResponseError::NotEnoughReplicas),
            (None, ResponseError::TransactionalIdAuthorizationFailed),
        ] {
            let outcome = match handle(&broker.ctx, &rc, produce(tid)).await {
                Outcome::Completing(rest) => rest.await,
                other => other,
            };
            let Outcome::Respond(response) = outcome else {
                panic!("answered");
            };
            let ResponseKind::Produce(response) = *response else {
                panic!("not a produce response");
            };
            let p = &response.responses[0].partition_responses[0];
            assert_eq!(p.error_code, expected.code(), "{tid:?}: {p:?}");
        }
        let id = broker.ctx.metadata.current().topic_ids["orders"];
        let partition = broker.ctx.replicas.partition(id, 0).unwrap();
        assert_eq!(partition.log.log_end_offset(), 0, "nothing written");
    }

    #[test]
    fn records_refused_one_by_one_are_listed_from_v8() {
        use crate::log::validator::{RecordError, RecordErrorKind, RecordsRejected};
        let rejected = || {
            AppendError::Log(LogError::RecordsRejected(RecordsRejected {
                errors: vec![
                    RecordError {
                        batch_index: 1,
                        kind: RecordErrorKind::InvalidRecord,
                        message: "no key".into(),
                    },
                    RecordError {
                        batch_index: 4,
                        kind: RecordErrorKind::InvalidTimestamp,
                        message: "too old".into(),
                    },
                ],
            }))
        };
        let mut v8 = PartitionProduceResponse::default();
        refuse(&mut v8, append_error(rejected()), 8);
        assert_eq!(v8.error_code, ResponseError::InvalidTimestamp.code());
        let listed: Vec<(i32, String)> = v8
            .record_errors
            .iter()
            .map(|e| {
                let message = e.batch_index_error_message.as_ref().unwrap();
                (e.batch_index, message.to_string())
            })
            .collect();
        assert_eq!(listed, vec![(1, "no key".into()), (4, "too old".into())]);
        assert_eq!(
            v8.error_message.as_deref(),
            Some("One or more records have been rejected due to invalid timestamp")
        );
        let mut v7 = PartitionProduceResponse::default();
        refuse(&mut v7, append_error(rejected()), 7);
        assert_eq!(v7.error_code, ResponseError::InvalidTimestamp.code());
        assert!(v7.record_errors.is_empty() && v7.error_message.is_none());
        // A batch refused as a whole lists no record: every record fails with the partition error.
        let mut whole = PartitionProduceResponse::default();
        let crc = LogError::InvalidBatch(crate::log::BatchError::CrcMismatch {
            stored: 1,
            computed: 2,
        });
        refuse(&mut whole, append_error(AppendError::Log(crc)), 9);
        assert_eq!(whole.error_code, ResponseError::CorruptMessage.code());
        assert!(whole.record_errors.is_empty() && whole.error_message.is_some());
    }

    #[test]
    fn a_producer_batch_must_start_at_offset_zero() {
        let mut bytes = crate::log::batch::test_support::client_batch(&[1], 4).to_vec();
        bytes[..8].copy_from_slice(&5i64.to_be_bytes());
        let refusal = precheck(Some(Bytes::from(bytes)), 9, ("t", 0))
            .err()
            .unwrap();
        assert_eq!(refusal.error, ResponseError::InvalidRecord);
        assert_eq!(
            refusal.message.as_deref(),
            Some(
                "The baseOffset of the record batch in the append to t-0 should be 0, but it is 5"
            )
        );
    }

    #[test]
    fn producer_state_refusals_map_to_their_kafka_codes() {
        let code = |e: ProducerStateError| log_error(LogError::Producer(e)).error;
        assert_eq!(
            code(ProducerStateError::InvalidProducerEpoch {
                producer_id: 7,
                epoch: 0,
                current_epoch: 1
            }),
            ResponseError::InvalidProducerEpoch
        );
        assert_eq!(
            code(ProducerStateError::OutOfOrderSequence {
                producer_id: 7,
                epoch: 0,
                expected: 5,
                found: 9
            }),
            ResponseError::OutOfOrderSequenceNumber
        );
        assert_eq!(
            code(ProducerStateError::InvalidSequence {
                producer_id: 7,
                base_sequence: -1
            }),
            ResponseError::InvalidRecord
        );
        assert_eq!(ResponseError::InvalidProducerEpoch.code(), 47);
        assert_eq!(ResponseError::OutOfOrderSequenceNumber.code(), 45);
    }
}
