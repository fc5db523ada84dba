//! The security of a local cluster (`chronikctl local up --security ssl|sasl_plaintext|sasl_ssl`):
//! a CA and one certificate per broker generated with rcgen into `DIR/security/`, the broker flags
//! that secure every Kafka listener (the inter-broker one too) with them, the users, and the
//! `client.properties` file a Kafka client (confluent-kafka, `kcat -F`, `chronikctl -C`) uses as it is.
//!
//! - `ssl`: mutual TLS. Brokers require client certificates; each broker presents its own
//!   (`CN=broker`) to the others, and the admin client has `CN=admin`. Principals are the certificate
//!   subjects (Kafka's default mapping): `User:CN=broker` and `User:CN=admin` are the super users.
//! - `sasl_plaintext`, `sasl_ssl`: SCRAM-SHA-512. The super users `admin` (a generated password, in
//!   the properties file) and `broker` (the brokers' inter-broker user, its password in a file the
//!   brokers read) are created through the controllers before any broker needs them.
//!
//! Every broker runs `--authorizer standard` with those super users and no other ACL, so only they may
//! do anything until ACLs say otherwise. The controllers' own TLS and admin credential are the control
//! plane's; [`SecuritySpec`] is where a local cluster would say it wants them.
//!
//! What must stay true: secrets (keys, passwords, the properties file) are written readable by the
//! owner only; a certificate names 127.0.0.1 and localhost, so clients verify the brokers' names.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chronik_wire::SecurityProtocol;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};

use crate::local::LocalError;

/// The directory below the cluster dir that holds certificates, keys and passwords.
pub const SECURITY_DIR: &str = "security";
/// The client properties file in the cluster dir.
pub const CLIENT_PROPERTIES: &str = "client.properties";
/// The super user clients act as.
pub const ADMIN_USER: &str = "admin";
/// The user brokers replicate as.
pub const BROKER_USER: &str = "broker";
/// The mechanism of both users.
pub const MECHANISM: &str = "SCRAM-SHA-512";

/// How a local cluster is secured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecuritySpec {
    /// The protocol of every Kafka listener: SSL, SASL_PLAINTEXT or SASL_SSL.
    pub protocol: String,
}

impl SecuritySpec {
    pub fn protocol(&self) -> SecurityProtocol {
        self.protocol.parse().unwrap_or_default()
    }
}

/// The generated material of a secured local cluster.
#[derive(Clone, Debug)]
pub struct LocalSecurity {
    pub spec: SecuritySpec,
    dir: PathBuf,
    /// Passwords of the SCRAM users, by user (SASL protocols only).
    pub users: Vec<(String, String)>,
}

