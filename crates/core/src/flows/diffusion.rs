//! Labels → flows by heat diffusion from each mask's centre: Cellpose 4's `masks_to_flows_gpu`
//! (which is the code path it runs on the CPU too), reproduced bit for bit.
//!
//! Diffusion never crosses between masks (a pixel only averages neighbours of its own label), so
//! each mask is diffused on its own bounding box, in parallel, with the number of iterations
//! Cellpose uses for the whole image. The gradient then reads the assembled heat map, where a
//! touching neighbour's heat leaks in at borders exactly as in Cellpose.

use std::marker::PhantomData;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::simd;

use super::labels::{BoundingBox, find_objects};

/// Above this many pixels (image padded by one), Cellpose diffuses in float32 instead of float64
/// (in 2-D and 3-D alike).
pub(super) const FLOAT32_ABOVE_PIXELS: f64 = 4e7;

/// The reference's summation order of the neighbours (9 in 2-D, 7 in 3-D) depends on how
/// torch's CPU reduction (`Tensor.sum(dim=0)` over a neighbours × N tensor, torch's
/// `vectorized_outer_sum`) blocks the N mask pixels: inside blocks of 4 vectors of columns it
/// sums each column sequentially, in the remaining columns of each thread's chunk it uses
/// `row_sum`'s 4 interleaved accumulators (the "ILP" order). cytoseg reproduces torch 2.15's CPU
/// kernels as measured on the reference machine (x86-64, 2 threads): 32-byte vectors, so blocks
/// of 16 float64 or 32 float32 columns, thread chunks rounded to 128 bytes
/// (`tests/fixtures/sort/torch_sum_order.npz` holds torch's own orders). Other torch
/// configurations differ from each other in the last bit of the heat map.
const REFERENCE_VECTOR_BYTES: usize = 32;
/// Number of torch threads of the reference (see [`REFERENCE_VECTOR_BYTES`]).
const REFERENCE_THREADS: usize = 2;
/// torch only parallelizes reductions over at least this many elements (`at::internal::GRAIN_SIZE`).
const TORCH_GRAIN_SIZE: usize = 32768;

/// The ranges of mask-pixel ranks (row-major order among the `n` mask pixels) whose `rows`
/// neighbour values torch sums with the interleaved (ILP) order rather than sequentially, for
/// heat values of `elem_bytes` bytes (8: float64, 4: float32).
pub(super) fn ilp_rank_ranges(n: usize, rows: usize, elem_bytes: usize) -> Vec<(usize, usize)> {
    // Measured, not derived: float32 sums of 4 to 7 columns take the sequential order in their
    // first 4 columns (a 4-wide pass that wider outputs do not get).
    if elem_bytes == 4 && (4..8).contains(&n) {
        return vec![(4, n)];
    }
    let block = 4 * REFERENCE_VECTOR_BYTES / elem_bytes;
    let mut chunks = Vec::new();
    if rows * n < TORCH_GRAIN_SIZE || REFERENCE_THREADS == 1 {
        chunks.push((0, n));
    } else {
        // at::parallel_for over columns, chunk ends rounded down to 128 bytes except at the
        // last column.
        let threads = REFERENCE_THREADS.min(n);
        let chunk = n.div_ceil(threads);
        let round = 128 / elem_bytes;
        for t in 0..threads {
            let b = (t * chunk).min(n);
            let e = ((t + 1) * chunk).min(n);
            let b = b - b % round;
            let e = if e == n { e } else { e - e % round };
            if b < e {
                chunks.push((b, e));
            }
        }
    }
    chunks
        .into_iter()
        .map(|(b, e)| (b + (e - b) / block * block, e))
        .filter(|(b, e)| b < e)
        .collect()
}

