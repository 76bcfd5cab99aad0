//! Quality control on real images with known faults: DSB2018 fluorescence nuclei (the 360×360
//! series of `train.npz`, one acquisition series: its first 50 images clean, the next 25 each
//! given one fault) run through `cytoseg segment --qc`; the flags must find the faulty images
//! with precision and recall ≥ 0.9. A simulated second instrument (gain 0.7, offset +6, blur
//! σ 1 on half of the clean images) must be reported as drift, two random halves of the clean
//! images must not. Prints the numbers (run with `--nocapture` to see them). Needs the shared
//! data and ONNX Runtime (skips, saying so, without either).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use cytoseg::core::qc::report::parse_csv;
use cytoseg::core::train::rng::Rng;
use ndarray::Array2;
use ndarray_npy::NpzReader;

/// An image of the series: its index in train.npz, pixels and labels.
type Entry = (usize, Array2<u8>, Array2<u16>);

/// The 360×360 images of train.npz, in index order.
fn series(data: &Path) -> Vec<Entry> {
    let mut npz = NpzReader::new(std::fs::File::open(data.join("train.npz")).unwrap()).unwrap();
    let mut out = Vec::new();
    let mut k = 0;
    loop {
        let Ok(img) = npz.by_name::<ndarray::OwnedRepr<u8>, ndarray::Ix2>(&format!("img_{k}"))
        else {
            break;
        };
        if img.dim() == (360, 360) {
            let lbl: Array2<u16> = npz.by_name(&format!("lbl_{k}")).unwrap();
            out.push((k, img, lbl));
        }
        k += 1;
    }
    out
}

/// Gaussian blur with scipy.ndimage's defaults (kernel radius 4σ, mirror-reflect borders).
fn gaussian(img: &Array2<f64>, sigma: f64) -> Array2<f64> {
    let r = (4.0 * sigma + 0.5) as isize;
    let k: Vec<f64> = (-r..=r)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f64 = k.iter().sum();
    let k: Vec<f64> = k.iter().map(|v| v / s).collect();
    let (h, w) = img.dim();
    let refl = |i: isize, n: usize| -> usize {
        let n = n as isize;
        let mut i = i;
        loop {
            if i < 0 {
                i = -i - 1;
            } else if i >= n {
                i = 2 * n - i - 1;
            } else {
                return i as usize;
            }
        }
    };
    let mut tmp = Array2::<f64>::zeros((h, w));
    for y in 0..h {
        for x in 0..w {
            tmp[[y, x]] = (-r..=r)
                .map(|d| k[(d + r) as usize] * img[[y, refl(x as isize + d, w)]])
                .sum();
        }
    }
    let mut out = Array2::<f64>::zeros((h, w));
    for y in 0..h {
        for x in 0..w {
            out[[y, x]] = (-r..=r)
                .map(|d| k[(d + r) as usize] * tmp[[refl(y as isize + d, h), x]])
                .sum();
        }
    }
    out
}

fn save(img: &Array2<f64>, path: &Path) {
    let (h, w) = img.dim();
    let px: Vec<u8> = img
        .iter()
        .map(|v| v.round_ties_even().clamp(0.0, 255.0) as u8)
        .collect();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_raw(w as u32, h as u32, px)
        .unwrap()
        .save(path)
        .unwrap();
}

fn as_f64(img: &Array2<u8>) -> Array2<f64> {
    img.mapv(|v| v as f64)
}

/// `cytoseg` with the test ONNX Runtime, or `None` (skip) without one.
fn cytoseg(args: &[&str], model_args: bool) -> Option<Command> {
    let lib = common::ort_library()?;
    let mut c = Command::new(common::cytoseg_exe());
    c.args(args);
    if model_args {
        c.arg("--device").arg("cpu").arg("--ort-lib").arg(lib);
    }
    Some(c)
}

fn run(c: Option<Command>) -> String {
    let o = c.expect("checked").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    err
}

