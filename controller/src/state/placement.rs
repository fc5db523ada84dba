//! Replica placement for new topics. Brokers are ordered so that neighbours sit on different racks
//! (when racks are set), and partition `p` takes `rf` consecutive brokers starting at `start + p`: each
//! broker leads an equal share (±1) of a topic's partitions, and no two replicas share a rack while there
//! are at least `rf` racks.

use std::collections::BTreeMap;

use super::records::BrokerId;

/// Orders brokers `(id, rack)` round-robin across racks, ids ascending within a rack. Brokers without a
/// rack form one group of their own.
pub fn rack_alternating_order(brokers: &[(BrokerId, Option<String>)]) -> Vec<BrokerId> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<BrokerId>> = BTreeMap::new();
    for (id, rack) in brokers {
        by_rack.entry(rack.as_deref()).or_default().push(*id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let mut order = Vec::with_capacity(brokers.len());
    for i in 0..longest {
        for ids in by_rack.values() {
            if let Some(id) = ids.get(i) {
                order.push(*id);
            }
        }
    }
    order
}

/// Replica lists for `partitions` partitions of replication factor `rf` over `brokers` (`rf` must not
/// exceed the broker count). `start` rotates the first leader so successive topics spread their leaders.
pub fn assign_replicas(
    brokers: &[(BrokerId, Option<String>)],
    partitions: usize,
    rf: usize,
    start: usize,
) -> Vec<Vec<BrokerId>> {
    let order = rack_alternating_order(brokers);
    let n = order.len();
    if n == 0 {
        return Vec::new();
    }
    (0..partitions)
        .map(|p| (0..rf.min(n)).map(|i| order[(start + p + i) % n]).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    fn no_racks(ids: &[BrokerId]) -> Vec<(BrokerId, Option<String>)> {
        ids.iter().map(|&id| (id, None)).collect()
    }

    #[test]
    fn leaders_are_balanced_and_replicas_distinct() {
        let assignment = assign_replicas(&no_racks(&[4, 9, 17]), 6, 3, 0);
        let mut leaders: HashMap<BrokerId, usize> = HashMap::new();
        for replicas in &assignment {
            assert_eq!(replicas.iter().collect::<BTreeSet<_>>().len(), 3);
            *leaders.entry(replicas[0]).or_default() += 1;
        }
        assert_eq!(leaders.len(), 3);
        assert!(leaders.values().all(|&n| n == 2), "{leaders:?}");
    }

    #[test]
    fn replicas_spread_over_racks() {
        let brokers = vec![
            (1, Some("a".to_string())),
            (2, Some("a".to_string())),
            (3, Some("b".to_string())),
            (4, Some("b".to_string())),
            (5, Some("c".to_string())),
            (6, Some("c".to_string())),
        ];
        let rack: HashMap<BrokerId, &str> = brokers
            .iter()
            .map(|(id, r)| (*id, r.as_deref().unwrap()))
            .collect();
        for start in 0..6 {
            for replicas in assign_replicas(&brokers, 12, 3, start) {
                let racks: BTreeSet<&str> = replicas.iter().map(|b| rack[b]).collect();
                assert_eq!(racks.len(), 3, "{replicas:?}");
            }
        }
    }
}
