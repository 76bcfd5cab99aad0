//! `cytoseg segment` (batch) and `cytoseg validate` end to end: the DSB2018 sample folder into
//! labels, object tables, summary and manifest; an interrupted run resumed without redoing or
//! changing finished work; a failing image among good ones; stacks; the validation gate.
//! Needs ONNX Runtime (skips, saying so, without it).

mod common;

use common::{cytoseg, run};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cytoseg::core::io::labels::read_labels;
use sha2::{Digest, Sha256};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn example() -> PathBuf {
    root().join("models/examples/nuclei_example.tif")
}

fn sha(path: &Path) -> String {
    format!("{:x}", Sha256::digest(std::fs::read(path).unwrap()))
}

/// summary.csv as (file name → (status, objects, error)).
fn summary(out: &Path) -> BTreeMap<String, (String, u64, String)> {
    let text = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "file,status,error,planes,objects,area_mean,area_median,area_min,area_max,area_unit,seconds,sha256,\
         focus_laplacian,focus_spectrum_slope,saturated_fraction,background,signal,noise,\
         contrast_to_noise,dynamic_range,area_iqr,mean_cellprob,flow_error_median,flow_qc_removed_fraction"
    );
    lines
        .map(|l| {
            // The error field may be quoted and hold commas.
            let f: Vec<&str> = l.split(',').collect();
            let name = Path::new(f[0])
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let status = f[1].to_string();
            let objects = if status == "failed" {
                0
            } else {
                f[4].parse().unwrap()
            };
            (name, (status, objects, l.to_string()))
        })
        .collect()
}

/// Every output file (not the run files or records) with its SHA-256.
fn outputs(out: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with("_labels.tif") || n.ends_with("_objects.csv")
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                sha(&p),
            )
        })
        .collect()
}

#[test]
fn batch_over_the_sample_folder_writes_labels_tables_summary_and_manifest() {
    let Some(data) = common::shared_data() else {
        eprintln!("SKIPPED: ../shared/data/dsb2018-fluo absent");
        return;
    };
    let images = data.join("sample/images");
    let out = common::temp_dir("cli-segment-sample");
    let Some(mut c) = cytoseg(&["segment"]) else {
        return;
    };
    c.arg(&images).arg(example()).arg("--out").arg(&out);
    let o = run(c);
    assert!(o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("[11/11] ok"),
        "plain progress lines: {stderr}"
    );
    let s = summary(&out);
    assert_eq!(s.len(), 11);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    let model: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("models/nuclei/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["model"]["sha256"], model["model"]["sha256"]);
    assert_eq!(manifest["model"]["name"], "nuclei");
    assert_eq!(manifest["onnx_runtime"]["provider"], "cpu");
    assert!(
        manifest["onnx_runtime"]["version"]
            .as_str()
            .unwrap()
            .starts_with("1.")
    );
    assert_eq!(manifest["cytoseg_version"], env!("CARGO_PKG_VERSION"));
    for key in ["started_utc", "finished_utc"] {
        assert!(manifest[key].as_str().unwrap().ends_with('Z'));
    }
    for key in [
        "flow_threshold",
        "cellprob_threshold",
        "min_size",
        "tile_size",
        "diameter",
    ] {
        assert!(manifest["parameters"].get(key).is_some(), "{key}");
    }
    assert_eq!(manifest["counts"]["ok"], 11);
    for img in manifest["images"].as_array().unwrap() {
        let input = PathBuf::from(img["input"].as_str().unwrap());
        assert_eq!(img["sha256"].as_str().unwrap(), sha(&input));
        let stem = input.file_stem().unwrap().to_string_lossy().into_owned();
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        let (status, objects, _) = &s[&name];
        assert_eq!(status, "ok");
        // The labels hold as many objects as the summary says, and so does the table.
        let (labels, _, _) = read_labels(&out.join(format!("{stem}_labels.tif"))).unwrap();
        assert_eq!(*labels.iter().max().unwrap() as u64, *objects, "{name}");
        let table = std::fs::read_to_string(out.join(format!("{stem}_objects.csv"))).unwrap();
        assert_eq!(table.lines().count() as u64, objects + 1, "{name}");
        assert!(table.starts_with("label,area"), "{name}");
        assert!(
            table.lines().next().unwrap().contains("intensity_mean"),
            "{name}"
        );
    }
}

/// Inputs for the resume tests: four small images (DSB2018 samples when present, else copies
/// of the bundled example).
fn small_inputs(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let sources: Vec<PathBuf> = match common::shared_data() {
        Some(d) => [
            "00071198d059",
            "003cee89357d",
            "0280fa8f60f6",
            "02903040e19d",
        ]
        .iter()
        .map(|s| d.join(format!("sample/images/{s}.tif")))
        .collect(),
        None => (0..4).map(|_| example()).collect(),
    };
    sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let p = dir.join(format!("img{i}.tif"));
            std::fs::copy(s, &p).unwrap();
            p
        })
        .collect()
}

