//! Label-image bookkeeping shared by the flows pipeline: renumbering as `fastremap.renumber`,
//! removal of too large and too small masks, and hole filling as Cellpose's
//! `fill_holes_and_remove_small_masks`.

use std::collections::HashMap;

/// Renumbers non-zero labels to 1..n in order of first appearance in a row-major scan, as
/// `fastremap.renumber(preserve_zero=True)`. Returns n.
pub(crate) fn renumber_first_appearance(labels: &mut [u32]) -> u32 {
    let max = labels.iter().copied().max().unwrap_or(0);
    let mut next = 0u32;
    // Dense table when the label space is small relative to the image, a map otherwise.
    if (max as usize) <= labels.len().saturating_mul(2).max(1 << 16) {
        let mut map = vec![0u32; max as usize + 1];
        for l in labels.iter_mut() {
            if *l != 0 {
                let m = &mut map[*l as usize];
                if *m == 0 {
                    next += 1;
                    *m = next;
                }
                *l = *m;
            }
        }
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
    let max = labels.iter().copied().max().unwrap_or(0) as usize;
    let mut counts = vec![0u64; max + 1];
    for &l in labels {
        counts[l as usize] += 1;
    }
    counts
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
        for l in labels.iter_mut() {
            if remove[*l as usize] {
                *l = 0;
            }
        }
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
        let mut remove = vec![false; counts.len()];
        for l in remove_list {
            remove[l] = true;
        }
        for l in labels.iter_mut() {
            if remove[*l as usize] {
                *l = 0;
            }
        }
    }
    renumber_first_appearance(labels);
}

/// Bounding box of each label 1..=max as `(y0, y1, x0, x1)` (exclusive ends), `None` where a
/// label is absent: `scipy.ndimage.find_objects`.
pub(crate) fn find_objects(
    labels: &[u32],
    height: usize,
    width: usize,
) -> Vec<Option<(usize, usize, usize, usize)>> {
    let max = labels.iter().copied().max().unwrap_or(0) as usize;
    let mut boxes: Vec<Option<(usize, usize, usize, usize)>> = vec![None; max];
    for y in 0..height {
        for (x, &l) in labels[y * width..(y + 1) * width].iter().enumerate() {
            if l == 0 {
                continue;
            }
            let b = &mut boxes[l as usize - 1];
            match b {
                None => *b = Some((y, y + 1, x, x + 1)),
                Some((y0, y1, x0, x1)) => {
                    *y0 = (*y0).min(y);
                    *y1 = (*y1).max(y + 1);
                    *x0 = (*x0).min(x);
                    *x1 = (*x1).max(x + 1);
                }
            }
        }
    }
    boxes
}

/// Fills holes of each mask and relabels, as the middle step of Cellpose's
/// `fill_holes_and_remove_small_masks`: masks are visited in increasing label order, each over
/// its bounding box as it was before any filling; background (and other masks) enclosed by the
/// mask within that box (4-connected, not reaching the box border) takes the mask's label, which
/// becomes the count of present labels so far.
pub(crate) fn fill_holes(labels: &mut [u32], height: usize, width: usize) {
    let boxes = find_objects(labels, height, width);
    let mut next = 0u32;
    let mut inside: Vec<bool> = Vec::new();
    let mut outside: Vec<bool> = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    for (i, b) in boxes.iter().enumerate() {
        let Some((y0, y1, x0, x1)) = *b else { continue };
        let label = i as u32 + 1;
        next += 1;
        let (h, w) = (y1 - y0, x1 - x0);
        inside.clear();
        inside.resize(h * w, false);
        for y in 0..h {
            for x in 0..w {
                inside[y * w + x] = labels[(y0 + y) * width + x0 + x] == label;
            }
        }
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
        for y in 0..h {
            for x in 0..w {
                if !outside[y * w + x] {
                    labels[(y0 + y) * width + x0 + x] = next;
                }
            }
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
