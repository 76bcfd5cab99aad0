//! C entry points for segmentation metrics.

use crate::core::metrics::{Criterion, LabelOverlap, foreground_scores, matching_from_overlap};

use super::boundary::{FfiError, boundary, cytoseg_status, expect_len, input, output};

/// Matching statistics at one threshold, with `stardist.matching`'s fields.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct cytoseg_matching_stats {
    /// The threshold.
    pub thresh: f64,
    /// True positives.
    pub tp: u64,
    /// False positives (`n_pred - tp`).
    pub fp: u64,
    /// False negatives (`n_true - tp`).
    pub fn_: u64,
    /// Ground-truth objects.
    pub n_true: u64,
    /// Predicted objects.
    pub n_pred: u64,
    /// `tp / (tp + fp)`.
    pub precision: f64,
    /// `tp / (tp + fn)`.
    pub recall: f64,
    /// `tp / (tp + fp + fn)`: the DSB 2018 "average precision" (Cellpose's `ap`).
    pub accuracy: f64,
    /// `2 tp / (2 tp + fp + fn)`.
    pub f1: f64,
    /// Sum of true-positive scores over `n_true`.
    pub mean_true_score: f64,
    /// Mean score of the true positives.
    pub mean_matched_score: f64,
    /// Panoptic quality.
    pub panoptic_quality: f64,
}

/// Matching criteria for `cytoseg_evaluate_labels`.
#[repr(i32)]
#[derive(Debug, Clone, Copy)]
pub enum cytoseg_criterion {
    /// Intersection over union.
    Iou = 0,
    /// Intersection over the true object's area.
    Iot = 1,
    /// Intersection over the predicted object's area.
    Iop = 2,
}

/// Scores a predicted label image against ground truth, exactly as
/// `stardist.matching.matching` (0.9.2) at each threshold, plus pixel-level foreground Dice.
///
/// @param truth, pred    Label images, `len` uint32 each (0 = background; any label values).
/// @param len            Number of pixels of each.
/// @param thresholds     `n_thresholds` thresholds in [0, 1].
/// @param criterion      A `cytoseg_criterion` value.
/// @param stats          Output, caller-allocated array of `n_thresholds` structs.
/// @param dice           Optional output (may be NULL): foreground Dice (NaN if both empty).
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_evaluate_labels(
    truth: *const u32,
    pred: *const u32,
    len: usize,
    thresholds: *const f64,
    n_thresholds: usize,
    criterion: i32,
    stats: *mut cytoseg_matching_stats,
    dice: *mut f64,
) -> cytoseg_status {
    boundary(|| {
        let criterion = match criterion {
            0 => Criterion::Iou,
            1 => Criterion::Iot,
            2 => Criterion::Iop,
            c => {
                return Err(FfiError(
                    cytoseg_status::InvalidArgument,
                    format!("unknown criterion {c}"),
                ));
            }
        };
        if n_thresholds == 0 {
            return Err(FfiError(
                cytoseg_status::InvalidArgument,
                "no thresholds".into(),
            ));
        }
        // SAFETY: the caller provides `len` labels in each image and `n_thresholds` values.
        let (t, p) = unsafe { (input(truth, len, "truth")?, input(pred, len, "pred")?) };
        let thr = unsafe { input(thresholds, n_thresholds, "thresholds") }?;
        crate::core::metrics::check_thresholds(thr)?;
        expect_len("n_thresholds", n_thresholds, Some(thr.len()), "thresholds")?;
        let ov = LabelOverlap::new(t, p)?;
        let m = matching_from_overlap(&ov, thr, criterion, false)?;
        let fg = if dice.is_null() {
            None
        } else {
            Some(foreground_scores(t, p)?)
        };
        // SAFETY: checked; caller-allocated array of n_thresholds structs.
        let out = unsafe { output(stats, n_thresholds, "stats") }?;
        for (o, s) in out.iter_mut().zip(&m) {
            *o = cytoseg_matching_stats {
                thresh: s.thresh,
                tp: s.tp,
                fp: s.fp,
                fn_: s.fn_,
                n_true: s.n_true,
                n_pred: s.n_pred,
                precision: s.precision,
                recall: s.recall,
                accuracy: s.accuracy,
                f1: s.f1,
                mean_true_score: s.mean_true_score,
                mean_matched_score: s.mean_matched_score,
                panoptic_quality: s.panoptic_quality,
            };
        }
        if let Some(fg) = fg {
            // SAFETY: non-null caller double.
            unsafe { *dice = fg.dice };
        }
        Ok(())
    })
}
