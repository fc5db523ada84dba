//! Leader election and ISR changes for one partition (Kafka's `PartitionChangeBuilder`).
//! Everything that moves a leader or an ISR goes through `partition_change`, so the rules hold in one
//! place: the current leader stays while it is acceptable and in sync; otherwise the first in-sync
//! replica in assignment order takes over; an out-of-sync replica only when unclean election is on; else
//! the partition has no leader. The ISR never becomes empty: callers keep the last member.

use super::image::PartitionRegistration;
use super::records::{BrokerId, PartitionChangeRecord, TopicId, NO_LEADER};

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
pub fn partition_change(
    topic_id: TopicId,
    partition: i32,
    current: &PartitionRegistration,
    target_isr: Vec<BrokerId>,
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
    let leader = match preferred.or(kept).or(first_in_sync) {
        Some(leader) => leader,
        None if unclean_allowed => {
            match current.replicas.iter().copied().find(|&b| acceptable(b)) {
                Some(leader) => {
                    // Unclean: the new leader's log defines history; it alone is in sync until it recovers.
                    isr = vec![leader];
                    recovering = true;
                    leader
                }
                None => NO_LEADER,
            }
        }
        None => NO_LEADER,
    };

    let change = PartitionChangeRecord {
        topic_id,
        partition,
        leader: (leader != current.leader).then_some(leader),
        isr: (isr != current.isr).then_some(isr),
        replicas: None,
        recovering: (recovering != current.recovering).then_some(recovering),
        expected_partition_epoch: Some(current.partition_epoch),
        ..Default::default()
    };
    (change.leader.is_some() || change.isr.is_some() || change.recovering.is_some())
        .then_some(change)
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
            |b| b != 3,
            false,
            Election::KeepCurrent,
        )
        .expect("a change");
        assert_eq!(change.leader, Some(NO_LEADER));
        assert_eq!(change.isr, None, "ISR keeps its last member");
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
