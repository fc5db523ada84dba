//! Leader election and ISR changes for one partition (Kafka's `PartitionChangeBuilder`).
//! Everything that moves a leader or an ISR goes through `partition_change`, so the rules hold in one
//! place: the current leader stays while it is acceptable and in sync; otherwise the first in-sync
//! replica in assignment order takes over; when the ISR is empty, the first eligible leader replica
//! (KIP-966's ELR); an out-of-sync replica only when unclean election is on; else the partition has no
//! leader.
//!
//! The ISR becomes empty only when its last member lost its log directory (`lose_replica`): callers
//! keep the last member otherwise, since our brokers fsync before they acknowledge and a member that
//! crashed still holds every acknowledged record. The ELR are the replicas that left the ISR while it
//! was below min.insync.replicas: no acks=all write was acknowledged without them since, so one of them
//! may lead in place of a last member whose log is gone. A change that takes the ISR to
//! min.insync.replicas or more clears them, and so does any ISR change that does not set them
//! (`apply_partition_change`).

use chronik_metadata::configs::effective_min_insync_replicas;

use super::image::{MetadataImage, PartitionRegistration, TopicImage};
use super::records::{BrokerId, PartitionChangeRecord, TopicId, NO_LEADER};

/// The partition's effective min.insync.replicas, as `partition_change` takes it.
pub fn min_isr(image: &MetadataImage, topic: &TopicImage, p: &PartitionRegistration) -> usize {
    effective_min_insync_replicas(image, &topic.configs, p.replicas.len()).max(1) as usize
}

/// `min_isr` of a partition of the topic `topic_id` (1 for a topic the image does not have).
pub fn topic_min_isr(image: &MetadataImage, topic_id: TopicId, p: &PartitionRegistration) -> usize {
    image
        .topics
        .get(&topic_id)
        .map_or(1, |topic| min_isr(image, topic, p))
}

/// Which leader a change should aim for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Election {
    /// Keep the current leader when it is still acceptable and in the ISR.
    KeepCurrent,
    /// Move leadership to the preferred replica (the first in assignment order) when it is acceptable
    /// and in the ISR; otherwise as `KeepCurrent`.
    Preferred,
}

/// The change that brings a partition to `target_isr` with a leader chosen by `election`, or `None` when
/// nothing would change. `acceptable` says whether a broker may lead (unfenced, not shutting down).
#[allow(clippy::too_many_arguments)]
pub fn partition_change(
    topic_id: TopicId,
    partition: i32,
    current: &PartitionRegistration,
    target_isr: Vec<BrokerId>,
    min_isr: usize,
    acceptable: impl Fn(BrokerId) -> bool,
    unclean_allowed: bool,
    election: Election,
) -> Option<PartitionChangeRecord> {
    let mut isr = if target_isr.is_empty() {
        current.isr.clone()
    } else {
        target_isr
    };
    let eligible = |b: BrokerId| isr.contains(&b) && acceptable(b);
    let preferred = current
        .preferred_leader()
        .filter(|&b| election == Election::Preferred && eligible(b));
    let kept = Some(current.leader).filter(|&b| b != NO_LEADER && eligible(b));
    let first_in_sync = current.replicas.iter().copied().find(|&b| eligible(b));
    let mut recovering = current.recovering;
    let mut unclean = false;
    let first_eligible = current
        .replicas
        .iter()
        .copied()
        .find(|&b| isr.is_empty() && current.elr.contains(&b) && acceptable(b));
    let leader = match (preferred.or(kept).or(first_in_sync), first_eligible) {
        (Some(leader), _) => leader,
        (None, Some(leader)) => {
            // KIP-966: an eligible leader replica holds every acknowledged write; it is the ISR now.
            isr = vec![leader];
            leader
        }
        (None, None) if unclean_allowed => {
            match current.replicas.iter().copied().find(|&b| acceptable(b)) {
                Some(leader) => {
                    // Unclean: the new leader's log defines history; it alone is in sync until it recovers.
                    isr = vec![leader];
                    recovering = true;
                    unclean = true;
                    leader
                }
                None => NO_LEADER,
            }
        }
        (None, None) => NO_LEADER,
    };
    let elr = if unclean {
        Vec::new()
    } else {
        eligible_leader_replicas(current, &isr, min_isr)
    };

    let change = PartitionChangeRecord {
        topic_id,
        partition,
        leader: (leader != current.leader).then_some(leader),
        isr: (isr != current.isr).then(|| isr.clone()),
        replicas: None,
        recovering: (recovering != current.recovering).then_some(recovering),
        expected_partition_epoch: Some(current.partition_epoch),
        // A new ISR without them clears them.
        elr: if isr != current.isr {
            (!elr.is_empty()).then_some(elr)
        } else {
            (elr != current.elr).then_some(elr)
        },
        ..Default::default()
    };
    (change.leader.is_some()
        || change.isr.is_some()
        || change.recovering.is_some()
        || change.elr.is_some())
    .then_some(change)
}

