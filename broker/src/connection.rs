//! The Kafka listener and its connections: bytes ↔ frames ↔ requests. A connection reads ahead (up to
//! `max_inflight` frames buffered, so pipelining clients keep the socket busy) and runs the in-order
//! part of its requests one at a time, as Kafka does: pipelined produces to one partition are appended
//! in the order they were sent. What may overlap — a produce waiting for its fsync — completes while
//! the next request runs, so one fsync can cover several requests; responses go out in request order. A frame over the size limit is
//! refused before anything is allocated for it; a frame that cannot be answered (unknown API or
//! version, malformed) closes that connection with a log line and disturbs no other.
//!
//! Security (`security/`): on SSL and SASL_SSL listeners the TLS handshake runs in the accepted
//! connection's own task, bounded by `TLS_HANDSHAKE_TIMEOUT`; a failed one (a plaintext client, garbage,
//! an untrusted certificate) is logged once and closes only that connection. On SASL listeners every
//! frame goes through the connection's `SaslAuthenticator` first, which answers the SASL APIs itself and
//! lets other requests through only once authenticated. The connection's `Session` (its principal) is
//! replaced when an authentication completes; each request keeps the session it started with.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures::stream::{FuturesOrdered, StreamExt};
use kafka_protocol::messages::{ApiKey, ResponseKind};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use chronik_wire::read_frame;

use crate::authorizer::{KafkaPrincipal, Session};
use crate::error_counts::error_codes;
use crate::handlers::throttle::{with_throttle, QuotaUse};
use crate::handlers::{api_versions, dispatch, BrokerContext, Outcome};
use crate::metrics::{api_name, metrics};
use crate::protocol::codec::{decode_request, encode_response, Decoded};
use crate::security::sasl::{SaslAction, SaslAuthenticator};
use crate::security::{principal, ListenerSecurity};

/// Largest frame a SASL connection may send before it is authenticated (Kafka's
/// `sasl.server.max.receive.size` default).
pub const SASL_MAX_RECEIVE_BYTES: usize = 524_288;

/// Reads one frame under the limit in force when its size prefix arrives.
async fn read_limited_frame(
    reader: &mut (impl AsyncRead + Unpin),
    limit: &AtomicUsize,
) -> Result<Option<Bytes>, chronik_wire::FrameError> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let max = limit.load(Ordering::Acquire);
    read_frame(&mut std::io::Cursor::new(size).chain(reader), max).await
}

/// How long a TLS handshake may take before the connection is dropped.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Limits of one connection.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    pub max_frame_bytes: u32,
    pub max_inflight: usize,
    /// The listener name clients connect through (endpoints in answers are on the same one).
    pub listener: String,
    /// The listener's security protocol, TLS and SASL settings.
    pub security: ListenerSecurity,
}

