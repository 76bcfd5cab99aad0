//! C entry points of the per-object classifier: train on labelled objects of a segment output
//! folder, apply to every object of such a folder (see `cytoseg classify`); train on objects
//! picked in images the caller holds, classify the objects of a label image.

use std::ffi::{c_char, c_void};
use std::path::Path;

use crate::core::classify::{
    Classifier, LabelledImage, Pick, TrainOptions, apply_folder, classify_image, train,
    train_images,
};
use crate::core::image::{ImageView, Stack};

use super::boundary::{
    FfiError, boundary, c_str, copy_string, cytoseg_status, image_input, input,
    labelled_image_input, output,
};
use super::measure::{calibration, cytoseg_calibration};

/// Trains a classifier on the objects of a `cytoseg segment` output folder labelled in a CSV
/// (columns `image,label,class`) and writes the model file (JSON), exactly as
/// `cytoseg classify train` does (without the confusion-matrix CSV and SVG: the matrix is in the
/// model file, under `validation`).
///
/// @param objects_dir   The segment output folder (NUL-terminated UTF-8).
/// @param labels_csv    The labels CSV.
/// @param model_out     The model file to write (replaced if present).
/// @param trees         Trees in the forest, 0 for the default (200).
/// @param seed          Random seed. Default: 0.
/// @param folds         Cross-validation folds, 0 for the default (5); otherwise at least 2.
/// @param cv_accuracy   Optional (may be NULL): receives the cross-validated accuracy on
///                      success.
/// @return `CYTOSEG_STATUS_OK`, or a status with the problem (missing table, bad CSV line,
///         unknown object, non-finite feature...) named in `cytoseg_last_error_message`;
///         nothing is written then.
///
/// Thread safety: may be called from several threads with different output files.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_classifier_train(
    objects_dir: *const c_char,
    labels_csv: *const c_char,
    model_out: *const c_char,
    trees: u32,
    seed: u64,
    folds: u32,
    cv_accuracy: *mut f64,
) -> cytoseg_status {
    boundary(|| {
        let dir = c_str(objects_dir, "objects_dir")?;
        let labels = c_str(labels_csv, "labels_csv")?;
        let out = c_str(model_out, "model_out")?;
        let c = train(
            Path::new(dir),
            Path::new(labels),
            &options(trees, seed, folds),
        )?;
        c.save(Path::new(out))?;
        if !cv_accuracy.is_null() {
            // SAFETY: non-null caller pointer to one double.
            unsafe { *cv_accuracy = c.validation.cv_accuracy };
        }
        Ok(())
    })
}

/// Training settings from the C arguments (0 trees or folds: the default).
pub(crate) fn options(trees: u32, seed: u64, folds: u32) -> TrainOptions {
    let d = TrainOptions::default();
    TrainOptions {
        trees: if trees == 0 { d.trees } else { trees as usize },
        seed,
        folds: if folds == 0 { d.folds } else { folds as usize },
    }
}

/// Applies a classifier to every object of a `cytoseg segment` output folder, exactly as
/// `cytoseg classify apply` does: each `<stem>_objects.csv` gains `class`, `class_probability`
/// and `probability_<class>` columns (replacing earlier ones; written atomically), and
/// `wells.csv`, when present, `fraction_<class>` columns.
///
/// @param model_path    The model file from `cytoseg_classifier_train` or
///                      `cytoseg classify train` (NUL-terminated UTF-8).
/// @param objects_dir   The segment output folder.
/// @param objects       Optional (may be NULL): receives the number of objects classified.
/// @return `CYTOSEG_STATUS_OK`; `CYTOSEG_STATUS_FORMAT` for a model file of another format
///         version or a damaged one, a table lacking a feature column (named in the message),
///         and so on, with `cytoseg_last_error_message`.
///
/// Thread safety: may be called from several threads with different folders.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_classifier_apply(
    model_path: *const c_char,
    objects_dir: *const c_char,
    objects: *mut u64,
) -> cytoseg_status {
    boundary(|| {
        let model = c_str(model_path, "model_path")?;
        let dir = c_str(objects_dir, "objects_dir")?;
        let c = Classifier::load(Path::new(model))?;
        let s = apply_folder(&c, Path::new(dir))?;
        if !objects.is_null() {
            // SAFETY: non-null caller pointer to one uint64_t.
            unsafe { *objects = s.objects as u64 };
        }
        Ok(())
    })
}

