//! Reading microscopy images into [`Stack`]s: planes of interleaved channels plus the axes of
//! the planes and the pixel calibration.
//!
//! Formats:
//! * **TIFF** and **BigTIFF**, uncompressed or LZW, Deflate (zlib), PackBits or JPEG compressed
//!   (what the `tiff` crate decodes; Zstd, LZMA and JPEG 2000 are not), strips or tiles, chunky
//!   or planar samples. Sample types: 8- and 16-bit unsigned integers are kept as they are;
//!   every other type (32/64-bit unsigned, 8/16/32/64-bit signed, 16/32/64-bit float) is
//!   converted to 32-bit float, the engine's third pixel type (integers above 2^24 lose their
//!   lowest bits, which neither percentile normalization nor intensity statistics notice in
//!   practice). Pages flagged as reduced-resolution (thumbnails) are skipped.
//! * **ImageJ hyperstacks**: the `ImageDescription` (`ImageJ=... images= channels= slices=
//!   frames=`) gives the page order c, z, t (c fastest); `unit=` with `XResolution` /
//!   `YResolution` gives the pixel size.
//! * **OME-TIFF**: the first `<Pixels>` element's `DimensionOrder`, `SizeC/Z/T` and
//!   `PhysicalSizeX/Y` (+ units) of the OME-XML description; pages in the file's own order.
//! * Other multi-page TIFFs are read as a z stack of their pages.
//! * **PNG** and **JPEG** (8/16-bit gray or colour; an alpha channel is dropped) and `.npy`
//!   (`(H, W)` or `(H, W, C)`, uint8, uint16 or float32).
//!
//! Channels of a stack are interleaved in each plane (`c` pages × samples per pixel), so that one
//! plane is exactly the [`ImageView`] that segmentation and measurement take.

use std::path::Path;

use crate::error::{Error, Result};
use crate::io::limits;
use crate::io::tiff::{read_tiff, tiff_limits};

pub use crate::image::{Image, ImageData, Stack};
pub use crate::io::tiff::normalize_unit;
/// Physical pixel size (the measurement module's type); "µm" for micrometres.
pub use crate::measure::Calibration;

/// Reads an image file as a single 2-D image; a file holding several planes is an error that
/// says to use [`read_stack`].
pub fn read_image(path: &Path) -> Result<Image> {
    let mut s = read_stack(path)?;
    if s.planes.len() != 1 {
        return Err(Error::format(
            path,
            format!(
                "holds {} planes ({}); a single 2-D image was expected",
                s.planes.len(),
                axes_text(&s.plane_axes)
            ),
        ));
    }
    Ok(s.planes.remove(0))
}

