//! Euler integration of pixels along the flow field: Cellpose 4's `steps_interp`, emulating
//! torch's CPU `grid_sample` (bilinear, zero padding, `align_corners=False`) in float32 bit for bit.
//!
//! Every step is ordered as torch orders it on x86-64: the grid-sample source index and the
//! weighted sum of the four neighbours use fused multiply-adds (`mul_add`, exactly rounded with
//! or without hardware FMA), everything else is plain float32 arithmetic.

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
        for y in 0..height {
            let row = &mut data[(y + 1) * stride + 1..(y + 1) * stride + 1 + width];
            for (x, cell) in row.iter_mut().enumerate() {
                let i = y * width + x;
                if mask[i] {
                    *cell = [(dx[i] / 5.0) * scale_x, (dy[i] / 5.0) * scale_y];
                }
            }
        }
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
    let mut out = vec![(0i32, 0i32); points.len()];
    out.par_chunks_mut(CHUNK)
        .zip(points.par_chunks(CHUNK))
        .for_each(|(dst, src)| {
            for (d, &(y, x)) in dst.iter_mut().zip(src) {
                let gx = (x as f32 / sx) * 2.0 - 1.0;
                let gy = (y as f32 / sy) * 2.0 - 1.0;
                let (gx, gy) = field.integrate(gx, gy, niter);
                let fxp = (gx + 1.0) * 0.5 * sx;
                let fyp = (gy + 1.0) * 0.5 * sy;
                *d = (fyp as i32, fxp as i32);
            }
        });
    out
}
