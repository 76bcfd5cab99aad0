//! `org.cytoseg.Native`: model load, description, segmentation and release.
//!
//! A model crosses to Java as a `long` handle (`Box::into_raw` of the engine's `Model`). The
//! engine's model is `Send + Sync`, so one handle may segment from several Java threads at
//! once; the Java `Model` class guarantees that `modelFree` never runs while another call uses
//! the handle (read/write lock) and that it runs once.

use std::cell::RefCell;
use std::path::PathBuf;

use ::jni::objects::{
    JByteArray, JClass, JDoubleArray, JFloatArray, JIntArray, JObject, JShortArray,
};
use ::jni::objects::{JPrimitiveArray, JString, TypeArray};
use ::jni::sys::{jint, jlong};
use ::jni::{Env, EnvUnowned, JValue, jni_sig, jni_str};

use crate::core::image::{ImageView, Pixels};
use crate::core::model::{
    ChannelChoice, Device, LoadOptions, Model, Precision, Progress, SegmentParams, Tiling,
    VolumeMode,
};

use super::boundary::{
    AsUnsigned, JResult, JniError, ThrowCytoseg, dim, labels_as_jint, non_null, opt_string_arg,
    string_arg,
};
use super::kv;

/// Names of the values of the `double[] params` array of the segment entry points, in order:
/// Java builds the array by these names (`Native.segmentParamNames`), never by position.
pub(crate) const PARAM_NAMES: [&str; 12] = [
    "channel",
    "diameter",
    "cellprob_threshold",
    "flow_threshold",
    "niter",
    "min_size",
    "max_size_fraction",
    "tile_size",
    "tile_overlap",
    "batch_size",
    "tiling",
    "precision",
];

/// Number of values in the `double[] params` array of the segment entry points.
pub(crate) const PARAMS_LEN: usize = PARAM_NAMES.len();

/// The names of the segment entry points' `double[] params` values, one per line, in order.
///
/// Java: `static native String segmentParamNames()`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_cytoseg_Native_segmentParamNames<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
) -> JString<'local> {
    env.with_env(|env| -> JResult<JString<'local>> {
        Ok(JString::from_str(env, PARAM_NAMES.join("\n"))?)
    })
    .resolve::<ThrowCytoseg>()
}

/// Loads a model package by bundled name or folder path.
///
/// Java: `static native long modelLoad(String nameOrPath, String device, String ortLib, int threads)`.
/// `device` is `auto|cpu|cuda|tensorrt|coreml|directml`; `ortLib` (nullable) is the ONNX
/// Runtime library to load (otherwise the engine's search: `ORT_DYLIB_PATH`, next to
/// libcytoseg: `crate::host`); `threads` 0 = one per core. Returns a non-zero handle.
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_cytoseg_Native_modelLoad<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    name: JString<'local>,
    device: JString<'local>,
    ort_lib: JString<'local>,
    threads: jint,
) -> jlong {
    env.with_env(|env| -> JResult<jlong> {
        let name = string_arg(env, &name, "nameOrPath")?;
        let device = Device::parse(&string_arg(env, &device, "device")?)?;
        let ort_lib = opt_string_arg(env, &ort_lib)?.map(PathBuf::from);
        let options = LoadOptions {
            device,
            ort_search: crate::host::library_ort_search(ort_lib.as_deref()),
            model_dirs: crate::host::library_model_dirs(),
            threads: dim(threads, "threads")?,
        };
        let model = Model::load(&name, &options)?;
        Ok(Box::into_raw(Box::new(model)) as jlong)
    })
    .resolve::<ThrowCytoseg>()
}

/// Releases a model handle; 0 is a no-op.
///
/// Java: `static native void modelFree(long handle)`. The caller guarantees that no other call
/// uses the handle and that it is freed once (the Java `Model` class does).
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_cytoseg_Native_modelFree<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    env.with_env(|_env| -> JResult<()> {
        if handle != 0 {
            // SAFETY: a non-zero handle comes from `modelLoad` (Box::into_raw) and is freed
            // once, with no call using it concurrently (the Java side's contract).
            drop(unsafe { Box::from_raw(handle as *mut Model) });
        }
        Ok(())
    })
    .resolve::<ThrowCytoseg>()
}

