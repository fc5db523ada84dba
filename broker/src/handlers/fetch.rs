//! Fetch (key 1; Kafka's `ReplicaManager.fetchMessages` behind `FetchManager`). Consumers read below the
//! high watermark from partition leaders, followers up to the log end; whole batches straight from the
//! log files. Responses stay within the request's `max_bytes` and each partition's limit, except that
//! the first partition with data returns at least one whole batch (KIP-74, Kafka's `minOneMessage`): a
//! response is at most `max_bytes` plus one batch, for consumers and followers alike. A follower's
//! OFFSET_OUT_OF_RANGE carries the log start offset, so one below it can restart its log there; each
//! follower fetch records the follower's own log start offset, which the low watermark that
//! DeleteRecords waits on counts. A long poll waits until `min_bytes` are available, an error occurs or
//! `max_wait_ms` passes.
//!
//! Fetch sessions (KIP-227, `fetch_session`): a request is served sessionless, as a full fetch (which
//! opens a session when the cache has room) or incrementally. An incremental fetch reads every
//! partition of its session, with the fetch state the session cached, but answers only the partitions
//! with something new for the fetcher (records, an error, a moved high watermark, last stable offset or
//! log start, a diverging epoch, or named by the request). A follower's fetch counts for every
//! partition of its session on every pass, named or not: the leader records its fetch offset
//! (`ReplicaManager::on_follower_fetch`), so a caught-up follower stays caught up for the ISR and the
//! high watermark moves as before. A session keeps each partition's resolved handle
//! (`CachedPartition::resolve`) while the partition state it was checked against is still the
//! partition's (`Partition::holds`), so an idle pass touches no lookup table, and a change to other
//! partitions (a topic created elsewhere) does not make every session resolve all of its own again.
//!
//! A read_committed consumer (v4+ `IsolationLevel` 1, KIP-98) reads only below the last stable
//! offset and gets the aborted transactions of the range it read, so it can drop their records. The
//! LSO moves only with an append or a high watermark move, both of which wake long polls.
//!
//! A long poll waits on the partitions it reads (and on changes that are not one partition's: roles,
//! metadata), so an append to one partition wakes only the fetches that read it: a follower's fetch
//! of other partitions, or a consumer of another topic, stays parked. A follower's fetch of more
//! than [`PER_PARTITION_WAIT_LIMIT`] partitions (counting its session's) waits on any partition's
//! change instead: it reads every partition it follows from this leader (tens of thousands at scale),
//! so an append here is almost always to one of them, and subscribing to and polling one channel per
//! partition on every pass cost more than the wake-ups it saves.

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
use tokio::sync::watch;

use super::leader_hints::LeaderHints;
use super::{leader_partition_state, BrokerContext, RequestContext};
use crate::fetch_session::{
    CachedPartition, Generation, SessionOwner, SessionPartitions, TopicRef,
};
use crate::log::batch::Compression;
use crate::log::partition_log::READ_COMMITTED;
use crate::log::{Batches, LogError};
use crate::metrics::metrics;
use crate::replica::{Partition, PartitionState};

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
    let owner = SessionOwner {
        principal: rc.session.principal.clone(),
        follower,
    };
    let mut context =
        ctx.fetch_sessions
            .new_context(rc.version, &request, owner, &ctx.metadata.current());
    let incremental = context.is_incremental();
    let mut any_data_changed = (follower.is_some()
        && context.partition_count() > PER_PARTITION_WAIT_LIMIT)
        .then(|| ctx.replicas.subscribe_partition_data());
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
    // A fetch that waits on any partition's data (a follower's large session) skips the passes a
    // change of other partitions' roles, or of metadata that is not its own, would cost it.
    let skips_unrelated = any_data_changed.is_some();
    // Set when a wake-up channel closed (shutdown): the next pass answers whatever it reads.
    let mut finish = false;
    loop {
        note_contact();
        all_changed.borrow_and_update();
        metadata_changed.borrow_and_update();
        let passed = Passed {
            roles_version: ctx.replicas.roles_version(),
            image: ctx.metadata.current(),
        };
        // Subscribed before the read, so a change made while reading wakes the wait below.
        let watch_each = match any_data_changed.as_mut() {
            Some(any) => {
                any.borrow_and_update();
                false
            }
            None => true,
        };
        let pass = context.with_partitions(|partitions| {
            let read = read_all(ctx, rc, &request, partitions, watch_each, incremental);
            let done = finish
                || read.bytes >= i64::from(request.min_bytes.max(0))
                || read.any_error
                || tokio::time::Instant::now() >= deadline;
            if done {
                Ok(answer(ctx, rc, &request, partitions, read, incremental))
            } else {
                Err(read.changes)
            }
        });
        let mut partitions_changed = match pass {
            Err((error, session_id)) => {
                return FetchResponse::default()
                    .with_error_code(error.code())
                    .with_session_id(session_id)
            }
            Ok(Ok(mut response)) => {
                note_contact();
                response.session_id =
                    context.complete(&ctx.fetch_sessions, &ctx.metadata.current());
                return response;
            }
            Ok(Err(changes)) => changes,
        };
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
        tokio::pin!(any_partition_changed, any_data);
        let changed = loop {
            let (changed, roles_or_metadata) = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => (Ok(()), false),
                changed = &mut any_partition_changed => (changed, false),
                changed = &mut any_data => (changed, false),
                changed = all_changed.changed() => (changed, true),
                changed = metadata_changed.changed() => (changed, true),
            };
            if changed.is_err()
                || !roles_or_metadata
                || !skips_unrelated
                || may_change_the_pass(ctx, &mut context, &passed)
            {
                break changed;
            }
        };
        finish = changed.is_err();
    }
}

