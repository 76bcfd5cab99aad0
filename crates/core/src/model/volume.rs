//! Z-stacks segmented into 3-D objects as Cellpose 4.2.1.1's `CellposeModel.eval` does with
//! `do_3D=True` ([`VolumeMode::Flows3d`]) or `stitch_threshold > 0` ([`VolumeMode::Stitch`]):
//! the stack normalized as one volume (`norm3D`), the 2-D network run plane by plane (on the YX,
//! ZY and ZX planes of the anisotropy-rescaled volume in 3-D mode, `run_3D`), then 3-D flows →
//! labels, or per-plane labels linked across z by IoU.

use std::borrow::Cow;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::flows::{self, Flows3Ref, FlowsRef};
use crate::image::ImageView;
use crate::measure::Calibration;
use crate::qc::NetworkQuality;

use super::tiling::Grid;
use super::{Model, Progress, SegmentParams, Timings, preprocess, select_channels};

/// How a z-stack becomes 3-D objects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VolumeMode {
    /// Cellpose's `do_3D`: the 2-D network on the YX, ZY and ZX planes of the volume (z first
    /// rescaled by `anisotropy`, e.g. 2.0 when planes are twice as far apart as pixels), the
    /// flows summed into 3-D flows, then 3-D flows → labels.
    Flows3d {
        /// z spacing over xy pixel size; 1 for isotropic stacks.
        anisotropy: f64,
    },
    /// Cellpose's stitching mode: 2-D labels per plane (holes filled, no size filter), linked to the previous
    /// plane's masks when their IoU reaches `threshold`, then holes filled and small masks
    /// removed in 3-D.
    Stitch {
        /// IoU above which masks of consecutive planes are one object (0.25 is usual).
        threshold: f64,
    },
}

impl VolumeMode {
    /// The mode of the host APIs' numeric form: 0 = [`VolumeMode::Flows3d`] with `value` the
    /// anisotropy (0 = 1), 1 = [`VolumeMode::Stitch`] with `value` the IoU threshold; checked.
    pub fn from_code(code: i32, value: f64) -> Result<VolumeMode> {
        let mode = match code {
            0 => VolumeMode::Flows3d {
                anisotropy: if value == 0.0 { 1.0 } else { value },
            },
            1 => VolumeMode::Stitch { threshold: value },
            other => {
                return Err(Error::invalid(format!(
                    "unknown volume mode {other} (0 = do_3D, 1 = stitching)"
                )));
            }
        };
        mode.validate()?;
        Ok(mode)
    }

    /// Number of `planes × height × width` arrays in [`VolumeSegmentation::flows`]: 4 in 3-D
    /// mode (dZ, dY, dX, cellprob), 3 when stitching (dY, dX, cellprob per plane).
    pub fn flow_arrays(&self) -> usize {
        match self {
            VolumeMode::Flows3d { .. } => 4,
            VolumeMode::Stitch { .. } => 3,
        }
    }

