//! Host policy: where each face of the library looks for ONNX Runtime and for model packages
//! given by name. The engine (`core`) looks nowhere by itself; the command line, the C API and
//! the JNI entry points each build their search lists here, so the rules are written once and
//! documented in one place.
//!
//! | face | ONNX Runtime, in order | models by name, in order |
//! |---|---|---|
//! | command line | `--ort-lib`, `ORT_DYLIB_PATH`, beside the executable, the `onnxruntime` package of the `python3` on PATH | `$CYTOSEG_MODELS`, `models/` beside the executable or one level up, `share/cytoseg/models` beside its parent, and for a binary in a Cargo `target/<profile>/` folder the checkout's `models/`; then the user's models folder |
//! | C API, JNI (Fiji), Python | the caller's path (the Fiji jar passes its bundled library, the Python package its `onnxruntime` wheel's), `ORT_DYLIB_PATH`, beside libcytoseg | `$CYTOSEG_MODELS`, `models/` beside libcytoseg or one level up (the Python wheel's layout); then the user's models folder |
//!
//! The **user's models folder** ([`user_models_dir`]) is where the clones a user trains from
//! Fiji, napari or `cytoseg train --name` are saved, so that every face offers them by name:
//! `$CYTOSEG_USER_MODELS` when set, else `$XDG_DATA_HOME/cytoseg/models` (default
//! `~/.local/share/cytoseg/models`) on Linux, `~/Library/Application Support/cytoseg/models` on
//! macOS, `%APPDATA%\cytoseg\models` on Windows. It comes last, so a clone never hides a bundled
//! model of the same name (the faces refuse such names when saving).
//!
//! Nothing here is used by `cytoseg-core`, which cannot depend on this crate.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::{Path, PathBuf};

use cytoseg_core::model::runtime::{self, Candidate};

/// Environment variable naming the ONNX Runtime library (honoured by every face).
pub const ORT_ENV: &str = "ORT_DYLIB_PATH";
/// Environment variable with extra model folders (a path list; honoured by every face).
pub const MODELS_ENV: &str = "CYTOSEG_MODELS";
/// Environment variable naming the user's models folder instead of the platform's default.
pub const USER_MODELS_ENV: &str = "CYTOSEG_USER_MODELS";

/// The user's models folder (see the crate documentation), or None when neither
/// `$CYTOSEG_USER_MODELS` nor a home folder is known. It may not exist yet.
pub fn user_models_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = env(USER_MODELS_ENV) {
        return Some(d);
    }
    let base = if cfg!(windows) {
        env("APPDATA")
    } else if cfg!(target_os = "macos") {
        env("HOME").map(|h| h.join("Library/Application Support"))
    } else {
        env("XDG_DATA_HOME").or_else(|| env("HOME").map(|h| h.join(".local/share")))
    }?;
    Some(base.join("cytoseg").join("models"))
}

/// The folder a new clone called `name` is saved to: `<user models folder>/<name>`.
///
/// Refuses a name that is empty, longer than 64 bytes, starts with a dot or holds anything but
/// ASCII letters, digits, `-`, `_` and `.` (it becomes a folder name on every platform), and a
/// name that `dirs` (the face's model search list) already offers, bundled models included,
/// so that a clone never hides or replaces another model.
pub fn user_model_dir(name: &str, dirs: &[PathBuf]) -> cytoseg_core::Result<PathBuf> {
    use cytoseg_core::Error;
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 64 || name.starts_with('.') || !name.chars().all(ok_char) {
        return Err(Error::invalid(format!(
            "model name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"
        )));
    }
    if let Some((_, dir)) = cytoseg_core::model::registry::list_models(dirs)
        .into_iter()
        .find(|(n, _)| n == name)
    {
        return Err(Error::invalid(format!(
            "a model named {name:?} exists already ({}): choose another name",
            dir.display()
        )));
    }
    Ok(user_models_root()?.join(name))
}

/// [`user_models_dir`], or an error saying how to name one when no home folder is known.
pub fn user_models_root() -> cytoseg_core::Result<PathBuf> {
    user_models_dir().ok_or_else(|| {
        cytoseg_core::Error::invalid(format!(
            "no user models folder: set {USER_MODELS_ENV} (no home folder is known)"
        ))
    })
}

/// The command line's ONNX Runtime search (see the module table).
pub fn cli_ort_search(explicit: Option<&Path>) -> Vec<Candidate> {
    let mut out = common_ort_search(explicit, "--ort-lib");
    if let Some(dir) = exe_dir() {
        out.extend(runtime::in_folder("beside the cytoseg executable", &dir));
    }
    out.extend(python_onnxruntime());
    out
}

/// The C API's (and JNI's) ONNX Runtime search (see the module table).
pub fn library_ort_search(explicit: Option<&Path>) -> Vec<Candidate> {
    let mut out = common_ort_search(explicit, "the caller's path");
    if let Some(dir) = own_library_dir() {
        out.extend(runtime::in_folder("beside libcytoseg", &dir));
    }
    out
}

/// The command line's model folders (see the module table).
pub fn cli_model_dirs() -> Vec<PathBuf> {
    let mut dirs = env_model_dirs();
    if let Some(exe) = exe_dir() {
        dirs.push(exe.join("models"));
        if let Some(up) = exe.parent() {
            dirs.push(up.join("models"));
            dirs.push(up.join("share/cytoseg/models"));
            // target/<profile>/cytoseg of a checkout: the checkout's models/.
            if up.file_name().is_some_and(|n| n == "target")
                && let Some(checkout) = up.parent()
            {
                dirs.push(checkout.join("models"));
            }
        }
    }
    dirs.extend(user_models_dir());
    dirs
}

/// The C API's (and JNI's) model folders (see the module table).
pub fn library_model_dirs() -> Vec<PathBuf> {
    let mut dirs = env_model_dirs();
    if let Some(lib) = own_library_dir() {
        dirs.push(lib.join("models"));
        if let Some(up) = lib.parent() {
            dirs.push(up.join("models"));
        }
    }
    dirs.extend(user_models_dir());
    dirs
}

fn common_ort_search(explicit: Option<&Path>, explicit_source: &str) -> Vec<Candidate> {
    let mut out = Vec::new();
    if let Some(p) = explicit {
        out.push((explicit_source.to_string(), p.to_path_buf()));
    }
    if let Some(p) = std::env::var_os(ORT_ENV) {
        out.push((ORT_ENV.to_string(), PathBuf::from(p)));
    }
    out
}

fn env_model_dirs() -> Vec<PathBuf> {
    std::env::var_os(MODELS_ENV)
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default()
}

fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
}

/// Folder holding the shared library that contains this code, when loaded as a cdylib (Linux:
/// from /proc/self/maps; elsewhere the caller passes paths explicitly).
fn own_library_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| {
            Path::new(p)
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libcytoseg"))
        })
        .and_then(|p| Path::new(p).parent().map(Path::to_path_buf))
}

/// The library files in `onnxruntime/capi` of the `python3` on PATH, if it has the package.
fn python_onnxruntime() -> Vec<Candidate> {
    let Some(capi) = std::process::Command::new("python3")
        .args([
            "-c",
            "import os, onnxruntime; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'))",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(&capi) else {
        return Vec::new();
    };
    let mut libs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.") || n == "onnxruntime.dll")
        })
        .collect();
    libs.sort();
    libs.into_iter()
        .map(|l| ("python3's onnxruntime package".to_string(), l))
        .collect()
}
