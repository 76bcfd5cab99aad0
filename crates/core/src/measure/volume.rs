//! Measurements of 3-D objects: `skimage.measure.regionprops_table` on a `(Z, Y, X)` label
//! volume with `spacing=(z_spacing, pixel_height, pixel_width)`.
//!
//! Columns, as skimage names and defines them in 3-D: `label`, `area` (voxel count × voxel
//! volume), `centroid-0..2` (z, y, x, scaled), `bbox-0..5` (min z, y, x, then max z, y, x,
//! exclusive, in voxels), `equivalent_diameter_area` (diameter of the ball of the same volume,
//! (6V/π)^⅓), `axis_major_length` and `axis_minor_length` (√(10 (λ₁ + λ₂ − λ₃)) and
//! √(10 (−λ₁ + λ₂ + λ₃)) of the inertia tensor's eigenvalues λ₁ ≥ λ₂ ≥ λ₃, negatives clipped to
//! 0), `solidity` (voxels / voxels of skimage's `convex_hull_image`, see [`super::hull3`]; inf
//! where skimage's hull fails, for objects whose voxel centres are coplanar), `extent` (volume /
//! bounding-box volume), and per intensity channel the [`super::INTENSITY_COLUMNS`].

use rayon::prelude::*;

use super::{Calibration, Table, assemble};
use crate::error::{Error, Result};
use crate::image::ImageView;

/// Names of the 3-D shape columns, in table order.
pub const SHAPE_COLUMNS_3D: [&str; 16] = [
    "label",
    "area",
    "centroid-0",
    "centroid-1",
    "centroid-2",
    "bbox-0",
    "bbox-1",
    "bbox-2",
    "bbox-3",
    "bbox-4",
    "bbox-5",
    "equivalent_diameter_area",
    "axis_major_length",
    "axis_minor_length",
    "solidity",
    "extent",
];

/// One object's voxel sums over its bounding box.
#[derive(Clone)]
struct Acc {
    label: u32,
    lo: [usize; 3],
    hi: [usize; 3], // exclusive
    n: i128,
    s: [i128; 3],
    ss: [[i128; 3]; 3],
    min: Vec<f64>,
    max: Vec<f64>,
}

/// Measures every object of a label volume (`planes × height × width`, z then y then x,
/// 0 = background). `intensity`: optional channels, each a volume of the same size.
/// `z_spacing` is the distance between planes in the calibration's unit. One row per label
/// present, ordered by label.
pub fn measure_volume(
    labels: &[u32],
    dims: [usize; 3],
    intensity: &[&[f32]],
    calibration: &Calibration,
    z_spacing: f64,
) -> Result<Table> {
    calibration.validate()?;
    if !(z_spacing.is_finite() && z_spacing > 0.0) {
        return Err(Error::invalid(format!(
            "z spacing must be a positive number, got {z_spacing}"
        )));
    }
    let [d, h, w] = dims;
    let n = d
        .checked_mul(h)
        .and_then(|v| v.checked_mul(w))
        .ok_or_else(|| Error::TooLarge(format!("{d}×{h}×{w} overflows")))?;
    if labels.len() != n {
        return Err(Error::shape(format!(
            "labels hold {} values, {d}×{h}×{w} needs {n}",
            labels.len()
        )));
    }
    for (k, c) in intensity.iter().enumerate() {
        if c.len() != n {
            return Err(Error::shape(format!(
                "intensity channel {k} holds {} values, the labels {d}×{h}×{w} = {n}",
                c.len()
            )));
        }
    }
    let accs = accumulate(labels, dims, intensity);
    let spacing = [z_spacing, calibration.pixel_height, calibration.pixel_width];
    let rows: Vec<([f64; 16], Vec<f64>)> = accs
        .par_iter()
        .map(|a| row(a, labels, dims, intensity, spacing))
        .collect();
    let cal = calibration.is_calibrated() || z_spacing != 1.0;
    let length = cal.then(|| calibration.unit.clone());
    let volume = cal.then(|| format!("{}^3", calibration.unit));
    let unit_of = |name: &str| match name {
        "area" => volume.clone(),
        "centroid-0"
        | "centroid-1"
        | "centroid-2"
        | "equivalent_diameter_area"
        | "axis_major_length"
        | "axis_minor_length" => length.clone(),
        _ => None,
    };
    Ok(assemble(
        &SHAPE_COLUMNS_3D,
        rows.len(),
        |r, i| rows[r].0[i],
        intensity.len(),
        |r, j| rows[r].1[j],
        unit_of,
    ))
}

