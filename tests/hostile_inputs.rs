//! Files whose headers claim absurd sizes (`tests/fixtures/hostile/`, written by
//! `make_hostile.py`, and inputs found by the fuzz targets in `fuzz/`): every reader answers
//! with an error that names the file and the size, through the library and the CLI, instead of
//! allocating what the header claims (which aborted the process, or Fiji and napari with it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cytoseg::core::error::Error;
use cytoseg::core::io::image::{decoded_size_hint, read_image, read_stack};
use cytoseg::core::io::labels::read_labels;
use cytoseg::core::io::npy;

fn hostile(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hostile")
        .join(name)
}

/// Asserts that `e` names the file and contains every one of `parts`.
fn says(e: &Error, path: &Path, parts: &[&str]) {
    let msg = e.to_string();
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(msg.contains(name), "{msg:?} does not name {name}");
    for p in parts {
        assert!(msg.contains(p), "{msg:?} does not say {p:?}");
    }
}

const HUGE_TIFF: &str = "huge_200000x200000_uint16.tif";

#[test]
fn huge_tiff_header_is_an_error_naming_file_and_size() {
    let p = hostile(HUGE_TIFF);
    assert!(std::fs::metadata(&p).unwrap().len() < 200);
    for e in [read_stack(&p).unwrap_err(), read_image(&p).unwrap_err()] {
        assert!(matches!(e, Error::TooLarge(_)), "{e}");
        says(
            &e,
            &p,
            &["200000×200000", "16 bits", "80,000,000,000 bytes", "limit"],
        );
    }
    // As labels: the decoded page and its uint32 labels.
    let e = read_labels(&p).unwrap_err();
    assert!(matches!(e, Error::TooLarge(_)), "{e}");
    says(
        &e,
        &p,
        &[
            "200000×200000",
            "as labels",
            "240,000,000,000 bytes",
            "limit",
        ],
    );
    // The cheap header estimate used by batch scheduling does not overflow either.
    let hint = decoded_size_hint(&p).unwrap();
    assert_eq!(hint.bytes, 80_000_000_000);
}

#[test]
fn tiff_tag_claiming_terabytes_is_an_error() {
    let p = hostile("bigtiff_tag_count_2e40.tif");
    for e in [read_stack(&p).unwrap_err(), read_labels(&p).unwrap_err()] {
        says(&e, &p, &["limits", "tag value"]);
    }
}

#[test]
fn npy_headers_claiming_terabytes_are_errors() {
    let p = hostile("npy_1e6x1e6_float32.npy");
    for e in [
        read_stack(&p).unwrap_err(),
        read_labels(&p).unwrap_err(),
        npy::read_f32(&p, &[None, None]).unwrap_err(),
        npy::check_header(&p).unwrap_err(),
    ] {
        assert!(matches!(e, Error::TooLarge(_)), "{e}");
        says(&e, &p, &["(1000000, 1000000)", "4,000,000,000,000 bytes"]);
    }
    let p = hostile("npy_shape_overflow.npy");
    for e in [read_stack(&p).unwrap_err(), read_labels(&p).unwrap_err()] {
        assert!(matches!(e, Error::TooLarge(_)), "{e}");
        says(&e, &p, &["(4294967296, 4294967296, 16)", "2^63"]);
    }
    let p = hostile("npy_header_len_4g.npy");
    for e in [read_stack(&p).unwrap_err(), read_labels(&p).unwrap_err()] {
        says(
            &e,
            &p,
            &["header claims 4294967280 bytes", "the file has 130 bytes"],
        );
    }
    // Fuzz finding: an empty array (one axis 0) whose other axes multiply past 2^63 made
    // ndarray panic inside the .npy reader.
    let p = hostile("npy_empty_axis_overflow.npy");
    for e in [
        read_stack(&p).unwrap_err(),
        read_labels(&p).unwrap_err(),
        npy::read_f32(&p, &[None, None]).unwrap_err(),
    ] {
        says(&e, &p, &["multiply past 2^63"]);
    }
    let p = hostile("npy_truncated_64x64_uint16.npy");
    for e in [read_stack(&p).unwrap_err(), read_labels(&p).unwrap_err()] {
        says(
            &e,
            &p,
            &["truncated", "(64, 64)", "8,192 bytes", "100 bytes"],
        );
    }
}

#[test]
fn png_header_claiming_terabytes_is_an_error() {
    let p = hostile("png_1e6x1e6_rgba16.png");
    for e in [read_stack(&p).unwrap_err(), read_labels(&p).unwrap_err()] {
        assert!(matches!(e, Error::TooLarge(_)), "{e}");
        says(&e, &p, &["1000000×1000000", "bytes", "limit"]);
    }
}

