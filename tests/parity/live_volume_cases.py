"""Writes fresh 3-D flows → labels cases (a seed from the clock) into the folder given, labelled
by the installed cellpose; run by tests/volume_parity.rs."""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import volume_cases  # noqa: E402

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
seed = int(time.time())
print(f"live 3-D flow cases, seed {seed}")
for case in volume_cases.generate(seed=seed, n_real=2, n_balls=2):
    volume_cases.save_case(out / f"{case[0]}.npz", *case[1:])
