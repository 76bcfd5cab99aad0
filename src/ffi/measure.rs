//! C entry points for per-object measurements (tables equal to skimage's `regionprops_table`).

use std::ffi::{CStr, CString, c_char, c_void};

use crate::core::measure::{Calibration, Table, measure, measure_planes};

use super::boundary::{
    FfiError, boundary, cytoseg_status, expect_len, image_input, infallible, input, null,
    stack_input,
};
use super::versioned::{Versioned, prefix_sizes, read_versioned, write_first_version};

/// A measurement table (opaque): one row per object, ordered by label, columns of doubles.
/// Created by `cytoseg_measure`, released by `cytoseg_table_free`. Read-only after creation,
/// so it may be read from several threads at once.
pub struct cytoseg_table {
    table: Table,
    names: Vec<CString>,
    units: Vec<CString>,
}

/// Physical pixel size for `cytoseg_measure`. Initialize with `cytoseg_calibration_init`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cytoseg_calibration {
    /// `sizeof(cytoseg_calibration)` of the header the program was built with; set by `cytoseg_calibration_init`. A
    /// struct of an older header (smaller) is accepted: the fields it lacks take their defaults.
    pub struct_size: usize,
    /// Width of a pixel (x, columns) in `unit`; > 0. Default 1.
    pub pixel_width: f64,
    /// Height of a pixel (y, rows) in `unit`; > 0. Default 1.
    pub pixel_height: f64,
    /// Length unit, e.g. "um" (NUL-terminated UTF-8, only read during the call); NULL means
    /// "pixel". Default NULL.
    pub unit: *const c_char,
}

impl Versioned for cytoseg_calibration {
    const NAME: &'static str = "cytoseg_calibration";
    const INIT: &'static str = "cytoseg_calibration_init";
    const FIRST_VERSION_SIZE: usize = 32;
    fn prefix_sizes() -> &'static [usize] {
        prefix_sizes!(cytoseg_calibration {
            struct_size: usize,
            pixel_width: f64,
            pixel_height: f64,
            unit: *const c_char,
        })
    }
    unsafe fn read_size(ptr: *const Self) -> usize {
        // SAFETY: as the trait requires.
        unsafe { (ptr as *const usize).read_unaligned() }
    }
    fn set_size(&mut self, size: usize) {
        self.struct_size = size;
    }
}

fn default_calibration() -> cytoseg_calibration {
    cytoseg_calibration {
        struct_size: std::mem::size_of::<cytoseg_calibration>(),
        pixel_width: 1.0,
        pixel_height: 1.0,
        unit: std::ptr::null(),
    }
}

/// Fills `cal` with the defaults: 1 × 1 pixel, unit NULL ("pixel", uncalibrated).
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_calibration_init(cal: *mut cytoseg_calibration) -> cytoseg_status {
    boundary(|| {
        // SAFETY: the caller provides a writable struct of some version.
        unsafe { write_first_version(cal, default_calibration(), "cal") }
    })
}

pub(crate) fn calibration(cal: *const cytoseg_calibration) -> Result<Calibration, FfiError> {
    if cal.is_null() {
        return Ok(Calibration::default());
    }
    // SAFETY: non-null caller struct of some version.
    let c = unsafe { read_versioned(cal, default_calibration(), "cal") }?;
    let unit = if c.unit.is_null() {
        "pixel".to_string()
    } else {
        // SAFETY: non-null; the caller passes a NUL-terminated string valid for the call.
        unsafe { CStr::from_ptr(c.unit) }
            .to_str()
            .map_err(|_| {
                FfiError(
                    cytoseg_status::InvalidArgument,
                    "cal.unit is not valid UTF-8".into(),
                )
            })?
            .to_string()
    };
    Ok(Calibration {
        pixel_width: c.pixel_width,
        pixel_height: c.pixel_height,
        unit,
        z_spacing: None,
    })
}

