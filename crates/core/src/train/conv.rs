//! Direct 3×3 convolution ('same' zero padding, stride 1) with explicit SIMD: the trainer's
//! hot loop. Each output row is computed in tiles of two vectors × eight output channels held
//! in registers, reading the zero-padded input rows directly (no im2col matrix, no packing).
//! Compiled for the best instruction set of the CPU at run time (AVX-512, AVX2+FMA, or the
//! baseline) through `crate::simd`. The backward pass with respect to the input is the same
//! kernel on the padded output gradient with the filters flipped and transposed.

use pulp::{Simd, WithSimd};

/// Output channels per register tile.
const CB: usize = 8;

/// A vector from `s` (its length at most the vector's lanes; missing lanes are zero).
#[inline(always)]
fn load<S: Simd>(simd: S, s: &[f32]) -> S::f32s {
    if s.len() == S::F32_LANES {
        S::as_simd_f32s(s).0[0]
    } else {
        simd.partial_load_f32s(s)
    }
}

/// Stores the first `s.len()` lanes of `v` into `s`.
#[inline(always)]
fn store<S: Simd>(simd: S, s: &mut [f32], v: S::f32s) {
    if s.len() == S::F32_LANES {
        S::as_mut_simd_f32s(s).0[0] = v;
    } else {
        simd.partial_store_f32s(s, v);
    }
}

/// Copies `x` (`c × h × w`) into `xp` (`c × (h+2) × (w+2)`) with a zero border.
pub fn pad1(x: &[f32], c: usize, h: usize, w: usize, xp: &mut [f32]) {
    let (ph, pw) = (h + 2, w + 2);
    for ci in 0..c {
        let plane = &mut xp[ci * ph * pw..(ci + 1) * ph * pw];
        plane[..pw].fill(0.0);
        plane[(ph - 1) * pw..].fill(0.0);
        for y in 0..h {
            let row = &mut plane[(y + 1) * pw..(y + 2) * pw];
            row[0] = 0.0;
            row[pw - 1] = 0.0;
            row[1..=w].copy_from_slice(&x[(ci * h + y) * w..][..w]);
        }
    }
}

/// Filters `cout × cin × 3 × 3` rearranged as `[cout/8 blocks][cin][9][8]` (zero-filled past
/// `cout`), the layout the kernel reads.
pub fn block_filters(wt: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    let nblk = cout.div_ceil(CB);
    let mut wb = vec![0.0f32; nblk * cin * 9 * CB];
    for co in 0..cout {
        for ci in 0..cin {
            for k in 0..9 {
                wb[(((co / CB) * cin + ci) * 9 + k) * CB + co % CB] = wt[(co * cin + ci) * 9 + k];
            }
        }
    }
    wb
}

/// The filters of the input-gradient pass: `w'[ci, co, ky, kx] = w[co, ci, 2 − ky, 2 − kx]`,
/// blocked as [`block_filters`] does for `cin` outputs.
pub fn block_filters_transposed(wt: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    let mut t = vec![0.0f32; cin * cout * 9];
    for co in 0..cout {
        for ci in 0..cin {
            for k in 0..9 {
                t[(ci * cout + co) * 9 + (8 - k)] = wt[(co * cin + ci) * 9 + k];
            }
        }
    }
    block_filters(&t, cout, cin)
}

