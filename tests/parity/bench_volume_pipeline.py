"""Benchmark of z-stack segmentation: Cellpose 4.2.1.1's own pipeline around cytoseg's ONNX
network (volume_pipeline_reference.py's steps, timed in-process from normalization to labels,
onnxruntime on the CPU) against the whole `cytoseg segment` command (process start, reading,
writing labels; objects tables off), on a synthetic nuclei stack; checks the labels are equal.

    python tests/parity/bench_volume_pipeline.py [--mode 3d|stitch] [--planes 40 --side 256]
        [--anisotropy 2] [--runs 3]
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from cellpose import models, transforms

here = Path(__file__).parent
sys.path.insert(0, str(here))
from make_volume_pipeline_fixtures import make_stack  # noqa: E402
from pipeline_reference import OnnxNet  # noqa: E402

root = here.parents[1]


def reference(model_dir, stack, mode, anisotropy):
    m = json.loads((model_dir / "manifest.json").read_text())
    model = models.CellposeModel.__new__(models.CellposeModel)
    model.net = OnnxNet(model_dir / m["model"]["file"], m["input"]["name"], m["output"]["name"])
    model.device = torch.device("cpu")
    model.backbone = "onnx"
    t0 = time.perf_counter()
    x = transforms.normalize_img(stack.astype(np.float32)[..., None], normalize=True, norm3D=True,
                                 percentile=(m["normalization"]["low"], m["normalization"]["high"]))
    do_3D = mode == "3d"
    dP, cellprob, _ = model._run_net(x, batch_size=8, tile_overlap=m["tiling"]["overlap"],
                                     bsize=m["tiling"]["tile_size"], anisotropy=anisotropy,
                                     do_3D=do_3D)
    d = m["mask_defaults"]
    masks = model._compute_masks(x.shape, dP, cellprob, flow_threshold=d["flow_threshold"],
                                 cellprob_threshold=d["cellprob_threshold"], min_size=d["min_size"],
                                 max_size_fraction=d["max_size_fraction"], niter=200,
                                 stitch_threshold=0.0 if do_3D else 0.25, do_3D=do_3D)
    return time.perf_counter() - t0, np.asarray(masks).astype(np.uint32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["3d", "stitch"], default="3d")
    ap.add_argument("--planes", type=int, default=40)
    ap.add_argument("--side", type=int, default=256)
    ap.add_argument("--anisotropy", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(2)
    nuclei = max(4, int(22 * a.planes * a.side * a.side / (20 * 96 * 96)))
    stack, n = make_stack(shape=(a.planes, a.side, a.side), nuclei=nuclei)
    exe = root / "target" / "release" / "cytoseg"
    model_dir = root / "models" / "nuclei"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "stack.tif"
        tifffile.imwrite(path, stack)
        mode_args = (["--do-3d", "--anisotropy", str(a.anisotropy)] if a.mode == "3d"
                     else ["--stitch-threshold", "0.25"])
        ref_t, ours_t = [], []
        for r in range(a.runs):
            t, want = reference(model_dir, stack, a.mode, a.anisotropy if a.mode == "3d" else None)
            ref_t.append(t)
            out = tmp / f"out{r}"
            t0 = time.perf_counter()
            subprocess.run([str(exe), "segment", "-q", str(path), "--out", str(out), "--no-objects",
                            "--model", str(model_dir)] + mode_args, check=True)
            ours_t.append(time.perf_counter() - t0)
            got = tifffile.imread(out / "stack_labels.tif").astype(np.uint32)
            equal = np.array_equal(got, want)
        rm, om = statistics.median(ref_t), statistics.median(ours_t)
        print(f"{a.mode} {a.planes}x{a.side}x{a.side} ({n} nuclei placed, {int(want.max())} masks): "
              f"cellpose {rm:.2f} s, cytoseg segment {om:.2f} s, speed-up {rm / om:.2f}x "
              f"(medians of {a.runs}); labels {'equal' if equal else 'DIFFER'}")


if __name__ == "__main__":
    main()
