//! Opening a partition log and recovering it after a crash: the directory scan, torn-tail
//! truncation of the segments that may hold one, the epoch cache and checkpoints, the producer
//! state rebuilt from the last snapshot plus the batch headers after it, and the aborted-transaction
//! indexes: read from their files, and rebuilt by replaying the log from a snapshot at or below the
//! first segment whose file is missing or does not parse (and, after a crash, from the last snapshot,
//! which covers the recovered tail).

use super::*;

impl PartitionLog {
    /// Opens (creating if needed) the log in `dir` for the topic `topic_id`, recovering it after an
    /// unclean shutdown: the active segment (and any segment whose tail does not frame) is
    /// re-validated batch by batch and cut at the first invalid byte, later segments after a corrupt
    /// point are deleted, the epoch cache is rebuilt from batch headers if its checkpoint is missing
    /// or corrupt, and the log start offset and high watermark checkpoints are loaded, capped at the
    /// LEO. A directory recorded for another topic id is [`LogError::InconsistentTopicId`].
    pub fn open(dir: &Path, topic_id: Uuid, config: LogConfig) -> Result<Self> {
        Self::open_in(dir, topic_id, config, Arc::default())
    }

    /// [`PartitionLog::open`] with the fsync of the parent directory, which makes a new partition
    /// directory durable, done through `parent_sync` (the log manager shares one among all its
    /// partitions, so the first flushes of logs created together share that fsync).
    ///
    /// Creating a log fsyncs nothing: its directory, `partition.metadata`, first segment and
    /// `.txnindex` are written to the page cache only, and the log's first [`PartitionLog::flush_to`]
    /// that has something to flush makes them durable before it reports any offset (see
    /// `sync_creation`). A crash before then may leave the directory missing or partial (no or a
    /// torn `partition.metadata`, a zero-length segment); nothing in it was reported durable, and
    /// [`super::super::manager::LogManager::open`] removes such a directory at start. The empty
    /// leader-epoch checkpoint is not written: a missing one reads as the same empty cache.
    pub fn open_in(
        dir: &Path,
        topic_id: Uuid,
        config: LogConfig,
        parent_sync: Arc<DirSync>,
    ) -> Result<Self> {
        Self::open_in_after(dir, topic_id, config, parent_sync, false)
    }

    /// [`PartitionLog::open_in`] of a log found at start, `clean_shutdown` when the data directory's
    /// clean-shutdown marker said every log was closed cleanly (the manager removed it durably
    /// before opening any log). Without it, the log is recovered unless it holds the per-log marker
    /// of a broker before the data directory's marker (removed here, durably, before anything
    /// else changes: from then on a crash must look unclean).
    pub fn open_in_after(
        dir: &Path,
        topic_id: Uuid,
        config: LogConfig,
        parent_sync: Arc<DirSync>,
        clean_shutdown: bool,
    ) -> Result<Self> {
        // A new directory has nothing to read, scan or recover: what follows skips it (creating a
        // partition is then a handful of syscalls, issue #18).
        let created = match fs::create_dir(dir) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(_) => {
                fs::create_dir_all(dir).map_err(io_error("create partition directory", dir))?;
                true
            }
        };
        let metadata = if created {
            None
        } else {
            read_partition_metadata(dir)?
        };
        match metadata {
            Some(found) if found != topic_id => {
                return Err(LogError::InconsistentTopicId {
                    dir: dir.to_path_buf(),
                    expected: topic_id,
                    found,
                })
            }
            Some(_) => {}
            None if created => checkpoint::write_unsynced(
                &dir.join(PARTITION_METADATA_FILE),
                partition_metadata(topic_id).as_bytes(),
            )?,
            None => write_partition_metadata(dir, topic_id)?,
        }

        // From here on a crash must look unclean.
        let legacy_marker =
            !created && checkpoint::remove_if_exists(&dir.join(CLEAN_SHUTDOWN_FILE))?;
        if legacy_marker {
            checkpoint::fsync_dir(dir)?;
        }
        let clean = !created && (clean_shutdown || legacy_marker);

        let bases = if created { Vec::new() } else { scan_dir(dir)? };
        let mut segments = BTreeMap::new();
        for (i, base) in bases.iter().enumerate() {
            let next = bases.get(i + 1).copied();
            segments.insert(*base, LogSegment::open(dir, *base, next, &config)?);
        }

