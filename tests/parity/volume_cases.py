"""3-D flows → labels test cases for cytoseg, labelled by the reference implementation.

Builds Cellpose-style 3-D network outputs (dP `(3, Z, Y, X)` = 5 or 10 × unit flows, as
Cellpose's 3-D mode sums two predictions per axis; cellprob logits) from 3-D label volumes —
real DSB2018 nuclei extruded into ellipsoid-like stacks, touching and hollow balls, hand-made
corners — distorts them (smooth warps, noise, corrupted masks) and records what cellpose 4.2.1.1
on the CPU makes of them:

    dynamics.compute_masks(dP, cellprob, niter, cellprob_threshold, do_3D=True,
                           min_size, max_size_fraction)                 -> expected labels
    dynamics.masks_to_flows_gpu_3d(labels)                              -> truth flows

Used two ways: `make_volume_fixtures.py` writes the committed fixtures, and the live parity test
(`tests/volume_parity.rs`) generates fresh cases with another seed when cellpose is installed.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).parent))
from flow_cases import DATA  # noqa: E402
from stitch_cases import renumber  # noqa: E402


def real_volume(rng, nz, max_side):
    """A real DSB2018 label crop extruded through nz planes: each nucleus spans a range of
    planes, widest in its middle (eroded towards its ends), drifting slightly."""
    z = np.load(DATA / "train.npz")
    # The most crowded of a few random crops: dense nuclei make seeds with equal counts
    # compete, where Cellpose's (unstable) seed order decides.
    best = None
    for _ in range(8):
        k = int(rng.integers(len(z["ids"])))
        lbl = z[f"lbl_{k}"].astype(np.int64)
        h, w = lbl.shape
        ch, cw = min(h, max_side), min(w, max_side)
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = lbl[y0:y0 + ch, x0:x0 + cw]
        if best is None or len(np.unique(crop)) > len(np.unique(best)):
            best = crop
    base = best
    ch, cw = base.shape
    ids = np.unique(base[base > 0])
    vol = np.zeros((nz, ch, cw), np.int64)
    start = {i: int(rng.integers(-2, nz // 2)) for i in ids}
    length = {i: int(rng.integers(4, nz + 2)) for i in ids}
    drift = rng.uniform(-0.4, 0.4, size=2)
    for zi in range(nz):
        moved = ndi.shift(base, zi * drift, order=0, mode="constant")
        for i in ids:
            t = (zi - start[i]) / max(length[i], 1)
            if not 0 <= t <= 1:
                continue
            m = moved == i
            r = int(round(3 * (1 - 2 * abs(t - 0.5)) - 2.5))
            if r < 0:
                m = ndi.binary_erosion(m, iterations=-r)
            vol[zi][m & (vol[zi] == 0)] = i
    return renumber(vol)


def ball_volume(rng, nz, side, anisotropy):
    """Balls (some touching, some hollow) in a volume; z squeezed by `anisotropy`."""
    zz, yy, xx = np.mgrid[:nz, :side, :side]
    vol = np.zeros((nz, side, side), np.int64)
    for i in range(1, int(rng.integers(4, 10))):
        c = (rng.uniform(0, nz), rng.uniform(0, side), rng.uniform(0, side))
        r = rng.uniform(3.0, 9.0)
        d = np.sqrt(((zz - c[0]) * anisotropy) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2)
        m = d < r
        if rng.random() < 0.25:
            m &= d > r - 2.0
        vol[m] = i
    return renumber(vol)


def nuclei_volume(rng, nz, side):
    """Ellipsoidal nuclei (radius 5–9 voxels, z squeezed by 1.5, many touching) filling about 30%
    of a (nz, side, side) volume: the benchmarks' volume."""
    s = side
    n = int(nz * s * s * 0.3 / (4 / 3 * np.pi * 7 ** 3 / 1.5))
    cz, cy, cx = rng.uniform(0, nz, n), rng.uniform(0, s, n), rng.uniform(0, s, n)
    labels = np.zeros((nz, s, s), np.int32)
    best = np.full((nz, s, s), np.inf, np.float32)
    for i in range(n):
        r = rng.uniform(5, 9)
        z0, z1 = int(max(cz[i] - r / 1.5 - 1, 0)), int(min(cz[i] + r / 1.5 + 2, nz))
        y0, y1 = int(max(cy[i] - r - 1, 0)), int(min(cy[i] + r + 2, s))
        x0, x1 = int(max(cx[i] - r - 1, 0)), int(min(cx[i] + r + 2, s))
        zz, yy, xx = np.mgrid[z0:z1, y0:y1, x0:x1]
        d = np.sqrt(((zz - cz[i]) * 1.5) ** 2 + (yy - cy[i]) ** 2 + (xx - cx[i]) ** 2) / r
        sub = best[z0:z1, y0:y1, x0:x1]
        m = (d < 1) & (d < sub)
        sub[m] = d[m]
        labels[z0:z1, y0:y1, x0:x1][m] = i + 1
    return labels


