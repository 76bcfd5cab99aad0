//! C entry points for models: load, describe, segment, free.

use std::ffi::{c_char, c_void};
use std::path::PathBuf;

use crate::core::model::{
    ChannelChoice, LoadOptions, Model, Precision, Progress, SegmentParams, Tiling, VolumeMode,
    runtime,
};

use super::boundary::{
    FfiError, boundary, c_str, cytoseg_status, expect_len, image_input, null, output, stack_input,
};
use super::flows::cytoseg_masks_params;
use super::versioned::{
    Versioned, prefix_sizes, read_versioned, write_first_version, write_version,
};

/// A loaded model (opaque). Created by `cytoseg_model_load`, released by `cytoseg_model_free`.
/// Thread safety: one model may be used by several threads at once (`cytoseg_model_segment` is
/// reentrant; on the CPU up to two network calls run at once, each in its own ONNX Runtime
/// session, further calls wait).
pub struct cytoseg_model {
    inner: Model,
}

/// Execution devices for `cytoseg_load_options.device`.
#[repr(i32)]
#[derive(Debug, Clone, Copy)]
pub enum cytoseg_device {
    /// The first available GPU provider (TensorRT, CUDA, Core ML, DirectML), else the CPU.
    Auto = 0,
    /// The CPU.
    Cpu = 1,
    /// NVIDIA CUDA.
    Cuda = 2,
    /// NVIDIA TensorRT.
    Tensorrt = 3,
    /// Apple Core ML.
    Coreml = 4,
    /// DirectML (Windows).
    Directml = 5,
}

/// Sample types for `cytoseg_model_segment`.
#[repr(i32)]
#[derive(Debug, Clone, Copy)]
pub enum cytoseg_dtype {
    /// uint8_t samples.
    U8 = 1,
    /// uint16_t samples.
    U16 = 2,
    /// float samples.
    F32 = 3,
}

/// How to load a model. Initialize with `cytoseg_load_options_init`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cytoseg_load_options {
    /// `sizeof(cytoseg_load_options)` of the header the program was built with; set by `cytoseg_load_options_init`. A
    /// struct of an older header (smaller) is accepted: the fields it lacks take their defaults.
    pub struct_size: u32,
    /// A `cytoseg_device` value. Default: `CYTOSEG_DEVICE_AUTO`. Naming a device the loaded
    /// ONNX Runtime lacks is an error (`CYTOSEG_STATUS_RUNTIME`), not a silent CPU run.
    pub device: i32,
    /// ONNX Runtime intra-op threads; 0 = one per core. Default: 0.
    pub threads: u32,
    /// Reserved, must be 0.
    pub reserved: u32,
    /// Path of the ONNX Runtime library, or NULL to search `ORT_DYLIB_PATH`, then the folder of
    /// libcytoseg. Only the first successful load in a
    /// process counts: one ONNX Runtime per process. Borrowed for the call only.
    pub ort_lib: *const c_char,
}

/// Parameters of `cytoseg_model_segment`. Initialize with `cytoseg_segment_params_init`, which
/// copies the model's defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cytoseg_segment_params {
    /// `sizeof(cytoseg_segment_params)` of the header the program was built with; set by `cytoseg_segment_params_init`. A
    /// struct of an older header (smaller) is accepted: the fields it lacks take their defaults.
    pub struct_size: u32,
    /// Image channel for a one-channel model (0-based), or -1 for the mean of all channels.
    /// Default: -1.
    pub channel: i32,
    /// Typical object diameter in pixels; 0 uses the model's (no resizing). Default: 0.
    pub diameter: f64,
    /// Tile edge in pixels (multiple of 16); 0 uses the model's. Default: 0.
    pub tile_size: u32,
    /// Tiles per network call. Default: 8.
    pub batch_size: u32,
    /// Fractional tile overlap; negative uses the model's. Default: -1.
    pub tile_overlap: f64,
    /// Flows → labels parameters (`niter` 0 = 200 scaled by the resize factor, as Cellpose).
    pub masks: cytoseg_masks_params,
    /// Added after the first version (fill it with `cytoseg_segment_params_init_sized`): how
    /// images are cut into network tiles, a `cytoseg_tiling` value. Default:
    /// `CYTOSEG_TILING_FAST`, also for programs built against the first header.
    pub tiling: i32,
    /// Unused; 0. (It keeps `precision` out of the padding that ended the struct of the
    /// version that added `tiling`.)
    pub reserved: i32,
    /// Added in the third version (fill it with `cytoseg_segment_params_init_sized`): which
    /// copy of the network runs, a `cytoseg_precision` value. Default:
    /// `CYTOSEG_PRECISION_AUTO`, also for programs built against an older header.
    pub precision: i32,
}

