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

/// The `cytoseg` executable of this build (crate `cytoseg-cli`, in the same target folder as
/// this test: `target/<profile>/cytoseg`). `cargo test` builds it first: the cli crate has
/// integration tests, and Cargo builds a package's binaries for those.
pub fn cytoseg_exe() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/cytoseg
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let bin = dir.join(format!("cytoseg{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: build the workspace first (cargo build --workspace, or cargo test --workspace)",
        bin.display()
    );
    bin
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

/// An ONNX Runtime library for tests: `$ORT_DYLIB_PATH`, else the one in the repository's
/// `.venv` (`pip install onnxruntime`). `None` when there is none (tests then skip, saying so).
pub fn ort_library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .filter(|p| p.exists())
    {
        return Some(p);
    }
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    for py in std::fs::read_dir(&lib).ok()?.flatten() {
        let capi = py.path().join("site-packages/onnxruntime/capi");
        if let Ok(entries) = std::fs::read_dir(&capi) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("libonnxruntime.so.1") {
                    return Some(e.path());
                }
            }
        }
    }
    None
}

/// `cytoseg` with the test ONNX Runtime on the CPU, or `None` (skip, saying so) without one.
pub fn cytoseg(args: &[&str]) -> Option<Command> {
    let Some(lib) = ort_library() else {
        eprintln!(
            "SKIPPED: no ONNX Runtime library (set ORT_DYLIB_PATH or pip install onnxruntime into .venv)"
        );
        return None;
    };
    let mut c = Command::new(cytoseg_exe());
    c.args(args)
        .arg("--device")
        .arg("cpu")
        .arg("--ort-lib")
        .arg(lib)
        .env_remove("CYTOSEG_TEST_CRASH_AFTER");
    Some(c)
}

/// Runs `c`, printing its standard error (seen with `--nocapture`).
pub fn run(mut c: Command) -> std::process::Output {
    let o = c.output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&o.stderr));
    o
}

/// A Python with scikit-image 0.26 (the parity reference) and its version, when the shared data
/// is present too; otherwise prints why `what` is SKIPPED and gives `None`.
pub fn skimage_reference(what: &str) -> Option<(PathBuf, String)> {
    let Some(py) = reference_python(&["skimage", "scipy"]) else {
        println!("SKIPPED {what}: no Python with scikit-image (set CYTOSEG_PYTHON)");
        return None;
    };
    if shared_data().is_none() {
        println!("SKIPPED {what}: ../shared/data/dsb2018-fluo is absent");
        return None;
    }
    let version = Command::new(&py)
        .args(["-c", "import skimage; print(skimage.__version__)"])
        .output()
        .ok()?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    if !version.starts_with("0.26") {
        println!("SKIPPED {what}: scikit-image {version}, the reference is 0.26");
        return None;
    }
    Some((py, version))
}

/// Runs `check` on every `.npz` case of `dir` (sorted) and fails listing every case that
/// differs; returns the number of cases.
pub fn parity_dir(dir: &Path, check: impl Fn(&Path) -> Result<(), String>) -> usize {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "npz"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {}", dir.display());
    let failures: Vec<String> = paths.iter().filter_map(|p| check(p).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n")
    );
    paths.len()
}

/// Live parity: runs `tests/parity/<script> OUT` with a Python that has cellpose (fresh cases
/// labelled by it), then [`parity_dir`] on OUT. `None`, after saying so, without such a Python.
pub fn live_cellpose_parity(
    script: &str,
    check: impl Fn(&Path) -> Result<(), String>,
) -> Option<usize> {
    let Some(python) = reference_python(&["cellpose"]) else {
        eprintln!(
            "SKIPPED live cellpose parity ({script}): no Python with cellpose 4.2.1.1 (set CYTOSEG_PYTHON)"
        );
        return None;
    };
    let out = temp_dir(script.trim_end_matches(".py"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/parity")
        .join(script);
    let status = Command::new(&python)
        .arg(&script)
        .arg(&out)
        .status()
        .expect("run python");
    assert!(status.success(), "{} failed", script.display());
    let n = parity_dir(&out, check);
    let _ = std::fs::remove_dir_all(&out);
    Some(n)
}

/// The model in `dir` on the CPU with the ONNX Runtime of [`ort_library`]; `None` (the test
/// then skips, saying so) when there is no ONNX Runtime.
pub fn load_cpu_model(dir: &Path) -> Option<cytoseg::core::model::Model> {
    use cytoseg::core::model::{Device, LoadOptions, Model};
    let Some(lib) = ort_library() else {
        eprintln!(
            "SKIPPED: no ONNX Runtime library (set ORT_DYLIB_PATH or pip install onnxruntime into .venv)"
        );
        return None;
    };
    let opts = LoadOptions {
        device: Device::Cpu,
        ort_search: vec![("test".into(), lib)],
        model_dirs: vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("models")],
        threads: 0,
    };
    Some(Model::load(dir.to_str().unwrap(), &opts).expect("load model"))
}
