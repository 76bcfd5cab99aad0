"""Writes the validation split (k % 10 == 0, in train.npz `ids` order) as TIFF files, so the
engine's own pipeline can be scored on it:

    python models/nuclei/train/val_tiffs.py OUT_DIR
    cytoseg segment OUT_DIR/images/*.tif --out OUT_DIR/pred
    cytoseg evaluate --truth OUT_DIR/labels --pred OUT_DIR/pred --thresholds 0.5,0.75,0.9
"""
import sys
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402

out = Path(sys.argv[1])
(out / "images").mkdir(parents=True, exist_ok=True)
(out / "labels").mkdir(parents=True, exist_ok=True)
z = np.load(data.DEFAULT_DATA)
ids = list(z["ids"])
n = 0
for k in range(len(ids)):
    if k % 10 == 0:
        name = f"{k:03d}_{str(ids[k])[:12]}"
        tifffile.imwrite(out / "images" / f"{name}.tif", z[f"img_{k}"])
        tifffile.imwrite(out / "labels" / f"{name}.tif", z[f"lbl_{k}"].astype(np.uint16))
        n += 1
print(f"{n} validation images written to {out}")
