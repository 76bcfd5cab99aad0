//! Per-object measurements of a label image, equal to `skimage.measure.regionprops_table`
//! (scikit-image 0.26) column for column.
//!
//! Columns, in order (names are skimage's; the README's "Measurements" section defines each):
//! `label`, `area`, `centroid-0` (row, y), `centroid-1` (column, x), `bbox-0`..`bbox-3`
//! (min row, min column, max row, max column, the max exclusive, always in pixel indices),
//! `perimeter`, `equivalent_diameter_area`, `axis_major_length`, `axis_minor_length`,
//! `eccentricity`, `orientation`, `solidity`, `extent`, then per intensity channel
//! `intensity_mean`, `intensity_min`, `intensity_max`, `intensity_std`, `intensity_integrated`
//! (suffixed `-k` for channel k when the image has more than one channel, as skimage names
//! them; `intensity_integrated` is the sum, which skimage has no property for).
//!
//! Calibration: skimage's `spacing=(pixel_height, pixel_width)`. Centroids, perimeter, diameter
//! and axis lengths are in `unit`, areas in `unit^2`; bounding boxes stay in pixel indices
//! (as in skimage). skimage refuses `perimeter` for non-square pixels; here it is then the
//! pixel-unit perimeter times `sqrt(pixel_width * pixel_height)`, an approximation.
//!
//! Memory: one pass over the labels finds each object's bounding box; each object is then
//! measured inside its own box (in parallel), never with a full-size image per object.

mod hull3;
mod shape;
mod volume;
pub use volume::{SHAPE_COLUMNS_3D, measure_planes, measure_stack, measure_volume};
pub mod texture;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::image::ImageView;

/// Physical pixel size. Default: 1.0 × 1.0, unit "pixel" (uncalibrated).
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Width of a pixel (along x, columns) in `unit`.
    pub pixel_width: f64,
    /// Height of a pixel (along y, rows) in `unit`.
    pub pixel_height: f64,
    /// Length unit, e.g. "um"; "pixel" when uncalibrated.
    pub unit: String,
    /// Distance between the planes of a z-stack in `unit`, when known (an ImageJ description's
    /// `spacing=`, OME's `PhysicalSizeZ`).
    pub z_spacing: Option<f64>,
}

impl Calibration {
    /// A calibration with square pixels of `size` `unit`.
    pub fn square(size: f64, unit: impl Into<String>) -> Self {
        Calibration {
            pixel_width: size,
            pixel_height: size,
            unit: unit.into(),
            z_spacing: None,
        }
    }

    /// Whether this carries a physical size (a unit other than "pixel", or a size other than 1).
    pub fn is_calibrated(&self) -> bool {
        self.unit != "pixel" || self.pixel_width != 1.0 || self.pixel_height != 1.0
    }

    /// Checks that both sizes are finite and positive.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("pixel width", self.pixel_width),
            ("pixel height", self.pixel_height),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::invalid(format!(
                    "{name} must be a positive number, got {v}"
                )));
            }
        }
        Ok(())
    }
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration::square(1.0, "pixel")
    }
}

/// One column of a measurement table.
#[derive(Debug, Clone)]
pub struct Column {
    /// Column name (skimage's `regionprops_table` name where it has one).
    pub name: String,
    /// Physical unit of the values, when calibrated (`None`: pixels, or unitless).
    pub unit: Option<String>,
    /// One value per object.
    pub values: Vec<f64>,
}

/// A table: one row per object, ordered by label.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// The columns, all of the same length.
    pub columns: Vec<Column>,
}

