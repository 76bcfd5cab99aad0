#!/usr/bin/env bash
# Rebuilds models/cells-phase from a clean checkout with cytoseg's own trainer (CPU, no Python
# in the training itself): the nuclei network fine-tuned on 25 Usiigaci phase-contrast fields,
# validated on the 5 held back. About 30 min on a 2-core machine (3000 steps, 0.6 s each).
#   PYTHON=/path/to/python-with-numpy-and-tifffile bash models/cells-phase/train/recipe.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/../../.." && pwd)"
exec bash "$repo/scripts/train_package.sh" cells-phase \
    "${DATA:-$repo/../shared/data/usiigaci-phase/train.npz}" "25,26,27,28,29" \
    --train-diameter 30 --steps 3000 --seed 0 --version 1.0.0
