//! Waiting for an fsync without a thread per waiter. An acks=all or `flush.messages=1` append must
//! not be acknowledged before its bytes are durable, but the waiting is the request's, not a
//! thread's: Kafka parks such requests (its `DelayedProduce` purgatory) while one fsync covers them
//! all. Here a log has at most one flusher, a blocking task that runs while appenders ask for more
//! than is durable, each round fsyncing up to the log end it sees ([`PartitionLog::flush_to`]), then
//! wakes every waiter through a watch. While rounds keep being asked for, the same thread goes
//! straight into the next fsync, so the disk is never idle between two rounds for a hand-off.
//!
//! An acks=all append with two or more in-sync followers may defer its fsync until the first
//! reports a copy ([`PartitionLog::defer_flush`], [`PartitionLog::flush_deferred`]): about one
//! fsync per follower round rather than about one per Produce. A deferral is only a hint of when
//! to start; the append is still acknowledged only after its own `flushed_to`.
//!
//! What must stay true: a waiter returns only once `flushed_offset` covers what it asked for (capped
//! at the log end, as `flush_to` caps it), or with the error that took the log offline; a request is
//! never left without a flusher (the flusher wakes a round's waiters and decides whether to stop
//! under the same lock where requests are recorded, so a request either reaches the running
//! flusher's decision or starts a new one, even one for no more than was asked before, which a
//! round cut short by a truncation leaves to ask again).

use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::watch;

use super::*;

#[derive(Debug)]
pub(super) struct Flusher {
    demand: Mutex<Demand>,
    /// Bumped after every round, successful or not: waiters look at the log again.
    rounds: watch::Sender<u64>,
    /// `Demand::deferred`'s first offset, read without the lock by every follower fetch.
    deferred_from: AtomicI64,
}

#[derive(Debug, Default)]
struct Demand {
    /// The largest offset asked to be durable.
    requested: i64,
    /// A flusher task is running (or about to).
    running: bool,
    /// Asked durable but not yet asked of the flusher ([`PartitionLog::defer_flush`]): the end offset
    /// of the first such append and the largest.
    deferred: Option<(i64, i64)>,
}

impl Default for Flusher {
    fn default() -> Self {
        Flusher {
            demand: Mutex::new(Demand::default()),
            rounds: watch::Sender::new(0),
            deferred_from: AtomicI64::new(NOT_DEFERRED),
        }
    }
}

const NOT_DEFERRED: i64 = i64::MAX;

impl PartitionLog {
    /// Makes every offset below `offset` (capped at the LEO) durable, as
    /// [`PartitionLog::flush_to`] does, but waits asynchronously: the fsync runs on this log's one
    /// flusher task, shared by every append waiting at the same time. Must be called within a
    /// Tokio runtime.
    pub async fn flushed_to(self: &Arc<Self>, offset: i64) -> Result<i64> {
        let mut rounds = self.flusher.rounds.subscribe();
        loop {
            rounds.borrow_and_update();
            {
                let state = self.read_state()?;
                if state.flushed_offset >= offset.min(state.log_end_offset) {
                    return Ok(state.flushed_offset);
                }
            }
            self.request_flush(offset);
            // The sender lives as long as the log, which this waiter holds.
            let _ = rounds.changed().await;
        }
    }

    /// Records that everything below `offset` must become durable without asking for an fsync yet:
    /// an acks=all append whose acknowledgement waits for two or more followers anyway. The fsync
    /// starts once the first reports having copied it ([`PartitionLog::flush_deferred`]), so it
    /// runs while the slower one finishes its round, and one fsync covers what was appended in that
    /// round. Whoever needs it durable still awaits [`PartitionLog::flushed_to`], which asks for
    /// it if no follower has.
    pub fn defer_flush(&self, offset: i64) {
        let mut demand = self
            .flusher
            .demand
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if offset <= demand.requested {
            return;
        }
        // A deferral above this offset is from before a truncation: nothing of it is left.
        if demand.deferred.is_some_and(|(from, _)| from > offset) {
            demand.deferred = None;
        }
        let (from, to) = demand.deferred.get_or_insert((offset, offset));
        *to = (*to).max(offset);
        self.flusher.deferred_from.store(*from, Ordering::Release);
    }

    /// A follower reported `fetch_offset` (its durable log end): starts the fsync of what
    /// [`PartitionLog::defer_flush`] deferred once the follower holds the first deferred append.
    /// Every follower fetch of every partition comes here: nothing deferred costs one atomic load.
    pub fn flush_deferred(self: &Arc<Self>, fetch_offset: i64) {
        if fetch_offset < self.flusher.deferred_from.load(Ordering::Acquire) {
            return;
        }
        let demand = self
            .flusher
            .demand
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((from, to)) = demand.deferred {
            if fetch_offset >= from {
                self.request_flush_locked(demand, to);
            }
        }
    }

    /// Forgets a deferral that `covered` (an offset asked of the flusher, or made durable) takes
    /// in: it needs no fsync of its own.
    fn drop_deferral_up_to(&self, demand: &mut Demand, covered: i64) {
        if demand.deferred.is_some_and(|(_, to)| to <= covered) {
            demand.deferred = None;
            self.flusher
                .deferred_from
                .store(NOT_DEFERRED, Ordering::Release);
        }
    }

    fn request_flush(self: &Arc<Self>, offset: i64) {
        let demand = self
            .flusher
            .demand
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.request_flush_locked(demand, offset);
    }

    fn request_flush_locked(self: &Arc<Self>, mut demand: MutexGuard<'_, Demand>, offset: i64) {
        demand.requested = demand.requested.max(offset);
        let requested = demand.requested;
        self.drop_deferral_up_to(&mut demand, requested);
        if demand.running {
            return;
        }
        demand.running = true;
        drop(demand);
        let log = self.clone();
        tokio::task::spawn_blocking(move || log.run_flusher());
    }

    /// The flusher: fsyncs until nothing more is asked for, or until a flush fails (the log is
    /// then offline, which every waiter sees).
    fn run_flusher(&self) {
        let mut target = i64::MIN;
        let mut last_round: Option<Result<i64>> = None;
        loop {
            {
                let mut demand = self
                    .flusher
                    .demand
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if let Some(result) = &last_round {
                    if let Ok(flushed) = result {
                        self.drop_deferral_up_to(&mut demand, *flushed);
                    }
                    // The round's waiters are woken under the lock where the flusher decides
                    // whether to go on: what one asks for again (a truncation during the fsync
                    // made the round count for nothing) comes after that decision, and starts a
                    // new flusher if this one stops. Woken before it, such a request could add
                    // nothing to `requested` while `running` still held, and be left waiting.
                    self.flusher.rounds.send_modify(|round| *round += 1);
                    #[cfg(test)]
                    Gate::pass(&self.round_gate);
                }
                if matches!(last_round, Some(Err(_))) || demand.requested <= target {
                    demand.running = false;
                    return;
                }
                target = demand.requested;
            }
            last_round = Some(self.flush_to(target));
        }
    }
}
