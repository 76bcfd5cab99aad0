//! Boundary precision, recall and F-score exactly as `cellpose.metrics.boundary_scores`.
//!
//! * Outlines are those of `cellpose.utils.masks_to_outlines`: for every label, the pixels of
//!   `cv2.findContours(RETR_EXTERNAL, CHAIN_APPROX_NONE)` on the label's bounding box, i.e. the
//!   label's pixels that have a 4-neighbour in the background region connected to the outside
//!   of the box (objects nested inside a hole of the same label are skipped, as OpenCV does).
//! * The outlines are "dilated" by `scipy.ndimage.convolve(outlines_bool, disk_float32)` with
//!   reflect padding. The output keeps the input's boolean type, and SciPy stores the float sum
//!   into a byte, so a pixel is set when the number of outline pixels under the disk is not a
//!   multiple of 256 (this only differs from a plain dilation for large disks over dense
//!   outlines); the counts include reflected outline pixels, as SciPy's do.
//! * The disk radius is `max(1, scale * diam)` with `diam = utils.diameters(truth)[0]`.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};

use super::overlap::compact;

/// `cellpose.metrics.boundary_scores` output, indexed `[scale][image]` like cellpose's arrays.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BoundaryScores {
    /// Boundary precision `tp / (tp + fp)` (NaN for 0/0).
    pub precision: Vec<Vec<f64>>,
    /// Boundary recall `tp / (tp + fn)` (NaN for 0/0).
    pub recall: Vec<Vec<f64>>,
    /// `2 P R / (P + R)` (NaN for 0/0).
    pub fscore: Vec<Vec<f64>>,
}

/// `cellpose.utils.masks_to_outlines` for a 2-D label image: `true` on the outer contour
/// pixels of every label.
pub fn masks_to_outlines(masks: ArrayView2<'_, u32>) -> Array2<bool> {
    let (h, w) = masks.dim();
    let labels: Vec<u32> = masks.iter().copied().collect();
    let out = outlines(&labels, h, w);
    Array2::from_shape_vec((h, w), out).unwrap_or_else(|_| Array2::from_elem((h, w), false))
}

fn outlines(labels: &[u32], h: usize, w: usize) -> Vec<bool> {
    let c = compact(labels);
    let n = c.ids.len();
    let mut out = vec![false; h * w];
    if n == 0 {
        return out;
    }
    // Bounding boxes (inclusive) per compact index.
    let mut bb = vec![(usize::MAX, 0usize, usize::MAX, 0usize); n + 1];
    for y in 0..h {
        for x in 0..w {
            let k = c.index[y * w + x] as usize;
            if k != 0 {
                let b = &mut bb[k];
                b.0 = b.0.min(y);
                b.1 = b.1.max(y);
                b.2 = b.2.min(x);
                b.3 = b.3.max(x);
            }
        }
    }
    let mut outer: Vec<bool> = Vec::new();
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for (k, &(y0, y1, x0, x1)) in bb.iter().enumerate().skip(1) {
        let k = k as u32;
        // Framed box: one background pixel on every side, as OpenCV pads.
        let fh = y1 - y0 + 3;
        let fw = x1 - x0 + 3;
        let is_label = |fy: usize, fx: usize| {
            fy >= 1
                && fy <= fh - 2
                && fx >= 1
                && fx <= fw - 2
                && c.index[(y0 + fy - 1) * w + x0 + fx - 1] == k
        };
        outer.clear();
        outer.resize(fh * fw, false);
        outer[0] = true;
        stack.push((0, 0));
        while let Some((fy, fx)) = stack.pop() {
            let mut visit = |yy: usize, xx: usize, outer: &mut Vec<bool>| {
                if !outer[yy * fw + xx] && !is_label(yy, xx) {
                    outer[yy * fw + xx] = true;
                    stack.push((yy, xx));
                }
            };
            if fy > 0 {
                visit(fy - 1, fx, &mut outer);
            }
            if fy + 1 < fh {
                visit(fy + 1, fx, &mut outer);
            }
            if fx > 0 {
                visit(fy, fx - 1, &mut outer);
            }
            if fx + 1 < fw {
                visit(fy, fx + 1, &mut outer);
            }
        }
        for fy in 1..fh - 1 {
            for fx in 1..fw - 1 {
                if is_label(fy, fx)
                    && (outer[(fy - 1) * fw + fx]
                        || outer[(fy + 1) * fw + fx]
                        || outer[fy * fw + fx - 1]
                        || outer[fy * fw + fx + 1])
                {
                    out[(y0 + fy - 1) * w + x0 + fx - 1] = true;
                }
            }
        }
    }
    out
}

