//! The Kafka listener and its connections: bytes ↔ frames ↔ requests. A connection reads ahead (up to
//! `max_inflight` frames buffered, so pipelining clients keep the socket busy) but handles its requests
//! one at a time, in order, as Kafka does: pipelined produces to one partition are appended in the order
//! they were sent, and responses go out in request order. A frame over the size limit is
//! refused before anything is allocated for it; a frame that cannot be answered (unknown API or
//! version, malformed) closes that connection with a log line and disturbs no other.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use kafka_protocol::messages::{ApiKey, ResponseKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::handlers::{api_versions, dispatch, BrokerContext, Outcome};
use crate::protocol::codec::{decode_request, encode_response, Decoded, FrameError};

/// Limits of one connection.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    pub max_frame_bytes: u32,
    pub max_inflight: usize,
    /// The listener name clients connect through (endpoints in answers are on the same one).
    pub listener: String,
}

/// Why reading the next frame failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("frame of {size} bytes exceeds the maximum of {max}")]
    TooLarge { size: i64, max: u32 },
    #[error("negative frame size {0}")]
    Negative(i32),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one size-prefixed frame; `None` at a clean end of stream.
pub async fn read_frame(
    reader: &mut (impl AsyncRead + Unpin),
    max: u32,
) -> Result<Option<Bytes>, ReadError> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let size = i32::from_be_bytes(size);
    if size < 0 {
        return Err(ReadError::Negative(size));
    }
    if size as u32 > max {
        return Err(ReadError::TooLarge {
            size: i64::from(size),
            max,
        });
    }
    let mut frame = BytesMut::zeroed(size as usize);
    reader.read_exact(&mut frame).await?;
    Ok(Some(frame.freeze()))
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

type Pending = Pin<Box<dyn std::future::Future<Output = Result<Option<Bytes>, String>> + Send>>;

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
                    next = read_frame(&mut reader, max_frame) => next,
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

    let mut pending: FuturesOrdered<Pending> = FuturesOrdered::new();
    let mut reading_done = false;
    let close_reason: Option<String> = loop {
        tokio::select! {
            _ = cancel.cancelled() => break None,
            // One request at a time: the next is taken only once the previous one has been answered.
            inbound = frames.recv(), if !reading_done && pending.is_empty() => {
                match inbound {
                    Some(Inbound::Frame(frame)) => match decode_request(frame) {
                        Ok(decoded) => pending.push_back(handle(decoded, ctx.clone(), limits.listener.clone())),
                        Err(e) => {
                            // Answer what came before, then close.
                            reading_done = true;
                            pending.push_back(Box::pin(async move { Err(frame_error_reason(&e)) }));
                        }
                    },
                    Some(Inbound::Closed(reason)) => {
                        reading_done = true;
                        if let Some(reason) = reason {
                            pending.push_back(Box::pin(async move { Err(reason) }));
                        }
                    }
                    None => reading_done = true,
                }
            }
            Some(out) = pending.next(), if !pending.is_empty() => match out {
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
        if reading_done && pending.is_empty() {
            break None;
        }
    };
    read_cancel.cancel();
    let _ = reading.await;
    let _ = writer.shutdown().await;
    match close_reason {
        Some(reason) => info!(%peer, "closed Kafka connection: {reason}"),
        None => debug!(%peer, "Kafka connection closed"),
    }
}

fn frame_error_reason(e: &FrameError) -> String {
    e.to_string()
}

/// Handles one decoded frame: the encoded response, `None` for no response, or why to close.
fn handle(decoded: Decoded, ctx: Arc<BrokerContext>, listener: String) -> Pending {
    Box::pin(async move {
        match decoded {
            Decoded::ApiVersionsTooNew { correlation_id } => {
                let body = ResponseKind::ApiVersions(api_versions::versions_too_new());
                encode_response(correlation_id, ApiKey::ApiVersions, 0, &body)
                    .map(Some)
                    .map_err(|e| format!("cannot encode ApiVersions: {e}"))
            }
            Decoded::Request(request) => {
                let correlation_id = request.header.correlation_id;
                let (key, version) = (request.api_key, request.version);
                match dispatch(&ctx, *request, &listener).await {
                    Outcome::Respond(body) => encode_response(correlation_id, key, version, &body)
                        .map(Some)
                        .map_err(|e| format!("cannot encode {key:?} v{version} response: {e}")),
                    Outcome::NoResponse => Ok(None),
                    Outcome::Close(reason) => Err(reason),
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn oversize_and_negative_frames_are_refused_before_allocation() {
        let mut huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3];
        assert!(matches!(
            read_frame(&mut huge, 1024).await,
            Err(ReadError::TooLarge { .. })
        ));
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xfe];
        assert!(matches!(
            read_frame(&mut negative, 1024).await,
            Err(ReadError::Negative(-2))
        ));
        let mut ok: &[u8] = &[0, 0, 0, 2, 9, 8, 0, 0];
        assert_eq!(
            read_frame(&mut ok, 1024).await.unwrap().unwrap().as_ref(),
            &[9, 8]
        );
        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty, 1024).await.unwrap().is_none());
        let mut cut: &[u8] = &[0, 0, 0, 9, 1];
        assert!(matches!(
            read_frame(&mut cut, 1024).await,
            Err(ReadError::Io(_))
        ));
    }
}
