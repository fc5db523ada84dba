//! `ReplicaManager`: the partitions hosted here, kept in step with the metadata image, and the leader's
//! append path.
//!
//! What must stay true:
//! - becoming leader never moves the high watermark past what the ISR is known to hold (see
//!   [`Partition`]); the log end of a new leader is not committed until its followers say so;
//! - an acks=all append is acknowledged only when the high watermark *of the leader epoch it was
//!   written in* covers it, with the ISR at `min.insync.replicas` — an idempotent retry answered
//!   from the producer state (a duplicate) included: its original may not be committed yet;
//! - every change a long poll or an acks=all wait may be waiting for wakes it: a change to one
//!   partition (an append, a high watermark or log start move) through that partition's channel
//!   ([`ReplicaManager::partition_changed`]), anything else (roles, ISR, metadata) through
//!   [`ReplicaManager::subscribe_all_partitions`]. Both also bump [`ReplicaManager::subscribe_data`].

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use bytes::Bytes;
use chronik_metadata::configs::{effective_min_insync_replicas, effective_topic_configs};
use chronik_metadata::records::LeaderRecoveryState;
use chronik_metadata::{BrokerId, MetadataImage, PartitionRegistration, TopicId, TopicImage};
use kafka_protocol::error::ResponseError;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::partition::{Partition, PartitionState};
use crate::log::batch::{BatchHeader, Compression};
use crate::log::txn_marker::EndTxnMarker;
use crate::log::{AppendInfo, LogConfig, LogError, LogManager, PartitionLog, VerificationGuard};
use crate::metadata::MetadataCache;
use crate::status::BrokerStatus;

/// An ISR change a partition leader asks of the controller (AlterPartition).
pub struct IsrChange {
    pub partition: Arc<Partition>,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// `(broker, broker epoch or -1)`.
    pub new_isr: Vec<(BrokerId, i64)>,
    /// `Some(Recovered)` when the leader of an uncleanly elected partition clears RECOVERING
    /// (KIP-704); `None` leaves the recovery state as it is.
    pub leader_recovery_state: Option<LeaderRecoveryState>,
}

/// An append that is written but not yet acknowledged (see `ReplicaManager::complete_append`).
pub struct PendingAppend {
    partition: Arc<Partition>,
    info: AppendInfo,
    /// The leader epoch the append was made in: only this epoch's high watermark acknowledges it.
    leader_epoch: i32,
}

/// Why a leader append was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("this broker does not lead the partition")]
    NotLeader,
    #[error("the in-sync replicas ({isr}) are fewer than min.insync.replicas ({min})")]
    NotEnoughReplicas { isr: usize, min: usize },
    #[error("the ISR shrank below min.insync.replicas after the append")]
    NotEnoughReplicasAfterAppend,
    #[error("the in-sync replicas did not confirm the write in time")]
    TimedOut,
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("storage task failed: {0}")]
    Storage(String),
}

impl AppendError {
    /// The Kafka error a producer is answered with (the group coordinator, which writes through the
    /// same path, translates these into its own codes as Kafka's `GroupMetadataManager` does).
    pub fn kafka_error(&self) -> ResponseError {
        match self {
            AppendError::NotLeader => ResponseError::NotLeaderOrFollower,
            AppendError::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas,
            AppendError::NotEnoughReplicasAfterAppend => {
                ResponseError::NotEnoughReplicasAfterAppend
            }
            AppendError::TimedOut => ResponseError::RequestTimedOut,
            AppendError::Log(log) => log.kafka_error(),
            AppendError::Storage(_) => ResponseError::KafkaStorageError,
        }
    }
}

pub struct ReplicaManager {
    broker_id: BrokerId,
    logs: Arc<LogManager>,
    partitions: RwLock<HashMap<(TopicId, i32), Arc<Partition>>>,
    /// Bumped whenever readable data may have changed (appends, high watermarks, roles), for waiters
    /// that are few and not on the data path (coordinators loading, ISR changes, DeleteRecords).
    data_version: watch::Sender<u64>,
    /// Bumped when one partition's readable data may have changed ([`ReplicaManager::partition_changed`]),
    /// not for roles: what a long poll over many partitions waits on beside the roles version, so
    /// that it tells the two apart.
    partition_data_version: watch::Sender<u64>,
    /// Bumped for changes that are not one partition's (roles, ISR, metadata): the fetches and
    /// acks=all appends parked on single partitions wait on it as well as on theirs, so an append
    /// wakes only what waits on its own partition.
    all_partitions_version: watch::Sender<u64>,
    isr_changes: mpsc::UnboundedSender<IsrChange>,
    /// Every registered broker's epoch and whether it may join an ISR (unfenced, not shutting down,
    /// no offline log dir), from the last applied image.
    brokers: RwLock<HashMap<BrokerId, (i64, bool)>>,
    /// The registered brokers that are not fenced (Kafka's `MetadataCache.hasAliveBroker`): the
    /// replicas the low watermark counts.
    alive_brokers: RwLock<HashSet<BrokerId>>,
    /// Leaders this broker's replica fetcher lost (see `LeaderLoss`), with the registration's broker
    /// epoch at the time; cleared when a fetcher's new connection answers a fetch.
    lost_leaders: RwLock<HashMap<BrokerId, (i64, LeaderLoss)>>,
    /// Bumped when a leader's registration is first found refusing connections (see
    /// `refused_leaders`).
    refusals: watch::Sender<u64>,
    /// A duplicate of each replica fetcher's current connection to its leader, with the probe's id.
    leader_probes: Mutex<HashMap<BrokerId, (u64, socket2::Socket)>>,
    next_probe: AtomicU64,
    /// The offset of the last metadata image applied to the partitions: the image Metadata answers
    /// from can be ahead of it for the moment a new partition's log takes to open.
    applied_offset: watch::Sender<u64>,
    /// Partitions this broker replicates whose log could not be opened (out of descriptors, a full or
    /// read-only disk), with the error; retried every `UNOPENED_RETRY` and reported by `/readyz` and
    /// `/metrics`, so a partition that never opens is not silently dead.
    unopened: Mutex<BTreeMap<(String, i32), String>>,
    /// The image the partitions were last brought in line with: the next one is compared with it
    /// (see [`ReplicaManager::apply_metadata`]). Its lock serialises appliers.
    last_applied: Mutex<Option<LastApplied>>,
    /// When each follower was last seen fetching from this broker, any partition (see
    /// [`ReplicaManager::note_follower_contact`]).
    follower_contact: Mutex<HashMap<BrokerId, Instant>>,
    /// What the last walk of [`ReplicaManager::shrink_lagging_isrs`] found, to skip walks that
    /// cannot find anything.
    isr_scan: Mutex<IsrScan>,
    /// The partitions each recent move of the roles version touched (see
    /// [`ReplicaManager::roles_changed_since`]). Its lock is held while the version moves.
    roles_journal: Mutex<RolesJournal>,
}

/// The partitions each recent roles change touched, so that what follows roles (the replica
/// fetchers, their sessions, the ISR walk) looks at those rather than at every hosted partition on
/// every change, as Kafka's `ReplicaManager.applyDelta` hands its fetchers only the partitions of a
/// delta (issue #18: at 100,000 partitions these walks kept both cores of a broker busy for a
/// tenth of a second after each topic created anywhere).
#[derive(Default)]
struct RolesJournal {
    /// Oldest first: the roles version a change moved to, and the partitions it touched (opened,
    /// given a new state, or removed; a change of no partition's roles touches none).
    changes: VecDeque<(u64, Vec<Touched>)>,
    /// What `changes` holds: its partitions plus one per change.
    held: usize,
    /// Every change after this roles version is in `changes`.
    since: u64,
}

/// A partition a roles change touched, as the roles journal keeps it: by key, and by a weak handle,
/// so that the journal keeps no deleted partition (and its log's open files) alive.
#[derive(Clone)]
pub struct Touched {
    pub topic_id: TopicId,
    pub index: i32,
    partition: Weak<Partition>,
}

impl Touched {
    pub fn of(partition: &Arc<Partition>) -> Self {
        Self {
            topic_id: partition.topic_id,
            index: partition.index,
            partition: Arc::downgrade(partition),
        }
    }

    /// The partition, unless it was deleted since (and nothing else holds it). A partition that
    /// is no longer hosted may still be returned: see [`Partition::is_hosted`].
    pub fn partition(&self) -> Option<Arc<Partition>> {
        self.partition.upgrade()
    }
}

/// The most partitions (plus changes) the roles journal keeps. A change touching more (a topic of
/// thousands of partitions created, a broker fenced) empties it: whoever follows roles then walks
/// every partition once, as for any change before the journal.
pub(super) const ROLES_JOURNAL_CAPACITY: usize = 4096;

/// What the last ISR walk found (see [`ReplicaManager::shrink_lagging_isrs`]).
#[derive(Default)]
struct IsrScan {
    /// When it ran; `None` before the first.
    at: Option<Instant>,
    /// The roles version (`all_partitions_version`) it saw: leadership and ISRs as they were.
    roles_version: u64,
    /// Whether any ISR member was behind its leader's log end, or any partition was proposed for a
    /// change or awaits one (RECOVERING): then every tick walks, as the lag rule needs.
    unsettled: bool,
    /// The followers in the ISRs of the partitions led here.
    members: HashSet<BrokerId>,
    /// Walks of every partition done, for tests.
    walks: u64,
    /// Walks of only the partitions whose roles changed, for tests.
    partial_walks: u64,
}

/// Which partitions [`ReplicaManager::shrink_lagging_isrs`] looks at.
enum IsrWalk {
    Skip,
    All,
    /// The partitions whose roles changed since the last walk.
    Touched(Vec<Touched>),
}

/// What a walk of [`ReplicaManager::shrink_lagging_isrs`] found (see [`IsrScan`]).
#[derive(Default)]
struct IsrFindings {
    unsettled: bool,
    members: HashSet<BrokerId>,
}

/// The image `apply_metadata` applied last.
struct LastApplied {
    /// A copy: one reference count per topic (`MetadataImage` keeps topics behind an `Arc`).
    image: MetadataImage,
    authoritative: bool,
}

/// What one [`ReplicaManager::apply_metadata`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppliedMetadata {
    /// Every partition of the image was looked at: no earlier image to compare with, or the first
    /// authoritative one after images that were not (every hosted partition and directory checked
    /// for deletion).
    pub full: bool,
    /// Partitions this broker replicates that were brought in line with the image (opened, given
    /// their configs and state); the others were as the last image left them.
    pub partitions: usize,
    /// Hosted partitions deleted because the image no longer gives them to this broker.
    pub removed: usize,
}

/// A partition of the image this broker replicates, with what `apply_metadata` gives it.
struct Assignment<'a> {
    topic: &'a TopicImage,
    index: i32,
    registration: &'a PartitionRegistration,
    config: LogConfig,
    min_insync_replicas: usize,
}

/// The log config of `topic`'s partitions: its effective topic configs (its own, else the cluster's,
/// else the defaults).
fn topic_log_config(image: &MetadataImage, topic: &TopicImage) -> LogConfig {
    let configs = effective_topic_configs(image, &topic.configs);
    LogConfig::from_effective(&configs).unwrap_or_else(|e| {
        warn!(topic = %topic.name, "invalid log config, using defaults: {e}");
        LogConfig::default()
    })
}

/// Threads opening new partition logs at once (see `open_new_logs`).
const OPEN_THREADS: usize = 8;

/// How often the partitions whose log could not be opened are tried again.
pub const UNOPENED_RETRY: Duration = Duration::from_secs(2);

/// A partition this broker replicates whose log could not be opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnopenedLog {
    pub topic: String,
    pub partition: i32,
    pub error: String,
}

/// Keeps a duplicate of a replica fetcher's connection to a leader registered for as long as the
/// fetcher holds the connection, so Metadata can ask the kernel whether the leader's end has closed,
/// however busy the fetcher task is: a client whose own connection to a dead leader just closed asks
/// for metadata within a millisecond, and the fetcher may not have run yet. Dropped with the
/// connection (the duplicate descriptor is closed then too, so the connection closes with it).
pub struct LeaderProbe {
    replicas: Arc<ReplicaManager>,
    leader: BrokerId,
    id: u64,
}

impl Drop for LeaderProbe {
    fn drop(&mut self) {
        let mut probes = self
            .replicas
            .leader_probes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if probes
            .get(&self.leader)
            .is_some_and(|(id, _)| *id == self.id)
        {
            probes.remove(&self.leader);
        }
    }
}

