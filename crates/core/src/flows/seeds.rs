//! From converged pixel positions to instance labels: Cellpose 4's `get_masks_torch`.
//!
//! A histogram of final positions (padded by 20 pixels) is searched for local maxima of a 5×5
//! window holding more than 10 pixels; each seed grows 5 steps (8-connected) over histogram bins
//! holding more than 2 pixels inside its 11×11 window; seeds are painted in ascending order of
//! their count, so stronger seeds win overlaps; every pixel takes the label of the bin it ended in.

use rayon::prelude::*;

use super::torch_sort;

/// Histogram padding around the image (Cellpose's hard-coded `rpad`).
pub(super) const RPAD: usize = 20;
/// A seed must hold more than this many converged pixels.
pub(super) const SEED_MIN_COUNT: i32 = 10;
/// Growth only covers histogram bins holding more than this many pixels.
pub(super) const GROW_MIN_COUNT: i32 = 2;
/// Half-width of the growth window (11×11).
pub(super) const WIN: usize = 5;
pub(super) const WIN_SIZE: usize = 2 * WIN + 1;
/// Number of 3×3 dilation steps.
pub(super) const GROW_STEPS: usize = 5;

/// Assigns a label to each point. `final_pos` are the integer final positions `(y, x)` of the
/// cell pixels listed (row-major) in `points`. Returns a `height * width` label image numbered
/// 1..n in order of first appearance, with masks larger than `max_size_fraction` of the image
/// removed.
pub(crate) fn get_masks(
    final_pos: &[(i32, i32)],
    points: &[(u32, u32)],
    height: usize,
    width: usize,
    max_size_fraction: f64,
) -> Vec<u32> {
    let ph = height + 2 * RPAD;
    let pw = width + 2 * RPAD;
    // Padded positions, clamped as Cellpose clamps them.
    let padded: Vec<usize> = final_pos
        .par_iter()
        .with_min_len(1 << 14)
        .map(|&(y, x)| {
            let y = (y as i64 + RPAD as i64).clamp(0, (height + RPAD - 1) as i64) as usize;
            let x = (x as i64 + RPAD as i64).clamp(0, (width + RPAD - 1) as i64) as usize;
            y * pw + x
        })
        .collect();
    // The histogram; a bin becomes a seed candidate when its count passes the seed minimum
    // (exactly once per bin), so no scan of the whole histogram is needed.
    let (mut hist, candidates) = histogram(&padded, ph * pw);

    // Seeds: candidates equal to the maximum of their 5×5 neighbourhood. Bins with counts lie
    // within [RPAD, size + RPAD), so the window never leaves the padded histogram.
    let mut seeds: Vec<(i32, usize)> = candidates
        .par_iter()
        .filter_map(|&i| {
            let h = hist[i];
            let (y, x) = (i / pw, i % pw);
            let is_max = (y - 2..=y + 2).all(|yy| {
                hist[yy * pw + x - 2..=yy * pw + x + 2]
                    .iter()
                    .all(|&v| v <= h)
            });
            is_max.then_some((h, i))
        })
        .collect();
    drop(candidates);
    if seeds.is_empty() {
        log::warn!("no seeds found: no masks");
        return vec![0; height * width];
    }
    // torch.nonzero lists seeds in row-major order; Cellpose paints them in the order of
    // torch's CPU argsort of their counts, equal counts included.
    seeds.par_sort_unstable_by_key(|s| s.1);
    torch_sort::argsort(&mut seeds);

    // Grow each seed in its 11×11 window (independent of the others: growth reads only the
    // histogram), then paint in order, later (stronger) seeds overwriting. Painted bins hold
    // the negated label in the histogram, which is no longer needed.
    let regions: Vec<u128> = seeds
        .par_iter()
        .map(|&(_, centre)| grow(&hist, pw, centre))
        .collect();
    for (k, (&(_, centre), &region)) in seeds.iter().zip(&regions).enumerate() {
        let label = -(k as i32 + 1);
        let origin = centre - WIN * pw - WIN;
        for b in BitIter(region) {
            hist[origin + (b / WIN_SIZE) * pw + b % WIN_SIZE] = label;
        }
    }
    drop(regions);
    let n_seeds = seeds.len();
    drop(seeds);

    // Each point takes its bin's label; masks over the size limit are removed and the rest
    // numbered by first appearance in the row-major scan, which is the order of `points`.
    let values = point_labels(hist, padded, n_seeds, height * width, max_size_fraction);
    let mut labels = vec![0u32; height * width];
    for (&(y, x), v) in points.iter().zip(values) {
        labels[y as usize * width + x as usize] = v;
    }
    labels
}

