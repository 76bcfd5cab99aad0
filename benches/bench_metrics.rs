//! Metrics benchmark: cytoseg's `matching_dataset` against stardist.matching 0.9.2.
//!
//! Run with `cargo bench --bench bench_metrics`. It
//!
//! * loads 64 real label maps from `../shared/data/dsb2018-fluo/train.npz` (images `7 i mod 491`;
//!   skips with a message when the file is absent; `$CYTOSEG_DSB_NPZ` overrides the path) and
//!   derives one prediction per image: shifted by (1, 2) px, eroded once, every label with
//!   `id % 7 == 3` dropped, ids mapped to `7 id + 11`;
//! * times `matching_dataset(criterion iou, thresholds 0.50, 0.55, …, 0.95, by_image false)`:
//!   the median of several runs on the rayon pool and on one thread, and the same for
//!   `average_precision_dataset` (cellpose);
//! * when a Python with stardist and cellpose is found (`$CYTOSEG_PYTHON`, else
//!   `.venv/bin/python`), writes the same input to a temporary `.npz`, runs
//!   `benches/metrics_reference.py` on it, checks that every number is identical and prints the
//!   speed ratios. `CYTOSEG_BENCH_REF=0` skips the reference.
//!
//! Without `--bench` (e.g. under `cargo test --benches`) it only runs a quick smoke check.

use std::error::Error;
use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use cytoseg::core::metrics::{
    Criterion, DatasetMatchingStats, average_precision_dataset, matching_dataset,
};
use ndarray::{Array1, Array2};
use ndarray_npy::{NpzReader, NpzWriter};

type BoxResult<T> = Result<T, Box<dyn Error>>;

