//! The security of the client's Kafka connections: a librdkafka-style properties file (chronikctl's
//! `-C PATH`, the one `local up --security` writes and confluent-kafka or `kcat -F` read as they are;
//! the controllers' `--console-kafka-config`) and the options over it ([`SecurityOptions`], which
//! chronikctl fills from its flags), resolved once into the [`ClientConnector`] every connection
//! opens through.
//!
//! Why one process-wide connector: a process using this client (one `chronikctl` command, one
//! controller's console) has one Kafka identity, and every Kafka connection (pool, leader router,
//! producer, fetcher, bench) bottoms out in [`super::KafkaConnection::open`]; [`install`] sets it
//! before anything connects, and an un-set connector is PLAINTEXT, as before security existed.
//!
//! What must stay true: a flag overrides the file's value; a file that cannot be read or holds a
//! value that does not parse is an error before anything connects; the password is never printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chronik_wire::{
    ClientConnector, ClientSecurity, Password, SaslMechanism, SaslSettings, SecurityProtocol,
    TlsSettings,
};

use super::CLIENT_ID;

/// What a connection's security is resolved from: a properties file and the values that override it
/// (chronikctl's flags). Every field is optional; nothing set means PLAINTEXT.
#[derive(Debug, Clone, Default)]
pub struct SecurityOptions {
    /// The librdkafka-style properties file.
    pub client_config: Option<PathBuf>,
    /// `security.protocol`.
    pub security_protocol: Option<SecurityProtocol>,
    /// `sasl.mechanism`.
    pub sasl_mechanism: Option<SaslMechanism>,
    /// `sasl.username`.
    pub sasl_username: Option<String>,
    /// `sasl.password`.
    pub sasl_password: Option<String>,
    /// `ssl.ca.location`.
    pub tls_ca: Option<PathBuf>,
    /// `ssl.certificate.location`.
    pub tls_cert: Option<PathBuf>,
    /// `ssl.key.location`.
    pub tls_key: Option<PathBuf>,
}

/// Why security options do not resolve; nothing has connected yet.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The properties file cannot be read or is not `key=value` lines.
    #[error("{path}: {reason}")]
    File {
        /// The file, as given.
        path: String,
        /// Why.
        reason: String,
    },
    /// A value does not parse, or the values contradict each other.
    #[error("{0}")]
    Invalid(String),
}

/// The connector and the bootstrap servers of this run.
#[derive(Debug)]
pub struct KafkaSettings {
    pub connector: ClientConnector,
    /// `bootstrap.servers` of the properties file; empty without one.
    pub bootstrap_servers: Vec<String>,
}

static SETTINGS: OnceLock<KafkaSettings> = OnceLock::new();

/// Makes `settings` the ones every Kafka connection of this process uses. The first call wins.
pub fn install(settings: KafkaSettings) {
    let _ = SETTINGS.set(settings);
}

/// The connector of this process ([`install`]ed, else PLAINTEXT).
pub fn connector() -> &'static ClientConnector {
    static PLAINTEXT: OnceLock<ClientConnector> = OnceLock::new();
    match SETTINGS.get() {
        Some(settings) => &settings.connector,
        None => PLAINTEXT.get_or_init(|| ClientConnector::plaintext(CLIENT_ID)),
    }
}

/// The properties file's `bootstrap.servers`, if one was given.
pub fn bootstrap_servers() -> &'static [String] {
    SETTINGS
        .get()
        .map(|s| s.bootstrap_servers.as_slice())
        .unwrap_or_default()
}

/// Reads `key=value` lines; `#` and `!` start comments, blank lines are skipped, keys and values
/// are trimmed (Java properties without continuation lines, as librdkafka's `-F` reads them).
pub fn parse_properties(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut properties = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: not key=value", number + 1));
        };
        properties.insert(key.trim().to_owned(), value.trim().to_owned());
    }
    Ok(properties)
}

impl SecurityOptions {
    /// Resolves the options and the properties file they name into the settings of this process.
    pub fn resolve(&self) -> Result<KafkaSettings, SettingsError> {
        resolve(self)
    }
}

