//! Followers copy partitions from their leaders over the Kafka protocol (Kafka's `ReplicaFetcherThread`;
//! truncation by KIP-101 and KIP-279): one fetcher per source broker carries every partition this broker
//! follows there, in one fetch session (KIP-227, [`FetchSessionHandler`]): after a first full fetch,
//! a request names only the partitions whose fetch state changed, and the answer only those that
//! changed at the leader. Each Fetch names this broker and its broker epoch; the leader's batches are appended as
//! they are (offsets and epochs kept), made durable under the topic's flush policy before the next fetch
//! reports the new log end, and a diverging epoch truncates the log to where it agrees with the leader —
//! never to the local high watermark.
//!
//! What must stay true: a response is applied only while the leader it came from still leads the
//! partition in the leader epoch the request named, checked under the partition's state lock so no
//! role change interleaves; the follower's high watermark is `min(leader's, own log end)` and never
//! moves back except by truncation; a fetch gives up before the broker session timeout; partitions
//! that returned data go to the end of the next full request (and of the leader's session order for
//! incremental ones), so a response bounded by `max_bytes` starves none; a partition an incremental
//! response leaves out is unchanged at the leader, not in error; a follower whose whole log is below
//! the leader's log start (OFFSET_OUT_OF_RANGE,
//! with the leader's log start in the answer) empties it and restarts there, and one above it moves its
//! own log start up to the leader's (capped at its high watermark) as each response reports it, so
//! records deleted on the leader (DeleteRecords, retention) go here too; a partition whose log is
//! offline (a failed write or fsync) is no longer fetched, so no fetch ever reports an offset that may
//! not be durable (issue #11, defect 6).
//!
//! Connections go through the inter-broker listener's security (`chronik_wire::ClientConnector`:
//! TLS and SASL as the listener requires, with this broker's credentials); a SASL session the leader
//! limits in time (KIP-368) is replaced by a fresh, re-authenticated connection before it expires.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use chronik_metadata::{BrokerId, MetadataImage};
use chronik_wire::{
    decode_response, encode_request, read_frame, ClientConnector, ConnectError, FrameError,
    KafkaStream, WireError,
};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchTopic, ForgottenTopic, ReplicaState,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::manager::{LeaderProbe, Touched};
use super::{Partition, ReplicaManager};
use crate::log::PartitionLog;
use crate::metadata::MetadataCache;
use crate::metrics::metrics;
use crate::protocol::fetch_metadata::{next_epoch, INITIAL_EPOCH, INVALID_SESSION_ID};
use crate::status::BrokerStatus;

/// The Fetch version followers use: topic ids (v13+) and the broker epoch in `ReplicaState` (v15).
const FETCH_VERSION: i16 = 15;
/// How long a leader may hold a follower's fetch (the long poll); a healthy follower is silent at its
/// leader for little more than its own handling of the previous answer (see `--replica-fetch-stall-ms`).
const MAX_WAIT_MS: i32 = crate::config::FOLLOWER_FETCH_MAX_WAIT_MS as i32;
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const RESPONSE_MAX_BYTES: i32 = 10 << 20;
/// Largest fetch response accepted from a leader. A leader answers at most `RESPONSE_MAX_BYTES` plus
/// one batch (KIP-74, only the first partition with data may exceed it), and a batch is at most one
/// request frame (`--max-request-bytes`, 100 MiB by default): a response a leader may send is never
/// refused, so the follower never repeats a fetch whose answer it cannot take.
const MAX_RESPONSE_FRAME: usize = RESPONSE_MAX_BYTES as usize + (128 << 20);
const BACKOFF: Duration = Duration::from_millis(250);
/// After a connection that had answered breaks, the fetcher reconnects at once and then retries this
/// many times this far apart before backing off: a dying leader's listener may still complete a
/// handshake for a moment after its connections closed (the new connection is then reset), and the
/// refusal that follows is what proves it gone (`ReplicaManager::note_leader_refused`).
const QUICK_RETRIES: u32 = 3;
const QUICK_RETRY_DELAY: Duration = Duration::from_millis(5);
/// How long a fetch may take before the connection is dropped: the long poll plus room for the
/// transfer, and below the controller's broker session timeout (5 s by default), so a leader that
/// stopped answering (paused, cut off) is given up on before the controller fences it and names
/// another, rather than a late answer arriving after that.
const FETCH_TIMEOUT: Duration = Duration::from_millis(MAX_WAIT_MS as u64 + 2_500);
/// How long the TCP connect, and then the TLS handshake and SASL exchange together, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A connection whose SASL session expires within this (or within half its lifetime, for short
/// sessions) is replaced before its next fetch, so no fetch is cut off by the leader closing an
/// expired session.
const REAUTHENTICATE_MARGIN: Duration = Duration::from_secs(5);

/// How fetchers reach leaders: the inter-broker listener's name and its security.
#[derive(Clone, Debug)]
pub struct InterBrokerLink {
    pub listener: String,
    pub connector: ClientConnector,
}

