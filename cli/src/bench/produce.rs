//! `bench produce`: `--connections` connections to each partition leader (default one), each with a
//! writer that keeps up to `--in-flight` Produce requests outstanding and a reader that takes the
//! answers in order. Every request carries one RecordBatch v2 for one partition; a connection's
//! partitions take turns. The message budget is shared, so faster connections take more of it. A
//! batch's latency runs from just before its request is written to the moment its answer is read.
//! Answers to one partition on one connection must carry rising base offsets; a run notes any that
//! do not (the broker reordered pipelined appends).
//!
//! With acks=0 the broker sends no answers, so the writer ends with an ApiVersions request whose
//! answer, coming back in order, shows that every earlier Produce was handled; no latency is measured.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record};
use rand::{Rng, RngCore};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

use super::cpu::BrokerCpu;
use super::error::{error_name, BenchError};
use super::stats::{mib_per_second, per_second, LatencyHistogram};
use super::{BenchReport, CompressionCodec, StopReason, ValueKind, Workload};
use crate::cli::BenchProduceArgs;
use crate::kafka::producer::{now_ms, produce_answer};
use crate::kafka::records::{batch_record, encode_batch, ProducerIdentity, BATCH_HEADER_BYTES};
use crate::kafka::topic::{PartitionLeader, TopicLayout};
use crate::kafka::{KafkaConnection, KafkaError, RequestWriter, ResponseReader};

/// Produce versions this client speaks: record batches v2 from v3; the broker serves up to 11.
const PRODUCE_VERSIONS: (i16, i16) = (3, 11);

/// Bytes a record adds besides its key and value (length, attributes, deltas, lengths, headers),
/// for sizing batches the way Kafka's `batch.size` does.
const RECORD_OVERHEAD_BYTES: usize = 10;

/// Bytes of generated key and value material; records take slices of it at varying offsets.
const POOL_BYTES: usize = 1024 * 1024;

/// How far apart consecutive records' slices of the pool start (prime, so slices do not repeat soon).
const POOL_STRIDE: usize = 7919;