/// What a pass over a fetch's partitions was read under.
struct Passed {
    roles_version: u64,
    image: std::sync::Arc<MetadataImage>,
}

/// Whether a change of roles or metadata since `passed` may change what a pass over the fetch's
/// partitions answers (issue #18: at 100,000 partitions every topic created anywhere made each
/// follower's session read its tens of thousands of partitions twice more). A parked fetch found
/// every partition it reads resolvable: only a change of one of their roles or hosting (which the
/// roles journal names; a topic deleted or recreated in the image reaches it once the replica
/// manager applies that), of the registered brokers (a follower's broker epoch, KIP-903) or of the
/// ACLs can change that.
fn may_change_the_pass(
    ctx: &BrokerContext,
    context: &mut crate::fetch_session::FetchContext,
    passed: &Passed,
) -> bool {
    let image = ctx.metadata.current();
    if !std::sync::Arc::ptr_eq(&image, &passed.image)
        && (image.brokers != passed.image.brokers || image.acls != passed.image.acls)
    {
        return true;
    }
    let Some((_, touched)) = ctx.replicas.roles_changed_since(passed.roles_version) else {
        return true;
    };
    !touched.is_empty()
        && context
            .with_partitions(|partitions| {
                touched.iter().any(|t| match t.partition() {
                    Some(p) => partitions.contains(p.topic_id, &p.topic, p.index),
                    // Deleted: a session naming topics by id is asked by id; one naming them by
                    // name hears of it when its long poll ends.
                    None => partitions.contains_id(t.topic_id, t.index),
                })
            })
            .unwrap_or(true)
}

/// The replica id and broker epoch of a follower's fetch; `None` for a consumer's.
fn follower_of(rc: &RequestContext<'_>, request: &FetchRequest) -> Option<(i32, i64)> {
    let (id, epoch) = replica_of(request, rc.version);
    (id >= 0).then_some((id, epoch))
}

/// Whether a fetch comes from a follower replica, not a consumer (Kafka's
/// `FetchRequest.isFromFollower`).
pub fn is_from_follower(request: &FetchRequest, version: i16) -> bool {
    replica_of(request, version).0 >= 0
}

/// The replica id (negative for a consumer) and broker epoch a fetch of `version` carries.
fn replica_of(request: &FetchRequest, version: i16) -> (i32, i64) {
    if version >= 15 {
        (
            request.replica_state.replica_id.0,
            request.replica_state.replica_epoch,
        )
    } else {
        (request.replica_id.0, -1)
    }
}

/// One pass over the partitions of a fetch.
struct Read {
    /// Each partition's data by its position in the fetch's order, ascending; an incremental pass
    /// keeps only what it may answer (see [`CachedPartition::must_respond`]).
    data: Vec<(usize, PartitionData)>,
    bytes: i64,
    any_error: bool,
    /// The change channels of the partitions read (when watched one by one), subscribed before
    /// their read.
    changes: Vec<watch::Receiver<u64>>,
    endpoints: Vec<NodeEndpoint>,
}

/// The topic a fetch names, if the fetcher may read it (Kafka's `handleFetchRequest`): a follower
/// needs CLUSTER_ACTION on the cluster (`follower_authorized`, checked once per pass; super users
/// pass), a consumer READ on the topic, checked before the name is known to exist, an unknown topic id
/// excepted.
fn fetchable_topic(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    image: &MetadataImage,
    topic: &TopicRef,
    follower_authorized: Option<bool>,
) -> Result<TopicId, ResponseError> {
    let name = match topic {
        TopicRef::Id(id) => image.topics.get(id).map(|t| t.name.as_str()),
        TopicRef::Name(name) => Some(&**name),
    };
    let authorized = follower_authorized
        .unwrap_or_else(|| name.is_none_or(|n| ctx.authorize_topic(rc, AclOperation::Read, n)));
    if !authorized {
        return Err(ResponseError::TopicAuthorizationFailed);
    }
    match topic {
        TopicRef::Id(id) => image
            .topics
            .contains_key(id)
            .then_some(*id)
            .ok_or(ResponseError::UnknownTopicId),
        TopicRef::Name(name) => image
            .topic_ids
            .get(&**name)
            .copied()
            .ok_or(ResponseError::UnknownTopicOrPartition),
    }
}

