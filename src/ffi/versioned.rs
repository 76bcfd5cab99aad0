//! The C API's growable structs: each begins with its own size (`struct_size`), and later
//! versions of the header only append fields. A program built against an older header passes a
//! smaller struct; the library reads the fields that struct has and gives the rest their
//! defaults. `_init` functions write only the fields of the struct's first version, so they
//! never write past the end of an older program's struct; a struct that has grown also has an
//! `_init_sized(ptr, sizeof *ptr)` that writes every field of the caller's version
//! ([`write_version`]), which a program must use to set the later fields.

use super::boundary::{FfiError, cytoseg_status, null};

/// The C sizes of every prefix of a `#[repr(C)]` struct's fields — what a C compiler gives a
/// copy of the struct that ends after that field — in field order; the last is the whole
/// struct's size.
macro_rules! prefix_sizes {
    ($t:ty { $($f:ident : $ft:ty),+ $(,)? }) => {{
        const N: usize = [$(stringify!($f)),+].len();
        const SIZES: [usize; N] = {
            let ends = [$(std::mem::offset_of!($t, $f) + std::mem::size_of::<$ft>()),+];
            let aligns = [$(std::mem::align_of::<$ft>()),+];
            let mut out = [0usize; N];
            let mut align = 1;
            let mut i = 0;
            while i < N {
                if aligns[i] > align {
                    align = aligns[i];
                }
                out[i] = ends[i].div_ceil(align) * align;
                i += 1;
            }
            out
        };
        const _: () = assert!(SIZES[N - 1] == std::mem::size_of::<$t>());
        &SIZES
    }};
}
pub(crate) use prefix_sizes;

/// A growable C API struct whose first field is its size.
pub(crate) trait Versioned: Copy {
    /// The C name, for messages.
    const NAME: &'static str;
    /// The function that initializes it, for messages.
    const INIT: &'static str;
    /// Size in bytes of the first version's struct: what `_init` writes.
    const FIRST_VERSION_SIZE: usize;
    /// Sizes of every prefix of the fields (see [`prefix_sizes!`]).
    fn prefix_sizes() -> &'static [usize];
    /// Reads the leading size field of the struct at `ptr`.
    ///
    /// # Safety
    /// `ptr` must be non-null and point to at least the size field; it need not be aligned
    /// (read it with `read_unaligned`).
    unsafe fn read_size(ptr: *const Self) -> usize;
    /// Sets the size field.
    fn set_size(&mut self, size: usize);
}

/// Reads a caller's struct of any version: its fields over `defaults`, which supplies every
/// field the caller's (older) struct lacks.
///
/// # Safety
/// `ptr`, when non-null, must point to a struct of this type of some version, initialized up
/// to its `struct_size` (an older version may be less aligned than this one).
pub(crate) unsafe fn read_versioned<T: Versioned>(
    ptr: *const T,
    defaults: T,
    name: &str,
) -> Result<T, FfiError> {
    if ptr.is_null() {
        return Err(null(name));
    }
    // SAFETY: non-null (checked above); every version starts with the size field. An older
    // struct may be less aligned than this one, so nothing here assumes alignment.
    let size = unsafe { T::read_size(ptr) };
    let full = std::mem::size_of::<T>();
    if size > full {
        return Err(FfiError(
            cytoseg_status::InvalidArgument,
            format!(
                "{name}.struct_size is {size}, larger than this library's {} ({full} bytes): the \
                 program was built against a newer cytoseg header than this library ({})",
                T::NAME,
                crate::VERSION
            ),
        ));
    }
    if !T::prefix_sizes().contains(&size) {
        return Err(FfiError(
            cytoseg_status::InvalidArgument,
            format!(
                "{name}.struct_size is {size}, not the size of any version of {} (this \
                 library's is {full}): initialize it with {}",
                T::NAME,
                T::INIT
            ),
        ));
    }
    let mut out = defaults;
    // SAFETY: the caller's struct holds `size` initialized bytes (its version's size, checked
    // to be a prefix of this layout, so every field copied is whole; a byte copy needs no
    // alignment), and `out` is a distinct
    // local of at least `size` bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(ptr as *const u8, (&raw mut out) as *mut u8, size);
    }
    out.set_size(full);
    Ok(out)
}

/// Writes the first version's fields of `value` to the caller's struct, `struct_size` set to
/// that version's size: an `_init` function never writes past an older program's struct.
///
/// # Safety
/// `ptr`, when non-null, must point to writable memory of at least the first version's size.
pub(crate) unsafe fn write_first_version<T: Versioned>(
    ptr: *mut T,
    mut value: T,
    name: &str,
) -> Result<(), FfiError> {
    if ptr.is_null() {
        return Err(null(name));
    }
    value.set_size(T::FIRST_VERSION_SIZE);
    // SAFETY: non-null; the caller provides at least the first version's bytes, and
    // FIRST_VERSION_SIZE <= size_of::<T>() (a prefix size).
    unsafe {
        std::ptr::copy_nonoverlapping(
            (&raw const value) as *const u8,
            ptr as *mut u8,
            T::FIRST_VERSION_SIZE,
        );
    }
    Ok(())
}

