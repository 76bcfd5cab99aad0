//! C entry points of the per-object classifier: train on labelled objects of a segment output
//! folder, apply to every object of such a folder (see `cytoseg classify`).

use std::ffi::c_char;
use std::path::Path;

use crate::core::classify::{Classifier, TrainOptions, apply_folder, train};

use super::boundary::{boundary, c_str, cytoseg_status};

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
        let d = TrainOptions::default();
        let opts = TrainOptions {
            trees: if trees == 0 { d.trees } else { trees as usize },
            seed,
            folds: if folds == 0 { d.folds } else { folds as usize },
        };
        let c = train(Path::new(dir), Path::new(labels), &opts)?;
        c.save(Path::new(out))?;
        if !cv_accuracy.is_null() {
            // SAFETY: non-null caller pointer to one double.
            unsafe { *cv_accuracy = c.validation.cv_accuracy };
        }
        Ok(())
    })
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
