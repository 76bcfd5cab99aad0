//! Flows → labels in 3-D, as Cellpose 4's `compute_masks(dP, cellprob, do_3D=True)` makes them
//! (`cellpose==4.2.1.1`, CPU): the 3-D counterpart of the 2-D stages in the parent module.
//!
//! 1. Voxels with `cellprob > cellprob_threshold` follow `dP / 5` for `niter` Euler steps of
//!    torch's trilinear `grid_sample` (5-D input, zero padding, `align_corners=False`). torch
//!    runs the 3-D sampler as plain scalar float32 code (no fused multiply-add, unlike its
//!    vectorized 2-D kernel), emulated here operation for operation: the source index
//!    `((g + 1) * size - 1) / 2`, the eight corner weights as left-to-right products of three
//!    differences, the eight taps added in torch's order (`tnw, tne, tsw, tse, bnw, bne, bsw,
//!    bse`) to zero.
//! 2. A histogram of final voxels (padded by 20) gives seeds: bins equal to the maximum of
//!    their 5×5×5 neighbourhood holding more than 10 voxels, sorted by count in the order torch's
//!    (unstable) CPU argsort gives them, equal counts included (the `torch_sort` module); each
//!    grows 5 steps of 3×3×3 dilation over bins holding more than 2 voxels in its 11×11×11
//!    window; seeds are painted in order, stronger ones winning overlaps; masks over
//!    `max_size_fraction` of the volume are dropped; labels are numbered by first appearance.
//! 3. No flow quality control (Cellpose skips it when `do_3D`).
//! 4. With `min_size > 0`, holes are filled in 3-D and masks under `min_size` voxels removed.

use rayon::prelude::*;

use super::interp::lanes::{
    ANCHOR_INTERVAL, BLOCK, MANTISSA_BITS, MANTISSA_SHIFT, cycle, cycle_end, take_anchor,
};
use super::paths::KnownPaths;
use super::seeds::{self, GROW_MIN_COUNT, GROW_STEPS, RPAD, WIN, WIN_SIZE};
use super::{MAX_PIXELS, MAX_SIDE, MaskParams, SCAN_CHUNK, check_finite, stitch, torch_sort};
use crate::error::{Error, Result};
use crate::simd;

/// Borrowed network output for one volume in Cellpose's layout, each array row-major
/// `planes × height × width` (z, then y, then x): the flows `dz` (`dP[0]`), `dy` (`dP[1]`),
/// `dx` (`dP[2]`) and the cell-probability logits.
#[derive(Debug, Clone, Copy)]
pub struct Flows3Ref<'a> {
    /// Flow along z, `dP[0]`.
    pub dz: &'a [f32],
    /// Flow along y, `dP[1]`.
    pub dy: &'a [f32],
    /// Flow along x, `dP[2]`.
    pub dx: &'a [f32],
    /// Cell-probability logits.
    pub cellprob: &'a [f32],
    /// Number of z planes.
    pub planes: usize,
    /// Plane height in pixels.
    pub height: usize,
    /// Plane width in pixels.
    pub width: usize,
}

/// Checks a volume size for the 3-D flows pipeline and returns its voxel count. Every side
/// must be at least 2 (Cellpose divides by `size - 1`).
pub fn check_volume_size(planes: usize, height: usize, width: usize) -> Result<usize> {
    if planes < 2 || height < 2 || width < 2 {
        return Err(Error::invalid(format!(
            "3-D flows need at least 2 voxels along every axis, got {planes}×{height}×{width} (z×y×x); a single plane is a 2-D image"
        )));
    }
    if planes > MAX_SIDE || height > MAX_SIDE || width > MAX_SIDE {
        return Err(Error::TooLarge(format!(
            "{planes}×{height}×{width} exceeds the largest supported side ({MAX_SIDE})"
        )));
    }
    match planes
        .checked_mul(height)
        .and_then(|n| n.checked_mul(width))
    {
        Some(n) if n <= MAX_PIXELS => Ok(n),
        _ => Err(Error::TooLarge(format!(
            "{planes}×{height}×{width} exceeds the largest supported voxel count ({MAX_PIXELS})"
        ))),
    }
}

impl<'a> Flows3Ref<'a> {
    /// The four arrays stacked in one buffer, `dZ, dY, dX, cellprob` (`4 × planes × height ×
    /// width` floats); errors when the length differs.
    pub fn stacked(data: &'a [f32], planes: usize, height: usize, width: usize) -> Result<Self> {
        let n = check_volume_size(planes, height, width)?;
        if n.checked_mul(4) != Some(data.len()) {
            return Err(Error::shape(format!(
                "3-D flows hold {} values, a {planes}×{height}×{width} volume needs 4 × {n}",
                data.len()
            )));
        }
        let (dz, rest) = data.split_at(n);
        let (dy, rest) = rest.split_at(n);
        let (dx, cellprob) = rest.split_at(n);
        Ok(Flows3Ref {
            dz,
            dy,
            dx,
            cellprob,
            planes,
            height,
            width,
        })
    }

    /// Checks sizes, buffer lengths and finiteness.
    pub fn validate(&self) -> Result<()> {
        let n = check_volume_size(self.planes, self.height, self.width)?;
        for (name, a) in [
            ("dz", self.dz),
            ("dy", self.dy),
            ("dx", self.dx),
            ("cellprob", self.cellprob),
        ] {
            if a.len() != n {
                return Err(Error::shape(format!(
                    "{name} has {} values, expected {}×{}×{} = {n}",
                    a.len(),
                    self.planes,
                    self.height,
                    self.width
                )));
            }
        }
        check_finite("dP (dz)", self.dz)?;
        check_finite("dP (dy)", self.dy)?;
        check_finite("dP (dx)", self.dx)?;
        check_finite("cellprob", self.cellprob)?;
        Ok(())
    }
}

