//! A minimal Kafka client (crate `chronik-kafka-client`, chronikctl's `kafka` module) over tokio TCP
//! (through TLS and SASL as [`security`] says), shared by `chronikctl bench`, `group` and
//! `topic produce|consume` and the controllers' web console: size-prefixed frames, a request header chosen by the API version, and responses decoded with
//! the header version Kafka uses for that API (ApiVersions answers always use header v0). Opening a
//! connection sends ApiVersions so later requests use the highest version both sides speak. Every wait
//! has a deadline.
//!
//! A connection splits into a [`RequestWriter`] and a [`ResponseReader`] so a benchmark can pipeline:
//! Kafka answers the requests of one connection in order, so the reader takes responses in the order
//! the writer sent requests and checks each correlation id against the request it expects.
//! [`BrokerPool`] keeps one connection per broker id for the admin commands, and
//! [`consumer_protocol`] decodes what consumer groups store as opaque bytes.
//!
//! The record path is built from shared pieces, each in one place: [`topic`] (where a topic's
//! partitions and leaders are), [`leader_router`] (requests to leaders, refreshed and retried after
//! a leader change), [`records`] (RecordBatch v2 encoding and decoding with every codec),
//! [`producer`] (idempotent Produce), [`fetch`] (the consumer's Fetch) and [`group_member`] (a
//! consumer-group member).

pub mod admin;
pub mod consumer_protocol;
pub mod error;
pub mod fetch;
pub mod group_member;
pub mod leader_router;
pub mod pool;
pub mod producer;
pub mod records;
pub mod security;
pub mod topic;
pub mod txn;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use chronik_wire::FrameError;
use chronik_wire::{ConnectError, KafkaStream};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::io::{AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

pub use admin::KafkaAdmin;
pub use error::{error_name, KafkaError};
pub use pool::BrokerPool;

/// The `client_id` of every request.
pub const CLIENT_ID: &str = "chronikctl";

/// The largest response frame accepted (Kafka's `socket.request.max.bytes`).
pub const MAX_RESPONSE_BYTES: usize = 100 * 1024 * 1024;

/// `UNSUPPORTED_VERSION`, which a broker answers to an ApiVersions request that is too new.
const UNSUPPORTED_VERSION: i16 = 35;

/// The API versions a broker offers, from its ApiVersions answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerVersions {
    ranges: Vec<(i16, i16, i16)>,
}

impl BrokerVersions {
    /// Keeps the ranges of an ApiVersions answer.
    pub fn from_response(response: &ApiVersionsResponse) -> Self {
        BrokerVersions {
            ranges: response
                .api_keys
                .iter()
                .map(|api| (api.api_key, api.min_version, api.max_version))
                .collect(),
        }
    }

    /// The broker's range for `api`, if it offers it.
    pub fn range(&self, api: ApiKey) -> Option<(i16, i16)> {
        self.ranges
            .iter()
            .find(|(key, _, _)| *key == api as i16)
            .map(|&(_, min, max)| (min, max))
    }

    /// The highest version of `api` in both the broker's range and `client_min..=client_max`.
    pub fn pick(
        &self,
        address: &str,
        api: ApiKey,
        client_min: i16,
        client_max: i16,
    ) -> Result<i16, KafkaError> {
        let Some((broker_min, broker_max)) = self.range(api) else {
            return Err(KafkaError::NotOffered {
                address: address.to_owned(),
                api,
            });
        };
        let version = client_max.min(broker_max);
        if version < client_min.max(broker_min) {
            return Err(KafkaError::UnsupportedVersion {
                address: address.to_owned(),
                api,
                broker_min,
                broker_max,
                client_min,
                client_max,
            });
        }
        Ok(version)
    }
}

/// An open connection to one broker, after ApiVersions.
#[derive(Debug)]
pub struct KafkaConnection {
    writer: RequestWriter,
    reader: ResponseReader,
    versions: BrokerVersions,
}

