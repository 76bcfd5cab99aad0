#!/usr/bin/env bash
# Builds the C tests against the cdylib and runs them (under valgrind when available).
# Usage: tests/c/run.sh [target/release]     (the folder holding libcytoseg.so)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
libdir=$(cd "${1:-$root/target/release}" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
flags=(-Wall -Wextra -Werror -pedantic -I "$root/include")

echo "== header compiles alone: C11 and C++17"
gcc -std=c11 "${flags[@]}" -c "$here/header_alone.c" -o "$out/h.o"
cp "$here/header_alone.c" "$out/header_alone.cpp"
g++ -std=c++17 "${flags[@]}" -c "$out/header_alone.cpp" -o "$out/hpp.o"

echo "== C API tests"
gcc -std=c11 "${flags[@]}" -g "$here/test_api.c" -o "$out/test_api" \
    -L "$libdir" -lcytoseg -lpthread -lm -Wl,-rpath,"$libdir"
"$out/test_api"
if command -v valgrind >/dev/null; then
    echo "== C API tests under valgrind (errors and leaks are failures)"
    RAYON_NUM_THREADS=2 valgrind --quiet --error-exitcode=1 --leak-check=full --suppressions="$here/valgrind.supp" \
        --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible \
        "$out/test_api"
else
    echo "valgrind not installed: memory check skipped"
fi
passed=1
echo "== C measurement tests"
gcc -std=c11 "${flags[@]}" -g "$here/test_measure.c" -o "$out/test_measure" \
    -L "$libdir" -lcytoseg -lpthread -lm -Wl,-rpath,"$libdir"
"$out/test_measure"
if command -v valgrind >/dev/null; then
    echo "== C measurement tests under valgrind (errors and leaks are failures)"
    RAYON_NUM_THREADS=2 valgrind --quiet --error-exitcode=1 --leak-check=full --suppressions="$here/valgrind.supp" \
        --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible \
        "$out/test_measure"
fi
passed=$((passed + 1))
# Model tests need ONNX Runtime: $ORT_DYLIB_PATH or the repository's .venv (pip install onnxruntime).
ort="${ORT_DYLIB_PATH:-}"
if [ -z "$ort" ]; then
    ort=$(ls "$root"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1* 2>/dev/null | head -n 1 || true)
fi
if [ -n "$ort" ] && [ -f "$ort" ]; then
    echo "== C model tests (ONNX Runtime: $ort)"
    gcc -std=c11 "${flags[@]}" -g "$here/test_model.c" -o "$out/test_model" \
        -L "$libdir" -lcytoseg -lpthread -lm -Wl,-rpath,"$libdir"
    model="$root/tests/fixtures/models/blobs"
    "$out/test_model" "$model" "$ort"
    if command -v valgrind >/dev/null; then
        echo "== C model tests under valgrind (errors in cytoseg; ONNX Runtime's own allocations are suppressed)"
        RAYON_NUM_THREADS=2 valgrind --quiet --error-exitcode=1 --leak-check=full \
            --suppressions="$here/valgrind.supp" --show-leak-kinds=definite,indirect \
            --errors-for-leak-kinds=definite,indirect "$out/test_model" "$model" "$ort"
    fi
    passed=$((passed + 1))
else
    echo "SKIPPED C model tests: no ONNX Runtime (set ORT_DYLIB_PATH or pip install onnxruntime into .venv)"
fi
echo "C tests: $passed passed, 0 failed"
