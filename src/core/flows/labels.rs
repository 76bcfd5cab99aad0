//! Label-image bookkeeping shared by the flows pipeline: renumbering as `fastremap.renumber`,
//! removal of too large and too small masks, and hole filling as Cellpose's
//! `fill_holes_and_remove_small_masks`.

use std::collections::HashMap;
use std::ops::Range;

use rayon::prelude::*;

/// Images with fewer pixels are processed on one thread (the pool's overhead outweighs the gain).
const PAR_MIN_PIXELS: usize = 1 << 16;

/// Splits `0..n` into row-aligned contiguous ranges, one per job, for passes that keep a
/// per-job table of `table_len` entries: one range when the image is small or the tables would
/// be large relative to the image.
pub(crate) fn row_ranges(n: usize, width: usize, table_len: usize) -> Vec<Range<usize>> {
    let rows = n / width.max(1);
    let jobs = (2 * rayon::current_num_threads()).min(rows).max(1);
    if n < PAR_MIN_PIXELS || jobs == 1 || table_len.saturating_mul(jobs) > n {
        return std::iter::once(0..n).collect();
    }
    let per = rows.div_ceil(jobs);
    (0..jobs)
        .map(|j| (j * per).min(rows) * width..((j + 1) * per).min(rows) * width)
        .filter(|r| !r.is_empty())
        .collect()
}

/// Largest label (0 for an empty image), in parallel.
pub(crate) fn max_label(labels: &[u32]) -> u32 {
    labels
        .par_iter()
        .with_min_len(PAR_MIN_PIXELS)
        .copied()
        .max()
        .unwrap_or(0)
}

/// Replaces each label `l` by `map[l]`, in parallel.
pub(crate) fn apply_map(labels: &mut [u32], map: &[u32]) {
    labels
        .par_iter_mut()
        .with_min_len(PAR_MIN_PIXELS)
        .for_each(|l| *l = map[*l as usize]);
}

/// Renumbers non-zero labels to 1..n in order of first appearance in a row-major scan, as
/// `fastremap.renumber(preserve_zero=True)`. Returns n.
pub(crate) fn renumber_first_appearance(labels: &mut [u32]) -> u32 {
    let max = max_label(labels);
    let mut next = 0u32;
    // Dense table when the label space is small relative to the image, a map otherwise.
    if (max as usize) <= labels.len().saturating_mul(2).max(1 << 16) {
        let table = max as usize + 1;
        // Each range lists its labels in order of first appearance; the ranges, merged in
        // order, give the image's order of first appearance.
        let ranges = row_ranges(labels.len(), 1, table);
        let firsts: Vec<Vec<u32>> = ranges
            .par_iter()
            .map(|r| {
                let mut seen = vec![false; table];
                let mut order = Vec::new();
                for &l in &labels[r.clone()] {
                    if l != 0 && !seen[l as usize] {
                        seen[l as usize] = true;
                        order.push(l);
                    }
                }
                order
            })
            .collect();
        let mut map = vec![0u32; table];
        for l in firsts.into_iter().flatten() {
            let m = &mut map[l as usize];
            if *m == 0 {
                next += 1;
                *m = next;
            }
        }
        apply_map(labels, &map);
    } else {
        let mut map: HashMap<u32, u32> = HashMap::new();
        for l in labels.iter_mut() {
            if *l != 0 {
                let m = map.entry(*l).or_insert_with(|| {
                    next += 1;
                    next
                });
                *l = *m;
            }
        }
    }
    next
}

/// Pixel count of each label 0..=max.
pub(crate) fn label_counts(labels: &[u32]) -> Vec<u64> {
    let max = max_label(labels) as usize;
    let ranges = row_ranges(labels.len(), 1, max + 1);
    ranges
        .par_iter()
        .map(|r| {
            let mut counts = vec![0u64; max + 1];
            for &l in &labels[r.clone()] {
                counts[l as usize] += 1;
            }
            counts
        })
        .reduce_with(|mut a, b| {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
            a
        })
        .unwrap_or_else(|| vec![0u64; max + 1])
}

/// Sets to 0 every non-zero label whose pixel count exceeds `limit`.
pub(crate) fn remove_labels_over(labels: &mut [u32], limit: f64) {
    let counts = label_counts(labels);
    let remove: Vec<bool> = counts
        .iter()
        .enumerate()
        .map(|(l, &c)| l != 0 && c as f64 > limit)
        .collect();
    if remove.iter().any(|&r| r) {
        let map: Vec<u32> = remove
            .iter()
            .enumerate()
            .map(|(l, &r)| if r { 0 } else { l as u32 })
            .collect();
        apply_map(labels, &map);
    }
}

