//! Replica movement through the controller's reassignments (KIP-455): `partition move`,
//! `reassignment list|cancel` and `broker decommission`, which moves every replica off a broker.
//!
//! A move is asked for and then watched: the controller adds the new replicas, the leader takes them
//! into the ISR once they caught up, and the reassignment completes by itself; these commands only
//! poll `ListPartitionReassignments` until the partitions they moved are no longer listed, showing
//! progress on the terminal (never in `--output json`). A decommission plans each replacement onto
//! the live broker holding the fewest replicas that the partition does not have yet.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chronik_proto::v1::{
    AlterPartitionReassignmentsRequest, BrokerList, ListPartitionReassignmentsRequest,
    ReassignablePartition,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::client::ControllerClient;
use crate::cmd::broker::{brokers_of, BrokerState, BrokerStatus};
use crate::error::{codes, kafka_error_name, CliError};

/// How often progress is polled.
const POLL: Duration = Duration::from_millis(250);

/// One partition's reassignment, as listed or as asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reassignment {
    pub topic: String,
    pub partition: i32,
    /// The replicas now (during a move: the target ones, then those being removed).
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
}

/// What a move or decommission did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MoveReport {
    /// Each partition asked to move, with its target replicas.
    pub moved: Vec<PlannedMove>,
    /// Whether every move completed (false with `--no-wait`, or when the wait ran out).
    pub completed: bool,
    /// The moves still under way when the command stopped waiting.
    pub pending: Vec<Reassignment>,
    /// Seconds spent waiting for completion.
    pub waited_secs: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedMove {
    pub topic: String,
    pub partition: i32,
    pub from: Vec<i32>,
    pub to: Vec<i32>,
}

/// Every reassignment under way, or those of one topic.
pub async fn list(
    client: &ControllerClient,
    topic: Option<&str>,
) -> Result<Vec<Reassignment>, CliError> {
    let reply = client
        .list_partition_reassignments(ListPartitionReassignmentsRequest::default())
        .await?;
    let mut listed: Vec<Reassignment> = reply
        .reassignments
        .into_iter()
        .filter(|r| topic.is_none_or(|t| r.topic == t))
        .map(|r| Reassignment {
            topic: r.topic,
            partition: r.partition_index,
            replicas: r.replicas,
            adding: r.adding_replicas,
            removing: r.removing_replicas,
            isr: r.isr,
            leader: r.leader,
        })
        .collect();
    listed.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(listed)
}

/// Cancels the reassignment of one partition: it returns to its replicas before the move.
pub async fn cancel(
    client: &ControllerClient,
    topic: &str,
    partition: i32,
) -> Result<Vec<Reassignment>, CliError> {
    submit(client, vec![(topic.to_owned(), partition, None)]).await?;
    list(client, Some(topic)).await
}

/// Moves one partition to `replicas` (the first the preferred leader) and, unless `wait` is
/// `None`, waits up to that long for the move to complete.
pub async fn move_partition(
    client: &ControllerClient,
    topic: &str,
    partition: i32,
    replicas: Vec<i32>,
    wait: Option<Duration>,
) -> Result<MoveReport, CliError> {
    let described = client.describe_topics(vec![topic.to_owned()]).await?;
    let current = described
        .topics
        .iter()
        .find(|t| t.name == topic && t.error_code == codes::NONE)
        .and_then(|t| t.partitions.iter().find(|p| p.partition_index == partition))
        .map(|p| p.replicas.clone())
        .ok_or_else(|| {
            CliError::kafka(codes::UNKNOWN_TOPIC_OR_PARTITION, "", |_| {
                format!("partition {partition} of topic '{topic}' does not exist")
            })
        })?;
    let planned = vec![PlannedMove {
        topic: topic.to_owned(),
        partition,
        from: current,
        to: replicas,
    }];
    run_moves(client, planned, wait).await
}

/// How many plan-and-move rounds a decommission runs before it reports the broker still hosting
/// replicas: each round moves what the previous left (a replica list given by hand meanwhile).
const DECOMMISSION_ROUNDS: usize = 5;

