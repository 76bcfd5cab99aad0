//! Euler integration of pixels along the flow field: Cellpose 4's `steps_interp`, emulating
//! torch's CPU `grid_sample` (bilinear, zero padding, `align_corners=False`) in float32 bit for bit.
//!
//! Every step is ordered as torch orders it on x86-64: the grid-sample source index and the
//! weighted sum of the four neighbours use fused multiply-adds (`mul_add`, exactly rounded with
//! or without hardware FMA), everything else is plain float32 arithmetic.
//!
//! Trajectories are independent, so [`FlowField::integrate_lanes`] advances [`LANES`] points
//! side by side (structure of arrays: the compiler turns the per-lane loops into AVX2 code and
//! the scalar dependency chain of one trajectory no longer bounds the speed). Each lane stops as
//! soon as its final pixel is known — its trajectory is periodic, or provably trapped in a box
//! inside one pixel — and takes the next point. The arithmetic of every lane is the scalar
//! [`FlowField::integrate`]'s, so the final pixels are exactly the same.

use rayon::prelude::*;

/// Points integrated per rayon task; each point's trajectory is independent.
const CHUNK: usize = 2048;

/// The flow field prepared for sampling: per pixel the (x, y) displacement in normalized grid
/// units, padded with one ring of zeros so that bilinear taps never leave the buffer.
struct FlowField {
    /// `(height + 2) * (width + 2)` interleaved (x, y) pairs.
    data: Vec<[f32; 2]>,
    stride: usize,
    half_w: f32,
    half_h: f32,
    /// Per axis: local cell units per output pixel (`2 h / (size - 1)`) and grid units per
    /// local unit (`1 / h`), for the trap search's estimates.
    u_per_px: [f64; 2],
    grid_per_u: [f64; 2],
    /// `(a, b)` of [`Self::step_error_bound`]: the bound is `a Σ|v| + b`.
    step_error: (f64, f64),
}

impl FlowField {
    /// Builds Cellpose's sampling image from the raw flows: `dP * mask / 5`, then each axis
    /// multiplied by `2 / (size - 1)` rounded to float32.
    fn new(dx: &[f32], dy: &[f32], mask: &[bool], height: usize, width: usize) -> Self {
        let stride = width + 2;
        let scale_x = (2.0f64 / (width as f64 - 1.0)) as f32;
        let scale_y = (2.0f64 / (height as f64 - 1.0)) as f32;
        let mut data = vec![[0.0f32; 2]; (height + 2) * stride];
        // Padded row y + 1 holds image row y between one zero column on each side.
        data[stride..(height + 1) * stride]
            .par_chunks_mut(stride)
            .enumerate()
            .for_each(|(y, row)| {
                let i0 = y * width;
                for (x, cell) in row[1..1 + width].iter_mut().enumerate() {
                    let i = i0 + x;
                    if mask[i] {
                        *cell = [(dx[i] / 5.0) * scale_x, (dy[i] / 5.0) * scale_y];
                    }
                }
            });
        let (half_w, half_h) = (width as f32 / 2.0, height as f32 / 2.0);
        FlowField {
            data,
            stride,
            half_w,
            half_h,
            u_per_px: [
                2.0 * f64::from(half_w) / (width as f64 - 1.0),
                2.0 * f64::from(half_h) / (height as f64 - 1.0),
            ],
            grid_per_u: [1.0 / f64::from(half_w), 1.0 / f64::from(half_h)],
            step_error: step_error_coefficients(half_w.max(half_h)),
        }
    }

    /// torch's vectorized bilinear `grid_sample` at normalized grid point (gx, gy).
    #[inline(always)]
    fn sample(&self, gx: f32, gy: f32) -> [f32; 2] {
        let ix = (gx + 1.0).mul_add(self.half_w, -0.5);
        let iy = (gy + 1.0).mul_add(self.half_h, -0.5);
        let x0 = ix.floor();
        let y0 = iy.floor();
        let w = ix - x0;
        let e = 1.0 - w;
        let n = iy - y0;
        let s = 1.0 - n;
        let nw = s * e;
        let ne = s * w;
        let sw = n * e;
        let se = n * w;
        // Padded coordinates: x0 is in [-1, width - 1], so x0 + 1 is in [0, width].
        let px = (x0 as isize + 1) as usize;
        let py = (y0 as isize + 1) as usize;
        let top = py * self.stride + px;
        let bottom = top + self.stride;
        let v00 = self.data[top];
        let v01 = self.data[top + 1];
        let v10 = self.data[bottom];
        let v11 = self.data[bottom + 1];
        let mut out = [0.0f32; 2];
        for k in 0..2 {
            out[k] = v11[k].mul_add(se, v10[k].mul_add(sw, v01[k].mul_add(ne, v00[k] * nw)));
        }
        out
    }
}

