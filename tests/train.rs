//! The native trainer against ONNX Runtime: the network built from a package's ONNX graph
//! computes what ORT computes, and weights written back into the graph are what ORT runs.

mod common;

use std::path::Path;

use cytoseg::core::io::image::read_image;
use cytoseg::core::model::{Model, preprocess};
use cytoseg::core::train::net::{Net, Value};
use ndarray::ArrayView4;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn load_model(dir: &Path) -> Option<Model> {
    common::load_cpu_model(dir)
}

/// A normalized crop of the bundled example image, `[n, 1, s, s]`.
fn example_crops(n: usize, s: usize) -> Value {
    let img = read_image(&repo().join("models/examples/nuclei_example.tif")).unwrap();
    let view = img.view().unwrap();
    let (h, w) = (view.height, view.width);
    let mut plane = view.plane(0);
    preprocess::normalize99(&mut plane, h, w, 1.0, 99.0);
    let mut data = Vec::with_capacity(n * s * s);
    for i in 0..n {
        let (y0, x0) = ((i * 37) % (h - s), (i * 53) % (w - s));
        for y in 0..s {
            data.extend_from_slice(&plane[(y0 + y) * w + x0..][..s]);
        }
    }
    Value {
        shape: vec![n, 1, s, s],
        data,
    }
}

#[test]
fn trainer_forward_equals_onnx_runtime_on_real_crops() {
    let dir = repo().join("models/nuclei");
    let Some(model) = load_model(&dir) else {
        return;
    };
    let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
    let mut net = Net::from_onnx(&bytes).unwrap();
    let x = example_crops(2, 128);
    let ort = model
        .run_network(ArrayView4::from_shape((2, 1, 128, 128), &x.data).unwrap())
        .unwrap();
    let tape = net.forward(x, false).unwrap();
    let ours = &tape.output(&net).data;
    let worst = ours
        .iter()
        .zip(&ort)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("max |trainer − ORT| = {worst:e}");
    assert!(worst <= 1e-4, "max |trainer − ORT| = {worst}");
}

// ---------------------------------------------------------------------------------------------
// `cytoseg train` end to end on a small synthetic set (dark discs on a bright, noisy
// background: a domain the fluorescence parent gets wrong).

use cytoseg::core::Error;
use cytoseg::core::io::labels::write_labels;
use cytoseg::core::train::{self as tr, TrainOptions};

