"""Writes the committed 3-D flows → labels fixtures in tests/fixtures/volume/ (seed 2026).

Files named `kept_*.npz` hold inputs worth keeping that the generator no longer makes (a live
case that once told a bug apart); their expected labels are recomputed by cellpose here.

Run with cellpose==4.2.1.1 installed (tests/parity/requirements.txt):
    python tests/parity/make_volume_fixtures.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np  # noqa: E402
import volume_cases  # noqa: E402

out = Path(__file__).resolve().parents[1] / "fixtures" / "volume"
out.mkdir(parents=True, exist_ok=True)
for old in out.glob("*.npz"):
    if not old.name.startswith("kept_"):
        old.unlink()
for kept in sorted(out.glob("kept_*.npz")):
    z = dict(np.load(kept))
    params = {k: z[k].item() for k in volume_cases.DEFAULT}
    z["expected"] = volume_cases.reference_masks(z["dp"], z["cellprob"], params)
    np.savez_compressed(kept, **z)
    print(f"{kept.stem}: {z['cellprob'].shape} {params} -> {int(z['expected'].max())} masks")
for case in volume_cases.generate(seed=2026):
    name, dp, cp, params, expected = case[:5]
    volume_cases.save_case(out / f"{name}.npz", *case[1:])
    print(f"{name}: {cp.shape} {params} -> {int(expected.max())} masks")
