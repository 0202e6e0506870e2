//! How the process's allocator treats big blocks: keep freed memory for reuse instead of handing
//! it back to the kernel at once.
//!
//! Why: a network's forward pass and training step allocate and free tensors of 1–32 MB, op
//! after op. glibc's defaults serve such blocks with a fresh `mmap` (its threshold starts at
//! 128 KiB) and return freed memory at the top of the heap to the kernel past 128 KiB, so every
//! new tensor starts on untouched pages: one page fault and a page cleared per 4 KiB. In a
//! `perf` profile of `bench recon --suite profile` page faults were 15 % of all samples.
//! Blocks up to 32 MiB (glibc's upper bound for this setting) now come from the heap, and up
//! to [`KEPT_FREE_BYTES`] of free memory at its top stays mapped: the next tensor reuses pages
//! that are already there. The price: after a big job the process may keep that much memory
//! it is not using; peak memory does not grow.

/// Free memory at the top of a heap kept for reuse rather than returned to the kernel.
pub const KEPT_FREE_BYTES: usize = 512 << 20;

/// Largest block served from the heap rather than by its own `mmap` (glibc refuses more).
pub const HEAP_BLOCK_LIMIT: usize = 32 << 20;

/// Apply the settings above, once, at program start. Returns whether the allocator took them
/// (false off glibc, where the system allocator's own policy stays).
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; it is called before other threads
        // allocate (program start), and both values are within glibc's accepted ranges.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, HEAP_BLOCK_LIMIT as libc::c_int) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, KEPT_FREE_BYTES as libc::c_int) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_settings() {
        // mallopt returns 0 for a value out of range: this fails if glibc's limit ever drops
        // below ours.
        assert!(super::keep_freed_memory());
    }
}
