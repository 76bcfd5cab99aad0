//! Helpers shared by the benchmarks: peak memory, medians, environment flags, the target
//! directory, the machine description and the reference Python.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `VmHWM` (peak resident set) of this process, in kB.
pub fn vm_hwm_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Median of `v` (NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// A boolean environment setting: unset → `None`; "", "0", "false", "no" → false.
pub fn env_flag(name: &str) -> Option<bool> {
    std::env::var(name)
        .ok()
        .map(|v| !matches!(v.trim(), "" | "0" | "false" | "no"))
}

/// Cargo's target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
}

/// Cores, CPU model and load average, for the report header.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    format!("{cores} × {cpu}; load average at the end {load}")
}

/// A Python (`$CYTOSEG_PYTHON`, else the repository's `.venv`) that imports `modules`
/// (comma-separated, as in an `import` statement), or why there is none.
pub fn reference_python(modules: &str) -> Result<PathBuf, String> {
    let mut tried = Vec::new();
    let candidates: Vec<PathBuf> = std::env::var_os("CYTOSEG_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::iter::once(repo().join(".venv/bin/python")))
        .collect();
    for py in candidates {
        if !py.exists() {
            tried.push(format!("{} does not exist", py.display()));
            continue;
        }
        match Command::new(&py)
            .args(["-c", &format!("import {modules}")])
            .output()
        {
            Ok(o) if o.status.success() => return Ok(py),
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr);
                let last = err.lines().last().unwrap_or("").to_string();
                tried.push(format!("{} cannot import {modules} ({last})", py.display()));
            }
            Err(e) => tried.push(format!("{}: {e}", py.display())),
        }
    }
    Err(tried.join("; "))
}

/// A benchmark's result type.
pub type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The benchmarks' `main`: `CHILD_ARG args...` runs one measured case in a child process,
/// `--bench` (as `cargo bench` passes) the whole benchmark, anything else (`cargo test`) the quick
/// smoke check. Exits with status 1 and the error on failure.
pub fn dispatch(
    name: &str,
    child_arg: &str,
    child: impl FnOnce(&[String]) -> BoxResult<()>,
    bench: impl FnOnce() -> BoxResult<()>,
    smoke: impl FnOnce() -> BoxResult<()>,
) {
    let args: Vec<String> = std::env::args().collect();
    let result = if args.get(1).map(String::as_str) == Some(child_arg) {
        child(&args[2..])
    } else if args.iter().skip(1).any(|a| a == "--bench") {
        bench()
    } else {
        smoke()
    };
    if let Err(e) = result {
        eprintln!("{name}: error: {e}");
        std::process::exit(1);
    }
}
