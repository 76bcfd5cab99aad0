"""Writes the committed 3-D labels → flows fixtures in tests/fixtures/volume_flows/ (seed 2026),
and `float32_sparse.npz`: a volume over 4e7 voxels (padded), where Cellpose diffuses in float32,
stored as its mask voxels only.

Run with cellpose==4.2.1.1 installed (tests/parity/requirements.txt), 2 torch threads:
    python tests/parity/make_volume_flows_fixtures.py
"""
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np  # noqa: E402
import volume_flows_cases  # noqa: E402

out = Path(__file__).resolve().parents[1] / "fixtures" / "volume_flows"
out.mkdir(parents=True, exist_ok=True)
for old in out.glob("*.npz"):
    old.unlink()
for name, labels, flows in volume_flows_cases.generate(seed=2026):
    volume_flows_cases.save_case(out / f"{name}.npz", labels, flows)
    print(f"{name}: {labels.shape}, {int(labels.max())} masks, {flows.shape[1]} mask voxels")

# float32: 10 × 2000 × 2000 (12 × 2002 × 2002 padded > 4e7); balls, lines, single voxels.
shape = (10, 2000, 2000)
rng = np.random.default_rng(2027)
lbl = np.zeros(shape, np.int64)
for k in range(1, 40):
    c = (rng.integers(2, 8), rng.integers(10, 1990), rng.integers(10, 1990))
    r = rng.uniform(1.5, 6.0)
    zz, yy, xx = np.mgrid[max(0, c[0] - 7):c[0] + 8, c[1] - 8:c[1] + 9, c[2] - 8:c[2] + 9]
    m = ((zz - c[0]) * 2.0) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 < r * r
    lbl[zz[m], yy[m], xx[m]] = k
lbl[5, 100, 300:360] = 40      # a 60-voxel line: its far flows underflow in float32
lbl[3, 1500, 1500] = 41        # single voxels: 0/0 in Cellpose's float32 normalization
lbl[8, 1999, 0] = 42
lbl[0, 0:3, 1990] = 43
lbl = volume_flows_cases.renumber(lbl)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    mu = volume_flows_cases.reference_flows(lbl)
idx = np.flatnonzero(lbl)
flows = mu.reshape(3, -1)[:, idx]
np.savez_compressed(out / "float32_sparse.npz", shape=np.array(shape, np.int64), index=idx.astype(np.int64),
                    values=lbl.ravel()[idx].astype(np.uint32), flows=flows)
print(f"float32_sparse: {shape}, {int(lbl.max())} masks, {len(idx)} mask voxels, "
      f"{int((~np.isfinite(flows)).sum())} non-finite values in cellpose's flows")
