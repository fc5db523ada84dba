//! How every Kafka-protocol client in Chronik (the broker's replica fetchers, `chronikctl`) opens a
//! connection: [`ClientSecurity`] says what a listener expects, in Kafka's words (`security.protocol`
//! PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; `sasl.mechanism` PLAIN, SCRAM-SHA-256 or
//! SCRAM-SHA-512; a CA bundle and, for mutual TLS, a client certificate and key), and
//! [`ClientConnector`] turns a TCP stream into a [`KafkaStream`] that is through TLS and SASL and
//! ready for any request.
//!
//! What must stay true: certificates and keys are read once, when the connector is built, so a bad
//! file is a configuration error at start and not a failed connection later; TLS always verifies the
//! server's certificate chain and name against the configured CA (there is no "insecure" switch); the
//! password is never printed (`Debug` shows `***`) and never part of an error.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use chronik_metadata::scram::ScramMechanism;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::RootCertStore;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::sasl::{self, SaslError};

/// Kafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub const ALL: [SecurityProtocol; 4] = [
        Self::Plaintext,
        Self::Ssl,
        Self::SaslPlaintext,
        Self::SaslSsl,
    ];

    /// Kafka's name, e.g. `SASL_SSL`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;

    /// Case-insensitive, as librdkafka reads `security.protocol`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(Self::Plaintext),
            "SSL" => Ok(Self::Ssl),
            "SASL_PLAINTEXT" => Ok(Self::SaslPlaintext),
            "SASL_SSL" => Ok(Self::SaslSsl),
            _ => Err(format!(
                "unknown security protocol {s:?} (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"
            )),
        }
    }
}

/// Kafka's `sasl.mechanism`, those Chronik's brokers serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    /// Every mechanism, in the order a broker lists them by default.
    pub const ALL: [SaslMechanism; 3] = [Self::ScramSha256, Self::ScramSha512, Self::Plain];

    /// The mechanism of exactly this name: names are case-sensitive on the wire (Kafka's
    /// `SaslServerAuthenticator.handleHandshakeRequest` compares with `equals`); `FromStr` is the
    /// case-insensitive reading of a setting.
    pub fn from_name(name: &str) -> Option<SaslMechanism> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// The SCRAM hash, for the SCRAM mechanisms.
    pub fn scram(self) -> Option<ScramMechanism> {
        match self {
            Self::Plain => None,
            Self::ScramSha256 => Some(ScramMechanism::Sha256),
            Self::ScramSha512 => Some(ScramMechanism::Sha512),
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SaslMechanism {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(Self::Plain),
            "SCRAM-SHA-256" => Ok(Self::ScramSha256),
            "SCRAM-SHA-512" => Ok(Self::ScramSha512),
            _ => Err(format!(
                "unknown SASL mechanism {s:?} (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
            )),
        }
    }
}

/// A secret that `Debug` does not show.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(password: impl Into<String>) -> Self {
        Password(password.into())
    }

    /// The password itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// SASL credentials: Kafka's `sasl.mechanism`, `sasl.username`, `sasl.password`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslSettings {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: Password,
}

/// TLS: the CA bundle that signs the brokers' certificates (`ssl.ca.location`), and for mutual TLS
/// this client's certificate chain and key (`ssl.certificate.location`, `ssl.key.location`), all PEM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub ca: Option<PathBuf>,
    pub certificate: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The name the server's certificate must carry; by default the host of the address connected to
    /// (an IP address is matched against the certificate's IP SANs).
    pub server_name: Option<String>,
}

/// Everything a connection to one listener needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSecurity {
    pub protocol: SecurityProtocol,
    pub tls: TlsSettings,
    /// Required by the SASL protocols, ignored by the others.
    pub sasl: Option<SaslSettings>,
}

/// Why a [`ClientSecurity`] cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecurityConfigError {
    #[error("{protocol} needs a CA bundle (ssl.ca.location) to verify the brokers' certificates")]
    NoCa { protocol: SecurityProtocol },
    #[error("cannot read {what} {path}: {reason}")]
    Read {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{path} holds no {what}")]
    Empty { what: &'static str, path: PathBuf },
    #[error("a client certificate needs its key and a key its certificate (ssl.certificate.location and ssl.key.location)")]
    HalfClientCertificate,
    #[error("{protocol} needs a SASL mechanism, username and password")]
    NoSaslCredentials { protocol: SecurityProtocol },
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// Why a connection could not be opened, secured or authenticated.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {address}: {source}")]
    Connect { address: String, source: io::Error },
    #[error("{address}: invalid TLS server name {name:?}")]
    ServerName { address: String, name: String },
    #[error("TLS handshake with {address} failed: {source}")]
    Tls { address: String, source: io::Error },
    #[error("{address}: {source}")]
    Sasl { address: String, source: SaslError },
}

impl ConnectError {
    /// Whether nothing listens at the address (the TCP connection was refused).
    pub fn is_refused(&self) -> bool {
        matches!(self, Self::Connect { source, .. } if source.kind() == io::ErrorKind::ConnectionRefused)
    }
}

/// Opens connections as a [`ClientSecurity`] says; cheap to clone.
#[derive(Clone)]
pub struct ClientConnector {
    protocol: SecurityProtocol,
    tls: Option<TlsConnector>,
    server_name: Option<String>,
    sasl: Option<SaslSettings>,
    client_id: String,
}

impl fmt::Debug for ClientConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConnector")
            .field("protocol", &self.protocol)
            .field("server_name", &self.server_name)
            .field("sasl", &self.sasl)
            .finish_non_exhaustive()
    }
}

