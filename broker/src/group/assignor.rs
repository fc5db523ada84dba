//! Server-side assignors of KIP-848's consumer groups: the coordinator computes each member's target
//! partitions (`group.consumer.assignors` in Kafka: `uniform`, the default, and `range`).
//!
//! - `uniform` (Kafka's `UniformAssignor`): balanced (members' counts differ by at most one when they
//!   subscribe to the same topics) and sticky (a member keeps what it had in the previous target, up
//!   to its share). Members with different subscriptions are balanced as far as their subscriptions
//!   allow: each partition goes to its least loaded subscriber, then partitions move from the most to
//!   the least loaded subscriber while that narrows the gap.
//! - `range` (Kafka's `RangeAssignor`): per topic, contiguous ranges of partitions to its subscribers
//!   in a fixed order (static members by instance id, then the rest by member id), so topics with the
//!   same partition count are co-partitioned. Not sticky.
//!
//! Both are deterministic: the same input gives the same targets on every coordinator.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::consumer_records::TopicPartitions;

pub const UNIFORM: &str = "uniform";
pub const RANGE: &str = "range";
/// Every assignor served, the default first.
pub const ASSIGNORS: [&str; 2] = [UNIFORM, RANGE];

/// One member as an assignor sees it.
#[derive(Clone, Debug)]
pub struct MemberSpec<'a> {
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    /// The existing topics it subscribes to.
    pub topics: BTreeSet<Uuid>,
    /// Its previous target.
    pub current: Option<&'a TopicPartitions>,
}

