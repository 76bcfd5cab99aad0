//! Training data: image/label file pairs, samples (normalized network input, labels, unit flows,
//! annotated region), object diameters, and the Cellpose-style augmentation and batches of the
//! PyTorch recipe (`models/nuclei/train/data.py` and `train.py`), in the same maths.
//!
//! The random draws come from [`Rng`], not numpy: a run is reproducible for a seed, but its crops
//! are not those of the Python recipe.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::flows;
use crate::image::ImageView;
use crate::io::image::IMAGE_EXTENSIONS;
use crate::model::manifest::Normalization;
use crate::model::{ChannelChoice, network_planes, preprocess};

use super::rng::Rng;

/// Extensions [`crate::io::labels::read_labels`] reads (lower case).
const LABEL_EXTENSIONS: [&str; 4] = ["tif", "tiff", "png", "npy"];

/// Suffixes a label (or mask) file's stem may add to its image's stem, e.g. `a_masks.tif` for
/// `a.png` (Cellpose's `_masks` and other common conventions).
pub const LABEL_SUFFIXES: [&str; 5] = ["_masks", "_labels", "_label", "_mask", "_seg"];

/// How many file names an error or warning lists before "...".
const LIST_NAMES: usize = 5;

/// One training image with its label image and, optionally, its annotated-region mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The image file.
    pub image: PathBuf,
    /// Its instance labels (0 = background).
    pub labels: PathBuf,
    /// Where the labels are complete (nonzero = annotated); `None`: annotated everywhere.
    pub mask: Option<PathBuf>,
}

/// The files of a folder with one of `exts` (lower-cased), by stem; hidden files are skipped.
fn list_files(dir: &Path, what: &str, exts: &[&str]) -> Result<Vec<(String, PathBuf)>> {
    if !dir.is_dir() {
        return Err(Error::invalid(format!(
            "the {what} folder {} does not exist or is not a folder",
            dir.display()
        )));
    }
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        if !exts.contains(&crate::io::extension(&path).as_str()) {
            continue;
        }
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push((stem, path));
    }
    out.sort_by(|a, b| a.1.file_name().cmp(&b.1.file_name()));
    Ok(out)
}