/// Runs `bench produce`.
pub async fn run(args: &BenchProduceArgs) -> Result<BenchReport, BenchError> {
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
    let mut version = PRODUCE_VERSIONS.1;
    for (address, partitions) in layout.by_leader() {
        for index in 0..args.connections as usize {
            let connection = KafkaConnection::open(&address, deadline).await?;
            let min = if args.compression == CompressionCodec::Zstd {
                7
            } else {
                PRODUCE_VERSIONS.0
            };
            let leader_version = connection.version(ApiKey::Produce, min, PRODUCE_VERSIONS.1)?;
            version = version.min(leader_version);
            // Each connection of a leader starts its round of partitions at a different one.
            let mut rotated = partitions.clone();
            rotated.rotate_left(index % partitions.len().max(1));
            leaders.push((connection, leader_version, rotated));
        }
    }
    if leaders.is_empty() {
        return Err(BenchError::Cluster(format!(
            "no leader endpoint for the partitions of '{}'",
            layout.topic
        )));
    }

    let records_per_batch = records_per_batch(args.batch_size, args.record_size, args.key_size);
    let cpu = BrokerCpu::new(&target.metrics_url)?;
    let cpu_before = match &cpu {
        Some(cpu) => Some(cpu.read().await?),
        None => None,
    };
    let start = Instant::now();
    let plan = Plan {
        topic: TopicName(StrBytes::from_string(layout.topic.clone())),
        acks: args.acks,
        request_timeout_ms: args.request_timeout_ms,
        in_flight: args.in_flight as usize,
        records_per_batch,
        budget: MessageBudget::new(args.messages),
        send_until: args
            .duration_secs
            .map(|secs| start + Duration::from_secs(secs)),
        pace: args.throughput.map(|rate| Pace::new(start, rate)),
        deadline,
    };
    let runs = leaders
        .into_iter()
        .map(|(connection, version, partitions)| {
            let builder = BatchBuilder::new(
                args.values,
                args.record_size as usize,
                args.key_size as usize,
                args.compression,
            );
            produce_to_leader(connection, version, partitions, builder, &plan)
        });
    let outcomes = futures::future::join_all(runs).await;
    let elapsed = start.elapsed();

    let mut total = LeaderOutcome::new()?;
    let mut first_error = None;
    for outcome in outcomes {
        match outcome {
            Ok(outcome) => total.merge(outcome),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    if let Some(error) = first_error {
        return Err(error);
    }
    let mut settings = BTreeMap::new();
    for (key, value) in [
        ("acks", acks_name(args.acks).to_owned()),
        ("compression", args.compression.as_str().to_owned()),
        ("record_size", args.record_size.to_string()),
        ("key_size", args.key_size.to_string()),
        ("values", args.values.as_str().to_owned()),
        ("batch_size", args.batch_size.to_string()),
        ("records_per_batch", records_per_batch.to_string()),
        ("in_flight", args.in_flight.to_string()),
        ("connections_per_broker", args.connections.to_string()),
        ("produce_version", version.to_string()),
        ("partitions", target.partitions.to_string()),
        (
            "throughput",
            args.throughput
                .map_or_else(|| "unlimited".to_owned(), |rate| format!("{rate} msgs/s")),
        ),
    ] {
        settings.insert(key.to_owned(), value);
    }
    let mut notes = Vec::new();
    if !total.reordered_partitions.is_empty() {
        notes.push(format!(
            "{} answer(s) on partition(s) {:?} carried a base offset below that of an earlier \
             request's answer: pipelined appends to one partition were reordered by the broker",
            total.reordered, total.reordered_partitions
        ));
    }
    if args.acks == 0 {
        notes.push(
            "acks=0: messages counts what was written; the broker had handled all of it when the \
             final ApiVersions answer arrived"
                .to_owned(),
        );
    }
    let broker_cpu = match (&cpu, cpu_before) {
        (Some(cpu), Some(before)) => Some(cpu.since(before, total.payload_bytes).await?),
        _ => None,
    };
    Ok(BenchReport {
        workload: Workload::Produce,
        topic: layout.topic.clone(),
        partitions: layout.partitions.len(),
        brokers: layout.by_leader().len(),
        settings,
        messages: total.messages,
        bytes: total.payload_bytes,
        batch_bytes: total.batch_bytes,
        requests: total.requests,
        elapsed_secs: elapsed.as_secs_f64(),
        messages_per_sec: per_second(total.messages, elapsed),
        mib_per_sec: mib_per_second(total.payload_bytes, elapsed),
        latency: total.latency.summary(),
        errors: total.errors,
        failed_messages: total.failed_messages,
        stopped: total.stopped,
        broker_cpu,
        notes,
    })
}

fn acks_name(acks: i16) -> &'static str {
    match acks {
        -1 => "all",
        0 => "0",
        _ => "1",
    }
}

/// How many records of this size fill `batch_size` bytes of uncompressed batch (at least one).
pub fn records_per_batch(batch_size: u32, record_size: u32, key_size: u32) -> usize {
    let record = record_size as usize + key_size as usize + RECORD_OVERHEAD_BYTES;
    ((batch_size as usize).saturating_sub(BATCH_HEADER_BYTES) / record).max(1)
}

/// What every leader's run shares.
struct Plan {
    topic: TopicName,
    acks: i16,
    request_timeout_ms: i32,
    in_flight: usize,
    records_per_batch: usize,
    budget: MessageBudget,
    /// Stop sending new batches at this instant (`--duration-secs`).
    send_until: Option<Instant>,
    /// The send schedule (`--throughput`).
    pace: Option<Pace>,
    /// Stop everything at this instant (`--timeout-secs`).
    deadline: Instant,
}

/// The messages still to be sent, shared by all connections.
struct MessageBudget {
    remaining: AtomicU64,
}

impl MessageBudget {
    fn new(messages: u64) -> Self {
        MessageBudget {
            remaining: AtomicU64::new(messages),
        }
    }

    /// Takes up to `wanted` messages; 0 once the budget is spent.
    fn claim(&self, wanted: usize) -> usize {
        let wanted = wanted as u64;
        match self
            .remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                (left > 0).then(|| left - left.min(wanted))
            }) {
            Ok(left) => left.min(wanted) as usize,
            Err(_) => 0,
        }
    }
}

/// A fixed send schedule shared by all connections: the n-th message is due `n / rate` seconds
/// after the start. Latencies are measured from the due time rather than from the write, so time a
/// batch spent waiting for an in-flight slot counts (no coordinated omission).
struct Pace {
    start: Instant,
    messages_per_sec: u64,
    scheduled: AtomicU64,
}