/// Points advanced side by side by [`FlowField::integrate_lanes`].
const LANES: usize = 32;
/// Steps per block: lanes check for cycles and finish only between blocks.
const BLOCK: usize = 8;
/// A lane's first cycle anchor is refreshed every this many steps...
const ANCHOR_INTERVAL: u64 = 16;
/// ...and from this step on the interval doubles at every refresh, so that long cycles are
/// found too (Brent's method).
const ANCHOR_GROW_AFTER: u64 = 64;
/// `2^23` as float32: adding it to an integer-valued float in `[0, 2^23)` places the integer in
/// the mantissa bits exactly, which converts float to int with plain vector arithmetic.
const MANTISSA_SHIFT: f32 = 8_388_608.0;
/// Bit pattern of [`MANTISSA_SHIFT`].
const MANTISSA_BITS: u32 = 0x4B00_0000;

impl FlowField {
    /// Whether [`Self::integrate_lanes`] can index this field: padded coordinates below `2^23`
    /// (for the float-to-int conversion) and padded pixel indices that fit in `u32`.
    fn lanes_supported(&self) -> bool {
        let rows = self.data.len() / self.stride;
        self.stride < (1 << 23) && rows < (1 << 23) && self.data.len() <= u32::MAX as usize
    }

    /// One Euler step of every lane, exactly as [`Self::sample`] followed by the clamp.
    // `max(-1).min(1)` equals `clamp(-1, 1)` on these finite values but compiles to vector
    // min/max, where `clamp` became per-lane branches.
    #[allow(clippy::manual_clamp)]
    #[inline(always)]
    fn step_lanes(&self, gx: &mut [f32; LANES], gy: &mut [f32; LANES]) {
        let mut top = [0u32; LANES];
        let mut weights = [[0.0f32; 4]; LANES];
        // Never binding for valid positions; keeps the four taps inside the buffer regardless.
        let max_top = (self.data.len() - self.stride - 2) as u32;
        let stride = self.stride as u32;
        for l in 0..LANES {
            let ix = (gx[l] + 1.0).mul_add(self.half_w, -0.5);
            let iy = (gy[l] + 1.0).mul_add(self.half_h, -0.5);
            let x0 = ix.floor();
            let y0 = iy.floor();
            let w = ix - x0;
            let e = 1.0 - w;
            let n = iy - y0;
            let s = 1.0 - n;
            weights[l] = [s * e, s * w, n * e, n * w];
            // x0 + 1 and y0 + 1 are integers in [0, 2^23) (see `lanes_supported`).
            let px = ((x0 + 1.0) + MANTISSA_SHIFT).to_bits() - MANTISSA_BITS;
            let py = ((y0 + 1.0) + MANTISSA_SHIFT).to_bits() - MANTISSA_BITS;
            top[l] = (py * stride + px).min(max_top);
        }
        let st = self.stride;
        let mut d = [[0.0f32; 2]; LANES];
        for l in 0..LANES {
            let t = top[l] as usize;
            let win = &self.data[t..t + st + 2];
            let (v00, v01, v10, v11) = (win[0], win[1], win[st], win[st + 1]);
            let [nw, ne, sw, se] = weights[l];
            for k in 0..2 {
                d[l][k] = v11[k].mul_add(se, v10[k].mul_add(sw, v01[k].mul_add(ne, v00[k] * nw)));
            }
        }
        for l in 0..LANES {
            // Same as `clamp(-1, 1)` for finite values (also for -0.0), but vectorizes.
            gx[l] = (gx[l] + d[l][0]).max(-1.0).min(1.0);
            gy[l] = (gy[l] + d[l][1]).max(-1.0).min(1.0);
        }
    }

