//! `chronikctl bench metadata` (issue #18): how the control plane and the brokers cope with many
//! partitions. On a local cluster of real processes (one it starts, 3 controllers and 3 brokers by
//! default, or one `chronikctl local up` started) it creates topics totalling `--partitions`
//! partitions, then measures, in this order:
//!
//! 1. the time for the controllers to accept every CreateTopics (each request is one Raft entry);
//! 2. the time until every broker answers Metadata with a leader for every new partition;
//! 3. the time until every broker has opened the log of every partition it replicates (its
//!    `chronik_broker_hosted_partitions` reaches `chronik_broker_replica_partitions`, with no
//!    unopened log);
//! 4. single changes after that: one topic created at a time, timed until every broker's Metadata
//!    names its leader, and the brokers' `chronik_broker_metadata_propagation_seconds` histogram
//!    over those changes (controller commit to published image), p50 and p99;
//! 5. memory (RSS) of every process before and after, the controllers' Raft log entries, snapshot
//!    size and data directory size, the brokers' open files;
//! 6. a failover: kill -9 of the active controller, timed until a surviving controller accepts the
//!    next CreateTopics and until every broker serves that topic; then, after the broker session
//!    timeout has passed, no broker may have been fenced or have registered again.
//!
//! Time is reported, never asserted. What is checked is correctness: every request succeeded, every
//! partition got a leader on every broker, every log opened, no broker was fenced. A run that fails
//! one of those still prints its figures and then exits non-zero.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chronik_proto::v1::{BrokerState, CreatableTopic, CreateTopicsRequest};
use futures::future::join_all;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;
use tokio::time::Instant;

use super::scrape::{Buckets, HistogramQuantiles, Scrape};
use crate::cli::BenchMetadataArgs;
use crate::client::ControllerClient;
use crate::error::CliError;
use crate::kafka::{KafkaConnection, KafkaError};
use crate::local::{ClusterSpec, LocalCluster, Node};

const PROPAGATION_HISTOGRAM: &str = "chronik_broker_metadata_propagation_seconds";
/// How often brokers are asked while waiting for the bulk of partitions.
const BULK_POLL: Duration = Duration::from_millis(50);
/// How often brokers are asked while timing one change.
const PROBE_POLL: Duration = Duration::from_millis(1);
/// A broker counts its open descriptors at most once a second (`broker/src/fds.rs`); waiting this
/// long before the resources scrape makes the count current.
const OPEN_FILES_MAX_AGE: Duration = Duration::from_millis(1_100);

