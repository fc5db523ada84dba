//! DeleteTopics (key 20): forwarded to the controller quorum, by name (v1–5 `topic_names`, v6 `topics`
//! with a name) or by topic id (v6); answered once this broker's image no longer has the deleted topics
//! (bounded by the request's `timeout_ms`), so a re-create or a Metadata right after it sees the change.
//!
//! What must stay true:
//! - Each requested name or id is answered once, with the name it was asked by (librdkafka matches
//!   answers to requests by name and refuses unknown or repeated ones).
//! - A failed controller call is never reported as a deletion: see `admin::controller_failure`.

use chronik_metadata::acl::AclOperation;
use std::collections::HashSet;

use chronik_metadata::convert::{topic_id_from_bytes, topic_id_to_bytes};
use chronik_proto::v1 as pb;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;
use uuid::Uuid;

use super::admin::{controller_failure, error_message, kafka_code, propagation_wait};
use super::{BrokerContext, RequestContext};

/// One requested deletion.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Name(String),
    Id(Uuid),
    /// Refused before asking the controller.
    Invalid {
        name: Option<String>,
        id: Uuid,
        message: &'static str,
    },
    /// Without DELETE on the topic (TOPIC_AUTHORIZATION_FAILED).
    Denied {
        name: Option<String>,
        id: Uuid,
    },
}