/// √π / 2 exactly as Python computes `(np.pi**0.5) / 2`.
fn half_sqrt_pi() -> f64 {
    f64::from_bits(0x3FFC_5BF8_91B4_EF6A) / 2.0
}

/// `cellpose.utils.diameters(masks)[0]`: the median of √area over the labels, divided by
/// √π/2. Like cellpose, labels are cast to int32 and the smallest value (normally background 0)
/// is dropped; 0 when no label remains.
pub fn median_diameter(masks: ArrayView2<'_, u32>) -> f64 {
    let labels: Vec<u32> = masks.iter().copied().collect();
    median_diameter_of(&labels)
}

fn median_diameter_of(labels: &[u32]) -> f64 {
    let c = compact(labels);
    let mut counts = vec![0u64; c.ids.len() + 1];
    for &k in &c.index {
        counts[k as usize] += 1;
    }
    let mut entries: Vec<(i32, u64)> = Vec::with_capacity(c.ids.len() + 1);
    if counts[0] > 0 {
        entries.push((0, counts[0]));
    }
    for (k, &id) in c.ids.iter().enumerate() {
        entries.push((id as i32, counts[k + 1]));
    }
    entries.sort_unstable_by_key(|e| e.0);
    let mut roots: Vec<f64> = entries
        .iter()
        .skip(1)
        .map(|e| (e.1 as f64).sqrt())
        .collect();
    let md = if roots.is_empty() {
        0.0
    } else {
        roots.sort_unstable_by(f64::total_cmp);
        let n = roots.len();
        if n % 2 == 1 {
            roots[n / 2]
        } else {
            (roots[n / 2 - 1] + roots[n / 2]) / 2.0
        }
    };
    md / half_sqrt_pi()
}

/// `scipy.ndimage` "reflect" boundary: `d c b a | a b c d | d c b a`, repeated.
fn reflect(i: isize, n: usize) -> usize {
    let n2 = 2 * n as isize;
    let m = i.rem_euclid(n2) as usize;
    if m < n { m } else { 2 * n - 1 - m }
}

/// Whether each pixel's count of outline pixels within distance `d` (reflect padding) is
/// non-zero modulo 256: SciPy's bool-typed `convolve` with the cellpose disk.
fn dilate(outline: &[bool], h: usize, w: usize, d: f64) -> Vec<bool> {
    if h == 0 || w == 0 {
        return Vec::new();
    }
    let r = d.ceil() as usize;
    // Half-width of the disk row at |dy|, if the row is not empty.
    let half: Vec<Option<usize>> = (0..=r)
        .map(|dy| {
            (0..=r)
                .rev()
                .find(|&dx| (((dy * dy + dx * dx) as f64).sqrt()) <= d)
        })
        .collect();
    let ext = w + 2 * r + 1;
    let mut prefix = vec![0u32; h * ext];
    for y in 0..h {
        let row = &outline[y * w..(y + 1) * w];
        let p = &mut prefix[y * ext..(y + 1) * ext];
        for e in 0..w + 2 * r {
            let x = reflect(e as isize - r as isize, w);
            p[e + 1] = p[e] + u32::from(row[x]);
        }
    }
    let mut out = vec![false; h * w];
    out.par_chunks_mut(w.max(1))
        .enumerate()
        .for_each(|(y, orow)| {
            let mut counts = vec![0u32; w];
            for dy in -(r as isize)..=(r as isize) {
                let Some(hw) = half[dy.unsigned_abs()] else {
                    continue;
                };
                let src = reflect(y as isize + dy, h);
                let p = &prefix[src * ext..(src + 1) * ext];
                for (x, cnt) in counts.iter_mut().enumerate() {
                    *cnt += p[x + r + hw + 1] - p[x + r - hw];
                }
            }
            for (o, &cnt) in orow.iter_mut().zip(&counts) {
                *o = cnt % 256 != 0;
            }
        });
    out
}

