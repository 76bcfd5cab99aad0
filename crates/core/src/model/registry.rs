//! The model registry: model packages found by name in the folders a host names (the host
//! decides which folders: the `cytoseg-host` crate), or given by path.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The packages found in `dirs` (searched in order): (name, folder), first occurrence of each
/// name. Which folders to search is the host's choice (see the `host` module of the library).
pub fn list_models(dirs: &[PathBuf]) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("manifest.json").is_file())
            .collect();
        found.sort();
        for p in found {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !out.iter().any(|(n, _)| *n == name) {
                out.push((name, p));
            }
        }
    }
    out
}

/// Resolves a model given by path (a package folder or its manifest.json) or by name, looked
/// up in `dirs`.
pub fn resolve_model(name_or_path: &str, dirs: &[PathBuf]) -> Result<PathBuf> {
    let p = Path::new(name_or_path);
    if p.is_dir() && p.join("manifest.json").is_file() {
        return Ok(p.to_path_buf());
    }
    if p.is_file() && p.file_name().is_some_and(|n| n == "manifest.json") {
        return Ok(p.parent().unwrap_or(Path::new(".")).to_path_buf());
    }
    if p.exists() {
        return Err(Error::Model(format!(
            "{name_or_path} is not a model package: expected a folder holding manifest.json and the ONNX file"
        )));
    }
    let found = list_models(dirs);
    if let Some((_, dir)) = found.iter().find(|(n, _)| n == name_or_path) {
        return Ok(dir.clone());
    }
    let known: Vec<String> = found.into_iter().map(|(n, _)| n).collect();
    Err(Error::Model(format!(
        "no model named {name_or_path:?} (bundled: {}; searched {})",
        if known.is_empty() {
            "none found".to_string()
        } else {
            known.join(", ")
        },
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}
