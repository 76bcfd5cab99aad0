//! The voxel count of scikit-image's 3-D `convex_hull_image` (what `regionprops` divides by for
//! `solidity`), computed exactly.
//!
//! skimage (0.26) takes the convex hull of the object's voxel centres (`hull0`; when Qhull
//! fails, as it does for coplanar centres, the convex image is empty), moves each hull vertex
//! half a voxel up and down along each axis (the "diamond" offsets), takes the hull of those
//! points and keeps every voxel centre of the bounding box whose facet equations are all below
//! 1e-10: inside or on the hull. Here the points are doubled to integers, the hull is built
//! incrementally with exact integer predicates and the voxels are counted row by row from the
//! facets' inequalities, so points on the boundary count as skimage counts them (its roundoff
//! is far below the tolerance, and a lattice point off a facet plane is far above it).

use std::collections::HashSet;

/// A point in doubled voxel coordinates (z, y, x).
type P = [i64; 3];

fn sub(a: P, b: P) -> [i128; 3] {
    [
        (a[0] - b[0]) as i128,
        (a[1] - b[1]) as i128,
        (a[2] - b[2]) as i128,
    ]
}

fn cross(u: [i128; 3], v: [i128; 3]) -> [i128; 3] {
    [
        u[1] * v[2] - u[2] * v[1],
        u[2] * v[0] - u[0] * v[2],
        u[0] * v[1] - u[1] * v[0],
    ]
}

fn dot(u: [i128; 3], v: [i128; 3]) -> i128 {
    u[0] * v[0] + u[1] * v[1] + u[2] * v[2]
}

/// A facet `a, b, c` with outward normal `n` (`n · (p − a) > 0` outside).
#[derive(Clone, Copy)]
struct Face {
    v: [usize; 3],
    n: [i128; 3],
    alive: bool,
}

/// Convex hull facets of `pts` (full-dimensional); `None` when the points are coplanar.
fn hull(pts: &[P]) -> Option<Vec<Face>> {
    let p0 = 0;
    let p1 = (1..pts.len()).find(|&i| pts[i] != pts[p0])?;
    let e1 = sub(pts[p1], pts[p0]);
    let p2 = (1..pts.len()).find(|&i| cross(e1, sub(pts[i], pts[p0])) != [0; 3])?;
    let n012 = cross(e1, sub(pts[p2], pts[p0]));
    let p3 = (1..pts.len()).find(|&i| dot(n012, sub(pts[i], pts[p0])) != 0)?;
    let tetra = [p0, p1, p2, p3];
    // An interior point, times 4 (exact).
    let c4: [i128; 3] = std::array::from_fn(|k| tetra.iter().map(|&i| pts[i][k] as i128).sum());
    let make = |a: usize, b: usize, c: usize| -> Face {
        let n = cross(sub(pts[b], pts[a]), sub(pts[c], pts[a]));
        let a4 = pts[a].map(|v| 4 * v as i128);
        let inside = dot(n, [c4[0] - a4[0], c4[1] - a4[1], c4[2] - a4[2]]);
        if inside > 0 {
            Face {
                v: [a, c, b],
                n: n.map(|x| -x),
                alive: true,
            }
        } else {
            Face {
                v: [a, b, c],
                n,
                alive: true,
            }
        }
    };
    let mut faces = vec![
        make(p0, p1, p2),
        make(p0, p1, p3),
        make(p0, p2, p3),
        make(p1, p2, p3),
    ];
    let outside = |f: &Face, p: P| dot(f.n, sub(p, pts[f.v[0]])) > 0;
    for (i, &p) in pts.iter().enumerate() {
        if tetra.contains(&i) {
            continue;
        }
        let visible: Vec<usize> = (0..faces.len())
            .filter(|&k| faces[k].alive && outside(&faces[k], p))
            .collect();
        if visible.is_empty() {
            continue;
        }
        let mut edges: HashSet<(usize, usize)> = HashSet::new();
        for &k in &visible {
            let [a, b, c] = faces[k].v;
            edges.extend([(a, b), (b, c), (c, a)]);
            faces[k].alive = false;
        }
        let horizon: Vec<(usize, usize)> = edges
            .iter()
            .copied()
            .filter(|&(a, b)| !edges.contains(&(b, a)))
            .collect();
        for (a, b) in horizon {
            let n = cross(sub(pts[b], pts[a]), sub(p, pts[a]));
            faces.push(Face {
                v: [a, b, i],
                n,
                alive: true,
            });
        }
        if faces.len() > 64 && faces.iter().filter(|f| f.alive).count() * 2 < faces.len() {
            faces.retain(|f| f.alive);
        }
    }
    faces.retain(|f| f.alive);
    Some(faces)
}

