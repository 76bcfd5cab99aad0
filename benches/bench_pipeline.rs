//! Whole-pipeline benchmark: `Model::segment` with the bundled `nuclei` model on the CPU, against
//! Cellpose 4.2.1.1's own pipeline around the same ONNX network.
//!
//! Run with `cargo bench --bench bench_pipeline`. For every image side it
//!
//! * builds a realistic nuclei image: a mosaic of 256×256 crops of the real DSB2018 fluorescence
//!   images in `../shared/data/dsb2018-fluo/sample/images` (uint8), each placement flipped or
//!   transposed so that repeats differ; without that folder, crops of
//!   `models/examples/nuclei_example.tif` (uint16, synthetic) instead;
//! * times cytoseg in a child process of this binary (re-executed with a hidden first argument):
//!   model loaded on the CPU provider, an untimed warm-up (one batch of 8 tiles through the
//!   network, one segmentation of a 256² crop), then the median of N
//!   calls of [`Model::segment`] split by its [`Timings`] into preprocessing (channel, 1/99
//!   percentile normalization), network (padding, tiles in batches of 8, taper blending) and
//!   flows → labels; peak memory is the child's `VmHWM` (whole process, ONNX Runtime and model
//!   included) and what the timed calls added to the `VmHWM` measured after the warm-up; twice:
//!   with Cellpose's tiling (`Tiling::Cellpose`, the exact mode compared with the reference) and
//!   with the default `Tiling::Fast` (its speed-up over the exact mode, and the AP@0.5 of its
//!   labels scored against the exact mode's);
//! * when a Python with cellpose and onnxruntime is found (`$CYTOSEG_PYTHON`, else
//!   `.venv/bin/python`), runs `tests/parity/bench_pipeline_reference.py` on the very same image
//!   (Cellpose's `normalize_img`, `core.run_net`, `dynamics.resize_and_compute_masks` around an
//!   onnxruntime session on the same `model.onnx`), prints per-stage ratios and checks that the
//!   labels are identical pixel for pixel.
//!
//! Both sides use the same ONNX Runtime intra-op thread count (`CYTOSEG_BENCH_THREADS`, default
//! 2); torch gets the same count; cytoseg's flows → labels runs on rayon's default pool.
//!
//! A Markdown report goes to stdout and to `target/bench-pipeline.md`; progress goes to stderr.
//!
//! Environment:
//! * `CYTOSEG_BENCH_SIZES=512,1024` — image sides (default `512,1024,2048,4096`);
//! * `CYTOSEG_BENCH_REPS=3` — runs per size for both sides (default 3 up to 1024², 2 at 2048²,
//!   1 above);
//! * `CYTOSEG_BENCH_THREADS=2` — ONNX Runtime (and torch) threads;
//! * `CYTOSEG_BENCH_REF=0` — never run the Python reference;
//! * `CYTOSEG_BENCH_REF_4096=1` — also run it above 2048² (about 9 minutes at 4096² on 2 cores);
//! * `CYTOSEG_BENCH_KEEP=1` — keep the mosaics (`mosaic_<side>.npy`, printed folder), e.g. to
//!   time `cytoseg segment` builds on them.
//!
//! Without `--bench` (e.g. under `cargo test --benches`) it only runs a quick in-process smoke
//! check (skipped, saying so, when no ONNX Runtime library is found).
mod common;
use common::{BoxResult, env_flag, machine, median, reference_python, repo, target_dir, vm_hwm_kb};

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cytoseg::core::image::{ImageView, Pixels};
use cytoseg::core::io::image::{ImageData, read_image};
use cytoseg::core::metrics::cellpose::average_precision;
use cytoseg::core::model::{Device, LoadOptions, Model, Precision, SegmentParams, Tiling, Timings};
use ndarray::Array2;
use serde_json::Value;

/// Hidden first argument that makes this binary run one measured case.
const CHILD_ARG: &str = "__cytoseg_bench_pipeline_child";
/// Edge of the crops the mosaic is made of.
const CROP: usize = 256;
const MIB: f64 = 1024.0 * 1024.0;

// ---------------------------------------------------------------------------------------------
// Input images.

/// Mosaic source: 256×256 crops of real (or example) nuclei images.
struct CropPool {
    crops: Vec<Vec<u16>>,
    eight_bit: bool,
    source: String,
}

