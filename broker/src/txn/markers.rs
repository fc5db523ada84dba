//! Writing a transaction's markers (Kafka's `TransactionMarkerChannelManager`): WriteTxnMarkers to the
//! leader of every partition in the transaction, one request per leader, over the inter-broker
//! listener with its security (`chronik_wire::ClientConnector`, as the replica fetchers connect).
//!
//! A connection is kept per leader between requests (one request at a time on it); one that fails
//! is dropped, and one whose SASL session is about to end is replaced.
//!
//! What must stay true: [`MarkerSender::write_markers`] returns `Written` only when every partition's
//! leader has answered that its marker is written; a partition whose topic was deleted needs none.
//! Leaders are re-resolved from the metadata image on every round, so a leader that moved or died is
//! retried at its successor until the marker is written or the coordinator gives the transaction up
//! (it lost the partition, or a leader says a newer coordinator took over).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use chronik_metadata::{BrokerId, MetadataImage};
use chronik_wire::{decode_response, encode_request, read_frame, ClientConnector, KafkaStream};
use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::metadata::MetadataCache;

/// The WriteTxnMarkers version sent (the flexible one every Kafka 2.8+ broker serves).
const WRITE_TXN_MARKERS_VERSION: i16 = 1;
/// How long one leader may take to connect and answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_RESPONSE_FRAME: usize = 1 << 20;
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(50);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// An idle connection whose SASL session ends sooner than this is not reused.
const SESSION_MARGIN: Duration = Duration::from_secs(2);

/// One transaction's markers to write.
#[derive(Clone, Debug)]
pub struct Markers {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
    pub partitions: BTreeSet<(String, i32)>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum MarkerOutcome {
    Written,
    /// `still_wanted` said no: another coordinator owns the transaction now.
    GivenUp,
    /// A leader refused the coordinator epoch or the producer epoch: a newer coordinator or producer
    /// exists, so this one stops.
    Fenced(ResponseError),
}

pub struct MarkerSender {
    connector: ClientConnector,
    listener: String,
    metadata: Arc<MetadataCache>,
    client_id: String,
    /// One idle connection per leader, reused by the next request to it (a request in flight owns
    /// its connection; a failed one is dropped).
    idle: Mutex<HashMap<BrokerId, IdleConnection>>,
}

struct IdleConnection {
    address: String,
    stream: KafkaStream<TcpStream>,
    correlation_id: i32,
    /// When the leader ends its SASL session (KIP-368), if it does.
    expires: Option<Instant>,
}

impl MarkerSender {
    pub fn new(
        connector: ClientConnector,
        listener: String,
        metadata: Arc<MetadataCache>,
        broker_id: BrokerId,
    ) -> Self {
        MarkerSender {
            connector,
            listener,
            metadata,
            client_id: format!("chronik-txn-coordinator-{broker_id}"),
            idle: Mutex::new(HashMap::new()),
        }
    }

