//! The brokers a client is told about: Metadata, DescribeCluster and the KIP-951 hints list live
//! (unfenced) brokers by their address on the listener the client connected to, and name one of them
//! as the "controller" admin clients forward to (KIP-590).

use chronik_metadata::{BrokerId, MetadataImage};

/// The operations every principal may perform on the cluster while there is no authorizer: Kafka's
/// `AclEntry.supportedOperations(CLUSTER)` (CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS,
/// ALTER_CONFIGS, IDEMPOTENT_WRITE) as the `AclOperation` bit field `AuthHelper.authorizedOperations`
/// answers. CREATE_TOKENS and DESCRIBE_TOKENS belong to the USER resource, not the cluster.
#[cfg(test)]
pub const CLUSTER_AUTHORIZED_OPERATIONS: i32 = 8096;

/// A broker's address on one listener, as Metadata, DescribeCluster and the KIP-951 hints list it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEndpoint {
    pub node_id: BrokerId,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// Every unfenced broker with an endpoint on `listener`, by id: what Metadata and DescribeCluster list.
/// Leaders are reported only when they are among these, so every leader named is listed.
pub fn live_brokers(image: &MetadataImage, listener: &str) -> Vec<NodeEndpoint> {
    registered_brokers(image, listener)
        .into_iter()
        .filter(|(_, fenced)| !fenced)
        .map(|(endpoint, _)| endpoint)
        .collect()
}

/// Every registered broker with an endpoint on `listener`, by id, and whether it is fenced: what
/// DescribeCluster lists when asked to include fenced brokers (KIP-1073).
pub fn registered_brokers(image: &MetadataImage, listener: &str) -> Vec<(NodeEndpoint, bool)> {
    image
        .brokers
        .values()
        .filter_map(|b| {
            let endpoint = b.endpoint(Some(listener)).map(|e| NodeEndpoint {
                node_id: b.broker_id,
                host: e.host.clone(),
                port: i32::from(e.port),
                rack: b.rack.clone(),
            })?;
            Some((endpoint, b.fenced))
        })
        .collect()
}

/// The "controller" admin clients send CreateTopics and DeleteTopics to: this broker, which forwards
/// them (KIP-590), or while it is not listed (e.g. not yet unfenced) another listed broker; -1 only when
/// none is listed. It must be listed, or clients cannot find it.
pub fn controller_id(broker_id: BrokerId, brokers: &[NodeEndpoint]) -> BrokerId {
    if brokers.iter().any(|b| b.node_id == broker_id) {
        broker_id
    } else {
        brokers.first().map_or(-1, |b| b.node_id)
    }
}