/// Which copy of the network runs (`cytoseg_segment_params.precision`).
#[repr(i32)]
#[derive(Debug, Clone, Copy)]
pub enum cytoseg_precision {
    /// The model's int8 variant on the CPU with `CYTOSEG_TILING_FAST` when its validated
    /// AP@0.5 is within 0.005 of float32's, else float32 (always with
    /// `CYTOSEG_TILING_CELLPOSE`, in do_3D (`CYTOSEG_VOLUME_MODE_DO3D`) and on GPUs).
    Auto = 0,
    /// The float32 network: with `CYTOSEG_TILING_CELLPOSE`, labels identical to Cellpose's.
    Fp32 = 1,
    /// The model's int8 variant (CPU only; `"precisions"` in `cytoseg_model_info` says whether
    /// the model has one): an error where it has none.
    Int8 = 2,
}

/// How images are cut into network tiles (`cytoseg_segment_params.tiling`).
#[repr(i32)]
#[derive(Debug, Clone, Copy)]
pub enum cytoseg_tiling {
    /// Whole images up to 1024² in one piece, larger ones in few large tiles: the network sees
    /// up to 3.5× fewer pixels than with Cellpose's tiles (1.3-2× faster on 2-D images, 2-3× in
    /// 3-D), at the same accuracy in 2-D (slightly lower with do_3D). `tile_size` is the
    /// largest tile edge (0 = 1024), `tile_overlap` a fraction of it (negative = 0.0625).
    Fast = 0,
    /// Cellpose 4's tiles (the model's 256² with 10% overlap, small images padded to a tile):
    /// labels identical to Cellpose's pipeline around the same network.
    Cellpose = 1,
}

/// Progress callback: called from the calling thread after each batch of tiles with the
/// number of tiles done and in total. Return 0 to continue, non-zero to cancel (the call then
/// returns `CYTOSEG_STATUS_CANCELLED`). It must not keep pointers passed to it.
pub type cytoseg_progress_fn =
    Option<extern "C" fn(userdata: *mut c_void, done: usize, total: usize) -> i32>;

impl Versioned for cytoseg_load_options {
    const NAME: &'static str = "cytoseg_load_options";
    const INIT: &'static str = "cytoseg_load_options_init";
    const FIRST_VERSION_SIZE: usize = 24;
    fn prefix_sizes() -> &'static [usize] {
        prefix_sizes!(cytoseg_load_options {
            struct_size: u32,
            device: i32,
            threads: u32,
            reserved: u32,
            ort_lib: *const c_char,
        })
    }
    unsafe fn read_size(ptr: *const Self) -> usize {
        // SAFETY: as the trait requires.
        unsafe { (ptr as *const u32).read_unaligned() as usize }
    }
    fn set_size(&mut self, size: usize) {
        self.struct_size = size as u32;
    }
}

