//! Kafka request and response framing over the `kafka-protocol` codec. A frame is the bytes after the
//! 4-byte size prefix. Decoding peeks the API key and version first, so an unknown API or version is
//! refused without decoding, and an ApiVersions request that is too new still gets its KIP-511 answer.
//!
//! Produce v0–v2, which the codec (following Kafka 4's schemas, KIP-896) no longer knows, are framed
//! here: a v0–v2 request is a v3 request without the leading transactional id, so it decodes as v3
//! with a null one; a v2 response is exactly a v3 one, and v0/v1 responses, a subset, are written by
//! [`encode_produce_v0_v1`].

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ProduceRequest, ProduceResponse, RequestHeader, RequestKind, ResponseHeader,
    ResponseKind,
};
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
    let body = if key == ApiKey::Produce && version < LEGACY_PRODUCE_SCHEMA {
        let mut v3 = BytesMut::with_capacity(2 + frame.len());
        v3.put_i16(-1); // transactional_id: null
        v3.put_slice(&frame);
        ProduceRequest::decode(&mut v3.freeze(), LEGACY_PRODUCE_SCHEMA)
            .map(RequestKind::Produce)
            .map_err(malformed(key, version))?
    } else {
        RequestKind::decode(key, &mut frame, version).map_err(malformed(key, version))?
    };
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
    match body {
        ResponseKind::Produce(r) if version < 2 => encode_produce_v0_v1(&mut buf, r, version)?,
        _ => {
            let schema = match body {
                ResponseKind::Produce(_) if version == 2 => LEGACY_PRODUCE_SCHEMA,
                _ => version,
            };
            body.encode(&mut buf, schema)
                .map_err(|e| EncodeError::Codec(e.to_string()))?;
        }
    }
    let size = i32::try_from(buf.len() - 4).map_err(|_| EncodeError::TooLarge(buf.len() - 4))?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// The Produce version whose schema carries v0–v2 (see the module doc).
pub const LEGACY_PRODUCE_SCHEMA: i16 = 3;

/// ProduceResponse v0/v1: per topic its name and per partition index, error code and base offset;
/// v1 adds throttle_time_ms at the end (v2 adds log_append_time_ms and is v3's schema).
fn encode_produce_v0_v1(
    buf: &mut BytesMut,
    response: &ProduceResponse,
    version: i16,
) -> Result<(), EncodeError> {
    let count = |n: usize| i32::try_from(n).map_err(|_| EncodeError::TooLarge(n));
    buf.put_i32(count(response.responses.len())?);
    for topic in &response.responses {
        let name = topic.name.0.as_bytes();
        let len = i16::try_from(name.len()).map_err(|_| EncodeError::TooLarge(name.len()))?;
        buf.put_i16(len);
        buf.put_slice(name);
        buf.put_i32(count(topic.partition_responses.len())?);
        for p in &topic.partition_responses {
            buf.put_i32(p.index);
            buf.put_i16(p.error_code);
            buf.put_i64(p.base_offset);
        }
    }
    if version == 1 {
        buf.put_i32(response.throttle_time_ms);
    }
    Ok(())
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
    fn produce_v0_to_v2_requests_decode_as_v3_without_a_transactional_id() {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::TopicName;
        let request = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(1_500)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName("t".into()))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(3)
                    .with_records(Some(Bytes::from_static(b"legacy")))])]);
        let v3 = frame(ApiKey::Produce, 3, &RequestKind::Produce(request.clone()));
        for version in 0..=2 {
            // Header (key, version, correlation id, client id ""), then the v3 body minus its
            // transactional id (null: 0xffff).
            let mut legacy = BytesMut::from(&v3[..10]);
            legacy[3] = version as u8;
            assert_eq!(&v3[10..12], &[0xff, 0xff]);
            legacy.put_slice(&v3[12..]);
            match decode_request(legacy.freeze()).unwrap() {
                Decoded::Request(r) => {
                    assert_eq!((r.api_key, r.version), (ApiKey::Produce, version));
                    assert!(matches!(r.body, RequestKind::Produce(p) if p == request));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn produce_v0_to_v2_responses_have_their_versions_fields() {
        use kafka_protocol::messages::produce_response::{
            PartitionProduceResponse, TopicProduceResponse,
        };
        use kafka_protocol::messages::TopicName;
        let response = ProduceResponse::default()
            .with_throttle_time_ms(7)
            .with_responses(vec![TopicProduceResponse::default()
                .with_name(TopicName("t".into()))
                .with_partition_responses(vec![PartitionProduceResponse::default()
                    .with_index(3)
                    .with_error_code(2)
                    .with_base_offset(40)
                    .with_log_append_time_ms(99)])]);
        let body = ResponseKind::Produce(response);
        let encode = |version| encode_response(42, ApiKey::Produce, version, &body).unwrap();
        // size, correlation id, 1 topic "t", 1 partition: index 3, error 2, base offset 40.
        let mut v0 = vec![0, 0, 0, 0, 0, 0, 0, 42, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1];
        v0.extend_from_slice(&[0, 0, 0, 3, 0, 2, 0, 0, 0, 0, 0, 0, 0, 40]);
        v0[3] = (v0.len() - 4) as u8;
        assert_eq!(&encode(0)[..], &v0[..]);
        let mut v1 = v0.clone();
        v1.extend_from_slice(&[0, 0, 0, 7]);
        v1[3] += 4;
        assert_eq!(&encode(1)[..], &v1[..]);
        let mut v2 = v0.clone();
        v2.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 99, 0, 0, 0, 7]);
        v2[3] += 12;
        assert_eq!(&encode(2)[..], &v2[..]);
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
            decode_request(Bytes::from_static(&[0, 1, 0, 3, 0, 0, 0, 1])),
            Err(FrameError::UnsupportedVersion {
                key: ApiKey::Fetch,
                version: 3
            })
        ));
        // A Metadata v12 header followed by truncated garbage.
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 3, 0, 12, 0, 0, 0, 1, 0, 2, b'c'])),
            Err(FrameError::Malformed { .. })
        ));
    }
}
