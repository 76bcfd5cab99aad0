//! `org.cytoseg.Native`: versions, bundled models and ONNX Runtime's execution providers.

use std::path::PathBuf;

use ::jni::EnvUnowned;
use ::jni::objects::{JClass, JString};

use crate::core::model::{list_models, runtime};

use super::boundary::{JResult, ThrowCytoseg, opt_string_arg};
use super::kv;

/// The engine version, e.g. "0.1.0".
///
/// Java: `static native String version()`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_cytoseg_Native_version<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
) -> JString<'local> {
    env.with_env(|env| -> JResult<JString<'local>> { Ok(JString::from_str(env, crate::VERSION)?) })
        .resolve::<ThrowCytoseg>()
}

/// Loads ONNX Runtime (once per process; `ortLib` nullable, else the engine's search) and
/// describes it as `key=value` lines: `version`, `library`, then `provider.<name>=true|false`
/// for cpu, tensorrt, cuda, coreml and directml.
///
/// Java: `static native String runtimeInfo(String ortLib)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_cytoseg_Native_runtimeInfo<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    ort_lib: JString<'local>,
) -> JString<'local> {
    env.with_env(|env| -> JResult<JString<'local>> {
        let lib = opt_string_arg(env, &ort_lib)?.map(PathBuf::from);
        let rt = runtime::runtime(&crate::host::library_ort_search(lib.as_deref()))?;
        let mut pairs = vec![
            ("version".to_string(), rt.version.clone()),
            ("library".to_string(), rt.library.display().to_string()),
        ];
        for (d, ok) in runtime::available_devices(rt) {
            pairs.push((format!("provider.{}", d.name()), ok.to_string()));
        }
        let refs: Vec<(&str, String)> =
            pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        Ok(JString::from_str(env, kv(&refs))?)
    })
    .resolve::<ThrowCytoseg>()
}

/// The model packages found by name (`$CYTOSEG_MODELS`, `models/` beside libcytoseg or one
/// level up: `crate::host`), as `name=folder` lines.
///
/// Java: `static native String listModels()`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_cytoseg_Native_listModels<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
) -> JString<'local> {
    env.with_env(|env| -> JResult<JString<'local>> {
        let found = list_models(&crate::host::library_model_dirs());
        let refs: Vec<(&str, String)> = found
            .iter()
            .map(|(n, d)| (n.as_str(), d.display().to_string()))
            .collect();
        Ok(JString::from_str(env, kv(&refs))?)
    })
    .resolve::<ThrowCytoseg>()
}

/// The user's models folder (`name` null or empty), or the folder a new clone called `name` is
/// to be saved to: `crate::host::user_model_dir` (the name must be new and a plain folder name;
/// otherwise a `CytosegException` says why).
///
/// Java: `static native String userModelDir(String name)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_cytoseg_Native_userModelDir<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    name: JString<'local>,
) -> JString<'local> {
    env.with_env(|env| -> JResult<JString<'local>> {
        let name = opt_string_arg(env, &name)?.unwrap_or_default();
        let dir = if name.is_empty() {
            crate::host::user_models_root()?
        } else {
            crate::host::user_model_dir(&name, &crate::host::library_model_dirs())?
        };
        Ok(JString::from_str(env, dir.to_string_lossy())?)
    })
    .resolve::<ThrowCytoseg>()
}

/// Panics on purpose, to test that a panic reaches Java as an `IllegalStateException` and the
/// library stays usable. Not for other use.
///
/// Java: `static native void panicForTest()`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_cytoseg_Native_panicForTest<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
) {
    env.with_env(|_env| -> JResult<()> { panic!("panicForTest was called") })
        .resolve::<ThrowCytoseg>()
}

/// The device names a user may choose (`auto`, `cpu`, `cuda`, ...), one per line, in the
/// engine's order: the plugin's device menu comes from here.
///
/// Java: `static native String deviceNames()`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_cytoseg_Native_deviceNames<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
) -> JString<'local> {
    env.with_env(|env| -> JResult<JString<'local>> {
        let names: Vec<&str> = runtime::ALL_DEVICES.iter().map(|d| d.name()).collect();
        Ok(JString::from_str(env, names.join("\n"))?)
    })
    .resolve::<ThrowCytoseg>()
}

/// A model package's defaults as `key=value` lines (`diameter`, `cellprob_threshold`,
/// `flow_threshold`, `niter`, `min_size`, `max_size_fraction`), read from its manifest without
/// loading ONNX Runtime: the plugin's dialogs start from these, not from copies of Cellpose's.
///
/// Java: `static native String modelDefaults(String nameOrPath)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_cytoseg_Native_modelDefaults<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    name_or_path: JString<'local>,
) -> JString<'local> {
    env.with_env(|env| -> JResult<JString<'local>> {
        let name = super::boundary::string_arg(env, &name_or_path, "nameOrPath")?;
        let dir = crate::core::model::resolve_model(&name, &crate::host::library_model_dirs())?;
        let m = crate::core::model::Manifest::read(&dir.join("manifest.json"))?;
        let d = &m.mask_defaults;
        let text = kv(&[
            ("diameter", m.diameter.to_string()),
            ("cellprob_threshold", d.cellprob_threshold.to_string()),
            ("flow_threshold", d.flow_threshold.to_string()),
            ("niter", d.niter.to_string()),
            ("min_size", d.min_size.to_string()),
            ("max_size_fraction", d.max_size_fraction.to_string()),
        ]);
        Ok(JString::from_str(env, text)?)
    })
    .resolve::<ThrowCytoseg>()
}