/// `cellpose.metrics.boundary_scores(masks_true, masks_pred, scales)` for 2-D label images.
///
/// Errors when the lists differ in length or an image pair differs in shape.
pub fn boundary_scores(
    masks_true: &[ArrayView2<'_, u32>],
    masks_pred: &[ArrayView2<'_, u32>],
    scales: &[f64],
) -> Result<BoundaryScores> {
    if masks_true.len() != masks_pred.len() {
        return Err(Error::invalid(format!(
            "boundary_scores needs as many predictions as ground truths ({} vs {})",
            masks_true.len(),
            masks_pred.len()
        )));
    }
    for (k, (t, p)) in masks_true.iter().zip(masks_pred).enumerate() {
        if t.dim() != p.dim() {
            return Err(Error::shape(format!(
                "image {k}: ground truth is {:?} but prediction is {:?}",
                t.dim(),
                p.dim()
            )));
        }
    }
    // per_image[n][j] = (precision, recall)
    let per_image: Vec<Vec<(f64, f64)>> = masks_true
        .par_iter()
        .zip(masks_pred.par_iter())
        .map(|(t, p)| {
            let (h, w) = t.dim();
            let tl: Vec<u32> = t.iter().copied().collect();
            let pl: Vec<u32> = p.iter().copied().collect();
            let diam = median_diameter_of(&tl);
            let ot = outlines(&tl, h, w);
            let op = outlines(&pl, h, w);
            scales
                .iter()
                .map(|&scale| {
                    let x = scale * diam;
                    let d = if x > 1.0 { x } else { 1.0 };
                    let dt = dilate(&ot, h, w, d);
                    let dp = dilate(&op, h, w, d);
                    let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
                    for (&a, &b) in dt.iter().zip(&dp) {
                        tp += u64::from(a && b);
                        fp += u64::from(!a && b);
                        fn_ += u64::from(a && !b);
                    }
                    (tp as f64 / (tp + fp) as f64, tp as f64 / (tp + fn_) as f64)
                })
                .collect()
        })
        .collect();
    let mut out = BoundaryScores {
        precision: Vec::with_capacity(scales.len()),
        recall: Vec::with_capacity(scales.len()),
        fscore: Vec::with_capacity(scales.len()),
    };
    for j in 0..scales.len() {
        let p: Vec<f64> = per_image.iter().map(|v| v[j].0).collect();
        let r: Vec<f64> = per_image.iter().map(|v| v[j].1).collect();
        out.fscore.push(
            p.iter()
                .zip(&r)
                .map(|(&p, &r)| 2.0 * p * r / (p + r))
                .collect(),
        );
        out.precision.push(p);
        out.recall.push(r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn outlines_of_a_ring_skip_the_nested_island() {
        let m = array![
            [1u32, 1, 1, 1, 1],
            [1, 0, 0, 0, 1],
            [1, 0, 1, 0, 1],
            [1, 0, 0, 0, 1],
            [1, 1, 1, 1, 1],
        ];
        let o = masks_to_outlines(m.view());
        // The ring is all outline; the island inside the hole is not external.
        assert!(!o[[2, 2]]);
        assert!(o[[0, 0]] && o[[4, 4]] && o[[1, 0]]);
        let filled = array![[2u32, 2, 2], [2, 2, 2], [2, 2, 2]];
        let o = masks_to_outlines(filled.view());
        assert!(!o[[1, 1]] && o[[0, 1]]);
    }

    #[test]
    fn reflect_matches_scipy() {
        let got: Vec<usize> = (-9..9).map(|i| reflect(i, 4)).collect();
        assert_eq!(
            got,
            vec![0, 0, 1, 2, 3, 3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0, 0]
        );
        assert_eq!(reflect(-3, 1), 0);
    }

    #[test]
    fn diameter_and_scores() {
        let z = Array2::<u32>::zeros((8, 8));
        assert_eq!(median_diameter(z.view()), 0.0);
        let mut t = Array2::<u32>::zeros((16, 16));
        for y in 2..8 {
            for x in 2..8 {
                t[[y, x]] = 4;
            }
        }
        let s = boundary_scores(&[t.view()], &[t.view()], &[1.0]).unwrap();
        assert_eq!(s.precision[0][0], 1.0);
        assert_eq!(s.fscore[0][0], 1.0);
        let s = boundary_scores(&[z.view()], &[z.view()], &[1.0]).unwrap();
        assert!(s.precision[0][0].is_nan());
        let empty = Array2::<u32>::zeros((0, 5));
        let s = boundary_scores(&[empty.view()], &[empty.view()], &[1.0]).unwrap();
        assert!(s.recall[0][0].is_nan());
        let small = Array2::<u32>::zeros((4, 8));
        assert!(boundary_scores(&[t.view()], &[small.view()], &[1.0]).is_err());
    }
}
