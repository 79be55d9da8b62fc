//! The memory ceiling every allocation sized by an input is checked against before it is
//! made, so that a small file that declares (or inflates to) a huge array is refused with
//! a message instead of aborting the process or exhausting the machine.
//!
//! The ceiling is, in order: what [`set_max_memory`] set (the CLI's `--max-memory`), else
//! the environment variable `NCLAB_MAX_MEMORY` (bytes, or with a K/M/G/T suffix), else half
//! of the machine's physical memory, and never more than half of the process's address-space
//! limit (`ulimit -v`) when one is set.

use std::sync::atomic::{AtomicU64, Ordering};

/// 0 = not set.
static MAX_MEMORY: AtomicU64 = AtomicU64::new(0);

/// Used where the machine's memory cannot be read (no `/proc/meminfo`).
const FALLBACK_BYTES: u64 = 8 << 30;

/// Sets the ceiling for this process (`bytes` >= 1).
pub fn set_max_memory(bytes: u64) {
    MAX_MEMORY.store(bytes.max(1), Ordering::Relaxed);
}

/// Parses `8G`, `512M`, `1.5T`, `4096` (bytes; K, M, G, T are powers of 1024).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, scale) = match text.chars().last()?.to_ascii_uppercase() {
        'K' => (&text[..text.len() - 1], 1u64 << 10),
        'M' => (&text[..text.len() - 1], 1 << 20),
        'G' => (&text[..text.len() - 1], 1 << 30),
        'T' => (&text[..text.len() - 1], 1 << 40),
        _ => (text, 1),
    };
    let value: f64 = number.trim().parse().ok()?;
    let bytes = value * scale as f64;
    (bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// The ceiling in bytes.
pub fn max_memory() -> u64 {
    let set = MAX_MEMORY.load(Ordering::Relaxed);
    let chosen = if set > 0 {
        set
    } else if let Some(bytes) = std::env::var("NCLAB_MAX_MEMORY")
        .ok()
        .and_then(|v| parse_size(&v))
    {
        bytes
    } else {
        physical_memory().map_or(FALLBACK_BYTES, |b| b / 2)
    };
    match address_space_limit() {
        Some(limit) => chosen.min(limit / 2),
        None => chosen,
    }
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn physical_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The soft `RLIMIT_AS` of this process, in bytes, when it is not unlimited.
fn address_space_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// A byte count for messages: `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("1.5K"), Some(1536));
        assert_eq!(parse_size("2T"), Some(2 << 40));
        for bad in ["", "G", "-1G", "0", "x", "1e40T", "nan"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 29), "1.5 GiB");
    }

    #[test]
    fn the_default_ceiling_is_at_most_half_the_machine() {
        if let Some(total) = physical_memory() {
            assert!(max_memory() <= total / 2 || std::env::var("NCLAB_MAX_MEMORY").is_ok());
            assert!(total > 1 << 20);
        }
    }
}