/// qc_images.csv as file name → (flagged, reasons).
fn flags(out: &Path) -> BTreeMap<String, (bool, String)> {
    let rows = parse_csv(&std::fs::read_to_string(out.join("qc/qc_images.csv")).unwrap());
    let h = &rows[0];
    let col = |n: &str| h.iter().position(|x| x == n).unwrap();
    let (f, fl, re) = (col("file"), col("flagged"), col("reasons"));
    rows[1..]
        .iter()
        .map(|r| {
            let name = Path::new(&r[f])
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, (r[fl] == "true", r[re].clone()))
        })
        .collect()
}

/// qc_drift.csv: the measures flagged as drifting.
fn drifting(out: &Path) -> Vec<String> {
    let rows = parse_csv(&std::fs::read_to_string(out.join("qc/qc_drift.csv")).unwrap());
    let h = &rows[0];
    let (m, fl) = (
        h.iter().position(|x| x == "measure").unwrap(),
        h.iter().position(|x| x == "flagged").unwrap(),
    );
    rows[1..]
        .iter()
        .filter(|r| r[fl] == "true")
        .map(|r| r[m].clone())
        .collect()
}

fn setup(tag: &str) -> Option<(PathBuf, Vec<Entry>)> {
    let Some(data) = common::shared_data() else {
        eprintln!("SKIPPED: ../shared/data/dsb2018-fluo absent");
        return None;
    };
    if common::ort_library().is_none() {
        eprintln!(
            "SKIPPED: no ONNX Runtime library (set ORT_DYLIB_PATH or pip install onnxruntime into .venv)"
        );
        return None;
    }
    let s = series(&data);
    assert!(s.len() >= 75, "the 360×360 series has {} images", s.len());
    Some((common::temp_dir(tag), s))
}

#[test]
fn flags_find_blurred_saturated_dim_noisy_and_empty_images() {
    let Some((dir, s)) = setup("qc-faults") else {
        return;
    };
    let images = dir.join("faults");
    let mut truth: BTreeMap<String, &str> = BTreeMap::new();
    for (k, img, _) in &s[..50] {
        let name = format!("clean_{k:03}.png");
        save(&as_f64(img), &images.join(&name));
        truth.insert(name, "clean");
    }
    let mut rng = Rng::new(2026);
    let kinds = ["blur", "saturated", "dim", "noisy", "empty"];
    for (i, (k, img, lbl)) in s[50..75].iter().enumerate() {
        let kind = kinds[i % 5];
        let f = as_f64(img);
        let faulty = match kind {
            "blur" => gaussian(&f, 3.0),
            "saturated" => f.mapv(|v| v * 12.0),
            "dim" => f.mapv(|v| v * 0.5),
            "noisy" => f.mapv(|v| v + 6.0 * rng.normal()),
            _ => {
                // No cells: the image's background level with its noise.
                let mut bg: Vec<f64> = f
                    .iter()
                    .zip(lbl)
                    .filter(|(_, l)| **l == 0)
                    .map(|(v, _)| *v)
                    .collect();
                bg.sort_by(f64::total_cmp);
                let m = bg[bg.len() / 2];
                f.mapv(|_| m + rng.normal())
            }
        };
        let name = format!("{kind}_{k:03}.png");
        save(&faulty, &images.join(&name));
        truth.insert(name, kind);
    }
    let out = dir.join("faults-out");
    let log = run(cytoseg(
        &[
            "segment",
            images.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--qc",
        ],
        true,
    ));
    eprintln!("{log}");
    let got = flags(&out);
    assert_eq!(got.len(), truth.len());
    let (mut tp, mut fp, mut fneg) = (0, 0, 0);
    let mut per_kind: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (name, kind) in &truth {
        let (flagged, reasons) = &got[name];
        let e = per_kind.entry(kind).or_default();
        e.1 += 1;
        if *flagged {
            e.0 += 1;
        }
        match (*kind != "clean", *flagged) {
            (true, true) => tp += 1,
            (false, true) => {
                fp += 1;
                eprintln!("false alarm: {name}: {reasons}");
            }
            (true, false) => {
                fneg += 1;
                eprintln!("missed: {name}");
            }
            _ => {}
        }
    }
    let precision = tp as f64 / (tp + fp).max(1) as f64;
    let recall = tp as f64 / (tp + fneg) as f64;
    eprintln!(
        "QC flags on 50 clean + 25 faulty DSB2018 images: precision {precision:.3}, recall {recall:.3}"
    );
    for (k, (f, n)) in &per_kind {
        eprintln!("  {k}: {f}/{n} flagged");
    }
    assert!(
        precision >= 0.9 && recall >= 0.9,
        "precision {precision}, recall {recall}"
    );
    let html = std::fs::read_to_string(out.join("qc/qc_report.html")).unwrap();
    assert!(html.contains("data:image/png;base64,") && html.contains("<svg"));
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "the page fetches nothing"
    );
    render_in_chromium(&out.join("qc/qc_report.html"), &dir);
}

