//! Trap proofs: boxes and parallelograms inside one bilinear cell and one output pixel that no
//! float32 Euler step can leave (bilinear corner bounds plus a rigorous float32 rounding bound),
//! so that a trajectory entering one has its final pixel without stepping on. Not part of
//! Cellpose's definition (see [`super`]); a speed-up that never changes a result.

use super::{FlowField, PixelScale};

/// Growth rounds [`FlowField::trapped_pixel`] tries before giving up on a box.
pub(super) const TRAP_ROUNDS: usize = 3;
/// Room, in grid units (two float32 ulps of 1; times the half size: pixel units), that the
/// search in [`FlowField::trapped_pixel`] leaves for rounding its box to float32.
pub(super) const TRAP_MARGIN_ULPS: f64 = 2.0 / 8_388_608.0;
/// Unit roundoff of float32 (`2^-24`).
pub(super) const F32_UNIT_ROUNDOFF: f64 = 1.0 / 16_777_216.0;

/// A proven trap: a box (grid coordinates) that no step leaves, inside one bilinear cell and
/// one output pixel.
#[derive(Clone, Copy)]
pub(super) struct Trap {
    /// The box, or the parallelogram's bounding box.
    pub(super) lo: [f32; 2],
    pub(super) hi: [f32; 2],
    pub(super) pixel: (i32, i32),
    /// When set, the trap is this parallelogram inside the box (see [`Para`]).
    pub(super) para: Option<Para>,
}

/// A parallelogram trap `{g : |(Minv ((g + 1) h - offset))_i| <= r_i}`, its sides along the
/// eigenvectors of the step's Jacobian at a fixed point ([`FlowField::para_trap`]).
#[derive(Clone, Copy)]
pub(super) struct Para {
    /// Per axis: the half size `h` and `offset = 1/2 + cell + centre` (exact in float64).
    pub(super) h: [f64; 2],
    pub(super) offset: [f64; 2],
    pub(super) minv: [[f64; 2]; 2],
    /// Half-widths in eigen coordinates, shrunk by [`Para::ROUNDING`]'s margin so that a
    /// point the float64 test accepts is inside the proven parallelogram.
    pub(super) r_test: [f64; 2],
}

impl Para {
    /// Bound on the float64 error of `(g + 1) h - offset` (pixel units) for `h <= 2^22`, and
    /// on the rounding of the 2 × 2 product after it (times the row's absolute sum of `minv`).
    pub(super) const ROUNDING: f64 = 1e-8;

    #[inline(always)]
    pub(super) fn contains(&self, gx: f32, gy: f32) -> bool {
        let d = [
            (f64::from(gx) + 1.0) * self.h[0] - self.offset[0],
            (f64::from(gy) + 1.0) * self.h[1] - self.offset[1],
        ];
        (0..2).all(|i| (self.minv[i][0] * d[0] + self.minv[i][1] * d[1]).abs() <= self.r_test[i])
    }
}

impl Trap {
    #[inline(always)]
    pub(super) fn contains(&self, gx: f32, gy: f32) -> bool {
        self.lo[0] <= gx
            && gx <= self.hi[0]
            && self.lo[1] <= gy
            && gy <= self.hi[1]
            && self.para.is_none_or(|p| p.contains(gx, gy))
    }
}

/// Slots of [`TrapCache`] (a power of two).
pub(super) const TRAP_CACHE_SLOTS: usize = 512;

/// Traps proven so far on one flow field, one per cell at most (direct-mapped on the cell's
/// padded index; a newer trap replaces an older one in its slot). A trap is a fact about the
/// field, so one cache serves every batch of points that a rayon job integrates; neighbouring
/// points end in the same few cells, so most lanes find their trap here instead of proving one.
pub(super) struct TrapCache {
    pub(super) slots: Vec<(u32, Trap)>,
    /// Per cell (direct-mapped like `slots`): the size of the last box whose proof failed.
    pub(super) failed: Vec<(u32, f32)>,
}

impl TrapCache {
    pub(super) fn new() -> Self {
        let empty = Trap {
            lo: [0.0; 2],
            hi: [0.0; 2],
            pixel: (0, 0),
            para: None,
        };
        TrapCache {
            slots: vec![(u32::MAX, empty); TRAP_CACHE_SLOTS],
            failed: vec![(u32::MAX, 0.0); TRAP_CACHE_SLOTS],
        }
    }