/// Per-label sums in one pass over the volume (parallel over runs of planes, merged).
fn accumulate(labels: &[u32], dims: [usize; 3], intensity: &[&[f32]]) -> Vec<Acc> {
    let [d, h, w] = dims;
    let plane = h * w;
    let channels = intensity.len();
    let jobs = (2 * rayon::current_num_threads()).min(d).max(1);
    let per = d.div_ceil(jobs).max(1);
    let mut all: Vec<Acc> = (0..jobs)
        .into_par_iter()
        .map(|j| {
            let mut map: std::collections::HashMap<u32, Acc> = Default::default();
            for z in (j * per).min(d)..((j + 1) * per).min(d) {
                for y in 0..h {
                    for x in 0..w {
                        let i = z * plane + y * w + x;
                        let l = labels[i];
                        if l == 0 {
                            continue;
                        }
                        let a = map.entry(l).or_insert_with(|| Acc {
                            label: l,
                            lo: [z, y, x],
                            hi: [z + 1, y + 1, x + 1],
                            n: 0,
                            s: [0; 3],
                            ss: [[0; 3]; 3],
                            min: vec![f64::INFINITY; channels],
                            max: vec![f64::NEG_INFINITY; channels],
                        });
                        for ((lo, hi), c) in a.lo.iter_mut().zip(&mut a.hi).zip([z, y, x]) {
                            *lo = (*lo).min(c);
                            *hi = (*hi).max(c + 1);
                        }
                        a.n += 1;
                        let ci = [z as i128, y as i128, x as i128];
                        for p in 0..3 {
                            a.s[p] += ci[p];
                            for q in p..3 {
                                a.ss[p][q] += ci[p] * ci[q];
                            }
                        }
                        for (k, ch) in intensity.iter().enumerate() {
                            let v = f64::from(ch[i]);
                            a.min[k] = a.min[k].min(v);
                            a.max[k] = a.max[k].max(v);
                        }
                    }
                }
            }
            map.into_values().collect::<Vec<Acc>>()
        })
        .flatten()
        .collect();
    // Per-job sums of one label, merged (label order, then job order).
    all.sort_by_key(|a| a.label);
    let mut out: Vec<Acc> = Vec::with_capacity(all.len());
    for y in all {
        match out.last_mut() {
            Some(x) if x.label == y.label => {
                for k in 0..3 {
                    x.lo[k] = x.lo[k].min(y.lo[k]);
                    x.hi[k] = x.hi[k].max(y.hi[k]);
                    x.s[k] += y.s[k];
                    for q in 0..3 {
                        x.ss[k][q] += y.ss[k][q];
                    }
                }
                x.n += y.n;
                for c in 0..x.min.len() {
                    x.min[c] = x.min[c].min(y.min[c]);
                    x.max[c] = x.max[c].max(y.max[c]);
                }
            }
            _ => out.push(y),
        }
    }
    out
}