    /// Writes every marker of `markers`, retrying with backoff, while `still_wanted()` holds.
    pub async fn write_markers(
        &self,
        markers: &Markers,
        still_wanted: impl Fn() -> bool,
    ) -> MarkerOutcome {
        let mut remaining = markers.partitions.clone();
        let mut backoff = RETRY_BACKOFF_MIN;
        let mut rounds = 0u32;
        loop {
            let image = self.metadata.current();
            remaining.retain(|(topic, partition)| {
                // A deleted partition needs no marker (Kafka drops markers for deleted topics too).
                image
                    .topic_by_name(topic)
                    .is_some_and(|t| *partition >= 0 && (*partition as usize) < t.partitions.len())
            });
            if remaining.is_empty() {
                return MarkerOutcome::Written;
            }
            if !still_wanted() {
                return MarkerOutcome::GivenUp;
            }
            let mut by_leader: HashMap<BrokerId, Vec<(String, i32)>> = HashMap::new();
            for (topic, partition) in &remaining {
                let leader = image
                    .topic_by_name(topic)
                    .and_then(|t| t.partitions.get(*partition as usize))
                    .filter(|p| p.has_leader())
                    .map(|p| p.leader);
                if let Some(leader) = leader {
                    by_leader
                        .entry(leader)
                        .or_default()
                        .push((topic.clone(), *partition));
                }
            }
            let sends = by_leader
                .into_iter()
                .map(|(leader, partitions)| self.send(&image, leader, markers, partitions));
            for result in join_all(sends).await {
                match result {
                    Ok(written) => {
                        for p in written {
                            remaining.remove(&p);
                        }
                    }
                    Err(SendError::Fenced(error)) => return MarkerOutcome::Fenced(error),
                    Err(SendError::Retry(reason)) => {
                        debug!(transactional_id = %markers.transactional_id, "marker write retried: {reason}");
                    }
                }
            }
            if remaining.is_empty() {
                return MarkerOutcome::Written;
            }
            rounds += 1;
            if rounds.is_multiple_of(20) {
                info!(
                    transactional_id = %markers.transactional_id,
                    remaining = remaining.len(),
                    rounds,
                    "transaction markers still not written"
                );
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
        }
    }

    /// One WriteTxnMarkers to `leader`: the partitions it wrote the marker for.
    async fn send(
        &self,
        image: &MetadataImage,
        leader: BrokerId,
        markers: &Markers,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<(String, i32)>, SendError> {
        let endpoint = image
            .brokers
            .get(&leader)
            .filter(|b| !b.fenced)
            .and_then(|b| b.endpoint(Some(&self.listener)))
            .ok_or_else(|| SendError::Retry(format!("leader {leader} has no live endpoint")))?;
        let address = format!("{}:{}", endpoint.host, endpoint.port);
        let mut topics: Vec<WritableTxnMarkerTopic> = Vec::new();
        for (topic, partition) in &partitions {
            match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                Some(t) => t.partition_indexes.push(*partition),
                None => topics.push(
                    WritableTxnMarkerTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.clone())))
                        .with_partition_indexes(vec![*partition]),
                ),
            }
        }
        let request =
            WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
                .with_producer_id(ProducerId(markers.producer_id))
                .with_producer_epoch(markers.producer_epoch)
                .with_transaction_result(markers.commit)
                .with_coordinator_epoch(markers.coordinator_epoch)
                .with_topics(topics)]);
        let reused = self
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&leader)
            .filter(|c| {
                c.address == address
                    && c.expires
                        .is_none_or(|at| Instant::now() + SESSION_MARGIN < at)
            });
        let exchange = async {
            let mut connection = match reused {
                Some(connection) => connection,
                None => {
                    let stream = self
                        .connector
                        .connect(&address)
                        .await
                        .map_err(|e| e.to_string())?;
                    let expires = stream.session_lifetime().map(|l| Instant::now() + l);
                    IdleConnection {
                        address: address.clone(),
                        stream,
                        correlation_id: 0,
                        expires,
                    }
                }
            };
            connection.correlation_id = connection.correlation_id.wrapping_add(1);
            let correlation_id = connection.correlation_id;
            let mut frame = BytesMut::new();
            encode_request(
                &mut frame,
                &request,
                WRITE_TXN_MARKERS_VERSION,
                correlation_id,
                &self.client_id,
            )
            .map_err(|e| e.to_string())?;
            connection
                .stream
                .write_all(&frame)
                .await
                .map_err(|e| e.to_string())?;
            connection.stream.flush().await.map_err(|e| e.to_string())?;
            let body = read_frame(&mut connection.stream, MAX_RESPONSE_FRAME)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "the leader closed the connection".to_string())?;
            let response = decode_response::<WriteTxnMarkersRequest>(
                body,
                WRITE_TXN_MARKERS_VERSION,
                correlation_id,
            )
            .map_err(|e| e.to_string())?;
            Ok::<_, String>((response, connection))
        };
        let response = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| SendError::Retry(format!("leader {leader} did not answer in time")))?
            .map_err(|e| SendError::Retry(format!("leader {leader} at {address}: {e}")))?;
        let (response, connection) = response;
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(leader, connection);
        let mut written = Vec::new();
        for marker in response.markers {
            for topic in marker.topics {
                for p in topic.partitions {
                    match ResponseError::try_from_code(p.error_code) {
                        // Kafka counts a partition whose format cannot hold markers as done.
                        None | Some(ResponseError::UnsupportedForMessageFormat) => {
                            written.push((topic.name.0.to_string(), p.partition_index))
                        }
                        Some(
                            error @ (ResponseError::TransactionCoordinatorFenced
                            | ResponseError::InvalidProducerEpoch
                            | ResponseError::ProducerFenced),
                        ) => return Err(SendError::Fenced(error)),
                        Some(error) => debug!(
                            topic = %topic.name.0,
                            partition = p.partition_index,
                            "marker not written: {error:?}"
                        ),
                    }
                }
            }
        }
        Ok(written)
    }
}

enum SendError {
    Fenced(ResponseError),
    Retry(String),
}