/// Keeps one fetcher task per leader this broker follows partitions of; fetchers connect to leaders'
/// endpoints on the inter-broker listener through its security (`link`).
pub async fn run_fetcher_manager(
    replicas: Arc<ReplicaManager>,
    metadata: Arc<MetadataCache>,
    status: watch::Receiver<BrokerStatus>,
    link: InterBrokerLink,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let self_id = replicas.broker_id();
    let mut fetchers: HashMap<BrokerId, watch::Sender<Followed>> = HashMap::new();
    let mut followed = FollowedPartitions::default();
    // Roles change through the metadata (which wakes every partition's waiters), not through appends.
    let mut roles = replicas.subscribe_all_partitions();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    // The roles version the fetchers' lists reflect, and when every hosted partition was last
    // walked: a change of roles moves only the partitions it touched (the roles journal), and
    // every partition is walked again now and then, or when the journal no longer reaches back.
    let mut walked: Option<(u64, Instant)> = None;
    loop {
        let roles_version = replicas.roles_version();
        let since_walk = walked.filter(|(_, at)| at.elapsed() < FETCHER_REWALK);
        let journal =
            since_walk.and_then(|(version, at)| Some((replicas.roles_changed_since(version)?, at)));
        let changed = match journal {
            Some(((now, touched), at)) => {
                walked = Some((now, at));
                followed.update(&touched, self_id)
            }
            None => {
                walked = Some((roles_version, Instant::now()));
                followed.walk(&replicas.partitions(), self_id)
            }
        };
        // Every list reflects the roles up to here now, changed or not.
        let version = walked.map_or(0, |(version, _)| version);
        let changed: HashSet<BrokerId> = changed.into_iter().collect();
        for &leader in &changed {
            let partitions = followed.of(leader);
            if partitions.is_empty() {
                fetchers.remove(&leader);
                continue;
            }
            match fetchers.get(&leader) {
                Some(sender) => {
                    sender.send_if_modified(|current| {
                        current.roles_version = version;
                        let same = current.partitions.len() == partitions.len()
                            && current
                                .partitions
                                .iter()
                                .zip(partitions.iter())
                                .all(|(a, b)| Arc::ptr_eq(a, b));
                        if !same {
                            current.partitions = Arc::new(partitions);
                        }
                        !same
                    });
                }
                None => {
                    let (sender, receiver) = watch::channel(Followed {
                        partitions: Arc::new(partitions),
                        roles_version: version,
                    });
                    tracker.spawn(run_fetcher(
                        leader,
                        replicas.clone(),
                        metadata.clone(),
                        status.clone(),
                        link.clone(),
                        receiver,
                        cancel.clone(),
                    ));
                    fetchers.insert(leader, sender);
                }
            }
        }
        for (leader, sender) in &fetchers {
            if !changed.contains(leader) {
                sender.send_if_modified(|current| {
                    current.roles_version = version;
                    false
                });
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
            changed = roles.changed() => if changed.is_err() { return },
        }
    }
}

/// The partitions this broker follows, by leader, as the fetcher manager last handed them out.
#[derive(Default)]
struct FollowedPartitions {
    by_leader: HashMap<BrokerId, Vec<Arc<Partition>>>,
    /// The leader each followed partition is followed at.
    leaders: HashMap<(Uuid, i32), BrokerId>,
}

impl FollowedPartitions {
    /// Whether this broker, `self_id`, follows `partition` and at which leader: it is hosted, one
    /// of its replicas, and led by another broker.
    fn leader_of(partition: &Partition, self_id: BrokerId) -> Option<BrokerId> {
        let state = partition.state();
        (partition.is_hosted()
            && state.leader >= 0
            && state.leader != self_id
            && state.replicas.contains(&self_id))
        .then_some(state.leader)
    }

    /// Rebuilds every list from `hosted`, every hosted partition; returns every leader that had or
    /// has a list.
    fn walk(&mut self, hosted: &[Arc<Partition>], self_id: BrokerId) -> Vec<BrokerId> {
        let mut leaders: HashSet<BrokerId> = self.by_leader.keys().copied().collect();
        self.by_leader.clear();
        self.leaders.clear();
        for partition in hosted {
            if let Some(leader) = Self::leader_of(partition, self_id) {
                self.by_leader
                    .entry(leader)
                    .or_default()
                    .push(partition.clone());
                self.leaders
                    .insert((partition.topic_id, partition.index), leader);
                leaders.insert(leader);
            }
        }
        leaders.into_iter().collect()
    }

    /// Moves the partitions a roles change touched to the lists they now belong to (out of all of
    /// them when no longer followed); returns the leaders whose list changed.
    fn update(&mut self, touched: &[Touched], self_id: BrokerId) -> Vec<BrokerId> {
        let mut changed: HashSet<BrokerId> = HashSet::new();
        // Out of their old lists first (a partition replaced under the same key, e.g. reopened,
        // is touched both as the old and the new one), then into their new ones.
        let mut leaving: HashMap<BrokerId, HashSet<(Uuid, i32)>> = HashMap::new();
        for touched in touched {
            let key = (touched.topic_id, touched.index);
            if let Some(leader) = self.leaders.remove(&key) {
                leaving.entry(leader).or_default().insert(key);
            }
        }
        for (leader, keys) in leaving {
            if let Some(list) = self.by_leader.get_mut(&leader) {
                list.retain(|p| !keys.contains(&(p.topic_id, p.index)));
                changed.insert(leader);
            }
        }
        for touched in touched {
            let key = (touched.topic_id, touched.index);
            let Some(partition) = touched.partition() else {
                continue;
            };
            if self.leaders.contains_key(&key) {
                continue;
            }
            if let Some(leader) = Self::leader_of(&partition, self_id) {
                self.by_leader
                    .entry(leader)
                    .or_default()
                    .push(partition.clone());
                self.leaders.insert(key, leader);
                changed.insert(leader);
            }
        }
        self.by_leader.retain(|_, list| !list.is_empty());
        changed.into_iter().collect()
    }

    /// The partitions followed at `leader` (none: no fetcher is needed).
    fn of(&self, leader: BrokerId) -> Vec<Arc<Partition>> {
        self.by_leader.get(&leader).cloned().unwrap_or_default()
    }
}

/// The partitions one fetcher follows at its leader, shared rather than copied each round, with
/// the roles version they reflect: every later change of roles is in the roles journal (unless it
/// no longer reaches back), which is how a fetcher's session learns of them between its reads of
/// every partition.
#[derive(Clone)]
struct Followed {
    partitions: Arc<Vec<Arc<Partition>>>,
    roles_version: u64,
}

/// How often the fetcher manager walks every hosted partition though no role changed.
const FETCHER_REWALK: Duration = Duration::from_secs(10);

/// A connection to one leader's Kafka listener, secured and authenticated as that listener requires.
struct LeaderConnection {
    stream: KafkaStream<TcpStream>,
    correlation_id: i32,
    /// When to replace the connection: shortly before the leader ends its SASL session.
    renew_at: Option<Instant>,
    /// Lets Metadata see the leader's end close (`ReplicaManager::probe_leader_connection`).
    _probe: Option<LeaderProbe>,
}

impl LeaderConnection {
    /// Connects to `leader` at `address`; a refused TCP connection is noted as evidence the leader is
    /// gone, a failed TLS handshake or SASL exchange is not (the leader answered).
    async fn connect(
        address: &str,
        connector: &ClientConnector,
        replicas: &Arc<ReplicaManager>,
        leader: BrokerId,
    ) -> Result<Self, FetchError> {
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?;
        let stream = match connected {
            Ok(stream) => stream,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    replicas.note_leader_refused(leader);
                }
                return Err(e.into());
            }
        };
        stream.set_nodelay(true)?;
        let probe = replicas.probe_leader_connection(leader, &stream);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connector.secure(stream, address))
            .await
            .map_err(|_| FetchError::TimedOut(CONNECT_TIMEOUT))??;
        // Renew ahead of the expiry by the margin, or by half a short session.
        let renew_at = stream.session_lifetime().map(|lifetime| {
            Instant::now() + lifetime.saturating_sub(REAUTHENTICATE_MARGIN.min(lifetime / 2))
        });
        Ok(Self {
            stream,
            correlation_id: 0,
            renew_at,
            _probe: probe,
        })
    }

    /// Whether the leader's SASL session is about to expire.
    fn needs_renewal(&self) -> bool {
        self.renew_at.is_some_and(|at| Instant::now() >= at)
    }

    async fn fetch(
        &mut self,
        request: &FetchRequest,
        client_id: &str,
    ) -> Result<FetchResponse, FetchError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let mut frame = BytesMut::new();
        encode_request(
            &mut frame,
            request,
            FETCH_VERSION,
            self.correlation_id,
            client_id,
        )?;
        self.stream.write_all(&frame).await?;
        // TLS holds written records until flushed.
        self.stream.flush().await?;
        let body = read_frame(&mut self.stream, MAX_RESPONSE_FRAME)
            .await?
            .ok_or(FetchError::Closed)?;
        Ok(decode_response::<FetchRequest>(
            body,
            FETCH_VERSION,
            self.correlation_id,
        )?)
    }
}

/// Why one fetch round with a leader failed (the fetcher drops the connection and backs off).
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("leader {leader} has no live endpoint on listener {listener}")]
    NoEndpoint { leader: BrokerId, listener: String },
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("the leader closed the connection")]
    Closed,
    /// Every partition of this fetcher is offline here.
    #[error("no partition to fetch")]
    NothingToFetch,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Secure(#[from] ConnectError),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Wire(#[from] WireError),
}

fn leader_address(image: &MetadataImage, leader: BrokerId, listener: &str) -> Option<String> {
    let broker = image.brokers.get(&leader).filter(|b| !b.fenced)?;
    broker.endpoint(Some(listener)).map(ToString::to_string)
}

async fn run_fetcher(
    leader: BrokerId,
    replicas: Arc<ReplicaManager>,
    metadata: Arc<MetadataCache>,
    status: watch::Receiver<BrokerStatus>,
    link: InterBrokerLink,
    mut partitions: watch::Receiver<Followed>,
    cancel: CancellationToken,
) {
    let self_id = replicas.broker_id();
    let client_id = format!("chronik-replica-fetcher-{self_id}");
    let mut connection: Option<LeaderConnection> = None;
    // Whether the current connection has answered a fetch: one that served and then broke is
    // replaced at once (a leader that died refuses the reconnect, which `note_leader_refused`
    // records while clients are still asking where the leader went; `note_leader_dropped` covers
    // the moment before), with `quick_retries` more soon after; otherwise a connection that breaks
    // before answering waits out the backoff, so a leader that takes connections and closes them
    // is not hammered. Only an answer, not a handshake, shows the leader reachable again.
    let mut answered = false;
    let mut quick_retries = 0u32;
    // The last TLS or SASL failure warned about.
    let mut security_warning: Option<String> = None;
    // The fetch round in which each partition last returned data (the order of full fetches; the
    // leader orders a session's partitions itself).
    let mut served: HashMap<(Uuid, i32), u64> = HashMap::new();
    let mut round = 0u64;
    let mut session = FetchSessionHandler::default();
    info!(leader, "replica fetcher started");
    loop {
        if cancel.is_cancelled() || partitions.has_changed().is_err() {
            replicas.note_leader_reachable(leader);
            info!(leader, "replica fetcher stopped");
            return;
        }
        let mut targets: Followed = partitions.borrow_and_update().clone();
        if session.is_full() {
            let mut ordered = targets.partitions.to_vec();
            order_by_last_served(&mut ordered, &served);
            targets.partitions = Arc::new(ordered);
        }
        let broker_epoch = status.borrow().broker_epoch.unwrap_or(-1);
        if connection
            .as_ref()
            .is_some_and(LeaderConnection::needs_renewal)
        {
            debug!(
                leader,
                "replacing the connection before its SASL session expires"
            );
            connection = None;
            answered = false;
        }
        let outcome = async {
            if connection.is_none() {
                let address = leader_address(&metadata.current(), leader, &link.listener)
                    .ok_or_else(|| FetchError::NoEndpoint {
                        leader,
                        listener: link.listener.clone(),
                    })?;
                connection = Some(
                    LeaderConnection::connect(&address, &link.connector, &replicas, leader).await?,
                );
                answered = false;
            }
            let request =
                session.build_request(self_id, broker_epoch, &targets, leader, |version| {
                    replicas.roles_changed_since(version)
                });
            if session.is_empty() {
                return Err(FetchError::NothingToFetch);
            }
            let Some(conn) = connection.as_mut() else {
                return Err(FetchError::Closed);
            };
            let response = tokio::time::timeout(FETCH_TIMEOUT, conn.fetch(&request, &client_id))
                .await
                .map_err(|_| FetchError::TimedOut(FETCH_TIMEOUT))??;
            Ok(response)
        };
        let response = tokio::select! {
            _ = cancel.cancelled() => return,
            response = outcome => response,
        };
        let pause = match response {
            Ok(response) => {
                security_warning = None;
                if !answered {
                    answered = true;
                    quick_retries = QUICK_RETRIES;
                    replicas.note_leader_reachable(leader);
                }
                if session.handle_response(&response) {
                    round += 1;
                    note_served(&mut served, round, &response);
                    apply_response(&replicas, &session, response, leader)
                        .await
                        .then_some(BACKOFF)
                } else if is_session_error(response.error_code) {
                    // The next fetch is a full one, at once (Kafka's fetcher does not back off).
                    debug!(leader, error = ?ResponseError::try_from_code(response.error_code), "fetch session lost");
                    None
                } else {
                    Some(BACKOFF)
                }
            }
            Err(FetchError::NothingToFetch) => {
                session.reset();
                Some(BACKOFF)
            }
            Err(e) => {
                // A new connection starts with a full fetch that closes this session (Kafka's
                // `FetchSessionHandler.handleError`).
                session.reset();
                if let FetchError::Secure(ConnectError::Tls { .. } | ConnectError::Sasl { .. }) = &e
                {
                    // A configuration problem (certificates, credentials) rather than a fault: say
                    // it once per distinct error, not at every retry.
                    let message = e.to_string();
                    if security_warning.as_deref() != Some(message.as_str()) {
                        warn!(leader, "cannot replicate from the leader: {message}");
                        security_warning = Some(message);
                    }
                } else {
                    debug!(leader, "replica fetch failed: {e}");
                }
                let served = connection.is_some() && answered;
                if served && !matches!(e, FetchError::TimedOut(_)) {
                    // The leader's end closed or broke off a response (a paused leader times out
                    // instead): say so before the reconnect below answers whether it is gone.
                    replicas.note_leader_dropped(leader);
                }
                connection = None;
                answered = false;
                if served {
                    None
                } else if quick_retries > 0 {
                    quick_retries -= 1;
                    Some(QUICK_RETRY_DELAY)
                } else {
                    Some(BACKOFF)
                }
            }
        };
        if let Some(pause) = pause {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
                _ = partitions.changed() => {}
            }
        }
    }
}

