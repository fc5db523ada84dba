//! File descriptors: a broker with many partitions needs more descriptors than a shell's default soft
//! limit (often 1,024). At start the broker raises its soft `RLIMIT_NOFILE` to the hard limit, as
//! Kafka's packaging asks operators to (`ulimit -n` in Kafka's operations docs), and `/metrics`
//! reports descriptors in use against the limit. Segment and index files are not held open per
//! partition: the broker-wide [`crate::log::file_cache::FileCache`] keeps at most three quarters of
//! this limit open (see [`crate::log::file_cache::capacity_for_limit`]) and reopens the others on
//! demand, so the number of partitions a broker hosts is not bounded by its descriptors (issue #18).

use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The soft and hard `RLIMIT_NOFILE` after raising the soft limit to the hard one.
pub fn raise_open_files_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; raising the soft limit up to the hard one needs no
        // privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// The soft `RLIMIT_NOFILE`: how many descriptors this process may have open.
pub fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit.rlim_cur)
}

/// How long a count of `/proc/self/fd` is reused.
const OPEN_FILES_MAX_AGE: Duration = Duration::from_secs(1);

/// Descriptors this process has open (entries of `/proc/self/fd`), counted at most once a second;
/// `None` where there is no procfs. Listing the directory costs the kernel work per descriptor (13%
/// of a broker's CPU with 10,000 partitions and `/metrics` scraped every 50 ms, as `chronikctl bench
/// metadata` does), so a scrape within a second of the last one gets the same count.
pub fn open_files() -> Option<u64> {
    static LAST: Mutex<Option<(Instant, u64)>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((at, count)) = *last {
        if at.elapsed() < OPEN_FILES_MAX_AGE {
            return Some(count);
        }
    }
    // The directory handle itself is one of the entries.
    let count = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|entries| entries.count().saturating_sub(1) as u64)?;
    *last = Some((Instant::now(), count));
    Some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: valid, writable rlimit structs for each call.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
            // One below the hard limit: lowered, yet nothing else in this test process is starved.
            let lowered = libc::rlimit {
                rlim_cur: limit.rlim_max - 1,
                rlim_max: limit.rlim_max,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lowered), 0);
        }
        assert_eq!(open_files_limit(), Some(limit.rlim_max - 1));
        let (soft, hard) = raise_open_files_limit().expect("getrlimit and setrlimit succeed");
        assert_eq!((soft, hard), (limit.rlim_max, limit.rlim_max));
        assert_eq!(open_files_limit(), Some(soft));
    }

    #[test]
    fn open_descriptors_are_counted() {
        let files: Vec<_> = (0..50)
            .map(|_| tempfile::tempfile().expect("a temp file opens"))
            .collect();
        // A count from up to a second ago may be reused: wait for a fresh one.
        std::thread::sleep(OPEN_FILES_MAX_AGE);
        assert!(open_files().expect("procfs is mounted on Linux") >= files.len() as u64);
    }
}
