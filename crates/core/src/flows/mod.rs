//! Flows → instance labels, exactly as Cellpose 4 (`cellpose==4.2.1.1`, CPU) computes them, and
//! labels → flows (Cellpose's `masks_to_flows`).
//!
//! The pipeline ([`compute_masks`]) runs these stages, each reproducing Cellpose bit for bit:
//! 1. pixels with `cellprob > cellprob_threshold` (compared in float32) are followed along
//!    `dP / 5` for `niter` Euler steps of torch's bilinear `grid_sample` ([`interp`]);
//! 2. a histogram of final positions gives seeds (5×5 maxima over 10 pixels) that grow into
//!    masks; masks over `max_size_fraction` of the image are dropped ([`seeds`]);
//! 3. flow quality control removes masks whose flows, recomputed by diffusion, differ from the
//!    network's by more than `flow_threshold` ([`quality`], [`diffusion`]);
//! 4. holes are filled and masks under `min_size` pixels removed ([`labels`]).
//!
//! Labels are numbered 1..n as Cellpose numbers them. Work is parallel (rayon) wherever the
//! reference's result does not depend on order.
//!
//! In 3-D, [`compute_masks_3d`] runs the same stages on `(dZ, dY, dX)` flows as Cellpose's
//! `do_3D` (trilinear sampling, 5×5×5 seeds, 11×11×11 growth, no flow quality control, 3-D hole
//! filling), and [`stitch_planes`] links 2-D labels across planes as its stitching mode.

mod diffusion;
mod diffusion3;
mod interp;
mod labels;
mod paths;
mod quality;
pub(crate) use quality::FlowQcStats;
mod seeds;
mod stitch;
mod torch_sort;
mod volume;
pub use volume::{Flows3Ref, check_volume_size, compute_masks_3d, compute_masks_3d_unfilled};

use ndarray::{Array2, Array3, ArrayView2, ArrayView3};
use rayon::prelude::*;

use crate::error::{Error, Result};

/// Largest supported image side: final positions are 32-bit signed integers, as in Cellpose.
pub const MAX_SIDE: usize = (i32::MAX as usize) / 2;
/// Largest supported pixel count: labels and pixel indices are 32-bit.
pub const MAX_PIXELS: usize = u32::MAX as usize;

/// Parameters of the flows → labels conversion, with Cellpose's names and defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskParams {
    /// Pixels with cell-probability logit strictly above this are followed (default 0.0).
    pub cellprob_threshold: f32,
    /// Masks whose flow error exceeds this are removed; 0 or less turns the check off
    /// (default 0.4).
    pub flow_threshold: f64,
    /// Number of Euler integration steps (default 200).
    pub niter: u32,
    /// Masks with fewer pixels are removed after hole filling; 0 or less turns both removal and
    /// hole filling off, as in Cellpose's `compute_masks` (default 15).
    pub min_size: i64,
    /// Masks larger than this fraction of the image are removed (default 0.4).
    pub max_size_fraction: f64,
}

impl Default for MaskParams {
    fn default() -> Self {
        MaskParams {
            cellprob_threshold: 0.0,
            flow_threshold: 0.4,
            niter: 200,
            min_size: 15,
            max_size_fraction: 0.4,
        }
    }
}

impl MaskParams {
    /// Checks that every parameter is usable (finite thresholds and fraction).
    pub fn validate(&self) -> Result<()> {
        if !self.cellprob_threshold.is_finite() {
            return Err(Error::invalid(format!(
                "cellprob_threshold must be finite, got {}",
                self.cellprob_threshold
            )));
        }
        if !self.flow_threshold.is_finite() {
            return Err(Error::invalid(format!(
                "flow_threshold must be finite, got {}",
                self.flow_threshold
            )));
        }
        if !self.max_size_fraction.is_finite() {
            return Err(Error::invalid(format!(
                "max_size_fraction must be finite, got {}",
                self.max_size_fraction
            )));
        }
        Ok(())
    }
}

/// Borrowed network output for one 2-D image in Cellpose's layout, each plane row-major
/// `height * width`: the flows `dy` (`dP[0]`), `dx` (`dP[1]`) and the cell-probability logits.
#[derive(Debug, Clone, Copy)]
pub struct FlowsRef<'a> {
    /// Vertical flow, `dP[0]`.
    pub dy: &'a [f32],
    /// Horizontal flow, `dP[1]`.
    pub dx: &'a [f32],
    /// Cell-probability logits.
    pub cellprob: &'a [f32],
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
}

