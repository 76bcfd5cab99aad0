//! Shape descriptors of one object, each reproducing scikit-image 0.26's definition: the
//! perimeter estimate of `skimage.measure.perimeter(image, 4)`, the pixel count of
//! `skimage.morphology.convex_hull_image`, and the eigenvalues of the 2×2 inertia tensor as
//! LAPACK's `dsyevd` (numpy's `eigvalsh`) computes them.

/// Weights of `skimage.measure.perimeter` indexed by the code of a border pixel:
/// `1 + 2 × (4-neighbours on the border) + 10 × (diagonal neighbours on the border)`.
fn perimeter_weight(code: usize) -> f64 {
    match code {
        5 | 7 | 15 | 17 | 25 | 27 => 1.0,
        21 | 33 => std::f64::consts::SQRT_2,
        13 | 23 => (1.0 + std::f64::consts::SQRT_2) / 2.0,
        _ => 0.0,
    }
}

/// The perimeter of a binary mask (`w × h`, row-major) in pixels, as
/// `skimage.measure.perimeter(mask, neighborhood=4)`: the border is the mask minus its erosion
/// by the 4-connected cross (outside the mask counts as background), and every border pixel
/// adds a weight chosen by how many of its 4- and diagonal neighbours are border pixels too.
pub(crate) fn perimeter(mask: &[bool], w: usize, h: usize) -> f64 {
    let at = |r: isize, c: isize| -> bool {
        r >= 0
            && c >= 0
            && (r as usize) < h
            && (c as usize) < w
            && mask[r as usize * w + c as usize]
    };
    let mut border = vec![false; w * h];
    for r in 0..h as isize {
        for c in 0..w as isize {
            if at(r, c) && !(at(r - 1, c) && at(r + 1, c) && at(r, c - 1) && at(r, c + 1)) {
                border[r as usize * w + c as usize] = true;
            }
        }
    }
    let b = |r: isize, c: isize| -> usize {
        usize::from(
            r >= 0
                && c >= 0
                && (r as usize) < h
                && (c as usize) < w
                && border[r as usize * w + c as usize],
        )
    };
    let mut histogram = [0u64; 50];
    for r in 0..h as isize {
        for c in 0..w as isize {
            if b(r, c) == 1 {
                let code = 1
                    + 2 * (b(r - 1, c) + b(r + 1, c) + b(r, c - 1) + b(r, c + 1))
                    + 10 * (b(r - 1, c - 1) + b(r - 1, c + 1) + b(r + 1, c - 1) + b(r + 1, c + 1));
                histogram[code] += 1;
            }
        }
    }
    // skimage: `bincount(...) @ weights`, a dot product over the histogram.
    histogram
        .iter()
        .enumerate()
        .map(|(code, &n)| n as f64 * perimeter_weight(code))
        .sum()
}

/// z-component of (a - o) × (b - o).
fn cross(o: (i64, i64), a: (i64, i64), b: (i64, i64)) -> i128 {
    (a.0 - o.0) as i128 * (b.1 - o.1) as i128 - (a.1 - o.1) as i128 * (b.0 - o.0) as i128
}

/// Convex hull (counter-clockwise, collinear points dropped) by Andrew's monotone chain, in
/// exact integer arithmetic. `points` need not be unique.
fn convex_hull(mut points: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    points.sort_unstable();
    points.dedup();
    if points.len() < 3 {
        return points;
    }
    let mut hull: Vec<(i64, i64)> = Vec::with_capacity(2 * points.len());
    // Lower chain left to right, then upper chain right to left, which may not pop the lower.
    for &p in &points {
        while hull.len() >= 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0 {
            hull.pop();
        }
        hull.push(p);
    }
    let floor = hull.len() + 1;
    for &p in points.iter().rev().skip(1) {
        while hull.len() >= floor && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0 {
            hull.pop();
        }
        hull.push(p);
    }
    hull.pop(); // the first point, repeated at the end
    hull
}

/// The number of pixels of `skimage.morphology.convex_hull_image(mask)` (`w × h`, row-major,
/// at least one pixel set).
///
/// skimage represents each pixel by the midpoints of its four edges, `(r ± ½, c)` and
/// `(r, c ± ½)`, takes the convex hull of those points, and keeps every pixel centre that
/// `grid_points_in_poly` finds inside the hull, on an edge or on a vertex, i.e. every pixel
/// centre in the closed hull. All coordinates are half-integers, so here they are doubled and
/// the whole computation is exact (skimage's own tests are exact for such coordinates too).
pub(crate) fn convex_hull_area(mask: &[bool], w: usize, h: usize) -> u64 {
    // The leftmost and rightmost pixel of each row span the hull of the whole row.
    let mut points = Vec::new();
    for r in 0..h {
        let row = &mask[r * w..(r + 1) * w];
        let (Some(first), Some(last)) = (row.iter().position(|&v| v), row.iter().rposition(|&v| v))
        else {
            continue;
        };
        for c in [first, last] {
            let (y, x) = (2 * r as i64, 2 * c as i64);
            points.extend([(y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)]);
        }
    }
    let hull = convex_hull(points);
    if hull.len() < 3 {
        return 0; // unreachable for a non-empty mask: a pixel's four edge midpoints span a diamond
    }
    let mut count = 0u64;
    for r in 0..h as i64 {
        let y = 2 * r;
        // Closed half-planes of the counter-clockwise edges bound the columns of this row.
        let (mut lo, mut hi) = (0i64, w as i64 - 1);
        for (i, &p) in hull.iter().enumerate() {
            let q = hull[(i + 1) % hull.len()];
            // Inside or on: (q - p) × (X - p) >= 0 with X = (y, 2c):
            // dy·(2c - p.1) - dx·(y - p.0) >= 0, where dy = q.0 - p.0, dx = q.1 - p.1.
            let (dy, dx) = ((q.0 - p.0) as i128, (q.1 - p.1) as i128);
            let k = dy * p.1 as i128 + dx * (y - p.0) as i128; // need 2c·dy >= k
            let den = 2 * dy;
            if den > 0 {
                lo = lo.max(div_ceil(k, den) as i64);
            } else if den < 0 {
                hi = hi.min(div_floor(k, den) as i64);
            } else if k > 0 {
                hi = -1; // a horizontal edge with the row on its outer side
            }
            if lo > hi {
                break;
            }
        }
        if hi >= lo {
            count += (hi - lo + 1) as u64;
        }
    }
    count
}

