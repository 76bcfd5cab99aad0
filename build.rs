//! Generates `include/cytoseg.h` (C API) with cbindgen, including version macros from Cargo.toml.
//! The header is committed; CI regenerates it and fails when it differs.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=Cargo.toml");
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let env = |k: &str| std::env::var(k).expect(k);
    let (major, minor, patch) = (
        env("CARGO_PKG_VERSION_MAJOR"),
        env("CARGO_PKG_VERSION_MINOR"),
        env("CARGO_PKG_VERSION_PATCH"),
    );
    let number: u64 = major.parse::<u64>().unwrap() * 1_000_000
        + minor.parse::<u64>().unwrap() * 1_000
        + patch.parse::<u64>().unwrap();
    let mut config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    config.after_includes = Some(format!(
        "\n/** Version of this header: major, minor, patch, string and `major*1000000 + minor*1000 + patch`. */\n\
         #define CYTOSEG_VERSION_MAJOR {major}\n\
         #define CYTOSEG_VERSION_MINOR {minor}\n\
         #define CYTOSEG_VERSION_PATCH {patch}\n\
         #define CYTOSEG_VERSION_STRING \"{}\"\n\
         #define CYTOSEG_VERSION_NUMBER {number}\n",
        env("CARGO_PKG_VERSION")
    ));
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
        .expect("cbindgen failed to generate include/cytoseg.h")
        .write(&mut out);
    let path = dir.join("include").join("cytoseg.h");
    if std::fs::read(&path).ok().as_deref() != Some(&out[..]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &out).expect("write include/cytoseg.h");
    }
}