/// Whether the peer of `socket` has closed or reset it, asked of the kernel without waiting. Polled
/// for POLLRDHUP, which reports the peer's FIN even behind response bytes the fetcher has not read
/// yet (a peek would see only the bytes).
fn peer_closed(socket: &socket2::Socket) -> bool {
    use std::os::fd::AsRawFd;
    let mut pollfd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one initialised `pollfd` for a descriptor `socket` owns and keeps open for the call,
    // and a timeout of zero: nothing is retained past it.
    let ready = unsafe { libc::poll(&mut pollfd, 1, 0) };
    ready > 0 && pollfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// How long a leader whose serving fetch connection just closed counts as gone without
/// further evidence: the fetcher reconnects at once, and a dead process's port refuses that within
/// a millisecond (`LeaderLoss::Refused`), while a live one accepts it. Past this a leader that
/// neither refused nor accepted (a network fault swallows the connect) is named again: only the
/// controller decides that a broker that may be alive is gone.
pub const DROPPED_LEADER_WINDOW: Duration = Duration::from_millis(500);

/// What the replica fetcher saw of a leader it lost.
#[derive(Debug, Clone, Copy)]
enum LeaderLoss {
    /// A connection that had answered a fetch closed, at this instant; the reconnect is under way.
    Dropped(Instant),
    /// The leader's listener refused the reconnect (ECONNREFUSED: the host answers but nothing
    /// listens on the port): the process is gone.
    Refused,
}

/// Whether a leader appends `batch` on the request's own task, as Kafka's request handler threads
/// do, rather than on the blocking pool. Validating and writing a batch into the page cache takes
/// microseconds, far less than handing it to a blocking thread and back (those hand-offs' futex
/// wake-ups were a fifth of the brokers' CPU, issue #15). A large compressed batch is the exception:
/// the validation decompresses every record, which can take milliseconds of a runtime thread.
fn append_inline(batch: &[u8]) -> bool {
    const INLINE_COMPRESSED_BYTES: usize = 64 * 1024;
    const INLINE_BYTES: usize = 2 * 1024 * 1024;
    match BatchHeader::parse(batch) {
        Ok(header) if header.compression() == Compression::None => batch.len() <= INLINE_BYTES,
        Ok(_) => batch.len() <= INLINE_COMPRESSED_BYTES,
        // Refused at its first check.
        Err(_) => true,
    }
}

/// Whether a producer's `batch` would roll `log`'s active segment when appended now: the roll's
/// fsyncs then run on the blocking pool, not on the request's task (see `append_inline`).
fn leader_append_would_roll(log: &PartitionLog, batch: &[u8]) -> bool {
    BatchHeader::parse(batch).is_ok_and(|header| {
        let delta = i64::from(header.last_offset_delta);
        log.append_would_roll(batch.len(), |leo| leo + delta, header.max_timestamp)
    })
}

impl ReplicaManager {
    /// A replica manager; the ISR changes its leaders ask for go to `isr_changes` (see
    /// `isr::run_isr_changes`).
    pub fn new(
        broker_id: BrokerId,
        logs: Arc<LogManager>,
        isr_changes: mpsc::UnboundedSender<IsrChange>,
    ) -> Self {
        Self {
            broker_id,
            logs,
            partitions: RwLock::new(HashMap::new()),
            data_version: watch::channel(0).0,
            partition_data_version: watch::channel(0).0,
            all_partitions_version: watch::channel(0).0,
            isr_changes,
            brokers: RwLock::new(HashMap::new()),
            alive_brokers: RwLock::new(HashSet::new()),
            lost_leaders: RwLock::new(HashMap::new()),
            refusals: watch::channel(0).0,
            leader_probes: Mutex::new(HashMap::new()),
            next_probe: AtomicU64::new(0),
            applied_offset: watch::channel(0).0,
            unopened: Mutex::new(BTreeMap::new()),
            last_applied: Mutex::new(None),
            follower_contact: Mutex::new(HashMap::new()),
            isr_scan: Mutex::new(IsrScan::default()),
            roles_journal: Mutex::new(RolesJournal::default()),
        }
    }

    /// Notes that a fetch of `follower` (at its current broker epoch) is being served: called on
    /// every pass of the fetch and when it is answered. The ISR's stall rule counts a follower's
    /// silence from the later of this and its last fetch of the partition. With tens of thousands
    /// of partitions in one fetch, a round (the long poll, reading every partition here, the
    /// follower appending and asking again) can take longer than the stall time on a loaded host;
    /// counted per partition alone, every partition then looked stalled at once: at 100,000
    /// partitions (RF 3, 3 brokers on 2 cores) the brokers proposed 200,000–300,000 ISR removals
    /// in minutes, whose AlterPartition entries kept the controller quorum too busy to commit
    /// (issue #18). A follower that stopped, or was cut off, sends nothing and is still removed
    /// within the stall time; one that fetches but stays behind leaves by the lag rule.
    pub fn note_follower_contact(&self, follower: BrokerId) {
        self.follower_contact
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(follower, Instant::now());
    }

    fn follower_contact(&self, follower: BrokerId) -> Option<Instant> {
        self.follower_contact
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&follower)
            .copied()
    }

    /// The partitions this broker replicates whose log could not be opened, by topic and partition.
    pub fn unopened_logs(&self) -> Vec<UnopenedLog> {
        self.unopened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|((topic, partition), error)| UnopenedLog {
                topic: topic.clone(),
                partition: *partition,
                error: error.clone(),
            })
            .collect()
    }

    fn has_unopened_logs(&self) -> bool {
        !self
            .unopened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Waits (at most `max`) until the partitions reflect the metadata image at `offset`: a request
    /// decided on that image (a Produce to a partition Metadata just named this broker the leader of)
    /// must not be refused because the partition's log is still opening. Kafka's window between its
    /// metadata cache and `ReplicaManager.applyDelta` is short; ours spans a log open and its fsyncs.
    pub async fn wait_applied(&self, offset: u64, max: Duration) {
        // The common case on every Produce: nothing to wait for, no timer to arm.
        if *self.applied_offset.borrow() >= offset {
            return;
        }
        let mut applied = self.applied_offset.subscribe();
        let _ = tokio::time::timeout(max, applied.wait_for(|applied| *applied >= offset)).await;
    }

    /// A replica fetcher's connection to `leader`, which had answered fetches, closed. Its
    /// clients' connections closed at the same moment and they are asking where the leader went:
    /// until the reconnect tells more (or `DROPPED_LEADER_WINDOW` passes), Metadata answers the
    /// leader's partitions as leaderless, so librdkafka keeps asking on its fast leader-query timer
    /// instead of waiting out a second; see `handlers/metadata.rs`.
    pub fn note_leader_dropped(&self, leader: BrokerId) {
        self.note_leader_lost(leader, LeaderLoss::Dropped(Instant::now()));
    }

    /// Registers a duplicate of a replica fetcher's new connection to `leader` (see `LeaderProbe`);
    /// `None` if the descriptor cannot be duplicated (the fetcher works on without).
    pub fn probe_leader_connection(
        self: &Arc<Self>,
        leader: BrokerId,
        stream: &tokio::net::TcpStream,
    ) -> Option<LeaderProbe> {
        let socket = socket2::SockRef::from(stream).try_clone().ok()?;
        let id = self.next_probe.fetch_add(1, Ordering::Relaxed);
        self.leader_probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(leader, (id, socket));
        Some(LeaderProbe {
            replicas: self.clone(),
            leader,
            id,
        })
    }

    /// A replica fetcher's connection to `leader` was refused (ECONNREFUSED). Until the controller
    /// fences it (its session stream closed at the same moment), Metadata answers its partitions as
    /// leaderless.
    pub fn note_leader_refused(&self, leader: BrokerId) {
        self.note_leader_lost(leader, LeaderLoss::Refused);
    }

    fn note_leader_lost(&self, leader: BrokerId, loss: LeaderLoss) {
        let epoch = self
            .brokers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&leader)
            .map(|&(epoch, _)| epoch);
        let Some(epoch) = epoch else { return };
        let mut lost = self.lost_leaders.write().unwrap_or_else(|e| e.into_inner());
        let first = !matches!(lost.get(&leader), Some((e, LeaderLoss::Refused)) if *e == epoch);
        lost.insert(leader, (epoch, loss));
        drop(lost);
        if first {
            match loss {
                LeaderLoss::Dropped(_) => {
                    info!(
                        leader,
                        broker_epoch = epoch,
                        "replica fetcher's connection to the leader closed"
                    )
                }
                LeaderLoss::Refused => {
                    info!(
                        leader,
                        broker_epoch = epoch,
                        "leader refused the replica fetcher's connection"
                    );
                    self.refusals.send_modify(|n| *n += 1);
                }
            }
        }
    }

    /// The leaders (with their registration's broker epoch) whose listener refused a fetcher's
    /// connection and that no fetcher reached since: evidence the controller takes, together with
    /// the leader's closed session stream, to fence it without waiting out the grace
    /// (`lifecycle::run_unreachable_reports`).
    pub fn refused_leaders(&self) -> Vec<(BrokerId, i64)> {
        self.lost_leaders
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, (_, loss))| matches!(loss, LeaderLoss::Refused))
            .map(|(&id, &(epoch, _))| (id, epoch))
            .collect()
    }

    /// Changes whenever a leader is first found refusing connections.
    pub fn refusal_changes(&self) -> watch::Receiver<u64> {
        self.refusals.subscribe()
    }

    /// A replica fetcher connected to `leader` (or stopped following it).
    pub fn note_leader_reachable(&self, leader: BrokerId) {
        self.lost_leaders
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&leader);
    }

    /// The brokers whose current registration (in `image`) this broker's fetchers found gone: whose
    /// end of a fetcher's connection is closed now, that refused a reconnect, or that dropped a
    /// connection that had served less than `DROPPED_LEADER_WINDOW` ago.
    pub fn lost_leaders(&self, image: &MetadataImage) -> HashSet<BrokerId> {
        let mut lost: HashSet<BrokerId> = self
            .leader_probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, (_, socket))| peer_closed(socket))
            .map(|(&id, _)| id)
            .collect();
        let noted = self
            .lost_leaders
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(id, (epoch, loss))| {
                let current = image
                    .brokers
                    .get(id)
                    .is_some_and(|b| b.broker_epoch == *epoch);
                current
                    && match loss {
                        LeaderLoss::Refused => true,
                        LeaderLoss::Dropped(at) => at.elapsed() < DROPPED_LEADER_WINDOW,
                    }
            })
            .map(|(&id, _)| id)
            .collect::<Vec<_>>();
        lost.extend(noted);
        lost
    }

    /// Whether `follower`, fetching under `broker_epoch`, may be proposed for an ISR (Kafka's
    /// `Partition.isReplicaIsrEligible`): the controller refuses anything else with
    /// INELIGIBLE_REPLICA, so asking would only load it, once per fetch. A broker the image does not
    /// know yet is not judged here.
    fn isr_eligible(&self, follower: BrokerId, broker_epoch: i64) -> bool {
        self.brokers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&follower)
            .is_none_or(|&(epoch, active)| active && (broker_epoch < 0 || broker_epoch == epoch))
    }

    /// Wakes long polls and acks=all waits on every partition after a change of `partitions`' roles
    /// or ISR change state made outside [`ReplicaManager::apply_metadata`].
    pub fn roles_changed(&self, partitions: Vec<Arc<Partition>>) {
        self.notify_all(Some(partitions));
    }

    /// Wakes what waits on `partition` alone: its data, high watermark or log start may have moved.
    pub fn partition_changed(&self, partition: &Partition) {
        partition.notify_changed();
        self.partition_data_version
            .send_modify(|v| *v = v.wrapping_add(1));
        self.data_version.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub fn broker_id(&self) -> BrokerId {
        self.broker_id
    }

    pub fn logs(&self) -> &Arc<LogManager> {
        &self.logs
    }

    pub fn partition(&self, topic_id: TopicId, index: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(topic_id, index))
            .cloned()
    }

    /// How many partitions this broker hosts: their logs are open.
    pub fn hosted_partitions(&self) -> usize {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Every hosted partition.
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Changes whenever data may have become readable, on any partition.
    pub fn subscribe_data(&self) -> watch::Receiver<u64> {
        self.data_version.subscribe()
    }

    /// Changes whenever one partition's data may have become readable (not for roles: see
    /// [`ReplicaManager::subscribe_all_partitions`]).
    pub fn subscribe_partition_data(&self) -> watch::Receiver<u64> {
        self.partition_data_version.subscribe()
    }

    /// Changes when something that is not one partition's changes (roles, ISR, metadata); waiters on
    /// a partition watch this and [`Partition::subscribe_changes`].
    pub fn subscribe_all_partitions(&self) -> watch::Receiver<u64> {
        self.all_partitions_version.subscribe()
    }

    /// The version [`ReplicaManager::subscribe_all_partitions`] is at: it moves with every change
    /// that is not one partition's data (roles, ISR, hosting). While it and the metadata image stay
    /// the same, every hosted partition keeps its handle, leader, leader epoch and replicas (what a
    /// fetch session's cached resolution relies on).
    pub fn roles_version(&self) -> u64 {
        *self.all_partitions_version.borrow()
    }

    /// Moves the roles version for a change of the `touched` partitions' roles (`None`: of any
    /// partition's), recording which in the journal, and wakes every waiter.
    fn notify_all(&self, touched: Option<Vec<Arc<Partition>>>) {
        let mut journal = self.roles_journal.lock().unwrap_or_else(|e| e.into_inner());
        let mut version = 0;
        self.all_partitions_version.send_modify(|v| {
            *v = v.wrapping_add(1);
            version = *v;
        });
        match touched {
            Some(touched) if touched.len() < ROLES_JOURNAL_CAPACITY => {
                journal.held += touched.len() + 1;
                let touched = touched.iter().map(Touched::of).collect();
                journal.changes.push_back((version, touched));
                while journal.held > ROLES_JOURNAL_CAPACITY {
                    let Some((dropped, partitions)) = journal.changes.pop_front() else {
                        break;
                    };
                    journal.held -= partitions.len() + 1;
                    journal.since = dropped;
                }
            }
            _ => {
                journal.changes.clear();
                journal.held = 0;
                journal.since = version;
            }
        }
        drop(journal);
        self.data_version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The partitions whose roles changed after roles version `version` (each as often as a change
    /// touched it; removed ones are retired or gone), with the roles version they bring the caller
    /// to; `None` when the journal no longer reaches back that far, and every hosted partition must
    /// be looked at instead. Whatever the caller decides from a partition it reads from its current
    /// state.
    pub fn roles_changed_since(&self, version: u64) -> Option<(u64, Vec<Touched>)> {
        let journal = self.roles_journal.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.roles_version();
        if version < journal.since || version > current {
            return None;
        }
        let touched = journal
            .changes
            .iter()
            .filter(|(moved_to, _)| *moved_to > version)
            .flat_map(|(_, partitions)| partitions.iter().cloned())
            .collect();
        Some((current, touched))
    }

    /// Appends one producer batch as the partition's leader. The batch is written (in the order calls
    /// are made) but not yet durable: `complete_append` makes it so and publishes it.
    pub async fn append_as_leader(
        &self,
        partition: &Arc<Partition>,
        batch: Bytes,
        required_acks: i16,
    ) -> Result<PendingAppend, AppendError> {
        self.append_as_leader_verified(partition, batch, required_acks, None)
            .await
    }

    /// [`ReplicaManager::append_as_leader`] of a transactional batch the coordinator verified under
    /// `guard` (KIP-890, see `PartitionLog::append_as_leader_verified`).
    pub async fn append_as_leader_verified(
        &self,
        partition: &Arc<Partition>,
        batch: Bytes,
        required_acks: i16,
        guard: Option<VerificationGuard>,
    ) -> Result<PendingAppend, AppendError> {
        self.append_checked(partition, batch, required_acks, guard, None)
            .await
    }

    /// An acks=all append of a coordinator (groups, transactions) loaded for `leader_epoch`:
    /// NOT_LEADER unless this broker still leads the partition in that very epoch. A coordinator's
    /// records are decided on the state it loaded; after leading again in a later epoch a new
    /// coordinator has loaded the log, and the old one's records must not land behind its back (Kafka's
    /// coordinator runtime fails the writes of an unloaded partition).
    pub async fn append_as_coordinator(
        &self,
        partition: &Arc<Partition>,
        batch: Bytes,
        leader_epoch: i32,
    ) -> Result<PendingAppend, AppendError> {
        self.append_checked(partition, batch, -1, None, Some(leader_epoch))
            .await
    }

    async fn append_checked(
        &self,
        partition: &Arc<Partition>,
        batch: Bytes,
        required_acks: i16,
        guard: Option<VerificationGuard>,
        expected_epoch: Option<i32>,
    ) -> Result<PendingAppend, AppendError> {
        let state = partition.state();
        if state.leader != self.broker_id
            || expected_epoch.is_some_and(|epoch| epoch != state.leader_epoch)
        {
            return Err(AppendError::NotLeader);
        }
        // Below min.insync.replicas Kafka refuses an acks=all batch before writing it, so a plain
        // producer's retry does not write it twice. An idempotent producer's batch is written
        // anyway and waits, like any acks=all write, for the ISR to be back (REQUEST_TIMED_OUT if
        // it is not within the request's timeout; the retry is recognised as a duplicate and
        // acknowledged once it is committed): refusing it would leave a gap in its
        // sequence that the batches already in flight behind it fall into, and librdkafka answers
        // that OUT_OF_ORDER_SEQUENCE_NUMBER by bumping its epoch and resending everything
        // unacknowledged under new sequence numbers, so whatever of it was written is written twice
        // (found by the chaos harness, issue #11).
        let idempotent = BatchHeader::peek_producer_id(&batch).is_some_and(|id| id >= 0);
        if required_acks == -1 && state.isr.len() < state.min_insync_replicas && !idempotent {
            return Err(AppendError::NotEnoughReplicas {
                isr: state.isr.len(),
                min: state.min_insync_replicas,
            });
        }
        let leader_epoch = state.leader_epoch;
        // The fsync, which waits for the disk, runs later on the log's flusher
        // (`complete_append_by`); the append itself is page-cache work (see `append_inline`).
        let info = if append_inline(&batch) && !leader_append_would_roll(&partition.log, &batch) {
            partition
                .log
                .append_as_leader_verified(batch, leader_epoch, guard)?
        } else {
            let log = partition.log.clone();
            tokio::task::spawn_blocking(move || {
                log.append_as_leader_verified(batch, leader_epoch, guard)
            })
            .await
            .map_err(|e| AppendError::Storage(e.to_string()))??
        };
        // Followers long-polling for new data fetch it now, while this broker fsyncs its copy (or
        // before it does, for a deferred fsync: see `complete_append_by`).
        self.partition_changed(partition);
        Ok(PendingAppend {
            partition: partition.clone(),
            info,
            leader_epoch,
        })
    }

    /// Appends a transaction marker as the partition's leader (WriteTxnMarkers); complete it with
    /// `complete_append` and acks=all, as Kafka's coordinator appends with `requiredAcks = -1`. Below
    /// `min.insync.replicas` it is refused before it is written (NOT_ENOUGH_REPLICAS; the coordinator
    /// retries).
    pub async fn append_marker_as_leader(
        &self,
        partition: &Arc<Partition>,
        producer_id: i64,
        producer_epoch: i16,
        marker: EndTxnMarker,
    ) -> Result<PendingAppend, AppendError> {
        let state = partition.state();
        if state.leader != self.broker_id {
            return Err(AppendError::NotLeader);
        }
        if state.isr.len() < state.min_insync_replicas {
            return Err(AppendError::NotEnoughReplicas {
                isr: state.isr.len(),
                min: state.min_insync_replicas,
            });
        }
        let leader_epoch = state.leader_epoch;
        let info = partition.log.append_marker_as_leader(
            producer_id,
            producer_epoch,
            marker,
            leader_epoch,
        )?;
        self.partition_changed(partition);
        Ok(PendingAppend {
            partition: partition.clone(),
            info,
            leader_epoch,
        })
    }

    /// Makes an append durable under the topic's flush policy (group commit: one fsync covers every
    /// append before it; for acks=all with two or more in-sync followers the fsync starts once the
    /// first reports a copy, and is awaited after the high watermark), lets the high watermark
    /// move, and — for acks=all — waits until the high watermark covers it (Kafka's
    /// `Partition.checkEnoughReplicasReachOffset`):
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below `min.insync.replicas` meanwhile,
    /// REQUEST_TIMED_OUT after `timeout`, NOT_LEADER_OR_FOLLOWER if leadership moved first. Only the
    /// high watermark of the leader epoch the append was made in acknowledges it: after a re-election
    /// the offset may hold what a later epoch's replicas agree on, not necessarily this write. A
    /// duplicate (an idempotent retry) waits for its original the same way; for acks=0/1 it is
    /// answered like the original would have been.
    pub async fn complete_append(
        &self,
        pending: PendingAppend,
        required_acks: i16,
        timeout: Duration,
    ) -> Result<AppendInfo, AppendError> {
        self.complete_append_by(pending, required_acks, Instant::now() + timeout)
            .await
    }

    /// [`ReplicaManager::complete_append`] with a deadline rather than a timeout, so the partitions
    /// of one Produce complete together and within the request's timeout (Kafka's one
    /// `DelayedProduce` per request).
    pub async fn complete_append_by(
        &self,
        pending: PendingAppend,
        required_acks: i16,
        deadline: Instant,
    ) -> Result<AppendInfo, AppendError> {
        let PendingAppend {
            partition,
            info,
            leader_epoch,
        } = pending;
        // An acks=all append is acknowledged only once every in-sync follower reports a copy. With
        // two or more of them, this broker's fsync waits to start until the first one has
        // ([`PartitionLog::defer_flush`]) and runs while the slower ones finish their rounds, so one
        // fsync covers what a round carried. The append still waits for it below, after the high
        // watermark. With one follower its report would come only after the round, and the fsync
        // would add to it: that starts at once, as for acks 0 and 1.
        let defer_flush =
            info.flush_required && required_acks == -1 && partition.state().isr.len() > 2;
        if defer_flush {
            partition.log.defer_flush(info.next_offset());
        } else if info.flush_required {
            partition.log.flushed_to(info.next_offset()).await?;
        }
        if partition.maybe_advance_high_watermark(self.broker_id) {
            self.partition_changed(&partition);
        }
        if required_acks != -1 {
            return Ok(info);
        }
        let mut changed = partition.subscribe_changes();
        let mut all_changed = self.all_partitions_version.subscribe();
        loop {
            changed.borrow_and_update();
            all_changed.borrow_and_update();
            // The high watermark first, then the epoch: if the epoch still matches, the value read
            // was reached in it (epochs only go up).
            let high_watermark = partition.log.high_watermark();
            let state = partition.state();
            if state.leader != self.broker_id || state.leader_epoch != leader_epoch {
                return Err(AppendError::NotLeader);
            }
            if high_watermark > info.last_offset {
                if state.isr.len() < state.min_insync_replicas
                    && state.isr.len() < state.replicas.len()
                {
                    return Err(AppendError::NotEnoughReplicasAfterAppend);
                }
                if defer_flush {
                    // Durable here too, in the same epoch: a truncation meanwhile (this broker
                    // lost the leadership) caps `flushed_to` at the new log end.
                    let flushed = partition.log.flushed_to(info.next_offset()).await?;
                    let state = partition.state();
                    if flushed < info.next_offset()
                        || state.leader != self.broker_id
                        || state.leader_epoch != leader_epoch
                    {
                        return Err(AppendError::NotLeader);
                    }
                }
                return Ok(info);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Err(AppendError::TimedOut),
                changed = changed.changed() => if changed.is_err() { return Err(AppendError::TimedOut) },
                changed = all_changed.changed() => if changed.is_err() { return Err(AppendError::TimedOut) },
            }
        }
    }

    /// A follower's fetch reported its log start offset (after `on_follower_fetch` of the same
    /// fetch): record it, and wake DeleteRecords waiting for the low watermark if it moved.
    pub fn on_follower_log_start(
        &self,
        partition: &Arc<Partition>,
        follower: BrokerId,
        log_start_offset: i64,
    ) {
        if partition.record_follower_log_start(follower, log_start_offset) {
            self.partition_changed(partition);
        }
    }

    /// Whether `broker` is registered and not fenced in the last applied image.
    pub fn is_alive_broker(&self, broker: BrokerId) -> bool {
        self.alive_brokers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&broker)
    }

    /// A follower fetched `fetch_offset` of a partition this broker leads: record it, move the high
    /// watermark, and ask the controller to add the follower to the ISR once it has caught up.
    pub fn on_follower_fetch(
        &self,
        partition: &Arc<Partition>,
        follower: BrokerId,
        broker_epoch: i64,
        fetch_offset: i64,
    ) {
        let leader_leo = partition.record_follower_fetch(follower, broker_epoch, fetch_offset);
        partition.log.flush_deferred(fetch_offset);
        // The high watermark never passes this log's end: once it is there (every idle partition),
        // no fetch can move it, and the ISR walk behind `allowed_high_watermark` is skipped.
        if partition.log.high_watermark() < leader_leo
            && partition.maybe_advance_high_watermark(self.broker_id)
        {
            self.partition_changed(partition);
        }
        if partition.isr_contains(follower) {
            return;
        }
        let state = partition.state();
        if state.leader != self.broker_id
            || state.recovering
            || state.isr.contains(&follower)
            || !state.replicas.contains(&follower)
            || !self.isr_eligible(follower, broker_epoch)
        {
            return;
        }
        let log = &partition.log;
        let epoch_start = log
            .epoch_entries()
            .last()
            .filter(|e| e.epoch == state.leader_epoch)
            .map_or(log.log_end_offset(), |e| e.start_offset);
        let caught_up = fetch_offset >= log.high_watermark() && fetch_offset >= epoch_start;
        if caught_up && partition.begin_isr_change() {
            let mut new_isr: Vec<(BrokerId, i64)> = state.isr.iter().map(|&b| (b, -1)).collect();
            new_isr.push((follower, broker_epoch));
            self.request_isr_change(partition, &state, new_isr);
        }
    }

    fn request_isr_change(
        &self,
        partition: &Arc<Partition>,
        state: &PartitionState,
        new_isr: Vec<(BrokerId, i64)>,
    ) {
        partition.set_pending_isr(
            new_isr.iter().map(|&(broker, _)| broker).collect(),
            state.partition_epoch,
        );
        self.send_isr_change(IsrChange {
            partition: partition.clone(),
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            new_isr,
            leader_recovery_state: None,
        });
    }

    fn send_isr_change(&self, change: IsrChange) {
        let partition = change.partition.clone();
        if self.isr_changes.send(change).is_err() {
            partition.end_isr_change(false);
        }
    }

    /// As the leader an unclean election chose, tells the controller it has recovered (KIP-704): its
    /// log, begun as leader at this epoch, now defines the partition, so followers may truncate to it
    /// and rejoin the ISR. Until the controller commits that, the partition stays under-replicated.
    fn clear_recovering(&self, partition: &Arc<Partition>) {
        let state = partition.state();
        if state.leader != self.broker_id || !state.recovering || !partition.begin_isr_change() {
            return;
        }
        info!(topic = %partition.topic, partition = partition.index, "leader recovered after an unclean election");
        self.send_isr_change(IsrChange {
            partition: partition.clone(),
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            new_isr: vec![(self.broker_id, -1)],
            leader_recovery_state: Some(LeaderRecoveryState::Recovered),
        });
    }

    /// Asks the controller to drop ISR members of led partitions that have not caught up for `lag`
    /// (Kafka's `Partition.maybeShrinkIsr`), or that have sent no fetch at all for `stall`, counted
    /// from no earlier than `watched_since` (see [`super::isr::run_isr_shrinker`]). Failed and fenced
    /// brokers are removed by the controller itself. Also asks again to clear RECOVERING where an
    /// earlier request was refused or lost.
    ///
    /// The walk visits every hosted partition, which at 100,000 partitions was the largest share of
    /// an idle broker's CPU at four walks a second (issue #18). It is skipped when it cannot find
    /// anything: the last walk found every ISR member caught up and nothing proposed, every member
    /// was heard from within the stall time, and the last walk is less than half the lag time old
    /// (Kafka checks ISRs every half lag time). A member falls behind only with an append after
    /// that walk, so it cannot have been behind for the lag time before the next periodic walk
    /// finds it behind; from then on every tick walks. Partitions whose leadership or ISR changed
    /// since are looked at alone (the roles journal), unless the journal no longer reaches back.
    pub fn shrink_lagging_isrs(&self, lag: Duration, stall: Duration, watched_since: Instant) {
        let roles_version = self.roles_version();
        let walk = self.isr_walk_due(lag, stall, watched_since, roles_version);
        let (partitions, full) = match walk {
            IsrWalk::Skip => return,
            IsrWalk::All => (self.partitions(), true),
            IsrWalk::Touched(touched) => (
                touched.iter().filter_map(Touched::partition).collect(),
                false,
            ),
        };
        let mut found = IsrFindings::default();
        for partition in &partitions {
            self.check_isr(partition, lag, stall, watched_since, &mut found);
        }
        let mut scan = self.isr_scan.lock().unwrap_or_else(|e| e.into_inner());
        if full {
            scan.at = Some(Instant::now());
            scan.roles_version = roles_version;
            scan.unsettled = found.unsettled;
            scan.members = found.members;
            scan.walks += 1;
        } else {
            // Only what changed was looked at: what the last full walk found of the others stands.
            scan.roles_version = scan.roles_version.max(roles_version);
            scan.unsettled |= found.unsettled;
            scan.members.extend(found.members);
            scan.partial_walks += 1;
        }
    }

    /// One partition of [`ReplicaManager::shrink_lagging_isrs`]'s walk.
    ///
    /// The stall rule applies only to a follower this broker has heard from (a fetch of any
    /// partition, or of this one under this leader epoch) and that then went silent. One never
    /// heard from since this broker started has not begun to follow yet: a broker that has just
    /// started, or that is opening the logs of a large metadata change, fetches nothing from any
    /// leader until they are open. Counted from the leader's start as before, at 100,000
    /// partitions (RF 3, 3 brokers on 2 cores) the leaders proposed 81,853 removals of the
    /// slowest broker in 8 s while it opened its 33,000 logs, doubling the controllers' Raft log
    /// and memory, and then as many additions as it caught up (issue #18). Such a follower leaves
    /// by the lag rule, as every follower does in Kafka, and a dead one is fenced by the controller
    /// (which removes it from every ISR). What this gives up: a follower cut off from a leader that
    /// has not heard from it since the leader's process started holds acks=all writes for the lag
    /// time rather than the stall time.
    fn check_isr(
        &self,
        partition: &Arc<Partition>,
        lag: Duration,
        stall: Duration,
        watched_since: Instant,
        found: &mut IsrFindings,
    ) {
        if !partition.is_hosted() {
            return;
        }
        let state = partition.state();
        if state.recovering {
            found.unsettled = true;
            self.clear_recovering(partition);
            return;
        }
        if state.leader != self.broker_id || state.isr.len() <= 1 {
            return;
        }
        let leo = partition.log.log_end_offset();
        let (mut lagging, mut stalled) = (Vec::new(), Vec::new());
        for &member in state.isr.iter().filter(|&&b| b != self.broker_id) {
            found.members.insert(member);
            // A follower that has not fetched under this leader epoch is behind from its start.
            let (caught_up, fetched) = match partition.follower(member) {
                Some(f) if f.log_end_offset >= leo => (None, Some(f.last_fetch())),
                Some(f) => (Some(f.last_caught_up), Some(f.last_fetch())),
                None => (Some(partition.leader_since()), None),
            };
            found.unsettled |= caught_up.is_some();
            // The stall rule is for a follower that stopped: one never heard from has not started
            // yet (see `check_isr`'s doc) and has the lag time, as in Kafka. One heard from has
            // the stall time from this leader's start to begin fetching here (a fetch under this
            // leader epoch is never older than that start).
            let contact = self.follower_contact(member);
            let heard = match fetched {
                Some(fetched) => Some(contact.map_or(fetched, |contact| contact.max(fetched))),
                None => contact.map(|contact| contact.max(partition.leader_since())),
            };
            match heard {
                Some(heard) if heard.max(watched_since).elapsed() > stall => {
                    stalled.push((member, heard.elapsed().as_millis() as u64));
                }
                _ if caught_up.is_some_and(|t| t.elapsed() > lag) => lagging.push(member),
                _ => {}
            }
        }
        if lagging.is_empty() && stalled.is_empty() {
            return;
        }
        found.unsettled = true;
        if !partition.begin_isr_change() {
            return;
        }
        let new_isr = state
            .isr
            .iter()
            .filter(|b| !lagging.contains(b) && !stalled.iter().any(|(s, _)| s == *b))
            .map(|&b| (b, -1))
            .collect();
        // `stalled` pairs each silent follower with how long ago it was last heard from, in ms.
        info!(topic = %partition.topic, partition = partition.index, ?lagging, ?stalled, "shrinking the ISR");
        self.request_isr_change(partition, &state, new_isr);
    }

    /// Whether [`ReplicaManager::shrink_lagging_isrs`] must walk the partitions now, and which: only
    /// those whose roles changed since the last walk when nothing else calls for one (the roles
    /// journal), every partition otherwise.
    fn isr_walk_due(
        &self,
        lag: Duration,
        stall: Duration,
        watched_since: Instant,
        roles_version: u64,
    ) -> IsrWalk {
        let scan = self.isr_scan.lock().unwrap_or_else(|e| e.into_inner());
        let Some(at) = scan.at else {
            return IsrWalk::All;
        };
        let due = at.elapsed() >= lag / 2
            || scan.unsettled
            || scan.members.iter().any(|&member| {
                self.follower_contact(member)
                    .is_none_or(|contact| contact.max(watched_since).elapsed() > stall)
            });
        if due {
            return IsrWalk::All;
        }
        if scan.roles_version == roles_version {
            return IsrWalk::Skip;
        }
        match self.roles_changed_since(scan.roles_version) {
            Some((_, touched)) => IsrWalk::Touched(touched),
            None => IsrWalk::All,
        }
    }

    /// Walks of the partitions done by [`ReplicaManager::shrink_lagging_isrs`].
    #[cfg(test)]
    fn isr_walks(&self) -> u64 {
        self.isr_scan
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .walks
    }

    /// Walks of only the partitions whose roles changed done by
    /// [`ReplicaManager::shrink_lagging_isrs`].
    #[cfg(test)]
    fn isr_partial_walks(&self) -> u64 {
        self.isr_scan
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .partial_walks
    }

    /// Brings the hosted partitions in line with `image`: creates logs for partitions this broker
    /// replicates, updates roles (a new leader starts its epoch at its log end), and — when the image
    /// is `authoritative` (caught up to this broker's registration) — deletes partitions the image no
    /// longer gives this broker.
    ///
    /// Only what changed since the last image applied is touched (Kafka's
    /// `ReplicaManager.applyDelta`): a record copies only the topic it changes (`MetadataImage`
    /// keeps each topic behind an `Arc`), so a topic whose `Arc` is the last image's is skipped
    /// whole, and in a changed topic only the partitions whose registration changed are updated.
    /// Every partition is brought in line when there is no last image and when the cluster-wide
    /// configs changed (every topic's effective configs may have); every hosted partition and
    /// directory is checked for deletion on the first `authoritative` image after ones that were
    /// not. A snapshot gives every topic a new `Arc`; its partitions are compared with the last
    /// image's.
    pub fn apply_metadata(&self, image: &MetadataImage, authoritative: bool) -> AppliedMetadata {
        // One image at a time: each is compared with the one applied before it.
        let mut last = self.last_applied.lock().unwrap_or_else(|e| e.into_inner());
        *self.brokers.write().unwrap_or_else(|e| e.into_inner()) = image
            .brokers
            .values()
            .map(|b| (b.broker_id, (b.broker_epoch, b.is_active())))
            .collect();
        let alive: HashSet<BrokerId> = image
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.broker_id)
            .collect();
        // A replica fenced or back changes the low watermark that DeleteRecords waits on.
        let alive_moved = {
            let mut known = self
                .alive_brokers
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let moved = *known != alive;
            *known = alive;
            moved
        };
        let previous = last.as_ref().map(|last| &last.image);
        // Deleting what this broker no longer hosts needs every partition and directory looked at
        // once the image is caught up to its registration; after that, only what changes.
        let remove_all_unwanted =
            authoritative && last.as_ref().is_none_or(|last| !last.authoritative);
        let mut unopened = self
            .unopened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let assignments = self.assignments(image, previous, &unopened);
        self.open_new_logs(&assignments);
        // The partitions whose roles this image changes, for the roles journal.
        let mut touched = Vec::new();
        for assignment in &assignments {
            let (topic, index) = (assignment.topic, assignment.index);
            let registration = assignment.registration;
            let state = PartitionState {
                leader: registration.leader,
                leader_epoch: registration.leader_epoch,
                partition_epoch: registration.partition_epoch,
                replicas: registration.replicas.clone(),
                isr: registration.isr.clone(),
                min_insync_replicas: assignment.min_insync_replicas,
                recovering: registration.recovering,
            };
            let config = assignment.config.clone();
            match self.partition(topic.id, index) {
                Some(partition) => {
                    partition.log.update_config(config);
                    if let Some(previous) = partition.update(state.clone()) {
                        touched.push(partition.clone());
                        let became_leader = state.leader == self.broker_id
                            && (previous.leader != self.broker_id
                                || previous.leader_epoch < state.leader_epoch);
                        if became_leader {
                            self.start_leader_epoch(&partition, state.leader_epoch);
                        } else if state.leader == self.broker_id {
                            // A committed shrink may let the high watermark move.
                            partition.maybe_advance_high_watermark(self.broker_id);
                        }
                    }
                }
                None => match self.open_log(&topic.name, topic.id, index, config) {
                    Ok(log) => {
                        let leader_epoch =
                            (state.leader == self.broker_id).then_some(state.leader_epoch);
                        let partition = Arc::new(Partition::new(
                            topic.name.clone(),
                            topic.id,
                            index,
                            log,
                            state,
                        ));
                        if let Some(leader_epoch) = leader_epoch {
                            self.start_leader_epoch(&partition, leader_epoch);
                        }
                        self.partitions
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert((topic.id, index), partition.clone());
                        touched.push(partition);
                    }
                    Err(e) => {
                        let error = e.to_string();
                        let first = unopened
                            .insert((topic.name.clone(), index), error.clone())
                            .is_none();
                        if first {
                            warn!(topic = %topic.name, partition = index, "cannot open partition log (retrying every {} s): {error}", UNOPENED_RETRY.as_secs());
                        }
                        continue;
                    }
                },
            }
            if !unopened.is_empty() && unopened.remove(&(topic.name.clone(), index)).is_some() {
                info!(topic = %topic.name, partition = index, "opened partition log after earlier failures");
            }
        }
        // A partition deleted or moved away no longer needs its log.
        unopened.retain(|(topic, index), _| self.replicates(image, topic, *index));
        *self.unopened.lock().unwrap_or_else(|e| e.into_inner()) = unopened;
        for assignment in &assignments {
            if let Some(partition) = self.partition(assignment.topic.id, assignment.index) {
                self.clear_recovering(&partition);
            }
        }
        let removed = match previous {
            _ if !authoritative => Vec::new(),
            Some(previous) if !remove_all_unwanted => self.remove_moved_away(previous, image),
            _ => self.remove_unwanted(image),
        };
        let removed_count = removed.len();
        touched.extend(removed);
        if alive_moved || !touched.is_empty() {
            self.notify_all(Some(touched));
        }
        self.applied_offset.send_replace(image.offset);
        let applied = AppliedMetadata {
            full: previous.is_none() || remove_all_unwanted,
            partitions: assignments.len(),
            removed: removed_count,
        };
        *last = Some(LastApplied {
            image: image.clone(),
            authoritative,
        });
        applied
    }

    /// The partitions of `image` this broker replicates that differ from `previous` (all of them
    /// without one), or whose log is not open (new, or failed to open before).
    fn assignments<'a>(
        &self,
        image: &'a MetadataImage,
        previous: Option<&MetadataImage>,
        unopened: &BTreeMap<(String, i32), String>,
    ) -> Vec<Assignment<'a>> {
        let retried: HashSet<&str> = unopened.keys().map(|(topic, _)| topic.as_str()).collect();
        let cluster_configs_changed =
            previous.is_none_or(|previous| previous.cluster_configs != image.cluster_configs);
        let mut assignments = Vec::new();
        for topic in image.topics.values() {
            let before = previous.and_then(|previous| previous.topics.get(&topic.id));
            let same_topic = before.is_some_and(|before| Arc::ptr_eq(before, topic));
            if same_topic && !cluster_configs_changed && !retried.contains(topic.name.as_str()) {
                continue;
            }
            let configs_changed = cluster_configs_changed
                || before.is_none_or(|before| before.configs != topic.configs);
            let mut config = None;
            for (i, registration) in topic.partitions.iter().enumerate() {
                let index = i as i32;
                if !registration.replicas.contains(&self.broker_id) {
                    continue;
                }
                let unchanged = !configs_changed
                    && before.and_then(|before| before.partitions.get(i)) == Some(registration);
                if unchanged && self.partition(topic.id, index).is_some() {
                    continue;
                }
                let config = config.get_or_insert_with(|| topic_log_config(image, topic));
                assignments.push(Assignment {
                    topic,
                    index,
                    registration,
                    config: config.clone(),
                    min_insync_replicas: effective_min_insync_replicas(
                        image,
                        &topic.configs,
                        registration.replicas.len(),
                    ) as usize,
                });
            }
        }
        assignments
    }

    /// Whether `image` gives this broker a replica of `topic`'s partition `index`.
    fn replicates(&self, image: &MetadataImage, topic: &str, index: i32) -> bool {
        image
            .topic_by_name(topic)
            .and_then(|t| t.partitions.get(usize::try_from(index).ok()?))
            .is_some_and(|registration| registration.replicas.contains(&self.broker_id))
    }

    /// Opens the logs of the partitions among `assignments` that have none yet, `OPEN_THREADS` at a
    /// time: opening one is mostly waiting on fsyncs, which overlap. Failures are left to the
    /// caller's sequential pass, which opens (or records as unopened) whatever is still missing.
    fn open_new_logs(&self, assignments: &[Assignment<'_>]) {
        let new: Vec<&Assignment<'_>> = assignments
            .iter()
            .filter(|a| self.partition(a.topic.id, a.index).is_none())
            .collect();
        if new.len() < 2 {
            return;
        }
        let next = AtomicUsize::new(0);
        let started = std::time::Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..OPEN_THREADS.min(new.len()) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(new) = new.get(i) else {
                        return;
                    };
                    let (topic, index) = (new.topic, new.index);
                    let _ = self.open_log(&topic.name, topic.id, index, new.config.clone());
                });
            }
        });
        info!(
            partitions = new.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "opened new partition logs"
        );
    }
    fn open_log(
        &self,
        topic: &str,
        topic_id: TopicId,
        index: i32,
        config: LogConfig,
    ) -> Result<Arc<PartitionLog>, LogError> {
        match self
            .logs
            .get_or_create(topic, topic_id, index, config.clone())
        {
            Err(LogError::InconsistentTopicId { .. }) => {
                // The directory belongs to an earlier topic of the same name, deleted while this
                // broker was away: its data is not this topic's.
                info!(
                    topic,
                    partition = index,
                    "replacing the log of a deleted topic of the same name"
                );
                self.logs.remove(topic, index)?;
                self.logs.get_or_create(topic, topic_id, index, config)
            }
            other => other,
        }
    }

    /// A new leader records its epoch at its log end before it accepts writes (KIP-101). It keeps the
    /// high watermark it had as a follower: what it holds beyond may be missing on other ISR members,
    /// and it learns their log ends only from their fetches in this epoch (Kafka's
    /// `Partition.makeLeader` then `maybeIncrementLeaderHW`). An ISR of this broker alone (and
    /// `min.insync.replicas` met) commits its whole log at once.
    fn start_leader_epoch(&self, partition: &Partition, leader_epoch: i32) {
        let (topic, index) = (&partition.topic, partition.index);
        if let Err(e) = partition.log.assign_leader_epoch(leader_epoch) {
            warn!(
                topic,
                partition = index,
                leader_epoch,
                "cannot record the leader epoch: {e}"
            );
        }
        partition.maybe_advance_high_watermark(self.broker_id);
        info!(
            topic,
            partition = index,
            leader_epoch,
            high_watermark = partition.log.high_watermark(),
            log_end_offset = partition.log.log_end_offset(),
            "leading partition"
        );
    }

    /// Deletes hosted partitions and leftover directories the image does not give this broker;
    /// returns the hosted partitions deleted.
    fn remove_unwanted(&self, image: &MetadataImage) -> Vec<Arc<Partition>> {
        let wanted: HashSet<(TopicId, i32)> = image
            .partitions()
            .filter(|(_, _, registration)| registration.replicas.contains(&self.broker_id))
            .map(|(topic, index, _)| (topic.id, index))
            .collect();
        let stale: Vec<Arc<Partition>> = {
            let mut partitions = self.partitions.write().unwrap_or_else(|e| e.into_inner());
            let keys: Vec<(TopicId, i32)> = partitions
                .keys()
                .filter(|k| !wanted.contains(k))
                .copied()
                .collect();
            keys.iter().filter_map(|k| partitions.remove(k)).collect()
        };
        self.delete_partitions(image, &stale);
        for tp in self.logs.partitions() {
            let hosted = image
                .topic_by_name(&tp.topic)
                .is_some_and(|t| wanted.contains(&(t.id, tp.partition)));
            if !hosted {
                match self.logs.remove(&tp.topic, tp.partition) {
                    Ok(_) => {
                        info!(topic = %tp.topic, partition = tp.partition, "deleted leftover partition directory")
                    }
                    Err(e) => {
                        warn!(topic = %tp.topic, partition = tp.partition, "cannot delete leftover partition: {e}")
                    }
                }
            }
        }
        stale
    }

    /// Deletes the hosted partitions that `previous` gave this broker and `image` no longer does:
    /// only topics deleted or changed since can hold them. `previous` was applied authoritatively,
    /// so nothing else hosted here is unwanted and no directory is left over.
    fn remove_moved_away(
        &self,
        previous: &MetadataImage,
        image: &MetadataImage,
    ) -> Vec<Arc<Partition>> {
        let gone: Vec<(TopicId, i32)> = previous
            .topics
            .values()
            .filter(|before| {
                image
                    .topics
                    .get(&before.id)
                    .is_none_or(|now| !Arc::ptr_eq(before, now))
            })
            .flat_map(|before| (0..before.partitions.len()).map(|i| (before.id, i as i32)))
            .filter(|&(topic_id, index)| {
                image
                    .partition(topic_id, index)
                    .is_none_or(|registration| !registration.replicas.contains(&self.broker_id))
            })
            .collect();
        if gone.is_empty() {
            return Vec::new();
        }
        let stale: Vec<Arc<Partition>> = {
            let mut partitions = self.partitions.write().unwrap_or_else(|e| e.into_inner());
            gone.iter().filter_map(|k| partitions.remove(k)).collect()
        };
        self.delete_partitions(image, &stale);
        stale
    }

    /// Deletes the logs of partitions no longer hosted.
    fn delete_partitions(&self, image: &MetadataImage, stale: &[Arc<Partition>]) {
        for partition in stale {
            partition.retire();
            if image.topic_by_name(&partition.topic).is_none() {
                // A deleted topic's series go with it.
                crate::metrics::metrics().forget_topic(&partition.topic);
            }
            let current = self.logs.get(&partition.topic, partition.index);
            if !current.is_some_and(|log| Arc::ptr_eq(&log, &partition.log)) {
                // A topic of the same name, created in the same image, replaced the log already
                // (`open_log`): the directory is the new topic's.
                continue;
            }
            match self.logs.remove(&partition.topic, partition.index) {
                Ok(_) => {
                    info!(topic = %partition.topic, partition = partition.index, "deleted partition")
                }
                Err(e) => {
                    warn!(topic = %partition.topic, partition = partition.index, "cannot delete partition: {e}")
                }
            }
        }
    }
}

