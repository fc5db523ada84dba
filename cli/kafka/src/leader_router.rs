//! Sends per-partition requests (Produce, Fetch, ListOffsets) to each partition's leader and follows
//! leadership as it moves: [`LeaderRouter`] keeps a topic's [`TopicLayout`] and one connection per
//! broker (a [`BrokerPool`]), and `refresh` asks the metadata again after a leader change, so the
//! producer and the fetcher share one way of finding leaders and of retrying.
//!
//! What must stay true: a retry always goes through a fresh Metadata answer (a NOT_LEADER_OR_FOLLOWER
//! is never retried against the broker that gave it without asking first); every wait between retries
//! is bounded by the caller's deadline ([`Retry`]), after which the last error is what the caller sees.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::admin::{pause_until, INITIAL_BACKOFF};
use super::topic::{PartitionSelection, TopicLayout};
use super::{BrokerPool, KafkaError};

/// A topic's leaders and a connection to each broker.
#[derive(Debug)]
pub struct LeaderRouter {
    bootstrap_servers: Vec<String>,
    selection: PartitionSelection,
    layout: TopicLayout,
    pool: BrokerPool,
}

impl LeaderRouter {
    /// Finds the leaders of the selected partitions of `topic` (waiting for leaderless ones until
    /// `deadline`); requests through the router each get `request_timeout`.
    pub async fn connect(
        bootstrap_servers: &[String],
        topic: &str,
        selection: PartitionSelection,
        request_timeout: Duration,
        deadline: Instant,
    ) -> Result<Self, KafkaError> {
        let layout =
            TopicLayout::discover(bootstrap_servers, topic, &selection, false, deadline).await?;
        let pool = BrokerPool::new(layout.brokers.clone(), request_timeout);
        Ok(LeaderRouter {
            bootstrap_servers: bootstrap_servers.to_vec(),
            selection,
            layout,
            pool,
        })
    }

    /// Asks the metadata again (after a leader change or a broken connection); brokers that moved get
    /// new connections.
    pub async fn refresh(&mut self, deadline: Instant) -> Result<(), KafkaError> {
        let layout = TopicLayout::discover(
            &self.bootstrap_servers,
            &self.layout.topic,
            &self.selection,
            false,
            deadline,
        )
        .await?;
        for (&broker, address) in &layout.brokers {
            self.pool.learn(broker, address.clone());
        }
        self.layout = layout;
        Ok(())
    }

    /// The current layout.
    pub fn layout(&self) -> &TopicLayout {
        &self.layout
    }

    /// The connections, for sending.
    pub fn pool(&mut self) -> &mut BrokerPool {
        &mut self.pool
    }

    /// The leader of `partition` and its epoch, if it is selected.
    pub fn leader(&self, partition: i32) -> Option<(i32, i32)> {
        self.layout
            .partition(partition)
            .map(|p| (p.leader_id, p.leader_epoch))
    }

    /// `partitions` grouped by their current leader; partitions that are not selected are left out.
    pub fn by_leader(&self, partitions: impl IntoIterator<Item = i32>) -> BTreeMap<i32, Vec<i32>> {
        let mut groups: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for partition in partitions {
            if let Some((leader, _)) = self.leader(partition) {
                groups.entry(leader).or_default().push(partition);
            }
        }
        groups
    }
}

/// The pauses of one operation that retries until a deadline, doubling from [`INITIAL_BACKOFF`].
#[derive(Debug)]
pub struct Retry {
    deadline: Instant,
    backoff: Duration,
}

impl Retry {
    /// Retries until `timeout` from now.
    pub fn within(timeout: Duration) -> Self {
        Retry {
            deadline: Instant::now() + timeout,
            backoff: INITIAL_BACKOFF,
        }
    }

    /// When the operation gives up.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Waits before the next try; a timeout naming `last` once the deadline would pass.
    pub async fn pause(&mut self, what: &str, last: &str) -> Result<(), KafkaError> {
        pause_until(&mut self.backoff, self.deadline, || {
            format!("waiting for {what} (last error: {last})")
        })
        .await
    }

    /// Starts the backoff over after progress.
    pub fn reset(&mut self) {
        self.backoff = INITIAL_BACKOFF;
    }
}
