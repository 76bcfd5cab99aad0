"""Median nucleus diameter of the training split, as Cellpose measures it.

cellpose.utils.diameters(labels) returns (median, per-mask diameters) with per-mask
diameter = sqrt(area) / (sqrt(pi)/2); we pool the per-mask diameters of all training
images and take the median. Writes .cache/diameter.json.
"""
import json
import sys
from pathlib import Path

import numpy as np
from cellpose import utils

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402

ids, _, lbls = data.load_npz()
tr = [k for k in range(len(ids)) if not data.is_val(k)]
per_image = np.array([utils.diameters(lbls[k])[0] for k in tr])
pooled = np.concatenate([utils.diameters(lbls[k])[1] for k in tr])
res = {"median_diameter_px": float(np.median(pooled)),
       "method": "median over all training nuclei of cellpose.utils.diameters(labels)[1]",
       "median_of_per_image_medians_px": float(np.median(per_image)),
       "cellpose_diam_labels_mean_px": float(per_image[per_image > 0].mean()),
       "n_nuclei": int(pooled.size)}
json.dump(res, open(data.CACHE / "diameter.json", "w"), indent=2)
print(res)
