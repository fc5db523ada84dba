//! Client quotas: byte rates a user or client id may produce or fetch at (KIP-13, KIP-55), set and
//! listed with AlterClientQuotas and DescribeClientQuotas (KIP-546) and kept in the metadata log as
//! Kafka keeps them (`ClientQuotaRecord`). Which quota applies to a request is Kafka's
//! `DefaultQuotaCallback`: the most specific of eight entity levels, resolved per quota key.
//!
//! What must stay true: an entity names each type at most once and only in Kafka's combinations
//! (user, client-id, user and client-id, or ip); a stored quota is positive; resolution and the
//! metric key it gives (who shares a rate) are those of Kafka, so the same settings throttle the same
//! clients.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

/// Bytes per second a user or client id may append with Produce requests.
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
/// Bytes per second a user or client id may read with Fetch requests (replicas are exempt).
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// Kafka's other quota keys, refused by name until Chronik enforces them.
const NOT_ENFORCED: [&str; 3] = [
    "request_percentage",
    "controller_mutation_rate",
    "connection_creation_rate",
];

/// One quota entity: its types in order, each with a name or `None` for the type's default (Kafka's
/// `<default>`, sent as a null name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity(Vec<(String, Option<String>)>);

impl QuotaEntity {
    /// The entity of these parts, refused unless it is one Kafka accepts.
    pub fn new(parts: Vec<(String, Option<String>)>) -> Result<Self, String> {
        let mut parts = parts;
        parts.sort();
        for pair in parts.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(format!(
                    "Duplicate {} entity type in the request",
                    pair[0].0
                ));
            }
        }
        let types: Vec<&str> = parts.iter().map(|(t, _)| t.as_str()).collect();
        match types.as_slice() {
            [] => return Err("The entity has no components".to_owned()),
            [CLIENT_ID] | [USER] | [CLIENT_ID, USER] => {}
            [IP] => {}
            _ if types.contains(&IP) => {
                return Err("An ip entity cannot be combined with a user or client id".to_owned())
            }
            _ => {
                let unknown = types
                    .iter()
                    .find(|t| ![USER, CLIENT_ID, IP].contains(t))
                    .unwrap_or(&"");
                return Err(format!("Unknown entity type: {unknown}"));
            }
        }
        if let Some((kind, _)) = parts.iter().find(|(_, name)| name.as_deref() == Some("")) {
            return Err(format!(
                "An empty {kind} name; send a null name for the default"
            ));
        }
        Ok(Self(parts))
    }

    /// `new` from borrowed parts.
    pub fn of(parts: &[(&str, Option<&str>)]) -> Result<Self, String> {
        Self::new(
            parts
                .iter()
                .map(|(kind, name)| (kind.to_string(), name.map(str::to_owned)))
                .collect(),
        )
    }

    pub fn parts(&self) -> &[(String, Option<String>)] {
        &self.0
    }

    /// The name (or `None` for the default) this entity gives `kind`; `None` when it has no such part.
    pub fn part(&self, kind: &str) -> Option<&Option<String>> {
        self.0.iter().find(|(t, _)| t == kind).map(|(_, n)| n)
    }

    fn user_client(user: Option<&str>, client: Option<&str>) -> Self {
        let mut parts = Vec::new();
        if let Some(client) = client {
            parts.push((CLIENT_ID.to_owned(), named(client)));
        }
        if let Some(user) = user {
            parts.push((USER.to_owned(), named(user)));
        }
        Self(parts)
    }
}

/// `"<default>"` is how the eight levels below spell a default; anything else is a name.
fn named(name: &str) -> Option<String> {
    (name != DEFAULT).then(|| name.to_owned())
}

const DEFAULT: &str = "<default>";

