//! `TransactionCoordinator`: which partitions of `__transaction_state` this broker leads (and so
//! which transactional ids it coordinates), loading and unloading them as leadership moves, the writes
//! of every state change, the markers of every decided transaction, the timers, and the operations
//! the transaction handlers call.
//!
//! What must stay true: a partition is served only after it is replayed, and only while the metadata
//! says this broker leads it at the epoch it was loaded for; every decision on an id is taken under
//! its partition's lock and marks the id pending before the lock is released, so decisions on one id
//! are written one at a time and in order; the state changes only once its record is committed.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chronik_metadata::features::TRANSACTION_VERSION;
use chronik_metadata::{BrokerId, MetadataImage};
use kafka_protocol::error::ResponseError;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::markers::{MarkerOutcome, MarkerSender, Markers};
use super::records;
use super::state::{EndTransit, InitTransit, TxnMetadata, TxnState, TRANSACTION_VERSION_2};
use super::{TxnConfig, TRANSACTION_STATE_TOPIC};
use crate::controller_client::ControllerClient;
use crate::coordinator_runtime::{
    coordinator_endpoint, create_internal_topic, replay_log, CoordinatorEndpoint, CoordinatorShard,
    InternalTopic, Load, MinInsync, Replayed as LogItem, Shards, TopicSpec,
};
use crate::log::batch::{encode_plain_batch, plain_record};
use crate::log::{now_ms, LogError, PartitionLog};
use crate::metadata::MetadataCache;
use crate::producer_ids::{ProducerIdManager, BLOCK_WAIT};
use crate::replica::{AppendError, Partition, ReplicaManager};

/// After a failed Complete write, the next try waits this long.
const COMPLETE_RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// How long AddPartitionsToTxn (and AddOffsetsToTxn) waits for the id's previous transaction to
/// complete before answering CONCURRENT_TRANSACTIONS. Its markers can take a leader election or a
/// broker's session timeout, or a restart of the only replica; under the clients' request timeouts
/// (30 s Java, 60 s librdkafka). 15 s was too short for a broker restart on a loaded machine.
const COMPLETION_WAIT: Duration = Duration::from_secs(25);

const TRANSACTION_STATE: InternalTopic = InternalTopic {
    name: TRANSACTION_STATE_TOPIC,
    serves: "transactions",
};

/// One loaded partition of the state topic.
pub struct TxnShard {
    pub partition_index: i32,
    /// The partition's leader epoch: the coordinator epoch of every marker sent from here.
    pub coordinator_epoch: i32,
    partition: Arc<Partition>,
    state: Mutex<ShardState>,
    /// Held while a record is appended, so records reach the log in decision order.
    append: tokio::sync::Mutex<()>,
    /// Woken whenever a write ends (committed or not) and when the shard is unloaded: a request
    /// waiting for an id to settle looks again.
    changed: Notify,
}

#[derive(Default)]
struct ShardState {
    txns: HashMap<String, TxnMetadata>,
    unloaded: bool,
    /// The client connection each id's transaction was last begun or extended on here (by
    /// InitProducerId, AddPartitionsToTxn or AddOffsetsToTxn), which its EndTxn is expected on (see
    /// [`TransactionCoordinator::end_txn`]). Memory only: empty after a load.
    owners: HashMap<String, SocketAddr>,
}

impl TxnShard {
    fn lock(&self) -> MutexGuard<'_, ShardState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_live(&self) -> Result<MutexGuard<'_, ShardState>, ResponseError> {
        let state = self.lock();
        if state.unloaded {
            return Err(ResponseError::NotCoordinator);
        }
        Ok(state)
    }
}

/// Records `from` as the connection `transactional_id`'s transaction was last begun or extended on.
fn own(shard: &TxnShard, transactional_id: &str, from: Option<SocketAddr>) {
    if let Some(from) = from {
        shard
            .lock()
            .owners
            .insert(transactional_id.to_owned(), from);
    }
}

/// A transaction as DescribeTransactions and ListTransactions show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnDescription {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub state: TxnState,
    pub timeout_ms: i32,
    pub start_timestamp_ms: i64,
    pub partitions: BTreeSet<(String, i32)>,
}

/// The result of InitProducerId.
pub type InitResult = Result<(i64, i16), ResponseError>;

