//! `cytoseg validate` on real reference images (four DSB2018 fluorescence nuclei images of the
//! shared sample): per-group scores and gate (`--pattern`, `--group-by`, `--recursive`), the
//! agreement of two annotators (the real labels and a second annotator made from them by a
//! known transformation), and the overlays and HTML page. Needs the shared data and ONNX
//! Runtime (skips, saying so, without either).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{cytoseg, run};
use cytoseg::core::io::labels::{read_labels, write_labels};
use cytoseg::core::metrics::overlay::{FN_COLOUR, FP_COLOUR, TP_COLOUR, is_outline};

/// Two groups of two images each (the smaller images of the sample).
const GROUP_A: [&str; 2] = ["003cee89357d", "0280fa8f60f6"];
const GROUP_B: [&str; 2] = ["00071198d059", "1400420310c9"];

/// The shared sample folder, or `None` (skip, saying so).
fn sample() -> Option<PathBuf> {
    let Some(data) = common::shared_data() else {
        eprintln!("SKIPPED: ../shared/data/dsb2018-fluo absent");
        return None;
    };
    Some(data.join("sample"))
}

/// Copies the images of both groups into `images/A/` and `images/B/` (or all into `images/`
/// when `flat`) and their labels into `truth/`; returns (images, truth).
fn reference_set(sample: &Path, dir: &Path, flat: bool) -> (PathBuf, PathBuf) {
    let (images, truth) = (dir.join("images"), dir.join("truth"));
    for (group, stems) in [("A", GROUP_A), ("B", GROUP_B)] {
        let to = if flat {
            images.clone()
        } else {
            images.join(group)
        };
        std::fs::create_dir_all(&to).unwrap();
        std::fs::create_dir_all(&truth).unwrap();
        for s in stems {
            let f = format!("{s}.tif");
            std::fs::copy(sample.join("images").join(&f), to.join(&f)).unwrap();
            std::fs::copy(sample.join("labels").join(&f), truth.join(&f)).unwrap();
        }
    }
    (images, truth)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The scores of a row of a `groups`/`annotators` section at `thresh`.
fn at(row: &serde_json::Value, thresh: f64) -> &serde_json::Value {
    row["dataset"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["thresh"].as_f64() == Some(thresh))
        .unwrap()
}

/// `cytoseg validate --images IMAGES --out OUT --truth T... ARGS...`, or `None` (skip).
fn validate(images: &Path, truths: &[&Path], out: &Path, args: &[&str]) -> Option<Command> {
    let mut c = cytoseg(&["validate"])?;
    c.arg("--images")
        .arg(images)
        .arg("--out")
        .arg(out)
        .args(args);
    for t in truths {
        c.arg("--truth").arg(t);
    }
    Some(c)
}

/// The object labels of a label image, ascending.
fn ids(labels: &[u32]) -> Vec<u32> {
    let mut ids: Vec<u32> = labels.iter().copied().filter(|&l| l != 0).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn count(d: &serde_json::Value, k: &str) -> u64 {
    d[k].as_u64().unwrap()
}

#[test]
fn validate_by_group_adds_up_and_gates_on_every_group() {
    let Some(sample) = sample() else { return };
    let dir = common::temp_dir("cli-validate-groups");
    let (images, truth) = reference_set(&sample, &dir, false);
    let out = dir.join("out");
    let grouped = |min_ap: &str| {
        let args = [
            "--recursive",
            "--pattern",
            "{site}/*.tif",
            "--group-by",
            "site",
        ];
        validate(&images, &[&truth], &out, &args).map(|mut c| {
            c.args(["--min-ap", min_ap]);
            c
        })
    };
    let Some(c) = grouped("0") else { return };
    let o = run(c);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    println!("{stdout}");
    assert_eq!(o.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("by site at IoU 0.50:"), "{stdout}");
    let report = json(&out.join("validation.json"));
    let rows = report["groups"]["rows"].as_array().unwrap();
    let keys: Vec<&str> = rows.iter().map(|r| r["key"][0].as_str().unwrap()).collect();
    assert_eq!(keys, ["A", "B"]);
    assert_eq!(report["groups"]["image_groups"]["B/1400420310c9"], "B");
    // Per-group object counts add up to the whole set's, at every threshold.
    for whole in report["evaluation"]["dataset"].as_array().unwrap() {
        let t = whole["thresh"].as_f64().unwrap();
        for k in ["n_true", "n_pred", "tp", "fp", "fn"] {
            let sum: u64 = rows.iter().map(|r| count(at(r, t), k)).sum();
            assert_eq!(sum, count(whole, k), "{k} at {t}");
        }
    }
    let csv = std::fs::read_to_string(out.join("validation_groups.csv")).unwrap();
    assert!(csv.starts_with("group,images,thresh,n_true,"), "{csv}");
    assert_eq!(csv.lines().count(), 1 + 3 * 3, "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("(all),4,0.5,")), "{csv}");
    for g in ["A", "B"] {
        assert!(csv.lines().any(|l| l.starts_with(&format!("{g},2,0.5,"))));
    }

    // A bar between the two groups' APs: the whole set may pass, one group does not.
    let ap = |r: &serde_json::Value| {
        let d = at(r, 0.5);
        count(d, "tp") as f64 / (count(d, "tp") + count(d, "fp") + count(d, "fn")) as f64
    };
    let (ap_a, ap_b) = (ap(&rows[0]), ap(&rows[1]));
    println!("AP at 0.5: group A {ap_a:.4}, group B {ap_b:.4}");
    assert!(ap_a != ap_b, "{ap_a} {ap_b}");
    let (low, high) = if ap_a < ap_b { ("A", "B") } else { ("B", "A") };
    let bar = (ap_a + ap_b) / 2.0;
    let o = run(grouped(&format!("{bar}")).unwrap());
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    let verdict = stdout.lines().last().unwrap();
    assert!(verdict.starts_with("FAIL"), "{verdict}");
    assert!(
        verdict.contains(&format!("group(s) below the bar: {low} (AP")),
        "{verdict}"
    );
    assert!(!verdict.contains(&format!("{high} (AP")), "{verdict}");
    let report = json(&out.join("validation.json"));
    assert_eq!(report["passed"], false);
    assert_eq!(report["groups"]["failing"], serde_json::json!([low]));

    // Without --group-by: no groups section, and the groups table of the earlier run is gone.
    let c = validate(&images, &[&truth], &out, &["--recursive", "--min-ap", "0"]).unwrap();
    assert_eq!(run(c).status.code(), Some(0));
    assert!(json(&out.join("validation.json")).get("groups").is_none());
    assert!(!out.join("validation_groups.csv").exists());
}

/// A second annotator: every 5th object (in label order) removed, the others dilated by one
/// pixel (4-neighbours) into the background; returns the labels and how many objects the
/// transformation should leave matched at IoU 0.5 (kept objects whose area over dilated area,
/// their IoU with the original, is at least 0.5).
fn second_annotator(t: &[u32], h: usize, w: usize) -> (Vec<u32>, u64, u64) {
    let removed: Vec<u32> = ids(t).into_iter().skip(4).step_by(5).collect();
    let kept: Vec<u32> = t
        .iter()
        .map(|&l| {
            if removed.binary_search(&l).is_ok() {
                0
            } else {
                l
            }
        })
        .collect();
    let mut out = kept.clone();
    for y in 0..h {
        for x in 0..w {
            if kept[y * w + x] != 0 {
                continue;
            }
            let mut n: Vec<u32> = [
                (y > 0).then(|| kept[(y - 1) * w + x]),
                (y + 1 < h).then(|| kept[(y + 1) * w + x]),
                (x > 0).then(|| kept[y * w + x - 1]),
                (x + 1 < w).then(|| kept[y * w + x + 1]),
            ]
            .into_iter()
            .flatten()
            .filter(|&l| l != 0)
            .collect();
            n.sort_unstable();
            if let Some(&l) = n.first() {
                out[y * w + x] = l;
            }
        }
    }
    let area = |img: &[u32]| {
        let mut a: BTreeMap<u32, u64> = BTreeMap::new();
        for &l in img.iter().filter(|&&l| l != 0) {
            *a.entry(l).or_default() += 1;
        }
        a
    };
    let (before, after) = (area(&kept), area(&out));
    let matched = before
        .iter()
        .filter(|(l, a)| (**a as f64 / after[l] as f64) as f32 >= 0.5)
        .count() as u64;
    (out, removed.len() as u64, matched)
}

#[test]
fn validate_against_two_annotators() {
    let Some(sample) = sample() else { return };
    let dir = common::temp_dir("cli-validate-annotators");
    let (images, alice) = reference_set(&sample, &dir, true);
    let alice_dir = dir.join("alice");
    std::fs::rename(&alice, &alice_dir).unwrap();
    let bob_dir = dir.join("bob");
    std::fs::create_dir_all(&bob_dir).unwrap();
    let (mut n_true, mut n_removed, mut n_matched) = (0u64, 0u64, 0u64);
    for s in GROUP_A.iter().chain(&GROUP_B) {
        let f = format!("{s}.tif");
        let (t, h, w) = read_labels(&alice_dir.join(&f)).unwrap();
        let (b, removed, matched) = second_annotator(&t, h, w);
        write_labels(&bob_dir.join(&f), &b, h, w, false).unwrap();
        n_true += ids(&t).len() as u64;
        n_removed += removed;
        n_matched += matched;
    }
    let out = dir.join("out");
    let Some(c) = validate(&images, &[&alice_dir, &bob_dir], &out, &["--min-ap", "0"]) else {
        return;
    };
    let o = run(c);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    println!("{stdout}");
    assert_eq!(o.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("annotators at IoU 0.50"), "{stdout}");
    let report = json(&out.join("validation.json"));
    let a = &report["annotators"];
    assert_eq!(a["names"], serde_json::json!(["alice", "bob"]));
    let rows = a["rows"].as_array().unwrap();
    let keys: Vec<String> = rows
        .iter()
        .map(|r| {
            r["key"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    assert_eq!(
        keys,
        [
            "alice|bob|annotators",
            "alice|model|model",
            "bob|model|model"
        ]
    );
    // Bob against Alice: exactly the removed objects are missed; every kept object the
    // dilation leaves above IoU 0.5 is matched, and nothing else.
    let d = at(&rows[0], 0.5);
    let (tp, fp, fn_) = (count(d, "tp"), count(d, "fp"), count(d, "fn"));
    println!(
        "alice vs bob at 0.5: {n_true} objects, {n_removed} removed, tp {tp} fp {fp} fn {fn_}, AP {:.4}, recall {:.4}",
        d["accuracy"], d["recall"]
    );
    assert_eq!(count(d, "n_true"), n_true);
    assert_eq!(count(d, "n_pred"), n_true - n_removed);
    assert_eq!(tp, n_matched);
    assert_eq!(fn_, n_true - n_matched);
    assert_eq!(fp, n_true - n_removed - n_matched);
    assert!(n_removed > 0 && d["recall"].as_f64().unwrap() < 1.0);
    let want_ap = n_matched as f64 / (n_matched + fp + fn_) as f64;
    assert!((d["accuracy"].as_f64().unwrap() - want_ap).abs() < 1e-12);
    // The model against Alice is the gate's evaluation; against Bob, on the same 4 images.
    let gate = report["gate"]["ap"].as_f64().unwrap();
    assert_eq!(at(&rows[1], 0.5)["accuracy"].as_f64().unwrap(), gate);
    assert_eq!(rows[2]["images"], 4);
    let csv = std::fs::read_to_string(out.join("validation_annotators.csv")).unwrap();
    assert!(
        csv.starts_with("reference,compared,kind,images,thresh,"),
        "{csv}"
    );
    assert!(
        csv.lines()
            .any(|l| l.starts_with("alice,bob,annotators,4,0.5,"))
    );
    assert!(csv.lines().any(|l| l.starts_with("bob,model,model,4,0.5,")));
    let html = std::fs::read_to_string(out.join("validation.html")).unwrap();
    assert!(html.contains("<h2>Annotators</h2>"));
}

/// The RGB pixels of a PNG.
fn png(path: &Path) -> image::RgbImage {
    image::open(path).unwrap().to_rgb8()
}

#[test]
fn validate_draws_overlays_and_lists_images_worst_first() {
    let Some(sample) = sample() else { return };
    let dir = common::temp_dir("cli-validate-overlays");
    let (images, truth) = reference_set(&sample, &dir, true);
    let out = dir.join("out");
    let rerun = || validate(&images, &[&truth], &out, &["--min-ap", "0"]);
    let Some(c) = rerun() else { return };
    assert_eq!(run(c).status.code(), Some(0));
    let stems: Vec<&str> = GROUP_A.iter().chain(&GROUP_B).copied().collect();
    for s in &stems {
        assert!(out.join(format!("overlays/{s}.png")).is_file(), "{s}");
    }

    // Change one image's truth against the predictions: take out the true object under the
    // largest prediction (which then has no true object: a false positive) and add a 7×7
    // true object where nothing was predicted (a false negative).
    let name = GROUP_A[0];
    let tpath = truth.join(format!("{name}.tif"));
    let (mut t, h, w) = read_labels(&tpath).unwrap();
    let (p, ph, pw) = read_labels(&out.join(format!("labels/{name}_labels.tif"))).unwrap();
    assert_eq!((h, w), (ph, pw));
    let mut areas: BTreeMap<u32, usize> = BTreeMap::new();
    for &l in p.iter().filter(|&&l| l != 0) {
        *areas.entry(l).or_default() += 1;
    }
    let (&fp_label, _) = areas.iter().max_by_key(|(l, a)| (**a, **l)).unwrap();
    let under: Vec<u32> = p
        .iter()
        .zip(&t)
        .filter(|(pl, tl)| **pl == fp_label && **tl != 0)
        .map(|(_, tl)| *tl)
        .collect();
    assert!(!under.is_empty());
    for l in t.iter_mut() {
        if under.contains(l) {
            *l = 0;
        }
    }
    let empty = |y0: usize, x0: usize| {
        (y0..y0 + 11).all(|y| (x0..x0 + 11).all(|x| t[y * w + x] == 0 && p[y * w + x] == 0))
    };
    let (y0, x0) = (0..h - 11)
        .flat_map(|y| (0..w - 11).map(move |x| (y, x)))
        .find(|&(y, x)| empty(y, x))
        .expect("an empty 11×11 window");
    let new_label = t.iter().max().unwrap() + 1;
    for y in y0 + 2..y0 + 9 {
        for x in x0 + 2..x0 + 9 {
            t[y * w + x] = new_label;
        }
    }
    std::fs::remove_file(&tpath).unwrap();
    write_labels(&tpath, &t, h, w, false).unwrap();

    let o = run(rerun().unwrap());
    assert_eq!(o.status.code(), Some(0));
    let img = png(&out.join(format!("overlays/{name}.png")));
    assert_eq!((img.width() as usize, img.height() as usize), (w, h));
    let colour = |x: usize, y: usize| img.get_pixel(x as u32, y as u32).0;
    // The added true object: its whole outline in the false-negative colour.
    for y in y0 + 2..y0 + 9 {
        for x in x0 + 2..x0 + 9 {
            let ring = y == y0 + 2 || y == y0 + 8 || x == x0 + 2 || x == x0 + 8;
            if ring {
                assert_eq!(colour(x, y), FN_COLOUR, "({x}, {y})");
            } else {
                assert_ne!(colour(x, y), FN_COLOUR, "({x}, {y})");
            }
        }
    }
    // The prediction left without a true object: its outline in the false-positive colour.
    let mut n_fp = 0;
    let mut n_tp = 0;
    for y in 0..h {
        for x in 0..w {
            if is_outline(&p, w, h, x, y) {
                if p[y * w + x] == fp_label {
                    assert_eq!(colour(x, y), FP_COLOUR, "({x}, {y})");
                    n_fp += 1;
                } else if colour(x, y) == TP_COLOUR {
                    n_tp += 1;
                }
            }
        }
    }
    assert!(n_fp > 0 && n_tp > 0, "{n_fp} {n_tp}");

    // The page lists the images worst first (AP at 0.5, then F1), each with its overlay.
    let report = json(&out.join("validation.json"));
    let mut order: Vec<(f64, f64, String)> = report["evaluation"]["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let m = &i["matching"][0];
            assert_eq!(m["thresh"], 0.5);
            (
                m["accuracy"].as_f64().unwrap(),
                m["f1"].as_f64().unwrap(),
                i["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    order.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let html = std::fs::read_to_string(out.join("validation.html")).unwrap();
    let positions: Vec<usize> = order
        .iter()
        .map(|(_, _, n)| {
            html.find(&format!("<div class=\"card\"><div><b>{n}</b>"))
                .unwrap()
        })
        .collect();
    println!("worst first: {order:?}");
    assert!(positions.windows(2).all(|p| p[0] < p[1]), "{positions:?}");
    assert_eq!(
        html.matches("src=\"data:image/png;base64,").count(),
        stems.len()
    );
    assert!(!html.contains("http://") && !html.contains("https://"));
}