/// One image: `out[co, y, x] = bias[co] + Σ wb · xp` over `cin` channels, 3×3 window.
pub struct Conv3x3<'a> {
    /// Zero-padded input, `cin × (h+2) × (w+2)`.
    pub xp: &'a [f32],
    /// Blocked filters ([`block_filters`]).
    pub wb: &'a [f32],
    /// Bias per output channel (or empty: none).
    pub bias: &'a [f32],
    /// Output, `cout × h × w`.
    pub out: &'a mut [f32],
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl WithSimd for Conv3x3<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Conv3x3 {
            xp,
            wb,
            bias,
            out,
            cin,
            cout,
            h,
            w,
        } = self;
        let l = S::F32_LANES;
        let (pw, ph) = (w + 2, h + 2);
        let nblk = cout.div_ceil(CB);
        for blk in 0..nblk {
            let wblk = &wb[blk * cin * 9 * CB..(blk + 1) * cin * 9 * CB];
            let nco = (cout - blk * CB).min(CB);
            let mut b0 = [simd.splat_f32s(0.0); CB];
            if !bias.is_empty() {
                for (c, b) in b0.iter_mut().enumerate().take(nco) {
                    *b = simd.splat_f32s(bias[blk * CB + c]);
                }
            }
            for y in 0..h {
                let mut x0 = 0;
                while x0 < w {
                    if x0 + 2 * l <= w {
                        let mut acc0 = b0;
                        let mut acc1 = b0;
                        for ci in 0..cin {
                            for ky in 0..3 {
                                let row = &xp[(ci * ph + y + ky) * pw..][..pw];
                                for kx in 0..3 {
                                    let v0 = load(simd, &row[x0 + kx..x0 + kx + l]);
                                    let v1 = load(simd, &row[x0 + kx + l..x0 + kx + 2 * l]);
                                    let wk = &wblk[(ci * 9 + ky * 3 + kx) * CB..][..CB];
                                    for c in 0..CB {
                                        let wv = simd.splat_f32s(wk[c]);
                                        acc0[c] = simd.mul_add_f32s(wv, v0, acc0[c]);
                                        acc1[c] = simd.mul_add_f32s(wv, v1, acc1[c]);
                                    }
                                }
                            }
                        }
                        for c in 0..nco {
                            let o = &mut out[((blk * CB + c) * h + y) * w + x0..][..2 * l];
                            let (o0, o1) = o.split_at_mut(l);
                            store(simd, o0, acc0[c]);
                            store(simd, o1, acc1[c]);
                        }
                        x0 += 2 * l;
                    } else {
                        let n = l.min(w - x0);
                        let mut acc0 = b0;
                        for ci in 0..cin {
                            for ky in 0..3 {
                                let row = &xp[(ci * ph + y + ky) * pw..][..pw];
                                for kx in 0..3 {
                                    let v0 = load(simd, &row[x0 + kx..x0 + kx + n]);
                                    let wk = &wblk[(ci * 9 + ky * 3 + kx) * CB..][..CB];
                                    for c in 0..CB {
                                        let wv = simd.splat_f32s(wk[c]);
                                        acc0[c] = simd.mul_add_f32s(wv, v0, acc0[c]);
                                    }
                                }
                            }
                        }
                        for c in 0..nco {
                            let o = &mut out[((blk * CB + c) * h + y) * w + x0..][..n];
                            store(simd, o, acc0[c]);
                        }
                        x0 += n;
                    }
                }
            }
        }
    }
}

/// One image's filter gradient of a 3×3 convolution, added into `dw` (`cout × cin × 9`):
/// `dw[co, ci, ky, kx] += Σ_{y,x} dy[co, y, x] · xp[ci, y + ky, x + kx]`, two output channels
/// × nine taps accumulated in registers over the whole image.
pub struct Conv3x3FilterGrad<'a> {
    /// Zero-padded input, `cin × (h+2) × (w+2)`.
    pub xp: &'a [f32],
    /// Output gradient, `cout × h × w`.
    pub dy: &'a [f32],
    /// Filter gradient, `cout × cin × 3 × 3` (added to).
    pub dw: &'a mut [f32],
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl WithSimd for Conv3x3FilterGrad<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Conv3x3FilterGrad {
            xp,
            dy,
            dw,
            cin,
            cout,
            h,
            w,
        } = self;
        let l = S::F32_LANES;
        let (pw, ph) = (w + 2, h + 2);
        let zero = simd.splat_f32s(0.0);
        for co0 in (0..cout).step_by(2) {
            let two = co0 + 1 < cout;
            let co1 = if two { co0 + 1 } else { co0 };
            for ci in 0..cin {
                let mut acc0 = [zero; 9];
                let mut acc1 = [zero; 9];
                for y in 0..h {
                    let d0row = &dy[(co0 * h + y) * w..][..w];
                    let d1row = &dy[(co1 * h + y) * w..][..w];
                    let mut x0 = 0;
                    while x0 < w {
                        let n = l.min(w - x0);
                        let d0 = load(simd, &d0row[x0..x0 + n]);
                        let d1 = load(simd, &d1row[x0..x0 + n]);
                        for ky in 0..3 {
                            let row = &xp[(ci * ph + y + ky) * pw..][..pw];
                            for kx in 0..3 {
                                let v = load(simd, &row[x0 + kx..x0 + kx + n]);
                                acc0[ky * 3 + kx] = simd.mul_add_f32s(d0, v, acc0[ky * 3 + kx]);
                                acc1[ky * 3 + kx] = simd.mul_add_f32s(d1, v, acc1[ky * 3 + kx]);
                            }
                        }
                        x0 += n;
                    }
                }
                for k in 0..9 {
                    dw[(co0 * cin + ci) * 9 + k] += simd.reduce_sum_f32s(acc0[k]);
                    if two {
                        dw[(co1 * cin + ci) * 9 + k] += simd.reduce_sum_f32s(acc1[k]);
                    }
                }
            }
        }
    }
}
