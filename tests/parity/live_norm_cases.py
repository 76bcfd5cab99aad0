"""Writes stacks and cellpose 4.2.1.1's whole-stack normalize99 of them (as normalize_img with
norm3D=True calls it: downsample=True) into the folder given; run by tests/stitch_parity.rs."""
import sys
import time
from pathlib import Path

import numpy as np
from cellpose import transforms

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
seed = int(time.time())
rng = np.random.default_rng(seed)
print(f"live normalization cases, seed {seed}")
# Small (every value) and past 224^3 values (downsampled: every z/50-th plane, y/224-th row,
# x/224-th column): every other row, then every other plane.
for name, shape in [("small", (5, 40, 30)), ("rows", (60, 520, 400)), ("planes", (110, 330, 330))]:
    x = (rng.gamma(2.0, 300.0, size=shape) + rng.integers(0, 50, size=shape)).astype(np.float32)
    y = transforms.normalize99(x.copy(), lower=1.0, upper=99.0, copy=False, downsample=True)
    np.savez(out / f"{name}.npz", x=x, expected=y.astype(np.float32))