/// Every committed input that once crashed a fuzz target reads as an error (or an image),
/// never a panic or an abort.
#[test]
fn fuzz_findings_read_without_panicking() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "py") {
            continue;
        }
        let _ = read_stack(&p);
        let _ = read_labels(&p);
        let _ = decoded_size_hint(&p);
        n += 1;
    }
    assert!(n >= 7, "{n} files");
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(common::cytoseg_exe())
        .args(args)
        .output()
        .unwrap()
}

fn assert_clean_failure(out: &std::process::Output, parts: &[&str]) {
    use std::os::unix::process::ExitStatusExt;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.signal().is_none(),
        "killed by signal {:?}: {err}",
        out.status.signal()
    );
    assert!(!out.status.success(), "succeeded: {err}");
    for p in parts {
        assert!(err.contains(p), "stderr {err:?} does not say {p:?}");
    }
}

#[test]
fn cli_measure_refuses_the_huge_tiff_without_aborting() {
    let dir = std::env::temp_dir().join(format!("cytoseg-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = hostile(HUGE_TIFF);
    let csv = dir.join("x.csv");
    // As labels.
    let out = cli(&[
        "measure",
        "--labels",
        p.to_str().unwrap(),
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert_clean_failure(
        &out,
        &[HUGE_TIFF, "200000×200000", "240,000,000,000 bytes", "limit"],
    );
    // As the intensity image beside small, valid labels.
    let labels = dir.join("labels.tif");
    cytoseg::core::io::labels::write_labels(&labels, &[0, 1, 1, 0], 2, 2, true).unwrap();
    let out = cli(&[
        "measure",
        "--labels",
        labels.to_str().unwrap(),
        "--image",
        p.to_str().unwrap(),
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert_clean_failure(&out, &[HUGE_TIFF, "80,000,000,000 bytes", "limit"]);
    assert!(!csv.exists());
    // The limit is adjustable: a small one refuses a small file with the same message.
    let out = Command::new(common::cytoseg_exe())
        .args([
            "measure",
            "--labels",
            labels.to_str().unwrap(),
            "--out",
            csv.to_str().unwrap(),
        ])
        .env("CYTOSEG_MAX_IMAGE_BYTES", "8")
        .output()
        .unwrap();
    assert_clean_failure(&out, &["labels.tif", "over the limit of 8 bytes"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cli_stitch_refuses_hostile_label_stacks_without_aborting() {
    let dir = common::temp_dir("hostile-stitch");
    let out_path = dir.join("out.tif");
    let stitch = |p: &Path| {
        cli(&[
            "stitch",
            "--labels",
            p.to_str().unwrap(),
            "--out",
            out_path.to_str().unwrap(),
        ])
    };
    assert_clean_failure(
        &stitch(&hostile(HUGE_TIFF)),
        &[HUGE_TIFF, "200000×200000", "limit"],
    );
    for name in [
        "npy_1e6x1e6_float32.npy",
        "npy_shape_overflow.npy",
        "npy_truncated_64x64_uint16.npy",
        "npy_header_len_4g.npy",
        "bigtiff_tag_count_2e40.tif",
    ] {
        assert_clean_failure(&stitch(&hostile(name)), &[name]);
    }
    // A multi-page TIFF whose pages differ in size is named as such.
    let bad = dir.join("mixed.tif");
    {
        use tiff::encoder::{TiffEncoder, colortype::Gray16};
        let mut enc = TiffEncoder::new(std::fs::File::create(&bad).unwrap()).unwrap();
        enc.write_image::<Gray16>(4, 4, &[1u16; 16]).unwrap();
        enc.write_image::<Gray16>(3, 4, &[1u16; 12]).unwrap();
    }
    assert_clean_failure(&stitch(&bad), &["mixed.tif", "page 2 is 3×4"]);
    assert!(!out_path.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cli_segment_refuses_the_huge_tiff_without_aborting() {
    // `segment` loads the model before reading images: with no ONNX Runtime the model fails
    // first, which is a clean error too; with one, the image is refused.
    let dir = std::env::temp_dir().join(format!("cytoseg-hostile-seg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let p = hostile(HUGE_TIFF);
    let mut c = Command::new(common::cytoseg_exe());
    c.args([
        "segment",
        p.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ])
    .args(["--device", "cpu"]);
    let ort = common::ort_library();
    if let Some(lib) = &ort {
        c.arg("--ort-lib").arg(lib);
    } else {
        eprintln!("no ONNX Runtime: checking only that segment fails cleanly");
    }
    let have_ort = ort.is_some();
    let out = c.output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.signal().is_none(), "signal: {err}");
    assert!(!out.status.success(), "{err}");
    if have_ort {
        assert!(
            err.contains(HUGE_TIFF) && err.contains("200000×200000"),
            "{err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Found by `fuzz/ffi_buffers` (seed `fuzz/seeds/ffi_buffers/labels_to_flows_max_label`): a
/// 2×2 label image holding 4294967295 made `cytoseg_labels_to_flows` size a per-label table by
/// the largest label (~170 GB) and abort. Label values only name masks: the flows equal those
/// of the same masks numbered 1..k.
#[test]
fn labels_to_flows_with_huge_label_values_matches_small_ones() {
    use cytoseg::core::flows::labels_to_flows_slices;
    use cytoseg::ffi::{cytoseg_labels_to_flows, cytoseg_status};
    let (h, w) = (6, 7);
    let small: Vec<u32> = (0..h * w)
        .map(|i| match (i / w, i % w) {
            (1..=3, 1..=3) => 1,
            (2..=4, 4..=6) => 2,
            _ => 0,
        })
        .collect();
    let huge: Vec<u32> = small
        .iter()
        .map(|&l| match l {
            1 => 4_000_000_000,
            2 => u32::MAX,
            _ => 0,
        })
        .collect();
    let want = labels_to_flows_slices(&small, h, w).unwrap();
    assert!(want.iter().any(|&v| v != 0.0));
    assert_eq!(labels_to_flows_slices(&huge, h, w).unwrap(), want);
    let mut flows = vec![0f64; 2 * h * w];
    let status =
        cytoseg_labels_to_flows(huge.as_ptr(), h * w, h, w, flows.as_mut_ptr(), flows.len());
    assert_eq!(status as i32, cytoseg_status::Ok as i32);
    assert_eq!(flows, want);
    // The fuzzer's input: 2×2, three pixels of 4294967295.
    let tiny = [4278255873u32, u32::MAX, u32::MAX, u32::MAX];
    let mut flows = vec![0f64; 8];
    let status = cytoseg_labels_to_flows(tiny.as_ptr(), 4, 2, 2, flows.as_mut_ptr(), 8);
    assert_eq!(status as i32, cytoseg_status::Ok as i32);
}

#[test]
fn model_manifest_sizes_are_bounded() {
    use cytoseg::core::model::manifest::Manifest;
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/nuclei/manifest.json");
    let text = std::fs::read_to_string(&good).unwrap();
    Manifest::parse(&good, text.as_bytes()).unwrap();
    // Absurd tiling from a manifest would size the network input.
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["tiling"]["tile_size"] = serde_json::json!(1u64 << 40);
    let e = Manifest::parse(&good, v.to_string().as_bytes()).unwrap_err();
    says(&e, &good, &["tiling.tile_size 1099511627776"]);
    v["tiling"]["tile_size"] = serde_json::json!(256);
    v["tiling"]["overlap"] = serde_json::json!(1e300);
    let e = Manifest::parse(&good, v.to_string().as_bytes()).unwrap_err();
    says(&e, &good, &["tiling.overlap"]);
    // A manifest file over 1 MiB is refused before it is read.
    let dir = std::env::temp_dir().join(format!("cytoseg-hostile-man-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("manifest.json");
    std::fs::write(&big, vec![b' '; (1 << 20) + 1]).unwrap();
    let e = Manifest::read(&big).unwrap_err();
    says(
        &e,
        &big,
        &[
            "model manifest of 1,048,577 bytes",
            "limit of 1,048,576 bytes",
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// C callers passing sizes whose products overflow get an error status, not an abort, and
/// the buffers are not touched.
#[test]
fn c_entry_points_refuse_overflowing_sizes() {
    use cytoseg::ffi::*;
    let one = [1u32; 4];
    let mut table: *mut cytoseg_table = std::ptr::null_mut();
    for (w, h) in [(usize::MAX, 2), (1usize << 32, 1 << 32), (1 << 62, 1)] {
        let s = cytoseg_measure(
            one.as_ptr(),
            w,
            h,
            std::ptr::null(),
            1,
            1,
            w,
            std::ptr::null(),
            &mut table,
        );
        assert_eq!(s as i32, cytoseg_status::TooLarge as i32, "{w}×{h}");
        assert!(table.is_null());
    }
    let f = [0f32; 8];
    let mut out = [0u32; 4];
    for (h, w) in [(usize::MAX, 2), (1usize << 32, 1 << 32), (1 << 20, 1 << 20)] {
        let s = cytoseg_flows_to_labels(
            f.as_ptr(),
            8,
            f.as_ptr(),
            4,
            h,
            w,
            std::ptr::null(),
            out.as_mut_ptr(),
            4,
            std::ptr::null_mut(),
        );
        assert_eq!(s as i32, cytoseg_status::TooLarge as i32, "{h}×{w}");
        let mut flows = [0f64; 8];
        let s = cytoseg_labels_to_flows(one.as_ptr(), 4, h, w, flows.as_mut_ptr(), 8);
        assert_eq!(s as i32, cytoseg_status::TooLarge as i32, "{h}×{w}");
    }
}
