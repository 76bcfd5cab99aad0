//! Flows → labels benchmark: cytoseg's `compute_masks_slices` against cellpose 4.2.1.1 on the CPU.
//!
//! Run with `cargo bench --bench bench_flows`. For every image size × foreground density × flow
//! quality control (QC: `flow_threshold` 0.4 = on, 0.0 = off) it
//!
//! * builds a deterministic synthetic network output: random, mostly non-overlapping elliptic
//!   nuclei (diameter 12–30 px) → unit flows by [`flows::labels_to_flows_slices`] × 5 plus a little
//!   smooth noise, and cell-probability logits +4 inside / −4 outside, blurred, plus smooth noise;
//! * times cytoseg (median of N runs) in a child process of this binary (re-executed with a
//!   hidden first argument), whose peak memory is `VmHWM` at the end minus `VmHWM` once the input
//!   is loaded — reported beside the input size (12 bytes per pixel: `dy`, `dx`, `cellprob`);
//! * when a Python with cellpose is found (`$CYTOSEG_PYTHON`, else `.venv/bin/python`), runs
//!   `benches/flows_reference.py` on the very same `.npy` input (torch on 2 threads, the parity
//!   configuration), compares the labels pixel for pixel and prints the speed ratio.
//!
//! A Markdown table goes to stdout and to `target/bench-flows.md`; progress goes to stderr.
//!
//! Environment:
//! * `CYTOSEG_BENCH_SIZES=512,1024` — image sides (default `512,1024,2048,4096`);
//! * `CYTOSEG_BENCH_REF_4096=1` — also run the reference above 2048² (slow: minutes per call);
//! * `CYTOSEG_BENCH_REF=0` — never run the reference;
//! * `CYTOSEG_BENCH_DUMP=DIR` — only write each case's input (`SIDE_DENSITY_dp.npy`,
//!   `SIDE_DENSITY_cellprob.npy`) to `DIR` and exit, for experiments on the same data;
//! * `CYTOSEG_BENCH_STAGES=1` — also time the pipeline's stages through the public API
//!   (flows → unfilled labels, flow-error QC, hole filling) and `labels_to_flows_slices`.
//!
//! Without `--bench` (e.g. under `cargo test --benches`) it only runs a quick in-process smoke
//! check.
mod common;
use common::{BoxResult, env_flag, machine, median, reference_python, target_dir, vm_hwm_kb};

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cytoseg::core::flows::{self, FlowsRef, MaskParams};
use ndarray::{Array2, Array3};
use serde_json::Value;

/// Hidden first argument that makes this binary run one measured case.
const CHILD_ARG: &str = "__cytoseg_bench_flows_child";
/// Bytes of flow input per pixel: `dy`, `dx` and `cellprob` as float32.
const INPUT_BYTES_PER_PX: f64 = 12.0;
const MIB: f64 = 1024.0 * 1024.0;

// ---------------------------------------------------------------------------------------------
// Deterministic synthetic input.

