"""Reference segmentations for tests/pipeline_parity.rs, made with pipeline_reference.py
(Cellpose 4.2.1.1's transforms and mask code around the ONNX network, onnxruntime on the CPU).

    python tests/parity/make_pipeline_fixtures.py MODEL_DIR
Writes tests/fixtures/pipeline/<model>/<image stem>[_d<diameter>].npz with labels for every
sample image of ../shared/data/dsb2018-fluo/sample (at the model's diameter, at 25 px, and with
min_size 0 as _m0), and
the flows too for the first image (kept small), plus models/examples/nuclei_example.tif when present.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np

root = Path(__file__).resolve().parents[2]
model = Path(sys.argv[1]).resolve()
name = model.name
out = root / "tests" / "fixtures" / "pipeline" / name
out.mkdir(parents=True, exist_ok=True)
import os

images = sorted((root / ".." / "shared" / "data" / "dsb2018-fluo" / "sample" / "images").glob("*.tif"))
# CYTOSEG_FIXTURE_IMAGES=N keeps the first N sample images (the real model is slower).
images = images[: int(os.environ.get("CYTOSEG_FIXTURE_IMAGES", len(images)))]
example = root / "models" / "examples" / "nuclei_example.tif"
if example.exists():
    images.append(example)
ref = Path(__file__).with_name("pipeline_reference.py")
for i, img in enumerate(images):
    # min_size 0: Cellpose's eval still fills holes (resize_and_compute_masks), only the size
    # filter is off.
    for diameter, min_size in ((None, None), (25.0, None), (None, 0)):
        stem = img.stem + ("" if diameter is None else f"_d{int(diameter)}")
        stem += "" if min_size is None else f"_m{min_size}"
        tmp = out / f"{stem}.tmp.npz"
        cmd = [sys.executable, str(ref), str(model), str(img), str(tmp)]
        if diameter:
            cmd += ["--diameter", str(diameter)]
        if min_size is not None:
            cmd += ["--min-size", str(min_size)]
        subprocess.run(cmd, check=True)
        z = np.load(tmp)
        keep = dict(labels=z["labels"], niter=z["niter"])
        if i == 0 and diameter:
            keep["flows"] = z["flows"]
        np.savez_compressed(out / f"{stem}.npz", **keep)
        tmp.unlink()