/// The follower's half of its fetch session with one leader (KIP-227; Kafka's `FetchSessionHandler`).
/// The first request is a full fetch naming every partition followed there, with epoch 0; a leader
/// with room answers with a session id, and from then on each request names only the partitions whose
/// fetch state changed (fetch offset, log start, leader epoch, last fetched epoch: data appended, the
/// log truncated or its start moved, a new leader epoch) or that were added, and forgets those no
/// longer followed there (moved to another leader, or whose log went offline). A session error, any
/// other top-level error, or a failed fetch starts over with a full fetch (closing the old session).
///
/// Finding what changed does not read every partition each round: a followed partition's fetch state
/// changes through the responses this fetcher applies (so the partitions the last response named are
/// read again), through a role change (the replica manager's roles version moves, and so may the set
/// of partitions followed here: every partition is read again), and otherwise only through this
/// broker's own retention moving a log start or a failure outside the fetcher taking a log offline,
/// which a read of every partition at least every [`SESSION_RESCAN`] finds.
///
/// What must stay true: the leader's session holds, for every partition, exactly what the last
/// request that named it said, and the follower reports nothing it has not made durable (a request
/// is built only after the previous response was applied and flushed).
#[derive(Default)]
struct FetchSessionHandler {
    /// The next request's session id (0: none).
    session_id: i32,
    /// The next request's epoch: 0 (a full fetch that asks for a session, closing `session_id`
    /// if any), or the session's next epoch.
    epoch: i32,
    /// Every partition of the session as the last request left it: what the leader caches for it.
    partitions: HashMap<(Uuid, i32), SessionPartition>,
    /// The partitions the last response named: their logs may have changed since.
    answered: Vec<(Uuid, i32)>,
    /// Up to which roles version the session has looked at the partitions whose roles changed
    /// (see [`Followed`]), and when it last read every partition.
    scanned: Option<(u64, Instant)>,
    /// Reads of every partition done, to find the partitions no longer followed.
    scans: u64,
}

/// How often a fetcher in a session reads every partition it follows even though no role changed:
/// a log start moved by this broker's retention reaches the leader (whose low watermark counts it)
/// within this, and a log taken offline by a failure outside the fetcher is forgotten within this.
/// What such a log last reported was durable, and the controller moves its partitions away.
const SESSION_RESCAN: Duration = Duration::from_secs(5);

struct SessionPartition {
    partition: Arc<Partition>,
    /// What the leader's session holds for it (the fetch state it was last sent with).
    sent: SentFetch,
    /// The read of every partition that last found it followed.
    seen: u64,
}

/// A partition's fetch state as a request carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SentFetch {
    fetch_offset: i64,
    log_start_offset: i64,
    current_leader_epoch: i32,
    last_fetched_epoch: i32,
}

impl SentFetch {
    /// `partition`'s fetch state now; `None` when its log is offline after a failed write or fsync
    /// (issue #11, defect 6): its LEO may count a batch that never became durable, so it is reported
    /// no more (Kafka removes a partition of an offline log dir from its fetchers). The controller
    /// takes this replica out of the ISR.
    fn of(partition: &Partition) -> Option<Self> {
        let position = partition.log.fetch_position()?;
        Some(Self {
            fetch_offset: position.log_end_offset,
            log_start_offset: position.log_start_offset,
            current_leader_epoch: partition.leader_epoch(),
            last_fetched_epoch: position.latest_epoch.unwrap_or(-1),
        })
    }

    fn request(self, index: i32) -> FetchPartition {
        FetchPartition::default()
            .with_partition(index)
            .with_current_leader_epoch(self.current_leader_epoch)
            .with_fetch_offset(self.fetch_offset)
            .with_last_fetched_epoch(self.last_fetched_epoch)
            .with_log_start_offset(self.log_start_offset)
            .with_partition_max_bytes(PARTITION_MAX_BYTES)
    }
}

impl FetchSessionHandler {
    /// Whether the next request is a full fetch.
    fn is_full(&self) -> bool {
        self.epoch == INITIAL_EPOCH
    }

    /// Whether the last request built covers no partition.
    fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    /// The next request over `targets` (the partitions followed at `leader`, in the order a full
    /// fetch names them): all of them for a full fetch, else the changed ones and the forgotten.
    /// Between reads of every partition (a full fetch, every `SESSION_RESCAN`, or when the roles
    /// journal no longer reaches back) it reads again what the last response named and what a
    /// roles change touched since (`roles_changed_since`, the replica manager's journal): at
    /// 100,000 partitions, a read of all of them after every topic created anywhere was a tenth of
    /// a broker's CPU (issue #18).
    fn build_request(
        &mut self,
        self_id: BrokerId,
        broker_epoch: i64,
        targets: &Followed,
        leader: BrokerId,
        roles_changed_since: impl FnOnce(u64) -> Option<(u64, Vec<Touched>)>,
    ) -> FetchRequest {
        let full = self.is_full();
        if full {
            self.partitions.clear();
        }
        let answered = std::mem::take(&mut self.answered);
        let since_scan = self
            .scanned
            .filter(|(_, at)| !full && at.elapsed() < SESSION_RESCAN);
        let journal =
            since_scan.and_then(|(version, at)| Some((roles_changed_since(version)?, at)));
        let (named, forgotten) = match journal {
            Some(((version, touched), at)) => {
                self.scanned = Some((version, at));
                self.recheck(&answered, &touched, |partition| {
                    FollowedPartitions::leader_of(partition, self_id) == Some(leader)
                })
            }
            None => {
                self.scanned = Some((targets.roles_version, Instant::now()));
                self.scan(&targets.partitions)
            }
        };
        let topics = by_topic(named)
            .into_iter()
            .map(|(topic_id, partitions)| {
                FetchTopic::default()
                    .with_topic_id(topic_id)
                    .with_partitions(partitions)
            })
            .collect();
        let forgotten = by_topic(forgotten)
            .into_iter()
            .map(|(topic_id, partitions)| {
                ForgottenTopic::default()
                    .with_topic_id(topic_id)
                    .with_partitions(partitions)
            })
            .collect();
        FetchRequest::default()
            .with_replica_state(
                ReplicaState::default()
                    .with_replica_id(kafka_protocol::messages::BrokerId(self_id))
                    .with_replica_epoch(broker_epoch),
            )
            .with_max_wait_ms(MAX_WAIT_MS)
            .with_min_bytes(1)
            .with_max_bytes(RESPONSE_MAX_BYTES)
            .with_session_id(self.session_id)
            .with_session_epoch(self.epoch)
            .with_topics(topics)
            .with_forgotten_topics_data(forgotten)
    }

