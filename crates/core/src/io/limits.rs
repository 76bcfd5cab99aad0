//! Bounds on what a file may make the engine allocate.
//!
//! Every reader computes the bytes an input's header asks for (pixels × samples × sample size,
//! array shape × item size, file length) *before* allocating, with checked arithmetic, and
//! passes them to [`check_size`]: a size over the per-file limit ([`max_decoded_bytes`], 16 GiB
//! by default) or over the memory the system has available is an [`Error::TooLarge`] that
//! names the file, what was asked for and the numbers. Allocations that pass are made
//! fallibly ([`try_vec`], `Vec::try_reserve_exact`), so that an allocator refusal is an error
//! too, never an abort of the process (the engine also runs inside Fiji and napari).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Default for [`max_decoded_bytes`]: 16 GiB of decoded samples per file.
pub const DEFAULT_MAX_DECODED_BYTES: u64 = 1 << 34;

/// Largest model manifest (`manifest.json`) read, in bytes.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Largest value of a single TIFF tag (strip/tile offsets and counts, descriptions) read, in
/// bytes: 8 M 64-bit offsets, enough for a 16 GiB image in 64 × 64 tiles.
pub const MAX_TIFF_TAG_BYTES: usize = 64 << 20;

static MAX_DECODED: AtomicU64 = AtomicU64::new(0);

/// The most bytes one file may decode to (all planes, plus any converted copy the reader
/// makes). [`DEFAULT_MAX_DECODED_BYTES`] unless changed with [`set_max_decoded_bytes`] or the
/// environment variable `CYTOSEG_MAX_IMAGE_BYTES` (read when no value was set).
pub fn max_decoded_bytes() -> u64 {
    match MAX_DECODED.load(Ordering::Relaxed) {
        0 => std::env::var("CYTOSEG_MAX_IMAGE_BYTES")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&v| v > 0)
            .unwrap_or(DEFAULT_MAX_DECODED_BYTES),
        v => v,
    }
}

/// Sets the per-file limit of [`max_decoded_bytes`] for the whole process; `0` restores the
/// default (or the environment variable).
pub fn set_max_decoded_bytes(bytes: u64) {
    MAX_DECODED.store(bytes, Ordering::Relaxed);
}

/// Bytes of memory available to this process, if known: Linux `MemAvailable` plus free swap,
/// capped by the room left under a cgroup v2 memory limit (containers). `None` elsewhere.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb.saturating_mul(1024))
    };
    let mut avail = field("MemAvailable:")?.saturating_add(field("SwapFree:").unwrap_or(0));
    let cg = |f: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{f}"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    if let (Some(max), Some(cur)) = (cg("memory.max"), cg("memory.current")) {
        avail = avail.min(max.saturating_sub(cur));
    }
    Some(avail)
}

/// A byte count for messages: `80,000,000,000 bytes (74.5 GiB)`.
pub fn bytes_text(bytes: u64) -> String {
    let digits = bytes.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    let gib = bytes as f64 / (1u64 << 30) as f64;
    let mib = bytes as f64 / (1u64 << 20) as f64;
    if gib >= 0.1 {
        format!("{grouped} bytes ({gib:.1} GiB)")
    } else if mib >= 0.1 {
        format!("{grouped} bytes ({mib:.1} MiB)")
    } else {
        format!("{grouped} bytes")
    }
}

/// A `tiff` crate error for messages; a refusal by the decoder's limits says which limits.
pub fn tiff_error_text(e: &tiff::TiffError) -> String {
    match e {
        tiff::TiffError::LimitsExceeded => format!(
            "{e} (a tag value over {} or image data over {}: a corrupt or hostile header)",
            bytes_text(MAX_TIFF_TAG_BYTES as u64),
            bytes_text(max_decoded_bytes())
        ),
        other => other.to_string(),
    }
}

/// Multiplies sizes read from a file, `None` when the product overflows `u64`.
pub fn product(factors: &[u64]) -> Option<u64> {
    factors.iter().try_fold(1u64, |acc, &f| acc.checked_mul(f))
}