/// Image indices of the mask pixels of the given ranks (ascending ranks, each below the number
/// of mask pixels), from per-row mask-pixel counts.
fn pixels_of_ranks(
    labels: &[u32],
    width: usize,
    row_counts: &[usize],
    ranks: &[usize],
) -> Vec<usize> {
    let mut out = Vec::with_capacity(ranks.len());
    let mut y = 0;
    let mut before = 0; // mask pixels in rows < y
    for &r in ranks {
        while before + row_counts[y] <= r {
            before += row_counts[y];
            y += 1;
        }
        let x = labels[y * width..(y + 1) * width]
            .iter()
            .enumerate()
            .filter(|(_, l)| **l != 0)
            .nth(r - before)
            .map(|(x, _)| x)
            .expect("rank within row");
        out.push(y * width + x);
    }
    out
}

/// Minimal float abstraction for the two precisions Cellpose may diffuse in.
pub(super) trait Heat:
    Copy
    + Send
    + Sync
    + Default
    + PartialEq
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
{
    const ONE: Self;
    /// `self / 9`, correctly rounded like the division itself, without a division.
    fn div9(self) -> Self;
    /// `self / 7`, correctly rounded like the division itself, without a division.
    fn div7(self) -> Self;
}

// Division by d (9 in 2-D, 7 in 3-D) as a multiplication with one fused correction
// (Markstein): with `y = RN(1/d)`, `q = RN(a·y)`, the remainder `r = a − d·q` is exact in one
// FMA, and `RN(q + r·y)` differs from the exact `a/d = q + r/d` only by `(r/d)(d·y − 1)`, under
// 2^-50 of an ulp of the result. That can change the rounding only if `a/d` lay that close to a
// midpoint between two floats, and it never does: with `a = k·u` (`u` = ulp of `a`) and result
// ulp `v = u/8` or `u/16` (d = 9) or `u/4` or `u/8` (d = 7), the distance from `a/d` to any
// midpoint is `|32k − 18j − 9|·u/288` or `|16k − 9(2j + 1)|·u/144` (d = 9), `|8k − 7(2j + 1)|·u/56`
// or `|16k − 7(2j + 1)|·u/112` (d = 7), for some integer `j`: an odd numerator, so at least
// `v/18` (d = 9) or `v/14` (d = 7). The same holds for subnormal values (a grid of the smallest
// spacing) and in float32. Heat values are finite and non-negative. `division_is_exact` checks
// it on many values of every exponent.
macro_rules! impl_heat {
    ($t:ty) => {
        impl Heat for $t {
            const ONE: Self = 1.0;
            #[inline(always)]
            fn div9(self) -> Self {
                const Y: $t = 1.0 / 9.0;
                let q = self * Y;
                let r = (-q).mul_add(9.0, self);
                r.mul_add(Y, q)
            }
            #[inline(always)]
            fn div7(self) -> Self {
                const Y: $t = 1.0 / 7.0;
                let q = self * Y;
                let r = (-q).mul_add(7.0, self);
                r.mul_add(Y, q)
            }
        }
    };
}
impl_heat!(f64);
impl_heat!(f32);

/// The nine neighbour heats in Cellpose's order (centre, up, down, left, right, up-left,
/// up-right, down-left, down-right) summed sequentially, as torch sums inside a block of
/// columns (torch starts from 0; `0 + v0` is `v0` for heat, which is never negative).
#[inline(always)]
fn seq_sum9<T: Heat>(v: [T; 9]) -> T {
    (((((((v[0] + v[1]) + v[2]) + v[3]) + v[4]) + v[5]) + v[6]) + v[7]) + v[8]
}

/// The nine neighbour heats (order of [`seq_sum9`]) summed as torch's `row_sum` does with four
/// interleaved accumulators, in the last columns of a thread's chunk.
#[inline(always)]
fn ilp_sum9<T: Heat>(v: [T; 9]) -> T {
    ((((v[0] + v[4]) + v[8]) + (v[1] + v[5])) + (v[2] + v[6])) + (v[3] + v[7])
}

/// [`diffuse`] on one crop, run through [`simd::dispatch`].
struct Diffuse<'a, T> {
    labels: &'a [u32],
    ilp: &'a [(usize, usize)],
    width: usize,
    crop: &'a Crop,
    niter: usize,
    heat: PhantomData<T>,
}

