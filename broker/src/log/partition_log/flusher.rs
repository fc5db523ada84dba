//! Waiting for an fsync without a thread per waiter. An acks=all or `flush.messages=1` append must
//! not be acknowledged before its bytes are durable, but the waiting is the request's, not a
//! thread's: Kafka parks such requests (its `DelayedProduce` purgatory) while one fsync covers them
//! all. Here a log has at most one flusher, a blocking task that runs while appenders ask for more
//! than is durable, each round fsyncing up to the log end it sees ([`PartitionLog::flush_to`]), then
//! wakes every waiter through a watch. While rounds keep being asked for, the same thread goes
//! straight into the next fsync, so the disk is never idle between two rounds for a hand-off.
//!
//! What must stay true: a waiter returns only once `flushed_offset` covers what it asked for (capped
//! at the log end, as `flush_to` caps it), or with the error that took the log offline; a request is
//! never left without a flusher (the flusher decides to stop under the same lock where requests are
//! recorded, so a request either reaches the running flusher or starts a new one).

use tokio::sync::watch;

use super::*;

#[derive(Debug)]
pub(super) struct Flusher {
    demand: Mutex<Demand>,
    /// Bumped after every round, successful or not: waiters look at the log again.
    rounds: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Demand {
    /// The largest offset asked to be durable.
    requested: i64,
    /// A flusher task is running (or about to).
    running: bool,
}

impl Default for Flusher {
    fn default() -> Self {
        Flusher {
            demand: Mutex::new(Demand::default()),
            rounds: watch::Sender::new(0),
        }
    }
}

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

    fn request_flush(self: &Arc<Self>, offset: i64) {
        let mut demand = self
            .flusher
            .demand
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        demand.requested = demand.requested.max(offset);
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
        loop {
            {
                let mut demand = self
                    .flusher
                    .demand
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if demand.requested <= target {
                    demand.running = false;
                    return;
                }
                target = demand.requested;
            }
            let result = self.flush_to(target);
            self.flusher.rounds.send_modify(|round| *round += 1);
            if result.is_err() {
                self.flusher
                    .demand
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .running = false;
                return;
            }
        }
    }
}