impl<'a> FlowsRef<'a> {
    /// The three planes stacked in one buffer, `dY, dX, cellprob` (`3 * height * width` floats,
    /// the layout segmentation hands to hosts); errors when the length differs.
    pub fn stacked(data: &'a [f32], height: usize, width: usize) -> Result<Self> {
        let n = height.saturating_mul(width);
        if n.checked_mul(3) != Some(data.len()) {
            return Err(Error::shape(format!(
                "flows hold {} values, a {height}×{width} image needs 3 × {height} × {width}",
                data.len()
            )));
        }
        let (dy, rest) = data.split_at(n);
        let (dx, cellprob) = rest.split_at(n);
        Ok(FlowsRef {
            dy,
            dx,
            cellprob,
            height,
            width,
        })
    }
}

/// Checks an image size for the flows pipeline and returns its pixel count.
pub fn check_size(height: usize, width: usize) -> Result<usize> {
    if height < 2 || width < 2 {
        return Err(Error::invalid(format!(
            "flows must be at least 2×2 pixels, got {height}×{width}"
        )));
    }
    if height > MAX_SIDE || width > MAX_SIDE {
        return Err(Error::TooLarge(format!(
            "{height}×{width} exceeds the largest supported side ({MAX_SIDE})"
        )));
    }
    match height.checked_mul(width) {
        Some(n) if n <= MAX_PIXELS => Ok(n),
        _ => Err(Error::TooLarge(format!(
            "{height}×{width} exceeds the largest supported pixel count ({MAX_PIXELS})"
        ))),
    }
}

fn check_finite(name: &str, data: &[f32]) -> Result<()> {
    // Whole chunks first (rayon's short-circuiting `position_first` costs more per element than
    // the test itself); the position is looked up only when something is wrong.
    if data
        .par_chunks(SCAN_CHUNK)
        .all(|c| c.iter().all(|v| v.is_finite()))
    {
        return Ok(());
    }
    let i = data.iter().position(|v| !v.is_finite()).unwrap_or(0);
    Err(Error::NonFinite(format!(
        "{name} holds {} at element {i}",
        data[i]
    )))
}

/// Elements per rayon task of the whole-image scans.
const SCAN_CHUNK: usize = 1 << 16;

impl<'a> FlowsRef<'a> {
    /// Checks sizes, buffer lengths and finiteness.
    pub fn validate(&self) -> Result<()> {
        let n = check_size(self.height, self.width)?;
        for (name, plane) in [
            ("dy", self.dy),
            ("dx", self.dx),
            ("cellprob", self.cellprob),
        ] {
            if plane.len() != n {
                return Err(Error::shape(format!(
                    "{name} has {} values, expected {}×{} = {n}",
                    plane.len(),
                    self.height,
                    self.width
                )));
            }
        }
        check_finite("dP (dy)", self.dy)?;
        check_finite("dP (dx)", self.dx)?;
        check_finite("cellprob", self.cellprob)?;
        Ok(())
    }
}

/// Flows → labels without the final hole filling and size filter: Cellpose's
/// `compute_masks(..., min_size=-1)`, the first stage of its model pipeline. Returns row-major
/// labels numbered 1..n.
pub fn compute_masks_unfilled(flows: &FlowsRef<'_>, params: &MaskParams) -> Result<Vec<u32>> {
    compute_masks_unfilled_qc(flows, params).map(|(labels, _)| labels)
}

/// [`compute_masks_unfilled`] that also returns what flow QC found (`None` when it did not run:
/// `flow_threshold` 0 or no masks).
pub(crate) fn compute_masks_unfilled_qc(
    flows: &FlowsRef<'_>,
    params: &MaskParams,
) -> Result<(Vec<u32>, Option<quality::FlowQcStats>)> {
    flows.validate()?;
    params.validate()?;
    let (h, w) = (flows.height, flows.width);
    let thr = params.cellprob_threshold;
    let mask: Vec<bool> = flows
        .cellprob
        .par_iter()
        .with_min_len(SCAN_CHUNK)
        .map(|&c| c > thr)
        .collect();
    let points: Vec<(u32, u32)> = mask
        .par_chunks(w)
        .enumerate()
        .flat_map_iter(|(y, row)| {
            row.iter()
                .enumerate()
                .filter(|&(_, &m)| m)
                .map(move |(x, _)| (y as u32, x as u32))
        })
        .collect();
    if points.is_empty() {
        log::info!("no cell pixels found");
        return Ok((vec![0; h * w], None));
    }
    let final_pos = interp::follow_flows(flows.dx, flows.dy, &mask, h, w, &points, params.niter);
    drop(mask);
    let mut labels = seeds::get_masks(&final_pos, &points, h, w, params.max_size_fraction);
    drop(final_pos);
    drop(points);
    let mut stats = None;
    if params.flow_threshold > 0.0
        && labels
            .par_chunks(SCAN_CHUNK)
            .any(|c| c.iter().any(|&l| l != 0))
    {
        stats = Some(quality::remove_bad_flow_masks(
            &mut labels,
            flows.dy,
            flows.dx,
            h,
            w,
            params.flow_threshold,
        )?);
    }
    Ok((labels, stats))
}

