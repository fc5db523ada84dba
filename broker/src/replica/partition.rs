//! One hosted partition: its log, its replication state as the metadata image last set it, and — while
//! this broker leads it — what each follower has fetched (Kafka's `Partition` and `Replica`).
//!
//! What must stay true:
//! - the high watermark is the smallest log end offset over the *maximal* ISR: the committed ISR plus
//!   members whose addition is in flight (KIP-497), so a replica never joins the ISR missing records
//!   below the high watermark; shrinks count only once the controller committed them;
//! - it does not move while the ISR is smaller than `min.insync.replicas` (KIP-966), nor until every
//!   member has fetched under the current leader epoch: a new leader does not know its followers' log
//!   ends and keeps the high watermark it had as a follower (`Partition.maybeIncrementLeaderHW`);
//! - it never moves backwards (see [`PartitionLog::maybe_increment_high_watermark`]);
//! - a fetch response is applied to the log only while the leader and leader epoch it was asked
//!   under still hold, under the state lock a role change takes ([`Partition::while_following`]);
//! - whatever may change what a fetch of this partition reads or what an acks=all append waits for
//!   (an append, a high watermark or log start move) bumps [`Partition::subscribe_changes`]; changes
//!   that are not one partition's (roles, ISR) wake through the replica manager instead.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chronik_metadata::{BrokerId, TopicId};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::log::PartitionLog;

/// A partition's replication state from the metadata image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionState {
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    /// The topic's effective `min.insync.replicas`.
    pub min_insync_replicas: usize,
    /// Led by an uncleanly elected leader that has not yet told the controller it recovered
    /// (KIP-704); the ISR stays the leader alone until it has.
    pub recovering: bool,
}

/// What the leader knows of one follower from its fetches.
#[derive(Clone, Copy, Debug)]
pub struct FollowerState {
    /// The follower's log end offset: the offset of its last fetch. It fetches from there only once
    /// what it holds below is durable under the topic's flush policy.
    pub log_end_offset: i64,
    /// The follower's log start offset, as its last fetch reported it (-1 until one did; Kafka's
    /// `UnifiedLog.UnknownOffset`). The low watermark counts it.
    pub log_start_offset: i64,
    /// The broker epoch the follower fetched with.
    pub broker_epoch: i64,
    /// When the follower was last caught up with the leader's log end.
    pub last_caught_up: Instant,
    /// The leader's log end and the time at the follower's previous fetch.
    previous_fetch_leader_leo: i64,
    previous_fetch_time: Instant,
}

impl FollowerState {
    /// When the leader last held a fetch of this follower: its arrival, and again each time the
    /// leader reread it while long-polling (so the leader's own wait is not counted as silence).
    pub fn last_fetch(&self) -> Instant {
        self.previous_fetch_time
    }
}

/// Followers whose fetch state is kept inside the partition itself.
const INLINE_FOLLOWERS: usize = 4;

/// What the leader knows of each follower, by broker id. A partition has a few followers (its other
/// replicas), and every pass of every follower fetch updates one of them, for every partition of
/// the fetch session: the first few are kept inline (no allocation of their own to reach) and found
/// by a scan rather than by hashing the id.
#[derive(Default)]
struct Followers {
    inline: [Option<(BrokerId, FollowerState)>; INLINE_FOLLOWERS],
    more: Vec<(BrokerId, FollowerState)>,
}

impl Followers {
    fn get(&self, follower: BrokerId) -> Option<&FollowerState> {
        self.inline
            .iter()
            .flatten()
            .chain(&self.more)
            .find(|(id, _)| *id == follower)
            .map(|(_, f)| f)
    }

    fn get_mut(&mut self, follower: BrokerId) -> Option<&mut FollowerState> {
        self.inline
            .iter_mut()
            .flatten()
            .chain(&mut self.more)
            .find(|(id, _)| *id == follower)
            .map(|(_, f)| f)
    }

