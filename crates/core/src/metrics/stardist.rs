//! Object matching metrics exactly as `stardist.matching` 0.9.2 computes them (with NumPy 2's
//! type rules and SciPy's `linear_sum_assignment`).
//!
//! What "exactly" covers, field by field:
//! * Scores (IoU / IoT / IoP) are computed in float64 and stored as float32; a pair counts at
//!   threshold `t` when `score >= (t as f32)` in float32 (NumPy 2 casts the Python float
//!   threshold to float32), so an IoU of exactly 0.7 *is* a match at 0.7.
//! * `mean_true_score` is float32 (`np.float32` sum / Python int); `mean_matched_score` and
//!   `panoptic_quality` are float64 divisions of the float32 score sum; the score sum is NumPy's
//!   pairwise float32 sum in ground-truth label order. All are returned as `f64` holding exactly
//!   the reference's value.
//! * `tp` is the size of a maximum matching among pairs whose score passes the threshold; it
//!   never depends on how ties are broken.
//!
//! Assignment strategy (the reference minimises `-(S >= thr) - S / (2 n_matched)` with SciPy's
//! `linear_sum_assignment` on the dense `n_true × n_pred` matrix):
//! * Without `report_matches`, each image is solved on the sparse graph of overlapping pairs,
//!   one connected component at a time, with exact fixed-point copies of the reference's
//!   float64 costs, and the solver proves the optimum unique (no alternating cycle or path of
//!   zero reduced cost). A unique optimum is the one SciPy finds. When optima are exactly tied
//!   (e.g. a ground-truth object overlapping two predictions by the same pixel count), the
//!   image is re-solved with the SciPy port below, so SciPy's own tie rule decides.
//! * With `report_matches`, or for thresholds `<= 0` (where zero-score "filler" pairs count),
//!   the assignment comes from a port of SciPy's algorithm that reproduces SciPy's choice among
//!   ties and its filler pairs. It needs O(n_true + n_pred) memory but O(n_true × n_pred) time.
//! * Both uses of the SciPy port are limited to `n_true * n_pred <= 2^26`
//!   ([`EXACT_ASSIGNMENT_LIMIT`]). Beyond that, ties are kept as the sparse solver breaks them
//!   and filler pairs join the lowest unmatched ids in ascending order; `tp` is unaffected.
//! * SciPy itself works in float64: an assignment whose cost differs from the optimum by less
//!   than its rounding error (~1e-16) could be returned by SciPy but is not by this solver.

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};

use super::assign::{Components, SparseAssigner, scipy_lsap};
use super::numeric::{fixed, numpy_sum_f32};
use super::overlap::{LabelOverlap, NONE};

/// Assigned `(true index, pred index, score)` triples.
type Assigned = Vec<(u32, u32, f32)>;

/// Largest `rows × columns` for which the SciPy-exact assignment is used.
pub const EXACT_ASSIGNMENT_LIMIT: u128 = 1 << 26;

/// How a ground-truth object and a predicted object are scored against each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Criterion {
    /// Intersection over union.
    Iou,
    /// Intersection over the ground-truth object's area.
    Iot,
    /// Intersection over the predicted object's area.
    Iop,
}

impl Criterion {
    /// The name stardist uses: `"iou"`, `"iot"` or `"iop"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Criterion::Iou => "iou",
            Criterion::Iot => "iot",
            Criterion::Iop => "iop",
        }
    }

    /// All criteria, in stardist's order.
    pub const ALL: [Criterion; 3] = [Criterion::Iou, Criterion::Iot, Criterion::Iop];

    /// The float32 score of a pair overlapping in `overlap` pixels, with object areas
    /// `area_true` and `area_pred` (float64 division stored as float32, as stardist does).
    pub fn score(self, overlap: u64, area_true: u64, area_pred: u64) -> f32 {
        let denom = match self {
            Criterion::Iou => area_true + area_pred - overlap,
            Criterion::Iot => area_true,
            Criterion::Iop => area_pred,
        };
        if denom == 0 {
            0.0
        } else {
            (overlap as f64 / denom as f64) as f32
        }
    }
}

