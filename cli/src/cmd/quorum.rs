//! `cluster quorum`: the metadata quorum's replication as the active controller sees it
//! (DescribeQuorum), laid out as `kafka-metadata-quorum.sh describe --status --replication` lays it
//! out. The figures are Kafka's (`MetadataQuorumCommand`): a replica's lag is the leader's log end
//! offset minus its own; the quorum's largest follower lag is that of the voter with the lowest log
//! end offset, and its lag in time the leader's last catch-up minus that voter's. Times are shown
//! as how long before the leader answered, so the operator's clock plays no part.

use chronik_proto::v1::{DescribeQuorumResponse, QuorumReplica};
use serde::Serialize;

use crate::client::ControllerClient;
use crate::error::CliError;

/// The quorum as one report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuorumReport {
    pub leader_id: i64,
    /// The Raft term.
    pub leader_epoch: i64,
    /// The next metadata offset after the last committed one.
    pub high_watermark: i64,
    /// The voter furthest behind the leader, in offsets.
    pub max_follower_lag: i64,
    /// The leader's last catch-up minus that of the voter with the lowest log end offset, in ms
    /// (0 when that is the leader); `None` when either is not known.
    pub max_follower_lag_ms: Option<i64>,
    /// The leader, the other voters by id, then the observers (brokers) by id.
    pub replicas: Vec<QuorumReplicaStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuorumReplicaStatus {
    pub node_id: i64,
    /// `leader`, `follower` (a controller) or `observer` (a broker).
    pub role: &'static str,
    /// The next offset after its last entry; `None` when not known.
    pub log_end_offset: Option<i64>,
    /// The leader's log end offset minus its own.
    pub lag: Option<i64>,
    /// How long before the leader answered it last fetched (a controller answered the leader, a
    /// broker heartbeated), in ms.
    pub last_fetch_ms_ago: Option<i64>,
    /// How long before the leader answered it last held everything the leader had, in ms.
    pub last_caught_up_ms_ago: Option<i64>,
}

