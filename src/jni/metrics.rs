//! `org.cytoseg.Native`: scoring a label image against ground truth.

use ::jni::objects::{JClass, JDoubleArray, JIntArray, JString, ReleaseMode};
use ::jni::{Env, EnvUnowned};

use crate::core::metrics::{
    Criterion, LabelOverlap, MatchingStats, foreground_scores, matching_from_overlap,
};

use super::boundary::{AsUnsigned, JResult, ThrowCytoseg, non_null, string_arg};

/// Values per threshold in the result of `evaluate`.
/// Values per threshold in `Native.evaluate`'s result (the engine's numeric field list).
pub(crate) const STATS_LEN: usize = MatchingStats::NUMERIC_FIELDS.len();

fn evaluate<'local>(
    env: &mut Env<'local>,
    truth: &JIntArray<'local>,
    pred: &JIntArray<'local>,
    thresholds: &JDoubleArray<'local>,
    criterion: &JString<'local>,
) -> JResult<JDoubleArray<'local>> {
    non_null(truth, "truth")?;
    non_null(pred, "pred")?;
    non_null(thresholds, "thresholds")?;
    let criterion: Criterion = string_arg(env, criterion, "criterion")?.parse()?;
    let mut thr = vec![0.0f64; thresholds.len(env)?];
    thresholds.get_region(env, 0, &mut thr)?;
    crate::core::metrics::check_thresholds(&thr)?;
    let (stats, dice) = {
        // SAFETY: read-only (`NoCopyBack`) critical borrows for pure computation: no JNI call
        // and no blocking system call happens until both guards are dropped; the caller does
        // not write the arrays from another thread during the call (documented on
        // `Native.evaluate`). `truth` and `pred` may be the same Java array: both borrows are
        // shared (`Deref` only, never `DerefMut`), so that aliasing is harmless.
        let t = unsafe { truth.get_elements_critical(env, ReleaseMode::NoCopyBack)? };
        // SAFETY: as above.
        let p = unsafe { pred.get_elements_critical(env, ReleaseMode::NoCopyBack)? };
        let (t, p) = (i32::as_unsigned(&t), i32::as_unsigned(&p));
        let compute = || -> crate::Result<_> {
            let ov = LabelOverlap::new(t, p)?;
            Ok((
                matching_from_overlap(&ov, &thr, criterion, false)?,
                foreground_scores(t, p)?.dice,
            ))
        };
        compute()?
    };
    let mut out = Vec::with_capacity(stats.len() * STATS_LEN + 1);
    for s in &stats {
        out.extend_from_slice(&s.numeric_values());
    }
    out.push(dice);
    let arr = env.new_double_array(out.len())?;
    arr.set_region(env, 0, &out)?;
    Ok(arr)
}

/// Scores a predicted label image against ground truth exactly as `stardist.matching.matching`
/// 0.9.2 (the engine's `cytoseg evaluate`).
///
/// Java: `static native double[] evaluate(int[] truth, int[] pred, double[] thresholds,
/// String criterion)`. Labels are any non-negative `int`s (0 = background), same length;
/// `criterion` is `iou|iot|iop`. Returns 13 values per threshold — thresh, tp, fp, fn, n_true,
/// n_pred, precision, recall, accuracy (AP), f1, mean_true_score, mean_matched_score,
/// panoptic_quality — then the pixel-level foreground Dice. Both arrays are read in a JNI
/// critical section (no copy on HotSpot).
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_cytoseg_Native_evaluate<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    truth: JIntArray<'local>,
    pred: JIntArray<'local>,
    thresholds: JDoubleArray<'local>,
    criterion: JString<'local>,
) -> JDoubleArray<'local> {
    env.with_env(|env| evaluate(env, &truth, &pred, &thresholds, &criterion))
        .resolve::<ThrowCytoseg>()
}

/// The names of the values per threshold in `Native.evaluate`'s result, one per line, in
/// order (stardist's field names): Java reads the statistics by these names.
///
/// Java: `static native String matchingFields()`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_cytoseg_Native_matchingFields<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
) -> JString<'local> {
    env.with_env(|env| -> JResult<JString<'local>> {
        Ok(JString::from_str(
            env,
            MatchingStats::NUMERIC_FIELDS.join("\n"),
        )?)
    })
    .resolve::<ThrowCytoseg>()
}