    /// Adds a follower not known yet.
    fn insert(&mut self, follower: BrokerId, state: FollowerState) {
        match self.inline.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some((follower, state)),
            None => self.more.push((follower, state)),
        }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// The ISR as a bit per broker id below 64 (see [`Partition::isr_contains`]).
fn isr_bits(isr: &[BrokerId]) -> u64 {
    isr.iter()
        .filter(|&&b| (0..64).contains(&b))
        .fold(0, |bits, &b| bits | 1 << b)
}

pub struct Partition {
    pub topic: String,
    pub topic_id: TopicId,
    pub index: i32,
    pub log: Arc<PartitionLog>,
    /// Shared rather than cloned per read: the append path reads it several times per batch.
    state: RwLock<Arc<PartitionState>>,
    /// `state`'s ISR as bits (broker ids below 64), set with it under its lock: every pass of a
    /// follower's fetch asks whether the follower is in the ISR, of every partition of its session.
    isr_bits: AtomicU64,
    followers: Mutex<Followers>,
    /// At most one ISR change is asked of the controller at a time.
    isr_change_in_flight: AtomicBool,
    /// The ISR of the change in flight, with the partition epoch it was computed from; its members
    /// count toward the high watermark until the image moves past that epoch or the change ends.
    pending_isr: Mutex<Option<(Vec<BrokerId>, i32)>>,
    /// When the current leader epoch began here (followers that never fetched count from then).
    leader_since: Mutex<Instant>,
    /// Bumped when this partition's data may have changed, to wake only what waits on it.
    changes: watch::Sender<u64>,
    /// Set once the replica manager stopped hosting this partition (see [`Partition::holds`]).
    retired: AtomicBool,
}

impl Partition {
    pub fn new(
        topic: String,
        topic_id: TopicId,
        index: i32,
        log: Arc<PartitionLog>,
        state: impl Into<Arc<PartitionState>>,
    ) -> Self {
        let state = state.into();
        Self {
            topic,
            topic_id,
            index,
            log,
            isr_bits: AtomicU64::new(isr_bits(&state.isr)),
            state: RwLock::new(state),
            followers: Mutex::new(Followers::default()),
            isr_change_in_flight: AtomicBool::new(false),
            pending_isr: Mutex::new(None),
            leader_since: Mutex::new(Instant::now()),
            changes: watch::channel(0).0,
            retired: AtomicBool::new(false),
        }
    }

    /// The current state: a snapshot that a role change replaces rather than modifies.
    pub fn state(&self) -> Arc<PartitionState> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether `state` is still this partition's state (the same snapshot: [`Partition::update`]
    /// replaces it on any change of leader, epochs, ISR or replicas) and the partition is still
    /// hosted. A check made against `state` holds while this does, whatever else changed in the
    /// cluster; a fetch session relies on it to resolve its partitions once, not on every change.
    pub fn holds(&self, state: &Arc<PartitionState>) -> bool {
        self.is_hosted()
            && Arc::ptr_eq(&self.state.read().unwrap_or_else(|e| e.into_inner()), state)
    }

    /// Whether the replica manager still hosts this partition: it was not dropped since.
    pub fn is_hosted(&self) -> bool {
        !self.retired.load(Ordering::Acquire)
    }