struct Tmp(std::path::PathBuf);
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
fn tmp(name: &str) -> Tmp {
    let p = std::env::temp_dir().join(format!("cytoseg-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    Tmp(p)
}

/// `n` images of `size²` with dark discs (radius ~6) and their labels.
fn synthetic_set(dir: &Path, n: usize, size: usize, seed: u64) {
    let (img_dir, lbl_dir) = (dir.join("images"), dir.join("labels"));
    std::fs::create_dir_all(&img_dir).unwrap();
    std::fs::create_dir_all(&lbl_dir).unwrap();
    let mut s = seed
        .wrapping_mul(2862933555777941757)
        .wrapping_add(3037000493);
    let mut rnd = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as f64 / (1u64 << 31) as f64
    };
    for k in 0..n {
        let mut lbl = vec![0u32; size * size];
        let mut img = vec![0u32; size * size];
        let mut count = 0;
        for _ in 0..40 {
            let (cy, cx, r) = (rnd() * size as f64, rnd() * size as f64, 5.0 + 2.0 * rnd());
            let free = (0..size * size).all(|i| {
                let (y, x) = ((i / size) as f64, (i % size) as f64);
                lbl[i] == 0 || (y - cy).hypot(x - cx) > r + 2.0
            });
            if !free {
                continue;
            }
            count += 1;
            for (i, l) in lbl.iter_mut().enumerate() {
                let (y, x) = ((i / size) as f64, (i % size) as f64);
                if (y - cy).hypot(x - cx) <= r {
                    *l = count;
                }
            }
        }
        for (p, &l) in img.iter_mut().zip(&lbl) {
            let base = if l > 0 { 1500.0 } else { 4000.0 };
            *p = (base + 600.0 * (rnd() - 0.5)) as u32;
        }
        write_labels(&img_dir.join(format!("img{k}.tif")), &img, size, size, true).unwrap();
        write_labels(&lbl_dir.join(format!("img{k}.tif")), &lbl, size, size, true).unwrap();
    }
}

fn small_options(data: &Path, val: &Path, out: &Path, steps: usize) -> TrainOptions {
    let mut o = TrainOptions::new(
        &repo().join("models/nuclei"),
        &data.join("images"),
        &data.join("labels"),
        out,
    );
    o.val_images = Some(val.join("images"));
    o.val_labels = Some(val.join("labels"));
    o.steps = steps;
    o.batch_size = 4;
    o.crop = 64;
    o.warmup = 5;
    o.learning_rate = 2e-3;
    o.diameter = Some(17.1); // no resizing: the discs are nuclei-sized
    o
}

fn sha(p: &Path) -> String {
    cytoseg::core::model::manifest::sha256_hex(&std::fs::read(p).unwrap())
}

#[test]
fn short_training_run_learns_writes_a_complete_clone_and_leaves_the_parent_alone() {
    let t = tmp("run");
    synthetic_set(&t.0.join("train"), 4, 96, 1);
    synthetic_set(&t.0.join("val"), 2, 96, 2);
    let parent = repo().join("models/nuclei");
    let before = (
        sha(&parent.join("model.onnx")),
        sha(&parent.join("manifest.json")),
    );
    let out = t.0.join("discs");
    let opts = small_options(&t.0.join("train"), &t.0.join("val"), &out, 40);
    let report = tr::train(&opts, &mut |_| true).unwrap();
    assert_eq!(report.steps, 40);
    assert_eq!(
        before,
        (
            sha(&parent.join("model.onnx")),
            sha(&parent.join("manifest.json"))
        ),
        "parent changed"
    );
    for f in [
        "model.onnx",
        "manifest.json",
        "MODEL_CARD.md",
        "loss.csv",
        "loss.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(!out.join(tr::trainer::CHECKPOINT_FILE).exists());
    // the validation loss fell
    let csv = std::fs::read_to_string(out.join("loss.csv")).unwrap();
    let vals: Vec<f64> = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(2)?.parse().ok())
        .collect();
    assert!(vals.len() >= 2, "{csv}");
    assert!(
        vals[vals.len() - 1] < 0.8 * vals[0],
        "validation loss did not fall: {vals:?}"
    );
    // lineage
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let l = &m["lineage"];
    assert_eq!(m["name"], "discs");
    // the parent's int8 variant holds the parent's weights: the clone must not inherit it
    let parent_manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(parent.join("manifest.json")).unwrap())
            .unwrap();
    assert!(
        parent_manifest["variants"].is_array(),
        "the parent has no variants any more"
    );
    assert!(
        m["variants"].is_null(),
        "the clone kept the parent's variants"
    );
    assert!(!out.join("model.int8.onnx").exists());
    assert_eq!(m["model"]["sha256"], sha(&out.join("model.onnx")));
    assert_eq!(l["parent"]["name"], "nuclei");
    assert_eq!(l["parent"]["sha256"], before.0);
    assert_eq!(l["training_images"].as_array().unwrap().len(), 4);
    assert_eq!(l["validation_images"].as_array().unwrap().len(), 2);
    let first = &l["training_images"][0];
    assert_eq!(
        first["image_sha256"],
        sha(Path::new(first["image"].as_str().unwrap()))
    );
    assert_eq!(
        first["labels_sha256"],
        sha(Path::new(first["labels"].as_str().unwrap()))
    );
    for k in [
        "seed",
        "steps",
        "final_train_loss",
        "final_val_loss",
        "cytoseg_version",
        "device",
        "parameters",
        "date",
    ] {
        assert!(!l[k].is_null(), "lineage.{k} missing");
    }
    for k in [
        "learning_rate",
        "batch_size",
        "crop",
        "weight_decay",
        "scale_range",
        "diameter",
        "train_diameter",
    ] {
        assert!(
            !l["parameters"][k].is_null(),
            "lineage.parameters.{k} missing"
        );
    }
    assert!(
        m.get("validation").is_none(),
        "the parent's scores must not be copied"
    );
    let card = std::fs::read_to_string(out.join("MODEL_CARD.md")).unwrap();
    assert!(card.contains(&before.0));

    // the clone loads and ONNX Runtime computes what the trainer's network computes
    let bytes = std::fs::read(out.join("model.onnx")).unwrap();
    let mut net = Net::from_onnx(&bytes).unwrap();
    if let Some(model) = load_model(&out) {
        let x = example_crops(2, 128);
        let ort = model
            .run_network(ArrayView4::from_shape((2, 1, 128, 128), &x.data).unwrap())
            .unwrap();
        let ours = net.forward(x, false).unwrap();
        let worst = ours
            .output(&net)
            .data
            .iter()
            .zip(&ort)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-4, "max |trainer − ORT| = {worst}");
    }

    // a clone can be cloned again (iterative retraining)
    let out2 = t.0.join("discs2");
    let mut o2 = small_options(&t.0.join("train"), &t.0.join("val"), &out2, 3);
    o2.from = out.clone();
    tr::train(&o2, &mut |_| true).unwrap();
    let m2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out2.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m2["lineage"]["parent"]["name"], "discs");
    assert_eq!(
        m2["lineage"]["parent"]["sha256"],
        sha(&out.join("model.onnx"))
    );
}

