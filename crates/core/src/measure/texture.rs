//! Texture of each object: Haralick statistics of its grey-level co-occurrence matrix (GLCM),
//! as scikit-image 0.26's `graycomatrix` / `graycoprops` define them, per intensity channel.
//!
//! Definition (reproduced exactly by `tests/parity/make_texture_fixtures.py`):
//!
//! * **Quantisation** to [`TEXTURE_LEVELS`] (32) grey levels over the *object's own* range:
//!   with `lo`, `hi` the minimum and maximum of the channel over the object's pixels,
//!   `q = min(31, floor((v − lo) · 32 / (hi − lo)))`, and `q = 0` everywhere when `hi == lo`.
//!   The object's range makes texture independent of the object's brightness and contrast.
//! * **Pairs**: distance 1 at angles 0°, 45°, 90° and 135° (offsets (0, 1), (1, 1), (1, 0),
//!   (1, −1) in (row, column)); a pair counts only when *both* pixels belong to the object.
//! * **Symmetric**: each pair counts as (i, j) and (j, i); each angle's matrix is then
//!   normalised to sum 1.
//! * **Properties** per angle, then averaged over the angles that have at least one pair:
//!   contrast Σ p·(i−j)², dissimilarity Σ p·|i−j|, homogeneity Σ p/(1+(i−j)²), ASM Σ p²,
//!   energy √ASM, correlation Σ p·(i−μᵢ)(j−μⱼ)/(σᵢσⱼ) (1 when σᵢ or σⱼ < 1e−15, as skimage).
//! * An object without any pair (a single pixel) has contrast 0, dissimilarity 0,
//!   homogeneity 1, ASM 1, energy 1 and correlation 1 (the values of a constant patch).
//!   A NaN pixel in the object makes all six NaN.
//!
//! In skimage this is: pixels outside the object mapped to an extra level 32,
//! `graycomatrix(q, [1], [0, π/4, π/2, 3π/4], levels=33, symmetric=True, normed=False)`,
//! the matrix cut to `[:32, :32]` (dropping every pair with an outside pixel), `graycoprops`
//! on it, and the mean over the angles whose cut matrix is not empty.

use rayon::prelude::*;

use super::{Column, Extent, Table, find_objects};
use crate::error::Result;
use crate::image::ImageView;

/// Grey levels of the quantised object (see the module documentation).
pub const TEXTURE_LEVELS: usize = 32;

/// Names of the texture properties, in table order (channel suffix `-k` appended when the image
/// has more than one channel).
pub const TEXTURE_COLUMNS: [&str; 6] = [
    "texture_contrast",
    "texture_dissimilarity",
    "texture_homogeneity",
    "texture_ASM",
    "texture_energy",
    "texture_correlation",
];

/// (row, column) offsets of the four angles 0°, 45°, 90°, 135° at distance 1.
const OFFSETS: [(isize, isize); 4] = [(0, 1), (1, 1), (1, 0), (1, -1)];

