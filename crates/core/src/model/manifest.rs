//! Model package manifests (`models/<name>/manifest.json`, format documented in
//! `models/README.md`). Only the fields the engine needs are read; the rest is kept as
//! informative JSON.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// Manifest format versions this engine reads.
pub const SUPPORTED_FORMAT_VERSIONS: [u32; 1] = [1];

/// The manifest of a model package.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    /// Manifest format version (1).
    pub format_version: u32,
    /// Package name, e.g. "nuclei".
    pub name: String,
    /// Version of the weights, e.g. "1.0.0".
    pub version: String,
    /// Output family: "cellpose-flows" (implemented) or "stardist" (reserved).
    pub family: String,
    /// One-line description.
    #[serde(default)]
    pub description: String,
    /// Which images to pick this model for, in one line (`cytoseg models` shows it); empty
    /// when the package does not say.
    #[serde(default)]
    pub use_for: String,
    /// The ONNX file.
    pub model: ModelFile,
    /// The network input.
    pub input: InputSpec,
    /// Intensity normalization.
    pub normalization: Normalization,
    /// Object diameter (pixels) the network was trained for.
    pub diameter: f64,
    /// Typical object diameter (pixels) in the images the model was trained on, used when the
    /// caller gives none (models fine-tuned by `cytoseg train` record it); absent: no
    /// resizing by default.
    #[serde(default)]
    pub default_diameter: Option<f64>,
    /// Recommended tiling.
    pub tiling: Tiling,
    /// The network output.
    pub output: OutputSpec,
    /// Default flows → masks parameters.
    pub mask_defaults: MaskDefaults,
    /// Licence of the weights (SPDX).
    #[serde(default)]
    pub license: String,
    /// Training-data provenance (informative).
    #[serde(default)]
    pub training_data: serde_json::Value,
    /// Reduced-precision copies of the network (`scripts/quantize_model.py`), each with its
    /// own file, hash and validated accuracy; empty for most packages. Entries of a precision
    /// this engine does not know are ignored.
    #[serde(default)]
    pub variants: Vec<Variant>,
}

/// One entry of `variants`: the same network at another numeric precision.
#[derive(Debug, Clone, Deserialize)]
pub struct Variant {
    /// `"int8"` (the only one this engine runs; others are ignored).
    pub precision: String,
    /// ONNX file name relative to the package folder.
    pub file: String,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
    /// How the file was made (informative).
    #[serde(default)]
    pub recipe: String,
    /// Its accuracy against the float32 network's on a validation split; without it the
    /// variant is only used when asked for by name, never by `precision auto`.
    #[serde(default)]
    pub validation: Option<VariantValidation>,
}

/// `variants[].validation`: AP@0.5 (DSB 2018 "average precision") of the variant and of the
/// float32 network, each measured with cytoseg at the package defaults on the same split.
#[derive(Debug, Clone, Deserialize)]
pub struct VariantValidation {
    /// The split, in words.
    #[serde(default)]
    pub split: String,
    /// Number of validation images.
    #[serde(default)]
    pub images: usize,
    /// AP@0.5 with this variant.
    pub ap50: f64,
    /// AP@0.5 with the float32 network.
    pub ap50_fp32: f64,
}

/// `model` section.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelFile {
    /// ONNX file name relative to the package folder.
    pub file: String,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
}

/// `input` section.
#[derive(Debug, Clone, Deserialize)]
pub struct InputSpec {
    /// Input tensor name.
    pub name: String,
    /// Axis order; only "NCHW" is supported.
    pub axes: String,
    /// Number of channels C.
    pub channels: usize,
    /// H and W fed to the network must be multiples of this.
    pub size_multiple: usize,
}

/// `normalization` section.
#[derive(Debug, Clone, Deserialize)]
pub struct Normalization {
    /// "percentile".
    pub method: String,
    /// Lower percentile (percent).
    pub low: f64,
    /// Upper percentile (percent).
    pub high: f64,
}

/// `tiling` section.
#[derive(Debug, Clone, Deserialize)]
pub struct Tiling {
    /// Tile edge in pixels.
    pub tile_size: usize,
    /// Fractional overlap.
    pub overlap: f64,
}

