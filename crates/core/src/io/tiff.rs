//! The TIFF reader shared by images and labels: limits on what a header may claim, fallible
//! page decoding, ImageJ hyperstack and OME-TIFF layouts, calibration (see [`super::image`]
//! for the formats), and the single-page label reader.

use std::path::Path;

use crate::error::{Error, Result};
use crate::image::{Image, ImageData, Stack};
use crate::io::limits;
use crate::measure::Calibration;

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

/// Reads a TIFF or BigTIFF file as a [`Stack`] (every page; hyperstack and OME layouts).
pub(crate) fn read_tiff(path: &Path) -> Result<Stack> {
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
pub(crate) fn convert(
    path: &Path,
    buf: tiff::decoder::DecodingResult,
) -> Result<(ImageData, &'static str)> {
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
pub(crate) fn interleave(
    path: &Path,
    sources: &[ImageData],
    channels: usize,
    n: usize,
) -> Result<ImageData> {
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

/// Where and when an image was acquired, as far as its TIFF header says: `date` (YYYY-MM-DD,
/// from OME-XML's `AcquisitionDate`, else the TIFF `DateTime` tag) and `instrument` (OME-XML's
/// `Microscope` manufacturer and model, else the TIFF `Make` and `Model` tags). Empty for other
/// formats, unreadable files or headers without them; reads the first page's tags only.
pub fn acquisition_metadata(path: &Path) -> std::collections::BTreeMap<String, String> {
    use tiff::decoder::Decoder;
    use tiff::tags::Tag;
    let mut out = std::collections::BTreeMap::new();
    let Ok(file) = std::fs::File::open(path) else {
        return out;
    };
    let Ok(mut dec) = Decoder::new(std::io::BufReader::new(file)) else {
        return out;
    };
    let mut text = |tag: Tag| {
        dec.find_tag(tag)
            .ok()
            .flatten()
            .and_then(|v| v.into_string().ok())
            .map(|s| s.trim_matches(char::from(0)).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let description = text(Tag::ImageDescription).unwrap_or_default();
    let (date_tag, make, model) = (text(Tag::DateTime), text(Tag::Make), text(Tag::Model));
    let ome = description.contains("<OME");
    let ome_date = ome
        .then(|| xml_text(&description, "AcquisitionDate"))
        .flatten();
    // "2026-01-02T10:11:12" or TIFF's "2026:01:02 10:11:12": the day.
    if let Some(d) = ome_date.or(date_tag) {
        let day: String = d
            .chars()
            .take(10)
            .map(|c| if c == ':' { '-' } else { c })
            .collect();
        if day.len() == 10 {
            out.insert("date".into(), day);
        }
    }
    let ome_scope = ome
        .then(|| {
            let parts: Vec<String> = ["Manufacturer", "Model"]
                .iter()
                .filter_map(|a| xml_attr(&description, "Microscope", a))
                .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        })
        .flatten();
    let tiff_scope = [make, model]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(i) = ome_scope.or((!tiff_scope.is_empty()).then_some(tiff_scope)) {
        out.insert("instrument".into(), i);
    }
    out
}

/// The text of the first `<tag>...</tag>` element of an XML text.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find('<')?;
    Some(xml[start..end].trim().to_string()).filter(|s| !s.is_empty())
}

/// The value of attribute `name` in the first `<tag ...>` element of an XML text.
pub(crate) fn xml_attr(xml: &str, tag: &str, name: &str) -> Option<String> {
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

/// `value` in unit `from` converted to unit `to` (nm, µm, mm, cm, m); `None` when either is
/// another unit and they differ.
fn convert_length(value: f64, from: &str, to: &str) -> Option<f64> {
    if from == to {
        return Some(value);
    }
    let metres = |u: &str| match u {
        "nm" => Some(1e-9),
        "µm" => Some(1e-6),
        "mm" => Some(1e-3),
        "cm" => Some(1e-2),
        "m" => Some(1.0),
        _ => None,
    };
    Some(value * metres(from)? / metres(to)?)
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
                z_spacing: None,
            };
        }
        // ImageJ's voxel depth, in the same unit (written only for calibrated stacks).
        calibration.z_spacing = fields
            .iter()
            .find(|(k, _)| k == "spacing")
            .and_then(|(_, v)| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v > 0.0 && nz > 1);
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
            // PhysicalSizeZ in X's unit (µm when the file names none).
            let z_unit = attr("PhysicalSizeZUnit").map(|u| normalize_unit(&u));
            let z_spacing = size("PhysicalSizeZ")
                .filter(|_| nz > 1)
                .and_then(|z| match z_unit {
                    None => Some(z),
                    Some(u) => convert_length(z, &u, &unit),
                });
            calibration = Calibration {
                pixel_width: px,
                pixel_height: py,
                unit,
                z_spacing,
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
                z_spacing: None,
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

/// Reads a one-page label TIFF; a stack is refused (see [`read_tiff_label_stack`]).
pub(crate) fn read_tiff_labels(path: &Path) -> Result<(Vec<u32>, usize, usize)> {
    let (data, planes, h, w) = read_tiff_label_pages(path, false)?;
    debug_assert_eq!(planes, 1);
    Ok((data, h, w))
}

/// Reads every page of a label TIFF (a z-stack as `cytoseg segment` or Fiji writes it):
/// labels plane after plane, the number of planes, height and width. Pages of another size
/// or with several channels are refused, naming the page.
pub(crate) fn read_tiff_label_stack(path: &Path) -> Result<(Vec<u32>, usize, usize, usize)> {
    read_tiff_label_pages(path, true)
}

fn read_tiff_label_pages(path: &Path, stack: bool) -> Result<(Vec<u32>, usize, usize, usize)> {
    use crate::io::labels::{to_label, widen};
    use tiff::decoder::{Decoder, DecodingResult};
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let bad = |e: tiff::TiffError| {
        Error::format(
            path,
            format!(
                "unreadable or truncated TIFF: {}",
                limits::tiff_error_text(&e)
            ),
        )
    };
    let mut dec = Decoder::new(std::io::BufReader::new(file))
        .map_err(bad)?
        .with_limits(tiff_limits(limits::max_decoded_bytes()));
    let mut all: Vec<u32> = Vec::new();
    let mut size: Option<(usize, usize)> = None;
    let mut planes = 0usize;
    loop {
        let (w32, h32) = dec.dimensions().map_err(bad)?;
        let color = dec.colortype().map_err(bad)?;
        let (decoded, layout) = tiff_page_bytes(&mut dec).map_err(bad)?;
        // The decoded page and the labels made from it and the pages before (4 bytes a pixel).
        let what = tiff_page_text(planes, w32, h32, color);
        let need = limits::product(&[w32 as u64, h32 as u64, 4])
            .and_then(|l| l.checked_add(decoded))
            .and_then(|l| l.checked_add(all.len() as u64 * 4));
        limits::check_size(path, &format!("{what} (as labels)"), need)?;
        let (w, h) = (w32 as usize, h32 as usize);
        if size.is_some_and(|s| s != (h, w)) {
            return Err(Error::format(
                path,
                format!(
                    "page {} is {w}×{h}, page 1 {}×{}: a label stack has pages of one size",
                    planes + 1,
                    size.unwrap().1,
                    size.unwrap().0
                ),
            ));
        }
        size = Some((h, w));
        let data = match tiff_decode_page(&mut dec, &layout, path, &what)? {
            DecodingResult::U8(v) => widen(path, &v)?,
            DecodingResult::U16(v) => widen(path, &v)?,
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
        if Some(data.len()) != w.checked_mul(h) {
            return Err(Error::format(
                path,
                format!(
                    "{} samples for a {w}×{h} image: a label image has one channel",
                    data.len()
                ),
            ));
        }
        planes += 1;
        if !dec.more_images() {
            if all.is_empty() {
                all = data;
            } else {
                limits::try_reserve(&mut all, data.len(), path, "labels")?;
                all.extend_from_slice(&data);
            }
            break;
        }
        if !stack {
            // Only the first page would be read: refuse rather than measure or score part of a
            // stack.
            return Err(Error::format(
                path,
                "holds more than one page (a stack); a single 2-D label image was expected",
            ));
        }
        limits::try_reserve(&mut all, data.len(), path, "labels")?;
        all.extend_from_slice(&data);
        dec.next_image().map_err(bad)?;
    }
    let (h, w) = size.expect("one page read");
    Ok((all, planes, h, w))
}
