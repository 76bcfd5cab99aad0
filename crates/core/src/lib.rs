//! # cytoseg-core
//!
//! The engine of cytoseg, safe Rust with no `unsafe` code: flows → instance labels exactly as
//! Cellpose 4 computes them, labels → flows, segmentation metrics, measurements, image I/O,
//! models and inference through ONNX Runtime, and the batch engine.
//!
//! This crate knows nothing of its hosts: it depends on no command-line, terminal or JNI crate,
//! and looks for no library or model by itself (each host says where: the `cytoseg-host`
//! crate). The C ABI and JNI entry points (crate `cytoseg`) and the command line (crate
//! `cytoseg-cli`) are thin faces over it; the compiler keeps the dependencies one way.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod batch;
pub mod classify;
pub mod error;
pub mod flows;
pub mod image;
pub mod io;
pub mod measure;
pub mod metrics;
pub mod model;
pub mod qc;
pub mod report_util;
pub mod screen;
pub mod simd;
pub mod train;

pub use error::{Error, Result};

/// Version of the engine, from `Cargo.toml` (all crates of the workspace share it).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
