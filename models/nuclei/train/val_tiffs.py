"""Writes the validation split (k % 10 == 0, in train.npz `ids` order) as TIFF files, so the
engine's own pipeline can be scored on it:

    python models/nuclei/train/val_tiffs.py OUT_DIR [--limit N]   (N: only the first N, smoke tests)
    cytoseg segment OUT_DIR/images/*.tif --out OUT_DIR/pred
    cytoseg evaluate --truth OUT_DIR/labels --pred OUT_DIR/pred --thresholds 0.5,0.75,0.9

`write_split` is also what `gap_analysis.py tiffs` uses for the *tune* subset (k % 10 == 5).
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402


def write_split(out: Path, remainder: int = 0, limit: int = 0) -> dict:
    """Writes the images k with k % 10 == remainder (the first `limit` of them when > 0) to
    OUT/images and their labels (uint16) to OUT/labels as `<k>_<id[:12]>.tif`; returns
    {name: label array}."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    z = np.load(data.DEFAULT_DATA)
    ids = list(z["ids"])
    written = {}
    for k in range(len(ids)):
        if k % 10 != remainder or (limit and len(written) >= limit):
            continue
        name = f"{k:03d}_{str(ids[k])[:12]}"
        lbl = z[f"lbl_{k}"]
        tifffile.imwrite(out / "images" / f"{name}.tif", z[f"img_{k}"])
        tifffile.imwrite(out / "labels" / f"{name}.tif", lbl.astype(np.uint16))
        written[name] = lbl
    return written


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--limit", type=int, default=0, help="only the first N validation images")
    args = ap.parse_args()
    n = len(write_split(args.out, 0, args.limit))
    print(f"{n} validation images written to {args.out}")


if __name__ == "__main__":
    main()
