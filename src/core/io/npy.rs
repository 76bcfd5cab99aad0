//! NumPy `.npy` input and output with clear errors for wrong dtypes and shapes.

use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{ReadNpyError, ReadNpyExt, ReadableElement};

use crate::core::error::{Error, Result};

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
pub fn read<T: ReadableElement>(path: &Path, dtype_name: &str) -> Result<ArrayD<T>> {
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