/// 3-D flows → labels without the final hole filling and size filter (Cellpose's
/// `compute_masks(..., do_3D=True, min_size=-1)`); `flow_threshold` is not used. Returns
/// labels numbered 1..n, row-major z, y, x.
pub fn compute_masks_3d_unfilled(flows: &Flows3Ref<'_>, params: &MaskParams) -> Result<Vec<u32>> {
    flows.validate()?;
    params.validate()?;
    let (d, h, w) = (flows.planes, flows.height, flows.width);
    let thr = params.cellprob_threshold;
    let mask: Vec<bool> = flows
        .cellprob
        .par_iter()
        .with_min_len(SCAN_CHUNK)
        .map(|&c| c > thr)
        .collect();
    let points: Vec<u32> = mask
        .par_chunks(w)
        .enumerate()
        .flat_map_iter(|(row, m)| {
            let base = (row * w) as u32;
            m.iter()
                .enumerate()
                .filter(|&(_, &on)| on)
                .map(move |(x, _)| base + x as u32)
        })
        .collect();
    if points.is_empty() {
        log::info!("no cell voxels found");
        return Ok(vec![0; d * h * w]);
    }
    check_memory([d, h, w], points.len())?;
    let start = std::time::Instant::now();
    let field = Field3::new(flows, &mask);
    drop(mask);
    log::debug!(
        "3-D flow field prepared in {:.3} s",
        start.elapsed().as_secs_f64()
    );
    let final_pos = field.follow(&points, params.niter);
    drop(field);
    let followed = start.elapsed();
    let labels = get_masks_3d(&final_pos, &points, [d, h, w], params.max_size_fraction);
    log::debug!(
        "3-D flows: {} voxels followed in {:.3} s, masks in {:.3} s",
        points.len(),
        followed.as_secs_f64(),
        (start.elapsed() - followed).as_secs_f64()
    );
    Ok(labels)
}

/// Refuses a volume whose working memory (the padded flow field, the padded histogram, the
/// followed voxels' positions and the labels) exceeds what the system has available, with a
/// clear error instead of an allocation failure.
fn check_memory(dims: [usize; 3], followed: usize) -> Result<()> {
    let [d, h, w] = dims.map(|v| v as u64);
    let n = d * h * w;
    let field = 16 * (d + 2) * (h + 2) * (w + 2);
    let r = 2 * RPAD as u64;
    let hist = 4 * (d + r) * (h + r) * (w + r);
    let need = field + hist + 5 * n + 28 * followed as u64;
    if let Some(avail) = crate::io::limits::available_memory()
        && need > avail
    {
        return Err(Error::TooLarge(format!(
            "3-D flows → labels of a {d}×{h}×{w} volume ({followed} voxels followed) need about {} of memory, more than the {} available: crop the volume or segment it plane by plane",
            crate::io::limits::bytes_text(need),
            crate::io::limits::bytes_text(avail)
        )));
    }
    Ok(())
}

/// 3-D flows → labels: Cellpose's `dynamics.compute_masks(dP, cellprob, niter,
/// cellprob_threshold, do_3D=True, min_size, max_size_fraction)`, label for label (no flow
/// quality control, as Cellpose; `min_size > 0` fills holes in 3-D and removes masks under
/// `min_size` voxels).
pub fn compute_masks_3d(flows: &Flows3Ref<'_>, params: &MaskParams) -> Result<Vec<u32>> {
    let start = std::time::Instant::now();
    let mut labels = compute_masks_3d_unfilled(flows, params)?;
    let unfilled = start.elapsed();
    if params.min_size > 0 {
        stitch::fill_holes_and_remove_small_3d(
            &mut labels,
            flows.height,
            flows.width,
            params.min_size,
        );
        log::debug!(
            "3-D masks: {:.3} s, holes filled and small masks removed in {:.3} s",
            unfilled.as_secs_f64(),
            (start.elapsed() - unfilled).as_secs_f64()
        );
    }
    Ok(labels)
}

/// The flow field prepared for trilinear sampling: per voxel the (x, y, z) displacement in
/// normalized grid units and a zero (one 16-byte entry, so that a tap is one vector load),
/// padded with one layer of zeros on every side so that the eight taps never leave the buffer.
struct Field3 {
    data: Vec<[f32; 4]>,
    /// Padded row and plane strides.
    sy: usize,
    sz: usize,
    /// Sizes as float32 (x, y, z), for the source index.
    size: [f32; 3],
    /// `size - 1` as float32 (x, y, z), for start and final positions.
    span: [f32; 3],
    /// Unpadded sizes (depth, height, width).
    dims: [usize; 3],
}

impl Field3 {
    /// Cellpose's sampling image: `dP * mask / 5`, each axis times `2 / (size - 1)` rounded to
    /// float32.
    fn new(flows: &Flows3Ref<'_>, mask: &[bool]) -> Self {
        let (d, h, w) = (flows.planes, flows.height, flows.width);
        let sy = w + 2;
        let sz = (h + 2) * sy;
        let scale = |n: usize| (2.0f64 / (n as f64 - 1.0)) as f32;
        let (kx, ky, kz) = (scale(w), scale(h), scale(d));
        let mut data = vec![[0.0f32; 4]; (d + 2) * sz];
        data[sz..(d + 1) * sz]
            .par_chunks_mut(sz)
            .enumerate()
            .for_each(|(z, plane)| {
                for y in 0..h {
                    let row = &mut plane[(y + 1) * sy + 1..(y + 1) * sy + 1 + w];
                    let i0 = (z * h + y) * w;
                    for (x, cell) in row.iter_mut().enumerate() {
                        let i = i0 + x;
                        if mask[i] {
                            *cell = [
                                (flows.dx[i] / 5.0) * kx,
                                (flows.dy[i] / 5.0) * ky,
                                (flows.dz[i] / 5.0) * kz,
                                0.0,
                            ];
                        }
                    }
                }
            });
        Field3 {
            data,
            sy,
            sz,
            size: [w as f32, h as f32, d as f32],
            span: [(w - 1) as f32, (h - 1) as f32, (d - 1) as f32],
            dims: [d, h, w],
        }
    }

