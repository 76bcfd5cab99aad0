//! Flow quality control: Cellpose 4's `flow_error` and `remove_bad_flow_masks`.
//!
//! Flows are recomputed from the masks by diffusion; a mask whose mean squared difference to the
//! network's flows (divided by 5) exceeds the threshold is removed.

use rayon::prelude::*;

use super::diffusion::Diffusion;
use super::labels::{
    BoundingBox, apply_map, find_objects, first_appearance_map, label_stats, max_label,
};
use crate::error::Result;

/// numpy's pairwise summation of float64 (`np.add.reduce` on a contiguous array), which is what
/// `ndarray.mean()` sums with: blocks of up to 128 values summed with 8 interleaved accumulators,
/// larger inputs split in two at a multiple of 8.
pub(crate) fn numpy_pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &v in a {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - (n % 8) {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        numpy_pairwise_sum(&a[..n2]) + numpy_pairwise_sum(&a[n2..])
    }
}

/// Mean squared flow error of each label 1..=max (`NaN` for absent labels), as `flow_error`.
pub(crate) fn flow_errors(
    labels: &[u32],
    dy: &[f32],
    dx: &[f32],
    height: usize,
    width: usize,
) -> Result<Vec<f64>> {
    errors_in_boxes(
        labels,
        dy,
        dx,
        height,
        width,
        find_objects(labels, height, width),
    )
}

/// [`flow_errors`] with the bounding boxes of labels 1..=max already known.
fn errors_in_boxes(
    labels: &[u32],
    dy: &[f32],
    dx: &[f32],
    height: usize,
    width: usize,
    boxes: Vec<Option<BoundingBox>>,
) -> Result<Vec<f64>> {
    let diffusion = Diffusion::run_in_boxes(labels, height, width, boxes, 0)?;
    Ok(diffusion
        .boxes
        .par_iter()
        .enumerate()
        .map_init(Vec::new, |buf: &mut Vec<f64>, (i, b)| {
            let Some((y0, y1, x0, x1)) = *b else {
                return f64::NAN;
            };
            let label = i as u32 + 1;
            buf.clear();
            for y in y0..y1 {
                for x in x0..x1 {
                    let k = y * width + x;
                    if labels[k] == label {
                        let (my, mx) = diffusion.flow_at(y, x);
                        let ey = my - (dy[k] / 5.0) as f64;
                        let ex = mx - (dx[k] / 5.0) as f64;
                        buf.push(ey * ey + ex * ex);
                    }
                }
            }
            numpy_pairwise_sum(buf) / buf.len() as f64
        })
        .collect())
}

/// What flow quality control found: masks before it, masks it removed, and the flow errors of
/// the masks it kept (for the per-image QC measures).
#[derive(Debug, Clone, Default)]
pub(crate) struct FlowQcStats {
    /// Masks found before flow QC.
    pub masks: u32,
    /// Masks removed (error above the threshold).
    pub removed: u32,
    /// Flow errors of the kept masks.
    pub kept_errors: Vec<f64>,
}

impl FlowQcStats {
    /// Adds another plane's findings.
    pub fn merge(&mut self, other: FlowQcStats) {
        self.masks += other.masks;
        self.removed += other.removed;
        self.kept_errors.extend(other.kept_errors);
    }
}

/// Removes masks whose flow error exceeds `threshold`, then renumbers (`remove_bad_flow_masks`).
pub(crate) fn remove_bad_flow_masks(
    labels: &mut [u32],
    dy: &[f32],
    dx: &[f32],
    height: usize,
    width: usize,
    threshold: f64,
) -> Result<FlowQcStats> {
    // One scan gives the boxes for the diffusion and the first appearances for renumbering.
    let st = label_stats(labels, width, max_label(labels));
    let errors = errors_in_boxes(labels, dy, dx, height, width, st.boxes[1..].to_vec())?;
    // Masks at or under the threshold, numbered 1..n by first appearance (`fastremap.renumber`);
    // kept unless the error is above the threshold (as Cellpose's `error > threshold`).
    let keep =
        |l: usize| errors[l - 1].partial_cmp(&threshold) != Some(std::cmp::Ordering::Greater);
    let (map, kept) = first_appearance_map(&st, keep);
    let masks = (1..st.counts.len()).filter(|&l| st.counts[l] > 0).count() as u32;
    let kept_errors = (1..st.counts.len())
        .filter(|&l| st.counts[l] > 0 && keep(l))
        .map(|l| errors[l - 1])
        .collect();
    apply_map(labels, &map);
    Ok(FlowQcStats {
        masks,
        removed: masks - kept,
        kept_errors,
    })
}

#[cfg(test)]
mod tests {
    use super::numpy_pairwise_sum;

    #[test]
    fn pairwise_sum_matches_naive_on_exact_values() {
        let v: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        assert_eq!(numpy_pairwise_sum(&v), 499_500.0);
        assert_eq!(numpy_pairwise_sum(&[]), 0.0);
    }
}
