//! The per-partition log settings, taken from a topic's effective configs (the controller's
//! `state/configs.rs` owns the key names, defaults and validation; this is the log's typed view of
//! them). Kafka's `-1` ("no limit") is an `Option::None` here, so no caller compares against a magic
//! number. Chronik's one deliberate deviation is `flush.messages = 1`: every acknowledged batch is
//! fsynced (group-committed), see the durability notes in [`crate::log`].

use std::collections::BTreeMap;

use super::batch::TimestampType;
use super::error::LogError;

pub const SEGMENT_BYTES: &str = "segment.bytes";
pub const SEGMENT_MS: &str = "segment.ms";
pub const SEGMENT_INDEX_BYTES: &str = "segment.index.bytes";
pub const RETENTION_MS: &str = "retention.ms";
pub const RETENTION_BYTES: &str = "retention.bytes";
pub const INDEX_INTERVAL_BYTES: &str = "index.interval.bytes";
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
pub const FLUSH_MESSAGES: &str = "flush.messages";
pub const FLUSH_MS: &str = "flush.ms";
pub const MESSAGE_TIMESTAMP_TYPE: &str = "message.timestamp.type";
pub const MESSAGE_TIMESTAMP_BEFORE_MAX_MS: &str = "message.timestamp.before.max.ms";
pub const MESSAGE_TIMESTAMP_AFTER_MAX_MS: &str = "message.timestamp.after.max.ms";
pub const CLEANUP_POLICY: &str = "cleanup.policy";
pub const DELETE_RETENTION_MS: &str = "delete.retention.ms";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Size at which the active segment is rolled (`segment.bytes`, 1 GiB).
    pub segment_bytes: u64,
    /// Age at which the active segment is rolled, measured from its first batch's MaxTimestamp
    /// (`segment.ms`, 7 days).
    pub segment_ms: i64,
    /// Largest offset index of a segment; a full index rolls the segment (`segment.index.bytes`, 10 MiB).
    pub segment_index_bytes: u64,
    /// Segments whose newest timestamp is older than this are deleted; `None` keeps them forever
    /// (`retention.ms`, 7 days).
    pub retention_ms: Option<i64>,
    /// Oldest segments are deleted while the partition is larger than this; `None` means no limit
    /// (`retention.bytes`, -1).
    pub retention_bytes: Option<u64>,
    /// Bytes of log between two index entries (`index.interval.bytes`, 4096).
    pub index_interval_bytes: u64,
    /// Largest batch a leader accepts (`max.message.bytes`, 1048588).
    pub max_message_bytes: u64,
    /// Unflushed records that force an fsync; 1 fsyncs every batch before it is acknowledged
    /// (`flush.messages`, Chronik default 1).
    pub flush_messages: u64,
    /// Longest time written data may stay unflushed; `None` never flushes on time (`flush.ms`,
    /// Long.MAX).
    pub flush_ms: Option<i64>,
    /// Producer timestamps or the leader's append time (`message.timestamp.type`).
    pub message_timestamp_type: TimestampType,
    /// How far before the leader's clock a CreateTime record timestamp may be
    /// (`message.timestamp.before.max.ms`, KIP-937; Long.MAX: no limit).
    pub message_timestamp_before_max_ms: i64,
    /// How far past the leader's clock a CreateTime record timestamp may be
    /// (`message.timestamp.after.max.ms`, KIP-937; one hour).
    pub message_timestamp_after_max_ms: i64,
    /// `cleanup.policy` has `delete`: retention removes old segments.
    pub cleanup_delete: bool,
    /// `cleanup.policy` has `compact`: the cleaner keeps only each key's latest record.
    pub cleanup_compact: bool,
    /// How long the cleaner keeps tombstones (`delete.retention.ms`).
    pub delete_retention_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            segment_index_bytes: 10 * 1024 * 1024,
            retention_ms: Some(7 * 24 * 60 * 60 * 1000),
            retention_bytes: None,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            flush_messages: 1,
            flush_ms: None,
            message_timestamp_type: TimestampType::CreateTime,
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: 60 * 60 * 1000,
            cleanup_delete: true,
            cleanup_compact: false,
            delete_retention_ms: 24 * 60 * 60 * 1000,
        }
    }
}

