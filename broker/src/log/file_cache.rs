//! The broker-wide cache of open segment and index files (issue #18), as storage engines keep a
//! bounded table cache: a file is opened when an operation needs it, stays open while it is used, and
//! the least recently used idle file is closed once more than `capacity` are open. A broker with
//! 30,000 partition logs then holds descriptors for the ones being written or read, not for all of
//! them, and the rest of the process limit stays for sockets and checkpoint writes.
//!
//! What must stay true:
//! - every write to a file goes through the one [`FileHandle`] the cache holds for it, so writes not
//!   yet fsynced are always reachable by [`CachedFile::sync_data`] through that handle: a handle is
//!   closed only when it is **clean** (every write through it was covered by a successful fsync) and
//!   **idle** (no operation holds it). Closing a descriptor does not fsync, and a writeback error seen
//!   by nobody can be lost with the descriptor, so a dirty handle is never closed by the cache;
//! - an operation holds an `Arc` of its handle for its whole duration (a read, a write, an fsync
//!   outside the log's lock), so closing it from the cache never pulls the descriptor from under it;
//!   handles are cloned only under the cache's lock, which is what makes "idle" (a reference count of
//!   one) a fact rather than a guess;
//! - a file that is not open has nothing unsynced, so `sync_data` on it has nothing to do;
//! - the one exception is an index file ([`Durability::Hint`]): an index only speeds up a scan and
//!   never decides an answer (see [`super::index`]), one that lost entries is still correct and one
//!   that is damaged is rebuilt at open, so its idle handle may be closed with writes not fsynced
//!   (otherwise every partition that wrote an index entry would pin two descriptors until its
//!   segment rolls);
//! - a reopen never creates nor truncates: the segment created the file, and its length (truncation,
//!   a cut torn tail) is what the last write or `set_len` through a handle left.
//!
//! The capacity is a soft bound: when every open file is dirty or in use the cache stays above it
//! until they are fsynced or released (with `flush.messages = 1`, the default, a partition's handle
//! is clean as soon as its append is acknowledged). When the process runs out of descriptors anyway
//! (`EMFILE`), the cache closes a quarter of its idle, clean files and retries, a few times with a
//! growing wait; the log's other opens (checkpoints, directory fsyncs, new segments) go through the
//! same [`FileCache::with_room`].

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// How many skipped (dirty or busy) files one eviction looks past before giving up for now.
const EVICTION_SCAN: usize = 64;

/// Whether the cache may close a file whose writes are not fsynced yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Segment data: closed only once fsynced.
    Data,
    /// Index files: closed when idle, fsynced or not.
    Hint,
}

/// An open file and what was written through it.
#[derive(Debug)]
pub struct FileHandle {
    file: File,
    durability: Durability,
    /// Writes (and `set_len`s) through this handle that completed.
    writes: AtomicU64,
    /// The number of writes the last successful fsync covered.
    synced: AtomicU64,
}

impl FileHandle {
    fn new(file: File, durability: Durability) -> Self {
        FileHandle {
            file,
            durability,
            writes: AtomicU64::new(0),
            synced: AtomicU64::new(0),
        }
    }

    fn is_clean(&self) -> bool {
        self.synced.load(Ordering::SeqCst) >= self.writes.load(Ordering::SeqCst)
    }

    fn may_close(&self) -> bool {
        self.durability == Durability::Hint || self.is_clean()
    }

    pub fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, pos)
    }

    pub fn write_all_at(&self, data: &[u8], pos: u64) -> io::Result<()> {
        let written = self.file.write_all_at(data, pos);
        // Counted after the write, even a failed one (part of it may be in the page cache): an fsync
        // that read the count before this write finished does not count it as covered.
        self.writes.fetch_add(1, Ordering::SeqCst);
        written
    }

    pub fn set_len(&self, len: u64) -> io::Result<()> {
        let cut = self.file.set_len(len);
        self.writes.fetch_add(1, Ordering::SeqCst);
        cut
    }

    /// fsyncs the data; on success the handle is clean up to the writes that had completed when it
    /// started.
    pub fn sync_data(&self) -> io::Result<()> {
        let covered = self.writes.load(Ordering::SeqCst);
        self.file.sync_data()?;
        self.synced.fetch_max(covered, Ordering::SeqCst);
        Ok(())
    }

    pub fn metadata(&self) -> io::Result<Metadata> {
        self.file.metadata()
    }
}