/// SplitMix64: small, fast and good enough for synthetic images.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// Random elliptic nuclei until `fraction` of the pixels are foreground. A nucleus may overlap
/// earlier ones by at most 20 % of its area and only takes background pixels (touching cells
/// clip each other, as in dense tissue). Returns labels 1..=n, row-major.
fn synth_labels(h: usize, w: usize, fraction: f64, rng: &mut Rng) -> (Vec<u32>, u32) {
    let mut labels = vec![0u32; h * w];
    let target = (fraction * (h * w) as f64) as usize;
    let max_attempts = 200 * (target / 250 + 10);
    let (mut fg, mut n, mut attempts) = (0usize, 0u32, 0usize);
    let mut free = Vec::new();
    while fg < target && attempts < max_attempts {
        attempts += 1;
        let a = rng.range(12.0, 30.0) / 2.0;
        let b = a * rng.range(0.65, 1.0);
        let (s, c) = rng.range(0.0, std::f64::consts::PI).sin_cos();
        let cy = rng.range(-a / 2.0, h as f64 + a / 2.0);
        let cx = rng.range(-a / 2.0, w as f64 + a / 2.0);
        let y0 = (cy - a).floor().max(0.0) as usize;
        let y1 = ((cy + a).ceil().max(0.0) as usize).min(h - 1);
        let x0 = (cx - a).floor().max(0.0) as usize;
        let x1 = ((cx + a).ceil().max(0.0) as usize).min(w - 1);
        free.clear();
        let (mut area, mut overlap) = (0usize, 0usize);
        for y in y0..=y1 {
            for x in x0..=x1 {
                let (dy, dx) = (y as f64 - cy, x as f64 - cx);
                let u = (dy * c + dx * s) / a;
                let v = (dx * c - dy * s) / b;
                if u * u + v * v <= 1.0 {
                    area += 1;
                    let i = y * w + x;
                    if labels[i] == 0 {
                        free.push(i);
                    } else {
                        overlap += 1;
                    }
                }
            }
        }
        if area < 20 || overlap * 5 > area {
            continue;
        }
        n += 1;
        for &i in &free {
            labels[i] = n;
        }
        fg += free.len();
    }
    (labels, n)
}

/// Smooth noise in [-amp, amp]: uniform values on a grid every `cell` pixels, bilinearly
/// interpolated.
fn smooth_noise(h: usize, w: usize, cell: usize, amp: f64, rng: &mut Rng) -> Vec<f64> {
    let (gh, gw) = (h / cell + 2, w / cell + 2);
    let grid: Vec<f64> = (0..gh * gw).map(|_| rng.range(-amp, amp)).collect();
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        let fy = y as f64 / cell as f64;
        let (gy, ty) = (fy.floor() as usize, fy.fract());
        for x in 0..w {
            let fx = x as f64 / cell as f64;
            let (gx, tx) = (fx.floor() as usize, fx.fract());
            let g = |yy: usize, xx: usize| grid[yy * gw + xx];
            let top = g(gy, gx) * (1.0 - tx) + g(gy, gx + 1) * tx;
            let bot = g(gy + 1, gx) * (1.0 - tx) + g(gy + 1, gx + 1) * tx;
            out[y * w + x] = top * (1.0 - ty) + bot * ty;
        }
    }
    out
}

/// 3×3 box blur with clamped edges.
fn box_blur(src: &[f64], h: usize, w: usize) -> Vec<f64> {
    let mut tmp = vec![0.0; h * w];
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        for x in 0..w {
            let l = row[x.saturating_sub(1)];
            let r = row[(x + 1).min(w - 1)];
            tmp[y * w + x] = (l + row[x] + r) / 3.0;
        }
    }
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        let (yu, yd) = (y.saturating_sub(1), (y + 1).min(h - 1));
        for x in 0..w {
            out[y * w + x] = (tmp[yu * w + x] + tmp[y * w + x] + tmp[yd * w + x]) / 3.0;
        }
    }
    out
}

/// One synthetic network output.
struct Input {
    density: f64,
    /// `dy` then `dx`, float32, `2 * side²`.
    dp: Vec<f32>,
    cellprob: Vec<f32>,
    objects: u32,
    fg_fraction: f64,
    labels_to_flows_s: f64,
}

