//! DescribeLogDirs (key 35, v1–4): this broker's log directory and the partition replicas in it, as
//! Kafka's `KafkaApis.handleDescribeLogDirsRequest` and `ReplicaManager.describeLogDirs` answer.
//!
//! A broker has one log directory, its data directory, reported by its absolute path. When it is
//! offline after an I/O failure ([`crate::log::LogManager::offline_log_dirs`]) the answer is
//! KAFKA_STORAGE_ERROR with nothing else; otherwise v4 adds the total and usable bytes of its
//! filesystem (Java's `FileStore.getTotalSpace`/`getUsableSpace`: blocks and blocks available to an
//! unprivileged user, times the fragment size), and each asked-for partition with a log here gets its
//! size in bytes and offset lag. The lag is Kafka's for a current (not future) replica,
//! `max(high watermark - log end offset, 0)` of the same log, so 0 while the high watermark is at or
//! below the log end, as it always is. A null topic list asks for every partition with a log here;
//! partitions without a log here, and topics left with no partition, are left out. There is no
//! `future` replica (AlterReplicaLogDirs is not served), so `is_future_key` is always false.

use chronik_metadata::acl::AclOperation;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tracing::warn;

use super::{BrokerContext, RequestContext};
use crate::log::LogManager;

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    // Kafka's handleDescribeLogDirsRequest: DESCRIBE on the cluster, else no directories (and, from
    // v3, the error).
    if !ctx.authorize_cluster(rc, AclOperation::Describe) {
        return DescribeLogDirsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let wanted: Option<BTreeSet<(String, i32)>> = request.topics.map(|topics| {
        topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|&p| (t.topic.to_string(), p))
                    .collect::<Vec<_>>()
            })
            .collect()
    });
    let logs = Arc::clone(ctx.replicas.logs());
    let path = absolute(logs.data_dir());
    // statvfs and the log locks may block on a sick disk: not on a runtime thread.
    let blocking_path = path.clone();
    let result =
        tokio::task::spawn_blocking(move || describe_dir(&logs, &blocking_path, wanted.as_ref()))
            .await
            .unwrap_or_else(|e| {
                warn!(error = %e, "describing the log directory failed");
                failed(&path, ResponseError::UnknownServerError)
            });
    DescribeLogDirsResponse::default().with_results(vec![result])
}

/// The path as Kafka reports it: absolute, not canonicalized (`Path.toAbsolutePath`).
fn absolute(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

fn failed(path: &Path, error: ResponseError) -> DescribeLogDirsResult {
    DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(path.display().to_string()))
        .with_error_code(error.code())
}

/// The one log directory (blocking).
fn describe_dir(
    logs: &LogManager,
    path: &Path,
    wanted: Option<&BTreeSet<(String, i32)>>,
) -> DescribeLogDirsResult {
    if !logs.offline_log_dirs().is_empty() {
        warn!(dir = %path.display(), "unable to describe an offline log directory");
        return failed(path, ResponseError::KafkaStorageError);
    }
    let (total_bytes, usable_bytes) = match nix::sys::statvfs::statvfs(path) {
        Ok(stat) => {
            let fragment = stat.fragment_size();
            (
                bytes(stat.blocks().saturating_mul(fragment)),
                bytes(stat.blocks_available().saturating_mul(fragment)),
            )
        }
        // Kafka answers an I/O failure other than a storage exception with its generic code.
        Err(e) => {
            warn!(dir = %path.display(), error = %e, "cannot read the log directory's filesystem");
            return failed(path, ResponseError::UnknownServerError);
        }
    };
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for tp in logs.partitions() {
        if wanted.is_some_and(|w| !w.contains(&(tp.topic.clone(), tp.partition))) {
            continue;
        }
        // Removed since it was listed: no longer here.
        let Some(log) = logs.get(&tp.topic, tp.partition) else {
            continue;
        };
        let offset_lag = (log.high_watermark() - log.log_end_offset()).max(0);
        topics.entry(tp.topic.clone()).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(tp.partition)
                .with_partition_size(bytes(log.size_in_bytes()))
                .with_offset_lag(offset_lag)
                .with_is_future_key(false),
        );
    }
    DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(path.display().to_string()))
        .with_total_bytes(total_bytes)
        .with_usable_bytes(usable_bytes)
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    DescribeLogDirsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name)))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