/// What the cache has done, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileCacheStats {
    pub open: u64,
    pub capacity: u64,
    /// Files opened (first opens and reopens after an eviction).
    pub opens: u64,
    /// Idle, clean files closed to stay within the capacity.
    pub evictions: u64,
    /// Open files that could not be closed when the cache was over capacity (dirty or in use).
    pub pinned_skips: u64,
}

#[derive(Debug, Default)]
struct Lru {
    /// File id → (handle, its last use).
    open: HashMap<u64, (Arc<FileHandle>, u64)>,
    /// Last use → file id, oldest first.
    order: BTreeMap<u64, u64>,
    tick: u64,
}

impl Lru {
    fn touch(&mut self, id: u64) -> Option<Arc<FileHandle>> {
        self.tick += 1;
        let tick = self.tick;
        let (handle, used) = self.open.get_mut(&id)?;
        self.order.remove(used);
        *used = tick;
        self.order.insert(tick, id);
        Some(Arc::clone(handle))
    }

    fn insert(&mut self, id: u64, handle: Arc<FileHandle>) {
        self.tick += 1;
        self.order.insert(self.tick, id);
        if let Some((_, used)) = self.open.insert(id, (handle, self.tick)) {
            self.order.remove(&used);
        }
    }

    fn remove(&mut self, id: u64) -> Option<Arc<FileHandle>> {
        let (handle, used) = self.open.remove(&id)?;
        self.order.remove(&used);
        Some(handle)
    }

    /// Closes idle, clean files, oldest first, until at most `target` are open; returns the
    /// handles to drop (outside the lock) and how many busy or dirty files it looked past, each of
    /// which counts as used now so that the next eviction starts past it.
    fn evict_to(&mut self, target: usize) -> (Vec<Arc<FileHandle>>, u64) {
        let mut closed = Vec::new();
        let mut skipped = Vec::new();
        let mut cursor = 0;
        while self.open.len() > target && skipped.len() < EVICTION_SCAN {
            let Some((&used, &id)) = self.order.range(cursor..).next() else {
                break;
            };
            cursor = used + 1;
            let idle_and_clean = self
                .open
                .get(&id)
                .is_some_and(|(h, _)| Arc::strong_count(h) == 1 && h.may_close());
            if idle_and_clean {
                closed.extend(self.remove(id));
            } else {
                skipped.push(id);
            }
        }
        let pinned = skipped.len() as u64;
        for id in skipped {
            self.touch(id);
        }
        (closed, pinned)
    }
}

/// A bounded set of open files shared by every segment of the broker.
#[derive(Debug)]
pub struct FileCache {
    lru: Mutex<Lru>,
    capacity: AtomicU64,
    next_id: AtomicU64,
    opens: AtomicU64,
    evictions: AtomicU64,
    pinned_skips: AtomicU64,
}

static GLOBAL: OnceLock<Arc<FileCache>> = OnceLock::new();

