"""How the trajectories of Cellpose's 3-D flow following behave, step by step (the numbers behind
the known-paths table of `crates/core/src/flows/paths.rs`): follows every voxel with
cellprob > threshold for `niter` steps exactly as cellpose 4.2.1.1's `steps_interp` does (torch
`grid_sample`, float32), hashes each position after each step, and reports

- the fraction of trajectories whose position repeats within `niter` steps (periodic), their
  median period, and the mean step at which they enter their cycle;
- how many distinct cycles they end on;
- the fraction that reach a position an earlier trajectory (in flat voxel order) visited, and
  the mean step at which they do.

    python tests/parity/trajectory_stats.py --dp dp.npy --cellprob cp.npy [--niter 200]

(`bench_volume.py --keep DIR` writes the benchmark's flows as DIR/dp.npy and DIR/cp.npy.)
Memory: about 8 bytes × (niter + 1) per followed voxel, plus the same again for the sort.
"""
import argparse

import numpy as np
import torch

ap = argparse.ArgumentParser()
ap.add_argument("--dp", required=True)
ap.add_argument("--cellprob", required=True)
ap.add_argument("--niter", type=int, default=200)
ap.add_argument("--cellprob-threshold", type=float, default=0.0)
a = ap.parse_args()

dp = np.load(a.dp).astype(np.float32)
cp = np.load(a.cellprob).astype(np.float32)
m = cp > a.cellprob_threshold
dP = dp * m / 5.0
inds = np.nonzero(m)
shape = dP.shape[1:]
n = len(inds[0])
# Cellpose's steps_interp, with each step's positions hashed (x, y, z bits → 64 bits).
pt = torch.zeros((1, 1, 1, n, 3), dtype=torch.float32)
im = torch.zeros((1, 3, *shape), dtype=torch.float32)
for k in range(3):
    pt[0, 0, 0, :, 2 - k] = torch.from_numpy(inds[k]).float()
    im[0, 2 - k] = torch.from_numpy(dP[k]).float()
span = np.array(shape)[::-1].astype(float) - 1
for k in range(3):
    im[:, k] *= 2.0 / span[k]
    pt[..., k] /= span[k]
pt *= 2
pt -= 1


def hashed(p):
    b = p.view(torch.int32).numpy().reshape(n, 3).astype(np.uint64) & np.uint64(0xFFFFFFFF)
    return ((b[:, 0] * np.uint64(0x9E3779B97F4A7C15)) ^ (b[:, 1] * np.uint64(0xC2B2AE3D27D4EB4F))
            ^ (b[:, 2] * np.uint64(0x165667B19E3779F9)) ^ (b[:, 2] << np.uint64(32)))


T = a.niter
H = np.empty((T + 1, n), dtype=np.uint64)
H[0] = hashed(pt)
for t in range(T):
    d = torch.nn.functional.grid_sample(im, pt, align_corners=False)
    for k in range(3):
        pt[..., k] += d[:, k]
        torch.clamp_(pt[..., k], -1.0, 1.0)
    H[t + 1] = hashed(pt)

# Period: the smallest k with the position after step T equal to the one after step T - k.
lam = np.zeros(n, np.int64)
for k in range(1, T + 1):
    lam[(H[T - k] == H[T]) & (lam == 0)] = k
per = lam > 0
idx = np.nonzero(per)[0]
# Cycle entry: the first step whose position recurs `period` steps later.
mu = np.full(n, -1)
for t in range(T):
    sel = idx[(mu[idx] < 0) & (t + lam[idx] <= T)]
    mu[sel[H[t, sel] == H[t + lam[sel], sel]]] = t
# Distinct cycles: the smallest hash on each cycle.
cyc = np.full(len(idx), np.iinfo(np.uint64).max, np.uint64)
for j in range(T):
    cyc = np.where(j < lam[idx], np.minimum(cyc, H[T - j, idx]), cyc)
print(f"{n} trajectories of {T} steps")
print(f"periodic within {T} steps: {per.mean():.1%}; period median {np.median(lam[per]):.0f}, "
      f"mean {lam[per].mean():.1f}; cycle entered at step {mu[per].mean():.1f} on average")
print(f"distinct cycles: {len(np.unique(cyc))}")
del cyc
# First step at which each trajectory is where an earlier trajectory has been.
flat = H.ravel()
order = np.argsort(flat, kind="stable")
fs = flat[order]
starts = np.r_[0, np.nonzero(fs[1:] != fs[:-1])[0] + 1]
traj = order % n
first_traj = np.minimum.reduceat(traj, starts)
group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(fs)]))
earliest = np.empty(flat.size, np.int64)
earliest[order] = first_traj[group]
del order, fs, traj, group
earlier = earliest.reshape(T + 1, n) < np.arange(n)[None, :]
joined = earlier.any(0)
step = np.where(joined, earlier.argmax(0), -1)
print(f"reach a position an earlier trajectory visited: {joined.mean():.1%}, at step "
      f"{step[joined].mean():.1f} on average (periodic ones: {step[joined & per].mean():.1f}, "
      f"{mu[joined & per].mean() - step[joined & per].mean():.1f} steps before their cycle)")
