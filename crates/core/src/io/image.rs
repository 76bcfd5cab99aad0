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
use crate::image::{ImageView, Pixels};
use crate::io::limits;

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
    fn len(&self) -> usize {
        match self {
            ImageData::U8(v) => v.len(),
            ImageData::U16(v) => v.len(),
            ImageData::F32(v) => v.len(),
        }
    }

    fn kind(&self) -> u8 {
        match self {
            ImageData::U8(_) => 0,
            ImageData::U16(_) => 1,
            ImageData::F32(_) => 2,
        }
    }

    fn bytes_per_sample(&self) -> usize {
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

/// Physical pixel size (the measurement module's type); "µm" for micrometres.
pub use crate::measure::Calibration;

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

    /// Bytes held by the pixel data.
    pub fn nbytes(&self) -> usize {
        self.planes
            .iter()
            .map(|p| p.data.len() * p.data.bytes_per_sample())
            .sum()
    }
}

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

fn axes_text(axes: &[(char, usize)]) -> String {
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
        calibration: Calibration::default(),
        sample_type: sample_type.to_string(),
    }
}

/// One decoded TIFF page: interleaved samples.
struct Page {
    data: ImageData,
    width: usize,
    height: usize,
    samples: usize,
}

/// Metadata of the first page that describes the layout.
#[derive(Default)]
struct TiffMeta {
    description: Option<String>,
    x_resolution: Option<f64>,
    y_resolution: Option<f64>,
    resolution_unit: Option<u16>,
}

fn rational(v: tiff::decoder::ifd::Value) -> Option<f64> {
    use tiff::decoder::ifd::Value;
    match v {
        Value::Rational(n, d) if d != 0 => Some(n as f64 / d as f64),
        Value::List(mut l) if !l.is_empty() => rational(l.swap_remove(0)),
        other => other.into_f64().ok(),
    }
}

/// TIFF decoder limits for a file of at most `max` decoded bytes: the decoder's own buffers
/// stay within the engine's limit, and no tag value may claim more than
/// [`limits::MAX_TIFF_TAG_BYTES`].
pub(crate) fn tiff_limits(max: u64) -> tiff::decoder::Limits {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let mut l = tiff::decoder::Limits::default();
    l.decoding_buffer_size = max;
    l.intermediate_buffer_size = max;
    l.ifd_value_size = limits::MAX_TIFF_TAG_BYTES;
    l
}

/// Bytes of the current TIFF page once decoded by the `tiff` crate (all sample planes), with
/// the name of its sample type.
pub(crate) fn tiff_page_bytes<R: std::io::Read + std::io::Seek>(
    dec: &mut tiff::decoder::Decoder<R>,
) -> std::result::Result<(u64, tiff::decoder::BufferLayoutPreference), tiff::TiffError> {
    let layout = dec.image_buffer_layout()?;
    Ok((layout.complete_len as u64, layout))
}

/// A page's size for messages: `200000×200000 pixels × 1 sample(s) of 16 bits`.
pub(crate) fn tiff_page_text(page: usize, w: u32, h: u32, color: tiff::ColorType) -> String {
    let (samples, bits) = match color {
        tiff::ColorType::Gray(b) => (1, b),
        tiff::ColorType::GrayA(b) => (2, b),
        tiff::ColorType::RGB(b) => (3, b),
        tiff::ColorType::RGBA(b) => (4, b),
        tiff::ColorType::CMYK(b) => (4, b),
        tiff::ColorType::CMYKA(b) => (5, b),
        tiff::ColorType::YCbCr(b) => (3, b),
        tiff::ColorType::Multiband {
            bit_depth,
            num_samples,
        } => (num_samples, bit_depth),
        other => (1, other.bit_depth()),
    };
    format!("page {page}: {w}×{h} pixels × {samples} sample(s) of {bits} bits")
}

