//! `ProducerIdManager`: hands out producer ids for InitProducerId from blocks the controller allocates
//! (Kafka `RPCProducerIdManager`, KIP-730). A block is `[first, first + count)`; the controller
//! commits the block before returning it and never hands it out again, so an id is never given to two
//! producers, across brokers and restarts.
//!
//! What must stay true: an id is returned at most once; ids of a block go out in order; at most one
//! request for a block is in flight. The next block is fetched in the background once 90 % of the
//! current one is used, so InitProducerId rarely waits. When no id is left, a caller waits a bounded
//! time for the fetch and otherwise gets [`ProducerIdError::NoBlock`], which the handler answers with
//! the retriable COORDINATOR_LOAD_IN_PROGRESS.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chronik_proto::v1::AllocateProducerIdsRequest;
use thiserror::Error;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::controller_client::ControllerClient;
use crate::status::BrokerStatus;

/// How long an InitProducerId waits for a block before answering that it should retry.
pub const BLOCK_WAIT: Duration = Duration::from_secs(5);
/// After a failed fetch, the next one waits this long (the controller client has already retried
/// within its own budget; this only keeps a broker that is not registered from spinning).
pub const FETCH_RETRY_BACKOFF: Duration = Duration::from_millis(500);

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ProducerIdError {
    /// No id is available now (the block fetch is slow or failing); retriable.
    #[error("no producer id block available yet: {reason}")]
    NoBlock { reason: String },
}

/// A block `(first id, count)`, or why none could be had.
pub type BlockFuture<'a> = Pin<Box<dyn Future<Output = Result<(i64, i64), String>> + Send + 'a>>;

/// Where a block comes from: the controller, or a stand-in in tests.
pub trait BlockSource: Send + Sync + 'static {
    /// A new block `(first id, count)`.
    fn allocate(&self) -> BlockFuture<'_>;
}

/// Blocks from the controller's AllocateProducerIds, under this broker's current registration.
pub struct ControllerBlockSource {
    pub broker_id: i32,
    pub controller: Arc<ControllerClient>,
    pub status: watch::Receiver<BrokerStatus>,
}

impl BlockSource for ControllerBlockSource {
    fn allocate(&self) -> BlockFuture<'_> {
        Box::pin(async move {
            let broker_epoch =
                self.status.borrow().broker_epoch.ok_or_else(|| {
                    "this broker is not registered with the controller".to_string()
                })?;
            let response = self
                .controller
                .allocate_producer_ids(AllocateProducerIdsRequest {
                    broker_id: self.broker_id,
                    broker_epoch,
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok((response.first_producer_id, i64::from(response.count)))
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Block {
    next: i64,
    end: i64,
    count: i64,
}

impl Block {
    fn remaining(&self) -> i64 {
        self.end - self.next
    }
}

#[derive(Debug, Default)]
struct Blocks {
    current: Option<Block>,
    prefetched: Option<Block>,
    fetching: bool,
    last_error: Option<String>,
    /// No fetch before this, after a failed one.
    retry_at: Option<tokio::time::Instant>,
}

impl Blocks {
    fn take(&mut self) -> Option<i64> {
        if self.current.is_none_or(|b| b.remaining() == 0) {
            self.current = self.prefetched.take();
        }
        let block = self.current.as_mut().filter(|b| b.remaining() > 0)?;
        let id = block.next;
        block.next += 1;
        Some(id)
    }

    /// The next block should be fetched: none is prefetched or on its way and at most 10 % of the
    /// current one is left.
    fn wants_block(&self, now: tokio::time::Instant) -> bool {
        !self.fetching
            && self.retry_at.is_none_or(|at| now >= at)
            && self.prefetched.is_none()
            && self.current.is_none_or(|b| b.remaining() * 10 <= b.count)
    }
}

pub struct ProducerIdManager {
    source: Box<dyn BlockSource>,
    blocks: Mutex<Blocks>,
    /// Woken when a fetch ends.
    fetched: Notify,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

impl ProducerIdManager {
    /// Fetches run on `tasks` and stop at `cancel`.
    pub fn new(
        source: impl BlockSource,
        tasks: TaskTracker,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            source: Box::new(source),
            blocks: Mutex::new(Blocks::default()),
            fetched: Notify::new(),
            tasks,
            cancel,
        })
    }

    /// A producer id never handed out before, waiting at most `wait` for a block.
    pub async fn next_producer_id(
        self: &Arc<Self>,
        wait: Duration,
    ) -> Result<i64, ProducerIdError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let fetched = self.fetched.notified();
            tokio::pin!(fetched);
            let (last_error, wake) = {
                let mut blocks = self.blocks.lock().unwrap_or_else(PoisonError::into_inner);
                let id = blocks.take();
                if blocks.wants_block(tokio::time::Instant::now()) {
                    blocks.fetching = true;
                    self.spawn_fetch();
                }
                if let Some(id) = id {
                    return Ok(id);
                }
                // Registered before the lock is released, so the end of the fetch cannot be missed.
                fetched.as_mut().enable();
                // Without a fetch in flight, wake when the next one may start.
                let wake = match blocks.retry_at {
                    Some(at) if !blocks.fetching => at.min(deadline),
                    _ => deadline,
                };
                (blocks.last_error.clone(), wake)
            };
            let _ = tokio::time::timeout_at(wake, fetched).await;
            if tokio::time::Instant::now() >= deadline || self.cancel.is_cancelled() {
                return Err(ProducerIdError::NoBlock {
                    reason: last_error.unwrap_or_else(|| {
                        format!("waiting for the controller after {} ms", wait.as_millis())
                    }),
                });
            }
        }
    }

    fn spawn_fetch(self: &Arc<Self>) {
        let this = self.clone();
        self.tasks.spawn(async move {
            let result = tokio::select! {
                _ = this.cancel.cancelled() => Err("the broker is shutting down".to_string()),
                result = this.source.allocate() => result,
            };
            {
                let mut blocks = this.blocks.lock().unwrap_or_else(PoisonError::into_inner);
                blocks.fetching = false;
                match result {
                    Ok((first, count)) if first >= 0 && count > 0 => {
                        info!(first, count, "allocated producer id block");
                        blocks.prefetched = Some(Block {
                            next: first,
                            end: first.saturating_add(count),
                            count,
                        });
                        blocks.last_error = None;
                        blocks.retry_at = None;
                    }
                    Ok((first, count)) => {
                        warn!(
                            first,
                            count, "the controller returned an unusable producer id block"
                        );
                        blocks.last_error = Some(format!("unusable block {first}+{count}"));
                        blocks.retry_at = Some(tokio::time::Instant::now() + FETCH_RETRY_BACKOFF);
                    }
                    Err(reason) => {
                        warn!(%reason, "cannot allocate a producer id block");
                        blocks.last_error = Some(reason);
                        blocks.retry_at = Some(tokio::time::Instant::now() + FETCH_RETRY_BACKOFF);
                    }
                }
            }
            this.fetched.notify_waiters();
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};

    use super::*;

    /// Blocks of `size` from 0 upwards, failing while `fail` is set; counts the calls.
    struct FakeSource {
        size: i64,
        next: AtomicI64,
        calls: Arc<AtomicUsize>,
        fail: Arc<AtomicBool>,
    }

    impl BlockSource for FakeSource {
        fn allocate(&self) -> BlockFuture<'_> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                if self.fail.load(Ordering::SeqCst) {
                    return Err("controller unavailable".into());
                }
                Ok((self.next.fetch_add(self.size, Ordering::SeqCst), self.size))
            })
        }
    }