    /// Checks the mode's parameter.
    pub fn validate(&self) -> Result<()> {
        match *self {
            VolumeMode::Flows3d { anisotropy } if !(anisotropy.is_finite() && anisotropy > 0.0) => {
                Err(Error::invalid(format!(
                    "anisotropy {anisotropy}: expected z spacing / xy pixel size, a number above 0 (1 for isotropic stacks)"
                )))
            }
            VolumeMode::Stitch { threshold } if !(threshold.is_finite() && threshold > 0.0) => {
                Err(Error::invalid(format!(
                    "stitch threshold {threshold}: expected an IoU above 0 (Cellpose stitches planes only then; 0.25 is usual)"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// The anisotropy of 3-D mode for a stack (z spacing over pixel width): `given` (e.g.
/// `--anisotropy`), else the stack's z spacing over its pixel width, else 1 (planes as far apart
/// as pixels). Errors on a value that is not a positive number, and when `given` and the
/// stack's metadata are both there and differ by more than 1%.
pub fn anisotropy_for(given: Option<f64>, calibration: &Calibration) -> Result<f64> {
    let from_file = calibration
        .z_spacing
        .map(|z| z / calibration.pixel_width)
        .filter(|a| a.is_finite() && *a > 0.0);
    match (given, from_file) {
        (Some(a), _) if !(a.is_finite() && a > 0.0) => Err(Error::invalid(format!(
            "anisotropy {a}: expected z spacing / xy pixel size, a number above 0 (1 for isotropic stacks)"
        ))),
        (Some(a), Some(f)) if (a - f).abs() > 0.01 * f => Err(Error::invalid(format!(
            "anisotropy {a} disagrees with the image's z spacing: planes {} {} apart, pixels {} {} wide (anisotropy {f:.4}); leave the anisotropy out to use the file's, or correct the file's calibration",
            calibration.z_spacing.unwrap_or_default(),
            calibration.unit,
            calibration.pixel_width,
            calibration.unit
        ))),
        (Some(a), _) => Ok(a),
        (None, Some(f)) => Ok(f),
        (None, None) => Ok(1.0),
    }
}

/// Checks a z-stack's size for [`Model::segment_volume`] (at least 2 planes, then as
/// [`flows::check_volume_size`]); returns its voxel count.
pub fn check_stack_size(planes: usize, height: usize, width: usize) -> Result<usize> {
    if planes < 2 {
        return Err(Error::invalid(format!(
            "the stack has {planes} plane(s): 3-D segmentation needs a z-stack of at least 2 planes (segment a single plane as a 2-D image)"
        )));
    }
    flows::check_volume_size(planes, height, width)
}

/// The result of [`Model::segment_volume`].
#[derive(Debug, Clone)]
pub struct VolumeSegmentation {
    /// 3-D labels, `planes × height × width` row-major, 0 = background, objects 1..=count.
    pub labels: Vec<u32>,
    /// Number of z planes.
    pub planes: usize,
    /// Plane height in pixels.
    pub height: usize,
    /// Plane width in pixels.
    pub width: usize,
    /// Number of objects.
    pub count: u32,
    /// The network's output when [`SegmentParams::keep_flows`]: in 3-D mode `4 × planes ×
    /// height × width` = dZ, dY, dX, cellprob (Cellpose's `dP` then `cellprob`); in stitching mode
    /// `planes × 3 × height × width` = each plane's dY, dX, cellprob.
    pub flows: Option<Vec<f32>>,
    /// Flow-following iterations used.
    pub niter: u32,
    /// How sure the network was of what it found, over the whole volume.
    pub quality: NetworkQuality,
    /// Time spent per stage.
    pub timings: Timings,
}

/// What a mode's stages made: the labels, the flows if kept, the network's quality, and the
/// seconds spent on masks (within the network stage's time in stitching mode).
struct Stage {
    labels: Vec<u32>,
    flows: Option<Vec<f32>>,
    quality: NetworkQuality,
    masks_seconds: f64,
}

/// Which planes of a `d × h × w` volume the network sees, as Cellpose's `run_3D` takes them.
#[derive(Clone, Copy)]
enum Orientation {
    /// z planes of `h × w`: flows dY, dX.
    Yx,
    /// y planes of `d × w`: flows dZ, dX.
    Zy,
    /// x planes of `d × h`: flows dZ, dY.
    Zx,
}

impl Orientation {
    /// Number of planes, plane rows and columns.
    fn shape(self, [d, h, w]: [usize; 3]) -> (usize, usize, usize) {
        match self {
            Orientation::Yx => (d, h, w),
            Orientation::Zy => (h, d, w),
            Orientation::Zx => (w, d, h),
        }
    }

    /// The volume index (z, y, x) of row `r`, column `c` of plane `i`.
    fn voxel(self, i: usize, r: usize, c: usize) -> (usize, usize, usize) {
        match self {
            Orientation::Yx => (i, r, c),
            Orientation::Zy => (r, i, c),
            Orientation::Zx => (r, c, i),
        }
    }

    /// The 3-D flow components (0 = dZ, 1 = dY, 2 = dX) of the plane's two flows.
    fn components(self) -> [usize; 2] {
        match self {
            Orientation::Yx => [1, 2],
            Orientation::Zy => [0, 2],
            Orientation::Zx => [0, 1],
        }
    }
}

impl Model {
    /// Segments a z-stack (`planes`, all of one size and channel count, z order) into 3-D
    /// objects as Cellpose's `eval(do_3D=True)` or `eval(stitch_threshold=T)` on the stack:
    /// labels equal Cellpose 4.2.1.1's around the same network. `params` are those of
    /// [`Model::segment`] (the size filter counts voxels); `progress` is called after each
    /// network batch with the tiles of all planes (three orientations in 3-D mode) and
    /// cancels on `false`.
    pub fn segment_volume(
        &self,
        planes: &[ImageView<'_>],
        params: &SegmentParams,
        mode: VolumeMode,
        progress: Option<&dyn Fn(Progress) -> bool>,
    ) -> Result<VolumeSegmentation> {
        let t0 = Instant::now();
        mode.validate()?;
        params.mask.validate()?;
        let params = &*match mode {
            VolumeMode::Flows3d { .. } => super::precision::do3d_params(params),
            VolumeMode::Stitch { .. } => std::borrow::Cow::Borrowed(params),
        };
        let d = planes.len();
        let Some(first) = planes.first() else {
            return Err(Error::invalid("the stack has no planes"));
        };
        let (h, w) = (first.height, first.width);
        check_stack_size(d, h, w)?;
        for (z, p) in planes.iter().enumerate() {
            if p.height != h || p.width != w || p.channels != first.channels {
                return Err(Error::invalid(format!(
                    "plane {z} is {}×{} with {} channel(s), plane 0 {h}×{w} with {}: a stack's planes must agree",
                    p.height, p.width, p.channels, first.channels
                )));
            }
            if p.has_non_finite() {
                return Err(Error::NonFinite(format!(
                    "plane {z} holds NaN or infinite values"
                )));
            }
        }
        let c_in = self.manifest.input.channels;
        let norm = &self.manifest.normalization;
        // Channel-major volume `c_in × d × h × w`, each channel normalized over the whole stack.
        let n = d * h * w;
        let mut vol = vec![0.0f32; c_in * n];
        for (z, p) in planes.iter().enumerate() {
            for (c, plane) in select_channels(p, &params.channels, c_in)?
                .into_iter()
                .enumerate()
            {
                vol[c * n + z * h * w..c * n + (z + 1) * h * w].copy_from_slice(&plane);
            }
        }
        for ch in vol.chunks_mut(n) {
            if !preprocess::normalize99_volume(ch, d, h, w, norm.low, norm.high) {
                // Cellpose 4 zeroes channels it could not normalize.
                ch.fill(0.0);
            }
        }
        let rescale = self.rescale(params)?;
        let mut mask = params.mask;
        if mask.niter == 0 {
            mask.niter = (200.0 / rescale) as u32;
        }
        let t1 = Instant::now();
        let done = match mode {
            VolumeMode::Stitch { threshold } => {
                self.stitched(vol, [d, h, w], params, mask, threshold, rescale, progress)?
            }
            VolumeMode::Flows3d { anisotropy } => {
                let flows = self.flows_3d(vol, [d, h, w], params, anisotropy, rescale, progress)?;
                let t = Instant::now();
                let [dz, dy, dx, cellprob] = [0, 1, 2, 3].map(|k| &flows[k * n..(k + 1) * n]);
                let fl = Flows3Ref {
                    dz,
                    dy,
                    dx,
                    cellprob,
                    planes: d,
                    height: h,
                    width: w,
                };
                // `resize_and_compute_masks` fills holes whatever `min_size`.
                let mut labels = flows::compute_masks_3d_unfilled(&fl, &mask)?;
                flows::fill_holes_and_remove_small_masks_3d(&mut labels, d, h, w, mask.min_size)?;
                let quality = NetworkQuality::new(&labels, cellprob, None);
                Stage {
                    labels,
                    flows: params.keep_flows.then_some(flows),
                    quality,
                    masks_seconds: t.elapsed().as_secs_f64(),
                }
            }
        };
        let t2 = Instant::now();
        let network = (t2 - t1).as_secs_f64() - done.masks_seconds;
        Ok(VolumeSegmentation {
            count: done.labels.iter().copied().max().unwrap_or(0),
            labels: done.labels,
            planes: d,
            height: h,
            width: w,
            flows: done.flows,
            niter: mask.niter,
            quality: done.quality,
            timings: Timings {
                preprocess: (t1 - t0).as_secs_f64(),
                network,
                masks: done.masks_seconds,
            },
        })
    }

    /// Stitching mode: every plane through the network (planes batched as Cellpose's
    /// `run_net`), per-plane labels without size filter, then `stitch_planes`.
    #[allow(clippy::too_many_arguments)]
    fn stitched(
        &self,
        vol: Vec<f32>,
        [d, h, w]: [usize; 3],
        params: &SegmentParams,
        mask: flows::MaskParams,
        threshold: f64,
        rescale: f64,
        progress: Option<&dyn Fn(Progress) -> bool>,
    ) -> Result<Stage> {
        let c_in = self.manifest.input.channels;
        let (n, plane) = (d * h * w, h * w);
        let (lh, lw) = self.network_size(params, rescale, h, w)?;
        let grid = Grid::new(self, lh, lw, params)?;
        let source = |z: usize| -> Result<Cow<'_, [f32]>> {
            let mut p = Vec::with_capacity(c_in * plane);
            for c in 0..c_in {
                p.extend_from_slice(&vol[c * n + z * plane..c * n + (z + 1) * plane]);
            }
            if rescale != 1.0 {
                p = preprocess::resize_linear(&p, c_in, h, w, lh, lw)?;
            }
            Ok(Cow::Owned(p))
        };
        // Cellpose turns the size filter off for the planes and applies it after stitching.
        let mut plane_mask = mask;
        plane_mask.min_size = -1;
        let mut labels = vec![0u32; n];
        let mut cellprob = vec![0.0f32; n];
        let mut kept = params.keep_flows.then(|| vec![0.0f32; 3 * n]);
        let mut qc = flows::FlowQcStats::default();
        let mut t_masks = 0.0;
        let mut sink = |z: usize, mut yf: Vec<f32>| -> Result<()> {
            if rescale != 1.0 {
                yf = preprocess::resize_linear(&yf, 3, lh, lw, h, w)?;
            }
            let t = Instant::now();
            let fl = FlowsRef {
                dy: &yf[..plane],
                dx: &yf[plane..2 * plane],
                cellprob: &yf[2 * plane..3 * plane],
                height: h,
                width: w,
            };
            let (mut l, q) = flows::compute_masks_unfilled_qc(&fl, &plane_mask)?;
            // `resize_and_compute_masks(min_size=-1)` fills each plane's holes.
            flows::fill_holes_and_remove_small_masks(&mut l, h, w, -1)?;
            labels[z * plane..(z + 1) * plane].copy_from_slice(&l);
            if let Some(q) = q {
                qc.merge(q);
            }
            cellprob[z * plane..(z + 1) * plane].copy_from_slice(&yf[2 * plane..3 * plane]);
            if let Some(k) = kept.as_mut() {
                k[z * 3 * plane..(z + 1) * 3 * plane].copy_from_slice(&yf[..3 * plane]);
            }
            t_masks += t.elapsed().as_secs_f64();
            Ok(())
        };
        let total = d * grid.tiles();
        self.run_tiled_planes(&grid, d, &source, &mut sink, params, (0, total), progress)?;
        drop(vol);
        let t = Instant::now();
        flows::stitch_planes(&mut labels, d, h, w, threshold, mask.min_size)?;
        let quality = NetworkQuality::new(&labels, &cellprob, Some(qc));
        Ok(Stage {
            labels,
            flows: kept,
            quality,
            masks_seconds: t_masks + t.elapsed().as_secs_f64(),
        })
    }

    /// 3-D mode's network stage (`_run_net(do_3D=True)`): the volume resized to
    /// `(int(d · anisotropy · rescale), int(h · rescale), int(w · rescale))`, the network on
    /// its YX, ZY and ZX planes with the flows summed as `run_3D` sums them, resized back.
    /// Returns `4 × d × h × w`: dZ, dY, dX, cellprob.
    fn flows_3d(
        &self,
        vol: Vec<f32>,
        [d, h, w]: [usize; 3],
        params: &SegmentParams,
        anisotropy: f64,
        rescale: f64,
        progress: Option<&dyn Fn(Progress) -> bool>,
    ) -> Result<Vec<f32>> {
        let c_in = self.manifest.input.channels;
        let mut vol = vol;
        let (mut nd, mut nh, mut nw) = (d, h, w);
        if rescale != 1.0 || anisotropy != 1.0 {
            nd = (d as f64 * anisotropy * rescale) as usize;
            nh = (h as f64 * rescale) as usize;
            nw = (w as f64 * rescale) as usize;
            if nd < 2 || nh < 2 || nw < 2 {
                return Err(Error::invalid(format!(
                    "anisotropy {anisotropy} and diameter {:?} resize the {d}×{h}×{w} stack to {nd}×{nh}×{nw}: every side needs at least 2 voxels",
                    params.diameter.or(self.manifest.default_diameter)
                )));
            }
            flows::check_volume_size(nd, nh, nw)?;
            self.check_volume_memory([nd, nh, nw], c_in)?;
            vol = preprocess::resize_volume(vol, c_in, d, h, w, nd, nh, nw)?;
        } else {
            self.check_volume_memory([d, h, w], c_in)?;
        }
        let dims = [nd, nh, nw];
        let m = nd * nh * nw;
        let orientations = [Orientation::Yx, Orientation::Zy, Orientation::Zx];
        let grids: Vec<Grid> = orientations
            .iter()
            .map(|o| {
                let (_, r, c) = o.shape(dims);
                Grid::new(self, r, c, params)
            })
            .collect::<Result<_>>()?;
        let total: usize = orientations
            .iter()
            .zip(&grids)
            .map(|(o, g)| o.shape(dims).0 * g.tiles())
            .sum();
        let mut yf = vec![0.0f32; 4 * m];
        let mut done = 0;
        for (&o, grid) in orientations.iter().zip(&grids) {
            let (count, rows, cols) = o.shape(dims);
            let pl = rows * cols;
            let source = |i: usize| -> Result<Cow<'_, [f32]>> {
                if let Orientation::Yx = o
                    && c_in == 1
                {
                    return Ok(Cow::Borrowed(&vol[i * pl..(i + 1) * pl]));
                }
                let mut p = Vec::with_capacity(c_in * pl);
                for c in 0..c_in {
                    let ch = &vol[c * m..(c + 1) * m];
                    for r in 0..rows {
                        for q in 0..cols {
                            let (z, y, x) = o.voxel(i, r, q);
                            p.push(ch[(z * nh + y) * nw + x]);
                        }
                    }
                }
                Ok(Cow::Owned(p))
            };
            let [a, b] = o.components();
            let mut sink = |i: usize, out: Vec<f32>| -> Result<()> {
                for (k, target) in [a, b, 3].into_iter().enumerate() {
                    let src = &out[k * pl..(k + 1) * pl];
                    let dst = &mut yf[target * m..(target + 1) * m];
                    for r in 0..rows {
                        for q in 0..cols {
                            let (z, y, x) = o.voxel(i, r, q);
                            dst[(z * nh + y) * nw + x] += src[r * cols + q];
                        }
                    }
                }
                Ok(())
            };
            self.run_tiled_planes(
                grid,
                count,
                &source,
                &mut sink,
                params,
                (done, total),
                progress,
            )?;
            done += count * grid.tiles();
        }
        drop(vol);
        if rescale != 1.0 || nd != d {
            yf = preprocess::resize_volume(yf, 4, nd, nh, nw, d, h, w)?;
        }
        Ok(yf)
    }

    /// Refuses a 3-D network stage whose buffers (the `c_in`-channel volume, the four summed
    /// outputs, one orientation's planes in flight) exceed the memory available.
    fn check_volume_memory(&self, [d, h, w]: [usize; 3], c_in: usize) -> Result<()> {
        let n = (d * h * w) as u64;
        let need = 4 * n * (c_in as u64 + 4) + 4 * n * 2;
        if let Some(avail) = crate::io::limits::available_memory()
            && need > avail
        {
            return Err(Error::TooLarge(format!(
                "3-D segmentation of a {d}×{h}×{w} volume (after rescaling) needs about {} of memory, more than the {} available: crop the stack, use a larger diameter or stitching mode",
                crate::io::limits::bytes_text(need),
                crate::io::limits::bytes_text(avail)
            )));
        }
        Ok(())
    }
}