    /// Reads every partition of `targets`: the ones to name (new or changed; every one after
    /// `partitions` was cleared for a full fetch) and the ones to forget (no longer in `targets`, or
    /// offline).
    fn scan(&mut self, targets: &[Arc<Partition>]) -> (Named, Forgotten) {
        self.scans += 1;
        let scan = self.scans;
        let mut named = Vec::new();
        for partition in targets {
            let Some(sent) = SentFetch::of(partition) else {
                continue;
            };
            if self.record(partition, sent, Some(scan)) {
                named.push((partition.topic_id, sent.request(partition.index)));
            }
        }
        let mut forgotten = Vec::new();
        self.partitions.retain(|&(topic_id, index), p| {
            let followed = p.seen == scan;
            if !followed {
                forgotten.push((topic_id, index));
            }
            followed
        });
        (named, forgotten)
    }

    /// Records `partition`'s fetch state `sent` in the session, as found by the read of every
    /// partition numbered `seen` if any; returns whether a request must name it (new to the
    /// session, or changed since it was last sent).
    fn record(&mut self, partition: &Arc<Partition>, sent: SentFetch, seen: Option<u64>) -> bool {
        let new_seen = seen.unwrap_or(self.scans);
        match self.partitions.entry((partition.topic_id, partition.index)) {
            Entry::Occupied(mut entry) => {
                let entry = entry.get_mut();
                if let Some(seen) = seen {
                    entry.seen = seen;
                }
                let same = entry.sent == sent && Arc::ptr_eq(&entry.partition, partition);
                if !same {
                    entry.sent = sent;
                    entry.partition = partition.clone();
                }
                !same
            }
            Entry::Vacant(entry) => {
                entry.insert(SessionPartition {
                    partition: partition.clone(),
                    sent,
                    seen: new_seen,
                });
                true
            }
        }
    }

    /// Reads again only the partitions of `answered` (what the last response named) and those of
    /// `touched` (whose roles changed; `follows` tells whether this session still follows one):
    /// the ones whose fetch state changed or that are new to the session, the ones whose log went
    /// offline, and the ones no longer followed.
    fn recheck(
        &mut self,
        answered: &[(Uuid, i32)],
        touched: &[Touched],
        follows: impl Fn(&Partition) -> bool,
    ) -> (Named, Forgotten) {
        let (mut named, mut forgotten) = (Vec::new(), Vec::new());
        // A partition replaced under its key (reopened) is touched as the old one and the new one:
        // the one still hosted and followed decides.
        let mut decided: HashMap<(Uuid, i32), Option<Arc<Partition>>> = HashMap::new();
        for touched in touched {
            let followed = decided
                .entry((touched.topic_id, touched.index))
                .or_insert(None);
            if followed.is_none() {
                *followed = touched.partition().filter(|p| follows(p));
            }
        }
        for (&key, followed) in &decided {
            let sent = followed
                .as_ref()
                .and_then(|partition| Some((partition, SentFetch::of(partition)?)));
            let Some((partition, sent)) = sent else {
                if self.partitions.remove(&key).is_some() {
                    forgotten.push(key);
                }
                continue;
            };
            if self.record(partition, sent, None) {
                named.push((key.0, sent.request(key.1)));
            }
        }
        for &key in answered {
            if decided.contains_key(&key) {
                continue;
            }
            let Some(entry) = self.partitions.get_mut(&key) else {
                continue;
            };
            match SentFetch::of(&entry.partition) {
                None => {
                    self.partitions.remove(&key);
                    forgotten.push(key);
                }
                Some(sent) if sent != entry.sent => {
                    entry.sent = sent;
                    named.push((key.0, sent.request(key.1)));
                }
                Some(_) => {}
            }
        }
        (named, forgotten)
    }

    /// Moves the session on after a response to the last request (Kafka's
    /// `FetchSessionHandler.handleResponse`); returns whether its partitions may be applied. A full
    /// answer with a session id opens the session; an incremental answer continues it, or closes it
    /// when it carries no session id. An answer with a top-level error has no partitions and means
    /// a full fetch next: in a new session if the leader no longer knew this one, else closing it.
    fn handle_response(&mut self, response: &FetchResponse) -> bool {
        if response.error_code != 0 {
            if response.error_code == ResponseError::FetchSessionIdNotFound.code() {
                self.session_id = INVALID_SESSION_ID;
            }
            self.epoch = INITIAL_EPOCH;
            return false;
        }
        if self.is_full() || response.session_id == INVALID_SESSION_ID {
            self.session_id = response.session_id;
            self.epoch = if response.session_id == INVALID_SESSION_ID {
                INITIAL_EPOCH
            } else {
                next_epoch(INITIAL_EPOCH)
            };
        } else {
            self.epoch = next_epoch(self.epoch);
        }
        self.answered = response
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic_id, p.partition_index)))
            .collect();
        true
    }

    /// After a failed fetch: the next request is a full one, closing this session (Kafka's
    /// `FetchSessionHandler.handleError`).
    fn reset(&mut self) {
        self.epoch = INITIAL_EPOCH;
    }

    /// The partition behind `key` and the leader epoch the leader's session holds for it: what a
    /// response about it was asked under.
    fn asked(&self, key: &(Uuid, i32)) -> Option<(&Arc<Partition>, i32)> {
        self.partitions
            .get(key)
            .map(|p| (&p.partition, p.sent.current_leader_epoch))
    }
}

/// Partitions a request names, with their topic ids.
type Named = Vec<(Uuid, FetchPartition)>;
/// Partitions a request forgets.
type Forgotten = Vec<(Uuid, i32)>;

/// `items` grouped by topic id, topics in the order they first appear.
fn by_topic<T>(items: Vec<(Uuid, T)>) -> Vec<(Uuid, Vec<T>)> {
    let mut topics: Vec<(Uuid, Vec<T>)> = Vec::new();
    let mut at: HashMap<Uuid, usize> = HashMap::new();
    for (topic_id, item) in items {
        match at.get(&topic_id) {
            Some(&i) => topics[i].1.push(item),
            None => {
                at.insert(topic_id, topics.len());
                topics.push((topic_id, vec![item]));
            }
        }
    }
    topics
}

/// Whether a top-level fetch error is about the session rather than the leader.
fn is_session_error(code: i16) -> bool {
    [
        ResponseError::FetchSessionIdNotFound,
        ResponseError::InvalidFetchSessionEpoch,
        ResponseError::FetchSessionTopicIdError,
    ]
    .iter()
    .any(|e| e.code() == code)
}

/// Puts the partitions served longest ago (by the fetch round in which they last returned data)
/// first: a response bounded by `max_bytes` then serves each in turn (Kafka moves a partition that
/// returned data to the end of its fetch order).
fn order_by_last_served(targets: &mut [Arc<Partition>], served: &HashMap<(Uuid, i32), u64>) {
    targets.sort_by_key(|p| served.get(&(p.topic_id, p.index)).copied().unwrap_or(0));
}

/// Records that the partitions of `response` that returned data were served in `round`.
fn note_served(served: &mut HashMap<(Uuid, i32), u64>, round: u64, response: &FetchResponse) {
    for topic in &response.responses {
        for data in &topic.partitions {
            if data.records.as_ref().is_some_and(|r| !r.is_empty()) {
                served.insert((topic.topic_id, data.partition_index), round);
            }
        }
    }
}

