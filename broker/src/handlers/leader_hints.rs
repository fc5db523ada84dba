//! KIP-951 leader hints: a Produce (v10+) or Fetch (v12+) partition refused with NOT_LEADER_OR_FOLLOWER
//! (or FENCED_LEADER_EPOCH) carries the partition's current leader and epoch, and the response lists
//! each hinted leader's endpoint once, so the client moves without a Metadata round trip.
//!
//! What must stay true: a hint names only a live (unfenced) leader reachable on the client's listener;
//! otherwise it is `(-1, -1)` with no endpoint, which clients read as "refresh metadata".

use chronik_metadata::{MetadataImage, TopicId};

use super::brokers::NodeEndpoint;

/// The hints of one response, gathered partition by partition.
pub struct LeaderHints<'a> {
    image: &'a MetadataImage,
    listener: &'a str,
    endpoints: Vec<NodeEndpoint>,
}

impl<'a> LeaderHints<'a> {
    pub fn new(image: &'a MetadataImage, listener: &'a str) -> Self {
        Self {
            image,
            listener,
            endpoints: Vec::new(),
        }
    }

    /// The partition's current `(leader id, leader epoch)`, `(-1, -1)` when no live leader is known
    /// on this listener; the leader's endpoint is kept for `endpoints`.
    pub fn current_leader(&mut self, topic_id: TopicId, partition: i32) -> (i32, i32) {
        let Some(p) = self.image.partition(topic_id, partition) else {
            return (-1, -1);
        };
        let Some(broker) = self.image.brokers.get(&p.leader).filter(|b| !b.fenced) else {
            return (-1, -1);
        };
        let Some(endpoint) = broker.endpoint(Some(self.listener)) else {
            return (-1, -1);
        };
        if !self.endpoints.iter().any(|e| e.node_id == p.leader) {
            self.endpoints.push(NodeEndpoint {
                node_id: p.leader,
                host: endpoint.host.clone(),
                port: i32::from(endpoint.port),
                rack: broker.rack.clone(),
            });
        }
        (p.leader, p.leader_epoch)
    }

    /// Every hinted leader's endpoint, once each, in the response's own type.
    pub fn endpoints<T>(self, to_response: impl Fn(NodeEndpoint) -> T) -> Vec<T> {
        self.endpoints.into_iter().map(to_response).collect()
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::handlers::test_support::{broker, topic};

    #[test]
    fn hints_name_live_leaders_once_and_nothing_else() {
        let id = Uuid::from_u128(7);
        let mut records = vec![broker(1, Some("r1"), false), broker(2, None, true)];
        records.extend(topic("t", id, &[&[1, 2], &[1], &[2, 1]]));
        let mut image = MetadataImage::default();
        image.replay_all(1, &records);

        let mut hints = LeaderHints::new(&image, "PLAINTEXT");
        assert_eq!(hints.current_leader(id, 0), (1, 0));
        assert_eq!(hints.current_leader(id, 1), (1, 0));
        // Partition 2's leader is fenced, partition 9 does not exist.
        assert_eq!(hints.current_leader(id, 2), (-1, -1));
        assert_eq!(hints.current_leader(id, 9), (-1, -1));
        let endpoints = hints.endpoints(|e| e);
        assert_eq!(endpoints.len(), 1);
        assert_eq!(endpoints[0].node_id, 1);
        assert_eq!(endpoints[0].rack.as_deref(), Some("r1"));

        let mut other = LeaderHints::new(&image, "NO_SUCH_LISTENER");
        assert_eq!(other.current_leader(id, 0), (-1, -1));
        assert!(other.endpoints(|e| e).is_empty());
    }
}
