"""Writes tests/fixtures/metrics/volume_matching.json: stardist.matching (0.9.2) of 3-D label
volumes, the truth of committed 3-D flow cases against the masks cellpose made from their
(distorted) flows, at IoU 0.5, 0.75 and 0.9. `tests/metrics_parity.rs` checks `cytoseg evaluate`
on the same volumes written as label stacks.

    python tests/parity/make_volume_metric_fixture.py
"""
import json
from pathlib import Path

import numpy as np
from stardist.matching import matching

root = Path(__file__).resolve().parents[1] / "fixtures"
cases = ["dsb_1_v0", "dsb_1_v1", "balls_0_v1", "balls_2_v0", "touching_boxes_v0", "tiny_objects_v1"]
out = {}
for name in cases:
    z = np.load(root / "volume" / f"{name}.npz")
    truth, pred = z["truth"], z["expected"]
    rows = []
    for t in (0.5, 0.75, 0.9):
        m = matching(truth, pred, thresh=t)._asdict()
        rows.append({k: (float(v) if isinstance(v, (float, np.floating)) else int(v))
                     for k, v in m.items() if k != "criterion"})
    out[name] = rows
    print(name, truth.shape, [(r["thresh"], r["tp"], round(r["accuracy"], 4)) for r in rows])
(root / "metrics" / "volume_matching.json").write_text(json.dumps(out, indent=1) + "\n")