    /// `niter` Euler steps from each of `starts` (grid points `(gx, gy)`), final pixels (see
    /// [`PixelScale::pixel`]) into `out`; the same results as [`Self::integrate`] on each point.
    /// Returns how many points ended early by a trap proof (for tests and diagnostics).
    ///
    /// A lane stops early in two exact ways:
    ///
    /// * **Cycles.** Each lane keeps an anchor (its position at some step `ta`); when the
    ///   position after step `t` equals it bitwise, the trajectory is periodic from `ta` with
    ///   period `t - ta`, so the final position is the one after step
    ///   `t + (niter - t) mod (t - ta)`: the lane just runs to that step instead of `niter`. Two
    ///   anchors are compared at every step: one refreshed at growing intervals (Brent's method,
    ///   for long cycles) and the lane's position at the start of the current block (short
    ///   cycles are found within a block of entering them). Positions of the current block are
    ///   kept, so a lane can finish inside a block.
    /// * **Traps.** A trap is a box that no step leaves, inside one output pixel: once a
    ///   trajectory is in one, that pixel is its final one however many steps remain. After
    ///   each block the lane's position is looked up among the traps proven so far for its
    ///   cell (`traps`, which the caller may share between batches on one field); failing
    ///   that, when the block's positions stayed in one bilinear cell and one pixel, the box
    ///   they span is offered to
    ///   [`Self::trapped_pixel`] (at most every block, then after waits that double with each
    ///   failure, so that points that never settle cost little).
    fn integrate_lanes(
        &self,
        starts: &[(f32, f32)],
        niter: u32,
        scale: PixelScale,
        traps: &mut TrapCache,
        out: &mut [(i32, i32)],
    ) -> usize {
        debug_assert_eq!(starts.len(), out.len());
        if niter == 0 {
            for (o, &(gx, gy)) in out.iter_mut().zip(starts) {
                *o = scale.pixel(gx, gy);
            }
            return 0;
        }
        let mut trapped = 0usize;
        let niter = u64::from(niter);
        let mut gx = [0.0f32; LANES];
        let mut gy = [0.0f32; LANES];
        let mut lanes = [Lane::IDLE; LANES];
        let mut next = 0usize;
        let mut active = 0usize;
        for (l, lane) in lanes.iter_mut().enumerate() {
            if let Some(&(x, y)) = starts.get(next) {
                (gx[l], gy[l]) = (x, y);
                *lane = Lane::start(next, x, y, niter);
                next += 1;
                active += 1;
            }
        }
        let mut ax = [0u32; LANES];
        let mut ay = [0u32; LANES];
        let mut bx = [0u32; LANES];
        let mut by = [0u32; LANES];
        let mut hist_x = [[0.0f32; LANES]; BLOCK];
        let mut hist_y = [[0.0f32; LANES]; BLOCK];
        while active > 0 {
            for (l, lane) in lanes.iter().enumerate() {
                (ax[l], ay[l]) = lane.anchor;
                (bx[l], by[l]) = (gx[l].to_bits(), gy[l].to_bits());
            }
            // First step of the block whose position equals the anchor, and the first whose
            // position equals the one at the start of the block (BLOCK: none).
            let mut hit = [BLOCK as u32; LANES];
            let mut hit_start = [BLOCK as u32; LANES];
            for k in 0..BLOCK {
                self.step_lanes(&mut gx, &mut gy);
                for l in 0..LANES {
                    let (px, py) = (gx[l].to_bits(), gy[l].to_bits());
                    let eq = (px == ax[l]) & (py == ay[l]);
                    hit[l] = if eq & (hit[l] == BLOCK as u32) {
                        k as u32
                    } else {
                        hit[l]
                    };
                    let eq = (px == bx[l]) & (py == by[l]);
                    hit_start[l] = if eq & (hit_start[l] == BLOCK as u32) {
                        k as u32
                    } else {
                        hit_start[l]
                    };
                }
                hist_x[k] = gx;
                hist_y[k] = gy;
            }
            // Per-lane box of the block's positions, for the trap proof.
            let (mut lo_x, mut hi_x, mut lo_y, mut hi_y) =
                (hist_x[0], hist_x[0], hist_y[0], hist_y[0]);
            for k in 1..BLOCK {
                for l in 0..LANES {
                    lo_x[l] = lo_x[l].min(hist_x[k][l]);
                    hi_x[l] = hi_x[l].max(hist_x[k][l]);
                    lo_y[l] = lo_y[l].min(hist_y[k][l]);
                    hi_y[l] = hi_y[l].max(hist_y[k][l]);
                }
            }
            // Cheap vector test before the proof: the block stayed in one cell and one pixel.
            let mut settled = [false; LANES];
            for l in 0..LANES {
                let (cx0, cx1) = (
                    Self::cell(lo_x[l], self.half_w),
                    Self::cell(hi_x[l], self.half_w),
                );
                let (cy0, cy1) = (
                    Self::cell(lo_y[l], self.half_h),
                    Self::cell(hi_y[l], self.half_h),
                );
                let p0 = scale.pixel(lo_x[l], lo_y[l]);
                let p1 = scale.pixel(hi_x[l], hi_y[l]);
                settled[l] = (cx0 == cx1) & (cy0 == cy1) & (p0.0 == p1.0) & (p0.1 == p1.1);
            }
            for (l, lane) in lanes.iter_mut().enumerate() {
                if lane.point == usize::MAX {
                    continue;
                }
                let t0 = lane.t;
                let t1 = t0 + BLOCK as u64;
                let mut finished = None;
                if !lane.periodic && lane.end > t1 {
                    let (x, y) = (gx[l], gy[l]);
                    let key = self.cell_key(x, y);
                    if let Some(trap) = traps.get(key)
                        && trap.contains(x, y)
                    {
                        finished = Some(trap.pixel);
                        trapped += 1;
                    } else if settled[l] && t1 >= lane.trap_t {
                        match self.trapped_pixel([lo_x[l], lo_y[l]], [hi_x[l], hi_y[l]], scale) {
                            Some(trap) if trap.contains(x, y) => {
                                finished = Some(trap.pixel);
                                trapped += 1;
                                traps.insert(key, trap);
                            }
                            _ => {
                                lane.trap_fails += 1;
                                lane.trap_t =
                                    t1 + (BLOCK as u64) * ((1u64 << lane.trap_fails.min(6)) - 1);
                            }
                        }
                    }
                }
                if !lane.periodic {
                    // (step after which the position repeats, period): from the anchor, or
                    // from the block's first position, whichever shows it first.
                    let mut found = None;
                    if (hit[l] as usize) < BLOCK {
                        let th = t0 + u64::from(hit[l]) + 1;
                        found = Some((th, th - lane.anchor_t));
                    }
                    if (hit_start[l] as usize) < BLOCK {
                        let th = t0 + u64::from(hit_start[l]) + 1;
                        if found.is_none_or(|(f, _)| th < f) {
                            found = Some((th, th - t0));
                        }
                    }
                    if let Some((th, period)) = found
                        && th <= niter
                    {
                        lane.end = th + (niter - th) % period;
                        lane.periodic = true;
                    }
                }
                if finished.is_none() && lane.end <= t1 {
                    let k = (lane.end - t0 - 1) as usize;
                    finished = Some(scale.pixel(hist_x[k][l], hist_y[k][l]));
                }
                if let Some(p) = finished {
                    out[lane.point] = p;
                    if let Some(&(x, y)) = starts.get(next) {
                        (gx[l], gy[l]) = (x, y);
                        *lane = Lane::start(next, x, y, niter);
                        next += 1;
                    } else {
                        // Idle lanes keep stepping from a valid position; their anchor (NaN
                        // bits) never matches.
                        *lane = Lane::IDLE;
                        active -= 1;
                    }
                } else {
                    lane.t = t1;
                    if !lane.periodic && t1 - lane.anchor_t >= lane.interval {
                        lane.anchor = (gx[l].to_bits(), gy[l].to_bits());
                        lane.anchor_t = t1;
                        if t1 >= ANCHOR_GROW_AFTER {
                            lane.interval *= 2;
                        }
                    }
                }
            }
        }
        trapped
    }
}