impl<T: Heat> simd::Kernel for Diffuse<'_, T> {
    type Output = Vec<T>;
    #[inline(always)]
    fn run(self) -> Vec<T> {
        diffuse::<T>(self.labels, self.ilp, self.width, self.crop, self.niter)
    }
}

/// One mask's diffusion problem: its bounding box padded by one pixel.
struct Crop {
    label: u32,
    /// Top-left of the padded crop in padded-image coordinates (= unpadded box start).
    y0: usize,
    x0: usize,
    /// Padded crop size.
    h: usize,
    w: usize,
    /// Centre in padded-crop coordinates (flat index).
    centre: usize,
}

/// Cellpose's `center_of_mass` for one mask inside its box: the mean position rounded half to
/// even; if that pixel is not in the mask, the mask pixel nearest to it (first in row-major order).
fn mask_centre(
    labels: &[u32],
    width: usize,
    label: u32,
    b: (usize, usize, usize, usize),
) -> (usize, usize) {
    let (y0, y1, x0, x1) = b;
    let (mut sy, mut sx, mut n) = (0i64, 0i64, 0i64);
    for y in y0..y1 {
        for x in x0..x1 {
            if labels[y * width + x] == label {
                sy += (y - y0) as i64;
                sx += (x - x0) as i64;
                n += 1;
            }
        }
    }
    let ym = (sy as f64 / n as f64).round_ties_even() as i64;
    let xm = (sx as f64 / n as f64).round_ties_even() as i64;
    let inside = |yy: i64, xx: i64| {
        yy >= 0
            && xx >= 0
            && (yy as usize) < y1 - y0
            && (xx as usize) < x1 - x0
            && labels[(y0 + yy as usize) * width + x0 + xx as usize] == label
    };
    if inside(ym, xm) {
        return (ym as usize, xm as usize);
    }
    let mut best = (i64::MAX, 0usize, 0usize);
    for y in y0..y1 {
        for x in x0..x1 {
            if labels[y * width + x] == label {
                let dy = (y - y0) as i64 - ym;
                let dx = (x - x0) as i64 - xm;
                let d = dx * dx + dy * dy;
                if d < best.0 {
                    best = (d, y - y0, x - x0);
                }
            }
        }
    }
    (best.1, best.2)
}