fn names_text(paths: &[&Path]) -> String {
    let mut s = paths
        .iter()
        .take(LIST_NAMES)
        .map(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > LIST_NAMES {
        s.push_str(", ...");
    }
    s
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// For each image stem, the file of `files` named as the image (unless `same`: the folder is the
/// images' own) or as the image plus one of [`LABEL_SUFFIXES`]; two candidates are an error.
fn match_files(
    image_stems: &[&str],
    files: &[(String, PathBuf)],
    same: bool,
    what: &str,
) -> Result<(Vec<Option<PathBuf>>, Vec<PathBuf>)> {
    let mut by_stem: BTreeMap<&str, Vec<&PathBuf>> = BTreeMap::new();
    for (stem, path) in files {
        by_stem.entry(stem.as_str()).or_default().push(path);
    }
    let mut used: BTreeSet<&PathBuf> = BTreeSet::new();
    let mut out = Vec::with_capacity(image_stems.len());
    for stem in image_stems {
        let mut found: Vec<&PathBuf> = Vec::new();
        if !same {
            found.extend(by_stem.get(stem).into_iter().flatten());
        }
        for suffix in LABEL_SUFFIXES {
            found.extend(
                by_stem
                    .get(format!("{stem}{suffix}").as_str())
                    .into_iter()
                    .flatten(),
            );
        }
        match found.as_slice() {
            [] => out.push(None),
            [one] => {
                used.insert(one);
                out.push(Some((*one).clone()));
            }
            many => {
                let paths: Vec<&Path> = many.iter().map(|p| p.as_path()).collect();
                return Err(Error::invalid(format!(
                    "image {stem:?} matches several {what} files ({}); keep one",
                    names_text(&paths)
                )));
            }
        }
    }
    let unused = files
        .iter()
        .filter(|(_, p)| !used.contains(p))
        .map(|(_, p)| p.clone())
        .collect();
    Ok((out, unused))
}

/// Pairs the images of a folder with their label images (and annotated-region masks).
///
/// Images are the files the engine reads as images (`.tif`, `.tiff`, `.png`, `.jpg`, `.jpeg`,
/// `.npy`); labels and masks those it reads as labels (`.tif`, `.tiff`, `.png`, `.npy`). A label
/// file belongs to an image when its stem is the image's stem, or the image's stem plus one of
/// [`LABEL_SUFFIXES`] (`a.png` ↔ `a.tif`, `a_masks.tif`, `a_labels.png`, ...). The two folders
/// may be the same (Cellpose's layout, `a.tif` next to `a_masks.tif`): then the files whose
/// name ends with a suffix are the labels, the others the images. Hidden files are skipped.
///
/// `masks` (optional) holds per-image masks of the annotated region, paired the same way
/// (nonzero = annotated): the loss counts only there. An image without a mask file is annotated
/// everywhere.
///
/// Returns the pairs sorted by image file name. Errors: a folder missing, no image, an image
/// without a label file (the names, up to five, and the count), an image with two candidate
/// label (or mask) files, two images with the same stem. Label and mask files without an image
/// are ignored with a warning.
pub fn find_pairs(images: &Path, labels: &Path, masks: Option<&Path>) -> Result<Vec<Pair>> {
    let mut image_files = list_files(images, "image", &IMAGE_EXTENSIONS)?;
    let mut label_files = list_files(labels, "label", &LABEL_EXTENSIONS)?;
    let same = same_dir(images, labels);
    if same {
        // One folder for both (Cellpose's layout): a name with a label suffix is a label.
        let suffixed = |stem: &str| LABEL_SUFFIXES.iter().any(|x| stem.ends_with(x));
        image_files.retain(|(stem, _)| !suffixed(stem));
        label_files.retain(|(stem, _)| suffixed(stem));
    }
    if image_files.is_empty() {
        return Err(Error::invalid(format!(
            "no image in {} (images are .tif, .tiff, .png, .jpg, .jpeg or .npy files)",
            images.display()
        )));
    }
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    for (stem, path) in &image_files {
        if let Some(other) = seen.insert(stem.as_str(), path) {
            return Err(Error::invalid(format!(
                "images {} and {} in {} have the same name; labels are paired by name, keep one",
                other.display(),
                path.display(),
                images.display()
            )));
        }
    }
    let stems: Vec<&str> = image_files.iter().map(|(s, _)| s.as_str()).collect();
    let (label_of, unused_labels) = match_files(&stems, &label_files, same, "label")?;
    let missing: Vec<&Path> = image_files
        .iter()
        .zip(&label_of)
        .filter(|(_, l)| l.is_none())
        .map(|((_, p), _)| p.as_path())
        .collect();
    if !missing.is_empty() {
        return Err(Error::invalid(format!(
            "{} of {} image(s) in {} have no label file in {} ({}); a label file is named as its image, or with {} added to its name, and is a .tif, .tiff, .png or .npy",
            missing.len(),
            image_files.len(),
            images.display(),
            labels.display(),
            names_text(&missing),
            LABEL_SUFFIXES.join(", ")
        )));
    }
    if !unused_labels.is_empty() {
        let paths: Vec<&Path> = unused_labels.iter().map(|p| p.as_path()).collect();
        log::warn!(
            "{} label file(s) in {} have no image in {} and are ignored ({})",
            paths.len(),
            labels.display(),
            images.display(),
            names_text(&paths)
        );
    }
    let mask_of = match masks {
        None => vec![None; stems.len()],
        Some(dir) => {
            let mask_files = list_files(dir, "mask", &LABEL_EXTENSIONS)?;
            let same_m = same_dir(images, dir);
            let (mask_of, unused) = match_files(&stems, &mask_files, same_m, "mask")?;
            if !unused.is_empty() && !same_m {
                let paths: Vec<&Path> = unused.iter().map(|p| p.as_path()).collect();
                log::warn!(
                    "{} mask file(s) in {} have no image in {} and are ignored ({})",
                    paths.len(),
                    dir.display(),
                    images.display(),
                    names_text(&paths)
                );
            }
            let without = mask_of.iter().filter(|m| m.is_none()).count();
            if without > 0 {
                log::info!(
                    "{without} of {} image(s) have no mask in {}: annotated everywhere",
                    stems.len(),
                    dir.display()
                );
            }
            mask_of
        }
    };
    Ok(image_files
        .into_iter()
        .zip(label_of)
        .zip(mask_of)
        .map(|(((_, image), labels), mask)| Pair {
            image,
            labels: labels.expect("checked above"),
            mask,
        })
        .collect())
}

/// One training image, ready for cropping.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The network input, `channels × height × width` row-major, normalized as for
    /// segmentation (see [`network_planes`]).
    pub x: Vec<f32>,
    /// Network input channels.
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// Instance labels, `height × width` (0 = background; values as read, not renumbered).
    pub labels: Vec<u32>,
    /// Unit flows of the labels, `2 × height × width` (dY then dX), from
    /// [`flows::labels_to_flows_slices`].
    pub flows: Vec<f32>,
    /// The annotated region, `height × width` (1 = annotated, 0 = not), or `None`: annotated
    /// everywhere.
    pub valid: Option<Vec<u8>>,
}

/// Reads one pair and builds its [`Sample`]: the image's network input with `c_in` channels
/// chosen as [`ChannelChoice::Auto`] does for segmentation and normalized with `norm`, the
/// labels, their unit flows and the annotated region.
///
/// With `rescale != 1` the input is resized to `(height * rescale) as usize ×
/// (width * rescale) as usize` (as `Model::segment` does for a diameter) with bilinear
/// interpolation, labels and mask with nearest neighbour, and the flows are computed on the
/// resized labels.
pub fn load_sample(pair: &Pair, c_in: usize, norm: &Normalization, rescale: f64) -> Result<Sample> {
    let image = crate::io::image::read_image(&pair.image)?;
    let view = image.view()?;
    if view.has_non_finite() {
        return Err(Error::NonFinite(format!(
            "{} holds NaN or infinite values",
            pair.image.display()
        )));
    }
    let (labels, lh, lw) = crate::io::labels::read_labels(&pair.labels)?;
    if (lh, lw) != (view.height, view.width) {
        return Err(Error::shape(format!(
            "{} is {}×{} (height×width) but its labels {} are {lh}×{lw}",
            pair.image.display(),
            view.height,
            view.width,
            pair.labels.display()
        )));
    }
    let valid = match &pair.mask {
        None => None,
        Some(path) => {
            let (m, mh, mw) = crate::io::labels::read_labels(path)?;
            if (mh, mw) != (view.height, view.width) {
                return Err(Error::shape(format!(
                    "{} is {}×{} (height×width) but its mask {} is {mh}×{mw}",
                    pair.image.display(),
                    view.height,
                    view.width,
                    path.display()
                )));
            }
            Some(m.into_iter().map(|v| u8::from(v != 0)).collect())
        }
    };
    build_sample(&view, labels, valid, c_in, norm, rescale).map_err(|e| match e {
        Error::InvalidArgument(m) => Error::invalid(format!("{}: {m}", pair.image.display())),
        e => e,
    })
}

/// Nearest-neighbour resize of a row-major plane, as OpenCV's `INTER_NEAREST`
/// (source index `floor(d * src / dst)`).
fn resize_nearest<T: Copy>(src: &[T], h: usize, w: usize, nh: usize, nw: usize) -> Vec<T> {
    let (sy, sx) = (h as f64 / nh as f64, w as f64 / nw as f64);
    let xs: Vec<usize> = (0..nw)
        .map(|d| ((d as f64 * sx).floor() as usize).min(w - 1))
        .collect();
    let mut out = Vec::with_capacity(nh * nw);
    for d in 0..nh {
        let y = ((d as f64 * sy).floor() as usize).min(h - 1);
        let row = &src[y * w..(y + 1) * w];
        out.extend(xs.iter().map(|&x| row[x]));
    }
    out
}

/// [`load_sample`] on an image in memory (labels and mask already checked to be its size).
pub(crate) fn build_sample(
    image: &ImageView<'_>,
    mut labels: Vec<u32>,
    mut valid: Option<Vec<u8>>,
    c_in: usize,
    norm: &Normalization,
    rescale: f64,
) -> Result<Sample> {
    let (h, w) = (image.height, image.width);
    flows::check_size(h, w)?;
    if c_in == 0 {
        return Err(Error::invalid("the network takes no input channel"));
    }
    if !(rescale.is_finite() && rescale > 0.0) {
        return Err(Error::invalid(format!(
            "rescale factor {rescale} is not a positive number"
        )));
    }
    if image.has_non_finite() {
        return Err(Error::NonFinite(
            "the image holds NaN or infinite values".into(),
        ));
    }
    let mut x = network_planes(image, &ChannelChoice::Auto, c_in, norm)?;
    let (mut nh, mut nw) = (h, w);
    if rescale != 1.0 {
        nh = (h as f64 * rescale) as usize;
        nw = (w as f64 * rescale) as usize;
        if nh < 2 || nw < 2 || nh > flows::MAX_SIDE || nw > flows::MAX_SIDE {
            return Err(Error::invalid(format!(
                "rescaling the {h}×{w} image by {rescale} gives {nh}×{nw}"
            )));
        }
        x = preprocess::resize_linear(&x, c_in, h, w, nh, nw)?;
        labels = resize_nearest(&labels, h, w, nh, nw);
        valid = valid.map(|v| resize_nearest(&v, h, w, nh, nw));
    }
    let flows: Vec<f32> = flows::labels_to_flows_slices(&labels, nh, nw)?
        .into_iter()
        .map(|v| v as f32)
        .collect();
    Ok(Sample {
        x,
        channels: c_in,
        height: nh,
        width: nw,
        labels,
        flows,
        valid,
    })
}

/// Median of a non-empty list (numpy's: the mean of the two middle values for an even count).
fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The square roots of the pixel counts of the objects (nonzero labels) of a label map.
fn sqrt_areas(labels: &[u32]) -> Vec<f64> {
    let mut ids: Vec<u32> = labels.iter().copied().filter(|&l| l != 0).collect();
    ids.sort_unstable();
    ids.chunk_by(|a, b| a == b)
        .map(|run| (run.len() as f64).sqrt())
        .collect()
}

/// Cellpose's object diameter (`cellpose.utils.diameters`): the median over objects of
/// `sqrt(pixel count)`, divided by `sqrt(pi) / 2` (the diameter of a disc of that area).
/// `None` when there is no object. (Cellpose drops the first unique value, which is the
/// background only when there is one; here every nonzero label is an object.)
pub fn object_diameter(labels: &[u32]) -> Option<f64> {
    median(sqrt_areas(labels)).map(|m| m / (std::f64::consts::PI.sqrt() / 2.0))
}

/// The object diameter over several label maps: the median of all their objects'
/// `sqrt(pixel count)`, divided by `sqrt(pi) / 2`; `None` when there is no object at all.
/// For samples: `median_diameter(samples.iter().map(|s| s.labels.as_slice()))`.
pub fn median_diameter<'a>(label_maps: impl IntoIterator<Item = &'a [u32]>) -> Option<f64> {
    let all: Vec<f64> = label_maps.into_iter().flat_map(sqrt_areas).collect();
    median(all).map(|m| m / (std::f64::consts::PI.sqrt() / 2.0))
}