    /// Whether a proof for a box of size `extent` (grid units, larger side) in cell `key` is
    /// worth trying: not when one for a box at least half as small failed there lately (the
    /// many trajectories settling on one fixed point then try once, not once each).
    #[inline(always)]
    pub(super) fn worth_trying(&self, key: u32, extent: f32) -> bool {
        let (k, failed) = self.failed[Self::slot(key)];
        k != key || extent < 0.5 * failed
    }

    pub(super) fn record_failure(&mut self, key: u32, extent: f32) {
        self.failed[Self::slot(key)] = (key, extent);
    }

    #[inline(always)]
    pub(super) fn slot(key: u32) -> usize {
        (key.wrapping_mul(0x9E37_79B1) >> (32 - TRAP_CACHE_SLOTS.trailing_zeros())) as usize
    }

    #[inline(always)]
    pub(super) fn get(&self, key: u32) -> Option<&Trap> {
        let (k, trap) = &self.slots[Self::slot(key)];
        (*k == key).then_some(trap)
    }

    pub(super) fn insert(&mut self, key: u32, trap: Trap) {
        self.slots[Self::slot(key)] = (key, trap);
    }
}

impl FlowField {
    /// Padded index of the top-left tap of the cell that grid point `(gx, gy)` samples (the
    /// key of [`TrapCache`]); valid positions only.
    #[inline(always)]
    pub(super) fn cell_key(&self, gx: f32, gy: f32) -> u32 {
        let cx = Self::cell(gx, self.half_w) as isize + 1;
        let cy = Self::cell(gy, self.half_h) as isize + 1;
        (cy as usize * self.stride + cx as usize) as u32
    }

    /// The bilinear cell whose four taps [`Self::sample`] uses at grid coordinate `g`
    /// (`floor` of the source index, computed exactly as there). Non-decreasing in `g`.
    #[inline(always)]
    pub(super) fn cell(g: f32, half: f32) -> f32 {
        (g + 1.0).mul_add(half, -0.5).floor()
    }

    /// Proves, when it can, that a trajectory now inside the box `[lo, hi]` (grid coordinates,
    /// per axis) never leaves a box inside one output pixel, and returns that pixel: then the
    /// final pixel is known however many steps remain.
    ///
    /// The argument, for a box `B` whose float32 points all sample the same bilinear cell:
    ///
    /// 1. *One cell, one pixel.* The tap index (`floor` of the source index) and the output
    ///    pixel ([`PixelScale::pixel`]) are non-decreasing functions of each grid coordinate, so
    ///    when they agree at both ends of `B` they are constant on every float point of `B`.
    /// 2. *Exact image.* On that cell the exact-arithmetic step `P(g) = g + Σ v_k w_k(g)` (taps
    ///    `v_k`, bilinear weights of the exact source index) is, per component, a bilinear
    ///    polynomial in `(gx, gy)`, so over the rectangle `B` it takes its extremes at the four
    ///    corners (it is affine in each coordinate when the other is fixed).
    /// 3. *Rounding.* The float32 step differs from `P` by at most [`step_error_bound`] (a bound
    ///    that depends on the cell: rounding grows with the size of the source index).
    ///
    /// So when the corners' images widened by that bound lie in `B`, every float32 step from a
    /// point of `B` lands in `B` (inside `[-1, 1]`, where the clamp changes nothing): the
    /// trajectory stays in `B` for ever, and its final pixel is the pixel of `B`.
    ///
    /// The search for such a box works in float64 on the cell's local coordinates: the box is
    /// grown towards its image (hull plus slack), [`TRAP_ROUNDS`] times at most, inside an
    /// estimate of where the cell and the pixel overlap. A box found that way is then rounded
    /// outwards to float32 and checked once more by the exact tests 1–3 above, so the estimates
    /// only decide how often a proof succeeds, never whether one is right.
    ///
    /// Where no box maps into itself (orbits that flip from side to side of a fixed point and
    /// settle slowly along eigenvectors away from the axes), a parallelogram along those
    /// eigenvectors may: [`CellModel::para_trap`] proves that one by the same three facts, with
    /// the exact quadratic term of `P` around the fixed point in place of the corners. Such a
    /// trap must hold `cur`, the trajectory's position. `None` means "not proven", never
    /// "leaves".
    pub(super) fn trapped_pixel(
        &self,
        lo: [f32; 2],
        hi: [f32; 2],
        cur: [f32; 2],
        scale: PixelScale,
    ) -> Option<Trap> {
        let m = CellModel::new(self, lo, hi, scale)?;
        m.box_trap(lo, hi).or_else(|| m.para_trap(lo, hi, cur))
    }
}