/// `output` section.
#[derive(Debug, Clone, Deserialize)]
pub struct OutputSpec {
    /// Output tensor name.
    pub name: String,
    /// Channel names; "cellpose-flows" needs `["dY", "dX", "cellprob"]`.
    pub channels: Vec<String>,
    /// Flows were trained as `flow_scale ×` unit flows (5, as Cellpose).
    #[serde(default = "default_flow_scale")]
    pub flow_scale: f64,
}

fn default_flow_scale() -> f64 {
    5.0
}

/// `mask_defaults` section.
#[derive(Debug, Clone, Deserialize)]
pub struct MaskDefaults {
    /// Default cellprob threshold.
    pub cellprob_threshold: f32,
    /// Default flow-error threshold.
    pub flow_threshold: f64,
    /// Default number of integration steps (at the model's diameter).
    pub niter: u32,
    /// Default minimum mask size.
    pub min_size: i64,
    /// Default maximum mask size fraction.
    pub max_size_fraction: f64,
}

impl Manifest {
    /// Reads and checks a manifest file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = crate::io::limits::read_file(
            path,
            "model manifest",
            crate::io::limits::MAX_MANIFEST_BYTES,
        )?;
        Self::parse(path, &bytes)
    }

    /// Parses and checks manifest bytes read from `path` (named in errors).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::format(path, format!("invalid model manifest: {e}")))?;
        m.check().map_err(|msg| Error::format(path, msg))?;
        Ok(m)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if !SUPPORTED_FORMAT_VERSIONS.contains(&self.format_version) {
            return Err(format!(
                "manifest format_version {} is not supported by cytoseg {} (supported: {:?})",
                self.format_version,
                crate::VERSION,
                SUPPORTED_FORMAT_VERSIONS
            ));
        }
        if self.family != "cellpose-flows" {
            return Err(format!(
                "model family {:?} is not implemented (this engine runs \"cellpose-flows\")",
                self.family
            ));
        }
        if let Some(d) = self.default_diameter
            && !(d.is_finite() && d > 0.0)
        {
            return Err(format!("default_diameter {d} must be a positive number"));
        }
        if self.input.axes != "NCHW" {
            return Err(format!(
                "input.axes {:?}: only \"NCHW\" is supported",
                self.input.axes
            ));
        }
        if self.input.channels == 0 || self.input.channels > 16 {
            return Err(format!(
                "input.channels {} is out of range",
                self.input.channels
            ));
        }
        if self.input.size_multiple == 0
            || !self
                .tiling
                .tile_size
                .is_multiple_of(self.input.size_multiple)
        {
            return Err(format!(
                "tiling.tile_size {} must be a positive multiple of input.size_multiple {}",
                self.tiling.tile_size, self.input.size_multiple
            ));
        }
        if self.tiling.tile_size > 4096 {
            return Err(format!(
                "tiling.tile_size {} is over 4096",
                self.tiling.tile_size
            ));
        }
        if !(self.tiling.overlap.is_finite() && (0.0..1.0).contains(&self.tiling.overlap)) {
            return Err(format!(
                "tiling.overlap {} must be in [0, 1)",
                self.tiling.overlap
            ));
        }
        if self.output.channels != ["dY", "dX", "cellprob"] {
            return Err(format!(
                "output.channels {:?}: a cellpose-flows model outputs [\"dY\", \"dX\", \"cellprob\"]",
                self.output.channels
            ));
        }
        if self.normalization.method != "percentile"
            || !(0.0 <= self.normalization.low
                && self.normalization.low < self.normalization.high
                && self.normalization.high <= 100.0)
        {
            return Err("normalization must be \"percentile\" with 0 <= low < high <= 100".into());
        }
        if !(self.diameter.is_finite() && self.diameter > 0.0) {
            return Err(format!("diameter {} must be positive", self.diameter));
        }
        if self.model.sha256.len() != 64
            || !self.model.sha256.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err("model.sha256 must be 64 hexadecimal digits".into());
        }
        for v in &self.variants {
            if v.sha256.len() != 64 || !v.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "variants: the {} variant's sha256 must be 64 hexadecimal digits",
                    v.precision
                ));
            }
            if v.file.is_empty() || Path::new(&v.file).components().count() != 1 {
                return Err(format!(
                    "variants: the {} variant's file {:?} must be a file name in the package folder",
                    v.precision, v.file
                ));
            }
        }
        Ok(())
    }

    /// Path of the ONNX file of a package folder.
    pub fn onnx_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.model.file)
    }
}

/// Lower-case hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
