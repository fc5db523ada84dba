//! `quota set|remove|list`: client quotas (KIP-13/55 byte rates, KIP-546 APIs) of users, client ids
//! and their pairs, as `kafka-configs.sh --entity-type users|clients` sets them. `set` and `remove`
//! go to the active controller's `AlterClientQuotas` (one request: every key of the entity changes,
//! or none does); `list` asks a broker with Kafka's DescribeClientQuotas (through `-C`'s or the
//! flags' security), so it shows what the brokers enforce.

use std::collections::BTreeMap;

use chronik_metadata::quotas::{CLIENT_ID, USER};
use chronik_proto::v1::{
    AlterClientQuotasRequest, ClientQuotaAlteration, ClientQuotaOp, QuotaEntityPart,
};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{ApiKey, DescribeClientQuotasRequest};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use crate::client::ControllerClient;
use crate::error::{codes, CliError};
use crate::kafka::KafkaError;

/// How `--user` / `--client-id` name an entity's default (Kafka's `<default>`).
pub const DEFAULT_NAME: &str = "<default>";

/// One part of an entity: a name, or the type's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityName {
    Named(String),
    Default,
}

impl EntityName {
    /// `<default>` is the default; anything else a name.
    pub fn parse(text: &str) -> Self {
        if text == DEFAULT_NAME {
            EntityName::Default
        } else {
            EntityName::Named(text.to_owned())
        }
    }

    fn name(&self) -> Option<String> {
        match self {
            EntityName::Named(name) => Some(name.clone()),
            EntityName::Default => None,
        }
    }
}

/// The entity a command names: a user, a client id, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntityArgs {
    pub user: Option<EntityName>,
    pub client_id: Option<EntityName>,
}

impl EntityArgs {
    fn parts(&self) -> Vec<(&'static str, &EntityName)> {
        let mut parts = Vec::new();
        if let Some(user) = &self.user {
            parts.push((USER, user));
        }
        if let Some(client_id) = &self.client_id {
            parts.push((CLIENT_ID, client_id));
        }
        parts
    }

    fn entity(&self) -> Result<Vec<QuotaEntityPart>, CliError> {
        let parts = self.parts();
        if parts.is_empty() {
            return Err(CliError::InvalidArgument(
                "name the entity: --user, --client-id, or both".to_owned(),
            ));
        }
        Ok(parts
            .into_iter()
            .map(|(kind, name)| QuotaEntityPart {
                entity_type: kind.to_owned(),
                name: name.name(),
            })
            .collect())
    }
}

/// The quotas of one entity. `entity` maps each type to its name, `null` for the default (as the
/// Admin client's `ClientQuotaEntity`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuotaEntry {
    pub entity: BTreeMap<String, Option<String>>,
    pub quotas: BTreeMap<String, f64>,
}

/// What a `quota` command did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuotaReport {
    /// `set`, `removed` or `listed`.
    pub action: &'static str,
    pub entries: Vec<QuotaEntry>,
}

/// Parses `KEY=VALUE` (`quota set`).
pub fn parse_quota(text: &str) -> Result<(String, f64), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected KEY=VALUE, e.g. producer_byte_rate=1048576"))?;
    let value: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: {value:?} is not a number"))?;
    Ok((key.trim().to_owned(), value))
}

/// `quota set`: sets each `KEY=VALUE` of the entity; the controller refuses what Kafka refuses (an
/// unknown or unenforced key, a rate that is not a positive whole number), and then nothing changes.
pub async fn set(
    client: &ControllerClient,
    entity: &EntityArgs,
    quotas: &[(String, f64)],
    validate_only: bool,
) -> Result<QuotaReport, CliError> {
    let ops = quotas
        .iter()
        .map(|(key, value)| ClientQuotaOp {
            key: key.clone(),
            value: *value,
            remove: false,
        })
        .collect();
    alter(client, entity, ops, validate_only).await?;
    Ok(QuotaReport {
        action: if validate_only { "validated" } else { "set" },
        entries: vec![entry(entity, quotas.iter().cloned().collect())],
    })
}

/// `quota remove`: removes each key of the entity (a key it does not have is no error, as in Kafka).
pub async fn remove(
    client: &ControllerClient,
    entity: &EntityArgs,
    keys: &[String],
) -> Result<QuotaReport, CliError> {
    let ops = keys
        .iter()
        .map(|key| ClientQuotaOp {
            key: key.clone(),
            value: 0.0,
            remove: true,
        })
        .collect();
    alter(client, entity, ops, false).await?;
    Ok(QuotaReport {
        action: "removed",
        entries: vec![entry(entity, BTreeMap::new())],
    })
}

