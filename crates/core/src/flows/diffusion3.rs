//! Labels → flows in 3-D by heat diffusion from each mask's centre: cellpose 4.2.1.1's
//! `masks_to_flows_gpu_3d` (the code path it runs on the CPU too), reproduced bit for bit.
//!
//! As in 2-D ([`super::diffusion`]), diffusion never crosses between masks (a voxel averages
//! only the neighbours of its own label), so each mask is diffused on its own padded bounding
//! box, in parallel, for the number of iterations Cellpose uses for the whole volume; the
//! gradient reads the assembled heat map, where a touching neighbour's heat leaks in at borders
//! exactly as in Cellpose. What differs from 2-D, as in the reference:
//! - 7 neighbours (the voxel, then z+1, z−1, y+1, y−1, x+1, x−1), heat divided by 7;
//! - the centre is the mask voxel nearest the (unrounded) mean position, the first in raster
//!   order among equals, distances summed as `dz² + dx² + dy²`;
//! - `6 × max(extent sum)` iterations, extents counted as `stop − start + 1` per axis;
//! - in float32 (volumes over 4e7 voxels padded) the normalization stays in float32, where
//!   Cellpose's `1e-60` rounds to 0.

use std::marker::PhantomData;

use rayon::prelude::*;

#[cfg(test)]
use crate::error::Error;
use crate::error::Result;
use crate::simd;

use super::diffusion::{FLOAT32_ABOVE_PIXELS, Heat, check_heat_memory, ilp_pixel_ranges};
use super::stitch::{Box3, find_objects_3d};

/// One mask's diffusion problem: its bounding box padded by one voxel.
struct Crop3 {
    label: u32,
    /// Box start in image coordinates (= padded-crop origin in padded-image coordinates).
    z0: usize,
    y0: usize,
    x0: usize,
    /// Padded crop size.
    d: usize,
    h: usize,
    w: usize,
    /// Centre in padded-crop coordinates.
    centre: [usize; 3],
    /// Flat padded-crop indices of the mask voxels the reference sums in the interleaved order.
    interleaved: Vec<usize>,
}

/// Cellpose's 3-D centre of one mask inside its box: the mask voxel nearest to the mean voxel
/// position (float64, padded coordinates as the reference computes them), the first in raster
/// order among equally near ones. Returns box-relative coordinates.
fn mask_centre_3d(labels: &[u32], dims: [usize; 3], label: u32, b: Box3) -> [usize; 3] {
    let [_, h, w] = dims;
    let [z0, z1, y0, y1, x0, x1] = b;
    let voxels = || {
        (z0..z1).flat_map(move |z| {
            (y0..y1).flat_map(move |y| {
                (x0..x1).filter_map(move |x| {
                    (labels[(z * h + y) * w + x] == label).then_some([z - z0, y - y0, x - x0])
                })
            })
        })
    };
    // Integer sums are exact in float64 (as numpy's pairwise float64 sum of int32 values is),
    // so the mean is the correctly rounded quotient; coordinates carry the reference's +1.
    let (mut s, mut n) = ([0u64; 3], 0u64);
    for v in voxels() {
        for k in 0..3 {
            s[k] += v[k] as u64 + 1;
        }
        n += 1;
    }
    let mean = s.map(|t| t as f64 / n as f64);
    let mut best = (f64::INFINITY, [0usize; 3]);
    for v in voxels() {
        let d = |k: usize| (v[k] as f64 + 1.0) - mean[k];
        let dist = (d(0) * d(0) + d(2) * d(2)) + d(1) * d(1);
        if dist < best.0 {
            best = (dist, v);
        }
    }
    best.1
}

/// [`diffuse_3d`] on one crop, run through [`simd::dispatch`].
struct Diffuse3<'a, T> {
    labels: &'a [u32],
    dims: [usize; 3],
    crop: &'a Crop3,
    niter: usize,
    heat: PhantomData<T>,
}

impl<T: Heat> simd::Kernel for Diffuse3<'_, T> {
    type Output = Vec<T>;
    #[inline(always)]
    fn run(self) -> Vec<T> {
        diffuse_3d::<T>(self.labels, self.dims, self.crop, self.niter)
    }
}

