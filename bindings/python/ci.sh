#!/usr/bin/env bash
# Tests of the Python package and the napari plugin in a clean virtual environment:
# builds libcytoseg (cargo), installs the pinned set requirements-ci.txt (napari 0.9 with PyQt6,
# pytest, pytest-qt, dask/distributed, ...: every package, transitive ones included, `==`; top-level
# choices in requirements-ci.in) and the bindings/python wheel into bindings/python/.venv-ci,
# checks that the environment equals the pins, then runs bindings/python/tests under Xvfb (the
# napari tests need a display; without Xvfb or $DISPLAY they are skipped).
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
lock="$here/requirements-ci.txt"
check_pins=("$py" "$repo/scripts/check_pins.py")
echo "== pins: every line of requirements-ci.txt is name==version, and it holds requirements-ci.in"
"${check_pins[@]}" "$lock" --top "$here/requirements-ci.in"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
echo "== pip install -r requirements-ci.txt (exact versions, wheels only, no dependency resolution)"
# --no-deps: only what the file names is installed; `pip check` below proves it is complete.
# Packages of an older .venv-ci that the file no longer names make check_pins fail (FRESH=1 fixes).
"${pip[@]}" --only-binary :all: --no-deps -r "$lock"
echo "== pip wheel bindings/python (pinned setuptools, no build isolation), then install it"
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
CYTOSEG_SKIP_CARGO=1 "$venv/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps \
    --no-build-isolation -w "$wheels" "$here"
# its dependencies (numpy, onnxruntime) are in the pinned set: nothing is resolved or downloaded
"${pip[@]}" --force-reinstall --no-deps --no-index "$wheels"/cytoseg-*.whl
echo "== pip check, and the installed set equals requirements-ci.txt (besides pip and cytoseg)"
"$venv/bin/python" -m pip check
if ! "${check_pins[@]}" "$lock" --python "$venv/bin/python" --allow cytoseg; then
    echo "ci.sh: $venv differs from requirements-ci.txt (left over from other pins?" \
         "CYTOSEG_CI_FRESH=1 recreates it)" >&2
    exit 1
fi

echo "== the binary wheel on a machine without Rust: a clean venv, no cargo on PATH, no ORT_DYLIB_PATH"
whl=$(ls "$wheels"/cytoseg-*.whl)
case "$(basename "$whl")" in
    *-py3-none-linux_x86_64.whl) ;;
    *) echo "ci.sh: $(basename "$whl") is not a platform-tagged py3-none-linux_x86_64 wheel" >&2; exit 1 ;;
esac
clean=$(mktemp -d)
"$py" -m venv "$clean/venv"
# numpy and onnxruntime (the wheel's dependencies) at the pinned versions, then the wheel itself
grep -E '^(numpy|onnxruntime|flatbuffers|packaging|protobuf)==' "$lock" > "$clean/deps.txt"
"$clean/venv/bin/python" -m pip install -q --disable-pip-version-check --only-binary :all: --no-deps -r "$clean/deps.txt"
"$clean/venv/bin/python" -m pip install -q --disable-pip-version-check --no-index --no-deps "$whl"
(cd "$clean" && env -u ORT_DYLIB_PATH -u CYTOSEG_LIBRARY PATH=/usr/bin:/bin "$clean/venv/bin/python" -c '
import shutil, cytoseg
assert shutil.which("cargo") is None, "cargo is on PATH"
import numpy as np
m = cytoseg.Model("nuclei", device="cpu")
img = np.zeros((64, 64), np.uint16); img[20:30, 20:30] = 1000; img[40:50, 35:47] = 800
labels = m.segment(img, diameter=12)
print("clean venv: cytoseg", cytoseg.__version__, "from", cytoseg.__file__, "found", int(labels.max()), "objects with", m.info["onnxruntime_library"])
assert labels.max() >= 1
')
rm -rf "$clean"

cd "$here"
export CYTOSEG_CLI="$repo/target/release/cytoseg"
pytest=("$venv/bin/python" -m pytest -q -p no:cacheprovider --disable-warnings tests)
if [ -n "${DISPLAY:-}" ]; then
    timeout 900 "${pytest[@]}"
elif command -v xvfb-run >/dev/null; then
    timeout 900 xvfb-run -a -s "-screen 0 1280x1024x24" "${pytest[@]}"
else
    echo "xvfb-run not found and no DISPLAY: the napari tests are skipped (apt-get install xvfb xauth)"
    timeout 900 "${pytest[@]}" --ignore tests/test_napari.py --ignore tests/test_napari_train.py
fi