/// Everything `bench metadata` measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetadataBenchReport {
    /// The settings that shape the figures, by name.
    pub settings: BTreeMap<String, String>,
    /// Partitions created by the bulk phase.
    pub partitions: u64,
    pub topics: usize,
    /// From the first CreateTopics to the last one answered.
    pub create_secs: Option<f64>,
    /// From the first CreateTopics until each broker's Metadata led every new partition, by broker.
    pub leaders_served_secs: BTreeMap<i32, f64>,
    /// From the first CreateTopics until each broker had opened every log it replicates, by broker.
    pub logs_open_secs: BTreeMap<i32, f64>,
    /// New partition logs each broker opened, by broker.
    pub logs_opened: BTreeMap<i32, u64>,
    /// Propagation (controller commit → broker image) over the bulk creation, all brokers.
    pub propagation_bulk: HistogramQuantiles,
    /// Propagation over the single changes, all brokers.
    pub propagation_single: HistogramQuantiles,
    /// Single changes: CreateTopics answered, in milliseconds.
    pub single_create_ms: Vec<f64>,
    /// Single changes: from sending CreateTopics until every broker's Metadata named the leader.
    pub single_visible_ms: Vec<f64>,
    /// Every process's memory, before the bulk creation and after the single changes.
    pub memory: Vec<NodeMemory>,
    /// Each controller's Raft storage after the single changes.
    pub raft: Vec<RaftStorage>,
    /// Each broker's open file descriptors and limit after the single changes.
    pub open_files: Vec<OpenFiles>,
    /// The controller failover, unless skipped.
    pub failover: Option<Failover>,
    /// Correctness failures: the run exits non-zero when there is any.
    pub failures: Vec<String>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeMemory {
    pub kind: String,
    pub id: u64,
    pub rss_before_bytes: Option<u64>,
    pub rss_after_bytes: Option<u64>,
    pub peak_rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RaftStorage {
    pub id: u64,
    pub log_entries: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub snapshot_bytes: Option<u64>,
    /// Mean time to build a snapshot on this controller, if it built any.
    pub snapshot_build_ms: Option<f64>,
    /// The controller's data directory (sled: Raft log, vote and snapshot).
    pub data_dir_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenFiles {
    pub id: u64,
    pub open_files: Option<u64>,
    pub max_open_files: Option<u64>,
    pub hosted_partitions: Option<u64>,
    /// Segment and index files the broker's descriptor cache holds open, and at most may.
    pub segment_files_open: Option<u64>,
    pub segment_files_capacity: Option<u64>,
    /// Idle, fsynced files the cache closed (to reopen them on demand).
    pub segment_file_evictions: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failover {
    /// The controller killed with SIGKILL.
    pub killed_controller: u64,
    /// The one that accepted the next write.
    pub new_active_controller: Option<u64>,
    /// From the kill until a CreateTopics was accepted.
    pub write_accepted_secs: Option<f64>,
    /// From the kill until every broker's Metadata led that topic.
    pub visible_on_brokers_secs: Option<f64>,
    /// From the kill until the new active controller had answered a heartbeat of every broker (its
    /// `chronik_controller_broker_heartbeat_timestamp_seconds`): every broker has switched to it.
    pub brokers_switched_secs: Option<f64>,
    /// Brokers fenced or registered again between before the kill and after the settle time.
    pub brokers_fenced: Vec<i32>,
}

impl MetadataBenchReport {
    /// The error to exit with once the report is printed.
    pub fn failure(&self) -> Option<CliError> {
        (!self.failures.is_empty())
            .then(|| CliError::Incomplete(format!("bench metadata: {}", self.failures.join("; "))))
    }
}

/// A node as the benchmark reaches it.
#[derive(Clone, Debug)]
struct Target {
    id: u64,
    kind: String,
    kafka: String,
    http: String,
    pid: Option<u32>,
    data_dir: PathBuf,
}

impl Target {
    fn of(node: &Node) -> Self {
        Self {
            id: node.id,
            kind: node.kind.clone(),
            kafka: node.addr.to_string(),
            http: format!("http://{}/metrics", node.http_addr),
            pid: node.pid,
            data_dir: node.data_dir.clone(),
        }
    }
}

/// Runs the benchmark.
pub async fn run(args: &BenchMetadataArgs) -> Result<MetadataBenchReport, CliError> {
    let local = |e: crate::local::LocalError| CliError::Local(e.to_string());
    let temp_dir = match &args.cluster_dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("chronik-bench-metadata-")
                .tempdir()
                .map_err(|e| CliError::Local(format!("cannot create a temp dir: {e}")))?,
        ),
    };
    let mut cluster = match (&args.cluster_dir, &temp_dir) {
        (Some(dir), _) => LocalCluster::load(dir).map_err(local)?,
        (None, Some(temp)) => {
            let mut spec = ClusterSpec::new(temp.path(), args.controller_nodes, args.broker_nodes);
            if let Some(bin_dir) = &args.bin_dir {
                spec.bin_dir = bin_dir.clone();
            }
            spec.log_filter = "warn".into();
            // Per-partition series would make every scrape as large as the cluster.
            spec.broker_args.push("--partition-metrics=false".into());
            spec.controller_args
                .extend(args.controller_args.iter().cloned());
            spec.broker_args.extend(args.broker_args.iter().cloned());
            let mut cluster = LocalCluster::start(spec).map_err(local)?;
            cluster
                .wait_ready(Duration::from_secs(60))
                .await
                .map_err(local)?;
            cluster
        }
        (None, None) => unreachable!("a temp dir exists without --cluster-dir"),
    };
    let result = measure(args, &mut cluster).await;
    match temp_dir {
        Some(temp) if args.keep => {
            let kept = temp.keep();
            cluster.stop_all(Duration::from_secs(10));
            eprintln!("cluster dir kept: {}", kept.display());
        }
        temp => {
            // The processes die before their dir goes: deleting it under running brokers left
            // most of a 100,000-partition cluster's 1.2 million files behind.
            drop(cluster);
            drop(temp);
        }
    }
    result
}

async fn measure(
    args: &BenchMetadataArgs,
    cluster: &mut LocalCluster,
) -> Result<MetadataBenchReport, CliError> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let client = ControllerClient::new(
        cluster
            .controllers
            .iter()
            .map(|c| c.addr.to_string())
            .collect(),
        Duration::from_secs(30),
    )?
    .with_credentials(
        cluster
            .controller_credentials()
            .map_err(|e| CliError::Local(e.to_string()))?,
    )
    .with_retry_budget(Duration::from_secs(30));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| CliError::Local(format!("http client: {e}")))?;
    let brokers: Vec<Target> = cluster.brokers.iter().map(Target::of).collect();
    let controllers: Vec<Target> = cluster.controllers.iter().map(Target::of).collect();

    let per_topic = args.partitions_per_topic.min(args.partitions as u32).max(1);
    let topic_count = args.partitions.div_ceil(u64::from(per_topic)) as usize;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..6].to_owned();
    let prefix = format!("{}-{run_id}", args.topic_prefix);
    let topics: Vec<(String, u32)> = (0..topic_count)
        .map(|i| {
            let left = args.partitions - (i as u64) * u64::from(per_topic);
            (
                format!("{prefix}-{i:05}"),
                left.min(u64::from(per_topic)) as u32,
            )
        })
        .collect();
    let mut report = MetadataBenchReport {
        settings: BTreeMap::from([
            ("partitions".into(), args.partitions.to_string()),
            ("partitions_per_topic".into(), per_topic.to_string()),
            (
                "replication_factor".into(),
                args.replication_factor.to_string(),
            ),
            (
                "topics_per_request".into(),
                args.topics_per_request.to_string(),
            ),
            ("controllers".into(), controllers.len().to_string()),
            ("brokers".into(), brokers.len().to_string()),
        ]),
        partitions: args.partitions,
        topics: topic_count,
        create_secs: None,
        leaders_served_secs: BTreeMap::new(),
        logs_open_secs: BTreeMap::new(),
        logs_opened: BTreeMap::new(),
        propagation_bulk: HistogramQuantiles::default(),
        propagation_single: HistogramQuantiles::default(),
        single_create_ms: Vec::new(),
        single_visible_ms: Vec::new(),
        memory: Vec::new(),
        raft: Vec::new(),
        open_files: Vec::new(),
        failover: None,
        failures: Vec::new(),
        notes: Vec::new(),
    };

    let memory_before: Vec<Option<u64>> = controllers
        .iter()
        .chain(&brokers)
        .map(|n| n.pid.and_then(|pid| proc_status_kib(pid, "VmRSS:")))
        .collect();
    let scrapes_before = scrape_all(&http, &brokers).await;
    let propagation_before = merged_buckets(&scrapes_before);

    // 1. Create.
    let started = Instant::now();
    let mut created_offset = 0;
    for chunk in topics.chunks(args.topics_per_request as usize) {
        let request = CreateTopicsRequest {
            topics: chunk
                .iter()
                .map(|(name, partitions)| CreatableTopic {
                    name: name.clone(),
                    num_partitions: *partitions as i32,
                    replication_factor: args.replication_factor as i32,
                    ..Default::default()
                })
                .collect(),
            validate_only: false,
        };
        let reply = client.create_topics(request).await?;
        for topic in &reply.topics {
            if topic.error_code != 0 {
                report.failures.push(format!(
                    "creating {}: {} ({})",
                    topic.name, topic.error_message, topic.error_code
                ));
            }
            created_offset = created_offset.max(topic.metadata_offset);
        }
    }
    report.create_secs = Some(started.elapsed().as_secs_f64());
    if !report.failures.is_empty() {
        return Ok(report);
    }

    // 2. Leaders on every broker.
    let names: Vec<String> = topics.iter().map(|(name, _)| name.clone()).collect();
    let expected: BTreeMap<String, u32> = topics.iter().cloned().collect();
    let served = join_all(
        brokers
            .iter()
            .map(|broker| wait_leaders(broker, &names, &expected, BULK_POLL, deadline)),
    )
    .await;
    let mut replicas_of: BTreeMap<i32, u64> = BTreeMap::new();
    for (broker, outcome) in brokers.iter().zip(served) {
        match outcome {
            Ok(response) => {
                report
                    .leaders_served_secs
                    .insert(broker.id as i32, started.elapsed_at(response.at));
                // Every broker's answer lists the same replicas; count them once.
                let counted = !replicas_of.is_empty();
                for topic in response.answer.topics.iter().filter(|_| !counted) {
                    for partition in &topic.partitions {
                        for replica in &partition.replica_nodes {
                            *replicas_of.entry(replica.0).or_default() += 1;
                        }
                    }
                }
            }
            Err(e) => report.failures.push(format!(
                "broker {} never led every partition: {e}",
                broker.id
            )),
        }
    }
    if !report.failures.is_empty() {
        return Ok(report);
    }

    // 3. Every log open.
    let opened = join_all(brokers.iter().zip(&scrapes_before).map(|(broker, before)| {
        let before_replicas = before
            .as_ref()
            .and_then(|s| s.value("chronik_broker_replica_partitions"))
            .unwrap_or(0.0) as u64;
        let new = replicas_of.get(&(broker.id as i32)).copied().unwrap_or(0);
        wait_logs_open(&http, broker, before_replicas + new, deadline)
    }))
    .await;
    for (broker, outcome) in brokers.iter().zip(opened) {
        let new = replicas_of.get(&(broker.id as i32)).copied().unwrap_or(0);
        report.logs_opened.insert(broker.id as i32, new);
        match outcome {
            Ok(at) => {
                report
                    .logs_open_secs
                    .insert(broker.id as i32, started.elapsed_at(at));
            }
            Err(e) => report
                .failures
                .push(format!("broker {} did not open every log: {e}", broker.id)),
        }
    }
    let scrapes_bulk = scrape_all(&http, &brokers).await;
    report.propagation_bulk = merged_buckets(&scrapes_bulk)
        .since(&propagation_before)
        .quantiles();

    // 4. Single changes.
    for i in 0..args.probes {
        let name = format!("{prefix}-single-{i:03}");
        let sent = Instant::now();
        match create_one(&client, &name, args.replication_factor).await {
            Ok(()) => {}
            Err(e) => {
                report.failures.push(format!("creating {name}: {e}"));
                break;
            }
        }
        report
            .single_create_ms
            .push(round_ms(sent.elapsed().as_secs_f64() * 1e3));
        match visible_everywhere(&brokers, &name, deadline).await {
            Ok(at) => report
                .single_visible_ms
                .push(round_ms(sent.elapsed_at(at) * 1e3)),
            Err(e) => {
                report
                    .failures
                    .push(format!("{name} never reached every broker: {e}"));
                break;
            }
        }
    }
    // Logs open within a second now: the count of descriptors a broker reuses may predate them.
    tokio::time::sleep(OPEN_FILES_MAX_AGE).await;
    let scrapes_after = scrape_all(&http, &brokers).await;
    report.propagation_single = merged_buckets(&scrapes_after)
        .since(&merged_buckets(&scrapes_bulk))
        .quantiles();

    // 5. Resources.
    let controller_scrapes = scrape_all(&http, &controllers).await;
    for (i, node) in controllers.iter().chain(&brokers).enumerate() {
        report.memory.push(NodeMemory {
            kind: node.kind.clone(),
            id: node.id,
            rss_before_bytes: memory_before[i].map(|kib| kib * 1024),
            rss_after_bytes: node
                .pid
                .and_then(|pid| proc_status_kib(pid, "VmRSS:"))
                .map(|kib| kib * 1024),
            peak_rss_bytes: node
                .pid
                .and_then(|pid| proc_status_kib(pid, "VmHWM:"))
                .map(|kib| kib * 1024),
        });
    }
    for (controller, scrape) in controllers.iter().zip(&controller_scrapes) {
        let value = |name: &str| scrape.as_ref().and_then(|s| s.value(name));
        let built = value("chronik_controller_snapshot_build_duration_seconds_count");
        let took = value("chronik_controller_snapshot_build_duration_seconds_sum");
        report.raft.push(RaftStorage {
            id: controller.id,
            log_entries: value("chronik_controller_raft_log_entries").map(|v| v as u64),
            snapshot_index: value("chronik_controller_raft_snapshot_index").map(|v| v as u64),
            snapshot_bytes: value("chronik_controller_snapshot_bytes").map(|v| v as u64),
            snapshot_build_ms: match (built, took) {
                (Some(n), Some(sum)) if n > 0.0 => Some(round_ms(sum / n * 1e3)),
                _ => None,
            },
            data_dir_bytes: dir_bytes(&controller.data_dir),
        });
    }
    for (broker, scrape) in brokers.iter().zip(&scrapes_after) {
        let value = |name: &str| {
            scrape
                .as_ref()
                .and_then(|s| s.value(name))
                .map(|v| v as u64)
        };
        report.open_files.push(OpenFiles {
            id: broker.id,
            open_files: value("chronik_broker_open_files"),
            max_open_files: value("chronik_broker_max_open_files"),
            hosted_partitions: value("chronik_broker_hosted_partitions"),
            segment_files_open: value("chronik_broker_segment_files_open"),
            segment_files_capacity: value("chronik_broker_segment_files_capacity"),
            segment_file_evictions: value("chronik_broker_segment_file_evictions_total"),
        });
    }
    if args.no_failover {
        return Ok(report);
    }

    // 6. Failover.
    let failover_targets = FailoverTargets {
        brokers: &brokers,
        controllers: &controllers,
        http: &http,
    };
    report.failover =
        Some(failover(args, cluster, &client, failover_targets, &prefix, deadline).await?);
    if let Some(failover) = &report.failover {
        if failover.write_accepted_secs.is_none() {
            report
                .failures
                .push("no controller accepted a write after the failover".into());
        } else if failover.visible_on_brokers_secs.is_none() {
            report
                .failures
                .push("the topic created after the failover never reached every broker".into());
        }
        if !failover.brokers_fenced.is_empty() {
            report.failures.push(format!(
                "brokers fenced or registered again during the failover: {:?}",
                failover.brokers_fenced
            ));
        }
    }
    Ok(report)
}