/// The partition a fetch reads, after `leader_partition`'s checks; a follower must be one of its
/// replicas. Returned with the partition state the checks were made against: the fetch's
/// [`CachedPartition`] keeps the answer while that is still the partition's state.
fn fetched_partition(
    ctx: &BrokerContext,
    image: &MetadataImage,
    topic_id: TopicId,
    p: &CachedPartition,
    follower: Option<(i32, i64)>,
) -> Result<(std::sync::Arc<Partition>, std::sync::Arc<PartitionState>), ResponseError> {
    let (partition, state) =
        leader_partition_state(ctx, image, topic_id, p.partition, p.current_leader_epoch)?;
    match follower {
        // Only a replica of the partition may fetch as a follower (Kafka's
        // `Partition.updateFollowerFetchState`).
        Some((replica_id, _)) if !state.replicas.contains(&replica_id) => {
            Err(ResponseError::NotLeaderOrFollower)
        }
        _ => Ok((partition, state)),
    }
}

fn read_all(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: &FetchRequest,
    partitions: &mut SessionPartitions,
    watch_each: bool,
    incremental: bool,
) -> Read {
    // The roles version is read before anything is resolved under it: a change racing this pass
    // moves it, so the next pass resolves again.
    let roles_version = ctx.replicas.roles_version();
    let image = ctx.metadata.current();
    let generation = Generation {
        metadata_offset: image.offset,
        roles_version,
    };
    let follower = follower_of(rc, request);
    // Only a follower at its current broker epoch may fetch as one (KIP-903): a fetch by its
    // previous incarnation, or with no epoch (-1), must not count towards the high watermark or the
    // ISR.
    let stale_follower = follower.is_some_and(|(replica_id, replica_epoch)| {
        image.brokers.get(&replica_id).map(|b| b.broker_epoch) != Some(replica_epoch)
    });
    let read_committed = request.isolation_level == 1;
    let mut budget = if rc.version >= 3 {
        i64::from(request.max_bytes.max(0))
    } else {
        i64::MAX
    };
    let mut bytes_read = 0i64;
    let mut any_error = false;
    let mut hints = LeaderHints::new(&image, rc.listener);
    let mut data_read = Vec::with_capacity(if incremental { 0 } else { partitions.len() });
    let mut changes = Vec::new();
    let follower_authorized =
        follower.map(|_| ctx.authorize_cluster(rc, AclOperation::ClusterAction));
    // Partitions of one topic mostly come together: its checks are made once per run.
    let mut topic: Option<(TopicRef, Result<TopicId, ResponseError>)> = None;
    partitions.for_each_mut(|position, p| {
        let topic_id = match &topic {
            Some((named, topic_id)) if *named == p.topic => *topic_id,
            _ => {
                let topic_id = fetchable_topic(ctx, rc, &image, &p.topic, follower_authorized);
                topic = Some((p.topic.clone(), topic_id));
                topic_id
            }
        };
        let mut data = PartitionData::default()
            .with_partition_index(p.partition)
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_log_start_offset(-1)
            .with_preferred_read_replica(BrokerId(-1))
            .with_records(Some(Bytes::new()));
        // Null unless read_committed, as Kafka answers (`FetchDataInfo.abortedTransactions`).
        data.aborted_transactions = (read_committed && follower.is_none()).then(Vec::new);
        let result = topic_id.and_then(|topic_id| {
            let partition = p.resolve(topic_id, generation, |p| {
                fetched_partition(ctx, &image, topic_id, p, follower)
            })?;
            if watch_each {
                changes.push(partition.subscribe_changes());
            }
            if stale_follower {
                return Err(ResponseError::NotLeaderOrFollower);
            }
            read_partition(
                ctx,
                rc,
                &partition,
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
                    if let Ok(topic_id) = topic_id {
                        let (leader, epoch) = hints.current_leader(topic_id, p.partition);
                        data.current_leader = LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(leader))
                            .with_leader_epoch(epoch);
                    }
                }
            }
        }
        if !incremental || p.must_respond(&data) {
            data_read.push((position, data));
        }
    });
    let endpoints = if rc.version >= 16 {
        hints.endpoints(|e| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(e.node_id))
                .with_host(StrBytes::from_string(e.host))
                .with_port(e.port)
                .with_rack(e.rack.map(StrBytes::from_string))
        })
    } else {
        Vec::new()
    };
    Read {
        data: data_read,
        bytes: bytes_read,
        any_error,
        changes,
        endpoints,
    }
}