impl std::fmt::Display for Criterion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Criterion {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "iou" => Ok(Criterion::Iou),
            "iot" => Ok(Criterion::Iot),
            "iop" => Ok(Criterion::Iop),
            _ => Err(Error::invalid(format!(
                "matching criterion '{s}' not supported (use iou, iot or iop)"
            ))),
        }
    }
}

/// The assignment behind one [`MatchingStats`], as stardist's `report_matches=True` gives it.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct MatchReport {
    /// `(true label, predicted label)` of every assigned pair, with the original label ids,
    /// sorted by true label; `min(n_true, n_pred)` pairs, including pairs scoring below the
    /// threshold and zero-score filler pairs.
    pub matched_pairs: Vec<(u32, u32)>,
    /// Score of each pair in `matched_pairs` (float32).
    pub matched_scores: Vec<f32>,
    /// Positions in `matched_pairs` of the pairs that count as true positives.
    pub matched_tps: Vec<usize>,
}

/// Matching statistics of one image at one threshold, with stardist's field names and order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchingStats {
    /// The score used.
    pub criterion: Criterion,
    /// The threshold, as given.
    pub thresh: f64,
    /// False positives: `n_pred - tp`.
    pub fp: u64,
    /// True positives: matched pairs whose score passes the threshold.
    pub tp: u64,
    /// False negatives: `n_true - tp`.
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// `tp / (tp + fp)`, 0 when `tp == 0`.
    pub precision: f64,
    /// `tp / (tp + fn)`, 0 when `tp == 0`.
    pub recall: f64,
    /// `tp / (tp + fp + fn)` (the DSB 2018 "average precision"), 0 when `tp == 0`.
    pub accuracy: f64,
    /// `2 tp / (2 tp + fp + fn)`, 0 when `tp == 0`.
    pub f1: f64,
    /// Number of ground-truth objects.
    pub n_true: u64,
    /// Number of predicted objects.
    pub n_pred: u64,
    /// Sum of the true-positive scores over `n_true` (a float32 value).
    pub mean_true_score: f64,
    /// Mean score of the true positives.
    pub mean_matched_score: f64,
    /// Panoptic quality: score sum over `tp + fp/2 + fn/2`.
    pub panoptic_quality: f64,
    /// The assignment, when requested.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub report: Option<MatchReport>,
}

impl MatchingStats {
    /// Names of the numeric fields, in the order of [`Self::numeric_values`] (stardist's field
    /// names; `fn` for `fn_`): the one list that faces passing the statistics as numbers use.
    pub const NUMERIC_FIELDS: [&'static str; 13] = [
        "thresh",
        "tp",
        "fp",
        "fn",
        "n_true",
        "n_pred",
        "precision",
        "recall",
        "accuracy",
        "f1",
        "mean_true_score",
        "mean_matched_score",
        "panoptic_quality",
    ];

    /// The numeric fields as `f64`, in the order of [`Self::NUMERIC_FIELDS`].
    pub fn numeric_values(&self) -> [f64; 13] {
        [
            self.thresh,
            self.tp as f64,
            self.fp as f64,
            self.fn_ as f64,
            self.n_true as f64,
            self.n_pred as f64,
            self.precision,
            self.recall,
            self.accuracy,
            self.f1,
            self.mean_true_score,
            self.mean_matched_score,
            self.panoptic_quality,
        ]
    }
}

/// Matching statistics of a dataset at one threshold, as `stardist.matching.matching_dataset`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetMatchingStats {
    /// The score used.
    pub criterion: Criterion,
    /// The threshold, as given.
    pub thresh: f64,
    /// Summed false positives.
    pub fp: u64,
    /// Summed true positives.
    pub tp: u64,
    /// Summed false negatives.
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// Precision from the summed counts, or the mean per-image precision when `by_image`.
    pub precision: f64,
    /// Recall (same rule as `precision`).
    pub recall: f64,
    /// Accuracy (same rule as `precision`).
    pub accuracy: f64,
    /// F1 (same rule as `precision`).
    pub f1: f64,
    /// Summed ground-truth object counts.
    pub n_true: u64,
    /// Summed predicted object counts.
    pub n_pred: u64,
    /// Score sum over `n_true` (float32 value), or the mean per-image value when `by_image`.
    pub mean_true_score: f64,
    /// Score sum over `tp`, or the mean per-image value when `by_image`.
    pub mean_matched_score: f64,
    /// Panoptic quality, or the mean per-image value when `by_image`.
    pub panoptic_quality: f64,
    /// Whether ratios are averaged per image (`true`) or computed from summed counts.
    pub by_image: bool,
}