/// The deletions asked for, in request order, each name and id once.
fn targets(request: &DeleteTopicsRequest, version: i16) -> Vec<Target> {
    let mut names = HashSet::new();
    let mut ids = HashSet::new();
    let mut targets = Vec::new();
    let mut by_name = |name: String, targets: &mut Vec<Target>| {
        if names.insert(name.clone()) {
            targets.push(Target::Name(name));
        }
    };
    if version < 6 {
        for name in &request.topic_names {
            by_name(name.0.to_string(), &mut targets);
        }
        return targets;
    }
    for topic in &request.topics {
        let name = topic.name.as_ref().map(|n| n.0.to_string());
        match (name, topic.topic_id.is_nil()) {
            (Some(name), true) => by_name(name, &mut targets),
            (None, false) => {
                if ids.insert(topic.topic_id) {
                    targets.push(Target::Id(topic.topic_id));
                }
            }
            (name, true) => targets.push(Target::Invalid {
                name,
                id: Uuid::nil(),
                message: "Neither topic name nor id were specified.",
            }),
            (name, false) => targets.push(Target::Invalid {
                name,
                id: topic.topic_id,
                message: "You may not specify both topic name and topic id.",
            }),
        }
    }
    targets
}

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let image = ctx.metadata.current();
    let targets: Vec<Target> = targets(&request, rc.version)
        .into_iter()
        .map(|target| match target {
            Target::Name(name) if !ctx.authorize_topic(rc, AclOperation::Delete, &name) => {
                Target::Denied {
                    name: Some(name),
                    id: Uuid::nil(),
                }
            }
            Target::Id(id)
                if image
                    .topics
                    .get(&id)
                    .is_some_and(|t| !ctx.authorize_topic(rc, AclOperation::Delete, &t.name)) =>
            {
                Target::Denied { name: None, id }
            }
            other => other,
        })
        .collect();
    // The controller answers names first, then ids, each in the order sent.
    let names: Vec<String> = targets
        .iter()
        .filter_map(|t| match t {
            Target::Name(name) => Some(name.clone()),
            _ => None,
        })
        .collect();
    let ids: Vec<Uuid> = targets
        .iter()
        .filter_map(|t| match t {
            Target::Id(id) => Some(*id),
            _ => None,
        })
        .collect();
    let expected = names.len() + ids.len();

    let mut by_name = Vec::new();
    let mut by_id = Vec::new();
    let mut failure = None;
    if expected > 0 {
        let call = pb::DeleteTopicsRequest {
            names,
            topic_ids: ids.iter().map(|id| topic_id_to_bytes(*id)).collect(),
        };
        match ctx.controller.delete_topics(call).await {
            Ok(reply) if reply.topics.len() == expected => {
                let deleted = reply.topics.iter().any(|t| t.error_code == 0);
                by_name = reply.topics;
                by_id = by_name.split_off(expected - ids.len());
                if deleted {
                    let wait = propagation_wait(request.timeout_ms);
                    if let Err(e) = ctx
                        .metadata
                        .wait_for_offset(reply.metadata_offset, wait)
                        .await
                    {
                        debug!(error = %e, "deleted topics still in the local image");
                    }
                }
            }
            Ok(reply) => {
                failure = Some((
                    ResponseError::UnknownServerError.code(),
                    format!(
                        "the controller answered {} results for {expected} topics",
                        reply.topics.len()
                    ),
                ));
            }
            Err(e) => {
                debug!(error = %e, "DeleteTopics not forwarded");
                failure = Some(controller_failure(&e));
            }
        }
    }

    let mut by_name = by_name.into_iter();
    let mut by_id = by_id.into_iter();
    let responses = targets
        .into_iter()
        .map(|target| match target {
            Target::Denied { name, id } => result(
                name,
                id,
                ResponseError::TopicAuthorizationFailed.code(),
                String::new(),
            ),
            Target::Invalid { name, id, message } => result(
                name,
                id,
                ResponseError::InvalidRequest.code(),
                message.into(),
            ),
            Target::Name(name) => match (&failure, by_name.next()) {
                (None, Some(r)) => {
                    let id = topic_id_from_bytes(&r.topic_id).unwrap_or(Uuid::nil());
                    result(Some(name), id, kafka_code(r.error_code), r.error_message)
                }
                (Some((code, message)), _) => {
                    result(Some(name), Uuid::nil(), *code, message.clone())
                }
                (None, None) => unreachable_result(Some(name), Uuid::nil()),
            },
            Target::Id(id) => match (&failure, by_id.next()) {
                (None, Some(r)) => {
                    // Kafka names the topic it deleted by id; an unknown id has no name.
                    let name = (!r.name.is_empty()).then_some(r.name);
                    result(name, id, kafka_code(r.error_code), r.error_message)
                }
                (Some((code, message)), _) => result(None, id, *code, message.clone()),
                (None, None) => unreachable_result(None, id),
            },
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

fn result(name: Option<String>, id: Uuid, code: i16, message: String) -> DeletableTopicResult {
    DeletableTopicResult::default()
        .with_name(name.map(|n| TopicName(StrBytes::from_string(n))))
        .with_topic_id(id)
        .with_error_code(code)
        .with_error_message(error_message(code, message))
}

/// Cannot happen (the controller's answer was counted); answered as a server error all the same.
fn unreachable_result(name: Option<String>, id: Uuid) -> DeletableTopicResult {
    let message = "the controller did not answer for this topic".to_owned();
    result(name, id, ResponseError::UnknownServerError.code(), message)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;

    use super::*;
    use crate::handlers::create_topics::tests::with_fake_controller;
    use crate::handlers::test_support::{assert_encodes, cluster, TestBroker};

    fn topic_name(name: &str) -> TopicName {
        TopicName(StrBytes::from_string(name.to_owned()))
    }

    async fn delete(
        broker: &TestBroker,
        version: i16,
        request: DeleteTopicsRequest,
    ) -> DeleteTopicsResponse {
        let response = handle(&broker.ctx, &broker.rc(version, "PLAINTEXT"), request).await;
        assert_encodes(&response, version);
        response
    }

    fn codes(response: &DeleteTopicsResponse) -> Vec<(Option<String>, i16)> {
        response
            .responses
            .iter()
            .map(|r| (r.name.as_ref().map(|n| n.0.to_string()), r.error_code))
            .collect()
    }

    #[tokio::test]
    async fn v1_to_v5_delete_by_name_and_the_image_follows() {
        let c = cluster();
        let (broker, _stop) = with_fake_controller(1, &c.records, true).await;
        let request = DeleteTopicsRequest::default()
            .with_timeout_ms(5_000)
            .with_topic_names(vec![
                topic_name("orders"),
                topic_name("ghost"),
                topic_name("orders"),
            ]);
        let response = delete(&broker, 4, request).await;
        assert_eq!(
            codes(&response),
            vec![
                (Some("orders".into()), 0),
                (
                    Some("ghost".into()),
                    ResponseError::UnknownTopicOrPartition.code()
                ),
            ]
        );
        assert!(broker
            .ctx
            .metadata
            .current()
            .topic_by_name("orders")
            .is_none());
        assert!(broker
            .ctx
            .metadata
            .current()
            .topic_by_name("audit")
            .is_some());
    }

    #[tokio::test]
    async fn v6_deletes_by_name_or_id_and_refuses_ambiguous_entries() {
        let c = cluster();
        let (broker, _stop) = with_fake_controller(1, &c.records, true).await;
        let unknown = Uuid::new_v4();
        let request = DeleteTopicsRequest::default().with_topics(vec![
            DeleteTopicState::default()
                .with_name(None)
                .with_topic_id(c.audit),
            DeleteTopicState::default().with_name(Some(topic_name("orders"))),
            DeleteTopicState::default()
                .with_name(None)
                .with_topic_id(unknown),
            DeleteTopicState::default()
                .with_name(Some(topic_name("orders")))
                .with_topic_id(c.orders),
            DeleteTopicState::default().with_name(None),
        ]);
        let response = delete(&broker, 6, request).await;
        let r = &response.responses;
        assert_eq!(r.len(), 5);
        assert_eq!(
            (
                r[0].name.as_deref().map(|n| n.to_string()),
                r[0].topic_id,
                r[0].error_code
            ),
            (Some("audit".into()), c.audit, 0)
        );
        assert_eq!((r[1].topic_id, r[1].error_code), (c.orders, 0));
        assert_eq!((r[2].name.clone(), r[2].topic_id), (None, unknown));
        assert_eq!(r[2].error_code, ResponseError::UnknownTopicId.code());
        assert!(r[2].error_message.is_some());
        assert_eq!(r[3].error_code, ResponseError::InvalidRequest.code());
        assert_eq!(r[4].error_code, ResponseError::InvalidRequest.code());
        let image = broker.ctx.metadata.current();
        assert!(image.topic_by_name("audit").is_none() && image.topic_by_name("orders").is_none());
    }

    #[tokio::test]
    async fn an_unreachable_controller_deletes_nothing() {
        let c = cluster();
        let broker = TestBroker::new(1, &c.records);
        let request = DeleteTopicsRequest::default()
            .with_topics(vec![DeleteTopicState::default().with_topic_id(c.orders)]);
        let response = delete(&broker, 6, request).await;
        assert_eq!(
            response.responses[0].error_code,
            ResponseError::NotController.code()
        );
        assert_eq!(response.responses[0].topic_id, c.orders);
    }
}
