#!/usr/bin/env bash
# Builds every fuzz target of cytoseg and runs each for N seconds (default 20), one after the
# other with one libFuzzer job, starting from the committed seeds (fuzz/seeds/<target>) and the
# corpus grown by earlier runs (fuzz/corpus/<target>, not committed).
#
#   fuzz/run.sh [seconds-per-target] [target ...]
#
# Works on a fresh machine: uses the nightly toolchain if present (else stable with
# RUSTC_BOOTSTRAP=1) and installs cargo-fuzz from crates.io when missing. Prints one line per
# target (executions, crashes, where the crashing input went) and
# exits non-zero when any target found a crash. Reproduce a crash with
#   cd fuzz && cargo +nightly fuzz run -O <target> artifacts/<target>/<crash-file>
# Environment: FUZZ_NICE (default 15) is the niceness of the runs; FUZZ_ARGS adds libFuzzer
# options (e.g. FUZZ_ARGS=-runs=10000000 to stop at an execution count instead of a time);
# CYTOSEG_MAX_IMAGE_BYTES lowers the readers' per-file limit (default 64 MiB while fuzzing);
# FUZZ_SANITIZER=none builds without AddressSanitizer (default address): about twice the
# executions per second for long runs, still catching every panic, abort, allocation past the
# limits and timeout (the code under test is safe Rust; ASan matters for the unsafe FFI target).
set -uo pipefail

secs="${1:-20}"
shift || true
cd "$(dirname "$0")"

# cargo-fuzz needs nightly compiler flags (-Z sanitizer...). Use the nightly toolchain when the
# machine has one; else the stable one with RUSTC_BOOTSTRAP=1 (nothing to download: these
# machines cannot fetch another toolchain).
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=+nightly
else
    toolchain=+stable
    export RUSTC_BOOTSTRAP=1
    echo "fuzz/run.sh: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1"
fi
if ! cargo "$toolchain" fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked || exit 1
fi

if [ "$#" -gt 0 ]; then
    targets="$*"
else
    targets="$(cargo "$toolchain" fuzz list)"
fi
nice_level="${FUZZ_NICE:-15}"

sanitizer="${FUZZ_SANITIZER:-address}"
nice -n "$nice_level" cargo "$toolchain" fuzz build -O -s "$sanitizer" || exit 1

mkdir -p logs
failed=0
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(ls "artifacts/$t" | wc -l)
    start=$SECONDS
    # -rss_limit_mb/-malloc_limit_mb: libFuzzer's defaults (2 GB), stated: a reader that
    # allocates past them has let a header decide a size unchecked (the fuzz targets lower
    # cytoseg's own per-file limit to 64 MiB).
    # shellcheck disable=SC2086
    nice -n "$nice_level" cargo "$toolchain" fuzz run -O -s "$sanitizer" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 \
        -malloc_limit_mb=2048 -timeout=30 ${FUZZ_ARGS:-} >"logs/$t.log" 2>&1
    rc=$?
    elapsed=$((SECONDS - start))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | tail -1 | grep -o '[0-9]*$')
    if [ -z "$execs" ]; then
        execs=$(grep -oE '^#[0-9]+' "logs/$t.log" | tail -1 | tr -d '#')
    fi
    after=$(ls "artifacts/$t" | wc -l)
    crashes=$((after - before))
    if [ "$rc" -ne 0 ]; then
        failed=1
        echo "$t: FAILED (exit $rc) after ${execs:-?} executions in ${elapsed}s, $crashes new crash file(s) in fuzz/artifacts/$t; log: fuzz/logs/$t.log"
        grep -E 'SUMMARY|panicked|ERROR: libFuzzer|Test unit written' "logs/$t.log" | head -5
    else
        echo "$t: ${execs:-?} executions in ${elapsed}s, 0 crashes"
    fi
done
exit "$failed"