def hand_made():
    """Volumes for the corners: objects on every face, touching boxes (histogram plateaus),
    one oversized object, tiny objects, no background, empty, the smallest volume."""
    cases = []
    m = np.zeros((10, 24, 28), np.int64)
    m[0:4, 0:8, 8:16] = 1
    m[6:10, 16:24, 0:8] = 2
    m[3:8, 8:16, 20:28] = 3
    m[2:7, 10:18, 4:12] = 4
    cases.append(("border_objects", m))
    m = np.zeros((8, 20, 44), np.int64)
    for i in range(4):
        m[1:7, 4:16, 2 + 10 * i:12 + 10 * i] = i + 1
    cases.append(("touching_boxes", m))
    m = np.zeros((10, 20, 20), np.int64)
    m[1:9, 1:18, 1:12] = 1
    m[2:6, 3:8, 14:19] = 2
    cases.append(("oversized_object", m))
    m = np.zeros((12, 30, 30), np.int64)
    k = 1
    for z in range(1, 11, 5):
        for y in range(2, 28, 7):
            for x in range(2, 28, 7):
                s = 2 + k % 4
                m[z:z + s, y:y + s, x:x + s] = k
                k += 1
    cases.append(("tiny_objects", m))
    m = np.ones((6, 12, 12), np.int64)
    m[:, :, 6:] = 2
    cases.append(("all_foreground", m))
    cases.append(("empty", np.zeros((5, 16, 16), np.int64)))
    cases.append(("smallest_2x2x2", np.ones((2, 2, 2), np.int64)))
    return cases


def make_network_output(labels, rng, strength, scale):
    """Cellpose-style 3-D outputs: scale × flows, warped and noised; cellprob logits."""
    from cellpose import dynamics

    shape = labels.shape
    if labels.max() > 0:
        mu = dynamics.masks_to_flows_gpu_3d(labels)
        mu = np.asarray(mu[0] if isinstance(mu, tuple) else mu)
    else:
        mu = np.zeros((3,) + shape)
    dp = scale * mu
    if strength > 0:
        smooth = np.stack([ndi.gaussian_filter(rng.standard_normal(shape), 3.0) for _ in range(3)])
        smooth *= strength * scale * 1.2 / max(1e-9, np.abs(smooth).max())
        dp = dp + smooth + strength * 0.12 * scale * rng.standard_normal((3,) + shape)
        ids = np.unique(labels)[1:]
        for lab in rng.choice(ids, size=min(len(ids), max(1, len(ids) // 8)), replace=False) if len(ids) else []:
            sel = labels == lab
            dp[:, sel] = scale * rng.standard_normal((3, int(sel.sum())))
    fg = (labels > 0).astype(np.float64)
    cp = 8.0 * ndi.gaussian_filter(fg, 1.0) - 4.0
    cp = cp + strength * 1.5 * rng.standard_normal(shape)
    dp = (np.round(dp * 128) / 128).astype(np.float32)
    cp = (np.round(cp * 128) / 128).astype(np.float32)
    return dp, cp, mu


def reference_masks(dp, cp, params):
    import torch
    from cellpose import dynamics

    m = dynamics.compute_masks(dp, cp, niter=params["niter"], cellprob_threshold=params["cellprob_threshold"],
                               do_3D=True, min_size=params["min_size"],
                               max_size_fraction=params["max_size_fraction"], device=torch.device("cpu"))
    return np.asarray(m).astype(np.uint32)


DEFAULT = dict(cellprob_threshold=0.0, niter=200, min_size=15, max_size_fraction=0.4)


def generate(seed, n_real=3, n_balls=3):
    """Yields (name, dp, cellprob, params, expected_labels, truth_labels, truth_flows)."""
    import torch

    torch.set_num_threads(2)
    rng = np.random.default_rng(seed)
    sources = []
    if (DATA / "train.npz").exists():
        for k in range(n_real):
            sources.append((f"dsb_{k}", real_volume(rng, int(rng.integers(8, 16)), 56)))
    for k in range(n_balls):
        sources.append((f"balls_{k}", ball_volume(rng, int(rng.integers(12, 24)), 48, float(rng.choice([1.0, 2.0])))))
    sources += hand_made()
    for name, lbl in sources:
        for variant in range(2):
            strength = [0.15, 0.5][variant]
            scale = [10.0, 5.0][variant]
            dp, cp, mu = make_network_output(lbl, rng, strength, scale)
            params = dict(DEFAULT)
            if variant == 1:
                params = dict(cellprob_threshold=float(np.float32(rng.choice([-1.0, 0.5, 0.1]))),
                              niter=int(rng.choice([50, 200, 300])),
                              min_size=int(rng.choice([-1, 0, 15, 40])),
                              max_size_fraction=float(rng.choice([0.4, 0.05, 1.0])))
            expected = reference_masks(dp, cp, params)
            yield f"{name}_v{variant}", dp, cp, params, expected, lbl.astype(np.uint32), mu


def save_case(path, dp, cp, params, expected, truth, truth_flows):
    # The truth flows (float64) are kept out: they would be most of the bytes.
    np.savez_compressed(path, dp=dp, cellprob=cp, expected=expected, truth=truth,
                        cellprob_threshold=np.float32(params["cellprob_threshold"]),
                        niter=np.int64(params["niter"]), min_size=np.int64(params["min_size"]),
                        max_size_fraction=np.float64(params["max_size_fraction"]))