fn div_floor(a: i128, b: i128) -> i128 {
    let q = a / b;
    if (a % b != 0) && ((a < 0) != (b < 0)) {
        q - 1
    } else {
        q
    }
}

fn div_ceil(a: i128, b: i128) -> i128 {
    let q = a / b;
    if (a % b != 0) && ((a < 0) == (b < 0)) {
        q + 1
    } else {
        q
    }
}

/// LAPACK `dlae2`: the eigenvalues `(rt1, rt2)` of `[[a, b], [b, c]]`, `|rt1| >= |rt2|`.
fn dlae2(a: f64, b: f64, c: f64) -> (f64, f64) {
    let sm = a + c;
    let df = a - c;
    let adf = df.abs();
    let tb = b + b;
    let ab = tb.abs();
    let (acmx, acmn) = if a.abs() > c.abs() { (a, c) } else { (c, a) };
    let rt = if adf > ab {
        adf * (1.0 + (ab / adf).powi(2)).sqrt()
    } else if adf < ab {
        ab * (1.0 + (adf / ab).powi(2)).sqrt()
    } else {
        ab * std::f64::consts::SQRT_2
    };
    if sm < 0.0 {
        let rt1 = 0.5 * (sm - rt);
        (rt1, (acmx / rt1) * acmn - (b / rt1) * b)
    } else if sm > 0.0 {
        let rt1 = 0.5 * (sm + rt);
        (rt1, (acmx / rt1) * acmn - (b / rt1) * b)
    } else {
        (0.5 * rt, -0.5 * rt)
    }
}

/// Eigenvalues of the symmetric matrix `[[a, b], [b, c]]`, largest first, negatives clipped to
/// 0 — `skimage.measure.inertia_tensor_eigvals`, which calls numpy's `eigvalsh` (LAPACK
/// `dsyevd` → `dsterf`, whose 2×2 case is `dlae2` after its two small-off-diagonal tests).
pub(crate) fn eigvalsh2(a: f64, b: f64, c: f64) -> (f64, f64) {
    let eps = f64::EPSILON * 0.5; // dlamch('E')
    let (x, y) = if b == 0.0 || b.abs() <= a.abs().sqrt() * c.abs().sqrt() * eps {
        (a, c)
    } else {
        let e2 = b * b;
        if e2 <= eps * eps * (a * c).abs() {
            (a, c)
        } else if c.abs() < a.abs() {
            dlae2(c, e2.sqrt(), a) // dsterf's QR branch passes the diagonal reversed
        } else {
            dlae2(a, e2.sqrt(), c)
        }
    };
    let (x, y) = (x.max(0.0), y.max(0.0));
    if x >= y { (x, y) } else { (y, x) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&str]) -> (Vec<bool>, usize, usize) {
        let w = rows[0].len();
        let m = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| b == b'#'))
            .collect();
        (m, w, rows.len())
    }

    #[test]
    fn single_pixel() {
        let (m, w, h) = mask(&["#"]);
        assert_eq!(perimeter(&m, w, h), 0.0);
        assert_eq!(convex_hull_area(&m, w, h), 1);
    }

    #[test]
    fn filled_square_and_l_shape() {
        let (m, w, h) = mask(&["###", "###", "###"]);
        // Expected values from scikit-image 0.26 (`perimeter(m, 4)`, `convex_hull_image(m).sum()`).
        assert_eq!(perimeter(&m, w, h), 8.0);
        assert_eq!(convex_hull_area(&m, w, h), 9);
        let (m, w, h) = mask(&["#..", "#..", "###"]);
        assert_eq!(perimeter(&m, w, h), 3.0);
        assert_eq!(convex_hull_area(&m, w, h), 6);
    }

    #[test]
    fn eigen_matches_closed_form() {
        let (l1, l2) = eigvalsh2(2.0, -1.0, 2.0);
        assert!((l1 - 3.0).abs() < 1e-15 && (l2 - 1.0).abs() < 1e-15);
        assert_eq!(eigvalsh2(1.0, -1.0, 1.0), (2.0, 0.0));
        assert_eq!(eigvalsh2(0.0, 0.0, 5.0), (5.0, 0.0));
    }
}
