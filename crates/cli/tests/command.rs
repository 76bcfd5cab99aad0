//! The `cytoseg` executable starts, reports its version and refuses bad arguments with exit
//! status 2. (The command line's behaviour is tested end to end in the repository's `tests/`,
//! which run this binary; having an integration test here makes `cargo test` build it first.)

use std::process::Command;

#[test]
fn version_and_bad_arguments() {
    let exe = env!("CARGO_BIN_EXE_cytoseg");
    let o = Command::new(exe).arg("--version").output().unwrap();
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("cytoseg {}", cytoseg_core::VERSION)
    );
    let o = Command::new(exe)
        .args(["segment", "--no-such-option"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--no-such-option"));
}
