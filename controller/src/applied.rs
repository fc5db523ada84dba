//! `AppliedMetadata`: what the Raft state machine has applied, shared with the rest of the controller.
//! The state machine is its only writer (`apply`, `install`); readers take a consistent copy of the
//! image, wait for an offset, or read the recent committed entries that `WatchMetadata` streams to
//! brokers. Recent entries are kept in a bounded window; a watcher behind it gets a fresh image instead.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::state::{MetadataImage, Record};

/// How many committed entries stay available for watchers that resume from an offset.
pub const RETAINED_ENTRIES: usize = 4096;

/// One applied log entry: its offset and its records (empty for Raft's own blank and membership
/// entries, which still move the metadata offset).
#[derive(Clone, Debug)]
pub struct AppliedEntry {
    pub offset: u64,
    pub records: Arc<Vec<Record>>,
    /// When this node applied it (µs since the Unix epoch): on the active controller, the moment of
    /// its commit. Watchers measure propagation from it.
    pub applied_at_us: u64,
}

/// What a watcher resuming from an offset gets.
pub enum Resume {
    /// The entries after the offset, in order (possibly none yet).
    Entries(Vec<AppliedEntry>),
    /// The offset is no longer retained (or is ahead of this node): start over from a full image.
    Snapshot(Box<MetadataImage>),
}

#[derive(Default)]
struct Inner {
    image: MetadataImage,
    recent: VecDeque<AppliedEntry>,
}

pub struct AppliedMetadata {
    inner: RwLock<Inner>,
    offset_tx: watch::Sender<u64>,
}

impl Default for AppliedMetadata {
    fn default() -> Self {
        Self::new()
    }
}

impl AppliedMetadata {
    pub fn new() -> Self {
        let (offset_tx, _) = watch::channel(0);
        Self {
            inner: RwLock::new(Inner::default()),
            offset_tx,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the current image.
    pub fn image(&self) -> MetadataImage {
        self.read().image.clone()
    }

    /// Runs `f` on the current image without copying it.
    pub fn with_image<T>(&self, f: impl FnOnce(&MetadataImage) -> T) -> T {
        f(&self.read().image)
    }

    pub fn offset(&self) -> u64 {
        *self.offset_tx.borrow()
    }

    /// Notified whenever the applied offset moves.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.offset_tx.subscribe()
    }

    /// Applies one committed entry (called by the state machine only).
    pub fn apply(&self, offset: u64, records: Vec<Record>) {
        {
            let mut inner = self.write();
            inner.image.replay_all(offset, &records);
            inner.image.offset = offset;
            inner.recent.push_back(AppliedEntry {
                offset,
                records: Arc::new(records),
                applied_at_us: unix_micros(),
            });
            while inner.recent.len() > RETAINED_ENTRIES {
                inner.recent.pop_front();
            }
        }
        self.offset_tx.send_replace(offset);
    }

    /// Replaces the whole image (snapshot installed or loaded at start; called by the state machine only).
    pub fn install(&self, image: MetadataImage) {
        let offset = image.offset;
        {
            let mut inner = self.write();
            inner.image = image;
            inner.recent.clear();
        }
        self.offset_tx.send_replace(offset);
    }

    /// Entries after `from_offset`, or a full image when they are no longer all retained. A watcher
    /// starting from nothing (`from_offset` 0: a broker process that just started, it keeps no
    /// metadata) gets the full image even when every entry is retained: replayed one by one, the
    /// entries would show it states long gone, such as leaderships of old epochs, and it would act on
    /// them (Kafka's brokers likewise publish metadata only once caught up with the log).
    pub fn resume(&self, from_offset: u64) -> Resume {
        let inner = self.read();
        if from_offset == 0 && inner.image.offset > 0 {
            return Resume::Snapshot(Box::new(inner.image.clone()));
        }
        if from_offset >= inner.image.offset {
            // Up to date, or ahead of this node (it came from a controller that applied more): the
            // entries it is missing here will arrive; the caller skips what it already has.
            return Resume::Entries(Vec::new());
        }
        let oldest_retained = inner.recent.front().map(|e| e.offset);
        match oldest_retained {
            Some(oldest) if from_offset + 1 >= oldest => Resume::Entries(
                inner
                    .recent
                    .iter()
                    .filter(|e| e.offset > from_offset)
                    .cloned()
                    .collect(),
            ),
            _ => Resume::Snapshot(Box::new(inner.image.clone())),
        }
    }
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fence(broker_id: i32, fenced: bool) -> Vec<Record> {
        vec![Record::BrokerChange {
            broker_id,
            broker_epoch: 1,
            fenced: Some(fenced),
            in_controlled_shutdown: None,
            has_offline_log_dir: None,
        }]
    }

    #[test]
    fn a_watcher_from_nothing_gets_the_image_and_one_with_an_offset_gets_the_entries_after_it() {
        let applied = AppliedMetadata::new();
        assert!(matches!(applied.resume(0), Resume::Entries(e) if e.is_empty()));
        for offset in 1..=3 {
            applied.apply(offset, fence(1, offset % 2 == 1));
        }
        // Never the intermediate states: the image as it is now.
        match applied.resume(0) {
            Resume::Snapshot(image) => assert_eq!(image.offset, 3),
            Resume::Entries(_) => panic!("a fresh watcher replays old states"),
        }
        match applied.resume(1) {
            Resume::Entries(entries) => {
                assert_eq!(entries.iter().map(|e| e.offset).collect::<Vec<_>>(), [2, 3])
            }
            Resume::Snapshot(_) => panic!("retained entries are streamed"),
        }
        assert!(matches!(applied.resume(3), Resume::Entries(e) if e.is_empty()));
    }
}