impl Pace {
    fn new(start: Instant, messages_per_sec: u64) -> Self {
        Pace {
            start,
            messages_per_sec,
            scheduled: AtomicU64::new(0),
        }
    }

    /// When a batch of `count` messages is due: the moment its first message is.
    fn due(&self, count: usize) -> Instant {
        let first = self.scheduled.fetch_add(count as u64, Ordering::Relaxed);
        let nanos = u128::from(first) * 1_000_000_000 / u128::from(self.messages_per_sec);
        self.start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Builds RecordBatch v2 batches of generated records (see [`crate::kafka::records`]).
pub struct BatchBuilder {
    pool: Bytes,
    record_size: usize,
    key_size: usize,
    compression: Compression,
    cursor: usize,
    records: Vec<Record>,
}

impl BatchBuilder {
    /// A builder of records with `record_size`-byte values and `key_size`-byte keys (none if 0).
    pub fn new(
        values: ValueKind,
        record_size: usize,
        key_size: usize,
        compression: CompressionCodec,
    ) -> Self {
        BatchBuilder {
            pool: generate_pool(values, POOL_BYTES + record_size + key_size),
            record_size,
            key_size,
            compression: compression.to_protocol(),
            cursor: 0,
            records: Vec::new(),
        }
    }

    /// One batch of `count` records stamped `timestamp_ms`.
    pub fn build(&mut self, count: usize, timestamp_ms: i64) -> Result<Bytes, String> {
        self.records.clear();
        for offset in 0..count {
            let key = (self.key_size > 0).then(|| self.next_slice(self.key_size));
            let value = self.next_slice(self.record_size);
            self.records.push(batch_record(
                ProducerIdentity::NONE,
                -1,
                offset as i32,
                timestamp_ms,
                key,
                Some(value),
                &[],
            ));
        }
        let mut buffer =
            BytesMut::with_capacity(BATCH_HEADER_BYTES + count * (self.record_size + 16));
        encode_batch(&mut buffer, &self.records, self.compression)?;
        Ok(buffer.freeze())
    }

    fn next_slice(&mut self, len: usize) -> Bytes {
        let start = self.cursor;
        self.cursor = (self.cursor + POOL_STRIDE) % POOL_BYTES;
        self.pool.slice(start..start + len)
    }
}

/// `len` bytes of key and value material.
fn generate_pool(values: ValueKind, len: usize) -> Bytes {
    let mut pool = vec![0u8; len];
    let mut rng = rand::rng();
    match values {
        ValueKind::Random => rng.fill_bytes(&mut pool),
        ValueKind::Text => pool
            .iter_mut()
            .for_each(|b| *b = rng.random_range(b'A'..=b'Z')),
        ValueKind::Pattern => {
            const PATTERN: &[u8] = b"chronik-0123456789-abcdefghijklmnopqrstuvwxyz-";
            pool.iter_mut()
                .zip(PATTERN.iter().cycle())
                .for_each(|(b, p)| *b = *p);
        }
    }
    Bytes::from(pool)
}

/// A request written and not yet answered.
enum InFlight {
    Produce {
        correlation_id: i32,
        partition: i32,
        records: usize,
        payload_bytes: u64,
        batch_bytes: u64,
        sent_at: Instant,
    },
    /// The ApiVersions request that ends an acks=0 run.
    Barrier { correlation_id: i32 },
}

/// The figures of one leader connection (and, merged, of the run).
struct LeaderOutcome {
    messages: u64,
    payload_bytes: u64,
    batch_bytes: u64,
    requests: u64,
    failed_messages: u64,
    latency: LatencyHistogram,
    errors: BTreeMap<String, u64>,
    stopped: StopReason,
    reordered: u64,
    reordered_partitions: BTreeSet<i32>,
}

impl LeaderOutcome {
    fn new() -> Result<Self, BenchError> {
        Ok(LeaderOutcome {
            messages: 0,
            payload_bytes: 0,
            batch_bytes: 0,
            requests: 0,
            failed_messages: 0,
            latency: LatencyHistogram::new()?,
            errors: BTreeMap::new(),
            stopped: StopReason::Completed,
            reordered: 0,
            reordered_partitions: BTreeSet::new(),
        })
    }

    fn error(&mut self, name: impl Into<String>) {
        *self.errors.entry(name.into()).or_default() += 1;
    }

    fn stop(&mut self, reason: StopReason) {
        self.stopped = self.stopped.worst(reason);
    }

    fn merge(&mut self, other: LeaderOutcome) {
        self.messages += other.messages;
        self.payload_bytes += other.payload_bytes;
        self.batch_bytes += other.batch_bytes;
        self.requests += other.requests;
        self.failed_messages += other.failed_messages;
        self.latency.merge(&other.latency);
        for (name, count) in other.errors {
            *self.errors.entry(name).or_default() += count;
        }
        self.stop(other.stopped);
        self.reordered += other.reordered;
        self.reordered_partitions.extend(other.reordered_partitions);
    }
}

/// Produces to one leader until the budget, the duration or the deadline runs out.
async fn produce_to_leader(
    connection: KafkaConnection,
    version: i16,
    partitions: Vec<PartitionLeader>,
    builder: BatchBuilder,
    plan: &Plan,
) -> Result<LeaderOutcome, BenchError> {
    let (writer, reader) = connection.into_split();
    let permits = Semaphore::new(plan.in_flight);
    let (in_flight_tx, mut in_flight_rx) = mpsc::unbounded_channel();
    let mut sent = LeaderOutcome::new()?;
    let mut answered = LeaderOutcome::new()?;
    tokio::join!(
        write_batches(
            writer,
            version,
            &partitions,
            builder,
            plan,
            &permits,
            in_flight_tx,
            &mut sent
        ),
        read_answers(
            reader,
            version,
            plan,
            &permits,
            &mut in_flight_rx,
            &mut answered
        ),
    );
    // Requests written but never answered (the reader stopped first) failed.
    while let Ok(entry) = in_flight_rx.try_recv() {
        if let InFlight::Produce { records, .. } = entry {
            answered.failed_messages += records as u64;
        }
    }
    answered.merge(sent);
    Ok(answered)
}

/// Writes Produce requests while permits, budget and time allow. With acks=0, what is written counts
/// as produced (into `sent`); otherwise the reader counts what is acknowledged.
#[allow(clippy::too_many_arguments)]
async fn write_batches(
    mut writer: RequestWriter,
    version: i16,
    partitions: &[PartitionLeader],
    mut builder: BatchBuilder,
    plan: &Plan,
    permits: &Semaphore,
    in_flight: mpsc::UnboundedSender<InFlight>,
    sent: &mut LeaderOutcome,
) {
    let mut turn = 0usize;
    let mut clean = true;
    loop {
        if plan.send_until.is_some_and(|until| Instant::now() >= until) {
            sent.stop(StopReason::Duration);
            break;
        }
        let count = plan.budget.claim(plan.records_per_batch);
        if count == 0 {
            break;
        }
        let due = plan.pace.as_ref().map(|pace| pace.due(count));
        if let Some(due) = due {
            if plan.send_until.is_some_and(|until| due >= until) {
                sent.stop(StopReason::Duration);
                break;
            }
            if due >= plan.deadline {
                sent.stop(StopReason::Timeout);
                break;
            }
            tokio::time::sleep_until(due).await;
        }
        if plan.acks != 0 {
            match tokio::time::timeout_at(plan.deadline, permits.acquire()).await {
                Ok(Ok(permit)) => permit.forget(),
                // Closed: the reader stopped, and says why.
                Ok(Err(_)) => {
                    clean = false;
                    break;
                }
                Err(_) => {
                    sent.stop(StopReason::Timeout);
                    clean = false;
                    break;
                }
            }
        }
        let partition = partitions[turn % partitions.len()].partition;
        turn = turn.wrapping_add(1);
        let batch = match builder.build(count, now_ms()) {
            Ok(batch) => batch,
            Err(reason) => {
                sent.error(format!("ENCODE: {reason}"));
                clean = false;
                break;
            }
        };
        let batch_bytes = batch.len() as u64;
        let request = ProduceRequest::default()
            .with_acks(plan.acks)
            .with_timeout_ms(plan.request_timeout_ms)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(plan.topic.clone())
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch))])]);
        let sent_at = due.unwrap_or_else(Instant::now);
        let correlation_id =
            match tokio::time::timeout_at(plan.deadline, writer.send(&request, version)).await {
                Ok(Ok(id)) => id,
                Ok(Err(error)) => {
                    sent.error(connection_error_name(&error));
                    sent.stop(StopReason::ConnectionFailed);
                    clean = false;
                    break;
                }
                Err(_) => {
                    sent.stop(StopReason::Timeout);
                    clean = false;
                    break;
                }
            };
        let payload_bytes = (count * (builder.record_size + builder.key_size)) as u64;
        if plan.acks == 0 {
            sent.messages += count as u64;
            sent.payload_bytes += payload_bytes;
            sent.batch_bytes += batch_bytes;
            sent.requests += 1;
            continue;
        }
        let entry = InFlight::Produce {
            correlation_id,
            partition,
            records: count,
            payload_bytes,
            batch_bytes,
            sent_at,
        };
        if in_flight.send(entry).is_err() {
            break;
        }
    }
    if plan.acks == 0 && clean {
        match writer.send(&ApiVersionsRequest::default(), 0).await {
            Ok(correlation_id) => {
                let _ = in_flight.send(InFlight::Barrier { correlation_id });
            }
            Err(error) => {
                sent.error(connection_error_name(&error));
                sent.stop(StopReason::ConnectionFailed);
            }
        }
    }
}