/// One bilinear cell of the field as [`FlowField::trapped_pixel`] models it: the exact step as
/// a polynomial in local coordinates, its rounding bound, and where the cell and the output
/// pixel overlap.
pub(super) struct CellModel {
    pub(super) half: [f32; 2],
    pub(super) cell: [f32; 2],
    pub(super) pixel: (i32, i32),
    pub(super) scale: PixelScale,
    pub(super) grid_per_u: [f64; 2],
    /// Per axis, the local interval where cell and pixel overlap, shrunk by a margin for the
    /// float32 rounding of the pixel function (an estimate: the exact test comes last).
    pub(super) allow: [[f64; 2]; 2],
    /// Per component `k`: `P_k(u) = u_k + c0 + c1 ux + c2 uy + c3 ux uy`.
    pub(super) coef: [[f64; 4]; 2],
    /// Per component: bound on `|float32 step - P|` in local units, float64 slack included.
    pub(super) bound: [f64; 2],
}

impl CellModel {
    /// The model of the cell holding `lo`, or `None` when the box `[lo, hi]` is not inside
    /// the estimated overlap of that cell and `lo`'s pixel.
    pub(super) fn new(
        field: &FlowField,
        lo: [f32; 2],
        hi: [f32; 2],
        scale: PixelScale,
    ) -> Option<Self> {
        let half = [field.half_w, field.half_h];
        let cell = [
            FlowField::cell(lo[0], half[0]),
            FlowField::cell(lo[1], half[1]),
        ];
        let pixel = scale.pixel(lo[0], lo[1]);
        let pix = [pixel.1, pixel.0];
        let mut allow = [[0.0f64; 2]; 2];
        for k in 0..2 {
            let h = f64::from(half[k]);
            let margin = 1e-5 + h * TRAP_MARGIN_ULPS;
            let px_to_u = |p: f64| field.u_per_px[k] * p - 0.5 - f64::from(cell[k]);
            allow[k] = [
                px_to_u(f64::from(pix[k])).max(0.0) + margin,
                px_to_u(f64::from(pix[k]) + 1.0).min(1.0) - margin,
            ];
        }
        let mut m = CellModel {
            half,
            cell,
            pixel,
            scale,
            grid_per_u: field.grid_per_u,
            allow,
            coef: [[0.0; 4]; 2],
            bound: [0.0; 2],
        };
        for k in 0..2 {
            let (a, b) = (m.local(lo[k], k), m.local(hi[k], k));
            if a < allow[k][0] || b > allow[k][1] {
                return None;
            }
        }
        // Padded position of the top-left tap (cell indices are in [-1, size - 1]).
        let top = (cell[1] as isize + 1) as usize * field.stride + (cell[0] as isize + 1) as usize;
        let taps = [
            field.data[top],
            field.data[top + 1],
            field.data[top + field.stride],
            field.data[top + field.stride + 1],
        ];
        // P in local coordinates, per component: `u + c0 + c1 ux + c2 uy + c3 ux uy` (the taps'
        // bilinear interpolation as a polynomial, scaled by h). Float64 rounding: `local` is
        // off by at most ~2^-51 (2h + 2), the coefficients and their evaluation (on `u` near
        // [0, 1]) by a few 2^-53 (1 + Σ|c|); the extra `(1e-9 + 1e-14 h) (1 + Σ|c|)` in `bound`
        // covers all of it, for the box's ends as well, many times over.
        let err = step_error_coefficients(cell);
        for k in 0..2 {
            let h = f64::from(half[k]);
            let [a, b, c, d] = taps.map(|v| f64::from(v[k]));
            m.coef[k] = [h * a, h * (b - a), h * (c - a), h * (a - b - c + d)];
            let csum: f64 = m.coef[k].iter().map(|c| c.abs()).sum();
            m.bound[k] =
                h * step_error_bound(err, [a, b, c, d]) + (1e-9 + 1e-14 * h) * (1.0 + csum);
        }
        Some(m)
    }

