//! Parity of per-object texture (GLCM contrast, dissimilarity, homogeneity, ASM, energy,
//! correlation) with scikit-image 0.26's `graycomatrix` / `graycoprops`.
//!
//! The committed fixture `tests/fixtures/texture/texture.json` (crops of real DSB2018 images and
//! their true labels, and a float32 variant) was computed by skimage itself
//! (`tests/parity/make_texture_fixtures.py`, whose docstring states how the object mask and the
//! quantisation are reproduced there). The live test regenerates fresh cases with another seed
//! when a Python with scikit-image 0.26 (CYTOSEG_PYTHON or ./.venv) and the shared data are
//! available, and says that it skipped otherwise. Every value within 1e-9 absolute.

mod common;

use std::path::Path;

use cytoseg::core::image::{ImageView, Pixels};
use cytoseg::core::measure::texture::{TEXTURE_COLUMNS, texture};

const TOL: f64 = 1e-9;

/// Compares every case of a fixture file; returns the number of objects compared.
fn check_fixture(path: &Path) -> usize {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut n = 0;
    for case in v["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (h, w) = (
            case["height"].as_u64().unwrap() as usize,
            case["width"].as_u64().unwrap() as usize,
        );
        let px: Vec<f32> = case["image"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let labels: Vec<u32> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let view = ImageView::packed(Pixels::F32(&px), w, h, 1).unwrap();
        let t = texture(&labels, h, w, &view).unwrap();
        let expected = case["expected"].as_object().unwrap();
        assert_eq!(t.n_rows(), expected.len(), "{name}: objects");
        for r in 0..t.n_rows() {
            let label = t.columns[0].values[r] as u32;
            let want = expected[&label.to_string()].as_array().unwrap();
            for (j, prop) in TEXTURE_COLUMNS.iter().enumerate() {
                let got = t.column(prop).unwrap().values[r];
                let exp = want[j].as_f64().unwrap();
                assert!(
                    (got - exp).abs() <= TOL,
                    "{name} object {label} {prop}: cytoseg {got}, skimage {exp}"
                );
            }
            n += 1;
        }
    }
    n
}

#[test]
fn committed_skimage_fixture() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/texture/texture.json");
    let n = check_fixture(&path);
    assert!(n >= 40, "{n} objects");
    println!("texture parity: {n} objects within {TOL} of scikit-image");
}

#[test]
fn live_skimage_fresh_cases() {
    let Some((py, version)) = common::skimage_reference("live texture parity") else {
        return;
    };
    let dir = common::temp_dir("texture-live");
    let out = dir.join("live.json");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = std::process::Command::new(&py)
        .arg(root.join("tests/parity/make_texture_fixtures.py"))
        .args(["--seed", "7", "--n", "3", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let n = check_fixture(&out);
    println!("live texture parity: {n} fresh objects within {TOL} of scikit-image {version}");
    let _ = std::fs::remove_dir_all(&dir);
}