async fn alter(
    client: &ControllerClient,
    entity: &EntityArgs,
    ops: Vec<ClientQuotaOp>,
    validate_only: bool,
) -> Result<(), CliError> {
    if ops.is_empty() {
        return Err(CliError::InvalidArgument(
            "name at least one quota key".to_owned(),
        ));
    }
    let reply = client
        .alter_client_quotas(AlterClientQuotasRequest {
            entries: vec![ClientQuotaAlteration {
                entity: entity.entity()?,
                ops,
            }],
            validate_only,
        })
        .await?;
    let result = reply
        .results
        .first()
        .ok_or_else(|| CliError::UnexpectedReply("no result for the entity".to_owned()))?;
    if result.error_code != codes::NONE {
        return Err(CliError::kafka(
            result.error_code,
            &result.error_message,
            |code| format!("the controller refused the quotas: {code}"),
        ));
    }
    Ok(())
}

fn entry(entity: &EntityArgs, quotas: BTreeMap<String, f64>) -> QuotaEntry {
    QuotaEntry {
        entity: entity
            .parts()
            .into_iter()
            .map(|(kind, name)| (kind.to_owned(), name.name()))
            .collect(),
        quotas,
    }
}

/// `quota list`: every entity with quotas, or those matching `filter` (an entity whose user, client
/// id or both are the given ones, each a name or the default; other types may be there too), from a
/// broker (DescribeClientQuotas).
pub async fn list(client: &ControllerClient, filter: &EntityArgs) -> Result<QuotaReport, CliError> {
    let (mut connection, deadline) = crate::cmd::broker::connect_any(client).await?;
    let version = connection.version(ApiKey::DescribeClientQuotas, 0, 1)?;
    let request = DescribeClientQuotasRequest::default()
        .with_components(describe_filter(filter))
        .with_strict(false);
    let response = connection.call(&request, version, deadline).await?;
    if response.error_code != 0 {
        let message = response
            .error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default();
        return Err(if message.is_empty() {
            KafkaError::broker("DescribeClientQuotas", response.error_code).into()
        } else {
            CliError::kafka(i32::from(response.error_code), &message, |code| {
                code.to_owned()
            })
        });
    }
    let mut entries: Vec<QuotaEntry> = response
        .entries
        .unwrap_or_default()
        .into_iter()
        .map(|e| QuotaEntry {
            entity: e
                .entity
                .into_iter()
                .map(|part| {
                    (
                        part.entity_type.to_string(),
                        part.entity_name.map(|n| n.to_string()),
                    )
                })
                .collect(),
            quotas: e
                .values
                .into_iter()
                .map(|v| (v.key.to_string(), v.value))
                .collect(),
        })
        .collect();
    entries.sort_by(|a, b| a.entity.cmp(&b.entity));
    Ok(QuotaReport {
        action: "listed",
        entries,
    })
}

/// DescribeClientQuotas components: match type 0 is an exact name, 1 the default, 2 any entity of
/// the type (Kafka's `ClientQuotaFilterComponent`). No component matches every entity.
fn describe_filter(filter: &EntityArgs) -> Vec<ComponentData> {
    filter
        .parts()
        .into_iter()
        .map(|(kind, name)| {
            let component =
                ComponentData::default().with_entity_type(StrBytes::from_static_str(kind));
            match name {
                EntityName::Named(name) => component
                    .with_match_type(0)
                    .with_match(Some(StrBytes::from_string(name.clone()))),
                EntityName::Default => component.with_match_type(1).with_match(None),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse_as_key_equals_number() {
        assert_eq!(
            parse_quota("producer_byte_rate=1048576"),
            Ok(("producer_byte_rate".to_owned(), 1048576.0))
        );
        assert!(parse_quota("producer_byte_rate")
            .unwrap_err()
            .contains("KEY=VALUE"));
        assert!(parse_quota("producer_byte_rate=fast")
            .unwrap_err()
            .contains("not a number"));
    }

    #[test]
    fn entities_name_users_client_ids_and_their_defaults() {
        let both = EntityArgs {
            user: Some(EntityName::parse("alice")),
            client_id: Some(EntityName::parse(DEFAULT_NAME)),
        };
        let parts = both.entity().unwrap();
        assert_eq!(
            parts,
            vec![
                QuotaEntityPart {
                    entity_type: "user".into(),
                    name: Some("alice".into())
                },
                QuotaEntityPart {
                    entity_type: "client-id".into(),
                    name: None
                },
            ]
        );
        assert!(EntityArgs::default().entity().is_err());

        let filter = describe_filter(&both);
        assert_eq!(filter[0].match_type, 0);
        assert_eq!(filter[0]._match.as_deref(), Some("alice"));
        assert_eq!(filter[1].match_type, 1);
        assert!(filter[1]._match.is_none());
        assert!(describe_filter(&EntityArgs::default()).is_empty());
    }
}