/// KIP-966's eligible leader replicas once the ISR is `isr`: none while it has `min_isr` members or
/// more (writes may be acknowledged without the others); below that, those eligible already and those
/// leaving the ISR now, in assignment order.
fn eligible_leader_replicas(
    current: &PartitionRegistration,
    isr: &[BrokerId],
    min_isr: usize,
) -> Vec<BrokerId> {
    if isr.len() >= min_isr {
        return Vec::new();
    }
    current
        .replicas
        .iter()
        .copied()
        .filter(|b| !isr.contains(b) && (current.elr.contains(b) || current.isr.contains(b)))
        .collect()
}

/// The change for a partition of which `lost`, a broker whose log directory was lost, held a replica:
/// it leaves the ISR, even as its last member, and the eligible leader replicas, and a leader
/// `acceptable` (and not `lost`) is elected as `partition_change` does; with the ISR empty, an
/// eligible leader replica, or with `unclean_allowed` any replica, or no leader until one of them
/// comes back. `None` when `lost` held no place in the partition's ISR, ELR or leadership.
#[allow(clippy::too_many_arguments)]
pub fn lose_replica(
    topic_id: TopicId,
    partition: i32,
    current: &PartitionRegistration,
    lost: BrokerId,
    min_isr: usize,
    acceptable: impl Fn(BrokerId) -> bool,
    unclean_allowed: bool,
) -> Option<PartitionChangeRecord> {
    if !current.isr.contains(&lost) && !current.elr.contains(&lost) && current.leader != lost {
        return None;
    }
    let mut without = current.clone();
    without.isr.retain(|&b| b != lost);
    without.elr.retain(|&b| b != lost);
    if without.leader == lost {
        without.leader = NO_LEADER;
    }
    let elected = partition_change(
        topic_id,
        partition,
        &without,
        without.isr.clone(),
        min_isr,
        |b| b != lost && acceptable(b),
        unclean_allowed,
        Election::KeepCurrent,
    );
    let leader = elected
        .as_ref()
        .and_then(|c| c.leader)
        .unwrap_or(without.leader);
    let isr = elected
        .as_ref()
        .and_then(|c| c.isr.clone())
        .unwrap_or(without.isr);
    // As replay reads a change: a new ISR without them clears them.
    let elr = match elected.as_ref().map(|c| (c.isr.is_some(), c.elr.clone())) {
        Some((_, Some(elr))) => elr,
        Some((true, None)) => Vec::new(),
        _ => without.elr,
    };
    let recovering = elected
        .as_ref()
        .and_then(|c| c.recovering)
        .unwrap_or(current.recovering);
    Some(PartitionChangeRecord {
        topic_id,
        partition,
        leader: (leader != current.leader).then_some(leader),
        isr: Some(isr),
        recovering: (recovering != current.recovering).then_some(recovering),
        elr: Some(elr),
        expected_partition_epoch: Some(current.partition_epoch),
        ..Default::default()
    })
}

