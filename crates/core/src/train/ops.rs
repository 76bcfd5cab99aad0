//! The trainer's kernels, forward and backward, on `f32` slices in NCHW order: 2-D
//! convolution (im2col and a matrix product, in parallel over the batch), batch
//! normalization in training and inference modes, ReLU, 2×2 max pooling, ×2 nearest
//! up-sampling, and the plane-broadcast addition of the style vector.

use std::collections::HashMap;
use std::sync::Mutex;

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};
use rayon::prelude::*;

use super::conv;

/// Buffers reused from one training step to the next: each step needs the same tensor sizes,
/// and fresh multi-megabyte allocations cost page faults and zeroing every time.
///
/// The pool keeps, per size, at most as many free buffers as were ever in use at once through
/// [`Pool::take`]: buffers of that size allocated elsewhere (a step's input batch, the loss
/// gradient) and handed in by [`Pool::give`] are dropped beyond that, so the pool stays at one
/// step's working set however many steps run.
#[derive(Default)]
pub struct Pool {
    sizes: Mutex<HashMap<usize, SizeClass>>,
}

/// The buffers of one size.
#[derive(Default)]
struct SizeClass {
    free: Vec<Vec<f32>>,
    /// Buffers taken and not given back (saturating: foreign buffers are not counted).
    out: usize,
    /// The most ever out at once.
    peak: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pool")
    }
}

impl Clone for Pool {
    /// A clone starts empty.
    fn clone(&self) -> Self {
        Pool::default()
    }
}

impl Pool {
    fn sizes(&self) -> std::sync::MutexGuard<'_, HashMap<usize, SizeClass>> {
        self.sizes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A buffer of `n` values with unspecified (initialised) contents.
    pub fn take(&self, n: usize) -> Vec<f32> {
        let reused = {
            let mut sizes = self.sizes();
            let class = sizes.entry(n).or_default();
            class.out += 1;
            class.peak = class.peak.max(class.out);
            class.free.pop()
        };
        reused.unwrap_or_else(|| vec![0.0; n])
    }

    /// A buffer of `n` zeros.
    pub fn zeroed(&self, n: usize) -> Vec<f32> {
        let mut v = self.take(n);
        v.fill(0.0);
        v
    }

    /// Returns a buffer for reuse (or drops it when the pool holds enough of its size).
    pub fn give(&self, v: Vec<f32>) {
        if v.is_empty() {
            return;
        }
        let mut sizes = self.sizes();
        let class = sizes.entry(v.len()).or_default();
        class.out = class.out.saturating_sub(1);
        if class.free.len() < class.peak {
            class.free.push(v);
        }
    }

    /// Bytes held in free buffers.
    pub fn cached_bytes(&self) -> usize {
        self.sizes()
            .iter()
            .map(|(n, c)| n * c.free.len() * std::mem::size_of::<f32>())
            .sum()
    }

    /// Drops every cached buffer.
    pub fn clear(&self) {
        self.sizes().clear();
    }
}

/// Shape of a convolution: input `n × cin × h × w`, `cout` filters of `k × k`, zero padding
/// `pad`, stride 1 (output `h × w` when `k = 2·pad + 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Kernel edge.
    pub k: usize,
    /// Zero padding on each side.
    pub pad: usize,
}

impl ConvShape {
    fn plane(&self) -> usize {
        self.h * self.w
    }

    fn rows(&self) -> usize {
        self.cin * self.k * self.k
    }
}

/// Largest im2col block, in values: the columns of one block stay in the core's L2 cache
/// while the matrix product reads them (the whole im2col matrix of a 128² image with 16
/// channels is 9 MB).
const BLOCK_VALUES: usize = 1 << 18;

/// Output rows per im2col block for this shape (at least one).
fn block_rows(s: &ConvShape) -> usize {
    (BLOCK_VALUES / (s.rows() * s.w).max(1)).clamp(1, s.h)
}

