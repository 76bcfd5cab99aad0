#!/usr/bin/env bash
# Tests of the Python package and the napari plugin in a clean virtual environment:
# builds libcytoseg (cargo), pip-installs bindings/python with napari 0.9 (PyQt6), pytest,
# pytest-qt and dask into bindings/python/.venv-ci, then runs bindings/python/tests under
# Xvfb (the napari tests need a display; without Xvfb or $DISPLAY they are skipped).
#   CYTOSEG_CI_FRESH=1  recreate the venv first (CI machines start without one anyway)
#   CYTOSEG_CI_PYTHON   the interpreter to build the venv with (default python3)
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)
repo=$(cd ../.. && pwd)
venv="$here/.venv-ci"
py=${CYTOSEG_CI_PYTHON:-python3}

echo "== cargo build --release (libcytoseg and the reference CLI)"
(cd "$repo" && cargo build --release --locked)

if [ "${CYTOSEG_CI_FRESH:-0}" = 1 ]; then rm -rf "$venv"; fi
if [ ! -x "$venv/bin/python" ]; then
    echo "== new venv $venv"
    "$py" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
echo "== pip install napari[pyqt6] 0.9, pytest, pytest-qt, dask"
"${pip[@]}" "napari[pyqt6]==0.9.*" "pytest>=8" "pytest-qt>=4" "dask[array]" distributed tifffile pandas
echo "== pip wheel bindings/python, then install it (and numpy, onnxruntime)"
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
CYTOSEG_SKIP_CARGO=1 "$venv/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps -w "$wheels" "$here"
"${pip[@]}" --force-reinstall --no-deps "$wheels"/cytoseg-*.whl
"${pip[@]}" "$wheels"/cytoseg-*.whl

cd "$here"
export CYTOSEG_CLI="$repo/target/release/cytoseg"
pytest=("$venv/bin/python" -m pytest -q -p no:cacheprovider --disable-warnings tests)
if [ -n "${DISPLAY:-}" ]; then
    timeout 900 "${pytest[@]}"
elif command -v xvfb-run >/dev/null; then
    timeout 900 xvfb-run -a -s "-screen 0 1280x1024x24" "${pytest[@]}"
else
    echo "xvfb-run not found and no DISPLAY: the napari tests are skipped (apt-get install xvfb xauth)"
    timeout 900 "${pytest[@]}" --ignore tests/test_napari.py
fi