    /// Local coordinate `u = (g + 1) h - 1/2 - cell` (pixel units; the cell is [0, 1)²).
    pub(super) fn local(&self, g: f32, k: usize) -> f64 {
        (f64::from(g) + 1.0) * f64::from(self.half[k]) - 0.5 - f64::from(self.cell[k])
    }

    pub(super) fn to_grid(&self, u: f64, k: usize) -> f64 {
        (u + 0.5 + f64::from(self.cell[k])) * self.grid_per_u[k] - 1.0
    }

    /// `P(u) - u`, per component.
    pub(super) fn drift(&self, u: [f64; 2]) -> [f64; 2] {
        self.coef
            .map(|[c0, c1, c2, c3]| c0 + c1 * u[0] + (c2 + c3 * u[0]) * u[1])
    }

    /// Jacobian of [`Self::drift`] at `u` (rows: components).
    pub(super) fn drift_jacobian(&self, u: [f64; 2]) -> [[f64; 2]; 2] {
        self.coef
            .map(|[_, c1, c2, c3]| [c1 + c3 * u[1], c2 + c3 * u[0]])
    }

    /// Image of the local box `[ulo, uhi]` under `P`, widened by the rounding bound: the
    /// corners' images (P is bilinear, so its extremes over a rectangle are at the corners).
    pub(super) fn image(&self, ulo: [f64; 2], uhi: [f64; 2]) -> ([f64; 2], [f64; 2]) {
        let mut img_lo = [f64::INFINITY; 2];
        let mut img_hi = [f64::NEG_INFINITY; 2];
        for u in [
            [ulo[0], ulo[1]],
            [uhi[0], ulo[1]],
            [ulo[0], uhi[1]],
            [uhi[0], uhi[1]],
        ] {
            let d = self.drift(u);
            for k in 0..2 {
                let p = u[k] + d[k];
                img_lo[k] = img_lo[k].min(p - self.bound[k]);
                img_hi[k] = img_hi[k].max(p + self.bound[k]);
            }
        }
        (img_lo, img_hi)
    }

    /// The float32 box holding the local box `[ulo, uhi]`, if every float point of it samples
    /// this cell, maps to this pixel and lies in `[-1, 1]` (exact tests: cell and pixel are
    /// monotone in each coordinate, so agreeing at the box's ends covers every point).
    pub(super) fn f32_box(&self, ulo: [f64; 2], uhi: [f64; 2]) -> Option<([f32; 2], [f32; 2])> {
        let lo = [0, 1].map(|k| f32_at_or_below(self.to_grid(ulo[k], k) - 1e-12));
        let hi = [0, 1].map(|k| f32_at_or_above(self.to_grid(uhi[k], k) + 1e-12));
        let ok = (0..2).all(|k| {
            lo[k] >= -1.0
                && hi[k] <= 1.0
                && FlowField::cell(lo[k], self.half[k]) == self.cell[k]
                && FlowField::cell(hi[k], self.half[k]) == self.cell[k]
        }) && self.scale.pixel(lo[0], lo[1]) == self.pixel
            && self.scale.pixel(hi[0], hi[1]) == self.pixel;
        ok.then_some((lo, hi))
    }

