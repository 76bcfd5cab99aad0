#!/usr/bin/env bash
# Runs every check and test of cytoseg: pins, formatting, lints, the committed C header, Rust
# unit, parity and CLI tests, labels on a pre-AVX CPU (qemu), the C API tests (under valgrind),
# the Fiji plugin, the Python package and napari plugin, and a short fuzzing run of every
# reader and C entry point (fuzz/run.sh; CYTOSEG_FUZZ_SECONDS per target, default 10, 0 skips).
# Parity tests that need the reference tools (cellpose, stardist) run live when a Python with
# them is found (CYTOSEG_PYTHON or ./.venv) and say that they skipped otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== system packages (apt, only what is missing)"
bash scripts/setup-system.sh
echo "== Python pin files: every line name==version; the files sharing ./.venv agree"
python3 scripts/check_pins.py bindings/python/requirements-ci.txt --top bindings/python/requirements-ci.in
python3 scripts/check_pins.py scripts/requirements-ort.txt models/nuclei/train/constraints.txt \
    --top models/nuclei/train/requirements.txt --top tests/parity/requirements.txt
echo "== ONNX Runtime for the inference tests (PyPI, into ./.venv)"
bash scripts/setup-ort.sh || echo "ONNX Runtime could not be installed: inference tests will say they skipped"
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --release --all-targets --locked -- -D warnings
echo "== build (regenerates include/cytoseg.h)"
cargo build --release --locked
if git rev-parse --git-dir >/dev/null 2>&1; then
    if ! git diff --exit-code -- include/cytoseg.h; then
        echo "include/cytoseg.h differs from the generated header: commit the regenerated file" >&2
        exit 1
    fi
fi
echo "== cargo test"
cargo test --release --locked
echo "== every x86-64 CPU: labels under qemu -cpu Nehalem (no AVX/FMA) equal the native run's"
bash tests/cpu/baseline_cpu.sh target/release/cytoseg
echo "== C API tests"
bash tests/c/run.sh target/release
echo "== Fiji/ImageJ plugin (JNI; Maven offline, JUnit and a real ImageJ 1 under Xvfb)"
bash bindings/java/ci.sh
echo "== Python package and napari plugin (clean venv bindings/python/.venv-ci, Xvfb)"
bash bindings/python/ci.sh
fuzz_secs=${CYTOSEG_FUZZ_SECONDS:-10}
if [ "$fuzz_secs" -gt 0 ]; then
    echo "== fuzz: every target for ${fuzz_secs} s from the committed seeds (longer runs: README)"
    bash fuzz/run.sh "$fuzz_secs"
else
    echo "== fuzz: skipped (CYTOSEG_FUZZ_SECONDS=0)"
fi
echo "== all checks passed"
