//! Status codes, the per-thread last error, and the panic boundary around every export.

use std::cell::RefCell;
use std::ffi::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::core::error::Error;
use crate::core::image::{ImageView, Pixels};

/// Result of a fallible cytoseg function. Codes are grouped by range (1xx arguments, 2xx model
/// and runtime, 3xx files, 4xx control, 9xx internal) and are never renumbered; new codes are
/// only added.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cytoseg_status {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullPointer = 100,
    /// An argument is out of range or inconsistent with another.
    InvalidArgument = 101,
    /// Buffer lengths or array shapes do not agree.
    ShapeMismatch = 102,
    /// Input data holds NaN or infinite values.
    NonFinite = 103,
    /// The input is too large to process (size overflow or a supported limit).
    TooLarge = 104,
    /// A model package is missing, corrupt or inconsistent with its manifest.
    Model = 200,
    /// The inference runtime failed or is unavailable.
    Runtime = 201,
    /// A file could not be read or written.
    Io = 300,
    /// A file's contents are not in a supported format or are truncated.
    Format = 301,
    /// The operation was cancelled by the caller.
    Cancelled = 400,
    /// An internal error (a bug) was caught at the boundary; the library remains usable.
    Panic = 900,
}

impl cytoseg_status {
    /// The status of an engine error (also the status number the JNI layer reports).
    pub(crate) fn of(e: &Error) -> Self {
        match e {
            Error::InvalidArgument(_) => cytoseg_status::InvalidArgument,
            Error::ShapeMismatch(_) => cytoseg_status::ShapeMismatch,
            Error::NonFinite(_) => cytoseg_status::NonFinite,
            Error::TooLarge(_) => cytoseg_status::TooLarge,
            Error::Io { .. } => cytoseg_status::Io,
            Error::Format { .. } => cytoseg_status::Format,
            Error::Model(_) => cytoseg_status::Model,
            Error::Runtime(_) => cytoseg_status::Runtime,
            Error::Cancelled => cytoseg_status::Cancelled,
        }
    }

    const fn name(self) -> &'static std::ffi::CStr {
        match self {
            cytoseg_status::Ok => c"ok",
            cytoseg_status::NullPointer => c"null pointer",
            cytoseg_status::InvalidArgument => c"invalid argument",
            cytoseg_status::ShapeMismatch => c"shape mismatch",
            cytoseg_status::NonFinite => c"non-finite input",
            cytoseg_status::TooLarge => c"too large",
            cytoseg_status::Model => c"model error",
            cytoseg_status::Runtime => c"runtime error",
            cytoseg_status::Io => c"i/o error",
            cytoseg_status::Format => c"file format error",
            cytoseg_status::Cancelled => c"cancelled",
            cytoseg_status::Panic => c"internal error",
        }
    }

    const ALL: [cytoseg_status; 12] = [
        cytoseg_status::Ok,
        cytoseg_status::NullPointer,
        cytoseg_status::InvalidArgument,
        cytoseg_status::ShapeMismatch,
        cytoseg_status::NonFinite,
        cytoseg_status::TooLarge,
        cytoseg_status::Model,
        cytoseg_status::Runtime,
        cytoseg_status::Io,
        cytoseg_status::Format,
        cytoseg_status::Cancelled,
        cytoseg_status::Panic,
    ];
}

thread_local! {
    static LAST_ERROR: RefCell<Option<(cytoseg_status, String)>> = const { RefCell::new(None) };
}

fn set_last_error(status: cytoseg_status, message: String) {
    LAST_ERROR.with(|l| *l.borrow_mut() = Some((status, message)));
}

/// An error raised inside the FFI layer itself (bad pointers, lengths).
#[derive(Debug)]
pub(crate) struct FfiError(pub cytoseg_status, pub String);

impl From<Error> for FfiError {
    fn from(e: Error) -> Self {
        FfiError(cytoseg_status::of(&e), e.to_string())
    }
}

/// `FfiError` for a NULL argument.
pub(crate) fn null(name: &str) -> FfiError {
    FfiError(cytoseg_status::NullPointer, format!("{name} is NULL"))
}

/// Runs an export's body: clears the last error, catches panics, records failures.
pub(crate) fn boundary(body: impl FnOnce() -> Result<(), FfiError>) -> cytoseg_status {
    LAST_ERROR.with(|l| *l.borrow_mut() = None);
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => cytoseg_status::Ok,
        Ok(Err(FfiError(status, message))) => {
            set_last_error(status, message);
            status
        }
        Err(panic) => {
            set_last_error(cytoseg_status::Panic, panic_text(panic.as_ref()));
            // Dropping a payload can itself panic; leak it instead (a bug path only).
            std::mem::forget(panic);
            cytoseg_status::Panic
        }
    }
}

