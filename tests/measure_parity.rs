//! Parity of per-object measurements with `skimage.measure.regionprops_table` (scikit-image
//! 0.26).
//!
//! The committed fixtures in `tests/fixtures/measure/` (real DSB2018 label maps and images,
//! calibrated and multi-channel variants, hand-made edge cases) were measured by skimage itself
//! (`tests/parity/make_measure_fixtures.py`). The live test generates fresh cases with another
//! seed when a Python with scikit-image 0.26 and the shared data are available, and says that it
//! skipped otherwise.
//!
//! Tolerance: every value within 1e-6 relative; values whose magnitude is below 1e-3 (near-zero
//! orientations, minor axes of lines, eccentricities of discs) within 1e-9 absolute instead.
//! Orientation is compared only where skimage's inertia tensor is not isotropic (see
//! `orientation_is_defined`), and modulo π (π/2 and -π/2 are the same axis); the eccentricity
//! of an isotropic object within 1e-6 absolute (it is the square root of rounding noise).

mod common;

use std::path::{Path, PathBuf};

use cytoseg::core::image::{ImageView, Pixels};
use cytoseg::core::measure::{Calibration, Table, measure};
use ndarray::{Array2, ArrayD};
use ndarray_npy::NpzReader;

const RTOL: f64 = 1e-6;
const ATOL: f64 = 1e-9;
const NEAR_ZERO: f64 = 1e-3;

enum Samples {
    U8(Vec<u8>),
    U16(Vec<u16>),
    F32(Vec<f32>),
}

struct Case {
    name: String,
    labels: Array2<u32>,
    image: Option<(Samples, usize)>, // samples, channels
    calibration: Calibration,
    expected: Vec<(String, Vec<f64>)>,
}

fn load_image(npz: &mut NpzReader<std::fs::File>) -> Option<(Samples, usize)> {
    let names = npz.names().unwrap();
    if !names.iter().any(|n| n == "image" || n == "image.npy") {
        return None;
    }
    let channels = |shape: &[usize]| if shape.len() == 3 { shape[2] } else { 1 };
    if let Ok(a) = npz.by_name::<ndarray::OwnedRepr<u8>, ndarray::IxDyn>("image") {
        let c = channels(a.shape());
        return Some((Samples::U8(a.iter().copied().collect()), c));
    }
    if let Ok(a) = npz.by_name::<ndarray::OwnedRepr<u16>, ndarray::IxDyn>("image") {
        let c = channels(a.shape());
        return Some((Samples::U16(a.iter().copied().collect()), c));
    }
    let a: ArrayD<f32> = npz
        .by_name("image")
        .expect("image: uint8, uint16 or float32");
    let c = channels(a.shape());
    Some((Samples::F32(a.iter().copied().collect()), c))
}

fn load_cases(dir: &Path) -> Vec<Case> {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let mut cases = Vec::new();
    for c in manifest["cases"].as_array().unwrap() {
        let file = c["file"].as_str().unwrap();
        let mut npz = NpzReader::new(std::fs::File::open(dir.join(file)).unwrap()).unwrap();
        let labels: Array2<u32> = npz.by_name("labels").unwrap();
        let image = load_image(&mut npz);
        let spacing: Vec<f64> = c["spacing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let calibration = match c["unit"].as_str() {
            Some(unit) => Calibration {
                pixel_height: spacing[0],
                pixel_width: spacing[1],
                unit: unit.into(),
                z_spacing: None,
            },
            None => Calibration::default(),
        };
        let expected = c["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                let n = n.as_str().unwrap().to_string();
                let v: ndarray::Array1<f64> = npz.by_name(&format!("col__{n}")).unwrap();
                (n, v.to_vec())
            })
            .collect();
        cases.push(Case {
            name: file.trim_end_matches(".npz").to_string(),
            labels,
            image,
            calibration,
            expected,
        });
    }
    cases
}