/// im2col of output rows `y0..y1` of one image: row `(ci·k + ky)·k + kx`, column
/// `(y − y0)·w + x` holds `x[ci, y + ky − pad, x + kx − pad]` (zero outside).
fn im2col(x: &[f32], s: &ConvShape, y0: usize, y1: usize, col: &mut [f32]) {
    let (h, w, k, pad) = (s.h, s.w, s.k, s.pad as isize);
    let p = s.plane();
    let pt = (y1 - y0) * w;
    for ci in 0..s.cin {
        let src = &x[ci * p..(ci + 1) * p];
        for ky in 0..k {
            for kx in 0..k {
                let row = &mut col[((ci * k + ky) * k + kx) * pt..][..pt];
                let dx = kx as isize - pad;
                for y in y0..y1 {
                    let sy = y as isize + ky as isize - pad;
                    let dst = &mut row[(y - y0) * w..(y - y0 + 1) * w];
                    if sy < 0 || sy >= h as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let srow = &src[sy as usize * w..(sy as usize + 1) * w];
                    // dst[x] = srow[x + dx] where 0 <= x + dx < w
                    let x0 = (-dx).max(0) as usize;
                    let x1 = (w as isize - dx).min(w as isize).max(0) as usize;
                    dst[..x0.min(w)].fill(0.0);
                    if x1 > x0 {
                        let s0 = (x0 as isize + dx) as usize;
                        dst[x0..x1].copy_from_slice(&srow[s0..s0 + (x1 - x0)]);
                    }
                    dst[x1.max(x0).min(w)..].fill(0.0);
                }
            }
        }
    }
}

