"""Writes the texture parity fixture (default: tests/fixtures/texture/texture.json, seed 2026).

Expected values are computed by scikit-image 0.26's `graycomatrix` / `graycoprops` for every
object of real DSB2018 crops (../shared/data/dsb2018-fluo/train.npz), exactly as
crates/core/src/measure/texture.rs defines an object's texture:

1. the object's bounding box is cropped from the image; `lo`, `hi` = min and max of the image
   over the object's pixels; q = min(31, floor((v - lo) * 32 / (hi - lo))) (all 0 if hi == lo);
2. pixels outside the object get the extra level 32;
3. `graycomatrix(q, distances=[1], angles=[0, pi/4, pi/2, 3*pi/4], levels=33,
   symmetric=True, normed=False)`, then P[:32, :32] keeps only pairs with both pixels inside;
4. `graycoprops(P_cut, prop)` for contrast, dissimilarity, homogeneity, ASM, energy,
   correlation; the value is the mean over the angles whose cut matrix is not empty (an object
   without any pair: 0, 0, 1, 1, 1, 1).

Cases: crops of real images (uint8) and one float32 variant (image * 1.37 plus noise, in eighths), so
that quantisation of non-integers is covered.

    python tests/parity/make_texture_fixtures.py [--seed 2026] [--n 4] [--side 64] [--out FILE]
"""
import argparse
import json
from pathlib import Path

import numpy as np
import skimage
from scipy import ndimage
from skimage.feature import graycomatrix, graycoprops

LEVELS = 32
PROPS = ["contrast", "dissimilarity", "homogeneity", "ASM", "energy", "correlation"]
ANGLES = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]


def object_texture(image, labels, label):
    sl = ndimage.find_objects((labels == label).astype(np.int32))[0]
    mask = labels[sl] == label
    v = image[sl].astype(np.float64)
    lo, hi = v[mask].min(), v[mask].max()
    if hi > lo:
        q = np.minimum(LEVELS - 1, np.floor((v - lo) * LEVELS / (hi - lo))).astype(np.int64)
    else:
        q = np.zeros(v.shape, dtype=np.int64)
    q[~mask] = LEVELS
    P = graycomatrix(q.astype(np.uint8), [1], ANGLES, levels=LEVELS + 1, symmetric=True, normed=False)
    P = P[:LEVELS, :LEVELS, :, :].astype(np.float64)
    nonempty = P.sum(axis=(0, 1))[0] > 0
    if not nonempty.any():
        return [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    return [float(graycoprops(P, p)[0][nonempty].mean()) for p in PROPS]


def case(name, image, labels):
    present = [int(l) for l in np.unique(labels) if l != 0]
    return {
        "name": name,
        "height": int(labels.shape[0]),
        "width": int(labels.shape[1]),
        "image": [int(x) if float(x).is_integer() else float(x) for x in image.ravel()],
        "labels": [int(x) for x in labels.ravel()],
        "expected": {str(l): object_texture(image, labels, l) for l in present},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--side", type=int, default=64)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "../shared/data/dsb2018-fluo/train.npz"))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "fixtures/texture/texture.json"))
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    npz = np.load(a.data)
    n_images = len([k for k in npz.files if k.startswith("img_")])
    cases = []
    while len(cases) < a.n:
        k = int(rng.integers(n_images))
        img, lbl = npz[f"img_{k}"], npz[f"lbl_{k}"]
        if img.ndim != 2 or min(img.shape) < a.side:
            continue
        r = int(rng.integers(img.shape[0] - a.side + 1))
        c = int(rng.integers(img.shape[1] - a.side + 1))
        crop_i = img[r:r + a.side, c:c + a.side]
        crop_l = lbl[r:r + a.side, c:c + a.side].astype(np.uint32)
        if len(np.unique(crop_l)) < 8:
            continue
        cases.append(case(f"img_{k}_r{r}_c{c}", crop_i, crop_l))
    last = cases[-1]
    img = np.array(last["image"], dtype=np.float32).reshape(last["height"], last["width"])
    lbl = np.array(last["labels"], dtype=np.uint32).reshape(img.shape)
    # Non-integer values exactly representable in float32 and short in JSON: eighths.
    noisy = (np.round(img * 1.37 * 8) / 8 + rng.integers(0, 8, img.shape) / 8).astype(np.float32)
    cases.append(case(last["name"] + "_float32", noisy, lbl))
    out = {
        "generator": "tests/parity/make_texture_fixtures.py",
        "skimage": skimage.__version__,
        "seed": a.seed,
        "levels": LEVELS,
        "properties": PROPS,
        "cases": cases,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out) + "\n")
    n = sum(len(c["expected"]) for c in cases)
    print(f"wrote {a.out}: {len(cases)} cases, {n} objects (scikit-image {skimage.__version__})")


if __name__ == "__main__":
    main()