    /// The eight taps of the cell whose low corner has padded index `base`, in torch's order
    /// (`tnw, tne, tsw, tse, bnw, bne, bsw, bse`).
    #[inline(always)]
    fn taps(&self, base: usize) -> [[f32; 4]; 8] {
        let (sy, sz) = (self.sy, self.sz);
        // One bounds check for all eight (`sy < sz`).
        let cell = &self.data[base..base + sz + sy + 2];
        [
            cell[0],
            cell[1],
            cell[sy],
            cell[sy + 1],
            cell[sz],
            cell[sz + 1],
            cell[sz + sy],
            cell[sz + sy + 1],
        ]
    }

    /// torch's scalar trilinear `grid_sample` at normalized grid point `g` (x, y, z).
    #[inline(always)]
    fn sample(&self, g: [f32; 3]) -> [f32; 3] {
        let mut i = [0.0f32; 3];
        let mut lo = [0.0f32; 3];
        let mut hi = [0.0f32; 3];
        let mut cell = [0usize; 3];
        for k in 0..3 {
            i[k] = ((g[k] + 1.0) * self.size[k] - 1.0) / 2.0;
            lo[k] = floor(i[k]);
            hi[k] = lo[k] + 1.0;
            // Padded index of the low corner: lo is in [-1, size - 1].
            cell[k] = (lo[k] as isize + 1) as usize;
        }
        let (ix, iy, iz) = (i[0], i[1], i[2]);
        let (x0, y0, z0) = (lo[0], lo[1], lo[2]);
        let (x1, y1, z1) = (hi[0], hi[1], hi[2]);
        let weights = [
            (x1 - ix) * (y1 - iy) * (z1 - iz),
            (ix - x0) * (y1 - iy) * (z1 - iz),
            (x1 - ix) * (iy - y0) * (z1 - iz),
            (ix - x0) * (iy - y0) * (z1 - iz),
            (x1 - ix) * (y1 - iy) * (iz - z0),
            (ix - x0) * (y1 - iy) * (iz - z0),
            (x1 - ix) * (iy - y0) * (iz - z0),
            (ix - x0) * (iy - y0) * (iz - z0),
        ];
        let taps = self.taps(cell[2] * self.sz + cell[1] * self.sy + cell[0]);
        let mut out = [0.0f32; 3];
        for (tap, &wt) in taps.iter().zip(&weights) {
            for (o, c) in out.iter_mut().zip(tap) {
                *o += c * wt;
            }
        }
        out
    }

    /// One Euler step, as Cellpose's loop: the sampled displacement added, then clamped to the
    /// grid, axis by axis.
    #[inline(always)]
    fn step(&self, mut g: [f32; 3]) -> [f32; 3] {
        let dp = self.sample(g);
        for k in 0..3 {
            g[k] = (g[k] + dp[k]).clamp(-1.0, 1.0);
        }
        g
    }

    /// `niter` Euler steps from grid point `g`. The step is a fixed function of the position, so
    /// once a position repeats (bitwise) the trajectory is periodic; Brent's cycle detection
    /// finds the period `λ` of any cycle within a few periods of reaching it, and the position
    /// after `niter` steps is then `(niter − t) mod λ` steps on from step `t`: exactly the same
    /// result, far sooner for the points that have settled.
    #[inline(always)]
    fn integrate(&self, g: [f32; 3], niter: u32) -> [f32; 3] {
        let bits = |g: [f32; 3]| [g[0].to_bits(), g[1].to_bits(), g[2].to_bits()];
        if niter == 0 {
            return g;
        }
        let mut tortoise = bits(g);
        let mut hare = self.step(g);
        let (mut t, mut power, mut lam) = (1u32, 1u32, 1u32);
        while bits(hare) != tortoise {
            if t == niter {
                return hare;
            }
            if power == lam {
                tortoise = bits(hare);
                power *= 2;
                lam = 0;
            }
            hare = self.step(hare);
            t += 1;
            lam += 1;
        }
        for _ in 0..(niter - t) % lam {
            hare = self.step(hare);
        }
        hare
    }

    /// Final voxel `(z, y, x)` of every point (flat row-major indices of the followed voxels):
    /// Cellpose's `p_final.int()`.
    fn follow(&self, points: &[u32], niter: u32) -> Vec<[i32; 3]> {
        let mut out = vec![[0i32; 3]; points.len()];
        out.par_chunks_mut(CHUNK)
            .zip(points.par_chunks(CHUNK))
            .for_each_init(Scratch::new, |scratch, (dst, src)| {
                simd::dispatch(Follow3 {
                    field: self,
                    src,
                    dst,
                    niter,
                    scratch,
                })
            });
        out
    }
}

/// One batch of [`Field3::follow`]'s points, compiled per instruction set by
/// [`simd::dispatch`] (the arithmetic, hence the result, is the same on every one).
struct Follow3<'a> {
    field: &'a Field3,
    src: &'a [u32],
    dst: &'a mut [[i32; 3]],
    niter: u32,
    scratch: &'a mut Scratch,
}

/// Working memory of [`Field3::integrate_lanes`], kept from one batch of points to the next.
struct Scratch {
    /// The lanes' latest [`RING`] positions.
    ring: Vec<[[f32; LANES]; 3]>,
    /// Paths found in the current batch.
    known: KnownPaths,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            ring: vec![[[0.0; LANES]; 3]; RING],
            known: KnownPaths::new(),
        }
    }
}

impl simd::Kernel for Follow3<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let Follow3 {
            field,
            src,
            dst,
            niter,
            scratch,
        } = self;
        match Quad::new() {
            Some(quad) if field.lanes_supported() => {
                field.integrate_lanes(src, dst, niter, quad, scratch);
            }
            _ => {
                for (o, &p) in dst.iter_mut().zip(src) {
                    *o = field.voxel(field.integrate(field.start(p), niter));
                }
            }
        }
    }
}

/// Four-wide float32 arithmetic for one lane's taps (`x, y, z` and an unused zero): SSE
/// through `pulp`'s safe wrappers on x86-64, plain arrays elsewhere. Each operation rounds
/// each element once, as the scalar code does.
#[derive(Clone, Copy)]
struct Quad {
    #[cfg(target_arch = "x86_64")]
    sse: pulp::x86::V1,
}

