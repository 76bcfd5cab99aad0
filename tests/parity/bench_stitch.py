"""Stitching mode, cytoseg against cellpose 4.2.1.1 on the same per-plane labels: median wall
time of three runs each, the ratio, and whether the labels are equal.

cellpose is timed in-process (utils.stitch3D + fill_holes_and_remove_small_masks, no I/O);
cytoseg as the whole `cytoseg stitch` command, reading and writing the .npy files.

    python tests/parity/bench_stitch.py [--planes 64] [--side 512] [--cytoseg target/release/cytoseg]
"""
import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ap = argparse.ArgumentParser()
ap.add_argument("--planes", type=int, default=64)
ap.add_argument("--side", type=int, default=512)
ap.add_argument("--cytoseg", default=str(Path(__file__).resolve().parents[2] / "target/release/cytoseg"))
a = ap.parse_args()

from cellpose import utils  # noqa: E402

rng = np.random.default_rng(7)
nz, s = a.planes, a.side
# Nuclei as ellipsoids ~12 px across, one per ~30×30 px of plane area, sliced into planes and
# numbered per plane (as compute_masks returns them), with a little jitter from plane to plane.
n = (s // 30) ** 2 * max(1, nz // 16)
cz, cy, cx = rng.uniform(0, nz, n), rng.uniform(0, s, n), rng.uniform(0, s, n)
r = rng.uniform(4, 8, n)
planes = np.zeros((nz, s, s), np.uint16)
yy, xx = np.mgrid[:s, :s]
for z in range(nz):
    p = np.zeros((s, s), np.int64)
    for i in np.nonzero(np.abs(cz - z) * 1.5 < r)[0]:
        rr = np.sqrt(r[i] ** 2 - ((cz[i] - z) * 1.5) ** 2)
        y0, y1 = int(max(cy[i] - rr - 1, 0)), int(min(cy[i] + rr + 2, s))
        x0, x1 = int(max(cx[i] - rr - 1, 0)), int(min(cx[i] + rr + 2, s))
        m = (yy[y0:y1, x0:x1] - cy[i] + rng.normal(0, 0.5)) ** 2 + (xx[y0:y1, x0:x1] - cx[i]) ** 2 < rr ** 2
        p[y0:y1, x0:x1][m] = i + 1
    vals, first = np.unique(p[p > 0], return_index=True)
    lut = np.zeros(n + 2, np.int64)
    lut[vals[np.argsort(first)]] = np.arange(1, len(vals) + 1)
    planes[z] = lut[p]

def cellpose_run():
    m = utils.stitch3D(planes.copy(), stitch_threshold=0.25)
    return utils.fill_holes_and_remove_small_masks(m, min_size=15)

with tempfile.TemporaryDirectory() as d:
    src, dst = Path(d) / "planes.npy", Path(d) / "out.npy"
    np.save(src, planes)
    t_cp, t_cs = [], []
    for _ in range(3):
        t0 = time.perf_counter(); ref = cellpose_run(); t_cp.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run([a.cytoseg, "stitch", "--labels", str(src), "--out", str(dst), "--overwrite",
                        "--stitch-threshold", "0.25", "--min-size", "15"], check=True)
        t_cs.append(time.perf_counter() - t0)
    got = np.load(dst)
    same = np.array_equal(got.astype(np.uint32), ref.astype(np.uint32))
mc, ms = statistics.median(t_cp), statistics.median(t_cs)
print(f"stack {nz}×{s}×{s}, {int(ref.max())} 3-D masks; labels equal: {same}")
print(f"cellpose 4.2.1.1 stitch3D + fill: median {mc:.3f} s; cytoseg stitch (with .npy I/O): median {ms:.3f} s; speed-up {mc / ms:.1f}×")