/// Writes the fields of `value` that a struct of `size` bytes holds (the caller's version,
/// `sizeof` in its header), `struct_size` set to `size`: what `_init_sized` functions do.
/// `size` must be the size of a version that has the first version's fields; a larger size
/// than this library's is refused (a newer header than the library).
///
/// # Safety
/// `ptr`, when non-null, must point to writable memory of at least `size` bytes.
pub(crate) unsafe fn write_version<T: Versioned>(
    ptr: *mut T,
    mut value: T,
    size: usize,
    name: &str,
) -> Result<(), FfiError> {
    if ptr.is_null() {
        return Err(null(name));
    }
    let full = std::mem::size_of::<T>();
    if size > full {
        return Err(FfiError(
            cytoseg_status::InvalidArgument,
            format!(
                "size {size} is larger than this library's {} ({full} bytes): the program was \
                 built against a newer cytoseg header than this library ({})",
                T::NAME,
                crate::VERSION
            ),
        ));
    }
    if size < T::FIRST_VERSION_SIZE || !T::prefix_sizes().contains(&size) {
        return Err(FfiError(
            cytoseg_status::InvalidArgument,
            format!(
                "size {size} is not the size of any version of {} (this library's is {full}): \
                 pass sizeof(*{name})",
                T::NAME
            ),
        ));
    }
    value.set_size(size);
    // SAFETY: non-null; the caller provides `size` writable bytes, and `size <=
    // size_of::<T>()` (checked above).
    unsafe {
        std::ptr::copy_nonoverlapping((&raw const value) as *const u8, ptr as *mut u8, size);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq)]
    struct Grown {
        struct_size: u32,
        a: u32,
        b: f64,
        c: u8,
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Old {
        struct_size: u32,
        a: u32,
    }

    impl Versioned for Grown {
        const NAME: &'static str = "grown";
        const INIT: &'static str = "grown_init";
        const FIRST_VERSION_SIZE: usize = 8;
        fn prefix_sizes() -> &'static [usize] {
            prefix_sizes!(Grown {
                struct_size: u32,
                a: u32,
                b: f64,
                c: u8
            })
        }
        unsafe fn read_size(ptr: *const Self) -> usize {
            // SAFETY: as the trait requires.
            unsafe { (ptr as *const u32).read_unaligned() as usize }
        }
        fn set_size(&mut self, size: usize) {
            self.struct_size = size as u32;
        }
    }

    const DEFAULTS: Grown = Grown {
        struct_size: 0,
        a: 1,
        b: 2.0,
        c: 3,
    };

    #[test]
    fn every_c_struct_first_version_is_one_of_its_prefixes() {
        use crate::ffi::{
            cytoseg_batch_options, cytoseg_calibration, cytoseg_load_options, cytoseg_masks_params,
            cytoseg_segment_params,
        };
        fn check<T: Versioned>() {
            let sizes = T::prefix_sizes();
            assert!(
                sizes.contains(&T::FIRST_VERSION_SIZE),
                "{}: {} not in {sizes:?}",
                T::NAME,
                T::FIRST_VERSION_SIZE
            );
            assert_eq!(
                *sizes.last().unwrap(),
                std::mem::size_of::<T>(),
                "{}",
                T::NAME
            );
        }
        check::<cytoseg_masks_params>();
        check::<cytoseg_segment_params>();
        check::<cytoseg_load_options>();
        check::<cytoseg_calibration>();
        check::<cytoseg_batch_options>();
    }

    #[test]
    fn init_sized_writes_the_callers_version_and_no_byte_more() {
        // An older caller's struct (8 bytes) in a larger buffer: the bytes after it untouched.
        let mut buf = [0xABu8; 32];
        let p = buf.as_mut_ptr() as *mut Grown;
        unsafe { write_version(p, DEFAULTS, 8, "p") }.unwrap();
        assert_eq!(&buf[..8], &[8, 0, 0, 0, 1, 0, 0, 0]);
        assert!(buf[8..].iter().all(|&b| b == 0xAB));
        // The whole struct: every field written, struct_size its size, read back as written.
        let mut g = Grown {
            struct_size: 0,
            a: 0,
            b: 0.0,
            c: 0,
        };
        unsafe { write_version(&raw mut g, DEFAULTS, 24, "p") }.unwrap();
        assert_eq!(
            g,
            Grown {
                struct_size: 24,
                ..DEFAULTS
            }
        );
        let back = unsafe { read_versioned(&raw const g, DEFAULTS, "p") }.unwrap();
        assert_eq!(back, g);
        // Sizes of no version, below the first version and above this library's: refused.
        for bad in [4, 12, 20, 32] {
            let err = unsafe { write_version(&raw mut g, DEFAULTS, bad, "p") }.unwrap_err();
            assert_eq!(err.0, cytoseg_status::InvalidArgument, "size {bad}");
        }
        assert!(unsafe { write_version(std::ptr::null_mut(), DEFAULTS, 24, "p") }.is_err());
    }

    #[test]
    fn prefix_sizes_are_c_sizes() {
        assert_eq!(Grown::prefix_sizes(), &[4, 8, 16, 24]);
    }

    #[test]
    fn an_older_struct_gets_defaults_for_the_missing_fields() {
        let old = Old {
            struct_size: 8,
            a: 7,
        };
        let got =
            unsafe { read_versioned((&raw const old) as *const Grown, DEFAULTS, "p") }.unwrap();
        assert_eq!(
            got,
            Grown {
                struct_size: 24,
                a: 7,
                b: 2.0,
                c: 3
            }
        );
    }

    #[test]
    fn bad_and_newer_sizes_are_refused() {
        for (size, want) in [
            (12, "not the size of any version"),
            (32, "newer cytoseg header"),
        ] {
            let g = Grown {
                struct_size: size,
                ..DEFAULTS
            };
            let e = unsafe { read_versioned(&raw const g, DEFAULTS, "p") }.unwrap_err();
            assert!(e.1.contains(want), "{}", e.1);
        }
    }

    #[test]
    fn init_writes_only_the_first_version() {
        let mut old = Old {
            struct_size: 0,
            a: 0,
        };
        unsafe { write_first_version((&raw mut old) as *mut Grown, DEFAULTS, "p") }.unwrap();
        assert_eq!((old.struct_size, old.a), (8, 1));
    }
}
