"""Write the per-step learning rates of the shipped training phases to lr_traces/phaseN.json.gz.

The shipped phases ran on wall-time budgets (`train.py --budget-min`), so their schedules depend
on how fast the machine was. Each checkpoint records the lr of every step it took (`lr_trace`);
committing those traces lets `recipe.sh` replay every phase with exactly the same schedule
(`train.py --replay-lr lr_traces/phaseN.json.gz`) on any machine, at any speed.

    python models/nuclei/train/lr_traces.py [PHASE ...]     (default: the phases recipe.sh runs)

Reads .cache/ckpt_phaseN.pt. A `--resume` phase's trace starts at step 0 of the run it resumed
(phase 2 continues phase 1), as `--replay-lr` expects.
"""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402

OUT = Path(__file__).resolve().parent / "lr_traces"
PHASES = ["1", "2", "3", "5", "6"]


def main():
    OUT.mkdir(exist_ok=True)
    for phase in sys.argv[1:] or PHASES:
        ck = torch.load(data.CACHE / f"ckpt_phase{phase}.pt", weights_only=False, map_location="cpu")
        trace = [float(v) for v in ck["lr_trace"]]
        if len(trace) != int(ck["step"]):
            raise SystemExit(f"phase {phase}: {len(trace)} lr values for {ck['step']} steps")
        path = OUT / f"phase{phase}.json.gz"
        # mtime=0: the same trace always gives the same bytes
        with gzip.GzipFile(path, "wb", mtime=0) as f:
            f.write(json.dumps(trace).encode())
        print(f"{path.name}: {len(trace)} steps, lr {trace[0]:.3g} ... {max(trace):.3g} ... {trace[-1]:.3g}, "
              f"{path.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
