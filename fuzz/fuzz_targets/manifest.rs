//! Model package manifests (`manifest.json`): parsing and the checks that follow it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz/manifest.json");
    if let Ok(m) = cytoseg::core::model::manifest::Manifest::parse(path, data) {
        let _ = m.onnx_path(std::path::Path::new("pkg"));
    }
});