/// Decodes the current TIFF page into a fallibly allocated buffer of `layout`'s size (checked
/// against the limits by the caller).
pub(crate) fn tiff_decode_page<R: std::io::Read + std::io::Seek>(
    dec: &mut tiff::decoder::Decoder<R>,
    layout: &tiff::decoder::BufferLayoutPreference,
    path: &Path,
    what: &str,
) -> Result<tiff::decoder::DecodingResult> {
    use tiff::decoder::{DecodingResult as D, DecodingSampleType as S};
    let n = layout.complete_len;
    let mut buf = match layout.sample_type {
        Some(S::U8) => D::U8(limits::try_vec(path, what, n, 0)?),
        Some(S::I8) => D::I8(limits::try_vec(path, what, n, 0)?),
        Some(S::U16) => D::U16(limits::try_vec(path, what, n.div_ceil(2), 0)?),
        Some(S::I16) => D::I16(limits::try_vec(path, what, n.div_ceil(2), 0)?),
        Some(S::F16) => D::F16(limits::try_vec(
            path,
            what,
            n.div_ceil(2),
            Default::default(),
        )?),
        Some(S::U32) => D::U32(limits::try_vec(path, what, n.div_ceil(4), 0)?),
        Some(S::I32) => D::I32(limits::try_vec(path, what, n.div_ceil(4), 0)?),
        Some(S::F32) => D::F32(limits::try_vec(path, what, n.div_ceil(4), 0.0)?),
        Some(S::U64) => D::U64(limits::try_vec(path, what, n.div_ceil(8), 0)?),
        Some(S::I64) => D::I64(limits::try_vec(path, what, n.div_ceil(8), 0)?),
        Some(S::F64) => D::F64(limits::try_vec(path, what, n.div_ceil(8), 0.0)?),
        None => {
            return Err(Error::format(
                path,
                format!(
                    "{what}: unsupported TIFF sample format {:?}",
                    layout.sample_format
                ),
            ));
        }
    };
    dec.read_image_bytes(buf.as_buffer(0).as_bytes_mut())
        .map_err(|e| {
            Error::format(
                path,
                format!(
                    "unreadable or truncated TIFF (page data could not be decoded): {}",
                    limits::tiff_error_text(&e)
                ),
            )
        })?;
    Ok(buf)
}