/// Cordons `broker_id` (KIP-1066: no topic created from then on places a replica on it), moves every
/// replica off it onto the other live, uncordoned brokers and, unless `wait` is `None`, waits up to
/// that long for every move to complete. A plan with no room for some replica is refused before
/// anything changes. The plan is made again after the cordon (a topic created just before it may
/// have placed a replica on the broker) and once more after the moves, until the broker hosts
/// nothing: a replica list given by hand may still name a cordoned broker.
pub async fn decommission(
    client: &ControllerClient,
    broker_id: i32,
    wait: Option<Duration>,
) -> Result<MoveReport, CliError> {
    let (brokers, partitions) = brokers_and_partitions(client).await?;
    let Some(target) = brokers.iter().find(|b| b.broker_id == broker_id) else {
        return Err(CliError::InvalidArgument(format!(
            "broker {broker_id} is not registered"
        )));
    };
    plan_decommission(broker_id, &takers(&brokers, broker_id), &partitions)?;
    let cordoned_here = !target.cordoned;
    if cordoned_here {
        super::broker::set_cordon(client, broker_id, true).await?;
    }
    let started = Instant::now();
    let mut report = MoveReport {
        moved: Vec::new(),
        completed: false,
        pending: Vec::new(),
        waited_secs: 0.0,
    };
    for round in 0..DECOMMISSION_ROUNDS {
        let (brokers, partitions) = brokers_and_partitions(client).await?;
        let planned = match plan_decommission(broker_id, &takers(&brokers, broker_id), &partitions)
        {
            Ok(planned) => planned,
            Err(refused) if round == 0 && cordoned_here => {
                // Room went between the two plans (a broker stopped): nothing moved, so the
                // cordon this command set goes too.
                return Err(
                    match super::broker::set_cordon(client, broker_id, false).await {
                        Ok(()) => refused,
                        Err(undo) => CliError::InvalidArgument(format!(
                        "{refused}; broker {broker_id} was left cordoned ({undo}): `chronikctl \
                         broker uncordon {broker_id}` clears it"
                    )),
                    },
                );
            }
            Err(refused) => return Err(refused),
        };
        if planned.is_empty() {
            report.completed = true;
            break;
        }
        let remaining = wait.map(|w| w.saturating_sub(started.elapsed()));
        let moved = run_moves(client, planned, remaining).await?;
        report.moved.extend(moved.moved);
        report.pending = moved.pending;
        if !moved.completed {
            break;
        }
    }
    report.waited_secs = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The registered brokers and every partition's replicas, as the active controller has them.
async fn brokers_and_partitions(
    client: &ControllerClient,
) -> Result<(Vec<BrokerStatus>, Vec<(String, i32, Vec<i32>)>), CliError> {
    let brokers = brokers_of(&client.describe_cluster().await?);
    let topics = client.describe_topics(Vec::new()).await?;
    let partitions = topics
        .topics
        .into_iter()
        .filter(|t| t.error_code == codes::NONE)
        .flat_map(|t| {
            let name = t.name;
            t.partitions
                .into_iter()
                .map(move |p| (name.clone(), p.partition_index, p.replicas))
        })
        .collect();
    Ok((brokers, partitions))
}

/// The brokers a decommission of `broker_id` moves replicas to: live and not cordoned.
fn takers(brokers: &[BrokerStatus], broker_id: i32) -> Vec<i32> {
    brokers
        .iter()
        .filter(|b| b.broker_id != broker_id && b.state == BrokerState::Unfenced && !b.cordoned)
        .map(|b| b.broker_id)
        .collect()
}

/// Each partition with a replica on `broker_id`, that replica replaced by the live broker with the
/// fewest replicas (counting earlier replacements) that the partition lacks; ties go to the lower id.
pub fn plan_decommission(
    broker_id: i32,
    live: &[i32],
    partitions: &[(String, i32, Vec<i32>)],
) -> Result<Vec<PlannedMove>, CliError> {
    let mut load: BTreeMap<i32, usize> = live.iter().map(|&b| (b, 0)).collect();
    for (_, _, replicas) in partitions {
        for b in replicas {
            if let Some(n) = load.get_mut(b) {
                *n += 1;
            }
        }
    }
    let mut planned = Vec::new();
    for (topic, partition, replicas) in partitions {
        if !replicas.contains(&broker_id) {
            continue;
        }
        let has: BTreeSet<i32> = replicas.iter().copied().collect();
        let Some((&replacement, _)) = load
            .iter()
            .filter(|(b, _)| !has.contains(b))
            .min_by_key(|(b, n)| (**n, **b))
        else {
            return Err(CliError::InvalidArgument(format!(
                "cannot decommission broker {broker_id}: partition {partition} of '{topic}' has \
                 {} replicas and no other live broker can take one",
                replicas.len()
            )));
        };
        *load.entry(replacement).or_default() += 1;
        let to = replicas
            .iter()
            .map(|&b| if b == broker_id { replacement } else { b })
            .collect();
        planned.push(PlannedMove {
            topic: topic.clone(),
            partition: *partition,
            from: replicas.clone(),
            to,
        });
    }
    Ok(planned)
}

async fn run_moves(
    client: &ControllerClient,
    planned: Vec<PlannedMove>,
    wait: Option<Duration>,
) -> Result<MoveReport, CliError> {
    let asked = planned
        .iter()
        .map(|m| (m.topic.clone(), m.partition, Some(m.to.clone())))
        .collect();
    submit(client, asked).await?;
    let started = Instant::now();
    let mut report = MoveReport {
        moved: planned,
        completed: false,
        pending: Vec::new(),
        waited_secs: 0.0,
    };
    let Some(wait) = wait else {
        report.pending = pending_of(client, &report.moved).await?;
        return Ok(report);
    };
    let total = report.moved.len() as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} partitions ({elapsed})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("moving replicas");
    loop {
        let pending = pending_of(client, &report.moved).await?;
        bar.set_position(total - pending.len() as u64);
        if pending.is_empty() {
            report.completed = true;
            break;
        }
        if started.elapsed() >= wait {
            report.pending = pending;
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    bar.finish_and_clear();
    report.waited_secs = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The moved partitions still being reassigned.
async fn pending_of(
    client: &ControllerClient,
    moved: &[PlannedMove],
) -> Result<Vec<Reassignment>, CliError> {
    let wanted: BTreeSet<(&str, i32)> = moved
        .iter()
        .map(|m| (m.topic.as_str(), m.partition))
        .collect();
    Ok(list(client, None)
        .await?
        .into_iter()
        .filter(|r| wanted.contains(&(r.topic.as_str(), r.partition)))
        .collect())
}

/// The error a move report stands for: moves still under way when the wait ran out.
pub fn failure(report: &MoveReport) -> Option<CliError> {
    (!report.completed && !report.pending.is_empty() && report.waited_secs > 0.0).then(|| {
        CliError::Incomplete(format!(
            "{} of {} move(s) still under way after {:.0} s (`chronikctl reassignment list` shows them)",
            report.pending.len(),
            report.moved.len(),
            report.waited_secs
        ))
    })
}

/// Sends the reassignments in one request; any refused partition fails the command, naming each.
async fn submit(
    client: &ControllerClient,
    asked: Vec<(String, i32, Option<Vec<i32>>)>,
) -> Result<(), CliError> {
    if asked.is_empty() {
        return Ok(());
    }
    let request = AlterPartitionReassignmentsRequest {
        partitions: asked
            .into_iter()
            .map(|(topic, partition_index, target)| ReassignablePartition {
                topic,
                partition_index,
                replicas: target.map(|brokers| BrokerList { brokers }),
            })
            .collect(),
    };
    let reply = client.alter_partition_reassignments(request).await?;
    let refused: Vec<String> = reply
        .results
        .iter()
        .filter(|r| r.error_code != codes::NONE)
        .map(|r| {
            format!(
                "{}-{}: {} {}",
                r.topic,
                r.partition_index,
                kafka_error_name(r.error_code),
                r.error_message
            )
        })
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(CliError::InvalidArgument(format!(
            "the controller refused {} of {} reassignment(s): {}",
            refused.len(),
            reply.results.len(),
            refused.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(topic: &str, partition: i32, replicas: &[i32]) -> (String, i32, Vec<i32>) {
        (topic.to_owned(), partition, replicas.to_vec())
    }

    #[test]
    fn a_decommission_spreads_replicas_over_the_least_loaded_brokers() {
        let partitions = vec![
            p("a", 0, &[1, 2]),
            p("a", 1, &[2, 3]),
            p("b", 0, &[3, 1]),
            p("b", 1, &[1, 4]),
        ];
        let planned = plan_decommission(1, &[2, 3, 4], &partitions).unwrap();
        let moves: Vec<(&str, i32, Vec<i32>)> = planned
            .iter()
            .map(|m| (m.topic.as_str(), m.partition, m.to.clone()))
            .collect();
        // Loads before: 2 → 2, 3 → 2, 4 → 1.
        assert_eq!(
            moves,
            vec![
                ("a", 0, vec![4, 2]),
                ("b", 0, vec![3, 2]),
                ("b", 1, vec![3, 4])
            ]
        );
    }

    #[test]
    fn a_decommission_without_room_is_refused() {
        let error = plan_decommission(1, &[2], &[p("a", 0, &[1, 2])]).unwrap_err();
        assert!(
            error.to_string().contains("no other live broker"),
            "{error}"
        );
        assert!(plan_decommission(1, &[2], &[p("a", 0, &[2])])
            .unwrap()
            .is_empty());
    }
}