#[test]
fn an_interrupted_run_resumes_without_redoing_or_changing_finished_work() {
    let dir = common::temp_dir("cli-segment-resume");
    small_inputs(&dir.join("in"));
    let (reference, out) = (dir.join("reference"), dir.join("out"));
    let seg = |out: &Path| {
        cytoseg(&["segment", "--jobs", "1"]).map(|mut c| {
            c.arg(dir.join("in")).arg("--out").arg(out);
            c
        })
    };
    let Some(c) = seg(&reference) else { return };
    assert!(run(c).status.success());
    let want = outputs(&reference);
    assert_eq!(want.len(), 8);

    // Killed while the third image was being written: labels written, table and record not.
    let mut c = seg(&out).unwrap();
    c.env("CYTOSEG_TEST_CRASH_AFTER", "2");
    assert!(!run(c).status.success());
    let partial = outputs(&out);
    assert!(partial.contains_key("img2_labels.tif") && !partial.contains_key("img2_objects.csv"));
    assert!(!partial.contains_key("img3_labels.tif"));
    assert!(!out.join("summary.csv").exists());
    // A temporary file as a run killed inside a write leaves it (pid 999999999 is not alive).
    let stale = out.join(".img3_labels.tif.tmp-999999999");
    std::fs::write(&stale, b"partial").unwrap();
    let mtime = |p: &str| std::fs::metadata(out.join(p)).unwrap().modified().unwrap();
    let first_done = mtime("img0_labels.tif");

    // Resumed: the two finished images are skipped, the rest done, everything as a clean run.
    let o = run(seg(&out).unwrap());
    assert!(o.status.success());
    let s = summary(&out);
    let status: Vec<&str> = s.values().map(|v| v.0.as_str()).collect();
    assert_eq!(status, ["skipped", "skipped", "ok", "ok"], "{s:?}");
    assert_eq!(outputs(&out), want);
    assert_eq!(
        mtime("img0_labels.tif"),
        first_done,
        "finished work untouched"
    );
    assert!(!stale.exists(), "stale temporary file removed");
    // Skipped images keep their counts in the summary.
    for (k, v) in summary(&reference) {
        assert_eq!(s[&k].1, v.1, "{k}");
    }

    // A damaged output is noticed (hash) and only that image is redone.
    std::fs::write(out.join("img1_objects.csv"), "label\n").unwrap();
    std::fs::remove_file(out.join("img3_labels.tif")).unwrap();
    assert!(run(seg(&out).unwrap()).status.success());
    let status: Vec<String> = summary(&out).values().map(|v| v.0.clone()).collect();
    assert_eq!(status, ["skipped", "ok", "skipped", "ok"]);
    assert_eq!(outputs(&out), want);

    // Files not made by this kind of run are never replaced without --overwrite.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("img0_labels.tif"), b"mine").unwrap();
    let o = run(seg(&other).unwrap());
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        std::fs::read(other.join("img0_labels.tif")).unwrap(),
        b"mine"
    );
    let s = summary(&other);
    assert_eq!(s["img0.tif"].0, "failed");
    assert!(
        s["img0.tif"].2.contains("--overwrite"),
        "{:?}",
        s["img0.tif"]
    );
    let mut c = seg(&other).unwrap();
    c.arg("--overwrite");
    assert!(run(c).status.success());
    assert_eq!(outputs(&other), want);
}

#[test]
fn a_failing_image_is_reported_and_the_others_go_on() {
    let dir = common::temp_dir("cli-segment-fail");
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(example(), input.join("good.tif")).unwrap();
    std::fs::copy(
        root().join("tests/fixtures/images/broken_truncated.tif"),
        input.join("truncated.tif"),
    )
    .unwrap();
    std::fs::write(input.join("notes.txt"), "not an image").unwrap();
    let out = dir.join("out");
    let Some(mut c) = cytoseg(&["segment"]) else {
        return;
    };
    c.arg(input.join("*.tif"))
        .arg(input.join("notes.txt"))
        .arg("--out")
        .arg(&out);
    let o = run(c);
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("FAILED") && stderr.contains("truncated.tif"),
        "{stderr}"
    );
    let s = summary(&out);
    assert_eq!(s["good.tif"].0, "ok");
    assert_eq!(s["truncated.tif"].0, "failed");
    assert!(
        s["truncated.tif"].2.contains("truncated"),
        "{:?}",
        s["truncated.tif"]
    );
    assert_eq!(s["notes.txt"].0, "failed");
    assert!(s["notes.txt"].2.contains("unsupported image type"));
    assert!(out.join("good_labels.tif").exists());
    assert!(!out.join("truncated_labels.tif").exists());
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(m["counts"]["failed"], 2);

    // Two inputs that would write the same outputs: refused before any work.
    let (a, b) = (dir.join("a"), dir.join("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::copy(example(), d.join("x.tif")).unwrap();
    }
    let mut c = cytoseg(&["segment"]).unwrap();
    c.arg(a.join("x.tif"))
        .arg(b.join("x.tif"))
        .arg("--out")
        .arg(dir.join("clash"));
    let o = run(c);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("would write the same outputs"));
}