fn run(case: &Case) -> Table {
    let (h, w) = case.labels.dim();
    let labels: Vec<u32> = case.labels.iter().copied().collect();
    let view = case.image.as_ref().map(|(s, c)| {
        let px = match s {
            Samples::U8(v) => Pixels::U8(v),
            Samples::U16(v) => Pixels::U16(v),
            Samples::F32(v) => Pixels::F32(v),
        };
        ImageView::packed(px, w, h, *c).unwrap()
    });
    measure(&labels, h, w, view.as_ref(), &case.calibration)
        .unwrap_or_else(|e| panic!("{}: {e}", case.name))
}

fn close(got: f64, want: f64) -> bool {
    if got == want || (got.is_nan() && want.is_nan()) {
        return true;
    }
    let d = (got - want).abs();
    if got.abs().max(want.abs()) < NEAR_ZERO {
        d <= ATOL
    } else {
        d <= RTOL * got.abs().max(want.abs())
    }
}

/// skimage's orientation is `0.5·atan2(-2b, c - a)` of the inertia tensor `[[a, b], [b, c]]`,
/// with ±π/4 when `a == c` exactly. When the tensor is isotropic up to rounding (`a ≈ c`,
/// `b ≈ 0`: squares, discs), the angle is decided by the rounding errors of the moment sums and
/// is not a property of the object; such objects are skipped. Detected from skimage's own
/// eigenvalues: the two axis lengths equal to 1e-9 relative.
fn orientation_is_defined(major: f64, minor: f64) -> bool {
    major - minor > 1e-9 * major
}

/// What a comparison saw: orientations skipped, largest relative difference (values of
/// magnitude >= `NEAR_ZERO`) and largest absolute difference (smaller values).
#[derive(Default)]
struct Stats {
    skipped: usize,
    worst_rel: f64,
    worst_abs: f64,
}

/// Compares `table` with the expected columns; returns one line per mismatch.
fn compare(
    name: &str,
    table: &Table,
    expected: &[(String, Vec<f64>)],
    stats: &mut Stats,
) -> Vec<String> {
    let mut bad = Vec::new();
    let major = &expected
        .iter()
        .find(|(n, _)| n == "axis_major_length")
        .unwrap()
        .1;
    let minor = &expected
        .iter()
        .find(|(n, _)| n == "axis_minor_length")
        .unwrap()
        .1;
    for (col, want) in expected {
        let Some(got) = table.column(col) else {
            bad.push(format!("{name}: column {col} missing"));
            continue;
        };
        if got.values.len() != want.len() {
            bad.push(format!(
                "{name}: {col} has {} rows, skimage {}",
                got.values.len(),
                want.len()
            ));
            continue;
        }
        for (i, (&g, &w)) in got.values.iter().zip(want).enumerate() {
            if col == "orientation" && !orientation_is_defined(major[i], minor[i]) {
                stats.skipped += 1;
                if g != w {
                    println!("{name}: isotropic object row {i}: orientation {g} vs skimage {w}");
                }
                continue;
            }
            // An isotropic object's eccentricity, sqrt(1 - λ2/λ1), is the square root of the
            // rounding left in λ1 - λ2: ~1e-8 where the eigenvalues differ by one ulp. Its
            // tolerance is that square root's: 1e-6 absolute (1e-12 relative in λ1 - λ2).
            if col == "eccentricity" && !orientation_is_defined(major[i], minor[i]) {
                if (g - w).abs() > 1e-6 {
                    bad.push(format!(
                        "{name}: eccentricity of isotropic row {i}: cytoseg {g:e}, skimage {w:e}"
                    ));
                }
                continue;
            }
            // Orientations are axis directions: π/2 and -π/2 are the same axis (skimage's
            // sign there follows the rounding of a zero mixed moment).
            let g = if col == "orientation" && (g - w).abs() > 3.0 {
                g - std::f64::consts::PI.copysign(g)
            } else {
                g
            };
            if g.abs().max(w.abs()) >= NEAR_ZERO {
                stats.worst_rel = stats.worst_rel.max((g - w).abs() / g.abs().max(w.abs()));
            } else {
                stats.worst_abs = stats.worst_abs.max((g - w).abs());
            }
            if !close(g, w) {
                bad.push(format!(
                    "{name}: {col} row {i}: cytoseg {g:e}, skimage {w:e} (rel {:.1e})",
                    (g - w).abs() / w.abs().max(f64::MIN_POSITIVE)
                ));
            }
        }
    }
    bad
}

