//! C entry point for batch processing: `cytoseg_segment_folder`, the engine's batch run (the
//! same one as `cytoseg segment`, Fiji's Segment Folder and Python's `segment_folder`).

use std::ffi::{c_char, c_void};

use crate::core::batch::{self, BatchOptions, Event, StackMode, expand_inputs};

use super::boundary::{FfiError, boundary, c_str, cytoseg_status, null};
use super::model::{cytoseg_model, cytoseg_segment_params, model_ref, segment_params};
use super::versioned::{
    Versioned, prefix_sizes, read_versioned, write_first_version, write_version,
};

/// Options of `cytoseg_segment_folder`. Initialize with `cytoseg_batch_options_init_sized(&o,
/// sizeof o)` (or, as programs built against the first header do, `cytoseg_batch_options_init`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cytoseg_batch_options {
    /// `sizeof(cytoseg_batch_options)` of the header the program was built with; set by
    /// `cytoseg_batch_options_init`. A struct of an older header (smaller) is accepted: the
    /// fields it lacks take their defaults.
    pub struct_size: u32,
    /// Images processed at once; 0 = the number of cores, at most 4. Default: 0.
    pub jobs: u32,
    /// Memory the images in flight may use together, in bytes (estimated from each file's
    /// header); 0 = 60% of the available memory. Default: 0.
    pub max_memory_bytes: u64,
    /// Non-zero: also take images from the sub-folders of folder inputs (outputs mirror the
    /// sub-folders). Default: 0.
    pub recursive: u32,
    /// Non-zero: redo images finished by an earlier run and replace existing outputs.
    /// Default: 0.
    pub overwrite: u32,
    /// Non-zero: write `<stem>_objects.csv` per image. Default: 1.
    pub objects: u32,
    /// Non-zero: write `<stem>_flows.npy` per image. Default: 0.
    pub save_flows: u32,
    /// Non-zero: write `summary.csv` and `run.json` at the end (default). 0 for a worker of a
    /// distributed run that does part of a folder: a last call over all inputs (which skips the
    /// finished images) writes the summary of the whole. Default: 1.
    pub run_files: u32,
    /// What runs this batch, recorded as `command` in `run.json` (NUL-terminated UTF-8, e.g.
    /// your program's name and version; read during the call only), or NULL for
    /// `{"api": "c"}`. Default: NULL.
    pub invocation: *const c_char,
    /// Added after the first version (fill it with `cytoseg_batch_options_init_sized`):
    /// how z-stacks become objects. -1: plane by plane, objects numbered per plane (2-D
    /// images always are); a `cytoseg_volume_mode` value: 3-D objects, as `cytoseg segment
    /// --do-3d` (`CYTOSEG_VOLUME_MODE_DO3D`) or `--stitch-threshold`
    /// (`CYTOSEG_VOLUME_MODE_STITCH`); 2-D images then fail, each named in `summary.csv`.
    /// Default: -1.
    pub volume_mode: i32,
    /// With `volume_mode` `DO3D`: the anisotropy (z spacing / pixel size), 0 = each file's z
    /// spacing (1 when it has none); with `STITCH`: the IoU threshold (e.g. 0.25). Default: 0.
    pub volume_value: f64,
}