/// Kills the active controller and times the next accepted write; then checks that no broker was
/// fenced once the session timeout has passed, and starts the controller again.
/// What the failover reaches besides the controllers' gRPC.
struct FailoverTargets<'a> {
    brokers: &'a [Target],
    controllers: &'a [Target],
    http: &'a reqwest::Client,
}

async fn failover(
    args: &BenchMetadataArgs,
    cluster: &mut LocalCluster,
    client: &ControllerClient,
    targets: FailoverTargets<'_>,
    prefix: &str,
    deadline: Instant,
) -> Result<Failover, CliError> {
    let brokers = targets.brokers;
    let before = client.describe_cluster().await?;
    let killed = before.leader_id;
    let registrations = |reply: &chronik_proto::v1::DescribeClusterResponse| {
        reply
            .brokers
            .iter()
            .map(|b| (b.broker_id, (b.broker_epoch, b.state)))
            .collect::<BTreeMap<_, _>>()
    };
    let registered_before = registrations(&before);
    let survivors: Vec<(u64, String)> = cluster
        .controllers
        .iter()
        .filter(|c| c.id != killed)
        .map(|c| (c.id, c.addr.to_string()))
        .collect();
    let credentials = cluster
        .controller_credentials()
        .map_err(|e| CliError::Local(e.to_string()))?;
    // One attempt per call and controller: the loop below is the retry, at a fixed short interval.
    let single: Vec<(u64, ControllerClient)> = survivors
        .iter()
        .map(|(id, address)| {
            Ok((
                *id,
                ControllerClient::new(vec![address.clone()], Duration::from_millis(500))?
                    .with_credentials(credentials.clone())
                    .with_retry_budget(Duration::ZERO),
            ))
        })
        .collect::<Result<_, CliError>>()?;
    let name = format!("{prefix}-after-failover");
    cluster
        .controller(killed)
        .and_then(|c| c.kill())
        .map_err(|e| CliError::Local(e.to_string()))?;
    let killed_at = Instant::now();
    let killed_at_unix = unix_secs();
    // A quorum that has not taken a write a minute after losing its leader will not in this run.
    let deadline = deadline.min(killed_at + Duration::from_secs(60));
    let mut accepted = None;
    while accepted.is_none() && Instant::now() < deadline {
        for (id, controller) in &single {
            match create_one(controller, &name, args.replication_factor).await {
                Ok(()) => {
                    accepted = Some((*id, killed_at.elapsed()));
                    break;
                }
                // A per-topic error (an earlier attempt that timed out was applied after all, no
                // broker available) is still an answer of the active controller to a write.
                Err(CliError::Kafka { .. }) => {
                    accepted = Some((*id, killed_at.elapsed()));
                    break;
                }
                Err(_) => {}
            }
        }
        if accepted.is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let visible = match accepted {
        Some(_) => visible_everywhere(brokers, &name, deadline)
            .await
            .ok()
            .map(|at| killed_at.elapsed_at(at)),
        None => None,
    };
    let switched = match (
        accepted,
        targets
            .controllers
            .iter()
            .find(|c| Some(c.id) == accepted.map(|a| a.0)),
    ) {
        (Some(_), Some(active)) => {
            brokers_switched(targets.http, active, brokers, killed_at_unix, deadline).await
        }
        _ => None,
    };
    // A broker that lost its session is fenced within the session timeout; wait past it.
    tokio::time::sleep(Duration::from_secs(args.failover_settle_secs)).await;
    let after = client.describe_cluster().await?;
    let registered_after = registrations(&after);
    let brokers_fenced = registered_before
        .iter()
        .filter(|(id, (epoch, _))| {
            registered_after.get(id).is_none_or(|(after_epoch, state)| {
                after_epoch != epoch || *state != BrokerState::Unfenced as i32
            })
        })
        .map(|(id, _)| *id)
        .collect();
    // Leave the cluster whole.
    let filter = cluster.spec.log_filter.clone();
    cluster
        .controller(killed)
        .and_then(|c| c.start(&filter))
        .map_err(|e| CliError::Local(e.to_string()))?;
    if args.cluster_dir.is_some() {
        cluster.save().map_err(|e| CliError::Local(e.to_string()))?;
    }
    Ok(Failover {
        killed_controller: killed,
        new_active_controller: accepted.map(|(id, _)| id),
        write_accepted_secs: accepted.map(|(_, took)| took.as_secs_f64()),
        visible_on_brokers_secs: visible,
        brokers_switched_secs: switched,
        brokers_fenced,
    })
}

const HEARTBEAT_ANSWERED: &str = "chronik_controller_broker_heartbeat_timestamp_seconds";

/// Seconds from `since_unix` until `active` had answered a heartbeat of every broker, from its
/// metrics; `None` if that did not happen before `deadline`.
async fn brokers_switched(
    http: &reqwest::Client,
    active: &Target,
    brokers: &[Target],
    since_unix: f64,
    deadline: Instant,
) -> Option<f64> {
    while Instant::now() < deadline {
        if let Ok(metrics) = scrape(http, &active.http).await {
            let answered: Option<Vec<f64>> = brokers
                .iter()
                .map(|b| {
                    metrics
                        .value(&format!("{HEARTBEAT_ANSWERED}{{broker=\"{}\"}}", b.id))
                        .filter(|at| *at >= since_unix)
                })
                .collect();
            if let Some(answered) = answered {
                return answered
                    .into_iter()
                    .map(|at| at - since_unix)
                    .reduce(f64::max);
            }
        }
        tokio::time::sleep(BULK_POLL).await;
    }
    None
}

fn unix_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Creates one topic of one partition; a per-topic error becomes [`CliError::Kafka`].
async fn create_one(
    client: &ControllerClient,
    name: &str,
    replication_factor: u32,
) -> Result<(), CliError> {
    let reply = client
        .create_topics(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: name.to_owned(),
                num_partitions: 1,
                replication_factor: replication_factor as i32,
                ..Default::default()
            }],
            validate_only: false,
        })
        .await?;
    match reply.topics.first() {
        Some(topic) if topic.error_code != 0 => Err(CliError::kafka(
            topic.error_code,
            &topic.error_message,
            |error| format!("creating {name}: {error}"),
        )),
        Some(_) => Ok(()),
        None => Err(CliError::UnexpectedReply(format!(
            "CreateTopics answered nothing for {name}"
        ))),
    }
}

