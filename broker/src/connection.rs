//! The Kafka listener and its connections: bytes ↔ frames ↔ requests. A connection reads ahead (up to
//! `max_inflight` frames buffered, so pipelining clients keep the socket busy) and runs the in-order
//! part of its requests one at a time, as Kafka does: pipelined produces to one partition are appended
//! in the order they were sent. What may overlap — a produce waiting for its fsync — completes while
//! the next request runs, so one fsync can cover several requests; responses go out in request order. A frame over the size limit is
//! refused before anything is allocated for it; a frame that cannot be answered (unknown API or
//! version, malformed) closes that connection with a log line and disturbs no other.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::stream::{FuturesOrdered, StreamExt};
use kafka_protocol::messages::{ApiKey, ResponseKind};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use chronik_wire::read_frame;

use crate::authorizer::Session;
use crate::handlers::{api_versions, dispatch, BrokerContext, Outcome};
use crate::metrics::{api_name, metrics};
use crate::protocol::codec::{decode_request, encode_response, Decoded};

/// Limits of one connection.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    pub max_frame_bytes: u32,
    pub max_inflight: usize,
    /// The listener name clients connect through (endpoints in answers are on the same one).
    pub listener: String,
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
                tracker.spawn(handle_connection(
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

/// A response being finished: its encoded bytes, `None` for no response, or why to close.
type Pending = Pin<Box<dyn std::future::Future<Output = Result<Option<Bytes>, String>> + Send>>;

/// Where a request stands once its in-order part has run.
enum Staged {
    Done(Result<Option<Bytes>, String>),
    /// The rest may overlap with the next request (e.g. a produce waiting for its fsync).
    Completing(Pending),
}

type Stage = Pin<Box<dyn std::future::Future<Output = Staged> + Send>>;

/// What the reader hands the writer: a request to handle, or why reading stopped.
enum Inbound {
    Frame(Bytes),
    Closed(Option<String>),
}

async fn handle_connection(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<BrokerContext>,
    limits: ConnectionLimits,
    cancel: CancellationToken,
) {
    debug!(%peer, "Kafka connection opened");
    metrics().connection_opened(&limits.listener);
    // Until SASL or TLS authenticate one, every connection is `User:ANONYMOUS`.
    let session = Arc::new(Session::anonymous(Some(peer.ip())));
    let (mut reader, mut writer) = stream.into_split();
    let (frames_tx, mut frames) = mpsc::channel::<Inbound>(limits.max_inflight.max(1));
    let max_frame = limits.max_frame_bytes;
    // The reader runs ahead of the handlers; the bounded channel is the backpressure.
    let read_cancel = cancel.child_token();
    let reading = {
        let read_cancel = read_cancel.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = read_cancel.cancelled() => return,
                    next = read_frame(&mut reader, max_frame as usize) => next,
                };
                let inbound = match next {
                    Ok(Some(frame)) => Inbound::Frame(frame),
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
    let close_reason: Option<String> = loop {
        tokio::select! {
            _ = cancel.cancelled() => break None,
            inbound = frames.recv(),
                if !reading_done && current.is_none() && completing.len() < limits.max_inflight =>
            {
                match inbound {
                    Some(Inbound::Frame(frame)) => match decode_request(frame) {
                        Ok(decoded) => current = Some(handle(decoded, ctx.clone(), limits.listener.clone(), peer, session.clone())),
                        Err(e) => {
                            // Answer what came before, then close.
                            reading_done = true;
                            let reason = e.to_string();
                            completing.push_back(Box::pin(async move { Err(reason) }));
                        }
                    },
                    Some(Inbound::Closed(reason)) => {
                        reading_done = true;
                        if let Some(reason) = reason {
                            completing.push_back(Box::pin(async move { Err(reason) }));
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
                match staged {
                    Staged::Done(out) => completing.push_back(Box::pin(async move { out })),
                    Staged::Completing(rest) => completing.push_back(rest),
                }
            }
            Some(out) = completing.next(), if !completing.is_empty() => match out {
                Ok(Some(bytes)) => {
                    if let Err(e) = writer.write_all(&bytes).await {
                        break Some(format!("write failed: {e}"));
                    }
                }
                Ok(None) => {}
                Err(reason) => break Some(reason),
            },
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

fn encode(correlation_id: i32, key: ApiKey, version: i16, outcome: Outcome) -> Staged {
    match outcome {
        Outcome::Respond(body) => Staged::Done(
            encode_response(correlation_id, key, version, &body)
                .map(Some)
                .map_err(|e| format!("cannot encode {key:?} v{version} response: {e}")),
        ),
        Outcome::NoResponse => Staged::Done(Ok(None)),
        Outcome::Close(reason) => Staged::Done(Err(reason)),
        Outcome::Completing(rest) => Staged::Completing(Box::pin(async move {
            match encode(correlation_id, key, version, rest.await) {
                Staged::Done(out) => out,
                Staged::Completing(more) => more.await,
            }
        })),
    }
}

/// Runs the in-order part of one decoded frame.
fn handle(
    decoded: Decoded,
    ctx: Arc<BrokerContext>,
    listener: String,
    peer: SocketAddr,
    session: Arc<Session>,
) -> Stage {
    Box::pin(async move {
        match decoded {
            Decoded::ApiVersionsTooNew { correlation_id } => {
                let body = ResponseKind::ApiVersions(api_versions::versions_too_new());
                Staged::Done(
                    encode_response(correlation_id, ApiKey::ApiVersions, 0, &body)
                        .map(Some)
                        .map_err(|e| format!("cannot encode ApiVersions: {e}")),
                )
            }
            Decoded::Request(request) => {
                let correlation_id = request.header.correlation_id;
                let (key, version) = (request.api_key, request.version);
                let arrived = Instant::now();
                let staged = encode(
                    correlation_id,
                    key,
                    version,
                    dispatch(&ctx, *request, &listener, Some(peer), &session).await,
                );
                match staged {
                    Staged::Done(out) => {
                        metrics().request(api_name(key), version, arrived.elapsed());
                        Staged::Done(out)
                    }
                    Staged::Completing(rest) => Staged::Completing(Box::pin(async move {
                        let out = rest.await;
                        metrics().request(api_name(key), version, arrived.elapsed());
                        out
                    })),
                }
            }
        }
    })
}