/// Borrows the model behind a handle.
pub(crate) fn model_ref<'a>(handle: jlong) -> JResult<&'a Model> {
    if handle == 0 {
        return Err(JniError::Closed);
    }
    // SAFETY: a non-zero handle comes from `modelLoad` and stays valid until `modelFree`, which
    // the Java side never runs while a call is using the handle.
    Ok(unsafe { &*(handle as *const Model) })
}

/// Describes a loaded model as `key=value` lines: name, version, family, description, sha256,
/// diameter, channels, tile_size, tile_overlap, precisions (comma-separated), cellprob_threshold, flow_threshold, niter,
/// min_size, max_size_fraction, license, device, onnxruntime_version, onnxruntime_library,
/// path.
///
/// Java: `static native String modelInfo(long handle)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_cytoseg_Native_modelInfo<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> JString<'local> {
    env.with_env(|env| -> JResult<JString<'local>> {
        let m = model_ref(handle)?;
        let md = &m.manifest;
        let d = &md.mask_defaults;
        let text = kv(&[
            ("name", md.name.clone()),
            ("version", md.version.clone()),
            ("family", md.family.clone()),
            ("description", md.description.clone()),
            ("sha256", md.model.sha256.clone()),
            ("diameter", md.diameter.to_string()),
            ("channels", md.input.channels.to_string()),
            ("tile_size", md.tiling.tile_size.to_string()),
            ("tile_overlap", md.tiling.overlap.to_string()),
            (
                "precisions",
                m.precisions()
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("cellprob_threshold", d.cellprob_threshold.to_string()),
            ("flow_threshold", d.flow_threshold.to_string()),
            ("niter", d.niter.to_string()),
            ("min_size", d.min_size.to_string()),
            ("max_size_fraction", d.max_size_fraction.to_string()),
            ("license", md.license.clone()),
            ("device", m.device.name().to_string()),
            ("onnxruntime_version", m.runtime.version.clone()),
            (
                "onnxruntime_library",
                m.runtime.library.display().to_string(),
            ),
            ("path", m.dir.display().to_string()),
        ]);
        Ok(JString::from_str(env, text)?)
    })
    .resolve::<ThrowCytoseg>()
}

/// The engine's segmentation parameters from the Java `double[]` (layout in
/// `org.cytoseg.SegmentOptions`): 0 channel (-1 = automatic), 1 diameter (0 = the model's),
/// 2 cellprob_threshold, 3 flow_threshold, 4 niter (0 = automatic), 5 min_size,
/// 6 max_size_fraction (NaN = the model's for 2, 3, 5, 6), 7 tile_size (0 = the model's),
/// 8 tile_overlap (negative or NaN = the model's), 9 batch_size (0 = 8), 10 tiling (0 fast,
/// 1 cellpose), 11 precision (0 auto, 1 fp32, 2 int8).
pub(crate) fn params_from(model: &Model, v: &[f64]) -> JResult<SegmentParams> {
    if v.len() != PARAMS_LEN {
        return Err(JniError::Arg(format!(
            "params has {} values, expected {PARAMS_LEN}",
            v.len()
        )));
    }
    let int = |x: f64, name: &str| -> JResult<Option<usize>> {
        if !x.is_finite() || x < 0.0 || x.fract() != 0.0 || x > u32::MAX as f64 {
            return Err(JniError::Arg(format!(
                "{name} must be a non-negative integer, got {x}"
            )));
        }
        Ok((x > 0.0).then_some(x as usize))
    };
    let mut p = SegmentParams::for_model(model);
    p.channels = if v[0] < 0.0 {
        ChannelChoice::Auto
    } else {
        ChannelChoice::Select(vec![int(v[0], "channel")?.unwrap_or(0)])
    };
    p.diameter = (v[1] != 0.0 && !v[1].is_nan()).then_some(v[1]);
    if !v[2].is_nan() {
        p.mask.cellprob_threshold = v[2] as f32;
    }
    if !v[3].is_nan() {
        p.mask.flow_threshold = v[3];
    }
    p.mask.niter = int(v[4], "niter")?.unwrap_or(0) as u32;
    if !v[5].is_nan() {
        p.mask.min_size = v[5] as i64;
    }
    if !v[6].is_nan() {
        p.mask.max_size_fraction = v[6];
    }
    p.tile_size = int(v[7], "tile_size")?;
    p.tile_overlap = (v[8] >= 0.0).then_some(v[8]);
    p.batch_size = int(v[9], "batch_size")?.unwrap_or(8);
    p.tiling = Tiling::from_code(int(v[10], "tiling")?.unwrap_or(0) as i64, "tiling")?;
    p.precision = Precision::from_code(int(v[11], "precision")?.unwrap_or(0) as i64, "precision")?;
    Ok(p)
}

