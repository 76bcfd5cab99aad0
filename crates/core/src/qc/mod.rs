//! Per-image quality control: measures that tell an image that should not be analysed (out of
//! focus, saturated, empty, dim, noisy) and a network unsure of what it found, written into
//! `summary.csv` by the batch engine and compared across images and groups by [`report`].
//!
//! Every measure is defined here once, with its formula ([`MEASURES`] carries the text that the
//! report and the documentation print). Image measures are taken on the *QC channel*: the first
//! channel chosen for segmentation, or the mean of all channels when the choice is automatic
//! (what a one-channel model sees). For a stack each image measure is the median over its planes;
//! object counts add up and object areas are pooled.

pub mod report;
pub mod validation;

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::flows::{FlowQcStats, FlowsRef};
use crate::image::ImageView;
use crate::measure::{Calibration, Column, Table};
use crate::model::ChannelChoice;

/// How sure the network was of what it found in one plane.
#[derive(Debug, Clone, Default)]
pub struct NetworkQuality {
    /// Mean cell probability (sigmoid of the cell-probability output) over the object pixels;
    /// NaN without objects.
    pub mean_cellprob: f64,
    /// Median flow error (Cellpose's `flow_error`) of the masks flow QC kept; NaN when flow QC
    /// did not run (`flow_threshold` 0) or found no masks.
    pub flow_error_median: f64,
    /// Masks found before flow QC.
    pub masks_found: u32,
    /// Masks flow QC removed.
    pub removed_by_flow_qc: u32,
}

impl NetworkQuality {
    /// From the final labels, the cell-probability logits and flow QC's findings.
    pub(crate) fn new(labels: &[u32], cellprob: &[f32], flow_qc: Option<FlowQcStats>) -> Self {
        let (mut sum, mut n) = (0.0f64, 0u64);
        for (&l, &c) in labels.iter().zip(cellprob) {
            if l != 0 {
                sum += 1.0 / (1.0 + (-(c as f64)).exp());
                n += 1;
            }
        }
        let qc = flow_qc.unwrap_or_default();
        let mut errors = qc.kept_errors;
        NetworkQuality {
            mean_cellprob: if n > 0 { sum / n as f64 } else { f64::NAN },
            flow_error_median: median(&mut errors),
            masks_found: qc.masks,
            removed_by_flow_qc: qc.removed,
        }
    }
}

/// The QC measures of one image (all planes), as written to `summary.csv`. NaN where a measure
/// is undefined (written as an empty cell).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ImageQc {
    /// Normalised variance of the Laplacian (focus; falls with blur).
    #[serde(deserialize_with = "nan_if_null")]
    pub focus_laplacian: f64,
    /// Slope of the log-log radial power spectrum (focus; more negative with blur).
    #[serde(deserialize_with = "nan_if_null")]
    pub focus_spectrum_slope: f64,
    /// Fraction of pixels at the image's maximum value.
    #[serde(deserialize_with = "nan_if_null")]
    pub saturated_fraction: f64,
    /// Median intensity outside objects.
    #[serde(deserialize_with = "nan_if_null")]
    pub background: f64,
    /// Median intensity inside objects.
    #[serde(deserialize_with = "nan_if_null")]
    pub signal: f64,
    /// Standard deviation of the noise (Immerkær's estimator).
    #[serde(deserialize_with = "nan_if_null")]
    pub noise: f64,
    /// (signal − background) / noise.
    #[serde(deserialize_with = "nan_if_null")]
    pub contrast_to_noise: f64,
    /// Fraction of the sample type's range between the 0.1th and 99.9th percentiles.
    #[serde(deserialize_with = "nan_if_null")]
    pub dynamic_range: f64,
    /// Interquartile range of the object areas (calibrated units).
    #[serde(deserialize_with = "nan_if_null")]
    pub area_iqr: f64,
    /// Mean cell probability over object pixels.
    #[serde(deserialize_with = "nan_if_null")]
    pub mean_cellprob: f64,
    /// Median flow error of the kept masks.
    #[serde(deserialize_with = "nan_if_null")]
    pub flow_error_median: f64,
    /// Fraction of the masks found that flow QC removed.
    #[serde(deserialize_with = "nan_if_null")]
    pub flow_qc_removed_fraction: f64,
}