impl Table {
    /// Number of rows (objects).
    pub fn n_rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.values.len())
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// CSV text: a header `name [unit]` (plain `name` without a unit), then one line per
    /// object. Numbers are written with the shortest text that reads back to the same f64
    /// (integers such as labels and bounding boxes without a decimal point); NaN as `NaN`.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        let header: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                csv_field(&match &c.unit {
                    Some(u) => format!("{} [{u}]", c.name),
                    None => c.name.clone(),
                })
            })
            .collect();
        out.push_str(&header.join(","));
        out.push('\n');
        for row in 0..self.n_rows() {
            for (i, c) in self.columns.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let v = c.values[row];
                if v.is_nan() {
                    out.push_str("NaN");
                } else if v.is_infinite() {
                    out.push_str(if v > 0.0 { "inf" } else { "-inf" });
                } else {
                    let _ = write!(out, "{v}");
                }
            }
            out.push('\n');
        }
        out
    }

    /// Writes [`Table::to_csv`] to `path` atomically, replacing an existing file.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let text = self.to_csv();
        crate::io::write_atomic(path, true, |w| {
            use std::io::Write;
            w.write_all(text.as_bytes()).map_err(|e| Error::io(path, e))
        })
    }
}

/// `s` as one CSV field: quoted (inner quotes doubled) when it holds a comma, quote or newline.
pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Names of the shape columns, in table order.
pub const SHAPE_COLUMNS: [&str; 16] = [
    "label",
    "area",
    "centroid-0",
    "centroid-1",
    "bbox-0",
    "bbox-1",
    "bbox-2",
    "bbox-3",
    "perimeter",
    "equivalent_diameter_area",
    "axis_major_length",
    "axis_minor_length",
    "eccentricity",
    "orientation",
    "solidity",
    "extent",
];

/// Names of the per-channel intensity statistics, in table order (channel suffix appended).
pub const INTENSITY_COLUMNS: [&str; 5] = [
    "intensity_mean",
    "intensity_min",
    "intensity_max",
    "intensity_std",
    "intensity_integrated",
];

/// Bounding box and pixel count of one label, found by the first pass.
#[derive(Debug, Clone, Copy)]
struct Extent {
    label: u32,
    r0: usize,
    c0: usize,
    r1: usize, // exclusive
    c1: usize, // exclusive
}

/// Calls `f(label, first, last)` for each run of one non-zero label along a row.
fn for_each_run(row: &[u32], mut f: impl FnMut(u32, usize, usize)) {
    let mut c = 0;
    while c < row.len() {
        let (l, start) = (row[c], c);
        while c < row.len() && row[c] == l {
            c += 1;
        }
        if l != 0 {
            f(l, start, c - 1);
        }
    }
}

/// Finds every label's bounding box, ordered by label. Labels index a table of slots when they
/// are small (at most a quarter of the pixel count, or 65,536: the table is then no larger than
/// the labels themselves), a hash map otherwise.
fn find_objects(labels: &[u32], height: usize, width: usize) -> Vec<Extent> {
    let max = labels.iter().copied().max().unwrap_or(0) as usize;
    let mut extents: Vec<Extent> = Vec::new();
    let mut add = |slot: &mut u32, l: u32, r: usize, a: usize, b: usize| {
        if *slot == 0 {
            extents.push(Extent {
                label: l,
                r0: r,
                c0: a,
                r1: r + 1,
                c1: b + 1,
            });
            *slot = extents.len() as u32; // distinct non-zero u32 labels: at most u32::MAX
        } else {
            let e = &mut extents[*slot as usize - 1];
            e.r1 = r + 1; // rows are visited in order
            e.c0 = e.c0.min(a);
            e.c1 = e.c1.max(b + 1);
        }
    };
    if max <= (labels.len() / 4).max(1 << 16) {
        let mut index = vec![0u32; max + 1];
        for r in 0..height {
            for_each_run(&labels[r * width..(r + 1) * width], |l, a, b| {
                add(&mut index[l as usize], l, r, a, b)
            });
        }
    } else {
        let mut index: HashMap<u32, u32> = HashMap::new();
        for r in 0..height {
            for_each_run(&labels[r * width..(r + 1) * width], |l, a, b| {
                add(index.entry(l).or_insert(0), l, r, a, b)
            });
        }
    }
    extents.sort_unstable_by_key(|e| e.label);
    extents
}

/// Everything measured for one object.
struct Row {
    shape: [f64; 16],
    intensity: Vec<f64>, // channels × 5
}