fn check_dir(dir: &Path) -> usize {
    let cases = load_cases(dir);
    assert!(!cases.is_empty(), "no cases in {}", dir.display());
    let mut bad = Vec::new();
    let (mut values, mut stats) = (0, Stats::default());
    for case in &cases {
        let table = run(case);
        values += case.expected.iter().map(|(_, v)| v.len()).sum::<usize>();
        bad.extend(compare(&case.name, &table, &case.expected, &mut stats));
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad[..bad.len().min(40)].join("\n")
    );
    println!(
        "{} cases, {values} values equal to skimage within tolerance \
         (largest relative difference {:.1e}, absolute below {NEAR_ZERO}: {:.1e}; \
         {} orientations of isotropic objects not compared)",
        cases.len(),
        stats.worst_rel,
        stats.worst_abs,
        stats.skipped
    );
    values
}

#[test]
fn committed_fixtures_match_skimage() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/measure");
    assert!(check_dir(&dir) > 1000);
}

#[test]
fn live_skimage_fresh_cases() {
    let Some((py, _)) = common::skimage_reference("live skimage parity") else {
        return;
    };
    let out: PathBuf = common::temp_dir("measure-live");
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parity/make_measure_fixtures.py");
    // A failure prints its seed; CYTOSEG_MEASURE_LIVE_SEED=<seed> reruns those cases.
    let seed = std::env::var("CYTOSEG_MEASURE_LIVE_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            7_000
                + std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    % 1000
        });
    // More real images for a stress run: CYTOSEG_MEASURE_LIVE_REAL=100.
    let n_real = std::env::var("CYTOSEG_MEASURE_LIVE_REAL").unwrap_or_else(|_| "4".into());
    let st = std::process::Command::new(&py)
        .arg(&script)
        .args(["--seed", &seed.to_string(), "--n-real", &n_real, "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success(), "fixture script failed (seed {seed})");
    println!("live cases with seed {seed} (CYTOSEG_MEASURE_LIVE_SEED reruns them)");
    check_dir(&out);
    let _ = std::fs::remove_dir_all(&out);
}

/// Huge and sparse label ids (beyond what skimage's `find_objects` can allocate) measure the
/// same as the same objects numbered 1..n.
#[test]
fn huge_label_ids_measure_like_small_ones() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/measure");
    let case = load_cases(&dir)
        .into_iter()
        .find(|c| c.name.contains("hand_blobs"))
        .unwrap();
    let small = run(&case);
    let (h, w) = case.labels.dim();
    let big: Vec<u32> = case
        .labels
        .iter()
        .map(|&l| if l == 0 { 0 } else { u32::MAX - 1000 + l })
        .collect();
    let t = measure(&big, h, w, None, &Calibration::default()).unwrap();
    assert_eq!(t.n_rows(), small.n_rows());
    for col in &t.columns {
        let s = small.column(&col.name).unwrap();
        for (a, b) in col.values.iter().zip(&s.values) {
            if col.name == "label" {
                assert_eq!(*a, u32::MAX as f64 - 1000.0 + b);
            } else {
                assert_eq!(a.to_bits(), b.to_bits(), "{}", col.name);
            }
        }
    }
}

