//! Segmentation metrics that reproduce the reference Python implementations exactly.
//!
//! * [`stardist`]: `stardist.matching.matching` / `matching_dataset` (stardist 0.9.2, NumPy 2
//!   type rules): [`matching`], [`matching_dataset`], with [`MatchingStats`] /
//!   [`DatasetMatchingStats`] carrying stardist's field names.
//! * [`cellpose`]: `cellpose.metrics` (cellpose 4.2.1.1): [`average_precision`],
//!   [`mask_ious`], [`aggregated_jaccard_index`], and [`boundary_scores`] (in [`boundary`]).
//! * [`pixel`]: foreground Dice and IoU.
//! * [`overlay`]: a matching drawn as coloured outlines (true positives, false positives,
//!   false negatives) over the image, for people to look at what the numbers count.
//!
//! Everything is built on [`LabelOverlap`], a sparse overlap table whose size grows with the
//! pixel count and the number of overlapping object pairs only. Label ids may be any `u32`
//! (0 is background), with gaps. Label images are flat slices; any layout works as long as
//! truth and prediction use the same one (only [`boundary_scores`] needs 2-D views).

mod assign;
pub mod boundary;
pub mod cellpose;
mod numeric;
pub mod overlap;
pub mod overlay;
pub mod pixel;
pub mod stardist;

pub use boundary::{BoundaryScores, boundary_scores, masks_to_outlines, median_diameter};
pub use cellpose::{
    AveragePrecision, MaskIous, aggregated_jaccard_index, aggregated_jaccard_index_from_overlap,
    average_precision, average_precision_dataset, average_precision_from_overlap, mask_ious,
    mask_ious_from_overlap,
};
pub use overlap::{LabelOverlap, OverlapPair};
pub use pixel::{ForegroundScores, foreground_dice, foreground_iou, foreground_scores};
pub use stardist::{
    Criterion, DatasetMatchingStats, MatchReport, MatchingStats, aggregate, matching,
    matching_dataset, matching_from_overlap, true_positive_pairs,
};

/// Checks matching thresholds: at least one, each a number in `[0, 1]`. Every face validates
/// its thresholds here, so they all accept and refuse the same values with the same message.
pub fn check_thresholds(thresholds: &[f64]) -> crate::Result<()> {
    if thresholds.is_empty() {
        return Err(crate::Error::invalid(
            "no thresholds: give at least one, e.g. 0.5",
        ));
    }
    if let Some(t) = thresholds.iter().find(|t| !(0.0..=1.0).contains(*t)) {
        return Err(crate::Error::invalid(format!(
            "threshold {t} is not a number in [0, 1] (thresholds: {thresholds:?})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn thresholds_are_checked_once_for_every_face() {
        assert!(super::check_thresholds(&[0.0, 0.5, 1.0]).is_ok());
        for bad in [&[][..], &[1.5], &[f64::NAN], &[-0.1], &[0.5, f64::INFINITY]] {
            assert!(super::check_thresholds(bad).is_err(), "{bad:?}");
        }
    }
}
