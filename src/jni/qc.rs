//! `org.cytoseg.Native`: quality control, the measures of one image (`imageQc`) and the report
//! of a segmentation run (`qcReport`), as the C API's `cytoseg_image_qc` and
//! `cytoseg_qc_report`.

use ::jni::objects::{JClass, JFloatArray, JIntArray, JObject, JString};
use ::jni::sys::jint;
use ::jni::{Env, EnvUnowned};

use crate::core::flows::FlowsRef;
use crate::core::image::ImageView;
use crate::core::measure::Calibration;
use crate::core::model::ChannelChoice;
use crate::core::qc::image_qc_table;
use crate::core::qc::report::{QcOptions, qc_report};

use super::boundary::{JResult, JniError, ThrowCytoseg, dim, non_null, opt_string_arg, string_arg};
use super::measure::{calibration_arg, to_java, with_image_and_labels};

/// The QC table of one image; see `Java_org_cytoseg_Native_imageQc`.
#[allow(clippy::too_many_arguments)]
fn image_qc<'local>(
    env: &mut Env<'local>,
    labels: &JIntArray<'local>,
    width: jint,
    height: jint,
    image: &JObject<'local>,
    channels: jint,
    channel: jint,
    flows: &JFloatArray<'local>,
    calibration: Calibration,
) -> JResult<JObject<'local>> {
    non_null(image, "image")?;
    let (w, h) = (dim(width, "width")?, dim(height, "height")?);
    let c = dim(channels, "channels")?;
    let choice = ChannelChoice::from_index(i64::from(channel), "channel")?;
    // The flows are copied out first: no JNI call may happen inside the critical sections.
    let flow_values = if flows.is_null() {
        None
    } else {
        let mut v = vec![0.0f32; flows.len(env)?];
        flows.get_region(env, 0, &mut v)?;
        Some(v)
    };
    let table = with_image_and_labels(env, image, labels, |px, l| {
        let px = px.ok_or(JniError::Null("image"))?;
        let view = ImageView::new(px, w, h, c, w * c)?;
        let f = match &flow_values {
            Some(v) => Some(FlowsRef::stacked(v, h, w)?),
            None => None,
        };
        Ok(image_qc_table(&view, &choice, l, f.as_ref(), &calibration)?)
    })?;
    to_java(env, &table)
}

/// The quality-control measures of one image and its objects, as a one-row table (column
/// `objects`, then `focus_laplacian`, `focus_spectrum_slope`, `saturated_fraction`,
/// `background`, `signal`, `noise`, `contrast_to_noise`, `dynamic_range`, `area_iqr`,
/// `mean_cellprob`, `flow_error_median`, `flow_qc_removed_fraction`; NaN where undefined).
///
/// Java: `static native Table imageQc(int[] labels, int width, int height, Object image,
/// int channels, int channel, float[] flows, double pixelWidth, double pixelHeight,
/// String unit)`. `image` is a `byte[]`/`short[]`/`float[]` of `width*height*channels`
/// interleaved samples (8/16-bit read as unsigned); `channel` the one measured (0-based) or -1
/// for the mean of all; `flows` null or the `3*width*height` floats dY, dX, cellprob that
/// segmentation returned (for `mean_cellprob` and `flow_error_median`); the calibration gives
/// `area_iqr` in `unit`² ("pixel" = uncalibrated). `labels` and `image` are read in place.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_org_cytoseg_Native_imageQc<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    labels: JIntArray<'local>,
    width: jint,
    height: jint,
    image: JObject<'local>,
    channels: jint,
    channel: jint,
    flows: JFloatArray<'local>,
    pixel_width: f64,
    pixel_height: f64,
    unit: JString<'local>,
) -> JObject<'local> {
    env.with_env(|env| {
        let calibration = calibration_arg(env, pixel_width, pixel_height, &unit)?;
        image_qc(
            env,
            &labels,
            width,
            height,
            &image,
            channels,
            channel,
            &flows,
            calibration,
        )
    })
    .resolve::<ThrowCytoseg>()
}

/// Writes the QC report of the segmentation run in `out` (`out/qc/qc_report.html` and the CSV
/// tables), as `cytoseg qc`.
///
/// Java: `static native String qcReport(String out, String optionsJson)`. `optionsJson` is
/// null or a JSON object with any of `pattern`, `sidecar`, `group_by`, `plate_map`,
/// `measures`, `z`, `drift`, `thumbnails` (see the C API's `cytoseg_qc_report`). Returns
/// key=value lines: `html` (the page), `images`, `groups`, `flagged`, `drifting`,
/// `confounded` (true/false).
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_cytoseg_Native_qcReport<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    out: JString<'local>,
    options_json: JString<'local>,
) -> JString<'local> {
    env.with_env(|env| -> JResult<JString<'local>> {
        let out = string_arg(env, &out, "out")?;
        let json = opt_string_arg(env, &options_json)?.unwrap_or_default();
        let options = QcOptions::from_json(&json)?;
        let report = qc_report(std::path::Path::new(&out), &options)?;
        let c = report.counts();
        let text = super::kv(&[
            ("html", report.html.display().to_string()),
            ("images", c.images.to_string()),
            ("groups", c.groups.to_string()),
            ("flagged", c.flagged.to_string()),
            ("drifting", c.drifting.to_string()),
            ("confounded", c.confounded.to_string()),
        ]);
        Ok(JString::from_str(env, text)?)
    })
    .resolve::<ThrowCytoseg>()
}
