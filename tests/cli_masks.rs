//! `cytoseg masks` end to end: parity on a committed fixture, and clear errors on bad files.

mod common;

use std::path::Path;
use std::process::Command;

use ndarray::{Array2, Array3};
use ndarray_npy::{NpzReader, read_npy, write_npy};

fn cytoseg() -> Command {
    Command::new(common::cytoseg_exe())
}

fn fixture() -> (Array3<f32>, Array2<f32>, Array2<u32>) {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flows/border_objects_v0.npz");
    let mut npz = NpzReader::new(std::fs::File::open(p).unwrap()).unwrap();
    (
        npz.by_name("dp").unwrap(),
        npz.by_name("cellprob").unwrap(),
        npz.by_name("expected").unwrap(),
    )
}

#[test]
fn masks_reproduces_cellpose_and_writes_npy_and_tiff() {
    let dir = common::temp_dir("cli-masks");
    let (dp, cp, expected) = fixture();
    write_npy(dir.join("dp.npy"), &dp).unwrap();
    write_npy(dir.join("cp.npy"), &cp).unwrap();
    for out in ["labels.npy", "labels.tif"] {
        let st = cytoseg()
            .args(["masks", "--dp"])
            .arg(dir.join("dp.npy"))
            .arg("--cellprob")
            .arg(dir.join("cp.npy"))
            .arg("--out")
            .arg(dir.join(out))
            .status()
            .unwrap();
        assert!(st.success());
    }
    let got: Array2<u16> = read_npy(dir.join("labels.npy")).unwrap();
    assert_eq!(got.mapv(u32::from), expected);
    let tif = std::fs::read(dir.join("labels.tif")).unwrap();
    assert!(tif.starts_with(b"II*\0") || tif.starts_with(b"MM\0*"));

    // An existing output is not overwritten without --overwrite.
    let before = std::fs::read(dir.join("labels.npy")).unwrap();
    let o = cytoseg()
        .args(["masks", "--dp"])
        .arg(dir.join("dp.npy"))
        .arg("--cellprob")
        .arg(dir.join("cp.npy"))
        .arg("--out")
        .arg(dir.join("labels.npy"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    assert_eq!(std::fs::read(dir.join("labels.npy")).unwrap(), before);
    let _ = std::fs::remove_dir_all(&dir);
}

fn expect_error(dir: &Path, dp: &str, cp: &str, needle: &str) {
    let o = cytoseg()
        .args(["masks", "--dp"])
        .arg(dir.join(dp))
        .arg("--cellprob")
        .arg(dir.join(cp))
        .arg("--out")
        .arg(dir.join("out.npy"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{dp} {cp} should fail");
    assert!(err.contains(needle), "stderr {err:?} lacks {needle:?}");
    assert!(!dir.join("out.npy").exists(), "no output on failure");
}

#[test]
fn masks_rejects_bad_input_clearly() {
    let dir = common::temp_dir("cli-masks-bad");
    let (dp, cp, _) = fixture();
    write_npy(dir.join("dp.npy"), &dp).unwrap();
    write_npy(dir.join("cp.npy"), &cp).unwrap();
    write_npy(dir.join("dp64.npy"), &dp.mapv(f64::from)).unwrap();
    write_npy(dir.join("cp_small.npy"), &Array2::<f32>::zeros((3, 3))).unwrap();
    write_npy(dir.join("dp3.npy"), &Array3::<f32>::zeros((3, 4, 4))).unwrap();
    let mut nan = cp.clone();
    nan[[3, 3]] = f32::NAN;
    write_npy(dir.join("cp_nan.npy"), &nan).unwrap();
    let bytes = std::fs::read(dir.join("dp.npy")).unwrap();
    std::fs::write(dir.join("dp_trunc.npy"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(dir.join("garbage.npy"), b"not an npy file").unwrap();

    expect_error(&dir, "missing.npy", "cp.npy", "missing.npy");
    expect_error(&dir, "dp64.npy", "cp.npy", "expected float32");
    expect_error(&dir, "dp.npy", "cp_small.npy", "expected (64, 80)");
    expect_error(&dir, "dp3.npy", "cp.npy", "expected (2, N, N)");
    expect_error(&dir, "dp.npy", "cp_nan.npy", "NaN");
    expect_error(&dir, "dp_trunc.npy", "cp.npy", "dp_trunc.npy");
    expect_error(&dir, "garbage.npy", "cp.npy", "garbage.npy");
    let _ = std::fs::remove_dir_all(&dir);
}

/// 3-D flows `(3, Z, Y, X)` give a 3-D label stack equal to cellpose's `compute_masks(...,
/// do_3D=True)`, as .npy and as a TIFF stack; a cellprob of another shape and a one-plane
/// volume are clear errors.
#[test]
fn masks_takes_3d_flows_as_cellpose() {
    use cytoseg::core::io::labels::read_label_stack;
    use ndarray::Array4;
    let dir = common::temp_dir("cli-masks-3d");
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/volume/balls_0_v0.npz");
    let mut npz = NpzReader::new(std::fs::File::open(p).unwrap()).unwrap();
    let dp: Array4<f32> = npz.by_name("dp").unwrap();
    let cp: Array3<f32> = npz.by_name("cellprob").unwrap();
    let expected: Array3<u32> = npz.by_name("expected").unwrap();
    assert!(expected.iter().any(|&l| l != 0));
    write_npy(dir.join("dp.npy"), &dp).unwrap();
    write_npy(dir.join("cp.npy"), &cp).unwrap();
    let run = |dp: &str, cp: &str, out: &str| {
        let mut c = cytoseg();
        c.args(["masks", "--dp"])
            .arg(dir.join(dp))
            .arg("--cellprob")
            .arg(dir.join(cp))
            .arg("--out")
            .arg(dir.join(out));
        common::run(c)
    };
    for out in ["labels.npy", "labels.tif"] {
        let o = run("dp.npy", "cp.npy", out);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (got, d, h, w) = read_label_stack(&dir.join(out)).unwrap();
        assert_eq!((d, h, w), expected.dim());
        assert!(
            got.iter().eq(expected.iter()),
            "{out} differs from cellpose"
        );
    }
    write_npy(
        dir.join("cp2d.npy"),
        &cp.index_axis(ndarray::Axis(0), 0).to_owned(),
    )
    .unwrap();
    let o = run("dp.npy", "cp2d.npy", "bad.npy");
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("cp2d.npy") && e.contains("expected"), "{e}");
    let (_, h, w) = cp.dim();
    write_npy(dir.join("dp1.npy"), &Array4::<f32>::zeros((3, 1, h, w))).unwrap();
    write_npy(dir.join("cp1.npy"), &Array3::<f32>::zeros((1, h, w))).unwrap();
    let o = run("dp1.npy", "cp1.npy", "bad.npy");
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("single plane is a 2-D image"), "{e}");
    assert!(!dir.join("bad.npy").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