#[test]
fn an_interrupted_run_resumes_to_the_same_weights() {
    let t = tmp("resume");
    synthetic_set(&t.0.join("train"), 3, 80, 3);
    synthetic_set(&t.0.join("val"), 1, 80, 4);
    let whole = t.0.join("whole");
    tr::train(
        &small_options(&t.0.join("train"), &t.0.join("val"), &whole, 8),
        &mut |_| true,
    )
    .unwrap();
    let parts = t.0.join("parts");
    let opts = small_options(&t.0.join("train"), &t.0.join("val"), &parts, 8);
    let err = tr::train(&opts, &mut |p| p.step < 3).unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert!(parts.join(tr::trainer::CHECKPOINT_FILE).is_file());
    assert!(!parts.join("model.onnx").exists());
    // without --resume the checkpoint is not overwritten
    let err = tr::train(&opts, &mut |_| true).unwrap_err().to_string();
    assert!(err.contains("--resume"), "{err}");
    let mut again = opts.clone();
    again.resume = true;
    let r = tr::train(&again, &mut |_| true).unwrap();
    assert_eq!(r.steps, 8);
    assert_eq!(
        sha(&whole.join("model.onnx")),
        sha(&parts.join("model.onnx")),
        "resumed weights differ"
    );
    // resuming with other settings is refused
    let t2 = tmp("resume2");
    let p2 = t2.0.join("p");
    let o = small_options(&t.0.join("train"), &t.0.join("val"), &p2, 8);
    let _ = tr::train(&o, &mut |p| p.step < 2);
    let mut other = o.clone();
    other.resume = true;
    other.learning_rate = 1e-4;
    let err = tr::train(&other, &mut |_| true).unwrap_err().to_string();
    assert!(err.contains("other settings"), "{err}");
}

