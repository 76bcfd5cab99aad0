//! Parity of the stitching mode (2-D labels per plane → 3-D labels) with cellpose 4.2.1.1:
//! `utils.stitch3D` then `utils.fill_holes_and_remove_small_masks` on the volume.
//!
//! The committed fixtures in `tests/fixtures/stitch/` were labelled by the real cellpose
//! (`tests/parity/make_stitch_fixtures.py`: real DSB2018 label maps drifting and deforming
//! through the planes, balls and hollow shells, ties, empty planes, label gaps); the live test
//! generates fresh cases with another seed when a Python with cellpose is available, and says
//! that it skipped otherwise.

mod common;

use std::path::Path;

use cytoseg::core::flows;
use ndarray::{Array3, ArrayD};
use ndarray_npy::NpzReader;

fn check(path: &Path) -> Result<(), String> {
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let mut npz = NpzReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let planes: Array3<u32> = npz.by_name("planes").unwrap();
    let expected: Array3<u32> = npz.by_name("expected").unwrap();
    let threshold: ArrayD<f64> = npz.by_name("threshold").unwrap();
    let min_size: ArrayD<i64> = npz.by_name("min_size").unwrap();
    let (d, h, w) = planes.dim();
    let mut got: Vec<u32> = planes.iter().copied().collect();
    flows::stitch_planes(
        &mut got,
        d,
        h,
        w,
        threshold.iter().copied().next().unwrap(),
        min_size.iter().copied().next().unwrap(),
    )
    .map_err(|e| format!("{name}: error {e}"))?;
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

fn run_dir(dir: &Path) -> usize {
    common::parity_dir(dir, check)
}

#[test]
fn fixtures_match_cellpose_exactly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stitch");
    let n = run_dir(&dir);
    eprintln!("{n} committed stitching cases equal cellpose 4.2.1.1");
}

#[test]
fn live_cases_match_cellpose_exactly() {
    if let Some(n) = common::live_cellpose_parity("live_stitch_cases.py", check) {
        eprintln!("{n} fresh stitching cases equal cellpose 4.2.1.1 (live)");
    }
}

#[test]
fn bad_volumes_are_refused() {
    let mut l = vec![0u32; 10];
    let e = flows::stitch_planes(&mut l, 2, 2, 3, 0.25, 15)
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected 2×2×3 = 12"), "{e}");
    let mut l = vec![0u32; 12];
    for t in [0.0, -1.0, f64::NAN] {
        let e = flows::stitch_planes(&mut l, 2, 2, 3, t, 15)
            .unwrap_err()
            .to_string();
        assert!(e.contains("stitch threshold"), "{e}");
    }
}

#[test]
fn the_command_line_stitches_a_tiff_stack_as_cellpose() {
    use cytoseg::core::io::labels::{LabelStack, read_label_stack, write_label_stack};
    use cytoseg::core::measure::Calibration;
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stitch/dsb_0_t0.25_m15.npz");
    let mut npz = NpzReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let planes: Array3<u32> = npz.by_name("planes").unwrap();
    let expected: Array3<u32> = npz.by_name("expected").unwrap();
    let (d, h, w) = planes.dim();
    let dir = common::temp_dir("stitch-cli");
    let input = dir.join("planes.tif");
    let flat: Vec<u32> = planes.iter().copied().collect();
    write_label_stack(
        &input,
        &LabelStack {
            labels: &flat,
            planes: d,
            height: h,
            width: w,
            plane_axes: &[('z', d)],
            calibration: &Calibration::default(),
        },
        false,
    )
    .unwrap();
    let out = dir.join("stitched.tif");
    let stitch = |extra: &[&str]| {
        let mut c = std::process::Command::new(common::cytoseg_exe());
        c.args(["stitch", "--labels"])
            .arg(&input)
            .arg("--out")
            .arg(&out);
        c.args(["--stitch-threshold", "0.25", "--min-size", "15"])
            .args(extra);
        common::run(c)
    };
    assert!(stitch(&[]).status.success());
    let (got, pd, ph, pw) = read_label_stack(&out).unwrap();
    assert_eq!((pd, ph, pw), (d, h, w));
    assert!(
        got.iter().eq(expected.iter()),
        "the command's labels differ from cellpose's"
    );
    // OUT is not replaced without --overwrite; one plane is not a stack.
    let o = stitch(&[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    assert!(stitch(&["--overwrite"]).status.success());
    let one = dir.join("one.npy");
    ndarray_npy::write_npy(&one, &planes.index_axis(ndarray::Axis(0), 0).to_owned()).unwrap();
    let mut c = std::process::Command::new(common::cytoseg_exe());
    c.args(["stitch", "--labels"])
        .arg(&one)
        .arg("--out")
        .arg(dir.join("x.tif"));
    let o = common::run(c);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds one plane"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Cellpose's whole-stack `normalize99` (stitching and 3-D modes normalize the stack at once,
/// downsampling past 224³ values), bit for bit, on fresh volumes when cellpose is installed.
#[test]
fn whole_stack_normalization_matches_cellpose_live() {
    use cytoseg::core::model::preprocess::normalize99_volume;
    let n = common::live_cellpose_parity("live_norm_cases.py", |path| {
        let mut npz = NpzReader::new(std::fs::File::open(path).unwrap()).unwrap();
        let x: Array3<f32> = npz.by_name("x").unwrap();
        let want: Array3<f32> = npz.by_name("expected").unwrap();
        let (d, h, w) = x.dim();
        let mut got: Vec<f32> = x.iter().copied().collect();
        assert!(normalize99_volume(&mut got, d, h, w, 1.0, 99.0));
        let diff = got
            .iter()
            .zip(want.iter())
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        if diff > 0 {
            return Err(format!("{}: {diff} values differ", path.display()));
        }
        Ok(())
    });
    if let Some(n) = n {
        eprintln!("{n} stacks normalized as cellpose 4.2.1.1 (live)");
    }
}
