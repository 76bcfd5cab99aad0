//! Reporting for a training run: the loss history as CSV, the loss curve as a PNG plot drawn by
//! hand (no plotting crate, a built-in 5×7 bitmap font for its text), and the Markdown model
//! card of the trained clone, generated from its `manifest.json`.
//!
//! The plot is 800×500 RGB: training loss in blue (a centred moving average in dark blue over
//! the raw curve in pale blue once there are 60 or more points), validation loss in orange with
//! round markers, against the step. The y axis is logarithmic when every plotted loss is
//! positive and the largest is at least four times the smallest (a loss falling over a decade
//! or more reads best so), linear otherwise; the axis label says which.

use std::io::Write;
use std::path::Path;

use ::image::{Rgb, RgbImage};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::io::write_atomic;

/// One point of a training run's loss history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossPoint {
    /// Optimizer step (0-based or 1-based, as the trainer counts).
    pub step: usize,
    /// Training loss at this step (one batch, or a running mean over the last batches).
    pub train_loss: f64,
    /// Validation loss, where one was measured at this step.
    pub val_loss: Option<f64>,
    /// Learning rate used for this step.
    pub lr: f64,
    /// Seconds since the start of training.
    pub elapsed_s: f64,
}

// ------------------------------------------------------------------------------------------
// CSV

/// The loss history as CSV text: the header `step,train_loss,val_loss,lr,elapsed_s`, then one
/// line per point, in the given order. A point without a validation loss has an empty
/// `val_loss` cell; numbers are written in plain decimal notation with a `.` decimal point (as
/// spreadsheets read CSV), a non-finite value as `NaN`, `inf` or `-inf`. Lines end with `\n`.
pub fn loss_csv(points: &[LossPoint]) -> String {
    let mut s = String::with_capacity(40 + points.len() * 48);
    s.push_str("step,train_loss,val_loss,lr,elapsed_s\n");
    for p in points {
        let val = p.val_loss.map(csv_number).unwrap_or_default();
        s.push_str(&format!(
            "{},{},{},{},{}\n",
            p.step,
            csv_number(p.train_loss),
            val,
            csv_number(p.lr),
            csv_number(p.elapsed_s)
        ));
    }
    s
}

/// A float for a CSV cell: Rust's shortest round-trip decimal form (never an exponent).
fn csv_number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else {
        format!("{v}")
    }
}

/// Writes [`loss_csv`] to `path` atomically, replacing any file there (the trainer rewrites it
/// as the run goes on).
pub fn write_loss_csv(path: &Path, points: &[LossPoint]) -> Result<()> {
    let text = loss_csv(points);
    write_atomic(path, true, |w| {
        w.write_all(text.as_bytes()).map_err(|e| Error::io(path, e))
    })
}

// ------------------------------------------------------------------------------------------
// Plot

/// Width of the loss plot in pixels.
const PLOT_W: u32 = 800;
/// Height of the loss plot in pixels.
const PLOT_H: u32 = 500;
const MARGIN_LEFT: u32 = 100;
const MARGIN_RIGHT: u32 = 24;
const MARGIN_TOP: u32 = 56;
const MARGIN_BOTTOM: u32 = 62;
/// Gap in pixels between the frame of the plot area and the ends of the axes' ranges.
const INSET: u32 = 8;
/// Text scale: each font pixel is drawn as a `TEXT_SCALE`×`TEXT_SCALE` block.
const TEXT_SCALE: u32 = 2;

const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const AXIS_COLOUR: Rgb<u8> = Rgb([40, 40, 40]);
const GRID_COLOUR: Rgb<u8> = Rgb([228, 228, 228]);
const TEXT_COLOUR: Rgb<u8> = Rgb([20, 20, 20]);
const LEGEND_BORDER: Rgb<u8> = Rgb([170, 170, 170]);
/// The training-loss curve (the smoothed one when smoothing applies).
const TRAIN_COLOUR: Rgb<u8> = Rgb([31, 119, 180]);
/// The raw training loss under the smoothed curve.
const TRAIN_RAW_COLOUR: Rgb<u8> = Rgb([170, 200, 232]);
/// The validation-loss curve and its markers.
const VAL_COLOUR: Rgb<u8> = Rgb([230, 100, 10]);

/// Below this many finite training points the training curve is drawn unsmoothed.
const SMOOTH_FROM: usize = 60;

/// The loss curve as a PNG (800×500 RGB): training loss and validation loss against the step,
/// with axes, numeric tick labels, a legend and `title` across the top (characters outside
/// printable ASCII are drawn as `?`; a title too long for the width is cut with `...`).
/// Non-finite losses are left out; with no finite loss at all the axes are drawn with a note.
/// See the module documentation for the choice of y scale.
pub fn loss_plot_png(points: &[LossPoint], title: &str) -> Result<Vec<u8>> {
    let img = render_loss_plot(points, title);
    let mut out = Vec::new();
    {
        use ::image::ImageEncoder;
        ::image::codecs::png::PngEncoder::new(&mut out)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                ::image::ExtendedColorType::Rgb8,
            )
            .map_err(|e| Error::invalid(format!("encoding the loss plot as PNG failed: {e}")))?;
    }
    Ok(out)
}

/// Writes [`loss_plot_png`] to `path` atomically, replacing any file there.
pub fn write_loss_plot(path: &Path, points: &[LossPoint], title: &str) -> Result<()> {
    let png = loss_plot_png(points, title)?;
    write_atomic(path, true, |w| {
        w.write_all(&png).map_err(|e| Error::io(path, e))
    })
}

/// A rectangle of pixels, `x0..x1` × `y0..y1` (exclusive ends).
#[derive(Clone, Copy)]
struct Rect {
    x0: i64,
    y0: i64,
    x1: i64,
    y1: i64,
}

/// One axis' mapping from data to the unit interval; `lo`/`hi` are in transformed units
/// (log10 of the value on a log axis).
#[derive(Clone, Copy)]
struct Scale {
    lo: f64,
    hi: f64,
    log: bool,
}

impl Scale {
    fn transform(&self, v: f64) -> f64 {
        if self.log { v.log10() } else { v }
    }

    /// Position of a transformed value in [0, 1] across the axis.
    fn frac_t(&self, t: f64) -> f64 {
        (t - self.lo) / (self.hi - self.lo)
    }
}

