//! Parity of 3-D labels → flows with cellpose 4.2.1.1 (CPU, 2 torch threads):
//! `dynamics.masks_to_flows_gpu_3d(labels)`, bit for bit.
//!
//! The committed fixtures in `tests/fixtures/volume_flows/` were made by the real cellpose
//! (`tests/parity/make_volume_flows_fixtures.py`: DSB2018 nuclei extruded into stacks, balls,
//! objects on the faces, no background, 2×2×2, thin lines and single voxels, crowded volumes on
//! both sides of torch's threaded sum); the live test generates fresh cases with another seed
//! when a Python with cellpose is available, and says that it skipped otherwise. The float32
//! case (a volume over 4e7 voxels) is checked in the core's unit tests, on its mask voxels.
//! Two 2-D planes (`plane_sparse_*`, cellpose's `masks_to_flows_gpu`) check the 2-D path for
//! masks that fill under 1/16 of their box, which are diffused pixel by pixel.

mod common;

use std::path::Path;

use cytoseg::core::flows;
use ndarray::{Array2, Array3, ArrayD};
use ndarray_npy::NpzReader;

fn check(path: &Path) -> Result<(), String> {
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    if name == "float32_sparse" {
        return Ok(());
    }
    let mut npz = NpzReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let labels: ArrayD<u32> = npz.by_name("labels").unwrap();
    let want: Array2<f64> = npz.by_name("flows").unwrap();
    let flat: Vec<u32> = labels.iter().copied().collect();
    // 2-D planes (`plane_sparse_*`: masks that fill little of their box) and volumes.
    let got = match *labels.shape() {
        [h, w] => flows::labels_to_flows_slices(&flat, h, w),
        [d, h, w] => flows::labels_to_flows_3d(&flat, d, h, w),
        _ => return Err(format!("{name}: labels of shape {:?}", labels.shape())),
    }
    .map_err(|e| format!("{name}: {e}"))?;
    let comps = labels.ndim();
    let n = flat.len();
    let mut k = 0;
    let (mut differ, mut first) = (0, None);
    for (i, &l) in flat.iter().enumerate() {
        for c in 0..comps {
            let g = got[c * n + i];
            let ok = if l == 0 {
                g.to_bits() == 0
            } else {
                g.to_bits() == want[[c, k]].to_bits()
            };
            if !ok {
                differ += 1;
                first.get_or_insert((c, i, g, if l == 0 { 0.0 } else { want[[c, k]] }));
            }
        }
        if l != 0 {
            k += 1;
        }
    }
    if differ > 0 {
        let (c, i, g, e) = first.unwrap();
        return Err(format!(
            "{name}: {differ} flow values differ; first: component {c} at voxel {i}: cytoseg {g:e}, cellpose {e:e}"
        ));
    }
    Ok(())
}

#[test]
fn fixtures_match_cellpose_bit_for_bit() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/volume_flows");
    let n = common::parity_dir(&dir, check);
    assert!(n >= 15, "only {n} fixtures");
}

#[test]
fn live_cases_match_cellpose_bit_for_bit() {
    if let Some(n) = common::live_cellpose_parity("live_volume_flows_cases.py", check) {
        eprintln!("{n} fresh 3-D label volumes: flows equal cellpose 4.2.1.1 (live)");
    }
}

#[test]
fn empty_volume_gives_zero_flows_and_bad_shapes_are_refused() {
    let got = flows::labels_to_flows_3d(&[0; 2 * 3 * 4], 2, 3, 4).unwrap();
    assert_eq!(got, vec![0.0; 3 * 2 * 3 * 4]);
    let err = flows::labels_to_flows_3d(&[1; 12], 1, 3, 4).unwrap_err();
    assert!(err.to_string().contains("single plane"), "{err}");
    let err = flows::labels_to_flows_3d(&[1; 23], 2, 3, 4).unwrap_err();
    assert!(err.to_string().contains("expected 2×3×4"), "{err}");
}

#[test]
fn label_values_only_name_masks() {
    // The same masks under sparse, huge and permuted ids give the same flows.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/volume_flows");
    let mut npz = NpzReader::new(std::fs::File::open(dir.join("balls_0.npz")).unwrap()).unwrap();
    let labels: Array3<u32> = npz.by_name("labels").unwrap();
    let (d, h, w) = labels.dim();
    let flat: Vec<u32> = labels.iter().copied().collect();
    let max = *flat.iter().max().unwrap();
    let renamed: Vec<u32> = flat
        .iter()
        .map(|&l| if l == 0 { 0 } else { u32::MAX - 3 * (max - l) })
        .collect();
    assert_eq!(
        flows::labels_to_flows_3d(&flat, d, h, w).unwrap(),
        flows::labels_to_flows_3d(&renamed, d, h, w).unwrap()
    );
}