/// Crop origins along one axis of length `n`: every 256 from 0, plus the far end when the image
/// holds fewer than two.
fn crop_starts(n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..=n.saturating_sub(CROP)).step_by(CROP).collect();
    if v.len() < 2 && n > CROP {
        v.push(n - CROP);
    }
    v
}

fn crop_pool() -> BoxResult<CropPool> {
    let dsb = repo().join("../shared/data/dsb2018-fluo/sample/images");
    let (mut files, source): (Vec<PathBuf>, String) = if dsb.is_dir() {
        let files = std::fs::read_dir(&dsb)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "tif"))
            .collect();
        (
            files,
            "mosaic of 256² crops of the 10 real DSB2018 fluorescence images in \
             ../shared/data/dsb2018-fluo/sample/images (uint8)"
                .into(),
        )
    } else {
        eprintln!(
            "note: {} not found; the mosaic uses models/examples/nuclei_example.tif (synthetic)",
            dsb.display()
        );
        (
            vec![repo().join("models/examples/nuclei_example.tif")],
            "mosaic of 256² crops of models/examples/nuclei_example.tif (synthetic, uint16; \
             ../shared/data/dsb2018-fluo absent)"
                .into(),
        )
    };
    files.sort();
    let mut crops = Vec::new();
    let mut eight_bit = true;
    for f in &files {
        let img = read_image(f)?;
        if img.channels != 1 || img.width < CROP || img.height < CROP {
            continue;
        }
        let (w, h) = (img.width, img.height);
        let px: Vec<u16> = match &img.data {
            ImageData::U8(d) => d.iter().map(|&v| v as u16).collect(),
            ImageData::U16(d) => {
                eight_bit = false;
                d.clone()
            }
            ImageData::F32(_) => continue,
        };
        for &y0 in &crop_starts(h) {
            for &x0 in &crop_starts(w) {
                let mut c = Vec::with_capacity(CROP * CROP);
                for y in y0..y0 + CROP {
                    c.extend_from_slice(&px[y * w + x0..y * w + x0 + CROP]);
                }
                crops.push(c);
            }
        }
    }
    if crops.is_empty() {
        return Err(format!("no usable grayscale images among {files:?}").into());
    }
    Ok(CropPool {
        crops,
        eight_bit,
        source,
    })
}

