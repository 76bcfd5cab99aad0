"""Writes the committed flow → label fixtures in tests/fixtures/flows/ (seed 2026).

Run with cellpose==4.2.1.1 installed (tests/parity/requirements.txt):
    python tests/parity/make_flow_fixtures.py
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import flow_cases  # noqa: E402

out = Path(__file__).resolve().parents[1] / "fixtures" / "flows"
out.mkdir(parents=True, exist_ok=True)
for old in out.glob("*.npz"):
    old.unlink()
for name, dp, cp, params, expected, truth, flows in flow_cases.generate(seed=2026, n_real=4, max_side=160):
    flow_cases.save_case(out / f"{name}.npz", dp, cp, params, expected, truth, flows)
    print(f"{name}: {dp.shape[1]}x{dp.shape[2]} {params} -> {int(expected.max())} masks")