        let (mut epochs, epoch_problem) = LeaderEpochCache::open(dir)?;
        let mut recovered_epochs: Vec<(i32, i64)> = Vec::new();
        let first_to_recover = segments
            .iter()
            .find(|(_, s)| s.tail_damage().is_some())
            .map(|(base, _)| *base)
            .or_else(|| {
                (!clean)
                    .then(|| segments.keys().next_back().copied())
                    .flatten()
            });
        if let Some(from) = first_to_recover {
            info!(dir = %dir.display(), from_segment = from, clean, "recovering log");
            let mut corrupt_at: Option<i64> = None;
            for (base, segment) in segments.range_mut(from..) {
                if corrupt_at.is_some() {
                    break;
                }
                let cut = segment.recover(&config, &mut |h| {
                    let higher = recovered_epochs
                        .last()
                        .is_none_or(|(epoch, _)| h.partition_leader_epoch > *epoch);
                    if h.partition_leader_epoch >= 0 && higher {
                        recovered_epochs.push((h.partition_leader_epoch, h.base_offset));
                    }
                })?;
                if cut > 0 {
                    corrupt_at = Some(*base);
                }
            }
            if let Some(corrupt) = corrupt_at {
                let later: Vec<i64> = segments.range(corrupt + 1..).map(|(b, _)| *b).collect();
                for base in later.into_iter().rev() {
                    if let Some(segment) = segments.remove(&base) {
                        error!(dir = %dir.display(), base_offset = base,
                            "deleting segment after a corrupt point");
                        segment.delete_files()?;
                    }
                }
            }
        }

        let log_start_checkpoint = if created {
            None
        } else {
            checkpoint::read_offset(&dir.join(LOG_START_OFFSET_CHECKPOINT)).unwrap_or_else(|e| {
                warn!(dir = %dir.display(), error = %e, "ignoring log start offset checkpoint");
                None
            })
        };
        if segments.is_empty() {
            let base = log_start_checkpoint.unwrap_or(0).max(0);
            segments.insert(base, LogSegment::create(dir, base)?);
            let txn_index = txn_index_path(dir, base);
            if created {
                // Empty: nothing to tear, and the directory fsync below makes it exist.
                fs::File::create(&txn_index)
                    .map_err(io_error("create transaction index", &txn_index))?;
            } else {
                txn_index::write_all(&txn_index, [])?;
            }
        }
        let first_base = segments.keys().next().copied().unwrap_or(0);
        let log_end_offset = segments
            .values()
            .next_back()
            .map(|s| s.next_offset())
            .unwrap_or(first_base);
        let log_start_offset = log_start_checkpoint
            .unwrap_or(first_base)
            .max(first_base)
            .min(log_end_offset);

        // Segments wholly below the log start (retention crashed between checkpoint and deletion).
        let below: Vec<i64> = segments
            .iter()
            .filter(|(_, s)| s.next_offset() <= log_start_offset)
            .map(|(b, _)| *b)
            .filter(|b| Some(*b) != segments.keys().next_back().copied())
            .collect();
        for base in below {
            if let Some(segment) = segments.remove(&base) {
                info!(dir = %dir.display(), base_offset = base, "deleting segment below the log start offset");
                segment.delete_files()?;
            }
        }

        match epoch_problem {
            Some(problem) => {
                // A new, empty log has no checkpoint yet; only a log with data missing it is news.
                if log_end_offset > log_start_offset {
                    warn!(dir = %dir.display(), %problem, "rebuilding leader epoch cache from the log");
                } else {
                    tracing::debug!(dir = %dir.display(), %problem, "new leader epoch cache");
                }
                for segment in segments.values() {
                    segment.for_each_batch(&mut |h| {
                        epochs.assign_in_memory(h.partition_leader_epoch, h.base_offset);
                    })?;
                }
                // A new log's cache is empty, as a missing checkpoint reads: the first leader epoch
                // assigned writes it (durably, before any batch of that epoch).
                if !created {
                    epochs.persist()?;
                }
            }
            None => {
                let mut changed = false;
                for (epoch, offset) in recovered_epochs {
                    changed |= epochs.assign_in_memory(epoch, offset);
                }
                if changed {
                    epochs.persist()?;
                }
            }
        }
        // Entries past the recovered end (their data was lost) go; one starting exactly at the LEO is
        // a leadership that has not written yet and stays.
        epochs.truncate_from_end(log_end_offset + 1)?;
        epochs.truncate_from_start(log_start_offset)?;

