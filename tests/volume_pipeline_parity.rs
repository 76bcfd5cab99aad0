//! Whole-pipeline parity in 3-D: cytoseg's z-stack segmentation (`Model::segment_volume`:
//! `norm3D` normalization, anisotropy resizing, the network on YX/ZY/ZX planes with the flows
//! summed, 3-D flows → labels; or per-plane labels stitched across z) against Cellpose 4.2.1.1's
//! own `_run_net` and `_compute_masks` around the same ONNX networks
//! (`tests/parity/volume_pipeline_reference.py`, fixtures from
//! `tests/parity/make_volume_pipeline_fixtures.py` on a synthetic nuclei stack).

mod common;

use std::path::{Path, PathBuf};

use cytoseg::core::io::image::read_stack;
use cytoseg::core::model::{Model, SegmentParams, Tiling, VolumeMode};
use ndarray::{Array3, ArrayD};
use ndarray_npy::NpzReader;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/volume_pipeline")
}

fn load_model(dir: &Path) -> Option<Model> {
    common::load_cpu_model(dir)
}

/// Mode, anisotropy and diameter from a fixture's name: `<model>_<3d|stitch>[_a<A>][_d<D>]`.
fn case_of(stem: &str) -> (String, VolumeMode, Option<f64>) {
    let mut parts = stem.split('_');
    let model = parts.next().unwrap().to_string();
    let mode = parts.next().unwrap();
    let (mut aniso, mut diameter) = (1.0, None);
    for p in parts {
        if let Some(a) = p.strip_prefix('a') {
            aniso = a.parse().unwrap();
        } else if let Some(d) = p.strip_prefix('d') {
            diameter = Some(d.parse().unwrap());
        }
    }
    let mode = match mode {
        "3d" => VolumeMode::Flows3d { anisotropy: aniso },
        "stitch" => VolumeMode::Stitch { threshold: 0.25 },
        m => panic!("unknown mode {m}"),
    };
    (model, mode, diameter)
}

#[test]
fn stack_segmentation_matches_cellpose_pipeline() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let models = [
        ("nuclei", root.join("models/nuclei")),
        ("blobs", root.join("tests/fixtures/models/blobs")),
    ];
    let mut loaded = Vec::new();
    for (name, dir) in &models {
        let Some(m) = load_model(dir) else {
            return;
        };
        loaded.push((*name, m));
    }
    let stack = read_stack(&fixtures().join("nuclei_stack.tif")).unwrap();
    let views: Vec<_> = stack.planes.iter().map(|p| p.view().unwrap()).collect();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "npz"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 6,
        "fixtures missing in {}",
        fixtures().display()
    );
    for case in &cases {
        let stem = case.file_stem().unwrap().to_string_lossy().into_owned();
        let (name, mode, diameter) = case_of(&stem);
        let model = &loaded.iter().find(|(n, _)| *n == name).unwrap().1;
        let mut npz = NpzReader::new(std::fs::File::open(case).unwrap()).unwrap();
        let want: Array3<u32> = npz.by_name("labels").unwrap();
        let niter: ndarray::Array0<i64> = npz.by_name("niter").unwrap();
        // The flows of y, x in 40..56 of every plane.
        let flows: Option<ArrayD<f32>> = npz.by_name("flows_window").ok();
        let mut params = SegmentParams::for_model(model);
        params.tiling = Tiling::Cellpose;
        params.diameter = diameter;
        params.keep_flows = flows.is_some();
        let seg = model.segment_volume(&views, &params, mode, None).unwrap();
        assert_eq!(seg.niter as i64, niter.into_scalar(), "{stem}: niter");
        if let Some(want_flows) = flows {
            let got = seg.flows.as_ref().unwrap();
            let (d, h, w) = (seg.planes, seg.height, seg.width);
            let mut err = 0f32;
            for (idx, &b) in want_flows.indexed_iter() {
                // 3-D mode (4, Z, 16, 16); stitching (Z, 3, 16, 16): the same flat layout.
                let (i, j) = (idx[0], idx[1]);
                let (y, x) = (idx[2] + 40, idx[3] + 40);
                let outer = if want_flows.shape()[0] == 4 {
                    i * d + j
                } else {
                    i * 3 + j
                };
                err = err.max((got[(outer * h + y) * w + x] - b).abs());
            }
            let scale = want_flows.iter().fold(0f32, |m, v| m.max(v.abs()));
            let sh = want_flows.shape();
            assert_eq!(got.len(), sh[0] * sh[1] * h * w, "{stem}: flows size");
            assert!(
                err <= 1e-5 * scale,
                "{stem}: flows differ by {err} (scale {scale})"
            );
        }
        assert_eq!(
            (seg.planes, seg.height, seg.width),
            want.dim(),
            "{stem}: shape"
        );
        let diff = seg
            .labels
            .iter()
            .zip(want.iter())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            diff,
            0,
            "{stem}: {diff} voxels differ ({} vs {} objects)",
            seg.count,
            want.iter().max().unwrap()
        );
        assert!(
            seg.count > 0,
            "{stem}: no objects, the comparison shows nothing"
        );
        eprintln!("{stem}: {} objects equal Cellpose's", seg.count);
    }
}
