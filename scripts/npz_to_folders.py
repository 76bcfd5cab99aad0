"""Write a shared training set (npz) as image/label TIFF folders for `cytoseg train`.

The shared sets (../shared/data/usiigaci-phase/train.npz, ../shared/data/dsb2018-nonfluo/train.npz,
../shared/data/dsb2018-fluo/train.npz) hold `ids` and, for each index k, `img_<k>` (the image:
H x W gray or H x W x 3 RGB) and `lbl_<k>` (instance labels, 0 = background). This writes

    OUT/train/images/<id>.tif   OUT/train/labels/<id>.tif
    OUT/val/images/<id>.tif     OUT/val/labels/<id>.tif

Images keep their sample type and shape (an RGB image stays an H x W x 3 uint8 TIFF, which the
engine reads as 3 channels); labels are uint16 TIFFs, or uint32 when a label exceeds 65535.

Usage (numpy and tifffile, e.g. /work/venv-train/bin/python):

    python scripts/npz_to_folders.py NPZ OUT [--val "25,26,27,28,29"] [--overwrite]

--val lists the indices (positions in `ids`) that go to OUT/val; the default is the last 5
entries. OUT must be outside the repository: the data sets are never copied into it.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile


def parse_indices(text: str, n: int) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            k = int(part)
        except ValueError:
            raise SystemExit(f"--val: {part!r} is not an index")
        if k < 0:
            k += n
        if not 0 <= k < n:
            raise SystemExit(f"--val: index {part} is outside 0..{n - 1}")
        out.append(k)
    if len(set(out)) != len(out):
        raise SystemExit("--val: an index is listed twice")
    return sorted(out)


def inside_repository(path: Path) -> bool:
    """Whether `path` lies in this script's git work tree."""
    repo = Path(__file__).resolve().parents[1]
    try:
        top = subprocess.run(["git", "-C", str(repo), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, check=True).stdout.strip()
        repo = Path(top).resolve()
    except (OSError, subprocess.CalledProcessError):
        pass
    p = path.resolve()
    return p == repo or repo in p.parents


def safe_name(name: str) -> str:
    bad = set('/\\:*?"<>|') | {"\0"}
    s = "".join("_" if c in bad else c for c in name).strip()
    if not s or s.startswith("."):
        raise SystemExit(f"id {name!r} cannot be a file name")
    return s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("npz", type=Path, help="the training set (.npz with ids, img_<k>, lbl_<k>)")
    ap.add_argument("out", type=Path, help="output folder (outside the repository)")
    ap.add_argument("--val", type=str, default=None,
                    help='comma-separated indices for validation, e.g. "25,26,27,28,29" '
                         "(default: the last 5 entries)")
    ap.add_argument("--overwrite", action="store_true", help="replace existing files")
    args = ap.parse_args(argv)

    if inside_repository(args.out):
        raise SystemExit(f"{args.out} is inside the repository; write the data elsewhere")
    d = np.load(args.npz, allow_pickle=False)
    if "ids" not in d.files:
        raise SystemExit(f"{args.npz}: no 'ids' array (keys: {', '.join(d.files[:8])}, ...)")
    ids = [str(i) for i in d["ids"]]
    n = len(ids)
    names = [safe_name(i) for i in ids]
    if len(set(names)) != n:
        raise SystemExit(f"{args.npz}: ids are not unique as file names")
    val = parse_indices(args.val, n) if args.val is not None else list(range(max(0, n - 5), n))
    if len(val) >= n:
        raise SystemExit(f"--val takes all {n} images; leave some for training")

    dirs = {split: (args.out / split / "images", args.out / split / "labels")
            for split in ("train", "val")}
    for im_dir, lb_dir in dirs.values():
        im_dir.mkdir(parents=True, exist_ok=True)
        lb_dir.mkdir(parents=True, exist_ok=True)

    vset = set(val)
    counts = {"train": 0, "val": 0}
    for k, name in enumerate(names):
        img = d[f"img_{k}"]
        lbl = d[f"lbl_{k}"]
        if img.shape[:2] != lbl.shape or lbl.ndim != 2:
            raise SystemExit(f"{ids[k]}: image {img.shape} and labels {lbl.shape} differ in size")
        if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
            raise SystemExit(f"{ids[k]}: image of shape {img.shape}, expected H x W or H x W x 3")
        if lbl.dtype.kind not in "ui":
            raise SystemExit(f"{ids[k]}: labels of type {lbl.dtype}, expected integers")
        if lbl.size and lbl.min() < 0:
            raise SystemExit(f"{ids[k]}: negative labels")
        lbl = lbl.astype(np.uint16 if lbl.max(initial=0) <= 65535 else np.uint32)
        split = "val" if k in vset else "train"
        im_dir, lb_dir = dirs[split]
        for path in (im_dir / f"{name}.tif", lb_dir / f"{name}.tif"):
            if path.exists() and not args.overwrite:
                raise SystemExit(f"{path} exists (--overwrite replaces it)")
        photometric = "rgb" if img.ndim == 3 else "minisblack"
        tifffile.imwrite(im_dir / f"{name}.tif", np.ascontiguousarray(img),
                         photometric=photometric, compression="zlib")
        tifffile.imwrite(lb_dir / f"{name}.tif", np.ascontiguousarray(lbl),
                         photometric="minisblack", compression="zlib")
        counts[split] += 1
    print(f"{args.npz}: {counts['train']} train / {counts['val']} val images -> {args.out} "
          f"(val: {', '.join(str(k) for k in val)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
