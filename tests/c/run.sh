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
echo "C tests: 1 passed, 0 failed"
