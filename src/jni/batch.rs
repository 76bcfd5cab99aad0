//! `org.cytoseg.Native.segmentFolder`: the engine's batch run (the one `cytoseg segment`, the C
//! API's `cytoseg_segment_folder` and Python's `segment_folder` run) for Fiji's Segment Folder.
//! The listener is called on the calling Java thread (the work runs on engine threads), so the
//! plugin can update the status bar, write the Log and poll Esc.

use ::jni::objects::{JClass, JDoubleArray, JLongArray, JObject, JObjectArray, JString};
use ::jni::sys::{jboolean, jdouble, jint, jlong};
use ::jni::{EnvUnowned, JValue, jni_sig, jni_str};

use crate::core::batch::{self, BatchOptions, Event, StackMode, expand_inputs};

use super::boundary::{JResult, JniError, ThrowCytoseg, non_null, string_arg};
use super::model::{model_ref, params_from};

/// Segments files, folders and glob patterns into `out` (see `cytoseg segment`): per image
/// `<stem>_labels.tif` and `<stem>_objects.csv`, per run `summary.csv` and `run.json`; finished
/// images of an earlier run with the same settings are skipped.
///
/// Java: `static native long[] segmentFolder(long handle, String[] inputs, String out,
/// double[] params, boolean recursive, boolean overwrite, int jobs, int stackMode, double
/// stackValue, String invocation, BatchListener listener)`. `params` as for `segmentBytes`;
/// `jobs` 0 = automatic; `stackMode` -1 = stacks plane by plane, 0 = do_3D (`stackValue` the
/// anisotropy, 0 = each file's z spacing), 1 = stitching (`stackValue` the IoU threshold);
/// `invocation` (nullable) is recorded as `run.json`'s command; `listener` (nullable) gets
/// `boolean image(int done, int total, String line)` after each image (`line` is the image's
/// one-line report), once before any image starts and about every 100 ms with `line` null;
/// returning false cancels (images in progress stop at their next tile batch). Returns `{ok, skipped, failed, cancelled}`.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_org_cytoseg_Native_segmentFolder<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    inputs: JObjectArray<'local>,
    out: JString<'local>,
    params: JDoubleArray<'local>,
    recursive: jboolean,
    overwrite: jboolean,
    jobs: jint,
    stack_mode: jint,
    stack_value: jdouble,
    invocation: JString<'local>,
    listener: JObject<'local>,
) -> JLongArray<'local> {
    env.with_env(|env| -> JResult<JLongArray<'local>> {
        let model = model_ref(handle)?;
        non_null(&inputs, "inputs")?;
        non_null(&params, "params")?;
        let mut args = Vec::new();
        for i in 0..inputs.len(env)? {
            let element = inputs.get_element(env, i)?;
            let item = env.cast_local::<JString>(element)?;
            args.push(string_arg(env, &item, "inputs[i]")?);
        }
        let out = std::path::PathBuf::from(string_arg(env, &out, "out")?);
        let mut pv = vec![0.0f64; params.len(env)?];
        params.get_region(env, 0, &mut pv)?;
        let p = params_from(model, &pv)?;
        if jobs < 0 {
            return Err(JniError::Arg(format!("jobs must be >= 0, got {jobs}")));
        }
        let caller = if invocation.is_null() {
            None
        } else {
            Some(string_arg(env, &invocation, "invocation")?)
        };
        let opts = BatchOptions {
            jobs: batch::default_jobs(Some(jobs as usize)),
            overwrite,
            stack_mode: StackMode::from_code(stack_mode, stack_value)?,
            invocation: serde_json::json!({
                "api": "java",
                "function": "org.cytoseg.Native.segmentFolder",
                "caller": caller,
                "inputs": args,
            }),
            ..BatchOptions::new(&out)
        };
        let found = expand_inputs(&args, recursive, &out)?;
        let mut lines = batch::EventLines::new(found.len());
        let mut handler = |e: Event<'_>| -> bool {
            if listener.is_null() {
                return true;
            }
            if env.exception_check() {
                // A listener that threw cancels; the exception reaches the caller.
                return false;
            }
            let (done, total, line) = lines.next(e);
            let jline = match line {
                Some(l) => match JString::from_str(env, l) {
                    Ok(s) => JObject::from(s),
                    Err(_) => return false,
                },
                None => JObject::null(),
            };
            env.call_method(
                &listener,
                jni_str!("image"),
                jni_sig!("(IILjava/lang/String;)Z"),
                &[
                    JValue::Int(done.min(i32::MAX as usize) as i32),
                    JValue::Int(total.min(i32::MAX as usize) as i32),
                    JValue::Object(&jline),
                ],
            )
            .and_then(|v| v.z())
            .unwrap_or(false)
        };
        let report =
            batch::segment_folder_on_caller_thread(model, &p, &found, &opts, &mut handler)?;
        let c = report.counts;
        let counts = [c.ok, c.skipped, c.failed, c.cancelled].map(|n| n as i64);
        let arr = env.new_long_array(4)?;
        arr.set_region(env, 0, &counts)?;
        Ok(arr)
    })
    .resolve::<ThrowCytoseg>()
}
