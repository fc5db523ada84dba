//! Fetch (key 1; Kafka's `ReplicaManager.fetchMessages`). Consumers read below the high watermark from
//! partition leaders; the response holds exactly the requested partitions (no fetch sessions: session
//! id 0), whole batches straight from the log files. It stays within the request's `max_bytes` and
//! each partition's limit, except that the first partition with data returns at least one whole batch
//! (KIP-74, Kafka's `minOneMessage`): a response is at most `max_bytes` plus one batch, for consumers
//! and followers alike. A follower's OFFSET_OUT_OF_RANGE carries the log start offset, so one below
//! it can restart its log there; each follower fetch records the follower's own log start offset,
//! which the low watermark that DeleteRecords waits on counts. A long poll waits until `min_bytes` are
//! available, an error occurs or `max_wait_ms` passes.
//!
//! A read_committed consumer (v4+ `IsolationLevel` 1, KIP-98) reads only below the last stable
//! offset and gets the aborted transactions of the range it read, so it can drop their records. The
//! LSO moves only with an append or a high watermark move, both of which wake long polls.
//!
//! A long poll waits on the partitions it reads (and on changes that are not one partition's: roles,
//! metadata), so an append to one partition wakes only the fetches that read it: a follower's fetch
//! of other partitions, or a consumer of another topic, stays parked. A follower's fetch of more
//! than [`PER_PARTITION_WAIT_LIMIT`] partitions waits on any partition's change instead: it names
//! every partition it follows from this leader (tens of thousands at scale), so an append here is
//! almost always to one of them, and subscribing to and polling one channel per partition on every
//! pass cost more than the wake-ups it saves.

use std::time::Duration;

use bytes::Bytes;
use chronik_metadata::acl::AclOperation;
use chronik_metadata::{MetadataImage, TopicId};
use futures::future::select_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::leader_hints::LeaderHints;
use super::{leader_partition, BrokerContext, RequestContext};
use crate::log::batch::Compression;
use crate::log::partition_log::READ_COMMITTED;
use crate::log::{Batches, LogError};
use crate::metrics::metrics;

