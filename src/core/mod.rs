//! The safe core of cytoseg: no `unsafe` code anywhere below this module.
#![forbid(unsafe_code)]

pub mod batch;
pub mod error;
pub mod flows;
pub mod image;
pub mod io;
pub mod measure;
pub mod metrics;
pub mod model;
pub mod simd;