/// Diffuses one mask for `niter` iterations and returns its heat over the padded crop.
/// Inlined into [`simd::dispatch`]'s copies.
#[inline(always)]
fn diffuse_3d<T: Heat>(labels: &[u32], dims: [usize; 3], c: &Crop3, niter: usize) -> Vec<T> {
    let [_, ih, iw] = dims;
    let (d, h, w) = (c.d, c.h, c.w);
    let hw = h * w;
    let zero = T::default();
    // 1 on the mask's voxels, 0 elsewhere (the one-voxel ring never is the mask). Heat values
    // are finite and non-negative, so multiplying by 1 or 0 is exact and selects like Cellpose's
    // `Tneigh * isneighbor`: voxels that are not the mask's keep zero heat forever, so their
    // (multiplied) values add nothing and the neighbour sums need no mask test.
    let mut own = vec![zero; d * hw];
    for cz in 1..d - 1 {
        for cy in 1..h - 1 {
            let row = ((c.z0 + cz - 1) * ih + c.y0 + cy - 1) * iw + c.x0 - 1;
            for cx in 1..w - 1 {
                if labels[row + cx] == c.label {
                    own[cz * hw + cy * w + cx] = T::ONE;
                }
            }
        }
    }
    let mut t = vec![zero; d * hw];
    let mut next = vec![zero; d * hw];
    let [ccz, ccy, ccx] = c.centre;
    let centre = ccz * hw + ccy * w + ccx;
    // A mask that fills little of its box (one label on distant objects, a thin diagonal
    // shape): update its voxels only, as Cellpose does (the same sums, so the same values),
    // instead of sweeping the box's every voxel for thousands of iterations.
    let voxels: Vec<usize> = (0..d * hw).filter(|&k| own[k] == T::ONE).collect();
    if voxels.len() * 16 < d * hw {
        for _ in 0..niter {
            t[centre] = t[centre] + T::ONE;
            for &k in &voxels {
                next[k] = seq_sum7(neighbours7(&t, k, [hw, w])).div7();
            }
            interleaved_update(&t, &mut next, &c.interleaved, [hw, w]);
            std::mem::swap(&mut t, &mut next);
        }
        return t;
    }
    for it in 0..niter {
        t[centre] = t[centre] + T::ONE;
        // Heat has spread at most `it` voxels (6-connected steps) from the centre before this
        // update, `it + 1` after it: outside that diamond both buffers hold zeros, so each
        // plane's update covers only the box around its slice of the diamond.
        let reach = it + 1;
        for cz in ccz.saturating_sub(reach).max(1)..(ccz + reach + 1).min(d - 1) {
            let r = reach - cz.abs_diff(ccz);
            let (ya, yb) = (ccy.saturating_sub(r).max(1), (ccy + r + 1).min(h - 1));
            let (xa, xb) = (ccx.saturating_sub(r).max(1), (ccx + r + 1).min(w - 1));
            // One flat pass from the window's first voxel to its last (voxels in between that
            // are outside the window or on the ring are computed too: they come out 0, as
            // they are), shifted by ±1, ±w and ±hw for the neighbours: a long loop that
            // vectorizes. Indices stay inside the crop: planes 1..d - 1, rows 1..h - 1,
            // columns 1..w - 1.
            let (lo, hi) = (cz * hw + ya * w + xa, cz * hw + (yb - 1) * w + xb);
            if lo >= hi {
                continue;
            }
            let n = hi - lo;
            let (v0, v1, v2) = (&t[lo..][..n], &t[lo + hw..][..n], &t[lo - hw..][..n]);
            let (v3, v4) = (&t[lo + w..][..n], &t[lo - w..][..n]);
            let (v5, v6) = (&t[lo + 1..][..n], &t[lo - 1..][..n]);
            let (om, out) = (&own[lo..][..n], &mut next[lo..][..n]);
            for j in 0..n {
                let seq = seq_sum7([v0[j], v1[j], v2[j], v3[j], v4[j], v5[j], v6[j]]);
                out[j] = seq.div7() * om[j];
            }
        }
        interleaved_update(&t, &mut next, &c.interleaved, [hw, w]);
        std::mem::swap(&mut t, &mut next);
    }
    t
}

/// The seven neighbour heats of crop voxel `k` in Cellpose's order: the voxel, z+1, z−1, y+1,
/// y−1, x+1, x−1 (`strides` = plane and row strides of the crop).
#[inline(always)]
fn neighbours7<T: Heat>(t: &[T], k: usize, strides: [usize; 2]) -> [T; 7] {
    let [hw, w] = strides;
    [
        t[k],
        t[k + hw],
        t[k - hw],
        t[k + w],
        t[k - w],
        t[k + 1],
        t[k - 1],
    ]
}