/// Conversion of a final grid position to the pixel Cellpose reports: `p_final.int()` of the
/// position in pixel units, `(y, x)`.
#[derive(Clone, Copy)]
struct PixelScale {
    /// `width - 1` and `height - 1` as float32.
    sx: f32,
    sy: f32,
}

impl PixelScale {
    /// `(int(fyp), int(fxp))` with `fxp = (gx + 1) * 0.5 * sx` in float32, as Cellpose. Each
    /// coordinate is non-decreasing in its grid coordinate.
    #[inline(always)]
    fn pixel(self, gx: f32, gy: f32) -> (i32, i32) {
        let fxp = (gx + 1.0) * 0.5 * self.sx;
        let fyp = (gy + 1.0) * 0.5 * self.sy;
        (fyp as i32, fxp as i32)
    }
}

/// Growth rounds [`FlowField::trapped_pixel`] tries before giving up on a box.
const TRAP_ROUNDS: usize = 3;
/// Room, in grid units (two float32 ulps of 1; times the half size: pixel units), that the
/// search in [`FlowField::trapped_pixel`] leaves for rounding its box to float32.
const TRAP_MARGIN_ULPS: f64 = 2.0 / 8_388_608.0;
/// Unit roundoff of float32 (`2^-24`).
const F32_UNIT_ROUNDOFF: f64 = 1.0 / 16_777_216.0;

/// A proven trap: a box (grid coordinates) that no step leaves, inside one bilinear cell and
/// one output pixel.
#[derive(Clone, Copy)]
struct Trap {
    lo: [f32; 2],
    hi: [f32; 2],
    pixel: (i32, i32),
}

impl Trap {
    #[inline(always)]
    fn contains(&self, gx: f32, gy: f32) -> bool {
        self.lo[0] <= gx && gx <= self.hi[0] && self.lo[1] <= gy && gy <= self.hi[1]
    }
}

/// Slots of [`TrapCache`] (a power of two).
const TRAP_CACHE_SLOTS: usize = 512;

/// Traps proven so far on one flow field, one per cell at most (direct-mapped on the cell's
/// padded index; a newer trap replaces an older one in its slot). A trap is a fact about the
/// field, so one cache serves every batch of points that a rayon job integrates; neighbouring
/// points end in the same few cells, so most lanes find their trap here instead of proving one.
struct TrapCache {
    slots: Vec<(u32, Trap)>,
}

impl TrapCache {
    fn new() -> Self {
        let empty = Trap {
            lo: [0.0; 2],
            hi: [0.0; 2],
            pixel: (0, 0),
        };
        TrapCache {
            slots: vec![(u32::MAX, empty); TRAP_CACHE_SLOTS],
        }
    }

    #[inline(always)]
    fn slot(key: u32) -> usize {
        (key.wrapping_mul(0x9E37_79B1) >> (32 - TRAP_CACHE_SLOTS.trailing_zeros())) as usize
    }

    #[inline(always)]
    fn get(&self, key: u32) -> Option<&Trap> {
        let (k, trap) = &self.slots[Self::slot(key)];
        (*k == key).then_some(trap)
    }

    fn insert(&mut self, key: u32, trap: Trap) {
        self.slots[Self::slot(key)] = (key, trap);
    }
}

impl FlowField {
    /// Padded index of the top-left tap of the cell that grid point `(gx, gy)` samples (the
    /// key of [`TrapCache`]); valid positions only.
    #[inline(always)]
    fn cell_key(&self, gx: f32, gy: f32) -> u32 {
        let cx = Self::cell(gx, self.half_w) as isize + 1;
        let cy = Self::cell(gy, self.half_h) as isize + 1;
        (cy as usize * self.stride + cx as usize) as u32
    }

