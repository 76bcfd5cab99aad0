//! ONNX Runtime, loaded at run time: finding the library, one environment per process, and
//! choosing the execution provider (CPU or a GPU).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider};

use crate::core::error::{Error, Result};

/// File names of the ONNX Runtime shared library on this platform.
#[cfg(target_os = "windows")]
const LIB_NAMES: &[&str] = &["onnxruntime.dll"];
#[cfg(target_os = "macos")]
const LIB_NAMES: &[&str] = &["libonnxruntime.dylib"];
#[cfg(not(any(target_os = "windows", target_os = "macos")))]
const LIB_NAMES: &[&str] = &["libonnxruntime.so", "libonnxruntime.so.1"];

/// The loaded runtime: its library path, version and environment (one per process).
#[derive(Debug)]
pub struct Runtime {
    /// Path of the ONNX Runtime library that was loaded.
    pub library: PathBuf,
    /// ONNX Runtime version string, e.g. "1.31.1".
    pub version: String,
    pub(crate) env: Environment,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// Candidate library paths in the documented search order, each with where it came from.
pub fn candidates(explicit: Option<&Path>) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    if let Some(p) = explicit {
        out.push(("--ort-lib / explicit path".to_string(), p.to_path_buf()));
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        out.push(("ORT_DYLIB_PATH".to_string(), PathBuf::from(p)));
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = own_library_dir() {
        dirs.push(dir);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(dir);
    }
    dirs.dedup();
    for dir in dirs {
        for name in LIB_NAMES {
            out.push((
                format!("next to cytoseg ({})", dir.display()),
                dir.join(name),
            ));
        }
    }
    if let Some(entries) = python_onnxruntime_dir().and_then(|capi| std::fs::read_dir(capi).ok()) {
        let mut libs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    LIB_NAMES
                        .iter()
                        .any(|l| n.starts_with(l.trim_end_matches(".1")))
                })
            })
            .collect();
        libs.sort();
        for l in libs {
            out.push(("python3's onnxruntime package".to_string(), l));
        }
    }
    out
}

/// Folder holding the shared library that contains this code, when loaded as a cdylib.
fn own_library_dir() -> Option<PathBuf> {
    // The executable's folder covers the CLI; for the cdylib, hosts usually place ONNX Runtime
    // beside it, which the Java and Python shims pass explicitly. /proc/self/maps tells where
    // libcytoseg was mapped from on Linux.
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("libcytoseg"))
        .and_then(|p| Path::new(p).parent().map(Path::to_path_buf))
}

/// `onnxruntime/capi` of the `python3` on PATH, if it has the package.
fn python_onnxruntime_dir() -> Option<PathBuf> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import os, onnxruntime; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'))",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    dir.is_dir().then_some(dir)
}

/// Loads ONNX Runtime once per process (later calls return the same runtime, whatever path
/// they name). `explicit` is tried first, then `ORT_DYLIB_PATH`, the folder of cytoseg, and
/// the `onnxruntime` package of `python3`.
pub fn runtime(explicit: Option<&Path>) -> Result<&'static Runtime> {
    if let Some(r) = RUNTIME.get() {
        return Ok(r);
    }
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = RUNTIME.get() {
        return Ok(r);
    }
    let mut tried = Vec::new();
    for (source, path) in candidates(explicit) {
        if !path.exists() {
            tried.push(format!("  {} ({source}): not found", path.display()));
            continue;
        }
        match ort::init_from(&path) {
            Ok(builder) => {
                let env = builder
                    .with_name("cytoseg")
                    .with_telemetry(false)
                    .build()
                    .map_err(|e| {
                        Error::Runtime(format!("creating the ONNX Runtime environment: {e}"))
                    })?;
                let version = ort_version(&path);
                log::info!("ONNX Runtime {version} loaded from {}", path.display());
                let _ = RUNTIME.set(Runtime {
                    library: path,
                    version,
                    env,
                });
                return RUNTIME
                    .get()
                    .ok_or_else(|| Error::Runtime("runtime init".into()));
            }
            Err(e) => tried.push(format!("  {} ({source}): {e}", path.display())),
        }
    }
    Err(Error::Runtime(format!(
        "ONNX Runtime (1.22 or newer) was not found. Looked in:\n{}\nInstall it with `pip install onnxruntime==1.31.1` (or onnxruntime-gpu for CUDA) and/or point cytoseg at the library with --ort-lib PATH or ORT_DYLIB_PATH=/path/to/libonnxruntime.so",
        if tried.is_empty() {
            "  (no candidate locations)".to_string()
        } else {
            tried.join("\n")
        }
    )))
}