impl KafkaConnection {
    /// Connects to `address` (through TLS and SASL as [`security::connector`] says) and asks for its
    /// API versions (v3, or v0 when the broker refuses v3).
    pub async fn open(address: &str, deadline: Instant) -> Result<Self, KafkaError> {
        let connector = security::connector();
        let stream = within(deadline, connector.connect(address), || {
            format!("connecting to {address}")
        })
        .await?
        .map_err(|error| match error {
            ConnectError::Connect { address, source } => KafkaError::Connect {
                address,
                error: source,
            },
            error => KafkaError::Secure(error),
        })?;
        let address: Arc<str> = Arc::from(address);
        let (read_half, write_half) = tokio::io::split(stream);
        let mut connection = KafkaConnection {
            writer: RequestWriter {
                address: address.clone(),
                half: write_half,
                next_correlation_id: 1,
                buffer: BytesMut::with_capacity(64 * 1024),
            },
            reader: ResponseReader {
                address,
                half: BufReader::with_capacity(256 * 1024, read_half),
            },
            versions: BrokerVersions::default(),
        };
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("chronikctl"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut response = connection.call(&request, 3, deadline).await?;
        if response.error_code == UNSUPPORTED_VERSION {
            response = connection.call(&request, 0, deadline).await?;
        }
        if response.error_code != 0 {
            return Err(KafkaError::broker(
                format!("ApiVersions with {}", connection.address()),
                response.error_code,
            ));
        }
        connection.versions = BrokerVersions::from_response(&response);
        Ok(connection)
    }

    /// The broker address.
    pub fn address(&self) -> &str {
        &self.writer.address
    }

    /// The highest version of `api` both sides speak within `client_min..=client_max`.
    pub fn version(
        &self,
        api: ApiKey,
        client_min: i16,
        client_max: i16,
    ) -> Result<i16, KafkaError> {
        self.versions
            .pick(self.address(), api, client_min, client_max)
    }

    /// Sends one request and waits for its response.
    pub async fn call<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        deadline: Instant,
    ) -> Result<R::Response, KafkaError> {
        let correlation_id = self.writer.send(request, version).await?;
        let api = api_key::<R>();
        within(
            deadline,
            self.reader.receive::<R>(correlation_id, version),
            || format!("waiting for a {api:?} answer from {}", self.writer.address),
        )
        .await?
    }

    /// Writes one request without waiting for an answer (a Produce with acks=0 gets none); returns
    /// its correlation id.
    pub async fn send<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        deadline: Instant,
    ) -> Result<i32, KafkaError> {
        let api = api_key::<R>();
        let address = self.writer.address.clone();
        within(deadline, self.writer.send(request, version), || {
            format!("sending a {api:?} request to {address}")
        })
        .await?
    }

    /// Splits the connection so requests can be written while earlier responses are read.
    pub fn into_split(self) -> (RequestWriter, ResponseReader) {
        (self.writer, self.reader)
    }
}

/// The sending half of a connection.
#[derive(Debug)]
pub struct RequestWriter {
    address: Arc<str>,
    half: WriteHalf<KafkaStream<TcpStream>>,
    next_correlation_id: i32,
    buffer: BytesMut,
}

impl RequestWriter {
    /// Writes one request frame; returns its correlation id.
    pub async fn send<R: Request>(&mut self, request: &R, version: i16) -> Result<i32, KafkaError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        self.buffer.clear();
        chronik_wire::encode_request(
            &mut self.buffer,
            request,
            version,
            correlation_id,
            CLIENT_ID,
        )
        .map_err(|e| KafkaError::Protocol {
            address: self.address.to_string(),
            api: api_key::<R>(),
            version,
            reason: e.to_string(),
        })?;
        // TLS holds written records until flushed.
        let written = match self.half.write_all(&self.buffer).await {
            Ok(()) => self.half.flush().await,
            Err(error) => Err(error),
        };
        written.map_err(|error| KafkaError::Io {
            address: self.address.to_string(),
            error,
        })?;
        Ok(correlation_id)
    }
}

