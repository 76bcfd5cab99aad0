//! Label-image bookkeeping shared by the flows pipeline: renumbering as `fastremap.renumber`,
//! removal of too large and too small masks, and hole filling as Cellpose's
//! `fill_holes_and_remove_small_masks`.

use std::ops::Range;

use rayon::prelude::*;

/// Images with fewer pixels are processed on one thread (the pool's overhead outweighs the gain).
pub(crate) const PAR_MIN_PIXELS: usize = 1 << 16;

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

/// Replaces label values by their ranks among the distinct values (0 stays 0), keeping their
/// order, so that per-label tables stay small whatever the values. Returns the largest rank.
pub(crate) fn compact_labels(labels: &mut [u32]) -> u32 {
    let mut values: Vec<u32> = labels.iter().copied().filter(|&l| l != 0).collect();
    values.par_sort_unstable();
    values.dedup();
    labels
        .par_iter_mut()
        .with_min_len(PAR_MIN_PIXELS)
        .for_each(|l| {
            if *l != 0 {
                *l = values.binary_search(l).expect("value listed") as u32 + 1;
            }
        });
    values.len() as u32
}

/// Per-label results of one scan of a label image (index = label value, 0 = background).
pub(crate) struct LabelStats {
    /// Pixel counts.
    pub(crate) counts: Vec<u64>,
    /// Row-major index of the label's first pixel (`usize::MAX`: absent).
    pub(crate) first: Vec<usize>,
    /// Bounding boxes (`None`: absent; the background's is not kept).
    pub(crate) boxes: Vec<Option<BoundingBox>>,
}

impl LabelStats {
    fn empty(table: usize) -> Self {
        LabelStats {
            counts: vec![0; table],
            first: vec![usize::MAX; table],
            boxes: vec![None; table],
        }
    }
}

/// Pixel counts, first appearances and bounding boxes of labels 0..=max in one parallel pass.
pub(crate) fn label_stats(labels: &[u32], width: usize, max: u32) -> LabelStats {
    let table = max as usize + 1;
    let ranges = row_ranges(labels.len(), width, 6 * table);
    ranges
        .par_iter()
        .map(|r| {
            let mut st = LabelStats::empty(table);
            // Background pixels are counted at the end, by difference: incrementing one
            // counter for most pixels would chain every pixel's update on the previous one.
            let mut labelled = 0u64;
            for y in r.start / width..r.end / width {
                for (x, &l) in labels[y * width..(y + 1) * width].iter().enumerate() {
                    let l = l as usize;
                    if l != 0 {
                        st.counts[l] += 1;
                        labelled += 1;
                        if st.first[l] == usize::MAX {
                            st.first[l] = y * width + x;
                        }
                        merge_box(&mut st.boxes[l], (y, y + 1, x, x + 1));
                    }
                }
            }
            st.counts[0] = (r.end / width - r.start / width) as u64 * width as u64 - labelled;
            st
        })
        .reduce_with(|mut a, b| {
            for l in 0..table {
                a.counts[l] += b.counts[l];
                a.first[l] = a.first[l].min(b.first[l]);
                if let Some(o) = b.boxes[l] {
                    merge_box(&mut a.boxes[l], o);
                }
            }
            a
        })
        .unwrap_or_else(|| LabelStats::empty(table))
}

/// The map that keeps the present non-zero labels for which `keep` holds and numbers them 1..n
/// by first appearance in the row-major scan (`fastremap.renumber`); all others map to 0.
/// Returns the map and n.
pub(crate) fn first_appearance_map(
    st: &LabelStats,
    keep: impl Fn(usize) -> bool,
) -> (Vec<u32>, u32) {
    let mut kept: Vec<usize> = (1..st.counts.len())
        .filter(|&l| st.counts[l] > 0 && keep(l))
        .collect();
    kept.sort_unstable_by_key(|&l| st.first[l]);
    let mut map = vec![0u32; st.counts.len()];
    for (k, &l) in kept.iter().enumerate() {
        map[l] = k as u32 + 1;
    }
    (map, kept.len() as u32)
}

/// The map that removes masks with fewer than `min_size` pixels and numbers the others 1..n
/// by first appearance, as Cellpose does with `fastremap.unique` and `renumber`: the first
/// unique value is assumed to be background, so when no pixel is 0 the smallest label is
/// never tested. Returns the map and n.
fn remove_small_map(st: &LabelStats, min_size: i64) -> (Vec<u32>, u32) {
    let assumed_background = (0..st.counts.len()).find(|&l| st.counts[l] > 0);
    first_appearance_map(st, |l| {
        Some(l) == assumed_background || st.counts[l] as i64 >= min_size
    })
}

/// Removes masks with fewer than `min_size` pixels and renumbers, as Cellpose does with
/// `fastremap.unique`: the first unique value is assumed to be background, so when no pixel is 0
/// the smallest label is never tested. Returns the bounding boxes of the new labels 1..=n.
pub(crate) fn remove_small(
    labels: &mut [u32],
    width: usize,
    min_size: i64,
) -> Vec<Option<BoundingBox>> {
    let mut max = max_label(labels);
    // Per-label tables cost ~56 bytes a label: values far above the number of masks an image
    // can hold are compacted first.
    if max as usize > (labels.len() / 4).max(PAR_MIN_PIXELS) {
        max = compact_labels(labels);
    }
    let st = label_stats(labels, width, max);
    let (map, n) = remove_small_map(&st, min_size);
    if map.iter().enumerate().any(|(l, &m)| m as usize != l) {
        apply_map(labels, &map);
    }
    let mut boxes = vec![None; n as usize];
    for (l, &m) in map.iter().enumerate() {
        if m != 0 {
            boxes[m as usize - 1] = st.boxes[l];
        }
    }
    boxes
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
    fill_holes_in_boxes(labels, width, &boxes);
}

/// [`fill_holes`] with the bounding boxes of labels 1..=max already known.
fn fill_holes_in_boxes(labels: &mut [u32], width: usize, boxes: &[Option<BoundingBox>]) {
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
    fill_holes_sequential(labels, width, boxes);
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
        // The boxes of the renumbered labels come from the same scan.
        let boxes = remove_small(labels, width, min_size);
        fill_holes_in_boxes(labels, width, &boxes);
        remove_small(labels, width, min_size);
    } else {
        fill_holes(labels, height, width);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_small_renumbers_by_first_appearance_whatever_the_values() {
        let mut l = vec![5, 0, 3, 5, 2, 7];
        remove_small(&mut l, 6, 1);
        assert_eq!(l, vec![1, 0, 2, 1, 3, 4]);
        // Values far above the pixel count take the compacting path.
        let mut l = vec![u32::MAX, 0, 7, u32::MAX, 4_000_000_000, 7];
        remove_small(&mut l, 3, 2);
        assert_eq!(l, vec![1, 0, 2, 1, 0, 2]);
        // No background: the smallest value is never removed, even when huge.
        let mut l = vec![3_000_000_000, 4_000_000_000, 4_000_000_000];
        remove_small(&mut l, 3, 2);
        assert_eq!(l, vec![1, 2, 2]);
    }

    #[test]
    fn small_mask_quirk_without_background() {
        // No zero pixel: the smallest label (1) is taken for background and never removed.
        let mut l = vec![1, 2, 2, 2, 3, 3, 3, 3];
        remove_small(&mut l, 8, 3);
        assert_eq!(l, vec![1, 2, 2, 2, 3, 3, 3, 3]);
        let mut l = vec![0, 1, 2, 2, 2, 3, 3, 3];
        remove_small(&mut l, 8, 3);
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
            remove_small(&mut l, w, 1);
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
