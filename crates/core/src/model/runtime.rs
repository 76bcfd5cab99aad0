//! ONNX Runtime, loaded at run time: finding the library, one environment per process, and
//! choosing the execution provider (CPU or a GPU).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider};

use crate::error::{Error, Result};

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

/// A place to look for the ONNX Runtime library: where the path came from (for messages) and
/// the path.
pub type Candidate = (String, PathBuf);

/// The library file names of ONNX Runtime in `dir`, as candidates labelled `source`.
pub fn in_folder(source: &str, dir: &Path) -> Vec<Candidate> {
    LIB_NAMES
        .iter()
        .map(|name| (format!("{source} ({})", dir.display()), dir.join(name)))
        .collect()
}

/// The runtime loaded in this process, if one was.
pub fn loaded() -> Option<&'static Runtime> {
    RUNTIME.get()
}

/// Loads ONNX Runtime once per process from the first of `candidates` that loads (later calls
/// return the same runtime, whatever they name). The engine looks nowhere by itself: each host
/// (the command line, the C API, the Java and Python shims) says where to look, in its own
/// documented order. The error lists every place tried.
pub fn runtime(candidates: &[Candidate]) -> Result<&'static Runtime> {
    if let Some(r) = RUNTIME.get() {
        return Ok(r);
    }
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = RUNTIME.get() {
        return Ok(r);
    }
    let mut tried = Vec::new();
    for (source, path) in candidates {
        if !path.exists() {
            tried.push(format!("  {} ({source}): not found", path.display()));
            continue;
        }
        match ort::init_from(path) {
            Ok(builder) => {
                let env = builder
                    .with_name("cytoseg")
                    .with_telemetry(false)
                    .build()
                    .map_err(|e| {
                        Error::Runtime(format!("creating the ONNX Runtime environment: {e}"))
                    })?;
                let version = ort_version(path);
                log::info!("ONNX Runtime {version} loaded from {}", path.display());
                let _ = RUNTIME.set(Runtime {
                    library: path.clone(),
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
        "ONNX Runtime (1.22 or newer) was not found. Looked in:\n{}\nInstall it (scripts/setup-ort.sh puts it beside the cytoseg binary; or `pip install onnxruntime==1.31.1`, onnxruntime-gpu for CUDA) and/or name the library with --ort-lib PATH or ORT_DYLIB_PATH=/path/to/libonnxruntime.so",
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

/// Every device a user can name, in the order the faces offer them (`auto` first); each face
/// lists these names from here.
pub const ALL_DEVICES: [Device; 6] = [
    Device::Auto,
    Device::Cpu,
    Device::Cuda,
    Device::TensorRt,
    Device::CoreMl,
    Device::DirectMl,
];

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
