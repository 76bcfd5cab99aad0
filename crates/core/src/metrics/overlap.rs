//! Sparse overlap counting between a ground-truth and a predicted label image.
//!
//! Memory grows with the pixel count and the number of overlapping label pairs, never with the
//! product of the label counts, so label ids up to `u32::MAX`, gaps in the numbering and tens of
//! thousands of objects are all cheap.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::error::{Error, Result};

/// Index meaning "no label / unassigned" in compact index arrays.
pub(crate) const NONE: u32 = u32::MAX;

/// Number of pixels in which one ground-truth object and one predicted object overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct OverlapPair {
    /// Index of the ground-truth object in [`LabelOverlap::true_labels`].
    pub true_index: u32,
    /// Index of the predicted object in [`LabelOverlap::pred_labels`].
    pub pred_index: u32,
    /// Number of pixels carrying both labels (always at least 1).
    pub count: u64,
}

/// The overlap table of two label images of the same size: per-object areas and the count of
/// every overlapping (truth, prediction) object pair. Label 0 is background.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelOverlap {
    n_pixels: usize,
    true_labels: Vec<u32>,
    pred_labels: Vec<u32>,
    true_areas: Vec<u64>,
    pred_areas: Vec<u64>,
    true_background: u64,
    pred_background: u64,
    both_background: u64,
    pairs: Vec<OverlapPair>,
    /// CSR offsets of `pairs` by true index (length `true_labels.len() + 1`).
    row_start: Vec<usize>,
}

/// Labels of one image in compact form: sorted distinct non-zero ids and, per pixel, 0 for
/// background or `1 + rank` of the pixel's id.
pub(crate) struct Compact {
    pub(crate) ids: Vec<u32>,
    pub(crate) index: Vec<u32>,
}

/// Compacts a label image: a lookup table when the largest id is small compared with the pixel
/// count, otherwise a sorted id list and binary search (memory linear in the pixel count).
pub(crate) fn compact(labels: &[u32]) -> Compact {
    let max = labels.iter().copied().max().unwrap_or(0) as usize;
    if max <= labels.len().saturating_mul(2).max(1 << 16) {
        let mut lut = vec![0u32; max + 1];
        for &l in labels {
            lut[l as usize] = 1;
        }
        let mut ids = Vec::new();
        for (l, slot) in lut.iter_mut().enumerate().skip(1) {
            if *slot != 0 {
                ids.push(l as u32);
                *slot = ids.len() as u32;
            }
        }
        lut[0] = 0;
        let index = labels.iter().map(|&l| lut[l as usize]).collect();
        Compact { ids, index }
    } else {
        let mut ids: Vec<u32> = labels.iter().copied().filter(|&l| l != 0).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut last = (0u32, 0u32);
        let index = labels
            .iter()
            .map(|&l| {
                if l == 0 {
                    0
                } else if l == last.0 {
                    last.1
                } else {
                    // `ids` holds every non-zero label of the image, so the search succeeds.
                    let k = ids.binary_search(&l).map_or(0, |p| p as u32 + 1);
                    last = (l, k);
                    k
                }
            })
            .collect();
        Compact { ids, index }
    }
}

/// Largest label for which per-label counters are a plain table (memory linear in the pixel
/// count: at most two entries per pixel).
fn table_limit(n_pixels: usize) -> usize {
    n_pixels.saturating_mul(2).max(1 << 16)
}

/// Pixel count per label: a table indexed by label, or a hash map for large ids.
enum Areas {
    Table(Vec<u64>, usize),
    Map(HashMap<u32, u64, BuildHasherDefault<FxHasher>>, u64),
}

impl Areas {
    /// Starts as a table that grows up to [`table_limit`] and becomes a hash map beyond.
    fn new(n_pixels: usize) -> Self {
        Areas::Table(vec![0; 256], table_limit(n_pixels))
    }