impl LogConfig {
    /// Reads the log's keys from a topic's effective configs; other keys are ignored and missing
    /// keys take the default. A malformed value is an error (the controller validates configs, so
    /// this means the two disagree).
    pub fn from_effective(configs: &BTreeMap<String, String>) -> Result<Self, LogError> {
        let mut config = LogConfig::default();
        if let Some(v) = long(configs, SEGMENT_BYTES)? {
            config.segment_bytes = positive(SEGMENT_BYTES, v)?;
        }
        if let Some(v) = long(configs, SEGMENT_MS)? {
            config.segment_ms = positive(SEGMENT_MS, v)? as i64;
        }
        if let Some(v) = long(configs, SEGMENT_INDEX_BYTES)? {
            config.segment_index_bytes = positive(SEGMENT_INDEX_BYTES, v)?;
        }
        if let Some(v) = long(configs, RETENTION_MS)? {
            config.retention_ms = unlimited_if_negative(RETENTION_MS, v)?.map(|v| v as i64);
        }
        if let Some(v) = long(configs, RETENTION_BYTES)? {
            config.retention_bytes = unlimited_if_negative(RETENTION_BYTES, v)?;
        }
        if let Some(v) = long(configs, INDEX_INTERVAL_BYTES)? {
            config.index_interval_bytes = non_negative(INDEX_INTERVAL_BYTES, v)?;
        }
        if let Some(v) = long(configs, MAX_MESSAGE_BYTES)? {
            config.max_message_bytes = non_negative(MAX_MESSAGE_BYTES, v)?;
        }
        if let Some(v) = long(configs, FLUSH_MESSAGES)? {
            config.flush_messages = positive(FLUSH_MESSAGES, v)?;
        }
        if let Some(v) = long(configs, FLUSH_MS)? {
            // Long.MAX is Kafka's "never"; treat anything beyond a century the same way.
            let v = non_negative(FLUSH_MS, v)?;
            config.flush_ms = (v < 100 * 365 * 24 * 60 * 60 * 1000).then_some(v as i64);
        }
        if let Some(v) = configs.get(MESSAGE_TIMESTAMP_TYPE) {
            config.message_timestamp_type = match v.trim() {
                "CreateTime" => TimestampType::CreateTime,
                "LogAppendTime" => TimestampType::LogAppendTime,
                _ => return Err(invalid(MESSAGE_TIMESTAMP_TYPE, v)),
            };
        }
        if let Some(v) = long(configs, MESSAGE_TIMESTAMP_BEFORE_MAX_MS)? {
            config.message_timestamp_before_max_ms =
                non_negative(MESSAGE_TIMESTAMP_BEFORE_MAX_MS, v)? as i64;
        }
        if let Some(v) = long(configs, MESSAGE_TIMESTAMP_AFTER_MAX_MS)? {
            config.message_timestamp_after_max_ms =
                non_negative(MESSAGE_TIMESTAMP_AFTER_MAX_MS, v)? as i64;
        }
        if let Some(v) = configs.get(CLEANUP_POLICY) {
            let policies: Vec<&str> = v.split(',').map(str::trim).collect();
            if policies.is_empty() || policies.iter().any(|p| !matches!(*p, "delete" | "compact")) {
                return Err(invalid(CLEANUP_POLICY, v));
            }
            config.cleanup_delete = policies.contains(&"delete");
            config.cleanup_compact = policies.contains(&"compact");
        }
        if let Some(v) = long(configs, DELETE_RETENTION_MS)? {
            config.delete_retention_ms = non_negative(DELETE_RETENTION_MS, v)? as i64;
        }
        Ok(config)
    }

    /// Most entries the offset index of one segment may hold before the segment rolls.
    pub(crate) fn max_index_entries(&self) -> usize {
        (self.segment_index_bytes / super::index::OFFSET_ENTRY_BYTES as u64).max(1) as usize
    }
}

fn invalid(key: &str, value: impl ToString) -> LogError {
    LogError::InvalidConfig {
        key: key.to_string(),
        value: value.to_string(),
    }
}