pub async fn quorum(client: &ControllerClient) -> Result<QuorumReport, CliError> {
    let reply = client.describe_quorum().await?;
    Ok(report(&reply, now_ms()))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The report of a DescribeQuorum answer, with times made relative to when the leader answered
/// (its own last fetch), or to `now_ms` if it did not say.
pub fn report(reply: &DescribeQuorumResponse, now_ms: i64) -> QuorumReport {
    let known = |value: i64| (value >= 0).then_some(value);
    let leader = reply
        .voters
        .iter()
        .find(|v| v.replica_id == reply.leader_id);
    let leader_end = leader.and_then(|v| known(v.log_end_offset));
    let now_ms = leader
        .and_then(|v| known(v.last_fetch_timestamp))
        .unwrap_or(now_ms);
    let status = |r: &QuorumReplica, role| {
        let log_end_offset = known(r.log_end_offset);
        QuorumReplicaStatus {
            node_id: r.replica_id,
            role,
            log_end_offset,
            lag: leader_end.zip(log_end_offset).map(|(l, e)| (l - e).max(0)),
            last_fetch_ms_ago: known(r.last_fetch_timestamp).map(|t| (now_ms - t).max(0)),
            last_caught_up_ms_ago: known(r.last_caught_up_timestamp).map(|t| (now_ms - t).max(0)),
        }
    };
    let mut voters: Vec<&QuorumReplica> = reply.voters.iter().collect();
    voters.sort_by_key(|v| (v.replica_id != reply.leader_id, v.replica_id));
    let mut observers: Vec<&QuorumReplica> = reply.observers.iter().collect();
    observers.sort_by_key(|o| o.replica_id);
    let replicas: Vec<QuorumReplicaStatus> = voters
        .into_iter()
        .map(|v| {
            let role = if v.replica_id == reply.leader_id {
                "leader"
            } else {
                "follower"
            };
            status(v, role)
        })
        .chain(observers.into_iter().map(|o| status(o, "observer")))
        .collect();
    // Kafka's choice: the first voter (in the answer's order) with the lowest log end offset.
    let furthest = reply.voters.iter().min_by_key(|v| v.log_end_offset);
    let max_follower_lag = match (leader_end, furthest) {
        (Some(end), Some(v)) => end - v.log_end_offset,
        _ => 0,
    };
    let max_follower_lag_ms = match (leader, furthest) {
        (Some(l), Some(v)) if l.replica_id == v.replica_id => Some(0),
        (Some(l), Some(v)) => known(l.last_caught_up_timestamp)
            .zip(known(v.last_caught_up_timestamp))
            .map(|(l, v)| l - v),
        _ => None,
    };
    QuorumReport {
        leader_id: reply.leader_id,
        leader_epoch: reply.leader_epoch,
        high_watermark: reply.high_watermark,
        max_follower_lag,
        max_follower_lag_ms,
        replicas,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(id: i64, end: i64, fetched: i64, caught_up: i64) -> QuorumReplica {
        QuorumReplica {
            replica_id: id,
            log_end_offset: end,
            last_fetch_timestamp: fetched,
            last_caught_up_timestamp: caught_up,
        }
    }

    /// A replica's row: id, role, lag, last fetch and last catch-up (ms ago).
    type Row<'a> = (i64, &'a str, Option<i64>, Option<i64>, Option<i64>);

    /// Lags against the leader's log end, times relative to now, the leader first and the brokers
    /// last; the quorum's lag is its furthest voter's, in offsets and in time.
    #[test]
    fn lags_are_the_leaders_end_minus_each_replicas() {
        let reply = DescribeQuorumResponse {
            leader_id: 2,
            leader_epoch: 5,
            high_watermark: 100,
            voters: vec![
                replica(1, 90, 9_000, 7_000),
                replica(2, 100, 10_000, 10_000),
                replica(3, 100, 9_990, 9_990),
            ],
            observers: vec![replica(5, 99, 9_500, 9_400), replica(4, -1, -1, -1)],
            nodes: Vec::new(),
        };
        // The local clock is 5 s ahead: times are taken from the leader's answer.
        let report = report(&reply, 15_000);
        assert_eq!(
            (report.max_follower_lag, report.max_follower_lag_ms),
            (10, Some(3_000))
        );
        let rows: Vec<Row<'_>> = report
            .replicas
            .iter()
            .map(|r| {
                (
                    r.node_id,
                    r.role,
                    r.lag,
                    r.last_fetch_ms_ago,
                    r.last_caught_up_ms_ago,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (2, "leader", Some(0), Some(0), Some(0)),
                (1, "follower", Some(10), Some(1_000), Some(3_000)),
                (3, "follower", Some(0), Some(10), Some(10)),
                (4, "observer", None, None, None),
                (5, "observer", Some(1), Some(500), Some(600)),
            ]
        );
        // The furthest voter never caught up: no lag in time can be given.
        let mut never = reply.clone();
        never.voters[0].last_caught_up_timestamp = -1;
        assert_eq!(super::report(&never, 10_000).max_follower_lag_ms, None);
        // Every voter at the leader's end: the first of them is the furthest, its lag in time the
        // leader's catch-up minus its own (Kafka's rule, even when it is not the leader).
        let mut level = reply.clone();
        level.voters[0].log_end_offset = 100;
        let level = super::report(&level, 10_000);
        assert_eq!(
            (level.max_follower_lag, level.max_follower_lag_ms),
            (0, Some(3_000))
        );
        // A single voter has no followers: no lag.
        let alone = DescribeQuorumResponse {
            voters: vec![replica(2, 100, 10_000, 10_000)],
            ..reply
        };
        let alone = super::report(&alone, 10_000);
        assert_eq!(
            (alone.max_follower_lag, alone.max_follower_lag_ms),
            (0, Some(0))
        );
    }
}
