//! CreatePartitions (key 37): forwarded to the controller quorum, which checks the new count, places
//! the new partitions as at creation (or as assigned) and commits them. The answer is sent once this
//! broker's own image has them (bounded by the request's `timeout_ms`), so a producer that refreshes
//! its metadata right after finds every new partition led.
//!
//! What must stay true: each distinct requested topic is answered exactly once; a topic named twice
//! is refused (Kafka's `KafkaApis.handleCreatePartitionsRequest`: "Duplicate topic in request.") and
//! not forwarded.

use chronik_metadata::acl::AclOperation;
use std::collections::HashMap;

use chronik_proto::v1 as pb;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use super::admin::{await_local_image, controller_failure, error_message, kafka_code};
use super::{BrokerContext, RequestContext};

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for topic in &request.topics {
        *counts.entry(&topic.name.0).or_default() += 1;
    }
    // One slot per distinct name, in request order; `None` until the controller answers it.
    let mut answers: Vec<(String, Option<(i16, String)>)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut forward = Vec::new();
    for topic in &request.topics {
        if !seen.insert(&*topic.name.0) {
            continue;
        }
        let name = topic.name.0.to_string();
        if !ctx.authorize_topic(rc, AclOperation::Alter, &name) {
            answers.push((
                name,
                Some((
                    ResponseError::TopicAuthorizationFailed.code(),
                    String::new(),
                )),
            ));
            continue;
        }
        if counts[&*topic.name.0] > 1 {
            answers.push((
                name,
                Some((
                    ResponseError::InvalidRequest.code(),
                    "Duplicate topic in request.".to_owned(),
                )),
            ));
            continue;
        }
        forward.push(pb::CreatePartitionsTopic {
            name: name.clone(),
            count: topic.count,
            assignments: topic
                .assignments
                .iter()
                .flatten()
                .map(|a| pb::BrokerList {
                    brokers: a.broker_ids.iter().map(|b| b.0).collect(),
                })
                .collect(),
        });
        answers.push((name, None));
    }

    let mut results: HashMap<String, (i16, String)> = HashMap::new();
    if !forward.is_empty() {
        let call = pb::CreatePartitionsRequest {
            topics: forward,
            validate_only: request.validate_only,
        };
        match ctx.controller.create_partitions(call).await {
            Ok(reply) => {
                for result in reply.results {
                    let answer = (kafka_code(result.error_code), result.error_message);
                    results.insert(result.name, answer);
                }
                await_local_image(
                    ctx,
                    reply.metadata_offset,
                    request.timeout_ms,
                    "new partitions",
                )
                .await;
            }
            Err(e) => {
                debug!(error = %e, version = rc.version, "CreatePartitions not forwarded");
                let failure = controller_failure(&e);
                for (_, answer) in answers.iter_mut().filter(|(_, a)| a.is_none()) {
                    *answer = Some(failure.clone());
                }
            }
        }
    }

    let topics = answers
        .into_iter()
        .map(|(name, answer)| {
            let (code, message) = answer.or_else(|| results.remove(&name)).unwrap_or_else(|| {
                (
                    ResponseError::UnknownServerError.code(),
                    "the controller did not answer for this topic".to_owned(),
                )
            });
            CreatePartitionsTopicResult::default()
                .with_name(StrBytes::from_string(name).into())
                .with_error_code(code)
                .with_error_message(error_message(code, message))
        })
        .collect();
    CreatePartitionsResponse::default().with_results(topics)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    use kafka_protocol::messages::TopicName;

    use super::*;
    use crate::handlers::test_support::{assert_encodes, cluster, TestBroker};

    fn topic(name: &str, count: i32) -> CreatePartitionsTopic {
        CreatePartitionsTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_owned())))
            .with_count(count)
    }

    /// A duplicate is refused without asking the controller; the other topic gets the controller's
    /// answer (here: it cannot be reached), each topic exactly once.
    #[tokio::test]
    async fn a_topic_named_twice_is_refused_and_each_topic_answered_once() {
        let broker = TestBroker::new(1, &cluster().records);
        let request = CreatePartitionsRequest::default()
            .with_topics(vec![topic("a", 2), topic("b", 3), topic("a", 4)])
            .with_timeout_ms(100);
        let response = handle(&broker.ctx, &broker.rc(3, "PLAINTEXT"), request).await;
        let answers: Vec<(&str, i16)> = response
            .results
            .iter()
            .map(|r| (&*r.name.0, r.error_code))
            .collect();
        let invalid = ResponseError::InvalidRequest.code();
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0], ("a", invalid));
        assert_eq!(answers[1].0, "b");
        assert_ne!(answers[1].1, 0);
        assert_encodes(&response, 3);
    }
}
