//! Parity of `cytoseg::core::metrics` with stardist.matching 0.9.2 and cellpose.metrics
//! 4.2.1.1, on the committed fixtures in tests/fixtures/metrics (written by
//! tests/parity/make_metric_fixtures.py) and, when the reference Python environment is
//! available, on freshly generated cases.
//!
//! Comparisons are exact: integer counts equal, every float equal bit for bit in the type the
//! reference produces (float32 values compared as float32, float64 as float64), NaN where the
//! reference has NaN.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use cytoseg::core::metrics::{
    self, Criterion, DatasetMatchingStats, MatchingStats, aggregated_jaccard_index,
    average_precision, boundary_scores, mask_ious, matching, matching_dataset,
};
use ndarray::{Array1, Array2, Array3, Array4};
use ndarray_npy::NpzReader;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Collects mismatches instead of stopping at the first one.
#[derive(Default)]
struct Report {
    checked: usize,
    failures: Vec<String>,
}

impl Report {
    fn fail(&mut self, msg: String) {
        if self.failures.len() < 200 {
            self.failures.push(msg);
        }
    }

    fn f64_eq(&mut self, what: &str, got: f64, want: f64) {
        self.checked += 1;
        // Bit equality; NaN matches NaN, and +0.0 matches -0.0.
        let same = (got.is_nan() && want.is_nan())
            || got.to_bits() == want.to_bits()
            || (got == 0.0 && want == 0.0);
        if !same {
            self.fail(format!(
                "{what}: got {got:?} ({:#x}), want {want:?} ({:#x})",
                got.to_bits(),
                want.to_bits()
            ));
        }
    }

    fn f32_eq(&mut self, what: &str, got: f32, want: f32) {
        self.checked += 1;
        let same = (got.is_nan() && want.is_nan())
            || got.to_bits() == want.to_bits()
            || (got == 0.0 && want == 0.0);
        if !same {
            self.fail(format!("{what}: got {got:?}, want {want:?}"));
        }
    }

    fn eq<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, got: T, want: T) {
        self.checked += 1;
        if got != want {
            self.fail(format!("{what}: got {got:?}, want {want:?}"));
        }
    }
}

fn read<T, D>(npz: &mut NpzReader<File>, name: &str) -> ndarray::Array<T, D>
where
    T: ndarray_npy::ReadableElement,
    D: ndarray::Dimension,
{
    npz.by_name(name)
        .unwrap_or_else(|e| panic!("fixture array {name}: {e}"))
}

/// The 12 numeric stardist fields, in the fixture's column order.
fn stat_row(s: &MatchingStats) -> [f64; 12] {
    [
        s.fp as f64,
        s.tp as f64,
        s.fn_ as f64,
        s.precision,
        s.recall,
        s.accuracy,
        s.f1,
        s.n_true as f64,
        s.n_pred as f64,
        s.mean_true_score,
        s.mean_matched_score,
        s.panoptic_quality,
    ]
}

fn dataset_row(s: &DatasetMatchingStats) -> [f64; 12] {
    [
        s.fp as f64,
        s.tp as f64,
        s.fn_ as f64,
        s.precision,
        s.recall,
        s.accuracy,
        s.f1,
        s.n_true as f64,
        s.n_pred as f64,
        s.mean_true_score,
        s.mean_matched_score,
        s.panoptic_quality,
    ]
}

const FIELDS: [&str; 12] = [
    "fp",
    "tp",
    "fn",
    "precision",
    "recall",
    "accuracy",
    "f1",
    "n_true",
    "n_pred",
    "mean_true_score",
    "mean_matched_score",
    "panoptic_quality",
];

fn compare_stats(rep: &mut Report, ctx: &str, got: &[f64; 12], want: ndarray::ArrayView1<f64>) {
    for (k, f) in FIELDS.iter().enumerate() {
        if f == &"mean_true_score" {
            // A float32 field: equal as float32 (and the f64 holds exactly that value).
            rep.f32_eq(&format!("{ctx} {f}"), got[k] as f32, want[k] as f32);
        }
        rep.f64_eq(&format!("{ctx} {f}"), got[k], want[k]);
    }
}

/// One ground truth of a fixture group with its settings.
struct Group<'a> {
    truth: &'a Array2<u32>,
    thresholds: &'a [f64],
    scales: &'a [f64],
}

