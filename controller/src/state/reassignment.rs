//! Partition reassignment (KIP-455, Kafka's `ReplicationControlManager.alterPartitionReassignments`
//! and `PartitionReassignmentReplicas`): moving a partition's replicas to a target set without a
//! moment of less redundancy.
//!
//! A reassignment to target `T` of a partition with replicas `C` writes replicas `T ++ (C − T)`,
//! adding `T − C` and removing `C − T`. The added brokers see themselves as replicas and follow the
//! leader; the leader puts them in the ISR once they caught up (AlterPartition, like any follower).
//! When every target replica is in the ISR the reassignment completes in the same batch of records:
//! replicas become `T`, the removed ones leave the ISR, and if the leader was removed the first
//! in-sync target replica that may lead takes over. Removed brokers then drop the partition and
//! delete its data. Cancelling returns to `C` at once (Kafka's `PartitionReassignmentRevert`). What must stay true: the ISR only ever shrinks to
//! members of the final replica set, never to nothing, and a partition is never left without a
//! leader by a completion (it waits for a target replica that may lead).

use std::collections::BTreeSet;

use crate::error::{ApiError, ResponseError};

use super::image::{MetadataImage, PartitionRegistration};
use super::records::{BrokerId, PartitionChangeRecord, Record, TopicId};
use super::ControllerResult;

/// One partition of an AlterPartitionReassignments request.
#[derive(Clone, Debug)]
pub struct ReassignPartition {
    pub topic: String,
    pub partition: i32,
    /// The target replicas, the first the preferred leader; `None` cancels.
    pub target: Option<Vec<BrokerId>>,
}

pub type ReassignOutcome = (String, i32, Result<(), ApiError>);

/// Starts, replaces or cancels reassignments, each partition on its own.
pub fn alter_reassignments(
    image: &MetadataImage,
    requests: &[ReassignPartition],
) -> ControllerResult<Vec<ReassignOutcome>> {
    let mut records = Vec::new();
    let mut reply = Vec::new();
    let mut seen = BTreeSet::new();
    for r in requests {
        let outcome = if !seen.insert((r.topic.as_str(), r.partition)) {
            Err(ApiError::new(
                ResponseError::InvalidRequest,
                "The partition is named more than once in the request.",
            ))
        } else {
            reassign_one(image, r).map(|changes| {
                records.extend(changes.into_iter().map(Record::PartitionChange));
            })
        };
        reply.push((r.topic.clone(), r.partition, outcome));
    }
    ControllerResult::new(records, reply)
}

fn reassign_one(
    image: &MetadataImage,
    r: &ReassignPartition,
) -> Result<Vec<PartitionChangeRecord>, ApiError> {
    let (topic_id, p) = image
        .topic_by_name(&r.topic)
        .and_then(|t| {
            usize::try_from(r.partition)
                .ok()
                .and_then(|i| t.partitions.get(i))
                .map(|p| (t.id, p))
        })
        .ok_or_else(|| {
            ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                "This server does not host this topic-partition.",
            )
        })?;
    let target = match &r.target {
        Some(target) => {
            validate_target(image, target)?;
            target.clone()
        }
        None if p.is_reassigning() => return Ok(vec![revert(image, topic_id, r.partition, p)]),
        None => {
            return Err(ApiError::new(
                ResponseError::NoReassignmentInProgress,
                "No reassignment is in progress for this partition.",
            ))
        }
    };
    // Kafka's `PartitionReassignmentReplicas`, from the replicas before any move under way: a move
    // replacing another drops the replicas the first one was adding unless targeted again, and a
    // cancel still returns to where the partition started.
    let original = p.original_replicas();
    let current = &original;
    let adding: Vec<BrokerId> = target
        .iter()
        .copied()
        .filter(|b| !current.contains(b))
        .collect();
    let removing: Vec<BrokerId> = current
        .iter()
        .copied()
        .filter(|b| !target.contains(b))
        .collect();
    let mut replicas = target.clone();
    replicas.extend(removing.iter().copied());
    // Replicas an earlier move was adding and this one drops leave the ISR too (never emptying it).
    let isr: Vec<BrokerId> = p
        .isr
        .iter()
        .copied()
        .filter(|b| replicas.contains(b))
        .collect();
    let isr = if isr.is_empty() { p.isr.clone() } else { isr };
    let start = PartitionChangeRecord {
        topic_id,
        partition: r.partition,
        isr: (isr != p.isr).then_some(isr),
        replicas: (replicas != p.replicas).then_some(replicas),
        adding_replicas: Some(adding),
        removing_replicas: Some(removing),
        expected_partition_epoch: Some(p.partition_epoch),
        ..Default::default()
    };
    let mut after = p.clone();
    super::image::apply_partition_change(&mut after, &start);
    let mut changes = vec![start];
    if let Some(done) = completion(topic_id, r.partition, &after, |b| image.is_active_broker(b)) {
        changes.push(done);
    }
    Ok(changes)
}