/// Element types of the pixel arrays ImageJ hands over.
trait Sample: TypeArray + Default {
    fn pixels(s: &[Self]) -> Pixels<'_>
    where
        Self: Sized;
}

impl Sample for i8 {
    fn pixels(s: &[i8]) -> Pixels<'_> {
        Pixels::U8(i8::as_unsigned(s))
    }
}

impl Sample for i16 {
    fn pixels(s: &[i16]) -> Pixels<'_> {
        Pixels::U16(i16::as_unsigned(s))
    }
}

impl Sample for f32 {
    fn pixels(s: &[f32]) -> Pixels<'_> {
        Pixels::F32(s)
    }
}

/// Arguments shared by the segment entry points (2-D, and z-stacks with a volume mode).
struct SegmentCall<'a, 'local> {
    handle: jlong,
    width: jint,
    height: jint,
    /// Planes of a z-stack (1 for a 2-D image).
    planes: jint,
    /// How a z-stack becomes 3-D objects; `None` for a 2-D image.
    volume: Option<VolumeMode>,
    channels: jint,
    params: &'a JDoubleArray<'local>,
    labels: &'a JIntArray<'local>,
    flows: &'a JFloatArray<'local>,
    listener: &'a JObject<'local>,
}

/// Segments one image. The pixels are copied out with `Get<Type>ArrayRegion`, not borrowed:
/// the call runs for seconds and calls back into Java for progress, which a critical section
/// forbids, and a borrow (`Get<Type>ArrayElements`) would let the listener or another Java
/// thread write the array while Rust reads it. HotSpot copies for `Get<Type>ArrayElements`
/// anyway; that one copy is cheap next to the engine's own float conversion.
fn segment<'local, T: Sample + 'static>(
    env: &mut Env<'local>,
    pixels: &JPrimitiveArray<'local, T>,
    call: SegmentCall<'_, 'local>,
) -> JResult<jint>
where
    JPrimitiveArray<'local, T>: ::jni::refs::Reference,
{
    let model = model_ref(call.handle)?;
    non_null(pixels, "pixels")?;
    non_null(call.params, "params")?;
    non_null(call.labels, "labels")?;
    let (w, h, d, c) = (
        dim(call.width, "width")?,
        dim(call.height, "height")?,
        dim(call.planes, "planes")?,
        dim(call.channels, "channels")?,
    );
    let n = w
        .checked_mul(h)
        .and_then(|n| n.checked_mul(d))
        .ok_or_else(|| JniError::Arg("width × height × planes overflows".into()))?;
    let samples = n
        .checked_mul(c)
        .ok_or_else(|| JniError::Arg("width × height × planes × channels overflows".into()))?;
    if samples == 0 {
        return Err(JniError::Arg(format!(
            "the image is empty ({w}×{h}, {d} planes, {c} channels)"
        )));
    }
    let len = pixels.len(env)?;
    if len != samples {
        return Err(JniError::Arg(format!(
            "pixels holds {len} samples, {w}×{h}×{d} planes×{c} needs {samples}"
        )));
    }
    let labels_len = call.labels.len(env)?;
    if labels_len != n {
        return Err(JniError::Arg(format!(
            "labels holds {labels_len} values, {w}×{h}×{d} planes needs {n}"
        )));
    }
    let arrays = call.volume.map_or(3, |m| m.flow_arrays());
    if !call.flows.is_null() {
        let flows_len = call.flows.len(env)?;
        if Some(flows_len) != n.checked_mul(arrays) {
            return Err(JniError::Arg(format!(
                "flows holds {flows_len} values, {w}×{h}×{d} planes needs {arrays} × {n}"
            )));
        }
    }
    let mut pv = vec![0.0f64; call.params.len(env)?];
    call.params.get_region(env, 0, &mut pv)?;
    let mut params = params_from(model, &pv)?;
    params.keep_flows = !call.flows.is_null();
    let seg = {
        let mut samples = vec![T::default(); len];
        pixels.get_region(env, 0, &mut samples)?;
        let plane = w * h * c;
        let views = samples
            .chunks(plane)
            .map(|p| ImageView::new(T::pixels(p), w, h, c, w * c))
            .collect::<Result<Vec<_>, _>>()?;
        let env_cell = RefCell::new(&mut *env);
        let listener = call.listener;
        let progress = |p: Progress| -> bool {
            let mut env = env_cell.borrow_mut();
            if env.exception_check() {
                // No JNI call may run with an exception pending; keep cancelling.
                return false;
            }
            let answer = env.call_method(
                listener,
                jni_str!("progress"),
                jni_sig!("(II)Z"),
                &[
                    JValue::Int(p.tiles_done.min(i32::MAX as usize) as i32),
                    JValue::Int(p.tiles_total.min(i32::MAX as usize) as i32),
                ],
            );
            // An exception thrown by the listener cancels; it stays pending and reaches the
            // caller instead of the engine's "cancelled".
            answer.and_then(|v| v.z()).unwrap_or(false)
        };
        let cb: Option<&dyn Fn(Progress) -> bool> = if listener.is_null() {
            None
        } else {
            Some(&progress)
        };
        match call.volume {
            Some(mode) => {
                let s = model.segment_volume(&views, &params, mode, cb)?;
                (s.labels, s.flows, s.count)
            }
            None => {
                let s = model.segment(&views[0], &params, cb)?;
                (s.labels, s.flows.map(|f| f.concat()), s.count)
            }
        }
    };
    let (labels, flows, count) = seg;
    call.labels.set_region(env, 0, labels_as_jint(&labels))?;
    if let (false, Some(fl)) = (call.flows.is_null(), &flows) {
        call.flows.set_region(env, 0, fl)?;
    }
    Ok(count.min(i32::MAX as u32) as jint)
}