impl Versioned for cytoseg_segment_params {
    const NAME: &'static str = "cytoseg_segment_params";
    const INIT: &'static str = "cytoseg_segment_params_init";
    const FIRST_VERSION_SIZE: usize = 72;
    fn prefix_sizes() -> &'static [usize] {
        prefix_sizes!(cytoseg_segment_params {
            struct_size: u32,
            channel: i32,
            diameter: f64,
            tile_size: u32,
            batch_size: u32,
            tile_overlap: f64,
            masks: cytoseg_masks_params,
            tiling: i32,
            reserved: i32,
            precision: i32,
        })
    }
    unsafe fn read_size(ptr: *const Self) -> usize {
        // SAFETY: as the trait requires.
        unsafe { (ptr as *const u32).read_unaligned() as usize }
    }
    fn set_size(&mut self, size: usize) {
        self.struct_size = size as u32;
    }
}

/// The C defaults of `cytoseg_load_options`.
fn default_load_options() -> cytoseg_load_options {
    cytoseg_load_options {
        struct_size: std::mem::size_of::<cytoseg_load_options>() as u32,
        device: cytoseg_device::Auto as i32,
        threads: 0,
        reserved: 0,
        ort_lib: std::ptr::null(),
    }
}

/// The C form of a model's default segmentation parameters.
fn default_segment_params(m: &Model) -> cytoseg_segment_params {
    let d = SegmentParams::for_model(m);
    cytoseg_segment_params {
        struct_size: std::mem::size_of::<cytoseg_segment_params>() as u32,
        channel: -1,
        diameter: 0.0,
        tile_size: 0,
        batch_size: d.batch_size as u32,
        tile_overlap: -1.0,
        masks: d.mask.into(),
        tiling: d.tiling.code(),
        reserved: 0,
        precision: d.precision.code(),
    }
}

/// Fills `options` with the defaults (auto device, default threads, library search).
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_load_options_init(options: *mut cytoseg_load_options) -> cytoseg_status {
    boundary(|| {
        // SAFETY: the caller provides a writable struct of some version.
        unsafe { write_first_version(options, default_load_options(), "options") }
    })
}

/// Loads a model package by bundled name (e.g. "nuclei") or folder path, verifies its
/// ONNX file against the manifest, and opens it on the requested device.
///
/// @param name_or_path  NUL-terminated UTF-8 name or path.
/// @param options       Load options, or NULL for the defaults.
/// @param out           Receives the new model on success; free it with `cytoseg_model_free`.
/// @return `CYTOSEG_STATUS_OK`; `CYTOSEG_STATUS_MODEL` for a missing or corrupt package;
///         `CYTOSEG_STATUS_RUNTIME` when ONNX Runtime or the device is unavailable.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_model_load(
    name_or_path: *const c_char,
    options: *const cytoseg_load_options,
    out: *mut *mut cytoseg_model,
) -> cytoseg_status {
    boundary(|| {
        let name = c_str(name_or_path, "name_or_path")?;
        if out.is_null() {
            return Err(null("out"));
        }
        let opts = if options.is_null() {
            LoadOptions {
                ort_search: crate::host::library_ort_search(None),
                model_dirs: crate::host::library_model_dirs(),
                ..LoadOptions::default()
            }
        } else {
            // SAFETY: non-null; caller-provided struct of some version.
            let o = unsafe { read_versioned(options, default_load_options(), "options") }?;
            // cytoseg_device values are the positions in the engine's device list.
            let device = usize::try_from(o.device)
                .ok()
                .and_then(|i| runtime::ALL_DEVICES.get(i).copied())
                .ok_or_else(|| {
                    FfiError(
                        cytoseg_status::InvalidArgument,
                        format!(
                            "options.device is {}: use a cytoseg_device value (0..={})",
                            o.device,
                            runtime::ALL_DEVICES.len() - 1
                        ),
                    )
                })?;
            let ort_lib = if o.ort_lib.is_null() {
                None
            } else {
                Some(PathBuf::from(c_str(o.ort_lib, "options.ort_lib")?))
            };
            LoadOptions {
                device,
                ort_search: crate::host::library_ort_search(ort_lib.as_deref()),
                model_dirs: crate::host::library_model_dirs(),
                threads: o.threads as usize,
            }
        };
        let model = Model::load(name, &opts)?;
        // SAFETY: `out` checked non-null; ownership passes to the caller.
        unsafe { *out = Box::into_raw(Box::new(cytoseg_model { inner: model })) };
        Ok(())
    })
}

