//! Borrowed 2-D images with interleaved channels, as hosts hand them over (ImageJ pixel arrays,
//! numpy arrays, vendor frame buffers).

use crate::error::{Error, Result};
use crate::measure::Calibration;

/// Pixel samples of one of the supported types.
#[derive(Debug, Clone, Copy)]
pub enum Pixels<'a> {
    /// 8-bit unsigned.
    U8(&'a [u8]),
    /// 16-bit unsigned.
    U16(&'a [u16]),
    /// 32-bit float.
    F32(&'a [f32]),
}

impl<'a> Pixels<'a> {
    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Pixels::U8(d) => d.len(),
            Pixels::U16(d) => d.len(),
            Pixels::F32(d) => d.len(),
        }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `len` samples from `start` (panics when out of range, as slicing does).
    pub fn slice(&self, start: usize, len: usize) -> Pixels<'a> {
        match *self {
            Pixels::U8(d) => Pixels::U8(&d[start..start + len]),
            Pixels::U16(d) => Pixels::U16(&d[start..start + len]),
            Pixels::F32(d) => Pixels::F32(&d[start..start + len]),
        }
    }

    #[inline]
    fn get(&self, i: usize) -> f32 {
        match self {
            Pixels::U8(d) => d[i] as f32,
            Pixels::U16(d) => d[i] as f32,
            Pixels::F32(d) => d[i],
        }
    }
}

/// A 2-D image: `height` rows of `width` pixels, each pixel `channels` interleaved samples; rows
/// start every `row_stride` samples (`>= width * channels`).
#[derive(Debug, Clone, Copy)]
pub struct ImageView<'a> {
    pixels: Pixels<'a>,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Samples per pixel.
    pub channels: usize,
    /// Samples from one row start to the next.
    pub row_stride: usize,
}

impl<'a> ImageView<'a> {
    /// Wraps a buffer, checking that the sizes are consistent and the buffer long enough.
    pub fn new(
        pixels: Pixels<'a>,
        width: usize,
        height: usize,
        channels: usize,
        row_stride: usize,
    ) -> Result<Self> {
        if width == 0 || height == 0 || channels == 0 {
            return Err(Error::invalid(format!(
                "image is empty ({width}×{height}, {channels} channels)"
            )));
        }
        let row = width
            .checked_mul(channels)
            .ok_or_else(|| Error::TooLarge("image row overflows".into()))?;
        if row_stride < row {
            return Err(Error::invalid(format!(
                "row stride {row_stride} is shorter than a row ({width} pixels × {channels} channels)"
            )));
        }
        let need = (height - 1)
            .checked_mul(row_stride)
            .and_then(|v| v.checked_add(row))
            .ok_or_else(|| Error::TooLarge("image size overflows".into()))?;
        if pixels.len() < need {
            return Err(Error::shape(format!(
                "image buffer holds {} samples, {width}×{height}×{channels} with row stride {row_stride} needs {need}",
                pixels.len()
            )));
        }
        Ok(ImageView {
            pixels,
            width,
            height,
            channels,
            row_stride,
        })
    }

    /// A tightly packed image (`row_stride = width * channels`).
    pub fn packed(
        pixels: Pixels<'a>,
        width: usize,
        height: usize,
        channels: usize,
    ) -> Result<Self> {
        Self::new(
            pixels,
            width,
            height,
            channels,
            width.saturating_mul(channels),
        )
    }

