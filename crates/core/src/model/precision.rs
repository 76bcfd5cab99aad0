//! Numeric precision of the network: float32 (exact, Cellpose parity) or a package's int8
//! variant (faster on CPUs, validated accuracy), and the `auto` rule between them.

use std::borrow::Cow;

use super::manifest::{Manifest, Variant};
use super::{SegmentParams, Tiling};
use crate::error::{Error, Result};

/// Largest loss of AP@0.5 against float32, on the package's validation split, for which
/// [`Precision::Auto`] takes a reduced-precision variant.
pub const AUTO_MAX_AP_LOSS: f64 = 0.005;

/// Which copy of the network runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Precision {
    /// The fastest copy whose validated AP@0.5 is within [`AUTO_MAX_AP_LOSS`] of float32's on
    /// the device in use: the package's int8 variant on the CPU when it has a validated one and
    /// the tiling is [`Tiling::Fast`]; float32 otherwise (always with [`Tiling::Cellpose`], the
    /// exact mode, in do_3D, see [`do3d_params`], and on GPUs).
    #[default]
    Auto,
    /// The package's float32 network (`model.file`): labels equal Cellpose's with
    /// [`Tiling::Cellpose`].
    Fp32,
    /// The package's int8 variant (`variants`, precision `"int8"`), on the CPU only.
    Int8,
}

impl Precision {
    /// Every precision, in the order the faces offer them (the default first).
    pub const ALL: [Precision; 3] = [Precision::Auto, Precision::Fp32, Precision::Int8];

    /// The precision's name as the faces and manifests write it: `auto`, `fp32` or `int8`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }

    /// Parses a precision's name (case-insensitive).
    pub fn parse(s: &str) -> Result<Self> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown precision {s:?}: use auto (default), fp32 (exact) or int8"
                ))
            })
    }

    /// The precision's number in the C API and the Java and Python shims: its position in
    /// [`Precision::ALL`] (0 auto, 1 fp32, 2 int8).
    pub fn code(self) -> i32 {
        Precision::ALL.iter().position(|&p| p == self).unwrap_or(0) as i32
    }

    /// The precision of a number given by the C API or the Java and Python shims (see
    /// [`Precision::code`]); other values are an error naming `what`.
    pub fn from_code(code: i64, what: &str) -> Result<Self> {
        usize::try_from(code)
            .ok()
            .and_then(|i| Precision::ALL.get(i).copied())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{what} is {code}: use 0 (auto, the default), 1 (fp32) or 2 (int8)"
                ))
            })
    }

    /// The package's variant of this precision (`None` for float32 and auto).
    pub fn variant(self, manifest: &Manifest) -> Option<&Variant> {
        match self {
            Precision::Int8 => manifest.variants.iter().find(|v| v.precision == "int8"),
            Precision::Auto | Precision::Fp32 => None,
        }
    }

    /// Whether [`Precision::Auto`] may take this variant: its validated AP@0.5 is within
    /// [`AUTO_MAX_AP_LOSS`] of float32's.
    pub fn validated(variant: &Variant) -> bool {
        variant
            .validation
            .as_ref()
            .is_some_and(|v| v.ap50.is_finite() && v.ap50 >= v.ap50_fp32 - AUTO_MAX_AP_LOSS)
    }

    /// The concrete precision a segmentation runs at: [`Precision::Fp32`] or
    /// [`Precision::Int8`]. `int8_loaded` says whether the model has an int8 session (a
    /// variant in its package, a CPU device); asking for int8 without one is an error naming
    /// the model.
    pub fn resolve(
        self,
        tiling: Tiling,
        manifest: &Manifest,
        int8_loaded: bool,
        device: &str,
    ) -> Result<Precision> {
        match self {
            Precision::Fp32 => Ok(Precision::Fp32),
            Precision::Int8 if int8_loaded => Ok(Precision::Int8),
            Precision::Int8 => Err(Error::invalid(match Precision::Int8.variant(manifest) {
                None => format!(
                    "model {} has no int8 variant (its manifest lists none; scripts/quantize_model.py makes one): use precision fp32 or auto",
                    manifest.name
                ),
                Some(_) => format!(
                    "the int8 variant of model {} runs on the CPU only, and this model runs on {device}: load it with device cpu, or use precision fp32 or auto",
                    manifest.name
                ),
            })),
            Precision::Auto => Ok(
                match (tiling, Precision::Int8.variant(manifest), int8_loaded) {
                    (Tiling::Fast, Some(v), true) if Precision::validated(v) => Precision::Int8,
                    _ => Precision::Fp32,
                },
            ),
        }
    }
}

