"""Writes the measurement parity fixtures (default: tests/fixtures/measure/, seed 2026).

Every expected value is computed by scikit-image 0.26's `skimage.measure.regionprops_table`
(plus `intensity_integrated`, the per-object sum, given to it as an extra property), on:

* real DSB2018 label maps and images from ../shared/data/dsb2018-fluo/train.npz (random
  images, cropped to at most --max-side pixels, so objects are cut by the crop border);
* calibrated variants (square pixels, spacing given to skimage; non-square pixels, where skimage
  refuses `perimeter`, so that column is left out of the expectation);
* intensity images of several types: the real uint8 image, a 3-channel uint16 image, and a
  float32 image;
* hand-made edge cases: 1-pixel objects, lines (horizontal, vertical, diagonal, 2 px wide),
  objects on the image border, a ring (object with a hole), a non-contiguous label, squares and
  disks (isotropic: orientation is degenerate), huge label ids, an empty label image, 1×1 and
  single-row images.

    python tests/parity/make_measure_fixtures.py [--seed 2026] [--n-real 6] [--max-side 200] [--out DIR]

Layout of DIR:
  manifest.json   one entry per case: file, spacing (row, column), unit, column names
  cNN_<name>.npz  `labels` (uint32, H×W), optional `image` (H×W or H×W×C: uint8, uint16 or
                  float32), and `col__<column>` (float64, one value per object, by label)
"""
import argparse
import json
from pathlib import Path

import numpy as np
import skimage
from skimage.measure import regionprops_table

SHAPE = [
    "label",
    "area",
    "centroid",
    "bbox",
    "perimeter",
    "equivalent_diameter_area",
    "axis_major_length",
    "axis_minor_length",
    "eccentricity",
    "orientation",
    "solidity",
    "extent",
]
INTENSITY = ["intensity_mean", "intensity_min", "intensity_max", "intensity_std"]


def intensity_integrated(regionmask, intensity):
    """Sum of the object's intensities (skimage has no such property; given as an extra one)."""
    return np.sum(intensity[regionmask], dtype=np.float64)


def reference(labels, image, spacing):
    """skimage's table for one case: {column name: float64 values}."""
    props = list(SHAPE)
    if spacing[0] != spacing[1]:
        props.remove("perimeter")  # skimage: "`perimeter` supports isotropic spacings only"
    extra = ()
    if image is not None:
        props += INTENSITY
        extra = (intensity_integrated,)
    # float32 images as they are: skimage then sums in float32 (numpy's mean and std of a
    # float32 array), cytoseg in float64; they differ by about 1e-7 relative.
    table = regionprops_table(
        labels,
        intensity_image=image,
        properties=props,
        extra_properties=extra,
        spacing=spacing,
    )
    return {k: np.asarray(v, dtype=np.float64) for k, v in table.items()}


def real_cases(rng, n, max_side):
    data = Path(__file__).resolve().parents[2] / "../shared/data/dsb2018-fluo/train.npz"
    d = np.load(data)
    ids = d["ids"]
    picks = rng.choice(len(ids), size=n, replace=False)
    out = []
    for k in sorted(int(p) for p in picks):
        img, lbl = d[f"img_{k}"], d[f"lbl_{k}"]
        h, w = lbl.shape
        r0 = int(rng.integers(0, h - min(h, max_side) + 1))
        c0 = int(rng.integers(0, w - min(w, max_side) + 1))
        sl = np.s_[r0 : r0 + max_side, c0 : c0 + max_side]
        out.append((f"dsb_{str(ids[k])[:8]}_{r0}_{c0}", lbl[sl].astype(np.uint32), img[sl]))
    return out