pub struct TransactionCoordinator {
    config: TxnConfig,
    metadata: Arc<MetadataCache>,
    replicas: Arc<ReplicaManager>,
    controller: Arc<ControllerClient>,
    producer_ids: Arc<ProducerIdManager>,
    markers: MarkerSender,
    shards: Shards<TxnShard>,
    creating: tokio::sync::Mutex<()>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl TransactionCoordinator {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        broker_id: BrokerId,
        config: TxnConfig,
        metadata: Arc<MetadataCache>,
        replicas: Arc<ReplicaManager>,
        controller: Arc<ControllerClient>,
        producer_ids: Arc<ProducerIdManager>,
        markers: MarkerSender,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(TransactionCoordinator {
            config,
            metadata,
            replicas,
            controller,
            producer_ids,
            markers,
            shards: Shards::new(TRANSACTION_STATE, broker_id),
            creating: tokio::sync::Mutex::new(()),
            tracker,
            cancel,
        })
    }

    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    /// Follows leadership of the state topic and runs the timeout and expiration checks until
    /// cancelled.
    pub async fn run(self: Arc<Self>) {
        let mut images = self.metadata.subscribe();
        let mut timeouts = tokio::time::interval(self.config.abort_timed_out_interval);
        timeouts.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let image = self.metadata.current();
            self.on_metadata(&image);
            loop {
                tokio::select! {
                    _ = self.cancel.cancelled() => {
                        self.shards.unload_all();
                        return;
                    }
                    changed = images.changed() => {
                        if changed.is_err() {
                            self.shards.unload_all();
                            return;
                        }
                        break;
                    }
                    _ = timeouts.tick() => {
                        self.abort_timed_out();
                        self.expire_transactional_ids();
                    }
                }
            }
        }
    }

    fn on_metadata(self: &Arc<Self>, image: &MetadataImage) {
        for load in self.shards.on_metadata(image, |_| {}) {
            self.tracker.spawn(self.clone().load(load));
        }
    }

    /// Whether `shard` is still the loaded one of its partition (it was not unloaded or reloaded).
    fn is_current(&self, shard: &Arc<TxnShard>) -> bool {
        self.shards.is_loaded(shard.partition_index, shard) && !shard.lock().unloaded
    }

    /// Replays one partition once the replica manager has made this broker its leader, serves it,
    /// and resumes the markers of the transactions it finds prepared.
    async fn load(self: Arc<Self>, load: Load) {
        let started = Instant::now();
        let Some((partition, replayed)) = self
            .shards
            .lead_and_replay(&self.replicas, &self.cancel, load, replay)
            .await
        else {
            return;
        };
        let Load {
            index,
            leader_epoch,
            ..
        } = load;
        let prepared: Vec<(String, TxnMetadata)> = replayed
            .txns
            .iter()
            .filter(|(_, m)| m.state.is_prepared())
            .map(|(id, m)| (id.clone(), m.clone()))
            .collect();
        let count = replayed.txns.len();
        let shard = Arc::new(TxnShard {
            partition_index: index,
            coordinator_epoch: leader_epoch,
            partition,
            state: Mutex::new(ShardState {
                txns: replayed.txns,
                unloaded: false,
                owners: HashMap::new(),
            }),
            append: tokio::sync::Mutex::new(()),
            changed: Notify::new(),
        });
        if !self
            .shards
            .install(index, leader_epoch, shard.clone(), |_| {})
        {
            return;
        }
        info!(
            partition = index,
            leader_epoch,
            transactional_ids = count,
            prepared = prepared.len(),
            records = replayed.records,
            unreadable = replayed.unreadable,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded transaction state partition"
        );
        for (id, meta) in prepared {
            if let Some(m) = shard.lock().txns.get_mut(&id) {
                m.pending = Some(meta.state);
            }
            self.tracker
                .spawn(self.clone().complete_transaction(shard.clone(), id, meta));
        }
    }

    /// The shard coordinating `transactional_id`: NOT_COORDINATOR if another broker does (or nobody
    /// knows yet), COORDINATOR_LOAD_IN_PROGRESS while it loads.
    fn shard(&self, transactional_id: &str) -> Result<Arc<TxnShard>, ResponseError> {
        self.shards.get(&self.metadata.current(), transactional_id)
    }

    fn loaded_shards(&self) -> Vec<Arc<TxnShard>> {
        self.shards.loaded()
    }

    /// Appends `next` (or a tombstone) for `id` and waits until it is committed; then it becomes the
    /// id's state. On failure the pending mark is cleared and the state stays as it was.
    async fn write(
        &self,
        shard: &Arc<TxnShard>,
        id: &str,
        next: Option<TxnMetadata>,
    ) -> Result<(), ResponseError> {
        let result = self.append(shard, id, next.as_ref()).await;
        let outcome = settle(shard, id, result, next);
        shard.changed.notify_waiters();
        outcome
    }

    async fn append(
        &self,
        shard: &Arc<TxnShard>,
        id: &str,
        next: Option<&TxnMetadata>,
    ) -> Result<(), ResponseError> {
        let value = next.map(TxnMetadata::to_log);
        let (key, value) = records::encode(id, value.as_ref(), self.value_version(next));
        let mut batch = [plain_record(0, now_ms(), Some(key), value)];
        let batch = encode_plain_batch(&mut batch).map_err(|e| {
            warn!("cannot encode a transaction state record: {e}");
            ResponseError::UnknownServerError
        })?;
        let pending = {
            let _order = shard.append.lock().await;
            self.replicas
                .append_as_coordinator(&shard.partition, batch, shard.coordinator_epoch)
                .await
                .map_err(|e| write_error(&e))?
        };
        self.replicas
            .complete_append(pending, -1, self.config.write_timeout)
            .await
            .map(|_| ())
            .map_err(|e| write_error(&e))
    }

    /// The `__transaction_state` value schema to write (Kafka's
    /// `TransactionVersion.transactionLogValueVersion`): v1 once the cluster finalizes
    /// `transaction.version` 1 or more, or whenever the state has a field only v1 holds.
    fn value_version(&self, next: Option<&TxnMetadata>) -> i16 {
        let finalized = self.metadata.current().feature_level(TRANSACTION_VERSION);
        let needs_v1 = next.is_some_and(|m| m.client_version != 0 || m.next_producer_id >= 0);
        if finalized >= 1 || needs_v1 {
            records::VALUE_V1
        } else {
            records::VALUE_V0
        }
    }

    // ---- FindCoordinator ----

    /// The coordinator of `transactional_id` on `listener`. Creates the state topic on first use.
    pub async fn find_coordinator(
        &self,
        transactional_id: &str,
        listener: &str,
    ) -> Result<CoordinatorEndpoint, (ResponseError, &'static str)> {
        if transactional_id.is_empty() {
            return Err((
                ResponseError::InvalidRequest,
                "the transactional id is empty",
            ));
        }
        let image = self.metadata.current();
        if let Some(endpoint) =
            coordinator_endpoint(&image, TRANSACTION_STATE, transactional_id, listener)?
        {
            return Ok(endpoint);
        }
        let spec = TopicSpec {
            partitions: self.config.num_partitions,
            replication_factor: self.config.replication_factor,
            min_insync: MinInsync::AtMost(self.config.min_insync_replicas),
        };
        create_internal_topic(
            &self.controller,
            &self.metadata,
            &self.creating,
            &image,
            TRANSACTION_STATE,
            &spec,
        )
        .await;
        Err((
            ResponseError::CoordinatorNotAvailable,
            "the transaction state topic is being created",
        ))
    }

    /// A producer id from this broker's block, for a new transactional id or a rotation.
    async fn fresh_producer_id(&self) -> Result<i64, ResponseError> {
        self.producer_ids
            .next_producer_id(BLOCK_WAIT)
            .await
            .map_err(|_| ResponseError::CoordinatorLoadInProgress)
    }

    // ---- InitProducerId ----

    /// InitProducerId with a transactional id (Kafka's `handleInitProducerId`). `expected` is the v3+
    /// producer id and epoch of a client bumping its epoch (KIP-360).
    pub async fn init_producer_id(
        self: &Arc<Self>,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        from: Option<SocketAddr>,
    ) -> InitResult {
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        let shard = self.shard(transactional_id)?;
        let mut new_producer_id = None;
        loop {
            match decide_init(
                &shard,
                transactional_id,
                timeout_ms,
                expected,
                new_producer_id,
            )? {
                InitTransit::NeedProducerId => {
                    new_producer_id = Some(self.fresh_producer_id().await?);
                }
                InitTransit::Write(next) => {
                    let (producer_id, epoch) = (next.producer_id, next.producer_epoch);
                    self.write(&shard, transactional_id, Some(next)).await?;
                    own(&shard, transactional_id, from);
                    info!(
                        transactional_id,
                        producer_id,
                        producer_epoch = epoch,
                        partition = shard.partition_index,
                        "initialized transactional id"
                    );
                    return Ok((producer_id, epoch));
                }
                InitTransit::FenceAndAbort(abort) => {
                    info!(
                        transactional_id,
                        producer_epoch = abort.producer_epoch,
                        "a new producer instance: aborting the ongoing transaction first"
                    );
                    self.write(&shard, transactional_id, Some(abort.clone()))
                        .await?;
                    self.spawn_completion(&shard, transactional_id, abort);
                    return Err(ResponseError::ConcurrentTransactions);
                }
            }
        }
    }

    // ---- AddPartitionsToTxn, AddOffsetsToTxn ----

    /// Adds partitions to the producer's transaction, writing the new set before answering.
    /// `client_version` is the request's transaction version: 2 when a partition leader (Produce
    /// v12) or a group coordinator (TxnOffsetCommit v5) adds for the producer (KIP-890 part 2).
    ///
    /// While the id's previous transaction is still completing (its EndTxn was answered, its markers
    /// or its Complete record are not written yet) a client's request (version 1; `from` the client's
    /// connection, recorded for [`TransactionCoordinator::end_txn`]) waits
    /// for it, up to [`COMPLETION_WAIT`], instead of answering CONCURRENT_TRANSACTIONS at once. A
    /// broker's request is answered CONCURRENT_TRANSACTIONS at once, as Kafka does: the leader asks
    /// again with a new verification guard, since the previous transaction's marker voids the one it
    /// holds. librdkafka counts an
    /// AddPartitionsToTxn refused that way as one that may have registered partitions (`txn_req_cnt`),
    /// so an `abort_transaction()` before its retry succeeds sends EndTxn(abort); that reaches an id
    /// in CompleteCommit or CompleteAbort and gets INVALID_TXN_STATE, which is fatal to the producer.
    /// Markers are slow exactly when a partition leader fails, so every broker fault opened that
    /// window. Waiting here closes it: the answer still comes only once the new partitions are
    /// committed, and a connection runs its requests one at a time, so the client's EndTxn runs after it.
    pub async fn add_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: BTreeSet<(String, i32)>,
        client_version: i16,
        from: Option<SocketAddr>,
    ) -> Result<(), ResponseError> {
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        let shard = self.shard(transactional_id)?;
        let deadline = Instant::now()
            + if client_version < TRANSACTION_VERSION_2 {
                COMPLETION_WAIT
            } else {
                Duration::ZERO
            };
        let mut waited = false;
        let next = wait_for_completion(&shard.changed, deadline, || {
            let attempt = try_add_partitions(
                &mut shard.lock(),
                transactional_id,
                (producer_id, producer_epoch),
                &partitions,
                client_version,
            );
            if matches!(attempt, Attempt::Completing) && !waited {
                debug!(
                    transactional_id,
                    "AddPartitionsToTxn waits for the previous transaction to complete"
                );
                waited = true;
            }
            attempt
        })
        .await;
        let added = match next {
            Ok(Some(next)) => self.write(&shard, transactional_id, Some(next)).await,
            Ok(None) => Ok(()),
            Err(ResponseError::ConcurrentTransactions) if waited => {
                info!(
                    transactional_id,
                    wait_ms = COMPLETION_WAIT.as_millis() as u64,
                    "the previous transaction is still completing; AddPartitionsToTxn answered CONCURRENT_TRANSACTIONS"
                );
                Err(ResponseError::ConcurrentTransactions)
            }
            Err(error) => Err(error),
        };
        if added.is_ok() && client_version < TRANSACTION_VERSION_2 {
            own(&shard, transactional_id, from);
        }
        added
    }

    /// AddPartitionsToTxn VerifyOnly (KIP-890 part 1): for each partition, whether it is in the
    /// producer's ongoing transaction.
    pub fn verify_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        let shard = self.shard(transactional_id)?;
        let state = shard.lock_live()?;
        let meta = state
            .txns
            .get(transactional_id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        meta.verify_partitions(producer_id, producer_epoch, partitions)
    }

    // ---- EndTxn ----

    /// EndTxn: writes PrepareCommit or PrepareAbort and answers once it is committed; the markers and
    /// the Complete record follow in the background. `client_version` is the request's transaction
    /// version (2 for EndTxn v5). Answers the producer id and epoch the producer goes on with: in
    /// transaction version 2 the bumped epoch, or a new producer id at epoch 0 once the epoch is
    /// exhausted (Kafka's `endTransaction`).
    ///
    /// In transaction version 1 the producer epoch is the same for every transaction of a session,
    /// so nothing in an EndTxn says which transaction it ends. A request the client gave up on can
    /// still arrive much later: sent to a coordinator cut off from the network, it sits in the
    /// client kernel's retransmission queue after the client closed the connection and went on
    /// elsewhere, and is delivered once the network heals, into whatever transaction is open by
    /// then (the transactional chaos run saw an abandoned EndTxn(commit) commit the next
    /// transaction, which the producer then aborted). So a version 1 EndTxn must come on the
    /// connection the transaction was last begun or extended on here (`from`), or that one must be
    /// closed (`is_open`, the client moved to a new connection); otherwise it is refused with the
    /// retriable CONCURRENT_TRANSACTIONS. Transaction version 2 needs no such rule: each end bumps
    /// the epoch, which fences a late request (KIP-890).
    pub async fn end_txn(
        self: &Arc<Self>,
        transactional_id: &str,
        (producer_id, producer_epoch): (i64, i16),
        commit: bool,
        client_version: i16,
        from: Option<SocketAddr>,
        is_open: impl Fn(SocketAddr) -> bool,
    ) -> Result<(i64, i16), ResponseError> {
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        let shard = self.shard(transactional_id)?;
        let mut new_producer_id = None;
        let prepared = loop {
            let decided = {
                let mut state = shard.lock_live()?;
                if client_version < TRANSACTION_VERSION_2 {
                    if let (Some(from), Some(&owner)) = (from, state.owners.get(transactional_id)) {
                        if owner != from && is_open(owner) {
                            info!(
                                transactional_id,
                                producer_id,
                                producer_epoch,
                                commit,
                                %from,
                                transaction_connection = %owner,
                                "EndTxn from a connection other than the open one the transaction was extended on: refused as a possibly stale request (CONCURRENT_TRANSACTIONS)"
                            );
                            return Err(ResponseError::ConcurrentTransactions);
                        }
                    }
                }
                let meta = state
                    .txns
                    .get_mut(transactional_id)
                    .ok_or(ResponseError::InvalidProducerIdMapping)?;
                let decided = meta.prepare_end(
                    producer_id,
                    producer_epoch,
                    commit,
                    client_version,
                    new_producer_id,
                    now_ms(),
                );
                let decided = match decided {
                    Err(ResponseError::InvalidTxnState)
                        if self.config.partitions_verified
                            && meta.is_abort_of_nothing_recorded(
                                producer_id,
                                producer_epoch,
                                commit,
                                client_version,
                            ) =>
                    {
                        info!(
                            transactional_id,
                            producer_id,
                            producer_epoch,
                            state = meta.state.name(),
                            "EndTxn(abort) of a transaction never recorded here: nothing to abort"
                        );
                        Ok(EndTransit::Answer(meta.producer_id, meta.producer_epoch))
                    }
                    decided => decided,
                };
                if decided == Err(ResponseError::InvalidTxnState) {
                    // Kafka's `logInvalidStateTransitionAndReturnError`: the client believes a
                    // transaction is open that this coordinator never recorded (or ended the other
                    // way).
                    warn!(
                        transactional_id,
                        producer_id,
                        producer_epoch,
                        state = meta.state.name(),
                        commit,
                        "EndTxn refused with INVALID_TXN_STATE"
                    );
                }
                if let Ok(EndTransit::Write(next)) = &decided {
                    meta.pending = Some(next.state);
                }
                decided?
            };
            match decided {
                EndTransit::Answer(id, epoch) => return Ok((id, epoch)),
                EndTransit::Write(next) => break next,
                EndTransit::NeedProducerId => {
                    new_producer_id = Some(self.fresh_producer_id().await?);
                }
            }
        };
        self.write(&shard, transactional_id, Some(prepared.clone()))
            .await?;
        if prepared.producer_epoch != producer_epoch || prepared.next_producer_id >= 0 {
            debug!(
                transactional_id,
                producer_id,
                from_epoch = producer_epoch,
                to_epoch = prepared.producer_epoch,
                next_producer_id = prepared.next_producer_id,
                "transaction end bumped the producer epoch"
            );
        }
        let answer = prepared.producer_after_completion();
        self.spawn_completion(&shard, transactional_id, prepared);
        Ok(answer)
    }

    /// Marks the (committed, prepared) transaction pending and sends its markers in the background.
    fn spawn_completion(self: &Arc<Self>, shard: &Arc<TxnShard>, id: &str, prepared: TxnMetadata) {
        if let Some(meta) = shard.lock().txns.get_mut(id) {
            meta.pending = Some(prepared.state);
        }
        self.tracker.spawn(self.clone().complete_transaction(
            shard.clone(),
            id.to_owned(),
            prepared,
        ));
    }

    /// Writes the markers of a prepared transaction, then its Complete record, retrying until done or
    /// until this broker no longer coordinates the id (the next coordinator resumes from the Prepare
    /// record).
    async fn complete_transaction(
        self: Arc<Self>,
        shard: Arc<TxnShard>,
        id: String,
        prepared: TxnMetadata,
    ) {
        let markers = Markers {
            transactional_id: id.clone(),
            producer_id: prepared.producer_id,
            producer_epoch: prepared.producer_epoch,
            commit: prepared.state == TxnState::PrepareCommit,
            coordinator_epoch: shard.coordinator_epoch,
            partitions: prepared.partitions.clone(),
        };
        let outcome = tokio::select! {
            _ = self.cancel.cancelled() => return,
            outcome = self.markers.write_markers(&markers, || self.is_current(&shard)) => outcome,
        };
        match outcome {
            MarkerOutcome::Written => {}
            MarkerOutcome::GivenUp => return,
            MarkerOutcome::Fenced(error) => {
                warn!(transactional_id = %id, "a partition leader refused the markers: {error:?}; leaving the transaction to the next coordinator");
                return;
            }
        }
        let Some(complete) = prepared.prepare_complete(now_ms()) else {
            return;
        };
        loop {
            if self.cancel.is_cancelled() || !self.is_current(&shard) {
                return;
            }
            if let Some(meta) = shard.lock().txns.get_mut(&id) {
                meta.pending = Some(complete.state);
            }
            match self.write(&shard, &id, Some(complete.clone())).await {
                Ok(()) => {
                    debug!(transactional_id = %id, state = complete.state.name(), "transaction complete");
                    return;
                }
                Err(ResponseError::NotCoordinator) => return,
                Err(error) => {
                    debug!(transactional_id = %id, "retrying the Complete record: {error:?}");
                    // The Prepare record stands; keep the id busy until Complete is written.
                    if let Some(meta) = shard.lock().txns.get_mut(&id) {
                        meta.pending = Some(complete.state);
                    }
                    tokio::time::sleep(COMPLETE_RETRY_BACKOFF).await;
                }
            }
        }
    }

    // ---- Timers ----

    /// Aborts every transaction open past its timeout, fencing its producer with an epoch bump.
    fn abort_timed_out(self: &Arc<Self>) {
        let now = now_ms();
        for shard in self.loaded_shards() {
            let aborts: Vec<(String, TxnMetadata)> = {
                let mut state = shard.lock();
                if state.unloaded {
                    continue;
                }
                state
                    .txns
                    .iter_mut()
                    .filter(|(_, m)| m.has_timed_out(now))
                    .map(|(id, m)| {
                        let abort = m.fence_and_abort(now);
                        m.pending = Some(abort.state);
                        (id.clone(), abort)
                    })
                    .collect()
            };
            for (id, abort) in aborts {
                info!(transactional_id = %id, producer_id = abort.producer_id,
                    producer_epoch = abort.producer_epoch, "aborting a transaction past its timeout");
                let this = self.clone();
                let shard = shard.clone();
                self.tracker.spawn(async move {
                    match this.write(&shard, &id, Some(abort.clone())).await {
                        Ok(()) => this.spawn_completion(&shard, &id, abort),
                        Err(e) => {
                            debug!(transactional_id = %id, "timed-out abort not written: {e:?}")
                        }
                    }
                });
            }
        }
    }

    /// Forgets transactional ids idle past `transactional.id.expiration.ms` (a tombstone each).
    fn expire_transactional_ids(self: &Arc<Self>) {
        let now = now_ms();
        let expiration_ms =
            i64::try_from(self.config.transactional_id_expiration.as_millis()).unwrap_or(i64::MAX);
        for shard in self.loaded_shards() {
            let expired: Vec<String> = {
                let mut state = shard.lock();
                if state.unloaded {
                    continue;
                }
                state
                    .txns
                    .iter_mut()
                    .filter(|(_, m)| m.has_expired(now, expiration_ms))
                    .map(|(id, m)| {
                        m.pending = Some(TxnState::Dead);
                        id.clone()
                    })
                    .collect()
            };
            for id in expired {
                info!(transactional_id = %id, "expiring an idle transactional id");
                let this = self.clone();
                let shard = shard.clone();
                self.tracker.spawn(async move {
                    if let Err(e) = this.write(&shard, &id, None).await {
                        debug!(transactional_id = %id, "expiration not written: {e:?}");
                    }
                });
            }
        }
    }

    // ---- Describe, List ----

    /// DescribeTransactions for one id.
    pub fn describe(&self, transactional_id: &str) -> Result<TxnDescription, ResponseError> {
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        let shard = self.shard(transactional_id)?;
        let state = shard.lock_live()?;
        let meta = state
            .txns
            .get(transactional_id)
            .ok_or(ResponseError::TransactionalIdNotFound)?;
        Ok(describe(transactional_id, meta))
    }

    /// Every transactional id this broker coordinates; COORDINATOR_LOAD_IN_PROGRESS alongside them
    /// while some partition is still loading.
    pub fn list(&self) -> (Option<ResponseError>, Vec<TxnDescription>) {
        let loading = self.shards.any_loading();
        let mut all = Vec::new();
        for shard in self.loaded_shards() {
            let state = shard.lock();
            all.extend(state.txns.iter().map(|(id, m)| describe(id, m)));
        }
        all.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        (
            loading.then_some(ResponseError::CoordinatorLoadInProgress),
            all,
        )
    }
}

