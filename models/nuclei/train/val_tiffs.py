"""Writes the validation split (k % 10 == 0, in train.npz `ids` order) as TIFF files, so the
engine's own pipeline can be scored on it:

    python models/nuclei/train/val_tiffs.py OUT_DIR [--limit N]   (N: only the first N, smoke tests)
    cytoseg segment OUT_DIR/images/*.tif --out OUT_DIR/pred
    cytoseg evaluate --truth OUT_DIR/labels --pred OUT_DIR/pred --thresholds 0.5,0.75,0.9
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("out", type=Path)
ap.add_argument("--limit", type=int, default=0, help="only the first N validation images")
args = ap.parse_args()
out = args.out
(out / "images").mkdir(parents=True, exist_ok=True)
(out / "labels").mkdir(parents=True, exist_ok=True)
z = np.load(data.DEFAULT_DATA)
ids = list(z["ids"])
n = 0
for k in range(len(ids)):
    if data.is_val(k) and not (args.limit and n >= args.limit):
        name = f"{k:03d}_{str(ids[k])[:12]}"
        tifffile.imwrite(out / "images" / f"{name}.tif", z[f"img_{k}"])
        tifffile.imwrite(out / "labels" / f"{name}.tif", z[f"lbl_{k}"].astype(np.uint16))
        n += 1
print(f"{n} validation images written to {out}")
