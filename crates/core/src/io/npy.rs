//! NumPy `.npy` input and output with clear errors for wrong dtypes and shapes.

use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{ReadNpyError, ReadNpyExt, ReadableElement};

use crate::error::{Error, Result};
use crate::io::limits;

/// Longest `.npy` header read, in bytes (NumPy itself refuses headers over 10,000 bytes).
pub const MAX_HEADER_BYTES: u64 = 1 << 20;

/// What a `.npy` header says, read without allocating for the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// The array's shape.
    pub shape: Vec<usize>,
    /// The dtype descriptor, e.g. `<f4` (empty for structured dtypes).
    pub descr: String,
    /// Bytes per element (from the descriptor; 1 when it cannot be told).
    pub item_size: u64,
    /// Number of elements (product of the shape).
    pub elements: u64,
    /// Bytes of array data the header announces.
    pub data_bytes: u64,
}

/// Reads and checks a `.npy` header before any allocation for its data: the header must fit
/// in [`MAX_HEADER_BYTES`] and in the file, its shape must be readable, the data it announces
/// must be present in the file (an uncompressed `.npy` holds all of it) and within the memory
/// limits of [`limits::check_size`]. Errors name the file and the numbers.
pub fn check_header(path: &Path) -> Result<NpyHeader> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut prefix = Vec::with_capacity(12);
    (&mut file)
        .take(12)
        .read_to_end(&mut prefix)
        .map_err(|e| Error::io(path, e))?;
    if prefix.len() < 10 || &prefix[..6] != b"\x93NUMPY" {
        return Err(Error::format(
            path,
            format!("not a .npy file (no NumPy magic string in its {file_len} bytes)"),
        ));
    }
    let (start, header_len) = match prefix[6] {
        1 => (10u64, u16::from_le_bytes([prefix[8], prefix[9]]) as u64),
        2 | 3 if prefix.len() == 12 => (
            12u64,
            u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]) as u64,
        ),
        v => {
            return Err(Error::format(
                path,
                format!("unsupported .npy format version {v}"),
            ));
        }
    };
    if header_len > MAX_HEADER_BYTES || start + header_len > file_len {
        return Err(Error::format(
            path,
            format!(
                "the .npy header claims {header_len} bytes; the file has {file_len} bytes and headers are at most {MAX_HEADER_BYTES}"
            ),
        ));
    }
    let mut raw = Vec::new();
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start))
        .map_err(|e| Error::io(path, e))?;
    file.take(header_len)
        .read_to_end(&mut raw)
        .map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8_lossy(&raw);
    let unreadable = |what: &str| {
        Error::format(
            path,
            format!(
                "not a readable .npy file: {what} in header {:?}",
                clip(&text)
            ),
        )
    };
    // Deeply nested literals are no array header (and could exhaust a recursive parser).
    let mut depth = 0usize;
    for ch in text.chars() {
        match ch {
            '(' | '[' | '{' => {
                depth += 1;
                if depth > 8 {
                    return Err(unreadable("brackets nested more than 8 deep"));
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let after_key = |key: &str| -> Option<&str> {
        let i = text
            .find(&format!("'{key}'"))
            .or_else(|| text.find(&format!("\"{key}\"")))?;
        let rest = text[i + key.len() + 2..].trim_start();
        Some(rest.strip_prefix(':')?.trim_start())
    };
    let shape_text = after_key("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.find(')').map(|j| &r[..j]))
        .ok_or_else(|| unreadable("no shape tuple"))?;
    let mut shape = Vec::new();
    for part in shape_text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let n: u64 = part
            .trim_end_matches(['L', 'l'])
            .parse()
            .map_err(|_| unreadable("a shape entry that is not a non-negative integer"))?;
        if shape.len() >= 32 {
            return Err(unreadable("more than 32 dimensions"));
        }
        shape.push(n);
    }
    let descr = after_key("descr")
        .and_then(|r| {
            let q = r.chars().next().filter(|&c| c == '\'' || c == '"')?;
            let body = &r[1..];
            Some(body[..body.find(q)?].to_string())
        })
        .unwrap_or_default();
    let digits: String = descr
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let item_size = digits.parse::<u64>().ok().filter(|&n| n > 0).unwrap_or(1);
    // ndarray (and so the .npy reader) refuses, by a panic, a shape whose non-zero axis
    // lengths multiply past isize::MAX, even when another axis is 0 (an empty array): such a
    // header is an error here (fuzz finding: shape (0, 4294967300, 4294967293, 4, 2)).
    let nonzero: Vec<u64> = shape.iter().copied().filter(|&n| n > 0).collect();
    if shape.contains(&0) && limits::product(&nonzero).is_none_or(|p| p > isize::MAX as u64) {
        return Err(unreadable(
            "a shape whose axis lengths multiply past 2^63 (an array no machine can index)",
        ));
    }
    let elements = limits::product(&shape);
    let data_bytes = elements.and_then(|n| n.checked_mul(item_size));
    let shape_str = shape
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    limits::check_size(
        path,
        &format!("an array of shape ({shape_str}) and dtype {descr:?}"),
        data_bytes,
    )?;
    let (elements, data_bytes) = (elements.unwrap_or(0), data_bytes.unwrap_or(0));
    let available = file_len - start - header_len;
    if data_bytes > available {
        return Err(Error::format(
            path,
            format!(
                "truncated .npy file: the header announces shape ({shape_str}) of {descr:?} = {}, the file holds {} after its header",
                limits::bytes_text(data_bytes),
                limits::bytes_text(available)
            ),
        ));
    }
    let shape = shape
        .into_iter()
        .map(usize::try_from)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| unreadable("a dimension too large for this machine"))?;
    Ok(NpyHeader {
        shape,
        descr,
        item_size,
        elements,
        data_bytes,
    })
}

/// The start of a header for messages.
fn clip(text: &str) -> String {
    text.chars().take(120).collect()
}

/// The elements of an array in row-major order, without copying when it already is; a copy
/// (Fortran order) is allocated fallibly.
pub fn into_row_major<T: Clone>(path: &Path, a: ArrayD<T>) -> Result<Vec<T>> {
    if a.is_standard_layout() {
        let len = a.len();
        let (v, offset) = a.into_raw_vec_and_offset();
        let off = offset.unwrap_or(0);
        if off == 0 && v.len() == len {
            return Ok(v);
        }
        // Unreachable for arrays read from a file; kept correct regardless.
        return limits::try_collect(path, "array data", v[off..off + len].iter().cloned());
    }
    limits::try_collect(
        path,
        "row-major copy of a Fortran-order array",
        a.iter().cloned(),
    )
}

fn npy_error(path: &Path, e: ReadNpyError, want: &str) -> Error {
    match e {
        ReadNpyError::Io(io) => Error::io(path, io),
        ReadNpyError::WrongDescriptor(d) => Error::format(
            path,
            format!("holds {d:?}, expected {want} (convert with numpy's astype)"),
        ),
        other => Error::format(path, format!("not a readable .npy file: {other}")),
    }
}

/// Reads a `.npy` array of element type `T` with any number of dimensions (C or Fortran order).
///
/// The header is checked first ([`check_header`]), so that a hostile or corrupt header is an
/// error, not an allocation of what it claims.
pub fn read<T: ReadableElement>(path: &Path, dtype_name: &str) -> Result<ArrayD<T>> {
    check_header(path)?;
    read_checked(path, dtype_name)
}

/// [`read`] for a file whose header [`check_header`] has accepted.
pub fn read_checked<T: ReadableElement>(path: &Path, dtype_name: &str) -> Result<ArrayD<T>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    ArrayD::<T>::read_npy(std::io::BufReader::new(file)).map_err(|e| npy_error(path, e, dtype_name))
}

/// Reads a float32 `.npy` array and checks its shape against `expected` (`None` = any size).
pub fn read_f32(path: &Path, expected: &[Option<usize>]) -> Result<ArrayD<f32>> {
    let a = read::<f32>(path, "float32")?;
    let ok = a.ndim() == expected.len()
        && a.shape()
            .iter()
            .zip(expected)
            .all(|(&s, e)| e.is_none_or(|e| e == s));
    if !ok {
        let want: Vec<String> = expected
            .iter()
            .map(|e| e.map_or("N".to_string(), |v| v.to_string()))
            .collect();
        return Err(Error::format(
            path,
            format!("has shape {:?}, expected ({})", a.shape(), want.join(", ")),
        ));
    }
    Ok(a)
}

/// Writes `data` of shape `shape` as a `.npy` file.
pub fn write<T: ndarray_npy::WritableElement + Clone>(
    w: &mut impl std::io::Write,
    shape: &[usize],
    data: Vec<T>,
) -> Result<()> {
    use ndarray_npy::WriteNpyExt;
    let a = ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| Error::shape(e.to_string()))?;
    a.write_npy(w)
        .map_err(|e| Error::invalid(format!("writing .npy: {e}")))
}
