//! Parity of flows → labels and labels → flows with cellpose 4.2.1.1 (CPU).
//!
//! The committed fixtures in `tests/fixtures/flows/` were labelled by the real cellpose
//! (`tests/parity/make_flow_fixtures.py`); the live test generates fresh cases with another seed
//! when a Python with cellpose is available, and says that it skipped otherwise.

mod common;

use std::path::Path;

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
    common::parity_dir(dir, |p| check(&load(p)))
}

#[test]
fn fixtures_match_cellpose_exactly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flows");
    let n = run_dir(&dir);
    eprintln!("{n} committed cases equal cellpose 4.2.1.1");
}

#[test]
fn live_cases_match_cellpose_exactly() {
    if let Some(n) = common::live_cellpose_parity("live_flow_cases.py", |p| check(&load(p))) {
        eprintln!("{n} fresh cases equal cellpose 4.2.1.1 (live)");
    }
}