fn read_tiff(path: &Path) -> Result<Stack> {
    use tiff::decoder::Decoder;
    use tiff::tags::Tag;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let bad = |e: tiff::TiffError| {
        Error::format(
            path,
            format!(
                "unreadable or truncated TIFF (page data could not be decoded): {}",
                limits::tiff_error_text(&e)
            ),
        )
    };
    let max = limits::max_decoded_bytes();
    let mut dec = Decoder::new(std::io::BufReader::new(file))
        .map_err(|e| {
            Error::format(
                path,
                format!("not a readable TIFF file: {}", limits::tiff_error_text(&e)),
            )
        })?
        .with_limits(tiff_limits(max));
    let mut meta = TiffMeta::default();
    let mut pages: Vec<Page> = Vec::new();
    let mut sample_type = String::new();
    let mut first = true;
    // Bytes held by the pages decoded so far.
    let mut held: u64 = 0;
    loop {
        let subfile = dec
            .find_tag_unsigned::<u32>(Tag::NewSubfileType)
            .map_err(bad)?
            .unwrap_or(0);
        if first {
            meta.description = dec
                .find_tag(Tag::ImageDescription)
                .ok()
                .flatten()
                .and_then(|v| v.into_string().ok());
            meta.x_resolution = dec
                .find_tag(Tag::XResolution)
                .ok()
                .flatten()
                .and_then(rational);
            meta.y_resolution = dec
                .find_tag(Tag::YResolution)
                .ok()
                .flatten()
                .and_then(rational);
            meta.resolution_unit = dec
                .find_tag_unsigned::<u16>(Tag::ResolutionUnit)
                .ok()
                .flatten();
        }
        // Reduced-resolution copies (thumbnails, pyramid levels in the main chain) are skipped.
        if first || subfile & 1 == 0 {
            let (w32, h32) = dec.dimensions().map_err(bad)?;
            let color = dec.colortype().map_err(bad)?;
            let samples = match color {
                tiff::ColorType::Gray(_) => 1,
                tiff::ColorType::GrayA(_) => 2,
                tiff::ColorType::RGB(_) => 3,
                tiff::ColorType::RGBA(_) => 4,
                tiff::ColorType::Multiband { num_samples, .. } => num_samples as usize,
                other => {
                    return Err(Error::format(
                        path,
                        format!(
                            "page {}: unsupported TIFF colour type {other:?} (palette, CMYK, YCbCr and Lab images are not microscopy data)",
                            pages.len()
                        ),
                    ));
                }
            };
            let what = tiff_page_text(pages.len(), w32, h32, color);
            let (decoded, layout) = tiff_page_bytes(&mut dec).map_err(bad)?;
            let planar = dec
                .find_tag_unsigned::<u16>(Tag::PlanarConfiguration)
                .ok()
                .flatten()
                == Some(2);
            // Peak while this page is converted: the pages before it, the decoded buffer, a
            // float32 copy of types that are converted, an interleaved copy of planar pages.
            let px = limits::product(&[w32 as u64, h32 as u64, samples as u64]);
            let bits = color.bit_depth();
            let out_bytes = if bits > 16 {
                4
            } else {
                bits.div_ceil(8).max(1) as u64
            };
            let converted = if bits > 16 {
                px.and_then(|p| p.checked_mul(4))
            } else {
                Some(0)
            };
            let interleaved = if planar && samples > 1 {
                px.and_then(|p| p.checked_mul(out_bytes))
            } else {
                Some(0)
            };
            let need = [Some(held), Some(decoded), converted, interleaved]
                .into_iter()
                .try_fold(0u64, |a, b| a.checked_add(b?));
            let what_all = if pages.is_empty() {
                what.clone()
            } else {
                format!("{what} (with the {} page(s) before it)", pages.len())
            };
            limits::check_size(path, &what_all, need)?;
            let (w, h) = (w32 as usize, h32 as usize);
            let buf = tiff_decode_page(&mut dec, &layout, path, &what)?;
            let (data, ty) = convert(path, buf)?;
            if sample_type.is_empty() {
                sample_type = ty.to_string();
            }
            let n = data.len();
            if Some(n) != w.checked_mul(h).and_then(|p| p.checked_mul(samples)) {
                return Err(Error::format(
                    path,
                    format!(
                        "page {}: decoded {n} samples, expected {w}×{h}×{samples} (truncated data?)",
                        pages.len()
                    ),
                ));
            }
            let data = if planar && samples > 1 {
                interleave(path, &[data], samples, w * h)?
            } else {
                data
            };
            if let Some(p0) = pages.first()
                && (p0.width, p0.height, p0.samples, p0.data.kind()) != (w, h, samples, data.kind())
            {
                return Err(Error::format(
                    path,
                    format!(
                        "page {} is {w}×{h}×{samples} {ty}, page 0 is {}×{}×{} {sample_type}: pages of different shapes or types are not one stack",
                        pages.len(),
                        p0.width,
                        p0.height,
                        p0.samples
                    ),
                ));
            }
            held = held.saturating_add((data.len() * data.bytes_per_sample()) as u64);
            pages.push(Page {
                data,
                width: w,
                height: h,
                samples,
            });
        }
        first = false;
        if !dec.more_images() {
            break;
        }
        dec.next_image().map_err(bad)?;
    }
    assemble(path, pages, &meta, sample_type)
}