    #[inline]
    fn add(&mut self, label: u32, n: u64) {
        match self {
            Areas::Table(t, _) if (label as usize) < t.len() => t[label as usize] += n,
            Areas::Table(t, limit) => {
                if label as usize <= *limit {
                    t.resize((label as usize + 1).max(2 * t.len()).min(*limit + 1), 0);
                    t[label as usize] += n;
                } else {
                    let mut m: HashMap<u32, u64, BuildHasherDefault<FxHasher>> = HashMap::default();
                    for (l, &a) in t.iter().enumerate().skip(1) {
                        if a > 0 {
                            m.insert(l as u32, a);
                        }
                    }
                    m.insert(label, n);
                    *self = Areas::Map(m, t[0]);
                }
            }
            Areas::Map(_, bg) if label == 0 => *bg += n,
            Areas::Map(m, _) => *m.entry(label).or_insert(0) += n,
        }
    }

    /// Sorted non-zero labels, their areas, and the background count.
    fn finish(self) -> (Vec<u32>, Vec<u64>, u64) {
        match self {
            Areas::Table(t, _) => {
                let mut ids = Vec::new();
                let mut areas = Vec::new();
                for (l, &a) in t.iter().enumerate().skip(1) {
                    if a > 0 {
                        ids.push(l as u32);
                        areas.push(a);
                    }
                }
                (ids, areas, t.first().copied().unwrap_or(0))
            }
            Areas::Map(m, bg) => {
                let mut v: Vec<(u32, u64)> = m.into_iter().collect();
                v.sort_unstable();
                (
                    v.iter().map(|e| e.0).collect(),
                    v.iter().map(|e| e.1).collect(),
                    bg,
                )
            }
        }
    }
}

/// Length of the run of pixels equal to `(tv, pv)` at the start of `t` and `p` (at least 1),
/// scanning 16 pixels at a time.
#[inline]
fn run_length(t: &[u32], p: &[u32], tv: u32, pv: u32) -> usize {
    const B: usize = 16;
    let n = t.len().min(p.len());
    let mut j = 1;
    while j + B <= n {
        let (a, b) = (&t[j..j + B], &p[j..j + B]);
        let mut differ = false;
        for k in 0..B {
            differ |= (a[k] != tv) | (b[k] != pv);
        }
        if differ {
            break;
        }
        j += B;
    }
    while j < n && t[j] == tv && p[j] == pv {
        j += 1;
    }
    j
}

/// The Fx hash (as in rustc): fast for integer keys, which are not adversarial here.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    #[inline]
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }

    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

impl LabelOverlap {
    /// Counts the overlaps of `y_true` and `y_pred`, two label images of the same pixel count
    /// (any layout, as long as both use the same one).
    ///
    /// Errors with [`Error::ShapeMismatch`] when the lengths differ.
    pub fn new(y_true: &[u32], y_pred: &[u32]) -> Result<Self> {
        if y_true.len() != y_pred.len() {
            return Err(Error::shape(format!(
                "ground truth has {} pixels but prediction has {}; label images must have the same shape",
                y_true.len(),
                y_pred.len()
            )));
        }
        Ok(Self::count(y_true, y_pred))
    }

