"""Flow → label test cases for cytoseg, labelled by the reference implementation.

Builds Cellpose-style network outputs (dP = 5 × unit flows, cellprob logits) from real label
maps of ../shared/data/dsb2018-fluo and from hand-made label images, distorts them (noise,
smooth warps, corrupted masks), and records what cellpose 4.2.1.1 on the CPU makes of them:

    dynamics.compute_masks(dP, cellprob, niter, cellprob_threshold, flow_threshold,
                           min_size, max_size_fraction)          -> expected labels
    dynamics.masks_to_flows_gpu(labels)                          -> expected flows

Used two ways: `make_flow_fixtures.py` writes the committed fixtures, and the live parity test
(`tests/flows_parity.rs`) generates fresh cases with another seed when cellpose is installed.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

DATA = Path(os.environ.get("CYTOSEG_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "dsb2018-fluo"))


def load_real_labels(rng, n, max_side):
    """Crops of real DSB2018 label maps (or nothing when the data is absent)."""
    path = DATA / "train.npz"
    if not path.exists():
        return []
    z = np.load(path)
    ids = list(z["ids"])
    out = []
    for k in rng.choice(len(ids), size=n, replace=False):
        lbl = z[f"lbl_{k}"].astype(np.int64)
        h, w = lbl.shape
        ch, cw = min(h, max_side), min(w, int(rng.integers(max_side // 2, max_side + 1)))
        y0 = int(rng.integers(0, h - ch + 1))
        x0 = int(rng.integers(0, w - cw + 1))
        crop = lbl[y0:y0 + ch, x0:x0 + cw]
        # Consecutive labels 1..n, as Cellpose's labels -> flows requires.
        _, crop = np.unique(crop, return_inverse=True)
        crop = crop.reshape(ch, cw)
        if (lbl[y0:y0 + ch, x0:x0 + cw] == 0).any():
            pass
        else:
            crop = crop + 1
        out.append((f"dsb_{str(ids[k])[:8]}_{y0}_{x0}", crop))
    return out


def hand_made():
    """Label images that reach specific branches."""
    cases = []
    # Objects on every border and a corner.
    m = np.zeros((64, 80), np.int64)
    m[0:10, 20:34] = 1
    m[54:64, 40:52] = 2
    m[25:37, 0:9] = 3
    m[30:42, 70:80] = 4
    m[0:8, 0:8] = 5
    m[20:40, 25:50] = 6
    cases.append(("border_objects", m))
    # A ring (hole) holding another object.
    yy, xx = np.mgrid[:72, :72]
    r = np.hypot(yy - 36, xx - 36)
    m = np.zeros((72, 72), np.int64)
    m[(r < 26) & (r >= 12)] = 1
    m[r < 7] = 2
    cases.append(("ring_with_nucleus", m))
    # One mask over 40% of the image (max_size_fraction), beside small ones.
    m = np.zeros((48, 48), np.int64)
    m[4:44, 4:36] = 1
    m[10:18, 40:47] = 2
    m[30:38, 40:47] = 3
    cases.append(("oversized_mask", m))
    # Many tiny objects, some under min_size.
    m = np.zeros((60, 60), np.int64)
    k = 1
    for y in range(3, 57, 9):
        for x in range(3, 57, 9):
            s = 2 + (k % 5)
            m[y:y + s, x:x + s] = k
            k += 1
    cases.append(("tiny_objects", m))
    # Touching squares: plateau ties in the histogram, identical masks side by side.
    m = np.zeros((40, 64), np.int64)
    for i in range(4):
        m[10:26, 4 + 14 * i:18 + 14 * i] = i + 1
    cases.append(("touching_squares", m))
    # All foreground and no background at all.
    m = np.ones((24, 24), np.int64)
    m[:, 12:] = 2
    cases.append(("all_foreground", m))
    # Empty.
    cases.append(("empty", np.zeros((32, 32), np.int64)))
    # Tiny images.
    cases.append(("tiny_2x2", np.ones((2, 2), np.int64)))
    m = np.zeros((3, 7), np.int64)
    m[:, 1:6] = 1
    cases.append(("tiny_3x7", m))
    m = np.zeros((16, 16), np.int64)
    m[3:13, 3:13] = 1
    cases.append(("tiny_16x16", m))
    return cases


def make_network_output(labels, rng, strength):
    """Cellpose-style outputs from labels: 5 × flows warped and noised, cellprob logits."""
    from cellpose import dynamics

    h, w = labels.shape
    if labels.max() > 0:
        mu, _ = dynamics.masks_to_flows_gpu(labels)
    else:
        mu = np.zeros((2, h, w))
    dp = 5.0 * mu
    if strength > 0:
        smooth = np.stack([ndi.gaussian_filter(rng.standard_normal((h, w)), 4.0) for _ in range(2)])
        smooth *= strength * 6.0 / max(1e-9, np.abs(smooth).max())
        dp = dp + smooth + strength * 0.6 * rng.standard_normal((2, h, w))
        # Corrupt a few masks' flows so that quality control has something to remove.
        ids = np.unique(labels)[1:]
        for l in rng.choice(ids, size=min(len(ids), max(1, len(ids) // 8)), replace=False) if len(ids) else []:
            sel = labels == l
            dp[:, sel] = 5.0 * rng.standard_normal((2, int(sel.sum())))
    fg = (labels > 0).astype(np.float64)
    cp = 8.0 * ndi.gaussian_filter(fg, 1.0) - 4.0
    cp = cp + strength * 1.5 * rng.standard_normal((h, w))
    # Quantize to 1/1024 so the committed fixtures compress well (values stay float32).
    dp = (np.round(dp * 1024) / 1024).astype(np.float32)
    cp = (np.round(cp * 1024) / 1024).astype(np.float32)
    return dp, cp


def reference_masks(dp, cp, params):
    import torch
    from cellpose import dynamics

    m = dynamics.compute_masks(dp, cp, niter=params["niter"], cellprob_threshold=params["cellprob_threshold"],
                               flow_threshold=params["flow_threshold"], min_size=params["min_size"],
                               max_size_fraction=params["max_size_fraction"], device=torch.device("cpu"))
    return np.asarray(m).astype(np.uint32)


DEFAULT = dict(cellprob_threshold=0.0, flow_threshold=0.4, niter=200, min_size=15, max_size_fraction=0.4)


def pin_reference():
    """The reference configuration cytoseg reproduces: torch CPU with AVX-512 kernels, 2 threads.
    (torch's reduction order, hence the last bit of Cellpose's diffusion, depends on both.)"""
    import torch

    cap = torch.backends.cpu.get_cpu_capability()
    if cap != "AVX512":
        raise SystemExit(f"reference needs torch AVX512 kernels, this CPU gives {cap}")
    torch.set_num_threads(2)


def generate(seed, n_real=4, max_side=160):
    """Yields (name, dp, cellprob, params, expected_labels, truth_labels, truth_flows)."""
    from cellpose import dynamics

    pin_reference()
    rng = np.random.default_rng(seed)
    sources = load_real_labels(rng, n_real, max_side) + hand_made()
    for name, lbl in sources:
        for variant in range(2):
            strength = [0.15, 0.5][variant]
            dp, cp = make_network_output(lbl, rng, strength)
            params = dict(DEFAULT)
            if variant == 1:
                # Non-default settings: other thresholds, fewer steps, no size filter, QC off now and then.
                params = dict(cellprob_threshold=float(np.float32(rng.choice([-1.0, 0.5, 0.1]))),
                              flow_threshold=float(rng.choice([0.0, 0.4, 0.8])),
                              niter=int(rng.choice([50, 200, 300])),
                              min_size=int(rng.choice([-1, 0, 15, 40])),
                              max_size_fraction=float(rng.choice([0.4, 0.05, 1.0])))
            expected = reference_masks(dp, cp, params)
            flows = dynamics.masks_to_flows_gpu(lbl)[0] if lbl.max() > 0 else np.zeros((2,) + lbl.shape)
            yield f"{name}_v{variant}", dp, cp, params, expected, lbl.astype(np.uint32), flows


def save_case(path, dp, cp, params, expected, truth, truth_flows):
    np.savez_compressed(path, dp=dp, cellprob=cp, expected=expected, truth=truth, truth_flows=truth_flows,
                        cellprob_threshold=np.float32(params["cellprob_threshold"]),
                        flow_threshold=np.float64(params["flow_threshold"]),
                        niter=np.int64(params["niter"]), min_size=np.int64(params["min_size"]),
                        max_size_fraction=np.float64(params["max_size_fraction"]))