/// Diffuses one mask for `niter` iterations and returns its heat over the padded crop.
/// Mask pixels whose image index lies in one of the `ilp` ranges use the reference's
/// interleaved summation order. Inlined into [`simd::dispatch`]'s copies.
#[inline(always)]
fn diffuse<T: Heat>(
    labels: &[u32],
    ilp: &[(usize, usize)],
    width: usize,
    c: &Crop,
    niter: usize,
) -> Vec<T> {
    let (h, w) = (c.h, c.w);
    // own[i]: padded-crop pixel i belongs to the mask (the one-pixel ring never does);
    // interleaved[i]: its neighbour sum uses the ILP order.
    let mut own = vec![false; h * w];
    let mut interleaved = vec![false; h * w];
    for cy in 1..h - 1 {
        for cx in 1..w - 1 {
            let k = (c.y0 + cy - 1) * width + c.x0 + cx - 1;
            let o = labels[k] == c.label;
            own[cy * w + cx] = o;
            interleaved[cy * w + cx] = o && ilp.iter().any(|&(a, b)| a <= k && k < b);
        }
    }
    let zero = T::default();
    // Masks as 0/1 floats: heat values are finite and non-negative, so multiplying by 1 or 0
    // is exact and selects like Cellpose's `Tneigh * isneighbor`, without branches.
    let ownf: Vec<T> = own.iter().map(|&o| if o { T::ONE } else { zero }).collect();
    let mut t = vec![zero; h * w];
    let mut next = vec![zero; h * w];
    // Pixels that are not the mask's keep zero heat forever (the update multiplies by `own`),
    // so multiplying a neighbour's heat by its mask flag changes nothing: when no pixel of the
    // crop uses the ILP order, the plain sequential sum of the nine heats is the reference's.
    let any_ilp = interleaved.iter().any(|&b| b);
    // Only for crops with ILP pixels: the per-pixel order weights (exactly one of the two is
    // 1) and each row's span of mask pixels (outside it every pixel keeps zero heat, so only
    // the span is computed).
    let (ilpf, seqf, spans): (Vec<T>, Vec<T>, Vec<(usize, usize)>) = if any_ilp {
        (
            interleaved
                .iter()
                .map(|&o| if o { T::ONE } else { zero })
                .collect(),
            interleaved
                .iter()
                .map(|&o| if o { zero } else { T::ONE })
                .collect(),
            own.chunks(w)
                .map(|row| match row.iter().position(|&o| o) {
                    Some(lo) => (lo, w - row.iter().rev().position(|&o| o).unwrap_or(0)),
                    None => (0, 0),
                })
                .collect(),
        )
    } else {
        (Vec::new(), Vec::new(), Vec::new())
    };
    // A mask that fills little of its box (one label on distant objects, a thin diagonal
    // shape): update its pixels only, as Cellpose does (the same sums in the same orders, so
    // the same values), instead of sweeping the box for thousands of iterations.
    let pixels: Vec<usize> = (0..h * w).filter(|&k| own[k]).collect();
    if pixels.len() * 16 < h * w {
        for _ in 0..niter {
            t[c.centre] = t[c.centre] + T::ONE;
            for &k in &pixels {
                // Pixels off the mask hold zero heat.
                let v = [
                    t[k],
                    t[k - w],
                    t[k + w],
                    t[k - 1],
                    t[k + 1],
                    t[k - w - 1],
                    t[k - w + 1],
                    t[k + w - 1],
                    t[k + w + 1],
                ];
                let acc = if interleaved[k] {
                    ilp_sum9(v)
                } else {
                    seq_sum9(v)
                };
                next[k] = acc.div9();
            }
            std::mem::swap(&mut t, &mut next);
        }
        return t;
    }
    let (ccy, ccx) = (c.centre / w, c.centre % w);
    for it in 0..niter {
        t[c.centre] = t[c.centre] + T::ONE;
        // Heat has spread at most `it` pixels from the centre before this update, `it + 1`
        // after it: outside that window both buffers hold zeros, so skipping it is exact.
        let reach = it + 1;
        let (ya, yb) = (
            ccy.saturating_sub(reach).max(1),
            (ccy + reach + 1).min(h - 1),
        );
        let (xa, xb) = (
            ccx.saturating_sub(reach).max(1),
            (ccx + reach + 1).min(w - 1),
        );
        if !any_ilp {
            // One flat pass from the window's first pixel to its last (pixels in between that
            // are outside the window or on the ring are computed too: they come out 0, as
            // they are), shifted by ±1 and ±w for the neighbours: a long loop that
            // vectorizes, instead of many short rows. Indices stay inside the crop: the
            // window is within rows 1..h - 1 and columns 1..w - 1.
            let (lo, hi) = (ya * w + xa, (yb - 1) * w + xb);
            if lo < hi {
                let n = hi - lo;
                let (ul, uc, ur) = (
                    &t[lo - w - 1..][..n],
                    &t[lo - w..][..n],
                    &t[lo - w + 1..][..n],
                );
                let (ml, mc, mr) = (&t[lo - 1..][..n], &t[lo..][..n], &t[lo + 1..][..n]);
                let (dl, dc, dr) = (
                    &t[lo + w - 1..][..n],
                    &t[lo + w..][..n],
                    &t[lo + w + 1..][..n],
                );
                let (om, out) = (&ownf[lo..][..n], &mut next[lo..][..n]);
                for j in 0..n {
                    let seq = seq_sum9([
                        mc[j], uc[j], dc[j], ml[j], mr[j], ul[j], ur[j], dl[j], dr[j],
                    ]);
                    out[j] = seq.div9() * om[j];
                }
            }
            std::mem::swap(&mut t, &mut next);
            continue;
        }
        for cy in ya..yb {
            let (xa, xb) = (xa.max(spans[cy].0), xb.min(spans[cy].1));
            if xa >= xb {
                continue;
            }
            // Row slices of equal length let the compiler drop bounds checks and vectorize.
            let (tu, tm, td) = (
                &t[(cy - 1) * w..cy * w],
                &t[cy * w..(cy + 1) * w],
                &t[(cy + 1) * w..(cy + 2) * w],
            );
            let om = &ownf[cy * w..(cy + 1) * w];
            let out = &mut next[cy * w..(cy + 1) * w];
            let (ou, od) = (
                &ownf[(cy - 1) * w..cy * w],
                &ownf[(cy + 1) * w..(cy + 2) * w],
            );
            let il = &ilpf[cy * w..(cy + 1) * w];
            let sq = &seqf[cy * w..(cy + 1) * w];
            for k in xa..xb {
                let v = [
                    tm[k],
                    tu[k] * ou[k],
                    td[k] * od[k],
                    tm[k - 1] * om[k - 1],
                    tm[k + 1] * om[k + 1],
                    tu[k - 1] * ou[k - 1],
                    tu[k + 1] * ou[k + 1],
                    td[k - 1] * od[k - 1],
                    td[k + 1] * od[k + 1],
                ];
                let (ilp, seq) = (ilp_sum9(v), seq_sum9(v));
                // Exactly one of the two weights is 1 and the other 0.
                let acc = ilp * il[k] + seq * sq[k];
                out[k] = acc.div9() * om[k];
            }
        }
        std::mem::swap(&mut t, &mut next);
    }
    t
}

