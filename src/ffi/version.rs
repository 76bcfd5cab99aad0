//! Version of the library at run time (the header carries the compile-time `CYTOSEG_VERSION_*`
//! macros, generated from Cargo.toml).

use std::ffi::c_char;

use super::boundary::infallible;

const VERSION_C: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
) {
    Ok(s) => s,
    Err(_) => panic!("version string"),
};

/// The library version as a static NUL-terminated string, e.g. "0.1.0". Never NULL; must not be
/// freed. Compare with `CYTOSEG_VERSION_STRING` to detect a header/library mismatch.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_version() -> *const c_char {
    VERSION_C.as_ptr()
}

/// The library version as `major * 1000000 + minor * 1000 + patch`, comparable with
/// `CYTOSEG_VERSION_NUMBER`.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_version_number() -> u32 {
    infallible(0, || {
        let part = |s: &str| s.parse::<u32>().unwrap_or(0);
        part(env!("CARGO_PKG_VERSION_MAJOR")) * 1_000_000
            + part(env!("CARGO_PKG_VERSION_MINOR")) * 1_000
            + part(env!("CARGO_PKG_VERSION_PATCH"))
    })
}