impl FileCache {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(FileCache {
            lru: Mutex::new(Lru::default()),
            capacity: AtomicU64::new(capacity.max(1) as u64),
            next_id: AtomicU64::new(1),
            opens: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            pinned_skips: AtomicU64::new(0),
        })
    }

    /// The broker's cache, sized from the process's descriptor limit until
    /// [`FileCache::set_capacity`] says otherwise.
    pub fn global() -> &'static Arc<FileCache> {
        GLOBAL.get_or_init(|| {
            FileCache::new(capacity_for_limit(
                crate::fds::open_files_limit().unwrap_or(1024),
            ))
        })
    }

    /// Runs `open` (something that opens a descriptor, the cache's own or one outside it: a
    /// checkpoint, a directory fsync, a new segment) and, while the process is out of descriptors
    /// (`EMFILE`/`ENFILE`), closes a quarter of this cache's idle, clean files and tries again,
    /// waiting longer each time for files in use to be released (about 1.3 s in all). The cache's
    /// descriptors are the ones the broker can give back, and a passing shortage must not fail a
    /// write: a failed checkpoint or fsync takes the data directory offline.
    pub fn with_room<T>(&self, mut open: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        const RETRIES: u32 = 7;
        let mut attempt = 0;
        loop {
            match open() {
                Err(e) if is_out_of_descriptors(&e) && attempt < RETRIES => {
                    let open_files = self.lock().open.len();
                    self.evict(open_files - open_files / 4);
                    if attempt > 0 {
                        std::thread::sleep(std::time::Duration::from_millis(10 << attempt));
                    }
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    pub fn set_capacity(&self, capacity: usize) {
        self.capacity
            .store(capacity.max(1) as u64, Ordering::SeqCst);
        self.evict(capacity.max(1));
    }

    pub fn stats(&self) -> FileCacheStats {
        let open = self.lock().open.len() as u64;
        FileCacheStats {
            open,
            capacity: self.capacity.load(Ordering::SeqCst),
            opens: self.opens.load(Ordering::SeqCst),
            evictions: self.evictions.load(Ordering::SeqCst),
            pinned_skips: self.pinned_skips.load(Ordering::SeqCst),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn evict(&self, target: usize) {
        let (closed, pinned) = self.lock().evict_to(target);
        self.evictions
            .fetch_add(closed.len() as u64, Ordering::SeqCst);
        self.pinned_skips.fetch_add(pinned, Ordering::SeqCst);
        // The descriptors close here, outside the lock.
        drop(closed);
    }

    /// The open handle of `file`, opening it if needed.
    fn get(&self, file: &CachedFile) -> io::Result<Arc<FileHandle>> {
        let capacity = self.capacity.load(Ordering::SeqCst) as usize;
        let hit = {
            let mut lru = self.lock();
            lru.touch(file.id).map(|h| (h, lru.open.len() > capacity))
        };
        if let Some((handle, over)) = hit {
            if over {
                // Files that were busy or dirty at the last eviction may be idle and clean now.
                self.evict(capacity);
            }
            return Ok(handle);
        }
        let opened = self.with_room(|| open_rw(&file.path))?;
        self.opens.fetch_add(1, Ordering::SeqCst);
        let handle = {
            let mut lru = self.lock();
            // Another thread may have opened it meanwhile (two reads of one idle segment): keep
            // theirs, so that there is only ever one handle to write through.
            match lru.touch(file.id) {
                Some(theirs) => theirs,
                None => {
                    let handle = Arc::new(FileHandle::new(opened, file.durability));
                    lru.insert(file.id, Arc::clone(&handle));
                    handle
                }
            }
        };
        if self.lock().open.len() > capacity {
            self.evict(capacity);
        }
        Ok(handle)
    }

    /// Registers an already open file (just created) so that the first write needs no reopen.
    fn adopt(&self, id: u64, file: File, durability: Durability) {
        self.opens.fetch_add(1, Ordering::SeqCst);
        self.lock()
            .insert(id, Arc::new(FileHandle::new(file, durability)));
        let capacity = self.capacity.load(Ordering::SeqCst) as usize;
        if self.lock().open.len() > capacity {
            self.evict(capacity);
        }
    }
}

/// The cache's capacity for a process limit of `limit` descriptors: a quarter of it, and at least
/// 128, is left for sockets, checkpoint writes and the runtime.
pub fn capacity_for_limit(limit: u64) -> usize {
    let reserve = (limit / 4).max(128);
    limit.saturating_sub(reserve).max(16) as usize
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// One file of a segment, open or not. Dropping it closes the file if it is open (without an
/// fsync, as dropping a `File` does).
#[derive(Debug)]
pub struct CachedFile {
    id: u64,
    path: PathBuf,
    durability: Durability,
    cache: Arc<FileCache>,
}

impl CachedFile {
    /// A file that exists at `path`, not opened yet.
    pub fn new(cache: &Arc<FileCache>, path: &Path, durability: Durability) -> Self {
        CachedFile {
            id: cache.next_id.fetch_add(1, Ordering::SeqCst),
            path: path.to_path_buf(),
            durability,
            cache: Arc::clone(cache),
        }
    }

    /// A file the caller just opened (read and write), kept open in the cache.
    pub fn with_open(
        cache: &Arc<FileCache>,
        path: &Path,
        file: File,
        durability: Durability,
    ) -> Self {
        let cached = CachedFile::new(cache, path, durability);
        cache.adopt(cached.id, file, durability);
        cached
    }

    /// The open handle, reopened if the cache closed it. Hold it for the whole operation.
    pub fn handle(&self) -> io::Result<Arc<FileHandle>> {
        self.cache.get(self)
    }

    /// fsyncs what was written and not yet fsynced. A file that is not open has nothing unsynced.
    pub fn sync_data(&self) -> io::Result<()> {
        match self.open_handle() {
            Some(handle) => handle.sync_data(),
            None => Ok(()),
        }
    }

    /// The handle when the file is open, without opening it.
    pub fn open_handle(&self) -> Option<Arc<FileHandle>> {
        self.cache.lock().touch(self.id)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.cache.lock().open.contains_key(&self.id)
    }
}

impl Drop for CachedFile {
    fn drop(&mut self) {
        let handle = self.cache.lock().remove(self.id);
        drop(handle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(cache: &Arc<FileCache>, dir: &Path, n: usize) -> Vec<CachedFile> {
        (0..n)
            .map(|i| {
                let path = dir.join(format!("{i}.log"));
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&path)
                    .unwrap();
                CachedFile::with_open(cache, &path, file, Durability::Data)
            })
            .collect()
    }

    #[test]
    fn stays_within_capacity_closing_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(4);
        let files = files(&cache, dir.path(), 10);
        let stats = cache.stats();
        assert_eq!((stats.open, stats.evictions), (4, 6));
        assert!(files[6..].iter().all(CachedFile::is_open));
        // Using an old one reopens it and closes the least recently used (6).
        files[0].handle().unwrap();
        assert!(files[0].is_open());
        assert!(!files[6].is_open());
        assert_eq!(cache.stats().open, 4);
        drop(files);
        assert_eq!(cache.stats().open, 0, "dropping a file closes it");
    }

    /// A checkpoint or directory fsync that finds the process out of descriptors gets room from the
    /// cache instead of failing (a failed one would take the data directory offline).
    #[test]
    fn an_open_out_of_descriptors_is_retried_after_closing_idle_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(16);
        let files = files(&cache, dir.path(), 8);
        assert_eq!(cache.stats().open, 8);
        let mut failures = 2;
        let opened = cache.with_room(|| {
            if failures > 0 {
                failures -= 1;
                return Err(io::Error::from_raw_os_error(libc::EMFILE));
            }
            std::fs::File::open(dir.path())
        });
        assert!(opened.is_ok(), "{opened:?}");
        let stats = cache.stats();
        assert!(stats.open < 8 && stats.evictions >= 2, "{stats:?}");
        assert!(files.iter().any(|f| !f.is_open()));

        // Other errors are not retried, and a shortage that lasts is reported.
        let mut calls = 0;
        let missing = cache.with_room(|| {
            calls += 1;
            std::fs::File::open(dir.path().join("missing"))
        });
        assert_eq!(missing.unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(calls, 1);
        let lasting: io::Result<()> =
            cache.with_room(|| Err(io::Error::from_raw_os_error(libc::EMFILE)));
        assert_eq!(lasting.unwrap_err().raw_os_error(), Some(libc::EMFILE));
    }

    #[test]
    fn reads_and_writes_after_eviction_reach_the_right_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(2);
        let files = files(&cache, dir.path(), 6);
        for (i, file) in files.iter().enumerate() {
            let handle = file.handle().unwrap();
            handle
                .write_all_at(format!("file {i}").as_bytes(), 0)
                .unwrap();
            handle.sync_data().unwrap();
        }
        assert!(cache.stats().evictions >= 4);
        // Appends to closed files land in their own file, after what is there.
        for (i, file) in files.iter().enumerate().rev() {
            file.handle()
                .unwrap()
                .write_all_at(format!("+{i}").as_bytes(), 6)
                .unwrap();
            file.sync_data().unwrap();
        }
        for (i, file) in files.iter().enumerate() {
            let mut buf = vec![0u8; 8];
            file.handle().unwrap().read_exact_at(&mut buf, 0).unwrap();
            assert_eq!(buf, format!("file {i}+{i}").as_bytes());
            assert_eq!(
                std::fs::read(dir.path().join(format!("{i}.log"))).unwrap(),
                buf
            );
        }
        assert!(cache.stats().open <= 2);
    }

    #[test]
    fn a_dirty_file_stays_open_until_fsynced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(2);
        let files = files(&cache, dir.path(), 2);
        files[0]
            .handle()
            .unwrap()
            .write_all_at(b"unsynced", 0)
            .unwrap();
        files[1].handle().unwrap();
        // A third file pushes the cache over capacity: the dirty one is looked past.
        let path = dir.path().join("third.log");
        std::fs::write(&path, b"").unwrap();
        let third = CachedFile::new(&cache, &path, Durability::Data);
        third.handle().unwrap();
        assert!(files[0].is_open(), "a dirty file is never closed");
        assert!(!files[1].is_open(), "the clean one goes instead");
        // Once fsynced it is clean and may go.
        files[0].sync_data().unwrap();
        files[1].handle().unwrap();
        third.handle().unwrap();
        assert!(!files[0].is_open());
        assert_eq!(
            std::fs::read(dir.path().join("0.log")).unwrap(),
            b"unsynced"
        );
    }

    #[test]
    fn a_file_in_use_is_not_closed_under_its_user() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(1);
        let files = files(&cache, dir.path(), 2);
        let held = files[0].handle().unwrap();
        // Over capacity, but 0 is held by an operation: it stays, 1 (idle, clean) goes.
        assert!(files[0].is_open());
        let second = files[1].handle().unwrap();
        drop(second);
        assert!(files[0].is_open(), "held handles are not evicted");
        held.write_all_at(b"still mine", 0).unwrap();
        held.sync_data().unwrap();
        drop(held);
        files[1].handle().unwrap();
        assert!(!files[0].is_open());
        assert_eq!(
            std::fs::read(dir.path().join("0.log")).unwrap(),
            b"still mine"
        );
    }

    #[test]
    fn an_index_file_may_close_unsynced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(1);
        let path = dir.path().join("0.index");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let index = CachedFile::with_open(&cache, &path, file, Durability::Hint);
        index.handle().unwrap().write_all_at(b"entry", 0).unwrap();
        let data = files(&cache, dir.path(), 1);
        assert!(
            !index.is_open(),
            "an idle index file is closed even unsynced"
        );
        assert!(data[0].is_open());
        assert_eq!(std::fs::read(&path).unwrap(), b"entry");
    }

    #[test]
    fn capacity_leaves_room_for_sockets() {
        assert_eq!(capacity_for_limit(20_000), 15_000);
        assert_eq!(capacity_for_limit(400), 272);
        assert_eq!(capacity_for_limit(100), 16);
    }
}