impl DatasetMatchingStats {
    /// The CSV header of the cells of [`Self::csv_values`] (stardist's field names).
    pub const CSV_HEADER: &'static str = "n_true,n_pred,tp,fp,fn,precision,recall,accuracy,f1,mean_true_score,mean_matched_score,panoptic_quality";

    /// The counts and scores as comma-separated CSV cells (full precision), under
    /// [`Self::CSV_HEADER`]: the one row layout of every report that writes them.
    pub fn csv_values(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            self.n_true,
            self.n_pred,
            self.tp,
            self.fp,
            self.fn_,
            self.precision,
            self.recall,
            self.accuracy,
            self.f1,
            self.mean_true_score,
            self.mean_matched_score,
            self.panoptic_quality
        )
    }
}

/// An image prepared for matching at any number of thresholds with one criterion.
struct Prepared<'a> {
    ov: &'a LabelOverlap,
    criterion: Criterion,
    scores: Vec<f32>,
    /// Fixed-point costs of each pair when it does not / does pass the threshold.
    cost_below: Vec<i128>,
    cost_pass: Vec<i128>,
    /// `scores / (2 n_matched)` as float32 (the tie-break term).
    q: Vec<f32>,
    comps: Components,
}

impl<'a> Prepared<'a> {
    fn new(ov: &'a LabelOverlap, criterion: Criterion) -> Self {
        let n_matched = ov.true_labels().len().min(ov.pred_labels().len());
        let div = (2 * n_matched) as f32;
        let mut scores = Vec::with_capacity(ov.pairs().len());
        let mut q = Vec::with_capacity(ov.pairs().len());
        let mut cost_below = Vec::with_capacity(ov.pairs().len());
        let mut cost_pass = Vec::with_capacity(ov.pairs().len());
        for p in ov.pairs() {
            let s = criterion.score(
                p.count,
                ov.true_areas()[p.true_index as usize],
                ov.pred_areas()[p.pred_index as usize],
            );
            let qs = s / div;
            scores.push(s);
            q.push(qs);
            cost_below.push(fixed(-0.0 - qs as f64));
            cost_pass.push(fixed(-1.0 - qs as f64));
        }
        let edges: Vec<(u32, u32)> = ov
            .pairs()
            .iter()
            .map(|p| (p.true_index, p.pred_index))
            .collect();
        let comps = Components::new(ov.true_labels().len(), ov.pred_labels().len(), &edges);
        Prepared {
            ov,
            criterion,
            scores,
            cost_below,
            cost_pass,
            q,
            comps,
        }
    }