/// Segments an 8-bit image.
///
/// Java: `static native int segmentBytes(long handle, byte[] pixels, int width, int height,
/// int channels, double[] params, int[] labels, float[] flows, ProgressListener listener)`. `pixels` holds
/// `height` rows of `width` pixels of `channels` interleaved unsigned samples; `labels`
/// (`width*height`) receives the objects 1..n (0 = background); `flows` (nullable,
/// `3*width*height`) receives the network's dY, dX and cell-probability planes at image size
/// (for `imageQc`); `listener` (nullable) is called after each batch of tiles and cancels by
/// returning false. Returns n.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_org_cytoseg_Native_segmentBytes<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    pixels: JByteArray<'local>,
    width: jint,
    height: jint,
    channels: jint,
    params: JDoubleArray<'local>,
    labels: JIntArray<'local>,
    flows: JFloatArray<'local>,
    listener: JObject<'local>,
) -> jint {
    env.with_env(|env| {
        let call = SegmentCall {
            handle,
            width,
            height,
            planes: 1,
            volume: None,
            channels,
            params: &params,
            labels: &labels,
            flows: &flows,
            listener: &listener,
        };
        segment(env, &pixels, call)
    })
    .resolve::<ThrowCytoseg>()
}

/// Segments a 16-bit image (Java `short` samples read as unsigned). Arguments as
/// `segmentBytes`.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_org_cytoseg_Native_segmentShorts<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    pixels: JShortArray<'local>,
    width: jint,
    height: jint,
    channels: jint,
    params: JDoubleArray<'local>,
    labels: JIntArray<'local>,
    flows: JFloatArray<'local>,
    listener: JObject<'local>,
) -> jint {
    env.with_env(|env| {
        let call = SegmentCall {
            handle,
            width,
            height,
            planes: 1,
            volume: None,
            channels,
            params: &params,
            labels: &labels,
            flows: &flows,
            listener: &listener,
        };
        segment(env, &pixels, call)
    })
    .resolve::<ThrowCytoseg>()
}