/// Reads the answers in request order until the writer is done and everything is answered.
async fn read_answers(
    mut reader: ResponseReader,
    version: i16,
    plan: &Plan,
    permits: &Semaphore,
    in_flight: &mut mpsc::UnboundedReceiver<InFlight>,
    answered: &mut LeaderOutcome,
) {
    let mut last_base_offset: BTreeMap<i32, i64> = BTreeMap::new();
    while let Some(entry) = in_flight.recv().await {
        let (correlation_id, produce) = match entry {
            InFlight::Produce {
                correlation_id,
                partition,
                records,
                payload_bytes,
                batch_bytes,
                sent_at,
            } => (
                correlation_id,
                Some((partition, records, payload_bytes, batch_bytes, sent_at)),
            ),
            InFlight::Barrier { correlation_id } => (correlation_id, None),
        };
        let failed_records = produce.map_or(0, |(_, records, ..)| records as u64);
        let answer = match produce {
            Some(_) => tokio::time::timeout_at(
                plan.deadline,
                reader.receive::<ProduceRequest>(correlation_id, version),
            )
            .await
            .map(|r| r.map(Some)),
            None => tokio::time::timeout_at(
                plan.deadline,
                reader.receive::<ApiVersionsRequest>(correlation_id, 0),
            )
            .await
            .map(|r| r.map(|_| None)),
        };
        let response = match answer {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                answered.error(connection_error_name(&error));
                answered.failed_messages += failed_records;
                answered.stop(StopReason::ConnectionFailed);
                break;
            }
            Err(_) => {
                answered.failed_messages += failed_records;
                answered.stop(StopReason::Timeout);
                break;
            }
        };
        let (Some(response), Some((partition, records, payload_bytes, batch_bytes, sent_at))) =
            (response, produce)
        else {
            continue;
        };
        answered.latency.record(sent_at.elapsed());
        answered.requests += 1;
        permits.add_permits(1);
        match partition_answer(&response, partition) {
            Ok(base_offset) => {
                answered.messages += records as u64;
                answered.payload_bytes += payload_bytes;
                answered.batch_bytes += batch_bytes;
                let last = last_base_offset.entry(partition).or_insert(-1);
                if base_offset <= *last {
                    answered.reordered += 1;
                    answered.reordered_partitions.insert(partition);
                }
                *last = (*last).max(base_offset);
            }
            Err(name) => {
                answered.error(name);
                answered.failed_messages += records as u64;
            }
        }
    }
    // Let a writer waiting for a permit see that nothing more will be answered.
    permits.close();
}