    /// The bilinear cell whose four taps [`Self::sample`] uses at grid coordinate `g`
    /// (`floor` of the source index, computed exactly as there). Non-decreasing in `g`.
    #[inline(always)]
    fn cell(g: f32, half: f32) -> f32 {
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
    /// 3. *Rounding.* The float32 step differs from `P` by at most [`Self::step_error_bound`].
    ///
    /// So when the corners' images widened by that bound lie in `B`, every float32 step from a
    /// point of `B` lands in `B` (inside `[-1, 1]`, where the clamp changes nothing): the
    /// trajectory stays in `B` for ever, and its final pixel is the pixel of `B`.
    ///
    /// The search for such a box works in float64 on the cell's local coordinates: the box is
    /// grown towards its image (hull plus slack), [`TRAP_ROUNDS`] times at most, inside an
    /// estimate of where the cell and the pixel overlap. A box found that way is then rounded
    /// outwards to float32 and checked once more by the exact tests 1–3 above, so the estimates
    /// only decide how often a proof succeeds, never whether one is right. `None` means "not
    /// proven", never "leaves".
    fn trapped_pixel(&self, lo: [f32; 2], hi: [f32; 2], scale: PixelScale) -> Option<Trap> {
        let half = [self.half_w, self.half_h];
        let cell = [Self::cell(lo[0], half[0]), Self::cell(lo[1], half[1])];
        let pixel = scale.pixel(lo[0], lo[1]);
        let pix = [pixel.1, pixel.0];
        // Local coordinates `u = (g + 1) h - 1/2 - cell` (pixel units; the cell is [0, 1)²).
        let local =
            |g: f32, k: usize| (f64::from(g) + 1.0) * f64::from(half[k]) - 0.5 - f64::from(cell[k]);
        let to_grid = |u: f64, k: usize| (u + 0.5 + f64::from(cell[k])) * self.grid_per_u[k] - 1.0;
        let mut ulo = [local(lo[0], 0), local(lo[1], 1)];
        let mut uhi = [local(hi[0], 0), local(hi[1], 1)];
        // Where cell and pixel overlap, shrunk by a margin for the float32 rounding of the
        // pixel function (an estimate: the exact test comes last).
        let mut allow = [[0.0f64; 2]; 2];
        for k in 0..2 {
            let h = f64::from(half[k]);
            let margin = 1e-5 + h * TRAP_MARGIN_ULPS;
            let px_to_u = |p: f64| self.u_per_px[k] * p - 0.5 - f64::from(cell[k]);
            allow[k] = [
                px_to_u(f64::from(pix[k])).max(0.0) + margin,
                px_to_u(f64::from(pix[k]) + 1.0).min(1.0) - margin,
            ];
            if ulo[k] < allow[k][0] || uhi[k] > allow[k][1] {
                return None;
            }
        }
        // Padded position of the top-left tap (cell indices are in [-1, size - 1]).
        let top = (cell[1] as isize + 1) as usize * self.stride + (cell[0] as isize + 1) as usize;
        let taps = [
            self.data[top],
            self.data[top + 1],
            self.data[top + self.stride],
            self.data[top + self.stride + 1],
        ];
        // P in local coordinates, per component: `u + c0 + c1 ux + c2 uy + c3 ux uy` (the taps'
        // bilinear interpolation as a polynomial, scaled by h). Float64 rounding: `local` is
        // off by at most ~2^-51 (2h + 2), the coefficients and this evaluation (on `u` near
        // [0, 1]) by a few 2^-53 (1 + Σ|c|); the extra `(1e-9 + 1e-14 h) (1 + Σ|c|)` in `bound`
        // covers all of it, for the box's ends as well, many times over.
        let mut coef = [[0.0f64; 4]; 2];
        let mut bound = [0.0f64; 2];
        for k in 0..2 {
            let h = f64::from(half[k]);
            let [a, b, c, d] = taps.map(|v| f64::from(v[k]));
            coef[k] = [h * a, h * (b - a), h * (c - a), h * (a - b - c + d)];
            let csum: f64 = coef[k].iter().map(|c| c.abs()).sum();
            bound[k] = h * self.step_error_bound([a, b, c, d]) + (1e-9 + 1e-14 * h) * (1.0 + csum);
        }
        let image = |ulo: [f64; 2], uhi: [f64; 2]| {
            let mut img_lo = [f64::INFINITY; 2];
            let mut img_hi = [f64::NEG_INFINITY; 2];
            for (ux, uy) in [
                (ulo[0], ulo[1]),
                (uhi[0], ulo[1]),
                (ulo[0], uhi[1]),
                (uhi[0], uhi[1]),
            ] {
                let u = [ux, uy];
                for k in 0..2 {
                    let [c0, c1, c2, c3] = coef[k];
                    let p = u[k] + (c0 + c1 * ux + (c2 + c3 * ux) * uy);
                    img_lo[k] = img_lo[k].min(p - bound[k]);
                    img_hi[k] = img_hi[k].max(p + bound[k]);
                }
            }
            (img_lo, img_hi)
        };
        // Search: the image must fit with room for the float32 rounding of the box.
        let mut found = false;
        for _ in 0..TRAP_ROUNDS {
            let (img_lo, img_hi) = image(ulo, uhi);
            let room = |k: usize| f64::from(half[k]) * TRAP_MARGIN_ULPS;
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
                if ulo[k] < allow[k][0] || uhi[k] > allow[k][1] {
                    return None;
                }
            }
        }
        if !found {
            return None;
        }
        // The exact tests on the float32 box that contains the one found.
        let lo = [0, 1].map(|k| f32_at_or_below(to_grid(ulo[k], k) - 1e-12));
        let hi = [0, 1].map(|k| f32_at_or_above(to_grid(uhi[k], k) + 1e-12));
        let one_cell_one_pixel = (0..2).all(|k| {
            lo[k] >= -1.0
                && hi[k] <= 1.0
                && Self::cell(lo[k], half[k]) == cell[k]
                && Self::cell(hi[k], half[k]) == cell[k]
        }) && scale.pixel(lo[0], lo[1]) == pixel
            && scale.pixel(hi[0], hi[1]) == pixel;
        if !one_cell_one_pixel {
            return None;
        }
        let (ulo, uhi) = (
            [local(lo[0], 0), local(lo[1], 1)],
            [local(hi[0], 0), local(hi[1], 1)],
        );
        let (img_lo, img_hi) = image(ulo, uhi);
        (0..2)
            .all(|k| img_lo[k] >= ulo[k] && img_hi[k] <= uhi[k])
            .then_some(Trap { lo, hi, pixel })
    }