/// Reads a number written by serde_json, which writes NaN as `null`.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

impl Default for ImageQc {
    fn default() -> Self {
        ImageQc {
            focus_laplacian: f64::NAN,
            focus_spectrum_slope: f64::NAN,
            saturated_fraction: f64::NAN,
            background: f64::NAN,
            signal: f64::NAN,
            noise: f64::NAN,
            contrast_to_noise: f64::NAN,
            dynamic_range: f64::NAN,
            area_iqr: f64::NAN,
            mean_cellprob: f64::NAN,
            flow_error_median: f64::NAN,
            flow_qc_removed_fraction: f64::NAN,
        }
    }
}

/// Which way a measure goes wrong, for flagging outliers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// Too low is suspicious (e.g. focus).
    Low,
    /// Too high is suspicious (e.g. saturation).
    High,
    /// Either way.
    Both,
}

/// A QC measure's name (its `summary.csv` column), formula and how it is judged.
#[derive(Debug, Clone, Copy)]
pub struct MeasureInfo {
    /// Column name in `summary.csv`.
    pub name: &'static str,
    /// What it is, with its formula.
    pub formula: &'static str,
    /// Which deviation is flagged.
    pub bad: Bad,
    /// Compared as ln(value + offset) (multiplicative quantities: intensities, counts, focus);
    /// `None`: compared as is.
    pub log_offset: Option<f64>,
    /// Whether an outlier in it flags the image (the others are shown, not judged).
    pub flags: bool,
    /// The smallest difference from the group's median (on the compared scale) that can flag:
    /// a guard where a group's spread is near zero (ln 1.4 ≈ 0.34: a 40% change).
    pub min_change: f64,
}

/// Every QC column of `summary.csv` (besides `objects` and `area_median`, which the summary
/// already has), in order.
pub const MEASURES: &[MeasureInfo] = &[
    MeasureInfo {
        name: "focus_laplacian",
        formula: "var(L) / var(I) over interior pixels, L = I[y−1,x] + I[y+1,x] + I[y,x−1] + I[y,x+1] − 4·I[y,x]: the share of the image's variance at the finest scale; blur lowers it; independent of gain and offset",
        bad: Bad::Low,
        log_offset: Some(0.0),
        flags: true,
        min_change: 0.5,
    },
    MeasureInfo {
        name: "focus_spectrum_slope",
        formula: "least-squares slope of log10 P(f) against log10 f, P the radially averaged power spectrum of the mean-subtracted image (central crop of at most 1024×1024), f from 2 cycles per image side to 0.5 cycles/pixel: more negative when blurred, flatter with noise",
        bad: Bad::Low,
        log_offset: None,
        flags: true,
        min_change: 0.3,
    },
    MeasureInfo {
        name: "saturated_fraction",
        formula: "fraction of pixels equal to the image's maximum value (0 for a constant image)",
        bad: Bad::High,
        log_offset: None,
        flags: true,
        min_change: 0.005,
    },
    MeasureInfo {
        name: "background",
        formula: "median intensity of the pixels outside objects (all pixels when there are none)",
        bad: Bad::Both,
        log_offset: Some(1.0),
        flags: false,
        min_change: 0.34,
    },
    MeasureInfo {
        name: "signal",
        formula: "median intensity of the pixels inside objects",
        bad: Bad::Both,
        log_offset: Some(1.0),
        flags: true,
        min_change: 0.34,
    },
    MeasureInfo {
        name: "noise",
        formula: "Immerkær's noise σ: √(π/2) · Σ|I ∗ N| / (6 (W−2)(H−2)), N = [1 −2 1; −2 4 −2; 1 −2 1]; at least 1/√12 (quantisation) for integer images",
        bad: Bad::High,
        log_offset: Some(0.0),
        flags: false,
        min_change: 0.34,
    },
    MeasureInfo {
        name: "contrast_to_noise",
        formula: "(signal − background) / noise",
        bad: Bad::Low,
        log_offset: Some(1.0),
        flags: true,
        min_change: 0.41,
    },
    MeasureInfo {
        name: "dynamic_range",
        formula: "(99.9th − 0.1th percentile) / the sample type's maximum (255, 65535); empty for float images",
        bad: Bad::Low,
        log_offset: Some(0.001),
        flags: true,
        min_change: 0.34,
    },
    MeasureInfo {
        name: "area_iqr",
        formula: "interquartile range (75th − 25th percentile) of the object areas, in the area unit",
        bad: Bad::Both,
        log_offset: Some(1.0),
        flags: false,
        min_change: 0.34,
    },
    MeasureInfo {
        name: "mean_cellprob",
        formula: "mean of sigmoid(cell probability output) over the object pixels: the network's confidence",
        bad: Bad::Low,
        log_offset: None,
        flags: true,
        min_change: 0.05,
    },
    MeasureInfo {
        name: "flow_error_median",
        formula: "median over the kept masks of Cellpose's flow error: mean (dY_mask − dY/5)² + (dX_mask − dX/5)² over the mask",
        bad: Bad::High,
        log_offset: None,
        flags: true,
        min_change: 0.05,
    },
    MeasureInfo {
        name: "flow_qc_removed_fraction",
        formula: "masks removed by flow QC / masks found before it",
        bad: Bad::High,
        log_offset: None,
        flags: true,
        min_change: 0.15,
    },
];