/// The flow computation shared by [`masks_to_flows`] and the quality control: every mask's
/// diffused heat over its padded box, from which [`Diffusion::flow_at`] reads the unit flow
/// `(dy, dx)` of any mask pixel in float64. The heat of an image pixel is that of its own mask's
/// crop (0 for background and outside the image), which is what Cellpose's assembled heat map
/// holds there, so no full-image map is built.
pub(crate) struct Diffusion<'a> {
    labels: &'a [u32],
    height: usize,
    width: usize,
    /// Bounding boxes of labels 1..=max (`None` where absent).
    pub(crate) boxes: Vec<Option<BoundingBox>>,
    crops: Vec<Crop>,
    /// Index into `crops` of each label 1..=max (unused where absent).
    crop_of: Vec<u32>,
    heat: HeatMap,
}

enum HeatMap {
    F64(Vec<Vec<f64>>),
    F32(Vec<Vec<f32>>),
}

impl<'a> Diffusion<'a> {
    /// Diffuses all masks of `labels` (`height * width`, any label values).
    /// `extra_bytes`: what the caller allocates beside (for the memory check).
    pub(crate) fn run(
        labels: &'a [u32],
        height: usize,
        width: usize,
        extra_bytes: u64,
    ) -> Result<Self> {
        let boxes = find_objects(labels, height, width);
        Self::run_in_boxes(labels, height, width, boxes, extra_bytes)
    }

