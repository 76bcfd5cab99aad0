//! `org.cytoseg.Native`: the per-object classifier on images held by Java (ImageJ): train on
//! picked objects (`classifierTrain`), describe a model file (`classifierInfo`), classify the
//! objects of a label image (`classifyLabels`), as the C API's
//! `cytoseg_classifier_train_images`, `cytoseg_classifier_info` and `cytoseg_classify_labels`.

use std::path::Path;

use ::jni::objects::{JClass, JIntArray, JObject, JObjectArray, JString};
use ::jni::sys::{jint, jlong};
use ::jni::{Env, EnvUnowned};

use crate::core::classify::{
    Classifier, LabelledImage, Pick, TrainOptions, classify_image, train_images,
};
use crate::core::image::{ImageView, Stack};
use crate::core::measure::{Calibration, Column, Table};

use super::boundary::{JResult, JniError, ThrowCytoseg, dim, non_null, string_arg};
use super::measure::{calibration_arg, to_java, with_image_and_labels};

/// Copies a Java image and its labels out of the critical sections (training and
/// classification run long and must not hold them): a one-plane stack and the labels.
#[allow(clippy::too_many_arguments)]
fn image_and_labels<'local>(
    env: &mut Env<'local>,
    image: &JObject<'local>,
    channels: jint,
    labels: &JIntArray<'local>,
    width: jint,
    height: jint,
    calibration: Calibration,
) -> JResult<(Stack, Vec<u32>)> {
    non_null(image, "image")?;
    let (w, h) = (dim(width, "width")?, dim(height, "height")?);
    let c = dim(channels, "channels")?;
    let n = w
        .checked_mul(h)
        .ok_or_else(|| JniError::Arg("width * height overflows".into()))?;
    let (img, lab) = with_image_and_labels(env, image, labels, |px, l| {
        let view = ImageView::new(px.ok_or(JniError::Null("image"))?, w, h, c, w * c)?;
        if l.len() != n {
            return Err(JniError::Arg(format!(
                "labels hold {} values, width * height is {n}",
                l.len()
            )));
        }
        Ok((view.to_image(), l.to_vec()))
    })?;
    Ok((Stack::single(img, calibration), lab))
}

/// A model's description as key=value lines: `classes` (their number), `class.<i>`,
/// `objects.<i>` (labelled objects of class i), `confusion.<i>` (row i of the cross-validated
/// confusion matrix, counts separated by spaces), `cv_accuracy`, `oob_accuracy`, `folds`,
/// `features`, `trees`, `seed`, `cytoseg_version`.
fn info_kv(c: &Classifier) -> String {
    let mut pairs: Vec<(String, String)> = vec![("classes".into(), c.classes.len().to_string())];
    for (i, name) in c.classes.iter().enumerate() {
        pairs.push((format!("class.{i}"), name.clone()));
        let n = c.training.objects_per_class.get(name).copied().unwrap_or(0);
        pairs.push((format!("objects.{i}"), n.to_string()));
        let row: Vec<String> = c.validation.confusion[i]
            .iter()
            .map(u64::to_string)
            .collect();
        pairs.push((format!("confusion.{i}"), row.join(" ")));
    }
    pairs.extend([
        ("cv_accuracy".into(), c.validation.cv_accuracy.to_string()),
        ("oob_accuracy".into(), c.validation.oob_accuracy.to_string()),
        ("folds".into(), c.validation.folds.to_string()),
        ("features".into(), c.features.len().to_string()),
        ("trees".into(), c.trees.to_string()),
        ("seed".into(), c.seed.to_string()),
        ("cytoseg_version".into(), c.cytoseg_version.clone()),
    ]);
    let refs: Vec<(&str, String)> = pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    super::kv(&refs)
}

