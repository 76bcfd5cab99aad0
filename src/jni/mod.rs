//! JNI entry points for the Java binding (`bindings/java`, class `org.cytoseg.Native`) and the
//! Fiji/ImageJ plugin built on it.
//!
//! A thin adapter like `ffi`: each entry point converts Java arguments, calls the core and
//! converts the result back; no engine logic lives here. Conventions:
//! * every body runs in `EnvUnowned::with_env`, which catches panics, and is resolved with
//!   [`boundary::ThrowCytoseg`]: engine errors become `org.cytoseg.CytosegException` carrying
//!   the engine's message and the C API's status number; a panic becomes an
//!   `IllegalStateException`; nothing unwinds into the JVM;
//! * ImageJ pixel arrays (`byte[]`, `short[]`, `float[]`) cross as they are, never converted in
//!   Java; 8- and 16-bit samples are read as unsigned; label images are `int[]`;
//! * short pure computations (metrics, measurements) read arrays in a JNI critical section
//!   (the caller must not write them from another thread meanwhile); segmentation, which runs
//!   for seconds and calls back into Java for progress and cancellation, copies the pixels
//!   out with `Get<Type>ArrayRegion` first (see `model.rs`);
//! * a model is a `long` handle, usable from several threads at once;
//! * descriptions cross as `key=value` lines (one pair per line, the value is the rest of the
//!   line), parsed by `org.cytoseg.Native.parseKeyValues`.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod batch;
mod boundary;
mod classify;
mod info;
mod measure;
mod metrics;
mod model;
mod qc;
mod stitch;
mod train;

/// Formats `key=value` lines; newlines inside values become spaces.
pub(crate) fn kv(pairs: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        out.push_str(k);
        out.push('=');
        out.push_str(&v.replace(['\n', '\r'], " "));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::boundary::{AsUnsigned, labels_as_jint};
    use super::kv;
    use crate::core::error::Error;
    use crate::ffi::cytoseg_status;

    #[test]
    fn key_values_are_one_line_each() {
        let text = kv(&[("a", "x=y".into()), ("b", "two\nlines".into())]);
        assert_eq!(text, "a=x=y\nb=two lines\n");
    }

    #[test]
    fn java_signed_samples_read_as_unsigned() {
        assert_eq!(
            i16::as_unsigned(&[-1i16, 0, 32767, -32768]),
            &[65535u16, 0, 32767, 32768]
        );
        assert_eq!(i8::as_unsigned(&[-1i8, 1]), &[255u8, 1]);
        assert_eq!(labels_as_jint(&[1u32, u32::MAX]), &[1i32, -1]);
    }

    #[test]
    fn engine_errors_keep_the_c_status_numbers() {
        assert_eq!(
            cytoseg_status::of(&Error::Model("x".into())) as i32,
            cytoseg_status::Model as i32
        );
        assert_eq!(cytoseg_status::of(&Error::Cancelled) as i32, 400);
        assert_eq!(cytoseg_status::of(&Error::shape("x")) as i32, 102);
    }
}