    /// A manager over blocks of `size` from 0 upwards; the counter counts fetches, the flag makes
    /// them fail while set.
    pub(crate) fn manager(
        size: i64,
    ) -> (Arc<ProducerIdManager>, Arc<AtomicUsize>, Arc<AtomicBool>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let fail = Arc::new(AtomicBool::new(false));
        let source = FakeSource {
            size,
            next: AtomicI64::new(0),
            calls: calls.clone(),
            fail: fail.clone(),
        };
        (
            ProducerIdManager::new(source, TaskTracker::new(), CancellationToken::new()),
            calls,
            fail,
        )
    }

    #[tokio::test]
    async fn ids_are_unique_and_come_from_consecutive_blocks() {
        let (ids, calls, _) = manager(10);
        let mut seen = Vec::new();
        for _ in 0..39 {
            seen.push(ids.next_producer_id(BLOCK_WAIT).await.unwrap());
        }
        assert_eq!(seen, (0..39).collect::<Vec<_>>());
        // Four blocks for 39 ids, and the fifth is fetched before the fourth runs out (90 % used).
        tokio::time::timeout(Duration::from_secs(5), async {
            while calls.load(Ordering::SeqCst) < 5 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        assert_eq!(ids.next_producer_id(BLOCK_WAIT).await, Ok(39));
        assert_eq!(ids.next_producer_id(BLOCK_WAIT).await, Ok(40));
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch_and_never_get_the_same_id() {
        let (ids, calls, _) = manager(1000);
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let ids = ids.clone();
                tokio::spawn(async move { ids.next_producer_id(BLOCK_WAIT).await.unwrap() })
            })
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), 50);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_block_callers_get_a_retriable_error_then_recover() {
        let (ids, calls, fail) = manager(10);
        fail.store(true, Ordering::SeqCst);
        let started = tokio::time::Instant::now();
        match ids.next_producer_id(Duration::from_secs(2)).await {
            Err(ProducerIdError::NoBlock { reason }) => {
                assert!(reason.contains("controller unavailable"), "{reason}")
            }
            other => panic!("expected NoBlock, got {other:?}"),
        }
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        // Failed fetches are retried with a backoff, not in a loop.
        let failed = calls.load(Ordering::SeqCst);
        assert!((2..=6).contains(&failed), "{failed} fetches in 2 s");
        fail.store(false, Ordering::SeqCst);
        assert_eq!(ids.next_producer_id(BLOCK_WAIT).await, Ok(0));
    }
}
