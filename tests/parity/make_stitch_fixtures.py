"""Writes the committed stitching-mode fixtures in tests/fixtures/stitch/ (seed 2026).

Run with cellpose==4.2.1.1 installed (tests/parity/requirements.txt):
    python tests/parity/make_stitch_fixtures.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import stitch_cases  # noqa: E402

out = Path(__file__).resolve().parents[1] / "fixtures" / "stitch"
out.mkdir(parents=True, exist_ok=True)
for old in out.glob("*.npz"):
    old.unlink()
for name, planes, threshold, min_size, expected in stitch_cases.generate(seed=2026):
    stitch_cases.save_case(out / f"{name}.npz", planes, threshold, min_size, expected)
    print(f"{name}: {planes.shape} -> {int(expected.max())} masks")