    /// Assigned `(true index, pred index, score)` triples sorted by true index; with
    /// `fillers`, the full `min(n_true, n_pred)` pairs (SciPy's own when
    /// `n_true * n_pred <= exact_limit`).
    fn assign(
        &self,
        thr32: f32,
        fillers: bool,
        exact_limit: u128,
        scratch: &mut SparseAssigner,
    ) -> Result<Vec<(u32, u32, f32)>> {
        let nt = self.ov.true_labels().len();
        let np = self.ov.pred_labels().len();
        let b0 = 0.0f32 >= thr32;
        let score_of = |r: u32, c: u32| {
            self.ov
                .find_pair(r as usize, c as usize)
                .map_or(0.0, |k| self.scores[k])
        };
        if fillers && (nt as u128) * (np as u128) <= exact_limit {
            let entries: Vec<(u32, u32, f64)> = self
                .ov
                .pairs()
                .iter()
                .zip(&self.scores)
                .zip(&self.q)
                .map(|((p, &s), &q)| {
                    let b = if s >= thr32 { 1.0 } else { 0.0 };
                    (p.true_index, p.pred_index, -b - q as f64)
                })
                .collect();
            let default = if b0 { -1.0 } else { -0.0 };
            let pairs = scipy_lsap(nt, np, &entries, default)?;
            return Ok(pairs
                .into_iter()
                .map(|(r, c)| (r, c, score_of(r, c)))
                .collect());
        }
        let base = if b0 { fixed(-1.0) } else { 0 };
        let cost: Vec<i128> = self
            .scores
            .iter()
            .enumerate()
            .map(|(e, &s)| {
                let c = if s >= thr32 {
                    self.cost_pass[e]
                } else {
                    self.cost_below[e]
                };
                c - base
            })
            .collect();
        let mut edge_of_row = vec![NONE; nt];
        let unique = scratch.solve(&self.comps, &cost, &mut edge_of_row);
        if !unique && (nt as u128) * (np as u128) <= exact_limit {
            // Tied optima: let SciPy's own rule choose, as the reference does.
            return self.assign(thr32, true, exact_limit, scratch);
        }
        let mut out: Vec<(u32, u32, f32)> = edge_of_row
            .iter()
            .enumerate()
            .filter(|(_, e)| **e != NONE)
            .map(|(r, &e)| {
                (
                    r as u32,
                    self.comps.edge_col(e as usize),
                    self.scores[e as usize],
                )
            })
            .collect();
        if fillers {
            add_fillers(&mut out, nt, np);
        }
        Ok(out)
    }

    /// The assignment at threshold `thr32` (with fillers when `report` or when zero scores
    /// pass) and the positions in it of the pairs that count as true positives: the one
    /// matching behind both the statistics and [`true_positive_pairs`].
    fn passing(
        &self,
        thr32: f32,
        report: bool,
        exact_limit: u128,
        scratch: &mut SparseAssigner,
    ) -> Result<(Assigned, Vec<usize>)> {
        let b0 = 0.0f32 >= thr32;
        let assigned = self.assign(thr32, report || b0, exact_limit, scratch)?;
        let ok: Vec<usize> = assigned
            .iter()
            .enumerate()
            .filter(|(_, a)| a.2 >= thr32)
            .map(|(k, _)| k)
            .collect();
        Ok((assigned, ok))
    }

    fn stats(
        &self,
        thresh: f64,
        report: bool,
        exact_limit: u128,
        scratch: &mut SparseAssigner,
    ) -> Result<MatchingStats> {
        let nt = self.ov.true_labels().len() as u64;
        let np = self.ov.pred_labels().len() as u64;
        let thr32 = thresh as f32;
        if nt.min(np) == 0 {
            let mut s = finish(self.criterion, thresh, 0, nt, np, 0.0);
            if report {
                s.report = Some(MatchReport::default());
            }
            return Ok(s);
        }
        let (assigned, ok) = self.passing(thr32, report, exact_limit, scratch)?;
        let tp_scores: Vec<f32> = ok.iter().map(|&k| assigned[k].2).collect();
        let sum = numpy_sum_f32(&tp_scores);
        let mut s = finish(self.criterion, thresh, ok.len() as u64, nt, np, sum);
        if report {
            let tl = self.ov.true_labels();
            let pl = self.ov.pred_labels();
            s.report = Some(MatchReport {
                matched_pairs: assigned
                    .iter()
                    .map(|a| (tl[a.0 as usize], pl[a.1 as usize]))
                    .collect(),
                matched_scores: assigned.iter().map(|a| a.2).collect(),
                matched_tps: ok,
            });
        }
        Ok(s)
    }
}

/// Completes a partial assignment (sorted by row) to `min(nt, np)` pairs with zero-score pairs
/// of the lowest unassigned rows and columns, in ascending order.
fn add_fillers(out: &mut Vec<(u32, u32, f32)>, nt: usize, np: usize) {
    let want = nt.min(np);
    if out.len() >= want {
        return;
    }
    let mut row_used = vec![false; nt];
    let mut col_used = vec![false; np];
    for a in out.iter() {
        row_used[a.0 as usize] = true;
        col_used[a.1 as usize] = true;
    }
    let free_rows = (0..nt).filter(|&r| !row_used[r]);
    let free_cols = (0..np).filter(|&c| !col_used[c]);
    let extra: Vec<(u32, u32, f32)> = free_rows
        .zip(free_cols)
        .take(want - out.len())
        .map(|(r, c)| (r as u32, c as u32, 0.0))
        .collect();
    out.extend(extra);
    out.sort_unstable_by_key(|a| a.0);
}

