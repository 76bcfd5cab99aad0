"""Choose a trained clone's flows → masks thresholds on its TRAINING images, as StarDist
optimises its thresholds: `cytoseg validate` for every (cellprob_threshold, flow_threshold) of a
small grid, the pair with the best AP@0.5 (ties: the one closest to Cellpose's defaults 0 and
0.4) is written into the clone's `mask_defaults`, with the table of every pair in
`mask_defaults_calibration`. The held-back images are not looked at: validate on them after.

    python3 scripts/calibrate_masks.py --clone WORK/clone --images WORK/data/train/images \
        --truth WORK/data/train/labels --work WORK/calib [--cytoseg target/release/cytoseg]

Standard library only. The model file is not changed (its sha256 stays valid).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

CELLPROB = (0.0, -1.0, -2.0, -3.0)
FLOW = (0.4, 0.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clone", type=Path, required=True)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--truth", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--cytoseg", default="cytoseg")
    args = ap.parse_args(argv)

    rows = []
    for cp in CELLPROB:
        for ft in FLOW:
            out = args.work / f"cp{cp:g}_ft{ft:g}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [args.cytoseg, "validate", "--model", str(args.clone), "--images",
                   str(args.images), "--truth", str(args.truth), "--out", str(out),
                   "--min-ap", "0", "--device", "cpu", "-q",
                   "--cellprob-threshold", str(cp), "--flow-threshold", str(ft)]
            subprocess.run(cmd, check=True)
            ds = json.loads((out / "validation.json").read_text())["evaluation"]["dataset"]
            ap50 = next(d["accuracy"] for d in ds if abs(d["thresh"] - 0.5) < 1e-9)
            rows.append({"cellprob_threshold": cp, "flow_threshold": ft, "ap50": round(ap50, 4)})
            print(f"cellprob {cp:5.1f}  flow {ft:3.1f}  training AP@0.5 {ap50:.4f}", flush=True)
    best = max(rows, key=lambda r: (r["ap50"], -abs(r["cellprob_threshold"]),
                                    r["flow_threshold"]))
    path = args.clone / "manifest.json"
    m = json.loads(path.read_text())
    m["mask_defaults"]["cellprob_threshold"] = best["cellprob_threshold"]
    m["mask_defaults"]["flow_threshold"] = best["flow_threshold"]
    m["mask_defaults_calibration"] = {
        "rule": "best AP@0.5 on the training images over the grid (ties: closest to 0 / 0.4)",
        "images": str(args.images),
        "grid": rows,
    }
    path.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    print(f"{args.clone}: cellprob_threshold {best['cellprob_threshold']:g}, "
          f"flow_threshold {best['flow_threshold']:g} (training AP@0.5 {best['ap50']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