/// InitProducerId's decision under the shard's lock; a write it decides on marks the id pending. A
/// new id is created (in memory, at epoch -1) once a producer id for it is at hand.
fn decide_init(
    shard: &TxnShard,
    id: &str,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
    new_producer_id: Option<i64>,
) -> Result<InitTransit, ResponseError> {
    let mut state = shard.lock_live()?;
    let mut fresh_id = new_producer_id;
    if !state.txns.contains_key(id) {
        let Some(producer_id) = fresh_id.take() else {
            return Ok(InitTransit::NeedProducerId);
        };
        state.txns.insert(
            id.to_owned(),
            TxnMetadata::new(producer_id, timeout_ms, now_ms()),
        );
    }
    let meta = state
        .txns
        .get_mut(id)
        .ok_or(ResponseError::NotCoordinator)?;
    let transit = meta.prepare_init(timeout_ms, expected, fresh_id, now_ms())?;
    match &transit {
        InitTransit::Write(next) | InitTransit::FenceAndAbort(next) => {
            meta.pending = Some(next.state)
        }
        InitTransit::NeedProducerId => {}
    }
    Ok(transit)
}

/// Applies the outcome of a write to the in-memory state: the written state once committed; on
/// failure the pending mark is cleared and the state stays as it was.
fn settle(
    shard: &TxnShard,
    id: &str,
    result: Result<(), ResponseError>,
    next: Option<TxnMetadata>,
) -> Result<(), ResponseError> {
    let mut state = shard.lock();
    if state.unloaded {
        return Err(ResponseError::NotCoordinator);
    }
    match (result, next) {
        (Ok(()), Some(next)) => {
            state.txns.insert(id.to_owned(), next);
            Ok(())
        }
        (Ok(()), None) => {
            state.txns.remove(id);
            state.owners.remove(id);
            Ok(())
        }
        (Err(error), _) => {
            if let Some(meta) = state.txns.get_mut(id) {
                meta.pending = None;
            }
            Err(error)
        }
    }
}

