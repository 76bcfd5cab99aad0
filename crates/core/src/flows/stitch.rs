//! 3-D labels from 2-D ones, as Cellpose's stitching mode makes them (`stitch_threshold > 0`):
//! `utils.stitch3D` links each plane's masks to the previous plane's by intersection over
//! union, then `utils.fill_holes_and_remove_small_masks` runs on the volume (holes filled
//! 6-connected within each mask's 3-D bounding box, masks under `min_size` voxels removed,
//! labels renumbered by first appearance in z, y, x order).
//!
//! stitch3D, for each pair of consecutive planes z and z + 1 (plane z already stitched):
//! - the IoU of every label `a` of plane z + 1 with every label `b` of plane z (float64,
//!   `overlap / (area_a + area_b − overlap)`); entries under the threshold are zeroed, then
//!   every entry below its column's (its `b`'s) maximum;
//! - `a` takes the first `b` (smallest) with its row's maximum, or, when the row is all zero, a
//!   fresh id: one after another from the largest id so far, in row order, for every value
//!   `1..=max(plane z + 1)` whether present or not (absent values use up ids too);
//! - while no pair has been stitched yet, a pair where either plane is empty leaves plane z + 1
//!   as it is and sets the largest id so far to its maximum (so ids of planes before an empty
//!   plane can be reused after it, as in Cellpose); after the first stitched pair, such a plane's
//!   ids are shifted past the largest id.
//!
//! Overlaps are counted sparsely (sorted pixel pairs), not as Cellpose's dense matrix; the
//! comparisons see the same float64 values.

use rayon::prelude::*;

use super::labels::{PAR_MIN_PIXELS, compact_labels, max_label, remove_small};
use crate::error::{Error, Result};

/// `(value, pixel count)` of the non-zero values of `plane`, sorted by value.
fn areas(plane: &[u32]) -> Vec<(u32, u64)> {
    let mut v: Vec<u32> = plane.iter().copied().filter(|&l| l != 0).collect();
    v.par_sort_unstable();
    let mut out: Vec<(u32, u64)> = Vec::new();
    for l in v {
        match out.last_mut() {
            Some((x, n)) if *x == l => *n += 1,
            _ => out.push((l, 1)),
        }
    }
    out
}

fn area_of(a: &[(u32, u64)], l: u32) -> u64 {
    a.binary_search_by_key(&l, |p| p.0).map_or(0, |i| a[i].1)
}

/// Relabels `plane` with `map`: `(old, new)` sorted by old, every non-zero value listed.
fn relabel(plane: &mut [u32], map: &[(u32, u32)]) {
    plane
        .par_iter_mut()
        .with_min_len(PAR_MIN_PIXELS)
        .for_each(|l| {
            if *l != 0 {
                let i = map
                    .binary_search_by_key(l, |p| p.0)
                    .expect("every value mapped");
                *l = map[i].1;
            }
        });
}

fn add_ids(mmax: u32, n: u64) -> Result<u32> {
    u32::try_from(mmax as u64 + n)
        .map_err(|_| Error::TooLarge("stitching needs more than 4,294,967,295 labels".into()))
}