    /// One pass over the runs of identical `(truth, prediction)` pixel pairs: areas go to
    /// per-label counters (a table indexed by label when ids are small, a hash map otherwise)
    /// and overlapping pairs to a hash map, so the work per pixel is one comparison.
    fn count(y_true: &[u32], y_pred: &[u32]) -> Self {
        let n = y_true.len();
        let mut area_t = Areas::new(n);
        let mut area_p = Areas::new(n);
        let mut pair_slot: HashMap<u64, usize, BuildHasherDefault<FxHasher>> = HashMap::default();
        let mut pair_counts: Vec<(u64, u64)> = Vec::new();
        let mut last: Option<(u64, usize)> = None;
        let mut both_background = 0u64;
        let mut i = 0;
        while i < n {
            let (tv, pv) = (y_true[i], y_pred[i]);
            let len = run_length(&y_true[i..], &y_pred[i..], tv, pv);
            let len64 = len as u64;
            area_t.add(tv, len64);
            area_p.add(pv, len64);
            if tv != 0 && pv != 0 {
                let key = (u64::from(tv) << 32) | u64::from(pv);
                let slot = match last {
                    Some((k, slot)) if k == key => slot,
                    _ => {
                        let next = pair_counts.len();
                        let slot = *pair_slot.entry(key).or_insert(next);
                        if slot == next {
                            pair_counts.push((key, 0));
                        }
                        last = Some((key, slot));
                        slot
                    }
                };
                pair_counts[slot].1 += len64;
            } else if tv == 0 && pv == 0 {
                both_background += len64;
            }
            i += len;
        }
        let (true_labels, true_areas, true_background) = area_t.finish();
        let (pred_labels, pred_areas, pred_background) = area_p.finish();
        // Every label of a pair has a non-zero area, so the searches succeed.
        let index = |ids: &[u32], l: u32| ids.binary_search(&l).map_or(0, |k| k as u32);
        let mut pairs: Vec<OverlapPair> = pair_counts
            .iter()
            .map(|&(key, count)| OverlapPair {
                true_index: index(&true_labels, (key >> 32) as u32),
                pred_index: index(&pred_labels, key as u32),
                count,
            })
            .collect();
        pairs.sort_unstable_by_key(|q| (q.true_index, q.pred_index));
        let mut row_start = vec![0usize; true_labels.len() + 1];
        for q in &pairs {
            row_start[q.true_index as usize + 1] += 1;
        }
        for k in 1..row_start.len() {
            row_start[k] += row_start[k - 1];
        }
        LabelOverlap {
            n_pixels: n,
            true_labels,
            pred_labels,
            true_areas,
            pred_areas,
            true_background,
            pred_background,
            both_background,
            pairs,
            row_start,
        }
    }

    /// Number of pixels of each image.
    pub fn n_pixels(&self) -> usize {
        self.n_pixels
    }

    /// The distinct non-zero ground-truth labels, ascending.
    pub fn true_labels(&self) -> &[u32] {
        &self.true_labels
    }

    /// The distinct non-zero predicted labels, ascending.
    pub fn pred_labels(&self) -> &[u32] {
        &self.pred_labels
    }

    /// Pixel count of each ground-truth object, in the order of [`Self::true_labels`].
    pub fn true_areas(&self) -> &[u64] {
        &self.true_areas
    }

    /// Pixel count of each predicted object, in the order of [`Self::pred_labels`].
    pub fn pred_areas(&self) -> &[u64] {
        &self.pred_areas
    }

    /// Number of background (label 0) pixels in the ground truth.
    pub fn true_background(&self) -> u64 {
        self.true_background
    }

    /// Number of background (label 0) pixels in the prediction.
    pub fn pred_background(&self) -> u64 {
        self.pred_background
    }

    /// Number of pixels that are background in both images.
    pub fn both_background(&self) -> u64 {
        self.both_background
    }

    /// Every overlapping object pair, sorted by `(true_index, pred_index)`.
    pub fn pairs(&self) -> &[OverlapPair] {
        &self.pairs
    }

    /// The overlapping pairs of ground-truth object `true_index`, sorted by `pred_index`.
    pub fn pairs_of_true(&self, true_index: usize) -> &[OverlapPair] {
        match (
            self.row_start.get(true_index),
            self.row_start.get(true_index + 1),
        ) {
            (Some(&a), Some(&b)) => &self.pairs[a..b],
            _ => &[],
        }
    }

    /// Position in [`Self::pairs`] of the pair `(true_index, pred_index)`, if they overlap.
    pub fn find_pair(&self, true_index: usize, pred_index: usize) -> Option<usize> {
        let start = *self.row_start.get(true_index)?;
        let row = self.pairs_of_true(true_index);
        row.binary_search_by_key(&(pred_index as u32), |q| q.pred_index)
            .ok()
            .map(|k| start + k)
    }

