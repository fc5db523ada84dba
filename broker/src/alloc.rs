//! The broker's global allocator: the system allocator, except that very large blocks are reserved as
//! lazily backed address space (`mmap` with `MAP_NORESERVE`) instead of being committed up front.
//!
//! Why: the Kafka codec sizes a vector from an array count it reads off the wire before it reads the
//! elements. A malformed request can claim two billion elements in a few bytes; committing that memory
//! fails and a failed allocation aborts the process. With this allocator such a reservation succeeds
//! without using memory, the decode fails moments later when the frame runs out of bytes (the caller
//! closes that connection), and the reservation is returned. Real data never needs blocks this large:
//! requests are capped at `--max-request-bytes`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// Blocks of at least this size are reserved lazily.
const LAZY_THRESHOLD: usize = 1 << 30;
/// `mmap` returns page-aligned memory.
const PAGE: usize = 4096;

pub struct LazyLargeAllocator;

fn is_lazy(layout: &Layout) -> bool {
    layout.size() >= LAZY_THRESHOLD && layout.align() <= PAGE
}

// SAFETY: large blocks come from anonymous private mappings (zeroed, page aligned, at least `size`
// bytes) and go back with `munmap` of the same size; everything else is `System`'s.
unsafe impl GlobalAlloc for LazyLargeAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_lazy(&layout) {
            let p = libc::mmap(
                ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                ptr::null_mut()
            } else {
                p.cast()
            }
        } else {
            System.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_lazy(&layout) {
            // Fresh anonymous mappings are zero-filled.
            self.alloc(layout)
        } else {
            System.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if is_lazy(&layout) {
            libc::munmap(p.cast(), layout.size());
        } else {
            System.dealloc(p, layout)
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        match (is_lazy(&layout), is_lazy(&new_layout)) {
            (false, false) => return System.realloc(p, layout, new_size),
            (true, true) => {
                // Move the mapping rather than copying (and so touching) every page.
                let moved = libc::mremap(p.cast(), layout.size(), new_size, libc::MREMAP_MAYMOVE);
                return if moved == libc::MAP_FAILED {
                    ptr::null_mut()
                } else {
                    moved.cast()
                };
            }
            // One side is below the threshold, so the copy below is of less than it.
            _ => {}
        }
        let new = self.alloc(new_layout);
        if !new.is_null() {
            ptr::copy_nonoverlapping(p, new, layout.size().min(new_size));
            self.dealloc(p, layout);
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_reservation_succeeds_without_using_memory_and_small_blocks_are_untouched() {
        let allocator = LazyLargeAllocator;
        unsafe {
            let huge = Layout::from_size_align(150 << 30, 8).unwrap();
            let p = allocator.alloc(huge);
            assert!(!p.is_null(), "150 GiB of address space is reserved lazily");
            *p = 7;
            assert_eq!(*p, 7);
            let grown = allocator.realloc(p, huge, 151 << 30);
            assert!(!grown.is_null());
            assert_eq!(*grown, 7, "contents move with a realloc");
            let shrunk =
                allocator.realloc(grown, Layout::from_size_align(151 << 30, 8).unwrap(), 64);
            assert!(!shrunk.is_null());
            assert_eq!(*shrunk, 7, "and with a shrink below the threshold");
            allocator.dealloc(shrunk, Layout::from_size_align(64, 8).unwrap());

            let small = Layout::from_size_align(64, 8).unwrap();
            let q = allocator.alloc_zeroed(small);
            assert!(!q.is_null() && *q == 0);
            allocator.dealloc(q, small);
        }
    }
}