/// Trains a classifier on objects picked in one image and writes the model file: the same
/// features as `cytoseg segment`'s objects tables (calibrated), cross-validation and model
/// file as `cytoseg classify train`.
///
/// Java: `static native String classifierTrain(Object image, int channels, int[] labels,
/// int width, int height, int[] pickLabels, String[] pickClasses, String name,
/// double pixelWidth, double pixelHeight, String unit, int trees, long seed, int folds,
/// String modelOut)`. `image` is a `byte[]`/`short[]`/`float[]` of `width*height*channels`
/// interleaved samples (8/16-bit read as unsigned), copied before training; pick `i` is object
/// `pickLabels[i]` of class `pickClasses[i]`; `trees`/`folds` 0 = the defaults (200, 5).
/// Returns the model's description (key=value lines, see `info_kv`). A pick on the background
/// or on no object throws `CytosegException` (status 101) naming the pick.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_org_cytoseg_Native_classifierTrain<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    image: JObject<'local>,
    channels: jint,
    labels: JIntArray<'local>,
    width: jint,
    height: jint,
    pick_labels: JIntArray<'local>,
    pick_classes: JObjectArray<'local>,
    name: JString<'local>,
    pixel_width: f64,
    pixel_height: f64,
    unit: JString<'local>,
    trees: jint,
    seed: jlong,
    folds: jint,
    model_out: JString<'local>,
) -> JString<'local> {
    env.with_env(|env| -> JResult<JString<'local>> {
        let out = string_arg(env, &model_out, "modelOut")?;
        let name = string_arg(env, &name, "name")?;
        non_null(&pick_labels, "pickLabels")?;
        non_null(&pick_classes, "pickClasses")?;
        let mut pl = vec![0i32; pick_labels.len(env)?];
        pick_labels.get_region(env, 0, &mut pl)?;
        let n = pick_classes.len(env)?;
        if n != pl.len() {
            return Err(JniError::Arg(format!(
                "{} pick labels but {n} pick classes",
                pl.len()
            )));
        }
        let mut picks = Vec::with_capacity(n);
        for (i, &label) in pl.iter().enumerate() {
            let element = pick_classes.get_element(env, i)?;
            let class = string_arg(env, &env.cast_local::<JString>(element)?, "pickClasses[i]")?;
            picks.push(Pick {
                label: label as u32,
                class,
            });
        }
        let calibration = calibration_arg(env, pixel_width, pixel_height, &unit)?;
        let (stack, lab) =
            image_and_labels(env, &image, channels, &labels, width, height, calibration)?;
        let d = TrainOptions::default();
        let count = |v: jint, what: &str, default: usize| -> JResult<usize> {
            Ok(if v == 0 { default } else { dim(v, what)? })
        };
        let opts = TrainOptions {
            trees: count(trees, "trees", d.trees)?,
            seed: seed as u64,
            folds: count(folds, "folds", d.folds)?,
        };
        let sample = LabelledImage {
            name: &name,
            stack: &stack,
            labels: &lab,
            picks: &picks,
        };
        let c = train_images(&[sample], &opts)?;
        c.save(Path::new(&out))?;
        Ok(JString::from_str(env, info_kv(&c))?)
    })
    .resolve::<ThrowCytoseg>()
}

/// A model file's description.
///
/// Java: `static native String classifierInfo(String model)`: key=value lines (see
/// `classifierTrain`).
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_cytoseg_Native_classifierInfo<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    model: JString<'local>,
) -> JString<'local> {
    env.with_env(|env| -> JResult<JString<'local>> {
        let model = string_arg(env, &model, "model")?;
        let c = Classifier::load(Path::new(&model))?;
        Ok(JString::from_str(env, info_kv(&c))?)
    })
    .resolve::<ThrowCytoseg>()
}

/// Classifies every object of a label image with a model file: the classes
/// `cytoseg classify apply` writes for the same image and labels.
///
/// Java: `static native Table classifyLabels(String model, Object image, int channels,
/// int[] labels, int width, int height, double pixelWidth, double pixelHeight, String unit)`.
/// Returns a table of one row per object in label order: `label`, `class_index` (the class's
/// position in the model, -1 when a feature is not finite), `class_probability` (NaN then).
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_org_cytoseg_Native_classifyLabels<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    model: JString<'local>,
    image: JObject<'local>,
    channels: jint,
    labels: JIntArray<'local>,
    width: jint,
    height: jint,
    pixel_width: f64,
    pixel_height: f64,
    unit: JString<'local>,
) -> JObject<'local> {
    env.with_env(|env| -> JResult<JObject<'local>> {
        let model = string_arg(env, &model, "model")?;
        let calibration = calibration_arg(env, pixel_width, pixel_height, &unit)?;
        let (stack, lab) =
            image_and_labels(env, &image, channels, &labels, width, height, calibration)?;
        let c = Classifier::load(Path::new(&model))?;
        let objects = classify_image(&c, &stack, &lab)?;
        let column = |name: &str, values: Vec<f64>| Column {
            name: name.into(),
            unit: None,
            values,
        };
        let table = Table {
            columns: vec![
                column(
                    "label",
                    objects.iter().map(|o| f64::from(o.label)).collect(),
                ),
                column(
                    "class_index",
                    objects
                        .iter()
                        .map(|o| o.class.map_or(-1.0, |k| k as f64))
                        .collect(),
                ),
                column(
                    "class_probability",
                    objects.iter().map(|o| o.probability).collect(),
                ),
            ],
        };
        to_java(env, &table)
    })
    .resolve::<ThrowCytoseg>()
}
