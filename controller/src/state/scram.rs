//! SCRAM credentials (Kafka's `ScramControlManager`, KIP-554): AlterUserScramCredentials upserts and
//! deletes a user's credential per mechanism. The controller derives the stored and server keys from
//! the salted password the client sent and commits only those.
//!
//! What must stay true: the answer has one result per user, in order of first appearance, and a user
//! with any refused operation changes nothing (Kafka checks every operation of a user before applying
//! any); a user's credential for one mechanism is named at most once per request.

use std::collections::{BTreeMap, HashMap};

use chronik_metadata::scram::{ScramCredential, ScramMechanism};

use crate::error::{ApiError, ResponseError};

use super::image::MetadataImage;
use super::records::Record;
use super::ControllerResult;

/// One requested change: `(user, mechanism code)` and, for an upsertion, its iterations, salt and
/// salted password.
#[derive(Clone, Debug)]
pub struct ScramChange {
    pub user: String,
    pub mechanism: i8,
    pub upsert: Option<Upsertion>,
}

#[derive(Clone, Debug)]
pub struct Upsertion {
    pub iterations: i32,
    pub salt: Vec<u8>,
    pub salted_password: Vec<u8>,
}

/// Per user in order of first appearance: done, or why not.
pub type AlterScramReply = Vec<(String, Result<(), ApiError>)>;

pub fn alter_scram_credentials(
    image: &MetadataImage,
    changes: &[ScramChange],
) -> ControllerResult<AlterScramReply> {
    let mut users: Vec<&str> = Vec::new();
    let mut named: HashMap<(&str, i8), usize> = HashMap::new();
    for change in changes {
        if !users.contains(&change.user.as_str()) {
            users.push(&change.user);
        }
        *named.entry((&change.user, change.mechanism)).or_default() += 1;
    }
    let mut records = Vec::new();
    let mut reply = Vec::new();
    for user in users {
        let mine: Vec<&ScramChange> = changes.iter().filter(|c| c.user == user).collect();
        let checked: Result<Vec<Record>, ApiError> = mine
            .iter()
            .map(|change| {
                if named[&(user, change.mechanism)] > 1 {
                    return Err(ApiError::new(
                        ResponseError::DuplicateResource,
                        "A user credential cannot be altered twice in the same request",
                    ));
                }
                change_record(image, change)
            })
            .collect();
        match checked {
            Ok(mut user_records) => {
                records.append(&mut user_records);
                reply.push((user.to_owned(), Ok(())));
            }
            Err(e) => reply.push((user.to_owned(), Err(e))),
        }
    }
    ControllerResult::new(records, reply)
}

fn change_record(image: &MetadataImage, change: &ScramChange) -> Result<Record, ApiError> {
    if change.user.is_empty() {
        return Err(ApiError::new(
            ResponseError::UnacceptableCredential,
            "Username must not be empty",
        ));
    }
    let Some(mechanism) = ScramMechanism::from_code(change.mechanism) else {
        return Err(ApiError::new(
            ResponseError::UnsupportedSaslMechanism,
            "Unknown SCRAM mechanism",
        ));
    };
    let Some(upsert) = &change.upsert else {
        let exists = image
            .scram_credentials
            .get(&change.user)
            .is_some_and(|c| c.contains_key(&mechanism));
        if !exists {
            return Err(ApiError::new(
                ResponseError::ResourceNotFound,
                "Attempt to delete a user credential that does not exist",
            ));
        }
        return Ok(Record::RemoveUserScramCredential {
            user: change.user.clone(),
            mechanism,
        });
    };
    if upsert.iterations < ScramMechanism::MIN_ITERATIONS {
        return Err(ApiError::new(
            ResponseError::UnacceptableCredential,
            format!(
                "Too few iterations: {} (at least {})",
                upsert.iterations,
                ScramMechanism::MIN_ITERATIONS
            ),
        ));
    }
    if upsert.iterations > ScramMechanism::MAX_ITERATIONS {
        return Err(ApiError::new(
            ResponseError::UnacceptableCredential,
            format!(
                "Too many iterations: {} (at most {})",
                upsert.iterations,
                ScramMechanism::MAX_ITERATIONS
            ),
        ));
    }
    if upsert.salt.is_empty() || upsert.salted_password.is_empty() {
        return Err(ApiError::new(
            ResponseError::UnacceptableCredential,
            "The salt and the salted password must not be empty",
        ));
    }
    let (stored_key, server_key) = mechanism.derive_keys(&upsert.salted_password);
    Ok(Record::UserScramCredential(ScramCredential {
        user: change.user.clone(),
        mechanism,
        salt: upsert.salt.clone(),
        stored_key,
        server_key,
        iterations: upsert.iterations,
    }))
}