/// The base offset acknowledged for `partition`, or the name of the error answered.
fn partition_answer(response: &ProduceResponse, partition: i32) -> Result<i64, String> {
    match produce_answer(response, partition) {
        Some((0, base_offset)) => Ok(base_offset),
        Some((code, _)) => Err(error_name(code)),
        None => Err("MISSING_PARTITION_IN_ANSWER".to_owned()),
    }
}

/// The error-count name of a failed connection.
fn connection_error_name(error: &KafkaError) -> String {
    match error {
        KafkaError::Protocol { reason, .. } => format!("PROTOCOL: {reason}"),
        other => format!("CONNECTION: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::producer::testing::response;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn batch_size_sets_records_per_batch() {
        assert_eq!(records_per_batch(16_384, 100, 0), 148);
        assert_eq!(records_per_batch(16_384, 1024, 0), 15);
        assert_eq!(records_per_batch(16_384, 100, 20), 125);
        assert_eq!(records_per_batch(100, 1_000_000, 0), 1);
        assert_eq!(records_per_batch(1, 1, 0), 1);
    }

    #[test]
    fn the_pace_spreads_batches_evenly_over_all_connections() {
        let start = Instant::now();
        let pace = Pace::new(start, 1_000);
        // Two connections taking batches of 10 and 5 messages in turn share one schedule.
        assert_eq!(pace.due(10), start);
        assert_eq!(pace.due(5), start + Duration::from_millis(10));
        assert_eq!(pace.due(10), start + Duration::from_millis(15));
        assert_eq!(pace.due(1), start + Duration::from_millis(25));
    }

    #[test]
    fn a_built_batch_decodes_to_the_same_records() {
        for codec in [
            CompressionCodec::None,
            CompressionCodec::Gzip,
            CompressionCodec::Snappy,
            CompressionCodec::Lz4,
            CompressionCodec::Zstd,
        ] {
            let mut builder = BatchBuilder::new(ValueKind::Text, 100, 8, codec);
            let batch = builder.build(150, 1_700_000_000_000).expect("encodes");
            let mut bytes = batch.clone();
            let set = RecordBatchDecoder::decode(&mut bytes).expect("decodes");
            assert!(bytes.is_empty(), "{codec:?}: one batch, nothing after it");
            assert_eq!(set.compression, codec.to_protocol(), "{codec:?}");
            assert_eq!(set.records.len(), 150, "{codec:?}");
            for (i, record) in set.records.iter().enumerate() {
                assert_eq!(record.offset, i as i64);
                assert_eq!(record.value.as_ref().map(Bytes::len), Some(100));
                assert_eq!(record.key.as_ref().map(Bytes::len), Some(8));
                assert_eq!(record.timestamp, 1_700_000_000_000);
                assert_eq!(record.producer_id, -1);
            }
            // The header a broker validates: one batch, 150 records, no producer, base sequence -1.
            let info = RecordBatchDecoder::decode_batch_info(&mut batch.clone()).expect("header");
            assert_eq!(info.len(), 1);
            assert_eq!(info[0].record_count, 150);
            assert_eq!(info[0].base_sequence, -1);
            assert_eq!(info[0].partition_leader_epoch, -1);
        }
    }

    #[test]
    fn values_differ_between_records_and_compress_as_described() {
        let size = |kind, codec| {
            BatchBuilder::new(kind, 100, 0, codec)
                .build(100, 0)
                .expect("encodes")
                .len()
        };
        let mut builder = BatchBuilder::new(ValueKind::Random, 100, 0, CompressionCodec::None);
        let set = RecordBatchDecoder::decode(&mut builder.build(2, 0).expect("encodes"))
            .expect("decodes");
        assert_ne!(set.records[0].value, set.records[1].value);
        assert!(set.records[0].key.is_none());
        let plain = size(ValueKind::Random, CompressionCodec::None);
        assert!(size(ValueKind::Random, CompressionCodec::Gzip) > plain * 9 / 10);
        assert!(size(ValueKind::Text, CompressionCodec::Gzip) < plain * 8 / 10);
        assert!(size(ValueKind::Pattern, CompressionCodec::Zstd) < plain / 4);
        assert_eq!(
            BatchBuilder::new(ValueKind::Pattern, 0, 0, CompressionCodec::None).compression,
            Compression::None
        );
    }

    #[test]
    fn the_budget_is_shared_and_never_overspent() {
        let budget = MessageBudget::new(250);
        assert_eq!(budget.claim(100), 100);
        assert_eq!(budget.claim(100), 100);
        assert_eq!(budget.claim(100), 50);
        assert_eq!(budget.claim(100), 0);
    }

    #[test]
    fn answers_give_the_base_offset_or_the_error_name() {
        assert_eq!(partition_answer(&response(0), 2), Ok(40));
        assert_eq!(
            partition_answer(&response(6), 2),
            Err("NOT_LEADER_OR_FOLLOWER".to_owned())
        );
        assert_eq!(
            partition_answer(&response(0), 3),
            Err("MISSING_PARTITION_IN_ANSWER".to_owned())
        );
    }
}
