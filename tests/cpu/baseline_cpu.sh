#!/usr/bin/env bash
# cytoseg runs on every x86-64 CPU and gives the same labels on each: runs `cytoseg masks` on the
# committed Cellpose flow fixtures natively (AVX2+FMA path where the CPU has it) and under
# `qemu-x86_64 -cpu Nehalem` (2008: SSE4.2, no AVX/FMA, so the baseline path), and requires
# byte-identical label files; also with CYTOSEG_SIMD=baseline natively.
# Usage: tests/cpu/baseline_cpu.sh [target/release/cytoseg]   (needs qemu-user: apt-get install qemu-user)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$(realpath "${1:-$root/target/release/cytoseg}")
if ! command -v qemu-x86_64 >/dev/null; then
    echo "SKIPPED: qemu-x86_64 not installed (apt-get install qemu-user)"; exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
for npz in "$root"/tests/fixtures/flows/dsb_*_v1.npz "$root"/tests/fixtures/flows/border_objects_v1.npz; do
    name=$(basename "$npz" .npz)
    mkdir -p "$work/$name"
    (cd "$work/$name" && unzip -q -o "$npz" dp.npy cellprob.npy)
    args=(masks --dp "$work/$name/dp.npy" --cellprob "$work/$name/cellprob.npy" --overwrite)
    "$bin" -v "${args[@]}" --out "$work/$name/native.npy" 2>"$work/$name/native.log"
    CYTOSEG_SIMD=baseline "$bin" -v "${args[@]}" --out "$work/$name/forced.npy" 2>"$work/$name/forced.log"
    qemu-x86_64 -cpu Nehalem "$bin" -v "${args[@]}" --out "$work/$name/nehalem.npy" 2>"$work/$name/nehalem.log"
    grep -q "instruction set: baseline" "$work/$name/nehalem.log" \
        || { cat "$work/$name/nehalem.log"; echo "FAILED $name: the Nehalem run did not use the baseline path" >&2; exit 1; }
    grep -q "instruction set: baseline" "$work/$name/forced.log" \
        || { echo "FAILED $name: CYTOSEG_SIMD=baseline was not honoured" >&2; exit 1; }
    cmp "$work/$name/native.npy" "$work/$name/nehalem.npy" \
        || { echo "FAILED $name: labels differ between the native and the Nehalem run" >&2; exit 1; }
    cmp "$work/$name/native.npy" "$work/$name/forced.npy" \
        || { echo "FAILED $name: labels differ between the native and the forced-baseline run" >&2; exit 1; }
    echo "ok $name: identical labels; native run on $(sed -n 's/.*(instruction set: \(.*\))$/\1/p' "$work/$name/native.log"), Nehalem run on the baseline"
    passed=$((passed + 1))
done
echo "baseline CPU: $passed passed, 0 failed"
