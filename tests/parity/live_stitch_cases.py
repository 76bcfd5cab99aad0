"""Writes fresh stitching-mode cases (a seed from the clock) into the folder given, labelled by
the installed cellpose; run by tests/stitch_parity.rs."""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import stitch_cases  # noqa: E402

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
seed = int(time.time())
print(f"live stitch cases, seed {seed}")
for name, planes, threshold, min_size, expected in stitch_cases.generate(seed=seed, n_real=3, n_balls=3):
    stitch_cases.save_case(out / f"{name}.npz", planes, threshold, min_size, expected)
