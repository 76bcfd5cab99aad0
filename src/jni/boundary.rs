//! The JNI boundary: one error type for every entry point, the policy that turns errors and
//! panics into Java exceptions, and borrowing helpers for Java arrays.
//!
//! Exceptions thrown (house style 19):
//! * an engine error → `org.cytoseg.CytosegException(int status, String message)`, where
//!   `status` is the C API's `cytoseg_status` number (e.g. 200 model, 201 runtime, 400
//!   cancelled);
//! * a `null` argument → `java.lang.NullPointerException`;
//! * an inconsistent argument of the Java call itself (array length, negative size) →
//!   `java.lang.IllegalArgumentException`;
//! * a closed model handle → `java.lang.IllegalStateException`;
//! * a panic (a bug) → `java.lang.IllegalStateException("internal error (please report): …")`.
//!
//! An exception already pending (thrown by a Java callback) always wins.

use std::any::Any;

use ::jni::errors::ErrorPolicy;
use ::jni::objects::{JObject, JString, JThrowable};
use ::jni::{Env, JValue, jni_sig, jni_str};

use crate::core::error::Error;
use crate::ffi::cytoseg_status;

/// Everything an entry point can fail with.
#[derive(Debug)]
pub(crate) enum JniError {
    /// An error of the engine, with its message.
    Engine(Error),
    /// A Java argument was `null`; names the parameter.
    Null(&'static str),
    /// A Java argument is inconsistent (length, range).
    Arg(String),
    /// The model handle is 0 (closed).
    Closed,
    /// A JNI call failed (usually a pending Java exception).
    Jni(::jni::errors::Error),
}

impl std::fmt::Display for JniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JniError::Engine(e) => write!(f, "{e}"),
            JniError::Null(name) => write!(f, "{name} is null"),
            JniError::Arg(m) => f.write_str(m),
            JniError::Closed => f.write_str("the model was closed"),
            JniError::Jni(e) => write!(f, "JNI: {e}"),
        }
    }
}

impl std::error::Error for JniError {}

impl From<::jni::errors::Error> for JniError {
    fn from(e: ::jni::errors::Error) -> Self {
        JniError::Jni(e)
    }
}

impl From<Error> for JniError {
    fn from(e: Error) -> Self {
        JniError::Engine(e)
    }
}

/// Result of an entry point's body.
pub(crate) type JResult<T> = Result<T, JniError>;

/// The error policy of every entry point: throws the exception described in the module docs
/// and returns the type's default (0, null) to Java.
pub(crate) struct ThrowCytoseg;

fn throw_cytoseg(env: &mut Env<'_>, status: i32, message: &str) -> ::jni::errors::Result<()> {
    let msg = JString::from_str(env, message)?;
    let obj = env.new_object(
        jni_str!("org/cytoseg/CytosegException"),
        jni_sig!("(ILjava/lang/String;)V"),
        &[JValue::Int(status), JValue::Object(&msg)],
    )?;
    let throwable: JThrowable = env.cast_local::<JThrowable>(obj)?;
    match env.throw(&throwable) {
        Err(::jni::errors::Error::JavaException) | Ok(()) => Ok(()),
        Err(e) => Err(e),
    }
}

fn throw_plain(env: &mut Env<'_>, class: &::jni::strings::JNIStr, message: &str) {
    let msg = ::jni::strings::JNIString::from(message);
    let _ = env.throw_new(class, &msg);
}

fn throw_error(env: &mut Env<'_>, err: &JniError) {
    match err {
        JniError::Engine(e) => {
            let text = e.to_string();
            if throw_cytoseg(env, cytoseg_status::of(e) as i32, &text).is_err()
                || !env.exception_check()
            {
                // The exception class is missing (the library was loaded without the jar's
                // classes): fall back to a JDK class so that the message still arrives.
                env.exception_clear();
                throw_plain(env, jni_str!("java/lang/RuntimeException"), &text);
            }
        }
        JniError::Null(_) => throw_plain(
            env,
            jni_str!("java/lang/NullPointerException"),
            &err.to_string(),
        ),
        JniError::Arg(_) => throw_plain(
            env,
            jni_str!("java/lang/IllegalArgumentException"),
            &err.to_string(),
        ),
        JniError::Closed | JniError::Jni(_) => throw_plain(
            env,
            jni_str!("java/lang/IllegalStateException"),
            &err.to_string(),
        ),
    }
}