fn ratio(num: u64, den: u64) -> f64 {
    num as f64 / den as f64
}

/// Builds the statistics from the counts and the float32 score sum, with stardist's formulas
/// and NumPy 2's types.
fn finish(
    criterion: Criterion,
    thresh: f64,
    tp: u64,
    n_true: u64,
    n_pred: u64,
    sum: f32,
) -> MatchingStats {
    let fp = n_pred - tp;
    let fn_ = n_true - tp;
    let pos = tp > 0;
    let denom_pq = tp as f64 + fp as f64 / 2.0 + fn_ as f64 / 2.0;
    MatchingStats {
        criterion,
        thresh,
        fp,
        tp,
        fn_,
        precision: if pos { ratio(tp, tp + fp) } else { 0.0 },
        recall: if pos { ratio(tp, tp + fn_) } else { 0.0 },
        accuracy: if pos { ratio(tp, tp + fp + fn_) } else { 0.0 },
        f1: if pos {
            ratio(2 * tp, 2 * tp + fp + fn_)
        } else {
            0.0
        },
        n_true,
        n_pred,
        mean_true_score: if n_true > 0 {
            (sum / n_true as f32) as f64
        } else {
            0.0
        },
        mean_matched_score: if pos { sum as f64 / tp as f64 } else { 0.0 },
        panoptic_quality: if denom_pq > 1e-10 {
            sum as f64 / denom_pq
        } else {
            0.0
        },
        report: None,
    }
}

/// `stardist.matching.matching(y_true, y_pred, thresh, criterion, report_matches)` for a list
/// of thresholds: one [`MatchingStats`] per threshold, in order.
///
/// `y_true` and `y_pred` are label images of the same pixel count (0 = background; any ids,
/// gaps allowed). Errors with [`Error::ShapeMismatch`] when the lengths differ.
pub fn matching(
    y_true: &[u32],
    y_pred: &[u32],
    thresholds: &[f64],
    criterion: Criterion,
    report_matches: bool,
) -> Result<Vec<MatchingStats>> {
    let ov = LabelOverlap::new(y_true, y_pred)?;
    matching_from_overlap(&ov, thresholds, criterion, report_matches)
}

/// [`matching`] on an overlap table computed beforehand (to score several criteria or
/// threshold lists without recounting).
pub fn matching_from_overlap(
    overlap: &LabelOverlap,
    thresholds: &[f64],
    criterion: Criterion,
    report_matches: bool,
) -> Result<Vec<MatchingStats>> {
    let prep = Prepared::new(overlap, criterion);
    let mut scratch = SparseAssigner::default();
    thresholds
        .iter()
        .map(|&t| prep.stats(t, report_matches, EXACT_ASSIGNMENT_LIMIT, &mut scratch))
        .collect()
}

/// The pairs that [`matching_from_overlap`] counts as true positives at `thresh`:
/// `(true label, predicted label)` with the original label ids, sorted by true label. The same
/// assignment and tie rule as the statistics (so `len()` equals their `tp`); every other true
/// object is a false negative and every other predicted object a false positive.
pub fn true_positive_pairs(
    overlap: &LabelOverlap,
    thresh: f64,
    criterion: Criterion,
) -> Result<Vec<(u32, u32)>> {
    let (tl, pl) = (overlap.true_labels(), overlap.pred_labels());
    if tl.is_empty() || pl.is_empty() {
        return Ok(Vec::new());
    }
    let prep = Prepared::new(overlap, criterion);
    let mut scratch = SparseAssigner::default();
    let (assigned, ok) =
        prep.passing(thresh as f32, false, EXACT_ASSIGNMENT_LIMIT, &mut scratch)?;
    Ok(ok
        .into_iter()
        .map(|k| (tl[assigned[k].0 as usize], pl[assigned[k].1 as usize]))
        .collect())
}