/// The response to a fetch whose last pass was `read`: every partition, or for an incremental fetch
/// only those with something new (see [`SessionPartitions::answer`]), grouped by topic in order. The
/// session id is the caller's to set.
fn answer(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: &FetchRequest,
    partitions: &mut SessionPartitions,
    read: Read,
    incremental: bool,
) -> FetchResponse {
    // Consumers' bytes out are counted as answered (a pass that waits on reads again).
    let consumer_image = follower_of(rc, request)
        .is_none()
        .then(|| ctx.metadata.current());
    let mut responses: Vec<FetchableTopicResponse> = Vec::new();
    let mut last: Option<TopicRef> = None;
    for (topic, data) in partitions.answer(read.data, incremental) {
        if let (Some(image), Some(records)) = (&consumer_image, &data.records) {
            let name = match &topic {
                TopicRef::Id(id) => image.topics.get(id).map(|t| t.name.as_str()),
                TopicRef::Name(name) => Some(&**name),
            };
            if let Some(name) = name {
                metrics().fetched(name, records.len());
            }
        }
        match responses.last_mut() {
            Some(response) if last.as_ref() == Some(&topic) => response.partitions.push(data),
            _ => {
                let (name, topic_id) = match &topic {
                    TopicRef::Id(id) => (String::new(), *id),
                    TopicRef::Name(name) => (name.to_string(), TopicId::nil()),
                };
                responses.push(
                    FetchableTopicResponse::default()
                        .with_topic(TopicName(StrBytes::from_string(name)))
                        .with_topic_id(topic_id)
                        .with_partitions(vec![data]),
                );
                last = Some(topic);
            }
        }
    }
    FetchResponse::default()
        .with_responses(responses)
        .with_node_endpoints(read.endpoints)
}

