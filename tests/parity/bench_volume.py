"""3-D flows → labels (Cellpose's do_3D masks), cytoseg against cellpose 4.2.1.1 on the same
flows: median wall time of several runs each, the ratio, and whether the labels are equal.

The volume holds ellipsoidal nuclei (~14 px across, z squeezed by 1.5, many touching); the
flows are what a 3-D Cellpose run gives such nuclei: 10 × unit vectors to each nucleus' centre
(two summed predictions), with noise, and cellprob logits positive inside. cellpose is timed
in-process (`dynamics.compute_masks(..., do_3D=True)`, no I/O); cytoseg twice: in-process the
same way (`cytoseg.flows_to_labels` of `bindings/python/src` on the library beside `--cytoseg`,
the arrays already in memory), and as the whole `cytoseg masks` command, reading the .npy flows
and writing the label stack. The runs alternate (cellpose, cytoseg in-process, the command).

    python tests/parity/bench_volume.py [--planes 64] [--side 256] [--runs 3] [--noise voxel|smooth]
    python tests/parity/bench_volume.py --flows stack_flows.npy [--runs 3]
    python tests/parity/bench_volume.py --runs 0 --keep DIR   # only write the flows

With `--flows`, the flows are a network's: the (4, Z, Y, X) float32 file (dZ, dY, dX, cellprob)
that `cytoseg segment --do-3d --save-flows` writes (`make_network_flows.py` makes one from a
synthetic confocal-like stack).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).parent))
import volume_cases  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--planes", type=int, default=64)
ap.add_argument("--side", type=int, default=256)
ap.add_argument("--runs", type=int, default=3)
ap.add_argument("--noise", choices=["voxel", "smooth"], default="voxel",
                help="per-voxel noise (σ 0.5, the harder case) or noise smoothed over ~1.5 voxels "
                     "(σ 0.5 after smoothing), closer to a network's output")
ap.add_argument("--flows", help="a network's 3-D flows, (4, Z, Y, X) float32 .npy, instead of synthetic ones")
ap.add_argument("--keep", help="also write the flows to KEEP/dp.npy and KEEP/cp.npy (for trajectory_stats.py)")
ap.add_argument("--cytoseg", default=str(Path(__file__).resolve().parents[2] / "target/release/cytoseg"))
a = ap.parse_args()

import torch  # noqa: E402
from cellpose import dynamics  # noqa: E402

# cytoseg's Python package from this checkout, on the library built beside the command.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bindings/python/src"))
os.environ.setdefault("CYTOSEG_LIBRARY", str(Path(a.cytoseg).resolve().parent / "libcytoseg.so"))
import cytoseg  # noqa: E402

if a.flows:
    f = np.load(a.flows).astype(np.float32)
    dp, cp = np.ascontiguousarray(f[:3]), np.ascontiguousarray(f[3])
    del f
    print(f"volume {dp.shape[1]}×{dp.shape[2]}×{dp.shape[3]}, network flows from {a.flows}: "
          f"{(cp > 0).mean():.0%} of voxels followed; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; {os.cpu_count()} CPUs")
else:
    rng = np.random.default_rng(7)
    nz, s = a.planes, a.side
    labels = volume_cases.nuclei_volume(rng, nz, s)
    # Unit vectors to each nucleus' centre of mass, × 10, plus noise.
    idx = np.arange(labels.max() + 1)
    com = np.array(ndi.center_of_mass(np.ones_like(labels), labels, idx[1:]))
    centre = np.zeros((len(idx), 3))
    centre[1:] = com
    zz, yy, xx = np.indices(labels.shape, dtype=np.float32)
    vec = np.stack([centre[labels, 0] - zz, centre[labels, 1] - yy, centre[labels, 2] - xx]).astype(np.float32)
    del zz, yy, xx
    norm = np.sqrt((vec ** 2).sum(0)) + 1e-3
    noise = rng.normal(0, 0.5, vec.shape).astype(np.float32)
    if a.noise == "smooth":
        noise = np.stack([ndi.gaussian_filter(c, 1.5) for c in noise])
        noise *= 0.5 / noise.std()
    dp = 10 * vec / norm * (labels > 0) + noise
    dp = dp.astype(np.float32)
    del vec, norm
    cp = (8 * ndi.gaussian_filter((labels > 0).astype(np.float32), 1.0) - 4).astype(np.float32)
    print(f"volume {nz}×{s}×{s}, {a.noise} noise: {len(np.unique(labels)) - 1} nuclei, "
          f"{(cp > 0).mean():.0%} of voxels followed; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; {os.cpu_count()} CPUs")

if a.keep:
    Path(a.keep).mkdir(parents=True, exist_ok=True)
    np.save(Path(a.keep) / "dp.npy", dp)
    np.save(Path(a.keep) / "cp.npy", cp)

if a.runs < 1:
    sys.exit(0)

with tempfile.TemporaryDirectory() as d:
    fdp, fcp, out = Path(d) / "dp.npy", Path(d) / "cp.npy", Path(d) / "labels.npy"
    np.save(fdp, dp)
    np.save(fcp, cp)
    t_cp, t_cs, t_in = [], [], []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        ref = dynamics.compute_masks(dp, cp, do_3D=True, min_size=15, device=torch.device("cpu"))
        t_cp.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        inproc = cytoseg.flows_to_labels(dp, cp, min_size=15)
        t_in.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run([a.cytoseg, "masks", "--dp", str(fdp), "--cellprob", str(fcp), "--out", str(out),
                        "--overwrite", "--min-size", "15"], check=True)
        t_cs.append(time.perf_counter() - t0)
    got = np.load(out)
    ref = np.asarray(ref).astype(np.uint32)
    same = np.array_equal(got.astype(np.uint32), ref)
    same_in = np.array_equal(inproc, ref)
mc, ms, mi = statistics.median(t_cp), statistics.median(t_cs), statistics.median(t_in)
print(f"{int(ref.max())} 3-D masks; labels equal: command {same}, in-process {same_in}")
print(f"cellpose 4.2.1.1 compute_masks(do_3D=True): median {mc:.2f} s {[round(t, 3) for t in t_cp]}")
print(f"cytoseg in-process (flows_to_labels): median {mi:.3f} s {[round(t, 3) for t in t_in]}; "
      f"speed-up {mc / mi:.1f}×")
print(f"cytoseg masks command (with .npy I/O): median {ms:.3f} s {[round(t, 3) for t in t_cs]}; "
      f"speed-up {mc / ms:.1f}×")