/// The seven neighbour heats summed sequentially, as torch sums inside a block of columns
/// (torch starts from 0; `0 + v0` is `v0` for heat, which is never negative).
#[inline(always)]
fn seq_sum7<T: Heat>(v: [T; 7]) -> T {
    (((((v[0] + v[1]) + v[2]) + v[3]) + v[4]) + v[5]) + v[6]
}

/// The seven neighbour heats summed as torch's `row_sum` does with four interleaved
/// accumulators: the voxel, y−1, x+1 and x−1 in the first, then the others' single values
/// z+1, z−1 and y+1 added one by one.
#[inline(always)]
fn ilp_sum7<T: Heat>(v: [T; 7]) -> T {
    (((((v[0] + v[4]) + v[5]) + v[6]) + v[1]) + v[2]) + v[3]
}

/// The few mask voxels torch sums in the interleaved order (`interleaved`, flat padded-crop
/// indices, all of them mask voxels), after a pass that summed them sequentially.
#[inline(always)]
fn interleaved_update<T: Heat>(
    t: &[T],
    next: &mut [T],
    interleaved: &[usize],
    strides: [usize; 2],
) {
    for &k in interleaved {
        next[k] = ilp_sum7(neighbours7(t, k, strides)).div7();
    }
}

/// Every mask's diffused heat over its padded box, and the unit flows read from it.
struct Diffusion3<'a> {
    labels: &'a [u32],
    dims: [usize; 3],
    crops: Vec<Crop3>,
    /// Index into `crops` of each label 1..=max (unused where absent).
    crop_of: Vec<u32>,
    heat: HeatMap3,
}

enum HeatMap3 {
    F64(Vec<Vec<f64>>),
    F32(Vec<Vec<f32>>),
}