impl ImageQc {
    /// The measures in [`MEASURES`] order.
    pub fn values(&self) -> [f64; 12] {
        [
            self.focus_laplacian,
            self.focus_spectrum_slope,
            self.saturated_fraction,
            self.background,
            self.signal,
            self.noise,
            self.contrast_to_noise,
            self.dynamic_range,
            self.area_iqr,
            self.mean_cellprob,
            self.flow_error_median,
            self.flow_qc_removed_fraction,
        ]
    }
}

/// The image measures of one plane (before combining planes).
#[derive(Debug, Clone, Copy)]
pub struct PlaneQc {
    focus_laplacian: f64,
    focus_spectrum_slope: f64,
    saturated_fraction: f64,
    background: f64,
    signal: f64,
    noise: f64,
    dynamic_range: f64,
}

/// The QC channel of an image as float samples (see the module documentation).
pub fn qc_plane(image: &ImageView<'_>, choice: &ChannelChoice) -> Vec<f32> {
    match choice {
        ChannelChoice::Select(list) if !list.is_empty() && list[0] < image.channels => {
            image.plane(list[0])
        }
        _ if image.channels == 1 => image.plane(0),
        _ => {
            let mut acc = vec![0.0f32; image.width * image.height];
            for c in 0..image.channels {
                for (a, v) in acc.iter_mut().zip(image.plane(c)) {
                    *a += v;
                }
            }
            let k = image.channels as f32;
            acc.iter_mut().for_each(|a| *a /= k);
            acc
        }
    }
}