/// Cellpose's `fill_holes_and_remove_small_masks(labels, min_size)` on a row-major label image:
/// masks under `min_size` pixels are removed, holes filled (4-connected, within each mask's
/// bounding box), small masks removed again, labels renumbered 1..n. `min_size <= 0` only fills.
pub fn fill_holes_and_remove_small_masks(
    labels: &mut [u32],
    height: usize,
    width: usize,
    min_size: i64,
) -> Result<()> {
    let n = height
        .checked_mul(width)
        .ok_or_else(|| Error::TooLarge(format!("{height}×{width} overflows")))?;
    if labels.len() != n {
        return Err(Error::shape(format!(
            "labels have {} values, expected {height}×{width} = {n}",
            labels.len()
        )));
    }
    labels::fill_holes_and_remove_small(labels, height, width, min_size);
    Ok(())
}

/// Checks that `labels` hold `planes × height × width` values; returns the plane size.
fn check_volume(labels: &[u32], planes: usize, height: usize, width: usize) -> Result<usize> {
    let plane = check_size(height, width)?;
    let n = plane
        .checked_mul(planes)
        .ok_or_else(|| Error::TooLarge(format!("{planes}×{height}×{width} overflows")))?;
    if labels.len() != n {
        return Err(Error::shape(format!(
            "labels have {} values, expected {planes}×{height}×{width} = {n}",
            labels.len()
        )));
    }
    Ok(plane)
}

/// Cellpose's stitching mode on per-plane labels (`planes` planes of `height × width`,
/// row-major, plane after plane), in place: `utils.stitch3D(masks, stitch_threshold)` links
/// each plane's masks to the previous plane's by IoU, then
/// `utils.fill_holes_and_remove_small_masks(masks, min_size)` fills holes in 3-D and removes
/// masks under `min_size` voxels (`min_size <= 0`: fills only). The planes should be
/// `compute_masks` results made with `min_size` −1, as Cellpose makes them before stitching.
/// Labels equal Cellpose 4.2.1.1's, quirks included (see the `stitch` module source).
pub fn stitch_planes(
    labels: &mut [u32],
    planes: usize,
    height: usize,
    width: usize,
    stitch_threshold: f64,
    min_size: i64,
) -> Result<()> {
    let plane = check_volume(labels, planes, height, width)?;
    if !(stitch_threshold.is_finite() && stitch_threshold > 0.0) {
        return Err(Error::invalid(format!(
            "stitch threshold {stitch_threshold}: expected an IoU above 0 (Cellpose stitches planes only then; 0.25 is usual)"
        )));
    }
    stitch::stitch3d(labels, planes, plane, stitch_threshold)?;
    stitch::fill_holes_and_remove_small_3d(labels, height, width, min_size);
    Ok(())
}

/// Cellpose's `fill_holes_and_remove_small_masks(masks, min_size)` on a 3-D volume (`planes`
/// planes of `height × width`): masks under `min_size` voxels removed, holes filled
/// (6-connected, within each mask's 3-D bounding box), small masks removed again, labels
/// renumbered 1..n by first appearance. `min_size <= 0` only fills.
pub fn fill_holes_and_remove_small_masks_3d(
    labels: &mut [u32],
    planes: usize,
    height: usize,
    width: usize,
    min_size: i64,
) -> Result<()> {
    check_volume(labels, planes, height, width)?;
    stitch::fill_holes_and_remove_small_3d(labels, height, width, min_size);
    Ok(())
}

/// Flows → instance labels: Cellpose's `dynamics.compute_masks(dP, cellprob, niter,
/// cellprob_threshold, flow_threshold, min_size, max_size_fraction)`, label for label.
pub fn compute_masks_slices(flows: &FlowsRef<'_>, params: &MaskParams) -> Result<Vec<u32>> {
    let mut labels = compute_masks_unfilled(flows, params)?;
    if params.min_size > 0 {
        labels::fill_holes_and_remove_small(
            &mut labels,
            flows.height,
            flows.width,
            params.min_size,
        );
    }
    Ok(labels)
}

