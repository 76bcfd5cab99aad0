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