impl<'a> Diffusion3<'a> {
    /// Diffuses all masks of `labels` (`dims` = planes, height, width; labels 1..=max), after
    /// checking that the work fits the memory available (see [`check_memory`]).
    fn run(labels: &'a [u32], dims: [usize; 3]) -> Result<Self> {
        let [dz, dy, dx] = dims;
        let boxes = find_objects_3d(labels, dy, dx);
        let padded = ((dz + 2) * (dy + 2) * (dx + 2)) as f64;
        let float32 = padded > FLOAT32_ABOVE_PIXELS;
        check_memory(dims, &boxes, if float32 { 4 } else { 8 })?;
        // The mask voxels summed in the interleaved order: a few dozen at most, found once.
        let ilp: Vec<usize> = ilp_pixel_ranges(labels, dx, 7, if float32 { 4 } else { 8 })
            .into_iter()
            .flat_map(|(a, e)| (a..e).filter(|&k| labels[k] != 0))
            .collect();
        let crops: Vec<Crop3> = boxes
            .par_iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let b = (*b)?;
                let label = i as u32 + 1;
                let [cz, cy, cx] = mask_centre_3d(labels, dims, label, b);
                let [z0, z1, y0, y1, x0, x1] = b;
                let (d, h, w) = (z1 - z0 + 2, y1 - y0 + 2, x1 - x0 + 2);
                let interleaved = ilp
                    .iter()
                    .filter(|&&k| labels[k] == label)
                    .map(|&k| {
                        let (z, y, x) = (k / (dy * dx), k / dx % dy, k % dx);
                        ((z - z0 + 1) * h + y - y0 + 1) * w + x - x0 + 1
                    })
                    .collect();
                Some(Crop3 {
                    label,
                    z0,
                    y0,
                    x0,
                    d,
                    h,
                    w,
                    centre: [cz + 1, cy + 1, cx + 1],
                    interleaved,
                })
            })
            .collect();
        let mut crop_of = vec![u32::MAX; boxes.len()];
        for (i, c) in crops.iter().enumerate() {
            crop_of[c.label as usize - 1] = i as u32;
        }
        // Extents `stop - start + 1` per axis = padded crop size - 1.
        let ext_max = crops.iter().map(|c| c.d + c.h + c.w - 3).max().unwrap_or(0);
        let niter = 6 * ext_max;
        fn all<T: Heat>(
            labels: &[u32],
            dims: [usize; 3],
            crops: &[Crop3],
            niter: usize,
        ) -> Vec<Vec<T>> {
            crops
                .par_iter()
                .map(|c| {
                    simd::dispatch(Diffuse3::<T> {
                        labels,
                        dims,
                        crop: c,
                        niter,
                        heat: PhantomData,
                    })
                })
                .collect()
        }
        let heat = if float32 {
            HeatMap3::F32(all(labels, dims, &crops, niter))
        } else {
            HeatMap3::F64(all(labels, dims, &crops, niter))
        };
        Ok(Diffusion3 {
            labels,
            dims,
            crops,
            crop_of,
            heat,
        })
    }

    /// Heat at padded-image voxel `p`: its mask's diffused value, 0 off masks.
    #[inline]
    fn value<T: Heat>(&self, heat: &[Vec<T>], p: [usize; 3]) -> T {
        let [d, h, w] = self.dims;
        let [pz, py, px] = p;
        if pz == 0 || py == 0 || px == 0 || pz > d || py > h || px > w {
            return T::default();
        }
        let l = self.labels[((pz - 1) * h + py - 1) * w + px - 1];
        if l == 0 {
            return T::default();
        }
        let ci = self.crop_of[l as usize - 1] as usize;
        let c = &self.crops[ci];
        // Image voxel p - 1 sits at p - box start of the padded crop.
        heat[ci][((pz - c.z0) * c.h + py - c.y0) * c.w + px - c.x0]
    }

    /// Heat differences `(z+1 − z−1, y+1 − y−1, x+1 − x−1)` around image voxel `v` of a mask.
    #[inline]
    fn gradient<T: Heat>(&self, heat: &[Vec<T>], v: [usize; 3]) -> [T; 3] {
        let p = v.map(|c| c + 1);
        let step = |k: usize, up: bool| {
            let mut q = p;
            q[k] = if up { q[k] + 1 } else { q[k] - 1 };
            self.value(heat, q)
        };
        [
            step(0, true) - step(0, false),
            step(1, true) - step(1, false),
            step(2, true) - step(2, false),
        ]
    }

    /// Unit flow `(dz, dy, dx)` at image voxel `v` of a mask, normalized as Cellpose does: in
    /// float64 with `1e-60` added to the norm, or in float32 for float32 heat (where `1e-60`
    /// is 0). There Cellpose divides by a zero norm where the six neighbours hold equal heat
    /// (a one-voxel mask) or the squares underflow (far along a thin mask), giving NaN or ±inf;
    /// cytoseg gives 0 instead, the one deliberate difference (flows are training targets).
    #[inline]
    fn flow_at(&self, v: [usize; 3]) -> [f64; 3] {
        match &self.heat {
            HeatMap3::F64(t) => {
                let [dz, dy, dx] = self.gradient(t, v);
                let norm = 1e-60 + ((dz * dz + dy * dy) + dx * dx).sqrt();
                [dz / norm, dy / norm, dx / norm]
            }
            HeatMap3::F32(t) => {
                let g = self.gradient(t, v);
                let norm = ((g[0] * g[0] + g[1] * g[1]) + g[2] * g[2]).sqrt();
                g.map(|c| {
                    let q = c / norm;
                    if q.is_finite() { q as f64 } else { 0.0 }
                })
            }
        }
    }
}

/// Refuses labels → flows whose working memory exceeds what the system has available, with a
/// clear error instead of an allocation failure: the float64 flows (24 bytes per voxel), every
/// mask's heat over its padded box (kept for the gradients) and, per worker thread, the two
/// other buffers of the largest box.
fn check_memory(dims: [usize; 3], boxes: &[Option<Box3>], heat_bytes: u64) -> Result<()> {
    check_memory_within(
        dims,
        boxes,
        heat_bytes,
        crate::io::limits::available_memory(),
    )
}

/// [`check_memory`] against `avail` bytes (`None`: unknown, not checked).
fn check_memory_within(
    dims: [usize; 3],
    boxes: &[Option<Box3>],
    heat_bytes: u64,
    avail: Option<u64>,
) -> Result<()> {
    let [d, h, w] = dims;
    let volumes = boxes.iter().flatten().map(|b| {
        let [z0, z1, y0, y1, x0, x1] = *b;
        ((z1 - z0 + 2) * (y1 - y0 + 2) * (x1 - x0 + 2)) as u64
    });
    let n = (d * h * w) as u64;
    check_heat_memory(
        &format!("{d}×{h}×{w} volume"),
        24 * n,
        volumes,
        heat_bytes,
        2,
        avail,
    )
}

