#!/usr/bin/env bash
# Rebuilds the shipped `nuclei` model from a clean checkout: every training phase with the
# committed per-step learning rates (lr_traces/, so each phase follows the shipped schedule on any
# machine, at any speed), then ONNX export, validation (training scripts and the engine's own
# pipeline) and the manifest. Run from anywhere:
#
#   bash models/nuclei/train/recipe.sh          # full rebuild: replaces models/nuclei/model.onnx and
#                                               # manifest.json (git has the shipped ones) and the
#                                               # checkpoints .cache/ckpt_phase*.pt; the shipped
#                                               # phases took 6.8 h on a shared 2-core CPU
#   SMOKE=3 bash models/nuclei/train/recipe.sh  # checks the chain: 3 steps per phase, 2 validation
#                                               # images, package written to .cache/smoke/nuclei/
#                                               # (the shipped model is not touched); ~17 min with
#                                               # the venv set-up on a shared 2-core CPU
#
# Needs ../shared/data/dsb2018-fluo/train.npz (or CYTOSEG_DSB_NPZ), Python 3.11 and the Rust
# toolchain. Installs models/nuclei/train/requirements.txt into ./.venv (PYTHON overrides), every
# package, transitive ones included, at the exact version of constraints.txt.
# Environment: VERSION (manifest version, default 1.3.0), HARDWARE (manifest note), DEVICE
# (torch device, default cpu). The first phase also caches Cellpose flow targets (~6 min).
# Bit-identical weights need the same torch build and thread counts (1 thread in phases 1-2,
# 2 after); elsewhere the schedule and data order are the same and the result statistically so.
set -euo pipefail
cd "$(dirname "$0")/../../.."
T=models/nuclei/train
C=$T/.cache
L=$T/lr_traces
SMOKE=${SMOKE:-0}
VERSION=${VERSION:-1.3.0}
DEVICE=${DEVICE:-cpu}
HARDWARE=${HARDWARE:-"$(nproc)-core $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), torch $DEVICE"}

if [ -z "${PYTHON:-}" ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    PYTHON=.venv/bin/python
    if ! $PYTHON -c "import torch, cellpose, stardist, onnx, onnxruntime, tifffile" 2>/dev/null; then
        python3 scripts/check_pins.py $T/constraints.txt --top $T/requirements.txt
        $PYTHON -m pip install -q --disable-pip-version-check --only-binary :all: \
            -r $T/requirements.txt -c $T/constraints.txt
        $PYTHON -m pip check
    fi
fi
mkdir -p "$C"

stop=()
limit=()
PKGDIR=models/nuclei
if [ "$SMOKE" -gt 0 ]; then
    stop=(--stop-after "$SMOKE")
    limit=(--limit 2)
    PKGDIR=$C/smoke/nuclei   # the engine wants the folder named as the manifest's `name`
    C=$C/smoke
    mkdir -p "$PKGDIR"
    echo "== smoke run: $SMOKE steps per phase, package in $PKGDIR"
fi

train() { $PYTHON $T/train.py --device "$DEVICE" --hardware "$HARDWARE" "${stop[@]}" "$@"; }

echo "== phase 1: random init, lr 3e-3 (1,326 steps)"
train --replay-lr $L/phase1.json.gz --batch 8 --crop 128 --lr 3e-3 --warmup 100 --seed 0 \
      --threads 1 --out $C/ckpt_phase1.pt
echo "== phase 2: phase 1 continued, optimiser kept (to step 2,031)"
cp $C/ckpt_phase1.pt $C/ckpt_phase2.pt
train --resume --replay-lr $L/phase2.json.gz --batch 8 --crop 128 --lr 3e-3 --warmup 100 --seed 0 \
      --threads 1 --out $C/ckpt_phase2.pt
echo "== phase 3: phase 2 weights, fresh optimiser, lr 2e-3 (5,280 steps)"
train --init $C/ckpt_phase2.pt --replay-lr $L/phase3.json.gz --batch 8 --crop 128 --lr 2e-3 \
      --warmup 200 --seed 0 --threads 2 --out $C/ckpt_phase3.pt
echo "== phase 5: phase 3 weights, lr 1e-3, new seed (2,750 steps)"
train --init $C/ckpt_phase3.pt --replay-lr $L/phase5.json.gz --batch 8 --crop 128 --lr 1e-3 \
      --warmup 100 --seed 5 --threads 2 --out $C/ckpt_phase5.pt
echo "== phase 6: phase 5 weights, crops 192 px, batch 6, lr 1e-3, new seed"
train --init $C/ckpt_phase5.pt --replay-lr $L/phase6.json.gz --batch 6 --crop 192 --lr 1e-3 \
      --warmup 100 --seed 6 --threads 2 --out $C/ckpt_phase6.pt
CKPT=$C/ckpt_phase6.pt

echo "== export and check ONNX against torch"
$PYTHON $T/export.py --ckpt $CKPT --out $PKGDIR/model.onnx
echo "== training scripts' validation (full images, cellpose masks, stardist matching)"
$PYTHON $T/evaluate.py --onnx $PKGDIR/model.onnx "${limit[@]}" --out $C/val_metrics_onnx.json
$PYTHON $T/diameter.py
$PYTHON $T/manifest.py --ckpt $CKPT --package $PKGDIR --val-metrics $C/val_metrics_onnx.json \
        --version "$VERSION" >/dev/null

echo "== validation through cytoseg's own pipeline (the number that counts)"
cargo build --release --quiet
bash scripts/setup-ort.sh >/dev/null
V=$C/val
rm -rf "$V"
$PYTHON $T/val_tiffs.py "$V" "${limit[@]}"
export PATH="$PWD/.venv/bin:$PATH"   # cytoseg finds ONNX Runtime through python3's onnxruntime
target/release/cytoseg segment --model "$PKGDIR" "$V"/images/*.tif --out "$V/pred" -q
target/release/cytoseg evaluate --truth "$V/labels" --pred "$V/pred" --json "$C/val_engine.json" \
    --overwrite
$PYTHON $T/manifest.py --ckpt $CKPT --package $PKGDIR --val-metrics $C/val_metrics_onnx.json \
        --version "$VERSION" --engine-eval "$C/val_engine.json" \
        --engine-command "python models/nuclei/train/val_tiffs.py VAL; cytoseg segment VAL/images/*.tif --out VAL/pred; cytoseg evaluate --truth VAL/labels --pred VAL/pred --json VAL.json" \
        >/dev/null
echo "== wrote $PKGDIR/model.onnx and $PKGDIR/manifest.json"
