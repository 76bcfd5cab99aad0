"""Segment nuclei_example.tif with ../nuclei/model.onnx (Python reference pipeline) and score it.

    python models/examples/score_example.py
Pipeline: 1/99 percentile normalization, zero-pad to x16, ONNX Runtime,
cellpose.dynamics.compute_masks (manifest mask_defaults), stardist.matching.
"""
import sys
from pathlib import Path

import numpy as np
import tifffile

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "nuclei" / "train"))
from evaluate import make_runner, predict, to_masks, score  # noqa: E402

img = tifffile.imread(HERE / "nuclei_example.tif")
gt = tifffile.imread(HERE / "nuclei_example_labels.tif")
y = predict(make_runner(onnx_path=HERE.parent / "nuclei" / "model.onnx"), img)
masks = to_masks(y)
res = score([gt], [masks])
print(f"{gt.max()} true nuclei, {masks.max()} predicted")
for t, r in res.items():
    print(f"IoU {t}: AP {r['accuracy']:.4f} F1 {r['f1']:.4f} PQ {r['panoptic_quality']:.4f}")