/// Refuses a quota of an ip entity or of a key Chronik does not enforce, or a value that is not a
/// positive whole number of bytes per second. `value` is `None` for a removal, which is not checked
/// (as in Kafka: only a quota that was accepted can be there to remove).
pub fn validate(
    entity: &QuotaEntity,
    key: &str,
    value: Option<f64>,
) -> Result<Option<i64>, String> {
    let Some(value) = value else {
        return Ok(None);
    };
    if entity.part(IP).is_some() {
        return Err("Chronik does not enforce quotas of ip entities yet".to_owned());
    }
    if NOT_ENFORCED.contains(&key) {
        return Err(format!(
            "Chronik does not enforce {key} quotas yet; only {PRODUCER_BYTE_RATE} and \
             {CONSUMER_BYTE_RATE} of users and client ids"
        ));
    }
    if key != PRODUCER_BYTE_RATE && key != CONSUMER_BYTE_RATE {
        return Err(format!("Invalid configuration key {key}"));
    }
    if value.fract() != 0.0 || !(1.0..=i64::MAX as f64).contains(&value) {
        return Err(format!(
            "{key} must be a positive whole number of bytes per second, not {value}"
        ));
    }
    Ok(Some(value as i64))
}

/// Quotas set, by entity and key.
pub type ClientQuotas = BTreeMap<QuotaEntity, BTreeMap<String, i64>>;

/// The quota applying to a request of `user` (the principal's name) with `client_id`: its rate and
/// the key of the rate it counts toward. Kafka's order, most specific first: user and client id,
/// user and default client, user alone, default user and client id, default user and default client,
/// default user, client id, default client. The rate key names the user and client id the matched
/// level has (a default matches with the actual name), so, e.g., a quota of `<default>` client ids
/// gives each client id its own rate, shared by all its users.
pub fn resolve(
    quotas: &ClientQuotas,
    user: &str,
    client_id: &str,
    key: &str,
) -> Option<(i64, RateKey)> {
    if quotas.is_empty() {
        return None;
    }
    let levels: [(Option<&str>, Option<&str>); 8] = [
        (Some(user), Some(client_id)),
        (Some(user), Some(DEFAULT)),
        (Some(user), None),
        (Some(DEFAULT), Some(client_id)),
        (Some(DEFAULT), Some(DEFAULT)),
        (Some(DEFAULT), None),
        (None, Some(client_id)),
        (None, Some(DEFAULT)),
    ];
    levels.into_iter().find_map(|(u, c)| {
        let entity = QuotaEntity::user_client(u, c);
        let rate = *quotas.get(&entity)?.get(key)?;
        Some((
            rate,
            RateKey {
                user: u.map(|_| user.to_owned()),
                client_id: c.map(|_| client_id.to_owned()),
            },
        ))
    })
}

