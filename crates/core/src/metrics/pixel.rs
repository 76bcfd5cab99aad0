//! Pixel-level foreground agreement (foreground = label > 0).

use serde::Serialize;

use crate::error::{Error, Result};

/// Foreground overlap of two label images, ignoring object identities.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ForegroundScores {
    /// `2 |T ∩ P| / (|T| + |P|)`; NaN when both images are all background.
    pub dice: f64,
    /// `|T ∩ P| / |T ∪ P|`; NaN when both images are all background.
    pub iou: f64,
    /// Pixels that are foreground in both images.
    pub intersection: u64,
    /// Pixels that are foreground in either image.
    pub union: u64,
    /// Foreground pixels of the ground truth.
    pub n_true: u64,
    /// Foreground pixels of the prediction.
    pub n_pred: u64,
}

/// Foreground Dice and IoU of two label images of the same pixel count.
pub fn foreground_scores(y_true: &[u32], y_pred: &[u32]) -> Result<ForegroundScores> {
    if y_true.len() != y_pred.len() {
        return Err(Error::shape(format!(
            "ground truth has {} pixels but prediction has {}; label images must have the same shape",
            y_true.len(),
            y_pred.len()
        )));
    }
    let (mut inter, mut nt, mut np) = (0u64, 0u64, 0u64);
    for (&t, &p) in y_true.iter().zip(y_pred) {
        let (t, p) = (t != 0, p != 0);
        inter += u64::from(t && p);
        nt += u64::from(t);
        np += u64::from(p);
    }
    let union = nt + np - inter;
    Ok(ForegroundScores {
        dice: (2 * inter) as f64 / (nt + np) as f64,
        iou: inter as f64 / union as f64,
        intersection: inter,
        union,
        n_true: nt,
        n_pred: np,
    })
}

/// Foreground Dice coefficient (see [`foreground_scores`]).
pub fn foreground_dice(y_true: &[u32], y_pred: &[u32]) -> Result<f64> {
    Ok(foreground_scores(y_true, y_pred)?.dice)
}

/// Foreground IoU (see [`foreground_scores`]).
pub fn foreground_iou(y_true: &[u32], y_pred: &[u32]) -> Result<f64> {
    Ok(foreground_scores(y_true, y_pred)?.iou)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_and_iou() {
        let s = foreground_scores(&[0, 1, 2, 2], &[3, 3, 0, 9]).unwrap();
        assert_eq!((s.intersection, s.union, s.n_true, s.n_pred), (2, 4, 3, 3));
        assert_eq!(s.dice, 4.0 / 6.0);
        assert_eq!(s.iou, 0.5);
        assert!(foreground_dice(&[0, 0], &[0, 0]).unwrap().is_nan());
        assert_eq!(foreground_iou(&[u32::MAX], &[1]).unwrap(), 1.0);
        assert!(foreground_iou(&[1], &[]).is_err());
    }
}