/// Applies one fetch response from `leader` to the request `session` last built; returns whether the
/// fetcher should back off before the next fetch. A partition's data is applied only while `leader`
/// still leads it in the epoch the leader's session holds for it (checked under the partition's
/// state, see [`Partition::while_following`]): a late answer from a deposed leader, or one that
/// arrives after this broker was elected, is dropped. An incremental answer names only the partitions
/// that changed at the leader: the others are as they were.
async fn apply_response(
    replicas: &ReplicaManager,
    session: &FetchSessionHandler,
    response: FetchResponse,
    leader: BrokerId,
) -> bool {
    let mut backoff = response.error_code != 0;
    let mut flushes = Vec::new();
    let mut touched = Vec::new();
    for topic in response.responses {
        for data in topic.partitions {
            let key = (topic.topic_id, data.partition_index);
            let Some((partition, leader_epoch)) = session.asked(&key) else {
                continue;
            };
            let following = partition.clone();
            if data.error_code == ResponseError::OffsetOutOfRange.code()
                && data.log_start_offset > partition.log.log_end_offset()
            {
                // Everything here is below the leader's log start (retention ran while this
                // replica was away, or its disk was replaced): start over there (Kafka's
                // `ReplicaFetcherThread` after OFFSET_OUT_OF_RANGE, `truncateFullyAndStartAt`).
                let leader_log_start = data.log_start_offset;
                let result = tokio::task::spawn_blocking(move || {
                    following.while_following(leader, leader_epoch, |log| {
                        if leader_log_start > log.log_end_offset() {
                            log.truncate_fully_and_start_at(leader_log_start)
                        } else {
                            Ok(())
                        }
                    })
                })
                .await;
                match result {
                    Ok(Some(Ok(()))) => {
                        touched.push(partition);
                        info!(
                            topic = %partition.topic,
                            partition = partition.index,
                            leader_log_start,
                            "log below the leader's log start: restarted there"
                        )
                    }
                    Ok(Some(Err(e))) => {
                        warn!(topic = %partition.topic, partition = partition.index, "cannot restart the log at the leader's log start: {e}");
                        backoff = true;
                    }
                    Ok(None) => stale_response(partition, leader, leader_epoch),
                    Err(e) => warn!("truncation task failed: {e}"),
                }
                continue;
            }
            if data.error_code != 0 {
                let error = ResponseError::try_from_code(data.error_code);
                debug!(topic = %partition.topic, partition = partition.index, leader, ?error, "replica fetch error");
                backoff = true;
                continue;
            }
            if data.diverging_epoch.epoch >= 0 {
                let diverging = data.diverging_epoch;
                let result = tokio::task::spawn_blocking(move || {
                    following.while_following(leader, leader_epoch, |log| {
                        let ours = log.end_offset_for_epoch(diverging.epoch)?;
                        let target = if ours.end_offset >= 0 {
                            diverging.end_offset.min(ours.end_offset)
                        } else {
                            diverging.end_offset
                        };
                        log.truncate_to(target.max(log.log_start_offset()))
                            .map(|_| target)
                    })
                })
                .await;
                match result {
                    Ok(Some(Ok(offset))) => {
                        touched.push(partition);
                        info!(
                            topic = %partition.topic,
                            partition = partition.index,
                            epoch = diverging.epoch,
                            offset,
                            "truncated to the leader's history"
                        )
                    }
                    Ok(Some(Err(e))) => {
                        warn!(topic = %partition.topic, partition = partition.index, "truncation failed: {e}");
                        backoff = true;
                    }
                    Ok(None) => stale_response(partition, leader, leader_epoch),
                    Err(e) => warn!("truncation task failed: {e}"),
                }
                continue;
            }
            let records = data.records.unwrap_or_default();
            let record_bytes = records.len();
            let would_roll = partition.log.follower_append_would_roll(&records);
            let leader_high_watermark = data.high_watermark;
            let leader_log_start = data.log_start_offset;
            // What the response changed here: the log's waiters (DeleteRecords' low watermark,
            // fetches parked on this broker) are woken only then, not by every partition of every
            // round.
            let apply = move |log: &PartitionLog| {
                let mut flush_to = None;
                let mut changed = false;
                if !records.is_empty() {
                    if let Some(info) = log.append_as_follower(records)? {
                        flush_to = info.flush_required.then(|| info.next_offset());
                        changed = true;
                    }
                }
                changed |= log.maybe_increment_high_watermark(
                    leader_high_watermark.min(log.log_end_offset()),
                );
                // Records the leader deleted (DeleteRecords, retention) go here too, up to what
                // this replica has committed (Kafka's `maybeIncrementLogStartOffset(
                // leaderLogStartOffset, LeaderOffsetIncremented)`); checkpointed before the next
                // fetch reports it.
                changed |= log
                    .maybe_increment_log_start_offset(leader_log_start.min(log.high_watermark()))?;
                Ok::<_, crate::log::LogError>((flush_to, changed))
            };
            // Like a leader's append (`append_inline`), a follower's runs on this task: writing
            // into the page cache takes microseconds, less than a hand-off to a blocking thread
            // and back, which every partition of every round paid, with or without records
            // (issues #15 and #18). Moving the log start deletes segments and checkpoints, a roll
            // fsyncs the sealed segment, and a huge response is copied for its CRC checks: those
            // go to the blocking pool.
            let blocking = leader_log_start > partition.log.log_start_offset()
                || record_bytes > INLINE_APPEND_BYTES
                || would_roll;
            let appended = if blocking {
                match tokio::task::spawn_blocking(move || {
                    following.while_following(leader, leader_epoch, apply)
                })
                .await
                {
                    Ok(appended) => appended,
                    Err(e) => {
                        warn!("replica append task failed: {e}");
                        continue;
                    }
                }
            } else {
                following.while_following(leader, leader_epoch, apply)
            };
            match appended {
                Some(Ok((flush_to, changed))) => {
                    if changed {
                        touched.push(partition);
                    }
                    match flush_to {
                        Some(offset) => flushes.push(flush(partition, record_bytes, offset)),
                        None => metrics().replicated(&partition.topic, record_bytes),
                    }
                }
                Some(Err(e)) => {
                    warn!(topic = %partition.topic, partition = partition.index, "cannot append replicated batches: {e}");
                    backoff = true;
                }
                None => stale_response(partition, leader, leader_epoch),
            }
        }
    }
    // The fsyncs run outside the state lock (a role change need not wait for the disk), on each
    // log's flusher, all at once: the round ends when every partition is durable.
    for result in futures::future::join_all(flushes).await {
        if let Err((partition, e)) = result {
            warn!(topic = %partition.topic, partition = partition.index, "cannot make replicated batches durable: {e}");
            backoff = true;
        }
    }
    for partition in &touched {
        replicas.partition_changed(partition);
    }
    backoff
}

/// Fetched bytes of one partition above which its append leaves the fetcher's task (the CRC checks
/// read every byte).
const INLINE_APPEND_BYTES: usize = 2 * 1024 * 1024;

/// Waits until `partition`'s log is durable below `offset`, then counts its replicated bytes.
async fn flush(
    partition: &Arc<Partition>,
    record_bytes: usize,
    offset: i64,
) -> Result<(), (&Arc<Partition>, crate::log::LogError)> {
    partition
        .log
        .flushed_to(offset)
        .await
        .map_err(|e| (partition, e))?;
    metrics().replicated(&partition.topic, record_bytes);
    Ok(())
}