        // Aborted transactions: from the `.txnindex` files, then from the replay below for the segments
        // whose file is missing or unreadable (and whatever the replay passes).
        let mut aborted_txns = BTreeMap::new();
        let mut rebuild: Vec<i64> = Vec::new();
        for &base in segments.keys().filter(|_| !created) {
            let path = txn_index_path(dir, base);
            match txn_index::read(&path)? {
                Some(Ok(entries)) => {
                    aborted_txns.extend(entries.into_iter().map(|e| (e.last_offset, e)));
                }
                Some(Err(reason)) => {
                    warn!(file = %path.display(), %reason, "rebuilding transaction index");
                    rebuild.push(base);
                }
                None => rebuild.push(base),
            }
        }
        if aborted_txns
            .split_off(&log_end_offset)
            .values()
            .next()
            .is_some()
        {
            // Entries of markers the recovery cut: the active segment's file is rewritten below.
            if let Some(&active) = segments.keys().next_back() {
                rebuild.push(active);
            }
        }
        let replay_from = rebuild.first().copied().unwrap_or(log_end_offset);
        let loaded = if created {
            LoadedProducers {
                producers: ProducerState::default(),
                replayed: 0,
                completed: Vec::new(),
            }
        } else {
            load_producer_state(dir, &segments, log_end_offset, replay_from)?
        };
        let producers = loaded.producers;
        if loaded.replayed > 0 {
            info!(dir = %dir.display(), batches = loaded.replayed, producers = producers.len(),
                "rebuilt producer state from the log");
            if let Err(e) = producer_state::write_snapshot(dir, log_end_offset, &producers) {
                warn!(dir = %dir.display(), error = %e, "cannot write producer state snapshot");
            }
        }
        for txn in loaded.completed.iter().filter(|t| t.aborted) {
            let entry = AbortedTxn {
                producer_id: txn.producer_id,
                first_offset: txn.first_offset,
                last_offset: txn.last_offset,
                last_stable_offset: txn.last_offset + 1,
            };
            let known = aborted_txns.insert(entry.last_offset, entry);
            if known.is_none() {
                let base = segments
                    .range(..=entry.last_offset)
                    .next_back()
                    .map_or(entry.last_offset, |(b, _)| *b);
                if !rebuild.contains(&base) {
                    rebuild.push(base);
                }
            }
        }

        let high_watermark_file = if created {
            None
        } else {
            checkpoint::read_offset(&dir.join(HIGH_WATERMARK_CHECKPOINT)).unwrap_or_else(|e| {
                warn!(dir = %dir.display(), error = %e, "ignoring high watermark checkpoint");
                Some(-1)
            })
        };
        let high_watermark = high_watermark_file
            .unwrap_or(log_start_offset)
            .min(log_end_offset)
            .max(log_start_offset);
        // A missing checkpoint reads as the log start: a new log has nothing to checkpoint until its
        // high watermark moves (30,000 new logs would otherwise write 30,000 files at the next
        // checkpoint interval).
        let checkpointed_high_watermark = (high_watermark_file.is_none()
            && high_watermark == log_start_offset)
            .then_some(high_watermark);

        let unreplicated_txns = loaded
            .completed
            .iter()
            .filter(|t| t.last_offset >= high_watermark)
            .map(|t| (t.first_offset, t.last_offset))
            .collect();

        let state = LogState {
            dir: dir.to_path_buf(),
            config,
            segments,
            epochs,
            producers,
            aborted_txns,
            unreplicated_txns,
            verification_guards: HashMap::new(),
            next_verification_guard: 0,
            log_start_offset,
            log_end_offset,
            high_watermark,
            checkpointed_high_watermark,
            checkpointed_log_start: log_start_checkpoint
                .or((log_start_offset == first_base).then_some(log_start_offset)),
            flushed_offset: log_end_offset,
            last_flush_ms: now_ms(),
            dir_dirty: false,
            creation_unsynced: true,
            truncations: 0,
            fsyncs: 0,
            flushed_position: (-1, 0),
            status: Status::Open,
        };
        rebuild.sort_unstable();
        rebuild.dedup();
        for base in rebuild {
            state.rewrite_txn_index(dir, base)?;
        }

