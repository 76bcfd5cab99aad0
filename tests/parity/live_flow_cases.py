"""Fresh flow → label cases labelled by the installed cellpose (seed from the clock), for the
live parity test. Usage: python live_flow_cases.py OUT_DIR"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import flow_cases  # noqa: E402

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
seed = int(time.time())
print(f"live flow cases, seed {seed}")
for name, dp, cp, params, expected, truth, flows in flow_cases.generate(seed=seed, n_real=3, max_side=224):
    flow_cases.save_case(out / f"{name}.npz", dp, cp, params, expected, truth, flows)
