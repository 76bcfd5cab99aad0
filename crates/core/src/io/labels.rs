//! Label images on disk: written as uint16 when every label fits (as Cellpose does), uint32
//! otherwise; `.tif`/`.tiff` (deflate-compressed) or `.npy`.

use std::path::Path;

use crate::error::{Error, Result};
use crate::io::image::Calibration;
use crate::io::{limits, npy, write_atomic};

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
    write_label_stack(
        path,
        &LabelStack {
            labels,
            planes: 1,
            height,
            width,
            plane_axes: &[],
            calibration: &Calibration::default(),
        },
        overwrite,
    )
}

/// Label planes to write: `planes` row-major `height × width` planes one after the other.
#[derive(Debug, Clone, Copy)]
pub struct LabelStack<'a> {
    /// All planes' labels, plane after plane.
    pub labels: &'a [u32],
    /// Number of planes.
    pub planes: usize,
    /// Plane height.
    pub height: usize,
    /// Plane width.
    pub width: usize,
    /// Axes of the planes, outermost first (`[('z', 5)]`, `[('t', 3), ('z', 5)]`; empty for one
    /// plane), recorded in the ImageJ description.
    pub plane_axes: &'a [(char, usize)],
    /// Pixel size, written as ImageJ reads it (resolution tags + `unit=`).
    pub calibration: &'a Calibration,
}

/// Writes label planes atomically; refuses to replace an existing file unless `overwrite`.
///
/// TIFF: uint16 when every label fits, uint32 otherwise. One plane is deflate compressed;
/// several planes are written as ImageJ writes a hyperstack (uncompressed, contiguous,
/// `images= slices= frames=` in the description; BigTIFF with compressed pages past 4 GB), so
/// that Fiji opens them with their axes. The calibration goes into `XResolution` /
/// `YResolution` (pixels per unit) and `unit=` of an ImageJ description, which Fiji and
/// tifffile read. `.npy`: `(H, W)` or `(planes, H, W)`, no calibration.
pub fn write_label_stack(path: &Path, stack: &LabelStack<'_>, overwrite: bool) -> Result<()> {
    let LabelStack {
        labels,
        planes,
        height,
        width,
        ..
    } = *stack;
    if planes == 0 || labels.len() != planes * height * width {
        return Err(Error::shape(format!(
            "{} labels for {planes} plane(s) of {height}×{width}",
            labels.len()
        )));
    }
    let format = LabelFormat::from_path(path)?;
    let fits16 = labels.iter().all(|&l| l <= u16::MAX as u32);
    let shape: Vec<usize> = if planes == 1 {
        vec![height, width]
    } else {
        vec![planes, height, width]
    };
    write_atomic(path, overwrite, |w| match format {
        LabelFormat::Npy => {
            if fits16 {
                npy::write(w, &shape, labels.iter().map(|&l| l as u16).collect())
            } else {
                npy::write(w, &shape, labels.to_vec())
            }
        }
        LabelFormat::Tiff => write_tiff(w, stack, fits16)
            .map_err(|e| Error::format(path, format!("writing TIFF: {e}"))),
    })
}

/// The ImageJ description for a label stack.
fn imagej_description(stack: &LabelStack<'_>, max: u32) -> String {
    let mut d = String::from("ImageJ=1.54f\n");
    if stack.planes > 1 {
        d += &format!("images={}\n", stack.planes);
        let size = |a: char| {
            stack
                .plane_axes
                .iter()
                .find(|(b, _)| *b == a)
                .map(|(_, n)| *n)
        };
        match (size('z'), size('t')) {
            (Some(z), Some(t)) if z * t == stack.planes => {
                d += &format!("slices={z}\nframes={t}\nhyperstack=true\n");
            }
            (None, Some(t)) if t == stack.planes => d += &format!("frames={t}\n"),
            _ => d += &format!("slices={}\n", stack.planes),
        }
    }
    let cal = stack.calibration;
    if cal.is_calibrated() {
        let unit = if cal.unit == "µm" {
            "micron".to_string()
        } else {
            cal.unit.chars().filter(|c| c.is_ascii_graphic()).collect()
        };
        d += &format!("unit={unit}\n");
    }
    if let Some(z) = cal.z_spacing.filter(|_| stack.planes > 1) {
        d += &format!("spacing={z}\n");
    }
    d += &format!("min=0.0\nmax={max}.0\n");
    d
}

/// `1 / size` as a TIFF rational with as many exact digits as fit.
fn per_unit(size: f64) -> Rational {
    if !(size.is_finite() && size > 0.0) {
        return Rational { n: 1, d: 1 };
    }
    let mut scale = 1_000_000.0f64;
    while size * scale > u32::MAX as f64 / 2.0 && scale > 1.0 {
        scale /= 10.0;
    }
    let d = (size * scale).round().max(1.0) as u32;
    Rational { n: scale as u32, d }
}

use tiff::encoder::Rational;

