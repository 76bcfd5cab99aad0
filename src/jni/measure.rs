//! `org.cytoseg.Native`: per-object measurements of a label image (the engine's
//! `<stem>_objects.csv` table).

use ::jni::objects::{JByteArray, JClass, JFloatArray, JIntArray, JObject, JShortArray};
use ::jni::objects::{JString, ReleaseMode};
use ::jni::sys::jint;
use ::jni::{Env, EnvUnowned, JValue, jni_sig, jni_str};

use crate::core::image::{ImageView, Pixels};
use crate::core::measure::{Calibration, Table, measure as core_measure, measure_planes};

use super::boundary::{AsUnsigned, JResult, JniError, ThrowCytoseg, dim, non_null, string_arg};

/// Runs the engine's measurement inside critical sections on `labels` and (optionally) the
/// image, then builds the Java `Table` once both are released.
#[allow(clippy::too_many_arguments)]
fn measure<'local>(
    env: &mut Env<'local>,
    labels: &JIntArray<'local>,
    width: jint,
    height: jint,
    image: &JObject<'local>,
    channels: jint,
    calibration: Calibration,
) -> JResult<JObject<'local>> {
    let (w, h) = (dim(width, "width")?, dim(height, "height")?);
    let c = dim(channels, "channels")?;
    let table = with_image_and_labels(env, image, labels, |px, l| {
        let view = match px {
            Some(p) => Some(ImageView::new(p, w, h, c, w * c)?),
            None => None,
        };
        Ok(core_measure(l, h, w, view.as_ref(), &calibration)?)
    })?;
    to_java(env, &table)
}

/// Calls `run` with the pixels of `image` (null, `byte[]`, `short[]` or `float[]`; 8- and
/// 16-bit samples as unsigned) and the labels of `labels`, both read in place inside JNI
/// critical sections: `run` must be pure computation (no JNI call, no blocking), and the caller
/// of the Java method must not write the arrays from another thread during the call.
pub(crate) fn with_image_and_labels<'local, T>(
    env: &mut Env<'local>,
    image: &JObject<'local>,
    labels: &JIntArray<'local>,
    run: impl FnOnce(Option<Pixels<'_>>, &[u32]) -> JResult<T>,
) -> JResult<T> {
    non_null(labels, "labels")?;
    // Each branch: borrow the image, then the labels, compute, release. The two are distinct
    // arrays (`int[]` against `byte[]`/`short[]`/`float[]`), so there is one borrow per array.
    // The SAFETY argument of every `get_elements_critical` below: a read-only (`NoCopyBack`)
    // borrow, the only one of its array, for pure computation: no JNI call and no blocking
    // system call happens until the guards drop at the end of the branch; the arrays belong to
    // the caller, who does not write them from another thread during the call (documented on
    // the Java methods).
    if image.is_null() {
        // SAFETY: see above.
        let l = unsafe { labels.get_elements_critical(env, ReleaseMode::NoCopyBack)? };
        run(None, i32::as_unsigned(&l))
    } else if env.is_instance_of(image, jni_str!("[B"))? {
        let local = env.new_local_ref(image)?;
        let arr: JByteArray = env.cast_local::<JByteArray>(local)?;
        // SAFETY: see above.
        let px = unsafe { arr.get_elements_critical(env, ReleaseMode::NoCopyBack)? };
        // SAFETY: see above.
        let l = unsafe { labels.get_elements_critical(env, ReleaseMode::NoCopyBack)? };
        run(Some(Pixels::U8(i8::as_unsigned(&px))), i32::as_unsigned(&l))
    } else if env.is_instance_of(image, jni_str!("[S"))? {
        let local = env.new_local_ref(image)?;
        let arr: JShortArray = env.cast_local::<JShortArray>(local)?;
        // SAFETY: see above.
        let px = unsafe { arr.get_elements_critical(env, ReleaseMode::NoCopyBack)? };
        // SAFETY: see above.
        let l = unsafe { labels.get_elements_critical(env, ReleaseMode::NoCopyBack)? };
        run(
            Some(Pixels::U16(i16::as_unsigned(&px))),
            i32::as_unsigned(&l),
        )
    } else if env.is_instance_of(image, jni_str!("[F"))? {
        let local = env.new_local_ref(image)?;
        let arr: JFloatArray = env.cast_local::<JFloatArray>(local)?;
        // SAFETY: see above.
        let px = unsafe { arr.get_elements_critical(env, ReleaseMode::NoCopyBack)? };
        // SAFETY: see above.
        let l = unsafe { labels.get_elements_critical(env, ReleaseMode::NoCopyBack)? };
        run(Some(Pixels::F32(&px)), i32::as_unsigned(&l))
    } else {
        Err(JniError::Arg(
            "image must be byte[], short[], float[] or null".into(),
        ))
    }
}

