//! Fetch sessions (KIP-227, incremental fetch; Kafka's `FetchSession`, `FetchSessionCache` and
//! `FetchManager`). A fetcher that names the same partitions over and over (a follower names every
//! partition it follows from a leader, tens of thousands at scale, twice a second) opens a session
//! with a full fetch; from then on its requests name only the partitions whose fetch state changed
//! and the ones to forget, and the answers carry only the partitions that have something new for it.
//! The leader still reads every partition of the session on every pass, with the fetch state it cached
//! ([`CachedPartition`]).
//!
//! The request's `SessionId` and `SessionEpoch` (Fetch v7+) choose the [`FetchContext`], as Kafka's
//! `FetchManager.newContext` does:
//!
//! | id | epoch | context |
//! |----|-------|---------|
//! | any | -1 (`FINAL_EPOCH`) | sessionless full fetch; the session `id` names (if any) is closed |
//! | 0 | 0 (`INITIAL_EPOCH`) | full fetch that opens a session if the cache has room (or can evict) |
//! | ≠ 0 | 0 | the session `id` is closed, then as above |
//! | ≠ 0 | > 0 | incremental: FETCH_SESSION_ID_NOT_FOUND if the cache does not hold `id`, INVALID_FETCH_SESSION_EPOCH unless `epoch` is the session's; the epoch then moves on ([`next_epoch`]) |
//!
//! What must stay true:
//! - a session is used only by the fetcher that opened it: the same principal and, for a follower,
//!   the same replica id and broker epoch (Kafka does not check the principal; a session id another
//!   principal guessed is "not found" here, so it can neither read through nor close it);
//! - the cache holds at most `max.incremental.fetch.session.cache.slots` sessions, and a session at
//!   most the partitions the metadata has (plus [`SESSION_PARTITION_SLACK`] for topics being created
//!   or deleted): a full fetch that would exceed it gets no session, an incremental one that would
//!   loses its session (FETCH_SESSION_ID_NOT_FOUND, so the fetcher starts over with a full fetch);
//! - eviction follows `FetchSessionCache.tryEvict`: a session unused for [`EVICTION_AFTER`] first,
//!   else the least valuable evictable one, where followers' sessions outrank consumers' and, within a
//!   kind, larger sessions outrank smaller ones; a session younger than [`EVICTION_AFTER`] is
//!   evictable only by a follower's session, and then only if it is a consumer's;
//! - lock order is cache, then session (never the reverse); neither lock is held across an await.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use chronik_metadata::{MetadataImage, TopicId};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::FetchRequest;
use rand::Rng;
use tokio::time::Instant;

use crate::authorizer::KafkaPrincipal;
use crate::metrics::metrics;
use crate::protocol::fetch_metadata::{next_epoch, FINAL_EPOCH, INITIAL_EPOCH, INVALID_SESSION_ID};
use crate::replica::{Partition, PartitionState};

/// How long a session must be unused before any new session may evict it, and how old it must be
/// before a session of its own kind may (Kafka's `MIN_INCREMENTAL_FETCH_SESSION_EVICTION_MS`).
pub const EVICTION_AFTER: Duration = Duration::from_secs(120);
/// Partitions a session may hold beyond those in the metadata image.
pub const SESSION_PARTITION_SLACK: usize = 1024;

/// How a request names a topic: by id from Fetch v13, by name before.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TopicRef {
    Id(TopicId),
    Name(Arc<str>),
}

impl TopicRef {
    fn of(version: i16, topic_id: TopicId, name: &str) -> Self {
        if version >= 13 {
            TopicRef::Id(topic_id)
        } else {
            TopicRef::Name(Arc::from(name))
        }
    }
}

/// The metadata and roles a cached failure to resolve was made under: the image's offset and the
/// replica manager's roles version (bumped by every leadership, ISR or hosting change). While both
/// hold, the partition would fail the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generation {
    pub metadata_offset: u64,
    pub roles_version: u64,
}

/// The high watermark, last stable offset and log start a session last answered for a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Answered {
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
}

const NEVER_ANSWERED: Answered = Answered {
    high_watermark: -1,
    last_stable_offset: -1,
    log_start_offset: -1,
};

/// One partition a fetch reads (Kafka's `CachedPartition`): what the fetcher last asked for it, what
/// the session last answered, and the leader's resolution of it.
pub struct CachedPartition {
    pub topic: TopicRef,
    pub partition: i32,
    pub fetch_offset: i64,
    /// The fetcher's own log start offset (a follower's; -1 from consumers).
    pub log_start_offset: i64,
    pub max_bytes: i32,
    pub current_leader_epoch: i32,
    pub last_fetched_epoch: i32,
    answered: Answered,
    /// Named by the request being served: answered whether or not anything changed, so a fetcher that
    /// sends a partition again always hears its current state.
    named: bool,
    /// The leader's last resolution of the partition.
    resolved: Option<Resolution>,
    /// How many times it was resolved against the replica manager (a cache miss).
    #[cfg(test)]
    resolutions: u64,
}

/// How the leader last resolved a [`CachedPartition`].
enum Resolution {
    /// To this partition, checked against `state`: it holds while that is still the partition's
    /// state and the partition is still hosted ([`Partition::holds`]). Weak: a session whose
    /// fetcher went away must not keep a deleted partition's log (and its files) open.
    Found {
        partition: Weak<Partition>,
        state: Arc<PartitionState>,
    },
    /// To an error, which holds while the image and roles of `at` do.
    Failed {
        at: Generation,
        error: ResponseError,
    },
}