def disk(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def hand_cases(rng):
    cases = []
    h, w = 40, 48
    L = np.zeros((h, w), np.uint32)
    # 1-pixel objects: interior, corners, border
    L[5, 5] = 1
    L[0, 0] = 2
    L[h - 1, w - 1] = 3
    L[0, 20] = 4
    # lines: horizontal, vertical, diagonal, anti-diagonal, 2 px wide
    L[10, 8:20] = 5
    L[12:30, 2] = 6
    for i in range(10):
        L[14 + i, 6 + i] = 7
        L[14 + i, 30 - i] = 8
    L[32:34, 5:25] = 9
    # touching the border: left, right, top, bottom
    L[20:26, 0:4] = 10
    L[3:9, w - 5 : w] = 11
    L[0:3, 30:40] = 12
    L[h - 3 : h, 30:44] = 13
    # ring (hole)
    ring = disk(h, w, 22, 38, 6) & ~disk(h, w, 22, 38, 3)
    L[ring & (L == 0)] = 14
    # non-contiguous label: two blobs
    L[36:39, 30:33] = 15
    L[36:38, 40:42] = 15
    # a 2-pixel diagonal (8-connected only) pair and a plus sign
    L[27, 12] = 16
    L[28, 13] = 16
    L[24:29, 20] = 17
    L[26, 18:23] = 17
    image = rng.integers(0, 65535, size=(h, w), dtype=np.uint16)
    cases.append(("hand_edges", L, image))

    # isotropic shapes: squares and disks (orientation is degenerate), a few sizes
    h, w = 40, 40
    L = np.zeros((h, w), np.uint32)
    L[2:5, 2:5] = 1
    L[8:16, 2:10] = 2
    L[disk(h, w, 25, 10, 5)] = 3
    L[disk(h, w, 10, 28, 7.5)] = 4
    L[30:32, 25:27] = 5
    cases.append(("hand_isotropic", L, rng.integers(0, 255, size=(h, w), dtype=np.uint8)))

    # random blobs with huge and sparse label ids
    h, w = 64, 64
    L = np.zeros((h, w), np.uint32)
    ids = [7, 70000, 1234567, 2000003]  # skimage allocates max-label slots
    for i, lab in enumerate(ids):
        cy, cx = 14 + 34 * (i // 2), 14 + 34 * (i % 2)
        m = disk(h, w, cy, cx, 10) & (rng.random((h, w)) < 0.85)
        L[m] = lab
    cases.append(("hand_huge_ids", L, rng.random((h, w)).astype(np.float32) * 1000))

    # random irregular shapes: thresholded smooth noise, labelled by connected components
    from scipy import ndimage as ndi

    noise = ndi.gaussian_filter(rng.random((96, 96)), 3)
    L = skimage.measure.label(noise > np.percentile(noise, 60)).astype(np.uint32)
    cases.append(("hand_blobs", L, rng.integers(0, 4096, size=(96, 96, 2), dtype=np.uint16)))

    cases.append(("hand_empty", np.zeros((16, 16), np.uint32), None))
    cases.append(("hand_1x1", np.full((1, 1), 9, np.uint32), np.full((1, 1), 3, np.uint8)))
    row = np.array([[0, 1, 1, 1, 0, 2, 0, 3, 3]], np.uint32)
    cases.append(("hand_single_row", row, None))
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--n-real", type=int, default=6)
    ap.add_argument("--max-side", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "fixtures" / "measure")
    args = ap.parse_args()
    assert skimage.__version__.startswith("0.26"), f"scikit-image {skimage.__version__}, need 0.26"

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("*.npz")) + list(out.glob("manifest.json")):
        old.unlink()
    rng = np.random.default_rng(args.seed)

    cases = []  # (name, labels, image, spacing, unit)
    real = real_cases(rng, args.n_real, args.max_side)
    for name, lbl, img in real:
        cases.append((name, lbl, img, (1.0, 1.0), None))
    # calibrated: square pixels, and non-square pixels (y 0.5, x 0.8)
    name, lbl, img = real[0]
    cases.append((name + "_cal_square", lbl, img, (0.65, 0.65), "um"))
    cases.append((name + "_cal_aniso", lbl, img, (0.5, 0.8), "um"))
    # multi-channel uint16 and float32 images on real labels
    name, lbl, img = real[1]
    lbl, img = lbl[:100, :100], img[:100, :100]  # random channels compress badly: keep them small
    g = img.astype(np.uint16)
    multi = np.stack([g * 257, 65535 - g * 200, rng.integers(0, 65535, g.shape, dtype=np.uint16)], -1)
    cases.append((name + "_rgb16", lbl, multi, (1.0, 1.0), None))
    f32 = (img.astype(np.float32) / 255 + rng.normal(0, 0.01, img.shape)).astype(np.float32)
    cases.append((name + "_float", lbl, f32, (1.0, 1.0), None))
    for name, lbl, img in hand_cases(rng):
        cases.append((name, lbl, img, (1.0, 1.0), None))
    name, lbl, img = cases[-4][:3]  # hand_blobs, calibrated too
    cases.append((name + "_cal", lbl, img, (2.5, 2.5), "nm"))

    manifest = {"seed": args.seed, "skimage": skimage.__version__, "cases": []}
    for i, (name, lbl, img, spacing, unit) in enumerate(cases):
        table = reference(lbl, img, spacing)
        arrays = {"labels": lbl.astype(np.uint32)}
        if img is not None:
            arrays["image"] = img
        for k, v in table.items():
            arrays[f"col__{k}"] = v
        fname = f"c{i:02d}_{name}.npz"
        np.savez_compressed(out / fname, **arrays)
        manifest["cases"].append(
            {"file": fname, "spacing": list(spacing), "unit": unit, "columns": list(table.keys())}
        )
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