/// A calibration from the Java arguments `pixelWidth, pixelHeight, unit` ("pixel" =
/// uncalibrated).
pub(crate) fn calibration_arg(
    env: &Env<'_>,
    pixel_width: f64,
    pixel_height: f64,
    unit: &JString<'_>,
) -> JResult<Calibration> {
    Ok(Calibration {
        pixel_width,
        pixel_height,
        unit: string_arg(env, unit, "unit")?,
        z_spacing: None,
    })
}

/// Converts an engine table into an `org.cytoseg.Table`.
pub(crate) fn to_java<'local>(env: &mut Env<'local>, table: &Table) -> JResult<JObject<'local>> {
    let cols = table.columns.len();
    let rows = table.n_rows();
    let names = env.new_object_array(cols as i32, jni_str!("java/lang/String"), JObject::null())?;
    let units = env.new_object_array(cols as i32, jni_str!("java/lang/String"), JObject::null())?;
    let mut values = Vec::with_capacity(cols * rows);
    for (i, col) in table.columns.iter().enumerate() {
        let name = JString::from_str(env, &col.name)?;
        names.set_element(env, i, &name)?;
        let unit = JString::from_str(env, col.unit.as_deref().unwrap_or(""))?;
        units.set_element(env, i, &unit)?;
        values.extend_from_slice(&col.values);
    }
    let arr = env.new_double_array(values.len())?;
    arr.set_region(env, 0, &values)?;
    let rows = i32::try_from(rows).map_err(|_| JniError::Arg("too many objects".into()))?;
    Ok(env.new_object(
        jni_str!("org/cytoseg/Table"),
        jni_sig!("([Ljava/lang/String;[Ljava/lang/String;[DI)V"),
        &[
            JValue::Object(&names),
            JValue::Object(&units),
            JValue::Object(&arr),
            JValue::Int(rows),
        ],
    )?)
}

/// Measures every object of a label image, with intensities from `image` when given.
///
/// Java: `static native Table measure(int[] labels, int width, int height, Object image,
/// int channels, double pixelWidth, double pixelHeight, String unit)`. `image` is null or a
/// `byte[]`/`short[]`/`float[]` of `width*height*channels` interleaved samples (8/16-bit read
/// as unsigned); the calibration gives physical lengths and areas (`unit` "pixel" =
/// uncalibrated). Columns as the engine's `measure` (skimage `regionprops_table` names).
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_org_cytoseg_Native_measure<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    labels: JIntArray<'local>,
    width: jint,
    height: jint,
    image: JObject<'local>,
    channels: jint,
    pixel_width: f64,
    pixel_height: f64,
    unit: JString<'local>,
) -> JObject<'local> {
    env.with_env(|env| {
        let calibration = calibration_arg(env, pixel_width, pixel_height, &unit)?;
        measure(env, &labels, width, height, &image, channels, calibration)
    })
    .resolve::<ThrowCytoseg>()
}

/// Measures every 3-D object of a label stack, with intensities from `image` when given.
///
/// Java: `static native Table measureVolume(int[] labels, int width, int height, int planes,
/// Object image, int channels, double pixelWidth, double pixelHeight, double zSpacing,
/// String unit)`. `labels` holds `planes` planes of `width*height` one after the other;
/// `image` is null or a `byte[]`/`short[]`/`float[]` of the same planes with `channels`
/// interleaved samples (8/16-bit read as unsigned); `zSpacing` is the distance between planes
/// in `unit` ("pixel" = uncalibrated). Columns as the engine's 3-D measurement
/// (`regionprops_table` on the volume: `area` is the volume, centroids and boxes in z, y, x).
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_org_cytoseg_Native_measureVolume<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    labels: JIntArray<'local>,
    width: jint,
    height: jint,
    planes: jint,
    image: JObject<'local>,
    channels: jint,
    pixel_width: f64,
    pixel_height: f64,
    z_spacing: f64,
    unit: JString<'local>,
) -> JObject<'local> {
    env.with_env(|env| {
        let calibration = calibration_arg(env, pixel_width, pixel_height, &unit)?;
        let (w, h, d) = (
            dim(width, "width")?,
            dim(height, "height")?,
            dim(planes, "planes")?,
        );
        let c = dim(channels, "channels")?;
        let table = with_image_and_labels(env, &image, &labels, |px, l| {
            let views = match px {
                None => Vec::new(),
                Some(p) => {
                    let plane = w
                        .checked_mul(h)
                        .and_then(|n| n.checked_mul(c))
                        .filter(|&n| n > 0 && p.len() == n * d)
                        .ok_or_else(|| {
                            JniError::Arg(format!(
                                "image holds {} samples, {w}×{h}×{d} planes×{c} needs {}",
                                p.len(),
                                w * h * d * c
                            ))
                        })?;
                    (0..d)
                        .map(|z| ImageView::new(p.slice(z * plane, plane), w, h, c, w * c))
                        .collect::<Result<Vec<_>, _>>()?
                }
            };
            Ok(measure_planes(
                l,
                [d, h, w],
                &views,
                &calibration,
                z_spacing,
            )?)
        })?;
        to_java(env, &table)
    })
    .resolve::<ThrowCytoseg>()
}