fn render_loss_plot(points: &[LossPoint], title: &str) -> RgbImage {
    let mut img = RgbImage::from_pixel(PLOT_W, PLOT_H, BACKGROUND);
    let area = Rect {
        x0: MARGIN_LEFT as i64,
        y0: MARGIN_TOP as i64,
        x1: (PLOT_W - MARGIN_RIGHT) as i64,
        y1: (PLOT_H - MARGIN_BOTTOM) as i64,
    };

    // The data, sorted by step, with non-finite losses left out.
    let mut sorted: Vec<LossPoint> = points.to_vec();
    sorted.sort_by_key(|p| p.step);
    let train: Vec<(f64, f64)> = sorted
        .iter()
        .filter(|p| p.train_loss.is_finite())
        .map(|p| (p.step as f64, p.train_loss))
        .collect();
    let val: Vec<(f64, f64)> = sorted
        .iter()
        .filter_map(|p| match p.val_loss {
            Some(v) if v.is_finite() => Some((p.step as f64, v)),
            _ => None,
        })
        .collect();
    let all_y: Vec<f64> = train.iter().chain(val.iter()).map(|&(_, y)| y).collect();

    // Scales.
    let xscale = {
        let (mut lo, mut hi) = match (sorted.first(), sorted.last()) {
            (Some(a), Some(b)) => (a.step as f64, b.step as f64),
            _ => (0.0, 1.0),
        };
        if hi <= lo {
            if lo == 0.0 {
                hi = 1.0;
            } else {
                lo -= 1.0;
                hi += 1.0;
            }
        }
        Scale { lo, hi, log: false }
    };
    let yscale = y_scale(&all_y);

    // Grid and ticks.
    let xticks = linear_ticks(xscale.lo, xscale.hi, 6, 1.0);
    let yticks: Vec<(f64, String)> = if yscale.log {
        log_ticks(yscale.lo, yscale.hi)
    } else {
        linear_ticks(yscale.lo, yscale.hi, 7, 0.0)
    };
    // Data and ticks stay `INSET` pixels inside the frame, so that a point at the end of a
    // range is not cut by it and the first ticks of the two axes do not meet in the corner.
    let inset = INSET as f64;
    let to_px = |s: &Scale, t: f64| {
        area.x0 as f64 + inset + s.frac_t(t) * ((area.x1 - area.x0) as f64 - 2.0 * inset)
    };
    let to_py = |s: &Scale, t: f64| {
        area.y1 as f64 - inset - s.frac_t(t) * ((area.y1 - area.y0) as f64 - 2.0 * inset)
    };
    for (v, _) in &xticks {
        let x = to_px(&xscale, *v).round() as i64;
        fill_rect(&mut img, x, area.y0, x + 1, area.y1, GRID_COLOUR);
    }
    for (v, _) in &yticks {
        let y = to_py(&yscale, yscale.transform(*v)).round() as i64;
        fill_rect(&mut img, area.x0, y, area.x1, y + 1, GRID_COLOUR);
    }

    // Curves, clipped to the plot area.
    let map = |&(x, y): &(f64, f64)| -> (f64, f64) {
        (to_px(&xscale, x), to_py(&yscale, yscale.transform(y)))
    };
    let train_px: Vec<(f64, f64)> = train.iter().map(map).collect();
    let smoothed = train.len() >= SMOOTH_FROM;
    if smoothed {
        let t: Vec<f64> = train.iter().map(|&(_, y)| yscale.transform(y)).collect();
        let s = moving_average(&t, train.len() / SMOOTH_FROM);
        let smooth_px: Vec<(f64, f64)> = train
            .iter()
            .zip(&s)
            .map(|(&(x, _), &ty)| (to_px(&xscale, x), to_py(&yscale, ty)))
            .collect();
        let mut layer = Coverage::new(PLOT_W, PLOT_H, area);
        layer.polyline(&decimate(&train_px), 1.2);
        layer.composite(&mut img, TRAIN_RAW_COLOUR);
        let mut layer = Coverage::new(PLOT_W, PLOT_H, area);
        layer.polyline(&decimate(&smooth_px), 2.4);
        layer.composite(&mut img, TRAIN_COLOUR);
    } else {
        let mut layer = Coverage::new(PLOT_W, PLOT_H, area);
        layer.polyline(&train_px, 2.2);
        if train_px.len() == 1 {
            layer.disc(train_px[0].0, train_px[0].1, 3.5);
        }
        layer.composite(&mut img, TRAIN_COLOUR);
    }
    if !val.is_empty() {
        let val_px: Vec<(f64, f64)> = val.iter().map(map).collect();
        let mut layer = Coverage::new(PLOT_W, PLOT_H, area);
        layer.polyline(&decimate(&val_px), 1.8);
        for &(x, y) in &val_px {
            layer.disc(x, y, 4.0);
        }
        layer.composite(&mut img, VAL_COLOUR);
    }

    // Axes: a box, outward tick marks, tick labels.
    fill_rect(
        &mut img,
        area.x0,
        area.y0,
        area.x1,
        area.y0 + 1,
        AXIS_COLOUR,
    );
    fill_rect(
        &mut img,
        area.x0,
        area.y1,
        area.x1 + 1,
        area.y1 + 1,
        AXIS_COLOUR,
    );
    fill_rect(
        &mut img,
        area.x0,
        area.y0,
        area.x0 + 1,
        area.y1,
        AXIS_COLOUR,
    );
    fill_rect(
        &mut img,
        area.x1,
        area.y0,
        area.x1 + 1,
        area.y1,
        AXIS_COLOUR,
    );
    let glyph_h = (GLYPH_ROWS as u32 * TEXT_SCALE) as i64;
    for (v, label) in &xticks {
        let x = to_px(&xscale, *v).round() as i64;
        fill_rect(&mut img, x, area.y1, x + 1, area.y1 + 6, AXIS_COLOUR);
        let w = text_width(label, TEXT_SCALE) as i64;
        draw_text(
            &mut img,
            x - w / 2,
            area.y1 + 10,
            label,
            TEXT_SCALE,
            TEXT_COLOUR,
        );
    }
    for (v, label) in &yticks {
        let y = to_py(&yscale, yscale.transform(*v)).round() as i64;
        fill_rect(&mut img, area.x0 - 6, y, area.x0, y + 1, AXIS_COLOUR);
        let w = text_width(label, TEXT_SCALE) as i64;
        draw_text(
            &mut img,
            area.x0 - 10 - w,
            y - glyph_h / 2,
            label,
            TEXT_SCALE,
            TEXT_COLOUR,
        );
    }

    // Axis labels and title.
    let xlabel = "step";
    let w = text_width(xlabel, TEXT_SCALE) as i64;
    draw_text(
        &mut img,
        (area.x0 + area.x1) / 2 - w / 2,
        area.y1 + 12 + glyph_h + 8,
        xlabel,
        TEXT_SCALE,
        TEXT_COLOUR,
    );
    let ylabel = if yscale.log {
        "loss (log scale)"
    } else {
        "loss"
    };
    draw_text(
        &mut img,
        8,
        area.y0 - glyph_h - 8,
        ylabel,
        TEXT_SCALE,
        TEXT_COLOUR,
    );
    let title = fit_text(title, PLOT_W - 16, TEXT_SCALE);
    let w = text_width(&title, TEXT_SCALE) as i64;
    draw_text(
        &mut img,
        PLOT_W as i64 / 2 - w / 2,
        10,
        &title,
        TEXT_SCALE,
        TEXT_COLOUR,
    );

    // Legend (top right, inside the plot area) or a note when there is nothing to plot.
    if all_y.is_empty() {
        let note = "no finite loss values";
        let w = text_width(note, TEXT_SCALE) as i64;
        draw_text(
            &mut img,
            (area.x0 + area.x1) / 2 - w / 2,
            (area.y0 + area.y1) / 2 - glyph_h / 2,
            note,
            TEXT_SCALE,
            TEXT_COLOUR,
        );
    } else {
        let mut entries: Vec<(&str, Rgb<u8>, bool)> = Vec::new();
        if !train.is_empty() {
            let label = if smoothed {
                "training loss (smoothed)"
            } else {
                "training loss"
            };
            entries.push((label, TRAIN_COLOUR, false));
        }
        if !val.is_empty() {
            entries.push(("validation loss", VAL_COLOUR, true));
        }
        draw_legend(&mut img, area, &entries);
    }
    img
}

/// The y scale for these finite losses (see the module documentation), padded by 5 % of the
/// span on both sides.
fn y_scale(ys: &[f64]) -> Scale {
    let (mut lo, mut hi) = ys
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| {
            (a.min(y), b.max(y))
        });
    if ys.is_empty() {
        return Scale {
            lo: 0.0,
            hi: 1.0,
            log: false,
        };
    }
    let log = lo > 0.0 && hi / lo >= 4.0;
    let data_min = lo;
    if log {
        lo = lo.log10();
        hi = hi.log10();
    }
    let span = hi - lo;
    if !span.is_finite() {
        // Only with losses near the limits of f64: no room for padding.
        return Scale { lo, hi, log };
    }
    if span <= 1e-12 * hi.abs().max(lo.abs()).max(1e-300) {
        // Constant (or numerically constant) losses: a band around the value.
        let d = if lo != 0.0 { lo.abs() * 0.1 } else { 1.0 };
        return Scale {
            lo: lo - d,
            hi: hi + d,
            log,
        };
    }
    lo -= span * 0.05;
    hi += span * 0.05;
    if !log && data_min >= 0.0 && lo < 0.0 {
        lo = 0.0;
    }
    Scale { lo, hi, log }
}

/// A "nice" step (1, 2 or 5 times a power of ten) at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let base = 10f64.powf(raw.log10().floor());
    let m = raw / base;
    let n = if m <= 1.0 + 1e-9 {
        1.0
    } else if m <= 2.0 + 1e-9 {
        2.0
    } else if m <= 5.0 + 1e-9 {
        5.0
    } else {
        10.0
    };
    n * base
}