/// The image measures of one plane: `plane` is the QC channel (`height × width`), `labels` the
/// plane's objects, `type_max` the sample type's maximum (`None` for float images).
pub fn plane_measures(
    plane: &[f32],
    height: usize,
    width: usize,
    labels: &[u32],
    type_max: Option<f32>,
) -> PlaneQc {
    let inside: Vec<f32> = plane
        .iter()
        .zip(labels)
        .filter(|&(_, &l)| l != 0)
        .map(|(&v, _)| v)
        .collect();
    let mut outside: Vec<f32> = plane
        .iter()
        .zip(labels)
        .filter(|&(_, &l)| l == 0)
        .map(|(&v, _)| v)
        .collect();
    if outside.is_empty() {
        outside = plane.to_vec();
    }
    let mut inside64: Vec<f64> = inside.iter().map(|&v| v as f64).collect();
    let mut outside64: Vec<f64> = outside.iter().map(|&v| v as f64).collect();
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for &v in plane {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    let saturated_fraction = if hi > lo {
        plane.iter().filter(|&&v| v == hi).count() as f64 / plane.len() as f64
    } else {
        0.0
    };
    let mut noise = immerkaer_noise(plane, height, width);
    if type_max.is_some() {
        noise = noise.max(1.0 / 12f64.sqrt());
    }
    let dynamic_range = match type_max {
        Some(m) => {
            let mut all: Vec<f64> = plane.iter().map(|&v| v as f64).collect();
            let p999 = percentile(&mut all, 99.9);
            let p001 = percentile(&mut all, 0.1);
            (p999 - p001) / m as f64
        }
        None => f64::NAN,
    };
    PlaneQc {
        focus_laplacian: focus_laplacian(plane, height, width),
        focus_spectrum_slope: spectrum_slope(plane, height, width),
        saturated_fraction,
        background: median(&mut outside64),
        signal: median(&mut inside64),
        noise,
        dynamic_range,
    }
}

/// Combines the planes of one image: image measures are medians over planes; `areas` are all
/// object areas (calibrated), `network` each plane's network quality.
pub fn combine(planes: &[PlaneQc], areas: &[f64], network: &[NetworkQuality]) -> ImageQc {
    let med = |f: &dyn Fn(&PlaneQc) -> f64| {
        let mut v: Vec<f64> = planes.iter().map(f).collect();
        median(&mut v)
    };
    let background = med(&|p| p.background);
    let signal = med(&|p| p.signal);
    let noise = med(&|p| p.noise);
    let mut areas = areas.to_vec();
    let area_iqr = percentile(&mut areas, 75.0) - percentile(&mut areas, 25.0);
    let mut cp: Vec<f64> = network
        .iter()
        .map(|n| n.mean_cellprob)
        .filter(|v| !v.is_nan())
        .collect();
    let mut fe: Vec<f64> = network
        .iter()
        .map(|n| n.flow_error_median)
        .filter(|v| !v.is_nan())
        .collect();
    let found: u64 = network.iter().map(|n| n.masks_found as u64).sum();
    let removed: u64 = network.iter().map(|n| n.removed_by_flow_qc as u64).sum();
    ImageQc {
        focus_laplacian: med(&|p| p.focus_laplacian),
        focus_spectrum_slope: med(&|p| p.focus_spectrum_slope),
        saturated_fraction: med(&|p| p.saturated_fraction),
        background,
        signal,
        noise,
        contrast_to_noise: if noise > 0.0 {
            (signal - background) / noise
        } else {
            f64::NAN
        },
        dynamic_range: med(&|p| p.dynamic_range),
        area_iqr,
        mean_cellprob: median(&mut cp),
        flow_error_median: median(&mut fe),
        flow_qc_removed_fraction: if found > 0 {
            removed as f64 / found as f64
        } else {
            f64::NAN
        },
    }
}

/// The QC measures of one image whose objects a host already has (the C API and plugins), as
/// a one-row table (see [`ImageQc::to_table`]): `labels` are its `height × width` objects;
/// `flows`, when given (the network's dY, dX, cellprob at image size, as `Model::segment`
/// keeps them), give the network's confidence and flow errors. What only segmentation knows
/// (masks flow QC removed) is NaN.
pub fn image_qc_table(
    image: &ImageView<'_>,
    choice: &ChannelChoice,
    labels: &[u32],
    flows: Option<&FlowsRef<'_>>,
    calibration: &Calibration,
) -> Result<Table> {
    let (h, w) = (image.height, image.width);
    if labels.len() != h * w {
        return Err(Error::shape(format!(
            "labels have {} values, the image {h}×{w}",
            labels.len()
        )));
    }
    if image.has_non_finite() {
        return Err(Error::NonFinite(
            "the image holds NaN or infinite values".into(),
        ));
    }
    if let ChannelChoice::Select(list) = choice
        && let Some(&c) = list.iter().find(|&&c| c >= image.channels)
    {
        return Err(Error::invalid(format!(
            "channel {c} chosen, the image has {} (0-based)",
            image.channels
        )));
    }
    let plane = plane_measures(&qc_plane(image, choice), h, w, labels, image.type_max());
    let max = labels.iter().copied().max().unwrap_or(0) as usize;
    let mut count = vec![0u64; max + 1];
    for &l in labels {
        count[l as usize] += 1;
    }
    let px = calibration.pixel_width * calibration.pixel_height;
    let areas: Vec<f64> = count[1..]
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| c as f64 * px)
        .collect();
    let network = match flows {
        Some(f) => {
            if f.height != h || f.width != w {
                return Err(Error::shape(format!(
                    "flows are {}×{}, the image {h}×{w}",
                    f.height, f.width
                )));
            }
            let mut errors: Vec<f64> = crate::flows::flow_errors(labels, f)?
                .into_iter()
                .filter(|e| !e.is_nan())
                .collect();
            let mut q = NetworkQuality::new(labels, f.cellprob, None);
            q.flow_error_median = median(&mut errors);
            vec![q]
        }
        None => Vec::new(),
    };
    let qc = combine(&[plane], &areas, &network);
    Ok(qc.to_table(areas.len() as u64, calibration))
}