    /// Bound on `|float32 step - P(g)|` for one component on a cell with taps `v`, for any
    /// float32 grid point `g` of the cell (`P` as in [`Self::trapped_pixel`]): see
    /// [`step_error_coefficients`].
    #[inline(always)]
    fn step_error_bound(&self, v: [f64; 4]) -> f64 {
        let (a, b) = self.step_error;
        a * (v[0].abs() + v[1].abs() + v[2].abs() + v[3].abs()) + b
    }
}

/// `(a, b)` such that `a V + b` bounds `|float32 step - P(g)|` for one component on a cell
/// whose taps have `V = Σ |v_k|`; `u = 2^-24`, `h` the larger half size:
///
/// * source index: `g + 1` rounds by at most `2u` (it is below 2), scaled by `h`; the fused
///   multiply-add rounds once more by at most `u (2h + 1)`; the fraction `w` and `1 - w` add
///   at most `u` each: every weight factor is off by at most `E = u (8h + 8)` (generous);
/// * a weight (product of two factors in `[-E, 1 + E]`, rounded) is off by at most
///   `Ew = 2E + 4E² + 2u`; the weighted sum's four roundings add at most `5u V (1 + Ew)`;
/// * the final `g + d` rounds by at most `2u (1 + V (1 + Ew))`.
fn step_error_coefficients(half: f32) -> (f64, f64) {
    let u = F32_UNIT_ROUNDOFF;
    let h = f64::from(half);
    let e = u * (8.0 * h + 8.0);
    let ew = 2.0 * e + 4.0 * e * e + 2.0 * u;
    (ew + 5.0 * u * (1.0 + ew) + 2.0 * u * (1.0 + ew), 2.0 * u)
}

/// The largest float32 not above `x` (finite `x` within float32 range).
fn f32_at_or_below(x: f64) -> f32 {
    let f = x as f32;
    if f64::from(f) > x { f.next_down() } else { f }
}

/// The smallest float32 not below `x` (finite `x` within float32 range).
fn f32_at_or_above(x: f64) -> f32 {
    let f = x as f32;
    if f64::from(f) < x { f.next_up() } else { f }
}

/// Book-keeping of one lane of [`FlowField::integrate_lanes`].
#[derive(Clone, Copy)]
struct Lane {
    /// Index of the point in this lane (`usize::MAX`: idle).
    point: usize,
    /// Steps done at the start of the current block.
    t: u64,
    /// Step after which the position is the final one.
    end: u64,
    /// Anchor position (bits of gx, gy) and the step after which it was taken.
    anchor: (u32, u32),
    anchor_t: u64,
    /// Steps between anchor refreshes.
    interval: u64,
    /// A cycle was found (`end` is set from it).
    periodic: bool,
    /// Step from which the next trap proof may be tried, and the failed tries so far (each
    /// failure doubles the wait, so that points that never settle cost little).
    trap_t: u64,
    trap_fails: u32,
}

impl Lane {
    const IDLE: Lane = Lane {
        point: usize::MAX,
        t: 0,
        end: 0,
        anchor: (u32::MAX, u32::MAX),
        anchor_t: 0,
        interval: ANCHOR_INTERVAL,
        periodic: false,
        trap_t: 0,
        trap_fails: 0,
    };

    fn start(point: usize, gx: f32, gy: f32, niter: u64) -> Lane {
        Lane {
            point,
            t: 0,
            end: niter,
            anchor: (gx.to_bits(), gy.to_bits()),
            anchor_t: 0,
            interval: ANCHOR_INTERVAL,
            periodic: false,
            trap_t: 0,
            trap_fails: 0,
        }
    }
}