/// The new ids of plane z + 1's values (`next` areas) given plane z (`prev` areas, stitched) and
/// the pixels of both, and the largest id after it.
fn stitch_pair(
    prev: &[u32],
    next: &[u32],
    next_areas: &[(u32, u64)],
    prev_areas: &[(u32, u64)],
    threshold: f64,
    mmax: u32,
) -> Result<(Vec<(u32, u32)>, u32)> {
    // Overlaps: sorted (a, b) pairs counted.
    let mut pairs: Vec<u64> = next
        .par_iter()
        .zip(prev.par_iter())
        .with_min_len(PAR_MIN_PIXELS)
        .filter(|(a, b)| **a != 0 && **b != 0)
        .map(|(&a, &b)| (a as u64) << 32 | b as u64)
        .collect();
    pairs.par_sort_unstable();
    // (a, b, iou) with iou ≥ threshold; zero entries play no part.
    let mut iou: Vec<(u32, u32, f64)> = Vec::new();
    let mut k = 0;
    while k < pairs.len() {
        let key = pairs[k];
        let mut n = 0u64;
        while k < pairs.len() && pairs[k] == key {
            n += 1;
            k += 1;
        }
        let (a, b) = ((key >> 32) as u32, key as u32);
        let union = area_of(next_areas, a) + area_of(prev_areas, b) - n;
        let v = n as f64 / union as f64;
        // `iou[iou < stitch_threshold] = 0` (v and the threshold are finite)
        if v >= threshold && v != 0.0 {
            iou.push((a, b, v));
        }
    }
    // `iou[iou < iou.max(axis=0)] = 0`: per column b.
    let mut col_max: Vec<(u32, f64)> = iou.iter().map(|&(_, b, v)| (b, v)).collect();
    col_max.sort_unstable_by(|x, y| x.0.cmp(&y.0).then(y.1.total_cmp(&x.1)));
    col_max.dedup_by_key(|x| x.0);
    iou.retain(|&(_, b, v)| {
        let i = col_max
            .binary_search_by_key(&b, |x| x.0)
            .expect("column listed");
        v >= col_max[i].1
    });
    // Row argmax (first, i.e. smallest b, among the maxima); iou is sorted by (a, b).
    let mut best: Vec<(u32, u32)> = Vec::new(); // (a, b)
    let mut i = 0;
    while i < iou.len() {
        let a = iou[i].0;
        let (mut b, mut v) = (iou[i].1, iou[i].2);
        i += 1;
        while i < iou.len() && iou[i].0 == a {
            if iou[i].2 > v {
                (b, v) = (iou[i].1, iou[i].2);
            }
            i += 1;
        }
        best.push((a, b));
    }
    // Fresh ids for every value 1..=max without a match, in order, present or not.
    let max_next = next_areas.last().map_or(0, |p| p.0);
    let mut map = Vec::with_capacity(next_areas.len());
    let mut matched_before = 0u64;
    let mut m = best.iter().peekable();
    for &(a, _) in next_areas {
        while m.peek().is_some_and(|p| p.0 < a) {
            m.next();
            matched_before += 1;
        }
        match m.peek() {
            Some(&&(x, b)) if x == a => map.push((a, b)),
            _ => {
                let zero_rows_before = (a as u64 - 1) - matched_before;
                map.push((a, add_ids(mmax, zero_rows_before + 1)?));
            }
        }
    }
    let zero_rows = max_next as u64 - best.len() as u64;
    Ok((map, add_ids(mmax, zero_rows)?))
}

/// Cellpose's `stitch3D(masks, stitch_threshold)` on `planes` planes of `height × width` labels
/// (row-major, plane after plane), in place. See the module documentation for the rule.
pub(crate) fn stitch3d(
    labels: &mut [u32],
    planes: usize,
    plane_len: usize,
    threshold: f64,
) -> Result<()> {
    if planes == 0 {
        return Ok(());
    }
    let mut mmax = max_label(&labels[..plane_len]);
    let mut stitched = false;
    for z in 0..planes - 1 {
        let (head, tail) = labels.split_at_mut((z + 1) * plane_len);
        let prev = &head[z * plane_len..];
        let next = &mut tail[..plane_len];
        let next_areas = areas(next);
        let max_next = next_areas.last().map_or(0, |p| p.0);
        let prev_areas = areas(prev);
        if max_next == 0 || prev_areas.is_empty() {
            if !stitched {
                mmax = max_next;
            } else {
                let map: Vec<(u32, u32)> = next_areas
                    .iter()
                    .map(|&(a, _)| Ok((a, add_ids(mmax, a as u64)?)))
                    .collect::<Result<_>>()?;
                relabel(next, &map);
                mmax = add_ids(mmax, max_next as u64)?;
            }
            continue;
        }
        let (map, m) = stitch_pair(prev, next, &next_areas, &prev_areas, threshold, mmax)?;
        relabel(next, &map);
        mmax = m;
        stitched = true;
    }
    Ok(())
}

/// A label's 3-D bounding box `(z0, z1, y0, y1, x0, x1)` (exclusive ends).
pub(crate) type Box3 = [usize; 6];