#[test]
fn csv_has_units_and_round_trips() {
    let labels = [0u32, 3, 3, 0, 3, 7];
    let cal = Calibration::square(0.5, "um");
    let t = measure(&labels, 2, 3, None, &cal).unwrap();
    let csv = t.to_csv();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[0], "label");
    assert_eq!(header[1], "area [um^2]");
    assert_eq!(header[2], "centroid-0 [um]");
    assert_eq!(header[4], "bbox-0");
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 2);
    for (r, row) in rows.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            assert_eq!(v.to_bits(), t.columns[c].values[r].to_bits());
        }
    }
    assert!(csv.starts_with("label,area [um^2],") && csv.contains("\n3,"));
}

#[test]
fn bad_inputs_are_errors() {
    let labels = [1u32; 6];
    assert!(measure(&labels, 2, 4, None, &Calibration::default()).is_err());
    let bad = Calibration::square(0.0, "um");
    assert!(measure(&labels, 2, 3, None, &bad).is_err());
    let px = [0u8; 4];
    let img = ImageView::packed(Pixels::U8(&px), 2, 2, 1).unwrap();
    let err = measure(&labels, 2, 3, Some(&img), &Calibration::default()).unwrap_err();
    assert!(err.to_string().contains("2×2"), "{err}");
}

/// The comparison is not vacuous: a value moved by 2e-6 relative, or a wrong near-zero value,
/// is reported.
#[test]
fn comparison_detects_small_differences() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/measure");
    let case = &load_cases(&dir)
        .into_iter()
        .max_by_key(|c| c.expected[0].1.len())
        .unwrap();
    let table = run(case);
    let mut stats = Stats::default();
    assert!(compare(&case.name, &table, &case.expected, &mut stats).is_empty());
    for col in ["perimeter", "solidity", "intensity_std", "centroid-1"] {
        let mut expected = case.expected.clone();
        let e = expected.iter_mut().find(|(n, _)| n == col).unwrap();
        e.1[3] *= 1.0 + 2e-6;
        let bad = compare(&case.name, &table, &expected, &mut stats);
        assert_eq!(bad.len(), 1, "{col}: {bad:?}");
    }
    let mut expected = case.expected.clone();
    let e = expected
        .iter_mut()
        .find(|(n, _)| n == "orientation")
        .unwrap();
    let i = e.1.iter().position(|v| v.abs() > 0.1).unwrap();
    e.1[i] = -e.1[i];
    assert_eq!(compare(&case.name, &table, &expected, &mut stats).len(), 1);
}

/// `cytoseg measure` end to end: label and 3-channel uint16 images as files, the CSV read back
/// and compared with skimage's values; an existing output is not replaced without --overwrite.
#[test]
fn cli_writes_skimage_values() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/measure");
    let case = load_cases(&dir)
        .into_iter()
        .find(|c| c.name.ends_with("_rgb16"))
        .unwrap();
    let file = dir.join(format!("{}.npz", case.name));
    let mut npz = NpzReader::new(std::fs::File::open(&file).unwrap()).unwrap();
    let image: ArrayD<u16> = npz.by_name("image").unwrap();
    let tmp = common::temp_dir("measure-cli");
    let (lp, ip, out) = (
        tmp.join("labels.npy"),
        tmp.join("image.npy"),
        tmp.join("objects.csv"),
    );
    ndarray_npy::write_npy(&lp, &case.labels).unwrap();
    ndarray_npy::write_npy(&ip, &image).unwrap();
    let cli = || {
        let mut c = std::process::Command::new(common::cytoseg_exe());
        c.arg("measure")
            .arg("--labels")
            .arg(&lp)
            .arg("--image")
            .arg(&ip)
            .arg("--out")
            .arg(&out);
        c
    };
    let o = cli().output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(&out).unwrap();
    let mut lines = csv.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    let table = Table {
        columns: header
            .iter()
            .enumerate()
            .map(|(i, name)| cytoseg::core::measure::Column {
                name: name.clone(),
                unit: None,
                values: rows.iter().map(|r| r[i]).collect(),
            })
            .collect(),
    };
    let mut stats = Stats::default();
    let bad = compare(&case.name, &table, &case.expected, &mut stats);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert_eq!(header.len(), case.expected.len());
    // No silent replacement; --overwrite replaces.
    let o = cli().output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    assert!(cli().arg("--overwrite").status().unwrap().success());
    let _ = std::fs::remove_dir_all(&tmp);
}