fn resolve(args: &SecurityOptions) -> Result<KafkaSettings, SettingsError> {
    let invalid = SettingsError::Invalid;
    let file = match &args.client_config {
        Some(path) => {
            let file_error = |reason: String| SettingsError::File {
                path: path.display().to_string(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
            parse_properties(&text).map_err(file_error)?
        }
        None => BTreeMap::new(),
    };
    let from_file = |key: &str| file.get(key).filter(|v| !v.is_empty()).cloned();
    let file_error = |key: &str, e: String| {
        let path = args.client_config.as_deref().unwrap_or(Path::new("-"));
        invalid(format!("{} {key}: {e}", path.display()))
    };
    let path = |flag: &Option<PathBuf>, key: &str| {
        flag.clone().or_else(|| from_file(key).map(PathBuf::from))
    };
    let tls = TlsSettings {
        ca: path(&args.tls_ca, "ssl.ca.location"),
        certificate: path(&args.tls_cert, "ssl.certificate.location"),
        key: path(&args.tls_key, "ssl.key.location"),
        server_name: None,
    };
    let username = args
        .sasl_username
        .clone()
        .or_else(|| from_file("sasl.username"));
    let password = args
        .sasl_password
        .clone()
        .or_else(|| from_file("sasl.password"));
    let mechanism = match args.sasl_mechanism {
        Some(mechanism) => mechanism,
        // librdkafka spells it `sasl.mechanisms` too.
        None => match from_file("sasl.mechanism").or_else(|| from_file("sasl.mechanisms")) {
            Some(name) => name
                .parse::<SaslMechanism>()
                .map_err(|e| file_error("sasl.mechanism", e))?,
            None => SaslMechanism::ScramSha512,
        },
    };
    let protocol = match args.security_protocol {
        Some(protocol) => protocol,
        None => match from_file("security.protocol") {
            Some(name) => name
                .parse::<SecurityProtocol>()
                .map_err(|e| file_error("security.protocol", e))?,
            None => match (username.is_some(), tls.ca.is_some()) {
                (true, true) => SecurityProtocol::SaslSsl,
                (true, false) => SecurityProtocol::SaslPlaintext,
                (false, true) => SecurityProtocol::Ssl,
                (false, false) => SecurityProtocol::Plaintext,
            },
        },
    };
    let sasl = match (username, password) {
        (Some(username), Some(password)) => Some(SaslSettings {
            mechanism,
            username,
            password: Password::new(password),
        }),
        (Some(_), None) if protocol.uses_sasl() => return Err(invalid(
            "a SASL user needs a password: --sasl-password, CHRONIK_SASL_PASSWORD or sasl.password"
                .to_owned(),
        )),
        _ => None,
    };
    let security = ClientSecurity {
        protocol,
        tls,
        sasl,
    };
    let connector =
        ClientConnector::new(&security, CLIENT_ID).map_err(|e| invalid(e.to_string()))?;
    let bootstrap_servers = from_file("bootstrap.servers")
        .map(|servers| {
            servers
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Ok(KafkaSettings {
        connector,
        bootstrap_servers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_key_value_lines() {
        let text = "# written by chronikctl\n\nbootstrap.servers = a:1,b:2\n! comment\nsasl.password=p=w\n";
        let properties = parse_properties(text).expect("parses");
        assert_eq!(properties["bootstrap.servers"], "a:1,b:2");
        assert_eq!(properties["sasl.password"], "p=w");
        assert!(parse_properties("no equals sign").is_err());
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("client.properties");
        std::fs::write(
            &file,
            "bootstrap.servers=127.0.0.1:1,127.0.0.1:2\nsecurity.protocol=SASL_PLAINTEXT\n\
             sasl.mechanism=SCRAM-SHA-256\nsasl.username=admin\nsasl.password=from-file\n",
        )
        .expect("write");
        let args = SecurityOptions {
            client_config: Some(file.clone()),
            ..SecurityOptions::default()
        };
        let settings = resolve(&args).expect("valid");
        assert_eq!(settings.bootstrap_servers, ["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(
            settings.connector.protocol(),
            SecurityProtocol::SaslPlaintext
        );
        let debug = format!("{:?}", settings.connector);
        assert!(
            debug.contains("ScramSha256") && !debug.contains("from-file"),
            "{debug}"
        );

        let args = SecurityOptions {
            client_config: Some(file),
            sasl_mechanism: Some(SaslMechanism::Plain),
            security_protocol: Some(SecurityProtocol::Plaintext),
            ..SecurityOptions::default()
        };
        let settings = resolve(&args).expect("valid");
        assert_eq!(settings.connector.protocol(), SecurityProtocol::Plaintext);

        // SSL without a CA is refused before anything connects.
        let args = SecurityOptions {
            security_protocol: Some(SecurityProtocol::Ssl),
            ..SecurityOptions::default()
        };
        let error = resolve(&args).expect_err("no CA");
        assert!(error.to_string().contains("CA bundle"), "{error}");
        let args = SecurityOptions {
            sasl_username: Some("u".to_owned()),
            ..SecurityOptions::default()
        };
        assert!(resolve(&args)
            .expect_err("no password")
            .to_string()
            .contains("password"));
    }
}