impl Quad {
    /// `None` where the instructions are missing (never on x86-64, where SSE2 is baseline).
    #[inline(always)]
    fn new() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        return pulp::x86::V1::try_new().map(|sse| Quad { sse });
        #[cfg(not(target_arch = "x86_64"))]
        return Some(Quad {});
    }

    /// `acc + v * w`, rounded after the product and after the sum (no fused multiply-add).
    #[inline(always)]
    fn add_product(self, acc: [f32; 4], v: [f32; 4], w: f32) -> [f32; 4] {
        #[cfg(target_arch = "x86_64")]
        {
            let s = self.sse;
            let q = |a: [f32; 4]| pulp::f32x4(a[0], a[1], a[2], a[3]);
            let r = s.add_f32x4(q(acc), s.mul_f32x4(q(v), s.splat_f32x4(w)));
            [r.0, r.1, r.2, r.3]
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = self;
            std::array::from_fn(|k| acc[k] + v[k] * w)
        }
    }
}

/// Trajectories advanced side by side by [`Field3::integrate_lanes`] (structure of arrays for
/// the source index and weights; each lane's taps as one vector).
const LANES: usize = 16;
/// Book-keeping of one lane of [`Field3::integrate_lanes`].
#[derive(Clone, Copy)]
struct Lane {
    /// Index of the point in this lane (`usize::MAX`: idle).
    point: usize,
    /// Steps done at the start of the current block.
    t: u64,
    /// Step after which the position is the final one.
    end: u64,
    /// Anchor position (bits of x, y, z) and the step after which it was taken.
    anchor: [u32; 3],
    anchor_t: u64,
    /// Steps between anchor refreshes.
    interval: u64,
    /// A cycle was found (`end` is set from it).
    periodic: bool,
    /// Steps all lanes had done when this one started: its position after step `t` is in
    /// ring slot `(g0 + t) % RING`.
    g0: u64,
}

impl Lane {
    /// No point; the anchor (NaN bits) never matches a position.
    const IDLE: Lane = Lane {
        point: usize::MAX,
        t: 0,
        end: 0,
        anchor: [u32::MAX; 3],
        anchor_t: 0,
        interval: ANCHOR_INTERVAL,
        periodic: false,
        g0: 0,
    };

    fn start(point: usize, g: [f32; 3], niter: u64, g0: u64) -> Lane {
        Lane {
            point,
            end: niter,
            anchor: g.map(f32::to_bits),
            g0,
            ..Lane::IDLE
        }
    }
}

/// Positions kept per lane ([`Field3::integrate_lanes`]'s ring of the latest steps): a whole
/// path of Cellpose's default 200 steps fits.
const RING: usize = 256;

impl Field3 {
    /// Start position of the voxel at flat index `p`, in normalized grid units (x, y, z).
    #[inline(always)]
    fn start(&self, p: u32) -> [f32; 3] {
        let [_, h, w] = self.dims;
        let p = p as usize;
        let c = [(p % w) as f32, ((p / w) % h) as f32, (p / (w * h)) as f32];
        let mut g = [0.0f32; 3];
        for k in 0..3 {
            g[k] = (c[k] / self.span[k]) * 2.0 - 1.0;
        }
        g
    }

    /// The voxel `(z, y, x)` Cellpose reports for final grid position `e`: `p_final.int()`.
    #[inline(always)]
    fn voxel(&self, e: [f32; 3]) -> [i32; 3] {
        let mut f = [0i32; 3];
        for k in 0..3 {
            f[k] = ((e[k] + 1.0) * 0.5 * self.span[k]) as i32;
        }
        [f[2], f[1], f[0]]
    }

    /// Whether [`Self::integrate_lanes`] can index this field: padded sides below `2^23` (for
    /// the float-to-int conversion and [`floor_small`]) and padded indices within `u32`.
    fn lanes_supported(&self) -> bool {
        let [d, h, w] = self.dims;
        d + 2 < (1 << 23)
            && h + 2 < (1 << 23)
            && w + 2 < (1 << 23)
            && self.data.len() < u32::MAX as usize
    }

    /// One Euler step of every lane, exactly as [`Self::step`]: the same operations in the same
    /// order, lane by lane. The source index and the weights are computed for all lanes at
    /// once (vector code across lanes); the taps are read and summed lane by lane, one vector
    /// per tap.
    // `max(-1).min(1)` equals `clamp(-1, 1)` on these finite values but compiles to vector
    // min/max.
    #[allow(clippy::manual_clamp)]
    #[inline(always)]
    fn step_lanes(&self, g: &mut [[f32; LANES]; 3], quad: Quad) {
        let mut base = [0u32; LANES];
        let mut wts = [[0.0f32; LANES]; 8];
        let (sy, sz) = (self.sy as u32, self.sz as u32);
        for l in 0..LANES {
            let mut i = [0.0f32; 3];
            let mut lo = [0.0f32; 3];
            let mut cell = [0u32; 3];
            for k in 0..3 {
                i[k] = ((g[k][l] + 1.0) * self.size[k] - 1.0) / 2.0;
                lo[k] = floor_small(i[k]);
                cell[k] = ((lo[k] + 1.0) + MANTISSA_SHIFT).to_bits() - MANTISSA_BITS;
            }
            base[l] = cell[2] * sz + cell[1] * sy + cell[0];
            let [ix, iy, iz] = i;
            let [x0, y0, z0] = lo;
            let (x1, y1, z1) = (x0 + 1.0, y0 + 1.0, z0 + 1.0);
            wts[0][l] = (x1 - ix) * (y1 - iy) * (z1 - iz);
            wts[1][l] = (ix - x0) * (y1 - iy) * (z1 - iz);
            wts[2][l] = (x1 - ix) * (iy - y0) * (z1 - iz);
            wts[3][l] = (ix - x0) * (iy - y0) * (z1 - iz);
            wts[4][l] = (x1 - ix) * (y1 - iy) * (iz - z0);
            wts[5][l] = (ix - x0) * (y1 - iy) * (iz - z0);
            wts[6][l] = (x1 - ix) * (iy - y0) * (iz - z0);
            wts[7][l] = (ix - x0) * (iy - y0) * (iz - z0);
        }
        let mut out = [[0.0f32; 4]; LANES];
        for (l, o) in out.iter_mut().enumerate() {
            let taps = self.taps(base[l] as usize);
            for (tap, wt) in taps.iter().zip(&wts) {
                *o = quad.add_product(*o, *tap, wt[l]);
            }
        }
        for (k, gk) in g.iter_mut().enumerate() {
            for (gl, o) in gk.iter_mut().zip(&out) {
                *gl = (*gl + o[k]).max(-1.0).min(1.0);
            }
        }
    }