/// cellpose's `masks_to_flows_gpu_3d`: unit flows `(3, planes, height, width)` (dZ, dY, dX,
/// float64) from a label volume with labels 1..=max (any may be absent), zero outside masks.
/// Errors when the work would not fit the memory available.
pub(crate) fn masks_to_flows_3d(labels: &[u32], dims: [usize; 3]) -> Result<Vec<f64>> {
    let n = labels.len();
    if labels.iter().all(|&l| l == 0) {
        return Ok(vec![0.0f64; 3 * n]);
    }
    let [_, h, w] = dims;
    let d = Diffusion3::run(labels, dims)?;
    let mut out = vec![0.0f64; 3 * n];
    let (oz, rest) = out.split_at_mut(n);
    let (oy, ox) = rest.split_at_mut(n);
    oz.par_chunks_mut(w)
        .zip(oy.par_chunks_mut(w))
        .zip(ox.par_chunks_mut(w))
        .enumerate()
        .for_each(|(r, ((rz, ry), rx))| {
            let (z, y) = (r / h, r % h);
            for x in 0..w {
                if labels[r * w + x] != 0 {
                    let [fz, fy, fx] = d.flow_at([z, y, x]);
                    rz[x] = fz;
                    ry[x] = fy;
                    rx[x] = fx;
                }
            }
        });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One label on two far corners of a 512×2048×2048 stack: its box is the whole volume,
    /// so the heat buffers alone are tens of GB; refused with a message before any allocation.
    #[test]
    fn work_that_cannot_fit_is_refused() {
        let dims = [512, 2048, 2048];
        let corners = [Some([0, 512, 0, 2048, 0, 2048])];
        let err = check_memory_within(dims, &corners, 8, Some(24 << 30)).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::TooLarge(_)), "{msg}");
        assert!(
            msg.contains("512×2048×2048") && msg.contains("bounding box"),
            "{msg}"
        );
        // Small nuclei in the same volume: the flows themselves (48 GiB) are the limit.
        let nuclei = vec![Some([0, 10, 0, 20, 0, 20]); 1000];
        assert!(check_memory_within(dims, &nuclei, 8, Some(64 << 30)).is_ok());
        assert!(check_memory_within(dims, &nuclei, 8, Some(40 << 30)).is_err());
        assert!(check_memory_within(dims, &corners, 8, None).is_ok());
    }

    /// A volume over 4e7 voxels (padded), where Cellpose diffuses and normalizes in float32,
    /// against cellpose's own flows at its mask voxels (`tests/parity/
    /// make_volume_flows_fixtures.py`: balls, a 60-voxel line whose far flows underflow, single
    /// voxels). Where cellpose's float32 normalization divides by zero (NaN, ±inf), 0.
    #[test]
    fn float32_volume_matches_cellpose() {
        use ndarray::{Array1, Array2};
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/volume_flows/float32_sparse.npz"
        );
        let mut npz = ndarray_npy::NpzReader::new(std::fs::File::open(path).unwrap()).unwrap();
        let shape: Array1<i64> = npz.by_name("shape").unwrap();
        let index: Array1<i64> = npz.by_name("index").unwrap();
        let values: Array1<u32> = npz.by_name("values").unwrap();
        let want: Array2<f64> = npz.by_name("flows").unwrap();
        let dims = [shape[0] as usize, shape[1] as usize, shape[2] as usize];
        let mut labels = vec![0u32; dims.iter().product()];
        for (&i, &v) in index.iter().zip(values.iter()) {
            labels[i as usize] = v;
        }
        let d = Diffusion3::run(&labels, dims).unwrap();
        assert!(
            matches!(d.heat, HeatMap3::F32(_)),
            "float32 above 4e7 voxels"
        );
        let (mut nonfinite, mut differ) = (0, Vec::new());
        for (k, &i) in index.iter().enumerate() {
            let i = i as usize;
            let v = [i / (dims[1] * dims[2]), i / dims[2] % dims[1], i % dims[2]];
            let got = d.flow_at(v);
            for c in 0..3 {
                let e = want[[c, k]];
                let e = if e.is_finite() {
                    e
                } else {
                    nonfinite += 1;
                    0.0
                };
                if got[c].to_bits() != e.to_bits() {
                    differ.push((v, c, got[c], e));
                }
            }
        }
        assert!(nonfinite > 0, "the case holds cellpose's non-finite flows");
        assert!(
            differ.is_empty(),
            "{} differ: {:?}",
            differ.len(),
            &differ[..differ.len().min(5)]
        );
    }
}