/// One object's row: the shape columns and, per channel, mean, min, max, std and sum.
fn row(
    a: &Acc,
    labels: &[u32],
    dims: [usize; 3],
    intensity: &[&[f32]],
    spacing: [f64; 3],
) -> ([f64; 16], Vec<f64>) {
    let [_, h, w] = dims;
    let nf = a.n as f64;
    let voxel = spacing[0] * spacing[1] * spacing[2];
    let area = nf * voxel;
    let mut centroid = [0.0; 3];
    for k in 0..3 {
        centroid[k] = a.s[k] as f64 / nf * spacing[k];
    }
    // Central moments of order 2 from exact integer sums, scaled as skimage's
    // `moments_central(..., spacing)`.
    let mut mu = [[0.0f64; 3]; 3];
    for p in 0..3 {
        for q in p..3 {
            let v = (a.n * a.ss[p][q] - a.s[p] * a.s[q]) as f64 / nf * spacing[p] * spacing[q];
            mu[p][q] = v;
            mu[q][p] = v;
        }
    }
    // skimage's `inertia_tensor`: diagonal (sum of the mu_kk) − own, off-diagonal −mu_pq, all
    // over mu000 (the voxel count).
    let trace = mu[0][0] + mu[1][1] + mu[2][2];
    let mut t = [[0.0f64; 3]; 3];
    for p in 0..3 {
        for q in 0..3 {
            t[p][q] = if p == q {
                (trace - mu[p][p]) / nf
            } else {
                -mu[p][q] / nf
            };
        }
    }
    let mut ev = eigvalsh3(t);
    for e in &mut ev {
        *e = e.max(0.0);
    }
    ev.sort_by(|x, y| y.total_cmp(x));
    let major = (10.0 * (ev[0] + ev[1] - ev[2])).max(0.0).sqrt();
    let minor = (10.0 * (-ev[0] + ev[1] + ev[2])).max(0.0).sqrt();
    let bbox_volume =
        ((a.hi[0] - a.lo[0]) * (a.hi[1] - a.lo[1]) * (a.hi[2] - a.lo[2])) as f64 * voxel;
    let bd = [a.hi[0] - a.lo[0], a.hi[1] - a.lo[1], a.hi[2] - a.lo[2]];
    let mut mask = Vec::with_capacity(bd[0] * bd[1] * bd[2]);
    for z in a.lo[0]..a.hi[0] {
        for y in a.lo[1]..a.hi[1] {
            let base = (z * h + y) * w;
            mask.extend((a.lo[2]..a.hi[2]).map(|x| labels[base + x] == a.label));
        }
    }
    // skimage: area / area_convex, numpy's division (inf for an empty convex image).
    let solidity = nf / super::hull3::convex_voxels(&mask, bd) as f64;
    let shape = [
        a.label as f64,
        area,
        centroid[0],
        centroid[1],
        centroid[2],
        a.lo[0] as f64,
        a.lo[1] as f64,
        a.lo[2] as f64,
        a.hi[0] as f64,
        a.hi[1] as f64,
        a.hi[2] as f64,
        (6.0 * area / std::f64::consts::PI).powf(1.0 / 3.0),
        major,
        minor,
        solidity,
        area / bbox_volume,
    ];
    let mut stats = Vec::with_capacity(intensity.len() * 5);
    if !intensity.is_empty() {
        // Values in voxel order over the box, for numpy's mean and population std.
        let mut values: Vec<Vec<f64>> = vec![Vec::with_capacity(a.n as usize); intensity.len()];
        for z in a.lo[0]..a.hi[0] {
            for y in a.lo[1]..a.hi[1] {
                let base = (z * h + y) * w;
                for x in a.lo[2]..a.hi[2] {
                    if labels[base + x] == a.label {
                        for (v, ch) in values.iter_mut().zip(intensity) {
                            v.push(f64::from(ch[base + x]));
                        }
                    }
                }
            }
        }
        for (k, v) in values.iter().enumerate() {
            let sum: f64 = v.iter().sum();
            let mean = sum / nf;
            let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / nf;
            let (min, max) = if v.iter().any(|x| x.is_nan()) {
                (f64::NAN, f64::NAN)
            } else {
                (a.min[k], a.max[k])
            };
            stats.extend([mean, min, max, var.sqrt(), sum]);
        }
    }
    (shape, stats)
}

/// Eigenvalues of a symmetric 3×3 matrix by cyclic Jacobi rotations (accurate to a few ulps of
/// the matrix norm; exact zeros in the off-diagonal stay exact).
fn eigvalsh3(mut a: [[f64; 3]; 3]) -> [f64; 3] {
    for _ in 0..50 {
        let off = a[0][1].abs() + a[0][2].abs() + a[1][2].abs();
        if off == 0.0 {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            if a[p][q] == 0.0 {
                continue;
            }
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let t = if theta == 0.0 { 1.0 } else { t };
            let c = 1.0 / (t * t + 1.0).sqrt();
            let s = t * c;
            let r = 3 - p - q;
            let (app, aqq, apq) = (a[p][p], a[q][q], a[p][q]);
            a[p][p] = app - t * apq;
            a[q][q] = aqq + t * apq;
            a[p][q] = 0.0;
            a[q][p] = 0.0;
            let (arp, arq) = (a[r][p], a[r][q]);
            a[r][p] = c * arp - s * arq;
            a[p][r] = a[r][p];
            a[r][q] = s * arp + c * arq;
            a[q][r] = a[r][q];
        }
    }
    [a[0][0], a[1][1], a[2][2]]
}