/// One look at an id by a request that may wait for its previous transaction to complete.
enum Attempt<T> {
    Done(Result<T, ResponseError>),
    /// The previous transaction is still completing: look again once something changes.
    Completing,
}

/// Runs `attempt` until it is done, waiting for `changed` between tries; CONCURRENT_TRANSACTIONS
/// once `deadline` passes. The wakeup is armed before each try, so a change in between is not missed.
async fn wait_for_completion<T>(
    changed: &Notify,
    deadline: Instant,
    mut attempt: impl FnMut() -> Attempt<T>,
) -> Result<T, ResponseError> {
    loop {
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match attempt() {
            Attempt::Done(result) => return result,
            Attempt::Completing => {
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return Err(ResponseError::ConcurrentTransactions);
                }
            }
        }
    }
}

/// AddPartitionsToTxn's decision on one id, under its partition's lock: the state to write (none when
/// every partition is in the transaction already), or wait while the previous transaction completes.
fn try_add_partitions(
    state: &mut ShardState,
    transactional_id: &str,
    (producer_id, producer_epoch): (i64, i16),
    partitions: &BTreeSet<(String, i32)>,
    client_version: i16,
) -> Attempt<Option<TxnMetadata>> {
    if state.unloaded {
        return Attempt::Done(Err(ResponseError::NotCoordinator));
    }
    let Some(meta) = state.txns.get_mut(transactional_id) else {
        return Attempt::Done(Err(ResponseError::InvalidProducerIdMapping));
    };
    match meta.prepare_add_partitions(
        producer_id,
        producer_epoch,
        partitions,
        client_version,
        now_ms(),
    ) {
        Err(ResponseError::ConcurrentTransactions) if meta.state.is_prepared() => {
            Attempt::Completing
        }
        Ok(Some(next)) => {
            meta.pending = Some(next.state);
            Attempt::Done(Ok(Some(next)))
        }
        other => Attempt::Done(other),
    }
}