/// `stardist.matching.matching_dataset(ys_true, ys_pred, thresh, criterion, by_image)`: one
/// [`DatasetMatchingStats`] per threshold. Images are processed in parallel; the aggregation
/// follows stardist's order and float types exactly.
///
/// Errors when the lists differ in length, are empty (stardist raises), or an image pair
/// differs in pixel count.
pub fn matching_dataset(
    ys_true: &[&[u32]],
    ys_pred: &[&[u32]],
    thresholds: &[f64],
    criterion: Criterion,
    by_image: bool,
) -> Result<Vec<DatasetMatchingStats>> {
    if ys_true.len() != ys_pred.len() {
        return Err(Error::invalid(format!(
            "y_true and y_pred must have the same length ({} vs {} images)",
            ys_true.len(),
            ys_pred.len()
        )));
    }
    if ys_true.is_empty() {
        return Err(Error::invalid("matching_dataset needs at least one image"));
    }
    let per_image: Vec<Vec<MatchingStats>> = ys_true
        .par_iter()
        .zip(ys_pred.par_iter())
        .enumerate()
        .map(|(k, (t, p))| {
            let ov = LabelOverlap::new(t, p).map_err(|e| match e {
                Error::ShapeMismatch(m) => Error::shape(format!("image {k}: {m}")),
                other => other,
            })?;
            matching_from_overlap(&ov, thresholds, criterion, false)
        })
        .collect::<Result<_>>()?;
    Ok(aggregate(&per_image, thresholds, criterion, by_image))
}