/// col2im of output rows `y0..y1` (adds into `dx`), the adjoint of [`im2col`].
fn col2im(col: &[f32], s: &ConvShape, y0: usize, y1: usize, dx: &mut [f32]) {
    let (h, w, k, pad) = (s.h, s.w, s.k, s.pad as isize);
    let p = s.plane();
    let pt = (y1 - y0) * w;
    for ci in 0..s.cin {
        let dst = &mut dx[ci * p..(ci + 1) * p];
        for ky in 0..k {
            for kx in 0..k {
                let row = &col[((ci * k + ky) * k + kx) * pt..][..pt];
                let ddx = kx as isize - pad;
                for y in y0..y1 {
                    let sy = y as isize + ky as isize - pad;
                    if sy < 0 || sy >= h as isize {
                        continue;
                    }
                    let src = &row[(y - y0) * w..(y - y0 + 1) * w];
                    let drow = &mut dst[sy as usize * w..(sy as usize + 1) * w];
                    let x0 = (-ddx).max(0) as usize;
                    let x1 = (w as isize - ddx).min(w as isize).max(0) as usize;
                    if x1 > x0 {
                        let s0 = (x0 as isize + ddx) as usize;
                        for (d, v) in drow[s0..s0 + (x1 - x0)].iter_mut().zip(&src[x0..x1]) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}

/// A row-major `rows × cols` matrix in a slice, rows `row_stride` apart.
fn mat(data: &[f32], rows: usize, cols: usize, row_stride: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, cols).strides((row_stride, 1)), data)
        .expect("matrix view within its slice")
}

fn mat_mut(
    data: &mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols).strides((row_stride, 1)), data)
        .expect("matrix view within its slice")
}

/// `c = a·b` (or `c += a·b` with `add`) with matrixmultiply's kernels, one thread (the callers
/// run images in parallel).
fn matmul(
    mut c: ArrayViewMut2<'_, f32>,
    add: bool,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
) {
    general_mat_mul(1.0, &a, &b, if add { 1.0 } else { 0.0 }, &mut c);
}

/// The slice holding a `rows × cols` block of a row-major matrix of row stride `stride`
/// that starts at column `col0`.
fn block(data: &[f32], rows: usize, cols: usize, stride: usize, col0: usize) -> &[f32] {
    &data[col0..col0 + (rows - 1) * stride + cols]
}

fn block_mut(data: &mut [f32], rows: usize, cols: usize, stride: usize, col0: usize) -> &mut [f32] {
    &mut data[col0..col0 + (rows - 1) * stride + cols]
}

/// 3×3 'same' convolutions run the direct kernel of [`conv`].
fn is_direct(s: &ConvShape) -> bool {
    s.k == 3 && s.pad == 1
}

/// Convolution forward: `y = w ∗ x + b`, `w` is `cout × cin × k × k`.
pub fn conv_forward(
    x: &[f32],
    wt: &[f32],
    bias: Option<&[f32]>,
    s: &ConvShape,
    pool: &Pool,
) -> Vec<f32> {
    let p = s.plane();
    let (kk, cout) = (s.rows(), s.cout);
    let mut y = pool.take(s.n * cout * p);
    let wm = mat(wt, cout, kk, kk);
    let direct = is_direct(s).then(|| conv::block_filters(wt, s.cin, cout));
    y.par_chunks_mut(cout * p)
        .zip(x.par_chunks(s.cin * p))
        .for_each(|(yn, xn)| {
            if s.k == 1 && s.pad == 0 {
                matmul(mat_mut(yn, cout, p, p), false, wm, mat(xn, s.cin, p, p));
            } else if let Some(wb) = &direct {
                let mut xp = pool.take(s.cin * (s.h + 2) * (s.w + 2));
                conv::pad1(xn, s.cin, s.h, s.w, &mut xp);
                crate::simd::dispatch_simd(conv::Conv3x3 {
                    xp: &xp,
                    wb,
                    bias: bias.unwrap_or(&[]),
                    out: yn,
                    cin: s.cin,
                    cout,
                    h: s.h,
                    w: s.w,
                });
                pool.give(xp);
                return;
            } else {
                let rows = block_rows(s);
                let mut col = pool.take(kk * rows * s.w);
                for y0 in (0..s.h).step_by(rows) {
                    let y1 = (y0 + rows).min(s.h);
                    let pt = (y1 - y0) * s.w;
                    im2col(xn, s, y0, y1, &mut col);
                    let c = block_mut(yn, cout, pt, p, y0 * s.w);
                    matmul(mat_mut(c, cout, pt, p), false, wm, mat(&col, kk, pt, pt));
                }
                pool.give(col);
            }
            if let Some(b) = bias {
                for (c, row) in yn.chunks_mut(p).enumerate() {
                    row.iter_mut().for_each(|v| *v += b[c]);
                }
            }
        });
    y
}

/// Gradients of a convolution.
pub struct ConvGrads {
    /// With respect to the input (when asked for).
    pub dx: Option<Vec<f32>>,
    /// With respect to the weights.
    pub dw: Vec<f32>,
    /// With respect to the bias.
    pub db: Vec<f32>,
}

/// Convolution backward from `dy` (`n × cout × h × w`).
pub fn conv_backward(
    x: &[f32],
    wt: &[f32],
    dy: &[f32],
    s: &ConvShape,
    need_dx: bool,
    pool: &Pool,
) -> ConvGrads {
    let p = s.plane();
    let (kk, cout) = (s.rows(), s.cout);
    let mut dx = if need_dx {
        pool.zeroed(s.n * s.cin * p)
    } else {
        Vec::new()
    };
    let wt_flipped =
        (need_dx && is_direct(s)).then(|| conv::block_filters_transposed(wt, s.cin, cout));
    // per-image weight and bias gradients, summed afterwards (deterministic order)
    let parts: Vec<(Vec<f32>, Vec<f32>)> = if need_dx {
        dx.par_chunks_mut(s.cin * p)
            .zip(x.par_chunks(s.cin * p))
            .zip(dy.par_chunks(cout * p))
            .map(|((dxn, xn), dyn_)| {
                conv_backward_one(xn, dyn_, wt, s, Some(dxn), wt_flipped.as_deref(), pool)
            })
            .collect()
    } else {
        x.par_chunks(s.cin * p)
            .zip(dy.par_chunks(cout * p))
            .map(|(xn, dyn_)| conv_backward_one(xn, dyn_, wt, s, None, None, pool))
            .collect()
    };
    let mut dw = vec![0.0f32; cout * kk];
    let mut db = vec![0.0f32; cout];
    for (pw, pb) in parts {
        dw.iter_mut().zip(&pw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(&pb).for_each(|(a, b)| *a += b);
    }
    ConvGrads {
        dx: need_dx.then_some(dx),
        dw,
        db,
    }
}

fn conv_backward_one(
    xn: &[f32],
    dyn_: &[f32],
    wt: &[f32],
    s: &ConvShape,
    dxn: Option<&mut [f32]>,
    wt_flipped: Option<&[f32]>,
    pool: &Pool,
) -> (Vec<f32>, Vec<f32>) {
    let p = s.plane();
    let (kk, cout) = (s.rows(), s.cout);
    let wm = mat(wt, cout, kk, kk);
    let mut dw = vec![0.0f32; cout * kk];
    let db: Vec<f32> = dyn_
        .chunks(p)
        .map(|r| r.iter().map(|&v| f64::from(v)).sum::<f64>() as f32)
        .collect();
    if s.k == 1 && s.pad == 0 {
        let dym = mat(dyn_, cout, p, p);
        matmul(
            mat_mut(&mut dw, cout, kk, kk),
            false,
            dym,
            mat(xn, s.cin, p, p).t(),
        );
        if let Some(dxn) = dxn {
            matmul(mat_mut(dxn, s.cin, p, p), false, wm.t(), dym);
        }
        return (dw, db);
    }
    let mut dxn = dxn;
    if is_direct(s) {
        let mut xp = pool.take(s.cin * (s.h + 2) * (s.w + 2));
        conv::pad1(xn, s.cin, s.h, s.w, &mut xp);
        crate::simd::dispatch_simd(conv::Conv3x3FilterGrad {
            xp: &xp,
            dy: dyn_,
            dw: &mut dw,
            cin: s.cin,
            cout,
            h: s.h,
            w: s.w,
        });
        pool.give(xp);
    }
    if let (Some(dxn), Some(wf)) = (dxn.as_deref_mut(), wt_flipped) {
        // the input gradient is a 3×3 convolution of the padded output gradient
        let mut dyp = pool.take(cout * (s.h + 2) * (s.w + 2));
        conv::pad1(dyn_, cout, s.h, s.w, &mut dyp);
        crate::simd::dispatch_simd(conv::Conv3x3 {
            xp: &dyp,
            wb: wf,
            bias: &[],
            out: dxn,
            cin: cout,
            cout: s.cin,
            h: s.h,
            w: s.w,
        });
        pool.give(dyp);
    }
    if is_direct(s) {
        return (dw, db);
    }
    let rows = block_rows(s);
    let mut col = pool.take(kk * rows * s.w);
    let mut dcol = dxn.is_some().then(|| pool.take(kk * rows * s.w));
    for y0 in (0..s.h).step_by(rows) {
        let y1 = (y0 + rows).min(s.h);
        let pt = (y1 - y0) * s.w;
        im2col(xn, s, y0, y1, &mut col);
        let dyb = mat(block(dyn_, cout, pt, p, y0 * s.w), cout, pt, p);
        matmul(
            mat_mut(&mut dw, cout, kk, kk),
            true,
            dyb,
            mat(&col, kk, pt, pt).t(),
        );
        if let (Some(dxn), Some(dcol)) = (dxn.as_deref_mut(), dcol.as_mut()) {
            matmul(mat_mut(dcol, kk, pt, pt), false, wm.t(), dyb);
            col2im(dcol, s, y0, y1, dxn);
        }
    }
    pool.give(col);
    if let Some(d) = dcol {
        pool.give(d);
    }
    (dw, db)
}

/// Per-channel statistics of a batch-normalization in training mode.
#[derive(Debug, Clone)]
pub struct BnStats {
    /// Batch mean per channel.
    pub mean: Vec<f32>,
    /// 1 / sqrt(biased batch variance + eps) per channel.
    pub invstd: Vec<f32>,
    /// Unbiased batch variance per channel (for the running estimate).
    pub var_unbiased: Vec<f32>,
}

/// Batch statistics per channel of `x` (`n × c × plane`).
pub fn bn_stats(x: &[f32], n: usize, c: usize, plane: usize, eps: f32) -> BnStats {
    let m = (n * plane) as f64;
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mut s, mut s2) = (0.0f64, 0.0f64);
            for i in 0..n {
                let row = &x[(i * c + ch) * plane..][..plane];
                let (mut a, mut b) = (0.0f32, 0.0f32);
                // f32 partial sums per row, f64 across rows
                for &v in row {
                    a += v;
                }
                let mean_row = a / plane as f32;
                for &v in row {
                    let d = v - mean_row;
                    b += d * d;
                }
                s += f64::from(a);
                // parallel-axis: sum of squares about zero
                s2 += f64::from(b) + f64::from(a) * f64::from(mean_row);
            }
            (s, s2)
        })
        .collect();
    let mut st = BnStats {
        mean: Vec::with_capacity(c),
        invstd: Vec::with_capacity(c),
        var_unbiased: Vec::with_capacity(c),
    };
    for (s, s2) in sums {
        let mean = s / m;
        let var = (s2 / m - mean * mean).max(0.0);
        st.mean.push(mean as f32);
        st.invstd.push((1.0 / (var + f64::from(eps)).sqrt()) as f32);
        st.var_unbiased.push((var * m / (m - 1.0).max(1.0)) as f32);
    }
    st
}

