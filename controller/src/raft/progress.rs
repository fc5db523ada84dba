//! When each follower last answered this node's AppendEntries and when it was last caught up with
//! this node's log, for DescribeQuorum (KIP-595's `lastFetchTimestamp` and `lastCaughtUpTimestamp`,
//! which `kafka-metadata-quorum.sh describe` turns into the followers' lag in time). openraft's
//! metrics give each follower's matched log id but no times, so:
//! - the Raft transport records an answer to every AppendEntries, heartbeats included
//!   (`answered`);
//! - `track_caught_up` watches openraft's metrics while this node leads and records the moment each
//!   follower's matched index reaches the leader's last log index. That is stricter than Kafka's
//!   `LeaderState`, which also credits a fetch that reached the leader's end as of the fetch before:
//!   under a steady stream of writes a healthy follower can look a little behind in time here. The
//!   metadata log is written rarely enough for that not to matter.
//!
//! Times are wall-clock milliseconds since the epoch, as Kafka reports them; -1 is "never". They
//! are kept in memory by the node that sends to its peers and mean something only while it leads.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use super::{ChronikRaft, NodeId};

/// What is known of one follower's contact, in milliseconds since the epoch (-1: never).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contact {
    pub last_answer_ms: i64,
    pub caught_up_ms: i64,
}

impl Default for Contact {
    fn default() -> Self {
        Self {
            last_answer_ms: -1,
            caught_up_ms: -1,
        }
    }
}

#[derive(Default)]
pub struct FollowerProgress {
    contacts: Mutex<BTreeMap<NodeId, Contact>>,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl FollowerProgress {
    fn update(&self, node: NodeId, change: impl FnOnce(&mut Contact)) {
        let mut contacts = self.contacts.lock().unwrap_or_else(PoisonError::into_inner);
        change(contacts.entry(node).or_default());
    }

    /// `node` answered an AppendEntries (whatever its outcome: it is reachable and fetching).
    pub fn answered(&self, node: NodeId) {
        let now = now_ms();
        self.update(node, |c| c.last_answer_ms = now);
    }

    /// `node` holds every entry this node has, as of now.
    pub fn caught_up(&self, node: NodeId) {
        let now = now_ms();
        self.update(node, |c| c.caught_up_ms = now);
    }

    pub fn contact(&self, node: NodeId) -> Contact {
        self.contacts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&node)
            .copied()
            .unwrap_or_default()
    }
}

/// Records, for as long as `shutdown` is not cancelled, each moment a follower's matched index
/// reaches this node's last log index while it leads. openraft publishes new metrics whenever a
/// follower's matched index or the leader's log moves.
pub async fn track_caught_up(
    raft: ChronikRaft,
    progress: std::sync::Arc<FollowerProgress>,
    shutdown: CancellationToken,
) {
    let mut metrics = raft.metrics();
    loop {
        {
            let m = metrics.borrow_and_update();
            if let (Some(replication), Some(last)) = (&m.replication, m.last_log_index) {
                for (&node, matched) in replication {
                    if node != m.id && matched.is_some_and(|l| l.index >= last) {
                        progress.caught_up(node);
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_start_unknown_and_keep_each_time_apart() {
        let progress = FollowerProgress::default();
        assert_eq!(progress.contact(2), Contact::default());
        let before = now_ms();
        progress.answered(2);
        let answered = progress.contact(2);
        assert!(answered.last_answer_ms >= before);
        assert_eq!(answered.caught_up_ms, -1, "an answer is not a catch-up");
        progress.caught_up(2);
        let caught_up = progress.contact(2);
        assert!(caught_up.caught_up_ms >= answered.last_answer_ms);
        assert_eq!(caught_up.last_answer_ms, answered.last_answer_ms);
        assert_eq!(progress.contact(3), Contact::default());
    }
}