/// Runs an infallible export's body behind the panic boundary, returning `fallback` on a panic.
pub(crate) fn infallible<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// Copies the calling thread's last error message into `buf` as a NUL-terminated UTF-8 string,
/// truncated to fit `buf_len` bytes.
///
/// @param buf      Destination buffer, or NULL to only query the length.
/// @param buf_len  Size of `buf` in bytes.
/// @return The number of bytes the full message needs, including the terminating NUL
///         (1 when there is no error). Compare with `buf_len` to detect truncation.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_last_error_message(buf: *mut c_char, buf_len: usize) -> usize {
    infallible(0, || {
        LAST_ERROR.with(|l| {
            let l = l.borrow();
            let msg = l.as_ref().map(|(_, m)| m.as_bytes()).unwrap_or(b"");
            copy_string(msg, buf, buf_len)
        })
    })
}

/// Copies `text` into the caller's `buf` of `buf_len` bytes as a NUL-terminated string,
/// truncated to fit (nothing is written when `buf` is NULL or `buf_len` is 0), and returns the
/// bytes the whole string needs, NUL included: the convention of every string-returning export.
pub(crate) fn copy_string(text: &[u8], buf: *mut c_char, buf_len: usize) -> usize {
    if !buf.is_null() && buf_len > 0 {
        let n = text.len().min(buf_len - 1);
        // SAFETY: the caller guarantees `buf` points to `buf_len` writable bytes; we write
        // n + 1 <= buf_len of them.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf as *mut u8, n);
            *buf.add(n) = 0;
        }
    }
    text.len() + 1
}

/// Status of the calling thread's last failed call (`CYTOSEG_STATUS_OK` if the last call
/// succeeded or none failed yet). Every fallible call resets it on entry.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_last_error_status() -> cytoseg_status {
    infallible(cytoseg_status::Panic, || {
        LAST_ERROR.with(|l| l.borrow().as_ref().map_or(cytoseg_status::Ok, |(s, _)| *s))
    })
}

/// Clears the calling thread's last error.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_clear_last_error() {
    infallible((), || LAST_ERROR.with(|l| *l.borrow_mut() = None))
}

/// A static, NUL-terminated English name for a status code ("unknown status" for codes this
/// version does not define). Never NULL; must not be freed.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_status_name(status: i32) -> *const c_char {
    const UNKNOWN: &std::ffi::CStr = c"unknown status";
    infallible(UNKNOWN.as_ptr(), || {
        cytoseg_status::ALL
            .iter()
            .find(|s| **s as i32 == status)
            .map_or(UNKNOWN.as_ptr(), |s| s.name().as_ptr())
    })
}

/// Borrows a caller's input buffer, checking for NULL, alignment and size.
///
/// # Safety
/// `ptr` must point to `len` initialized values of `T` that stay valid and unmodified for `'a`.
pub(crate) unsafe fn input<'a, T>(
    ptr: *const T,
    len: usize,
    name: &str,
) -> Result<&'a [T], FfiError> {
    check_buffer(ptr, len, name)?;
    // SAFETY: non-null, aligned and of a representable size (checked above); validity is the
    // caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Borrows a caller's output buffer, checking for NULL, alignment and size.
///
/// # Safety
/// `ptr` must point to `len` writable values of `T`, not aliased during the call.
pub(crate) unsafe fn output<'a, T>(
    ptr: *mut T,
    len: usize,
    name: &str,
) -> Result<&'a mut [T], FfiError> {
    check_buffer(ptr, len, name)?;
    // SAFETY: as for `input`, with exclusive access guaranteed by the caller.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

fn check_buffer<T>(ptr: *const T, len: usize, name: &str) -> Result<(), FfiError> {
    if ptr.is_null() {
        return Err(null(name));
    }
    if !(ptr as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(FfiError(
            cytoseg_status::InvalidArgument,
            format!(
                "{name} is not aligned to {} bytes",
                std::mem::align_of::<T>()
            ),
        ));
    }
    if len
        .checked_mul(std::mem::size_of::<T>())
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(FfiError(
            cytoseg_status::TooLarge,
            format!("{name}: length {len} is too large"),
        ));
    }
    Ok(())
}