/// `y = (x − mean)·invstd·gamma + beta` per channel.
#[allow(clippy::too_many_arguments)]
pub fn bn_apply(
    x: &[f32],
    n: usize,
    c: usize,
    plane: usize,
    mean: &[f32],
    invstd: &[f32],
    gamma: &[f32],
    beta: &[f32],
    pool: &Pool,
) -> Vec<f32> {
    let mut y = pool.take(x.len());
    y.par_chunks_mut(plane)
        .zip(x.par_chunks(plane))
        .enumerate()
        .for_each(|(i, (yr, xr))| {
            let ch = i % c;
            let a = invstd[ch] * gamma[ch];
            let b = beta[ch] - mean[ch] * a;
            yr.iter_mut().zip(xr).for_each(|(o, &v)| *o = v * a + b);
        });
    debug_assert_eq!(x.len(), n * c * plane);
    y
}

/// Batch-normalization backward (training mode): returns (dx, dgamma, dbeta).
#[allow(clippy::too_many_arguments)]
pub fn bn_backward(
    x: &[f32],
    dy: &[f32],
    n: usize,
    c: usize,
    plane: usize,
    st: &BnStats,
    gamma: &[f32],
    pool: &Pool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let m = (n * plane) as f64;
    // per channel: sum(dy), sum(dy * xhat)
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mu, is) = (st.mean[ch], st.invstd[ch]);
            let (mut sd, mut sdx) = (0.0f64, 0.0f64);
            for i in 0..n {
                let off = (i * c + ch) * plane;
                let (mut a, mut b) = (0.0f32, 0.0f32);
                for (&d, &v) in dy[off..off + plane].iter().zip(&x[off..off + plane]) {
                    a += d;
                    b += d * (v - mu) * is;
                }
                sd += f64::from(a);
                sdx += f64::from(b);
            }
            (sd, sdx)
        })
        .collect();
    let dgamma: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
    let dbeta: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
    let mut dx = pool.take(x.len());
    dx.par_chunks_mut(plane).enumerate().for_each(|(i, dr)| {
        let ch = i % c;
        let off = i * plane;
        let (mu, is, g) = (st.mean[ch], st.invstd[ch], gamma[ch]);
        let mean_dy = (sums[ch].0 / m) as f32;
        let mean_dyx = (sums[ch].1 / m) as f32;
        let k = g * is;
        for ((o, &d), &v) in dr
            .iter_mut()
            .zip(&dy[off..off + plane])
            .zip(&x[off..off + plane])
        {
            let xh = (v - mu) * is;
            *o = k * (d - mean_dy - xh * mean_dyx);
        }
    });
    (dx, dgamma, dbeta)
}