/// Aggregates per-image statistics (`per_image[image][threshold]`) as stardist's
/// `matching_dataset_lazy` does.
pub fn aggregate(
    per_image: &[Vec<MatchingStats>],
    thresholds: &[f64],
    criterion: Criterion,
    by_image: bool,
) -> Vec<DatasetMatchingStats> {
    let n_images = per_image.len();
    thresholds
        .iter()
        .enumerate()
        .map(|(k, &thresh)| {
            let (mut tp, mut fp, mut fn_, mut n_true, mut n_pred) = (0u64, 0u64, 0u64, 0u64, 0u64);
            let (mut precision, mut recall, mut accuracy, mut f1) = (0f64, 0f64, 0f64, 0f64);
            let (mut mms, mut pq) = (0f64, 0f64);
            let mut mts = 0f32;
            for s in per_image.iter().filter_map(|v| v.get(k)) {
                tp += s.tp;
                fp += s.fp;
                fn_ += s.fn_;
                n_true += s.n_true;
                n_pred += s.n_pred;
                precision += s.precision;
                recall += s.recall;
                accuracy += s.accuracy;
                f1 += s.f1;
                mms += s.mean_matched_score;
                pq += s.panoptic_quality;
                let v = s.mean_true_score as f32;
                if by_image {
                    mts += v;
                } else {
                    mts += v * s.n_true as f32;
                }
            }
            if by_image {
                let n = n_images as f64;
                DatasetMatchingStats {
                    criterion,
                    thresh,
                    fp,
                    tp,
                    fn_,
                    precision: precision / n,
                    recall: recall / n,
                    accuracy: accuracy / n,
                    f1: f1 / n,
                    n_true,
                    n_pred,
                    mean_true_score: (mts / n_images as f32) as f64,
                    mean_matched_score: mms / n,
                    panoptic_quality: pq / n,
                    by_image,
                }
            } else {
                let s = finish(criterion, thresh, tp, n_true, n_pred, mts);
                DatasetMatchingStats {
                    criterion,
                    thresh,
                    fp,
                    tp,
                    fn_,
                    precision: s.precision,
                    recall: s.recall,
                    accuracy: s.accuracy,
                    f1: s.f1,
                    n_true,
                    n_pred,
                    mean_true_score: s.mean_true_score,
                    mean_matched_score: s.mean_matched_score,
                    panoptic_quality: s.panoptic_quality,
                    by_image,
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(w: usize, h: usize, boxes: &[(usize, usize, usize, usize, u32)]) -> Vec<u32> {
        let mut img = vec![0u32; w * h];
        for &(y0, y1, x0, x1, l) in boxes {
            for y in y0..y1 {
                for x in x0..x1 {
                    img[y * w + x] = l;
                }
            }
        }
        img
    }

    #[test]
    fn exact_threshold_is_a_match_in_float32() {
        // IoU exactly 7/10.
        let t = square(20, 4, &[(0, 1, 0, 10, 1)]);
        let p = square(20, 4, &[(0, 1, 0, 7, 1)]);
        let s = matching(&t, &p, &[0.7, 0.71], Criterion::Iou, false).unwrap();
        assert_eq!(s[0].tp, 1);
        assert_eq!(s[1].tp, 0);
        assert_eq!(s[0].mean_true_score, 0.7f32 as f64);
    }

    #[test]
    fn empty_images_give_zeros() {
        let z = vec![0u32; 16];
        let s = matching(&z, &z, &[0.5], Criterion::Iou, true).unwrap();
        assert_eq!((s[0].tp, s[0].fp, s[0].fn_, s[0].precision), (0, 0, 0, 0.0));
        assert_eq!(s[0].report.as_ref().unwrap().matched_pairs, vec![]);
        let p = square(4, 4, &[(0, 2, 0, 2, 3)]);
        let s = matching(&z, &p, &[0.5], Criterion::Iou, false).unwrap();
        assert_eq!((s[0].tp, s[0].fp, s[0].fn_), (0, 1, 0));
        let s = matching(&[], &[], &[0.5], Criterion::Iot, false).unwrap();
        assert_eq!(s[0].n_true, 0);
    }

    #[test]
    fn no_background_and_huge_labels_are_relabelled() {
        let t = vec![u32::MAX, u32::MAX, 7, 7];
        let p = vec![1, 1, 4_000_000_000, 4_000_000_000];
        let s = matching(&t, &p, &[0.5], Criterion::Iou, true).unwrap();
        assert_eq!((s[0].tp, s[0].n_true, s[0].n_pred), (2, 2, 2));
        let r = s[0].report.as_ref().unwrap();
        assert_eq!(r.matched_pairs, vec![(7, 4_000_000_000), (u32::MAX, 1)]);
        assert_eq!(r.matched_tps, vec![0, 1]);
        let compact =
            matching(&[2, 2, 1, 1], &[1, 1, 2, 2], &[0.5], Criterion::Iou, false).unwrap();
        assert_eq!(compact[0].mean_true_score, s[0].mean_true_score);
    }

    #[test]
    fn mismatched_shapes_error() {
        let e = matching(&[0, 1], &[0, 1, 1], &[0.5], Criterion::Iou, false).unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch(_)));
        let e = matching_dataset(
            &[&[1u32][..]],
            &[&[1u32, 2][..]],
            &[0.5],
            Criterion::Iou,
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("image 0"), "{e}");
        assert!(matching_dataset(&[], &[], &[0.5], Criterion::Iou, false).is_err());
    }

    /// A chain of partially overlapping objects (each pair IoU 56/104).
    fn chain() -> (Vec<u32>, Vec<u32>) {
        let t = square(
            40,
            8,
            &[(0, 8, 0, 10, 1), (0, 8, 10, 20, 2), (0, 8, 20, 30, 3)],
        );
        let p = square(
            40,
            8,
            &[(0, 8, 3, 13, 5), (0, 8, 13, 23, 6), (0, 8, 23, 33, 9)],
        );
        (t, p)
    }

    #[test]
    fn sparse_and_exact_paths_agree() {
        let (t, p) = chain();
        for c in Criterion::ALL {
            let a = matching(&t, &p, &[0.1, 0.5, 0.6], c, false).unwrap();
            let b = matching(&t, &p, &[0.1, 0.5, 0.6], c, true).unwrap();
            for (x, y) in a.iter().zip(&b) {
                let mut y = y.clone();
                y.report = None;
                assert_eq!(x, &y);
            }
        }
    }

    #[test]
    fn sparse_solver_reaches_the_scipy_optimum_on_random_images() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        let w = 24;
        for _ in 0..150 {
            // Random rectangles, truth and prediction independently: many partial overlaps.
            let mut img = [vec![0u32; w * w], vec![0u32; w * w]];
            for im in img.iter_mut() {
                for l in 1..=(2 + next(12) as u32) {
                    let (y0, x0) = (next(w as u64) as usize, next(w as u64) as usize);
                    let (y1, x1) = (
                        (y0 + 2 + next(8) as usize).min(w),
                        (x0 + 2 + next(8) as usize).min(w),
                    );
                    for y in y0..y1 {
                        for x in x0..x1 {
                            im[y * w + x] = l * 3 + 1;
                        }
                    }
                }
            }
            let ov = LabelOverlap::new(&img[0], &img[1]).unwrap();
            for c in Criterion::ALL {
                let prep = Prepared::new(&ov, c);
                let mut scratch = SparseAssigner::default();
                for thr in [0.05f32, 0.3, 0.5, 0.7] {
                    // Compare the optimal objective of both solvers in exact fixed point.
                    let cost = |a: &[(u32, u32, f32)]| -> i128 {
                        a.iter()
                            .map(|&(r, col, _)| {
                                ov.find_pair(r as usize, col as usize).map_or(0, |k| {
                                    if prep.scores[k] >= thr {
                                        prep.cost_pass[k]
                                    } else {
                                        prep.cost_below[k]
                                    }
                                })
                            })
                            .sum()
                    };
                    let sparse = prep.assign(thr, false, 0, &mut scratch).unwrap();
                    let exact = prep.assign(thr, true, u128::MAX, &mut scratch).unwrap();
                    assert_eq!(cost(&sparse), cost(&exact));
                    // Statistics of the sparse path (which defers to SciPy's rule on tied
                    // optima) equal those of the SciPy-exact path; the large-problem fallback
                    // (no deferral) still finds the same tp.
                    let t64 = f64::from(thr);
                    let a = prep.stats(t64, false, u128::MAX, &mut scratch).unwrap();
                    let mut b = prep.stats(t64, true, u128::MAX, &mut scratch).unwrap();
                    b.report = None;
                    assert_eq!(a, b);
                    let c = prep.stats(t64, true, 0, &mut scratch).unwrap();
                    assert_eq!(c.tp, b.tp);
                }
                // Threshold 0: every assigned pair counts, fillers included, on both paths.
                let a = prep.stats(0.0, false, 0, &mut scratch).unwrap();
                let b = prep.stats(0.0, false, u128::MAX, &mut scratch).unwrap();
                assert_eq!(a.tp, b.tp);
                assert_eq!(
                    a.tp as usize,
                    ov.true_labels().len().min(ov.pred_labels().len())
                );
            }
        }
    }

    #[test]
    fn true_positive_pairs_are_the_counted_matches() {
        let (t, p) = chain();
        let ov = LabelOverlap::new(&t, &p).unwrap();
        for thr in [0.1, 0.5, 0.9] {
            let pairs = true_positive_pairs(&ov, thr, Criterion::Iou).unwrap();
            let s = matching_from_overlap(&ov, &[thr], Criterion::Iou, true).unwrap();
            let r = s[0].report.as_ref().unwrap();
            let want: Vec<(u32, u32)> = r.matched_tps.iter().map(|&k| r.matched_pairs[k]).collect();
            assert_eq!(pairs, want, "{thr}");
            assert_eq!(pairs.len() as u64, s[0].tp);
        }
        assert_eq!(
            true_positive_pairs(&ov, 0.5, Criterion::Iou).unwrap(),
            vec![(1, 5), (2, 6), (3, 9)]
        );
        let z = vec![0u32; t.len()];
        assert!(
            true_positive_pairs(&LabelOverlap::new(&z, &p).unwrap(), 0.5, Criterion::Iou)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn criterion_parses_and_serializes() {
        assert_eq!("IoT".parse::<Criterion>().unwrap(), Criterion::Iot);
        assert!("dice".parse::<Criterion>().is_err());
        let s = matching(&[1, 1], &[1, 1], &[0.5], Criterion::Iou, true).unwrap();
        let j = serde_json::to_string(&s[0]).unwrap();
        assert!(j.starts_with("{\"criterion\":\"iou\",\"thresh\":0.5,\"fp\":0,\"tp\":1,\"fn\":0"));
        assert!(j.contains("\"matched_pairs\":[[1,1]]"), "{j}");
    }
}