    /// [`Self::run`] with the bounding boxes of labels 1..=max already known. Errors when the
    /// work would not fit the memory available ([`check_heat_memory`]).
    pub(crate) fn run_in_boxes(
        labels: &'a [u32],
        height: usize,
        width: usize,
        boxes: Vec<Option<BoundingBox>>,
        extra_bytes: u64,
    ) -> Result<Self> {
        let padded = ((height + 2) * (width + 2)) as f64;
        let float32 = padded > FLOAT32_ABOVE_PIXELS;
        let heat_bytes = if float32 { 4 } else { 8 };
        let volumes = boxes
            .iter()
            .flatten()
            .map(|&(y0, y1, x0, x1)| ((y1 - y0 + 2) * (x1 - x0 + 2)) as u64);
        // Per worker: the crop's two heat buffers, its mask as floats, its order weights.
        check_heat_memory(
            &format!("{height}×{width} image"),
            extra_bytes,
            volumes,
            heat_bytes,
            5,
            crate::io::limits::available_memory(),
        )?;
        let crops: Vec<Crop> = boxes
            .par_iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let b = (*b)?;
                let label = i as u32 + 1;
                let (cy, cx) = mask_centre(labels, width, label, b);
                let (y0, y1, x0, x1) = b;
                let (h, w) = (y1 - y0 + 2, x1 - x0 + 2);
                Some(Crop {
                    label,
                    y0,
                    x0,
                    h,
                    w,
                    centre: (cy + 1) * w + cx + 1,
                })
            })
            .collect();
        let mut crop_of = vec![u32::MAX; boxes.len()];
        for (i, c) in crops.iter().enumerate() {
            crop_of[c.label as usize - 1] = i as u32;
        }
        let ext_max = crops.iter().map(|c| c.h + c.w - 2).max().unwrap_or(0);
        let niter = 2 * ext_max;
        let ilp = ilp_pixel_ranges(labels, width, 9, heat_bytes as usize);
        let heat = if float32 {
            HeatMap::F32(
                crops
                    .par_iter()
                    .map(|c| {
                        simd::dispatch(Diffuse::<f32> {
                            labels,
                            ilp: &ilp,
                            width,
                            crop: c,
                            niter,
                            heat: PhantomData,
                        })
                    })
                    .collect(),
            )
        } else {
            HeatMap::F64(
                crops
                    .par_iter()
                    .map(|c| {
                        simd::dispatch(Diffuse::<f64> {
                            labels,
                            ilp: &ilp,
                            width,
                            crop: c,
                            niter,
                            heat: PhantomData,
                        })
                    })
                    .collect(),
            )
        };
        Ok(Diffusion {
            labels,
            height,
            width,
            boxes,
            crops,
            crop_of,
            heat,
        })
    }

    /// Heat at padded-image pixel (py, px): its mask's diffused value, 0 off masks.
    #[inline]
    fn value<T: Heat>(&self, heat: &[Vec<T>], py: usize, px: usize) -> T {
        if py == 0 || px == 0 || py > self.height || px > self.width {
            return T::default();
        }
        let l = self.labels[(py - 1) * self.width + px - 1];
        if l == 0 {
            return T::default();
        }
        let ci = self.crop_of[l as usize - 1] as usize;
        let c = &self.crops[ci];
        // Image pixel (py - 1, px - 1) sits at (py - y0, px - x0) of the padded crop.
        heat[ci][(py - c.y0) * c.w + (px - c.x0)]
    }

    /// Heat differences `(down - up, right - left)` around image pixel (y, x) of a mask.
    #[inline]
    fn gradient<T: Heat>(&self, heat: &[Vec<T>], y: usize, x: usize) -> (T, T) {
        let w = self.width;
        let k = y * w + x;
        let l = self.labels[k];
        // Inside the image with all four neighbours in the same mask: read them from the
        // mask's own crop (what `value` would find, without looking each one up).
        if y > 0
            && x > 0
            && y + 1 < self.height
            && x + 1 < w
            && self.labels[k - 1] == l
            && self.labels[k + 1] == l
            && self.labels[k - w] == l
            && self.labels[k + w] == l
        {
            let ci = self.crop_of[l as usize - 1] as usize;
            let c = &self.crops[ci];
            let t = &heat[ci];
            // Image pixel (y, x) sits at (y + 1 - y0, x + 1 - x0) of the padded crop.
            let j = (y + 1 - c.y0) * c.w + (x + 1 - c.x0);
            return (t[j + c.w] - t[j - c.w], t[j + 1] - t[j - 1]);
        }
        let (py, px) = (y + 1, x + 1);
        (
            self.value(heat, py + 1, px) - self.value(heat, py - 1, px),
            self.value(heat, py, px + 1) - self.value(heat, py, px - 1),
        )
    }

    /// Unit flow `(dy, dx)` at image pixel (y, x) of a mask, as Cellpose normalizes it.
    #[inline]
    pub(crate) fn flow_at(&self, y: usize, x: usize) -> (f64, f64) {
        let (dy, dx) = match &self.heat {
            HeatMap::F64(t) => self.gradient(t, y, x),
            HeatMap::F32(t) => {
                let (dy, dx) = self.gradient(t, y, x);
                (dy as f64, dx as f64)
            }
        };
        let norm = 1e-60 + (dy * dy + dx * dx).sqrt();
        (dy / norm, dx / norm)
    }
}

