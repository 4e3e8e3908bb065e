//! Transparent huge pages for large activations.
//!
//! A forward pass allocates hundreds of megabytes of fresh activations, and
//! the kernel maps fresh memory in on first touch, one fault per page. A
//! 2 MiB huge page maps 512 pages of 4 KiB with one fault, which made
//! first touch several times cheaper on the virtual machine we measured. Linux only backs a
//! range with huge pages by default when it is asked to (`madvise` mode of
//! `/sys/kernel/mm/transparent_hugepage/enabled`): this asks.

/// Asks the OS to back the whole 2 MiB pages inside `buffer` with
/// transparent huge pages on their first touch. Pages already touched keep
/// their contents; the advice may be ignored (other systems, THP disabled).
pub(crate) fn advise<T>(buffer: &mut [T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE_PAGE: usize = 2 << 20;
        let start = buffer.as_mut_ptr() as usize;
        let (first, last) = (start.next_multiple_of(HUGE_PAGE), (start + size_of_val(buffer)) / HUGE_PAGE * HUGE_PAGE);
        if first < last {
            // SAFETY: `first .. last` lies inside `buffer`, which we borrow
            // mutably; MADV_HUGEPAGE changes how the pages are backed, never
            // their contents. A refusal is harmless, so the result is ignored.
            unsafe { libc::madvise(first as *mut libc::c_void, last - first, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buffer;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use crate::{Shape, Tensor};

    /// The `VmFlags` of the mapping holding `address`, from /proc/self/smaps.
    fn flags_of(address: usize) -> Option<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_whitespace().next().and_then(|r| r.split_once('-'));
            if let Some((start, end)) = range.filter(|_| !line.starts_with("VmFlags"))
                && let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16))
            {
                inside = (start..end).contains(&address);
            } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
                return Some(flags.to_string());
            }
        }
        None
    }

    /// A 16 MiB tensor of zeros lies in memory advised for huge pages
    /// (`hg` in its mapping's flags), and still reads as zeros.
    #[test]
    fn large_zero_tensors_are_advised_for_huge_pages() {
        if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() {
            eprintln!("skipped: this kernel has no transparent huge pages");
            return;
        }
        let tensor = Tensor::zeros(Shape::new(1, 64, 256, 256).unwrap());
        let middle = tensor.as_slice()[tensor.as_slice().len() / 2..].as_ptr() as usize;
        let flags = flags_of(middle).expect("the tensor's mapping is listed in /proc/self/smaps");
        assert!(flags.split_whitespace().any(|f| f == "hg"), "VmFlags:{flags}");
        assert!(tensor.as_slice().iter().all(|&v| v == 0.0));
    }
}
