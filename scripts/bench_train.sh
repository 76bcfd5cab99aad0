#!/usr/bin/env bash
# Seconds per training step, batch 8 x 128^2 crops: cytoseg's native trainer against the PyTorch
# recipe (models/nuclei/train), on this machine, in the same run, alternating A/B rounds, with
# the same thread count (2 by default). Prints a table: median s/step of each, the ratio
# cytoseg / PyTorch (median over rounds of the per-round ratio), and peak resident memory.
#
#   scripts/bench_train.sh [rounds=3] [steps-per-round=8] [threads=2]
#
# Needs: cargo; Python with torch (models/nuclei/train/requirements.txt; PYTHON=... or ./.venv).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
steps=${2:-8}
threads=${3:-2}
py=${PYTHON:-.venv/bin/python}
if ! "$py" -c "import torch" 2>/dev/null; then
    echo "bench_train.sh: $py cannot import torch: PYTHON=/path/to/python with models/nuclei/train/requirements.txt" >&2
    exit 2
fi
cargo build --release -q -p cytoseg-core --example train_step_bench
bench=target/release/examples/train_step_bench
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for r in $(seq 1 "$rounds"); do
    RAYON_NUM_THREADS=$threads "$bench" models/nuclei/model.onnx "$steps" 8 128 >"$out/rust_$r.json"
    OMP_NUM_THREADS=$threads "$py" models/nuclei/train/bench_step.py "$steps" 8 128 "$threads" >"$out/torch_$r.json"
    echo "round $r: cytoseg $(grep -o '"median_s": [0-9.]*' "$out/rust_$r.json" | cut -d' ' -f2) s/step," \
        "PyTorch $(grep -o '"median_s": [0-9.]*' "$out/torch_$r.json" | cut -d' ' -f2) s/step" >&2
done
"$py" - "$out" "$rounds" <<'PY'
import json, statistics, sys, platform
out, rounds = sys.argv[1], int(sys.argv[2])
rs = [json.load(open(f"{out}/rust_{r}.json")) for r in range(1, rounds + 1)]
ts = [json.load(open(f"{out}/torch_{r}.json")) for r in range(1, rounds + 1)]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
ratio = statistics.median(a["median_s"] / b["median_s"] for a, b in zip(rs, ts))
print(f"training step, batch {rs[0]['batch']} x {rs[0]['crop']}^2, {rs[0]['threads']} threads, {rounds} rounds; {cpu}")
print(f"| implementation | median s/step | peak RSS (MiB) |")
print(f"|---|---:|---:|")
for name, runs in (("cytoseg (native, Rust)", rs), (ts[0]["impl"], ts)):
    print(f"| {name} | {statistics.median(r['median_s'] for r in runs):.3f} | {max(r['peak_rss_mib'] for r in runs):.0f} |")
print(f"ratio cytoseg / PyTorch (median of per-round ratios): {ratio:.2f}")
PY