/// Image-index ranges `[a, b)` holding the mask pixels whose `rows` neighbour values the
/// reference sums with the interleaved order, for heat values of `elem_bytes` bytes (other
/// pixels inside a range are not mask pixels, so they never matter). `labels` is read as rows
/// of `width` (a volume's rows plane after plane).
pub(super) fn ilp_pixel_ranges(
    labels: &[u32],
    width: usize,
    rows: usize,
    elem_bytes: usize,
) -> Vec<(usize, usize)> {
    let row_counts: Vec<usize> = labels
        .par_chunks(width)
        .map(|row| row.iter().filter(|&&l| l != 0).count())
        .collect();
    let n_mask: usize = row_counts.iter().sum();
    let ranges = ilp_rank_ranges(n_mask, rows, elem_bytes);
    let ranks: Vec<usize> = ranges.iter().flat_map(|&(a, b)| [a, b - 1]).collect();
    let pixels = pixels_of_ranks(labels, width, &row_counts, &ranks);
    pixels.chunks(2).map(|p| (p[0], p[1] + 1)).collect()
}

/// Refuses diffusion whose working memory exceeds `avail` bytes (when known), with a clear
/// error instead of an allocation failure: `extra_bytes` beside (the flows written), every
/// mask's heat over its padded box (`crop_sizes`, kept for the gradients) and, per worker
/// thread, `job_buffers` more buffers of the largest box. Shared by 2-D and 3-D.
pub(super) fn check_heat_memory(
    shape: &str,
    extra_bytes: u64,
    crop_sizes: impl Iterator<Item = u64>,
    heat_bytes: u64,
    job_buffers: u64,
    avail: Option<u64>,
) -> Result<()> {
    let (sum, max) = crop_sizes.fold((0u64, 0u64), |(s, m), v| (s.saturating_add(v), m.max(v)));
    let threads = rayon::current_num_threads() as u64;
    let need = extra_bytes
        .saturating_add(heat_bytes.saturating_mul(sum))
        .saturating_add(
            heat_bytes
                .saturating_mul(job_buffers * threads)
                .saturating_mul(max),
        );
    if let Some(avail) = avail
        && need > avail
    {
        return Err(Error::TooLarge(format!(
            "labels → flows of a {shape} need about {} of memory, more than the {} available (each mask is diffused over its bounding box: a label used for distant objects makes a large box)",
            crate::io::limits::bytes_text(need),
            crate::io::limits::bytes_text(avail)
        )));
    }
    Ok(())
}