/// The parameters Cellpose's do_3D runs with: [`Precision::Auto`] there means float32, as the
/// int8 variants are validated on 2-D images only (their YX, ZY and ZX planes are another
/// input); int8 asked for by name stays int8.
pub fn do3d_params(params: &SegmentParams) -> Cow<'_, SegmentParams> {
    if params.precision == Precision::Auto {
        Cow::Owned(SegmentParams {
            precision: Precision::Fp32,
            ..params.clone()
        })
    } else {
        Cow::Borrowed(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(variant: Option<(f64, f64)>) -> Manifest {
        let mut j: serde_json::Value =
            serde_json::from_str(include_str!("../../../../models/nuclei/manifest.json")).unwrap();
        let o = j.as_object_mut().unwrap();
        o.remove("variants");
        if let Some((ap50, ap50_fp32)) = variant {
            o.insert(
                "variants".into(),
                serde_json::json!([{"precision": "int8", "file": "model.int8.onnx",
                    "sha256": "00".repeat(32),
                    "validation": {"ap50": ap50, "ap50_fp32": ap50_fp32}}]),
            );
        }
        serde_json::from_value(j).unwrap()
    }

    #[test]
    fn do3d_turns_auto_into_fp32_only() {
        let mut p = SegmentParams {
            diameter: None,
            channels: Default::default(),
            mask: crate::flows::MaskParams::default(),
            tiling: Tiling::Fast,
            tile_size: None,
            tile_overlap: None,
            batch_size: 8,
            keep_flows: false,
            precision: Precision::Auto,
        };
        assert_eq!(do3d_params(&p).precision, Precision::Fp32);
        p.precision = Precision::Int8;
        assert_eq!(do3d_params(&p).precision, Precision::Int8);
        p.precision = Precision::Fp32;
        assert_eq!(do3d_params(&p).precision, Precision::Fp32);
    }

    #[test]
    fn names_and_codes_round_trip() {
        for p in Precision::ALL {
            assert_eq!(Precision::parse(p.name()).unwrap(), p);
            assert_eq!(Precision::from_code(p.code() as i64, "p").unwrap(), p);
        }
        assert!(Precision::parse("fp16").is_err());
        assert!(Precision::from_code(3, "p").is_err());
        assert!(Precision::from_code(-1, "p").is_err());
    }

    #[test]
    fn auto_takes_int8_only_when_validated_loaded_and_fast() {
        let good = manifest(Some((0.853, 0.856)));
        let bad = manifest(Some((0.847, 0.856)));
        let none = manifest(None);
        let r = |p: Precision, t, m: &Manifest, loaded| p.resolve(t, m, loaded, "cpu");
        assert_eq!(
            r(Precision::Auto, Tiling::Fast, &good, true).unwrap(),
            Precision::Int8
        );
        // the exact mode, a variant that lost too much, no variant, no int8 session: fp32
        assert_eq!(
            r(Precision::Auto, Tiling::Cellpose, &good, true).unwrap(),
            Precision::Fp32
        );
        assert_eq!(
            r(Precision::Auto, Tiling::Fast, &bad, true).unwrap(),
            Precision::Fp32
        );
        assert_eq!(
            r(Precision::Auto, Tiling::Fast, &none, false).unwrap(),
            Precision::Fp32
        );
        assert_eq!(
            r(Precision::Auto, Tiling::Fast, &good, false).unwrap(),
            Precision::Fp32
        );
        // asked for by name: int8 even where auto would not take it, an error without one
        assert_eq!(
            r(Precision::Int8, Tiling::Cellpose, &bad, true).unwrap(),
            Precision::Int8
        );
        let e = r(Precision::Int8, Tiling::Fast, &none, false).unwrap_err();
        assert!(e.to_string().contains("has no int8 variant"), "{e}");
        let e = Precision::Int8
            .resolve(Tiling::Fast, &good, false, "cuda")
            .unwrap_err();
        assert!(e.to_string().contains("CPU only"), "{e}");
        assert_eq!(
            r(Precision::Fp32, Tiling::Fast, &good, true).unwrap(),
            Precision::Fp32
        );
    }
}