/// Releases a model. NULL is a no-op. The model must not be in use by another thread.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_model_free(model: *mut cytoseg_model) {
    let _ = boundary(|| {
        if !model.is_null() {
            // SAFETY: created by Box::into_raw in cytoseg_model_load and not freed before.
            drop(unsafe { Box::from_raw(model) });
        }
        Ok(())
    });
}

/// The segmentation parameters a caller's `cytoseg_segment_params` (NULL = the model's
/// defaults) stands for: the one conversion every entry point uses.
///
/// # Safety
/// `params` is NULL or points to an initialized struct of some version.
pub(crate) unsafe fn segment_params(
    m: &Model,
    params: *const cytoseg_segment_params,
) -> Result<SegmentParams, FfiError> {
    let mut p = SegmentParams::for_model(m);
    if params.is_null() {
        return Ok(p);
    }
    // SAFETY: non-null caller struct of some version.
    let c = unsafe { read_versioned(params, default_segment_params(m), "params") }?;
    p.channels = channel_choice(c.channel, "params.channel")?;
    p.diameter = (c.diameter != 0.0).then_some(c.diameter);
    p.tile_size = (c.tile_size != 0).then_some(c.tile_size as usize);
    p.tile_overlap = (c.tile_overlap >= 0.0).then_some(c.tile_overlap);
    p.batch_size = c.batch_size.max(1) as usize;
    p.mask = c.masks.to_core()?;
    p.tiling = Tiling::from_code(i64::from(c.tiling), "params.tiling")?;
    p.precision = Precision::from_code(i64::from(c.precision), "params.precision")?;
    Ok(p)
}

/// A C channel number: -1 for the mean of all channels (automatic), else one 0-based channel.
pub(crate) fn channel_choice(ch: i32, name: &str) -> Result<ChannelChoice, FfiError> {
    Ok(ChannelChoice::from_index(i64::from(ch), name)?)
}

pub(crate) fn model_ref<'a>(model: *const cytoseg_model) -> Result<&'a Model, FfiError> {
    if model.is_null() {
        return Err(null("model"));
    }
    // SAFETY: non-null pointer from cytoseg_model_load, alive until cytoseg_model_free.
    Ok(unsafe { &(*model).inner })
}

/// Copies a JSON description of the model (name, version, family, sha256, diameter, channels,
/// tile size, device in use, ONNX Runtime version and library) into `buf` as a NUL-terminated
/// string, truncated to `buf_len`.
///
/// @param needed  Optional: receives the bytes the full text needs, including the NUL.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_model_info(
    model: *const cytoseg_model,
    buf: *mut c_char,
    buf_len: usize,
    needed: *mut usize,
) -> cytoseg_status {
    boundary(|| {
        let m = model_ref(model)?;
        let info = serde_json::json!({
            "name": m.manifest.name,
            "version": m.manifest.version,
            "family": m.manifest.family,
            "description": m.manifest.description,
            "sha256": m.manifest.model.sha256,
            "diameter": m.manifest.diameter,
            "channels": m.manifest.input.channels,
            "tile_size": m.manifest.tiling.tile_size,
            "precisions": m.precisions().iter().map(|p| p.name()).collect::<Vec<_>>(),
            "license": m.manifest.license,
            "device": m.device.name(),
            "onnxruntime_version": m.runtime.version,
            "onnxruntime_library": m.runtime.library.display().to_string(),
            "path": m.dir.display().to_string(),
        })
        .to_string();
        let bytes = info.as_bytes();
        if !needed.is_null() {
            // SAFETY: non-null; caller-provided size_t.
            unsafe { *needed = bytes.len() + 1 };
        }
        if !buf.is_null() && buf_len > 0 {
            // SAFETY: checked for NULL; caller provides buf_len bytes.
            let out = unsafe { output(buf as *mut u8, buf_len, "buf") }?;
            let n = bytes.len().min(buf_len - 1);
            out[..n].copy_from_slice(&bytes[..n]);
            out[n] = 0;
        }
        Ok(())
    })
}