/// Checks one variant (prediction) of a group and returns the prediction.
fn check_variant(
    rep: &mut Report,
    npz: &mut NpzReader<File>,
    ctx: &str,
    v: &str,
    group: &Group<'_>,
    with_cellpose: bool,
) -> Array2<u32> {
    let Group {
        truth,
        thresholds,
        scales,
    } = *group;
    let pred: Array2<u32> = read(npz, &format!("{v}__pred"));
    let t = truth.as_slice().expect("standard layout");
    let p = pred.as_slice().expect("standard layout");
    let sd_stats: Array3<f64> = read(npz, &format!("{v}__sd_stats"));
    let sd_pairs: Array4<u32> = read(npz, &format!("{v}__sd_pairs"));
    let sd_scores: Array3<f32> = read(npz, &format!("{v}__sd_scores"));
    let sd_ok: Array3<u8> = read(npz, &format!("{v}__sd_ok"));
    for (ci, c) in Criterion::ALL.into_iter().enumerate() {
        let plain = matching(t, p, thresholds, c, false).expect("matching");
        let reported = matching(t, p, thresholds, c, true).expect("matching with report");
        let m = sd_pairs.shape()[2];
        for (k, &thr) in thresholds.iter().enumerate() {
            let cx = format!("{ctx} {c} thr={thr}");
            let want = sd_stats.slice(ndarray::s![ci, k, ..]);
            rep.eq(&format!("{cx} criterion"), plain[k].criterion, c);
            rep.f64_eq(&format!("{cx} thresh"), plain[k].thresh, thr);
            compare_stats(rep, &cx, &stat_row(&plain[k]), want);
            compare_stats(
                rep,
                &format!("{cx} (report)"),
                &stat_row(&reported[k]),
                want,
            );
            let Some(r) = reported[k].report.as_ref() else {
                rep.fail(format!("{cx}: no report"));
                continue;
            };
            let want_pairs: Vec<(u32, u32)> = (0..m)
                .map(|i| (sd_pairs[[ci, k, i, 0]], sd_pairs[[ci, k, i, 1]]))
                .collect();
            rep.eq(
                &format!("{cx} matched_pairs"),
                &r.matched_pairs,
                &want_pairs,
            );
            let want_scores: Vec<u32> = (0..m).map(|i| sd_scores[[ci, k, i]].to_bits()).collect();
            let got_scores: Vec<u32> = r.matched_scores.iter().map(|x| x.to_bits()).collect();
            rep.eq(&format!("{cx} matched_scores"), got_scores, want_scores);
            let want_tps: Vec<usize> = (0..m).filter(|&i| sd_ok[[ci, k, i]] != 0).collect();
            rep.eq(&format!("{cx} matched_tps"), &r.matched_tps, &want_tps);
        }
    }
    if with_cellpose {
        let a = average_precision(t, p, thresholds).expect("average_precision");
        let want: Array2<f32> = read(npz, &format!("{v}__cp_ap"));
        for (row, (name, got)) in [("ap", &a.ap), ("tp", &a.tp), ("fp", &a.fp), ("fn", &a.fn_)]
            .into_iter()
            .enumerate()
        {
            rep.eq(
                &format!("{ctx} cellpose {name} len"),
                got.len(),
                want.shape()[1],
            );
            for (k, &g) in got.iter().enumerate() {
                rep.f32_eq(
                    &format!("{ctx} cellpose {name}[thr={}]", thresholds[k]),
                    g,
                    want[[row, k]],
                );
            }
        }
        let m = mask_ious(t, p).expect("mask_ious");
        let iout: Array1<f64> = read(npz, &format!("{v}__cp_iout"));
        let preds: Array1<i64> = read(npz, &format!("{v}__cp_preds"));
        rep.eq(&format!("{ctx} mask_ious len"), m.iout.len(), iout.len());
        for (l, (&g, &w)) in m.iout.iter().zip(iout.iter()).enumerate() {
            rep.f64_eq(&format!("{ctx} mask_ious iout[{l}]"), g, w);
        }
        let got_preds: Vec<i64> = m.preds.iter().map(|&x| x as i64).collect();
        rep.eq(&format!("{ctx} mask_ious preds"), got_preds, preds.to_vec());
        let scores: Array1<f64> = read(npz, &format!("{v}__cp_scores"));
        let got = aggregated_jaccard_index(t, p).expect("aji");
        rep.f64_eq(&format!("{ctx} aggregated_jaccard_index"), got, scores[0]);
        let b = boundary_scores(&[truth.view()], &[pred.view()], scales).expect("boundary_scores");
        let ns = scales.len();
        for (q, (key, got)) in [
            ("precision", &b.precision),
            ("recall", &b.recall),
            ("fscore", &b.fscore),
        ]
        .into_iter()
        .enumerate()
        {
            for (j, &s) in scales.iter().enumerate() {
                rep.f64_eq(
                    &format!("{ctx} boundary {key}[scale={s}]"),
                    got[j][0],
                    scores[1 + q * ns + j],
                );
            }
        }
    }
    pred
}

