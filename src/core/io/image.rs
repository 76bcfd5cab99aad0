//! Reading microscopy images: TIFF (8/16-bit unsigned, 32-bit float, gray or multi-channel,
//! first page) and `.npy` (2-D `(H, W)` or 3-D `(H, W, C)`).

use std::path::Path;

use crate::core::error::{Error, Result};
use crate::core::image::{ImageView, Pixels};

/// Owned pixel samples.
#[derive(Debug, Clone)]
pub enum ImageData {
    /// 8-bit unsigned.
    U8(Vec<u8>),
    /// 16-bit unsigned.
    U16(Vec<u16>),
    /// 32-bit float.
    F32(Vec<f32>),
}

/// An owned 2-D image with interleaved channels.
#[derive(Debug, Clone)]
pub struct Image {
    /// Samples, row-major, channels interleaved.
    pub data: ImageData,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Samples per pixel.
    pub channels: usize,
}

impl Image {
    /// A borrowed view of the image.
    pub fn view(&self) -> Result<ImageView<'_>> {
        let px = match &self.data {
            ImageData::U8(d) => Pixels::U8(d),
            ImageData::U16(d) => Pixels::U16(d),
            ImageData::F32(d) => Pixels::F32(d),
        };
        ImageView::packed(px, self.width, self.height, self.channels)
    }
}

/// Reads an image file, choosing the reader by extension.
pub fn read_image(path: &Path) -> Result<Image> {
    match crate::core::io::extension(path).as_str() {
        "tif" | "tiff" => read_tiff(path),
        "npy" => read_npy_image(path),
        _ => Err(Error::format(
            path,
            "unsupported image type (use .tif/.tiff or .npy)",
        )),
    }
}

fn read_tiff(path: &Path) -> Result<Image> {
    use tiff::decoder::{Decoder, DecodingResult};
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let bad =
        |e: tiff::TiffError| Error::format(path, format!("unreadable or truncated TIFF: {e}"));
    let mut dec = Decoder::new(std::io::BufReader::new(file)).map_err(bad)?;
    let (width, height) = dec.dimensions().map_err(bad)?;
    let (width, height) = (width as usize, height as usize);
    let samples = match dec.colortype().map_err(bad)? {
        tiff::ColorType::Gray(_) => 1,
        tiff::ColorType::GrayA(_) => 2,
        tiff::ColorType::RGB(_) => 3,
        tiff::ColorType::RGBA(_) => 4,
        tiff::ColorType::Multiband { num_samples, .. } => num_samples as usize,
        other => {
            return Err(Error::format(
                path,
                format!("unsupported TIFF colour type {other:?}"),
            ));
        }
    };
    let data = match dec.read_image().map_err(bad)? {
        DecodingResult::U8(v) => ImageData::U8(v),
        DecodingResult::U16(v) => ImageData::U16(v),
        DecodingResult::F32(v) => ImageData::F32(v),
        DecodingResult::I16(v) => ImageData::F32(v.into_iter().map(f32::from).collect()),
        DecodingResult::U32(v) => ImageData::F32(v.into_iter().map(|x| x as f32).collect()),
        DecodingResult::F64(v) => ImageData::F32(v.into_iter().map(|x| x as f32).collect()),
        _ => return Err(Error::format(path, "unsupported TIFF sample type")),
    };
    let n = match &data {
        ImageData::U8(v) => v.len(),
        ImageData::U16(v) => v.len(),
        ImageData::F32(v) => v.len(),
    };
    if n != width * height * samples {
        return Err(Error::format(
            path,
            format!(
                "decoded {n} samples, expected {width}×{height}×{samples} (planar or truncated data)"
            ),
        ));
    }
    Ok(Image {
        data,
        width,
        height,
        channels: samples,
    })
}

fn read_npy_image(path: &Path) -> Result<Image> {
    use ndarray::ArrayD;
    use ndarray_npy::ReadNpyExt;
    let open = || {
        std::fs::File::open(path)
            .map(std::io::BufReader::new)
            .map_err(|e| Error::io(path, e))
    };
    let data = if let Ok(a) = ArrayD::<u8>::read_npy(open()?) {
        (
            a.shape().to_vec(),
            ImageData::U8(a.as_standard_layout().iter().copied().collect()),
        )
    } else if let Ok(a) = ArrayD::<u16>::read_npy(open()?) {
        (
            a.shape().to_vec(),
            ImageData::U16(a.as_standard_layout().iter().copied().collect()),
        )
    } else {
        let a = crate::core::io::npy::read::<f32>(path, "uint8, uint16 or float32")?;
        (
            a.shape().to_vec(),
            ImageData::F32(a.as_standard_layout().iter().copied().collect()),
        )
    };
    let (shape, data) = data;
    let (height, width, channels) = match shape[..] {
        [h, w] => (h, w, 1),
        [h, w, c] => (h, w, c),
        _ => {
            return Err(Error::format(
                path,
                format!("image array has shape {shape:?}, expected (H, W) or (H, W, C)"),
            ));
        }
    };
    Ok(Image {
        data,
        width,
        height,
        channels,
    })
}
