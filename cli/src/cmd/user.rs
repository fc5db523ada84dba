//! `user create|list|delete`: SCRAM users (KIP-554). `create` and `delete` go to the active
//! controller's `AlterUserScramCredentials`, which works before any Kafka user exists (bootstrapping the
//! first super user); the password is salted and iterated here (`Hi(password, salt, i)`, RFC 5802) and
//! the controller keeps only the keys derived from it. `list` asks a broker with Kafka's
//! DescribeUserScramCredentials (through `-C`'s or the flags' security), which names users and
//! iteration counts, never keys.

use chronik_metadata::scram::ScramMechanism;
use chronik_proto::v1::{
    AlterUserScramCredentialsRequest, ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::DescribeUserScramCredentialsRequest;
use rand::distr::{Alphanumeric, SampleString};
use rand::RngCore;
use serde::Serialize;

use crate::client::ControllerClient;
use crate::error::{codes, CliError};
use crate::kafka::KafkaError;

/// Kafka's RESOURCE_NOT_FOUND: the credential to delete does not exist.
const RESOURCE_NOT_FOUND: i32 = 91;
/// Bytes of salt per credential.
const SALT_BYTES: usize = 32;
/// Characters of a generated password (alphanumeric: about 190 bits).
const GENERATED_PASSWORD_CHARS: usize = 32;

/// One user's credential for one mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserCredential {
    pub user: String,
    pub mechanism: String,
    pub iterations: i32,
}

/// What a `user` command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserReport {
    /// `created`, `listed` or `deleted`.
    pub action: &'static str,
    pub credentials: Vec<UserCredential>,
    /// The password `create` generated, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated_password: Option<String>,
}

/// Where `user create` takes the password from.
#[derive(Debug, Clone)]
pub enum PasswordSource {
    Given(String),
    File(std::path::PathBuf),
    Generate,
}

/// `user create`: stores (or replaces) `name`'s credential for `mechanism`.
pub async fn create(
    client: &ControllerClient,
    name: &str,
    mechanism: ScramMechanism,
    password: PasswordSource,
    iterations: i32,
) -> Result<UserReport, CliError> {
    let allowed = ScramMechanism::MIN_ITERATIONS..=ScramMechanism::MAX_ITERATIONS;
    if !allowed.contains(&iterations) {
        return Err(CliError::InvalidArgument(format!(
            "--iterations {iterations}: Kafka accepts {}..={}",
            ScramMechanism::MIN_ITERATIONS,
            ScramMechanism::MAX_ITERATIONS
        )));
    }
    let (password, generated) = match password {
        PasswordSource::Given(password) => (password, false),
        PasswordSource::File(path) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                CliError::InvalidArgument(format!("--password-file {}: {e}", path.display()))
            })?;
            (text.trim_end_matches(['\n', '\r']).to_owned(), false)
        }
        PasswordSource::Generate => (generate_password(), true),
    };
    if password.is_empty() {
        return Err(CliError::InvalidArgument(
            "the password is empty".to_owned(),
        ));
    }
    let mut salt = vec![0u8; SALT_BYTES];
    rand::rng().fill_bytes(&mut salt);
    // Within the bounds checked above.
    let salted_password = mechanism.salted_password(password.as_bytes(), &salt, iterations as u32);
    let reply = client
        .alter_user_scram_credentials(AlterUserScramCredentialsRequest {
            deletions: Vec::new(),
            upsertions: vec![ScramCredentialUpsertion {
                name: name.to_owned(),
                mechanism: i32::from(mechanism.code()),
                iterations,
                salt,
                salted_password,
            }],
        })
        .await?;
    check_one(&reply.results, name)?;
    Ok(UserReport {
        action: "created",
        credentials: vec![UserCredential {
            user: name.to_owned(),
            mechanism: mechanism.name().to_owned(),
            iterations,
        }],
        generated_password: generated.then_some(password),
    })
}