/// 3-D objects: `measure_volume` against skimage's `regionprops_table` on label volumes with an
/// intensity volume and spacing (z, y, x) (`tests/fixtures/measure3d`, written by
/// `tests/parity/make_volume_measure_fixtures.py`), with the 2-D tolerance.
#[test]
fn volumes_match_skimage() {
    use cytoseg::core::measure::measure_volume;
    use ndarray::{Array1, Array3};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/measure3d");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "npz"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 6, "fixtures in {}", dir.display());
    let mut values = 0;
    for path in paths {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let mut npz = NpzReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let labels: Array3<u32> = npz.by_name("labels").unwrap();
        let intensity: Array3<f32> = npz.by_name("intensity").unwrap();
        let spacing: Array1<f64> = npz.by_name("spacing").unwrap();
        let (d, h, w) = labels.dim();
        let flat: Vec<u32> = labels.iter().copied().collect();
        let inten: Vec<f32> = intensity.iter().copied().collect();
        let cal = Calibration {
            pixel_width: spacing[2],
            pixel_height: spacing[1],
            unit: "um".into(),
            z_spacing: None,
        };
        let t = measure_volume(&flat, [d, h, w], &[&inten], &cal, spacing[0]).unwrap();
        for col in &t.columns {
            let want: Array1<f64> = npz
                .by_name(&format!("col_{}", col.name))
                .unwrap_or_else(|e| panic!("{name}: no skimage column {}: {e}", col.name));
            assert_eq!(col.values.len(), want.len(), "{name} {}", col.name);
            for (i, (&g, &w)) in col.values.iter().zip(want.iter()).enumerate() {
                assert!(
                    close(g, w),
                    "{name} {} row {i}: cytoseg {g}, skimage {w}",
                    col.name
                );
                values += 1;
            }
        }
    }
    eprintln!("{values} 3-D measurements equal to skimage within tolerance");
}

/// `cytoseg measure` on a label stack measures 3-D objects (volume, z centroid, 6 bbox
/// columns), calibrated with --pixel-size and --z-spacing.
#[test]
fn cli_measures_label_stacks_in_3d() {
    use ndarray::{Array1, Array3};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/measure3d/dsb_1_v0.npz");
    let mut npz = NpzReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let labels: Array3<u32> = npz.by_name("labels").unwrap();
    let spacing: Array1<f64> = npz.by_name("spacing").unwrap();
    let volume: Array1<f64> = npz.by_name("col_area").unwrap();
    let dir = std::env::temp_dir().join(format!("cytoseg-measure3d-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    ndarray_npy::write_npy(dir.join("labels.npy"), &labels).unwrap();
    let out = std::process::Command::new(common::cytoseg_exe())
        .args(["measure", "--out", "-", "--labels"])
        .arg(dir.join("labels.npy"))
        .args(["--pixel-size", &spacing[2].to_string(), "--unit", "um"])
        .args(["--z-spacing", &spacing[0].to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert!(header.contains(&"bbox-5"), "{header:?}");
    assert!(header.contains(&"centroid-2 [µm]"), "{header:?}");
    assert!(
        header.iter().any(|h| h.starts_with("area [µm^3]")),
        "{header:?}"
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), volume.len());
    for (r, &v) in rows.iter().zip(volume.iter()) {
        assert!(
            (r[1] - v).abs() <= 1e-9 * v,
            "volume {} vs skimage {v}",
            r[1]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