fn write_tiff<W: std::io::Write + std::io::Seek>(
    w: &mut W,
    stack: &LabelStack<'_>,
    fits16: bool,
) -> std::result::Result<(), tiff::TiffError> {
    use tiff::encoder::{Compression, TiffEncoder, colortype};
    use tiff::tags::{ResolutionUnit, Tag};
    let (w32, h32) = (stack.width as u32, stack.height as u32);
    let max = stack.labels.iter().copied().max().unwrap_or(0);
    let desc = imagej_description(stack, max);
    let (xr, yr) = (
        per_unit(stack.calibration.pixel_width),
        per_unit(stack.calibration.pixel_height),
    );
    let plane = stack.height * stack.width;
    let bytes = stack.labels.len() as u64 * if fits16 { 2 } else { 4 };
    if stack.planes == 1 {
        let mut enc =
            TiffEncoder::new(w)?.with_compression(Compression::Deflate(Default::default()));
        macro_rules! one {
            ($ct:ty, $data:expr) => {{
                let mut img = enc.new_image::<$ct>(w32, h32)?;
                img.resolution(ResolutionUnit::None, xr);
                img.y_resolution(yr);
                img.encoder()
                    .write_tag(Tag::ImageDescription, desc.as_str())?;
                img.write_data($data)
            }};
        }
        if fits16 {
            let data: Vec<u16> = stack.labels.iter().map(|&l| l as u16).collect();
            one!(colortype::Gray16, &data)
        } else {
            one!(colortype::Gray32, stack.labels)
        }
    } else if bytes < (u32::MAX as u64) - (1 << 24) {
        // ImageJ hyperstack layout: all pixel data first and contiguous, then the IFDs.
        let mut enc = TiffEncoder::new(w)?;
        let mut offsets = Vec::with_capacity(stack.planes);
        let mut dir = enc.image_directory()?;
        for p in stack.labels.chunks(plane) {
            let off = if fits16 {
                let data: Vec<u16> = p.iter().map(|&l| l as u16).collect();
                dir.write_data(&data[..])?
            } else {
                dir.write_data(p)?
            };
            offsets.push(u32::try_from(off)?);
        }
        let strip_bytes = (plane * if fits16 { 2 } else { 4 }) as u32;
        let tags = |dir: &mut tiff::encoder::DirectoryEncoder<'_, _, _>,
                    i: usize|
         -> std::result::Result<(), tiff::TiffError> {
            dir.write_tag(Tag::NewSubfileType, 0u32)?;
            dir.write_tag(Tag::ImageWidth, w32)?;
            dir.write_tag(Tag::ImageLength, h32)?;
            dir.write_tag(Tag::BitsPerSample, if fits16 { 16u16 } else { 32u16 })?;
            dir.write_tag(Tag::Compression, 1u16)?;
            dir.write_tag(Tag::PhotometricInterpretation, 1u16)?;
            if i == 0 {
                dir.write_tag(Tag::ImageDescription, desc.as_str())?;
            }
            dir.write_tag(Tag::StripOffsets, offsets[i])?;
            dir.write_tag(Tag::SamplesPerPixel, 1u16)?;
            dir.write_tag(Tag::RowsPerStrip, h32)?;
            dir.write_tag(Tag::StripByteCounts, strip_bytes)?;
            dir.write_tag(Tag::XResolution, xr.clone())?;
            dir.write_tag(Tag::YResolution, yr.clone())?;
            dir.write_tag(Tag::ResolutionUnit, ResolutionUnit::None)?;
            dir.write_tag(Tag::SampleFormat, 1u16)?;
            Ok(())
        };
        tags(&mut dir, 0)?;
        dir.finish()?;
        for i in 1..stack.planes {
            let mut dir = enc.image_directory()?;
            tags(&mut dir, i)?;
            dir.finish()?;
        }
        Ok(())
    } else {
        // Past 4 GB: BigTIFF, compressed pages (Fiji opens it through Bio-Formats).
        let mut enc =
            TiffEncoder::new_big(w)?.with_compression(Compression::Deflate(Default::default()));
        for (i, p) in stack.labels.chunks(plane).enumerate() {
            macro_rules! page {
                ($ct:ty, $data:expr) => {{
                    let mut img = enc.new_image::<$ct>(w32, h32)?;
                    img.resolution(ResolutionUnit::None, xr.clone());
                    img.y_resolution(yr.clone());
                    if i == 0 {
                        img.encoder()
                            .write_tag(Tag::ImageDescription, desc.as_str())?;
                    }
                    img.write_data($data)?
                }};
            }
            if fits16 {
                let data: Vec<u16> = p.iter().map(|&l| l as u16).collect();
                page!(colortype::Gray16, &data)
            } else {
                page!(colortype::Gray32, p)
            }
        }
        Ok(())
    }
}

/// Reads a label image (`.tif`/`.tiff`, `.npy`, `.png`; any unsigned or non-negative integer
/// type up to 32 bits, or integral floats). Returns row-major labels with the height and width.
pub fn read_labels(path: &Path) -> Result<(Vec<u32>, usize, usize)> {
    match crate::io::extension(path).as_str() {
        "tif" | "tiff" => crate::io::tiff::read_tiff_labels(path),
        "npy" => read_npy_labels(path),
        "png" => read_png_labels(path),
        _ => Err(Error::format(
            path,
            "unsupported label image type (use .tif, .tiff, .npy or .png)",
        )),
    }
}

