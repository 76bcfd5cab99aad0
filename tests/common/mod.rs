//! Helpers shared by integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A Python interpreter that can import every module in `modules`: `$CYTOSEG_PYTHON`, else the
/// repository's `.venv`. `None` when there is none (tests then skip, saying so).
pub fn reference_python(modules: &[&str]) -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = std::env::var_os("CYTOSEG_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::iter::once(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
        ))
        .collect();
    let probe = format!("import {}", modules.join(", "));
    candidates.into_iter().find(|py| {
        py.exists()
            && Command::new(py)
                .args(["-c", &probe])
                .output()
                .is_ok_and(|o| o.status.success())
    })
}

/// A fresh, empty temporary directory unique to this process and `tag`.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cytoseg-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The shared DSB2018 data folder, when present.
pub fn shared_data() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/dsb2018-fluo");
    p.exists().then_some(p)
}
