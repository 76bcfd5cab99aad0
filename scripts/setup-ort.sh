#!/usr/bin/env bash
# Installs ONNX Runtime (CPU, from PyPI) into ./.venv, where cytoseg's tests and scripts find it:
# onnxruntime 1.31.1 and its dependencies at the exact versions of scripts/requirements-ort.txt.
# cytoseg itself looks in: --ort-lib, ORT_DYLIB_PATH, next to the library/executable, then the
# onnxruntime package of the python3 on PATH.
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
ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1* | head -n 1
