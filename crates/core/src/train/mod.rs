//! Native fine-tuning of `cellpose-flows` models: the network of a model package's ONNX graph
//! trained in Rust (forward and backward passes, AdamW), the trained weights written back into
//! a copy of the parent's graph, so inference stays on ONNX Runtime.

pub mod conv;
pub mod data;
pub mod net;
pub mod onnx;
pub mod ops;
pub mod optim;
pub mod report;
pub mod rng;
pub mod trainer;
pub use trainer::{TrainOptions, TrainProgress, TrainReport, train};