impl ClientConnector {
    /// A connector for PLAINTEXT listeners.
    pub fn plaintext(client_id: &str) -> Self {
        ClientConnector {
            protocol: SecurityProtocol::Plaintext,
            tls: None,
            server_name: None,
            sasl: None,
            client_id: client_id.to_owned(),
        }
    }

    /// Checks `security` and reads its certificates and keys. `client_id` names the SASL requests.
    pub fn new(security: &ClientSecurity, client_id: &str) -> Result<Self, SecurityConfigError> {
        let protocol = security.protocol;
        let sasl = if protocol.uses_sasl() {
            Some(
                security
                    .sasl
                    .clone()
                    .ok_or(SecurityConfigError::NoSaslCredentials { protocol })?,
            )
        } else {
            None
        };
        let tls = if protocol.uses_tls() {
            Some(TlsConnector::from(Arc::new(tls_config(
                protocol,
                &security.tls,
            )?)))
        } else {
            None
        };
        Ok(ClientConnector {
            protocol,
            tls,
            server_name: security.tls.server_name.clone(),
            sasl,
            client_id: client_id.to_owned(),
        })
    }

    pub fn protocol(&self) -> SecurityProtocol {
        self.protocol
    }

    /// Connects to `address` (`host:port`) and secures the connection.
    pub async fn connect(&self, address: &str) -> Result<KafkaStream<TcpStream>, ConnectError> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|source| ConnectError::Connect {
                address: address.to_owned(),
                source,
            })?;
        // Small requests (Fetch, acks) must not wait for Nagle.
        stream
            .set_nodelay(true)
            .map_err(|source| ConnectError::Connect {
                address: address.to_owned(),
                source,
            })?;
        self.secure(stream, address).await
    }

    /// Runs the TLS handshake and SASL authentication the protocol asks for on a connected `stream` to
    /// `address`. The caller bounds it with a timeout.
    pub async fn secure<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        address: &str,
    ) -> Result<KafkaStream<S>, ConnectError> {
        let mut secured = match &self.tls {
            None => KafkaStream {
                transport: Transport::Plain(stream),
                session_lifetime: None,
            },
            Some(connector) => {
                let name = self
                    .server_name
                    .clone()
                    .unwrap_or_else(|| host_of(address).to_owned());
                let server_name =
                    ServerName::try_from(name.clone()).map_err(|_| ConnectError::ServerName {
                        address: address.to_owned(),
                        name,
                    })?;
                let tls = connector
                    .connect(server_name, stream)
                    .await
                    .map_err(|source| ConnectError::Tls {
                        address: address.to_owned(),
                        source,
                    })?;
                KafkaStream {
                    transport: Transport::Tls(Box::new(tls)),
                    session_lifetime: None,
                }
            }
        };
        if let Some(settings) = &self.sasl {
            secured.session_lifetime = sasl::authenticate(&mut secured, settings, &self.client_id)
                .await
                .map_err(|source| ConnectError::Sasl {
                    address: address.to_owned(),
                    source,
                })?;
        }
        Ok(secured)
    }
}

/// The host of `host:port` (`[v6]:port` too), or the whole string.
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn tls_config(
    protocol: SecurityProtocol,
    settings: &TlsSettings,
) -> Result<rustls::ClientConfig, SecurityConfigError> {
    let ca = settings
        .ca
        .as_deref()
        .ok_or(SecurityConfigError::NoCa { protocol })?;
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(ca, "CA bundle")? {
        roots
            .add(certificate)
            .map_err(|e| SecurityConfigError::Read {
                what: "CA bundle",
                path: ca.to_owned(),
                reason: e.to_string(),
            })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SecurityConfigError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    match (&settings.certificate, &settings.key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(certificate), Some(key)) => {
            let chain = read_certificates(certificate, "certificate")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| SecurityConfigError::Read {
                what: "private key",
                path: key.to_owned(),
                reason: e.to_string(),
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| SecurityConfigError::Tls(e.to_string()))
        }
        _ => Err(SecurityConfigError::HalfClientCertificate),
    }
}

fn read_certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, SecurityConfigError> {
    let read_error = |e: rustls::pki_types::pem::Error| SecurityConfigError::Read {
        what,
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(read_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    if certificates.is_empty() {
        return Err(SecurityConfigError::Empty {
            what: "PEM certificate",
            path: path.to_owned(),
        });
    }
    Ok(certificates)
}

/// A connection through TLS and SASL as its listener requires, or a plain one.
#[derive(Debug)]
pub struct KafkaStream<S> {
    transport: Transport<S>,
    session_lifetime: Option<Duration>,
}

#[derive(Debug)]
enum Transport<S> {
    Plain(S),
    Tls(Box<tokio_rustls::client::TlsStream<S>>),
}

impl<S> KafkaStream<S> {
    /// The connection underneath TLS (the fetcher watches its socket).
    pub fn get_ref(&self) -> &S {
        match &self.transport {
            Transport::Plain(stream) => stream,
            Transport::Tls(tls) => tls.get_ref().0,
        }
    }

    /// Whether the connection runs TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.transport, Transport::Tls(_))
    }

    /// How long the SASL session lasts (KIP-368: the broker closes the connection afterwards unless
    /// the client authenticates again); `None` when the broker set no limit or there is no SASL.
    pub fn session_lifetime(&self) -> Option<Duration> {
        self.session_lifetime
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for KafkaStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().transport {
            Transport::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for KafkaStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().transport {
            Transport::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().transport {
            Transport::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.transport {
            Transport::Plain(stream) => stream.is_write_vectored(),
            Transport::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().transport {
            Transport::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().transport {
            Transport::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
