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

/// Reads a label image (`.tif`/`.tiff`, `.npy`, `.png`; any unsigned or non-negative integer
/// type up to 32 bits, or integral floats). Returns row-major labels with the height and width.
pub fn read_labels(path: &Path) -> Result<(Vec<u32>, usize, usize)> {
    match crate::core::io::extension(path).as_str() {
        "tif" | "tiff" => read_tiff_labels(path),
        "npy" => read_npy_labels(path),
        "png" => read_png_labels(path),
        _ => Err(Error::format(
            path,
            "unsupported label image type (use .tif, .tiff, .npy or .png)",
        )),
    }
}

fn to_label<T: Copy + Into<f64>>(path: &Path, v: &[T]) -> Result<Vec<u32>> {
    v.iter()
        .map(|&x| {
            let f: f64 = x.into();
            if f >= 0.0 && f <= u32::MAX as f64 && f.fract() == 0.0 {
                Ok(f as u32)
            } else {
                Err(Error::format(
                    path,
                    format!("holds {f}, not a label (labels are integers 0..=4294967295)"),
                ))
            }
        })
        .collect()
}

fn read_tiff_labels(path: &Path) -> Result<(Vec<u32>, usize, usize)> {
    use tiff::decoder::{Decoder, DecodingResult};
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let bad =
        |e: tiff::TiffError| Error::format(path, format!("unreadable or truncated TIFF: {e}"));
    let mut dec = Decoder::new(std::io::BufReader::new(file)).map_err(bad)?;
    let (w, h) = dec.dimensions().map_err(bad)?;
    let (w, h) = (w as usize, h as usize);
    let data = match dec.read_image().map_err(bad)? {
        DecodingResult::U8(v) => v.into_iter().map(u32::from).collect(),
        DecodingResult::U16(v) => v.into_iter().map(u32::from).collect(),
        DecodingResult::U32(v) => v,
        DecodingResult::I8(v) => to_label(path, &v)?,
        DecodingResult::I16(v) => to_label(path, &v)?,
        DecodingResult::I32(v) => to_label(path, &v)?,
        DecodingResult::F32(v) => to_label(path, &v)?,
        DecodingResult::F64(v) => to_label(path, &v)?,
        _ => {
            return Err(Error::format(
                path,
                "unsupported TIFF sample type for labels",
            ));
        }
    };
    if data.len() != w * h {
        return Err(Error::format(
            path,
            format!(
                "{} samples for a {w}×{h} image: a label image has one channel",
                data.len()
            ),
        ));
    }
    Ok((data, h, w))
}

fn read_npy_labels(path: &Path) -> Result<(Vec<u32>, usize, usize)> {
    use ndarray::ArrayD;
    use ndarray_npy::ReadNpyExt;
    let open = || {
        std::fs::File::open(path)
            .map(std::io::BufReader::new)
            .map_err(|e| Error::io(path, e))
    };
    macro_rules! try_type {
        ($t:ty, $conv:expr) => {
            if let Ok(a) = ArrayD::<$t>::read_npy(open()?) {
                let shape = a.shape().to_vec();
                let v: Vec<$t> = a.as_standard_layout().iter().copied().collect();
                let data: Vec<u32> = $conv(v)?;
                return match shape[..] {
                    [h, w] => Ok((data, h, w)),
                    _ => Err(Error::format(
                        path,
                        format!("label array has shape {shape:?}, expected (H, W)"),
                    )),
                };
            }
        };
    }
    try_type!(u32, |v: Vec<u32>| Ok::<_, Error>(v));
    try_type!(u16, |v: Vec<u16>| Ok::<_, Error>(
        v.into_iter().map(u32::from).collect()
    ));
    try_type!(u8, |v: Vec<u8>| Ok::<_, Error>(
        v.into_iter().map(u32::from).collect()
    ));
    try_type!(i32, |v: Vec<i32>| to_label(path, &v));
    try_type!(i64, |v: Vec<i64>| to_label(
        path,
        &v.iter().map(|&x| x as f64).collect::<Vec<_>>()
    ));
    try_type!(u64, |v: Vec<u64>| to_label(
        path,
        &v.iter().map(|&x| x as f64).collect::<Vec<_>>()
    ));
    // Surfaces the file's own problem (I/O, truncation, dtype) in the error.
    npy::read::<u32>(path, "an integer label array (uint8/16/32, int32/64)")?;
    Err(Error::format(path, "not a label array"))
}

fn read_png_labels(path: &Path) -> Result<(Vec<u32>, usize, usize)> {
    let bad = |e: image::ImageError| Error::format(path, format!("unreadable PNG: {e}"));
    let img = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?
        .decode()
        .map_err(bad)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let data = match img {
        image::DynamicImage::ImageLuma8(b) => b.into_raw().into_iter().map(u32::from).collect(),
        image::DynamicImage::ImageLuma16(b) => b.into_raw().into_iter().map(u32::from).collect(),
        other => {
            return Err(Error::format(
                path,
                format!(
                    "PNG label images must be 8- or 16-bit grayscale, got {:?}",
                    other.color()
                ),
            ));
        }
    };
    Ok((data, h, w))
}