const N_IMAGES: usize = 64;
const REPEATS: usize = 7;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The benchmark's deterministic prediction for a ground-truth label map.
fn perturb(truth: &Array2<u16>) -> Array2<u32> {
    let (h, w) = truth.dim();
    let mut shifted = Array2::<u32>::zeros((h, w));
    for y in 1..h {
        for x in 2..w {
            shifted[[y, x]] = u32::from(truth[[y - 1, x - 2]]);
        }
    }
    let at = |y: isize, x: isize| {
        let y = y.clamp(0, h as isize - 1) as usize;
        let x = x.clamp(0, w as isize - 1) as usize;
        shifted[[y, x]]
    };
    Array2::from_shape_fn((h, w), |(y, x)| {
        let l = shifted[[y, x]];
        let (yi, xi) = (y as isize, x as isize);
        let interior = at(yi - 1, xi) == l
            && at(yi + 1, xi) == l
            && at(yi, xi - 1) == l
            && at(yi, xi + 1) == l;
        if l == 0 || !interior || l % 7 == 3 {
            0
        } else {
            7 * l + 11
        }
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn time_runs<T>(repeats: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut out = f(); // warm-up
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let t0 = Instant::now();
        out = f();
        times.push(t0.elapsed().as_secs_f64());
    }
    (median(times), out)
}

fn row(s: &DatasetMatchingStats) -> [f64; 12] {
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

fn find_python() -> Option<PathBuf> {
    if std::env::var("CYTOSEG_BENCH_REF").is_ok_and(|v| v == "0") {
        eprintln!("reference skipped (CYTOSEG_BENCH_REF=0)");
        return None;
    }
    let py = std::env::var_os("CYTOSEG_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    if !py.exists() {
        eprintln!(
            "reference skipped: no Python at {} (set CYTOSEG_PYTHON)",
            py.display()
        );
        return None;
    }
    let ok = Command::new(&py)
        .args(["-c", "import stardist.matching, cellpose.metrics"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "reference skipped: {} cannot import stardist.matching and cellpose.metrics",
            py.display()
        );
        return None;
    }
    Some(py)
}

fn main() -> BoxResult<()> {
    let full = std::env::args().any(|a| a == "--bench");
    let npz_path = std::env::var_os("CYTOSEG_DSB_NPZ")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/data/dsb2018-fluo/train.npz"));
    if !npz_path.exists() {
        println!(
            "bench_metrics: skipped, {} is absent (set CYTOSEG_DSB_NPZ to a DSB2018 train.npz)",
            npz_path.display()
        );
        return Ok(());
    }
    let n_images = if full { N_IMAGES } else { 4 };
    let mut npz = NpzReader::new(File::open(&npz_path)?)?;
    let mut truths: Vec<Array2<u32>> = Vec::with_capacity(n_images);
    let mut preds: Vec<Array2<u32>> = Vec::with_capacity(n_images);
    for i in 0..n_images {
        let k = (7 * i) % 491;
        let lbl: Array2<u16> = npz.by_name(&format!("lbl_{k}"))?;
        preds.push(perturb(&lbl));
        truths.push(lbl.mapv(u32::from));
    }
    let thresholds: Vec<f64> = (0..10).map(|k| (50 + 5 * k) as f64 / 100.0).collect();
    let ys_true: Vec<&[u32]> = truths
        .iter()
        .map(|a| a.as_slice().ok_or("layout"))
        .collect::<Result<_, _>>()?;
    let ys_pred: Vec<&[u32]> = preds
        .iter()
        .map(|a| a.as_slice().ok_or("layout"))
        .collect::<Result<_, _>>()?;
    let pixels: usize = ys_true.iter().map(|t| t.len()).sum();

    let repeats = if full { REPEATS } else { 1 };
    let run = || matching_dataset(&ys_true, &ys_pred, &thresholds, Criterion::Iou, false);
    let (t_par, res) = time_runs(repeats, run);
    let res = res?;
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let (t_one, _) = one.install(|| time_runs(repeats, run));
    let res_b = matching_dataset(&ys_true, &ys_pred, &thresholds, Criterion::Iou, true)?;
    let (t_ap, ap) = time_runs(repeats, || {
        average_precision_dataset(&ys_true, &ys_pred, &thresholds)
    });
    let ap = ap?;
    let (t_ap_one, _) = one.install(|| {
        time_runs(repeats, || {
            average_precision_dataset(&ys_true, &ys_pred, &thresholds)
        })
    });
    let n_true: u64 = res[0].n_true;
    println!(
        "bench_metrics: {n_images} DSB2018 label maps ({:.1} Mpx, {n_true} true objects, {} predicted), \
         10 thresholds 0.50..0.95, {} rayon threads",
        pixels as f64 / 1e6,
        res[0].n_pred,
        rayon::current_num_threads()
    );
    println!(
        "  cytoseg matching_dataset(iou):      median {:8.2} ms (rayon) | {:8.2} ms (1 thread)",
        t_par * 1e3,
        t_one * 1e3
    );
    println!(
        "  cytoseg average_precision_dataset:  median {:8.2} ms (rayon) | {:8.2} ms (1 thread)",
        t_ap * 1e3,
        t_ap_one * 1e3
    );
    for s in &res {
        println!(
            "    thr {:.2}: tp {:5} fp {:5} fn {:5} accuracy {:.4} f1 {:.4} mean_matched {:.4} pq {:.4}",
            s.thresh, s.tp, s.fp, s.fn_, s.accuracy, s.f1, s.mean_matched_score, s.panoptic_quality
        );
    }
    if !full {
        return Ok(());
    }
    let Some(python) = find_python() else {
        return Ok(());
    };

    let dir = std::env::temp_dir().join(format!("cytoseg-bench-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("input.npz");
    let output = dir.join("output.npz");
    {
        let mut w = NpzWriter::new(File::create(&input)?);
        w.add_array("n", &Array1::from_vec(vec![n_images as i64]))?;
        w.add_array("thresholds", &Array1::from_vec(thresholds.clone()))?;
        for (k, (t, p)) in truths.iter().zip(&preds).enumerate() {
            w.add_array(format!("true_{k}"), t)?;
            w.add_array(format!("pred_{k}"), p)?;
        }
        w.finish()?;
    }
    eprintln!("running benches/metrics_reference.py ({REPEATS} repeats) ...");
    let out = Command::new(&python)
        .arg(repo().join("benches/metrics_reference.py"))
        .arg(&input)
        .arg(&output)
        .arg(REPEATS.to_string())
        .output()?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(format!(
            "metrics_reference.py failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let mut r = NpzReader::new(File::open(&output)?)?;
    let stats: Array2<f64> = r.by_name("stats")?;
    let stats_b: Array2<f64> = r.by_name("stats_by_image")?;
    let ap_ref: Array2<f32> = r.by_name("ap")?;
    let tm: Array1<f64> = r.by_name("times_matching")?;
    let ta: Array1<f64> = r.by_name("times_ap")?;
    let _ = std::fs::remove_dir_all(&dir);

    let mut mismatches = 0usize;
    for (k, (s, sb)) in res.iter().zip(&res_b).enumerate() {
        for (got, want) in [(row(s), stats.row(k)), (row(sb), stats_b.row(k))] {
            for (g, w) in got.iter().zip(want.iter()) {
                if g.to_bits() != w.to_bits() && !(*g == 0.0 && *w == 0.0) {
                    mismatches += 1;
                }
            }
        }
    }
    for (i, a) in ap.iter().enumerate() {
        for (k, &g) in a.ap.iter().enumerate() {
            let w = ap_ref[[i, k]];
            if !(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan())) {
                mismatches += 1;
            }
        }
    }
    let py_m = median(tm.to_vec());
    let py_a = median(ta.to_vec());
    println!(
        "  stardist.matching_dataset(iou):     median {:8.2} ms  -> cytoseg is {:.1}x faster (rayon), {:.1}x (1 thread)",
        py_m * 1e3,
        py_m / t_par,
        py_m / t_one
    );
    println!(
        "  cellpose.metrics.average_precision: median {:8.2} ms  -> cytoseg is {:.1}x faster (rayon), {:.1}x (1 thread)",
        py_a * 1e3,
        py_a / t_ap,
        py_a / t_ap_one
    );
    if mismatches == 0 {
        println!(
            "  results identical to the reference (both by_image settings, every field and threshold; AP per image)"
        );
        Ok(())
    } else {
        Err(format!("{mismatches} values differ from the reference").into())
    }
}