/// Kafka's `PartitionReassignmentRevert`: back to the replicas before the move at once, the added
/// ones out of the ISR; a leader that was added hands over to the first in-sync original replica.
fn revert(
    image: &MetadataImage,
    topic_id: TopicId,
    partition: i32,
    p: &PartitionRegistration,
) -> PartitionChangeRecord {
    let original = p.original_replicas();
    let kept: Vec<BrokerId> = p
        .isr
        .iter()
        .copied()
        .filter(|b| original.contains(b))
        .collect();
    // Never an empty ISR: if only added replicas were in sync, they stay until the leader shrinks it.
    let isr = if kept.is_empty() { p.isr.clone() } else { kept };
    let leader = if isr.contains(&p.leader) {
        p.leader
    } else {
        original
            .iter()
            .copied()
            .find(|b| isr.contains(b) && image.is_active_broker(*b))
            .unwrap_or(p.leader)
    };
    PartitionChangeRecord {
        topic_id,
        partition,
        leader: (leader != p.leader).then_some(leader),
        isr: (isr != p.isr).then_some(isr),
        replicas: (original != p.replicas).then_some(original),
        adding_replicas: Some(Vec::new()),
        removing_replicas: Some(Vec::new()),
        expected_partition_epoch: Some(p.partition_epoch),
        ..Default::default()
    }
}

/// Kafka's `validateManualPartitionAssignment`: replicas listed, each once, each registered.
fn validate_target(image: &MetadataImage, target: &[BrokerId]) -> Result<(), ApiError> {
    let invalid = |message: String| ApiError::new(ResponseError::InvalidReplicaAssignment, message);
    if target.is_empty() {
        return Err(invalid(
            "The manual partition assignment includes an empty replica list.".to_owned(),
        ));
    }
    let distinct: BTreeSet<BrokerId> = target.iter().copied().collect();
    if distinct.len() != target.len() {
        return Err(invalid(format!(
            "The manual partition assignment includes duplicate replicas: {target:?}"
        )));
    }
    if let Some(missing) = target.iter().find(|b| !image.brokers.contains_key(b)) {
        return Err(invalid(format!(
            "The manual partition assignment includes broker {missing}, but no such broker is \
             registered."
        )));
    }
    Ok(())
}

/// The change that completes a reassignment whose target replicas are all in the ISR, or `None`:
/// replicas become the target, the removed ones leave the ISR, and a removed leader hands over to
/// the first in-sync target replica that may lead (none yet: wait).
pub fn completion(
    topic_id: TopicId,
    partition: i32,
    p: &PartitionRegistration,
    acceptable: impl Fn(BrokerId) -> bool,
) -> Option<PartitionChangeRecord> {
    if !p.is_reassigning() {
        return None;
    }
    let target = p.target_replicas();
    let isr: Vec<BrokerId> = p
        .isr
        .iter()
        .copied()
        .filter(|b| target.contains(b))
        .collect();
    // Kafka's `PartitionReassignmentReplicas.maybeCompleteReassignment`: every target replica in
    // sync, not only the added ones (a move re-submitted mid-way adds nothing new, yet its target
    // may not have caught up).
    if isr.is_empty() || !target.iter().all(|b| isr.contains(b)) {
        return None;
    }
    let leader = if isr.contains(&p.leader) {
        p.leader
    } else {
        target
            .iter()
            .copied()
            .find(|b| isr.contains(b) && acceptable(*b))?
    };
    Some(PartitionChangeRecord {
        topic_id,
        partition,
        leader: (leader != p.leader).then_some(leader),
        isr: (isr != p.isr).then_some(isr),
        replicas: (target != p.replicas).then_some(target),
        adding_replicas: Some(Vec::new()),
        removing_replicas: Some(Vec::new()),
        expected_partition_epoch: Some(p.partition_epoch),
        ..Default::default()
    })
}