/// Checks that `bytes` (what `what` in `path` would take in memory; `None` = more than 2^64)
/// is within [`max_decoded_bytes`] and the available memory. The error names the file, `what`
/// and both numbers.
pub fn check_size(path: &Path, what: &str, bytes: Option<u64>) -> Result<u64> {
    let limit = max_decoded_bytes();
    let Some(bytes) = bytes.filter(|&b| b <= isize::MAX as u64) else {
        return Err(Error::TooLarge(format!(
            "{}: {what} would take more than 2^63 bytes, over the limit of {} per file",
            path.display(),
            bytes_text(limit)
        )));
    };
    if bytes > limit {
        return Err(Error::TooLarge(format!(
            "{}: {what} would take {} in memory, over the limit of {} per file (a corrupt or hostile header, or an image too large for this engine: crop or tile it)",
            path.display(),
            bytes_text(bytes),
            bytes_text(limit)
        )));
    }
    if let Some(avail) = available_memory()
        && bytes > avail
    {
        return Err(Error::TooLarge(format!(
            "{}: {what} would take {} in memory, more than the {} this system has available",
            path.display(),
            bytes_text(bytes),
            bytes_text(avail)
        )));
    }
    Ok(bytes)
}

/// A vector of `n` copies of `value`, allocated fallibly: an allocator refusal is an
/// [`Error::TooLarge`] naming `path` and `what`, not an abort.
pub fn try_vec<T: Clone>(path: &Path, what: &str, n: usize, value: T) -> Result<Vec<T>> {
    let mut v = Vec::new();
    try_reserve(&mut v, n, path, what)?;
    v.resize(n, value);
    Ok(v)
}

/// Reserves room for exactly `n` more elements of `v`, fallibly (see [`try_vec`]).
pub fn try_reserve<T>(v: &mut Vec<T>, n: usize, path: &Path, what: &str) -> Result<()> {
    v.try_reserve_exact(n).map_err(|_| {
        Error::TooLarge(format!(
            "{}: {what}: could not allocate {}",
            path.display(),
            bytes_text((n as u64).saturating_mul(std::mem::size_of::<T>() as u64))
        ))
    })
}

/// Collects an exact-size iterator into a fallibly allocated vector.
pub fn try_collect<T>(
    path: &Path,
    what: &str,
    it: impl ExactSizeIterator<Item = T>,
) -> Result<Vec<T>> {
    let mut v = Vec::new();
    try_reserve(&mut v, it.len(), path, what)?;
    v.extend(it);
    Ok(v)
}

/// Reads a whole file of at most `max` bytes (checked against the file's length first and
/// against [`check_size`]), allocating fallibly.
pub fn read_file(path: &Path, what: &str, max: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len > max {
        return Err(Error::TooLarge(format!(
            "{}: {what} of {} is over the limit of {}",
            path.display(),
            bytes_text(len),
            bytes_text(max)
        )));
    }
    check_size(path, what, Some(len))?;
    let mut buf = Vec::new();
    try_reserve(&mut buf, len as usize, path, what)?;
    // `take` guards against a file that grows while it is read.
    file.take(max)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(path, e))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_are_grouped() {
        assert_eq!(
            bytes_text(80_000_000_000),
            "80,000,000,000 bytes (74.5 GiB)"
        );
        assert_eq!(bytes_text(999), "999 bytes");
        assert_eq!(bytes_text(1 << 20), "1,048,576 bytes (1.0 MiB)");
    }

    #[test]
    fn absurd_sizes_are_errors() {
        let p = Path::new("x.tif");
        let e = check_size(p, "200000×200000 uint16", Some(80_000_000_000)).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("x.tif") && msg.contains("80,000,000,000"),
            "{msg}"
        );
        assert!(check_size(p, "overflow", None).is_err());
        assert!(check_size(p, "small", Some(1024)).is_ok());
        assert_eq!(product(&[200_000, 200_000, 2]), Some(80_000_000_000));
        assert_eq!(product(&[u64::MAX, 2]), None);
    }
}