/// A batch of crops, the network's input and the loss targets.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Crops.
    pub n: usize,
    /// Input channels.
    pub channels: usize,
    /// Crop edge S.
    pub size: usize,
    /// Input, `n × channels × S × S`.
    pub x: Vec<f32>,
    /// Unit flow targets (dY, dX), `n × 2 × S × S`; the loss compares the network with 5× these.
    pub flows: Vec<f32>,
    /// Cell probability target, `n × S × S`: 1 inside objects, 0 outside (also outside the
    /// image, which counts as background as in the recipe).
    pub cellprob: Vec<f32>,
    /// Loss weight, `n × S × S`: 0 outside the annotated region, 1 elsewhere.
    pub weight: Vec<f32>,
}

/// The affine map of one crop, as `data.py` builds it: `dst = M · (x, y, 1)` in pixel
/// coordinates, `M = [A | t]`, `A = s · R · F`.
#[derive(Debug, Clone, Copy)]
struct Affine {
    /// `M⁻¹`, as OpenCV computes it from the float32 `M`: source `(x, y)` of an output pixel.
    inv: [f64; 6],
    /// `R · F`, which turns flow vectors (x, y).
    lin: [[f64; 2]; 2],
}

impl Affine {
    /// Scale `s`, rotation by `k · 90°`, flip of x, and the source point `(cx, cy)` (in
    /// continuous coordinates, pixel `i` covering `[i, i + 1)`) that lands in the crop's centre.
    fn new(s: f64, k: usize, flip: bool, cx: f64, cy: f64, crop: usize) -> Self {
        let (c, sn) = [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)][k % 4];
        let f = if flip { -1.0 } else { 1.0 };
        // R = [[c, -sn], [sn, c]], F = diag(f, 1): R·F = [[c f, -sn], [sn f, c]].
        let lin = [[c * f, -sn], [sn * f, c]];
        let a = [
            [s * lin[0][0], s * lin[0][1]],
            [s * lin[1][0], s * lin[1][1]],
        ];
        let (sx, sy) = (cx - 0.5, cy - 0.5); // pixel centres
        let d = crop as f64 / 2.0 - 0.5;
        let t = [
            d - (a[0][0] * sx + a[0][1] * sy),
            d - (a[1][0] * sx + a[1][1] * sy),
        ];
        // `.astype(np.float32)`, then OpenCV inverts in double.
        let m: [f64; 6] = [a[0][0], a[0][1], t[0], a[1][0], a[1][1], t[1]].map(|v| v as f32 as f64);
        let det = m[0] * m[4] - m[1] * m[3];
        let det = if det != 0.0 { 1.0 / det } else { 0.0 };
        let (i00, i11) = (m[4] * det, m[0] * det);
        let (i01, i10) = (-m[1] * det, -m[3] * det);
        let inv = [
            i00,
            i01,
            -i00 * m[2] - i01 * m[5],
            i10,
            i11,
            -i10 * m[2] - i11 * m[5],
        ];
        Affine { inv, lin }
    }

    #[inline]
    fn source(&self, x: usize, y: usize) -> (f64, f64) {
        let (x, y) = (x as f64, y as f64);
        let m = &self.inv;
        (m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5])
    }
}

