"""Writes fresh 3-D labels → flows cases (a seed from the clock) into the folder given, made by
the installed cellpose; run by tests/volume_flows_parity.rs."""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import volume_flows_cases  # noqa: E402

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
seed = int(time.time())
print(f"live 3-D labels -> flows cases, seed {seed}")
for name, labels, flows in volume_flows_cases.generate(seed=seed, n_real=2, n_balls=3):
    volume_flows_cases.save_case(out / f"{name}.npz", labels, flows)
