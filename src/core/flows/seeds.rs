//! From converged pixel positions to instance labels: Cellpose 4's `get_masks_torch`.
//!
//! A histogram of final positions (padded by 20 pixels) is searched for local maxima of a 5×5
//! window holding more than 10 pixels; each seed grows 5 steps (8-connected) over histogram bins
//! holding more than 2 pixels inside its 11×11 window; seeds are painted in ascending order of
//! their count, so stronger seeds win overlaps; every pixel takes the label of the bin it ended in.

use rayon::prelude::*;

use super::labels::{remove_labels_over, renumber_first_appearance};

/// Histogram padding around the image (Cellpose's hard-coded `rpad`).
const RPAD: usize = 20;
/// A seed must hold more than this many converged pixels.
const SEED_MIN_COUNT: i32 = 10;
/// Growth only covers histogram bins holding more than this many pixels.
const GROW_MIN_COUNT: i32 = 2;
/// Half-width of the growth window (11×11).
const WIN: usize = 5;
const WIN_SIZE: usize = 2 * WIN + 1;
/// Number of 3×3 dilation steps.
const GROW_STEPS: usize = 5;

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
    let mut hist = vec![0i32; ph * pw];
    for &i in &padded {
        hist[i] += 1;
    }

    // Seeds: bins equal to the maximum of their 5×5 neighbourhood and holding > 10 pixels,
    // in row-major order. Bins with counts lie within [RPAD, size + RPAD), so the window
    // never leaves the padded histogram.
    let mut seeds: Vec<(usize, i32)> = hist
        .par_chunks(pw)
        .enumerate()
        .flat_map_iter(|(y, row)| {
            let hist = &hist;
            row.iter().enumerate().filter_map(move |(x, &h)| {
                if h <= SEED_MIN_COUNT {
                    return None;
                }
                let is_max = (y - 2..=y + 2).all(|yy| {
                    hist[yy * pw + x - 2..=yy * pw + x + 2]
                        .iter()
                        .all(|&v| v <= h)
                });
                is_max.then_some((y * pw + x, h))
            })
        })
        .collect();
    if seeds.is_empty() {
        log::warn!("no seeds found: no masks");
        return vec![0; height * width];
    }
    // Ascending by count; the stable sort keeps row-major order among ties, as torch's CPU sort.
    seeds.sort_by_key(|&(_, h)| h);

    // Grow each seed in its 11×11 window and paint, later (stronger) seeds overwriting.
    let mut painted = vec![0u32; ph * pw];
    let mut region = [false; WIN_SIZE * WIN_SIZE];
    let mut next = [false; WIN_SIZE * WIN_SIZE];
    let mut allowed = [false; WIN_SIZE * WIN_SIZE];
    for (k, &(centre, _)) in seeds.iter().enumerate() {
        let (cy, cx) = (centre / pw, centre % pw);
        let origin = (cy - WIN) * pw + (cx - WIN);
        for wy in 0..WIN_SIZE {
            for wx in 0..WIN_SIZE {
                allowed[wy * WIN_SIZE + wx] = hist[origin + wy * pw + wx] > GROW_MIN_COUNT;
            }
        }
        region.fill(false);
        region[WIN * WIN_SIZE + WIN] = true;
        for _ in 0..GROW_STEPS {
            for wy in 0..WIN_SIZE {
                for wx in 0..WIN_SIZE {
                    let mut any = false;
                    for ny in wy.saturating_sub(1)..=(wy + 1).min(WIN_SIZE - 1) {
                        for nx in wx.saturating_sub(1)..=(wx + 1).min(WIN_SIZE - 1) {
                            any |= region[ny * WIN_SIZE + nx];
                        }
                    }
                    next[wy * WIN_SIZE + wx] = any && allowed[wy * WIN_SIZE + wx];
                }
            }
            std::mem::swap(&mut region, &mut next);
        }
        let label = k as u32 + 1;
        for wy in 0..WIN_SIZE {
            for wx in 0..WIN_SIZE {
                if region[wy * WIN_SIZE + wx] {
                    painted[origin + wy * pw + wx] = label;
                }
            }
        }
    }
    drop(hist);

    let values: Vec<u32> = padded
        .par_iter()
        .with_min_len(1 << 14)
        .map(|&pos| painted[pos])
        .collect();
    let mut labels = vec![0u32; height * width];
    for (&(y, x), v) in points.iter().zip(values) {
        labels[y as usize * width + x as usize] = v;
    }
    drop(painted);

    let big = (height * width) as f64 * max_size_fraction;
    remove_labels_over(&mut labels, big);
    renumber_first_appearance(&mut labels);
    labels
}
