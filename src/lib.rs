//! # cytoseg
//!
//! A native engine for AI segmentation of microscopy images: this crate is its C ABI (header
//! `include/cytoseg.h`, built as `libcytoseg`) and, with the default feature `jni`, its Java
//! entry points (`org.cytoseg.Native`, for the Fiji/ImageJ plugin).
//!
//! * [`core`] (crate `cytoseg-core`) is the safe engine: flows → instance labels exactly as
//!   Cellpose 4 computes them, labels → flows, segmentation metrics, measurements, image I/O,
//!   inference and the batch engine. It contains no `unsafe` and depends on no host crate.
//! * [`host`] (crate `cytoseg-host`) says where each face looks for ONNX Runtime and models.
//! * `ffi` (C ABI) and `jni` (Java) are thin adapters over the core that only convert
//!   arguments and results. The command line is the crate `cytoseg-cli`.
#![deny(missing_docs)]

pub use cytoseg_core as core;
pub use cytoseg_host as host;

pub mod ffi;
/// cbindgen:ignore
#[cfg(feature = "jni")]
pub mod jni;

pub use cytoseg_core::{Error, Result};

/// Version of the engine, from `Cargo.toml`.
pub const VERSION: &str = cytoseg_core::VERSION;
