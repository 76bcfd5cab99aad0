#!/usr/bin/env bash
# Trains a bundled model package with cytoseg's own trainer, from a clean checkout:
#   1. the shared data set (npz) -> image/label TIFF folders, train and held-back split
#      (scripts/npz_to_folders.py; needs numpy + tifffile);
#   2. `cytoseg train` (the native trainer, CPU) from the parent, with the recipe's options;
#   3. scripts/calibrate_masks.py chooses the flows → masks thresholds on the TRAINING images
#      (best AP@0.5 over a small grid, as StarDist optimises its thresholds) into the manifest;
#   4. `cytoseg validate` of the clone on the held-back split (AP at IoU 0.5/0.75/0.9);
#   5. scripts/package_model.py writes models/NAME/{model.onnx,manifest.json,train/loss.*};
#   6. scripts/quantize_model.py adds the int8 variant (model.int8.onnx, calibrated on the
#      training images, validated on the held-back split; QUANTIZE_ARGS adds options, e.g.
#      --crops), when PYTHON has onnx and onnxruntime, else says it skipped that step.
# Usage: scripts/train_package.sh NAME NPZ VAL_INDICES [cytoseg train options...]
# Called by models/NAME/train/recipe.sh. Environment: WORK (default: a new temporary folder;
# the data copies and the clone stay there), PYTHON (default python3), CYTOSEG (default
# target/release/cytoseg, built when missing).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
name=$1 npz=$2 val=$3
shift 3
py=${PYTHON:-python3}
exe=${CYTOSEG:-$repo/target/release/cytoseg}
work=${WORK:-$(mktemp -d)}
[ -f "$npz" ] || { echo "train_package.sh: $npz is missing (the shared data set)" >&2; exit 2; }
"$py" -c "import numpy, tifffile" 2>/dev/null \
    || { echo "train_package.sh: $py lacks numpy/tifffile (PYTHON=...)" >&2; exit 2; }
if [ ! -x "$exe" ]; then (cd "$repo" && cargo build --release --locked); fi
echo "== data: $npz -> $work/data (validation indices $val)"
"$py" "$repo/scripts/npz_to_folders.py" "$npz" "$work/data" --val "$val" --overwrite
echo "== cytoseg train $name $*"
rm -rf "$work/clone"
"$exe" train --from "$repo/models/nuclei" --images "$work/data/train/images" \
    --labels "$work/data/train/labels" --val-images "$work/data/val/images" \
    --val-labels "$work/data/val/labels" --out "$work/clone" "$@"
echo "== thresholds chosen on the training images"
"$py" "$repo/scripts/calibrate_masks.py" --clone "$work/clone" --images "$work/data/train/images" \
    --truth "$work/data/train/labels" --work "$work/calib" --cytoseg "$exe"
echo "== cytoseg validate on the held-back split"
rm -rf "$work/val"
"$exe" validate --model "$work/clone" --images "$work/data/val/images" \
    --truth "$work/data/val/labels" --out "$work/val" --min-ap 0 --device cpu
echo "== package models/$name"
"$py" "$repo/scripts/package_model.py" --trained "$work/clone" \
    --meta "$repo/models/$name/train/meta.json" --validation "$work/val/validation.json" \
    --data-root "$work/data" --out "$repo/models/$name"
if "$py" -c "import onnx, onnxruntime.quantization, cv2" 2>/dev/null; then
    echo "== int8 variant of models/$name"
    # shellcheck disable=SC2086
    "$py" "$repo/scripts/quantize_model.py" "$repo/models/$name" ${QUANTIZE_ARGS:-} \
        --calibration "$work/data/train/images" --val-images "$work/data/val/images" \
        --val-labels "$work/data/val/labels" --cytoseg "$exe" \
        --split "the held-back split of models/$name/train/recipe.sh, never trained on"
else
    echo "== int8 variant skipped: $py lacks onnx/onnxruntime/opencv (models/nuclei/train/requirements.txt)"
fi