/// Voxels of skimage's `convex_hull_image` of `mask` (`d × h × w`, z then y then x): 0 when
/// the true voxels' centres are coplanar (Qhull fails there and skimage returns an empty image).
pub(crate) fn convex_voxels(mask: &[bool], [d, h, w]: [usize; 3]) -> u64 {
    let at = |z: usize, y: usize, x: usize| mask[(z * h + y) * w + x];
    // A hull vertex of the centres is the first or last true voxel of its line along every
    // axis (else it lies between two others): one bit per axis.
    let mut keep = vec![0u8; mask.len()];
    let mut mark = |z: usize, y: usize, x: usize, bit: u8| keep[(z * h + y) * w + x] |= bit;
    for z in 0..d {
        for y in 0..h {
            let row: Vec<usize> = (0..w).filter(|&x| at(z, y, x)).collect();
            if let (Some(&a), Some(&b)) = (row.first(), row.last()) {
                mark(z, y, a, 1);
                mark(z, y, b, 1);
            }
        }
        for x in 0..w {
            let col: Vec<usize> = (0..h).filter(|&y| at(z, y, x)).collect();
            if let (Some(&a), Some(&b)) = (col.first(), col.last()) {
                mark(z, a, x, 2);
                mark(z, b, x, 2);
            }
        }
    }
    for y in 0..h {
        for x in 0..w {
            let col: Vec<usize> = (0..d).filter(|&z| at(z, y, x)).collect();
            if let (Some(&a), Some(&b)) = (col.first(), col.last()) {
                mark(a, y, x, 4);
                mark(b, y, x, 4);
            }
        }
    }
    let centres: Vec<P> = (0..mask.len())
        .filter(|&i| keep[i] == 7)
        .map(|i| {
            let (z, y, x) = (i / (h * w), i / w % h, i % w);
            [2 * z as i64, 2 * y as i64, 2 * x as i64]
        })
        .collect();
    // skimage's first hull, on the centres themselves: coplanar centres fail. Its vertices,
    // moved half a voxel along each axis, span the second.
    let Some(first) = hull(&centres) else {
        return 0;
    };
    let mut vertices: Vec<usize> = first.iter().flat_map(|f| f.v).collect();
    vertices.sort_unstable();
    vertices.dedup();
    let mut pts: Vec<P> = vertices
        .iter()
        .map(|&i| centres[i])
        .flat_map(|c| {
            (0..3).flat_map(move |k| {
                [-1, 1].map(|o| {
                    let mut q = c;
                    q[k] += o;
                    q
                })
            })
        })
        .collect();
    pts.sort_unstable();
    pts.dedup();
    let Some(faces) = hull(&pts) else {
        return 0;
    };
    // Per (z, y) row, the x range inside every facet: n · (q − a) ≤ 0 with q = 2 (z, y, x).
    let mut count = 0u64;
    for z in 0..d {
        for y in 0..h {
            let (mut lo, mut hi) = (0i128, w as i128 - 1);
            for f in &faces {
                let a = pts[f.v[0]];
                let n = f.n;
                // n_x · 2x ≤ r
                let r = n[0] * (a[0] as i128 - 2 * z as i128)
                    + n[1] * (a[1] as i128 - 2 * y as i128)
                    + n[2] * a[2] as i128;
                let k = 2 * n[2];
                if k > 0 {
                    hi = hi.min(r.div_euclid(k));
                } else if k < 0 {
                    // x ≥ r / k with k negative: ceil(r / k) = −floor(r / −k).
                    lo = lo.max(-(r.div_euclid(-k)));
                } else if r < 0 {
                    hi = -1;
                }
                if lo > hi {
                    break;
                }
            }
            if lo <= hi {
                count += (hi - lo + 1) as u64;
            }
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_is_its_own_hull_and_flat_objects_have_none() {
        let dims = [3, 4, 5];
        let full = vec![true; 60];
        assert_eq!(convex_voxels(&full, dims), 60);
        let mut flat = vec![false; 60];
        flat[..20].fill(true); // one z plane
        assert_eq!(convex_voxels(&flat, dims), 0);
        let mut one = vec![false; 60];
        one[7] = true;
        assert_eq!(convex_voxels(&one, dims), 0);
    }

    #[test]
    fn an_l_shape_fills_its_diagonal() {
        // Two planes: plane 0 a full 3×3, plane 1 only the corner voxel (0, 0). The hull of
        // the diamond points (half a voxel out along each axis) holds 4 voxels of plane 1, as
        // skimage's convex_hull_image (checked with scikit-image 0.26).
        let dims = [2, 3, 3];
        let mut m = vec![false; 18];
        m[..10].fill(true); // plane 0, then the corner of plane 1
        assert_eq!(convex_voxels(&m, dims), 9 + 4);
    }
}