    /// [`Self::integrate`] for every point of `src` (final voxels into `dst`), [`LANES`]
    /// trajectories at a time, each taking the next point as soon as its own is done: the same
    /// final voxels as the scalar version, step for step. Returns how many points were finished
    /// on a known path.
    ///
    /// A lane stops as soon as its trajectory is provably periodic: it keeps an anchor (its
    /// position after some step `ta`), and when the position after step `t` equals it bitwise,
    /// the trajectory repeats with period `t - ta` from then on, so the final position is the
    /// one after step `t + (niter - t) mod (t - ta)`. Two anchors are compared at every step,
    /// in vector code: one refreshed at growing intervals (Brent's method, for long cycles) and
    /// the position at the start of the current block of [`BLOCK`] steps (short cycles are found
    /// within a block of entering them). The lanes' latest [`RING`] positions are kept, so a
    /// lane can finish inside a block; the per-lane decisions are taken once per block.
    ///
    /// A lane whose cycle is found leaves its path in a [`KnownPaths`] table, and at the end of
    /// every block each lane still looking for its cycle looks its position up there: a lane
    /// that has joined a known path finishes with the voxel that path reaches in the steps the
    /// lane has left (most trajectories of an object join a path an earlier one took, well
    /// before they close a cycle of their own).
    ///
    /// (The 2-D path's trap proofs are not used here: on noisy 3-D flows nearly every
    /// trajectory still changes voxel in its last steps, hopping around its centre, so there
    /// is no box inside one voxel for a proof to find.)
    #[inline(always)]
    fn integrate_lanes(
        &self,
        src: &[u32],
        dst: &mut [[i32; 3]],
        niter: u32,
        quad: Quad,
        scratch: &mut Scratch,
    ) -> usize {
        if niter == 0 {
            for (o, &p) in dst.iter_mut().zip(src) {
                *o = self.voxel(self.start(p));
            }
            return 0;
        }
        let niter = u64::from(niter);
        let slot = |n: u64| (n % RING as u64) as usize;
        let mut g = [[0.0f32; LANES]; 3];
        let Scratch { ring, known } = scratch;
        known.clear();
        let mut joined = 0;
        let mut lanes = [Lane::IDLE; LANES];
        // Steps every lane has done.
        let mut now = 0u64;
        for (l, lane) in lanes.iter_mut().enumerate().take(src.len()) {
            *lane = self.begin(src, l, niter, now, l, &mut g, &mut ring[0]);
        }
        let mut next = LANES.min(src.len());
        let mut active = next;
        let mut anchor = [[0u32; LANES]; 3];
        let mut first = [[0u32; LANES]; 3];
        while active > 0 {
            for (l, lane) in lanes.iter().enumerate() {
                for k in 0..3 {
                    anchor[k][l] = lane.anchor[k];
                    first[k][l] = g[k][l].to_bits();
                }
            }
            // First step of the block whose position equals the anchor, and the first whose
            // position equals the one at the start of the block (BLOCK: none).
            let mut hit = [BLOCK as u32; LANES];
            let mut hit_start = [BLOCK as u32; LANES];
            for s in 0..BLOCK {
                self.step_lanes(&mut g, quad);
                for l in 0..LANES {
                    let p = [g[0][l].to_bits(), g[1][l].to_bits(), g[2][l].to_bits()];
                    let eq =
                        (p[0] == anchor[0][l]) & (p[1] == anchor[1][l]) & (p[2] == anchor[2][l]);
                    hit[l] = if eq & (hit[l] == BLOCK as u32) {
                        s as u32
                    } else {
                        hit[l]
                    };
                    let eq = (p[0] == first[0][l]) & (p[1] == first[1][l]) & (p[2] == first[2][l]);
                    hit_start[l] = if eq & (hit_start[l] == BLOCK as u32) {
                        s as u32
                    } else {
                        hit_start[l]
                    };
                }
                ring[slot(now + s as u64 + 1)] = g;
            }
            now += BLOCK as u64;
            for l in 0..LANES {
                let lane = &mut lanes[l];
                if lane.point == usize::MAX {
                    continue;
                }
                let t0 = lane.t;
                let t1 = t0 + BLOCK as u64;
                let at = |ring: &[[[f32; LANES]; 3]], t: u64| {
                    let e = &ring[slot(lane.g0 + t)];
                    [e[0][l], e[1][l], e[2][l]]
                };
                let mut done = None;
                if !lane.periodic
                    && let Some((th, period)) = cycle(t0, hit[l], hit_start[l], lane.anchor_t)
                {
                    if let Some(end) = cycle_end((th, period), niter) {
                        lane.end = end;
                        lane.periodic = true;
                    }
                    // The oldest step still in the ring.
                    let oldest = (t1 + 1).saturating_sub(RING as u64);
                    if th - period >= oldest {
                        known.add(oldest, th, period, |t| {
                            let e = at(ring, t);
                            (e.map(f32::to_bits), self.voxel(e))
                        });
                    }
                }
                if lane.end <= t1 {
                    done = Some(self.voxel(at(ring, lane.end)));
                } else if !lane.periodic && !known.is_empty() {
                    let key = [g[0][l].to_bits(), g[1][l].to_bits(), g[2][l].to_bits()];
                    done = known.final_voxel(key, niter - t1);
                    joined += usize::from(done.is_some());
                }
                if let Some(v) = done {
                    dst[lane.point] = v;
                    if next < src.len() {
                        *lane = self.begin(src, next, niter, now, l, &mut g, &mut ring[slot(now)]);
                        next += 1;
                    } else {
                        // Idle lanes keep stepping from a valid position.
                        *lane = Lane::IDLE;
                        active -= 1;
                    }
                } else {
                    lane.t = t1;
                    if !lane.periodic && take_anchor(t1, &mut lane.anchor_t, &mut lane.interval) {
                        lane.anchor = [g[0][l], g[1][l], g[2][l]].map(f32::to_bits);
                    }
                }
            }
        }
        joined
    }