/// Removes masks with fewer than `min_size` pixels and renumbers, as Cellpose does with
/// `fastremap.unique`: the first unique value is assumed to be background, so when no pixel is 0
/// the smallest label is never tested.
pub(crate) fn remove_small(labels: &mut [u32], min_size: i64) {
    let counts = label_counts(labels);
    let mut present = counts
        .iter()
        .enumerate()
        .filter(|&(_, &c)| c > 0)
        .map(|(l, _)| l);
    // Skip uniq[0] (background, or the smallest label when there is no background).
    present.next();
    let remove_list: Vec<usize> = present.filter(|&l| (counts[l] as i64) < min_size).collect();
    if !remove_list.is_empty() {
        let mut map: Vec<u32> = (0..counts.len() as u32).collect();
        for l in remove_list {
            map[l] = 0;
        }
        apply_map(labels, &map);
    }
    renumber_first_appearance(labels);
}

/// A label's bounding box `(y0, y1, x0, x1)` (exclusive ends).
pub(crate) type BoundingBox = (usize, usize, usize, usize);

fn merge_box(b: &mut Option<BoundingBox>, o: BoundingBox) {
    match b {
        None => *b = Some(o),
        Some((y0, y1, x0, x1)) => {
            *y0 = (*y0).min(o.0);
            *y1 = (*y1).max(o.1);
            *x0 = (*x0).min(o.2);
            *x1 = (*x1).max(o.3);
        }
    }
}

/// Bounding box of each label 1..=max as `(y0, y1, x0, x1)` (exclusive ends), `None` where a
/// label is absent: `scipy.ndimage.find_objects`.
pub(crate) fn find_objects(
    labels: &[u32],
    height: usize,
    width: usize,
) -> Vec<Option<BoundingBox>> {
    let max = max_label(&labels[..height * width]) as usize;
    let ranges = row_ranges(height * width, width, 4 * max);
    ranges
        .par_iter()
        .map(|r| {
            let mut boxes: Vec<Option<BoundingBox>> = vec![None; max];
            for y in r.start / width..r.end / width {
                for (x, &l) in labels[y * width..(y + 1) * width].iter().enumerate() {
                    if l != 0 {
                        merge_box(&mut boxes[l as usize - 1], (y, y + 1, x, x + 1));
                    }
                }
            }
            boxes
        })
        .reduce_with(|mut a, b| {
            for (x, y) in a.iter_mut().zip(b) {
                if let Some(y) = y {
                    merge_box(x, y);
                }
            }
            a
        })
        .unwrap_or_else(|| vec![None; max])
}

/// Scratch buffers of [`enclosed_pixels`].
#[derive(Default)]
struct FloodScratch {
    inside: Vec<bool>,
    outside: Vec<bool>,
    stack: Vec<usize>,
}

/// Image indices of the pixels of box `b` that are neither `label` nor reachable from the box
/// border through non-`label` pixels (4-connected): the mask's holes.
fn enclosed_pixels(
    labels: &[u32],
    width: usize,
    label: u32,
    b: BoundingBox,
    s: &mut FloodScratch,
) -> Vec<usize> {
    let (y0, y1, x0, x1) = b;
    let (h, w) = (y1 - y0, x1 - x0);
    let FloodScratch {
        inside,
        outside,
        stack,
    } = s;
    inside.clear();
    inside.extend((0..h).flat_map(|y| {
        labels[(y0 + y) * width + x0..(y0 + y) * width + x1]
            .iter()
            .map(|&l| l == label)
    }));
    // Flood the complement from the box border (4-connected).
    outside.clear();
    outside.resize(h * w, false);
    stack.clear();
    for y in 0..h {
        for x in 0..w {
            if (y == 0 || x == 0 || y == h - 1 || x == w - 1) && !inside[y * w + x] {
                outside[y * w + x] = true;
                stack.push(y * w + x);
            }
        }
    }
    while let Some(i) = stack.pop() {
        let (y, x) = (i / w, i % w);
        let mut visit = |j: usize| {
            if !inside[j] && !outside[j] {
                outside[j] = true;
                stack.push(j);
            }
        };
        if y > 0 {
            visit(i - w);
        }
        if y + 1 < h {
            visit(i + w);
        }
        if x > 0 {
            visit(i - 1);
        }
        if x + 1 < w {
            visit(i + 1);
        }
    }
    let mut holes = Vec::new();
    for y in 0..h {
        for x in 0..w {
            if !outside[y * w + x] && !inside[y * w + x] {
                holes.push((y0 + y) * width + x0 + x);
            }
        }
    }
    holes
}