    /// A box trap holding `[lo, hi]` (see [`FlowField::trapped_pixel`]).
    pub(super) fn box_trap(&self, lo: [f32; 2], hi: [f32; 2]) -> Option<Trap> {
        let mut ulo = [self.local(lo[0], 0), self.local(lo[1], 1)];
        let mut uhi = [self.local(hi[0], 0), self.local(hi[1], 1)];
        let room = |k: usize| f64::from(self.half[k]) * TRAP_MARGIN_ULPS;
        // Search: the image must fit with room for the float32 rounding of the box.
        let mut found = false;
        for _ in 0..TRAP_ROUNDS {
            let (img_lo, img_hi) = self.image(ulo, uhi);
            if (0..2).all(|k| img_lo[k] >= ulo[k] + room(k) && img_hi[k] <= uhi[k] - room(k)) {
                found = true;
                break;
            }
            // Hull of the box and its image plus a quarter of its width (an image that
            // rotates or overshoots then fits in fewer rounds).
            for k in 0..2 {
                let a = img_lo[k].min(ulo[k]);
                let b = img_hi[k].max(uhi[k]);
                let slack = 0.25 * (b - a);
                (ulo[k], uhi[k]) = (a - slack, b + slack);
                if ulo[k] < self.allow[k][0] || uhi[k] > self.allow[k][1] {
                    return None;
                }
            }
        }
        if !found {
            return None;
        }
        // The exact tests on the float32 box that contains the one found.
        let (lo, hi) = self.f32_box(ulo, uhi)?;
        let (ulo, uhi) = (
            [self.local(lo[0], 0), self.local(lo[1], 1)],
            [self.local(hi[0], 0), self.local(hi[1], 1)],
        );
        let (img_lo, img_hi) = self.image(ulo, uhi);
        (0..2)
            .all(|k| img_lo[k] >= ulo[k] && img_hi[k] <= uhi[k])
            .then_some(Trap {
                lo,
                hi,
                pixel: self.pixel,
                para: None,
            })
    }

