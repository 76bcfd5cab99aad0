//! Object metrics exactly as `cellpose.metrics` (cellpose 4.2.1.1) computes them.
//!
//! Cellpose works in the raw label space: the IoU matrix has one row per label `1..=max(truth)`
//! and one column per label `1..=max(pred)`, absent labels included, and object counts come
//! from `len(np.unique(masks)) - 1` (which undercounts by one when an image has no background
//! pixel). IoUs are float64 and compared with float64 thresholds. These functions keep all of
//! those conventions; see [`crate::metrics::stardist`] for the relabelled float32 variant.

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};

use super::assign::{Components, SparseAssigner, max_matching, scipy_lsap};
use super::numeric::fixed;
use super::overlap::{LabelOverlap, NONE};
use super::stardist::EXACT_ASSIGNMENT_LIMIT;

/// Largest ground-truth label accepted by [`mask_ious`] (its outputs have one entry per label
/// `1..=max`, as in cellpose).
pub const MAX_MASK_IOUS_LABEL: u32 = 1 << 28;

/// `cellpose.metrics.average_precision` for one image: one value per threshold, float32 as
/// cellpose returns them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AveragePrecision {
    /// `tp / (tp + fp + fn)` per threshold (NaN when there are no objects at all).
    pub ap: Vec<f32>,
    /// True positives per threshold.
    pub tp: Vec<f32>,
    /// False positives per threshold: `n_pred - tp`.
    pub fp: Vec<f32>,
    /// False negatives per threshold: `n_true - tp`.
    #[serde(rename = "fn")]
    pub fn_: Vec<f32>,
}

/// `cellpose.metrics.mask_ious`: for every ground-truth label `l` in `1..=max(truth)` (index
/// `l - 1`), the prediction it is assigned to and their IoU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaskIous {
    /// IoU of the pair assigned to each true label (0 when unassigned or not overlapping).
    pub iout: Vec<f64>,
    /// Predicted label assigned to each true label, 0 when unassigned.
    pub preds: Vec<u32>,
}

/// Cellpose's IoU of a pair: float64 `overlap / (area_true + area_pred - overlap)`.
fn iou(ov: &LabelOverlap, k: usize) -> f64 {
    let p = ov.pairs()[k];
    let at = ov.true_areas()[p.true_index as usize];
    let ap = ov.pred_areas()[p.pred_index as usize];
    p.count as f64 / (at + ap - p.count) as f64
}

/// `len(np.unique(masks)) - 1`.
fn unique_minus_one(n_labels: usize, background: u64) -> i64 {
    n_labels as i64 + i64::from(background > 0) - 1
}

/// `cellpose.metrics.average_precision` for one image pair at the given IoU thresholds.
pub fn average_precision(
    y_true: &[u32],
    y_pred: &[u32],
    thresholds: &[f64],
) -> Result<AveragePrecision> {
    let ov = LabelOverlap::new(y_true, y_pred)?;
    Ok(average_precision_from_overlap(&ov, thresholds))
}

/// `cellpose.metrics.average_precision` for a list of image pairs (computed in parallel); one
/// [`AveragePrecision`] per image.
pub fn average_precision_dataset(
    ys_true: &[&[u32]],
    ys_pred: &[&[u32]],
    thresholds: &[f64],
) -> Result<Vec<AveragePrecision>> {
    if ys_true.len() != ys_pred.len() {
        return Err(Error::invalid(format!(
            "metrics.average_precision requires len(masks_true)==len(masks_pred) ({} vs {})",
            ys_true.len(),
            ys_pred.len()
        )));
    }
    ys_true
        .par_iter()
        .zip(ys_pred.par_iter())
        .enumerate()
        .map(|(k, (t, p))| {
            average_precision(t, p, thresholds).map_err(|e| match e {
                Error::ShapeMismatch(m) => Error::shape(format!("image {k}: {m}")),
                other => other,
            })
        })
        .collect()
}