/// Fills holes of each mask and relabels, as the middle step of Cellpose's
/// `fill_holes_and_remove_small_masks`: masks are visited in increasing label order, each over
/// its bounding box as it was before any filling; background (and other masks) enclosed by the
/// mask within that box (4-connected, not reaching the box border) takes the mask's label, which
/// becomes the count of present labels so far.
///
/// When labels are 1..n without gaps (as after [`remove_small`]) each mask keeps its label, so
/// only holes change: they are found for all masks in parallel on the unfilled image, then
/// applied in label order; a mask whose box an earlier fill touched is redone on the current
/// image, which keeps the result that of the sequential visit.
pub(crate) fn fill_holes(labels: &mut [u32], height: usize, width: usize) {
    let boxes = find_objects(labels, height, width);
    if boxes.iter().all(Option::is_some) {
        let found: Vec<Vec<usize>> = {
            let labels = &*labels;
            boxes
                .par_iter()
                .enumerate()
                .map_init(FloodScratch::default, |s, (i, b)| {
                    let b = b.expect("all boxes present");
                    enclosed_pixels(labels, width, i as u32 + 1, b, s)
                })
                .collect()
        };
        let mut scratch = FloodScratch::default();
        let mut touched: Vec<BoundingBox> = Vec::new();
        for (i, (b, holes)) in boxes.iter().zip(found).enumerate() {
            let b = b.expect("all boxes present");
            let label = i as u32 + 1;
            let overlaps = |t: &BoundingBox| t.0 < b.1 && b.0 < t.1 && t.2 < b.3 && b.2 < t.3;
            let holes = if touched.iter().any(overlaps) {
                enclosed_pixels(labels, width, label, b, &mut scratch)
            } else {
                holes
            };
            if holes.is_empty() {
                continue;
            }
            let mut t: Option<BoundingBox> = None;
            for &k in &holes {
                labels[k] = label;
                let (y, x) = (k / width, k % width);
                merge_box(&mut t, (y, y + 1, x, x + 1));
            }
            touched.extend(t);
        }
        return;
    }
    fill_holes_sequential(labels, width, &boxes);
}

/// [`fill_holes`] visiting masks one after another (any label values).
fn fill_holes_sequential(labels: &mut [u32], width: usize, boxes: &[Option<BoundingBox>]) {
    let mut next = 0u32;
    let mut scratch = FloodScratch::default();
    for (i, b) in boxes.iter().enumerate() {
        let Some(b) = *b else { continue };
        let label = i as u32 + 1;
        next += 1;
        let holes = enclosed_pixels(labels, width, label, b, &mut scratch);
        let (y0, y1, x0, x1) = b;
        for y in y0..y1 {
            for l in &mut labels[y * width + x0..y * width + x1] {
                if *l == label {
                    *l = next;
                }
            }
        }
        for k in holes {
            labels[k] = next;
        }
    }
}

/// Cellpose's `fill_holes_and_remove_small_masks(masks, min_size)`.
pub(crate) fn fill_holes_and_remove_small(
    labels: &mut [u32],
    height: usize,
    width: usize,
    min_size: i64,
) {
    if min_size > 0 {
        remove_small(labels, min_size);
    }
    fill_holes(labels, height, width);
    if min_size > 0 {
        remove_small(labels, min_size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renumber_follows_first_appearance() {
        let mut l = vec![5, 0, 3, 5, 2, 7];
        assert_eq!(renumber_first_appearance(&mut l), 4);
        assert_eq!(l, vec![1, 0, 2, 1, 3, 4]);
    }

    #[test]
    fn renumber_handles_huge_label_values() {
        let mut l = vec![u32::MAX, 0, 7, u32::MAX];
        assert_eq!(renumber_first_appearance(&mut l), 2);
        assert_eq!(l, vec![1, 0, 2, 1]);
    }

    #[test]
    fn small_mask_quirk_without_background() {
        // No zero pixel: the smallest label (1) is taken for background and never removed.
        let mut l = vec![1, 2, 2, 2, 3, 3, 3, 3];
        remove_small(&mut l, 3);
        assert_eq!(l, vec![1, 2, 2, 2, 3, 3, 3, 3]);
        let mut l = vec![0, 1, 2, 2, 2, 3, 3, 3];
        remove_small(&mut l, 3);
        assert_eq!(l, vec![0, 0, 1, 1, 1, 2, 2, 2]);
    }

    #[test]
    fn parallel_fill_matches_sequential_visit_on_nested_rings() {
        // Hollow rectangles (some nested, some overlapping) so that fills touch later masks.
        let (h, w) = (64usize, 80usize);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rand = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..50 {
            let mut l = vec![0u32; h * w];
            for label in 1..=12u32 {
                let (y0, x0) = (rand(h - 4), rand(w - 4));
                let (y1, x1) = (y0 + 3 + rand(h - y0 - 3), x0 + 3 + rand(w - x0 - 3));
                for y in y0..y1 {
                    for x in x0..x1 {
                        let ring = y == y0 || y == y1 - 1 || x == x0 || x == x1 - 1;
                        if ring || rand(4) == 0 {
                            l[y * w + x] = label;
                        }
                    }
                }
            }
            renumber_first_appearance(&mut l);
            let mut want = l.clone();
            let boxes = find_objects(&want, h, w);
            fill_holes_sequential(&mut want, w, &boxes);
            fill_holes(&mut l, h, w);
            assert_eq!(l, want);
        }
    }

    #[test]
    fn fill_holes_is_four_connected_and_overwrites_nested_masks() {
        #[rustfmt::skip]
        let mut l = vec![
            1, 1, 1, 1, 0,
            1, 2, 0, 1, 0,
            1, 1, 1, 0, 0,
            0, 0, 0, 0, 0,
        ];
        fill_holes(&mut l, 4, 5);
        #[rustfmt::skip]
        let want = vec![
            1, 1, 1, 1, 0,
            1, 1, 1, 1, 0,
            1, 1, 1, 0, 0,
            0, 0, 0, 0, 0,
        ];
        assert_eq!(l, want);
    }
}