    /// Marks the partition as no longer hosted (the replica manager dropped it).
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// Changes whenever this partition's data may have changed: an append, a high watermark or log
    /// start move (see `ReplicaManager::partition_changed`).
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub(crate) fn notify_changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Replaces the state if `new` is not older (by partition epoch); returns the previous state when
    /// it changed. A new leader epoch forgets what followers fetched under the old one.
    pub(crate) fn update(&self, new: impl Into<Arc<PartitionState>>) -> Option<PartitionState> {
        let new = new.into();
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if new.partition_epoch < state.partition_epoch || **state == *new {
            return None;
        }
        if new.leader_epoch != state.leader_epoch {
            self.followers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            *self.leader_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
        self.isr_bits.store(isr_bits(&new.isr), Ordering::Release);
        Some(Arc::unwrap_or_clone(std::mem::replace(&mut *state, new)))
    }

    pub fn is_leader(&self, broker_id: BrokerId) -> bool {
        self.state().leader == broker_id
    }

    /// The current leader epoch; read in place, as followers' fetch rounds read every partition's.
    pub fn leader_epoch(&self) -> i32 {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .leader_epoch
    }

    /// Whether `broker` is in the current ISR. Every pass of a follower's fetch asks it of every
    /// partition of its session: answered from `isr_bits`, without reaching the state.
    pub fn isr_contains(&self, broker: BrokerId) -> bool {
        if (0..64).contains(&broker) {
            return self.isr_bits.load(Ordering::Acquire) & 1 << broker != 0;
        }
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .isr
            .contains(&broker)
    }

    /// Records a follower's fetch at `fetch_offset` (Kafka's `Replica.updateFetchStateOrThrow`);
    /// returns the leader's log end offset it was compared with. Every follower fetch of every
    /// partition of its fetch session comes here on every pass, so it updates in place.
    pub fn record_follower_fetch(
        &self,
        follower: BrokerId,
        broker_epoch: i64,
        fetch_offset: i64,
    ) -> i64 {
        let now = Instant::now();
        let leader_leo = self.log.log_end_offset();
        let mut followers = self.followers.lock().unwrap_or_else(|e| e.into_inner());
        let caught_up_now = fetch_offset >= leader_leo;
        match followers.get_mut(follower) {
            Some(f) => {
                if caught_up_now {
                    f.last_caught_up = now;
                } else if fetch_offset >= f.previous_fetch_leader_leo {
                    f.last_caught_up = f.previous_fetch_time;
                }
                f.log_end_offset = fetch_offset;
                f.broker_epoch = broker_epoch;
                f.previous_fetch_leader_leo = leader_leo;
                f.previous_fetch_time = now;
            }
            None => {
                let last_caught_up = if caught_up_now {
                    now
                } else {
                    // Under a new leader, followers count as caught up when its epoch began (Kafka).
                    self.leader_since()
                };
                followers.insert(
                    follower,
                    FollowerState {
                        log_end_offset: fetch_offset,
                        log_start_offset: -1,
                        broker_epoch,
                        last_caught_up,
                        previous_fetch_leader_leo: leader_leo,
                        previous_fetch_time: now,
                    },
                );
            }
        }
        leader_leo
    }

    /// Records the log start offset a follower's fetch reported (Fetch v5+ `LogStartOffset`, Kafka's
    /// `Replica.updateFetchStateOrThrow`), after [`Partition::record_follower_fetch`] of the same
    /// fetch. Returns whether it changed, which may let the low watermark move.
    pub fn record_follower_log_start(&self, follower: BrokerId, log_start_offset: i64) -> bool {
        let mut followers = self.followers.lock().unwrap_or_else(|e| e.into_inner());
        match followers.get_mut(follower) {
            Some(f) if f.log_start_offset != log_start_offset => {
                f.log_start_offset = log_start_offset;
                true
            }
            _ => false,
        }
    }

    /// The low watermark (Kafka's `Partition.lowWatermarkIfLeader`): the smallest log start offset
    /// over this leader and every other replica whose broker `is_alive` (registered and not fenced),
    /// in the ISR or not; a replica that has not fetched under this leader epoch counts as -1 (Kafka
    /// resets it when leadership changes). DeleteRecords completes once it reaches the requested
    /// offset. `None` when this broker does not lead the partition.
    pub fn low_watermark(
        &self,
        self_id: BrokerId,
        is_alive: impl Fn(BrokerId) -> bool,
    ) -> Option<i64> {
        let state = self.state();
        if state.leader != self_id {
            return None;
        }
        let followers = self.followers.lock().unwrap_or_else(|e| e.into_inner());
        let low_watermark = state
            .replicas
            .iter()
            .filter(|&&b| b != self_id && is_alive(b))
            .map(|&b| followers.get(b).map_or(-1, |f| f.log_start_offset))
            .fold(self.log.log_start_offset(), i64::min);
        Some(low_watermark)
    }

    /// Runs `f` on the log while this broker (`self_id`) leads the partition, holding the state so
    /// no role change lands meanwhile (Kafka holds `leaderIsrUpdateLock` for DeleteRecords); `None`
    /// when it does not lead. `f` must not call back into this partition's state.
    pub(crate) fn while_leading<R>(
        &self,
        self_id: BrokerId,
        f: impl FnOnce(&PartitionLog) -> R,
    ) -> Option<R> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        (state.leader == self_id).then(|| f(&self.log))
    }

    pub fn follower(&self, follower: BrokerId) -> Option<FollowerState> {
        self.followers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(follower)
            .copied()
    }

