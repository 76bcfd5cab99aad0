//! PNG and JPEG (the format is guessed from the content): images, PNG labels, size estimate.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::scratch(data, "png");
    let _ = cytoseg::core::io::image::read_stack(&path);
    let _ = cytoseg::core::io::labels::read_labels(&path);
    let _ = cytoseg::core::io::image::decoded_size_hint(&path);
});
