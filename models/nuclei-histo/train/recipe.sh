#!/usr/bin/env bash
# Rebuilds models/nuclei-histo from a clean checkout with cytoseg's own trainer (CPU, no Python
# in the training itself): the nuclei network widened to 3 input channels (RGB) and fine-tuned
# on 47 DSB2018 histology/brightfield images, validated on the 6 held back. About 60-90 min on a
# 2-core machine (5000 steps at 30 px, 0.7-1.2 s each, plus threshold calibration).
#   PYTHON=/path/to/python-with-numpy-and-tifffile bash models/nuclei-histo/train/recipe.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/../../.." && pwd)"
QUANTIZE_ARGS=--crops exec bash "$repo/scripts/train_package.sh" nuclei-histo \
    "${DATA:-$repo/../shared/data/dsb2018-nonfluo/train.npz}" "4,14,24,34,44,52" \
    --channels 3 --train-diameter 30 --steps 5000 --seed 0 --version 1.1.0