fn check_dir(dir: &Path) -> Report {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json"),
    )
    .expect("manifest.json is JSON");
    let mut rep = Report::default();
    let mut pairs: Vec<(Array2<u32>, Array2<u32>)> = Vec::new();
    let mut index: Vec<(String, String)> = Vec::new();
    let mut thresholds_all: Vec<f64> = Vec::new();
    for g in manifest["groups"].as_array().expect("groups") {
        let file = g["file"].as_str().expect("file");
        let mut npz = NpzReader::new(File::open(dir.join(file)).expect("group file")).expect("npz");
        let truth: Array2<u32> = read(&mut npz, "y_true");
        let thresholds: Array1<f64> = read(&mut npz, "thresholds");
        let scales: Array1<f64> = read(&mut npz, "scales");
        thresholds_all = thresholds.to_vec();
        let variants = g["variants"].as_array().expect("variants");
        let cellpose = g["cellpose"].as_array().expect("cellpose");
        for (v, cp) in variants.iter().zip(cellpose) {
            let v = v.as_str().expect("variant");
            let ctx = format!("{file}:{v}");
            let pred = check_variant(
                &mut rep,
                &mut npz,
                &ctx,
                v,
                &Group {
                    truth: &truth,
                    thresholds: thresholds.as_slice().expect("1-D"),
                    scales: scales.as_slice().expect("1-D"),
                },
                cp.as_bool().unwrap_or(false),
            );
            pairs.push((truth.clone(), pred));
            index.push((file.to_string(), v.to_string()));
        }
    }
    // Dataset-level aggregation over every case, in manifest order.
    let members = manifest["dataset"]["members"].as_array().expect("members");
    rep.eq("dataset member count", members.len(), index.len());
    for (m, (f, v)) in members.iter().zip(&index) {
        rep.eq(
            "dataset member",
            (m[0].as_str().unwrap_or(""), m[1].as_str().unwrap_or("")),
            (f.as_str(), v.as_str()),
        );
    }
    let mut npz =
        NpzReader::new(File::open(dir.join("dataset.npz")).expect("dataset.npz")).expect("npz");
    let ys_true: Vec<&[u32]> = pairs
        .iter()
        .map(|(t, _)| t.as_slice().expect("layout"))
        .collect();
    let ys_pred: Vec<&[u32]> = pairs
        .iter()
        .map(|(_, p)| p.as_slice().expect("layout"))
        .collect();
    let ds: Array4<f64> = read(&mut npz, "ds_stats");
    for (ci, c) in Criterion::ALL.into_iter().enumerate() {
        for by_image in [false, true] {
            let got = matching_dataset(&ys_true, &ys_pred, &thresholds_all, c, by_image)
                .expect("matching_dataset");
            for (k, g) in got.iter().enumerate() {
                let ctx = format!("dataset {c} by_image={by_image} thr={}", thresholds_all[k]);
                rep.eq(&format!("{ctx} by_image"), g.by_image, by_image);
                let want = ds.slice(ndarray::s![ci, usize::from(by_image), k, ..]);
                compare_stats(&mut rep, &ctx, &dataset_row(g), want);
            }
        }
    }
    rep
}

