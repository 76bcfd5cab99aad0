//! A matching drawn for people to look at: the image in grey with the outlines of the objects
//! the metrics counted, coloured by what they became at one threshold.
//!
//! * **true positive** (a prediction matched to a true object): the prediction's outline in
//!   green [`TP_COLOUR`];
//! * **false positive** (a prediction left unmatched): its outline in magenta [`FP_COLOUR`];
//! * **false negative** (a true object left unmatched): its outline in cyan [`FN_COLOUR`].
//!
//! The matching is [`true_positive_pairs`], the one behind `tp`, `fp` and `fn` of
//! [`super::matching`]; nothing is matched again here. Predictions are drawn over true
//! objects where outlines meet. An outline pixel is an object pixel on the image border or
//! with a 4-neighbour of another label.

use std::collections::HashSet;

use image::{Rgb, RgbImage};

use super::overlap::LabelOverlap;
use super::stardist::{Criterion, true_positive_pairs};
use crate::error::{Error, Result};

/// Outline colour of true-positive predictions (green).
pub const TP_COLOUR: [u8; 3] = [0, 255, 0];
/// Outline colour of false-positive predictions (magenta).
pub const FP_COLOUR: [u8; 3] = [255, 0, 255];
/// Outline colour of false-negative true objects (cyan).
pub const FN_COLOUR: [u8; 3] = [0, 255, 255];

/// The legend of the colours, for reports.
pub const LEGEND: &str = "green: matched prediction (true positive); magenta: unmatched \
prediction (false positive); cyan: unmatched true object (false negative)";

/// Lower and upper percentiles of the contrast stretch of [`stretch_to_grey`].
pub const STRETCH_PERCENTILES: (f64, f64) = (0.1, 99.9);

/// What each object of a truth/prediction pair became at one threshold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectClasses {
    /// `(true label, predicted label)` of the true positives, sorted by true label.
    pub matched: Vec<(u32, u32)>,
    /// Predicted labels left unmatched (false positives), ascending.
    pub false_positives: Vec<u32>,
    /// True labels left unmatched (false negatives), ascending.
    pub false_negatives: Vec<u32>,
}

/// Classifies the objects of `truth` and `pred` (label images of one size, 0 = background) at
/// `thresh` with `criterion`, with the matching of the metrics. Errors when the sizes differ.
pub fn classify_objects(
    truth: &[u32],
    pred: &[u32],
    thresh: f64,
    criterion: Criterion,
) -> Result<ObjectClasses> {
    let ov = LabelOverlap::new(truth, pred)?;
    let matched = true_positive_pairs(&ov, thresh, criterion)?;
    let tp_true: HashSet<u32> = matched.iter().map(|m| m.0).collect();
    let tp_pred: HashSet<u32> = matched.iter().map(|m| m.1).collect();
    Ok(ObjectClasses {
        false_positives: ov
            .pred_labels()
            .iter()
            .copied()
            .filter(|l| !tp_pred.contains(l))
            .collect(),
        false_negatives: ov
            .true_labels()
            .iter()
            .copied()
            .filter(|l| !tp_true.contains(l))
            .collect(),
        matched,
    })
}

/// Whether pixel `(x, y)` of the `height × width` label image `labels` lies on its object's
/// outline: an object pixel on the image border or with a 4-neighbour of another label.
pub fn is_outline(labels: &[u32], width: usize, height: usize, x: usize, y: usize) -> bool {
    let k = y * width + x;
    let l = labels[k];
    l != 0
        && (x == 0
            || y == 0
            || x + 1 == width
            || y + 1 == height
            || labels[k - 1] != l
            || labels[k + 1] != l
            || labels[k - width] != l
            || labels[k + width] != l)
}

/// A linear contrast stretch between the [`STRETCH_PERCENTILES`] of the finite values of
/// `pixels`, to 8-bit grey (0 below, 255 above).
#[derive(Debug, Clone, Copy)]
pub struct Stretch {
    lo: f64,
    span: f64,
}

impl Stretch {
    /// The stretch of `pixels` (any order; NaN ignored).
    pub fn new(pixels: &[f32]) -> Self {
        let mut v: Vec<f64> = pixels.iter().map(|&x| x as f64).collect();
        let lo = crate::qc::percentile(&mut v, STRETCH_PERCENTILES.0);
        let hi = crate::qc::percentile(&mut v, STRETCH_PERCENTILES.1);
        let lo = if lo.is_finite() { lo } else { 0.0 };
        Stretch {
            lo,
            span: if hi > lo { hi - lo } else { 1.0 },
        }
    }

    /// The grey level of `value`.
    pub fn grey(&self, value: f32) -> u8 {
        (((value as f64 - self.lo) / self.span).clamp(0.0, 1.0) * 255.0) as u8
    }
}

/// `pixels` contrast-stretched to 8-bit grey (see [`Stretch`]).
pub fn stretch_to_grey(pixels: &[f32]) -> Vec<u8> {
    let s = Stretch::new(pixels);
    pixels.iter().map(|&v| s.grey(v)).collect()
}