/// A stack for the engine from a caller's image (copied, packed) and its pixel size.
fn host_stack(view: &ImageView, cal: *const cytoseg_calibration) -> Result<Stack, FfiError> {
    Ok(Stack::single(view.to_image(), calibration(cal)?))
}

/// Trains a classifier on objects picked in images the caller holds (no output folder) and
/// writes the model file: the same features as the objects tables of `cytoseg segment` (all
/// measurements, calibrated by `cal`, and texture), the same cross-validation and the same
/// model file as `cytoseg_classifier_train`, so either applies to the other's data. The
/// model's training record holds each image's name and the SHA-256 of its pixels and labels.
///
/// @param n_images      Images (>= 1).
/// @param images        `n_images` pointers to packed images: `heights[i]` rows of
///                      `widths[i]` pixels × `channels` interleaved samples of `dtype`.
/// @param dtype         A `cytoseg_dtype` value, the same for every image.
/// @param channels      Samples per pixel (>= 1), the same for every image.
/// @param widths, heights  `n_images` sizes (each >= 1).
/// @param labels        `n_images` pointers to `heights[i] * widths[i]` uint32 labels
///                      (0 = background), row-major.
/// @param names         Optional (may be NULL, as may each entry): `n_images` names for
///                      messages and the model's record; default `image <i>` (0-based).
/// @param cal           Pixel size and unit (the units of the feature names), or NULL for
///                      pixels — as the images' files would give to `cytoseg segment`.
/// @param pick_counts   `n_images` numbers of picks per image (0 for an image without picks).
/// @param pick_labels   The picked objects' labels, the images' picks one after another
///                      (`sum(pick_counts)` values); never 0 (background).
/// @param pick_classes  The class of each pick: an index into `class_names`.
/// @param n_classes, class_names  The class names (NUL-terminated UTF-8, non-empty);
///                      at least two must be picked, each at least twice.
/// @param trees         Trees in the forest, 0 for the default (200).
/// @param seed          Random seed.
/// @param folds         Cross-validation folds, 0 for the default (5); otherwise at least 2.
/// @param model_out     The model file to write (replaced if present).
/// @param cv_accuracy   Optional (may be NULL): receives the cross-validated accuracy.
/// @return `CYTOSEG_STATUS_OK`; `CYTOSEG_STATUS_INVALID_ARGUMENT` for a pick on the background
///         or on a label that is no object, an object picked with two classes, a class index
///         out of range, fewer than two classes (the message names the image and the pick,
///         0-based); `CYTOSEG_STATUS_NULL_POINTER`, `CYTOSEG_STATUS_SHAPE_MISMATCH` and so
///         on, with `cytoseg_last_error_message`. Nothing is written on failure.
///
/// Thread safety: may be called from several threads with different output files; the
/// buffers are only read during the call.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_classifier_train_images(
    n_images: usize,
    images: *const *const c_void,
    dtype: i32,
    channels: usize,
    widths: *const usize,
    heights: *const usize,
    labels: *const *const u32,
    names: *const *const c_char,
    cal: *const cytoseg_calibration,
    pick_counts: *const usize,
    pick_labels: *const u32,
    pick_classes: *const u32,
    n_classes: usize,
    class_names: *const *const c_char,
    trees: u32,
    seed: u64,
    folds: u32,
    model_out: *const c_char,
    cv_accuracy: *mut f64,
) -> cytoseg_status {
    boundary(|| {
        if n_images == 0 {
            return Err(FfiError(
                cytoseg_status::InvalidArgument,
                "n_images must be >= 1".into(),
            ));
        }
        let out = c_str(model_out, "model_out")?;
        // SAFETY: the caller provides n_images entries in each per-image array.
        let (images, widths, heights, labels, counts) = unsafe {
            (
                input(images, n_images, "images")?,
                input(widths, n_images, "widths")?,
                input(heights, n_images, "heights")?,
                input(labels, n_images, "labels")?,
                input(pick_counts, n_images, "pick_counts")?,
            )
        };
        let names: Option<&[*const c_char]> = if names.is_null() {
            None
        } else {
            // SAFETY: non-null; the caller provides n_images name pointers.
            Some(unsafe { input(names, n_images, "names") }?)
        };
        // SAFETY: the caller provides n_classes name pointers.
        let class_ptrs = unsafe { input(class_names, n_classes, "class_names") }?;
        let classes: Vec<&str> = class_ptrs
            .iter()
            .enumerate()
            .map(|(i, &p)| c_str(p, &format!("class_names[{i}]")))
            .collect::<Result<_, _>>()?;
        let total = counts
            .iter()
            .try_fold(0usize, |a, &c| a.checked_add(c))
            .ok_or_else(|| FfiError(cytoseg_status::TooLarge, "pick_counts overflow".into()))?;
        // SAFETY: the caller provides sum(pick_counts) labels and classes.
        let (pl, pc) = unsafe {
            (
                input(pick_labels, total, "pick_labels")?,
                input(pick_classes, total, "pick_classes")?,
            )
        };
        let mut stacks = Vec::with_capacity(n_images);
        let mut label_bufs = Vec::with_capacity(n_images);
        let mut image_names = Vec::with_capacity(n_images);
        let mut picks = Vec::with_capacity(n_images);
        let mut next = 0;
        for i in 0..n_images {
            let name = match names.map(|n| n[i]).filter(|p| !p.is_null()) {
                Some(p) => c_str(p, &format!("names[{i}]"))?.to_string(),
                None => format!("image {i}"),
            };
            let (w, h) = (widths[i], heights[i]);
            let row = w
                .checked_mul(channels)
                .and_then(|r| r.checked_mul(sample_size(dtype)))
                .ok_or_else(|| FfiError(cytoseg_status::TooLarge, "row size overflows".into()))?;
            // SAFETY: the caller provides image i as described by dtype, channels, w and h.
            let view = unsafe {
                image_input(
                    images[i],
                    dtype,
                    w,
                    h,
                    channels,
                    row,
                    &format!("images[{i}]"),
                )
            }?;
            // SAFETY: the caller provides w * h labels for image i (w * h checked by image_input).
            label_bufs.push(unsafe { input(labels[i], w * h, &format!("labels[{i}]")) }?);
            stacks.push(host_stack(&view, cal)?);
            let mut p = Vec::with_capacity(counts[i]);
            for j in 0..counts[i] {
                let c = pc[next + j] as usize;
                let class = classes.get(c).ok_or_else(|| {
                    FfiError(
                        cytoseg_status::InvalidArgument,
                        format!(
                            "{name}, pick {j}: class index {c} is out of range (n_classes is {n_classes})"
                        ),
                    )
                })?;
                p.push(Pick {
                    label: pl[next + j],
                    class: class.to_string(),
                });
            }
            next += counts[i];
            picks.push(p);
            image_names.push(name);
        }
        let samples: Vec<LabelledImage> = (0..n_images)
            .map(|i| LabelledImage {
                name: &image_names[i],
                stack: &stacks[i],
                labels: label_bufs[i],
                picks: &picks[i],
            })
            .collect();
        let c = train_images(&samples, &options(trees, seed, folds))?;
        c.save(Path::new(out))?;
        if !cv_accuracy.is_null() {
            // SAFETY: non-null caller pointer to one double.
            unsafe { *cv_accuracy = c.validation.cv_accuracy };
        }
        Ok(())
    })
}

