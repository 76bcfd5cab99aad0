//! C entry point for native fine-tuning: `cytoseg_train`, the engine's trainer (the same one
//! as `cytoseg train`).

use std::ffi::{c_char, c_void};
use std::path::PathBuf;

use crate::core::model::registry::resolve_model;
use crate::core::train::{self, TrainOptions};

use super::boundary::{boundary, c_str, cytoseg_status};
use super::versioned::{Versioned, prefix_sizes, read_versioned, write_first_version};

/// Options of `cytoseg_train`. Initialize with `cytoseg_train_options_init` (the defaults of
/// `cytoseg train`), then change what you need.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cytoseg_train_options {
    /// `sizeof(cytoseg_train_options)` of the header the program was built with; set by
    /// `cytoseg_train_options_init`. A struct of an older header is accepted.
    pub struct_size: u32,
    /// Training steps. Default: 1000.
    pub steps: u32,
    /// Wall-time budget in minutes (the schedule ends with it), 0 = none. Default: 0.
    pub minutes: f64,
    /// Crops per step. Default: 8.
    pub batch_size: u32,
    /// Crop edge in pixels, a multiple of 16. Default: 128.
    pub crop: u32,
    /// Peak learning rate (AdamW, warm-up then cosine decay). Default: 0.001.
    pub learning_rate: f64,
    /// Weight decay. Default: 0.0001.
    pub weight_decay: f64,
    /// Typical object diameter in the training images in pixels, 0 = measured from the
    /// labels. Default: 0.
    pub diameter: f64,
    /// Object diameter the clone's network works at, 0 = automatic: the objects' diameter,
    /// at least the parent's and at most 30 (Cellpose's cell scale). Default: 0.
    pub train_diameter: f64,
    /// Random seed. Default: 0.
    pub seed: u64,
    /// Non-zero: continue from the checkpoint in `out_dir`. Default: 0.
    pub resume: u32,
    /// Folder of annotated-region masks (NUL-terminated UTF-8) or NULL. Default: NULL.
    pub masks_dir: *const c_char,
    /// Validation images folder or NULL (then one image in ten is held out when there are at
    /// least ten). Default: NULL.
    pub val_images_dir: *const c_char,
    /// Validation labels folder; given together with `val_images_dir`. Default: NULL.
    pub val_labels_dir: *const c_char,
    /// What runs the training, recorded in the clone's lineage (e.g. your program's name and
    /// version), or NULL. Default: NULL.
    pub invocation: *const c_char,
    /// Input channels of the clone, 0 = automatic: 3 when the parent takes one channel and
    /// every training image is colour (RGB), else the parent's. A one-channel parent is widened
    /// for colour or multi-channel images. Default: 0.
    pub channels: u32,
}

impl Versioned for cytoseg_train_options {
    const NAME: &'static str = "cytoseg_train_options";
    const INIT: &'static str = "cytoseg_train_options_init";
    const FIRST_VERSION_SIZE: usize = 112;
    fn prefix_sizes() -> &'static [usize] {
        prefix_sizes!(cytoseg_train_options {
            struct_size: u32,
            steps: u32,
            minutes: f64,
            batch_size: u32,
            crop: u32,
            learning_rate: f64,
            weight_decay: f64,
            diameter: f64,
            train_diameter: f64,
            seed: u64,
            resume: u32,
            masks_dir: *const c_char,
            val_images_dir: *const c_char,
            val_labels_dir: *const c_char,
            invocation: *const c_char,
            channels: u32,
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

fn default_train_options() -> cytoseg_train_options {
    let d = TrainOptions::new(
        std::path::Path::new(""),
        std::path::Path::new(""),
        std::path::Path::new(""),
        std::path::Path::new(""),
    );
    cytoseg_train_options {
        struct_size: std::mem::size_of::<cytoseg_train_options>() as u32,
        steps: d.steps as u32,
        minutes: 0.0,
        batch_size: d.batch_size as u32,
        crop: d.crop as u32,
        learning_rate: d.learning_rate,
        weight_decay: d.weight_decay,
        diameter: 0.0,
        train_diameter: 0.0,
        seed: d.seed,
        resume: 0,
        masks_dir: std::ptr::null(),
        val_images_dir: std::ptr::null(),
        val_labels_dir: std::ptr::null(),
        invocation: std::ptr::null(),
        channels: 0,
    }
}

/// Where a training run stands, passed to the progress callback.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct cytoseg_train_progress {
    /// Steps done.
    pub step: u64,
    /// Steps planned.
    pub steps: u64,
    /// Mean training loss of the last steps.
    pub loss: f64,
    /// Latest validation loss, NaN when there is none yet.
    pub val_loss: f64,
    /// Current learning rate.
    pub learning_rate: f64,
    /// Seconds since the run (or its resumption) started.
    pub elapsed_s: f64,
    /// Estimated seconds left.
    pub eta_s: f64,
}

/// What a finished training run produced.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct cytoseg_train_result {
    /// Steps in all.
    pub steps: u64,
    /// Mean training loss of the last steps.
    pub final_train_loss: f64,
    /// Final validation loss, NaN without validation images.
    pub final_val_loss: f64,
    /// Object diameter of the training images (measured or given), pixels.
    pub diameter: f64,
    /// Training images.
    pub train_images: u64,
    /// Validation images.
    pub val_images: u64,
    /// Wall time of the call, seconds.
    pub wall_s: f64,
}

/// Training progress callback, called on the thread that called `cytoseg_train` after every
/// step (`progress` valid during the call only). Return 0 to go on, non-zero to cancel: the run
/// saves a checkpoint in `out_dir` and returns `CYTOSEG_STATUS_CANCELLED`; call again with
/// `resume` set to continue.
pub type cytoseg_train_progress_fn =
    Option<extern "C" fn(userdata: *mut c_void, progress: *const cytoseg_train_progress) -> i32>;

/// Fills `options` with the defaults of `cytoseg train`.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_train_options_init(
    options: *mut cytoseg_train_options,
) -> cytoseg_status {
    boundary(|| {
        // SAFETY: the caller provides a writable struct of some version.
        unsafe { write_first_version(options, default_train_options(), "options") }
    })
}

