//! `cytoseg measure`: per-object measurements of a label image (and an intensity image) as a
//! CSV table equal to `skimage.measure.regionprops_table`.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use cytoseg_core::error::{Error, Result};
use cytoseg_core::io::image::{normalize_unit, read_stack};
use cytoseg_core::io::labels::read_label_stack;
use cytoseg_core::io::{extension, write_atomic};
use cytoseg_core::measure::{Calibration, measure};

/// Arguments of `cytoseg measure`.
#[derive(Debug, Args)]
#[command(
    after_help = "Columns: label, area, centroid-0 (y), centroid-1 (x), bbox-0..bbox-3 \
(min row, min col, max row, max col; max exclusive; pixel indices), perimeter, \
equivalent_diameter_area, axis_major_length, axis_minor_length, eccentricity, orientation \
(radians, from the row axis, -pi/2..pi/2), solidity, extent, then per image channel \
intensity_mean, intensity_min, intensity_max, intensity_std, intensity_integrated (suffix -k per \
channel when the image has several). Values equal skimage.measure.regionprops_table \
(scikit-image 0.26). Calibrated lengths are in the unit shown in the header, areas in unit^2.

Label stacks (multi-page TIFF, (Z, H, W) .npy) are measured as 3-D objects, as regionprops_table on the volume with spacing (--z-spacing, else the files' z spacing, else 1; pixel height, pixel width): label, area (the volume), centroid-0..2 (z, y, x), bbox-0..5, equivalent_diameter_area, axis_major_length, axis_minor_length, solidity (inf for flat objects, as skimage), extent, and the intensity columns of an intensity stack of the same size."
)]
pub struct MeasureCmd {
    /// Label image (.tif, .npy, .png; 0 = background).
    #[arg(long)]
    pub labels: PathBuf,
    /// Intensity image of the same size (any channels): adds intensity columns per channel, and
    /// its pixel size (ImageJ or OME-TIFF metadata) calibrates the table unless --pixel-size
    /// is given.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Output CSV file ("-" for standard output).
    #[arg(long, value_name = "CSV")]
    pub out: PathBuf,
    /// Pixel width (and height, unless --pixel-height) in --unit; overrides the files' sizes.
    #[arg(long, value_name = "X")]
    pub pixel_size: Option<f64>,
    /// Pixel height in --unit, for non-square pixels (default: --pixel-size).
    #[arg(long, value_name = "Y", requires = "pixel_size")]
    pub pixel_height: Option<f64>,
    /// Length unit of --pixel-size (e.g. um, nm; "um" and "micron" are written "µm").
    #[arg(long, default_value = "µm", requires = "pixel_size")]
    pub unit: String,
    /// Distance between planes of a label stack, in the pixel size's unit; overrides the
    /// files' (ImageJ spacing=, OME PhysicalSizeZ; default 1).
    #[arg(long, value_name = "Z")]
    pub z_spacing: Option<f64>,
    /// Replace an existing output file.
    #[arg(long)]
    pub overwrite: bool,
}

/// A TIFF's calibration (pixel size, z spacing), if it is a TIFF (best effort: any failure
/// means none). Other formats carry none, so they are not decoded a second time for it.
fn file_calibration(path: &std::path::Path) -> Option<Calibration> {
    if !matches!(extension(path).as_str(), "tif" | "tiff") {
        return None;
    }
    read_stack(path).ok().map(|s| s.calibration)
}

/// Runs `cytoseg measure`; returns the exit code.
pub fn run(args: MeasureCmd) -> Result<i32> {
    let (labels, planes, height, width) = read_label_stack(&args.labels)?;
    let stack = args.image.as_deref().map(read_stack).transpose()?;
    if let (Some(s), Some(path)) = (&stack, &args.image) {
        if s.planes.len() != planes {
            return Err(Error::format(
                path,
                if planes == 1 {
                    format!(
                        "holds {} planes; a 2-D label image takes a single 2-D image (with any channels)",
                        s.planes.len()
                    )
                } else {
                    format!(
                        "holds {} planes, the label stack {} {planes}",
                        s.planes.len(),
                        args.labels.display()
                    )
                },
            ));
        }
        if (s.width, s.height) != (width, height) {
            return Err(Error::shape(format!(
                "{} is {}×{} but the labels {} are {width}×{height}",
                path.display(),
                s.width,
                s.height,
                args.labels.display()
            )));
        }
    }
    // The label file's calibration, decoded again only when neither the options nor the
    // intensity image give what is needed.
    let label_file = std::cell::OnceCell::new();
    let label_cal = || {
        label_file
            .get_or_init(|| file_calibration(&args.labels))
            .clone()
    };
    let mut calibration = match args.pixel_size {
        Some(x) => Calibration {
            pixel_width: x,
            pixel_height: args.pixel_height.unwrap_or(x),
            unit: normalize_unit(&args.unit),
            z_spacing: None,
        },
        None => stack
            .as_ref()
            .map(|s| s.calibration.clone())
            .filter(Calibration::is_calibrated)
            .or_else(|| label_cal().filter(Calibration::is_calibrated))
            .unwrap_or_default(),
    };
    if planes > 1 {
        calibration.z_spacing = args
            .z_spacing
            .or_else(|| stack.as_ref().and_then(|s| s.calibration.z_spacing))
            .or_else(|| label_cal().and_then(|c| c.z_spacing));
    }
    let table = if planes > 1 {
        cytoseg_core::measure::measure_stack(
            &labels,
            [planes, height, width],
            stack.as_ref(),
            &calibration,
            calibration.z_spacing.unwrap_or(1.0),
        )?
    } else {
        let view = match &stack {
            Some(s) => Some(s.planes[0].view()?),
            None => None,
        };
        measure(&labels, height, width, view.as_ref(), &calibration)?
    };
    let csv = table.to_csv();
    if args.out.as_os_str() == "-" {
        std::io::stdout()
            .write_all(csv.as_bytes())
            .map_err(|e| Error::io("<stdout>", e))?;
    } else {
        write_atomic(&args.out, args.overwrite, |w| {
            w.write_all(csv.as_bytes())
                .map_err(|e| Error::io(&args.out, e))
        })?;
        let unit = if calibration.is_calibrated() {
            format!(
                "{} × {} {} pixels",
                calibration.pixel_width, calibration.pixel_height, calibration.unit
            )
        } else {
            "uncalibrated (pixels)".to_string()
        };
        log::info!(
            "{} objects, {} columns, {unit} → {}",
            table.n_rows(),
            table.columns.len(),
            args.out.display()
        );
    }
    Ok(0)
}