/// ReLU forward.
pub fn relu(x: &[f32], pool: &Pool) -> Vec<f32> {
    let mut y = pool.take(x.len());
    y.par_chunks_mut(1 << 14)
        .zip(x.par_chunks(1 << 14))
        .for_each(|(o, i)| o.iter_mut().zip(i).for_each(|(o, &v)| *o = v.max(0.0)));
    y
}

/// ReLU backward from the forward output `y`.
pub fn relu_backward(y: &[f32], dy: &[f32], pool: &Pool) -> Vec<f32> {
    let mut dx = pool.take(y.len());
    dx.par_chunks_mut(1 << 14)
        .zip(y.par_chunks(1 << 14).zip(dy.par_chunks(1 << 14)))
        .for_each(|(o, (yy, d))| {
            for ((o, &v), &g) in o.iter_mut().zip(yy).zip(d) {
                *o = if v > 0.0 { g } else { 0.0 };
            }
        });
    dx
}

/// 2×2 max pooling, stride 2, floor (planes of `h × w`).
pub fn maxpool2(x: &[f32], planes: usize, h: usize, w: usize, pool: &Pool) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut y = pool.take(planes * oh * ow);
    y.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(h * w))
        .for_each(|(yp, xp)| {
            for oy in 0..oh {
                let r0 = &xp[2 * oy * w..];
                let r1 = &xp[(2 * oy + 1) * w..];
                for ox in 0..ow {
                    let a = r0[2 * ox].max(r0[2 * ox + 1]);
                    let b = r1[2 * ox].max(r1[2 * ox + 1]);
                    yp[oy * ow + ox] = a.max(b);
                }
            }
        });
    debug_assert_eq!(x.len(), planes * h * w);
    y
}