/// [`measure_volume`] of a label stack (`dims` = planes, height, width) with the intensity
/// stack's channels, each gathered into a volume (`stack`: same planes and size, or none).
pub fn measure_stack(
    labels: &[u32],
    dims: [usize; 3],
    stack: Option<&crate::image::Stack>,
    calibration: &Calibration,
    z_spacing: f64,
) -> Result<Table> {
    let views: Vec<ImageView<'_>> = match stack {
        Some(s) => s.planes.iter().map(|p| p.view()).collect::<Result<_>>()?,
        None => Vec::new(),
    };
    measure_planes(labels, dims, &views, calibration, z_spacing)
}

/// [`measure_volume`] of a label stack (`dims` = planes, height, width) with the channels of
/// an intensity stack given as one view per plane (all planes, or none for shape only).
pub fn measure_planes(
    labels: &[u32],
    dims: [usize; 3],
    planes: &[ImageView<'_>],
    calibration: &Calibration,
    z_spacing: f64,
) -> Result<Table> {
    if !planes.is_empty() && planes.len() != dims[0] {
        return Err(Error::shape(format!(
            "{} intensity planes for {} label planes",
            planes.len(),
            dims[0]
        )));
    }
    let mut channels: Vec<Vec<f32>> = Vec::new();
    for view in planes {
        if (view.height, view.width) != (dims[1], dims[2]) {
            return Err(Error::shape(format!(
                "intensity planes of {}×{} for labels of {}×{}",
                view.height, view.width, dims[1], dims[2]
            )));
        }
        channels.resize(view.channels, Vec::new());
        for (c, out) in channels.iter_mut().enumerate() {
            out.extend(view.plane(c));
        }
    }
    let refs: Vec<&[f32]> = channels.iter().map(Vec::as_slice).collect();
    measure_volume(labels, dims, &refs, calibration, z_spacing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_finds_known_eigenvalues() {
        let mut ev = eigvalsh3([[2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 5.0]]);
        ev.sort_by(|x, y| y.total_cmp(x));
        for (g, w) in ev.iter().zip([5.0, 3.0, 1.0]) {
            assert!((g - w).abs() < 1e-12, "{ev:?}");
        }
        let mut ev = eigvalsh3([[4.0, 1.0, 2.0], [1.0, 3.0, 0.5], [2.0, 0.5, 6.0]]);
        ev.sort_by(|x, y| y.total_cmp(x));
        // Trace and determinant are kept.
        assert!((ev.iter().sum::<f64>() - 13.0).abs() < 1e-12);
        let det = 4.0 * (18.0 - 0.25) - 1.0 * (6.0 - 1.0) + 2.0 * (0.5 - 6.0);
        assert!((ev.iter().product::<f64>() - det).abs() < 1e-9);
    }

    #[test]
    fn a_box_measures_as_a_box() {
        // A 2×3×4 box of label 7 in a 4×5×6 volume, voxels 2 × 0.5 × 0.5.
        let (d, h, w) = (4usize, 5usize, 6usize);
        let mut l = vec![0u32; d * h * w];
        for z in 1..3 {
            for y in 1..4 {
                for x in 1..5 {
                    l[(z * h + y) * w + x] = 7;
                }
            }
        }
        let cal = Calibration::square(0.5, "um");
        let t = measure_volume(&l, [d, h, w], &[], &cal, 2.0).unwrap();
        let v = |name: &str| t.column(name).unwrap().values[0];
        assert_eq!(v("label"), 7.0);
        assert_eq!(v("area"), 24.0 * 0.5);
        assert_eq!(v("centroid-0"), 1.5 * 2.0);
        assert_eq!(v("bbox-5"), 5.0);
        assert_eq!(v("extent"), 1.0);
        assert!(measure_volume(&l, [d, h, w + 1], &[], &cal, 1.0).is_err());
        assert!(measure_volume(&l, [d, h, w], &[], &cal, 0.0).is_err());
    }
}