fn describe(id: &str, meta: &TxnMetadata) -> TxnDescription {
    TxnDescription {
        transactional_id: id.to_owned(),
        producer_id: meta.producer_id,
        producer_epoch: meta.producer_epoch,
        state: meta.state,
        timeout_ms: meta.timeout_ms,
        start_timestamp_ms: meta.start_timestamp_ms,
        partitions: meta.partitions.clone(),
    }
}

impl CoordinatorShard for TxnShard {
    fn leader_epoch(&self) -> i32 {
        self.coordinator_epoch
    }

    fn unload(&self) {
        {
            let mut state = self.lock();
            state.unloaded = true;
            state.txns.clear();
        }
        self.changed.notify_waiters();
    }
}

/// Kafka's mapping of a failed state-topic write (`TransactionStateManager.appendTransactionToLog`):
/// lost leadership is NOT_COORDINATOR, a missing quorum or a timeout COORDINATOR_NOT_AVAILABLE (the
/// client looks the coordinator up again and retries).
fn write_error(e: &AppendError) -> ResponseError {
    match e {
        AppendError::NotLeader => ResponseError::NotCoordinator,
        AppendError::NotEnoughReplicas { .. }
        | AppendError::NotEnoughReplicasAfterAppend
        | AppendError::TimedOut => ResponseError::CoordinatorNotAvailable,
        AppendError::Log(_) | AppendError::Storage(_) => {
            warn!("transaction state write failed: {e}");
            ResponseError::UnknownServerError
        }
    }
}

