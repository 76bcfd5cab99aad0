//! Shared by the file-reader targets: the fuzzer's bytes become a file with the extension the
//! reader dispatches on, and the per-file limit is lowered so that an input that passes the
//! checks stays within libFuzzer's memory limits (2 GB RSS, 2 GB per malloc).

use std::path::PathBuf;

/// Per-file decoded-bytes limit while fuzzing, unless `CYTOSEG_MAX_IMAGE_BYTES` sets another
/// (a smaller one makes the decoders faster; at most ~1 GB stays within libFuzzer's limits).
pub const FUZZ_MAX_DECODED_BYTES: u64 = 64 << 20;

/// Writes `data` to this process's scratch file with extension `ext` and returns its path.
pub fn scratch(data: &[u8], ext: &str) -> PathBuf {
    if std::env::var_os("CYTOSEG_MAX_IMAGE_BYTES").is_none() {
        cytoseg::core::io::limits::set_max_decoded_bytes(FUZZ_MAX_DECODED_BYTES);
    }
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("cytoseg-fuzz-{}.{ext}", std::process::id()));
    std::fs::write(&path, data).expect("writing the scratch file");
    path
}