fn finish(rep: Report, what: &str) {
    if !rep.failures.is_empty() {
        panic!(
            "{what}: {} mismatches (of {} checked values), first ones:\n{}",
            rep.failures.len(),
            rep.checked,
            rep.failures
                .iter()
                .take(40)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    eprintln!("{what}: {} values identical to the reference", rep.checked);
}

#[test]
fn committed_fixtures_match_reference() {
    let dir = repo().join("tests/fixtures/metrics");
    assert!(
        dir.join("manifest.json").exists(),
        "missing {}",
        dir.display()
    );
    finish(check_dir(&dir), "committed metric fixtures");
}

#[test]
fn serialized_field_names_are_stardists() {
    let t = [0u32, 1, 1, 2];
    let s = matching(&t, &t, &[0.5], Criterion::Iou, false).unwrap();
    let v = serde_json::to_value(&s[0]).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    for k in [
        "criterion",
        "thresh",
        "fp",
        "tp",
        "fn",
        "precision",
        "recall",
        "accuracy",
        "f1",
        "n_true",
        "n_pred",
        "mean_true_score",
        "mean_matched_score",
        "panoptic_quality",
    ] {
        assert!(keys.contains(&k), "missing {k} in {keys:?}");
    }
    let d = metrics::matching_dataset(&[&t[..]], &[&t[..]], &[0.5], Criterion::Iot, true).unwrap();
    let v = serde_json::to_value(&d[0]).unwrap();
    assert_eq!(v["by_image"], serde_json::Value::Bool(true));
    assert_eq!(v["criterion"], "iot");
}

/// Generates new cases with the reference Python (a new seed each run, printed; set
/// `CYTOSEG_LIVE_SEED` to repeat one, `CYTOSEG_LIVE_N_REAL` / `CYTOSEG_LIVE_MAX_SIDE` for more or
/// larger real crops than the default 3 × 128²) and compares. Skips, saying why, when the Python
/// environment or the DSB data is not available.
#[test]
fn live_reference_parity() {
    let python = std::env::var_os("CYTOSEG_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    if !python.exists() {
        eprintln!(
            "live_reference_parity: skipped, no Python at {} (set CYTOSEG_PYTHON)",
            python.display()
        );
        return;
    }
    let probe = Command::new(&python)
        .args([
            "-c",
            "import stardist.matching, cellpose.metrics, skimage, scipy",
        ])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "live_reference_parity: skipped, {} cannot import stardist.matching/cellpose.metrics: {}",
                python.display(),
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            return;
        }
        Err(e) => {
            eprintln!(
                "live_reference_parity: skipped, cannot run {}: {e}",
                python.display()
            );
            return;
        }
    }
    let train = repo().join("../shared/data/dsb2018-fluo/train.npz");
    if !train.exists() {
        eprintln!(
            "live_reference_parity: skipped, {} is absent",
            train.display()
        );
        return;
    }
    let seed: u64 = std::env::var("CYTOSEG_LIVE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |d| d.as_secs() % 100_000)
                + 1
        });
    let n_real = std::env::var("CYTOSEG_LIVE_N_REAL").unwrap_or_else(|_| "3".into());
    let max_side = std::env::var("CYTOSEG_LIVE_MAX_SIDE").unwrap_or_else(|_| "128".into());
    let out = std::env::temp_dir().join(format!(
        "cytoseg-metrics-live-{}-{seed}",
        std::process::id()
    ));
    let status = Command::new(&python)
        .arg(repo().join("tests/parity/make_metric_fixtures.py"))
        .args([
            "--seed",
            &seed.to_string(),
            "--n-real",
            &n_real,
            "--max-side",
            &max_side,
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run make_metric_fixtures.py");
    assert!(
        status.status.success(),
        "make_metric_fixtures.py failed (seed {seed}):\n{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let rep = check_dir(&out);
    let _ = std::fs::remove_dir_all(&out);
    finish(
        rep,
        &format!("live cases (seed {seed}, CYTOSEG_LIVE_SEED={seed} to repeat)"),
    );
}

/// `cytoseg evaluate` on label stacks scores them in 3-D, as stardist.matching on (Z, Y, X)
/// arrays: the truth of committed 3-D flow cases against cellpose's masks, written as `.npy`
/// stacks, against `tests/fixtures/metrics/volume_matching.json` (made by stardist 0.9.2,
/// `tests/parity/make_volume_metric_fixture.py`). Counts equal, floats bit for bit.
#[test]
fn evaluate_scores_label_stacks_in_3d_as_stardist() {
    let root = repo().join("tests/fixtures");
    let want: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("metrics/volume_matching.json")).unwrap(),
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("cytoseg-eval3d-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rep = Report::default();
    for (name, rows) in want.as_object().unwrap() {
        let mut npz =
            NpzReader::new(File::open(root.join(format!("volume/{name}.npz"))).unwrap()).unwrap();
        let truth: Array3<u32> = read(&mut npz, "truth");
        let pred: Array3<u32> = read(&mut npz, "expected");
        ndarray_npy::write_npy(dir.join("truth.npy"), &truth).unwrap();
        ndarray_npy::write_npy(dir.join("pred.npy"), &pred).unwrap();
        let out = Command::new(common::cytoseg_exe())
            .args(["evaluate", "--overwrite", "--truth"])
            .arg(dir.join("truth.npy"))
            .arg("--pred")
            .arg(dir.join("pred.npy"))
            .arg("--json")
            .arg(dir.join("report.json"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap())
                .unwrap();
        let got = &got["images"][0]["matching"];
        for (k, row) in rows.as_array().unwrap().iter().enumerate() {
            for (field, w) in row.as_object().unwrap() {
                let g = &got[k][field];
                let what = format!("{name} thresh {} {field}", row["thresh"]);
                match (g.as_f64(), w.as_f64()) {
                    (Some(g), Some(w)) => rep.f64_eq(&what, g, w),
                    _ => rep.fail(format!("{what}: got {g}, want {w}")),
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    finish(rep, "3-D stardist matching through cytoseg evaluate");
}