    /// The high watermark the ISR allows (Kafka's `Partition.maybeIncrementLeaderHW`), or `None` when it
    /// may not move: the ISR is smaller than `min.insync.replicas`, or a member of the maximal ISR
    /// has not fetched under this leader epoch yet.
    pub fn allowed_high_watermark(&self, self_id: BrokerId) -> Option<i64> {
        let state = self.state();
        if state.leader != self_id {
            return None;
        }
        let own = self.log.log_end_offset();
        if state.isr.len() < state.min_insync_replicas && state.isr.len() < state.replicas.len() {
            return None;
        }
        let pending_isr = self.pending_isr.lock().unwrap_or_else(|e| e.into_inner());
        let pending = pending_isr
            .as_ref()
            .filter(|(_, from_epoch)| *from_epoch == state.partition_epoch)
            .map_or(&[][..], |(pending, _)| pending.as_slice());
        // The maximal ISR: the committed one plus members whose addition is in flight.
        let maximal_isr = state
            .isr
            .iter()
            .chain(pending.iter().filter(|b| !state.isr.contains(b)));
        let followers = self.followers.lock().unwrap_or_else(|e| e.into_inner());
        let mut high_watermark = own;
        for member in maximal_isr.filter(|&&b| b != self_id) {
            high_watermark = high_watermark.min(followers.get(*member)?.log_end_offset);
        }
        Some(high_watermark)
    }

    /// Moves the high watermark forward if the ISR allows; returns whether it moved. Callers race
    /// (one per follower fetch and produce): the log keeps the largest value.
    pub fn maybe_advance_high_watermark(&self, self_id: BrokerId) -> bool {
        self.allowed_high_watermark(self_id)
            .is_some_and(|allowed| self.log.maybe_increment_high_watermark(allowed))
    }

    /// Runs `f` on the log while this broker follows `leader` in `leader_epoch`, holding the state
    /// so no role change lands meanwhile; `None` when it no longer does (a fetch response that
    /// arrived after a leader change or this broker's election, Kafka's `AbstractFetcherThread`
    /// checking the current leader epoch before processing partition data). `f` must not call back
    /// into this partition's state.
    pub(crate) fn while_following<R>(
        &self,
        leader: BrokerId,
        leader_epoch: i32,
        f: impl FnOnce(&PartitionLog) -> R,
    ) -> Option<R> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        (state.leader == leader && state.leader_epoch == leader_epoch).then(|| f(&self.log))
    }

