"""Render the synthetic fluorescence example used in docs and smoke tests.

Writes nuclei_example.tif (uint16, 320x320) and nuclei_example_labels.tif (uint16
ground-truth instance labels) next to this script. Deterministic (fixed seed).
Nuclei are random non-overlapping ellipses, ~17 px mean diameter (the nuclei model's
training diameter), with smooth texture, Gaussian blur, a background offset and
Poisson shot noise.

    python models/examples/render_example.py
"""
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi

SEED, SIZE, N_TARGET = 2024, 320, 48
HERE = Path(__file__).resolve().parent


def render(seed=SEED, size=SIZE, n_target=N_TARGET):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    labels = np.zeros((size, size), np.uint16)
    signal = np.zeros((size, size))
    placed = []
    tries = 0
    while len(placed) < n_target and tries < 5000:
        tries += 1
        d = rng.normal(17.0, 2.0)                      # equivalent diameter, px
        ratio = rng.uniform(1.0, 1.5)                   # major/minor axis ratio
        a, b = d / 2 * np.sqrt(ratio), d / 2 / np.sqrt(ratio)
        cy, cx = rng.uniform(a + 2, size - a - 2, 2)
        if any(np.hypot(cy - py, cx - px) < (a + pa) * 0.85 + 2 for py, px, pa in placed):
            continue
        th = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
        v = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
        inside = (u / a) ** 2 + (v / b) ** 2 <= 1.0
        inside &= labels == 0
        if inside.sum() < 60:
            continue
        placed.append((cy, cx, a))
        labels[inside] = len(placed)
        signal[inside] = rng.uniform(0.5, 1.0)          # per-nucleus brightness
    # smooth chromatin-like texture
    tex = ndi.gaussian_filter(rng.normal(size=(size, size)), 2.0)
    tex = 1.0 + 0.25 * tex / tex.std()
    img = ndi.gaussian_filter(signal * tex, 1.2)
    photons = 40.0 + 400.0 * img                      # background offset + signal, photons
    img = rng.poisson(photons).astype(np.float64) + 100.0  # camera offset
    return np.clip(img, 0, 65535).astype(np.uint16), labels


if __name__ == "__main__":
    img, lbl = render()
    tifffile.imwrite(HERE / "nuclei_example.tif", img)
    tifffile.imwrite(HERE / "nuclei_example_labels.tif", lbl, compression="zlib")
    print(f"{lbl.max()} nuclei, image {img.shape} {img.dtype} range {img.min()}..{img.max()}")