/// About `target` ticks at nice multiples of a step of at least `min_step`, inside [lo, hi],
/// with their labels.
fn linear_ticks(lo: f64, hi: f64, target: usize, min_step: f64) -> Vec<(f64, String)> {
    if !(hi - lo).is_finite() {
        // Only with losses near the limits of f64: label the ends.
        return vec![(lo, exp_label(lo, 1)), (hi, exp_label(hi, 1))];
    }
    let step = nice_step((hi - lo) / target.max(1) as f64).max(min_step);
    let first = (lo / step - 1e-9).ceil();
    let mut out = Vec::new();
    for i in 0..1000 {
        let k = first + i as f64;
        let mut v = k * step;
        if v > hi + step * 1e-9 {
            break;
        }
        if v.abs() < step * 1e-9 {
            v = 0.0;
        }
        out.push((v, linear_label(v, step)));
    }
    out
}

/// Label of a tick `v` on a linear axis whose ticks are `step` apart.
fn linear_label(v: f64, step: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let mag = v.abs().log10().floor() as i32;
    let smag = step.log10().floor() as i32;
    if v.abs() >= 1e6 || step < 1e-4 {
        let prec = (mag - smag).max(0) as usize;
        return exp_label(v, prec);
    }
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10() - 1e-9).ceil().max(0.0) as usize
    };
    format!("{v:.decimals$}")
}

/// `v` in the short exponent form `1.5e-5` with `prec` digits after the point, trailing zeros
/// of the mantissa removed.
fn exp_label(v: f64, prec: usize) -> String {
    let s = format!("{v:.prec$e}");
    match s.split_once('e') {
        Some((m, e)) if m.contains('.') => {
            let m = m.trim_end_matches('0').trim_end_matches('.');
            format!("{m}e{e}")
        }
        _ => s,
    }
}

/// Ticks of a log axis spanning log10 values [lo, hi]: powers of ten, with 2 and 5 (or more
/// intermediate values) when the axis spans few decades.
fn log_ticks(lo: f64, hi: f64) -> Vec<(f64, String)> {
    let span = hi - lo;
    let mantissas: &[f64] = if span < 1.2 {
        &[1.0, 1.5, 2.0, 3.0, 5.0, 7.0]
    } else if span < 3.0 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    let every = if span > 7.0 {
        (span / 7.0).ceil() as i64
    } else {
        1
    };
    let mut out = Vec::new();
    let d0 = lo.floor() as i64;
    let d1 = hi.ceil() as i64;
    for d in d0..=d1 {
        if d.rem_euclid(every) != 0 {
            continue;
        }
        for &m in mantissas {
            let t = m.log10() + d as f64;
            if t >= lo - 1e-9 && t <= hi + 1e-9 {
                let v = m * 10f64.powi(d as i32);
                out.push((v, log_label(m, d as i32)));
            }
        }
    }
    out
}

/// Label of the log tick `m × 10^d`.
fn log_label(m: f64, d: i32) -> String {
    let frac = m.fract() != 0.0;
    if (-4..=5).contains(&d) {
        let decimals = ((-d).max(0) + i32::from(frac)) as usize;
        let v = m * 10f64.powi(d);
        format!("{v:.decimals$}")
    } else if frac {
        format!("{m:.1}e{d}")
    } else {
        format!("{m:.0}e{d}")
    }
}

/// Centred moving average with half-width `k` (window `2k + 1`, shrunk at the ends).
fn moving_average(v: &[f64], k: usize) -> Vec<f64> {
    let n = v.len();
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0.0);
    for &x in v {
        prefix.push(prefix[prefix.len() - 1] + x);
    }
    (0..n)
        .map(|i| {
            let a = i.saturating_sub(k);
            let b = (i + k + 1).min(n);
            (prefix[b] - prefix[a]) / (b - a) as f64
        })
        .collect()
}

