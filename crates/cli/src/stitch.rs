//! `cytoseg stitch`: per-plane 2-D labels of a z-stack → 3-D labels, as Cellpose's stitching
//! mode links them.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use cytoseg_core::error::{Error, Result};
use cytoseg_core::flows;
use cytoseg_core::io::labels::{LabelStack, read_label_stack, write_label_stack};
use cytoseg_core::measure::Calibration;

/// Arguments of `cytoseg stitch`.
#[derive(Debug, Args)]
#[command(after_help = "\
Each plane's masks are linked to the previous plane's by intersection over union, exactly as
cellpose 4.2.1.1's stitching mode (utils.stitch3D, then fill_holes_and_remove_small_masks on the
volume): a mask takes the id of the previous plane's mask it overlaps best (IoU at least the
threshold, and no other mask of its plane overlapping that one more), else a new id; then holes
are filled in 3-D and masks under --min-size voxels removed. The planes should be labelled
without a size filter (as Cellpose labels them before stitching: min_size -1).

Example:
  cytoseg stitch --labels stack_labels.tif --out stack_3d.tif --stitch-threshold 0.25")]
pub struct StitchArgs {
    /// Per-plane labels: a multi-page TIFF (z-stack), or .npy of shape (Z, H, W).
    #[arg(long, value_name = "STACK")]
    pub labels: PathBuf,
    /// Output 3-D labels: .tif (an ImageJ z-stack) or .npy (Z, H, W).
    #[arg(long, value_name = "OUT")]
    pub out: PathBuf,
    /// Smallest IoU that links two masks of consecutive planes.
    #[arg(long, default_value_t = 0.25)]
    pub stitch_threshold: f64,
    /// Masks with fewer voxels are removed after stitching; 0 or less keeps all (holes are
    /// still filled).
    #[arg(long, default_value_t = 15, allow_negative_numbers = true)]
    pub min_size: i64,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub overwrite: bool,
}

/// Runs `cytoseg stitch`.
pub fn run(args: StitchArgs) -> Result<i32> {
    if !args.overwrite && args.out.exists() {
        return Err(Error::invalid(format!(
            "{} already exists (use --overwrite to replace it)",
            args.out.display()
        )));
    }
    let (mut labels, planes, h, w) = read_label_stack(&args.labels)?;
    if planes < 2 {
        return Err(Error::invalid(format!(
            "{} holds one plane; stitching links the planes of a z-stack",
            args.labels.display()
        )));
    }
    let start = Instant::now();
    flows::stitch_planes(
        &mut labels,
        planes,
        h,
        w,
        args.stitch_threshold,
        args.min_size,
    )?;
    let n = labels.iter().copied().max().unwrap_or(0);
    write_label_stack(
        &args.out,
        &LabelStack {
            labels: &labels,
            planes,
            height: h,
            width: w,
            plane_axes: &[('z', planes)],
            calibration: &Calibration::default(),
        },
        args.overwrite,
    )?;
    log::info!(
        "{planes}×{h}×{w}: {n} 3-D masks in {:.3} s → {}",
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(0)
}