/// [`average_precision`] on an overlap table computed beforehand.
pub fn average_precision_from_overlap(ov: &LabelOverlap, thresholds: &[f64]) -> AveragePrecision {
    let n_true = unique_minus_one(ov.true_labels().len(), ov.true_background());
    let n_pred = unique_minus_one(ov.pred_labels().len(), ov.pred_background());
    let ious: Vec<f64> = (0..ov.pairs().len()).map(|k| iou(ov, k)).collect();
    let n_rows = ov.true_labels().len();
    let mut ptr = vec![0usize; n_rows + 1];
    let mut adj = Vec::with_capacity(ious.len());
    let mut out = AveragePrecision {
        ap: Vec::with_capacity(thresholds.len()),
        tp: Vec::with_capacity(thresholds.len()),
        fp: Vec::with_capacity(thresholds.len()),
        fn_: Vec::with_capacity(thresholds.len()),
    };
    for &th in thresholds {
        let tp = if n_pred <= 0 {
            0
        } else if 0.0 >= th {
            // Every pair of the raw label space passes, absent labels included.
            ov.max_true_label().min(ov.max_pred_label()) as usize
        } else {
            // Pairs are sorted by true index, so one pass builds the CSR adjacency.
            adj.clear();
            let mut k = 0;
            for r in 0..n_rows {
                for p in ov.pairs_of_true(r) {
                    if ious[k] >= th {
                        adj.push(p.pred_index);
                    }
                    k += 1;
                }
                ptr[r + 1] = adj.len();
            }
            max_matching(n_rows, ov.pred_labels().len(), &ptr, &adj)
        };
        let tp32 = tp as f32;
        let fp32 = (n_pred as f64 - tp32 as f64) as f32;
        let fn32 = (n_true as f64 - tp32 as f64) as f32;
        out.ap.push(tp32 / (tp32 + fp32 + fn32));
        out.tp.push(tp32);
        out.fp.push(fp32);
        out.fn_.push(fn32);
    }
    out
}

/// `cellpose.metrics.mask_ious(masks_true, masks_pred)`.
///
/// The assignment is SciPy's, reproduced exactly (ties and zero-IoU filler pairs included) when
/// `max(truth) × max(pred) <= 2^26`; larger label spaces use the sparse optimal solver, whose
/// pairs with positive IoU are the same unless optima are exactly tied, and which fills the
/// remaining assignments with the lowest unassigned labels in ascending order.
/// Errors with [`Error::TooLarge`] when `max(truth)` exceeds [`MAX_MASK_IOUS_LABEL`].
pub fn mask_ious(y_true: &[u32], y_pred: &[u32]) -> Result<MaskIous> {
    let ov = LabelOverlap::new(y_true, y_pred)?;
    mask_ious_from_overlap(&ov)
}

/// [`mask_ious`] on an overlap table computed beforehand.
pub fn mask_ious_from_overlap(ov: &LabelOverlap) -> Result<MaskIous> {
    let tmax = ov.max_true_label();
    let pmax = ov.max_pred_label();
    if tmax > MAX_MASK_IOUS_LABEL {
        return Err(Error::TooLarge(format!(
            "mask_ious returns one value per label up to the largest ground-truth label {tmax}; \
             relabel the ground truth (largest supported label {MAX_MASK_IOUS_LABEL})"
        )));
    }
    let mut out = MaskIous {
        iout: vec![0.0; tmax as usize],
        preds: vec![0; tmax as usize],
    };
    if tmax == 0 || pmax == 0 {
        return Ok(out);
    }
    let n_min = tmax.min(pmax) as f64;
    let ious: Vec<f64> = (0..ov.pairs().len()).map(|k| iou(ov, k)).collect();
    let costs: Vec<f64> = ious
        .iter()
        .map(|&x| {
            let b = if x >= 0.5 { 1.0 } else { 0.0 };
            -b - x / (2.0 * n_min)
        })
        .collect();
    let tl = ov.true_labels();
    let pl = ov.pred_labels();
    if (tmax as u128) * (pmax as u128) <= EXACT_ASSIGNMENT_LIMIT {
        let entries: Vec<(u32, u32, f64)> = ov
            .pairs()
            .iter()
            .zip(&costs)
            .map(|(p, &c)| {
                (
                    tl[p.true_index as usize] - 1,
                    pl[p.pred_index as usize] - 1,
                    c,
                )
            })
            .collect();
        for (r, c) in scipy_lsap(tmax as usize, pmax as usize, &entries, -0.0)? {
            let ti = tl.binary_search(&(r + 1)).ok();
            let pi = pl.binary_search(&(c + 1)).ok();
            let x = match (ti, pi) {
                (Some(ti), Some(pi)) => ov.find_pair(ti, pi).map_or(0.0, |k| ious[k]),
                _ => 0.0,
            };
            out.iout[r as usize] = x;
            out.preds[r as usize] = c + 1;
        }
        return Ok(out);
    }
    // Sparse optimum, then fillers in ascending raw label order.
    let edges: Vec<(u32, u32)> = ov
        .pairs()
        .iter()
        .map(|p| (p.true_index, p.pred_index))
        .collect();
    let comps = Components::new(tl.len(), pl.len(), &edges);
    let fixed_costs: Vec<i128> = costs.iter().map(|&c| fixed(c)).collect();
    let mut edge_of_row = vec![NONE; tl.len()];
    // Beyond the exact size, a tied optimum is kept as found (documented above).
    let _unique = SparseAssigner::default().solve(&comps, &fixed_costs, &mut edge_of_row);
    let mut pred_used = std::collections::HashSet::new();
    let mut assigned = 0usize;
    for (ti, &e) in edge_of_row.iter().enumerate() {
        if e != NONE {
            let p = ov.pairs()[e as usize];
            let r = tl[ti] as usize - 1;
            out.iout[r] = ious[e as usize];
            out.preds[r] = pl[p.pred_index as usize];
            pred_used.insert(pl[p.pred_index as usize]);
            assigned += 1;
        }
    }
    let want = tmax.min(pmax) as usize;
    let mut next_pred = 1u32;
    for r in 0..tmax as usize {
        if assigned >= want {
            break;
        }
        if out.preds[r] != 0 {
            continue;
        }
        while pred_used.contains(&next_pred) {
            next_pred += 1;
        }
        out.preds[r] = next_pred;
        next_pred += 1;
        assigned += 1;
    }
    Ok(out)
}