/// Accepts Kafka connections until cancelled.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<BrokerContext>,
    limits: ConnectionLimits,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tracker.spawn(accept_connection(
                    stream,
                    peer,
                    ctx.clone(),
                    limits.clone(),
                    cancel.clone(),
                ));
            }
            Err(e) => {
                warn!("accepting a Kafka connection failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// A response's encoded bytes, `None` for no response, or why to close.
type Encoded = Result<Option<Bytes>, String>;

/// A finished response and, for a Kafka request, its times so far (the request metrics are
/// recorded once it is written).
struct Answer {
    out: Encoded,
    times: Option<RequestTimes>,
    /// How long the connection reads nothing more after this answer: a client over its quota
    /// (`crate::quota`; Kafka mutes the channel).
    throttle: Duration,
}

impl Answer {
    fn plain(out: Encoded) -> Answer {
        Answer {
            out,
            times: None,
            throttle: Duration::ZERO,
        }
    }
}

/// A response being finished.
type Pending = Pin<Box<dyn std::future::Future<Output = Answer> + Send>>;

/// Where a request stands once its in-order part has run.
enum Staged {
    Done(Answer),
    /// The rest may overlap with the next request (e.g. a produce waiting for its fsync); with the
    /// throttle its answer will carry.
    Completing(Pending, Duration),
}

type Stage = Pin<Box<dyn std::future::Future<Output = Staged> + Send>>;

/// What the reader hands the writer: a request to handle (with when it was read), or why reading
/// stopped.
enum Inbound {
    Frame(Bytes, Instant),
    Closed(Option<String>),
}

/// When a request went through each of Kafka's request phases (`RequestChannel.Request`'s
/// timestamps): read off the socket, taken up by the handler, its handler returned (the local part),
/// its answer ready (after any wait for replicas or data: the remote part). The response queue and
/// send phases are measured when it is written.
#[derive(Clone, Copy)]
struct RequestTimes {
    api: &'static str,
    version: i16,
    received: Instant,
    started: Instant,
    handled: Instant,
    ready: Instant,
}

impl RequestTimes {
    /// Records the request's metrics once its response went out: written from `writing` to `written`
    /// (both `None` for a request without a response).
    fn record(self, written: Option<(Instant, Instant)>) {
        let (writing, written) = written.unwrap_or((self.ready, self.ready));
        let m = metrics();
        m.request(self.api, self.version, written - self.received);
        m.request_phases(
            self.api,
            [
                self.started - self.received,
                self.handled - self.started,
                self.ready - self.handled,
                writing - self.ready,
                written - writing,
            ],
        );
    }
}

/// Secures an accepted connection as its listener asks (TLS handshake, the principal of a client
/// certificate), then serves it.
async fn accept_connection(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<BrokerContext>,
    limits: ConnectionLimits,
    cancel: CancellationToken,
) {
    let Some(tls) = limits.security.tls.clone() else {
        return handle_connection(
            stream,
            peer,
            KafkaPrincipal::anonymous(),
            ctx,
            limits,
            cancel,
        )
        .await;
    };
    let accepted = tokio::select! {
        _ = cancel.cancelled() => return,
        accepted = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)) => accepted,
    };
    let stream = match accepted {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            info!(%peer, listener = %limits.listener, "TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            info!(%peer, listener = %limits.listener, "TLS handshake did not finish within {TLS_HANDSHAKE_TIMEOUT:?}");
            return;
        }
    };
    // On SSL listeners the principal is the client certificate's subject (Kafka's
    // `DefaultKafkaPrincipalBuilder`); on SASL_SSL it is the SASL identity, set once authenticated.
    let mut principal = KafkaPrincipal::anonymous();
    if !limits.security.protocol.uses_sasl() {
        if let Some(cert) = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
        {
            let mapped = principal::subject_dn(cert.as_ref()).and_then(|dn| {
                limits.security.principal_mapper.name(&dn).ok_or_else(|| {
                    format!("no --ssl-principal-mapping-rules rule applies to DN {dn}")
                })
            });
            match mapped {
                Ok(name) => {
                    principal = KafkaPrincipal {
                        principal_type: "User".into(),
                        name,
                    }
                }
                Err(e) => {
                    info!(%peer, listener = %limits.listener, "refused a TLS client: {e}");
                    return;
                }
            }
        }
    }
    handle_connection(stream, peer, principal, ctx, limits, cancel).await
}

/// The client connections open on this broker, each known by the client's address (its source
/// address and port name one TCP connection). The transaction coordinator asks whether the
/// connection a transaction was last extended on is still open (`txn::coordinator`).
#[derive(Debug, Default)]
pub struct OpenConnections(Mutex<HashSet<SocketAddr>>);

impl OpenConnections {
    /// Records `peer` as open until the guard is dropped.
    pub fn register(self: &Arc<Self>, peer: SocketAddr) -> OpenConnection {
        self.lock().insert(peer);
        OpenConnection {
            connections: self.clone(),
            peer,
        }
    }