    /// Largest ground-truth label (0 when there is none).
    pub fn max_true_label(&self) -> u32 {
        self.true_labels.last().copied().unwrap_or(0)
    }

    /// Largest predicted label (0 when there is none).
    pub fn max_pred_label(&self) -> u32 {
        self.pred_labels.last().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_pairs_and_areas() {
        let t = [0, 1, 1, 5, 5, 5, 0, 0];
        let p = [7, 7, 0, 7, 9, 9, 9, 0];
        let o = LabelOverlap::new(&t, &p).unwrap();
        assert_eq!(o.true_labels(), &[1, 5]);
        assert_eq!(o.pred_labels(), &[7, 9]);
        assert_eq!(o.true_areas(), &[2, 3]);
        assert_eq!(o.pred_areas(), &[3, 3]);
        assert_eq!(o.true_background(), 3);
        assert_eq!(o.pred_background(), 2);
        assert_eq!(o.both_background(), 1);
        let pairs: Vec<_> = o
            .pairs()
            .iter()
            .map(|q| (q.true_index, q.pred_index, q.count))
            .collect();
        assert_eq!(pairs, vec![(0, 0, 1), (1, 0, 1), (1, 1, 2)]);
        assert_eq!(o.find_pair(1, 1), Some(2));
        assert_eq!(o.find_pair(0, 1), None);
    }

    #[test]
    fn huge_labels_use_hash_maps() {
        let t = [u32::MAX, u32::MAX, 0, 3_000_000_000, u32::MAX];
        let p = [1, 4_000_000_000, 4_000_000_000, 0, u32::MAX];
        let o = LabelOverlap::new(&t, &p).unwrap();
        assert_eq!(o.true_labels(), &[3_000_000_000, u32::MAX]);
        assert_eq!(o.max_true_label(), u32::MAX);
        assert_eq!(o.pred_labels(), &[1, 4_000_000_000, u32::MAX]);
        let pairs: Vec<_> = o
            .pairs()
            .iter()
            .map(|q| (q.true_index, q.pred_index, q.count))
            .collect();
        assert_eq!(pairs, vec![(1, 0, 1), (1, 1, 1), (1, 2, 1)]);
    }

    #[test]
    fn random_images_match_a_naive_count() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |m: u32| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % u64::from(m)) as u32
        };
        for case in 0..200 {
            let n = next(300) as usize;
            let scale = if case % 3 == 0 { 1_000_000_007 } else { 1 };
            let t: Vec<u32> = (0..n).map(|_| next(6).wrapping_mul(scale)).collect();
            let p: Vec<u32> = (0..n).map(|_| next(5) * 3).collect();
            let o = LabelOverlap::new(&t, &p).unwrap();
            let mut naive = std::collections::BTreeMap::new();
            for (&a, &b) in t.iter().zip(&p) {
                if a != 0 && b != 0 {
                    *naive.entry((a, b)).or_insert(0u64) += 1;
                }
            }
            let got: std::collections::BTreeMap<(u32, u32), u64> = o
                .pairs()
                .iter()
                .map(|q| {
                    (
                        (
                            o.true_labels()[q.true_index as usize],
                            o.pred_labels()[q.pred_index as usize],
                        ),
                        q.count,
                    )
                })
                .collect();
            assert_eq!(got, naive);
            let area: u64 = o.true_areas().iter().sum();
            assert_eq!(area + o.true_background(), n as u64);
            let both = t
                .iter()
                .zip(&p)
                .filter(|(a, b)| **a == 0 && **b == 0)
                .count();
            assert_eq!(o.both_background(), both as u64);
        }
    }

    #[test]
    fn empty_and_mismatched() {
        let o = LabelOverlap::new(&[], &[]).unwrap();
        assert_eq!(o.n_pixels(), 0);
        assert!(o.pairs().is_empty());
        assert_eq!(o.max_true_label(), 0);
        let e = LabelOverlap::new(&[0, 1], &[1]).unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch(_)), "{e}");
    }
}
