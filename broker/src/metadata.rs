//! `MetadataCache`: the broker's in-memory copy of the cluster metadata, learned only from the controller
//! quorum's `WatchMetadata` stream (the broker keeps no metadata on disk). The image is immutable once
//! published: readers take an `Arc<MetadataImage>` and see one consistent offset for as long as they
//! hold it; the watch task builds the next image on a copy and publishes it atomically.
//!
//! What must stay true:
//! - The image changes only by `MetadataImage::replay_all` of committed records (the controller's own
//!   replay), so broker and controller agree on the image of every offset.
//! - The published offset never goes backwards: an update at or below the current offset is skipped,
//!   whichever controller sent it.
//! - A record that does not decode is never half-applied and never panics the broker: the update is
//!   dropped, logged, and the stream restarted from a snapshot.
//!
//! It also answers the questions the Kafka layer asks of an image (a partition's leader, a broker's
//! endpoint) as free functions over `&MetadataImage`, so one request uses one image throughout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronik_metadata::convert::{record_from_proto, DecodeError};
use chronik_metadata::{BrokerId, Endpoint, MetadataImage, Record};
use chronik_proto::v1::MetadataUpdate;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::controller_client::{ControllerClient, MetadataWatch};
use crate::error::BrokerError;

/// How many updates already waiting on the stream are applied to one copy of the image.
const MAX_BATCH: usize = 256;
const INITIAL_RECONNECT_BACKOFF: Duration = Duration::from_millis(50);
const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(2);

/// The metadata image as of the last update received from the controller quorum.
#[derive(Debug)]
pub struct MetadataCache {
    image: watch::Sender<Arc<MetadataImage>>,
    /// Serialises writers (there is one, the watch task); readers never take it.
    writer: Mutex<()>,
}

/// What applying an update did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The image was rebuilt from a full snapshot.
    Snapshot,
    /// The records were replayed onto the image.
    Delta,
    /// The update's offset was not past the image's; nothing changed.
    Stale,
}

impl Default for MetadataCache {
    fn default() -> Self {
        Self::new()
    }
}

impl MetadataCache {
    /// An empty image at offset 0.
    pub fn new() -> Self {
        let (image, _) = watch::channel(Arc::new(MetadataImage::default()));
        Self {
            image,
            writer: Mutex::new(()),
        }
    }

    /// The current image; consistent for as long as the caller holds it.
    pub fn current(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// The offset of the current image: how far this broker has applied the metadata log.
    pub fn offset(&self) -> u64 {
        self.image.borrow().offset
    }

    /// Notified on every published image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.subscribe()
    }

    /// Waits until the image has reached `offset` (e.g. the offset a CreateTopics answer named).
    pub async fn wait_for_offset(
        &self,
        offset: u64,
        timeout: Duration,
    ) -> Result<Arc<MetadataImage>, BrokerError> {
        let mut images = self.subscribe();
        let reached = tokio::time::timeout(timeout, images.wait_for(|i| i.offset >= offset)).await;
        match reached {
            Ok(Ok(image)) => Ok(image.clone()),
            // The sender lives in `self`, so the channel cannot close while we wait; treat it as a
            // timeout all the same.
            Ok(Err(_)) | Err(_) => Err(BrokerError::MetadataTimeout {
                offset,
                current: self.offset(),
                timeout_ms: timeout.as_millis(),
            }),
        }
    }

