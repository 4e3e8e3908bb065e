//! The cache size that the block sizes which only tile the work derive
//! from. The reduction order never depends on it, so results stay
//! bit-identical on every machine.

use std::sync::OnceLock;

/// The L2 size assumed where it cannot be read: 1 MiB, what the block
/// sizes were first tuned for.
pub(crate) const DEFAULT_L2_BYTES: usize = 1 << 20;

/// One core's L2 data cache in bytes, read once (Linux's sysfs), or
/// [`DEFAULT_L2_BYTES`] where it cannot be read or is implausible.
pub(crate) fn l2_bytes() -> usize {
    static L2: OnceLock<usize> = OnceLock::new();
    *L2.get_or_init(|| read_l2().filter(|bytes| (64 << 10..=64 << 20).contains(bytes)).unwrap_or(DEFAULT_L2_BYTES))
}

/// The level-2 data or unified cache of CPU 0, as sysfs describes it.
fn read_l2() -> Option<usize> {
    let caches = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    caches.filter_map(Result::ok).find_map(|entry| {
        let field = |name: &str| std::fs::read_to_string(entry.path().join(name)).ok();
        let level2 = field("level")?.trim() == "2";
        let holds_data = matches!(field("type")?.trim(), "Data" | "Unified");
        if level2 && holds_data { parse_size(field("size")?.trim()) } else { None }
    })
}

/// A sysfs cache size: bytes, or with a `K` or `M` suffix.
fn parse_size(text: &str) -> Option<usize> {
    let (digits, unit) = match text.as_bytes().last()? {
        b'K' => (&text[..text.len() - 1], 1 << 10),
        b'M' => (&text[..text.len() - 1], 1 << 20),
        _ => (text, 1),
    };
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_sysfs_writes_them() {
        assert_eq!(parse_size("1024K"), Some(1 << 20));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("K"), None);
        assert_eq!(parse_size("lots"), None);
        assert!((64 << 10..=64 << 20).contains(&l2_bytes()));
    }
}