fn stale_response(partition: &Partition, leader: BrokerId, leader_epoch: i32) {
    info!(
        topic = %partition.topic,
        partition = partition.index,
        leader,
        leader_epoch,
        "dropped a fetch response asked under a leader or epoch that no longer holds"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::test_support::{client_batch, leader_batch};
    use crate::log::{LogConfig, LogManager, PartitionLog};
    use crate::replica::PartitionState;
    use kafka_protocol::messages::fetch_response::{
        EpochEndOffset, FetchableTopicResponse, PartitionData,
    };
    use uuid::Uuid;

    /// A follower (broker 1) of a partition led by broker 2, whose log holds `epochs` as
    /// (leader epoch, batches of one record).
    fn follower(epochs: &[(i32, usize)]) -> (tempfile::TempDir, ReplicaManager, Arc<Partition>) {
        let dir = tempfile::tempdir().unwrap();
        let logs =
            Arc::new(LogManager::open(&dir.path().join("logs"), LogConfig::default()).unwrap());
        let replicas = ReplicaManager::new(1, logs, tokio::sync::mpsc::unbounded_channel().0);
        let topic_id = Uuid::new_v4();
        let log = Arc::new(
            PartitionLog::open(&dir.path().join("t-0"), topic_id, LogConfig::default()).unwrap(),
        );
        for &(epoch, batches) in epochs {
            for _ in 0..batches {
                log.append_as_leader(client_batch(&[1], 10), epoch).unwrap();
            }
        }
        let state = PartitionState {
            leader: 2,
            leader_epoch: 9,
            partition_epoch: 9,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            min_insync_replicas: 2,
            recovering: false,
        };
        let partition = Arc::new(Partition::new("t".into(), topic_id, 0, log, state));
        (dir, replicas, partition)
    }

    /// A fetcher's first request over `targets` (a full fetch, as follower `self_id` at
    /// `broker_epoch`), with the session it was built in; it reads as the request.
    struct Fetch {
        session: FetchSessionHandler,
        request: FetchRequest,
    }

    impl std::ops::Deref for Fetch {
        type Target = FetchRequest;

        fn deref(&self) -> &FetchRequest {
            &self.request
        }
    }

    fn fetch_request(self_id: BrokerId, broker_epoch: i64, targets: &[Arc<Partition>]) -> Fetch {
        let mut session = FetchSessionHandler::default();
        let request =
            session.build_request(self_id, broker_epoch, &followed(targets, 0), 2, |_| None);
        Fetch { session, request }
    }

    /// `targets` as the fetcher manager hands them out, reflecting roles up to `roles_version`.
    fn followed(targets: &[Arc<Partition>], roles_version: u64) -> Followed {
        Followed {
            partitions: Arc::new(targets.to_vec()),
            roles_version,
        }
    }

    /// `session`'s next request (follower 1 of leader 2, broker epoch 42) over `targets`, with no
    /// roles journal to go by: every partition is read.
    fn build(session: &mut FetchSessionHandler, targets: &[Arc<Partition>]) -> FetchRequest {
        session.build_request(1, 42, &followed(targets, 0), 2, |_| None)
    }

    /// Applies `response` to `fetch` as the fetcher does.
    async fn apply(
        replicas: &ReplicaManager,
        fetch: &Fetch,
        response: FetchResponse,
        leader: BrokerId,
    ) -> bool {
        apply_response(replicas, &fetch.session, response, leader).await
    }

    fn diverging(partition: &Partition, epoch: i32, end_offset: i64) -> FetchResponse {
        let data = PartitionData::default()
            .with_partition_index(0)
            .with_high_watermark(0)
            .with_diverging_epoch(
                EpochEndOffset::default()
                    .with_epoch(epoch)
                    .with_end_offset(end_offset),
            );
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic_id(partition.topic_id)
            .with_partitions(vec![data])])
    }

    #[tokio::test]
    async fn a_diverging_epoch_truncates_to_where_both_logs_agree() {
        // Local history: epoch 0 for offsets 0..3, then epoch 1 (a deposed leader's) for 3..6.
        let (_dir, replicas, partition) = follower(&[(0, 3), (1, 3)]);
        assert_eq!(partition.log.log_end_offset(), 6);
        // The leader's epoch 0 ended at 3: everything of epoch 1 goes.
        let targets = vec![partition.clone()];
        apply(
            &replicas,
            &fetch_request(1, 42, &targets),
            diverging(&partition, 0, 3),
            2,
        )
        .await;
        assert_eq!(partition.log.log_end_offset(), 3);
        assert_eq!(partition.log.latest_epoch(), Some(0));
    }

    #[tokio::test]
    async fn several_quick_leader_changes_truncate_to_the_smaller_end() {
        // Local: epochs 0 (0..2), 2 (2..4), 4 (4..7). The leader's epoch 2 ended at 5, but ours ends
        // at 4, so the follower keeps only what both have: up to 4 — never the local high watermark.
        let (_dir, replicas, partition) = follower(&[(0, 2), (2, 2), (4, 3)]);
        partition.log.maybe_increment_high_watermark(6);
        let targets = vec![partition.clone()];
        apply(
            &replicas,
            &fetch_request(1, 42, &targets),
            diverging(&partition, 2, 5),
            2,
        )
        .await;
        assert_eq!(partition.log.log_end_offset(), 4);
        assert_eq!(partition.log.latest_epoch(), Some(2));
        // Then the leader says its epoch 0 already ended at 1: truncate again.
        apply(
            &replicas,
            &fetch_request(1, 42, &targets),
            diverging(&partition, 0, 1),
            2,
        )
        .await;
        assert_eq!(partition.log.log_end_offset(), 1);
        assert_eq!(partition.log.latest_epoch(), Some(0));
    }

    #[tokio::test]
    async fn an_epoch_led_here_without_a_batch_is_dropped_when_the_leader_never_had_it() {
        // This broker led epoch 5 briefly and wrote nothing before it was killed; the new leader's
        // history has epoch 0 up to offset 10 (it got more data meanwhile).
        let (_dir, replicas, partition) = follower(&[(0, 3)]);
        partition.log.assign_leader_epoch(5).unwrap();
        assert_eq!(partition.log.latest_epoch(), Some(5));
        let targets = vec![partition.clone()];
        apply(
            &replicas,
            &fetch_request(1, 42, &targets),
            diverging(&partition, 0, 10),
            2,
        )
        .await;
        assert_eq!(partition.log.log_end_offset(), 3, "no data is lost");
        assert_eq!(
            partition.log.latest_epoch(),
            Some(0),
            "the empty epoch is gone"
        );
        let request = fetch_request(1, 42, std::slice::from_ref(&partition));
        assert_eq!(request.topics[0].partitions[0].last_fetched_epoch, 0);
    }

    #[test]
    fn the_fetch_request_names_the_follower_and_its_positions() {
        let (_dir, _replicas, partition) = follower(&[(0, 2), (3, 1)]);
        let request = fetch_request(1, 42, std::slice::from_ref(&partition));
        assert_eq!(request.replica_state.replica_id.0, 1);
        assert_eq!(request.replica_state.replica_epoch, 42);
        let p = &request.topics[0].partitions[0];
        assert_eq!(request.topics[0].topic_id, partition.topic_id);
        assert_eq!(
            (p.fetch_offset, p.last_fetched_epoch, p.current_leader_epoch),
            (3, 3, 9)
        );
    }

    /// A response from leader 2 carrying one batch at `offset` in `epoch` and `high_watermark`.
    fn records(
        partition: &Partition,
        offset: i64,
        epoch: i32,
        high_watermark: i64,
    ) -> FetchResponse {
        let data = PartitionData::default()
            .with_partition_index(0)
            .with_high_watermark(high_watermark)
            .with_records(Some(leader_batch(offset, epoch, &[1])));
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic_id(partition.topic_id)
            .with_partitions(vec![data])])
    }

    #[tokio::test]
    async fn a_response_is_applied_only_while_the_leader_and_epoch_it_was_asked_under_hold() {
        // Issue #11 (7): a fetch sent to leader 2 in epoch 9 is answered late; meanwhile this broker
        // was elected (epoch 10). The old leader's batch must not land after the new epoch began.
        let (_dir, replicas, partition) = follower(&[(0, 3)]);
        let targets = vec![partition.clone()];
        let request = fetch_request(1, 42, &targets);
        let mut elected = PartitionState::clone(&partition.state());
        elected.leader = 1;
        elected.leader_epoch = 10;
        elected.partition_epoch = 10;
        partition.update(elected).unwrap();
        partition.log.assign_leader_epoch(10).unwrap();
        partition.log.maybe_increment_high_watermark(2);
        apply(&replicas, &request, records(&partition, 3, 9, 1), 2).await;
        assert_eq!(
            partition.log.log_end_offset(),
            3,
            "a stale response was appended"
        );
        assert_eq!(partition.log.latest_epoch(), Some(10));
        assert_eq!(
            partition.log.high_watermark(),
            2,
            "the high watermark moved back"
        );
        // Following another leader (3) under a newer epoch: a late answer from 2 is dropped too.
        let mut moved = PartitionState::clone(&partition.state());
        moved.leader = 3;
        moved.leader_epoch = 11;
        moved.partition_epoch = 11;
        partition.update(moved).unwrap();
        let request = fetch_request(1, 42, &targets);
        let mut newer = PartitionState::clone(&partition.state());
        newer.leader_epoch = 12;
        newer.partition_epoch = 12;
        partition.update(newer).unwrap();
        apply(&replicas, &request, records(&partition, 3, 11, 4), 3).await;
        assert_eq!(partition.log.log_end_offset(), 3);
        // The current leader's answer to a request in its epoch is applied.
        let request = fetch_request(1, 42, &targets);
        apply(&replicas, &request, records(&partition, 3, 12, 4), 3).await;
        assert_eq!(partition.log.log_end_offset(), 4);
        assert_eq!(partition.log.high_watermark(), 4);
    }

    /// Issue #11 (6): a follower's fsync fails after it appended a batch. Its log goes offline, and
    /// no later fetch reports an offset past what is durable: the leader must never count the batch
    /// as held by this replica (it would advance the high watermark and acknowledge acks=all writes
    /// this replica could lose).
    #[tokio::test]
    async fn a_follower_whose_fsync_failed_never_reports_what_is_not_durable() {
        let (_dir, replicas, partition) = follower(&[(0, 3)]);
        partition.log.flush().unwrap();
        let targets = vec![partition.clone()];
        let request = fetch_request(1, 42, &targets);
        partition.log.fail_next_fsync();
        apply(&replicas, &request, records(&partition, 3, 9, 3), 2).await;
        assert!(
            !partition.log.is_open(),
            "a failed fsync takes the log offline"
        );
        let durable = partition.log.flushed_offset();
        assert_eq!(durable, 3);
        let next = fetch_request(1, 42, &targets);
        for p in next.topics.iter().flat_map(|t| &t.partitions) {
            assert!(
                p.fetch_offset <= durable,
                "the follower reports offset {} but only {durable} is durable",
                p.fetch_offset
            );
        }
    }

    #[tokio::test]
    async fn a_follower_high_watermark_never_moves_back_when_a_new_leader_reports_less() {
        // Issue #11 (10): the old leader had committed up to 3; the new leader (2, epoch 9) still
        // reports the high watermark it had as a follower (2). Ours must stay at 3, or this broker
        // would hide committed records if elected next.
        let (_dir, replicas, partition) = follower(&[(0, 3)]);
        partition.log.maybe_increment_high_watermark(3);
        let targets = vec![partition.clone()];
        let request = fetch_request(1, 42, &targets);
        apply(&replicas, &request, records(&partition, 3, 9, 2), 2).await;
        assert_eq!(partition.log.log_end_offset(), 4);
        assert_eq!(
            partition.log.high_watermark(),
            3,
            "the high watermark moved back"
        );
        apply(
            &replicas,
            &fetch_request(1, 42, &targets),
            records(&partition, 4, 9, 5),
            2,
        )
        .await;
        assert_eq!(partition.log.high_watermark(), 5);
    }

    fn out_of_range(partition: &Partition, leader_log_start: i64) -> FetchResponse {
        let data = PartitionData::default()
            .with_partition_index(0)
            .with_error_code(ResponseError::OffsetOutOfRange.code())
            .with_high_watermark(-1)
            .with_log_start_offset(leader_log_start);
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic_id(partition.topic_id)
            .with_partitions(vec![data])])
    }

    #[tokio::test]
    async fn a_follower_below_the_leaders_log_start_restarts_its_log_there() {
        // Issue #11 (4): retention removed the leader's first segments (log start 100) while this
        // follower was away with 3 records; it empties its log and fetches from 100 on.
        let (_dir, replicas, partition) = follower(&[(0, 3)]);
        let targets = vec![partition.clone()];
        let request = fetch_request(1, 42, &targets);
        apply(&replicas, &request, out_of_range(&partition, 100), 2).await;
        assert_eq!(
            (
                partition.log.log_start_offset(),
                partition.log.log_end_offset()
            ),
            (100, 100),
            "the follower stays below the leader's log start"
        );
        let next = fetch_request(1, 42, &targets);
        let p = &next.topics[0].partitions[0];
        assert_eq!(
            (p.fetch_offset, p.log_start_offset, p.last_fetched_epoch),
            (100, 100, -1)
        );
        apply(&replicas, &next, records(&partition, 100, 9, 101), 2).await;
        assert_eq!(partition.log.log_end_offset(), 101);
        // Out of range while not below the leader's log start: nothing is thrown away.
        let request = fetch_request(1, 42, &targets);
        apply(&replicas, &request, out_of_range(&partition, 50), 2).await;
        assert_eq!(partition.log.log_end_offset(), 101);
    }

    /// DeleteRecords on the leader: each response carries the leader's log start, which the follower
    /// takes (checkpointed) up to its own high watermark and reports in its next fetch, so the leader's
    /// low watermark can move and a later leader starts where this one did (Kafka's
    /// `ReplicaFetcherThread.processPartitionData`).
    #[tokio::test]
    async fn a_follower_moves_its_log_start_to_the_leaders() {
        let (_dir, replicas, partition) = follower(&[(0, 10)]);
        let targets = vec![partition.clone()];
        let with_log_start = |mut response: FetchResponse, log_start: i64| {
            response.responses[0].partitions[0].log_start_offset = log_start;
            response
        };
        apply(
            &replicas,
            &fetch_request(1, 42, &targets),
            with_log_start(records(&partition, 10, 9, 11), 4),
            2,
        )
        .await;
        assert_eq!(partition.log.log_start_offset(), 4);
        assert!(matches!(
            partition.log.read(3, 100, i64::MAX),
            Err(crate::log::LogError::OffsetOutOfRange { .. })
        ));
        let checkpointed = crate::log::checkpoint::read_offset(
            &partition
                .log
                .dir()
                .join(crate::log::partition_log::LOG_START_OFFSET_CHECKPOINT),
        )
        .unwrap();
        assert_eq!(
            checkpointed,
            Some(4),
            "on disk before the next fetch reports it"
        );
        let next = fetch_request(1, 42, &targets);
        assert_eq!(next.topics[0].partitions[0].log_start_offset, 4);
        // A leader's start beyond what this replica has committed is taken only up to that, and an
        // older one (a leader that reports less) never moves it back.
        apply(
            &replicas,
            &next,
            with_log_start(records(&partition, 11, 9, 11), 30),
            2,
        )
        .await;
        assert_eq!(partition.log.high_watermark(), 11);
        assert_eq!(partition.log.log_start_offset(), 11);
        assert!(partition.log.is_open());
        apply(
            &replicas,
            &fetch_request(1, 42, &targets),
            with_log_start(records(&partition, 12, 9, 13), 2),
            2,
        )
        .await;
        assert_eq!(partition.log.log_end_offset(), 13);
        assert_eq!(partition.log.log_start_offset(), 11);
    }

    #[test]
    fn partitions_that_returned_data_go_to_the_end_of_the_next_fetch() {
        // Issue #11 (5): with responses bounded by max_bytes, the partitions first in a request take
        // the budget; those served go last next time, so every lagging partition gets its turn.
        let (_dir, _replicas, partition) = follower(&[(0, 1)]);
        let others: Vec<Arc<Partition>> = (1..3)
            .map(|index| {
                Arc::new(Partition::new(
                    "t".into(),
                    partition.topic_id,
                    index,
                    partition.log.clone(),
                    partition.state(),
                ))
            })
            .collect();
        let mut targets = vec![partition.clone(), others[0].clone(), others[1].clone()];
        let mut served = HashMap::new();
        let data = |index: i32, bytes: usize| {
            PartitionData::default()
                .with_partition_index(index)
                .with_records(Some(bytes::Bytes::from(vec![0u8; bytes])))
        };
        let response =
            FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                .with_topic_id(partition.topic_id)
                .with_partitions(vec![data(0, 10), data(1, 10), data(2, 0)])]);
        note_served(&mut served, 1, &response);
        order_by_last_served(&mut targets, &served);
        let order: Vec<i32> = targets.iter().map(|p| p.index).collect();
        assert_eq!(order, vec![2, 0, 1]);
    }

    /// A response from the leader carrying `partitions` (index, high watermark), no records.
    fn high_watermarks(topic_id: Uuid, partitions: &[(i32, i64)]) -> FetchResponse {
        let data = partitions
            .iter()
            .map(|&(index, high_watermark)| {
                PartitionData::default()
                    .with_partition_index(index)
                    .with_high_watermark(high_watermark)
                    .with_log_start_offset(0)
            })
            .collect();
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic_id(topic_id)
            .with_partitions(data)])
    }

    /// The partitions `request` names, and those it forgets.
    fn named(request: &FetchRequest) -> (Vec<(i32, i64)>, Vec<i32>) {
        let named = request
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| (p.partition, p.fetch_offset))
            .collect();
        let forgotten = request
            .forgotten_topics_data
            .iter()
            .flat_map(|t| t.partitions.iter().copied())
            .collect();
        (named, forgotten)
    }

    /// Three partitions of one topic followed at leader 2 (the first holds `batches` batches).
    fn three(batches: usize) -> (tempfile::TempDir, ReplicaManager, Vec<Arc<Partition>>) {
        let (dir, replicas, partition) = follower(&[(0, batches)]);
        let mut targets = vec![partition.clone()];
        for index in 1..3 {
            let log = Arc::new(
                PartitionLog::open(
                    &dir.path().join(format!("t-{index}")),
                    partition.topic_id,
                    LogConfig::default(),
                )
                .unwrap(),
            );
            targets.push(Arc::new(Partition::new(
                "t".into(),
                partition.topic_id,
                index,
                log,
                partition.state(),
            )));
        }
        (dir, replicas, targets)
    }

    /// Kafka's `FetchSessionHandler`: a full fetch with epoch 0 first; once the leader answers with a
    /// session, incremental fetches name only what changed (data appended, a new leader epoch) and
    /// forget what is no longer followed; a session error, a top-level error or a failed fetch starts
    /// over with a full fetch.
    #[test]
    fn the_fetcher_opens_a_session_then_names_only_what_changed() {
        let (_dir, _replicas, mut targets) = three(2);
        let mut session = FetchSessionHandler::default();
        let request = build(&mut session, &targets);
        assert_eq!((request.session_id, request.session_epoch), (0, 0));
        assert_eq!(named(&request), (vec![(0, 2), (1, 0), (2, 0)], vec![]));
        let topic_id = targets[0].topic_id;
        let opened = high_watermarks(topic_id, &[(0, 2), (1, 0), (2, 0)]).with_session_id(77);
        assert!(session.handle_response(&opened));
        let request = build(&mut session, &targets);
        assert_eq!((request.session_id, request.session_epoch), (77, 1));
        assert_eq!(named(&request), (vec![], vec![]), "nothing changed");
        assert!(session.handle_response(&FetchResponse::default().with_session_id(77)));
        // Data appended to partition 1; partition 2 followed elsewhere from now on.
        targets[1]
            .log
            .append_as_leader(client_batch(&[1], 10), 9)
            .unwrap();
        let moved = targets.pop().unwrap();
        let request = build(&mut session, &targets);
        assert_eq!((request.session_id, request.session_epoch), (77, 2));
        assert_eq!(named(&request), (vec![(1, 1)], vec![2]));
        assert!(session.handle_response(&FetchResponse::default().with_session_id(77)));
        // A new leader epoch for partition 0; partition 2 followed here again.
        let mut newer = PartitionState::clone(&targets[0].state());
        newer.leader_epoch += 1;
        newer.partition_epoch += 1;
        targets[0].update(newer).unwrap();
        targets.push(moved);
        let request = build(&mut session, &targets);
        assert_eq!(named(&request), (vec![(0, 2), (2, 0)], vec![]));
        assert_eq!(request.topics[0].partitions[0].current_leader_epoch, 10);
        assert!(session.handle_response(&FetchResponse::default().with_session_id(77)));
        // The leader moved the session on meanwhile: close it, start a new one with everything.
        let error = FetchResponse::default()
            .with_error_code(ResponseError::InvalidFetchSessionEpoch.code());
        assert!(!session.handle_response(&error));
        assert!(is_session_error(error.error_code));
        let request = build(&mut session, &targets);
        assert_eq!((request.session_id, request.session_epoch), (77, 0));
        assert_eq!(named(&request).0.len(), 3);
        // The leader lost it: a new session without closing anything.
        let error =
            FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
        assert!(!session.handle_response(&error));
        let request = build(&mut session, &targets);
        assert_eq!((request.session_id, request.session_epoch), (0, 0));
        // No room at the leader: full fetches go on.
        assert!(session.handle_response(&high_watermarks(topic_id, &[])));
        assert!(session.is_full());
        assert!(session.handle_response(&FetchResponse::default().with_session_id(78)));
        build(&mut session, &targets);
        // A failed fetch (a broken connection): the next request closes the session and opens another.
        session.reset();
        let request = build(&mut session, &targets);
        assert_eq!((request.session_id, request.session_epoch), (78, 0));
        // An incremental answer without a session id: the leader closed it.
        assert!(session.handle_response(&FetchResponse::default().with_session_id(79)));
        build(&mut session, &targets);
        assert!(session.handle_response(&FetchResponse::default()));
        assert!(session.is_full());
    }

    /// An incremental answer carries only what changed at the leader: the partitions it leaves out
    /// are neither errors nor stale, and one it names (not named by the request) is applied under
    /// the leader epoch the session holds for it.
    #[tokio::test]
    async fn an_incremental_answer_applies_what_it_names_and_leaves_the_rest() {
        let (_dir, replicas, targets) = three(2);
        let mut session = FetchSessionHandler::default();
        build(&mut session, &targets);
        assert!(session.handle_response(&FetchResponse::default().with_session_id(5)));
        build(&mut session, &targets);
        let before: Vec<i64> = targets.iter().map(|p| p.log.log_end_offset()).collect();
        let response = high_watermarks(targets[0].topic_id, &[(0, 2)]).with_session_id(5);
        assert!(session.handle_response(&response));
        assert!(
            !apply_response(&replicas, &session, response, 2).await,
            "no backoff"
        );
        assert_eq!(targets[0].log.high_watermark(), 2);
        let after: Vec<i64> = targets.iter().map(|p| p.log.log_end_offset()).collect();
        assert_eq!(before, after);
        // An answer about a partition whose leader epoch moved since the session last named it is
        // dropped.
        let mut newer = PartitionState::clone(&targets[1].state());
        newer.leader_epoch += 1;
        newer.partition_epoch += 1;
        targets[1].update(newer).unwrap();
        let late = records(&targets[1], 0, 9, 1);
        let mut late = late;
        late.responses[0].partitions[0].partition_index = 1;
        apply_response(&replicas, &session, late, 2).await;
        assert_eq!(
            targets[1].log.log_end_offset(),
            0,
            "a stale answer was applied"
        );
    }

    /// Between reads of every partition a session's request reads again only the partitions the
    /// last response named (the ones its application may have changed) and the ones a roles change
    /// touched since (the replica manager's roles journal), not every partition on every change
    /// (issue #18); a change made elsewhere (this broker's retention moving a log start) is found
    /// at the next change of that partition's roles, or within `SESSION_RESCAN`.
    #[tokio::test(start_paused = true)]
    async fn an_incremental_request_reads_again_what_was_answered_or_touched() {
        let (_dir, replicas, targets) = three(2);
        let topic_id = targets[0].topic_id;
        let list = followed(&targets, replicas.roles_version());
        let mut session = FetchSessionHandler::default();
        let next = |session: &mut FetchSessionHandler| {
            let request =
                session.build_request(1, 42, &list, 2, |v| replicas.roles_changed_since(v));
            named(&request)
        };
        next(&mut session);
        assert!(session.handle_response(&high_watermarks(topic_id, &[]).with_session_id(5)));
        assert_eq!(next(&mut session), (vec![], vec![]));
        // A response names partition 1, whose log grows as a response's records would make it.
        assert!(session.handle_response(&high_watermarks(topic_id, &[(1, 0)]).with_session_id(5)));
        targets[1]
            .log
            .append_as_leader(client_batch(&[1], 10), 9)
            .unwrap();
        assert_eq!(next(&mut session).0, vec![(1, 1)]);
        // Partition 2 grows with no response naming it: unseen until its own roles change.
        assert!(session.handle_response(&high_watermarks(topic_id, &[]).with_session_id(5)));
        targets[2]
            .log
            .append_as_leader(client_batch(&[1], 10), 9)
            .unwrap();
        assert_eq!(next(&mut session).0, vec![]);
        assert!(session.handle_response(&high_watermarks(topic_id, &[]).with_session_id(5)));
        replicas.roles_changed(vec![targets[1].clone()]);
        assert_eq!(next(&mut session).0, vec![], "another partition's change");
        assert!(session.handle_response(&high_watermarks(topic_id, &[]).with_session_id(5)));
        replicas.roles_changed(vec![targets[2].clone()]);
        assert_eq!(next(&mut session).0, vec![(2, 1)]);
        // Partition 2 led by broker 3 from now on: forgotten here; led by 2 again: named again.
        let lead = |partition: &Arc<Partition>, leader: BrokerId| {
            let mut moved = PartitionState::clone(&partition.state());
            moved.leader = leader;
            moved.partition_epoch += 1;
            partition.update(moved).unwrap();
            replicas.roles_changed(vec![partition.clone()]);
        };
        assert!(session.handle_response(&high_watermarks(topic_id, &[]).with_session_id(5)));
        lead(&targets[2], 3);
        assert_eq!(next(&mut session), (vec![], vec![2]));
        assert!(session.handle_response(&high_watermarks(topic_id, &[]).with_session_id(5)));
        lead(&targets[2], 2);
        assert_eq!(next(&mut session), (vec![(2, 1)], vec![]));
        // Partition 0 grows unseen until the rescan is due.
        assert!(session.handle_response(&high_watermarks(topic_id, &[]).with_session_id(5)));
        targets[0]
            .log
            .append_as_leader(client_batch(&[1], 10), 9)
            .unwrap();
        assert_eq!(next(&mut session).0, vec![]);
        tokio::time::advance(SESSION_RESCAN).await;
        assert!(session.handle_response(&high_watermarks(topic_id, &[]).with_session_id(5)));
        let scans = session.scans;
        assert_eq!(next(&mut session).0, vec![(0, 3)]);
        assert_eq!(session.scans, scans + 1, "read every partition");
        // A change too large for the journal: every partition is read again.
        assert!(session.handle_response(&high_watermarks(topic_id, &[]).with_session_id(5)));
        replicas.roles_changed(vec![
            targets[1].clone();
            super::super::manager::ROLES_JOURNAL_CAPACITY
        ]);
        next(&mut session);
        assert_eq!(session.scans, scans + 2, "read every partition");
        // A partition the response named whose log went offline (its fsync failed) is forgotten.
        assert!(session.handle_response(&high_watermarks(topic_id, &[(1, 0)]).with_session_id(5)));
        targets[1]
            .log
            .append_as_leader(client_batch(&[1], 10), 9)
            .unwrap();
        targets[1].log.fail_next_fsync();
        assert!(targets[1].log.flush().is_err());
        assert_eq!(next(&mut session), (vec![], vec![1]));
        assert!(session.asked(&(topic_id, 1)).is_none());
    }

    /// The fetcher manager moves only the partitions a roles change touched between the leaders'
    /// lists (issue #18), as a walk of every partition would.
    #[test]
    fn a_roles_change_moves_only_the_partitions_it_touched_between_fetchers() {
        let (_dir, _replicas, targets) = three(0);
        let mut followed = FollowedPartitions::default();
        let mut leaders = followed.walk(&targets, 1);
        leaders.sort();
        assert_eq!(leaders, vec![2]);
        assert_eq!(followed.of(2).len(), 3);
        // Partition 1 moves to leader 3, partition 2 to this broker (no longer followed).
        let lead = |partition: &Arc<Partition>, leader: BrokerId| {
            let mut moved = PartitionState::clone(&partition.state());
            moved.leader = leader;
            moved.partition_epoch += 1;
            partition.update(moved).unwrap();
        };
        lead(&targets[1], 3);
        lead(&targets[2], 1);
        let touched = |partitions: &[Arc<Partition>]| -> Vec<Touched> {
            partitions.iter().map(Touched::of).collect()
        };
        let mut leaders = followed.update(&touched(&targets[1..]), 1);
        leaders.sort();
        assert_eq!(leaders, vec![2, 3]);
        let keys = |leader| -> Vec<i32> { followed.of(leader).iter().map(|p| p.index).collect() };
        assert_eq!(keys(2), vec![0]);
        assert_eq!(keys(3), vec![1]);
        // The same as a walk finds.
        let mut walked = FollowedPartitions::default();
        walked.walk(&targets, 1);
        for leader in [2, 3] {
            let mut from_walk: Vec<i32> = walked.of(leader).iter().map(|p| p.index).collect();
            from_walk.sort();
            assert_eq!(keys(leader), from_walk);
        }
        // A partition no longer hosted leaves its list; the last one takes its fetcher with it.
        targets[1].retire();
        assert_eq!(followed.update(&touched(&targets[1..2]), 1), vec![3]);
        assert!(followed.of(3).is_empty());
    }
}