#[test]
fn stacks_are_segmented_plane_by_plane_with_axes_and_calibration_kept() {
    let out = common::temp_dir("cli-segment-stack");
    let Some(mut c) = cytoseg(&["segment", "-q"]) else {
        return;
    };
    c.arg(root().join("tests/fixtures/images/imagej_tzcyx.tif"))
        .arg("--out")
        .arg(&out);
    let o = run(c);
    assert!(o.status.success());
    assert!(o.stderr.is_empty(), "--quiet prints nothing");
    let s = cytoseg::core::io::image::read_stack(&out.join("imagej_tzcyx_labels.tif")).unwrap();
    assert_eq!(s.plane_axes, vec![('t', 2), ('z', 3)]);
    assert_eq!(s.calibration.unit, "µm");
    assert_eq!(s.calibration.pixel_width, 0.5);
    let table = std::fs::read_to_string(out.join("imagej_tzcyx_objects.csv")).unwrap();
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("t,z,label,area [µm^2]") || header.starts_with("t,z,label,area [µm²]"),
        "{header}"
    );
    assert!(
        header.contains("intensity_mean-1"),
        "both channels measured: {header}"
    );
}

#[test]
fn validate_gates_on_the_ap_bar() {
    let dir = common::temp_dir("cli-validate");
    let (images, truth) = (dir.join("images"), dir.join("truth"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&truth).unwrap();
    std::fs::copy(example(), images.join("nuclei_example.tif")).unwrap();
    std::fs::copy(
        root().join("models/examples/nuclei_example_labels.tif"),
        truth.join("nuclei_example_labels.tif"),
    )
    .unwrap();
    let validate = |min_ap: &str, threshold: &str| {
        cytoseg(&["validate", "--min-ap", min_ap, "--threshold", threshold]).map(|mut c| {
            c.arg("--images")
                .arg(&images)
                .arg("--truth")
                .arg(&truth)
                .arg("--out")
                .arg(dir.join("out"));
            c
        })
    };
    let Some(c) = validate("0.0", "0.5") else {
        return;
    };
    let o = run(c);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("PASS"));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/validation.json")).unwrap())
            .unwrap();
    assert_eq!(report["passed"], true);
    let csv = std::fs::read_to_string(dir.join("out/validation.csv")).unwrap();
    assert!(
        csv.lines().any(|l| l.starts_with("nuclei_example,0.5,")),
        "{csv}"
    );
    // The strictest reported threshold has an AP below 1 on this image. The AP is recomputed
    // from the counts (`tp / (tp + fp + fn)`, as the gate does): serde_json's float parsing may
    // be one ulp off the printed value, and "exactly at the bar" must be exact.
    let (t, ap) = report["evaluation"]["dataset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let count = |k: &str| d[k].as_f64().unwrap();
            let ap = count("tp") / (count("tp") + count("fp") + count("fn"));
            assert!((ap - d["accuracy"].as_f64().unwrap()).abs() < 1e-12);
            (d["thresh"].as_f64().unwrap(), ap)
        })
        .fold((0.0, 2.0), |a, b| if b.1 < a.1 { b } else { a });
    assert!(ap > 0.0 && ap < 1.0, "{t} {ap}");
    let t = format!("{t}");

    // Just above the achieved AP: fails with exit status 1 (labels of the first run reused).
    let o = run(validate(&format!("{}", ap + 1e-6), &t).unwrap());
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("FAIL"));
    // Exactly at the bar passes.
    let o = run(validate(&format!("{ap}"), &t).unwrap());
    assert_eq!(o.status.code(), Some(0));
}

