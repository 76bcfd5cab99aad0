//! `org.cytoseg.Native.train`: the engine's trainer (the one `cytoseg train` and the C API's
//! `cytoseg_train` run). The listener is called on the calling Java thread after every step.

use ::jni::objects::{JClass, JDoubleArray, JObject, JString};
use ::jni::sys::jboolean;
use ::jni::{EnvUnowned, JValue, jni_sig, jni_str};

use crate::core::model::registry::resolve_model;
use crate::core::train::{self, TrainOptions};

use super::boundary::{JResult, ThrowCytoseg, non_null, string_arg};

fn opt_string(
    env: &::jni::Env<'_>,
    s: &JString<'_>,
    name: &'static str,
) -> JResult<Option<String>> {
    if s.is_null() {
        Ok(None)
    } else {
        Ok(Some(string_arg(env, s, name)?))
    }
}

/// Clones and fine-tunes a model into a new package folder (see `cytoseg train`).
///
/// Java: `static native double[] train(String from, String images, String labels, String masks,
/// String valImages, String valLabels, String out, double[] options, boolean resume,
/// String invocation, TrainListener listener)`. `from` is a bundled model name or a package
/// folder; `masks`, `valImages`, `valLabels`, `invocation` and `listener` may be null;
/// `options` in the order of `Native.trainOptionNames()` (defaults: `Native.trainDefaults()`).
/// `listener.step(long step, long steps, double loss, double valLoss, double lr,
/// double elapsedS, double etaS)` returns false to cancel (a checkpoint is saved and a
/// `CytosegException` with the cancelled status is thrown; call again with `resume` true).
/// Returns `{steps, finalTrainLoss, finalValLoss (NaN without validation), diameter,
/// trainImages, valImages, wallS}`.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_org_cytoseg_Native_train<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    from: JString<'local>,
    images: JString<'local>,
    labels: JString<'local>,
    masks: JString<'local>,
    val_images: JString<'local>,
    val_labels: JString<'local>,
    out: JString<'local>,
    options: JDoubleArray<'local>,
    resume: jboolean,
    invocation: JString<'local>,
    listener: JObject<'local>,
) -> JDoubleArray<'local> {
    env.with_env(|env| -> JResult<JDoubleArray<'local>> {
        non_null(&options, "options")?;
        let from = string_arg(env, &from, "from")?;
        let images = string_arg(env, &images, "images")?;
        let labels = string_arg(env, &labels, "labels")?;
        let out = string_arg(env, &out, "out")?;
        let parent = resolve_model(&from, &crate::host::library_model_dirs())?;
        let mut t = TrainOptions::new(
            &parent,
            std::path::Path::new(&images),
            std::path::Path::new(&labels),
            std::path::Path::new(&out),
        );
        let mut values = vec![0.0f64; options.len(env)?];
        options.get_region(env, 0, &mut values)?;
        t.set_numeric(&values)?;
        t.masks = opt_string(env, &masks, "masks")?.map(Into::into);
        t.val_images = opt_string(env, &val_images, "valImages")?.map(Into::into);
        t.val_labels = opt_string(env, &val_labels, "valLabels")?.map(Into::into);
        t.resume = resume;
        t.command = match opt_string(env, &invocation, "invocation")? {
            Some(c) => format!("Java org.cytoseg.Native.train, caller: {c}"),
            None => "Java org.cytoseg.Native.train".into(),
        };
        let mut on_step = |p: &train::TrainProgress| -> bool {
            if listener.is_null() {
                return true;
            }
            if env.exception_check() {
                return false;
            }
            env.call_method(
                &listener,
                jni_str!("step"),
                jni_sig!("(JJDDDDD)Z"),
                &[
                    JValue::Long(p.step as i64),
                    JValue::Long(p.steps as i64),
                    JValue::Double(p.loss),
                    JValue::Double(p.val_loss.unwrap_or(f64::NAN)),
                    JValue::Double(p.lr),
                    JValue::Double(p.elapsed_s),
                    JValue::Double(p.eta_s),
                ],
            )
            .and_then(|v| v.z())
            .unwrap_or(false)
        };
        let r = train::train(&t, &mut on_step)?;
        let result = [
            r.steps as f64,
            r.final_train_loss,
            r.final_val_loss.unwrap_or(f64::NAN),
            r.diameter,
            r.images.0 as f64,
            r.images.1 as f64,
            r.wall_s,
        ];
        let arr = env.new_double_array(result.len())?;
        arr.set_region(env, 0, &result)?;
        Ok(arr)
    })
    .resolve::<ThrowCytoseg>()
}

/// The default training options as `key=value` lines, in the order of the `options` array of
/// `train` (names from the engine's `TrainOptions::NUMERIC_FIELDS`): Java builds the array by
/// these names, never by position.
///
/// Java: `static native String trainDefaults()`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_cytoseg_Native_trainDefaults<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
) -> JString<'local> {
    env.with_env(|env| -> JResult<JString<'local>> {
        let e = std::path::Path::new("");
        let d = TrainOptions::new(e, e, e, e).numeric();
        let pairs: Vec<(&str, String)> = TrainOptions::NUMERIC_FIELDS
            .iter()
            .zip(d)
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        Ok(JString::from_str(env, super::kv(&pairs))?)
    })
    .resolve::<ThrowCytoseg>()
}
