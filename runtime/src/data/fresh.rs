//! Fresh buffers for large arrays whose pages are mapped in one call.
//!
//! A large zeroed allocation comes from the system unmapped: each 4 KiB page
//! is mapped by a page fault the first time it is written, one trap per page
//! (a 61 MiB partition read from a socket is 15,600 of them, and in a virtual
//! machine a trap costs more than the page's zeroing). Asking the kernel to
//! map the whole range at once (`MADV_POPULATE_WRITE`, Linux 5.14) does the
//! same work without the traps. Where the kernel cannot, the buffer is the
//! same, only mapped lazily.

/// Below this many bytes a buffer is mapped on demand (a call is not worth it).
const POPULATE_FROM: usize = 1 << 20;

/// A zeroed vector of `len` values whose memory is already mapped when it is
/// large.
pub fn zeroed_f64(len: usize) -> Vec<f64> {
    let mut values = vec![0f64; len];
    populate(&mut values);
    values
}

/// Maps the pages of `values` now, if it is large and the kernel can (what
/// is already mapped stays as it is).
pub fn populate(values: &mut [f64]) {
    let bytes = std::mem::size_of_val(values);
    if bytes < POPULATE_FROM {
        return;
    }
    populate_range(values.as_mut_ptr().cast(), bytes);
}

/// The whole 4 KiB pages inside `len` bytes from `start`, as the first page's
/// address and the bytes they span (what `madvise` and `mincore` take).
#[cfg(target_os = "linux")]
fn whole_pages(start: *const u8, len: usize) -> Option<(usize, usize)> {
    const PAGE: usize = 4096;
    let first = (start as usize).next_multiple_of(PAGE);
    let end = (start as usize + len) / PAGE * PAGE;
    (end > first).then_some((first, end - first))
}

#[cfg(target_os = "linux")]
fn populate_range(start: *mut u8, len: usize) {
    let Some((first, bytes)) = whole_pages(start, len) else {
        return;
    };
    // SAFETY: the range lies inside `values`, which is writable and ours;
    // populating only maps its pages (zeroed, as they already read), it does
    // not change what they hold.
    unsafe {
        libc::madvise(first as *mut libc::c_void, bytes, libc::MADV_POPULATE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn populate_range(_start: *mut u8, _len: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_populated_buffer_is_zeroed_and_writable_at_any_size() {
        for len in [0, 1, 1000, (POPULATE_FROM / 8) + 3, 3 << 20] {
            let mut v = zeroed_f64(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x == 0.0), "len {len}");
            if let Some(last) = v.last_mut() {
                *last = 1.5;
            }
            assert_eq!(v.iter().sum::<f64>(), if len > 0 { 1.5 } else { 0.0 });
        }
    }

    /// How many of the whole pages inside `values` are mapped.
    #[cfg(target_os = "linux")]
    fn mapped_pages(values: &[f64]) -> (usize, usize) {
        let (first, bytes) =
            whole_pages(values.as_ptr().cast(), std::mem::size_of_val(values)).expect("pages");
        let pages = bytes / 4096;
        let mut resident = vec![0u8; pages];
        // SAFETY: the range is whole pages of a live allocation; `resident` has
        // one byte per page.
        let r = unsafe { libc::mincore(first as *mut libc::c_void, bytes, resident.as_mut_ptr()) };
        assert_eq!(r, 0, "mincore");
        (resident.iter().filter(|&&b| b & 1 == 1).count(), pages)
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_large_buffer_is_mapped_before_it_is_written_and_a_plain_one_is_not() {
        // Over glibc's largest mmap threshold (32 MiB): fresh pages from the
        // system either way.
        let len = (64 << 20) / 8;
        let plain = vec![0f64; len];
        let (mapped, pages) = mapped_pages(&plain);
        assert!(
            mapped < pages / 10,
            "a plain zeroed buffer: {mapped} of {pages} mapped"
        );
        let fresh = zeroed_f64(len);
        let (mapped, pages) = mapped_pages(&fresh);
        assert_eq!(mapped, pages, "a populated buffer");
    }
}