fn opt_path(p: *const c_char, what: &str) -> Result<Option<PathBuf>, super::boundary::FfiError> {
    if p.is_null() {
        Ok(None)
    } else {
        Ok(Some(PathBuf::from(c_str(p, what)?)))
    }
}

/// Clones a model and fine-tunes it on annotated images, writing a new model package to
/// `out_dir` (model.onnx with the trained weights, manifest.json with the lineage,
/// MODEL_CARD.md, loss.csv, loss.png), exactly as `cytoseg train` does. The parent is only
/// read. Runs on the calling thread (the computation uses all cores) and may take minutes to
/// hours: pass a progress callback to show progress and to cancel.
///
/// @param from        The parent: a bundled model name or a package folder (NUL-terminated
///                    UTF-8).
/// @param images_dir  Folder of training images.
/// @param labels_dir  Folder of their label images, paired by file stem.
/// @param out_dir     The new package's folder; must not hold a package (nor, unless
///                    `options.resume`, a checkpoint).
/// @param options     `cytoseg_train_options_init` defaults changed as needed, or NULL for the
///                    defaults.
/// @param progress    Optional callback (may be NULL); can cancel.
/// @param userdata    Passed to `progress` unchanged.
/// @param result      Optional output (may be NULL), written on `CYTOSEG_STATUS_OK`.
/// @return `CYTOSEG_STATUS_OK`; `CYTOSEG_STATUS_CANCELLED` when the callback cancelled (a
///         checkpoint is saved); another status, with the problem named in
///         `cytoseg_last_error_message`, when inputs are missing or wrong (nothing is written).
///
/// Thread safety: may be called from several threads with different output folders.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn cytoseg_train(
    from: *const c_char,
    images_dir: *const c_char,
    labels_dir: *const c_char,
    out_dir: *const c_char,
    options: *const cytoseg_train_options,
    progress: cytoseg_train_progress_fn,
    userdata: *mut c_void,
    result: *mut cytoseg_train_result,
) -> cytoseg_status {
    boundary(|| {
        let from = c_str(from, "from")?;
        let images = PathBuf::from(c_str(images_dir, "images_dir")?);
        let labels = PathBuf::from(c_str(labels_dir, "labels_dir")?);
        let out = PathBuf::from(c_str(out_dir, "out_dir")?);
        let o = if options.is_null() {
            default_train_options()
        } else {
            // SAFETY: non-null caller struct of some version.
            unsafe { read_versioned(options, default_train_options(), "options") }?
        };
        let parent = resolve_model(from, &crate::host::library_model_dirs())?;
        let mut t = TrainOptions::new(&parent, &images, &labels, &out);
        t.steps = o.steps as usize;
        t.minutes = (o.minutes != 0.0).then_some(o.minutes);
        t.batch_size = o.batch_size as usize;
        t.crop = o.crop as usize;
        t.learning_rate = o.learning_rate;
        t.weight_decay = o.weight_decay;
        t.diameter = (o.diameter != 0.0).then_some(o.diameter);
        t.train_diameter = (o.train_diameter != 0.0).then_some(o.train_diameter);
        t.seed = o.seed;
        t.channels = (o.channels != 0).then_some(o.channels as usize);
        t.resume = o.resume != 0;
        t.masks = opt_path(o.masks_dir, "options.masks_dir")?;
        t.val_images = opt_path(o.val_images_dir, "options.val_images_dir")?;
        t.val_labels = opt_path(o.val_labels_dir, "options.val_labels_dir")?;
        t.command = match opt_path(o.invocation, "options.invocation")? {
            Some(c) => format!("C API cytoseg_train, caller: {}", c.display()),
            None => "C API cytoseg_train".into(),
        };
        let mut on_step = |p: &train::TrainProgress| -> bool {
            let Some(f) = progress else { return true };
            let c = cytoseg_train_progress {
                step: p.step as u64,
                steps: p.steps as u64,
                loss: p.loss,
                val_loss: p.val_loss.unwrap_or(f64::NAN),
                learning_rate: p.lr,
                elapsed_s: p.elapsed_s,
                eta_s: p.eta_s,
            };
            f(userdata, &c) == 0
        };
        let r = train::train(&t, &mut on_step)?;
        if !result.is_null() {
            // SAFETY: non-null caller struct.
            unsafe {
                result.write_unaligned(cytoseg_train_result {
                    steps: r.steps as u64,
                    final_train_loss: r.final_train_loss,
                    final_val_loss: r.final_val_loss.unwrap_or(f64::NAN),
                    diameter: r.diameter,
                    train_images: r.images.0 as u64,
                    val_images: r.images.1 as u64,
                    wall_s: r.wall_s,
                })
            };
        }
        Ok(())
    })
}