fn long(configs: &BTreeMap<String, String>, key: &str) -> Result<Option<i64>, LogError> {
    configs
        .get(key)
        .map(|v| v.trim().parse::<i64>().map_err(|_| invalid(key, v)))
        .transpose()
}

fn positive(key: &str, v: i64) -> Result<u64, LogError> {
    if v > 0 {
        Ok(v as u64)
    } else {
        Err(invalid(key, v))
    }
}

fn non_negative(key: &str, v: i64) -> Result<u64, LogError> {
    u64::try_from(v).map_err(|_| invalid(key, v))
}

fn unlimited_if_negative(key: &str, v: i64) -> Result<Option<u64>, LogError> {
    match v {
        -1 => Ok(None),
        v if v >= 0 => Ok(Some(v as u64)),
        _ => Err(invalid(key, v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_controller() {
        let config = LogConfig::from_effective(&BTreeMap::new()).unwrap();
        assert_eq!(config, LogConfig::default());
        // The controller's effective configs carry these exact default strings.
        let explicit = LogConfig::from_effective(&map(&[
            ("retention.ms", "604800000"),
            ("retention.bytes", "-1"),
            ("segment.bytes", "1073741824"),
            ("segment.ms", "604800000"),
            ("segment.index.bytes", "10485760"),
            ("index.interval.bytes", "4096"),
            ("max.message.bytes", "1048588"),
            ("flush.messages", "1"),
            ("flush.ms", "9223372036854775807"),
            ("message.timestamp.type", "CreateTime"),
            ("message.timestamp.before.max.ms", "9223372036854775807"),
            ("message.timestamp.after.max.ms", "3600000"),
            ("cleanup.policy", "delete"),
            ("delete.retention.ms", "86400000"),
            ("min.insync.replicas", "2"),
        ]))
        .unwrap();
        assert_eq!(explicit, LogConfig::default());
        // The timestamp bounds are read from the controller's own table, so the two cannot drift.
        let from_controller: BTreeMap<String, String> = [
            MESSAGE_TIMESTAMP_BEFORE_MAX_MS,
            MESSAGE_TIMESTAMP_AFTER_MAX_MS,
        ]
        .iter()
        .map(|k| {
            let def = chronik_metadata::configs::topic_config_def(k).unwrap();
            (k.to_string(), def.default.to_string())
        })
        .collect();
        assert_eq!(
            LogConfig::from_effective(&from_controller).unwrap(),
            LogConfig::default()
        );
    }

    #[test]
    fn reads_overrides_and_rejects_garbage() {
        let config = LogConfig::from_effective(&map(&[
            ("retention.ms", "-1"),
            ("retention.bytes", "1000"),
            ("flush.ms", "500"),
            ("flush.messages", "100"),
            ("message.timestamp.type", "LogAppendTime"),
            ("message.timestamp.before.max.ms", "60000"),
            ("message.timestamp.after.max.ms", "0"),
        ]))
        .unwrap();
        assert_eq!(config.message_timestamp_before_max_ms, 60_000);
        assert_eq!(config.message_timestamp_after_max_ms, 0);
        assert_eq!(config.retention_ms, None);
        assert_eq!(config.retention_bytes, Some(1000));
        assert_eq!(config.flush_ms, Some(500));
        assert_eq!(config.flush_messages, 100);
        assert_eq!(config.message_timestamp_type, TimestampType::LogAppendTime);

        assert!(LogConfig::from_effective(&map(&[("segment.bytes", "big")])).is_err());
        assert!(LogConfig::from_effective(&map(&[("retention.ms", "-5")])).is_err());
        assert!(LogConfig::from_effective(&map(&[("message.timestamp.type", "Now")])).is_err());
        assert!(
            LogConfig::from_effective(&map(&[("message.timestamp.before.max.ms", "-1")])).is_err()
        );
        assert!(LogConfig::from_effective(&map(&[("cleanup.policy", "shred")])).is_err());

        let compact = LogConfig::from_effective(&map(&[("cleanup.policy", "compact")])).unwrap();
        assert!(compact.cleanup_compact && !compact.cleanup_delete);
        let both =
            LogConfig::from_effective(&map(&[("cleanup.policy", "compact, delete")])).unwrap();
        assert!(both.cleanup_compact && both.cleanup_delete);
    }
}