impl LocalSecurity {
    /// Generates the CA, the brokers' and the admin's certificates and the users' passwords into
    /// `cluster_dir/security`.
    pub fn generate(
        cluster_dir: &Path,
        spec: SecuritySpec,
        brokers: usize,
    ) -> Result<Self, LocalError> {
        let dir = cluster_dir.join(SECURITY_DIR);
        std::fs::create_dir_all(&dir)
            .map_err(|e| LocalError::Io(format!("{}: {e}", dir.display())))?;
        let protocol = spec.protocol();
        if protocol.uses_tls() {
            let ca_key = KeyPair::generate().map_err(cert_error)?;
            let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
            ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            ca.distinguished_name
                .push(DnType::CommonName, "Chronik local cluster CA");
            let ca_cert = ca.self_signed(&ca_key).map_err(cert_error)?;
            write(&dir.join("ca.pem"), &ca_cert.pem(), false)?;
            write(&dir.join("ca.key"), &ca_key.serialize_pem(), true)?;
            let issuer = Issuer::new(ca, ca_key);
            let issue = |file: &str, common_name: &str| -> Result<(), LocalError> {
                let key = KeyPair::generate().map_err(cert_error)?;
                let mut params =
                    CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                        .map_err(cert_error)?;
                params
                    .distinguished_name
                    .push(DnType::CommonName, common_name);
                params.extended_key_usages = vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ];
                let cert = params.signed_by(&key, &issuer).map_err(cert_error)?;
                write(&dir.join(format!("{file}.pem")), &cert.pem(), false)?;
                write(&dir.join(format!("{file}.key")), &key.serialize_pem(), true)
            };
            for id in 1..=brokers {
                issue(&format!("broker-{id}"), BROKER_USER)?;
            }
            issue(ADMIN_USER, ADMIN_USER)?;
        }
        let mut users = Vec::new();
        if protocol.uses_sasl() {
            for user in [ADMIN_USER, BROKER_USER] {
                let password = crate::cmd::user::generate_password();
                write(&dir.join(format!("{user}.password")), &password, true)?;
                users.push((user.to_owned(), password));
            }
        }
        Ok(LocalSecurity { spec, dir, users })
    }

    /// The flags that secure broker `id`'s listeners (`listeners`: their names) and its replication.
    pub fn broker_args(&self, id: u64, listeners: &[String]) -> Vec<String> {
        let protocol = self.spec.protocol();
        let path = |name: String| self.dir.join(name).display().to_string();
        let mut args = Vec::new();
        let unnamed: Vec<&String> = listeners
            .iter()
            .filter(|l| l.parse::<SecurityProtocol>().ok() != Some(protocol))
            .collect();
        if !unnamed.is_empty() {
            args.push("--listener-security-protocol-map".to_owned());
            args.push(
                unnamed
                    .iter()
                    .map(|name| format!("{name}:{protocol}"))
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        if protocol.uses_tls() {
            args.extend([
                "--ssl-certificate".to_owned(),
                path(format!("broker-{id}.pem")),
                "--ssl-key".to_owned(),
                path(format!("broker-{id}.key")),
                "--ssl-ca".to_owned(),
                path("ca.pem".to_owned()),
            ]);
        }
        let super_users = if protocol.uses_sasl() {
            args.extend([
                "--inter-broker-sasl-mechanism".to_owned(),
                MECHANISM.to_owned(),
                "--inter-broker-sasl-username".to_owned(),
                BROKER_USER.to_owned(),
                "--inter-broker-sasl-password-file".to_owned(),
                path(format!("{BROKER_USER}.password")),
            ]);
            format!("User:{ADMIN_USER};User:{BROKER_USER}")
        } else {
            args.extend(["--ssl-client-auth".to_owned(), "required".to_owned()]);
            format!("User:CN={ADMIN_USER};User:CN={BROKER_USER}")
        };
        args.extend([
            "--authorizer".to_owned(),
            "standard".to_owned(),
            "--super-users".to_owned(),
            super_users,
        ]);
        args
    }

    /// Writes `cluster_dir/client.properties` for the admin user; returns its path.
    pub fn write_client_properties(
        &self,
        cluster_dir: &Path,
        bootstrap_servers: &str,
    ) -> Result<PathBuf, LocalError> {
        let protocol = self.spec.protocol();
        let mut text = format!(
            "# Written by `chronikctl local up --security {}`: librdkafka properties for this cluster's\n\
             # super user; use as they are (confluent-kafka, kcat -F, chronikctl -C).\n\
             bootstrap.servers={bootstrap_servers}\nsecurity.protocol={protocol}\n",
            protocol.name().to_ascii_lowercase()
        );
        let path = |name: &str| self.dir.join(name).display().to_string();
        if protocol.uses_tls() {
            text.push_str(&format!("ssl.ca.location={}\n", path("ca.pem")));
        }
        if let Some((user, password)) = self.users.iter().find(|(user, _)| user == ADMIN_USER) {
            text.push_str(&format!(
                "sasl.mechanism={MECHANISM}\nsasl.username={user}\nsasl.password={password}\n"
            ));
        } else if protocol.uses_tls() {
            text.push_str(&format!(
                "ssl.certificate.location={}\nssl.key.location={}\n",
                path(&format!("{ADMIN_USER}.pem")),
                path(&format!("{ADMIN_USER}.key"))
            ));
        }
        let file = cluster_dir.join(CLIENT_PROPERTIES);
        write(&file, &text, true)?;
        Ok(file)
    }
}

fn cert_error(e: rcgen::Error) -> LocalError {
    LocalError::Io(format!("cannot generate a certificate: {e}"))
}

/// Writes `text` to `path`, readable by the owner only when `secret`.
fn write(path: &Path, text: &str, secret: bool) -> Result<(), LocalError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if secret {
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| LocalError::Io(format!("{}: {e}", path.display())))?;
    file.write_all(text.as_bytes())
        .map_err(|e| LocalError::Io(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_ssl_writes_certificates_passwords_and_properties() {
        let dir = tempfile::tempdir().expect("temp dir");
        let security = LocalSecurity::generate(
            dir.path(),
            SecuritySpec {
                protocol: "SASL_SSL".to_owned(),
            },
            2,
        )
        .expect("generated");
        for file in [
            "ca.pem",
            "broker-1.pem",
            "broker-2.key",
            "admin.password",
            "broker.password",
        ] {
            assert!(dir.path().join(SECURITY_DIR).join(file).exists(), "{file}");
        }
        let args = security.broker_args(2, &["SASL_SSL".to_owned()]);
        let joined = args.join(" ");
        assert!(
            joined.contains("--ssl-certificate") && joined.contains("broker-2.pem"),
            "{joined}"
        );
        assert!(
            joined.contains("--inter-broker-sasl-username broker"),
            "{joined}"
        );
        assert!(
            joined.contains("--super-users User:admin;User:broker"),
            "{joined}"
        );
        assert!(
            !joined.contains("--listener-security-protocol-map"),
            "{joined}"
        );
        let file = security
            .write_client_properties(dir.path(), "127.0.0.1:1")
            .expect("written");
        let text = std::fs::read_to_string(&file).expect("read");
        let properties = crate::kafka::security::parse_properties(&text).expect("parses");
        assert_eq!(properties["security.protocol"], "SASL_SSL");
        assert_eq!(properties["sasl.username"], "admin");
        assert_eq!(properties["sasl.password"], security.users[0].1);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("stat").permissions().mode();
        assert_eq!(mode & 0o077, 0, "the properties hold a password");
        // The properties are a valid chronikctl client config as they are.
        let args = crate::cli::KafkaSecurityArgs {
            client_config: Some(file),
            ..Default::default()
        };
        crate::kafka::security::resolve(&args).expect("chronikctl -C takes it");
    }

    #[test]
    fn ssl_is_mutual_tls_with_certificate_principals() {
        let dir = tempfile::tempdir().expect("temp dir");
        let security = LocalSecurity::generate(
            dir.path(),
            SecuritySpec {
                protocol: "SSL".to_owned(),
            },
            1,
        )
        .expect("generated");
        let joined = security.broker_args(1, &["INTERNAL".to_owned()]).join(" ");
        assert!(joined.contains("--ssl-client-auth required"), "{joined}");
        assert!(
            joined.contains("--listener-security-protocol-map INTERNAL:SSL"),
            "{joined}"
        );
        assert!(joined.contains("User:CN=admin;User:CN=broker"), "{joined}");
        let file = security
            .write_client_properties(dir.path(), "127.0.0.1:1")
            .expect("written");
        let text = std::fs::read_to_string(file).expect("read");
        assert!(
            text.contains("ssl.certificate.location=") && !text.contains("sasl."),
            "{text}"
        );
    }
}