impl CachedPartition {
    fn new(topic: TopicRef, p: &FetchPartition) -> Self {
        let mut cached = Self {
            topic,
            partition: p.partition,
            fetch_offset: 0,
            log_start_offset: -1,
            max_bytes: 0,
            current_leader_epoch: -1,
            last_fetched_epoch: -1,
            answered: NEVER_ANSWERED,
            named: true,
            resolved: None,
            #[cfg(test)]
            resolutions: 0,
        };
        cached.update_request_params(p);
        cached
    }

    /// Kafka's `CachedPartition.updateRequestParams`; the leader resolves the partition again (the
    /// requested leader epoch may have changed).
    fn update_request_params(&mut self, p: &FetchPartition) {
        self.fetch_offset = p.fetch_offset;
        self.log_start_offset = p.log_start_offset;
        self.max_bytes = p.partition_max_bytes;
        self.current_leader_epoch = p.current_leader_epoch;
        self.last_fetched_epoch = p.last_fetched_epoch;
        self.named = true;
        self.resolved = None;
    }

    /// The partition this fetch reads in topic `topic_id`, as `resolve` finds it with the state its
    /// checks were made against; reused while that state holds (see [`Resolution`]), whatever else
    /// changed. A failure is reused while `generation` holds.
    pub fn resolve(
        &mut self,
        topic_id: TopicId,
        generation: Generation,
        resolve: impl FnOnce(&Self) -> Result<(Arc<Partition>, Arc<PartitionState>), ResponseError>,
    ) -> Result<Arc<Partition>, ResponseError> {
        match &self.resolved {
            Some(Resolution::Failed { at, error }) if *at == generation => return Err(*error),
            Some(Resolution::Found { partition, state }) => {
                // The topic id too: a topic deleted and created again under its name is another
                // partition, which its old one may stand for until the replica manager drops it.
                if let Some(partition) = partition
                    .upgrade()
                    .filter(|p| p.topic_id == topic_id && p.holds(state))
                {
                    return Ok(partition);
                }
            }
            _ => {}
        }
        let resolved = resolve(self);
        #[cfg(test)]
        {
            self.resolutions += 1;
        }
        self.resolved = Some(match &resolved {
            Ok((partition, state)) => Resolution::Found {
                partition: Arc::downgrade(partition),
                state: Arc::clone(state),
            },
            Err(error) => Resolution::Failed {
                at: generation,
                error: *error,
            },
        });
        resolved.map(|(partition, _)| partition)
    }

    /// Whether an incremental answer must carry this partition (Kafka's
    /// `CachedPartition.maybeUpdateResponseData`): records, an error, a diverging epoch, a preferred
    /// read replica, a high watermark, last stable offset or log start other than the session last
    /// answered, or a request that named it.
    pub fn must_respond(&self, data: &PartitionData) -> bool {
        self.named
            || data.records.as_ref().is_some_and(|r| !r.is_empty())
            || data.error_code != 0
            || data.diverging_epoch.epoch >= 0
            || data.preferred_read_replica.0 >= 0
            || self.answered != answered(data)
    }

    /// Records what the session answered. After an error the high watermark is forgotten (-1), so
    /// the partition is answered again once the error clears.
    fn note_answered(&mut self, data: &PartitionData) {
        self.answered = answered(data);
        if data.error_code != 0 {
            self.answered.high_watermark = -1;
        }
        self.named = false;
    }
}

fn answered(data: &PartitionData) -> Answered {
    Answered {
        high_watermark: data.high_watermark,
        last_stable_offset: data.last_stable_offset,
        log_start_offset: data.log_start_offset,
    }
}

fn has_records(data: &PartitionData) -> bool {
    data.records.as_ref().is_some_and(|r| !r.is_empty())
}

/// The partitions of a fetch, in the order they are read and answered, found by topic and partition.
/// Kept as slots plus an order (rather than one ordered map) so that moving the partitions that
/// returned data to the end is one pass over the order.
#[derive(Default)]
pub struct SessionPartitions {
    slots: Vec<Option<CachedPartition>>,
    free: Vec<usize>,
    index: HashMap<(TopicRef, i32), usize>,
    order: Vec<usize>,
}

