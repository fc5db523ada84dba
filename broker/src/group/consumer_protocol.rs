//! The little the coordinator reads of the "consumer" embedded protocol: which topics a member's
//! subscription names (`ConsumerProtocolSubscription`, every version starts with an int16 version and
//! the topic array). Everything else in subscriptions and assignments stays opaque bytes.

use bytes::{Buf, Bytes};

/// The topics of a consumer subscription, or `None` when the bytes are not one.
pub fn subscribed_topics(metadata: &Bytes) -> Option<Vec<String>> {
    let mut buf = metadata.clone();
    let version = buf.try_get_i16().ok()?;
    if version < 0 {
        return None;
    }
    let count = buf.try_get_i32().ok()?;
    if count < 0 {
        return Some(Vec::new());
    }
    let mut topics = Vec::with_capacity((count as usize).min(buf.remaining() / 2));
    for _ in 0..count {
        let len = buf.try_get_i16().ok()?;
        let len = usize::try_from(len).ok()?;
        if buf.remaining() < len {
            return None;
        }
        topics.push(String::from_utf8(buf.split_to(len).to_vec()).ok()?);
    }
    Some(topics)
}

#[cfg(test)]
pub(crate) fn subscription(topics: &[&str]) -> Bytes {
    use bytes::BufMut;
    let mut buf = bytes::BytesMut::new();
    buf.put_i16(0);
    buf.put_i32(topics.len() as i32);
    for t in topics {
        buf.put_i16(t.len() as i16);
        buf.put_slice(t.as_bytes());
    }
    buf.put_i32(-1);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_topics_and_refuses_garbage() {
        assert_eq!(
            subscribed_topics(&subscription(&["a", "orders"])),
            Some(vec!["a".to_string(), "orders".to_string()])
        );
        assert_eq!(
            subscribed_topics(&Bytes::from_static(&[0, 1, 0, 0, 0, 9, 0])),
            None
        );
        assert_eq!(subscribed_topics(&Bytes::new()), None);
    }
}