/// `cellpose.metrics.aggregated_jaccard_index` for one image pair: the pixel overlap of the
/// pairs assigned by [`mask_ious`] over the number of pixels that are foreground in either
/// image (NaN when both images are empty).
pub fn aggregated_jaccard_index(y_true: &[u32], y_pred: &[u32]) -> Result<f64> {
    let ov = LabelOverlap::new(y_true, y_pred)?;
    aggregated_jaccard_index_from_overlap(&ov)
}

/// [`aggregated_jaccard_index`] on an overlap table computed beforehand.
pub fn aggregated_jaccard_index_from_overlap(ov: &LabelOverlap) -> Result<f64> {
    let m = mask_ious_from_overlap(ov)?;
    let tl = ov.true_labels();
    let pl = ov.pred_labels();
    let mut inter = 0u64;
    for (r, &p) in m.preds.iter().enumerate() {
        if p == 0 {
            continue;
        }
        if let (Ok(ti), Ok(pi)) = (tl.binary_search(&(r as u32 + 1)), pl.binary_search(&p))
            && let Some(k) = ov.find_pair(ti, pi)
        {
            inter += ov.pairs()[k].count;
        }
    }
    let union = ov.n_pixels() as u64 - ov.both_background();
    Ok(inter as f64 / union as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ap_counts_and_nan() {
        let z = [0u32; 6];
        let a = average_precision(&z, &z, &[0.5]).unwrap();
        assert!(a.ap[0].is_nan());
        let t = [0, 1, 1, 2, 2, 0];
        let p = [0, 1, 1, 0, 3, 3];
        let a = average_precision(&t, &p, &[0.3, 0.5, 0.9]).unwrap();
        assert_eq!(a.tp, vec![2.0, 1.0, 1.0]);
        assert_eq!(a.fp, vec![0.0, 1.0, 1.0]);
        assert_eq!(a.ap[1], 1.0 / 3.0);
        let a = average_precision(&t, &z, &[0.5]).unwrap();
        assert_eq!((a.ap[0], a.fn_[0]), (0.0, 2.0));
    }

    #[test]
    fn ap_no_background_quirk() {
        // No background: cellpose counts one object fewer than there are.
        let t = [1, 1, 2, 2];
        let a = average_precision(&t, &t, &[0.5]).unwrap();
        assert_eq!((a.tp[0], a.fp[0], a.fn_[0]), (2.0, -1.0, -1.0));
        assert_eq!(a.ap[0], f32::INFINITY);
    }

    #[test]
    fn mask_ious_and_aji() {
        let t = [0, 1, 1, 1, 3, 3];
        let p = [0, 2, 2, 0, 0, 5];
        let m = mask_ious(&t, &p).unwrap();
        assert_eq!(m.iout.len(), 3);
        assert_eq!(m.preds[0], 2);
        assert_eq!(m.iout[0], 2.0 / 3.0);
        assert_eq!(m.preds[2], 5);
        assert_eq!(m.iout[2], 0.5);
        let aji = aggregated_jaccard_index(&t, &p).unwrap();
        assert_eq!(aji, 3.0 / 5.0);
        assert!(aggregated_jaccard_index(&[0, 0], &[0, 0]).unwrap().is_nan());
        assert!(mask_ious(&[u32::MAX], &[1]).is_err());
        assert!(mask_ious(&[1], &[1, 2]).is_err());
    }
}
