"""3-D labels → flows test cases for cytoseg, made by the reference implementation.

Label volumes — real DSB2018 nuclei extruded into stacks, touching and hollow balls (isotropic
and squeezed in z), the hand-made corners of the 3-D flows cases, thin lines and single voxels,
crowded volumes whose mask-voxel count crosses the sizes where torch changes how it sums — and
what cellpose 4.2.1.1 on the CPU (2 torch threads, as on the reference machine) makes of them:

    dynamics.masks_to_flows_gpu_3d(labels)        -> flows (3, Z, Y, X) float64

and, for the 2-D planes with sparse masks (`plane_sparse_*`), `dynamics.masks_to_flows_gpu`.

Used two ways: `make_volume_flows_fixtures.py` writes the committed fixtures, and the live parity
test (`tests/volume_flows_parity.rs`) generates fresh cases with another seed when cellpose is
installed. Flows are stored at the mask voxels only (raster order): they are zero elsewhere.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import volume_cases  # noqa: E402
from flow_cases import DATA  # noqa: E402
from stitch_cases import renumber  # noqa: E402


def reference_flows(labels):
    import torch
    from cellpose import dynamics

    if labels.ndim == 2:
        mu, _ = dynamics.masks_to_flows_gpu(labels.astype(np.int64), device=torch.device("cpu"))
        return np.asarray(mu)
    mu = dynamics.masks_to_flows_gpu_3d(labels.astype(np.int64), device=torch.device("cpu"))
    return np.asarray(mu)


def sparse_plane(rng, n_disks):
    """2-D: disks, one label on two far corners, and a diagonal line whose pixels are the last
    mask pixels in raster order (some summed in torch's interleaved order): masks that fill
    under 1/16 of their box, which cytoseg diffuses pixel by pixel."""
    m = np.zeros((200, 200), np.int64)
    yy, xx = np.mgrid[:200, :200]
    for k in range(1, n_disks + 1):
        c, r = rng.uniform(10, 140, 2), rng.uniform(3, 9)
        m[(yy - c[0]) ** 2 + (xx - c[1]) ** 2 < r * r] = k
    m[0:3, 0:3] = n_disks + 1
    m[197:200, 197:200] = n_disks + 1
    for i in range(50):
        m[150 + i, 10 + 2 * i] = n_disks + 2
    return renumber(m)


def lines_and_points():
    """Thin objects (heat decays fast along them), single voxels, 2-voxel masks, and masks that
    fill under 1/16 of their box (cytoseg then updates their voxels only)."""
    m = np.zeros((9, 40, 40), np.int64)
    m[4, 20, 2:38] = 1            # a 36-voxel line along x
    m[1:8, 5, 5] = 2              # a 7-voxel line along z
    m[2, 30, 30] = 3              # a single voxel
    m[6, 30, 30:32] = 4           # two voxels
    m[4, 8:36, 36] = 5            # a line along y, touching nothing
    m[0:2, 0:2, 0:2] = 6          # one label on two distant cubes: it fills little of its box
    m[7:9, 38:40, 38:40] = 6
    for i in range(9):            # a diagonal line, also sparse in its box
        m[i, 10 + 3 * i, 2 + 4 * i] = 7
    return m


def crowded(rng, n_target):
    """Random small boxes until about `n_target` mask voxels (torch splits its sum between two
    threads from 4,682 mask voxels on, and sums the last columns of each chunk differently)."""
    m = np.zeros((12, 64, 64), np.int64)
    k = 0
    while (m > 0).sum() < n_target:
        k += 1
        s = rng.integers(2, 6, size=3)
        z, y, x = (rng.integers(0, d - e + 1) for d, e in zip(m.shape, s))
        m[z:z + s[0], y:y + s[1], x:x + s[2]] = k
    return renumber(m)


def sources(rng, n_real=3, n_balls=3):
    out = []
    if (DATA / "train.npz").exists():
        for k in range(n_real):
            out.append((f"dsb_{k}", volume_cases.real_volume(rng, int(rng.integers(8, 16)), 56)))
    for k in range(n_balls):
        out.append((f"balls_{k}", volume_cases.ball_volume(rng, int(rng.integers(12, 24)), 48,
                                                          float([1.0, 2.0, 3.0][k % 3]))))
    # `empty` is left out: cellpose fails on a volume without masks (cytoseg returns zeros).
    out += [(n, m) for n, m in volume_cases.hand_made() if n != "empty"]
    out.append(("lines_and_points", lines_and_points()))
    for n in (4600, 4700, int(rng.integers(5000, 9000))):
        out.append((f"crowded_{n}", crowded(rng, n)))
    for k, n in enumerate((3, 60)):
        out.append((f"plane_sparse_{k}", sparse_plane(rng, n)))
    return out


def generate(seed, n_real=3, n_balls=3):
    """Yields (name, labels uint32, flows at mask voxels (3, N) float64)."""
    import torch

    torch.set_num_threads(2)
    rng = np.random.default_rng(seed)
    for name, lbl in sources(rng, n_real, n_balls):
        mu = reference_flows(lbl)
        yield name, lbl.astype(np.uint32), mu[:, lbl > 0]


def save_case(path, labels, flows):
    np.savez_compressed(path, labels=labels, flows=flows)