/// Draws the outlines of `classes` (from [`classify_objects`] on `truth` and `pred`) over the
/// grey image `grey`; all three are `height × width`, row-major. Errors when a size differs.
pub fn draw_overlay(
    grey: &[u8],
    width: usize,
    height: usize,
    truth: &[u32],
    pred: &[u32],
    classes: &ObjectClasses,
) -> Result<RgbImage> {
    let n = width * height;
    if grey.len() != n || truth.len() != n || pred.len() != n {
        return Err(Error::shape(format!(
            "overlay of {height}×{width}: image has {} pixels, truth {}, prediction {}",
            grey.len(),
            truth.len(),
            pred.len()
        )));
    }
    let (Ok(w32), Ok(h32)) = (u32::try_from(width), u32::try_from(height)) else {
        return Err(Error::shape(format!(
            "overlay of {height}×{width}: too large"
        )));
    };
    let tp: HashSet<u32> = classes.matched.iter().map(|m| m.1).collect();
    let missed: HashSet<u32> = classes.false_negatives.iter().copied().collect();
    let mut img = RgbImage::new(w32, h32);
    for y in 0..height {
        for x in 0..width {
            let k = y * width + x;
            let colour = if is_outline(pred, width, height, x, y) {
                if tp.contains(&pred[k]) {
                    TP_COLOUR
                } else {
                    FP_COLOUR
                }
            } else if missed.contains(&truth[k]) && is_outline(truth, width, height, x, y) {
                FN_COLOUR
            } else {
                [grey[k]; 3]
            };
            img.put_pixel(x as u32, y as u32, Rgb(colour));
        }
    }
    Ok(img)
}

/// [`classify_objects`] then [`draw_overlay`]: the picture of the matching at `thresh` (IoU)
/// and the classes drawn.
pub fn overlay(
    grey: &[u8],
    width: usize,
    height: usize,
    truth: &[u32],
    pred: &[u32],
    thresh: f64,
) -> Result<(RgbImage, ObjectClasses)> {
    let classes = classify_objects(truth, pred, thresh, Criterion::Iou)?;
    let img = draw_overlay(grey, width, height, truth, pred, &classes)?;
    Ok((img, classes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 12×6 image: true objects 1 (matched by 7), 2 (missed), 3 (half covered by 9: IoU 0.5 at
    /// 0.5, not at 0.6); prediction 8 has no true object.
    fn pair() -> (Vec<u32>, Vec<u32>) {
        let (w, h) = (12, 6);
        let mut t = vec![0u32; w * h];
        let mut p = vec![0u32; w * h];
        let fill = |img: &mut Vec<u32>, y0: usize, y1: usize, x0: usize, x1: usize, l: u32| {
            for y in y0..y1 {
                for x in x0..x1 {
                    img[y * w + x] = l;
                }
            }
        };
        fill(&mut t, 0, 3, 0, 3, 1);
        fill(&mut p, 0, 3, 0, 3, 7);
        fill(&mut t, 3, 6, 0, 3, 2);
        fill(&mut t, 0, 2, 5, 9, 3);
        fill(&mut p, 0, 2, 5, 7, 9);
        fill(&mut p, 3, 6, 8, 12, 8);
        (t, p)
    }

    #[test]
    fn objects_are_classified_by_the_metrics_matching() {
        let (t, p) = pair();
        let c = classify_objects(&t, &p, 0.5, Criterion::Iou).unwrap();
        assert_eq!(c.matched, vec![(1, 7), (3, 9)]);
        assert_eq!(c.false_positives, vec![8]);
        assert_eq!(c.false_negatives, vec![2]);
        let s = super::super::matching(&t, &p, &[0.5, 0.6], Criterion::Iou, false).unwrap();
        assert_eq!((s[0].tp, s[0].fp, s[0].fn_), (2, 1, 1));
        let c = classify_objects(&t, &p, 0.6, Criterion::Iou).unwrap();
        assert_eq!(c.matched, vec![(1, 7)]);
        assert_eq!(c.false_positives, vec![8, 9]);
        assert_eq!(c.false_negatives, vec![2, 3]);
        assert!(classify_objects(&t, &p[1..], 0.5, Criterion::Iou).is_err());
    }

    #[test]
    fn outlines_take_the_class_colours() {
        let (t, p) = pair();
        let (w, h) = (12, 6);
        let grey = vec![100u8; w * h];
        let (img, _) = overlay(&grey, w, h, &t, &p, 0.6).unwrap();
        let at = |x: u32, y: u32| img.get_pixel(x, y).0;
        // Matched prediction 7: outline green, interior grey.
        assert_eq!(at(0, 0), TP_COLOUR);
        assert_eq!(at(2, 1), TP_COLOUR);
        assert_eq!(at(1, 1), [100; 3]);
        // Missed true object 2 (no prediction there): cyan.
        assert_eq!(at(0, 4), FN_COLOUR);
        assert_eq!(at(2, 5), FN_COLOUR);
        // Predictions 8 and 9 unmatched at 0.6: magenta, drawn over true object 3's outline.
        assert_eq!(at(10, 3), FP_COLOUR);
        assert_eq!(at(5, 0), FP_COLOUR);
        // The uncovered part of missed object 3: cyan.
        assert_eq!(at(8, 1), FN_COLOUR);
        // Background stays grey.
        assert_eq!(at(4, 4), [100; 3]);
        // At 0.5 prediction 9 is matched: green.
        let (img, _) = overlay(&grey, w, h, &t, &p, 0.5).unwrap();
        assert_eq!(img.get_pixel(5, 0).0, TP_COLOUR);
        assert!(draw_overlay(&grey[1..], w, h, &t, &p, &ObjectClasses::default()).is_err());
    }

    #[test]
    fn stretch_clips_the_extremes() {
        let px: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let g = stretch_to_grey(&px);
        assert_eq!((g[0], g[500], g[999]), (0, 127, 255));
        assert_eq!(stretch_to_grey(&[5.0, 5.0]), vec![0, 0]);
        assert_eq!(stretch_to_grey(&[f32::NAN, 1.0]).len(), 2);
    }
}