/// The receiving half of a connection.
#[derive(Debug)]
pub struct ResponseReader {
    address: Arc<str>,
    half: BufReader<ReadHalf<KafkaStream<TcpStream>>>,
}

impl ResponseReader {
    /// Reads the next response frame and decodes it as the answer to request `correlation_id`.
    pub async fn receive<R: Request>(
        &mut self,
        correlation_id: i32,
        version: i16,
    ) -> Result<R::Response, KafkaError> {
        let frame = self.read_frame().await?;
        chronik_wire::decode_response::<R>(frame, version, correlation_id).map_err(|e| {
            KafkaError::Protocol {
                address: self.address.to_string(),
                api: api_key::<R>(),
                version,
                reason: e.to_string(),
            }
        })
    }

    async fn read_frame(&mut self) -> Result<Bytes, KafkaError> {
        let io = |error| KafkaError::Io {
            address: self.address.to_string(),
            error,
        };
        match chronik_wire::read_frame(&mut self.half, MAX_RESPONSE_BYTES).await {
            Ok(Some(frame)) => Ok(frame),
            Ok(None) => Err(io(std::io::ErrorKind::UnexpectedEof.into())),
            Err(FrameError::Io(error)) => Err(io(error)),
            Err(e) => Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("response {e}"),
            ))),
        }
    }
}

pub use chronik_wire::api_key;

/// Runs `future` until `deadline`; `waiting_for` words the timeout.
pub async fn within<T>(
    deadline: Instant,
    future: impl std::future::Future<Output = T>,
    waiting_for: impl FnOnce() -> String,
) -> Result<T, KafkaError> {
    tokio::time::timeout_at(deadline, future)
        .await
        .map_err(|_| KafkaError::Timeout {
            waiting_for: waiting_for(),
        })
}

/// `host:port`, with an IPv6 host in brackets.
pub fn join_host_port(host: &str, port: i32) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A Kafka error code as an error of a setup request, or `Ok` for 0.
pub fn check_code(what: impl FnOnce() -> String, code: i16) -> Result<(), KafkaError> {
    if code == 0 {
        Ok(())
    } else {
        Err(KafkaError::Broker {
            what: what(),
            code,
            name: error_name(code),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::ResponseHeader;
    use kafka_protocol::protocol::Encodable;

    fn versions() -> BrokerVersions {
        BrokerVersions::from_response(&ApiVersionsResponse::default().with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(ApiKey::Produce as i16)
                .with_min_version(0)
                .with_max_version(11),
            ApiVersion::default()
                .with_api_key(ApiKey::Fetch as i16)
                .with_min_version(4)
                .with_max_version(17),
        ]))
    }

    #[test]
    fn the_highest_common_version_is_picked() {
        let versions = versions();
        assert_eq!(versions.pick("b", ApiKey::Produce, 3, 11).ok(), Some(11));
        assert_eq!(versions.pick("b", ApiKey::Produce, 3, 9).ok(), Some(9));
        assert_eq!(versions.pick("b", ApiKey::Fetch, 4, 12).ok(), Some(12));
        assert!(matches!(
            versions.pick("b", ApiKey::Fetch, 0, 3),
            Err(KafkaError::UnsupportedVersion { .. })
        ));
        let error = versions
            .pick("b", ApiKey::Metadata, 4, 12)
            .expect_err("not offered");
        assert_eq!(error.to_string(), "broker b does not offer Metadata");
    }

    #[test]
    fn ipv6_hosts_get_brackets() {
        assert_eq!(join_host_port("::1", 9092), "[::1]:9092");
        assert_eq!(join_host_port("127.0.0.1", 9092), "127.0.0.1:9092");
    }

    #[test]
    fn api_versions_answers_use_header_v0() {
        let mut buffer = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(1)
            .encode(&mut buffer, 0)
            .expect("header");
        ApiVersionsResponse::default()
            .encode(&mut buffer, 3)
            .expect("body");
        assert!(chronik_wire::decode_response::<ApiVersionsRequest>(buffer.freeze(), 3, 1).is_ok());
    }
}