/// Renders the page in headless Chromium (skips, saying so, without one): it must load with
/// no console error, its DOM must hold the report, and a screenshot must come out.
fn render_in_chromium(page: &Path, dir: &Path) {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        eprintln!(
            "SKIPPED: no headless Chromium on PATH (apt-get install chromium): the QC page was not rendered"
        );
        return;
    };
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--v=0",
    ];
    let o = Command::new(chromium)
        .args(common)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&o.stdout);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "chromium failed: {log}");
    assert!(
        dom.contains("cytoseg QC report") && dom.contains("<svg"),
        "DOM: {dom:.300}"
    );
    let console_errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") && (l.contains("ERROR") || l.contains("Uncaught")))
        .collect();
    assert!(console_errors.is_empty(), "{console_errors:?}");
    let shot = dir.join("qc_report.png");
    let o = Command::new(chromium)
        .args(common)
        .args(["--hide-scrollbars", "--window-size=1200,1600"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        o.status.success() && shot.exists(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!(
        "rendered in {chromium}: {} (screenshot {})",
        page.display(),
        shot.display()
    );
}

#[test]
fn a_second_instrument_is_reported_as_drift_and_random_halves_are_not() {
    let Some((dir, s)) = setup("qc-drift") else {
        return;
    };
    // Instrument B: gain 0.7, offset +6 and a slight defocus on the second 25 clean images.
    let scopes = dir.join("scopes");
    for (i, (k, img, _)) in s[..50].iter().enumerate() {
        let f = as_f64(img);
        if i < 25 {
            save(&f, &scopes.join(format!("A/img_{k:03}.png")));
        } else {
            let b = gaussian(&f, 1.0).mapv(|v| 0.7 * v + 6.0);
            save(&b, &scopes.join(format!("B/img_{k:03}.png")));
        }
    }
    // Two random halves of the same 50 clean images, unchanged.
    let halves = dir.join("halves");
    let mut order: Vec<usize> = (0..50).collect();
    let mut rng = Rng::new(7);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    for (j, &i) in order.iter().enumerate() {
        let (k, img, _) = &s[i];
        let half = if j < 25 { "h1" } else { "h2" };
        save(&as_f64(img), &halves.join(format!("{half}/img_{k:03}.png")));
    }
    for (input, tag) in [(&scopes, "scopes"), (&halves, "halves")] {
        let out = dir.join(format!("{tag}-out"));
        run(cytoseg(
            &[
                "segment",
                input.to_str().unwrap(),
                "--recursive",
                "--out",
                out.to_str().unwrap(),
                "-q",
            ],
            true,
        ));
        let log = run(cytoseg(
            &[
                "qc",
                out.to_str().unwrap(),
                "--pattern",
                "{instrument}/*.png",
                "--measure",
                "intensity_mean",
            ],
            false,
        ));
        eprintln!("{tag}: {log}");
        let drift_table = std::fs::read_to_string(out.join("qc/qc_drift.csv")).unwrap();
        assert!(
            drift_table.contains(",intensity_mean,"),
            "an object measurement chosen with --measure is compared"
        );
        let d = drifting(&out);
        eprintln!("{tag}: drift on {d:?}");
        if tag == "scopes" {
            assert!(
                d.iter().any(|m| m == "background" || m == "signal"),
                "{d:?}"
            );
        } else {
            assert!(d.is_empty(), "random halves drift on {d:?}");
        }
    }
}

#[test]
fn the_documentation_defines_every_measure() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/qc.md")).unwrap();
    for m in cytoseg::core::qc::MEASURES {
        assert!(
            doc.contains(&format!("| `{}` |", m.name)),
            "docs/qc.md has no table row for {}",
            m.name
        );
    }
}
