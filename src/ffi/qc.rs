//! C entry point for the per-image quality-control measures.

use std::ffi::c_void;

use crate::core::flows::FlowsRef;
use crate::core::qc::image_qc_table;

use super::boundary::{boundary, cytoseg_status, expect_len, image_input, input, null};
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
        // SAFETY: the caller provides the image buffer described by the arguments.
        let view = unsafe {
            image_input(
                pixels,
                dtype,
                width,
                height,
                channels,
                row_stride_bytes,
                "pixels",
            )
        }?;
        let n = width * height;
        expect_len("labels_len", labels_len, Some(n), "height * width")?;
        // SAFETY: the caller provides labels_len labels (checked to be width * height).
        let labels = unsafe { input(labels, labels_len, "labels") }?;
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
        let flows_ref = fl.map(|f| FlowsRef {
            dy: &f[..n],
            dx: &f[n..2 * n],
            cellprob: &f[2 * n..],
            height,
            width,
        });
        let calibration = calibration(cal)?;
        let table = image_qc_table(&view, &choice, labels, flows_ref.as_ref(), &calibration)?;
        let handle = table_handle(table)?;
        // SAFETY: non-null caller pointer.
        unsafe { *out = Box::into_raw(handle) };
        Ok(())
    })
}