/// `cv2.warpAffine(..., INTER_LINEAR, borderValue=0)` of one float plane to `size × size`:
/// bilinear interpolation at `M⁻¹ (x, y)`, samples outside the image count as 0.
fn warp_linear(src: &[f32], h: usize, w: usize, aff: &Affine, size: usize) -> Vec<f32> {
    let at = |y: i64, x: i64| -> f32 {
        if y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w {
            src[y as usize * w + x as usize]
        } else {
            0.0
        }
    };
    let mut out = Vec::with_capacity(size * size);
    for y in 0..size {
        for x in 0..size {
            let (sx, sy) = aff.source(x, y);
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = ((sx - x0) as f32, (sy - y0) as f32);
            let (xi, yi) = (x0 as i64, y0 as i64);
            let (p00, p01) = (at(yi, xi), at(yi, xi + 1));
            let (p10, p11) = (at(yi + 1, xi), at(yi + 1, xi + 1));
            let a = (p01 - p00).mul_add(fx, p00);
            let b = (p11 - p10).mul_add(fx, p10);
            out.push((b - a).mul_add(fy, a));
        }
    }
    out
}

/// `cv2.warpAffine(..., INTER_NEAREST)` of one plane: the source pixel nearest to
/// `M⁻¹ (x, y)`, `border` outside the image.
fn warp_nearest<T: Copy>(
    src: &[T],
    h: usize,
    w: usize,
    aff: &Affine,
    size: usize,
    border: T,
) -> Vec<T> {
    let mut out = Vec::with_capacity(size * size);
    for y in 0..size {
        for x in 0..size {
            let (sx, sy) = aff.source(x, y);
            let (xi, yi) = ((sx + 0.5).floor(), (sy + 0.5).floor());
            out.push(
                if xi >= 0.0 && yi >= 0.0 && (xi as usize) < w && (yi as usize) < h {
                    src[yi as usize * w + xi as usize]
                } else {
                    border
                },
            );
        }
    }
    out
}

/// One crop of a sample through `aff`: (x, cellprob, flows, weight).
fn warp_sample(
    sample: &Sample,
    aff: &Affine,
    crop: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let (h, w) = (sample.height, sample.width);
    let n = h * w;
    let mut x = Vec::with_capacity(sample.channels * crop * crop);
    for c in 0..sample.channels {
        x.extend(warp_linear(&sample.x[c * n..(c + 1) * n], h, w, aff, crop));
    }
    let cellprob = warp_nearest(&sample.labels, h, w, aff, crop, 0)
        .into_iter()
        .map(|l| if l > 0 { 1.0 } else { 0.0 })
        .collect();
    let fy = warp_linear(&sample.flows[..n], h, w, aff, crop);
    let fx = warp_linear(&sample.flows[n..2 * n], h, w, aff, crop);
    let l = aff.lin;
    let mut flows = vec![0.0f32; 2 * crop * crop];
    let (ny, nx) = flows.split_at_mut(crop * crop);
    for i in 0..crop * crop {
        let (vx, vy) = (fx[i] as f64, fy[i] as f64);
        nx[i] = (l[0][0] * vx + l[0][1] * vy) as f32;
        ny[i] = (l[1][0] * vx + l[1][1] * vy) as f32;
    }
    // Outside the image is background, which the loss counts; only the annotated-region mask
    // takes pixels out.
    let weight = match &sample.valid {
        None => vec![1.0; crop * crop],
        Some(v) => warp_nearest(v, h, w, aff, crop, 1)
            .into_iter()
            .map(|m| if m != 0 { 1.0 } else { 0.0 })
            .collect(),
    };
    (x, cellprob, flows, weight)
}

/// One random crop of `crop × crop` pixels, as `data.py`'s `random_crop_augment`: a single
/// affine map does a log-uniform scale in `scale_range`, a rotation by `k · 90°` (`k` uniform in
/// 0..4), a flip of x (probability ½) and the crop, whose source centre is uniform where the
/// crop fits in the image (else the image centre); outside the image is zero. Image and flows
/// are warped bilinearly, labels and mask with nearest neighbour, and the flow vectors are turned
/// with the same rotation and flip (directions do not change with scale).
///
/// Returns `(x, cellprob, flows, weight)`: `channels × crop × crop`, `crop × crop`,
/// `2 × crop × crop` (unit dY, dX) and `crop × crop` (0 outside the annotated region).
pub fn random_crop_augment(
    sample: &Sample,
    rng: &mut Rng,
    crop: usize,
    scale_range: (f64, f64),
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let (h, w) = (sample.height as f64, sample.width as f64);
    let s = rng.uniform(scale_range.0.ln(), scale_range.1.ln()).exp();
    let k = rng.below(4);
    let flip = rng.below(2) == 1;
    let half = crop as f64 / (2.0 * s);
    let cy = if h > 2.0 * half {
        rng.uniform(half, h - half)
    } else {
        h / 2.0
    };
    let cx = if w > 2.0 * half {
        rng.uniform(half, w - half)
    } else {
        w / 2.0
    };
    warp_sample(sample, &Affine::new(s, k, flip, cx, cy, crop), crop)
}

