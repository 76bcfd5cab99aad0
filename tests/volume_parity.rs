//! Parity of 3-D flows → labels with cellpose 4.2.1.1 (CPU): `dynamics.compute_masks(dP,
//! cellprob, do_3D=True, ...)` on `(3, Z, Y, X)` flows.
//!
//! The committed fixtures in `tests/fixtures/volume/` were labelled by the real cellpose
//! (`tests/parity/make_volume_fixtures.py`: real DSB2018 nuclei extruded into stacks, touching
//! and hollow balls, objects on the faces, oversized and tiny objects, no background, empty and
//! 2×2×2 volumes; flows warped, noised and corrupted); the live test generates fresh cases with
//! another seed when a Python with cellpose is available, and says that it skipped otherwise.

mod common;

use std::path::Path;

use cytoseg::core::flows::{self, Flows3Ref, MaskParams};
use ndarray::{Array3, Array4};
use ndarray_npy::NpzReader;

fn scalar<T: ndarray_npy::ReadableElement + Copy>(
    npz: &mut NpzReader<std::fs::File>,
    name: &str,
) -> T {
    let a: ndarray::ArrayD<T> = npz.by_name(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    *a.iter().next().expect("scalar")
}

fn check(path: &Path) -> Result<(), String> {
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let mut npz = NpzReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let params = MaskParams {
        cellprob_threshold: scalar::<f32>(&mut npz, "cellprob_threshold"),
        flow_threshold: 0.0,
        niter: scalar::<i64>(&mut npz, "niter") as u32,
        min_size: scalar::<i64>(&mut npz, "min_size"),
        max_size_fraction: scalar::<f64>(&mut npz, "max_size_fraction"),
    };
    let dp: Array4<f32> = npz.by_name("dp").unwrap();
    let cellprob: Array3<f32> = npz.by_name("cellprob").unwrap();
    let expected: Array3<u32> = npz.by_name("expected").unwrap();
    let (d, h, w) = cellprob.dim();
    let mut stacked: Vec<f32> = dp.iter().copied().collect();
    stacked.extend(cellprob.iter());
    let f = Flows3Ref::stacked(&stacked, d, h, w).map_err(|e| format!("{name}: {e}"))?;
    let got = flows::compute_masks_3d(&f, &params).map_err(|e| format!("{name}: error {e}"))?;
    let diff = got
        .iter()
        .zip(expected.iter())
        .filter(|(a, b)| a != b)
        .count();
    if diff > 0 {
        return Err(format!(
            "{name}: labels differ at {diff} voxels (cytoseg {} masks, cellpose {})",
            got.iter().max().unwrap_or(&0),
            expected.iter().max().unwrap_or(&0)
        ));
    }
    Ok(())
}

#[test]
fn fixtures_match_cellpose_exactly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/volume");
    let n = common::parity_dir(&dir, check);
    eprintln!("{n} committed 3-D flow cases equal cellpose 4.2.1.1");
}

#[test]
fn live_cases_match_cellpose_exactly() {
    if let Some(n) = common::live_cellpose_parity("live_volume_cases.py", check) {
        eprintln!("{n} fresh 3-D flow cases equal cellpose 4.2.1.1 (live)");
    }
}
