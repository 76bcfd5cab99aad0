//! Whole-pipeline parity: cytoseg's segmentation (normalization, resizing, tiling and blending,
//! flows → labels) against Cellpose 4.2.1.1's own functions around the same ONNX network
//! (`tests/parity/pipeline_reference.py`). Fixtures hold the reference labels for the DSB2018
//! sample images (read from ../shared at test time) and the reference flows for one of them.

mod common;

use std::path::{Path, PathBuf};

use cytoseg::core::io::image::read_image;
use cytoseg::core::metrics::cellpose::average_precision;
use cytoseg::core::model::{Device, LoadOptions, Model, SegmentParams, Tiling};
use ndarray::{Array1, Array2, Array3};
use ndarray_npy::NpzReader;

fn load_model(dir: &Path) -> Option<Model> {
    common::load_cpu_model(dir)
}

/// The image of a fixture named `<image>[_d<diameter>][_m<min_size>]`.
fn image_path(stem: &str) -> Option<PathBuf> {
    let base = stem.split("_d").next().unwrap().split("_m").next().unwrap();
    if base == "nuclei_example" {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/examples/nuclei_example.tif");
        return p.exists().then_some(p);
    }
    common::shared_data().map(|d| d.join("sample/images").join(format!("{base}.tif")))
}

#[test]
fn blobs_model_matches_cellpose_pipeline() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The test network's flows come from blurring the padded input, so they depend on where
    // tiles end: its fast-tiled labels are only reported.
    check_model(&root.join("tests/fixtures/models/blobs"), "blobs", None);
}

#[test]
fn bundled_nuclei_model_matches_cellpose_pipeline() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    check_model(
        &root.join("models/nuclei"),
        "nuclei",
        Some(FAST_TILING_MIN_AP),
    );
}

/// Segments every fixture image of `fixtures` with `model_dir` in Cellpose's tiling (labels and
/// flows must equal the reference's) and in fast tiling (AP@0.5 against those labels at least
/// `fast_min_ap`, when given).
fn check_model(model_dir: &Path, fixtures: &str, fast_min_ap: Option<f64>) {
    let Some(model) = load_model(model_dir) else {
        return;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pipeline")
        .join(fixtures);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "npz"))
        .collect();
    cases.sort();
    let (mut compared, mut flows_checked) = (0, 0);
    // Tiling::Fast against these labels: matched objects (IoU >= 0.5) and objects in all.
    let (mut fast_tp, mut fast_all) = (0.0f64, 0.0f64);
    for case in cases {
        let stem = case.file_stem().unwrap().to_string_lossy().into_owned();
        let Some(img_path) = image_path(&stem) else {
            eprintln!("SKIPPED {stem}: image not available (../shared/data/dsb2018-fluo absent)");
            continue;
        };
        let mut npz = NpzReader::new(std::fs::File::open(&case).unwrap()).unwrap();
        let want: Array2<u32> = npz.by_name("labels").unwrap();
        let niter: ndarray::Array0<i64> = npz.by_name("niter").unwrap();
        let flows: Option<Array3<f32>> = npz.by_name("flows").ok();
        let image = read_image(&img_path).unwrap();
        let mut params = SegmentParams::for_model(&model);
        params.tiling = Tiling::Cellpose;
        params.keep_flows = true;
        if let Some(d) = stem.split("_d").nth(1) {
            params.diameter = Some(d.split("_m").next().unwrap().parse().unwrap());
        }
        if let Some(m) = stem.split("_m").nth(1) {
            params.mask.min_size = m.parse().unwrap();
        }
        let seg = model
            .segment(&image.view().unwrap(), &params, None)
            .unwrap();
        assert_eq!(seg.niter as i64, niter.into_scalar(), "{stem}: niter");
        if let Some(want_flows) = flows {
            let got = seg.flows.as_ref().unwrap();
            let scale = want_flows.iter().fold(0f32, |m, v| m.max(v.abs()));
            let got: Array1<f32> = got.concat().into();
            let err = got
                .iter()
                .zip(want_flows.iter())
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                err <= 1e-5 * scale,
                "{stem}: flows differ by {err} (scale {scale})"
            );
            flows_checked += 1;
        }
        let got = Array2::from_shape_vec((seg.height, seg.width), seg.labels).unwrap();
        let diff = got.iter().zip(want.iter()).filter(|(a, b)| a != b).count();
        params.tiling = Tiling::Fast;
        params.keep_flows = false;
        let fast = model
            .segment(&image.view().unwrap(), &params, None)
            .unwrap();
        let ap = average_precision(want.as_slice().unwrap(), &fast.labels, &[0.5]).unwrap();
        fast_tp += f64::from(ap.tp[0]);
        fast_all += f64::from(ap.tp[0] + ap.fp[0] + ap.fn_[0]);
        assert_eq!(
            diff,
            0,
            "{stem}: {diff} pixels differ ({} vs {} objects)",
            seg.count,
            want.iter().max().unwrap()
        );
        compared += 1;
    }
    eprintln!(
        "{fixtures}: {compared} images equal the Cellpose-pipeline reference ({flows_checked} with flows)"
    );
    // Fast tiling sees each image whole (or in few large tiles): the masks are nearly
    // Cellpose's, differing at a few object borders where the tiles' blending did.
    if fast_all > 0.0 {
        let ap = fast_tp / fast_all;
        eprintln!("{fixtures}: fast tiling vs Cellpose's tiling, AP@0.5 {ap:.4}");
        if let Some(min) = fast_min_ap {
            assert!(
                ap >= min,
                "{fixtures}: fast tiling AP@0.5 {ap:.4} vs Cellpose's tiles"
            );
        }
    }
}

