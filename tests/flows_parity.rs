//! Parity of flows → labels and labels → flows with cellpose 4.2.1.1 (CPU).
//!
//! The committed fixtures in `tests/fixtures/flows/` were labelled by the real cellpose
//! (`tests/parity/make_flow_fixtures.py`); the live test generates fresh cases with another seed
//! when a Python with cellpose is available, and says that it skipped otherwise.

mod common;

use std::path::{Path, PathBuf};

use cytoseg::core::flows::{self, MaskParams};
use ndarray::{Array2, Array3};
use ndarray_npy::NpzReader;

struct Case {
    name: String,
    dp: Array3<f32>,
    cellprob: Array2<f32>,
    params: MaskParams,
    expected: Array2<u32>,
    truth: Array2<u32>,
    truth_flows: Array3<f64>,
}

fn scalar<T: ndarray_npy::ReadableElement + Copy>(
    npz: &mut NpzReader<std::fs::File>,
    name: &str,
) -> T {
    let a: ndarray::ArrayD<T> = npz.by_name(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    *a.iter().next().expect("scalar")
}

fn load(path: &Path) -> Case {
    let mut npz = NpzReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let params = MaskParams {
        cellprob_threshold: scalar::<f32>(&mut npz, "cellprob_threshold"),
        flow_threshold: scalar::<f64>(&mut npz, "flow_threshold"),
        niter: scalar::<i64>(&mut npz, "niter") as u32,
        min_size: scalar::<i64>(&mut npz, "min_size"),
        max_size_fraction: scalar::<f64>(&mut npz, "max_size_fraction"),
    };
    Case {
        name: path.file_stem().unwrap().to_string_lossy().into_owned(),
        dp: npz.by_name("dp").unwrap(),
        cellprob: npz.by_name("cellprob").unwrap(),
        params,
        expected: npz.by_name("expected").unwrap(),
        truth: npz.by_name("truth").unwrap(),
        truth_flows: npz.by_name("truth_flows").unwrap(),
    }
}

/// Compares one case; returns a description of the first difference.
fn check(case: &Case) -> Result<(), String> {
    let got = flows::compute_masks(case.dp.view(), case.cellprob.view(), &case.params)
        .map_err(|e| format!("{}: error {e}", case.name))?;
    if got != case.expected {
        let diff = got
            .iter()
            .zip(case.expected.iter())
            .filter(|(a, b)| a != b)
            .count();
        let max_got = got.iter().max().copied().unwrap_or(0);
        let max_exp = case.expected.iter().max().copied().unwrap_or(0);
        return Err(format!(
            "{}: labels differ at {diff} pixels (cytoseg {max_got} masks, cellpose {max_exp})",
            case.name
        ));
    }
    let mu =
        flows::labels_to_flows(case.truth.view()).map_err(|e| format!("{}: {e}", case.name))?;
    if mu != case.truth_flows {
        let diff = mu
            .iter()
            .zip(case.truth_flows.iter())
            .filter(|(a, b)| a != b)
            .count();
        return Err(format!(
            "{}: labels→flows differ at {diff} values",
            case.name
        ));
    }
    Ok(())
}

fn run_dir(dir: &Path) -> usize {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "npz"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {}", dir.display());
    let failures: Vec<String> = paths.iter().filter_map(|p| check(&load(p)).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n")
    );
    paths.len()
}

#[test]
fn fixtures_match_cellpose_exactly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flows");
    let n = run_dir(&dir);
    eprintln!("{n} committed cases equal cellpose 4.2.1.1");
}

#[test]
fn live_cases_match_cellpose_exactly() {
    let Some(python) = common::reference_python(&["cellpose"]) else {
        eprintln!(
            "SKIPPED live cellpose parity: no Python with cellpose 4.2.1.1 (set CYTOSEG_PYTHON)"
        );
        return;
    };
    let out = common::temp_dir("flows-live");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parity/live_flow_cases.py");
    let status = std::process::Command::new(&python)
        .arg(&script)
        .arg(&out)
        .status()
        .expect("run python");
    assert!(status.success(), "{} failed", script.display());
    let n = run_dir(&out);
    eprintln!("{n} fresh cases equal cellpose 4.2.1.1 (live)");
    let _ = std::fs::remove_dir_all(&out);
}