    pub fn leader_since(&self) -> Instant {
        *self.leader_since.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims the single ISR-change slot; `false` when a change is already in flight.
    pub(crate) fn begin_isr_change(&self) -> bool {
        self.isr_change_in_flight
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Records the ISR the change in flight proposes, computed from `partition_epoch`: its added
    /// members count toward the high watermark from now on (KIP-497's maximal ISR).
    pub(crate) fn set_pending_isr(&self, isr: Vec<BrokerId>, partition_epoch: i32) {
        *self.pending_isr.lock().unwrap_or_else(|e| e.into_inner()) = Some((isr, partition_epoch));
    }

    /// Releases the ISR-change slot. A change known never to apply (`keep_counting` false) stops
    /// counting at once; any other (accepted, or superseded by a state an earlier attempt of it may
    /// have made) keeps counting until the image moves past the partition epoch it was computed
    /// from, even if the image is slow to show it.
    pub(crate) fn end_isr_change(&self, keep_counting: bool) {
        if !keep_counting {
            *self.pending_isr.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        self.isr_change_in_flight.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::test_support::client_batch;
    use crate::log::LogConfig;
    use uuid::Uuid;

    /// A partition led by broker 1 with replicas 1, 2, 3 and the given ISR, holding `records` records.
    fn led(isr: &[BrokerId], min_isr: usize, records: usize) -> (tempfile::TempDir, Partition) {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(
            PartitionLog::open(
                &dir.path().join("t-0"),
                Uuid::new_v4(),
                LogConfig::default(),
            )
            .unwrap(),
        );
        log.assign_leader_epoch(3).unwrap();
        for _ in 0..records {
            log.append_as_leader(client_batch(&[1], 10), 3).unwrap();
        }
        let state = PartitionState {
            leader: 1,
            leader_epoch: 3,
            partition_epoch: 7,
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            min_insync_replicas: min_isr,
            recovering: false,
        };
        (
            dir,
            Partition::new("t".into(), Uuid::new_v4(), 0, log, state),
        )
    }

    #[test]
    fn the_high_watermark_is_the_smallest_log_end_over_the_isr() {
        let (_dir, p) = led(&[1, 2, 3], 2, 10);
        assert_eq!(
            p.allowed_high_watermark(1),
            None,
            "followers have not fetched yet"
        );
        p.record_follower_fetch(2, 5, 10);
        p.record_follower_fetch(3, 5, 4);
        assert_eq!(p.allowed_high_watermark(1), Some(4));
        assert!(p.maybe_advance_high_watermark(1));
        assert_eq!(p.log.high_watermark(), 4);
        // It never moves back, even if a follower reports less (e.g. after a restart).
        p.record_follower_fetch(3, 6, 2);
        assert!(!p.maybe_advance_high_watermark(1));
        assert_eq!(p.log.high_watermark(), 4);
        p.record_follower_fetch(3, 6, 10);
        assert!(p.maybe_advance_high_watermark(1));
        assert_eq!(p.log.high_watermark(), 10);
        // A follower outside the ISR does not hold it back.
        let (_dir, p) = led(&[1, 2], 2, 10);
        p.record_follower_fetch(2, 5, 10);
        p.record_follower_fetch(3, 5, 0);
        assert_eq!(p.allowed_high_watermark(1), Some(10));
        // Only the leader computes it.
        assert_eq!(p.allowed_high_watermark(2), None);
    }

    #[test]
    fn the_low_watermark_is_the_smallest_log_start_over_the_live_replicas() {
        let (_dir, p) = led(&[1, 2], 2, 10);
        let all = |_: BrokerId| true;
        assert_eq!(
            p.low_watermark(1, all),
            Some(-1),
            "replicas that have not fetched count as unknown, in the ISR or not"
        );
        p.record_follower_fetch(2, 5, 10);
        assert!(p.record_follower_log_start(2, 6));
        assert!(!p.record_follower_log_start(2, 6), "unchanged");
        p.record_follower_fetch(3, 5, 8);
        assert!(p.record_follower_log_start(3, 4));
        p.log.maybe_increment_high_watermark(10);
        p.log.maybe_increment_log_start_offset(7).unwrap();
        assert_eq!(p.low_watermark(1, all), Some(4));
        // A later fetch keeps what the follower reported until it reports again.
        p.record_follower_fetch(3, 5, 10);
        assert_eq!(p.follower(3).map(|f| f.log_start_offset), Some(4));
        // A replica on a fenced broker is not waited for.
        assert_eq!(p.low_watermark(1, |b| b != 3), Some(6));
        assert_eq!(p.low_watermark(1, |b| b == 1), Some(7));
        // Only the leader has one.
        assert_eq!(p.low_watermark(2, all), None);
        // A new leader epoch forgets what followers reported.
        let mut next = PartitionState::clone(&p.state());
        next.leader_epoch += 1;
        next.partition_epoch += 1;
        p.update(next);
        assert_eq!(p.low_watermark(1, all), Some(-1));
    }

    #[test]
    fn the_high_watermark_stands_still_while_the_isr_is_below_min_insync_replicas() {
        let (_dir, p) = led(&[1], 2, 10);
        assert_eq!(p.allowed_high_watermark(1), None);
        assert!(!p.maybe_advance_high_watermark(1));
        assert_eq!(p.log.high_watermark(), 0);
        // A partition whose every replica is in sync is not held back by a larger setting.
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(
            PartitionLog::open(
                &dir.path().join("t-1"),
                Uuid::new_v4(),
                LogConfig::default(),
            )
            .unwrap(),
        );
        log.append_as_leader(client_batch(&[1], 10), 0).unwrap();
        let single = PartitionState {
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            replicas: vec![1],
            isr: vec![1],
            min_insync_replicas: 2,
            recovering: false,
        };
        let p = Partition::new("t".into(), Uuid::new_v4(), 1, log, single);
        assert_eq!(p.allowed_high_watermark(1), Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn caught_up_time_follows_kafkas_rule() {
        let (_dir, p) = led(&[1, 2], 1, 10);
        p.record_follower_fetch(2, 5, 10);
        let caught_up = p.follower(2).unwrap().last_caught_up;
        tokio::time::advance(std::time::Duration::from_secs(5)).await;
        p.log.append_as_leader(client_batch(&[1], 10), 3).unwrap();
        // Behind the current end but at the end seen at its previous fetch: caught up as of then.
        p.record_follower_fetch(2, 5, 10);
        assert_eq!(
            p.follower(2).unwrap().last_caught_up,
            caught_up + std::time::Duration::ZERO
        );
        tokio::time::advance(std::time::Duration::from_secs(5)).await;
        p.record_follower_fetch(2, 5, 11);
        assert!(p.follower(2).unwrap().last_caught_up > caught_up);
    }

    /// The followers' state outgrows its inline room, and ISR membership holds for any broker id
    /// (ids below 64 are answered from bits, the others from the state), through an ISR change.
    #[test]
    fn many_followers_and_large_broker_ids() {
        let (_dir, p) = led(&[1, 2, 3], 1, 10);
        let mut wide = PartitionState::clone(&p.state());
        let followers = [2, 3, 4, 5, 6, 70, 71];
        wide.replicas = std::iter::once(1).chain(followers).collect();
        wide.isr = vec![1, 2, 3, 5, 70];
        wide.partition_epoch += 1;
        p.update(wide.clone()).unwrap();
        for (offset, &follower) in followers.iter().enumerate() {
            p.record_follower_fetch(follower, 5, offset as i64);
        }
        for (offset, &follower) in followers.iter().enumerate() {
            assert_eq!(p.follower(follower).unwrap().log_end_offset, offset as i64);
            assert_eq!(p.isr_contains(follower), wide.isr.contains(&follower));
        }
        assert!(!p.isr_contains(-1) && !p.isr_contains(64));
        let mut shrunk = wide;
        shrunk.isr = vec![1, 6, 71];
        shrunk.partition_epoch += 1;
        p.update(shrunk).unwrap();
        let members: Vec<BrokerId> = followers
            .into_iter()
            .filter(|&f| p.isr_contains(f))
            .collect();
        assert_eq!(members, vec![6, 71]);
        assert_eq!(
            p.follower(71).unwrap().log_end_offset,
            6,
            "the same leader epoch"
        );
    }

    #[test]
    fn one_isr_change_at_a_time_and_a_new_leader_epoch_forgets_followers() {
        let (_dir, p) = led(&[1, 2, 3], 2, 1);
        assert!(p.begin_isr_change());
        assert!(!p.begin_isr_change());
        p.end_isr_change(false);
        assert!(p.begin_isr_change());
        p.record_follower_fetch(2, 5, 1);
        let mut next = PartitionState::clone(&p.state());
        next.leader_epoch += 1;
        next.partition_epoch += 1;
        assert!(p.update(next).is_some());
        assert!(p.follower(2).is_none());
        let mut stale = PartitionState::clone(&p.state());
        stale.partition_epoch -= 1;
        stale.isr = vec![1];
        assert!(
            p.update(stale).is_none(),
            "older partition epochs are ignored"
        );
    }

    #[test]
    fn the_high_watermark_never_moves_back_under_concurrent_fetches() {
        // Issue #11 (10): fetch handlers of several followers advance it at the same time; one that
        // computed a smaller value must not overwrite a larger one set meanwhile.
        const FOLLOWERS: [BrokerId; 4] = [2, 3, 4, 5];
        const END: i64 = 20_000;
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(
            PartitionLog::open(
                &dir.path().join("t-0"),
                Uuid::new_v4(),
                LogConfig::default(),
            )
            .unwrap(),
        );
        for _ in 0..END {
            log.append_as_leader(client_batch(&[1], 0), 0).unwrap();
        }
        let all: Vec<BrokerId> = std::iter::once(1).chain(FOLLOWERS).collect();
        let state = PartitionState {
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            replicas: all.clone(),
            isr: all,
            min_insync_replicas: 1,
            recovering: false,
        };
        let p = Arc::new(Partition::new("t".into(), Uuid::new_v4(), 0, log, state));
        let done = Arc::new(AtomicBool::new(false));
        let start = Arc::new(std::sync::Barrier::new(FOLLOWERS.len() + 1));
        // One observer reading in sequence: any decrease it sees really happened.
        let observer = std::thread::spawn({
            let (p, done, start) = (p.clone(), done.clone(), start.clone());
            move || {
                start.wait();
                let mut seen = 0;
                while !done.load(Ordering::SeqCst) {
                    let now = p.log.high_watermark();
                    if now < seen {
                        return Some((seen, now));
                    }
                    seen = now;
                }
                None
            }
        });
        let handlers: Vec<_> = FOLLOWERS
            .into_iter()
            .map(|follower| {
                let (p, start) = (p.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for offset in 1..=END {
                        p.record_follower_fetch(follower, 5, offset);
                        p.maybe_advance_high_watermark(1);
                    }
                })
            })
            .collect();
        for handler in handlers {
            handler.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        assert_eq!(
            observer.join().unwrap(),
            None,
            "the high watermark moved backwards (from, to)"
        );
        assert_eq!(p.log.high_watermark(), END);
    }
}
