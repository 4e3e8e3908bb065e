//! The allocator's policy for a training process.

/// Keeps the memory of freed tensors in the process for the next training
/// iteration; for binaries, once, before training. glibc's malloc hands
/// blocks of over 32 MiB back to the kernel when they are freed, and the
/// kernel zeroes their pages again when the next iteration touches them
/// (docs/performance.md has the cost). Every iteration allocates the same
/// tensors, so the heap grows little past the first one. Other allocators
/// keep their own policy.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's parameters, under its lock;
    // no allocation is invalidated by them.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
    }
}