/// OpenCV's Gaussian kernel for `cv2.GaussianBlur(x, (0, 0), sigma)` on float32: size
/// `round(8 sigma + 1) | 1`, weights `exp(-i² / (2 sigma²))` normalized in double.
fn gaussian_kernel(sigma: f64) -> Vec<f32> {
    let n = (((sigma * 8.0 + 1.0).round() as i64) | 1).max(1) as usize;
    let c = (n as f64 - 1.0) / 2.0;
    let w: Vec<f64> = (0..n)
        .map(|i| {
            let x = i as f64 - c;
            (-(x * x) / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let sum: f64 = w.iter().sum();
    w.iter().map(|v| (v / sum) as f32).collect()
}

/// OpenCV's `BORDER_REFLECT_101` index (`gfedcb|abcdefgh|gfedcba`).
fn reflect101(i: i64, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let n = n as i64;
    let period = 2 * (n - 1);
    let mut i = i.rem_euclid(period);
    if i >= n {
        i = period - i;
    }
    i as usize
}

/// Separable Gaussian blur of one `size × size` plane (rows, then columns), reflect-101 border.
fn gaussian_blur(plane: &mut [f32], size: usize, kernel: &[f32]) {
    let r = (kernel.len() / 2) as i64;
    let mut tmp = vec![0.0f32; plane.len()];
    for y in 0..size {
        let row = &plane[y * size..(y + 1) * size];
        for x in 0..size {
            tmp[y * size + x] = kernel
                .iter()
                .enumerate()
                .map(|(j, k)| k * row[reflect101(x as i64 + j as i64 - r, size)])
                .sum();
        }
    }
    for y in 0..size {
        for x in 0..size {
            plane[y * size + x] = kernel
                .iter()
                .enumerate()
                .map(|(j, k)| k * tmp[reflect101(y as i64 + j as i64 - r, size) * size + x])
                .sum();
        }
    }
}

/// Intensity jitter of a crop (`channels × size × size`), as `data.py`'s `intensity_augment`:
/// with probability ½ a gamma `clip(x, 0)^g`, `g` log-uniform in [0.7, 1.4]; a gain uniform in
/// [0.7, 1.3] and an offset uniform in [-0.1, 0.1]; with probability 0.3 a Gaussian blur of
/// sigma uniform in [0.5, 1.5] (OpenCV's kernel and reflect-101 border); with probability ½
/// Gaussian noise of standard deviation uniform in [0.01, 0.1]. Every channel gets the same
/// draws (the noise itself is drawn per pixel).
///
/// # Panics
/// When `x.len() != channels * size * size`.
pub fn intensity_augment(x: &mut [f32], channels: usize, size: usize, rng: &mut Rng) {
    assert_eq!(x.len(), channels * size * size, "crop buffer size");
    let gamma = rng
        .bool(0.5)
        .then(|| rng.uniform(0.7f64.ln(), 1.4f64.ln()).exp() as f32);
    let gain = rng.uniform(0.7, 1.3) as f32;
    let offset = rng.uniform(-0.1, 0.1) as f32;
    let sigma = rng.bool(0.3).then(|| rng.uniform(0.5, 1.5));
    let noise = rng.bool(0.5).then(|| rng.uniform(0.01, 0.1));
    let kernel = sigma.map(gaussian_kernel);
    for plane in x.chunks_mut((size * size).max(1)) {
        if let Some(g) = gamma {
            plane.iter_mut().for_each(|v| *v = v.max(0.0).powf(g));
        }
        plane.iter_mut().for_each(|v| *v = *v * gain + offset);
        if let Some(k) = &kernel {
            gaussian_blur(plane, size, k);
        }
        if let Some(sd) = noise {
            plane
                .iter_mut()
                .for_each(|v| *v += (rng.normal() * sd) as f32);
        }
    }
}

/// A batch of crops of `samples[i]` for each `i` of `idx`, as `train.py`'s `make_batch`: for each,
/// [`random_crop_augment`], then [`intensity_augment`] when `augment`.
///
/// # Panics
/// When `idx` is empty, an index is out of range, or the samples differ in channels.
pub fn make_batch(
    samples: &[Sample],
    idx: &[usize],
    rng: &mut Rng,
    crop: usize,
    scale_range: (f64, f64),
    augment: bool,
) -> Batch {
    let channels = samples[idx[0]].channels;
    let plane = crop * crop;
    let n = idx.len();
    let mut batch = Batch {
        n,
        channels,
        size: crop,
        x: Vec::with_capacity(n * channels * plane),
        flows: Vec::with_capacity(n * 2 * plane),
        cellprob: Vec::with_capacity(n * plane),
        weight: Vec::with_capacity(n * plane),
    };
    for &i in idx {
        let s = &samples[i];
        assert_eq!(s.channels, channels, "samples differ in channels");
        let (mut x, cp, fl, wt) = random_crop_augment(s, rng, crop, scale_range);
        if augment {
            intensity_augment(&mut x, channels, crop, rng);
        }
        batch.x.extend(x);
        batch.cellprob.extend(cp);
        batch.flows.extend(fl);
        batch.weight.extend(wt);
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Pixels;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh empty folder under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "cytoseg-train-data-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }

        fn sub(&self, name: &str) -> PathBuf {
            let p = self.0.join(name);
            std::fs::create_dir_all(&p).unwrap();
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn touch(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, b"").unwrap();
        p
    }

    fn names(pairs: &[Pair]) -> Vec<(String, String, Option<String>)> {
        let n = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
        pairs
            .iter()
            .map(|p| (n(&p.image), n(&p.labels), p.mask.as_deref().map(n)))
            .collect()
    }

    fn s(a: &str, b: &str, m: Option<&str>) -> (String, String, Option<String>) {
        (a.into(), b.into(), m.map(Into::into))
    }

    fn norm() -> Normalization {
        Normalization {
            method: "percentile".into(),
            low: 1.0,
            high: 99.0,
        }
    }

    #[test]
    fn pairs_by_stem_and_suffix() {
        let t = TempDir::new("pairs");
        let (im, lb, mk) = (t.sub("images"), t.sub("labels"), t.sub("masks"));
        for f in [
            "b.png",
            "a.tif",
            "c.npy",
            "d.jpg",
            "notes.txt",
            ".hidden.tif",
        ] {
            touch(&im, f);
        }
        for f in [
            "a.tif",
            "b_masks.png",
            "c_seg.npy",
            "d_labels.tif",
            "orphan.tif",
        ] {
            touch(&lb, f);
        }
        touch(&mk, "a_mask.png");
        let pairs = find_pairs(&im, &lb, None).unwrap();
        assert_eq!(
            names(&pairs),
            vec![
                s("a.tif", "a.tif", None),
                s("b.png", "b_masks.png", None),
                s("c.npy", "c_seg.npy", None),
                s("d.jpg", "d_labels.tif", None),
            ]
        );
        let pairs = find_pairs(&im, &lb, Some(&mk)).unwrap();
        assert_eq!(pairs[0].mask, Some(mk.join("a_mask.png")));
        assert!(pairs[1..].iter().all(|p| p.mask.is_none()));
    }

    #[test]
    fn pairs_in_one_folder() {
        let t = TempDir::new("same");
        let d = t.sub("data");
        for f in [
            "x.tif",
            "x_masks.tif",
            "y.png",
            "y_masks.png",
            "z_masks.tif",
        ] {
            touch(&d, f);
        }
        let pairs = find_pairs(&d, &d, None).unwrap();
        assert_eq!(
            names(&pairs),
            vec![
                s("x.tif", "x_masks.tif", None),
                s("y.png", "y_masks.png", None)
            ]
        );
    }

    #[test]
    fn pairing_errors_name_the_files() {
        let t = TempDir::new("errors");
        let (im, lb) = (t.sub("images"), t.sub("labels"));
        let missing = t.0.join("nope");
        let e = find_pairs(&missing, &lb, None).unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("image folder"), "{e}");
        let e = find_pairs(&im, &lb, None).unwrap_err().to_string();
        assert!(e.contains("no image"), "{e}");
        let e = find_pairs(&im, &missing, None).unwrap_err().to_string();
        assert!(e.contains("label folder"), "{e}");
        for i in 0..7 {
            touch(&im, &format!("img{i}.tif"));
        }
        touch(&lb, "img0_masks.tif");
        let e = find_pairs(&im, &lb, None).unwrap_err().to_string();
        assert!(e.contains("6 of 7 image(s)"), "{e}");
        assert!(e.contains("img1.tif") && e.contains("..."), "{e}");
        assert!(!e.contains("img0.tif"), "{e}");
        // Two candidate label files.
        let t = TempDir::new("ambiguous");
        let (im, lb) = (t.sub("images"), t.sub("labels"));
        touch(&im, "a.tif");
        touch(&lb, "a.tif");
        touch(&lb, "a_masks.png");
        let e = find_pairs(&im, &lb, None).unwrap_err().to_string();
        assert!(e.contains("a.tif") && e.contains("a_masks.png"), "{e}");
        // Two images with the same stem.
        touch(&im, "a.png");
        let e = find_pairs(&im, &lb, None).unwrap_err().to_string();
        assert!(e.contains("same name"), "{e}");
    }

    /// A `h × w` one-channel sample with the given labels; x is a ramp, flows computed.
    fn sample_from(labels: Vec<u32>, h: usize, w: usize) -> Sample {
        let px: Vec<f32> = (0..h * w).map(|i| i as f32).collect();
        let view = ImageView::packed(Pixels::F32(&px), w, h, 1).unwrap();
        build_sample(&view, labels, None, 1, &norm(), 1.0).unwrap()
    }

    fn disc(h: usize, w: usize, cy: f64, cx: f64, r: f64, id: u32) -> Vec<u32> {
        let mut l = vec![0u32; h * w];
        for y in 0..h {
            for x in 0..w {
                let (dy, dx) = (y as f64 - cy, x as f64 - cx);
                if dy * dy + dx * dx <= r * r {
                    l[y * w + x] = id;
                }
            }
        }
        l
    }

    #[test]
    fn disc_flows_point_to_the_centre() {
        let (h, w) = (32, 32);
        for rescale in [1.0, 1.5] {
            let px: Vec<f32> = (0..h * w).map(|i| (i % 7) as f32).collect();
            let view = ImageView::packed(Pixels::F32(&px), w, h, 1).unwrap();
            let sm = build_sample(
                &view,
                disc(h, w, 16.0, 16.0, 9.0, 7),
                None,
                1,
                &norm(),
                rescale,
            )
            .unwrap();
            let (sh, sw) = (sm.height, sm.width);
            assert_eq!(
                (sh, sw),
                ((32.0 * rescale) as usize, (32.0 * rescale) as usize)
            );
            assert_eq!(sm.x.len(), sh * sw);
            let c = (16.0 * rescale) as usize;
            let d = (6.0 * rescale) as usize;
            let n = sh * sw;
            let (fy, fx) = sm.flows.split_at(n);
            // right of the centre: dX < 0; left: dX > 0; below: dY < 0; above: dY > 0
            assert!(fx[c * sw + c + d] < -0.5, "{}", fx[c * sw + c + d]);
            assert!(fx[c * sw + c - d] > 0.5);
            assert!(fy[(c + d) * sw + c] < -0.5);
            assert!(fy[(c - d) * sw + c] > 0.5);
            // zero outside, unit inside
            assert_eq!((fy[0], fx[0]), (0.0, 0.0));
            let i = c * sw + c + d;
            assert!(((fy[i] * fy[i] + fx[i] * fx[i]).sqrt() - 1.0).abs() < 1e-3);
        }
    }

    #[test]
    fn diameter_of_a_disc() {
        let r = 20.0;
        let l = disc(64, 64, 31.5, 31.5, r, 3);
        let d = object_diameter(&l).unwrap();
        assert!((d - 2.0 * r).abs() < 0.02 * 2.0 * r, "{d}");
        assert_eq!(object_diameter(&[0, 0, 0]), None);
        // two objects of 4 and 16 pixels plus one of 9: median sqrt-area 3
        let mut l = vec![1u32; 4];
        l.extend(vec![5u32; 16]);
        l.extend(vec![9u32; 9]);
        l.extend(vec![0u32; 3]);
        let want = 3.0 / (std::f64::consts::PI.sqrt() / 2.0);
        assert!((object_diameter(&l).unwrap() - want).abs() < 1e-12);
        // over maps: sqrt-areas 2, 4 and 3, 5 -> median 3.5
        let a = [vec![1u32; 4], vec![2u32; 16]].concat();
        let b = [vec![1u32; 9], vec![2u32; 25], vec![0u32; 2]].concat();
        let m = median_diameter([a.as_slice(), b.as_slice()]).unwrap();
        assert!((m - 3.5 / (std::f64::consts::PI.sqrt() / 2.0)).abs() < 1e-12);
        assert_eq!(median_diameter(std::iter::empty::<&[u32]>()), None);
    }

    #[test]
    fn identity_crop_is_the_source_window() {
        let (h, w) = (20, 24);
        let mut labels = vec![0u32; h * w];
        labels[5 * w + 9] = 4;
        labels[10 * w + 12] = 2;
        let mut sm = sample_from(labels, h, w);
        sm.flows = (0..2 * h * w).map(|i| (i as f32 * 0.37).sin()).collect();
        sm.valid = Some((0..h * w).map(|i| (i % 3 != 0) as u8).collect());
        let crop = 8;
        // centre (cx, cy) = (14, 10): the window starts at x = 10, y = 6
        let aff = Affine::new(1.0, 0, false, 14.0, 10.0, crop);
        let (x, cp, fl, wt) = warp_sample(&sm, &aff, crop);
        let (x0, y0) = (10, 6);
        for y in 0..crop {
            for x_ in 0..crop {
                let s = (y0 + y) * w + x0 + x_;
                let d = y * crop + x_;
                assert_eq!(x[d], sm.x[s]);
                assert_eq!(cp[d], (sm.labels[s] > 0) as u8 as f32);
                assert_eq!(fl[d], sm.flows[s]);
                assert_eq!(fl[crop * crop + d], sm.flows[h * w + s]);
                assert_eq!(wt[d], sm.valid.as_ref().unwrap()[s] as f32);
            }
        }
        assert_eq!(cp.iter().sum::<f32>(), 1.0); // the pixel at (y 10, x 12)
    }

    #[test]
    fn rotation_moves_pixels_and_turns_flows() {
        let (h, w) = (16, 16);
        let mut labels = vec![0u32; h * w];
        labels[7 * w + 10] = 1; // x = 10, y = 7
        let mut sm = sample_from(labels, h, w);
        // a uniform flow field pointing to +x: dY = 0, dX = 1
        sm.flows = [vec![0.0f32; h * w], vec![1.0f32; h * w]].concat();
        // k = 1: R = [[0, -1], [1, 0]] in (x, y); about the centre (7.5, 7.5) the offset
        // (2.5, -0.5) becomes (0.5, 2.5): x = 8, y = 10.
        let aff = Affine::new(1.0, 1, false, 8.0, 8.0, 16);
        let (_, cp, fl, wt) = warp_sample(&sm, &aff, 16);
        assert_eq!(cp[10 * 16 + 8], 1.0);
        assert_eq!(cp.iter().sum::<f32>(), 1.0);
        let (fy, fx) = fl.split_at(256);
        // +x turns into +y
        assert_eq!((fy[8 * 16 + 8], fx[8 * 16 + 8]), (1.0, 0.0));
        assert!(wt.iter().all(|&v| v == 1.0));
        // a flip (x -> -x) then k = 0: the pixel goes to x = 15 - 10 = 5, flows to -x
        let aff = Affine::new(1.0, 0, true, 8.0, 8.0, 16);
        let (_, cp, fl, _) = warp_sample(&sm, &aff, 16);
        assert_eq!(cp[7 * 16 + 5], 1.0);
        assert_eq!((fl[8 * 16 + 8], fl[256 + 8 * 16 + 8]), (0.0, -1.0));
    }

    #[test]
    fn zoom_out_pads_with_zero_and_weight_one() {
        let (h, w) = (10, 10);
        let mut sm = sample_from(disc(h, w, 4.5, 4.5, 3.0, 1), h, w);
        sm.x.iter_mut().for_each(|v| *v = 1.0);
        sm.valid = Some(vec![0; h * w]);
        let aff = Affine::new(0.5, 0, false, 5.0, 5.0, 16);
        let (x, _, _, wt) = warp_sample(&sm, &aff, 16);
        assert_eq!(x[0], 0.0); // outside the image
        assert_eq!(wt[0], 1.0); // outside the image counts (background)
        assert_eq!(x[8 * 16 + 8], 1.0);
        assert_eq!(wt[8 * 16 + 8], 0.0); // inside, not annotated
    }

    #[test]
    fn batches_have_their_shapes_and_are_deterministic() {
        let (h, w) = (40, 30);
        let mut l = disc(h, w, 12.0, 10.0, 6.0, 1);
        for (a, b) in l.iter_mut().zip(disc(h, w, 28.0, 20.0, 7.0, 2)) {
            *a = (*a).max(b);
        }
        let samples = vec![sample_from(l.clone(), h, w), sample_from(l, h, w)];
        let make = |seed| {
            let mut rng = Rng::new(seed);
            make_batch(&samples, &[1, 0, 1], &mut rng, 24, (0.75, 1.33), true)
        };
        let b = make(5);
        assert_eq!((b.n, b.channels, b.size), (3, 1, 24));
        assert_eq!(b.x.len(), 3 * 24 * 24);
        assert_eq!(b.flows.len(), 3 * 2 * 24 * 24);
        assert_eq!(b.cellprob.len(), 3 * 24 * 24);
        assert_eq!(b.weight.len(), 3 * 24 * 24);
        assert!(b.x.iter().chain(&b.flows).all(|v| v.is_finite()));
        assert!(b.cellprob.contains(&1.0));
        let c = make(5);
        assert_eq!((b.x, b.flows, b.cellprob), (c.x, c.flows, c.cellprob));
        assert_ne!(make(6).x, make(5).x);
        let mut rng = Rng::new(0);
        let plain = make_batch(&samples, &[0], &mut rng, 24, (1.0, 1.0), false);
        assert!(plain.flows.iter().all(|v| v.abs() <= 1.0 + 1e-5));
    }

    #[test]
    fn intensity_augment_is_seeded_and_blur_keeps_constants() {
        let mut a: Vec<f32> = (0..2 * 16 * 16).map(|i| (i % 11) as f32 / 10.0).collect();
        let mut b = a.clone();
        intensity_augment(&mut a, 2, 16, &mut Rng::new(3));
        intensity_augment(&mut b, 2, 16, &mut Rng::new(3));
        assert_eq!(a, b);
        let k = gaussian_kernel(1.0);
        assert_eq!(k.len(), 9);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let mut p = vec![0.25f32; 64];
        gaussian_blur(&mut p, 8, &gaussian_kernel(1.5));
        assert!(p.iter().all(|v| (v - 0.25).abs() < 1e-6));
        assert_eq!(
            (0..6).map(|i| reflect101(i - 2, 4)).collect::<Vec<_>>(),
            [2, 1, 0, 1, 2, 3]
        );
        assert_eq!(reflect101(5, 4), 1);
    }

    #[test]
    fn load_sample_reads_files_and_checks_sizes() {
        let t = TempDir::new("load");
        let (im, lb) = (t.sub("images"), t.sub("labels"));
        let (h, w) = (12, 16);
        let px: Vec<f32> = (0..h * w).map(|i| (i % 13) as f32).collect();
        let mut f = std::fs::File::create(im.join("a.npy")).unwrap();
        crate::io::npy::write(&mut f, &[h, w], px.clone()).unwrap();
        drop(f);
        let labels = disc(h, w, 6.0, 8.0, 4.0, 9);
        crate::io::labels::write_labels(&lb.join("a_masks.tif"), &labels, h, w, false).unwrap();
        let pairs = find_pairs(&im, &lb, None).unwrap();
        let sm = load_sample(&pairs[0], 1, &norm(), 1.0).unwrap();
        assert_eq!((sm.channels, sm.height, sm.width), (1, h, w));
        assert_eq!(sm.labels, labels);
        assert!(sm.valid.is_none());
        // the input is the segmentation input
        let view = ImageView::packed(Pixels::F32(&px), w, h, 1).unwrap();
        let want = network_planes(&view, &ChannelChoice::Auto, 1, &norm()).unwrap();
        assert_eq!(sm.x, want);
        // two input channels: the second is zero (one-channel image)
        let sm2 = load_sample(&pairs[0], 2, &norm(), 1.0).unwrap();
        assert!(sm2.x[h * w..].iter().all(|&v| v == 0.0));
        // a mask
        let mk = t.sub("masks");
        let mask: Vec<u32> = (0..h * w).map(|i| (i >= w) as u32 * 255).collect();
        crate::io::labels::write_labels(&mk.join("a.tif"), &mask, h, w, false).unwrap();
        let pairs = find_pairs(&im, &lb, Some(&mk)).unwrap();
        let sm = load_sample(&pairs[0], 1, &norm(), 1.0).unwrap();
        let v = sm.valid.unwrap();
        assert_eq!((v[0], v[w]), (0, 1));
        // a size mismatch names both files
        std::fs::remove_file(lb.join("a_masks.tif")).unwrap();
        crate::io::labels::write_labels(
            &lb.join("a_masks.tif"),
            &labels[..w * (h - 1)],
            h - 1,
            w,
            false,
        )
        .unwrap();
        let e = load_sample(&pairs[0], 1, &norm(), 1.0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a.npy") && e.contains("a_masks.tif") && e.contains("11×16"),
            "{e}"
        );
        // non-finite pixels
        let mut bad = px;
        bad[3] = f32::NAN;
        let mut f = std::fs::File::create(im.join("a.npy")).unwrap();
        crate::io::npy::write(&mut f, &[h, w], bad).unwrap();
        drop(f);
        let e = load_sample(&pairs[0], 1, &norm(), 1.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("NaN") && e.contains("a.npy"), "{e}");
    }
}