/// Bytes per sample of a `cytoseg_dtype` (1 for unknown values: `image_input` refuses them).
fn sample_size(dtype: i32) -> usize {
    match dtype {
        2 => 2,
        3 => 4,
        _ => 1,
    }
}

/// Classifies every object of a label image with a model file: the classes
/// `cytoseg_classifier_apply` writes for the same image and labels in a segment output folder.
///
/// @param model_path         The model file (NUL-terminated UTF-8).
/// @param pixels             The image: `height` rows of `width` pixels × `channels`
///                           interleaved samples of `dtype`, rows every `row_stride_bytes`.
/// @param labels             `height * width` uint32 labels (0 = background).
/// @param labels_len         Must be `height * width`.
/// @param cal                Pixel size and unit, or NULL for pixels (it must give the units
///                           of the model's feature names, e.g. "area [um^2]").
/// @param capacity           Entries the three output arrays hold; the number of objects is
///                           at most the largest label.
/// @param out_labels         Receives each object's label, in label order.
/// @param out_classes        Receives each object's class index (see
///                           `cytoseg_classifier_info`), -1 when a feature is not finite.
/// @param out_probabilities  Receives the probability of that class (NaN when unclassified).
/// @param n_objects          Optional (may be NULL): receives the number of objects.
///                           With all three output arrays NULL (capacity ignored) the call
///                           only counts the objects.
/// @return `CYTOSEG_STATUS_OK`; `CYTOSEG_STATUS_SHAPE_MISMATCH` when `capacity` is smaller
///         than the number of objects (`n_objects` is still set; the arrays are untouched);
///         `CYTOSEG_STATUS_FORMAT` for a model file of another version;
///         `CYTOSEG_STATUS_INVALID_ARGUMENT` for features the image lacks (named in the
///         message: another calibration or channel count than in training).
///
/// Thread safety: may be called from several threads at once.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_classify_labels(
    model_path: *const c_char,
    pixels: *const c_void,
    dtype: i32,
    width: usize,
    height: usize,
    channels: usize,
    row_stride_bytes: usize,
    labels: *const u32,
    labels_len: usize,
    cal: *const cytoseg_calibration,
    capacity: usize,
    out_labels: *mut u32,
    out_classes: *mut i32,
    out_probabilities: *mut f64,
    n_objects: *mut usize,
) -> cytoseg_status {
    boundary(|| {
        let model = c_str(model_path, "model_path")?;
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
        let query = out_labels.is_null() && out_classes.is_null() && out_probabilities.is_null();
        let c = Classifier::load(Path::new(model))?;
        let objects = classify_image(&c, &host_stack(&view, cal)?, labels)?;
        if !n_objects.is_null() {
            // SAFETY: non-null caller pointer to one size_t.
            unsafe { *n_objects = objects.len() };
        }
        if query {
            return Ok(());
        }
        if capacity < objects.len() {
            return Err(FfiError(
                cytoseg_status::ShapeMismatch,
                format!(
                    "capacity {capacity} is smaller than the {} objects",
                    objects.len()
                ),
            ));
        }
        let n = objects.len();
        // SAFETY: the caller provides capacity (>= n) writable entries in each array.
        let (ol, oc, op) = unsafe {
            (
                output(out_labels, n, "out_labels")?,
                output(out_classes, n, "out_classes")?,
                output(out_probabilities, n, "out_probabilities")?,
            )
        };
        for (i, o) in objects.iter().enumerate() {
            ol[i] = o.label;
            oc[i] = o.class.map_or(-1, |c| c as i32);
            op[i] = o.probability;
        }
        Ok(())
    })
}

