//! Kafka's wire framing, shared by everything in Chronik that speaks the Kafka protocol: the broker's
//! listener (`connection`), its replica fetchers, and `chronikctl`'s Kafka client. A frame is a 4-byte
//! big-endian size and that many bytes; a request frame starts with the request header of the version
//! Kafka uses for that API and request version, a response frame with the matching response header
//! (ApiVersions answers always with header v0, as `ApiKey::response_header_version` says).
//!
//! What must stay true: a frame over its reader's limit, or with a negative size, is refused before
//! anything is allocated for it; a response is accepted only as the answer to the correlation id the
//! caller waits for, and only if it decodes to its last byte. Nothing here owns a socket: it works on
//! any `AsyncRead`.
//!
//! [`security`] is the client side of Kafka's listener security, shared by the same clients: TLS
//! (rustls), SASL ([`sasl`]: PLAIN and SCRAM, [`scram`]) and the [`ClientConnector`] that runs them.

pub mod sasl;
pub mod scram;
pub mod security;

pub use security::{
    ClientConnector, ClientSecurity, ConnectError, KafkaStream, Password, SaslMechanism,
    SaslSettings, SecurityConfigError, SecurityProtocol, TlsSettings,
};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why reading the next frame failed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the maximum of {max}")]
    TooLarge { size: i64, max: usize },
    #[error("negative frame size {0}")]
    Negative(i32),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Why a request could not be framed or a response frame is not the answer expected.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("cannot encode the request header: {0}")]
    EncodeHeader(String),
    #[error("cannot encode the request: {0}")]
    Encode(String),
    #[error("the request is larger than 2 GiB")]
    RequestTooLarge,
    #[error("cannot decode the response header: {0}")]
    DecodeHeader(String),
    #[error("cannot decode the response: {0}")]
    Decode(String),
    #[error("response carries correlation id {got}, expected {expected} (answers out of order)")]
    CorrelationMismatch { got: i32, expected: i32 },
    #[error("{0} bytes left over after the response")]
    TrailingBytes(usize),
}

/// Reads one size-prefixed frame of at most `max` bytes; `None` at a clean end of stream (before a
/// size prefix).
pub async fn read_frame(
    reader: &mut (impl AsyncRead + Unpin),
    max: usize,
) -> Result<Option<Bytes>, FrameError> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let size = i32::from_be_bytes(size);
    let Ok(len) = usize::try_from(size) else {
        return Err(FrameError::Negative(size));
    };
    if len > max {
        return Err(FrameError::TooLarge {
            size: i64::from(size),
            max,
        });
    }
    let mut frame = BytesMut::zeroed(len);
    reader.read_exact(&mut frame).await?;
    Ok(Some(frame.freeze()))
}

/// The API key of a request type.
pub fn api_key<R: Request>() -> ApiKey {
    // Every `Request` type of the protocol crate has a key `ApiKey` knows.
    ApiKey::try_from(R::KEY).unwrap_or(ApiKey::ApiVersions)
}

/// Appends one size-prefixed request frame to `buffer`.
pub fn encode_request<R: Request>(
    buffer: &mut BytesMut,
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &str,
) -> Result<(), WireError> {
    let api = api_key::<R>();
    let start = buffer.len();
    buffer.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_owned())))
        .encode(buffer, api.request_header_version(version))
        .map_err(|e| WireError::EncodeHeader(e.to_string()))?;
    request
        .encode(buffer, version)
        .map_err(|e| WireError::Encode(e.to_string()))?;
    let size = i32::try_from(buffer.len() - start - 4).map_err(|_| WireError::RequestTooLarge)?;
    buffer[start..start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

/// Decodes a response frame (without its size prefix) as the answer to request `correlation_id`.
pub fn decode_response<R: Request>(
    mut frame: Bytes,
    version: i16,
    correlation_id: i32,
) -> Result<R::Response, WireError> {
    let api = api_key::<R>();
    let header = ResponseHeader::decode(&mut frame, api.response_header_version(version))
        .map_err(|e| WireError::DecodeHeader(e.to_string()))?;
    if header.correlation_id != correlation_id {
        return Err(WireError::CorrelationMismatch {
            got: header.correlation_id,
            expected: correlation_id,
        });
    }
    let response = <R::Response as Decodable>::decode(&mut frame, version)
        .map_err(|e| WireError::Decode(e.to_string()))?;
    if !frame.is_empty() {
        return Err(WireError::TrailingBytes(frame.len()));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};

    use super::*;

    #[tokio::test]
    async fn oversize_and_negative_frames_are_refused_before_allocation() {
        let mut huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3];
        assert!(matches!(
            read_frame(&mut huge, 1024).await,
            Err(FrameError::TooLarge { .. })
        ));
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xfe];
        assert!(matches!(
            read_frame(&mut negative, 1024).await,
            Err(FrameError::Negative(-2))
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
            Err(FrameError::Io(_))
        ));
    }

    #[test]
    fn frames_carry_their_size_and_header() {
        let mut buffer = BytesMut::new();
        encode_request(&mut buffer, &MetadataRequest::default(), 12, 7, "me").expect("encodes");
        let size = i32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]);
        assert_eq!(size as usize, buffer.len() - 4);
        let mut frame = buffer.split_off(4).freeze();
        let header = RequestHeader::decode(&mut frame, 2).expect("header v2");
        assert_eq!(header.request_api_key, ApiKey::Metadata as i16);
        assert_eq!(header.request_api_version, 12);
        assert_eq!(header.correlation_id, 7);
        assert_eq!(header.client_id.as_deref(), Some("me"));
    }

    fn response_frame(correlation_id: i32, extra: &[u8]) -> Bytes {
        let mut buffer = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut buffer, 1)
            .expect("header");
        MetadataResponse::default()
            .encode(&mut buffer, 12)
            .expect("body");
        buffer.extend_from_slice(extra);
        buffer.freeze()
    }

    #[test]
    fn responses_must_answer_the_request_and_end_where_they_should() {
        assert!(decode_response::<MetadataRequest>(response_frame(3, &[]), 12, 3).is_ok());
        assert!(matches!(
            decode_response::<MetadataRequest>(response_frame(4, &[]), 12, 3),
            Err(WireError::CorrelationMismatch {
                got: 4,
                expected: 3
            })
        ));
        assert!(matches!(
            decode_response::<MetadataRequest>(response_frame(3, &[0]), 12, 3),
            Err(WireError::TrailingBytes(1))
        ));
        assert!(matches!(
            decode_response::<MetadataRequest>(Bytes::from_static(&[0, 0]), 12, 3),
            Err(WireError::DecodeHeader(_))
        ));
    }
}