    pub fn is_open(&self, peer: SocketAddr) -> bool {
        self.lock().contains(&peer)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<SocketAddr>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connection's place in [`OpenConnections`], given up when the connection ends.
pub struct OpenConnection {
    connections: Arc<OpenConnections>,
    peer: SocketAddr,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.connections.lock().remove(&self.peer);
    }
}

/// Serves one connection, TLS or not (the stream is already secured).
pub async fn handle_connection<S>(
    stream: S,
    peer: SocketAddr,
    principal: KafkaPrincipal,
    ctx: Arc<BrokerContext>,
    limits: ConnectionLimits,
    cancel: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    debug!(%peer, %principal, "Kafka connection opened");
    metrics().connection_opened(&limits.listener);
    let _open = ctx.connections.register(peer);
    // Replaced when SASL authenticates the connection; each request holds the one it started with.
    let mut session = Arc::new(Session {
        principal,
        client_address: Some(peer.ip()),
    });
    let mut sasl = limits.security.sasl.clone().map(SaslAuthenticator::new);
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (frames_tx, mut frames) = mpsc::channel::<Inbound>(limits.max_inflight.max(1));
    // Until a SASL connection authenticates, frames are limited as Kafka limits them
    // (`sasl.server.max.receive.size`), so an anonymous client cannot make the broker allocate
    // `--max-request-bytes` for it; the limit is read after each size prefix arrives, and raised before
    // the successful SaslAuthenticate is answered, so the client's next request already sees it.
    let max_frame = limits.max_frame_bytes as usize;
    let frame_limit = Arc::new(AtomicUsize::new(if sasl.is_some() {
        max_frame.min(SASL_MAX_RECEIVE_BYTES)
    } else {
        max_frame
    }));
    // The reader runs ahead of the handlers; the bounded channel is the backpressure.
    let read_cancel = cancel.child_token();
    let reading = {
        let read_cancel = read_cancel.clone();
        let frame_limit = frame_limit.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = read_cancel.cancelled() => return,
                    next = read_limited_frame(&mut reader, &frame_limit) => next,
                };
                let inbound = match next {
                    Ok(Some(frame)) => Inbound::Frame(frame, Instant::now()),
                    Ok(None) => Inbound::Closed(None),
                    Err(e) => Inbound::Closed(Some(e.to_string())),
                };
                let stop = matches!(inbound, Inbound::Closed(_));
                if frames_tx.send(inbound).await.is_err() || stop {
                    return;
                }
            }
        })
    };

    // The request whose in-order part is running; at most one at a time, as in Kafka.
    let mut current: Option<Stage> = None;
    // Requests past their in-order part, answered in request order.
    let mut completing: FuturesOrdered<Pending> = FuturesOrdered::new();
    let mut reading_done = false;
    // Nothing more is read while an answer telling the client to wait is pending (requests are read
    // ahead, Kafka reads none while one is handled), then until the wait is over from when it was
    // written (Kafka mutes the channel once the response is sent).
    let mut throttled_pending = 0usize;
    let mut muted_until: Option<tokio::time::Instant> = None;
    let close_reason: Option<String> = loop {
        tokio::select! {
            _ = cancel.cancelled() => break None,
            () = async {
                match muted_until {
                    Some(until) => tokio::time::sleep_until(until).await,
                    None => std::future::pending().await,
                }
            }, if muted_until.is_some() => muted_until = None,
            inbound = frames.recv(),
                if !reading_done
                    && current.is_none()
                    && throttled_pending == 0
                    && muted_until.is_none()
                    && completing.len() < limits.max_inflight =>
            {
                match inbound {
                    Some(Inbound::Frame(frame, received)) => {
                        let size = frame.len();
                        let decoded = match sasl.as_mut() {
                            None => decode_request(frame).map_err(|e| e.to_string()),
                            Some(sasl) => match sasl.on_frame(frame, || ctx.metadata.current()).await {
                                SaslAction::Dispatch(decoded) => Ok(decoded),
                                SaslAction::Respond(bytes) => {
                                    completing.push_back(Box::pin(async move { Answer::plain(Ok(Some(bytes))) }));
                                    continue;
                                }
                                SaslAction::Authenticated { response, principal } => {
                                    frame_limit.store(max_frame, Ordering::Release);
                                    if principal != session.principal {
                                        debug!(%peer, %principal, "SASL authentication completed");
                                    }
                                    session = Arc::new(Session {
                                        principal,
                                        client_address: Some(peer.ip()),
                                    });
                                    completing.push_back(Box::pin(async move { Answer::plain(Ok(Some(response))) }));
                                    continue;
                                }
                                SaslAction::Close { response, reason } => {
                                    if let Some(bytes) = response {
                                        completing.push_back(Box::pin(async move { Answer::plain(Ok(Some(bytes))) }));
                                    }
                                    Err(reason)
                                }
                            },
                        };
                        match decoded {
                            Ok(decoded) => current = Some(handle(decoded, received, size, ctx.clone(), limits.listener.clone(), peer, session.clone())),
                            Err(reason) => {
                                // Answer what came before, then close.
                                reading_done = true;
                                completing.push_back(Box::pin(async move { Answer::plain(Err(reason)) }));
                            }
                        }
                    }
                    Some(Inbound::Closed(reason)) => {
                        reading_done = true;
                        if let Some(reason) = reason {
                            completing.push_back(Box::pin(async move { Answer::plain(Err(reason)) }));
                        }
                    }
                    None => reading_done = true,
                }
            }
            staged = async {
                match current.as_mut() {
                    Some(stage) => stage.await,
                    None => std::future::pending().await,
                }
            }, if current.is_some() => {
                current = None;
                let throttle = match staged {
                    Staged::Done(out) => {
                        let throttle = out.throttle;
                        completing.push_back(Box::pin(async move { out }));
                        throttle
                    }
                    Staged::Completing(rest, throttle) => {
                        completing.push_back(rest);
                        throttle
                    }
                };
                if !throttle.is_zero() {
                    throttled_pending += 1;
                }
            }
            Some(Answer { out, times, throttle }) = completing.next(), if !completing.is_empty() => {
                if !throttle.is_zero() {
                    throttled_pending -= 1;
                    // As long as `throttle_time_ms` can say.
                    let wait = throttle.min(Duration::from_millis(i32::MAX as u64));
                    let until = tokio::time::Instant::now() + wait;
                    muted_until = Some(muted_until.map_or(until, |m| m.max(until)));
                }
                match out {
                Ok(Some(bytes)) => {
                    // Flush too: a TLS stream's write returns once rustls has taken the bytes, and
                    // when the socket is full the last records stay in rustls until the next write,
                    // so a client waiting for this response would wait for its request timeout.
                    let writing = Instant::now();
                    let written = match writer.write_all(&bytes).await {
                        Ok(()) => writer.flush().await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = written {
                        break Some(format!("write failed: {e}"));
                    }
                    if let Some(times) = times {
                        times.record(Some((writing, Instant::now())));
                    }
                }
                Ok(None) => {
                    if let Some(times) = times {
                        times.record(None);
                    }
                }
                Err(reason) => break Some(reason),
                }
            }
            else => break None,
        }
        if reading_done && current.is_none() && completing.is_empty() {
            break None;
        }
    };
    read_cancel.cancel();
    let _ = reading.await;
    let _ = writer.shutdown().await;
    metrics().connection_closed(&limits.listener);
    match close_reason {
        Some(reason) => info!(%peer, "closed Kafka connection: {reason}"),
        None => debug!(%peer, "Kafka connection closed"),
    }
}