/// Fills the fields of the struct's first version with the model's defaults (`struct_size` =
/// that version's size, so later fields are not read and take their defaults). Kept for
/// programs built against the first header; new code uses
/// `cytoseg_segment_params_init_sized(model, &params, sizeof params)`, which fills every field.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_segment_params_init(
    model: *const cytoseg_model,
    params: *mut cytoseg_segment_params,
) -> cytoseg_status {
    boundary(|| {
        let m = model_ref(model)?;
        // SAFETY: the caller provides a writable struct of some version.
        unsafe { write_first_version(params, default_segment_params(m), "params") }
    })
}

/// Fills every field of `params` that a struct of `size` bytes has with the model's defaults
/// (those of `cytoseg_segment_params_init`, and `CYTOSEG_TILING_FAST`), `struct_size` = `size`.
///
/// @param model   A loaded model.
/// @param params  The struct to fill.
/// @param size    `sizeof(cytoseg_segment_params)` in the caller's header (the size of one of
///                the struct's versions, at most this library's).
/// @return `CYTOSEG_STATUS_OK`, or `CYTOSEG_STATUS_INVALID_ARGUMENT` for a size of no version
///         (nothing written).
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_segment_params_init_sized(
    model: *const cytoseg_model,
    params: *mut cytoseg_segment_params,
    size: usize,
) -> cytoseg_status {
    boundary(|| {
        let m = model_ref(model)?;
        // SAFETY: the caller provides a writable struct of `size` bytes.
        unsafe { write_version(params, default_segment_params(m), size, "params") }
    })
}

/// The engine's progress callback for a caller's `progress` (NULL: never cancels): a non-zero
/// return from the caller cancels.
fn tile_callback(
    progress: cytoseg_progress_fn,
    userdata: *mut c_void,
) -> impl Fn(Progress) -> bool {
    move |pr: Progress| match progress {
        Some(f) => f(userdata, pr.tiles_done, pr.tiles_total) == 0,
        None => true,
    }
}

/// Writes an object count to an optional output.
///
/// # Safety
/// `n_labels` is NULL or points to a writable `uint32_t`.
unsafe fn write_count(n_labels: *mut u32, count: u32) {
    if !n_labels.is_null() {
        // SAFETY: non-null caller uint32_t (the function's contract).
        unsafe { *n_labels = count };
    }
}