fn measure_object(
    e: &Extent,
    labels: &[u32],
    width: usize,
    planes: &[Vec<f32>],
    cal: &Calibration,
) -> Row {
    let (h, w) = (e.r1 - e.r0, e.c1 - e.c0);
    let mut mask = vec![false; h * w];
    let (mut n, mut sr, mut sc, mut srr, mut scc, mut src) =
        (0i128, 0i128, 0i128, 0i128, 0i128, 0i128);
    for r in 0..h {
        let row = &labels[(e.r0 + r) * width + e.c0..(e.r0 + r) * width + e.c1];
        for (c, &l) in row.iter().enumerate() {
            if l == e.label {
                mask[r * w + c] = true;
                let (ri, ci) = (r as i128, c as i128);
                n += 1;
                sr += ri;
                sc += ci;
                srr += ri * ri;
                scc += ci * ci;
                src += ri * ci;
            }
        }
    }
    // skimage: spacing = (pixel_height, pixel_width) for (row, column).
    let (py, px) = (cal.pixel_height, cal.pixel_width);
    let pixel_area = py * px;
    let nf = n as f64;
    let area = nf * pixel_area;
    // Centroid: mean of the scaled global coordinates.
    let cy = (e.r0 as i128 * n + sr) as f64 / nf * py;
    let cx = (e.c0 as i128 * n + sc) as f64 / nf * px;
    // Central moments of order 2 (local, exact integer numerators), scaled as skimage's
    // `moments_central(..., spacing)`: (r·py − c̄_r)^p (c·px − c̄_c)^q summed, mu00 = n.
    let mu20 = (n * srr - sr * sr) as f64 / nf * py * py;
    let mu02 = (n * scc - sc * sc) as f64 / nf * px * px;
    let mu11 = (n * src - sr * sc) as f64 / nf * py * px;
    // skimage's `inertia_tensor`: diagonal entries are (sum of both) − own, over mu00.
    let s = mu20 + mu02;
    let a = (s - mu20) / nf;
    let c = (s - mu02) / nf;
    let b = -mu11 / nf;
    let (l1, l2) = shape::eigvalsh2(a, b, c);
    let eccentricity = if l1 == 0.0 {
        0.0
    } else {
        (1.0 - l2 / l1).sqrt()
    };
    let orientation = if a - c == 0.0 {
        if b < 0.0 {
            std::f64::consts::FRAC_PI_4
        } else {
            -std::f64::consts::FRAC_PI_4
        }
    } else {
        0.5 * (-2.0 * b).atan2(c - a)
    };
    let perimeter_px = shape::perimeter(&mask, w, h);
    let perimeter = if py == px {
        perimeter_px * py
    } else {
        perimeter_px * (py * px).sqrt()
    };
    let hull = shape::convex_hull_area(&mask, w, h) as f64 * pixel_area;
    let bbox_area = (h * w) as f64 * pixel_area;
    let shape = [
        e.label as f64,
        area,
        cy,
        cx,
        e.r0 as f64,
        e.c0 as f64,
        e.r1 as f64,
        e.c1 as f64,
        perimeter,
        (4.0 * area / std::f64::consts::PI).powf(0.5),
        4.0 * l1.sqrt(),
        4.0 * l2.sqrt(),
        eccentricity,
        orientation,
        area / hull,
        area / bbox_area,
    ];
    let mut intensity = Vec::with_capacity(planes.len() * 5);
    let mut values = Vec::with_capacity(n as usize);
    for plane in planes {
        values.clear();
        for r in 0..h {
            let base = (e.r0 + r) * width + e.c0;
            let m = &mask[r * w..(r + 1) * w];
            values.extend((0..w).filter(|&c| m[c]).map(|c| plane[base + c] as f64));
        }
        let (mut sum, mut min, mut max, mut nan) =
            (0.0f64, f64::INFINITY, f64::NEG_INFINITY, false);
        for &v in &values {
            sum += v;
            nan |= v.is_nan();
            min = min.min(v);
            max = max.max(v);
        }
        // numpy: mean, then the population standard deviation about it; NaN propagates.
        let mean = sum / nf;
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / nf;
        if nan {
            (min, max) = (f64::NAN, f64::NAN);
        }
        intensity.extend([mean, min, max, var.sqrt(), sum]);
    }
    Row { shape, intensity }
}