    /// Applies updates in order onto a copy of the current image and publishes the result once.
    /// On a record that does not decode, the updates before it are still published and the error is
    /// returned; the failing update changes nothing.
    pub fn apply(&self, updates: &[MetadataUpdate]) -> Result<Applied, DecodeError> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current();
        if updates.iter().all(|u| u.offset <= current.offset) {
            return Ok(Applied::Stale);
        }
        let mut image = (*current).clone();
        let mut outcome = Applied::Stale;
        let mut failure = None;
        for update in updates {
            match apply_update(&mut image, update) {
                Ok(Applied::Stale) => {}
                Ok(Applied::Snapshot) => outcome = Applied::Snapshot,
                Ok(Applied::Delta) if outcome == Applied::Stale => outcome = Applied::Delta,
                Ok(Applied::Delta) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if outcome != Applied::Stale {
            self.image.send_replace(Arc::new(image));
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(outcome),
        }
    }
}

/// Applies one update to `image`: a snapshot replaces it, a delta is replayed onto it, and anything not
/// past the image's offset is skipped. Records are decoded before anything changes.
pub fn apply_update(
    image: &mut MetadataImage,
    update: &MetadataUpdate,
) -> Result<Applied, DecodeError> {
    if update.offset <= image.offset {
        return Ok(Applied::Stale);
    }
    let records = update
        .records
        .iter()
        .map(record_from_proto)
        .collect::<Result<Vec<Record>, _>>()?;
    let applied = if update.is_snapshot {
        *image = MetadataImage::default();
        Applied::Snapshot
    } else {
        Applied::Delta
    };
    image.replay_all(update.offset, &records);
    image.offset = update.offset;
    Ok(applied)
}

/// Follows the controller quorum's metadata into `cache` until `cancel` fires: `WatchMetadata` from the
/// cache's offset on any controller, reconnecting (to the next controller) when a stream ends or fails,
/// and starting over from a snapshot when a record does not decode.
pub async fn run_metadata_watch(
    cache: Arc<MetadataCache>,
    client: Arc<ControllerClient>,
    cancel: CancellationToken,
) {
    let mut backoff = INITIAL_RECONNECT_BACKOFF;
    let mut resync = false;
    let mut quiet_failures = 0u32;
    loop {
        let from_offset = if resync { 0 } else { cache.offset() };
        let opened = tokio::select! {
            _ = cancel.cancelled() => return,
            opened = client.watch_metadata(from_offset) => opened,
        };
        match opened {
            Ok(mut watch) => {
                info!(controller = %watch.address, from_offset, "following the metadata log");
                quiet_failures = 0;
                resync = false;
                let ended = follow(&cache, &client, &mut watch, &cancel).await;
                match ended {
                    StreamEnd::Cancelled => return,
                    StreamEnd::Switch(active) => {
                        info!(from = %watch.address, to = %active,
                            "following the metadata log on the active controller instead");
                        backoff = INITIAL_RECONNECT_BACKOFF;
                        continue;
                    }
                    StreamEnd::Progressed => backoff = INITIAL_RECONNECT_BACKOFF,
                    StreamEnd::Closed(reason) => {
                        warn!(controller = %watch.address, %reason, offset = cache.offset(),
                            "metadata stream ended; reconnecting");
                        client.report_failure(&watch.address);
                    }
                    StreamEnd::Undecodable(e) => {
                        error!(controller = %watch.address, error = %e, offset = cache.offset(),
                            "undecodable metadata record; restarting from a snapshot");
                        resync = true;
                    }
                }
            }
            Err(e) => {
                // Every controller down is a state worth one warning, not one per retry.
                if quiet_failures == 0 {
                    warn!(error = %e, "cannot open the metadata stream; retrying");
                } else {
                    debug!(error = %e, "cannot open the metadata stream; retrying");
                }
                quiet_failures += 1;
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_RECONNECT_BACKOFF);
    }
}

enum StreamEnd {
    Cancelled,
    /// Another controller became the active one: follow it instead (see [`follow`]).
    Switch(String),
    /// The stream ended after delivering at least one update: reconnect without delay.
    Progressed,
    Closed(String),
    Undecodable(DecodeError),
}

/// Applies `watch`'s updates to `cache` until the stream ends, `cancel` fires, or the client finds
/// another controller active. A follower controller applies an entry only once the leader's next
/// AppendEntries tells it of the commit (up to a Raft heartbeat later, 200 ms by default), so the
/// stream moves to the active controller whenever one is known, between updates (as Kafka's brokers
/// fetch the metadata log from its leader).
async fn follow(
    cache: &MetadataCache,
    client: &ControllerClient,
    watch: &mut MetadataWatch,
    cancel: &CancellationToken,
) -> StreamEnd {
    let updates = &mut watch.updates;
    let address = watch.address.as_str();
    let mut active = client.subscribe_active();
    active.mark_changed();
    let mut progressed = false;
    let mut chunks = Chunks::default();
    loop {
        let first = tokio::select! {
            _ = cancel.cancelled() => return StreamEnd::Cancelled,
            next = updates.next() => next,
            Ok(()) = active.changed(), if chunks.pending.is_none() => {
                match active.borrow_and_update().as_deref() {
                    Some(to) if to != address => return StreamEnd::Switch(to.to_owned()),
                    _ => continue,
                }
            }
        };
        let mut batch = Vec::new();
        let mut take = |received: Option<Result<MetadataUpdate, tonic::Status>>,
                        batch: &mut Vec<MetadataUpdate>| match received {
            Some(Ok(update)) => match chunks.push(update) {
                Ok(Some(complete)) => {
                    batch.push(complete);
                    None
                }
                Ok(None) => None,
                Err(reason) => Some(reason),
            },
            Some(Err(status)) => Some(status.to_string()),
            None => Some(CLOSED_BY_CONTROLLER.to_owned()),
        };
        let mut end = take(first, &mut batch);
        // Take whatever else already arrived, so a burst costs one copy of the image.
        while end.is_none() && batch.len() < MAX_BATCH {
            match updates.next().now_or_never() {
                Some(received) => end = take(received, &mut batch),
                None => break,
            }
        }
        if !batch.is_empty() {
            let before = cache.offset();
            let applied = cache.apply(&batch);
            if applied.is_ok() {
                observe_propagation(&batch, before);
            }
            match applied {
                Ok(Applied::Snapshot) => {
                    let image = cache.current();
                    info!(
                        offset = image.offset,
                        brokers = image.brokers.len(),
                        topics = image.topics.len(),
                        "metadata image rebuilt from a snapshot"
                    );
                    progressed = true;
                }
                Ok(Applied::Delta) => progressed = true,
                Ok(Applied::Stale) => {}
                Err(e) => return StreamEnd::Undecodable(e),
            }
        }
        if let Some(reason) = end {
            // An update cut off mid-chunks is dropped; the next stream resumes before it.
            return if progressed && reason == CLOSED_BY_CONTROLLER {
                StreamEnd::Progressed
            } else {
                StreamEnd::Closed(reason)
            };
        }
    }
}

const CLOSED_BY_CONTROLLER: &str = "closed by the controller";

/// Puts an update the controller sent in several messages (`more`) back together, so it is applied
/// whole or not at all: a broker never publishes half a snapshot.
#[derive(Debug, Default)]
struct Chunks {
    pending: Option<MetadataUpdate>,
}

impl Chunks {
    /// Takes the next message of the stream; returns the update it completes, if any. A message that
    /// does not continue the pending update (another offset or kind) breaks the stream's contract.
    fn push(&mut self, message: MetadataUpdate) -> Result<Option<MetadataUpdate>, String> {
        let update = match self.pending.take() {
            None => message,
            Some(mut pending) => {
                if message.offset != pending.offset || message.is_snapshot != pending.is_snapshot {
                    return Err(format!(
                        "the update at offset {} stopped after {} records: the next message is for \
                         offset {}",
                        pending.offset,
                        pending.records.len(),
                        message.offset
                    ));
                }
                pending.records.extend(message.records);
                pending.more = message.more;
                pending
            }
        };
        if update.more {
            self.pending = Some(update);
            Ok(None)
        } else {
            Ok(Some(update))
        }
    }
}

/// Records, for every entry of `batch` past `before` that carries its commit time, how long it took
/// from the controller's commit to the image just published.
fn observe_propagation(batch: &[MetadataUpdate], before: u64) {
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    for update in batch {
        if update.offset > before && !update.is_snapshot && update.commit_timestamp_us > 0 {
            let took_us = now_us.saturating_sub(update.commit_timestamp_us);
            crate::metrics::metrics().metadata_propagated(Duration::from_micros(took_us));
        }
    }
}

/// A partition's leader, as a Kafka client is told about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLeader {
    pub broker_id: BrokerId,
    pub leader_epoch: i32,
    /// The leader's endpoint on the requested listener; `None` if it does not have that listener.
    pub endpoint: Option<Endpoint>,
}

/// Why a partition has no usable leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaderLookupError {
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// The partition exists but is offline (leader -1), e.g. every ISR member is fenced.
    #[error("leader not available")]
    LeaderNotAvailable,
}