    /// Starts lane `l` on point `src[i]` after `now` steps of all lanes: its position into `g`
    /// and into the ring slot of step `now`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn begin(
        &self,
        src: &[u32],
        i: usize,
        niter: u64,
        now: u64,
        l: usize,
        g: &mut [[f32; LANES]; 3],
        slot: &mut [[f32; LANES]; 3],
    ) -> Lane {
        let s = self.start(src[i]);
        for k in 0..3 {
            g[k][l] = s[k];
            slot[k][l] = s[k];
        }
        Lane::start(i, s, niter, now)
    }
}

/// `x.floor()` for `x` in `[-1, 2^31)`, without the library call that baseline x86-64 (no
/// SSE4.1 rounding instruction) makes of `floor`: truncation, one less where it rounded up.
#[inline(always)]
fn floor(x: f32) -> f32 {
    let t = x as i32 as f32;
    if t > x { t - 1.0 } else { t }
}

/// `x.floor()` for `x` in `[-1, 2^23)` in plain vector arithmetic (no saturating conversion,
/// no library call): in that range `(x + 2^23) - 2^23` is `x` rounded to an integer exactly,
/// one less where that rounded up; `-1` below zero.
#[inline(always)]
fn floor_small(x: f32) -> f32 {
    let r = (x + MANTISSA_SHIFT) - MANTISSA_SHIFT;
    let f = if r > x { r - 1.0 } else { r };
    if x < 0.0 { -1.0 } else { f }
}

/// Points integrated per rayon task.
const CHUNK: usize = 1024;

/// All 11 bits of a window row.
const ROW_BITS: u16 = (1 << WIN_SIZE) - 1;

/// A seed's region in its 11×11×11 window: one 11-bit row (x) per (z, y).
type Region = [u16; WIN_SIZE * WIN_SIZE];

/// Assigns a label to each followed voxel (Cellpose's `get_masks_torch` in 3-D). `final_pos`
/// are the final voxels `(z, y, x)` of the voxels at flat indices `points` (ascending).
fn get_masks_3d(
    final_pos: &[[i32; 3]],
    points: &[u32],
    dims: [usize; 3],
    max_size_fraction: f64,
) -> Vec<u32> {
    let [d, h, w] = dims;
    let (pd, ph, pw) = (d + 2 * RPAD, h + 2 * RPAD, w + 2 * RPAD);
    let (sy, sz) = (pw, ph * pw);
    let padded: Vec<usize> = final_pos
        .par_iter()
        .with_min_len(1 << 14)
        .map(|p| {
            let c = |v: i32, n: usize| (v as i64 + RPAD as i64).clamp(0, (n + RPAD - 1) as i64);
            (c(p[0], d) as usize) * sz + (c(p[1], h) as usize) * sy + c(p[2], w) as usize
        })
        .collect();
    let (mut hist, candidates) = seeds::histogram(&padded, pd * sz);
    // Seeds: candidates equal to the maximum of their 5×5×5 neighbourhood (bins with counts
    // lie at least RPAD from the faces, so windows stay inside).
    let mut seeds: Vec<(i32, usize)> = candidates
        .par_iter()
        .filter_map(|&i| {
            let v = hist[i];
            let is_max = (0..5).all(|dz| {
                (0..5).all(|dy| {
                    let r = i + dz * sz + dy * sy - 2 * sz - 2 * sy - 2;
                    hist[r..r + 5].iter().all(|&u| u <= v)
                })
            });
            is_max.then_some((v, i))
        })
        .collect();
    drop(candidates);
    let n = d * h * w;
    if seeds.is_empty() {
        log::warn!("no seeds found: no masks");
        return vec![0; n];
    }
    // torch.nonzero lists seeds in row-major order; Cellpose paints them in the order of
    // torch's CPU argsort of their counts, equal counts included.
    seeds.par_sort_unstable_by_key(|s| s.1);
    torch_sort::argsort(&mut seeds);
    let origin = |c: usize| c - WIN * sz - WIN * sy - WIN;
    let regions: Vec<Region> = seeds
        .par_iter()
        .map(|&(_, c)| grow(&hist, origin(c), sy, sz))
        .collect();
    for (k, (&(_, c), region)) in seeds.iter().zip(&regions).enumerate() {
        let label = -(k as i32 + 1);
        let o = origin(c);
        for (r, &bits) in region.iter().enumerate() {
            let row = o + (r / WIN_SIZE) * sz + (r % WIN_SIZE) * sy;
            let mut b = bits;
            while b != 0 {
                let x = b.trailing_zeros() as usize;
                b &= b - 1;
                hist[row + x] = label;
            }
        }
    }
    drop(regions);
    let n_seeds = seeds.len();
    drop(seeds);
    let values = seeds::point_labels(hist, padded, n_seeds, n, max_size_fraction);
    let mut labels = vec![0u32; n];
    for (&p, v) in points.iter().zip(values) {
        labels[p as usize] = v;
    }
    labels
}