/// Whose rate a request counts toward (Kafka's quota metric tags).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RateKey {
    pub user: Option<String>,
    pub client_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(parts: &[(&str, Option<&str>)]) -> QuotaEntity {
        QuotaEntity::of(parts).unwrap()
    }

    #[test]
    fn entities_are_kafkas_combinations() {
        let e = entity(&[(USER, Some("alice")), (CLIENT_ID, None)]);
        assert_eq!(e, entity(&[(CLIENT_ID, None), (USER, Some("alice"))]));
        let refused = |parts: Vec<(&str, Option<&str>)>| QuotaEntity::of(&parts).unwrap_err();
        assert!(refused(vec![]).contains("no components"));
        assert!(refused(vec![(USER, Some("a")), (USER, Some("b"))]).contains("Duplicate"));
        assert!(refused(vec![(IP, None), (USER, Some("a"))]).contains("ip"));
        assert!(refused(vec![("group", Some("g"))]).contains("Unknown entity type: group"));
        assert!(refused(vec![(USER, Some(""))]).contains("empty"));
    }

    #[test]
    fn only_enforced_keys_with_positive_whole_rates() {
        let user = entity(&[(USER, Some("alice"))]);
        assert_eq!(
            validate(&user, PRODUCER_BYTE_RATE, Some(1024.0)),
            Ok(Some(1024))
        );
        assert_eq!(validate(&user, CONSUMER_BYTE_RATE, None), Ok(None));
        for bad in [0.0, -5.0, 1.5, f64::NAN, f64::INFINITY] {
            assert!(
                validate(&user, PRODUCER_BYTE_RATE, Some(bad)).is_err(),
                "{bad}"
            );
        }
        assert!(validate(&user, "request_percentage", Some(50.0))
            .unwrap_err()
            .contains("does not enforce"));
        assert!(validate(&user, "flush.ms", Some(1.0))
            .unwrap_err()
            .contains("Invalid configuration key"));
        let ip = entity(&[(IP, None)]);
        assert!(validate(&ip, "connection_creation_rate", Some(10.0))
            .unwrap_err()
            .contains("ip entities"));
        // Removals are not checked: nothing refused can be there.
        assert_eq!(validate(&ip, "connection_creation_rate", None), Ok(None));
        assert_eq!(validate(&user, "request_percentage", None), Ok(None));
    }

    #[test]
    fn the_most_specific_level_wins_per_key() {
        let mut quotas = ClientQuotas::new();
        let mut set = |parts: &[(&str, Option<&str>)], key: &str, value: i64| {
            quotas
                .entry(entity(parts))
                .or_default()
                .insert(key.to_owned(), value);
        };
        set(&[(CLIENT_ID, None)], PRODUCER_BYTE_RATE, 8);
        set(&[(CLIENT_ID, Some("app"))], PRODUCER_BYTE_RATE, 7);
        set(&[(USER, None)], PRODUCER_BYTE_RATE, 6);
        set(
            &[(USER, None), (CLIENT_ID, Some("app"))],
            PRODUCER_BYTE_RATE,
            4,
        );
        set(&[(USER, Some("alice"))], PRODUCER_BYTE_RATE, 3);
        set(
            &[(USER, Some("alice")), (CLIENT_ID, None)],
            CONSUMER_BYTE_RATE,
            2,
        );
        set(
            &[(USER, Some("alice")), (CLIENT_ID, Some("app"))],
            PRODUCER_BYTE_RATE,
            1,
        );

        let key = |u: Option<&str>, c: Option<&str>| RateKey {
            user: u.map(str::to_owned),
            client_id: c.map(str::to_owned),
        };
        let at = |user, client, k| resolve(&quotas, user, client, k);
        assert_eq!(
            at("alice", "app", PRODUCER_BYTE_RATE),
            Some((1, key(Some("alice"), Some("app"))))
        );
        assert_eq!(
            at("alice", "other", PRODUCER_BYTE_RATE),
            Some((3, key(Some("alice"), None)))
        );
        // Resolved per key: alice's default-client level sets only the consumer rate.
        assert_eq!(
            at("alice", "other", CONSUMER_BYTE_RATE),
            Some((2, key(Some("alice"), Some("other"))))
        );
        assert_eq!(
            at("bob", "app", PRODUCER_BYTE_RATE),
            Some((4, key(Some("bob"), Some("app"))))
        );
        assert_eq!(
            at("bob", "other", PRODUCER_BYTE_RATE),
            Some((6, key(Some("bob"), None)))
        );
        assert_eq!(at("bob", "other", CONSUMER_BYTE_RATE), None);
    }

    #[test]
    fn client_levels_apply_when_no_user_level_matches() {
        let mut quotas = ClientQuotas::new();
        quotas
            .entry(entity(&[(CLIENT_ID, Some("app"))]))
            .or_default()
            .insert(PRODUCER_BYTE_RATE.to_owned(), 7);
        quotas
            .entry(entity(&[(CLIENT_ID, None)]))
            .or_default()
            .insert(PRODUCER_BYTE_RATE.to_owned(), 8);
        let rate = |user, client| resolve(&quotas, user, client, PRODUCER_BYTE_RATE);
        // Every user of client id `app` shares one rate; every other client id has its own.
        assert_eq!(
            rate("alice", "app"),
            Some((
                7,
                RateKey {
                    user: None,
                    client_id: Some("app".to_owned())
                }
            ))
        );
        assert_eq!(rate("bob", "app"), rate("alice", "app"));
        assert_eq!(
            rate("bob", "x"),
            Some((
                8,
                RateKey {
                    user: None,
                    client_id: Some("x".to_owned())
                }
            ))
        );
    }
}
