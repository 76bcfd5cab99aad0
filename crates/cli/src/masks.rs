//! `cytoseg masks`: flows + cellprob (.npy) → labels (.npy or .tif), in 2-D or 3-D.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use cytoseg_core::error::{Error, Result};
use cytoseg_core::flows::{self, MaskParams};
use cytoseg_core::io::labels::{LabelStack, write_label_stack, write_labels};
use cytoseg_core::io::npy;
use cytoseg_core::measure::Calibration;

/// Arguments of `cytoseg masks`.
#[derive(Debug, Args)]
pub struct MasksArgs {
    /// Flows as float32 .npy, Cellpose's `dP`: (2, H, W) ordered (dY, dX) for an image, or
    /// (3, Z, Y, X) ordered (dZ, dY, dX) for a volume (Cellpose's do_3D flows; labels are then
    /// computed in 3-D, without flow quality control, as Cellpose does).
    #[arg(long, value_name = "DP.npy")]
    pub dp: PathBuf,
    /// Cell-probability logits as float32 .npy of shape (H, W), or (Z, Y, X) with 3-D flows.
    #[arg(long, value_name = "CELLPROB.npy")]
    pub cellprob: PathBuf,
    /// Output label image: .npy or .tif (uint16, or uint32 past 65,535 masks).
    #[arg(long, value_name = "LABELS")]
    pub out: PathBuf,
    /// Pixels with cellprob above this are followed.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub cellprob_threshold: f32,
    /// Maximum flow error of a kept mask; 0 turns quality control off. Not used in 3-D.
    #[arg(long, default_value_t = 0.4)]
    pub flow_threshold: f64,
    /// Number of integration steps.
    #[arg(long, default_value_t = 200)]
    pub niter: u32,
    /// Minimum mask size in pixels (voxels in 3-D); 0 or less keeps all masks and skips hole
    /// filling.
    #[arg(long, default_value_t = 15, allow_negative_numbers = true)]
    pub min_size: i64,
    /// Masks larger than this fraction of the image are removed.
    #[arg(long, default_value_t = 0.4)]
    pub max_size_fraction: f64,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub overwrite: bool,
}

/// Runs `cytoseg masks`.
pub fn run(args: MasksArgs) -> Result<i32> {
    if !args.overwrite && args.out.exists() {
        return Err(Error::invalid(format!(
            "{} already exists (use --overwrite to replace it)",
            args.out.display()
        )));
    }
    let params = MaskParams {
        cellprob_threshold: args.cellprob_threshold,
        flow_threshold: args.flow_threshold,
        niter: args.niter,
        min_size: args.min_size,
        max_size_fraction: args.max_size_fraction,
    };
    if npy::check_header(&args.dp)?.shape.len() == 4 {
        return run_3d(&args, &params);
    }
    let dp = npy::read_f32(&args.dp, &[Some(2), None, None])?;
    let (h, w) = (dp.shape()[1], dp.shape()[2]);
    let cellprob = npy::read_f32(&args.cellprob, &[Some(h), Some(w)])?;
    let dp = dp
        .into_dimensionality::<ndarray::Ix3>()
        .map_err(|e| Error::invalid(e.to_string()))?;
    let cellprob = cellprob
        .into_dimensionality::<ndarray::Ix2>()
        .map_err(|e| Error::invalid(e.to_string()))?;
    let start = Instant::now();
    let labels = flows::compute_masks(dp.view(), cellprob.view(), &params)?;
    let n = labels.iter().copied().max().unwrap_or(0);
    let labels = labels.into_raw_vec_and_offset().0;
    write_labels(&args.out, &labels, h, w, args.overwrite)?;
    log::info!(
        "{h}×{w}: {n} masks in {:.3} s → {} (instruction set: {})",
        start.elapsed().as_secs_f64(),
        args.out.display(),
        cytoseg_core::simd::active()
    );
    Ok(0)
}

/// 3-D flows (3, Z, Y, X) + cellprob (Z, Y, X) → a label stack.
fn run_3d(args: &MasksArgs, params: &MaskParams) -> Result<i32> {
    let dp = npy::read_f32(&args.dp, &[Some(3), None, None, None])?;
    let (d, h, w) = (dp.shape()[1], dp.shape()[2], dp.shape()[3]);
    let cellprob = npy::read_f32(&args.cellprob, &[Some(d), Some(h), Some(w)])?;
    let dp = npy::into_row_major(&args.dp, dp)?;
    let cellprob = npy::into_row_major(&args.cellprob, cellprob)?;
    let len = d * h * w;
    let f = flows::Flows3Ref {
        dz: &dp[..len],
        dy: &dp[len..2 * len],
        dx: &dp[2 * len..],
        cellprob: &cellprob,
        planes: d,
        height: h,
        width: w,
    };
    let start = Instant::now();
    let labels = flows::compute_masks_3d(&f, params)?;
    drop((dp, cellprob));
    let n = labels.iter().copied().max().unwrap_or(0);
    write_label_stack(
        &args.out,
        &LabelStack {
            labels: &labels,
            planes: d,
            height: h,
            width: w,
            plane_axes: &[('z', d)],
            calibration: &Calibration::default(),
        },
        args.overwrite,
    )?;
    log::info!(
        "{d}×{h}×{w}: {n} masks in {:.3} s → {}",
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(0)
}