/// Converts the decoder's buffer to a supported sample type; returns the original type's name.
fn convert(path: &Path, buf: tiff::decoder::DecodingResult) -> Result<(ImageData, &'static str)> {
    use tiff::decoder::DecodingResult as D;
    fn f<T: Copy>(path: &Path, v: Vec<T>, g: impl Fn(T) -> f32) -> Result<ImageData> {
        let out =
            limits::try_collect(path, "float32 copy of the samples", v.iter().map(|&x| g(x)))?;
        Ok(ImageData::F32(out))
    }
    Ok(match buf {
        D::U8(v) => (ImageData::U8(v), "uint8"),
        D::U16(v) => (ImageData::U16(v), "uint16"),
        D::F32(v) => (ImageData::F32(v), "float32"),
        D::U32(v) => (f(path, v, |x| x as f32)?, "uint32"),
        D::U64(v) => (f(path, v, |x| x as f32)?, "uint64"),
        D::I8(v) => (f(path, v, f32::from)?, "int8"),
        D::I16(v) => (f(path, v, f32::from)?, "int16"),
        D::I32(v) => (f(path, v, |x| x as f32)?, "int32"),
        D::I64(v) => (f(path, v, |x| x as f32)?, "int64"),
        D::F64(v) => (f(path, v, |x| x as f32)?, "float64"),
        D::F16(v) => (f(path, v, |x| x.to_f32())?, "float16"),
    })
}

/// Interleaves `sources` (each `n` pixels × its own samples, interleaved; or one planar buffer
/// when `sources.len() == 1`) into one buffer of `channels` samples per pixel.
fn interleave(path: &Path, sources: &[ImageData], channels: usize, n: usize) -> Result<ImageData> {
    fn go<T: Copy + Default>(
        path: &Path,
        src: &[&[T]],
        channels: usize,
        n: usize,
    ) -> Result<Vec<T>> {
        let len = n.checked_mul(channels).ok_or_else(|| {
            Error::TooLarge(format!(
                "{}: {n} pixels × {channels} channels overflow",
                path.display()
            ))
        })?;
        let mut out = limits::try_vec(path, "interleaved channels", len, T::default())?;
        if src.len() == 1 {
            // One planar buffer: channel-major → pixel-major.
            for c in 0..channels {
                let plane = &src[0][c * n..(c + 1) * n];
                for (i, &v) in plane.iter().enumerate() {
                    out[i * channels + c] = v;
                }
            }
        } else {
            // Several interleaved sources, each with channels / src.len() samples per pixel.
            let per = channels / src.len();
            for (k, s) in src.iter().enumerate() {
                for i in 0..n {
                    out[i * channels + k * per..i * channels + (k + 1) * per]
                        .copy_from_slice(&s[i * per..(i + 1) * per]);
                }
            }
        }
        Ok(out)
    }
    Ok(match &sources[0] {
        ImageData::U8(_) => {
            let v: Vec<&[u8]> = sources
                .iter()
                .map(|s| match s {
                    ImageData::U8(d) => d.as_slice(),
                    _ => unreachable!("pages share one type"),
                })
                .collect();
            ImageData::U8(go(path, &v, channels, n)?)
        }
        ImageData::U16(_) => {
            let v: Vec<&[u16]> = sources
                .iter()
                .map(|s| match s {
                    ImageData::U16(d) => d.as_slice(),
                    _ => unreachable!("pages share one type"),
                })
                .collect();
            ImageData::U16(go(path, &v, channels, n)?)
        }
        ImageData::F32(_) => {
            let v: Vec<&[f32]> = sources
                .iter()
                .map(|s| match s {
                    ImageData::F32(d) => d.as_slice(),
                    _ => unreachable!("pages share one type"),
                })
                .collect();
            ImageData::F32(go(path, &v, channels, n)?)
        }
    })
}

/// `key=value` lines of an ImageJ description.
fn imagej_fields(desc: &str) -> Option<Vec<(String, String)>> {
    if !desc.starts_with("ImageJ=") {
        return None;
    }
    Some(
        desc.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect(),
    )
}

