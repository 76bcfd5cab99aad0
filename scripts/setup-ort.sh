#!/usr/bin/env bash
# Installs ONNX Runtime (CPU, from PyPI) into ./.venv, where cytoseg's tests and scripts find it:
# onnxruntime 1.31.1 and its dependencies at the exact versions of scripts/requirements-ort.txt.
# Then puts a copy beside the cytoseg binary and library (target/release/libonnxruntime.so), where
# the command line and the C API look first after --ort-lib/ORT_DYLIB_PATH, so every README
# command works without setting anything (CARGO_TARGET_DIR is honoured).
# Prints the path of the library in .venv as its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1* >/dev/null 2>&1; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    # exact versions of everything (scripts/requirements-ort.txt), nothing resolved beyond it
    python3 scripts/check_pins.py scripts/requirements-ort.txt >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check --only-binary :all: --no-deps \
        -r scripts/requirements-ort.txt >&2
    .venv/bin/python -m pip check >&2
fi
lib=$(ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1* | head -n 1)
target=${CARGO_TARGET_DIR:-target}/release
mkdir -p "$target"
if ! cmp -s "$lib" "$target/libonnxruntime.so"; then
    # the versioned name keeps `cytoseg models --providers` and run.json reporting the version
    cp "$lib" "$target/$(basename "$lib").tmp" && mv "$target/$(basename "$lib").tmp" "$target/$(basename "$lib")"
    ln -sf "$(basename "$lib")" "$target/libonnxruntime.so"
fi
echo "$lib"
