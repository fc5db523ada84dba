//! `LogManager`: every partition log of one broker data directory (Kafka `LogManager`). At start it
//! opens each `<topic>-<partition>/` directory it finds; one that cannot be opened (corrupt metadata,
//! unreadable files) is moved to `.quarantine/` with an error log, so the broker starts, the data is
//! kept for an operator, and the replica can be re-fetched from its leader; one a crash left before
//! its first flush made its creation durable (no or a torn `partition.metadata`, no data) is removed. It creates and removes
//! partition logs on the replica layer's request and runs the timers: retention, `flush.ms` flushes and
//! high watermark checkpoints (see the durability notes in [`crate::log`]).
//!
//! What must stay true: one `PartitionLog` per directory (the map is the only opener after start, and
//! a partition being opened is in `opening` until it is in the map, so two callers never open one
//! directory at once while different partitions open in parallel, outside the map's lock);
//! a removed partition's directory is gone or in `.trash/`, never half-deleted in place; the
//! background task stops when its cancellation token fires and does its blocking work on the blocking
//! pool; the data directory is offline ([`LogManager::offline_log_dirs`], Kafka's
//! `LogDirFailureChannel`) from the first I/O failure of any of its partition logs, of creating one, or
//! of a checkpoint, until the process restarts — the broker reports it to the controller (KIP-858),
//! which moves every replica of the directory out of leaderships and ISRs; the data directory's
//! clean-shutdown marker exists only between a `close_all` that closed every log (each durable)
//! and the next `open`, which removes it durably before opening any log, so a crash is never taken
//! for a clean shutdown.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use uuid::Uuid;

use super::checkpoint::{self, DirSync};
use super::config::LogConfig;
use super::error::{io_error, LogError, Result};
use super::now_ms;
use super::partition_log::{read_partition_metadata, PartitionLog, CLEAN_SHUTDOWN_FILE, TRASH_DIR};

/// Logs opened (at start) or closed (at shutdown) at once: each mostly waits on fsyncs, which
/// overlap.
const OPEN_THREADS: usize = 8;

/// Runs `work` on every item, `OPEN_THREADS` at a time (the calling thread is one of them, so a
/// thread that cannot be started only costs parallelism).
fn in_parallel<T: Sync>(items: &[T], work: impl Fn(&T) + Sync) {
    let next = AtomicUsize::new(0);
    let worker = || {
        while let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
            work(item);
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..OPEN_THREADS.min(items.len()) {
            let spawned = std::thread::Builder::new()
                .name("log-open-close".into())
                .spawn_scoped(scope, worker);
            if let Err(e) = spawned {
                warn!("cannot start a thread to open or close partition logs: {e}");
                break;
            }
        }
        worker();
    });
}

