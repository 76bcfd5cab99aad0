//! `.npy` through the image, label and float32 (flows) readers.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::scratch(data, "npy");
    let _ = cytoseg::core::io::npy::check_header(&path);
    let _ = cytoseg::core::io::image::read_stack(&path);
    let _ = cytoseg::core::io::labels::read_labels(&path);
    let _ = cytoseg::core::io::npy::read_f32(&path, &[None, None, None]);
});