/// The leader of `topic`-`partition` and its endpoint on `listener`.
pub fn partition_leader(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    listener: &str,
) -> Result<PartitionLeader, LeaderLookupError> {
    let topic = image
        .topic_by_name(topic)
        .ok_or(LeaderLookupError::UnknownTopicOrPartition)?;
    let registration = image
        .partition(topic.id, partition)
        .ok_or(LeaderLookupError::UnknownTopicOrPartition)?;
    if !registration.has_leader() {
        return Err(LeaderLookupError::LeaderNotAvailable);
    }
    Ok(PartitionLeader {
        broker_id: registration.leader,
        leader_epoch: registration.leader_epoch,
        endpoint: broker_endpoint(image, registration.leader, listener).cloned(),
    })
}

/// A registered broker's endpoint on `listener`.
pub fn broker_endpoint<'a>(
    image: &'a MetadataImage,
    broker_id: BrokerId,
    listener: &str,
) -> Option<&'a Endpoint> {
    image.brokers.get(&broker_id)?.endpoint(Some(listener))
}

/// Partition counts of an image, for metrics and readiness.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionCounts {
    pub partitions: usize,
    pub leaderless: usize,
    /// Partitions whose leader is the given broker.
    pub led: usize,
    /// Partitions the given broker is a replica of.
    pub replicated: usize,
}