/// Checks that `labels` hold `height × width` values and `image` (if any) is that size.
fn check_sizes(
    labels: &[u32],
    height: usize,
    width: usize,
    image: Option<&ImageView<'_>>,
) -> Result<()> {
    let n = height
        .checked_mul(width)
        .ok_or_else(|| Error::TooLarge(format!("labels {width}×{height} overflow")))?;
    if labels.len() != n {
        return Err(Error::shape(format!(
            "labels hold {} values, {width}×{height} needs {n}",
            labels.len()
        )));
    }
    if let Some(im) = image
        && (im.width != width || im.height != height)
    {
        return Err(Error::shape(format!(
            "image is {}×{}, labels are {width}×{height}",
            im.width, im.height
        )));
    }
    Ok(())
}

/// Measures every object of `labels` (row-major, `height × width`, 0 = background).
///
/// `image`: optional intensity image of the same width and height, any number of channels;
/// each channel adds the [`INTENSITY_COLUMNS`] (suffixed `-k` when there are several channels).
/// Returns one row per label present, ordered by label; no objects gives a table of 0 rows
/// with every column.
pub fn measure(
    labels: &[u32],
    height: usize,
    width: usize,
    image: Option<&ImageView<'_>>,
    calibration: &Calibration,
) -> Result<Table> {
    calibration.validate()?;
    check_sizes(labels, height, width, image)?;
    let planes: Vec<Vec<f32>> = match image {
        Some(im) => (0..im.channels).map(|c| im.plane(c)).collect(),
        None => Vec::new(),
    };
    let objects = find_objects(labels, height, width);
    let rows: Vec<Row> = objects
        .par_iter()
        .map(|e| measure_object(e, labels, width, &planes, calibration))
        .collect();

    let cal = calibration.is_calibrated();
    let length = cal.then(|| calibration.unit.clone());
    let area = cal.then(|| format!("{}^2", calibration.unit));
    let unit_of = |name: &str| match name {
        "area" => area.clone(),
        "centroid-0"
        | "centroid-1"
        | "perimeter"
        | "equivalent_diameter_area"
        | "axis_major_length"
        | "axis_minor_length" => length.clone(),
        _ => None,
    };
    Ok(assemble(
        &SHAPE_COLUMNS,
        rows.len(),
        |r, i| rows[r].shape[i],
        planes.len(),
        |r, j| rows[r].intensity[j],
        unit_of,
    ))
}

/// A measurement table: the shape columns `names` (`shape(row, column)`), then per intensity
/// channel the [`INTENSITY_COLUMNS`] (`intensity(row, channel × 5 + statistic)`), suffixed
/// `-k` when there are several channels; `unit_of` gives a shape column's unit.
pub(crate) fn assemble(
    names: &[&str],
    n_rows: usize,
    shape: impl Fn(usize, usize) -> f64,
    channels: usize,
    intensity: impl Fn(usize, usize) -> f64,
    unit_of: impl Fn(&str) -> Option<String>,
) -> Table {
    let mut columns: Vec<Column> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Column {
            name: name.to_string(),
            unit: unit_of(name),
            values: (0..n_rows).map(|r| shape(r, i)).collect(),
        })
        .collect();
    for k in 0..channels {
        for (j, stat) in INTENSITY_COLUMNS.iter().enumerate() {
            let name = if channels > 1 {
                format!("{stat}-{k}")
            } else {
                stat.to_string()
            };
            columns.push(Column {
                name,
                unit: None,
                values: (0..n_rows).map(|r| intensity(r, k * 5 + j)).collect(),
            });
        }
    }
    Table { columns }
}