    /// A parallelogram trap holding `cur`, for orbits that settle slowly or flip around a
    /// fixed point whose eigenvectors are far from the axes (no box maps into itself there).
    ///
    /// With `c` a point (near the fixed point of `P`, found by Newton's method), `J` the
    /// Jacobian of `P` at `c`, `Minv` the inverse of a matrix of its eigenvectors and
    /// `N = Minv^-1`, the trap is `S = {c + N z : |z_i| <= r_i}`. `P` is bilinear, so exactly
    /// `P(c + δ) - c = (P(c) - c) + J δ + C3 δx δy` (`C3` the `ux uy` coefficients), and for
    /// `u = c + N z` in `S` the float32 step `P(u) + ε` (`|ε_k| <= bound_k`) has
    /// `|z'_i| <= |(Minv (P(c) - c))_i| + Σ_j |(Minv J N)_ij| r_j + |(Minv C3)_i| wx wy
    /// + Σ_k |Minv_ik| bound_k`, where `w_k = Σ_j |N_kj| r_j` bounds `|δ_k|`. When that is at
    /// most `r_i` for both `i`, and the float32 box around `S` passes the exact one-cell,
    /// one-pixel tests, every float32 point of `S` steps into `S`: its final pixel is this
    /// cell's pixel. Float64 rounding of these few products is covered by relative slack
    /// (`1e-8`, for matrices with condition number below a few thousand) and by the slack
    /// already in `bound`.
    pub(super) fn para_trap(&self, lo: [f32; 2], hi: [f32; 2], cur: [f32; 2]) -> Option<Trap> {
        let mut c = [0, 1].map(|k| 0.5 * (self.local(lo[k], k) + self.local(hi[k], k)));
        for _ in 0..PARA_NEWTON_STEPS {
            let f = self.drift(c);
            let j = self.drift_jacobian(c);
            let det = j[0][0] * j[1][1] - j[0][1] * j[1][0];
            if det.abs() < 1e-12 {
                return None;
            }
            c[0] -= (j[1][1] * f[0] - j[0][1] * f[1]) / det;
            c[1] -= (j[0][0] * f[1] - j[1][0] * f[0]) / det;
            if !(c[0].abs() < 2.0 && c[1].abs() < 2.0) {
                return None;
            }
        }
        // A centre on a 2^-30 grid keeps `1/2 + cell + c` exact in float64.
        let c = c.map(|v| (v * PARA_GRID).round() / PARA_GRID);
        if (0..2).any(|k| !(self.allow[k][0] < c[k] && c[k] < self.allow[k][1])) {
            return None;
        }
        let d = self.drift_jacobian(c);
        let jac = [[1.0 + d[0][0], d[0][1]], [d[1][0], 1.0 + d[1][1]]];
        let half_diff = 0.5 * (jac[0][0] - jac[1][1]);
        let disc = half_diff * half_diff + jac[0][1] * jac[1][0];
        if disc.is_nan() || disc <= 1e-12 {
            return None;
        }
        let mean = 0.5 * (jac[0][0] + jac[1][1]);
        let lambda = [mean + disc.sqrt(), mean - disc.sqrt()];
        if lambda.iter().any(|l| l.abs() >= PARA_MAX_RATE) {
            return None;
        }
        // Unit eigenvectors (columns of M): the larger of the two candidate solutions of
        // (J - λ) v = 0.
        let vec = |l: f64| {
            let a = [jac[0][1], l - jac[0][0]];
            let b = [l - jac[1][1], jac[1][0]];
            let (na, nb) = (
                (a[0] * a[0] + a[1] * a[1]).sqrt(),
                (b[0] * b[0] + b[1] * b[1]).sqrt(),
            );
            if na >= nb {
                a.map(|v| v / na)
            } else {
                b.map(|v| v / nb)
            }
        };
        let (v1, v2) = (vec(lambda[0]), vec(lambda[1]));
        let det_m = v1[0] * v2[1] - v2[0] * v1[1];
        if det_m.is_nan() || det_m.abs() <= PARA_MIN_DET {
            return None;
        }
        let minv = [
            [v2[1] / det_m, -v2[0] / det_m],
            [-v1[1] / det_m, v1[0] / det_m],
        ];
        let det_i = minv[0][0] * minv[1][1] - minv[0][1] * minv[1][0];
        let n = [
            [minv[1][1] / det_i, -minv[0][1] / det_i],
            [-minv[1][0] / det_i, minv[0][0] / det_i],
        ];
        let mul = |a: [[f64; 2]; 2], b: [[f64; 2]; 2]| {
            [0, 1].map(|i| [0, 1].map(|j| a[i][0] * b[0][j] + a[i][1] * b[1][j]))
        };
        let apply = |a: [[f64; 2]; 2], v: [f64; 2]| [0, 1].map(|i| a[i][0] * v[0] + a[i][1] * v[1]);
        let a = mul(mul(minv, jac), n);
        let mc3 = apply(minv, [self.coef[0][3], self.coef[1][3]]);
        let mf = apply(minv, self.drift(c));
        let rows = minv.map(|r| r[0].abs() + r[1].abs());
        let csum = self.coef.iter().flatten().map(|v| v.abs()).sum::<f64>();
        // Constant part of the bound on |z'_i|, float64 slack included.
        let e = [0, 1].map(|i| {
            mf[i].abs()
                + minv[i][0].abs() * self.bound[0]
                + minv[i][1].abs() * self.bound[1]
                + 1e-9 * rows[i] * (1.0 + csum)
        });
        let slack = 1.0 + 1e-8;
        let width =
            |r: [f64; 2]| [0, 1].map(|k| (n[k][0].abs() * r[0] + n[k][1].abs() * r[1]) * slack);
        let need = |r: [f64; 2]| {
            let w = width(r);
            [0, 1].map(|i| {
                (e[i] + a[i][0].abs() * r[0] + a[i][1].abs() * r[1] + mc3[i].abs() * w[0] * w[1])
                    * slack
            })
        };
        if a[0][0].abs() >= PARA_MAX_RATE || a[1][1].abs() >= PARA_MAX_RATE {
            return None;
        }
        let ucur = [self.local(cur[0], 0), self.local(cur[1], 1)];
        let zcur = apply(minv, [ucur[0] - c[0], ucur[1] - c[1]]);
        // Smallest radii holding `cur` that the bound allows, by fixed-point iteration.
        let margin = rows.map(|r| 2.0 * Para::ROUNDING * r);
        let mut r =
            [0, 1].map(|i| (zcur[i].abs() + 2.0 * margin[i]).max(e[i] / (1.0 - a[i][i].abs())));
        let mut proven = false;
        for _ in 0..PARA_ROUNDS {
            let nd = need(r);
            if nd[0] <= r[0] && nd[1] <= r[1] {
                proven = true;
                break;
            }
            let w = width(r);
            r = [0, 1].map(|i| {
                let other = a[i][1 - i].abs() * r[1 - i];
                let want = (e[i] + other + mc3[i].abs() * w[0] * w[1]) / (1.0 - a[i][i].abs());
                r[i].max(want * 1.05)
            });
            let w = width(r);
            if (0..2).any(|k| c[k] - w[k] < self.allow[k][0] || c[k] + w[k] > self.allow[k][1]) {
                return None;
            }
        }
        if !proven {
            return None;
        }
        let w = width(r);
        let (lo, hi) = self.f32_box(
            [c[0] - w[0] - 1e-12, c[1] - w[1] - 1e-12],
            [c[0] + w[0] + 1e-12, c[1] + w[1] + 1e-12],
        )?;
        let para = Para {
            h: self.half.map(f64::from),
            offset: [0, 1].map(|k| 0.5 + f64::from(self.cell[k]) + c[k]),
            minv,
            r_test: [0, 1].map(|i| r[i] - margin[i]),
        };
        let trap = Trap {
            lo,
            hi,
            pixel: self.pixel,
            para: Some(para),
        };
        trap.contains(cur[0], cur[1]).then_some(trap)
    }
}