/// A `side × side` mosaic: cell k gets crop `k mod n`, flipped/transposed by `(k / n) mod 8`.
fn mosaic(pool: &CropPool, side: usize) -> Vec<u16> {
    let cells = side.div_ceil(CROP);
    let n = pool.crops.len();
    let mut out = vec![0u16; side * side];
    for cy in 0..cells {
        for cx in 0..cells {
            let k = cy * cells + cx;
            let crop = &pool.crops[k % n];
            let orient = (k / n) % 8;
            for r in 0..CROP.min(side - cy * CROP) {
                for q in 0..CROP.min(side - cx * CROP) {
                    let (mut sy, mut sx) = (r, q);
                    if orient & 4 != 0 {
                        std::mem::swap(&mut sy, &mut sx);
                    }
                    if orient & 1 != 0 {
                        sy = CROP - 1 - sy;
                    }
                    if orient & 2 != 0 {
                        sx = CROP - 1 - sx;
                    }
                    out[(cy * CROP + r) * side + cx * CROP + q] = crop[sy * CROP + sx];
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// The ONNX Runtime library: `$ORT_DYLIB_PATH`, else the repository `.venv`'s onnxruntime
/// package (the one the Python reference uses), else `None` (then the command line's search).
fn ort_library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .filter(|p| p.exists())
    {
        return Some(p);
    }
    for py in std::fs::read_dir(repo().join(".venv/lib")).ok()?.flatten() {
        let capi = py.path().join("site-packages/onnxruntime/capi");
        for e in std::fs::read_dir(&capi).into_iter().flatten().flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with("libonnxruntime.so.1")
            {
                return Some(e.path());
            }
        }
    }
    None
}

fn load_model(threads: usize) -> BoxResult<Model> {
    let opts = LoadOptions {
        device: Device::Cpu,
        ort_search: cytoseg::host::cli_ort_search(ort_library().as_deref()),
        model_dirs: Vec::new(),
        threads,
    };
    let dir = repo().join("models/nuclei");
    Ok(Model::load(dir.to_str().ok_or("non-UTF-8 path")?, &opts)?)
}

/// Reads a 2-D uint8/uint16 `.npy` image as written by the parent.
fn read_u16_image(path: &Path) -> BoxResult<(Vec<u16>, bool, usize, usize)> {
    let img = read_image(path)?;
    let (px, eight) = match img.data {
        ImageData::U8(d) => (d.into_iter().map(u16::from).collect(), true),
        ImageData::U16(d) => (d, false),
        ImageData::F32(_) => return Err("expected an integer image".into()),
    };
    Ok((px, eight, img.height, img.width))
}

// ---------------------------------------------------------------------------------------------
// Child: one measured case.

/// `CHILD_ARG image.npy threads reps labels_out.npy tiling precision`; prints `RESULT {json}`.
fn child(args: &[String]) -> BoxResult<()> {
    let [image, threads, reps, out, tiling, precision] = args else {
        return Err(format!("child: bad arguments {args:?}").into());
    };
    let threads: usize = threads.parse()?;
    let reps: usize = reps.parse::<usize>()?.max(1);
    let (px16, eight, h, w) = read_u16_image(Path::new(image))?;
    let px8: Vec<u8>;
    let pixels = if eight {
        px8 = px16.iter().map(|&v| v as u8).collect();
        drop(px16);
        Pixels::U8(&px8)
    } else {
        Pixels::U16(&px16)
    };
    let view = ImageView::packed(pixels, w, h, 1)?;
    let model = load_model(threads)?;
    let mut params = SegmentParams::for_model(&model);
    params.tiling = Tiling::parse(tiling)?;
    params.precision = Precision::parse(precision)?;
    let precision_used = model.precision_for(&params)?.0;
    // Warm-up, not timed: one full batch of 8 tiles through the network (ONNX Runtime's arena
    // reaches its working size) and a segmentation of a crop (rayon's pool, lazy statics).
    let c_in = model.manifest.input.channels;
    let batch = ndarray::Array4::<f32>::zeros((params.batch_size, c_in, CROP, CROP));
    model.run_network(batch.view())?;
    drop(batch);
    let crop = ImageView::new(pixels, w.min(CROP), h.min(CROP), 1, w)?;
    model.segment(&crop, &params, None)?;
    let base_kb = vm_hwm_kb();
    let mut runs: Vec<(Timings, f64)> = Vec::with_capacity(reps);
    let mut last = None;
    for _ in 0..reps {
        drop(last.take());
        let t0 = Instant::now();
        let s = model.segment(&view, &params, None)?;
        runs.push((s.timings, t0.elapsed().as_secs_f64()));
        last = Some(s);
    }
    let end_kb = vm_hwm_kb();
    let seg = last.ok_or("no run")?;
    ndarray_npy::write_npy(out, &Array2::from_shape_vec((h, w), seg.labels)?)?;
    let result = serde_json::json!({
        "preprocess_s": runs.iter().map(|r| r.0.preprocess).collect::<Vec<_>>(),
        "network_s": runs.iter().map(|r| r.0.network).collect::<Vec<_>>(),
        "masks_s": runs.iter().map(|r| r.0.masks).collect::<Vec<_>>(),
        "total_s": runs.iter().map(|r| r.1).collect::<Vec<_>>(),
        "base_hwm_kb": base_kb,
        "end_hwm_kb": end_kb,
        "objects": seg.count,
        "niter": seg.niter,
        "ort": model.runtime.version,
        "precision": precision_used.name(),
    });
    println!("RESULT {result}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Parent: the benchmark.

/// Median stage times `[preprocess, network, masks, total]` and peak memory of one side.
#[derive(Default, Clone)]
struct Side {
    times: [Vec<f64>; 4],
    objects: u64,
    peak_mb: f64,
    added_mb: f64,
}

impl Side {
    fn from_json(v: &Value, peak_mb: f64, added_mb: f64, objects: u64) -> BoxResult<Side> {
        let get = |k: &str| -> BoxResult<Vec<f64>> {
            v[k].as_array()
                .ok_or_else(|| format!("missing {k} in {v}"))?
                .iter()
                .map(|x| x.as_f64().ok_or_else(|| format!("bad {k}").into()))
                .collect()
        };
        Ok(Side {
            times: [
                get("preprocess_s")?,
                get("network_s")?,
                get("masks_s")?,
                get("total_s")?,
            ],
            objects,
            peak_mb,
            added_mb,
        })
    }

    fn med(&self, stage: usize) -> f64 {
        median(&self.times[stage])
    }
}

struct Row {
    side: usize,
    reps: usize,
    /// cytoseg with Cellpose's tiling (the exact mode, compared with the reference).
    ours: Side,
    /// cytoseg with the defaults (fast tiling, precision auto), the AP@0.5 of its labels scored
    /// against the exact mode's, and the precision auto chose.
    fast: Option<(Side, f64, String)>,
    /// cytoseg with fast tiling in float32 (the default before int8 variants).
    fast32: Option<Side>,
    theirs: Option<Side>,
    /// Pixels whose labels differ (`None`: not compared).
    diff: Option<usize>,
    note: String,
}

fn default_reps(side: usize) -> usize {
    match side {
        0..=1024 => 3,
        1025..=2048 => 2,
        _ => 1,
    }
}

fn run_reference(
    py: &Path,
    image: &Path,
    reps: usize,
    threads: usize,
    out: &Path,
) -> BoxResult<Side> {
    let script = repo().join("tests/parity/bench_pipeline_reference.py");
    let o = Command::new(py)
        .arg(&script)
        .arg(repo().join("models/nuclei"))
        .arg(image)
        .arg(reps.to_string())
        .arg(threads.to_string())
        .arg(out)
        .output()?;
    if !o.status.success() {
        return Err(format!(
            "reference failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )
        .into());
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))?;
    let peak = v["peak_rss_mb"].as_f64().unwrap_or(f64::NAN);
    let base = v["base_rss_mb"].as_f64().unwrap_or(f64::NAN);
    Side::from_json(&v, peak, peak - base, v["n_masks"].as_u64().unwrap_or(0))
}

fn bench() -> BoxResult<()> {
    let started = Instant::now();
    let sizes: Vec<usize> = std::env::var("CYTOSEG_BENCH_SIZES")
        .unwrap_or_else(|_| "512,1024,2048,4096".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let reps_env: Option<usize> = std::env::var("CYTOSEG_BENCH_REPS")
        .ok()
        .map(|s| s.trim().parse())
        .transpose()?;
    let threads: usize = std::env::var("CYTOSEG_BENCH_THREADS")
        .ok()
        .map(|s| s.trim().parse())
        .transpose()?
        .unwrap_or(2)
        .max(1);
    let python = if env_flag("CYTOSEG_BENCH_REF") == Some(false) {
        Err("CYTOSEG_BENCH_REF=0".to_string())
    } else {
        reference_python("cellpose, onnxruntime, torch, numpy")
    };
    if let Err(why) = &python {
        eprintln!("Python reference skipped: {why}");
    }
    let pool = crop_pool()?;
    eprintln!("input: {} ({} crops)", pool.source, pool.crops.len());
    let dir = std::env::temp_dir().join(format!("cytoseg-bench-pipeline-{}", std::process::id()));
    let keep = env_flag("CYTOSEG_BENCH_KEEP") == Some(true);
    std::fs::create_dir_all(&dir)?;
    let exe = std::env::current_exe()?;
    let mut rows = Vec::new();
    let mut ort_version = String::from("?");
    for &side in &sizes {
        if side < 16 {
            return Err(format!("image side {side} is too small").into());
        }
        let reps = reps_env.unwrap_or_else(|| default_reps(side)).max(1);
        let px = mosaic(&pool, side);
        let img_path = dir.join(format!("mosaic_{side}.npy"));
        if pool.eight_bit {
            let a = Array2::from_shape_vec((side, side), px.iter().map(|&v| v as u8).collect())?;
            ndarray_npy::write_npy(&img_path, &a)?;
        } else {
            ndarray_npy::write_npy(&img_path, &Array2::from_shape_vec((side, side), px)?)?;
        }
        let run_child = |tiling: Tiling,
                         precision: Precision,
                         out: &Path|
         -> BoxResult<(Side, String, String)> {
            eprintln!(
                "{side}²: cytoseg, {} tiling, precision {}, {reps} run(s) …",
                tiling.name(),
                precision.name()
            );
            let o = Command::new(&exe)
                .arg(CHILD_ARG)
                .arg(&img_path)
                .arg(threads.to_string())
                .arg(reps.to_string())
                .arg(out)
                .arg(tiling.name())
                .arg(precision.name())
                .output()?;
            if !o.status.success() {
                return Err(format!(
                    "cytoseg child failed at {side}² ({}): {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr)
                )
                .into());
            }
            let stdout = String::from_utf8_lossy(&o.stdout);
            let json = stdout
                .lines()
                .find_map(|l| l.strip_prefix("RESULT "))
                .ok_or("child printed no RESULT")?;
            let v: Value = serde_json::from_str(json)?;
            let base = v["base_hwm_kb"].as_f64().unwrap_or(0.0) / 1024.0;
            let end = v["end_hwm_kb"].as_f64().unwrap_or(0.0) / 1024.0;
            let side = Side::from_json(&v, end, end - base, v["objects"].as_u64().unwrap_or(0))?;
            eprintln!(
                "  cytoseg: {} objects, median {:.3} s (pre {:.3}, net {:.3}, masks {:.3}), peak {:.0} MB",
                side.objects,
                side.med(3),
                side.med(0),
                side.med(1),
                side.med(2),
                side.peak_mb
            );
            Ok((
                side,
                v["ort"].as_str().unwrap_or("?").to_string(),
                v["precision"].as_str().unwrap_or("?").to_string(),
            ))
        };
        let ours_out = dir.join(format!("ours_{side}.npy"));
        let (ours, ort, _) = run_child(Tiling::Cellpose, Precision::Fp32, &ours_out)?;
        ort_version = ort;
        let fast_out = dir.join(format!("fast_{side}.npy"));
        let (fast32, _, _) = run_child(Tiling::Fast, Precision::Fp32, &fast_out)?;
        let (fast, _, used) = run_child(Tiling::Fast, Precision::Auto, &fast_out)?;
        let exact: Array2<u32> = ndarray_npy::read_npy(&ours_out)?;
        let fast_labels: Array2<u32> = ndarray_npy::read_npy(&fast_out)?;
        let agreement = average_precision(
            exact.as_slice().ok_or("labels not contiguous")?,
            fast_labels.as_slice().ok_or("labels not contiguous")?,
            &[0.5],
        )?
        .ap[0];
        eprintln!("  defaults (fast tiling, {used}) vs Cellpose's tiling: AP@0.5 {agreement:.4}");
        let _ = std::fs::remove_file(&fast_out);
        let mut row = Row {
            side,
            reps,
            ours,
            fast: Some((fast, f64::from(agreement), used)),
            fast32: Some(fast32),
            theirs: None,
            diff: None,
            note: String::new(),
        };
        let big_ref = side <= 2048 || env_flag("CYTOSEG_BENCH_REF_4096") == Some(true);
        if python.is_ok() && !big_ref {
            row.note = "reference skipped above 2048² (set CYTOSEG_BENCH_REF_4096=1)".into();
            eprintln!("  cellpose reference: {}", row.note);
        }
        if let (Ok(py), true) = (&python, big_ref) {
            eprintln!("{side}²: cellpose reference, {reps} run(s) …");
            let ref_out = dir.join(format!("ref_{side}.npy"));
            match run_reference(py, &img_path, reps, threads, &ref_out) {
                Ok(theirs) => {
                    let a: Array2<u32> = ndarray_npy::read_npy(&ours_out)?;
                    let b: Array2<u32> = ndarray_npy::read_npy(&ref_out)?;
                    let diff = if a.dim() == b.dim() {
                        a.iter().zip(b.iter()).filter(|(x, y)| x != y).count()
                    } else {
                        side * side
                    };
                    eprintln!(
                        "  cellpose: {} objects, median {:.3} s (pre {:.3}, net {:.3}, masks {:.3}); labels {}",
                        theirs.objects,
                        theirs.med(3),
                        theirs.med(0),
                        theirs.med(1),
                        theirs.med(2),
                        if diff == 0 {
                            "identical ✓".to_string()
                        } else {
                            format!("DIFFER at {diff} pixels ✗")
                        }
                    );
                    row.diff = Some(diff);
                    row.theirs = Some(theirs);
                }
                Err(e) => {
                    eprintln!("  cellpose reference: {e}");
                    row.note = e.to_string();
                }
            }
            let _ = std::fs::remove_file(&ref_out);
        }
        let _ = std::fs::remove_file(&ours_out);
        if !keep {
            let _ = std::fs::remove_file(&img_path);
        }
        rows.push(row);
    }
    if keep {
        eprintln!("mosaics kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }

    let report = render(
        &rows,
        &python,
        &pool.source,
        threads,
        &ort_version,
        started.elapsed().as_secs_f64(),
    );
    println!("{report}");
    let md = target_dir().join("bench-pipeline.md");
    match std::fs::create_dir_all(target_dir()).and_then(|_| std::fs::write(&md, &report)) {
        Ok(()) => eprintln!("written to {}", md.display()),
        Err(e) => eprintln!("could not write {}: {e}", md.display()),
    }
    if rows.iter().any(|r| r.diff.is_some_and(|d| d > 0)) {
        return Err("cytoseg's labels differ from cellpose's".into());
    }
    Ok(())
}

fn render(
    rows: &[Row],
    python: &Result<PathBuf, String>,
    source: &str,
    threads: usize,
    ort_version: &str,
    total_s: f64,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Whole pipeline on the CPU: cytoseg vs Cellpose 4.2.1.1 (model `nuclei`)\n"
    );
    let _ = writeln!(s, "Machine: {}.  ", machine());
    let _ = writeln!(s, "Input: {source}.  ");
    let _ = writeln!(
        s,
        "Network: models/nuclei/model.onnx on ONNX Runtime {ort_version} CPU provider, \
         {threads} intra-op thread(s) on both sides; model diameter (no resizing), tiles 256² \
         with 0.1 overlap, batches of 8; flows → labels with the manifest defaults \
         (cellprob 0, flow threshold 0.4, niter 200, min size 15).  "
    );
    let _ = writeln!(
        s,
        "Reference: {}. Total bench time {total_s:.0} s.\n",
        match python {
            Ok(py) => format!(
                "`tests/parity/bench_pipeline_reference.py` via `{}` (normalize_img, \
                 core.run_net around onnxruntime, dynamics.resize_and_compute_masks; torch on \
                 {threads} thread(s))",
                py.display()
            ),
            Err(why) => format!("skipped — {why}"),
        }
    );
    let _ = writeln!(
        s,
        "| size | runs | objects | cytoseg MP/s | pre s | network s | flows→labels s | total s \
         | cellpose MP/s | pre s | network s | flows→labels s | total s | speed-up pre × \
         | network × | flows→labels × | total × | labels identical? |"
    );
    let _ = writeln!(
        s,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"
    );
    for r in rows {
        let mp = (r.side * r.side) as f64 / 1e6;
        let o = &r.ours;
        let objects = match &r.theirs {
            Some(t) if t.objects != o.objects => format!("{} (cellpose {})", o.objects, t.objects),
            _ => o.objects.to_string(),
        };
        let th = |k: usize| {
            r.theirs
                .as_ref()
                .map_or("—".into(), |t| format!("{:.3}", t.med(k)))
        };
        let ratio = |k: usize| {
            r.theirs
                .as_ref()
                .map_or("—".into(), |t| format!("{:.2}", t.med(k) / o.med(k)))
        };
        let _ = writeln!(
            s,
            "| {}² | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {} \
             | {} | {} | {} | {} |",
            r.side,
            r.reps,
            objects,
            mp / o.med(3),
            o.med(0),
            o.med(1),
            o.med(2),
            o.med(3),
            r.theirs
                .as_ref()
                .map_or("—".into(), |t| format!("{:.3}", mp / t.med(3))),
            th(0),
            th(1),
            th(2),
            th(3),
            ratio(0),
            ratio(1),
            ratio(2),
            ratio(3),
            match r.diff {
                None => "—".to_string(),
                Some(0) => "✓".to_string(),
                Some(k) => format!("✗ ({k} px)"),
            },
        );
    }
    let _ = writeln!(
        s,
        "\nMedians of the runs; speed-up = cellpose time / cytoseg time. MP/s = image megapixels \
         / median total time. cytoseg here runs Cellpose's tiling (`--tiling cellpose`), the \
         mode whose labels equal Cellpose's.\n"
    );
    let _ = writeln!(
        s,
        "**The defaults vs the exact mode**, same image, same threads, same run: exact = \
         Cellpose's tiling in float32 (`--tiling cellpose --precision fp32`); fast fp32 = \
         whole images up to 1024² in one piece, larger ones in tiles of at most 1024² \
         overlapping by 64 px, float32; default = fast tiling with `--precision auto` (the \
         precision it chose in brackets). AP@0.5 of the default's labels scored against the \
         exact mode's:\n"
    );
    let _ = writeln!(
        s,
        "| size | exact MP/s | fast fp32 MP/s | default MP/s | network s exact / fast fp32 / \
         default | **default × exact** | objects exact / default | AP@0.5 default vs exact | \
         default peak RSS MB |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let (Some((f, ap, used)), Some(f32s)) = (&r.fast, &r.fast32) else {
            continue;
        };
        let mp = (r.side * r.side) as f64 / 1e6;
        let o = &r.ours;
        let _ = writeln!(
            s,
            "| {}² | {:.3} | {:.3} | {:.3} ({used}) | {:.3} / {:.3} / {:.3} | **{:.2}** | {} / {} \
             | {:.4} | {:.0} |",
            r.side,
            mp / o.med(3),
            mp / f32s.med(3),
            mp / f.med(3),
            o.med(1),
            f32s.med(1),
            f.med(1),
            o.med(3) / f.med(3),
            o.objects,
            f.objects,
            ap,
            f.peak_mb,
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| size | image MB (float32) | cytoseg peak RSS MB | cytoseg added by the runs MB \
         | cellpose peak RSS MB | cellpose added by the runs MB |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {}² | {:.1} | {:.0} | {:.0} | {} | {} |",
            r.side,
            (r.side * r.side * 4) as f64 / MIB,
            r.ours.peak_mb,
            r.ours.added_mb,
            r.theirs
                .as_ref()
                .map_or("—".into(), |t| format!("{:.0}", t.peak_mb)),
            r.theirs
                .as_ref()
                .map_or("—".into(), |t| format!("{:.0}", t.added_mb)),
        );
    }
    let _ = writeln!(
        s,
        "\nPeak RSS: the whole process (cytoseg: `VmHWM` of the child, ONNX Runtime and model \
         included; cellpose: `ru_maxrss`, Python, torch and onnxruntime included); added: peak \
         at the end minus peak after loading and the warm-up (a batch of 8 zero tiles through \
         the network, then a 256² crop segmented), i.e. what the image itself costs.\n"
    );
    let notes: Vec<String> = rows
        .iter()
        .filter(|r| !r.note.is_empty())
        .map(|r| format!("- {}²: {}", r.side, r.note))
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(s, "Notes:\n{}\n", notes.join("\n"));
    }
    let _ = writeln!(
        s,
        "Raw times (s; preprocess / network / flows→labels / total per run):\n"
    );
    let fmt = |side: &Side| {
        (0..side.times[0].len())
            .map(|i| {
                (0..4)
                    .map(|k| format!("{:.3}", side.times[k][i]))
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    for r in rows {
        let _ = writeln!(
            s,
            "- {}²: cytoseg [{}]; cytoseg fast tiling [{}]; cellpose [{}]",
            r.side,
            fmt(&r.ours),
            r.fast.as_ref().map_or(String::new(), |f| fmt(&f.0)),
            r.theirs.as_ref().map_or(String::new(), fmt)
        );
    }
    s
}

/// Quick in-process check used when the binary runs without `--bench` (e.g. `cargo test`).
fn smoke() -> BoxResult<()> {
    if ort_library().is_none() && std::env::var_os("ORT_DYLIB_PATH").is_none() {
        eprintln!(
            "bench_pipeline smoke check SKIPPED: no ONNX Runtime library (set ORT_DYLIB_PATH or \
             run scripts/setup-ort.sh)"
        );
        return Ok(());
    }
    let pool = crop_pool()?;
    let px = mosaic(&pool, CROP);
    let model = load_model(1)?;
    let view = ImageView::packed(Pixels::U16(&px), CROP, CROP, 1)?;
    let seg = model.segment(&view, &SegmentParams::for_model(&model), None)?;
    if seg.count == 0 {
        return Err("smoke: no objects found".into());
    }
    eprintln!(
        "bench_pipeline smoke check: {CROP}² → {} objects; run with `cargo bench --bench \
         bench_pipeline` for the benchmark",
        seg.count
    );
    Ok(())
}

fn main() {
    common::dispatch("bench_pipeline", CHILD_ARG, child, bench, smoke);
}