/// Borrows a caller's interleaved image buffer (`cytoseg_dtype` samples, `channels` per pixel,
/// rows `row_stride_bytes` apart) as an [`ImageView`], checking the dtype, stride and size.
///
/// # Safety
/// `pixels` must point to `(height - 1) * row_stride_bytes + width * channels * sample size`
/// bytes of initialized samples of `dtype` that stay valid and unmodified for `'a`.
pub(crate) unsafe fn image_input<'a>(
    pixels: *const std::ffi::c_void,
    dtype: i32,
    width: usize,
    height: usize,
    channels: usize,
    row_stride_bytes: usize,
    name: &str,
) -> Result<ImageView<'a>, FfiError> {
    let sample = match dtype {
        1 => 1,
        2 => 2,
        3 => 4,
        d => {
            return Err(FfiError(
                cytoseg_status::InvalidArgument,
                format!("unknown dtype {d}"),
            ));
        }
    };
    if !row_stride_bytes.is_multiple_of(sample) {
        return Err(FfiError(
            cytoseg_status::InvalidArgument,
            format!(
                "row_stride_bytes {row_stride_bytes} is not a multiple of the sample size {sample}"
            ),
        ));
    }
    if channels == 0 {
        return Err(FfiError(
            cytoseg_status::InvalidArgument,
            "channels must be >= 1".into(),
        ));
    }
    let stride = row_stride_bytes / sample;
    let total = height
        .checked_sub(1)
        .and_then(|h| h.checked_mul(stride))
        .and_then(|v| v.checked_add(width.checked_mul(channels)?))
        .ok_or_else(|| FfiError(cytoseg_status::TooLarge, "image size overflows".into()))?;
    // SAFETY: the caller provides `total` samples of the given type at `pixels`.
    let px = unsafe {
        match dtype {
            1 => Pixels::U8(input(pixels as *const u8, total, name)?),
            2 => Pixels::U16(input(pixels as *const u16, total, name)?),
            _ => Pixels::F32(input(pixels as *const f32, total, name)?),
        }
    };
    Ok(ImageView::new(px, width, height, channels, stride)?)
}
/// The planes of a caller's z-stack buffer: `planes` planes `plane_stride_bytes` apart (at
/// least `height * row_stride_bytes`), each as [`image_input`] reads one.
///
/// # Safety
/// `pixels` must point to `planes` such planes.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn stack_input<'a>(
    pixels: *const std::ffi::c_void,
    dtype: i32,
    width: usize,
    height: usize,
    planes: usize,
    channels: usize,
    row_stride_bytes: usize,
    plane_stride_bytes: usize,
    name: &str,
) -> Result<Vec<ImageView<'a>>, FfiError> {
    if height
        .checked_mul(row_stride_bytes)
        .is_none_or(|s| plane_stride_bytes < s)
    {
        return Err(FfiError(
            cytoseg_status::InvalidArgument,
            format!(
                "plane_stride_bytes {plane_stride_bytes} is less than height * row_stride_bytes ({height} * {row_stride_bytes})"
            ),
        ));
    }
    if planes
        .saturating_sub(1)
        .checked_mul(plane_stride_bytes)
        .is_none()
    {
        return Err(FfiError(
            cytoseg_status::TooLarge,
            "the stack's size overflows".into(),
        ));
    }
    (0..planes)
        .map(|z| {
            // SAFETY: the caller provides `planes` planes `plane_stride_bytes` apart, each
            // described by the other arguments; the offset was checked not to overflow.
            unsafe {
                image_input(
                    (pixels as *const u8).wrapping_add(z * plane_stride_bytes)
                        as *const std::ffi::c_void,
                    dtype,
                    width,
                    height,
                    channels,
                    row_stride_bytes,
                    name,
                )
            }
        })
        .collect()
}

/// Borrows a caller's image (as [`image_input`]) and its `height * width` labels, checking
/// `labels_len`.
///
/// # Safety
/// As for [`image_input`]; `labels` must point to `labels_len` initialized labels that stay
/// valid and unmodified for `'a`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn labelled_image_input<'a>(
    pixels: *const std::ffi::c_void,
    dtype: i32,
    width: usize,
    height: usize,
    channels: usize,
    row_stride_bytes: usize,
    labels: *const u32,
    labels_len: usize,
) -> Result<(ImageView<'a>, &'a [u32]), FfiError> {
    // SAFETY: the caller provides the image buffer described by the arguments.
    let view = unsafe {
        image_input(
            pixels,
            dtype,
            width,
            height,
            channels,
            row_stride_bytes,
            "pixels",
        )
    }?;
    expect_len(
        "labels_len",
        labels_len,
        Some(width * height),
        "height * width",
    )?;
    // SAFETY: the caller provides labels_len labels (checked to be width * height).
    let labels = unsafe { input(labels, labels_len, "labels") }?;
    Ok((view, labels))
}

/// Checks that a caller's buffer length equals what the image size requires.
pub(crate) fn expect_len(
    name: &str,
    got: usize,
    want: Option<usize>,
    what: &str,
) -> Result<usize, FfiError> {
    match want {
        Some(w) if w == got => Ok(w),
        Some(w) => Err(FfiError(
            cytoseg_status::ShapeMismatch,
            format!("{name} has length {got}, expected {w} ({what})"),
        )),
        None => Err(FfiError(
            cytoseg_status::TooLarge,
            format!("{what} overflows size_t"),
        )),
    }
}

/// Borrows a caller's NUL-terminated UTF-8 string for the call, naming it in the errors (NULL,
/// not UTF-8).
pub(crate) fn c_str<'a>(p: *const c_char, name: &str) -> Result<&'a str, FfiError> {
    if p.is_null() {
        return Err(null(name));
    }
    // SAFETY: non-null; the caller passes a NUL-terminated string valid for the call.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| {
            FfiError(
                cytoseg_status::InvalidArgument,
                format!("{name} is not valid UTF-8"),
            )
        })
}

/// The message every face reports for a caught panic (the C API's last error, the JNI
/// `IllegalStateException`): `internal error (please report): <the panic's message>`.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("internal error (please report): {what}")
}
