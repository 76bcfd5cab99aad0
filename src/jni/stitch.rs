//! `org.cytoseg.Native`: linking the per-plane labels of a z-stack into 3-D labels.

use ::jni::objects::{JClass, JIntArray};
use ::jni::sys::{jdouble, jint, jlong};
use ::jni::{Env, EnvUnowned};

use crate::core::flows;

use super::boundary::{JResult, JniError, ThrowCytoseg, dim, labels_as_jint, non_null};

fn stitch<'local>(
    env: &mut Env<'local>,
    labels: &JIntArray<'local>,
    planes: jint,
    width: jint,
    height: jint,
    threshold: jdouble,
    min_size: jlong,
) -> JResult<JIntArray<'local>> {
    non_null(labels, "labels")?;
    let (d, w, h) = (
        dim(planes, "planes")?,
        dim(width, "width")?,
        dim(height, "height")?,
    );
    let n = labels.len(env)?;
    let mut v: Vec<i32> = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| JniError::Arg(format!("no memory for a copy of {n} labels")))?;
    v.resize(n, 0);
    labels.get_region(env, 0, &mut v)?;
    if let Some(neg) = v.iter().find(|&&l| l < 0) {
        return Err(JniError::Arg(format!(
            "labels hold {neg}; labels are 0 (background) or positive"
        )));
    }
    let mut u: Vec<u32> = v.into_iter().map(|l| l as u32).collect();
    flows::stitch_planes(&mut u, d, h, w, threshold, min_size)?;
    if u.iter().any(|&l| l > i32::MAX as u32) {
        return Err(JniError::Arg(
            "stitching made labels past 2147483647, more than a Java int holds".into(),
        ));
    }
    let out = env.new_int_array(u.len())?;
    out.set_region(env, 0, labels_as_jint(&u))?;
    Ok(out)
}

/// Links the per-plane 2-D labels of a z-stack into 3-D labels exactly as cellpose 4.2.1.1's
/// stitching mode (the engine's `cytoseg stitch`).
///
/// Java: `static native int[] stitchLabels(int[] labels, int planes, int width, int height,
/// double stitchThreshold, long minSize)`. `labels` holds `planes * width * height` values, plane
/// after plane, each plane numbered on its own; returns a new array of 3-D labels (the input is
/// not changed).
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_cytoseg_Native_stitchLabels<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    labels: JIntArray<'local>,
    planes: jint,
    width: jint,
    height: jint,
    threshold: jdouble,
    min_size: jlong,
) -> JIntArray<'local> {
    env.with_env(|env| stitch(env, &labels, planes, width, height, threshold, min_size))
        .resolve::<ThrowCytoseg>()
}