/// Measures every object of a label image: label, area, centroid, bounding box, perimeter,
/// equivalent diameter, axis lengths, eccentricity, orientation, solidity, extent and, with an
/// intensity image, per-channel mean/min/max/std/integrated intensity — the values of
/// `skimage.measure.regionprops_table` (scikit-image 0.26); see the README's "Measurements".
///
/// @param labels            `height * width` uint32 labels, row-major (0 = background).
/// @param width, height     Label image size (each >= 1).
/// @param image             Optional intensity image (may be NULL): `height` rows of `width`
///                          pixels × `channels` interleaved samples of type `dtype`, rows every
///                          `row_stride_bytes` (as for `cytoseg_model_segment`).
/// @param dtype             A `cytoseg_dtype` value (ignored without `image`).
/// @param channels          Samples per pixel (>= 1; ignored without `image`).
/// @param row_stride_bytes  Bytes between row starts (ignored without `image`).
/// @param cal               Pixel size and unit, or NULL for uncalibrated pixels.
/// @param out               Receives the new table on success; free with `cytoseg_table_free`.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_measure(
    labels: *const u32,
    width: usize,
    height: usize,
    image: *const c_void,
    dtype: i32,
    channels: usize,
    row_stride_bytes: usize,
    cal: *const cytoseg_calibration,
    out: *mut *mut cytoseg_table,
) -> cytoseg_status {
    boundary(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        if width == 0 || height == 0 {
            return Err(FfiError(
                cytoseg_status::InvalidArgument,
                format!("label image is empty ({width}×{height})"),
            ));
        }
        let n = width.checked_mul(height).ok_or_else(|| {
            FfiError(
                cytoseg_status::TooLarge,
                "width * height overflows size_t".into(),
            )
        })?;
        // SAFETY: the caller provides width * height labels.
        let labels = unsafe { input(labels, n, "labels") }?;
        let calibration = calibration(cal)?;
        let table = if image.is_null() {
            measure(labels, height, width, None, &calibration)?
        } else {
            // SAFETY: the caller provides the image buffer described by the arguments.
            let view = unsafe {
                image_input(
                    image,
                    dtype,
                    width,
                    height,
                    channels,
                    row_stride_bytes,
                    "image",
                )
            }?;
            measure(labels, height, width, Some(&view), &calibration)?
        };
        let handle = table_handle(table)?;
        // SAFETY: non-null caller pointer.
        unsafe { *out = Box::into_raw(handle) };
        Ok(())
    })
}

/// Measures every 3-D object of a label stack, as `skimage.measure.regionprops_table` on the
/// volume with `spacing=(z_spacing, pixel height, pixel width)`: label, area (the volume),
/// centroid-0..2 (z, y, x), bbox-0..5, equivalent diameter, axis lengths, solidity, extent and,
/// with an intensity stack, per-channel intensities; see the README's "Measurements".
///
/// @param labels              `planes * height * width` uint32 labels, plane after plane.
/// @param width, height       Plane size (each >= 1).
/// @param planes              Number of z planes (>= 1).
/// @param image               Optional intensity stack (may be NULL): `planes` planes
///                            `plane_stride_bytes` apart, each as for `cytoseg_measure`.
/// @param dtype               A `cytoseg_dtype` value (ignored without `image`).
/// @param channels            Samples per pixel (>= 1; ignored without `image`).
/// @param row_stride_bytes    Bytes between row starts (ignored without `image`).
/// @param plane_stride_bytes  Bytes between plane starts, >= `height * row_stride_bytes`
///                            (ignored without `image`).
/// @param cal                 Pixel size and unit, or NULL for uncalibrated pixels.
/// @param z_spacing           Distance between planes in the calibration's unit (> 0; 0 = 1).
/// @param out                 Receives the new table on success; free with `cytoseg_table_free`.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_measure_volume(
    labels: *const u32,
    width: usize,
    height: usize,
    planes: usize,
    image: *const c_void,
    dtype: i32,
    channels: usize,
    row_stride_bytes: usize,
    plane_stride_bytes: usize,
    cal: *const cytoseg_calibration,
    z_spacing: f64,
    out: *mut *mut cytoseg_table,
) -> cytoseg_status {
    boundary(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        if width == 0 || height == 0 || planes == 0 {
            return Err(FfiError(
                cytoseg_status::InvalidArgument,
                format!("label stack is empty ({width}×{height}×{planes} planes)"),
            ));
        }
        let n = width
            .checked_mul(height)
            .and_then(|n| n.checked_mul(planes))
            .ok_or_else(|| {
                FfiError(
                    cytoseg_status::TooLarge,
                    "width * height * planes overflows size_t".into(),
                )
            })?;
        // SAFETY: the caller provides planes * width * height labels.
        let labels = unsafe { input(labels, n, "labels") }?;
        let calibration = calibration(cal)?;
        let views = if image.is_null() {
            Vec::new()
        } else {
            // SAFETY: the caller provides the stack buffer described by the arguments.
            unsafe {
                stack_input(
                    image,
                    dtype,
                    width,
                    height,
                    planes,
                    channels,
                    row_stride_bytes,
                    plane_stride_bytes,
                    "image",
                )
            }?
        };
        let z = if z_spacing == 0.0 { 1.0 } else { z_spacing };
        let table = measure_planes(labels, [planes, height, width], &views, &calibration, z)?;
        let handle = table_handle(table)?;
        // SAFETY: non-null caller pointer.
        unsafe { *out = Box::into_raw(handle) };
        Ok(())
    })
}

