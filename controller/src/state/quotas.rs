//! Client quotas (Kafka's `ClientQuotaControlManager`, KIP-546): AlterClientQuotas sets and removes
//! quotas of users and client ids.
//!
//! What must stay true: the answer has one result per entry, in request order; an entry with a
//! refused entity or operation changes nothing (Kafka validates an entity's operations before writing
//! any); an entity is altered at most once per request; removing a quota that is not set succeeds and
//! writes nothing.

use std::collections::{BTreeMap, HashSet};

use chronik_metadata::quotas::{self, QuotaEntity};

use crate::error::{ApiError, ResponseError};

use super::image::MetadataImage;
use super::records::Record;
use super::ControllerResult;

/// One entry of the request: the entity as sent, and its operations as (key, new value or `None` to
/// remove).
#[derive(Clone, Debug)]
pub struct QuotaAlteration {
    pub entity: Vec<(String, Option<String>)>,
    pub ops: Vec<(String, Option<f64>)>,
}

/// Per entry, in request order: done (or would be, when validating only), or why not.
pub type AlterQuotasReply = Vec<Result<(), ApiError>>;

pub fn alter_client_quotas(
    image: &MetadataImage,
    alterations: &[QuotaAlteration],
    validate_only: bool,
) -> ControllerResult<AlterQuotasReply> {
    let mut seen = HashSet::new();
    let mut records = Vec::new();
    let mut reply = Vec::new();
    for alteration in alterations {
        let checked = QuotaEntity::new(alteration.entity.clone())
            .map_err(invalid)
            .and_then(|entity| {
                if !seen.insert(entity.clone()) {
                    return Err(invalid(
                        "The entity is altered more than once in the request".to_owned(),
                    ));
                }
                entity_records(image, entity, &alteration.ops)
            });
        match checked {
            Ok(mut entity_records) => {
                records.append(&mut entity_records);
                reply.push(Ok(()));
            }
            Err(e) => reply.push(Err(e)),
        }
    }
    if validate_only {
        records.clear();
    }
    ControllerResult::new(records, reply)
}

fn invalid(message: String) -> ApiError {
    ApiError::new(ResponseError::InvalidRequest, message)
}