/// Flows → instance labels on ndarray views: `dp` is `(2, H, W)` as (dY, dX), `cellprob` is
/// `(H, W)`. See [`compute_masks_slices`].
pub fn compute_masks(
    dp: ArrayView3<'_, f32>,
    cellprob: ArrayView2<'_, f32>,
    params: &MaskParams,
) -> Result<Array2<u32>> {
    let (c, h, w) = dp.dim();
    if c != 2 {
        return Err(Error::shape(format!(
            "dP must have shape (2, H, W) as (dY, dX), got ({c}, {h}, {w})"
        )));
    }
    if cellprob.dim() != (h, w) {
        return Err(Error::shape(format!(
            "cellprob has shape {:?}, dP has (2, {h}, {w})",
            cellprob.dim()
        )));
    }
    let dp = dp.as_standard_layout();
    let cellprob = cellprob.as_standard_layout();
    let all = dp.as_slice().ok_or_else(|| Error::invalid("dP layout"))?;
    let (dy, dx) = all.split_at(h * w);
    let flows = FlowsRef {
        dy,
        dx,
        cellprob: cellprob
            .as_slice()
            .ok_or_else(|| Error::invalid("cellprob layout"))?,
        height: h,
        width: w,
    };
    let labels = compute_masks_slices(&flows, params)?;
    Array2::from_shape_vec((h, w), labels).map_err(|e| Error::invalid(e.to_string()))
}

/// Labels → flows (Cellpose's `masks_to_flows`): unit vectors `(dY, dX)` pointing to each mask's
/// centre by heat diffusion, `2 * height * width` float64 row-major, zero outside masks.
/// Any label values are accepted; a label's value only names it.
pub fn labels_to_flows_slices(labels: &[u32], height: usize, width: usize) -> Result<Vec<f64>> {
    let n = check_size(height, width)?;
    if labels.len() != n {
        return Err(Error::shape(format!(
            "labels have {} values, expected {height}×{width} = {n}",
            labels.len()
        )));
    }
    diffusion::masks_to_flows(&dense_labels(labels), height, width)
}

/// Labels → flows in 3-D (cellpose 4.2.1.1's `masks_to_flows_gpu_3d`, which its 3-D training
/// uses): unit vectors `(dZ, dY, dX)` pointing to each mask's centre by heat diffusion,
/// `3 * planes * height * width` float64 (the dZ volume, then dY, then dX, each plane after
/// plane, row-major), zero outside masks. Bit for bit the reference's values, except where
/// the reference divides by a zero norm in float32 (volumes over 4e7 voxels: a one-voxel mask,
/// or squares that underflow far along a thin mask), which gives NaN or ±inf there and 0 here.
/// Any label values are accepted; a label's value only names it. Every side must be at least
/// 2 (one plane is a 2-D image: [`labels_to_flows_slices`]).
pub fn labels_to_flows_3d(
    labels: &[u32],
    planes: usize,
    height: usize,
    width: usize,
) -> Result<Vec<f64>> {
    let n = check_volume_size(planes, height, width)?;
    if labels.len() != n {
        return Err(Error::shape(format!(
            "labels have {} values, expected {planes}×{height}×{width} = {n}",
            labels.len()
        )));
    }
    diffusion3::masks_to_flows_3d(&dense_labels(labels), [planes, height, width])
}

/// `labels` with values at most their count: per-label tables are indexed by label value, and
/// values above the pixel count (sparse ids up to 4294967295, which once made labels → flows
/// allocate ~170 GB and abort) are renumbered 1..k in increasing order, which changes no flow
/// (masks are diffused in label order).
fn dense_labels(labels: &[u32]) -> std::borrow::Cow<'_, [u32]> {
    if labels::max_label(labels) as usize <= labels.len() {
        return std::borrow::Cow::Borrowed(labels);
    }
    let mut ids: Vec<u32> = labels.iter().copied().filter(|&l| l != 0).collect();
    ids.sort_unstable();
    ids.dedup();
    labels
        .iter()
        .map(|&l| match l {
            0 => 0,
            l => ids.binary_search(&l).map_or(0, |i| i as u32 + 1),
        })
        .collect()
}

/// Labels → flows on an ndarray view; returns `(2, H, W)` as (dY, dX). See
/// [`labels_to_flows_slices`].
pub fn labels_to_flows(labels: ArrayView2<'_, u32>) -> Result<Array3<f64>> {
    let (h, w) = labels.dim();
    let labels = labels.as_standard_layout();
    let flat = labels
        .as_slice()
        .ok_or_else(|| Error::invalid("labels layout"))?;
    let out = labels_to_flows_slices(flat, h, w)?;
    Array3::from_shape_vec((2, h, w), out).map_err(|e| Error::invalid(e.to_string()))
}

/// Cellpose's flow error of each mask 1..=max of `labels` against network flows (`NaN` for
/// absent labels): the per-mask mean of `(dY_mask - dY/5)² + (dX_mask - dX/5)²`.
pub fn flow_errors(labels: &[u32], flows: &FlowsRef<'_>) -> Result<Vec<f64>> {
    flows.validate()?;
    if labels.len() != flows.dy.len() {
        return Err(Error::shape(format!(
            "labels have {} values, flows {}",
            labels.len(),
            flows.dy.len()
        )));
    }
    quality::flow_errors(labels, flows.dy, flows.dx, flows.height, flows.width)
}