/// Newton steps [`CellModel::para_trap`] takes towards the fixed point.
pub(super) const PARA_NEWTON_STEPS: usize = 6;
/// Growth rounds of [`CellModel::para_trap`]'s radii.
pub(super) const PARA_ROUNDS: usize = 6;
/// Largest eigenvalue size [`CellModel::para_trap`] tries (slower orbits leave no room).
pub(super) const PARA_MAX_RATE: f64 = 0.999;
/// Smallest determinant of unit eigenvectors [`CellModel::para_trap`] accepts (condition
/// number below a few thousand).
pub(super) const PARA_MIN_DET: f64 = 1e-3;
/// Grid of [`CellModel::para_trap`]'s centre.
pub(super) const PARA_GRID: f64 = 1_073_741_824.0;

/// Bound on `|float32 step - P(g)|` for one component on a cell with taps `v`, for any
/// float32 grid point `g` of the cell (`P` as in [`FlowField::trapped_pixel`]), from the cell's
/// [`step_error_coefficients`] `(a, b)`: `a Σ|v| + b`.
#[inline(always)]
pub(super) fn step_error_bound((a, b): (f64, f64), v: [f64; 4]) -> f64 {
    a * (v[0].abs() + v[1].abs() + v[2].abs() + v[3].abs()) + b
}

/// `(a, b)` such that `a V + b` bounds `|float32 step - P(g)|` for one component on the cell
/// `(cx, cy)` (its top-left tap, as [`FlowField::cell`] gives it) whose taps have
/// `V = Σ |v_k|`; `u = 2^-24` (float32 rounding is off by at most `u |x|` for a result `x`):
///
/// * source index, per axis: `g + 1` (in `[0, 2]`, and below `(c + 1.5) / h` on cell `c`)
///   rounds by at most `u (g + 1)`, which times `h` is at most `u (|c| + 1.5)`; the fused
///   multiply-add (result below `|c| + 1.01` in size) rounds by at most `u (|c| + 1.01)`; the
///   fraction `w` and `1 - w` round by at most `u` each: that axis's weight factors are off by
///   at most `E = u (2 |c| + 6)` (generous);
/// * a weight (product of an x factor and a y factor, each in `[-E, 1 + E]`, rounded) is off
///   by at most `Ew = Ex + Ey + 4 Ex Ey + 2u`; the weighted sum's four roundings add at most
///   `5u V (1 + Ew)`;
/// * the final `g + d` rounds by at most `2u (1 + V (1 + Ew))`.
pub(super) fn step_error_coefficients(cell: [f32; 2]) -> (f64, f64) {
    let u = F32_UNIT_ROUNDOFF;
    let [ex, ey] = cell.map(|c| u * (2.0 * f64::from(c).abs() + 6.0));
    let ew = ex + ey + 4.0 * ex * ey + 2.0 * u;
    (ew + 5.0 * u * (1.0 + ew) + 2.0 * u * (1.0 + ew), 2.0 * u)
}

/// The largest float32 not above `x` (finite `x` within float32 range).
pub(super) fn f32_at_or_below(x: f64) -> f32 {
    let f = x as f32;
    if f64::from(f) > x { f.next_down() } else { f }
}

/// The smallest float32 not below `x` (finite `x` within float32 range).
pub(super) fn f32_at_or_above(x: f64) -> f32 {
    let f = x as f32;
    if f64::from(f) < x { f.next_up() } else { f }
}