/// A table handle for the caller: the engine's table with its names and units as C strings.
pub(crate) fn table_handle(table: Table) -> Result<Box<cytoseg_table>, FfiError> {
    let cstring = |s: &str| {
        CString::new(s).map_err(|_| {
            FfiError(
                cytoseg_status::InvalidArgument,
                "cal.unit contains a NUL byte".into(),
            )
        })
    };
    let names = table
        .columns
        .iter()
        .map(|c| cstring(&c.name))
        .collect::<Result<_, _>>()?;
    let units = table
        .columns
        .iter()
        .map(|c| cstring(c.unit.as_deref().unwrap_or("")))
        .collect::<Result<_, _>>()?;
    Ok(Box::new(cytoseg_table {
        table,
        names,
        units,
    }))
}

fn table_ref<'a>(t: *const cytoseg_table) -> Option<&'a cytoseg_table> {
    // SAFETY: a non-null pointer from cytoseg_measure, alive until cytoseg_table_free.
    (!t.is_null()).then(|| unsafe { &*t })
}

/// Number of rows (objects) of `t`; 0 for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_table_rows(t: *const cytoseg_table) -> usize {
    infallible(0, || table_ref(t).map_or(0, |t| t.table.n_rows()))
}

/// Number of columns of `t`; 0 for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_table_columns(t: *const cytoseg_table) -> usize {
    infallible(0, || table_ref(t).map_or(0, |t| t.table.columns.len()))
}

/// Name of column `i` (e.g. "area", "intensity_mean-1"), valid while `t` lives; NULL when `t`
/// is NULL or `i` is out of range.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_table_column_name(t: *const cytoseg_table, i: usize) -> *const c_char {
    infallible(std::ptr::null(), || {
        table_ref(t)
            .and_then(|t| t.names.get(i))
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// Unit of column `i` ("um", "um^2", ...; "" when it has none: pixels or unitless), valid
/// while `t` lives; NULL when `t` is NULL or `i` is out of range.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_table_column_unit(t: *const cytoseg_table, i: usize) -> *const c_char {
    infallible(std::ptr::null(), || {
        table_ref(t)
            .and_then(|t| t.units.get(i))
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// Copies column `i` of `t` into `out`.
///
/// @param out  Caller-allocated array of `len` doubles.
/// @param len  Must equal `cytoseg_table_rows(t)`.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_table_column(
    t: *const cytoseg_table,
    i: usize,
    out: *mut f64,
    len: usize,
) -> cytoseg_status {
    boundary(|| {
        let t = table_ref(t).ok_or_else(|| null("t"))?;
        let col = t.table.columns.get(i).ok_or_else(|| {
            FfiError(
                cytoseg_status::InvalidArgument,
                format!(
                    "column {i} is out of range (the table has {})",
                    t.table.columns.len()
                ),
            )
        })?;
        expect_len("len", len, Some(col.values.len()), "the table's row count")?;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the caller provides `len` writable doubles.
        let dst = unsafe { super::boundary::output(out, len, "out") }?;
        dst.copy_from_slice(&col.values);
        Ok(())
    })
}

/// Releases a table; NULL is a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_table_free(t: *mut cytoseg_table) {
    let _ = boundary(|| {
        if !t.is_null() {
            // SAFETY: created by Box::into_raw in cytoseg_measure and not freed before.
            drop(unsafe { Box::from_raw(t) });
        }
        Ok(())
    });
}
