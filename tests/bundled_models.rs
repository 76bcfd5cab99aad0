//! Every model package shipped in `models/` is complete and consistent: its manifest reads and
//! matches its ONNX file, it says what it is for and under which licence, its model card
//! states the validation numbers recorded in its manifest, its recipe's fields are the
//! manifest's, the Fiji jar bundles exactly these packages, and each one segments an image.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cytoseg::core::io::image::read_image;
use cytoseg::core::metrics::cellpose::average_precision;
use cytoseg::core::model::manifest::sha256_hex;
use cytoseg::core::model::{
    Device, LoadOptions, Manifest, Model, Precision, SegmentParams, Tiling, list_models,
};
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

/// Loading on the CPU with the test's ONNX Runtime library.
fn cpu_options(lib: &Path) -> LoadOptions {
    LoadOptions {
        device: Device::Cpu,
        ort_search: vec![("test".into(), lib.to_path_buf())],
        model_dirs: vec![],
        threads: 0,
    }
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
        // reduced-precision variants: their file and hash, validation numbers, and the card
        // quotes the int8 AP@0.5 the engine's `precision auto` relies on
        for v in &m.variants {
            let bytes = std::fs::read(dir.join(&v.file))
                .unwrap_or_else(|e| panic!("{name}: variant {}: {e}", v.file));
            assert_eq!(sha256_hex(&bytes), v.sha256, "{name}: {} sha256", v.file);
            let val = v
                .validation
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: the {} variant has no validation", v.precision));
            assert!(
                val.images > 0 && !val.split.is_empty(),
                "{name}: {}",
                v.file
            );
            let quoted = format!("{:.4}", val.ap50);
            assert!(
                card.contains(&v.precision) && card.contains(&quoted),
                "{name}: the card does not quote the {} AP@0.5 {quoted}",
                v.precision
            );
        }
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
        let dir = repo().join("models").join(name);
        let variants = Manifest::read(&dir.join("manifest.json")).unwrap().variants;
        let files = ["manifest.json", "model.onnx", "README.md"]
            .map(String::from)
            .into_iter()
            .chain(variants.into_iter().map(|v| v.file));
        for f in files {
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
        let opts = cpu_options(&lib);
        let model = Model::load(dir.to_str().unwrap(), &opts).unwrap();
        let params = SegmentParams::for_model(&model);
        let seg = model
            .segment(&view, &params, None)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((seg.height, seg.width), (view.height, view.width), "{name}");
    }
}

/// A package's int8 variant finds the same objects as its float32 network on the example image
/// (AP@0.5 of one against the other), `precision auto` takes it with fast tiling only, and the
/// exact mode (Cellpose's tiling) under `auto` gives float32's labels bit for bit.
#[test]
fn int8_variants_agree_with_float32_and_auto_keeps_the_exact_mode() {
    let Some(lib) = common::ort_library() else {
        eprintln!("SKIPPED: no ONNX Runtime library (set ORT_DYLIB_PATH or .venv)");
        return;
    };
    let image = read_image(&repo().join("models/examples/nuclei_example.tif")).unwrap();
    let view = image.view().unwrap();
    let mut tested = 0;
    for (name, dir) in packages() {
        let m = Manifest::read(&dir.join("manifest.json")).unwrap();
        if Precision::Int8.variant(&m).is_none() {
            continue;
        }
        tested += 1;
        let opts = cpu_options(&lib);
        let model = Model::load(dir.to_str().unwrap(), &opts).unwrap();
        assert_eq!(model.precisions(), [Precision::Fp32, Precision::Int8]);
        let run = |tiling, precision| {
            let mut p = SegmentParams::for_model(&model);
            p.tiling = tiling;
            p.precision = precision;
            let used = model.precision_for(&p).unwrap().0;
            (used, model.segment(&view, &p, None).unwrap())
        };
        let (used, fp32) = run(Tiling::Fast, Precision::Fp32);
        assert_eq!(used, Precision::Fp32);
        let (used, int8) = run(Tiling::Fast, Precision::Int8);
        assert_eq!(used, Precision::Int8);
        let ap = average_precision(&fp32.labels, &int8.labels, &[0.5])
            .unwrap()
            .ap[0];
        eprintln!(
            "{name}: int8 vs float32 on the example image: AP@0.5 {ap:.4} ({} vs {} objects)",
            int8.count, fp32.count
        );
        // the example holds nuclei: a model for other objects finds too few there to compare
        // (its int8 variant's agreement is the validation recorded in its manifest)
        if fp32.count >= 20 {
            assert!(
                ap >= 0.9,
                "{name}: int8 labels differ from float32's: AP@0.5 {ap}"
            );
        } else {
            eprintln!(
                "{name}: labels not compared ({} objects on this image)",
                fp32.count
            );
        }
        let validated = Precision::validated(Precision::Int8.variant(&m).unwrap());
        let (used, auto) = run(Tiling::Fast, Precision::Auto);
        assert_eq!(
            used,
            if validated {
                Precision::Int8
            } else {
                Precision::Fp32
            },
            "{name}"
        );
        assert_eq!(auto.labels, if validated { &int8 } else { &fp32 }.labels);
        let (used, exact_auto) = run(Tiling::Cellpose, Precision::Auto);
        assert_eq!(used, Precision::Fp32, "{name}: auto in the exact mode");
        let (_, exact) = run(Tiling::Cellpose, Precision::Fp32);
        assert_eq!(exact_auto.labels, exact.labels, "{name}");
    }
    eprintln!("{tested} package(s) with an int8 variant");
}

