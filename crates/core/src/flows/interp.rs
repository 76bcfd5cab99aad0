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

use crate::simd;

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
        let mut wnw = [0.0f32; LANES];
        let mut wne = [0.0f32; LANES];
        let mut wsw = [0.0f32; LANES];
        let mut wse = [0.0f32; LANES];
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
            wnw[l] = s * e;
            wne[l] = s * w;
            wsw[l] = n * e;
            wse[l] = n * w;
            let px = ((x0 + 1.0) + MANTISSA_SHIFT).to_bits() - MANTISSA_BITS;
            let py = ((y0 + 1.0) + MANTISSA_SHIFT).to_bits() - MANTISSA_BITS;
            top[l] = (py * stride + px).min(max_top);
        }
        let st = self.stride;
        let mut ddx = [0.0f32; LANES];
        let mut ddy = [0.0f32; LANES];
        for l in 0..LANES {
            let t = top[l] as usize;
            let win = &self.data[t..t + st + 2];
            let (v00, v01, v10, v11) = (win[0], win[1], win[st], win[st + 1]);
            let (nw, ne, sw, se) = (wnw[l], wne[l], wsw[l], wse[l]);
            ddx[l] = v11[0].mul_add(se, v10[0].mul_add(sw, v01[0].mul_add(ne, v00[0] * nw)));
            ddy[l] = v11[1].mul_add(se, v10[1].mul_add(sw, v01[1].mul_add(ne, v00[1] * nw)));
        }
        for l in 0..LANES {
            gx[l] = (gx[l] + ddx[l]).max(-1.0).min(1.0);
            gy[l] = (gy[l] + ddy[l]).max(-1.0).min(1.0);
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
    /// * **Traps.** A trap is a box (or parallelogram) that no step leaves, inside one output
    ///   pixel: once a trajectory is in one, that pixel is its final one however many steps
    ///   remain. After each block the lane's position is looked up among the traps proven so
    ///   far for its cell (`traps`, which the caller may share between batches on one field);
    ///   failing that, when the block's positions stayed in one bilinear cell and one pixel,
    ///   the box they span is offered to [`Self::trapped_pixel`] (at most every block, then
    ///   after waits that double with each failure, so that points that never settle cost
    ///   little; and not when a proof for a box at least half as small failed in that cell
    ///   lately, see [`TrapCache::worth_trying`]). Skipping a proof only costs steps: the
    ///   lane goes on stepping and ends by a later trap or by its cycle.
    ///
    /// Inlined into [`crate::simd::dispatch`]'s copies (AVX2 + FMA, or the baseline).
    #[inline(always)]
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
            // Cheap vector test before the proof: the block stayed in one cell and one pixel
            // (compared as floats: truncation of non-negative values); and each lane's cache
            // key, the padded index of its cell (integers in [0, 2^23): see `lanes_supported`).
            let mut settled = [false; LANES];
            let mut keys = [0u32; LANES];
            let stride = self.stride as u32;
            for l in 0..LANES {
                let (cx0, cx1) = (
                    Self::cell(lo_x[l], self.half_w),
                    Self::cell(hi_x[l], self.half_w),
                );
                let (cy0, cy1) = (
                    Self::cell(lo_y[l], self.half_h),
                    Self::cell(hi_y[l], self.half_h),
                );
                let p0 = scale.pixel_f32(lo_x[l], lo_y[l]);
                let p1 = scale.pixel_f32(hi_x[l], hi_y[l]);
                settled[l] = (cx0 == cx1) & (cy0 == cy1) & (p0.0 == p1.0) & (p0.1 == p1.1);
                let kx = ((Self::cell(gx[l], self.half_w) + 1.0) + MANTISSA_SHIFT).to_bits()
                    - MANTISSA_BITS;
                let ky = ((Self::cell(gy[l], self.half_h) + 1.0) + MANTISSA_SHIFT).to_bits()
                    - MANTISSA_BITS;
                keys[l] = ky.wrapping_mul(stride).wrapping_add(kx);
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
                    let key = keys[l];
                    debug_assert_eq!(key, self.cell_key(x, y));
                    if let Some(trap) = traps.get(key)
                        && trap.contains(x, y)
                    {
                        finished = Some(trap.pixel);
                        trapped += 1;
                    } else if settled[l] && t1 >= lane.trap_t {
                        let extent = (hi_x[l] - lo_x[l]).max(hi_y[l] - lo_y[l]);
                        let tried = traps.worth_trying(key, extent);
                        let r = if tried {
                            self.trapped_pixel(
                                [lo_x[l], lo_y[l]],
                                [hi_x[l], hi_y[l]],
                                [x, y],
                                scale,
                            )
                        } else {
                            None
                        };
                        match r {
                            Some(trap) if trap.contains(x, y) => {
                                finished = Some(trap.pixel);
                                trapped += 1;
                                traps.insert(key, trap);
                            }
                            _ => {
                                if tried {
                                    traps.record_failure(key, extent);
                                }
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

    /// [`Self::pixel`] as floats (equal exactly when the pixels are equal, for grid points in
    /// `[-1, 1]`: the values truncated are non-negative and below `2^31`), without the
    /// saturating float-to-int conversion.
    #[inline(always)]
    fn pixel_f32(self, gx: f32, gy: f32) -> (f32, f32) {
        let fxp = (gx + 1.0) * 0.5 * self.sx;
        let fyp = (gy + 1.0) * 0.5 * self.sy;
        (fyp.trunc(), fxp.trunc())
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
    /// The box, or the parallelogram's bounding box.
    lo: [f32; 2],
    hi: [f32; 2],
    pixel: (i32, i32),
    /// When set, the trap is this parallelogram inside the box (see [`Para`]).
    para: Option<Para>,
}

/// A parallelogram trap `{g : |(Minv ((g + 1) h - offset))_i| <= r_i}`, its sides along the
/// eigenvectors of the step's Jacobian at a fixed point ([`FlowField::para_trap`]).
#[derive(Clone, Copy)]
struct Para {
    /// Per axis: the half size `h` and `offset = 1/2 + cell + centre` (exact in float64).
    h: [f64; 2],
    offset: [f64; 2],
    minv: [[f64; 2]; 2],
    /// Half-widths in eigen coordinates, shrunk by [`Para::ROUNDING`]'s margin so that a
    /// point the float64 test accepts is inside the proven parallelogram.
    r_test: [f64; 2],
}

impl Para {
    /// Bound on the float64 error of `(g + 1) h - offset` (pixel units) for `h <= 2^22`, and
    /// on the rounding of the 2 × 2 product after it (times the row's absolute sum of `minv`).
    const ROUNDING: f64 = 1e-8;

    #[inline(always)]
    fn contains(&self, gx: f32, gy: f32) -> bool {
        let d = [
            (f64::from(gx) + 1.0) * self.h[0] - self.offset[0],
            (f64::from(gy) + 1.0) * self.h[1] - self.offset[1],
        ];
        (0..2).all(|i| (self.minv[i][0] * d[0] + self.minv[i][1] * d[1]).abs() <= self.r_test[i])
    }
}

impl Trap {
    #[inline(always)]
    fn contains(&self, gx: f32, gy: f32) -> bool {
        self.lo[0] <= gx
            && gx <= self.hi[0]
            && self.lo[1] <= gy
            && gy <= self.hi[1]
            && self.para.is_none_or(|p| p.contains(gx, gy))
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
    /// Per cell (direct-mapped like `slots`): the size of the last box whose proof failed.
    failed: Vec<(u32, f32)>,
}

impl TrapCache {
    fn new() -> Self {
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
    fn worth_trying(&self, key: u32, extent: f32) -> bool {
        let (k, failed) = self.failed[Self::slot(key)];
        k != key || extent < 0.5 * failed
    }

    fn record_failure(&mut self, key: u32, extent: f32) {
        self.failed[Self::slot(key)] = (key, extent);
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
    fn trapped_pixel(
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
struct CellModel {
    half: [f32; 2],
    cell: [f32; 2],
    pixel: (i32, i32),
    scale: PixelScale,
    grid_per_u: [f64; 2],
    /// Per axis, the local interval where cell and pixel overlap, shrunk by a margin for the
    /// float32 rounding of the pixel function (an estimate: the exact test comes last).
    allow: [[f64; 2]; 2],
    /// Per component `k`: `P_k(u) = u_k + c0 + c1 ux + c2 uy + c3 ux uy`.
    coef: [[f64; 4]; 2],
    /// Per component: bound on `|float32 step - P|` in local units, float64 slack included.
    bound: [f64; 2],
}

impl CellModel {
    /// The model of the cell holding `lo`, or `None` when the box `[lo, hi]` is not inside
    /// the estimated overlap of that cell and `lo`'s pixel.
    fn new(field: &FlowField, lo: [f32; 2], hi: [f32; 2], scale: PixelScale) -> Option<Self> {
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
    fn local(&self, g: f32, k: usize) -> f64 {
        (f64::from(g) + 1.0) * f64::from(self.half[k]) - 0.5 - f64::from(self.cell[k])
    }

    fn to_grid(&self, u: f64, k: usize) -> f64 {
        (u + 0.5 + f64::from(self.cell[k])) * self.grid_per_u[k] - 1.0
    }

    /// `P(u) - u`, per component.
    fn drift(&self, u: [f64; 2]) -> [f64; 2] {
        self.coef
            .map(|[c0, c1, c2, c3]| c0 + c1 * u[0] + (c2 + c3 * u[0]) * u[1])
    }

    /// Jacobian of [`Self::drift`] at `u` (rows: components).
    fn drift_jacobian(&self, u: [f64; 2]) -> [[f64; 2]; 2] {
        self.coef
            .map(|[_, c1, c2, c3]| [c1 + c3 * u[1], c2 + c3 * u[0]])
    }

    /// Image of the local box `[ulo, uhi]` under `P`, widened by the rounding bound: the
    /// corners' images (P is bilinear, so its extremes over a rectangle are at the corners).
    fn image(&self, ulo: [f64; 2], uhi: [f64; 2]) -> ([f64; 2], [f64; 2]) {
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
    fn f32_box(&self, ulo: [f64; 2], uhi: [f64; 2]) -> Option<([f32; 2], [f32; 2])> {
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
    fn box_trap(&self, lo: [f32; 2], hi: [f32; 2]) -> Option<Trap> {
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
    fn para_trap(&self, lo: [f32; 2], hi: [f32; 2], cur: [f32; 2]) -> Option<Trap> {
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
const PARA_NEWTON_STEPS: usize = 6;
/// Growth rounds of [`CellModel::para_trap`]'s radii.
const PARA_ROUNDS: usize = 6;
/// Largest eigenvalue size [`CellModel::para_trap`] tries (slower orbits leave no room).
const PARA_MAX_RATE: f64 = 0.999;
/// Smallest determinant of unit eigenvectors [`CellModel::para_trap`] accepts (condition
/// number below a few thousand).
const PARA_MIN_DET: f64 = 1e-3;
/// Grid of [`CellModel::para_trap`]'s centre.
const PARA_GRID: f64 = 1_073_741_824.0;

/// Bound on `|float32 step - P(g)|` for one component on a cell with taps `v`, for any
/// float32 grid point `g` of the cell (`P` as in [`FlowField::trapped_pixel`]), from the cell's
/// [`step_error_coefficients`] `(a, b)`: `a Σ|v| + b`.
#[inline(always)]
fn step_error_bound((a, b): (f64, f64), v: [f64; 4]) -> f64 {
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
fn step_error_coefficients(cell: [f32; 2]) -> (f64, f64) {
    let u = F32_UNIT_ROUNDOFF;
    let [ex, ey] = cell.map(|c| u * (2.0 * f64::from(c).abs() + 6.0));
    let ew = ex + ey + 4.0 * ex * ey + 2.0 * u;
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
    #[inline(always)]
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
                simd::dispatch(FollowBatch {
                    field: &field,
                    lanes,
                    starts,
                    niter,
                    scale,
                    traps,
                    dst,
                })
            },
        );
    out
}

/// One batch of [`follow_flows`]'s points, run through [`simd::dispatch`].
struct FollowBatch<'a> {
    field: &'a FlowField,
    lanes: bool,
    starts: &'a [(f32, f32)],
    niter: u32,
    scale: PixelScale,
    traps: &'a mut TrapCache,
    dst: &'a mut [(i32, i32)],
}

impl simd::Kernel for FollowBatch<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let FollowBatch {
            field,
            lanes,
            starts,
            niter,
            scale,
            traps,
            dst,
        } = self;
        if lanes {
            field.integrate_lanes(starts, niter, scale, traps, dst);
        } else {
            for (d, &(gx, gy)) in dst.iter_mut().zip(starts.iter()) {
                let (ex, ey) = field.integrate(gx, gy, niter);
                *d = scale.pixel(ex, ey);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{CellModel, FlowField, PixelScale, Trap, TrapCache};

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

    /// Sinks that overshoot: around each centre (a grid of them, at varied sub-pixel
    /// offsets) the flow is `-K (p - c)` with `K` of gains 1.9 and 0.6 along axes turned by
    /// varied angles, capped at one pixel per step. Orbits there flip from side to side and
    /// settle slowly, along eigenvectors away from the image axes: where box traps fail.
    fn flip_field(h: usize, w: usize) -> (Vec<f32>, Vec<f32>, Vec<bool>) {
        let mut dx = vec![0.0f32; h * w];
        let mut dy = vec![0.0f32; h * w];
        let spacing = 12.0f32;
        for y in 0..h {
            for x in 0..w {
                let (gy, gx) = ((y as f32 / spacing).round(), (x as f32 / spacing).round());
                let k = gy * 7.0 + gx * 3.0;
                let cy = gy * spacing + 0.37 * (k * 1.3).sin();
                let cx = gx * spacing + 0.41 * (k * 0.7).cos();
                let angle = 0.5 + 0.37 * k;
                let (c, s) = (angle.cos(), angle.sin());
                let (ry, rx) = (y as f32 - cy, x as f32 - cx);
                // Along (c, s): gain 1.9 + small variation; across: 0.6.
                let (a, b) = (rx * c + ry * s, -rx * s + ry * c);
                let g1 = 1.85 + 0.1 * (k * 0.9).sin();
                let (fa, fb) = (-g1 * a, -0.6 * b);
                let (mut fx, mut fy) = (fa * c - fb * s, fa * s + fb * c);
                let norm = (fx * fx + fy * fy).sqrt();
                if norm > 1.0 {
                    (fx, fy) = (fx / norm, fy / norm);
                }
                dx[y * w + x] = 5.0 * fx;
                dy[y * w + x] = 5.0 * fy;
            }
        }
        (dx, dy, vec![true; h * w])
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
        let sizes = [
            (61usize, 83usize, false),
            (2, 2, false),
            (3, 40, false),
            (61, 83, true),
        ];
        for &(h, w, flip) in &sizes {
            let (dx, dy, mask) = if flip { flip_field(h, w) } else { field(h, w) };
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

    /// Every float32 point of a trap that the box or the parallelogram proof proves stays in
    /// it and ends, after any number of steps, in the trap's pixel; a trap holds the position
    /// it was offered (a box trap: the whole box).
    #[test]
    fn trapped_boxes_keep_their_points() {
        let (h, w) = (61usize, 83usize);
        let (mut proven, mut checked, mut boxes, mut paras) = (0, 0, 0, 0);
        for (dx, dy, mask) in [field(h, w), flip_field(h, w)] {
            let f = FlowField::new(&dx, &dy, &mask, h, w);
            let (scale, starts) = grid_starts(h, w);
            let mut rng = 0x2545_f491_4f6c_dd1du64;
            let mut unit = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng >> 40) as f32 / (1u64 << 24) as f32
            };
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
                    // Both kinds of proof on their own (`trapped_pixel` tries the box first).
                    let Some(model) = CellModel::new(&f, lo, hi, scale) else {
                        continue;
                    };
                    let found: Vec<Trap> =
                        [model.box_trap(lo, hi), model.para_trap(lo, hi, [gx, gy])]
                            .into_iter()
                            .flatten()
                            .collect();
                    if found.is_empty() {
                        continue;
                    }
                    for trap in found {
                        let p = trap.pixel;
                        assert!(trap.contains(gx, gy), "the trap holds the current position");
                        let mut points = Vec::new();
                        match trap.para {
                            None => {
                                assert!(trap.contains(lo[0], lo[1]) && trap.contains(hi[0], hi[1]));
                                let (lo, hi) = (trap.lo, trap.hi);
                                boxes += 1;
                                points.extend([
                                    (lo[0], lo[1]),
                                    (hi[0], hi[1]),
                                    (lo[0], hi[1]),
                                    (hi[0], lo[1]),
                                ]);
                                while points.len() < 12 {
                                    points.push((
                                        (lo[0] + (hi[0] - lo[0]) * unit()).clamp(lo[0], hi[0]),
                                        (lo[1] + (hi[1] - lo[1]) * unit()).clamp(lo[1], hi[1]),
                                    ));
                                }
                            }
                            Some(para) => {
                                // Points of the parallelogram: its corners (just inside) and random
                                // points, from eigen coordinates back to float32 grid points.
                                paras += 1;
                                let m = para.minv;
                                let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
                                let n = [
                                    [m[1][1] / det, -m[0][1] / det],
                                    [-m[1][0] / det, m[0][0] / det],
                                ];
                                for j in 0..400 {
                                    let z = match j {
                                        0..4 => [
                                            if j & 1 == 0 { 0.999 } else { -0.999 },
                                            if j & 2 == 0 { 0.999 } else { -0.999 },
                                        ],
                                        _ => [
                                            2.0 * f64::from(unit()) - 1.0,
                                            2.0 * f64::from(unit()) - 1.0,
                                        ],
                                    };
                                    let z = [z[0] * para.r_test[0], z[1] * para.r_test[1]];
                                    let g = [0, 1].map(|k| {
                                        let d = n[k][0] * z[0] + n[k][1] * z[1];
                                        ((d + para.offset[k]) / para.h[k] - 1.0) as f32
                                    });
                                    if trap.contains(g[0], g[1]) {
                                        points.push((g[0], g[1]));
                                    }
                                    if points.len() == 12 {
                                        break;
                                    }
                                }
                                assert!(
                                    points.len() >= 8,
                                    "parallelogram points: {}",
                                    points.len()
                                );
                            }
                        }
                        proven += 1;
                        for &(px, py) in &points {
                            let (mut x, mut y) = (px, py);
                            for _ in 0..301 {
                                let [ddx, ddy] = f.sample(x, y);
                                x = (x + ddx).clamp(-1.0, 1.0);
                                y = (y + ddy).clamp(-1.0, 1.0);
                                assert!(trap.contains(x, y), "left the trap");
                                assert_eq!(scale.pixel(x, y), p);
                                checked += 1;
                            }
                        }
                    }
                    break;
                }
            }
        }
        eprintln!("{boxes} boxes, {paras} parallelograms, {checked} steps checked");
        assert!(
            boxes > 50 && paras > 20,
            "{boxes} boxes, {paras} parallelograms"
        );
        assert!(proven > 100, "only {proven} boxes proven");
        assert!(checked > 100_000);
    }
}
