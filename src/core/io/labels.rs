//! Label images on disk: written as uint16 when every label fits (as Cellpose does), uint32
//! otherwise; `.tif`/`.tiff` (deflate-compressed) or `.npy`.

use std::path::Path;

use crate::core::error::{Error, Result};
use crate::core::io::{npy, write_atomic};

/// File formats for label images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelFormat {
    /// TIFF, deflate compressed, 16- or 32-bit grayscale.
    Tiff,
    /// NumPy `.npy`, uint16 or uint32.
    Npy,
}

impl LabelFormat {
    /// The format implied by a file name's extension.
    pub fn from_path(path: &Path) -> Result<Self> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref()
        {
            Some("tif") | Some("tiff") => Ok(LabelFormat::Tiff),
            Some("npy") => Ok(LabelFormat::Npy),
            _ => Err(Error::invalid(format!(
                "{}: label images are written as .tif, .tiff or .npy",
                path.display()
            ))),
        }
    }
}

/// Writes a row-major `height × width` label image atomically; refuses to replace an existing
/// file unless `overwrite`.
pub fn write_labels(
    path: &Path,
    labels: &[u32],
    height: usize,
    width: usize,
    overwrite: bool,
) -> Result<()> {
    if labels.len() != height * width {
        return Err(Error::shape(format!(
            "{} labels for a {height}×{width} image",
            labels.len()
        )));
    }
    let format = LabelFormat::from_path(path)?;
    let fits16 = labels.iter().all(|&l| l <= u16::MAX as u32);
    write_atomic(path, overwrite, |w| match format {
        LabelFormat::Npy => {
            if fits16 {
                npy::write(
                    w,
                    &[height, width],
                    labels.iter().map(|&l| l as u16).collect(),
                )
            } else {
                npy::write(w, &[height, width], labels.to_vec())
            }
        }
        LabelFormat::Tiff => write_tiff(w, labels, height, width, fits16)
            .map_err(|e| Error::format(path, format!("writing TIFF: {e}"))),
    })
}

fn write_tiff(
    w: &mut (impl std::io::Write + std::io::Seek),
    labels: &[u32],
    height: usize,
    width: usize,
    fits16: bool,
) -> std::result::Result<(), tiff::TiffError> {
    use tiff::encoder::{Compression, TiffEncoder, colortype};
    let (w32, h32) = (width as u32, height as u32);
    let mut enc = TiffEncoder::new(w)?.with_compression(Compression::Deflate(Default::default()));
    if fits16 {
        let data: Vec<u16> = labels.iter().map(|&l| l as u16).collect();
        enc.write_image::<colortype::Gray16>(w32, h32, &data)
    } else {
        enc.write_image::<colortype::Gray32>(w32, h32, labels)
    }
}