impl SessionPartitions {
    /// The partitions a request names, in its order (a partition named twice keeps its first place and
    /// its last parameters).
    pub fn from_request(version: i16, request: &FetchRequest) -> Self {
        let mut partitions = Self::default();
        partitions.update(version, request);
        partitions
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether the session holds partition `index` of the topic `topic_id` named `name` (by either).
    pub fn contains(&self, topic_id: TopicId, name: &str, index: i32) -> bool {
        self.contains_id(topic_id, index)
            || self
                .index
                .contains_key(&(TopicRef::Name(Arc::from(name)), index))
    }

    /// Whether the session holds partition `index` of the topic `topic_id`, named by id.
    pub fn contains_id(&self, topic_id: TopicId, index: i32) -> bool {
        self.index.contains_key(&(TopicRef::Id(topic_id), index))
    }

    /// Adds or updates the partitions `request` names, then removes those it forgets (Kafka's
    /// `FetchSession.update`); returns how many were added.
    fn update(&mut self, version: i16, request: &FetchRequest) -> usize {
        let mut added = 0;
        for topic in &request.topics {
            let topic_ref = TopicRef::of(version, topic.topic_id, &topic.topic.0);
            for p in &topic.partitions {
                let found = self.index.get(&(topic_ref.clone(), p.partition)).copied();
                match found {
                    Some(slot) => {
                        if let Some(cached) = self.slots[slot].as_mut() {
                            cached.update_request_params(p);
                        }
                    }
                    None => {
                        self.insert(CachedPartition::new(topic_ref.clone(), p));
                        added += 1;
                    }
                }
            }
        }
        let mut forgot = false;
        for topic in &request.forgotten_topics_data {
            let topic_ref = TopicRef::of(version, topic.topic_id, &topic.topic.0);
            for &partition in &topic.partitions {
                if let Some(slot) = self.index.remove(&(topic_ref.clone(), partition)) {
                    self.slots[slot] = None;
                    self.free.push(slot);
                    forgot = true;
                }
            }
        }
        if forgot {
            let slots = &self.slots;
            self.order.retain(|&slot| slots[slot].is_some());
        }
        added
    }

    fn insert(&mut self, cached: CachedPartition) {
        let key = (cached.topic.clone(), cached.partition);
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(cached);
                slot
            }
            None => {
                self.slots.push(Some(cached));
                self.slots.len() - 1
            }
        };
        self.index.insert(key, slot);
        self.order.push(slot);
    }

    /// Calls `f` on every partition, in order, with its position in the order.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(usize, &mut CachedPartition)) {
        for (position, &slot) in self.order.iter().enumerate() {
            if let Some(cached) = self.slots[slot].as_mut() {
                f(position, cached);
            }
        }
    }

    /// Every partition, in order.
    pub fn iter(&self) -> impl Iterator<Item = &CachedPartition> {
        self.order
            .iter()
            .filter_map(|&slot| self.slots.get(slot).and_then(Option::as_ref))
    }

    /// What to answer from one pass's `read`: the data of the partitions it read, by position in the
    /// order (ascending), where a pass of an incremental fetch may leave out partitions that
    /// [`CachedPartition::must_respond`] would not answer. Everything is answered for a full fetch;
    /// for an incremental one only what `must_respond` selects, and the partitions that returned
    /// records move to the end of the order, so that the next responses, bounded by `max_bytes`,
    /// serve the others first (Kafka's `IncrementalFetchContext`). Records what was answered.
    pub fn answer(
        &mut self,
        read: Vec<(usize, PartitionData)>,
        incremental: bool,
    ) -> Vec<(TopicRef, PartitionData)> {
        let mut answers = Vec::with_capacity(read.len());
        let mut served = Vec::new();
        for (position, data) in read {
            let Some(cached) = self
                .order
                .get(position)
                .and_then(|&slot| self.slots[slot].as_mut())
            else {
                continue;
            };
            if incremental {
                if !cached.must_respond(&data) {
                    continue;
                }
                if has_records(&data) {
                    served.push(position);
                }
            }
            cached.note_answered(&data);
            answers.push((cached.topic.clone(), data));
        }
        if !served.is_empty() {
            let mut order = Vec::with_capacity(self.order.len());
            let mut last = Vec::with_capacity(served.len());
            let mut served = served.into_iter().peekable();
            for (position, &slot) in self.order.iter().enumerate() {
                if served.next_if_eq(&position).is_some() {
                    last.push(slot);
                } else {
                    order.push(slot);
                }
            }
            order.extend(last);
            self.order = order;
        }
        answers
    }
}

/// Who a session belongs to: the principal of the connection that opened it and, for a follower, its
/// replica id and broker epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionOwner {
    pub principal: KafkaPrincipal,
    pub follower: Option<(i32, i64)>,
}

/// One cached session (Kafka's `FetchSession`). Its lock guards its partitions and epoch.
pub struct FetchSession {
    id: i32,
    owner: SessionOwner,
    /// Opened at Fetch v13+: its partitions are named by topic id.
    uses_topic_ids: bool,
    state: Mutex<SessionState>,
}

struct SessionState {
    /// The epoch the next request must carry.
    epoch: i32,
    partitions: SessionPartitions,
}

impl FetchSession {
    fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How one Fetch request is served (Kafka's `FetchContext`).
pub enum FetchContext {
    /// The request cannot be served (Kafka's `SessionErrorContext`): a top-level error, no partitions.
    Error(ResponseError),
    /// The request's own partitions, no session (Kafka's `SessionlessFetchContext`).
    Sessionless(SessionPartitions),
    /// The request's own partitions; a session is opened with them when answered, if there is room
    /// (Kafka's `FullFetchContext`).
    Full {
        partitions: SessionPartitions,
        owner: SessionOwner,
        uses_topic_ids: bool,
    },
    /// Every partition of `session`; only what changed is answered (Kafka's
    /// `IncrementalFetchContext`). `epoch` is the session epoch this request moved it to: should a
    /// concurrent request move it again, this one is answered INVALID_FETCH_SESSION_EPOCH.
    Incremental {
        session: Arc<FetchSession>,
        epoch: i32,
    },
}

impl FetchContext {
    /// The metric label of this context.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchContext::Error(_) => "session_error",
            FetchContext::Sessionless(_) => "sessionless",
            FetchContext::Full { .. } => "full",
            FetchContext::Incremental { .. } => "incremental",
        }
    }

    pub fn is_incremental(&self) -> bool {
        matches!(self, FetchContext::Incremental { .. })
    }

    /// How many partitions the fetch reads.
    pub fn partition_count(&self) -> usize {
        match self {
            FetchContext::Error(_) => 0,
            FetchContext::Sessionless(partitions) | FetchContext::Full { partitions, .. } => {
                partitions.len()
            }
            FetchContext::Incremental { session, .. } => session.lock().partitions.len(),
        }
    }