/// Lowest AP@0.5 of [`Tiling::Fast`]'s labels scored against [`Tiling::Cellpose`]'s.
/// (1.0 measured on the 12 nuclei fixtures.)
const FAST_TILING_MIN_AP: f64 = 0.97;

/// With `min_size` 0 Cellpose's `eval` turns the size filter off but still fills holes
/// (`resize_and_compute_masks` always calls `fill_holes_and_remove_small_masks`; the `_m0`
/// fixtures above hold its labels). Checked here on all DSB2018 sample images: the labels are
/// `compute_masks` (no filling) on the segmentation's own flows, holes filled, and at least one
/// image has a hole to fill (so that the filling shows).
#[test]
fn min_size_zero_fills_holes_as_cellpose_eval() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/nuclei");
    let Some(model) = load_model(&dir) else {
        return;
    };
    let Some(data) = common::shared_data() else {
        eprintln!("SKIPPED: ../shared/data/dsb2018-fluo absent");
        return;
    };
    let mut with_holes = 0;
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("sample/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in &files {
        let img = read_image(path).unwrap();
        let mut p = SegmentParams::for_model(&model);
        p.mask.min_size = 0;
        p.keep_flows = true;
        let seg = model.segment(&img.view().unwrap(), &p, None).unwrap();
        let [dy, dx, cellprob] = seg.flows.as_ref().unwrap();
        let flows = cytoseg::core::flows::FlowsRef {
            dy,
            dx,
            cellprob,
            height: seg.height,
            width: seg.width,
        };
        let mut mask = p.mask;
        mask.niter = seg.niter;
        let unfilled = cytoseg::core::flows::compute_masks_slices(&flows, &mask).unwrap();
        let mut filled = unfilled.clone();
        cytoseg::core::flows::fill_holes_and_remove_small_masks(
            &mut filled,
            seg.height,
            seg.width,
            0,
        )
        .unwrap();
        assert!(
            seg.labels == filled,
            "{}: labels differ from compute_masks with holes filled",
            path.display()
        );
        with_holes += usize::from(filled != unfilled);
    }
    eprintln!(
        "{with_holes} of {} images have masks with holes, filled",
        files.len()
    );
    assert!(
        with_holes > 0,
        "no sample image has a mask with a hole: the check shows nothing"
    );
}

#[test]
fn model_loading_errors_are_clear() {
    let Some(lib) = common::ort_library() else {
        eprintln!("SKIPPED: no ONNX Runtime library");
        return;
    };
    let opts = LoadOptions {
        device: Device::Cpu,
        ort_search: vec![("test".into(), lib)],
        model_dirs: vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("models")],
        threads: 0,
    };
    let err = Model::load("no-such-model", &opts).unwrap_err().to_string();
    assert!(err.contains("no model named"), "{err}");
    // A package whose ONNX file does not match its manifest's hash.
    let tmp = common::temp_dir("bad-model");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/blobs");
    std::fs::copy(src.join("manifest.json"), tmp.join("manifest.json")).unwrap();
    let mut bytes = std::fs::read(src.join("model.onnx")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(tmp.join("model.onnx"), &bytes).unwrap();
    let err = Model::load(tmp.to_str().unwrap(), &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("SHA-256"), "{err}");
    // Missing ONNX file.
    std::fs::remove_file(tmp.join("model.onnx")).unwrap();
    let err = Model::load(tmp.to_str().unwrap(), &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.onnx"), "{err}");
    // A device this ONNX Runtime lacks is an error, not a silent CPU run.
    let cuda = LoadOptions {
        device: Device::Cuda,
        ..opts.clone()
    };
    let rt = cytoseg::core::model::runtime::runtime(&opts.ort_search).unwrap();
    if !Device::Cuda.is_available(rt) {
        let err = Model::load(src.to_str().unwrap(), &cuda)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not available"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
