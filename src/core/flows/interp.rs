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
//! soon as its trajectory is known to be periodic and takes the next point. The arithmetic of
//! every lane is the scalar [`FlowField::integrate`]'s, so results are bit for bit the same.

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
        FlowField {
            data,
            stride,
            half_w: width as f32 / 2.0,
            half_h: height as f32 / 2.0,
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

    /// `niter` Euler steps from each of `starts` (grid points `(gx, gy)`), final positions into
    /// `out`; the same results as [`Self::integrate`] on each point.
    ///
    /// Each lane keeps an anchor (its position at some step `ta`); when the position after step
    /// `t` equals it bitwise, the trajectory is periodic from `ta` with period `t - ta`, so the
    /// final position is the one after step `t + (niter - t) mod (t - ta)`: the lane just runs
    /// to that step instead of `niter`. Two anchors are compared at every step: one refreshed at
    /// growing intervals (Brent's method, for long cycles) and the lane's position at the start
    /// of the current block (short cycles are found within a block of entering them).
    /// Positions of the current block are kept, so a lane can finish inside a block.
    fn integrate_lanes(&self, starts: &[(f32, f32)], niter: u32, out: &mut [(f32, f32)]) {
        debug_assert_eq!(starts.len(), out.len());
        if niter == 0 {
            out.copy_from_slice(starts);
            return;
        }
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
            for (l, lane) in lanes.iter_mut().enumerate() {
                if lane.point == usize::MAX {
                    continue;
                }
                let t0 = lane.t;
                let t1 = t0 + BLOCK as u64;
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
                if lane.end <= t1 {
                    let k = (lane.end - t0 - 1) as usize;
                    out[lane.point] = (hist_x[k][l], hist_y[k][l]);
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
    }
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
    let sx = (width - 1) as f32;
    let sy = (height - 1) as f32;
    let lanes = field.lanes_supported();
    let mut out = vec![(0i32, 0i32); points.len()];
    out.par_chunks_mut(CHUNK)
        .zip(points.par_chunks(CHUNK))
        .for_each_init(
            || (Vec::with_capacity(CHUNK), Vec::with_capacity(CHUNK)),
            |(starts, ends), (dst, src)| {
                starts.clear();
                starts.extend(src.iter().map(|&(y, x)| {
                    let gx = (x as f32 / sx) * 2.0 - 1.0;
                    let gy = (y as f32 / sy) * 2.0 - 1.0;
                    (gx, gy)
                }));
                ends.clear();
                if lanes {
                    ends.resize(starts.len(), (0.0, 0.0));
                    field.integrate_lanes(starts, niter, ends);
                } else {
                    ends.extend(
                        starts
                            .iter()
                            .map(|&(gx, gy)| field.integrate(gx, gy, niter)),
                    );
                }
                for (d, &(gx, gy)) in dst.iter_mut().zip(ends.iter()) {
                    let fxp = (gx + 1.0) * 0.5 * sx;
                    let fyp = (gy + 1.0) * 0.5 * sy;
                    *d = (fyp as i32, fxp as i32);
                }
            },
        );
    out
}

#[cfg(test)]
mod tests {
    use super::FlowField;

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

    #[test]
    fn lanes_and_cycle_shortcuts_match_plain_euler_steps() {
        for &(h, w) in &[(61usize, 83usize), (2, 2), (3, 40)] {
            let (dx, dy, mask) = field(h, w);
            let f = FlowField::new(&dx, &dy, &mask, h, w);
            assert!(f.lanes_supported());
            let (sx, sy) = ((w - 1) as f32, (h - 1) as f32);
            let starts: Vec<(f32, f32)> = (0..h * w)
                .map(|i| {
                    let (y, x) = (i / w, i % w);
                    ((x as f32 / sx) * 2.0 - 1.0, (y as f32 / sy) * 2.0 - 1.0)
                })
                .collect();
            for niter in [0u32, 1, 5, 16, 17, 63, 200, 517] {
                let mut out = vec![(0.0f32, 0.0f32); starts.len()];
                f.integrate_lanes(&starts, niter, &mut out);
                for (i, (&(gx, gy), &(ox, oy))) in starts.iter().zip(&out).enumerate() {
                    // Plain Euler steps, no cycle shortcut.
                    let (mut ex, mut ey) = (gx, gy);
                    for _ in 0..niter {
                        let [ddx, ddy] = f.sample(ex, ey);
                        ex = (ex + ddx).clamp(-1.0, 1.0);
                        ey = (ey + ddy).clamp(-1.0, 1.0);
                    }
                    let (rx, ry) = f.integrate(gx, gy, niter);
                    assert_eq!((ex.to_bits(), ey.to_bits()), (rx.to_bits(), ry.to_bits()));
                    assert_eq!(
                        (ex.to_bits(), ey.to_bits()),
                        (ox.to_bits(), oy.to_bits()),
                        "{h}×{w}, niter {niter}, point {i}"
                    );
                }
            }
        }
    }
}