/// Converts samples to labels (non-negative integers up to `u32::MAX`, else a clear error),
/// allocating fallibly.
pub(crate) fn to_label<T: Copy + Into<f64>>(path: &Path, v: &[T]) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    limits::try_reserve(&mut out, v.len(), path, "labels")?;
    for &x in v {
        let f: f64 = x.into();
        if f >= 0.0 && f <= u32::MAX as f64 && f.fract() == 0.0 {
            out.push(f as u32);
        } else {
            return Err(Error::format(
                path,
                format!("holds {f}, not a label (labels are integers 0..=4294967295)"),
            ));
        }
    }
    Ok(out)
}

/// Widens unsigned samples to labels, allocating fallibly.
pub(crate) fn widen<T: Copy + Into<u32>>(path: &Path, v: &[T]) -> Result<Vec<u32>> {
    limits::try_collect(path, "labels", v.iter().map(|&x| x.into()))
}

fn read_npy_labels(path: &Path) -> Result<(Vec<u32>, usize, usize)> {
    let (data, shape) = read_npy_label_array(path)?;
    match shape[..] {
        [h, w] => Ok((data, h, w)),
        _ => Err(Error::format(
            path,
            format!("label array has shape {shape:?}, expected (H, W)"),
        )),
    }
}

/// Reads a label stack: a multi-page TIFF (as `cytoseg segment` or Fiji writes a z-stack),
/// a `.npy` of shape `(Z, H, W)` (or `(H, W)`), or a 2-D label image as one plane. Returns
/// `(labels plane after plane, planes, height, width)`.
pub fn read_label_stack(path: &Path) -> Result<(Vec<u32>, usize, usize, usize)> {
    match crate::io::extension(path).as_str() {
        "tif" | "tiff" => crate::io::tiff::read_tiff_label_stack(path),
        "npy" => {
            let (data, shape) = read_npy_label_array(path)?;
            match shape[..] {
                [z, h, w] => Ok((data, z, h, w)),
                [h, w] => Ok((data, 1, h, w)),
                _ => Err(Error::format(
                    path,
                    format!("label array has shape {shape:?}, expected (Z, H, W) or (H, W)"),
                )),
            }
        }
        _ => {
            let (data, h, w) = read_labels(path)?;
            Ok((data, 1, h, w))
        }
    }
}

/// An integer `.npy` label array of any shape as `u32` labels (row-major) and its shape.
fn read_npy_label_array(path: &Path) -> Result<(Vec<u32>, Vec<usize>)> {
    use ndarray::ArrayD;
    use ndarray_npy::ReadNpyExt;
    let header = npy::check_header(path)?;
    // The array and the labels made from it (4 bytes per element).
    let need = header
        .elements
        .checked_mul(4)
        .and_then(|l| l.checked_add(header.data_bytes));
    limits::check_size(
        path,
        &format!("a label array of shape {:?}", header.shape),
        need,
    )?;
    let open = || {
        std::fs::File::open(path)
            .map(std::io::BufReader::new)
            .map_err(|e| Error::io(path, e))
    };
    macro_rules! try_type {
        ($t:ty, $conv:expr) => {
            if let Ok(a) = ArrayD::<$t>::read_npy(open()?) {
                let shape = a.shape().to_vec();
                let v: Vec<$t> = npy::into_row_major(path, a)?;
                let data: Vec<u32> = $conv(v)?;
                return Ok((data, shape));
            }
        };
    }
    try_type!(u32, |v: Vec<u32>| Ok::<_, Error>(v));
    try_type!(u16, |v: Vec<u16>| widen(path, &v));
    try_type!(u8, |v: Vec<u8>| widen(path, &v));
    try_type!(i32, |v: Vec<i32>| to_label(path, &v));
    try_type!(i64, |v: Vec<i64>| to_label(
        path,
        &limits::try_collect(path, "labels", v.iter().map(|&x| x as f64))?
    ));
    try_type!(u64, |v: Vec<u64>| to_label(
        path,
        &limits::try_collect(path, "labels", v.iter().map(|&x| x as f64))?
    ));
    // Surfaces the file's own problem (I/O, truncation, dtype) in the error.
    npy::read_checked::<u32>(path, "an integer label array (uint8/16/32, int32/64)")?;
    Err(Error::format(path, "not a label array"))
}

fn read_png_labels(path: &Path) -> Result<(Vec<u32>, usize, usize)> {
    // The decoded image and the labels made from it (4 bytes per pixel).
    let img = crate::io::image::decode_raster(path, |_| 4)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let data = match img {
        image::DynamicImage::ImageLuma8(b) => widen(path, &b)?,
        image::DynamicImage::ImageLuma16(b) => widen(path, &b)?,
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