/// Reduces a polyline (sorted by x) with many points per pixel column to the first, lowest,
/// highest and last point of each column, in order: the drawn line looks the same.
fn decimate(pts: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if pts.len() <= 2 * PLOT_W as usize {
        return pts.to_vec();
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < pts.len() {
        let col = pts[i].0.floor();
        let mut j = i;
        let (mut lo, mut hi) = (i, i);
        while j < pts.len() && pts[j].0.floor() == col {
            if pts[j].1 < pts[lo].1 {
                lo = j;
            }
            if pts[j].1 > pts[hi].1 {
                hi = j;
            }
            j += 1;
        }
        let mut idx = [i, lo, hi, j - 1];
        idx.sort_unstable();
        let mut last = usize::MAX;
        for k in idx {
            if k != last {
                out.push(pts[k]);
                last = k;
            }
        }
        i = j;
    }
    out
}

/// Anti-aliased coverage of one colour layer, composited onto the image at the end (so the
/// joints of a polyline are not blended twice).
struct Coverage {
    w: usize,
    clip: Rect,
    a: Vec<f32>,
}

impl Coverage {
    fn new(w: u32, h: u32, clip: Rect) -> Self {
        Coverage {
            w: w as usize,
            clip,
            a: vec![0.0; w as usize * h as usize],
        }
    }

    /// Pixels in the clip rectangle within the box `[x0, x1] × [y0, y1]`.
    fn bbox(&self, x0: f64, y0: f64, x1: f64, y1: f64) -> (i64, i64, i64, i64) {
        let c = self.clip;
        let fx0 = (x0.floor() as i64).max(c.x0);
        let fy0 = (y0.floor() as i64).max(c.y0);
        let fx1 = (x1.ceil() as i64 + 1).min(c.x1);
        let fy1 = (y1.ceil() as i64 + 1).min(c.y1);
        (fx0, fy0, fx1, fy1)
    }

    fn put(&mut self, x: i64, y: i64, alpha: f64) {
        let i = y as usize * self.w + x as usize;
        let a = alpha.clamp(0.0, 1.0) as f32;
        if a > self.a[i] {
            self.a[i] = a;
        }
    }

    fn segment(&mut self, (ax, ay): (f64, f64), (bx, by): (f64, f64), width: f64) {
        if !(ax.is_finite() && ay.is_finite() && bx.is_finite() && by.is_finite()) {
            return;
        }
        let r = width / 2.0 + 1.0;
        let (x0, y0, x1, y1) = self.bbox(
            ax.min(bx) - r,
            ay.min(by) - r,
            ax.max(bx) + r,
            ay.max(by) + r,
        );
        let (dx, dy) = (bx - ax, by - ay);
        let len2 = dx * dx + dy * dy;
        for y in y0..y1 {
            for x in x0..x1 {
                let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
                let t = if len2 > 0.0 {
                    (((px - ax) * dx + (py - ay) * dy) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let (qx, qy) = (ax + t * dx - px, ay + t * dy - py);
                let d = (qx * qx + qy * qy).sqrt();
                let alpha = width / 2.0 + 0.5 - d;
                if alpha > 0.0 {
                    self.put(x, y, alpha);
                }
            }
        }
    }

    fn polyline(&mut self, pts: &[(f64, f64)], width: f64) {
        for pair in pts.windows(2) {
            self.segment(pair[0], pair[1], width);
        }
    }

    fn disc(&mut self, cx: f64, cy: f64, radius: f64) {
        if !(cx.is_finite() && cy.is_finite()) {
            return;
        }
        let r = radius + 1.0;
        let (x0, y0, x1, y1) = self.bbox(cx - r, cy - r, cx + r, cy + r);
        for y in y0..y1 {
            for x in x0..x1 {
                let (px, py) = (x as f64 + 0.5 - cx, y as f64 + 0.5 - cy);
                let alpha = radius + 0.5 - (px * px + py * py).sqrt();
                if alpha > 0.0 {
                    self.put(x, y, alpha);
                }
            }
        }
    }

    fn composite(&self, img: &mut RgbImage, colour: Rgb<u8>) {
        for (i, &a) in self.a.iter().enumerate() {
            if a <= 0.0 {
                continue;
            }
            let (x, y) = ((i % self.w) as u32, (i / self.w) as u32);
            let p = img.get_pixel_mut(x, y);
            for c in 0..3 {
                let v = p.0[c] as f32 * (1.0 - a) + colour.0[c] as f32 * a;
                p.0[c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// Fills `x0..x1` × `y0..y1`, clipped to the image.
fn fill_rect(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, colour: Rgb<u8>) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    for y in y0.max(0)..y1.min(h) {
        for x in x0.max(0)..x1.min(w) {
            img.put_pixel(x as u32, y as u32, colour);
        }
    }
}

fn draw_legend(img: &mut RgbImage, area: Rect, entries: &[(&str, Rgb<u8>, bool)]) {
    if entries.is_empty() {
        return;
    }
    let line_h = (GLYPH_ROWS as u32 * TEXT_SCALE) as i64 + 10;
    let sample_w = 30;
    let text_w = entries
        .iter()
        .map(|(l, _, _)| text_width(l, TEXT_SCALE) as i64)
        .max()
        .unwrap_or(0);
    let box_w = 10 + sample_w + 10 + text_w + 10;
    let box_h = 6 + line_h * entries.len() as i64 + 2;
    let x1 = area.x1 - 10;
    let x0 = x1 - box_w;
    let y0 = area.y0 + 10;
    let y1 = y0 + box_h;
    fill_rect(img, x0, y0, x1, y1, BACKGROUND);
    fill_rect(img, x0, y0, x1, y0 + 1, LEGEND_BORDER);
    fill_rect(img, x0, y1 - 1, x1, y1, LEGEND_BORDER);
    fill_rect(img, x0, y0, x0 + 1, y1, LEGEND_BORDER);
    fill_rect(img, x1 - 1, y0, x1, y1, LEGEND_BORDER);
    let full = Rect {
        x0: 0,
        y0: 0,
        x1: img.width() as i64,
        y1: img.height() as i64,
    };
    for (k, &(label, colour, marker)) in entries.iter().enumerate() {
        let ty = y0 + 8 + k as i64 * line_h;
        let cy = ty as f64 + (GLYPH_ROWS as u32 * TEXT_SCALE) as f64 / 2.0;
        let sx = (x0 + 10) as f64;
        let mut layer = Coverage::new(img.width(), img.height(), full);
        layer.segment((sx, cy), (sx + sample_w as f64, cy), 2.4);
        if marker {
            layer.disc(sx + sample_w as f64 / 2.0, cy, 4.0);
        }
        layer.composite(img, colour);
        draw_text(
            img,
            x0 + 10 + sample_w + 10,
            ty,
            label,
            TEXT_SCALE,
            TEXT_COLOUR,
        );
    }
}

// ------------------------------------------------------------------------------------------
// Bitmap font

/// Rows per glyph.
const GLYPH_ROWS: usize = 7;
/// Columns per glyph; each row's bits are the 5 low bits, most significant on the left.
const GLYPH_COLS: u32 = 5;
/// Lower-case letters with a descender: their glyphs are drawn `DESCENT` rows lower.
const DESCENDERS: [char; 4] = ['g', 'p', 'q', 'y'];
/// How far a descender glyph is drawn below the others, in font pixels.
const DESCENT: i64 = 2;
/// Horizontal advance per character, in font pixels (a glyph plus one column of space).
const ADVANCE: u32 = GLYPH_COLS + 1;

/// A 5×7 bitmap font for printable ASCII (32 `' '` to 126 `'~'`), in code order. Capitals and
/// digits fill the 7 rows, the x-height of lower-case letters is rows 2 to 6, and the letters
/// of [`DESCENDERS`] are drawn [`DESCENT`] rows lower than they are stored.
#[rustfmt::skip]
const FONT: [[u8; GLYPH_ROWS]; 95] = [
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // ' '
    [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000, 0b00100], // !
    [0b01010, 0b01010, 0b01010, 0b00000, 0b00000, 0b00000, 0b00000], // "
    [0b01010, 0b01010, 0b11111, 0b01010, 0b11111, 0b01010, 0b01010], // #
    [0b00100, 0b01111, 0b10100, 0b01110, 0b00101, 0b11110, 0b00100], // $
    [0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011], // %
    [0b01100, 0b10010, 0b10100, 0b01000, 0b10101, 0b10010, 0b01101], // &
    [0b01100, 0b00100, 0b01000, 0b00000, 0b00000, 0b00000, 0b00000], // '
    [0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010], // (
    [0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000], // )
    [0b00000, 0b00100, 0b10101, 0b01110, 0b10101, 0b00100, 0b00000], // *
    [0b00000, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000], // +
    [0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000], // ,
    [0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000], // -
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100], // .
    [0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000], // /
    [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110], // 0
    [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110], // 1
    [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111], // 2
    [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110], // 3
    [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010], // 4
    [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110], // 5
    [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110], // 6
    [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000], // 7
    [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110], // 8
    [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100], // 9
    [0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000], // :
    [0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b00100, 0b01000], // ;
    [0b00010, 0b00100, 0b01000, 0b10000, 0b01000, 0b00100, 0b00010], // <
    [0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000], // =
    [0b01000, 0b00100, 0b00010, 0b00001, 0b00010, 0b00100, 0b01000], // >
    [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b00000, 0b00100], // ?
    [0b01110, 0b10001, 0b00001, 0b01101, 0b10101, 0b10101, 0b01110], // @
    [0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001], // A
    [0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110], // B
    [0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110], // C
    [0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100], // D
    [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111], // E
    [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000], // F
    [0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111], // G
    [0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001], // H
    [0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110], // I
    [0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100], // J
    [0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001], // K
    [0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111], // L
    [0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001], // M
    [0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001], // N
    [0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110], // O
    [0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000], // P
    [0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101], // Q
    [0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001], // R
    [0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110], // S
    [0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100], // T
    [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110], // U
    [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100], // V
    [0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010], // W
    [0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001], // X
    [0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100], // Y
    [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111], // Z
    [0b01110, 0b01000, 0b01000, 0b01000, 0b01000, 0b01000, 0b01110], // [
    [0b00000, 0b10000, 0b01000, 0b00100, 0b00010, 0b00001, 0b00000], // backslash
    [0b01110, 0b00010, 0b00010, 0b00010, 0b00010, 0b00010, 0b01110], // ]
    [0b00100, 0b01010, 0b10001, 0b00000, 0b00000, 0b00000, 0b00000], // ^
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111], // _
    [0b01000, 0b00100, 0b00010, 0b00000, 0b00000, 0b00000, 0b00000], // `
    [0b00000, 0b00000, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111], // a
    [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b11110], // b
    [0b00000, 0b00000, 0b01110, 0b10000, 0b10000, 0b10001, 0b01110], // c
    [0b00001, 0b00001, 0b01101, 0b10011, 0b10001, 0b10001, 0b01111], // d
    [0b00000, 0b00000, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110], // e
    [0b00110, 0b01001, 0b01000, 0b11100, 0b01000, 0b01000, 0b01000], // f
    [0b01111, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110], // g (descender)
    [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001], // h
    [0b00100, 0b00000, 0b01100, 0b00100, 0b00100, 0b00100, 0b01110], // i
    [0b00010, 0b00000, 0b00110, 0b00010, 0b00010, 0b10010, 0b01100], // j
    [0b10000, 0b10000, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010], // k
    [0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110], // l
    [0b00000, 0b00000, 0b11010, 0b10101, 0b10101, 0b10001, 0b10001], // m
    [0b00000, 0b00000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001], // n
    [0b00000, 0b00000, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110], // o
    [0b11110, 0b10001, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000], // p (descender)
    [0b01111, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b00001], // q (descender)
    [0b00000, 0b00000, 0b10110, 0b11001, 0b10000, 0b10000, 0b10000], // r
    [0b00000, 0b00000, 0b01110, 0b10000, 0b01110, 0b00001, 0b11110], // s
    [0b01000, 0b01000, 0b11100, 0b01000, 0b01000, 0b01001, 0b00110], // t
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b10011, 0b01101], // u
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100], // v
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10101, 0b10101, 0b01010], // w
    [0b00000, 0b00000, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001], // x
    [0b10001, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110], // y (descender)
    [0b00000, 0b00000, 0b11111, 0b00010, 0b00100, 0b01000, 0b11111], // z
    [0b00010, 0b00100, 0b00100, 0b01000, 0b00100, 0b00100, 0b00010], // {
    [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100], // |
    [0b01000, 0b00100, 0b00100, 0b00010, 0b00100, 0b00100, 0b01000], // }
    [0b00000, 0b00000, 0b01000, 0b10101, 0b00010, 0b00000, 0b00000], // ~
];

/// The glyph of `c`; anything outside printable ASCII is drawn as `?`.
fn glyph(c: char) -> &'static [u8; GLYPH_ROWS] {
    let code = c as u32;
    if (32..=126).contains(&code) {
        &FONT[(code - 32) as usize]
    } else {
        &FONT[('?' as u32 - 32) as usize]
    }
}

/// Width in pixels of `text` drawn at `scale`.
fn text_width(text: &str, scale: u32) -> u32 {
    let n = text.chars().count() as u32;
    (n * ADVANCE).saturating_sub(1) * scale
}

/// `text`, cut with `...` so it is at most `max_w` pixels wide at `scale`.
fn fit_text(text: &str, max_w: u32, scale: u32) -> String {
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text_width(&text, scale) <= max_w {
        return text;
    }
    let max_chars = ((max_w / scale + 1) / ADVANCE) as usize;
    let keep = max_chars.saturating_sub(3);
    let mut s: String = text.chars().take(keep).collect();
    s.push_str("...");
    s
}

/// Draws `text` with its top-left corner at (x, y), clipped to the image.
fn draw_text(img: &mut RgbImage, x: i64, y: i64, text: &str, scale: u32, colour: Rgb<u8>) {
    let s = scale as i64;
    for (k, c) in text.chars().enumerate() {
        let gx = x + k as i64 * (ADVANCE as i64) * s;
        let gy = if DESCENDERS.contains(&c) {
            y + DESCENT * s
        } else {
            y
        };
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..GLYPH_COLS {
                if (bits >> (GLYPH_COLS - 1 - col)) & 1 == 1 {
                    let px = gx + col as i64 * s;
                    let py = gy + row as i64 * s;
                    fill_rect(img, px, py, px + s, py + s, colour);
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Model card

/// Most training or validation images listed one by one in the model card; the rest are
/// counted.
const MAX_LISTED_IMAGES: usize = 50;

/// A Markdown model card for a trained clone, generated from its manifest (the package's
/// `manifest.json`, with the trainer's `lineage` object and optionally a `validation`
/// section): name, version and description; the parent it was derived from, with its
/// SHA-256; the training and validation images (a table of up to 50 each, in a collapsible
/// block); every training parameter; the final losses and validation metrics; intended use,
/// limits and licences; and the command line that reproduces the run.
///
/// Missing fields are reported as "not recorded" and fields of an unexpected type are shown as
/// JSON; no input makes it panic.
pub fn model_card(manifest: &Value) -> String {
    let mut md = String::new();
    let lineage = manifest.get("lineage").unwrap_or(&Value::Null);
    let name = scalar(manifest, "/name").unwrap_or_else(|| "unnamed model".to_string());
    let version = scalar(manifest, "/version");

    // Title and summary.
    md.push_str(&format!(
        "# {}{}\n\n",
        one_line(&name),
        version
            .as_deref()
            .map(|v| format!(" {}", one_line(v)))
            .unwrap_or_default()
    ));
    if let Some(d) = scalar(manifest, "/description") {
        md.push_str(&format!("{}\n\n", one_line(&d)));
    }
    md.push_str("| | |\n|---|---|\n");
    let summary_rows = [
        ("Name", scalar(manifest, "/name")),
        ("Version", version.clone()),
        ("Family", scalar(manifest, "/family")),
        ("Weights licence", scalar(manifest, "/license")),
        (
            "Model file",
            scalar(manifest, "/model/file").map(|f| code_span(&f)),
        ),
        (
            "Model SHA-256",
            scalar(manifest, "/model/sha256").map(|f| code_span(&f)),
        ),
        (
            "Object diameter",
            scalar(manifest, "/diameter").map(|d| format!("{d} px")),
        ),
        ("Trained on", scalar(lineage, "/date")),
        ("cytoseg version", scalar(lineage, "/cytoseg_version")),
    ];
    for (k, v) in summary_rows {
        md.push_str(&format!("| {k} | {} |\n", cell_or_missing(v)));
    }
    md.push('\n');

    // Parent.
    md.push_str("## Derived from\n\n");
    let parent = lineage.get("parent").unwrap_or(&Value::Null);
    let parent_name = scalar(parent, "/name");
    let parent_version = scalar(parent, "/version");
    let parent_label = match (&parent_name, &parent_version) {
        (Some(n), Some(v)) => format!("{} {}", one_line(n), one_line(v)),
        (Some(n), None) => one_line(n),
        (None, Some(v)) => format!("(unnamed) {}", one_line(v)),
        (None, None) => "an unrecorded parent model".to_string(),
    };
    md.push_str(&format!(
        "Fine-tuned with `cytoseg train` from **{parent_label}**"
    ));
    match scalar(parent, "/sha256") {
        Some(sha) => md.push_str(&format!(", SHA-256 {}.\n\n", code_span(&sha))),
        None => md.push_str(" (its SHA-256 was not recorded).\n\n"),
    }

    // Training data.
    md.push_str("## Training data\n\n");
    let train_list = lineage.get("training_images");
    let val_list = lineage.get("validation_images");
    let n_train = list_len(train_list);
    let n_val = list_len(val_list);
    let sentence = format!(
        "{} training {} and {} validation {} of the user's own data.",
        count_text(n_train),
        plural(n_train, "image", "images"),
        count_text(n_val),
        plural(n_val, "image", "images"),
    );
    let mut chars = sentence.chars();
    if let Some(first) = chars.next() {
        md.push(first.to_ascii_uppercase());
        md.push_str(chars.as_str());
    }
    md.push_str("\n\n");
    let data_licence = scalar(manifest, "/training_data/license");
    if let Some(td) = manifest.get("training_data").filter(|v| v.is_object()) {
        for (label, ptr) in [
            ("Data set", "/name"),
            ("Source", "/source"),
            ("Citation", "/citation"),
        ] {
            if let Some(v) = scalar(td, ptr) {
                md.push_str(&format!("- {label}: {}\n", one_line(&v)));
            }
        }
    }
    md.push_str(&format!(
        "- Data licence: {}\n\n",
        data_licence
            .as_deref()
            .map(one_line)
            .unwrap_or_else(|| "**not stated: fill in**".to_string())
    ));
    image_table(&mut md, "Training images", train_list);
    image_table(&mut md, "Validation images", val_list);

    // Parameters.
    md.push_str("## Training parameters\n\n");
    md.push_str("| parameter | value |\n|---|---|\n");
    for (k, ptr) in [
        ("seed", "/seed"),
        ("steps", "/steps"),
        ("device", "/device"),
    ] {
        md.push_str(&format!(
            "| {k} | {} |\n",
            cell_or_missing(scalar(lineage, ptr))
        ));
    }
    md.push_str(&format!(
        "| wall time | {} |\n",
        cell_or_missing(lineage.get("wall_time_s").map(wall_time_text))
    ));
    match lineage.get("parameters") {
        Some(Value::Object(map)) => {
            for (k, v) in map {
                if k == "command" {
                    continue;
                }
                md.push_str(&format!("| {} | {} |\n", cell(k), cell(&value_text(v))));
            }
        }
        Some(Value::Null) | None => {
            md.push_str("| other parameters | not recorded |\n");
        }
        Some(other) => {
            md.push_str(&format!("| parameters | {} |\n", cell(&value_text(other))));
        }
    }
    md.push('\n');

    // Results.
    md.push_str("## Results\n\n");
    md.push_str(&format!(
        "- Final training loss: {}\n- Final validation loss: {}\n",
        missing_or(scalar(lineage, "/final_train_loss")),
        missing_or(scalar(lineage, "/final_val_loss")),
    ));
    if let Some(p) = scalar(lineage, "/loss_plot") {
        md.push_str(&format!("\n![loss curve]({})\n", link_target(&p)));
    }
    if let Some(p) = scalar(lineage, "/loss_csv") {
        md.push_str(&format!(
            "\nLoss history: [{}]({})\n",
            cell(&p),
            link_target(&p)
        ));
    }
    md.push('\n');
    validation_section(&mut md, manifest.get("validation"));

    // Intended use and limits.
    md.push_str("## Intended use and limits\n\n");
    let n_text = match n_train {
        Some(n) => format!("{n} {}", plural(Some(n), "image", "images")),
        None => "an unrecorded number of images".to_string(),
    };
    md.push_str(&format!(
        "This model was fine-tuned on {n_text} of the user's own data. It is meant for images \
         like those: the same modality, staining, magnification and object size. It has seen \
         nothing else, and may do worse than its parent on other images.\n\n"
    ));
    md.push_str(
        "Validate it on your own reference images (hand-checked labels that were not used for \
         training, scored with `cytoseg evaluate`) before trusting its counts or \
         measurements.",
    );
    if n_val == Some(0) || n_val.is_none() {
        md.push_str(
            " No validation images were recorded for this run: the losses above were measured \
             on training data only and say nothing about accuracy on new images.",
        );
    }
    md.push_str("\n\n");
    md.push_str("### Licence\n\n");
    md.push_str(&format!(
        "A clone inherits the licence terms of its parent{} and the licence of its training \
         data. Training-data licence: {}.",
        scalar(manifest, "/license")
            .map(|l| format!(" (weights: {})", one_line(&l)))
            .unwrap_or_default(),
        data_licence
            .as_deref()
            .map(one_line)
            .unwrap_or_else(|| "**not stated: fill in**".to_string())
    ));
    if data_licence.is_none() {
        md.push_str(
            " Whoever shares this model must state it here and in `training_data.license` of \
             `manifest.json`.",
        );
    }
    md.push_str("\n\n");

    // Reproduction.
    md.push_str("## How to reproduce\n\n");
    match scalar(lineage, "/parameters/command") {
        Some(cmd) => {
            let fence = fence_for(&cmd);
            md.push_str(&format!("{fence}sh\n{cmd}\n{fence}\n\n"));
        }
        None => md.push_str(
            "The command line was not recorded; the parameters above list the run's settings.\n\n",
        ),
    }
    md.push_str(
        "Check the images against the SHA-256 values above before re-running. Whether a re-run \
         gives the same weights bit for bit depends on the trainer's determinism on the device \
         used; the seed, device and cytoseg version are recorded above.\n\n",
    );
    md.push_str("---\n\n*Generated by cytoseg from `manifest.json`.*\n");
    md
}

/// A scalar field at a JSON pointer, as text: strings as they are (`None` when empty), numbers
/// and booleans printed, arrays and objects as compact JSON, null and missing as `None`.
fn scalar(v: &Value, ptr: &str) -> Option<String> {
    match v.pointer(ptr)? {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        other => Some(value_text(other)),
    }
}

/// A JSON value as text for a reader: strings unquoted, non-integer numbers to at most 6
/// significant decimals, the rest as compact JSON.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => float_text(f),
            _ => n.to_string(),
        },
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

/// A float for the card: plain decimals with up to 6 significant digits (exponent form when
/// very small or very large), trailing zeros removed.
fn float_text(f: f64) -> String {
    if f == 0.0 || !f.is_finite() {
        return format!("{f}");
    }
    let mag = f.abs().log10().floor() as i32;
    if !(-4..=9).contains(&mag) {
        return exp_label(f, 5);
    }
    let decimals = (5 - mag).max(0) as usize;
    let s = format!("{f:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The number of entries of a list field (`None` when absent or not a list).
fn list_len(v: Option<&Value>) -> Option<usize> {
    match v {
        Some(Value::Array(a)) => Some(a.len()),
        _ => None,
    }
}

fn count_text(n: Option<usize>) -> String {
    n.map(|n| n.to_string())
        .unwrap_or_else(|| "an unrecorded number of".to_string())
}

fn plural(n: Option<usize>, one: &'static str, many: &'static str) -> &'static str {
    if n == Some(1) { one } else { many }
}

/// Text on one line (newlines and other control characters become spaces).
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// Text for a Markdown table cell: one line, `|` escaped, HTML brackets as entities.
fn cell(s: &str) -> String {
    one_line(s)
        .replace('&', "&amp;")
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn cell_or_missing(v: Option<String>) -> String {
    match v {
        Some(s) => cell(&s),
        None => "not recorded".to_string(),
    }
}

fn missing_or(v: Option<String>) -> String {
    v.map(|s| one_line(&s))
        .unwrap_or_else(|| "not recorded".to_string())
}

/// The longest run of backticks in `s`.
fn longest_backtick_run(s: &str) -> usize {
    let (mut best, mut run) = (0, 0);
    for c in s.chars() {
        if c == '`' {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best
}

/// `s` as an inline code span that survives backticks inside it.
fn code_span(s: &str) -> String {
    let s = one_line(s);
    let ticks = "`".repeat(longest_backtick_run(&s) + 1);
    if ticks.len() > 1 || s.starts_with('`') || s.ends_with('`') {
        format!("{ticks} {s} {ticks}")
    } else {
        format!("{ticks}{s}{ticks}")
    }
}

/// A code fence longer than any backtick run in `s` (at least three).
fn fence_for(s: &str) -> String {
    "`".repeat((longest_backtick_run(s) + 1).max(3))
}

/// A link target for a relative path: spaces and brackets percent-encoded.
fn link_target(p: &str) -> String {
    one_line(p)
        .replace('%', "%25")
        .replace(' ', "%20")
        .replace('(', "%28")
        .replace(')', "%29")
        .replace('<', "%3C")
        .replace('>', "%3E")
}

/// The first 12 hex digits of a SHA-256 for a table (the full value is in the manifest).
fn short_sha(s: &str) -> String {
    let s = one_line(s);
    if s.chars().count() > 12 {
        let head: String = s.chars().take(12).collect();
        format!("`{}`…", head.replace('`', "'"))
    } else {
        code_span(&s)
    }
}

/// A collapsible table of the images of a lineage list (`training_images` or
/// `validation_images`).
fn image_table(md: &mut String, title: &str, list: Option<&Value>) {
    let items: &[Value] = match list {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) | None | Some(Value::Null) => return,
        Some(other) => {
            md.push_str(&format!(
                "{title}: recorded in an unexpected form: {}\n\n",
                code_span(&value_text(other))
            ));
            return;
        }
    };
    let has_mask = items
        .iter()
        .any(|it| it.get("mask").is_some_and(|m| !m.is_null()));
    md.push_str(&format!(
        "<details>\n<summary>{title} ({})</summary>\n\n",
        items.len()
    ));
    md.push_str("| # | image | SHA-256 | labels | SHA-256 |");
    if has_mask {
        md.push_str(" mask | SHA-256 |");
    }
    md.push_str("\n|---|---|---|---|---|");
    if has_mask {
        md.push_str("---|---|");
    }
    md.push('\n');
    let field = |it: &Value, key: &str, sha: bool| -> String {
        match it.get(key) {
            Some(Value::Null) | None => String::new(),
            Some(v) => {
                let t = value_text(v);
                if sha {
                    cell(&short_sha(&t))
                } else {
                    cell(&code_span(&t))
                }
            }
        }
    };
    for (i, it) in items.iter().take(MAX_LISTED_IMAGES).enumerate() {
        let (image, image_sha, labels, labels_sha) = if it.is_object() {
            (
                field(it, "image", false),
                field(it, "image_sha256", true),
                field(it, "labels", false),
                field(it, "labels_sha256", true),
            )
        } else {
            // A bare path or some other value where an object was expected.
            (
                cell(&code_span(&value_text(it))),
                String::new(),
                String::new(),
                String::new(),
            )
        };
        md.push_str(&format!(
            "| {} | {image} | {image_sha} | {labels} | {labels_sha} |",
            i + 1
        ));
        if has_mask {
            md.push_str(&format!(
                " {} | {} |",
                field(it, "mask", false),
                field(it, "mask_sha256", true)
            ));
        }
        md.push('\n');
    }
    if items.len() > MAX_LISTED_IMAGES {
        md.push_str(&format!(
            "\n… and {} more, all listed with full SHA-256 values in `manifest.json`.\n",
            items.len() - MAX_LISTED_IMAGES
        ));
    } else {
        md.push_str("\nSHA-256 prefixes; the full values are in `manifest.json`.\n");
    }
    md.push_str("\n</details>\n\n");
}

/// Columns of the validation table, in this order when present; other keys follow.
const METRIC_COLUMNS: [&str; 10] = [
    "ap",
    "f1",
    "panoptic_quality",
    "precision",
    "recall",
    "tp",
    "fp",
    "fn",
    "n_true",
    "n_pred",
];

/// The `validation` section of a manifest (metrics per IoU threshold), when present.
fn validation_section(md: &mut String, validation: Option<&Value>) {
    let Some(v) = validation.filter(|v| !v.is_null()) else {
        return;
    };
    md.push_str("### Validation\n\n");
    if let Some(m) = scalar(v, "/measured_with") {
        md.push_str(&format!("Measured with: {}.\n\n", one_line(&m)));
    }
    if let Some(n) = scalar(v, "/images") {
        md.push_str(&format!("Images: {}.\n\n", one_line(&n)));
    }
    let Some(Value::Object(metrics)) = v.get("metrics") else {
        if let Some(m) = v.get("metrics") {
            md.push_str(&format!("Metrics: {}\n\n", code_span(&value_text(m))));
        }
        return;
    };
    let mut rows: Vec<(&String, &Value)> = metrics.iter().collect();
    rows.sort_by(|a, b| {
        let fa = a.0.parse::<f64>().unwrap_or(f64::INFINITY);
        let fb = b.0.parse::<f64>().unwrap_or(f64::INFINITY);
        fa.total_cmp(&fb).then_with(|| a.0.cmp(b.0))
    });
    let mut columns: Vec<String> = METRIC_COLUMNS
        .iter()
        .filter(|c| rows.iter().any(|(_, r)| r.get(**c).is_some()))
        .map(|c| c.to_string())
        .collect();
    for (_, r) in &rows {
        if let Value::Object(m) = r {
            for k in m.keys() {
                if !columns.iter().any(|c| c == k) {
                    columns.push(k.clone());
                }
            }
        }
    }
    if columns.is_empty() {
        columns.push("value".to_string());
    }
    md.push_str("| IoU threshold |");
    for c in &columns {
        md.push_str(&format!(" {} |", cell(c)));
    }
    md.push_str("\n|---|");
    for _ in &columns {
        md.push_str("---|");
    }
    md.push('\n');
    for (threshold, r) in rows {
        md.push_str(&format!("| {} |", cell(threshold)));
        for c in &columns {
            let text = match r {
                Value::Object(m) => m.get(c).map(value_text).unwrap_or_default(),
                other if c == "value" => value_text(other),
                _ => String::new(),
            };
            md.push_str(&format!(" {} |", cell(&text)));
        }
        md.push('\n');
    }
    md.push('\n');
}

/// Wall time as seconds and, beyond a minute, hours and minutes.
fn wall_time_text(v: &Value) -> String {
    match v.as_f64() {
        Some(s) if s.is_finite() && s >= 60.0 => {
            let total_min = (s / 60.0).round() as u64;
            let (h, m) = (total_min / 60, total_min % 60);
            if h > 0 {
                format!("{} s ({h} h {m} min)", float_text(s))
            } else {
                format!("{} s ({m} min)", float_text(s))
            }
        }
        Some(s) => format!("{} s", float_text(s)),
        None => value_text(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pt(step: usize, train: f64, val: Option<f64>) -> LossPoint {
        LossPoint {
            step,
            train_loss: train,
            val_loss: val,
            lr: 0.001,
            elapsed_s: step as f64 * 0.5,
        }
    }

    fn decode(png: &[u8]) -> RgbImage {
        ::image::load_from_memory(png)
            .expect("PNG decodes")
            .to_rgb8()
    }

    fn count(img: &RgbImage, c: Rgb<u8>) -> usize {
        img.pixels().filter(|p| **p == c).count()
    }

    #[test]
    fn csv_format() {
        let points = [
            pt(0, 1.5, Some(1.25)),
            pt(10, 0.75, None),
            LossPoint {
                step: 20,
                train_loss: f64::NAN,
                val_loss: Some(f64::INFINITY),
                lr: 1e-7,
                elapsed_s: 3.0,
            },
        ];
        let csv = loss_csv(&points);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "step,train_loss,val_loss,lr,elapsed_s");
        assert_eq!(lines[1], "0,1.5,1.25,0.001,0");
        assert_eq!(lines[2], "10,0.75,,0.001,5");
        assert_eq!(lines[3], "20,NaN,inf,0.0000001,3");
        assert_eq!(lines.len(), 4);
        assert!(csv.ends_with('\n'));
        assert_eq!(loss_csv(&[]), "step,train_loss,val_loss,lr,elapsed_s\n");
    }

    #[test]
    fn csv_written_atomically() {
        let dir = std::env::temp_dir().join(format!("cytoseg-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("loss.csv");
        write_loss_csv(&path, &[pt(1, 0.5, None)]).unwrap();
        write_loss_csv(&path, &[pt(1, 0.5, Some(0.25))]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, loss_csv(&[pt(1, 0.5, Some(0.25))]));
        let png = dir.join("loss.png");
        write_loss_plot(&png, &[pt(1, 0.5, Some(0.25)), pt(2, 0.4, None)], "t").unwrap();
        let img = decode(&std::fs::read(&png).unwrap());
        assert_eq!(img.dimensions(), (PLOT_W, PLOT_H));
        let leftovers = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .map(|e| e.file_name().to_string_lossy().contains(".tmp-"))
                    .unwrap_or(false)
            })
            .count();
        assert_eq!(leftovers, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn run_points(n: usize) -> Vec<LossPoint> {
        (0..n)
            .map(|i| {
                let t = i as f64;
                let noise = ((i * 7919) % 13) as f64 / 13.0 - 0.5;
                let train = 2.0 * (-t / 300.0).exp() + 0.05 + 0.03 * noise;
                let val = (i % 50 == 0).then(|| 2.1 * (-t / 300.0).exp() + 0.08);
                pt(i, train, val)
            })
            .collect()
    }

    #[test]
    fn plot_decodes_and_is_drawn() {
        let png = loss_plot_png(&run_points(1000), "fine-tune nuclei -> my_nuclei 1.0.0").unwrap();
        let img = decode(&png);
        assert_eq!(img.dimensions(), (PLOT_W, PLOT_H));
        assert!(count(&img, TRAIN_COLOUR) > 200, "training curve drawn");
        assert!(
            count(&img, TRAIN_RAW_COLOUR) > 50,
            "raw training curve drawn"
        );
        assert!(count(&img, VAL_COLOUR) > 100, "validation curve drawn");
        assert!(count(&img, TEXT_COLOUR) > 500, "text drawn");
        // Spans 0.05..2 (a ratio of 40): log scale.
        let ys: Vec<f64> = run_points(1000)
            .iter()
            .flat_map(|p| std::iter::once(p.train_loss).chain(p.val_loss))
            .collect();
        assert!(y_scale(&ys).log);
    }

    #[test]
    fn plot_few_points_linear() {
        let points = [
            pt(0, 0.9, Some(1.0)),
            pt(5, 0.7, None),
            pt(10, 0.6, Some(0.8)),
        ];
        let ys = [0.9, 1.0, 0.7, 0.6, 0.8];
        assert!(!y_scale(&ys).log);
        let img = decode(&loss_plot_png(&points, "few").unwrap());
        assert!(count(&img, TRAIN_COLOUR) > 50);
        assert!(count(&img, VAL_COLOUR) > 30);
    }

    #[test]
    fn plot_edge_cases() {
        let cases: Vec<Vec<LossPoint>> = vec![
            vec![],
            vec![pt(0, 0.5, None)],
            vec![pt(7, 0.5, Some(0.6))],
            vec![pt(0, 1.0, None), pt(1, 1.0, None), pt(2, 1.0, Some(1.0))],
            vec![pt(0, 0.0, None), pt(1, 0.0, None)],
            vec![pt(0, -3.0, None), pt(1, 2.0, None)],
            vec![
                pt(0, f64::NAN, Some(f64::NAN)),
                pt(1, f64::INFINITY, None),
                pt(2, f64::NEG_INFINITY, Some(f64::INFINITY)),
            ],
            vec![pt(0, 1.0, None), pt(1, f64::NAN, None), pt(2, 0.5, None)],
            vec![pt(3, 1e-12, None), pt(usize::MAX / 2, 1e12, Some(1e300))],
            vec![pt(5, 0.5, None), pt(1, 0.9, None), pt(3, 0.7, None)],
        ];
        for (k, points) in cases.iter().enumerate() {
            let img = decode(&loss_plot_png(points, "edge \u{e9}\u{1F600}\n").unwrap());
            assert_eq!(img.dimensions(), (PLOT_W, PLOT_H), "case {k}");
            let finite_train = points.iter().any(|p| p.train_loss.is_finite());
            if finite_train {
                assert!(count(&img, TRAIN_COLOUR) > 0, "case {k}: training curve");
            }
        }
        // A single point is drawn as a dot.
        let img = decode(&loss_plot_png(&[pt(0, 0.5, None)], "").unwrap());
        assert!(count(&img, TRAIN_COLOUR) > 10);
        // Very long titles are cut.
        let long = "x".repeat(500);
        assert!(loss_plot_png(&[], &long).is_ok());
        assert!(text_width(&fit_text(&long, PLOT_W - 16, TEXT_SCALE), TEXT_SCALE) <= PLOT_W - 16);
    }

    #[test]
    fn tick_labels() {
        let t = linear_ticks(0.0, 1.0, 7, 0.0);
        let labels: Vec<&str> = t.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        let t = linear_ticks(0.0, 1000.0, 6, 1.0);
        assert_eq!(t.last().unwrap().1, "1000");
        let t = linear_ticks(0.0, 0.5, 6, 1.0);
        assert_eq!(t.len(), 1);
        let t = log_ticks(-3.2, 0.4);
        let labels: Vec<&str> = t.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["0.001", "0.01", "0.1", "1"]);
        let t = log_ticks(-1.0, 0.0);
        let labels: Vec<&str> = t.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["0.1", "0.15", "0.2", "0.3", "0.5", "0.7", "1"]);
        assert_eq!(log_label(1.0, -7), "1e-7");
        assert_eq!(linear_label(1.5e-5, 1e-6), "1.5e-5");
    }

    #[test]
    fn font_has_every_printable_glyph() {
        assert_eq!(FONT.len(), 126 - 32 + 1);
        assert_eq!(glyph('0'), &FONT[16]);
        assert_eq!(glyph('A'), &FONT[33]);
        assert_eq!(glyph('a'), &FONT[65]);
        assert_eq!(glyph('~'), &FONT[94]);
        assert_eq!(glyph('\u{e9}'), glyph('?'));
        for g in FONT.iter().skip(1) {
            assert!(g.iter().any(|r| *r != 0), "only the space is blank");
            assert!(g.iter().all(|r| *r < 32), "5 columns");
        }
    }

    fn full_manifest() -> Value {
        let images: Vec<Value> = (0..60)
            .map(|i| {
                json!({
                    "image": format!("images/img_{i:03}.tif"),
                    "image_sha256": format!("{:064x}", i),
                    "labels": format!("labels/img_{i:03}.tif"),
                    "labels_sha256": format!("{:064x}", 1000 + i),
                })
            })
            .collect();
        json!({
            "format_version": 1,
            "name": "my_nuclei",
            "version": "1.0.0",
            "family": "cellpose-flows",
            "description": "Nuclei of my lab's DAPI images.",
            "model": {"file": "model.onnx", "sha256": "ab".repeat(32)},
            "license": "MIT OR Apache-2.0",
            "diameter": 17.1,
            "lineage": {
                "parent": {
                    "name": "nuclei",
                    "version": "1.3.0",
                    "sha256": "70b3abbf07e046336ef6d230e1096d9ab4a5aafaf29cba5c378d75e66ba81cf9"
                },
                "training_images": images,
                "validation_images": [
                    {"image": "val/a.tif", "image_sha256": "cd".repeat(32),
                     "labels": "val/a_labels.tif", "labels_sha256": "ef".repeat(32),
                     "mask": "val/a_mask.tif", "mask_sha256": "12".repeat(32)}
                ],
                "parameters": {
                    "lr": 0.0001,
                    "batch": 4,
                    "crop": 192,
                    "augment": true,
                    "scale_jitter": [0.75, 1.33],
                    "note": "a | pipe",
                    "command": "cytoseg train --from models/nuclei --images imgs --labels labs --out my_nuclei --steps 2000 --seed 1"
                },
                "seed": 1,
                "steps": 2000,
                "final_train_loss": 0.123456789,
                "final_val_loss": 0.2,
                "cytoseg_version": "0.2.0",
                "device": "cpu (2 threads)",
                "wall_time_s": 3725.0,
                "date": "2026-12-01",
                "loss_plot": "loss.png",
                "loss_csv": "loss.csv"
            },
            "validation": {
                "measured_with": "cytoseg evaluate",
                "images": 1,
                "metrics": {
                    "0.9": {"ap": 0.3, "f1": 0.45},
                    "0.5": {"ap": 0.85, "f1": 0.92, "tp": 10},
                    "0.75": {"ap": 0.6, "f1": 0.75}
                }
            }
        })
    }

    #[test]
    fn model_card_full_manifest() {
        let card = model_card(&full_manifest());
        assert!(card.starts_with("# my_nuclei 1.0.0\n"));
        assert!(card.contains("70b3abbf07e046336ef6d230e1096d9ab4a5aafaf29cba5c378d75e66ba81cf9"));
        assert!(card.contains("nuclei 1.3.0"));
        assert!(card.contains("60 training images and 1 validation image"));
        assert!(card.contains("fine-tuned on 60 images"));
        assert!(card.contains("`images/img_049.tif`"));
        assert!(!card.contains("img_050.tif"), "at most 50 rows");
        assert!(card.contains("and 10 more"));
        assert!(card.contains("`val/a_mask.tif`"));
        assert!(card.contains("| lr | 0.0001 |"));
        assert!(card.contains("| batch | 4 |"));
        assert!(card.contains("| scale_jitter | [0.75,1.33] |"));
        assert!(card.contains("a \\| pipe"));
        assert!(card.contains("| seed | 1 |"));
        assert!(card.contains("3725 s (1 h 2 min)"));
        assert!(card.contains("Final training loss: 0.123457"));
        assert!(card.contains("Final validation loss: 0.2"));
        assert!(card.contains("```sh\ncytoseg train --from models/nuclei"));
        assert!(card.contains("not stated: fill in"));
        assert!(card.contains("![loss curve](loss.png)"));
        // Validation thresholds in numeric order, with the union of columns.
        let i5 = card.find("| 0.5 |").unwrap();
        let i75 = card.find("| 0.75 |").unwrap();
        let i9 = card.find("| 0.9 |").unwrap();
        assert!(i5 < i75 && i75 < i9);
        assert!(card.contains("| IoU threshold | ap | f1 | tp |"));
        // The command is not repeated in the parameter table.
        assert!(!card.contains("| command |"));

        let mut m = full_manifest();
        m["training_data"] = json!({"license": "CC-BY-4.0", "name": "my DAPI set"});
        let card = model_card(&m);
        assert!(card.contains("Training-data licence: CC-BY-4.0."));
        assert!(!card.contains("fill in"));
    }

    #[test]
    fn model_card_odd_json() {
        let odd = [
            json!({}),
            json!(null),
            json!([]),
            json!("a string"),
            json!(42),
            json!({"lineage": []}),
            json!({"lineage": "x", "validation": [1, 2], "training_data": 5}),
            json!({"lineage": {"parent": [], "training_images": {}, "validation_images": "x",
                               "parameters": [1, 2], "wall_time_s": "long", "seed": null}}),
            json!({"lineage": {"training_images": [1, "a.tif", null, [], {"image": 5}],
                               "parameters": {"command": ["not", "a string"]}},
                   "validation": {"metrics": {"x": 1, "0.5": [], "": {"ap": null}}}}),
            json!({"name": "a\nb|c`d", "version": 1.5, "description": {"k": "v"},
                   "lineage": {"parameters": {"command": "echo ```"}}}),
            json!({"validation": {"metrics": []}}),
            json!({"lineage": {"wall_time_s": -1e308, "final_train_loss": 1e-300}}),
        ];
        for v in &odd {
            let card = model_card(v);
            assert!(card.starts_with("# "), "{v}");
            assert!(card.contains("## How to reproduce"));
        }
        let card = model_card(&json!({}));
        assert!(card.contains("# unnamed model"));
        assert!(card.contains("not recorded"));
        assert!(card.contains("not stated: fill in"));
        // A command with a code fence in it gets a longer fence.
        let card = model_card(&odd[9]);
        assert!(card.contains("````sh\necho ```\n````"));
    }
}
