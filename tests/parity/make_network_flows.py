"""Network flows for `bench_volume.py --flows`: a synthetic confocal-like nuclei stack
(make_volume_pipeline_fixtures.make_stack, z sampled at half the lateral resolution) segmented
by `cytoseg segment --do-3d --anisotropy 2 --save-flows` with the bundled nuclei model; writes
the (4, Z, Y, X) float32 flows (dZ, dY, dX, cellprob, resized back to the stack's planes, as
Cellpose 4 follows them) to OUT.

    python tests/parity/make_network_flows.py OUT.npy [--planes 40] [--side 256]
"""
import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import tifffile

here = Path(__file__).parent
sys.path.insert(0, str(here))
from make_volume_pipeline_fixtures import make_stack  # noqa: E402

root = here.parents[1]
ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--planes", type=int, default=40)
ap.add_argument("--side", type=int, default=256)
a = ap.parse_args()
nuclei = max(4, int(22 * a.planes * a.side * a.side / (20 * 96 * 96)))
stack, n = make_stack(shape=(a.planes, a.side, a.side), nuclei=nuclei)
with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    tifffile.imwrite(tmp / "stack.tif", stack)
    subprocess.run([str(root / "target" / "release" / "cytoseg"), "segment", "-q", str(tmp / "stack.tif"),
                    "--out", str(tmp / "out"), "--no-objects", "--model", str(root / "models" / "nuclei"),
                    "--do-3d", "--anisotropy", "2", "--save-flows"], check=True)
    flows = sorted((tmp / "out").glob("*_flows.npy"))
    if len(flows) != 1:
        sys.exit(f"expected one flows file, found {[f.name for f in flows]}")
    shutil.copy(flows[0], a.out)
print(f"{a.planes}×{a.side}×{a.side} stack, {n} nuclei placed → {a.out}")