/// Normalizes a length unit's spelling ("micron", "um", "\u00B5m" → "µm").
pub fn normalize_unit(u: &str) -> String {
    let u = u.trim();
    match u {
        "micron" | "microns" | "um" | "µm" | "μm" | "\\u00B5m" | "u" => "µm".to_string(),
        "nanometer" | "nm" => "nm".to_string(),
        "mm" | "millimeter" => "mm".to_string(),
        "" | "pixel" | "pixels" => "pixel".to_string(),
        other => other.to_string(),
    }
}

/// The value of attribute `name` in the first `<tag ...>` element of an XML text.
fn xml_attr(xml: &str, tag: &str, name: &str) -> Option<String> {
    let open = format!("<{tag}");
    let mut from = 0;
    let start = loop {
        let i = from + xml[from..].find(&open)?;
        let next = xml[i + open.len()..].chars().next()?;
        if next.is_whitespace() || next == '>' || next == '/' {
            break i;
        }
        from = i + open.len();
    };
    let end = start + xml[start..].find('>')?;
    let mut rest = xml[start + open.len()..end].trim_end_matches('/');
    loop {
        rest = rest.trim_start();
        let eq = rest.find('=')?;
        let key = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let quote = after.chars().next()?;
        if quote != '"' && quote != '\'' {
            return None;
        }
        let close = after[1..].find(quote)?;
        if key == name {
            return Some(after[1..1 + close].to_string());
        }
        rest = &after[close + 2..];
    }
}

