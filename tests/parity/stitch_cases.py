"""Stitching-mode test cases for cytoseg, labelled by the reference implementation.

Per-plane label stacks, as Cellpose's stitching mode gets them from `compute_masks` (each plane
numbered 1..n on its own), are built from real DSB2018 label maps moved and deformed from plane
to plane (drifting, growing and shrinking nuclei, masks lost and found, planes left empty) and
from hand-made ones (balls, shells with holes, ties in IoU, label gaps). What cellpose 4.2.1.1
makes of them:

    masks = utils.stitch3D(planes, stitch_threshold)
    masks = utils.fill_holes_and_remove_small_masks(masks, min_size)   -> expected labels

Used two ways: `make_stitch_fixtures.py` writes the committed fixtures, and the live parity test
(`tests/stitch_parity.rs`) generates fresh cases with another seed when cellpose is installed.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

DATA = Path(os.environ.get("CYTOSEG_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "dsb2018-fluo"))


def renumber(plane):
    """Labels 1..n by first appearance (fastremap.renumber), as compute_masks returns them."""
    flat = plane.ravel()
    vals, first = np.unique(flat[flat > 0], return_index=True)
    order = vals[np.argsort(first)]
    lut = np.zeros(int(plane.max()) + 1, np.int64)
    lut[order] = np.arange(1, len(order) + 1)
    return lut[plane]


def real_stack(rng, nz, max_side):
    """A real DSB2018 label crop drifting and deforming through nz planes."""
    z = np.load(DATA / "train.npz")
    k = int(rng.integers(len(z["ids"])))
    lbl = z[f"lbl_{k}"].astype(np.int64)
    h, w = lbl.shape
    ch, cw = min(h, max_side), min(w, max_side)
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    base = lbl[y0:y0 + ch, x0:x0 + cw]
    ids = np.unique(base[base > 0])
    # Each nucleus lives in a range of planes (an ellipsoid's extent), grows then shrinks.
    start = {i: int(rng.integers(-2, nz // 2)) for i in ids}
    length = {i: int(rng.integers(2, nz + 2)) for i in ids}
    planes = []
    for zi in range(nz):
        shift = (zi * rng.uniform(-0.8, 0.8), zi * rng.uniform(-0.8, 0.8))
        moved = ndi.shift(base, shift, order=0, mode="constant")
        out = np.zeros_like(moved)
        for i in ids:
            t = (zi - start[i]) / max(length[i], 1)
            if not 0 <= t <= 1 or rng.random() < 0.05:  # outside its extent, or missed
                continue
            m = moved == i
            r = int(round(2 * (1 - 2 * abs(t - 0.5)) - 1.5))  # -2..0: erode at the ends
            if r < 0:
                m = ndi.binary_erosion(m, iterations=-r)
            out[m] = i
        if rng.random() < 0.1:
            out[:] = 0  # an empty plane
        planes.append(renumber(out))
    return np.stack(planes)


def ball_stack(rng, nz, side):
    """Balls and hollow shells in a volume, sliced into per-plane labels."""
    zz, yy, xx = np.mgrid[:nz, :side, :side]
    vol = np.zeros((nz, side, side), np.int64)
    for i in range(1, int(rng.integers(4, 9))):
        c = (rng.uniform(0, nz), rng.uniform(0, side), rng.uniform(0, side))
        r = rng.uniform(2.5, 7)
        d = np.sqrt(((zz - c[0]) * 1.5) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2)
        m = d < r
        if rng.random() < 0.3:
            m &= d > r - 1.6  # a shell: a hole in 3-D
        vol[m] = i
    planes = [renumber(p) for p in vol]
    return np.stack(planes)


def hand_cases():
    """Small stacks for the rules' corners."""
    cases = {}
    # Ties: a mask of plane 1 overlaps two of plane 0 equally; two of plane 1 one of plane 0.
    a = np.zeros((3, 8, 8), np.int64)
    a[0, 2:6, 0:2] = 1
    a[0, 2:6, 2:4] = 2
    a[1, 2:6, 1:3] = 1
    a[1, 0:2, 0:4] = 2
    a[2, 2:6, 1:3] = 2
    a[2, 2:6, 3:5] = 1
    cases["ties"] = a
    # Empty planes before and after the first link; label gaps (values not present).
    b = np.zeros((6, 6, 6), np.int64)
    b[0, 0:3, 0:3] = 2
    b[2, 0:3, 0:3] = 1
    b[2, 4:6, 4:6] = 4
    b[3, 0:3, 0:2] = 3
    b[5, 1:3, 1:3] = 1
    cases["empty_planes_and_gaps"] = b
    # No background at all in some planes.
    c = np.ones((3, 5, 5), np.int64)
    c[1, :, 3:] = 2
    cases["no_background"] = c
    return cases


def label(planes, threshold, min_size):
    """What cellpose 4.2.1.1 makes of the per-plane labels."""
    from cellpose import utils

    masks = planes.astype(np.uint16 if planes.max() < 2**16 else np.uint32).copy()
    masks = utils.stitch3D(masks, stitch_threshold=threshold)
    masks = utils.fill_holes_and_remove_small_masks(masks, min_size=min_size)
    return masks.astype(np.uint32)


def generate(seed, n_real=4, n_balls=4):
    """(name, planes, threshold, min_size, expected) cases."""
    rng = np.random.default_rng(seed)
    stacks = {}
    if (DATA / "train.npz").exists():
        for k in range(n_real):
            stacks[f"dsb_{k}"] = real_stack(rng, int(rng.integers(6, 14)), 120)
    for k in range(n_balls):
        stacks[f"balls_{k}"] = ball_stack(rng, int(rng.integers(8, 16)), 48)
    stacks.update(hand_cases())
    out = []
    for name, planes in stacks.items():
        for threshold, min_size in [(0.25, 15), (float(rng.choice([0.1, 0.5, 0.9])), int(rng.choice([-1, 0, 40])))]:
            expected = label(planes, threshold, min_size)
            out.append((f"{name}_t{threshold:g}_m{min_size}", planes.astype(np.uint32), threshold, min_size, expected))
    return out


def save_case(path, planes, threshold, min_size, expected):
    np.savez_compressed(path, planes=planes, threshold=np.float64(threshold),
                        min_size=np.int64(min_size), expected=expected)