/// A Metadata answer and when it came.
struct Served {
    answer: MetadataResponse,
    at: Instant,
}

/// Asks `broker` for `names` every `poll` until every partition of each (as many as `expected`
/// says) has a leader.
async fn wait_leaders(
    broker: &Target,
    names: &[String],
    expected: &BTreeMap<String, u32>,
    poll: Duration,
    deadline: Instant,
) -> Result<Served, KafkaError> {
    let mut connection = KafkaConnection::open(&broker.kafka, deadline).await?;
    let version = connection.version(ApiKey::Metadata, 4, 12)?;
    let request = MetadataRequest::default()
        .with_topics(Some(
            names
                .iter()
                .map(|name| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
                })
                .collect(),
        ))
        .with_allow_auto_topic_creation(false);
    loop {
        let answer = connection.call(&request, version, deadline).await?;
        let at = Instant::now();
        if every_partition_led(&answer, expected) {
            return Ok(Served { answer, at });
        }
        if at + poll >= deadline {
            return Err(KafkaError::Timeout {
                waiting_for: format!("broker {} to lead every partition", broker.id),
            });
        }
        tokio::time::sleep(poll).await;
    }
}

fn every_partition_led(answer: &MetadataResponse, expected: &BTreeMap<String, u32>) -> bool {
    expected.iter().all(|(name, partitions)| {
        answer.topics.iter().any(|topic| {
            topic.name.as_ref().is_some_and(|n| n.0.as_str() == name)
                && topic.error_code == 0
                && topic.partitions.len() == *partitions as usize
                && topic.partitions.iter().all(|p| p.leader_id.0 >= 0)
        })
    })
}