fn assemble(path: &Path, pages: Vec<Page>, meta: &TiffMeta, sample_type: String) -> Result<Stack> {
    let Some(p0) = pages.first() else {
        return Err(Error::format(path, "the TIFF holds no image"));
    };
    let (w, h, spp) = (p0.width, p0.height, p0.samples);
    let npages = pages.len();
    let desc = meta.description.as_deref().unwrap_or("");
    let mut calibration = Calibration::default();
    // Page layout: sizes of c, z, t and the page index of (c, z, t).
    let (mut nc, mut nz, mut nt) = (1usize, npages, 1usize);
    let mut order = ['c', 'z', 't']; // fastest first
    let mut z_name = 'z';
    if let Some(fields) = imagej_fields(desc) {
        let get = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| key == k)
                .and_then(|(_, v)| v.parse::<usize>().ok())
        };
        let images = get("images").unwrap_or(npages);
        if images > npages {
            return Err(Error::format(
                path,
                format!(
                    "ImageJ stack of {images} images stored in {npages} page(s) (ImageJ's layout for files over 4 GB, or a truncated file): not supported; resave as OME-TIFF or BigTIFF"
                ),
            ));
        }
        let c = get("channels").unwrap_or(1).max(1);
        let z = get("slices").unwrap_or(1).max(1);
        let t = get("frames").unwrap_or(1).max(1);
        if c.checked_mul(z).and_then(|cz| cz.checked_mul(t)) == Some(npages) {
            (nc, nz, nt) = (c, z, t);
        } else {
            return Err(Error::format(
                path,
                format!(
                    "ImageJ description says channels={c} slices={z} frames={t}, the file has {npages} pages"
                ),
            ));
        }
        if nz == 1 && nt > 1 {
            z_name = 't';
        }
        let unit = fields
            .iter()
            .find(|(k, _)| k == "unit")
            .map(|(_, v)| normalize_unit(v));
        if let (Some(unit), Some(xr)) = (unit, meta.x_resolution)
            && unit != "pixel"
            && xr > 0.0
        {
            let yr = meta.y_resolution.filter(|y| *y > 0.0).unwrap_or(xr);
            calibration = Calibration {
                pixel_width: 1.0 / xr,
                pixel_height: 1.0 / yr,
                unit,
            };
        }
    } else if desc.contains("<OME") {
        let attr = |name: &str| xml_attr(desc, "Pixels", name);
        let num = |name: &str| attr(name).and_then(|v| v.parse::<usize>().ok());
        let c = num("SizeC").unwrap_or(1).max(1);
        let z = num("SizeZ").unwrap_or(1).max(1);
        let t = num("SizeT").unwrap_or(1).max(1);
        // With RGB pages SizeC counts the samples of each page too.
        let c_pages = if spp > 1 && c % spp == 0 { c / spp } else { c };
        // Saturating: absurd sizes in the XML must fail the check below, not wrap around.
        let total = c_pages.saturating_mul(z).saturating_mul(t);
        if total > npages {
            return Err(Error::format(
                path,
                format!(
                    "OME-XML describes SizeC={c} SizeZ={z} SizeT={t} ({total} pages), the file has {npages}: truncated, or a multi-file OME-TIFF (open the file that holds all planes)"
                ),
            ));
        }
        if npages > total {
            log::info!(
                "{}: {} extra page(s) after the first OME image series ignored",
                path.display(),
                npages - total
            );
        }
        (nc, nz, nt) = (c_pages, z, t);
        if let Some(dim) = attr("DimensionOrder") {
            let letters: Vec<char> = dim
                .to_ascii_lowercase()
                .chars()
                .filter(|ch| matches!(ch, 'c' | 'z' | 't'))
                .collect();
            // A permutation of c, z, t only: a repeated letter would index pages twice.
            if letters.len() == 3
                && letters.contains(&'c')
                && letters.contains(&'z')
                && letters.contains(&'t')
            {
                order = [letters[0], letters[1], letters[2]];
            }
        }
        if nz == 1 && nt > 1 {
            z_name = 't';
        }
        let size = |name: &str| {
            attr(name)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v > 0.0)
        };
        if let Some(px) = size("PhysicalSizeX") {
            let unit = normalize_unit(&attr("PhysicalSizeXUnit").unwrap_or_else(|| "µm".into()));
            let py = size("PhysicalSizeY").unwrap_or(px);
            calibration = Calibration {
                pixel_width: px,
                pixel_height: py,
                unit,
            };
        }
    } else if meta.resolution_unit == Some(3) {
        // Centimetre resolution (some microscope software): converted to µm. Inch resolution
        // is what ordinary image writers put (72 dpi): not a pixel size, ignored.
        if let Some(xr) = meta.x_resolution.filter(|x| *x > 0.0) {
            let yr = meta.y_resolution.filter(|y| *y > 0.0).unwrap_or(xr);
            calibration = Calibration {
                pixel_width: 1e4 / xr,
                pixel_height: 1e4 / yr,
                unit: "µm".into(),
            };
        }
    }
    let size_of = |a: char| match a {
        'c' => nc,
        'z' => nz,
        _ => nt,
    };
    let stride = |a: char| {
        let mut s = 1;
        for &b in &order {
            if b == a {
                return s;
            }
            s *= size_of(b);
        }
        s
    };
    let (sc, sz, st) = (stride('c'), stride('z'), stride('t'));
    let channels = nc * spp;
    let n = w * h;
    let mut slots: Vec<Option<ImageData>> = pages.into_iter().map(|p| Some(p.data)).collect();
    let mut planes = Vec::with_capacity(nz * nt);
    for t in 0..nt {
        for z in 0..nz {
            let idx: Vec<usize> = (0..nc).map(|c| c * sc + z * sz + t * st).collect();
            let data = if nc == 1 {
                slots[idx[0]].take().expect("each page is used once")
            } else {
                let src: Vec<ImageData> = idx
                    .iter()
                    .map(|&i| slots[i].take().expect("each page is used once"))
                    .collect();
                interleave(path, &src, channels, n)?
            };
            planes.push(Image {
                data,
                width: w,
                height: h,
                channels,
            });
        }
    }
    let mut plane_axes = Vec::new();
    if nt > 1 && nz > 1 {
        plane_axes.push(('t', nt));
        plane_axes.push(('z', nz));
    } else if nz * nt > 1 {
        plane_axes.push((z_name, nz * nt));
    }
    Ok(Stack {
        planes,
        width: w,
        height: h,
        channels,
        plane_axes,
        calibration,
        sample_type,
    })
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
