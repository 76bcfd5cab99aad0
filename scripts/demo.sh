#!/usr/bin/env bash
# The main job on a fresh clone: build cytoseg, fetch ONNX Runtime (CPU, from PyPI, into .venv),
# and segment the bundled example image with the bundled nuclei model.
# Output: demo-out/nuclei_example_labels.tif (16-bit labels; open in Fiji or napari), the
# per-object measurements nuclei_example_objects.csv, summary.csv and run.json.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
ORT_DYLIB_PATH=$(bash scripts/setup-ort.sh | tail -n 1)
export ORT_DYLIB_PATH
./target/release/cytoseg -v segment models/examples/nuclei_example.tif --model nuclei \
    --out demo-out --overwrite
echo "labels: demo-out/nuclei_example_labels.tif; measurements: demo-out/nuclei_example_objects.csv; run: demo-out/summary.csv, demo-out/run.json"
