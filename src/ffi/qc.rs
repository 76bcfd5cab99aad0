//! C entry points for quality control: the measures of one image, and the report of a run.

use std::ffi::{c_char, c_void};
use std::path::Path;

use crate::core::flows::FlowsRef;
use crate::core::qc::image_qc_table;
use crate::core::qc::report::{QcOptions, qc_report};

use super::boundary::{
    boundary, c_str, copy_string, cytoseg_status, expect_len, input, labelled_image_input, null,
    output,
};
use super::measure::{calibration, cytoseg_calibration, cytoseg_table, table_handle};
use super::model::channel_choice;

/// Quality-control measures of one image whose objects the host has (e.g. from
/// `cytoseg_model_segment`): focus, saturation, background, signal, noise, contrast to noise,
/// dynamic range, object size spread and, with the network's flows, its confidence. Returned
/// as a one-row table read with the `cytoseg_table_*` functions: column `objects`, then one
/// column per measure (`focus_laplacian`, `focus_spectrum_slope`, `saturated_fraction`,
/// `background`, `signal`, `noise`, `contrast_to_noise`, `dynamic_range`, `area_iqr`,
/// `mean_cellprob`, `flow_error_median`, `flow_qc_removed_fraction`; later versions may append
/// columns, so look them up by name). NaN where a measure is undefined (no objects; no flows;
/// `flow_qc_removed_fraction` is only known to segmentation and always NaN here). The formulas:
/// docs/qc.md.
///
/// @param pixels            The image: `height` rows of `width` pixels × `channels`
///                          interleaved samples of type `dtype`, rows every
///                          `row_stride_bytes` (as for `cytoseg_model_segment`).
/// @param channel           The channel measured (0-based), or -1 for the mean of all channels.
/// @param labels            `height * width` uint32 labels (0 = background).
/// @param labels_len        Must be `height * width`.
/// @param flows             Optional (may be NULL): the `3 * height * width` floats dY, dX,
///                          cellprob that `cytoseg_model_segment` wrote.
/// @param flows_len         `3 * height * width` when `flows` is given, else ignored.
/// @param cal               Pixel size for `area_iqr`, or NULL for pixels.
/// @param out               Receives the new table on success; free with `cytoseg_table_free`.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_image_qc(
    pixels: *const c_void,
    dtype: i32,
    width: usize,
    height: usize,
    channels: usize,
    row_stride_bytes: usize,
    channel: i32,
    labels: *const u32,
    labels_len: usize,
    flows: *const f32,
    flows_len: usize,
    cal: *const cytoseg_calibration,
    out: *mut *mut cytoseg_table,
) -> cytoseg_status {
    boundary(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        // SAFETY: the caller provides the image and labels described by the arguments.
        let (view, labels) = unsafe {
            labelled_image_input(
                pixels,
                dtype,
                width,
                height,
                channels,
                row_stride_bytes,
                labels,
                labels_len,
            )
        }?;
        let n = width * height;
        let choice = channel_choice(channel, "channel")?;
        let fl = if flows.is_null() {
            None
        } else {
            expect_len(
                "flows_len",
                flows_len,
                n.checked_mul(3),
                "3 * height * width",
            )?;
            // SAFETY: the caller provides flows_len floats (checked).
            Some(unsafe { input(flows, flows_len, "flows") }?)
        };
        let flows_ref = match fl {
            Some(f) => Some(FlowsRef::stacked(f, height, width)?),
            None => None,
        };
        let calibration = calibration(cal)?;
        let table = image_qc_table(&view, &choice, labels, flows_ref.as_ref(), &calibration)?;
        let handle = table_handle(table)?;
        // SAFETY: non-null caller pointer.
        unsafe { *out = Box::into_raw(handle) };
        Ok(())
    })
}