/// Waits until every broker's Metadata names a leader for the one-partition topic `name`; returns
/// when the last one did.
async fn visible_everywhere(
    brokers: &[Target],
    name: &str,
    deadline: Instant,
) -> Result<Instant, KafkaError> {
    let expected = BTreeMap::from([(name.to_owned(), 1)]);
    let names = [name.to_owned()];
    let served = join_all(
        brokers
            .iter()
            .map(|broker| wait_leaders(broker, &names, &expected, PROBE_POLL, deadline)),
    )
    .await;
    let mut last = None;
    for outcome in served {
        let at = outcome?.at;
        last = Some(last.map_or(at, |l: Instant| l.max(at)));
    }
    Ok(last.unwrap_or_else(Instant::now))
}

/// Polls `broker`'s `/metrics` until it hosts at least `replicas` partitions, every one its image
/// gives it, with no unopened log.
async fn wait_logs_open(
    http: &reqwest::Client,
    broker: &Target,
    replicas: u64,
    deadline: Instant,
) -> Result<Instant, String> {
    loop {
        let last = match scrape(http, &broker.http).await {
            Ok(metrics) => {
                let value = |name: &str| metrics.value(name).unwrap_or(0.0) as u64;
                let (wanted, hosted, unopened) = (
                    value("chronik_broker_replica_partitions"),
                    value("chronik_broker_hosted_partitions"),
                    value("chronik_broker_unopened_partition_logs"),
                );
                if wanted >= replicas && hosted >= wanted && unopened == 0 {
                    return Ok(Instant::now());
                }
                // Every log was tried and some failed (out of descriptors, a full disk): the broker
                // retries them, but the figure to report is that they did not open.
                if wanted >= replicas && hosted + unopened >= wanted && unopened > 0 {
                    return Err(format!(
                        "{unopened} of {wanted} partition logs cannot be opened (see its /readyz)"
                    ));
                }
                format!(
                    "{hosted} of {wanted} partition logs open ({replicas} expected), {unopened} unopened"
                )
            }
            Err(e) => e,
        };
        if Instant::now() + BULK_POLL >= deadline {
            return Err(format!("timed out: {last}"));
        }
        tokio::time::sleep(BULK_POLL).await;
    }
}

async fn scrape(http: &reqwest::Client, url: &str) -> Result<Scrape, String> {
    super::scrape::get(http, url).await
}

async fn scrape_all(http: &reqwest::Client, nodes: &[Target]) -> Vec<Option<Scrape>> {
    join_all(
        nodes
            .iter()
            .map(|n| async { scrape(http, &n.http).await.ok() }),
    )
    .await
}

fn merged_buckets(scrapes: &[Option<Scrape>]) -> Buckets {
    let mut merged = Buckets::default();
    for scrape in scrapes.iter().flatten() {
        merged.add(&scrape.buckets(PROPAGATION_HISTOGRAM));
    }
    merged
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS:`, `VmHWM:`).
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Bytes of every file below `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

fn round_ms(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

trait ElapsedAt {
    /// Seconds from `self` to `later`.
    fn elapsed_at(&self, later: Instant) -> f64;
}

impl ElapsedAt for Instant {
    fn elapsed_at(&self, later: Instant) -> f64 {
        later.saturating_duration_since(*self).as_secs_f64()
    }
}