/// Max-pooling backward: each output's gradient goes to the first input of its window
/// holding the maximum (PyTorch's choice).
pub fn maxpool2_backward(
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    planes: usize,
    h: usize,
    w: usize,
    pool: &Pool,
) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut dx = pool.zeroed(planes * h * w);
    dx.par_chunks_mut(h * w)
        .zip(x.par_chunks(h * w))
        .zip(y.par_chunks(oh * ow).zip(dy.par_chunks(oh * ow)))
        .for_each(|((dxp, xp), (yp, dyp))| {
            for oy in 0..oh {
                for ox in 0..ow {
                    let m = yp[oy * ow + ox];
                    let g = dyp[oy * ow + ox];
                    for (yy, xx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        let i = (2 * oy + yy) * w + 2 * ox + xx;
                        if xp[i] == m {
                            dxp[i] += g;
                            break;
                        }
                    }
                }
            }
        });
    debug_assert_eq!(planes * oh * ow, y.len());
    dx
}

/// ×2 nearest up-sampling (ONNX Resize nearest, asymmetric, floor).
pub fn upsample2(x: &[f32], planes: usize, h: usize, w: usize, pool: &Pool) -> Vec<f32> {
    let (oh, ow) = (2 * h, 2 * w);
    let mut y = pool.take(planes * oh * ow);
    y.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(h * w))
        .for_each(|(yp, xp)| {
            for oy in 0..oh {
                let src = &xp[(oy / 2) * w..(oy / 2 + 1) * w];
                let dst = &mut yp[oy * ow..(oy + 1) * ow];
                for (ox, d) in dst.iter_mut().enumerate() {
                    *d = src[ox / 2];
                }
            }
        });
    y
}

/// Up-sampling backward: sums of 2×2 blocks.
pub fn upsample2_backward(dy: &[f32], planes: usize, h: usize, w: usize, pool: &Pool) -> Vec<f32> {
    let ow = 2 * w;
    let mut dx = pool.take(planes * h * w);
    dx.par_chunks_mut(h * w)
        .zip(dy.par_chunks(4 * h * w))
        .for_each(|(dxp, dyp)| {
            for y in 0..h {
                for x in 0..w {
                    let i = 2 * y * ow + 2 * x;
                    dxp[y * w + x] = dyp[i] + dyp[i + 1] + dyp[i + ow] + dyp[i + ow + 1];
                }
            }
        });
    dx
}

/// `a + b` where `b` is one value per plane (`[N, C, 1, 1]` against `[N, C, H, W]`).
pub fn add_per_plane(a: &[f32], b: &[f32], plane: usize, pool: &Pool) -> Vec<f32> {
    let mut y = pool.take(a.len());
    y.copy_from_slice(a);
    y.par_chunks_mut(plane)
        .zip(b.par_iter())
        .for_each(|(r, &v)| r.iter_mut().for_each(|o| *o += v));
    y
}

