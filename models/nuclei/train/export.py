"""Export the trained checkpoint to models/nuclei/model.onnx and check it against torch.

Input  `image`: float32 (N, 1, H, W), N/H/W dynamic, H and W multiples of 16,
                normalized per image with the 1st/99th percentiles.
Output `flows`: float32 (N, 3, H, W) = [dY, dX, cellprob logit], flows scaled x5.

    python models/nuclei/train/export.py [--ckpt .cache/ckpt.pt] [--out ../model.onnx]
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402
from evaluate import load_torch, make_runner, predict  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "model.onnx"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", type=Path, default=data.CACHE / "ckpt.pt")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    out = args.out
    torch.set_num_threads(1)
    net, ck = load_torch(args.ckpt)
    dummy = torch.zeros(1, 1, 64, 96)
    torch.onnx.export(net, (dummy,), str(out), input_names=["image"], output_names=["flows"],
                      dynamic_axes={"image": {0: "N", 2: "H", 3: "W"}, "flows": {0: "N", 2: "H", 3: "W"}},
                      opset_version=17, dynamo=False, do_constant_folding=True)
    import onnx
    m = onnx.load(str(out))
    onnx.checker.check_model(m)
    # fold any external-data file into one file
    onnx.save_model(m, str(out), save_as_external_data=False)
    print(f"wrote {out} ({out.stat().st_size/1e6:.2f} MB), opset "
          f"{[o.version for o in m.opset_import if o.domain in ('', 'ai.onnx')]}")
    ids, imgs, lbls = data.load_npz()
    va = [k for k in range(len(ids)) if data.is_val(k)]
    ort_run, torch_run = make_runner(onnx_path=out), make_runner(net)
    worst = 0.0
    for k in va[:5]:
        a, b = predict(ort_run, imgs[k]), predict(torch_run, imgs[k])
        worst = max(worst, float(np.abs(a - b).max()))
        print(f"val image {k} {imgs[k].shape}: max |ort - torch| = {np.abs(a-b).max():.2e}")
    # batch of 2 with an odd-but-multiple-of-16 size
    x = np.random.default_rng(0).random((2, 1, 48, 80), dtype=np.float32)
    d = np.abs(ort_run(x) - torch_run(x)).max()
    print(f"batch N=2 48x80: max diff {d:.2e}")
    worst = max(worst, float(d))
    assert worst < 1e-4, worst
    print("sha256", hashlib.sha256(out.read_bytes()).hexdigest())


if __name__ == "__main__":
    main()