/// A handler's outcome, encoded now or once its remote part is done.
enum Encoding {
    Done(Encoded),
    Completing(Pin<Box<dyn std::future::Future<Output = Encoded> + Send>>),
}

/// Encodes a response, counting the Kafka errors it carries (`error_counts`).
fn encode(correlation_id: i32, key: ApiKey, version: i16, outcome: Outcome) -> Encoding {
    match outcome {
        Outcome::Respond(body) => {
            metrics().request_errors(api_name(key), &error_codes(&body));
            Encoding::Done(
                encode_response(correlation_id, key, version, &body)
                    .map(Some)
                    .map_err(|e| format!("cannot encode {key:?} v{version} response: {e}")),
            )
        }
        Outcome::NoResponse => Encoding::Done(Ok(None)),
        Outcome::Close(reason) => Encoding::Done(Err(reason)),
        Outcome::Completing(rest) => Encoding::Completing(Box::pin(async move {
            match encode(correlation_id, key, version, rest.await) {
                Encoding::Done(out) => out,
                Encoding::Completing(more) => more.await,
            }
        })),
    }
}

/// Runs the in-order part of one decoded frame of `size` bytes, read at `received`.
fn handle(
    decoded: Decoded,
    received: Instant,
    size: usize,
    ctx: Arc<BrokerContext>,
    listener: String,
    peer: SocketAddr,
    session: Arc<Session>,
) -> Stage {
    Box::pin(async move {
        match decoded {
            Decoded::ApiVersionsTooNew { correlation_id } => {
                let body = ResponseKind::ApiVersions(api_versions::versions_too_new());
                Staged::Done(Answer::plain(
                    encode_response(correlation_id, ApiKey::ApiVersions, 0, &body)
                        .map(Some)
                        .map_err(|e| format!("cannot encode ApiVersions: {e}")),
                ))
            }
            Decoded::Request(request) => {
                let correlation_id = request.header.correlation_id;
                let (key, version) = (request.api_key, request.version);
                let started = Instant::now();
                let quota = QuotaUse::of(&ctx, &request, &session.principal.name);
                let mut request = request;
                let mut throttle = quota
                    .as_ref()
                    .map_or(Duration::ZERO, |q| q.before(&ctx, &mut request, size));
                let mut outcome = dispatch(&ctx, *request, &listener, Some(peer), &session).await;
                if let Some(q) = &quota {
                    throttle = throttle.max(q.after(&ctx, &mut outcome));
                    if !throttle.is_zero() {
                        metrics().quota_throttled(q.kind().name(), throttle);
                        outcome = with_throttle(outcome, throttle);
                    }
                }
                let handled = Instant::now();
                let times = move |ready| RequestTimes {
                    api: api_name(key),
                    version,
                    received,
                    started,
                    handled,
                    ready,
                };
                match encode(correlation_id, key, version, outcome) {
                    Encoding::Done(out) => Staged::Done(Answer {
                        out,
                        times: Some(times(handled)),
                        throttle,
                    }),
                    Encoding::Completing(rest) => Staged::Completing(
                        Box::pin(async move {
                            let out = rest.await;
                            Answer {
                                out,
                                times: Some(times(Instant::now())),
                                throttle,
                            }
                        }),
                        throttle,
                    ),
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use chronik_metadata::Record;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        ApiVersionsRequest, ApiVersionsResponse, ProduceRequest, ProduceResponse, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::handlers::test_support::TestBroker;
    use crate::security::ListenerSecurity;

    /// A client over its quota gets its answer at once with `throttle_time_ms`, and nothing more it
    /// sends is read until that time has passed (KIP-219; Kafka mutes the channel), even a request
    /// it had already sent.
    #[tokio::test(start_paused = true)]
    async fn a_client_over_its_quota_is_told_to_wait_and_not_read_meanwhile() {
        let quota = Record::ClientQuota {
            entity: chronik_metadata::quotas::QuotaEntity::of(&[("client-id", Some("slow"))])
                .expect("entity"),
            key: "producer_byte_rate".into(),
            value: Some(100),
        };
        let broker = TestBroker::new(1, &[quota]);
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let cancel = CancellationToken::new();
        let served = tokio::spawn(handle_connection(
            server,
            "127.0.0.1:9".parse().expect("address"),
            KafkaPrincipal::anonymous(),
            Arc::new(broker.ctx),
            limits(),
            cancel.clone(),
        ));
        // 100 bytes/s over at least 10 s: a 4 KiB produce is three times the quota.
        let produce = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(1000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("nowhere")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from(vec![0u8; 4096])))])]);
        let mut frames = BytesMut::new();
        chronik_wire::encode_request(&mut frames, &produce, 9, 1, "slow").expect("encoded");
        chronik_wire::encode_request(&mut frames, &ApiVersionsRequest::default(), 3, 2, "slow")
            .expect("encoded");
        let sent = tokio::time::Instant::now();
        client.write_all(&frames).await.expect("sent");

        let answer = read_frame(&mut client, 1 << 20)
            .await
            .expect("a frame")
            .expect("open");
        let produced: ProduceResponse =
            chronik_wire::decode_response::<ProduceRequest>(answer, 9, 1).expect("decodes");
        let throttle = Duration::from_millis(produced.throttle_time_ms as u64);
        assert!(throttle > Duration::from_secs(15), "{throttle:?}");
        let answer = read_frame(&mut client, 1 << 20)
            .await
            .expect("a frame")
            .expect("open");
        let waited = sent.elapsed();
        chronik_wire::decode_response::<ApiVersionsRequest>(answer, 3, 2).expect("decodes");
        assert!(
            waited >= throttle,
            "answered after {waited:?} of {throttle:?}"
        );

        cancel.cancel();
        drop(client);
        let _ = served.await;
    }

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            max_frame_bytes: 1 << 20,
            max_inflight: 5,
            listener: "PLAINTEXT".into(),
            security: ListenerSecurity::plaintext(),
        }
    }

    /// Regression (the chaos run with `--security sasl_ssl`, a final read that never got a partition):
    /// a TLS stream keeps the last records of a response in rustls when the socket is full, until it
    /// is flushed. A `BufWriter` keeps everything until flushed, so without the flush this response
    /// would never arrive.
    #[tokio::test]
    async fn every_response_is_flushed_to_a_stream_that_buffers_writes() {
        let broker = TestBroker::new(1, &[]);
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let cancel = CancellationToken::new();
        let limits = ConnectionLimits {
            max_frame_bytes: 1 << 20,
            max_inflight: 5,
            listener: "PLAINTEXT".into(),
            security: ListenerSecurity::plaintext(),
        };
        let served = tokio::spawn(handle_connection(
            tokio::io::BufWriter::new(server),
            "127.0.0.1:9".parse().expect("address"),
            KafkaPrincipal::anonymous(),
            Arc::new(broker.ctx),
            limits,
            cancel.clone(),
        ));
        let mut frame = BytesMut::new();
        chronik_wire::encode_request(&mut frame, &ApiVersionsRequest::default(), 3, 7, "test")
            .expect("encoded");
        client.write_all(&frame).await.expect("sent");
        let answer = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut client, 1 << 20))
            .await
            .expect("the response arrives without another write")
            .expect("a frame")
            .expect("not closed");
        let response: ApiVersionsResponse =
            chronik_wire::decode_response::<ApiVersionsRequest>(answer, 3, 7).expect("decodes");
        assert_eq!(response.error_code, 0);
        cancel.cancel();
        drop(client);
        let _ = served.await;
    }
}
