//! The fast exact path of [`super::FlowField`]: [`LANES`] trajectories advanced side by side
//! (structure of arrays, vectorized), each ending as soon as its final pixel is known: by exact
//! cycle detection or by a proven trap ([`super::traps`]). Same final pixels as the scalar
//! [`super::FlowField::integrate`], step for step.

use super::traps::TrapCache;
use super::{FlowField, PixelScale};

/// Points advanced side by side by [`FlowField::integrate_lanes`].
pub(super) const LANES: usize = 32;
/// Steps per block: lanes check for cycles and finish only between blocks.
pub(in crate::flows) const BLOCK: usize = 8;
/// A lane's first cycle anchor is refreshed every this many steps...
pub(in crate::flows) const ANCHOR_INTERVAL: u64 = 16;
/// ...and from this step on the interval doubles at every refresh, so that long cycles are
/// found too (Brent's method).
pub(in crate::flows) const ANCHOR_GROW_AFTER: u64 = 64;
/// `2^23` as float32: adding it to an integer-valued float in `[0, 2^23)` places the integer in
/// the mantissa bits exactly, which converts float to int with plain vector arithmetic.
pub(in crate::flows) const MANTISSA_SHIFT: f32 = 8_388_608.0;
/// Bit pattern of [`MANTISSA_SHIFT`].
pub(in crate::flows) const MANTISSA_BITS: u32 = 0x4B00_0000;

impl FlowField {
    /// Whether [`Self::integrate_lanes`] can index this field: padded coordinates below `2^23`
    /// (for the float-to-int conversion) and padded pixel indices that fit in `u32`.
    pub(super) fn lanes_supported(&self) -> bool {
        let rows = self.data.len() / self.stride;
        self.stride < (1 << 23) && rows < (1 << 23) && self.data.len() <= u32::MAX as usize
    }

    /// One Euler step of every lane, exactly as [`Self::sample`] followed by the clamp.
    // `max(-1).min(1)` equals `clamp(-1, 1)` on these finite values but compiles to vector
    // min/max, where `clamp` became per-lane branches.
    #[allow(clippy::manual_clamp)]
    #[inline(always)]
    pub(super) fn step_lanes(&self, gx: &mut [f32; LANES], gy: &mut [f32; LANES]) {
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
    pub(super) fn integrate_lanes(
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
                if !lane.periodic
                    && let Some(end) = cycle(t0, hit[l], hit_start[l], lane.anchor_t)
                        .and_then(|c| cycle_end(c, niter))
                {
                    lane.end = end;
                    lane.periodic = true;
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
                    if !lane.periodic && take_anchor(t1, &mut lane.anchor_t, &mut lane.interval) {
                        lane.anchor = (gx[l].to_bits(), gy[l].to_bits());
                    }
                }
            }
        }
        trapped
    }
}

/// The cycle a trajectory followed in blocks of [`BLOCK`] steps is shown to be on by the block
/// just stepped (from step `t0`): `(th, period)`, the step `th` whose position equals, bitwise,
/// the one `period` steps earlier, or `None`. `hit` and `hit_start` are the first steps of the
/// block (0-based; `BLOCK` for none) whose position equals the anchor taken after step
/// `anchor_t` and the position at the start of the block; the earlier repeat is taken. Shared by
/// the 2-D and 3-D lanes.
#[inline(always)]
pub(in crate::flows) fn cycle(
    t0: u64,
    hit: u32,
    hit_start: u32,
    anchor_t: u64,
) -> Option<(u64, u64)> {
    let mut found = None;
    if (hit as usize) < BLOCK {
        let th = t0 + u64::from(hit) + 1;
        found = Some((th, th - anchor_t));
    }
    if (hit_start as usize) < BLOCK {
        let th = t0 + u64::from(hit_start) + 1;
        if found.is_none_or(|(f, _)| th < f) {
            found = Some((th, th - t0));
        }
    }
    found
}

/// The step after which a trajectory whose position after step `th` repeats the one `period`
/// steps earlier holds its final position: `th + (niter - th) mod period`, or `None` when the
/// repeat came only after step `niter`. Shared by the 2-D and 3-D lanes.
#[inline(always)]
pub(in crate::flows) fn cycle_end((th, period): (u64, u64), niter: u64) -> Option<u64> {
    (th <= niter).then(|| th + (niter - th) % period)
}

/// Whether a lane still looking for its cycle takes its position after step `t1` as its new
/// anchor: every `interval` steps, the interval doubling at each refresh from step
/// [`ANCHOR_GROW_AFTER`] on (Brent's method, so that long cycles are found too); updates
/// `anchor_t` and `interval` when it does. Shared by the 2-D and 3-D lanes.
#[inline(always)]
pub(in crate::flows) fn take_anchor(t1: u64, anchor_t: &mut u64, interval: &mut u64) -> bool {
    if t1 - *anchor_t < *interval {
        return false;
    }
    *anchor_t = t1;
    if t1 >= ANCHOR_GROW_AFTER {
        *interval *= 2;
    }
    true
}

/// Book-keeping of one lane of [`FlowField::integrate_lanes`].
#[derive(Clone, Copy)]
pub(super) struct Lane {
    /// Index of the point in this lane (`usize::MAX`: idle).
    pub(super) point: usize,
    /// Steps done at the start of the current block.
    pub(super) t: u64,
    /// Step after which the position is the final one.
    pub(super) end: u64,
    /// Anchor position (bits of gx, gy) and the step after which it was taken.
    pub(super) anchor: (u32, u32),
    pub(super) anchor_t: u64,
    /// Steps between anchor refreshes.
    pub(super) interval: u64,
    /// A cycle was found (`end` is set from it).
    pub(super) periodic: bool,
    /// Step from which the next trap proof may be tried, and the failed tries so far (each
    /// failure doubles the wait, so that points that never settle cost little).
    pub(super) trap_t: u64,
    pub(super) trap_fails: u32,
}

impl Lane {
    pub(super) const IDLE: Lane = Lane {
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

    pub(super) fn start(point: usize, gx: f32, gy: f32, niter: u64) -> Lane {
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
