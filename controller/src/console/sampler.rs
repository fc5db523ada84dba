//! The sampler: every `--console-sample-interval-ms`, this controller takes the high watermarks of
//! every partition (ListOffsets on the leaders), the size of every partition and the disk usage of
//! every broker (DescribeLogDirs), and the lag of every consumer group partition (ListGroups on
//! every active broker, OffsetFetch on each group's coordinator: the high watermark minus the
//! committed offset, as Kafka's `ConsumerGroupCommand` computes it).
//!
//! Every controller samples for its own console, leader or not, so a console's lag history does not
//! stop when the active controller changes; the cost is one such round per controller per interval.
//!
//! What must stay true: a sample is published whole or not at all (pages never mix two samples);
//! the sampler uses its own connections, never the ones page requests wait on; it stops at shutdown.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::MissedTickBehavior;
use tracing::debug;

use super::lag::GroupPartition;
use super::reader::KafkaReader;
use super::Console;

/// One broker's log directory usage.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BrokerDisk {
    /// Bytes of every partition replica the broker holds.
    pub log_bytes: i64,
    /// Bytes of the log directory's filesystem, when the broker says.
    pub total_bytes: Option<i64>,
    /// Bytes of that filesystem still writable, when the broker says.
    pub usable_bytes: Option<i64>,
    /// The directory is offline (KAFKA_STORAGE_ERROR).
    pub offline: bool,
}

/// One group's lag in a sample.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GroupSample {
    pub state: String,
    pub coordinator: i32,
    /// The sum over its committed partitions whose high watermark is known.
    pub total_lag: i64,
}

/// The cluster as one round of the sampler saw it.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// When the round started (ms since the epoch); 0 before the first round.
    pub at_ms: i64,
    pub high_watermarks: BTreeMap<(String, i32), i64>,
    /// The leader's copy of each partition.
    pub sizes: BTreeMap<(String, i32), i64>,
    pub disks: BTreeMap<i32, BrokerDisk>,
    pub groups: BTreeMap<String, GroupSample>,
    pub lag: BTreeMap<GroupPartition, i64>,
    /// What could not be measured, worded for operators.
    pub errors: Vec<String>,
}

/// Samples until shutdown.
pub async fn run(console: Arc<Console>, interval: Duration) {
    let mut reader = KafkaReader::new(console.config());
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = console.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let sample = tokio::select! {
            _ = console.shutdown.cancelled() => return,
            sample = take(&console, &mut reader) => sample,
        };
        if !sample.errors.is_empty() {
            debug!(errors = ?sample.errors, "console sample incomplete");
        }
        console.publish(sample);
    }
}

/// One round.
async fn take(console: &Console, reader: &mut KafkaReader) -> Sample {
    let image = console.quorum.applied().image();
    let mut sample = Sample {
        at_ms: now_ms(),
        ..Sample::default()
    };
    let active = reader.learn(&image);
    let leaders: BTreeMap<(String, i32), i32> = image
        .partitions()
        .map(|(topic, partition, p)| ((topic.name.clone(), partition), p.leader))
        .collect();
    for &broker in &active {
        match reader.log_dirs(broker, None).await {
            Ok(dirs) => {
                let mut disk = BrokerDisk::default();
                for dir in dirs {
                    disk.offline |= dir.error_code != 0;
                    disk.total_bytes = add(disk.total_bytes, dir.total_bytes);
                    disk.usable_bytes = add(disk.usable_bytes, dir.usable_bytes);
                    for replica in dir.replicas {
                        disk.log_bytes += replica.size_bytes;
                        let key = (replica.topic, replica.partition);
                        if leaders.get(&key) == Some(&broker) {
                            sample.sizes.insert(key, replica.size_bytes);
                        }
                    }
                }
                sample.disks.insert(broker, disk);
            }
            Err(error) => sample.errors.push(format!("broker {broker}: {error}")),
        }
    }
    for topic in image.topics.values() {
        let (offsets, errors) = reader.offsets(&image, &topic.name).await;
        sample.errors.extend(errors);
        for (partition, offsets) in offsets {
            if let Some(high_watermark) = offsets.high_watermark {
                sample
                    .high_watermarks
                    .insert((topic.name.clone(), partition), high_watermark);
            }
        }
    }
    let (groups, errors) = reader.groups(&active).await;
    sample.errors.extend(errors);
    for (coordinator, group) in groups {
        let committed = match reader.admin().committed_offsets(&group.group_id).await {
            Ok(committed) => committed,
            Err(error) => {
                sample
                    .errors
                    .push(format!("group '{}': {error}", group.group_id));
                continue;
            }
        };
        let mut total_lag = 0;
        for ((topic, partition), offset) in committed {
            let Some(&high_watermark) = sample.high_watermarks.get(&(topic.clone(), partition))
            else {
                continue;
            };
            let lag = (high_watermark - offset).max(0);
            total_lag += lag;
            sample
                .lag
                .insert((group.group_id.clone(), topic, partition), lag);
        }
        sample.groups.insert(
            group.group_id.clone(),
            GroupSample {
                state: group.state,
                coordinator,
                total_lag,
            },
        );
    }
    sample
}

fn add(sum: Option<i64>, more: Option<i64>) -> Option<i64> {
    match (sum, more) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