impl ImageQc {
    /// A one-row table (`objects`, then every measure of [`MEASURES`]; intensities in the
    /// image's units, `area_iqr` in the calibrated area unit), the shape the C API returns.
    pub fn to_table(&self, objects: u64, calibration: &Calibration) -> Table {
        let mut columns = vec![Column {
            name: "objects".into(),
            unit: None,
            values: vec![objects as f64],
        }];
        for (m, v) in MEASURES.iter().zip(self.values()) {
            let unit = (m.name == "area_iqr" && calibration.unit != "pixel")
                .then(|| format!("{}^2", calibration.unit));
            columns.push(Column {
                name: m.name.into(),
                unit,
                values: vec![v],
            });
        }
        Table { columns }
    }
}

/// Median of the non-NaN values (NaN when there are none); reorders `v`.
pub fn median(v: &mut [f64]) -> f64 {
    percentile(v, 50.0)
}

/// The `q`th percentile (0–100) of the non-NaN values with linear interpolation between order
/// statistics (numpy's default); NaN when there are none. Reorders `v`.
pub fn percentile(v: &mut [f64], q: f64) -> f64 {
    let mut n = 0;
    for i in 0..v.len() {
        if !v[i].is_nan() {
            v.swap(n, i);
            n += 1;
        }
    }
    let v = &mut v[..n];
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = (q / 100.0).clamp(0.0, 1.0) * (n - 1) as f64;
    let k = pos.floor() as usize;
    let frac = pos - k as f64;
    let (_, &mut a, rest) = v.select_nth_unstable_by(k, f64::total_cmp);
    if frac == 0.0 || rest.is_empty() {
        return a;
    }
    let b = rest.iter().copied().fold(f64::INFINITY, f64::min);
    a + frac * (b - a)
}

/// var(L) / var(I) over interior pixels (see [`MEASURES`]); NaN for images under 3×3 or
/// constant ones.
fn focus_laplacian(p: &[f32], h: usize, w: usize) -> f64 {
    if h < 3 || w < 3 {
        return f64::NAN;
    }
    let (mut sl, mut sl2, mut si, mut si2) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let k = y * w + x;
            let c = p[k] as f64;
            let l = p[k - w] as f64 + p[k + w] as f64 + p[k - 1] as f64 + p[k + 1] as f64 - 4.0 * c;
            sl += l;
            sl2 += l * l;
            si += c;
            si2 += c * c;
        }
    }
    let n = ((h - 2) * (w - 2)) as f64;
    let vl = sl2 / n - (sl / n).powi(2);
    let vi = si2 / n - (si / n).powi(2);
    if vi > 0.0 { vl / vi } else { f64::NAN }
}