impl<T: Default> ErrorPolicy<T, JniError> for ThrowCytoseg {
    type Captures<'unowned_env_local: 'native_method, 'native_method> = ();

    fn on_error<'unowned_env_local: 'native_method, 'native_method>(
        env: &mut Env<'unowned_env_local>,
        _cap: &mut (),
        err: JniError,
    ) -> ::jni::errors::Result<T> {
        if !env.exception_check() {
            throw_error(env, &err);
        }
        Ok(T::default())
    }

    fn on_panic<'unowned_env_local: 'native_method, 'native_method>(
        env: &mut Env<'unowned_env_local>,
        _cap: &mut (),
        payload: Box<dyn Any + Send + 'static>,
    ) -> ::jni::errors::Result<T> {
        let text = crate::ffi::panic_text(payload.as_ref());
        // Dropping a payload can itself panic; leak it instead (a bug path only).
        std::mem::forget(payload);
        if env.exception_check() {
            env.exception_clear();
        }
        throw_plain(env, jni_str!("java/lang/IllegalStateException"), &text);
        Ok(T::default())
    }
}

/// Reads a Java string argument that must not be null.
pub(crate) fn string_arg(env: &Env<'_>, s: &JString<'_>, name: &'static str) -> JResult<String> {
    if s.is_null() {
        return Err(JniError::Null(name));
    }
    Ok(s.try_to_string(env)?)
}

/// Reads a Java string argument that may be null.
pub(crate) fn opt_string_arg(env: &Env<'_>, s: &JString<'_>) -> JResult<Option<String>> {
    if s.is_null() {
        return Ok(None);
    }
    Ok(Some(s.try_to_string(env)?))
}

/// Checks that a Java object argument is not null.
pub(crate) fn non_null(o: &JObject<'_>, name: &'static str) -> JResult<()> {
    if o.is_null() {
        Err(JniError::Null(name))
    } else {
        Ok(())
    }
}

/// An image size from Java `int`s, checked non-negative.
pub(crate) fn dim(v: i32, name: &str) -> JResult<usize> {
    usize::try_from(v).map_err(|_| JniError::Arg(format!("{name} is negative ({v})")))
}

/// Reinterprets a slice of a Java integer type as its unsigned twin of the same size.
///
/// ImageJ stores 8- and 16-bit pixels in Java's signed `byte`/`short` and labels in `int`;
/// the bits are the unsigned values.
pub(crate) trait AsUnsigned {
    /// The unsigned type of the same size.
    type Unsigned;
    /// The same memory seen as unsigned values.
    fn as_unsigned(s: &[Self]) -> &[Self::Unsigned]
    where
        Self: Sized;
}

macro_rules! as_unsigned {
    ($signed:ty, $unsigned:ty) => {
        impl AsUnsigned for $signed {
            type Unsigned = $unsigned;
            fn as_unsigned(s: &[$signed]) -> &[$unsigned] {
                const _: () = assert!(
                    std::mem::size_of::<$signed>() == std::mem::size_of::<$unsigned>()
                        && std::mem::align_of::<$signed>() == std::mem::align_of::<$unsigned>()
                );
                // SAFETY: same size and alignment (checked at compile time); every bit pattern
                // is a valid value of both types; the lifetime is carried over.
                unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<$unsigned>(), s.len()) }
            }
        }
    };
}

as_unsigned!(i8, u8);
as_unsigned!(i16, u16);
as_unsigned!(i32, u32);

/// The engine's `u32` labels as the Java `int`s of an `int[]` (same bits).
pub(crate) fn labels_as_jint(labels: &[u32]) -> &[i32] {
    // SAFETY: u32 and i32 have the same size and alignment and every bit pattern is valid.
    unsafe { std::slice::from_raw_parts(labels.as_ptr().cast::<i32>(), labels.len()) }
}