/// The six [`TEXTURE_COLUMNS`] of one patch: `values` and `mask` are `h × w` row-major; only
/// pixels where `mask` is true belong to the object.
pub fn glcm_properties(values: &[f64], mask: &[bool], h: usize, w: usize) -> [f64; 6] {
    const L: usize = TEXTURE_LEVELS;
    let inside = || {
        values
            .iter()
            .zip(mask)
            .filter(|(_, m)| **m)
            .map(|(v, _)| *v)
    };
    if inside().any(f64::is_nan) {
        return [f64::NAN; 6];
    }
    let lo = inside().fold(f64::INFINITY, f64::min);
    let hi = inside().fold(f64::NEG_INFINITY, f64::max);
    let q: Vec<usize> = values
        .iter()
        .map(|&v| {
            if hi > lo {
                (((v - lo) * L as f64 / (hi - lo)).floor().max(0.0) as usize).min(L - 1)
            } else {
                0
            }
        })
        .collect();
    let mut sums = [0.0f64; 6];
    let mut angles = 0usize;
    let mut counts = vec![0u64; L * L];
    for (dr, dc) in OFFSETS {
        counts.iter_mut().for_each(|c| *c = 0);
        let mut total = 0u64;
        for r in 0..h {
            let r2 = r as isize + dr;
            if r2 < 0 || r2 >= h as isize {
                continue;
            }
            for c in 0..w {
                let c2 = c as isize + dc;
                if c2 < 0 || c2 >= w as isize {
                    continue;
                }
                let (a, b) = (r * w + c, r2 as usize * w + c2 as usize);
                if mask[a] && mask[b] {
                    counts[q[a] * L + q[b]] += 1;
                    counts[q[b] * L + q[a]] += 1;
                    total += 2;
                }
            }
        }
        if total == 0 {
            continue;
        }
        angles += 1;
        let t = total as f64;
        let (mut mi, mut mj) = (0.0, 0.0);
        let (mut con, mut dis, mut hom, mut asm) = (0.0, 0.0, 0.0, 0.0);
        for i in 0..L {
            for j in 0..L {
                let p = counts[i * L + j] as f64 / t;
                let d = i as f64 - j as f64;
                con += p * d * d;
                dis += p * d.abs();
                hom += p / (1.0 + d * d);
                asm += p * p;
                mi += i as f64 * p;
                mj += j as f64 * p;
            }
        }
        let (mut vi, mut vj, mut cov) = (0.0, 0.0, 0.0);
        for i in 0..L {
            for j in 0..L {
                let p = counts[i * L + j] as f64 / t;
                let (di, dj) = (i as f64 - mi, j as f64 - mj);
                vi += p * di * di;
                vj += p * dj * dj;
                cov += p * di * dj;
            }
        }
        let (si, sj) = (vi.sqrt(), vj.sqrt());
        let corr = if si < 1e-15 || sj < 1e-15 {
            1.0
        } else {
            cov / (si * sj)
        };
        for (s, v) in sums.iter_mut().zip([con, dis, hom, asm, asm.sqrt(), corr]) {
            *s += v;
        }
    }
    if angles == 0 {
        return [0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
    }
    sums.map(|s| s / angles as f64)
}

fn object_texture(e: &Extent, labels: &[u32], width: usize, planes: &[Vec<f32>]) -> Vec<f64> {
    let (h, w) = (e.r1 - e.r0, e.c1 - e.c0);
    let mut mask = vec![false; h * w];
    for r in 0..h {
        let base = (e.r0 + r) * width + e.c0;
        for c in 0..w {
            mask[r * w + c] = labels[base + c] == e.label;
        }
    }
    let mut out = Vec::with_capacity(planes.len() * TEXTURE_COLUMNS.len());
    let mut values = vec![0.0f64; h * w];
    for plane in planes {
        for r in 0..h {
            let base = (e.r0 + r) * width + e.c0;
            for c in 0..w {
                values[r * w + c] = plane[base + c] as f64;
            }
        }
        out.extend(glcm_properties(&values, &mask, h, w));
    }
    out
}

/// Texture of every object of `labels` (row-major, `height × width`, 0 = background) on every
/// channel of `image`: columns `label`, then the [`TEXTURE_COLUMNS`] per channel (suffixed
/// `-k` when the image has several channels); one row per label present, ordered by label,
/// the same rows as [`super::measure`].
pub fn texture(
    labels: &[u32],
    height: usize,
    width: usize,
    image: &ImageView<'_>,
) -> Result<Table> {
    super::check_sizes(labels, height, width, Some(image))?;
    let planes: Vec<Vec<f32>> = (0..image.channels).map(|c| image.plane(c)).collect();
    let objects = find_objects(labels, height, width);
    let rows: Vec<Vec<f64>> = objects
        .par_iter()
        .map(|e| object_texture(e, labels, width, &planes))
        .collect();
    let mut columns = vec![Column {
        name: "label".into(),
        unit: None,
        values: objects.iter().map(|e| e.label as f64).collect(),
    }];
    let k = TEXTURE_COLUMNS.len();
    for ch in 0..planes.len() {
        for (j, name) in TEXTURE_COLUMNS.iter().enumerate() {
            columns.push(Column {
                name: if planes.len() > 1 {
                    format!("{name}-{ch}")
                } else {
                    name.to_string()
                },
                unit: None,
                values: rows.iter().map(|r| r[ch * k + j]).collect(),
            });
        }
    }
    Ok(Table { columns })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_and_single_pixel_patches() {
        let v = [5.0; 6];
        let m = [true; 6];
        assert_eq!(
            glcm_properties(&v, &m, 2, 3),
            [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
        );
        let m1 = [true, false, false, false, false, false];
        assert_eq!(
            glcm_properties(&v, &m1, 2, 3),
            [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
        );
        let nan = [f64::NAN, 1.0, 2.0, 3.0, 4.0, 5.0];
        assert!(glcm_properties(&nan, &m, 2, 3).iter().all(|x| x.is_nan()));
    }

    #[test]
    fn checkerboard_has_maximal_contrast_horizontally() {
        // 0/1 checkerboard: levels 0 and 31; horizontal and vertical pairs always differ,
        // diagonal pairs never do.
        let v: Vec<f64> = (0..16).map(|i| ((i / 4 + i % 4) % 2) as f64).collect();
        let p = glcm_properties(&v, &[true; 16], 4, 4);
        let expected_contrast = (2.0 * 31.0 * 31.0) / 4.0;
        assert!((p[0] - expected_contrast).abs() < 1e-9, "{p:?}");
        assert!(
            (p[5] - 0.0).abs() < 1e-12,
            "correlation (+1 twice, −1 twice): {p:?}"
        );
    }
}