/// Segments one 2-D image: normalization, resizing by diameter, tiled network, flows → labels
/// exactly as Cellpose 4.
///
/// @param model             A loaded model.
/// @param pixels            Samples, `height` rows of `width` pixels × `channels` interleaved
///                          samples, of type `dtype`; rows start every `row_stride_bytes`.
/// @param dtype             A `cytoseg_dtype` value.
/// @param width, height     Image size (each >= 2).
/// @param channels          Samples per pixel (>= 1).
/// @param row_stride_bytes  Bytes between row starts (>= width * channels * sample size, a
///                          multiple of the sample size).
/// @param params            Parameters from `cytoseg_segment_params_init`, or NULL for the
///                          model's defaults.
/// @param labels            Output, caller-allocated `height * width` uint32 (0 = background,
///                          objects 1..n). Written only on success.
/// @param labels_len        Must be `height * width`.
/// @param flows             Optional output (may be NULL): `3 * height * width` floats, the
///                          planes dY, dX, cellprob of the network at image size.
/// @param flows_len         `3 * height * width` when `flows` is given, else ignored.
/// @param n_labels          Optional output (may be NULL): the number of objects n.
/// @param progress          Optional progress callback (may be NULL); can cancel.
/// @param userdata          Passed to `progress` unchanged.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_model_segment(
    model: *const cytoseg_model,
    pixels: *const c_void,
    dtype: i32,
    width: usize,
    height: usize,
    channels: usize,
    row_stride_bytes: usize,
    params: *const cytoseg_segment_params,
    labels: *mut u32,
    labels_len: usize,
    flows: *mut f32,
    flows_len: usize,
    n_labels: *mut u32,
    progress: cytoseg_progress_fn,
    userdata: *mut c_void,
) -> cytoseg_status {
    boundary(|| {
        let m = model_ref(model)?;
        let n = crate::core::flows::check_size(height, width)?;
        expect_len("labels_len", labels_len, Some(n), "height * width")?;
        if !flows.is_null() {
            expect_len(
                "flows_len",
                flows_len,
                n.checked_mul(3),
                "3 * height * width",
            )?;
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
        // SAFETY: NULL or a caller struct of some version.
        let mut p = unsafe { segment_params(m, params) }?;
        p.keep_flows = !flows.is_null();
        let cb = tile_callback(progress, userdata);
        let seg = m.segment(&view, &p, Some(&cb))?;
        // SAFETY: lengths checked above.
        unsafe { output(labels, labels_len, "labels") }?.copy_from_slice(&seg.labels);
        if let Some(fl) = &seg.flows {
            // SAFETY: non-null (keep_flows) and length checked.
            let out = unsafe { output(flows, flows_len, "flows") }?;
            for (k, plane) in fl.iter().enumerate() {
                out[k * n..(k + 1) * n].copy_from_slice(plane);
            }
        }
        // SAFETY: NULL or a caller uint32_t.
        unsafe { write_count(n_labels, seg.count) };
        Ok(())
    })
}

/// How `cytoseg_model_segment_volume` turns a z-stack into 3-D objects.
#[repr(i32)]
#[derive(Debug, Clone, Copy)]
pub enum cytoseg_volume_mode {
    /// Cellpose's `do_3D`: the network on the YX, ZY and ZX planes, 3-D flows → labels;
    /// `mode_value` is the anisotropy (z spacing / pixel size; 0 means 1).
    Do3d = 0,
    /// Cellpose's stitching: 2-D labels per plane linked across z; `mode_value` is the IoU
    /// threshold (e.g. 0.25).
    Stitch = 1,
}

/// Segments a z-stack into 3-D objects exactly as Cellpose 4's `eval(do_3D=True)` or
/// `eval(stitch_threshold=T)` (the stack normalized as one volume); see `cytoseg_volume_mode`.
///
/// @param model               A loaded model.
/// @param pixels              `planes` planes, each `height` rows of `width` pixels × `channels`
///                            interleaved samples of type `dtype`; rows start every
///                            `row_stride_bytes`, planes every `plane_stride_bytes`.
/// @param dtype               A `cytoseg_dtype` value.
/// @param width, height       Plane size (each >= 2).
/// @param planes              Number of z planes (>= 2).
/// @param channels            Samples per pixel (>= 1).
/// @param row_stride_bytes    Bytes between row starts (as for `cytoseg_model_segment`).
/// @param plane_stride_bytes  Bytes between plane starts (>= `height * row_stride_bytes`).
/// @param params              Parameters from `cytoseg_segment_params_init`, or NULL for the
///                            model's defaults (`min_size` counts voxels).
/// @param mode                A `cytoseg_volume_mode` value.
/// @param mode_value          The anisotropy (`Do3d`; 0 = 1) or the stitch threshold (`Stitch`).
/// @param labels              Output, caller-allocated `planes * height * width` uint32 (0 =
///                            background, objects 1..n). Written only on success.
/// @param labels_len          Must be `planes * height * width`.
/// @param flows               Optional output (may be NULL): `Do3d`: `4 * planes * height *
///                            width` floats, the volumes dZ, dY, dX, cellprob; `Stitch`: `planes`
///                            blocks of `3 * height * width`, each plane's dY, dX, cellprob.
/// @param flows_len           That length when `flows` is given, else ignored.
/// @param n_labels            Optional output (may be NULL): the number of objects n.
/// @param progress            Optional progress callback (may be NULL), tiles of all planes
///                            (and orientations); can cancel.
/// @param userdata            Passed to `progress` unchanged.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_model_segment_volume(
    model: *const cytoseg_model,
    pixels: *const c_void,
    dtype: i32,
    width: usize,
    height: usize,
    planes: usize,
    channels: usize,
    row_stride_bytes: usize,
    plane_stride_bytes: usize,
    params: *const cytoseg_segment_params,
    mode: i32,
    mode_value: f64,
    labels: *mut u32,
    labels_len: usize,
    flows: *mut f32,
    flows_len: usize,
    n_labels: *mut u32,
    progress: cytoseg_progress_fn,
    userdata: *mut c_void,
) -> cytoseg_status {
    boundary(|| {
        let m = model_ref(model)?;
        let mode = VolumeMode::from_code(mode, mode_value)?;
        let flow_arrays = mode.flow_arrays();
        let n = crate::core::model::check_stack_size(planes, height, width)?;
        expect_len("labels_len", labels_len, Some(n), "planes * height * width")?;
        if !flows.is_null() {
            expect_len(
                "flows_len",
                flows_len,
                n.checked_mul(flow_arrays),
                if flow_arrays == 4 {
                    "4 * planes * height * width"
                } else {
                    "3 * planes * height * width"
                },
            )?;
        }
        // SAFETY: the caller provides the stack buffer described by the arguments.
        let views = unsafe {
            stack_input(
                pixels,
                dtype,
                width,
                height,
                planes,
                channels,
                row_stride_bytes,
                plane_stride_bytes,
                "pixels",
            )
        }?;
        // SAFETY: NULL or a caller struct of some version.
        let mut p = unsafe { segment_params(m, params) }?;
        p.keep_flows = !flows.is_null();
        let cb = tile_callback(progress, userdata);
        let seg = m.segment_volume(&views, &p, mode, Some(&cb))?;
        // SAFETY: lengths checked above.
        unsafe { output(labels, labels_len, "labels") }?.copy_from_slice(&seg.labels);
        if let Some(fl) = &seg.flows {
            // SAFETY: non-null (keep_flows) and length checked.
            unsafe { output(flows, flows_len, "flows") }?.copy_from_slice(fl);
        }
        // SAFETY: NULL or a caller uint32_t.
        unsafe { write_count(n_labels, seg.count) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::{cytoseg_device, cytoseg_precision, cytoseg_tiling};
    use crate::core::model::{Device, Precision, Tiling, runtime::ALL_DEVICES};

    #[test]
    fn device_values_are_positions_in_the_engine_list() {
        for (value, device) in [
            (cytoseg_device::Auto, Device::Auto),
            (cytoseg_device::Cpu, Device::Cpu),
            (cytoseg_device::Cuda, Device::Cuda),
            (cytoseg_device::Tensorrt, Device::TensorRt),
            (cytoseg_device::Coreml, Device::CoreMl),
            (cytoseg_device::Directml, Device::DirectMl),
        ] {
            assert_eq!(ALL_DEVICES[value as usize], device);
        }
        assert_eq!(ALL_DEVICES.len(), 6);
    }

    #[test]
    fn tiling_values_are_the_engine_codes() {
        assert_eq!(cytoseg_tiling::Fast as i32, Tiling::Fast.code());
        assert_eq!(cytoseg_tiling::Cellpose as i32, Tiling::Cellpose.code());
    }

    #[test]
    fn precision_values_are_the_engine_codes() {
        assert_eq!(cytoseg_precision::Auto as i32, Precision::Auto.code());
        assert_eq!(cytoseg_precision::Fp32 as i32, Precision::Fp32.code());
        assert_eq!(cytoseg_precision::Int8 as i32, Precision::Int8.code());
        assert_eq!(Precision::ALL.len(), 3);
    }
}
