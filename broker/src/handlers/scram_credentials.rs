//! DescribeUserScramCredentials (key 50) and AlterUserScramCredentials (key 51), KIP-554: SCRAM
//! credentials live in the metadata log. Describe is answered from this broker's image (Kafka's
//! `ScramImage.describe`); Alter is forwarded to the controller quorum, which derives and keeps the
//! stored and server keys, and is answered once this broker's image holds the change.
//!
//! What must stay true: a describe never shows a salt or a key, only mechanisms and iteration counts;
//! each user named is answered once.

use chronik_metadata::acl::AclOperation;
use std::collections::HashMap;

use chronik_proto::v1 as pb;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use super::admin::{await_local_image, controller_failure, error_message, kafka_code};
use super::{BrokerContext, RequestContext};

/// How long an answered change may wait for the local image: the request carries no timeout.
const ALTER_WAIT_MS: i32 = 5_000;

pub fn handle_describe(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    // Kafka's handleDescribeUserScramCredentialsRequest: DESCRIBE on the cluster.
    if !ctx.authorize_cluster(rc, AclOperation::Describe) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let image = ctx.metadata.current();
    let credential_infos = |user: &str| -> Option<Vec<CredentialInfo>> {
        image.scram_credentials.get(user).map(|credentials| {
            credentials
                .values()
                .map(|c| {
                    CredentialInfo::default()
                        .with_mechanism(c.mechanism.code())
                        .with_iterations(c.iterations)
                })
                .collect()
        })
    };
    let result = |user: &str, code: ResponseError, message: &str| {
        DescribeUserScramCredentialsResult::default()
            .with_user(StrBytes::from_string(user.to_owned()))
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_string(message.to_owned())))
    };
    let results = match request.users.filter(|users| !users.is_empty()) {
        // Every user that has a credential.
        None => image
            .scram_credentials
            .keys()
            .filter_map(|user| {
                credential_infos(user).map(|infos| {
                    DescribeUserScramCredentialsResult::default()
                        .with_user(StrBytes::from_string(user.clone()))
                        .with_credential_infos(infos)
                })
            })
            .collect(),
        Some(users) => {
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for user in &users {
                *counts.entry(&user.name).or_default() += 1;
            }
            let mut answered = std::collections::HashSet::new();
            users
                .iter()
                .filter(|user| answered.insert(&*user.name))
                .map(|user| {
                    if counts[&*user.name] > 1 {
                        return result(
                            &user.name,
                            ResponseError::DuplicateResource,
                            "Cannot describe SCRAM credentials for the same user twice in a \
                             single request",
                        );
                    }
                    match credential_infos(&user.name) {
                        Some(infos) => DescribeUserScramCredentialsResult::default()
                            .with_user(user.name.clone())
                            .with_credential_infos(infos),
                        None => result(
                            &user.name,
                            ResponseError::ResourceNotFound,
                            "Attempt to describe a user credential that does not exist",
                        ),
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

pub async fn handle_alter(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    // Every user the request names, in order of first appearance: each gets one result.
    let mut users: Vec<String> = Vec::new();
    let names = request
        .deletions
        .iter()
        .map(|d| &d.name)
        .chain(request.upsertions.iter().map(|u| &u.name));
    for name in names {
        if !users.iter().any(|u| u == &**name) {
            users.push(name.to_string());
        }
    }
    let call = pb::AlterUserScramCredentialsRequest {
        deletions: request
            .deletions
            .iter()
            .map(|d| pb::ScramCredentialDeletion {
                name: d.name.to_string(),
                mechanism: i32::from(d.mechanism),
            })
            .collect(),
        upsertions: request
            .upsertions
            .iter()
            .map(|u| pb::ScramCredentialUpsertion {
                name: u.name.to_string(),
                mechanism: i32::from(u.mechanism),
                iterations: u.iterations,
                salt: u.salt.to_vec(),
                salted_password: u.salted_password.to_vec(),
            })
            .collect(),
    };
    let mut answers: HashMap<String, (i16, String)> = HashMap::new();
    // Kafka's handleAlterUserScramCredentialsRequest: ALTER on the cluster, else every user refused.
    let authorized = ctx.authorize_cluster(rc, AclOperation::Alter);
    let reply = if authorized {
        Some(ctx.controller.alter_user_scram_credentials(call).await)
    } else {
        for user in &users {
            answers.insert(
                user.clone(),
                (
                    ResponseError::ClusterAuthorizationFailed.code(),
                    String::new(),
                ),
            );
        }
        None
    };
    match reply {
        None => {}
        Some(Ok(reply)) => {
            for result in reply.results {
                answers.insert(
                    result.user,
                    (kafka_code(result.error_code), result.error_message),
                );
            }
            await_local_image(
                ctx,
                reply.metadata_offset,
                ALTER_WAIT_MS,
                "SCRAM credentials",
            )
            .await;
        }
        Some(Err(e)) => {
            debug!(error = %e, version = rc.version, "AlterUserScramCredentials not forwarded");
            let failure = controller_failure(&e);
            for user in &users {
                answers.insert(user.clone(), failure.clone());
            }
        }
    }
    let results = users
        .into_iter()
        .map(|user| {
            let (code, message) = answers.remove(&user).unwrap_or_else(|| {
                (
                    ResponseError::UnknownServerError.code(),
                    "the controller did not answer for this user".to_owned(),
                )
            });
            AlterUserScramCredentialsResult::default()
                .with_user(StrBytes::from_string(user))
                .with_error_code(code)
                .with_error_message(error_message(code, message))
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}

#[cfg(test)]
mod tests {
    use chronik_metadata::scram::{ScramCredential, ScramMechanism};
    use chronik_metadata::Record;
    use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;

    use super::*;
    use crate::handlers::test_support::{assert_encodes, cluster, TestBroker};

    fn user(name: &str) -> UserName {
        UserName::default().with_name(StrBytes::from_string(name.to_owned()))
    }

    /// All users, named users, a duplicate and an unknown one; never a salt or key.
    #[tokio::test]
    async fn describe_answers_from_the_image() {
        let mut records = cluster().records;
        for (name, mechanism) in [
            ("alice", ScramMechanism::Sha256),
            ("alice", ScramMechanism::Sha512),
            ("bob", ScramMechanism::Sha512),
        ] {
            records.push(Record::UserScramCredential(ScramCredential {
                user: name.into(),
                mechanism,
                salt: b"s".to_vec(),
                stored_key: b"k".to_vec(),
                server_key: b"k".to_vec(),
                iterations: 4096,
            }));
        }
        let broker = TestBroker::new(1, &records);
        let rc = broker.rc(0, "PLAINTEXT");
        let all = handle_describe(
            &broker.ctx,
            &rc,
            DescribeUserScramCredentialsRequest::default(),
        );
        let summary: Vec<(String, Vec<i8>)> = all
            .results
            .iter()
            .map(|r| {
                (
                    r.user.to_string(),
                    r.credential_infos.iter().map(|c| c.mechanism).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![("alice".into(), vec![1, 2]), ("bob".into(), vec![2])]
        );
        assert_encodes(&all, 0);

        let named = handle_describe(
            &broker.ctx,
            &rc,
            DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
                user("bob"),
                user("ghost"),
                user("alice"),
                user("alice"),
            ])),
        );
        let codes: Vec<(String, i16)> = named
            .results
            .iter()
            .map(|r| (r.user.to_string(), r.error_code))
            .collect();
        assert_eq!(
            codes,
            vec![
                ("bob".into(), 0),
                ("ghost".into(), ResponseError::ResourceNotFound.code()),
                ("alice".into(), ResponseError::DuplicateResource.code()),
            ]
        );
    }
}
