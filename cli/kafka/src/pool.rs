//! One cached connection per broker id, for the admin commands that talk to several brokers (every
//! broker for ListGroups, the coordinator for group requests, partition leaders for ListOffsets).
//!
//! What must stay true: every call has a deadline of one request timeout (connecting and ApiVersions
//! included); the version sent is the highest both sides speak within the caller's range, and the
//! caller builds the request for that version (request shapes change between versions); a connection
//! that failed mid-request is dropped, so the next call reconnects instead of reading a stale answer.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::time::Duration;

use kafka_protocol::protocol::Request;
use tokio::time::Instant;

use super::{api_key, KafkaConnection, KafkaError};

/// Lazily opened connections to brokers, by broker id.
#[derive(Debug)]
pub struct BrokerPool {
    addresses: BTreeMap<i32, String>,
    connections: HashMap<i32, KafkaConnection>,
    request_timeout: Duration,
}

impl BrokerPool {
    /// A pool over `addresses` (broker id → `host:port`); nothing is connected yet.
    pub fn new(addresses: BTreeMap<i32, String>, request_timeout: Duration) -> Self {
        BrokerPool {
            addresses,
            connections: HashMap::new(),
            request_timeout,
        }
    }

    /// The known broker ids, ascending.
    pub fn broker_ids(&self) -> Vec<i32> {
        self.addresses.keys().copied().collect()
    }

    /// The address of `broker`, if known.
    pub fn address(&self, broker: i32) -> Option<&str> {
        self.addresses.get(&broker).map(String::as_str)
    }

    /// Records (or corrects) where `broker` listens, e.g. from a FindCoordinator answer.
    pub fn learn(&mut self, broker: i32, address: String) {
        if self.addresses.get(&broker) != Some(&address) {
            self.connections.remove(&broker);
            self.addresses.insert(broker, address);
        }
    }

    /// How long one request may take.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Sends `build(version)` to `broker` at the highest version both sides speak within `versions`
    /// and waits for the answer, for at most one request timeout. Returns the version used too.
    pub async fn call<R: Request>(
        &mut self,
        broker: i32,
        versions: RangeInclusive<i16>,
        build: impl FnOnce(i16) -> R,
    ) -> Result<(i16, R::Response), KafkaError> {
        let deadline = Instant::now() + self.request_timeout;
        let connection = self.connection(broker, deadline).await?;
        let version = connection.version(api_key::<R>(), *versions.start(), *versions.end())?;
        let request = build(version);
        let answer = connection.call(&request, version, deadline).await;
        self.keep_if_sound(broker, answer.map(|response| (version, response)))
    }

    /// Writes `build(version)` to `broker` without reading an answer: for a Produce with acks=0,
    /// which the broker never answers. Returns the version used.
    pub async fn send<R: Request>(
        &mut self,
        broker: i32,
        versions: RangeInclusive<i16>,
        build: impl FnOnce(i16) -> R,
    ) -> Result<i16, KafkaError> {
        let deadline = Instant::now() + self.request_timeout;
        let connection = self.connection(broker, deadline).await?;
        let version = connection.version(api_key::<R>(), *versions.start(), *versions.end())?;
        let request = build(version);
        let sent = connection.send(&request, version, deadline).await;
        self.keep_if_sound(broker, sent.map(|_| version))
    }

    /// The open connection to `broker`, opened now if there is none.
    async fn connection(
        &mut self,
        broker: i32,
        deadline: Instant,
    ) -> Result<&mut KafkaConnection, KafkaError> {
        let address = self
            .addresses
            .get(&broker)
            .cloned()
            .ok_or(KafkaError::UnknownBroker { broker_id: broker })?;
        Ok(match self.connections.entry(broker) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(KafkaConnection::open(&address, deadline).await?),
        })
    }

    /// Drops the connection to `broker` when `result` says it broke.
    fn keep_if_sound<T>(
        &mut self,
        broker: i32,
        result: Result<T, KafkaError>,
    ) -> Result<T, KafkaError> {
        if let Err(error) = &result {
            if error.breaks_connection() {
                self.connections.remove(&broker);
            }
        }
        result
    }
}
