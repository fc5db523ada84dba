//! Kafka request and response framing over the `kafka-protocol` codec. A frame is the bytes after the
//! 4-byte size prefix. Decoding peeks the API key and version first, so an unknown API or version is
//! refused without decoding, and an ApiVersions request that is too new still gets its KIP-511 answer.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use thiserror::Error;

use super::versions::{is_served, supported};

/// A request ready for dispatch.
#[derive(Debug)]
pub struct Request {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub version: i16,
    pub body: RequestKind,
}

#[derive(Debug)]
pub enum Decoded {
    Request(Box<Request>),
    /// ApiVersions above our maximum: answer UNSUPPORTED_VERSION in the v0 schema (KIP-511).
    ApiVersionsTooNew {
        correlation_id: i32,
    },
}

/// Why a frame cannot be answered. Each closes the connection (Kafka cannot frame a reply either).
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("unsupported version {version} of {key:?}")]
    UnsupportedVersion { key: ApiKey, version: i16 },
    #[error("malformed {key:?} v{version} request: {reason}")]
    Malformed {
        key: ApiKey,
        version: i16,
        reason: String,
    },
}

fn malformed<E: std::fmt::Display>(key: ApiKey, version: i16) -> impl FnOnce(E) -> FrameError {
    move |e| FrameError::Malformed {
        key,
        version,
        reason: e.to_string(),
    }
}

/// Why a response cannot be framed (a bug of ours, not of the client: the connection is closed).
#[derive(Debug, Error)]
pub enum EncodeError {
    #[error("{0}")]
    Codec(String),
    #[error("a response of {0} bytes does not fit a frame")]
    TooLarge(usize),
}

/// Decodes one request frame.
pub fn decode_request(mut frame: Bytes) -> Result<Decoded, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key = ApiKey::try_from(raw_key).map_err(|_| FrameError::UnknownApiKey(raw_key))?;
    if key == ApiKey::ApiVersions && supported(key).is_some_and(|a| version > a.max) {
        return Ok(Decoded::ApiVersionsTooNew { correlation_id });
    }
    if !is_served(key, version) {
        return Err(FrameError::UnsupportedVersion { key, version });
    }
    let header = RequestHeader::decode(&mut frame, key.request_header_version(version))
        .map_err(malformed(key, version))?;
    let body = RequestKind::decode(key, &mut frame, version).map_err(malformed(key, version))?;
    Ok(Decoded::Request(Box::new(Request {
        header,
        api_key: key,
        version,
        body,
    })))
}

/// Encodes a response frame, size prefix included.
pub fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &ResponseKind,
) -> Result<Bytes, EncodeError> {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(|e| EncodeError::Codec(e.to_string()))?;
    body.encode(&mut buf, version)
        .map_err(|e| EncodeError::Codec(e.to_string()))?;
    let size = i32::try_from(buf.len() - 4).map_err(|_| EncodeError::TooLarge(buf.len() - 4))?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};

    fn frame(key: ApiKey, version: i16, body: &RequestKind) -> Bytes {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(42)
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn requests_round_trip() {
        for version in [0, 4, 9, 12] {
            let body = RequestKind::Metadata(MetadataRequest::default());
            match decode_request(frame(ApiKey::Metadata, version, &body)).unwrap() {
                Decoded::Request(r) => {
                    assert_eq!(
                        (r.api_key, r.version, r.header.correlation_id),
                        (ApiKey::Metadata, version, 42)
                    );
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn api_versions_too_new_is_answered_not_refused() {
        let body = RequestKind::ApiVersions(ApiVersionsRequest::default());
        let mut bytes = BytesMut::from(&frame(ApiKey::ApiVersions, 4, &body)[..]);
        bytes[3] = 9; // version 9
        match decode_request(bytes.freeze()).unwrap() {
            Decoded::ApiVersionsTooNew { correlation_id } => assert_eq!(correlation_id, 42),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_array_count_of_two_billion_is_an_error_not_an_abort() {
        // Metadata v4: header (key 3, v4, correlation 1, client id null), then a topics array claiming
        // 0x7ffffff0 entries, then a few bytes.
        let mut frame = vec![0, 3, 0, 4, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xf0];
        frame.extend_from_slice(&[0x41; 40]);
        assert!(matches!(
            decode_request(Bytes::from(frame)),
            Err(FrameError::Malformed { .. })
        ));
    }

    #[test]
    fn unknown_keys_versions_and_garbage_are_errors() {
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 1])),
            Err(FrameError::TooShort(2))
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0x7f, 0x00, 0, 0, 0, 0, 0, 1])),
            Err(FrameError::UnknownApiKey(0x7f00))
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 1])),
            Err(FrameError::UnsupportedVersion {
                key: ApiKey::Produce,
                version: 1
            })
        ));
        // A Metadata v12 header followed by truncated garbage.
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 3, 0, 12, 0, 0, 0, 1, 0, 2, b'c'])),
            Err(FrameError::Malformed { .. })
        ));
    }
}
