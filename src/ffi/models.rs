//! Model packages by name: which ones a host can offer, and where a user's clones are saved.

use std::ffi::c_char;

use super::boundary::{boundary, c_str, copy_string, infallible, output};
use super::cytoseg_status;

/// Lists the model packages this library finds by name (`$CYTOSEG_MODELS`, `models/` beside
/// libcytoseg or one level up, then the user's models folder; see
/// [`cytoseg_user_model_dir`]), one per line as `name<TAB>folder<LF>`, the first package of
/// each name only: the names `cytoseg_model_load` accepts.
///
/// @param buf      Destination buffer, or NULL to only query the length.
/// @param buf_len  Size of `buf` in bytes.
/// @return The bytes the whole list needs, including the terminating NUL (1 when no package
///         is found). Compare with `buf_len` to detect truncation.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_list_models(buf: *mut c_char, buf_len: usize) -> usize {
    infallible(0, || {
        let found = crate::core::model::list_models(&crate::host::library_model_dirs());
        let text: String = found
            .iter()
            .map(|(name, dir)| format!("{name}\t{}\n", dir.display()))
            .collect();
        copy_string(text.as_bytes(), buf, buf_len)
    })
}

/// The user's models folder, or the folder a new clone called `name` is to be saved to
/// (pass it as `cytoseg_train_options.out`), as a NUL-terminated UTF-8 path.
///
/// The user's models folder is `$CYTOSEG_USER_MODELS` when set, else
/// `$XDG_DATA_HOME/cytoseg/models` (default `~/.local/share/cytoseg/models`) on Linux,
/// `~/Library/Application Support/cytoseg/models` on macOS, `%APPDATA%\cytoseg\models` on
/// Windows. Every face of cytoseg (command line, C API, Fiji, napari) offers the packages saved
/// there by name. The folder may not exist yet; `cytoseg_train` creates it.
///
/// @param name     NULL or "" for the folder itself; else the clone's name: 1 to 64 ASCII
///                 letters, digits, `-`, `_` or `.`, not starting with `.`, and not the name
///                 of a package this library already finds (see `cytoseg_list_models`).
/// @param buf      Destination buffer, or NULL to only query the length.
/// @param buf_len  Size of `buf` in bytes.
/// @param needed   Receives the bytes the whole path needs, including the NUL (may be NULL).
///                 Compare with `buf_len` to detect truncation.
/// @return `CYTOSEG_STATUS_OK`; `CYTOSEG_STATUS_INVALID_ARGUMENT` for a bad or taken name, or
///         when no folder is known (no home folder and no `$CYTOSEG_USER_MODELS`).
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_user_model_dir(
    name: *const c_char,
    buf: *mut c_char,
    buf_len: usize,
    needed: *mut usize,
) -> cytoseg_status {
    boundary(|| {
        let name = if name.is_null() {
            ""
        } else {
            c_str(name, "name")?
        };
        let path = if name.is_empty() {
            crate::host::user_models_root()?
        } else {
            crate::host::user_model_dir(name, &crate::host::library_model_dirs())?
        };
        let needed = if needed.is_null() {
            None
        } else {
            // SAFETY: `needed` is non-NULL and, by the contract above, points to a writable
            // size_t; `output` checks its alignment.
            Some(unsafe { output(needed, 1, "needed")? })
        };
        let n = copy_string(path.to_string_lossy().as_bytes(), buf, buf_len);
        if let Some(out) = needed {
            out[0] = n;
        }
        Ok(())
    })
}