/// Targets of every member (each member present, possibly with nothing).
pub fn assign(
    assignor: &str,
    members: &[MemberSpec<'_>],
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, TopicPartitions> {
    match assignor {
        RANGE => range(members, partitions),
        _ => uniform(members, partitions),
    }
}

fn uniform(
    members: &[MemberSpec<'_>],
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, TopicPartitions> {
    let mut owned: BTreeMap<&str, BTreeSet<(Uuid, i32)>> = BTreeMap::new();
    let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    // Stickiness: each member keeps its previous target where it still subscribes and the partition
    // still exists (a partition claimed twice stays with the first member).
    for m in members {
        let kept = owned.entry(m.member_id).or_default();
        for (topic, indexes) in m.current.into_iter().flatten() {
            let Some(count) = partitions.get(topic) else {
                continue;
            };
            if !m.topics.contains(topic) {
                continue;
            }
            for &p in indexes {
                if p < *count && taken.insert((*topic, p)) {
                    kept.insert((*topic, p));
                }
            }
        }
    }
    let subscribers = |topic: &Uuid| -> Vec<&str> {
        members
            .iter()
            .filter(|m| m.topics.contains(topic))
            .map(|m| m.member_id)
            .collect()
    };
    // The rest to its least loaded subscriber; topics with the fewest subscribers first, as they
    // have the least choice.
    let mut topics: Vec<(&Uuid, &i32, Vec<&str>)> = partitions
        .iter()
        .map(|(t, c)| (t, c, subscribers(t)))
        .filter(|(_, _, s)| !s.is_empty())
        .collect();
    topics.sort_by_key(|(t, _, s)| (s.len(), **t));
    for (topic, count, subs) in &topics {
        for p in 0..**count {
            if taken.contains(&(**topic, p)) {
                continue;
            }
            let least = subs.iter().min_by_key(|m| (owned[**m].len(), **m)).copied();
            if let Some(m) = least {
                owned.entry(m).or_default().insert((**topic, p));
                taken.insert((**topic, p));
            }
        }
    }
    // Balance: move a partition from a most loaded member to a subscriber with at least two fewer.
    // Each move lowers the sum of squared counts, so this ends.
    let by_member: BTreeMap<&str, &MemberSpec<'_>> =
        members.iter().map(|m| (m.member_id, m)).collect();
    loop {
        let mut order: Vec<&str> = owned.keys().copied().collect();
        order.sort_by_key(|m| (std::cmp::Reverse(owned[m].len()), *m));
        let mut moved = false;
        'search: for from in &order {
            let from_len = owned[from].len();
            for to in order.iter().rev() {
                if owned[to].len() + 1 >= from_len {
                    break;
                }
                let target_topics = &by_member[to].topics;
                let candidate = owned[from]
                    .iter()
                    .rev()
                    .find(|(t, _)| target_topics.contains(t))
                    .copied();
                if let Some(tp) = candidate {
                    owned.get_mut(from).map(|s| s.remove(&tp));
                    owned.get_mut(to).map(|s| s.insert(tp));
                    moved = true;
                    break 'search;
                }
            }
        }
        if !moved {
            break;
        }
    }
    owned
        .into_iter()
        .map(|(m, set)| (m.to_owned(), to_topic_partitions(set)))
        .collect()
}

fn range(
    members: &[MemberSpec<'_>],
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, TopicPartitions> {
    let mut sorted: Vec<&MemberSpec<'_>> = members.iter().collect();
    sorted.sort_by_key(|m| (m.instance_id.is_none(), m.instance_id, m.member_id));
    let mut targets: BTreeMap<String, TopicPartitions> = members
        .iter()
        .map(|m| (m.member_id.to_owned(), TopicPartitions::new()))
        .collect();
    for (topic, count) in partitions {
        let subs: Vec<&&MemberSpec<'_>> =
            sorted.iter().filter(|m| m.topics.contains(topic)).collect();
        if subs.is_empty() {
            continue;
        }
        let quota = *count / subs.len() as i32;
        let extra = *count % subs.len() as i32;
        let mut next = 0;
        for (i, m) in subs.iter().enumerate() {
            let take = quota + i32::from((i as i32) < extra);
            if take > 0 {
                if let Some(target) = targets.get_mut(m.member_id) {
                    target.insert(*topic, (next..next + take).collect());
                }
            }
            next += take;
        }
    }
    targets
}

fn to_topic_partitions(set: BTreeSet<(Uuid, i32)>) -> TopicPartitions {
    let mut out = TopicPartitions::new();
    for (t, p) in set {
        out.entry(t).or_default().insert(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn spec<'a>(
        id: &'a str,
        topics: &[Uuid],
        current: Option<&'a TopicPartitions>,
    ) -> MemberSpec<'a> {
        MemberSpec {
            member_id: id,
            instance_id: None,
            topics: topics.iter().copied().collect(),
            current,
        }
    }

    fn count(targets: &BTreeMap<String, TopicPartitions>, m: &str) -> usize {
        targets[m].values().map(|s| s.len()).sum()
    }

    fn every_partition_once(
        targets: &BTreeMap<String, TopicPartitions>,
        partitions: &BTreeMap<Uuid, i32>,
    ) {
        let mut seen = BTreeSet::new();
        for target in targets.values() {
            for (topic, ps) in target {
                for p in ps {
                    assert!(seen.insert((*topic, *p)), "{topic}/{p} assigned twice");
                }
            }
        }
        let all: usize = partitions.values().map(|c| *c as usize).sum();
        assert_eq!(seen.len(), all, "every partition assigned");
    }

    #[test]
    fn uniform_balances_and_keeps_what_members_had() {
        let partitions: BTreeMap<Uuid, i32> = [(t(1), 6), (t(2), 1)].into_iter().collect();
        let topics = [t(1), t(2)];
        let first = assign(UNIFORM, &[spec("a", &topics, None)], &partitions);
        assert_eq!(count(&first, "a"), 7);
        // A second member takes three, and "a" keeps four of its seven.
        let a = first["a"].clone();
        let second = assign(
            UNIFORM,
            &[spec("a", &topics, Some(&a)), spec("b", &topics, None)],
            &partitions,
        );
        every_partition_once(&second, &partitions);
        assert_eq!((count(&second, "a"), count(&second, "b")), (4, 3));
        for (topic, ps) in &second["a"] {
            assert!(ps.is_subset(&a[topic]), "a only keeps what it had");
        }
        // A third: each of the first two gives up what it must, and no more.
        let (a2, b2) = (second["a"].clone(), second["b"].clone());
        let third = assign(
            UNIFORM,
            &[
                spec("a", &topics, Some(&a2)),
                spec("b", &topics, Some(&b2)),
                spec("c", &topics, None),
            ],
            &partitions,
        );
        every_partition_once(&third, &partitions);
        let mut counts: Vec<usize> = ["a", "b", "c"].iter().map(|m| count(&third, m)).collect();
        counts.sort();
        assert_eq!(counts, vec![2, 2, 3]);
        for (m, before) in [("a", &a2), ("b", &b2)] {
            for (topic, ps) in &third[m] {
                assert!(ps.is_subset(&before[topic]), "{m} only keeps what it had");
            }
        }
        // Nobody new: the same input gives the same targets.
        let again = assign(
            UNIFORM,
            &[
                spec("a", &topics, Some(&third["a"])),
                spec("b", &topics, Some(&third["b"])),
                spec("c", &topics, Some(&third["c"])),
            ],
            &partitions,
        );
        assert_eq!(again, third);
    }

    #[test]
    fn uniform_respects_different_subscriptions_and_drops_what_is_gone() {
        let partitions: BTreeMap<Uuid, i32> = [(t(1), 4), (t(2), 2)].into_iter().collect();
        // "a" had a partition of a topic it no longer subscribes to and one past the topic's end.
        let stale: TopicPartitions = [
            (t(2), [0].into_iter().collect()),
            (t(1), [9].into_iter().collect()),
        ]
        .into_iter()
        .collect();
        let targets = assign(
            UNIFORM,
            &[
                spec("a", &[t(1)], Some(&stale)),
                spec("b", &[t(1), t(2)], None),
            ],
            &partitions,
        );
        every_partition_once(&targets, &partitions);
        assert!(
            !targets["a"].contains_key(&t(2)),
            "a does not subscribe to t2"
        );
        assert_eq!(targets["b"][&t(2)].len(), 2);
        assert_eq!((count(&targets, "a"), count(&targets, "b")), (3, 3));
    }

    #[test]
    fn range_gives_contiguous_ranges_in_member_order_and_static_members_first() {
        let partitions: BTreeMap<Uuid, i32> = [(t(1), 5), (t(2), 5)].into_iter().collect();
        let topics = [t(1), t(2)];
        let mut z = spec("z", &topics, None);
        z.instance_id = Some("i-0");
        let targets = assign(
            RANGE,
            &[spec("a", &topics, None), z, spec("b", &topics, None)],
            &partitions,
        );
        every_partition_once(&targets, &partitions);
        let range = |m: &str, topic| targets[m][&topic].iter().copied().collect::<Vec<_>>();
        assert_eq!(range("z", t(1)), vec![0, 1]);
        assert_eq!(range("a", t(1)), vec![2, 3]);
        assert_eq!(range("b", t(1)), vec![4]);
        assert_eq!(range("z", t(2)), range("z", t(1)), "co-partitioned");
    }
}