/// The histogram of padded bins (`len` bins) and the bins whose count passes the seed minimum,
/// each listed once, when it does (so no scan of the whole histogram is needed).
pub(super) fn histogram(padded: &[usize], len: usize) -> (Vec<i32>, Vec<usize>) {
    let mut hist = vec![0i32; len];
    let mut candidates = Vec::new();
    for &i in padded {
        hist[i] += 1;
        if hist[i] == SEED_MIN_COUNT + 1 {
            candidates.push(i);
        }
    }
    (hist, candidates)
}

/// The label of each point once the seeds are painted (bins holding `-(k + 1)` for seed `k`):
/// masks of more than `max_size_fraction` of the `n` pixels removed, the others numbered 1..m
/// by first appearance in the points' order.
pub(super) fn point_labels(
    hist: Vec<i32>,
    padded: Vec<usize>,
    n_seeds: usize,
    n: usize,
    max_size_fraction: f64,
) -> Vec<u32> {
    let mut values: Vec<u32> = padded
        .par_iter()
        .with_min_len(1 << 14)
        .map(|&pos| hist[pos].min(0).unsigned_abs())
        .collect();
    drop(hist);
    drop(padded);
    let mut counts = vec![0u64; n_seeds + 1];
    for &v in &values {
        counts[v as usize] += 1;
    }
    let big = n as f64 * max_size_fraction;
    let mut map = vec![0u32; n_seeds + 1];
    let mut next = 0u32;
    for &v in &values {
        let m = &mut map[v as usize];
        if v != 0 && *m == 0 && counts[v as usize] as f64 <= big {
            next += 1;
            *m = next;
        }
    }
    for v in &mut values {
        *v = map[*v as usize];
    }
    values
}

/// The 11×11 region a seed at padded bin `centre` grows to: 5 steps of 8-connected dilation
/// restricted to bins holding more than [`GROW_MIN_COUNT`] pixels, as a bit set (bit
/// `wy * 11 + wx`).
fn grow(hist: &[i32], pw: usize, centre: usize) -> u128 {
    let origin = centre - WIN * pw - WIN;
    let mut allowed = 0u128;
    for wy in 0..WIN_SIZE {
        for wx in 0..WIN_SIZE {
            if hist[origin + wy * pw + wx] > GROW_MIN_COUNT {
                allowed |= 1 << (wy * WIN_SIZE + wx);
            }
        }
    }
    // Column masks keep horizontal shifts from wrapping into the neighbouring row.
    let mut not_first_col = 0u128;
    let mut not_last_col = 0u128;
    for wy in 0..WIN_SIZE {
        for wx in 0..WIN_SIZE {
            let bit = 1u128 << (wy * WIN_SIZE + wx);
            if wx != 0 {
                not_first_col |= bit;
            }
            if wx != WIN_SIZE - 1 {
                not_last_col |= bit;
            }
        }
    }
    let full = (1u128 << (WIN_SIZE * WIN_SIZE)) - 1;
    let mut region = 1u128 << (WIN * WIN_SIZE + WIN);
    for _ in 0..GROW_STEPS {
        // Horizontal 3-neighbourhood, then vertical: the 3×3 dilation.
        let row = region | ((region << 1) & not_first_col) | ((region >> 1) & not_last_col);
        let dilated = (row | (row << WIN_SIZE) | (row >> WIN_SIZE)) & full;
        region = dilated & allowed;
    }
    region
}

/// The set bits of a `u128`, lowest first.
struct BitIter(u128);

impl Iterator for BitIter {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let b = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(b)
    }
}