/// The mechanisms and iteration counts each user has (DescribeUserScramCredentials' answer).
pub fn describe(image: &MetadataImage) -> BTreeMap<&str, Vec<(ScramMechanism, i32)>> {
    image
        .scram_credentials
        .iter()
        .map(|(user, credentials)| {
            (
                user.as_str(),
                credentials
                    .values()
                    .map(|c| (c.mechanism, c.iterations))
                    .collect(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::cluster::tests::{cluster, commit};

    fn upsert(user: &str, mechanism: i8, iterations: i32) -> ScramChange {
        ScramChange {
            user: user.into(),
            mechanism,
            upsert: Some(Upsertion {
                iterations,
                salt: b"salt".to_vec(),
                salted_password: b"salted".to_vec(),
            }),
        }
    }

    fn delete(user: &str, mechanism: i8) -> ScramChange {
        ScramChange {
            user: user.into(),
            mechanism,
            upsert: None,
        }
    }

    fn codes(reply: &AlterScramReply) -> Vec<(&str, Option<ResponseError>)> {
        reply
            .iter()
            .map(|(u, r)| (u.as_str(), r.as_ref().err().map(|e| e.code)))
            .collect()
    }

    #[test]
    fn upserts_keep_derived_keys_and_deletes_remove_them() {
        let mut image = cluster(&[1], 1, 1);
        let (_, reply) = commit(&mut image, |image| {
            alter_scram_credentials(image, &[upsert("alice", 1, 4096), upsert("alice", 2, 8192)])
        });
        assert_eq!(codes(&reply), vec![("alice", None)]);
        let sha256 = &image.scram_credentials["alice"][&ScramMechanism::Sha256];
        assert_eq!(sha256.iterations, 4096);
        assert_eq!(
            (sha256.stored_key.clone(), sha256.server_key.clone()),
            ScramMechanism::Sha256.derive_keys(b"salted")
        );
        assert_eq!(
            describe(&image)["alice"],
            vec![
                (ScramMechanism::Sha256, 4096),
                (ScramMechanism::Sha512, 8192)
            ]
        );

        // A snapshot rebuilds them.
        let mut rebuilt = MetadataImage::default();
        for record in image.to_records() {
            rebuilt.replay(1, &record);
        }
        assert_eq!(rebuilt.scram_credentials, image.scram_credentials);

        commit(&mut image, |image| {
            alter_scram_credentials(image, &[delete("alice", 1), delete("alice", 2)])
        });
        assert!(image.scram_credentials.is_empty());
    }

    /// Kafka's refusals, each failing only its own user, and a user with one bad operation keeps
    /// its good one unapplied.
    #[test]
    fn a_refused_operation_fails_its_user_only() {
        let mut image = cluster(&[1], 1, 1);
        let result = alter_scram_credentials(
            &image,
            &[
                upsert("few", 1, 4095),
                upsert("many", 1, 16385),
                upsert("", 1, 4096),
                upsert("mech", 3, 4096),
                delete("ghost", 1),
                upsert("twice", 1, 4096),
                delete("twice", 1),
                upsert("mixed", 1, 4096),
                upsert("mixed", 2, 1),
                upsert("fine", 2, 4096),
            ],
        );
        assert_eq!(
            codes(&result.reply),
            vec![
                ("few", Some(ResponseError::UnacceptableCredential)),
                ("many", Some(ResponseError::UnacceptableCredential)),
                ("", Some(ResponseError::UnacceptableCredential)),
                ("mech", Some(ResponseError::UnsupportedSaslMechanism)),
                ("ghost", Some(ResponseError::ResourceNotFound)),
                ("twice", Some(ResponseError::DuplicateResource)),
                ("mixed", Some(ResponseError::UnacceptableCredential)),
                ("fine", None),
            ]
        );
        assert_eq!(result.records.len(), 1);
        commit(&mut image, |_| result);
        assert_eq!(
            image.scram_credentials.keys().collect::<Vec<_>>(),
            vec!["fine"]
        );
    }
}
