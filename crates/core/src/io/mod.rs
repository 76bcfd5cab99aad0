//! File input/output: `.npy` arrays, label images as TIFF/NPY, and atomic writes so that an
//! interrupted run never leaves a half-written file.

pub mod image;
pub mod labels;
pub mod limits;
pub mod npy;
pub mod parquet;
pub mod tiff;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The lower-cased extension of a path ("" when it has none).
pub fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default()
}

/// Writes a file atomically: the content goes to a temporary file in the same folder, which is
/// renamed over `path` only once complete. With `overwrite == false` an existing file is an
/// error and is left untouched.
pub fn write_atomic(
    path: &Path,
    overwrite: bool,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<()>,
) -> Result<()> {
    if !overwrite && path.exists() {
        return Err(Error::invalid(format!(
            "{} already exists (use --overwrite to replace it)",
            path.display()
        )));
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{} is not a file path", path.display())))?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = std::io::BufWriter::new(file);
        write(&mut w)?;
        w.flush().map_err(|e| Error::io(&tmp, e))?;
        let file = w
            .into_inner()
            .map_err(|e| Error::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
