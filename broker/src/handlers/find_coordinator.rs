//! FindCoordinator (key 10): the broker leading a group's offsets-topic partition (key type 0), or a
//! transactional id's `__transaction_state` partition (key type 1), on the listener the client
//! connected to. The first lookup creates the topic (COORDINATOR_NOT_AVAILABLE until it has leaders;
//! clients retry). v0–3 ask for one key; v4+ for a batch. Groups need DESCRIBE on the group,
//! transactional ids DESCRIBE on the id, as in Kafka. The API stays advertised from v0, which
//! librdkafka before 2.11.1 needs for groups and for LZ4 (its #5130).

use chronik_metadata::acl::AclOperation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{BrokerContext, RequestContext};

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let keys = if rc.version >= 4 {
        request.coordinator_keys
    } else {
        vec![request.key]
    };
    let mut coordinators = Vec::with_capacity(keys.len());
    for key in keys {
        let found = match request.key_type {
            KEY_TYPE_GROUP if !ctx.authorize_group(rc, AclOperation::Describe, &key) => Err((
                ResponseError::GroupAuthorizationFailed,
                "not authorized to describe the group",
            )),
            KEY_TYPE_GROUP => ctx.groups.find_coordinator(&key, rc.listener).await,
            KEY_TYPE_TRANSACTION
                if !ctx.authorize_transactional_id(rc, AclOperation::Describe, &key) =>
            {
                Err((
                    ResponseError::TransactionalIdAuthorizationFailed,
                    "not authorized to describe the transactional id",
                ))
            }
            KEY_TYPE_TRANSACTION => ctx.txns.find_coordinator(&key, rc.listener).await,
            _ => Err((
                ResponseError::InvalidRequest,
                "unknown coordinator key type",
            )),
        };
        let coordinator = Coordinator::default().with_key(key);
        coordinators.push(match found {
            Ok(endpoint) => coordinator
                .with_node_id(BrokerId(endpoint.node_id))
                .with_host(StrBytes::from_string(endpoint.host))
                .with_port(endpoint.port),
            Err((error, message)) => coordinator
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_static_str(message))),
        });
    }
    if rc.version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = coordinators.pop().unwrap_or_default();
    let response = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if rc.version >= 1 {
        response.with_error_message(c.error_message)
    } else {
        response
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic,
    };
    use kafka_protocol::messages::{GroupId, JoinGroupRequest, OffsetFetchRequest, TopicName};
    use uuid::Uuid;

    use super::*;
    use crate::group::OFFSETS_TOPIC;
    use crate::handlers::test_support::{broker, topic, TestBroker};
    use crate::handlers::{join_group, offset_fetch};

    fn find(key: &str) -> FindCoordinatorRequest {
        FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(key.into()))
            .with_coordinator_keys(vec![StrBytes::from_string(key.into())])
    }

    fn join(group: &str) -> JoinGroupRequest {
        JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default().with_name(StrBytes::from_static_str("range"))
            ])
    }

    #[tokio::test]
    async fn without_the_offsets_topic_nobody_coordinates() {
        let b = TestBroker::new(1, &[broker(1, None, false)]);
        let v0 = handle(&b.ctx, &b.rc(0, "PLAINTEXT"), find("g")).await;
        assert_eq!(v0.error_code, ResponseError::CoordinatorNotAvailable.code());
        assert_eq!(v0.node_id, BrokerId(-1));
        let v4 = handle(&b.ctx, &b.rc(4, "PLAINTEXT"), find("g")).await;
        assert_eq!(v4.coordinators.len(), 1);
        assert_eq!(
            v4.coordinators[0].error_code,
            ResponseError::CoordinatorNotAvailable.code()
        );
        assert!(v4.coordinators[0].error_message.is_some());

        let joined = join_group::handle(&b.ctx, &b.rc(5, "PLAINTEXT"), join("g")).await;
        assert_eq!(joined.error_code, ResponseError::NotCoordinator.code());
        let fetched = offset_fetch::handle(
            &b.ctx,
            &b.rc(1, "PLAINTEXT"),
            OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partition_indexes(vec![0])])),
        );
        // v1 has no top-level error: the partition carries it.
        let p = &fetched.topics[0].partitions[0];
        assert_eq!(
            (p.error_code, p.committed_offset),
            (ResponseError::NotCoordinator.code(), -1)
        );
        let batched = offset_fetch::handle(
            &b.ctx,
            &b.rc(8, "PLAINTEXT"),
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))]),
        );
        assert_eq!(
            batched.groups[0].error_code,
            ResponseError::NotCoordinator.code()
        );
    }

    #[tokio::test]
    async fn the_coordinator_is_the_offsets_partition_leader_on_the_clients_listener() {
        let mut records = vec![broker(1, None, false), broker(2, None, false)];
        records.extend(topic(OFFSETS_TOPIC, Uuid::new_v4(), &[&[2, 1]]));
        let b = TestBroker::new(1, &records);
        let v3 = handle(&b.ctx, &b.rc(3, "PLAINTEXT"), find("g")).await;
        assert_eq!((v3.error_code, v3.node_id), (0, BrokerId(2)));
        assert_eq!((v3.host.as_str(), v3.port), ("broker2.example", 9092));
        let other = handle(&b.ctx, &b.rc(3, "OTHER"), find("g")).await;
        assert_eq!(
            other.error_code,
            ResponseError::CoordinatorNotAvailable.code()
        );
        let empty = handle(&b.ctx, &b.rc(4, "PLAINTEXT"), find("")).await;
        assert_eq!(
            empty.coordinators[0].error_code,
            ResponseError::InvalidRequest.code()
        );
        // Without the transaction state topic nobody coordinates transactions yet (and the test
        // broker's controller is unreachable, so the topic is not created).
        let transaction = handle(
            &b.ctx,
            &b.rc(4, "PLAINTEXT"),
            find("tx").with_key_type(KEY_TYPE_TRANSACTION),
        )
        .await;
        assert_eq!(
            transaction.coordinators[0].error_code,
            ResponseError::CoordinatorNotAvailable.code()
        );
        // Broker 1 does not lead the partition: not the coordinator.
        let joined = join_group::handle(&b.ctx, &b.rc(5, "PLAINTEXT"), join("g")).await;
        assert_eq!(joined.error_code, ResponseError::NotCoordinator.code());
    }

    #[tokio::test]
    async fn a_transactional_id_is_coordinated_by_its_state_partitions_leader() {
        use crate::group::partition_for;
        use crate::txn::TRANSACTION_STATE_TOPIC;
        let mut records = vec![broker(1, None, false), broker(2, None, false)];
        // Three partitions: 0 and 2 led by broker 1, partition 1 by broker 2.
        records.extend(topic(
            TRANSACTION_STATE_TOPIC,
            Uuid::new_v4(),
            &[&[1, 2], &[2, 1], &[1, 2]],
        ));
        let b = TestBroker::new(1, &records);
        // Kafka's hash puts these in partitions 0, 1, 2 and 1 (Java's String.hashCode).
        let ids = ["tx-a", "tx-b", "orders-writer", "😀"];
        assert_eq!(ids.map(|id| partition_for(id, 3)), [0, 1, 2, 1]);
        for id in ids {
            let expected = if partition_for(id, 3) == 1 { 2 } else { 1 };
            for version in [1, 4] {
                let r = handle(
                    &b.ctx,
                    &b.rc(version, "PLAINTEXT"),
                    find(id).with_key_type(KEY_TYPE_TRANSACTION),
                )
                .await;
                let (code, node) = if version >= 4 {
                    (r.coordinators[0].error_code, r.coordinators[0].node_id)
                } else {
                    (r.error_code, r.node_id)
                };
                assert_eq!((code, node), (0, BrokerId(expected)), "{id} v{version}");
            }
        }
        let empty = handle(
            &b.ctx,
            &b.rc(4, "PLAINTEXT"),
            find("").with_key_type(KEY_TYPE_TRANSACTION),
        )
        .await;
        assert_eq!(
            empty.coordinators[0].error_code,
            ResponseError::InvalidRequest.code()
        );
    }

    #[tokio::test]
    async fn a_partition_still_loading_answers_load_in_progress() {
        let mut records = vec![broker(1, None, false)];
        records.extend(topic(OFFSETS_TOPIC, Uuid::new_v4(), &[&[1]]));
        let b = TestBroker::new(1, &records);
        // The replica manager never hosts the partition here, so the load never finishes.
        tokio::spawn(b.ctx.groups.clone().run());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let joined = join_group::handle(&b.ctx, &b.rc(5, "PLAINTEXT"), join("g")).await;
            if joined.error_code == ResponseError::CoordinatorLoadInProgress.code() {
                break;
            }
            assert_eq!(joined.error_code, ResponseError::NotCoordinator.code());
            assert!(tokio::time::Instant::now() < deadline, "never loading");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