    /// Runs `f` over the partitions the fetch reads, under the session's lock for an incremental
    /// fetch. Fails with the top-level error and session id to answer with: the context's error, or
    /// INVALID_FETCH_SESSION_EPOCH when another request moved the session on meanwhile (Kafka's
    /// check in `IncrementalFetchContext.updateAndGenerateResponseData`).
    pub fn with_partitions<R>(
        &mut self,
        f: impl FnOnce(&mut SessionPartitions) -> R,
    ) -> Result<R, (ResponseError, i32)> {
        match self {
            FetchContext::Error(error) => Err((*error, INVALID_SESSION_ID)),
            FetchContext::Sessionless(partitions) | FetchContext::Full { partitions, .. } => {
                Ok(f(partitions))
            }
            FetchContext::Incremental { session, epoch } => {
                let mut state = session.lock();
                if state.epoch != *epoch {
                    return Err((ResponseError::InvalidFetchSessionEpoch, session.id));
                }
                Ok(f(&mut state.partitions))
            }
        }
    }

    /// Ends the fetch once answered; returns the session id to answer with: a new session's for a
    /// full fetch the cache found room for, the session's own for an incremental one, else 0.
    pub fn complete(self, cache: &FetchSessionCache, image: &MetadataImage) -> i32 {
        match self {
            FetchContext::Error(_) | FetchContext::Sessionless(_) => INVALID_SESSION_ID,
            FetchContext::Full {
                partitions,
                owner,
                uses_topic_ids,
            } => cache.maybe_create(owner, uses_topic_ids, partitions, image),
            FetchContext::Incremental { session, .. } => session.id,
        }
    }
}

/// The ordering key of an evictable session (Kafka's `EvictableKey`): followers' after consumers',
/// then by size; the first is the least valuable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct EvictableKey {
    privileged: bool,
    size: usize,
    id: i32,
}

struct CacheEntry {
    session: Arc<FetchSession>,
    privileged: bool,
    created: Instant,
    last_used: Instant,
    size: usize,
}

impl CacheEntry {
    fn evictable_key(&self) -> EvictableKey {
        EvictableKey {
            privileged: self.privileged,
            size: self.size,
            id: self.session.id,
        }
    }
}

#[derive(Default)]
struct CacheState {
    sessions: HashMap<i32, CacheEntry>,
    /// By last use, oldest first (Kafka's `lastUsed`).
    last_used: BTreeSet<(Instant, i32)>,
    /// Sessions any new session may evict (older than [`EVICTION_AFTER`]; Kafka's
    /// `evictableByAll`).
    evictable_by_all: BTreeSet<EvictableKey>,
    /// Sessions a follower's new session may evict (consumers', and the others older than
    /// [`EVICTION_AFTER`]; Kafka's `evictableByPrivileged`).
    evictable_by_privileged: BTreeSet<EvictableKey>,
    /// Partitions over every session, as of each one's last use.
    partitions: usize,
}

impl CacheState {
    /// Updates a session's place in the eviction order after a use (Kafka's `FetchSessionCache.touch`).
    fn touch(&mut self, id: i32, size: usize, now: Instant, eviction_after: Duration) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        self.last_used.remove(&(entry.last_used, id));
        self.evictable_by_all.remove(&entry.evictable_key());
        self.evictable_by_privileged.remove(&entry.evictable_key());
        self.partitions = self.partitions - entry.size + size;
        entry.last_used = now;
        entry.size = size;
        self.last_used.insert((now, id));
        let old = now.saturating_duration_since(entry.created) > eviction_after;
        if !entry.privileged || old {
            self.evictable_by_privileged.insert(entry.evictable_key());
        }
        if old {
            self.evictable_by_all.insert(entry.evictable_key());
        }
    }

    fn remove(&mut self, id: i32) -> Option<CacheEntry> {
        let entry = self.sessions.remove(&id)?;
        self.last_used.remove(&(entry.last_used, id));
        self.evictable_by_all.remove(&entry.evictable_key());
        self.evictable_by_privileged.remove(&entry.evictable_key());
        self.partitions -= entry.size;
        Some(entry)
    }

    /// Makes room for a new session of `size` partitions, a follower's if `privileged` (Kafka's
    /// `FetchSessionCache.tryEvict`): the least recently used session if it was unused for
    /// `eviction_after`, else the least valuable evictable one if it is worth less than the new one.
    fn try_evict(
        &mut self,
        privileged: bool,
        size: usize,
        now: Instant,
        eviction_after: Duration,
    ) -> bool {
        let Some(&(last_used, oldest)) = self.last_used.first() else {
            return false;
        };
        let victim = if now.saturating_duration_since(last_used) > eviction_after {
            Some(oldest)
        } else {
            let evictable = if privileged {
                &self.evictable_by_privileged
            } else {
                &self.evictable_by_all
            };
            let new = EvictableKey {
                privileged,
                size,
                id: INVALID_SESSION_ID,
            };
            evictable
                .first()
                .filter(|&&key| new >= key)
                .map(|key| key.id)
        };
        match victim {
            Some(id) => {
                self.remove(id);
                metrics().fetch_session_evicted();
                true
            }
            None => false,
        }
    }
}

/// The broker's fetch sessions (Kafka's `FetchSessionCache`).
pub struct FetchSessionCache {
    slots: usize,
    eviction_after: Duration,
    state: Mutex<CacheState>,
}

