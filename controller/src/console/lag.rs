//! `LagHistory`: each consumer group partition's lag over time, as this controller's sampler saw
//! it, in a bounded in-memory ring per group partition. It is not replicated and starts empty when
//! the controller starts: every controller keeps its own.
//!
//! What must stay true: a ring holds at most `capacity` points, oldest first; a group partition that
//! has not been sampled for a whole ring's worth of samples is dropped, so groups and topics that
//! are gone do not keep memory forever.

use std::collections::{BTreeMap, VecDeque};

/// A group partition: `(group, topic, partition)`.
pub type GroupPartition = (String, String, i32);

/// One sample of one group partition's lag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LagPoint {
    pub at_ms: i64,
    pub lag: i64,
}

#[derive(Debug)]
pub struct LagHistory {
    capacity: usize,
    rings: BTreeMap<GroupPartition, VecDeque<LagPoint>>,
    /// How many samples were recorded, and when each ring was last sampled (in that count).
    samples: u64,
    last_sampled: BTreeMap<GroupPartition, u64>,
}

impl LagHistory {
    pub fn new(capacity: usize) -> Self {
        LagHistory {
            capacity: capacity.max(1),
            rings: BTreeMap::new(),
            samples: 0,
            last_sampled: BTreeMap::new(),
        }
    }

    /// Adds one sample: the lag of every group partition it could measure.
    pub fn record(&mut self, at_ms: i64, lag: &BTreeMap<GroupPartition, i64>) {
        self.samples += 1;
        for (key, &value) in lag {
            let ring = self.rings.entry(key.clone()).or_default();
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            ring.push_back(LagPoint { at_ms, lag: value });
            self.last_sampled.insert(key.clone(), self.samples);
        }
        let (samples, capacity) = (self.samples, self.capacity as u64);
        let stale: Vec<GroupPartition> = self
            .last_sampled
            .iter()
            .filter(|(_, &last)| samples - last >= capacity)
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            self.rings.remove(&key);
            self.last_sampled.remove(&key);
        }
    }

    /// The history of every partition of `group`, by `(topic, partition)`.
    pub fn group(&self, group: &str) -> BTreeMap<(String, i32), Vec<LagPoint>> {
        self.rings
            .iter()
            .filter(|((g, _, _), _)| g == group)
            .map(|((_, topic, partition), ring)| {
                ((topic.clone(), *partition), ring.iter().copied().collect())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag(entries: &[(&str, i32, i64)]) -> BTreeMap<GroupPartition, i64> {
        entries
            .iter()
            .map(|&(group, partition, lag)| ((group.to_owned(), "t".to_owned(), partition), lag))
            .collect()
    }

    #[test]
    fn rings_are_bounded_and_forget_partitions_no_longer_sampled() {
        let mut history = LagHistory::new(3);
        for at in 0..5 {
            history.record(at, &lag(&[("g", 0, at * 10), ("g", 1, 1)]));
        }
        let g = history.group("g");
        let points: Vec<(i64, i64)> = g[&("t".to_owned(), 0)]
            .iter()
            .map(|p| (p.at_ms, p.lag))
            .collect();
        assert_eq!(
            points,
            [(2, 20), (3, 30), (4, 40)],
            "the oldest points go first"
        );
        assert!(history.group("other").is_empty());

        // Partition 1 stops being sampled: it is kept for less than a ring's worth of samples.
        history.record(5, &lag(&[("g", 0, 0)]));
        history.record(6, &lag(&[("g", 0, 0)]));
        assert!(history.group("g").contains_key(&("t".to_owned(), 1)));
        history.record(7, &lag(&[("g", 0, 0)]));
        assert!(!history.group("g").contains_key(&("t".to_owned(), 1)));
        assert_eq!(history.group("g")[&("t".to_owned(), 0)].len(), 3);
    }
}
