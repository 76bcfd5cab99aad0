//! Euler integration of pixels along the flow field: Cellpose 4's `steps_interp`, emulating
//! torch's CPU `grid_sample` (bilinear, zero padding, `align_corners=False`) in float32 bit for bit.
//!
//! Every step is ordered as torch orders it on x86-64: the grid-sample source index and the
//! weighted sum of the four neighbours use fused multiply-adds (`mul_add`, exactly rounded with
//! or without hardware FMA), everything else is plain float32 arithmetic.
//!
//! Trajectories are independent, so [`FlowField::integrate_lanes`] advances [`lanes::LANES`] points
//! side by side (structure of arrays: the compiler turns the per-lane loops into AVX2 code and
//! the scalar dependency chain of one trajectory no longer bounds the speed). Each lane stops as
//! soon as its final pixel is known — its trajectory is periodic, or provably trapped in a box
//! inside one pixel — and takes the next point. The arithmetic of every lane is the scalar
//! [`FlowField::integrate`]'s, so the final pixels are exactly the same.
//!
//! Layout: this file holds Cellpose's definition (the sampling field, [`FlowField::sample`],
//! the scalar [`FlowField::integrate`], [`follow_flows`]); `lanes` the fast exact path (lanes,
//! cycle detection); `traps` the trap proofs, which only let a lane stop early.

use rayon::prelude::*;

use crate::simd;

pub(super) mod lanes;
mod traps;

use traps::TrapCache;

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
    use super::traps::{CellModel, Trap, TrapCache};
    use super::{FlowField, PixelScale};

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