    /// Channel `c` as a float32 plane, row-major.
    pub fn plane(&self, c: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.width * self.height);
        for y in 0..self.height {
            let base = y * self.row_stride + c;
            out.extend((0..self.width).map(|x| self.pixels.get(base + x * self.channels)));
        }
        out
    }

    /// The largest value the sample type can hold: 255 for 8-bit, 65535 for 16-bit, `None` for
    /// float samples (no fixed range).
    pub fn type_max(&self) -> Option<f32> {
        match self.pixels {
            Pixels::U8(_) => Some(255.0),
            Pixels::U16(_) => Some(65535.0),
            Pixels::F32(_) => None,
        }
    }

    /// A packed, owned copy of the image (row padding dropped), same sample type.
    pub fn to_image(&self) -> Image {
        let row = self.width * self.channels;
        fn copy<T: Copy>(d: &[T], view: &ImageView<'_>, row: usize) -> Vec<T> {
            let mut out = Vec::with_capacity(row * view.height);
            for y in 0..view.height {
                out.extend_from_slice(&d[y * view.row_stride..y * view.row_stride + row]);
            }
            out
        }
        let data = match self.pixels {
            Pixels::U8(d) => ImageData::U8(copy(d, self, row)),
            Pixels::U16(d) => ImageData::U16(copy(d, self, row)),
            Pixels::F32(d) => ImageData::F32(copy(d, self, row)),
        };
        Image {
            data,
            width: self.width,
            height: self.height,
            channels: self.channels,
        }
    }

    /// Whether any sample is NaN or infinite (only possible for float images).
    pub fn has_non_finite(&self) -> bool {
        // Only the image's own samples: padding between rows (row_stride) is not looked at.
        let row = self.width * self.channels;
        match self.pixels {
            Pixels::F32(d) => (0..self.height).any(|y| {
                d[y * self.row_stride..y * self.row_stride + row]
                    .iter()
                    .any(|v| !v.is_finite())
            }),
            _ => false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Owned images: what the readers return; each plane lends an [`ImageView`].

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

impl ImageData {
    pub(crate) fn len(&self) -> usize {
        match self {
            ImageData::U8(v) => v.len(),
            ImageData::U16(v) => v.len(),
            ImageData::F32(v) => v.len(),
        }
    }

    pub(crate) fn kind(&self) -> u8 {
        match self {
            ImageData::U8(_) => 0,
            ImageData::U16(_) => 1,
            ImageData::F32(_) => 2,
        }
    }

    pub(crate) fn bytes_per_sample(&self) -> usize {
        match self {
            ImageData::U8(_) => 1,
            ImageData::U16(_) => 2,
            ImageData::F32(_) => 4,
        }
    }
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

/// An image file read whole: one or more planes (z slices and/or time points), each a 2-D
/// image of `channels` interleaved samples per pixel.
#[derive(Debug, Clone)]
pub struct Stack {
    /// The planes, outermost axis first (t, then z), all `height × width × channels`.
    pub planes: Vec<Image>,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Channels per plane.
    pub channels: usize,
    /// Axes of the planes with their sizes, outermost first, e.g. `[('t', 3), ('z', 5)]`;
    /// empty for a single plane. The product of the sizes is `planes.len()`.
    pub plane_axes: Vec<(char, usize)>,
    /// Pixel size.
    pub calibration: Calibration,
    /// The file's sample type, e.g. "uint16" or "float32" (before any conversion).
    pub sample_type: String,
}

impl Stack {
    /// The coordinates of plane `i` along [`Stack::plane_axes`].
    pub fn plane_coords(&self, i: usize) -> Vec<(char, usize)> {
        let mut rest = i;
        let mut out: Vec<(char, usize)> = Vec::with_capacity(self.plane_axes.len());
        for &(axis, n) in self.plane_axes.iter().rev() {
            out.push((axis, rest % n));
            rest /= n;
        }
        out.reverse();
        out
    }

    /// A one-plane stack holding `image`, with pixel size `calibration` (what the readers give
    /// for a 2-D file, and what hosts hand over in memory).
    pub fn single(image: Image, calibration: Calibration) -> Stack {
        let sample_type = match image.data {
            ImageData::U8(_) => "uint8",
            ImageData::U16(_) => "uint16",
            ImageData::F32(_) => "float32",
        };
        Stack {
            width: image.width,
            height: image.height,
            channels: image.channels,
            planes: vec![image],
            plane_axes: Vec::new(),
            calibration,
            sample_type: sample_type.to_string(),
        }
    }

    /// Bytes held by the pixel data.
    pub fn nbytes(&self) -> usize {
        self.planes
            .iter()
            .map(|p| p.data.len() * p.data.bytes_per_sample())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_image_packs_rows_and_keeps_the_type() {
        // 2×2 pixels of 2 channels, rows 6 samples apart (2 of padding, 99).
        let d: Vec<u16> = vec![1, 2, 3, 4, 99, 99, 5, 6, 7, 8, 99, 99];
        let v = ImageView::new(Pixels::U16(&d), 2, 2, 2, 6).unwrap();
        let img = v.to_image();
        assert_eq!((img.width, img.height, img.channels), (2, 2, 2));
        match &img.data {
            ImageData::U16(p) => assert_eq!(p, &[1, 2, 3, 4, 5, 6, 7, 8]),
            other => panic!("type changed: {other:?}"),
        }
        let s = Stack::single(img, Calibration::square(0.5, "um"));
        assert_eq!((s.planes.len(), s.sample_type.as_str()), (1, "uint16"));
        assert_eq!(s.calibration.unit, "um");
        assert_eq!(s.planes[0].view().unwrap().plane(1), [2.0, 4.0, 6.0, 8.0]);
    }
}