/// The verdict of a QC report in numbers (see `cytoseg_qc_report`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct cytoseg_qc_counts {
    /// Images segmented ("ok" in `summary.csv`).
    pub images: usize,
    /// Acquisition groups compared.
    pub groups: usize,
    /// Images flagged as outliers (images without objects included).
    pub flagged: usize,
    /// (group, measure) pairs that drift.
    pub drifting: usize,
    /// 1 when treatments are confounded with groups (with a plate map), else 0.
    pub confounded: u32,
}

/// Writes the quality-control report of a segmentation run, as `cytoseg qc OUT` does:
/// `OUT/qc/qc_report.html` (one self-contained page), `qc_images.csv`, `qc_drift.csv` and, with
/// a plate map, `qc_confounding.csv`. Images are grouped by fields taken from their paths
/// (`pattern`) or a sidecar CSV, flagged as outliers within their group, groups compared for
/// drift, and treatments checked against groups. The method: docs/qc.md.
///
/// @param out_dir        Output folder of a run (`cytoseg_segment_folder`, `cytoseg segment`)
///                       holding `summary.csv` and `run.json`; NUL-terminated UTF-8.
/// @param options_json   NULL or a NUL-terminated JSON object with any of: `pattern` (path
///                       pattern with named fields matched against the end of each
///                       input path, e.g. `"{plate}_{well}_s{site}.tif"`),
///                       `sidecar` (CSV: a `file` column, then one column per field),
///                       `group_by` (field names: an array or one comma-separated string;
///                       default every field but well, row, column, site, field, channel),
///                       `plate_map` (CSV: `well`, `treatment`, optional `control`),
///                       `measures` (further `summary.csv` columns to compare), `z` (robust
///                       z-score that flags; default 3), `drift` (Hedges' g threshold; default
///                       0.5), `thumbnails` (most thumbnails; default 30). Empty strings mean
///                       "not given"; unknown fields are an error.
/// @param html_path      Optional (may be NULL): receives the report page's path,
///                       NUL-terminated, truncated to `html_path_len` bytes.
/// @param html_path_len  Size of `html_path` in bytes.
/// @param needed         Optional (may be NULL): the bytes the whole path needs, NUL included.
/// @param counts         Optional (may be NULL): the verdict (images, groups, flagged, ...).
/// @return `CYTOSEG_STATUS_OK`; `CYTOSEG_STATUS_INVALID_ARGUMENT` for bad options, a missing
///         or foreign `summary.csv`, a path that does not match the pattern, an unknown group
///         field; `CYTOSEG_STATUS_IO` when the report cannot be written. Outputs are written on
///         success only.
///
/// Thread safety: may be called from several threads, with different output folders.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_qc_report(
    out_dir: *const c_char,
    options_json: *const c_char,
    html_path: *mut c_char,
    html_path_len: usize,
    needed: *mut usize,
    counts: *mut cytoseg_qc_counts,
) -> cytoseg_status {
    boundary(|| {
        let out = c_str(out_dir, "out_dir")?;
        let json = if options_json.is_null() {
            ""
        } else {
            c_str(options_json, "options_json")?
        };
        let options = QcOptions::from_json(json)?;
        let needed = if needed.is_null() {
            None
        } else {
            // SAFETY: non-NULL; by the contract a writable size_t (`output` checks alignment).
            Some(unsafe { output(needed, 1, "needed") }?)
        };
        let counts_out = if counts.is_null() {
            None
        } else {
            // SAFETY: non-NULL; by the contract a writable cytoseg_qc_counts.
            Some(unsafe { output(counts, 1, "counts") }?)
        };
        let report = qc_report(Path::new(out), &options)?;
        let n = copy_string(
            report.html.to_string_lossy().as_bytes(),
            html_path,
            html_path_len,
        );
        if let Some(o) = needed {
            o[0] = n;
        }
        if let Some(o) = counts_out {
            let c = report.counts();
            o[0] = cytoseg_qc_counts {
                images: c.images,
                groups: c.groups,
                flagged: c.flagged,
                drifting: c.drifting,
                confounded: u32::from(c.confounded),
            };
        }
        Ok(())
    })
}
