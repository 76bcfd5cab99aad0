//! Every model package shipped in `models/` is complete and consistent: its manifest reads and
//! matches its ONNX file, it says what it is for and under which licence, its model card
//! states the validation numbers recorded in its manifest, its recipe's fields are the
//! manifest's, the Fiji jar bundles exactly these packages, and each one segments an image.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cytoseg::core::io::image::read_image;
use cytoseg::core::model::manifest::sha256_hex;
use cytoseg::core::model::{Device, LoadOptions, Manifest, Model, SegmentParams, list_models};
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn packages() -> Vec<(String, PathBuf)> {
    let found = list_models(&[repo().join("models")]);
    assert!(
        found.iter().any(|(n, _)| n == "nuclei"),
        "no nuclei package in models/"
    );
    found
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_package_is_complete_and_says_what_it_is_for() {
    for (name, dir) in packages() {
        let m = Manifest::read(&dir.join("manifest.json")).unwrap();
        assert_eq!(m.name, name, "{name}: manifest name");
        let onnx = std::fs::read(dir.join(&m.model.file)).unwrap();
        assert_eq!(sha256_hex(&onnx), m.model.sha256, "{name}: model sha256");
        assert!(!m.use_for.is_empty(), "{name}: use_for is empty");
        assert!(!m.license.is_empty(), "{name}: no licence");
        let card = std::fs::read_to_string(dir.join("README.md"))
            .unwrap_or_else(|_| panic!("{name}: no model card README.md"));
        assert!(card.to_lowercase().contains("licence"), "{name}: card");
        let raw = json(&dir.join("manifest.json"));
        // packages trained by cytoseg train carry their validation numbers: the card quotes
        // AP@0.5 as recorded, and the recipe's own fields are the manifest's
        if let Some(ap) = raw["validation"]["by_threshold"]["0.5"]["ap"].as_f64() {
            let quoted = format!("{ap:.3}");
            assert!(
                card.contains(&quoted),
                "{name}: the card does not quote AP@0.5 {quoted}"
            );
            assert!(raw["lineage"]["parent"]["sha256"].is_string(), "{name}");
            let meta = json(&dir.join("train/meta.json"));
            for k in [
                "name",
                "version",
                "description",
                "use_for",
                "license",
                "training_data",
            ] {
                assert_eq!(meta[k], raw[k], "{name}: train/meta.json {k} ≠ manifest");
            }
            assert!(dir.join("train/recipe.sh").is_file(), "{name}: no recipe");
        }
    }
}

#[test]
fn the_fiji_jar_bundles_exactly_the_shipped_packages() {
    let listed: BTreeSet<String> =
        std::fs::read_to_string(repo().join("bindings/java/src/main/resources/cytoseg-models.txt"))
            .unwrap()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
    let shipped: BTreeSet<String> = packages().into_iter().map(|(n, _)| n).collect();
    assert_eq!(listed, shipped, "cytoseg-models.txt vs models/");
    let pom = std::fs::read_to_string(repo().join("bindings/java/pom.xml")).unwrap();
    for name in &shipped {
        for f in ["manifest.json", "model.onnx", "README.md"] {
            assert!(
                pom.contains(&format!("<include>{name}/{f}</include>")),
                "pom.xml does not bundle {name}/{f}"
            );
        }
    }
}

#[test]
fn every_package_segments_the_example_image() {
    let Some(lib) = common::ort_library() else {
        eprintln!("SKIPPED: no ONNX Runtime library (set ORT_DYLIB_PATH or .venv)");
        return;
    };
    let image = read_image(&repo().join("models/examples/nuclei_example.tif")).unwrap();
    let view = image.view().unwrap();
    for (name, dir) in packages() {
        let opts = LoadOptions {
            device: Device::Cpu,
            ort_search: vec![("test".into(), lib.clone())],
            model_dirs: vec![],
            threads: 0,
        };
        let model = Model::load(dir.to_str().unwrap(), &opts).unwrap();
        let params = SegmentParams::for_model(&model);
        let seg = model
            .segment(&view, &params, None)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((seg.height, seg.width), (view.height, view.width), "{name}");
    }
}