impl Versioned for cytoseg_batch_options {
    const NAME: &'static str = "cytoseg_batch_options";
    const INIT: &'static str = "cytoseg_batch_options_init";
    const FIRST_VERSION_SIZE: usize = 48;
    fn prefix_sizes() -> &'static [usize] {
        prefix_sizes!(cytoseg_batch_options {
            struct_size: u32,
            jobs: u32,
            max_memory_bytes: u64,
            recursive: u32,
            overwrite: u32,
            objects: u32,
            save_flows: u32,
            run_files: u32,
            invocation: *const c_char,
            volume_mode: i32,
            volume_value: f64,
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

fn default_batch_options() -> cytoseg_batch_options {
    cytoseg_batch_options {
        struct_size: std::mem::size_of::<cytoseg_batch_options>() as u32,
        jobs: 0,
        max_memory_bytes: 0,
        recursive: 0,
        overwrite: 0,
        objects: 1,
        save_flows: 0,
        run_files: 1,
        invocation: std::ptr::null(),
        volume_mode: -1,
        volume_value: 0.0,
    }
}

/// Images by status after `cytoseg_segment_folder`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct cytoseg_batch_counts {
    /// Segmented in this run.
    pub ok: usize,
    /// Finished by an earlier run into the same folder, with the same settings (not redone).
    pub skipped: usize,
    /// Failed: unreadable or unsupported files, ... (each named in `summary.csv`).
    pub failed: usize,
    /// Not finished because the run was cancelled (a later run with the same settings does
    /// them).
    pub cancelled: usize,
}

/// Batch progress callback, called on the thread that called `cytoseg_segment_folder`: after
/// each image with the images finished so far, the total and that image's one-line report
/// (`[k/n] ok FILE: N object(s) ...`, `... FAILED FILE: error`; NUL-terminated UTF-8, valid
/// during the call only), once before any image starts and about every 100 ms in between with
/// the same counts and `line` NULL. Return 0 to go on, non-zero to cancel: images in progress
/// stop at their next tile batch, the rest are not started (cancelling at the first call
/// cancels every image).
pub type cytoseg_batch_progress_fn = Option<
    extern "C" fn(userdata: *mut c_void, done: usize, total: usize, line: *const c_char) -> i32,
>;

/// Fills the fields of the struct's first version with the defaults: jobs and memory
/// automatic, no recursion, no overwrite, objects tables written, no flows, run files written,
/// invocation NULL (`struct_size` = that version's size, so later fields are not read). Kept
/// for programs built against the first header; new code uses
/// `cytoseg_batch_options_init_sized(&options, sizeof options)`, which fills every field.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_batch_options_init(
    options: *mut cytoseg_batch_options,
) -> cytoseg_status {
    boundary(|| {
        // SAFETY: the caller provides a writable struct of some version.
        unsafe { write_first_version(options, default_batch_options(), "options") }
    })
}

/// Fills every field of `options` that a struct of `size` bytes has with the defaults (those
/// of `cytoseg_batch_options_init`, and stacks plane by plane), `struct_size` = `size`.
///
/// @param options  The struct to fill.
/// @param size     `sizeof(cytoseg_batch_options)` in the caller's header (the size of one of
///                 the struct's versions, at most this library's).
/// @return `CYTOSEG_STATUS_OK`, or `CYTOSEG_STATUS_INVALID_ARGUMENT` for a size of no version
///         (nothing written).
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_batch_options_init_sized(
    options: *mut cytoseg_batch_options,
    size: usize,
) -> cytoseg_status {
    boundary(|| {
        // SAFETY: the caller provides a writable struct of `size` bytes.
        unsafe { write_version(options, default_batch_options(), size, "options") }
    })
}

/// Segments images, folders of images and glob patterns into an output folder, exactly as
/// `cytoseg segment` does: per image `<stem>_labels.tif` (and `<stem>_objects.csv`,
/// `<stem>_flows.npy`), per run `summary.csv` and `run.json`, with records in `.cytoseg/` so that
/// a later call with the same settings skips finished images (resume after a cancel or a
/// crash). An image that fails is reported (`summary.csv`, the callback) and the others go on.
///
/// @param model      A loaded model (may be used by other threads at the same time).
/// @param inputs     `n_inputs` NUL-terminated UTF-8 paths: files, folders or glob patterns.
/// @param n_inputs   Number of inputs (>= 1).
/// @param out_dir    Output folder (created if missing), NUL-terminated UTF-8.
/// @param params     Segmentation parameters (`cytoseg_segment_params_init`), or NULL for the
///                   model's defaults.
/// @param options    Batch options (`cytoseg_batch_options_init`), or NULL for the defaults.
/// @param progress   Optional progress callback (may be NULL); can cancel.
/// @param userdata   Passed to `progress` unchanged.
/// @param counts     Optional output (may be NULL): images by status; written on
///                   `CYTOSEG_STATUS_OK` and `CYTOSEG_STATUS_CANCELLED`.
/// @return `CYTOSEG_STATUS_OK` when the run finished (check `counts.failed`);
///         `CYTOSEG_STATUS_CANCELLED` when the callback cancelled it (summary.csv and run.json
///         are still written); another status when it could not start (no inputs, a missing
///         input, two inputs writing the same outputs, ...), with nothing written.
///
/// Thread safety: may be called from several threads at once, with different output folders.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_segment_folder(
    model: *const cytoseg_model,
    inputs: *const *const c_char,
    n_inputs: usize,
    out_dir: *const c_char,
    params: *const cytoseg_segment_params,
    options: *const cytoseg_batch_options,
    progress: cytoseg_batch_progress_fn,
    userdata: *mut c_void,
    counts: *mut cytoseg_batch_counts,
) -> cytoseg_status {
    boundary(|| {
        let m = model_ref(model)?;
        if inputs.is_null() {
            return Err(null("inputs"));
        }
        if n_inputs == 0 {
            return Err(FfiError(
                cytoseg_status::InvalidArgument,
                "n_inputs is 0: give at least one file, folder or glob pattern".into(),
            ));
        }
        // SAFETY: the caller provides n_inputs string pointers.
        let ptrs = unsafe { super::boundary::input(inputs, n_inputs, "inputs") }?;
        let args = ptrs
            .iter()
            .enumerate()
            .map(|(i, &p)| c_str(p, &format!("inputs[{i}]")).map(str::to_string))
            .collect::<Result<Vec<_>, _>>()?;
        let out = std::path::PathBuf::from(c_str(out_dir, "out_dir")?);
        // SAFETY: NULL or a caller struct of some version.
        let mut p = unsafe { segment_params(m, params) }?;
        let o = if options.is_null() {
            default_batch_options()
        } else {
            // SAFETY: non-null caller struct of some version.
            unsafe { read_versioned(options, default_batch_options(), "options") }?
        };
        let invocation = if o.invocation.is_null() {
            serde_json::json!({"api": "c", "function": "cytoseg_segment_folder", "inputs": args})
        } else {
            serde_json::json!({
                "api": "c",
                "function": "cytoseg_segment_folder",
                "caller": c_str(o.invocation, "options.invocation")?,
                "inputs": args,
            })
        };
        let opts = BatchOptions {
            jobs: batch::default_jobs(Some(o.jobs as usize)),
            memory_budget: if o.max_memory_bytes > 0 {
                o.max_memory_bytes
            } else {
                batch::default_memory_budget()
            },
            overwrite: o.overwrite != 0,
            measure: o.objects != 0,
            save_flows: o.save_flows != 0,
            run_files: o.run_files != 0,
            invocation,
            stack_mode: StackMode::from_code(o.volume_mode, o.volume_value)?,
            ..BatchOptions::new(&out)
        };
        p.keep_flows = opts.save_flows;
        let found = expand_inputs(&args, o.recursive != 0, &out)?;
        let mut lines = batch::EventLines::new(found.len());
        let mut handler = |e: Event<'_>| {
            let Some(f) = progress else { return true };
            let (done, total, line) = lines.next(e);
            let line =
                line.map(|l| std::ffi::CString::new(l.replace('\0', " ")).unwrap_or_default());
            let ptr = line.as_ref().map_or(std::ptr::null(), |l| l.as_ptr());
            f(userdata, done, total, ptr) == 0
        };
        let report = batch::segment_folder_on_caller_thread(m, &p, &found, &opts, &mut handler)?;
        if !counts.is_null() {
            let c = report.counts;
            // SAFETY: non-null caller struct.
            unsafe {
                counts.write_unaligned(cytoseg_batch_counts {
                    ok: c.ok,
                    skipped: c.skipped,
                    failed: c.failed,
                    cancelled: c.cancelled,
                })
            };
        }
        if report.counts.cancelled > 0 {
            return Err(FfiError(
                cytoseg_status::Cancelled,
                format!(
                    "cancelled: {} image(s) not finished (run again with the same settings to finish them)",
                    report.counts.cancelled
                ),
            ));
        }
        Ok(())
    })
}