/// Sum of each plane (the gradient of a per-plane broadcast).
pub fn plane_sums(dy: &[f32], plane: usize) -> Vec<f32> {
    dy.par_chunks(plane)
        .map(|r| r.iter().map(|&v| f64::from(v)).sum::<f64>() as f32)
        .collect()
}

/// Element-wise sum.
pub fn add(a: &[f32], b: &[f32], pool: &Pool) -> Vec<f32> {
    let mut y = pool.take(a.len());
    y.par_chunks_mut(1 << 14)
        .zip(a.par_chunks(1 << 14).zip(b.par_chunks(1 << 14)))
        .for_each(|(o, (x, z))| {
            for ((o, &p), &q) in o.iter_mut().zip(x).zip(z) {
                *o = p + q;
            }
        });
    y
}

/// `acc += g`.
pub fn accumulate(acc: &mut [f32], g: &[f32]) {
    acc.par_chunks_mut(1 << 14)
        .zip(g.par_chunks(1 << 14))
        .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, &b)| *a += b));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Pool {
        Pool::default()
    }

    #[test]
    fn the_pool_keeps_one_steps_working_set_however_many_steps_run() {
        let p = Pool::default();
        for _ in 0..100 {
            // a step: three buffers of one size in use at once, then given back, plus two
            // buffers allocated elsewhere (an input batch, a loss gradient) handed in
            let bufs: Vec<Vec<f32>> = (0..3).map(|_| p.take(1000)).collect();
            for b in bufs {
                p.give(b);
            }
            p.give(vec![1.0; 1000]);
            p.give(vec![1.0; 777]);
        }
        // three buffers of 1000 values; none of the size nobody takes
        assert_eq!(p.cached_bytes(), 3 * 1000 * 4);
        // and they are reused: taking three allocates nothing new
        let before: Vec<*const f32> = {
            let bufs: Vec<Vec<f32>> = (0..3).map(|_| p.take(1000)).collect();
            let ptrs = bufs.iter().map(|b| b.as_ptr()).collect();
            bufs.into_iter().for_each(|b| p.give(b));
            ptrs
        };
        let again: Vec<Vec<f32>> = (0..3).map(|_| p.take(1000)).collect();
        for b in &again {
            assert!(before.contains(&b.as_ptr()));
        }
    }

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    fn rand(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n).map(|_| lcg(&mut s)).collect()
    }

    /// Direct (naive) convolution, the reference.
    fn conv_naive(x: &[f32], wt: &[f32], b: &[f32], s: &ConvShape) -> Vec<f32> {
        let (h, w, k, pad) = (s.h as isize, s.w as isize, s.k as isize, s.pad as isize);
        let mut y = vec![0.0f32; s.n * s.cout * s.plane()];
        for n in 0..s.n {
            for co in 0..s.cout {
                for yy in 0..h {
                    for xx in 0..w {
                        let mut acc = b[co] as f64;
                        for ci in 0..s.cin {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let (sy, sx) = (yy + ky - pad, xx + kx - pad);
                                    if sy >= 0 && sy < h && sx >= 0 && sx < w {
                                        let xi = ((n * s.cin + ci) as isize * h + sy) * w + sx;
                                        let wi = ((co * s.cin + ci) as isize * k + ky) * k + kx;
                                        acc += x[xi as usize] as f64 * wt[wi as usize] as f64;
                                    }
                                }
                            }
                        }
                        y[((n * s.cout + co) as isize * h * w + yy * w + xx) as usize] = acc as f32;
                    }
                }
            }
        }
        y
    }

    #[test]
    fn conv_matches_naive_and_its_gradients_match_finite_differences() {
        for (k, pad) in [(3, 1), (1, 0), (5, 2)] {
            let s = ConvShape {
                n: 2,
                cin: 3,
                cout: 4,
                h: 5,
                w: 7,
                k,
                pad,
            };
            let x = rand(s.n * s.cin * s.plane(), 1);
            let wt = rand(s.cout * s.rows(), 2);
            let b = rand(s.cout, 3);
            let y = conv_forward(&x, &wt, Some(&b), &s, &pool());
            let r = conv_naive(&x, &wt, &b, &s);
            for (a, b) in y.iter().zip(&r) {
                assert!((a - b).abs() < 1e-5);
            }
            // loss = sum(y * g) for a random g: dL/dy = g
            let g = rand(y.len(), 4);
            let gr = conv_backward(&x, &wt, &g, &s, true, &pool());
            let loss = |x: &[f32], wt: &[f32], b: &[f32]| -> f64 {
                conv_naive(x, wt, b, &s)
                    .iter()
                    .zip(&g)
                    .map(|(a, b)| (*a as f64) * (*b as f64))
                    .sum()
            };
            let e = 1e-2f32;
            for i in [0, 7, x.len() - 1] {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[i] += e;
                xm[i] -= e;
                let fd = (loss(&xp, &wt, &b) - loss(&xm, &wt, &b)) / (2.0 * e as f64);
                assert!(
                    (fd - gr.dx.as_ref().unwrap()[i] as f64).abs() < 1e-3,
                    "dx {i}"
                );
            }
            for i in [0, 5, wt.len() - 1] {
                let (mut wp, mut wm) = (wt.clone(), wt.clone());
                wp[i] += e;
                wm[i] -= e;
                let fd = (loss(&x, &wp, &b) - loss(&x, &wm, &b)) / (2.0 * e as f64);
                assert!((fd - gr.dw[i] as f64).abs() < 1e-3, "dw {i}");
            }
            let db0: f64 = (0..s.n)
                .flat_map(|n| g[(n * s.cout) * s.plane()..][..s.plane()].to_vec())
                .map(f64::from)
                .sum();
            assert!((db0 - gr.db[0] as f64).abs() < 1e-4);
        }
    }

    #[test]
    fn batch_norm_gradient_matches_finite_differences() {
        let (n, c, plane) = (3, 2, 6);
        let x = rand(n * c * plane, 5);
        let gamma = vec![1.3f32, 0.7];
        let beta = vec![0.1f32, -0.2];
        let g = rand(x.len(), 6);
        let loss = |x: &[f32]| -> f64 {
            let st = bn_stats(x, n, c, plane, 1e-5);
            bn_apply(x, n, c, plane, &st.mean, &st.invstd, &gamma, &beta, &pool())
                .iter()
                .zip(&g)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum()
        };
        let st = bn_stats(&x, n, c, plane, 1e-5);
        let (dx, dgamma, dbeta) = bn_backward(&x, &g, n, c, plane, &st, &gamma, &pool());
        let e = 1e-2f32;
        for i in 0..x.len() {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += e;
            xm[i] -= e;
            let fd = (loss(&xp) - loss(&xm)) / (2.0 * e as f64);
            assert!((fd - dx[i] as f64).abs() < 2e-3, "{i}: {fd} vs {}", dx[i]);
        }
        let sum_g: f64 = (0..n)
            .flat_map(|i| g[(i * c) * plane..][..plane].to_vec())
            .map(f64::from)
            .sum();
        assert!((sum_g - dbeta[0] as f64).abs() < 1e-4);
        assert_eq!(dgamma.len(), 2);
    }

    #[test]
    fn pooling_and_upsampling_are_adjoint_shaped() {
        let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let y = maxpool2(&x, 1, 4, 4, &pool());
        assert_eq!(y, vec![5.0, 7.0, 13.0, 15.0]);
        let dx = maxpool2_backward(&x, &y, &[1.0, 2.0, 3.0, 4.0], 1, 4, 4, &pool());
        assert_eq!(dx[5], 1.0);
        assert_eq!(dx[15], 4.0);
        assert_eq!(dx.iter().sum::<f32>(), 10.0);
        let u = upsample2(&[1.0, 2.0], 1, 1, 2, &pool());
        assert_eq!(u, vec![1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
        assert_eq!(upsample2_backward(&u, 1, 1, 2, &pool()), vec![4.0, 8.0]);
    }
}