/// The region a seed grows to in its window (low corner at padded bin `o`): 5 steps of 3×3×3
/// dilation, each restricted to bins holding more than [`GROW_MIN_COUNT`] voxels.
fn grow(hist: &[i32], o: usize, sy: usize, sz: usize) -> Region {
    let mut allowed: Region = [0; WIN_SIZE * WIN_SIZE];
    for (r, a) in allowed.iter_mut().enumerate() {
        let row = o + (r / WIN_SIZE) * sz + (r % WIN_SIZE) * sy;
        for x in 0..WIN_SIZE {
            if hist[row + x] > GROW_MIN_COUNT {
                *a |= 1 << x;
            }
        }
    }
    let mut region: Region = [0; WIN_SIZE * WIN_SIZE];
    region[WIN * WIN_SIZE + WIN] = 1 << WIN;
    for _ in 0..GROW_STEPS {
        let mut rows: Region = [0; WIN_SIZE * WIN_SIZE];
        for (o, &r) in rows.iter_mut().zip(&region) {
            *o = (r | (r << 1) | (r >> 1)) & ROW_BITS;
        }
        let mut cols: Region = [0; WIN_SIZE * WIN_SIZE];
        for z in 0..WIN_SIZE {
            for y in 0..WIN_SIZE {
                let mut v = rows[z * WIN_SIZE + y];
                if y > 0 {
                    v |= rows[z * WIN_SIZE + y - 1];
                }
                if y + 1 < WIN_SIZE {
                    v |= rows[z * WIN_SIZE + y + 1];
                }
                cols[z * WIN_SIZE + y] = v;
            }
        }
        for z in 0..WIN_SIZE {
            for y in 0..WIN_SIZE {
                let mut v = cols[z * WIN_SIZE + y];
                if z > 0 {
                    v |= cols[(z - 1) * WIN_SIZE + y];
                }
                if z + 1 < WIN_SIZE {
                    v |= cols[(z + 1) * WIN_SIZE + y];
                }
                region[z * WIN_SIZE + y] = v & allowed[z * WIN_SIZE + y];
            }
        }
    }
    region
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two blobs of flows pointing at their centres: two masks, each the blob's voxels.
    #[test]
    fn two_sinks_make_two_masks() {
        let (d, h, w) = (12usize, 20usize, 30usize);
        let n = d * h * w;
        let (mut dz, mut dy, mut dx, mut cp) =
            (vec![0f32; n], vec![0f32; n], vec![0f32; n], vec![-5f32; n]);
        let centres = [(6.0f32, 10.0f32, 8.0f32), (6.0, 10.0, 22.0)];
        for z in 0..d {
            for y in 0..h {
                for x in 0..w {
                    let i = (z * h + y) * w + x;
                    for &(cz, cy, cx) in &centres {
                        let v = [cz - z as f32, cy - y as f32, cx - x as f32];
                        let r = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
                        if r < 5.0 {
                            let s = if r > 0.0 { 5.0 / r } else { 0.0 };
                            dz[i] = v[0] * s;
                            dy[i] = v[1] * s;
                            dx[i] = v[2] * s;
                            cp[i] = 3.0;
                        }
                    }
                }
            }
        }
        let flows = Flows3Ref {
            dz: &dz,
            dy: &dy,
            dx: &dx,
            cellprob: &cp,
            planes: d,
            height: h,
            width: w,
        };
        let labels = compute_masks_3d(&flows, &MaskParams::default()).unwrap();
        let max = *labels.iter().max().unwrap();
        assert_eq!(max, 2);
        for (i, &c) in cp.iter().enumerate() {
            assert_eq!(labels[i] != 0, c > 0.0, "voxel {i}");
        }
        let at = |z: usize, y: usize, x: usize| labels[(z * h + y) * w + x];
        assert_ne!(at(6, 10, 8), at(6, 10, 22));
    }

    /// The lane path (vectorized, with Brent's cycle detection) gives every point the final
    /// voxel of the plain scalar loop of `niter` steps, on a swirling field with sinks, saddles,
    /// border-crossing flows and masked-out voxels.
    #[test]
    fn lanes_equal_the_plain_loop() {
        let (d, h, w) = (9usize, 17usize, 23usize);
        let n = d * h * w;
        let (mut dz, mut dy, mut dx) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        let mut cp = vec![0f32; n];
        for z in 0..d {
            for y in 0..h {
                for x in 0..w {
                    let i = (z * h + y) * w + x;
                    let (fz, fy, fx) = (4.0 - z as f32, 8.0 - y as f32, 11.0 - x as f32);
                    let r = (fz * fz + fy * fy + fx * fx).sqrt() + 1.0;
                    dz[i] = 9.0 * fz / r + ((x * 7 + y * 3) % 5) as f32 * 0.3 - 0.6;
                    dy[i] = 9.0 * (fy + 0.7 * fx) / r + ((x + z * 5) % 7) as f32 * 0.2 - 0.6;
                    dx[i] = 9.0 * (fx - 0.7 * fy) / r + ((y * 11 + z) % 3) as f32 * 0.4 - 0.4;
                    cp[i] = if (x + 2 * y + 3 * z) % 13 == 0 {
                        -1.0
                    } else {
                        1.0
                    };
                }
            }
        }
        lanes_and_plain_loop([&dz, &dy, &dx, &cp], [d, h, w], &[0, 1, 7, 200, 333]);
    }

    /// Follows every voxel with `cellprob > 0` by the lanes and by plain stepping for each
    /// `niter`, asserting the same final voxels (also against [`Field3::integrate`]); returns
    /// how many points the lanes finished on known paths, per `niter`.
    fn lanes_and_plain_loop(f: [&[f32]; 4], [d, h, w]: [usize; 3], niters: &[u32]) -> Vec<usize> {
        let flows = Flows3Ref {
            dz: f[0],
            dy: f[1],
            dx: f[2],
            cellprob: f[3],
            planes: d,
            height: h,
            width: w,
        };
        let mask: Vec<bool> = f[3].iter().map(|&c| c > 0.0).collect();
        let field = Field3::new(&flows, &mask);
        assert!(field.lanes_supported());
        let points: Vec<u32> = (0..mask.len() as u32)
            .filter(|&p| mask[p as usize])
            .collect();
        let mut joined = Vec::new();
        for &niter in niters {
            let mut lanes = vec![[0i32; 3]; points.len()];
            joined.push(field.integrate_lanes(
                &points,
                &mut lanes,
                niter,
                Quad::new().unwrap(),
                &mut Scratch::new(),
            ));
            for (k, &p) in points.iter().enumerate() {
                let mut g = field.start(p);
                for _ in 0..niter {
                    g = field.step(g);
                }
                assert_eq!(lanes[k], field.voxel(g), "point {p}, niter {niter}");
                assert_eq!(
                    field.voxel(field.integrate(field.start(p), niter)),
                    lanes[k]
                );
            }
        }
        joined
    }

    /// Nuclei-like flows (10 × unit vectors to four ball centres, with hashed noise), where
    /// most trajectories join a path an earlier one took: the lanes, known paths included,
    /// give the same final voxels as plain stepping, also when paths outlast the ring.
    #[test]
    fn known_paths_equal_the_plain_loop() {
        let (d, h, w) = (14usize, 40usize, 44usize);
        let n = d * h * w;
        let centres = [
            [4.0f32, 10.0, 11.0],
            [9.0, 12.0, 30.0],
            [6.0, 29.0, 14.0],
            [8.5, 28.0, 31.5],
        ];
        let (mut dz, mut dy, mut dx) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        let mut cp = vec![-1f32; n];
        let noise = |i: usize, k: u64| {
            let h = (i as u64 * 3 + k).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            ((h >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 1.2
        };
        for z in 0..d {
            for y in 0..h {
                for x in 0..w {
                    let i = (z * h + y) * w + x;
                    let p = [z as f32 * 1.5, y as f32, x as f32];
                    let c = centres
                        .iter()
                        .min_by(|a, b| {
                            let da: f32 = (0..3)
                                .map(|k| (a[k] * [1.5, 1.0, 1.0][k] - p[k]).powi(2))
                                .sum();
                            let db: f32 = (0..3)
                                .map(|k| (b[k] * [1.5, 1.0, 1.0][k] - p[k]).powi(2))
                                .sum();
                            da.total_cmp(&db)
                        })
                        .unwrap();
                    let v = [c[0] - z as f32, c[1] - y as f32, c[2] - x as f32];
                    let r = (v[0] * v[0] * 2.25 + v[1] * v[1] + v[2] * v[2]).sqrt();
                    if r < 9.0 {
                        cp[i] = 1.0;
                        let norm = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt() + 1e-3;
                        dz[i] = 10.0 * v[0] / norm + noise(i, 0);
                        dy[i] = 10.0 * v[1] / norm + noise(i, 1);
                        dx[i] = 10.0 * v[2] / norm + noise(i, 2);
                    }
                }
            }
        }
        let n_in = cp.iter().filter(|&&c| c > 0.0).count();
        for joined in lanes_and_plain_loop([&dz, &dy, &dx, &cp], [d, h, w], &[200, 300]) {
            assert!(joined * 20 > n_in, "{joined} of {n_in} joined");
        }
    }

    /// `floor_small` equals `floor` on its whole range: both ends, around every integer, just
    /// below zero and over a sweep of fractions (every source index the lanes compute is in it).
    #[test]
    fn floor_small_is_floor() {
        let mut xs = vec![-1.0f32, -0.5, -1e-30, -0.0, 0.0, 1e-30, 8_388_607.5];
        for n in [
            0.0f32,
            1.0,
            2.0,
            3.0,
            255.0,
            256.0,
            4095.0,
            1_048_575.0,
            8_388_606.0,
        ] {
            xs.extend([n, n.next_up(), n.next_down(), n + 0.5, n - 0.5, n + 0.25]);
        }
        let mut v = -1.0f32;
        while v < 5000.0 {
            xs.push(v);
            v = v * 1.0001 + 0.0137;
        }
        for x in xs.into_iter().filter(|x| (-1.0..8_388_608.0).contains(x)) {
            assert_eq!(floor_small(x), x.floor(), "{x}");
            assert_eq!(floor(x), x.floor(), "{x}");
        }
    }

    #[test]
    fn single_plane_and_bad_lengths_are_errors() {
        let v = vec![0f32; 4 * 10 * 10];
        assert!(Flows3Ref::stacked(&v, 1, 10, 10).is_err());
        assert!(Flows3Ref::stacked(&v[1..], 2, 5, 10).is_err());
        let f = Flows3Ref::stacked(&v[..4 * 2 * 5 * 10], 2, 5, 10).unwrap();
        let mut nan = v[..4 * 2 * 5 * 10].to_vec();
        nan[3] = f32::NAN;
        let g = Flows3Ref::stacked(&nan, 2, 5, 10).unwrap();
        assert!(compute_masks_3d(&f, &MaskParams::default()).is_ok());
        assert!(compute_masks_3d(&g, &MaskParams::default()).is_err());
    }

    /// The bit-set growth equals a direct 3×3×3 dilation on a window of random counts.
    #[test]
    fn growth_matches_a_direct_dilation() {
        let (sy, sz) = (15usize, 15 * 15);
        let mut seed = 12345u64;
        let hist: Vec<i32> = (0..15 * sz)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 33) % 6) as i32
            })
            .collect();
        let o = 2 * sz + 2 * sy + 2;
        let got = grow(&hist, o, sy, sz);
        let idx = |z: usize, y: usize, x: usize| o + z * sz + y * sy + x;
        let mut m = vec![false; WIN_SIZE * WIN_SIZE * WIN_SIZE];
        m[(WIN * WIN_SIZE + WIN) * WIN_SIZE + WIN] = true;
        for _ in 0..GROW_STEPS {
            let prev = m.clone();
            for z in 0..WIN_SIZE {
                for y in 0..WIN_SIZE {
                    for x in 0..WIN_SIZE {
                        let mut any = false;
                        for a in z.saturating_sub(1)..=(z + 1).min(WIN_SIZE - 1) {
                            for b in y.saturating_sub(1)..=(y + 1).min(WIN_SIZE - 1) {
                                for c in x.saturating_sub(1)..=(x + 1).min(WIN_SIZE - 1) {
                                    any |= prev[(a * WIN_SIZE + b) * WIN_SIZE + c];
                                }
                            }
                        }
                        m[(z * WIN_SIZE + y) * WIN_SIZE + x] =
                            any && hist[idx(z, y, x)] > GROW_MIN_COUNT;
                    }
                }
            }
        }
        for z in 0..WIN_SIZE {
            for y in 0..WIN_SIZE {
                for x in 0..WIN_SIZE {
                    assert_eq!(
                        got[z * WIN_SIZE + y] >> x & 1 == 1,
                        m[(z * WIN_SIZE + y) * WIN_SIZE + x]
                    );
                }
            }
        }
    }
}