/// Copies a JSON description of a model file into `buf` as a NUL-terminated string, truncated
/// to `buf_len`: `classes` (a class index of `cytoseg_classify_labels` is a position in this
/// list), `features`, `cv_accuracy`, `oob_accuracy`, `folds`, `confusion` (`[true][predicted]`,
/// cross-validated), `objects_per_class`, `trees`, `seed`, `cytoseg_version`.
///
/// @param model_path  The model file (NUL-terminated UTF-8).
/// @param needed      Optional: receives the bytes the full text needs, including the NUL.
///
/// Thread safety: may be called from several threads at once.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_classifier_info(
    model_path: *const c_char,
    buf: *mut c_char,
    buf_len: usize,
    needed: *mut usize,
) -> cytoseg_status {
    boundary(|| {
        let model = c_str(model_path, "model_path")?;
        let c = Classifier::load(Path::new(model))?;
        let text = classifier_info(&c).to_string();
        let n = copy_string(text.as_bytes(), buf, buf_len);
        if !needed.is_null() {
            // SAFETY: non-null caller pointer to one size_t.
            unsafe { *needed = n };
        }
        Ok(())
    })
}

/// The description of a model every face reports (everything but the forest).
pub(crate) fn classifier_info(c: &Classifier) -> serde_json::Value {
    serde_json::json!({
        "classes": c.classes,
        "features": c.features,
        "cv_accuracy": c.validation.cv_accuracy,
        "oob_accuracy": c.validation.oob_accuracy,
        "folds": c.validation.folds,
        "confusion": c.validation.confusion,
        "objects_per_class": c.training.objects_per_class,
        "trees": c.trees,
        "seed": c.seed,
        "cytoseg_version": c.cytoseg_version,
    })
}
