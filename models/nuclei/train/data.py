"""Data loading, validation split, flow-target cache and Cellpose-style augmentation.

Data: DSB2018 stage-1 fluorescence subset (BBBC038, Caicedo et al. 2019) with the
lopuhin community mask fixes, CC0, read from ../shared/data/dsb2018-fluo/train.npz.
It is never copied into the repository; only derived flow targets are cached in the
git-ignored `.cache/` folder next to this file.

Split rule: image index k (position in the npz `ids` array) with k % 10 == 0 is
validation (50 images), every other image is training (441 images).
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
DEFAULT_DATA = Path(os.environ.get(
    "CYTOSEG_DSB_NPZ", HERE.parents[2].parent / "shared/data/dsb2018-fluo/train.npz"))


def is_val(k: int) -> bool:
    return k % 10 == 0


def load_npz(path=DEFAULT_DATA):
    d = np.load(path)
    n = len(d["ids"])
    imgs = [d[f"img_{k}"] for k in range(n)]
    lbls = [d[f"lbl_{k}"] for k in range(n)]
    return list(d["ids"]), imgs, lbls


def normalize99(img: np.ndarray) -> np.ndarray:
    """Cellpose normalization: 1st/99th numpy-linear percentiles, x=(x-lo)/(hi-lo)."""
    x = img.astype(np.float32)
    if np.ptp(x) == 0:
        return np.zeros_like(x)
    lo, hi = np.percentile(x, 1), np.percentile(x, 99)
    if hi - lo > 1e-3:
        return (x - lo) / (hi - lo)
    return np.zeros_like(x)


def flows_from_labels(lbl: np.ndarray) -> np.ndarray:
    """Unit flows (dY, dX), float32 (2,H,W), from cellpose.dynamics.masks_to_flows_gpu."""
    from cellpose import dynamics
    import torch
    if lbl.max() == 0:
        return np.zeros((2,) + lbl.shape, np.float32)
    _, inv = np.unique(lbl, return_inverse=True)  # consecutive ids 1..n (0 stays 0)
    mu, _ = dynamics.masks_to_flows_gpu(inv.reshape(lbl.shape).astype(np.int64),
                                        device=torch.device("cpu"))
    return np.asarray(mu, dtype=np.float32)


def cached_flows(lbls, path=None):
    """Compute unit flows for every label map once; cache as float16 in .cache/flows.npz."""
    path = Path(path or CACHE / "flows.npz")
    if path.exists():
        f = np.load(path)
        if len(f.files) == len(lbls):
            return [f[f"f{k}"].astype(np.float32) for k in range(len(lbls))]
    path.parent.mkdir(parents=True, exist_ok=True)
    half = [flows_from_labels(l).astype(np.float16) for l in lbls]
    np.savez(path, **{f"f{k}": fl for k, fl in enumerate(half)})
    # the cached (float16) values, so that the run that fills the cache trains on the same
    # targets as every later run
    return [fl.astype(np.float32) for fl in half]


def random_crop_augment(img, lbl, flow, rng: np.random.Generator, crop=160,
                        scale_range=(0.75, 1.33)):
    """Cellpose-style augmentation of one (normalized image, label, unit flow) triple.

    A single affine map does scale jitter, a random 90-degree rotation, flips and a
    random crop (zero padding outside the image). As in cellpose.transforms
    .random_rotate_and_resize, flows are warped with linear interpolation and the
    flow vectors are rotated/flipped with the same linear map (directions are
    scale-invariant, so no magnitude change). Labels use nearest interpolation.
    Returns img (1,c,c), cellprob target (c,c), flow target (2,c,c).
    """
    H, W = img.shape
    s = float(np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1]))))
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    # linear part in (x, y) coordinates: R (rotation by k*90) @ F (flip x) * s
    c, sn = [(1, 0), (0, 1), (-1, 0), (0, -1)][k]
    R = np.array([[c, -sn], [sn, c]], np.float64)
    F = np.diag([-1.0 if flip else 1.0, 1.0])
    A = s * R @ F
    # choose the source centre so that the crop covers the image where possible
    half = crop / (2 * s)
    cy = rng.uniform(half, H - half) if H > 2 * half else H / 2
    cx = rng.uniform(half, W - half) if W > 2 * half else W / 2
    src_c = np.array([cx - 0.5, cy - 0.5])  # pixel centres
    dst_c = np.array([crop / 2 - 0.5, crop / 2 - 0.5])
    t = dst_c - A @ src_c
    M = np.concatenate([A, t[:, None]], 1).astype(np.float32)
    out = (crop, crop)
    im = cv2.warpAffine(img, M, out, flags=cv2.INTER_LINEAR, borderValue=0)
    lb = cv2.warpAffine(lbl.astype(np.float32), M, out, flags=cv2.INTER_NEAREST, borderValue=0)
    fy = cv2.warpAffine(flow[0], M, out, flags=cv2.INTER_LINEAR, borderValue=0)
    fx = cv2.warpAffine(flow[1], M, out, flags=cv2.INTER_LINEAR, borderValue=0)
    # rotate vectors: v' = (R F) v in (x, y) coordinates
    L = R @ F
    nfx = L[0, 0] * fx + L[0, 1] * fy
    nfy = L[1, 0] * fx + L[1, 1] * fy
    return im[None], (lb > 0).astype(np.float32), np.stack([nfy, nfx]).astype(np.float32)


def intensity_augment(im, rng: np.random.Generator):
    """Gamma / gain / offset jitter, Gaussian blur and Gaussian noise on a normalized crop."""
    x = im[0]
    if rng.random() < 0.5:
        g = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
        x = np.clip(x, 0, None) ** g
    x = x * rng.uniform(0.7, 1.3) + rng.uniform(-0.1, 0.1)
    if rng.random() < 0.3:
        x = cv2.GaussianBlur(x, (0, 0), float(rng.uniform(0.5, 1.5)))
    if rng.random() < 0.5:
        x = x + rng.normal(0, rng.uniform(0.01, 0.1), x.shape).astype(np.float32)
    return x[None].astype(np.float32)