/// Cellpose's `masks_to_flows`: unit flows `(2, height, width)` (dY then dX, float64, row-major)
/// from a label image, zero outside masks. Errors when the work would not fit the memory
/// available.
pub(crate) fn masks_to_flows(labels: &[u32], height: usize, width: usize) -> Result<Vec<f64>> {
    let n = height * width;
    if labels.iter().all(|&l| l == 0) {
        return Ok(vec![0.0f64; 2 * n]);
    }
    let d = Diffusion::run(labels, height, width, 16 * n as u64)?;
    let mut out = vec![0.0f64; 2 * n];
    let (dy_out, dx_out) = out.split_at_mut(n);
    dy_out
        .par_chunks_mut(width)
        .zip(dx_out.par_chunks_mut(width))
        .enumerate()
        .for_each(|(y, (row_y, row_x))| {
            for x in 0..width {
                if labels[y * width + x] != 0 {
                    let (dy, dx) = d.flow_at(y, x);
                    row_y[x] = dy;
                    row_x[x] = dx;
                }
            }
        });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::Heat;

    /// SplitMix64, for reproducible test values.
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `div9` and `div7` against the division, on `a` (float64) and `b` (float32).
    fn check(a: f64, b: f32) {
        if a.is_finite() {
            assert_eq!(a.div9().to_bits(), (a / 9.0).to_bits(), "{a:e} / 9");
            assert_eq!(a.div7().to_bits(), (a / 7.0).to_bits(), "{a:e} / 7");
        }
        if b.is_finite() {
            assert_eq!(b.div9().to_bits(), (b / 9.0).to_bits(), "{b:e} / 9");
            assert_eq!(b.div7().to_bits(), (b / 7.0).to_bits(), "{b:e} / 7");
        }
    }

    #[test]
    fn division_is_exact() {
        let mut s = 7u64;
        // Random bit patterns of every finite non-negative float64 (normal and subnormal),
        // float32 likewise, and the kind of values diffusion produces (sums of ninths and
        // sevenths).
        for _ in 0..4_000_000 {
            let a = f64::from_bits(next(&mut s) & 0x7FFF_FFFF_FFFF_FFFF);
            let b = f32::from_bits(next(&mut s) as u32 & 0x7FFF_FFFF);
            check(a, b);
        }
        for k in 0..200_000u32 {
            for a in [
                k as f64,
                k as f64 / 9.0,
                k as f64 / 7.0,
                (k as f64).sqrt(),
                f64::MIN_POSITIVE * k as f64,
            ] {
                check(a, k as f32 / 7.0);
            }
            check(0.0, k as f32 / 9.0);
        }
        let (mut h, mut g) = (1.0f64, 1.0f32);
        let (mut h7, mut g7) = (1.0f64, 1.0f32);
        for _ in 0..400 {
            check(h, g);
            check(h7, g7);
            h = h / 9.0 + 1.0 / 3.0 * h;
            g = g / 9.0 + 1.0 / 3.0 * g;
            h7 = h7 / 7.0 + 3.0 / 7.0 * h7;
            g7 = g7 / 7.0 + 3.0 / 7.0 * g7;
        }
        assert_eq!(f64::MAX.div9(), f64::MAX / 9.0);
        assert_eq!(f64::MAX.div7(), f64::MAX / 7.0);
        assert_eq!(0.0f64.div9().to_bits(), 0.0f64.to_bits());
        assert_eq!(0.0f64.div7().to_bits(), 0.0f64.to_bits());
    }

    /// torch's own summation orders (`tests/parity/make_sum_order_fixture.py`): for sums of 7
    /// and 9 rows in float64 and float32 over many column counts, each column's order as torch
    /// took it (1: interleaved, 2: sequential, 0: both orders gave the same value in every
    /// trial).
    #[test]
    fn ilp_ranges_equal_torch_sum_order() {
        use ndarray::Array1;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/sort/torch_sum_order.npz"
        );
        let mut npz = ndarray_npy::NpzReader::new(std::fs::File::open(path).unwrap()).unwrap();
        let cases: Array1<i64> = npz.by_name("cases").unwrap();
        let cases = cases.to_vec();
        assert!(cases.len() > 300, "{} cases", cases.len());
        for (k, c) in cases.chunks(3).enumerate() {
            let (rows, bytes, n) = (c[0] as usize, c[1] as usize, c[2] as usize);
            let order: Array1<u8> = npz.by_name(&format!("order_{k}")).unwrap();
            assert_eq!(order.len(), n);
            let ranges = super::ilp_rank_ranges(n, rows, bytes);
            for (j, &o) in order.iter().enumerate() {
                let ilp = ranges.iter().any(|&(a, b)| a <= j && j < b);
                assert!(
                    o == 0 || (o == 1) == ilp,
                    "{rows} rows, {bytes}-byte values, {n} columns: column {j} torch {} ({ranges:?})",
                    if o == 1 { "interleaved" } else { "sequential" }
                );
            }
        }
    }
}