pub fn partition_counts(image: &MetadataImage, broker_id: BrokerId) -> PartitionCounts {
    image
        .partitions()
        .fold(PartitionCounts::default(), |mut counts, (_, _, p)| {
            counts.partitions += 1;
            counts.leaderless += usize::from(!p.has_leader());
            counts.led += usize::from(p.leader == broker_id);
            counts.replicated += usize::from(p.replicas.contains(&broker_id));
            counts
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chronik_metadata::convert::record_to_proto;
    use chronik_metadata::records::{PartitionChangeRecord, PartitionRecord, RegisterBrokerRecord};
    use chronik_metadata::NO_LEADER;
    use chronik_proto::v1 as pb;
    use uuid::Uuid;

    pub(crate) fn update(offset: u64, is_snapshot: bool, records: &[Record]) -> MetadataUpdate {
        MetadataUpdate {
            offset,
            is_snapshot,
            records: records.iter().map(record_to_proto).collect(),
            commit_timestamp_us: 0,
            more: false,
        }
    }

    pub(crate) fn register(broker_id: BrokerId, port: u16) -> Record {
        Record::RegisterBroker(RegisterBrokerRecord {
            broker_id,
            incarnation_id: Uuid::new_v4(),
            broker_epoch: -1,
            endpoints: vec![Endpoint {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port,
            }],
            rack: None,
            fenced: false,
            in_controlled_shutdown: false,
            supported_features: Default::default(),
            log_dir_id: None,
        })
    }

    pub(crate) fn topic(name: &str, id: Uuid, leaders: &[BrokerId]) -> Vec<Record> {
        let mut records = vec![Record::Topic {
            name: name.into(),
            topic_id: id,
        }];
        for (index, &leader) in leaders.iter().enumerate() {
            records.push(Record::Partition(PartitionRecord {
                topic_id: id,
                partition: index as i32,
                replicas: vec![1, 2],
                isr: vec![1, 2],
                leader,
                leader_epoch: 0,
                partition_epoch: 0,
                recovering: false,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
                elr: Vec::new(),
            }));
        }
        records
    }

    fn snapshot_records(topic_id: Uuid) -> Vec<Record> {
        let mut records = vec![
            Record::ClusterId {
                cluster_id: "c1".into(),
            },
            register(1, 9092),
            register(2, 9093),
        ];
        records.extend(topic("orders", topic_id, &[1, 2]));
        records
    }

    #[test]
    fn a_snapshot_then_deltas_build_the_image() {
        let cache = MetadataCache::new();
        let id = Uuid::new_v4();
        let applied = cache
            .apply(&[update(10, true, &snapshot_records(id))])
            .expect("applies");
        assert_eq!(applied, Applied::Snapshot);
        let image = cache.current();
        assert_eq!(image.offset, 10);
        assert_eq!(image.cluster_id.as_deref(), Some("c1"));
        assert_eq!(image.brokers.len(), 2);
        assert_eq!(image.brokers[&1].broker_epoch, 10);

        let change = Record::PartitionChange(PartitionChangeRecord {
            topic_id: id,
            partition: 0,
            leader: Some(2),
            isr: Some(vec![2]),
            ..Default::default()
        });
        let applied = cache
            .apply(&[update(11, false, &[change]), update(12, false, &[])])
            .expect("applies");
        assert_eq!(applied, Applied::Delta);
        let image = cache.current();
        assert_eq!(image.offset, 12, "an empty entry still moves the offset");
        let leader = partition_leader(&image, "orders", 0, "PLAINTEXT").expect("leader");
        assert_eq!(leader.broker_id, 2);
        assert_eq!(leader.leader_epoch, 1);
        assert_eq!(leader.endpoint.map(|e| e.port), Some(9093));
        // The image taken before the delta is unchanged: images are immutable once published.
        assert_eq!(image.partition(id, 0).map(|p| p.isr.clone()), Some(vec![2]));
    }

    /// An update the controller split into chunks (`more`) is applied once, whole: the image is the
    /// one its records rebuild together, and nothing is published before the last chunk.
    #[test]
    fn a_snapshot_in_chunks_is_applied_whole_after_its_last_chunk() {
        let id = Uuid::new_v4();
        let records = snapshot_records(id);
        let mut messages: Vec<MetadataUpdate> = records
            .chunks(2)
            .map(|chunk| MetadataUpdate {
                more: true,
                ..update(10, true, chunk)
            })
            .collect();
        assert!(messages.len() >= 3, "the test splits the snapshot");
        messages.last_mut().expect("chunks").more = false;

        let mut chunks = Chunks::default();
        let last = messages.pop().expect("chunks");
        for message in messages {
            assert_eq!(chunks.push(message), Ok(None), "held until the last chunk");
        }
        let whole = chunks.push(last).expect("continues").expect("complete");
        assert_eq!(whole.records.len(), records.len());
        assert!(!whole.more);

        let cache = MetadataCache::new();
        assert_eq!(cache.apply(&[whole]).ok(), Some(Applied::Snapshot));
        let image = cache.current();
        assert_eq!(image.offset, 10);
        assert_eq!(image.brokers.len(), 2);
        assert_eq!(
            partition_leader(&image, "orders", 1, "PLAINTEXT").map(|l| l.broker_id),
            Ok(2)
        );

        // A message that is not the next chunk of the pending update breaks the stream.
        let mut chunks = Chunks::default();
        let first = MetadataUpdate {
            more: true,
            ..update(20, true, &records[..2])
        };
        assert_eq!(chunks.push(first), Ok(None));
        let err = chunks
            .push(update(21, false, &records[2..]))
            .expect_err("another offset");
        assert!(err.contains("offset 20 stopped after 2 records"), "{err}");
        // A single-message update passes straight through.
        let single = update(22, false, &records[..1]);
        assert_eq!(Chunks::default().push(single.clone()), Ok(Some(single)));
    }

    /// A controller that serves `WatchMetadata` from `updates` (then holds the stream open) and
    /// records each watch's `from_offset`; it answers `BrokerHeartbeat` only when `active`, and
    /// every other call as unavailable.
    #[derive(Clone)]
    struct FakeController {
        updates: Vec<MetadataUpdate>,
        active: bool,
        watches: Arc<Mutex<Vec<u64>>>,
    }

    type Events<T> =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, tonic::Status>> + Send>>;

    #[tonic::async_trait]
    impl pb::broker_service_server::BrokerService for FakeController {
        async fn register_broker(
            &self,
            _: tonic::Request<pb::RegisterBrokerRequest>,
        ) -> Result<tonic::Response<pb::RegisterBrokerResponse>, tonic::Status> {
            Err(tonic::Status::unavailable("fake"))
        }

        async fn broker_heartbeat(
            &self,
            _: tonic::Request<pb::BrokerHeartbeatRequest>,
        ) -> Result<tonic::Response<pb::BrokerHeartbeatResponse>, tonic::Status> {
            if self.active {
                Ok(tonic::Response::new(pb::BrokerHeartbeatResponse::default()))
            } else {
                Err(tonic::Status::unavailable("not the active controller"))
            }
        }

        async fn alter_partition(
            &self,
            _: tonic::Request<pb::AlterPartitionRequest>,
        ) -> Result<tonic::Response<pb::AlterPartitionResponse>, tonic::Status> {
            Err(tonic::Status::unavailable("fake"))
        }

        async fn allocate_producer_ids(
            &self,
            _: tonic::Request<pb::AllocateProducerIdsRequest>,
        ) -> Result<tonic::Response<pb::AllocateProducerIdsResponse>, tonic::Status> {
            Err(tonic::Status::unavailable("fake"))
        }

        type WatchMetadataStream = Events<MetadataUpdate>;

        async fn watch_metadata(
            &self,
            request: tonic::Request<pb::WatchMetadataRequest>,
        ) -> Result<tonic::Response<Self::WatchMetadataStream>, tonic::Status> {
            let from_offset = request.into_inner().from_offset;
            self.watches.lock().unwrap().push(from_offset);
            let updates: Vec<_> = self
                .updates
                .iter()
                .filter(|u| u.offset > from_offset)
                .cloned()
                .map(Ok)
                .collect();
            Ok(tonic::Response::new(Box::pin(
                futures::stream::iter(updates).chain(futures::stream::pending()),
            )))
        }

        type BrokerSessionStream = Events<pb::BrokerSessionEvent>;

        async fn broker_session(
            &self,
            _: tonic::Request<pb::BrokerSessionRequest>,
        ) -> Result<tonic::Response<Self::BrokerSessionStream>, tonic::Status> {
            Err(tonic::Status::unavailable("fake"))
        }

        async fn report_unreachable_broker(
            &self,
            _: tonic::Request<pb::ReportUnreachableBrokerRequest>,
        ) -> Result<tonic::Response<pb::ReportUnreachableBrokerResponse>, tonic::Status> {
            Err(tonic::Status::unavailable("fake"))
        }
    }

    /// Serves `fake` on a port of its own until `stop` fires; its address.
    fn serve(fake: FakeController, stop: &CancellationToken) -> String {
        let incoming =
            tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = incoming.local_addr().unwrap().to_string();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(pb::broker_service_server::BrokerServiceServer::new(fake))
                .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned()),
        );
        address
    }

    /// A follower controller applies a committed entry only once the leader's next AppendEntries
    /// says it is committed: a broker following one saw every change up to a Raft heartbeat late
    /// (issue #18). Once the broker's client finds another controller active, the metadata
    /// stream moves there, resuming from the offset the broker has.
    #[tokio::test]
    async fn the_metadata_stream_moves_to_the_controller_found_active() {
        let id = Uuid::new_v4();
        let snapshot = update(10, true, &snapshot_records(id));
        let change = Record::PartitionChange(PartitionChangeRecord {
            topic_id: id,
            partition: 0,
            leader: Some(2),
            ..Default::default()
        });
        let stop = CancellationToken::new();
        let follower = FakeController {
            updates: vec![snapshot.clone()],
            active: false,
            watches: Arc::default(),
        };
        let leader = FakeController {
            updates: vec![snapshot, update(11, false, &[change])],
            active: true,
            watches: Arc::default(),
        };
        let (follower_watches, leader_watches) = (follower.watches.clone(), leader.watches.clone());
        // The follower first: with no controller known active, the stream opens there.
        let addresses = vec![serve(follower, &stop), serve(leader, &stop)];
        let client = Arc::new(ControllerClient::new(addresses, Duration::from_secs(5)).unwrap());
        let cache = Arc::new(MetadataCache::new());
        tokio::spawn(run_metadata_watch(
            cache.clone(),
            client.clone(),
            stop.clone(),
        ));
        cache
            .wait_for_offset(10, Duration::from_secs(10))
            .await
            .expect("the snapshot arrives");
        assert_eq!(*follower_watches.lock().unwrap(), vec![0]);
        assert!(leader_watches.lock().unwrap().is_empty());

        // A heartbeat finds the leader (the follower refuses it), and the stream follows.
        client
            .broker_heartbeat(pb::BrokerHeartbeatRequest::default())
            .await
            .expect("the leader answers");
        assert_eq!(
            client.active_controller(),
            Some(client.addresses()[1].clone())
        );
        let image = cache
            .wait_for_offset(11, Duration::from_secs(10))
            .await
            .expect("the leader's entry arrives");
        assert_eq!(
            partition_leader(&image, "orders", 0, "PLAINTEXT").map(|l| l.broker_id),
            Ok(2)
        );
        assert_eq!(
            *leader_watches.lock().unwrap(),
            vec![10],
            "resumed where it was"
        );
        stop.cancel();
    }

    #[test]
    fn updates_at_or_below_the_current_offset_are_skipped() {
        let cache = MetadataCache::new();
        let id = Uuid::new_v4();
        cache
            .apply(&[update(10, true, &snapshot_records(id))])
            .expect("applies");
        let before = cache.current();
        let remove = Record::RemoveTopic { topic_id: id };
        assert_eq!(
            cache
                .apply(&[update(10, false, std::slice::from_ref(&remove))])
                .ok(),
            Some(Applied::Stale)
        );
        assert_eq!(
            cache.apply(&[update(9, false, &[remove])]).ok(),
            Some(Applied::Stale)
        );
        assert_eq!(
            cache.apply(&[update(3, true, &[])]).ok(),
            Some(Applied::Stale)
        );
        assert!(
            Arc::ptr_eq(&before, &cache.current()),
            "nothing was published"
        );
        assert!(cache.current().topic_by_name("orders").is_some());
    }

    #[test]
    fn a_new_snapshot_replaces_the_image() {
        let cache = MetadataCache::new();
        let old = Uuid::new_v4();
        cache
            .apply(&[update(10, true, &snapshot_records(old))])
            .expect("applies");
        let new = Uuid::new_v4();
        let mut records = vec![register(3, 9094)];
        records.extend(topic("payments", new, &[NO_LEADER]));
        let applied = cache.apply(&[update(20, true, &records)]).expect("applies");
        assert_eq!(applied, Applied::Snapshot);
        let image = cache.current();
        assert_eq!(image.offset, 20);
        assert!(
            image.topic_by_name("orders").is_none(),
            "old topics are gone"
        );
        assert_eq!(image.brokers.keys().copied().collect::<Vec<_>>(), vec![3]);
        assert_eq!(
            image.cluster_id, None,
            "nothing survives from the old image"
        );
        assert_eq!(
            partition_leader(&image, "payments", 0, "PLAINTEXT"),
            Err(LeaderLookupError::LeaderNotAvailable)
        );
        assert_eq!(
            partition_leader(&image, "payments", 1, "PLAINTEXT"),
            Err(LeaderLookupError::UnknownTopicOrPartition)
        );
    }

    #[test]
    fn an_undecodable_record_changes_nothing_of_its_update() {
        let cache = MetadataCache::new();
        let id = Uuid::new_v4();
        let good = update(10, true, &snapshot_records(id));
        let mut bad = update(11, false, &[Record::RemoveTopic { topic_id: id }]);
        bad.records.push(pb::MetadataRecord { record: None });
        let later = update(12, false, &[]);
        assert!(cache.apply(&[good, bad, later]).is_err());
        let image = cache.current();
        assert_eq!(image.offset, 10, "the updates before the bad one are kept");
        assert!(
            image.topic_by_name("orders").is_some(),
            "the bad update's good record was not applied"
        );
    }

    #[test]
    fn queries_answer_from_one_image() {
        let cache = MetadataCache::new();
        let id = Uuid::new_v4();
        let mut records = snapshot_records(id);
        records.extend(topic("audit", Uuid::new_v4(), &[1, NO_LEADER, 1]));
        cache.apply(&[update(5, true, &records)]).expect("applies");
        let image = cache.current();
        assert_eq!(
            partition_counts(&image, 1),
            PartitionCounts {
                partitions: 5,
                leaderless: 1,
                led: 3,
                replicated: 5,
            }
        );
        assert_eq!(
            broker_endpoint(&image, 2, "PLAINTEXT").map(|e| e.port),
            Some(9093)
        );
        assert_eq!(broker_endpoint(&image, 2, "INTERNAL"), None);
        assert_eq!(broker_endpoint(&image, 9, "PLAINTEXT"), None);
        assert_eq!(
            partition_leader(&image, "nope", 0, "PLAINTEXT"),
            Err(LeaderLookupError::UnknownTopicOrPartition)
        );
    }

    #[tokio::test]
    async fn wait_for_offset_returns_once_the_image_gets_there() {
        let cache = Arc::new(MetadataCache::new());
        let error = cache
            .wait_for_offset(1, Duration::from_millis(20))
            .await
            .unwrap_err();
        assert!(matches!(
            error,
            BrokerError::MetadataTimeout {
                offset: 1,
                current: 0,
                ..
            }
        ));
        let waiter = {
            let cache = cache.clone();
            tokio::spawn(async move { cache.wait_for_offset(7, Duration::from_secs(10)).await })
        };
        cache.apply(&[update(7, false, &[])]).expect("applies");
        let image = waiter.await.expect("joins").expect("reached");
        assert_eq!(image.offset, 7);
    }
}
