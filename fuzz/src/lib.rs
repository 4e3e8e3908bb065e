//! What the fuzz targets share: an allocator that counts, so each target
//! can assert that a reader allocated no more than its input justifies.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting the bytes live and their peak.
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters only observe the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on as is.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the most bytes it had allocated at
/// once (above what was live when it started).
pub fn peak_bytes<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    let result = f();
    (result, PEAK.load(Ordering::Relaxed).saturating_sub(start))
}

/// The pixel limit every image and label target runs with (4 MP).
pub const PIXEL_LIMIT: u64 = 4_000_000;

/// An image or label decoder's allowance: 16 bytes per pixel of
/// min(declared pixels, the limit), 2 bytes per byte of the file, and
/// 24 MiB: the decoders' fixed tables (a 24x20 WebP takes 1.7 MB in
/// image-webp's VP8 decoder) and one buffer of a VP8 partition, whose
/// 24-bit size image-webp allocates before it reads the partition, so a
/// short file can make it allocate up to 16 MiB once before it fails.
pub fn image_allowance(declared_pixels: u64, file_len: usize) -> usize {
    (16 * declared_pixels.min(PIXEL_LIMIT)) as usize + 2 * file_len + (24 << 20)
}

/// A checkpoint reader's allowance: 512 bytes per byte of the file, plus
/// 2 MiB. Tensor data costs one or two bytes per byte; the multiple is for
/// structure: one byte of pickle (`EMPTY_LIST`) is a whole object node in
/// the unpickler (about 100 bytes, twice that while its arena grows), and
/// a few bytes of safetensors header JSON are a map entry with its name and
/// shape. The bound is linear: no file makes a reader allocate beyond it.
pub fn checkpoint_allowance(file_len: usize) -> usize {
    512 * file_len + (2 << 20)
}