#[test]
fn bad_training_inputs_give_clear_errors_and_write_nothing() {
    let t = tmp("bad");
    synthetic_set(&t.0.join("train"), 2, 64, 5);
    let data = t.0.join("train");
    let out = t.0.join("never");
    let check = |o: &TrainOptions, want: &str| {
        let err = tr::train(o, &mut |_| true).unwrap_err().to_string();
        assert!(err.contains(want), "expected {want:?} in: {err}");
        assert!(!o.out.exists(), "{} was created", o.out.display());
    };
    let base = || {
        let mut o = TrainOptions::new(
            &repo().join("models/nuclei"),
            &data.join("images"),
            &data.join("labels"),
            &out,
        );
        o.steps = 2;
        o.crop = 64;
        o.batch_size = 2;
        o
    };
    // missing folder
    let mut o = base();
    o.labels = t.0.join("nope");
    check(&o, "label folder");
    // an image without labels
    std::fs::copy(data.join("images/img0.tif"), t.0.join("extra.tif")).unwrap();
    let lonely = t.0.join("lonely");
    std::fs::create_dir_all(&lonely).unwrap();
    std::fs::copy(data.join("images/img0.tif"), lonely.join("other.tif")).unwrap();
    let mut o = base();
    o.images = lonely.clone();
    check(&o, "no label file");
    // shape mismatch
    let mism = t.0.join("mism");
    std::fs::create_dir_all(mism.join("images")).unwrap();
    std::fs::create_dir_all(mism.join("labels")).unwrap();
    write_labels(
        &mism.join("images/a.tif"),
        &vec![100; 64 * 64],
        64,
        64,
        true,
    )
    .unwrap();
    write_labels(&mism.join("labels/a.tif"), &vec![1; 64 * 48], 64, 48, true).unwrap();
    let mut o = base();
    o.images = mism.join("images");
    o.labels = mism.join("labels");
    check(&o, "64");
    // no objects at all
    write_labels(&mism.join("labels/a.tif"), &vec![0; 64 * 64], 64, 64, true).unwrap();
    check(&o, "no objects");
    // a package already in --out
    let full = t.0.join("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("manifest.json"), "{}").unwrap();
    let mut o = base();
    o.out = full.clone();
    let err = tr::train(&o, &mut |_| true).unwrap_err().to_string();
    assert!(err.contains("already holds a model package"), "{err}");
    // the parent's own folder
    let mut o = base();
    o.out = repo().join("models/nuclei");
    assert!(tr::train(&o, &mut |_| true).is_err());
    // a family that cannot be trained
    let fam = t.0.join("fam");
    std::fs::create_dir_all(&fam).unwrap();
    let m = std::fs::read_to_string(repo().join("models/nuclei/manifest.json")).unwrap();
    std::fs::write(
        fam.join("manifest.json"),
        m.replace("\"cellpose-flows\"", "\"stardist\""),
    )
    .unwrap();
    std::fs::copy(
        repo().join("models/nuclei/model.onnx"),
        fam.join("model.onnx"),
    )
    .unwrap();
    let mut o = base();
    o.from = fam;
    check(&o, "stardist");
    // out-of-range options
    let mut o = base();
    o.crop = 50;
    check(&o, "crop");
    let mut o = base();
    o.learning_rate = f64::NAN;
    check(&o, "learning rate");
}

#[test]
fn a_widened_network_computes_the_parent_on_equal_channels() {
    let bytes = std::fs::read(repo().join("models/nuclei/model.onnx")).unwrap();
    let mut net = Net::from_onnx(&bytes).unwrap();
    let mut wide = net.clone();
    wide.widen_input(3).unwrap();
    assert_eq!(wide.in_channels, 3);
    let x = example_crops(2, 64);
    let mut x3 = Value {
        shape: vec![2, 3, 64, 64],
        data: Vec::new(),
    };
    for n in 0..2 {
        let plane = &x.data[n * 64 * 64..(n + 1) * 64 * 64];
        for _ in 0..3 {
            x3.data.extend_from_slice(plane);
        }
    }
    let a = net.forward(x, false).unwrap();
    let b = wide.forward(x3, false).unwrap();
    let worst = a
        .output(&net)
        .data
        .iter()
        .zip(&b.output(&wide).data)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "{worst}");
    assert!(
        wide.widen_input(4).is_err(),
        "only a one-channel network widens"
    );
}

#[test]
fn a_three_channel_clone_runs_in_onnx_runtime_as_trained() {
    let t = tmp("wide");
    synthetic_set(&t.0.join("train"), 2, 80, 7);
    synthetic_set(&t.0.join("val"), 1, 80, 8);
    let out = t.0.join("rgb");
    let mut o = small_options(&t.0.join("train"), &t.0.join("val"), &out, 4);
    o.channels = Some(3);
    tr::train(&o, &mut |_| true).unwrap();
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["input"]["channels"], 3);
    assert_eq!(m["lineage"]["parameters"]["parent_channels"], 1);
    let bytes = std::fs::read(out.join("model.onnx")).unwrap();
    let mut net = Net::from_onnx(&bytes).unwrap();
    assert_eq!(net.in_channels, 3);
    if let Some(model) = load_model(&out) {
        let mut x = Value {
            shape: vec![1, 3, 64, 64],
            data: Vec::new(),
        };
        let one = example_crops(3, 64);
        x.data = one.data.clone();
        let ort = model
            .run_network(ArrayView4::from_shape((1, 3, 64, 64), &x.data).unwrap())
            .unwrap();
        let ours = net.forward(x, false).unwrap();
        let worst = ours
            .output(&net)
            .data
            .iter()
            .zip(&ort)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-4, "max |trainer − ORT| = {worst}");
    }
}