/// Longest cycle of positions recognised by [`FlowField::integrate`].
const MAX_PERIOD: usize = 4;
/// History ring size (a power of two larger than `MAX_PERIOD`).
const RING: usize = 8;

impl FlowField {
    /// `niter` Euler steps from grid point (gx, gy), as Cellpose's loop. The step is a fixed
    /// function of the position, so once a position repeats the trajectory is periodic: when
    /// the position after step t equals the one after step t - k (k <= 4, bitwise), the final
    /// position is read off the cycle instead of iterating on. Exactly the same result, much
    /// sooner for the points that have settled on a centre.
    #[inline]
    fn integrate(&self, mut gx: f32, mut gy: f32, niter: u32) -> (f32, f32) {
        let niter = niter as usize;
        let mut ring = [(0u32, 0u32); RING];
        ring[0] = (gx.to_bits(), gy.to_bits());
        for t in 1..=niter {
            let [dx, dy] = self.sample(gx, gy);
            gx = (gx + dx).clamp(-1.0, 1.0);
            gy = (gy + dy).clamp(-1.0, 1.0);
            let state = (gx.to_bits(), gy.to_bits());
            for k in 1..=MAX_PERIOD.min(t) {
                if ring[(t - k) % RING] == state {
                    // s_m = s_{t-k + (m - (t-k)) mod k} for m >= t - k.
                    let start = t - k;
                    let (bx, by) = ring[(start + (niter - start) % k) % RING];
                    return (f32::from_bits(bx), f32::from_bits(by));
                }
            }
            ring[t % RING] = state;
        }
        (gx, gy)
    }
}

/// Integrates every point for `niter` steps and returns the final positions truncated to
/// integers, as `(y, x)` pairs in pixel units (Cellpose's `p_final.int()`).
///
/// `points` are the `(y, x)` pixel indices of `mask` in row-major order; `dx`, `dy` are the raw
/// network flows `dP[1]`, `dP[0]`, each `height * width`. Both dimensions must be at least 2.
pub(crate) fn follow_flows(
    dx: &[f32],
    dy: &[f32],
    mask: &[bool],
    height: usize,
    width: usize,
    points: &[(u32, u32)],
    niter: u32,
) -> Vec<(i32, i32)> {
    let field = FlowField::new(dx, dy, mask, height, width);
    let scale = PixelScale {
        sx: (width - 1) as f32,
        sy: (height - 1) as f32,
    };
    let (sx, sy) = (scale.sx, scale.sy);
    let lanes = field.lanes_supported();
    let mut out = vec![(0i32, 0i32); points.len()];
    out.par_chunks_mut(CHUNK)
        .zip(points.par_chunks(CHUNK))
        .for_each_init(
            || (Vec::with_capacity(CHUNK), TrapCache::new()),
            |(starts, traps), (dst, src)| {
                starts.clear();
                starts.extend(src.iter().map(|&(y, x)| {
                    let gx = (x as f32 / sx) * 2.0 - 1.0;
                    let gy = (y as f32 / sy) * 2.0 - 1.0;
                    (gx, gy)
                }));
                if lanes {
                    field.integrate_lanes(starts, niter, scale, traps, dst);
                } else {
                    for (d, &(gx, gy)) in dst.iter_mut().zip(starts.iter()) {
                        let (ex, ey) = field.integrate(gx, gy, niter);
                        *d = scale.pixel(ex, ey);
                    }
                }
            },
        );
    out
}

#[cfg(test)]
mod tests {
    use super::{FlowField, PixelScale, TrapCache};