/// One ongoing reassignment, as ListPartitionReassignments reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OngoingReassignment {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<BrokerId>,
    pub adding: Vec<BrokerId>,
    pub removing: Vec<BrokerId>,
}

/// The ongoing reassignments, of every partition or of the named ones (unknown ones left out, as
/// Kafka does).
pub fn list_reassignments(
    image: &MetadataImage,
    only: Option<&[(String, Vec<i32>)]>,
) -> Vec<OngoingReassignment> {
    let wanted = |topic: &str, index: i32| {
        only.is_none_or(|only| {
            only.iter()
                .any(|(t, partitions)| t == topic && partitions.contains(&index))
        })
    };
    image
        .partitions()
        .filter(|(topic, index, p)| p.is_reassigning() && wanted(&topic.name, *index))
        .map(|(topic, index, p)| OngoingReassignment {
            topic: topic.name.clone(),
            partition: index,
            replicas: p.replicas.clone(),
            adding: p.adding_replicas.clone(),
            removing: p.removing_replicas.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::cluster::tests::{cluster, commit};
    use crate::state::topics::{alter_partition, AlterPartitionItem};

    fn reassign(target: Option<Vec<BrokerId>>) -> ReassignPartition {
        ReassignPartition {
            topic: "orders".into(),
            partition: 0,
            target,
        }
    }

    fn orders(image: &MetadataImage) -> PartitionRegistration {
        image.topic_by_name("orders").unwrap().partitions[0].clone()
    }

    /// The leader adds `follower` to the ISR, as it does once the follower caught up.
    fn caught_up(image: &mut MetadataImage, follower: BrokerId) -> PartitionRegistration {
        let topic = image.topic_by_name("orders").unwrap().clone();
        let p = &topic.partitions[0];
        let mut isr: Vec<(BrokerId, i64)> = p.isr.iter().map(|&b| (b, -1)).collect();
        isr.push((follower, image.brokers[&follower].broker_epoch));
        let item = AlterPartitionItem {
            topic_id: topic.id,
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: isr,
            leader_recovery_state: None,
        };
        let leader = p.leader;
        let epoch = image.brokers[&leader].broker_epoch;
        let (_, reply) = commit(image, |image| {
            alter_partition(image, leader, epoch, &[item]).unwrap()
        });
        reply[0].clone().unwrap()
    }

    #[test]
    fn a_move_adds_first_and_removes_once_the_new_replica_is_in_sync() {
        let mut image = cluster(&[1, 2, 3, 4], 1, 3);
        let before = orders(&image);
        let (leader, moved) = (before.replicas[0], before.replicas[2]);
        let spare = (1..=4).find(|b| !before.replicas.contains(b)).unwrap();
        // Keep the leader and the second replica, replace the third by the spare broker.
        let target = vec![leader, before.replicas[1], spare];
        let (_, reply) = commit(&mut image, |image| {
            alter_reassignments(image, &[reassign(Some(target.clone()))])
        });
        assert!(reply[0].2.is_ok());
        let during = orders(&image);
        assert_eq!(during.replicas, [target.clone(), vec![moved]].concat());
        assert_eq!(
            (
                during.adding_replicas.clone(),
                during.removing_replicas.clone()
            ),
            (vec![spare], vec![moved])
        );
        assert_eq!(
            during.isr, before.isr,
            "nothing leaves the ISR before the new replica joins"
        );
        assert_eq!(list_reassignments(&image, None).len(), 1);

        // The new replica catches up: the leader's AlterPartition completes the move.
        let answered = caught_up(&mut image, spare);
        let after = orders(&image);
        assert_eq!(answered, after, "the leader is told the final state");
        assert_eq!(after.replicas, target);
        assert!(!after.isr.contains(&moved) && after.isr.contains(&spare));
        assert!(!after.is_reassigning());
        assert_eq!(after.leader, leader);
        assert!(list_reassignments(&image, None).is_empty());
    }

    #[test]
    fn moving_the_leader_away_hands_leadership_to_an_in_sync_target() {
        let mut image = cluster(&[1, 2, 3], 1, 2);
        let before = orders(&image);
        let spare = (1..=3).find(|b| !before.replicas.contains(b)).unwrap();
        let target = vec![spare, before.replicas[1]];
        commit(&mut image, |image| {
            alter_reassignments(image, &[reassign(Some(target.clone()))])
        });
        caught_up(&mut image, spare);
        let after = orders(&image);
        assert_eq!(after.replicas, target);
        assert_eq!(
            after.leader, spare,
            "the first in-sync target replica leads"
        );
        assert!(after.leader_epoch > before.leader_epoch);
        assert!(!after.isr.contains(&before.replicas[0]));
    }

    #[test]
    fn a_shrink_completes_at_once_and_a_cancel_returns_to_the_original() {
        let mut image = cluster(&[1, 2, 3], 1, 3);
        let before = orders(&image);
        let shrunk = vec![before.replicas[0], before.replicas[1]];
        commit(&mut image, |image| {
            alter_reassignments(image, &[reassign(Some(shrunk.clone()))])
        });
        let after = orders(&image);
        assert_eq!(
            (after.replicas.clone(), after.isr.clone()),
            (shrunk.clone(), shrunk.clone())
        );
        assert!(!after.is_reassigning());

        // Grow back to three, then cancel before the new replica catches up.
        let spare = before.replicas[2];
        commit(&mut image, |image| {
            alter_reassignments(image, &[reassign(Some(vec![shrunk[0], shrunk[1], spare]))])
        });
        assert!(orders(&image).is_reassigning());
        let (_, reply) = commit(&mut image, |image| {
            alter_reassignments(image, &[reassign(None)])
        });
        assert!(reply[0].2.is_ok());
        let cancelled = orders(&image);
        assert_eq!(cancelled.replicas, shrunk);
        assert!(!cancelled.is_reassigning());
        let again = alter_reassignments(&image, &[reassign(None)]);
        assert_eq!(
            again.reply[0].2.as_ref().unwrap_err().code,
            ResponseError::NoReassignmentInProgress
        );
    }

    /// A move asked for again while its new replica has not caught up adds nothing new; it must
    /// still wait for that replica rather than drop an in-sync one.
    #[test]
    fn a_resubmitted_move_still_waits_for_its_target_to_be_in_sync() {
        let mut image = cluster(&[1, 2, 3, 4], 1, 3);
        let before = orders(&image);
        let spare = (1..=4).find(|b| !before.replicas.contains(b)).unwrap();
        let target = vec![before.replicas[0], before.replicas[1], spare];
        for _ in 0..2 {
            commit(&mut image, |image| {
                alter_reassignments(image, &[reassign(Some(target.clone()))])
            });
            let during = orders(&image);
            assert_eq!(during.isr, before.isr);
            assert_eq!(
                (during.adding_replicas, during.removing_replicas),
                (vec![spare], vec![before.replicas[2]])
            );
        }
        // A cancel still returns to where the partition started.
        let mut cancelled = image.clone();
        commit(&mut cancelled, |image| {
            alter_reassignments(image, &[reassign(None)])
        });
        assert_eq!(orders(&cancelled).replicas, before.replicas);
        caught_up(&mut image, spare);
        assert_eq!(orders(&image).replicas, target);
    }

    #[test]
    fn bad_targets_are_refused_and_change_nothing() {
        let image = cluster(&[1, 2, 3], 1, 2);
        for (request, code) in [
            (
                reassign(Some(vec![])),
                ResponseError::InvalidReplicaAssignment,
            ),
            (
                reassign(Some(vec![1, 1])),
                ResponseError::InvalidReplicaAssignment,
            ),
            (
                reassign(Some(vec![1, 9])),
                ResponseError::InvalidReplicaAssignment,
            ),
            (
                ReassignPartition {
                    partition: 5,
                    ..reassign(Some(vec![1]))
                },
                ResponseError::UnknownTopicOrPartition,
            ),
        ] {
            let result = alter_reassignments(&image, std::slice::from_ref(&request));
            assert!(result.records.is_empty(), "{request:?}");
            assert_eq!(
                result.reply[0].2.as_ref().unwrap_err().code,
                code,
                "{request:?}"
            );
        }
    }
}