/// Segments a 32-bit float image. Arguments as `segmentBytes`.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_org_cytoseg_Native_segmentFloats<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    pixels: JFloatArray<'local>,
    width: jint,
    height: jint,
    channels: jint,
    params: JDoubleArray<'local>,
    labels: JIntArray<'local>,
    flows: JFloatArray<'local>,
    listener: JObject<'local>,
) -> jint {
    env.with_env(|env| {
        let call = SegmentCall {
            handle,
            width,
            height,
            planes: 1,
            volume: None,
            channels,
            params: &params,
            labels: &labels,
            flows: &flows,
            listener: &listener,
        };
        segment(env, &pixels, call)
    })
    .resolve::<ThrowCytoseg>()
}

/// Arguments of the z-stack entry points, after the pixels.
struct VolumeArgs<'a, 'local> {
    handle: jlong,
    width: jint,
    height: jint,
    planes: jint,
    channels: jint,
    params: &'a JDoubleArray<'local>,
    mode: jint,
    mode_value: f64,
    labels: &'a JIntArray<'local>,
    flows: &'a JFloatArray<'local>,
    listener: &'a JObject<'local>,
}

/// Segments a z-stack into 3-D objects (see `segmentVolumeBytes`).
fn segment_volume<'local, T: Sample + 'static>(
    env: &mut Env<'local>,
    pixels: &JPrimitiveArray<'local, T>,
    a: VolumeArgs<'_, 'local>,
) -> JResult<jint>
where
    JPrimitiveArray<'local, T>: ::jni::refs::Reference,
{
    let call = SegmentCall {
        handle: a.handle,
        width: a.width,
        height: a.height,
        planes: a.planes,
        volume: Some(VolumeMode::from_code(a.mode, a.mode_value)?),
        channels: a.channels,
        params: a.params,
        labels: a.labels,
        flows: a.flows,
        listener: a.listener,
    };
    segment(env, pixels, call)
}

/// One `segmentVolume<Type>` entry point per Java pixel array type (see
/// `segmentVolumeBytes`).
macro_rules! segment_volume_entry {
    ($name:ident, $array:ident, $doc:expr) => {
        #[doc = $doc]
        #[unsafe(no_mangle)]
        #[allow(clippy::too_many_arguments)]
        pub extern "system" fn $name<'local>(
            mut env: EnvUnowned<'local>,
            _class: JClass<'local>,
            handle: jlong,
            pixels: $array<'local>,
            width: jint,
            height: jint,
            planes: jint,
            channels: jint,
            params: JDoubleArray<'local>,
            mode: jint,
            mode_value: f64,
            labels: JIntArray<'local>,
            flows: JFloatArray<'local>,
            listener: JObject<'local>,
        ) -> jint {
            env.with_env(|env| {
                let a = VolumeArgs {
                    handle,
                    width,
                    height,
                    planes,
                    channels,
                    params: &params,
                    mode,
                    mode_value,
                    labels: &labels,
                    flows: &flows,
                    listener: &listener,
                };
                segment_volume(env, &pixels, a)
            })
            .resolve::<ThrowCytoseg>()
        }
    };
}

segment_volume_entry!(
    Java_org_cytoseg_Native_segmentVolumeBytes,
    JByteArray,
    "Segments an 8-bit z-stack into 3-D objects as Cellpose 4's `do_3D` or stitching mode.

Java: `static native int segmentVolumeBytes(long handle, byte[] pixels, int width, int height,
int planes, int channels, double[] params, int mode, double modeValue, int[] labels,
float[] flows, ProgressListener listener)`. `pixels` holds `planes` planes one after the
other, each `height` rows of `width` pixels of `channels` interleaved samples; `mode` 0 is
do_3D with `modeValue` the anisotropy (0 = 1), 1 is stitching with `modeValue` the IoU
threshold; `labels` (`planes*width*height`) receives the 3-D objects 1..n; `flows`
(nullable) receives `4*planes*width*height` (do_3D: dZ, dY, dX, cellprob) or
`3*planes*width*height` (stitching: each plane's dY, dX, cellprob); `listener` (nullable)
is called after each batch of tiles and cancels by returning false. Returns n."
);
segment_volume_entry!(
    Java_org_cytoseg_Native_segmentVolumeShorts,
    JShortArray,
    "Segments a 16-bit z-stack (samples read as unsigned). Arguments as `segmentVolumeBytes`."
);
segment_volume_entry!(
    Java_org_cytoseg_Native_segmentVolumeFloats,
    JFloatArray,
    "Segments a 32-bit float z-stack. Arguments as `segmentVolumeBytes`."
);