/// Plane axes as `t=3, z=5`.
pub(crate) fn axes_text(axes: &[(char, usize)]) -> String {
    axes.iter()
        .map(|(a, n)| format!("{a}={n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// File extensions [`read_stack`] accepts (lower case).
pub const IMAGE_EXTENSIONS: [&str; 6] = ["tif", "tiff", "png", "jpg", "jpeg", "npy"];

/// Reads an image file of any supported type (chosen by extension) as a [`Stack`].
pub fn read_stack(path: &Path) -> Result<Stack> {
    match crate::io::extension(path).as_str() {
        "tif" | "tiff" => read_tiff(path),
        "png" | "jpg" | "jpeg" => read_raster(path),
        "npy" => Ok(single(read_npy_image(path)?)),
        other => Err(Error::format(
            path,
            format!("unsupported image type {other:?} (use .tif/.tiff, .png, .jpg/.jpeg or .npy)"),
        )),
    }
}

/// A one-plane, uncalibrated stack holding `image`.
fn single(image: Image) -> Stack {
    Stack::single(image, Calibration::default())
}

/// Decodes a PNG or JPEG file after checking the size its header gives, plus `extra` bytes
/// per pixel for the caller's conversion of each colour type, against the limits.
pub(crate) fn decode_raster(
    path: &Path,
    extra: impl Fn(image::ColorType) -> u64,
) -> Result<image::DynamicImage> {
    use image::ImageDecoder;
    let bad = |e: image::ImageError| {
        Error::format(path, format!("unreadable or truncated image file: {e}"))
    };
    let mut reader = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    let mut l = image::Limits::default();
    l.max_alloc = Some(limits::max_decoded_bytes());
    reader.limits(l);
    let dec = reader.into_decoder().map_err(bad)?;
    let (w, h) = dec.dimensions();
    let color = dec.color_type();
    let need = limits::product(&[w as u64, h as u64, extra(color)])
        .and_then(|e| e.checked_add(dec.total_bytes()));
    limits::check_size(path, &format!("{w}×{h} pixels of {color:?}"), need)?;
    image::DynamicImage::from_decoder(dec).map_err(bad)
}

/// Keeps the first `keep` of every `every` samples, allocating fallibly.
fn drop_samples<T: Copy>(path: &Path, v: &[T], every: usize, keep: usize) -> Result<Vec<T>> {
    let mut out = Vec::new();
    limits::try_reserve(
        &mut out,
        v.len() / every * keep,
        path,
        "samples without alpha",
    )?;
    for p in v.chunks_exact(every) {
        out.extend_from_slice(&p[..keep]);
    }
    Ok(out)
}

fn read_raster(path: &Path) -> Result<Stack> {
    use image::ColorType as C;
    use image::DynamicImage as D;
    let img = decode_raster(path, |c| match c {
        C::L8 | C::Rgb8 | C::L16 | C::Rgb16 => 0,
        C::La8 => 1,
        C::Rgba8 => 3,
        C::La16 => 2,
        C::Rgba16 => 6,
        _ => 12,
    })?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (data, channels) = match img {
        D::ImageLuma8(b) => (ImageData::U8(b.into_raw()), 1),
        D::ImageLumaA8(b) => (ImageData::U8(drop_samples(path, &b, 2, 1)?), 1),
        D::ImageRgb8(b) => (ImageData::U8(b.into_raw()), 3),
        D::ImageRgba8(b) => (ImageData::U8(drop_samples(path, &b, 4, 3)?), 3),
        D::ImageLuma16(b) => (ImageData::U16(b.into_raw()), 1),
        D::ImageLumaA16(b) => (ImageData::U16(drop_samples(path, &b, 2, 1)?), 1),
        D::ImageRgb16(b) => (ImageData::U16(b.into_raw()), 3),
        D::ImageRgba16(b) => (ImageData::U16(drop_samples(path, &b, 4, 3)?), 3),
        other => {
            let rgb = other.into_rgb32f();
            (ImageData::F32(rgb.into_raw()), 3)
        }
    };
    Ok(single(Image {
        data,
        width: w,
        height: h,
        channels,
    }))
}

fn read_npy_image(path: &Path) -> Result<Image> {
    use crate::io::npy;
    use ndarray::ArrayD;
    use ndarray_npy::ReadNpyExt;
    npy::check_header(path)?;
    let open = || {
        std::fs::File::open(path)
            .map(std::io::BufReader::new)
            .map_err(|e| Error::io(path, e))
    };
    let (shape, data) = if let Ok(a) = ArrayD::<u8>::read_npy(open()?) {
        (
            a.shape().to_vec(),
            ImageData::U8(npy::into_row_major(path, a)?),
        )
    } else if let Ok(a) = ArrayD::<u16>::read_npy(open()?) {
        (
            a.shape().to_vec(),
            ImageData::U16(npy::into_row_major(path, a)?),
        )
    } else {
        let a = npy::read_checked::<f32>(path, "uint8, uint16 or float32")?;
        (
            a.shape().to_vec(),
            ImageData::F32(npy::into_row_major(path, a)?),
        )
    };
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

/// Sizes of a file's pixel data, read cheaply from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeHint {
    /// Bytes of all planes once decoded.
    pub bytes: u64,
    /// Pixels of the largest page.
    pub plane_pixels: u64,
}

/// The decoded size of a file from its header (TIFF pages, PNG/JPEG dimensions) or its size
/// (`.npy`), without decoding pixels. `None` when the header cannot be read (the real read
/// then reports the problem).
pub fn decoded_size_hint(path: &Path) -> Option<SizeHint> {
    match crate::io::extension(path).as_str() {
        "tif" | "tiff" => {
            let file = std::fs::File::open(path).ok()?;
            let mut dec = tiff::decoder::Decoder::new(std::io::BufReader::new(file))
                .ok()?
                .with_limits(tiff_limits(limits::max_decoded_bytes()));
            let mut hint = SizeHint {
                bytes: 0,
                plane_pixels: 0,
            };
            loop {
                let (w, h) = dec.dimensions().ok()?;
                let (bits, samples): (u64, u64) = match dec.colortype().ok()? {
                    tiff::ColorType::Gray(b) => (b as u64, 1),
                    tiff::ColorType::GrayA(b) => (b as u64, 2),
                    tiff::ColorType::RGB(b) => (b as u64, 3),
                    tiff::ColorType::RGBA(b) => (b as u64, 4),
                    tiff::ColorType::Multiband {
                        bit_depth,
                        num_samples,
                    } => (bit_depth as u64, num_samples as u64),
                    _ => (32, 1),
                };
                // 8- and 16-bit samples are kept, everything else becomes float32.
                let bytes = if bits <= 16 { bits.div_ceil(8) } else { 4 };
                let px = w as u64 * h as u64;
                hint.bytes = hint
                    .bytes
                    .saturating_add(px.saturating_mul(samples).saturating_mul(bytes));
                hint.plane_pixels = hint.plane_pixels.max(px);
                if !dec.more_images() || dec.next_image().is_err() {
                    break;
                }
            }
            Some(hint)
        }
        "png" | "jpg" | "jpeg" => {
            let (w, h) = image::ImageReader::open(path)
                .ok()?
                .with_guessed_format()
                .ok()?
                .into_dimensions()
                .ok()?;
            let px = w as u64 * h as u64;
            Some(SizeHint {
                bytes: px.saturating_mul(6),
                plane_pixels: px,
            })
        }
        _ => std::fs::metadata(path).ok().map(|m| SizeHint {
            bytes: m.len(),
            plane_pixels: m.len() / 2,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::tiff::{interleave, xml_attr};

    #[test]
    fn ome_attributes_are_found() {
        let xml = r#"<?xml version="1.0"?><OME><Image ID="Image:0"><Pixels DimensionOrder="XYZCT"
            ID="Pixels:0" PhysicalSizeX="0.25" PhysicalSizeXUnit="µm" SizeC="2" SizeZ="3"
            SizeT="1" Type="uint16"><Channel ID="Channel:0:0" SamplesPerPixel="1"/></Pixels></Image></OME>"#;
        assert_eq!(xml_attr(xml, "Pixels", "SizeC").as_deref(), Some("2"));
        assert_eq!(
            xml_attr(xml, "Pixels", "DimensionOrder").as_deref(),
            Some("XYZCT")
        );
        assert_eq!(
            xml_attr(xml, "Pixels", "PhysicalSizeX").as_deref(),
            Some("0.25")
        );
        assert_eq!(xml_attr(xml, "Pixels", "PhysicalSizeY"), None);
    }

    #[test]
    fn plane_coords_count_outermost_first() {
        let s = Stack {
            planes: Vec::new(),
            width: 1,
            height: 1,
            channels: 1,
            plane_axes: vec![('t', 2), ('z', 3)],
            calibration: Calibration::default(),
            sample_type: "uint8".into(),
        };
        assert_eq!(s.plane_coords(4), vec![('t', 1), ('z', 1)]);
        assert_eq!(s.plane_coords(2), vec![('t', 0), ('z', 2)]);
    }

    #[test]
    fn planar_and_multi_source_interleaving() {
        let planar = ImageData::U8(vec![1, 2, 10, 20]);
        match interleave(Path::new("t"), &[planar], 2, 2).unwrap() {
            ImageData::U8(v) => assert_eq!(v, vec![1, 10, 2, 20]),
            _ => panic!(),
        }
        let a = ImageData::U16(vec![1, 2]);
        let b = ImageData::U16(vec![7, 8]);
        match interleave(Path::new("t"), &[a, b], 2, 2).unwrap() {
            ImageData::U16(v) => assert_eq!(v, vec![1, 7, 2, 8]),
            _ => panic!(),
        }
    }
}