/// The ISR without `broker`, unless that would leave it empty (the last member is kept).
pub fn isr_without(isr: &[BrokerId], broker: BrokerId) -> Vec<BrokerId> {
    let rest: Vec<BrokerId> = isr.iter().copied().filter(|&b| b != broker).collect();
    if rest.is_empty() {
        isr.to_vec()
    } else {
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn partition(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionRegistration {
        PartitionRegistration {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 5,
            partition_epoch: 9,
            recovering: false,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
            elr: Vec::new(),
        }
    }

    #[test]
    fn a_fenced_leader_is_replaced_by_the_first_in_sync_replica() {
        let p = partition(&[1, 2, 3], &[1, 2, 3], 1);
        let change = partition_change(
            Uuid::nil(),
            0,
            &p,
            isr_without(&p.isr, 1),
            1,
            |b| b != 1,
            false,
            Election::KeepCurrent,
        )
        .expect("a change");
        assert_eq!(change.leader, Some(2));
        assert_eq!(change.isr, Some(vec![2, 3]));
    }

    #[test]
    fn an_acceptable_leader_is_kept() {
        let p = partition(&[1, 2, 3], &[1, 2, 3], 2);
        let change = partition_change(
            Uuid::nil(),
            0,
            &p,
            isr_without(&p.isr, 3),
            1,
            |b| b != 3,
            false,
            Election::KeepCurrent,
        )
        .expect("a change");
        assert_eq!(
            change.leader, None,
            "leader unchanged, so no leader epoch bump"
        );
        assert_eq!(change.isr, Some(vec![1, 2]));
    }

    #[test]
    fn the_last_isr_member_is_kept_and_the_partition_goes_leaderless() {
        let p = partition(&[1, 2, 3], &[3], 3);
        let change = partition_change(
            Uuid::nil(),
            0,
            &p,
            isr_without(&p.isr, 3),
            1,
            |b| b != 3,
            false,
            Election::KeepCurrent,
        )
        .expect("a change");
        assert_eq!(change.leader, Some(NO_LEADER));
        assert_eq!(change.isr, None, "ISR keeps its last member");
    }

    /// Applies `change` to `p` as replay does.
    fn applied(p: &PartitionRegistration, change: &PartitionChangeRecord) -> PartitionRegistration {
        let mut after = p.clone();
        assert!(super::super::image::apply_partition_change(
            &mut after, change
        ));
        after
    }

    fn shrink(p: &PartitionRegistration, isr: &[i32]) -> PartitionRegistration {
        let change = partition_change(
            Uuid::nil(),
            0,
            p,
            isr.to_vec(),
            2,
            |_| true,
            false,
            Election::KeepCurrent,
        )
        .expect("a change");
        applied(p, &change)
    }

    /// KIP-966 with min.insync.replicas 2: a replica that leaves while the ISR keeps two members is
    /// not eligible (writes go on being acknowledged without it); those that leave it below two are,
    /// until it is back at two.
    #[test]
    fn eligible_leader_replicas_are_those_that_left_the_isr_below_min_insync() {
        let p = partition(&[1, 2, 3], &[1, 2, 3], 1);
        let p = shrink(&p, &[1, 2]);
        assert!(p.elr.is_empty(), "{p:?}");
        let p = shrink(&p, &[1]);
        assert_eq!(p.elr, vec![2]);
        let p = shrink(&p, &[1, 3]);
        assert!(
            p.elr.is_empty(),
            "the ISR is at min.insync.replicas again: {p:?}"
        );
        let p = shrink(&p, &[3]);
        assert_eq!(p.elr, vec![1]);
        // A change of the ISR that does not name them (a reassignment's) clears them.
        let other = PartitionChangeRecord {
            isr: Some(vec![3, 2]),
            expected_partition_epoch: Some(p.partition_epoch),
            ..Default::default()
        };
        assert!(applied(&p, &other).elr.is_empty());
    }

    /// What else ends eligibility: a change of min.insync.replicas (a lower one acknowledges writes
    /// without them; Kafka clears them on any change), the replica moving off the partition (it
    /// deletes its copy), the broker being unregistered.
    #[test]
    fn eligible_leader_replicas_end_with_min_insync_changes_moves_and_unregistration() {
        use crate::state::records::{ConfigResource, PartitionRecord, Record};

        let topic_id = Uuid::from_u128(7);
        let mut image = MetadataImage::default();
        let with_elr = |image: &mut MetadataImage, offset: u64| {
            image.replay(
                offset,
                &Record::Topic {
                    name: "t".into(),
                    topic_id,
                },
            );
            image.replay(
                offset + 1,
                &Record::Partition(PartitionRecord {
                    topic_id,
                    partition: 0,
                    replicas: vec![1, 2, 3],
                    isr: vec![1],
                    leader: 1,
                    elr: vec![2, 3],
                    ..Default::default()
                }),
            );
        };
        let elr = |image: &MetadataImage| image.partition(topic_id, 0).unwrap().elr.clone();
        with_elr(&mut image, 1);
        assert_eq!(elr(&image), vec![2, 3]);
        for resource in [ConfigResource::Topic("t".into()), ConfigResource::Cluster] {
            with_elr(&mut image, 10);
            image.replay(
                12,
                &Record::Config {
                    resource,
                    key: "min.insync.replicas".into(),
                    value: Some("1".into()),
                },
            );
            assert!(elr(&image).is_empty());
        }
        with_elr(&mut image, 20);
        let p = image.partition(topic_id, 0).unwrap().clone();
        let moved = PartitionChangeRecord {
            topic_id,
            replicas: Some(vec![1, 2]),
            expected_partition_epoch: Some(p.partition_epoch),
            ..Default::default()
        };
        assert_eq!(applied(&p, &moved).elr, vec![2]);

        image.replay(
            30,
            &Record::RegisterBroker(crate::state::records::RegisterBrokerRecord {
                broker_id: 3,
                incarnation_id: Uuid::new_v4(),
                broker_epoch: -1,
                endpoints: Vec::new(),
                rack: None,
                fenced: true,
                in_controlled_shutdown: false,
                supported_features: Default::default(),
                log_dir_id: None,
            }),
        );
        image.replay(
            31,
            &Record::UnregisterBroker {
                broker_id: 3,
                broker_epoch: 30,
            },
        );
        assert_eq!(elr(&image), vec![2]);
    }

    /// The last ISR member lost its log directory: it leaves the ISR, and the replica that left the
    /// ISR last leads with what every acknowledged write reached; not the one that left before (it
    /// may lack writes acknowledged since).
    #[test]
    fn an_eligible_leader_replica_replaces_a_last_member_whose_log_is_gone() {
        let p = partition(&[1, 2, 3], &[1, 2, 3], 1);
        let p = shrink(&shrink(&p, &[1, 3]), &[1]);
        assert_eq!(p.elr, vec![3]);
        // Broker 1 crashed (fenced): it stays the last member, leaderless.
        let fenced = partition_change(
            Uuid::nil(),
            0,
            &p,
            isr_without(&p.isr, 1),
            2,
            |b| b != 1,
            false,
            Election::KeepCurrent,
        )
        .expect("a change");
        let p = applied(&p, &fenced);
        assert_eq!(
            (p.leader, p.isr.clone(), p.elr.clone()),
            (NO_LEADER, vec![1], vec![3])
        );

        // It comes back with an empty directory while broker 3 is still down: nobody leads yet.
        let down = |b: i32| b == 2;
        let lost = lose_replica(Uuid::nil(), 0, &p, 1, 2, down, false).expect("a change");
        let p = applied(&p, &lost);
        assert_eq!(
            (p.leader, p.isr.clone(), p.elr.clone()),
            (NO_LEADER, vec![], vec![3])
        );
        // Broker 2 (not eligible) may not lead it; broker 3 does once it is back.
        assert!(partition_change(
            Uuid::nil(),
            0,
            &p,
            p.isr.clone(),
            2,
            down,
            false,
            Election::KeepCurrent
        )
        .is_none());
        let back = partition_change(
            Uuid::nil(),
            0,
            &p,
            p.isr.clone(),
            2,
            |_| true,
            false,
            Election::KeepCurrent,
        )
        .expect("a change");
        let p = applied(&p, &back);
        assert_eq!(
            (p.leader, p.isr.clone(), p.elr.clone()),
            (3, vec![3], vec![])
        );

        // A lost directory of a member that is not the last one only takes it out.
        let q = partition(&[1, 2, 3], &[1, 2, 3], 1);
        let lost = lose_replica(Uuid::nil(), 0, &q, 1, 2, |_| true, false).expect("a change");
        let q = applied(&q, &lost);
        assert_eq!(
            (q.leader, q.isr.clone(), q.elr.clone()),
            (2, vec![2, 3], vec![])
        );
        assert!(lose_replica(Uuid::nil(), 0, &q, 1, 2, |_| true, false).is_none());
    }

    /// With unclean election on, a last member whose log is gone and no eligible replica around: any
    /// live replica leads, recovering, as an unclean election does.
    #[test]
    fn a_lost_last_member_without_eligible_replicas_waits_or_goes_unclean() {
        let p = partition(&[1, 2, 3], &[1], NO_LEADER);
        let lost = lose_replica(Uuid::nil(), 0, &p, 1, 2, |_| true, false).expect("a change");
        let waits = applied(&p, &lost);
        assert_eq!((waits.leader, waits.isr.clone()), (NO_LEADER, vec![]));
        let lost = lose_replica(Uuid::nil(), 0, &p, 1, 2, |_| true, true).expect("a change");
        let unclean = applied(&p, &lost);
        assert_eq!((unclean.leader, unclean.isr.clone()), (2, vec![2]));
        assert!(unclean.recovering);
    }

    #[test]
    fn unclean_election_takes_an_out_of_sync_replica_only_when_enabled() {
        let p = partition(&[1, 2, 3], &[3], NO_LEADER);
        let acceptable = |b: i32| b == 1;
        assert_eq!(
            partition_change(
                Uuid::nil(),
                0,
                &p,
                p.isr.clone(),
                1,
                acceptable,
                false,
                Election::KeepCurrent
            ),
            None
        );
        let change = partition_change(
            Uuid::nil(),
            0,
            &p,
            p.isr.clone(),
            1,
            acceptable,
            true,
            Election::KeepCurrent,
        )
        .expect("a change");
        assert_eq!(change.leader, Some(1));
        assert_eq!(change.isr, Some(vec![1]));
        assert_eq!(change.recovering, Some(true));
    }

    #[test]
    fn preferred_election_moves_back_to_the_first_replica_when_in_sync() {
        let p = partition(&[1, 2, 3], &[2, 3], 2);
        let all = |_: i32| true;
        assert_eq!(
            partition_change(
                Uuid::nil(),
                0,
                &p,
                p.isr.clone(),
                1,
                all,
                false,
                Election::Preferred
            ),
            None,
            "preferred replica not in the ISR yet"
        );
        let p = partition(&[1, 2, 3], &[2, 3, 1], 2);
        let change = partition_change(
            Uuid::nil(),
            0,
            &p,
            p.isr.clone(),
            1,
            all,
            false,
            Election::Preferred,
        )
        .expect("a change");
        assert_eq!(change.leader, Some(1));
    }
}

#[cfg(test)]
mod compatibility_tests {
    use chronik_metadata::convert::{record_from_proto, record_to_proto};
    use uuid::Uuid;

    use super::super::image::apply_partition_change;
    use super::*;
    use crate::state::Record;

    /// Partition changes in the Raft log (sled, serde JSON) and on the watch stream (protobuf) from
    /// before `expected_partition_epoch` existed read back as unconditional changes; new ones keep it.
    #[test]
    fn partition_changes_without_an_expected_epoch_apply_unconditionally() {
        let topic_id = Uuid::from_u128(7);
        let stored = format!(
            r#"{{"PartitionChange":{{"topic_id":"{topic_id}","partition":0,"leader":null,"isr":[1,2],"replicas":null,"recovering":null}}}}"#
        );
        let Record::PartitionChange(old) = serde_json::from_str::<Record>(&stored).unwrap() else {
            panic!("a partition change");
        };
        assert_eq!(old.expected_partition_epoch, None);
        let mut p = PartitionRegistration {
            replicas: vec![1, 2, 3],
            isr: vec![1],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 4,
            recovering: false,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
            elr: Vec::new(),
        };
        assert!(apply_partition_change(&mut p, &old));
        assert_eq!((p.isr.clone(), p.partition_epoch), (vec![1, 2], 5));

        let new = PartitionChangeRecord {
            expected_partition_epoch: Some(5),
            ..old.clone()
        };
        let record = Record::PartitionChange(new.clone());
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), record);
        assert_eq!(
            record_from_proto(&record_to_proto(&record)).unwrap(),
            record
        );
        let unconditional = Record::PartitionChange(old);
        assert_eq!(
            record_from_proto(&record_to_proto(&unconditional)).unwrap(),
            unconditional
        );
        assert!(apply_partition_change(&mut p, &new));
        assert!(
            !apply_partition_change(&mut p, &new),
            "the same change again is stale"
        );
        assert_eq!(p.partition_epoch, 6);
    }
}