/// A byte count as the wire's int64 (Kafka reports `Long.MAX_VALUE` for sizes it cannot represent).
fn bytes(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;

    use super::*;
    use crate::handlers::test_support::{assert_encodes, cluster, TestBroker};
    use crate::log::batch::test_support::client_batch;

    /// Broker 1 of the test cluster with logs for orders-0, orders-1 and audit-0, and data in orders-0.
    fn hosting_broker() -> TestBroker {
        let broker = TestBroker::new(1, &cluster().records);
        broker
            .ctx
            .replicas
            .apply_metadata(&broker.ctx.metadata.current(), true);
        let orders = broker.ctx.replicas.logs().get("orders", 0).expect("log");
        for _ in 0..3 {
            orders
                .append_as_leader(client_batch(&[1, 2], 100), 0)
                .unwrap();
        }
        broker
    }

    async fn ask(
        broker: &TestBroker,
        version: i16,
        topics: Option<&[(&str, &[i32])]>,
    ) -> DescribeLogDirsResponse {
        let request = DescribeLogDirsRequest::default().with_topics(topics.map(|topics| {
            topics
                .iter()
                .map(|(name, partitions)| {
                    DescribableLogDirTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(name.to_string())))
                        .with_partitions(partitions.to_vec())
                })
                .collect()
        }));
        let response = handle(&broker.ctx, &broker.rc(version, "PLAINTEXT"), request).await;
        assert_encodes(&response, version);
        response
    }

    fn partitions(result: &DescribeLogDirsResult) -> Vec<(String, i32, i64, i64, bool)> {
        result
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        t.name.to_string(),
                        p.partition_index,
                        p.partition_size,
                        p.offset_lag,
                        p.is_future_key,
                    )
                })
            })
            .collect()
    }

    #[tokio::test]
    async fn null_topics_describe_every_local_partition_with_the_filesystem() {
        let broker = hosting_broker();
        let logs = broker.ctx.replicas.logs();
        let orders_size = logs.get("orders", 0).unwrap().size_in_bytes() as i64;
        assert!(orders_size > 600);
        for version in 1..=4 {
            let response = ask(&broker, version, None).await;
            assert_eq!(response.error_code, 0);
            let [result] = &response.results[..] else {
                panic!("one log dir: {:?}", response.results);
            };
            assert_eq!(result.error_code, 0);
            assert_eq!(
                result.log_dir.as_str(),
                logs.data_dir().display().to_string(),
                "the temp dir is already absolute"
            );
            assert_eq!(
                partitions(result),
                [
                    ("audit".into(), 0, 0, 0, false),
                    ("orders".into(), 0, orders_size, 0, false),
                    ("orders".into(), 1, 0, 0, false),
                ]
            );
            assert!(result.total_bytes > 0 && result.usable_bytes > 0);
            assert!(result.usable_bytes <= result.total_bytes);
        }
    }

    #[tokio::test]
    async fn only_asked_partitions_with_a_local_log_are_listed() {
        let broker = hosting_broker();
        let asked: &[(&str, &[i32])] = &[
            ("orders", &[1, 7]),
            // Hosted on broker 2 only.
            ("__consumer_offsets", &[0]),
            ("missing", &[0]),
        ];
        let response = ask(&broker, 4, Some(asked)).await;
        let result = &response.results[0];
        assert_eq!(result.error_code, 0);
        assert_eq!(partitions(result), [("orders".into(), 1, 0, 0, false)]);
        let names: Vec<&str> = result.topics.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["orders"],
            "topics without a listed partition are left out"
        );

        let none = ask(&broker, 4, Some(&[])).await;
        assert!(none.results[0].topics.is_empty());
        assert!(none.results[0].total_bytes > 0);
    }

    #[tokio::test]
    async fn an_offline_log_dir_is_a_storage_error_without_details() {
        let broker = hosting_broker();
        let audit = broker.ctx.replicas.logs().get("audit", 0).unwrap();
        let info = audit.append_as_leader(client_batch(&[1], 10), 0).unwrap();
        audit.fail_next_fsync();
        assert!(audit.flush_to(info.next_offset()).is_err());
        for version in [1, 4] {
            let response = ask(&broker, version, None).await;
            let result = &response.results[0];
            assert_eq!(result.error_code, ResponseError::KafkaStorageError.code());
            assert!(result.topics.is_empty());
            assert_eq!((result.total_bytes, result.usable_bytes), (-1, -1));
            assert!(!result.log_dir.is_empty());
        }
    }
}