/// ONNX Runtime's version, read from the library's file name (`libonnxruntime.so.1.31.1`,
/// following symbolic links), else from its build information.
fn ort_version(path: &Path) -> String {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let from_name = name
        .split(".so.")
        .nth(1)
        .or_else(|| {
            name.strip_prefix("libonnxruntime.")
                .and_then(|r| r.strip_suffix(".dylib"))
        })
        .filter(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit()));
    match from_name {
        Some(v) => v.to_string(),
        None => ort::info()
            .split(',')
            .find_map(|t| t.trim().strip_prefix("git-commit-id="))
            .map_or_else(|| "unknown".to_string(), |c| format!("unknown (build {c})")),
    }
}

/// Where the network runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The CPU execution provider.
    Cpu,
    /// NVIDIA CUDA.
    Cuda,
    /// NVIDIA TensorRT.
    TensorRt,
    /// Apple Core ML.
    CoreMl,
    /// DirectML (Windows).
    DirectMl,
    /// The first available GPU provider (TensorRT, CUDA, Core ML, DirectML), else the CPU.
    #[default]
    Auto,
}

impl Device {
    /// Parses `cpu|cuda|tensorrt|coreml|directml|auto`.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "cpu" => Device::Cpu,
            "cuda" | "gpu" => Device::Cuda,
            "tensorrt" | "trt" => Device::TensorRt,
            "coreml" => Device::CoreMl,
            "directml" | "dml" => Device::DirectMl,
            "auto" => Device::Auto,
            other => {
                return Err(Error::invalid(format!(
                    "unknown device {other:?}: use cpu, cuda, tensorrt, coreml, directml or auto"
                )));
            }
        })
    }

    /// Lower-case name, as parsed.
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::TensorRt => "tensorrt",
            Device::CoreMl => "coreml",
            Device::DirectMl => "directml",
            Device::Auto => "auto",
        }
    }

    /// Whether this provider is compiled into the loaded ONNX Runtime (`rt` proves it is
    /// loaded: asking before would make `ort` look for a library on its own).
    pub fn is_available(self, _rt: &Runtime) -> bool {
        let check = |r: ort::Result<bool>| r.unwrap_or(false);
        match self {
            Device::Cpu => true,
            Device::Cuda => check(<ep::CUDA as ExecutionProvider>::is_available()),
            Device::TensorRt => check(<ep::TensorRT as ExecutionProvider>::is_available()),
            Device::CoreMl => check(<ep::CoreML as ExecutionProvider>::is_available()),
            Device::DirectMl => check(<ep::DirectML as ExecutionProvider>::is_available()),
            Device::Auto => true,
        }
    }

    pub(crate) fn dispatch(self) -> ep::ExecutionProviderDispatch {
        match self {
            Device::Cuda => ep::CUDA::default().build().error_on_failure(),
            Device::TensorRt => ep::TensorRT::default().build().error_on_failure(),
            Device::CoreMl => ep::CoreML::default().build().error_on_failure(),
            Device::DirectMl => ep::DirectML::default().build().error_on_failure(),
            Device::Cpu | Device::Auto => ep::CPU::default().build().error_on_failure(),
        }
    }
}

/// The GPU providers `auto` tries, in order.
pub const AUTO_ORDER: [Device; 4] = [
    Device::TensorRt,
    Device::Cuda,
    Device::CoreMl,
    Device::DirectMl,
];

/// Every concrete provider and whether the loaded runtime offers it.
pub fn available_devices(rt: &Runtime) -> Vec<(Device, bool)> {
    std::iter::once(Device::Cpu)
        .chain(AUTO_ORDER)
        .map(|d| (d, d.is_available(rt)))
        .collect()
}
