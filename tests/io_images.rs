//! Image input against fixtures written by tifffile / PIL (`tests/fixtures/images/
//! make_image_fixtures.py`): sample types, compressions, BigTIFF, tiles, planar and chunky
//! RGB, ImageJ hyperstacks and OME-TIFF axis orders, calibration, PNG/JPEG, broken files; and
//! label stacks written with their calibration, read back by tifffile.

mod common;

use std::path::{Path, PathBuf};

use cytoseg::core::io::image::{ImageData, read_image, read_stack};
use cytoseg::core::io::labels::{LabelStack, read_labels, write_label_stack};
use ndarray::ArrayD;
use ndarray_npy::NpzReader;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images")
}

fn samples(d: &ImageData) -> Vec<f64> {
    match d {
        ImageData::U8(v) => v.iter().map(|&x| x as f64).collect(),
        ImageData::U16(v) => v.iter().map(|&x| x as f64).collect(),
        ImageData::F32(v) => v.iter().map(|&x| x as f64).collect(),
    }
}

#[test]
fn every_fixture_reads_as_the_reference_wrote_it() {
    let dir = fixtures();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let mut npz = NpzReader::new(std::fs::File::open(dir.join("expected.npz")).unwrap()).unwrap();
    let mut checked = 0;
    for (name, m) in meta.as_object().unwrap() {
        let want: ArrayD<f64> = npz.by_name(&name.replace('.', "_")).unwrap();
        let shape = want.shape().to_vec(); // (P, H, W, C)
        let s = read_stack(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (s.planes.len(), s.height, s.width, s.channels),
            (shape[0], shape[1], shape[2], shape[3]),
            "{name}: shape"
        );
        let axes: Vec<(char, usize)> = m["axes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a[0].as_str().unwrap().chars().next().unwrap(),
                    a[1].as_u64().unwrap() as usize,
                )
            })
            .collect();
        assert_eq!(s.plane_axes, axes, "{name}: plane axes");
        assert_eq!(s.sample_type, m["sample_type"].as_str().unwrap(), "{name}");
        match m["calibration"].as_object() {
            None => assert!(
                !s.calibration.is_calibrated(),
                "{name}: {:?}",
                s.calibration
            ),
            Some(c) => {
                let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs();
                assert!(
                    close(
                        s.calibration.pixel_width,
                        c["pixel_width"].as_f64().unwrap()
                    ),
                    "{name}: {:?}",
                    s.calibration
                );
                assert!(
                    close(
                        s.calibration.pixel_height,
                        c["pixel_height"].as_f64().unwrap()
                    ),
                    "{name}: {:?}",
                    s.calibration
                );
                assert_eq!(s.calibration.unit, c["unit"].as_str().unwrap(), "{name}");
                // ImageJ's spacing= and OME's PhysicalSizeZ (converted to the xy unit).
                match c.get("z_spacing").and_then(|z| z.as_f64()) {
                    Some(z) => assert!(
                        s.calibration.z_spacing.is_some_and(|got| close(got, z)),
                        "{name}: z spacing {:?}, want {z}",
                        s.calibration.z_spacing
                    ),
                    None => assert_eq!(s.calibration.z_spacing, None, "{name}"),
                }
            }
        }
        let flat: Vec<f64> = want.iter().copied().collect();
        let per = s.height * s.width * s.channels;
        let jpeg = name.ends_with(".jpg");
        for (i, p) in s.planes.iter().enumerate() {
            let got = samples(&p.data);
            let exp = &flat[i * per..(i + 1) * per];
            for (k, (&g, &e)) in got.iter().zip(exp).enumerate() {
                // float64 and large integers become float32; JPEG decoders may differ by the
                // rounding of their inverse DCT.
                let tol = if jpeg { 2.0 } else { (e.abs() * 1e-7).max(0.0) };
                assert!(
                    (g - e).abs() <= tol,
                    "{name}: plane {i} sample {k}: got {g}, want {e}"
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} fixtures");
}

#[test]
fn broken_files_give_errors_naming_them() {
    let dir = fixtures();
    for name in [
        "broken_truncated.tif",
        "broken_garbage.tif",
        "broken_truncated.png",
    ] {
        let p = dir.join(name);
        let e = read_stack(&p).expect_err(name).to_string();
        assert!(e.contains(name), "{name}: {e}");
        assert!(
            e.contains("truncated") || e.contains("not a readable") || e.contains("unreadable"),
            "{name}: {e}"
        );
    }
    let e = read_stack(&dir.join("missing.tif"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.tif"), "{e}");
    let e = read_stack(&dir.join("expected.json"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unsupported image type"), "{e}");
    // A stack is not a 2-D image.
    let e = read_image(&dir.join("imagej_tzcyx.tif"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("6 planes") && e.contains("t=2, z=3"), "{e}");
}

#[test]
fn label_stacks_keep_calibration_and_axes_for_imagej_and_tifffile() {
    let dir = common::temp_dir("io-labels");
    let src = read_stack(&fixtures().join("imagej_tzcyx.tif")).unwrap();
    let (h, w, n) = (src.height, src.width, src.planes.len());
    let labels: Vec<u32> = (0..n * h * w).map(|i| (i % 7) as u32).collect();
    let big: Vec<u32> = (0..h * w).map(|i| 70_000 + i as u32).collect();
    let stack_path = dir.join("stack_labels.tif");
    write_label_stack(
        &stack_path,
        &LabelStack {
            labels: &labels,
            planes: n,
            height: h,
            width: w,
            plane_axes: &src.plane_axes,
            calibration: &src.calibration,
        },
        false,
    )
    .unwrap();
    let one_path = dir.join("one_labels.tif");
    write_label_stack(
        &one_path,
        &LabelStack {
            labels: &big,
            planes: 1,
            height: h,
            width: w,
            plane_axes: &[],
            calibration: &src.calibration,
        },
        false,
    )
    .unwrap();
    // Never replaced without overwrite.
    assert!(
        write_label_stack(
            &one_path,
            &LabelStack {
                labels: &big,
                planes: 1,
                height: h,
                width: w,
                plane_axes: &[],
                calibration: &src.calibration,
            },
            false,
        )
        .is_err()
    );
    // Our reader: same planes, axes and calibration.
    let back = read_stack(&stack_path).unwrap();
    assert_eq!(back.plane_axes, src.plane_axes);
    assert_eq!(back.calibration, src.calibration);
    assert_eq!(back.sample_type, "uint16");
    let got: Vec<u32> = back
        .planes
        .iter()
        .flat_map(|p| samples(&p.data))
        .map(|v| v as u32)
        .collect();
    assert_eq!(got, labels);
    let (one, oh, ow) = read_labels(&one_path).unwrap();
    assert_eq!((one, oh, ow), (big.clone(), h, w));
    // A stack is not silently read as its first plane.
    let e = read_labels(&stack_path).expect_err("stack read as one label image");
    assert!(e.to_string().contains("more than one page"), "{e}");
    assert_eq!(read_stack(&one_path).unwrap().sample_type, "uint32");

    // The reference reader: tifffile sees an ImageJ hyperstack TZYX with the unit and size.
    let Some(py) = common::reference_python(&["tifffile", "numpy"]) else {
        eprintln!("SKIPPED tifffile cross-check: no Python with tifffile");
        return;
    };
    let script = r#"
import sys, tifffile, numpy as np
for p in sys.argv[1:]:
    with tifffile.TiffFile(p) as tf:
        s = tf.series[0]
        ij = tf.imagej_metadata
        xr = tf.pages[0].tags['XResolution'].value
        a = s.asarray()
        print(s.axes, a.shape, a.dtype, ij.get('unit'), ij.get('frames'), ij.get('slices'), round(xr[1] / xr[0], 9), int(a.max()))
"#;
    let out = std::process::Command::new(py)
        .arg("-c")
        .arg(script)
        .arg(&stack_path)
        .arg(&one_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("TZYX (2, 3, {h}, {w}) uint16 micron 2 3 0.5 6"),
        "{text}"
    );
    assert_eq!(
        lines[1],
        format!(
            "YX ({h}, {w}) uint32 micron None None 0.5 {}",
            70_000 + h * w - 1
        ),
        "{text}"
    );
}