/// A package whose variant file does not match its hash is refused at load, naming the file;
/// a variant without validation numbers runs when asked for by name but never under `auto`.
#[test]
fn variants_are_verified_and_only_validated_ones_run_under_auto() {
    let Some(lib) = common::ort_library() else {
        eprintln!("SKIPPED: no ONNX Runtime library (set ORT_DYLIB_PATH or .venv)");
        return;
    };
    let src = repo().join("tests/fixtures/models/blobs");
    let dir = common::temp_dir("variants");
    for f in ["manifest.json", "model.onnx"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    // the float32 network stands in for an int8 file: any network with the signature loads
    std::fs::copy(src.join("model.onnx"), dir.join("model.int8.onnx")).unwrap();
    let sha = sha256_hex(&std::fs::read(dir.join("model.onnx")).unwrap());
    let write = |sha: &str, validation: Value| {
        let mut j = json(&src.join("manifest.json"));
        j["variants"] = serde_json::json!([{"precision": "int8", "file": "model.int8.onnx",
            "sha256": sha, "validation": validation}]);
        std::fs::write(dir.join("manifest.json"), j.to_string()).unwrap();
    };
    let opts = cpu_options(&lib);
    write(&"0".repeat(64), Value::Null);
    let e = Model::load(dir.to_str().unwrap(), &opts).unwrap_err();
    assert!(
        e.to_string().contains("model.int8.onnx") && e.to_string().contains("int8 variant"),
        "{e}"
    );
    write(&sha, Value::Null);
    let model = Model::load(dir.to_str().unwrap(), &opts).unwrap();
    let mut p = SegmentParams::for_model(&model);
    assert_eq!(model.precision_for(&p).unwrap().0, Precision::Fp32);
    p.precision = Precision::Int8;
    assert_eq!(model.precision_for(&p).unwrap().0, Precision::Int8);
    // validated within 0.005 of float32: auto takes it
    write(&sha, serde_json::json!({"ap50": 0.80, "ap50_fp32": 0.803}));
    let model = Model::load(dir.to_str().unwrap(), &opts).unwrap();
    let p = SegmentParams::for_model(&model);
    assert_eq!(model.precision_for(&p).unwrap().0, Precision::Int8);
    // a file name outside the package folder is refused when the manifest is read
    let mut j = json(&dir.join("manifest.json"));
    j["variants"][0]["file"] = Value::from("../model.onnx");
    std::fs::write(dir.join("manifest.json"), j.to_string()).unwrap();
    let e = Model::load(dir.to_str().unwrap(), &opts).unwrap_err();
    assert!(e.to_string().contains("package folder"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The int8 variants are quantized from a copy of the float network whose batch
/// normalizations `scripts/fold_batchnorm.py` folds away and whose style vectors it expands to
/// rows: on every bundled network it folds all 33 and expands all 12, and the rewritten network
/// gives the original's outputs; moving a quantized network's Shape nodes onto the quantized
/// tensors leaves its outputs bit for bit; on small graphs it leaves the cases the rewrite does
/// not hold for (a negative scale before a ReLU, shared weights, a padded convolution) as they
/// are. Runs `tests/parity/check_fold_batchnorm.py`.
#[test]
fn batch_norm_folding_keeps_each_networks_outputs() {
    let Some(python) = common::reference_python(&["onnx", "onnxruntime.quantization"]) else {
        eprintln!(
            "SKIPPED batch norm folding: no Python with onnx and onnxruntime (set CYTOSEG_PYTHON)"
        );
        return;
    };
    let out = std::process::Command::new(python)
        .arg(repo().join("tests/parity/check_fold_batchnorm.py"))
        .output()
        .expect("runs the check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("all checks passed"),
        "check_fold_batchnorm.py failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