/// Applies every new metadata image to the replica manager until cancelled, from the first one
/// caught up to this process's registration on (Kafka's broker publishes metadata to its replica
/// manager only after its initial catch-up). An earlier image holds the roles of this broker's
/// previous incarnation: acting on one, a broker restarted with an emptied disk before the controller
/// fenced its previous incarnation led its partitions with an empty log, and its followers truncated
/// theirs to it (found by the chaos harness: every acknowledged record of two partitions lost). Once
/// registered, the controller has fenced that incarnation, and a new log directory has taken this
/// broker out of every ISR.
pub async fn run_metadata_listener(
    replicas: Arc<ReplicaManager>,
    metadata: Arc<MetadataCache>,
    mut status: watch::Receiver<BrokerStatus>,
    cancel: CancellationToken,
) {
    let mut images = metadata.subscribe();
    let mut registered = false;
    loop {
        let image = metadata.current();
        let authoritative = status
            .borrow()
            .broker_epoch
            .is_some_and(|epoch| epoch > 0 && image.offset >= epoch as u64);
        registered |= authoritative;
        if registered {
            let applying = replicas.clone();
            if let Err(e) =
                tokio::task::spawn_blocking(move || applying.apply_metadata(&image, authoritative))
                    .await
            {
                warn!("applying metadata to partitions failed: {e}");
            }
        }
        let retry = replicas.has_unopened_logs();
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = images.changed() => if changed.is_err() { return },
            changed = status.changed() => if changed.is_err() { return },
            // Logs that could not open are tried again, with no metadata change to prompt it.
            _ = tokio::time::sleep(UNOPENED_RETRY), if retry => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller_client::ControllerClient;
    use crate::log::batch::test_support::{client_batch, producer_batch};
    use chronik_metadata::records::{
        ConfigResource, PartitionChangeRecord, PartitionRecord, Record, RegisterBrokerRecord,
    };
    use chronik_metadata::Endpoint;
    use chronik_proto::v1 as pb;
    use std::sync::atomic::AtomicUsize;
    use tokio_util::sync::CancellationToken;
    use uuid::Uuid;

    #[test]
    fn only_large_compressed_or_huge_batches_leave_the_request_task() {
        let small = client_batch(&[1; 10], 1000);
        assert!(append_inline(&small));
        let huge = client_batch(&[1; 3000], 1000);
        assert!(!append_inline(&huge), "{} bytes", huge.len());
        // The same bytes announced as gzip: their validation would decompress them.
        let mut compressed = client_batch(&[1; 100], 1000).to_vec();
        compressed[21..23].copy_from_slice(&1i16.to_be_bytes());
        assert!(!append_inline(&compressed));
        assert!(
            append_inline(&compressed[..20]),
            "refused at once, wherever it runs"
        );
    }

    /// An image with brokers 1–3 and topic "t" (one partition, replicas 1, 2, 3, led by 1).
    fn image(isr: &[BrokerId], topic_id: Uuid) -> MetadataImage {
        image_led_by(1, 0, isr, topic_id)
    }

    /// Like [`image`], with the partition led by `leader` in `leader_epoch` (also its partition epoch).
    fn image_led_by(
        leader: BrokerId,
        leader_epoch: i32,
        isr: &[BrokerId],
        topic_id: Uuid,
    ) -> MetadataImage {
        image_at(leader, leader_epoch, leader_epoch, isr, topic_id)
    }

    /// Like [`image_led_by`], at `partition_epoch`.
    fn image_at(
        leader: BrokerId,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[BrokerId],
        topic_id: Uuid,
    ) -> MetadataImage {
        let mut image = MetadataImage::default();
        let mut records: Vec<Record> = (1..=3)
            .map(|id| {
                Record::RegisterBroker(RegisterBrokerRecord {
                    broker_id: id,
                    incarnation_id: Uuid::new_v4(),
                    broker_epoch: 10 + i64::from(id),
                    endpoints: vec![Endpoint {
                        name: "PLAINTEXT".into(),
                        host: "127.0.0.1".into(),
                        port: 9000 + id as u16,
                    }],
                    rack: None,
                    fenced: false,
                    in_controlled_shutdown: false,
                    supported_features: Default::default(),
                    log_dir_id: None,
                })
            })
            .collect();
        records.push(Record::Topic {
            name: "t".into(),
            topic_id,
        });
        records.push(Record::Partition(PartitionRecord {
            topic_id,
            partition: 0,
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            leader,
            leader_epoch,
            partition_epoch,
            recovering: false,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
            elr: Vec::new(),
        }));
        image.replay_all(20, &records);
        image
    }

    /// Completes an acks=all append in a task (10 s timeout), so the test can make followers fetch.
    fn acks_all_in_background(
        replicas: &Arc<ReplicaManager>,
        pending: PendingAppend,
    ) -> tokio::task::JoinHandle<Result<AppendInfo, AppendError>> {
        let replicas = replicas.clone();
        tokio::spawn(async move {
            replicas
                .complete_append(pending, -1, Duration::from_secs(10))
                .await
        })
    }

    /// Appends a 10-byte batch as the leader and completes it with acks=all in the background.
    async fn append_acks_all_in_background(
        replicas: &Arc<ReplicaManager>,
        partition: &Arc<Partition>,
    ) -> tokio::task::JoinHandle<Result<AppendInfo, AppendError>> {
        let pending = replicas
            .append_as_leader(partition, client_batch(&[1], 10), -1)
            .await
            .unwrap();
        acks_all_in_background(replicas, pending)
    }

    fn manager(
        isr: &[BrokerId],
    ) -> (
        tempfile::TempDir,
        ReplicaManager,
        mpsc::UnboundedReceiver<IsrChange>,
        Arc<Partition>,
    ) {
        manager_from(|topic_id| image(isr, topic_id))
    }

    /// Like [`manager`], with the image `image` makes for a new topic id.
    fn manager_from(
        image: impl FnOnce(Uuid) -> MetadataImage,
    ) -> (
        tempfile::TempDir,
        ReplicaManager,
        mpsc::UnboundedReceiver<IsrChange>,
        Arc<Partition>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let logs = Arc::new(LogManager::open(dir.path(), LogConfig::default()).unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        let replicas = ReplicaManager::new(1, logs, tx);
        let topic_id = Uuid::new_v4();
        replicas.apply_metadata(&image(topic_id), true);
        let partition = replicas.partition(topic_id, 0).expect("hosted");
        (dir, replicas, rx, partition)
    }

    #[test]
    fn a_log_that_cannot_open_is_reported_and_opens_once_the_cause_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the partition's directory goes: creating the log fails.
        let blocker = dir.path().join("t-0");
        std::fs::write(&blocker, b"not a directory").unwrap();
        let logs = Arc::new(LogManager::open(dir.path(), LogConfig::default()).unwrap());
        let (tx, _rx) = mpsc::unbounded_channel();
        let replicas = ReplicaManager::new(1, logs, tx);
        let topic_id = Uuid::new_v4();
        let image = image(&[1], topic_id);
        replicas.apply_metadata(&image, true);
        assert!(replicas.partition(topic_id, 0).is_none());
        let unopened = replicas.unopened_logs();
        assert_eq!(unopened.len(), 1, "{unopened:?}");
        assert_eq!(
            (unopened[0].topic.as_str(), unopened[0].partition),
            ("t", 0)
        );
        assert!(!unopened[0].error.is_empty());

        // The same image applied again (the retry) opens it once the cause is gone.
        std::fs::remove_file(&blocker).unwrap();
        replicas.apply_metadata(&image, true);
        assert!(replicas.partition(topic_id, 0).is_some());
        assert!(replicas.unopened_logs().is_empty());
    }

    #[test]
    fn a_log_that_cannot_open_is_forgotten_when_the_partition_goes_away() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t-0"), b"not a directory").unwrap();
        let logs = Arc::new(LogManager::open(dir.path(), LogConfig::default()).unwrap());
        let (tx, _rx) = mpsc::unbounded_channel();
        let replicas = ReplicaManager::new(1, logs, tx);
        replicas.apply_metadata(&image(&[1], Uuid::new_v4()), true);
        assert_eq!(replicas.unopened_logs().len(), 1);
        replicas.apply_metadata(&MetadataImage::default(), true);
        assert!(replicas.unopened_logs().is_empty());
    }

    /// [`image`] plus topic "u" of two partitions on brokers 1–3 (partition 0 led by 2, partition
    /// 1 by 3), as the broker's metadata cache builds it: records replayed onto a copy.
    fn two_topics(topic_id: Uuid, other_id: Uuid) -> MetadataImage {
        let mut image = image(&[1, 2, 3], topic_id);
        let mut records = vec![Record::Topic {
            name: "u".into(),
            topic_id: other_id,
        }];
        for (partition, leader) in [(0, 2), (1, 3)] {
            records.push(Record::Partition(PartitionRecord {
                topic_id: other_id,
                partition,
                replicas: vec![1, 2, 3],
                isr: vec![1, 2, 3],
                leader,
                leader_epoch: 0,
                partition_epoch: 0,
                recovering: false,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
                elr: Vec::new(),
            }));
        }
        image.replay_all(21, &records);
        image
    }

    /// `image` with `records` replayed at its next offset, on a copy (as `MetadataCache::apply`).
    fn next(image: &MetadataImage, records: &[Record]) -> MetadataImage {
        let mut next = image.clone();
        next.replay_all(image.offset + 1, records);
        next
    }

    fn replicas_in(dir: &std::path::Path) -> ReplicaManager {
        let logs = Arc::new(LogManager::open(dir, LogConfig::default()).unwrap());
        ReplicaManager::new(1, logs, mpsc::unbounded_channel().0)
    }

    /// Issue #18: a change to one partition touches that partition only, not every partition the
    /// broker hosts (before, every image walked them all: seconds at 30,000 partitions).
    #[test]
    fn a_partition_change_touches_only_that_partition() {
        let dir = tempfile::tempdir().unwrap();
        let replicas = replicas_in(dir.path());
        let (topic_id, other_id) = (Uuid::new_v4(), Uuid::new_v4());
        let first = two_topics(topic_id, other_id);
        let applied = replicas.apply_metadata(&first, true);
        assert_eq!((applied.full, applied.partitions), (true, 3));
        let journaled = |since: u64| {
            let (now, touched) = replicas.roles_changed_since(since).expect("in the journal");
            let mut keys: Vec<(Uuid, i32)> =
                touched.iter().map(|t| (t.topic_id, t.index)).collect();
            keys.sort();
            (now, keys)
        };
        let before = replicas.roles_version();

        // Broker 1 becomes the leader of u-1: its new epoch starts at its log end.
        let moved = next(
            &first,
            &[Record::PartitionChange(PartitionChangeRecord {
                topic_id: other_id,
                partition: 1,
                leader: Some(1),
                ..Default::default()
            })],
        );
        let applied = replicas.apply_metadata(&moved, true);
        assert_eq!(
            applied,
            AppliedMetadata {
                full: false,
                partitions: 1,
                removed: 0
            }
        );
        let partition = replicas.partition(other_id, 1).unwrap();
        assert_eq!(
            (partition.state().leader, partition.state().leader_epoch),
            (1, 1)
        );
        assert_eq!(partition.log.latest_epoch(), Some(1));
        // What follows roles (fetchers, the ISR walk) learns of that partition alone.
        let (after_move, touched) = journaled(before);
        assert_eq!(touched, vec![(other_id, 1)]);

        // A change that is no partition's (a broker fenced) touches none.
        let fenced = next(
            &moved,
            &[Record::BrokerChange {
                broker_id: 3,
                broker_epoch: 13,
                fenced: Some(true),
                in_controlled_shutdown: None,
                has_offline_log_dir: None,
            }],
        );
        let applied = replicas.apply_metadata(&fenced, true);
        assert_eq!((applied.full, applied.partitions), (false, 0));
        assert!(!replicas.isr_eligible(3, 13));
        let (after_fence, touched) = journaled(after_move);
        assert!(
            after_fence > after_move && touched.is_empty(),
            "{touched:?}"
        );

        // Topic u deleted: both its partitions, which the journal does not keep alive.
        let deleted = next(&fenced, &[Record::RemoveTopic { topic_id: other_id }]);
        assert_eq!(replicas.apply_metadata(&deleted, true).removed, 2);
        drop(partition);
        let (_, touched) = replicas.roles_changed_since(after_fence).unwrap();
        assert_eq!(touched.len(), 2);
        assert!(touched
            .iter()
            .all(|t| t.topic_id == other_id && t.partition().is_none()));
    }

    /// The roles journal keeps recent changes up to its capacity: a caller further behind, or past
    /// a change too large for it, is told to look at every partition.
    #[test]
    fn the_roles_journal_forgets_what_is_beyond_its_capacity() {
        let (_dir, replicas, _changes, partition) = manager(&[1]);
        let start = replicas.roles_version();
        replicas.roles_changed(vec![partition.clone()]);
        let (now, touched) = replicas.roles_changed_since(start).unwrap();
        assert_eq!((now, touched.len()), (start + 1, 1));
        assert_eq!(replicas.roles_changed_since(now).unwrap().1.len(), 0);
        // Small changes push the oldest out.
        for _ in 0..ROLES_JOURNAL_CAPACITY / 2 {
            replicas.roles_changed(vec![partition.clone()]);
        }
        assert!(replicas.roles_changed_since(start).is_none());
        let recent = replicas.roles_version() - 10;
        assert_eq!(replicas.roles_changed_since(recent).unwrap().1.len(), 10);
        // One too large empties it.
        replicas.roles_changed(vec![partition.clone(); ROLES_JOURNAL_CAPACITY]);
        assert!(replicas.roles_changed_since(recent).is_none());
        let now = replicas.roles_version();
        let (at, touched) = replicas.roles_changed_since(now).unwrap();
        assert_eq!((at, touched.len()), (now, 0));
    }

    /// A topic's config change reaches its partitions only; a cluster-wide one reaches every
    /// topic that does not set the key itself.
    #[test]
    fn config_changes_reach_the_partitions_they_configure() {
        let dir = tempfile::tempdir().unwrap();
        let replicas = replicas_in(dir.path());
        let (topic_id, other_id) = (Uuid::new_v4(), Uuid::new_v4());
        let first = two_topics(topic_id, other_id);
        replicas.apply_metadata(&first, true);
        let retention = |topic_id, index| {
            replicas
                .partition(topic_id, index)
                .unwrap()
                .log
                .config()
                .retention_ms
        };

        let topic_config = next(
            &first,
            &[Record::Config {
                resource: ConfigResource::Topic("u".into()),
                key: "retention.ms".into(),
                value: Some("1000".into()),
            }],
        );
        let applied = replicas.apply_metadata(&topic_config, true);
        assert_eq!(applied.partitions, 2);
        assert_eq!(retention(other_id, 0), Some(1000));
        assert_eq!(retention(other_id, 1), Some(1000));

        let cluster_config = next(
            &topic_config,
            &[Record::Config {
                resource: ConfigResource::Cluster,
                key: "retention.ms".into(),
                value: Some("2000".into()),
            }],
        );
        let applied = replicas.apply_metadata(&cluster_config, true);
        assert_eq!(applied.partitions, 3);
        assert_eq!(retention(topic_id, 0), Some(2000));
        assert_eq!(retention(other_id, 1), Some(1000));
    }

    /// A deleted topic and a partition reassigned away are deleted from this broker by the change
    /// alone; a snapshot with nothing new touches nothing.
    #[test]
    fn deleted_and_moved_partitions_go_without_a_full_walk() {
        let dir = tempfile::tempdir().unwrap();
        let replicas = replicas_in(dir.path());
        let (topic_id, other_id) = (Uuid::new_v4(), Uuid::new_v4());
        let first = two_topics(topic_id, other_id);
        replicas.apply_metadata(&first, true);
        let t0 = replicas
            .partition(topic_id, 0)
            .unwrap()
            .log
            .dir()
            .to_path_buf();
        assert!(t0.exists());

        let deleted = next(&first, &[Record::RemoveTopic { topic_id }]);
        let applied = replicas.apply_metadata(&deleted, true);
        assert_eq!(
            applied,
            AppliedMetadata {
                full: false,
                partitions: 0,
                removed: 1
            }
        );
        assert!(replicas.partition(topic_id, 0).is_none());
        assert!(!t0.exists());

        let u1 = replicas
            .partition(other_id, 1)
            .unwrap()
            .log
            .dir()
            .to_path_buf();
        let reassigned = next(
            &deleted,
            &[Record::PartitionChange(PartitionChangeRecord {
                topic_id: other_id,
                partition: 1,
                replicas: Some(vec![2, 3]),
                isr: Some(vec![2, 3]),
                ..Default::default()
            })],
        );
        let applied = replicas.apply_metadata(&reassigned, true);
        assert_eq!((applied.partitions, applied.removed), (0, 1));
        assert!(replicas.partition(other_id, 1).is_none());
        assert!(!u1.exists());
        assert!(replicas.partition(other_id, 0).is_some());

        // A snapshot rebuilds every topic (new `Arc`s) with the same registrations.
        let mut snapshot = MetadataImage::default();
        snapshot.replay_all(reassigned.offset + 1, &reassigned.to_records());
        let applied = replicas.apply_metadata(&snapshot, true);
        assert_eq!(
            (applied.full, applied.partitions, applied.removed),
            (false, 0, 0)
        );
    }

    /// A topic deleted and created again under the same name within one image: the new topic's log
    /// is not deleted with the old topic's partition (it was, after the new log had replaced it).
    #[test]
    fn a_topic_recreated_under_the_same_name_keeps_its_new_log() {
        let dir = tempfile::tempdir().unwrap();
        let replicas = replicas_in(dir.path());
        let (old_id, new_id) = (Uuid::new_v4(), Uuid::new_v4());
        let first = image(&[1, 2, 3], old_id);
        replicas.apply_metadata(&first, true);
        let recreated = next(
            &first,
            &[
                Record::RemoveTopic { topic_id: old_id },
                Record::Topic {
                    name: "t".into(),
                    topic_id: new_id,
                },
                Record::Partition(PartitionRecord {
                    topic_id: new_id,
                    partition: 0,
                    replicas: vec![1, 2, 3],
                    isr: vec![1, 2, 3],
                    leader: 1,
                    leader_epoch: 0,
                    partition_epoch: 0,
                    recovering: false,
                    adding_replicas: Vec::new(),
                    removing_replicas: Vec::new(),
                    elr: Vec::new(),
                }),
            ],
        );
        let applied = replicas.apply_metadata(&recreated, true);
        assert_eq!((applied.partitions, applied.removed), (1, 1));
        assert!(replicas.partition(old_id, 0).is_none());
        let partition = replicas
            .partition(new_id, 0)
            .expect("the new topic's partition");
        assert!(partition.log.dir().join("partition.metadata").exists());
        assert!(Arc::ptr_eq(
            &replicas
                .logs()
                .get("t", 0)
                .expect("the log is the manager's"),
            &partition.log
        ));
    }

    /// Images applied before this broker's registration was caught up delete nothing; the first
    /// authoritative one looks at every partition and directory.
    #[test]
    fn the_first_authoritative_image_deletes_what_earlier_ones_left() {
        let dir = tempfile::tempdir().unwrap();
        let (topic_id, other_id) = (Uuid::new_v4(), Uuid::new_v4());
        let first = two_topics(topic_id, other_id);
        replicas_in(dir.path()).apply_metadata(&first, true);
        // Restarted while "t" was deleted.
        let replicas = replicas_in(dir.path());
        let deleted = next(&first, &[Record::RemoveTopic { topic_id }]);
        let applied = replicas.apply_metadata(&deleted, false);
        assert_eq!(
            (applied.full, applied.partitions, applied.removed),
            (true, 2, 0)
        );
        assert!(dir.path().join("t-0").exists());
        let applied = replicas.apply_metadata(&deleted, true);
        assert_eq!(
            (applied.full, applied.partitions, applied.removed),
            (true, 0, 0)
        );
        assert!(
            !dir.path().join("t-0").exists(),
            "leftover directory deleted"
        );
    }

    /// A broker restarted before its previous incarnation was fenced finds an image in which it leads
    /// a partition: it takes no role (no leadership, no log opened) until an image is caught up to its
    /// own registration.
    #[tokio::test]
    async fn no_partition_role_is_taken_before_this_process_registered() {
        use crate::metadata::tests::{register, topic, update};
        let dir = tempfile::tempdir().unwrap();
        let logs = Arc::new(LogManager::open(dir.path(), LogConfig::default()).unwrap());
        let (tx, _rx) = mpsc::unbounded_channel();
        let replicas = Arc::new(ReplicaManager::new(1, logs, tx));
        let metadata = Arc::new(MetadataCache::new());
        let topic_id = Uuid::new_v4();
        let mut records = vec![register(1, 9092), register(2, 9093)];
        records.extend(topic("t", topic_id, &[1]));
        metadata.apply(&[update(20, true, &records)]).unwrap();
        let (status_tx, status) = watch::channel(BrokerStatus::new(1, Uuid::new_v4()));
        let cancel = CancellationToken::new();
        let listener = tokio::spawn(run_metadata_listener(
            replicas.clone(),
            metadata.clone(),
            status,
            cancel.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            replicas.partition(topic_id, 0).is_none(),
            "a role taken from the previous incarnation's image"
        );
        // Registered at offset 21: images from 21 on are this process's.
        status_tx.send_modify(|s| s.broker_epoch = Some(21));
        metadata
            .apply(&[update(21, false, &[register(1, 9092)])])
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while replicas.partition(topic_id, 0).is_none() {
            assert!(tokio::time::Instant::now() < deadline, "never applied");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(replicas.partition(topic_id, 0).unwrap().state().leader, 1);
        cancel.cancel();
        listener.await.unwrap();
    }

    /// A coordinator loaded for one leader epoch writes nothing once this broker leads the partition
    /// in a later one (a newer coordinator loaded the log then), while any append still goes in.
    #[tokio::test]
    async fn a_coordinators_append_is_pinned_to_the_epoch_it_was_loaded_for() {
        let (_dir, replicas, _changes, partition) = manager(&[1, 2]);
        replicas
            .append_as_coordinator(&partition, client_batch(&[1], 10), 0)
            .await
            .expect("the epoch it was loaded for");
        replicas.apply_metadata(&image_led_by(1, 1, &[1, 2], partition.topic_id), true);
        assert_eq!(partition.state().leader_epoch, 1);
        let refused = replicas
            .append_as_coordinator(&partition, client_batch(&[2], 10), 0)
            .await;
        assert!(matches!(refused, Err(AppendError::NotLeader)));
        assert_eq!(partition.log.log_end_offset(), 1, "nothing written");
        replicas
            .append_as_coordinator(&partition, client_batch(&[3], 10), 1)
            .await
            .expect("the current epoch");
        replicas
            .append_as_leader(&partition, client_batch(&[4], 10), -1)
            .await
            .expect("a plain append is not pinned");
    }

    #[tokio::test]
    async fn a_caught_up_follower_is_proposed_for_the_isr_once() {
        let (_dir, replicas, mut changes, partition) = manager(&[1, 2]);
        append_acks_1(&replicas, &partition, 3).await;
        // Follower 3 behind the high watermark: not yet.
        replicas.on_follower_fetch(&partition, 2, 12, 3);
        assert_eq!(partition.log.high_watermark(), 3);
        replicas.on_follower_fetch(&partition, 3, 13, 1);
        assert!(changes.try_recv().is_err());
        // Caught up: one AlterPartition with its broker epoch, and no second one while it is in flight.
        replicas.on_follower_fetch(&partition, 3, 13, 3);
        let change = changes.try_recv().expect("an ISR expansion");
        assert_eq!(change.new_isr, vec![(1, -1), (2, -1), (3, 13)]);
        assert_eq!((change.leader_epoch, change.partition_epoch), (0, 0));
        replicas.on_follower_fetch(&partition, 3, 13, 3);
        assert!(
            changes.try_recv().is_err(),
            "one change in flight at a time"
        );
    }

    /// A follower the controller would refuse (INELIGIBLE_REPLICA) is not proposed: not fenced, not
    /// with an offline log dir, not under a broker epoch other than its registration's. Before, the
    /// leader asked again on every fetch (seen in chaos runs as a storm of refusals).
    #[tokio::test]
    async fn an_ineligible_follower_is_not_proposed_for_the_isr() {
        let (_dir, replicas, mut changes, partition) = manager(&[1, 2]);
        let pending = replicas
            .append_as_leader(&partition, client_batch(&[1], 10), 1)
            .await
            .unwrap();
        replicas.on_follower_fetch(&partition, 2, 12, 1);
        replicas
            .complete_append(pending, 1, Duration::from_secs(1))
            .await
            .unwrap();
        let topic_id = partition.topic_id;
        let mut image = image(&[1, 2], topic_id);
        image.replay_all(
            21,
            &[Record::BrokerChange {
                broker_id: 3,
                broker_epoch: 13,
                fenced: None,
                in_controlled_shutdown: None,
                has_offline_log_dir: Some(true),
            }],
        );
        replicas.apply_metadata(&image, true);
        replicas.on_follower_fetch(&partition, 3, 13, 1);
        assert!(changes.try_recv().is_err(), "offline log dir");
        let image = super::tests::image(&[1, 2], topic_id);
        replicas.apply_metadata(&image, true);
        replicas.on_follower_fetch(&partition, 3, 12, 1);
        assert!(changes.try_recv().is_err(), "an old registration's epoch");
        replicas.on_follower_fetch(&partition, 3, 13, 1);
        let change = changes.try_recv().expect("eligible again");
        assert_eq!(change.new_isr, vec![(1, -1), (2, -1), (3, 13)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_lagging_longer_than_the_lag_time_is_proposed_for_removal() {
        let (_dir, replicas, mut changes, partition) = manager(&[1, 2, 3]);
        append_acks_1(&replicas, &partition, 1).await;
        replicas.on_follower_fetch(&partition, 2, 12, 1);
        replicas.on_follower_fetch(&partition, 3, 13, 0);
        replicas.shrink_lagging_isrs(
            Duration::from_secs(30),
            Duration::from_secs(30),
            Instant::now(),
        );
        assert!(changes.try_recv().is_err(), "nobody lags long enough yet");
        tokio::time::advance(Duration::from_secs(31)).await;
        replicas.on_follower_fetch(&partition, 2, 12, 1);
        replicas.shrink_lagging_isrs(
            Duration::from_secs(30),
            Duration::from_secs(30),
            Instant::now(),
        );
        let change = changes.try_recv().expect("an ISR shrink");
        assert_eq!(change.new_isr, vec![(1, -1), (2, -1)]);
    }

    const LAG: Duration = Duration::from_secs(30);
    const STALL: Duration = Duration::from_secs(1);
    /// A follower's fetch interval when its leader has nothing new: the long poll.
    const LONG_POLL: Duration = Duration::from_millis(500);

    /// A leader of "t" (ISR 1, 2, 3, one record) with its ISR shrinker running (lag 30 s, stall 1 s).
    async fn shrinking() -> (
        tempfile::TempDir,
        Arc<ReplicaManager>,
        mpsc::UnboundedReceiver<IsrChange>,
        Arc<Partition>,
        CancellationToken,
    ) {
        let (dir, replicas, changes, partition) = manager(&[1, 2, 3]);
        append_acks_1(&replicas, &partition, 1).await;
        let replicas = Arc::new(replicas);
        let cancel = run_shrinker(&replicas);
        // Let the shrinker start (its first check is at once).
        tokio::time::sleep(Duration::from_millis(1)).await;
        (dir, replicas, changes, partition, cancel)
    }

    /// Runs the ISR shrinker (lag 30 s, stall 1 s) of `replicas` until the returned token is cancelled.
    fn run_shrinker(replicas: &Arc<ReplicaManager>) -> CancellationToken {
        let cancel = CancellationToken::new();
        tokio::spawn(super::super::isr::run_isr_shrinker(
            replicas.clone(),
            LAG,
            STALL,
            cancel.clone(),
        ));
        cancel
    }

    /// Follower `id` fetching every `every` until `stop`: at the leader's log end, or from offset 0
    /// (a follower that keeps fetching but never catches up).
    fn keep_fetching(
        replicas: &Arc<ReplicaManager>,
        partition: &Arc<Partition>,
        id: BrokerId,
        every: Duration,
        caught_up: bool,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let offset = (!caught_up).then_some(0);
        fetch_loop(replicas, partition, id, every, offset, false, stop)
    }

    /// Follower `id` fetching every `every` from `offset` (the log end when `None`) until `stop`;
    /// with `contact`, it notes its contact first, as a real fetch does.
    fn fetch_loop(
        replicas: &Arc<ReplicaManager>,
        partition: &Arc<Partition>,
        id: BrokerId,
        every: Duration,
        offset: Option<i64>,
        contact: bool,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let (replicas, partition) = (replicas.clone(), partition.clone());
        tokio::spawn(async move {
            loop {
                if contact {
                    replicas.note_follower_contact(id);
                }
                let at = offset.unwrap_or_else(|| partition.log.log_end_offset());
                replicas.on_follower_fetch(&partition, id, 10 + i64::from(id), at);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        })
    }

    /// Issue #12: a follower that stops fetching (stopped, cut off) leaves the ISR within about the
    /// stall time, not after `replica.lag.time.max.ms`.
    #[tokio::test(start_paused = true)]
    async fn a_follower_that_stops_fetching_is_proposed_for_removal_within_the_stall_time() {
        let (_dir, replicas, mut changes, partition, cancel) = shrinking().await;
        let _follower_2 = keep_fetching(&replicas, &partition, 2, LONG_POLL, true, cancel.clone());
        let stop_3 = cancel.child_token();
        let follower_3 = keep_fetching(&replicas, &partition, 3, LONG_POLL, true, stop_3.clone());
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(changes.try_recv().is_err(), "healthy followers stay");
        stop_3.cancel();
        follower_3.await.unwrap();
        let last_fetch = partition.follower(3).unwrap().last_fetch();
        follower_3_removed_one_stall_time_after(&mut changes, last_fetch).await;
        cancel.cancel();
    }

    /// Waits for the proposal to drop follower 3 (and only it), which must come more than one stall
    /// time after `silent_since` and within the shrinker's quarter-stall tick of it.
    async fn follower_3_removed_one_stall_time_after(
        changes: &mut mpsc::UnboundedReceiver<IsrChange>,
        silent_since: tokio::time::Instant,
    ) {
        let change = tokio::time::timeout(2 * STALL, changes.recv())
            .await
            .expect("follower 3 is proposed for removal by the stall rule")
            .unwrap();
        assert_eq!(change.new_isr, vec![(1, -1), (2, -1)]);
        let silent = silent_since.elapsed();
        assert!(
            silent > STALL && silent <= STALL + STALL / 4,
            "proposed after {silent:?} of silence"
        );
    }

    /// Kafka's lag rule is kept for a follower that fetches but stays behind: it leaves only after
    /// `replica.lag.time.max.ms`, however short the stall time.
    #[tokio::test(start_paused = true)]
    async fn a_slow_follower_that_keeps_fetching_stays_until_the_lag_time() {
        let (_dir, replicas, mut changes, partition, cancel) = shrinking().await;
        let start = tokio::time::Instant::now();
        let _follower_2 = keep_fetching(&replicas, &partition, 2, LONG_POLL, true, cancel.clone());
        let _follower_3 = keep_fetching(&replicas, &partition, 3, LONG_POLL, false, cancel.clone());
        let waited = follower_3_removed_near_the_lag_time(&mut changes, start).await;
        assert!(
            waited > LAG && waited <= LAG + STALL / 4,
            "after {waited:?}"
        );
        cancel.cancel();
    }

    /// Waits for the proposal to drop follower 3 (and only it), which must not come before the lag
    /// time less a stall time; returns how long after `start` it came.
    async fn follower_3_removed_near_the_lag_time(
        changes: &mut mpsc::UnboundedReceiver<IsrChange>,
        start: tokio::time::Instant,
    ) -> Duration {
        assert!(
            tokio::time::timeout_at(start + LAG - STALL, changes.recv())
                .await
                .is_err(),
            "follower 3 was proposed for removal before the lag time"
        );
        let change = tokio::time::timeout(2 * STALL, changes.recv())
            .await
            .expect("follower 3 is proposed for removal by the lag rule")
            .unwrap();
        assert_eq!(change.new_isr, vec![(1, -1), (2, -1)]);
        start.elapsed()
    }

    /// A follower silent for less than the stall time (a slow disk, a busy host) keeps its place.
    #[tokio::test(start_paused = true)]
    async fn a_follower_that_fetches_again_within_the_stall_time_is_kept() {
        let (_dir, replicas, mut changes, partition, cancel) = shrinking().await;
        let _follower_2 = keep_fetching(&replicas, &partition, 2, LONG_POLL, true, cancel.clone());
        let _follower_3 = keep_fetching(
            &replicas,
            &partition,
            3,
            STALL - Duration::from_millis(100),
            true,
            cancel.clone(),
        );
        assert!(
            tokio::time::timeout(Duration::from_secs(20), changes.recv())
                .await
                .is_err(),
            "no follower is proposed for removal"
        );
        cancel.cancel();
    }

    /// Issue #18: a follower whose fetches keep arriving is not stalled, even when its last fetch
    /// of a partition is older than the stall time (a round over 100,000 partitions on a loaded
    /// host); one that goes silent is still removed within about the stall time.
    #[tokio::test(start_paused = true)]
    async fn a_follower_still_fetching_is_not_stalled_by_a_slow_round() {
        let (_dir, replicas, mut changes, partition, cancel) = shrinking().await;
        let _follower_2 = keep_fetching(&replicas, &partition, 2, LONG_POLL, true, cancel.clone());
        replicas.on_follower_fetch(&partition, 3, 13, partition.log.log_end_offset());
        let stop_3 = cancel.child_token();
        let contact_3 = {
            let (replicas, stop) = (replicas.clone(), stop_3.clone());
            tokio::spawn(async move {
                loop {
                    replicas.note_follower_contact(3);
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(LONG_POLL) => {}
                    }
                }
            })
        };
        assert!(
            tokio::time::timeout(Duration::from_secs(5), changes.recv())
                .await
                .is_err(),
            "a follower still fetching was proposed for removal"
        );
        stop_3.cancel();
        contact_3.await.unwrap();
        let change = tokio::time::timeout(2 * STALL, changes.recv())
            .await
            .expect("the silent follower is proposed for removal")
            .unwrap();
        assert_eq!(change.new_isr, vec![(1, -1), (2, -1)]);
        cancel.cancel();
    }

    /// Issue #18: a follower never heard from (still opening the logs of a large metadata change,
    /// or just started) has not stopped fetching: it keeps its place past the stall time and leaves
    /// by the lag rule. Before, the leaders proposed the slowest broker's removal from every
    /// partition one stall time after they started leading.
    #[tokio::test(start_paused = true)]
    async fn a_follower_never_heard_from_is_not_stalled_and_leaves_by_the_lag_time() {
        let (_dir, replicas, mut changes, partition, cancel) = shrinking().await;
        let start = tokio::time::Instant::now();
        let _follower_2 = keep_fetching_in_contact(&replicas, &partition, 2, None, cancel.clone());
        let waited = follower_3_removed_near_the_lag_time(&mut changes, start).await;
        assert!(
            waited > LAG - STALL && waited <= LAG + STALL / 4,
            "after {waited:?}"
        );
        cancel.cancel();
    }

    /// A follower heard from before this broker took a partition over has the stall time from the
    /// takeover to start fetching it, not an immediate removal because its last contact is old.
    #[tokio::test(start_paused = true)]
    async fn a_follower_heard_from_before_a_takeover_has_the_stall_time_from_it() {
        // Broker 2 leads at first: this broker checks no ISR of the partition yet.
        let (_dir, replicas, mut changes, partition) =
            manager_from(|topic_id| image_led_by(2, 0, &[1, 2, 3], topic_id));
        let replicas = Arc::new(replicas);
        let cancel = run_shrinker(&replicas);
        replicas.note_follower_contact(3);
        tokio::time::sleep(5 * STALL).await;
        // This broker takes the partition over; broker 3 was last heard from 5 stall times ago.
        replicas.apply_metadata(&image_led_by(1, 1, &[1, 2, 3], partition.topic_id), true);
        let took_over = tokio::time::Instant::now();
        let _follower_2 = keep_fetching_in_contact(&replicas, &partition, 2, None, cancel.clone());
        // Counted from the takeover, not from the old contact: not at the first check.
        follower_3_removed_one_stall_time_after(&mut changes, took_over).await;
        cancel.cancel();
    }

    /// A follower heard from (fetching other partitions) that goes silent is stalled within about
    /// the stall time even on a partition it has not fetched yet under this leader epoch.
    #[tokio::test(start_paused = true)]
    async fn a_follower_heard_from_then_silent_is_stalled_on_a_partition_it_never_fetched() {
        let (_dir, replicas, mut changes, partition, cancel) = shrinking().await;
        let _follower_2 = keep_fetching_in_contact(&replicas, &partition, 2, None, cancel.clone());
        replicas.note_follower_contact(3);
        let silent_since = tokio::time::Instant::now();
        follower_3_removed_one_stall_time_after(&mut changes, silent_since).await;
        cancel.cancel();
    }

    /// Follower `id` fetching every `LONG_POLL` from `offset` (the log end when `None`) and noting
    /// its contact as a real fetch does, until `stop`.
    fn keep_fetching_in_contact(
        replicas: &Arc<ReplicaManager>,
        partition: &Arc<Partition>,
        id: BrokerId,
        offset: Option<i64>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        fetch_loop(replicas, partition, id, LONG_POLL, offset, true, stop)
    }

    /// Issue #18: with every follower caught up and in contact, the partitions are walked every half
    /// lag time, not every tick; a follower falling behind after an append is still removed after
    /// the lag time, and one going silent after the stall time.
    #[tokio::test(start_paused = true)]
    async fn a_settled_leader_walks_its_partitions_only_every_half_lag_time() {
        let (_dir, replicas, mut changes, partition, cancel) = shrinking().await;
        let _follower_2 = keep_fetching_in_contact(&replicas, &partition, 2, None, cancel.clone());
        let stop_3 = cancel.child_token();
        let follower_3 = keep_fetching_in_contact(&replicas, &partition, 3, None, stop_3.clone());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let walks = replicas.isr_walks();
        tokio::time::sleep(LAG).await;
        let walked = replicas.isr_walks() - walks;
        assert!(
            (1..=3).contains(&walked),
            "{walked} walks in {LAG:?}, ticking every {:?}",
            STALL / 4
        );
        assert!(changes.try_recv().is_err(), "healthy followers stay");

        // Follower 3 keeps fetching, but no longer catches up with the next append.
        stop_3.cancel();
        follower_3.await.unwrap();
        let behind = partition.log.log_end_offset();
        let _follower_3 =
            keep_fetching_in_contact(&replicas, &partition, 3, Some(behind), cancel.clone());
        tokio::time::sleep(LONG_POLL).await;
        let appended = tokio::time::Instant::now();
        partition
            .log
            .append_as_leader(client_batch(&[1], 10), 0)
            .unwrap();
        let change = tokio::time::timeout(LAG + 2 * STALL, changes.recv())
            .await
            .expect("the follower behind is proposed for removal")
            .unwrap();
        assert_eq!(change.new_isr, vec![(1, -1), (2, -1)]);
        let waited = appended.elapsed();
        assert!(
            waited > LAG - LONG_POLL && waited <= LAG + STALL,
            "after {waited:?}"
        );
        cancel.cancel();
    }

    /// Issue #18: a roles change makes the ISR walk look at the partitions it touched, not at every
    /// hosted partition.
    #[tokio::test(start_paused = true)]
    async fn a_roles_change_walks_only_the_partitions_it_touched_for_isrs() {
        let (_dir, replicas, mut changes, partition, cancel) = shrinking().await;
        let _follower_2 = keep_fetching_in_contact(&replicas, &partition, 2, None, cancel.clone());
        let _follower_3 = keep_fetching_in_contact(&replicas, &partition, 3, None, cancel.clone());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (walks, partial) = (replicas.isr_walks(), replicas.isr_partial_walks());
        replicas.roles_changed(vec![partition.clone()]);
        tokio::time::sleep(STALL).await;
        assert_eq!(replicas.isr_walks(), walks, "no walk of every partition");
        assert_eq!(replicas.isr_partial_walks(), partial + 1);
        assert!(changes.try_recv().is_err(), "healthy followers stay");
        cancel.cancel();
    }

    /// The walks skipped while settled do not delay the stall rule: a follower that goes silent is
    /// proposed for removal within about the stall time, as when every tick walks.
    #[tokio::test(start_paused = true)]
    async fn a_settled_leader_still_removes_a_silent_follower_within_the_stall_time() {
        let (_dir, replicas, mut changes, partition, cancel) = shrinking().await;
        let _follower_2 = keep_fetching_in_contact(&replicas, &partition, 2, None, cancel.clone());
        let stop_3 = cancel.child_token();
        let follower_3 = keep_fetching_in_contact(&replicas, &partition, 3, None, stop_3.clone());
        tokio::time::sleep(Duration::from_secs(5)).await;
        let walks = replicas.isr_walks();
        stop_3.cancel();
        follower_3.await.unwrap();
        let silent_since = tokio::time::Instant::now();
        let change = tokio::time::timeout(2 * STALL, changes.recv())
            .await
            .expect("the silent follower is proposed for removal")
            .unwrap();
        assert_eq!(change.new_isr, vec![(1, -1), (2, -1)]);
        let silent = silent_since.elapsed();
        assert!(
            silent > STALL - LONG_POLL && silent <= STALL + STALL / 4,
            "proposed after {silent:?} of silence"
        );
        assert!(replicas.isr_walks() > walks, "found by a walk");
        cancel.cancel();
    }

    /// A leader that was itself stopped (SIGSTOP, a starved host) finds its followers' fetches unread
    /// in its sockets when it resumes: their silence counts only from then.
    #[tokio::test(start_paused = true)]
    async fn a_leader_resuming_from_a_pause_does_not_drop_its_followers() {
        let (_dir, replicas, mut changes, partition, cancel) = shrinking().await;
        for follower in [2, 3] {
            replicas.on_follower_fetch(&partition, follower, 10 + i64::from(follower), 1);
        }
        // The whole process stands still for 5 s, then its timers fire before any fetch is read.
        tokio::time::advance(Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(changes.try_recv().is_err(), "followers dropped on resuming");
        let _follower_2 = keep_fetching(&replicas, &partition, 2, LONG_POLL, true, cancel.clone());
        let _follower_3 = keep_fetching(&replicas, &partition, 3, LONG_POLL, true, cancel.clone());
        assert!(
            tokio::time::timeout(Duration::from_secs(5), changes.recv())
                .await
                .is_err(),
            "no follower is proposed for removal"
        );
        cancel.cancel();
    }

    /// Appends completed together are each acknowledged only once durable, and share fsyncs (group
    /// commit) rather than taking one each.
    #[tokio::test]
    async fn appends_completed_together_are_durable_when_acknowledged_and_share_fsyncs() {
        let (_dir, replicas, _rx, partition) = manager(&[1]);
        let replicas = Arc::new(replicas);
        let mut pending = Vec::new();
        for _ in 0..20 {
            pending.push(
                replicas
                    .append_as_leader(&partition, client_batch(&[1], 100), 1)
                    .await
                    .unwrap(),
            );
        }
        let fsyncs_before = partition.log.fsync_count();
        let completed = futures::future::join_all(pending.into_iter().map(|p| {
            let (replicas, partition) = (replicas.clone(), partition.clone());
            async move {
                let info = replicas
                    .complete_append(p, 1, Duration::from_secs(10))
                    .await
                    .unwrap();
                assert!(
                    partition.log.flushed_offset() > info.last_offset,
                    "acknowledged before it was fsynced"
                );
            }
        }))
        .await;
        assert_eq!(completed.len(), 20);
        let fsyncs = partition.log.fsync_count() - fsyncs_before;
        assert!((1..20).contains(&fsyncs), "{fsyncs} fsyncs for 20 appends");
    }

    /// Issue #15: with two in-sync followers, a replicated acks=all append's fsync waits until the
    /// first reports a copy, so one fsync covers what a follower round carried; the append is still
    /// acknowledged only once it is durable here as well as on the ISR.
    #[tokio::test]
    async fn a_replicated_acks_all_append_is_fsynced_once_a_follower_has_it_and_acknowledged_after()
    {
        let (_dir, replicas, _changes, partition) = manager(&[1, 2, 3]);
        let replicas = Arc::new(replicas);
        let mut waiting = Vec::new();
        for _ in 0..3 {
            waiting.push(append_acks_all_in_background(&replicas, &partition).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            partition.log.fsync_count(),
            0,
            "fsynced before any follower had a copy"
        );
        // The first follower's copy starts the one fsync; the second's completes the round.
        replicas.on_follower_fetch(&partition, 2, 12, 3);
        let deadline = Instant::now() + Duration::from_secs(10);
        while partition.log.flushed_offset() < 3 {
            assert!(Instant::now() < deadline, "the deferred fsync never ran");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(waiting.iter().all(|w| !w.is_finished()));
        replicas.on_follower_fetch(&partition, 3, 13, 3);
        for w in waiting {
            w.await.unwrap().expect("acknowledged");
        }
        assert_eq!(partition.log.fsync_count(), 1, "one fsync for the round");
    }

    /// The deferred fsync is still this append's: when it fails, the append is not acknowledged,
    /// although every follower has it.
    #[tokio::test]
    async fn a_replicated_acks_all_append_whose_fsync_fails_here_is_not_acknowledged() {
        let (_dir, replicas, _changes, partition) = manager(&[1, 2, 3]);
        let replicas = Arc::new(replicas);
        let waiting = append_acks_all_in_background(&replicas, &partition).await;
        partition.log.fail_next_fsync();
        replicas.on_follower_fetch(&partition, 2, 12, 1);
        replicas.on_follower_fetch(&partition, 3, 13, 1);
        let result = waiting.await.unwrap();
        assert!(
            matches!(result, Err(AppendError::Log(_))),
            "acknowledged without an fsync here: {result:?}"
        );
        assert_eq!(partition.log.flushed_offset(), 0);
    }

    /// Issue #11, defect 8 (KIP-704): the leader an unclean election chose asks the controller to
    /// clear RECOVERING, or the partition stays under-replicated forever.
    #[tokio::test]
    async fn the_leader_of_a_recovering_partition_asks_to_clear_it() {
        let dir = tempfile::tempdir().unwrap();
        let logs = Arc::new(LogManager::open(dir.path(), LogConfig::default()).unwrap());
        let (tx, mut changes) = mpsc::unbounded_channel();
        let replicas = ReplicaManager::new(1, logs, tx);
        let topic_id = Uuid::new_v4();
        let mut unclean = image(&[2], topic_id);
        unclean.replay_all(
            21,
            &[Record::PartitionChange(PartitionChangeRecord {
                topic_id,
                partition: 0,
                leader: Some(1),
                isr: Some(vec![1]),
                recovering: Some(true),
                ..Default::default()
            })],
        );
        replicas.apply_metadata(&unclean, true);
        let change = changes.try_recv().expect("a request to clear RECOVERING");
        assert_eq!(change.new_isr, vec![(1, -1)]);
        assert_eq!(
            change.leader_recovery_state,
            Some(LeaderRecoveryState::Recovered)
        );
        assert_eq!((change.leader_epoch, change.partition_epoch), (1, 1));
        // Refused or lost: asked again on the next periodic ISR check.
        change.partition.end_isr_change(false);
        replicas.shrink_lagging_isrs(
            Duration::from_secs(30),
            Duration::from_secs(30),
            Instant::now(),
        );
        let again = changes.try_recv().expect("asked again");
        assert_eq!(
            again.leader_recovery_state,
            Some(LeaderRecoveryState::Recovered)
        );
    }

    #[tokio::test]
    async fn acks_all_waits_for_the_isr_and_times_out_without_it() {
        let (_dir, replicas, _changes, partition) = manager(&[1, 2]);
        let pending = replicas
            .append_as_leader(&partition, client_batch(&[1], 10), -1)
            .await
            .unwrap();
        let timed_out = replicas
            .complete_append(pending, -1, Duration::from_millis(100))
            .await;
        assert!(
            matches!(timed_out, Err(AppendError::TimedOut)),
            "follower 2 never fetched"
        );
        let replicas = Arc::new(replicas);
        let waiting = append_acks_all_in_background(&replicas, &partition).await;
        replicas.on_follower_fetch(&partition, 2, 12, 2);
        let info = waiting
            .await
            .unwrap()
            .expect("acknowledged once the follower has it");
        assert_eq!(info.base_offset, 1);
        // Below min.insync.replicas nothing is appended at all.
        let (_dir, replicas, _changes, partition) = manager(&[1]);
        let refused = replicas
            .append_as_leader(&partition, client_batch(&[1], 10), -1)
            .await;
        assert!(matches!(
            refused,
            Err(AppendError::NotEnoughReplicas { isr: 1, min: 2 })
        ));
        assert_eq!(partition.log.log_end_offset(), 0);
    }

    /// Issue #11 (chaos: duplicates of idempotent writes): below min.insync.replicas an idempotent
    /// producer's batches are written (and not acknowledged), so the next batch in flight continues
    /// the sequence instead of falling into a gap (OUT_OF_ORDER_SEQUENCE_NUMBER, which makes
    /// librdkafka resend everything unacknowledged under a new epoch); their retries are duplicates,
    /// acknowledged once the ISR is back.
    #[tokio::test]
    async fn below_min_isr_idempotent_batches_are_written_without_a_sequence_gap() {
        let (_dir, replicas, _changes, partition) = manager(&[1]);
        let replicas = Arc::new(replicas);
        let first = replicas
            .append_as_leader(&partition, producer_batch(7, 0, 0, 2), -1)
            .await
            .expect("written below min.insync.replicas");
        assert!(matches!(
            replicas
                .complete_append(first, -1, Duration::from_millis(100))
                .await,
            Err(AppendError::TimedOut)
        ));
        // The batch behind it in flight continues the sequence.
        let second = replicas
            .append_as_leader(&partition, producer_batch(7, 0, 2, 2), -1)
            .await
            .expect("no sequence gap");
        assert_eq!(second.info.base_offset, 2);
        // The retry of the first is a duplicate; once the ISR is back and has fetched, it is
        // acknowledged with its original offsets.
        let topic_id = partition.topic_id;
        replicas.apply_metadata(&image_led_by(1, 0, &[1, 2], topic_id), true);
        let retry = replicas
            .append_as_leader(&partition, producer_batch(7, 0, 0, 2), -1)
            .await
            .unwrap();
        assert!(retry.info.duplicate);
        let waiting = acks_all_in_background(&replicas, retry);
        replicas.on_follower_fetch(&partition, 2, 12, 4);
        let acked = waiting.await.unwrap().expect("acknowledged");
        assert_eq!((acked.base_offset, acked.last_offset), (0, 1));
        assert_eq!(partition.log.log_end_offset(), 4, "nothing written twice");
    }

    #[tokio::test]
    async fn a_duplicate_is_acknowledged_only_once_its_original_is_committed() {
        let (_dir, replicas, _changes, partition) = manager(&[1, 2]);
        let replicas = Arc::new(replicas);
        // The original (offsets 0..=2) is written but follower 2 has not fetched it: not committed.
        let original = replicas
            .append_as_leader(&partition, producer_batch(7, 0, 0, 3), -1)
            .await
            .unwrap();
        drop(original); // its client gave up (a timeout) and retries
        let retry = replicas
            .append_as_leader(&partition, producer_batch(7, 0, 0, 3), -1)
            .await
            .unwrap();
        let mut waiting = acks_all_in_background(&replicas, retry);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), &mut waiting)
                .await
                .is_err(),
            "acknowledged before the original was committed"
        );
        replicas.on_follower_fetch(&partition, 2, 12, 3);
        let info = waiting.await.unwrap().expect("acknowledged once committed");
        assert!(info.duplicate);
        assert_eq!((info.base_offset, info.last_offset), (0, 2));
        assert_eq!(partition.log.log_end_offset(), 3, "written once");
    }

    /// Broker 1 follows broker 2 (epoch 0) and holds `records` replicated records of which the
    /// previous leader had committed `high_watermark`.
    fn follower_of_2(
        records: Vec<Bytes>,
        high_watermark: i64,
    ) -> (
        tempfile::TempDir,
        Arc<ReplicaManager>,
        mpsc::UnboundedReceiver<IsrChange>,
        Arc<Partition>,
        Uuid,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let logs = Arc::new(LogManager::open(dir.path(), LogConfig::default()).unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        let replicas = Arc::new(ReplicaManager::new(1, logs, tx));
        let topic_id = Uuid::new_v4();
        replicas.apply_metadata(&image_led_by(2, 0, &[1, 2, 3], topic_id), true);
        let partition = replicas.partition(topic_id, 0).expect("hosted");
        for batch in records {
            // What the fetcher would have copied from leader 2 (same offsets, epoch 0).
            partition.log.append_as_leader(batch, 0).unwrap();
        }
        partition.log.maybe_increment_high_watermark(high_watermark);
        (dir, replicas, rx, partition, topic_id)
    }

    #[tokio::test]
    async fn a_new_leader_keeps_its_high_watermark_until_the_isr_has_fetched_in_its_epoch() {
        // Issue #11 (1): B is elected while C lags; B must not expose what C lacks.
        let batches = (0..3).map(|_| client_batch(&[1], 10)).collect();
        let (_dir, replicas, _changes, partition, topic_id) = follower_of_2(batches, 1);
        replicas.apply_metadata(&image_led_by(1, 1, &[1, 2, 3], topic_id), true);
        assert!(partition.is_leader(1));
        assert_eq!(
            partition.log.high_watermark(),
            1,
            "a new leader exposed records the ISR may lack"
        );
        // Follower 2 fetched in the new epoch, follower 3 not yet: still nothing new is committed.
        replicas.on_follower_fetch(&partition, 2, 12, 3);
        assert_eq!(partition.log.high_watermark(), 1);
        replicas.on_follower_fetch(&partition, 3, 13, 2);
        assert_eq!(partition.log.high_watermark(), 2);
        replicas.on_follower_fetch(&partition, 3, 13, 3);
        assert_eq!(partition.log.high_watermark(), 3);
    }

    #[tokio::test]
    async fn a_new_leader_does_not_acknowledge_a_retry_of_a_batch_the_isr_lacks() {
        // Issue #11 (1): the original reached B (now leader) but not C; the producer's retry must
        // wait until C has it, or a later election of C loses an acknowledged write.
        let (_dir, replicas, _changes, partition, topic_id) =
            follower_of_2(vec![producer_batch(7, 0, 0, 3)], 0);
        replicas.apply_metadata(&image_led_by(1, 1, &[1, 2, 3], topic_id), true);
        let retry = replicas
            .append_as_leader(&partition, producer_batch(7, 0, 0, 3), -1)
            .await
            .unwrap();
        let mut waiting = acks_all_in_background(&replicas, retry);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), &mut waiting)
                .await
                .is_err(),
            "a duplicate was acknowledged before its original was committed"
        );
        replicas.on_follower_fetch(&partition, 2, 12, 3);
        replicas.on_follower_fetch(&partition, 3, 13, 3);
        let info = waiting.await.unwrap().expect("acknowledged once committed");
        assert!(info.duplicate);
        assert_eq!((info.base_offset, info.last_offset), (0, 2));
    }

    #[tokio::test]
    async fn an_append_is_acknowledged_only_under_the_leader_epoch_it_was_made_in() {
        // Issue #11 (1): written in epoch 0; the leader is re-elected (epoch 1) before the fsync and
        // the high watermark of epoch 1 passing the offset says nothing about the epoch-0 append.
        let (_dir, replicas, _changes, partition) = manager(&[1, 2]);
        let replicas = Arc::new(replicas);
        let topic_id = partition.topic_id;
        let pending = replicas
            .append_as_leader(&partition, client_batch(&[1], 10), -1)
            .await
            .unwrap();
        replicas.apply_metadata(&image_led_by(1, 1, &[1, 2], topic_id), true);
        let waiting = acks_all_in_background(&replicas, pending);
        replicas.on_follower_fetch(&partition, 2, 12, 1);
        assert_eq!(partition.log.high_watermark(), 1);
        let result = waiting.await.unwrap();
        assert!(
            matches!(result, Err(AppendError::NotLeader)),
            "acknowledged under a later epoch: {result:?}"
        );
    }

    /// Appends `n` one-record batches with acks=1.
    async fn append_acks_1(replicas: &ReplicaManager, partition: &Arc<Partition>, n: usize) {
        for _ in 0..n {
            let pending = replicas
                .append_as_leader(partition, client_batch(&[1], 10), 1)
                .await
                .unwrap();
            replicas
                .complete_append(pending, 1, Duration::from_secs(1))
                .await
                .unwrap();
        }
    }

    /// On a partition of ISR [1, 2]: three records, both followers caught up, and the expansion
    /// the leader proposes for 3.
    async fn expansion_of_3(
        replicas: &ReplicaManager,
        partition: &Arc<Partition>,
        proposed: &mut mpsc::UnboundedReceiver<IsrChange>,
    ) -> IsrChange {
        append_acks_1(replicas, partition, 3).await;
        replicas.on_follower_fetch(partition, 2, 12, 3);
        replicas.on_follower_fetch(partition, 3, 13, 3);
        let change = proposed.try_recv().expect("an ISR expansion");
        assert_eq!(change.new_isr, vec![(1, -1), (2, -1), (3, 13)]);
        change
    }

    #[tokio::test]
    async fn the_high_watermark_waits_for_a_replica_whose_isr_addition_is_pending() {
        // Issue #11 (2): while 3's addition is in flight, 3 counts (KIP-497 maximal ISR), or it would
        // join the ISR missing records below the high watermark.
        let (_dir, replicas, mut changes, partition) = manager(&[1, 2]);
        expansion_of_3(&replicas, &partition, &mut changes).await;
        let append = |n| append_acks_1(&replicas, &partition, n);
        append(2).await;
        replicas.on_follower_fetch(&partition, 2, 12, 5);
        assert_eq!(
            partition.log.high_watermark(),
            3,
            "the high watermark passed a replica being added to the ISR"
        );
        replicas.on_follower_fetch(&partition, 3, 13, 5);
        assert_eq!(partition.log.high_watermark(), 5);
        // A refused change leaves the committed ISR alone in charge again.
        partition.end_isr_change(false);
        append(1).await;
        replicas.on_follower_fetch(&partition, 2, 12, 6);
        assert_eq!(partition.log.high_watermark(), 6);
    }

    #[tokio::test]
    async fn an_isr_addition_whose_answer_was_lost_keeps_counting_until_the_image_settles_it() {
        // The transactional chaos run's lost commit (seed 11): the controller committed 3's return
        // to the ISR, but its answer never reached the leader, which stopped counting 3 and
        // acknowledged a record 3 did not have; 3, in the committed ISR, was then elected without it.
        let (_dir, replicas, mut proposed, partition) = manager(&[1, 2]);
        let replicas = Arc::new(replicas);
        let change = expansion_of_3(&replicas, &partition, &mut proposed).await;
        let append = |n| append_acks_1(&replicas, &partition, n);

        // The first AlterPartition is committed but its answer is lost; the second, asked again,
        // finds the partition epoch moved (by the first).
        let controller = scripted_controller(|attempt, request| {
            let topic = &request.topics[0];
            (attempt > 0).then(|| pb::AlterPartitionResponse {
                topics: vec![pb::AlterPartitionTopicResult {
                    topic_id: topic.topic_id.clone(),
                    partitions: vec![pb::AlterPartitionResult {
                        partition_index: topic.partitions[0].partition_index,
                        error_code: i32::from(ResponseError::InvalidUpdateVersion.code()),
                        ..Default::default()
                    }],
                }],
            })
        })
        .await;
        let client = Arc::new(
            ControllerClient::new(vec![controller.address.clone()], Duration::from_millis(300))
                .unwrap(),
        );
        let (_status_tx, status) = watch::channel(crate::status::BrokerStatus {
            broker_id: 1,
            incarnation_id: Uuid::nil(),
            state: crate::status::BrokerState::Running,
            broker_epoch: Some(11),
            cluster_id: None,
            fenced: false,
            offline_log_dirs: Vec::new(),
        });
        let (changes, receiver) = mpsc::unbounded_channel();
        changes.send(change).unwrap();
        let cancel = CancellationToken::new();
        let running = tokio::spawn(super::super::isr::run_isr_changes(
            replicas.clone(),
            client,
            status,
            receiver,
            cancel.clone(),
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        while controller.asked() < 2 {
            assert!(
                Instant::now() < deadline,
                "the unanswered change was not asked again"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        append(2).await;
        replicas.on_follower_fetch(&partition, 2, 12, 5);
        assert_eq!(
            partition.log.high_watermark(),
            3,
            "the high watermark passed a replica the controller may have put in the ISR"
        );
        // The image shows the committed ISR: 3 counts as a member now.
        replicas.apply_metadata(&image_at(1, 0, 1, &[1, 2, 3], partition.topic_id), true);
        replicas.on_follower_fetch(&partition, 2, 12, 5);
        assert_eq!(partition.log.high_watermark(), 3);
        replicas.on_follower_fetch(&partition, 3, 13, 5);
        assert_eq!(partition.log.high_watermark(), 5);
        cancel.cancel();
        running.await.unwrap();
        assert_eq!(
            controller.asked(),
            2,
            "asked again after the image settled it"
        );
    }

    /// A controller endpoint serving AlterPartition only, as `answer` scripts it from the attempt's
    /// number (0 first) and request: `None` never answers (the answer is lost).
    async fn scripted_controller(
        answer: impl Fn(usize, pb::AlterPartitionRequest) -> Option<pb::AlterPartitionResponse>
            + Send
            + Sync
            + 'static,
    ) -> ScriptedController {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let service = AlterPartitionOnly {
            answer: Arc::new(answer),
            asked: Arc::new(AtomicUsize::new(0)),
        };
        let asked = service.asked.clone();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        ScriptedController {
            address,
            asked,
            server,
        }
    }

    struct ScriptedController {
        address: String,
        asked: Arc<AtomicUsize>,
        server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    }

    impl ScriptedController {
        fn asked(&self) -> usize {
            self.asked.load(Ordering::SeqCst)
        }
    }

    impl Drop for ScriptedController {
        fn drop(&mut self) {
            self.server.abort();
        }
    }

    type AlterPartitionScript = dyn Fn(usize, pb::AlterPartitionRequest) -> Option<pb::AlterPartitionResponse>
        + Send
        + Sync;

    #[derive(Clone)]
    struct AlterPartitionOnly {
        answer: Arc<AlterPartitionScript>,
        asked: Arc<AtomicUsize>,
    }

    impl tonic::server::NamedService for AlterPartitionOnly {
        const NAME: &'static str = "chronik.v1.BrokerService";
    }

    impl tonic::server::UnaryService<pb::AlterPartitionRequest> for AlterPartitionOnly {
        type Response = pb::AlterPartitionResponse;
        type Future = tonic::codegen::BoxFuture<tonic::Response<Self::Response>, tonic::Status>;

        fn call(&mut self, request: tonic::Request<pb::AlterPartitionRequest>) -> Self::Future {
            let attempt = self.asked.fetch_add(1, Ordering::SeqCst);
            let answer = (self.answer)(attempt, request.into_inner());
            Box::pin(async move {
                match answer {
                    Some(response) => Ok(tonic::Response::new(response)),
                    None => std::future::pending().await,
                }
            })
        }
    }

    impl tonic::codegen::Service<tonic::codegen::http::Request<tonic::body::Body>>
        for AlterPartitionOnly
    {
        type Response = tonic::codegen::http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(
            &mut self,
            request: tonic::codegen::http::Request<tonic::body::Body>,
        ) -> Self::Future {
            let service = self.clone();
            Box::pin(async move {
                if request.uri().path() != "/chronik.v1.BrokerService/AlterPartition" {
                    return Ok(
                        tonic::Status::unimplemented(request.uri().path().to_owned()).into_http(),
                    );
                }
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(service, request).await)
            })
        }
    }
}