impl FetchSessionCache {
    /// A cache of at most `slots` sessions (0 turns sessions off: every fetch is answered sessionless).
    pub fn new(slots: usize) -> Self {
        Self {
            slots,
            eviction_after: EVICTION_AFTER,
            state: Mutex::new(CacheState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sessions cached (Kafka's `NumIncrementalFetchSessions`).
    pub fn sessions(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Partitions over every cached session (Kafka's `NumIncrementalFetchPartitionsCached`).
    pub fn cached_partitions(&self) -> usize {
        self.lock().partitions
    }

    /// How many times the partitions of session `id` were resolved against the replica manager.
    #[cfg(test)]
    pub(crate) fn resolutions(&self, id: i32) -> u64 {
        let session = self.lock().sessions.get(&id).map(|e| e.session.clone());
        session.map_or(0, |s| {
            s.lock().partitions.iter().map(|p| p.resolutions).sum()
        })
    }

    /// How `request` (at `version`, from `owner`) is served (Kafka's `FetchManager.newContext`; the
    /// table in the module's documentation). An incremental request's partitions and forgotten
    /// partitions are applied to its session here, and the session's epoch moves on.
    pub fn new_context(
        &self,
        version: i16,
        request: &FetchRequest,
        owner: SessionOwner,
        image: &MetadataImage,
    ) -> FetchContext {
        let follower = owner.follower.is_some();
        let context = self.context(version, request, owner, image);
        metrics().fetch_context(context.kind(), follower);
        context
    }

    fn context(
        &self,
        version: i16,
        request: &FetchRequest,
        owner: SessionOwner,
        image: &MetadataImage,
    ) -> FetchContext {
        let (id, epoch) = (request.session_id, request.session_epoch);
        if version < 7 {
            // No session fields before v7.
            return FetchContext::Sessionless(SessionPartitions::from_request(version, request));
        }
        if epoch == INITIAL_EPOCH || epoch == FINAL_EPOCH {
            if id != INVALID_SESSION_ID {
                self.close(id, &owner);
            }
            let partitions = SessionPartitions::from_request(version, request);
            return if epoch == FINAL_EPOCH {
                FetchContext::Sessionless(partitions)
            } else {
                FetchContext::Full {
                    partitions,
                    owner,
                    uses_topic_ids: version >= 13,
                }
            };
        }
        let mut cache = self.lock();
        let Some(session) = cache
            .sessions
            .get(&id)
            .map(|e| e.session.clone())
            .filter(|s| s.owner == owner)
        else {
            return FetchContext::Error(ResponseError::FetchSessionIdNotFound);
        };
        let mut state = session.lock();
        if state.epoch != epoch {
            return FetchContext::Error(ResponseError::InvalidFetchSessionEpoch);
        }
        if session.uses_topic_ids != (version >= 13) {
            return FetchContext::Error(ResponseError::FetchSessionTopicIdError);
        }
        let added = state.partitions.update(version, request);
        if added > 0 && state.partitions.len() > session_partition_limit(image) {
            drop(state);
            cache.remove(id);
            return FetchContext::Error(ResponseError::FetchSessionIdNotFound);
        }
        if state.partitions.is_empty() {
            // Everything was forgotten: the session closes and this request is answered alone.
            drop(state);
            cache.remove(id);
            return FetchContext::Sessionless(SessionPartitions::from_request(version, request));
        }
        state.epoch = next_epoch(state.epoch);
        let (epoch, size) = (state.epoch, state.partitions.len());
        drop(state);
        cache.touch(id, size, Instant::now(), self.eviction_after);
        FetchContext::Incremental { session, epoch }
    }

    /// Closes session `id` if `owner` opened it.
    fn close(&self, id: i32, owner: &SessionOwner) {
        let mut cache = self.lock();
        if cache
            .sessions
            .get(&id)
            .is_some_and(|e| &e.session.owner == owner)
        {
            cache.remove(id);
        }
    }

    /// Opens a session over `partitions` if there is room or a session can be evicted (Kafka's
    /// `FetchSessionCache.maybeCreateSession`); returns its id, or 0.
    fn maybe_create(
        &self,
        owner: SessionOwner,
        uses_topic_ids: bool,
        partitions: SessionPartitions,
        image: &MetadataImage,
    ) -> i32 {
        let size = partitions.len();
        if size > session_partition_limit(image) {
            return INVALID_SESSION_ID;
        }
        let privileged = owner.follower.is_some();
        let now = Instant::now();
        let mut cache = self.lock();
        if cache.sessions.len() >= self.slots
            && !cache.try_evict(privileged, size, now, self.eviction_after)
        {
            return INVALID_SESSION_ID;
        }
        let mut rng = rand::rng();
        let id = loop {
            let id = rng.random_range(1..i32::MAX);
            if !cache.sessions.contains_key(&id) {
                break id;
            }
        };
        let session = Arc::new(FetchSession {
            id,
            owner,
            uses_topic_ids,
            state: Mutex::new(SessionState {
                epoch: next_epoch(INITIAL_EPOCH),
                partitions,
            }),
        });
        cache.sessions.insert(
            id,
            CacheEntry {
                session,
                privileged,
                created: now,
                last_used: now,
                size: 0,
            },
        );
        cache.last_used.insert((now, id));
        cache.touch(id, size, now, self.eviction_after);
        id
    }
}

/// The most partitions one session may hold.
fn session_partition_limit(image: &MetadataImage) -> usize {
    let partitions: usize = image.topics.values().map(|t| t.partitions.len()).sum();
    partitions + SESSION_PARTITION_SLACK
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::messages::fetch_request::{FetchTopic, ForgottenTopic};
    use uuid::Uuid;

    use super::*;
    use crate::handlers::test_support::topic;

    const T: Uuid = Uuid::from_u128(7);

    fn consumer(name: &str) -> SessionOwner {
        SessionOwner {
            principal: KafkaPrincipal {
                principal_type: "User".into(),
                name: name.into(),
            },
            follower: None,
        }
    }

    fn follower(id: i32, broker_epoch: i64) -> SessionOwner {
        SessionOwner {
            follower: Some((id, broker_epoch)),
            ..consumer("broker")
        }
    }

    /// A Fetch of topic T's `partitions` (at `offset` each) forgetting `forgotten`.
    fn request(
        session_id: i32,
        epoch: i32,
        partitions: &[i32],
        offset: i64,
        forgotten: &[i32],
    ) -> FetchRequest {
        let fetch = partitions
            .iter()
            .map(|&p| {
                FetchPartition::default()
                    .with_partition(p)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1024)
            })
            .collect::<Vec<_>>();
        let mut request = FetchRequest::default()
            .with_session_id(session_id)
            .with_session_epoch(epoch);
        if !fetch.is_empty() {
            request.topics = vec![FetchTopic::default()
                .with_topic_id(T)
                .with_partitions(fetch)];
        }
        if !forgotten.is_empty() {
            request.forgotten_topics_data = vec![ForgottenTopic::default()
                .with_topic_id(T)
                .with_partitions(forgotten.to_vec())];
        }
        request
    }

    /// What serving a request came to: its context's kind and the session id answered, or the
    /// top-level error.
    type Served = Result<(&'static str, i32), ResponseError>;

    /// A cache of `slots` sessions over an image with topic T of `partitions` partitions.
    struct Sessions {
        cache: FetchSessionCache,
        image: MetadataImage,
    }

    impl Sessions {
        fn new(slots: usize, partitions: usize) -> Self {
            let replicas: Vec<&[i32]> = (0..partitions).map(|_| &[1][..]).collect();
            let mut image = MetadataImage::default();
            image.replay_all(1, &topic("t", T, &replicas));
            Self {
                cache: FetchSessionCache::new(slots),
                image,
            }
        }

        /// Serves `request` from `owner` at Fetch `version`, every partition answered with
        /// default data.
        fn serve_at(&self, owner: &SessionOwner, version: i16, request: &FetchRequest) -> Served {
            let mut context = self
                .cache
                .new_context(version, request, owner.clone(), &self.image);
            let kind = context.kind();
            let incremental = context.is_incremental();
            context
                .with_partitions(|partitions| {
                    let data = (0..partitions.len())
                        .map(|position| (position, PartitionData::default()))
                        .collect();
                    partitions.answer(data, incremental);
                })
                .map_err(|(error, _)| error)?;
            Ok((kind, context.complete(&self.cache, &self.image)))
        }

        fn serve(&self, owner: &SessionOwner, request: &FetchRequest) -> Served {
            self.serve_at(owner, 15, request)
        }

        /// `owner`'s full fetch of `partitions` asking for a session: its id, 0 for none.
        fn open(&self, owner: &SessionOwner, partitions: &[i32]) -> i32 {
            match self.serve(owner, &request(0, 0, partitions, 0, &[])) {
                Ok(("full", id)) => id,
                other => panic!("a full fetch was served as {other:?}"),
            }
        }

        /// `owner`'s incremental fetch in session `id` at `epoch`, naming no partition.
        fn next(&self, owner: &SessionOwner, id: i32, epoch: i32) -> Served {
            self.serve(owner, &request(id, epoch, &[], 0, &[]))
        }

        /// The partitions of session `id`, in order, with their fetch offsets.
        fn partitions_of(&self, id: i32) -> Vec<(i32, i64)> {
            let session = self.cache.lock().sessions[&id].session.clone();
            let state = session.lock();
            state
                .partitions
                .iter()
                .map(|p| (p.partition, p.fetch_offset))
                .collect()
        }

        fn contains(&self, id: i32) -> bool {
            self.cache.lock().sessions.contains_key(&id)
        }
    }

    #[test]
    fn a_full_fetch_opens_a_session_that_incremental_fetches_continue_epoch_by_epoch() {
        let (sessions, a) = (Sessions::new(10, 4), consumer("a"));
        let id = sessions.open(&a, &[0, 1]);
        assert!(id > 0, "a session id");
        let cache = &sessions.cache;
        assert_eq!((cache.sessions(), cache.cached_partitions()), (1, 2));
        // The session's first epoch is 1, then each incremental fetch moves it on by one.
        assert_eq!(sessions.next(&a, id, 1), Ok(("incremental", id)));
        let invalid = Err(ResponseError::InvalidFetchSessionEpoch);
        assert_eq!(sessions.next(&a, id, 1), invalid, "a repeated epoch");
        assert_eq!(sessions.next(&a, id, 3), invalid, "an epoch ahead");
        assert_eq!(sessions.next(&a, id, 2), Ok(("incremental", id)));
        // The epoch wraps from i32::MAX to 1.
        cache.lock().sessions[&id].session.lock().epoch = i32::MAX;
        assert!(sessions.next(&a, id, i32::MAX).is_ok());
        assert!(sessions.next(&a, id, 1).is_ok());
    }

    #[test]
    fn an_unknown_session_is_not_found() {
        let sessions = Sessions::new(10, 4);
        for (id, epoch) in [(12_345, 1), (0, 3), (12_345, -7)] {
            assert_eq!(
                sessions.next(&consumer("a"), id, epoch),
                Err(ResponseError::FetchSessionIdNotFound),
                "session {id} epoch {epoch}"
            );
        }
    }

    #[test]
    fn the_final_epoch_is_sessionless_and_closes_the_session_it_names() {
        let (sessions, a) = (Sessions::new(10, 4), consumer("a"));
        let id = sessions.open(&a, &[0]);
        assert_eq!(
            sessions.serve(&a, &request(id, -1, &[0], 0, &[])),
            Ok(("sessionless", 0))
        );
        assert_eq!(sessions.cache.sessions(), 0);
        assert_eq!(
            sessions.next(&a, id, 1),
            Err(ResponseError::FetchSessionIdNotFound)
        );
        // Before v7 there is no session at all.
        assert_eq!(
            sessions.serve_at(&a, 6, &request(0, 0, &[0], 0, &[])),
            Ok(("sessionless", 0))
        );
    }

    #[test]
    fn epoch_zero_with_a_session_id_closes_that_session_and_opens_another() {
        let (sessions, a) = (Sessions::new(10, 4), consumer("a"));
        let first = sessions.open(&a, &[0]);
        let (kind, second) = sessions
            .serve(&a, &request(first, 0, &[0, 1], 0, &[]))
            .unwrap();
        assert_eq!(kind, "full");
        assert!(second > 0 && second != first);
        assert_eq!(sessions.cache.sessions(), 1);
        assert_eq!(
            sessions.next(&a, first, 1),
            Err(ResponseError::FetchSessionIdNotFound)
        );
    }

    #[test]
    fn a_session_serves_only_its_owner() {
        let (sessions, owner) = (Sessions::new(10, 4), follower(2, 10));
        let id = sessions.open(&owner, &[0]);
        let others = [
            consumer("broker"),
            follower(3, 10),
            follower(2, 11),
            consumer("mallory"),
        ];
        for other in others {
            assert_eq!(
                sessions.next(&other, id, 1),
                Err(ResponseError::FetchSessionIdNotFound),
                "{other:?}"
            );
            // Nor can it close the session.
            sessions
                .serve(&other, &request(id, -1, &[0], 0, &[]))
                .unwrap();
        }
        assert_eq!(sessions.next(&owner, id, 1), Ok(("incremental", id)));
    }

    #[test]
    fn a_session_keeps_the_way_it_names_topics() {
        let (sessions, a) = (Sessions::new(10, 4), consumer("a"));
        let id = sessions.open(&a, &[0]);
        assert_eq!(
            sessions.serve_at(&a, 12, &request(id, 1, &[], 0, &[])),
            Err(ResponseError::FetchSessionTopicIdError)
        );
    }

    #[test]
    fn incremental_fetches_add_update_and_forget_partitions() {
        let (sessions, a) = (Sessions::new(10, 4), consumer("a"));
        let (_, id) = sessions
            .serve(&a, &request(0, 0, &[0, 1, 2], 5, &[]))
            .unwrap();
        assert_eq!(sessions.partitions_of(id), vec![(0, 5), (1, 5), (2, 5)]);
        // Partition 3 is added, 1 moves to offset 9, 2 is forgotten.
        let mut next = request(id, 1, &[3, 1], 9, &[2]);
        next.topics[0].partitions[0].fetch_offset = 0;
        sessions.serve(&a, &next).unwrap();
        assert_eq!(sessions.partitions_of(id), vec![(0, 5), (1, 9), (3, 0)]);
        assert_eq!(sessions.cache.cached_partitions(), 3);
        // Forgetting a partition the session does not hold changes nothing.
        sessions.serve(&a, &request(id, 2, &[], 0, &[2])).unwrap();
        assert_eq!(sessions.partitions_of(id).len(), 3);
        // Forgetting the rest closes the session: the request is answered alone.
        assert_eq!(
            sessions.serve(&a, &request(id, 3, &[], 0, &[0, 1, 3])),
            Ok(("sessionless", 0))
        );
        let cache = &sessions.cache;
        assert_eq!((cache.sessions(), cache.cached_partitions()), (0, 0));
    }

    fn data(high_watermark: i64, records: usize) -> PartitionData {
        PartitionData::default()
            .with_high_watermark(high_watermark)
            .with_last_stable_offset(high_watermark)
            .with_log_start_offset(0)
            .with_records(Some(Bytes::from(vec![0u8; records])))
    }

    /// One pass's data for partitions 0, 1, 2 (at positions 0, 1, 2): high watermark 5 (6 for
    /// partition 1 with `moved`), no records; `change` alters it further.
    fn pass(moved: bool, change: impl FnOnce(&mut [PartitionData])) -> Vec<(usize, PartitionData)> {
        let mut data: Vec<PartitionData> = (0..3)
            .map(|i| data(if moved && i == 1 { 6 } else { 5 }, 0).with_partition_index(i))
            .collect();
        change(&mut data);
        data.into_iter().enumerate().collect()
    }

    fn answered(answers: &[(TopicRef, PartitionData)]) -> Vec<i32> {
        answers.iter().map(|(_, d)| d.partition_index).collect()
    }

    #[test]
    fn an_incremental_answer_carries_only_partitions_with_something_new() {
        let mut partitions =
            SessionPartitions::from_request(15, &request(0, 0, &[0, 1, 2], 0, &[]));
        let full = partitions.answer(pass(false, |_| {}), false);
        assert_eq!(
            answered(&full),
            vec![0, 1, 2],
            "a full fetch answers everything"
        );
        let same = partitions.answer(pass(false, |_| {}), true);
        assert!(same.is_empty(), "nothing changed: {:?}", answered(&same));
        let moved = partitions.answer(pass(true, |_| {}), true);
        assert_eq!(answered(&moved), vec![1], "its high watermark moved");
        // A log start moved, or a last stable offset.
        let starts = |d: &mut [PartitionData]| {
            d[2].log_start_offset = 3;
            d[0].last_stable_offset = 4;
        };
        assert_eq!(
            answered(&partitions.answer(pass(true, starts), true)),
            vec![0, 2]
        );
        // An error is answered every time, and once it clears the partition is answered again.
        let failing = |d: &mut [PartitionData]| {
            starts(d);
            d[1].error_code = ResponseError::NotLeaderOrFollower.code();
        };
        assert_eq!(
            answered(&partitions.answer(pass(true, failing), true)),
            vec![1]
        );
        assert_eq!(
            answered(&partitions.answer(pass(true, failing), true)),
            vec![1]
        );
        assert_eq!(
            answered(&partitions.answer(pass(true, starts), true)),
            vec![1]
        );
        // A diverging epoch is answered.
        let diverging = |d: &mut [PartitionData]| {
            starts(d);
            d[2].diverging_epoch.epoch = 1;
        };
        assert_eq!(
            answered(&partitions.answer(pass(true, diverging), true)),
            vec![2]
        );
    }

    #[test]
    fn partitions_that_returned_records_move_to_the_end_of_the_session() {
        let mut partitions =
            SessionPartitions::from_request(15, &request(0, 0, &[0, 1, 2], 0, &[]));
        partitions.answer(pass(false, |_| {}), false);
        let records = |d: &mut [PartitionData]| {
            d[0].records = Some(Bytes::from_static(b"batch"));
            d[2].records = Some(Bytes::from_static(b"batch"));
        };
        let served = partitions.answer(pass(false, records), true);
        assert_eq!(answered(&served), vec![0, 2]);
        let order: Vec<i32> = partitions.iter().map(|p| p.partition).collect();
        assert_eq!(order, vec![1, 0, 2]);
        // A request naming a partition is answered, changed or not.
        partitions.update(15, &request(1, 1, &[0], 7, &[]));
        let answers = partitions.answer(pass(false, |_| {}), true);
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].0, TopicRef::Id(T));
    }

    #[test]
    fn a_session_holds_no_more_partitions_than_the_metadata_has() {
        let (sessions, a) = (Sessions::new(10, 1), consumer("a"));
        let limit = 1 + SESSION_PARTITION_SLACK as i32;
        let too_many: Vec<i32> = (0..=limit).collect();
        assert_eq!(sessions.open(&a, &too_many), 0, "no session over the limit");
        let id = sessions.open(&a, &[0]);
        assert_eq!(
            sessions.serve(&a, &request(id, 1, &too_many, 0, &[])),
            Err(ResponseError::FetchSessionIdNotFound),
            "growing over the limit loses the session"
        );
        let cache = &sessions.cache;
        assert_eq!((cache.sessions(), cache.cached_partitions()), (0, 0));
    }

    #[test]
    fn no_slots_no_sessions() {
        assert_eq!(Sessions::new(0, 4).open(&follower(2, 1), &[0]), 0);
    }

    /// Kafka's `FetchSessionCache.tryEvict`: with no slot free, a follower's session evicts the
    /// smallest consumer session; a young session of its own kind is never evicted; an unused one is,
    /// by anyone; among old ones a larger new session evicts a smaller one.
    #[tokio::test(start_paused = true)]
    async fn a_full_cache_evicts_as_kafka_does() {
        let sessions = Sessions::new(2, 20);
        let first = |n: i32| (0..n).collect::<Vec<i32>>();
        let small = sessions.open(&consumer("a"), &first(3));
        let large = sessions.open(&consumer("b"), &first(5));
        assert_eq!(
            sessions.open(&consumer("c"), &first(10)),
            0,
            "young consumers are not evicted by consumers"
        );
        let (f1, f2) = (follower(2, 1), follower(3, 1));
        let one = sessions.open(&f1, &first(1));
        assert!(one > 0, "a follower evicts a consumer");
        assert!(!sessions.contains(small), "the smaller consumer went first");
        let two = sessions.open(&f2, &first(1));
        assert!(two > 0 && !sessions.contains(large));
        assert_eq!(
            sessions.open(&follower(4, 1), &first(20)),
            0,
            "young followers stay"
        );
        // Both followers keep fetching for two minutes: old, but not stale.
        for epoch in 1..=5 {
            tokio::time::advance(Duration::from_secs(25)).await;
            sessions.next(&f1, one, epoch).unwrap();
            sessions.next(&f2, two, epoch).unwrap();
        }
        assert_eq!(
            sessions.open(&consumer("c"), &first(20)),
            0,
            "a consumer never evicts a follower"
        );
        // A follower's larger session evicts an old smaller one; an equal one does not.
        assert_eq!(sessions.open(&follower(4, 1), &first(1)), 0, "not larger");
        assert!(sessions.open(&follower(4, 1), &first(2)) > 0);
        assert_eq!(sessions.cache.sessions(), 2);
        // A session unused for two minutes is evicted by anyone.
        tokio::time::advance(EVICTION_AFTER + Duration::from_secs(1)).await;
        assert!(sessions.open(&consumer("c"), &first(1)) > 0);
        assert_eq!(sessions.cache.sessions(), 2);
    }
}
