"""3-D labels → flows (Cellpose's `masks_to_flows_gpu_3d`, its 3-D training targets), cytoseg
against cellpose 4.2.1.1 on the same label volume: median wall time of several runs each, in
process (no I/O), the ratio, and whether the flows are equal bit for bit.

The volume holds ellipsoidal nuclei (radius 5–9 voxels, z squeezed by 1.5, many touching), as in
bench_volume.py. cytoseg is called through its Python binding (the C API); set CYTOSEG_LIBRARY to
target/release/libcytoseg.so if it is not found.

    python tests/parity/bench_volume_flows.py [--planes 64] [--side 256] [--runs 3]
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

root = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(root / "bindings" / "python" / "src"))
os.environ.setdefault("CYTOSEG_LIBRARY", str(root / "target" / "release" / "libcytoseg.so"))
import volume_cases  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--planes", type=int, default=64)
ap.add_argument("--side", type=int, default=256)
ap.add_argument("--runs", type=int, default=3)
a = ap.parse_args()

import cytoseg  # noqa: E402
import torch  # noqa: E402
from cellpose import dynamics  # noqa: E402

torch.set_num_threads(2)
labels = volume_cases.nuclei_volume(np.random.default_rng(7), a.planes, a.side)
print(f"volume {a.planes}×{a.side}×{a.side}: {len(np.unique(labels)) - 1} nuclei, "
      f"{(labels > 0).mean():.0%} of voxels in masks; torch {torch.__version__}, "
      f"{torch.get_num_threads()} threads; {os.cpu_count()} CPUs")
t_cp, t_cs = [], []
for _ in range(a.runs):
    t0 = time.perf_counter()
    want = dynamics.masks_to_flows_gpu_3d(labels.astype(np.int64), device=torch.device("cpu"))
    t_cp.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    got = cytoseg.labels_to_flows(labels)
    t_cs.append(time.perf_counter() - t0)
    equal = np.array_equal(np.asarray(want).view(np.uint64), got.view(np.uint64))
    print(f"  cellpose {t_cp[-1]:.2f} s, cytoseg {t_cs[-1]:.2f} s, flows equal bit for bit: {equal}")
    assert equal
mc, ms = statistics.median(t_cp), statistics.median(t_cs)
print(f"median of {a.runs}: cellpose {mc:.2f} s, cytoseg {ms:.2f} s, speed-up {mc / ms:.1f}x")