/// Reads one partition into `data`; returns the bytes read. At most `budget` bytes (what is left
/// of the request's `max_bytes`) and the partition's own limit, except that the first partition to
/// return data (`min_one`) gets at least one whole batch (KIP-74, Kafka's `minOneMessage`).
#[allow(clippy::too_many_arguments)]
fn read_partition(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    partition: &std::sync::Arc<Partition>,
    p: &CachedPartition,
    follower: Option<(i32, i64)>,
    read_committed: bool,
    budget: i64,
    min_one: bool,
    data: &mut PartitionData,
) -> Result<i64, ResponseError> {
    let log = &partition.log;
    if let Some((replica_id, replica_epoch)) = follower {
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
            .on_follower_fetch(partition, replica_id, replica_epoch, p.fetch_offset);
        // Its log start offset (v5+, else -1): the low watermark DeleteRecords waits on.
        ctx.replicas
            .on_follower_log_start(partition, replica_id, p.log_start_offset);
    }
    let read_committed = read_committed && follower.is_none();
    let upper_bound = if follower.is_some() {
        // Up to the log end, where every read stops.
        i64::MAX
    } else if read_committed {
        READ_COMMITTED
    } else {
        log.high_watermark()
    };
    let max_bytes = i64::from(p.max_bytes.max(0)).min(budget).max(0) as usize;
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
    data.records = Some(read.records);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chronik_metadata::Record;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
    use uuid::Uuid;

    use super::*;
    use crate::handlers::test_support::{assert_encodes, broker, topic, TestBroker, CLUSTER_ID};
    use crate::log::batch::test_support::client_batch;

    /// Broker 1 leading `partitions` partitions of "big" (replicas 1, 2); partition `i` holds one
    /// batch of `sizes[i]` value bytes.
    fn leader_of(sizes: &[usize]) -> (TestBroker, Uuid) {
        let (records, id) = big(&[1, 2], sizes.len());
        let b = TestBroker::new(1, &records);
        fill(&b, id, sizes);
        (b, id)
    }

    /// The records of brokers `replicas` and of topic "big", `partitions` partitions led by broker 1
    /// with `replicas` as replicas and ISR.
    fn big(replicas: &[i32], partitions: usize) -> (Vec<Record>, Uuid) {
        let id = Uuid::new_v4();
        let assignment: Vec<&[i32]> = (0..partitions).map(|_| replicas).collect();
        let mut records: Vec<Record> = replicas.iter().map(|&r| broker(r, None, false)).collect();
        records.extend(topic("big", id, &assignment));
        (records, id)
    }

    /// Hosts broker `b`'s partitions of "big"; partition `i` gets one batch of `sizes[i]` value bytes.
    fn fill(b: &TestBroker, id: Uuid, sizes: &[usize]) {
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
    }

    /// A fetch by broker 2 under its current registration.
    fn follower_fetch(b: &TestBroker, id: Uuid, partitions: usize, max_bytes: i32) -> FetchRequest {
        fetch_by(b, 2, id, partitions, max_bytes)
    }

    /// A fetch by broker `replica` under its current registration.
    fn fetch_by(
        b: &TestBroker,
        replica: i32,
        id: Uuid,
        partitions: usize,
        max_bytes: i32,
    ) -> FetchRequest {
        let broker_epoch = b.ctx.metadata.current().brokers[&replica].broker_epoch;
        replica_fetch(broker_epoch, id, partitions, max_bytes).with_replica_state(
            ReplicaState::default()
                .with_replica_id(BrokerId(replica))
                .with_replica_epoch(broker_epoch),
        )
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

    /// One pass of a sessionless fetch, answered whatever it read (no long poll).
    fn read_once(
        ctx: &BrokerContext,
        rc: &RequestContext<'_>,
        request: &FetchRequest,
    ) -> FetchResponse {
        let mut partitions = SessionPartitions::from_request(rc.version, request);
        let read = read_all(ctx, rc, request, &mut partitions, false, false);
        answer(ctx, rc, request, &mut partitions, read, false)
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
        append(&b, &p0).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut waiting)
                .await
                .is_err(),
            "answered by an append to a partition it does not read"
        );
        append(&b, &p1).await;
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
        let request = at_log_ends(&b, id, follower_fetch(&b, id, count, 1 << 20));
        let waiting = handle(&b.ctx, &rc, request.with_max_wait_ms(10_000));
        let response = answered_by_an_append_to_the_last(&b, id, count, waiting).await;
        let read = sizes(&response);
        assert!(read[count - 1] > 0, "{read:?}");
        assert!(read[..count - 1].iter().all(|&n| n == 0), "{read:?}");
    }

    /// Waits on `waiting`, a long poll of `count` partitions of "big" from their log ends: it must
    /// still wait 200 ms on, and be answered once the last partition gets a batch.
    async fn answered_by_an_append_to_the_last(
        b: &TestBroker,
        id: Uuid,
        count: usize,
        waiting: impl std::future::Future<Output = FetchResponse>,
    ) -> FetchResponse {
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut waiting)
                .await
                .is_err(),
            "{count} partitions: answered with nothing to read"
        );
        let last = b
            .ctx
            .replicas
            .partition(id, count as i32 - 1)
            .expect("hosted");
        append(b, &last).await;
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("answered by the append to one of its partitions")
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
            let response = read_once(&leader.ctx, &leader.rc(15, "PLAINTEXT"), &request);
            response.responses[0].partitions[0].error_code
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
            let response = read_once(&leader.ctx, &leader.rc(15, "PLAINTEXT"), &request);
            response.responses[0].partitions[0].error_code
        };
        let denied = ResponseError::TopicAuthorizationFailed.code();
        assert_eq!(fetch_as(&records, &[], "ANONYMOUS"), denied);
        assert_eq!(fetch_as(&records, &["User:broker"], "broker"), 0);
        let mut granted = records.clone();
        granted.push(cluster_acl("User:broker"));
        assert_eq!(fetch_as(&granted, &[], "broker"), 0);
        assert_eq!(fetch_as(&granted, &[], "ANONYMOUS"), denied);
    }

    /// `request` with every partition fetched from its log end.
    fn at_log_ends(b: &TestBroker, id: Uuid, mut request: FetchRequest) -> FetchRequest {
        for p in request
            .topics
            .iter_mut()
            .flat_map(|t| t.partitions.iter_mut())
        {
            p.fetch_offset = b
                .ctx
                .replicas
                .partition(id, p.partition)
                .expect("hosted")
                .log
                .log_end_offset();
        }
        request
    }

    /// Follower 2's incremental fetch in `session` at `epoch`, naming no partition.
    fn incremental(b: &TestBroker, id: Uuid, session: i32, epoch: i32) -> FetchRequest {
        let mut request = follower_fetch(b, id, 0, 1 << 20)
            .with_session_id(session)
            .with_session_epoch(epoch);
        request.topics.clear();
        request
    }

    /// The partitions a response carries: (index, record bytes, high watermark, error code).
    fn answered(response: &FetchResponse) -> Vec<(i32, usize, i64, i16)> {
        response
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| {
                let bytes = p.records.as_ref().map_or(0, Bytes::len);
                (p.partition_index, bytes, p.high_watermark, p.error_code)
            })
            .collect()
    }

    async fn append(b: &TestBroker, partition: &Arc<crate::replica::Partition>) {
        let pending = b
            .ctx
            .replicas
            .append_as_leader(partition, client_batch(&[1], 10), 1)
            .await
            .expect("appended");
        b.ctx
            .replicas
            .complete_append(pending, 1, Duration::from_secs(5))
            .await
            .expect("completed");
    }

    /// KIP-227 on the leader: a full fetch opens a session and answers everything; an incremental
    /// fetch then answers only the partitions with something new for the follower: none while
    /// nothing changed, one whose high watermark moved (another follower caught up), one with new
    /// records (read from the offset the session cached).
    #[tokio::test]
    async fn an_incremental_fetch_answers_only_partitions_that_changed() {
        let (records, id) = big(&[1, 2, 3], 2);
        let b = TestBroker::new(1, &records);
        fill(&b, id, &[10, 10]);
        let rc = b.rc(15, "PLAINTEXT");
        let [p0, p1] = [0, 1].map(|i| b.ctx.replicas.partition(id, i).expect("hosted"));
        let leo = p1.log.log_end_offset();
        // Follower 3 has not fetched: the high watermarks stay at 0.
        let full = at_log_ends(&b, id, follower_fetch(&b, id, 2, 1 << 20)).with_session_epoch(0);
        let response = handle(&b.ctx, &rc, full).await;
        let session = response.session_id;
        assert!(session > 0, "a session was opened");
        assert_eq!(answered(&response), vec![(0, 0, 0, 0), (1, 0, 0, 0)]);
        assert_encodes(&response, 15);
        let response = handle(&b.ctx, &rc, incremental(&b, id, session, 1)).await;
        assert_eq!(response.session_id, session);
        assert_eq!(answered(&response), vec![], "nothing changed");
        // Follower 3 catches up on partition 1 (without a session): its high watermark moves.
        let mut caught_up = at_log_ends(&b, id, fetch_by(&b, 3, id, 2, 1 << 20));
        caught_up.topics[0].partitions.remove(0);
        handle(&b.ctx, &rc, caught_up).await;
        assert_eq!(p1.log.high_watermark(), leo);
        let response = handle(&b.ctx, &rc, incremental(&b, id, session, 2)).await;
        assert_eq!(answered(&response), vec![(1, 0, leo, 0)]);
        // New records on partition 0.
        append(&b, &p0).await;
        let response = handle(&b.ctx, &rc, incremental(&b, id, session, 3)).await;
        let answers = answered(&response);
        assert_eq!(answers.len(), 1, "{answers:?}");
        assert_eq!(answers[0].0, 0);
        assert!(answers[0].1 > 0, "records: {answers:?}");
        let response = handle(&b.ctx, &rc, incremental(&b, id, session, 4)).await;
        assert_eq!(
            answered(&response).iter().map(|a| a.0).collect::<Vec<_>>(),
            vec![0],
            "the records are answered until the follower moves its fetch offset"
        );
    }

    /// An incremental fetch that names no partition long-polls on its session's partitions, one by
    /// one or (a large follower session) on any partition's change.
    #[tokio::test]
    async fn an_incremental_fetch_naming_no_partition_long_polls_on_its_session() {
        for count in [2, PER_PARTITION_WAIT_LIMIT + 6] {
            let (b, id) = leader_of(&vec![10; count]);
            let rc = b.rc(15, "PLAINTEXT");
            let full =
                at_log_ends(&b, id, follower_fetch(&b, id, count, 1 << 20)).with_session_epoch(0);
            let session = handle(&b.ctx, &rc, full).await.session_id;
            assert!(session > 0);
            let request = incremental(&b, id, session, 1).with_max_wait_ms(10_000);
            let waiting = handle(&b.ctx, &rc, request);
            let response = answered_by_an_append_to_the_last(&b, id, count, waiting).await;
            let answers = answered(&response);
            assert_eq!(answers.len(), 1, "{count} partitions: {answers:?}");
            assert_eq!(answers[0].0, count as i32 - 1);
            assert!(answers[0].1 > 0);
        }
    }

    /// Kafka calls `updateFollowerFetchState` for every partition of a follower's session: one the
    /// follower is caught up on and no longer names (nothing changed) still counts as fetched at its
    /// cached offset on every pass. Forty seconds of such fetches later, an append leaves the follower
    /// behind for a moment; it is not taken for one that lagged the whole time (the ISR is not
    /// shrunk), and once it fetches the records and names its new log end, the high watermark moves.
    #[tokio::test(start_paused = true)]
    async fn a_caught_up_partition_left_out_of_incremental_fetches_stays_in_the_isr() {
        let (records, id) = big(&[1, 2], 2);
        let (b, mut isr_changes) = TestBroker::with_isr_changes(1, &records);
        fill(&b, id, &[10, 10]);
        let rc = b.rc(15, "PLAINTEXT");
        let start = tokio::time::Instant::now();
        let full = at_log_ends(&b, id, follower_fetch(&b, id, 2, 1 << 20)).with_session_epoch(0);
        let session = handle(&b.ctx, &rc, full).await.session_id;
        assert!(session > 0);
        let p1 = b.ctx.replicas.partition(id, 1).expect("hosted");
        let leo = p1.log.log_end_offset();
        assert_eq!(p1.log.high_watermark(), leo);
        let mut epoch = 1;
        for _ in 0..80 {
            tokio::time::advance(Duration::from_millis(500)).await;
            let response = handle(&b.ctx, &rc, incremental(&b, id, session, epoch)).await;
            assert_eq!(answered(&response), vec![]);
            epoch += 1;
        }
        append(&b, &p1).await;
        b.ctx
            .replicas
            .shrink_lagging_isrs(Duration::from_secs(30), Duration::from_secs(1), start);
        assert!(
            isr_changes.try_recv().is_err(),
            "a caught-up follower was proposed for removal"
        );
        assert_eq!(
            p1.log.high_watermark(),
            leo,
            "acks=all waits for the follower"
        );
        let response = handle(&b.ctx, &rc, incremental(&b, id, session, epoch)).await;
        let answers = answered(&response);
        assert_eq!((answers.len(), answers[0].0), (1, 1), "{answers:?}");
        let mut fetched = incremental(&b, id, session, epoch + 1);
        fetched.topics = at_log_ends(&b, id, follower_fetch(&b, id, 2, 1 << 20)).topics;
        fetched.topics[0].partitions.remove(0);
        handle(&b.ctx, &rc, fetched).await;
        assert_eq!(p1.log.high_watermark(), leo + 1);
    }

    /// A session's cached partitions are resolved again when roles change: a partition whose
    /// leadership moved is answered NOT_LEADER_OR_FOLLOWER with the new leader.
    #[tokio::test]
    async fn a_session_sees_leadership_move() {
        let (b, id) = leader_of(&[10]);
        let rc = b.rc(15, "PLAINTEXT");
        let full = at_log_ends(&b, id, follower_fetch(&b, id, 1, 1 << 20)).with_session_epoch(0);
        let session = handle(&b.ctx, &rc, full).await.session_id;
        let response = handle(&b.ctx, &rc, incremental(&b, id, session, 1)).await;
        assert_eq!(answered(&response), vec![]);
        b.ctx
            .metadata
            .apply(&[crate::metadata::tests::update(
                11,
                false,
                &[Record::PartitionChange(
                    chronik_metadata::records::PartitionChangeRecord {
                        topic_id: id,
                        partition: 0,
                        leader: Some(2),
                        ..Default::default()
                    },
                )],
            )])
            .expect("applies");
        b.ctx
            .replicas
            .apply_metadata(&b.ctx.metadata.current(), true);
        let response = handle(&b.ctx, &rc, incremental(&b, id, session, 2)).await;
        let data = &response.responses[0].partitions[0];
        assert_eq!(data.error_code, ResponseError::NotLeaderOrFollower.code());
        assert_eq!(
            (
                data.current_leader.leader_id.0,
                data.current_leader.leader_epoch
            ),
            (2, 1)
        );
    }

    /// At 100,000 partitions every metadata change (a topic created anywhere) made every fetch
    /// session resolve all of its partitions again, tens of thousands per session on every broker
    /// (issue #18). A session resolves only the partitions whose own state changed: a topic
    /// created elsewhere and another partition's leadership moving cost nothing, and the moved
    /// partition is answered with its new leader.
    #[tokio::test]
    async fn a_session_resolves_only_partitions_whose_state_changed() {
        let (b, id) = leader_of(&[10, 10, 10]);
        let rc = b.rc(15, "PLAINTEXT");
        let full = at_log_ends(&b, id, follower_fetch(&b, id, 3, 1 << 20)).with_session_epoch(0);
        let session = handle(&b.ctx, &rc, full).await.session_id;
        assert!(session > 0);
        handle(&b.ctx, &rc, incremental(&b, id, session, 1)).await;
        let resolved = b.ctx.fetch_sessions.resolutions(session);
        assert_eq!(resolved, 3, "each partition once");

        // Another topic, led here: the image and the replica manager's roles both move.
        let other = Uuid::new_v4();
        let change = |offset, records: &[Record]| apply_change(&b, offset, records);
        change(11, &topic("elsewhere", other, &[&[1, 2]]));
        assert!(b.ctx.replicas.partition(other, 0).is_some());
        let response = handle(&b.ctx, &rc, incremental(&b, id, session, 2)).await;
        assert_eq!(answered(&response), vec![]);
        assert_eq!(b.ctx.fetch_sessions.resolutions(session), resolved);

        // Partition 2 moves to broker 2: it alone is resolved again, and answered so.
        change(
            12,
            &[Record::PartitionChange(
                chronik_metadata::records::PartitionChangeRecord {
                    topic_id: id,
                    partition: 2,
                    leader: Some(2),
                    ..Default::default()
                },
            )],
        );
        let response = handle(&b.ctx, &rc, incremental(&b, id, session, 3)).await;
        let answers = answered(&response);
        assert_eq!(answers.len(), 1, "{answers:?}");
        assert_eq!(
            (answers[0].0, answers[0].3),
            (2, ResponseError::NotLeaderOrFollower.code())
        );
        assert_eq!(b.ctx.fetch_sessions.resolutions(session), resolved + 1);
    }

    /// Publishes `records` at `offset` to `b`'s metadata cache and applies the image to its replicas.
    fn apply_change(b: &TestBroker, offset: u64, records: &[Record]) {
        b.ctx
            .metadata
            .apply(&[crate::metadata::tests::update(offset, false, records)])
            .expect("applies");
        b.ctx
            .replicas
            .apply_metadata(&b.ctx.metadata.current(), true);
    }

    /// Issue #18: a follower's parked fetch of a large session does not read its partitions again
    /// for a topic created elsewhere or another partition's roles changing (at 100,000 partitions
    /// each such change cost every session a pass over tens of thousands); a change of one of its
    /// own partitions still ends the wait with that partition's new state.
    #[tokio::test]
    async fn a_parked_follower_fetch_reads_again_only_for_its_own_partitions() {
        let partitions = PER_PARTITION_WAIT_LIMIT + 6;
        let (b, id) = leader_of(&vec![10; partitions]);
        let rc = b.rc(15, "PLAINTEXT");
        let full =
            at_log_ends(&b, id, follower_fetch(&b, id, partitions, 1 << 20)).with_session_epoch(0);
        let session = handle(&b.ctx, &rc, full).await.session_id;
        assert!(session > 0);
        let first = b.ctx.replicas.partition(id, 0).expect("hosted");
        let last_pass = || first.follower(2).expect("fetched").last_fetch();
        let parked = incremental(&b, id, session, 1).with_max_wait_ms(10_000);
        let mut waiting = std::pin::pin!(handle(&b.ctx, &rc, parked));
        let park = Duration::from_millis(50);
        assert!(tokio::time::timeout(park, &mut waiting).await.is_err());
        let parked_at = last_pass();

        // Another topic, led here: the image and the replica manager's roles both move.
        let change = |offset, records: &[Record]| apply_change(&b, offset, records);
        let other = Uuid::new_v4();
        change(11, &topic("elsewhere", other, &[&[1, 2]]));
        assert!(tokio::time::timeout(park, &mut waiting).await.is_err());
        assert_eq!(last_pass(), parked_at, "read again for another topic");
        // Its partition's leadership moving here does not concern the fetch either.
        let elsewhere = b.ctx.replicas.partition(other, 0).expect("hosted");
        b.ctx.replicas.roles_changed(vec![elsewhere]);
        assert!(tokio::time::timeout(park, &mut waiting).await.is_err());
        assert_eq!(last_pass(), parked_at, "read again for another partition");

        // The session's last partition moves to broker 2: the fetch answers it.
        let moved = (partitions - 1) as i32;
        change(
            12,
            &[Record::PartitionChange(
                chronik_metadata::records::PartitionChangeRecord {
                    topic_id: id,
                    partition: moved,
                    leader: Some(2),
                    ..Default::default()
                },
            )],
        );
        let response = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("answered once its partition moved");
        assert_eq!(
            answered(&response),
            vec![(moved, 0, -1, ResponseError::NotLeaderOrFollower.code())]
        );
        assert!(last_pass() > parked_at);
    }

    /// A session keeps no deleted partition alive (its log's files stay open while anything holds
    /// it), and its next fetch answers the partition as unknown.
    #[tokio::test]
    async fn a_session_does_not_hold_a_deleted_partition() {
        let (b, id) = leader_of(&[10]);
        let rc = b.rc(15, "PLAINTEXT");
        let full = at_log_ends(&b, id, follower_fetch(&b, id, 1, 1 << 20)).with_session_epoch(0);
        let session = handle(&b.ctx, &rc, full).await.session_id;
        handle(&b.ctx, &rc, incremental(&b, id, session, 1)).await;
        let partition = Arc::downgrade(&b.ctx.replicas.partition(id, 0).expect("hosted"));
        b.ctx
            .metadata
            .apply(&[crate::metadata::tests::update(
                11,
                false,
                &[Record::RemoveTopic { topic_id: id }],
            )])
            .expect("applies");
        b.ctx
            .replicas
            .apply_metadata(&b.ctx.metadata.current(), true);
        assert!(
            partition.upgrade().is_none(),
            "the session holds the partition"
        );
        let response = handle(&b.ctx, &rc, incremental(&b, id, session, 2)).await;
        assert_eq!(
            answered(&response),
            vec![(0, 0, -1, ResponseError::UnknownTopicId.code())]
        );
    }

    /// Session errors are answered at the top level, with no partitions.
    #[tokio::test]
    async fn session_errors_are_answered_at_the_top_level() {
        let (b, id) = leader_of(&[10]);
        let rc = b.rc(15, "PLAINTEXT");
        let response = handle(&b.ctx, &rc, incremental(&b, id, 12_345, 1)).await;
        assert_eq!(
            (
                response.error_code,
                response.session_id,
                response.responses.len()
            ),
            (ResponseError::FetchSessionIdNotFound.code(), 0, 0)
        );
        assert_encodes(&response, 15);
        let full = follower_fetch(&b, id, 1, 1 << 20).with_session_epoch(0);
        let session = handle(&b.ctx, &rc, full).await.session_id;
        let response = handle(&b.ctx, &rc, incremental(&b, id, session, 5)).await;
        assert_eq!(
            response.error_code,
            ResponseError::InvalidFetchSessionEpoch.code()
        );
        // A consumer cannot use a follower's session.
        let mut consumer = incremental(&b, id, session, 1);
        consumer.replica_state = ReplicaState::default().with_replica_id(BrokerId(-1));
        let response = handle(&b.ctx, &rc, consumer).await;
        assert_eq!(
            response.error_code,
            ResponseError::FetchSessionIdNotFound.code()
        );
    }
}