/// What a partition of the state topic holds, replayed: the latest record of every id wins.
#[derive(Default)]
pub struct Replayed {
    pub txns: HashMap<String, TxnMetadata>,
    pub records: usize,
    pub unreadable: usize,
}

/// Reads the partition from its log start to `end` (the log end when leadership began). Runs on a
/// blocking thread.
pub fn replay(log: &PartitionLog, end: i64) -> Result<Replayed, LogError> {
    let mut replayed = Replayed::default();
    replayed.unreadable = replay_log(log, end, TRANSACTION_STATE_TOPIC, |item| {
        let LogItem::Record { record, .. } = item else {
            return;
        };
        replayed.records += 1;
        match records::decode(record.key.as_ref(), record.value.as_ref()) {
            Ok((id, Some(value))) => {
                replayed.txns.insert(id, TxnMetadata::from_log(value));
            }
            Ok((id, None)) => {
                replayed.txns.remove(&id);
            }
            Err(e) => {
                warn!(
                    offset = record.offset,
                    "unreadable transaction state record: {e}"
                );
                replayed.unreadable += 1;
            }
        }
    })?;
    Ok(replayed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogConfig;

    fn append(log: &PartitionLog, id: &str, meta: Option<&TxnMetadata>) {
        let value = meta.map(TxnMetadata::to_log);
        let (key, value) = records::encode(id, value.as_ref(), records::VALUE_V1);
        let mut batch = [plain_record(0, 1, Some(key), value)];
        log.append_as_leader(encode_plain_batch(&mut batch).unwrap(), 0)
            .unwrap();
    }

    #[test]
    fn replay_keeps_each_ids_latest_record_and_drops_tombstoned_ids() {
        let dir = tempfile::tempdir().unwrap();
        let log =
            PartitionLog::open(dir.path(), uuid::Uuid::new_v4(), LogConfig::default()).unwrap();
        let fresh = TxnMetadata::new(7, 60_000, 1);
        let InitTransit::Write(empty) = fresh.prepare_init(60_000, None, None, 2).unwrap() else {
            panic!()
        };
        let parts: BTreeSet<(String, i32)> = [("t".to_string(), 0)].into();
        let ongoing = empty
            .prepare_add_partitions(7, 0, &parts, 0, 3)
            .unwrap()
            .unwrap();
        // Transaction version 2 at an exhausted epoch: the Prepare record carries the bumped epoch
        // and the producer id to rotate to, which a new coordinator needs to complete it.
        let mut ongoing = ongoing;
        ongoing.producer_epoch = i16::MAX - 1;
        let Ok(EndTransit::Write(prepared)) =
            ongoing.prepare_end(7, i16::MAX - 1, true, 2, Some(8), 4)
        else {
            panic!()
        };
        append(&log, "a", Some(&empty));
        append(&log, "b", Some(&empty));
        append(&log, "a", Some(&ongoing));
        append(&log, "a", Some(&prepared));
        append(&log, "b", None);
        let replayed = replay(&log, log.log_end_offset()).unwrap();
        assert_eq!((replayed.records, replayed.unreadable), (5, 0));
        assert_eq!(replayed.txns.len(), 1);
        let a = &replayed.txns["a"];
        assert_eq!(a.state, TxnState::PrepareCommit);
        assert_eq!(a.partitions, parts);
        assert_eq!(
            (
                a.producer_id,
                a.producer_epoch,
                a.next_producer_id,
                a.client_version
            ),
            (7, i16::MAX, 8, 2)
        );
        assert_eq!(a.pending, None);
        assert_eq!(
            a.prepare_complete(5).map(|c| (
                c.producer_id,
                c.producer_epoch,
                c.previous_producer_id
            )),
            Some((8, 0, 7))
        );

        // Replay stops at the bound it is given.
        let partial = replay(&log, 3).unwrap();
        assert_eq!(partial.txns["a"].state, TxnState::Ongoing);
        assert_eq!(partial.txns["b"].state, TxnState::Empty);
    }

    /// An id whose transaction over `t-0` was committed (EndTxn answered) and whose markers are not
    /// all written yet: PrepareCommit, pending CompleteCommit.
    fn completing_commit() -> (ShardState, TxnMetadata) {
        let empty = match TxnMetadata::new(7, 60_000, 1).prepare_init(60_000, None, None, 2) {
            Ok(InitTransit::Write(empty)) => empty,
            other => panic!("{other:?}"),
        };
        let parts: BTreeSet<(String, i32)> = [("t".to_string(), 0)].into();
        let ongoing = empty
            .prepare_add_partitions(7, 0, &parts, 0, 3)
            .unwrap()
            .unwrap();
        let Ok(EndTransit::Write(mut prepared)) = ongoing.prepare_end(7, 0, true, 0, None, 4)
        else {
            panic!()
        };
        prepared.pending = Some(TxnState::CompleteCommit);
        let complete = prepared.prepare_complete(5).unwrap();
        let state = ShardState {
            txns: [("p".to_string(), prepared)].into(),
            ..ShardState::default()
        };
        (state, complete)
    }

    /// The chaos run's INVALID_TXN_STATE: librdkafka's next transaction sends AddPartitionsToTxn while
    /// the commit's markers are still being written (a partition leader just failed), then
    /// `abort_transaction()`. Answered CONCURRENT_TRANSACTIONS, the add left the coordinator in
    /// CompleteCommit, and the client's EndTxn(abort) was refused. The add must wait for the
    /// completion and then open the transaction, so the abort that follows has one to abort.
    #[tokio::test(start_paused = true)]
    async fn an_add_during_the_previous_commits_markers_waits_and_opens_the_transaction() {
        let (state, complete) = completing_commit();
        let shard = Arc::new((Mutex::new(state), Notify::new()));
        let next_parts: BTreeSet<(String, i32)> = [("t".to_string(), 1)].into();

        let completer = {
            let shard = shard.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(700)).await;
                shard.0.lock().unwrap().txns.insert("p".into(), complete);
                shard.1.notify_waiters();
            })
        };
        let started = Instant::now();
        let next = wait_for_completion(&shard.1, started + COMPLETION_WAIT, || {
            try_add_partitions(&mut shard.0.lock().unwrap(), "p", (7, 0), &next_parts, 0)
        })
        .await
        .expect("the add waits for the completion instead of CONCURRENT_TRANSACTIONS")
        .expect("the partition is new to the transaction");
        completer.await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(700));
        assert_eq!(next.state, TxnState::Ongoing);
        assert_eq!(next.partitions, next_parts);
        assert_eq!(
            shard.0.lock().unwrap().txns["p"].pending,
            Some(TxnState::Ongoing)
        );
        // Once written, the client's abort finds the transaction it opened.
        let Ok(EndTransit::Write(aborting)) = next.prepare_end(7, 0, false, 0, None, 9) else {
            panic!()
        };
        assert_eq!(aborting.state, TxnState::PrepareAbort);
    }

    #[tokio::test(start_paused = true)]
    async fn an_add_gives_up_with_concurrent_transactions_if_the_completion_never_comes() {
        let (state, _) = completing_commit();
        let shard = (Mutex::new(state), Notify::new());
        let parts: BTreeSet<(String, i32)> = [("t".to_string(), 1)].into();
        let started = Instant::now();
        let result = wait_for_completion(&shard.1, started + COMPLETION_WAIT, || {
            try_add_partitions(&mut shard.0.lock().unwrap(), "p", (7, 0), &parts, 0)
        })
        .await;
        assert_eq!(result, Err(ResponseError::ConcurrentTransactions));
        assert_eq!(started.elapsed(), COMPLETION_WAIT);
        assert_eq!(
            shard.0.lock().unwrap().txns["p"].pending,
            Some(TxnState::CompleteCommit)
        );
    }

    #[tokio::test]
    async fn an_add_does_not_wait_to_be_fenced_or_on_an_unloaded_partition() {
        let (state, _) = completing_commit();
        let shard = (Mutex::new(state), Notify::new());
        let parts: BTreeSet<(String, i32)> = [("t".to_string(), 1)].into();
        let far = Instant::now() + Duration::from_secs(3600);
        let fenced = wait_for_completion(&shard.1, far, || {
            try_add_partitions(&mut shard.0.lock().unwrap(), "p", (7, 1), &parts, 0)
        })
        .await;
        assert_eq!(fenced, Err(ResponseError::ProducerFenced));
        shard.0.lock().unwrap().unloaded = true;
        let moved = wait_for_completion(&shard.1, far, || {
            try_add_partitions(&mut shard.0.lock().unwrap(), "p", (7, 0), &parts, 0)
        })
        .await;
        assert_eq!(moved, Err(ResponseError::NotCoordinator));
    }
}