    /// A deterministic swirl-and-sink flow field with a few sinks, some saddle regions and
    /// border-crossing flows, so that trajectories reach fixed points, cycles of many periods,
    /// the clamp and the zero padding.
    fn field(h: usize, w: usize) -> (Vec<f32>, Vec<f32>, Vec<bool>) {
        let mut dx = vec![0.0f32; h * w];
        let mut dy = vec![0.0f32; h * w];
        let mut mask = vec![false; h * w];
        let centres = [
            (h as f32 * 0.3, w as f32 * 0.25),
            (h as f32 * 0.7, w as f32 * 0.6),
        ];
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let (mut fy, mut fx) = (0.0f32, 0.0f32);
                for (k, &(cy, cx)) in centres.iter().enumerate() {
                    let (ry, rx) = (cy - y as f32, cx - x as f32);
                    let r = (ry * ry + rx * rx).sqrt() + 1.0;
                    let swirl = if k == 0 { 0.6 } else { -0.3 };
                    fy += 5.0 * (ry + swirl * rx) / r / (1.0 + r / 20.0);
                    fx += 5.0 * (rx - swirl * ry) / r / (1.0 + r / 20.0);
                }
                fy += ((x * 7 + y * 3) % 11) as f32 * 0.05 - 0.25;
                fx += ((x * 5 + y * 13) % 7) as f32 * 0.07 - 0.2;
                dy[i] = fy;
                dx[i] = fx;
                mask[i] = (x + 2 * y) % 17 != 0;
            }
        }
        (dx, dy, mask)
    }

    /// Plain Euler steps (no shortcut) and Cellpose's pixel of the end point.
    fn euler_pixel(f: &FlowField, scale: PixelScale, gx: f32, gy: f32, niter: u32) -> (i32, i32) {
        let (mut ex, mut ey) = (gx, gy);
        for _ in 0..niter {
            let [ddx, ddy] = f.sample(ex, ey);
            ex = (ex + ddx).clamp(-1.0, 1.0);
            ey = (ey + ddy).clamp(-1.0, 1.0);
        }
        scale.pixel(ex, ey)
    }

    fn grid_starts(h: usize, w: usize) -> (PixelScale, Vec<(f32, f32)>) {
        let (sx, sy) = ((w - 1) as f32, (h - 1) as f32);
        let starts = (0..h * w)
            .map(|i| {
                let (y, x) = (i / w, i % w);
                ((x as f32 / sx) * 2.0 - 1.0, (y as f32 / sy) * 2.0 - 1.0)
            })
            .collect();
        (PixelScale { sx, sy }, starts)
    }

    #[test]
    fn lanes_and_shortcuts_match_plain_euler_steps() {
        let mut trapped_at_200 = 0;
        for &(h, w) in &[(61usize, 83usize), (2, 2), (3, 40)] {
            let (dx, dy, mask) = field(h, w);
            let f = FlowField::new(&dx, &dy, &mask, h, w);
            assert!(f.lanes_supported());
            let (scale, starts) = grid_starts(h, w);
            for niter in [0u32, 1, 5, 16, 17, 63, 200, 517] {
                let mut out = vec![(0i32, 0i32); starts.len()];
                let trapped =
                    f.integrate_lanes(&starts, niter, scale, &mut TrapCache::new(), &mut out);
                if niter == 200 {
                    trapped_at_200 += trapped;
                }
                for (i, (&(gx, gy), &o)) in starts.iter().zip(&out).enumerate() {
                    let expected = euler_pixel(&f, scale, gx, gy, niter);
                    let (rx, ry) = f.integrate(gx, gy, niter);
                    assert_eq!(scale.pixel(rx, ry), expected);
                    assert_eq!(o, expected, "{h}×{w}, niter {niter}, point {i}");
                }
            }
        }
        // The trap proof is exercised, not only the cycle shortcut.
        assert!(trapped_at_200 > 100, "{trapped_at_200} points trapped");
    }

    /// Every float32 point of a trap that `trapped_pixel` proves stays in it and ends, after
    /// any number of steps, in the trap's pixel; the trap holds the box it was offered.
    #[test]
    fn trapped_boxes_keep_their_points() {
        let (h, w) = (61usize, 83usize);
        let (dx, dy, mask) = field(h, w);
        let f = FlowField::new(&dx, &dy, &mask, h, w);
        let (scale, starts) = grid_starts(h, w);
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut unit = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng >> 40) as f32 / (1u64 << 24) as f32
        };
        let (mut proven, mut checked) = (0, 0);
        for &(sx0, sy0) in starts.iter().step_by(3) {
            // Boxes of 8 consecutive positions, as integrate_lanes offers them.
            let (mut gx, mut gy) = (sx0, sy0);
            for _block in 0..12 {
                let (mut lo, mut hi) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
                for _ in 0..8 {
                    let [ddx, ddy] = f.sample(gx, gy);
                    gx = (gx + ddx).clamp(-1.0, 1.0);
                    gy = (gy + ddy).clamp(-1.0, 1.0);
                    lo = [lo[0].min(gx), lo[1].min(gy)];
                    hi = [hi[0].max(gx), hi[1].max(gy)];
                }
                let Some(trap) = f.trapped_pixel(lo, hi, scale) else {
                    continue;
                };
                let p = trap.pixel;
                assert!(trap.contains(lo[0], lo[1]) && trap.contains(hi[0], hi[1]));
                let (lo, hi) = (trap.lo, trap.hi);
                proven += 1;
                for j in 0..12 {
                    let (px, py) = match j {
                        0 => (lo[0], lo[1]),
                        1 => (hi[0], hi[1]),
                        2 => (lo[0], hi[1]),
                        3 => (hi[0], lo[1]),
                        _ => (
                            lo[0] + (hi[0] - lo[0]) * unit(),
                            lo[1] + (hi[1] - lo[1]) * unit(),
                        ),
                    };
                    let (mut x, mut y) = (px.clamp(lo[0], hi[0]), py.clamp(lo[1], hi[1]));
                    for _ in 0..301 {
                        let [ddx, ddy] = f.sample(x, y);
                        x = (x + ddx).clamp(-1.0, 1.0);
                        y = (y + ddy).clamp(-1.0, 1.0);
                        assert!(trap.contains(x, y), "left the trap");
                        assert_eq!(scale.pixel(x, y), p);
                        checked += 1;
                    }
                }
                break;
            }
        }
        assert!(proven > 100, "only {proven} boxes proven");
        assert!(checked > 100_000);
    }
}