fn entity_records(
    image: &MetadataImage,
    entity: QuotaEntity,
    ops: &[(String, Option<f64>)],
) -> Result<Vec<Record>, ApiError> {
    let mut changes: BTreeMap<&str, Option<i64>> = BTreeMap::new();
    for (key, value) in ops {
        let value = quotas::validate(&entity, key, *value).map_err(invalid)?;
        if changes.insert(key, value).is_some() {
            return Err(invalid(format!("Duplicate quota key {key} for the entity")));
        }
    }
    let current = image.client_quotas.get(&entity);
    Ok(changes
        .into_iter()
        .filter(|(key, value)| current.and_then(|c| c.get(*key)) != value.as_ref())
        .map(|(key, value)| Record::ClientQuota {
            entity: entity.clone(),
            key: key.to_owned(),
            value,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use chronik_metadata::quotas::{CLIENT_ID, CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE, USER};

    use super::*;

    fn alteration(entity: &[(&str, Option<&str>)], ops: &[(&str, Option<f64>)]) -> QuotaAlteration {
        QuotaAlteration {
            entity: entity
                .iter()
                .map(|(t, n)| (t.to_string(), n.map(str::to_owned)))
                .collect(),
            ops: ops.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    fn apply(image: &mut MetadataImage, result: &ControllerResult<AlterQuotasReply>) {
        let offset = image.offset + 1;
        image.replay_all(offset, &result.records);
    }

    #[test]
    fn quotas_are_set_changed_and_removed() {
        let mut image = MetadataImage::default();
        let alice_app = [(USER, Some("alice")), (CLIENT_ID, Some("app"))];
        let set = alter_client_quotas(
            &image,
            &[
                alteration(
                    &alice_app,
                    &[
                        (PRODUCER_BYTE_RATE, Some(1024.0)),
                        (CONSUMER_BYTE_RATE, Some(2048.0)),
                    ],
                ),
                alteration(&[(CLIENT_ID, None)], &[(PRODUCER_BYTE_RATE, Some(10.0))]),
            ],
            false,
        );
        assert_eq!(set.reply, vec![Ok(()), Ok(())]);
        assert_eq!(set.records.len(), 3);
        apply(&mut image, &set);
        let entity = QuotaEntity::of(&alice_app).unwrap();
        assert_eq!(image.client_quotas[&entity][PRODUCER_BYTE_RATE], 1024);

        // Unchanged values and removals of quotas that are not set write nothing.
        let same = alter_client_quotas(
            &image,
            &[alteration(
                &alice_app,
                &[(PRODUCER_BYTE_RATE, Some(1024.0))],
            )],
            false,
        );
        assert_eq!((same.reply, same.records), (vec![Ok(())], vec![]));
        let removed = alter_client_quotas(
            &image,
            &[
                alteration(
                    &alice_app,
                    &[(PRODUCER_BYTE_RATE, None), (CONSUMER_BYTE_RATE, None)],
                ),
                alteration(&[(USER, Some("nobody"))], &[(PRODUCER_BYTE_RATE, None)]),
            ],
            false,
        );
        assert_eq!(removed.reply, vec![Ok(()), Ok(())]);
        assert_eq!(removed.records.len(), 2);
        apply(&mut image, &removed);
        assert!(!image.client_quotas.contains_key(&entity));
        assert_eq!(image.client_quotas.len(), 1);

        // A snapshot (records, and the image's JSON) keeps them.
        let mut restored = MetadataImage::default();
        restored.replay_all(image.offset, &image.to_records());
        assert_eq!(restored, image);
        let json = serde_json::to_string(&image).unwrap();
        assert_eq!(serde_json::from_str::<MetadataImage>(&json).unwrap(), image);
    }

    #[test]
    fn a_refused_entry_changes_nothing_and_others_go_on() {
        let image = MetadataImage::default();
        let result = alter_client_quotas(
            &image,
            &[
                // One bad operation refuses the whole entry.
                alteration(
                    &[(USER, Some("alice"))],
                    &[
                        (PRODUCER_BYTE_RATE, Some(1024.0)),
                        ("request_percentage", Some(50.0)),
                    ],
                ),
                alteration(&[(USER, Some("bob"))], &[(PRODUCER_BYTE_RATE, Some(-1.0))]),
                alteration(&[("group", Some("g"))], &[(PRODUCER_BYTE_RATE, Some(1.0))]),
                alteration(
                    &[(USER, Some("carol"))],
                    &[
                        (PRODUCER_BYTE_RATE, Some(1.0)),
                        (PRODUCER_BYTE_RATE, Some(2.0)),
                    ],
                ),
                alteration(&[(USER, Some("dave"))], &[(PRODUCER_BYTE_RATE, Some(5.0))]),
                alteration(&[(USER, Some("dave"))], &[(CONSUMER_BYTE_RATE, Some(5.0))]),
            ],
            false,
        );
        let codes: Vec<Option<ResponseError>> = result
            .reply
            .iter()
            .map(|r| r.as_ref().err().map(|e| e.code))
            .collect();
        let refused = Some(ResponseError::InvalidRequest);
        assert_eq!(
            codes,
            vec![refused, refused, refused, refused, None, refused]
        );
        let messages: Vec<String> = result
            .reply
            .iter()
            .filter_map(|r| r.as_ref().err().map(|e| e.message.clone()))
            .collect();
        assert!(messages[0].contains("does not enforce request_percentage"));
        assert!(messages[1].contains("positive whole number"));
        assert!(messages[2].contains("Unknown entity type"));
        assert!(messages[3].contains("Duplicate quota key"));
        assert!(messages[4].contains("more than once"));
        assert_eq!(result.records.len(), 1);
    }

    #[test]
    fn validate_only_writes_nothing() {
        let image = MetadataImage::default();
        let result = alter_client_quotas(
            &image,
            &[
                alteration(&[(USER, None)], &[(PRODUCER_BYTE_RATE, Some(1.0))]),
                alteration(&[(USER, None), (USER, None)], &[]),
            ],
            true,
        );
        assert!(result.records.is_empty());
        assert!(result.reply[0].is_ok());
        assert!(result.reply[1].is_err());
    }
}