/// `user delete`: removes `name`'s credential for `mechanism`, or for every mechanism it has.
pub async fn delete(
    client: &ControllerClient,
    name: &str,
    mechanism: Option<ScramMechanism>,
) -> Result<UserReport, CliError> {
    let mechanisms = match mechanism {
        Some(mechanism) => vec![mechanism],
        None => vec![ScramMechanism::Sha256, ScramMechanism::Sha512],
    };
    let mut deleted = Vec::new();
    let mut not_found = None;
    // One request per mechanism: the controller refuses all of a user's changes when one fails, and
    // a user rarely has both.
    for mechanism in mechanisms.iter().copied() {
        let reply = client
            .alter_user_scram_credentials(AlterUserScramCredentialsRequest {
                deletions: vec![ScramCredentialDeletion {
                    name: name.to_owned(),
                    mechanism: i32::from(mechanism.code()),
                }],
                upsertions: Vec::new(),
            })
            .await?;
        match check_one(&reply.results, name) {
            Ok(()) => deleted.push(UserCredential {
                user: name.to_owned(),
                mechanism: mechanism.name().to_owned(),
                iterations: 0,
            }),
            Err(CliError::Kafka {
                code: RESOURCE_NOT_FOUND,
                ..
            }) if mechanisms.len() > 1 => {}
            Err(
                error @ CliError::Kafka {
                    code: RESOURCE_NOT_FOUND,
                    ..
                },
            ) => not_found = Some(error),
            Err(error) => return Err(error),
        }
    }
    if deleted.is_empty() {
        return Err(not_found.unwrap_or_else(|| {
            CliError::InvalidArgument(format!("user {name} has no SCRAM credential"))
        }));
    }
    Ok(UserReport {
        action: "deleted",
        credentials: deleted,
        generated_password: None,
    })
}

/// `user list`: every SCRAM user and mechanism, from a broker (DescribeUserScramCredentials).
pub async fn list(client: &ControllerClient) -> Result<UserReport, CliError> {
    let (mut connection, deadline) = crate::cmd::broker::connect_any(client).await?;
    let version = connection.version(
        kafka_protocol::messages::ApiKey::DescribeUserScramCredentials,
        0,
        0,
    )?;
    let response = connection
        .call(
            &DescribeUserScramCredentialsRequest::default(),
            version,
            deadline,
        )
        .await?;
    if response.error_code != 0 {
        return Err(KafkaError::broker("DescribeUserScramCredentials", response.error_code).into());
    }
    let mut credentials = Vec::new();
    for result in response.results {
        if result.error_code != 0 {
            return Err(KafkaError::broker(
                format!("DescribeUserScramCredentials of {}", result.user.as_str()),
                result.error_code,
            )
            .into());
        }
        for info in result.credential_infos {
            credentials.push(UserCredential {
                user: result.user.to_string(),
                mechanism: ScramMechanism::from_code(info.mechanism).map_or_else(
                    || format!("UNKNOWN({})", info.mechanism),
                    |m| m.name().to_owned(),
                ),
                iterations: info.iterations,
            });
        }
    }
    credentials.sort_by(|a, b| (&a.user, &a.mechanism).cmp(&(&b.user, &b.mechanism)));
    Ok(UserReport {
        action: "listed",
        credentials,
        generated_password: None,
    })
}

/// The one result of a one-user request, as an error when it failed.
fn check_one(
    results: &[chronik_proto::v1::AlterUserScramCredentialsResult],
    name: &str,
) -> Result<(), CliError> {
    let result = results
        .iter()
        .find(|r| r.user == name)
        .ok_or_else(|| CliError::UnexpectedReply(format!("no result for user {name}")))?;
    if result.error_code != codes::NONE {
        return Err(CliError::kafka(
            result.error_code,
            &result.error_message,
            |code| format!("the controller refused the credential of {name}: {code}"),
        ));
    }
    Ok(())
}

/// A random password of letters and digits, safe in a properties file and on a command line.
pub fn generate_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), GENERATED_PASSWORD_CHARS)
}