fn merge_box3(b: &mut Option<Box3>, o: Box3) {
    match b {
        None => *b = Some(o),
        Some(b) => {
            for k in (0..6).step_by(2) {
                b[k] = b[k].min(o[k]);
                b[k + 1] = b[k + 1].max(o[k + 1]);
            }
        }
    }
}

/// 3-D bounding boxes of labels 1..=max (`scipy.ndimage.find_objects`), in parallel over
/// runs of planes (one table per job).
pub(crate) fn find_objects_3d(labels: &[u32], height: usize, width: usize) -> Vec<Option<Box3>> {
    let max = max_label(labels) as usize;
    let plane = height * width;
    let planes = labels.len() / plane.max(1);
    let jobs = (2 * rayon::current_num_threads()).min(planes).max(1);
    let per = planes.div_ceil(jobs).max(1);
    (0..jobs)
        .into_par_iter()
        .map(|j| {
            let mut boxes: Vec<Option<Box3>> = vec![None; max];
            for z in (j * per).min(planes)..((j + 1) * per).min(planes) {
                for y in 0..height {
                    let row = (z * height + y) * width;
                    for (x, &l) in labels[row..row + width].iter().enumerate() {
                        if l != 0 {
                            merge_box3(&mut boxes[l as usize - 1], [z, z + 1, y, y + 1, x, x + 1]);
                        }
                    }
                }
            }
            boxes
        })
        .reduce_with(|mut a, b| {
            for (x, y) in a.iter_mut().zip(b) {
                if let Some(y) = y {
                    merge_box3(x, y);
                }
            }
            a
        })
        .unwrap_or_else(|| vec![None; max])
}

