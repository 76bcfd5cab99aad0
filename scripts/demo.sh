#!/usr/bin/env bash
# The main job on a fresh clone: builds cytoseg and turns a bundled Cellpose-style network output
# (flows + cell probabilities of real DSB2018 nuclei) into instance labels, written to demo-out/.
# (Segmenting the bundled example image with the bundled model arrives with the inference and
# default-model issues; this script will then run `cytoseg segment` on it.)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
out=demo-out
mkdir -p "$out"
# A .npz is a zip of .npy files.
case=tests/fixtures/flows/dsb_dad607a2_76_77_v0.npz
python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2], ['dp.npy', 'cellprob.npy'])" "$case" "$out"
./target/release/cytoseg -v masks --dp "$out/dp.npy" --cellprob "$out/cellprob.npy" \
    --out "$out/labels.tif" --overwrite
echo "labels written to $out/labels.tif (open in Fiji or napari)"