/// Where partition directories that failed to open are moved.
pub const QUARANTINE_DIR: &str = ".quarantine";

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// `<topic>-<partition>`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }

    /// The partition a directory name stands for, if it is one.
    pub fn parse_dir_name(name: &str) -> Option<Self> {
        let (topic, partition) = name.rsplit_once('-')?;
        if partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let partition: i32 = partition.parse().ok()?;
        valid_topic_name(topic).then(|| TopicPartition::new(topic, partition))
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Kafka's topic name rule; it also keeps names from escaping the data directory.
fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Whether a partition directory holds only what creating a log writes before its first flush (see
/// [`PartitionLog::open_in`]): empty segments, their indexes, `partition.metadata` (complete, torn
/// or missing), an epoch checkpoint and the clean-shutdown marker of a log closed while still empty.
/// Such a directory lost nothing acknowledged if a crash took its topic id. Anything else (a segment
/// with bytes, checkpoints of offsets, producer snapshots, an unknown file) may be data.
fn never_made_durable(dir: &Path) -> bool {
    use super::partition_log::PARTITION_METADATA_FILE;
    use super::segment::{parse_segment_file, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries.into_iter().all(|entry| {
        let Ok(entry) = entry else {
            return false;
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        let name = name.strip_suffix(".tmp").unwrap_or(&name);
        if parse_segment_file(name, LOG_SUFFIX).is_some() {
            return entry.metadata().is_ok_and(|m| m.is_file() && m.len() == 0);
        }
        name == PARTITION_METADATA_FILE
            || name == super::epoch::CHECKPOINT_FILE
            || name == CLEAN_SHUTDOWN_FILE
            || parse_segment_file(name, INDEX_SUFFIX).is_some()
            || parse_segment_file(name, TIME_INDEX_SUFFIX).is_some()
            || parse_segment_file(name, super::txn_index::TXN_INDEX_SUFFIX).is_some()
    })
}

/// The manager's timers.
#[derive(Clone, Debug)]
pub struct LogManagerConfig {
    /// How often retention runs (Kafka `log.retention.check.interval.ms`, 5 minutes).
    pub retention_check_interval: Duration,
    /// How often logs are checked against their `flush.ms`.
    pub flush_check_interval: Duration,
    /// How often high watermarks are checkpointed (Kafka
    /// `replica.high.watermark.checkpoint.interval.ms`, 5 s).
    pub high_watermark_checkpoint_interval: Duration,
}

impl Default for LogManagerConfig {
    fn default() -> Self {
        LogManagerConfig {
            retention_check_interval: Duration::from_secs(300),
            flush_check_interval: Duration::from_secs(1),
            high_watermark_checkpoint_interval: Duration::from_secs(5),
        }
    }
}

/// A log directory taken offline by an I/O failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfflineLogDir {
    pub dir: String,
    /// The first failure seen.
    pub reason: String,
    /// Partition logs offline in it (the others may still read, but the controller moves every
    /// replica of the directory away).
    pub offline_partitions: usize,
}

/// The file holding the data directory's id (Kafka's `directory.id` in `meta.properties`, KIP-858).
pub const DIR_ID_FILE: &str = "log-dir.id";

/// The id kept in `data_dir`, written there first when it has none (a new, emptied or replaced
/// directory, or one of a release before the id). The broker registers with it, and the controller
/// takes a broker whose id changed for one whose replicas are gone.
fn load_or_create_dir_id(data_dir: &Path) -> Result<Uuid> {
    let path = data_dir.join(DIR_ID_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => Uuid::parse_str(text.trim()).map_err(|_| LogError::Corrupt {
            path: path.clone(),
            reason: format!(
                "{:?} is not a directory id (a UUID); remove the file only if this directory's \
                 partitions may be treated as lost",
                text.trim()
            ),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = Uuid::new_v4();
            checkpoint::write_atomically(&path, format!("{id}\n").as_bytes())?;
            Ok(id)
        }
        Err(e) => Err(io_error("read the directory id", &path)(e)),
    }
}

#[derive(Debug)]
pub struct LogManager {
    data_dir: PathBuf,
    /// The data directory's id (`DIR_ID_FILE`).
    dir_id: Uuid,
    logs: RwLock<BTreeMap<TopicPartition, Arc<PartitionLog>>>,
    quarantined: Mutex<Vec<PathBuf>>,
    /// Per compacted partition: below which offset the cleaner has already been (in memory: after a
    /// restart the first pass cleans everything again).
    cleaned_through: Mutex<HashMap<TopicPartition, i64>>,
    /// A failure of the data directory outside any partition log (creating a partition, a checkpoint):
    /// the directory is offline from then on (Kafka's `LogDirFailureChannel`).
    dir_failure: Mutex<Option<String>>,
    /// Partitions being opened by `get_or_create`, outside the lock of `logs`; `opened` is notified
    /// whenever one leaves.
    opening: Mutex<HashSet<TopicPartition>>,
    opened: Condvar,
    /// The data directory's fsync, shared by the partitions whose creation becomes durable at the
    /// same time (see [`PartitionLog::open_in`]).
    data_dir_sync: Arc<DirSync>,
    /// A partition directory found at start could be neither opened nor quarantined: it is not
    /// closed at shutdown, so the directory may not be marked clean.
    unserved_dir: AtomicBool,
}

impl LogManager {
    /// The data directory's id, which the broker registers with.
    pub fn dir_id(&self) -> Uuid {
        self.dir_id
    }

    /// Opens every partition directory under `data_dir` (created if missing) with `default_config`
    /// until the replica layer supplies each topic's own config through
    /// [`LogManager::get_or_create`]. Only a failure of the data directory itself is an error.
    pub fn open(data_dir: &Path, default_config: LogConfig) -> Result<Self> {
        fs::create_dir_all(data_dir).map_err(io_error("create data directory", data_dir))?;
        let trash = data_dir.join(TRASH_DIR);
        if trash.exists() {
            // Partitions whose removal a crash interrupted.
            fs::remove_dir_all(&trash).map_err(io_error("empty trash", &trash))?;
        }
        let dir_id = load_or_create_dir_id(data_dir)?;
        let manager = LogManager {
            data_dir: data_dir.to_path_buf(),
            dir_id,
            logs: RwLock::new(BTreeMap::new()),
            quarantined: Mutex::new(Vec::new()),
            cleaned_through: Mutex::new(HashMap::new()),
            dir_failure: Mutex::new(None),
            opening: Mutex::new(HashSet::new()),
            opened: Condvar::new(),
            data_dir_sync: Arc::default(),
            unserved_dir: AtomicBool::new(false),
        };
        // Removed durably before any log is opened (and so before anything is written): a crash
        // from now on must find no marker.
        let marker = data_dir.join(CLEAN_SHUTDOWN_FILE);
        let clean_shutdown = checkpoint::remove_if_exists(&marker)?;
        if clean_shutdown {
            checkpoint::fsync_dir(data_dir)?;
        }
        let mut entries = Vec::new();
        for entry in fs::read_dir(data_dir).map_err(io_error("list data directory", data_dir))? {
            let entry = entry.map_err(io_error("list data directory", data_dir))?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                entries.push(entry.path());
            }
        }
        entries.sort();
        // Opening a log after a clean shutdown is mostly waiting on one fsync of its directory
        // (recovery, after a crash, also reads its active segment): several at a time overlap.
        let started = std::time::Instant::now();
        let opened = Mutex::new(BTreeMap::new());
        in_parallel(&entries, |dir| {
            if let Some((tp, log)) = manager.open_existing(dir, &default_config, clean_shutdown) {
                opened
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(tp, log);
            }
        });
        let opened = opened.into_inner().unwrap_or_else(PoisonError::into_inner);
        info!(data_dir = %data_dir.display(), partitions = opened.len(), clean_shutdown,
            took_ms = started.elapsed().as_millis() as u64, "opened partition logs");
        *manager.logs.write().unwrap_or_else(PoisonError::into_inner) = opened;
        Ok(manager)
    }

    /// Opens the partition directory `dir` found at start: `None` when it is not a partition's, was
    /// removed (created but never flushed) or was quarantined.
    fn open_existing(
        &self,
        dir: &Path,
        config: &LogConfig,
        clean_shutdown: bool,
    ) -> Option<(TopicPartition, Arc<PartitionLog>)> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(tp) = TopicPartition::parse_dir_name(&name) else {
            if name != QUARANTINE_DIR {
                warn!(dir = %dir.display(), "ignoring a directory that is not a partition");
            }
            return None;
        };
        let metadata = read_partition_metadata(dir);
        if matches!(metadata, Ok(None) | Err(LogError::Corrupt { .. })) && never_made_durable(dir) {
            // A log whose first flush never completed: nothing in it was reported durable.
            // Without a topic id it cannot be served; the replica layer creates it again.
            info!(dir = %dir.display(), "removing a partition directory created but never flushed");
            match fs::remove_dir_all(dir) {
                Ok(()) => return None,
                Err(e) => warn!(dir = %dir.display(), error = %e, "cannot remove it"),
            }
        }
        let opened = metadata.and_then(|id| match id {
            Some(id) => PartitionLog::open_in_after(
                dir,
                id,
                config.clone(),
                Arc::clone(&self.data_dir_sync),
                clean_shutdown,
            ),
            None => Err(LogError::Corrupt {
                path: dir.join(super::partition_log::PARTITION_METADATA_FILE),
                reason: "missing: the topic id is unknown".into(),
            }),
        });
        match opened {
            Ok(log) => Some((tp, Arc::new(log))),
            Err(e) => {
                self.quarantine(dir, &e);
                None
            }
        }
    }

    /// Moves a partition directory that cannot be opened out of the way, keeping its data.
    fn quarantine(&self, dir: &Path, cause: &LogError) {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let quarantine = self.data_dir.join(QUARANTINE_DIR);
        let target = quarantine.join(format!("{name}.{}", Uuid::new_v4().simple()));
        let moved = fs::create_dir_all(&quarantine).and_then(|_| fs::rename(dir, &target));
        match moved {
            Ok(()) => {
                error!(dir = %dir.display(), quarantined_to = %target.display(), error = %cause,
                    "partition directory cannot be opened; quarantined");
                self.quarantined
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(target);
            }
            Err(e) => {
                self.unserved_dir.store(true, Ordering::Relaxed);
                error!(dir = %dir.display(), error = %cause, rename_error = %e,
                    "partition directory cannot be opened nor quarantined; left in place and not served");
            }
        }
    }

    /// The log of `topic`-`partition`, opened or created with `config` (an existing log takes the new
    /// config). An existing directory of another topic id (the topic was deleted and recreated) is
    /// [`LogError::InconsistentTopicId`]; the caller decides, typically `remove` then retry.
    pub fn get_or_create(
        &self,
        topic: &str,
        topic_id: Uuid,
        partition: i32,
        config: LogConfig,
    ) -> Result<Arc<PartitionLog>> {
        if !valid_topic_name(topic) || partition < 0 {
            return Err(LogError::InvalidTopicName {
                topic: topic.to_string(),
            });
        }
        let tp = TopicPartition::new(topic, partition);
        {
            let mut opening = self.opening.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                // Checked under `opening`: an opener puts its log in the map before it leaves.
                if let Some(log) = self.existing(&tp, topic_id, &config)? {
                    return Ok(log);
                }
                if opening.insert(tp.clone()) {
                    break;
                }
                opening = self
                    .opened
                    .wait(opening)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        // Opening a log creates files and fsyncs them: done outside both locks, so partitions open
        // in parallel and readers of the map never wait on a disk.
        let opened = PartitionLog::open_in(
            &self.data_dir.join(tp.dir_name()),
            topic_id,
            config,
            Arc::clone(&self.data_dir_sync),
        )
        .map_err(|e| self.note_failure(e))
        .map(Arc::new);
        if let Ok(log) = &opened {
            self.logs
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(tp.clone(), Arc::clone(log));
        }
        self.opening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&tp);
        self.opened.notify_all();
        opened
    }

    /// The open log of `tp` with its config updated, if there is one for `topic_id`.
    fn existing(
        &self,
        tp: &TopicPartition,
        topic_id: Uuid,
        config: &LogConfig,
    ) -> Result<Option<Arc<PartitionLog>>> {
        let logs = self.logs.read().unwrap_or_else(PoisonError::into_inner);
        let Some(log) = logs.get(tp) else {
            return Ok(None);
        };
        if log.topic_id() != topic_id {
            return Err(LogError::InconsistentTopicId {
                dir: log.dir().to_path_buf(),
                expected: topic_id,
                found: log.topic_id(),
            });
        }
        log.update_config(config.clone());
        Ok(Some(Arc::clone(log)))
    }

    /// Takes the data directory offline on a storage failure outside a partition log.
    fn note_failure(&self, e: LogError) -> LogError {
        // Out of descriptors (EMFILE, ENFILE) says nothing about the disk: the partition is retried
        // and reported as unopened, and the directory's other partitions stay online.
        let out_of_descriptors = matches!(&e, LogError::Io { source, .. }
            if matches!(source.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)));
        if matches!(e, LogError::Io { .. }) && !out_of_descriptors {
            let mut failure = self
                .dir_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if failure.is_none() {
                error!(dir = %self.data_dir.display(), error = %e, "log directory goes offline");
                *failure = Some(e.to_string());
            }
        }
        e
    }

    /// The log directories that are offline after an I/O failure (Kafka's offline log dirs, reported
    /// to the controller in every heartbeat, KIP-858): the data directory once any of its partition
    /// logs, or the directory itself, failed a write or fsync. Nothing brings it back but a restart,
    /// whose recovery re-validates what reached the disk.
    pub fn offline_log_dirs(&self) -> Vec<OfflineLogDir> {
        let mut reason = self
            .dir_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        // Asked on every heartbeat: reads each log's status in place rather than copying every
        // partition's name first (issue #18).
        let offline: Vec<TopicPartition> = self
            .logs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, log)| log.is_offline())
            .map(|(tp, _)| tp.clone())
            .collect();
        if reason.is_none() && !offline.is_empty() {
            reason = Some(format!(
                "I/O failure in {}",
                offline
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        reason
            .map(|reason| OfflineLogDir {
                dir: self.data_dir.display().to_string(),
                reason,
                offline_partitions: offline.len(),
            })
            .into_iter()
            .collect()
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<PartitionLog>> {
        self.logs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&TopicPartition::new(topic, partition))
            .cloned()
    }

    /// Stops serving the partition and deletes its directory. Holders of the log get
    /// [`LogError::Closed`] from then on. Returns whether it existed.
    pub fn remove(&self, topic: &str, partition: i32) -> Result<bool> {
        let removed = self
            .logs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&TopicPartition::new(topic, partition));
        match removed {
            Some(log) => {
                log.delete()?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub fn partitions(&self) -> Vec<TopicPartition> {
        self.logs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    fn all_logs(&self) -> Vec<(TopicPartition, Arc<PartitionLog>)> {
        self.logs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(tp, log)| (tp.clone(), Arc::clone(log)))
            .collect()
    }

    /// Directories moved to `.quarantine/` since this manager opened.
    pub fn quarantined(&self) -> Vec<PathBuf> {
        self.quarantined
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn cleaned_through(&self, tp: &TopicPartition) -> i64 {
        self.cleaned_through
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tp)
            .copied()
            .unwrap_or(0)
    }

    fn set_cleaned_through(&self, tp: TopicPartition, offset: i64) {
        self.cleaned_through
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tp, offset);
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// One round of the timers' work (blocking): flush logs whose `flush.ms` elapsed, then optionally
    /// apply retention and checkpoint high watermarks. Failures are logged per partition.
    pub fn maintain(&self, now_ms: i64, run_retention: bool, checkpoint_high_watermarks: bool) {
        for (tp, log) in self.all_logs() {
            if !log.is_open() {
                continue;
            }
            if let Err(e) = log.flush_if_due(now_ms) {
                error!(partition = %tp, error = %e, "timed flush failed");
            }
            if run_retention {
                if let Err(e) = log.apply_retention(now_ms) {
                    error!(partition = %tp, error = %e, "retention failed");
                }
                let through = self.cleaned_through(&tp);
                match log.clean(now_ms, through) {
                    Ok(Some(stats)) => self.set_cleaned_through(tp.clone(), stats.cleaned_through),
                    Ok(None) => {}
                    Err(e) => error!(partition = %tp, error = %e, "log cleaning failed"),
                }
            }
            if checkpoint_high_watermarks {
                if let Err(e) = log.checkpoint_high_watermark() {
                    error!(partition = %tp, error = %e, "high watermark checkpoint failed");
                    self.note_failure(e);
                }
            }
        }
    }

    /// The background task: runs [`LogManager::maintain`] on the blocking pool at the configured
    /// intervals until `shutdown` fires. Spawn it on the broker's task tracker; call
    /// [`LogManager::close_all`] after it returns.
    pub async fn run(self: Arc<Self>, timers: LogManagerConfig, shutdown: CancellationToken) {
        let tick = timers
            .flush_check_interval
            .min(timers.retention_check_interval)
            .min(timers.high_watermark_checkpoint_interval)
            .max(Duration::from_millis(1));
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let start = tokio::time::Instant::now();
        let mut last_retention = start;
        let mut last_checkpoint = start;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let now = tokio::time::Instant::now();
            let retention = now.duration_since(last_retention) >= timers.retention_check_interval;
            if retention {
                last_retention = now;
            }
            let checkpoint =
                now.duration_since(last_checkpoint) >= timers.high_watermark_checkpoint_interval;
            if checkpoint {
                last_checkpoint = now;
            }
            let manager = Arc::clone(&self);
            let wall_ms = now_ms();
            let work = tokio::task::spawn_blocking(move || {
                manager.maintain(wall_ms, retention, checkpoint)
            });
            if let Err(e) = work.await {
                error!(error = %e, "log maintenance round failed");
            }
        }
        info!("log maintenance stopped");
    }

    /// Closes every log (flush, seal, checkpoints), then, when every one closed and the directory
    /// is not offline, writes the data directory's clean-shutdown marker (Kafka's
    /// `.kafka_cleanshutdown`): the next start skips recovering the logs. Tries all and returns
    /// the first failure. Nothing may create a log after it (the broker stops every task first).
    pub fn close_all(&self) -> Result<()> {
        // Closing a log waits on fsyncs (the active segment, changed checkpoints): 30,000 logs
        // one at a time took over a minute, past a supervisor's stop timeout.
        let started = std::time::Instant::now();
        let logs = self.all_logs();
        let first_error = Mutex::new(None);
        in_parallel(&logs, |(tp, log)| {
            if let Err(e) = log.close() {
                error!(partition = %tp, error = %e, "closing partition log failed");
                first_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(e);
            }
        });
        let first_error = first_error
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let offline = self
            .dir_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        let clean = first_error.is_none() && !offline && !self.unserved_dir.load(Ordering::Relaxed);
        if clean {
            // Every log is durable now: only then may the marker say so.
            checkpoint::write_atomically(&self.data_dir.join(CLEAN_SHUTDOWN_FILE), b"")?;
        }
        info!(
            partitions = logs.len(),
            clean,
            took_ms = started.elapsed().as_millis() as u64,
            "closed partition logs"
        );
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::test_support::client_batch;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn produce(log: &PartitionLog, batches: usize) {
        for _ in 0..batches {
            let info = log.append_as_leader(client_batch(&[1, 2], 20), 0).unwrap();
            log.flush_to(info.next_offset()).unwrap();
        }
    }

    #[test]
    fn dir_names() {
        let tp = TopicPartition::new("my.topic-v2", 12);
        assert_eq!(tp.dir_name(), "my.topic-v2-12");
        assert_eq!(TopicPartition::parse_dir_name("my.topic-v2-12"), Some(tp));
        assert_eq!(TopicPartition::parse_dir_name(".quarantine"), None);
        assert_eq!(TopicPartition::parse_dir_name("topic-"), None);
        assert_eq!(TopicPartition::parse_dir_name("-3"), None);
        assert_eq!(TopicPartition::parse_dir_name("a b-3"), None);
    }

    /// Issue #11 (6): one partition log failing an fsync takes the data directory offline (one
    /// directory per broker: what the broker reports to the controller); a restart recovers it.
    #[test]
    fn a_failed_fsync_takes_the_log_dir_offline_until_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let manager = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        let healthy = manager
            .get_or_create("a", id(1), 0, LogConfig::default())
            .unwrap();
        let failing = manager
            .get_or_create("b", id(2), 0, LogConfig::default())
            .unwrap();
        produce(&healthy, 1);
        produce(&failing, 2);
        assert!(manager.offline_log_dirs().is_empty());

        let durable = failing.flushed_offset();
        let info = failing.append_as_leader(client_batch(&[1], 20), 0).unwrap();
        failing.fail_next_fsync();
        assert!(failing.flush_to(info.next_offset()).is_err());
        assert!(failing.is_offline() && healthy.is_open());
        let offline = manager.offline_log_dirs();
        assert_eq!(offline.len(), 1);
        assert_eq!(offline[0].dir, dir.path().display().to_string());
        assert_eq!(offline[0].offline_partitions, 1);
        assert!(offline[0].reason.contains("b-0"), "{:?}", offline[0]);
        assert_eq!(
            failing.flushed_offset(),
            durable,
            "the failed fsync claims nothing"
        );

        drop((healthy, failing));
        drop(manager);
        let reopened = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        assert!(reopened.offline_log_dirs().is_empty());
        let recovered = reopened.get("b", 0).unwrap();
        assert!(recovered.is_open());
        assert!(recovered.log_end_offset() >= durable);
    }

    /// The paths fsynced on this thread that are `dir` itself.
    fn syncs_of(dir: &Path) -> usize {
        checkpoint::synced::take()
            .iter()
            .filter(|p| p.as_path() == dir)
            .count()
    }

    /// The directory id outlives restarts and is new for an emptied directory; a damaged id file
    /// stops the start with the file named, rather than passing for a new directory.
    #[test]
    fn the_data_directory_keeps_its_id_until_it_is_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let first = LogManager::open(dir.path(), LogConfig::default())
            .unwrap()
            .dir_id();
        let again = LogManager::open(dir.path(), LogConfig::default())
            .unwrap()
            .dir_id();
        assert_eq!(first, again);

        std::fs::remove_file(dir.path().join(DIR_ID_FILE)).unwrap();
        let emptied = LogManager::open(dir.path(), LogConfig::default())
            .unwrap()
            .dir_id();
        assert_ne!(emptied, first);

        std::fs::write(dir.path().join(DIR_ID_FILE), "not-a-uuid\n").unwrap();
        let err = LogManager::open(dir.path(), LogConfig::default()).unwrap_err();
        assert!(
            matches!(&err, LogError::Corrupt { path, .. } if path.ends_with(DIR_ID_FILE)),
            "{err}"
        );
    }

    /// Issue #18: one clean-shutdown marker per data directory, written once every log is closed;
    /// a clean restart then opens each log without recovering or fsyncing it, and removes the
    /// marker (durably) first.
    #[test]
    fn a_clean_shutdown_marks_the_data_directory_once() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join(CLEAN_SHUTDOWN_FILE);
        let manager = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        let log = manager
            .get_or_create("a", id(1), 0, LogConfig::default())
            .unwrap();
        produce(&log, 3);
        drop(log);
        manager.close_all().unwrap();
        assert!(marker.exists());
        assert!(!dir.path().join("a-0").join(CLEAN_SHUTDOWN_FILE).exists());
        drop(manager);

        checkpoint::synced::take();
        let reopened = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        assert!(!marker.exists(), "a crash from now on is unclean");
        let synced = checkpoint::synced::take();
        assert!(synced.contains(&dir.path().to_path_buf()), "{synced:?}");
        assert!(
            !synced.contains(&dir.path().join("a-0")),
            "a clean open fsyncs nothing of the log: {synced:?}"
        );
        assert_eq!(reopened.get("a", 0).unwrap().log_end_offset(), 6);
    }

    /// A kill -9 after a clean restart is not taken for a clean shutdown: the marker went at the
    /// start, so the next start recovers the torn tail (a batch whose CRC does not match).
    #[test]
    fn a_crash_after_a_clean_restart_is_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let manager = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        produce(
            &manager
                .get_or_create("a", id(1), 0, LogConfig::default())
                .unwrap(),
            2,
        );
        manager.close_all().unwrap();
        drop(manager);

        let manager = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(manager.get("a", 0).unwrap().log_end_offset(), 4);
        // A write torn by the crash: a whole batch frame at the log end whose records are damaged.
        let mut torn = client_batch(&[1, 2], 20).to_vec();
        torn[..8].copy_from_slice(&4i64.to_be_bytes());
        let last = torn.len() - 1;
        torn[last] ^= 0xff;
        let segment = dir.path().join("a-0").join("00000000000000000000.log");
        let mut file = fs::OpenOptions::new().append(true).open(&segment).unwrap();
        std::io::Write::write_all(&mut file, &torn).unwrap();
        drop(file);
        drop(manager); // kill -9: no close_all

        checkpoint::synced::take();
        let recovered = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        let log = recovered.get("a", 0).unwrap();
        assert_eq!(log.log_end_offset(), 4, "the torn batch is cut");
        assert_eq!(syncs_of(&dir.path().join("a-0")), 1, "recovery's fsync");
        produce(&log, 1);
        assert_eq!(log.log_end_offset(), 6);
    }

    /// A log that fails to close (its directory went offline) leaves the directory unmarked.
    #[test]
    fn a_log_that_fails_to_close_leaves_no_marker() {
        let dir = tempfile::tempdir().unwrap();
        let manager = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        let log = manager
            .get_or_create("a", id(1), 0, LogConfig::default())
            .unwrap();
        produce(&log, 1);
        let info = log.append_as_leader(client_batch(&[1], 20), 0).unwrap();
        log.fail_next_fsync();
        assert!(log.flush_to(info.next_offset()).is_err());
        assert!(manager.close_all().is_err());
        assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
    }

    #[test]
    fn reopens_every_partition_and_removes_one() {
        let dir = tempfile::tempdir().unwrap();
        let manager = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        for (topic, topic_id, partition, batches) in [
            ("orders", 1, 0, 3),
            ("orders", 1, 1, 5),
            ("payments", 2, 0, 7),
        ] {
            let log = manager
                .get_or_create(topic, id(topic_id), partition, LogConfig::default())
                .unwrap();
            produce(&log, batches);
        }
        assert!(matches!(
            manager.get_or_create("orders", id(9), 0, LogConfig::default()),
            Err(LogError::InconsistentTopicId { .. })
        ));
        assert!(matches!(
            manager.get_or_create("../etc", id(9), 0, LogConfig::default()),
            Err(LogError::InvalidTopicName { .. })
        ));
        manager.close_all().unwrap();
        drop(manager);

        let manager = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(
            manager.partitions(),
            vec![
                TopicPartition::new("orders", 0),
                TopicPartition::new("orders", 1),
                TopicPartition::new("payments", 0)
            ]
        );
        assert_eq!(manager.get("orders", 1).unwrap().log_end_offset(), 10);
        assert_eq!(manager.get("payments", 0).unwrap().log_end_offset(), 14);
        assert_eq!(manager.get("payments", 0).unwrap().topic_id(), id(2));

        let held = manager.get("orders", 0).unwrap();
        assert!(manager.remove("orders", 0).unwrap());
        assert!(!manager.remove("orders", 0).unwrap());
        assert!(!dir.path().join("orders-0").exists());
        assert!(matches!(
            held.read(0, 10, i64::MAX),
            Err(LogError::Closed { .. })
        ));
        // The topic comes back with a new id in a fresh directory.
        let recreated = manager
            .get_or_create("orders", id(3), 0, LogConfig::default())
            .unwrap();
        assert_eq!(recreated.log_end_offset(), 0);
        manager.close_all().unwrap();
        drop(manager);

        let manager = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(manager.partitions().len(), 3);
        assert_eq!(manager.get("orders", 0).unwrap().topic_id(), id(3));
        assert!(manager.quarantined().is_empty());
    }

    /// The descriptors this process holds on files under `dir` (deleted ones included).
    fn descriptors_under(dir: &Path) -> usize {
        let Ok(entries) = fs::read_dir("/proc/self/fd") else {
            return 0;
        };
        entries
            .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.starts_with(dir))
            .count()
    }

    /// Closing the last descriptor of a deleted file frees its blocks, which takes the kernel up
    /// to a second for a large one; whoever dropped a deleted log last paid it (often a runtime
    /// thread: every broker stalled ~1 s when a topic of 1.5 GB per broker was deleted). The removal
    /// thread closes the files, however long others hold the log.
    #[test]
    fn a_deleted_log_closes_its_files_even_while_still_held() {
        let dir = tempfile::tempdir().unwrap();
        let manager = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        let log = manager
            .get_or_create("big", id(1), 0, LogConfig::default())
            .unwrap();
        produce(&log, 5);
        // A read goes through the index too, so its file is open as well.
        log.read(2, 1 << 20, i64::MAX).unwrap();
        assert!(descriptors_under(dir.path()) > 0, "the segment is open");

        let held = manager.get("big", 0).unwrap();
        assert!(manager.remove("big", 0).unwrap());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while descriptors_under(dir.path()) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "a deleted log still held keeps {} descriptor(s) open",
                descriptors_under(dir.path())
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(matches!(
            held.read(0, 10, i64::MAX),
            Err(LogError::Closed { .. })
        ));
        drop((held, log));
    }

    #[test]
    fn corrupt_partition_directories_are_quarantined_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let manager = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        produce(
            &manager
                .get_or_create("good", id(1), 0, LogConfig::default())
                .unwrap(),
            2,
        );
        manager.close_all().unwrap();
        drop(manager);

        let bad = dir.path().join("bad-0");
        fs::create_dir_all(&bad).unwrap();
        fs::write(bad.join("partition.metadata"), "garbage").unwrap();
        fs::write(bad.join("00000000000000000000.log"), b"precious bytes").unwrap();
        let orphan = dir.path().join("orphan-3");
        fs::create_dir_all(&orphan).unwrap();
        fs::write(orphan.join("00000000000000000000.log"), b"more bytes").unwrap();
        fs::create_dir_all(dir.path().join("not a partition")).unwrap();

        let manager = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(manager.partitions(), vec![TopicPartition::new("good", 0)]);
        let quarantined = manager.quarantined();
        assert_eq!(quarantined.len(), 2);
        assert!(!bad.exists() && !orphan.exists());
        let kept = quarantined
            .iter()
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("bad-0.")
            })
            .unwrap();
        assert_eq!(
            fs::read(kept.join("00000000000000000000.log")).unwrap(),
            b"precious bytes"
        );
        assert!(
            dir.path().join("not a partition").exists(),
            "not ours to touch"
        );
    }

    /// Issue #18: a log is created without an fsync, so a crash (a power loss) before its first
    /// flush may leave its directory in any of these states. Each is removed at start (nothing in
    /// it was reported durable, and without its topic id it cannot be served), never quarantined
    /// nor refused, and the partition is created again under the topic id the replica layer asks.
    #[test]
    fn a_partition_created_but_never_flushed_is_removed_at_start_whatever_a_crash_left() {
        use crate::log::partition_log::PARTITION_METADATA_FILE;
        let segment = "00000000000000000000.log";
        type Files<'a> = &'a [(&'a str, &'a [u8])];
        let states: [(&str, Files<'_>); 6] = [
            ("empty directory", &[]),
            (
                "temp metadata only",
                &[("partition.metadata.tmp", b"version: 0\n")],
            ),
            (
                "empty metadata, empty segment",
                &[(PARTITION_METADATA_FILE, b""), (segment, b"")],
            ),
            ("no metadata, empty segment", &[(segment, b"")]),
            (
                "torn metadata, empty segment and indexes",
                &[
                    (PARTITION_METADATA_FILE, b"version: 0\ntopic_id: 0123"),
                    (segment, b""),
                    ("00000000000000000000.index", b""),
                    ("00000000000000000000.timeindex", b""),
                    ("00000000000000000000.txnindex", b""),
                ],
            ),
            (
                "closed while empty, metadata lost",
                &[
                    (segment, b""),
                    ("leader-epoch-checkpoint", b"0\n1\n3 0\n"),
                    (".clean-shutdown", b""),
                ],
            ),
        ];
        for (what, files) in states {
            let dir = tempfile::tempdir().unwrap();
            let partition = dir.path().join("t-0");
            fs::create_dir_all(&partition).unwrap();
            for (name, contents) in files {
                fs::write(partition.join(name), contents).unwrap();
            }
            let manager = LogManager::open(dir.path(), LogConfig::default()).unwrap();
            assert!(manager.partitions().is_empty(), "{what}");
            assert!(manager.quarantined().is_empty(), "{what}: quarantined");
            assert!(!partition.exists(), "{what}: left in place");
            let log = manager
                .get_or_create("t", id(5), 0, LogConfig::default())
                .unwrap();
            produce(&log, 1);
            assert_eq!(log.topic_id(), id(5), "{what}");
            drop((log, manager));
            let manager = LogManager::open(dir.path(), LogConfig::default()).unwrap();
            let log = manager.get("t", 0).unwrap();
            assert_eq!((log.topic_id(), log.log_end_offset()), (id(5), 2), "{what}");
        }
    }

    /// The states a crash can leave a log in that still has its topic id open as that log: a missing
    /// segment, a zero-length one. A log crashed before its first flush, whole, opens as it was.
    #[test]
    fn a_partition_with_its_topic_id_opens_whatever_a_crash_did_to_its_empty_segment() {
        for remove_segment in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let manager = LogManager::open(dir.path(), LogConfig::default()).unwrap();
            let log = manager
                .get_or_create("t", id(5), 0, LogConfig::default())
                .unwrap();
            log.append_as_leader(client_batch(&[1], 20), 0).unwrap();
            let log_file = log.dir().join("00000000000000000000.log");
            drop((log, manager)); // a crash: never flushed nor closed
            if remove_segment {
                fs::remove_file(&log_file).unwrap();
            } else {
                fs::OpenOptions::new()
                    .write(true)
                    .open(&log_file)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
            }
            let manager = LogManager::open(dir.path(), LogConfig::default()).unwrap();
            assert!(manager.quarantined().is_empty());
            let log = manager.get("t", 0).unwrap();
            assert_eq!((log.topic_id(), log.log_end_offset()), (id(5), 0));
            produce(&log, 1);
            assert_eq!(log.log_end_offset(), 2);
        }
    }

    #[tokio::test]
    async fn the_background_task_applies_retention_until_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let manager = Arc::new(LogManager::open(dir.path(), LogConfig::default()).unwrap());
        let config = LogConfig {
            segment_bytes: 500,
            retention_ms: Some(60_000),
            ..LogConfig::default()
        };
        let log = manager.get_or_create("old", id(1), 0, config).unwrap();
        let old = now_ms() - 3_600_000;
        for _ in 0..10 {
            log.append_as_leader(client_batch(&[old, old], 50), 0)
                .unwrap();
        }
        log.maybe_increment_high_watermark(log.log_end_offset());
        let segments = log.segment_count();
        assert!(segments > 2);

        let shutdown = CancellationToken::new();
        let timers = LogManagerConfig {
            retention_check_interval: Duration::from_millis(10),
            flush_check_interval: Duration::from_millis(10),
            high_watermark_checkpoint_interval: Duration::from_millis(10),
        };
        let task = tokio::spawn(Arc::clone(&manager).run(timers, shutdown.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while log.segment_count() > 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "retention never ran"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            log.log_start_offset(),
            log.segment_base_offsets()[0],
            "the active segment stays"
        );
        let hw_file = log
            .dir()
            .join(crate::log::partition_log::HIGH_WATERMARK_CHECKPOINT);
        while !hw_file.exists() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "high watermark never checkpointed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the task stops when cancelled")
            .unwrap();
        manager.close_all().unwrap();
    }
}