/// Voxel indices of box `b` that are neither `label` nor reachable through non-`label` voxels
/// (6-connected) from the voxels where `fill_voids.fill` seeds its flood fill on the box's
/// faces: `fill_voids.fill` of the mask in its crop, its seeding quirk included.
fn enclosed_voxels(labels: &[u32], height: usize, width: usize, label: u32, b: Box3) -> Vec<usize> {
    let [z0, z1, y0, y1, x0, x1] = b;
    let (d, h, w) = (z1 - z0, y1 - y0, x1 - x0);
    let at = |z: usize, y: usize, x: usize| ((z0 + z) * height + y0 + y) * width + x0 + x;
    let mut inside = vec![false; d * h * w];
    for z in 0..d {
        for y in 0..h {
            for x in 0..w {
                inside[(z * h + y) * w + x] = labels[at(z, y, x)] == label;
            }
        }
    }
    let mut outside = vec![false; d * h * w];
    let mut stack = Vec::new();
    // fill_voids (Fortran order: z fastest) seeds its flood fill while scanning each pair of
    // opposite faces in raster order, pushing a background voxel only when the voxel scanned
    // before it (row ends included) was not background. A background component on a face
    // that never starts a run is then missed, so it counts as a hole when nothing seeded
    // reaches it: Cellpose's labels carry this, and so must ours.
    let idx = |z: usize, y: usize, x: usize| (z * h + y) * w + x;
    let mut seed_faces = |outer: usize, inner: usize, at: &dyn Fn(usize, usize, bool) -> usize| {
        for far in [false, true] {
            let mut placed = false;
            for o in 0..outer {
                for i in 0..inner {
                    let j = at(o, i, far);
                    if inside[j] {
                        placed = false;
                    } else {
                        if !placed && !outside[j] {
                            outside[j] = true;
                            stack.push(j);
                        }
                        placed = true;
                    }
                }
            }
        }
    };
    seed_faces(h, d, &|y, z, far| idx(z, y, if far { w - 1 } else { 0 }));
    seed_faces(w, d, &|x, z, far| idx(z, if far { h - 1 } else { 0 }, x));
    seed_faces(w, h, &|x, y, far| idx(if far { d - 1 } else { 0 }, y, x));
    while let Some(i) = stack.pop() {
        let (z, y, x) = (i / (h * w), i / w % h, i % w);
        let mut visit = |j: usize| {
            if !inside[j] && !outside[j] {
                outside[j] = true;
                stack.push(j);
            }
        };
        if z > 0 {
            visit(i - h * w);
        }
        if z + 1 < d {
            visit(i + h * w);
        }
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
    for z in 0..d {
        for y in 0..h {
            for x in 0..w {
                let i = (z * h + y) * w + x;
                if !inside[i] && !outside[i] {
                    holes.push(at(z, y, x));
                }
            }
        }
    }
    holes
}

/// Cellpose's `fill_holes_and_remove_small_masks(masks, min_size)` on a 3-D volume: masks under
/// `min_size` voxels removed and labels renumbered by first appearance (z, y, x order; skipped
/// when `min_size <= 0`), then each mask, in label order, over its 3-D bounding box: its holes
/// (6-connected background not reached from fill_voids' face seeds, see [`enclosed_voxels`];
/// other masks inside included) take the mask's new label, the count of labels present so far;
/// then small masks removed again.
pub(crate) fn fill_holes_and_remove_small_3d(
    labels: &mut [u32],
    height: usize,
    width: usize,
    min_size: i64,
) {
    if min_size > 0 {
        remove_small(labels, width, min_size);
    } else if max_label(labels) as usize > (labels.len() / 4).max(PAR_MIN_PIXELS) {
        // Per-label tables are sized by the largest label: far larger values are replaced by
        // their ranks first, which keeps the visiting order and the new labels (the count of
        // labels present so far) as they are.
        compact_labels(labels);
    }
    let boxes = find_objects_3d(labels, height, width);
    if boxes.iter().all(Option::is_some) {
        fill_holes_in_order(labels, height, width, &boxes);
    } else {
        fill_holes_renumbering(labels, height, width, &boxes);
    }
    if min_size > 0 {
        remove_small(labels, width, min_size);
    }
}

/// The fill of [`fill_holes_and_remove_small_3d`] when labels are 1..n without gaps, so each
/// mask keeps its label: holes are found for every mask in parallel on the unfilled volume,
/// then filled in label order; a mask whose box an earlier fill touched is redone on the
/// current volume, which keeps the result that of the sequential visit.
fn fill_holes_in_order(labels: &mut [u32], height: usize, width: usize, boxes: &[Option<Box3>]) {
    let found: Vec<Vec<usize>> = {
        let labels = &*labels;
        boxes
            .par_iter()
            .enumerate()
            .map(|(i, b)| {
                enclosed_voxels(labels, height, width, i as u32 + 1, b.expect("all present"))
            })
            .collect()
    };
    let mut touched: Vec<Box3> = Vec::new();
    for (i, (b, holes)) in boxes.iter().zip(found).enumerate() {
        let b = b.expect("all present");
        let label = i as u32 + 1;
        let overlaps = |t: &Box3| {
            (0..6)
                .step_by(2)
                .all(|k| t[k] < b[k + 1] && b[k] < t[k + 1])
        };
        let holes = if touched.iter().any(overlaps) {
            enclosed_voxels(labels, height, width, label, b)
        } else {
            holes
        };
        let mut t: Option<Box3> = None;
        for &k in &holes {
            labels[k] = label;
            let (z, y, x) = (k / (height * width), k / width % height, k % width);
            merge_box3(&mut t, [z, z + 1, y, y + 1, x, x + 1]);
        }
        touched.extend(t);
    }
}

/// The fill of [`fill_holes_and_remove_small_3d`] visiting masks one after another (any label
/// values): each present mask, in label order, takes the count of masks present so far.
fn fill_holes_renumbering(labels: &mut [u32], height: usize, width: usize, boxes: &[Option<Box3>]) {
    let mut next = 0u32;
    for (i, b) in boxes.iter().enumerate() {
        let Some(b) = *b else { continue };
        let label = i as u32 + 1;
        next += 1;
        let holes = enclosed_voxels(labels, height, width, label, b);
        if next != label {
            let [z0, z1, y0, y1, x0, x1] = b;
            for z in z0..z1 {
                for y in y0..y1 {
                    let row = (z * height + y) * width;
                    for l in &mut labels[row + x0..row + x1] {
                        if *l == label {
                            *l = next;
                        }
                    }
                }
            }
        }
        for k in holes {
            labels[k] = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_link_by_iou_and_unmatched_masks_get_fresh_ids() {
        // Three 1×6 planes: mask 1 continues, mask 2 of plane 1 overlaps too little.
        let mut l = vec![
            1, 1, 1, 0, 2, 2, //
            1, 1, 0, 0, 0, 2, //
            2, 2, 1, 0, 0, 0,
        ];
        stitch3d(&mut l, 3, 6, 0.25).unwrap();
        assert_eq!(
            l,
            vec![
                1, 1, 1, 0, 2, 2, //
                1, 1, 0, 0, 0, 2, //
                1, 1, 3, 0, 0, 0,
            ]
        );
    }

    #[test]
    fn empty_planes_before_the_first_link_reset_the_ids() {
        // Cellpose's quirk: plane 2 restarts at 1 after an empty plane 1, colliding with plane 0.
        let mut l = vec![1, 0, 2, 0, 0, 0, 0, 1, 0];
        stitch3d(&mut l, 3, 3, 0.25).unwrap();
        assert_eq!(l, vec![1, 0, 2, 0, 0, 0, 0, 1, 0]);
        // After a link, a plane following an empty one is shifted past the largest id:
        // planes [1,1,1], [1,0,0] linked (IoU 1/3), [0,0,0], then [2,0,0] → 1 + 2.
        let mut l = vec![1, 1, 1, 1, 0, 0, 0, 0, 0, 2, 0, 0];
        stitch3d(&mut l, 4, 3, 0.25).unwrap();
        assert_eq!(l, vec![1, 1, 1, 1, 0, 0, 0, 0, 0, 3, 0, 0]);
    }

    /// fill_voids seeds a face's background only where a run starts in its raster scan (z
    /// fastest, the flag kept across row ends): a pocket on the y = 0 face whose scan
    /// predecessor is background is not seeded, so Cellpose fills it although it touches a face.
    #[test]
    fn face_pockets_missed_by_fill_voids_seeding_are_filled() {
        // A 3×3×4 box of label 1 with a one-voxel pocket at (z 0, y 0, x 1), open only to the
        // faces z = 0 and y = 0; voxel (z 2, y 0, x 0) is background and precedes (z 0, y 0, x 1) in
        // the y-face scan (x outer, z inner), as (z 0, y 2, x 0) precedes it in the z-face scan
        // (x outer, y inner).
        let (d, h, w) = (3usize, 3usize, 4usize);
        let mut l = vec![1u32; d * h * w];
        let at = |z: usize, y: usize, x: usize| (z * h + y) * w + x;
        l[at(0, 0, 1)] = 0;
        l[at(2, 0, 0)] = 0;
        l[at(0, 2, 0)] = 0;
        fill_holes_and_remove_small_3d(&mut l, h, w, -1);
        assert_eq!(l[at(0, 0, 1)], 1);
        // Voxels that start a run (the first of a scan) stay background.
        assert_eq!(l[at(2, 0, 0)], 0);
        assert_eq!(l[at(0, 2, 0)], 0);
    }

    #[test]
    fn holes_fill_in_3d_and_small_masks_go() {
        // A 3×3×3 shell of label 1 around one empty voxel, and a 1-voxel mask 2 elsewhere.
        let (d, h, w) = (3, 3, 4);
        let mut l = vec![0u32; d * h * w];
        for z in 0..3 {
            for y in 0..3 {
                for x in 0..3 {
                    if (z, y, x) != (1, 1, 1) {
                        l[(z * h + y) * w + x] = 1;
                    }
                }
            }
        }
        l[(2 * h + 2) * w + 3] = 2;
        fill_holes_and_remove_small_3d(&mut l, h, w, 2);
        assert_eq!(l[(h + 1) * w + 1], 1, "the enclosed voxel is filled");
        assert_eq!(l.iter().filter(|&&v| v == 1).count(), 27);
        assert!(!l.contains(&2), "the one-voxel mask is removed");
        // Huge label values take no huge tables; they are numbered by rank, as Cellpose's loop.
        let mut l = vec![u32::MAX, 0, 7, 0, 0, 0, 4_000_000_000, 0];
        fill_holes_and_remove_small_3d(&mut l, 2, 2, 0);
        assert_eq!(l, vec![3, 0, 1, 0, 0, 0, 2, 0]);
    }
}