/// Longest a fetch may wait, whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// The most partitions a follower's long poll watches one by one; a larger one waits on any
/// partition's change (see the module's documentation). At 100,000 partitions (RF 3, 3 brokers) the
/// per-partition subscriptions of the followers' fetches were a tenth of an idle broker's CPU
/// (issue #18).
const PER_PARTITION_WAIT_LIMIT: usize = 64;

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: FetchRequest,
) -> FetchResponse {
    let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + max_wait;
    let mut all_changed = ctx.replicas.subscribe_all_partitions();
    let mut metadata_changed = ctx.metadata.subscribe();
    // A follower at its current broker epoch is in contact while its fetch is served (the ISR's
    // stall rule, see `ReplicaManager::note_follower_contact`).
    let follower = follower_of(rc, &request);
    let requested: usize = request.topics.iter().map(|t| t.partitions.len()).sum();
    let mut any_data_changed = (follower.is_some() && requested > PER_PARTITION_WAIT_LIMIT)
        .then(|| ctx.replicas.subscribe_data());
    let note_contact = || {
        if let Some((id, epoch)) = follower {
            let current = ctx
                .metadata
                .current()
                .brokers
                .get(&id)
                .map(|b| b.broker_epoch);
            if current == Some(epoch) {
                ctx.replicas.note_follower_contact(id);
            }
        }
    };
    loop {
        note_contact();
        all_changed.borrow_and_update();
        metadata_changed.borrow_and_update();
        // Subscribed before the read, so a change made while reading wakes the wait below.
        let mut partitions_changed = match any_data_changed.as_mut() {
            Some(any) => {
                any.borrow_and_update();
                Vec::new()
            }
            None => partition_changes(ctx, rc, &request),
        };
        let read = read_all(ctx, rc, &request);
        let done = read.bytes >= i64::from(request.min_bytes.max(0))
            || read.any_error
            || tokio::time::Instant::now() >= deadline;
        if done {
            note_contact();
            return read.response;
        }
        let any_partition_changed = async {
            if partitions_changed.is_empty() {
                return std::future::pending().await;
            }
            select_all(partitions_changed.iter_mut().map(|r| Box::pin(r.changed())))
                .await
                .0
        };
        let any_data = async {
            match any_data_changed.as_mut() {
                Some(any) => any.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            changed = any_partition_changed => if changed.is_err() { return read.response },
            changed = any_data => if changed.is_err() { return read.response },
            changed = all_changed.changed() => if changed.is_err() { return read.response },
            changed = metadata_changed.changed() => if changed.is_err() { return read.response },
        }
    }
}

/// The replica id and broker epoch of a follower's fetch; `None` for a consumer's.
fn follower_of(rc: &RequestContext<'_>, request: &FetchRequest) -> Option<(i32, i64)> {
    let (id, epoch) = if rc.version >= 15 {
        (
            request.replica_state.replica_id.0,
            request.replica_state.replica_epoch,
        )
    } else {
        (request.replica_id.0, -1)
    };
    (id >= 0).then_some((id, epoch))
}

/// The change channels of the requested partitions hosted here (one that is not fails the read, or
/// appears with a metadata change, which wakes the wait anyway).
fn partition_changes(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: &FetchRequest,
) -> Vec<tokio::sync::watch::Receiver<u64>> {
    let image = ctx.metadata.current();
    let mut receivers = Vec::new();
    for topic in &request.topics {
        let id = if rc.version >= 13 {
            Some(topic.topic_id)
        } else {
            image.topic_ids.get(topic.topic.0.as_str()).copied()
        };
        let Some(id) = id else { continue };
        receivers.extend(
            topic
                .partitions
                .iter()
                .filter_map(|p| ctx.replicas.partition(id, p.partition))
                .map(|p| p.subscribe_changes()),
        );
    }
    receivers
}

struct Read {
    response: FetchResponse,
    bytes: i64,
    any_error: bool,
}

fn topic_id_of(
    image: &MetadataImage,
    rc: &RequestContext<'_>,
    name: &str,
    id: Uuid,
) -> Result<TopicId, ResponseError> {
    if rc.version >= 13 {
        image
            .topics
            .contains_key(&id)
            .then_some(id)
            .ok_or(ResponseError::UnknownTopicId)
    } else {
        image
            .topic_ids
            .get(name)
            .copied()
            .ok_or(ResponseError::UnknownTopicOrPartition)
    }
}

fn read_all(ctx: &BrokerContext, rc: &RequestContext<'_>, request: &FetchRequest) -> Read {
    let image = ctx.metadata.current();
    let follower = follower_of(rc, request);
    let is_follower = follower.is_some();
    let read_committed = request.isolation_level == 1;
    let mut budget = if rc.version >= 3 {
        i64::from(request.max_bytes.max(0))
    } else {
        i64::MAX
    };
    let mut bytes_read = 0i64;
    let mut any_error = false;
    let mut hints = LeaderHints::new(&image, rc.listener);
    let mut responses = Vec::with_capacity(request.topics.len());
    // A follower needs CLUSTER_ACTION on the cluster, else every partition is
    // TOPIC_AUTHORIZATION_FAILED (Kafka's `handleFetchRequest`); super users pass.
    let follower_authorized = is_follower && ctx.authorize_cluster(rc, AclOperation::ClusterAction);
    for topic in &request.topics {
        let name = topic.topic.0.to_string();
        // Consumers need READ on the topic (checked before the name, an unknown topic id excepted,
        // as Kafka's handleFetchRequest); followers CLUSTER_ACTION on the cluster (above).
        let named = if rc.version >= 13 {
            image.topics.get(&topic.topic_id).map(|t| t.name.as_str())
        } else {
            Some(name.as_str())
        };
        let authorized = if is_follower {
            follower_authorized
        } else {
            named.is_none_or(|n| ctx.authorize_topic(rc, AclOperation::Read, n))
        };
        let topic_id = if authorized {
            topic_id_of(&image, rc, &name, topic.topic_id)
        } else {
            Err(ResponseError::TopicAuthorizationFailed)
        };
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let mut data = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_preferred_read_replica(BrokerId(-1))
                .with_records(Some(Bytes::new()));
            // Null unless read_committed, as Kafka answers (`FetchDataInfo.abortedTransactions`).
            data.aborted_transactions = (read_committed && !is_follower).then(Vec::new);
            let result = topic_id.and_then(|id| {
                read_partition(
                    ctx,
                    rc,
                    &image,
                    id,
                    p,
                    follower,
                    read_committed,
                    budget,
                    bytes_read == 0,
                    &mut data,
                )
            });
            match result {
                Ok(n) => {
                    bytes_read += n;
                    budget -= n;
                }
                Err(error) => {
                    any_error = true;
                    data.error_code = error.code();
                    let hinted = matches!(
                        error,
                        ResponseError::NotLeaderOrFollower | ResponseError::FencedLeaderEpoch
                    );
                    if hinted && rc.version >= 12 {
                        if let Ok(id) = topic_id {
                            let (leader, epoch) = hints.current_leader(id, p.partition);
                            data.current_leader = LeaderIdAndEpoch::default()
                                .with_leader_id(BrokerId(leader))
                                .with_leader_epoch(epoch);
                        }
                    }
                }
            }
            partitions.push(data);
        }
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_string(if rc.version >= 13 {
                    String::new()
                } else {
                    name
                })))
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions),
        );
    }
    let mut response = FetchResponse::default().with_responses(responses);
    if rc.version >= 16 {
        response.node_endpoints = hints.endpoints(|e| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(e.node_id))
                .with_host(StrBytes::from_string(e.host))
                .with_port(e.port)
                .with_rack(e.rack.map(StrBytes::from_string))
        });
    }
    Read {
        response,
        bytes: bytes_read,
        any_error,
    }
}