/// `cytoseg train --name` saves the clone in the user's models folder, where `cytoseg models`
/// and `--model NAME` find it; names that are taken or are not plain folder names are refused
/// before anything is written.
#[test]
fn a_clone_saved_by_name_is_offered_by_name() {
    let t = tmp("by-name");
    synthetic_set(&t.0.join("data"), 2, 64, 11);
    let user = t.0.join("user-models");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(common::cytoseg_exe())
            .args(args)
            .env("CYTOSEG_USER_MODELS", &user)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let (images, labels) = (t.0.join("data/images"), t.0.join("data/labels"));
    let train = |name: &str| {
        run(&[
            "train",
            "--images",
            images.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
            "--name",
            name,
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--crop",
            "64",
            "--diameter",
            "17",
            "-q",
        ])
    };
    for (bad, why) in [
        ("nuclei", "exists already"),
        ("../escape", "letters, digits"),
        (".hidden", "not starting with '.'"),
    ] {
        let (code, text) = train(bad);
        assert_eq!(code, Some(2), "{bad}: {text}");
        assert!(text.contains(why), "{bad}: {text}");
    }
    assert!(!user.exists(), "a refused name wrote something");

    let (code, text) = train("mycells");
    assert_eq!(code, Some(0), "{text}");
    assert!(user.join("mycells/manifest.json").is_file());
    let (code, text) = run(&["models"]);
    assert_eq!(code, Some(0), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("mycells "))
        .expect(&text);
    assert!(
        line.contains(user.join("mycells").to_str().unwrap()),
        "{line}"
    );
    assert!(
        text.contains("for: images like the training images"),
        "{text}"
    );
    if let Some(ort) = common::ort_library() {
        let example = repo().join("models/examples/nuclei_example.tif");
        let seg = t.0.join("seg");
        let (code, text) = run(&[
            "segment",
            example.to_str().unwrap(),
            "--model",
            "mycells",
            "--out",
            seg.to_str().unwrap(),
            "--ort-lib",
            ort.to_str().unwrap(),
            "-q",
        ]);
        assert_eq!(code, Some(0), "segment --model mycells: {text}");
        assert!(seg.join("nuclei_example_labels.tif").is_file());
    } else {
        eprintln!("SKIPPED the segment step: no ONNX Runtime library");
    }
    let (code, text) = train("mycells");
    assert_eq!(code, Some(2), "a second clone of the same name: {text}");
    assert!(text.contains("exists already"), "{text}");
}

/// Without `channels`, a one-channel parent is widened to 3 when every training image is colour,
/// and keeps its one channel when any image is grayscale.
#[test]
fn colour_training_images_give_a_colour_clone_by_default() {
    let t = tmp("auto-channels");
    let data = t.0.join("data");
    synthetic_set(&data, 3, 64, 5);
    // the images again as H x W x 3 colour .npy (equal channels), replacing the gray TIFFs
    for k in 0..3 {
        let tif = data.join(format!("images/img{k}.tif"));
        let img = read_image(&tif).unwrap();
        let gray = img.view().unwrap().plane(0);
        let rgb: Vec<f32> = gray.iter().flat_map(|&v| [v, v * 0.8, v * 0.5]).collect();
        std::fs::remove_file(&tif).unwrap();
        let mut f = std::fs::File::create(data.join(format!("images/img{k}.npy"))).unwrap();
        cytoseg::core::io::npy::write(&mut f, &[64, 64, 3], rgb).unwrap();
    }
    let channels_of = |out: &Path| {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap())
                .unwrap();
        m["input"]["channels"].as_u64().unwrap()
    };
    let mut o = small_options(&data, &data, &t.0.join("colour"), 1);
    o.val_images = None;
    o.val_labels = None;
    tr::train(&o, &mut |_| true).unwrap();
    assert_eq!(channels_of(&t.0.join("colour")), 3);
    // one grayscale image among them: the parent's single channel
    std::fs::remove_file(data.join("images/img2.npy")).unwrap();
    let gray = std::fs::read(data.join("labels/img2.tif")).unwrap();
    std::fs::write(data.join("images/img2.tif"), gray).unwrap();
    o.out = t.0.join("mixed");
    tr::train(&o, &mut |_| true).unwrap();
    assert_eq!(channels_of(&t.0.join("mixed")), 1);
}
