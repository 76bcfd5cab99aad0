//! Execution-provider choice through the CLI (`--device`), up to the provider check: a GPU
//! provider that the loaded ONNX Runtime lacks is a clear error naming it, before any output is
//! written; `auto` falls back to the CPU and says so; unknown names are refused. On a machine
//! whose ONNX Runtime offers CUDA (onnxruntime-gpu), the CUDA case segments instead and must give
//! the CPU's labels.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cytoseg() -> Command {
    Command::new(common::cytoseg_exe())
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/examples/nuclei_example.tif")
}

fn ort_or_skip(test: &str) -> Option<PathBuf> {
    let lib = common::ort_library();
    if lib.is_none() {
        eprintln!(
            "SKIPPED {test}: no ONNX Runtime library (set ORT_DYLIB_PATH or run scripts/setup-ort.sh)"
        );
    }
    lib
}

/// Providers the runtime offers, from `cytoseg models --providers`.
fn providers(lib: &Path) -> Vec<(String, bool)> {
    let o = cytoseg()
        .args(["models", "--providers", "--ort-lib"])
        .arg(lib)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cytoseg models --providers failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    stdout
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next()?.to_string();
            let rest: Vec<&str> = it.collect();
            match rest.as_slice() {
                ["available"] => Some((name, true)),
                ["not", "available"] => Some((name, false)),
                _ => None,
            }
        })
        .collect()
}

fn segment(lib: &Path, device: &str, out: &Path) -> Output {
    cytoseg()
        .arg("segment")
        .arg(example())
        .arg("--out")
        .arg(out)
        .args(["--device", device, "--threads", "1", "--ort-lib"])
        .arg(lib)
        .output()
        .unwrap()
}

fn labels_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().ends_with("_labels.tif"))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn providers_are_listed_and_the_cpu_is_always_available() {
    let Some(lib) = ort_or_skip("providers_are_listed") else {
        return;
    };
    let p = providers(&lib);
    for name in ["cpu", "cuda", "tensorrt", "coreml", "directml"] {
        assert!(
            p.iter().any(|(n, _)| n == name),
            "{name} missing from `cytoseg models --providers`: {p:?}"
        );
    }
    assert!(p.contains(&("cpu".to_string(), true)), "{p:?}");
}

#[test]
fn unavailable_gpu_provider_is_a_clear_error_not_a_cpu_run() {
    let Some(lib) = ort_or_skip("unavailable_gpu_provider") else {
        return;
    };
    let available = providers(&lib);
    let mut checked = 0;
    for device in ["cuda", "tensorrt"] {
        if available.contains(&(device.to_string(), true)) {
            eprintln!("{device} is available here: covered by cuda_labels_equal_cpu_labels");
            continue;
        }
        let parent = common::temp_dir(&format!("devices-{device}"));
        let out = parent.join("run");
        let o = segment(&lib, device, &out);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success(),
            "--device {device} without that provider succeeded (silent CPU run?): {stderr}"
        );
        assert_eq!(o.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("device {device} is not available")),
            "unclear error for --device {device}: {stderr}"
        );
        assert!(
            stderr.contains("--device cpu"),
            "the error should say how to proceed: {stderr}"
        );
        assert!(
            !out.exists(),
            "the failed run left an output folder: {:?}",
            labels_files(&out)
        );
        let _ = std::fs::remove_dir_all(&parent);
        checked += 1;
    }
    if checked == 0 {
        eprintln!("no unavailable GPU provider to check on this machine");
    }
}

#[test]
fn auto_falls_back_to_the_cpu_and_says_so() {
    let Some(lib) = ort_or_skip("auto_falls_back") else {
        return;
    };
    let gpu = providers(&lib).into_iter().any(|(n, ok)| ok && n != "cpu");
    let out = common::temp_dir("devices-auto");
    let o = segment(&lib, "auto", &out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "--device auto failed: {stderr}");
    assert_eq!(labels_files(&out).len(), 1, "{stderr}");
    if !gpu {
        assert!(
            stderr.contains(" on cpu"),
            "auto should report that the CPU ran: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn unknown_device_is_refused_with_the_choices() {
    let Some(lib) = ort_or_skip("unknown_device") else {
        return;
    };
    let out = common::temp_dir("devices-unknown");
    let o = segment(&lib, "tpu", &out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "--device tpu succeeded: {stderr}");
    assert!(
        stderr.contains("unknown device \"tpu\"") && stderr.contains("cuda"),
        "unclear error: {stderr}"
    );
    assert!(labels_files(&out).is_empty());
    let _ = std::fs::remove_dir_all(&out);
}

/// Runs only where the ONNX Runtime in use offers CUDA (onnxruntime-gpu on an NVIDIA machine).
#[test]
fn cuda_labels_equal_cpu_labels() {
    let Some(lib) = ort_or_skip("cuda_labels_equal_cpu_labels") else {
        return;
    };
    if !providers(&lib).contains(&("cuda".to_string(), true)) {
        eprintln!(
            "SKIPPED cuda_labels_equal_cpu_labels: this ONNX Runtime ({}) has no CUDA provider",
            lib.display()
        );
        return;
    }
    let mut labels = Vec::new();
    for device in ["cpu", "cuda"] {
        let out = common::temp_dir(&format!("devices-run-{device}"));
        let o = segment(&lib, device, &out);
        assert!(
            o.status.success(),
            "--device {device} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let files = labels_files(&out);
        assert_eq!(files.len(), 1);
        let img = cytoseg::core::io::image::read_image(&files[0]).unwrap();
        labels.push(img.data);
        let _ = std::fs::remove_dir_all(&out);
    }
    let as_u32 = |d: &cytoseg::core::io::image::ImageData| -> Vec<u32> {
        use cytoseg::core::io::image::ImageData;
        match d {
            ImageData::U8(v) => v.iter().map(|&x| x as u32).collect(),
            ImageData::U16(v) => v.iter().map(|&x| x as u32).collect(),
            ImageData::F32(v) => v.iter().map(|&x| x as u32).collect(),
        }
    };
    let (a, b) = (as_u32(&labels[0]), as_u32(&labels[1]));
    let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    // GPU convolutions round differently; a pixel or two at mask borders may move.
    assert!(
        differ * 1000 <= a.len(),
        "CUDA labels differ from the CPU's at {differ} of {} pixels",
        a.len()
    );
}