/// Reads one partition into `data`; returns the bytes read. At most `budget` bytes (what is left
/// of the request's `max_bytes`) and the partition's own limit, except that the first partition to
/// return data (`min_one`) gets at least one whole batch (KIP-74, Kafka's `minOneMessage`).
#[allow(clippy::too_many_arguments)]
fn read_partition(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    image: &MetadataImage,
    topic_id: TopicId,
    p: &kafka_protocol::messages::fetch_request::FetchPartition,
    follower: Option<(i32, i64)>,
    read_committed: bool,
    budget: i64,
    min_one: bool,
    data: &mut PartitionData,
) -> Result<i64, ResponseError> {
    let partition = leader_partition(ctx, image, topic_id, p.partition, p.current_leader_epoch)?;
    let log = &partition.log;
    if let Some((replica_id, replica_epoch)) = follower {
        // Only a replica of the partition, at its current broker epoch, may fetch as a follower
        // (KIP-903): a fetch by its previous incarnation, or with no epoch (-1), must not count
        // towards the high watermark or the ISR. Kafka answers NOT_LEADER_OR_FOLLOWER
        // (`Partition.updateFollowerFetchState`).
        let current_epoch = image.brokers.get(&replica_id).map(|b| b.broker_epoch);
        let stale = current_epoch != Some(replica_epoch);
        if !partition.state().replicas.contains(&replica_id) || stale {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        // Diverging history (Fetch v12+ `LastFetchedEpoch` / `DivergingEpoch`): where the follower's
        // last epoch ends in our log.
        if p.last_fetched_epoch >= 0 {
            let end = log
                .end_offset_for_epoch(p.last_fetched_epoch)
                .map_err(|_| ResponseError::KafkaStorageError)?;
            if end.leader_epoch < p.last_fetched_epoch || end.end_offset < p.fetch_offset {
                data.diverging_epoch = data
                    .diverging_epoch
                    .clone()
                    .with_epoch(end.leader_epoch)
                    .with_end_offset(end.end_offset);
                data.high_watermark = log.high_watermark();
                data.last_stable_offset = log.last_stable_offset();
                data.log_start_offset = log.log_start_offset();
                return Ok(0);
            }
        }
        ctx.replicas
            .on_follower_fetch(&partition, replica_id, replica_epoch, p.fetch_offset);
        // Its log start offset (v5+, else -1): the low watermark DeleteRecords waits on.
        ctx.replicas
            .on_follower_log_start(&partition, replica_id, p.log_start_offset);
    }
    let high_watermark = log.high_watermark();
    let read_committed = read_committed && follower.is_none();
    let upper_bound = if follower.is_some() {
        log.log_end_offset()
    } else if read_committed {
        READ_COMMITTED
    } else {
        high_watermark
    };
    let max_bytes = i64::from(p.partition_max_bytes.max(0)).min(budget).max(0) as usize;
    let mut read = log
        .read(p.fetch_offset, max_bytes.max(1), upper_bound)
        .map_err(|e| {
            if let LogError::OffsetOutOfRange {
                log_start_offset, ..
            } = &e
            {
                if follower.is_some() {
                    // A follower entirely below it restarts its log there.
                    data.log_start_offset = *log_start_offset;
                }
            }
            e.kafka_error()
        })?;
    if rc.version < 10
        && Batches::new(read.records.clone())
            .any(|b| b.is_ok_and(|b| b.compression() == Compression::Zstd))
    {
        return Err(ResponseError::UnsupportedCompressionType);
    }
    if !min_one && read.records.len() > max_bytes {
        // Only an oversize first batch: it waits for a response where it comes first.
        read.records = Bytes::new();
    }
    data.high_watermark = read.high_watermark;
    data.last_stable_offset = read.last_stable_offset;
    if read_committed {
        // The aborted transactions overlapping what was read (Kafka's `collectAbortedTxns` up to
        // the end of the fetched data).
        let read_end = Batches::new(read.records.clone())
            .filter_map(Result::ok)
            .last()
            .map(|b| b.last_offset() + 1);
        if let Some(end) = read_end {
            let aborted = log
                .aborted_transactions(p.fetch_offset, end)
                .into_iter()
                .map(|t| {
                    AbortedTransaction::default()
                        .with_producer_id(ProducerId(t.producer_id))
                        .with_first_offset(t.first_offset)
                })
                .collect();
            data.aborted_transactions = Some(aborted);
        }
    }
    if rc.version >= 5 {
        data.log_start_offset = read.log_start_offset;
    }
    let n = read.records.len() as i64;
    if follower.is_none() {
        if let Some(topic) = image.topics.get(&topic_id) {
            metrics().fetched(&topic.name, read.records.len());
        }
    }
    data.records = Some(read.records);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chronik_metadata::Record;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};

    use super::*;
    use crate::handlers::test_support::{broker, topic, TestBroker, CLUSTER_ID};
    use crate::log::batch::test_support::client_batch;

    /// Broker 1 leading `partitions` partitions of "big" (replicas 1, 2); partition `i` holds one
    /// batch of `sizes[i]` value bytes.
    fn leader_of(sizes: &[usize]) -> (TestBroker, Uuid) {
        let id = Uuid::new_v4();
        let replicas: Vec<&[i32]> = sizes.iter().map(|_| &[1, 2][..]).collect();
        let mut records = vec![broker(1, None, false), broker(2, None, false)];
        records.extend(topic("big", id, &replicas));
        let b = TestBroker::new(1, &records);
        b.ctx
            .replicas
            .apply_metadata(&b.ctx.metadata.current(), true);
        for (index, &size) in sizes.iter().enumerate() {
            let partition = b.ctx.replicas.partition(id, index as i32).expect("hosted");
            partition
                .log
                .append_as_leader(client_batch(&[1], size), 0)
                .unwrap();
        }
        (b, id)
    }

    /// A fetch by broker 2 under its current registration.
    fn follower_fetch(b: &TestBroker, id: Uuid, partitions: usize, max_bytes: i32) -> FetchRequest {
        let broker_epoch = b.ctx.metadata.current().brokers[&2].broker_epoch;
        replica_fetch(broker_epoch, id, partitions, max_bytes)
    }

    /// A fetch by broker 2, as a follower at `broker_epoch`, of `partitions` partitions from offset 0.
    fn replica_fetch(
        broker_epoch: i64,
        id: Uuid,
        partitions: usize,
        max_bytes: i32,
    ) -> FetchRequest {
        let partitions = (0..partitions as i32)
            .map(|p| {
                FetchPartition::default()
                    .with_partition(p)
                    .with_current_leader_epoch(-1)
                    .with_last_fetched_epoch(-1)
                    .with_partition_max_bytes(1 << 20)
            })
            .collect();
        FetchRequest::default()
            .with_replica_state(
                ReplicaState::default()
                    .with_replica_id(BrokerId(2))
                    .with_replica_epoch(broker_epoch),
            )
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_topics(vec![FetchTopic::default()
                .with_topic_id(id)
                .with_partitions(partitions)])
    }

    fn sizes(response: &FetchResponse) -> Vec<usize> {
        response.responses[0]
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, Bytes::len))
            .collect()
    }

    #[tokio::test]
    async fn a_response_stays_within_max_bytes_and_only_its_first_partition_may_exceed_it() {
        // Issue #11 (5), Kafka's rule (KIP-74): once a partition returned data, the others are
        // bounded by what is left of the request's max_bytes.
        let (b, id) = leader_of(&[100_000; 20]);
        let rc = b.rc(15, "PLAINTEXT");
        let response = handle(&b.ctx, &rc, follower_fetch(&b, id, 20, 300_000)).await;
        let read = sizes(&response);
        assert!(
            read.iter().sum::<usize>() <= 300_000,
            "{} bytes for a max_bytes of 300000: {read:?}",
            read.iter().sum::<usize>()
        );
        assert_eq!(read.iter().filter(|&&n| n > 0).count(), 2, "{read:?}");
        // A first batch larger than max_bytes still comes (or nothing would progress), alone.
        let (b, id) = leader_of(&[500_000, 1_000, 1_000]);
        let response = handle(&b.ctx, &rc, follower_fetch(&b, id, 3, 300_000)).await;
        let read = sizes(&response);
        assert!(read[0] > 300_000);
        assert_eq!(&read[1..], &[0, 0]);
    }

    /// A long poll waits on the partitions it reads: an append to another partition leaves it parked,
    /// an append to its own answers it at once.
    #[tokio::test]
    async fn a_long_poll_is_answered_by_an_append_to_a_partition_it_reads() {
        let (b, id) = leader_of(&[10, 10]);
        let rc = b.rc(15, "PLAINTEXT");
        let [p0, p1] = [0, 1].map(|i| b.ctx.replicas.partition(id, i).expect("hosted"));
        let mut request = follower_fetch(&b, id, 2, 1 << 20).with_max_wait_ms(10_000);
        // Only partition 1, from its log end.
        request.topics[0].partitions.remove(0);
        request.topics[0].partitions[0].fetch_offset = p1.log.log_end_offset();
        let waiting = handle(&b.ctx, &rc, request);
        tokio::pin!(waiting);
        let append = |p: &Arc<crate::replica::Partition>| {
            let (replicas, p) = (b.ctx.replicas.clone(), p.clone());
            async move {
                let pending = replicas
                    .append_as_leader(&p, client_batch(&[1], 10), 1)
                    .await
                    .expect("appended");
                replicas
                    .complete_append(pending, 1, Duration::from_secs(5))
                    .await
                    .expect("completed");
            }
        };
        append(&p0).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut waiting)
                .await
                .is_err(),
            "answered by an append to a partition it does not read"
        );
        append(&p1).await;
        let response = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("answered by the append to its partition");
        assert!(sizes(&response)[0] > 0, "{:?}", sizes(&response));
    }

    /// A fetch of more partitions than are watched one by one waits on any partition's change: it
    /// is still answered at once by an append to one of its partitions.
    #[tokio::test]
    async fn a_long_poll_of_many_partitions_is_answered_by_an_append_to_one() {
        let count = PER_PARTITION_WAIT_LIMIT + 6;
        let (b, id) = leader_of(&vec![10; count]);
        let rc = b.rc(15, "PLAINTEXT");
        let mut request = follower_fetch(&b, id, count, 1 << 20).with_max_wait_ms(10_000);
        for p in &mut request.topics[0].partitions {
            let hosted = b.ctx.replicas.partition(id, p.partition).expect("hosted");
            p.fetch_offset = hosted.log.log_end_offset();
        }
        let waiting = handle(&b.ctx, &rc, request);
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut waiting)
                .await
                .is_err(),
            "answered with nothing to read"
        );
        let last = b
            .ctx
            .replicas
            .partition(id, count as i32 - 1)
            .expect("hosted");
        let pending = b
            .ctx
            .replicas
            .append_as_leader(&last, client_batch(&[1], 10), 1)
            .await
            .expect("appended");
        b.ctx
            .replicas
            .complete_append(pending, 1, Duration::from_secs(5))
            .await
            .expect("completed");
        let response = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("answered by the append to one of its partitions");
        let read = sizes(&response);
        assert!(read[count - 1] > 0, "{read:?}");
        assert!(read[..count - 1].iter().all(|&n| n == 0), "{read:?}");
    }

    #[tokio::test]
    async fn a_follower_below_the_log_start_is_told_where_it_begins() {
        let (b, id) = leader_of(&[10, 10]);
        let partition = b.ctx.replicas.partition(id, 0).expect("hosted");
        partition.log.maybe_increment_high_watermark(1);
        partition.log.truncate_fully_and_start_at(7).unwrap();
        let rc = b.rc(15, "PLAINTEXT");
        let response = handle(&b.ctx, &rc, follower_fetch(&b, id, 1, 1 << 20)).await;
        let data = &response.responses[0].partitions[0];
        assert_eq!(data.error_code, ResponseError::OffsetOutOfRange.code());
        assert_eq!(data.log_start_offset, 7);
    }

    /// Issue #11, defect 11 (KIP-903): a follower fetch counts (towards the high watermark and the
    /// ISR) only under the follower's current registration; a fetch by its previous incarnation, or
    /// one with no broker epoch, is refused with NOT_LEADER_OR_FOLLOWER as Kafka's
    /// `Partition.updateFollowerFetchState` does.
    #[tokio::test]
    async fn a_follower_fetch_needs_the_followers_current_broker_epoch() {
        let orders = Uuid::new_v4();
        let mut records = vec![
            Record::ClusterId {
                cluster_id: CLUSTER_ID.into(),
            },
            broker(1, None, false),
            broker(2, None, false),
        ];
        records.extend(topic("orders", orders, &[&[1, 2]]));
        let leader = TestBroker::new(1, &records);
        let image = leader.ctx.metadata.current();
        leader.ctx.replicas.apply_metadata(&image, true);
        let current = image.brokers[&2].broker_epoch;
        let fetch = |replica_epoch: i64| {
            let request = replica_fetch(replica_epoch, orders, 1, 1 << 20);
            let read = read_all(&leader.ctx, &leader.rc(15, "PLAINTEXT"), &request);
            read.response.responses[0].partitions[0].error_code
        };
        let refused = ResponseError::NotLeaderOrFollower.code();
        assert_eq!(fetch(current - 1), refused, "a previous registration");
        assert_eq!(fetch(-1), refused, "no broker epoch");
        assert!(
            leader
                .ctx
                .replicas
                .partition(orders, 0)
                .and_then(|p| p.follower(2))
                .is_none(),
            "a refused fetch records nothing"
        );
        assert_eq!(fetch(current), 0);
    }

    /// Kafka's `handleFetchRequest`: a follower's fetch needs CLUSTER_ACTION on the cluster, else
    /// every partition is TOPIC_AUTHORIZATION_FAILED; the principal is the connection's
    /// (`User:ANONYMOUS` on a PLAINTEXT listener), and a super user passes.
    #[tokio::test]
    async fn a_follower_fetch_needs_cluster_action_under_an_authorizer() {
        use chronik_metadata::acl::{
            AclBinding, AclPermissionType, PatternType, ResourceType, CLUSTER_NAME,
        };
        let orders = Uuid::new_v4();
        let mut records = vec![
            Record::ClusterId {
                cluster_id: CLUSTER_ID.into(),
            },
            broker(1, None, false),
            broker(2, None, false),
        ];
        records.extend(topic("orders", orders, &[&[1, 2]]));
        let cluster_acl = |principal: &str| Record::AccessControlEntry {
            id: Uuid::new_v4(),
            acl: AclBinding {
                resource_type: ResourceType::Cluster,
                resource_name: CLUSTER_NAME.into(),
                pattern_type: PatternType::Literal,
                principal: principal.into(),
                host: "*".into(),
                operation: AclOperation::ClusterAction,
                permission: AclPermissionType::Allow,
            },
        };
        let fetch_as = |records: &[Record], super_users: &[&str], principal: &str| {
            let mut leader = TestBroker::new(1, records);
            leader.ctx.authorizer = Some(crate::authorizer::Authorizer {
                super_users: super_users.iter().map(|s| s.to_string()).collect(),
                allow_everyone_if_no_acl_found: false,
            });
            leader.session.principal = crate::authorizer::KafkaPrincipal {
                principal_type: "User".into(),
                name: principal.into(),
            };
            let image = leader.ctx.metadata.current();
            leader.ctx.replicas.apply_metadata(&image, true);
            let request = replica_fetch(image.brokers[&2].broker_epoch, orders, 1, 1 << 20);
            let read = read_all(&leader.ctx, &leader.rc(15, "PLAINTEXT"), &request);
            read.response.responses[0].partitions[0].error_code
        };
        let denied = ResponseError::TopicAuthorizationFailed.code();
        assert_eq!(fetch_as(&records, &[], "ANONYMOUS"), denied);
        assert_eq!(fetch_as(&records, &["User:broker"], "broker"), 0);
        let mut granted = records.clone();
        granted.push(cluster_acl("User:broker"));
        assert_eq!(fetch_as(&granted, &[], "broker"), 0);
        assert_eq!(fetch_as(&granted, &[], "ANONYMOUS"), denied);
    }
}
