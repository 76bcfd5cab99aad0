"""Fixtures for tests/volume_pipeline_parity.rs: a synthetic confocal-like nuclei z-stack and the
labels Cellpose 4.2.1.1 makes of it around cytoseg's ONNX networks (volume_pipeline_reference.py).

    python tests/parity/make_volume_pipeline_fixtures.py
Writes tests/fixtures/volume_pipeline/nuclei_stack.tif (20 x 96 x 96 uint8: ellipsoidal nuclei
of 12-22 px across in xy, planes twice as far apart as pixels, blurred more along z than in xy,
textured, on an uneven background with Poisson and read noise) and one .npz per case
(<model>_<mode>[_a<anisotropy>][_d<diameter>].npz with labels, niter, and for the first the flows in y, x 40..56;
nuclei_3d_a2 and nuclei_stitch also as <stem>_labels.tif for the Fiji plugin's tests).
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi

root = Path(__file__).resolve().parents[2]
out = root / "tests" / "fixtures" / "volume_pipeline"
out.mkdir(parents=True, exist_ok=True)


def make_stack(seed=7, shape=(20, 96, 96), nuclei=22, truth=False):
    """A synthetic confocal-like nuclei stack (uint8) and the number of nuclei placed; with
    `truth`, also the nuclei as instance labels (uint32, 1..n in placement order; the stack's
    pixels do not depend on it)."""
    rng = np.random.default_rng(seed)
    d, h, w = shape
    zz, yy, xx = np.meshgrid(np.arange(d) * 2.0, np.arange(h), np.arange(w), indexing="ij")
    vol = np.zeros(shape, np.float64)
    labels = np.zeros(shape, np.uint32)
    centres = []
    for _ in range(400 * nuclei):
        c = np.array([rng.uniform(4, 2 * d - 4), rng.uniform(8, h - 8), rng.uniform(8, w - 8)])
        r = rng.uniform(6, 11)
        if any(np.linalg.norm(c - p) < r + q - 1 for p, q in centres):
            continue
        centres.append((c, r))
        if len(centres) == nuclei:
            break
    for k, (c, r) in enumerate(centres):
        ax = r * rng.uniform([0.8, 0.85, 0.85], [1.0, 1.15, 1.15])
        rot = rng.uniform(0, np.pi)
        # Only the box around the ellipsoid is evaluated (z is sampled every 2 units; the
        # rotated ellipse fits in the circle of its larger axis): the same voxels as the whole
        # volume, far faster for large stacks.
        lat = max(ax[1], ax[2])
        z0, z1 = max(int((c[0] - ax[0]) // 2), 0), min(int((c[0] + ax[0]) // 2) + 2, d)
        y0, y1 = max(int(c[1] - lat), 0), min(int(c[1] + lat) + 2, h)
        x0, x1 = max(int(c[2] - lat), 0), min(int(c[2] + lat) + 2, w)
        box = np.s_[z0:z1, y0:y1, x0:x1]
        y, x = yy[box] - c[1], xx[box] - c[2]
        u = np.cos(rot) * y + np.sin(rot) * x
        v = -np.sin(rot) * y + np.cos(rot) * x
        inside = ((zz[box] - c[0]) / ax[0]) ** 2 + (u / ax[1]) ** 2 + (v / ax[2]) ** 2 <= 1
        vol[box][inside] = rng.uniform(0.5, 1.0)
        labels[box][inside] = k + 1
    texture = ndi.gaussian_filter(rng.normal(size=shape), 1.5)
    vol *= 1 + 0.8 * texture / texture.std() * 0.25
    vol = ndi.gaussian_filter(vol, (1.2, 1.0, 1.0))
    background = 0.08 + 0.05 * np.sin(yy / 40.0) * np.cos(xx / 55.0)
    photons = rng.poisson(np.clip(vol + background, 0, None) * 120) + rng.normal(0, 3, shape)
    stack = np.clip(photons * 1.6, 0, 255).astype(np.uint8)
    return (stack, len(centres), labels) if truth else (stack, len(centres))


def main():
    stack, n = make_stack()
    path = out / "nuclei_stack.tif"
    tifffile.imwrite(path, stack, compression="zlib")
    print(f"{path}: {stack.shape}, {n} nuclei")
    ref = Path(__file__).with_name("volume_pipeline_reference.py")
    models = {"nuclei": root / "models" / "nuclei", "blobs": root / "tests" / "fixtures" / "models" / "blobs"}
    cases = [
        ("nuclei", "3d", 2.0, None),
        ("nuclei", "3d", None, 25.0),
        ("nuclei", "stitch", None, None),
        ("nuclei", "stitch", None, 25.0),
        ("blobs", "3d", 2.0, None),
        ("blobs", "stitch", None, None),
    ]
    for i, (model, mode, aniso, diam) in enumerate(cases):
        stem = f"{model}_{mode}" + (f"_a{aniso:g}" if aniso else "") + (f"_d{diam:g}" if diam else "")
        tmp = out / f"{stem}.tmp.npz"
        cmd = [sys.executable, str(ref), str(models[model]), str(path), str(tmp), "--mode", mode]
        if aniso:
            cmd += ["--anisotropy", str(aniso)]
        if diam:
            cmd += ["--diameter", str(diam)]
        subprocess.run(cmd, check=True)
        z = np.load(tmp)
        keep = dict(labels=z["labels"], niter=z["niter"])
        if i == 0:  # the flows of a 16 x 16 window of every plane (the whole would be 3 MB)
            keep["flows_window"] = z["flows"][..., 40:56, 40:56]
        np.savez_compressed(out / f"{stem}.npz", **keep)
        tmp.unlink()
        if model == "nuclei" and stem in ("nuclei_3d_a2", "nuclei_stitch"):
            # The same labels as TIFF, for the Fiji plugin's tests (Java reads no .npz).
            tifffile.imwrite(out / f"{stem}_labels.tif", z["labels"].astype(np.uint16), compression="zlib")


if __name__ == "__main__":
    main()