        if first_to_recover.is_some() {
            // Segments recovery deleted must stay deleted before anything is appended at their
            // offsets. A clean open changed nothing that matters (the marker's removal was synced
            // before; rebuilt indexes and removed leftovers are rebuilt and removed again), and
            // the log's first flush syncs the directory before it reports anything durable.
            checkpoint::fsync_dir(dir)?;
        }
        info!(dir = %dir.display(), log_start_offset, log_end_offset, high_watermark,
            segments = state.segments.len(), clean, "opened partition log");
        Ok(PartitionLog {
            dir: dir.to_path_buf(),
            topic_id,
            state: RwLock::new(state),
            flush_lock: Mutex::new(()),
            flusher: Default::default(),
            parent_sync,
            checkpoint_lock: Mutex::new(()),
            #[cfg(test)]
            fail_next_fsync: Default::default(),
            #[cfg(test)]
            fsync_gate: Default::default(),
            #[cfg(test)]
            round_gate: Default::default(),
        })
    }
}

/// What [`load_producer_state`] found.
pub(super) struct LoadedProducers {
    pub producers: ProducerState,
    /// Batch headers replayed after the snapshot.
    pub replayed: usize,
    /// The transactions ended by the markers replayed, in log order.
    pub completed: Vec<CompletedTxn>,
}

/// The producer state of the batches below `log_end_offset`: the newest snapshot at or below
/// `replay_from` (and the LEO) plus the batch headers after it (headers only; a marker's one record
/// is read to learn COMMIT or ABORT). Snapshots above the LEO are deleted first (their batches are
/// gone).
pub(super) fn load_producer_state(
    dir: &Path,
    segments: &BTreeMap<i64, LogSegment>,
    log_end_offset: i64,
    replay_from: i64,
) -> Result<LoadedProducers> {
    producer_state::delete_snapshots_above(dir, log_end_offset)?;
    let (from, mut state) =
        producer_state::load_latest_snapshot(dir, log_end_offset.min(replay_from))?
            .unwrap_or((i64::MIN, ProducerState::default()));
    let mut replayed = 0;
    let mut completed = Vec::new();
    let now = now_ms();
    if from < log_end_offset {
        let floor = segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        for segment in segments.range(floor..).map(|(_, s)| s) {
            let mut failed = None;
            segment.for_each_batch(&mut |h| {
                if h.base_offset < from || h.base_offset >= log_end_offset || failed.is_some() {
                    return;
                }
                replayed += 1;
                if !(h.is_control() && h.producer_id >= 0) {
                    state.update(h, now);
                    return;
                }
                match segment.read(h.base_offset, h.total_size(), h.next_offset()) {
                    Ok(Some(bytes)) => {
                        if let Some(marker) = EndTxnMarker::parse(&bytes) {
                            completed.push(state.apply_marker(h, marker, now));
                        }
                    }
                    Ok(None) => {}
                    Err(e) => failed = Some(e),
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
    }
    Ok(LoadedProducers {
        producers: state,
        replayed,
        completed,
    })
}

/// Lists the segment base offsets in `dir` and clears leftovers: temp checkpoint files and index files
/// whose log file is gone.
fn scan_dir(dir: &Path) -> Result<Vec<i64>> {
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error("list partition directory", dir))? {
        let entry = entry.map_err(io_error("list partition directory", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(base) = parse_segment_file(&name, LOG_SUFFIX) {
            logs.push(base);
        } else if parse_segment_file(&name, INDEX_SUFFIX).is_some()
            || parse_segment_file(&name, TIME_INDEX_SUFFIX).is_some()
            || parse_segment_file(&name, txn_index::TXN_INDEX_SUFFIX).is_some()
        {
            indexes.push(name);
        } else if name.ends_with(".tmp") {
            checkpoint::remove_if_exists(&entry.path())?;
        }
    }
    logs.sort_unstable();
    for name in indexes {
        let base = parse_segment_file(&name, INDEX_SUFFIX)
            .or_else(|| parse_segment_file(&name, TIME_INDEX_SUFFIX))
            .or_else(|| parse_segment_file(&name, txn_index::TXN_INDEX_SUFFIX));
        if base.is_some_and(|b| logs.binary_search(&b).is_err()) {
            warn!(dir = %dir.display(), file = %name, "removing index without a segment");
            checkpoint::remove_if_exists(&dir.join(&name))?;
        }
    }
    Ok(logs)
}
