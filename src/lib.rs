//! # cytoseg
//!
//! A native engine for AI segmentation of microscopy images.
//!
//! * [`core`] is the safe engine: flows → instance labels exactly as Cellpose 4 computes them,
//!   labels → flows, segmentation metrics, measurements and image I/O. It contains no `unsafe`.
//! * `ffi` (C ABI, header `include/cytoseg.h`) and `jni` (Java entry points) are thin adapters
//!   over the core that only convert arguments and results.
//! * [`cli`] implements the `cytoseg` command-line tool.
//! * [`host`] is the hosts' policy: where each face looks for ONNX Runtime and models.
#![deny(missing_docs)]

pub mod cli;
pub mod core;
pub mod ffi;
pub mod host;
/// cbindgen:ignore
pub mod jni;

pub use crate::core::error::{Error, Result};

/// Version of the engine, from `Cargo.toml`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