fn synth_input(side: usize, density: f64) -> BoxResult<Input> {
    let (h, w) = (side, side);
    let n = h * w;
    let seed = 0x5EED_F10E ^ ((side as u64) << 20) ^ ((density * 1000.0) as u64);
    let mut rng = Rng(seed);
    let (labels, objects) = synth_labels(h, w, density, &mut rng);
    let fg_fraction = labels.iter().filter(|&&l| l != 0).count() as f64 / n as f64;
    let t0 = Instant::now();
    let mu = flows::labels_to_flows_slices(&labels, h, w)?;
    let labels_to_flows_s = t0.elapsed().as_secs_f64();
    let ny = smooth_noise(h, w, 8, 0.5, &mut rng);
    let nx = smooth_noise(h, w, 8, 0.5, &mut rng);
    let mut dp = vec![0f32; 2 * n];
    for i in 0..n {
        dp[i] = (5.0 * mu[i] + ny[i]) as f32;
        dp[n + i] = (5.0 * mu[n + i] + nx[i]) as f32;
    }
    drop((mu, ny, nx));
    let logits: Vec<f64> = labels
        .iter()
        .map(|&l| if l != 0 { 4.0 } else { -4.0 })
        .collect();
    let blurred = box_blur(&box_blur(&logits, h, w), h, w);
    let noise = smooth_noise(h, w, 16, 0.5, &mut rng);
    let cellprob = blurred
        .iter()
        .zip(&noise)
        .map(|(&b, &e)| (b + e) as f32)
        .collect();
    Ok(Input {
        density,
        dp,
        cellprob,
        objects,
        fg_fraction,
        labels_to_flows_s,
    })
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Reads the float32 payload of a C-order `.npy` file in 1 MiB chunks (no transient copy of the
/// whole file, so that the child's baseline peak is the input itself).
fn read_npy_f32(path: &Path, expect: usize) -> BoxResult<Vec<f32>> {
    let mut f = BufReader::new(File::open(path)?);
    let mut pre = [0u8; 10];
    f.read_exact(&mut pre)?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err(format!("{}: not an .npy file", path.display()).into());
    }
    let header_len = if pre[6] == 1 {
        u16::from_le_bytes([pre[8], pre[9]]) as usize
    } else {
        let mut more = [0u8; 2];
        f.read_exact(&mut more)?;
        u32::from_le_bytes([pre[8], pre[9], more[0], more[1]]) as usize
    };
    let mut header = vec![0u8; header_len];
    f.read_exact(&mut header)?;
    let header = String::from_utf8_lossy(&header);
    if !header.contains("<f4") || header.contains("True") {
        return Err(format!("{}: expected C-order <f4, got {header}", path.display()).into());
    }
    let mut out = Vec::with_capacity(expect);
    let mut buf = vec![0u8; 1 << 20];
    while out.len() < expect {
        let k = ((expect - out.len()) * 4).min(buf.len());
        f.read_exact(&mut buf[..k])?;
        out.extend(
            buf[..k]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
    }
    Ok(out)
}

fn params(flow_threshold: f64) -> MaskParams {
    MaskParams {
        flow_threshold,
        ..MaskParams::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Child: one measured case.

/// `CHILD_ARG dp.npy cellprob.npy side flow_threshold reps labels_out.npy stages(0|1)`; prints
/// `RESULT {json}`.
fn child(args: &[String]) -> BoxResult<()> {
    let [dp_path, cp_path, side, ft, reps, out, stages] = args else {
        return Err(format!("child: bad arguments {args:?}").into());
    };
    let side: usize = side.parse()?;
    let ft: f64 = ft.parse()?;
    let reps: usize = reps.parse()?;
    let stages = stages == "1";
    let n = side * side;
    let dp = read_npy_f32(Path::new(dp_path), 2 * n)?;
    let cellprob = read_npy_f32(Path::new(cp_path), n)?;
    let (dy, dx) = dp.split_at(n);
    let input = FlowsRef {
        dy,
        dx,
        cellprob: &cellprob,
        height: side,
        width: side,
    };
    let p = params(ft);
    // Start rayon's pool before the baseline so that its threads are not counted.
    rayon::join(|| (), || ());
    let base_kb = vm_hwm_kb();
    let mut times = Vec::with_capacity(reps);
    let mut labels: Option<Vec<u32>> = None;
    for _ in 0..reps {
        drop(labels.take());
        let t0 = Instant::now();
        let l = flows::compute_masks_slices(&input, &p)?;
        times.push(t0.elapsed().as_secs_f64());
        labels = Some(l);
    }
    let end_kb = vm_hwm_kb();
    let labels = labels.ok_or("no run")?;
    let objects = labels.iter().copied().max().unwrap_or(0);
    ndarray_npy::write_npy(out, &Array2::from_shape_vec((side, side), labels)?)?;

    let mut result = serde_json::json!({
        "times_s": times,
        "base_hwm_kb": base_kb,
        "end_hwm_kb": end_kb,
        "objects": objects,
    });
    if stages && ft > 0.0 {
        // Stages through the public API (QC-on cases only), each the median of `reps` runs:
        //   unfilled (QC off) = follow flows + histogram seeds + mask growth;
        //   flow_errors       = the QC's diffusion + per-mask error on those masks;
        //   unfilled (QC on)  = both, plus removal and renumbering;
        //   fill holes        = hole filling + size filter on the unfilled labels;
        //   labels→flows      = `labels_to_flows_slices` on the final labels.
        fn timed<T>(reps: usize, mut f: impl FnMut() -> BoxResult<T>) -> BoxResult<(f64, T)> {
            let mut v = Vec::new();
            let mut last = None;
            for _ in 0..reps.max(1) {
                drop(last.take());
                let t0 = Instant::now();
                let r = f()?;
                v.push(t0.elapsed().as_secs_f64());
                last = Some(r);
            }
            Ok((median(&v), last.ok_or("no run")?))
        }
        let (s_unfilled_noqc, unfilled_noqc) = timed(reps, || {
            Ok(flows::compute_masks_unfilled(&input, &params(0.0))?)
        })?;
        let (s_flow_errors, _) = timed(reps, || Ok(flows::flow_errors(&unfilled_noqc, &input)?))?;
        drop(unfilled_noqc);
        let (s_unfilled, unfilled) =
            timed(reps, || Ok(flows::compute_masks_unfilled(&input, &p)?))?;
        let (s_fill, filled) = timed(reps, || {
            let mut l = unfilled.clone();
            flows::fill_holes_and_remove_small_masks(&mut l, side, side, p.min_size)?;
            Ok(l)
        })?;
        drop(unfilled);
        let (s_l2f, _) = timed(reps, || {
            Ok(flows::labels_to_flows_slices(&filled, side, side)?)
        })?;
        result["stages"] = serde_json::json!({
            "unfilled_qc_off_s": s_unfilled_noqc,
            "flow_errors_s": s_flow_errors,
            "unfilled_s": s_unfilled,
            "fill_holes_s": s_fill,
            "labels_to_flows_s": s_l2f,
        });
    }
    println!("RESULT {result}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Parent.

struct Row {
    side: usize,
    density: f64,
    fg_fraction: f64,
    qc: bool,
    objects: u32,
    ref_objects: Option<u64>,
    times: Vec<f64>,
    peak_mb: f64,
    input_mb: f64,
    ref_median: Option<f64>,
    ref_times: Vec<f64>,
    ref_peak_inc_mb: Option<f64>,
    /// `None`: not compared; `Some(0)`: identical; `Some(k)`: k pixels differ.
    diff: Option<usize>,
    note: String,
    stages: Option<Value>,
    ref_stages: Option<Value>,
    labels_to_flows_s: f64,
}

fn run_child(
    dp: &Path,
    cp: &Path,
    side: usize,
    ft: f64,
    reps: usize,
    out: &Path,
    stages: bool,
) -> BoxResult<Value> {
    let exe = std::env::current_exe()?;
    let o = Command::new(exe)
        .arg(CHILD_ARG)
        .arg(dp)
        .arg(cp)
        .arg(side.to_string())
        .arg(ft.to_string())
        .arg(reps.to_string())
        .arg(out)
        .arg(if stages { "1" } else { "0" })
        .output()?;
    let stdout = String::from_utf8_lossy(&o.stdout);
    if !o.status.success() {
        return Err(format!(
            "child failed ({}): {}{}",
            o.status,
            stdout,
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| format!("child printed no RESULT: {stdout}"))?;
    Ok(serde_json::from_str(line)?)
}

fn run_reference(
    py: &Path,
    dp: &Path,
    cp: &Path,
    ft: f64,
    reps: usize,
    out: &Path,
    stages: bool,
) -> BoxResult<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/flows_reference.py");
    let o = Command::new(py)
        .arg(script)
        .arg(dp)
        .arg(cp)
        .arg(ft.to_string())
        .arg(reps.to_string())
        .arg(out)
        .env("CYTOSEG_BENCH_STAGES", if stages { "1" } else { "0" })
        .output()?;
    let stdout = String::from_utf8_lossy(&o.stdout);
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        return Err(format!("reference failed ({}): {:?}", o.status, tail).into());
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| format!("reference printed no JSON: {stdout}"))?;
    Ok(serde_json::from_str(line)?)
}

fn cytoseg_reps(side: usize) -> usize {
    match side {
        0..=1024 => 15,
        1025..=2048 => 7,
        _ => 2,
    }
}

fn reference_reps(side: usize) -> usize {
    match side {
        0..=1024 => 5,
        1025..=2048 => 3,
        _ => 1,
    }
}

fn bench() -> BoxResult<()> {
    let sizes: Vec<usize> = match std::env::var("CYTOSEG_BENCH_SIZES") {
        Ok(s) if !s.trim().is_empty() => s
            .split(',')
            .map(|v| v.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("CYTOSEG_BENCH_SIZES={s:?}: {e}"))?,
        _ => vec![512, 1024, 2048, 4096],
    };
    let ref_big = env_flag("CYTOSEG_BENCH_REF_4096").unwrap_or(false);
    let stages = env_flag("CYTOSEG_BENCH_STAGES").unwrap_or(false);
    let python = if env_flag("CYTOSEG_BENCH_REF") == Some(false) {
        Err("CYTOSEG_BENCH_REF=0".to_string())
    } else {
        reference_python("cellpose, torch, numpy")
    };
    match &python {
        Ok(py) => eprintln!("reference: cellpose via {}", py.display()),
        Err(why) => eprintln!("reference: SKIPPED — {why}"),
    }
    let dir = std::env::temp_dir().join(format!("cytoseg-bench-flows-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();

    let mut rows = Vec::new();
    for &side in &sizes {
        for density in [0.10, 0.40] {
            let t0 = Instant::now();
            let input = synth_input(side, density)?;
            let n = side * side;
            let tag = format!("{side}_{}", (density * 100.0) as u32);
            let dp_path = dir.join(format!("{tag}_dp.npy"));
            let cp_path = dir.join(format!("{tag}_cellprob.npy"));
            let Input {
                dp,
                cellprob,
                objects: drawn,
                fg_fraction,
                labels_to_flows_s,
                ..
            } = input;
            ndarray_npy::write_npy(&dp_path, &Array3::from_shape_vec((2, side, side), dp)?)?;
            ndarray_npy::write_npy(&cp_path, &Array2::from_shape_vec((side, side), cellprob)?)?;
            if let Some(keep) = std::env::var_os("CYTOSEG_BENCH_DUMP") {
                let keep = PathBuf::from(keep);
                std::fs::create_dir_all(&keep)?;
                for p in [&dp_path, &cp_path] {
                    let name = p.file_name().ok_or("input file name")?;
                    std::fs::copy(p, keep.join(name))?;
                }
                eprintln!(
                    "{side}² {:.0}%: input written to {}",
                    density * 100.0,
                    keep.display()
                );
                continue;
            }
            eprintln!(
                "{side}² {:.0}%: {drawn} nuclei drawn, foreground {:.1}%, input built in {:.2} s \
                 (labels_to_flows_slices {:.3} s)",
                density * 100.0,
                fg_fraction * 100.0,
                t0.elapsed().as_secs_f64(),
                labels_to_flows_s
            );
            for qc in [true, false] {
                let ft = if qc { 0.4 } else { 0.0 };
                let out = dir.join(format!("{tag}_{ft}_cytoseg.npy"));
                let r = run_child(
                    &dp_path,
                    &cp_path,
                    side,
                    ft,
                    cytoseg_reps(side),
                    &out,
                    stages,
                )?;
                let times: Vec<f64> = r["times_s"]
                    .as_array()
                    .ok_or("times")?
                    .iter()
                    .filter_map(Value::as_f64)
                    .collect();
                let base = r["base_hwm_kb"].as_f64().unwrap_or(0.0);
                let end = r["end_hwm_kb"].as_f64().unwrap_or(0.0);
                let mut row = Row {
                    side,
                    density,
                    fg_fraction,
                    qc,
                    objects: r["objects"].as_u64().unwrap_or(0) as u32,
                    ref_objects: None,
                    peak_mb: (end - base).max(0.0) / 1024.0,
                    input_mb: INPUT_BYTES_PER_PX * n as f64 / MIB,
                    times,
                    ref_median: None,
                    ref_times: Vec::new(),
                    ref_peak_inc_mb: None,
                    diff: None,
                    note: String::new(),
                    stages: r.get("stages").cloned(),
                    ref_stages: None,
                    labels_to_flows_s,
                };
                eprintln!(
                    "  QC {}: cytoseg median {:.4} s over {:?}, {} objects, peak +{:.1} MB",
                    if qc { "on " } else { "off" },
                    median(&row.times),
                    row.times,
                    row.objects,
                    row.peak_mb
                );
                match &python {
                    Err(why) => row.note = format!("reference skipped: {why}"),
                    Ok(_) if side > 2048 && !ref_big => {
                        row.note = "reference skipped above 2048² (set CYTOSEG_BENCH_REF_4096=1)"
                            .to_string()
                    }
                    Ok(py) => {
                        let ref_out = dir.join(format!("{tag}_{ft}_cellpose.npy"));
                        match run_reference(
                            py,
                            &dp_path,
                            &cp_path,
                            ft,
                            reference_reps(side),
                            &ref_out,
                            stages && qc,
                        ) {
                            Err(e) => row.note = format!("reference error: {e}"),
                            Ok(j) => {
                                row.ref_median = j["median_s"].as_f64();
                                row.ref_times = j["times_s"]
                                    .as_array()
                                    .map(|a| a.iter().filter_map(Value::as_f64).collect())
                                    .unwrap_or_default();
                                row.ref_peak_inc_mb =
                                    match (j["peak_rss_mb"].as_f64(), j["base_rss_mb"].as_f64()) {
                                        (Some(p), Some(b)) => Some(p - b),
                                        _ => None,
                                    };
                                row.ref_objects = j["n_masks"].as_u64();
                                row.ref_stages = j.get("stages").filter(|v| !v.is_null()).cloned();
                                let ours: Array2<u32> = ndarray_npy::read_npy(&out)?;
                                let theirs: Array2<u32> = ndarray_npy::read_npy(&ref_out)?;
                                row.diff = Some(if ours.dim() != theirs.dim() {
                                    n
                                } else {
                                    ours.iter()
                                        .zip(theirs.iter())
                                        .filter(|(a, b)| a != b)
                                        .count()
                                });
                                let _ = std::fs::remove_file(&ref_out);
                            }
                        }
                        eprintln!(
                            "  QC {}: cellpose median {} over {:?}, labels {}",
                            if qc { "on " } else { "off" },
                            row.ref_median.map_or("n/a".into(), |v| format!("{v:.3} s")),
                            row.ref_times,
                            match row.diff {
                                None => format!("not compared ({})", row.note),
                                Some(0) => "identical ✓".to_string(),
                                Some(k) => format!("DIFFER at {k} pixels ✗"),
                            }
                        );
                    }
                }
                let _ = std::fs::remove_file(&out);
                rows.push(row);
            }
            let _ = std::fs::remove_file(&dp_path);
            let _ = std::fs::remove_file(&cp_path);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);

    let report = render(&rows, &python, stages, started.elapsed().as_secs_f64());
    println!("{report}");
    let md = target_dir().join("bench-flows.md");
    match std::fs::create_dir_all(target_dir()).and_then(|_| std::fs::write(&md, &report)) {
        Ok(()) => eprintln!("written to {}", md.display()),
        Err(e) => eprintln!("could not write {}: {e}", md.display()),
    }
    if rows.iter().any(|r| r.diff.is_some_and(|d| d > 0)) {
        return Err("cytoseg's labels differ from cellpose's".into());
    }
    Ok(())
}

fn render(rows: &[Row], python: &Result<PathBuf, String>, stages: bool, total_s: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Flows → labels: cytoseg vs cellpose 4.2.1.1 (CPU)\n");
    let _ = writeln!(s, "Machine: {}.  ", machine());
    let _ = writeln!(
        s,
        "Reference: {}.  ",
        match python {
            Ok(py) => format!(
                "`benches/flows_reference.py` via `{}` (`dynamics.compute_masks`, \
                 torch.set_num_threads(2), device cpu)",
                py.display()
            ),
            Err(why) => format!("skipped — {why}"),
        }
    );
    let _ = writeln!(
        s,
        "Parameters: niter 200, cellprob_threshold 0.0, min_size 15, max_size_fraction 0.4; \
         QC on = flow_threshold 0.4, off = 0.0. Total bench time {total_s:.0} s.\n"
    );
    let _ = writeln!(
        s,
        "| size | density | QC | objects | cytoseg median s | cellpose median s | speed-up × \
         | identical? | cytoseg peak MB | input MB | peak/input × | cellpose peak MB |"
    );
    let _ = writeln!(
        s,
        "|---|---|---|---:|---:|---:|---:|:---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let med = median(&r.times);
        let objects = match r.ref_objects {
            Some(c) if c != r.objects as u64 => format!("{} (cellpose {c})", r.objects),
            _ => r.objects.to_string(),
        };
        let _ = writeln!(
            s,
            "| {0}² | {1:.0}% ({2:.1}%) | {3} | {4} | {5:.4} | {6} | {7} | {8} | {9:.1} | {10:.1} \
             | {11:.2} | {12} |",
            r.side,
            r.density * 100.0,
            r.fg_fraction * 100.0,
            if r.qc { "on" } else { "off" },
            objects,
            med,
            r.ref_median.map_or("—".into(), |v| format!("{v:.3}")),
            r.ref_median
                .map_or("—".into(), |v| format!("{:.1}", v / med)),
            match r.diff {
                None => "—".to_string(),
                Some(0) => "✓".to_string(),
                Some(k) => format!("✗ ({k} px)"),
            },
            r.peak_mb,
            r.input_mb,
            r.peak_mb / r.input_mb,
            r.ref_peak_inc_mb.map_or("—".into(), |v| format!("{v:.0}")),
        );
    }
    let _ = writeln!(
        s,
        "\nDensity: target foreground (achieved). cytoseg peak MB: `VmHWM` at the end of the \
         timed runs minus `VmHWM` once the input was loaded, in a child process (labels output \
         included); input MB: 12 bytes/px (dy, dx, cellprob float32); goal peak/input < 3. \
         cellpose peak MB: `ru_maxrss` after the timed runs minus after loading + warm-up. \
         Medians of N runs: cytoseg 15 (≤1024²), 7 (2048²), 2 (4096²); cellpose 5 (≤1024²), \
         3 (2048²), 1 (4096²). The machine is shared: compare medians and ratios.\n"
    );
    let notes: Vec<String> = rows
        .iter()
        .filter(|r| !r.note.is_empty())
        .map(|r| {
            format!(
                "- {}² {:.0}% QC {}: {}",
                r.side,
                r.density * 100.0,
                if r.qc { "on" } else { "off" },
                r.note
            )
        })
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(s, "Notes:\n{}\n", notes.join("\n"));
    }
    let _ = writeln!(s, "Raw times (s):\n");
    for r in rows {
        let _ = writeln!(
            s,
            "- {}² {:.0}% QC {}: cytoseg {:?}; cellpose {:?}",
            r.side,
            r.density * 100.0,
            if r.qc { "on" } else { "off" },
            r.times
                .iter()
                .map(|t| (t * 1e4).round() / 1e4)
                .collect::<Vec<_>>(),
            r.ref_times
                .iter()
                .map(|t| (t * 1e3).round() / 1e3)
                .collect::<Vec<_>>(),
        );
    }
    if stages {
        let _ = writeln!(
            s,
            "\n## cytoseg stages (medians, s)\n\n\
             QC-on cases. full = `compute_masks_slices`; unfilled QC off = `compute_masks_unfilled` \
             with flow_threshold 0 (follow flows + seeds + mask growth); flow_errors = the QC's \
             diffusion + per-mask error on those masks; unfilled = `compute_masks_unfilled` with \
             QC; fill holes = `fill_holes_and_remove_small_masks`; labels→flows = \
             `labels_to_flows_slices` on the final masks (input: on the drawn nuclei, while \
             building the input).\n\n\
             cellpose columns (one extra run of `compute_masks`'s steps): follow = `follow_flows`, \
             get_masks = `get_masks_torch`, QC = `remove_bad_flow_masks`, fill = \
             `fill_holes_and_remove_small_masks`.\n\n\
             | size | density | QC | full | unfilled QC off | flow_errors | unfilled | fill holes \
             | labels→flows | input labels→flows | cellpose follow | cellpose get_masks \
             | cellpose QC | cellpose fill |\n\
             |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in rows {
            let Some(st) = &r.stages else { continue };
            let g = |k: &str| st[k].as_f64().map_or("—".into(), |v| format!("{v:.4}"));
            let c = |k: &str| {
                r.ref_stages
                    .as_ref()
                    .and_then(|v| v[k].as_f64())
                    .map_or("—".into(), |v| format!("{v:.3}"))
            };
            let _ = writeln!(
                s,
                "| {}² | {:.0}% | {} | {:.4} | {} | {} | {} | {} | {} | {:.4} | {} | {} | {} | {} |",
                r.side,
                r.density * 100.0,
                if r.qc { "on" } else { "off" },
                median(&r.times),
                g("unfilled_qc_off_s"),
                g("flow_errors_s"),
                g("unfilled_s"),
                g("fill_holes_s"),
                g("labels_to_flows_s"),
                r.labels_to_flows_s,
                c("follow_flows_s"),
                c("get_masks_s"),
                c("remove_bad_flow_masks_s"),
                c("fill_holes_s"),
            );
        }
    }
    s
}

/// Quick in-process check used when the binary runs without `--bench` (e.g. `cargo test`).
fn smoke() -> BoxResult<()> {
    let side = 128;
    let input = synth_input(side, 0.25)?;
    let n = side * side;
    let (dy, dx) = input.dp.split_at(n);
    let f = FlowsRef {
        dy,
        dx,
        cellprob: &input.cellprob,
        height: side,
        width: side,
    };
    let labels = flows::compute_masks_slices(&f, &params(0.4))?;
    let objects = labels.iter().copied().max().unwrap_or(0);
    if objects == 0 {
        return Err("smoke: no objects found".into());
    }
    eprintln!(
        "bench_flows smoke check: {side}² {:.0}% → {objects} objects ({} drawn); run with \
         `cargo bench --bench bench_flows` for the benchmark",
        input.density * 100.0,
        input.objects
    );
    Ok(())
}

fn main() {
    common::dispatch("bench_flows", CHILD_ARG, child, bench, smoke);
}