/// `--do-3d --anisotropy 2` and `--stitch-threshold 0.25` on the synthetic nuclei z-stack: the
/// label stacks equal the Cellpose-pipeline fixtures of `tests/volume_pipeline_parity.rs`, the
/// objects tables measure volumes, the labels keep their z spacing; bad requests are refused
/// with errors that say why.
#[test]
fn z_stacks_become_3d_objects_with_do_3d_or_stitching() {
    let dir = common::temp_dir("cli-segment-3d");
    let fixtures = root().join("tests/fixtures/volume_pipeline");
    let stack = fixtures.join("nuclei_stack.tif");
    for (args, fixture) in [
        (&["--do-3d", "--anisotropy", "2"][..], "nuclei_3d_a2"),
        (&["--stitch-threshold", "0.25"][..], "nuclei_stitch"),
    ] {
        let out = dir.join(fixture);
        let Some(mut c) = cytoseg(&["segment", "-q"]) else {
            return;
        };
        c.arg(&stack)
            .args(args)
            .args(["--tiling", "cellpose", "--out"])
            .arg(&out);
        let o = run(c);
        assert!(
            o.status.success(),
            "{fixture}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let labels = out.join("nuclei_stack_labels.tif");
        let (got, planes, h, w) = cytoseg::core::io::labels::read_label_stack(&labels).unwrap();
        let mut npz = ndarray_npy::NpzReader::new(
            std::fs::File::open(fixtures.join(format!("{fixture}.npz"))).unwrap(),
        )
        .unwrap();
        let want: ndarray::Array3<u32> = npz.by_name("labels").unwrap();
        assert_eq!((planes, h, w), want.dim(), "{fixture}");
        assert!(
            got.iter().zip(want.iter()).all(|(a, b)| a == b),
            "{fixture}: labels differ from Cellpose's"
        );
        let objects = *want.iter().max().unwrap() as u64;
        let s = summary(&out);
        assert_eq!(s["nuclei_stack.tif"].1, objects, "{fixture}");
        assert!(s["nuclei_stack.tif"].2.contains("pixel^3"), "{:?}", s);
        let table = std::fs::read_to_string(out.join("nuclei_stack_objects.csv")).unwrap();
        let header = table.lines().next().unwrap();
        assert!(
            header.starts_with("label,area")
                && header.contains("centroid-2")
                && header.contains("bbox-5,"),
            "{fixture}: {header}"
        );
        assert_eq!(table.lines().count() as u64, objects + 1, "{fixture}");
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
        let mode = if fixture.contains("3d") {
            "do_3d"
        } else {
            "stitch"
        };
        assert_eq!(m["options"]["stacks"]["mode"], mode);
    }
    // The 3-D labels record their z spacing (anisotropy 2 × 1 pixel): a stack segmented with
    // another anisotropy than its file says is refused.
    let labels = dir.join("nuclei_3d_a2/nuclei_stack_labels.tif");
    let back = cytoseg::core::io::image::read_stack(&labels).unwrap();
    assert_eq!(back.calibration.z_spacing, Some(2.0));
    // `cytoseg measure` takes that z spacing from the label stack: the same table as the batch's.
    let table = dir.join("measured.csv");
    let mut c = std::process::Command::new(common::cytoseg_exe());
    c.args(["measure", "--labels"])
        .arg(&labels)
        .arg("--image")
        .arg(&stack)
        .arg("--out")
        .arg(&table);
    assert!(run(c).status.success());
    assert_eq!(
        std::fs::read_to_string(&table).unwrap(),
        std::fs::read_to_string(dir.join("nuclei_3d_a2/nuclei_stack_objects.csv")).unwrap()
    );
    let out = dir.join("mismatch");
    let mut c = cytoseg(&["segment", "-q"]).unwrap();
    c.arg(&labels)
        .args(["--do-3d", "--anisotropy", "3", "--out"])
        .arg(&out);
    assert_eq!(run(c).status.code(), Some(1));
    let s = summary(&out);
    assert!(
        s["nuclei_stack_labels.tif"]
            .2
            .contains("disagrees with the image's z spacing"),
        "{s:?}"
    );
    // A 2-D image is not a z-stack.
    let out = dir.join("flat");
    let mut c = cytoseg(&["segment", "-q"]).unwrap();
    c.arg(example()).args(["--do-3d", "--out"]).arg(&out);
    assert_eq!(run(c).status.code(), Some(1));
    let s = summary(&out);
    assert!(
        s["nuclei_example.tif"]
            .2
            .contains("is a 2-D image (1 plane)"),
        "{s:?}"
    );
    // Parameter errors stop the run before any image (exit 2).
    for (args, says) in [
        (&["--anisotropy", "2"][..], "--do-3d"),
        (
            &["--do-3d", "--stitch-threshold", "0.25"][..],
            "cannot be used with",
        ),
        (&["--do-3d", "--anisotropy", "0"][..], "anisotropy 0"),
        (&["--stitch-threshold", "-1"][..], "stitch threshold -1"),
    ] {
        let mut c = cytoseg(&["segment", "-q"]).unwrap();
        c.arg(&stack).args(args).arg("--out").arg(dir.join("bad"));
        let o = run(c);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