/// Immerkær's fast noise estimate (see [`MEASURES`]); 0 for images under 3×3.
fn immerkaer_noise(p: &[f32], h: usize, w: usize) -> f64 {
    if h < 3 || w < 3 {
        return 0.0;
    }
    let mut sum = 0.0f64;
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let v = |dy: isize, dx: isize| {
                p[((y as isize + dy) as usize) * w + (x as isize + dx) as usize] as f64
            };
            let r = v(-1, -1) - 2.0 * v(-1, 0) + v(-1, 1) - 2.0 * v(0, -1) + 4.0 * v(0, 0)
                - 2.0 * v(0, 1)
                + v(1, -1)
                - 2.0 * v(1, 0)
                + v(1, 1);
            sum += r.abs();
        }
    }
    (std::f64::consts::PI / 2.0).sqrt() * sum / (6.0 * ((w - 2) * (h - 2)) as f64)
}

/// Slope of the log-log radially averaged power spectrum (see [`MEASURES`]); NaN for images
/// under 16×16 or constant ones.
fn spectrum_slope(p: &[f32], h: usize, w: usize) -> f64 {
    let (ch, cw) = (h.min(1024), w.min(1024));
    if ch < 16 || cw < 16 {
        return f64::NAN;
    }
    let (y0, x0) = ((h - ch) / 2, (w - cw) / 2);
    let mut buf: Vec<Complex<f64>> = Vec::with_capacity(ch * cw);
    for y in y0..y0 + ch {
        buf.extend(
            p[y * w + x0..y * w + x0 + cw]
                .iter()
                .map(|&v| Complex::new(v as f64, 0.0)),
        );
    }
    let mean = buf.iter().map(|c| c.re).sum::<f64>() / buf.len() as f64;
    buf.iter_mut().for_each(|c| c.re -= mean);
    let mut planner = FftPlanner::<f64>::new();
    let row = planner.plan_fft_forward(cw);
    for r in buf.chunks_mut(cw) {
        row.process(r);
    }
    let col = planner.plan_fft_forward(ch);
    let mut column = vec![Complex::new(0.0, 0.0); ch];
    for x in 0..cw {
        for y in 0..ch {
            column[y] = buf[y * cw + x];
        }
        col.process(&mut column);
        for y in 0..ch {
            buf[y * cw + x] = column[y];
        }
    }
    // Radial bins of width 1/min(side) cycles/pixel.
    let side = ch.min(cw) as f64;
    let nbins = (side / 2.0) as usize + 1;
    let mut power = vec![0.0f64; nbins];
    let mut count = vec![0u64; nbins];
    for y in 0..ch {
        let fy = if y <= ch / 2 {
            y as f64
        } else {
            y as f64 - ch as f64
        } / ch as f64;
        for x in 0..cw {
            let fx = if x <= cw / 2 {
                x as f64
            } else {
                x as f64 - cw as f64
            } / cw as f64;
            let bin = ((fy * fy + fx * fx).sqrt() * side).round() as usize;
            if bin < nbins {
                power[bin] += buf[y * cw + x].norm_sqr();
                count[bin] += 1;
            }
        }
    }
    let (mut sx, mut sy, mut sxx, mut sxy, mut n) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for b in 2..nbins {
        if count[b] == 0 || power[b] <= 0.0 {
            continue;
        }
        let x = (b as f64 / side).log10();
        let y = (power[b] / count[b] as f64).log10();
        sx += x;
        sy += y;
        sxx += x * x;
        sxy += x * y;
        n += 1.0;
    }
    let d = n * sxx - sx * sx;
    if n < 3.0 || d <= 0.0 {
        return f64::NAN;
    }
    (n * sxy - sx * sy) / d
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reproducible field of blobs with Gaussian-ish noise from a small LCG.
    fn blobs(h: usize, w: usize, noise: f64, seed: u64) -> Vec<f32> {
        noisy(h, w, noise, 40, seed)
    }

    /// `n` bright discs on a dark background, plus noise of standard deviation `noise`.
    fn noisy(h: usize, w: usize, noise: f64, n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        let mut rnd = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut img = vec![20.0f32; h * w];
        for _ in 0..n {
            let (cy, cx, r) = (rnd() * h as f64, rnd() * w as f64, 4.0 + rnd() * 6.0);
            for y in 0..h {
                for x in 0..w {
                    let d = ((y as f64 - cy).powi(2) + (x as f64 - cx).powi(2)).sqrt();
                    if d < r {
                        img[y * w + x] = 150.0;
                    }
                }
            }
        }
        for v in img.iter_mut() {
            // Sum of 12 uniforms − 6: approximately standard normal.
            let g: f64 = (0..12).map(|_| rnd()).sum::<f64>() - 6.0;
            *v += (noise * g) as f32;
        }
        img
    }

    fn box_blur(p: &[f32], h: usize, w: usize, r: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; h * w];
        for y in 0..h {
            for x in 0..w {
                let (mut s, mut n) = (0.0f32, 0.0f32);
                for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
                    for xx in x.saturating_sub(r)..(x + r + 1).min(w) {
                        s += p[yy * w + xx];
                        n += 1.0;
                    }
                }
                out[y * w + x] = s / n;
            }
        }
        out
    }

    #[test]
    fn noise_estimate_recovers_known_sigma() {
        // Noise over a smooth ramp (the estimator's kernel cancels planes; sharp edges would
        // add to the estimate, a known bias of the method).
        let (h, w) = (256, 256);
        for sigma in [2.0, 8.0] {
            let img: Vec<f32> = noisy(h, w, sigma, 0, 7)
                .iter()
                .enumerate()
                .map(|(k, v)| v + 0.3 * (k / w) as f32 + 0.2 * (k % w) as f32)
                .collect();
            let est = immerkaer_noise(&img, h, w);
            assert!(
                (est - sigma).abs() / sigma < 0.15,
                "σ {sigma}: estimated {est}"
            );
        }
    }

    #[test]
    fn blur_lowers_both_focus_measures_and_gain_changes_neither() {
        let (h, w) = (200, 240);
        let sharp = blobs(h, w, 1.0, 3);
        let blurred = box_blur(&sharp, h, w, 3);
        let fl = focus_laplacian(&sharp, h, w);
        let fb = focus_laplacian(&blurred, h, w);
        assert!(fb < fl / 5.0, "laplacian {fl} → {fb}");
        let sl = spectrum_slope(&sharp, h, w);
        let sb = spectrum_slope(&blurred, h, w);
        assert!(sb < sl - 0.5, "slope {sl} → {sb}");
        let dim: Vec<f32> = sharp.iter().map(|v| 0.5 * v + 3.0).collect();
        assert!((focus_laplacian(&dim, h, w) - fl).abs() / fl < 1e-6);
        assert!((spectrum_slope(&dim, h, w) - sl).abs() < 1e-9);
    }

    #[test]
    fn saturation_background_signal_and_range() {
        let (h, w) = (64, 64);
        let mut img = vec![10.0f32; h * w];
        let mut labels = vec![0u32; h * w];
        for k in 0..h * w / 4 {
            img[k] = 200.0;
            labels[k] = 1;
        }
        for v in img.iter_mut().take(h * w / 8) {
            *v = 255.0;
        }
        let q = plane_measures(&img, h, w, &labels, Some(255.0));
        assert_eq!(q.saturated_fraction, 0.125);
        assert_eq!(q.background, 10.0);
        assert_eq!(q.signal, 227.5);
        assert!((q.dynamic_range - 245.0 / 255.0).abs() < 1e-9);
        let flat = vec![0.0f32; h * w];
        let e = plane_measures(&flat, h, w, &vec![0; h * w], Some(255.0));
        assert_eq!(e.saturated_fraction, 0.0);
        assert_eq!(e.dynamic_range, 0.0);
        assert!(e.signal.is_nan());
        assert!((e.noise - 1.0 / 12f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        let mut v = vec![4.0, 1.0, f64::NAN, 3.0, 2.0];
        assert_eq!(percentile(&mut v, 50.0), 2.5);
        assert_eq!(percentile(&mut v, 25.0), 1.75);
        assert_eq!(percentile(&mut v, 100.0), 4.0);
        assert!(median(&mut []).is_nan());
    }
}
